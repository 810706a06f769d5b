//! The grid's durability rule, and what it leaves of the grid's capacity.
//!
//! **The rule.** Every pack survives the loss of any `f` failure domains. A domain is one
//! host, or every host of one operator (see `store::HostRow::domain`). A k+m pack survives
//! losing any m of its shards, so the rule holds exactly when no domain holds more than
//! ⌊m / f⌋ of the pack's shards: f domains then hold at most m. With the default 4+2 that is
//! 2 shards per domain at f = 1 (a grid of 3, 4 or 5 hosts stores at 1.5× and survives any
//! one host) and 1 at f = 2. A domain may hold several shards of a pack: each is stored,
//! receipted, audited and repaired on its own, so the unit of placement stays the shard.
//!
//! **The zone rule** is enforced with it: a pack is spread over zones as evenly as the hosts
//! that can take it allow. The limit per zone is the smallest c such that zones capped at c
//! (and each at what its domains may hold) still take the whole pack: ⌈(k+m) / zones⌉ when
//! zones are balanced, so with 4+2 over three zones a whole zone can go; more when a zone
//! has too few hosts, so a grid with a thin zone still writes and repairs (every pack keeps
//! its f) instead of leaving packs degraded to honour a spread it cannot have.
//!
//! **f** is the admin's (`scatter coordinator --tolerate F`) or follows the grid's size: 0
//! with one domain, 1 up to 5 (two domains need 2× to survive one loss: 2+2), 2 from 6.
//! Only domains that can hold a real share count (see [`counted_domains`]): a host joined
//! with no room must not raise f past what the others can meet.
//!
//! **Capacity.** With expansion e = (k+m)/k and a share s = ⌊m/f⌋/(k+m), a domain holds at
//! most s of any pack, so with R more raw bytes stored a domain takes at most
//! min(its free bytes, s·R). The largest R with Σ min(freeᵢ, s·R) ≥ R, divided by e, is the
//! most user data the grid can still take; zones cap the same way with their share.

use std::collections::BTreeMap;

/// Largest code the default picks (k = 2f, m = f beyond f = 2).
const MAX_DEFAULT_TOLERANCE: u8 = 16;

/// f for a grid of `domains` failure domains when the admin did not choose.
pub fn auto_tolerance(domains: usize) -> u8 {
    match domains {
        0..=1 => 0,
        2..=5 => 1,
        _ => 2,
    }
}

/// How many failure domains count toward the automatic f, given what each can hold for the
/// grid (its stake: what it holds plus its free room, up to what it offers). A domain
/// counts when its stake is at least a quarter of the lower median's: one that offers
/// nothing, or a sliver of what the others do, cannot take its share of a tighter rule, and
/// letting it tighten the rule would stop every placement (a 4+2 pack at f = 2 needs six
/// domains with room). The median is the grid's own, so one party cannot move it far.
pub fn counted_domains(stakes: &mut [u64]) -> usize {
    stakes.sort_unstable();
    let Some(&median) = stakes.get(stakes.len().saturating_sub(1) / 2) else { return 0 };
    stakes.iter().filter(|&&s| s > 0 && s >= median / 4).count()
}

/// The code new data uses by default under tolerance `f` on `domains` failure domains: 4+2
/// (1.5×) wherever it fits, 2+2 (2×, a mirror's cost) on two domains, and beyond f = 2,
/// 2f+f, which keeps 1.5× with one shard per domain.
pub fn default_code(f: u8, domains: usize) -> (u8, u8) {
    match f {
        1 if domains == 2 => (2, 2),
        0..=2 => (4, 2),
        f => (2 * f.min(MAX_DEFAULT_TOLERANCE), f.min(MAX_DEFAULT_TOLERANCE)),
    }
}

/// A pack's code does not meet the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the grid keeps every pack safe from the loss of any {f} hosts (failure domains), and a {k}+{m} pack survives only {m} lost shards; use --parity {f} or more"
)]
pub struct CodeTooWeak {
    /// Data shards.
    pub k: u8,
    /// Parity shards.
    pub m: u8,
    /// The grid's tolerance.
    pub f: u8,
}

/// How many shards of a k+m pack one domain may hold under tolerance `f`.
pub fn per_domain(k: u8, m: u8, f: u8) -> Result<usize, CodeTooWeak> {
    if f == 0 {
        return Ok(k as usize + m as usize);
    }
    match (m / f) as usize {
        0 => Err(CodeTooWeak { k, m, f }),
        n => Ok(n),
    }
}

