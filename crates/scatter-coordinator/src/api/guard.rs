//! The gate every request passes before its handler.
//!
//! In order, and before a byte of the body is read:
//! 1. a peer that failed to authenticate too often lately gets 429 ([`Failures`]) for every
//!    request that does not authenticate: a user's or a host's own requests from the same
//!    address (a NAT, a shared machine) still go through;
//! 2. a route that needs a user's credential gets it checked from the headers alone: the
//!    signature over grid, method, path with query and the body's hash, the expiry, and that
//!    it was never accepted before ([`scatter_proto::auth`]); a host's request that names
//!    its host in [`scatter_proto::api::HOST_HEADER`] gets that host's secret checked;
//! 3. the body is read up to the route's limit ([`route`]), out of the room of its lane (a
//!    budget users' requests share; one of hosts' own; and for a request neither a user nor
//!    a host authenticated, a smaller one all such requests share, within the users'), at a
//!    minimum rate after a grace period, and for a user's request compared with the hash the
//!    credential was signed for. A host named in the header must still send its secret in
//!    the body, which the handler checks as before.
//!
//! The handler then finds the verified user in [`VERIFIED`], a header this gate removes from
//! every incoming request and sets only after the checks, sealed with a key that never leaves
//! the process: a handler reached some other way sees no user.
//! Every 401 answered, by this gate or by a handler (wrong host secret, join token or invite),
//! counts as a failure of the peer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use scatter_core::{DeviceId, HostId, UserId};
use scatter_net::limits::MinRate;
use scatter_proto::auth::{AuthError, Credential, Request as Signed};

use super::{db, event};
use crate::error::ApiError;
use crate::{now, Shared};

/// The header carrying the verified device from this gate to the handler.
pub(crate) const VERIFIED: &str = "scatter-verified-user";

/// Bodies of requests that are a few fields (joins, heartbeats, sessions, admin calls).
const SMALL: usize = 16 << 10;
/// Bodies with a short list (a placement's shards and excluded hosts, a heartbeat's refusals).
const MEDIUM: usize = 256 << 10;
/// Bodies with long lists of ids (lookups, locates, snapshot references, forgets).
const LISTS: usize = 16 << 20;
/// The largest bodies (an object's every chunk, a pack's chunks, a host's inventory).
pub(crate) const LARGE: usize = 64 << 20;

/// Bytes of request bodies held at once, over every request: beyond it, large bodies wait.
pub(crate) const BODY_BUDGET: usize = 128 << 20;
/// Of those, bytes of bodies of unauthenticated requests (one host inventory at most): what
/// anyone who can connect can make the coordinator hold.
pub(crate) const OPEN_BODY_BUDGET: usize = LARGE;
/// Bytes of bodies of hosts' requests (named in their header) held at once, apart from the
/// users' [`BODY_BUDGET`]: an account holding that room with slow 64 MiB commits held up
/// every host's heartbeat, and took them offline.
pub(crate) const HOST_BODY_BUDGET: usize = 2 * LARGE;
/// Bytes of hosts' heartbeats and receipts (at most [`MEDIUM`] each) held at once, apart
/// from [`HOST_BODY_BUDGET`]: a host trickling inventories held up every host's heartbeat.
pub(crate) const HOST_BEAT_BUDGET: usize = 128 * MEDIUM;
/// Of [`HOST_BODY_BUDGET`], bytes one host's inventories may hold at once: one.
const HOST_BODY_SHARE: usize = LARGE;
/// Of [`HOST_BEAT_BUDGET`], bytes one host's heartbeats and receipts may hold at once: a few,
/// and a small part of the room, so that one host (of its own shares' size) cannot fill it.
const HOST_BEAT_SHARE: usize = 4 * MEDIUM;
/// Of [`BODY_BUDGET`], bytes one account's bodies may hold at once: whatever one account sends,
/// slowly or not, the others keep a quarter of the room.
pub(crate) const ACCOUNT_BODY_SHARE: usize = BODY_BUDGET / 4 * 3;
/// Bytes of large answers ([`HELD_FROM`] or more) one account's requests may hold at once,
/// from when the handler made them until the peer has read them or the connection ends: an
/// answer is made whole in memory, and a peer that asks and does not read holds it (for a
/// minute without progress). Past it, its answers are refused at once rather than kept.
/// Above the largest answer an honest client gets (64 MiB of snapshot records, or of a
/// manifest, in base64). Ten unread listings of one account's 64 MiB of snapshot records held
/// 1.1 GB of the coordinator's memory before. There is no budget shared by all accounts: four
/// accounts holding it denied every other account its large answers (red team); what the
/// accounts the admin invited hold together is bounded by their number.
const ACCOUNT_ANSWER_SHARE: usize = 128 << 20;
/// Answers smaller than this are not counted: however many connections hold them, they
/// take little.
const HELD_FROM: u64 = 64 << 10;
/// How long a request waits for room in the budget before it is told to retry.
const BUDGET_WAIT: Duration = Duration::from_secs(30);
/// A body must keep up this rate after [`BODY_GRACE`].
const BODY_MIN_RATE: u64 = 64 << 10;
/// Time a body gets before [`BODY_MIN_RATE`] applies.
const BODY_GRACE: Duration = Duration::from_secs(10);

