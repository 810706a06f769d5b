//! The upload half of every write: chunks in, durable packs out.
//!
//! [`Uploader::add`] takes plaintext chunks with their ids, skips those already stored (one
//! dedup lookup per batch) or already seen in this run, seals the rest on the blocking pool
//! and appends them to a ~16 MiB pack. A batch's lookup is sent when the batch comes in, and
//! the batch is sealed when the next one comes in (or at [`Uploader::finish`]): the
//! coordinator's round trip overlaps the sealing of the batch before, instead of stopping
//! every batch for it (with the coordinator 20 ms away, 119 lookups per GiB). Trees
//! ([`Uploader::add_trees`]) fill packs of their own, as restic's do: a later backup, `ls` or restore reads a snapshot's trees from one or
//! a few packs instead of one pack per folder. Full packs go to a background task that
//! erasure-codes them and uploads their shards to distinct hosts, up to [`PACKS_IN_FLIGHT`]
//! at once, re-placing shards whose host fails. A pack is committed only once all its shards
//! are durable; [`Uploader::finish`] flushes the last packs and waits for every commit.
//!
//! Placements that will not be committed are given back to the coordinator, which deletes
//! what they uploaded from hosts at once instead of after the orphan grace: a failed pack's
//! right away, the ones of a shard re-placed elsewhere once the pack is committed, and those
//! of packs cut short when their uploader is dropped unfinished (in the background) and,
//! for a run that stops early, by [`abandon_unsettled`] (the CLI calls it after an error or
//! Ctrl-C, and waits for it). A client killed outright says nothing: its placements lapse.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use scatter_core::crypto::DataKey;
use scatter_core::crypto::SEAL_OVERHEAD;
use scatter_core::pack::{PackBuilder, PackEntry, PACK_CAPACITY};
use scatter_core::{ChunkId, HostId, PackId, ShardId};
use scatter_proto::api::*;
use scatter_proto::SignedReceipt;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::buffers::BufferPool;
use crate::coordinator::Coordinator;
use crate::hosts::Hosts;
use crate::stats::{self, Stage};
use crate::{ClientError, Progress};

/// Packs being coded and uploaded at once.
pub const PACKS_IN_FLIGHT: usize = 3;
/// Commits of stored packs under way at once (they hold no pack buffers, but their
/// placements stay reserved at the coordinator until they are done).
const COMMITS_IN_FLIGHT: usize = 2;
/// Rounds of re-placement for shards whose host failed.
const PLACEMENT_ROUNDS: usize = 4;

/// Placements of one uploader not yet committed or given back.
struct Unsettled {
    coord: Coordinator,
    placed: Mutex<Placed>,
}

/// The placements themselves, and whether the run stopped ([`abandon_unsettled`]): a
/// placement that arrives after that is given back at once and its upload not started.
#[derive(Default)]
struct Placed {
    open: HashSet<(HostId, ShardId)>,
    stopped: bool,
}

/// Every uploader's [`Unsettled`] until it finished or gave back what it left, for
/// [`abandon_unsettled`].
static UNSETTLED: Mutex<Vec<Arc<Unsettled>>> = Mutex::new(Vec::new());

impl Unsettled {
    fn set(&self) -> std::sync::MutexGuard<'_, Placed> {
        self.placed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives back those of `pairs` still unsettled (best effort: what is not given back
    /// lapses with its placement). They stay unsettled until the coordinator answers, so a
    /// give-back that fails or is cut off (its task aborted when another pack failed) is
    /// made again when the uploader is dropped and by [`abandon_unsettled`]; giving a
    /// placement back twice does no harm.
    async fn give_back(&self, pairs: &[(HostId, ShardId)]) {
        let todo: Vec<(HostId, ShardId)> = {
            let set = self.set();
            pairs.iter().copied().filter(|p| set.open.contains(p)).collect()
        };
        if todo.is_empty() {
            return;
        }
        match self.coord.abandon(&todo).await {
            Ok(_) => {
                let mut set = self.set();
                for p in &todo {
                    set.open.remove(p);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, placements = todo.len(), "could not give back placements now; they are given back again when the upload stops, or lapse by themselves")
            }
        }
    }
}

/// Gives back every placement this process made and did not commit, so their uploads are
/// deleted from hosts now: for a run stopped early (an error, Ctrl-C). Best effort.
pub async fn abandon_unsettled() {
    let all: Vec<Arc<Unsettled>> = std::mem::take(&mut *UNSETTLED.lock().unwrap_or_else(|p| p.into_inner()));
    for u in all {
        let pairs: Vec<(HostId, ShardId)> = {
            let mut set = u.set();
            set.stopped = true;
            set.open.iter().copied().collect()
        };
        u.give_back(&pairs).await;
    }
}

/// Redundancy of stored packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redundancy {
    /// Data shards per pack.
    pub k: u8,
    /// Parity shards per pack.
    pub m: u8,
}

