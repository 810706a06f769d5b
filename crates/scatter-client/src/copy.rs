//! `scatter copy`: snapshots from one account (or grid) into another, as restic's `copy`.
//!
//! Chunk ids are keyed hashes under each user's dedup key, and every chunk is sealed under
//! the writer's keys, so nothing can be moved as it is: each file chunk is fetched (and
//! checked) from the source, identified and sealed again under the destination's keys, and
//! every tree is rebuilt bottom-up with the new ids. The new snapshot keeps the source's
//! record (time, host, paths, tags, summary, exclude rules); it has no parent. Chunks the
//! destination holds already are not uploaded again, and a subtree or chunk met twice is
//! copied once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures::StreamExt;
use rand::RngCore;
use scatter_core::crypto::DedupKey;
use scatter_core::keys::UserKeys;
use scatter_core::snapshot::{Snapshot, SNAPSHOT_CONTEXT};
use scatter_core::tree::{Node, NodeKind, Tree};
use scatter_core::ChunkId;
use scatter_proto::api::{CommitSnapshotRequest, Policy};

use crate::coordinator::Coordinator;
use crate::fetch::Fetcher;
use crate::hosts::Hosts;
use crate::session::Session;
use crate::snapshots::{SnapshotInfo, Trees};
use crate::upload::{Redundancy, Uploader};
use crate::{ClientError, Progress};

/// File chunks handed to the uploader at once, at most so many or so many bytes (the
/// uploader holds one batch while its dedup lookup runs, and stores it with the next).
const BATCH: usize = 64;
const BATCH_BYTES: usize = 8 << 20;

/// Where a copy goes: the destination's coordinator, keys and hosts, and how new packs there
/// are coded and placed.
pub struct Destination<'a> {
    /// The destination's coordinator.
    pub coord: &'a Coordinator,
    /// The destination user's keys (write keys suffice).
    pub keys: &'a UserKeys,
    /// The destination grid's hosts.
    pub hosts: &'a Hosts,
    /// Redundancy of new packs.
    pub redundancy: Redundancy,
    /// Placement conditions.
    pub policy: Policy,
}

/// What copying one snapshot did.
#[derive(Debug, Clone, Default)]
pub struct CopyReport {
    /// The new snapshot's id in the destination.
    pub snapshot: String,
    /// Chunks the destination did not hold and were uploaded.
    pub new_chunks: usize,
    /// Their plaintext bytes.
    pub new_bytes: u64,
    /// Shard bytes sent to the destination's hosts.
    pub bytes_uploaded: u64,
}

/// Whether `dest` already holds a copy of `source`: a snapshot with the same record (time,
/// host, user, paths, tags and summary), as `copy` leaves it. Only a trusted one counts (a
/// copy is committed by the destination's own device): a delegate the destination does not
/// trust can commit any record, so one of its snapshots proves nothing.
pub fn already_copied(source: &Snapshot, dest: &[SnapshotInfo]) -> bool {
    dest.iter().filter(|d| d.trusted).any(|d| {
        let s = &d.snapshot;
        s.time_ns == source.time_ns
            && s.hostname == source.hostname
            && s.username == source.username
            && s.paths == source.paths
            && s.tags == source.tags
            && s.summary == source.summary
    })
}

