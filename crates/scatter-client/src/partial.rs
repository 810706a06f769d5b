//! Files written under a temporary name and renamed into place once complete and synced, so
//! a failed or interrupted write never leaves a partial file under the final name.
//!
//! Big files are written around the page cache (`scatter-disk`): they are synced before the
//! command reports success anyway, and on this kind of machine filling new page-cache pages
//! cost more system time than the whole rest of a restore. Small files go through the page
//! cache, where one `syncfs` at the end flushes thousands of them at once.

use std::io::Write;
use std::path::{Path, PathBuf};

use scatter_disk::BlockWriter;

use crate::ClientError;

/// Files at least this big are written around the page cache.
const DIRECT_FROM: u64 = 1 << 20;
/// The block size of those writes.
const DIRECT_BLOCK: usize = 2 << 20;

enum Output {
    Cached(std::fs::File),
    Direct(BlockWriter),
}

/// Suffix of temporary files; a rerun reuses (truncates) the same name.
pub const PARTIAL_SUFFIX: &str = ".scatter-partial";

/// An output file being written.
pub struct PartialFile {
    tmp: PathBuf,
    dest: PathBuf,
    out: Option<Output>,
}

impl PartialFile {
    /// Creates `.NAME.scatter-partial` next to `dest`, for a file of about `size` bytes.
    pub fn create(dest: &Path, size: u64) -> Result<Self, ClientError> {
        let dir = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let base = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "output".into());
        let tmp = dir.join(format!(".{base}{PARTIAL_SUFFIX}"));
        let out = if size >= DIRECT_FROM {
            Output::Direct(BlockWriter::create(&tmp, DIRECT_BLOCK).map_err(ClientError::io(&tmp))?)
        } else {
            Output::Cached(std::fs::File::create(&tmp).map_err(ClientError::io(&tmp))?)
        };
        Ok(Self { tmp, dest: dest.to_owned(), out: Some(out) })
    }

    /// Appends `data` to the file.
    pub fn write(&mut self, data: &[u8]) -> Result<(), ClientError> {
        match self.out.as_mut() {
            Some(Output::Cached(f)) => f.write_all(data),
            Some(Output::Direct(w)) => w.write(data),
            None => Err(std::io::Error::other("the file was already committed")),
        }
        .map_err(ClientError::io(&self.tmp))
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
        let file = match self.out.take() {
            Some(Output::Cached(f)) => Some(f),
            Some(Output::Direct(w)) => Some(w.finish().map_err(ClientError::io(&self.tmp))?),
            None => None,
        };
        if let (Some(f), true) = (file, sync) {
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
