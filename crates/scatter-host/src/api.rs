//! The host's shard API: `PUT`, `GET` (with `Range`) and `DELETE /shards/{id}`, and
//! `GET /shards/{id}/proof?start=&len=` (a storage proof for audits), each allowed only by a
//! grant in the `scatter-grant` header; and the catalog backup routes under `/catalog` (see
//! [`crate::catalog`]), allowed by the grid's signature (store) or the recovery key's (read).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use scatter_core::ShardId;
use scatter_proto::api::{ErrorBody, ErrorCode, StoredResponse, GRANT_HEADER};
use scatter_proto::{Grant, GrantError, Op, SignedGrant};

use crate::store::{ShardError, Upload};
use crate::Shared;

pub use scatter_proto::api::MAX_SHARD;
/// Transfers served at once; bounds the memory that shards in flight take.
pub(crate) const CONCURRENT_TRANSFERS: usize = 8;
/// Of those, uploads at once: the others are left to reads, which hold a slot only while the
/// disk is read, never while the network is, so slow uploads cannot starve readers.
pub(crate) const CONCURRENT_UPLOADS: usize = 6;
/// Uploads one peer (an address, or an IPv6 /64) may run at once.
pub(crate) const UPLOADS_PER_PEER: usize = 4;
/// How long an upload waits for its slots before it is refused with a request to retry.
pub(crate) const SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
/// An upload must keep up this rate (bytes per second) once [`UPLOAD_GRACE`] has passed,
/// counted from when it got its slot; one that falls behind is cut off and stores nothing.
pub(crate) const MIN_UPLOAD_RATE: u64 = 16 << 10;
/// Time an upload gets before [`MIN_UPLOAD_RATE`] applies.
pub(crate) const UPLOAD_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/shards/{id}", get(read).put(store).delete(delete))
        .route("/shards/{id}/proof", get(proof))
        .route("/catalog", get(crate::catalog::list))
        .route("/catalog/id", get(crate::catalog::id))
        .route("/catalog/{seq}/{index}", get(crate::catalog::fetch).put(crate::catalog::put))
        .route("/metrics", get(metrics))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(shared.clone(), timed))
        .with_state(shared)
}

/// Records how long each request took, per route, for `/metrics`.
async fn timed(State(sh): State<Arc<Shared>>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| format!("{} {}", req.method(), p.as_str()))
        .unwrap_or_else(|| "unmatched".into());
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    sh.request_times.record(&route, started.elapsed());
    resp
}

/// Prometheus text exposition: bytes held and offered, shards (as of the last inventory),
/// request timings. Nothing here touches the disk: anyone may ask, as often as it likes.
async fn metrics(State(sh): State<Arc<Shared>>) -> String {
    let shards = sh.shards_held.load(std::sync::atomic::Ordering::Relaxed);
    format!(
        "# HELP scatter_host_used_bytes Shard bytes held.\n# TYPE scatter_host_used_bytes gauge\nscatter_host_used_bytes {}\n\
         # HELP scatter_host_capacity_bytes Bytes offered.\n# TYPE scatter_host_capacity_bytes gauge\nscatter_host_capacity_bytes {}\n\
         # HELP scatter_host_shards Shards held.\n# TYPE scatter_host_shards gauge\nscatter_host_shards {shards}\n{}",
        sh.store.used(),
        sh.store.capacity(),
        sh.request_times.render()
    )
}

