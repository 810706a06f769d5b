//! Reading snapshots back: listing and decrypting records, resolving `latest` and id
//! prefixes, walking trees, and applying forget policies.
//!
//! Snapshots are ordered by the coordinator's commit time, not by the time their sealed
//! record claims (the writer chooses that). Each carries its writer as the coordinator
//! recorded it; only those that count as the owner's own (written by the owner, or by a
//! delegate the owner trusts) are `latest`, recovered from or used as backup parents. The
//! others are listed, marked, and restorable by id.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures::StreamExt;
use scatter_core::keys::UserKeys;
use scatter_core::retention::{self, Policy};
use scatter_core::snapshot::{Snapshot, SNAPSHOT_CONTEXT};
use scatter_core::tree::{Node, Tree, TreePath};
use scatter_core::{ChunkId, UserId};

use crate::coordinator::Coordinator;
use crate::fetch::Fetcher;
use crate::ClientError;

/// A stored snapshot, decrypted.
#[derive(Debug, Clone)]
pub struct SnapshotInfo {
    /// Full id (64 hex digits).
    pub id: String,
    /// Unix time of the commit at the coordinator.
    pub created: u64,
    /// The record.
    pub snapshot: Snapshot,
    /// Who committed it, as the coordinator recorded it; `None` from a coordinator too old
    /// to tell writers apart.
    pub writer: Option<UserId>,
    /// The writer's name, for listings (may be empty).
    pub writer_name: String,
    /// Whether it counts as the owner's own: written by the owner, or by a delegate the
    /// owner trusts.
    pub trusted: bool,
    /// The object lock and expiry the coordinator holds it under.
    pub hold: scatter_proto::api::Hold,
}

impl SnapshotInfo {
    /// The id's first 8 digits, as shown in listings.
    pub fn short_id(&self) -> &str {
        &self.id[..8.min(self.id.len())]
    }

    /// The writer for listings: its name, else its id, else `-`.
    pub fn writer_label(&self) -> String {
        match (&self.writer_name, self.writer) {
            (name, _) if !name.is_empty() => name.clone(),
            (_, Some(id)) => id.to_string(),
            _ => "-".into(),
        }
    }
}

/// A snapshot the caller's keys cannot open: its key was not wrapped to them, or its record
/// is damaged. A delegate holding keys of its own, or a hostile one, can commit such a
/// record; it is set apart, named, and can be forgotten, never a reason to list nothing.
#[derive(Debug, Clone)]
pub struct Unreadable {
    /// Full id (64 hex digits).
    pub id: String,
    /// Who committed it, as the coordinator recorded it.
    pub writer: Option<UserId>,
    /// The writer's name (may be empty).
    pub writer_name: String,
    /// What failed.
    pub why: String,
}

impl Unreadable {
    /// A warning for listings: which snapshot, whose, why, and how to remove it.
    pub fn warning(&self) -> String {
        let short = &self.id[..8.min(self.id.len())];
        let by = match (&self.writer_name, self.writer) {
            (name, Some(id)) if !name.is_empty() => format!("{id} ({name})"),
            (_, Some(id)) => id.to_string(),
            _ => "an unknown account".into(),
        };
        format!(
            "snapshot {short}, written by {by}, cannot be opened with your keys ({}); it is left out. \
             `scatter forget {short}` removes it",
            self.why
        )
    }
}

/// The user's snapshots: those its keys open, in commit order (oldest first), and those
/// they do not.
#[derive(Debug, Default)]
pub struct Listing {
    /// Opened, oldest first.
    pub snapshots: Vec<SnapshotInfo>,
    /// Set apart (see [`Unreadable`]).
    pub unreadable: Vec<Unreadable>,
}

