//! The HTTP server loop shared by coordinator, hosts and gateway: TLS (or, with `--insecure`,
//! plain TCP), HTTP/1.1, bounded handshakes and header reads, bounded connections
//! (in all and per peer address), and a graceful shutdown. Every request carries the peer's
//! address as [`axum::extract::ConnectInfo`].
//!
//! A connection at a limit does not shut newcomers out while it sits idle: a peer may open
//! connections and send nothing on them (no timeout runs before a request's first byte), so
//! when a new connection finds a limit reached, the connection idle longest (no request in
//! flight) under that limit is closed to make room. Only connections with requests in flight
//! are never closed so; those are bounded by each service's own timeouts and budgets.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// A peer that has not finished its TLS handshake or sent its request headers by then is
/// dropped: a slow or silent client costs a socket for at most this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A peer that reads none of what it is sent for this long is dropped: a client that stops
/// reading its response cannot hold the response's buffers, budget and task for ever (as
/// nginx's `send_timeout`).
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Connections still open at shutdown get this long to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections served at once; more are closed as soon as they are accepted. Each costs a
/// file descriptor, a task and TLS buffers (about 50 KiB).
pub const MAX_CONNECTIONS: usize = 1024;

/// Connections served at once from one peer (one IPv4 address, or one IPv6 /64): a single
/// peer cannot take every connection.
pub const MAX_CONNECTIONS_PER_PEER: usize = 256;

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

/// A connection's requests: how many are in flight (from their headers until their response
/// is sent whole, or dropped) and when one last started or ended.
struct Activity {
    in_flight: AtomicUsize,
    /// Milliseconds since the server started.
    last: AtomicU64,
    epoch: Instant,
}

impl Activity {
    fn new(epoch: Instant) -> Self {
        let a = Self { in_flight: AtomicUsize::new(0), last: AtomicU64::new(0), epoch };
        a.touch();
        a
    }

    fn touch(&self) {
        self.last.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// A request in flight on its connection, for as long as this lives.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.touch();
        Self(activity)
    }

    /// Keeps the guard alive inside the response body that owns it.
    fn hold(&self) {}
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An open connection, as the limits see it.
struct Open {
    peer: IpAddr,
    activity: Arc<Activity>,
    close: Arc<Notify>,
}

/// Open connections, in all and per peer.
#[derive(Default)]
struct Connections {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
    open: HashMap<u64, Open>,
    next: u64,
}

impl Connections {
    /// Stops counting connection `id`; false if it was not counted (closed to make room).
    fn forget(&mut self, id: u64) -> bool {
        let Some(open) = self.open.remove(&id) else { return false };
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.per_peer.get_mut(&open.peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&open.peer);
            }
        }
        true
    }

    /// Closes the connection idle longest (of `peer`, if given), making room for another;
    /// false if every one has a request in flight.
    fn close_idlest(&mut self, peer: Option<IpAddr>) -> bool {
        let idlest = self
            .open
            .iter()
            .filter(|(_, o)| peer.is_none_or(|p| o.peer == p) && o.activity.in_flight.load(Ordering::Relaxed) == 0)
            .min_by_key(|(_, o)| o.activity.last.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        let Some(id) = idlest else { return false };
        if let Some(open) = self.open.get(&id) {
            open.close.notify_one();
        }
        self.forget(id)
    }
}

/// A connection counted in [`Connections`]; uncounted when dropped.
struct Counted {
    connections: Arc<Mutex<Connections>>,
    id: u64,
    activity: Arc<Activity>,
    close: Arc<Notify>,
}

