//! The get pipeline: manifest → chunk locations → byte ranges of data shards → decrypt →
//! verify → write in order.
//!
//! Each run of consecutive chunks in one pack is read straight from the data shards that hold
//! it. When a host is unreachable, a shard is corrupt, or a chunk fails authentication, the
//! pack is rebuilt from any k hash-verified shards instead. Runs are fetched a few at a time
//! ahead of the writer; the output appears under its name only once complete and verified.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures::StreamExt;
use scatter_core::crypto::{DataKey, DedupKey};
use scatter_core::erasure::Layout;
use scatter_core::keys::UserKeys;
use scatter_core::manifest::Manifest;
use scatter_core::{ChunkId, HostId, PackId, ShardId};
use scatter_proto::api::{PackLocation, ReportShardRequest};

use crate::coordinator::Coordinator;
use crate::hosts::{Hosts, TransferError};
use crate::put::MANIFEST_CONTEXT;
use crate::{ClientError, Progress};

/// Runs fetched ahead of the writer.
const RUNS_AHEAD: usize = 4;
/// Chunks located per coordinator call.
const LOCATE_BATCH: usize = 4096;

/// What a get did.
#[derive(Debug, Clone, Default)]
pub struct GetReport {
    /// Version read.
    pub version: u64,
    /// Bytes written.
    pub size: u64,
    /// Packs that had to be rebuilt from parity.
    pub reconstructed_packs: usize,
    /// Shards found bad (corrupt) and reported: (host, shard, problem).
    pub bad_shards: Vec<(HostId, ShardId, String)>,
    /// Hosts that could not be reached.
    pub unreachable_hosts: Vec<HostId>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Consecutive chunks of the output that lie in one pack.
struct Run {
    pack: PackId,
    /// (chunk id, offset in pack, sealed len, plain len)
    chunks: Vec<(ChunkId, u64, u64, u32)>,
}

struct Ctx {
    coord: Coordinator,
    hosts: Hosts,
    dedup: DedupKey,
    packs: HashMap<PackId, PackLocation>,
    keys: HashMap<u64, Arc<DataKey>>,
    report: Mutex<GetReport>,
}

/// Reads the latest version of `name` and writes it to `output`.
pub async fn get_file(
    coord: &Coordinator,
    keys: &UserKeys,
    name: &str,
    output: &Path,
    progress: &dyn Progress,
) -> Result<GetReport, ClientError> {
    let started = Instant::now();
    let object = coord.object(&keys.write_keys().name_key().encrypt(name)).await.map_err(|e| match e {
        ClientError::Api { code, .. } if code == "not_found" => {
            ClientError::Invalid(format!("no object named `{name}` is stored; `scatter ls` lists what is"))
        }
        e => e,
    })?;
    let bad = |what: &str| ClientError::Unrecoverable(format!("the manifest of `{name}` {what}"));
    let wrapped = B64.decode(&object.wrapped_key).map_err(|_| bad("has an unreadable key"))?;
    let manifest_key = keys.unwrap(&wrapped)?;
    let sealed = B64.decode(&object.manifest).map_err(|_| bad("is not base64"))?;
    let manifest =
        Manifest::decode(&manifest_key.open(MANIFEST_CONTEXT, &sealed).map_err(|_| bad("fails authentication"))?)
            .map_err(|e| ClientError::Unrecoverable(e.to_string()))?;
    progress.start(manifest.size);

    // Locate every chunk, in batches, and plan runs.
    let mut ctx = Ctx {
        coord: coord.clone(),
        hosts: Hosts::new()?,
        dedup: keys.write_keys().dedup_key(),
        packs: HashMap::new(),
        keys: HashMap::new(),
        report: Mutex::new(GetReport { version: object.info.version, ..Default::default() }),
    };
    let mut runs: Vec<Run> = Vec::new();
    for batch in manifest.chunks.chunks(LOCATE_BATCH) {
        let mut ids: Vec<ChunkId> = batch.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        let located = coord.locate(ids).await?;
        for s in located.sessions {
            if let std::collections::hash_map::Entry::Vacant(slot) = ctx.keys.entry(s.session) {
                let w = B64.decode(&s.wrapped_key).map_err(|_| bad("refers to an unreadable session key"))?;
                slot.insert(Arc::new(keys.unwrap(&w)?));
            }
        }
        for p in located.packs {
            ctx.packs.insert(p.id, p);
        }
        let where_: HashMap<ChunkId, (PackId, u64, u64)> =
            located.chunks.into_iter().map(|c| (c.id, (c.pack, c.offset, c.len))).collect();
        for (id, plain_len) in batch {
            let (pack, off, len) = *where_.get(id).ok_or_else(|| {
                ClientError::Unrecoverable(format!("chunk {id} of `{name}` is not in the catalog any more"))
            })?;
            match runs.last_mut() {
                Some(run) if run.pack == pack => run.chunks.push((*id, off, len, *plain_len)),
                _ => runs.push(Run { pack, chunks: vec![(*id, off, len, *plain_len)] }),
            }
        }
    }

    let out = PartialFile::create(output)?;
    let ctx = Arc::new(ctx);
    let mut fetched = futures::stream::iter(runs.into_iter().map(|run| {
        let ctx = ctx.clone();
        async move { fetch_run(&ctx, run).await }
    }))
    .buffered(RUNS_AHEAD);
    let mut file = std::io::BufWriter::with_capacity(1 << 20, out.file()?);
    let mut written = 0u64;
    while let Some(plain) = fetched.next().await {
        for chunk in plain? {
            file.write_all(&chunk).map_err(ClientError::io(output))?;
            written += chunk.len() as u64;
            progress.advance(chunk.len() as u64);
        }
    }
    drop(fetched);
    let file = file.into_inner().map_err(|e| ClientError::io(output)(e.into_error()))?;
    if written != manifest.size {
        return Err(ClientError::Unrecoverable(format!(
            "{written} bytes were recovered but the object has {}",
            manifest.size
        )));
    }
    out.commit(file)?;
    let ctx = Arc::into_inner(ctx).ok_or_else(|| ClientError::Invalid("get tasks still running".into()))?;
    let mut report = ctx.report.into_inner().unwrap_or_else(|p| p.into_inner());
    report.size = written;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Fetches, decrypts and verifies one run; returns its chunks' plaintexts in order.
async fn fetch_run(ctx: &Ctx, run: Run) -> Result<Vec<Vec<u8>>, ClientError> {
    let pack = ctx
        .packs
        .get(&run.pack)
        .ok_or_else(|| ClientError::Unrecoverable(format!("pack {} is not in the catalog", run.pack)))?;
    let key = ctx
        .keys
        .get(&pack.session)
        .cloned()
        .ok_or_else(|| ClientError::Unrecoverable(format!("the key of pack {} is missing", run.pack)))?;
    let layout = Layout { size: pack.size, k: pack.k, m: pack.m, shard_size: pack.shard_size };
    let start = run.chunks.iter().map(|c| c.1).min().unwrap_or(0);
    let end = run.chunks.iter().map(|c| c.1 + c.2).max().unwrap_or(0);
    if end > pack.size {
        return Err(ClientError::Unrecoverable(format!("pack {} is smaller than its chunks claim", run.pack)));
    }

    if let Some(bytes) = read_direct(ctx, pack, &layout, start..end).await {
        if let Ok(plain) = open_run(ctx, &key, &run, start, bytes).await {
            return Ok(plain);
        }
        tracing::warn!(pack = %run.pack, "chunks read directly failed verification; rebuilding the pack from all shards");
    }
    let whole = reconstruct(ctx, pack, &layout).await?;
    ctx.report.lock().unwrap_or_else(|p| p.into_inner()).reconstructed_packs += 1;
    let slice = whole[start as usize..end as usize].to_vec();
    open_run(ctx, &key, &run, start, slice).await.map_err(|id| {
        ClientError::Unrecoverable(format!(
            "chunk {id} fails authentication even after rebuilding its pack from verified shards (wrong key or damaged catalog)"
        ))
    })
}

/// Reads pack bytes `range` straight from the data shards; `None` if any piece failed.
async fn read_direct(ctx: &Ctx, pack: &PackLocation, layout: &Layout, range: std::ops::Range<u64>) -> Option<Vec<u8>> {
    let pieces = layout.data_ranges(range.clone());
    let reads = pieces.iter().map(|(index, r)| {
        let shard = pack.shards.iter().find(|s| s.index as usize == *index);
        async move {
            let s = shard?;
            if !s.online {
                return None;
            }
            match ctx.hosts.get(&s.address, &s.shard, &s.grant, Some(r.clone())).await {
                Ok(b) => Some(b),
                Err(e) => {
                    note_failure(ctx, s.host, s.shard, &e).await;
                    None
                }
            }
        }
    });
    let parts = futures::future::join_all(reads).await;
    let mut out = Vec::with_capacity((range.end - range.start) as usize);
    for p in parts {
        out.extend_from_slice(&p?);
    }
    Some(out)
}

/// Fetches k hash-verified shards (data shards and online hosts first) and decodes the pack.
async fn reconstruct(ctx: &Ctx, pack: &PackLocation, layout: &Layout) -> Result<Vec<u8>, ClientError> {
    let mut order: Vec<_> = pack.shards.iter().collect();
    order.sort_by_key(|s| (!s.online, s.index));
    let k = layout.k as usize;
    let mut have: Vec<Option<Vec<u8>>> = vec![None; layout.total()];
    let mut count = 0;
    let mut next = 0;
    let mut errors = Vec::new();
    while count < k && next < order.len() {
        let batch: Vec<_> = order[next..order.len().min(next + (k - count))].to_vec();
        next += batch.len();
        let results =
            futures::future::join_all(batch.iter().map(|s| ctx.hosts.get(&s.address, &s.shard, &s.grant, None))).await;
        for (s, r) in batch.iter().zip(results) {
            match r {
                Ok(b) if (s.index as usize) < have.len() => {
                    have[s.index as usize] = Some(b.to_vec());
                    count += 1;
                }
                Ok(_) => errors.push(format!("shard {} has an invalid index", s.index)),
                Err(e) => {
                    errors.push(format!("host {}: {e}", s.host));
                    note_failure(ctx, s.host, s.shard, &e).await;
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
    tokio::task::spawn_blocking(move || scatter_core::erasure::decode(&layout, &have))
        .await
        .map_err(|e| ClientError::Unrecoverable(format!("decoding failed: {e}")))?
        .map_err(|e| ClientError::Unrecoverable(e.to_string()))
}

/// Decrypts and verifies every chunk of a run from pack bytes starting at `start`.
/// On failure returns the first chunk that did not verify.
async fn open_run(
    ctx: &Ctx,
    key: &Arc<DataKey>,
    run: &Run,
    start: u64,
    bytes: Vec<u8>,
) -> Result<Vec<Vec<u8>>, ChunkId> {
    let key = key.clone();
    let dedup = ctx.dedup.clone();
    let chunks = run.chunks.clone();
    tokio::task::spawn_blocking(move || {
        chunks
            .iter()
            .map(|(id, off, len, plain_len)| {
                let s = (off - start) as usize;
                let plain = key.open_chunk(id, &bytes[s..s + *len as usize]).map_err(|_| *id)?;
                if plain.len() != *plain_len as usize || !dedup.verify(id, &plain) {
                    return Err(*id);
                }
                Ok(plain)
            })
            .collect()
    })
    .await
    .unwrap_or_else(|_| Err(run.chunks[0].0))
}

async fn note_failure(ctx: &Ctx, host: HostId, shard: ShardId, e: &TransferError) {
    match e {
        TransferError::Corrupt(problem) => {
            tracing::warn!(%host, %shard, %problem, "corrupt shard; rebuilding from the others");
            {
                let mut r = ctx.report.lock().unwrap_or_else(|p| p.into_inner());
                if r.bad_shards.iter().any(|(h, s, _)| *h == host && *s == shard) {
                    return;
                }
                r.bad_shards.push((host, shard, problem.clone()));
            }
            let report = ReportShardRequest { host, shard, problem: problem.clone() };
            if let Err(err) = ctx.coord.report_shard(&report).await {
                tracing::warn!(error = %err, "could not report a bad shard to the coordinator");
            }
        }
        TransferError::Unreachable(reason) => {
            tracing::debug!(%host, %shard, %reason, "host unreachable");
            let mut r = ctx.report.lock().unwrap_or_else(|p| p.into_inner());
            if !r.unreachable_hosts.contains(&host) {
                r.unreachable_hosts.push(host);
            }
        }
        TransferError::Refused(reason) => tracing::warn!(%host, %shard, %reason, "host refused a shard read"),
    }
}

/// An output file written under a temporary name and renamed into place once complete, so a
/// failed or interrupted get never leaves a partial file under the final name.
struct PartialFile {
    tmp: PathBuf,
    dest: PathBuf,
    done: bool,
}

impl PartialFile {
    fn create(dest: &Path) -> Result<Self, ClientError> {
        let dir = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let base = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "output".into());
        let tmp = dir.join(format!(".{base}.scatter-partial-{}", std::process::id()));
        std::fs::File::create(&tmp).map_err(ClientError::io(&tmp))?;
        Ok(Self { tmp, dest: dest.to_owned(), done: false })
    }

    fn file(&self) -> Result<std::fs::File, ClientError> {
        std::fs::OpenOptions::new().write(true).open(&self.tmp).map_err(ClientError::io(&self.tmp))
    }

    fn commit(mut self, file: std::fs::File) -> Result<(), ClientError> {
        file.sync_all().map_err(ClientError::io(&self.tmp))?;
        std::fs::rename(&self.tmp, &self.dest).map_err(ClientError::io(&self.dest))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
