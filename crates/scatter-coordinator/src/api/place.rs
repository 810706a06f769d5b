//! Placement (`/v1/packs/place`), the grid's durability rule (`/v1/grid`) and users'
//! placement policies (`/v1/policy`).
//!
//! A placement applies, in order: the hosts that may take data at all (online, active, with
//! a period beyond the margin), the owner's policy (stored, overridden per request; a
//! delegate's conditions only narrow it), then [`crate::placement::choose`] under the
//! durability rule's limits. When nothing fits, the answer names the condition that could
//! not be met.

use super::*;
use crate::durability;
use crate::placement::Held;
use crate::room::{host_state, tolerance, MAX_RESERVED_BYTES, MAX_RESERVED_SHARDS};
use crate::store::{Domain, HostRow, Reservation, ReserveError, Standing};

/// The policies a placement must meet: the owner's stored policy with the request's
/// conditions over it and, for a delegate, the stored policy as well. The policy is the
/// owner's: a delegate's conditions may narrow it for one run, never loosen it.
async fn policies_for(sh: &Arc<Shared>, u: &UserRow, over: &Policy) -> Result<Vec<Policy>, ApiError> {
    let owner = u.id;
    let stored = db(sh, move |s| s.policy(owner)).await?.unwrap_or_default();
    let mine = stored.overridden_by(over);
    Ok(if u.me == u.id { vec![mine] } else { vec![stored, mine] })
}

pub(super) async fn place(State(sh): S, headers: HeaderMap, Body(req): Body<PlaceRequest>) -> ApiResult<PlaceResponse> {
    let u = caller(&sh, &headers, Right::Add).await?;
    scatter_core::erasure::check_redundancy(req.k, req.m).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let total = req.k as usize + req.m as usize;
    if req.shards.is_empty()
        || req.shards.len() + req.placed.len() > total
        || req.shard_size < MIN_SHARD
        || req.shard_size > MAX_SHARD
    {
        return Err(ApiError::BadRequest(format!(
            "a placement needs 1 to k+m shards (with those already placed) of {} to {}",
            ByteSize(MIN_SHARD),
            ByteSize(MAX_SHARD)
        )));
    }
    if req.exclude.len() > 1024 {
        return Err(ApiError::BadRequest("at most 1024 hosts may be excluded".into()));
    }
    let policies = policies_for(&sh, &u, &req.policy).await?;
    let hosts = db(&sh, |s| s.hosts()).await?;
    let (f, _, _) = tolerance(&sh, &hosts);
    let per_domain = durability::per_domain(req.k, req.m, f).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    // What the pack would be held to with every active host up: less, and the client says so.
    let full = durability::per_domain(req.k, req.m, crate::room::full_tolerance(&sh, &hosts)).unwrap_or(per_domain);
    for id in &req.placed {
        if !hosts.iter().any(|h| h.id == *id) {
            return Err(ApiError::BadRequest(format!("host {id} named as holding a shard is unknown")));
        }
    }
    let (caller_id, owner) = (u.me, u.id);
    let narrowed = policies.iter().any(|p| !p.is_empty());
    let some_down = !req.exclude.is_empty()
        || hosts.iter().any(|h| h.state == Standing::Active && host_state(&sh, h) != HostState::Online);
    // The tolerance a placement had to settle for, if less than the grid's f with every host up.
    let reduced = Arc::new(std::sync::Mutex::new(None::<u8>));
    let decide = {
        let sh = sh.clone();
        let reduced = reduced.clone();
        move |reserved: &crate::store::Reserved| -> Result<(Vec<Reservation>, Vec<Target>), ApiError> {
            let (targets, per_domain, survives) =
                match choose_targets(&sh, &u, &req, &hosts, &policies, reserved, per_domain) {
                    Ok(targets) => (targets, per_domain, f),
                    // Too few hosts *up* for the grid's f (some are down, or the client could not
                    // reach them): writes go on as long as every pack still survives one domain's
                    // loss, recorded under-spread; re-spreading restores the rule as hosts return.
                    // Full hosts or a narrow policy are no reason: those placements fail.
                    Err(ApiError::TooFewHosts(why)) if f > 1 && some_down => {
                        let relaxed = durability::per_domain(req.k, req.m, 1).unwrap_or(per_domain);
                        let targets = choose_targets(&sh, &u, &req, &hosts, &policies, reserved, relaxed)
                            .map_err(|_| ApiError::TooFewHosts(why))?;
                        (targets, relaxed, 1)
                    }
                    Err(e) => return Err(e),
                };
            *reduced.lock().unwrap_or_else(|p| p.into_inner()) = (per_domain > full).then_some(survives);
            let expires = now() + sh.reservation_ttl.as_secs().max(1);
            Ok(targets
                .into_iter()
                .map(|(index, shard, host, address)| {
                    let grant =
                        Grant { host, shard, op: Op::Put, max_size: req.shard_size, expires, nonce: rand::random() }
                            .sign(&sh.signing);
                    let reservation = Reservation {
                        host,
                        shard,
                        caller: u.me,
                        owner: u.id,
                        bytes: req.shard_size,
                        grant: scatter_proto::receipt::grant_hash(&grant),
                        code: (req.k, req.m),
                        per_domain,
                        expires,
                        narrowed,
                    };
                    (reservation, Target { index, host, address, grant })
                })
                .unzip())
        }
    };
    let placed = sh.catalog(move |s| Ok(s.reserve(caller_id, owner, now(), decide))).await?;
    match placed {
        Ok(targets) => {
            let reduced_to = *reduced.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(t) = reduced_to {
                tracing::info!(user = %owner, tolerate = f, survives = t, "too few hosts up: placed under-spread");
            }
            Ok(Json(PlaceResponse { targets, reduced_to }))
        }
        Err(ReserveError::Refused(e)) => Err(e),
        Err(ReserveError::Store(e)) => Err(e.into()),
    }
}

