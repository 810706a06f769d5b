//! The S3 operations, over the client pipeline of the profile an access key belongs to.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};
use scatter_client::batch::SMALL_OBJECT;
use scatter_client::put::{commit_manifest, put_stream, Committed, PutOptions};
use scatter_client::{ClientError, NoProgress};
use scatter_core::manifest::Manifest;
use scatter_proto::api::{AttributesTag, ErrorCode, DELEGATE_QUOTA};

use crate::access::{Access, Keys};
use crate::attrs::{multipart_etag, Attributes, MAX_CONTENT_TYPE, MAX_USER_METADATA};
use crate::body::{self, Outgoing, Wanted};
use crate::listing::{Entry, Query};
use crate::naming::{self, Named};
use crate::tenant::{tag_of, BucketState, Tenant, Writing};

/// Parts of a multipart upload other than the last must be at least this big.
const MIN_PART: u64 = 5 << 20;
/// The most parts an upload may have.
const MAX_PARTS: i32 = 10_000;
/// The most keys a listing page holds.
const MAX_PAGE: usize = 1000;

/// MiB the bodies being stored may take at once. Each body runs its own pipeline, whose
/// chunker, pack and parity buffers come to about three times the body, up to about 64 MiB.
/// More writers wait for a turn instead of growing memory without bound: 4 big bodies at
/// once, 10 of 8 MiB, 256 small ones (10 clients putting 64 MiB parts: 216 MiB peak RSS);
/// one profile at most half of that ([`Budget`]).
const WRITE_BUDGET_MIB: u32 = 256;

/// MiB the objects being read may take at once. A read holds up to three runs of a pack ahead
/// of the client, and what is queued for it, up to about 80 MiB (10 ranges of 64 MiB at once
/// peaked at 770 MiB): a read waits for its turn before it answers, and holds it until its
/// body is sent.
const READ_BUDGET_MIB: u32 = 256;

/// What a read of `length` bytes is counted as against [`READ_BUDGET_MIB`].
fn read_weight(length: u64) -> u32 {
    const MOST: u64 = READ_BUDGET_MIB as u64 / 4;
    length.div_ceil(1 << 20).clamp(1, MOST) as u32
}

/// What a body of `length` bytes (unknown: the most) is counted as against
/// [`WRITE_BUDGET_MIB`].
fn write_weight(length: Option<u64>) -> u32 {
    const MOST: u64 = WRITE_BUDGET_MIB as u64 / 4;
    length.map_or(MOST, |n| n.saturating_mul(3).div_ceil(1 << 20).clamp(1, MOST)) as u32
}

/// MiB shared by every profile, of which one profile's keys together hold at most half: one
/// profile's requests (a client that trickles its bodies or never reads its answers, an
/// appender's) cannot take every turn from the others. At most [`MOST_WAITING`] of one profile's
/// requests wait for a turn at once (beyond, `SlowDown`, which clients retry): a request
/// waiting counts as busy on its connection, so without a bound one key's waiting requests
/// could hold every connection the gateway serves. How long one waits is not bounded: a
/// client uploading big parts over a slow link may make its own next parts wait long.
/// A profile's write-only keys (its appenders') together hold at most half of its half, and
/// wait in a line of their own: their slow bodies cannot take every turn from its owner.
struct Budget {
    all: Arc<tokio::sync::Semaphore>,
    per_profile: std::sync::Mutex<HashMap<String, Arc<ProfileShare>>>,
    mib: u32,
}

/// One profile's half of a [`Budget`], and how many of its requests wait for a turn: its
/// own keys' and its write-only keys'.
struct ProfileShare {
    half: Arc<tokio::sync::Semaphore>,
    waiting: std::sync::atomic::AtomicUsize,
    /// The part of `half` the write-only keys may hold together.
    write_only: Arc<tokio::sync::Semaphore>,
    write_only_waiting: std::sync::atomic::AtomicUsize,
}

impl ProfileShare {
    fn waiting(&self, write_only: bool) -> &std::sync::atomic::AtomicUsize {
        if write_only {
            &self.write_only_waiting
        } else {
            &self.waiting
        }
    }
}

/// The most requests of one profile that wait for a turn at once.
const MOST_WAITING: usize = 32;

/// A turn in a [`Budget`], given back when dropped.
pub struct Turn {
    _write_only: Option<tokio::sync::OwnedSemaphorePermit>,
    _mine: tokio::sync::OwnedSemaphorePermit,
    _all: tokio::sync::OwnedSemaphorePermit,
}

impl Budget {
    fn new(mib: u32) -> Self {
        Self { all: Arc::new(tokio::sync::Semaphore::new(mib as usize)), per_profile: Default::default(), mib }
    }

    /// Waits until `weight` MiB fit in `profile`'s half (for a `write_only` key, in the part
    /// of it those keys share) and in the whole.
    async fn turn(&self, profile: &str, write_only: bool, weight: u32) -> S3Result<Turn> {
        let share = {
            let mut per_profile = self.per_profile.lock().unwrap_or_else(|p| p.into_inner());
            let half = (self.mib / 2) as usize;
            per_profile
                .entry(profile.to_owned())
                .or_insert_with(|| {
                    Arc::new(ProfileShare {
                        half: Arc::new(tokio::sync::Semaphore::new(half)),
                        waiting: Default::default(),
                        write_only: Arc::new(tokio::sync::Semaphore::new(half / 2)),
                        write_only_waiting: Default::default(),
                    })
                })
                .clone()
        };
        let busy = || s3_error!(SlowDown, "the gateway is busy with this profile's requests; retry");
        if share.waiting(write_only).fetch_add(1, std::sync::atomic::Ordering::AcqRel) >= MOST_WAITING {
            share.waiting(write_only).fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            return Err(busy());
        }
        let turn = async {
            let stopping = |_| s3_error!(ServiceUnavailable, "the gateway is stopping");
            // A body always fits on its own: no weight is above a quarter of the budget.
            let part = match write_only {
                true => Some(share.write_only.clone().acquire_many_owned(weight).await.map_err(stopping)?),
                false => None,
            };
            let mine = share.half.clone().acquire_many_owned(weight).await.map_err(stopping)?;
            let all = self.all.clone().acquire_many_owned(weight).await.map_err(stopping)?;
            Ok(Turn { _write_only: part, _mine: mine, _all: all })
        };
        // Counted out however the wait ends, the request dropped included.
        struct Waiting(Arc<ProfileShare>, bool);
        impl Drop for Waiting {
            fn drop(&mut self) {
                self.0.waiting(self.1).fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            }
        }
        let waiting = Waiting(share.clone(), write_only);
        let turn = turn.await;
        drop(waiting);
        turn
    }
}

/// The S3 service: access keys to what they may do.
pub struct Gateway {
    keys: Keys,
    writes: Budget,
    reads: Budget,
}

impl Gateway {
    /// A gateway for the access keys in force in `keys`.
    pub fn new(keys: Keys) -> Self {
        Self { keys, writes: Budget::new(WRITE_BUDGET_MIB), reads: Budget::new(READ_BUDGET_MIB) }
    }

    /// Waits until a read of `length` bytes fits in the read budget.
    async fn read_turn(&self, profile: &str, length: u64) -> S3Result<Turn> {
        self.reads.turn(profile, false, read_weight(length)).await
    }

    /// Waits until a body of `length` bytes, sent with `access`, fits in the write budget.
    async fn write_turn(&self, access: &Access, length: Option<u64>) -> S3Result<Turn> {
        self.writes.turn(&access.tenant.id, access.write_only, write_weight(length)).await
    }

    /// The access key a request is signed with (checked by then).
    fn access_key<T>(req: &S3Request<T>) -> Option<&str> {
        req.credentials.as_ref().map(|c| c.access_key.as_str())
    }

    fn access<T>(&self, req: &S3Request<T>) -> S3Result<Access> {
        let Some(c) = &req.credentials else {
            return Err(s3_error!(AccessDenied, "anonymous requests are not served; sign with a gateway key"));
        };
        self.keys.access(&c.access_key).ok_or_else(crate::unknown_key)
    }

