//! The web dashboard: server-rendered pages on a listener of their own, for admins (hosts,
//! data health and repair, users, invites and devices, events, charts), for every user
//! (their usage, quota, snapshots and devices), and for a host's operator (that host's
//! state, audits and reputation; signed in with the host's secret).
//!
//! **Serving.** The coordinator's own certificate names only `coordinator.scatter.internal`
//! from the grid's CA, which no browser trusts. The dashboard therefore has its own
//! listener: with the operator's certificate (`--dashboard-cert/--dashboard-key`, e.g. from
//! Let's Encrypt), or plain HTTP bound to a loopback address, reached through an SSH tunnel
//! (`ssh -L 8443:127.0.0.1:8443 coordinator`). Plain HTTP on any other address is refused
//! at start: session cookies and admin actions would cross the network in the clear.
//!
//! **Sign-in without new secrets.** `scatter admin dashboard` (or `scatter dashboard`) asks
//! the coordinator, with the device's signed request as for any call, for a one-time login
//! link valid for [`LINK_TTL`]. The token travels in the link's fragment (`/login#TOKEN`),
//! which browsers send neither to servers nor in a Referer, so it never sits in access logs;
//! a small script posts it to `/login`, which uses it up and opens a session: a random
//! 256-bit cookie (`HttpOnly`, `SameSite=Strict`, `Secure` and `__Host-` over TLS), kept in
//! the catalog only as its hash, so every coordinator sharing the catalog knows it. Sessions
//! end after [`IDLE`] without use or [`ABSOLUTE`] after sign-in, at sign-out, when the
//! account is disabled or removed, and when the device that made the link is revoked.
//!
//! **Rights.** Every page and action finds the session's account as the API finds a
//! request's ([`crate::api::require`]): admin pages and actions need the admin role, as
//! `scatter admin ...` does; actions call the same code as the API. Every action is a POST
//! carrying the session's CSRF token (compared in constant time), and a POST that the
//! browser says came from another site (`Sec-Fetch-Site`, or `Origin`) is refused. Responses carry a strict CSP (no inline
//! script or style), deny framing, send no Referer and are not cached.

mod chart;
mod pages;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::api::{db, event, Right};
use crate::error::ApiError;
use crate::store::{Holder, UserRow};
use crate::{now, Shared};

/// How long a login link is valid.
pub const LINK_TTL: Duration = Duration::from_secs(300);
/// A session not used for this long is over.
pub const IDLE: Duration = Duration::from_secs(2 * 3600);
/// A session is over this long after sign-in, used or not.
pub const ABSOLUTE: Duration = Duration::from_secs(12 * 3600);

/// The session cookie's name over TLS: the `__Host-` prefix makes browsers refuse it unless
/// it is `Secure`, has `Path=/` and names no domain.
const COOKIE_TLS: &str = "__Host-scatter-session";
/// The session cookie's name over plain HTTP (loopback, for an SSH tunnel).
const COOKIE_PLAIN: &str = "scatter-session";

/// Largest form body a page posts.
const FORM_LIMIT: usize = 4096;

/// How the dashboard is served.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The operator's certificate chain (PEM); with `key`, the dashboard speaks TLS.
    pub cert: Option<PathBuf>,
    /// The private key of `cert` (PEM).
    pub key: Option<PathBuf>,
    /// The URL people open (login links point there); by default derived from `listen`
    /// (`https://` with a certificate, `http://` without).
    pub public_url: Option<String>,
}

