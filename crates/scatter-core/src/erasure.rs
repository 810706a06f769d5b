//! Reed–Solomon erasure coding of packs into k data + m parity shards.
//!
//! A pack is padded to `k × shard_size` bytes and cut into k data shards, so data shard `i`
//! holds pack bytes `[i × shard_size, (i + 1) × shard_size)`: a reader that only needs a byte
//! range reads it straight from the data shards, and decodes only when a shard is missing.
//! Padding is random, not zero, so no two shards of different packs are ever equal (hosts
//! store shards under their hash).

use std::ops::Range;
use std::sync::Mutex;

use rand::RngCore;
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

/// Largest number of data or parity shards a pack may have.
pub const MAX_SHARDS_PER_KIND: u8 = 32;
/// Shard sizes are multiples of this (the SIMD codec works on 64-byte blocks).
pub const SHARD_ALIGN: u64 = 64;
/// Smallest shard: every shard costs its host a file, a disk block at least, so a shard is
/// never smaller (a small pack's shards are padded to it). Quotas count shard bytes: they
/// count what hosts hold, however small the packs.
pub const MIN_SHARD: u64 = 4096;

/// `size` bytes over `k` shards, rounded up to [`SHARD_ALIGN`] (one block at least).
fn aligned(size: u64, k: u8) -> u64 {
    size.div_ceil(u64::from(k.max(1))).max(1).div_ceil(SHARD_ALIGN) * SHARD_ALIGN
}

/// Why a pack could not be coded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErasureError {
    /// k or m out of range.
    #[error("redundancy {k}+{m} is not supported: data and parity must each be between 1 and {MAX_SHARDS_PER_KIND}")]
    BadRedundancy {
        /// Data shards asked for.
        k: u8,
        /// Parity shards asked for.
        m: u8,
    },
    /// Fewer than k shards are available.
    #[error("only {have} of the {need} shards needed to rebuild the pack are available")]
    TooFewShards {
        /// Shards available.
        have: usize,
        /// Shards needed (k).
        need: usize,
    },
    /// A shard has the wrong length.
    #[error("shard {index} is {len} bytes, expected {expected}")]
    ShardLength {
        /// Which shard.
        index: usize,
        /// Its length.
        len: usize,
        /// The layout's shard size.
        expected: u64,
    },
    /// The codec refused the input (should not happen with a valid layout).
    #[error("erasure codec error: {0}")]
    Codec(String),
}

/// How a pack is laid out in shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Sealed pack bytes, before padding.
    pub size: u64,
    /// Data shards.
    pub k: u8,
    /// Parity shards.
    pub m: u8,
    /// Bytes in every shard.
    pub shard_size: u64,
}

impl Layout {
    /// The layout for a pack of `size` bytes coded k+m.
    pub fn new(size: u64, k: u8, m: u8) -> Result<Self, ErasureError> {
        check_redundancy(k, m)?;
        let shard_size = aligned(size, k).max(MIN_SHARD);
        Ok(Self { size, k, m, shard_size })
    }

    /// The layout of a stored pack of `size` bytes coded k+m in shards of `shard_size`,
    /// if that is a size [`Layout::new`] gives, or gave before shards were [`MIN_SHARD`]
    /// bytes at least (packs and catalog backups written then keep theirs).
    pub fn stored(size: u64, k: u8, m: u8, shard_size: u64) -> Option<Self> {
        let layout = Self::new(size, k, m).ok()?;
        (shard_size == layout.shard_size || shard_size == aligned(size, k)).then_some(Self { shard_size, ..layout })
    }

    /// Total shards (k + m).
    pub fn total(&self) -> usize {
        self.k as usize + self.m as usize
    }

    /// The bytes of each data shard that hold pack bytes `ranges`, from the first of them in
    /// that shard to the end of the last, by shard index. What a locate grants for the chunks
    /// it finds (the coordinator), and what a read of some of those chunks asks for (the
    /// client): gaps between them are read within a shard, never across a shard's end, so a
    /// read of any of them stays within the grant for all.
    pub fn data_bounds(&self, ranges: impl IntoIterator<Item = Range<u64>>) -> Vec<(usize, Range<u64>)> {
        let mut bounds: std::collections::BTreeMap<usize, Range<u64>> = std::collections::BTreeMap::new();
        for range in ranges {
            for (index, r) in self.data_ranges(range) {
                let b = bounds.entry(index).or_insert(r.clone());
                *b = b.start.min(r.start)..b.end.max(r.end);
            }
        }
        bounds.into_iter().collect()
    }

