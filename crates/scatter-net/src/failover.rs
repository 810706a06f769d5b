//! Several coordinators, one grid: the list of their URLs ([`CoordinatorUrls`]) and how a
//! request reaches one of them ([`Failover`]).
//!
//! Every coordinator of a grid serves every request (they share one catalog), so clients and
//! hosts take a list of URLs and use whichever answers. The strategy:
//!
//! - A request goes first to the URL that answered last (the first of the list at start), so
//!   a process sticks to a coordinator that works.
//! - On a connection-level failure it goes to the next URL, once round the list:
//!   - always when it certainly reached no coordinator: the connection was refused, reset or
//!     timed out while being made, or its TLS handshake failed (a dead peer, or a server that
//!     is not this grid's: the request never left);
//!   - only when it is [`Repeat::Safe`] when it may have reached one: the connection broke or
//!     timed out after the request went out, or a gateway answered 502, 503 or 504 without a
//!     coordinator's error body (a proxy in front of a dead coordinator).
//! - Every answer of a coordinator ends the request, success or error, including a 503 whose
//!   body is the coordinator's own [`ErrorBody`] (too few hosts, hosts late): an API error is
//!   the same on every coordinator, and goes to the caller as it is.
//! - Each attempt builds the request anew (the `build` closure of [`Failover::send`] is called
//!   per URL), so each carries a credential signed for it alone, with a fresh nonce: a
//!   coordinator that remembers accepted credentials (the replay cache) never sees one twice,
//!   even when the first attempt did reach a coordinator that then died.
//! - When every URL failed, [`Failure::Unreachable`] names each with its reason; when a
//!   request that is not safe to repeat may have reached a coordinator that then failed,
//!   [`Failure::Interrupted`] says so and the request goes nowhere else.
//!
//! - Once a coordinator has answered the process, a request that reaches none is sent
//!   again for up to [`PATIENCE`], so a restart of the only coordinator (an upgrade) does
//!   not fail a long command; hosts, which retry on their own schedule, do not wait.
//!
//! Timeouts are the HTTP client's: each attempt may take up to its timeout, so a round of
//! the list takes at most that times the number of URLs.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use scatter_proto::api::ErrorBody;

use crate::{root_cause, Fingerprint, ModeError};

/// The most bytes read of a gateway error's body to tell it from a coordinator's answer.
const MAX_GATEWAY_BODY: usize = 64 << 10;

/// The URLs of a grid's coordinators, in the order to try them: at least one, each an
/// http(s) URL without a trailing slash, none twice.
///
/// Text form: the URLs separated by commas (`https://a:7000,https://b:7000`), as the
/// `--coordinator` flags take them. In `profile.toml` one URL is kept as a string (as before
/// there could be several, so older profiles read as they are) and several as an array.
#[derive(Clone, PartialEq, Eq)]
pub struct CoordinatorUrls(Vec<String>);

/// Why a list of coordinator URLs does not parse.
#[derive(Debug, thiserror::Error)]
pub enum BadUrls {
    /// No URL at all.
    #[error("no coordinator URL given (expected e.g. https://203.0.113.7:7000, or several separated by commas)")]
    Empty,
    /// One item is not an http(s) URL.
    #[error("`{0}` is not an http(s) URL (expected e.g. https://203.0.113.7:7000; several are separated by commas)")]
    NotUrl(String),
}

impl CoordinatorUrls {
    /// The list of `urls`, trimmed of spaces and trailing slashes; a URL given twice is kept once.
    pub fn new<S: AsRef<str>>(urls: impl IntoIterator<Item = S>) -> Result<Self, BadUrls> {
        let mut out: Vec<String> = Vec::new();
        for url in urls {
            let url = url.as_ref().trim().trim_end_matches('/');
            let scheme = reqwest::Url::parse(url).map(|u| u.scheme().to_owned());
            if !matches!(scheme.as_deref(), Ok("http" | "https")) {
                return Err(BadUrls::NotUrl(url.chars().take(200).collect()));
            }
            if !out.iter().any(|u| u == url) {
                out.push(url.to_owned());
            }
        }
        if out.is_empty() {
            return Err(BadUrls::Empty);
        }
        Ok(Self(out))
    }

