//! `scatter backup`: a directory walk turned into a snapshot.
//!
//! A walker thread visits the paths depth first. A file whose size, mtime and inode equal its
//! entry in the parent snapshot is not read again: its chunk list is reused. Other files are
//! chunked (content-defined, so an edit re-uploads about the chunks around it) and hashed.
//! Every directory becomes a [`Tree`] blob, itself a chunk. Chunks flow in batches to the
//! [`Uploader`], which skips what the grid already stores. At the end the snapshot's chunk
//! references are sent in batches and the sealed record committed in one transaction; until
//! then nothing of the run is visible, and a rerun after a crash uploads only what is missing
//! (packs are committed as they complete).

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use globset::{Glob, GlobSet, GlobSetBuilder};
use rand::RngCore;
use scatter_core::chunker::{Chunk, ChunkError};
use scatter_core::crypto::DedupKey;
use scatter_core::keys::UserKeys;
use scatter_core::snapshot::{Excluded, Snapshot, Summary, SNAPSHOT_CONTEXT};
use scatter_core::tree::{Node, NodeKind, Tree};
use scatter_core::ChunkId;
use scatter_proto::api::{CommitSnapshotRequest, ErrorCode};
use tokio::sync::mpsc;

use crate::confined;
use crate::coordinator::Coordinator;
use crate::fetch::Fetcher;
use crate::hosts::Hosts;
use crate::session::Session;
use crate::snapshots::{self, Trees};
use crate::upload::{Redundancy, Uploader};
use crate::{ClientError, Progress};

/// A batch goes to the uploader at this many chunks or bytes, whichever comes first.
const BATCH_CHUNKS: usize = 64;
const BATCH_BYTES: usize = 8 << 20;
/// Chunks with their ids, on their way to the uploader: file data, or encoded trees (which
/// go to packs of their own).
enum Batch {
    Data(Vec<(ChunkId, Vec<u8>)>),
    Trees(Vec<(ChunkId, Vec<u8>)>),
}

/// Chunk references sent per request.
const REFS_BATCH: usize = 50_000;

/// What to back up and how.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Files and directories to back up.
    pub paths: Vec<PathBuf>,
    /// Tags stored with the snapshot.
    pub tags: Vec<String>,
    /// Glob patterns to leave out: a pattern without `/` matches a name anywhere, one with
    /// `/` matches the absolute path.
    pub excludes: Vec<String>,
    /// Stay on the file system of each path.
    pub one_file_system: bool,
    /// Redundancy of new packs.
    pub redundancy: Redundancy,
    /// Conditions on the hosts the data goes to, over the user's stored policy.
    pub policy: scatter_proto::api::Policy,
    /// Host name to record (default: this machine's).
    pub hostname: Option<String>,
    /// Read every file even if the parent snapshot says it is unchanged.
    pub force: bool,
    /// Trust a file's size and mtime alone, whatever its inode number (as restic's
    /// `--ignore-inode`): after a restore, which gives every file a new inode, or on file
    /// systems whose inode numbers do not last (some FUSE and network mounts).
    pub ignore_inode: bool,
    /// Leave out files larger than this many bytes.
    pub exclude_larger_than: Option<u64>,
    /// Markers, as restic's `--exclude-if-present NAME[:HEADER]`: a directory holding a file
    /// of this name (starting with the header, when given) keeps only that file.
    pub exclude_if_present: Vec<Marker>,
    /// Walk, read and look up everything, but upload and commit nothing: the report says what
    /// a backup would add.
    pub dry_run: bool,
    /// Object lock and expiry asked for the snapshot (the coordinator decides and enforces).
    pub retention: scatter_proto::api::Retention,
}

/// A file whose presence leaves the rest of its directory out of a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// The file's name.
    pub name: std::ffi::OsString,
    /// The bytes the file must start with, if any.
    pub header: Option<Vec<u8>>,
}

impl Marker {
    /// `NAME` or `NAME:HEADER`, as restic writes them.
    pub fn parse(spec: &str) -> Result<Self, ClientError> {
        let (name, header) = match spec.split_once(':') {
            Some((n, h)) => (n, Some(h.as_bytes().to_vec())),
            None => (spec, None),
        };
        if name.is_empty() || name.contains('/') {
            return Err(ClientError::Invalid(format!(
                "`{spec}` is not a file name for --exclude-if-present; give a name such as .nobackup"
            )));
        }
        Ok(Self { name: name.into(), header })
    }