/// Copies `snap`, read through `fetcher` (the source's keys check every chunk), into `dest`.
/// The copy is committed by the destination's device, so it counts as the destination's own:
/// callers copy only snapshots the source trusts. (One of an untrusted delegate would also
/// lose the metadata that could grant privileges, see [`crate::restore::distrust_metadata`].)
pub async fn copy_snapshot(
    fetcher: &Arc<Fetcher>,
    snap: &SnapshotInfo,
    dest: &Destination<'_>,
    progress: &dyn Progress,
) -> Result<CopyReport, ClientError> {
    let session = Session::open(dest.coord, dest.keys.write_keys()).await?;
    let mut uploader = Uploader::new(
        dest.coord,
        dest.hosts,
        session.id,
        session.key.clone(),
        dest.redundancy,
        dest.policy.clone(),
        false,
    )?;
    let mut copier = Copier {
        fetcher: fetcher.clone(),
        trees: Trees::new(fetcher.clone()),
        dedup: dest.keys.write_keys().dedup_key(),
        trusted: snap.trusted,
        copied_trees: HashMap::new(),
        copied_chunks: HashMap::new(),
        refs: HashSet::new(),
    };
    let root = copier.tree(snap.snapshot.tree_id(), &mut uploader, progress).await?;
    let stats = uploader.finish().await?;
    let refs: Vec<ChunkId> = copier.refs.into_iter().collect();
    for batch in refs.chunks(50_000) {
        dest.coord.snapshot_refs(session.id, batch.to_vec()).await?;
    }
    let record = Snapshot { tree: *root.as_bytes(), parent: None, ..snap.snapshot.clone() };
    let id = {
        let mut b = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        hex::encode(b)
    };
    let sealed = session.key.seal(SNAPSHOT_CONTEXT, &record.encode());
    dest.coord
        .commit_snapshot(&CommitSnapshotRequest {
            session: session.id,
            id: id.clone(),
            record: B64.encode(sealed),
            // The destination's own rules (its user's default lock, if any) apply.
            retention: Default::default(),
        })
        .await?;
    Ok(CopyReport {
        snapshot: id,
        new_chunks: stats.new_chunks,
        new_bytes: stats.new_bytes,
        bytes_uploaded: stats.bytes_uploaded,
    })
}

/// One snapshot's copy in progress.
struct Copier {
    fetcher: Arc<Fetcher>,
    trees: Trees,
    dedup: DedupKey,
    trusted: bool,
    /// Source tree id → destination tree id.
    copied_trees: HashMap<ChunkId, ChunkId>,
    /// Source chunk id → destination chunk id.
    copied_chunks: HashMap<ChunkId, ChunkId>,
    /// Every destination chunk and tree the snapshot references.
    refs: HashSet<ChunkId>,
}

impl Copier {
    /// Copies the tree `id` and everything below it; returns the destination's tree id.
    /// Depth-first with an explicit stack, so a deep tree cannot overflow the task's stack.
    async fn tree(
        &mut self,
        id: ChunkId,
        uploader: &mut Uploader,
        progress: &dyn Progress,
    ) -> Result<ChunkId, ClientError> {
        // (source tree id, the tree, its entries copied so far)
        let mut stack: Vec<(ChunkId, Arc<Tree>, Vec<Node>)> = vec![(id, self.trees.get(id).await?, Vec::new())];
        while let Some((_, tree, done)) = stack.last() {
            let Some(node) = tree.nodes.get(done.len()).cloned() else {
                // Every entry copied: the tree itself; its parent's entry is next.
                let Some((src, _, nodes)) = stack.pop() else { break };
                let new = self.store_tree(nodes, uploader).await?;
                self.copied_trees.insert(src, new);
                if stack.is_empty() {
                    return Ok(new);
                }
                continue;
            };
            if let Some(sub) = node.subtree().filter(|s| !self.copied_trees.contains_key(s)) {
                let tree = self.trees.get(sub).await?;
                stack.push((sub, tree, Vec::new()));
                continue;
            }
            let copied = match &node.kind {
                NodeKind::Dir { .. } => {
                    let new = node
                        .subtree()
                        .and_then(|s| self.copied_trees.get(&s).copied())
                        .ok_or_else(|| ClientError::Unrecoverable("a directory's tree was not copied".into()))?;
                    self.refs.insert(new);
                    Node { kind: NodeKind::Dir { subtree: *new.as_bytes() }, ..node }
                }
                NodeKind::File { .. } => {
                    progress.item(&node.display_name());
                    self.file(node, uploader, progress).await?
                }
                NodeKind::Symlink { .. } => node,
            };
            let copied = self.metadata(copied);
            if let Some((_, _, done)) = stack.last_mut() {
                done.push(copied);
            }
        }
        Err(ClientError::Unrecoverable("the tree walk of a copy lost its root".into()))
    }