/// The user's snapshots (needs the private key).
pub async fn list(coord: &Coordinator, keys: &UserKeys) -> Result<Listing, ClientError> {
    let entries = coord.snapshots().await?;
    if !keys.can_read() && !entries.is_empty() {
        return Err(scatter_core::keys::KeyError::WriteOnly.into());
    }
    let mut out = Listing::default();
    let mut session_keys = HashMap::new();
    for e in entries {
        let key = match session_keys.entry(e.session) {
            std::collections::hash_map::Entry::Occupied(k) => k.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(B64.decode(&e.wrapped_key).ok().and_then(|w| keys.unwrap(&w).ok()))
            }
        };
        let opened = match key {
            None => Err("its key was not wrapped to your keys".to_owned()),
            Some(key) => B64
                .decode(&e.record)
                .map_err(|_| "its record is not base64".to_owned())
                .and_then(|sealed| {
                    key.open(SNAPSHOT_CONTEXT, &sealed).map_err(|_| "its record fails authentication".to_owned())
                })
                .and_then(|plain| Snapshot::decode(&plain).map_err(|err| err.to_string())),
        };
        match opened {
            Ok(snapshot) => out.snapshots.push(SnapshotInfo {
                id: e.id,
                created: e.created,
                snapshot,
                writer: e.writer,
                writer_name: e.writer_name,
                trusted: e.trusted,
                hold: e.hold,
            }),
            Err(why) => out.unreadable.push(Unreadable { id: e.id, writer: e.writer, writer_name: e.writer_name, why }),
        }
    }
    // The coordinator lists in commit order; a stable sort keeps its order within a second.
    out.snapshots.sort_by_key(|s| s.created);
    Ok(out)
}

/// Gives snapshot `id` the tags `tags`. Its record is sealed again with the key of the
/// session that wrote it and replaces the old one at the coordinator, so the id, commit time,
/// order (`latest`, backup parents), writer and data references all stay; only the sealed
/// record changes. Returns the record as it is now.
pub async fn set_tags(
    coord: &Coordinator,
    keys: &UserKeys,
    id: &str,
    tags: Vec<String>,
) -> Result<Snapshot, ClientError> {
    let short = &id[..id.len().min(8)];
    let entry = coord
        .snapshots()
        .await?
        .into_iter()
        .find(|e| e.id == id)
        .ok_or_else(|| ClientError::Invalid(format!("snapshot {short} is gone; `scatter snapshots` lists them")))?;
    let bad = |what: &str| ClientError::Unrecoverable(format!("snapshot {short} {what}"));
    let wrapped = B64.decode(&entry.wrapped_key).map_err(|_| bad("has an unreadable key"))?;
    let key = keys.unwrap(&wrapped)?;
    let sealed = B64.decode(&entry.record).map_err(|_| bad("is not base64"))?;
    let plain = key.open(SNAPSHOT_CONTEXT, &sealed).map_err(|_| bad("fails authentication"))?;
    let mut snapshot = Snapshot::decode(&plain).map_err(|err| bad(&err.to_string()))?;
    snapshot.tags = tags;
    coord.replace_snapshot_record(id, &key.seal(SNAPSHOT_CONTEXT, &snapshot.encode())).await?;
    Ok(snapshot)
}

/// Finds a snapshot by `latest` (the newest committed that counts as the owner's own) or a
/// unique prefix of its id (any snapshot).
pub fn resolve<'a>(all: &'a [SnapshotInfo], spec: &str) -> Result<&'a SnapshotInfo, ClientError> {
    if all.is_empty() {
        return Err(ClientError::Invalid("there are no snapshots yet; run `scatter backup PATH` first".into()));
    }
    if spec == "latest" {
        return all.iter().rev().find(|s| s.trusted).ok_or_else(|| {
            ClientError::Invalid(
                "every snapshot was written by a delegate you do not trust, so none is `latest`; give its id (`scatter snapshots` lists them) or trust the delegate (`scatter delegate trust USER`)".into(),
            )
        });
    }
    if spec.len() < 4 || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ClientError::Invalid(format!(
            "`{spec}` is not a snapshot id; give `latest` or at least 4 hex digits of an id (`scatter snapshots` lists them)"
        )));
    }
    let spec = spec.to_ascii_lowercase();
    let found: Vec<&SnapshotInfo> = all.iter().filter(|s| s.id.starts_with(&spec)).collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(ClientError::Invalid(format!("no snapshot id starts with `{spec}`; `scatter snapshots` lists them"))),
        _ => Err(ClientError::Invalid(format!(
            "{} snapshots start with `{spec}`; give more digits of the id",
            found.len()
        ))),
    }
}

