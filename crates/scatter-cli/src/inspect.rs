//! Commands that read snapshots without restoring them, as restic has them: `stats` (how big
//! snapshots are) and `dump` (one file's bytes on stdout).

use std::collections::HashMap;
use std::io::Write;

use anyhow::{bail, Result};
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
    let mut total = Tally::default();
    let mut counted = 0;
    for s in &chosen {
        match tally(&mut trees, s.snapshot.tree_id(), mode, &total.chunks).await {
            Ok(t) => {
                total.add(t);
                counted += 1;
            }
            // Over every snapshot, one that cannot be read is named and left out.
            Err(e) if specs.is_empty() => crate::backups::left_out(s, &e),
            Err(e) => return Err(e.context(format!("snapshot {} could not be read", s.short_id()))),
        }
    }
    let Tally { files, dirs, bytes, chunks } = total;
    let raw: u64 = chunks.values().sum();
    if json {
        let v = match mode {
            StatsMode::RestoreSize => serde_json::json!({
                "mode": "restore-size", "snapshots_count": counted, "total_file_count": files,
                "total_dir_count": dirs, "total_size": bytes,
            }),
            StatsMode::RawData => serde_json::json!({
                "mode": "raw-data", "snapshots_count": counted, "total_blob_count": chunks.len(),
                "total_uncompressed_size": raw, "total_size": raw,
            }),
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    println!(
        "Stats in {} mode over {} snapshot(s):",
        if mode == StatsMode::RawData { "raw-data" } else { "restore-size" },
        counted
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

/// What `stats` counts over one snapshot or several.
#[derive(Default)]
struct Tally {
    files: u64,
    dirs: u64,
    bytes: u64,
    /// Chunk id to plaintext length, each counted once however often it is referenced.
    chunks: HashMap<ChunkId, u64>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.files += other.files;
        self.dirs += other.dirs;
        self.bytes += other.bytes;
        self.chunks.extend(other.chunks);
    }
}

/// Counts one snapshot's tree (whole, or not at all: a tree that cannot be read fails it);
/// the subtrees in `known` (counted for snapshots before) are not fetched again.
async fn tally(trees: &mut Trees, root: ChunkId, mode: StatsMode, known: &HashMap<ChunkId, u64>) -> Result<Tally> {
    let mut t = Tally::default();
    if mode == StatsMode::RawData {
        let len = trees.get(root).await?.encode().len() as u64;
        t.chunks.insert(root, len);
    }
    for (_, node) in trees.walk(root, &TreePath::root()).await? {
        match &node.kind {
            NodeKind::File { .. } => {
                t.files += 1;
                t.bytes += node.size;
                t.chunks.extend(node.chunk_ids().map(|(id, len)| (id, u64::from(len))));
            }
            NodeKind::Dir { .. } => {
                t.dirs += 1;
                if let (StatsMode::RawData, Some(sub)) = (mode, node.subtree().filter(|s| !known.contains_key(s))) {
                    if let std::collections::hash_map::Entry::Vacant(slot) = t.chunks.entry(sub) {
                        slot.insert(trees.get(sub).await?.encode().len() as u64);
                    }
                }
            }
            NodeKind::Symlink { .. } => {}
        }
    }
    Ok(t)
}

/// `scatter dump SNAPSHOT PATH`: a file's bytes on stdout, or a directory (`/` for the whole
/// snapshot) as a tar stream with paths as in the snapshot, less the leading `/` (what
/// `restore --target` would write below the target). Every chunk is verified as a restore
/// verifies it.
pub async fn dump(spec: &str, path: &str) -> Result<i32> {
    let (coord, keys, all) = open_snapshots().await?;
    let snap = snapshots::resolve(&all, spec)?;
    let fetcher = Fetcher::new(&coord, &coord.hosts()?, &keys);
    let mut trees = Trees::new(fetcher.clone());
    let clean = TreePath::parse(&scatter_core::tree::unescape(path))
        .map_err(|e| anyhow::anyhow!("`{path}` is not a path in a snapshot ({e})"))?;
    let root = snap.snapshot.tree_id();
    let mut out = std::io::stdout().lock();
    let done = match trees.lookup(root, &clean).await? {
        Some(node) if matches!(node.kind, NodeKind::File { .. }) => {
            write_file(&fetcher, &node, &clean, &mut out, |_| Ok(())).await
        }
        None if clean.is_root() => {
            let entries = trees.walk(root, &TreePath::root()).await?;
            write_tar(&fetcher, entries, snap.trusted, &mut out).await
        }
        Some(node) if node.subtree().is_some() => {
            let mut entries = vec![(clean.clone(), node.clone())];
            if let Some(sub) = node.subtree() {
                entries.extend(trees.walk(sub, &clean).await?);
            }
            write_tar(&fetcher, entries, snap.trusted, &mut out).await
        }
        _ => bail!(
            "`{path}` is a symlink in snapshot {}, not a file or directory; `scatter ls {}:{path}` shows it",
            snap.short_id(),
            snap.short_id()
        ),
    };
    match done.and_then(|()| out.flush().map_err(anyhow::Error::from)) {
        // A closed reader (`| head`) wants no more: stop quietly, with SIGPIPE's status.
        Err(e) if crate::is_closed_pipe(&e) => Ok(141),
        Err(e) if e.downcast_ref::<std::io::Error>().is_some() => {
            Err(e.context("cannot write the dump to stdout; check where it goes"))
        }
        Err(e) => Err(e),
        Ok(()) => Ok(0),
    }
}

/// Writes a file's chunks to `out`, then `after(size)` (tar padding); checks the size.
async fn write_file(
    fetcher: &std::sync::Arc<Fetcher>,
    node: &scatter_core::tree::Node,
    path: &TreePath,
    out: &mut impl Write,
    after: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let wanted: Vec<_> = node.chunk_ids().map(|(id, len)| (id, Some(len))).collect();
    let mut stream = fetcher.stream(wanted);
    let mut written = 0u64;
    while let Some(piece) = stream.next().await {
        for chunk in piece? {
            written += chunk.len() as u64;
            if written > node.size {
                bail!(
                    "`{}` came back longer than the {} bytes the snapshot records; run `scatter check`",
                    path.display(),
                    node.size
                );
            }
            out.write_all(&chunk)?;
        }
    }
    if written != node.size {
        bail!(
            "`{}` came back as {written} bytes, not the {} the snapshot records; run `scatter check`",
            path.display(),
            node.size
        );
    }
    after(out)?;
    Ok(())
}

/// A tar stream (GNU format: long names and link targets as `././@LongLink` entries) of
/// `entries`, depth first: a directory right before what it holds, so that tar, which sets
/// a directory's mtime once it has left it, keeps it (the walk's level order would have it
/// left and then entered again). Another name of a file written before is a hard link to it
/// (as a restore makes it).
async fn write_tar(
    fetcher: &std::sync::Arc<Fetcher>,
    mut entries: Vec<(TreePath, scatter_core::tree::Node)>,
    trusted: bool,
    out: &mut impl Write,
) -> Result<()> {
    entries.sort_by(|(a, _), (b, _)| a.components().cmp(b.components()));
    if !trusted {
        // Written by a delegate the owner does not trust: no set-id bits, the caller's owner.
        scatter_client::restore::distrust_metadata(entries.iter_mut().map(|(_, n)| n));
    }
    let links = scatter_client::restore::hard_links(&entries);
    let tar_name = |path: &TreePath| path.to_absolute_bytes()[1..].to_vec();
    for (i, (path, node)) in entries.iter().enumerate() {
        let mut name = tar_name(path);
        if let Some(first) = links.get(&i) {
            out.write_all(&tar::header(&name, b'1', node, 0, &tar_name(&entries[*first].0)))?;
            continue;
        }
        match &node.kind {
            NodeKind::Dir { .. } => {
                name.push(b'/');
                out.write_all(&tar::header(&name, b'5', node, 0, b""))?;
            }
            NodeKind::Symlink { target } => out.write_all(&tar::header(&name, b'2', node, 0, target))?,
            NodeKind::File { .. } => {
                out.write_all(&tar::header(&name, b'0', node, node.size, b""))?;
                let pad = tar::padding(node.size);
                write_file(fetcher, node, path, out, |o| o.write_all(&[0; 512][..pad])).await?;
            }
        }
    }
    // The end of an archive: two empty blocks.
    out.write_all(&[0; 1024])?;
    Ok(())
}

/// Tar headers, written by hand: a few dozen lines instead of a dependency.
mod tar {
    use scatter_core::tree::Node;

    /// The header block(s) of one entry: a GNU long-name and long-link entry first when the
    /// name or link target does not fit in 100 bytes.
    pub fn header(name: &[u8], kind: u8, node: &Node, size: u64, link: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        for (long, k) in [(name, b'L'), (link, b'K')] {
            if long.len() > 99 {
                let mut data = long.to_vec();
                data.push(0);
                out.extend(block(b"././@LongLink", k, 0o644, 0, 0, data.len() as u64, 0, b""));
                let len = data.len();
                out.extend(data);
                out.extend(std::iter::repeat_n(0, padding(len as u64)));
            }
        }
        let mtime = u64::try_from(node.mtime_ns.div_euclid(1_000_000_000)).unwrap_or(0);
        out.extend(block(name, kind, node.mode, node.uid, node.gid, size, mtime, link));
        out
    }

    /// Zero bytes after `size` bytes of data, up to a whole 512-byte block.
    pub fn padding(size: u64) -> usize {
        ((512 - size % 512) % 512) as usize
    }

    #[allow(clippy::too_many_arguments)]
    fn block(name: &[u8], kind: u8, mode: u32, uid: u32, gid: u32, size: u64, mtime: u64, link: &[u8]) -> [u8; 512] {
        let mut b = [0u8; 512];
        let cut = |s: &[u8], n: usize| s[..s.len().min(n)].to_vec();
        b[..name.len().min(100)].copy_from_slice(&cut(name, 100));
        number(&mut b[100..108], u64::from(mode & 0o7777));
        number(&mut b[108..116], u64::from(uid));
        number(&mut b[116..124], u64::from(gid));
        number(&mut b[124..136], size);
        number(&mut b[136..148], mtime);
        b[156] = kind;
        b[157..157 + link.len().min(100)].copy_from_slice(&cut(link, 100));
        b[257..265].copy_from_slice(b"ustar  \0");
        // The checksum is taken with its own field as spaces.
        b[148..156].copy_from_slice(b"        ");
        let sum: u32 = b.iter().map(|x| u32::from(*x)).sum();
        b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        b
    }

    /// An octal field with its NUL, or base-256 (GNU) when the value does not fit.
    fn number(field: &mut [u8], v: u64) {
        let digits = field.len() - 1;
        if v < 1 << (3 * digits) {
            field.copy_from_slice(format!("{v:0digits$o}\0").as_bytes());
        } else {
            field.fill(0);
            field[0] = 0x80;
            let (n, k) = (field.len(), (field.len() - 1).min(8));
            field[n - k..].copy_from_slice(&v.to_be_bytes()[8 - k..]);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn numbers_and_checksums() {
            let mut f = [0u8; 12];
            number(&mut f, 0o755);
            assert_eq!(&f, b"00000000755\0");
            number(&mut f, 1 << 40);
            assert_eq!(f, [0x80, 0, 0, 0, 0, 0, 0x01, 0, 0, 0, 0, 0]);
            let mut small = [0u8; 8];
            number(&mut small, 4_000_000_000);
            assert_eq!(small, [0x80, 0, 0, 0, 0xee, 0x6b, 0x28, 0]);
            assert_eq!(padding(0), 0);
            assert_eq!(padding(1), 511);
            assert_eq!(padding(512), 0);
        }
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
