//! Administration (`/v1/admin/*`, admins only): invites, users, host states, and operators.

use super::*;
use crate::store::{HostRow, Standing};

pub(super) async fn invite(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<InviteRequest>,
) -> ApiResult<InviteResponse> {
    let admin = caller(&sh, &headers, Right::Admin).await?;
    check_user_name(&req.name)?;
    match (req.role.is_delegate(), req.owner) {
        (true, None) => {
            return Err(ApiError::BadRequest(format!(
                "a {} works on another user's data: say whose with --of USER",
                req.role
            )))
        }
        (false, Some(_)) => {
            return Err(ApiError::BadRequest("only readers and appenders work on another user's data".into()))
        }
        (true, Some(owner)) => {
            if !db(&sh, move |s| s.user_exists(owner)).await? {
                return Err(ApiError::NotFound(format!(
                    "there is no user {owner}; `scatter admin user ls` lists them"
                )));
            }
        }
        (false, None) => {}
    }
    let secret = format!("sct_{}", random_secret());
    let hash = secret_hash(&secret);
    let (name, role) = (req.name.clone(), req.role);
    if req.trusted && req.role != Role::Appender {
        return Err(ApiError::BadRequest(
            "only an appender writes snapshots to trust; leave out --trusted for other roles".into(),
        ));
    }
    check_quota(req.quota)?;
    let (trusted, quota, owner) = (req.trusted, req.quota, req.owner);
    if !db(&sh, move |s| s.add_invite(&hash, &name, role, quota, owner, trusted)).await? {
        return Err(ApiError::Conflict(format!(
            "the name `{}` is taken by a user or an unused invite; pick another (`scatter admin user ls`, `scatter admin invite ls`)",
            req.name
        )));
    }
    let detail = format!(
        "{} as {}{}{}",
        req.name,
        req.role,
        req.owner.map(|o| format!(" of {o}")).unwrap_or_default(),
        if req.trusted { ", trusted" } else { "" }
    );
    event(&sh, &admin, "user.invited", detail).await;
    Ok(Json(InviteResponse { token: sh.token(&secret) }))
}

/// `POST /v1/admin/users/device`: a one-time token that adds a device to an existing user
/// (the new device brings the user's keys: a key export, or the recovery code).
pub(super) async fn device_invite(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<DeviceInviteRequest>,
) -> ApiResult<InviteResponse> {
    let admin = caller(&sh, &headers, Right::Admin).await?;
    let secret = format!("sct_{}", random_secret());
    let hash = secret_hash(&secret);
    let user = req.user;
    if !db(&sh, move |s| s.add_device_token(&hash, user)).await? {
        return Err(ApiError::NotFound(format!("there is no enabled user {user}; `scatter admin user ls` lists them")));
    }
    event(&sh, &admin, "device.invited", format!("for {user}")).await;
    Ok(Json(InviteResponse { token: sh.token(&secret) }))
}

pub(super) async fn users(State(sh): S, headers: HeaderMap) -> ApiResult<Vec<UserEntry>> {
    caller(&sh, &headers, Right::Admin).await?;
    Ok(Json(db(&sh, |s| s.users()).await?))
}

pub(super) async fn disable_user(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<UserRequest>,
) -> ApiResult<serde_json::Value> {
    on_user(&sh, &headers, req.user, "user.disabled", String::new(), move |s, u| s.set_disabled(u, true)).await
}

pub(super) async fn remove_user(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<UserRequest>,
) -> ApiResult<serde_json::Value> {
    on_user(&sh, &headers, req.user, "user.removed", String::new(), move |s, u| s.remove_user(u, now())).await
}

/// `POST /v1/admin/users/enable`: a disabled user's requests are accepted again (not a
/// removed one's: its data and keys are gone).
pub(super) async fn enable_user(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<UserRequest>,
) -> ApiResult<serde_json::Value> {
    on_user(&sh, &headers, req.user, "user.enabled", String::new(), move |s, u| s.set_disabled(u, false)).await
}