    /// The access of a request that reads, lists or removes: not a write-only key's.
    fn reader<T>(&self, req: &S3Request<T>) -> S3Result<Access> {
        let a = self.access(req)?;
        if a.write_only {
            return Err(s3_error!(
                AccessDenied,
                "this key is write-only: it may put objects, not read, list or delete"
            ));
        }
        Ok(a)
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn timestamp(secs: u64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_secs(secs))
}

fn unix(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
}

fn etag(value: &str) -> ETag {
    ETag::Strong(value.to_owned())
}

/// A client error in S3's terms; `missing` is what an absent object means here.
fn s3(e: ClientError, missing: S3ErrorCode) -> S3Error {
    match &e {
        ClientError::Api { code: ErrorCode::NotFound, .. } => {
            let what = match missing {
                S3ErrorCode::NoSuchBucket => "The specified bucket does not exist.",
                S3ErrorCode::NoSuchUpload => "The specified multipart upload does not exist.",
                _ => "The specified key does not exist.",
            };
            S3Error::with_message(missing, what)
        }
        ClientError::Api { code: ErrorCode::Forbidden | ErrorCode::Quota | ErrorCode::Busy, .. } => {
            let code = match e {
                ClientError::Api { code: ErrorCode::Busy, .. } => S3ErrorCode::SlowDown,
                _ => S3ErrorCode::AccessDenied,
            };
            let mut refused = S3Error::with_message(code, e.to_string());
            // Kept for `for_write_only`, which must know a quota's or the uploads' refusal.
            refused.set_source(Box::new(e));
            refused
        }
        ClientError::Api { code: ErrorCode::Throttled, .. } => {
            S3Error::with_message(S3ErrorCode::SlowDown, e.to_string())
        }
        ClientError::Unreachable(_)
        | ClientError::Interrupted(_)
        | ClientError::Upload(_)
        | ClientError::Api { code: ErrorCode::TooFewHosts | ErrorCode::HostsLate | ErrorCode::Full, .. } => {
            S3Error::with_message(S3ErrorCode::ServiceUnavailable, e.to_string())
        }
        _ => S3Error::with_message(S3ErrorCode::InternalError, e.to_string()),
    }
}

/// What a request sent with `a`'s key may be told of its refusal: see [`for_write_only`].
fn told<T>(a: &Access, answer: S3Result<T>) -> S3Result<T> {
    match a.write_only {
        true => answer.map_err(for_write_only),
        false => answer,
    }
}

/// A refusal as a write-only key may hear it. Such a key is a delegate of the profile's owner,
/// and a delegate is told only that its owner's quota is used up or its uploads too many, not
/// the owner's figures, which puts of other sizes would measure to the byte; the coordinator
/// tells the gateway, which runs as the owner, everything.
fn for_write_only(e: S3Error) -> S3Error {
    let code = e.source().and_then(|s| s.downcast_ref::<ClientError>()).and_then(|c| match c {
        ClientError::Api { code, .. } => Some(*code),
        _ => None,
    });
    match code {
        Some(ErrorCode::Quota) => S3Error::with_message(S3ErrorCode::AccessDenied, DELEGATE_QUOTA),
        Some(ErrorCode::Busy) => S3Error::with_message(
            S3ErrorCode::SlowDown,
            "the account this key stores for has too many uploads under way; retry in a minute",
        ),
        _ => e,
    }
}

fn internal(e: ClientError) -> S3Error {
    s3(e, S3ErrorCode::InternalError)
}

fn check_names(bucket: &str, key: Option<&str>) -> S3Result<()> {
    naming::check_bucket(bucket).map_err(|m| S3Error::with_message(S3ErrorCode::InvalidBucketName, m))?;
    if let Some(key) = key {
        naming::check_key(key).map_err(|m| S3Error::with_message(S3ErrorCode::KeyTooLongError, m))?;
    }
    Ok(())
}

/// Keys one DeleteObjects request may name, as in S3.
const MAX_DELETE_KEYS: usize = 1000;

/// [`check_names`], and that the key's name fits the catalog once escaped and encrypted: a
/// key of 1,024 bytes of `/` or `%` is escaped to three times that, and was refused only by
/// the coordinator, as an internal error (which SDKs retry), and for a multipart upload only
/// at its completion, once every part had been sent.
fn check_key(t: &Tenant, bucket: &str, key: &str) -> S3Result<()> {
    check_names(bucket, Some(key))?;
    let stored = t.encrypt(&naming::object(bucket, key)).len();
    if stored > scatter_proto::api::MAX_OBJECT_NAME {
        return Err(S3Error::with_message(
            S3ErrorCode::KeyTooLongError,
            format!(
                "the key takes {stored} bytes once escaped and encrypted, more than the {} the catalog keeps; use a shorter key",
                scatter_proto::api::MAX_OBJECT_NAME
            ),
        ));
    }
    Ok(())
}

async fn bucket(t: &Tenant, name: &str) -> S3Result<Arc<BucketState>> {
    check_names(name, None)?;
    t.bucket(name).await.map_err(internal)?.ok_or_else(|| s3_error!(NoSuchBucket, "no bucket is named {name}"))
}

/// Attributes from a request's content type and `x-amz-meta-*`, within S3's limit.
fn attributes(content_type: Option<String>, metadata: Option<Metadata>) -> S3Result<Attributes> {
    let attrs = Attributes {
        content_type,
        metadata: metadata.unwrap_or_default().into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect(),
        ..Default::default()
    };
    if attrs.user_metadata_len() > MAX_USER_METADATA {
        return Err(s3_error!(MetadataTooLarge, "user metadata may take at most {MAX_USER_METADATA} bytes"));
    }
    if attrs.content_type.as_ref().is_some_and(|c| c.len() > MAX_CONTENT_TYPE) {
        return Err(s3_error!(InvalidArgument, "a Content-Type may be at most {MAX_CONTENT_TYPE} bytes"));
    }
    Ok(attrs)
}

/// Checks `If-Match`, `If-None-Match`, `If-Modified-Since` and `If-Unmodified-Since`
/// against an object, as RFC 9110 orders them.
fn preconditions(
    etag_now: &str,
    modified: u64,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let matches = |c: &ETagCondition| match c {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == etag_now,
    };
    if let Some(c) = if_match {
        if !matches(c) {
            return Err(s3_error!(PreconditionFailed, "If-Match does not match the object's ETag"));
        }
    } else if let Some(t) = if_unmodified_since {
        if modified as i64 > unix(t) {
            return Err(s3_error!(PreconditionFailed, "the object was modified since If-Unmodified-Since"));
        }
    }
    if let Some(c) = if_none_match {
        if matches(c) {
            return Err(s3_error!(NotModified));
        }
    } else if let Some(t) = if_modified_since {
        if modified as i64 <= unix(t) {
            return Err(s3_error!(NotModified));
        }
    }
    Ok(())
}

/// The checksums a request asks to be checked: by header value, by algorithm, or by the
/// trailer it announces.
fn wanted(headers: &http::HeaderMap, given: &Checksum, algorithm: Option<&ChecksumAlgorithm>) -> Wanted {
    let trailer = headers.get("x-amz-trailer").and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let algo = algorithm.map(|a| a.as_str().to_ascii_uppercase()).unwrap_or_default();
    let asked = |name: &str, value: &Option<String>| {
        value.is_some() || algo == name.to_ascii_uppercase() || trailer.contains(&format!("x-amz-checksum-{name}"))
    };
    Wanted {
        crc32: asked("crc32", &given.checksum_crc32),
        crc32c: asked("crc32c", &given.checksum_crc32c),
        crc64nvme: asked("crc64nvme", &given.checksum_crc64nvme),
        sha1: asked("sha1", &given.checksum_sha1),
        sha256: asked("sha256", &given.checksum_sha256),
    }
}

/// Compares the checksums computed over a body with those the client gave, as headers or
/// trailers; a mismatch is `BadDigest`. A checksum trailer must be what `x-amz-trailer`
/// (`announced`) said would come, and one announced must come: else the client's check
/// would silently not happen.
fn verify(
    given: &Checksum,
    trailers: Option<&http::HeaderMap>,
    announced: &[String],
    got: &Checksum,
    content_md5: Option<&str>,
    md5_hex: &str,
) -> S3Result<()> {
    let sent: Vec<String> = trailers
        .map(|t| {
            t.keys().map(|k| k.as_str().to_ascii_lowercase()).filter(|k| k.starts_with("x-amz-checksum-")).collect()
        })
        .unwrap_or_default();
    if let Some(extra) = sent.iter().find(|k| !announced.contains(k)) {
        return Err(s3_error!(InvalidRequest, "the trailer {extra} was sent, but x-amz-trailer did not announce it"));
    }
    if let Some(missing) = announced.iter().find(|k| !sent.contains(k)) {
        return Err(s3_error!(
            InvalidRequest,
            "x-amz-trailer announced {missing}, but the body's trailers did not carry it"
        ));
    }
    if let Some(b64) = content_md5 {
        use base64::Engine;
        let ok = base64::engine::general_purpose::STANDARD.decode(b64).ok().is_some_and(|m| hex::encode(m) == md5_hex);
        if !ok {
            return Err(s3_error!(BadDigest, "the Content-MD5 you specified did not match what was received"));
        }
    }
    let pairs = [
        ("crc32", &given.checksum_crc32, &got.checksum_crc32),
        ("crc32c", &given.checksum_crc32c, &got.checksum_crc32c),
        ("crc64nvme", &given.checksum_crc64nvme, &got.checksum_crc64nvme),
        ("sha1", &given.checksum_sha1, &got.checksum_sha1),
        ("sha256", &given.checksum_sha256, &got.checksum_sha256),
    ];
    for (name, header, computed) in pairs {
        let trailer = trailers
            .and_then(|t| t.get(format!("x-amz-checksum-{name}")))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let (Some(expected), Some(computed)) = (header.clone().or(trailer), computed) {
            if &expected != computed {
                return Err(s3_error!(BadDigest, "the {name} checksum you specified did not match what was received"));
            }
        }
    }
    Ok(())
}

/// A request body as a stream of bytes (an absent body is empty).
fn incoming(body: Option<StreamingBlob>) -> futures::stream::BoxStream<'static, Result<Bytes, String>> {
    match body {
        Some(b) => b.map(|r| r.map_err(|e| e.to_string())).boxed(),
        None => futures::stream::empty().boxed(),
    }
}