    /// The pieces of data shards that hold pack bytes `range`, as (shard index, range in
    /// that shard).
    pub fn data_ranges(&self, range: Range<u64>) -> Vec<(usize, Range<u64>)> {
        let mut out = Vec::new();
        // No shard holds anything (a layout from a hostile or broken peer): no piece, not a
        // division by zero.
        if self.shard_size == 0 {
            return out;
        }
        let mut pos = range.start;
        while pos < range.end {
            let shard = pos / self.shard_size;
            let start = pos % self.shard_size;
            let end = (self.shard_size).min(start + (range.end - pos));
            out.push((shard as usize, start..end));
            pos += end - start;
        }
        out
    }
}

/// Checks that k+m is a supported redundancy.
pub fn check_redundancy(k: u8, m: u8) -> Result<(), ErasureError> {
    if k == 0 || m == 0 || k > MAX_SHARDS_PER_KIND || m > MAX_SHARDS_PER_KIND {
        return Err(ErasureError::BadRedundancy { k, m });
    }
    Ok(())
}

/// A pack cut into shards: the padded pack holds the data shards back to back.
#[derive(Debug, Clone)]
pub struct Shards {
    /// The layout used.
    pub layout: Layout,
    /// The pack padded to `k × shard_size`: data shard `i` is the i-th slice.
    pub data: Vec<u8>,
    /// The m parity shards.
    pub parity: Vec<Vec<u8>>,
}

impl Shards {
    /// The bytes of shard `index` (data shards first, then parity).
    pub fn shard(&self, index: usize) -> &[u8] {
        let k = self.layout.k as usize;
        let s = self.layout.shard_size as usize;
        if index < k {
            &self.data[index * s..(index + 1) * s]
        } else {
            &self.parity[index - k]
        }
    }
}

/// Pads `pack` with random bytes and computes its parity shards. The pack buffer is reused
/// as the data shards: no copy.
pub fn encode(pack: Vec<u8>, k: u8, m: u8, rng: &mut impl RngCore) -> Result<Shards, ErasureError> {
    encode_reusing(pack, Vec::new(), k, m, rng)
}

/// [`encode`], writing the parity shards into `parity`: buffers of an earlier pack, cleared
/// first (missing ones are allocated). A caller coding pack after pack reuses its memory.
pub fn encode_reusing(
    mut pack: Vec<u8>,
    parity: Vec<Vec<u8>>,
    k: u8,
    m: u8,
    rng: &mut impl RngCore,
) -> Result<Shards, ErasureError> {
    let layout = Layout::new(pack.len() as u64, k, m)?;
    let full = (layout.shard_size * k as u64) as usize;
    let start = pack.len();
    pack.resize(full, 0);
    rng.fill_bytes(&mut pack[start..]);
    let parity = parity_of(&layout, &pack, parity)?;
    Ok(Shards { layout, data: pack, parity })
}

/// Coding works on this many bytes of every shard at a time. The codec treats each 64-byte
/// position across the shards on its own, so coding segment by segment gives the same bytes
/// as coding whole shards, with a work area of a few segments instead of a few shards: for
/// 4+2 and 4 MiB shards an encoder needs about 2 MiB instead of 32 MiB, and it stays in cache.
const SEGMENT: usize = 256 << 10;

/// Decoding has a fixed cost per call (the erasure locator: about 0.2 ms), so it works on
/// larger segments: 4+2 packs of 4 MiB shards decoded about 10% faster with 512 KiB than with
/// 256 KiB (and no faster with 1 or 2 MiB), with a work area of about 4 MiB.
const DECODE_SEGMENT: usize = 512 << 10;

