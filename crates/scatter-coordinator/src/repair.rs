//! The checker and repairer: keeps every pack at k+m healthy shards without anyone asking.
//!
//! Every `checker_interval` the coordinator lists live packs with fewer than k+m healthy
//! shards (state `ok` on a host heard from within the offline grace), most endangered first.
//! For each it fetches k hash-verified shards from their hosts, rebuilds the missing shards
//! bit for bit (on ciphertext: no key is needed and shard ids do not change), stores each on
//! an online host that holds no other shard of the pack, and moves the shard in the catalog
//! in one transaction. The copy left on a dead host is queued as an orphan and deleted if
//! that host comes back. At most [`PACKS_PER_PASS`] packs are repaired per pass, so repair
//! cannot starve users. Draining a host uses the same path: its shards stop counting as
//! healthy, so they are rebuilt elsewhere while the host still serves them (no moment with
//! less redundancy), and the host is retired once it holds nothing. A host that shrank its
//! capacity below what it holds has shards marked `surplus` (readable, not counted) until
//! the excess has moved.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use scatter_core::erasure::Layout;
use scatter_core::{HostId, ShardId, UserId};

use crate::placement::Held;
use crate::store::{DegradedPack, Domain, Fence, HostRow, ShardMove, ShardState, Standing};
use crate::{now, Shared};

/// Packs repaired per pass at most.
pub(crate) const PACKS_PER_PASS: usize = 16;

/// Passes between searches for packs to re-spread when nothing asked for one.
const RESPREAD_EVERY: u32 = 20;

/// Passes a zone must have been up, without a break, before packs are re-spread into it (5
/// minutes at the default checker interval). A zone that comes and goes would otherwise have
/// its shards rebuilt elsewhere while down and moved back each time it is up: every flap
/// would copy them twice.
const ZONE_SETTLES_AFTER: u32 = 10;
/// How long a host that refused a rebuilt shard, or lagged behind the others' reads, is
/// passed over by repair.
const REFUSAL_MEMORY: std::time::Duration = std::time::Duration::from_secs(600);

/// A read for a rebuild that lags this far behind the first one to arrive (this many times
/// its time, and at least [`HEDGE_FLOOR`]) has the next source read beside it.
const HEDGE_FACTOR: u32 = 4;
/// The least time a read for a rebuild is given before another source is read beside it.
const HEDGE_FLOOR: std::time::Duration = std::time::Duration::from_secs(2);
/// How long reads for a rebuild are given before another source is read beside them when
/// none has arrived yet (a large shard on a slow link).
const HEDGE_BEFORE_ANY: std::time::Duration = std::time::Duration::from_secs(15);

/// Hosts repair noted, and when: those that refused a rebuilt shard (an error, a timeout, a
/// bad receipt), and those whose reads lagged. Placement picks the cheapest host with the
/// most room, so a host offering plenty and refusing every upload was chosen again in every
/// pass, and the packs it was chosen for never repaired; a host that lets reads hang would
/// hold every pack it serves for a hedge's wait.
#[derive(Default)]
pub(crate) struct Recent(std::sync::Mutex<HashMap<HostId, std::time::Instant>>);

impl Recent {
    fn note(&self, host: HostId) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, at| at.elapsed() < REFUSAL_MEMORY);
        map.insert(host, std::time::Instant::now());
    }

    fn recent(&self, host: HostId) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(&host).is_some_and(|at| at.elapsed() < REFUSAL_MEMORY)
    }
}

/// Where the search for packs to re-spread stands, between repair passes.
#[derive(Debug, Default)]
pub(crate) struct Respread {
    /// The tolerance of the last pass.
    pub tolerate: u8,
    /// Zones up in the last pass.
    pub zones: usize,
    /// Whether packs placed under a looser rule may remain (looking for them reads every
    /// pack's row, so only then).
    pub more: bool,
    /// Passes counted.
    pub passes: u32,
    /// Crowded packs to pass over, oldest first: those that could not move when last tried.
    pub skip: usize,
    /// Zones up now, with the pass since which they have been up without a break.
    pub up_since: HashMap<String, u32>,
}