/// Failed authentications a peer may have in [`FAILURE_WINDOW`] before it is refused.
const MAX_FAILURES: u32 = 30;
/// The window failures are counted in; a refused peer may try again once it ends.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Peers whose failures are tracked at once; beyond that the oldest windows are dropped.
const MAX_TRACKED: usize = 65_536;
/// Live credentials remembered against replay (about 80 bytes each).
pub(crate) const REPLAY_CAPACITY: usize = 1 << 18;

/// The largest body a route takes, and whether it needs a user's credential.
pub(crate) fn route(path: &str) -> (usize, bool) {
    match path {
        "/health" | "/ready" | "/metrics" => (0, false),
        "/v1/hosts/join" | "/v1/hosts/cert" | "/v1/users/register" | "/v1/users/recover" | "/v1/hosts/dashboard" => {
            (SMALL, false)
        }
        // A host asking for its own earnings signs in with its secret, in the body.
        "/v1/hosts/earnings" => (SMALL, false),
        // A receipts backfill: MAX_RECEIPTS of about 210 bytes.
        "/v1/hosts/heartbeat" | "/v1/hosts/receipts" => (MEDIUM, false),
        // By shard count: MAX_INVENTORY entries of about 80 bytes.
        "/v1/hosts/inventory" => (LARGE, false),
        "/v1/objects/commit" | "/v1/objects/commit-many" | "/v1/packs/commit" => (LARGE, true),
        "/v1/chunks/lookup" | "/v1/chunks/locate" | "/v1/snapshots/refs" | "/v1/snapshots/forget" => (LISTS, true),
        // A sealed record of up to 1 MiB, in base64.
        "/v1/snapshots/commit" | "/v1/snapshots/record" => (2 << 20, true),
        "/v1/packs/place" | "/v1/packs/abandon" => (MEDIUM, true),
        _ => (SMALL, true),
    }
}

/// Recent authentication failures per peer.
#[derive(Default)]
pub(crate) struct Failures(Mutex<HashMap<IpAddr, (u32, Instant)>>);

impl Failures {
    /// Whether `peer` failed too often in its current window.
    pub(crate) fn blocked(&self, peer: IpAddr) -> bool {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&peer).is_some_and(|(n, since)| *n >= MAX_FAILURES && since.elapsed() < FAILURE_WINDOW)
    }

    /// Counts a failure of `peer`.
    pub(crate) fn record(&self, peer: IpAddr) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED && !map.contains_key(&peer) {
            map.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
            if map.len() >= MAX_TRACKED {
                // Every window is live: forget the oldest rather than grow.
                if let Some(oldest) = map.iter().min_by_key(|(_, (_, since))| *since).map(|(ip, _)| *ip) {
                    map.remove(&oldest);
                }
            }
        }
        let entry = map.entry(peer).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FAILURE_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 = entry.0.saturating_add(1);
    }
}

