//! Freeing space: the coordinator drops chunks no snapshot or object references and releases
//! packs left empty (hosts then delete their shards); packs still partly used are repacked
//! here — their live chunks fetched, verified, sealed again and stored in new packs whose
//! commit moves the chunks atomically and releases the old packs.
//!
//! Every step is one catalog transaction, so a prune killed at any point leaves every chunk
//! a snapshot needs in exactly one live pack; running it again finishes the job.

use std::time::{Duration, Instant};

use futures::StreamExt;
use scatter_core::keys::UserKeys;
use scatter_proto::api::ErrorCode;
use serde::Serialize;

use crate::coordinator::Coordinator;
use crate::fetch::Fetcher;
use crate::hosts::Hosts;
use crate::session::Session;
use crate::upload::{Redundancy, Uploader};
use crate::ClientError;

/// How long prune waits for running backups before giving up.
const WAIT_FOR_WRITERS: Duration = Duration::from_secs(120);

/// What a prune did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    /// Chunks dropped from the index.
    pub chunks_removed: u64,
    /// Their sealed bytes.
    pub bytes_removed: u64,
    /// Packs released (their shards are deleted from hosts in the background).
    pub packs_released: u64,
    /// Packs repacked.
    pub packs_repacked: u64,
    /// Live bytes moved by repacking.
    pub bytes_repacked: u64,
}

/// Sweeps, then repacks packs with at least `max_unused_percent` unreferenced.
pub async fn prune(
    coord: &Coordinator,
    keys: &UserKeys,
    hosts: &Hosts,
    max_unused_percent: u8,
    redundancy: Redundancy,
) -> Result<PruneReport, ClientError> {
    let started = Instant::now();
    let swept = loop {
        match coord.prune(max_unused_percent).await {
            Err(ClientError::Api { code, message, .. })
                if code == ErrorCode::Busy && started.elapsed() < WAIT_FOR_WRITERS =>
            {
                tracing::info!(reason = %message, "waiting for running writes before pruning");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => break other?,
        }
    };
    let mut report = PruneReport {
        chunks_removed: swept.chunks_removed,
        bytes_removed: swept.bytes_removed,
        packs_released: swept.packs_released,
        ..Default::default()
    };
    if swept.repack.is_empty() {
        return Ok(report);
    }
    if !keys.can_read() {
        return Err(ClientError::Invalid(
            "unreferenced chunks were dropped, but repacking partly used packs needs the private key; run prune where it is".into(),
        ));
    }
    let fetcher = Fetcher::new(coord, hosts, keys);
    let session = Session::open(coord, keys.write_keys()).await?;
    let mut uploader =
        Uploader::new(coord, hosts, session.id, session.key.clone(), redundancy, Default::default(), true)?;
    for candidate in &swept.repack {
        let ids: Vec<_> = candidate.chunks.iter().map(|id| (*id, None)).collect();
        let mut chunks = fetcher.stream(ids.clone());
        let mut plain = Vec::with_capacity(ids.len());
        while let Some(run) = chunks.next().await {
            plain.extend(run?);
        }
        let batch: Vec<_> = ids.into_iter().map(|(id, _)| id).zip(plain).collect();
        report.bytes_repacked += batch.iter().map(|(_, d)| d.len() as u64).sum::<u64>();
        uploader.add(batch).await?;
        report.packs_repacked += 1;
    }
    uploader.finish().await?;
    session.close().await?;
    report.packs_released += report.packs_repacked;
    Ok(report)
}
