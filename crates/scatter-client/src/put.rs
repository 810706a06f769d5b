//! The put pipeline: file → chunks → ids → (skip known) → sealed → packs → k+m shards →
//! hosts in parallel → pack commits → object commit.
//!
//! Stages run concurrently with bounded queues, so memory stays flat whatever the file size:
//! a reader thread chunks and hashes; the main task deduplicates and seals (on the blocking
//! pool); up to [`PACKS_IN_FLIGHT`] packs are erasure-coded and uploaded at once. A pack is
//! committed only once all its shards are durable on distinct hosts; the object becomes
//! visible in one final commit, so an interrupted put never leaves a half-visible object.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use scatter_core::crypto::DataKey;
use scatter_core::keys::WriteKeys;
use scatter_core::manifest::Manifest;
use scatter_core::pack::PackBuilder;
use scatter_core::{ChunkId, HostId, PackId, ShardId};
use scatter_proto::api::*;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::coordinator::Coordinator;
use crate::hosts::Hosts;
use crate::{ClientError, Progress};

/// Packs being coded and uploaded at once.
pub const PACKS_IN_FLIGHT: usize = 2;
/// Rounds of re-placement for shards whose host failed.
const PLACEMENT_ROUNDS: usize = 4;
/// Chunks per dedup lookup.
const BATCH_CHUNKS: usize = 16;

/// The context manifests are sealed under.
pub(crate) const MANIFEST_CONTEXT: &[u8] = b"scatter manifest v1";

/// Redundancy of a put.
#[derive(Debug, Clone, Copy)]
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

/// What a put did.
#[derive(Debug, Clone, Default)]
pub struct PutReport {
    /// Version of the object created.
    pub version: u64,
    /// Plaintext bytes read.
    pub size: u64,
    /// Chunks in the file.
    pub chunks: usize,
    /// Chunks that were not stored before and were uploaded.
    pub new_chunks: usize,
    /// Packs uploaded.
    pub packs: usize,
    /// Shard bytes sent to hosts (with redundancy).
    pub bytes_uploaded: u64,
    /// Shards that had to go to another host because the first one failed.
    pub replaced_shards: usize,
    /// Hosts each new pack was placed on, by shard index.
    pub placements: Vec<(PackId, Vec<HostId>)>,
    /// Wall time.
    pub elapsed: Duration,
}

struct ChunkBatch(Vec<(ChunkId, Vec<u8>)>);

struct PackDone {
    id: PackId,
    hosts: Vec<HostId>,
    bytes: u64,
    replaced: usize,
}