/// `POST /v1/admin/users/quota`: sets or clears a user's quota. Readers and appenders have
/// none of their own: their writes count against their owner's.
pub(super) async fn set_quota(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<QuotaRequest>,
) -> ApiResult<serde_json::Value> {
    caller(&sh, &headers, Right::Admin).await?;
    check_quota(req.quota)?;
    let user = req.user;
    let owner = db(&sh, move |s| s.users()).await?.into_iter().find(|u| u.id == user).and_then(|u| u.owner);
    if let Some(owner) = owner {
        return Err(ApiError::BadRequest(format!(
            "{user} works on {owner}'s data and counts against {owner}'s quota; set {owner}'s instead"
        )));
    }
    let detail = match req.quota {
        Some(q) => format!(" to {}", ByteSize(q)),
        None => " cleared".into(),
    };
    on_user(&sh, &headers, user, "user.quota", detail, move |s, u| s.set_quota(u, req.quota)).await
}

/// Refuses a quota too small to be meant (a size given without its unit).
fn check_quota(quota: Option<u64>) -> Result<(), ApiError> {
    match quota {
        Some(q) if q < MIN_QUOTA => Err(ApiError::BadRequest(format!(
            "a quota of {} cannot hold even one pack; give at least {} (with its unit, e.g. 100GiB)",
            ByteSize(q),
            ByteSize(MIN_QUOTA)
        ))),
        _ => Ok(()),
    }
}

/// `GET /v1/admin/invites`: the invites not used yet.
pub(super) async fn invites(State(sh): S, headers: HeaderMap) -> ApiResult<Vec<InviteEntry>> {
    caller(&sh, &headers, Right::Admin).await?;
    Ok(Json(db(&sh, |s| s.invites()).await?))
}

/// `POST /v1/admin/invites/remove`: revokes an unused invite, named by a unique prefix of
/// its id.
pub(super) async fn remove_invite(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<InviteIdRequest>,
) -> ApiResult<serde_json::Value> {
    let admin = caller(&sh, &headers, Right::Admin).await?;
    let id = req.id.trim().to_owned();
    if id.len() < 6 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::BadRequest(
            "an invite's id is hex digits, at least 6 of them; `scatter admin invite ls` lists them".into(),
        ));
    }
    let found = db(&sh, move |s| s.remove_invite(&id)).await?;
    match found.as_slice() {
        [] => Err(ApiError::NotFound(format!(
            "no unused invite has id {}; `scatter admin invite ls` lists them",
            req.id.trim()
        ))),
        [one] => {
            event(&sh, &admin, "invite.revoked", format!("{} ({} {})", one.id, one.name, one.role)).await;
            Ok(Json(serde_json::json!({ "id": one.id, "name": one.name })))
        }
        _ => Err(ApiError::BadRequest(format!(
            "{} invites have ids starting {}; give more of the id",
            found.len(),
            req.id.trim()
        ))),
    }
}

/// Applies `change` to another user (false from it: no such user, or a removed one) and
/// records `action` with `detail` after the user's id.
async fn on_user(
    sh: &Arc<Shared>,
    headers: &HeaderMap,
    user: UserId,
    action: &'static str,
    detail: String,
    change: impl FnOnce(&Store, UserId) -> Result<bool, StoreError> + Send + 'static,
) -> ApiResult<serde_json::Value> {
    let admin = caller(sh, headers, Right::Admin).await?;
    change_user(sh, &admin, user, action, detail, change).await?;
    Ok(Json(serde_json::json!({})))
}

/// What [`on_user`] does once the caller is known to be an admin: the API and the dashboard
/// both change users through it.
pub(crate) async fn change_user(
    sh: &Arc<Shared>,
    admin: &UserRow,
    user: UserId,
    action: &'static str,
    detail: String,
    change: impl FnOnce(&Store, UserId) -> Result<bool, StoreError> + Send + 'static,
) -> Result<(), ApiError> {
    require(admin, Right::Admin)?;
    if user == admin.me {
        return Err(ApiError::BadRequest("an admin cannot change its own account; ask another admin".into()));
    }
    if !db(sh, move |s| change(s, user)).await? {
        return Err(ApiError::NotFound(format!(
            "there is no user {user}, or it was removed with its data; `scatter admin user ls` lists them"
        )));
    }
    event(sh, admin, action, format!("{user}{detail}")).await;
    // Security-relevant: a restored catalog must not undo it.
    sh.backup_soon();
    Ok(())
}