/// `bytes` in standard base64 (how JSON output carries a path that is not UTF-8).
pub fn base64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Splits `SNAPSHOT[:PATH]`.
pub fn split_spec(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once(':') {
        Some((s, p)) => (s, Some(p)),
        None => (spec, None),
    }
}

/// The deepest directory nesting a walk accepts: a Linux path (4096 bytes) holds at most
/// 2048 components.
pub const MAX_DEPTH: usize = 2048;

/// The most entries one walk returns (each costs a few hundred bytes of memory).
pub const MAX_ENTRIES: usize = 20_000_000;

/// Entries a walk may return beyond [`REPEATS`] times those of its distinct trees. A real
/// file system repeats a directory only where the backup saw it twice (a bind mount, a path
/// given twice): every node carries its inode, so no two directories share a tree
/// otherwise. A hostile snapshot can make a few trees name each other over and over (forty
/// trees of two entries each stand for 2^40 paths), which no walk would finish.
pub const REPEAT_SLACK: usize = 100_000;
/// How many times over a walk may return its distinct trees' entries (see [`REPEAT_SLACK`]).
pub const REPEATS: usize = 4;

/// Loads trees through a fetcher, caching them.
pub struct Trees {
    fetcher: Arc<Fetcher>,
    cache: HashMap<ChunkId, Arc<Tree>>,
}

impl Trees {
    /// A tree reader.
    pub fn new(fetcher: Arc<Fetcher>) -> Self {
        Self { fetcher, cache: HashMap::new() }
    }

    /// The fetcher it reads through.
    pub fn fetcher(&self) -> &Arc<Fetcher> {
        &self.fetcher
    }

    /// One tree.
    pub async fn get(&mut self, id: ChunkId) -> Result<Arc<Tree>, ClientError> {
        if let Some(t) = self.cache.get(&id) {
            return Ok(t.clone());
        }
        let blob = self.fetcher.fetch_one(id).await?;
        self.insert(id, &blob)
    }