/// Stores the file at `path` under `name`.
pub async fn put_file(
    coord: &Coordinator,
    keys: &WriteKeys,
    path: &Path,
    name: &str,
    redundancy: Redundancy,
    progress: &dyn Progress,
) -> Result<PutReport, ClientError> {
    let started = Instant::now();
    scatter_core::erasure::check_redundancy(redundancy.k, redundancy.m)
        .map_err(|e| ClientError::Invalid(e.to_string()))?;
    let file = std::fs::File::open(path).map_err(ClientError::io(path))?;
    let meta = file.metadata().map_err(ClientError::io(path))?;
    if !meta.is_file() {
        return Err(ClientError::Invalid(format!("{} is not a regular file", path.display())));
    }
    progress.start(meta.len());

    let data_key = Arc::new(DataKey::generate());
    let session = coord.create_session(&keys.wrap(&data_key)).await?;
    let hosts = Hosts::new()?;

    // Stage 1: read, chunk and hash on a thread of its own.
    let (chunk_tx, mut chunk_rx) = mpsc::channel::<Result<ChunkBatch, ClientError>>(2);
    let dedup = keys.dedup_key();
    let reader_path = path.to_owned();
    let reader = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(BATCH_CHUNKS);
        for chunk in scatter_core::chunker::chunks(std::io::BufReader::with_capacity(1 << 20, file)) {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = chunk_tx.blocking_send(Err(ClientError::io(&reader_path)(e.0)));
                    return;
                }
            };
            batch.push((dedup.chunk_id(&chunk.data), chunk.data));
            if batch.len() == BATCH_CHUNKS
                && chunk_tx.blocking_send(Ok(ChunkBatch(std::mem::take(&mut batch)))).is_err()
            {
                return;
            }
        }
        if !batch.is_empty() {
            let _ = chunk_tx.blocking_send(Ok(ChunkBatch(batch)));
        }
    });

    // Stage 3: code and upload packs, a bounded number at once.
    let (pack_tx, mut pack_rx) = mpsc::channel::<(Vec<u8>, Vec<ChunkEntry>)>(1);
    let uploader = {
        let coord = coord.clone();
        tokio::spawn(async move {
            let mut running: JoinSet<Result<PackDone, ClientError>> = JoinSet::new();
            let mut done = Vec::new();
            loop {
                tokio::select! {
                    next = pack_rx.recv(), if running.len() < PACKS_IN_FLIGHT => match next {
                        Some((bytes, entries)) => {
                            running.spawn(store_pack(coord.clone(), hosts.clone(), session, redundancy, bytes, entries));
                        }
                        None => break,
                    },
                    Some(res) = running.join_next() => {
                        done.push(res.map_err(|e| ClientError::Upload(format!("upload task failed: {e}")))??);
                    }
                }
            }
            while let Some(res) = running.join_next().await {
                done.push(res.map_err(|e| ClientError::Upload(format!("upload task failed: {e}")))??);
            }
            Ok::<_, ClientError>(done)
        })
    };

    // Stage 2: deduplicate, seal, pack.
    let mut manifest = Manifest::default();
    let mut seen: HashSet<ChunkId> = HashSet::new();
    let mut builder = PackBuilder::new();
    let mut new_chunks = 0;
    let stage2: Result<(), ClientError> = async {
        while let Some(batch) = chunk_rx.recv().await {
            let ChunkBatch(chunks) = batch?;
            let ids: Vec<ChunkId> = chunks.iter().map(|(id, _)| *id).filter(|id| !seen.contains(id)).collect();
            let known: HashSet<ChunkId> =
                if ids.is_empty() { HashSet::new() } else { coord.lookup_chunks(ids).await?.into_iter().collect() };
            let mut fresh = Vec::new();
            for (id, data) in chunks {
                manifest.chunks.push((id, data.len() as u32));
                manifest.size += data.len() as u64;
                progress.advance(data.len() as u64);
                if seen.insert(id) && !known.contains(&id) {
                    fresh.push((id, data));
                }
            }
            if fresh.is_empty() {
                continue;
            }
            new_chunks += fresh.len();
            let key = data_key.clone();
            let sealed = tokio::task::spawn_blocking(move || {
                fresh.into_iter().map(|(id, data)| (id, key.seal_chunk(&id, &data))).collect::<Vec<_>>()
            })
            .await
            .map_err(|e| ClientError::Invalid(format!("sealing failed: {e}")))?;
            for (id, s) in sealed {
                if builder.would_overflow(s.len()) {
                    send_pack(&pack_tx, std::mem::take(&mut builder)).await?;
                }
                builder.push(id, &s);
            }
        }
        if !builder.is_empty() {
            send_pack(&pack_tx, std::mem::take(&mut builder)).await?;
        }
        Ok(())
    }
    .await;
    drop(pack_tx);
    let uploaded = uploader.await.map_err(|e| ClientError::Upload(format!("upload task failed: {e}")))?;
    reader.abort();
    // An upload failure stops stage 2 too; report the upload's own error, not the symptom.
    let done = uploaded?;
    stage2?;

    if manifest.size != meta.len() {
        return Err(ClientError::Invalid(format!(
            "{} changed size while it was being stored ({} bytes read, {} expected); nothing was committed, retry",
            path.display(),
            manifest.size,
            meta.len()
        )));
    }
    let chunk_ids: Vec<ChunkId> = {
        let mut s = HashSet::new();
        manifest.chunks.iter().map(|(id, _)| *id).filter(|id| s.insert(*id)).collect()
    };
    let sealed_manifest = data_key.seal(MANIFEST_CONTEXT, &manifest.encode());
    let version = coord
        .commit_object(&CommitObjectRequest {
            name: keys.name_key().encrypt(name),
            session,
            size: manifest.size,
            manifest: B64.encode(sealed_manifest),
            chunks: chunk_ids,
        })
        .await?;
    Ok(PutReport {
        version,
        size: manifest.size,
        chunks: manifest.chunks.len(),
        new_chunks,
        packs: done.len(),
        bytes_uploaded: done.iter().map(|d| d.bytes).sum(),
        replaced_shards: done.iter().map(|d| d.replaced).sum(),
        placements: done.into_iter().map(|d| (d.id, d.hosts)).collect(),
        elapsed: started.elapsed(),
    })
}

