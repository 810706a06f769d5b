//! Audits: every checker interval the coordinator asks a few hosts (those audited least
//! first) for a Bao proof of a random 4 KiB range of a random shard, and checks it against the
//! shard id in the catalog. A host that lost or altered the data cannot pass. A failed audit
//! marks the shard lost (repair rebuilds it elsewhere) and counts against the host if the
//! host signed a receipt for it; enough failures disqualify it (see
//! [`crate::store::Store::record_audit`]).
//!
//! A host that keeps its heartbeats but leaves audits unanswered (server errors, timeouts)
//! is not lying in a way a proof shows, but it is not serving its shards either (a failing
//! disk, or a host hiding a loss): [`UNANSWERED_LIMIT`] such audits in a row count as one
//! failed audit. The audits of a pass run at once, so one slow host delays no other.
//!
//! Clients report shards that failed them ([`ReportChecks`]); a report marks nothing by
//! itself. The coordinator reads the shard whole and hashes it, and only a shard its host
//! cannot serve intact is recorded as a failed audit. A reader that lies gains nothing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use scatter_core::{HostId, PackId, ShardId};

use crate::store::HostRow;
use crate::{now, Shared};

/// Hosts audited per pass.
const AUDITS_PER_PASS: usize = 4;
/// Audits a heartbeating host may leave unanswered in a row before one counts as failed: a
/// host overloaded for a moment is not blamed, one that never answers is.
const UNANSWERED_LIMIT: u32 = 3;

/// Audits each host left unanswered in a row, since its last answer.
#[derive(Default)]
pub(crate) struct Unanswered(Mutex<HashMap<HostId, u32>>);

impl Unanswered {
    /// Counts an unanswered audit of `host`; true when it makes [`UNANSWERED_LIMIT`] in a
    /// row (the count starts again).
    fn strike(&self, host: HostId) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(host).or_default();
        *n += 1;
        if *n >= UNANSWERED_LIMIT {
            map.remove(&host);
            return true;
        }
        false
    }

    /// `host` answered an audit.
    fn answered(&self, host: HostId) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&host);
    }
}
/// Bytes proven per audit.
const RANGE: u64 = 4096;
/// The largest proof read from a host: the range, with a Bao tree's hashes for a shard of up
/// to 64 GiB (far more than any proof of [`RANGE`] bytes needs).
const MAX_PROOF: u64 = 64 << 10;

/// Reported shards being checked: at most [`REPORT_CHECKS`] at once, each (host, shard)
/// once at a time; reports beyond that are dropped (the audits and the next read find
/// real damage anyway), so reports cannot make the coordinator read without bound.
pub(crate) struct ReportChecks {
    slots: Arc<tokio::sync::Semaphore>,
    pending: Mutex<HashSet<(HostId, ShardId)>>,
}

/// Reported shards checked at once.
const REPORT_CHECKS: usize = 2;

impl Default for ReportChecks {
    fn default() -> Self {
        Self { slots: Arc::new(tokio::sync::Semaphore::new(REPORT_CHECKS)), pending: Mutex::new(HashSet::new()) }
    }
}

/// Checks, in the background, a shard a client reported bad: shard `index` of `pack` on
/// `host`, `size` bytes. Returns whether a check was started.
pub(crate) fn check_report(
    shared: &Arc<Shared>,
    host: HostId,
    pack: PackId,
    index: u8,
    shard: ShardId,
    size: u64,
) -> bool {
    let checks = &shared.report_checks;
    let Ok(slot) = checks.slots.clone().try_acquire_owned() else { return false };
    if !checks.pending.lock().unwrap_or_else(|p| p.into_inner()).insert((host, shard)) {
        return false;
    }
    let sh = shared.clone();
    tokio::spawn(async move {
        let _slot = slot;
        // Only a failure is recorded: passes on request would let a host and a reader in
        // league pad the host's audit record against the share of failures that disqualifies.
        if check_whole(&sh, host, &shard, size).await == Some(false) {
            tracing::warn!(%host, %shard, "a reported shard failed the coordinator's check; it will be rebuilt");
            match sh.catalog(move |s| s.record_audit(host, &pack, index, false, None, now())).await {
                Ok(true) => disqualified(&sh, host).await,
                Ok(false) => {}
                Err(_) => tracing::warn!(%host, %shard, "could not record the check of a reported shard"),
            }
        }
        sh.report_checks.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&(host, shard));
    });
    true
}