/// Sets a host's administrative state (`draining` or `disabled`).
async fn set_host(sh: &Arc<Shared>, headers: &HeaderMap, host: HostId, state: Standing) -> Result<(), ApiError> {
    let admin = caller(sh, headers, Right::Admin).await?;
    set_host_as(sh, &admin, host, state).await
}

/// [`set_host`] for a caller known already.
async fn set_host_as(sh: &Arc<Shared>, admin: &UserRow, host: HostId, state: Standing) -> Result<(), ApiError> {
    require(admin, Right::Admin)?;
    if !db(sh, move |s| s.set_host_state(host, state)).await? {
        return Err(ApiError::NotFound(format!("there is no host {host}; `scatter status` lists them")));
    }
    event(sh, admin, "host.state", format!("{host} {state}")).await;
    // Security-relevant: a restored catalog must not bring a removed host back.
    sh.backup_soon();
    Ok(())
}

/// Drains a host: its shards are rebuilt elsewhere, then it is retired. Refused, with the
/// figures, when the other hosts cannot take its shards under the grid's rule as it stands
/// (failure domains, zones, room), unless forced; a forced drain says what stays degraded.
pub(super) async fn drain(State(sh): S, headers: HeaderMap, Body(req): Body<DrainRequest>) -> ApiResult<DrainResponse> {
    let admin = caller(&sh, &headers, Right::Admin).await?;
    Ok(Json(drain_as(&sh, &admin, req).await?))
}

/// What [`drain`] does once the caller is known: the API and the dashboard both drain
/// hosts through it.
pub(crate) async fn drain_as(sh: &Arc<Shared>, admin: &UserRow, req: DrainRequest) -> Result<DrainResponse, ApiError> {
    require(admin, Right::Admin)?;
    let sh = sh.clone();
    let hosts = db(&sh, |s| s.hosts()).await?;
    let Some(host) = hosts.iter().find(|h| h.id == req.host) else {
        return Err(ApiError::NotFound(format!("there is no host {}; `scatter status` lists them", req.host)));
    };
    // A retired host was drained (it would be put back to draining); a disqualified one's
    // shards are rebuilt elsewhere already.
    if matches!(host.state, Standing::Retired | Standing::Disqualified) {
        return Err(ApiError::Conflict(format!(
            "host {} is {} already: there is nothing to drain",
            req.host, host.state
        )));
    }
    let warning = match (drain_shortfall(&sh, &hosts, req.host).await?, req.force) {
        (None, _) => None,
        (Some(short), false) => return Err(ApiError::Conflict(format!("{}: add a host or use --force", short.why))),
        (Some(short), true) => Some(match short.lowered_to {
            Some(f) => format!(
                "{}; draining anyway: its shards move to the hosts left, where their packs survive {f} host loss(es) instead of {} until hosts are added",
                short.why, short.now
            ),
            None => format!(
                "{}; draining anyway: packs with a shard on it stay degraded until hosts are added (`scatter admin health` says why repair waits)",
                short.why
            ),
        }),
    };
    set_host_as(&sh, admin, req.host, Standing::Draining).await?;
    if let Some(w) = &warning {
        tracing::warn!(host = %req.host, "{w}");
    }
    Ok(DrainResponse { warning })
}

/// Why a drain cannot finish as the grid's rule asks.
struct Shortfall {
    /// The sentence, with the figures.
    why: String,
    /// The grid's tolerance now.
    now: u8,
    /// The lower tolerance the grid falls to without the host, if at that one every shard
    /// can move (the repair then moves them, at less redundancy).
    lowered_to: Option<u8>,
}

