//! Scatter's transport layer: the grid's certificate authority ([`tls::Authority`]), TLS
//! configurations that trust only that CA ([`tls::client_config`]), HTTP clients built on them
//! ([`http_client`]), the server loop coordinator and hosts share ([`serve::serve`]), and the
//! way clients and hosts reach one of several coordinators ([`failover`]).

pub mod failover;
pub mod limits;
pub mod serve;
pub mod tls;
pub mod token;

pub use failover::CoordinatorUrls;
pub use tls::{read_small, write_private, Fingerprint, Peer};
pub use token::Token;

/// How long a client keeps an idle connection for reuse: less than the 10 s after which our
/// servers close one that sent no request (`serve`'s header read timeout). Kept longer, a
/// request sent as the server closed the connection failed: every 10 s heartbeat raced the
/// close of the connection the last one left, and hosts logged the coordinator unreachable.
const POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(5);

/// An HTTP client builder that trusts only the grid CA with `fingerprint`, or — `None`, for a
/// grid run with `--insecure` — speaks plain HTTP and trusts no certificate at all. It
/// follows no redirect: no grid endpoint sends one, and a host that did would have the
/// coordinator carry its grants and requests wherever the host pointed it.
pub fn http_client(fingerprint: Option<Fingerprint>, peer: Peer) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .pool_idle_timeout(POOL_IDLE)
        .redirect(reqwest::redirect::Policy::none());
    match fingerprint {
        Some(fp) => builder.use_preconfigured_tls(tls::client_config(fp, peer)).https_only(true),
        None => builder,
    }
}

/// Why a URL and a CA fingerprint do not go together.
#[derive(Debug, thiserror::Error)]
pub enum ModeError {
    /// An https URL with nothing to authenticate the server by.
    #[error("{0} uses TLS, but the token carries no CA fingerprint to authenticate it by; use a token printed by this grid's coordinator")]
    NoFingerprint(String),
    /// A plain-HTTP URL without `--insecure`.
    #[error("{0} is plain HTTP: anyone on the network could read and change the traffic; use the https:// URL the coordinator prints, or pass --insecure if this grid really runs without TLS")]
    Plain(String),
    /// A plain-HTTP URL with a TLS grid's token.
    #[error("{0} is plain HTTP, but the token is for a grid with TLS; use https://")]
    Mismatch(String),
    /// `--insecure` with a TLS grid's URL and token: refused rather than warned about and
    /// then ignored (TLS is used whatever the flag says).
    #[error("{0} uses TLS and the token carries the grid's CA fingerprint to check it by; leave out --insecure, which is only for a grid run without TLS")]
    NeedlessInsecure(String),
    /// Not a URL.
    #[error("`{0}` is not an http(s) URL (expected e.g. https://203.0.113.7:7000)")]
    NotUrl(String),
}

/// Checks that `url` and `ca` agree: https with a fingerprint, or http with `insecure` and
/// none. Returns the fingerprint to pin.
pub fn check_mode(url: &str, ca: Option<Fingerprint>, insecure: bool) -> Result<Option<Fingerprint>, ModeError> {
    let scheme = reqwest::Url::parse(url).map(|u| u.scheme().to_owned()).map_err(|_| ModeError::NotUrl(url.into()))?;
    match (scheme.as_str(), ca) {
        ("https", Some(_)) if insecure => Err(ModeError::NeedlessInsecure(url.into())),
        ("https", Some(fp)) => Ok(Some(fp)),
        ("https", None) => Err(ModeError::NoFingerprint(url.into())),
        ("http", Some(_)) => Err(ModeError::Mismatch(url.into())),
        ("http", None) if insecure => Ok(None),
        ("http", None) => Err(ModeError::Plain(url.into())),
        _ => Err(ModeError::NotUrl(url.into())),
    }
}

/// The warning every party prints when it runs without TLS.
pub const INSECURE_WARNING: &str =
    "running WITHOUT TLS (--insecure): tokens, grants and metadata cross the network in the clear and can be altered";

/// The innermost cause of an error: for a refused TLS handshake or a refused connection, the
/// sentence that says why.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The URL a service announces when no `--public-url` is given: its listening address, or
/// 127.0.0.1 when it listens on every address, which it warns about (other machines
/// cannot use that URL). `who` names the service in the warning.
pub fn listening_url(scheme: &str, addr: std::net::SocketAddr, who: &str) -> String {
    let ip = if addr.ip().is_unspecified() {
        tracing::warn!(
            listen = %addr,
            "listening on every address without --public-url: this {who} calls itself by 127.0.0.1, which only \
             this machine can reach; give --public-url https://NAME:PORT for other machines"
        );
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        addr.ip()
    };
    format!("{scheme}://{}", std::net::SocketAddr::new(ip, addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Attack (red team): a host answered the coordinator's DELETE with a redirect, and the
    /// coordinator followed it, 1,106 times in 15 s, with the grant in its headers.
    #[tokio::test]
    async fn redirects_are_not_followed() {
        let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target = elsewhere.local_addr().expect("addr");
        let host = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/shard", host.local_addr().expect("addr"));
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = host.accept().await {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{target}/stolen\r\nContent-Length: 0\r\n\r\n"
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            }
        });
        let client = http_client(None, Peer::Host).build().expect("client");
        let sent = client.delete(&url).header("scatter-grant", "secret").send();
        let answer = tokio::time::timeout(std::time::Duration::from_secs(5), sent)
            .await
            .expect("no answer: the redirect was followed")
            .expect("answer");
        assert_eq!(answer.status(), 307, "the redirect was followed");
        let followed = tokio::time::timeout(std::time::Duration::from_millis(300), elsewhere.accept()).await;
        assert!(followed.is_err(), "a request reached the redirect's target");
    }
}