/// What a write does to an object already under its name.
#[derive(Debug, Clone, Copy)]
enum Existing {
    /// Replaces it (its space is released in the same commit).
    Replace,
    /// Refuses (`AccessDenied` for a write-only key, else `PreconditionFailed`): the
    /// coordinator commits only if the name is free, checked in the commit's transaction,
    /// so two writers cannot both win.
    Refuse {
        /// The writer's key is write-only.
        write_only: bool,
    },
    /// Adds a version beside it (a write-only key uploading a part again).
    Keep,
    /// Replaces it only if its latest version is still the one whose ETag matched
    /// (`If-Match`), checked in the commit's transaction: two writers cannot both win, and a
    /// key deleted and written again in the meantime is not taken for it.
    Matched {
        /// The tag of that version's sealed attributes.
        tag: AttributesTag,
    },
}

/// A write-only key touches only the multipart uploads it created: adding a part to another's
/// upload replaces the part of that number, completing it drops the parts it does not name,
/// and aborting it removes them all: each would be a delete.
fn own_upload(a: &Access, upload: &Attributes, caller: Option<&str>) -> S3Result<()> {
    if a.write_only && (upload.writer.is_none() || upload.writer.as_deref() != caller) {
        return Err(s3_error!(
            AccessDenied,
            "a write-only key may add to, complete or abort only the uploads it created"
        ));
    }
    Ok(())
}

/// The tag a write conditional on `e` (If-Match) names; an object without attributes (not
/// the gateway's) has no ETag a condition could have matched.
fn matched_tag(e: &Entry) -> S3Result<AttributesTag> {
    e.tag.ok_or_else(|| s3_error!(PreconditionFailed, "If-Match: the object has no ETag to match"))
}

/// A write-only key may not make a write conditional on an existing object's ETag: the answer
/// (written, PreconditionFailed, NoSuchKey) would tell it what it may not read.
fn no_condition_on_content(a: &Access, if_match: Option<&ETagCondition>) -> S3Result<()> {
    if a.write_only && if_match.is_some() {
        return Err(s3_error!(
            AccessDenied,
            "a write-only key may not use If-Match: it may not read the object it would compare with"
        ));
    }
    Ok(())
}

/// A write-only key's write to a key that has an object.
fn overwrite_refused() -> S3Error {
    s3_error!(AccessDenied, "a write-only key cannot overwrite an object")
}

impl Existing {
    /// How a write of `key` in bucket `b` by `a`, with these conditions, treats the object
    /// there now. Checked here against the bucket's index to fail fast; the commit checks a
    /// create, or the version matched, again, atomically. A write-only key's write is not
    /// checked here: refused before its body, a write to a taken name would answer otherwise
    /// than one to a free name whose body then fails its checks (a wrong `Content-MD5`), and
    /// the key could test names for nothing, leaving no trace. Its commit refuses it.
    async fn checked(
        a: &Access,
        b: &BucketState,
        key: &str,
        if_match: Option<&ETagCondition>,
        if_none_match: Option<&ETagCondition>,
    ) -> S3Result<Self> {
        if if_none_match.is_some_and(|c| !c.is_any()) {
            return Err(s3_error!(NotImplemented, "a write's If-None-Match can only be * (create only)"));
        }
        no_condition_on_content(a, if_match)?;
        if a.write_only {
            return Ok(Existing::Refuse { write_only: true });
        }
        let mut existing =
            if if_none_match.is_some() { Existing::Refuse { write_only: false } } else { Existing::Replace };
        match b.index.read().await.get(key) {
            Some(current) => {
                if let Some(taken) = existing.taken() {
                    return Err(taken);
                }
                if let Some(c) = if_match {
                    preconditions(&current.attrs.etag, current.modified, Some(c), None, None, None)?;
                    // With `If-None-Match: *` too, the create-only rule stands.
                    if matches!(existing, Existing::Replace) {
                        existing = Existing::Matched { tag: matched_tag(current)? };
                    }
                }
            }
            None if if_match.is_some() => return Err(s3_error!(NoSuchKey, "If-Match: there is no such object")),
            None => {}
        }
        Ok(existing)
    }

    fn options(self, base: &PutOptions) -> PutOptions {
        PutOptions {
            replace: matches!(self, Existing::Replace | Existing::Matched { .. }),
            exclusive: matches!(self, Existing::Refuse { .. }),
            if_attributes: match self {
                Existing::Matched { tag } => Some(tag),
                _ => None,
            },
            ..base.clone()
        }
    }

    /// The error of a refused write whose name is taken.
    fn taken(self) -> Option<S3Error> {
        match self {
            Existing::Refuse { write_only: true } => Some(overwrite_refused()),
            Existing::Refuse { write_only: false } => {
                Some(s3_error!(PreconditionFailed, "If-None-Match: * and an object already has this key"))
            }
            _ => None,
        }
    }

    /// A failed commit in S3's terms: a refused create whose name is taken is [`Self::taken`].
    async fn refused(self, t: &Tenant, name: &str, e: ClientError) -> S3Error {
        if let ClientError::Api { code: ErrorCode::Changed, .. } = &e {
            return s3_error!(PreconditionFailed, "If-Match: the object changed while this write was under way");
        }
        if let (Some(taken), ClientError::Api { code: ErrorCode::Forbidden, .. }) = (self.taken(), &e) {
            if matches!(t.stat(name).await, Ok(Some(_))) {
                return taken;
            }
        }
        internal(e)
    }
}

/// What a stored body came to.
struct Stored {
    size: u64,
    attrs: Attributes,
    checksums: Checksum,
    committed: Committed,
}

/// What a body is checked against before it is committed.
#[derive(Default)]
struct Checks {
    /// The checksums to compute.
    wanted: Wanted,
    /// The values given as headers.
    given: Checksum,
    /// Where values given as trailers appear once the body has ended.
    trailers: Option<s3s::TrailingHeaders>,
    /// `Content-MD5`.
    content_md5: Option<String>,
    /// The checksum trailers `x-amz-trailer` announces (lowercase names).
    announced: Vec<String>,
    /// Whether the request names a checksum algorithm (`x-amz-sdk-checksum-algorithm`, or
    /// `x-amz-checksum-algorithm`).
    algorithm: bool,
}

/// The checksum trailers a request's `x-amz-trailer` announces, lowercase.
fn announced(headers: &http::HeaderMap) -> Vec<String> {
    let list = headers.get("x-amz-trailer").and_then(|v| v.to_str().ok()).unwrap_or("");
    list.split(',').map(|n| n.trim().to_ascii_lowercase()).filter(|n| n.starts_with("x-amz-checksum-")).collect()
}

/// Refuses a request that names a checksum algorithm but gives no value, neither as a
/// header nor as an announced trailer (as S3 does): nothing would be checked.
fn checked_at_all(checks: &Checks) -> S3Result<()> {
    let g = &checks.given;
    let valued = [&g.checksum_crc32, &g.checksum_crc32c, &g.checksum_crc64nvme, &g.checksum_sha1, &g.checksum_sha256]
        .iter()
        .any(|v| v.is_some());
    if checks.algorithm && !valued && checks.announced.is_empty() {
        return Err(s3_error!(
            InvalidRequest,
            "x-amz-sdk-checksum-algorithm specified, but no corresponding x-amz-checksum-* or x-amz-trailer headers were found"
        ));
    }
    Ok(())
}

/// The [`Checks`] of a PutObject or UploadPart request (their inputs share the fields).
macro_rules! checks {
    ($req:expr) => {{
        let given = Checksum {
            checksum_crc32: $req.input.checksum_crc32.clone(),
            checksum_crc32c: $req.input.checksum_crc32c.clone(),
            checksum_crc64nvme: $req.input.checksum_crc64nvme.clone(),
            checksum_sha1: $req.input.checksum_sha1.clone(),
            checksum_sha256: $req.input.checksum_sha256.clone(),
            ..Default::default()
        };
        Checks {
            wanted: wanted(&$req.headers, &given, $req.input.checksum_algorithm.as_ref()),
            given,
            trailers: $req.trailing_headers.clone(),
            content_md5: $req.input.content_md5.clone(),
            announced: announced(&$req.headers),
            algorithm: $req.input.checksum_algorithm.is_some()
                || $req.headers.contains_key("x-amz-sdk-checksum-algorithm"),
        }
    }};
}