/// Whether the hosts that take data, without `host`, can take what it holds under the rule
/// placement and repair apply (the grid's f now; failure domains, zones and room), as a
/// sentence with the figures; `None` when they can (or it holds nothing).
async fn drain_shortfall(sh: &Arc<Shared>, hosts: &[HostRow], host: HostId) -> Result<Option<Shortfall>, ApiError> {
    let held = db(sh, move |s| s.held_by_code(host)).await?;
    if held.is_empty() {
        return Ok(None);
    }
    let rest: Vec<HostRow> = hosts.iter().filter(|h| h.id != host).cloned().collect();
    let cands = {
        let (sh2, rest) = (sh.clone(), rest.clone());
        db(sh, move |s| crate::room::candidates(&sh2, s, &rest)).await?
    };
    let (now, _, _) = crate::room::tolerance(sh, hosts);
    let (after, _, _) = crate::room::tolerance(sh, &rest);
    let shards: u64 = held.iter().map(|h| h.2).sum();
    let bytes: u64 = held.iter().map(|h| h.3).sum();
    let free = cands.iter().fold(0u64, |sum, c| sum.saturating_add(c.free));
    let zones = cands.iter().map(|c| c.zone.as_str()).collect::<std::collections::HashSet<_>>().len();
    let domains = cands.iter().map(|c| c.domain).collect::<std::collections::HashSet<_>>().len();
    let figures = format!(
        "host {host} holds {shards} shard(s) ({}); without it {} host(s) in {zones} zone(s) ({domains} failure domain(s)) take data, with {} free",
        ByteSize(bytes),
        cands.len(),
        ByteSize(free)
    );
    if free < bytes {
        let why = format!("{figures}, less than the {} to move", ByteSize(bytes));
        return Ok(Some(Shortfall { why, now, lowered_to: None }));
    }
    // Room is checked in all above; here, whether the hosts' domains and zones can hold a
    // whole pack of each code at tolerance f (as repair places a moved shard).
    let unfit = |f: u8| -> Option<String> {
        let roomy: Vec<Candidate> =
            cands.iter().filter(|c| c.free > 0).map(|c| Candidate { free: u64::MAX >> 1, ..c.clone() }).collect();
        held.iter().find_map(|&(k, m, _, _)| {
            let n = k as usize + m as usize;
            let per_domain = crate::durability::per_domain(k, m, f).unwrap_or(1);
            let ids: Vec<ShardId> = (0..n).map(|i| ShardId::of(&[i as u8])).collect();
            let limits = placement::limits(n, per_domain, &roomy, 1, &[]);
            let e = placement::choose(&roomy, &ids, 1, &[], limits, &mut rand::thread_rng()).err()?;
            Some(if domains < n.div_ceil(per_domain) {
                format!(
                    "packs of {k}+{m} need {} failure domains (at most {per_domain} of their shards in each, to survive {f} host loss(es) as the grid does now)",
                    n.div_ceil(per_domain)
                )
            } else {
                format!("packs of {k}+{m} do not fit the zones left ({})", e.why)
            })
        })
    };
    Ok(unfit(now).map(|why| Shortfall {
        why: format!("{figures}, and {why}"),
        now,
        lowered_to: (after < now && unfit(after).is_none()).then_some(after),
    }))
}

pub(super) async fn disable_host(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<HostRequest>,
) -> ApiResult<serde_json::Value> {
    set_host(&sh, &headers, req.host, Standing::Disabled).await?;
    Ok(Json(serde_json::json!({})))
}

/// `POST /v1/admin/hosts/enable`: a draining or disabled host is active again. A draining
/// host was trusted all along: it keeps the shards not moved yet. A disabled host was not
/// (it may have been compromised): it comes back only once repair has moved every shard the
/// catalog had on it, so nothing it held counts again unchecked; it starts empty, and what
/// is left on its disk is deleted as orphans.
pub(super) async fn enable_host(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<HostRequest>,
) -> ApiResult<serde_json::Value> {
    let admin = caller(&sh, &headers, Right::Admin).await?;
    let host = req.host;
    let Some(row) = db(&sh, |s| s.hosts()).await?.into_iter().find(|h| h.id == host) else {
        return Err(ApiError::NotFound(format!("there is no host {host}; `scatter status` lists them")));
    };
    match row.state {
        Standing::Draining => {}
        Standing::Disabled if row.shards == 0 => {}
        Standing::Disabled => {
            return Err(ApiError::Conflict(format!(
                "host {host} was disabled and the catalog still has {} shard(s) on it that repair has not moved yet; \
                 its shards are not trusted again, so enable it once `scatter admin host ls` shows none",
                row.shards
            )))
        }
        Standing::Active => return Err(ApiError::Conflict(format!("host {host} is already active"))),
        other => {
            return Err(ApiError::Conflict(format!(
                "host {host} is {other}, for good; it can join again as a new host with a fresh data directory"
            )))
        }
    }
    let from = row.state;
    let changed = db(&sh, move |s| s.change_host_state(host, &[from], Standing::Active, None, now())).await?;
    if !changed {
        return Err(ApiError::Conflict(format!(
            "host {host} changed state meanwhile; look again with `scatter admin host ls`"
        )));
    }
    event(&sh, &admin, "host.state", format!("{host} {} (was {from})", Standing::Active)).await;
    Ok(Json(serde_json::json!({ "was": from.as_str() })))
}

