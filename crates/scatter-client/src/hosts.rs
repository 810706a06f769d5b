//! Shard transfers to and from hosts.
//!
//! Strategy: one attempt per shard and host with a timeout; the pipelines decide what to do
//! on failure (another host for a put, another shard for a get). Every failure says which host
//! and why, and whether the shard itself is bad (so it can be reported for repair).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use scatter_core::{HostId, ShardId};
use scatter_proto::api::{ErrorBody, StoredResponse, GRANT_HEADER, MAX_SHARD};
use scatter_proto::{SignedGrant, SignedReceipt};

use crate::buffers::BufferPool;
use crate::coordinator::root_cause;

/// Whole shards downloaded (to rebuild packs) kept for reuse: about the most a restore holds
/// at once. Freshly allocated, every downloaded byte was a page fault.
const DOWNLOAD_BUFFERS: usize = 16;
/// Largest answer to a shard upload read (a receipt is about 300 bytes).
const MAX_RECEIPT_REPLY: u64 = 4096;
/// Largest error answer read from a host (its sentence is a few hundred bytes).
const MAX_ERROR_REPLY: usize = 16 << 10;

/// Why a shard transfer failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransferError {
    /// The host could not be reached.
    #[error("unreachable ({0})")]
    Unreachable(String),
    /// The host holds a damaged copy (it quarantined it), or sent bytes that fail the hash.
    #[error("corrupt shard ({0})")]
    Corrupt(String),
    /// The host refused or failed.
    #[error("refused: {0}")]
    Refused(String),
    /// The host served the grant's bytes as often as it may: a new locate gives a new grant.
    #[error("refused: {0}")]
    Spent(String),
}

/// An HTTP client for shard transfers, with pooled keep-alive connections and optional
/// bandwidth caps.
#[derive(Clone)]
pub struct Hosts {
    http: reqwest::Client,
    buffers: BufferPool,
    upload: Option<Arc<Limiter>>,
    download: Option<Arc<Limiter>>,
    /// Told of every piece of shard bytes as it arrives (see [`Hosts::report_downloads`]).
    observer: Option<Arc<dyn crate::Progress>>,
    /// Hosts found unreachable, and when (see [`Hosts::recently_down`]).
    down: Arc<Mutex<HashMap<HostId, Instant>>>,
    /// How long a read waits for its answer to start, or for its next bytes ([`STALL`]).
    stall: Duration,
}

/// A shard read whose host sends nothing for this long (no answer, or no more of its body)
/// fails as unreachable, and the pack is rebuilt from the other hosts: a host that takes the
/// connection and then stays silent cost every read of it the whole request timeout (two
/// minutes). Generous for a busy host on a slow disk (a 16 MiB shard read whole at 1 MB/s).
pub const STALL: Duration = Duration::from_secs(30);

/// How long a host found unreachable is left out of new placements: about until the
/// coordinator stops offering it (its heartbeats missed), or a restart brings it back.
const DOWN_FOR: Duration = Duration::from_secs(30);

/// Caps a byte rate: each transfer reserves its share of time after the previous ones.
struct Limiter {
    bytes_per_sec: f64,
    next: Mutex<Instant>,
}

impl Limiter {
    fn new(bytes_per_sec: u64) -> Arc<Self> {
        Arc::new(Self { bytes_per_sec: bytes_per_sec.max(1) as f64, next: Mutex::new(Instant::now()) })
    }

