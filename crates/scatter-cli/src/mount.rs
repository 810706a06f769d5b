//! `scatter mount MOUNTPOINT`: the user's snapshots and stored files as a read-only file
//! system (FUSE), as `restic mount` shows a repository.
//!
//! ```text
//! MOUNTPOINT/snapshots/2026-11-30T00:12:03Z/...   one folder per snapshot, by commit time
//! MOUNTPOINT/snapshots/latest -> 2026-11-30T00:12:03Z
//! MOUNTPOINT/hosts/HOST/2026-11-30T00:12:03Z/...  (and HOST/latest)
//! MOUNTPOINT/ids/1a2b3c4d/...                      by short id
//! MOUNTPOINT/objects/photos/2026/photo.jpg         stored objects, as `scatter ls` lists them
//! ```
//!
//! What is listed is read once, at mount time; directories are read from their trees when
//! first visited, file content when read, through [`ChunkCache`]: every chunk verified as a
//! restore verifies it, a chunk that cannot be verified an `EIO` for that read (logged once
//! per file), never other bytes.
//!
//! Snapshot trees come from writers that may be hostile (a write-only source, a delegate):
//! tree names are checked by [`Tree::decode`] (one component: no `/`, no NUL, not `.` or
//! `..`, what restore's confinement relies on) and checked again here; host names and object
//! names, which are not tree names, are escaped into one component. A snapshot of a delegate
//! the owner does not trust shows no set-id bits and the mounting user as owner, as its
//! restore would; the mount is `nosuid,nodev` anyway.
//!
//! Threads: fuser calls the file system from a few threads of its own; each call that needs
//! the network blocks its thread on the tokio runtime's handle (never a runtime thread, so
//! there is no deadlock), and background prefetches run as runtime tasks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, MountOption,
    OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, Request,
};
use scatter_client::coordinator::Coordinator;
use scatter_client::fetch::Fetcher;
use scatter_client::reader::{ChunkCache, FileChunks};
use scatter_client::snapshots::SnapshotInfo;
use scatter_core::keys::UserKeys;
use scatter_core::tree::{escape, is_component, Node, NodeKind, Tree};
use scatter_core::ChunkId;

/// How long the kernel may keep names and attributes: nothing in the mount ever changes.
const TTL: Duration = Duration::from_secs(300);
/// Threads serving FUSE requests: a slow fetch for one reader does not stall a `ls`.
const THREADS: usize = 4;
/// Trees kept decoded (a few hundred bytes to a few MiB each).
const TREES_KEPT: usize = 4096;
/// Kernel read-ahead asked for.
const READAHEAD: u32 = 1 << 20;
/// The longest file name Linux takes: longer ones in a tree are not listed (no lookup could
/// reach them, and one past the kernel's limit would fail the whole listing).
const NAME_MAX: usize = 255;
/// The longest extended attribute name and value Linux takes.
const XATTR_NAME_MAX: usize = 255;
const XATTR_SIZE_MAX: usize = 65_536;
/// The longest symlink target served (Linux's PATH_MAX, less its NUL).
const MAX_LINK: usize = 4095;

/// `scatter mount MOUNTPOINT`: mounts, serves until Ctrl-C, SIGTERM or `fusermount -u`, and
/// unmounts. `cache`: bytes of verified plaintext kept for reads.
pub async fn mount(mountpoint: &Path, cache: u64) -> Result<i32> {
    check_mountpoint(mountpoint)?;
    check_fuse()?;
    let (coord, keys, all) = crate::backups::open_snapshots().await?;
    let objects = list_objects(&coord, &keys).await?;
    let (snapshot_count, object_count) = (all.len(), objects.len());
    let fetcher = Fetcher::new(&coord, &coord.hosts()?, &keys);
    let fs = ScatterFs::new(
        tokio::runtime::Handle::current(),
        ChunkCache::new(fetcher.clone(), cache),
        fetcher,
        coord,
        keys,
        &all,
        objects,
    );
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::NoSuid,
        MountOption::NoDev,
        MountOption::NoAtime,
        MountOption::FSName("scatter".into()),
        MountOption::Subtype("scatter".into()),
    ];
    config.n_threads = Some(THREADS);
    let at = mountpoint.to_path_buf();
    let session = tokio::task::spawn_blocking(move || fuser::Session::new(fs, &at, &config))
        .await
        .context("the mount was cut short")?
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot mount on {} ({e}); FUSE must be usable here: install fuse3 (fusermount3), and in a \
                 container run with --device /dev/fuse --cap-add SYS_ADMIN",
                mountpoint.display()
            )
        })?;
    let mut session = session;
    let mut unmounter = session.unmount_callable();
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("fuse".into())
        .spawn(move || {
            let _ = done_tx.send(session.run());
        })
        .context("cannot start the file system's thread")?;
    eprintln!(
        "{} snapshot(s) and {} object(s) mounted read-only at {}; Ctrl-C or `fusermount -u {}` unmounts",
        snapshot_count,
        object_count,
        mountpoint.display(),
        mountpoint.display()
    );
    tokio::select! {
        ended = &mut done_rx => {
            // Unmounted from outside (`fusermount -u`, `umount`).
            return match ended {
                Ok(Err(e)) => Err(anyhow::anyhow!("the FUSE session failed ({e}); mount again")),
                _ => Ok(0),
            };
        }
        _ = crate::shutdown_signal() => {}
    }
    let point = mountpoint.to_path_buf();
    let unmounted = tokio::task::spawn_blocking(move || unmounter.unmount()).await;
    let mut wait = Duration::from_secs(10);
    if !matches!(unmounted, Ok(Ok(()))) {
        // Busy (a shell inside it, a file open): detach it now; the kernel lets go of it once
        // the last user is gone, and the process exit ends the session anyway.
        if lazy_unmount(&point).await {
            eprintln!(
                "{} was busy (something in it is open); it is detached and goes away once that closes",
                point.display()
            );
        } else {
            eprintln!("warning: could not unmount {}; run `fusermount -u -z {}`", point.display(), point.display());
        }
        wait = Duration::from_secs(2);
    }
    // The session ends when the kernel lets go; bounded, the process exit ends it anyway.
    let _ = tokio::time::timeout(wait, done_rx).await;
    eprintln!("unmounted {}", point.display());
    Ok(0)
}

