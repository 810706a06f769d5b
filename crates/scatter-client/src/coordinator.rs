//! Typed calls to the coordinator's API.
//!
//! Strategy: one attempt per call with a 60 s timeout; transport errors become
//! [`ClientError::Unreachable`], error replies carry the coordinator's own sentence.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use scatter_core::{ChunkId, UserId};
use scatter_proto::api::*;
use scatter_proto::auth::{Credential, Request, LIFETIME};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::ClientError;

/// A connection to the coordinator, optionally authenticated as a user.
#[derive(Clone)]
pub struct Coordinator {
    http: reqwest::Client,
    base: String,
    auth: Option<Arc<Signer>>,
    ca: Option<scatter_net::Fingerprint>,
}

/// Signs this device's request credentials: a new one for every request, bound to its
/// method, path and query, and body.
pub struct Signer {
    user: UserId,
    key: ed25519_dalek::SigningKey,
    grid: [u8; 32],
}

impl Signer {
    /// Signs as `user` with the device key `key` on the grid with CA `ca`.
    pub fn new(user: UserId, key: ed25519_dalek::SigningKey, ca: Option<scatter_net::Fingerprint>) -> Self {
        Self { user, key, grid: ca.map(|fp| fp.0).unwrap_or([0; 32]) }
    }

    /// The `Authorization` value for one request.
    fn credential(&self, method: &str, target: &str, body: &[u8]) -> Result<String, ClientError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let c = Credential::new(self.user, now + LIFETIME, body);
        let text = c
            .sign(&self.key, &self.grid, Request { method, target })
            .map_err(|_| ClientError::Invalid(format!("no credential can be made for {method} {target:.80}")))?;
        Ok(format!("Scatter {text}"))
    }
}

