//! Files written under a temporary name and renamed into place once complete and synced, so
//! a failed or interrupted write never leaves a partial file under the final name.
//!
//! Files go through the page cache, and a big file's writeback is started as it is written
//! (see [`WRITEBACK_EVERY`]). Writing big files around the cache (`O_DIRECT`, as hosts write
//! shards) was measured too: on a grid whose hosts were reading at the same time, a 1 GiB
//! restore's writer waited on the device and ran at about 340 MB/s against about 500 MB/s
//! through the page cache, with one or two writes in flight, so it is not done.

use std::io::Write;
use std::num::NonZeroU64;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{fadvise, Advice, Mode, OFlags};
use scatter_core::tree::escape;

use crate::ClientError;

/// Suffix of temporary files; a rerun reuses (truncates) the same name.
pub const PARTIAL_SUFFIX: &str = ".scatter-partial";

/// Every this many bytes written, the writeback of the newest ones is started and the pages
/// of the ones before them (written back by then) are let go. Otherwise nothing reaches the
/// disk until the kernel's dirty limit (gigabytes on a big machine) or the final sync, which
/// then waits for all of it; and every restored byte would take a fresh page-cache page.
pub const WRITEBACK_EVERY: u64 = 8 << 20;

/// An output file being written: a temporary file in the destination's directory, created
/// and renamed relative to that directory's handle (never through a path that could lead
/// elsewhere by the time it is used).
pub struct PartialFile {
    dir: OwnedFd,
    /// The temporary name; empty once renamed into place.
    tmp: Vec<u8>,
    name: Vec<u8>,
    dest: PathBuf,
    file: Option<std::fs::File>,
    written: u64,
    /// Where the last writeback window started, and where it ended.
    window: (u64, u64),
}

impl PartialFile {
    /// Creates `.NAME.scatter-partial` next to `dest` (a path the user gave; its directory
    /// is opened once, following symlinks as the user would), readable as the umask allows.
    pub fn create(dest: &Path) -> Result<Self, ClientError> {
        let (dir, name) = crate::confined::open_parent(dest).map_err(ClientError::io(dest))?;
        Self::create_in(dir, &name, dest.to_owned(), 0o666)
    }

    /// Creates the temporary file for `name` in the directory `dir`, with mode 0600 until
    /// the caller applies the final mode; `dest` is the path reports show.
    pub fn create_at(dir: BorrowedFd<'_>, name: &[u8], dest: PathBuf) -> Result<Self, ClientError> {
        let dir = dir.try_clone_to_owned().map_err(ClientError::io(&dest))?;
        Self::create_in(dir, name, dest, 0o600)
    }

    fn create_in(dir: OwnedFd, name: &[u8], dest: PathBuf, mode: u32) -> Result<Self, ClientError> {
        let tmp = partial_name(name);
        let fail = |e: std::io::Error| ClientError::target("create the temporary file for", &show(&dest), e);
        // A leftover of an earlier run (or anything planted under the name) goes first; the
        // new file is created exclusively and never through a symlink.
        crate::confined::remove_at(dir.as_fd(), &tmp).map_err(fail)?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd =
            rustix::fs::openat(&dir, tmp.as_slice(), flags, Mode::from_raw_mode(mode)).map_err(|e| fail(e.into()))?;
        Ok(Self {
            dir,
            tmp,
            name: name.to_vec(),
            dest,
            file: Some(std::fs::File::from(fd)),
            written: 0,
            window: (0, 0),
        })
    }

    /// The file being written (to apply metadata through it before it is renamed).
    pub fn file(&self) -> Option<&std::fs::File> {
        self.file.as_ref()
    }