/// Why the dashboard cannot be served as configured.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// Plain HTTP on an address others can reach.
    #[error(
        "--dashboard {0} is not a loopback address, and without --dashboard-cert/--dashboard-key the dashboard would be plain HTTP \
         (session cookies and admin actions readable on the network); give your certificate and key, or listen on 127.0.0.1 and use an SSH tunnel"
    )]
    PlainBeyondLoopback(SocketAddr),
    /// Only one of certificate and key.
    #[error("--dashboard-cert and --dashboard-key go together; give both (PEM files) or neither")]
    HalfTls,
    /// The public URL's scheme does not match how the dashboard is served.
    #[error("--dashboard-url {0} must start with {1}:// (how the dashboard is served)")]
    Url(String, &'static str),
    /// The certificate or key could not be loaded.
    #[error(transparent)]
    Tls(#[from] scatter_net::tls::TlsError),
    /// The address could not be bound.
    #[error("cannot listen on {0} for the dashboard: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// What the rest of the coordinator knows of the dashboard it serves.
#[derive(Debug, Clone)]
pub struct Served {
    /// Where people open it.
    pub url: String,
    /// Whether it is served over TLS (cookies are then `Secure`).
    pub secure: bool,
}

/// A bound dashboard listener, ready to serve.
pub(crate) struct Bound {
    pub listener: tokio::net::TcpListener,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub served: Served,
}

/// Checks the configuration (refusing plain HTTP beyond loopback), loads the certificate
/// and binds the listener.
pub(crate) async fn bind(config: &DashboardConfig) -> Result<Bound, DashboardError> {
    let tls = match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => Some(scatter_net::tls::operator_server_config(cert, key)?),
        (None, None) => None,
        _ => return Err(DashboardError::HalfTls),
    };
    check_plain(config.listen, tls.is_some())?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Some(url) = &config.public_url {
        if !url.to_ascii_lowercase().starts_with(&format!("{scheme}://")) {
            return Err(DashboardError::Url(url.clone(), scheme));
        }
    }
    let listener =
        tokio::net::TcpListener::bind(config.listen).await.map_err(|e| DashboardError::Bind(config.listen, e))?;
    let bound = listener.local_addr().map_err(|e| DashboardError::Bind(config.listen, e))?;
    let url = match &config.public_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => {
            let ip = if bound.ip().is_unspecified() { "127.0.0.1".parse().expect("literal IP") } else { bound.ip() };
            format!("{scheme}://{}", SocketAddr::new(ip, bound.port()))
        }
    };
    Ok(Bound { listener, served: Served { url, secure: tls.is_some() }, tls })
}

/// Refuses plain HTTP on an address that is not loopback.
pub fn check_plain(listen: SocketAddr, tls: bool) -> Result<(), DashboardError> {
    if tls || listen.ip().is_loopback() {
        return Ok(());
    }
    Err(DashboardError::PlainBeyondLoopback(listen))
}

/// The dashboard's routes.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(pages::login_page).post(login))
        .route("/logout", post(logout))
        .route("/grid", get(pages::grid))
        .route("/hosts", get(pages::hosts))
        .route("/users", get(pages::users))
        .route("/access", get(pages::access))
        .route("/events", get(pages::events))
        .route("/me", get(pages::me))
        .route("/host", get(pages::host))
        .route("/users/disable", post(pages::disable_user))
        .route("/users/enable", post(pages::enable_user))
        .route("/hosts/drain", post(pages::drain_host))
        .route("/static/style.css", get(|| async { asset("text/css; charset=utf-8", pages::STYLE) }))
        .route("/static/login.js", get(|| async { asset("text/javascript; charset=utf-8", pages::LOGIN_JS) }))
        .layer(axum::extract::DefaultBodyLimit::max(FORM_LIMIT))
        .layer(axum::middleware::from_fn(headers))
        .with_state(shared)
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

/// The security headers every response carries, and the same-origin check on every POST.
async fn headers(req: Request, next: Next) -> Response {
    let mut resp = if req.method() == Method::POST && !same_origin(req.headers()) {
        pages::error_page(
            StatusCode::FORBIDDEN,
            "This form was sent from another site; open the dashboard and try again.",
        )
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    let set = |h: &mut HeaderMap, name: &'static str, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    set(h, "x-content-type-options", "nosniff");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cache-control", "no-store");
    resp
}

/// Whether a POST comes from the dashboard's own pages: `Sec-Fetch-Site` (sent by current
/// browsers) says same-origin, or else an `Origin` names the host it was sent to. Pages send
/// no Referer, so browsers send `Origin: null` with their own forms: that, or no header at
/// all (curl), is judged by the session and its CSRF token alone.
fn same_origin(h: &HeaderMap) -> bool {
    let text = |name| h.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return site == "same-origin" || site == "none";
    }
    match (text("origin"), text("host")) {
        (None | Some("null"), _) => true,
        (Some(origin), Some(host)) => {
            let rest = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
            rest.is_some_and(|r| r.eq_ignore_ascii_case(host))
        }
        (Some(_), None) => false,
    }
}

/// Whoever a request's session signed in.
pub(crate) enum Signed {
    /// A user's account.
    User(Viewer),
    /// A host's operator.
    Host(HostViewer),
}

/// A host operator's session: it shows that host alone.
pub(crate) struct HostViewer {
    /// The host.
    pub host: scatter_core::HostId,
    /// The session's CSRF token, in hex, for forms.
    pub csrf: String,
    csrf_bytes: [u8; 32],
}

impl Signed {
    /// Whether `sent` is this session's CSRF token (constant time).
    pub fn csrf_ok(&self, sent: &str) -> bool {
        let token = match self {
            Signed::User(v) => &v.csrf_bytes,
            Signed::Host(v) => &v.csrf_bytes,
        };
        let mut got = [0u8; 32];
        hex::decode_to_slice(sent, &mut got).is_ok() && bool::from(got.ct_eq(token))
    }
}

