//! Request bodies into the put pipeline and object bytes out to responses, both through
//! small bounded channels so memory stays flat whatever the size.

use std::io::Read;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use md5::Digest;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::Checksum as _;
use s3s::dto::Checksum;

/// Body pieces buffered between the network and the chunker.
const DEPTH: usize = 8;

/// Which checksums a client asked to be checked (by value, header or trailer).
#[derive(Debug, Clone, Copy, Default)]
pub struct Wanted {
    /// CRC32.
    pub crc32: bool,
    /// CRC32C.
    pub crc32c: bool,
    /// CRC64/NVME.
    pub crc64nvme: bool,
    /// SHA-1.
    pub sha1: bool,
    /// SHA-256.
    pub sha256: bool,
}

/// What was computed over a body once it ended.
#[derive(Debug, Default, Clone)]
pub struct Sums {
    /// MD5 in hex: the ETag.
    pub md5: String,
    /// The checksums asked for, base64 as S3 writes them.
    pub checksums: Checksum,
    /// Bytes.
    pub len: u64,
}

/// Where the sums appear once the body has ended.
pub type SumsSlot = Arc<Mutex<Option<Sums>>>;

/// A blocking reader over a body stream, for the put pipeline's chunker thread. MD5 and
/// the checksums asked for are computed on the way, apart from the chunker; they are in
/// the returned slot before the reader sees the end. A body that goes on past its declared
/// `length` fails the read at once, with [`std::io::ErrorKind::InvalidData`]: the gateway
/// sized the body's share of memory by it.
pub fn reader<S, E>(stream: S, wanted: Wanted, length: Option<u64>) -> (BodyReader, SumsSlot)
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::fmt::Display + Send,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(DEPTH);
    let slot: SumsSlot = Arc::default();
    let out = slot.clone();
    tokio::spawn(async move {
        let mut summer = Summer::new(wanted, length);
        let mut stream = std::pin::pin!(stream);
        while let Some(piece) = stream.next().await {
            let piece = match piece.map_err(failed).and_then(|p| summer.add(p)) {
                Ok(p) => p,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            if tx.send(Ok(piece)).await.is_err() {
                return;
            }
        }
        // Before the end is seen: whoever reads to the end finds the sums.
        *out.lock().unwrap_or_else(|p| p.into_inner()) = Some(summer.finish());
    });
    (BodyReader { rx, piece: Bytes::new() }, slot)
}

/// A whole body of at most `length` bytes in memory, with its sums: for small objects,
/// which are stored in batches rather than streamed. Fails as [`reader`]'s reads do.
pub async fn collect<S, E>(stream: S, wanted: Wanted, length: u64) -> std::io::Result<(Vec<u8>, Sums)>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let mut summer = Summer::new(wanted, Some(length));
    let mut data = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
    let mut stream = std::pin::pin!(stream);
    while let Some(piece) = stream.next().await {
        data.extend_from_slice(&summer.add(piece.map_err(failed)?)?);
    }
    Ok((data, summer.finish()))
}

/// How s3s says a chunk of a signed aws-chunked body is not signed by the request's key (its
/// error type is private, so only its text tells).
const CHUNK_SIGNATURE_MISMATCH: &str = "AwsChunkedStreamError: SignatureMismatch";

/// A body's failure as a read error: [`std::io::ErrorKind::TimedOut`] when the gateway cut
/// it off for its pace, [`std::io::ErrorKind::PermissionDenied`] when a chunk's signature
/// did not match, [`std::io::ErrorKind::UnexpectedEof`] when the client ended it.
fn failed(e: impl std::fmt::Display) -> std::io::Error {
    let message = format!("the request body failed: {e}");
    let kind = if message.contains(crate::pace::TOO_SLOW) {
        std::io::ErrorKind::TimedOut
    } else if message.contains(CHUNK_SIGNATURE_MISMATCH) {
        std::io::ErrorKind::PermissionDenied
    } else {
        std::io::ErrorKind::UnexpectedEof
    };
    std::io::Error::new(kind, message)
}

/// MD5, the checksums asked for and the length of a body, piece by piece.
struct Summer {
    md5: md5::Md5,
    sums: ChecksumHasher,
    len: u64,
    length: Option<u64>,
}

impl Summer {
    fn new(wanted: Wanted, length: Option<u64>) -> Self {
        Self { md5: md5::Md5::new(), sums: hasher(wanted), len: 0, length }
    }

    /// Adds `piece`, or fails with [`std::io::ErrorKind::InvalidData`] once the body goes
    /// past its declared length.
    fn add(&mut self, piece: Bytes) -> std::io::Result<Bytes> {
        self.md5.update(&piece);
        self.sums.update(&piece);
        self.len += piece.len() as u64;
        if self.length.is_some_and(|l| self.len > l) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the request body is longer than its Content-Length",
            ));
        }
        Ok(piece)
    }

    fn finish(self) -> Sums {
        Sums { md5: hex::encode(self.md5.finalize()), checksums: self.sums.finalize(), len: self.len }
    }
}

