//! The coordinator's HTTP API (`/v1/...`): JSON in, JSON out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Query, Request, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;
use scatter_core::erasure::MIN_SHARD;
use scatter_core::{ByteSize, HostId, PackId, ShardId, UserId};
use scatter_proto::api::*;
use scatter_proto::{Grant, Op};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::placement::{self, Candidate};
use crate::store::{
    Domain, NameHolder, NameRefusal, NewPack, Party, Read, Reservation, ReserveError, ShardState, Standing, Store,
    StoreError, UserRow, GATEWAY_NAMES_PER_ACCOUNT,
};
use crate::{now, secret_hash, Shared};

pub(crate) mod admin;
mod backup;
mod billing;
mod devices;
pub(crate) mod guard;
pub(crate) mod place;

type S = State<Arc<Shared>>;
type ApiResult<T> = Result<Json<T>, ApiError>;

/// How long read grants handed to clients stay valid.
pub(crate) const GRANT_TTL: Duration = Duration::from_secs(3600);
/// Largest request body (an object commit lists every chunk of a file); each route has its
/// own, smaller or equal, limit in [`guard::route`].
const MAX_BODY: usize = guard::LARGE;
/// `GET /ready`: 200 once the catalog answers, 503 while it does not (a PostgreSQL catalog
/// down or unreachable), for load balancers; `/health` says only that the process serves.
async fn ready(State(sh): S) -> (axum::http::StatusCode, &'static str) {
    match sh.catalog(|s| s.user_exists(UserId(1))).await {
        Ok(_) => (axum::http::StatusCode::OK, "ready"),
        Err(_) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, "the catalog does not answer"),
    }
}

/// Largest number of ids in one lookup or locate.
const MAX_IDS: usize = 100_000;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/v1/hosts/join", post(join))
        .route("/v1/hosts/cert", post(host_cert))
        .route("/v1/hosts/heartbeat", post(heartbeat))
        .route("/v1/hosts/inventory", post(inventory))
        .route("/v1/hosts/receipts", post(backfill_receipts))
        .route("/v1/users/register", post(register))
        .route("/v1/users/recover", post(devices::recover))
        .route("/v1/devices", get(devices::list))
        .route("/v1/devices/revoke", post(devices::revoke))
        .route("/v1/recovery", get(devices::get_code).put(devices::set_code))
        .route("/v1/recovery/escrow", post(devices::set_escrow))
        .route("/v1/status", get(status))
        .route("/v1/sessions", post(create_session))
        .route("/v1/chunks/lookup", post(lookup_chunks))
        .route("/v1/chunks/locate", post(locate))
        .route("/v1/packs/grants", post(pack_grants))
        .route("/v1/packs/place", post(place::place))
        .route("/v1/grid", get(place::grid))
        .route("/v1/policy", get(place::policy).put(place::set_policy))
        .route("/v1/packs/commit", post(commit_pack))
        .route("/v1/packs/abandon", post(place::abandon))
        .route("/v1/objects", get(list_objects))
        .route("/v1/gateway/cert", post(gateway_cert))
        .route("/v1/gateway/names", get(gateway_names))
        .route("/v1/gateway/names/release", post(release_gateway_name))
        .route("/v1/objects/commit", post(commit_object))
        .route("/v1/objects/commit-many", post(commit_objects))
        .route("/v1/object", get(get_object).delete(remove_object))
        .route("/v1/object/versions", get(object_versions))
        .route("/v1/shards/report", post(report_shard))
        .route("/v1/sessions/keepalive", post(backup::keepalive))
        .route("/v1/sessions/close", post(backup::close))
        .route("/v1/snapshots", get(backup::list))
        .route("/v1/snapshots/refs", post(backup::refs))
        .route("/v1/snapshots/commit", post(backup::commit))
        .route("/v1/snapshots/forget", post(backup::forget))
        .route("/v1/snapshots/record", post(backup::replace_record))
        .route("/v1/snapshots/lock", post(backup::extend_lock))
        .route("/v1/admin/locks", get(admin::locks))
        .route("/v1/admin/locks/lift", post(admin::lift_lock))
        .route("/v1/admin/users/locks", post(admin::set_lock_limits))
        .route("/v1/delegates", get(backup::delegates))
        .route("/v1/delegates/trust", post(backup::trust))
        .route("/v1/delegates/disable", post(backup::disable_delegate))
        .route("/v1/prune", post(backup::prune))
        .route("/v1/admin/health", get(crate::metrics::health))
        .route("/v1/admin/catalog-backup", post(admin::catalog_backup))
        .route("/v1/admin/capacity", get(place::capacity))
        .route("/v1/admin/hosts/drain", post(admin::drain))
        .route("/v1/admin/hosts/disable", post(admin::disable_host))
        .route("/v1/admin/hosts/enable", post(admin::enable_host))
        .route("/v1/admin/invites", get(admin::invites))
        .route("/v1/admin/invites/remove", post(admin::remove_invite))
        .route("/v1/admin/users/enable", post(admin::enable_user))
        .route("/v1/admin/users/quota", post(admin::set_quota))
        .route("/v1/admin/users", get(admin::users).post(admin::invite))
        .route("/v1/admin/users/disable", post(admin::disable_user))
        .route("/v1/admin/users/device", post(admin::device_invite))
        .route("/v1/admin/users/remove", post(admin::remove_user))
        .route("/v1/admin/events", get(admin::events))
        .route("/v1/admin/billing", get(billing::statement))
        .route("/v1/admin/billing/records", get(billing::records))
        .route("/v1/admin/billing/rates", get(billing::rates).post(billing::set_rates))
        .route("/v1/admin/billing/close", post(billing::close))
        .route("/v1/usage", get(billing::usage))
        .route("/v1/hosts/earnings", post(billing::earnings))
        .route("/v1/admin/operators", get(admin::operators).post(admin::add_operator))
        .route("/v1/admin/operators/independent", post(admin::operator_independent))
        .route("/v1/dashboard/link", post(crate::dashboard::link))
        .route("/v1/hosts/dashboard", post(crate::dashboard::host_link))
        .route("/metrics", get(crate::metrics::metrics))
        // The gate has read the body already, within the route's limit (guard::route).
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), guard::guard))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), timed))
        .with_state(shared)
}

/// Records how long each request took, per route, for `/metrics`.
async fn timed(State(sh): S, req: Request, next: axum::middleware::Next) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let resp = next.run(req).await;
    sh.request_times.record(&route, started.elapsed());
    resp
}

/// A JSON body whose rejections become [`ApiError`]s in our error format.
struct Body<T>(T);

impl<T: serde::de::DeserializeOwned, St: Send + Sync> FromRequest<St> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &St) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e @ JsonRejection::JsonDataError(_)) | Err(e @ JsonRejection::JsonSyntaxError(_)) => {
                Err(ApiError::BadRequest(format!("the request body is not valid: {}", e.body_text())))
            }
            Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::TooLarge(format!(
                "the request body is larger than {} MiB; split the request",
                MAX_BODY >> 20
            ))),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// Runs a catalog call on the blocking pool.
pub(crate) async fn db<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    shared.catalog(f).await.map_err(ApiError::from)
}

/// The user whose credential the request gate verified (signature for this request, grid,
/// expiry, first use, body), once the account is found enabled and the device has shown it
/// holds the keys if it was registered with a recovery code.
pub(crate) async fn user(shared: &Arc<Shared>, headers: &HeaderMap) -> Result<UserRow, ApiError> {
    let u = device_holder(shared, headers).await?;
    if u.unproven {
        event(shared, &u, "auth.refused", format!("device {} has not shown the keys", u.device)).await;
        return Err(ApiError::Forbidden(
            "this device was registered with a recovery code and has not shown yet that it holds your keys; \
             run `scatter key recovery-code` on it, with your passphrase"
                .into(),
        ));
    }
    Ok(u)
}

/// As [`user`], for the one thing a device registered with a recovery code may do before it
/// has shown it holds the keys: change the code, signed with them.
pub(crate) async fn device_holder(shared: &Arc<Shared>, headers: &HeaderMap) -> Result<UserRow, ApiError> {
    let id =
        headers.get(guard::VERIFIED).and_then(|v| v.to_str().ok()).and_then(|v| guard::open(shared, v)).ok_or_else(
            || ApiError::Unauthorized("this request needs your credentials; run `scatter init` first".into()),
        )?;
    let (u, _, revoked) = db(shared, move |s| s.device_login(id)).await?.ok_or_else(|| {
        ApiError::Unauthorized("this device is not registered with this coordinator; run `scatter init` again".into())
    })?;
    if revoked {
        // Revoked after the gate let the request in: refused all the same.
        return Err(devices::revoked());
    }
    if u.disabled {
        event(shared, &u, "auth.refused", "account disabled".into()).await;
        return Err(ApiError::Forbidden("this account is disabled; ask the grid's admin".into()));
    }
    Ok(u)
}