enum Refusal {
    Grant(GrantError),
    Shard(ShardError),
    Bad(String),
    /// The upload fell below the minimum rate.
    Slow(String),
    /// No slot came free in time.
    Busy(String),
    /// The period the host offered is over: it takes no new shards.
    PeriodOver(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, code, msg) = match self {
            Refusal::Grant(e @ GrantError::Spent(_)) => {
                (StatusCode::FORBIDDEN, ErrorCode::GrantSpent, format!("refused: {e}"))
            }
            Refusal::Grant(e) => (StatusCode::FORBIDDEN, ErrorCode::Grant, format!("refused: {e}")),
            Refusal::Bad(m) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest, m),
            Refusal::Slow(m) => (StatusCode::REQUEST_TIMEOUT, ErrorCode::TooSlow, m),
            Refusal::Busy(m) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Busy, m),
            Refusal::PeriodOver(m) => (StatusCode::FORBIDDEN, ErrorCode::PeriodOver, m),
            Refusal::Shard(e) => {
                let (s, c) = match &e {
                    ShardError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
                    ShardError::Corrupt(_) => (StatusCode::CONFLICT, ErrorCode::Corrupt),
                    ShardError::HashMismatch(_) => (StatusCode::BAD_REQUEST, ErrorCode::HashMismatch),
                    ShardError::Full { .. } | ShardError::DiskFull => {
                        (StatusCode::INSUFFICIENT_STORAGE, ErrorCode::Full)
                    }
                    ShardError::BadRange { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, ErrorCode::BadRange),
                    ShardError::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Io),
                    ShardError::Kept(_) => (StatusCode::CONFLICT, ErrorCode::Conflict),
                    ShardError::Voided(_) => (StatusCode::GONE, ErrorCode::Conflict),
                };
                (s, c, e.to_string())
            }
        };
        (status, Json(ErrorBody { code, error: msg })).into_response()
    }
}

fn shard_id(raw: &str) -> Result<ShardId, Refusal> {
    raw.parse().map_err(|_| Refusal::Bad("the shard id must be 64 lowercase hex digits".into()))
}

fn check_grant(sh: &Shared, headers: &HeaderMap, id: &ShardId, op: Op) -> Result<scatter_proto::Grant, Refusal> {
    let Some(raw) = headers.get(GRANT_HEADER).and_then(|v| v.to_str().ok()) else {
        sh.refused(format!("{op:?} {}…: no grant", &id.to_string()[..12]));
        return Err(Refusal::Grant(GrantError::Malformed));
    };
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(u64::MAX);
    SignedGrant(raw.to_owned()).check(&sh.coordinator_key, sh.id, id, op, now).map_err(|e| {
        tracing::warn!(shard = %id, ?op, error = %e, "refused a request without a valid grant");
        sh.refused(format!("{op:?} {}…: {e}", &id.to_string()[..12]));
        Refusal::Grant(e)
    })
}

/// Takes `len` bytes from the read budget of the grant in `headers` ([`crate::budget`]), or
/// refuses a grant served in full twice already; answers the budget's key, to give back
/// what is not served.
fn spend(sh: &Shared, headers: &HeaderMap, grant: &Grant, len: u64) -> Result<[u8; 32], Refusal> {
    let token = headers.get(GRANT_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
    let key = *blake3::hash(token).as_bytes();
    let covered = grant.readable().map_or(grant.max_size, |r| r.end - r.start);
    let mut budgets = sh.read_budgets.lock().unwrap_or_else(|p| p.into_inner());
    budgets.take(key, grant.expires, covered, len, crate::unix_now()).map_err(|_| {
        sh.spent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Refusal::Grant(GrantError::Spent(covered))
    })?;
    Ok(key)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ShardError> + Send + 'static) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Refusal::Shard(ShardError::Io(std::io::Error::other(e))))?
        .map_err(Refusal::Shard)
}

#[derive(serde::Deserialize)]
struct ProofQuery {
    start: u64,
    len: u64,
}

/// A Bao proof of bytes `start..start+len` of a shard, for the coordinator's audits.
async fn proof(
    State(sh): State<Arc<Shared>>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<ProofQuery>,
) -> Result<Vec<u8>, Refusal> {
    let id = shard_id(&raw)?;
    // A proof carries bytes around its range too: only a grant for the whole shard will do,
    // and the bytes it proves come out of that grant's budget.
    let grant = check_grant(&sh, &headers, &id, Op::Get)?;
    if let Some(allowed) = grant.readable() {
        return Err(Refusal::Grant(GrantError::OutOfRange(allowed.start, allowed.end)));
    }
    spend(&sh, &headers, &grant, q.len)?;
    let _transfer = sh.transfer().await.ok_or_else(|| Refusal::Bad("the host is shutting down".into()))?;
    let store = sh.store.clone();
    let data = blocking(move || store.read(&id, None)).await?;
    tokio::task::spawn_blocking(move || scatter_core::audit::prove(&data, q.start, q.len))
        .await
        .map_err(|e| Refusal::Bad(e.to_string()))?
        .map_err(|e| Refusal::Bad(e.to_string()))
}

/// Reads and drops what is left of a request body (bounded in bytes and time), so that a
/// refusal reaches the client instead of a connection reset from the unread upload.
async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut n = 0u64;
        while let Some(Ok(chunk)) = stream.next().await {
            n += chunk.len() as u64;
            if n > MAX_SHARD {
                break;
            }
        }
    })
    .await;
}