    /// The marker of the Cache Directory Tagging Standard (`--exclude-caches`).
    pub fn cachedir_tag() -> Self {
        Self { name: "CACHEDIR.TAG".into(), header: Some(b"Signature: 8a477f597d28d172789f06886806bc55".to_vec()) }
    }

    /// Whether `dir` holds this marker.
    fn is_in(&self, dir: &Path) -> bool {
        let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC;
        rustix::fs::open(dir, flags, rustix::fs::Mode::empty()).is_ok_and(|fd| self.is_at(fd.as_fd()))
    }

    /// Whether the open directory `dir` holds this marker (a symlink named like it does
    /// not count when a header is required).
    fn is_at(&self, dir: BorrowedFd<'_>) -> bool {
        let name = self.name.as_bytes();
        match &self.header {
            None => confined::stat_at(dir, name).is_ok_and(|st| st.is_some()),
            Some(h) => {
                let mut start = vec![0u8; h.len()];
                confined::open_file_at(dir, name)
                    .ok()
                    .flatten()
                    .is_some_and(|mut f| std::io::Read::read_exact(&mut f, &mut start).is_ok_and(|()| start == *h))
            }
        }
    }
}

/// What a backup did.
#[derive(Debug, Clone, Default)]
pub struct BackupReport {
    /// The new snapshot's id.
    pub snapshot: String,
    /// The parent snapshot compared against, if any.
    pub parent: Option<String>,
    /// Counters (also stored in the snapshot).
    pub summary: Summary,
    /// Chunks uploaded.
    pub new_chunks: usize,
    /// Shard bytes sent to hosts (with redundancy).
    pub bytes_uploaded: u64,
    /// Entries that could not be read, with why; they are not in the snapshot.
    pub errors: Vec<(PathBuf, String)>,
    /// FIFOs, sockets and devices, with which: a snapshot holds no such entry.
    pub skipped: Vec<(PathBuf, &'static str)>,
    /// Wall time.
    pub elapsed: Duration,
    /// A dry run: `snapshot` is empty, nothing was uploaded, `summary.bytes_new` and
    /// `new_chunks` are what a backup would have added.
    pub dry_run: bool,
}

/// The most exclude patterns a backup takes (and a snapshot record may carry).
pub const MAX_EXCLUDES: usize = 4096;

/// Which entries a walk leaves out.
#[derive(Clone)]
pub struct Filter {
    names: GlobSet,
    paths: GlobSet,
    one_file_system: bool,
    larger_than: Option<u64>,
    markers: Vec<Marker>,
}

impl Filter {
    /// The filter a backup run recorded in its snapshot.
    pub fn recorded(rules: &Excluded) -> Result<Self, ClientError> {
        // The record is its writer's word: a marker names one file of the directory checked
        // (as `Marker::parse` requires), never a path that leads elsewhere.
        let one_name = |n: &[u8]| !n.is_empty() && n != b"." && n != b".." && !n.contains(&b'/') && !n.contains(&0);
        let markers = rules
            .markers
            .iter()
            .filter(|(name, _)| one_name(name))
            .map(|(name, header)| Marker { name: OsString::from_vec(name.clone()), header: header.clone() })
            .collect();
        Ok(Self::new(&rules.patterns, rules.one_file_system)?.larger_than(rules.larger_than).markers(markers))
    }

    /// Compiles exclude patterns.
    pub fn new(excludes: &[String], one_file_system: bool) -> Result<Self, ClientError> {
        // Every path of a walk is matched against all of them: a snapshot record (which
        // check-local reads back) with tens of thousands would cost milliseconds per path.
        if excludes.len() > MAX_EXCLUDES {
            return Err(ClientError::Invalid(format!(
                "{} exclude patterns are more than the {MAX_EXCLUDES} a backup takes; merge some (a pattern can use `{{a,b}}` and `**`)",
                excludes.len()
            )));
        }
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for p in excludes {
            let glob = Glob::new(p.trim_end_matches('/'))
                .map_err(|e| ClientError::Invalid(format!("exclude pattern `{p}` is not a valid glob: {e}")))?;
            if p.contains('/') {
                paths.add(glob);
            } else {
                names.add(glob);
            }
        }
        let build = |b: GlobSetBuilder| b.build().map_err(|e| ClientError::Invalid(format!("exclude patterns: {e}")));
        Ok(Self { names: build(names)?, paths: build(paths)?, one_file_system, larger_than: None, markers: Vec::new() })
    }