/// Who an event is recorded for: the actor the trail names, and its party, which decides
/// where the event is kept (see `store::events`: what an account or a host may repeat at
/// will must not push the grid's own changes out of the trail).
pub(crate) struct Who {
    party: Party,
    actor: String,
}

impl Who {
    /// The coordinator itself (its checker, expiry, host periods).
    pub(crate) fn coordinator() -> Self {
        Self { party: Party::Grid, actor: "coordinator".into() }
    }

    /// A peer not known (a refused credential, token or link).
    pub(crate) fn unknown() -> Self {
        Self { party: Party::Account, actor: "unknown".into() }
    }

    /// A device, known by its id only (a credential that failed after it was read).
    pub(crate) fn device(device: scatter_core::DeviceId) -> Self {
        Self { party: Party::Account, actor: device.to_string() }
    }
}

impl From<&UserRow> for Who {
    /// The caller's own account: of the grid's side if an admin.
    fn from(u: &UserRow) -> Self {
        let party = if u.role == Role::Admin { Party::Grid } else { Party::Account };
        Self { party, actor: u.me.to_string() }
    }
}

impl From<HostId> for Who {
    fn from(host: HostId) -> Self {
        Self { party: Party::Host, actor: host.to_string() }
    }
}

/// Records a security event; a failure to record is logged, never fatal to the request.
pub(crate) async fn event(sh: &Arc<Shared>, who: impl Into<Who>, action: &'static str, detail: String) {
    let Who { party, actor } = who.into();
    // Details may quote what a peer sent (an unauthenticated join's address, say): control
    // characters written raw would let it forge lines in the log, or drive a terminal.
    tracing::info!(actor = %printable(&actor), action, detail = %printable(&detail), "event");
    if sh.catalog(move |s| s.record_event(now(), party, &actor, action, &detail)).await.is_err() {
        tracing::warn!(action, "could not record an event in the catalog");
    }
    if SECURITY_CHANGES.contains(&action) {
        sh.backup_soon();
    }
}

/// `text` with its control characters escaped (`\n`, `\u{1b}`…), and the ones that reorder
/// or break lines on a terminal (bidirectional overrides, line and paragraph separators),
/// for a log line.
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let hidden = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    match text.chars().any(hidden) {
        false => std::borrow::Cow::Borrowed(text),
        true => text.chars().map(|c| if hidden(c) { c.escape_unicode().to_string() } else { c.to_string() }).collect(),
    }
}

/// Events that change who may do what, or what a recovery restores: each asks for a catalog
/// backup soon, so that a catalog recovered from the hosts never undoes one (a revoked invite
/// that registers again, an appender trusted again, a key file sealed under an old
/// passphrase). Asked for here, where every such change is recorded, rather than by each
/// handler: several had been missed. (Not a host's new receipt key: a host sends its key
/// with every heartbeat, so a recovered catalog learns it again at once.)
const SECURITY_CHANGES: &[&str] = &[
    "delegate.disabled",
    "delegate.trusted",
    "delegate.untrusted",
    "device.invited",
    "device.revoked",
    "host.joined",
    "host.state",
    "invite.revoked",
    "lock.extended",
    "lock.lifted",
    "operator.added",
    "operator.independent",
    "policy.set",
    "recovery.replaced",
    "recovery.resealed",
    "recovery.used",
    "user.invited",
    "user.registered",
    "user.removed",
];

/// What a request does to the data of the user it works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Right {
    /// List and fetch: admin, user, reader.
    Read,
    /// Add new data: admin, user, appender.
    Add,
    /// Remove or forget data: admin, user.
    Delete,
    /// See and manage the account (its usage and placement policy): admin, user.
    Manage,
    /// Manage the grid: admin.
    Admin,
}

/// Fails unless the caller's role grants `right`.
pub(crate) fn require(u: &UserRow, right: Right) -> Result<(), ApiError> {
    let ok = match u.role {
        Role::Admin => true,
        Role::User => right != Right::Admin,
        Role::Reader => right == Right::Read,
        Role::Appender => right == Right::Add,
    };
    if ok {
        return Ok(());
    }
    let what = match right {
        Right::Read => "read or list data",
        Right::Add => "add data",
        Right::Delete => "remove or overwrite data",
        Right::Manage => "see or manage the account (its usage, quota, charges and placement policy)",
        Right::Admin => "administer the grid",
    };
    Err(ApiError::Forbidden(format!("your role `{}` may not {what}", u.role)))
}

/// The caller, checked for `right`.
pub(crate) async fn caller(shared: &Arc<Shared>, headers: &HeaderMap, right: Right) -> Result<UserRow, ApiError> {
    let u = user(shared, headers).await?;
    if let Err(e) = require(&u, right) {
        event(shared, &u, "auth.forbidden", format!("role {} asked to {right:?}", u.role)).await;
        return Err(e);
    }
    Ok(u)
}

fn decode_b64(field: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    B64.decode(text).map_err(|_| ApiError::BadRequest(format!("`{field}` is not valid base64")))
}

fn random_secret() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// A host's address in the one spelling the catalog keeps, `scheme://host:port`, or why it is
/// not one: every spelling of the same socket (`https://127.1:P`, a trailing `/`, a default
/// port left out, a name's trailing dot) is the same address, so no host takes another's by
/// writing it differently. A path, query, fragment or user name is refused: a host is
/// reached at its root. Names are not resolved: `localhost` and `127.0.0.1` stay two.
fn check_address(address: &str) -> Result<String, ApiError> {
    let bad =
        || ApiError::BadRequest(format!("`{address:.300}` is not a valid host address (expected http(s)://HOST:PORT)"));
    if address.len() >= 256 {
        return Err(bad());
    }
    let url = reqwest::Url::parse(address).map_err(|_| bad())?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.username().is_empty()
        && url.password().is_none()
        && matches!(url.path(), "" | "/")
        && url.query().is_none()
        && url.fragment().is_none();
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return Err(bad());
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if !plain || host.is_empty() {
        return Err(bad());
    }
    Ok(format!("{}://{host}:{port}", url.scheme()))
}

/// The secret part of a token as a client or host sent it (whole, or the secret alone).
fn token_secret(token: &str) -> String {
    token.parse::<scatter_net::Token>().map(|t| t.secret().to_owned()).unwrap_or_else(|_| token.trim().to_owned())
}

async fn join(State(sh): S, Body(req): Body<JoinRequest>) -> ApiResult<JoinResponse> {
    // The grid's own token (the admin's machines, each its own failure domain), else an
    // operator's (its hosts are one domain): both compared in constant time.
    let token_hash = secret_hash(&token_secret(&req.join_token));
    let operator = if bool::from(token_hash.ct_eq(&sh.join_token_hash)) {
        None
    } else {
        match db(&sh, move |s| s.operator_by_token(&token_hash)).await? {
            Some(op) => Some(op),
            None => {
                event(
                    &sh,
                    crate::api::Who::unknown(),
                    "host.join_refused",
                    format!("wrong join token from {}", req.address),
                )
                .await;
                return Err(ApiError::Unauthorized(
                    "the join token is wrong; copy it from the coordinator's data directory (join-token), or ask the admin for an operator's token (scatter admin operator add)".into(),
                ));
            }
        }
    };
    let req = JoinRequest { address: check_address(&req.address)?, ..req };
    // Printed in every user's `status`: it must print as itself, without control characters
    // (a terminal obeys them), characters that reorder or hide text, or backslashes.
    if req.zone.is_empty() || req.zone.len() > 64 || scatter_core::tree::escape(req.zone.as_bytes()) != req.zone {
        return Err(ApiError::BadRequest(
            "the zone label must be 1 to 64 characters, without control or invisible characters or backslashes".into(),
        ));
    }
    let receipt_key = req.receipt_key.as_deref().map(parse_receipt_key).transpose()?;
    refuse_gateway_name(&sh, &req.address).await?;
    let secret = random_secret();
    let hash = secret_hash(&secret);
    let terms = terms_of(&req.terms);
    let (address, zone, capacity) = (req.address.clone(), req.zone.clone(), req.capacity.0);
    let host_id = db(&sh, move |s| {
        let host = crate::store::NewHost {
            secret_hash: &hash,
            address: &address,
            zone: &zone,
            capacity,
            receipt_key: receipt_key.as_ref(),
            operator,
            terms: &terms,
        };
        s.join_host(&host, now())
    })
    .await?;
    let by = operator.map(|op| format!(", run by operator {op}")).unwrap_or_default();
    // A machine whose data directory was lost joins again as a new host: its old row still
    // holds shards the catalog counts on, until heartbeats find it gone.
    let before: Vec<crate::store::HostRow> = db(&sh, |s| s.hosts())
        .await?
        .into_iter()
        .filter(|h| h.id != host_id && h.address == req.address && h.state == crate::store::Standing::Active)
        .collect();
    let warning = before.first().map(|old| {
        let heard = now().saturating_sub(old.last_seen);
        let running = match crate::room::host_state(&sh, old) {
            HostState::Online | HostState::Suspect => format!(
                " and was heard from {heard} s ago: if it still runs there, this host's --public-url is wrong (two hosts cannot share an address);"
            ),
            _ => ";".into(),
        };
        format!(
            "host {} was registered at this address before{running} if this is that machine with its data directory lost, run `scatter admin host disable {}` so repair rebuilds what it held now",
            old.id, old.id
        )
    });
    if let Some(w) = &warning {
        tracing::warn!(host = %host_id, "{w}");
    }
    event(
        &sh,
        host_id,
        "host.joined",
        format!(
            "{} in zone {}, {}{by}{}",
            req.address,
            req.zone,
            req.capacity,
            warning.as_deref().map(|w| format!("; {w}")).unwrap_or_default()
        ),
    )
    .await;
    Ok(Json(JoinResponse {
        host_id,
        host_secret: secret,
        coordinator_key: hex::encode(sh.signing.verifying_key().to_bytes()),
        warning,
    }))
}