    /// The URLs, in order.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// Checks that every URL agrees with `ca` (see [`crate::check_mode`]); returns the
    /// fingerprint to pin.
    pub fn check_mode(&self, ca: Option<Fingerprint>, insecure: bool) -> Result<Option<Fingerprint>, ModeError> {
        let mut pinned = None;
        for url in &self.0 {
            pinned = crate::check_mode(url, ca, insecure)?;
        }
        Ok(pinned)
    }
}

impl FromStr for CoordinatorUrls {
    type Err = BadUrls;
    fn from_str(s: &str) -> Result<Self, BadUrls> {
        if s.trim().is_empty() {
            return Err(BadUrls::Empty);
        }
        Self::new(s.split(','))
    }
}

impl fmt::Display for CoordinatorUrls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

impl fmt::Debug for CoordinatorUrls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CoordinatorUrls").field(&self.0).finish()
    }
}

impl serde::Serialize for CoordinatorUrls {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

impl<'de> serde::Deserialize<'de> for CoordinatorUrls {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Form {
            Text(String),
            List(Vec<String>),
        }
        match Form::deserialize(d)? {
            Form::Text(text) => text.parse(),
            Form::List(list) => Self::new(list),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// Whether a request may be sent again, to the next coordinator, when it may already have
/// reached one that then failed. A request that certainly reached none is always sent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Doing it twice leaves the grid as doing it once, and the second answer is as good as
    /// the first: reads, writes that set a value, commits keyed by an id that answer a
    /// repeat as done; or its extra effect lapses by itself and harms nothing.
    Safe,
    /// Doing it twice would act twice or answer wrongly (a second object version, a refusal
    /// of what the first did): sent on only when it certainly reached no coordinator.
    Unsafe,
}

/// A coordinator's answer, and the URL it came from.
#[derive(Debug)]
pub struct Reply {
    /// The URL of the coordinator that answered.
    pub url: String,
    /// Its answer (any status: an error status is the coordinator's answer too).
    pub response: reqwest::Response,
}

/// One URL tried and why it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The coordinator's URL.
    pub url: String,
    /// What failed, innermost cause first (`Connection refused (os error 111)`).
    pub reason: String,
}

/// No coordinator could be reached: every URL was tried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Unreachable {
    /// Each URL tried, in order, with its reason.
    pub tried: Vec<Attempt>,
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.tried.as_slice() {
            [one] => write!(f, "the coordinator at {} cannot be reached ({})", one.url, one.reason),
            all => {
                f.write_str("no coordinator can be reached (")?;
                for (i, a) in all.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "; " };
                    write!(f, "{sep}{}: {}", a.url, a.reason)?;
                }
                f.write_str(")")
            }
        }
    }
}

/// A request not safe to repeat may have reached a coordinator that failed before it
/// answered: it may or may not have been done, and was sent nowhere else.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the coordinator at {url} failed before answering ({reason}), so the request may or may not have been done; it was not sent again, as doing it twice is not safe")]
pub struct Interrupted {
    /// The coordinator's URL.
    pub url: String,
    /// What failed.
    pub reason: String,
}

/// Why [`Failover::send`] got no answer.
#[derive(Debug, thiserror::Error)]
pub enum Failure<E: std::error::Error + 'static> {
    /// The request could not be built (nothing was sent).
    #[error(transparent)]
    Request(E),
    /// No coordinator could be reached.
    #[error(transparent)]
    Unreachable(Unreachable),
    /// The request may have been done by a coordinator that failed before answering.
    #[error(transparent)]
    Interrupted(Interrupted),
}

/// What became of one attempt.
enum Outcome {
    /// A coordinator answered.
    Answer(reqwest::Response),
    /// The request certainly reached no coordinator.
    NotSent(String),
    /// The request may have reached a coordinator that failed.
    MaybeSent(String),
}

/// Sends requests to a grid's coordinators, failing over between them (see the module's
/// documentation). Shared by every clone of a client, so all stick to the same coordinator.
#[derive(Debug)]
pub struct Failover {
    http: reqwest::Client,
    urls: CoordinatorUrls,
    /// The index of the URL that answered last.
    current: AtomicUsize,
    /// Whether a coordinator has answered yet: only then is an unreachable one waited for.
    answered: AtomicBool,
    /// How long an unreachable coordinator is waited for once one has answered.
    patience: std::time::Duration,
}

