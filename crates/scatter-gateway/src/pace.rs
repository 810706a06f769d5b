//! What a request's body may make the gateway hold, and for how long.
//!
//! Every body must keep moving: a client the gateway waits on longer than a grace period plus
//! the time its bytes so far would take at [`MIN_RATE`], or for [`MOST_STALL`] at a stretch, is
//! cut off (`RequestTimeout`). Only the time the gateway spends waiting for the client counts,
//! not the time it lets the body wait while the pipeline is busy. A body that is not an
//! object's or a part's data (the XML of a batch delete or of a completed upload) is at most
//! [`XML_MOST`] long, and those bodies share [`XML_BUDGET`], one profile at most half of it,
//! charged once the signature is verified and before the body is read ([`XmlAccess`]): s3s
//! reads them whole before any handler sees them, so without these bounds any key could pin
//! 20 MiB per connection. s3s then builds every element of such a body before any handler
//! sees it (a part of a completed upload takes about 300 bytes, from as little as `<Part/>`):
//! each element is charged [`TAG_COST`] more of the same turn as its bytes arrive, and a body
//! whose elements go past what its profile may hold is refused there.
//!
//! An aws-chunked body (`x-amz-content-sha256: STREAMING-…`) is read by s3s a whole chunk at
//! a time, however long the chunk says it is, before any of it reaches a handler: its chunks
//! are held to [`MOST_CHUNK`] and its bytes to what its declared decoded length needs with
//! the framing ([`framed_most`]), so that what it makes the gateway hold is what the write
//! budget counts it for.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The client's time before the rate counts.
const GRACE: Duration = Duration::from_secs(10);
/// The least a body must average, counted over the time the gateway waits for it.
pub const MIN_RATE: u64 = 16 << 10;
/// The longest the gateway waits for a body's next bytes, whatever came before.
pub const MOST_STALL: Duration = Duration::from_secs(30);
/// The longest body that is not data: a batch delete of 1,000 keys of 1,024 characters, each
/// escaped as XML, or the completion of an upload of 10,000 parts, are well within it.
pub const XML_MOST: u64 = 8 << 20;
/// The bytes that such bodies, and what s3s builds of them, may take at once, in all.
const XML_BUDGET: u64 = 128 << 20;
/// What one element of an XML body (counted by its `<`s) may make s3s hold, at most: a
/// completed upload's part, the largest, takes about 300 bytes as s3s builds it, and its
/// list may be copied as it grows. The completion of 10,000 parts, each with its number, ETag
/// and a checksum (80,000 `<`s), is charged 30 MiB, which a write-only key's part holds.
const TAG_COST: u64 = 384;
/// The least an XML body's turn grows by when its elements need more.
const GROW_KIB: u32 = 256;

/// The longest chunk of an aws-chunked body: SDKs send 64 KiB to 1 MiB.
pub const MOST_CHUNK: u64 = 8 << 20;

/// The most bytes an aws-chunked body of `decoded` bytes may take with its framing: a chunk
/// header of up to about 90 bytes for every chunk of at least 8 KiB (S3's smallest but the
/// last), and the trailers.
pub fn framed_most(decoded: u64) -> u64 {
    decoded.saturating_add(decoded / 64).saturating_add(64 << 10)
}

/// What the body reports when it is cut off; the handlers answer `RequestTimeout`.
pub const TOO_SLOW: &str = "the request body arrived too slowly and was cut off";

/// The shared budget of [`XML_BUDGET`], in KiB, of which one profile holds at most half, and
/// its write-only keys (its appenders') together at most half of that: one profile's stalled
/// XML cannot make another's completions wait, nor its appenders' its owner's.
#[derive(Clone)]
pub struct XmlBudget {
    all: Arc<tokio::sync::Semaphore>,
    per_profile: Arc<std::sync::Mutex<HashMap<String, Arc<XmlShare>>>>,
}

/// One profile's half of the [`XmlBudget`], and the part of it its write-only keys share.
struct XmlShare {
    half: Arc<tokio::sync::Semaphore>,
    write_only: Arc<tokio::sync::Semaphore>,
}