/// Terms as a host sent them, as the catalog keeps them.
fn terms_of(t: &HostTerms) -> crate::store::Terms {
    crate::store::Terms { price: t.price, egress_price: t.egress_price, bandwidth: t.bandwidth, until: t.until }
}

/// A host's receipt key as sent (hex Ed25519 public key).
fn parse_receipt_key(hex_key: &str) -> Result<[u8; 32], ApiError> {
    let mut key = [0u8; 32];
    let valid =
        hex::decode_to_slice(hex_key, &mut key).is_ok() && ed25519_dalek::VerifyingKey::from_bytes(&key).is_ok();
    if !valid {
        return Err(ApiError::BadRequest("the receipt key is not an Ed25519 public key in hex".into()));
    }
    Ok(key)
}

/// Checks a receipt against a host's registered receipt key.
pub(crate) fn check_receipt(
    host: HostId,
    key: Option<[u8; 32]>,
    receipt: &scatter_proto::SignedReceipt,
    shard: &ShardId,
    size: u64,
    grant: &[u8; 32],
) -> Result<scatter_proto::Receipt, String> {
    let key = receipt_verifier(key)
        .ok_or_else(|| format!("host {host} has registered no receipt key yet (it runs an older scatter)"))?;
    receipt.check(&key, host, shard, size, grant).map_err(|e| e.to_string())
}

/// A registered receipt key as a verifying key.
fn receipt_verifier(key: Option<[u8; 32]>) -> Option<ed25519_dalek::VerifyingKey> {
    key.and_then(|k| ed25519_dalek::VerifyingKey::from_bytes(&k).ok())
}

/// Checks a host's secret against the hash stored at join.
pub(crate) async fn check_host(sh: &Arc<Shared>, id: HostId, secret: &str) -> Result<(), ApiError> {
    // Only the one host's secret: a heartbeat must not cost an aggregate over every shard.
    let stored = db(sh, move |s| s.host_secret_hash(id)).await?;
    if !stored.is_some_and(|h| bool::from(secret_hash(secret).ct_eq(&h))) {
        return Err(ApiError::Unauthorized(format!(
            "host {id} is not registered with this secret; remove the host's data directory to join again"
        )));
    }
    Ok(())
}

/// Signs a certificate for a host's new key, naming the host part of its address.
async fn host_cert(State(sh): S, Body(req): Body<HostCertRequest>) -> ApiResult<HostCertResponse> {
    check_host(&sh, req.host_id, &req.host_secret).await?;
    let req = HostCertRequest { address: check_address(&req.address)?, ..req };
    let Some(authority) = &sh.authority else {
        return Err(ApiError::BadRequest(
            "this grid runs without TLS (--insecure); start the host with --insecure and an http:// coordinator URL"
                .into(),
        ));
    };
    let name = reqwest::Url::parse(&req.address)
        .ok()
        .and_then(|u| u.host_str().map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned()))
        .ok_or_else(|| ApiError::BadRequest(format!("`{}` names no host", req.address)))?;
    let key = hex::decode(&req.public_key).map_err(|_| ApiError::BadRequest("the public key is not hex".into()))?;
    // Bound to hosts (unless a gateway's): a host certified first under a name would still
    // pose as the gateway an account binds it to later.
    let bound = scatter_net::tls::check_host_name(&name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let host_id = req.host_id;
    let holder = match scatter_net::tls::is_loopback(&bound) {
        true => None,
        false => match name_in_use(&sh, host_id, &bound).await? {
            Some(other) => Some(NameHolder::Host(other)),
            None => db(&sh, move |s| s.bind_host_name(host_id, &bound, now())).await?,
        },
    };
    match holder {
        None => {}
        Some(NameHolder::Gateway(account) | NameHolder::Released(account, _)) => {
            return Err(gateway_name_refused(&sh, req.host_id.into(), "host.cert_refused", &name, account).await)
        }
        Some(NameHolder::Host(other)) => {
            event(&sh, req.host_id, "host.cert_refused", format!("{name:.100}: the name of host {other}")).await;
            return Err(ApiError::Forbidden(format!(
                "`{name}` is the name of host {other}, of another operator; give this host an address of its own (if host {other} is gone for good, the admin can take it out of the grid: `scatter admin host disable {other}`)"
            )));
        }
    }
    let cert = authority.issue(std::slice::from_ref(&name), &key).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    event(&sh, req.host_id, "host.certified", name).await;
    Ok(Json(HostCertResponse { certificate: scatter_net::tls::to_pem(&cert), ca: authority.cert_pem() }))
}

/// Another party's host in the grid (taking or serving data) whose address has `name`, if
/// any: its name, even when certified before names were bound, is not certified for `host`.
async fn name_in_use(sh: &Arc<Shared>, host: HostId, name: &str) -> Result<Option<HostId>, ApiError> {
    let hosts = db(sh, |s| s.hosts()).await?;
    let party = |id: HostId| hosts.iter().find(|h| h.id == id).map(|h| h.operator.map(|(op, _)| op));
    let mine = party(host);
    Ok(hosts
        .iter()
        .find(|h| {
            h.id != host
                && matches!(h.state, Standing::Active | Standing::Draining)
                && Some(h.operator.map(|(op, _)| op)) != mine
                && address_name(&h.address).is_some_and(|n| n == name)
        })
        .map(|h| h.id))
}

/// Refuses a host at `address` when its name is certified for an account's S3 gateway (a
/// host there could never be certified: see [`host_cert`]), before anything is registered
/// (so the refusal has no host to name).
async fn refuse_gateway_name(sh: &Arc<Shared>, address: &str) -> Result<(), ApiError> {
    let Some(name) = address_name(address).filter(|n| sh.authority.is_some() && !scatter_net::tls::is_loopback(n))
    else {
        return Ok(());
    };
    let lookup = name.clone();
    match db(sh, move |s| s.gateway_name_holder(&lookup, now())).await? {
        Some(account) => Err(gateway_name_refused(sh, Who::unknown(), "host.join_refused", &name, account).await),
        None => Ok(()),
    }
}

/// The refusal of a host at `name`, which `account`'s gateways hold, recorded as `action`.
async fn gateway_name_refused(
    sh: &Arc<Shared>,
    who: Who,
    action: &'static str,
    name: &str,
    account: UserId,
) -> ApiError {
    event(sh, who, action, format!("{name:.100}: {account}'s gateway name")).await;
    ApiError::Forbidden(format!(
        "`{name}` is certified for an S3 gateway of {account}; give this host an address of its own"
    ))
}

/// The name (as certificates carry it) of the host part of `address`.
fn address_name(address: &str) -> Option<String> {
    let url = reqwest::Url::parse(address).ok()?;
    scatter_net::tls::check_host_name(url.host_str()?).ok()
}

/// The most names a gateway's certificate may carry.
const GATEWAY_NAMES: usize = 8;