/// The sealed value of [`VERIFIED`] for `device`.
fn seal(sh: &Shared, device: DeviceId) -> String {
    let mac = blake3::keyed_hash(&sh.verdict_key, &device.0.to_be_bytes());
    format!("{}.{}", device.0, mac.to_hex())
}

/// The device a sealed [`VERIFIED`] value names, if the seal is this process's.
pub(crate) fn open(sh: &Shared, value: &str) -> Option<DeviceId> {
    let (device, mac) = value.split_once('.')?;
    let device = DeviceId(device.parse().ok()?);
    let expected = blake3::keyed_hash(&sh.verdict_key, &device.0.to_be_bytes());
    // blake3::Hash compares in constant time.
    (blake3::Hash::from_hex(mac).ok()? == expected).then_some(device)
}

fn refuse(e: ApiError) -> Response {
    e.into_response()
}

/// The gate (see the module documentation).
pub(crate) async fn guard(State(sh): State<Arc<Shared>>, mut req: Request, next: Next) -> Response {
    req.headers_mut().remove(VERIFIED);
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| scatter_net::serve::peer_key(c.0.ip()));
    let blocked = peer.is_some_and(|p| sh.failures.blocked(p));
    let resp = match check(&sh, req, blocked).await {
        // The body's share of the budget is held until the handler is done with it.
        Ok((req, _room, Some(account))) => hold_answer(&sh, account, next.run(req).await),
        Ok((req, _room, None)) => next.run(req).await,
        Err(e) => refuse(e),
    };
    if resp.status() == StatusCode::UNAUTHORIZED {
        if let Some(p) = peer {
            sh.failures.record(p);
        }
    }
    resp
}

/// Room taken in the body budgets.
type Room<'a> = Option<(
    Option<tokio::sync::SemaphorePermit<'a>>,
    tokio::sync::SemaphorePermit<'a>,
    Option<tokio::sync::OwnedSemaphorePermit>,
)>;

fn throttled() -> ApiError {
    ApiError::Throttled(
        "too many failed authentications from this address; wait a minute and check the credentials".into(),
    )
}

/// Steps 2 and 3: the credential, then the body. From a `blocked` peer only a request that
/// authenticates (a user's credential or a host's secret) goes on; any other is refused
/// with 429, its credential's failure unsaid. With the request, its body's room and the
/// verified user's account.
async fn check(sh: &Arc<Shared>, req: Request, blocked: bool) -> Result<(Request, Room<'_>, Option<UserId>), ApiError> {
    let Some(path) = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()) else {
        // No such route: the router answers 404 without reading anything.
        return Ok((req, None, None));
    };
    let (limit, needs_user) = route(&path);
    let verified = match needs_user {
        true => {
            // Taken out first: a request (its body) cannot be shared across an await.
            let auth = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let method = req.method().as_str().to_owned();
            let target = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
            Some(credential(sh, auth, method, target).await.map_err(|e| if blocked { throttled() } else { e })?)
        }
        false => None,
    };
    // A host's heartbeat or inventory drawing on the open budget could be held up by anyone
    // trickling a large body: every host then went offline at once.
    let host = match needs_user {
        false => req.headers().get(scatter_proto::api::HOST_HEADER).map(|v| v.to_str().unwrap_or_default().to_owned()),
        true => None,
    };
    let host = match &host {
        Some(value) => {
            let (id, secret) = scatter_proto::api::parse_host_header(value)
                .ok_or_else(|| ApiError::Unauthorized("the host header is not `ID SECRET`".into()))?;
            super::check_host(sh, id, secret).await.map_err(|e| if blocked { throttled() } else { e })?;
            Some(id)
        }
        None => None,
    };
    if blocked && verified.is_none() && host.is_none() {
        return Err(throttled());
    }
    let lane = match (&verified, host) {
        (Some((_, account)), _) => Lane::User(*account),
        (None, Some(id)) => Lane::Host(id),
        (None, None) => Lane::Open,
    };
    let (mut parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .map(|v| v.to_str().ok().and_then(|v| v.parse::<u64>().ok()))
        .map(|v| v.ok_or_else(|| ApiError::BadRequest("the Content-Length header is not a number".into())))
        .transpose()?;
    let (bytes, room) = read_body(sh, body, declared, limit, lane).await?;
    if let Some((c, _)) = verified {
        c.check_body(&bytes).map_err(|e| ApiError::Unauthorized(e.to_string()))?;
        let sealed = HeaderValue::from_str(&seal(sh, c.device))
            .map_err(|_| ApiError::Internal("the verified user cannot be put in a header".into()))?;
        parts.headers.insert(VERIFIED, sealed);
    }
    Ok((Request::from_parts(parts, Body::from(bytes)), room, verified.map(|(_, account)| account)))
}