/// Most placements one request gives back: more than an account may hold at once.
const MAX_ABANDON: usize = 4 * MAX_RESERVED_SHARDS;

/// Gives back placements the caller will not commit (its upload failed or was interrupted):
/// they stop counting against hosts and the quota, and what their uploads left is deleted
/// from hosts where no pack and no one else's placement needs it. Only the caller's own
/// placements are dropped; naming anyone else's (or a recorded shard) does nothing.
pub(super) async fn abandon(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<AbandonRequest>,
) -> ApiResult<AbandonResponse> {
    let u = caller(&sh, &headers, Right::Add).await?;
    if req.shards.len() > MAX_ABANDON {
        return Err(ApiError::BadRequest(format!("at most {MAX_ABANDON} placements are given back at once")));
    }
    let keys: Vec<(HostId, ShardId)> = req.shards.iter().map(|s| (s.host, s.shard)).collect();
    let me = u.me;
    let dropped = db(&sh, move |s| s.abandon(me, &keys, now())).await?;
    let named = req.shards.len();
    if dropped > 0 {
        tracing::info!(user = %me, named, placements = dropped, "placements given back; their uploads will be deleted");
    } else {
        tracing::debug!(user = %me, named, "placements given back: none of them was held by this account");
    }
    Ok(Json(AbandonResponse { dropped }))
}

