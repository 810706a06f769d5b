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
use scatter_proto::api::{attributes_tag, AttributesTag, CommitObjectRequest};
use tokio::sync::mpsc;

use crate::coordinator::Coordinator;
use crate::session::Session;
use crate::stats::{self, Stage};
use crate::upload::{Redundancy, Uploader};
use crate::{ClientError, Progress};

/// A batch (one dedup lookup) goes to the uploader at this many chunks or bytes, whichever
/// comes first (as a backup's).
const BATCH_CHUNKS: usize = 16;
const BATCH_BYTES: usize = 8 << 20;

/// The context manifests are sealed under.
pub(crate) const MANIFEST_CONTEXT: &[u8] = b"scatter manifest v1";

/// An object version a commit created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    /// Its version number.
    pub version: u64,
    /// The tag of its sealed attributes, if it has any: what a later write conditional on
    /// this version names ([`PutOptions::if_attributes`]).
    pub tag: Option<AttributesTag>,
}

/// What a put did.
#[derive(Debug, Clone, Default)]
pub struct PutReport {
    /// Version of the object created.
    pub version: u64,
    /// The tag of its sealed attributes, if it has any.
    pub tag: Option<AttributesTag>,
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
    let file = std::fs::File::open(path).map_err(ClientError::io(path))?;
    let meta = file.metadata().map_err(ClientError::io(path))?;
    if meta.is_dir() {
        return Err(ClientError::Invalid(format!(
            "{} is a folder; `put` stores one file (`scatter backup {}` stores a folder)",
            path.display(),
            path.display()
        )));
    }
    if !meta.is_file() {
        return Err(ClientError::Invalid(format!("{} is not a regular file; `put` stores one file", path.display())));
    }
    let expected = meta.len();
    let shown = path.to_owned();
    let opts = PutOptions { redundancy, policy, retention, ..Default::default() };
    put_stream(coord, keys, file, name, &opts, Some(expected), progress, |manifest| {
        if manifest.size != expected {
            return Err(ClientError::Invalid(format!(
                "{} changed size while it was being stored ({} bytes read, {expected} expected); nothing was committed, retry",
                shown.display(),
                manifest.size,
            )));
        }
        Ok(None)
    })
    .await
    // The stream's only I/O is reading the file: name the file, not the object.
    .map_err(|e| match e {
        ClientError::Io { source, .. } => ClientError::Io { path: path.to_owned(), source },
        e => e,
    })
}

/// How a put stores and commits an object.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// Redundancy of new packs.
    pub redundancy: Redundancy,
    /// Where shards may go.
    pub policy: scatter_proto::api::Policy,
    /// Object lock and expiry asked for.
    pub retention: scatter_proto::api::Retention,
    /// Remove the object's older versions in the same commit (an overwrite).
    pub replace: bool,
    /// Commit only if the name has no version yet (the coordinator checks it atomically).
    pub exclusive: bool,
    /// Commit only if the name's latest version carries the sealed attributes of this tag
    /// ([`Committed::tag`]; the coordinator checks it atomically): a conditional overwrite.
    pub if_attributes: Option<AttributesTag>,
}

/// Stores what `reader` yields under `name`: chunked and hashed on a blocking thread, so
/// memory stays flat whatever its length. `expected` (if known) sizes the progress bar and the
/// chunker's buffer.
/// Once every pack is stored, `attributes` sees the manifest and may refuse the commit
/// (an upload whose checksum does not match) or give plaintext attributes to seal with
/// the version; only then is the object committed.
#[allow(clippy::too_many_arguments)]
pub async fn put_stream<R, F>(
    coord: &Coordinator,
    keys: &WriteKeys,
    reader: R,
    name: &str,
    opts: &PutOptions,
    expected: Option<u64>,
    progress: &dyn Progress,
    attributes: F,
) -> Result<PutReport, ClientError>
where
    R: std::io::Read + Send + 'static,
    F: FnOnce(&Manifest) -> Result<Option<Vec<u8>>, ClientError>,
{
    let started = Instant::now();
    scatter_core::erasure::check_redundancy(opts.redundancy.k, opts.redundancy.m)
        .map_err(|e| ClientError::Invalid(e.to_string()))?;
    progress.start(expected.unwrap_or(0));

    let (session, mut uploader) = open_upload(coord, keys, opts).await?;

    // Read, chunk and hash on a thread of its own.
    // One batch read ahead: the uploader holds another while its dedup lookup runs.
    let (chunk_tx, mut chunk_rx) = mpsc::channel::<Result<Vec<(ChunkId, Vec<u8>)>, ClientError>>(1);
    let dedup = keys.dedup_key();
    let shown = name.to_owned();
    let reader = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(BATCH_CHUNKS);
        let mut bytes = 0;
        let mut started = std::time::Instant::now();
        for chunk in scatter_core::chunker::chunks_sized(reader, expected) {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = chunk_tx.blocking_send(Err(ClientError::Io { path: shown.into(), source: e.0 }));
                    return;
                }
            };
            bytes += chunk.data.len();
            batch.push((dedup.chunk_id(&chunk.data), chunk.data));
            stats::add(Stage::ReadChunk, started.elapsed(), batch.last().map_or(0, |(_, d)| d.len() as u64));
            if batch.len() == BATCH_CHUNKS || bytes >= BATCH_BYTES {
                bytes = 0;
                if chunk_tx.blocking_send(Ok(std::mem::take(&mut batch))).is_err() {
                    return;
                }
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
    let attributes = attributes(&manifest)?;
    let chunk_count = manifest.chunks.len();
    let size = manifest.size;
    let (committed, chunk_ids) = commit_in(coord, keys, &session, name, manifest, attributes.as_deref(), opts).await?;
    session.close_committed().await;
    let deduplicated = stats.new_chunks < chunk_ids.len();
    let codes = if deduplicated { pack_codes(coord, chunk_ids).await } else { Vec::new() };
    Ok(PutReport {
        codes,
        version: committed.version,
        tag: committed.tag,
        size,
        chunks: chunk_count,
        new_chunks: stats.new_chunks,
        packs: stats.packs,
        bytes_uploaded: stats.bytes_uploaded,
        replaced_shards: stats.replaced_shards,
        placements: stats.placements,
        elapsed: started.elapsed(),
    })
}