impl Default for Redundancy {
    fn default() -> Self {
        Self { k: 4, m: 2 }
    }
}

/// What an uploader stored.
#[derive(Debug, Clone, Default)]
pub struct UploadStats {
    /// Chunks that were not stored before and were uploaded.
    pub new_chunks: usize,
    /// Their plaintext bytes.
    pub new_bytes: u64,
    /// Packs uploaded.
    pub packs: usize,
    /// Shard bytes sent to hosts (with redundancy).
    pub bytes_uploaded: u64,
    /// Shards that had to go to another host because the first one failed.
    pub replaced_shards: usize,
    /// Hosts each new pack was placed on, by shard index.
    pub placements: Vec<(PackId, Vec<HostId>)>,
}

/// Buffers reused from pack to pack (see [`BufferPool`]): whole packs, and parity shards.
#[derive(Clone)]
struct PackBuffers {
    packs: BufferPool,
    parity: BufferPool,
}

impl PackBuffers {
    /// The process's pools, shared by every uploader: one uploader keeps at most its packs
    /// in flight, one queued and one being filled; several at once (a gateway storing
    /// multipart parts in parallel, each through its own pipeline) reuse each other's
    /// buffers instead of faulting in fresh pages for every part.
    fn shared() -> Self {
        static SHARED: std::sync::OnceLock<PackBuffers> = std::sync::OnceLock::new();
        SHARED
            .get_or_init(|| {
                let packs = 4 * (PACKS_IN_FLIGHT + 2);
                Self { packs: BufferPool::new(packs), parity: BufferPool::new(packs * 4) }
            })
            .clone()
    }
}

struct PackDone {
    id: PackId,
    hosts: Vec<HostId>,
    bytes: u64,
    replaced: usize,
}

/// A pack to store, its chunks, and the plaintext bytes to report once it is stored.
type PackJob = (Vec<u8>, Vec<ChunkEntry>, Option<(Arc<dyn Progress>, u64)>);

/// A batch added whose dedup lookup is under way.
struct Pending {
    chunks: Vec<(ChunkId, Vec<u8>)>,
    trees: bool,
    /// The ids of those stored before (none looked up: `None`).
    lookup: Option<JoinHandle<Result<Vec<ChunkId>, ClientError>>>,
}

/// Stores chunks in packs on the grid under one session's key.
pub struct Uploader {
    coord: Coordinator,
    /// The session chunks are sealed and committed under; dedup hits are recorded against it.
    session: u64,
    key: Arc<DataKey>,
    relocate: bool,
    seen: HashSet<ChunkId>,
    builder: PackBuilder,
    /// The pack trees go to.
    trees: PackBuilder,
    buffers: PackBuffers,
    tx: Option<mpsc::Sender<PackJob>>,
    task: Option<JoinHandle<Result<Vec<PackDone>, ClientError>>>,
    stats: UploadStats,
    unsettled: Arc<Unsettled>,
    /// Told of file bytes once they are on the grid (see [`Uploader::report_to`]).
    progress: Option<Arc<dyn Progress>>,
    /// Plaintext bytes of the chunks in the data pack being filled.
    plain: u64,
    /// The batch added last, stored when the next comes (or at [`Uploader::finish`]).
    pending: Option<Pending>,
}