async fn send_pack(tx: &mpsc::Sender<(Vec<u8>, Vec<ChunkEntry>)>, builder: PackBuilder) -> Result<(), ClientError> {
    let (bytes, entries) = builder.finish();
    let entries = entries.into_iter().map(|e| ChunkEntry { id: e.id, offset: e.offset, len: e.len }).collect();
    // The uploader only stops early when a pack failed; its error is reported instead.
    tx.send((bytes, entries)).await.map_err(|_| ClientError::Upload("the uploader stopped".into()))
}

/// Erasure-codes one pack, stores every shard on a distinct host (re-placing shards whose
/// host fails), then commits the pack.
async fn store_pack(
    coord: Coordinator,
    hosts: Hosts,
    session: u64,
    r: Redundancy,
    bytes: Vec<u8>,
    chunks: Vec<ChunkEntry>,
) -> Result<PackDone, ClientError> {
    let size = bytes.len() as u64;
    let (pack_id, shards, ids) = tokio::task::spawn_blocking(move || {
        let id = PackId::of(&bytes);
        let shards = scatter_core::erasure::encode(bytes, r.k, r.m, &mut rand::thread_rng())?;
        let ids: Vec<ShardId> = (0..shards.layout.total()).map(|i| ShardId::of(shards.shard(i))).collect();
        Ok::<_, scatter_core::erasure::ErasureError>((id, shards, ids))
    })
    .await
    .map_err(|e| ClientError::Invalid(format!("erasure coding failed: {e}")))?
    .map_err(|e| ClientError::Invalid(e.to_string()))?;
    let layout = shards.layout;
    let shard_size = layout.shard_size as usize;
    let data = Bytes::from(shards.data);
    let parity: Vec<Bytes> = shards.parity.into_iter().map(Bytes::from).collect();
    let shard_bytes = |i: usize| {
        if i < layout.k as usize {
            data.slice(i * shard_size..(i + 1) * shard_size)
        } else {
            parity[i - layout.k as usize].clone()
        }
    };

    let total = layout.total();
    let mut placed: Vec<Option<HostId>> = vec![None; total];
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
        let mut exclude: Vec<HostId> = placed.iter().flatten().copied().collect();
        exclude.extend(&failed_hosts);
        let targets = coord
            .place(&PlaceRequest {
                shard_size: layout.shard_size,
                shards: pending.iter().map(|&i| ShardToPlace { index: i as u8, shard: ids[i] }).collect(),
                exclude,
            })
            .await?;
        let uploads = targets.targets.into_iter().map(|t| {
            let hosts = hosts.clone();
            let body = shard_bytes(t.index as usize);
            let id = ids[t.index as usize];
            async move {
                let res = hosts.put(&t.address, &id, &t.grant, body).await;
                (t, res)
            }
        });
        for (t, res) in futures::future::join_all(uploads).await {
            match res {
                Ok(()) => placed[t.index as usize] = Some(t.host),
                Err(e) => {
                    tracing::warn!(host = %t.host, shard = t.index, error = %e, "shard upload failed; placing it elsewhere");
                    errors.push(format!("host {} at {}: {e}", t.host, t.address));
                    failed_hosts.push(t.host);
                }
            }
        }
    }
    let hosts_by_index: Vec<HostId> = placed.iter().flatten().copied().collect();
    if hosts_by_index.len() != total {
        return Err(ClientError::Upload(errors.join("; ")));
    }
    coord
        .commit_pack(&CommitPackRequest {
            pack: pack_id,
            session,
            size,
            k: r.k,
            m: r.m,
            shard_size: layout.shard_size,
            shards: (0..total)
                .map(|i| StoredShard { index: i as u8, shard: ids[i], host: hosts_by_index[i] })
                .collect(),
            chunks,
        })
        .await?;
    Ok(PackDone { id: pack_id, hosts: hosts_by_index, bytes: layout.shard_size * total as u64, replaced })
}