/// How long a process that has reached a coordinator waits for one to answer again.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

impl Failover {
    /// Sends through `http` to the coordinators at `urls`.
    pub fn new(http: reqwest::Client, urls: CoordinatorUrls) -> Self {
        Self { http, urls, current: AtomicUsize::new(0), answered: AtomicBool::new(false), patience: PATIENCE }
    }

    /// The same, waiting `patience` instead of [`PATIENCE`] for a coordinator that stopped
    /// answering (zero: not at all, for a caller that retries by itself).
    pub fn with_patience(mut self, patience: std::time::Duration) -> Self {
        self.patience = patience;
        self
    }

    /// The URLs, in the order given.
    pub fn urls(&self) -> &CoordinatorUrls {
        &self.urls
    }

    /// The URL requests go to first: the one that answered last.
    pub fn current(&self) -> &str {
        &self.urls.0[self.current.load(Ordering::Relaxed) % self.urls.0.len()]
    }

    /// Sends the request `build` makes for a coordinator's base URL (called once per attempt,
    /// with the HTTP client and the URL), failing over as [`Repeat`] allows. Returns the first
    /// answer of a coordinator, whatever its status.
    ///
    /// Once a coordinator has answered this process, a round of the list that reaches none
    /// is tried again for up to [`PATIENCE`] (1 s apart, then up to 4 s): a coordinator
    /// restarting, as in an upgrade, does not fail a backup under way. A process that never
    /// reached one (a wrong URL, a grid not up) is told at once.
    pub async fn send<E: std::error::Error + 'static>(
        &self,
        repeat: Repeat,
        mut build: impl FnMut(&reqwest::Client, &str) -> Result<reqwest::Request, E>,
    ) -> Result<Reply, Failure<E>> {
        let deadline = self.answered.load(Ordering::Relaxed).then(|| std::time::Instant::now() + self.patience);
        let mut pause = std::time::Duration::from_secs(1);
        loop {
            match self.round(repeat, &mut build).await {
                Err(Failure::Unreachable(u)) if deadline.is_some_and(|d| std::time::Instant::now() + pause < d) => {
                    tracing::warn!(
                        "{u}; trying again in {} s (a coordinator restarting is waited for up to {} s)",
                        pause.as_secs(),
                        self.patience.as_secs()
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(4));
                }
                done => return done,
            }
        }
    }

    /// One try of each URL in turn (see [`Failover::send`]).
    async fn round<E: std::error::Error + 'static>(
        &self,
        repeat: Repeat,
        build: &mut impl FnMut(&reqwest::Client, &str) -> Result<reqwest::Request, E>,
    ) -> Result<Reply, Failure<E>> {
        let n = self.urls.0.len();
        let start = self.current.load(Ordering::Relaxed) % n;
        let mut tried = Vec::new();
        for i in 0..n {
            let index = (start + i) % n;
            let url = &self.urls.0[index];
            let request = build(&self.http, url).map_err(Failure::Request)?;
            let reason = match attempt(&self.http, request).await {
                Outcome::Answer(response) => {
                    self.current.store(index, Ordering::Relaxed);
                    self.answered.store(true, Ordering::Relaxed);
                    return Ok(Reply { url: url.clone(), response });
                }
                Outcome::NotSent(reason) => reason,
                Outcome::MaybeSent(reason) if repeat == Repeat::Safe => reason,
                Outcome::MaybeSent(reason) => {
                    return Err(Failure::Interrupted(Interrupted { url: url.clone(), reason }));
                }
            };
            if i + 1 < n {
                let next = &self.urls.0[(index + 1) % n];
                tracing::info!(coordinator = %url, %reason, %next, "coordinator unreachable; trying the next one");
            }
            tried.push(Attempt { url: url.clone(), reason });
        }
        Err(Failure::Unreachable(Unreachable { tried }))
    }
}

/// Sends one request and tells what became of it.
async fn attempt(http: &reqwest::Client, request: reqwest::Request) -> Outcome {
    match http.execute(request).await {
        Ok(response) => gateway_check(response).await,
        // Connecting includes the TLS handshake: the request never left.
        Err(e) if e.is_connect() => Outcome::NotSent(root_cause(&e)),
        Err(e) => Outcome::MaybeSent(root_cause(&e)),
    }
}