/// Takes room for `resp`, an answer to `account`, in the account's share if it is large
/// ([`ACCOUNT_ANSWER_SHARE`]), held until its body is read or dropped; refuses it at once, and
/// lets its memory go, when there is none.
fn hold_answer(sh: &Shared, account: UserId, resp: Response) -> Response {
    use axum::body::HttpBody;
    let len = resp.body().size_hint().exact().unwrap_or_else(|| resp.body().size_hint().lower());
    if len < HELD_FROM {
        return resp;
    }
    let permits = u32::try_from(len.div_ceil(1024)).unwrap_or(u32::MAX);
    let Ok(room) = share(&sh.account_answers, account, ACCOUNT_ANSWER_SHARE).try_acquire_many_owned(permits) else {
        return ApiError::Busy(format!(
            "this answer ({} MiB) does not fit in what the coordinator may hold of an account's large answers not \
             yet read ({} MiB); read the answers under way, or retry in a minute",
            len.div_ceil(1 << 20),
            ACCOUNT_ANSWER_SHARE >> 20
        ))
        .into_response();
    };
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, Body::new(Held { body, pending: bytes::Bytes::new(), _room: room }))
}

/// Pieces an answer is handed to the connection in: given one frame of the whole answer,
/// the server would take it at once (the body done, its room given back) and hold it in
/// its write buffer until the peer read it.
const PIECE: usize = 64 << 10;

/// An answer's body with its room in its account's share, given back when it is dropped
/// (once its last piece is taken).
struct Held {
    body: Body,
    /// What is left of the frame being handed over.
    pending: bytes::Bytes,
    _room: tokio::sync::OwnedSemaphorePermit,
}

impl http_body::Body for Held {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                let piece = this.pending.split_to(this.pending.len().min(PIECE));
                return Poll::Ready(Some(Ok(http_body::Frame::data(piece))));
            }
            match std::pin::Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => this.pending = data,
                    Err(other) => return Poll::Ready(Some(Ok(other))),
                },
                other => return other,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let inner = self.body.size_hint();
        let pending = self.pending.len() as u64;
        match inner.exact() {
            Some(n) => http_body::SizeHint::with_exact(n + pending),
            None => {
                let mut hint = http_body::SizeHint::new();
                hint.set_lower(inner.lower() + pending);
                hint
            }
        }
    }
}