/// Detaches the mount at `point` even while it is in use: the FUSE helper (fusermount3, or
/// fusermount of FUSE 2), or as root `umount -l`. Whether one of them did.
async fn lazy_unmount(point: &Path) -> bool {
    for (cmd, args) in [("fusermount3", ["-u", "-z"]), ("fusermount", ["-u", "-z"]), ("umount", ["-l", "--"])] {
        let done =
            tokio::process::Command::new(cmd).args(args).arg(point).stderr(std::process::Stdio::null()).status().await;
        if done.is_ok_and(|s| s.success()) {
            return true;
        }
    }
    false
}

/// The mountpoint must be an existing, empty directory.
fn check_mountpoint(p: &Path) -> Result<()> {
    let meta = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("the mountpoint {} does not exist; create an empty directory for it (mkdir)", p.display())
        }
        Err(e) => bail!("cannot use {} as a mountpoint ({e}); give an empty directory you can read", p.display()),
    };
    if !meta.is_dir() {
        bail!("the mountpoint {} is not a directory; give an empty directory", p.display());
    }
    let mut entries = std::fs::read_dir(p)
        .with_context(|| format!("cannot read the mountpoint {}; give an empty directory", p.display()))?;
    if entries.next().is_some() {
        bail!(
            "the mountpoint {} is not empty (or something is mounted there already); give an empty directory",
            p.display()
        );
    }
    Ok(())
}

/// FUSE needs `/dev/fuse`, and unless we are root, the `fusermount3` or `fusermount` helper.
fn check_fuse() -> Result<()> {
    if !Path::new("/dev/fuse").exists() {
        bail!(
            "FUSE is not available here: /dev/fuse is missing; load the module (`modprobe fuse`), or in a \
             container run with --device /dev/fuse"
        );
    }
    let root = running_as_root();
    let helper = ["fusermount3", "fusermount"].iter().any(|name| {
        std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
    });
    if !root && !helper {
        bail!("FUSE's mount helper is missing (neither fusermount3 nor fusermount is on the PATH); install fuse3");
    }
    Ok(())
}

fn running_as_root() -> bool {
    // /proc/self belongs to our effective user: no unsafe `geteuid` needed.
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

/// The stored objects, with their decrypted names (as `scatter ls` shows them).
async fn list_objects(coord: &Coordinator, keys: &UserKeys) -> Result<Vec<(String, u64, u64)>> {
    let names = keys.write_keys().name_key();
    let mut out = Vec::new();
    for o in coord.list("").await?.objects {
        match names.decrypt(&o.name) {
            Ok(name) => out.push((name, o.size, o.created)),
            Err(e) => tracing::warn!(error = %e, "an object's name does not decrypt; it is not shown"),
        }
    }
    Ok(out)
}

/// A name from outside a tree (a host name, a part of an object's name) as one path
/// component: itself when it is one, else escaped as the CLI prints names, with `/` and
/// dots escaped too; one longer than [`NAME_MAX`] bytes is cut, with a hash of the whole
/// name so that two long names stay apart.
fn component(raw: &[u8]) -> Vec<u8> {
    let mut name = if is_component(raw) {
        raw.to_vec()
    } else {
        let mut e = escape(raw).replace('/', "\\x2f");
        if !is_component(e.as_bytes()) {
            e = e.replace('.', "\\x2e");
        }
        if e.is_empty() {
            e = "\\x00".into();
        }
        e.into_bytes()
    };
    if name.len() > NAME_MAX {
        let hash = blake3::hash(raw).to_hex();
        name.truncate(NAME_MAX - 18);
        name.extend_from_slice(b"..");
        name.extend_from_slice(&hash.as_bytes()[..16]);
    }
    name
}

/// `2026-11-30T00:12:03Z` for a Unix time.
fn time_name(secs: u64) -> String {
    // A coordinator's time past what nanoseconds in an i64 hold (the year 2262) is shown as
    // that, not overflowed.
    const LAST: u64 = (i64::MAX / 1_000_000_000) as u64;
    let t = crate::backups::time_text(secs.min(LAST) as i64 * 1_000_000_000);
    format!("{}T{}Z", &t[..10], &t[11..])
}

/// A Unix time in seconds from a coordinator (any value: never an overflow).
fn unix_time(secs: u64) -> SystemTime {
    UNIX_EPOCH.checked_add(Duration::from_secs(secs)).unwrap_or(UNIX_EPOCH)
}

/// A recorded mtime in nanoseconds (any value: never an overflow).
fn system_time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_nanos(ns as u64)).unwrap_or(UNIX_EPOCH)
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_nanos(ns.unsigned_abs())).unwrap_or(UNIX_EPOCH)
    }
}

