//! Which hosts may take data now, and how much: one home for the HTTP layer (placement,
//! status, capacity) and the background work (repair, re-spread), so they cannot disagree.
//!
//! A host takes data when it is online (heard from within half the offline grace), active,
//! and offers a period that lasts beyond the margin. Its room is what it offers minus what
//! it holds (the catalog's count or its own, whichever is more) minus what is reserved on it
//! (placed, not yet committed), and never more than its disk's free space.

use std::collections::HashMap;

use scatter_core::HostId;
use scatter_proto::api::{HostState, Policy};

use crate::durability;
use crate::placement::Candidate;
use crate::store::{Domain, HostRow, Standing, Store, StoreError};
use crate::{now, Shared};

/// Most shards one account may have placed and not yet committed: a client keeps two packs
/// in flight, so this is far above need and far below what would fill a grid.
pub const MAX_RESERVED_SHARDS: usize = 256;
/// Most bytes one account may have placed and not yet committed.
pub const MAX_RESERVED_BYTES: u64 = 1 << 30;

/// What the catalog said of the hosts when this coordinator started (unix seconds).
///
/// A coordinator that was down for longer than the offline grace (an upgrade, a reboot, a
/// recovery from a catalog backup) finds every host's last heartbeat too old, and cannot
/// tell a host whose next heartbeat has not reached it yet from a dead one. Taking them all
/// for dead would start repairs and placements around a grid that lost nothing. So a host
/// that was online when the catalog last heard from any host counts as heard at this
/// coordinator's start, and has the offline grace from there to be heard again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Start {
    /// When this coordinator started.
    pub at: u64,
    /// The newest heartbeat the catalog held then, from any host.
    pub last_heard: u64,
}

impl Start {
    /// When a host last heard from at `last_seen` counts as heard from.
    fn heard(self, last_seen: u64, grace: u64) -> u64 {
        match last_seen.saturating_add(grace) >= self.last_heard {
            true => last_seen.max(self.at),
            false => last_seen,
        }
    }

    /// The oldest heartbeat that makes a host online at `now`: `heard(last_seen) + grace >=
    /// now` as a bound on `last_seen`, for the catalog's queries.
    fn cutoff(self, now: u64, grace: u64) -> u64 {
        let cutoff = now.saturating_sub(grace);
        match self.at >= cutoff {
            true => cutoff.min(self.last_heard.saturating_sub(grace)),
            false => cutoff,
        }
    }
}

/// Hosts whose last heartbeat is at or after this are online (see [`Start`]).
pub fn online_cutoff(sh: &Shared) -> u64 {
    sh.start.cutoff(now(), sh.offline_after.as_secs())
}

/// Whether a host last heard from at `last_seen` is within the offline grace (see [`Start`]).
pub fn is_online(sh: &Shared, last_seen: u64) -> bool {
    last_seen >= online_cutoff(sh)
}

/// A host's state: administrative first, then by how long ago it was heard from.
pub fn host_state(sh: &Shared, h: &HostRow) -> HostState {
    let silent = now().saturating_sub(sh.start.heard(h.last_seen, sh.offline_after.as_secs()));
    match h.state {
        Standing::Retired => HostState::Retired,
        Standing::Disqualified => HostState::Disqualified,
        Standing::Disabled => HostState::Disabled,
        Standing::Draining => HostState::Draining,
        Standing::Active if silent > sh.offline_after.as_secs() => HostState::Offline,
        Standing::Active if silent * 2 > sh.offline_after.as_secs() => HostState::Suspect,
        Standing::Active => HostState::Online,
    }
}

/// Whether a host's offered period lasts at least `secs` more.
pub fn period_lasts(h: &HostRow, secs: u64) -> bool {
    h.terms.until.is_none_or(|until| until >= now().saturating_add(secs))
}