/// A new user's name: 1 to 64 bytes of printable characters, without spaces around it, and
/// not a user id: commands take a user by id or by name, and a user named `u2` was taken
/// for user u2 (a quota set, or data removed, for the wrong account).
fn check_user_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) || name.trim() != name {
        return Err(ApiError::BadRequest(
            "a user name is 1 to 64 bytes of printable characters, with no space at either end".into(),
        ));
    }
    if name.parse::<UserId>().is_ok() {
        return Err(ApiError::BadRequest(format!(
            "`{name}` reads as a user id, and commands take a user by id or by name: pick another name"
        )));
    }
    Ok(())
}

/// Registers an operator and answers with the join token for its hosts. The token is made
/// and kept like an invite: random, shown once, stored only as its hash.
pub(super) async fn add_operator(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<OperatorRequest>,
) -> ApiResult<OperatorResponse> {
    let admin = caller(&sh, &headers, Right::Admin).await?;
    let name = req.name.trim().to_owned();
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest("an operator's name is 1 to 64 printable characters".into()));
    }
    let secret = format!("sct_{}", random_secret());
    let hash = secret_hash(&secret);
    let (n, independent) = (name.clone(), req.independent);
    let id = db(&sh, move |s| s.add_operator(&n, &hash, independent, now())).await?.ok_or_else(|| {
        ApiError::Conflict(format!("an operator named `{name}` exists; `scatter admin operator ls` lists them"))
    })?;
    let detail = format!("{name} (operator {id}){}", if independent { ", independent hosts" } else { "" });
    event(&sh, &admin, "operator.added", detail).await;
    Ok(Json(OperatorResponse { id, name, token: sh.token(&secret) }))
}

pub(super) async fn operators(State(sh): S, headers: HeaderMap) -> ApiResult<Vec<OperatorEntry>> {
    caller(&sh, &headers, Right::Admin).await?;
    Ok(Json(db(&sh, |s| s.operators()).await?))
}

/// Declares whether an operator's hosts fail independently. Packs placed while they counted
/// as one domain stay valid; packs placed while independent are re-spread by the repairer
/// when they now hold too much of one domain.
pub(super) async fn operator_independent(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<OperatorIndependentRequest>,
) -> ApiResult<serde_json::Value> {
    let admin = caller(&sh, &headers, Right::Admin).await?;
    let (name, independent) = (req.name.clone(), req.independent);
    let id = db(&sh, move |s| s.set_operator_independent(&name, independent)).await?.ok_or_else(|| {
        ApiError::NotFound(format!("there is no operator `{}`; `scatter admin operator ls` lists them", req.name))
    })?;
    let detail = format!("{} (operator {id}) {}", req.name, if independent { "independent" } else { "one domain" });
    event(&sh, &admin, "operator.independent", detail).await;
    Ok(Json(serde_json::json!({})))
}

