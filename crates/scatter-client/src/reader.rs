//! Random access to file content, for `scatter mount`: a file read at any offset, a few
//! chunks at a time, through a bounded cache of verified chunks.
//!
//! Every chunk goes through [`Fetcher::fetch`], so it is checked exactly as a restore checks
//! it (read from the data shards, rebuilt from any k hash-verified shards when a host is down
//! or a shard is corrupt, decrypted, its id and length re-computed). A chunk that cannot be
//! verified is an error for the read that wanted it, never bytes.
//!
//! Memory: the cache holds at most its budget of plaintext (least recently used chunks are
//! dropped first), plus what is in flight: the chunks of the reads being served (one read per
//! caller thread) and prefetches, which together stay within half the budget (one window of
//! at most 8 MiB is always allowed). Nothing ever holds a whole file.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};
use scatter_core::ChunkId;

use crate::fetch::Fetcher;
use crate::ClientError;

/// Plaintext kept by default: 64 MiB.
pub const DEFAULT_BUDGET: u64 = 64 << 20;
/// What a cached chunk costs beyond its bytes (the maps' entries, the `Arc`).
const OVERHEAD: u64 = 128;

/// One file's content: its chunks in order with their plaintext lengths, and the size its
/// record claims.
#[derive(Debug, Clone)]
pub struct FileChunks {
    chunks: Vec<(ChunkId, u32)>,
    /// End offset of each chunk.
    ends: Vec<u64>,
    size: u64,
    /// The chunks' lengths overflow a u64 (it would take billions of chunks: checked anyway).
    overflow: bool,
}

impl FileChunks {
    /// A file of `chunks` whose record says it holds `size` bytes.
    pub fn new(chunks: Vec<(ChunkId, u32)>, size: u64) -> Self {
        let mut at = 0u64;
        let mut overflow = false;
        let ends = chunks
            .iter()
            .map(|(_, len)| {
                at = at.checked_add(u64::from(*len)).unwrap_or_else(|| {
                    overflow = true;
                    u64::MAX
                });
                at
            })
            .collect();
        Self { chunks, ends, size, overflow }
    }

    /// The size the record claims.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the chunks add up to the claimed size. When they do not (a damaged or hostile
    /// record) no read can be right; restore refuses such a file too.
    pub fn consistent(&self) -> bool {
        !self.overflow && self.ends.last().copied().unwrap_or(0) == self.size
    }

    /// The chunks holding bytes `start..end` (`start < end <= size`): indices `i..j`.
    fn covering(&self, start: u64, end: u64) -> std::ops::Range<usize> {
        let i = self.ends.partition_point(|e| *e <= start);
        let j = self.ends.partition_point(|e| *e < end) + 1;
        i..j.min(self.chunks.len())
    }

    /// Offset of chunk `i`.
    fn start_of(&self, i: usize) -> u64 {
        if i == 0 {
            0
        } else {
            self.ends[i - 1]
        }
    }
}

type Pending = Shared<BoxFuture<'static, Result<Arc<Vec<u8>>, String>>>;

#[derive(Default)]
struct State {
    /// Chunk → (plaintext, last use).
    ready: HashMap<ChunkId, (Arc<Vec<u8>>, u64)>,
    /// Last use → chunk: the least recently used first.
    order: BTreeMap<u64, ChunkId>,
    /// Bytes charged for `ready`.
    used: u64,
    tick: u64,
    /// Chunks being fetched, shared by every read that wants them.
    pending: HashMap<ChunkId, Pending>,
}

impl State {
    fn touch(&mut self, id: &ChunkId) -> Option<Arc<Vec<u8>>> {
        self.tick += 1;
        let tick = self.tick;
        let (data, last) = self.ready.get_mut(id)?;
        self.order.remove(last);
        *last = tick;
        self.order.insert(tick, *id);
        Some(data.clone())
    }

    fn insert(&mut self, id: ChunkId, data: Arc<Vec<u8>>, budget: u64) {
        if self.ready.contains_key(&id) {
            return;
        }
        self.tick += 1;
        self.used += data.len() as u64 + OVERHEAD;
        self.ready.insert(id, (data, self.tick));
        self.order.insert(self.tick, id);
        while self.used > budget {
            let Some((_, old)) = self.order.pop_first() else { break };
            if let Some((d, _)) = self.ready.remove(&old) {
                self.used -= d.len() as u64 + OVERHEAD;
            }
        }
    }
}