/// Coders kept for reuse: making (and zeroing) one per pack showed up as page faults in a
/// backup's profile. The pools keep at most [`POOLED`] each.
static ENCODERS: Mutex<Vec<ReedSolomonEncoder>> = Mutex::new(Vec::new());
static DECODERS: Mutex<Vec<ReedSolomonDecoder>> = Mutex::new(Vec::new());
const POOLED: usize = 2;

fn codec_error(e: reed_solomon_simd::Error) -> ErasureError {
    ErasureError::Codec(e.to_string())
}

/// The segments of a shard of `shard_size` bytes: (offset, length), lengths multiples of 64.
fn segments(shard_size: usize, segment: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..shard_size).step_by(segment).map(move |at| (at, segment.min(shard_size - at)))
}

/// Runs `f` with a coder from `pool` (or a new one) and puts it back afterwards.
fn with_pooled<C, T>(
    pool: &Mutex<Vec<C>>,
    new: impl FnOnce() -> Result<C, reed_solomon_simd::Error>,
    f: impl FnOnce(&mut C) -> Result<T, ErasureError>,
) -> Result<T, ErasureError> {
    // A poisoned pool only means a panic elsewhere held the lock; its coders are reset anyway.
    let pooled = pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
    let mut coder = match pooled {
        Some(c) => c,
        None => new().map_err(codec_error)?,
    };
    let result = f(&mut coder);
    let mut pool = pool.lock().unwrap_or_else(|p| p.into_inner());
    if pool.len() < POOLED {
        pool.push(coder);
    }
    result
}

