//! Getting files back: `restore` into a directory, and the recovery event — `check-local`
//! compares live files with a snapshot, `recover` puts back exactly what was lost.
//!
//! Files are written under a temporary name and renamed into place once complete, so a file
//! under its final name is always whole. A file already present with the snapshot's content
//! (same size and the same chunk ids when re-chunked) is not fetched again, which is also how
//! an interrupted restore resumes. Metadata (mode, owner when permitted, mtime, xattrs) is
//! applied after content; directories last, deepest first, so their mtimes stick. Files are
//! not fsynced one by one: one `syncfs` per file system at the end makes them durable before
//! the restore reports success.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use globset::{Glob, GlobSetBuilder};
use scatter_core::crypto::DedupKey;
use scatter_core::keys::UserKeys;
use scatter_core::tree::{Node, NodeKind};
use serde::Serialize;

use crate::fetch::{FetchReport, Fetcher};
use crate::partial::PartialFile;
use crate::snapshots::{SnapshotInfo, Trees};
use crate::{ClientError, Progress};

/// What a restore (or recover) did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    /// Files whose content was fetched and written.
    pub files_restored: u64,
    /// Files already present with the right content.
    pub files_unchanged: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Symbolic links created.
    pub symlinks: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Metadata that could not be applied (path, why); content is complete regardless.
    pub warnings: Vec<(PathBuf, String)>,
    /// Packs rebuilt from parity, bad shards and unreachable hosts met on the way.
    #[serde(skip)]
    pub fetch: FetchReport,
    /// Wall time.
    #[serde(skip)]
    pub elapsed: Duration,
}

/// An entry to put back at `dest`.
pub type Entry = (PathBuf, Node);

/// Lists what a restore of `snapshot[:path]` writes below `target`, with `include` globs
/// (matched against the entry's path in the snapshot, or any of its ancestors).
pub async fn plan_restore(
    trees: &mut Trees,
    snap: &SnapshotInfo,
    path: Option<&str>,
    target: &Path,
    include: &[String],
) -> Result<Vec<Entry>, ClientError> {
    let root = snap.snapshot.tree_id();
    let path = path.unwrap_or("/");
    let clean = format!("/{}", path.trim_matches('/'));
    let mut entries = match trees.lookup(root, &clean).await? {
        None => trees.walk(root, "").await?,
        Some(node) => {
            let base = clean.rsplit_once('/').map(|(a, _)| a).unwrap_or("");
            let mut v = vec![(clean.clone(), node.clone())];
            if let Some(sub) = node.subtree() {
                v.extend(trees.walk(sub, &clean).await?);
            }
            // Restore relative to the parent of the selected entry, as restic does.
            v.into_iter().map(|(p, n)| (p[base.len()..].to_owned(), n)).collect()
        }
    };
    if !include.is_empty() {
        let mut b = GlobSetBuilder::new();
        for p in include {
            b.add(Glob::new(p).map_err(|e| ClientError::Invalid(format!("include pattern `{p}`: {e}")))?);
        }
        let set = b.build().map_err(|e| ClientError::Invalid(format!("include patterns: {e}")))?;
        let hit = |p: &str| {
            let mut cur = Path::new(p);
            loop {
                if set.is_match(cur) || cur.file_name().is_some_and(|n| set.is_match(n)) {
                    return true;
                }
                match cur.parent() {
                    Some(parent) if parent != Path::new("/") && !parent.as_os_str().is_empty() => cur = parent,
                    _ => return false,
                }
            }
        };
        let kept: Vec<String> = entries.iter().filter(|(p, _)| hit(p)).map(|(p, _)| p.clone()).collect();
        // Keep the directories that lead to kept entries too, for their metadata.
        let mut needed: HashSet<String> = HashSet::new();
        for p in &kept {
            let mut cur = Path::new(p.as_str());
            while let Some(parent) = cur.parent() {
                needed.insert(parent.to_string_lossy().into_owned());
                cur = parent;
            }
            needed.insert(p.clone());
        }
        entries.retain(|(p, _)| needed.contains(p));
    }
    Ok(entries.into_iter().map(|(p, n)| (target.join(p.trim_start_matches('/')), n)).collect())
}