/// What an inode shows.
#[derive(Clone)]
struct Meta {
    kind: FileType,
    perm: u16,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: SystemTime,
    /// Extended attributes as recorded (name, value).
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What an inode is.
enum Kind {
    /// A folder of the mount itself, its entries sorted by name.
    Dir(Vec<(Vec<u8>, u64)>),
    /// A folder of a snapshot: its entries are those of this tree.
    Tree { tree: ChunkId, trusted: bool },
    /// A file of a snapshot.
    File(Arc<FileChunks>),
    /// A stored object: its manifest is read when it is opened.
    Object { name: String, chunks: OnceLock<Arc<FileChunks>> },
    /// A symbolic link.
    Link(Vec<u8>),
}

struct Inode {
    meta: Meta,
    kind: Kind,
}

/// Every inode handed out; never reused while mounted (each costs a few hundred bytes).
#[derive(Default)]
struct Table {
    nodes: Vec<Arc<Inode>>,
    /// (parent, name) → inode, for the entries of snapshot folders.
    names: HashMap<(u64, Vec<u8>), u64>,
}

impl Table {
    fn get(&self, ino: u64) -> Option<Arc<Inode>> {
        self.nodes.get(usize::try_from(ino.checked_sub(1)?).ok()?).cloned()
    }

    fn push(&mut self, inode: Inode) -> u64 {
        self.nodes.push(Arc::new(inode));
        self.nodes.len() as u64
    }

