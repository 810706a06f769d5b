//! Scatter's S3 gateway: the S3 API over the client pipeline of one or more profiles.
//!
//! The gateway runs on the user's side of the trust line: it holds the profile's keys,
//! seals and erasure-codes what S3 clients put, and opens what they get, exactly as the
//! CLI does. The coordinator sees encrypted names (every S3 bucket, key, upload and part
//! is an object name, see [`naming`]), sizes and sealed attributes ([`attrs`]: the ETag,
//! content type and user metadata); hosts see ciphertext.
//!
//! S3 clients sign with access keys the gateway keeps sealed in the profile folder
//! ([`keystore`]); `s3s` checks their SigV4 signatures (headers, presigned URLs, streaming
//! aws-chunked bodies with signed trailers) and speaks S3's XML and errors; [`s3`] does
//! the operations, listing from a per-bucket index ([`listing`]) kept in the gateway.

pub mod access;
pub mod attrs;
pub mod body;
pub mod keystore;
pub mod listing;
pub mod naming;
pub mod pace;
pub mod s3;
pub mod tenant;

use std::sync::Arc;
use std::time::Duration;

use s3s::auth::{S3Auth, SecretKey};
use s3s::service::S3ServiceBuilder;
use s3s::S3Result;

use crate::access::Keys;
use crate::naming::Named;
use crate::s3::Gateway;
use crate::tenant::Tenant;

/// The secrets SigV4 checks against, by access key.
struct Secrets(Keys);

#[async_trait::async_trait]
impl S3Auth for Secrets {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        self.0.secret(access_key).map(|s| SecretKey::from(s.as_str())).ok_or_else(unknown_key)
    }
}

/// A request signed with an access key no served profile has.
pub(crate) fn unknown_key() -> s3s::S3Error {
    s3s::S3Error::with_message(s3s::S3ErrorCode::InvalidAccessKeyId, UNKNOWN_KEY)
}

const UNKNOWN_KEY: &str = "no gateway key has this access key; `scatter gateway key ls` lists them";

/// Why the gateway cannot start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No profile has a key: nobody could sign a request.
    #[error("no gateway key exists; make one with `scatter gateway key add`")]
    NoKeys,
    /// Two profiles have the same access key, and it is bound to neither (made before keys
    /// were bound to their profile).
    #[error("the access key {0} belongs to two profiles; remove it from one, and make new keys with `scatter gateway key add`")]
    SharedKey(String),
    /// A profile's store names an access key made for another profile served here.
    #[error("the access key {0} in the key store of {1} was made for another profile; it is served only for that one")]
    NotItsKey(String, std::path::PathBuf),
    /// A profile's key store does not open.
    #[error(transparent)]
    KeyStore(#[from] keystore::KeyStoreError),
}

/// The gateway's HTTP router: S3 at every path, for the access keys in `keys`.
pub fn router(keys: Keys) -> axum::Router {
    let mut builder = S3ServiceBuilder::new(Gateway::new(keys.clone()));
    builder.set_auth(Secrets(keys.clone()));
    builder.set_access(pace::XmlAccess(pace::XmlBudget::new(), keys));
    let service = axum::error_handling::HandleError::new(builder.build(), |e: s3s::HttpError| async move {
        tracing::warn!(error = ?e, "an S3 request failed below the S3 layer");
        axum::http::StatusCode::INTERNAL_SERVER_ERROR
    });
    axum::Router::new()
        .fallback_service(service)
        .layer(axum::middleware::from_fn(pace::bounded_bodies))
        .layer(axum::middleware::from_fn(presigned_at_most_a_week))
        .layer(axum::middleware::from_fn(sigv2_recently_signed))
        .layer(axum::middleware::from_fn(explain_refusals))
        .layer(axum::middleware::from_fn(no_body_for_head))
        .layer(axum::middleware::from_fn(request_ids))
}

