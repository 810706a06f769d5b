//! Shard transfers to and from hosts.
//!
//! Strategy: one attempt per shard and host with a timeout; the pipelines decide what to do
//! on failure (another host for a put, another shard for a get). Every failure says which host
//! and why, and whether the shard itself is bad (so it can be reported for repair).

use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use scatter_core::ShardId;
use scatter_proto::api::{ErrorBody, GRANT_HEADER};
use scatter_proto::SignedGrant;

use crate::coordinator::root_cause;

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
}

/// An HTTP client for shard transfers, with pooled keep-alive connections.
#[derive(Clone)]
pub struct Hosts {
    http: reqwest::Client,
}

impl Hosts {
    /// A new client.
    pub fn new() -> Result<Self, crate::ClientError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(8)
            .build()
            .map_err(|e| crate::ClientError::Invalid(format!("HTTP client setup failed: {e}")))?;
        Ok(Self { http })
    }

    /// Stores a shard.
    pub async fn put(
        &self,
        address: &str,
        id: &ShardId,
        grant: &SignedGrant,
        data: Bytes,
    ) -> Result<(), TransferError> {
        let resp = self
            .http
            .put(format!("{address}/shards/{id}"))
            .header(GRANT_HEADER, &grant.0)
            .body(data)
            .send()
            .await
            .map_err(|e| TransferError::Unreachable(root_cause(&e)))?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(refusal(resp).await)
    }

    /// Reads a shard (or a range of it). A full read is checked against the shard's hash.
    pub async fn get(
        &self,
        address: &str,
        id: &ShardId,
        grant: &SignedGrant,
        range: Option<Range<u64>>,
    ) -> Result<Bytes, TransferError> {
        let mut req = self.http.get(format!("{address}/shards/{id}")).header(GRANT_HEADER, &grant.0);
        if let Some(r) = &range {
            if r.is_empty() {
                return Ok(Bytes::new());
            }
            req = req.header(reqwest::header::RANGE, format!("bytes={}-{}", r.start, r.end - 1));
        }
        let resp = req.send().await.map_err(|e| TransferError::Unreachable(root_cause(&e)))?;
        if !resp.status().is_success() {
            return Err(refusal(resp).await);
        }
        let body = resp.bytes().await.map_err(|e| TransferError::Unreachable(root_cause(&e)))?;
        match &range {
            Some(r) if body.len() as u64 != r.end - r.start => {
                Err(TransferError::Refused(format!("sent {} bytes for a {}-byte range", body.len(), r.end - r.start)))
            }
            None if ShardId::of(&body) != *id => {
                Err(TransferError::Corrupt("bytes do not match the shard's hash".into()))
            }
            _ => Ok(body),
        }
    }
}

async fn refusal(resp: reqwest::Response) -> TransferError {
    let status = resp.status();
    let body: Option<ErrorBody> = resp.json().await.ok();
    match body {
        Some(b) if b.code == "corrupt" => TransferError::Corrupt(b.error),
        Some(b) => TransferError::Refused(b.error),
        None => TransferError::Refused(status.to_string()),
    }
}