    /// The inode of `parent`'s entry `name`, made by `make` the first time.
    fn entry(&mut self, parent: u64, name: &[u8], make: impl FnOnce() -> Inode) -> u64 {
        if let Some(ino) = self.names.get(&(parent, name.to_vec())) {
            return *ino;
        }
        let ino = self.push(make());
        self.names.insert((parent, name.to_vec()), ino);
        ino
    }
}

/// An open file.
struct Open {
    chunks: Arc<FileChunks>,
    /// Where the next read starts if the reader goes on sequentially.
    next: u64,
}

/// The file system fuser serves.
struct ScatterFs {
    rt: tokio::runtime::Handle,
    cache: Arc<ChunkCache>,
    fetcher: Arc<Fetcher>,
    coord: Coordinator,
    keys: UserKeys,
    table: RwLock<Table>,
    trees: Mutex<HashMap<ChunkId, Arc<Tree>>>,
    open: Mutex<HashMap<u64, Open>>,
    next_fh: AtomicU64,
    /// Inodes whose failure was logged (once each).
    logged: Mutex<HashSet<u64>>,
}

fn dir_meta(me: (u32, u32), mtime: SystemTime) -> Meta {
    Meta { kind: FileType::Directory, perm: 0o555, uid: me.0, gid: me.1, size: 0, mtime, xattrs: Vec::new() }
}

fn link_inode(me: (u32, u32), target: &str, mtime: SystemTime) -> Inode {
    Inode {
        meta: Meta {
            kind: FileType::Symlink,
            perm: 0o777,
            uid: me.0,
            gid: me.1,
            size: target.len() as u64,
            mtime,
            xattrs: Vec::new(),
        },
        kind: Kind::Link(target.as_bytes().to_vec()),
    }
}

/// A snapshot entry's inode; a snapshot not trusted loses set-id bits and its owner.
fn node_inode(n: &Node, trusted: bool) -> Inode {
    // An untrusted writer's metadata loses what restore takes from it: set-id and sticky
    // bits, `security.*` (file capabilities) and `trusted.*` attributes, owner and group.
    let distrusted;
    let n = if trusted {
        n
    } else {
        let mut copy = n.clone();
        scatter_client::restore::distrust_metadata(std::iter::once(&mut copy));
        distrusted = copy;
        &distrusted
    };
    let mtime = system_time(n.mtime_ns);
    let (kind, ftype, size) = match &n.kind {
        NodeKind::File { .. } => {
            (Kind::File(Arc::new(FileChunks::new(n.chunk_ids().collect(), n.size))), FileType::RegularFile, n.size)
        }
        NodeKind::Dir { .. } => {
            let tree = n.subtree().unwrap_or_else(|| ChunkId::from_bytes([0; 32]));
            (Kind::Tree { tree, trusted }, FileType::Directory, 0)
        }
        NodeKind::Symlink { target } => (Kind::Link(target.clone()), FileType::Symlink, target.len() as u64),
    };
    // Only attributes a kernel can hand out.
    let xattrs = n
        .xattrs
        .iter()
        .filter(|(name, value)| {
            !name.is_empty() && name.len() <= XATTR_NAME_MAX && !name.contains(&0) && value.len() <= XATTR_SIZE_MAX
        })
        .cloned()
        .collect();
    let perm = (n.mode & 0o7777) as u16;
    Inode { meta: Meta { kind: ftype, perm, uid: n.uid, gid: n.gid, size, mtime, xattrs }, kind }
}

/// An extended attribute's value (or a list of names): its size when `size` is 0, else the
/// bytes if they fit.
fn xattr_reply(bytes: &[u8], size: u32, reply: fuser::ReplyXattr) {
    match u32::try_from(bytes.len()) {
        Ok(len) if size == 0 => reply.size(len),
        Ok(len) if len <= size => reply.data(bytes),
        _ => reply.error(Errno::ERANGE),
    }
}

/// Objects' names as a folder hierarchy.
#[derive(Default)]
struct ObjectDir {
    dirs: BTreeMap<Vec<u8>, ObjectDir>,
    files: BTreeMap<Vec<u8>, ObjectSlot>,
}

/// An object as listed: its decrypted name, size and creation time.
type Listed = (String, u64, u64);

/// An object under the name it is shown as.
type Shown = (Vec<u8>, Listed);

/// What one path under `objects/` shows.
enum ObjectSlot {
    /// The object (name, size, creation time) and whether its name is shown as itself.
    Object { name: String, size: u64, created: u64, exact: bool },
    /// Objects whose names escape to the same path, none shown as itself: none is shown.
    Clash,
}

impl ObjectDir {
    /// The hierarchy of `objects` (decrypted name, size, creation time). Each `/`-separated
    /// part is one component, escaped when it is not one as itself (empty, `.`, `..`, too
    /// long), so `/a`, `a//b` and `a/./b` are never merged with `a` or `a/b`. Names are
    /// chosen by whoever can write (an appender too): where names still land on one path
    /// (an escaped form equal to a literal one), the name shown as itself keeps it and the
    /// others are left out with a warning; `get` reaches them all by name.
    fn of(objects: Vec<Listed>) -> Self {
        let mut tree = ObjectDir::default();
        for (name, size, created) in objects {
            let parts: Vec<Vec<u8>> = name.split('/').map(|p| component(p.as_bytes())).collect();
            let exact = name.split('/').zip(&parts).all(|(raw, shown)| raw.as_bytes() == shown.as_slice());
            let Some((file, dirs)) = parts.split_last() else { continue };
            let mut at = &mut tree;
            for d in dirs {
                at = at.dirs.entry(d.clone()).or_default();
            }
            let hidden = |name: &str| {
                tracing::warn!(object = %escape(name.as_bytes()), "an object's name escapes to the path of another; it is not shown");
            };
            let slot = match at.files.remove(file) {
                None => ObjectSlot::Object { name, size, created, exact },
                Some(kept @ ObjectSlot::Object { exact: true, .. }) => {
                    hidden(&name);
                    kept
                }
                Some(ObjectSlot::Object { name: other, .. }) if exact => {
                    hidden(&other);
                    ObjectSlot::Object { name, size, created, exact }
                }
                Some(ObjectSlot::Object { name: other, .. }) => {
                    hidden(&other);
                    hidden(&name);
                    ObjectSlot::Clash
                }
                Some(ObjectSlot::Clash) if exact => ObjectSlot::Object { name, size, created, exact },
                Some(ObjectSlot::Clash) => {
                    hidden(&name);
                    ObjectSlot::Clash
                }
            };
            at.files.insert(file.clone(), slot);
        }
        tree
    }

