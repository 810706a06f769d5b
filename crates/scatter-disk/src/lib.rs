//! Bulk file I/O around the page cache (`O_DIRECT` on Linux), for data that is written once
//! and not read back soon: the shards on a host.
//!
//! Why: a buffered write copies every byte into the page cache, and on a machine whose memory
//! the hypervisor backs lazily, filling pages new to the guest costs far more than the copy
//! (measured here with `dd`: 1 GiB written and fsynced took 3.0 s of system time buffered,
//! 0.2 s direct).
//! Those bytes are fsynced at once anyway, and a host's shards are read back rarely (restores,
//! audits, scrubs), so keeping them cached only evicts data that is hot.
//!
//! Direct I/O wants buffers, offsets and lengths aligned to the device's block size:
//! [`AlignedBuf`] keeps its bytes on an [`ALIGN`] boundary, the last block of a file is written
//! padded and the file is then cut to its length. A file system that refuses `O_DIRECT`
//! (tmpfs, some FUSE file systems) gets ordinary buffered I/O instead, with the same results.

use bytes::Bytes;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// The alignment direct I/O is done with: 4 KiB covers the logical block size of every
/// common device (512 B or 4 KiB).
pub const ALIGN: usize = 4096;

fn round_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// A byte buffer whose contents start on an [`ALIGN`] boundary and never move: it is made
/// with room for a fixed number of bytes (its limit) plus the padding direct I/O needs.
pub struct AlignedBuf {
    buf: Vec<u8>,
    start: usize,
    limit: usize,
}

impl AlignedBuf {
    /// An empty buffer with room for `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        // Room for the bytes, padding to a block, one block read past the end, and the offset
        // that aligns the start.
        let mut buf: Vec<u8> = Vec::with_capacity(round_up(limit) + 2 * ALIGN);
        let start = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
        buf.resize(start, 0);
        Self { buf, start, limit }
    }

    /// The number of bytes held.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether the buffer holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many more bytes fit.
    pub fn room(&self) -> usize {
        self.limit - self.len()
    }

    /// Appends `data`, or returns `false` and appends nothing if it does not fit.
    pub fn extend(&mut self, data: &[u8]) -> bool {
        if data.len() > self.room() {
            return false;
        }
        self.buf.extend_from_slice(data);
        true
    }

    /// The bytes held.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Empties the buffer, keeping its memory.
    pub fn clear(&mut self) {
        self.buf.truncate(self.start);
    }

    /// The bytes held, as `Bytes` that share this buffer's memory (no copy).
    pub fn into_bytes(self) -> Bytes {
        let (start, end) = (self.start, self.buf.len());
        Bytes::from(self.buf).slice(start..end)
    }

    /// The bytes held followed by zeros up to the next [`ALIGN`] multiple; [`Self::unpad`]
    /// takes the zeros off again.
    fn padded(&mut self) -> &[u8] {
        let end = self.start + round_up(self.len());
        self.buf.resize(end, 0);
        &self.buf[self.start..]
    }

    fn unpad(&mut self, len: usize) {
        self.buf.truncate(self.start + len);
    }

    /// The buffer's memory from its start for `n` bytes (zero-filled past what it held), to
    /// read into; its capacity must allow `n`.
    fn padded_to(&mut self, n: usize) -> &mut [u8] {
        self.buf.resize(self.start + n, 0);
        &mut self.buf[self.start..]
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf").field("len", &self.len()).field("limit", &self.limit).finish()
    }
}

#[cfg(target_os = "linux")]
fn direct_flag() -> i32 {
    rustix::fs::OFlags::DIRECT.bits() as i32
}

/// Whether an error means "this file system does not do direct I/O (here)".
fn refused_direct(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error())
}

/// Opens `path` with `options`, directly where the file system allows it; says which it got.
fn open(path: &Path, options: &mut std::fs::OpenOptions) -> io::Result<(File, bool)> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        match options.clone().custom_flags(direct_flag()).open(path) {
            Ok(file) => return Ok((file, true)),
            Err(e) if refused_direct(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((options.open(path)?, false))
}

/// Turns direct I/O off on an open file, after the file system refused a direct transfer.
fn go_buffered(file: &File) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
        let flags = fcntl_getfl(file)?;
        fcntl_setfl(file, flags - OFlags::DIRECT)?;
    }
    let _ = file;
    Ok(())
}