impl Uploader {
    /// Starts uploading under `session`, whose key seals the chunks. With `relocate` (a
    /// repack), every chunk is stored again and moved to its new pack at commit.
    pub fn new(
        coord: &Coordinator,
        hosts: &Hosts,
        session: u64,
        key: Arc<DataKey>,
        redundancy: Redundancy,
        policy: Policy,
        relocate: bool,
    ) -> Result<Self, ClientError> {
        let policy = Arc::new(policy);
        scatter_core::erasure::check_redundancy(redundancy.k, redundancy.m)
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let (tx, mut rx) = mpsc::channel::<PackJob>(1);
        let buffers = PackBuffers::shared();
        let unsettled = Arc::new(Unsettled { coord: coord.clone(), placed: Mutex::default() });
        UNSETTLED.lock().unwrap_or_else(|p| p.into_inner()).push(unsettled.clone());
        let task = {
            let unsettled = unsettled.clone();
            let coord = coord.clone();
            let hosts = hosts.clone();
            let buffers = buffers.clone();
            tokio::spawn(async move {
                // A pack holds its slot (and buffers) until its shards are stored; its commit,
                // a round trip to the coordinator, runs beside the next packs.
                let mut running: JoinSet<Result<Durable, ClientError>> = JoinSet::new();
                let mut committing: JoinSet<Result<PackDone, ClientError>> = JoinSet::new();
                let mut done = Vec::new();
                let failed = |e: tokio::task::JoinError| ClientError::Upload(format!("upload task failed: {e}"));
                let stored = async {
                    loop {
                        // Packs holding placements: at most the two limits together.
                        let room = running.len() < PACKS_IN_FLIGHT
                            && running.len() + committing.len() < PACKS_IN_FLIGHT + COMMITS_IN_FLIGHT;
                        tokio::select! {
                            next = rx.recv(), if room => match next {
                                Some((bytes, entries, report)) => {
                                    let report = report.map(|(progress, plain)| PackProgress::new(progress, plain, redundancy));
                                    let stored = store_pack(
                                        coord.clone(), hosts.clone(), buffers.clone(), unsettled.clone(), session, redundancy, policy.clone(), bytes, entries, relocate, report,
                                    );
                                    running.spawn(stored);
                                }
                                None => break,
                            },
                            Some(res) = running.join_next() => {
                                committing.spawn(commit_stored(coord.clone(), unsettled.clone(), res.map_err(failed)??));
                            }
                            Some(res) = committing.join_next() => done.push(res.map_err(failed)??),
                        }
                    }
                    while let Some(res) = running.join_next().await {
                        committing.spawn(commit_stored(coord.clone(), unsettled.clone(), res.map_err(failed)??));
                    }
                    while let Some(res) = committing.join_next().await {
                        done.push(res.map_err(failed)??);
                    }
                    Ok::<_, ClientError>(())
                }
                .await;
                if let Err(e) = stored {
                    // Packs stored already are committed still, so that a run started again
                    // does not send them again.
                    running.abort_all();
                    while committing.join_next().await.is_some() {}
                    return Err(e);
                }
                Ok(done)
            })
        };
        Ok(Self {
            coord: coord.clone(),
            session,
            key,
            relocate,
            seen: HashSet::new(),
            // From the pool: a pack grown by doubling reallocates and faults in its pages anew.
            builder: PackBuilder::with_buffer(buffers.packs.take(PACK_CAPACITY)),
            trees: PackBuilder::new(),
            buffers,
            tx: Some(tx),
            task: Some(task),
            stats: UploadStats::default(),
            unsettled,
            progress: None,
            plain: 0,
            pending: None,
        })
    }

    /// Reports the plaintext bytes of file chunks (not trees) to `progress` once they are
    /// on the grid: at once for those stored before, share by share as their pack's shards
    /// are stored for the others (see [`PackProgress`]). A bar then shows what is backed up,
    /// not what was read.
    pub fn report_to(&mut self, progress: Arc<dyn Progress>) {
        self.progress = Some(progress);
    }

    /// Stores the chunks that are not stored yet: looks them up now, and stores them when the
    /// next batch is added or at [`Self::finish`] (a failure shows then).
    pub async fn add(&mut self, chunks: Vec<(ChunkId, Vec<u8>)>) -> Result<(), ClientError> {
        self.add_to(chunks, false).await
    }

    /// [`Self::add`] for encoded trees, which go to tree packs.
    pub async fn add_trees(&mut self, trees: Vec<(ChunkId, Vec<u8>)>) -> Result<(), ClientError> {
        self.add_to(trees, true).await
    }

