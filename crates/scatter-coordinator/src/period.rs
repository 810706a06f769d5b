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

use crate::store::{Fence, HostRow, Standing, StoreError};
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

/// What a host's offered period calls for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Its period ends within `lead` seconds: drain it.
    Drain {
        /// The lead, in seconds (see [`lead_secs`]).
        lead: u64,
    },
    /// Its period is over: retire it, whatever it holds.
    Retire,
}

/// What `h`'s period calls for at `now`, if anything: an active host is drained once its
/// period ends within its lead; an active or draining host is retired once it has ended.
/// Other states (retired, disabled, disqualified) are left as they are.
pub fn step(h: &HostRow, now: u64, checker: Duration) -> Option<Step> {
    let until = h.terms.until?;
    if now >= until {
        return matches!(h.state, Standing::Active | Standing::Draining).then_some(Step::Retire);
    }
    if h.state != Standing::Active {
        return None;
    }
    let per_pass = crate::repair::PACKS_PER_PASS as u64;
    let lead = lead_secs(h.catalog_used, h.shards, h.record.measured_bandwidth, h.terms.bandwidth, checker, per_pass);
    (now.saturating_add(lead) >= until).then_some(Step::Drain { lead })
}

/// Drains hosts whose period ends within their lead and retires those whose period is
/// over. Returns whether a host's state changed.
pub(crate) async fn pass(shared: &Arc<Shared>, hosts: &[HostRow], fence: &Fence) -> Result<bool, StoreError> {
    let now = now();
    let mut changed = false;
    for h in hosts {
        let (id, until) = (h.id, h.terms.until.unwrap_or(0));
        let Some(step) = step(h, now, shared.checker_interval) else { continue };
        let (from, to): (&'static [Standing], _) = match step {
            Step::Retire => (&[Standing::Active, Standing::Draining], Standing::Retired),
            Step::Drain { .. } => (&[Standing::Active], Standing::Draining),
        };
        let fence = fence.clone();
        if !shared.catalog(move |s| s.change_host_state(id, from, to, Some(&fence), now)).await? {
            continue;
        }
        changed = true;
        let (action, detail) = match step {
            Step::Retire => {
                tracing::warn!(host = %id, shards = h.shards, "host's period is over; retired, its shards are rebuilt from the others");
                let detail =
                    format!("{id} retired at the end of its period; {} shard(s) it held count as lost", h.shards);
                ("host.period_ended", detail)
            }
            Step::Drain { lead } => {
                tracing::info!(host = %id, until, lead, bytes = h.catalog_used, "host's period ends soon; draining it");
                let left = until.saturating_sub(now);
                let detail = format!(
                    "{id} draining: its period ends in {left} s, moving {} bytes needs up to {lead} s",
                    h.catalog_used
                );
                ("host.period_ending", detail)
            }
        };
        crate::api::event(shared, crate::api::Who::coordinator(), action, detail).await;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Record, Terms};
    use scatter_core::HostId;

    fn host(state: Standing, until: Option<u64>, bytes: u64, shards: u64) -> HostRow {
        HostRow {
            id: HostId(1),
            address: String::new(),
            zone: String::new(),
            capacity: 1 << 40,
            reported_used: 0,
            free: 0,
            last_seen: 0,
            catalog_used: bytes,
            state,
            shards,
            audits_passed: 0,
            audits_failed: 0,
            receipt_key: None,
            operator: None,
            terms: Terms { until, ..Terms::default() },
            record: Record::default(),
        }
    }

    #[test]
    fn a_host_is_drained_within_its_lead_and_retired_at_its_end() {
        let check = Duration::from_secs(2);
        // 10 MiB at the fallback 1 MiB/s: a lead of 2 × 10 s + 2 × 2 s.
        let h = |state, until| host(state, until, 10 * MIB, 3);
        assert_eq!(step(&h(Standing::Active, None), 1000, check), None, "no period, nothing to do");
        assert_eq!(step(&h(Standing::Active, Some(1025)), 1000, check), None, "25 s left, 24 s needed");
        assert_eq!(step(&h(Standing::Active, Some(1024)), 1000, check), Some(Step::Drain { lead: 24 }));
        assert_eq!(step(&h(Standing::Draining, Some(1010)), 1000, check), None, "already draining");
        for state in [Standing::Active, Standing::Draining] {
            assert_eq!(step(&h(state, Some(1000)), 1000, check), Some(Step::Retire), "{state} at its end");
        }
        for state in [Standing::Retired, Standing::Disabled, Standing::Disqualified] {
            assert_eq!(step(&h(state, Some(900)), 1000, check), None, "{state} stays {state}");
        }
        // A host that measured faster is drained later.
        let mut fast = h(Standing::Active, Some(1010));
        fast.record.measured_bandwidth = 100 * MIB;
        assert_eq!(step(&fast, 1000, check), None, "lead 2 × 2 s + 2 × 2 s, 10 s left");
    }

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