/// A turn in the [`XmlBudget`], given back when dropped; it grows as a body's elements
/// arrive ([`XmlTurn::grow`]).
pub struct XmlTurn {
    /// The semaphores it takes from: the profile's write-only part (for a write-only key),
    /// the profile's half, the whole.
    from: Vec<Arc<tokio::sync::Semaphore>>,
    held: std::sync::Mutex<Vec<tokio::sync::OwnedSemaphorePermit>>,
}

impl XmlTurn {
    /// Takes `kib` KiB more, from every semaphore of the turn, or nothing if one of them
    /// lacks it.
    fn grow(&self, kib: u32) -> bool {
        let mut taken = Vec::with_capacity(self.from.len());
        for semaphore in &self.from {
            match semaphore.clone().try_acquire_many_owned(kib) {
                Ok(permit) => taken.push(permit),
                Err(_) => return false,
            }
        }
        self.held.lock().unwrap_or_else(|p| p.into_inner()).extend(taken);
        true
    }
}

/// Where the middleware's [`Paced`] body finds the turn [`XmlAccess`] took for it, once the
/// signature is checked (in the request's extensions).
#[derive(Clone, Default)]
pub struct XmlTurnSlot(Arc<std::sync::OnceLock<Arc<XmlTurn>>>);

impl Default for XmlBudget {
    fn default() -> Self {
        Self::new()
    }
}

impl XmlBudget {
    /// A budget of [`XML_BUDGET`].
    pub fn new() -> Self {
        Self { all: Arc::new(tokio::sync::Semaphore::new((XML_BUDGET >> 10) as usize)), per_profile: Arc::default() }
    }

    /// A turn for `kib` KiB of profile `key`'s XML (sent with a `write_only` key or not), or
    /// none if its part, its half or the whole is taken.
    fn turn(&self, key: &str, write_only: bool, kib: u32) -> Option<XmlTurn> {
        let share = {
            let mut per_profile = self.per_profile.lock().unwrap_or_else(|p| p.into_inner());
            let half = (XML_BUDGET >> 11) as usize;
            per_profile
                .entry(key.to_owned())
                .or_insert_with(|| {
                    Arc::new(XmlShare {
                        half: Arc::new(tokio::sync::Semaphore::new(half)),
                        write_only: Arc::new(tokio::sync::Semaphore::new(half / 2)),
                    })
                })
                .clone()
        };
        // A body of at most XML_MOST fits in the write-only keys' part on its own.
        let mut from = Vec::with_capacity(3);
        if write_only {
            from.push(share.write_only.clone());
        }
        from.extend([share.half.clone(), self.all.clone()]);
        let turn = XmlTurn { from, held: Default::default() };
        turn.grow(kib).then_some(turn)
    }
}

/// s3s's access check, which runs once a request's signature is verified and before its body
/// is read: a body that is not data takes its turn in the [`XmlBudget`] here, charged to the
/// profile of the key that signed it (a key merely named in a request, before its signature
/// is checked, could be anyone's; and one profile's keys together get one share). The turn
/// lasts as long as the request.
pub struct XmlAccess(pub XmlBudget, pub crate::access::Keys);

#[async_trait::async_trait]
impl s3s::access::S3Access for XmlAccess {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> s3s::S3Result<()> {
        let Some(access) = cx.credentials().and_then(|c| self.1.access(&c.access_key)) else {
            return Err(s3s::s3_error!(
                AccessDenied,
                "the request is not signed with a gateway key; sign it with one (`scatter gateway key ls` lists them)"
            ));
        };
        let key = access.tenant.id.clone();
        if matches!(cx.s3_op().name(), "PutObject" | "UploadPart") {
            return Ok(());
        }
        let headers = cx.headers();
        let declared =
            headers.get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let length = match declared {
            Some(n) => n,
            None if headers.contains_key(axum::http::header::TRANSFER_ENCODING) => XML_MOST,
            None => 0,
        };
        if length == 0 {
            return Ok(());
        }
        let kib = length.min(XML_MOST).div_ceil(1 << 10) as u32;
        let turn = self.0.turn(&key, access.write_only, kib).ok_or_else(|| {
            s3s::s3_error!(SlowDown, "the gateway is reading as much of this profile's XML as it holds at once; retry")
        })?;
        let turn = Arc::new(turn);
        if let Some(slot) = cx.extensions_mut().get::<XmlTurnSlot>() {
            let _ = slot.0.set(turn.clone());
        }
        cx.extensions_mut().insert(turn);
        Ok(())
    }
}

