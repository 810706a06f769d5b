//! The read half of every restore: chunk ids in, verified plaintext out, in order.
//!
//! Chunks are located in batches; each run of consecutive chunks in one pack is read straight
//! from the data shards that hold it, all of a run's shards in parallel and a few runs ahead.
//! When a host is unreachable, the pack is rebuilt from any k shards instead; when a chunk
//! fails authentication, from k hash-verified shards, and a corrupt shard is reported to the
//! coordinator. Every chunk is decrypted and its id re-computed before it is handed out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures::stream::BoxStream;
use futures::StreamExt;
use scatter_core::crypto::{DataKey, DedupKey};
use scatter_core::erasure::Layout;
use scatter_core::keys::UserKeys;
use scatter_core::{ChunkId, HostId, PackId, ShardId};
use scatter_proto::api::{PackLocation, ReportShardRequest, ShardLocation};

use crate::coordinator::Coordinator;
use crate::hosts::{Hosts, TransferError};
use crate::stats::{self, Stage};
use crate::ClientError;

/// Runs fetched ahead of the consumer. Three keep the hosts busy as well as four did (1 GiB
/// restore: the same time) with 25-30 MiB less peak RSS.
const RUNS_AHEAD: usize = 3;
/// A group of consecutive runs fetched at once, and so counted as one of the [`RUNS_AHEAD`],
/// holds at most this many bytes of packs...
const GROUP_BYTES: u64 = 16 << 20;
/// ...and this many runs. Small runs are bound by round trips, not bytes: 100 changed files
/// among 10,000 small ones split their runs into 394 from 94, and with three in flight the
/// restore took 1.6 s against 1.0 s for the snapshot before.
const GROUP_RUNS: usize = 16;
/// The first group of a stream holds at most this many bytes, and each next one twice as
/// many, up to [`GROUP_BYTES`]; a run bigger than its group's bound is split. A whole first
/// group had to arrive before the consumer's first byte: an S3 client's ranged GET of 64 MiB
/// waited 30-40 ms for it, in a request of about 100 ms.
const FIRST_GROUP_BYTES: u64 = 1 << 20;
/// Chunks located per coordinator call.
const LOCATE_BATCH: usize = 4096;
/// Packs rebuilt from parity at once. A rebuild holds k shards and the missing data shards
/// (about 24 MiB for 4+2 with two lost; the pack is not copied together and the decoder works
/// on 512 KiB segments). Two at once overlap one's download with the other's decode: a
/// degraded 1 GiB restore about 470-520 -> 600-680 MB/s, peak RSS about 170 -> 210 MiB.
const REBUILDS_AT_ONCE: usize = 2;
/// Rebuilt packs kept for the runs that follow (each k data shards, 16 MiB for a full pack).
/// A file changed in places interleaves its old packs with new ones, so one pack's runs come
/// a run or two apart, and often in groups fetched at once: keeping only the last rebuild,
/// a degraded restore of such a file rebuilt most packs two or three times.
const REBUILDS_KEPT: usize = 3;

/// What went wrong (and was worked around) while fetching.
#[derive(Debug, Clone, Default)]
pub struct FetchReport {
    /// Packs that had to be rebuilt from parity.
    pub reconstructed_packs: usize,
    /// Shards found bad (corrupt) and reported: (host, shard, problem).
    pub bad_shards: Vec<(HostId, ShardId, String)>,
    /// Hosts that could not be reached.
    pub unreachable_hosts: Vec<HostId>,
    /// Shards their host refused to serve (it says it lacks them, say): not asked for again.
    pub refused_shards: std::collections::HashSet<(HostId, ShardId)>,
}

/// Drives `stream` in a task of its own, one item ahead of the consumer: a consumer that
/// blocks (writing files) no longer stops the fetches, which make progress only when polled.
/// Dropping the returned stream stops the task at its next item.
fn detach<T: Send + 'static>(mut stream: BoxStream<'static, T>) -> BoxStream<'static, T> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        while let Some(item) = stream.next().await {
            if tx.send(item).await.is_err() {
                break;
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).boxed()
}

/// How a direct read of a run went.
enum Direct {
    /// Every piece came.
    Read(Span),
    /// A host had served the grant's bytes as often as it may (see [`Fetcher::relocate`]).
    Spent,
    /// A host could not be reached, or refused for another reason: the pack is rebuilt.
    Failed,
}

/// A chunk to fetch, with its plaintext length when known.
pub type Want = (ChunkId, Option<u32>);

/// Consecutive wanted chunks that lie in one pack.
#[derive(Clone)]
struct Run {
    pack: PackId,
    /// (chunk id, offset in pack, sealed len, plain len)
    chunks: Vec<(ChunkId, u64, u64, Option<u32>)>,
    /// The pack as the locate that found these chunks gave it: its grants cover their bytes.
    /// Another locate of the same pack (the next batch of a stream, planned while this run
    /// waits) grants other bytes, under which this run would be refused. `None` for a kept
    /// copy, read under the pack [`Known`] holds.
    location: Option<Arc<PackLocation>>,
}