/// The m parity shards of the padded data shards `data`, written into `parity` (see
/// [`encode_reusing`]).
fn parity_of(layout: &Layout, data: &[u8], mut parity: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, ErasureError> {
    let (k, m, s) = (layout.k as usize, layout.m as usize, layout.shard_size as usize);
    parity.truncate(m);
    parity.resize_with(m, Vec::new);
    for out in &mut parity {
        out.clear();
        out.reserve(s);
    }
    with_pooled(
        &ENCODERS,
        || ReedSolomonEncoder::new(k, m, SEGMENT.min(s)),
        |encoder| {
            for (at, len) in segments(s, SEGMENT) {
                encoder.reset(k, m, len).map_err(codec_error)?;
                for shard in data.chunks(s) {
                    encoder.add_original_shard(&shard[at..at + len]).map_err(codec_error)?;
                }
                for (out, piece) in parity.iter_mut().zip(encoder.encode().map_err(codec_error)?.recovery_iter()) {
                    out.extend_from_slice(piece);
                }
            }
            Ok(())
        },
    )?;
    Ok(parity)
}

/// Rebuilds the pack bytes from any k of its shards (`shards[i]` is shard `i` or `None`).
/// Returns only the first `layout.size` bytes: padding is dropped.
pub fn decode<S: AsRef<[u8]>>(layout: &Layout, shards: &[Option<S>]) -> Result<Vec<u8>, ErasureError> {
    let mut pack = decode_padded(layout, shards)?;
    pack.truncate(layout.size as usize);
    Ok(pack)
}

/// Rebuilds every shard, bit for bit as first encoded, from any k of them: the data shards
/// (padding included) are restored and the parity recomputed from them. Repair uses it, so
/// rebuilt shards keep their ids and need no key.
pub fn rebuild<S: AsRef<[u8]>>(layout: &Layout, shards: &[Option<S>]) -> Result<Shards, ErasureError> {
    let data = decode_padded(layout, shards)?;
    let parity = parity_of(layout, &data, Vec::new())?;
    Ok(Shards { layout: *layout, data, parity })
}

/// The padded data shards, back to back, from any k shards.
fn decode_padded<S: AsRef<[u8]>>(layout: &Layout, shards: &[Option<S>]) -> Result<Vec<u8>, ErasureError> {
    let mut restored = restore_data(layout, shards)?.into_iter().peekable();
    let s = layout.shard_size as usize;
    let mut pack = Vec::with_capacity(layout.k as usize * s);
    for (i, shard) in shards.iter().take(layout.k as usize).enumerate() {
        match (shard, restored.next_if(|(j, _)| *j == i)) {
            (Some(shard), _) => pack.extend_from_slice(shard.as_ref()),
            (None, Some((_, shard))) => pack.extend_from_slice(&shard),
            (None, None) => return Err(ErasureError::Codec(format!("shard {i} was not restored"))),
        }
    }
    Ok(pack)
}

/// The data shards missing from `shards` (index, padded bytes), in index order, rebuilt from
/// any k shards. Data shards at hand are not copied: a reader that keeps them as they are
/// needs only the missing ones (none when every data shard is there).
pub fn restore_data<S: AsRef<[u8]>>(
    layout: &Layout,
    shards: &[Option<S>],
) -> Result<Vec<(usize, Vec<u8>)>, ErasureError> {
    let pieces: Vec<Option<[&[u8]; 1]>> = shards.iter().map(|s| s.as_ref().map(|s| [s.as_ref()])).collect();
    let parts: Vec<Option<&[&[u8]]>> = pieces.iter().map(|p| p.as_ref().map(|p| &p[..])).collect();
    restore_data_parts(layout, &parts)
}

/// [`restore_data`] of shards given in the pieces they arrived in (back to back), as a
/// network read leaves them: they are not copied together first. A coding segment that
/// spans pieces is gathered into a small buffer of its own, which stays in cache.
pub fn restore_data_parts(layout: &Layout, shards: &[Option<&[&[u8]]>]) -> Result<Vec<(usize, Vec<u8>)>, ErasureError> {
    let k = layout.k as usize;
    let s = layout.shard_size as usize;
    let shards: Vec<Option<Parts<'_>>> = shards.iter().map(|p| p.map(Parts::new)).collect();
    for (index, shard) in shards.iter().enumerate() {
        if let Some(shard) = shard {
            if shard.len != s {
                return Err(ErasureError::ShardLength { index, len: shard.len, expected: layout.shard_size });
            }
        }
    }
    let have = shards.iter().take(layout.total()).filter(|s| s.is_some()).count();
    if have < k {
        return Err(ErasureError::TooFewShards { have, need: k });
    }
    let mut restored: Vec<(usize, Vec<u8>)> =
        (0..k).filter(|i| shards.get(*i).is_none_or(Option::is_none)).map(|i| (i, Vec::with_capacity(s))).collect();
    if restored.is_empty() {
        return Ok(restored);
    }
    let mut gathered = Vec::new();
    with_pooled(
        &DECODERS,
        || ReedSolomonDecoder::new(k, layout.m as usize, DECODE_SEGMENT.min(s)),
        |decoder| {
            for (at, len) in segments(s, DECODE_SEGMENT) {
                decoder.reset(k, layout.m as usize, len).map_err(codec_error)?;
                for (i, shard) in shards.iter().enumerate().take(layout.total()) {
                    let Some(shard) = shard else { continue };
                    let piece = shard.get(at, len, &mut gathered);
                    if i < k { decoder.add_original_shard(i, piece) } else { decoder.add_recovery_shard(i - k, piece) }
                        .map_err(codec_error)?;
                }
                let result = decoder.decode().map_err(codec_error)?;
                for (i, out) in restored.iter_mut() {
                    let piece = result
                        .restored_original(*i)
                        .ok_or_else(|| ErasureError::Codec(format!("shard {i} was not restored")))?;
                    out.extend_from_slice(piece);
                }
            }
            Ok(())
        },
    )?;
    Ok(restored)
}

/// A shard as pieces, with where each piece starts in it.
struct Parts<'a> {
    pieces: &'a [&'a [u8]],
    starts: Vec<u64>,
    len: usize,
}

