//! Writing below one directory and nowhere else, whatever a snapshot says.
//!
//! A [`Root`] is a directory opened once (the restore target, or the folder holding what
//! `recover` puts back). Every later operation starts from its handle (or from a handle of a
//! directory on the way, kept from the previous operation and opened the same way) and opens
//! one path component at a time with `O_NOFOLLOW | O_DIRECTORY`, so a symlink met on the way, planted
//! before the restore or while it runs, is never followed: the operation fails, or, where the
//! snapshot has a directory, the symlink is removed and a directory made in its place. Files
//! are created and renamed relative to their directory's handle, symlinks are created with
//! `symlinkat` (nothing is ever written through one), and metadata is applied through a
//! handle of the entry itself or with `AT_SYMLINK_NOFOLLOW`.
//!
//! Names are the snapshot's raw bytes ([`TreePath`]); they reach the file system unchanged
//! and are shown only escaped ([`scatter_core::tree::escape`]).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, CWD};
use scatter_core::tree::{escape, TreePath};

use crate::ClientError;

/// The deepest directory tree [`remove_at`] takes apart.
const MAX_REMOVE_DEPTH: usize = 4096;
/// The most handles a [`Root`] keeps of the directories leading to the one it opened last
/// (below that depth, a hostile snapshot could otherwise have it hold thousands of files
/// open).
const KEPT_DEPTH: usize = 64;

/// A directory everything is written below; see the module documentation.
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
    /// The directory opened last and the ones leading to it, from the root down, up to
    /// [`KEPT_DEPTH`] (name, handle): a restore visits directories in a walk's order, so the
    /// next one mostly shares them, and opening it takes one `openat` rather than one per
    /// component (2,525 directories 5-8 deep restored with about 15,000 fewer).
    open: Vec<(Vec<u8>, OwnedFd)>,
    /// The directory opened last when it is deeper than [`KEPT_DEPTH`].
    deep: Option<(TreePath, OwnedFd)>,
}

impl Root {
    /// Opens the directory `path` (which the user named, so symlinks in `path` itself are
    /// followed; nothing below it is).
    pub fn open(path: &Path) -> Result<Self, ClientError> {
        let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| ClientError::target("open the directory", &escape(path.as_os_str().as_bytes()), e.into()))?;
        Ok(Self { fd, path: path.to_owned(), open: Vec::new(), deep: None })
    }

    /// The directory's path as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root's own handle.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `rel` below the root, as the real path it names, escaped for display.
    pub fn display(&self, rel: &TreePath) -> String {
        let mut bytes = self.path.as_os_str().as_bytes().to_vec();
        if !rel.is_root() {
            if !bytes.ends_with(b"/") {
                bytes.push(b'/');
            }
            bytes.extend_from_slice(rel.as_bytes());
        }
        escape(&bytes)
    }

    /// `rel` below the root as a path (for reports; never opened by path).
    pub fn join(&self, rel: &TreePath) -> PathBuf {
        self.path.join(std::ffi::OsStr::from_bytes(rel.as_bytes()))
    }

    /// The directory `rel` (the root itself when empty), opened one component at a time
    /// without following symlinks. Fails with `ENOTDIR` or `ELOOP` when a component is not a
    /// directory, `ENOENT` when it is missing.
    pub fn dir(&mut self, rel: &TreePath) -> io::Result<BorrowedFd<'_>> {
        let names: Vec<&[u8]> = rel.components().collect();
        let shared = self.open.iter().zip(&names).take_while(|((kept, _), name)| kept.as_slice() == **name).count();
        self.open.truncate(shared);
        while self.open.len() < names.len().min(KEPT_DEPTH) {
            let name = names[self.open.len()];
            let fd = open_dir_at(self.kept(), name)?;
            self.open.push((name.to_vec(), fd));
        }
        if names.len() <= KEPT_DEPTH {
            return Ok(self.kept());
        }
        if self.deep.as_ref().is_none_or(|(p, _)| p != rel) {
            self.deep = None;
            let mut cur: Option<OwnedFd> = None;
            for name in &names[KEPT_DEPTH..] {
                cur = Some(open_dir_at(cur.as_ref().map_or(self.kept(), |f| f.as_fd()), name)?);
            }
            self.deep = cur.map(|fd| (rel.clone(), fd));
        }
        self.deep.as_ref().map(|(_, fd)| fd.as_fd()).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    /// The deepest directory handle kept (the root when none is).
    fn kept(&self) -> BorrowedFd<'_> {
        self.open.last().map_or(self.fd.as_fd(), |(_, fd)| fd.as_fd())
    }

    /// Forgets the cached directory handles (after the tree below the root was changed).
    pub fn forget(&mut self) {
        self.open.clear();
        self.deep = None;
    }
}

