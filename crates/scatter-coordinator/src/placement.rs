//! Choosing hosts for the shards of a pack.
//!
//! Rule: every shard of a pack goes to a distinct host; only hosts with room for a shard are
//! eligible; among those, hosts are drawn without replacement with probability proportional
//! to their free space (Efraimidis–Spirakis weighted sampling), so hosts of very different
//! sizes fill in proportion and a nearly full host is rarely chosen.

use rand::Rng;
use scatter_core::HostId;

/// A host that could take a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The host.
    pub host: HostId,
    /// Bytes it can still take.
    pub free: u64,
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

/// Picks `n` distinct hosts with at least `shard_size` free, weighted by free space.
pub fn choose(
    candidates: &[Candidate],
    n: usize,
    shard_size: u64,
    rng: &mut impl Rng,
) -> Result<Vec<HostId>, NotEnoughHosts> {
    let mut keyed: Vec<(f64, HostId)> = candidates
        .iter()
        .filter(|c| c.free >= shard_size.max(1))
        .map(|c| {
            let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
            (u.powf(1.0 / c.free as f64), c.host)
        })
        .collect();
    if keyed.len() < n {
        return Err(NotEnoughHosts { needed: n, available: keyed.len() });
    }
    keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
    Ok(keyed.into_iter().take(n).map(|(_, h)| h).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn c(id: u64, free: u64) -> Candidate {
        Candidate { host: HostId(id), free }
    }

    #[test]
    fn hosts_are_distinct_and_have_room() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let cands: Vec<_> = (0..8).map(|i| c(i, if i == 3 { 10 } else { 1000 })).collect();
        for _ in 0..200 {
            let mut got = choose(&cands, 6, 100, &mut rng).expect("enough hosts");
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
        assert_eq!(choose(&cands, 6, 100, &mut rng), Err(NotEnoughHosts { needed: 6, available: 2 }));
    }

    #[test]
    fn bigger_hosts_are_chosen_more_often() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let cands = [c(1, 10_000), c(2, 1_000), c(3, 1_000), c(4, 1_000)];
        let mut big = 0;
        for _ in 0..2000 {
            if choose(&cands, 1, 1, &mut rng).expect("enough")[0] == HostId(1) {
                big += 1;
            }
        }
        // 10/13 of the weight: expect ~1540 of 2000.
        assert!((1350..1700).contains(&big), "big host chosen {big} times");
    }
}