/// Stores a request body under `name` (plaintext gateway name), checking it against
/// `checks` before the commit: nothing is visible unless all of it arrived intact. A body of
/// at most [`SMALL_OBJECT`] bytes (by its Content-Length) is read whole and stored in a
/// batch with the small puts beside it; a bigger one streams through its own pipeline.
async fn store_body(
    t: &Tenant,
    name: &str,
    body: futures::stream::BoxStream<'static, Result<Bytes, String>>,
    expected: Option<u64>,
    checks: Checks,
    mut attrs: Attributes,
    existing: Existing,
) -> S3Result<Stored> {
    checked_at_all(&checks)?;
    let Checks { wanted, given, trailers, content_md5, announced, .. } = checks;
    let opts = existing.options(&t.put);
    let check = |sums: Option<body::Sums>, size: u64, attrs: &mut Attributes| {
        let Some(sums) = sums.filter(|s| s.len == size) else {
            return Err(s3_error!(IncompleteBody, "the request body ended before it was complete"));
        };
        let trailers = trailers.as_ref().and_then(|t| t.take());
        verify(&given, trailers.as_ref(), &announced, &sums.checksums, content_md5.as_deref(), &sums.md5)?;
        if expected.is_some_and(|e| e != size) {
            return Err(s3_error!(IncompleteBody, "the body's length does not match its Content-Length"));
        }
        attrs.etag = sums.md5;
        Ok(sums.checksums)
    };
    let stored = if let Some(length) = expected.filter(|l| *l <= SMALL_OBJECT) {
        let (data, sums) = body::collect(body, wanted, length)
            .await
            .map_err(|e| body_error(&e).unwrap_or_else(|| s3_error!(InternalError, "{e}")))?;
        let size = data.len() as u64;
        let computed = check(Some(sums), size, &mut attrs)?;
        t.small.put(name, data, &opts, Some(attrs.encode())).await.map(|committed| (size, committed, computed))
    } else {
        let (reader, slot) = body::reader(body, wanted, expected);
        let mut refusal: Option<S3Error> = None;
        let mut computed = Checksum::default();
        let stored =
            put_stream(&t.coord, t.keys.write_keys(), reader, name, &opts, expected, &NoProgress, |manifest| {
                let sums = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
                match check(sums, manifest.size, &mut attrs) {
                    Ok(c) => {
                        computed = c;
                        Ok(Some(attrs.encode()))
                    }
                    Err(e) => {
                        let message = e.message().unwrap_or("checksum mismatch").to_owned();
                        refusal = Some(e);
                        Err(ClientError::Invalid(message))
                    }
                }
            })
            .await;
        if let Some(r) = refusal {
            return Err(r);
        }
        stored.map(|r| (r.size, Committed { version: r.version, tag: r.tag }, computed))
    };
    match stored {
        Ok((size, committed, checksums)) => Ok(Stored { size, attrs, checksums, committed }),
        Err(e) => {
            if let Some(refusal) = match &e {
                ClientError::Io { source, .. } => body_error(source),
                _ => None,
            } {
                return Err(refusal);
            }
            Err(existing.refused(t, name, e).await)
        }
    }
}