    /// A node as the destination records it: an untrusted writer's privileges dropped.
    fn metadata(&self, mut node: Node) -> Node {
        if !self.trusted {
            crate::restore::distrust_metadata(std::iter::once(&mut node));
        }
        node
    }

    /// Copies a file's chunks (those not copied before); returns its node with the new ids.
    async fn file(
        &mut self,
        node: Node,
        uploader: &mut Uploader,
        progress: &dyn Progress,
    ) -> Result<Node, ClientError> {
        let mut seen = HashSet::new();
        let wanted: Vec<(ChunkId, Option<u32>)> = node
            .chunk_ids()
            .filter(|(id, _)| !self.copied_chunks.contains_key(id) && seen.insert(*id))
            .map(|(id, len)| (id, Some(len)))
            .collect();
        let mut next = wanted.iter().map(|(id, _)| *id).collect::<Vec<_>>().into_iter();
        let mut stream = self.fetcher.stream(wanted);
        let mut batch: Vec<(ChunkId, Vec<u8>)> = Vec::new();
        let mut bytes = 0;
        while let Some(run) = stream.next().await {
            for data in run? {
                let src = next
                    .next()
                    .ok_or_else(|| ClientError::Unrecoverable("more chunks came than were asked for".into()))?;
                let new = self.dedup.chunk_id(&data);
                self.copied_chunks.insert(src, new);
                progress.advance(data.len() as u64);
                bytes += data.len();
                batch.push((new, data));
                if batch.len() >= BATCH || bytes >= BATCH_BYTES {
                    bytes = 0;
                    uploader.add(std::mem::take(&mut batch)).await?;
                }
            }
        }
        if next.next().is_some() {
            return Err(ClientError::Unrecoverable("the chunk stream of a copy ended early".into()));
        }
        if !batch.is_empty() {
            uploader.add(batch).await?;
        }
        let mut chunks = Vec::new();
        for (id, len) in node.chunk_ids() {
            let new = self.copied_chunks.get(&id).copied().ok_or_else(|| {
                ClientError::Unrecoverable(format!("a chunk of {} was not copied", node.display_name()))
            })?;
            self.refs.insert(new);
            chunks.push((*new.as_bytes(), len));
        }
        Ok(Node { kind: NodeKind::File { chunks }, ..node })
    }

    async fn store_tree(&mut self, nodes: Vec<Node>, uploader: &mut Uploader) -> Result<ChunkId, ClientError> {
        let tree =
            Tree::new(nodes).map_err(|e| ClientError::Unrecoverable(format!("a copied tree is invalid: {e}")))?;
        let blob = tree.encode();
        let id = self.dedup.chunk_id(&blob);
        if self.refs.insert(id) {
            uploader.add_trees(vec![(id, blob)]).await?;
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(snapshot: Snapshot, trusted: bool) -> SnapshotInfo {
        SnapshotInfo {
            id: "ab".repeat(32),
            created: 1,
            snapshot,
            writer: None,
            writer_name: String::new(),
            trusted,
            hold: Default::default(),
        }
    }

    /// A delegate of the destination that the destination does not trust (a write-only
    /// source) can commit any record there, the source's own if it wrote that one: a copy
    /// must not be skipped as done for a snapshot only such a delegate put there.
    #[test]
    fn only_a_trusted_snapshot_of_the_destination_counts_as_a_copy() {
        let source = Snapshot {
            time_ns: 1_700_000_000_000_000_000,
            hostname: "server".into(),
            username: "root".into(),
            paths: vec!["/etc".into()],
            tags: vec![],
            tree: [1; 32],
            parent: None,
            summary: Default::default(),
            excluded: Default::default(),
        };
        let planted = Snapshot { tree: [2; 32], ..source.clone() };
        assert!(!already_copied(&source, &[info(planted.clone(), false)]), "an untrusted delegate's record");
        assert!(already_copied(&source, &[info(planted, true)]));
    }
}
