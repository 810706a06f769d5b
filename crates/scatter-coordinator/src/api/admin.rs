//! Administration (`/v1/admin/*`, admins only): invites, users, host states, and operators.

use super::*;
use crate::store::Standing;

pub(super) async fn invite(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<InviteRequest>,
) -> ApiResult<InviteResponse> {
    let admin = caller(&sh, &headers, Right::Admin).await?;
    if req.name.is_empty() || req.name.len() > 64 {
        return Err(ApiError::BadRequest("a user name is 1 to 64 characters".into()));
    }
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
    let trusted = req.trusted;
    db(&sh, move |s| {
        s.add_token(&hash, &name, role, req.quota, req.owner)?;
        if trusted {
            s.trust_token(&hash)?;
        }
        Ok(())
    })
    .await?;
    let detail = format!(
        "{} as {}{}{}",
        req.name,
        req.role,
        req.owner.map(|o| format!(" of {o}")).unwrap_or_default(),
        if req.trusted { ", trusted" } else { "" }
    );
    event(&sh, admin.me.to_string(), "user.invited", detail).await;
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
    on_user(&sh, &headers, req.user, "user.disabled", move |s, u| s.set_disabled(u, true)).await
}

pub(super) async fn remove_user(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<UserRequest>,
) -> ApiResult<serde_json::Value> {
    on_user(&sh, &headers, req.user, "user.removed", move |s, u| s.remove_user(u, now())).await
}

/// Applies `change` to another user (false from it: no such user) and records `action`.
async fn on_user(
    sh: &Arc<Shared>,
    headers: &HeaderMap,
    user: UserId,
    action: &'static str,
    change: impl FnOnce(&Store, UserId) -> Result<bool, StoreError> + Send + 'static,
) -> ApiResult<serde_json::Value> {
    let admin = caller(sh, headers, Right::Admin).await?;
    if user == admin.me {
        return Err(ApiError::BadRequest("an admin cannot disable or remove itself; ask another admin".into()));
    }
    if !db(sh, move |s| change(s, user)).await? {
        return Err(ApiError::NotFound(format!("there is no user {user}; `scatter admin user ls` lists them")));
    }
    event(sh, admin.me.to_string(), action, user.to_string()).await;
    // Security-relevant: a restored catalog must not bring the user back.
    sh.backup_soon();
    Ok(Json(serde_json::json!({})))
}

/// Sets a host's administrative state (`draining` or `disabled`).
async fn set_host(sh: &Arc<Shared>, headers: &HeaderMap, host: HostId, state: Standing) -> Result<(), ApiError> {
    let admin = caller(sh, headers, Right::Admin).await?;
    if !db(sh, move |s| s.set_host_state(host, state)).await? {
        return Err(ApiError::NotFound(format!("there is no host {host}; `scatter status` lists them")));
    }
    event(sh, admin.me.to_string(), "host.state", format!("{host} {state}")).await;
    // Security-relevant: a restored catalog must not bring a removed host back.
    sh.backup_soon();
    Ok(())
}

pub(super) async fn drain(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<HostRequest>,
) -> ApiResult<serde_json::Value> {
    set_host(&sh, &headers, req.host, Standing::Draining).await?;
    Ok(Json(serde_json::json!({})))
}

pub(super) async fn disable_host(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<HostRequest>,
) -> ApiResult<serde_json::Value> {
    set_host(&sh, &headers, req.host, Standing::Disabled).await?;
    Ok(Json(serde_json::json!({})))
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
    event(&sh, admin.me.to_string(), "operator.added", detail).await;
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
    event(&sh, admin.me.to_string(), "operator.independent", detail).await;
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
    event(&sh, admin.me.to_string(), "catalog.backup", format!("sequence {} on {} hosts", taken.seq, taken.hosts))
        .await;
    Ok(Json(taken))
}