/// Whether a request's body is an object's or a part's bytes (a PUT to a key, with no
/// subresource but a part's), rather than XML.
fn is_data(req: &axum::extract::Request) -> bool {
    let path = req.uri().path().trim_start_matches('/');
    let has_key = path.split_once('/').is_some_and(|(_, key)| !key.is_empty());
    let query = req.uri().query().unwrap_or_default();
    let plain = form_urlencoded::parse(query.as_bytes()).all(|(name, _)| {
        matches!(&*name, "partNumber" | "uploadId" | "x-id" | "AWSAccessKeyId" | "Signature" | "Expires")
            || name.starts_with("X-Amz-")
    });
    req.method() == axum::http::Method::PUT && has_key && plain
}

fn refusal(status: axum::http::StatusCode, code: &str, message: &str) -> axum::response::Response {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    axum::response::Response::builder()
        .status(status)
        .header(axum::http::header::CONTENT_TYPE, "application/xml")
        .body(Body::from(xml))
        .unwrap_or_default()
}

/// The middleware: paces every body, and refuses a body that is not data and is declared
/// longer than [`XML_MOST`] before a byte of it is read.
pub async fn bounded_bodies(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    // A browser's form upload (PostObject) is not served, and s3s would read and parse its
    // body before checking who sent it, rescanning it whole as each piece arrives.
    let form = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"));
    if req.method() == axum::http::Method::POST && form {
        return refusal(
            axum::http::StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "form uploads (POST Object) are not served; use PUT",
        );
    }
    // s3s reads these once, as text: a second value, or one that is not text, would make the
    // bounds below see another request than s3s does (a first value s3s skips would hide an
    // aws-chunked body from them).
    for name in ["x-amz-content-sha256", "x-amz-decoded-content-length"] {
        let mut values = req.headers().get_all(name).iter();
        let first = values.next();
        if values.next().is_some() || first.is_some_and(|v| v.to_str().is_err()) {
            let message = format!("{name} must be given once, as text");
            return refusal(axum::http::StatusCode::BAD_REQUEST, "InvalidArgument", &message);
        }
    }
    let data = is_data(&req);
    if !data {
        let declared = req.headers().get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok());
        match declared.map(str::parse::<u64>) {
            Some(Err(_)) => {
                return refusal(
                    axum::http::StatusCode::BAD_REQUEST,
                    "InvalidArgument",
                    "Content-Length is not a number",
                )
            }
            Some(Ok(n)) if n > XML_MOST => {
                return refusal(
                    axum::http::StatusCode::BAD_REQUEST,
                    "MaxMessageLengthExceeded",
                    "the request's XML is longer than 8 MiB",
                )
            }
            _ => {}
        }
    }
    let streaming = req
        .headers()
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("STREAMING-"));
    let limit = if !data {
        Some((XML_MOST, "the request's XML is longer than 8 MiB"))
    } else if streaming {
        // s3s refuses a streaming body without a decoded length, and reads one with trailing
        // junk by its leading digits: only a plain number is taken, so the bound and s3s agree.
        match req.headers().get("x-amz-decoded-content-length").map(|v| v.to_str().map(str::parse::<u64>)) {
            Some(Ok(Ok(d))) => {
                Some((framed_most(d), "the aws-chunked body is longer than its x-amz-decoded-content-length"))
            }
            Some(_) => {
                return refusal(
                    axum::http::StatusCode::BAD_REQUEST,
                    "InvalidArgument",
                    "x-amz-decoded-content-length is not a number",
                )
            }
            None => None,
        }
    } else {
        None
    };
    let chunks = streaming.then(Chunks::default);
    let mut req = req;
    let elements = (!data).then(|| {
        let slot = XmlTurnSlot::default();
        req.extensions_mut().insert(slot.clone());
        Elements { slot, tags: 0, charged: 0 }
    });
    next.run(req.map(|body| Body::new(Paced::new(body, limit, chunks, elements)))).await
}

/// What an XML body refused for its elements reports.
pub const TOO_MANY_ELEMENTS: &str =
    "the request's XML holds more elements than the gateway parses at once for this profile; retry, or send fewer";