/// The length a request body declares: its Content-Length, or for an aws-chunked body sent
/// without one (boto3 sends checksum trailers so), its `x-amz-decoded-content-length`. The
/// body is held to it either way ([`body::reader`], [`body::collect`]), so a false one fails
/// the request.
fn body_length(headers: &http::HeaderMap, content_length: Option<i64>) -> Option<u64> {
    content_length.and_then(|n| u64::try_from(n).ok()).or_else(|| {
        headers.get("x-amz-decoded-content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
    })
}

/// A request body that failed as it was read, in S3's terms; `None` if the failure is not
/// the body's.
fn body_error(source: &std::io::Error) -> Option<S3Error> {
    match source.kind() {
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => {
            Some(s3_error!(IncompleteBody, "the body's length does not match its Content-Length"))
        }
        std::io::ErrorKind::TimedOut => Some(s3_error!(RequestTimeout, "{}", crate::pace::TOO_SLOW)),
        std::io::ErrorKind::PermissionDenied => Some(s3_error!(
            SignatureDoesNotMatch,
            "a chunk of the body is not signed by the request's key; check the secret key"
        )),
        _ => None,
    }
}

/// Streams bytes `range` of the object whose manifest is `manifest`.
fn object_bytes(
    t: &Tenant,
    manifest: &Manifest,
    range: std::ops::Range<u64>,
    turn: Option<Turn>,
) -> S3Result<Outgoing> {
    let mut offset = 0u64;
    let mut skip = 0u64;
    let mut wanted = Vec::new();
    for (id, len) in &manifest.chunks {
        let end = offset + u64::from(*len);
        if end > range.start && offset < range.end {
            if wanted.is_empty() {
                skip = range.start - offset;
            }
            wanted.push((*id, Some(*len)));
        }
        offset = end;
        if offset >= range.end {
            break;
        }
    }
    let hosts = t.coord.hosts().map_err(internal)?;
    let fetcher = scatter_client::fetch::Fetcher::new(&t.coord, &hosts, &t.keys);
    let (tx, out) = Outgoing::channel();
    let mut left = range.end - range.start;
    tokio::spawn(async move {
        let _turn = turn;
        let mut chunks = fetcher.stream(wanted);
        while let Some(batch) = chunks.next().await {
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "an object could not be read");
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            };
            for chunk in batch {
                let mut b = Bytes::from(chunk);
                let cut = skip.min(b.len() as u64) as usize;
                let _ = b.split_to(cut);
                skip -= cut as u64;
                b.truncate(left.min(b.len() as u64) as usize);
                left -= b.len() as u64;
                if !b.is_empty() && tx.send(Ok(b)).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(out)
}

/// An object's manifest and listing fields, read fresh from the catalog.
async fn open(t: &Tenant, name: &str) -> S3Result<(scatter_proto::api::ObjectResponse, Manifest)> {
    scatter_client::get::open_object(&t.coord, &t.keys, &t.encrypt(name), name, None)
        .await
        .map_err(|e| s3(e, S3ErrorCode::NoSuchKey))
}

/// The (bucket, key) a copy reads from.
fn copy_source(source: &CopySource) -> S3Result<(String, String)> {
    match source {
        CopySource::Bucket { bucket, key, version_id: None } => Ok((bucket.to_string(), key.to_string())),
        CopySource::Bucket { .. } => {
            Err(s3_error!(NotImplemented, "object versions are not kept; copy without versionId"))
        }
        _ => Err(s3_error!(NotImplemented, "only bucket/key copy sources are served")),
    }
}

/// The parts of an upload, by number.
async fn parts(t: &Tenant, bucket: &str, upload: &str) -> S3Result<Vec<(u16, u64, u64, Attributes)>> {
    let mut parts: Vec<(u16, u64, u64, Attributes)> = t
        .list(&naming::upload(bucket, upload))
        .await
        .map_err(internal)?
        .into_iter()
        .filter_map(|l| match l.named {
            Named::Part(b, u, n) if b == bucket && u == upload => Some((n, l.size, l.created, l.attrs)),
            _ => None,
        })
        .collect();
    parts.sort_by_key(|p| p.0);
    Ok(parts)
}

/// The attributes of an upload in progress (its key, content type, metadata).
async fn upload_of(t: &Tenant, bucket: &str, key: &str, upload: &str) -> S3Result<Attributes> {
    naming::check_upload_id(upload).map_err(|m| S3Error::with_message(S3ErrorCode::NoSuchUpload, m))?;
    let info = t
        .stat(&naming::upload(bucket, upload))
        .await
        .map_err(internal)?
        .ok_or_else(|| s3_error!(NoSuchUpload, "no upload {upload} is in progress"))?;
    let attrs = t.attributes(&info);
    if attrs.key.as_deref() != Some(key) {
        return Err(s3_error!(NoSuchUpload, "upload {upload} is for another key"));
    }
    Ok(attrs)
}

/// Removes an upload's parts and marker.
pub async fn remove_upload(t: &Tenant, bucket: &str, upload: &str) -> Result<(), ClientError> {
    for l in t.list(&naming::upload(bucket, upload)).await? {
        if let Named::Part(b, u, n) = l.named {
            if b == bucket && u == upload {
                ignore_missing(t.coord.remove(&t.encrypt(&naming::part(bucket, upload, n))).await)?;
            }
        }
    }
    ignore_missing(t.coord.remove(&t.encrypt(&naming::upload(bucket, upload))).await)
}

fn ignore_missing<T>(r: Result<T, ClientError>) -> Result<(), ClientError> {
    match r {
        Ok(_) | Err(ClientError::Api { code: ErrorCode::NotFound, .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Commits an empty object (a bucket or upload marker) with `attrs`.
async fn marker(t: &Tenant, name: &str, attrs: &Attributes) -> S3Result<()> {
    commit_manifest(&t.coord, t.keys.write_keys(), name, Manifest::default(), Some(&attrs.encode()), &t.put)
        .await
        .map(|_| ())
        .map_err(internal)
}

fn entry_of(stored: &Stored) -> Entry {
    entry(stored.size, &stored.attrs, stored.committed)
}

/// The index entry of a version just committed.
fn entry(size: u64, attrs: &Attributes, committed: Committed) -> Entry {
    Entry { size, modified: now(), attrs: attrs.clone(), version: committed.version, tag: committed.tag }
}

/// Registers a write of `key` in bucket `b` until its index update: refused if the bucket
/// was deleted since it was found (the object would outlive its bucket, and come back in a
/// new bucket of that name).
async fn start_write(b: &Arc<BucketState>, bucket: &str, key: &str) -> S3Result<Writing> {
    b.start_write(key).await.ok_or_else(|| s3_error!(NoSuchBucket, "the bucket {bucket} was deleted"))
}

/// Runs a write (`commit`: its store and commit, with what it holds) and then records its
/// index entry, on a task of its own: a client that hangs up during the commit or after it
/// would otherwise drop the request between the two, leaving an object committed that the
/// listing never shows, and its write no longer counted when a bucket delete checks for
/// writes under way.
async fn finish_write<T, F>(
    t: &Arc<Tenant>,
    b: &Arc<BucketState>,
    bucket: &str,
    key: &str,
    writing: Writing,
    commit: F,
) -> S3Result<T>
where
    F: std::future::Future<Output = S3Result<(T, Entry)>> + Send + 'static,
    T: Send + 'static,
{
    let (t, b, bucket, key) = (t.clone(), b.clone(), bucket.to_owned(), key.to_owned());
    tokio::spawn(async move {
        let (out, entry) = match commit.await {
            Ok(committed) => committed,
            Err(e) => {
                // The catalog refused a condition the index let through: the index is behind
                // (a write or delete made elsewhere).
                if *e.code() == S3ErrorCode::PreconditionFailed {
                    refresh(&t, &b, &bucket, &key).await;
                }
                return Err(e);
            }
        };
        record(&t, &b, &bucket, &key, writing, entry).await;
        Ok(out)
    })
    .await
    .map_err(|e| s3_error!(InternalError, "the write stopped: {e}"))?
}

/// Records a committed write of `key` in the bucket's index. If the key was deleted while it
/// was written, or the index holds a higher version of it, the catalog says whether this
/// write is still the key's latest version: recording it blindly left an object in listings
/// that reads no longer found, and of two writes of a key the one committed last may finish
/// first. (A higher version is not enough to keep: version numbers start again at 1 once
/// every version of a name is deleted, say by another device.)
async fn record(t: &Tenant, b: &BucketState, bucket: &str, key: &str, writing: Writing, entry: Entry) {
    let mut index = b.index.write().await;
    let higher = index.get(key).is_some_and(|e| e.version > entry.version);
    if writing.raced() || higher {
        match t.stat(&naming::object(bucket, key)).await {
            Ok(Some(info)) if info.version == entry.version && tag_of(&info) == entry.tag => {}
            Ok(_) => return,
            Err(e) => {
                // Not knowing, the index leaves it out: a read still finds it in the catalog.
                tracing::warn!(error = %e, %bucket, "could not check a write that raced a delete; the listing leaves it out");
                return;
            }
        }
    }
    index.insert(key, entry);
    drop(writing);
}

/// Brings the index entry of `key` in line with the catalog's latest version of it.
async fn refresh(t: &Tenant, b: &BucketState, bucket: &str, key: &str) {
    let mut index = b.index.write().await;
    match t.stat(&naming::object(bucket, key)).await {
        Ok(Some(info)) => {
            let entry = Entry {
                size: info.size,
                modified: info.created,
                attrs: t.attributes(&info),
                version: info.version,
                tag: tag_of(&info),
            };
            index.insert(key, entry);
        }
        Ok(None) => {
            index.remove(key);
        }
        Err(e) => tracing::debug!(error = %e, %bucket, "could not bring an index entry in line with the catalog"),
    }
}

/// With `encoding-type=url`, names in a listing are percent-encoded (clients decode them
/// with `+` as a space, so everything but unreserved characters and `/` is encoded).
#[derive(Debug, Clone, Copy)]
struct Names {
    url: bool,
}

impl Names {
    fn of(encoding: Option<&EncodingType>) -> Self {
        Self { url: encoding.is_some_and(|e| e.as_str() == EncodingType::URL) }
    }

    fn show(self, name: String) -> String {
        if !self.url {
            return name;
        }
        let mut out = String::with_capacity(name.len());
        for b in name.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    fn show_opt(self, name: Option<String>) -> Option<String> {
        name.map(|n| self.show(n))
    }
}

fn page(
    index: &crate::listing::Index,
    q: &Query<'_>,
    names: Names,
) -> (Vec<Object>, Vec<CommonPrefix>, bool, Option<String>) {
    let page = index.list(q);
    let objects = page
        .objects
        .into_iter()
        .map(|(key, e)| Object {
            key: Some(names.show(key)),
            size: Some(e.size as i64),
            e_tag: Some(etag(&e.attrs.etag)),
            last_modified: Some(timestamp(e.modified)),
            storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
            ..Default::default()
        })
        .collect();
    let prefixes = page.prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(names.show(p)) }).collect();
    (objects, prefixes, page.truncated, page.last)
}

fn max_keys(asked: Option<i32>) -> usize {
    asked.map_or(MAX_PAGE, |m| (m.max(0) as usize).min(MAX_PAGE))
}

#[async_trait::async_trait]
impl S3 for Gateway {
    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        let a = self.reader(&req)?;
        let mut buckets: Vec<Bucket> = Vec::new();
        for l in a.tenant.list(naming::BUCKETS).await.map_err(internal)? {
            if let Named::Bucket(name) = l.named {
                buckets.push(Bucket {
                    name: Some(name),
                    creation_date: Some(timestamp(l.created)),
                    ..Default::default()
                });
            }
        }
        buckets.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(S3Response::new(ListBucketsOutput { buckets: Some(buckets), ..Default::default() }))
    }

    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        let a = self.reader(&req)?;
        let name = &req.input.bucket;
        check_names(name, None)?;
        let t = &a.tenant;
        if t.stat(&naming::bucket(name)).await.map_err(internal)?.is_some() {
            return Err(s3_error!(BucketAlreadyOwnedByYou, "you already have a bucket named {name}"));
        }
        t.forget(name);
        marker(t, &naming::bucket(name), &Attributes::default()).await?;
        Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{name}")) }))
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        let a = self.access(&req)?;
        bucket(&a.tenant, &req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let a = self.reader(&req)?;
        bucket(&a.tenant, &req.input.bucket).await?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        let a = self.reader(&req)?;
        let t = &a.tenant;
        let name = &req.input.bucket;
        let b = bucket(t, name).await?;
        let index = b.index.write().await;
        // Deleted by another request while this one waited for the lock.
        if b.is_gone() {
            return Err(s3_error!(NoSuchBucket, "no bucket is named {name}"));
        }
        if !index.is_empty() {
            return Err(s3_error!(
                BucketNotEmpty,
                "the bucket {name} holds {} object(s); delete them first",
                index.len()
            ));
        }
        if b.writing() {
            return Err(s3_error!(
                BucketNotEmpty,
                "objects are being written into the bucket {name}; try again once they are in"
            ));
        }
        // Uploads in progress go with their bucket.
        for l in t.list(&naming::uploads_of(name)).await.map_err(internal)? {
            if let Named::Upload(_, upload) = l.named {
                remove_upload(t, name, &upload).await.map_err(internal)?;
            }
        }
        // Writes that found the bucket before now are refused from here on (none can start
        // while this holds the index's lock).
        b.set_gone(true);
        if let Err(e) = t.coord.remove(&t.encrypt(&naming::bucket(name))).await {
            // A marker already gone is a bucket gone: writes must not commit into it.
            if !matches!(e, ClientError::Api { code: ErrorCode::NotFound, .. }) {
                b.set_gone(false);
            }
            return Err(s3(e, S3ErrorCode::NoSuchBucket));
        }
        t.forget(name);
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let a = self.access(&req)?;
        told(&a, self.put(&a, req).await)
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let a = self.reader(&req)?;
        let t = &a.tenant;
        let input = req.input;
        check_key(&a.tenant, &input.bucket, &input.key)?;
        bucket(t, &input.bucket).await?;
        if input.part_number.is_some() {
            return Err(s3_error!(NotImplemented, "reading one part of an object is not served; use a Range"));
        }
        let (object, manifest) = open(t, &naming::object(&input.bucket, &input.key)).await?;
        let attrs = t.attributes(&object.info);
        preconditions(
            &attrs.etag,
            object.info.created,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let size = manifest.size;
        let (range, content_range) = match &input.range {
            Some(r) => {
                let r = in_object(r, size)?;
                let shown = format!("bytes {}-{}/{size}", r.start, r.end.saturating_sub(1));
                (r, Some(shown))
            }
            None => (0..size, None),
        };
        let length = range.end - range.start;
        let turn = self.read_turn(&a.tenant.id, length).await?;
        let body = object_bytes(t, &manifest, range, Some(turn))?;
        Ok(S3Response::new(GetObjectOutput {
            body: Some(StreamingBlob::wrap(body)),
            content_length: Some(length as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(&attrs.etag)),
            last_modified: Some(timestamp(object.info.created)),
            content_type: attrs.content_type.clone(),
            metadata: (!attrs.metadata.is_empty()).then(|| attrs.metadata.clone().into_iter().collect()),
            ..Default::default()
        }))
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let a = self.reader(&req)?;
        let input = req.input;
        check_key(&a.tenant, &input.bucket, &input.key)?;
        let b = bucket(&a.tenant, &input.bucket).await?;
        let e = b.index.read().await.get(&input.key).cloned().ok_or_else(|| s3_error!(NoSuchKey))?;
        preconditions(
            &e.attrs.etag,
            e.modified,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let (length, content_range) = match &input.range {
            Some(r) => {
                let r = in_object(r, e.size)?;
                (r.end - r.start, Some(format!("bytes {}-{}/{}", r.start, r.end.saturating_sub(1), e.size)))
            }
            None => (e.size, None),
        };
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(length as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(&e.attrs.etag)),
            last_modified: Some(timestamp(e.modified)),
            content_type: e.attrs.content_type.clone(),
            metadata: (!e.attrs.metadata.is_empty()).then(|| e.attrs.metadata.clone().into_iter().collect()),
            ..Default::default()
        }))
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        let a = self.reader(&req)?;
        let input = req.input;
        check_key(&a.tenant, &input.bucket, &input.key)?;
        let b = bucket(&a.tenant, &input.bucket).await?;
        delete_one(&a.tenant, &b, &input.bucket, &input.key).await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let a = self.reader(&req)?;
        let input = req.input;
        let b = bucket(&a.tenant, &input.bucket).await?;
        let quiet = input.delete.quiet.unwrap_or(false);
        // S3's bound: a request naming 200,000 keys held one request handler for a minute.
        if input.delete.objects.len() > MAX_DELETE_KEYS {
            return Err(s3_error!(MalformedXML, "a DeleteObjects request names at most {MAX_DELETE_KEYS} keys"));
        }
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for o in input.delete.objects {
            let done = match check_key(&a.tenant, &input.bucket, &o.key) {
                Ok(()) => delete_one(&a.tenant, &b, &input.bucket, &o.key).await,
                Err(e) => Err(e),
            };
            match done {
                Ok(()) if !quiet => deleted.push(DeletedObject { key: Some(o.key), ..Default::default() }),
                Ok(()) => {}
                Err(e) => errors.push(Error {
                    code: Some(e.code().as_str().to_owned()),
                    key: Some(o.key),
                    message: e.message().map(str::to_owned),
                    ..Default::default()
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput { deleted: Some(deleted), errors: Some(errors), ..Default::default() }))
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        let a = self.reader(&req)?;
        let t = &a.tenant;
        let input = req.input;
        check_key(&a.tenant, &input.bucket, &input.key)?;
        let (src_bucket, src_key) = copy_source(&input.copy_source)?;
        check_key(&a.tenant, &src_bucket, &src_key)?;
        bucket(t, &src_bucket).await?;
        let b = bucket(t, &input.bucket).await?;
        // The destination's conditions: s3s parses only the source's.
        let condition = |name: &str| {
            req.headers
                .get(name)
                .map(|v| ETagCondition::parse_http_header(v.as_bytes()))
                .transpose()
                .map_err(|_| s3_error!(InvalidArgument, "{name} is not an ETag or *"))
        };
        let (if_match, if_none_match) = (condition("if-match")?, condition("if-none-match")?);
        let existing = Existing::checked(&a, &b, &input.key, if_match.as_ref(), if_none_match.as_ref()).await?;
        let (object, manifest) = open(t, &naming::object(&src_bucket, &src_key)).await?;
        let source = t.attributes(&object.info);
        preconditions(
            &source.etag,
            object.info.created,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
        )
        .map_err(|e| if *e.code() == S3ErrorCode::NotModified { s3_error!(PreconditionFailed) } else { e })?;
        let replace_meta = input.metadata_directive.as_ref().is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        if !replace_meta && (src_bucket.as_str(), src_key.as_str()) == (input.bucket.as_str(), input.key.as_str()) {
            return Err(s3_error!(
                InvalidRequest,
                "this copy request is illegal because it is trying to copy an object to itself without changing the object's metadata"
            ));
        }
        let mut attrs = if replace_meta { attributes(input.content_type, input.metadata)? } else { source.clone() };
        attrs.etag = source.etag.clone();
        attrs.key = None;
        let size = manifest.size;
        let opts = existing.options(&t.put);
        let writing = start_write(&b, &input.bucket, &input.key).await?;
        let (tenant, name, sealed) = (a.tenant.clone(), naming::object(&input.bucket, &input.key), attrs.encode());
        let attributes = attrs.clone();
        let modified = finish_write(&a.tenant, &b, &input.bucket, &input.key, writing, async move {
            // The same chunks under a new name: no bytes move.
            match commit_manifest(&tenant.coord, tenant.keys.write_keys(), &name, manifest, Some(&sealed), &opts).await
            {
                Ok(committed) => {
                    let entry = entry(size, &attributes, committed);
                    Ok((entry.modified, entry))
                }
                Err(e) => Err(existing.refused(&tenant, &name, e).await),
            }
        })
        .await?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&attrs.etag)),
                last_modified: Some(timestamp(modified)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        let a = self.reader(&req)?;
        let input = req.input;
        let b = bucket(&a.tenant, &input.bucket).await?;
        let max = max_keys(input.max_keys);
        let prefix = input.prefix.clone().unwrap_or_default();
        let q = Query { prefix: &prefix, delimiter: input.delimiter.as_deref(), after: input.marker.as_deref(), max };
        let names = Names::of(input.encoding_type.as_ref());
        let (contents, prefixes, truncated, last) = page(&*b.index.read().await, &q, names);
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(names.show(prefix)),
            marker: names.show_opt(input.marker),
            delimiter: names.show_opt(input.delimiter),
            max_keys: Some(max as i32),
            is_truncated: Some(truncated),
            next_marker: if truncated { names.show_opt(last) } else { None },
            contents: Some(contents),
            common_prefixes: Some(prefixes),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        let a = self.reader(&req)?;
        let input = req.input;
        let b = bucket(&a.tenant, &input.bucket).await?;
        let max = max_keys(input.max_keys);
        let prefix = input.prefix.clone().unwrap_or_default();
        let token = match &input.continuation_token {
            Some(t) => Some(decode_token(t)?),
            None => None,
        };
        let after = token.as_deref().or(input.start_after.as_deref());
        let q = Query { prefix: &prefix, delimiter: input.delimiter.as_deref(), after, max };
        let names = Names::of(input.encoding_type.as_ref());
        let (contents, prefixes, truncated, last) = page(&*b.index.read().await, &q, names);
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(names.show(prefix)),
            delimiter: names.show_opt(input.delimiter),
            max_keys: Some(max as i32),
            key_count: Some((contents.len() + prefixes.len()) as i32),
            continuation_token: input.continuation_token,
            next_continuation_token: if truncated { last.as_deref().map(encode_token) } else { None },
            is_truncated: Some(truncated),
            contents: Some(contents),
            common_prefixes: Some(prefixes),
            start_after: names.show_opt(input.start_after),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let a = self.access(&req)?;
        told(&a, self.create_upload(&a, req).await)
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        let a = self.access(&req)?;
        told(&a, self.put_part(&a, req).await)
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let a = self.reader(&req)?;
        let t = &a.tenant;
        let input = req.input;
        check_key(&a.tenant, &input.bucket, &input.key)?;
        let number = part_number(input.part_number)?;
        let (src_bucket, src_key) = copy_source(&input.copy_source)?;
        check_key(&a.tenant, &src_bucket, &src_key)?;
        let b = bucket(t, &input.bucket).await?;
        bucket(t, &src_bucket).await?;
        upload_of(t, &input.bucket, &input.key, &input.upload_id).await?;
        let _writing = start_write(&b, &input.bucket, &naming::upload(&input.bucket, &input.upload_id)).await?;
        let (object, manifest) = open(t, &naming::object(&src_bucket, &src_key)).await?;
        let source = t.attributes(&object.info);
        preconditions(
            &source.etag,
            object.info.created,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
        )
        .map_err(|e| if *e.code() == S3ErrorCode::NotModified { s3_error!(PreconditionFailed) } else { e })?;
        let range = match &input.copy_source_range {
            Some(r) => copy_range(r, manifest.size)?,
            None => 0..manifest.size,
        };
        let length = range.end - range.start;
        let _turn = self.write_turn(&a, Some(length)).await?;
        let bytes = object_bytes(t, &manifest, range, None)?.map(|r| r.map_err(|e| e.to_string())).boxed();
        let stored = store_body(
            t,
            &naming::part(&input.bucket, &input.upload_id, number),
            bytes,
            Some(length),
            Checks::default(),
            Attributes::default(),
            Existing::Replace,
        )
        .await?;
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(etag(&stored.attrs.etag)),
                last_modified: Some(timestamp(now())),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        let a = self.reader(&req)?;
        let t = &a.tenant;
        let input = req.input;
        check_key(&a.tenant, &input.bucket, &input.key)?;
        bucket(t, &input.bucket).await?;
        upload_of(t, &input.bucket, &input.key, &input.upload_id).await?;
        let after = input.part_number_marker.unwrap_or(0);
        let max = max_keys(input.max_parts);
        let mut listed: Vec<Part> = parts(t, &input.bucket, &input.upload_id)
            .await?
            .into_iter()
            .filter(|p| i32::from(p.0) > after)
            .map(|(n, size, created, attrs)| Part {
                part_number: Some(i32::from(n)),
                size: Some(size as i64),
                e_tag: Some(etag(&attrs.etag)),
                last_modified: Some(timestamp(created)),
                ..Default::default()
            })
            .collect();
        let truncated = listed.len() > max;
        listed.truncate(max);
        let next = if truncated { listed.last().and_then(|p| p.part_number) } else { None };
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: next,
            max_parts: Some(max as i32),
            is_truncated: Some(truncated),
            parts: Some(listed),
            ..Default::default()
        }))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let a = self.reader(&req)?;
        let t = &a.tenant;
        let input = req.input;
        bucket(t, &input.bucket).await?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let names = Names::of(input.encoding_type.as_ref());
        let mut all: Vec<(String, String, u64)> = t
            .list(&naming::uploads_of(&input.bucket))
            .await
            .map_err(internal)?
            .into_iter()
            .filter_map(|l| match l.named {
                Named::Upload(_, id) => {
                    let key = l.attrs.key?;
                    key.starts_with(&prefix).then_some((key, id, l.created))
                }
                _ => None,
            })
            .collect();
        all.sort();
        // After the markers, as S3 pages: keys after the key marker, and with an upload-id
        // marker, that key's uploads after it too.
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let id_marker = input.upload_id_marker.clone().filter(|_| !key_marker.is_empty());
        all.retain(|(key, id, _)| {
            key.as_str() > key_marker.as_str()
                || (key == &key_marker && id_marker.as_ref().is_some_and(|m| id.as_str() > m.as_str()))
        });
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let max = max_keys(input.max_uploads);
        let (mut uploads, mut prefixes) = (Vec::new(), Vec::<String>::new());
        let mut next: Option<(String, String)> = None;
        let mut truncated = false;
        for (key, id, created) in all {
            // Keys with the delimiter after the prefix roll up into one common prefix each.
            let common = delimiter.as_ref().and_then(|d| {
                key[prefix.len()..].find(d.as_str()).map(|at| key[..prefix.len() + at + d.len()].to_owned())
            });
            if common.is_some() && common.as_ref() == prefixes.last() {
                next = Some((key, id));
                continue;
            }
            if uploads.len() + prefixes.len() == max {
                truncated = true;
                break;
            }
            match common {
                Some(p) => prefixes.push(p),
                None => uploads.push(MultipartUpload {
                    key: Some(names.show(key.clone())),
                    upload_id: Some(id.clone()),
                    initiated: Some(timestamp(created)),
                    ..Default::default()
                }),
            }
            next = Some((key, id));
        }
        let (next_key, next_id) = match (truncated, next) {
            (true, Some((key, id))) => (Some(names.show(key)), Some(id)),
            _ => (None, None),
        };
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: names.show_opt(input.prefix),
            delimiter: input.delimiter,
            key_marker: names.show_opt(input.key_marker),
            upload_id_marker: input.upload_id_marker,
            encoding_type: input.encoding_type,
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            next_key_marker: next_key,
            next_upload_id_marker: next_id,
            common_prefixes: (!prefixes.is_empty())
                .then(|| prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(names.show(p)) }).collect()),
            uploads: Some(uploads),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let a = self.access(&req)?;
        let t = &a.tenant;
        let caller = Self::access_key(&req).map(str::to_owned);
        let input = req.input;
        check_key(&a.tenant, &input.bucket, &input.key)?;
        bucket(t, &input.bucket).await?;
        let attrs = upload_of(t, &input.bucket, &input.key, &input.upload_id).await?;
        // A write-only key takes back its own upload (a refused one's parts would otherwise
        // wait for --upload-expiry), never another's.
        own_upload(&a, &attrs, caller.as_deref())?;
        remove_upload(t, &input.bucket, &input.upload_id).await.map_err(internal)?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let a = self.access(&req)?;
        told(&a, self.complete_upload(&a, req).await)
    }
}