    async fn add_to(&mut self, chunks: Vec<(ChunkId, Vec<u8>)>, trees: bool) -> Result<(), ClientError> {
        // Ids in the batch still pending are not in `seen` yet: looked up again, at worst.
        let ids: Vec<ChunkId> = chunks.iter().map(|(id, _)| *id).filter(|id| !self.seen.contains(id)).collect();
        let lookup =
            (!ids.is_empty() && !self.relocate).then(|| {
                let (coord, session) = (self.coord.clone(), self.session);
                tokio::spawn(stats::time_async(Stage::Lookup, 0, async move {
                    coord.lookup_chunks(Some(session), ids).await
                }))
            });
        match self.pending.replace(Pending { chunks, trees, lookup }) {
            Some(previous) => self.store(previous).await,
            None => Ok(()),
        }
    }

    /// Seals the chunks of `batch` its lookup did not find into packs, and queues the full ones.
    async fn store(&mut self, batch: Pending) -> Result<(), ClientError> {
        let Pending { chunks, trees, lookup } = batch;
        let known: HashSet<ChunkId> = match lookup {
            Some(lookup) => lookup
                .await
                .map_err(|e| ClientError::Upload(format!("a dedup lookup failed: {e}")))??
                .into_iter()
                .collect(),
            None => HashSet::new(),
        };
        let all: u64 = chunks.iter().map(|(_, d)| d.len() as u64).sum();
        let fresh: Vec<(ChunkId, Vec<u8>)> =
            chunks.into_iter().filter(|(id, _)| self.seen.insert(*id) && !known.contains(id)).collect();
        let new_bytes: u64 = fresh.iter().map(|(_, d)| d.len() as u64).sum();
        if let Some(p) = self.progress.as_ref().filter(|_| !trees) {
            // Already on the grid.
            p.advance(all - new_bytes);
        }
        if fresh.is_empty() {
            return Ok(());
        }
        self.stats.new_chunks += fresh.len();
        self.stats.new_bytes += new_bytes;
        // Chunks are sealed straight into the pack being filled, on the blocking pool.
        let key = self.key.clone();
        let buffers = self.buffers.clone();
        let mut builder = std::mem::take(if trees { &mut self.trees } else { &mut self.builder });
        let mut plain = if trees { 0 } else { self.plain };
        let (builder, full, plain) = tokio::task::spawn_blocking(move || {
            stats::time(Stage::Seal, new_bytes, || {
                let mut full = Vec::new();
                for (id, data) in fresh {
                    if builder.would_overflow(data.len() + SEAL_OVERHEAD) {
                        let next = PackBuilder::with_buffer(buffers.packs.take(PACK_CAPACITY));
                        full.push((std::mem::replace(&mut builder, next).finish(), std::mem::take(&mut plain)));
                    }
                    builder.push_sealed(id, |buf| key.seal_chunk_into(&id, &data, buf));
                    plain += data.len() as u64;
                }
                (builder, full, plain)
            })
        })
        .await
        .map_err(|e| ClientError::Invalid(format!("sealing failed: {e}")))?;
        *(if trees { &mut self.trees } else { &mut self.builder }) = builder;
        if !trees {
            self.plain = plain;
        }
        for (pack, plain) in full {
            self.send_pack(pack, if trees { 0 } else { plain }).await?;
        }
        Ok(())
    }