/// Stores a shard and answers with a receipt for it ([`StoredResponse`]). A shard already
/// here is received and hashed all the same: a receipt is proof that the uploader had the
/// bytes, so it is never given for a shard id alone.
async fn store(
    State(sh): State<Arc<Shared>>,
    Path(raw): Path<String>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<StoredResponse>), Refusal> {
    let peer = peer.map(|p| scatter_net::serve::peer_key(p.0 .0.ip()));
    match admit(&sh, &raw, &headers) {
        Ok((id, declared, grant)) => {
            receive(&sh, peer, id, declared, grant, body).await?;
            Ok((StatusCode::CREATED, Json(StoredResponse { receipt: sh.receipt(id, declared, grant) })))
        }
        Err(refusal) => {
            drain(body).await;
            Err(refusal)
        }
    }
}

/// Checks an upload before a byte of it is read: the id, the grant, the declared size and the
/// room left. Returns the id, the declared size and the hash of the grant.
fn admit(sh: &Shared, raw: &str, headers: &HeaderMap) -> Result<(ShardId, u64, [u8; 32]), Refusal> {
    let id = shard_id(raw)?;
    let grant = check_grant(sh, headers, &id, Op::Put)?;
    if sh.period_over() {
        return Err(Refusal::PeriodOver(
            "this host's offered period (--until) is over: it stores no new shards; the coordinator places them elsewhere"
                .into(),
        ));
    }
    let grant_hash = headers
        .get(GRANT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|g| scatter_proto::receipt::grant_hash(&SignedGrant(g.to_owned())))
        .ok_or(Refusal::Grant(GrantError::Malformed))?;
    let limit = grant.max_size.min(MAX_SHARD);
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| Refusal::Bad("a shard upload needs a Content-Length".into()))?;
    if declared > limit {
        return Err(Refusal::Bad(format!("the shard is {declared} bytes but the grant allows at most {limit}")));
    }
    let used = sh.store.used();
    if !sh.store.contains(&id) && used + declared > sh.store.capacity() {
        return Err(Refusal::Shard(ShardError::Full { need: declared, used, capacity: sh.store.capacity() }));
    }
    Ok((id, declared, grant_hash))
}

/// Receives an admitted upload; nothing is visible unless all of it arrived and hashes to `id`.
/// Takes an upload slot of `peer` first (see [`Shared::upload`]), then must keep up
/// [`MIN_UPLOAD_RATE`] after [`UPLOAD_GRACE`].
async fn receive(
    sh: &Shared,
    peer: Option<std::net::IpAddr>,
    id: ShardId,
    declared: u64,
    grant: [u8; 32],
    body: Body,
) -> Result<(), Refusal> {
    let _upload = sh.upload(peer).await.map_err(|e| match e {
        crate::NoSlot::ShuttingDown => Refusal::Bad("the host is shutting down".into()),
        crate::NoSlot::Busy => Refusal::Busy(format!(
            "every upload slot stayed taken for {} s (this peer may run {UPLOADS_PER_PEER} at once); retry",
            SLOT_WAIT.as_secs()
        )),
    })?;
    let cut_short =
        || Refusal::Bad("the upload was cut short or is larger than its Content-Length; nothing was stored".into());
    let rate = scatter_net::limits::MinRate::new(UPLOAD_GRACE, MIN_UPLOAD_RATE);
    // Collected straight into an aligned buffer, the one copy before the disk, and hashed
    // piece by piece as it arrives.
    let mut data = Upload::with_limit(declared as usize);
    let mut stream = body.into_data_stream();
    loop {
        let Ok(frame) = tokio::time::timeout_at(rate.deadline(data.len() as u64), stream.next()).await else {
            tracing::warn!(shard = %id, received = data.len(), declared, "an upload fell below the minimum rate; cut off");
            return Err(Refusal::Slow(format!(
                "the upload arrived slower than {} KiB/s; nothing was stored",
                MIN_UPLOAD_RATE >> 10
            )));
        };
        let Some(frame) = frame else { break };
        if !data.extend(&frame.map_err(|_| cut_short())?) {
            return Err(cut_short());
        }
    }
    if data.len() as u64 != declared {
        return Err(Refusal::Bad("the upload is shorter than its Content-Length; nothing was stored".into()));
    }
    let store = sh.store.clone();
    blocking(move || store.put(id, data, Some(grant))).await
}