/// The writes a write-only key may make, whose refusals it is [`told`].
impl Gateway {
    async fn put(&self, a: &Access, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let t = &a.tenant;
        let checks = checks!(req);
        let length = body_length(&req.headers, req.input.content_length);
        let input = req.input;
        check_key(&a.tenant, &input.bucket, &input.key)?;
        let b = bucket(t, &input.bucket).await?;
        let attrs = attributes(input.content_type, input.metadata)?;
        let existing =
            Existing::checked(a, &b, &input.key, input.if_match.as_ref(), input.if_none_match.as_ref()).await?;
        let turn = self.write_turn(a, length).await?;
        let name = naming::object(&input.bucket, &input.key);
        let writing = start_write(&b, &input.bucket, &input.key).await?;
        let (tenant, body) = (a.tenant.clone(), incoming(input.body));
        let stored = finish_write(&a.tenant, &b, &input.bucket, &input.key, writing, async move {
            let _turn = turn;
            let stored = store_body(&tenant, &name, body, length, checks, attrs, existing).await?;
            let entry = entry_of(&stored);
            Ok((stored, entry))
        })
        .await?;
        let c = stored.checksums;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(etag(&stored.attrs.etag)),
            size: Some(stored.size as i64),
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_crc64nvme: c.checksum_crc64nvme,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            ..Default::default()
        }))
    }

    async fn create_upload(
        &self,
        a: &Access,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let writer = Self::access_key(&req).map(str::to_owned);
        let t = &a.tenant;
        let input = req.input;
        check_key(&a.tenant, &input.bucket, &input.key)?;
        let b = bucket(t, &input.bucket).await?;
        // A write-only key's upload to a taken name is refused at its completion, by the
        // commit, not here: started and aborted, it would test names for nothing (see
        // `Existing::checked`).
        let mut attrs = attributes(input.content_type, input.metadata)?;
        attrs.key = Some(input.key.clone());
        attrs.writer = writer;
        let upload = naming::new_upload_id();
        // A write: a bucket delete waits for it, or it finds the bucket gone.
        let _writing = start_write(&b, &input.bucket, &naming::upload(&input.bucket, &upload)).await?;
        marker(t, &naming::upload(&input.bucket, &upload), &attrs).await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload),
            ..Default::default()
        }))
    }

    async fn put_part(&self, a: &Access, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        let caller = Self::access_key(&req).map(str::to_owned);
        let t = &a.tenant;
        let checks = checks!(req);
        let length = body_length(&req.headers, req.input.content_length);
        let input = req.input;
        check_key(&a.tenant, &input.bucket, &input.key)?;
        let number = part_number(input.part_number)?;
        let b = bucket(t, &input.bucket).await?;
        let upload = upload_of(t, &input.bucket, &input.key, &input.upload_id).await?;
        own_upload(a, &upload, caller.as_deref())?;
        let _writing = start_write(&b, &input.bucket, &naming::upload(&input.bucket, &input.upload_id)).await?;
        let _turn = self.write_turn(a, length).await?;
        let stored = store_body(
            t,
            &naming::part(&input.bucket, &input.upload_id, number),
            incoming(input.body),
            length,
            checks,
            Attributes::default(),
            if a.write_only { Existing::Keep } else { Existing::Replace },
        )
        .await?;
        let c = stored.checksums;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(etag(&stored.attrs.etag)),
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_crc64nvme: c.checksum_crc64nvme,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            ..Default::default()
        }))
    }

    async fn complete_upload(
        &self,
        a: &Access,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let caller = Self::access_key(&req).map(str::to_owned);
        let t = &a.tenant;
        let input = req.input;
        check_key(&a.tenant, &input.bucket, &input.key)?;
        let b = bucket(t, &input.bucket).await?;
        let mut attrs = upload_of(t, &input.bucket, &input.key, &input.upload_id).await?;
        own_upload(a, &attrs, caller.as_deref())?;
        let existing =
            Existing::checked(a, &b, &input.key, input.if_match.as_ref(), input.if_none_match.as_ref()).await?;
        let asked = input.multipart_upload.and_then(|m| m.parts).unwrap_or_default();
        if asked.is_empty() {
            return Err(s3_error!(MalformedXML, "a completed upload names at least one part"));
        }
        let stored = parts(t, &input.bucket, &input.upload_id).await?;
        let mut chosen = Vec::with_capacity(asked.len());
        let mut last = 0;
        for (i, p) in asked.iter().enumerate() {
            let n = p.part_number.unwrap_or(0);
            if n <= last {
                return Err(s3_error!(InvalidPartOrder, "parts must be listed in ascending order of their numbers"));
            }
            last = n;
            let want = p.e_tag.as_ref().map(|e| e.value().to_owned()).unwrap_or_default();
            let Some(found) = stored.iter().find(|s| i32::from(s.0) == n && s.3.etag == want) else {
                return Err(s3_error!(InvalidPart, "part {n} was not uploaded, or its ETag is not {want}"));
            };
            if i + 1 < asked.len() && found.1 < MIN_PART {
                return Err(s3_error!(
                    EntityTooSmall,
                    "part {n} is {} bytes; all but the last must be at least 5 MiB",
                    found.1
                ));
            }
            chosen.push(found);
        }
        // Parts become the object by their manifests alone: no byte is read or written again.
        let mut manifest = Manifest::default();
        for (n, ..) in &chosen {
            let (_, m) = open(t, &naming::part(&input.bucket, &input.upload_id, *n)).await?;
            manifest.size += m.size;
            manifest.chunks.extend(m.chunks);
        }
        let etags: Vec<&str> = chosen.iter().map(|p| p.3.etag.as_str()).collect();
        attrs.etag = multipart_etag(&etags).ok_or_else(|| s3_error!(InvalidPart, "a part's ETag is not an MD5"))?;
        attrs.key = None;
        let size = manifest.size;
        let name = naming::object(&input.bucket, &input.key);
        let opts = existing.options(&t.put);
        let writing = start_write(&b, &input.bucket, &input.key).await?;
        let (tenant, sealed) = (a.tenant.clone(), attrs.encode());
        let attributes = attrs.clone();
        finish_write(&a.tenant, &b, &input.bucket, &input.key, writing, async move {
            match commit_manifest(&tenant.coord, tenant.keys.write_keys(), &name, manifest, Some(&sealed), &opts).await
            {
                Ok(committed) => Ok(((), entry(size, &attributes, committed))),
                Err(e) => Err(existing.refused(&tenant, &name, e).await),
            }
        })
        .await?;
        // The object references the parts' chunks now: the parts themselves go.
        if let Err(e) = remove_upload(t, &input.bucket, &input.upload_id).await {
            tracing::warn!(error = %e, upload = %input.upload_id, "a completed upload's parts stay until the upload expiry");
        }
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(etag(&attrs.etag)),
            ..Default::default()
        }))
    }
}

