//! Content-defined chunking (FastCDC 2020).
//!
//! Boundaries depend only on content, so an edit in the middle of a large file changes the
//! chunks around the edit and leaves the others (and their ids) as they were: deduplication
//! across versions comes from here.

use std::io::Read;

/// Smallest chunk the chunker cuts, except at the end of the input.
pub const MIN_CHUNK: u32 = 256 * 1024;
/// Average chunk size the chunker aims for.
pub const AVG_CHUNK: u32 = 1024 * 1024;
/// Largest chunk the chunker cuts.
pub const MAX_CHUNK: u32 = 4 * 1024 * 1024;

/// Returned when the input cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("reading the input failed: {0}")]
pub struct ChunkError(#[from] pub std::io::Error);

/// One piece of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Byte offset of the chunk in the input.
    pub offset: u64,
    /// The chunk's bytes.
    pub data: Vec<u8>,
}

/// How much input the streaming chunker holds at most. A chunk is cut once at least
/// [`MAX_CHUNK`] bytes are buffered (or the input ended), so each refill moves at most one
/// chunk's worth of unread bytes to the front.
const READ_AHEAD: usize = 4 * MAX_CHUNK as usize;

/// Splits a reader into content-defined chunks, streaming, with at most [`READ_AHEAD`] bytes
/// buffered. An empty input yields no chunks. The reader is read in large pieces: wrapping it
/// in a `BufReader` only adds a copy.
///
/// The cut points are FastCDC 2020's (those of `fastcdc::v2020::StreamCDC`, tested). This does
/// not use `StreamCDC` itself because it moves the whole rest of its buffer forward and
/// zero-fills it after every chunk: several passes over every byte in a backup's profile.
pub fn chunks<R: Read>(reader: R) -> impl Iterator<Item = Result<Chunk, ChunkError>> {
    chunks_sized(reader, None)
}

/// [`chunks`] of an input expected to be `size` bytes long (a file's length, a request's
/// content length): the buffer is sized for it at once instead of grown, which costs a copy
/// of what it held and fresh pages at every step. A wrong size only costs that growth.
pub fn chunks_sized<R: Read>(reader: R, size: Option<u64>) -> impl Iterator<Item = Result<Chunk, ChunkError>> {
    Chunks { reader, size, buf: Vec::new(), start: 0, offset: 0, eof: false }
}

struct Chunks<R> {
    reader: R,
    /// The input's expected length.
    size: Option<u64>,
    /// Unread bytes are `buf[start..]`.
    buf: Vec<u8>,
    start: usize,
    /// Input offset of `buf[start]`.
    offset: u64,
    eof: bool,
}

impl<R: Read> Chunks<R> {
    /// Buffers at least [`MAX_CHUNK`] unread bytes, unless the input ends first.
    fn fill(&mut self) -> std::io::Result<()> {
        if self.eof || self.buf.len() - self.start >= MAX_CHUNK as usize {
            return Ok(());
        }
        self.buf.drain(..self.start);
        self.start = 0;
        let want = READ_AHEAD - self.buf.len();
        if let Some(size) = self.size {
            // What is still expected, and a byte more: the end is then seen without growing.
            let expected = size.saturating_sub(self.offset + self.buf.len() as u64).saturating_add(1);
            self.buf.reserve_exact(expected.min(want as u64) as usize);
        }
        // `read_to_end` reads into the spare capacity without zeroing it first where the
        // reader allows (files do), retries interrupted reads, and keeps what was read before
        // an error.
        let got = (&mut self.reader).take(want as u64).read_to_end(&mut self.buf)?;
        self.eof = got < want;
        Ok(())
    }
}

impl<R: Read> Iterator for Chunks<R> {
    type Item = Result<Chunk, ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Err(e) = self.fill() {
            // A failed read ends the input: nothing after it could be cut where it belongs.
            self.eof = true;
            self.start = self.buf.len();
            return Some(Err(ChunkError(e)));
        }
        let unread = &self.buf[self.start..];
        if unread.is_empty() {
            return None;
        }
        let len = fastcdc::v2020::FastCDC::new(unread, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK)
            .next()
            .map_or(unread.len(), |c| c.length);
        let chunk = Chunk { offset: self.offset, data: unread[..len].to_vec() };
        self.start += len;
        self.offset += len as u64;
        Some(Ok(chunk))
    }
}

