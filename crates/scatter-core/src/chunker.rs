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

/// Splits a reader into content-defined chunks, streaming: at most one maximum-size chunk is
/// buffered. An empty input yields no chunks.
pub fn chunks<R: Read>(reader: R) -> impl Iterator<Item = Result<Chunk, ChunkError>> {
    fastcdc::v2020::StreamCDC::new(reader, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK).map(|r| match r {
        Ok(c) => Ok(Chunk { offset: c.offset, data: c.data }),
        Err(fastcdc::v2020::Error::IoError(e)) => Err(ChunkError(e)),
        Err(e) => Err(ChunkError(std::io::Error::other(e.to_string()))),
    })
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

    #[test]
    fn in_memory_chunking_cuts_where_streaming_does() {
        for len in [0, 1, 1000, MIN_CHUNK as usize - 1, MIN_CHUNK as usize, 3 << 20, 9 << 20] {
            let data = random(len, len as u64);
            let streamed: Vec<Chunk> = chunks(&data[..]).map(|c| c.expect("chunk")).collect();
            assert_eq!(chunks_of(data), streamed, "len {len}");
        }
    }
}