impl Run {
    /// The pack bytes it reads: from its first chunk to the end of its last.
    fn span(&self) -> std::ops::Range<u64> {
        let start = self.chunks.iter().map(|c| c.1).min().unwrap_or(0);
        let end = self.chunks.iter().map(|c| c.1.saturating_add(c.2)).max().unwrap_or(0);
        start..end
    }

    /// How many pack bytes it reads.
    fn len(&self) -> u64 {
        let span = self.span();
        span.end.saturating_sub(span.start)
    }

    /// Keeps the longest leading chunks whose span is at most `limit` bytes (at least one
    /// chunk) and returns the rest, if any, as a run of its own in the same pack.
    fn split_to_fit(&mut self, limit: u64) -> Option<Run> {
        let (mut start, mut end) = (u64::MAX, 0u64);
        let keep = self
            .chunks
            .iter()
            .position(|c| {
                start = start.min(c.1);
                end = end.max(c.1.saturating_add(c.2));
                end.saturating_sub(start) > limit
            })
            .map_or(self.chunks.len(), |i| i.max(1));
        (keep < self.chunks.len()).then(|| Run {
            pack: self.pack,
            chunks: self.chunks.split_off(keep),
            location: self.location.clone(),
        })
    }
}

/// Consecutive runs in groups of at most [`GROUP_RUNS`] runs and [`GROUP_BYTES`] bytes (a
/// bigger run is a group of its own), in order. With `ramp`, the bound on bytes starts at
/// [`FIRST_GROUP_BYTES`] and doubles with each group, and runs are split to fit it.
fn groups(runs: Vec<Run>, ramp: bool) -> Vec<Vec<Run>> {
    let mut out: Vec<Vec<Run>> = Vec::new();
    let mut bytes = 0u64;
    let mut limit = if ramp { FIRST_GROUP_BYTES } else { GROUP_BYTES };
    let mut runs: std::collections::VecDeque<Run> = runs.into();
    while let Some(mut run) = runs.pop_front() {
        let len = run.len();
        match out.last_mut() {
            Some(group) if group.len() < GROUP_RUNS && bytes.saturating_add(len) <= limit => {
                bytes += len;
                group.push(run);
            }
            _ => {
                if !out.is_empty() {
                    limit = limit.saturating_mul(2).min(GROUP_BYTES);
                }
                if limit < GROUP_BYTES {
                    if let Some(rest) = run.split_to_fit(limit) {
                        runs.push_front(rest);
                    }
                }
                bytes = run.len();
                out.push(vec![run]);
            }
        }
    }
    out
}

/// Pack bytes from `start` on, in the pieces they arrived in: ranges of data shards read
/// directly (as the network delivered them), or the whole data shards of a rebuilt pack (as
/// received, or rebuilt). Chunks are opened from the pieces where they lie, never copied
/// together first.
#[derive(Clone)]
struct Span {
    start: u64,
    pieces: Arc<[bytes::Bytes]>,
    /// Where each piece starts in the pack, for finding a chunk's first piece.
    starts: Arc<[u64]>,
    end: u64,
}

impl Span {
    /// Pack bytes from `start` on, contiguous.
    fn new(start: u64, pieces: Vec<bytes::Bytes>) -> Self {
        Self::from_ranges(vec![(start, pieces)])
    }

    /// Pack bytes in ranges, each from where it starts in the pack, in order and not
    /// overlapping; the bytes between them are not held.
    fn from_ranges(ranges: Vec<(u64, Vec<bytes::Bytes>)>) -> Self {
        let start = ranges.first().map_or(0, |r| r.0);
        let (mut pieces, mut starts, mut end) = (Vec::new(), Vec::new(), start);
        for (at, bytes) in ranges {
            let (here, to) = scatter_core::pieces::starts(at, bytes.iter().map(|p| p.len()));
            starts.extend(here);
            pieces.extend(bytes);
            end = to;
        }
        Self { start, pieces: pieces.into(), starts: starts.into(), end }
    }

    /// The bytes it holds.
    fn len(&self) -> u64 {
        self.pieces.iter().map(|p| p.len() as u64).sum()
    }

    /// Pack bytes `at..at + len` as slices of the pieces, if the span holds all of them.
    fn slices(&self, at: u64, len: usize) -> Option<Vec<&[u8]>> {
        let end = at.checked_add(len as u64)?;
        if at < self.start || end > self.end {
            return None;
        }
        let slices: Vec<&[u8]> = scatter_core::pieces::slices(&self.pieces, &self.starts, at, end).collect();
        // Bytes in a hole between ranges are not held.
        (slices.iter().map(|s| s.len()).sum::<usize>() == len).then_some(slices)
    }
}