    /// Queues a pack for upload; `plain` file bytes are reported once it is stored.
    async fn send_pack(&mut self, (bytes, entries): (Vec<u8>, Vec<PackEntry>), plain: u64) -> Result<(), ClientError> {
        let entries = entries.into_iter().map(|e| ChunkEntry { id: e.id, offset: e.offset, len: e.len }).collect();
        let report = self.progress.clone().filter(|_| plain > 0).map(|p| (p, plain));
        let sent = match &self.tx {
            Some(tx) => tx.send((bytes, entries, report)).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The upload task stops early only when a pack failed: report that failure.
        Err(self.wait().await.err().unwrap_or_else(|| ClientError::Upload("the uploader stopped".into())))
    }

    async fn wait(&mut self) -> Result<Vec<PackDone>, ClientError> {
        self.tx = None;
        match self.task.take() {
            Some(task) => task.await.map_err(|e| ClientError::Upload(format!("upload task failed: {e}")))?,
            None => Err(ClientError::Upload("the uploader stopped".into())),
        }
    }

    /// Uploads the last partial pack and waits until every pack is committed.
    pub async fn finish(mut self) -> Result<UploadStats, ClientError> {
        if let Some(last) = self.pending.take() {
            if let Err(e) = self.store(last).await {
                // A pack that failed in the background is the first cause.
                return Err(self.wait().await.err().unwrap_or(e));
            }
        }
        let plain = std::mem::take(&mut self.plain);
        for (last, plain) in [(std::mem::take(&mut self.builder), plain), (std::mem::take(&mut self.trees), 0)] {
            if !last.is_empty() {
                self.send_pack(last.finish(), plain).await?;
            }
        }
        // Every placement is settled once this returns: dropping `self` forgets it.
        let done = self.wait().await?;
        let mut stats = std::mem::take(&mut self.stats);
        stats.packs = done.len();
        stats.bytes_uploaded = done.iter().map(|d| d.bytes).sum();
        stats.replaced_shards = done.iter().map(|d| d.replaced).sum();
        stats.placements = done.into_iter().map(|d| (d.id, d.hosts)).collect();
        Ok(stats)
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(lookup) = self.pending.take().and_then(|p| p.lookup) {
            lookup.abort();
        }
        // Dropped before every pack was committed (a failed or interrupted run, a gateway
        // request that failed): what it placed and did not commit is given back in the
        // background, and [`abandon_unsettled`] still finds it until that is done, so a
        // long-running process neither keeps it forever nor leaves the uploads to lapse.
        let unsettled = self.unsettled.clone();
        let pairs: Vec<(HostId, ShardId)> = {
            let mut set = unsettled.set();
            set.stopped = true;
            set.open.iter().copied().collect()
        };
        let forget =
            |u: &Arc<Unsettled>| UNSETTLED.lock().unwrap_or_else(|p| p.into_inner()).retain(|o| !Arc::ptr_eq(o, u));
        if pairs.is_empty() {
            forget(&unsettled);
        } else if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                unsettled.give_back(&pairs).await;
                forget(&unsettled);
            });
        }
    }
}

/// How long a placement waits for hosts that are late with their heartbeats.
const WAIT_FOR_LATE_HOSTS: std::time::Duration = std::time::Duration::from_secs(60);

/// Says once per process that packs were stored with less redundancy than the grid asks.
fn warn_reduced(survives: u8) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            "too few hosts are up for the grid's full redundancy: some data is stored to survive {survives} host loss(es) for now; the grid restores full redundancy as hosts return (an admin disables a host gone for good: `scatter admin host disable HOST`)"
        );
    }
}