/// Writes `entries` (directories, then content, then metadata), skipping files whose
/// content is already right.
pub async fn restore_entries(
    fetcher: &Arc<Fetcher>,
    keys: &UserKeys,
    entries: Vec<Entry>,
    progress: &dyn Progress,
) -> Result<RestoreReport, ClientError> {
    let started = Instant::now();
    let dedup = keys.write_keys().dedup_key();
    let mut report = RestoreReport::default();
    for (dest, node) in &entries {
        if node.subtree().is_some() {
            // Something else where the snapshot has a directory is replaced by it.
            if std::fs::symlink_metadata(dest).is_ok_and(|m| !m.is_dir()) {
                remove_any(dest).map_err(ClientError::io(dest))?;
            }
            std::fs::create_dir_all(dest).map_err(ClientError::io(dest))?;
        }
    }
    // Files: decide what to fetch.
    let mut to_fetch: Vec<&Entry> = Vec::new();
    for e @ (dest, node) in &entries {
        match &node.kind {
            NodeKind::File { .. } => {
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent).map_err(ClientError::io(parent))?;
                }
                let d = dest.clone();
                let n = node.clone();
                let dk = dedup.clone();
                let same = tokio::task::spawn_blocking(move || has_content(&d, &n, &dk)).await.unwrap_or(false);
                if same {
                    report.files_unchanged += 1;
                    apply_meta(dest, node, &mut report.warnings);
                } else {
                    to_fetch.push(e);
                }
            }
            NodeKind::Symlink { target } => {
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent).map_err(ClientError::io(parent))?;
                }
                let target = Path::new(std::ffi::OsStr::from_bytes(target));
                if std::fs::read_link(dest).is_ok_and(|t| t == target) {
                    continue;
                }
                if std::fs::symlink_metadata(dest).is_ok() {
                    remove_any(dest).map_err(ClientError::io(dest))?;
                }
                std::os::unix::fs::symlink(target, dest).map_err(ClientError::io(dest))?;
                apply_meta(dest, node, &mut report.warnings);
                report.symlinks += 1;
            }
            NodeKind::Dir { .. } => {}
        }
    }
    progress.start(to_fetch.iter().map(|(_, n)| n.size).sum());

    // Content: one stream over every file's chunks, split back into files as it arrives.
    let wanted: Vec<_> = to_fetch.iter().flat_map(|(_, n)| n.chunk_ids().map(|(id, len)| (id, Some(len)))).collect();
    let mut stream = fetcher.stream(wanted);
    let mut pending: Vec<Vec<u8>> = Vec::new();
    for (dest, node) in &to_fetch {
        progress.item(&dest.to_string_lossy());
        if std::fs::symlink_metadata(dest).is_ok_and(|m| m.is_dir()) {
            remove_any(dest).map_err(ClientError::io(dest))?;
        }
        let mut out = PartialFile::create(dest)?;
        let mut written = 0u64;
        for _ in 0..node.chunk_ids().count() {
            if pending.is_empty() {
                pending = stream
                    .next()
                    .await
                    .ok_or_else(|| ClientError::Unrecoverable("the chunk stream ended early".into()))??;
                pending.reverse();
            }
            let chunk = pending.pop().ok_or_else(|| ClientError::Unrecoverable("an empty run was fetched".into()))?;
            crate::stats::time(crate::stats::Stage::Write, chunk.len() as u64, || out.write(&chunk))?;
            written += chunk.len() as u64;
            progress.advance(chunk.len() as u64);
        }
        if written != node.size {
            return Err(ClientError::Unrecoverable(format!(
                "{}: {written} bytes were recovered but the snapshot records {}",
                dest.display(),
                node.size
            )));
        }
        out.commit_unsynced()?;
        apply_meta(dest, node, &mut report.warnings);
        report.files_restored += 1;
        report.bytes_written += written;
    }
    // Directories last, deepest first, so writing inside them does not move their mtime.
    let mut dirs: Vec<&Entry> = entries.iter().filter(|(_, n)| n.subtree().is_some()).collect();
    dirs.sort_by_key(|(d, _)| std::cmp::Reverse(d.components().count()));
    for (dest, node) in dirs {
        apply_meta(dest, node, &mut report.warnings);
        report.dirs += 1;
    }
    // One sync for all files instead of one per file (10,000 small files would otherwise cost
    // 10,000 fsyncs). Until it returns nothing is reported done; a restore cut short by a
    // crash is simply run again, and files whose content is not right are fetched again.
    let mut synced: Vec<&Path> = Vec::new();
    for (dest, _) in &to_fetch {
        let dir = dest.parent().unwrap_or(Path::new("/"));
        if !synced.iter().any(|d| same_fs(d, dir)) {
            crate::partial::sync_fs(dir)?;
            synced.push(dir);
        }
    }
    report.fetch = fetcher.report();
    report.elapsed = started.elapsed();
    Ok(report)
}

