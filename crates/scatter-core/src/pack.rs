//! Packs: sealed chunks appended into one blob of up to [`PACK_TARGET`] bytes.
//!
//! Packing keeps hosts' files few and large (one request and one fsync per pack shard, not
//! per chunk), while a small chunk is still readable alone through a byte range. A pack has
//! no header: the catalog records where each chunk lies (`chunk → pack, offset, len`).

use crate::ids::ChunkId;

/// A pack is closed once adding the next chunk would take it past this size. One chunk larger
/// than this still makes one pack of its own.
pub const PACK_TARGET: usize = 16 * 1024 * 1024;

/// Room reserved past the target, so that erasure coding can pad the pack to whole shards
/// (at most `k * SHARD_ALIGN` bytes) without reallocating and copying it.
const PAD_ROOM: usize = 64 * 1024;

/// The capacity a pack buffer is given: a pack of up to [`PACK_TARGET`] bytes and its padding
/// fit without reallocation.
pub const PACK_CAPACITY: usize = PACK_TARGET + PAD_ROOM;

/// Where one sealed chunk lies in its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    /// The chunk.
    pub id: ChunkId,
    /// Offset of its sealed bytes in the pack.
    pub offset: u64,
    /// Length of its sealed bytes.
    pub len: u64,
}

/// Collects sealed chunks into a pack.
#[derive(Debug, Default)]
pub struct PackBuilder {
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

impl PackBuilder {
    /// An empty pack.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty pack filled into `buf` (cleared first): lets a caller reuse the buffer of a
    /// pack already uploaded.
    pub fn with_buffer(mut buf: Vec<u8>) -> Self {
        buf.clear();
        Self { buf, entries: Vec::new() }
    }

    /// Bytes in the pack so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no chunk was added yet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a sealed chunk of `len` bytes should start a new pack instead.
    pub fn would_overflow(&self, len: usize) -> bool {
        !self.is_empty() && self.buf.len() + len > PACK_TARGET
    }

    /// Appends a sealed chunk.
    pub fn push(&mut self, id: ChunkId, sealed: &[u8]) {
        if self.buf.is_empty() {
            self.buf.reserve(PACK_CAPACITY.max(sealed.len() + PAD_ROOM));
        }
        self.entries.push(PackEntry { id, offset: self.buf.len() as u64, len: sealed.len() as u64 });
        self.buf.extend_from_slice(sealed);
    }

    /// Appends a chunk that `seal` writes straight into the pack (see
    /// [`crate::crypto::DataKey::seal_chunk_into`]): no intermediate buffer, no copy.
    pub fn push_sealed(&mut self, id: ChunkId, seal: impl FnOnce(&mut Vec<u8>)) {
        if self.buf.is_empty() {
            self.buf.reserve(PACK_CAPACITY);
        }
        let offset = self.buf.len();
        seal(&mut self.buf);
        self.entries.push(PackEntry { id, offset: offset as u64, len: (self.buf.len() - offset) as u64 });
    }

    /// The pack's bytes and its chunk table.
    pub fn finish(self) -> (Vec<u8>, Vec<PackEntry>) {
        (self.buf, self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_point_at_their_bytes() {
        let mut b = PackBuilder::new();
        assert!(!b.would_overflow(PACK_TARGET * 2), "an empty pack takes any chunk");
        b.push(ChunkId::from_bytes([1; 32]), b"abc");
        b.push(ChunkId::from_bytes([2; 32]), b"defgh");
        assert!(b.would_overflow(PACK_TARGET));
        let (bytes, entries) = b.finish();
        assert_eq!(bytes, b"abcdefgh");
        let second = entries[1];
        assert_eq!(&bytes[second.offset as usize..(second.offset + second.len) as usize], b"defgh");
    }

    #[test]
    fn a_reused_buffer_starts_empty() {
        let mut b = PackBuilder::with_buffer(b"old bytes".to_vec());
        assert!(b.is_empty());
        b.push(ChunkId::from_bytes([1; 32]), b"new");
        let (bytes, entries) = b.finish();
        assert_eq!(bytes, b"new");
        assert_eq!(entries[0].offset, 0);
    }
}
