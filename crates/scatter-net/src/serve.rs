//! The HTTP server loop shared by coordinator and hosts: TLS (or, with `--insecure`, plain
//! TCP), HTTP/1.1 and HTTP/2, bounded handshakes and header reads, bounded connections (in
//! all and per peer address), and a graceful shutdown. Every request carries the peer's
//! address as [`axum::extract::ConnectInfo`].

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// A peer that has not finished its TLS handshake or sent its request headers by then is
/// dropped: a slow or silent client costs a socket for at most this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections still open at shutdown get this long to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections served at once; more are closed as soon as they are accepted. Each costs a
/// file descriptor, a task and TLS buffers (about 50 KiB).
pub const MAX_CONNECTIONS: usize = 1024;

/// Connections served at once from one peer (one IPv4 address, or one IPv6 /64): a single
/// peer cannot take every connection.
pub const MAX_CONNECTIONS_PER_PEER: usize = 256;

/// Requests at once on one HTTP/2 connection.
const MAX_STREAMS: u32 = 64;

/// The key connections are counted under: the address, or for IPv6 its /64 network (one
/// machine often holds a whole /64).
pub fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::V6(o.into())
        }
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Open connections, in all and per peer.
#[derive(Default)]
struct Connections {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
}

/// A connection counted in [`Connections`]; uncounted when dropped.
struct Counted {
    connections: Arc<Mutex<Connections>>,
    peer: IpAddr,
}

impl Counted {
    /// Counts a new connection from `peer`, unless that would pass a limit.
    fn admit(connections: &Arc<Mutex<Connections>>, peer: IpAddr) -> Option<Self> {
        let mut c = connections.lock().unwrap_or_else(|p| p.into_inner());
        let mine = c.per_peer.get(&peer).copied().unwrap_or(0);
        if c.total >= MAX_CONNECTIONS || mine >= MAX_CONNECTIONS_PER_PEER {
            return None;
        }
        c.total += 1;
        c.per_peer.insert(peer, mine + 1);
        Some(Self { connections: connections.clone(), peer })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut c = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                c.per_peer.remove(&self.peer);
            }
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, over TLS when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HANDSHAKE_TIMEOUT);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(MAX_STREAMS);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let connections: Arc<Mutex<Connections>> = Default::default();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(counted) = Counted::admit(&connections, peer_key(peer.ip())) else {
            tracing::debug!(%peer, "too many connections; closed this one");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (builder, acceptor, router, watcher) =
            (builder.clone(), acceptor.clone(), router.clone(), graceful.watcher());
        tokio::spawn(async move {
            let _counted = counted;
            let service = TowerToHyperService::new(AddPeer { router, peer });
            let result = match acceptor {
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service)).await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
                None => watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(tcp), service)).await,
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::debug!("connections still open at shutdown were dropped");
    }
    Ok(())
}

/// The router, with the peer's address put in every request for handlers and limits to read.
#[derive(Clone)]
struct AddPeer {
    router: axum::Router,
    peer: SocketAddr,
}

impl tower_service::Service<axum::http::Request<hyper::body::Incoming>> for AddPeer {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = <axum::Router as tower_service::Service<axum::http::Request<hyper::body::Incoming>>>::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        <axum::Router as tower_service::Service<axum::http::Request<hyper::body::Incoming>>>::poll_ready(
            &mut self.router,
            cx,
        )
    }

    fn call(&mut self, mut req: axum::http::Request<hyper::body::Incoming>) -> Self::Future {
        req.extensions_mut().insert(axum::extract::ConnectInfo(self.peer));
        self.router.call(req)
    }
}