/// An XML body's elements, counted as they arrive and charged to its turn.
struct Elements {
    slot: XmlTurnSlot,
    /// `<`s seen.
    tags: u64,
    /// KiB the turn grew by for them.
    charged: u64,
}

impl Elements {
    /// Counts the elements of `bytes`, growing the turn as they need; false if it cannot.
    fn follow(&mut self, bytes: &[u8]) -> bool {
        self.tags += bytes.iter().filter(|&&b| b == b'<').count() as u64;
        let need = (self.tags * TAG_COST).div_ceil(1 << 10);
        if need <= self.charged {
            return true;
        }
        // No turn: no access check charged this body (an object's data under a query the
        // data test does not know), so s3s does not parse it as XML.
        let Some(turn) = self.slot.0.get() else { return true };
        let more = u32::try_from(need - self.charged).unwrap_or(u32::MAX).max(GROW_KIB);
        if !turn.grow(more) {
            return false;
        }
        self.charged += u64::from(more);
        true
    }
}

/// Follows an aws-chunked body's framing as it arrives, to refuse a chunk longer than
/// [`MOST_CHUNK`] at its header, before s3s gathers it.
#[derive(Debug, Default)]
struct Chunks {
    /// The chunk header read so far (empty in a chunk's data).
    header: Vec<u8>,
    /// Bytes of the current chunk's data and its CRLF still to come.
    left: u64,
    /// The last chunk (size 0) was seen: the trailers follow.
    done: bool,
}

/// The longest chunk header: the size, `;chunk-signature=` and 64 hex digits, with room.
const MOST_CHUNK_HEADER: usize = 1024;

impl Chunks {
    /// Follows `bytes`; an error names what is wrong with the framing.
    fn follow(&mut self, mut bytes: &[u8]) -> Result<(), &'static str> {
        while !bytes.is_empty() && !self.done {
            if self.left > 0 {
                let n = self.left.min(bytes.len() as u64);
                self.left -= n;
                bytes = &bytes[n as usize..];
                continue;
            }
            let Some(end) = bytes.iter().position(|&b| b == b'\n') else {
                self.header.extend_from_slice(bytes);
                if self.header.len() > MOST_CHUNK_HEADER {
                    return Err("an aws-chunked chunk header is too long");
                }
                return Ok(());
            };
            self.header.extend_from_slice(&bytes[..end]);
            bytes = &bytes[end + 1..];
            let line = std::mem::take(&mut self.header);
            if line.len() > MOST_CHUNK_HEADER {
                return Err("an aws-chunked chunk header is too long");
            }
            let size = line.split(|&b| b == b';' || b == b'\r').next().unwrap_or_default();
            let size = std::str::from_utf8(size)
                .ok()
                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
                .ok_or("an aws-chunked chunk header has no size")?;
            if size > MOST_CHUNK {
                return Err("an aws-chunked chunk is longer than 8 MiB; send smaller chunks");
            }
            if size == 0 {
                self.done = true;
            } else {
                self.left = size + 2;
            }
        }
        Ok(())
    }
}