fn same_fs(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev(),
        _ => false,
    }
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether the regular file at `path` holds exactly `node`'s content (re-chunked and hashed).
pub fn has_content(path: &Path, node: &Node, dedup: &DedupKey) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return false };
    if !meta.is_file() || meta.len() != node.size {
        return false;
    }
    let Ok(file) = std::fs::File::open(path) else { return false };
    let mut want = node.chunk_ids();
    for chunk in scatter_core::chunker::chunks(file) {
        let Ok(chunk) = chunk else { return false };
        match want.next() {
            Some((id, len)) if len as usize == chunk.data.len() && dedup.chunk_id(&chunk.data) == id => {}
            _ => return false,
        }
    }
    want.next().is_none()
}

/// Applies mode, owner (when permitted), xattrs and mtime; failures become warnings.
fn apply_meta(path: &Path, node: &Node, warnings: &mut Vec<(PathBuf, String)>) {
    use std::os::unix::fs::PermissionsExt;
    let is_link = matches!(node.kind, NodeKind::Symlink { .. });
    // Ownership only when running as root, or when it is already ours (nothing to change).
    if let Err(e) = std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid)) {
        if e.raw_os_error() != Some(1) {
            warnings.push((path.to_owned(), format!("owner: {e}")));
        }
    }
    if !is_link {
        if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(node.mode)) {
            warnings.push((path.to_owned(), format!("mode: {e}")));
        }
        for (name, value) in &node.xattrs {
            if let Err(e) = xattr::set(path, std::ffi::OsStr::from_bytes(name), value) {
                warnings.push((path.to_owned(), format!("xattr {}: {e}", String::from_utf8_lossy(name))));
            }
        }
    }
    let mtime = filetime::FileTime::from_unix_time(
        node.mtime_ns.div_euclid(1_000_000_000),
        node.mtime_ns.rem_euclid(1_000_000_000) as u32,
    );
    let set = if is_link {
        filetime::set_symlink_file_times(path, mtime, mtime)
    } else {
        filetime::set_file_mtime(path, mtime)
    };
    if let Err(e) = set {
        warnings.push((path.to_owned(), format!("mtime: {e}")));
    }
}

/// How a live entry compares with the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalState {
    /// Gone from the live file system.
    Missing,
    /// Same size and mtime as in the snapshot but different content: silent corruption.
    Corrupt,
    /// Changed since the snapshot (size, mtime or type differ): most likely a legitimate edit.
    Modified,
    /// Present live but not in the snapshot.
    New,
}

/// One finding of `check-local`.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The live path.
    pub path: PathBuf,
    /// What is wrong.
    pub state: LocalState,
    /// The snapshot's entry (absent for new files).
    #[serde(skip)]
    pub node: Option<Node>,
}