/// A new file written front to back, around the page cache where the file system allows it.
/// Nothing is synced: the caller decides when the file must be durable.
#[derive(Debug)]
pub struct DirectFile {
    file: File,
    direct: bool,
    len: u64,
    /// A write of a length that is not an [`ALIGN`] multiple ended the file.
    ended: bool,
}

impl DirectFile {
    /// Creates the file, truncating one that exists.
    pub fn create(path: &Path) -> io::Result<Self> {
        let (file, direct) = open(path, std::fs::OpenOptions::new().write(true).create(true).truncate(true))?;
        Ok(Self { file, direct, len: 0, ended: false })
    }

    /// Appends the buffer's bytes. Every append but the last must be a multiple of [`ALIGN`]
    /// long; an append after a shorter one is refused.
    pub fn append(&mut self, buf: &mut AlignedBuf) -> io::Result<()> {
        if self.ended {
            return Err(io::Error::other("a direct file was appended to after its last, partial block"));
        }
        let len = buf.len();
        if self.direct {
            let result = self.file.write_all(buf.padded());
            buf.unpad(len);
            match result {
                Ok(()) => {
                    self.len += len as u64;
                    self.ended = !len.is_multiple_of(ALIGN);
                    return Ok(());
                }
                // A refusal at the first write leaves the file as it was.
                Err(e) if refused_direct(&e) => {
                    go_buffered(&self.file)?;
                    self.direct = false;
                }
                Err(e) => return Err(e),
            }
        }
        self.file.write_all(buf.as_slice())?;
        self.len += len as u64;
        self.ended = !len.is_multiple_of(ALIGN);
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Cuts the padding of the last block off and hands the file back, not yet synced.
    pub fn finish(self) -> io::Result<File> {
        if self.ended {
            self.file.set_len(self.len)?;
        }
        Ok(self.file)
    }
}

/// Reads from `offset` into `window` until `until` bytes are in or the file ends, and returns
/// how many were read. Direct I/O is turned off if the file system refuses the first read.
fn read_at_least(file: &File, direct: &mut bool, window: &mut [u8], offset: u64, until: usize) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut got = 0;
    while got < until {
        match file.read_at(&mut window[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if *direct && got == 0 && refused_direct(&e) => {
                go_buffered(file)?;
                *direct = false;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads bytes `range` of a file around the page cache where the file system allows it: the
/// blocks that hold them, not the whole file. A range past the end of the file (or one that
/// ends before it starts) is an error of kind `UnexpectedEof`.
pub fn read_range(path: &Path, range: std::ops::Range<u64>) -> io::Result<Bytes> {
    let (file, mut direct) = open(path, std::fs::OpenOptions::new().read(true))?;
    let len = file.metadata()?.len();
    if range.start > range.end || range.end > len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("bytes {}..{} are not in {} ({len} bytes)", range.start, range.end, path.display()),
        ));
    }
    let first = range.start - range.start % ALIGN as u64;
    let want = round_up((range.end - first) as usize);
    let mut buf = AlignedBuf::with_limit(want);
    let window = buf.padded_to(want);
    let end = (range.end - first) as usize;
    // Only until the range is in: a further direct read from the unaligned end of the file
    // may be refused by some file systems.
    let got = read_at_least(&file, &mut direct, window, first, end)?;
    if got < end {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{} shrank while it was read", path.display()),
        ));
    }
    buf.unpad(end);
    Ok(buf.into_bytes().slice((range.start - first) as usize..))
}