/// Splits bytes already in memory into the same chunks [`chunks`] would cut. For small files:
/// the streaming chunker sets up a [`MAX_CHUNK`] buffer per input, which costs more than
/// reading a file of a few KiB whole. An input shorter than [`MIN_CHUNK`] is one chunk,
/// without a copy.
pub fn chunks_of(data: Vec<u8>) -> Vec<Chunk> {
    if data.len() < MIN_CHUNK as usize {
        return if data.is_empty() { Vec::new() } else { vec![Chunk { offset: 0, data }] };
    }
    fastcdc::v2020::FastCDC::new(&data, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK)
        .map(|c| Chunk { offset: c.offset as u64, data: data[c.offset..c.offset + c.length].to_vec() })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_run_of_zeros_is_cut_into_chunks_of_the_largest_size() {
        // A sparse restore counts the holes it will leave by this (see the client's restore).
        let sizes: Vec<usize> = chunks_of(vec![0; 3 * MAX_CHUNK as usize + 5]).iter().map(|c| c.data.len()).collect();
        assert_eq!(sizes, [MAX_CHUNK as usize, MAX_CHUNK as usize, MAX_CHUNK as usize, 5]);
    }

    use super::*;
    use rand::{RngCore, SeedableRng};

    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut v = vec![0u8; len];
        rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
        v
    }

    fn cut(data: &[u8]) -> Vec<Chunk> {
        chunks(data).collect::<Result<_, _>>().expect("in-memory read")
    }

    #[test]
    fn empty_input_has_no_chunks() {
        assert!(cut(&[]).is_empty());
    }

    #[test]
    fn small_input_is_one_chunk() {
        let c = cut(b"x");
        assert_eq!(c, vec![Chunk { offset: 0, data: b"x".to_vec() }]);
    }

    #[test]
    fn chunks_concatenate_to_input_and_respect_bounds() {
        let data = random(20 << 20, 1);
        let c = cut(&data);
        let mut offset = 0u64;
        for (i, ch) in c.iter().enumerate() {
            assert_eq!(ch.offset, offset);
            assert!(ch.data.len() <= MAX_CHUNK as usize);
            if i + 1 < c.len() {
                assert!(ch.data.len() >= MIN_CHUNK as usize);
            }
            offset += ch.data.len() as u64;
        }
        assert_eq!(c.iter().flat_map(|c| c.data.clone()).collect::<Vec<u8>>(), data);
        let avg = data.len() / c.len();
        assert!((AVG_CHUNK as usize / 2..AVG_CHUNK as usize * 2).contains(&avg), "avg {avg}");
    }

    #[test]
    fn an_edit_in_the_middle_changes_only_nearby_chunks() {
        let data = random(16 << 20, 2);
        let mut edited = data.clone();
        edited[8 << 20] ^= 0xff;
        let a: std::collections::HashSet<_> = cut(&data).into_iter().map(|c| c.data).collect();
        let b = cut(&edited);
        let changed = b.iter().filter(|c| !a.contains(&c.data)).count();
        assert!(changed <= 2, "{changed} of {} chunks changed", b.len());
    }

    /// A reader that hands out at most `step` bytes per read.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Stored chunk ids depend on these cut points: they must stay those of fastcdc's own
    /// streaming chunker, whatever the reader's read sizes.
    #[test]
    fn cuts_are_those_of_fastcdc_streaming() {
        for (len, step) in [(0, 1), (100, 7), (MIN_CHUNK as usize + 5, 4096), (23 << 20, 1 << 20), (23 << 20, 65_537)] {
            let data = random(len, len as u64 + 3);
            let ours: Vec<Chunk> = chunks(Trickle { data: &data, step }).map(|c| c.expect("chunk")).collect();
            let theirs: Vec<Chunk> = fastcdc::v2020::StreamCDC::new(&data[..], MIN_CHUNK, AVG_CHUNK, MAX_CHUNK)
                .map(|c| c.expect("chunk"))
                .map(|c| Chunk { offset: c.offset, data: c.data })
                .collect();
            assert_eq!(ours, theirs, "{len} bytes read {step} at a time");
            // The expected size only sizes the buffer: right, short, long or absurd, the
            // cuts stay the same.
            for size in [len as u64, len as u64 / 2, len as u64 * 3 + 1, 0, u64::MAX] {
                let sized: Vec<Chunk> =
                    chunks_sized(Trickle { data: &data, step }, Some(size)).map(|c| c.expect("chunk")).collect();
                assert_eq!(sized, theirs, "{len} bytes read {step} at a time, {size} expected");
            }
        }
    }

    /// An interrupted read is retried, not taken for an error or the end.
    #[test]
    fn interrupted_reads_are_retried() {
        struct Interrupting<'a>(Trickle<'a>, bool);
        impl Read for Interrupting<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.1 = !self.1;
                if self.1 {
                    return Err(std::io::ErrorKind::Interrupted.into());
                }
                self.0.read(buf)
            }
        }
        let data = random(9 << 20, 5);
        let got: Vec<Chunk> =
            chunks(Interrupting(Trickle { data: &data, step: 1 << 20 }, false)).map(|c| c.expect("chunk")).collect();
        assert_eq!(got, cut(&data));
    }

    #[test]
    fn a_read_error_is_reported_and_ends_the_chunks() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk on fire"))
            }
        }
        let mut c = chunks(Failing);
        assert!(matches!(c.next(), Some(Err(ChunkError(e))) if e.to_string() == "disk on fire"));
        assert!(c.next().is_none());
    }

    #[test]
    fn in_memory_chunking_cuts_where_streaming_does() {
        for len in [0, 1, 1000, MIN_CHUNK as usize - 1, MIN_CHUNK as usize, 3 << 20, 9 << 20] {
            let data = random(len, len as u64);
            let streamed: Vec<Chunk> = chunks(&data[..]).map(|c| c.expect("chunk")).collect();
            assert_eq!(chunks_of(data), streamed, "len {len}");
        }
    }
}
