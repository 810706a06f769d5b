//! Choosing hosts for the shards of a pack.
//!
//! Rules, in order:
//! 1. only hosts with room for the shard are eligible, and one host never gets two shards
//!    with the same bytes (a host stores a shard once);
//! 2. the durability rule (see [`crate::durability`]): no failure domain holds more than
//!    `per_domain` shards of the pack and no zone more than `per_zone` (see [`limits`]),
//!    counting the shards the pack already has (repair, re-placement). Both are hard limits:
//!    when they cannot be met the placement fails and says which one bound it;
//! 3. among the hosts the rule allows, the cheapest first, then the one with the most room
//!    left (counting what this placement gave it), ties broken at random. Filling by room
//!    left is water-filling: small hosts are used while big ones catch up, so a grid of
//!    unequal hosts fills to the bound the rule allows instead of stalling when its small
//!    hosts are full.

use std::collections::HashMap;

use rand::Rng;
use scatter_core::{ByteSize, HostId, ShardId};

use crate::store::Domain;

/// A host that could take a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The host.
    pub host: HostId,
    /// Bytes it can still take.
    pub free: u64,
    /// Its zone.
    pub zone: String,
    /// Its failure domain.
    pub domain: Domain,
    /// What it asks per GiB-month (millionths).
    pub price: u64,
}

/// The rule's limits for one pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Shards of the pack one failure domain may hold.
    pub per_domain: usize,
    /// Shards of the pack one zone may hold.
    pub per_zone: usize,
}

/// A shard of the pack that is already placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held<'a> {
    /// Its host.
    pub host: HostId,
    /// That host's domain.
    pub domain: Domain,
    /// That host's zone.
    pub zone: &'a str,
}

/// The shards could not all be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{why}")]
pub struct Unplaceable {
    /// Shards asked for.
    pub needed: usize,
    /// Shards that could have been placed.
    pub placed: usize,
    /// Which limit stopped it, in a sentence.
    pub why: String,
    /// Whether it is space: no host that may take a shard has room for one.
    pub full: bool,
    /// Whether some host that may take a shard has too little room for one (named in `why`).
    pub cramped: bool,
}