/// The sentence for an S3 error code that s3s answers without a message.
fn explanation(code: &str) -> Option<&'static str> {
    Some(match code {
        "SignatureDoesNotMatch" => {
            "the request's signature does not match: check the secret key that goes with this access key"
        }
        "InvalidAccessKeyId" => UNKNOWN_KEY,
        "InvalidBucketName" => {
            "a bucket name is 3 to 63 lower-case letters, digits, dots and hyphens, beginning and ending with a letter or digit"
        }
        "RequestTimeTooSkewed" => {
            "the request's time is more than 15 minutes from the gateway's clock: set the clocks right"
        }
        "AuthorizationHeaderMalformed" => "the Authorization header is malformed: sign with AWS Signature Version 4",
        "MissingContentLength" => "the request has a body but no Content-Length",
        _ => return None,
    })
}

/// Refusals that s3s answers with a code and no message (a bad signature, an unknown access
/// key, an invalid bucket name) get a sentence, which clients print instead of "Unknown".
/// Each refusal is logged at debug level only: anyone can send one.
async fn explain_refusals(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let method = req.method().clone();
    let res = next.run(req).await;
    let status = res.status();
    if !status.is_client_error() {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    // An S3 error is a few hundred bytes of XML; more is not an error document.
    let bytes = match axum::body::to_bytes(body, 64 << 10).await {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(%method, status = status.as_u16(), error = %e, "an S3 refusal's body could not be read");
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            return axum::response::Response::from_parts(parts, axum::body::Body::empty());
        }
    };
    let text = String::from_utf8_lossy(&bytes);
    let code = text.split_once("<Code>").and_then(|(_, rest)| rest.split_once("</Code>")).map(|(code, _)| code);
    tracing::debug!(%method, status = status.as_u16(), code = code.unwrap_or("-"), "an S3 request was refused");
    let Some(sentence) = code.filter(|_| !text.contains("<Message>")).and_then(explanation) else {
        return axum::response::Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    let explained = text.replacen("</Code>", &format!("</Code><Message>{sentence}</Message>"), 1);
    parts.headers.insert(axum::http::header::CONTENT_LENGTH, explained.len().into());
    axum::response::Response::from_parts(parts, axum::body::Body::from(explained))
}

/// The longest a presigned URL may be good for, as S3 allows: a URL that leaked stays usable
/// until then (or until its key is removed).
const MOST_PRESIGNED: u64 = 7 * 24 * 3600;

/// Refuses presigned URLs good for more than [`MOST_PRESIGNED`], which s3s would serve: SigV4's
/// `X-Amz-Expires` (seconds from signing) and SigV2's `Expires` (a Unix time; boto3 presigns
/// with SigV2 unless told SigV4).
async fn presigned_at_most_a_week(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    // Decoded as s3s decodes them: `X-Amz-%45xpires` is `X-Amz-Expires` to it.
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes()).into_owned().collect();
    let param = |name: &str| query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // Each scheme's expiry, whichever s3s picks: SigV2 signs neither parameter, so anyone
    // holding its URL may add the other.
    let v4_too_long = param("X-Amz-Expires").is_some_and(|s| s.parse::<u64>().map_or(true, |s| s > MOST_PRESIGNED));
    let v2_too_long = param("Signature")
        .and(param("Expires"))
        .is_some_and(|at| at.parse::<u64>().map_or(true, |at| at > now.saturating_add(MOST_PRESIGNED)));
    let too_long = v4_too_long || v2_too_long;
    if !too_long {
        return next.run(req).await;
    }
    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AuthorizationQueryParametersError</Code>\
               <Message>a presigned URL may be good for at most 7 days (604800 seconds): sign it again with a shorter expiry</Message></Error>";
    axum::response::Response::builder()
        .status(axum::http::StatusCode::BAD_REQUEST)
        .header(axum::http::header::CONTENT_TYPE, "application/xml")
        .body(axum::body::Body::from(xml))
        .unwrap_or_default()
}

/// How far from the gateway's clock the date a request was signed with may be, as s3s holds
/// SigV4's: a captured request is good for that long at most.
const MOST_SKEW: u64 = 15 * 60;

