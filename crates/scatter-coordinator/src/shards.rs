//! The coordinator talking to a host about one shard: put (repair), read whole (repair,
//! checks of reported shards), prove a range (audits) and delete (the deleter). One place
//! signs the grant, bounds what a host can make the coordinator hold or wait for, and tells
//! a host that answers wrongly from one that could not be asked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use scatter_core::ShardId;
use scatter_net::limits::{read_response, MinRate};
use scatter_proto::api::{StoredResponse, GRANT_HEADER};
use scatter_proto::{Grant, Op, SignedReceipt};

use crate::store::HostRow;
use crate::{now, Shared};

/// How long a grant the coordinator uses itself stays valid.
const GRANT_TTL: u64 = 600;
/// After a few seconds, whole-shard transfers must keep at least this rate: a host cannot
/// hold a repair or a check open by trickling bytes.
const MIN_RATE: u64 = 64 << 10;
/// Largest answer to an upload (a receipt).
const MAX_RECEIPT_ANSWER: u64 = 4096;

/// What asking a host came to.
#[derive(Debug)]
pub enum Answer<T> {
    /// It answered as it should.
    Ok(T),
    /// It answered, wrongly: it lacks the shard, or sent other bytes or a bad proof. Counts
    /// against it.
    Wrong(String),
    /// It could not be asked (offline, overloaded, too slow): heartbeats deal with that.
    Unreachable(String),
}

impl<T> Answer<T> {
    /// The value, or why there is none.
    pub fn into_result(self) -> Result<T, String> {
        match self {
            Answer::Ok(v) => Ok(v),
            Answer::Wrong(why) | Answer::Unreachable(why) => Err(why),
        }
    }
}

fn grant(host: &HostRow, shard: &ShardId, op: Op, max_size: u64) -> Grant {
    // Put grants are unique (their receipt must answer exactly this upload), and so are
    // reads (hosts keep a read budget per grant).
    let nonce = if matches!(op, Op::Put | Op::Get) { rand::random() } else { 0 };
    Grant { host: host.id, shard: *shard, op, max_size, expires: now() + GRANT_TTL, nonce }
}

fn unreachable<T>(e: reqwest::Error) -> Answer<T> {
    Answer::Unreachable(scatter_net::root_cause(&e))
}

/// Reads a whole shard of `size` bytes and checks its hash; the read speed is folded into
/// the host's measured bandwidth.
pub async fn read(shared: &Arc<Shared>, host: &HostRow, shard: &ShardId, size: u64) -> Answer<Vec<u8>> {
    let started = Instant::now();
    let g = grant(host, shard, Op::Get, size).sign(&shared.signing);
    let resp = match shared
        .http
        .get(format!("{}/shards/{shard}", host.address))
        .header(GRANT_HEADER, g.0)
        .timeout(Duration::from_secs(120))
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return unreachable(e),
    };
    if resp.status().is_server_error() {
        return Answer::Unreachable(format!("answered {}", resp.status()));
    }
    if !resp.status().is_success() {
        return Answer::Wrong(format!("answered {}", resp.status()));
    }
    let body = match read_response(resp, size, MinRate::new(Duration::from_secs(10), MIN_RATE)).await {
        Ok(b) => b,
        Err(scatter_net::limits::ReadError::TooLarge(_)) => return Answer::Wrong("sent more than the shard".into()),
        Err(e) => return Answer::Unreachable(e.to_string()),
    };
    crate::audit::note_bandwidth(shared, host.id, body.len() as u64, started.elapsed()).await;
    if body.len() as u64 != size || ShardId::of(&body) != *shard {
        return Answer::Wrong("bytes do not match the shard's hash".into());
    }
    Answer::Ok(body)
}

/// Asks for the Bao proof of `len` bytes at `start` (at most `max` bytes of answer).
pub async fn proof(
    shared: &Arc<Shared>,
    host: &HostRow,
    shard: &ShardId,
    size: u64,
    (start, len): (u64, u64),
    max: u64,
) -> Answer<Vec<u8>> {
    let g = grant(host, shard, Op::Get, size).sign(&shared.signing);
    let resp = match shared
        .http
        .get(format!("{}/shards/{shard}/proof?start={start}&len={len}", host.address))
        .header(GRANT_HEADER, g.0)
        .timeout(Duration::from_secs(30))
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) if e.is_connect() || e.is_timeout() => return unreachable(e),
        Err(e) => return Answer::Wrong(scatter_net::root_cause(&e)),
    };
    if resp.status().is_server_error() {
        return Answer::Unreachable(format!("answered {}", resp.status()));
    }
    if !resp.status().is_success() {
        return Answer::Wrong(format!("answered {}", resp.status()));
    }
    // A host answering slower than this after a few seconds is struggling or stalling.
    match read_response(resp, max, MinRate::new(Duration::from_secs(5), 4 << 10)).await {
        Ok(p) => Answer::Ok(p),
        Err(e) => Answer::Wrong(format!("proof transfer failed: {e}")),
    }
}