/// Parses `bytes=START-END` (one range, inclusive end) into a half-open range.
fn parse_range(headers: &HeaderMap) -> Result<Option<std::ops::Range<u64>>, Refusal> {
    let Some(v) = headers.get(axum::http::header::RANGE) else { return Ok(None) };
    let bad = || Refusal::Bad("only a single `Range: bytes=START-END` is supported".into());
    let spec = v.to_str().map_err(|_| bad())?.strip_prefix("bytes=").ok_or_else(bad)?;
    let (s, e) = spec.split_once('-').ok_or_else(bad)?;
    let start: u64 = s.trim().parse().map_err(|_| bad())?;
    let end: u64 = e.trim().parse().map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    Ok(Some(start..end.checked_add(1).ok_or_else(bad)?))
}

async fn read(State(sh): State<Arc<Shared>>, Path(raw): Path<String>, headers: HeaderMap) -> Result<Response, Refusal> {
    let id = shard_id(&raw)?;
    let grant = check_grant(&sh, &headers, &id, Op::Get)?;
    let range = parse_range(&headers)?;
    if let Some(allowed) = grant.readable() {
        if !range.as_ref().is_some_and(|r| r.start >= allowed.start && r.end <= allowed.end) {
            let e = GrantError::OutOfRange(allowed.start, allowed.end);
            sh.refused(format!("Get {}…: {e}", &id.to_string()[..12]));
            return Err(Refusal::Grant(e));
        }
    }
    let reserved = range.as_ref().map_or(grant.max_size, |r| r.end - r.start);
    let budget = spend(&sh, &headers, &grant, reserved)?;
    let _transfer = sh.transfer().await.ok_or_else(|| Refusal::Bad("the host is shutting down".into()))?;
    let store = sh.store.clone();
    let partial = range.is_some();
    let bytes = blocking(move || store.read(&id, range)).await;
    let served = bytes.as_ref().map_or(0, |b| b.len() as u64);
    sh.read_budgets.lock().unwrap_or_else(|p| p.into_inner()).give_back(budget, reserved.saturating_sub(served));
    let bytes = bytes?;
    // What it served, for the coordinator's record (see `heartbeats`).
    sh.served.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let status = if partial { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
    Ok((status, bytes).into_response())
}

/// Deletes a shard under a delete grant, or under a conditional one ([`Op::DeleteIf`]) only
/// if the named upload alone wrote it (409 otherwise: kept).
async fn delete(
    State(sh): State<Arc<Shared>>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, Refusal> {
    let id = shard_id(&raw)?;
    let conditional = headers
        .get(GRANT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|g| SignedGrant(g.to_owned()).open(&sh.coordinator_key).ok())
        .is_some_and(|g| g.op == Op::DeleteIf);
    let grant = check_grant(&sh, &headers, &id, if conditional { Op::DeleteIf } else { Op::Delete })?;
    let store = sh.store.clone();
    let existed = blocking(move || match grant.written_by() {
        Some(by) => store.delete_if_written_by(&id, &by),
        None => store.delete(&id),
    })
    .await?;
    Ok(if existed { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND })
}