    /// [`Self::get`], with the tree's subtrees fetched along in one batch (one locate, and
    /// one read per pack they lie in) for a walk that visits them next. A backup of 10,000
    /// files in 24 folders read its parent's trees in 3 rounds instead of 24. A subtree that
    /// cannot be fetched here is left for its own `get`, which reports why.
    pub async fn get_ahead(&mut self, id: ChunkId) -> Result<Arc<Tree>, ClientError> {
        let tree = self.get(id).await?;
        let mut missing: Vec<ChunkId> =
            tree.nodes.iter().filter_map(Node::subtree).filter(|s| !self.cache.contains_key(s)).collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(tree);
        }
        let mut blobs = self.fetcher.stream(missing.iter().map(|s| (*s, None)).collect());
        let mut ids = missing.into_iter();
        while let Some(item) = blobs.next().await {
            let Ok(run) = item else { break };
            // `run` first: zip must not take an id when the run has no blob left for it.
            for (blob, sub) in run.into_iter().zip(ids.by_ref()) {
                if self.insert(sub, &blob).is_err() {
                    break;
                }
            }
        }
        Ok(tree)
    }

    fn insert(&mut self, id: ChunkId, blob: &[u8]) -> Result<Arc<Tree>, ClientError> {
        let tree = decode(id, blob)?;
        if self.cache.len() > 4096 {
            self.cache.clear();
        }
        self.cache.insert(id, tree.clone());
        Ok(tree)
    }

    /// The trees below `root` (and it), fetched a level of the hierarchy at a time: one
    /// stream per level (a locate per 4096 trees, the reads grouped by pack) instead of a
    /// round trip or two per directory. A restore of a source tree of 2,525 directories
    /// made 803 locate calls and spent about 1.5 s walking it. What cannot be fetched or
    /// decoded here is left out, for the walk's own [`Self::get`] to report. The levels
    /// stop at [`MAX_DEPTH`], and at [`MAX_ENTRIES`] entries: the walk refuses those.
    async fn load_levels(&mut self, root: ChunkId) -> HashMap<ChunkId, Arc<Tree>> {
        let mut loaded: HashMap<ChunkId, Arc<Tree>> = HashMap::new();
        let mut level = vec![root];
        let mut entries = 0usize;
        for _ in 0..=MAX_DEPTH {
            if level.is_empty() || entries > MAX_ENTRIES {
                break;
            }
            let wanted: Vec<ChunkId> = level.iter().filter(|id| !self.cache.contains_key(id)).copied().collect();
            let mut blobs = self.fetcher.stream(wanted.iter().map(|id| (*id, None)).collect());
            let mut ids = wanted.into_iter();
            'fetch: while let Some(Ok(run)) = blobs.next().await {
                // `run` first: zip must not take an id when the run has no blob left for it.
                for (blob, id) in run.into_iter().zip(ids.by_ref()) {
                    let Ok(tree) = decode(id, &blob) else { break 'fetch };
                    loaded.insert(id, tree);
                }
            }
            // The next level: the subtrees of this one's trees, each once.
            let mut next = Vec::new();
            let mut queued = HashSet::new();
            for id in &level {
                let Some(tree) = loaded.get(id).cloned().or_else(|| self.cache.get(id).cloned()) else { continue };
                entries += tree.nodes.len();
                for sub in tree.nodes.iter().filter_map(Node::subtree) {
                    if !loaded.contains_key(&sub) && queued.insert(sub) {
                        next.push(sub);
                    }
                }
                loaded.insert(*id, tree);
            }
            level = next;
        }
        loaded
    }

    /// The node at `path` below the tree `root`; `None` for the root itself.
    pub async fn lookup(&mut self, root: ChunkId, path: &TreePath) -> Result<Option<Node>, ClientError> {
        let mut tree = self.get(root).await?;
        let mut node: Option<Node> = None;
        for part in path.components() {
            if let Some(n) = &node {
                let sub = n.subtree().ok_or_else(|| {
                    ClientError::Invalid(format!("`{}`: {} is not a directory", path.display(), n.display_name()))
                })?;
                tree = self.get(sub).await?;
            }
            node = Some(
                tree.get(part)
                    .cloned()
                    .ok_or_else(|| {
                        ClientError::Invalid(format!(
                            "`{}` is not in the snapshot; paths in a snapshot are the whole paths backed up (`scatter ls SNAPSHOT` lists them)",
                            path.display()
                        ))
                    })?,
            );
        }
        Ok(node)
    }

    /// Every entry below `root`, depth first (a directory before its entries, the entries of
    /// one directory together), with its path: `prefix` followed by the names from `root`.
    /// Names stay raw bytes. A tree deeper than [`MAX_DEPTH`] or holding more than
    /// [`MAX_ENTRIES`] entries, or repeating its subtrees far beyond what a file system does
    /// (see [`REPEAT_SLACK`]), is refused.
    pub async fn walk(&mut self, root: ChunkId, prefix: &TreePath) -> Result<Vec<(TreePath, Node)>, ClientError> {
        let mut loaded = self.load_levels(root).await;
        let mut out = Vec::new();
        let mut stack = vec![(prefix.clone(), root)];
        // The distinct trees met so far, and how many entries they hold together.
        let (mut seen, mut distinct) = (HashSet::new(), 0usize);
        while let Some((dir, id)) = stack.pop() {
            // Taken out as it is visited, so the trees and the entries made of them are not
            // all held at once; a subtree met twice is fetched again (and then cached).
            let tree = match loaded.remove(&id) {
                Some(t) => t,
                None => self.get(id).await?,
            };
            if seen.insert(id) {
                distinct += tree.nodes.len();
            }
            if out.len() + tree.nodes.len() > distinct.saturating_mul(REPEATS).saturating_add(REPEAT_SLACK) {
                return Err(ClientError::Unrecoverable(format!(
                    "`{}` repeats the same directories over and over ({} entries from {} distinct \
                     directories so far), which no file system does; the snapshot is damaged or hostile",
                    prefix.display(),
                    out.len() + tree.nodes.len(),
                    seen.len()
                )));
            }
            if out.len() + tree.nodes.len() > MAX_ENTRIES {
                return Err(ClientError::Invalid(format!(
                    "`{}` holds more than {MAX_ENTRIES} entries, more than one restore or listing handles; \
                     give a part of it (SNAPSHOT:PATH)",
                    prefix.display()
                )));
            }
            let mut subdirs = Vec::new();
            for n in &tree.nodes {
                let path = dir.join(&n.name).map_err(|e| ClientError::Unrecoverable(format!("tree {id}: {e}")))?;
                if let Some(sub) = n.subtree() {
                    if path.depth() > MAX_DEPTH {
                        return Err(ClientError::Unrecoverable(format!(
                            "`{}` is nested more than {MAX_DEPTH} directories deep, deeper than any real \
                             file system path; the snapshot is damaged or hostile",
                            dir.display()
                        )));
                    }
                    subdirs.push((path.clone(), sub));
                }
                out.push((path, n.clone()));
            }
            stack.extend(subdirs.into_iter().rev());
        }
        Ok(out)
    }
}