/// Compares the live files below `path` (default: all the snapshot's paths) with `snap`.
pub async fn check_local(
    trees: &mut Trees,
    keys: &UserKeys,
    snap: &SnapshotInfo,
    path: Option<&Path>,
    progress: &dyn Progress,
) -> Result<Vec<Finding>, ClientError> {
    let root = snap.snapshot.tree_id();
    let scope: Vec<String> = match path {
        Some(p) => vec![p.to_string_lossy().into_owned()],
        None => snap.snapshot.paths.clone(),
    };
    let mut entries: Vec<(String, Node)> = Vec::new();
    for s in &scope {
        let clean = format!("/{}", s.trim_matches('/'));
        match trees.lookup(root, &clean).await {
            Ok(Some(node)) => {
                entries.push((clean.clone(), node.clone()));
                if let Some(sub) = node.subtree() {
                    entries.extend(trees.walk(sub, &clean).await?);
                }
            }
            Ok(None) => entries.extend(trees.walk(root, "").await?),
            Err(_) => {
                return Err(ClientError::Invalid(format!(
                    "{s} is not in snapshot {}; pick another with --snapshot",
                    snap.short_id()
                )))
            }
        }
    }
    progress.start(entries.iter().map(|(_, n)| n.size).sum());
    let dedup = keys.write_keys().dedup_key();
    let snapshot_paths: HashSet<&str> = entries.iter().map(|(p, _)| p.as_str()).collect();
    let mut findings = Vec::new();
    let mut missing_dirs: Vec<PathBuf> = Vec::new();
    for (p, node) in &entries {
        let live = PathBuf::from(p);
        if missing_dirs.iter().any(|d| live.starts_with(d)) {
            findings.push(Finding { path: live, state: LocalState::Missing, node: Some(node.clone()) });
            continue;
        }
        let meta = match std::fs::symlink_metadata(&live) {
            Ok(m) => m,
            Err(_) => {
                if node.subtree().is_some() {
                    missing_dirs.push(live.clone());
                }
                findings.push(Finding { path: live, state: LocalState::Missing, node: Some(node.clone()) });
                continue;
            }
        };
        let state = match &node.kind {
            NodeKind::File { .. } => {
                progress.item(p);
                let mtime = meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec());
                if !meta.is_file() || meta.len() != node.size || mtime != node.mtime_ns {
                    Some(LocalState::Modified)
                } else {
                    let (l, n, d) = (live.clone(), node.clone(), dedup.clone());
                    let same = tokio::task::spawn_blocking(move || has_content(&l, &n, &d)).await.unwrap_or(false);
                    progress.advance(node.size);
                    (!same).then_some(LocalState::Corrupt)
                }
            }
            NodeKind::Dir { .. } => {
                if !meta.is_dir() {
                    Some(LocalState::Modified)
                } else {
                    for e in std::fs::read_dir(&live).into_iter().flatten().flatten() {
                        let child = e.path();
                        let name = child.to_string_lossy();
                        if !snapshot_paths.contains(name.as_ref())
                            && !e.file_name().as_bytes().ends_with(crate::partial::PARTIAL_SUFFIX.as_bytes())
                        {
                            findings.push(Finding { path: child.clone(), state: LocalState::New, node: None });
                        }
                    }
                    None
                }
            }
            NodeKind::Symlink { target } => {
                let same = std::fs::read_link(&live).is_ok_and(|t| t.as_os_str().as_bytes() == target.as_slice());
                (!same).then_some(LocalState::Modified)
            }
        };
        if let Some(state) = state {
            findings.push(Finding { path: live, state, node: Some(node.clone()) });
        }
    }
    findings.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(findings)
}

/// Picks the snapshot `check-local`/`recover` compare with: `spec` if given, else the newest
/// snapshot of this host whose paths cover `path` (or any, without a path).
pub fn pick_for_path<'a>(
    all: &'a [SnapshotInfo],
    spec: Option<&str>,
    path: Option<&Path>,
    hostname: &str,
) -> Result<&'a SnapshotInfo, ClientError> {
    if let Some(spec) = spec {
        return crate::snapshots::resolve(all, spec);
    }
    // Only snapshots that count as the owner's own: an untrusted delegate's may claim any
    // host and paths.
    let covers =
        |s: &SnapshotInfo| s.trusted && path.is_none_or(|p| s.snapshot.paths.iter().any(|sp| p.starts_with(sp)));
    all.iter()
        .rev()
        .find(|s| s.snapshot.hostname == hostname && covers(s))
        .or_else(|| all.iter().rev().find(|s| covers(s)))
        .ok_or_else(|| {
            ClientError::Invalid(match path {
                Some(p) => format!("no snapshot covers {}; back it up first, or pick one with --snapshot", p.display()),
                None => "there are no snapshots yet; run `scatter backup PATH` first".into(),
            })
        })
}
