//! Hosts that offer a defined period (`scatter host --until`).
//!
//! Once per repair pass: a host whose period ends within its *lead* is set `draining`, so
//! the repairer rebuilds its shards elsewhere while it still serves them and retires it once
//! it holds nothing; a host whose period has ended is `retired` whatever it holds (the end is
//! hard: its shards count as lost and are rebuilt from the others). States only move
//! forward here: a host that moves its `until` later after a drain was decided stays
//! draining. Placement already gives no new data to a host whose period ends within the
//! coordinator's `--period-margin`.

use std::sync::Arc;
use std::time::Duration;

use crate::store::{HostRow, StoreError};
use crate::{now, Shared};

/// Read speed assumed for a host that was never measured and declared none: slow on
/// purpose, so such a host is drained early rather than late.
pub const FALLBACK_BANDWIDTH: u64 = 1 << 20;

/// How long before its period ends a host's drain must start, in seconds: twice the time
/// its bytes take at its bandwidth (measured, else declared, else [`FALLBACK_BANDWIDTH`]),
/// or twice the repair passes its shards take at `per_pass` packs each if that is longer,
/// plus two checker intervals (the drain starts at the next pass, the retirement takes one
/// more).
pub fn lead_secs(bytes: u64, shards: u64, measured: u64, declared: u64, checker: Duration, per_pass: u64) -> u64 {
    let bandwidth = [measured, declared].into_iter().find(|b| *b > 0).unwrap_or(FALLBACK_BANDWIDTH);
    let checker = checker.as_secs().max(1);
    let moving = bytes.div_ceil(bandwidth);
    let passes = shards.div_ceil(per_pass.max(1)).saturating_mul(checker);
    moving.max(passes).saturating_mul(2).saturating_add(checker.saturating_mul(2))
}

/// Drains hosts whose period ends within their lead and retires those whose period is
/// over. Returns whether a host's state changed.
pub(crate) async fn pass(shared: &Arc<Shared>, hosts: &[HostRow]) -> Result<bool, StoreError> {
    let now = now();
    let mut changed = false;
    for h in hosts {
        let Some(until) = h.terms.until else { continue };
        let id = h.id;
        if now >= until {
            if !matches!(h.state.as_str(), "active" | "draining") {
                continue;
            }
            if blocking(shared, move |s| s.change_host_state(id, &["active", "draining"], "retired")).await? {
                changed = true;
                tracing::warn!(host = %id, shards = h.shards, "host's period is over; retired, its shards are rebuilt from the others");
                let detail =
                    format!("{id} retired at the end of its period; {} shard(s) it held count as lost", h.shards);
                crate::api::event(shared, "coordinator".into(), "host.period_ended", detail).await;
            }
            continue;
        }
        if h.state != "active" {
            continue;
        }
        let lead = lead_secs(
            h.catalog_used,
            h.shards,
            h.record.measured_bandwidth,
            h.terms.bandwidth,
            shared.checker_interval,
            crate::repair::PACKS_PER_PASS as u64,
        );
        if now.saturating_add(lead) < until {
            continue;
        }
        if blocking(shared, move |s| s.change_host_state(id, &["active"], "draining")).await? {
            changed = true;
            tracing::info!(host = %id, until, lead, bytes = h.catalog_used, "host's period ends soon; draining it");
            let detail = format!(
                "{id} draining: its period ends in {} s, moving {} bytes needs up to {lead} s",
                until - now,
                h.catalog_used
            );
            crate::api::event(shared, "coordinator".into(), "host.period_ending", detail).await;
        }
    }
    Ok(changed)
}

async fn blocking<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&crate::store::Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let sh = shared.clone();
    tokio::task::spawn_blocking(move || f(&sh.store)).await.map_err(|e| StoreError::Task(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const CHECK: Duration = Duration::from_secs(30);

    #[test]
    fn the_lead_follows_the_best_known_bandwidth() {
        let check = Duration::from_secs(1);
        // 1 GiB measured at 10 MiB/s: 2 × 103 s + 2 × 1 s.
        assert_eq!(lead_secs(1 << 30, 10, 10 * MIB, 100 * MIB, check, 16), 2 * 103 + 2);
        // Never measured: the declared bandwidth.
        assert_eq!(lead_secs(1 << 30, 10, 0, 100 * MIB, check, 16), 2 * 11 + 2);
        // Neither: 1 MiB/s.
        assert_eq!(lead_secs(1 << 30, 10, 0, 0, check, 16), 2 * 1024 + 2);
        // Nothing held: the checker intervals alone.
        assert_eq!(lead_secs(0, 0, 0, 0, CHECK, 16), 60);
    }

    #[test]
    fn many_small_shards_take_as_many_repair_passes() {
        // 1600 shards at 16 packs a pass: 100 passes of 30 s, slower than the bytes.
        assert_eq!(lead_secs(100 * MIB, 1600, 0, 100 * MIB, CHECK, 16), 2 * 3000 + 60);
        // A zero interval or pass size does not make the lead vanish or divide by zero.
        assert_eq!(lead_secs(MIB, 1, 0, MIB, Duration::ZERO, 0), 2 + 2);
        assert_eq!(lead_secs(u64::MAX, u64::MAX, 0, 0, CHECK, 16), u64::MAX);
    }
}