fn hasher(w: Wanted) -> ChecksumHasher {
    let mut h = ChecksumHasher::default();
    if w.crc32 {
        h.crc32 = Some(s3s::crypto::Crc32::new());
    }
    if w.crc32c {
        h.crc32c = Some(s3s::crypto::Crc32c::new());
    }
    if w.crc64nvme {
        h.crc64nvme = Some(s3s::crypto::Crc64Nvme::new());
    }
    if w.sha1 {
        h.sha1 = Some(s3s::crypto::Sha1::new());
    }
    if w.sha256 {
        h.sha256 = Some(s3s::crypto::Sha256::new());
    }
    h
}

/// See [`reader`].
pub struct BodyReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    piece: Bytes,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.piece.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(p)) => self.piece = p,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.piece.len());
        buf[..n].copy_from_slice(&self.piece[..n]);
        let _ = self.piece.split_to(n);
        Ok(n)
    }
}

/// Bytes for a response body, fed by a task through a bounded channel.
pub struct Outgoing(tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>);

impl Outgoing {
    /// A body and the sender that fills it; the sender's task stops when the client goes.
    pub fn channel() -> (tokio::sync::mpsc::Sender<std::io::Result<Bytes>>, Self) {
        let (tx, rx) = tokio::sync::mpsc::channel(DEPTH);
        (tx, Self(rx))
    }
}

impl Stream for Outgoing {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn a_body_reads_in_order_with_its_sums() {
        let pieces: Vec<Result<Bytes, std::io::Error>> =
            vec![Ok(Bytes::from_static(b"hello ")), Ok(Bytes::from_static(b"")), Ok(Bytes::from_static(b"world"))];
        let (mut r, slot) =
            reader(futures::stream::iter(pieces), Wanted { crc32: true, ..Default::default() }, Some(11));
        let got = tokio::task::spawn_blocking(move || {
            let mut v = Vec::new();
            r.read_to_end(&mut v).map(|_| v)
        })
        .await
        .expect("join")
        .expect("read");
        assert_eq!(got, b"hello world");
        let sums = slot.lock().expect("lock").clone().expect("sums before the end");
        assert_eq!(sums.md5, "5eb63bbbe01eeed093cb22bb8f5acdc3");
        assert_eq!(sums.checksums.checksum_crc32.as_deref(), Some("DUoRhQ=="));
        assert_eq!(sums.len, 11);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_failing_body_fails_the_read_and_leaves_no_sums() {
        let pieces: Vec<Result<Bytes, std::io::Error>> =
            vec![Ok(Bytes::from_static(b"part")), Err(std::io::Error::other("cut"))];
        let (mut r, slot) = reader(futures::stream::iter(pieces), Wanted::default(), None);
        let res = tokio::task::spawn_blocking(move || {
            let mut v = Vec::new();
            r.read_to_end(&mut v)
        })
        .await
        .expect("join");
        assert!(res.is_err());
        assert!(slot.lock().expect("lock").is_none());
    }

    #[tokio::test]
    async fn a_small_body_is_collected_with_its_sums_and_held_to_its_length() {
        let pieces = || {
            let v: Vec<Result<Bytes, std::io::Error>> =
                vec![Ok(Bytes::from_static(b"hello ")), Ok(Bytes::from_static(b"world"))];
            futures::stream::iter(v)
        };
        let (data, sums) =
            collect(pieces(), Wanted { crc32: true, ..Default::default() }, 11).await.expect("collected");
        assert_eq!(data, b"hello world");
        assert_eq!(sums.md5, "5eb63bbbe01eeed093cb22bb8f5acdc3");
        assert_eq!(sums.checksums.checksum_crc32.as_deref(), Some("DUoRhQ=="));
        assert_eq!(sums.len, 11);
        // Longer than declared: refused as it goes past, not held.
        let e = collect(pieces(), Wanted::default(), 8).await.expect_err("past its length");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
        // Shorter than declared: collected, and the length tells (the caller refuses it).
        let (_, sums) = collect(pieces(), Wanted::default(), 64).await.expect("collected");
        assert_eq!(sums.len, 11);
        // Ended by the client.
        let cut: Vec<Result<Bytes, std::io::Error>> =
            vec![Ok(Bytes::from_static(b"he")), Err(std::io::Error::other("cut"))];
        let e = collect(futures::stream::iter(cut), Wanted::default(), 11).await.expect_err("cut off");
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    }

    /// A body that claims to be short and goes on is stopped at the claim, not read to its
    /// end: the claim is what its memory was counted by.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_body_longer_than_declared_fails_the_read() {
        let pieces = (0..8).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![7u8; 1 << 20])));
        let (mut r, slot) = reader(futures::stream::iter(pieces), Wanted::default(), Some(3 << 20));
        let res = tokio::task::spawn_blocking(move || {
            let mut v = Vec::new();
            r.read_to_end(&mut v).map(|_| v.len())
        })
        .await
        .expect("join");
        let e = res.expect_err("read past the declared length");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
        assert!(slot.lock().expect("lock").is_none());
    }
}