#[derive(serde::Deserialize)]
pub(super) struct EventsQuery {
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

pub(super) async fn events(
    State(sh): S,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Vec<crate::store::Event>> {
    caller(&sh, &headers, Right::Admin).await?;
    let limit = q.limit.min(10_000);
    Ok(Json(db(&sh, move |s| s.events(limit)).await?))
}

/// Takes a catalog backup now (even when nothing changed since the last one).
pub(super) async fn catalog_backup(State(sh): S, headers: HeaderMap) -> ApiResult<CatalogBackupResponse> {
    let admin = caller(&sh, &headers, Right::Admin).await?;
    let taken = crate::catalog_backup::take(&sh, true).await.map_err(|e| match e {
        crate::catalog_backup::BackupFailed::NotSqlite => ApiError::BadRequest(e.to_string()),
        crate::catalog_backup::BackupFailed::NoHosts | crate::catalog_backup::BackupFailed::TooFewStored { .. } => {
            ApiError::TooFewHosts(e.to_string())
        }
        _ => ApiError::Internal(e.to_string()),
    })?;
    event(&sh, &admin, "catalog.backup", format!("sequence {} on {} hosts", taken.seq, taken.hosts)).await;
    Ok(Json(taken))
}

/// `GET /v1/admin/locks?user=N`: every lock and expiry the coordinator holds (of one user).
pub(super) async fn locks(State(sh): S, headers: HeaderMap, Query(q): Query<LocksQuery>) -> ApiResult<Vec<LockEntry>> {
    caller(&sh, &headers, Right::Admin).await?;
    let user = q.user.map(UserId);
    Ok(Json(db(&sh, move |s| s.holds(user)).await?))
}

#[derive(Deserialize)]
pub(super) struct LocksQuery {
    user: Option<u64>,
}

/// `POST /v1/admin/locks/lift`: lifts a governance lock, recorded with its reason as an
/// event; a compliance lock in force is refused (nobody may lift it).
pub(super) async fn lift_lock(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<LiftLockRequest>,
) -> ApiResult<serde_json::Value> {
    let admin = caller(&sh, &headers, Right::Admin).await?;
    let reason: String = req.reason.trim().chars().take(200).collect();
    if reason.is_empty() {
        return Err(ApiError::BadRequest("say why the lock is lifted (--reason): it goes into the events".into()));
    }
    let (target, id) = (req.target, req.id.clone());
    let lifted = match db(&sh, move |s| s.lift_lock(target, &id, now())).await {
        Err(e) => {
            let what = format!("{target:?}").to_lowercase();
            event(&sh, &admin, "lock.lift_refused", format!("{what} {}: {e}", req.id)).await;
            return Err(e);
        }
        Ok(l) => l,
    };
    // A lock already lifted or ended is no lift to record (it said "Lifted" again).
    let Some((user, lock)) = lifted.filter(|(_, lock)| lock.is_some_and(|l| l.holds_at(now()))) else {
        return Err(ApiError::NotFound(format!(
            "nothing with id {} is locked now (a lock that ended or was lifted stays listed as such); `scatter admin lock ls` lists locks",
            req.id
        )));
    };
    let was =
        lock.map(|l| format!("{} until {}", l.mode, crate::lock::utc(l.until))).unwrap_or_else(|| "no lock".into());
    // Only the kind lowercased: the reason and the times are as given.
    let what = format!("{:?}", req.target).to_lowercase();
    let detail = format!("{what} {} of {user} ({was}): {reason}", req.id);
    event(&sh, &admin, "lock.lifted", detail).await;
    sh.backup_soon();
    Ok(Json(serde_json::json!({})))
}

/// `POST /v1/admin/users/locks`: a user's lock maxima (its own, its delegates') and default
/// lock.
pub(super) async fn set_lock_limits(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<LockLimitsRequest>,
) -> ApiResult<LockLimits> {
    caller(&sh, &headers, Right::Admin).await?;
    let user = req.user;
    let owner = db(&sh, move |s| s.users()).await?.into_iter().find(|u| u.id == user).and_then(|u| u.owner);
    if let Some(owner) = owner {
        return Err(ApiError::BadRequest(format!(
            "{user} works on {owner}'s data and takes {owner}'s delegate maximum; set {owner}'s (--max-delegate-lock)"
        )));
    }
    let detail = format!(
        "{}{}{}{}",
        req.max_lock.map(|v| format!(" max-lock {v}s")).unwrap_or_default(),
        req.max_delegate_lock.map(|v| format!(" max-delegate-lock {v}s")).unwrap_or_default(),
        req.default_lock.map(|v| format!(" default-lock {v}s")).unwrap_or_default(),
        req.default_mode.map(|m| format!(" default-mode {m}")).unwrap_or_default(),
    );
    let r = req.clone();
    let _: Json<serde_json::Value> = on_user(&sh, &headers, user, "user.locks", detail, move |s, u| {
        s.set_lock_limits(u, r.max_lock, r.max_delegate_lock, r.default_lock, r.default_mode)
    })
    .await?;
    Ok(Json(db(&sh, move |s| s.lock_limits(user)).await?))
}