/// How many shards of an `n`-shard pack one zone may hold: the smallest c with which the
/// zones still take all `n`, when zone z has `domains[z]` failure domains that may take the
/// pack, each holding at most `per_domain`. With balanced zones that is ⌈n / zones⌉.
pub fn per_zone(n: usize, per_domain: usize, domains: &[usize]) -> usize {
    (n.div_ceil(domains.len().max(1))..=n)
        .find(|&c| domains.iter().map(|&d| c.min(d * per_domain)).sum::<usize>() >= n)
        .unwrap_or(n)
}

/// How many domain losses a pack survives: `held` is how many healthy shards each domain
/// holds, `k` how many are needed. Losing the biggest holders first is the worst case.
/// `None` when the pack is already unreadable.
pub fn tolerance(held: &[usize], k: usize) -> Option<u32> {
    let healthy: usize = held.iter().sum();
    let mut spare = healthy.checked_sub(k)?;
    let mut sorted = held.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let mut lost = 0;
    for n in sorted {
        if n > spare {
            break;
        }
        spare -= n;
        lost += 1;
    }
    Some(lost)
}

/// Room on one host, for [`capacity`].
#[derive(Debug, Clone)]
pub struct Room<D, Z> {
    /// Its failure domain.
    pub domain: D,
    /// Its zone.
    pub zone: Z,
    /// Bytes it can still take.
    pub free: u64,
}