/// Stores `bytes` as `shard` on `host`; returns the host's receipt, checked to answer
/// exactly this upload.
pub async fn put(
    shared: &Arc<Shared>,
    host: &HostRow,
    shard: &ShardId,
    bytes: Vec<u8>,
) -> Result<SignedReceipt, String> {
    let size = bytes.len() as u64;
    let g = grant(host, shard, Op::Put, size).sign(&shared.signing);
    let grant_hash = scatter_proto::receipt::grant_hash(&g);
    let resp = shared
        .http
        .put(format!("{}/shards/{shard}", host.address))
        .header(GRANT_HEADER, g.0)
        .body(bytes)
        .send()
        .await
        .map_err(|e| scatter_net::root_cause(&e))?;
    if !resp.status().is_success() {
        return Err(format!("host {} refused the shard ({})", host.id, resp.status()));
    }
    let body = read_response(resp, MAX_RECEIPT_ANSWER, MinRate::new(Duration::from_secs(10), 1 << 10))
        .await
        .map_err(|e| format!("host {}'s answer to an upload: {e}", host.id))?;
    let receipt = serde_json::from_slice::<StoredResponse>(&body)
        .map(|r| r.receipt)
        .map_err(|_| format!("host {} sent no readable receipt", host.id))?;
    // The shard counts as stored only with the host's receipt for exactly this upload.
    crate::api::check_receipt(host.id, host.receipt_key, &receipt, shard, size, &grant_hash)
        .map_err(|why| format!("host {} stored a shard but its receipt is not valid: {why}", host.id))?;
    Ok(receipt)
}

/// What a conditional delete came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// Deleted now, or not there.
    Gone,
    /// The host kept it: another upload wrote it too, or it cannot tell (it restarted, or
    /// knows no conditional deletes).
    Kept,
    /// The host could not be asked or failed; try again later.
    Failed,
}

/// Deletes `shard` from `host` only if the upload under the put grant whose hash is
/// `put_grant` alone wrote the host's copy (see [`scatter_proto::Op::DeleteIf`]).
pub async fn delete_if(shared: &Arc<Shared>, host: &HostRow, shard: &ShardId, put_grant: &[u8; 32]) -> Deleted {
    let g = Grant::delete_if_written_by(host.id, *shard, put_grant, now() + GRANT_TTL).sign(&shared.signing);
    let sent = shared
        .http
        .delete(format!("{}/shards/{shard}", host.address))
        .header(GRANT_HEADER, g.0)
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() || r.status() == reqwest::StatusCode::NOT_FOUND => {
            tracing::debug!(host = %host.id, %shard, status = %r.status(), "an upload given back is gone");
            Deleted::Gone
        }
        // 403: a host from before conditional deletes refuses the grant as malformed.
        Ok(r) if matches!(r.status(), reqwest::StatusCode::CONFLICT | reqwest::StatusCode::FORBIDDEN) => {
            tracing::debug!(host = %host.id, %shard, status = %r.status(), "the host keeps an upload given back");
            Deleted::Kept
        }
        Ok(r) => {
            tracing::debug!(host = %host.id, %shard, status = %r.status(), "host failed a conditional delete");
            Deleted::Failed
        }
        Err(e) => {
            tracing::debug!(host = %host.id, %shard, error = %e, "host unreachable for a conditional delete");
            Deleted::Failed
        }
    }
}

/// Deletes `shard` from `host`: true once it is gone (deleted now, or not there).
pub async fn delete(shared: &Arc<Shared>, host: &HostRow, shard: &ShardId) -> bool {
    let g = grant(host, shard, Op::Delete, 0).sign(&shared.signing);
    match shared.http.delete(format!("{}/shards/{shard}", host.address)).header(GRANT_HEADER, g.0).send().await {
        Ok(r) if r.status().is_success() || r.status() == reqwest::StatusCode::NOT_FOUND => true,
        Ok(r) => {
            tracing::debug!(host = %host.id, %shard, status = %r.status(), "host refused a delete");
            false
        }
        Err(e) => {
            tracing::debug!(host = %host.id, %shard, error = %e, "host unreachable for a delete");
            false
        }
    }
}