impl Respread {
    /// Counts a pass with `up` the zones up now; returns the zones up for at least
    /// [`ZONE_SETTLES_AFTER`] passes. After a coordinator starts, every zone settles anew.
    fn settle(&mut self, up: &[&str]) -> HashSet<String> {
        self.passes = self.passes.wrapping_add(1);
        let now = self.passes;
        self.up_since.retain(|zone, _| up.contains(&zone.as_str()));
        for zone in up {
            self.up_since.entry((*zone).to_owned()).or_insert(now);
        }
        self.up_since
            .iter()
            .filter(|(_, since)| now.wrapping_sub(**since) + 1 >= ZONE_SETTLES_AFTER)
            .map(|(zone, _)| zone.clone())
            .collect()
    }
}

/// The checker: notices hosts gone offline, audits, and samples the dashboard's figures,
/// every `checker_interval`.
pub(crate) async fn check(shared: Arc<Shared>, stop: tokio::sync::watch::Receiver<bool>) {
    let every = shared.checker_interval;
    let offline = Arc::new(crate::presence::Offline::default());
    crate::jobs::run(shared, "checker", every, stop, move |shared, fence| {
        let offline = offline.clone();
        async move {
            if let Err(e) = offline.pass(&shared).await {
                tracing::warn!(error = %e, "could not look for hosts gone offline; will retry");
            }
            if let Err(e) = crate::audit::pass(&shared, &fence).await {
                tracing::warn!(error = %e, "audit pass failed; will retry");
            }
            if let Err(e) = crate::dashboard::sample(&shared).await {
                tracing::warn!(error = %e, "could not sample the grid's figures for the dashboard; will retry");
            }
        }
    })
    .await
}

/// The repairer, every `checker_interval`: a job of its own, so that a pass spent reading and
/// storing shards (minutes, on slow links) does not hold up noticing hosts gone or audits.
pub(crate) async fn run(shared: Arc<Shared>, stop: tokio::sync::watch::Receiver<bool>) {
    let every = shared.checker_interval;
    crate::jobs::run(shared, "repairer", every, stop, |shared, fence| async move {
        if let Err(e) = pass(&shared, &fence).await {
            tracing::warn!(error = %e, "repair pass failed; will retry");
        }
    })
    .await
}