/// Verified chunks by id, least recently used dropped first, fetched once however many
/// readers want them at the same time.
pub struct ChunkCache {
    fetcher: Arc<Fetcher>,
    budget: u64,
    /// Bytes a sequential reader fetches ahead of where it reads.
    ahead: u64,
    /// Bytes being prefetched now, by all readers together: at most half the budget, so
    /// many files read side by side cannot pile up fetches nobody waits for yet.
    prefetching: AtomicU64,
    state: Mutex<State>,
}

impl ChunkCache {
    /// A cache holding at most `budget` bytes of plaintext, reading through `fetcher`.
    pub fn new(fetcher: Arc<Fetcher>, budget: u64) -> Arc<Self> {
        // A quarter of the budget, and 8 MiB at most: about as far ahead as a restore reads.
        let ahead = (budget / 4).clamp(1 << 20, 8 << 20);
        Arc::new(Self { fetcher, budget, ahead, prefetching: AtomicU64::new(0), state: Mutex::default() })
    }

    /// Bytes of plaintext cached now.
    pub fn used(&self) -> u64 {
        self.lock().used
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Up to `len` bytes of `file` from `offset` (fewer only at the end of the file). With
    /// `sequential`, the chunks after the ones read are fetched in the background, so that a
    /// reader going on from here finds them ready. Must run inside a tokio runtime.
    pub async fn read_at(
        self: &Arc<Self>,
        file: &FileChunks,
        offset: u64,
        len: u32,
        sequential: bool,
    ) -> Result<Vec<u8>, ClientError> {
        if !file.consistent() {
            return Err(ClientError::Unrecoverable(format!(
                "the file's chunks hold {} bytes but its record says {}",
                file.ends.last().copied().unwrap_or(0),
                file.size
            )));
        }
        let end = offset.saturating_add(u64::from(len)).min(file.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let range = file.covering(offset, end);
        let needed = self.start(&file.chunks[range.clone()], false);
        if sequential {
            self.prefetch(file, range.end);
        }
        let mut out = Vec::with_capacity((end - offset) as usize);
        for (i, pending) in range.zip(needed) {
            let data = pending.await.map_err(ClientError::Unrecoverable)?;
            let (start, (_, want)) = (file.start_of(i), file.chunks[i]);
            if data.len() != want as usize {
                return Err(ClientError::Unrecoverable(format!(
                    "chunk {} came back as {} bytes, not {want}",
                    file.chunks[i].0,
                    data.len()
                )));
            }
            let from = offset.saturating_sub(start) as usize;
            let to = (end - start).min(u64::from(want)) as usize;
            let part = data.get(from..to).ok_or_else(|| {
                ClientError::Unrecoverable(format!("chunk {} does not hold bytes {from}..{to}", file.chunks[i].0))
            })?;
            out.extend_from_slice(part);
        }
        Ok(out)
    }

    /// Starts fetching the chunks from `next` on, as far as the read-ahead reaches, when at
    /// least half of that window is neither cached nor on its way (so that a sequential
    /// reader fetches in batches of several chunks, one locate call each, rather than one by
    /// one).
    fn prefetch(self: &Arc<Self>, file: &FileChunks, next: usize) {
        let mut window = Vec::new();
        let mut bytes = 0u64;
        for c in file.chunks.iter().skip(next) {
            if bytes >= self.ahead {
                break;
            }
            bytes += u64::from(c.1);
            window.push(*c);
        }
        if window.is_empty() {
            return;
        }
        let (missing, first_missing) = {
            let st = self.lock();
            let absent = |id: &ChunkId| !st.ready.contains_key(id) && !st.pending.contains_key(id);
            (window.iter().filter(|(id, _)| absent(id)).count(), absent(&window[0].0))
        };
        if !(first_missing || missing * 2 >= window.len()) {
            return;
        }
        let busy = self.prefetching.load(Ordering::Relaxed);
        if busy > 0 && busy + bytes > self.budget / 2 {
            return;
        }
        let _ = self.start(&window, true);
    }

    /// One future per wanted chunk, in order: cached ones at once, ones already on their way
    /// shared, the others fetched in one batch by a task of their own (so that the fetch goes
    /// on, and lands in the cache, even when nobody waits for it).
    /// `prefetch`: nobody waits for these yet; their bytes count in `prefetching` until done.
    fn start(self: &Arc<Self>, wanted: &[(ChunkId, u32)], prefetch: bool) -> Vec<Pending> {
        let mut st = self.lock();
        let mut out: Vec<Option<Pending>> = Vec::with_capacity(wanted.len());
        let mut missing: Vec<(usize, ChunkId, u32)> = Vec::new();
        for (i, (id, len)) in wanted.iter().enumerate() {
            if let Some(data) = st.touch(id) {
                out.push(Some(futures::future::ready(Ok::<_, String>(data)).boxed().shared()));
            } else if let Some(p) = st.pending.get(id) {
                out.push(Some(p.clone()));
            } else {
                out.push(None);
                missing.push((i, *id, *len));
            }
        }
        if !missing.is_empty() {
            let want: Vec<(ChunkId, Option<u32>)> = missing.iter().map(|(_, id, len)| (*id, Some(*len))).collect();
            let fetcher = self.fetcher.clone();
            let batch = async move {
                fetcher
                    .fetch(&want)
                    .await
                    .map(|v| v.into_iter().map(Arc::new).collect::<Vec<_>>())
                    .map_err(|e| e.to_string())
            }
            .boxed()
            .shared();
            let mut mine = Vec::with_capacity(missing.len());
            for (k, (i, id, _)) in missing.iter().enumerate() {
                let one = batch
                    .clone()
                    .map(move |r| r.and_then(|v| v.get(k).cloned().ok_or_else(|| "a chunk was not returned".into())))
                    .boxed()
                    .shared();
                st.pending.insert(*id, one.clone());
                out[*i] = Some(one.clone());
                mine.push((*id, one));
            }
            let me = self.clone();
            let counted = if prefetch { missing.iter().map(|(_, _, len)| u64::from(*len)).sum() } else { 0 };
            self.prefetching.fetch_add(counted, Ordering::Relaxed);
            tokio::spawn(async move {
                let result = batch.await;
                me.finish(mine, result);
                me.prefetching.fetch_sub(counted, Ordering::Relaxed);
            });
        }
        out.into_iter().flatten().collect()
    }

    /// A batch is done: its chunks move from pending to the cache, or are logged as failed.
    fn finish(&self, batch: Vec<(ChunkId, Pending)>, result: Result<Vec<Arc<Vec<u8>>>, String>) {
        let mut st = self.lock();
        for (k, (id, one)) in batch.into_iter().enumerate() {
            if st.pending.get(&id).is_some_and(|p| p.ptr_eq(&one)) {
                st.pending.remove(&id);
            }
            match &result {
                Ok(data) => {
                    if let Some(d) = data.get(k) {
                        st.insert(id, d.clone(), self.budget);
                    }
                }
                // The reader that wanted it reports the failure (once per file).
                Err(e) => tracing::debug!(chunk = %id, error = %e, "a chunk could not be read and verified"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covering_finds_the_chunks_of_a_range() {
        let id = |b: u8| ChunkId::from_bytes([b; 32]);
        let f = FileChunks::new(vec![(id(1), 10), (id(2), 5), (id(3), 20)], 35);
        assert!(f.consistent());
        assert_eq!(f.covering(0, 1), 0..1);
        assert_eq!(f.covering(0, 10), 0..1);
        assert_eq!(f.covering(9, 11), 0..2);
        assert_eq!(f.covering(10, 15), 1..2);
        assert_eq!(f.covering(14, 35), 1..3);
        assert_eq!(f.covering(34, 35), 2..3);
        assert_eq!(f.start_of(2), 15);
        assert!(!FileChunks::new(vec![(id(1), 10)], 11).consistent());
        assert!(FileChunks::new(Vec::new(), 0).consistent());
    }

    #[test]
    fn the_least_recently_used_chunks_go_first_and_the_budget_holds() {
        let id = |b: u8| ChunkId::from_bytes([b; 32]);
        let budget = 3 * (100 + OVERHEAD);
        let mut st = State::default();
        for b in 1..=3 {
            st.insert(id(b), Arc::new(vec![b; 100]), budget);
        }
        assert!(st.touch(&id(1)).is_some(), "1 is used again: 2 is now the oldest");
        st.insert(id(4), Arc::new(vec![4; 100]), budget);
        assert!(st.ready.contains_key(&id(1)) && !st.ready.contains_key(&id(2)));
        assert!(st.used <= budget && st.ready.len() == st.order.len());
        // A chunk larger than the whole budget is not kept, and pushes everything else out.
        st.insert(id(5), Arc::new(vec![5; 1000]), budget);
        assert_eq!((st.used, st.ready.len(), st.order.len()), (0, 0, 0));
    }
}