/// Reads a whole shard from its host and hashes it: `Some(true)` intact, `Some(false)` the
/// host lacks it or serves other bytes, `None` the host could not be asked (offline or
/// struggling: heartbeats deal with that).
async fn check_whole(shared: &Arc<Shared>, host: HostId, shard: &ShardId, size: u64) -> Option<bool> {
    let hosts = shared.catalog(|s| s.hosts()).await.ok()?;
    let row: &HostRow = hosts.iter().find(|h| h.id == host)?;
    match crate::shards::read(shared, row, shard, size).await {
        crate::shards::Answer::Ok(_) => Some(true),
        crate::shards::Answer::Wrong(_) => Some(false),
        crate::shards::Answer::Unreachable(_) => None,
    }
}

/// Smallest read that says anything about a host's bandwidth: below it, latency dominates.
const MIN_BANDWIDTH_SAMPLE: u64 = 64 << 10;

/// Folds a whole-shard read of `bytes` from `host` that took `took` into the host's
/// measured bandwidth (reads below [`MIN_BANDWIDTH_SAMPLE`] are ignored). The figure is the
/// coordinator's own measurement, unlike what the host declares; a failure to record it is
/// logged only.
pub(crate) async fn note_bandwidth(shared: &Arc<Shared>, host: HostId, bytes: u64, took: Duration) {
    if bytes < MIN_BANDWIDTH_SAMPLE {
        return;
    }
    let sample = (bytes as f64 / took.as_secs_f64().max(1e-6)) as u64;
    if shared.catalog(move |s| s.record_bandwidth(host, sample)).await.is_err() {
        tracing::debug!(%host, "could not record a bandwidth sample");
    }
}

/// Runs one round of audits.
pub(crate) async fn pass(shared: &Arc<Shared>, fence: &crate::store::Fence) -> Result<(), crate::store::StoreError> {
    let cutoff = now().saturating_sub(shared.offline_after.as_secs());
    let targets = shared.catalog(move |s| s.audit_targets(cutoff, AUDITS_PER_PASS)).await?;
    if targets.is_empty() {
        return Ok(());
    }
    let hosts = shared.catalog(|s| s.hosts()).await?;
    let asked = targets.into_iter().filter_map(|(host, pack, index, shard, size)| {
        let row = hosts.iter().find(|h| h.id == host)?;
        let len = RANGE.min(size);
        let start = rand::thread_rng().gen_range(0..=size - len);
        Some(async move {
            let answer = crate::shards::proof(shared, row, &shard, size, (start, len), MAX_PROOF).await;
            (host, pack, index, shard, start, len, answer)
        })
    });
    for (host, pack, index, shard, start, len, answer) in futures::future::join_all(asked).await {
        let verdict = match answer {
            crate::shards::Answer::Ok(proof) => {
                shared.unanswered.answered(host);
                scatter_core::audit::verify(&shard, start, len, &proof).map(|_| ()).map_err(|e| e.to_string())
            }
            crate::shards::Answer::Wrong(why) => {
                shared.unanswered.answered(host);
                Err(why)
            }
            // Offline or struggling for now (the targets were heard from lately), or hiding
            // a loss behind errors: only a run of these counts.
            crate::shards::Answer::Unreachable(why) => match shared.unanswered.strike(host) {
                true => Err(format!("left {UNANSWERED_LIMIT} audits in a row unanswered ({why})")),
                false => continue,
            },
        };
        let passed = verdict.is_ok();
        if let Err(why) = &verdict {
            tracing::warn!(%host, %shard, %why, "audit failed; the shard will be rebuilt elsewhere");
        }
        let fence = fence.clone();
        let disqualified =
            shared.catalog(move |s| s.record_audit(host, &pack, index, passed, Some(&fence), now())).await?;
        if disqualified {
            self::disqualified(shared, host).await;
        }
    }
    Ok(())
}

/// Says, in the log and the audit trail, that `host` was just disqualified.
async fn disqualified(shared: &Arc<Shared>, host: HostId) {
    tracing::warn!(%host, "host disqualified after failed audits, for good; its shards are repaired elsewhere");
    let detail = format!("{host}: disqualified after failed audits (for good: it may join again as a new host)");
    crate::api::event(shared, "coordinator".into(), "host.state", detail).await;
}