async fn pass(shared: &Arc<Shared>, fence: &Fence) -> Result<(), crate::store::StoreError> {
    let cutoff = crate::room::online_cutoff(shared);
    let deferred = shared.repair_deferred.lock().unwrap_or_else(|p| p.into_inner()).clone();
    // More than a pass repairs: packs that cannot move now are passed over cheaply.
    let packs = shared.catalog(move |s| s.degraded_packs(cutoff, PACKS_PER_PASS * 4, &deferred)).await?;
    let mut hosts = shared.catalog(|s| s.hosts()).await?;
    // Hosts whose period ends are drained or retired first, and the rest of the pass sees
    // their new state (a host just set draining must not receive a repaired shard).
    if crate::period::pass(shared, &hosts, fence).await? {
        hosts = shared.catalog(|s| s.hosts()).await?;
    }
    retire_drained(shared, &hosts, fence).await?;
    shrink(shared, &hosts, fence).await?;
    let (f, _, _) = crate::room::tolerance(shared, &hosts);
    // Zones count for re-spreading once settled (see ZONE_SETTLES_AFTER), in repair and
    // after it: then packs placed under a looser rule (a smaller grid, or with a zone down)
    // are re-spread. Finding them reads every pack's row, so it is done when the rule
    // tightened or more zones settled, again while the last search found a full batch, and
    // every RESPREAD_EVERY passes (for packs that could not move when last tried).
    let up = crate::room::zones_up(shared, &hosts);
    let (look, skip, settled) = {
        let mut r = shared.respread.lock().unwrap_or_else(|p| p.into_inner());
        let settled = r.settle(&up);
        if f > r.tolerate || settled.len() > r.zones || r.passes.is_multiple_of(RESPREAD_EVERY) {
            (r.more, r.skip) = (true, 0);
        }
        (r.tolerate, r.zones) = (f, settled.len());
        (r.more, r.skip, settled)
    };
    // Packs whose repair read shards (or tried to): at most PACKS_PER_PASS, so that repair
    // cannot starve users. A pack that cannot move now costs no reads and does not count; if
    // its owner's policy is what keeps it, the rest of that owner's packs are passed over in
    // this pass and put after the others' in the next.
    let mut attempted = 0;
    let mut held_by_policy: HashMap<UserId, String> = HashMap::new();
    let mut waits: HashMap<String, u64> = HashMap::new();
    for pack in packs {
        if attempted == PACKS_PER_PASS {
            break;
        }
        if let Some(why) = held_by_policy.get(&pack.owner) {
            *waits.entry(why.clone()).or_default() += 1;
            continue;
        }
        let result = repair(shared, &hosts, cutoff, &pack, f, &settled, fence).await;
        let mut deferred = shared.repair_deferred.lock().unwrap_or_else(|p| p.into_inner());
        let why = match result {
            Ok(n) => {
                attempted += 1;
                deferred.packs.remove(&pack.id);
                deferred.owners.remove(&pack.owner);
                tracing::info!(pack = %pack.id, shards = n, healthy_before = pack.healthy, "pack repaired");
                continue;
            }
            Err(Wait::Policy(why)) => {
                deferred.owners.insert(pack.owner, now());
                held_by_policy.insert(pack.owner, why.clone());
                why
            }
            Err(Wait::Before(why)) => why,
            Err(Wait::After(why)) => {
                attempted += 1;
                why
            }
        };
        deferred.packs.insert(pack.id, now());
        tracing::debug!(pack = %pack.id, error = %why, "pack could not be repaired now");
        *waits.entry(why).or_default() += 1;
    }
    // One line per reason, not per pack: a coordinator starting before its hosts have
    // been heard from finds every pack waiting for the same thing.
    for (why, packs) in &waits {
        tracing::warn!(packs, error = %why, "pack(s) could not be repaired now");
    }
    // A failure only orders the queue, and an hour after the last one it is forgotten,
    // which also bounds what is kept.
    let hour_ago = now().saturating_sub(3600);
    {
        let mut deferred = shared.repair_deferred.lock().unwrap_or_else(|p| p.into_inner());
        deferred.packs.retain(|_, at| *at > hour_ago);
        deferred.owners.retain(|_, at| *at > hour_ago);
    }
    // Why repair waits, for `admin health`: kept in the catalog, so whichever coordinator
    // an admin asks can say it.
    let mut waits: Vec<(String, u64)> = waits.into_iter().collect();
    waits.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    waits.truncate(5);
    let f2 = fence.clone();
    shared.catalog(move |s| s.set_repair_waits(&waits, Some(&f2), now())).await?;
    if attempted < PACKS_PER_PASS && look {
        let limit = PACKS_PER_PASS - attempted;
        let codes = shared.catalog(|s| s.codes()).await?;
        let candidates = {
            let (sh, hosts) = (shared.clone(), hosts.clone());
            shared.catalog(move |s| crate::room::candidates(&sh, s, &hosts)).await?
        };
        let settled_hosts: Vec<_> = candidates.into_iter().filter(|c| settled.contains(&c.zone)).collect();
        let caps = crate::room::zone_caps(&settled_hosts, f, &codes);
        let crowded = shared.catalog(move |s| s.crowded_packs(f, &caps, limit, skip)).await?;
        let full = crowded.len() == limit;
        let mut moved = false;
        for pack in crowded {
            match repair(shared, &hosts, cutoff, &pack, f, &settled, fence).await {
                Ok(n) if n > 0 => {
                    moved = true;
                    tracing::info!(pack = %pack.id, shards = n, tolerate = f, "pack re-spread")
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(pack = %pack.id, error = %e, "pack could not be re-spread now"),
            }
        }
        // A full batch of which none could move (no room where they should go) would be
        // found again first next time: the search goes on past it instead.
        let mut r = shared.respread.lock().unwrap_or_else(|p| p.into_inner());
        r.more = full;
        r.skip = if full && !moved { skip + limit } else { 0 };
    }
    Ok(())
}

/// Why a pack could not be repaired now, as `admin health` shows it.
#[derive(Debug)]
enum Wait {
    /// Its owner's placement policy leaves it no host (or too few), where the rule alone
    /// would: the owner's other packs would most likely wait the same way. Nothing was read.
    Policy(String),
    /// It cannot move now (too few shards readable, no host the rule allows); nothing was
    /// read.
    Before(String),
    /// Shards were read or written (or the catalog failed): the work counts against the pass.
    After(String),
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wait::Policy(why) | Wait::Before(why) | Wait::After(why) => f.write_str(why),
        }
    }
}