/// Reads a whole file around the page cache where the file system allows it.
pub fn read(path: &Path) -> io::Result<Bytes> {
    let (file, mut direct) = open(path, std::fs::OpenOptions::new().read(true))?;
    let len = usize::try_from(file.metadata()?.len()).map_err(io::Error::other)?;
    let mut buf = AlignedBuf::with_limit(len);
    // Reads a block past the end too, so a file that grew since the stat is noticed.
    let want = buf.padded_to(round_up(len) + ALIGN);
    let until = want.len();
    let got = read_at_least(&file, &mut direct, want, 0, until)?;
    if got != len {
        return Err(io::Error::other(format!(
            "{} changed while it was read ({len} bytes when opened, {got} read)",
            path.display()
        )));
    }
    buf.unpad(len);
    Ok(buf.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 + i / 4099) as u8).collect()
    }

    #[test]
    fn buffers_are_aligned_and_bounded() {
        for limit in [0, 1, ALIGN - 1, ALIGN, ALIGN + 1, 3 << 20] {
            let mut b = AlignedBuf::with_limit(limit);
            assert_eq!(b.as_slice().as_ptr() as usize % ALIGN, 0);
            assert!(b.extend(&pattern(limit)));
            assert!(!b.extend(&[1]), "a buffer takes no more than its limit");
            assert_eq!(b.as_slice(), &pattern(limit)[..]);
            let ptr = b.as_slice().as_ptr();
            assert_eq!(b.padded().len() % ALIGN, 0);
            b.unpad(limit);
            assert_eq!(b.as_slice().as_ptr(), ptr, "padding does not move the bytes");
            assert_eq!(b.into_bytes(), Bytes::from(pattern(limit)));
        }
    }

    #[test]
    fn files_of_every_awkward_size_round_trip() {
        round_trips(&tempfile::tempdir().expect("tempdir"));
    }

    /// tmpfs refused `O_DIRECT` before Linux 6.6: either way the bytes must come back.
    #[test]
    fn files_round_trip_on_tmpfs_too() {
        if Path::new("/dev/shm").is_dir() {
            round_trips(&tempfile::tempdir_in("/dev/shm").expect("tempdir"));
        }
    }

    fn round_trips(dir: &tempfile::TempDir) {
        for len in [0, 1, 511, 512, ALIGN - 1, ALIGN, ALIGN + 1, 5 * ALIGN + 17, (1 << 20) + 3] {
            let data = pattern(len);
            let path = dir.path().join(format!("one-{len}"));
            let mut f = DirectFile::create(&path).expect("create");
            let mut buf = AlignedBuf::with_limit(len);
            assert!(buf.extend(&data));
            f.append(&mut buf).expect("append");
            assert_eq!(f.len(), len as u64);
            f.finish().expect("finish").sync_all().expect("sync");
            assert_eq!(std::fs::read(&path).expect("read"), data, "{len} bytes, read buffered");
            assert_eq!(read(&path).expect("read"), data, "{len} bytes, read directly");

            // The same bytes in blocks, the last one partial.
            let path = dir.path().join(format!("blocks-{len}"));
            let mut f = DirectFile::create(&path).expect("create");
            let mut block = AlignedBuf::with_limit(2 * ALIGN);
            for piece in data.chunks(2 * ALIGN) {
                block.clear();
                assert!(block.extend(piece));
                f.append(&mut block).expect("append");
            }
            f.finish().expect("finish");
            assert_eq!(std::fs::read(&path).expect("read"), data, "{len} bytes in blocks");
        }
    }

    #[test]
    fn ranges_read_only_their_bytes() {
        for dir in [tempfile::tempdir().expect("tempdir")]
            .into_iter()
            .chain(Path::new("/dev/shm").is_dir().then(|| tempfile::tempdir_in("/dev/shm").expect("tempdir")))
        {
            let data = pattern(3 * ALIGN + 100);
            let path = dir.path().join("f");
            std::fs::write(&path, &data).expect("write");
            let n = data.len() as u64;
            for (a, b) in [(0, 0), (0, 1), (1, 2), (ALIGN as u64 - 1, ALIGN as u64 + 1), (5000, n), (0, n), (n, n)] {
                let got = read_range(&path, a..b).expect("in range");
                assert_eq!(&got[..], &data[a as usize..b as usize], "{a}..{b}");
            }
            for (a, b) in [(0, n + 1), (n + 1, n + 2), (10, 5)] {
                let err = read_range(&path, a..b).expect_err("out of range");
                assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{a}..{b}");
            }
        }
    }

    #[test]
    fn an_append_after_a_partial_block_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let mut f = DirectFile::create(&path).expect("create");
        let mut buf = AlignedBuf::with_limit(10);
        assert!(buf.extend(b"0123456789"));
        f.append(&mut buf).expect("append");
        assert!(f.append(&mut buf).is_err(), "direct or not, a partial block ends the file");
        f.finish().expect("finish");
        assert_eq!(std::fs::read(&path).expect("read"), b"0123456789");
    }

    #[test]
    fn create_truncates_and_read_of_a_missing_file_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, pattern(3 * ALIGN)).expect("write");
        let mut f = DirectFile::create(&path).expect("create");
        let mut buf = AlignedBuf::with_limit(5);
        assert!(buf.extend(b"short"));
        f.append(&mut buf).expect("append");
        f.finish().expect("finish");
        assert_eq!(read(&path).expect("read"), &b"short"[..]);
        assert_eq!(read(&dir.path().join("absent")).map_err(|e| e.kind()).err(), Some(io::ErrorKind::NotFound));
    }
}