/// A tree from its blob, or why it is damaged.
fn decode(id: ChunkId, blob: &[u8]) -> Result<Arc<Tree>, ClientError> {
    Tree::decode(blob).map(Arc::new).map_err(|e| ClientError::Unrecoverable(format!("tree {id} is damaged: {e}")))
}

/// Which snapshots a policy removes. Snapshots are grouped by writer, and within a writer by
/// host name and paths unless `group` is false; each group keeps its own. So a delegate's
/// snapshots, whatever host and paths they claim, never push the owner's out: they are
/// trimmed by the same policy in groups of their own. Within a group the policy reads the
/// records' times (the writer's clock), which only reorders that writer's own snapshots.
pub fn to_forget<'a>(all: &'a [SnapshotInfo], policy: &Policy, group: bool) -> Vec<&'a SnapshotInfo> {
    type Key = (Option<UserId>, String, Vec<String>);
    let mut groups: HashMap<Key, Vec<&SnapshotInfo>> = HashMap::new();
    for s in all {
        let key = if group {
            (s.writer, s.snapshot.hostname.clone(), s.snapshot.paths.clone())
        } else {
            (s.writer, String::new(), Vec::new())
        };
        groups.entry(key).or_default().push(s);
    }
    let mut out = Vec::new();
    for members in groups.values() {
        let items: Vec<(i64, &[String])> = members.iter().map(|s| (s.snapshot.time_ns, &s.snapshot.tags[..])).collect();
        for (s, keep) in members.iter().zip(retention::apply(policy, &items)) {
            if !keep {
                out.push(*s);
            }
        }
    }
    out.sort_by_key(|s| s.snapshot.time_ns);
    out
}

/// How an entry differs between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Only in the second.
    Added,
    /// Only in the first.
    Removed,
    /// Content or type changed.
    Modified,
    /// Same content, metadata (mode, owner, mtime, xattrs) changed.
    Metadata,
}