/// The most raw bytes (with redundancy) the hosts can still take when each domain holds at
/// most `domain_share` and each zone at most `zone_share` of every pack (shares as
/// numerator/denominator pairs). Dividing by the expansion gives user data.
pub fn capacity<D: Ord + Clone, Z: Ord + Clone>(
    hosts: &[Room<D, Z>],
    domain_share: (u64, u64),
    zone_share: (u64, u64),
) -> u64 {
    // Free bytes per zone, per domain within it.
    let mut zones: BTreeMap<Z, BTreeMap<D, u64>> = BTreeMap::new();
    for h in hosts {
        let free = zones.entry(h.zone.clone()).or_default().entry(h.domain.clone()).or_default();
        *free = free.saturating_add(h.free);
    }
    // Exact rational arithmetic, everything scaled by both denominators: rounding a share
    // down would make feasibility jump back and forth at byte granularity.
    let ((dn, dd), (zn, zd)) = (domain_share, zone_share);
    let (dd, zd) = (dd.max(1) as u128, zd.max(1) as u128);
    let feasible = |r: u64| -> bool {
        let r = r as u128;
        let usable: u128 = zones
            .values()
            .map(|domains| {
                let in_zone: u128 = domains.values().map(|&free| (free as u128 * dd).min(r * dn as u128)).sum();
                (in_zone * zd).min(r * zn as u128 * dd)
            })
            .sum();
        usable >= r * dd * zd
    };
    // usable(r) / r never grows with r, so the feasible r form a range from 0.
    // Hosts declare what they offer: sums saturate rather than wrap.
    let (mut lo, mut hi) = (0u64, hosts.iter().fold(0u64, |sum, h| sum.saturating_add(h.free)));
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if feasible(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn rooms(sizes: &[u64]) -> Vec<Room<usize, &'static str>> {
        sizes.iter().enumerate().map(|(i, &s)| Room { domain: i, zone: "z", free: s * MIB }).collect()
    }

    #[test]
    fn domains_far_smaller_than_the_grids_do_not_raise_f() {
        // Five hosts and one with no room, or a sliver: the rule is the five's.
        assert_eq!(counted_domains(&mut [8, 8, 8, 8, 8, 0]), 5);
        assert_eq!(counted_domains(&mut [8 * MIB, 8 * MIB, 8 * MIB, 8 * MIB, 8 * MIB, 1]), 5);
        assert_eq!(counted_domains(&mut [MIB, 4 * MIB, 4 * MIB, 4 * MIB, 4 * MIB, 4 * MIB]), 6);
        assert_eq!(counted_domains(&mut [MIB - 1, 4 * MIB, 4 * MIB, 4 * MIB, 4 * MIB, 4 * MIB]), 5);
        // Unequal but real hosts all count, and a huge one does not push the others out.
        assert_eq!(counted_domains(&mut [32, 32, 64, 64, 128, 128, 256]), 7);
        assert_eq!(counted_domains(&mut [10, 10, 10, 10, 10, 1 << 40]), 6);
        // Two domains: a smaller real one still makes a pair; one with nothing does not.
        assert_eq!(counted_domains(&mut [100, 1000]), 2);
        assert_eq!(counted_domains(&mut [0, 1000]), 1);
        assert_eq!(counted_domains(&mut []), 0);
        assert_eq!(counted_domains(&mut [0, 0]), 0);
    }

    #[test]
    fn the_issue_example_takes_256_mib_of_user_data() {
        // e = 1.5, f = 2, 4+2: one shard of six per host.
        let raw = capacity(&rooms(&[32, 32, 64, 64, 128, 128, 256]), (1, 6), (1, 1));
        assert_eq!(raw / 3 * 2, 256 * MIB);
        // Three equal hosts at f = 1 (two shards of six each): all of it.
        assert_eq!(capacity(&rooms(&[100, 100, 100]), (2, 6), (1, 1)), 300 * MIB);
        // One big host cannot take more than its share: 10+10+10 and a 1000 take 45 raw.
        assert_eq!(capacity(&rooms(&[10, 10, 10, 1000]), (2, 6), (1, 1)), 45 * MIB);
    }

    #[test]
    fn zones_and_operators_cap_like_hosts() {
        // Six hosts of 100, all run by one operator (one domain): at f = 2 it may hold one
        // shard of six of a pack, so nothing can be stored at all without another domain.
        let one_op: Vec<_> = (0..6).map(|_| Room { domain: 0, zone: "z", free: 100 }).collect();
        assert_eq!(capacity(&one_op, (1, 6), (1, 1)), 0);
        // Two zones of three hosts each, ⌈6/2⌉ = 3 per zone: the small zone bounds it.
        let mut two: Vec<_> = (0..3).map(|i| Room { domain: i, zone: "a", free: 10 }).collect();
        two.extend((3..6).map(|i| Room { domain: i, zone: "b", free: 1000 }));
        assert_eq!(capacity(&two, (1, 6), (3, 6)), 60);
    }

    #[test]
    fn hosts_claiming_exabytes_do_not_overflow_the_capacity() {
        // A host offers what it likes and the catalog keeps up to i64::MAX: three such hosts
        // (or three of one operator, one domain) must not wrap the sums, which panicked in
        // debug builds and reported a nearly full grid in release ones.
        let big = i64::MAX as u64;
        let three: Vec<_> = (0..3).map(|i| Room { domain: i, zone: "z", free: big }).collect();
        assert_eq!(capacity(&three, (2, 6), (1, 1)), u64::MAX, "saturates");
        let mut one_op: Vec<_> = (0..3).map(|_| Room { domain: 0, zone: "z", free: big }).collect();
        one_op.extend((1..3).map(|i| Room { domain: i, zone: "z", free: 100 }));
        assert_eq!(capacity(&one_op, (2, 6), (1, 1)), 300, "the small domains bound it");
    }

    #[test]
    fn tolerance_counts_the_biggest_holders_first() {
        assert_eq!(tolerance(&[2, 2, 2], 4), Some(1));
        assert_eq!(tolerance(&[1, 1, 1, 1, 1, 1], 4), Some(2));
        assert_eq!(tolerance(&[3, 1, 1, 1], 4), Some(0), "losing the big one is too much");
        assert_eq!(tolerance(&[3, 3], 4), Some(0));
        assert_eq!(tolerance(&[1, 1, 1], 4), None);
        assert_eq!(tolerance(&[4], 4), Some(0));
    }

    #[test]
    fn caps_follow_the_code_and_f() {
        assert_eq!(per_domain(4, 2, 1), Ok(2));
        assert_eq!(per_domain(4, 2, 2), Ok(1));
        assert_eq!(per_domain(4, 2, 0), Ok(6));
        assert_eq!(per_domain(4, 2, 3), Err(CodeTooWeak { k: 4, m: 2, f: 3 }));
        assert_eq!(per_domain(6, 3, 3), Ok(1));
        assert_eq!(per_zone(6, 1, &[3, 3, 2]), 2, "balanced enough: a zone can go");
        assert_eq!(per_zone(6, 1, &[3, 3, 2, 1]), 2);
        assert_eq!(per_zone(6, 1, &[3, 3, 1]), 3, "a thin zone takes one, the others three");
        assert_eq!(per_zone(6, 2, &[1, 1, 1]), 2);
        assert_eq!(per_zone(6, 1, &[6]), 6);
        assert_eq!(per_zone(6, 1, &[2, 2]), 6, "too few domains: the domain rule refuses");
        assert_eq!((auto_tolerance(1), auto_tolerance(2), auto_tolerance(5), auto_tolerance(6)), (0, 1, 1, 2));
        assert_eq!(default_code(1, 2), (2, 2));
        assert_eq!((default_code(1, 3), default_code(2, 6), default_code(4, 12)), ((4, 2), (4, 2), (8, 4)));
    }
}