/// The signed-in account of a request, with its session.
pub(crate) struct Viewer {
    /// The account (for a reader or appender, `id` is its owner's).
    pub user: UserRow,
    /// The account's name.
    pub name: String,
    /// The session's CSRF token, in hex, for forms.
    pub csrf: String,
    csrf_bytes: [u8; 32],
}

impl Viewer {
    /// Fails unless the account's role grants `right` (recording the refusal, as the API does).
    pub async fn require(&self, sh: &Arc<Shared>, right: Right) -> Result<(), Response> {
        if let Err(e) = crate::api::require(&self.user, right) {
            event(sh, &self.user, "auth.forbidden", format!("dashboard: role {} asked to {right:?}", self.user.role))
                .await;
            return Err(pages::error_page(StatusCode::FORBIDDEN, &e.to_string()));
        }
        Ok(())
    }

    /// Whether `sent` is this session's CSRF token (constant time).
    pub fn csrf_ok(&self, sent: &str) -> bool {
        let mut got = [0u8; 32];
        hex::decode_to_slice(sent, &mut got).is_ok() && bool::from(got.ct_eq(&self.csrf_bytes))
    }
}

/// The session cookie's value in a request, as its hash. Only the name of how the dashboard
/// is served counts: over TLS a `scatter-session` cookie could have been set by another port
/// of the host, a sibling domain or a plain `http://` answer, which `__Host-` rules out.
fn session_hash(h: &HeaderMap, secure: bool) -> Option<[u8; 32]> {
    let wanted = if secure { COOKIE_TLS } else { COOKIE_PLAIN };
    for cookies in h.get_all(header::COOKIE) {
        let Ok(cookies) = cookies.to_str() else { continue };
        for pair in cookies.split(';') {
            let Some((name, value)) = pair.trim().split_once('=') else { continue };
            if name == wanted {
                let mut raw = [0u8; 32];
                if hex::decode_to_slice(value, &mut raw).is_ok() {
                    return Some(*blake3::hash(&raw).as_bytes());
                }
            }
        }
    }
    None
}

/// Whoever the request's session signed in, if the session is open and (for a user) the
/// account and device are still good; `None` means signed out.
pub(crate) async fn session(sh: &Arc<Shared>, h: &HeaderMap) -> Result<Option<Signed>, ApiError> {
    let secure = sh.dashboard.as_ref().is_some_and(|d| d.secure);
    let Some(hash) = session_hash(h, secure) else { return Ok(None) };
    let found = db(sh, move |s| s.dashboard_session(&hash, now(), IDLE.as_secs(), ABSOLUTE.as_secs())).await?;
    let Some(session) = found else { return Ok(None) };
    let device = match session.holder {
        Holder::Device(d) => d,
        Holder::Host(host) => {
            return Ok(Some(Signed::Host(HostViewer {
                host,
                csrf: hex::encode(session.csrf),
                csrf_bytes: session.csrf,
            })))
        }
    };
    let login = db(sh, move |s| s.device_login(device)).await?;
    let Some((user, _, revoked)) = login.filter(|(u, _, revoked)| !revoked && !u.disabled) else {
        // The account was disabled or removed, or the device revoked, since sign-in.
        db(sh, move |s| s.end_dashboard_session(&hash)).await?;
        return Ok(None);
    };
    let _ = revoked;
    let me = user.me;
    let name = db(sh, move |s| s.user_name(me)).await?.unwrap_or_default();
    Ok(Some(Signed::User(Viewer { user, name, csrf: hex::encode(session.csrf), csrf_bytes: session.csrf })))
}

/// `POST /v1/dashboard/link` (any signed-in account): a one-time login link for the caller.
pub(crate) async fn link(
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<axum::Json<scatter_proto::api::DashboardLinkResponse>, ApiError> {
    let u = crate::api::user(&sh, &headers).await?;
    let Some(served) = sh.dashboard.clone() else {
        return Err(ApiError::BadRequest(
            "this coordinator serves no dashboard; start it with --dashboard ADDR (see the README's Dashboard section)"
                .into(),
        ));
    };
    let device = u.device;
    let url = new_link(&sh, &served, Holder::Device(device)).await?;
    event(&sh, &u, "dashboard.link", format!("login link for device {device}")).await;
    Ok(axum::Json(scatter_proto::api::DashboardLinkResponse { url, expires_in: LINK_TTL.as_secs() }))
}

/// Records a new login link for `holder`; returns its URL.
async fn new_link(sh: &Arc<Shared>, served: &Served, holder: Holder) -> Result<String, ApiError> {
    let mut token = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut token);
    let hash = *blake3::hash(&token).as_bytes();
    let expires = now() + LINK_TTL.as_secs();
    db(sh, move |s| s.add_dashboard_link(&hash, holder, expires, now())).await?;
    Ok(format!("{}/login#{}", served.url, hex::encode(token)))
}