/// A request body cut off when the client falls behind (see the module's documentation), or
/// when it goes past `limit` bytes.
struct Paced {
    inner: Body,
    /// The most bytes, and what to say past them.
    limit: Option<(u64, &'static str)>,
    /// An aws-chunked body's framing, followed.
    chunks: Option<Chunks>,
    /// An XML body's elements, counted.
    elements: Option<Elements>,
    received: u64,
    /// The time spent waiting for the client, before the current wait.
    waited: Duration,
    /// When the current wait began.
    waiting_since: Option<Instant>,
    timer: Pin<Box<Sleep>>,
}

impl Paced {
    fn new(
        inner: Body,
        limit: Option<(u64, &'static str)>,
        chunks: Option<Chunks>,
        elements: Option<Elements>,
    ) -> Self {
        let now = Instant::now();
        Self {
            inner,
            limit,
            chunks,
            elements,
            received: 0,
            waited: Duration::ZERO,
            waiting_since: None,
            timer: Box::pin(tokio::time::sleep_until(now)),
        }
    }

    /// How much longer the gateway may wait for the client, from the start of a wait.
    fn allowance(&self) -> Duration {
        let earned = GRACE + Duration::from_secs_f64(self.received as f64 / MIN_RATE as f64);
        earned.saturating_sub(self.waited).min(MOST_STALL)
    }
}

fn failure(message: &str) -> axum::Error {
    axum::Error::new(std::io::Error::new(std::io::ErrorKind::TimedOut, message.to_owned()))
}

impl http_body::Body for Paced {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let now = Instant::now();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(since) = this.waiting_since.take() {
                    this.waited += now - since;
                }
                if let Some(data) = frame.as_ref().and_then(|f| f.as_ref().ok()).and_then(Frame::data_ref) {
                    this.received += data.len() as u64;
                    if let Some((_, why)) = this.limit.filter(|(most, _)| this.received > *most) {
                        return Poll::Ready(Some(Err(failure(why))));
                    }
                    if let Some(Err(why)) = this.chunks.as_mut().map(|c| c.follow(data)) {
                        return Poll::Ready(Some(Err(failure(why))));
                    }
                    if this.elements.as_mut().is_some_and(|e| !e.follow(data)) {
                        return Poll::Ready(Some(Err(failure(TOO_MANY_ELEMENTS))));
                    }
                }
                Poll::Ready(frame)
            }
            Poll::Pending => {
                let since = *this.waiting_since.get_or_insert(now);
                let deadline = since + this.allowance();
                if now >= deadline {
                    return Poll::Ready(Some(Err(failure(TOO_SLOW))));
                }
                if this.timer.deadline() != deadline {
                    this.timer.as_mut().reset(deadline);
                }
                if this.timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(failure(TOO_SLOW))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profiles_write_only_keys_leave_its_owner_xml_room() {
        let budget = XmlBudget::new();
        let most = (XML_MOST >> 10) as u32;
        let quarter = (XML_BUDGET / 4 / XML_MOST) as usize;
        let turns =
            |write_only| (0..quarter).map(|_| budget.turn("A", write_only, most).expect("turn")).collect::<Vec<_>>();
        // An appender's stalled bodies take their part (a quarter of the whole)...
        let appenders = turns(true);
        assert!(budget.turn("A", true, 1).is_none(), "write-only keys took more than their part");
        // ... and the owner still completes its uploads.
        let owner = turns(false);
        assert!(budget.turn("A", false, 1).is_none(), "a profile took more than its half");
        assert!(budget.turn("B", false, most).is_some(), "another profile's turn");
        drop((appenders, owner));
        assert!(budget.turn("A", true, most).is_some());
    }

    #[test]
    fn an_xml_bodys_elements_are_charged_to_its_turn() {
        let budget = XmlBudget::new();
        let slot = XmlTurnSlot::default();
        let mut elements = Elements { slot: slot.clone(), tags: 0, charged: 0 };
        // Before a turn is taken nothing is charged (no access check: not parsed as XML).
        assert!(elements.follow(b"<a/><a/>") && elements.charged == 0);
        let turn = Arc::new(budget.turn("A", true, 1).expect("turn"));
        assert!(slot.0.set(turn).is_ok());
        // The completion of 10,000 parts, each with its number, ETag and a checksum, fits
        // in a write-only key's part...
        let part = b"<Part><PartNumber>1</PartNumber><ETag>e</ETag><ChecksumCRC32>c</ChecksumCRC32></Part>";
        for _ in 0..10_000 {
            assert!(elements.follow(part), "a part of a completion of 10,000 was refused");
        }
        // ... and as many elements again are refused, whatever their bytes.
        assert!(!(0..10_000).all(|_| elements.follow(b"<Part/><Part/><Part/><Part/><Part/><Part/><Part/><Part/>")));
        // What was charged goes back with the turn.
        drop((elements, slot));
        assert!(budget.turn("A", true, (XML_BUDGET >> 12) as u32).is_some(), "the part is whole again");
    }

    use futures::StreamExt;
    use http_body_util::BodyExt;

    /// A body fed by the returned sender, paced.
    fn paced(limit: Option<u64>) -> (tokio::sync::mpsc::Sender<Bytes>, Paced) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let stream =
            futures::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx)) },
            );
        (
            tx,
            Paced::new(
                Body::from_stream(stream.boxed()),
                limit.map(|l| (l, "the request's XML is longer than 8 MiB")),
                None,
                None,
            ),
        )
    }

    #[test]
    fn aws_chunked_framing_is_followed_across_pieces_and_a_long_chunk_refused() {
        let body = b"400;chunk-signature=abc\r\n".iter().copied().chain([7u8; 0x400]).chain(*b"\r\n");
        let body: Vec<u8> = body.chain(*b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n").collect();
        // Whole, and split at every byte.
        for step in [body.len(), 1, 7] {
            let mut c = Chunks::default();
            for piece in body.chunks(step) {
                c.follow(piece).expect("well framed");
            }
            assert!(c.done, "step {step}");
        }
        let mut c = Chunks::default();
        assert!(c.follow(b"800000\r\n").is_ok(), "8 MiB is allowed");
        let mut c = Chunks::default();
        let err = c.follow(b"800001;chunk-signature=").and_then(|_| c.follow(b"00\r\n")).expect_err("too long");
        assert!(err.contains("longer than 8 MiB"), "{err}");
        assert!(Chunks::default().follow(b"zz\r\n").is_err(), "no size");
        assert!(Chunks::default().follow(&[b'1'; 2000]).is_err(), "a header without end");
        assert!(Chunks::default().follow(b"ffffffffffffffffffff\r\n").is_err(), "a size past 64 bits");
    }

    #[test]
    fn a_framed_body_may_take_its_chunk_headers_and_no_more() {
        // 1 MiB in 8 KiB chunks, each with a signed chunk's header (about 85 bytes).
        let decoded = 1u64 << 20;
        let framed = decoded + (decoded / 8192) * 87 + 200;
        assert!(framed <= framed_most(decoded));
        assert!(framed_most(decoded) <= decoded + decoded / 8, "what s3s may gather stays near what is counted");
        assert_eq!(framed_most(u64::MAX), u64::MAX);
    }

    async fn next(body: &mut Paced) -> Option<Result<Frame<Bytes>, axum::Error>> {
        body.frame().await
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_is_cut_off_after_the_grace() {
        let (_tx, mut body) = paced(None);
        let started = Instant::now();
        let err = next(&mut body).await.expect("an answer").expect_err("cut off");
        assert!(err.to_string().contains(TOO_SLOW), "{err}");
        assert_eq!(started.elapsed(), GRACE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_at_the_minimum_rate_goes_on_and_a_long_stall_ends_it() {
        let (tx, mut body) = paced(None);
        // 60 s at twice the minimum rate, then nothing (the sender stays open).
        let sender = tokio::spawn(async move {
            for _ in 0..120 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                tx.send(Bytes::from(vec![0u8; MIN_RATE as usize])).await.expect("send");
            }
            tx
        });
        for _ in 0..120 {
            next(&mut body).await.expect("a frame").expect("a body at twice the minimum rate was cut off");
        }
        let last = Instant::now();
        let _tx = sender.await.expect("sender");
        // However much it sent before, a stall ends it after MOST_STALL.
        let err = next(&mut body).await.expect("an answer").expect_err("cut off");
        assert!(err.to_string().contains(TOO_SLOW), "{err}");
        assert_eq!(last.elapsed(), MOST_STALL);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_slower_than_the_minimum_rate_is_cut_off() {
        let (tx, mut body) = paced(None);
        // A quarter of the minimum rate, from a client the gateway waits on all along.
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if tx.send(Bytes::from(vec![0u8; MIN_RATE as usize / 4])).await.is_err() {
                    return;
                }
            }
        });
        let started = Instant::now();
        let err = loop {
            match next(&mut body).await.expect("an answer") {
                Ok(_) => assert!(started.elapsed() < Duration::from_secs(100), "never cut off"),
                Err(e) => break e,
            }
        };
        assert!(err.to_string().contains(TOO_SLOW), "{err}");
        // 10 s of grace, then a quarter of each second is earned: cut off after about 13 s.
        assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn xml_past_its_limit_is_refused() {
        let (tx, mut body) = paced(Some(10));
        tx.send(Bytes::from_static(b"0123456789")).await.expect("send");
        next(&mut body).await.expect("a frame").expect("within the limit");
        tx.send(Bytes::from_static(b"x")).await.expect("send");
        let err = next(&mut body).await.expect("an answer").expect_err("refused");
        assert!(err.to_string().contains("longer than 8 MiB"), "{err}");
    }
}