/// A write session and an uploader storing under it, as `opts` asks.
pub(crate) async fn open_upload(
    coord: &Coordinator,
    keys: &WriteKeys,
    opts: &PutOptions,
) -> Result<(Session, Uploader), ClientError> {
    let session = Session::open(coord, keys).await?;
    let uploader = Uploader::new(
        coord,
        &coord.hosts()?,
        session.id,
        session.key.clone(),
        opts.redundancy,
        opts.policy.clone(),
        false,
    )?;
    Ok((session, uploader))
}

/// Commits `manifest`, whose chunks this user stored before (another object's, parts of a
/// multipart upload), as the next version of `name`, without moving any data.
pub async fn commit_manifest(
    coord: &Coordinator,
    keys: &WriteKeys,
    name: &str,
    manifest: Manifest,
    attributes: Option<&[u8]>,
    opts: &PutOptions,
) -> Result<Committed, ClientError> {
    let session = Session::open(coord, keys).await?;
    let (committed, _) = commit_in(coord, keys, &session, name, manifest, attributes, opts).await?;
    session.close_committed().await;
    Ok(committed)
}

/// Seals `manifest` (and `attributes`) and commits them in `session`. Returns the version
/// created and the distinct chunks it references.
async fn commit_in(
    coord: &Coordinator,
    keys: &WriteKeys,
    session: &Session,
    name: &str,
    manifest: Manifest,
    attributes: Option<&[u8]>,
    opts: &PutOptions,
) -> Result<(Committed, Vec<ChunkId>), ClientError> {
    let (request, tag) = commit_request(keys, session, name, &manifest, attributes, opts);
    let chunk_ids = request.chunks.clone();
    Ok((Committed { version: coord.commit_object(&request).await?, tag }, chunk_ids))
}

/// The commit of `manifest` (and `attributes`) as the next version of `name`, sealed under
/// `session`'s key, and the tag of the sealed attributes.
pub(crate) fn commit_request(
    keys: &WriteKeys,
    session: &Session,
    name: &str,
    manifest: &Manifest,
    attributes: Option<&[u8]>,
    opts: &PutOptions,
) -> (CommitObjectRequest, Option<AttributesTag>) {
    let chunk_ids: Vec<ChunkId> = {
        let mut s = std::collections::HashSet::new();
        manifest.chunks.iter().map(|(id, _)| *id).filter(|id| s.insert(*id)).collect()
    };
    let sealed_manifest = session.key.seal(MANIFEST_CONTEXT, &manifest.encode());
    let names = keys.name_key();
    let encrypted = names.encrypt(name);
    let sealed = attributes.map(|a| names.seal_attributes(&encrypted, a));
    let tag = sealed.as_deref().map(attributes_tag);
    let request = CommitObjectRequest {
        name: encrypted,
        session: session.id,
        size: manifest.size,
        manifest: B64.encode(sealed_manifest),
        chunks: chunk_ids,
        retention: opts.retention.clone(),
        meta: sealed.map(|m| B64.encode(m)),
        replace: opts.replace,
        exclusive: opts.exclusive,
        if_attributes: opts.if_attributes.map(hex::encode),
    };
    (request, tag)
}

/// The codes of the packs holding `chunks`, with how many packs have each, most used first;
/// empty if they cannot be located.
async fn pack_codes(coord: &Coordinator, chunks: Vec<ChunkId>) -> Vec<((u8, u8), usize)> {
    let mut packs = std::collections::HashMap::new();
    for batch in chunks.chunks(4096) {
        match coord.indexed(batch.to_vec()).await {
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