async fn delete_one(t: &Tenant, b: &BucketState, bucket: &str, key: &str) -> S3Result<()> {
    let mut index = b.index.write().await;
    match t.coord.remove(&t.encrypt(&naming::object(bucket, key))).await {
        Ok(_) | Err(ClientError::Api { code: ErrorCode::NotFound, .. }) => {}
        Err(e) => return Err(s3(e, S3ErrorCode::NoSuchKey)),
    }
    index.remove(key);
    b.deleted(key);
    Ok(())
}

fn part_number(n: i32) -> S3Result<u16> {
    if !(1..=MAX_PARTS).contains(&n) {
        return Err(s3_error!(InvalidArgument, "part numbers are 1 to {MAX_PARTS}"));
    }
    Ok(n as u16)
}

/// `bytes=FIRST-LAST` of an object of `size` bytes.
/// The bytes a `Range` header asks for of an object of `size` bytes, or `InvalidRange`
/// saying why (s3s's own error carries no message).
fn in_object(range: &s3s::dto::Range, size: u64) -> S3Result<std::ops::Range<u64>> {
    range.check(size).map_err(|_| {
        s3_error!(InvalidRange, "the range starts past the object's end (it has {size} bytes); ask for bytes within it")
    })
}

fn copy_range(spec: &str, size: u64) -> S3Result<std::ops::Range<u64>> {
    let bad = || s3_error!(InvalidArgument, "x-amz-copy-source-range must be bytes=FIRST-LAST within the object");
    let (first, last) = spec.strip_prefix("bytes=").and_then(|r| r.split_once('-')).ok_or_else(bad)?;
    let first: u64 = first.parse().map_err(|_| bad())?;
    let last: u64 = last.parse().map_err(|_| bad())?;
    if first > last || last >= size {
        return Err(bad());
    }
    Ok(first..last + 1)
}