/// Asks for a placement, waiting (up to [`WAIT_FOR_LATE_HOSTS`]) while the coordinator says
/// enough hosts would be there but some are late with their heartbeats: a host whose disk is
/// busy for a few seconds should slow a backup down, not fail it.
async fn place_waiting(coord: &Coordinator, place: &PlaceRequest) -> Result<PlaceResponse, ClientError> {
    let started = std::time::Instant::now();
    let mut warned = false;
    loop {
        match coord.place(place).await {
            Err(ClientError::Api { code, message, .. })
                if code == ErrorCode::HostsLate && started.elapsed() < WAIT_FOR_LATE_HOSTS =>
            {
                if !std::mem::replace(&mut warned, true) {
                    tracing::warn!(%message, "waiting for hosts");
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}

/// A pack's file bytes, told to a progress bar a share at a time as its shards are stored
/// (a host's receipt means the shard is on its disk), the last share only once the pack is
/// committed: the bar moves while a big pack uploads, and is full only when all of it is
/// backed up.
struct PackProgress {
    progress: Arc<dyn Progress>,
    plain: u64,
    shards: u64,
    stored: std::sync::atomic::AtomicU64,
    told: std::sync::atomic::AtomicU64,
}

impl PackProgress {
    fn new(progress: Arc<dyn Progress>, plain: u64, r: Redundancy) -> Self {
        let shards = u64::from(r.k) + u64::from(r.m);
        Self { progress, plain, shards, stored: Default::default(), told: Default::default() }
    }

    fn tell_up_to(&self, due: u64) {
        let before = self.told.fetch_max(due, std::sync::atomic::Ordering::Relaxed);
        if due > before {
            self.progress.advance(due - before);
        }
    }

    /// One more shard is stored (a shard placed again after a failure counts once more, but
    /// never past the last share).
    fn shard_stored(&self) {
        let stored = self.stored.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let shares = stored.min(self.shards.saturating_sub(1));
        self.tell_up_to((u128::from(self.plain) * u128::from(shares) / u128::from(self.shards.max(1))) as u64);
    }

    /// The pack is committed: all of it is backed up.
    fn committed(&self) {
        self.tell_up_to(self.plain);
    }
}

/// Erasure-codes one pack and stores every shard on a distinct host (re-placing shards
/// whose host fails), for [`commit_stored`] to commit. If it fails, every placement it made
/// is given back.
#[allow(clippy::too_many_arguments)]
async fn store_pack(
    coord: Coordinator,
    hosts: Hosts,
    buffers: PackBuffers,
    unsettled: Arc<Unsettled>,
    session: u64,
    r: Redundancy,
    policy: Arc<Policy>,
    bytes: Vec<u8>,
    chunks: Vec<ChunkEntry>,
    relocate: bool,
    report: Option<PackProgress>,
) -> Result<Durable, ClientError> {
    let size = bytes.len() as u64;
    let parity_room = scatter_core::erasure::Layout::new(size, r.k, r.m)
        .map_err(|e| ClientError::Invalid(e.to_string()))?
        .shard_size as usize;
    let parity_bufs = (0..r.m).map(|_| buffers.parity.take(parity_room)).collect();
    let (pack_id, shards, ids) = tokio::task::spawn_blocking(move || {
        stats::time(Stage::Encode, size, || {
            let shards = scatter_core::erasure::encode_reusing(bytes, parity_bufs, r.k, r.m, &mut rand::thread_rng())?;
            let ids: Vec<ShardId> = (0..shards.layout.total()).map(|i| ShardId::of(shards.shard(i))).collect();
            Ok::<_, scatter_core::erasure::ErasureError>((PackId::of_shards(&ids), shards, ids))
        })
    })
    .await
    .map_err(|e| ClientError::Invalid(format!("erasure coding failed: {e}")))?
    .map_err(|e| ClientError::Invalid(e.to_string()))?;
    let layout = shards.layout;
    let shard_size = layout.shard_size as usize;
    let data = buffers.packs.share(shards.data);
    let parity: Vec<Bytes> = shards.parity.into_iter().map(|p| buffers.parity.share(p)).collect();
    let shard_bytes = |i: usize| {
        if i < layout.k as usize {
            data.slice(i * shard_size..(i + 1) * shard_size)
        } else {
            parity[i - layout.k as usize].clone()
        }
    };

    let total = layout.total();
    // Every placement made for this pack, committed or not.
    let mut mine: Vec<(HostId, ShardId)> = Vec::new();
    let stored =
        upload_shards(&coord, &hosts, &unsettled, &mut mine, r, &policy, layout, &ids, shard_bytes, report.as_ref())
            .await;
    match stored {
        Ok((stored, replaced)) => {
            let hosts_by_index: Vec<HostId> = stored.iter().map(|(h, _)| *h).collect();
            let commit = CommitPackRequest {
                pack: pack_id,
                session,
                size,
                k: r.k,
                m: r.m,
                shard_size: layout.shard_size,
                shards: stored
                    .into_iter()
                    .enumerate()
                    .map(|(i, (host, receipt))| StoredShard { index: i as u8, shard: ids[i], host, receipt })
                    .collect(),
                chunks,
                relocate,
            };
            let done =
                PackDone { id: pack_id, hosts: hosts_by_index, bytes: layout.shard_size * total as u64, replaced };
            Ok(Durable { commit, done, mine, report })
        }
        Err(e) => {
            unsettled.give_back(&mine).await;
            Err(e)
        }
    }
}

/// A pack whose shards are all stored, to commit; its buffers are free already.
struct Durable {
    commit: CommitPackRequest,
    done: PackDone,
    /// Every placement made for the pack, committed or not.
    mine: Vec<(HostId, ShardId)>,
    report: Option<PackProgress>,
}

/// Commits a pack [`store_pack`] stored, and gives back the placements it did not use.
async fn commit_stored(coord: Coordinator, unsettled: Arc<Unsettled>, d: Durable) -> Result<PackDone, ClientError> {
    let committed = stats::time_async(Stage::Commit, 0, coord.commit_pack(&d.commit)).await;
    if committed.is_ok() {
        // The committed placements are used up; the others (hosts that failed) go back.
        let mut set = unsettled.set();
        for s in &d.commit.shards {
            set.open.remove(&(s.host, s.shard));
        }
        if let Some(p) = &d.report {
            p.committed();
        }
    }
    unsettled.give_back(&d.mine).await;
    committed.map(|()| d.done)
}

/// Places and uploads every shard of a pack, re-placing those whose host fails (up to
/// [`PLACEMENT_ROUNDS`]); every placement made is added to `mine` (and `unsettled`).
/// Returns each shard's host and receipt by index, and how many shards were re-placed.
#[allow(clippy::too_many_arguments)]
async fn upload_shards(
    coord: &Coordinator,
    hosts: &Hosts,
    unsettled: &Unsettled,
    mine: &mut Vec<(HostId, ShardId)>,
    r: Redundancy,
    policy: &Policy,
    layout: scatter_core::erasure::Layout,
    ids: &[ShardId],
    shard_bytes: impl Fn(usize) -> Bytes,
    report: Option<&PackProgress>,
) -> Result<(Vec<(HostId, SignedReceipt)>, usize), ClientError> {
    let total = layout.total();
    let mut placed: Vec<Option<(HostId, SignedReceipt)>> = vec![None; total];
    let mut failed_hosts: Vec<HostId> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut replaced = 0;
    for round in 0..PLACEMENT_ROUNDS {
        let pending: Vec<usize> = (0..total).filter(|i| placed[*i].is_none()).collect();
        if pending.is_empty() {
            break;
        }
        if round > 0 {
            replaced += pending.len();
        }
        let place = PlaceRequest {
            shard_size: layout.shard_size,
            shards: pending.iter().map(|&i| ShardToPlace { index: i as u8, shard: ids[i] }).collect(),
            exclude: {
                let mut exclude = failed_hosts.clone();
                exclude.extend(hosts.recently_down().into_iter().filter(|h| !failed_hosts.contains(h)));
                exclude
            },
            k: r.k,
            m: r.m,
            placed: placed.iter().flatten().map(|(h, _)| *h).collect(),
            policy: policy.clone(),
        };
        let targets = stats::time_async(Stage::Commit, 0, place_waiting(coord, &place)).await?;
        let stopped = {
            let mut set = unsettled.set();
            for t in &targets.targets {
                let pair = (t.host, ids[t.index as usize]);
                set.open.insert(pair);
                mine.push(pair);
            }
            set.stopped
        };
        if stopped {
            // The run stopped while this placement was on its way: the caller gives it back.
            return Err(ClientError::Upload("the run stopped; its placements were given back".into()));
        }
        if let Some(survives) = targets.reduced_to {
            warn_reduced(survives);
        }
        let uploads = targets.targets.into_iter().map(|t| {
            let hosts = hosts.clone();
            let body = shard_bytes(t.index as usize);
            let id = ids[t.index as usize];
            async move {
                let len = body.len() as u64;
                let res = stats::time_async(Stage::Upload, len, hosts.put(&t.address, &id, &t.grant, body)).await;
                if let (Ok(_), Some(p)) = (&res, report) {
                    p.shard_stored();
                }
                (t, res)
            }
        });
        for (t, res) in futures::future::join_all(uploads).await {
            match res {
                Ok(receipt) => placed[t.index as usize] = Some((t.host, receipt)),
                Err(e) => {
                    let unreachable = matches!(e, crate::hosts::TransferError::Unreachable(_));
                    if !unreachable || hosts.mark_down(t.host) {
                        tracing::warn!(host = %t.host, shard = t.index, error = %e, "shard upload failed; placing it elsewhere");
                    } else {
                        tracing::debug!(host = %t.host, shard = t.index, error = %e, "shard upload failed; placing it elsewhere");
                    }
                    errors.push(format!("host {} at {}: {e}", t.host, t.address));
                    failed_hosts.push(t.host);
                }
            }
        }
    }
    let stored: Vec<(HostId, SignedReceipt)> = placed.into_iter().flatten().collect();
    if stored.len() != total {
        return Err(ClientError::Upload(errors.join("; ")));
    }
    Ok((stored, replaced))
}