#[derive(Default)]
struct Known {
    packs: HashMap<PackId, Arc<PackLocation>>,
    /// Each session's data key, or why it could not be unwrapped (a hostile writer's session
    /// fails only the chunks read from its packs, which may have other copies).
    keys: HashMap<u64, Result<Arc<DataKey>, String>>,
    /// Other copies of chunks, which locks keep: (pack, offset, sealed len), tried in order
    /// when the located copy fails.
    kept: HashMap<ChunkId, Vec<(PackId, u64, u64)>>,
}

/// Fetches chunks of one user.
pub struct Fetcher {
    coord: Coordinator,
    hosts: Hosts,
    keys: UserKeys,
    dedup: DedupKey,
    known: Mutex<Known>,
    report: Mutex<FetchReport>,
    rebuilds: tokio::sync::Semaphore,
    /// The packs rebuilt (or being rebuilt) last, and whether from checked shards, oldest
    /// first: a run that needs one of them waits for that rebuild instead of starting another
    /// (see [`REBUILDS_KEPT`]).
    rebuilt: Mutex<std::collections::VecDeque<(PackId, bool, Rebuild)>>,
}

/// One pack's rebuild, shared by the runs that need it.
type Rebuild = Arc<tokio::sync::OnceCell<Span>>;

impl Fetcher {
    /// A fetcher reading with `keys` (which must hold the private key).
    pub fn new(coord: &Coordinator, hosts: &Hosts, keys: &UserKeys) -> Arc<Self> {
        Arc::new(Self {
            coord: coord.clone(),
            hosts: hosts.clone(),
            keys: keys.clone(),
            dedup: keys.write_keys().dedup_key(),
            known: Mutex::default(),
            report: Mutex::default(),
            rebuilds: tokio::sync::Semaphore::new(REBUILDS_AT_ONCE),
            rebuilt: Mutex::default(),
        })
    }