    /// The folders and objects of this folder, by the names they are shown under. Both `a`
    /// and `a/b` are stored: `a` is the object, and the folder of `a/…` is shown as `a\x2f`
    /// (an escaped `/`), so neither hides the other. Should that name be taken too, the
    /// folder keeps its name and the object is left out with a warning.
    fn shown(self) -> (Vec<(Vec<u8>, ObjectDir)>, Vec<Shown>) {
        let ObjectDir { dirs, mut files } = self;
        let mut shown_dirs = Vec::new();
        for name in dirs.keys() {
            let mut shown = name.clone();
            if files.contains_key(name) {
                let mut renamed = name.clone();
                renamed.extend_from_slice(b"\\x2f");
                if files.contains_key(&renamed) || dirs.contains_key(&renamed) || renamed.len() > NAME_MAX {
                    if let Some(ObjectSlot::Object { name: full, .. }) = files.remove(name) {
                        tracing::warn!(object = %escape(full.as_bytes()), "an object has the name of a folder of others; it is not shown");
                    }
                } else {
                    shown = renamed;
                }
            }
            shown_dirs.push(shown);
        }
        let dirs = shown_dirs.into_iter().zip(dirs.into_values()).collect();
        let files = files
            .into_iter()
            .filter_map(|(shown, slot)| match slot {
                ObjectSlot::Object { name, size, created, .. } => Some((shown, (name, size, created))),
                ObjectSlot::Clash => None,
            })
            .collect();
        (dirs, files)
    }
}

impl ScatterFs {
    fn new(
        rt: tokio::runtime::Handle,
        cache: Arc<ChunkCache>,
        fetcher: Arc<Fetcher>,
        coord: Coordinator,
        keys: UserKeys,
        snapshots: &[SnapshotInfo],
        objects: Vec<(String, u64, u64)>,
    ) -> Self {
        let me = std::fs::metadata("/proc/self")
            .map(|m| (std::os::unix::fs::MetadataExt::uid(&m), std::os::unix::fs::MetadataExt::gid(&m)))
            .unwrap_or((0, 0));
        let mut t = Table::default();
        let now = SystemTime::now();
        // The root is inode 1: a placeholder until its folders exist.
        t.push(Inode { meta: dir_meta(me, now), kind: Kind::Dir(Vec::new()) });

        let snap_inode = |s: &SnapshotInfo| Inode {
            meta: dir_meta(me, unix_time(s.created)),
            kind: Kind::Tree { tree: s.snapshot.tree_id(), trusted: s.trusted },
        };
        // Names by commit time, made unique (`-2`, `-3`) within a folder.
        let unique = |taken: &mut HashSet<String>, base: String| {
            let mut name = base.clone();
            let mut n = 1;
            while !taken.insert(name.clone()) {
                n += 1;
                name = format!("{base}-{n}");
            }
            name
        };
        let latest = snapshots.iter().rev().find(|s| s.trusted).map(|s| s.id.clone());

        // snapshots/
        let mut taken = HashSet::new();
        let mut entries = Vec::new();
        for s in snapshots {
            let name = unique(&mut taken, time_name(s.created));
            if latest.as_deref() == Some(s.id.as_str()) {
                let link = t.push(link_inode(me, &name, unix_time(s.created)));
                entries.push((b"latest".to_vec(), link));
            }
            entries.push((name.into_bytes(), t.push(snap_inode(s))));
        }
        entries.sort();
        let snapshots_dir = t.push(Inode { meta: dir_meta(me, now), kind: Kind::Dir(entries) });

        // hosts/HOST/
        let mut by_host: BTreeMap<Vec<u8>, Vec<&SnapshotInfo>> = BTreeMap::new();
        for s in snapshots {
            by_host.entry(component(s.snapshot.hostname.as_bytes())).or_default().push(s);
        }
        let mut hosts = Vec::new();
        for (host, list) in by_host {
            let mut taken = HashSet::new();
            let mut entries = Vec::new();
            let newest = list.iter().rev().find(|s| s.trusted).map(|s| s.id.clone());
            for s in list {
                let name = unique(&mut taken, time_name(s.created));
                if newest.as_deref() == Some(s.id.as_str()) {
                    let link = t.push(link_inode(me, &name, unix_time(s.created)));
                    entries.push((b"latest".to_vec(), link));
                }
                entries.push((name.into_bytes(), t.push(snap_inode(s))));
            }
            entries.sort();
            hosts.push((host, t.push(Inode { meta: dir_meta(me, now), kind: Kind::Dir(entries) })));
        }
        let hosts_dir = t.push(Inode { meta: dir_meta(me, now), kind: Kind::Dir(hosts) });

        // ids/
        let mut short_count: HashMap<String, usize> = HashMap::new();
        // An id is 64 hex digits; one from a hostile coordinator may not even cut at 8 bytes.
        let short = |s: &SnapshotInfo| s.id.get(..8).unwrap_or(&s.id).to_owned();
        for s in snapshots {
            *short_count.entry(short(s)).or_default() += 1;
        }
        let mut ids = Vec::new();
        for s in snapshots {
            // Ids come from the coordinator: hex digits, or escaped like any outside name.
            let id = if short_count.get(&short(s)).copied().unwrap_or(0) > 1 { s.id.clone() } else { short(s) };
            ids.push((component(id.as_bytes()), t.push(snap_inode(s))));
        }
        ids.sort();
        ids.dedup_by(|a, b| a.0 == b.0);
        let ids_dir = t.push(Inode { meta: dir_meta(me, now), kind: Kind::Dir(ids) });

        // objects/
        let objects_dir = Self::add_objects(&mut t, ObjectDir::of(objects), me, now);

        let mut top = vec![
            (b"hosts".to_vec(), hosts_dir),
            (b"ids".to_vec(), ids_dir),
            (b"objects".to_vec(), objects_dir),
            (b"snapshots".to_vec(), snapshots_dir),
        ];
        top.sort();
        t.nodes[0] = Arc::new(Inode { meta: dir_meta(me, now), kind: Kind::Dir(top) });

        Self {
            rt,
            cache,
            fetcher,
            coord,
            keys,
            table: RwLock::new(t),
            trees: Mutex::default(),
            open: Mutex::default(),
            next_fh: AtomicU64::new(1),
            logged: Mutex::default(),
        }
    }