    async fn take(&self, n: usize) {
        let wait = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start + Duration::from_secs_f64(n as f64 / self.bytes_per_sec);
            start - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

impl Hosts {
    /// A client for the hosts of the grid whose CA has fingerprint `ca` (`None`: plain HTTP).
    pub fn new(ca: Option<scatter_net::Fingerprint>) -> Result<Self, crate::ClientError> {
        let http = scatter_net::http_client(ca, scatter_net::Peer::Host)
            .timeout(Duration::from_secs(120))
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(8)
            .build()
            .map_err(|e| crate::ClientError::Invalid(format!("HTTP client setup failed: {e}")))?;
        Ok(Self {
            http,
            buffers: BufferPool::new(DOWNLOAD_BUFFERS),
            upload: None,
            download: None,
            observer: None,
            down: Arc::default(),
            stall: STALL,
        })
    }

    /// Notes that `host` could not be reached: placements leave it out for a while. Whether
    /// that is news (it was not noted down lately): uploads in flight to a host that just
    /// died all fail, and one warning says it.
    pub fn mark_down(&self, host: HostId) -> bool {
        let before = self.down.lock().unwrap_or_else(|p| p.into_inner()).insert(host, Instant::now());
        before.is_none_or(|at| at.elapsed() >= DOWN_FOR)
    }

    /// The hosts found unreachable in the last [`DOWN_FOR`]: a host that died during a backup
    /// is not offered again and again, each time costing a failed upload and a warning,
    /// before the coordinator learns it is gone.
    pub fn recently_down(&self) -> Vec<HostId> {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        down.retain(|_, at| at.elapsed() < DOWN_FOR);
        down.keys().copied().collect()
    }

    /// Caps upload and download rates (bytes per second) across all hosts.
    pub fn with_limits(mut self, upload: Option<u64>, download: Option<u64>) -> Self {
        self.upload = upload.map(Limiter::new);
        self.download = download.map(Limiter::new);
        self
    }

    /// Tells `progress` ([`crate::Progress::downloaded`]) of shard bytes as they arrive, so
    /// a bar moves while a pack downloads rather than only once it is decoded.
    pub fn report_downloads(mut self, progress: Arc<dyn crate::Progress>) -> Self {
        self.observer = Some(progress);
        self
    }

    /// Stores a shard; returns the host's receipt for it, which the pack's commit carries.
    pub async fn put(
        &self,
        address: &str,
        id: &ShardId,
        grant: &SignedGrant,
        data: Bytes,
    ) -> Result<SignedReceipt, TransferError> {
        if let Some(l) = &self.upload {
            l.take(data.len()).await;
        }
        let resp = self
            .http
            .put(format!("{address}/shards/{id}"))
            .header(GRANT_HEADER, &grant.0)
            .body(data)
            .send()
            .await
            .map_err(|e| TransferError::Unreachable(root_cause(&e)))?;
        if !resp.status().is_success() {
            return Err(refusal(resp, self.stall).await);
        }
        let body = self.receive(resp, Some(MAX_RECEIPT_REPLY)).await?;
        let stored: StoredResponse = serde_json::from_slice(&body)
            .map_err(|_| TransferError::Refused("the host stored the shard but sent no readable receipt".into()))?;
        Ok(stored.receipt)
    }

    /// Reads a whole shard, checked against the shard's hash, into one buffer.
    pub async fn get(&self, address: &str, id: &ShardId, grant: &SignedGrant) -> Result<Bytes, TransferError> {
        let resp = self.request(address, id, grant, None).await?;
        let body = self.receive(resp, None).await?;
        if let Some(l) = &self.download {
            l.take(body.len()).await;
        }
        if ShardId::of(&body) != *id {
            return Err(TransferError::Corrupt("bytes do not match the shard's hash".into()));
        }
        Ok(body)
    }

    /// Reads bytes `range` of a shard, in the pieces they arrived in: the reader opens chunks
    /// from them (each chunk is authenticated), so they are not copied together first.
    pub async fn get_range(
        &self,
        address: &str,
        id: &ShardId,
        grant: &SignedGrant,
        range: Range<u64>,
    ) -> Result<Vec<Bytes>, TransferError> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let want = range.end - range.start;
        let mut resp = self.request(address, id, grant, Some(range)).await?;
        let mut pieces = Vec::new();
        let mut got = 0u64;
        while let Some(piece) = self.next_piece(&mut resp, &mut got, want).await? {
            pieces.push(piece);
        }
        if let Some(l) = &self.download {
            l.take(got as usize).await;
        }
        if got != want {
            return Err(TransferError::Refused(format!("sent {got} bytes for a {want}-byte range")));
        }
        Ok(pieces)
    }

    /// Sends a shard read and checks that it was answered.
    async fn request(
        &self,
        address: &str,
        id: &ShardId,
        grant: &SignedGrant,
        range: Option<Range<u64>>,
    ) -> Result<reqwest::Response, TransferError> {
        let mut req = self.http.get(format!("{address}/shards/{id}")).header(GRANT_HEADER, &grant.0);
        if let Some(r) = range {
            req = req.header(reqwest::header::RANGE, format!("bytes={}-{}", r.start, r.end - 1));
        }
        let resp = tokio::time::timeout(self.stall, req.send())
            .await
            .map_err(|_| self.silent())?
            .map_err(|e| TransferError::Unreachable(root_cause(&e)))?;
        if !resp.status().is_success() {
            return Err(refusal(resp, self.stall).await);
        }
        Ok(resp)
    }

    fn silent(&self) -> TransferError {
        TransferError::Unreachable(format!("the host sent nothing for {} s", self.stall.as_secs_f64()))
    }

    /// A response body of at most `expected` bytes (when known) into a pooled buffer. More
    /// than that, or than a shard can be, is refused before it is all read.
    async fn receive(&self, mut resp: reqwest::Response, expected: Option<u64>) -> Result<Bytes, TransferError> {
        let limit = expected.unwrap_or(MAX_SHARD).min(MAX_SHARD);
        let mut buf = self.buffers.take(resp.content_length().unwrap_or(0).min(limit) as usize);
        let mut got = 0u64;
        while let Some(piece) = self.next_piece(&mut resp, &mut got, limit).await? {
            buf.extend_from_slice(&piece);
        }
        Ok(self.buffers.share(buf))
    }

    /// The next piece of a response body, counted into `got`: refused as soon as the body
    /// goes past `limit` bytes, and told to the observer.
    async fn next_piece(
        &self,
        resp: &mut reqwest::Response,
        got: &mut u64,
        limit: u64,
    ) -> Result<Option<Bytes>, TransferError> {
        let piece = tokio::time::timeout(self.stall, resp.chunk()).await.map_err(|_| self.silent())?;
        let Some(piece) = piece.map_err(|e| TransferError::Unreachable(root_cause(&e)))? else {
            return Ok(None);
        };
        *got += piece.len() as u64;
        if *got > limit {
            return Err(TransferError::Refused(format!("sent more than the {limit} bytes asked for")));
        }
        if let Some(o) = &self.observer {
            o.downloaded(piece.len() as u64);
        }
        Ok(Some(piece))
    }
}

/// Why a host refused a request, from its answer: the sentence of its error body, read only
/// up to [`MAX_ERROR_REPLY`] bytes and within one stall time (a hostile host sends an endless
/// or dribbling body to hold the reader's memory or time), else the status alone.
async fn refusal(mut resp: reqwest::Response, stall: Duration) -> TransferError {
    let status = resp.status();
    let mut body = Vec::new();
    let read = tokio::time::timeout(stall, async {
        while let Ok(Some(piece)) = resp.chunk().await {
            let room = MAX_ERROR_REPLY + 1 - body.len();
            body.extend_from_slice(&piece[..piece.len().min(room)]);
            if body.len() > MAX_ERROR_REPLY {
                break;
            }
        }
    })
    .await;
    let parsed = match read {
        Ok(()) if body.len() <= MAX_ERROR_REPLY => serde_json::from_slice::<ErrorBody>(&body).ok(),
        _ => None,
    };
    match parsed {
        Some(b) if b.code == scatter_proto::api::ErrorCode::Corrupt => TransferError::Corrupt(b.error),
        Some(b) if b.code == scatter_proto::api::ErrorCode::GrantSpent => TransferError::Spent(b.error),
        Some(b) => TransferError::Refused(b.error),
        None => TransferError::Refused(status.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-connection HTTP server answering any request with `body` (a host that may lie
    /// about how many bytes a range holds); its address.
    async fn host_answering(body: &'static [u8]) -> String {
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
        host_sending([head.as_bytes(), body].concat(), false).await
    }

    /// A host that takes the connection and then answers with `head` alone (nothing, or
    /// headers and part of a body) and is silent from then on; its address.
    async fn host_falling_silent(head: &'static [u8]) -> String {
        host_sending(head.to_vec(), true).await
    }

    /// A one-connection server sending `bytes` to whatever comes, then closing the connection
    /// or (`linger`) keeping it open and silent; its address.
    async fn host_sending(bytes: Vec<u8>, linger: bool) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let Ok((mut conn, _)) = listener.accept().await else { return };
            let mut request = [0u8; 4096];
            let _ = conn.read(&mut request).await;
            let _ = conn.write_all(&bytes).await;
            if linger {
                tokio::time::sleep(Duration::from_secs(600)).await;
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_host_that_falls_silent_fails_the_read_after_the_stall_time() {
        let mut hosts = Hosts::new(None).expect("client");
        hosts.stall = Duration::from_millis(300);
        let (id, grant) = (ShardId::of(b"shard"), SignedGrant("grant".into()));
        let heads: [&[u8]; 2] = [b"", b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhel"];
        for head in heads {
            let started = Instant::now();
            let silent = host_falling_silent(head).await;
            let e = hosts.get_range(&silent, &id, &grant, 0..10).await.expect_err("nothing comes");
            assert!(matches!(&e, TransferError::Unreachable(m) if m.contains("sent nothing for")), "{e}");
            assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
            let e = hosts.get(&host_falling_silent(head).await, &id, &grant).await.expect_err("nor whole");
            assert!(matches!(&e, TransferError::Unreachable(m) if m.contains("sent nothing for")), "{e}");
        }
    }

    /// A host answering any request with an error whose body never ends: 64 KiB pieces as
    /// fast as the reader takes them (up to 256 MiB), or one byte every 100 ms (`dribble`).
    /// Its address, and how many bytes of the body it could send.
    async fn host_erring_endlessly(dribble: bool) -> (String, Arc<std::sync::atomic::AtomicU64>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = sent.clone();
        tokio::spawn(async move {
            let Ok((mut conn, _)) = listener.accept().await else { return };
            let mut request = [0u8; 4096];
            let _ = conn.read(&mut request).await;
            let head = b"HTTP/1.1 500 Internal Server Error\r\ntransfer-encoding: chunked\r\n\r\n";
            if conn.write_all(head).await.is_err() {
                return;
            }
            let piece = if dribble { 1 } else { 64 << 10 };
            let chunk = [format!("{piece:x}\r\n").into_bytes(), vec![b' '; piece], b"\r\n".to_vec()].concat();
            while counted.load(std::sync::atomic::Ordering::Relaxed) < 256 << 20 {
                if conn.write_all(&chunk).await.is_err() {
                    return;
                }
                counted.fetch_add(piece as u64, std::sync::atomic::Ordering::Relaxed);
                if dribble {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        (format!("http://{addr}"), sent)
    }

    /// Attack (red team): a host answered reads and uploads with an error whose body never
    /// ended, and the client read it whole to find the error's sentence: a `get` grew to 24 GB
    /// and was killed, and a gateway with it; one dribbling a byte every 5 s held each read for
    /// the client's whole timeout (120 s) instead of the stall time.
    #[tokio::test]
    async fn an_endless_error_answer_is_read_only_so_far() {
        let mut hosts = Hosts::new(None).expect("client");
        hosts.stall = Duration::from_millis(300);
        let (id, grant) = (ShardId::of(b"shard"), SignedGrant("grant".into()));
        for dribble in [false, true] {
            for op in ["get", "range", "put"] {
                let (host, sent) = host_erring_endlessly(dribble).await;
                let started = Instant::now();
                let tried = async {
                    match op {
                        "get" => hosts.get(&host, &id, &grant).await.map(drop),
                        "range" => hosts.get_range(&host, &id, &grant, 0..10).await.map(drop),
                        _ => hosts.put(&host, &id, &grant, Bytes::from_static(b"shard")).await.map(drop),
                    }
                };
                let e = tokio::time::timeout(Duration::from_secs(10), tried)
                    .await
                    .unwrap_or_else(|_| panic!("{op} (dribble {dribble}) still reads the error after 10 s"))
                    .expect_err("an error");
                assert!(matches!(&e, TransferError::Refused(m) if m.contains("500")), "{op}: {e}");
                assert!(started.elapsed() < Duration::from_secs(5), "{op}: took {:?}", started.elapsed());
                let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
                assert!(sent < 32 << 20, "{op}: {sent} bytes of an error answer were taken");
            }
        }
    }

    #[tokio::test]
    async fn a_range_read_takes_exactly_the_bytes_asked_for() {
        let hosts = Hosts::new(None).expect("client");
        let (id, grant) = (ShardId::of(b"shard"), SignedGrant("grant".into()));
        let exact = host_answering(b"hello").await;
        let pieces = hosts.get_range(&exact, &id, &grant, 10..15).await.expect("five bytes for five");
        assert_eq!(pieces.concat(), b"hello");
        let long = host_answering(b"hello, and more").await;
        let e = hosts.get_range(&long, &id, &grant, 10..15).await.expect_err("more than asked");
        assert!(matches!(&e, TransferError::Refused(m) if m.contains("more than the 5 bytes")), "{e}");
        let short = host_answering(b"hel").await;
        let e = hosts.get_range(&short, &id, &grant, 10..15).await.expect_err("fewer than asked");
        assert!(matches!(&e, TransferError::Refused(m) if m.contains("sent 3 bytes for a 5-byte range")), "{e}");
    }
}