/// The entries that differ between the trees `a` and `b`; identical subtrees are skipped
/// without being read.
pub async fn diff(trees: &mut Trees, a: ChunkId, b: ChunkId) -> Result<Vec<(TreePath, Change)>, ClientError> {
    let mut out = Vec::new();
    let mut stack = vec![(TreePath::root(), Some(a), Some(b))];
    // Directories compared so far: one subtree can be referenced many times over.
    let mut visited = 0usize;
    while let Some((prefix, a, b)) = stack.pop() {
        if a == b {
            continue;
        }
        let ta = match a {
            Some(id) => Some(trees.get(id).await?),
            None => None,
        };
        let tb = match b {
            Some(id) => Some(trees.get(id).await?),
            None => None,
        };
        let empty = Tree::default();
        let (ta, tb) = (ta.as_deref().unwrap_or(&empty), tb.as_deref().unwrap_or(&empty));
        let mut names: Vec<&[u8]> = ta.nodes.iter().chain(&tb.nodes).map(|n| n.name.as_slice()).collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let path = prefix.join(name).map_err(|e| ClientError::Unrecoverable(format!("a tree: {e}")))?;
            let (na, nb) = (ta.get(name), tb.get(name));
            match (na, nb) {
                (Some(_), None) => out.push((path.clone(), Change::Removed)),
                (None, Some(_)) => out.push((path.clone(), Change::Added)),
                (Some(x), Some(y)) => {
                    let same_kind = std::mem::discriminant(&x.kind) == std::mem::discriminant(&y.kind);
                    if !same_kind || (x.subtree().is_none() && x.kind != y.kind) {
                        out.push((path.clone(), Change::Modified));
                    } else if (x.mode, x.uid, x.gid, x.mtime_ns, &x.xattrs)
                        != (y.mode, y.uid, y.gid, y.mtime_ns, &y.xattrs)
                    {
                        out.push((path.clone(), Change::Metadata));
                    }
                }
                (None, None) => {}
            }
            let (sa, sb) = (na.and_then(Node::subtree), nb.and_then(Node::subtree));
            if (sa.is_some() || sb.is_some()) && sa != sb {
                visited += 1;
                if path.depth() > MAX_DEPTH || out.len() + visited > MAX_ENTRIES {
                    return Err(ClientError::Unrecoverable(format!(
                        "the difference below `{}` is deeper than {MAX_DEPTH} directories or longer than \
                         {MAX_ENTRIES} entries; the snapshot is damaged or hostile",
                        prefix.display()
                    )));
                }
                stack.push((path, sa, sb));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot of host `h`, path `/d`, committed at `created`, claiming `time_ns`.
    fn snap(id: &str, created: u64, time_ns: i64, writer: u64, trusted: bool) -> SnapshotInfo {
        SnapshotInfo {
            id: id.repeat(64 / id.len()),
            created,
            snapshot: Snapshot {
                time_ns,
                hostname: "h".into(),
                username: "me".into(),
                paths: vec!["/d".into()],
                tags: Vec::new(),
                tree: [0; 32],
                parent: None,
                summary: Default::default(),
                excluded: Default::default(),
            },
            writer: Some(UserId(writer)),
            writer_name: String::new(),
            trusted,
            hold: Default::default(),
        }
    }

    #[test]
    fn latest_is_the_newest_commit_that_counts_as_the_owners_own() {
        // The delegate's record claims a far future time and it was committed last.
        let all = [snap("a", 10, 10, 1, true), snap("b", 20, i64::MAX, 2, false)];
        assert_eq!(resolve(&all, "latest").expect("latest").id, all[0].id);
        // By id, any snapshot.
        assert_eq!(resolve(&all, "bbbb").expect("by id").id, all[1].id);
        // Trusted, the delegate's newer commit is the latest.
        let all = [snap("a", 10, 10, 1, true), snap("b", 20, 5, 2, true)];
        assert_eq!(resolve(&all, "latest").expect("latest").id, all[1].id);
        // Nothing trusted: `latest` says what to do instead of picking a delegate's.
        let err = resolve(&[snap("b", 20, 5, 2, false)], "latest").expect_err("untrusted only");
        assert!(err.to_string().contains("delegate trust"), "{err}");
    }

    #[test]
    fn retention_groups_are_per_writer() {
        let all = [
            snap("1", 1, 1, 1, true),
            snap("2", 2, 2, 1, true),
            snap("3", 3, 3, 2, false),
            snap("4", 4, 4, 2, false),
            snap("5", 5, 5, 2, false),
        ];
        let policy = Policy { last: 2, ..Default::default() };
        for group in [true, false] {
            let gone: Vec<&str> = to_forget(&all, &policy, group).iter().map(|s| s.short_id()).collect();
            assert_eq!(gone, ["33333333"], "group by host and paths: {group}");
        }
    }
}
