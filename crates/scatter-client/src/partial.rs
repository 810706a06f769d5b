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
use std::path::{Path, PathBuf};

use rustix::fs::{fadvise, Advice};

use crate::ClientError;

/// Suffix of temporary files; a rerun reuses (truncates) the same name.
pub const PARTIAL_SUFFIX: &str = ".scatter-partial";

/// Every this many bytes written, the writeback of the newest ones is started and the pages
/// of the ones before them (written back by then) are let go. Otherwise nothing reaches the
/// disk until the kernel's dirty limit (gigabytes on a big machine) or the final sync, which
/// then waits for all of it; and every restored byte would take a fresh page-cache page.
pub const WRITEBACK_EVERY: u64 = 8 << 20;

/// An output file being written.
pub struct PartialFile {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<std::fs::File>,
    written: u64,
    /// Where the last writeback window started, and where it ended.
    window: (u64, u64),
}

impl PartialFile {
    /// Creates `.NAME.scatter-partial` next to `dest`.
    pub fn create(dest: &Path) -> Result<Self, ClientError> {
        let dir = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let base = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "output".into());
        let tmp = dir.join(format!(".{base}{PARTIAL_SUFFIX}"));
        let file = std::fs::File::create(&tmp).map_err(ClientError::io(&tmp))?;
        Ok(Self { tmp, dest: dest.to_owned(), file: Some(file), written: 0, window: (0, 0) })
    }

    /// Appends `data` to the file.
    pub fn write(&mut self, data: &[u8]) -> Result<(), ClientError> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| ClientError::io(&self.tmp)(std::io::Error::other("the file was already committed")))?;
        file.write_all(data).map_err(ClientError::io(&self.tmp))?;
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
            f.sync_all().map_err(ClientError::io(&self.tmp))?;
        }
        std::fs::rename(&self.tmp, &self.dest).map_err(ClientError::io(&self.dest))?;
        self.tmp = PathBuf::new();
        Ok(())
    }

    /// Where the file goes.
    pub fn dest(&self) -> &Path {
        &self.dest
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Flushes every written file of the file system holding `dir` to disk (`syncfs`).
pub fn sync_fs(dir: &Path) -> Result<(), ClientError> {
    let d = std::fs::File::open(dir).map_err(ClientError::io(dir))?;
    rustix::fs::syncfs(&d).map_err(|e| ClientError::io(dir)(e.into()))
}