    fn add_objects(t: &mut Table, dir: ObjectDir, me: (u32, u32), now: SystemTime) -> u64 {
        let (dirs, files) = dir.shown();
        let mut entries = Vec::new();
        for (name, sub) in dirs {
            entries.push((name, Self::add_objects(t, sub, me, now)));
        }
        for (name, (full, size, created)) in files {
            let meta = Meta {
                kind: FileType::RegularFile,
                perm: 0o444,
                uid: me.0,
                gid: me.1,
                size,
                mtime: unix_time(created),
                xattrs: Vec::new(),
            };
            entries.push((name, t.push(Inode { meta, kind: Kind::Object { name: full, chunks: OnceLock::new() } })));
        }
        entries.sort();
        t.push(Inode { meta: dir_meta(me, now), kind: Kind::Dir(entries) })
    }

    fn inode(&self, ino: INodeNo) -> Option<Arc<Inode>> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).get(ino.0)
    }

    fn attr(&self, ino: u64, m: &Meta) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size: m.size,
            blocks: m.size.div_ceil(512),
            atime: m.mtime,
            mtime: m.mtime,
            ctime: m.mtime,
            crtime: m.mtime,
            kind: m.kind,
            perm: m.perm,
            nlink: if m.kind == FileType::Directory { 2 } else { 1 },
            uid: m.uid,
            gid: m.gid,
            rdev: 0,
            blksize: 128 << 10,
            flags: 0,
        }
    }

    /// Logs a failure about inode `ino` the first time only.
    fn log_once(&self, ino: u64, what: &str, error: &dyn std::fmt::Display) {
        if self.logged.lock().unwrap_or_else(|p| p.into_inner()).insert(ino) {
            tracing::error!(inode = ino, %error, "{what}; reads of it fail with EIO");
        }
    }

    /// A snapshot tree, fetched and verified (cached).
    fn tree(&self, ino: u64, id: ChunkId) -> Result<Arc<Tree>, Errno> {
        if let Some(t) = self.trees.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Ok(t.clone());
        }
        let blob = self.rt.block_on(self.fetcher.fetch_one(id)).map_err(|e| {
            self.log_once(ino, "a folder could not be read", &e);
            Errno::EIO
        })?;
        let tree = Arc::new(Tree::decode(&blob).map_err(|e| {
            self.log_once(ino, "a folder's tree is damaged", &e);
            Errno::EIO
        })?);
        let mut trees = self.trees.lock().unwrap_or_else(|p| p.into_inner());
        if trees.len() >= TREES_KEPT {
            trees.clear();
        }
        trees.insert(id, tree.clone());
        Ok(tree)
    }

    /// The content of a file inode, its object's manifest read the first time.
    fn chunks(&self, ino: u64, inode: &Inode) -> Result<Arc<FileChunks>, Errno> {
        let chunks = match &inode.kind {
            Kind::File(c) => c.clone(),
            Kind::Object { name, chunks } => match chunks.get() {
                Some(c) => c.clone(),
                None => {
                    let (_, manifest) = self
                        .rt
                        .block_on(scatter_client::get::open_manifest(&self.coord, &self.keys, name, None))
                        .map_err(|e| {
                            self.log_once(ino, "an object's manifest could not be read", &e);
                            Errno::EIO
                        })?;
                    if manifest.size != inode.meta.size {
                        let e = format!("listed as {} bytes, its manifest says {}", inode.meta.size, manifest.size);
                        self.log_once(ino, "an object changed or is listed wrongly", &e);
                        return Err(Errno::EIO);
                    }
                    chunks.get_or_init(|| Arc::new(FileChunks::new(manifest.chunks, manifest.size))).clone()
                }
            },
            Kind::Dir(_) | Kind::Tree { .. } => return Err(Errno::EISDIR),
            Kind::Link(_) => return Err(Errno::EINVAL),
        };
        if !chunks.consistent() {
            self.log_once(ino, "a file's chunks do not add up to its recorded size", &"damaged or hostile record");
            return Err(Errno::EIO);
        }
        Ok(chunks)
    }
}