    /// Also leaves out files larger than `max` bytes.
    pub fn larger_than(self, max: Option<u64>) -> Self {
        Self { larger_than: max, ..self }
    }

    /// Also leaves out what a directory holds besides one of these markers.
    pub fn markers(self, markers: Vec<Marker>) -> Self {
        Self { markers, ..self }
    }

    /// The marker `dir` holds, if any: then only that file of the directory is kept.
    pub fn marker_in(&self, dir: &Path) -> Option<&Marker> {
        self.markers.iter().find(|m| m.is_in(dir))
    }

    /// The marker the open directory `dir` holds, if any.
    pub fn marker_at(&self, dir: BorrowedFd<'_>) -> Option<&Marker> {
        self.markers.iter().find(|m| m.is_at(dir))
    }

    /// Whether `path` (with metadata `meta`, below a root on device `root_dev`) is left out.
    pub fn excludes(&self, path: &Path, meta: &std::fs::Metadata, root_dev: u64) -> bool {
        self.leaves_out(path, meta.is_dir(), meta.is_file().then_some(meta.len()), meta.dev() != root_dev)
    }

    /// Whether the entry at `path` is left out: a directory (`dir`) or a regular file of
    /// `file_size` bytes, on another device than the backed-up path it lies in
    /// (`other_device`).
    pub fn leaves_out(&self, path: &Path, dir: bool, file_size: Option<u64>, other_device: bool) -> bool {
        path.file_name().is_some_and(|n| self.names.is_match(n))
            || self.paths.is_match(path)
            || (self.one_file_system && dir && other_device)
            || file_size.is_some_and(|len| self.larger_than.is_some_and(|max| len > max))
    }
}

/// Metadata of an entry, without its content.
pub fn node_meta(name: &[u8], meta: &std::fs::Metadata, kind: NodeKind, path: &Path) -> Node {
    let xattrs = if meta.file_type().is_symlink() { Vec::new() } else { read_xattrs(path) };
    Node {
        name: name.to_vec(),
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime_ns: meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec()),
        size: if meta.is_file() { meta.len() } else { 0 },
        inode: meta.ino(),
        dev: meta.dev(),
        xattrs,
    }
}

fn read_xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Ok(names) = xattr::list(path) else { return Vec::new() };
    let mut out: Vec<(Vec<u8>, Vec<u8>)> =
        names.filter_map(|n| xattr::get(path, &n).ok().flatten().map(|v| (n.as_bytes().to_vec(), v))).collect();
    out.sort();
    out
}