/// The hosts for a placement, as (index, shard, host, address), given what is reserved: the
/// caller's caps and quota first, then the policies, then the durability rule.
#[allow(clippy::too_many_arguments)]
fn choose_targets(
    sh: &Shared,
    u: &UserRow,
    req: &PlaceRequest,
    hosts: &[HostRow],
    policies: &[Policy],
    reserved: &crate::store::Reserved,
    per_domain: usize,
) -> Result<Vec<(u8, ShardId, HostId, String)>, ApiError> {
    let used = reserved.used;
    let adding = req.shard_size * req.shards.len() as u64;
    // What the caller has placed and not committed counts: against its share of the grid (so
    // placements without uploads cannot fill it for everyone) and against the quota.
    let (mine, mine_bytes) = reserved.caller;
    if mine + req.shards.len() > MAX_RESERVED_SHARDS || mine_bytes + adding > MAX_RESERVED_BYTES {
        return Err(ApiError::Busy(format!(
            "this account has {mine} shards ({}) placed and not yet committed; commit or wait {} s for them to lapse",
            ByteSize(mine_bytes),
            sh.reservation_ttl.as_secs()
        )));
    }
    if u.quota.is_some_and(|quota| used + reserved.owner + adding > quota) {
        // A delegate does not see its owner's usage (`usage` is refused to it): the figures
        // would tell it, to the byte, by trying placements of other sizes.
        if u.me != u.id {
            return Err(ApiError::Quota(scatter_proto::api::DELEGATE_QUOTA.into()));
        }
        return Err(ApiError::Quota(format!(
            "this would pass the quota: {} of {} used (on hosts, with redundancy, and in the catalog by objects, chunks and snapshots), {} more being uploaded, and this pack needs {} more; remove data (`scatter prune` also frees what an interrupted put or backup stored, once its session has ended: a minute) or ask the grid's admin for more",
            ByteSize(used),
            ByteSize(u.quota.unwrap_or(0)),
            ByteSize(reserved.owner),
            ByteSize(adding)
        )));
    }
    let held: Vec<Held<'_>> = req
        .placed
        .iter()
        .filter_map(|id| hosts.iter().find(|h| h.id == *id))
        .map(|h| Held { host: h.id, domain: h.domain(), zone: h.zone.as_str() })
        .collect();
    let mut allowed_hosts = crate::room::room(sh, hosts, &reserved.by_host);
    for policy in policies {
        allowed_hosts = crate::room::allowed(policy, hosts, allowed_hosts).map_err(ApiError::TooFewHosts)?;
    }
    let candidates: Vec<Candidate> = allowed_hosts.into_iter().filter(|c| !req.exclude.contains(&c.host)).collect();
    let total = req.k as usize + req.m as usize;
    let limits = placement::limits(total, per_domain, &candidates, req.shard_size, &held);
    let ids: Vec<ShardId> = req.shards.iter().map(|s| s.shard).collect();
    let chosen =
        placement::choose(&candidates, &ids, req.shard_size, &held, limits, &mut rand::thread_rng()).map_err(|e| {
            // Hosts a heartbeat or two late (busy disks, a slow network) get no new shards
            // for now; when they might make up the difference the client should wait, not
            // fail.
            let late = hosts
                .iter()
                .filter(|h| host_state(sh, h) == HostState::Suspect && !req.exclude.contains(&h.id))
                .count();
            if late > 0 && e.placed + late * per_domain >= e.needed {
                // Nothing to change on the grid: those hosts are expected back (or this
                // coordinator just started and has not heard from them yet).
                return ApiError::HostsLate(e.why, late);
            }
            let why = if e.full {
                format!("{}; add hosts or capacity, or free space (`scatter forget` with `--prune`)", e.why)
            } else if e.cramped {
                format!(
                    "{}; give those hosts room (or drain them), add hosts in other failure domains or zones, or lower the grid's rule (`scatter coordinator --tolerate`)",
                    e.why
                )
            } else {
                format!("{}; add hosts in other failure domains or zones, or relax the placement policy", e.why)
            };
            ApiError::TooFewHosts(why)
        })?;
    Ok(req
        .shards
        .iter()
        .zip(chosen)
        .map(|(s, host)| {
            let address = hosts.iter().find(|h| h.id == host).map(|h| h.address.clone()).unwrap_or_default();
            (s.index, s.shard, host, address)
        })
        .collect())
}

/// Checks a pack commit's spread against the rule as it stood when its shards were placed:
/// no failure domain may hold more than `per_domain` of them (`domains[i]` is the domain of
/// `shards[i]`'s host, if registered), and a host holds a shard once.
pub(super) fn check_spread(
    shards: &[StoredShard],
    domains: &[Option<Domain>],
    per_domain: usize,
) -> Result<(), ApiError> {
    let mut counts: HashMap<Domain, usize> = HashMap::new();
    let mut pairs: Vec<(HostId, ShardId)> = Vec::with_capacity(shards.len());
    for (s, domain) in shards.iter().zip(domains) {
        let domain = domain.ok_or_else(|| {
            ApiError::BadRequest(format!("shard {} names host {}, which is not registered", s.index, s.host))
        })?;
        let n = counts.entry(domain).or_default();
        *n += 1;
        if *n > per_domain {
            return Err(ApiError::BadRequest(format!(
                "the pack puts more than {per_domain} of its shards in one failure domain (with host {}), which the grid's durability rule does not allow; upload it again",
                s.host
            )));
        }
        if pairs.contains(&(s.host, s.shard)) {
            return Err(ApiError::BadRequest("the pack puts two identical shards on one host".into()));
        }
        pairs.push((s.host, s.shard));
    }
    Ok(())
}

/// The grid's rule; with `spread`, also how live packs meet it (reads every shard's row).
pub(crate) async fn grid_info(sh: &Arc<Shared>, hosts: &[HostRow], spread: bool) -> Result<GridInfo, ApiError> {
    let (f, auto, domains) = tolerance(sh, hosts);
    let (data, parity) = durability::default_code(f, domains);
    let mut info = GridInfo { tolerate: f, auto, domains, data, parity, lowest_tolerance: None, crowded_packs: 0 };
    if spread {
        let cached = *sh.spread.lock().unwrap_or_else(|p| p.into_inner());
        let (lowest, crowded) = match cached {
            Some((at, lowest, crowded)) if at.elapsed() < sh.checker_interval => (lowest, crowded),
            _ => {
                let (lowest, crowded) = pack_spread(sh, hosts, f).await?;
                *sh.spread.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), lowest, crowded));
                (lowest, crowded)
            }
        };
        info.lowest_tolerance = lowest;
        info.crowded_packs = crowded;
    }
    Ok(info)
}