/// Checks the request's credential against its headers, method and target, and records it as
/// used. The body is compared later, once read.
async fn credential(
    sh: &Arc<Shared>,
    auth: Option<String>,
    method: String,
    target: String,
) -> Result<(Credential, UserId), ApiError> {
    let text = auth
        .as_deref()
        .and_then(|v| v.strip_prefix("Scatter "))
        .ok_or_else(|| ApiError::Unauthorized("this request needs your credentials; run `scatter init` first".into()))?
        .to_owned();
    let claimed = Credential::peek(&text).map_err(|e| ApiError::Unauthorized(e.to_string()))?;
    let found = db(sh, move |s| s.device_login(claimed.device)).await?;
    let grid = sh.grid_id();
    let account = found.as_ref().map(|(row, _, _)| row.me);
    let verified = found.ok_or(None).and_then(|(_, key, revoked)| {
        if revoked {
            return Err(Some(AuthError::Revoked));
        }
        let key = <[u8; 32]>::try_from(key.as_slice())
            .ok()
            .and_then(|k| ed25519_dalek::VerifyingKey::from_bytes(&k).ok())
            .ok_or(None)?;
        Credential::verify(&text, &key, &grid, Signed { method: &method, target: &target }, now()).map_err(Some)
    });
    let c = match verified {
        Ok(c) => c,
        Err(why) => {
            let reason = why.as_ref().map(|e| e.to_string()).unwrap_or_else(|| "unknown device".into());
            // Nothing verified it: the device is only claimed, and the method and target are
            // the peer's words, so they never lead the detail or name an actor.
            let detail = format!("claims {}: {method:.16} {target:.100}: {reason}", claimed.device);
            event(sh, crate::api::Who::unknown(), "auth.refused", detail).await;
            return Err(ApiError::Unauthorized(match why {
                Some(e) => e.to_string(),
                None => "this device is not registered with this coordinator; run `scatter init` again".into(),
            }));
        }
    };
    let mut admitted = sh.replay.lock().unwrap_or_else(|p| p.into_inner()).admit(&c, now());
    // What was admitted is recorded in the catalog too: memory alone forgets it when the
    // coordinator restarts (a credential seen once could be used again then), and
    // coordinators sharing a catalog would each accept it once.
    if admitted.is_ok() {
        let (device, nonce, expires) = (c.device, c.nonce, c.expires);
        if !db(sh, move |s| s.first_use(device, &nonce, expires, now())).await? {
            admitted = Err(AuthError::Replayed);
        }
    }
    match admitted {
        Ok(()) => Ok((c, account.ok_or_else(|| ApiError::Internal("a verified device without an account".into()))?)),
        Err(AuthError::Busy) => Err(ApiError::Busy(AuthError::Busy.to_string())),
        Err(e) => {
            event(sh, crate::api::Who::device(c.device), "auth.refused", format!("{method} {target:.100}: {e}")).await;
            Err(ApiError::Unauthorized(e.to_string()))
        }
    }
}

/// Whose room a request's body takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// A verified user's (of this account): its account's share, and the budget users share.
    User(UserId),
    /// A host's, named in its header: its share, and the hosts' budget for its route.
    Host(HostId),
    /// Anyone's: the smaller budget of such requests, and the shared one.
    Open,
}

/// `key`'s share (`bytes` of room) in `shares`: an account's of the users' budget
/// ([`ACCOUNT_BODY_SHARE`]), a host's of the hosts' ([`HOST_BODY_SHARE`]). Shares nobody uses
/// or waits on are dropped as others are handed out.
fn share<K: std::hash::Hash + Eq>(
    shares: &Mutex<HashMap<K, Arc<tokio::sync::Semaphore>>>,
    key: K,
    bytes: usize,
) -> Arc<tokio::sync::Semaphore> {
    let full = bytes >> 10;
    let mut shares = shares.lock().unwrap_or_else(|p| p.into_inner());
    shares.retain(|_, s| Arc::strong_count(s) > 1 || s.available_permits() < full);
    shares.entry(key).or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(full))).clone()
}

