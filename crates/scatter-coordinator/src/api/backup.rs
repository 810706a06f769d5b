//! Session leases, snapshots, delegates' trust and prune (`/v1/sessions/*`,
//! `/v1/snapshots*`, `/v1/delegates*`, `/v1/prune`).
//!
//! A session and a snapshot belong to the account that opened or committed it (`me`, the
//! owner or a delegate), whatever data (`id`) it is about.

use super::*;

/// Largest sealed snapshot record.
const MAX_RECORD: usize = 1 << 20;

pub(super) async fn keepalive(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<SessionRequest>,
) -> ApiResult<serde_json::Value> {
    let u = caller(&sh, &headers, Right::Add).await?;
    let ttl = sh.session_ttl.as_secs().max(1);
    db(&sh, move |s| s.keep_session(u.id, u.me, req.session, now(), now() + ttl)).await?;
    Ok(Json(serde_json::json!({})))
}

pub(super) async fn close(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<SessionRequest>,
) -> ApiResult<serde_json::Value> {
    let u = caller(&sh, &headers, Right::Add).await?;
    db(&sh, move |s| s.close_session(u.id, u.me, req.session)).await?;
    Ok(Json(serde_json::json!({})))
}

pub(super) async fn refs(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<SnapshotRefsRequest>,
) -> ApiResult<serde_json::Value> {
    let u = caller(&sh, &headers, Right::Add).await?;
    check_ids(req.chunks.len())?;
    db(&sh, move |s| s.add_session_refs(u.id, u.me, req.session, &req.chunks, now())).await?;
    Ok(Json(serde_json::json!({})))
}

fn check_snapshot_id(id: &str) -> Result<(), ApiError> {
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return Err(ApiError::BadRequest("a snapshot id is 64 lowercase hex digits".into()));
    }
    Ok(())
}

pub(super) async fn commit(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<CommitSnapshotRequest>,
) -> ApiResult<serde_json::Value> {
    let u = caller(&sh, &headers, Right::Add).await?;
    check_snapshot_id(&req.id)?;
    let record = decode_b64("record", &req.record)?;
    if record.len() > MAX_RECORD {
        return Err(ApiError::BadRequest(format!("a snapshot record is at most {MAX_RECORD} bytes")));
    }
    let short = req.id[..8].to_owned();
    let hold = super::retention(&sh, &u, &req.retention).await?;
    db(&sh, move |s| s.commit_snapshot_held(u.id, u.me, req.session, &req.id, &record, hold, now())).await?;
    tracing::info!(user = %u.id, writer = %u.me, snapshot = %short, "snapshot committed");
    Ok(Json(serde_json::json!({})))
}

pub(super) async fn list(State(sh): S, headers: HeaderMap) -> ApiResult<SnapshotsResponse> {
    let u = caller(&sh, &headers, Right::Read).await?;
    // One listing of an account's snapshots is made at a time, whoever of its devices and
    // delegates asks: each may read 64 MiB of records and make 90 MB of JSON, and ten made at
    // once took a gigabyte (red team) before the answer budget could refuse any of them.
    let lock = {
        let mut all = sh.listings.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|_, l| Arc::strong_count(l) > 1);
        all.entry(u.id).or_default().clone()
    };
    let _one = tokio::time::timeout(std::time::Duration::from_secs(30), lock.lock_owned()).await.map_err(|_| {
        ApiError::Busy("another listing of this account's snapshots is being made; retry in a minute".into())
    })?;
    let rows = db(&sh, move |s| s.snapshots(u.id)).await?;
    let mut holds = db(&sh, move |s| s.snapshot_holds(u.id)).await?;
    Ok(Json(SnapshotsResponse {
        snapshots: rows
            .into_iter()
            .map(|r| SnapshotEntry {
                hold: holds.remove(&r.id).unwrap_or_default(),
                id: r.id,
                created: r.created,
                session: r.session,
                wrapped_key: B64.encode(r.wrapped_key),
                record: B64.encode(r.record),
                chunks: r.chunks,
                writer: Some(r.writer),
                writer_name: r.writer_name,
                trusted: r.trusted,
            })
            .collect(),
    }))
}

pub(super) async fn forget(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<ForgetRequest>,
) -> ApiResult<ForgetResponse> {
    let u = caller(&sh, &headers, Right::Delete).await?;
    check_ids(req.ids.len())?;
    for id in &req.ids {
        check_snapshot_id(id)?;
    }
    let removed = db(&sh, move |s| s.forget(u.id, &req.ids, now())).await?;
    tracing::info!(user = %u.id, removed, "snapshots forgotten");
    Ok(Json(ForgetResponse { removed }))
}

/// A new sealed record for a snapshot of the caller's data (`scatter tag`). Only who may
/// forget a snapshot may rewrite it; its writer, and so whether it is trusted, stays.
pub(super) async fn replace_record(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<ReplaceSnapshotRecordRequest>,
) -> ApiResult<serde_json::Value> {
    let u = caller(&sh, &headers, Right::Delete).await?;
    check_snapshot_id(&req.id)?;
    let record = decode_b64("record", &req.record)?;
    if record.len() > MAX_RECORD {
        return Err(ApiError::BadRequest(format!("a snapshot record is at most {MAX_RECORD} bytes")));
    }
    let short = req.id[..8].to_owned();
    if !db(&sh, move |s| s.replace_snapshot_record(u.id, &req.id, &record, now())).await? {
        return Err(ApiError::NotFound(format!("no snapshot {short} of yours")));
    }
    tracing::info!(user = %u.id, snapshot = %short, "snapshot record replaced");
    Ok(Json(serde_json::json!({})))
}