/// Opens the directory `name` in `dir`, never following a symlink.
pub fn open_dir_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// What is at `name` in `dir`, not following a symlink; `None` when nothing is.
pub fn stat_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<Stat>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The kind of a stat result.
pub fn kind(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// Opens the regular file `name` in `dir` for reading; `None` when it is missing or anything
/// else than a regular file (a symlink is not followed, a FIFO is not waited on).
pub fn open_file_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<std::fs::File>> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::LOOP | rustix::io::Errno::NXIO) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let st = rustix::fs::fstat(&fd)?;
    if kind(&st) != FileType::RegularFile {
        return Ok(None);
    }
    // Back to blocking reads (O_NONBLOCK only kept the open from waiting on a FIFO).
    rustix::fs::fcntl_setfl(&fd, OFlags::empty())?;
    Ok(Some(std::fs::File::from(fd)))
}

/// Makes `name` in `dir` a directory: keeps a directory, creates a missing one (mode 0700
/// until its own mode is applied), and replaces anything else (a symlink is removed, never
/// followed). Returns its handle, and whether this call created it: then it was empty, and
/// only its owner (or root) can add to it.
pub fn ensure_dir_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<(OwnedFd, bool)> {
    match open_dir_at(dir, name) {
        Ok(fd) => return Ok((fd, false)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(_) => remove_at(dir, name)?,
    }
    let created = match rustix::fs::mkdirat(dir, name, Mode::RWXU) {
        Ok(()) => true,
        Err(rustix::io::Errno::EXIST) => false,
        Err(e) => return Err(e.into()),
    };
    Ok((open_dir_at(dir, name)?, created))
}

/// Removes whatever is at `name` in `dir`: a file or symlink is unlinked, a directory is
/// emptied (recursively, never following a symlink) and removed. Missing is fine.
pub fn remove_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    remove_at_depth(dir, name, 0)
}