/// Reads a body of at most `limit` bytes, out of the budgets of its `lane`, at the minimum
/// rate.
async fn read_body(
    sh: &Shared,
    body: Body,
    declared: Option<u64>,
    limit: usize,
    lane: Lane,
) -> Result<(Vec<u8>, Room<'_>), ApiError> {
    let too_large = || {
        ApiError::TooLarge(format!(
            "the request body is larger than this request takes ({} KiB); split the request",
            limit >> 10
        ))
    };
    match declared {
        Some(0) => return Ok((Vec::new(), None)),
        Some(n) if n > limit as u64 => return Err(too_large()),
        None if limit == 0 => return Ok((Vec::new(), None)),
        _ => {}
    }
    // Room for what is declared, or for the most the route takes.
    let want = declared.map(|n| n as usize).unwrap_or(limit).min(limit);
    let permits = u32::try_from(want.div_ceil(1024)).unwrap_or(u32::MAX);
    let busy = || ApiError::Busy("the coordinator is receiving too many large requests; retry in a minute".into());
    let closed = |_| ApiError::Internal("the body budget is closed".into());
    let room = tokio::time::timeout(BUDGET_WAIT, async {
        let (first, mine) = match lane {
            Lane::User(account) => {
                let share = share(&sh.account_bodies, account, ACCOUNT_BODY_SHARE);
                (None, Some(share.acquire_many_owned(permits).await.map_err(closed)?))
            }
            Lane::Host(host) => {
                // Heartbeats and receipts (small) never wait on inventories (large), and each
                // host has a share of each room.
                let beat = limit <= MEDIUM;
                let (pool, bytes) = match beat {
                    true => (&sh.host_beat_budget, HOST_BEAT_SHARE),
                    false => (&sh.host_body_budget, HOST_BODY_SHARE),
                };
                let mine =
                    share(&sh.host_bodies, (host, beat), bytes).acquire_many_owned(permits).await.map_err(closed)?;
                return Ok((None, pool.acquire_many(permits).await.map_err(closed)?, Some(mine)));
            }
            Lane::Open => (Some(sh.open_body_budget.acquire_many(permits).await.map_err(closed)?), None),
        };
        Ok::<_, ApiError>((first, sh.body_budget.acquire_many(permits).await.map_err(closed)?, mine))
    })
    .await
    .map_err(|_| busy())??;
    let rate = MinRate::new(BODY_GRACE, BODY_MIN_RATE);
    // Room for what is declared; a body of unknown length grows as it arrives.
    let mut out = Vec::with_capacity(declared.map(|n| n as usize).unwrap_or(0).min(want));
    let mut stream = body.into_data_stream();
    loop {
        let next = tokio::time::timeout_at(rate.deadline(out.len() as u64), stream.next())
            .await
            .map_err(|_| ApiError::TooSlow("the request body arrived too slowly; check the network".into()))?;
        match next {
            None => break,
            Some(Err(_)) => return Err(ApiError::BadRequest("the request body was cut short".into())),
            Some(Ok(chunk)) => {
                if out.len() + chunk.len() > want {
                    return Err(too_large());
                }
                out.extend_from_slice(&chunk);
            }
        }
    }
    Ok((out, Some(room)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_block_a_peer_after_the_limit_only() {
        let f = Failures::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().expect("ip"), "192.0.2.2".parse().expect("ip"));
        for _ in 0..MAX_FAILURES - 1 {
            f.record(a);
        }
        assert!(!f.blocked(a));
        f.record(a);
        assert!(f.blocked(a));
        assert!(!f.blocked(b));
    }

    #[test]
    fn every_route_has_a_limit_and_unauthenticated_ones_are_small() {
        for path in
            ["/v1/hosts/join", "/v1/hosts/cert", "/v1/users/register", "/v1/users/recover", "/v1/hosts/heartbeat"]
        {
            let (limit, user) = route(path);
            assert!(!user && limit <= MEDIUM, "{path}");
        }
        assert_eq!(route("/v1/sessions/keepalive"), (SMALL, true));
        assert_eq!(route("/v1/admin/users"), (SMALL, true));
        assert!(route("/v1/objects/commit").1);
    }
}
