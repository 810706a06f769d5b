//! `scatter check`: are the user's snapshots, trees and index consistent, and (with
//! `--read-data`) can every chunk be fetched, decrypted and verified?

use std::collections::HashSet;

use futures::StreamExt;
use rand::Rng;
use scatter_core::keys::UserKeys;
use scatter_core::ChunkId;
use serde::Serialize;

use crate::coordinator::Coordinator;
use crate::fetch::Fetcher;
use crate::hosts::Hosts;
use crate::snapshots::{self, Trees};
use crate::{ClientError, Progress};

/// Chunks located per request.
const LOCATE_BATCH: usize = 4096;

/// What a check found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Snapshots checked.
    pub snapshots: usize,
    /// Distinct trees read.
    pub trees: usize,
    /// Distinct chunks referenced (content and trees).
    pub chunks: usize,
    /// Chunks read back and verified.
    pub chunks_read: usize,
    /// Plaintext bytes read back.
    pub bytes_read: u64,
    /// Packs rebuilt from parity while reading.
    pub packs_rebuilt: usize,
    /// Problems, one sentence each; empty when everything is consistent.
    pub errors: Vec<String>,
}

/// Checks every snapshot; reads `read_fraction` (0 to 1) of the referenced chunks back.
pub async fn check(
    coord: &Coordinator,
    keys: &UserKeys,
    hosts: &Hosts,
    read_fraction: f64,
    progress: &dyn Progress,
) -> Result<CheckReport, ClientError> {
    let mut report = CheckReport::default();
    let listing = snapshots::list(coord, keys).await?;
    for u in &listing.unreadable {
        report.errors.push(u.warning());
    }
    let all = listing.snapshots;
    report.snapshots = all.len() + listing.unreadable.len();
    let fetcher = Fetcher::new(coord, hosts, keys);
    let mut trees = Trees::new(fetcher.clone());
    let mut seen_trees: HashSet<ChunkId> = HashSet::new();
    let mut chunks: Vec<(ChunkId, Option<u32>)> = Vec::new();
    let mut seen_chunks: HashSet<ChunkId> = HashSet::new();
    for snap in &all {
        let mut stack = vec![snap.snapshot.tree_id()];
        while let Some(id) = stack.pop() {
            if !seen_trees.insert(id) {
                continue;
            }
            seen_chunks.insert(id);
            let tree = match trees.get(id).await {
                Ok(t) => t,
                Err(e) => {
                    report.errors.push(format!("snapshot {}: tree {id}: {e}", snap.short_id()));
                    continue;
                }
            };
            for node in &tree.nodes {
                if let Some(sub) = node.subtree() {
                    stack.push(sub);
                }
                for (c, len) in node.chunk_ids() {
                    if seen_chunks.insert(c) {
                        chunks.push((c, Some(len)));
                    }
                }
            }
        }
    }
    report.trees = seen_trees.len();
    report.chunks = seen_chunks.len();

    // Every referenced chunk must be in the index.
    let ids: Vec<ChunkId> = seen_chunks.iter().copied().collect();
    let mut missing = 0;
    for batch in ids.chunks(LOCATE_BATCH) {
        let located = coord.indexed(batch.to_vec()).await?;
        missing += batch.len() - located.chunks.len();
    }
    if missing > 0 {
        report.errors.push(format!("{missing} chunks referenced by snapshots are not in the index"));
    }

    if read_fraction > 0.0 && missing == 0 {
        let mut rng = rand::thread_rng();
        let picked: Vec<_> =
            chunks.into_iter().filter(|_| read_fraction >= 1.0 || rng.gen_bool(read_fraction)).collect();
        progress.start(picked.iter().map(|(_, l)| l.unwrap_or(0) as u64).sum());
        let mut stream = fetcher.stream(picked);
        while let Some(run) = stream.next().await {
            match run {
                Ok(plain) => {
                    for p in plain {
                        report.chunks_read += 1;
                        report.bytes_read += p.len() as u64;
                        progress.advance(p.len() as u64);
                    }
                }
                Err(e) => {
                    report.errors.push(e.to_string());
                    break;
                }
            }
        }
        report.packs_rebuilt = fetcher.report().reconstructed_packs;
    }
    Ok(report)
}