fn remove_at_depth(dir: BorrowedFd<'_>, name: &[u8], depth: usize) -> io::Result<()> {
    let Some(st) = stat_at(dir, name)? else { return Ok(()) };
    if kind(&st) != FileType::Directory {
        return match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        };
    }
    if depth > MAX_REMOVE_DEPTH {
        return Err(io::Error::other(format!("more than {MAX_REMOVE_DEPTH} directories deep; remove it by hand")));
    }
    let sub = open_dir_at(dir, name)?;
    let mut names = Vec::new();
    {
        let mut entries = rustix::fs::Dir::read_from(&sub)?;
        while let Some(e) = entries.read() {
            let e = e?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(n.to_vec());
            }
        }
    }
    for n in names {
        remove_at_depth(sub.as_fd(), &n, depth + 1)?;
    }
    drop(sub);
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Makes `name` in `dir` a symlink to `target` (raw bytes, not checked: a symlink may point
/// anywhere, since nothing is ever written through one). An existing entry is replaced unless
/// it already is that symlink. Returns whether anything changed.
pub fn symlink_at(dir: BorrowedFd<'_>, name: &[u8], target: &[u8]) -> io::Result<bool> {
    if let Some(st) = stat_at(dir, name)? {
        if kind(&st) == FileType::Symlink
            && rustix::fs::readlinkat(dir, name, Vec::new()).is_ok_and(|t| t.as_bytes() == target)
        {
            return Ok(false);
        }
        remove_at(dir, name)?;
    }
    rustix::fs::symlinkat(target, dir, name)?;
    Ok(true)
}

/// Opens `path`'s parent directory (following symlinks: the caller named it) and returns it
/// with the last component; for files written by path, such as `scatter get --output`.
pub fn open_parent(path: &Path) -> io::Result<(OwnedFd, Vec<u8>)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path does not end in a file name"))?;
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let fd = rustix::fs::openat(CWD, parent, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    Ok((fd, name.as_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tp(s: &[u8]) -> TreePath {
        TreePath::parse(s).expect("valid")
    }

    #[test]
    fn never_descends_through_a_symlink() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (target, outside) = (tmp.path().join("t"), tmp.path().join("outside"));
        std::fs::create_dir_all(target.join("real")).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::os::unix::fs::symlink(&outside, target.join("link")).expect("symlink");
        let mut root = Root::open(&target).expect("open");
        assert!(root.dir(&tp(b"real")).is_ok());
        assert!(root.dir(&tp(b"link")).is_err(), "a symlink was followed");
        assert!(root.dir(&tp(b"link/x")).is_err(), "a symlink was followed");
        // Where a directory is wanted, the symlink is replaced; the outside stays as it was.
        ensure_dir_at(root.fd(), b"link").expect("ensure");
        assert!(std::fs::symlink_metadata(target.join("link")).expect("link").is_dir());
        assert!(outside.exists() && std::fs::read_dir(&outside).expect("outside").next().is_none());
    }

    #[test]
    fn directories_are_found_in_any_order_and_at_any_depth() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let t = tmp.path().join("t");
        let deep: Vec<String> = (0..KEPT_DEPTH + 5).map(|i| format!("d{i}")).collect();
        let paths = ["a", "a/b", "a/b/c", "a/x", "b", "b/b", "a/b/c/d", &deep.join("/"), &deep[..KEPT_DEPTH].join("/")];
        for p in paths {
            std::fs::create_dir_all(t.join(p)).expect("mkdir");
            std::fs::write(t.join(p).join("marker"), p).expect("write");
        }
        let mut root = Root::open(&t).expect("open");
        let order = [0, 1, 2, 6, 3, 4, 5, 7, 8, 7, 2, 0, 1, 8, 4, 6, 3, 5];
        for i in order {
            let dir = root.dir(&tp(paths[i].as_bytes())).expect("open").try_clone_to_owned().expect("dup");
            let fd = rustix::fs::openat(&dir, "marker", OFlags::RDONLY, Mode::empty()).expect("marker");
            let mut got = String::new();
            std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut got).expect("read");
            assert_eq!(got, paths[i], "opened {} for {}", got, paths[i]);
        }
        assert!(root.open.len() <= KEPT_DEPTH, "at most {KEPT_DEPTH} handles are kept");
        assert!(root.dir(&tp(b"a/missing")).is_err());
        let own = std::os::fd::AsRawFd::as_raw_fd(&root.fd());
        assert_eq!(std::os::fd::AsRawFd::as_raw_fd(&root.dir(&TreePath::root()).expect("root")), own);
        // A directory replaced by a symlink after its parent was kept is not followed.
        std::fs::rename(t.join("b/b"), tmp.path().join("moved")).expect("move away");
        std::os::unix::fs::symlink(tmp.path().join("moved"), t.join("b/b")).expect("symlink");
        assert!(root.dir(&tp(b"b/b")).is_err(), "a symlink was followed");
    }

    #[test]
    fn removes_trees_without_following_symlinks() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::write(outside.join("keep"), b"x").expect("write");
        let t = tmp.path().join("t");
        std::fs::create_dir_all(t.join("d/e/f")).expect("mkdir");
        std::fs::write(t.join("d/e/f/file"), b"x").expect("write");
        std::os::unix::fs::symlink(&outside, t.join("d/e/out")).expect("symlink");
        std::fs::set_permissions(t.join("d/e"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let root = Root::open(&t).expect("open");
        remove_at(root.fd(), b"d").expect("remove");
        assert!(!t.join("d").exists());
        assert!(outside.join("keep").exists(), "removal went through a symlink");
        remove_at(root.fd(), b"missing").expect("missing is fine");
    }

    #[test]
    fn symlinks_are_created_and_replaced_in_place() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let t = tmp.path().join("t");
        std::fs::create_dir_all(t.join("dir")).expect("mkdir");
        let root = Root::open(&t).expect("open");
        assert!(symlink_at(root.fd(), b"l\xff", b"/anywhere/\xfe").expect("create"));
        assert!(!symlink_at(root.fd(), b"l\xff", b"/anywhere/\xfe").expect("same"));
        assert!(symlink_at(root.fd(), b"dir", b"../x").expect("replace a directory"));
        let link = t.join(std::ffi::OsStr::from_bytes(b"l\xff"));
        assert_eq!(std::fs::read_link(link).expect("readlink").as_os_str().as_bytes(), b"/anywhere/\xfe");
        assert!(std::fs::symlink_metadata(t.join("dir")).expect("dir").file_type().is_symlink());
        assert!(open_file_at(root.fd(), b"dir").expect("open").is_none(), "a symlink was opened as a file");
    }

    #[test]
    fn display_escapes_the_raw_names() {
        let root = Root::open(Path::new("/")).expect("open /");
        assert_eq!(root.display(&tp(b"a\xff/b\x1b")), "/a\\xff/b\\x1b");
    }
}