/// `POST /v1/hosts/dashboard` (a host's id and secret, as for heartbeats): a one-time login
/// link to the dashboard's view of that host, for its operator.
pub(crate) async fn host_link(
    State(sh): State<Arc<Shared>>,
    axum::Json(req): axum::Json<scatter_proto::api::HostDashboardRequest>,
) -> Result<axum::Json<scatter_proto::api::DashboardLinkResponse>, ApiError> {
    crate::api::check_host(&sh, req.host_id, &req.host_secret).await?;
    let Some(served) = sh.dashboard.clone() else {
        return Err(ApiError::BadRequest(
            "this coordinator serves no dashboard; ask the grid's admin to start it with --dashboard ADDR".into(),
        ));
    };
    let url = new_link(&sh, &served, Holder::Host(req.host_id)).await?;
    event(&sh, req.host_id, "dashboard.link", "login link for the host's operator".into()).await;
    Ok(axum::Json(scatter_proto::api::DashboardLinkResponse { url, expires_in: LINK_TTL.as_secs() }))
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

/// `POST /login`: uses up a login link and opens a session.
async fn login(
    State(sh): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let peer = scatter_net::serve::peer_key(peer.ip());
    if sh.failures.blocked(peer) {
        return pages::error_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed sign-ins from this address; wait a minute.",
        );
    }
    let mut link = [0u8; 32];
    let token = form.token.trim().trim_start_matches('#');
    if hex::decode_to_slice(token, &mut link).is_err() {
        sh.failures.record(peer);
        return pages::error_page(StatusCode::UNAUTHORIZED, "This is not a login link; run `scatter admin dashboard` (or `scatter dashboard`) and open the link it prints.");
    }
    let link_hash = *blake3::hash(&link).as_bytes();
    let (mut session, mut csrf) = ([0u8; 32], [0u8; 32]);
    rand::rngs::OsRng.fill_bytes(&mut session);
    rand::rngs::OsRng.fill_bytes(&mut csrf);
    let session_hash = *blake3::hash(&session).as_bytes();
    let redeemed = db(&sh, move |s| s.redeem_dashboard_link(&link_hash, &session_hash, &csrf, now())).await;
    let holder = match redeemed {
        Ok(Some(h)) => h,
        Ok(None) => {
            sh.failures.record(peer);
            event(
                &sh,
                crate::api::Who::unknown(),
                "dashboard.login_refused",
                "unknown, used or expired login link".into(),
            )
            .await;
            return pages::error_page(
                StatusCode::UNAUTHORIZED,
                "This login link is unknown, was used already or has expired (links work once, for 5 minutes); run `scatter admin dashboard` (or `scatter dashboard`) for a new one.",
            );
        }
        Err(e) => return e.into_response(),
    };
    let who = match holder {
        Holder::Device(device) => crate::api::Who::device(device),
        Holder::Host(host) => host.into(),
    };
    event(&sh, who, "dashboard.login", "signed in to the dashboard".into()).await;
    let secure = sh.dashboard.as_ref().is_some_and(|d| d.secure);
    let cookie = match secure {
        true => format!("{COOKIE_TLS}={}; Path=/; Secure; HttpOnly; SameSite=Strict", hex::encode(session)),
        false => format!("{COOKIE_PLAIN}={}; Path=/; HttpOnly; SameSite=Strict", hex::encode(session)),
    };
    let mut resp = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

#[derive(serde::Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /logout`: ends the session.
async fn logout(State(sh): State<Arc<Shared>>, h: HeaderMap, axum::Form(form): axum::Form<CsrfForm>) -> Response {
    let v = match session(&sh, &h).await {
        Ok(Some(v)) => v,
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(e) => return e.into_response(),
    };
    if !v.csrf_ok(&form.csrf) {
        return pages::error_page(
            StatusCode::FORBIDDEN,
            "The form's CSRF token is missing or wrong; reload the page and try again.",
        );
    }
    let secure = sh.dashboard.as_ref().is_some_and(|d| d.secure);
    if let Some(hash) = session_hash(&h, secure) {
        if let Err(e) = db(&sh, move |s| s.end_dashboard_session(&hash)).await {
            return e.into_response();
        }
        // As after a revocation: a catalog restored from an older backup must not bring the
        // session back.
        sh.backup_soon();
    }
    let clear = match secure {
        true => format!("{COOKIE_TLS}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"),
        false => format!("{COOKIE_PLAIN}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    };
    let mut resp = pages::signed_out();
    if let Ok(v) = HeaderValue::from_str(&clear) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// Samples the grid's figures for the charts when the last sample is older than
/// [`sample_every`]. Runs in the checker (one coordinator at a time).
pub(crate) async fn sample(sh: &Arc<Shared>) -> Result<(), crate::store::StoreError> {
    let every = sample_every(sh.checker_interval).as_secs();
    let last = sh.catalog(|s| s.last_sample()).await?;
    let t = now();
    if last.is_some_and(|l| t.saturating_sub(l) < every) {
        return Ok(());
    }
    let s = current(sh).await?;
    sh.catalog(move |c| c.record_sample(&s)).await
}

/// How often the grid's figures are sampled: five checker intervals, at most 5 minutes.
pub(crate) fn sample_every(checker: Duration) -> Duration {
    (checker * 5).clamp(Duration::from_secs(1), Duration::from_secs(300))
}

/// The grid's figures now.
pub(crate) async fn current(sh: &Arc<Shared>) -> Result<crate::store::Sample, crate::store::StoreError> {
    let cutoff = crate::room::online_cutoff(sh);
    let hosts = sh.catalog(|s| s.hosts()).await?;
    let health = sh.catalog(move |s| s.health(cutoff)).await?;
    let (repaired_shards, _) = sh.catalog(|s| s.repair_totals()).await?;
    Ok(crate::store::Sample {
        time: now(),
        stored: hosts.iter().map(|h| h.catalog_used).sum(),
        served: hosts.iter().map(|h| h.record.served_bytes).sum(),
        repaired_shards,
        degraded: health.packs_degraded + health.packs_lost,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_only_for_loopback() {
        let at = |s: &str| s.parse::<SocketAddr>().expect("address");
        assert!(check_plain(at("127.0.0.1:8443"), false).is_ok());
        assert!(check_plain(at("[::1]:8443"), false).is_ok());
        for addr in ["0.0.0.0:8443", "192.0.2.7:8443", "[::]:8443"] {
            assert!(matches!(check_plain(at(addr), false), Err(DashboardError::PlainBeyondLoopback(_))), "{addr}");
            assert!(check_plain(at(addr), true).is_ok(), "{addr} with TLS");
        }
    }

    #[test]
    fn a_post_from_another_site_is_not_same_origin() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        assert!(same_origin(&h(&[("host", "dash.example:8443"), ("origin", "https://dash.example:8443")])));
        assert!(same_origin(&h(&[("host", "127.0.0.1:8080")])), "no Origin: curl, judged by CSRF token");
        assert!(!same_origin(&h(&[("host", "dash.example:8443"), ("origin", "https://evil.example")])));
        assert!(same_origin(&h(&[("host", "dash.example"), ("origin", "null"), ("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&h(&[("host", "dash.example"), ("origin", "null"), ("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&h(&[("host", "dash.example"), ("sec-fetch-site", "same-site")])));
    }

    #[test]
    fn the_session_cookie_is_found_and_hashed() {
        let mut m = HeaderMap::new();
        let raw = [9u8; 32];
        let cookie = format!("other=1; {COOKIE_PLAIN}={}", hex::encode(raw));
        m.insert(header::COOKIE, HeaderValue::from_str(&cookie).expect("header"));
        assert_eq!(session_hash(&m, false), Some(*blake3::hash(&raw).as_bytes()));
        assert_eq!(session_hash(&m, true), None, "over TLS only the __Host- cookie counts");
        let tls = format!("{COOKIE_TLS}={}", hex::encode(raw));
        m.insert(header::COOKIE, HeaderValue::from_str(&tls).expect("header"));
        assert_eq!(session_hash(&m, true), Some(*blake3::hash(&raw).as_bytes()));
        assert_eq!(session_hash(&m, false), None);
        m.insert(header::COOKIE, HeaderValue::from_static("scatter-session=zz"));
        assert_eq!(session_hash(&m, false), None);
    }

    #[test]
    fn samples_are_taken_every_five_checker_intervals_at_most_five_minutes() {
        assert_eq!(sample_every(Duration::from_secs(2)), Duration::from_secs(10));
        assert_eq!(sample_every(Duration::from_secs(30)), Duration::from_secs(150));
        assert_eq!(sample_every(Duration::from_secs(600)), Duration::from_secs(300));
    }
}
