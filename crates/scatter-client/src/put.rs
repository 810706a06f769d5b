//! The put pipeline: file → chunks → ids → (skip known) → sealed → packs → k+m shards →
//! hosts in parallel → pack commits → object commit.
//!
//! A reader thread chunks and hashes while the [`Uploader`] deduplicates, seals, codes and
//! uploads, so memory stays flat whatever the file size. The object becomes visible in one
//! final commit, so an interrupted put never leaves a half-visible object; its packs are
//! committed as they complete, so a retried put uploads only what is missing.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use scatter_core::keys::WriteKeys;
use scatter_core::manifest::Manifest;
use scatter_core::{ChunkId, HostId, PackId};
use scatter_proto::api::CommitObjectRequest;
use tokio::sync::mpsc;

use crate::coordinator::Coordinator;
use crate::session::Session;
use crate::stats::{self, Stage};
use crate::upload::{Redundancy, Uploader};
use crate::{ClientError, Progress};

/// Chunks per dedup lookup.
const BATCH_CHUNKS: usize = 16;

/// The context manifests are sealed under.
pub(crate) const MANIFEST_CONTEXT: &[u8] = b"scatter manifest v1";

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
    /// When chunks were stored before (deduplicated), the codes (k, m) of all the packs
    /// holding the file, with how many packs have each: old packs keep the code they were
    /// stored with. Empty when every chunk is new, or when they cannot be looked up (an
    /// appender may not locate chunks).
    pub codes: Vec<((u8, u8), usize)>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Stores the file at `path` under `name`, asking the coordinator for `retention` (object
/// lock and expiry).
#[allow(clippy::too_many_arguments)]
pub async fn put_file(
    coord: &Coordinator,
    keys: &WriteKeys,
    path: &Path,
    name: &str,
    redundancy: Redundancy,
    policy: scatter_proto::api::Policy,
    retention: scatter_proto::api::Retention,
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

    let session = Session::open(coord, keys).await?;
    let mut uploader =
        Uploader::new(coord, &coord.hosts()?, session.id, session.key.clone(), redundancy, policy, false)?;

    // Read, chunk and hash on a thread of its own.
    let (chunk_tx, mut chunk_rx) = mpsc::channel::<Result<Vec<(ChunkId, Vec<u8>)>, ClientError>>(2);
    let dedup = keys.dedup_key();
    let reader_path = path.to_owned();
    let reader = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(BATCH_CHUNKS);
        let mut started = std::time::Instant::now();
        for chunk in scatter_core::chunker::chunks(file) {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = chunk_tx.blocking_send(Err(ClientError::io(&reader_path)(e.0)));
                    return;
                }
            };
            batch.push((dedup.chunk_id(&chunk.data), chunk.data));
            stats::add(Stage::ReadChunk, started.elapsed(), batch.last().map_or(0, |(_, d)| d.len() as u64));
            if batch.len() == BATCH_CHUNKS && chunk_tx.blocking_send(Ok(std::mem::take(&mut batch))).is_err() {
                return;
            }
            started = std::time::Instant::now();
        }
        if !batch.is_empty() {
            let _ = chunk_tx.blocking_send(Ok(batch));
        }
    });

    let mut manifest = Manifest::default();
    let stored: Result<(), ClientError> = async {
        while let Some(batch) = chunk_rx.recv().await {
            let batch = batch?;
            for (id, data) in &batch {
                manifest.chunks.push((*id, data.len() as u32));
                manifest.size += data.len() as u64;
                progress.advance(data.len() as u64);
            }
            uploader.add(batch).await?;
        }
        Ok(())
    }
    .await;
    reader.abort();
    stored?;
    let stats = uploader.finish().await?;

    if manifest.size != meta.len() {
        return Err(ClientError::Invalid(format!(
            "{} changed size while it was being stored ({} bytes read, {} expected); nothing was committed, retry",
            path.display(),
            manifest.size,
            meta.len()
        )));
    }
    let chunk_ids: Vec<ChunkId> = {
        let mut s = std::collections::HashSet::new();
        manifest.chunks.iter().map(|(id, _)| *id).filter(|id| s.insert(*id)).collect()
    };
    let deduplicated = stats.new_chunks < chunk_ids.len();
    let located = chunk_ids.clone();
    let sealed_manifest = session.key.seal(MANIFEST_CONTEXT, &manifest.encode());
    let version = coord
        .commit_object(&CommitObjectRequest {
            name: keys.name_key().encrypt(name),
            session: session.id,
            size: manifest.size,
            manifest: B64.encode(sealed_manifest),
            chunks: chunk_ids,
            retention,
        })
        .await?;
    session.close().await?;
    let codes = if deduplicated { pack_codes(coord, located).await } else { Vec::new() };
    Ok(PutReport {
        codes,
        version,
        size: manifest.size,
        chunks: manifest.chunks.len(),
        new_chunks: stats.new_chunks,
        packs: stats.packs,
        bytes_uploaded: stats.bytes_uploaded,
        replaced_shards: stats.replaced_shards,
        placements: stats.placements,
        elapsed: started.elapsed(),
    })
}

/// The codes of the packs holding `chunks`, with how many packs have each, most used first;
/// empty if they cannot be located.
async fn pack_codes(coord: &Coordinator, chunks: Vec<ChunkId>) -> Vec<((u8, u8), usize)> {
    let mut packs = std::collections::HashMap::new();
    for batch in chunks.chunks(4096) {
        match coord.locate(batch.to_vec()).await {
            Ok(r) => packs.extend(r.packs.into_iter().map(|p| (p.id, (p.k, p.m)))),
            Err(e) => {
                tracing::debug!(error = %e, "could not locate the chunks to report their codes");
                return Vec::new();
            }
        }
    }
    let mut codes = std::collections::HashMap::new();
    for code in packs.into_values() {
        *codes.entry(code).or_insert(0usize) += 1;
    }
    let mut codes: Vec<_> = codes.into_iter().collect();
    codes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    codes
}