impl<'a> Parts<'a> {
    fn new(pieces: &'a [&'a [u8]]) -> Self {
        let (starts, end) = crate::pieces::starts(0, pieces.iter().map(|p| p.len()));
        Self { pieces, starts, len: end as usize }
    }

    /// Bytes `at..at + len` (within the shard): borrowed when one piece holds them, else
    /// gathered into `buf`.
    fn get<'s>(&'s self, at: usize, len: usize, buf: &'s mut Vec<u8>) -> &'s [u8] {
        let mut parts = crate::pieces::slices(self.pieces, &self.starts, at as u64, (at + len) as u64);
        let first = parts.next().unwrap_or_default();
        if first.len() == len {
            return first;
        }
        buf.clear();
        buf.extend_from_slice(first);
        parts.for_each(|p| buf.extend_from_slice(p));
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    fn pack(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn all(shards: &Shards) -> Vec<Option<Vec<u8>>> {
        (0..shards.layout.total()).map(|i| Some(shards.shard(i).to_vec())).collect()
    }

    #[test]
    fn rebuild_restores_every_shard_bit_for_bit() {
        let shards = encode(pack(300_001), 4, 2, &mut rng()).expect("encodes");
        let original = all(&shards);
        for lost in [[0usize, 1], [3, 5], [4, 5], [0, 4]] {
            let mut have = original.clone();
            for l in lost {
                have[l] = None;
            }
            let rebuilt = rebuild(&shards.layout, &have).expect("rebuilds");
            for i in 0..shards.layout.total() {
                assert_eq!(rebuilt.shard(i), shards.shard(i), "shard {i} differs after losing {lost:?}");
            }
        }
    }

    #[test]
    fn every_k_subset_of_4_plus_2_rebuilds_the_pack() {
        let original = pack(1_000_003);
        let shards = encode(original.clone(), 4, 2, &mut rng()).expect("encodes");
        for mask in 0u32..(1 << 6) {
            if mask.count_ones() != 4 {
                continue;
            }
            let subset: Vec<_> = all(&shards)
                .into_iter()
                .enumerate()
                .map(|(i, s)| if mask & (1 << i) != 0 { s } else { None })
                .collect();
            assert_eq!(decode(&shards.layout, &subset).expect("decodes"), original, "mask {mask:06b}");
        }
    }

    /// Pooled coders are reset between uses: alternating layouts must not leak state.
    #[test]
    fn pooled_coders_serve_changing_layouts() {
        for (len, k, m) in [(3_000_000, 4, 2), (100, 2, 1), (1 << 20, 10, 4), (3_000_000, 4, 2), (64, 1, 1)] {
            let original = pack(len);
            let shards = encode(original.clone(), k, m, &mut rng()).expect("encodes");
            let mut some = all(&shards);
            for s in some.iter_mut().take(m as usize) {
                *s = None;
            }
            assert_eq!(decode(&shards.layout, &some).expect("decodes"), original, "{len} bytes, {k}+{m}");
            let rebuilt = rebuild(&shards.layout, &some).expect("rebuilds");
            assert_eq!(all(&rebuilt), all(&shards), "{len} bytes, {k}+{m}");
        }
    }

    /// Coding segment by segment must give the bytes the codec gives for whole shards, or
    /// shards stored before would no longer rebuild bit for bit.
    #[test]
    fn segmented_parity_equals_whole_shard_parity() {
        for len in [64, 1000, SEGMENT * 4 - 3, SEGMENT * 4 * 3 + 4 * 640 + 1] {
            let shards = encode(pack(len), 4, 2, &mut rng()).expect("encodes");
            let s = shards.layout.shard_size as usize;
            let whole = reed_solomon_simd::encode(4, 2, shards.data.chunks(s)).expect("codec");
            assert_eq!(shards.parity, whole, "{len} bytes");
        }
    }

    /// Reused parity buffers come back holding exactly this pack's parity, whatever they held
    /// and however many there were.
    #[test]
    fn reused_parity_buffers_give_the_same_shards() {
        let fresh = encode(pack(1_000_003), 4, 2, &mut rng()).expect("encodes");
        for old in [vec![], vec![vec![9u8; 10]], vec![vec![1u8; 2_000_000]; 3]] {
            let reused = encode_reusing(pack(1_000_003), old, 4, 2, &mut rng()).expect("encodes");
            assert_eq!(reused.parity, fresh.parity);
        }
    }

    /// Shards in pieces (cut anywhere, empty pieces included) restore the same bytes as whole
    /// shards, for segments inside one piece and across several.
    #[test]
    fn shards_in_pieces_restore_like_whole_shards() {
        let len = DECODE_SEGMENT * 4 * 2 + 4 * 640 + 5;
        let shards = encode(pack(len), 4, 2, &mut rng()).expect("encodes");
        let s = shards.layout.shard_size as usize;
        for (lost, cuts) in
            [([0usize, 1], vec![]), ([1, 3], vec![0, 1, 0, 2, 2, 64, 0, DECODE_SEGMENT]), ([2, 5], vec![7; 40])]
        {
            let mut whole = all(&shards);
            for l in lost {
                whole[l] = None;
            }
            let expected = restore_data(&shards.layout, &whole).expect("restores");
            // Each shard cut at the given lengths, then in pieces a bit over a segment long.
            let pieces: Vec<Option<Vec<&[u8]>>> = whole
                .iter()
                .map(|w| {
                    w.as_ref().map(|w| {
                        let mut out = Vec::new();
                        let mut rest = &w[..];
                        for &c in cuts.iter().chain(std::iter::repeat(&(DECODE_SEGMENT + 100))) {
                            if rest.is_empty() {
                                break;
                            }
                            let (a, b) = rest.split_at(c.min(rest.len()));
                            out.push(a);
                            rest = b;
                        }
                        out
                    })
                })
                .collect();
            let parts: Vec<Option<&[&[u8]]>> = pieces.iter().map(|p| p.as_deref()).collect();
            let got = restore_data_parts(&shards.layout, &parts).expect("restores");
            assert_eq!(got, expected, "lost {lost:?}");
            for (i, bytes) in &got {
                assert_eq!(&bytes[..], shards.shard(*i), "shard {i}");
            }
            assert_eq!(got.len(), lost.iter().filter(|&&l| l < 4).count());
            assert!(s > DECODE_SEGMENT);
        }
        // Pieces that do not add up to a shard, short or long, are refused.
        let extra = [0u8; 1];
        for long in [false, true] {
            let pieces: Vec<Option<Vec<&[u8]>>> = (0..6)
                .map(|i| {
                    (i > 0)
                        .then(|| if long { vec![shards.shard(i), &extra[..]] } else { vec![&shards.shard(i)[..s - 1]] })
                })
                .collect();
            let parts: Vec<Option<&[&[u8]]>> = pieces.iter().map(|p| p.as_deref()).collect();
            let refused = restore_data_parts(&shards.layout, &parts);
            assert!(matches!(refused, Err(ErasureError::ShardLength { .. })), "long: {long}");
        }
    }

    #[test]
    fn fewer_than_k_shards_is_an_error() {
        let shards = encode(pack(4096), 4, 2, &mut rng()).expect("encodes");
        let mut some = all(&shards);
        for s in some.iter_mut().take(3) {
            *s = None;
        }
        assert_eq!(decode(&shards.layout, &some), Err(ErasureError::TooFewShards { have: 3, need: 4 }));
    }

    #[test]
    fn tiny_and_empty_packs_work() {
        for len in [0usize, 1, 63, 64, 65] {
            let original = pack(len);
            let shards = encode(original.clone(), 4, 2, &mut rng()).expect("encodes");
            let mut some = all(&shards);
            some[0] = None;
            some[5] = None;
            assert_eq!(decode(&shards.layout, &some).expect("decodes"), original);
        }
    }

    #[test]
    fn other_redundancies_and_bad_ones() {
        let original = pack(100_000);
        for (k, m) in [(1, 1), (2, 1), (6, 3), (10, 4)] {
            let shards = encode(original.clone(), k, m, &mut rng()).expect("encodes");
            let mut some = all(&shards);
            for s in some.iter_mut().take(m as usize) {
                *s = None;
            }
            assert_eq!(decode(&shards.layout, &some).expect("decodes"), original);
        }
        assert!(encode(pack(10), 0, 2, &mut rng()).is_err());
        assert!(encode(pack(10), 4, 0, &mut rng()).is_err());
        assert!(encode(pack(10), 33, 2, &mut rng()).is_err());
    }

    #[test]
    fn wrong_length_shard_is_rejected() {
        let shards = encode(pack(4096), 4, 2, &mut rng()).expect("encodes");
        let mut some = all(&shards);
        some[1] = Some(vec![0; 3]);
        assert!(matches!(decode(&shards.layout, &some), Err(ErasureError::ShardLength { index: 1, .. })));
    }

    #[test]
    fn padding_makes_shards_of_equal_content_differ() {
        let a = encode(vec![], 4, 2, &mut rand::rngs::StdRng::seed_from_u64(1)).expect("encodes");
        let b = encode(vec![], 4, 2, &mut rand::rngs::StdRng::seed_from_u64(2)).expect("encodes");
        assert_ne!(a.shard(3), b.shard(3));
    }

    #[test]
    fn small_packs_have_shards_of_a_block_and_older_layouts_still_read() {
        let tiny = Layout::new(1, 32, 32).expect("layout");
        assert_eq!(tiny.shard_size, MIN_SHARD, "a 1-byte pack's shards are a block each");
        assert_eq!(Layout::new(1000, 4, 2).expect("layout").shard_size, MIN_SHARD);
        assert_eq!(Layout::new(40_000, 4, 2).expect("layout").shard_size, 10_048);
        // Stored before shards had a block at least: 1000 bytes over 4 took 256 each.
        assert_eq!(Layout::stored(1000, 4, 2, 256).map(|l| l.shard_size), Some(256));
        assert_eq!(Layout::stored(1000, 4, 2, MIN_SHARD).map(|l| l.shard_size), Some(MIN_SHARD));
        assert_eq!(Layout::stored(1000, 4, 2, 512), None, "neither layout");
        assert_eq!(Layout::stored(1000, 0, 2, 256), None, "no data shard");
        let shards = encode(pack(1000), 4, 2, &mut rng()).expect("encodes");
        assert!((0..6).all(|i| shards.shard(i).len() as u64 == MIN_SHARD));
    }

    #[test]
    fn data_ranges_map_pack_bytes_to_shards() {
        let layout = Layout::new(40_000, 4, 2).expect("layout");
        assert_eq!(layout.shard_size, 10_048);
        assert_eq!(layout.data_ranges(10..20), vec![(0, 10..20)]);
        assert_eq!(layout.data_ranges(10_040..20_200), vec![(0, 10_040..10_048), (1, 0..10_048), (2, 0..104)]);
        assert!(layout.data_ranges(5..5).is_empty());
        assert!(Layout { shard_size: 0, ..layout }.data_ranges(0..10).is_empty(), "no shard, no piece");
        let shards = encode(pack(40_000), 4, 2, &mut rng()).expect("encodes");
        let bytes: Vec<u8> = layout
            .data_ranges(10_040..20_200)
            .into_iter()
            .flat_map(|(i, r)| shards.shard(i)[r.start as usize..r.end as usize].to_vec())
            .collect();
        assert_eq!(bytes, pack(40_000)[10_040..20_200]);
    }

    #[test]
    fn data_bounds_span_gaps_within_a_shard_only() {
        let layout = Layout::new(40_000, 4, 2).expect("layout");
        // Two chunks in shard 0 (the gap between them read), one at the start of shard 2:
        // shard 0 is not read to its end, nor shard 1 at all.
        let bounds = layout.data_bounds([10..20, 100..120, 20_100..20_110]);
        assert_eq!(bounds, vec![(0, 10..120), (2, 4..14)]);
        // A chunk across a shard's end: both pieces; order does not matter.
        assert_eq!(layout.data_bounds([10_040..10_050, 0..4]), vec![(0, 0..10_048), (1, 0..2)]);
        assert!(layout.data_bounds([]).is_empty());
        // Any subset of the ranges stays within the bounds of all of them.
        let all = layout.data_bounds([10..20, 12_000..12_010, 24_000..36_000]);
        for some in [vec![10..20, 15..18], vec![12_000..12_010, 24_000..36_000], vec![10..20, 24_000..36_000]] {
            for (i, r) in layout.data_bounds(some) {
                let (_, b) = all.iter().find(|(j, _)| *j == i).expect("a shard the whole grant names");
                assert!(r.start >= b.start && r.end <= b.end, "{r:?} within {b:?}");
            }
        }
    }
}