/// The fewest domain losses any live pack survives now, and how many packs one domain holds
/// more of than the rule at `f` allows: from what each pack keeps of its spread, and the
/// shards of the packs that may be damaged (so it costs what is damaged, not what is stored).
async fn pack_spread(sh: &Arc<Shared>, hosts: &[HostRow], f: u8) -> Result<(Option<u32>, u64), ApiError> {
    let cutoff = crate::room::online_cutoff(sh);
    let by_host: HashMap<HostId, (Domain, bool)> = hosts
        .iter()
        .map(|h| (h.id, (h.domain(), h.state == crate::store::Standing::Active && h.last_seen >= cutoff)))
        .collect();
    let codes = db(sh, |s| s.codes()).await?;
    let candidates = {
        let (sh2, hosts) = (sh.clone(), hosts.to_vec());
        db(sh, move |s| crate::room::candidates(&sh2, s, &hosts)).await?
    };
    let caps = crate::room::zone_caps(&candidates, f, &codes);
    let (mut lowest, crowded, damaged) = db(sh, move |s| s.spread_summary(f, &caps, cutoff)).await?;
    for (k, _, shards) in damaged {
        let mut held: HashMap<Domain, usize> = HashMap::new();
        for (host, ok) in shards {
            if let Some((domain, true)) = by_host.get(&host) {
                if ok {
                    *held.entry(*domain).or_default() += 1;
                }
            }
        }
        let held: Vec<usize> = held.into_values().collect();
        let t = durability::tolerance(&held, k as usize).unwrap_or(0);
        lowest = Some(lowest.map_or(t, |l| l.min(t)));
    }
    Ok((lowest, crowded))
}

/// Drops `status`'s view of how packs meet the rule: packs or shards changed.
pub(crate) fn spread_changed(sh: &Shared) {
    *sh.spread.lock().unwrap_or_else(|p| p.into_inner()) = None;
}

pub(super) async fn grid(State(sh): S, headers: HeaderMap) -> ApiResult<GridInfo> {
    user(&sh, &headers).await?;
    let hosts = db(&sh, |s| s.hosts()).await?;
    Ok(Json(grid_info(&sh, &hosts, false).await?))
}

pub(super) async fn policy(State(sh): S, headers: HeaderMap) -> ApiResult<Policy> {
    // Where the owner keeps its data is the owner's to see: delegates place under the policy
    // without reading it.
    let u = caller(&sh, &headers, Right::Manage).await?;
    Ok(Json(db(&sh, move |s| s.policy(u.id)).await?.unwrap_or_default()))
}

pub(super) async fn set_policy(State(sh): S, headers: HeaderMap, Body(p): Body<Policy>) -> ApiResult<Policy> {
    // The policy is the data owner's: delegates place under it but do not change it.
    let u = caller(&sh, &headers, Right::Delete).await?;
    if p.zones.iter().chain(&p.exclude_zones).any(|z| z.is_empty() || z.len() > 64) {
        return Err(ApiError::BadRequest("zone names in a policy are 1 to 64 characters".into()));
    }
    let stored = p.clone();
    db(&sh, move |s| s.set_policy(u.id, (!stored.is_empty()).then_some(&stored))).await?;
    event(&sh, &u, "policy.set", p.to_string()).await;
    Ok(Json(p))
}

pub(super) async fn capacity(State(sh): S, headers: HeaderMap) -> ApiResult<CapacityResponse> {
    let u = user(&sh, &headers).await?;
    if u.role != Role::Admin {
        return Err(ApiError::Forbidden("only the grid's admin sees its capacity".into()));
    }
    let hosts = db(&sh, |s| s.hosts()).await?;
    let grid = grid_info(&sh, &hosts, false).await?;
    let cands = {
        let hosts = hosts.clone();
        let sh2 = sh.clone();
        db(&sh, move |s| crate::room::candidates(&sh2, s, &hosts)).await?
    };
    let n = grid.data as u64 + grid.parity as u64;
    let per_domain = durability::per_domain(grid.data, grid.parity, grid.tolerate).unwrap_or(1);
    let per_zone = placement::limits(n as usize, per_domain, &cands, 1, &[]).per_zone as u64;
    let per_domain = per_domain as u64;
    let rooms: Vec<durability::Room<Domain, String>> =
        cands.into_iter().map(|c| durability::Room { domain: c.domain, zone: c.zone, free: c.free }).collect();
    let raw = durability::capacity(&rooms, (per_domain, n), (per_zone, n));
    Ok(Json(CapacityResponse {
        hosts: rooms.len(),
        free: rooms.iter().fold(0u64, |sum, r| sum.saturating_add(r.free)),
        raw,
        user_data: (raw as u128 * grid.data as u128 / n.max(1) as u128) as u64,
        grid,
    }))
}
