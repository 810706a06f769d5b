//! Commands that read snapshots without restoring them, as restic has them: `stats` (how big
//! snapshots are) and `dump` (one file's bytes on stdout).

use std::collections::HashMap;
use std::io::Write;

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use scatter_client::fetch::Fetcher;
use scatter_client::snapshots::{self, SnapshotInfo, Trees};
use scatter_core::tree::{NodeKind, TreePath};
use scatter_core::{ByteSize, ChunkId};

use crate::backups::open_snapshots;

/// What `stats` counts, with restic's names.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsMode {
    /// Files and bytes as a restore would write them (every snapshot's files count).
    RestoreSize,
    /// The distinct chunks (file data and trees) the snapshots reference, before encryption
    /// and redundancy: what they take in the grid, deduplicated.
    RawData,
}

/// `scatter stats [SNAPSHOT...]`: every snapshot when none is given.
pub async fn stats(specs: &[String], mode: StatsMode, json: bool) -> Result<i32> {
    let (coord, keys, all) = open_snapshots().await?;
    let chosen: Vec<&SnapshotInfo> = if specs.is_empty() {
        all.iter().collect()
    } else {
        specs.iter().map(|s| snapshots::resolve(&all, s)).collect::<Result<_, _>>()?
    };
    let mut trees = Trees::new(Fetcher::new(&coord, &coord.hosts()?, &keys));
    let (mut files, mut dirs, mut bytes) = (0u64, 0u64, 0u64);
    // Chunk id to plaintext length, each counted once however often it is referenced.
    let mut chunks: HashMap<ChunkId, u64> = HashMap::new();
    for s in &chosen {
        let root = s.snapshot.tree_id();
        if mode == StatsMode::RawData {
            let len = trees.get(root).await?.encode().len() as u64;
            chunks.insert(root, len);
        }
        for (_, node) in trees.walk(root, &TreePath::root()).await? {
            match &node.kind {
                NodeKind::File { .. } => {
                    files += 1;
                    bytes += node.size;
                    chunks.extend(node.chunk_ids().map(|(id, len)| (id, u64::from(len))));
                }
                NodeKind::Dir { .. } => {
                    dirs += 1;
                    if let (StatsMode::RawData, Some(sub)) = (mode, node.subtree()) {
                        if let std::collections::hash_map::Entry::Vacant(slot) = chunks.entry(sub) {
                            slot.insert(trees.get(sub).await?.encode().len() as u64);
                        }
                    }
                }
                NodeKind::Symlink { .. } => {}
            }
        }
    }
    let raw: u64 = chunks.values().sum();
    if json {
        let v = match mode {
            StatsMode::RestoreSize => serde_json::json!({
                "mode": "restore-size", "snapshots_count": chosen.len(), "total_file_count": files,
                "total_dir_count": dirs, "total_size": bytes,
            }),
            StatsMode::RawData => serde_json::json!({
                "mode": "raw-data", "snapshots_count": chosen.len(), "total_blob_count": chunks.len(),
                "total_uncompressed_size": raw, "total_size": raw,
            }),
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    println!(
        "Stats in {} mode over {} snapshot(s):",
        if mode == StatsMode::RawData { "raw-data" } else { "restore-size" },
        chosen.len()
    );
    match mode {
        StatsMode::RestoreSize => {
            println!("  Total file count: {files} ({dirs} directories)");
            println!("  Total size:       {}", ByteSize(bytes));
        }
        StatsMode::RawData => {
            println!("  Total chunk count: {}", chunks.len());
            println!("  Total size:        {} (before encryption and redundancy)", ByteSize(raw));
        }
    }
    Ok(0)
}

/// `scatter dump SNAPSHOT PATH`: the file's bytes on stdout, each chunk verified as a restore
/// verifies it.
pub async fn dump(spec: &str, path: &str) -> Result<i32> {
    let (coord, keys, all) = open_snapshots().await?;
    let snap = snapshots::resolve(&all, spec)?;
    let fetcher = Fetcher::new(&coord, &coord.hosts()?, &keys);
    let mut trees = Trees::new(fetcher.clone());
    let clean = TreePath::parse(&scatter_core::tree::unescape(path))
        .map_err(|e| anyhow::anyhow!("`{path}` is not a path in a snapshot ({e})"))?;
    let node = trees.lookup(snap.snapshot.tree_id(), &clean).await?;
    let Some(node) = node.filter(|n| matches!(n.kind, NodeKind::File { .. })) else {
        bail!(
            "`{path}` is not a file in snapshot {}; `scatter ls {}:{path}` shows what is there",
            snap.short_id(),
            snap.short_id()
        );
    };
    let wanted: Vec<_> = node.chunk_ids().map(|(id, len)| (id, Some(len))).collect();
    let mut stream = fetcher.stream(wanted);
    let mut out = std::io::stdout().lock();
    let mut written = 0u64;
    while let Some(piece) = stream.next().await {
        for chunk in piece? {
            written += chunk.len() as u64;
            match out.write_all(&chunk) {
                // A closed reader (`| head`) wants no more: stop quietly.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(0),
                r => r.context("cannot write to stdout")?,
            }
        }
    }
    if written != node.size {
        bail!("`{path}` came back as {written} bytes, not the {} the snapshot records; run `scatter check`", node.size);
    }
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        r => r.context("cannot write to stdout").map(|()| 0),
    }
}

/// What `tag` does to each snapshot's tags (restic's flags; `a,b` is two tags).
pub struct TagChange {
    /// Tags to add.
    pub add: Vec<String>,
    /// Tags to remove.
    pub remove: Vec<String>,
    /// Replace all tags with these (`--set ""` clears them).
    pub set: Option<Vec<String>>,
}

fn split_tags(list: &[String]) -> Vec<String> {
    list.iter().flat_map(|t| t.split(',')).map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect()
}

impl TagChange {
    /// The tags `old` becomes.
    fn apply(&self, old: &[String]) -> Vec<String> {
        let mut tags: Vec<String> = match &self.set {
            Some(set) => split_tags(set),
            None => old.to_vec(),
        };
        for t in split_tags(&self.add) {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        let remove = split_tags(&self.remove);
        tags.retain(|t| !remove.contains(t));
        tags
    }
}

/// `scatter tag SNAPSHOT... --add/--remove/--set`: each snapshot keeps its id (its record is
/// sealed again and replaced at the coordinator).
pub async fn tag(specs: &[String], change: TagChange, json: bool) -> Result<i32> {
    if change.add.is_empty() && change.remove.is_empty() && change.set.is_none() {
        bail!("say what to change: --add TAG, --remove TAG or --set TAG");
    }
    let (coord, keys, all) = open_snapshots().await?;
    let chosen: Vec<&SnapshotInfo> = specs.iter().map(|s| snapshots::resolve(&all, s)).collect::<Result<_, _>>()?;
    let mut changed = Vec::new();
    for s in chosen {
        let tags = change.apply(&s.snapshot.tags);
        if tags == s.snapshot.tags || changed.iter().any(|(id, _): &(String, Vec<String>)| *id == s.id) {
            continue;
        }
        snapshots::set_tags(&coord, &keys, &s.id, tags.clone()).await?;
        if !json {
            println!("{}  tags: {}", s.short_id(), if tags.is_empty() { "-".into() } else { tags.join(",") });
        }
        changed.push((s.id.clone(), tags));
    }
    if json {
        let v: Vec<_> = changed.iter().map(|(id, tags)| serde_json::json!({"id": id, "tags": tags})).collect();
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "changed": v }))?);
    } else {
        println!("{} snapshot(s) changed; their ids stay.", changed.len());
    }
    Ok(0)
}