    /// What was worked around so far.
    pub fn report(&self) -> FetchReport {
        self.report.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Fetches one chunk (a tree, say).
    pub async fn fetch_one(self: &Arc<Self>, id: ChunkId) -> Result<Vec<u8>, ClientError> {
        let runs = self.plan(&[(id, None)]).await?;
        let mut out = Vec::new();
        for run in runs {
            out.extend(self.fetch_run(run).await?);
        }
        out.pop().ok_or_else(|| ClientError::Unrecoverable(format!("chunk {id} was not returned")))
    }

    /// Fetches `wanted` (a few chunks: one locate call) and returns their plaintexts in order,
    /// each decrypted and verified against its id and length as [`Self::stream`] does. For
    /// random access (`scatter mount`), where a stream's read-ahead would be wasted.
    pub async fn fetch(self: &Arc<Self>, wanted: &[Want]) -> Result<Vec<Vec<u8>>, ClientError> {
        let runs = self.plan(wanted).await?;
        let mut out = Vec::with_capacity(wanted.len());
        for run in runs {
            out.extend(self.fetch_run(run).await?);
        }
        if out.len() != wanted.len() {
            return Err(ClientError::Unrecoverable(format!(
                "{} chunks were asked for but {} came back",
                wanted.len(),
                out.len()
            )));
        }
        Ok(out)
    }

    /// Fetches `wanted` in order; each item is the plaintexts of a few consecutive chunks.
    /// Locating is lazy (batch by batch), fetching runs a few groups of runs ahead (the runs
    /// of a group at once), in a task of its own so that it goes on while the consumer writes.
    pub fn stream(self: &Arc<Self>, wanted: Vec<Want>) -> BoxStream<'static, Result<Vec<Vec<u8>>, ClientError>> {
        let batches: Vec<Vec<Want>> = wanted.chunks(LOCATE_BATCH).map(<[Want]>::to_vec).collect();
        let planner = self.clone();
        let fetcher = self.clone();
        let runs = futures::stream::iter(batches.into_iter().enumerate())
            .then(move |(i, batch)| {
                let me = planner.clone();
                async move { (i == 0, me.plan(&batch).await) }
            })
            .flat_map(|(first, planned)| {
                let items: Vec<Result<Vec<Run>, ClientError>> = match planned {
                    Ok(runs) => groups(runs, first).into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(e)],
                };
                futures::stream::iter(items)
            })
            .map(move |group| {
                let me = fetcher.clone();
                async move {
                    let fetched =
                        futures::future::try_join_all(group?.into_iter().map(|run| me.fetch_run(run))).await?;
                    Ok(fetched.into_iter().flatten().collect())
                }
            })
            .buffered(RUNS_AHEAD);
        detach(runs.boxed())
    }

    /// Locates `wanted` and groups it into runs.
    async fn plan(&self, wanted: &[Want]) -> Result<Vec<Run>, ClientError> {
        let mut ids: Vec<ChunkId> = wanted.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        let located = stats::time_async(Stage::Locate, 0, self.coord.locate(ids)).await?;
        let packs: HashMap<PackId, Arc<PackLocation>> =
            located.packs.into_iter().map(|p| (p.id, Arc::new(p))).collect();
        {
            let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            for s in located.sessions {
                if let std::collections::hash_map::Entry::Vacant(slot) = known.keys.entry(s.session) {
                    let key = match B64.decode(&s.wrapped_key) {
                        Ok(w) => self.keys.unwrap(&w).map(Arc::new).map_err(|e| e.to_string()),
                        Err(_) => Err(format!("the key of session {} is not base64", s.session)),
                    };
                    slot.insert(key);
                }
            }
            for (id, p) in &packs {
                known.packs.insert(*id, p.clone());
            }
            for c in located.kept {
                let copies = known.kept.entry(c.id).or_default();
                if !copies.contains(&(c.pack, c.offset, c.len)) {
                    copies.push((c.pack, c.offset, c.len));
                }
            }
        }
        let where_: HashMap<ChunkId, (PackId, u64, u64)> =
            located.chunks.into_iter().map(|c| (c.id, (c.pack, c.offset, c.len))).collect();
        let mut runs: Vec<Run> = Vec::new();
        for (id, plain_len) in wanted {
            let (pack, off, len) = *where_.get(id).ok_or_else(|| {
                ClientError::Unrecoverable(format!(
                    "chunk {id} is not in the catalog any more (pruned, or the index is damaged); `scatter check` tells more"
                ))
            })?;
            match runs.last_mut() {
                Some(run) if run.pack == pack => run.chunks.push((*id, off, len, *plain_len)),
                _ => runs.push(Run {
                    pack,
                    chunks: vec![(*id, off, len, *plain_len)],
                    location: packs.get(&pack).cloned(),
                }),
            }
        }
        Ok(runs)
    }

    /// Fetches, decrypts and verifies one run; returns its chunks' plaintexts in order. When
    /// it fails and a lock keeps other copies of some of its chunks (the coordinator cannot
    /// tell a good copy from a forged one), each chunk is read from its copies in turn.
    async fn fetch_run(&self, run: Run) -> Result<Vec<Vec<u8>>, ClientError> {
        let kept: Vec<Vec<(PackId, u64, u64)>> = {
            let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            run.chunks.iter().map(|c| known.kept.get(&c.0).cloned().unwrap_or_default()).collect()
        };
        if kept.iter().all(Vec::is_empty) {
            return self.fetch_copy(run).await;
        }
        let failed = match self.fetch_copy(run.clone()).await {
            Ok(plain) => return Ok(plain),
            Err(e) => e,
        };
        tracing::warn!(pack = %run.pack, error = %failed, "chunks failed; reading the copies a lock keeps of them");
        let mut out = Vec::with_capacity(run.chunks.len());
        for (chunk, others) in run.chunks.iter().zip(kept) {
            let (id, _, _, plain_len) = *chunk;
            let copies = std::iter::once((run.pack, chunk.1, chunk.2)).chain(others);
            let mut plain = None;
            for (pack, offset, len) in copies {
                let copy = Run { pack, chunks: vec![(id, offset, len, plain_len)], location: None };
                if let Ok(mut one) = self.fetch_copy(copy).await {
                    plain = one.pop();
                    break;
                }
            }
            out.push(plain.ok_or_else(|| failed.duplicate())?);
        }
        Ok(out)
    }

    /// Fetches, decrypts and verifies one run from the pack it names.
    async fn fetch_copy(&self, run: Run) -> Result<Vec<Vec<u8>>, ClientError> {
        let (pack, key) = {
            let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            let pack = run
                .location
                .clone()
                .or_else(|| known.packs.get(&run.pack).cloned())
                .ok_or_else(|| ClientError::Unrecoverable(format!("pack {} is not in the catalog", run.pack)))?;
            let key = match known.keys.get(&pack.session) {
                Some(Ok(key)) => key.clone(),
                Some(Err(why)) => return Err(ClientError::Unrecoverable(format!("pack {}: {why}", run.pack))),
                None => {
                    return Err(ClientError::Unrecoverable(format!("the key of pack {} is missing", run.pack)));
                }
            };
            (pack, key)
        };
        let layout = Layout { size: pack.size, k: pack.k, m: pack.m, shard_size: pack.shard_size };
        if run.span().end > pack.size {
            return Err(ClientError::Unrecoverable(format!("pack {} is smaller than its chunks claim", run.pack)));
        }
        let run = Arc::new(run);
        // A pack rebuilt from shards as they came (not hash-checked by the hosts or here) is
        // as safe to read as a direct read, since every chunk is authenticated; a chunk that
        // fails it takes the rebuild from hash-checked shards, which finds and reports a bad
        // one. So does a direct read whose chunks failed: its shards are suspect already.
        let mut checked = false;
        let mut location = pack.clone();
        let mut relocated = false;
        loop {
            match self.read_direct(&location, &layout, &run).await {
                Direct::Read(span) => {
                    if let Ok(plain) = self.open_run(&key, &run, span).await {
                        return Ok(plain);
                    }
                    tracing::warn!(pack = %run.pack, "chunks read directly failed verification; rebuilding the pack from hash-checked shards");
                    checked = true;
                }
                // A host served this grant's bytes twice already (runs of one locate that
                // read the same bytes: copies of a file, or a directory's files read across
                // its subdirectories'): read again under a new grant, once.
                Direct::Spent if !relocated => {
                    relocated = true;
                    if let Some(fresh) = self.relocate(&run).await {
                        location = fresh;
                        continue;
                    }
                }
                Direct::Spent | Direct::Failed => {}
            }
            break;
        }
        let mut again = false;
        loop {
            // The rebuilt pack is shared (with the next run in it): opened in place, pack offsets.
            let whole = self.rebuilt(&pack, &layout, checked, again).await?;
            match self.open_run(&key, &run, whole).await {
                Ok(plain) => return Ok(plain),
                Err(_) if !checked => {
                    tracing::warn!(pack = %run.pack, "chunks of a rebuilt pack failed verification; rebuilding it from hash-checked shards");
                    (checked, again) = (true, true);
                }
                Err(id) => {
                    return Err(ClientError::Unrecoverable(format!(
                        "chunk {id} fails authentication even after rebuilding its pack from verified shards (wrong key or damaged catalog)"
                    )))
                }
            }
        }
    }

    /// Reads the pack bytes that hold `run`'s chunks straight from the data shards, each
    /// shard's from its first chunk byte to its last (as the locate granted: a gap across a
    /// shard's end is not read, and the span has a hole there).
    async fn read_direct(&self, pack: &PackLocation, layout: &Layout, run: &Run) -> Direct {
        let pieces = layout.data_bounds(run.chunks.iter().map(|c| c.1..c.1.saturating_add(c.2)));
        // A piece on a host known to be down makes the pack a rebuild: reading the other
        // pieces first would only be thrown away.
        let reachable = |index: &usize| pack.shards.iter().any(|s| s.index as usize == *index && self.up(s));
        if !pieces.iter().all(|(index, _)| reachable(index)) {
            return Direct::Failed;
        }
        let reads = pieces.iter().map(|(index, r)| {
            let shard = pack.shards.iter().find(|s| s.index as usize == *index);
            async move {
                let s = shard.ok_or(false)?;
                let get = self.hosts.get_range(&s.address, &s.shard, &s.grant, r.clone());
                match stats::time_async(Stage::Download, r.end - r.start, get).await {
                    Ok(b) => Ok(b),
                    Err(e) => {
                        self.note_failure(s.host, s.shard, &e).await;
                        Err(matches!(e, TransferError::Spent(_)))
                    }
                }
            }
        });
        let results = futures::future::join_all(reads).await;
        if results.iter().any(|r| r.is_err()) {
            // Spent only when no piece failed otherwise: a new grant would not help those.
            let spent = results.iter().all(|r| matches!(r, Ok(_) | Err(true)));
            return if spent { Direct::Spent } else { Direct::Failed };
        }
        let read = results.into_iter().flatten();
        // Each piece came whole (`get_range` checks its length); placed where it lies in the pack.
        let at = pieces.iter().map(|(index, r)| *index as u64 * layout.shard_size + r.start);
        Direct::Read(Span::from_ranges(at.zip(read).collect()))
    }

    /// The pack of `run` located anew, with new grants for its chunks' bytes; `None` when it
    /// cannot be (a chunk moved meanwhile, by a repack), and the run is rebuilt instead.
    async fn relocate(&self, run: &Run) -> Option<Arc<PackLocation>> {
        let mut ids: Vec<ChunkId> = run.chunks.iter().map(|c| c.0).collect();
        ids.sort_unstable();
        ids.dedup();
        let located = stats::time_async(Stage::Locate, 0, self.coord.locate(ids)).await.ok()?;
        let same = |c: &(ChunkId, u64, u64, Option<u32>)| {
            located.chunks.iter().any(|l| (l.id, l.pack, l.offset, l.len) == (c.0, run.pack, c.1, c.2))
        };
        if !run.chunks.iter().all(same) {
            return None;
        }
        located.packs.into_iter().find(|p| p.id == run.pack).map(Arc::new)
    }

    /// Whether the shard's host is worth asking: online for the coordinator, not found
    /// unreachable earlier in this run, and not refusing this shard earlier in it. Hosts die
    /// between the coordinator's last heartbeat and a restore; without this every later pack
    /// would try the dead host first (and every run of a pack the host refused, the host).
    fn up(&self, s: &ShardLocation) -> bool {
        let r = self.report.lock().unwrap_or_else(|p| p.into_inner());
        s.online && !r.unreachable_hosts.contains(&s.host) && !r.refused_shards.contains(&(s.host, s.shard))
    }

    /// The pack's bytes rebuilt from parity (from hash-checked shards if `checked`), shared
    /// with the other runs in the pack: a rebuild kept or under way is waited for rather than
    /// done again. `again`: the pack was rebuilt (and counted) already, from unchecked shards.
    async fn rebuilt(
        &self,
        pack: &PackLocation,
        layout: &Layout,
        checked: bool,
        again: bool,
    ) -> Result<Span, ClientError> {
        let cell = {
            let mut kept = self.rebuilt.lock().unwrap_or_else(|p| p.into_inner());
            match kept.iter().find(|(id, c, _)| *id == pack.id && *c == checked) {
                Some((_, _, cell)) => cell.clone(),
                None => {
                    let cell = Rebuild::default();
                    kept.push_back((pack.id, checked, cell.clone()));
                    if kept.len() > REBUILDS_KEPT {
                        kept.pop_front();
                    }
                    cell
                }
            }
        };
        // A failed rebuild leaves the cell empty: the next run to need the pack tries again.
        let span = cell
            .get_or_try_init(|| async {
                let _permit =
                    self.rebuilds.acquire().await.map_err(|_| ClientError::Unrecoverable("shutting down".into()))?;
                let whole = self.reconstruct(pack, layout, checked).await?;
                if !again {
                    self.report.lock().unwrap_or_else(|p| p.into_inner()).reconstructed_packs += 1;
                }
                Ok::<_, ClientError>(whole)
            })
            .await?;
        Ok(span.clone())
    }

    /// Fetches k shards (data shards and online hosts first) and rebuilds the missing data
    /// shards: the pack's bytes, as its data shards. With `checked`, every shard is read whole
    /// and hash-checked by its host and here (a corrupt one is reported and another read);
    /// without, shards are read as ranges, in the pieces they arrive in, and not hashed: two
    /// hashes of every byte less, for callers that authenticate what they read from the pack.
    async fn reconstruct(&self, pack: &PackLocation, layout: &Layout, checked: bool) -> Result<Span, ClientError> {
        let mut order: Vec<_> = pack.shards.iter().collect();
        order.sort_by_key(|s| (!self.up(s), s.index));
        let k = layout.k as usize;
        let mut have: Vec<Option<Vec<bytes::Bytes>>> = vec![None; layout.total()];
        let mut count = 0;
        let mut next = 0;
        let mut errors = Vec::new();
        while count < k && next < order.len() {
            let wanted: Vec<u8> = order[next..order.len().min(next + (k - count))].iter().map(|s| s.index).collect();
            next += wanted.len();
            // A locate's grants cover the located chunks' bytes only: a rebuild asks for
            // whole-shard grants of the shards it reads, each charged.
            let whole = self.coord.pack_grants(pack.id, wanted).await?;
            if (whole.size, whole.k, whole.m, whole.shard_size) != (pack.size, pack.k, pack.m, pack.shard_size) {
                return Err(ClientError::Unrecoverable(format!(
                    "pack {} changed its layout between two answers",
                    pack.id
                )));
            }
            let batch: Vec<_> = whole.shards.iter().collect();
            let reads = batch.iter().map(|s| async move {
                let read = async {
                    if checked {
                        self.hosts.get(&s.address, &s.shard, &s.grant).await.map(|b| vec![b])
                    } else {
                        self.hosts.get_range(&s.address, &s.shard, &s.grant, 0..layout.shard_size).await
                    }
                };
                stats::time_async(Stage::Download, layout.shard_size, read).await
            });
            let results = futures::future::join_all(reads).await;
            for (s, r) in batch.iter().zip(results) {
                match r {
                    Ok(b) if (s.index as usize) < have.len() => {
                        have[s.index as usize] = Some(b);
                        count += 1;
                    }
                    Ok(_) => errors.push(format!("shard {} has an invalid index", s.index)),
                    Err(e) => {
                        errors.push(format!("host {}: {e}", s.host));
                        self.note_failure(s.host, s.shard, &e).await;
                    }
                }
            }
        }
        if count < k {
            return Err(ClientError::Unrecoverable(format!(
                "pack {} needs {k} of its {} shards but only {count} could be read ({}); bring hosts back online and retry",
                pack.id,
                layout.total(),
                errors.join("; ")
            )));
        }
        let layout = *layout;
        let (have, restored) = tokio::task::spawn_blocking(move || {
            let restored = stats::time(Stage::Rebuild, layout.size, || {
                let slices: Vec<Option<Vec<&[u8]>>> =
                    have.iter().map(|p| p.as_ref().map(|p| p.iter().map(|b| &b[..]).collect())).collect();
                let parts: Vec<Option<&[&[u8]]>> = slices.iter().map(|p| p.as_deref()).collect();
                scatter_core::erasure::restore_data_parts(&layout, &parts)
            });
            (have, restored)
        })
        .await
        .map_err(|e| ClientError::Unrecoverable(format!("decoding failed: {e}")))?;
        let mut restored = restored.map_err(|e| ClientError::Unrecoverable(e.to_string()))?.into_iter();
        // The data shards as they arrived, and the rebuilt ones in the gaps: no copy of the
        // pack. Bytes past the pack's size (the padding) are never asked for.
        let mut pieces = Vec::new();
        for (i, shard) in have.into_iter().take(k).enumerate() {
            let rebuilt = || restored.next().filter(|(j, _)| *j == i).map(|(_, b)| vec![bytes::Bytes::from(b)]);
            let shard = shard.or_else(rebuilt).ok_or_else(|| {
                ClientError::Unrecoverable(format!("data shard {i} of pack {} was not rebuilt", pack.id))
            })?;
            pieces.extend(shard);
        }
        Ok(Span::new(0, pieces))
    }

    /// Decrypts and verifies every chunk of a run from pack bytes starting at `start`.
    /// On failure returns the first chunk that did not verify.
    async fn open_run(&self, key: &Arc<DataKey>, run: &Arc<Run>, span: Span) -> Result<Vec<Vec<u8>>, ChunkId> {
        let key = key.clone();
        let dedup = self.dedup.clone();
        let chunks = run.clone();
        tokio::task::spawn_blocking(move || {
            let _timer = stats::Timer::new(Stage::Open, span.len());
            chunks
                .chunks
                .iter()
                .map(|(id, off, len, plain_len)| {
                    let sealed = span.slices(*off, *len as usize).ok_or(*id)?;
                    let plain = key.open_chunk_parts(id, &sealed).map_err(|_| *id)?;
                    if plain_len.is_some_and(|l| plain.len() != l as usize) || !dedup.verify(id, &plain) {
                        return Err(*id);
                    }
                    Ok(plain)
                })
                .collect()
        })
        .await
        .unwrap_or_else(|_| Err(run.chunks[0].0))
    }

    async fn note_failure(&self, host: HostId, shard: ShardId, e: &TransferError) {
        match e {
            TransferError::Corrupt(problem) => {
                tracing::warn!(%host, %shard, %problem, "corrupt shard; rebuilding from the others");
                {
                    let mut r = self.report.lock().unwrap_or_else(|p| p.into_inner());
                    if r.bad_shards.iter().any(|(h, s, _)| *h == host && *s == shard) {
                        return;
                    }
                    r.bad_shards.push((host, shard, problem.clone()));
                }
                let report = ReportShardRequest { host, shard, problem: problem.clone() };
                if let Err(err) = self.coord.report_shard(&report).await {
                    tracing::warn!(error = %err, "could not report a bad shard to the coordinator");
                }
            }
            TransferError::Unreachable(reason) => {
                tracing::debug!(%host, %shard, %reason, "host unreachable");
                let mut r = self.report.lock().unwrap_or_else(|p| p.into_inner());
                if !r.unreachable_hosts.contains(&host) {
                    r.unreachable_hosts.push(host);
                }
            }
            TransferError::Refused(reason) => {
                let mut r = self.report.lock().unwrap_or_else(|p| p.into_inner());
                if r.refused_shards.insert((host, shard)) {
                    tracing::warn!(%host, %shard, %reason, "host refused a shard read; read from the others");
                }
            }
            // Read again with a new grant (see `fetch_copy`): no fault of the host's.
            TransferError::Spent(reason) => tracing::debug!(%host, %shard, %reason, "a grant was spent"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pack: u8, offset: u64, len: u64) -> Run {
        Run {
            pack: PackId::from_bytes([pack; 32]),
            chunks: vec![(ChunkId::from_bytes([pack; 32]), offset, len, None)],
            location: None,
        }
    }

    #[test]
    fn runs_are_grouped_in_order_within_the_bounds() {
        // 40 small runs: groups of 16, 16 and 8, in order.
        let small: Vec<Run> = (0..40u8).map(|i| run(i, 100, 4096)).collect();
        let g = groups(small, false);
        assert_eq!(g.iter().map(Vec::len).collect::<Vec<_>>(), vec![16, 16, 8]);
        let order: Vec<u8> = g.iter().flatten().map(|r| r.pack.as_bytes()[0]).collect();
        assert_eq!(order, (0..40).collect::<Vec<u8>>());
        // Big runs: a group holds what fits in GROUP_BYTES, and a bigger run is alone.
        let big = vec![run(1, 0, 6 << 20), run(2, 0, 6 << 20), run(3, 0, 6 << 20), run(4, 0, 40 << 20), run(5, 0, 1)];
        let sizes: Vec<Vec<u8>> =
            groups(big, false).iter().map(|g| g.iter().map(|r| r.pack.as_bytes()[0]).collect()).collect();
        assert_eq!(sizes, vec![vec![1, 2], vec![3], vec![4], vec![5]]);
        assert!(groups(Vec::new(), false).is_empty());
        assert!(groups(Vec::new(), true).is_empty());
    }

    #[test]
    fn a_stream_starts_with_small_groups_that_grow() {
        // One pack of 40 chunks of 512 KiB (20 MiB), then 40 small runs.
        const C: u64 = 512 << 10;
        let pack = PackId::from_bytes([200; 32]);
        let big = Run {
            pack,
            chunks: (0..40u64).map(|i| (ChunkId::from_bytes([i as u8; 32]), i * C, C, None)).collect(),
            location: None,
        };
        let mut runs = vec![big];
        runs.extend((0..40u8).map(|i| run(i, 100, 4096)));
        let g = groups(runs, true);
        // Bytes of the big pack in each group: 1, 2, 4, 8 MiB, then the last 5 MiB with small runs.
        let of_big: Vec<u64> =
            g.iter().map(|g| g.iter().filter(|r| r.pack == pack).map(|r| r.chunks.len() as u64 * C).sum()).collect();
        assert_eq!(of_big[..5], [1 << 20, 2 << 20, 4 << 20, 8 << 20, 5 << 20]);
        // Every chunk once, in order; no group over its bounds.
        let ids: Vec<u8> = g
            .iter()
            .flatten()
            .filter(|r| r.pack == pack)
            .flat_map(|r| r.chunks.iter().map(|c| c.0.as_bytes()[0]))
            .collect();
        assert_eq!(ids, (0..40).collect::<Vec<u8>>());
        assert_eq!(g.iter().flatten().filter(|r| r.pack != pack).count(), 40);
        for (i, group) in g.iter().enumerate() {
            let bound = (FIRST_GROUP_BYTES << i.min(4)).min(GROUP_BYTES);
            assert!(group.iter().map(Run::len).sum::<u64>() <= bound, "group {i}");
            assert!(group.len() <= GROUP_RUNS);
        }
        // A chunk bigger than the first bound still makes a run (of one chunk).
        let mut huge = Run {
            pack,
            chunks: vec![
                (ChunkId::from_bytes([1; 32]), 0, 8 << 20, None),
                (ChunkId::from_bytes([2; 32]), 8 << 20, 1, None),
            ],
            location: None,
        };
        let rest = huge.split_to_fit(FIRST_GROUP_BYTES).expect("a rest");
        assert_eq!((huge.chunks.len(), rest.chunks.len()), (1, 1));
        assert!(huge.split_to_fit(FIRST_GROUP_BYTES).is_none());
    }

    #[test]
    fn a_span_serves_ranges_within_and_across_its_pieces() {
        let whole: Vec<u8> = (0..100u8).collect();
        // Pack bytes 10..100 in pieces of 30, 0 (an empty read), 40 and 20 bytes.
        let cuts = [10usize, 40, 40, 80, 100];
        let pieces = cuts.windows(2).map(|w| bytes::Bytes::copy_from_slice(&whole[w[0]..w[1]])).collect();
        let span = Span::new(10, pieces);
        assert_eq!(span.len(), 90);
        for at in 10..100u64 {
            for len in 0..=(100 - at as usize) {
                let got = span.slices(at, len).unwrap_or_else(|| panic!("{at}+{len} is in the span"));
                assert!(got.iter().all(|s| !s.is_empty()), "{at}+{len}: no empty slices");
                assert_eq!(got.concat(), &whole[at as usize..at as usize + len], "{at}+{len}");
            }
        }
        assert_eq!(span.slices(12, 5).map(|s| s.len()), Some(1), "inside one piece: one slice");
        assert_eq!(span.slices(35, 10).map(|s| s.len()), Some(2), "across the empty piece: two slices");
        assert!(span.slices(9, 2).is_none(), "before the span");
        assert!(span.slices(95, 6).is_none(), "past the span");
        assert!(span.slices(u64::MAX, 2).is_none(), "overflow");
    }

    #[test]
    fn a_span_with_a_hole_serves_what_it_holds_only() {
        let whole: Vec<u8> = (0..100u8).collect();
        let piece = |r: std::ops::Range<usize>| bytes::Bytes::copy_from_slice(&whole[r]);
        // Bytes 10..30 (in two pieces) and 60..80: 30..60 is not held.
        let span = Span::from_ranges(vec![(10, vec![piece(10..20), piece(20..30)]), (60, vec![piece(60..80)])]);
        assert_eq!(span.len(), 40);
        assert_eq!(span.slices(15, 10).map(|s| s.concat()), Some(whole[15..25].to_vec()));
        assert_eq!(span.slices(60, 20).map(|s| s.concat()), Some(whole[60..80].to_vec()));
        for (at, len) in [(25, 10), (30, 1), (55, 10), (29, 32)] {
            assert!(span.slices(at, len).is_none(), "{at}+{len} reaches into the hole");
        }
        assert_eq!(span.slices(40, 0).map(|s| s.len()), Some(0), "nothing is always held");
    }
}