fn encode_token(key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

fn decode_token(token: &str) -> S3Result<String> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "the continuation token is not one this gateway gave"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_only_key_hears_no_figures_of_its_owners_account() {
        let refusal = |code, message: &str| {
            s3(ClientError::Api { status: 400, code, message: message.into() }, S3ErrorCode::InternalError)
        };
        let busy = refusal(ErrorCode::Busy, "this account has 200 shards (900.0 MiB) placed and not yet committed");
        let quota = refusal(ErrorCode::Quota, "the quota is exhausted: 3.1 MiB of 4.0 MiB used");
        for (e, code) in [(busy, S3ErrorCode::SlowDown), (quota, S3ErrorCode::AccessDenied)] {
            assert!(e.message().is_some_and(|m| m.contains(" of ") || m.contains("200")), "the owner hears it all");
            let told = for_write_only(e);
            assert_eq!(*told.code(), code);
            let said = told.message().unwrap_or_default();
            assert!(!said.chars().any(|c| c.is_ascii_digit()), "a write-only key was told figures: {said}");
        }
        // Refusals that tell nothing of the account pass unchanged.
        let other = for_write_only(refusal(ErrorCode::TooFewHosts, "only 3 hosts can take shards"));
        assert_eq!(other.message(), Some("only 3 hosts can take shards"));
    }

    #[tokio::test(start_paused = true)]
    async fn one_key_takes_half_a_budget_and_few_of_its_requests_wait() {
        let budget = Budget::new(256);
        // One key takes its half; a second key still gets turns.
        let hog = [budget.turn("A", false, 64).await.expect("turn"), budget.turn("A", false, 64).await.expect("turn")];
        let other = budget.turn("B", false, 64).await.expect("another key's turn beside a key's full half");
        drop(other);
        // The key's further requests wait, at most MOST_WAITING of them.
        let mut waiting: Vec<_> = (0..MOST_WAITING).map(|_| Box::pin(budget.turn("A", false, 1))).collect();
        for w in &mut waiting {
            assert!(futures::poll!(w.as_mut()).is_pending());
        }
        let refused = budget.turn("A", false, 1).await.err().expect("one waiter too many was let wait");
        assert_eq!(*refused.code(), S3ErrorCode::SlowDown);
        // A waiter that gives up is counted out.
        waiting.pop();
        let mut again = Box::pin(budget.turn("A", false, 1));
        assert!(futures::poll!(again.as_mut()).is_pending(), "a place given up was not given back");
        drop(hog);
        again.await.expect("a turn once the half is given back");
        for w in waiting {
            w.await.expect("a waiting request's turn");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_profiles_write_only_keys_leave_its_owner_room() {
        let budget = Budget::new(256);
        // Its appenders' slow bodies take their part of the profile's half...
        let appenders = budget.turn("A", true, 64).await.expect("turn");
        let mut more = Box::pin(budget.turn("A", true, 1));
        assert!(futures::poll!(more.as_mut()).is_pending(), "write-only keys took more than their part");
        // ... and the owner still has turns, and its own line to wait in.
        let owner = budget.turn("A", false, 64).await.expect("the owner's turn beside its appenders'");
        let mut waiting: Vec<_> = (0..MOST_WAITING - 1).map(|_| Box::pin(budget.turn("A", true, 1))).collect();
        for w in &mut waiting {
            assert!(futures::poll!(w.as_mut()).is_pending());
        }
        assert!(budget.turn("A", true, 1).await.is_err(), "the write-only keys' line is full");
        let mut mine = Box::pin(budget.turn("A", false, 1));
        assert!(futures::poll!(mine.as_mut()).is_pending(), "the owner waits in its own line, not refused");
        drop(owner);
        mine.await.expect("the owner's turn");
        drop(appenders);
        more.await.expect("the appenders' turn once theirs is given back");
    }

    #[test]
    fn url_encoded_listings_keep_what_clients_decode_with_plus_as_space() {
        let url = Names { url: true };
        assert_eq!(url.show("a+b %41=&/ü~".into()), "a%2Bb%20%2541%3D%26/%C3%BC~");
        assert_eq!(Names { url: false }.show("a+b".into()), "a+b");
    }

    #[test]
    fn bodies_and_reads_weigh_by_size_within_bounds() {
        assert_eq!(write_weight(Some(0)), 1);
        assert_eq!(write_weight(Some(4096)), 1);
        assert_eq!(write_weight(Some(8 << 20)), 24);
        assert_eq!(write_weight(Some(64 << 20)), 64);
        assert_eq!(write_weight(Some(u64::MAX)), 64);
        assert_eq!(write_weight(None), 64);
        // However big, a body always fits in the budget on its own.
        assert!(write_weight(None) <= WRITE_BUDGET_MIB);
        assert_eq!(read_weight(0), 1);
        assert_eq!(read_weight(8 << 20), 8);
        assert_eq!(read_weight(u64::MAX), 64);
        assert!(read_weight(u64::MAX) <= READ_BUDGET_MIB);
    }
}