/// Which condition of `policy` keeps host `h` out, if any.
fn refused_by(policy: &Policy, h: &HostRow, reputation: u8) -> Option<&'static str> {
    if policy.max_price.is_some_and(|max| h.terms.price > max) {
        return Some("price above --max-price");
    }
    if !policy.zones.is_empty() && !policy.zones.contains(&h.zone) {
        return Some("zone not among --zone");
    }
    if policy.exclude_zones.contains(&h.zone) {
        return Some("zone excluded by --exclude-zone");
    }
    if policy.min_reputation.is_some_and(|min| reputation < min) {
        return Some("reputation below --min-reputation");
    }
    if policy.min_period_secs.is_some_and(|secs| !period_lasts(h, secs)) {
        return Some("offered period shorter than --min-period");
    }
    None
}

/// The hosts `policy` allows among `candidates`, or a sentence naming what excluded them all:
/// placement and repair both keep to the owner's policy.
pub fn allowed(policy: &Policy, hosts: &[HostRow], candidates: Vec<Candidate>) -> Result<Vec<Candidate>, String> {
    if policy.is_empty() {
        return Ok(candidates);
    }
    let now = now();
    let by_id: HashMap<HostId, &HostRow> = hosts.iter().map(|h| (h.id, h)).collect();
    let mut why: HashMap<&'static str, usize> = HashMap::new();
    let total = candidates.len();
    let kept: Vec<Candidate> = candidates
        .into_iter()
        .filter(|c| {
            let Some(h) = by_id.get(&c.host) else { return false };
            match refused_by(policy, h, crate::reputation::of(h, now).score) {
                Some(reason) => {
                    *why.entry(reason).or_default() += 1;
                    false
                }
                None => true,
            }
        })
        .collect();
    if kept.is_empty() && total > 0 {
        let mut reasons: Vec<_> = why.into_iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let list: Vec<String> = reasons.iter().map(|(r, n)| format!("{r} ({n})")).collect();
        return Err(format!(
            "no host meets the placement policy ({}): of {total} host(s) that take data, excluded by {}; relax the policy",
            policy,
            list.join(", ")
        ));
    }
    Ok(kept)
}

/// Hosts that may take data now, with the bytes each can still take after `reserved`.
pub fn room(sh: &Shared, hosts: &[HostRow], reserved: &HashMap<HostId, u64>) -> Vec<Candidate> {
    hosts
        .iter()
        .filter(|h| host_state(sh, h) == HostState::Online && period_lasts(h, sh.period_margin.as_secs()))
        .map(|h| {
            let r = reserved.get(&h.id).copied().unwrap_or(0);
            Candidate {
                host: h.id,
                free: free_room(h, r),
                zone: h.zone.clone(),
                domain: h.domain(),
                price: h.terms.price,
            }
        })
        .collect()
}

/// What `h` can still take with `reserved` bytes placed on it: what it offers less what it
/// holds, or what its disk has free if that is less (a host offering more than its disk).
pub fn free_room(h: &HostRow, reserved: u64) -> u64 {
    let by_capacity = h.capacity.saturating_sub(h.catalog_used.max(h.reported_used).saturating_add(reserved));
    by_capacity.min(h.free.saturating_sub(reserved))
}

/// [`room`], with what the catalog has reserved. Runs on the catalog's thread.
pub fn candidates(sh: &Shared, store: &Store, hosts: &[HostRow]) -> Result<Vec<Candidate>, StoreError> {
    Ok(room(sh, hosts, &store.reserved_by_host(now())?))
}

/// Zones with an active host heard from within the offline grace, sorted.
pub fn zones_up<'a>(sh: &Shared, hosts: &'a [HostRow]) -> Vec<&'a str> {
    let mut zones: Vec<&str> = hosts
        .iter()
        .filter(|h| matches!(host_state(sh, h), HostState::Online | HostState::Suspect))
        .map(|h| h.zone.as_str())
        .collect();
    zones.sort_unstable();
    zones.dedup();
    zones
}

/// For each code in `codes`, the most shards of one of its packs a zone should hold under
/// tolerance `f`, given the zones and domains of the hosts with room for data now (see
/// [`room`]): what a placement on them would aim for (see [`crate::placement::zone_cap`]).
/// A pack holding more in one zone is re-spread; the repair checks again with its own shards'
/// hosts and size.
pub fn zone_caps(candidates: &[Candidate], f: u8, codes: &[(u8, u8)]) -> Vec<crate::store::ZoneCap> {
    // Sizes vary: any host with room counts as room for a whole share.
    let mut pairs: Vec<(&str, Domain, usize)> =
        candidates.iter().filter(|c| c.free > 0).map(|c| (c.zone.as_str(), c.domain, usize::MAX)).collect();
    pairs.sort_unstable();
    pairs.dedup();
    codes
        .iter()
        .map(|&(k, m)| {
            let per_domain = durability::per_domain(k, m, f).unwrap_or(1);
            (k, m, crate::placement::zone_cap(usize::from(k) + usize::from(m), per_domain, &pairs))
        })
        .collect()
}