/// Refuses a request signed with SigV2 in its `Authorization` header (`AWS KEY:SIGNATURE`)
/// whose signed date (`x-amz-date`, else `Date`) is missing or more than [`MOST_SKEW`] from
/// the clock. s3s checks only that a date is there, so one request seen once (in a proxy's
/// log, say) would be good for ever, and a PUT's body (which SigV2 does not sign) could be
/// swapped. SigV2 presigned URLs carry their own expiry ([`presigned_at_most_a_week`]).
async fn sigv2_recently_signed(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let headers = req.headers();
    let v2 = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.starts_with("AWS "));
    if !v2 {
        return next.run(req).await;
    }
    let signed = headers
        .get("x-amz-date")
        .or_else(|| headers.get(axum::http::header::DATE))
        .and_then(|v| v.to_str().ok())
        .and_then(|d| httpdate::parse_http_date(d.trim()).ok().or_else(|| iso_basic(d.trim())));
    let now = std::time::SystemTime::now();
    let skew = signed.map(|at| at.duration_since(now).unwrap_or_else(|e| e.duration()));
    if skew.is_some_and(|s| s.as_secs() <= MOST_SKEW) {
        return next.run(req).await;
    }
    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>RequestTimeTooSkewed</Code>\
               <Message>a request signed with SigV2 must carry the date it was signed at (Date or x-amz-date), \
               within 15 minutes of the gateway's clock: check the client's clock, or sign with SigV4</Message></Error>";
    axum::response::Response::builder()
        .status(axum::http::StatusCode::FORBIDDEN)
        .header(axum::http::header::CONTENT_TYPE, "application/xml")
        .body(axum::body::Body::from(xml))
        .unwrap_or_default()
}

/// A date in ISO 8601's basic form (`20261202T091500Z`), as some clients send `x-amz-date`.
fn iso_basic(text: &str) -> Option<std::time::SystemTime> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let at = time::PrimitiveDateTime::parse(text, format).ok()?.assume_utc();
    let secs = u64::try_from(at.unix_timestamp()).ok()?;
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// Every answer names its request (`x-amz-request-id`, which clients report with an error),
/// and every log line about it carries the same id.
async fn request_ids(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use tracing::Instrument;
    let id = format!("{:016X}", rand::random::<u64>());
    let mut res = next.run(req).instrument(tracing::info_span!("s3", request = %id)).await;
    if let Ok(value) = axum::http::HeaderValue::from_str(&id) {
        res.headers_mut().insert("x-amz-request-id", value);
    }
    res
}

/// A response to HEAD carries headers only: s3s writes an error's XML for HEAD too, which
/// HTTP/2 clients (rclone) take for a protocol error.
async fn no_body_for_head(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let head = req.method() == axum::http::Method::HEAD;
    let mut res = next.run(req).await;
    if head {
        *res.body_mut() = axum::body::Body::empty();
    }
    res
}

/// Aborts, every `every`, the multipart uploads of `tenant` started more than `expiry` ago:
/// an abandoned upload's parts are referenced in the catalog (so nothing else sweeps them)
/// until then.
pub async fn expire_uploads(tenant: Arc<Tenant>, expiry: Duration, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let uploads = match tenant.list(naming::UPLOADS).await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "could not list multipart uploads to expire; will retry");
                continue;
            }
        };
        let markers: std::collections::HashSet<(&str, &str)> = uploads
            .iter()
            .filter_map(|l| match &l.named {
                Named::Upload(bucket, upload) => Some((bucket.as_str(), upload.as_str())),
                _ => None,
            })
            .collect();
        for l in &uploads {
            if now.saturating_sub(l.created) < expiry.as_secs() {
                continue;
            }
            match &l.named {
                Named::Upload(bucket, upload) => match s3::remove_upload(&tenant, bucket, upload).await {
                    Ok(()) => tracing::info!(%bucket, %upload, "an abandoned multipart upload expired and was removed"),
                    Err(e) => {
                        tracing::warn!(%bucket, %upload, error = %e, "could not remove an expired upload; will retry")
                    }
                },
                // A part stored while its upload was aborted (or its bucket removed) has no
                // marker left to expire it with.
                Named::Part(bucket, upload, n) if !markers.contains(&(bucket.as_str(), upload.as_str())) => {
                    match tenant.coord.remove(&tenant.encrypt(&naming::part(bucket, upload, *n))).await {
                        Ok(_) => {
                            tracing::info!(%bucket, %upload, "a part left without its upload expired and was removed")
                        }
                        Err(e) => {
                            tracing::warn!(%bucket, %upload, error = %e, "could not remove a part left without its upload; will retry")
                        }
                    }
                }
                _ => {}
            }
        }
    }
}