/// Backs up `opts.paths` as a new snapshot.
pub async fn backup(
    coord: &Coordinator,
    keys: &UserKeys,
    opts: &BackupOptions,
    hosts: &Hosts,
    progress: Arc<dyn Progress>,
) -> Result<BackupReport, ClientError> {
    let started = Instant::now();
    let time_ns =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
    // The snapshot records the rules, and the walk applies exactly what it records.
    let excluded = Excluded {
        patterns: opts.excludes.clone(),
        one_file_system: opts.one_file_system,
        larger_than: opts.exclude_larger_than,
        markers: opts.exclude_if_present.iter().map(|m| (m.name.as_bytes().to_vec(), m.header.clone())).collect(),
    };
    let filter = Filter::recorded(&excluded)?;
    let roots = absolute_roots(&opts.paths)?;
    let hostname = opts.hostname.clone().unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned());
    let path_strings: Vec<String> = roots.iter().map(|p| p.to_string_lossy().into_owned()).collect();

    // The parent: the newest snapshot of the same host and paths that counts as the owner's
    // own (an untrusted delegate's tree could pass its chunks off as the owner's unchanged
    // files). Only readable with the private key and the right to list: a write-only machine
    // or an appender re-reads files but still deduplicates.
    let mut parent = None;
    if keys.can_read() && !opts.force {
        let all = match snapshots::list(coord, keys).await {
            Ok(all) => all.snapshots,
            Err(ClientError::Api { code: ErrorCode::Forbidden, .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        parent = all
            .into_iter()
            .rev()
            .find(|s| s.trusted && s.snapshot.hostname == hostname && s.snapshot.paths == path_strings)
            .map(|s| (s.id, s.snapshot.tree_id()));
    }

    // Size the job for the progress bar on a thread of its own.
    if progress.wants_total() {
        let (roots, filter, progress) = (roots.clone(), filter.clone(), progress.clone());
        std::thread::spawn(move || progress.start(scan_size(&roots, &filter)));
    }

    if opts.dry_run {
        return dry_run(coord, keys, hosts, progress, roots, filter, parent, opts.ignore_inode, started).await;
    }
    let session = Session::open(coord, keys.write_keys()).await?;
    let mut uploader =
        Uploader::new(coord, hosts, session.id, session.key.clone(), opts.redundancy, opts.policy.clone(), false)?;
    // The bar counts what is on the grid, not what was read: reading runs ahead of uploads.
    uploader.report_to(progress.clone());
    // One batch read ahead: the uploader holds another while its dedup lookup runs.
    let (tx, mut rx) = mpsc::channel::<Batch>(1);
    let parent_tree = parent.as_ref().map(|p| p.1);
    let walker = spawn_walker(coord, keys, hosts, progress, roots, filter, parent_tree, opts.ignore_inode, tx);
    let stored: Result<(), ClientError> = async {
        while let Some(batch) = rx.recv().await {
            match batch {
                Batch::Data(chunks) => uploader.add(chunks).await?,
                Batch::Trees(trees) => uploader.add_trees(trees).await?,
            };
        }
        Ok(())
    }
    .await;
    if let Err(e) = stored {
        walker.abort();
        return Err(e);
    }
    let (root, walker) = walker.await.map_err(|e| ClientError::Invalid(format!("the directory walk failed: {e}")))?;
    let root = root?;
    let stats = uploader.finish().await?;

    let mut summary = walker.summary;
    summary.bytes_new = stats.new_bytes;
    let refs: Vec<ChunkId> = walker.refs.into_iter().collect();
    for batch in refs.chunks(REFS_BATCH) {
        coord.snapshot_refs(session.id, batch.to_vec()).await?;
    }
    let snapshot = Snapshot {
        time_ns,
        hostname,
        username: std::env::var("USER").unwrap_or_else(|_| format!("uid {}", current_uid())),
        paths: path_strings,
        tags: opts.tags.clone(),
        tree: *root.as_bytes(),
        parent: parent.as_ref().map(|p| p.0.clone()),
        summary: summary.clone(),
        excluded,
    };
    let id = {
        let mut b = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        hex::encode(b)
    };
    let record = session.key.seal(SNAPSHOT_CONTEXT, &snapshot.encode());
    coord
        .commit_snapshot(&CommitSnapshotRequest {
            session: session.id,
            id: id.clone(),
            record: B64.encode(record),
            retention: opts.retention.clone(),
        })
        .await?;
    drop(session);
    Ok(BackupReport {
        snapshot: id,
        parent: parent.map(|p| p.0),
        summary,
        new_chunks: stats.new_chunks,
        bytes_uploaded: stats.bytes_uploaded,
        errors: walker.errors,
        skipped: walker.skipped,
        elapsed: started.elapsed(),
        dry_run: false,
    })
}

/// Starts the directory walk on the blocking pool; it sends its chunks to `tx`.
#[allow(clippy::too_many_arguments)]
fn spawn_walker(
    coord: &Coordinator,
    keys: &UserKeys,
    hosts: &Hosts,
    progress: Arc<dyn Progress>,
    roots: Vec<PathBuf>,
    filter: Filter,
    parent_tree: Option<ChunkId>,
    ignore_inode: bool,
    tx: mpsc::Sender<Batch>,
) -> tokio::task::JoinHandle<(Result<ChunkId, ClientError>, Walker)> {
    let mut w = Walker {
        tx: Some(tx),
        ignore_inode,
        dedup: keys.write_keys().dedup_key(),
        filter,
        trees: parent_tree.map(|_| Trees::new(Fetcher::new(coord, hosts, keys))),
        runtime: tokio::runtime::Handle::current(),
        progress,
        data: Default::default(),
        tree_blobs: Default::default(),
        refs: HashSet::new(),
        summary: Summary::default(),
        errors: Vec::new(),
        skipped: Vec::new(),
        links: HashMap::new(),
    };
    tokio::task::spawn_blocking(move || {
        let root = w.walk_roots(&roots, parent_tree);
        w.tx = None;
        (root, w)
    })
}

/// The walk of a backup, with every chunk looked up instead of uploaded: what is not stored
/// yet is what the backup would add. No session is opened and nothing is committed.
#[allow(clippy::too_many_arguments)]
async fn dry_run(
    coord: &Coordinator,
    keys: &UserKeys,
    hosts: &Hosts,
    progress: Arc<dyn Progress>,
    roots: Vec<PathBuf>,
    filter: Filter,
    parent: Option<(String, ChunkId)>,
    ignore_inode: bool,
    started: Instant,
) -> Result<BackupReport, ClientError> {
    let (tx, mut rx) = mpsc::channel::<Batch>(2);
    let parent_tree = parent.as_ref().map(|p| p.1);
    let walker = spawn_walker(coord, keys, hosts, progress, roots, filter, parent_tree, ignore_inode, tx);
    let (mut new_chunks, mut new_bytes) = (0usize, 0u64);
    let looked_up: Result<(), ClientError> = async {
        while let Some(Batch::Data(chunks) | Batch::Trees(chunks)) = rx.recv().await {
            // The walker sends each chunk once per run, so no chunk is counted twice.
            let known: HashSet<ChunkId> =
                coord.lookup_chunks(None, chunks.iter().map(|(id, _)| *id).collect()).await?.into_iter().collect();
            for (id, data) in &chunks {
                if !known.contains(id) {
                    new_chunks += 1;
                    new_bytes += data.len() as u64;
                }
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = looked_up {
        walker.abort();
        return Err(e);
    }
    let (root, walker) = walker.await.map_err(|e| ClientError::Invalid(format!("the directory walk failed: {e}")))?;
    root?;
    let mut summary = walker.summary;
    summary.bytes_new = new_bytes;
    Ok(BackupReport {
        snapshot: String::new(),
        parent: parent.map(|p| p.0),
        summary,
        new_chunks,
        bytes_uploaded: 0,
        errors: walker.errors,
        skipped: walker.skipped,
        elapsed: started.elapsed(),
        dry_run: true,
    })
}

fn current_uid() -> u32 {
    std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0)
}

/// Makes the paths absolute and lexically clean, drops paths inside others, checks they exist.
fn absolute_roots(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ClientError> {
    if paths.is_empty() {
        return Err(ClientError::Invalid("give at least one path to back up".into()));
    }
    let mut roots = Vec::new();
    for p in paths {
        std::fs::symlink_metadata(p).map_err(ClientError::io(p))?;
        let parent = p.parent().filter(|x| !x.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let dir = std::fs::canonicalize(parent).map_err(ClientError::io(parent))?;
        // The entry itself is kept (a symlink stays a symlink); `.`, `..` and `/` resolve.
        let abs = match p.file_name() {
            Some(name) => dir.join(name),
            None => std::fs::canonicalize(p).map_err(ClientError::io(p))?,
        };
        roots.push(abs);
    }
    roots.sort();
    roots.dedup();
    let all = roots.clone();
    roots.retain(|r| !all.iter().any(|o| o != r && r.starts_with(o)));
    Ok(roots)
}

fn scan_size(roots: &[PathBuf], filter: &Filter) -> u64 {
    let mut total = 0;
    let mut stack: Vec<(PathBuf, u64)> =
        roots.iter().filter_map(|r| std::fs::symlink_metadata(r).ok().map(|m| (r.clone(), m.dev()))).collect();
    while let Some((p, dev)) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        if meta.is_file() {
            total += meta.len();
        } else if meta.is_dir() {
            let marker = filter.marker_in(&p).map(|m| m.name.clone());
            for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                if marker.as_ref().is_some_and(|m| *m != e.file_name()) {
                    continue;
                }
                let path = e.path();
                if let Ok(m) = std::fs::symlink_metadata(&path) {
                    if !filter.excludes(&path, &m, dev) {
                        stack.push((path, dev));
                    }
                }
            }
        }
    }
    total
}

struct Walker {
    /// Dropped when the walk ends, which ends the upload loop.
    tx: Option<mpsc::Sender<Batch>>,
    dedup: DedupKey,
    filter: Filter,
    /// A file's size and mtime alone say it is unchanged (see [`BackupOptions::ignore_inode`]).
    ignore_inode: bool,
    trees: Option<Trees>,
    runtime: tokio::runtime::Handle,
    progress: Arc<dyn Progress>,
    /// File chunks and trees not sent yet, with their bytes.
    data: (Vec<(ChunkId, Vec<u8>)>, usize),
    tree_blobs: (Vec<(ChunkId, Vec<u8>)>, usize),
    refs: HashSet<ChunkId>,
    summary: Summary,
    errors: Vec<(PathBuf, String)>,
    skipped: Vec<(PathBuf, &'static str)>,
    /// Files with more than one name, read under one of them and not under all yet: by
    /// (device, inode), their size, mtime and chunks, and how many names are still to come.
    links: HashMap<(u64, u64), (u64, i64, NodeKind, u64)>,
}

/// Hard-linked files remembered at once (beyond it, another name of one is read again).
const MAX_LINKS: usize = 100_000;

/// The uploader stopped: its own error is reported instead.
struct Stopped;

impl Walker {
    /// Walks every root and builds the snapshot's root tree, with a directory for each
    /// ancestor of the roots (as restic does), so the snapshot mirrors absolute paths.
    fn walk_roots(&mut self, roots: &[PathBuf], parent: Option<ChunkId>) -> Result<ChunkId, ClientError> {
        let res = self.build_level(Path::new("/"), roots, parent).and_then(|id| {
            self.flush()?;
            Ok(id)
        });
        res.map_err(|_| ClientError::Upload("the uploader stopped".into()))
    }

    /// The tree of directory `dir`, holding only the entries that lead to `roots`.
    fn build_level(&mut self, dir: &Path, roots: &[PathBuf], parent: Option<ChunkId>) -> Result<ChunkId, Stopped> {
        let parent_tree = self.parent_tree(parent);
        let mut children: Vec<(std::ffi::OsString, Vec<PathBuf>)> = Vec::new();
        for r in roots {
            let Ok(rest) = r.strip_prefix(dir) else { continue };
            let Some(first) = rest.components().next() else { continue };
            let name = first.as_os_str().to_owned();
            match children.iter_mut().find(|(n, _)| *n == name) {
                Some((_, v)) => v.push(r.clone()),
                None => children.push((name, vec![r.clone()])),
            }
        }
        let mut nodes = Vec::new();
        for (name, below) in children {
            let path = dir.join(&name);
            let prev = parent_tree.as_ref().and_then(|t| t.get(name.as_bytes()).cloned());
            if below.contains(&path) {
                let meta = std::fs::symlink_metadata(&path);
                let dev = meta.as_ref().map(|m| m.dev()).unwrap_or(0);
                if let Some(node) = self.entry(&path, meta, name.as_bytes(), prev, dev)? {
                    nodes.push(node);
                }
            } else {
                let meta = match std::fs::symlink_metadata(&path) {
                    Ok(m) => m,
                    Err(e) => {
                        self.errors.push((path, e.to_string()));
                        continue;
                    }
                };
                // A folder above the paths backed up: recorded, not counted as backed up.
                let sub = self.build_level(&path, &below, prev.and_then(|p| p.subtree()))?;
                nodes.push(node_meta(name.as_bytes(), &meta, NodeKind::Dir { subtree: *sub.as_bytes() }, &path));
            }
        }
        self.store_tree(nodes)
    }

    fn parent_tree(&mut self, id: Option<ChunkId>) -> Option<Arc<Tree>> {
        let (id, trees) = (id?, self.trees.as_mut()?);
        match self.runtime.block_on(trees.get_ahead(id)) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(error = %e, "a tree of the parent snapshot could not be read; files below are re-read");
                None
            }
        }
    }

    /// One entry, with its metadata (not following a symlink); `None` when it is excluded,
    /// unsupported or unreadable (then noted).
    fn entry(
        &mut self,
        path: &Path,
        meta: std::io::Result<std::fs::Metadata>,
        name: &[u8],
        prev: Option<Node>,
        root_dev: u64,
    ) -> Result<Option<Node>, Stopped> {
        let meta = match meta {
            Ok(m) => m,
            Err(e) => {
                self.errors.push((path.to_owned(), e.to_string()));
                return Ok(None);
            }
        };
        if self.filter.excludes(path, &meta, root_dev) {
            return Ok(None);
        }
        let ft = meta.file_type();
        if ft.is_dir() {
            let sub = self.dir(path, prev.and_then(|p| p.subtree()), root_dev)?;
            self.summary.dirs += 1;
            return Ok(sub.map(|id| node_meta(name, &meta, NodeKind::Dir { subtree: *id.as_bytes() }, path)));
        }
        if ft.is_symlink() {
            return Ok(match std::fs::read_link(path) {
                Ok(t) => {
                    Some(node_meta(name, &meta, NodeKind::Symlink { target: t.as_os_str().as_bytes().to_vec() }, path))
                }
                Err(e) => {
                    self.errors.push((path.to_owned(), e.to_string()));
                    None
                }
            });
        }
        if !ft.is_file() {
            use std::os::unix::fs::FileTypeExt;
            let kind = match () {
                _ if ft.is_fifo() => "FIFO",
                _ if ft.is_socket() => "socket",
                _ => "device",
            };
            self.skipped.push((path.to_owned(), kind));
            return Ok(None);
        }
        let mut node = node_meta(name, &meta, NodeKind::File { chunks: Vec::new() }, path);
        self.progress.item(&path.to_string_lossy());
        self.summary.total_bytes += meta.len();
        let had_prev = prev.is_some();
        if let Some(p) = prev.filter(|p| {
            matches!(p.kind, NodeKind::File { .. })
                && p.size == node.size
                && p.mtime_ns == node.mtime_ns
                && (self.ignore_inode || p.inode == node.inode)
        }) {
            self.summary.files_unmodified += 1;
            self.refs.extend(p.chunk_ids().map(|(id, _)| id));
            self.progress.advance(node.size);
            node.kind = p.kind;
            return Ok(Some(node));
        }
        let count = |summary: &mut Summary| match had_prev {
            true => summary.files_changed += 1,
            false => summary.files_new += 1,
        };
        // Another name of a file read under one already: the same chunks, not read again.
        let inode = (node.dev, node.inode);
        if let Some((size, mtime, kind, left)) = self.links.get_mut(&inode).filter(|_| meta.nlink() > 1) {
            if (*size, *mtime) == (node.size, node.mtime_ns) {
                node.kind = kind.clone();
                *left -= 1;
                if *left == 0 {
                    self.links.remove(&inode);
                }
                count(&mut self.summary);
                self.progress.advance(node.size);
                return Ok(Some(node));
            }
        }
        match self.read_file(path)? {
            Ok((chunks, size)) => {
                count(&mut self.summary);
                node.size = size;
                node.kind = NodeKind::File { chunks };
                if meta.nlink() > 1 && self.links.len() < MAX_LINKS {
                    let entry = (node.size, node.mtime_ns, node.kind.clone(), meta.nlink() - 1);
                    self.links.insert(inode, entry);
                }
                Ok(Some(node))
            }
            Err(e) => {
                self.errors.push((path.to_owned(), e.to_string()));
                Ok(None)
            }
        }
    }

    fn dir(&mut self, path: &Path, parent: Option<ChunkId>, root_dev: u64) -> Result<Option<ChunkId>, Stopped> {
        let parent_tree = self.parent_tree(parent);
        let mut entries: Vec<std::fs::DirEntry> = match std::fs::read_dir(path) {
            Ok(rd) => {
                rd.filter_map(|e| e.map_err(|err| self.errors.push((path.to_owned(), err.to_string()))).ok()).collect()
            }
            Err(e) => {
                self.errors.push((path.to_owned(), e.to_string()));
                return Ok(None);
            }
        };
        // A marked directory keeps only its marker, as restic does, so a restore shows why.
        if let Some(marker) = self.filter.marker_in(path) {
            entries.retain(|e| e.file_name() == marker.name);
        }
        entries.sort_by_key(|e| e.file_name());
        let mut nodes = Vec::with_capacity(entries.len());
        for e in entries {
            let name = e.file_name();
            let prev = parent_tree.as_ref().and_then(|t| t.get(name.as_bytes()).cloned());
            // Relative to the open folder: no walk of the whole path per file.
            if let Some(node) = self.entry(&e.path(), e.metadata(), name.as_bytes(), prev, root_dev)? {
                nodes.push(node);
            }
        }
        self.store_tree(nodes).map(Some)
    }

    /// Reads and chunks one file; the inner error is the file's own (noted, not fatal).
    #[allow(clippy::type_complexity)]
    fn read_file(&mut self, path: &Path) -> Result<Result<(Vec<([u8; 32], u32)>, u64), std::io::Error>, Stopped> {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => return Ok(Err(e)),
        };
        let mut chunks = Vec::new();
        let mut size = 0u64;
        let mut started = std::time::Instant::now();
        // A small file is read whole and cut in memory: one read, and no chunker buffer to set
        // up and copy out of, 10,000 times over.
        let length = file.metadata().ok().map(|m| m.len());
        let small = length.is_some_and(|len| len < u64::from(scatter_core::chunker::MIN_CHUNK));
        let pieces: Box<dyn Iterator<Item = Result<Chunk, ChunkError>>> = if small {
            let mut data = Vec::new();
            if let Err(e) = std::io::Read::read_to_end(&mut &file, &mut data) {
                return Ok(Err(e));
            }
            Box::new(scatter_core::chunker::chunks_of(data).into_iter().map(Ok))
        } else {
            Box::new(scatter_core::chunker::chunks_sized(file, length))
        };
        for chunk in pieces {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => return Ok(Err(e.0)),
            };
            let id = self.dedup.chunk_id(&chunk.data);
            let len = chunk.data.len();
            chunks.push((*id.as_bytes(), len as u32));
            size += len as u64;
            self.summary.bytes_read += len as u64;
            crate::stats::add(crate::stats::Stage::ReadChunk, started.elapsed(), len as u64);
            self.push(id, chunk.data, false)?;
            started = std::time::Instant::now();
        }
        Ok(Ok((chunks, size)))
    }

    fn store_tree(&mut self, nodes: Vec<Node>) -> Result<ChunkId, Stopped> {
        // Names come from one directory listing, so they are unique components; a failure here
        // would be a bug, reported as an upload stop rather than a panic.
        let tree = Tree::new(nodes).map_err(|e| {
            tracing::error!(error = %e, "could not build a tree");
            Stopped
        })?;
        let blob = tree.encode();
        let id = self.dedup.chunk_id(&blob);
        self.push(id, blob, true)?;
        Ok(id)
    }

    /// Queues a file chunk or a tree for the uploader; a full batch is sent.
    fn push(&mut self, id: ChunkId, blob: Vec<u8>, tree: bool) -> Result<(), Stopped> {
        if !self.refs.insert(id) {
            // Already in this snapshot; the uploader reports (see `report_to`) only the rest.
            if !tree {
                self.progress.advance(blob.len() as u64);
            }
            return Ok(());
        }
        let (batch, bytes) = if tree { &mut self.tree_blobs } else { &mut self.data };
        *bytes += blob.len();
        batch.push((id, blob));
        if batch.len() >= BATCH_CHUNKS || *bytes >= BATCH_BYTES {
            self.send(tree)?;
        }
        Ok(())
    }

    fn send(&mut self, tree: bool) -> Result<(), Stopped> {
        let (batch, _) = std::mem::take(if tree { &mut self.tree_blobs } else { &mut self.data });
        if batch.is_empty() {
            return Ok(());
        }
        let batch = if tree { Batch::Trees(batch) } else { Batch::Data(batch) };
        let tx = self.tx.as_ref().ok_or(Stopped)?;
        tx.blocking_send(batch).map_err(|_| Stopped)
    }

    /// Sends what is queued.
    fn flush(&mut self) -> Result<(), Stopped> {
        self.send(false)?;
        self.send(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot record is a writer's word: a marker "name" with a `/` (or `..`) from a
    /// hostile record must not look outside the directory checked (`check-local` would take
    /// every directory as marked by one file elsewhere, and leave out all they hold).
    #[test]
    fn too_many_exclude_patterns_are_refused() {
        let many: Vec<String> = (0..=MAX_EXCLUDES).map(|i| format!("*.{i}")).collect();
        let e = Filter::new(&many, false).err().expect("refused").to_string();
        assert!(e.contains("more than the 4096"), "{e}");
        Filter::new(&many[..MAX_EXCLUDES], false).expect("the most taken");
    }

    #[test]
    fn a_recorded_marker_names_one_file_of_the_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (dir, elsewhere) = (tmp.path().join("d"), tmp.path().join("elsewhere"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::create_dir_all(&elsewhere).expect("mkdir");
        std::fs::write(elsewhere.join("tag"), b"HEAD").expect("write");
        let outside = elsewhere.join("tag").into_os_string().into_vec();
        for name in [b"../elsewhere/tag".to_vec(), outside, b"..".to_vec(), b".".to_vec(), Vec::new()] {
            let rules = Excluded { markers: vec![(name.clone(), None)], ..Default::default() };
            let filter = Filter::recorded(&rules).expect("filter");
            let fd = std::fs::File::open(&dir).expect("open");
            assert!(filter.marker_at(fd.as_fd()).is_none(), "{:?} counted as a marker", String::from_utf8_lossy(&name));
            assert!(filter.marker_in(&dir).is_none(), "{:?}", String::from_utf8_lossy(&name));
        }
        // An honest one still counts.
        std::fs::write(dir.join(".nobackup"), b"").expect("write");
        let rules = Excluded { markers: vec![(b".nobackup".to_vec(), None)], ..Default::default() };
        let fd = std::fs::File::open(&dir).expect("open");
        assert!(Filter::recorded(&rules).expect("filter").marker_at(fd.as_fd()).is_some());
    }
}