impl Filesystem for ScatterFs {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        // Larger kernel read-ahead: fewer, larger reads per chunk (the kernel may cap it).
        let _ = config.set_max_readahead(READAHEAD);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name.as_bytes();
        let Some(dir) = self.inode(parent) else { return reply.error(Errno::ENOENT) };
        if !is_component(name) {
            return reply.error(Errno::ENOENT);
        }
        let found = match &dir.kind {
            // Sorted by name when built.
            Kind::Dir(children) => {
                children.binary_search_by(|(n, _)| n.as_slice().cmp(name)).ok().map(|i| children[i].1)
            }
            Kind::Tree { tree, trusted } => {
                let tree = match self.tree(parent.0, *tree) {
                    Ok(t) => t,
                    Err(e) => return reply.error(e),
                };
                tree.get(name).map(|n| {
                    let mut t = self.table.write().unwrap_or_else(|p| p.into_inner());
                    t.entry(parent.0, name, || node_inode(n, *trusted))
                })
            }
            _ => return reply.error(Errno::ENOTDIR),
        };
        match found.and_then(|ino| self.inode(INodeNo(ino)).map(|n| (ino, n))) {
            Some((ino, n)) => reply.entry(&TTL, &self.attr(ino, &n.meta), Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.inode(ino) {
            Some(n) => reply.attr(&TTL, &self.attr(ino.0, &n.meta)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.inode(ino).as_deref().map(|n| &n.kind) {
            Some(Kind::Link(target)) if !target.is_empty() && target.len() <= MAX_LINK && !target.contains(&0) => {
                reply.data(target)
            }
            Some(Kind::Link(_)) => {
                self.log_once(ino.0, "a symlink's target is empty, too long or holds NUL", &"hostile record");
                reply.error(Errno::EIO)
            }
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: fuser::ReplyXattr) {
        let Some(inode) = self.inode(ino) else { return reply.error(Errno::ENOENT) };
        match inode.meta.xattrs.iter().find(|(n, _)| n.as_slice() == name.as_bytes()) {
            None => reply.error(Errno::ENODATA),
            Some((_, value)) => xattr_reply(value, size, reply),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: fuser::ReplyXattr) {
        let Some(inode) = self.inode(ino) else { return reply.error(Errno::ENOENT) };
        let mut names = Vec::new();
        for (name, _) in &inode.meta.xattrs {
            names.extend_from_slice(name);
            names.push(0);
        }
        xattr_reply(&names, size, reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        let Some(inode) = self.inode(ino) else { return reply.error(Errno::ENOENT) };
        match self.chunks(ino.0, &inode) {
            Ok(chunks) => {
                let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
                self.open.lock().unwrap_or_else(|p| p.into_inner()).insert(fh, Open { chunks, next: 0 });
                // Content never changes: the kernel may keep what it cached across opens.
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE)
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let (chunks, sequential) = {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            let Some(o) = open.get_mut(&fh.0) else { return reply.error(Errno::EBADF) };
            let sequential = offset == o.next;
            o.next = offset.saturating_add(u64::from(size));
            (o.chunks.clone(), sequential)
        };
        match self.rt.block_on(self.cache.read_at(&chunks, offset, size, sequential)) {
            Ok(data) => reply.data(&data),
            Err(e) => {
                self.log_once(ino.0, "a file could not be read and verified", &e);
                reply.error(Errno::EIO)
            }
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // Nothing is ever written.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).remove(&fh.0);
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.inode(ino).as_deref().map(|n| &n.kind) {
            Some(Kind::Dir(_) | Kind::Tree { .. }) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Some(_) => reply.error(Errno::ENOTDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    /// Entry `k` of a folder (after `.` and `..`) has offset `k + 3`: the kernel asks again
    /// from the last offset it took, and the reply goes on from there without walking what
    /// was listed before (a folder of a million entries is listed in linear time).
    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let Some(inode) = self.inode(ino) else { return reply.error(Errno::ENOENT) };
        let tree = match &inode.kind {
            Kind::Dir(_) => None,
            Kind::Tree { tree, trusted } => match self.tree(ino.0, *tree) {
                Ok(t) => Some((t, *trusted)),
                Err(e) => return reply.error(e),
            },
            _ => return reply.error(Errno::ENOTDIR),
        };
        let mut next = usize::try_from(offset).unwrap_or(usize::MAX);
        while next < 2 {
            let name = if next == 0 { "." } else { ".." };
            if reply.add(ino, next as u64 + 1, FileType::Directory, name) {
                return reply.ok();
            }
            next += 1;
        }
        let skip = next - 2;
        match (&inode.kind, tree) {
            (Kind::Dir(children), _) => {
                let t = self.table.read().unwrap_or_else(|p| p.into_inner());
                for (k, (name, child)) in children.iter().enumerate().skip(skip) {
                    let kind = t.get(*child).map_or(FileType::RegularFile, |n| n.meta.kind);
                    if reply.add(INodeNo(*child), k as u64 + 3, kind, OsStr::from_bytes(name)) {
                        break;
                    }
                }
            }
            (_, Some((tree, trusted))) => {
                let mut t = self.table.write().unwrap_or_else(|p| p.into_inner());
                // Names were checked when the tree was decoded; checked again, as restore does.
                for (k, n) in tree
                    .nodes
                    .iter()
                    .enumerate()
                    .skip(skip)
                    .filter(|(_, n)| is_component(&n.name) && n.name.len() <= NAME_MAX)
                {
                    let child = t.entry(ino.0, &n.name, || node_inode(n, trusted));
                    let kind = t.get(child).map_or(FileType::RegularFile, |c| c.meta.kind);
                    if reply.add(INodeNo(child), k as u64 + 3, kind, OsStr::from_bytes(&n.name)) {
                        break;
                    }
                }
            }
            _ => {}
        }
        reply.ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_names_become_one_component() {
        assert_eq!(component(b"laptop"), b"laptop");
        assert_eq!(component(b"../../etc"), b"..\\x2f..\\x2fetc");
        assert_eq!(component(b".."), b"\\x2e\\x2e");
        assert_eq!(component(b"."), b"\\x2e");
        assert_eq!(component(b""), b"\\x00");
        assert_eq!(component(b"a\0b"), b"a\\x00b");
        for raw in [&b"a/b"[..], b"/", b"..", b"\0", b"x\n/y"] {
            assert!(is_component(&component(raw)), "{raw:?}");
        }
        // Too long for a file name: cut, and told apart by a hash.
        let (a, b) = (component(&[b'a'; 300]), component(&[b'a'; 301]));
        assert!(a.len() == NAME_MAX && b.len() == NAME_MAX && a != b && is_component(&a));
        assert!(component(&[b'/'; 300]).len() <= NAME_MAX);
    }

    /// Every object's path under `objects/` and the name it shows, sorted.
    fn object_paths(names: &[&str]) -> Vec<(String, String)> {
        fn walk(dir: ObjectDir, at: &str, out: &mut Vec<(String, String)>) {
            let (dirs, files) = dir.shown();
            for (name, sub) in dirs {
                walk(sub, &format!("{at}{}/", String::from_utf8_lossy(&name)), out);
            }
            for (name, (full, ..)) in files {
                out.push((format!("{at}{}", String::from_utf8_lossy(&name)), full));
            }
        }
        let mut out = Vec::new();
        walk(ObjectDir::of(names.iter().map(|n| (n.to_string(), 1, 1)).collect()), "", &mut out);
        out.sort();
        out
    }

    /// Attack (an appender, which chooses its names): `/reports/q2.txt` and `mm//b` were shown
    /// at the owner's `reports/q2.txt` and `mm/b` (empty parts were dropped), in place of the
    /// owner's objects; `private/adm.txt/hide` hid the owner's `private/adm.txt`.
    #[test]
    fn no_object_name_takes_or_hides_the_path_of_another() {
        let pairs = |v: &[(&str, &str)]| v.iter().map(|(p, n)| (p.to_string(), n.to_string())).collect::<Vec<_>>();
        for names in [
            ["reports/q2.txt", "/reports/q2.txt", "mm//b", "mm/b", "a/./b", "a/b"],
            ["/reports/q2.txt", "reports/q2.txt", "mm/b", "mm//b", "a/b", "a/./b"],
        ] {
            assert_eq!(
                object_paths(&names),
                pairs(&[
                    ("\\x00/reports/q2.txt", "/reports/q2.txt"),
                    ("a/\\x2e/b", "a/./b"),
                    ("a/b", "a/b"),
                    ("mm/\\x00/b", "mm//b"),
                    ("mm/b", "mm/b"),
                    ("reports/q2.txt", "reports/q2.txt"),
                ])
            );
        }
        // An escaped name equal to a literal one: the literal one keeps the path, in any order.
        for names in [["x/\\x2e", "x/."], ["x/.", "x/\\x2e"]] {
            assert_eq!(object_paths(&names), pairs(&[("x/\\x2e", "x/\\x2e")]));
        }
        // Two escaped names on one path: neither is shown (`get` reaches both).
        assert_eq!(object_paths(&["z//", "z/\\x00/"]), pairs(&[]));
        assert_eq!(object_paths(&["z//", "z/\\x00/", "z/\\x00/\\x00"]), pairs(&[("z/\\x00/\\x00", "z/\\x00/\\x00")]));
        // An object and a folder of the same name: both shown, the folder as `NAME\x2f`.
        assert_eq!(
            object_paths(&["private/adm.txt/hide", "private/adm.txt"]),
            pairs(&[("private/adm.txt", "private/adm.txt"), ("private/adm.txt\\x2f/hide", "private/adm.txt/hide")])
        );
        // ... unless that name is taken too: then the folder keeps its name.
        assert_eq!(object_paths(&["p/a/b", "p/a", "p/a\\x2f"]), pairs(&[("p/a/b", "p/a/b"), ("p/a\\x2f", "p/a\\x2f")]));
    }

    #[test]
    fn times_never_overflow() {
        assert_eq!(time_name(0), "1970-01-01T00:00:00Z");
        assert_eq!(time_name(1_796_000_000), "2026-11-30T00:53:20Z");
        assert_eq!(time_name(u64::MAX), "2262-04-11T23:47:16Z");
        assert_eq!(unix_time(u64::MAX), UNIX_EPOCH);
        assert!(system_time(i64::MIN) <= UNIX_EPOCH && system_time(i64::MAX) > UNIX_EPOCH);
    }
}