impl From<String> for Wait {
    fn from(why: String) -> Self {
        Wait::After(why)
    }
}

/// A pack's shard as the catalog places it: (index, id, host, state).
type ShardRow = (u8, ShardId, HostId, ShardState);

/// The hosts holding `shards`, as a placement counts them.
fn held_on<'a>(shards: &[&ShardRow], host: impl Fn(HostId) -> Option<&'a HostRow>) -> Vec<Held<'a>> {
    shards
        .iter()
        .filter_map(|(_, _, h, _)| host(*h))
        .map(|h| Held { host: h.id, domain: h.domain(), zone: h.zone.as_str() })
        .collect()
}

fn healthy(host: Option<&HostRow>, state: ShardState, cutoff: u64) -> bool {
    state == ShardState::Ok && host.is_some_and(|h| h.last_seen >= cutoff && h.state == Standing::Active)
}

/// A host holding more than it now offers (it restarted with a smaller `--capacity`) has
/// its surplus marked for moving.
async fn shrink(shared: &Arc<Shared>, hosts: &[HostRow], fence: &Fence) -> Result<(), crate::store::StoreError> {
    for h in hosts.iter().filter(|h| h.state == Standing::Active && h.catalog_used > h.capacity) {
        let (id, excess) = (h.id, h.catalog_used - h.capacity);
        let fence = fence.clone();
        let marked = shared.catalog(move |s| s.mark_surplus(id, excess, Some(&fence), now())).await?;
        if marked > 0 {
            tracing::info!(host = %id, shards = marked, excess, "host holds more than it offers; moving the surplus");
        }
    }
    Ok(())
}

/// A draining host whose every shard has moved is retired.
async fn retire_drained(
    shared: &Arc<Shared>,
    hosts: &[HostRow],
    fence: &Fence,
) -> Result<(), crate::store::StoreError> {
    for h in hosts.iter().filter(|h| h.state == Standing::Draining && h.shards == 0) {
        let id = h.id;
        let fence = fence.clone();
        let retired = move |s: &crate::store::Store| {
            s.change_host_state(id, &[Standing::Draining], Standing::Retired, Some(&fence), now())
        };
        if !shared.catalog(retired).await? {
            continue;
        }
        tracing::info!(host = %id, "host drained and retired: it holds no shard any more");
    }
    Ok(())
}