/// f, whether it follows the grid's size, and how many failure domains count: those of
/// active hosts heard from within the offline grace, that can hold a real share of the grid
/// (see [`durability::counted_domains`]). Counting only hosts heard from keeps writes and
/// repair going while a host is down (a 6-host grid with one down stores at f = 1 instead
/// of refusing); the packs written then are re-spread when it is back. A host only late with
/// its heartbeats still counts, so a put waits for it rather than lowering the rule.
pub fn tolerance(sh: &Shared, hosts: &[HostRow]) -> (u8, bool, usize) {
    tolerance_of(sh, hosts.iter().filter(|h| matches!(host_state(sh, h), HostState::Online | HostState::Suspect)))
}

/// The f the grid asks for with every active host up, down or not: what a write stored
/// while hosts are down falls short of, and is told so (a host down long enough to leave
/// the count lowers [`tolerance`] without any placement having to settle for less).
pub fn full_tolerance(sh: &Shared, hosts: &[HostRow]) -> u8 {
    tolerance_of(sh, hosts.iter().filter(|h| h.state == crate::store::Standing::Active)).0
}

fn tolerance_of<'a>(sh: &Shared, hosts: impl Iterator<Item = &'a HostRow>) -> (u8, bool, usize) {
    let mut stakes: HashMap<Domain, u64> = HashMap::new();
    for h in hosts {
        let stake = stakes.entry(h.domain()).or_default();
        *stake = stake.saturating_add(self::stake(h));
    }
    let domains = durability::counted_domains(&mut stakes.into_values().collect::<Vec<_>>());
    match sh.tolerate {
        Some(f) => (f, false, domains),
        None => (durability::auto_tolerance(domains), true, domains),
    }
}

/// What a host can hold for the grid: what it holds and its free room, up to what it offers.
/// Steady as it fills, so a full host still counts toward the rule it was filled under.
fn stake(h: &HostRow) -> u64 {
    h.capacity.min(h.catalog_used.max(h.reported_used).saturating_add(h.free))
}

#[cfg(test)]
mod tests {
    use super::Start;

    #[test]
    fn hosts_online_when_the_catalog_last_heard_count_as_heard_at_the_start() {
        // Down from 1,000 to 1,100 with a grace of 30 s: the hosts heard at 990 and 975 were
        // online at the last heartbeat (1,000); the one at 960 was not.
        let start = Start { at: 1_100, last_heard: 1_000 };
        assert_eq!(start.heard(990, 30), 1_100);
        assert_eq!(start.heard(970, 30), 1_100);
        assert_eq!(start.heard(960, 30), 960);
        assert_eq!(start.heard(1_105, 30), 1_105, "heard since the start");
        // Within the grace after the start, hosts heard within the grace of 1,000 are online.
        assert_eq!(start.cutoff(1_120, 30), 970);
        // After it, only hosts heard from since count.
        assert_eq!(start.cutoff(1_131, 30), 1_101);
        // A coordinator starting beside others that hear the hosts: nothing changes.
        let beside = Start { at: 1_000, last_heard: 1_000 };
        assert_eq!(beside.cutoff(1_010, 30), 970);
    }

    #[test]
    fn the_cutoff_says_what_heard_says() {
        let grace = 5;
        for at in 0..40u64 {
            for last_heard in 0..=at {
                let start = Start { at, last_heard };
                for now in at..at + 20 {
                    for last_seen in 0..=now {
                        let online = now.saturating_sub(start.heard(last_seen, grace)) <= grace;
                        assert_eq!(
                            online,
                            last_seen >= start.cutoff(now, grace),
                            "{start:?} now {now} seen {last_seen}"
                        );
                    }
                }
            }
        }
    }
}
