//! Choosing hosts for the shards of a pack.
//!
//! Rules, in order:
//! 1. every shard of a pack goes to a distinct host, and only hosts with room are eligible;
//! 2. shards are spread over zones: no zone gets more than ⌈(k+m) / zones⌉ of a pack's shards
//!    while other zones still have eligible hosts (shards a pack already has count too, for
//!    repair). With 4+2 over three zones that is two per zone, so losing any one zone loses
//!    at most m = 2 shards and the pack survives. In general a pack survives the loss of a
//!    zone when ⌈(k+m) / zones⌉ ≤ m; with fewer zones than that needs, the spread is as even
//!    as the hosts allow;
//! 3. among the hosts the spread allows, hosts are drawn without replacement with probability
//!    proportional to their free space (Efraimidis–Spirakis weighted sampling), so hosts of
//!    very different sizes fill in proportion and a nearly full host is rarely chosen.

use std::collections::HashMap;

use rand::Rng;
use scatter_core::HostId;

/// A host that could take a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The host.
    pub host: HostId,
    /// Bytes it can still take.
    pub free: u64,
    /// Its failure domain.
    pub zone: String,
}

/// Not enough eligible hosts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{needed} distinct hosts are needed but only {available} can take a shard")]
pub struct NotEnoughHosts {
    /// Hosts needed.
    pub needed: usize,
    /// Hosts eligible.
    pub available: usize,
}

/// Picks `n` distinct hosts with at least `shard_size` free, spread over zones, weighted by
/// free space. `placed` lists the zones of shards the pack already has (repair).
pub fn choose(
    candidates: &[Candidate],
    n: usize,
    shard_size: u64,
    placed: &[&str],
    rng: &mut impl Rng,
) -> Result<Vec<HostId>, NotEnoughHosts> {
    let mut keyed: Vec<(f64, &Candidate)> = candidates
        .iter()
        .filter(|c| c.free >= shard_size.max(1))
        .map(|c| {
            let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
            (u.powf(1.0 / c.free as f64), c)
        })
        .collect();
    if keyed.len() < n {
        return Err(NotEnoughHosts { needed: n, available: keyed.len() });
    }
    keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut per_zone: HashMap<&str, usize> = HashMap::new();
    for z in placed {
        *per_zone.entry(z).or_default() += 1;
    }
    for (_, c) in &keyed {
        per_zone.entry(c.zone.as_str()).or_default();
    }
    let cap = (n + placed.len()).div_ceil(per_zone.len().max(1));
    let mut chosen: Vec<&Candidate> = Vec::with_capacity(n);
    // First pass honours the per-zone cap; a second fills up from any zone if the cap left
    // shards without a host (too few zones or hosts).
    for capped in [true, false] {
        for (_, c) in &keyed {
            if chosen.len() == n {
                break;
            }
            let count = per_zone.get(c.zone.as_str()).copied().unwrap_or(0);
            if chosen.iter().any(|x| x.host == c.host) || (capped && count >= cap) {
                continue;
            }
            *per_zone.entry(c.zone.as_str()).or_default() += 1;
            chosen.push(c);
        }
    }
    Ok(chosen.into_iter().map(|c| c.host).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn c(id: u64, free: u64) -> Candidate {
        Candidate { host: HostId(id), free, zone: format!("z{}", id % 3) }
    }

    #[test]
    fn shards_spread_over_zones_so_a_zone_loss_is_survived() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        // Nine hosts in three zones, zone z0 much bigger: still at most two shards per zone.
        let cands: Vec<_> = (0..9).map(|i| c(i, if i % 3 == 0 { 100_000 } else { 1000 })).collect();
        for _ in 0..200 {
            let got = choose(&cands, 6, 10, &[], &mut rng).expect("enough");
            for z in 0..3 {
                let n = got.iter().filter(|h| h.0 % 3 == z).count();
                assert_eq!(n, 2, "zone z{z} got {n} of 6 shards");
            }
        }
        // Repair: a pack with two shards in z0 and one in z1 gets its three missing ones
        // outside z0.
        let got = choose(&cands, 3, 10, &["z0", "z0", "z1"], &mut rng).expect("enough");
        assert!(got.iter().all(|h| h.0 % 3 != 0), "{got:?}");
        // One zone only: the cap gives way instead of failing.
        let one: Vec<_> = (0..6).map(|i| Candidate { host: HostId(i), free: 100, zone: "a".into() }).collect();
        assert_eq!(choose(&one, 6, 10, &[], &mut rng).expect("enough").len(), 6);
    }

    #[test]
    fn hosts_are_distinct_and_have_room() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let cands: Vec<_> = (0..8).map(|i| c(i, if i == 3 { 10 } else { 1000 })).collect();
        for _ in 0..200 {
            let mut got = choose(&cands, 6, 100, &[], &mut rng).expect("enough hosts");
            assert!(!got.contains(&HostId(3)), "a host without room was chosen");
            got.sort();
            got.dedup();
            assert_eq!(got.len(), 6);
        }
    }

    #[test]
    fn too_few_hosts_says_how_many() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let cands = [c(1, 1000), c(2, 1000), c(3, 5)];
        assert_eq!(choose(&cands, 6, 100, &[], &mut rng), Err(NotEnoughHosts { needed: 6, available: 2 }));
    }

    #[test]
    fn bigger_hosts_are_chosen_more_often() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let cands = [c(1, 10_000), c(2, 1_000), c(3, 1_000), c(4, 1_000)];
        let mut big = 0;
        for _ in 0..2000 {
            if choose(&cands, 1, 1, &[], &mut rng).expect("enough")[0] == HostId(1) {
                big += 1;
            }
        }
        // 10/13 of the weight: expect ~1540 of 2000.
        assert!((1350..1700).contains(&big), "big host chosen {big} times");
    }
}
