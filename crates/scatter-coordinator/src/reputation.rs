//! A host's reputation: one score from what the coordinator measured of it, with its parts.
//!
//! Only measurements count, never what a host says of itself: audits (of shards with
//! receipts), the share of its life it was heard from, its age, and the repairs it caused.
//! Each part is a fraction; the score is their product scaled to 0–100, so a host is only as
//! good as its weakest part and a new host starts at half its age weight.

use scatter_proto::api::ReputationParts;

use crate::store::HostRow;

/// How long a host must have served before its age no longer holds its score back.
pub const FULL_AGE_SECS: u64 = 30 * 24 * 3600;

/// A host's score (0–100) and its parts, at `now`.
pub fn of(h: &HostRow, now: u64) -> ReputationParts {
    // Laplace's rule: a new host with no audits is not judged perfect or hopeless.
    let audits = (h.audits_passed as f64 + 1.0) / ((h.audits_passed + h.audits_failed) as f64 + 2.0);
    let lifetime = now.saturating_sub(h.record.joined);
    let uptime = if lifetime == 0 { 1.0 } else { (h.record.online_secs as f64 / lifetime as f64).min(1.0) };
    let age = (lifetime as f64 / FULL_AGE_SECS as f64).min(1.0);
    // Each shard rebuilt because of it weighs as much as a failed audit, relative to what it
    // holds: losing one shard in a thousand costs little, losing everything costs a lot.
    let repairs = 1.0 - (h.record.repairs_caused as f64 / (h.shards + h.record.repairs_caused).max(1) as f64);
    let score = 100.0 * audits * uptime * (0.5 + 0.5 * age) * repairs;
    ReputationParts {
        score: score.round().clamp(0.0, 100.0) as u8,
        audits: percent(audits),
        uptime: percent(uptime),
        age: percent(age),
        repairs: percent(repairs),
    }
}

fn percent(f: f64) -> u8 {
    (f * 100.0).round().clamp(0.0, 100.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Record, Terms};
    use scatter_core::HostId;

    fn host(passed: u64, failed: u64, joined: u64, online: u64, shards: u64, repairs: u64) -> HostRow {
        HostRow {
            id: HostId(1),
            address: String::new(),
            zone: String::new(),
            capacity: 0,
            reported_used: 0,
            free: 0,
            last_seen: 0,
            catalog_used: 0,
            state: crate::store::Standing::Active,
            shards,
            audits_passed: passed,
            audits_failed: failed,
            receipt_key: None,
            operator: None,
            terms: Terms::default(),
            record: Record { joined, online_secs: online, repairs_caused: repairs, ..Record::default() },
        }
    }

    #[test]
    fn an_old_reliable_host_scores_high_and_each_weakness_lowers_it() {
        let now = 100 * 24 * 3600;
        let good = of(&host(1000, 0, 0, now, 100, 0), now);
        assert!(good.score >= 99, "{good:?}");
        let young = of(&host(1000, 0, now - 3 * 24 * 3600, 3 * 24 * 3600, 100, 0), now);
        assert!((50..60).contains(&young.score), "a 3-day-old host: {young:?}");
        let flaky = of(&host(1000, 0, 0, now / 2, 100, 0), now);
        assert_eq!((flaky.uptime, flaky.score), (50, 50));
        let failing = of(&host(50, 50, 0, now, 100, 0), now);
        assert_eq!(failing.score, 50);
        let lossy = of(&host(1000, 0, 0, now, 50, 50), now);
        assert_eq!((lossy.repairs, lossy.score), (50, 50));
        let new = of(&host(0, 0, now, 0, 0, 0), now);
        assert_eq!((new.audits, new.uptime, new.age, new.score), (50, 100, 0, 25));
    }
}