/// Signs a certificate for a user's S3 gateway (see [`GatewayCertRequest`]). Any account
/// that may read may run a gateway for its own data; the event records who asked for which
/// names.
async fn gateway_cert(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<GatewayCertRequest>,
) -> ApiResult<HostCertResponse> {
    let u = caller(&sh, &headers, Right::Read).await?;
    let Some(authority) = &sh.authority else {
        return Err(ApiError::BadRequest(
            "this grid runs without TLS (--insecure): it has no CA to certify a gateway; use --cert and --key".into(),
        ));
    };
    if req.names.is_empty() || req.names.len() > GATEWAY_NAMES {
        return Err(ApiError::BadRequest(format!("a gateway's certificate names 1 to {GATEWAY_NAMES} addresses")));
    }
    let key = hex::decode(&req.public_key).map_err(|_| ApiError::BadRequest("the public key is not hex".into()))?;
    // A name is certified for one account's gateways, and never for a host's address: S3
    // clients trust the grid CA, so a second account certified under the same name could
    // pose as the first one's gateway. Loopback names reach only the machine itself.
    let names = req
        .names
        .iter()
        .map(|n| scatter_net::tls::check_host_name(n).map_err(|e| ApiError::BadRequest(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let names: Vec<String> = names.into_iter().filter(|n| !scatter_net::tls::is_loopback(n)).collect();
    // A host's address counts even before the host's next certificate binds it.
    let hosts = db(&sh, |s| s.hosts()).await?;
    let addressed: HashMap<String, HostId> =
        hosts.iter().filter_map(|h| Some((address_name(&h.address)?, h.id))).collect();
    let (me, owner, wanted) = (u.me, u.id, names.clone());
    let (at, until) = (now(), now() + scatter_net::tls::GATEWAY_VALIDITY_SECS);
    let bound = db(&sh, move |s| s.bind_gateway_names(me, owner, &wanted, &addressed, at, until)).await?;
    match bound {
        // A name bound now is part of what a recovered catalog must not undo.
        Ok(true) => sh.backup_soon(),
        Ok(false) => {}
        Err(NameRefusal::TooMany) => {
            event(&sh, &u, "gateway.cert_refused", format!("{:.100}: too many names", names.join(", "))).await;
            return Err(ApiError::Forbidden(format!(
                "this account's gateways would hold more than {GATEWAY_NAMES_PER_ACCOUNT} names; give up one you no longer use (`scatter gateway name ls`, then `scatter gateway name rm NAME`)"
            )));
        }
        Err(NameRefusal::Held(name, holder)) => {
            let (whose, why) = match holder {
                NameHolder::Gateway(a) => (format!("{a}'s gateway name"), "is certified for another account's S3 gateway; give this gateway a name of its own, or use --cert and --key".to_owned()),
                NameHolder::Released(a, until) => (format!("{a}'s gateway name, given up"), format!("was given up by another account's S3 gateway, and passes on once its certificates expire, at {}; until then give this gateway another name, or use --cert and --key", crate::lock::utc(until))),
                NameHolder::Host(h) => (format!("host {h}'s address"), format!("is the address of host {h}; a gateway needs a name of its own")),
            };
            event(&sh, &u, "gateway.cert_refused", format!("{name:.100}: {whose}")).await;
            return Err(ApiError::Forbidden(format!("`{name}` {why}")));
        }
    }
    let cert = authority.issue_gateway(&req.names, &key).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    event(&sh, &u, "gateway.certified", req.names.join(", ")).await;
    Ok(Json(HostCertResponse { certificate: scatter_net::tls::to_pem(&cert), ca: authority.cert_pem() }))
}

fn name_entry(n: crate::store::GatewayName) -> GatewayNameEntry {
    GatewayNameEntry {
        name: n.name,
        account: n.account,
        since: n.since,
        certified_until: n.certified_until,
        released: n.released,
    }
}

/// The names the caller's gateways hold (an account's own and its delegates'; a delegate's
/// own), or every account's for an admin.
async fn gateway_names(State(sh): S, headers: HeaderMap) -> ApiResult<GatewayNamesResponse> {
    let u = caller(&sh, &headers, Right::Read).await?;
    let whose = (u.role != Role::Admin).then_some(u.me);
    let names = db(&sh, move |s| s.gateway_names(whose, now())).await?;
    Ok(Json(GatewayNamesResponse {
        names: names.into_iter().map(name_entry).collect(),
        limit: GATEWAY_NAMES_PER_ACCOUNT as u32,
    }))
}

/// Gives up a name the caller's gateways hold (an admin: any account's, to free a name an
/// account took and does not use). It passes on once the certificates issued for it expire:
/// until then whoever holds one could still pose under it.
async fn release_gateway_name(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<ReleaseGatewayNameRequest>,
) -> ApiResult<GatewayNameEntry> {
    let u = caller(&sh, &headers, Right::Read).await?;
    let name = scatter_net::tls::check_host_name(&req.name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let whose = (u.role != Role::Admin).then_some(u.me);
    let lookup = name.clone();
    let Some((released, now_given_up)) = db(&sh, move |s| s.release_gateway_name(&lookup, whose)).await? else {
        return Err(ApiError::NotFound(format!(
            "no gateway of {} holds `{name}`; `scatter gateway name ls` lists the names it holds",
            match whose {
                Some(_) => "this account",
                None => "any account",
            }
        )));
    };
    // Given up once: asking again records nothing more (any account could repeat it at will).
    if now_given_up {
        event(&sh, &u, "gateway.name_released", format!("{name}, held by {}", released.account)).await;
        sh.backup_soon();
    }
    Ok(Json(name_entry(released)))
}

async fn inventory(State(sh): S, Body(req): Body<InventoryRequest>) -> ApiResult<InventoryResponse> {
    check_host(&sh, req.host_id, &req.host_secret).await?;
    // A pack committed moments ago may have been listed before its upload finished: only
    // packs older than a settling time (a sixth of the orphan grace, at least 10 s) count.
    // After a recovery, shards the restored catalog does not know are kept for a while:
    // their owners' next backups record them again (see `RECOVERY_HOLD`).
    let settled = now().saturating_sub((sh.orphan_grace.as_secs() / 6).max(10));
    let grace = if sh.holding_orphans(now()) { u64::MAX } else { sh.orphan_grace.as_secs() };
    let host = req.host_id;
    let done = db(&sh, move |s| match req.since {
        Some(since) => s.reconcile_changes(host, since, &req.shards, &req.removed, settled, grace, now()),
        None => s.reconcile(host, &req.shards, settled, grace, now()),
    })
    .await?;
    crate::audit::lost_while_struck(&sh, host, &done.marked).await;
    if done.ack.is_some() {
        sh.inventoried.note(host);
    }
    if done.lost + done.orphaned > 0 {
        let (lost, orphaned) = (done.lost, done.orphaned);
        tracing::warn!(%host, lost, orphaned, "inventory differs from the catalog; lost shards will be repaired");
    }
    let receipts_wanted = db(&sh, move |s| s.receipts_wanted(host, MAX_RECEIPTS)).await?;
    Ok(Json(InventoryResponse {
        lost: done.lost,
        orphaned: done.orphaned,
        receipts_wanted,
        ack: done.ack,
        pending: done.pending,
        unsettled: done.unsettled,
    }))
}

/// Receipts a host signs for shards recorded before receipts existed. Each must verify with
/// the host's key and state the shard's size; from then on the shard's audits count
/// against the host. (A host lying here only makes its own failures count.)
async fn backfill_receipts(State(sh): S, Body(req): Body<ReceiptsRequest>) -> ApiResult<serde_json::Value> {
    check_host(&sh, req.host_id, &req.host_secret).await?;
    if req.receipts.len() > MAX_RECEIPTS {
        return Err(ApiError::BadRequest(format!("at most {MAX_RECEIPTS} receipts per request")));
    }
    let host = req.host_id;
    let key = receipt_verifier(db(&sh, move |s| s.receipt_key(host)).await?).ok_or_else(|| {
        ApiError::BadRequest("the host has no receipt key registered; it registers one with its next heartbeat".into())
    })?;
    let checked: Vec<(ShardId, u64, String)> = req
        .receipts
        .into_iter()
        .filter_map(|r| {
            let opened = r.open(&key).ok().filter(|o| o.host == host && o.grant == scatter_proto::receipt::NO_GRANT)?;
            Some((opened.shard, opened.size, r.0))
        })
        .collect();
    let recorded = db(&sh, move |s| s.record_receipts(host, &checked)).await?;
    if recorded > 0 {
        event(&sh, host, "host.receipts_backfilled", format!("{recorded} shard(s)")).await;
    }
    Ok(Json(serde_json::json!({ "recorded": recorded })))
}

async fn heartbeat(State(sh): S, Body(req): Body<HeartbeatRequest>) -> ApiResult<HeartbeatResponse> {
    let req = HeartbeatRequest { address: check_address(&req.address)?, ..req };
    check_host(&sh, req.host_id, &req.host_secret).await?;
    check_address_change(&sh, req.host_id, &req.address).await?;
    if req.refused_grants > 0 {
        // Bounded whatever the host sends: a few reasons, each cut short.
        let reasons: Vec<String> =
            req.refusals.iter().take(MAX_REFUSALS).map(|r| r.chars().take(160).collect()).collect();
        let detail = format!("{} request(s) refused: {}", req.refused_grants, reasons.join("; "));
        event(&sh, req.host_id, "grant.refused", detail).await;
    }
    if req.spent_grants > 0 {
        // Apart from the refusals above: honest restores meet spent budgets too.
        let detail = format!(
            "{} read(s) refused: their grant's bytes were served twice already (a restore wanting the same bytes again reads them under a new grant; many, steadily, may be a reader scraping)",
            req.spent_grants
        );
        event(&sh, req.host_id, "grant.spent", detail).await;
    }
    if let Some(key) = req.receipt_key.as_deref().map(parse_receipt_key).transpose()? {
        let host = req.host_id;
        if db(&sh, move |s| s.set_receipt_key(host, &key)).await? {
            event(&sh, host, "host.receipt_key_changed", "receipts from now on use a new key".into()).await;
        }
    }
    // The terms are the host's latest word (see the store's `hosts` module: states decided
    // from earlier terms stand); what it served is a claim, capped by the gap.
    let (grace, host) = (sh.offline_after.as_secs(), req.host_id);
    let (gap, standing) = db(&sh, move |s| {
        let terms = terms_of(&req.terms);
        let beat = crate::store::Beat {
            address: &req.address,
            capacity: req.capacity.0,
            used: req.used.0,
            free: req.free.0,
            terms: &terms,
            served: req.served,
        };
        s.heartbeat(req.host_id, &beat, grace, now())
    })
    .await?;
    if gap > grace {
        // It was offline (see `presence`, which says when a host goes).
        event(&sh, host, "host.online", format!("heard from again after {gap} s of silence")).await;
    }
    // Hosts serve catalog backups to whoever proves they hold the recovery key.
    let recovery_access_key = sh.backups.as_ref().map(|b| hex::encode(b.public.access.as_bytes()));
    // Its standing, for its operator's log: a host disabled by the admin said nothing of it.
    let standing = standing.map(|s| s.as_str().to_owned());
    Ok(Json(HeartbeatResponse { recovery_access_key, standing }))
}

/// Refuses a host's move to an address where another host is heard from: clients would
/// reach that one with this one's grants, and the refusals would be counted against it.
async fn check_address_change(sh: &Arc<Shared>, host: HostId, address: &str) -> Result<(), ApiError> {
    // Every heartbeat asks: a lookup by id, and the whole host list only for a move.
    if db(sh, move |s| s.host_address(host)).await?.is_some_and(|a| a == address) {
        return Ok(());
    }
    let hosts = db(sh, |s| s.hosts()).await?;
    let taken = hosts.iter().find(|h| {
        h.id != host
            // Rows written before addresses were kept in one spelling compare as that spelling.
            && check_address(&h.address).is_ok_and(|a| a == address)
            && matches!(crate::room::host_state(sh, h), HostState::Online | HostState::Suspect)
    });
    match taken {
        Some(other) => Err(ApiError::Conflict(format!(
            "{address} is the address of host {}, which is running: two hosts cannot share an address; give this host its own --public-url (or --listen)",
            other.id
        ))),
        None => Ok(()),
    }
}

async fn register(State(sh): S, Body(req): Body<RegisterRequest>) -> ApiResult<RegisterResponse> {
    if !req.public_key.starts_with("age1") || req.public_key.len() > 128 {
        return Err(ApiError::BadRequest("the public key is not an age X25519 recipient (age1…)".into()));
    }
    let device_key = devices::device(&req.device_key, &req.device_name)?;
    let token_hash = secret_hash(&token_secret(&req.token));
    // A host's join token is no invite (a new user tried the grid's join-token file): said
    // as such. Whoever sends it holds it already, so the answer tells nothing new.
    let joins_hosts = bool::from(token_hash.ct_eq(&sh.join_token_hash))
        || db(&sh, move |s| s.operator_by_token(&token_hash)).await?.is_some();
    if joins_hosts {
        return Err(ApiError::Unauthorized(
            "this is a join token, for hosts (`scatter host --join-token`); `scatter init` takes an invite, from `scatter admin user add`".into(),
        ));
    }
    // A reader with write-only keys could never read: refused before the invite is spent
    // (it was spent, and the reader registered unable to do anything). A machine of the
    // user's own may hold write-only keys (a backup source that cannot read).
    if req.write_only && db(&sh, move |s| s.invite_role(&token_hash)).await? == Some((Role::Reader, false)) {
        return Err(ApiError::BadRequest(
            "this invite is for a reader, which reads with the owner's full keys, and the keys given are write-only; on one of the owner's devices run `scatter key export -o FILE` (without --write-only) and import that (the invite is not used up)".into(),
        ));
    }
    let user = db(&sh, move |s| s.redeem_token(&token_hash, &req.public_key, &device_key, &req.device_name, now()))
        .await?
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "the token is unknown or was already used; ask the grid's admin for a new one".into(),
            )
        });
    let user = match user {
        Ok(u) => u,
        Err(e) => {
            event(&sh, crate::api::Who::unknown(), "user.register_refused", "unknown or used token".into()).await;
            return Err(e);
        }
    };
    event(&sh, &user, "user.registered", format!("role {}, device {}", user.role, user.device)).await;
    Ok(Json(RegisterResponse { user_id: user.me, device_id: user.device, role: user.role }))
}

async fn status(State(sh): S, headers: HeaderMap) -> ApiResult<StatusResponse> {
    user(&sh, &headers).await?;
    let hosts = db(&sh, |s| s.hosts()).await?;
    let grid = place::grid_info(&sh, &hosts, true).await?;
    Ok(Json(StatusResponse { hosts: hosts.iter().map(|h| host_info(&sh, h)).collect(), grid }))
}

/// A host as `status` and `admin host ls` show it.
pub(crate) fn host_info(sh: &Shared, h: &crate::store::HostRow) -> HostInfo {
    HostInfo {
        id: h.id,
        state: crate::room::host_state(sh, h),
        shards: h.shards,
        last_seen: h.last_seen,
        audits_passed: h.audits_passed,
        audits_failed: h.audits_failed,
        address: h.address.clone(),
        zone: h.zone.clone(),
        capacity: h.capacity,
        used: h.catalog_used.max(h.reported_used),
        room: crate::room::free_room(h, 0),
        domain: match h.domain() {
            crate::store::Domain::Host(id) => format!("host {id}"),
            crate::store::Domain::Operator(op) => format!("operator {op}"),
        },
        terms: HostTerms {
            price: h.terms.price,
            egress_price: h.terms.egress_price,
            bandwidth: h.terms.bandwidth,
            until: h.terms.until,
        },
        reputation: crate::reputation::of(h, now()),
        online_secs: h.record.online_secs,
        joined: h.record.joined,
        repairs_caused: h.record.repairs_caused,
        measured_bandwidth: h.record.measured_bandwidth,
        served_bytes: h.record.served_bytes,
    }
}

async fn create_session(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<CreateSessionRequest>,
) -> ApiResult<CreateSessionResponse> {
    let u = caller(&sh, &headers, Right::Add).await?;
    let wrapped = decode_b64("wrapped_key", &req.wrapped_key)?;
    if wrapped.len() > 4096 {
        return Err(ApiError::BadRequest("the wrapped key is too large".into()));
    }
    let ttl = sh.session_ttl.as_secs().max(1);
    let session = db(&sh, move |s| s.open_session(u.id, u.me, &wrapped, now(), now() + ttl)).await?;
    Ok(Json(CreateSessionResponse { session, ttl_secs: ttl }))
}

/// Refuses a pack whose chunks overlap or are shorter than a sealed chunk can be: each
/// claimed chunk is a row of the catalog, so a pack may claim no more than its bytes hold (a
/// real pack lays its chunks one after another).
fn check_chunk_layout(chunks: &[scatter_proto::api::ChunkEntry]) -> Result<(), ApiError> {
    let mut spans: Vec<(u64, u64)> = chunks.iter().map(|c| (c.offset, c.len)).collect();
    spans.sort_unstable();
    let short = spans.iter().any(|(_, len)| *len < scatter_core::crypto::SEAL_OVERHEAD as u64);
    // Offsets and lengths were checked to fit the pack, so no sum here overflows.
    let overlap = spans.windows(2).any(|w| w[0].0 + w[0].1 > w[1].0);
    if short || overlap {
        return Err(ApiError::BadRequest(format!(
            "the pack's chunks overlap or are shorter than {} bytes; a pack holds its sealed chunks one after another",
            scatter_core::crypto::SEAL_OVERHEAD
        )));
    }
    Ok(())
}

fn check_ids(n: usize) -> Result<(), ApiError> {
    if n > MAX_IDS {
        return Err(ApiError::BadRequest(format!("at most {MAX_IDS} ids per request")));
    }
    Ok(())
}

async fn lookup_chunks(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<LookupChunksRequest>,
) -> ApiResult<LookupChunksResponse> {
    let u = caller(&sh, &headers, Right::Add).await?;
    check_ids(req.ids.len())?;
    let known = match req.session {
        Some(session) => db(&sh, move |s| s.lookup_for_session(u.id, u.me, session, &req.ids, now())).await?,
        None => db(&sh, move |s| s.known_chunks(u.id, u.me, &req.ids)).await?,
    };
    Ok(Json(LookupChunksResponse { known }))
}

/// Why a pack commit was refused once its placements were looked up.
enum Refused {
    /// Shards not placed for the caller, or receipts that do not answer their placement.
    Receipts(Vec<String>),
    /// The pack's spread breaks the rule its shards were placed under.
    Spread(ApiError),
    /// The placements the receipts were checked against changed before they were used.
    Changed,
}

/// Checks a pack commit against the caller's placements of its shards (`reserved`, one per
/// shard of `req`; `None` where it holds none): each was placed for the caller, for this
/// code, and its host (receipt key in `keys`) signed a receipt answering that placement's
/// grant, with the shard's id and size; and no failure domain (from `domains`) holds more of
/// the pack than the rule its shards were placed under allows.
fn check_placed(
    req: &CommitPackRequest,
    keys: &[Option<[u8; 32]>],
    domains: &[Option<Domain>],
    reserved: &[Option<Reservation>],
) -> Result<(), Refused> {
    let mut refused = Vec::new();
    let mut per_domain = 0;
    for ((s, r), key) in req.shards.iter().zip(reserved).zip(keys) {
        let Some(r) = r else {
            refused.push(format!(
                "shard {} on host {} was not placed for this account (or the placement lapsed or was given back)",
                s.index, s.host
            ));
            continue;
        };
        // The loosest rule any of its shards was placed under: placements settle for less
        // (down to surviving one domain's loss) only when too few hosts are up, and choose
        // every host themselves, so this is the spread the coordinator agreed to.
        per_domain = per_domain.max(r.per_domain);
        if r.code != (req.k, req.m) {
            refused.push(format!(
                "shard {} was placed for a {}+{} pack, not {}+{}",
                s.index, r.code.0, r.code.1, req.k, req.m
            ));
            continue;
        }
        if let Err(why) = check_receipt(s.host, *key, &s.receipt, &s.shard, req.shard_size, &r.grant) {
            refused.push(format!("shard {} on host {}: {why}", s.index, s.host));
        }
    }
    if !refused.is_empty() {
        return Err(Refused::Receipts(refused));
    }
    place::check_spread(&req.shards, domains, per_domain).map_err(Refused::Spread)
}

async fn commit_pack(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<CommitPackRequest>,
) -> ApiResult<serde_json::Value> {
    let u = caller(&sh, &headers, if req.relocate { Right::Delete } else { Right::Add }).await?;
    db(&sh, move |s| s.check_session_opener(u.id, u.me, req.session)).await?;
    scatter_core::erasure::check_redundancy(req.k, req.m).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    check_ids(req.chunks.len())?;
    let total = req.k as usize + req.m as usize;
    let mut indices: Vec<u8> = req.shards.iter().map(|s| s.index).collect();
    indices.sort_unstable();
    indices.dedup();
    if req.shards.len() != total || indices.len() != total || indices.last() != Some(&((total - 1) as u8)) {
        return Err(ApiError::BadRequest(format!(
            "a {}+{} pack needs exactly one shard per index 0..{total}",
            req.k, req.m
        )));
    }
    if req.shard_size < MIN_SHARD {
        return Err(ApiError::BadRequest(format!("shards are {} at least", ByteSize(MIN_SHARD))));
    }
    let padded = req.shard_size.checked_mul(req.k as u64);
    if padded.is_none_or(|p| p < req.size)
        || req.chunks.iter().any(|c| c.offset.checked_add(c.len).is_none_or(|end| end > req.size))
    {
        return Err(ApiError::BadRequest("the pack's sizes and chunk offsets do not fit together".into()));
    }
    check_chunk_layout(&req.chunks)?;
    let mut by_index = req.shards.clone();
    by_index.sort_by_key(|s| s.index);
    let ids: Vec<ShardId> = by_index.iter().map(|s| s.shard).collect();
    if PackId::of_shards(&ids) != req.pack {
        return Err(ApiError::BadRequest("the pack id is not the one its shard ids give".into()));
    }
    // The receipts are checked against the caller's placements as read here, outside the
    // write transaction (signature checks take time); that transaction then uses up these
    // very placements and records the pack at once, so a commit refused, or cut off before
    // it, leaves its placements live, to be given back (or lapse).
    let hosts: Vec<HostId> = req.shards.iter().map(|s| s.host).collect();
    let (caller, pack) = (u.me, req.pack);
    let pairs: Vec<(HostId, ShardId)> = req.shards.iter().map(|s| (s.host, s.shard)).collect();
    let (recorded, keys, domains, placed) = db(&sh, move |s| {
        let keys = hosts.iter().map(|h| s.receipt_key(*h)).collect::<Result<Vec<_>, _>>()?;
        let domains = hosts.iter().map(|h| s.host_domain(*h)).collect::<Result<Vec<_>, _>>()?;
        Ok((s.pack_exists(&pack)?, keys, domains, s.placements_of(caller, &pairs, now())?))
    })
    .await?;
    if recorded {
        // A retried commit (its answer was lost): nothing more to record.
        return Ok(Json(serde_json::json!({})));
    }
    let committed = match check_placed(&req, &keys, &domains, &placed) {
        Err(refused) => Err(ReserveError::Refused(refused)),
        Ok(()) => {
            sh.catalog(move |s| {
                let pack = NewPack {
                    id: req.pack,
                    user: u.id,
                    session: req.session,
                    size: req.size,
                    k: req.k,
                    m: req.m,
                    shard_size: req.shard_size,
                    shards: &req.shards,
                    chunks: &req.chunks,
                    relocate: req.relocate,
                };
                let same = |taken: &[Option<Reservation>]| if taken == placed { Ok(()) } else { Err(Refused::Changed) };
                Ok(s.commit_placed_pack(caller, &pack, same, now()))
            })
            .await?
        }
    };
    match committed {
        Ok(()) => {}
        Err(ReserveError::Refused(Refused::Receipts(refused))) => {
            event(&sh, &u, "pack.refused", refused.join("; ").chars().take(500).collect()).await;
            return Err(ApiError::Forbidden(format!(
                "the pack is not recorded: {}; a pack is recorded only with its hosts' receipts for shards placed for you, so upload it again",
                refused.first().map(String::as_str).unwrap_or_default()
            )));
        }
        Err(ReserveError::Refused(Refused::Spread(e))) => return Err(e),
        Err(ReserveError::Refused(Refused::Changed)) => {
            return Err(ApiError::Conflict(
                "a placement of this pack was given back or lapsed while it was being committed; the pack is not recorded, so upload it again".into(),
            ))
        }
        Err(ReserveError::Store(e)) => return Err(e.into()),
    }
    place::spread_changed(&sh);
    Ok(Json(serde_json::json!({})))
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > scatter_proto::api::MAX_OBJECT_NAME {
        return Err(ApiError::BadRequest(format!(
            "the object name must be 1 to {} bytes once encrypted",
            scatter_proto::api::MAX_OBJECT_NAME
        )));
    }
    Ok(())
}

/// [`check_name`] for a name being committed. Encrypted names are printable: one with
/// control characters (a NUL above all) is no client's, could not be named on a command
/// line to remove it, and garbles listings. (Names stored before this check can still be
/// read and removed.)
fn check_new_name(name: &str) -> Result<(), ApiError> {
    check_name(name)?;
    if name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest("an encrypted object name has no control characters".into()));
    }
    Ok(())
}