impl Coordinator {
    /// A client for the coordinator at `base`, authenticated by the grid CA with fingerprint
    /// `ca` (`None`: plain HTTP, for grids run with `--insecure`).
    pub fn new(
        base: &str,
        ca: Option<scatter_net::Fingerprint>,
        auth: Option<Arc<Signer>>,
    ) -> Result<Self, ClientError> {
        if reqwest::Url::parse(base).is_err() {
            return Err(ClientError::Invalid(format!("`{base}` is not a URL (expected e.g. https://127.0.0.1:7000)")));
        }
        let http = scatter_net::http_client(ca, scatter_net::Peer::Coordinator)
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ClientError::Invalid(format!("HTTP client setup failed: {e}")))?;
        Ok(Self { http, base: base.trim_end_matches('/').to_owned(), auth, ca })
    }

    /// A client for the hosts of this coordinator's grid (trusting the same CA).
    pub fn hosts(&self) -> Result<crate::hosts::Hosts, ClientError> {
        crate::hosts::Hosts::new(self.ca)
    }

    /// The coordinator's URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T, ClientError> {
        let mut req = req.build().map_err(|e| ClientError::Invalid(format!("the request cannot be made: {e}")))?;
        if let Some(signer) = &self.auth {
            let url = req.url();
            let target = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_owned(),
            };
            let body = req.body().and_then(|b| b.as_bytes()).unwrap_or_default();
            let value = signer.credential(req.method().as_str(), &target, body)?;
            let value = reqwest::header::HeaderValue::from_str(&value)
                .map_err(|_| ClientError::Invalid("the credential is not a valid header value".into()))?;
            req.headers_mut().insert(reqwest::header::AUTHORIZATION, value);
        }
        let resp = self
            .http
            .execute(req)
            .await
            .map_err(|e| ClientError::Unreachable { url: self.base.clone(), reason: root_cause(&e) })?;
        let status = resp.status();
        if status.is_success() {
            return resp.json().await.map_err(|e| ClientError::Api {
                status: status.as_u16(),
                code: "bad_reply".into(),
                message: format!(
                    "the coordinator sent an unreadable reply ({e}); is {} a Scatter coordinator?",
                    self.base
                ),
            });
        }
        let body: Option<ErrorBody> = resp.json().await.ok();
        Err(match body {
            Some(b) => ClientError::Api { status: status.as_u16(), code: b.code, message: b.error },
            None => ClientError::Api {
                status: status.as_u16(),
                code: "http".into(),
                message: format!("the coordinator answered {status}; is {} a Scatter coordinator?", self.base),
            },
        })
    }

    async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        // Serialized here, not by reqwest, so that the credential can be bound to the bytes.
        let body = serde_json::to_vec(body)
            .map_err(|e| ClientError::Invalid(format!("the request for {path} cannot be encoded: {e}")))?;
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.send(req).await
    }

    /// Redeems an invite: registers the user's age public key and this device's Ed25519 key.
    pub async fn register(
        &self,
        token: &str,
        public_key: &str,
        device_key: &ed25519_dalek::VerifyingKey,
    ) -> Result<RegisterResponse, ClientError> {
        let req = RegisterRequest {
            token: token.into(),
            public_key: public_key.into(),
            device_key: hex::encode(device_key.to_bytes()),
        };
        self.post("/v1/users/register", &req).await
    }

    /// The grid's hosts.
    pub async fn status(&self) -> Result<StatusResponse, ClientError> {
        self.send(self.http.get(format!("{}/v1/status", self.base))).await
    }

    /// The grid's durability rule and the code new data uses by default.
    pub async fn grid(&self) -> Result<GridInfo, ClientError> {
        self.send(self.http.get(format!("{}/v1/grid", self.base))).await
    }

    /// How much more the grid can take under its durability rule (admins).
    pub async fn capacity(&self) -> Result<CapacityResponse, ClientError> {
        self.send(self.http.get(format!("{}/v1/admin/capacity", self.base))).await
    }

    /// The caller's stored placement policy.
    pub async fn policy(&self) -> Result<Policy, ClientError> {
        self.send(self.http.get(format!("{}/v1/policy", self.base))).await
    }

    /// Stores the caller's placement policy (an empty one clears it).
    pub async fn set_policy(&self, policy: &Policy) -> Result<Policy, ClientError> {
        self.send(self.http.put(format!("{}/v1/policy", self.base)).json(policy)).await
    }

    /// Starts a write session with a wrapped data key.
    pub async fn create_session(&self, wrapped_key: &[u8]) -> Result<CreateSessionResponse, ClientError> {
        self.post("/v1/sessions", &CreateSessionRequest { wrapped_key: B64.encode(wrapped_key) }).await
    }

    /// Keeps a write session open.
    pub async fn keep_session(&self, session: u64) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post("/v1/sessions/keepalive", &SessionRequest { session }).await?;
        Ok(())
    }

    /// Ends a write session.
    pub async fn close_session(&self, session: u64) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post("/v1/sessions/close", &SessionRequest { session }).await?;
        Ok(())
    }

    /// Records chunks the snapshot of `session` references.
    pub async fn snapshot_refs(&self, session: u64, chunks: Vec<ChunkId>) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post("/v1/snapshots/refs", &SnapshotRefsRequest { session, chunks }).await?;
        Ok(())
    }

    /// Makes a snapshot visible.
    pub async fn commit_snapshot(&self, req: &CommitSnapshotRequest) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post("/v1/snapshots/commit", req).await?;
        Ok(())
    }

    /// The user's snapshots, sealed, oldest first.
    pub async fn snapshots(&self) -> Result<Vec<SnapshotEntry>, ClientError> {
        let r: SnapshotsResponse = self.send(self.http.get(format!("{}/v1/snapshots", self.base))).await?;
        Ok(r.snapshots)
    }

    /// Drops snapshots.
    pub async fn forget(&self, ids: Vec<String>) -> Result<u64, ClientError> {
        let r: ForgetResponse = self.post("/v1/snapshots/forget", &ForgetRequest { ids }).await?;
        Ok(r.removed)
    }

    /// Starts draining a host (admins only).
    pub async fn drain(&self, host: scatter_core::HostId) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post("/v1/admin/hosts/drain", &HostRequest { host }).await?;
        Ok(())
    }

    /// Disables a host: it gets nothing new and its shards are rebuilt elsewhere (admins only).
    pub async fn disable_host(&self, host: scatter_core::HostId) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post("/v1/admin/hosts/disable", &HostRequest { host }).await?;
        Ok(())
    }

    /// Invites a user; returns the one-time token (admins only).
    pub async fn invite(&self, req: &InviteRequest) -> Result<String, ClientError> {
        let r: InviteResponse = self.post("/v1/admin/users", req).await?;
        Ok(r.token)
    }

    /// The newest security events, oldest first (admins only).
    pub async fn events(&self, limit: usize) -> Result<Vec<serde_json::Value>, ClientError> {
        self.send(self.http.get(format!("{}/v1/admin/events", self.base)).query(&[("limit", limit)])).await
    }

    /// Every user (admins only).
    pub async fn users(&self) -> Result<Vec<UserEntry>, ClientError> {
        self.send(self.http.get(format!("{}/v1/admin/users", self.base))).await
    }

    /// Disables a user (admins only).
    pub async fn disable_user(&self, user: scatter_core::UserId) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post("/v1/admin/users/disable", &UserRequest { user }).await?;
        Ok(())
    }

    /// Removes a user and its data (admins only).
    pub async fn remove_user(&self, user: scatter_core::UserId) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post("/v1/admin/users/remove", &UserRequest { user }).await?;
        Ok(())
    }

    /// Registers an operator; returns it with the join token for its hosts (admins only).
    pub async fn add_operator(&self, req: &OperatorRequest) -> Result<OperatorResponse, ClientError> {
        self.post("/v1/admin/operators", req).await
    }

    /// Every operator, with its hosts count (admins only).
    pub async fn operators(&self) -> Result<Vec<OperatorEntry>, ClientError> {
        self.send(self.http.get(format!("{}/v1/admin/operators", self.base))).await
    }

    /// Declares whether an operator's hosts are separate failure domains (admins only).
    pub async fn set_operator_independent(&self, name: &str, independent: bool) -> Result<(), ClientError> {
        let req = OperatorIndependentRequest { name: name.into(), independent };
        let _: serde_json::Value = self.post("/v1/admin/operators/independent", &req).await?;
        Ok(())
    }

    /// The grid's data health (admins only).
    pub async fn admin_health(&self) -> Result<serde_json::Value, ClientError> {
        self.send(self.http.get(format!("{}/v1/admin/health", self.base))).await
    }

    /// Sweeps unreferenced chunks; lists packs to repack.
    pub async fn prune(&self, max_unused_percent: u8) -> Result<PruneResponse, ClientError> {
        self.post("/v1/prune", &PruneRequest { max_unused_percent }).await
    }

    /// Which of these chunks are already stored. With the open write `session` that will
    /// reference them, the hits count as its references (a prune keeps them meanwhile).
    pub async fn lookup_chunks(&self, session: Option<u64>, ids: Vec<ChunkId>) -> Result<Vec<ChunkId>, ClientError> {
        let r: LookupChunksResponse = self.post("/v1/chunks/lookup", &LookupChunksRequest { ids, session }).await?;
        Ok(r.known)
    }

    /// The readers and appenders of the caller's data.
    pub async fn delegates(&self) -> Result<Vec<DelegateEntry>, ClientError> {
        self.send(self.http.get(format!("{}/v1/delegates", self.base))).await
    }

    /// Trusts (or stops trusting) a delegate's snapshots as the caller's own.
    pub async fn set_trusted(&self, user: scatter_core::UserId, trusted: bool) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post("/v1/delegates/trust", &TrustRequest { user, trusted }).await?;
        Ok(())
    }

    /// Where to store a pack's shards.
    pub async fn place(&self, req: &PlaceRequest) -> Result<PlaceResponse, ClientError> {
        self.post("/v1/packs/place", req).await
    }

    /// Records a stored pack.
    pub async fn commit_pack(&self, req: &CommitPackRequest) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post("/v1/packs/commit", req).await?;
        Ok(())
    }

    /// Makes an object visible.
    pub async fn commit_object(&self, req: &CommitObjectRequest) -> Result<u64, ClientError> {
        let r: CommitObjectResponse = self.post("/v1/objects/commit", req).await?;
        Ok(r.version)
    }

    /// Objects whose encrypted name starts with `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<ListResponse, ClientError> {
        self.send(self.http.get(format!("{}/v1/objects", self.base)).query(&[("prefix", prefix)])).await
    }

    /// One object's manifest and key.
    pub async fn object(&self, name: &str) -> Result<ObjectResponse, ClientError> {
        self.send(self.http.get(format!("{}/v1/object", self.base)).query(&[("name", name)])).await
    }

    /// Removes every version of an object.
    pub async fn remove(&self, name: &str) -> Result<RemoveResponse, ClientError> {
        self.send(self.http.delete(format!("{}/v1/object", self.base)).query(&[("name", name)])).await
    }

    /// Where chunks are, with read grants.
    pub async fn locate(&self, chunks: Vec<ChunkId>) -> Result<LocateResponse, ClientError> {
        self.post("/v1/chunks/locate", &LocateRequest { chunks }).await
    }

    /// Reports a shard that failed on read.
    pub async fn report_shard(&self, req: &ReportShardRequest) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post("/v1/shards/report", req).await?;
        Ok(())
    }
}

pub(crate) use scatter_net::root_cause;