impl Counted {
    /// Counts a new connection from `peer`, closing an idle one if a limit is reached; none
    /// if every connection under the limit has a request in flight.
    fn admit(connections: &Arc<Mutex<Connections>>, peer: IpAddr, epoch: Instant) -> Option<Self> {
        let mut c = connections.lock().unwrap_or_else(|p| p.into_inner());
        let mine = c.per_peer.get(&peer).copied().unwrap_or(0);
        let room = if mine >= MAX_CONNECTIONS_PER_PEER {
            c.close_idlest(Some(peer))
        } else if c.total >= MAX_CONNECTIONS {
            c.close_idlest(None)
        } else {
            true
        };
        if !room {
            return None;
        }
        let (activity, close) = (Arc::new(Activity::new(epoch)), Arc::new(Notify::new()));
        let id = c.next;
        c.next += 1;
        c.total += 1;
        *c.per_peer.entry(peer).or_default() += 1;
        c.open.insert(id, Open { peer, activity: activity.clone(), close: close.clone() });
        Some(Self { connections: connections.clone(), id, activity, close })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.connections.lock().unwrap_or_else(|p| p.into_inner()).forget(self.id);
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
    // HTTP/1.1 only: every client of ours speaks it, and over HTTP/2 a peer that grants no
    // flow-control window keeps a stream's response unsent, and its connection busy, for
    // ever (no socket ever blocks for the send timeout to see).
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HANDSHAKE_TIMEOUT);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let connections: Arc<Mutex<Connections>> = Default::default();
    let epoch = Instant::now();
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
        let Some(counted) = Counted::admit(&connections, peer_key(peer.ip()), epoch) else {
            tracing::debug!(%peer, "too many connections, each with a request in flight; closed this one");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (builder, acceptor, router, watcher) =
            (builder.clone(), acceptor.clone(), router.clone(), graceful.watcher());
        tokio::spawn(async move {
            let close = counted.close.clone();
            let service = TowerToHyperService::new(AddPeer { router, peer, activity: counted.activity.clone() });
            let connection = async move {
                match acceptor {
                    Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let io = TokioIo::new(SendTimeout::new(stream));
                            watcher.watch(builder.serve_connection(io, service)).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            Ok(())
                        }
                    },
                    None => {
                        let io = TokioIo::new(SendTimeout::new(tcp));
                        watcher.watch(builder.serve_connection(io, service)).await
                    }
                }
            };
            let result = tokio::select! {
                r = connection => r,
                () = close.notified() => {
                    tracing::debug!(%peer, "an idle connection was closed to make room for another");
                    Ok(())
                }
            };
            drop(counted);
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

/// A connection whose writes fail once one has waited [`SEND_TIMEOUT`] for the peer to read.
struct SendTimeout<T> {
    inner: T,
    /// Set while a write waits; none when the last one went through.
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<T> SendTimeout<T> {
    fn new(inner: T) -> Self {
        Self { inner, stalled: None }
    }

    /// What a write that got `result` returns: the result, or a timeout once the writes have
    /// waited too long.
    fn watch<R>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        result: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        if result.is_ready() {
            self.stalled = None;
            return result;
        }
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(SEND_TIMEOUT)));
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the peer read nothing of the response for 60 s",
            )));
        }
        Poll::Pending
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for SendTimeout<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for SendTimeout<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, result)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
        let result = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, result)
    }

    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
        let result = std::pin::Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, result)
    }
}

/// The router, with the peer's address put in every request for handlers and limits to read,
/// and each request counted in flight on its connection until its response is sent whole.
#[derive(Clone)]
struct AddPeer {
    router: axum::Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

impl tower_service::Service<axum::http::Request<hyper::body::Incoming>> for AddPeer {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        <axum::Router as tower_service::Service<axum::http::Request<hyper::body::Incoming>>>::poll_ready(
            &mut self.router,
            cx,
        )
    }

    fn call(&mut self, mut req: axum::http::Request<hyper::body::Incoming>) -> Self::Future {
        req.extensions_mut().insert(axum::extract::ConnectInfo(self.peer));
        let busy = Busy::start(self.activity.clone());
        let response = self.router.call(req);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| {
                axum::body::Body::new(body.map_frame(move |frame| {
                    busy.hold();
                    frame
                }))
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_reads_nothing_is_dropped_after_the_send_timeout() {
        let (server, _client) = tokio::io::duplex(1024);
        let mut server = SendTimeout::new(server);
        let started = tokio::time::Instant::now();
        let err = loop {
            if let Err(e) = server.write_all(&[0u8; 4096]).await {
                break e;
            }
        };
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= SEND_TIMEOUT, "{:?}", started.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_reads_slowly_keeps_its_connection() {
        let (server, mut client) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut buf = [0u8; 1024];
            while got < 8192 {
                tokio::time::sleep(SEND_TIMEOUT / 2).await;
                got += client.read(&mut buf).await.expect("read");
            }
        });
        let mut server = SendTimeout::new(server);
        server.write_all(&[0u8; 8192]).await.expect("a slow reader's response went through");
        reader.await.expect("reader");
    }
}