async fn commit_object(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<CommitObjectRequest>,
) -> ApiResult<CommitObjectResponse> {
    let u = caller(&sh, &headers, Right::Add).await?;
    db(&sh, move |s| s.check_session_opener(u.id, u.me, req.session)).await?;
    let c = checked_commit(&sh, &u, req).await?;
    let (version, released) =
        db(&sh, move |s| s.commit_object_held(u.id, &c.object(), c.first_only, c.replace, c.hold, now())).await?;
    if released > 0 {
        // As after a removal: the released shards go within seconds.
        sh.backup_soon();
    }
    Ok(Json(CommitObjectResponse { version }))
}

/// Commits several objects in one transaction (see [`CommitObjectsRequest`]): each is checked
/// as [`commit_object`] checks one, and a refusal is that object's alone. Each session named
/// is checked once, as a commit alone checks its own: one of the caller's account that
/// another of its devices opened refuses the whole request.
async fn commit_objects(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<CommitObjectsRequest>,
) -> ApiResult<CommitObjectsResponse> {
    let u = caller(&sh, &headers, Right::Add).await?;
    let sessions: std::collections::BTreeSet<u64> = req.objects.iter().map(|o| o.session).collect();
    for session in sessions {
        db(&sh, move |s| s.check_session_opener(u.id, u.me, session)).await?;
    }
    let mut results: Vec<Result<u64, ApiError>> = Vec::with_capacity(req.objects.len());
    let mut checked = Vec::new();
    for (i, o) in req.objects.into_iter().enumerate() {
        match checked_commit(&sh, &u, o).await {
            Ok(c) => {
                // Replaced by its outcome below.
                results.push(Err(ApiError::Internal("the object was not committed".into())));
                checked.push((i, c));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    let outcomes = db(&sh, move |s| {
        let objects: Vec<_> = checked.iter().map(|(_, c)| (c.object(), c.first_only, c.replace, c.hold)).collect();
        let outcomes = s.commit_objects_held(u.id, &objects, now())?;
        Ok::<_, StoreError>(checked.iter().map(|(i, _)| *i).zip(outcomes).collect::<Vec<_>>())
    })
    .await?;
    let mut released = 0;
    for (i, outcome) in outcomes {
        results[i] = outcome
            .map(|(version, r)| {
                released += r;
                version
            })
            .map_err(ApiError::from);
    }
    if released > 0 {
        sh.backup_soon();
    }
    let results = results
        .into_iter()
        .map(|r| match r {
            Ok(version) => CommitOutcome { version: Some(version), status: None, error: None },
            Err(e) => {
                let (status, code) = e.parts();
                CommitOutcome {
                    version: None,
                    status: Some(status.as_u16()),
                    error: Some(ErrorBody { code, error: e.to_string() }),
                }
            }
        })
        .collect();
    Ok(Json(CommitObjectsResponse { results }))
}

/// An object commit whose request was checked: its name, sizes and rights, and the lock and
/// expiry it gets.
struct CheckedCommit {
    req: CommitObjectRequest,
    manifest: Vec<u8>,
    meta: Option<Vec<u8>>,
    if_attributes: Option<scatter_proto::api::AttributesTag>,
    first_only: bool,
    replace: bool,
    hold: (Option<crate::lock::Lock>, Option<u64>),
}

impl CheckedCommit {
    fn object(&self) -> crate::store::NewObject<'_> {
        crate::store::NewObject {
            name: &self.req.name,
            session: self.req.session,
            manifest: &self.manifest,
            meta: self.meta.as_deref(),
            size: self.req.size,
            chunks: &self.req.chunks,
            if_attributes: self.if_attributes.as_ref(),
        }
    }
}

/// Whether a commit by `u` may create an object but not add a version to one: an appender's,
/// or an `exclusive` one.
fn creates_only(u: &UserRow, exclusive: bool) -> bool {
    u.role == Role::Appender || exclusive
}

/// Checks a commit by `u` (its session aside): the name, the attributes' size, the right to
/// replace, and the lock and expiry it gets.
async fn checked_commit(sh: &Arc<Shared>, u: &UserRow, req: CommitObjectRequest) -> Result<CheckedCommit, ApiError> {
    check_new_name(&req.name)?;
    let manifest = decode_b64("manifest", &req.manifest)?;
    let meta = req.meta.as_deref().map(|m| decode_b64("meta", m)).transpose()?;
    if meta.as_ref().is_some_and(|m| m.len() > MAX_OBJECT_META) {
        return Err(ApiError::BadRequest(format!(
            "an object's attributes may take at most {MAX_OBJECT_META} bytes once sealed"
        )));
    }
    let if_attributes = req
        .if_attributes
        .as_deref()
        .map(|t| {
            let mut tag = [0u8; 32];
            hex::decode_to_slice(t, &mut tag)
                .map(|()| tag)
                .map_err(|_| ApiError::BadRequest("if_attributes must be 64 hex digits (a BLAKE3 digest)".into()))
        })
        .transpose()?;
    if req.replace {
        require(u, Right::Delete)?;
    }
    // An appender adds, never overwrites: checked inside the commit's transaction, so it
    // cannot race the owner's commit of the same name.
    let first_only = creates_only(u, req.exclusive);
    let hold = retention(sh, u, &req.retention).await?;
    Ok(CheckedCommit { manifest, meta, if_attributes, first_only, replace: req.replace, hold, req })
}

#[derive(Deserialize)]
struct PrefixQuery {
    #[serde(default)]
    prefix: String,
}

#[derive(Deserialize)]
struct NameQuery {
    name: String,
}

/// `GET /v1/object`: an object's latest version, or the one named.
#[derive(Deserialize)]
struct ObjectQuery {
    name: String,
    #[serde(default)]
    version: Option<u64>,
}

fn info(row: &crate::store::ObjectRow) -> ObjectInfo {
    ObjectInfo {
        name: row.name.clone(),
        version: row.version,
        size: row.size,
        created: row.created,
        hold: Hold::default(),
        meta: row.meta.as_ref().map(|m| B64.encode(m)),
    }
}

/// The lock and expiry a commit by `u` gets: what it asked for, else its owner's default
/// lock, within the owner's maxima (the delegates' maximum for a reader or appender).
async fn decide(
    sh: &Arc<Shared>,
    u: &UserRow,
    asked: &Retention,
) -> Result<(Option<crate::lock::Lock>, Option<u64>), ApiError> {
    let owner = u.id;
    let limits = db(sh, move |s| s.lock_limits(owner)).await?;
    crate::lock::decide(asked, &limits, u.role.is_delegate(), now()).map_err(|e| match e {
        crate::lock::Refusal::TooLong { .. } => ApiError::Forbidden(e.to_string()),
        e => ApiError::BadRequest(e.to_string()),
    })
}

/// [`decide`], with a refusal recorded as an event (a stolen device pinning data shows).
pub(crate) async fn retention(
    sh: &Arc<Shared>,
    u: &UserRow,
    asked: &Retention,
) -> Result<(Option<crate::lock::Lock>, Option<u64>), ApiError> {
    match decide(sh, u, asked).await {
        Err(ApiError::Forbidden(why)) => {
            event(sh, u, "lock.refused", why.clone()).await;
            Err(ApiError::Forbidden(why))
        }
        other => other,
    }
}

async fn list_objects(State(sh): S, headers: HeaderMap, Query(q): Query<PrefixQuery>) -> ApiResult<ListResponse> {
    let u = caller(&sh, &headers, Right::Read).await?;
    let rows = db(&sh, move |s| s.list_objects(u.id, &q.prefix)).await?;
    let mut holds = db(&sh, move |s| s.object_holds(u.id)).await?;
    let objects =
        rows.iter().map(|r| ObjectInfo { hold: holds.remove(&r.name).unwrap_or_default(), ..info(r) }).collect();
    Ok(Json(ListResponse { objects }))
}

async fn get_object(State(sh): S, headers: HeaderMap, Query(q): Query<ObjectQuery>) -> ApiResult<ObjectResponse> {
    let u = caller(&sh, &headers, Right::Read).await?;
    check_name(&q.name)?;
    let (row, key) = db(&sh, move |s| s.get_object(u.id, &q.name, q.version)).await?.ok_or_else(|| {
        ApiError::NotFound(match q.version {
            None => "no object has this name; `scatter ls` lists what is stored".into(),
            Some(v) => format!("no version {v} of this object is stored; `scatter versions NAME` lists them"),
        })
    })?;
    Ok(Json(ObjectResponse { info: info(&row), manifest: B64.encode(&row.manifest), wrapped_key: B64.encode(key) }))
}

/// Every version of one object still stored (those a lock keeps beside the latest, say).
async fn object_versions(State(sh): S, headers: HeaderMap, Query(q): Query<NameQuery>) -> ApiResult<ListResponse> {
    let u = caller(&sh, &headers, Right::Read).await?;
    check_name(&q.name)?;
    let rows = db(&sh, move |s| s.object_versions(u.id, &q.name)).await?;
    if rows.is_empty() {
        return Err(ApiError::NotFound("no object has this name; `scatter ls` lists what is stored".into()));
    }
    Ok(Json(ListResponse { objects: rows.into_iter().map(|(r, hold)| ObjectInfo { hold, ..info(&r) }).collect() }))
}

async fn remove_object(State(sh): S, headers: HeaderMap, Query(q): Query<NameQuery>) -> ApiResult<RemoveResponse> {
    let u = caller(&sh, &headers, Right::Delete).await?;
    check_name(&q.name)?;
    let (versions, packs_released) = db(&sh, move |s| s.remove_object(u.id, &q.name, now())).await?;
    if versions == 0 {
        return Err(ApiError::NotFound("no object has this name; `scatter ls` lists what is stored".into()));
    }
    if packs_released > 0 {
        // As after a prune: the released shards go within seconds.
        sh.backup_soon();
    }
    Ok(Json(RemoveResponse { versions, packs_released }))
}

async fn locate(State(sh): S, headers: HeaderMap, Body(req): Body<LocateRequest>) -> ApiResult<LocateResponse> {
    let u = caller(&sh, &headers, Right::Read).await?;
    check_ids(req.chunks.len())?;
    let read = req.read;
    let crate::store::Located { chunks, kept, packs, sessions } = db(&sh, move |s| s.locate(u.id, &req.chunks)).await?;
    let location = |(id, pack, offset, len)| ChunkLocation { id, pack, offset, len };
    if !read {
        // Where the chunks are, not how to read them: no shard, no grant, no charge.
        let unread = |mut p: crate::store::PackRow| {
            p.shards.clear();
            pack_location(&sh, p, &[], |_, shard, host| Grant::get_range(host, shard, 0..0, 0))
        };
        return Ok(Json(LocateResponse {
            chunks: chunks.into_iter().map(location).collect(),
            kept: kept.into_iter().map(location).collect(),
            packs: packs.into_iter().map(unread).collect(),
            sessions: Vec::new(),
        }));
    }
    let hosts = db(&sh, |s| s.hosts()).await?;
    // Each data shard's grant covers the bytes of the located chunks in it, from the first to
    // the end of the last, and parity shards none: a pack is read whole only under the
    // grants of a rebuild (`pack_grants`), asked for and charged apart. So are the copies
    // locks keep, read only when a located one fails: their packs come with no bytes granted.
    let mut located: HashMap<PackId, Vec<std::ops::Range<u64>>> = HashMap::new();
    for (_, pack, off, len) in &chunks {
        located.entry(*pack).or_default().push(*off..off.saturating_add(*len));
    }
    let mut readable: HashMap<PackId, HashMap<usize, std::ops::Range<u64>>> = packs
        .iter()
        .map(|p| {
            let layout = scatter_core::erasure::Layout { size: p.size, k: p.k, m: p.m, shard_size: p.shard_size };
            let ranges = located.remove(&p.id).unwrap_or_default().into_iter().map(|r| r.start..r.end.min(p.size));
            (p.id, layout.data_bounds(ranges).into_iter().collect())
        })
        .collect();
    let expires = now() + GRANT_TTL.as_secs();
    let mut granted = Vec::new();
    let packs = packs
        .into_iter()
        .map(|p| {
            let (bounds, shard_size) = (readable.remove(&p.id).unwrap_or_default(), p.shard_size);
            pack_location(&sh, p, &hosts, |index, shard, host| {
                let r = bounds.get(&(index as usize)).cloned().unwrap_or(0..0);
                if !r.is_empty() {
                    granted.push(Read { host, shard, bytes: r.end - r.start, shard_size });
                }
                Grant::get_range(host, shard, r, expires)
            })
        })
        .collect();
    billing::record_reads(&sh, u.id, granted).await;
    Ok(Json(LocateResponse {
        chunks: chunks.into_iter().map(location).collect(),
        kept: kept.into_iter().map(location).collect(),
        packs,
        sessions: sessions
            .into_iter()
            .map(|(session, key)| SessionKey { session, wrapped_key: B64.encode(key) })
            .collect(),
    }))
}

/// Grants to read the named shards of one of the caller's packs whole, for a rebuild from
/// parity (a host down, or chunks that failed authentication), charged as those shards: a
/// rebuild asks for the k it reads first, then for others in place of any that fail.
async fn pack_grants(State(sh): S, headers: HeaderMap, Body(req): Body<PackGrantsRequest>) -> ApiResult<PackLocation> {
    let u = caller(&sh, &headers, Right::Read).await?;
    let mut wanted = req.shards;
    wanted.sort_unstable();
    wanted.dedup();
    let pack = req.pack;
    let mut p = db(&sh, move |s| s.pack_of_user(u.id, &pack))
        .await?
        .ok_or_else(|| ApiError::NotFound("no live pack of this account has this id".into()))?;
    if wanted.is_empty() || wanted.iter().any(|i| !p.shards.iter().any(|s| s.0 == *i)) {
        return Err(ApiError::BadRequest("name one or more of the pack's shards by index".into()));
    }
    p.shards.retain(|s| wanted.contains(&s.0));
    let hosts = db(&sh, |s| s.hosts()).await?;
    let expires = now() + GRANT_TTL.as_secs();
    let size = p.shard_size;
    let granted: Vec<Read> =
        p.shards.iter().map(|s| Read { host: s.2, shard: s.1, bytes: size, shard_size: size }).collect();
    let location = pack_location(&sh, p, &hosts, |_, shard, host| Grant {
        host,
        shard,
        op: Op::Get,
        max_size: size,
        expires,
        // Unique: hosts keep a read budget per grant.
        nonce: rand::random(),
    });
    billing::record_reads(&sh, u.id, granted).await;
    Ok(Json(location))
}

/// A pack as a reader gets it: its shards with their hosts' addresses, whether each is
/// worth asking, and the grant `grant(index, shard, host)` makes for it.
fn pack_location(
    sh: &Shared,
    p: crate::store::PackRow,
    hosts: &[crate::store::HostRow],
    mut grant: impl FnMut(u8, ShardId, HostId) -> Grant,
) -> PackLocation {
    PackLocation {
        id: p.id,
        session: p.session,
        size: p.size,
        k: p.k,
        m: p.m,
        shard_size: p.shard_size,
        shards: p
            .shards
            .into_iter()
            .map(|(index, shard, host, state)| {
                let h = hosts.iter().find(|h| h.id == host);
                ShardLocation {
                    index,
                    shard,
                    host,
                    address: h.map(|h| h.address.clone()).unwrap_or_default(),
                    online: (state == ShardState::Ok || state == ShardState::Surplus)
                        && h.is_some_and(|h| crate::room::is_online(sh, h.last_seen)),
                    grant: grant(index, shard, host).sign(&sh.signing),
                }
            })
            .collect(),
    }
}

async fn report_shard(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<ReportShardRequest>,
) -> ApiResult<serde_json::Value> {
    let u = caller(&sh, &headers, Right::Read).await?;
    let problem: String = req.problem.chars().take(200).collect();
    let (host, shard) = (req.host, req.shard);
    // A report is a hint, never a verdict: the coordinator checks the shard itself.
    if let Some((pack, index, size)) = db(&sh, move |s| s.shard_of_user(u.id, host, &shard)).await? {
        let checking = crate::audit::check_report(&sh, u.id, host, pack, index, shard, size);
        tracing::info!(%host, %shard, user = %u.me, problem = ?problem, checking, "shard reported bad");
    }
    Ok(Json(serde_json::json!({})))
}

#[cfg(test)]
mod tests {
    use super::check_address;

    #[test]
    fn a_host_address_is_kept_in_one_spelling() {
        for spelling in [
            "https://127.0.0.1:7000",
            "https://127.0.0.1:7000/",
            "HTTPS://127.1:7000",
            "https://0x7f.0.0.1:7000",
            "https://127.0.0.1:7000/a/..",
        ] {
            assert_eq!(check_address(spelling).expect(spelling), "https://127.0.0.1:7000", "{spelling}");
        }
        assert_eq!(check_address("https://Host.Example.:443").expect("a name"), "https://host.example:443");
        assert_eq!(check_address("http://host.example").expect("default port"), "http://host.example:80");
        assert_eq!(check_address("https://[::1]:9/").expect("IPv6"), "https://[::1]:9");
    }

    #[test]
    fn a_host_address_names_a_socket_and_nothing_else() {
        for bad in [
            "https://user@127.0.0.1:7000",
            "https://user:pw@127.0.0.1:7000",
            "https://127.0.0.1:7000/x",
            "https://127.0.0.1:7000?x",
            "https://127.0.0.1:7000#x",
            "ftp://127.0.0.1:7000",
            "file:///etc/passwd",
            "https://.:7000",
            "127.0.0.1:7000",
            "",
        ] {
            assert!(check_address(bad).is_err(), "{bad} accepted");
        }
        assert!(check_address(&format!("https://{}.example:1", "a".repeat(250))).is_err(), "too long");
    }
}