/// The rule's limits for a pack of `n` shards whose domains may hold `per_domain` each:
/// zones capped at the smallest c with which zones capped at c still take the whole pack
/// from the domains among the hosts with room for a shard and the hosts already holding
/// some (see [`zone_cap`]).
pub fn limits(n: usize, per_domain: usize, candidates: &[Candidate], shard_size: u64, held: &[Held<'_>]) -> Limits {
    let mut pairs: Vec<(&str, Domain, usize)> = candidates
        .iter()
        .filter(|c| c.free >= shard_size.max(1))
        .map(|c| (c.zone.as_str(), c.domain, usize::try_from(c.free / shard_size.max(1)).unwrap_or(usize::MAX)))
        .chain(held.iter().map(|h| (h.zone, h.domain, 1)))
        .collect();
    pairs.sort_unstable();
    pairs.dedup_by(|b, a| {
        let same = (a.0, a.1) == (b.0, b.1);
        if same {
            a.2 = a.2.saturating_add(b.2);
        }
        same
    });
    Limits { per_domain, per_zone: zone_cap(n, per_domain, &pairs) }
}

/// The smallest c such that `n` shards fit when each zone takes at most c and each domain
/// at most `per_domain` in all, a domain's shards going to any zone it has hosts in
/// (`pairs`: the (zone, domain) pairs with a host, each with the shards its hosts there
/// have room for: a zone whose hosts have room for one shard takes one, however balanced
/// the zones look). A domain with hosts in several zones
/// counts once, not once per zone: counted per zone, one operator declaring many zones
/// made the cap so tight that nothing could be placed. Without a c that fits, `n` (the
/// domain rule then refuses). Found by max flow (source → domain → zone → sink), raising c
/// from ⌈n / zones⌉ while the flow falls short; at most `n` augmenting paths in all.
pub fn zone_cap(n: usize, per_domain: usize, pairs: &[(&str, Domain, usize)]) -> usize {
    let mut zones: Vec<&str> = pairs.iter().map(|p| p.0).collect();
    zones.sort_unstable();
    zones.dedup();
    let mut domains: Vec<Domain> = pairs.iter().map(|p| p.1).collect();
    domains.sort_unstable();
    domains.dedup();
    // Nodes: 0 source, 1 sink, then domains, then zones. Edge i's reverse is i ^ 1.
    let (source, sink, d0, z0) = (0, 1, 2, 2 + domains.len());
    let mut to: Vec<usize> = Vec::new();
    let mut cap: Vec<usize> = Vec::new();
    let mut adj: Vec<Vec<usize>> = vec![Vec::new(); z0 + zones.len()];
    let mut edge = |a: usize, b: usize, c: usize, to: &mut Vec<usize>, cap: &mut Vec<usize>| {
        adj[a].push(to.len());
        to.push(b);
        cap.push(c);
        adj[b].push(to.len());
        to.push(a);
        cap.push(0);
    };
    for i in 0..domains.len() {
        edge(source, d0 + i, per_domain, &mut to, &mut cap);
    }
    for (zone, domain, slots) in pairs {
        let (d, z) = (domains.binary_search(domain).unwrap_or(0), zones.binary_search(zone).unwrap_or(0));
        edge(d0 + d, z0 + z, per_domain.min(*slots), &mut to, &mut cap);
    }
    let mut sinks = Vec::with_capacity(zones.len());
    let mut c = n.div_ceil(zones.len().max(1));
    for z in 0..zones.len() {
        sinks.push(to.len());
        edge(z0 + z, sink, c, &mut to, &mut cap);
    }
    let mut flow = 0;
    while flow < n {
        // One augmenting path of one shard, by breadth-first search.
        let mut via: Vec<Option<usize>> = vec![None; adj.len()];
        let mut queue = std::collections::VecDeque::from([source]);
        while let Some(u) = queue.pop_front() {
            for &e in &adj[u] {
                if cap[e] > 0 && to[e] != source && via[to[e]].is_none() {
                    via[to[e]] = Some(e);
                    queue.push_back(to[e]);
                }
            }
        }
        if via[sink].is_none() {
            if c >= n {
                return n;
            }
            c += 1;
            for &e in &sinks {
                cap[e] += 1;
            }
            continue;
        }
        let mut v = sink;
        while let Some(e) = via[v] {
            cap[e] -= 1;
            cap[e ^ 1] += 1;
            v = to[e ^ 1];
        }
        flow += 1;
    }
    c
}

/// Picks a host for each of `shards` (each `shard_size` bytes), by the rules above.
pub fn choose(
    candidates: &[Candidate],
    shards: &[ShardId],
    shard_size: u64,
    held: &[Held<'_>],
    limits: Limits,
    rng: &mut impl Rng,
) -> Result<Vec<HostId>, Unplaceable> {
    let mut per_domain: HashMap<Domain, usize> = HashMap::new();
    let mut per_zone: HashMap<&str, usize> = HashMap::new();
    for h in held {
        *per_domain.entry(h.domain).or_default() += 1;
        *per_zone.entry(h.zone).or_default() += 1;
    }
    // Room left per candidate, and a random key per candidate for ties.
    let mut left: Vec<u64> = candidates.iter().map(|c| c.free).collect();
    let ties: Vec<u64> = candidates.iter().map(|_| rng.gen()).collect();
    let mut given: Vec<(HostId, ShardId)> = Vec::with_capacity(shards.len());
    let mut chosen = Vec::with_capacity(shards.len());
    for shard in shards {
        let best = (0..candidates.len())
            .filter(|&i| {
                let c = &candidates[i];
                left[i] >= shard_size.max(1)
                    && per_domain.get(&c.domain).copied().unwrap_or(0) < limits.per_domain
                    && per_zone.get(c.zone.as_str()).copied().unwrap_or(0) < limits.per_zone
                    && !given.contains(&(c.host, *shard))
            })
            .min_by_key(|&i| (candidates[i].price, std::cmp::Reverse(left[i]), ties[i]));
        let Some(i) = best else {
            return Err(Unplaceable {
                needed: shards.len(),
                placed: chosen.len(),
                why: why_not(candidates, &left, shard_size, held, limits, shards.len(), chosen.len()),
                full: !left.iter().any(|&l| l >= shard_size.max(1)),
                cramped: left.iter().any(|&l| l < shard_size.max(1)),
            });
        };
        let c = &candidates[i];
        left[i] -= shard_size;
        *per_domain.entry(c.domain).or_default() += 1;
        *per_zone.entry(c.zone.as_str()).or_default() += 1;
        given.push((c.host, *shard));
        chosen.push(c.host);
    }
    Ok(chosen)
}

/// Says which limit left shards without a host; `left` is each candidate's room after the
/// shards given so far.
fn why_not(
    candidates: &[Candidate],
    left: &[u64],
    shard_size: u64,
    held: &[Held<'_>],
    limits: Limits,
    needed: usize,
    placed: usize,
) -> String {
    let roomy: Vec<&Candidate> =
        candidates.iter().zip(left).filter(|(_, &l)| l >= shard_size.max(1)).map(|(c, _)| c).collect();
    let mut domains: Vec<Domain> = roomy.iter().map(|c| c.domain).collect();
    domains.sort_unstable();
    domains.dedup();
    let mut zones: Vec<&str> = roomy.iter().map(|c| c.zone.as_str()).collect();
    zones.sort_unstable();
    zones.dedup();
    let total = needed + held.len();
    let head = format!(
        "{placed} of the {needed} shards could be placed: a pack of {total} shards may have at most {} in one failure domain (host or operator) and {} in one zone",
        limits.per_domain, limits.per_zone
    );
    let shard = ByteSize(shard_size);
    if roomy.is_empty() {
        let most = left.iter().copied().max().unwrap_or(0);
        return format!(
            "{head}, and the grid is full: no host that may take it has room for a {shard} shard (the most any has left is {})",
            ByteSize(most)
        );
    }
    let cramped: Vec<String> = candidates
        .iter()
        .zip(left)
        .filter(|(_, &l)| l < shard_size.max(1))
        .map(|(c, &l)| format!("{} ({} left)", c.host, ByteSize(l)))
        .collect();
    let short = match cramped.len() {
        0 => String::new(),
        n if n <= 3 => format!("; too little room for one: {}", cramped.join(", ")),
        n => format!("; too little room for one: {} and {} other host(s)", cramped[..3].join(", "), n - 3),
    };
    format!(
        "{head}, and the hosts with room for a {shard} shard are {} host(s) in {} failure domain(s) and {} zone(s){short}",
        roomy.len(),
        domains.len(),
        zones.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn c(id: u64, free: u64, zone: &str) -> Candidate {
        Candidate { host: HostId(id), free, zone: zone.into(), domain: Domain::Host(HostId(id)), price: 0 }
    }

    fn ids(n: u8) -> Vec<ShardId> {
        (0..n).map(|i| ShardId::of(&[i])).collect()
    }

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    fn count<T: PartialEq>(v: &[T], x: &T) -> usize {
        v.iter().filter(|y| *y == x).count()
    }

    #[test]
    fn three_hosts_take_two_shards_each_and_never_more() {
        let cands: Vec<_> = (1..=3).map(|i| c(i, 1000, "z")).collect();
        let got = choose(&cands, &ids(6), 10, &[], Limits { per_domain: 2, per_zone: 6 }, &mut rng()).expect("fits");
        for h in 1..=3 {
            assert_eq!(count(&got, &HostId(h)), 2, "{got:?}");
        }
        let err = choose(&cands, &ids(7), 10, &[], Limits { per_domain: 2, per_zone: 7 }, &mut rng())
            .expect_err("seven do not fit");
        assert_eq!((err.needed, err.placed), (7, 6));
        assert!(err.why.contains("at most 2 in one failure domain"), "{}", err.why);
    }

    #[test]
    fn one_operator_is_one_domain() {
        // Five "hosts" of one operator and one independent host: the operator may hold two.
        let mut cands: Vec<_> = (1..=5).map(|i| Candidate { domain: Domain::Operator(9), ..c(i, 1000, "z") }).collect();
        cands.push(c(6, 1000, "z"));
        let err = choose(&cands, &ids(6), 10, &[], Limits { per_domain: 2, per_zone: 6 }, &mut rng())
            .expect_err("only two domains");
        assert_eq!(err.placed, 4);
    }

    #[test]
    fn zones_are_a_hard_limit_and_held_shards_count() {
        // Three zones, z0 much bigger: two shards per zone, even though z0 has the room.
        let cands: Vec<_> =
            (0..9).map(|i| c(i, if i % 3 == 0 { 100_000 } else { 1000 }, ["z0", "z1", "z2"][i as usize % 3])).collect();
        let limits = Limits { per_domain: 1, per_zone: 2 };
        let got = choose(&cands, &ids(6), 10, &[], limits, &mut rng()).expect("fits");
        for z in 0..3 {
            assert_eq!(got.iter().filter(|h| h.0 % 3 == z).count(), 2, "zone z{z}: {got:?}");
        }
        // Repair: a pack with two shards in z0 and one in z1 gets its three missing ones
        // outside z0, and none on the hosts that hold its shards.
        let held = [
            Held { host: HostId(0), domain: Domain::Host(HostId(0)), zone: "z0" },
            Held { host: HostId(3), domain: Domain::Host(HostId(3)), zone: "z0" },
            Held { host: HostId(1), domain: Domain::Host(HostId(1)), zone: "z1" },
        ];
        let got = choose(&cands, &ids(3), 10, &held, limits, &mut rng()).expect("fits");
        assert!(got.iter().all(|h| h.0 % 3 != 0 && h.0 != 1), "{got:?}");
        // When the small zones are full the placement fails instead of crowding z0.
        let full: Vec<_> =
            cands.iter().map(|x| Candidate { free: if x.host.0 % 3 == 0 { x.free } else { 5 }, ..x.clone() }).collect();
        let err = choose(&full, &ids(6), 10, &[], limits, &mut rng()).expect_err("zone rule");
        assert_eq!(err.placed, 2);
    }

    #[test]
    fn an_operator_in_many_zones_counts_once() {
        // Three hosts in zone a, and one operator (one domain) with hosts in zones x and y:
        // it may hold two shards in all, so zone a must take four.
        let mut cands: Vec<_> = (1..=3).map(|i| c(i, 1000, "a")).collect();
        cands.push(Candidate { domain: Domain::Operator(9), ..c(4, 100_000, "x") });
        cands.push(Candidate { domain: Domain::Operator(9), ..c(5, 100_000, "y") });
        let limits = limits(6, 2, &cands, 10, &[]);
        assert_eq!(limits, Limits { per_domain: 2, per_zone: 4 });
        let got = choose(&cands, &ids(6), 10, &[], limits, &mut rng()).expect("fits");
        assert!(got.iter().filter(|h| h.0 >= 4).count() <= 2, "{got:?}");
        // Balanced zones still get ⌈n / zones⌉; too few domains, n.
        let three: Vec<_> = (0..9).map(|i| c(i, 1000, ["z0", "z1", "z2"][i as usize % 3])).collect();
        assert_eq!(super::limits(6, 1, &three, 10, &[]).per_zone, 2);
        assert_eq!(super::limits(6, 1, &three[..4], 10, &[]).per_zone, 6);
    }

    #[test]
    fn a_zone_with_room_for_one_shard_is_counted_as_one_not_as_a_full_share() {
        // Zones a and b: two hosts each, room for many shards; zone c: one host with room for
        // one shard (its neighbour full). Six shards, two per domain: c takes one, a and b
        // must take the other five (three in one of them), not stop at two each.
        let mut cands: Vec<_> = (1..=4).map(|i| c(i, 1000, ["a", "b"][i as usize % 2])).collect();
        cands.push(c(5, 15, "c"));
        cands.push(c(6, 5, "c"));
        let limits = limits(6, 2, &cands, 10, &[]);
        assert_eq!(limits, Limits { per_domain: 2, per_zone: 3 });
        let got = choose(&cands, &ids(6), 10, &[], limits, &mut rng()).expect("fits");
        assert_eq!(got.len(), 6);
        assert!(count(&got, &HostId(5)) <= 1 && count(&got, &HostId(6)) == 0, "{got:?}");
        // Full hosts are named when the domain rule leaves shards without a host.
        let err = choose(&cands, &ids(6), 10, &[], Limits { per_domain: 1, per_zone: 6 }, &mut rng())
            .expect_err("one shard per domain: six domains, one full");
        assert!(err.why.contains("h6 (5 B left)"), "{}", err.why);
    }

    #[test]
    fn the_cheapest_then_the_roomiest_hosts_are_chosen() {
        let mut cands: Vec<_> = (1..=8).map(|i| c(i, 1000 * i, "z")).collect();
        cands[0].price = 0; // host 1: cheap but small
        for x in &mut cands[1..] {
            x.price = 5;
        }
        let got = choose(&cands, &ids(3), 10, &[], Limits { per_domain: 1, per_zone: 6 }, &mut rng()).expect("fits");
        assert_eq!(got, [HostId(1), HostId(8), HostId(7)]);
    }

    #[test]
    fn identical_shards_go_to_different_hosts() {
        let cands: Vec<_> = (1..=3).map(|i| c(i, 1000, "z")).collect();
        let same = vec![ShardId::of(b"zeros"); 3];
        let got = choose(&cands, &same, 10, &[], Limits { per_domain: 3, per_zone: 3 }, &mut rng()).expect("fits");
        let mut hosts = got.clone();
        hosts.sort();
        hosts.dedup();
        assert_eq!(hosts.len(), 3, "{got:?}");
    }

    /// Puts of equal packs of `n` shards until one is refused; returns the packs placed.
    fn fill(sizes: &[u64], n: u8, shard: u64, limits: Limits) -> u64 {
        let mut cands: Vec<_> = sizes.iter().enumerate().map(|(i, &s)| c(i as u64, s, "z")).collect();
        let mut rng = rng();
        let mut packs = 0u32;
        loop {
            let shards: Vec<ShardId> = (0..n).map(|i| ShardId::of(&[packs.to_le_bytes(), [i; 4]].concat())).collect();
            let Ok(got) = choose(&cands, &shards, shard, &[], limits, &mut rng) else { return packs as u64 };
            for h in got {
                cands[h.0 as usize].free -= shard;
            }
            packs += 1;
        }
    }

    #[test]
    fn unequal_hosts_fill_to_the_rules_bound() {
        const MIB: u64 = 1 << 20;
        // Sealing and alignment make a shard of an 8 MiB pack a little more than an eighth
        // or a quarter of it.
        const OVER: u64 = 128;
        let sizes: Vec<u64> = [32, 32, 64, 64, 128, 128, 256].iter().map(|s| s * MIB).collect();
        // The bound is 384 MiB raw, 32 packs of 8 MiB (f = 2: a sixth of each pack per host)
        // and the overhead makes the 32nd not fit. 4+2 (2 MiB shards, one per host): 30,
        // the most that fits when the small hosts take 15 shards each; 8+4 (two per host):
        // 31, the ceiling.
        assert_eq!(fill(&sizes, 6, 2 * MIB + OVER, Limits { per_domain: 1, per_zone: 6 }), 30);
        assert_eq!(fill(&sizes, 12, MIB + OVER, Limits { per_domain: 2, per_zone: 12 }), 31);
        // f = 1 on 1:1:1:3 hosts: the big one takes a third of every pack. Bound: 450 MiB
        // raw; with the small hosts at 49 shards each, 36 packs is the most that fits.
        let packs = fill(
            &[100 * MIB, 100 * MIB, 100 * MIB, 300 * MIB],
            6,
            2 * MIB + OVER,
            Limits { per_domain: 2, per_zone: 6 },
        );
        assert_eq!(packs, 36);
    }
}