/// A 502, 503 or 504 is a coordinator's answer only when its body is a coordinator's error
/// ([`ErrorBody`]); otherwise it is a gateway's word that no coordinator answered.
async fn gateway_check(mut response: reqwest::Response) -> Outcome {
    let status = response.status();
    if !matches!(status.as_u16(), 502..=504) {
        return Outcome::Answer(response);
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(piece)) if body.len() + piece.len() <= MAX_GATEWAY_BODY => body.extend_from_slice(&piece),
            Ok(Some(_)) => {
                return Outcome::MaybeSent(format!("answered {status} with a long body that is no coordinator's error"))
            }
            Ok(None) => break,
            Err(e) => return Outcome::MaybeSent(format!("answered {status}, then {}", root_cause(&e))),
        }
    }
    if serde_json::from_slice::<ErrorBody>(&body).is_err() {
        return Outcome::MaybeSent(format!(
            "answered {status} without a coordinator's error (a gateway whose coordinator is down?)"
        ));
    }
    let mut rebuilt = http::Response::new(body);
    *rebuilt.status_mut() = status;
    *rebuilt.version_mut() = response.version();
    *rebuilt.headers_mut() = response.headers().clone();
    Outcome::Answer(reqwest::Response::from(rebuilt))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;

    use axum::http::StatusCode;

    #[test]
    fn lists_parse_from_text_and_keep_their_order() {
        let urls: CoordinatorUrls = " https://a:7000/, https://b:7000 ,https://a:7000".parse().expect("parses");
        assert_eq!(urls.as_slice(), ["https://a:7000", "https://b:7000"]);
        assert_eq!(urls.to_string(), "https://a:7000,https://b:7000");
        let one: CoordinatorUrls = "http://127.0.0.1:7000".parse().expect("parses");
        assert_eq!(one.as_slice(), ["http://127.0.0.1:7000"]);
        for bad in ["", " ", ",", "https://a:7000,", "a:7000", "ftp://a", "https://a:7000,nope"] {
            assert!(bad.parse::<CoordinatorUrls>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn every_url_must_agree_with_the_mode() {
        let fp = Some(Fingerprint([7; 32]));
        let both: CoordinatorUrls = "https://a:7000,https://b:7000".parse().expect("parses");
        assert_eq!(both.check_mode(fp, false).expect("TLS"), fp);
        let mixed: CoordinatorUrls = "https://a:7000,http://b:7000".parse().expect("parses");
        assert!(matches!(mixed.check_mode(fp, false), Err(ModeError::Mismatch(u)) if u == "http://b:7000"));
        assert!(mixed.check_mode(None, true).is_err());
        // --insecure on a TLS grid is refused, not warned about and then ignored.
        assert!(matches!(both.check_mode(fp, true), Err(ModeError::NeedlessInsecure(u)) if u == "https://a:7000"));
    }

    #[test]
    fn one_url_is_stored_as_a_string_and_several_as_a_list() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct P {
            coordinator: CoordinatorUrls,
        }
        let one: P = serde_json::from_str(r#"{"coordinator":"https://a:7000"}"#).expect("old profile");
        assert_eq!(serde_json::to_string(&one).expect("json"), r#"{"coordinator":"https://a:7000"}"#);
        let two = P { coordinator: "https://a:7000,https://b:7000".parse().expect("parses") };
        let text = serde_json::to_string(&two).expect("json");
        assert_eq!(text, r#"{"coordinator":["https://a:7000","https://b:7000"]}"#);
        assert!(serde_json::from_str::<P>(&text).expect("reads").coordinator == two.coordinator);
        assert!(serde_json::from_str::<P>(r#"{"coordinator":[]}"#).is_err());
        assert!(serde_json::from_str::<P>(r#"{"coordinator":"nope"}"#).is_err());
    }

    /// A URL where nothing listens: a port bound, then released.
    async fn dead_url(scheme: &str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("{scheme}://{}", listener.local_addr().expect("addr"));
        drop(listener);
        url
    }

    /// A plain-HTTP server answering every request with `status` and `body`; returns its URL
    /// and the number of requests it got.
    async fn server(status: StatusCode, body: &'static str) -> (String, Arc<AtomicU32>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let hits = Arc::new(AtomicU32::new(0));
        let counter = hits.clone();
        let router = axum::Router::new().fallback(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { (status, body) }
        });
        tokio::spawn(crate::serve::serve(listener, router, None, std::future::pending()));
        (url, hits)
    }

    fn failover(urls: &[&str]) -> Failover {
        let http = crate::http_client(None, crate::Peer::Coordinator).build().expect("client");
        Failover::new(http, CoordinatorUrls::new(urls).expect("urls"))
    }

    async fn get(f: &Failover, repeat: Repeat) -> Result<Reply, Failure<reqwest::Error>> {
        f.send(repeat, |http, base| http.get(format!("{base}/v1/status")).build()).await
    }

    #[tokio::test]
    async fn a_refused_connection_fails_over_and_the_working_url_sticks() {
        let dead = dead_url("http").await;
        let (gateway, gateway_hits) = server(StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>").await;
        let (live, live_hits) = server(StatusCode::OK, "{}").await;
        // Not safe to repeat, yet sent on: a refused connection carried nothing.
        let f = failover(&[&dead, &live]);
        let reply = get(&f, Repeat::Unsafe).await.expect("the second answers");
        assert_eq!((reply.url.as_str(), reply.response.status()), (live.as_str(), StatusCode::OK));
        assert_eq!(f.current(), live);

        // A gateway without its coordinator: passed for a request safe to repeat, and the
        // next request goes straight to the URL that answered.
        let f = failover(&[&gateway, &live]);
        assert_eq!(get(&f, Repeat::Safe).await.expect("answers").url, live);
        assert_eq!(get(&f, Repeat::Safe).await.expect("answers").url, live);
        assert_eq!((gateway_hits.load(Ordering::SeqCst), live_hits.load(Ordering::SeqCst)), (1, 3));
    }

    #[tokio::test]
    async fn each_attempt_is_built_anew() {
        let dead = dead_url("http").await;
        let (live, _) = server(StatusCode::OK, "{}").await;
        let f = failover(&[&dead, &live]);
        let mut built = Vec::new();
        let reply = f
            .send(Repeat::Safe, |http, base| {
                built.push(base.to_owned());
                http.get(format!("{base}/v1/status")).build()
            })
            .await
            .expect("answers");
        assert_eq!(reply.url, live);
        assert_eq!(built, [dead, live]);
    }

    #[tokio::test]
    async fn a_coordinators_error_is_its_answer() {
        let body = r#"{"code":"too_few_hosts","error":"only 3 hosts take data"}"#;
        let (busy, _) = server(StatusCode::SERVICE_UNAVAILABLE, body).await;
        let (refusing, _) = server(StatusCode::FORBIDDEN, r#"{"code":"forbidden","error":"no"}"#).await;
        let (live, live_hits) = server(StatusCode::OK, "{}").await;
        for (first, status) in [(&busy, StatusCode::SERVICE_UNAVAILABLE), (&refusing, StatusCode::FORBIDDEN)] {
            let f = failover(&[first, &live]);
            let reply = get(&f, Repeat::Safe).await.expect("answers");
            assert_eq!((&reply.url, reply.response.status()), (first, status));
            if status == StatusCode::SERVICE_UNAVAILABLE {
                let e: ErrorBody = reply.response.json().await.expect("the body is still there");
                assert_eq!(e.code, scatter_proto::api::ErrorCode::TooFewHosts);
            }
        }
        assert_eq!(live_hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_request_not_safe_to_repeat_is_not_sent_again_once_it_may_have_arrived() {
        let (gateway, _) = server(StatusCode::GATEWAY_TIMEOUT, "upstream timed out").await;
        let (live, live_hits) = server(StatusCode::OK, "{}").await;
        let f = failover(&[&gateway, &live]);
        match get(&f, Repeat::Unsafe).await {
            Err(Failure::Interrupted(i)) => {
                assert_eq!(i.url, gateway);
                assert!(i.to_string().contains("may or may not have been done"), "{i}");
            }
            other => panic!("expected an interruption, got {other:?}"),
        }
        assert_eq!(live_hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_connection_lost_after_the_request_went_out_fails_over_only_what_is_safe_to_repeat() {
        // A peer that reads the request and hangs up without answering.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let dying = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf).await;
                drop(tcp);
            }
        });
        let (live, live_hits) = server(StatusCode::OK, "{}").await;
        let f = failover(&[&dying, &live]);
        assert!(matches!(get(&f, Repeat::Unsafe).await, Err(Failure::Interrupted(i)) if i.url == dying));
        assert_eq!(live_hits.load(Ordering::SeqCst), 0);
        assert_eq!(get(&f, Repeat::Safe).await.expect("the second answers").url, live);
    }

    #[tokio::test]
    async fn when_all_fail_the_error_names_every_url() {
        let (a, b) = (dead_url("http").await, dead_url("http").await);
        let f = failover(&[&a, &b]);
        match get(&f, Repeat::Safe).await {
            Err(Failure::Unreachable(u)) => {
                assert_eq!(u.tried.iter().map(|t| t.url.as_str()).collect::<Vec<_>>(), [a.as_str(), b.as_str()]);
                let text = u.to_string();
                assert!(text.starts_with("no coordinator can be reached"), "{text}");
                assert!(text.contains(&a) && text.contains(&b) && text.contains("refused"), "{text}");
            }
            other => panic!("expected unreachable, got {other:?}"),
        }
        // With one URL, the sentence is the one it always was.
        let f = failover(&[&a]);
        let text = get(&f, Repeat::Safe).await.expect_err("down").to_string();
        assert!(text.starts_with(&format!("the coordinator at {a} cannot be reached (")), "{text}");
    }

    #[tokio::test]
    async fn a_failed_tls_handshake_fails_over() {
        // A peer that accepts and hangs up at once: the handshake fails, nothing was sent.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let dying = format!("https://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                drop(tcp);
            }
        });
        let dir = tempfile::tempdir().expect("tmp");
        let ca = crate::tls::Authority::load_or_create(dir.path()).expect("ca");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let live = format!("https://{}", listener.local_addr().expect("addr"));
        let router = axum::Router::new().fallback(|| async { "{}" });
        let tls = ca.coordinator_config().expect("config");
        tokio::spawn(crate::serve::serve(listener, router, Some(tls), std::future::pending()));
        let http = crate::http_client(Some(ca.fingerprint()), crate::Peer::Coordinator).build().expect("client");
        let f = Failover::new(http, CoordinatorUrls::new([&dying, &live]).expect("urls"));
        let reply = get(&f, Repeat::Unsafe).await.expect("the second answers");
        assert_eq!((reply.url, reply.response.status()), (live, StatusCode::OK));
    }

    #[tokio::test]
    async fn a_coordinator_that_answered_is_waited_for_while_it_restarts_and_a_new_one_is_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let url = format!("http://{addr}");
        let router = || axum::Router::new().fallback(|| async { "{}" });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let first = tokio::spawn(crate::serve::serve(listener, router(), None, async move {
            let _ = stopped.await;
        }));
        let f = failover(&[&url]).with_patience(std::time::Duration::from_secs(10));
        get(&f, Repeat::Safe).await.expect("answers");
        // Down, and back on the same port a moment later.
        let _ = stop.send(());
        let _ = first.await;
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            let listener = tokio::net::TcpListener::bind(addr).await.expect("bind again");
            crate::serve::serve(listener, router(), None, std::future::pending()).await
        });
        let started = std::time::Instant::now();
        let reply = get(&f, Repeat::Unsafe).await.expect("answers once it is back");
        assert_eq!(reply.response.status(), StatusCode::OK);
        assert!(started.elapsed() >= std::time::Duration::from_millis(1000), "it was down");
        // A process that never reached one is told at once.
        let dead = dead_url("http").await;
        let started = std::time::Instant::now();
        assert!(get(&failover(&[&dead]), Repeat::Safe).await.is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Nor does one that asks for no patience wait.
        let f = failover(&[&dead]).with_patience(std::time::Duration::ZERO);
        f.answered.store(true, Ordering::Relaxed);
        let started = std::time::Instant::now();
        assert!(get(&f, Repeat::Safe).await.is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