/// How long the chunks a prune assigned for repacking may be relocated.
const RELOCATION_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

pub(super) async fn prune(State(sh): S, headers: HeaderMap, Body(req): Body<PruneRequest>) -> ApiResult<PruneResponse> {
    let u = caller(&sh, &headers, Right::Delete).await?;
    if req.max_unused_percent > 100 {
        return Err(ApiError::BadRequest("max_unused_percent is a percentage (0 to 100)".into()));
    }
    // The chunks of the packs it finds may be relocated (by the repack that follows) for an
    // hour, each once: recorded in the catalog, so any coordinator takes the repack.
    let until = now() + RELOCATION_TTL.as_secs();
    let (swept, candidates) = db(&sh, move |s| s.prune(u.id, req.max_unused_percent, now(), until)).await?;
    tracing::info!(user = %u.id, chunks = swept.chunks_removed, packs = swept.packs_released, "prune swept");
    if swept.packs_released > 0 {
        // Released packs' shards are deleted within seconds: a catalog restored from an
        // older backup would list data that is gone.
        sh.backup_soon();
    }
    Ok(Json(PruneResponse {
        chunks_removed: swept.chunks_removed,
        bytes_removed: swept.bytes_removed,
        packs_released: swept.packs_released,
        repack: candidates
            .into_iter()
            .map(|(pack, size, live_bytes, chunks)| RepackCandidate { pack, size, live_bytes, chunks })
            .collect(),
    }))
}

/// The caller's readers and appenders, with whether it trusts their snapshots.
pub(super) async fn delegates(State(sh): S, headers: HeaderMap) -> ApiResult<Vec<DelegateEntry>> {
    let u = owner(&sh, &headers).await?;
    let rows = db(&sh, move |s| s.delegates(u.me)).await?;
    Ok(Json(
        rows.into_iter()
            .map(|d| DelegateEntry { id: d.id, name: d.name, role: d.role, disabled: d.disabled, trusted: d.trusted })
            .collect(),
    ))
}

/// Sets whether the caller (an owner, never a delegate) counts a delegate's snapshots as its own.
pub(super) async fn trust(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<TrustRequest>,
) -> ApiResult<serde_json::Value> {
    let u = owner(&sh, &headers).await?;
    let (delegate, trusted) = (req.user, req.trusted);
    if !db(&sh, move |s| s.set_trusted(u.me, delegate, trusted)).await? {
        let what =
            if trusted { "an appender (only appenders write snapshots to trust)" } else { "a reader or appender" };
        return Err(ApiError::NotFound(format!(
            "{delegate} is not {what} of your data; `scatter delegate ls` lists them"
        )));
    }
    let action = if trusted { "delegate.trusted" } else { "delegate.untrusted" };
    event(&sh, &u, action, delegate.to_string()).await;
    Ok(Json(serde_json::json!({})))
}

/// Disables one of the caller's delegates (the caller an owner, never a delegate): its
/// requests are refused, and the write sessions it opened end, so what only they kept goes
/// at the owner's next prune. Only the admin enables it again.
pub(super) async fn disable_delegate(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<UserRequest>,
) -> ApiResult<serde_json::Value> {
    let u = owner(&sh, &headers).await?;
    let delegate = req.user;
    match db(&sh, move |s| s.disable_delegate(u.me, delegate)).await? {
        None => {
            return Err(ApiError::NotFound(format!(
                "{delegate} is not a reader or appender of your data; `scatter delegate ls` lists them"
            )))
        }
        Some(true) => event(&sh, &u, "delegate.disabled", delegate.to_string()).await,
        Some(false) => {}
    }
    Ok(Json(serde_json::json!({})))
}

/// The caller, if it owns its data (a user or admin, not a reader or appender working on
/// someone else's): only an owner manages its delegates.
async fn owner(sh: &Arc<Shared>, headers: &HeaderMap) -> Result<UserRow, ApiError> {
    let u = user(sh, headers).await?;
    if u.me != u.id || u.role.is_delegate() {
        event(sh, &u, "auth.forbidden", format!("role {} asked to manage delegates", u.role)).await;
        return Err(ApiError::Forbidden(format!(
            "only the owner of the data manages its delegates and whom it trusts; your role `{}` works on another user's data",
            u.role
        )));
    }
    Ok(u)
}

/// `POST /v1/snapshots/lock`: extends the lock of one of the caller's snapshots (never
/// shortens or weakens it), within the caller's maximum. Only who may remove data (the
/// owner, an admin) extends locks: an appender's device could otherwise pin the owner's
/// data for ever by extending again and again.
pub(super) async fn extend_lock(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<ExtendLockRequest>,
) -> ApiResult<serde_json::Value> {
    let u = caller(&sh, &headers, Right::Delete).await?;
    check_snapshot_id(&req.id)?;
    let asked = Retention { keep_until: req.keep_until, keep_for: req.keep_for, mode: req.mode, expire_after: None };
    let (lock, _) = super::decide(&sh, &u, &asked).await?;
    let Some(lock) = lock else {
        return Err(ApiError::BadRequest("say how long to lock it: --keep-for or --keep-until".into()));
    };
    let id = req.id.clone();
    let keep_mode = req.mode.is_none();
    if !db(&sh, move |s| s.extend_lock(u.id, &id, lock, keep_mode, now())).await? {
        return Err(ApiError::NotFound(format!("no snapshot {} of yours", &req.id[..8])));
    }
    let detail = format!("snapshot {} of {}: {} until {}", &req.id[..8], u.id, lock.mode, crate::lock::utc(lock.until));
    event(&sh, &u, "lock.extended", detail).await;
    Ok(Json(serde_json::json!({ "until": lock.until })))
}