    /// Appends `data` to the file.
    pub fn write(&mut self, data: &[u8]) -> Result<(), ClientError> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| ClientError::io(&self.dest)(std::io::Error::other("the file was already committed")))?;
        file.write_all(data).map_err(|e| ClientError::target("write", &show(&self.dest), e))?;
        self.written += data.len() as u64;
        let (start, end) = self.window;
        if self.written - end >= WRITEBACK_EVERY {
            // `DONTNEED` starts writeback of dirty pages and drops clean ones: the previous
            // window's pages, written back by now, are dropped; the new window's are started.
            // Only advice: a file system that ignores it is synced at the end all the same.
            let _ = fadvise(&*file, start, NonZeroU64::new(self.written - start), Advice::DontNeed);
            self.window = (end, self.written);
        }
        Ok(())
    }

    /// Syncs and renames the file into place.
    pub fn commit(self) -> Result<(), ClientError> {
        self.finish(true)
    }

    /// Renames the file into place without syncing it first: for many files at once, followed
    /// by one [`sync_fs`] before reporting success.
    pub fn commit_unsynced(self) -> Result<(), ClientError> {
        self.finish(false)
    }

    fn finish(mut self, sync: bool) -> Result<(), ClientError> {
        if let (Some(f), true) = (self.file.take(), sync) {
            f.sync_all().map_err(|e| ClientError::target("sync", &show(&self.dest), e))?;
        }
        // `renameat` replaces a symlink at the destination, never what it points to.
        rustix::fs::renameat(&self.dir, self.tmp.as_slice(), &self.dir, self.name.as_slice())
            .map_err(|e| ClientError::target("move into place", &show(&self.dest), e.into()))?;
        self.tmp.clear();
        Ok(())
    }

    /// Where the file goes.
    pub fn dest(&self) -> &Path {
        &self.dest
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.tmp.is_empty() {
            let _ = rustix::fs::unlinkat(&self.dir, self.tmp.as_slice(), rustix::fs::AtFlags::empty());
        }
    }
}

/// The temporary name for `name`: `.NAME.scatter-partial`, with NAME cut short when the
/// whole would exceed the 255-byte limit of a name.
pub fn partial_name(name: &[u8]) -> Vec<u8> {
    let keep = name.len().min(255 - 1 - PARTIAL_SUFFIX.len());
    [b".", &name[..keep], PARTIAL_SUFFIX.as_bytes()].concat()
}

fn show(path: &Path) -> String {
    escape(path.as_os_str().as_bytes())
}

/// Flushes every written file of the file system holding `dir` to disk (`syncfs`).
pub fn sync_fs(dir: &Path) -> Result<(), ClientError> {
    let d = std::fs::File::open(dir).map_err(ClientError::io(dir))?;
    rustix::fs::syncfs(&d).map_err(|e| ClientError::io(dir)(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn temporary_names_fit_in_one_name() {
        assert_eq!(partial_name(b"a\xff"), b".a\xff.scatter-partial".to_vec());
        let long = vec![b'x'; 255];
        assert_eq!(partial_name(&long).len(), 255);
    }

    #[test]
    fn never_writes_through_a_planted_symlink() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (t, outside) = (tmp.path().join("t"), tmp.path().join("outside"));
        std::fs::create_dir_all(&t).expect("mkdir");
        std::fs::write(&outside, b"original").expect("write");
        // Both the temporary name and the final name point outside.
        let tmp_name = std::ffi::OsStr::from_bytes(b".f\xff.scatter-partial");
        std::os::unix::fs::symlink(&outside, t.join(tmp_name)).expect("symlink");
        let dest = t.join(std::ffi::OsStr::from_bytes(b"f\xff"));
        std::os::unix::fs::symlink(&outside, &dest).expect("symlink");
        let dir = std::fs::File::open(&t).expect("open");
        let mut f = PartialFile::create_at(dir.as_fd(), b"f\xff", dest.clone()).expect("create");
        f.write(b"restored").expect("write");
        f.commit().expect("commit");
        assert_eq!(std::fs::read(&outside).expect("outside"), b"original");
        assert!(std::fs::symlink_metadata(&dest).expect("dest").is_file());
        assert_eq!(std::fs::read(&dest).expect("dest"), b"restored");
        assert!(!t.join(tmp_name).exists() && std::fs::symlink_metadata(t.join(tmp_name)).is_err());
    }
}