/// Repairs one pack under tolerance `f`: rebuilds its unhealthy shards, and the shards one
/// failure domain holds beyond what the rule allows, and stores them where the rule allows.
/// Returns how many shards were stored.
async fn repair(
    shared: &Arc<Shared>,
    hosts: &[HostRow],
    cutoff: u64,
    pack: &DegradedPack,
    f: u8,
    settled: &HashSet<String>,
    fence: &Fence,
) -> Result<usize, Wait> {
    let host = |id: HostId| hosts.iter().find(|h| h.id == id);
    let layout = Layout { size: pack.size, k: pack.k, m: pack.m, shard_size: pack.shard_size };
    let k = pack.k as usize;
    let (good, bad): (Vec<&ShardRow>, Vec<&ShardRow>) =
        pack.shards.iter().partition(|(_, _, h, state)| healthy(host(*h), *state, cutoff));
    // The rebuild reads healthy shards first, then those still served while they move (on a
    // draining host, or surplus on theirs): a pack with more shards on draining hosts than it
    // could lose is rebuilt from them rather than left waiting until the drain loses them.
    let served = |(_, _, h, state): &&ShardRow| {
        matches!(state, ShardState::Ok | ShardState::Surplus)
            && host(*h)
                .is_some_and(|r| r.last_seen >= cutoff && matches!(r.state, Standing::Active | Standing::Draining))
    };
    // Hosts whose reads lagged lately are read last.
    let (mut sources, laggards): (Vec<&ShardRow>, Vec<&ShardRow>) = good
        .iter()
        .copied()
        .chain(bad.iter().copied().filter(served))
        .partition(|(_, _, h, _)| !shared.repair_laggards.recent(*h));
    sources.extend(laggards);
    if sources.len() < k {
        return Err(Wait::Before(format!(
            "only {} of the {} shards needed can be read; waiting for hosts to come back",
            sources.len(),
            k
        )));
    }
    // Repair keeps to the owner's stored placement policy, as placement did (a policy given
    // for one run only is not kept, and cannot be).
    let owner = pack.owner;
    let policy = shared.catalog(move |s| s.policy(owner)).await.map_err(|e| e.to_string())?.unwrap_or_default();
    // A code too weak for f (older packs) keeps one shard per domain: the best it can do.
    let per_domain = crate::durability::per_domain(pack.k, pack.m, f).unwrap_or(1);
    let mut in_domain: HashMap<Domain, usize> = HashMap::new();
    let (keep, crowded): (Vec<&ShardRow>, Vec<&ShardRow>) = good.iter().copied().partition(|(_, _, h, _)| {
        let Some(row) = host(*h) else { return true };
        let n = in_domain.entry(row.domain()).or_default();
        *n += 1;
        *n <= per_domain
    });
    let candidates: Vec<_> = {
        let (sh, hosts) = (shared.clone(), hosts.to_vec());
        shared.catalog(move |s| crate::room::candidates(&sh, s, &hosts)).await.map_err(|e| e.to_string())?
    };
    // A zone holding more than a placement on the hosts up now in settled zones would give
    // it (one was down when the pack was placed or repaired) gives up the rest, if the
    // others can take them; unless a placement policy chose the pack's zones or its owner
    // has one now.
    let zone_cap = if pack.narrowed || !policy.is_empty() {
        usize::MAX
    } else {
        let leaving: HashSet<HostId> = bad.iter().chain(&crowded).map(|(_, _, h, _)| *h).collect();
        let others: Vec<_> =
            candidates.iter().filter(|c| !leaving.contains(&c.host) && settled.contains(&c.zone)).cloned().collect();
        crate::placement::limits(layout.total(), per_domain, &others, pack.shard_size, &held_on(&keep, host)).per_zone
    };
    let mut in_zone: HashMap<&str, usize> = HashMap::new();
    let (keep, zone_crowded): (Vec<&ShardRow>, Vec<&ShardRow>) = keep.into_iter().partition(|(_, _, h, _)| {
        let Some(row) = host(*h) else { return true };
        let n = in_zone.entry(row.zone.as_str()).or_default();
        *n += 1;
        *n <= zone_cap
    });
    // Missing shards first: they are what endangers the pack.
    let moving: Vec<&ShardRow> = bad.iter().chain(&crowded).chain(&zone_crowded).copied().collect();
    if moving.is_empty() {
        return Ok(0);
    }
    // Where the shards go is settled before anything is read: a pack that cannot move now
    // costs no reads and no rebuild.
    // A host where another pack already records one of these shards cannot take it again (a
    // (host, shard) pair is recorded once), nor one where a copy waits to be deleted: leaving
    // it out keeps a tenant who stored the same bytes there from blocking this repair, and
    // the deleter from deleting the new copy with the old.
    let (id, hashes): (_, Vec<ShardId>) = (pack.id, moving.iter().map(|(_, shard, _, _)| *shard).collect());
    let holding: HashSet<HostId> =
        shared.catalog(move |s| s.hosts_holding(&id, &hashes)).await.map_err(|e| e.to_string())?.into_iter().collect();
    // Hosts of the shards that move are left out too; but a host that lost a shard and is up
    // takes it back when no other host can (a grid with no failure domain to spare: its
    // domain is then the only one the rule leaves).
    let lost_on: HashSet<HostId> = bad
        .iter()
        .filter(|(_, _, h, state)| {
            *state == ShardState::Lost
                && !holding.contains(h)
                && host(*h).is_some_and(|r| r.state == Standing::Active && r.last_seen >= cutoff)
        })
        .map(|(_, _, h, _)| *h)
        .collect();
    // A pure re-spread moves shards only into settled zones (a zone just back could go
    // again); a pack missing shards takes any host the rule allows.
    let re_spread = bad.is_empty();
    let held = held_on(&keep, host);
    let ids: Vec<ShardId> = moving.iter().map(|(_, shard, _, _)| *shard).collect();
    let place = |take_back: bool| -> Result<Vec<HostId>, Wait> {
        let mut unusable = holding.clone();
        unusable.extend(moving.iter().map(|(_, _, h, _)| *h).filter(|h| !(take_back && lost_on.contains(h))));
        let unfiltered: Vec<_> = candidates
            .iter()
            .filter(|c| !unusable.contains(&c.host) && (!re_spread || settled.contains(&c.zone)))
            .filter(|c| !shared.repair_refusals.recent(c.host))
            .cloned()
            .collect();
        let allowed = crate::room::allowed(&policy, hosts, unfiltered.clone())
            .map_err(|e| Wait::Policy(format!("repair keeps to the placement policy of account {owner}, and {e}")))?;
        let ruled_out = unfiltered.len() - allowed.len();
        let mut limits = crate::placement::limits(layout.total(), per_domain, &allowed, pack.shard_size, &held);
        // A re-spread places within the cap that made it move (fewer candidates may allow
        // more per zone, and the shard would go back to a crowded zone, to be moved again
        // next time); a pack missing shards takes what placement allows.
        if re_spread && !zone_crowded.is_empty() {
            limits.per_zone = limits.per_zone.min(zone_cap);
        }
        // Place as many as the rule allows now: a pack missing two shards is better off with
        // one rebuilt than none.
        let choose = |among: &[crate::placement::Candidate], ids: &[ShardId]| {
            crate::placement::choose(among, ids, pack.shard_size, &held, limits, &mut rand::thread_rng())
        };
        // When nothing fits, the policy is named as the cause only if the rule alone would
        // have found hosts: its owner's other packs then wait behind the others' (see `pass`).
        let why = |e: crate::placement::Unplaceable| match ruled_out > 0 && choose(&unfiltered, &ids).is_ok() {
            true => Wait::Policy(format!(
                "{}; the placement policy of account {owner} ({policy}) rules out {ruled_out} other host(s)",
                e.why
            )),
            false => Wait::Before(e.why),
        };
        match choose(&allowed, &ids) {
            Ok(t) => Ok(t),
            Err(e) if e.placed > 0 => choose(&allowed, &ids[..e.placed]).map_err(why),
            Err(e) => Err(why(e)),
        }
    };
    let mut targets = place(false);
    if targets.as_ref().map_or(0, Vec::len) < ids.len() && !lost_on.is_empty() {
        let again = place(true);
        if again.as_ref().map_or(0, Vec::len) > targets.as_ref().map_or(0, Vec::len) {
            targets = again;
        }
    }
    let targets = targets?;
    let mut targets: Vec<HostId> = targets.into_iter().rev().collect();
    // Fetch k verified shards (data shards first: they are what readers use), k at a time,
    // the next source taking the place of one that failed, or read beside one that lags far
    // behind: a host that lets its reads hang holds a pack for a hedge's wait, not until its
    // read times out, and is read last for a while.
    let mut have: Vec<Option<Vec<u8>>> = vec![None; layout.total()];
    let mut count = 0;
    let read = |(index, shard, h, _): &ShardRow| {
        let (index, shard, h, row) = (*index, *shard, *h, host(*h));
        async move {
            let got = match row {
                Some(row) => crate::shards::read(shared, row, &shard, pack.shard_size).await.into_result(),
                None => Err("its host is unknown".to_owned()),
            };
            (index, shard, h, got)
        }
    };
    let mut next = sources.iter();
    let mut reading: futures::stream::FuturesUnordered<_> = next.by_ref().take(k).map(|s| read(s)).collect();
    let mut asked: Vec<HostId> = sources.iter().take(k).map(|(_, _, h, _)| *h).collect();
    let started = tokio::time::Instant::now();
    let mut wait = HEDGE_BEFORE_ANY;
    let hedge = tokio::time::sleep(wait);
    tokio::pin!(hedge);
    loop {
        let (index, shard, h, got) = tokio::select! {
            got = futures::StreamExt::next(&mut reading) => match got {
                Some(got) => got,
                None => break,
            },
            () = &mut hedge, if next.len() > 0 => {
                if let Some(s) = next.next() {
                    asked.push(s.2);
                    reading.push(read(s));
                }
                hedge.as_mut().reset(tokio::time::Instant::now() + wait);
                continue;
            }
        };
        asked.retain(|a| *a != h);
        match got {
            Ok(bytes) => {
                have[index as usize] = Some(bytes);
                count += 1;
                if count == k {
                    break;
                }
                if count == 1 {
                    wait = (started.elapsed() * HEDGE_FACTOR).max(HEDGE_FLOOR);
                    hedge.as_mut().reset(started + wait);
                }
            }
            Err(e) => {
                tracing::debug!(host = %h, %shard, error = %e, "repair read failed");
                shared.repair_laggards.note(h);
                if let Some(s) = next.next() {
                    asked.push(s.2);
                    reading.push(read(s));
                }
            }
        }
    }
    // Reads still under way when k shards had arrived lagged behind the others.
    for h in asked {
        tracing::debug!(host = %h, "repair read lagged behind the others; the host is read last for a while");
        shared.repair_laggards.note(h);
    }
    drop(reading);
    // What the repairer read, per host: verified (each shard hash-checked on arrival).
    let read: Vec<(crate::metering::Subject, crate::metering::Kind, i64)> = sources
        .iter()
        .filter(|(index, _, _, _)| have[*index as usize].is_some())
        .map(|(_, _, h, _)| {
            (crate::metering::Subject::Host(h.0), crate::metering::Kind::RepairServed, pack.shard_size as i64)
        })
        .collect();
    if let Err(e) = shared.catalog(move |s| s.record_usage(&read, now())).await {
        tracing::warn!(error = %e, "could not record the repairer's reads as usage");
    }
    if count < k {
        return Err(Wait::After(format!("only {count} of the {k} shards needed could be read")));
    }
    let rebuilt = tokio::task::spawn_blocking(move || scatter_core::erasure::rebuild(&layout, &have))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;

    let mut repaired = 0;
    for (index, shard, old, state) in moving {
        let Some(new) = targets.pop() else { break };
        let Some(row) = host(new) else { continue };
        let bytes = rebuilt.shard(*index as usize).to_vec();
        if ShardId::of(&bytes) != *shard {
            return Err(Wait::After(format!(
                "rebuilt shard {index} does not match its id; the catalog or a shard is damaged"
            )));
        }
        // The shard moves only with the new host's receipt for exactly this upload.
        let receipt = match crate::shards::put(shared, row, shard, bytes).await {
            Ok(r) => r,
            Err(e) => {
                shared.repair_refusals.note(new);
                return Err(e.into());
            }
        };
        let (id, index, old) = (pack.id, *index, *old);
        if shared
            .catalog({
                let fence = fence.clone();
                move |s| {
                    let m = ShardMove { pack: &id, index, from: old, to: new, receipt: &receipt.0 };
                    s.move_shard(m, now(), Some(&fence))
                }
            })
            .await
            .map_err(|e| e.to_string())?
        {
            repaired += 1;
            crate::api::place::spread_changed(shared);
            // The copy left on `old` is deleted once a catalog backup knows the move.
            shared.backup_soon();
            // Only a shard an active host lost (its inventory lacks it, or it failed an audit
            // or a check) counts against that host. Draining, retiring, going offline, a
            // shrunk capacity (`surplus`) or a crowded pack are not the host failing what it
            // promised, and disabled or disqualified hosts answer for it in their state.
            if *state == ShardState::Lost && host(old).is_some_and(|h| h.state == Standing::Active) {
                shared.catalog(move |s| s.count_repair_caused(old)).await.map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(repaired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_that_refused_a_shard_is_passed_over_for_a_while() {
        let r = Recent::default();
        assert!(!r.recent(HostId(1)));
        r.note(HostId(1));
        assert!(r.recent(HostId(1)) && !r.recent(HostId(2)));
    }

    #[test]
    fn a_zone_settles_after_being_up_without_a_break() {
        let mut r = Respread::default();
        let settled = |r: &mut Respread, up: &[&str]| {
            let mut s: Vec<String> = r.settle(up).into_iter().collect();
            s.sort();
            s
        };
        for _ in 1..ZONE_SETTLES_AFTER {
            assert!(settled(&mut r, &["a", "b"]).is_empty());
        }
        assert_eq!(settled(&mut r, &["a", "b"]), ["a", "b"]);
        // b goes for one pass: it settles again only after as many passes from its return.
        assert_eq!(settled(&mut r, &["a"]), ["a"]);
        for _ in 1..ZONE_SETTLES_AFTER {
            assert_eq!(settled(&mut r, &["a", "b"]), ["a"]);
        }
        assert_eq!(settled(&mut r, &["a", "b"]), ["a", "b"]);
        assert!(r.up_since.len() == 2 && settled(&mut r, &[]).is_empty() && r.up_since.is_empty());
    }
}
