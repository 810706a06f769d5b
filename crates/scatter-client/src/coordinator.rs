//! Typed calls to the coordinator's API.
//!
//! Strategy: each call goes to one of the grid's coordinators, failing over between them as
//! [`scatter_net::failover`] describes (sticky to the one that answered last; on to the next
//! on a connection-level failure; API errors are answers). Each attempt has a 60 s timeout
//! (5 s to connect) and its own freshly signed credential. When no coordinator can be reached
//! the call fails with [`ClientError::Unreachable`]; error replies carry the coordinator's own
//! sentence.
//!
//! Which calls are sent again after they may have reached a coordinator that died before
//! answering ([`Repeat::Safe`]), and which are not ([`Repeat::Unsafe`]: the user gets
//! [`ClientError::Interrupted`] and checks the outcome):
//!
//! - Safe: every read (`GET`, and the `POST`s that only read: chunk lookups, locate);
//!   writes that set a value (policy, trust, keepalive, host drain and disable, user
//!   disable, operator independence); writes of a set (snapshot references, `ON CONFLICT DO
//!   NOTHING`); closing a session (closing a closed one is done); pack commits (keyed by the
//!   pack id: the coordinator answers a repeat "done"; if the first died after using up its
//!   placements and before recording the pack, the repeat is refused with "upload it again",
//!   which is also what the user must do then); forget (a snapshot forgotten twice is
//!   forgotten; only the count reported can be lower); prune (its sweep is repeatable;
//!   the repack plan it makes is held in the memory of the coordinator that answered, which
//!   later calls stick to: if that one dies, the repack's commits are refused with "run
//!   prune again"); reports of bad shards (hints the coordinator checks itself); and two whose
//!   repeat leaves something that lapses by itself: a new session (an unused one ends after
//!   the session TTL) and a placement (its reservation lapses with its grants, 10 minutes,
//!   and counts against the caller's placement cap meanwhile, as any interrupted put's does);
//!   giving placements back (a repeat finds nothing more of the caller's to drop).
//! - Unsafe: registering (the token is spent by the first: a repeat is refused, and the
//!   device key registered then has no profile); object commits (a repeat adds a second
//!   version); removing an object (a repeat answers "no object has this name");
//!   snapshot commits (a repeat is refused as an existing snapshot); invites and new
//!   operators (a repeat makes a second token or is refused as a taken name); removing a
//!   user (a repeat answers that the user does not exist).
//!
//! Credentials are bound to the method, the path with its query, and the body, not to the
//! coordinator's address: the same request is valid on every coordinator of the grid. It is
//! still signed anew per attempt, so no coordinator sees a credential twice.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::Method;
use scatter_core::{ChunkId, DeviceId, UserId};
use scatter_net::failover::{Failover, Failure, Repeat};
use scatter_net::CoordinatorUrls;
use scatter_proto::api::*;
use scatter_proto::auth::{Credential, Request, LIFETIME};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::ClientError;

/// A connection to the grid's coordinators, optionally authenticated as a user.
#[derive(Clone)]
pub struct Coordinator {
    failover: Arc<Failover>,
    auth: Option<Arc<Signer>>,
    ca: Option<scatter_net::Fingerprint>,
    /// One host client for every transfer of this process: its connections (and TLS
    /// sessions) to hosts are reused. A gateway stores every multipart part and serves every
    /// GET with its own pipeline; a client each made 6 new TLS connections per part.
    hosts: Arc<std::sync::OnceLock<crate::hosts::Hosts>>,
}

/// Signs this device's request credentials: a new one for every request, bound to its
/// method, path and query, and body.
pub struct Signer {
    device: DeviceId,
    key: ed25519_dalek::SigningKey,
    grid: [u8; 32],
}

impl Signer {
    /// Signs as `device` with its key `key` on the grid with CA `ca`.
    pub fn new(device: DeviceId, key: ed25519_dalek::SigningKey, ca: Option<scatter_net::Fingerprint>) -> Self {
        Self { device, key, grid: ca.map(|fp| fp.0).unwrap_or([0; 32]) }
    }

    /// The `Authorization` value for one request.
    fn credential(&self, method: &str, target: &str, body: &[u8]) -> Result<String, ClientError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let c = Credential::new(self.device, now + LIFETIME, body);
        let text = c
            .sign(&self.key, &self.grid, Request { method, target })
            .map_err(|_| ClientError::Invalid(format!("no credential can be made for {method} {target:.80}")))?;
        Ok(format!("Scatter {text}"))
    }

    /// Puts a credential for `req` in its `Authorization` header.
    fn sign(&self, req: &mut reqwest::Request) -> Result<(), ClientError> {
        let url = req.url();
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let body = req.body().and_then(|b| b.as_bytes()).unwrap_or_default();
        let value = self.credential(req.method().as_str(), &target, body)?;
        let value = reqwest::header::HeaderValue::from_str(&value)
            .map_err(|_| ClientError::Invalid("the credential is not a valid header value".into()))?;
        req.headers_mut().insert(reqwest::header::AUTHORIZATION, value);
        Ok(())
    }
}

impl Coordinator {
    /// A client for the coordinators at `urls`, authenticated by the grid CA with fingerprint
    /// `ca` (`None`: plain HTTP, for grids run with `--insecure`).
    pub fn new(
        urls: &CoordinatorUrls,
        ca: Option<scatter_net::Fingerprint>,
        auth: Option<Arc<Signer>>,
    ) -> Result<Self, ClientError> {
        let http = scatter_net::http_client(ca, scatter_net::Peer::Coordinator)
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ClientError::Invalid(format!("HTTP client setup failed: {e}")))?;
        Ok(Self { failover: Arc::new(Failover::new(http, urls.clone())), auth, ca, hosts: Arc::default() })
    }

    /// Has the grid CA certify an S3 gateway's `names` for its P-256 `public_key` (raw, hex).
    pub async fn gateway_cert(&self, names: Vec<String>, public_key: String) -> Result<HostCertResponse, ClientError> {
        self.post(Repeat::Safe, "/v1/gateway/cert", &GatewayCertRequest { names, public_key }).await
    }

    /// The names the caller's gateways hold (every account's for an admin).
    pub async fn gateway_names(&self) -> Result<GatewayNamesResponse, ClientError> {
        self.get("/v1/gateway/names", &[]).await
    }

    /// Gives up a name the caller's gateways hold (an admin: any account's).
    pub async fn release_gateway_name(&self, name: String) -> Result<GatewayNameEntry, ClientError> {
        self.post(Repeat::Safe, "/v1/gateway/names/release", &ReleaseGatewayNameRequest { name }).await
    }

    /// A client for the hosts of this coordinator's grid (trusting the same CA).
    pub fn hosts(&self) -> Result<crate::hosts::Hosts, ClientError> {
        if let Some(h) = self.hosts.get() {
            return Ok(h.clone());
        }
        let made = crate::hosts::Hosts::new(self.ca)?;
        Ok(self.hosts.get_or_init(|| made).clone())
    }

    /// The coordinators' URLs.
    pub fn urls(&self) -> &CoordinatorUrls {
        self.failover.urls()
    }

    /// Sends `method path?query` with `body` (JSON) to a coordinator, signed per attempt, and
    /// reads its answer.
    async fn call<T: DeserializeOwned>(
        &self,
        repeat: Repeat,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<T, ClientError> {
        let build = |http: &reqwest::Client, base: &str| {
            let mut req = http.request(method.clone(), format!("{base}{path}"));
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(body) = &body {
                req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone());
            }
            let mut req = req.build().map_err(|e| ClientError::Invalid(format!("the request cannot be made: {e}")))?;
            if let Some(signer) = &self.auth {
                signer.sign(&mut req)?;
            }
            Ok(req)
        };
        let reply = self.failover.send(repeat, build).await.map_err(|e| match e {
            Failure::Request(e) => e,
            Failure::Unreachable(u) => ClientError::Unreachable(u),
            Failure::Interrupted(i) => ClientError::Interrupted(i),
        })?;
        let (base, resp) = (reply.url, reply.response);
        let status = resp.status();
        if status.is_success() {
            return resp.json().await.map_err(|e| ClientError::Api {
                status: status.as_u16(),
                code: ErrorCode::BadReply,
                message: format!("the coordinator sent an unreadable reply ({e}); is {base} a Scatter coordinator?"),
            });
        }
        let body: Option<ErrorBody> = resp.json().await.ok();
        Err(match body {
            Some(b) => ClientError::Api { status: status.as_u16(), code: b.code, message: b.error },
            None => ClientError::Api {
                status: status.as_u16(),
                code: ErrorCode::Http,
                message: format!("the coordinator answered {status}; is {base} a Scatter coordinator?"),
            },
        })
    }

    /// `GET path?query`.
    async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> Result<T, ClientError> {
        self.call(Repeat::Safe, Method::GET, path, query, None).await
    }

    /// `POST path` with `body` as JSON.
    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        repeat: Repeat,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(repeat, Method::POST, path, &[], Some(json(path, body)?)).await
    }

    /// Redeems an invite: registers the user's age public key and this device's Ed25519 key.
    pub async fn register(
        &self,
        token: &str,
        public_key: &str,
        device_key: &ed25519_dalek::VerifyingKey,
        device_name: &str,
        write_only: bool,
    ) -> Result<RegisterResponse, ClientError> {
        let req = RegisterRequest {
            token: token.into(),
            public_key: public_key.into(),
            device_key: hex::encode(device_key.to_bytes()),
            device_name: device_name.into(),
            write_only,
        };
        self.post(Repeat::Unsafe, "/v1/users/register", &req).await
    }

    /// Registers this device with a recovery code, which signs the claim (the code itself is
    /// not sent); returns the account and the key file kept for the code.
    pub async fn recover(
        &self,
        code: &scatter_core::recovery::RecoveryCode,
        device_key: &ed25519_dalek::VerifyingKey,
        device_name: &str,
    ) -> Result<RecoverResponse, ClientError> {
        let time = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let grid = self.ca.map(|fp| fp.0).unwrap_or([0; 32]);
        let claim = scatter_core::recovery::claim(&grid, device_key.as_bytes(), time);
        let req = RecoverRequest {
            verifier: hex::encode(code.verifier()),
            signature: hex::encode(code.sign(&claim)),
            time,
            device_key: hex::encode(device_key.to_bytes()),
            device_name: device_name.into(),
        };
        self.post(Repeat::Unsafe, "/v1/users/recover", &req).await
    }

    /// The caller's devices.
    pub async fn devices(&self) -> Result<DevicesResponse, ClientError> {
        self.get("/v1/devices", &[]).await
    }

    /// Revokes one of the caller's other devices, with the revocation signed by the owner key
    /// of `keys` (the user's), which the coordinator requires once the account has one.
    pub async fn revoke_device(
        &self,
        user: UserId,
        device: DeviceId,
        keys: &scatter_core::keys::UserKeys,
    ) -> Result<(), ClientError> {
        let grid = self.ca.map(|fp| fp.0).unwrap_or([0; 32]);
        let revocation = scatter_core::recovery::revocation(&grid, user.0, device.0);
        let req = RevokeDeviceRequest {
            device,
            owner: Some(hex::encode(scatter_core::recovery::owner(keys.write_keys()))),
            proof: Some(hex::encode(scatter_core::recovery::sign_change(keys.write_keys(), &revocation))),
        };
        let _: serde_json::Value = self.post(Repeat::Safe, "/v1/devices/revoke", &req).await?;
        Ok(())
    }

    /// The caller's recovery code, as kept for its devices.
    pub async fn recovery_code(&self) -> Result<RecoveryCodeResponse, ClientError> {
        self.get("/v1/recovery", &[]).await
    }

    /// Sets a new recovery code and the key file sealed to it (`replace`), or re-seals the key
    /// file for the same code.
    pub async fn set_recovery_code(&self, req: &RecoveryCodeRequest, replace: bool) -> Result<(), ClientError> {
        let _: serde_json::Value = match replace {
            true => self.call(Repeat::Safe, Method::PUT, "/v1/recovery", &[], Some(json("/v1/recovery", req)?)).await?,
            false => self.post(Repeat::Safe, "/v1/recovery/escrow", req).await?,
        };
        Ok(())
    }

    /// A one-time token that adds a device to `user` (admins).
    pub async fn device_invite(&self, user: UserId) -> Result<InviteResponse, ClientError> {
        self.post(Repeat::Unsafe, "/v1/admin/users/device", &DeviceInviteRequest { user }).await
    }

    /// The grid's hosts.
    pub async fn status(&self) -> Result<StatusResponse, ClientError> {
        self.get("/v1/status", &[]).await
    }

    /// The grid's durability rule and the code new data uses by default.
    pub async fn grid(&self) -> Result<GridInfo, ClientError> {
        self.get("/v1/grid", &[]).await
    }

    /// How much more the grid can take under its durability rule (admins).
    pub async fn capacity(&self) -> Result<CapacityResponse, ClientError> {
        self.get("/v1/admin/capacity", &[]).await
    }

    /// The caller's stored placement policy.
    pub async fn policy(&self) -> Result<Policy, ClientError> {
        self.get("/v1/policy", &[]).await
    }

    /// Stores the caller's placement policy (an empty one clears it).
    pub async fn set_policy(&self, policy: &Policy) -> Result<Policy, ClientError> {
        self.call(Repeat::Safe, Method::PUT, "/v1/policy", &[], Some(json("/v1/policy", policy)?)).await
    }

    /// Starts a write session with a wrapped data key.
    pub async fn create_session(&self, wrapped_key: &[u8]) -> Result<CreateSessionResponse, ClientError> {
        self.post(Repeat::Safe, "/v1/sessions", &CreateSessionRequest { wrapped_key: B64.encode(wrapped_key) }).await
    }

    /// Keeps a write session open.
    pub async fn keep_session(&self, session: u64) -> Result<(), ClientError> {
        let _: serde_json::Value =
            self.post(Repeat::Safe, "/v1/sessions/keepalive", &SessionRequest { session }).await?;
        Ok(())
    }

    /// Ends a write session.
    pub async fn close_session(&self, session: u64) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post(Repeat::Safe, "/v1/sessions/close", &SessionRequest { session }).await?;
        Ok(())
    }

    /// Records chunks the snapshot of `session` references.
    pub async fn snapshot_refs(&self, session: u64, chunks: Vec<ChunkId>) -> Result<(), ClientError> {
        let _: serde_json::Value =
            self.post(Repeat::Safe, "/v1/snapshots/refs", &SnapshotRefsRequest { session, chunks }).await?;
        Ok(())
    }

    /// Makes a snapshot visible.
    pub async fn commit_snapshot(&self, req: &CommitSnapshotRequest) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post(Repeat::Unsafe, "/v1/snapshots/commit", req).await?;
        Ok(())
    }

    /// The user's snapshots, sealed, oldest first.
    pub async fn snapshots(&self) -> Result<Vec<SnapshotEntry>, ClientError> {
        let r: SnapshotsResponse = self.get("/v1/snapshots", &[]).await?;
        Ok(r.snapshots)
    }

    /// Drops snapshots.
    pub async fn forget(&self, ids: Vec<String>) -> Result<u64, ClientError> {
        let r: ForgetResponse = self.post(Repeat::Safe, "/v1/snapshots/forget", &ForgetRequest { ids }).await?;
        Ok(r.removed)
    }

    /// Starts draining a host (admins only); refused when the other hosts cannot take its
    /// shards, unless `force`. Returns what stays degraded, for a forced drain.
    pub async fn drain(&self, host: scatter_core::HostId, force: bool) -> Result<Option<String>, ClientError> {
        let r: DrainResponse = self.post(Repeat::Safe, "/v1/admin/hosts/drain", &DrainRequest { host, force }).await?;
        Ok(r.warning)
    }

    /// Disables a host: it gets nothing new and its shards are rebuilt elsewhere (admins only).
    pub async fn disable_host(&self, host: scatter_core::HostId) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post(Repeat::Safe, "/v1/admin/hosts/disable", &HostRequest { host }).await?;
        Ok(())
    }

    /// Makes a draining or disabled host active again; returns the state it was in (admins
    /// only).
    pub async fn enable_host(&self, host: scatter_core::HostId) -> Result<String, ClientError> {
        let r: serde_json::Value = self.post(Repeat::Safe, "/v1/admin/hosts/enable", &HostRequest { host }).await?;
        Ok(r["was"].as_str().unwrap_or_default().to_owned())
    }

    /// Accepts a disabled user's requests again (admins only).
    pub async fn enable_user(&self, user: scatter_core::UserId) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post(Repeat::Safe, "/v1/admin/users/enable", &UserRequest { user }).await?;
        Ok(())
    }

    /// Sets or clears a user's quota (admins only).
    pub async fn set_quota(&self, user: scatter_core::UserId, quota: Option<u64>) -> Result<(), ClientError> {
        let _: serde_json::Value =
            self.post(Repeat::Safe, "/v1/admin/users/quota", &QuotaRequest { user, quota }).await?;
        Ok(())
    }

    /// The invites not used yet (admins only).
    pub async fn invites(&self) -> Result<Vec<InviteEntry>, ClientError> {
        self.get("/v1/admin/invites", &[]).await
    }

    /// Revokes the unused invite whose id starts with `id`; returns its full id (admins only).
    pub async fn remove_invite(&self, id: &str) -> Result<String, ClientError> {
        let r: serde_json::Value =
            self.post(Repeat::Safe, "/v1/admin/invites/remove", &InviteIdRequest { id: id.to_owned() }).await?;
        Ok(r["id"].as_str().unwrap_or(id).to_owned())
    }

    /// Invites a user; returns the one-time token (admins only).
    pub async fn invite(&self, req: &InviteRequest) -> Result<String, ClientError> {
        let r: InviteResponse = self.post(Repeat::Unsafe, "/v1/admin/users", req).await?;
        Ok(r.token)
    }

    /// The newest security events, oldest first (admins only).
    pub async fn events(&self, limit: usize) -> Result<Vec<serde_json::Value>, ClientError> {
        self.get("/v1/admin/events", &[("limit", &limit.to_string())]).await
    }

    /// Every user (admins only).
    pub async fn users(&self) -> Result<Vec<UserEntry>, ClientError> {
        self.get("/v1/admin/users", &[]).await
    }

    /// Disables a user (admins only).
    pub async fn disable_user(&self, user: scatter_core::UserId) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post(Repeat::Safe, "/v1/admin/users/disable", &UserRequest { user }).await?;
        Ok(())
    }

    /// Every lock and expiry the coordinator holds, of one user or all (admins only).
    pub async fn locks(&self, user: Option<scatter_core::UserId>) -> Result<Vec<LockEntry>, ClientError> {
        match user {
            Some(u) => self.get("/v1/admin/locks", &[("user", &u.0.to_string())]).await,
            None => self.get("/v1/admin/locks", &[]).await,
        }
    }

    /// Lifts a governance lock, with a reason for the events (admins only; a compliance
    /// lock is refused).
    pub async fn lift_lock(&self, req: &LiftLockRequest) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post(Repeat::Safe, "/v1/admin/locks/lift", req).await?;
        Ok(())
    }

    /// Sets a user's lock maxima and default lock; returns them as they now apply (admins
    /// only).
    pub async fn set_lock_limits(&self, req: &LockLimitsRequest) -> Result<LockLimits, ClientError> {
        self.post(Repeat::Safe, "/v1/admin/users/locks", req).await
    }

    /// Extends the lock of one of your snapshots; until when it holds now (unix seconds), if
    /// the coordinator says.
    pub async fn extend_lock(&self, req: &ExtendLockRequest) -> Result<Option<u64>, ClientError> {
        let answer: serde_json::Value = self.post(Repeat::Safe, "/v1/snapshots/lock", req).await?;
        Ok(answer["until"].as_u64())
    }

    /// Removes a user and its data (admins only).
    pub async fn remove_user(&self, user: scatter_core::UserId) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post(Repeat::Unsafe, "/v1/admin/users/remove", &UserRequest { user }).await?;
        Ok(())
    }

    /// Registers an operator; returns it with the join token for its hosts (admins only).
    pub async fn add_operator(&self, req: &OperatorRequest) -> Result<OperatorResponse, ClientError> {
        self.post(Repeat::Unsafe, "/v1/admin/operators", req).await
    }

    /// Every operator, with its hosts count (admins only).
    pub async fn operators(&self) -> Result<Vec<OperatorEntry>, ClientError> {
        self.get("/v1/admin/operators", &[]).await
    }

    /// Declares whether an operator's hosts are separate failure domains (admins only).
    pub async fn set_operator_independent(&self, name: &str, independent: bool) -> Result<(), ClientError> {
        let req = OperatorIndependentRequest { name: name.into(), independent };
        let _: serde_json::Value = self.post(Repeat::Safe, "/v1/admin/operators/independent", &req).await?;
        Ok(())
    }

    /// A one-time login link to the coordinator's web dashboard, for this account.
    pub async fn dashboard_link(&self) -> Result<scatter_proto::api::DashboardLinkResponse, ClientError> {
        self.post(Repeat::Safe, "/v1/dashboard/link", &serde_json::json!({})).await
    }

    /// A billing period's statement, everyone's or one user's or host's (admins only).
    pub async fn billing_statement(
        &self,
        period: Option<&str>,
        user: Option<UserId>,
        host: Option<scatter_core::HostId>,
    ) -> Result<scatter_proto::billing::Statement, ClientError> {
        let (user, host) = (user.map(|u| u.to_string()), host.map(|h| h.to_string()));
        let mut q: Vec<(&str, &str)> = Vec::new();
        q.extend(period.map(|p| ("period", p)));
        q.extend(user.as_deref().map(|u| ("user", u)));
        q.extend(host.as_deref().map(|h| ("host", h)));
        self.get("/v1/admin/billing", &q).await
    }

    /// Raw usage records of a period (all periods if none), of one user if given (admins only).
    pub async fn usage_records(
        &self,
        period: Option<&str>,
        user: Option<UserId>,
    ) -> Result<Vec<scatter_proto::billing::UsageRecord>, ClientError> {
        let user = user.map(|u| u.to_string());
        let mut q: Vec<(&str, &str)> = Vec::new();
        q.extend(period.map(|p| ("period", p)));
        q.extend(user.as_deref().map(|u| ("user", u)));
        self.get("/v1/admin/billing/records", &q).await
    }

    /// Every rate card (admins only).
    pub async fn rate_cards(&self) -> Result<Vec<scatter_proto::billing::RateCard>, ClientError> {
        self.get("/v1/admin/billing/rates", &[]).await
    }

    /// Adds a rate card (admins only).
    pub async fn set_rate_card(
        &self,
        card: &scatter_proto::billing::RateCardRequest,
    ) -> Result<scatter_proto::billing::RateCard, ClientError> {
        self.post(Repeat::Safe, "/v1/admin/billing/rates", card).await
    }

    /// Closes a billing period that is over (admins only).
    pub async fn close_period(&self, period: &str) -> Result<serde_json::Value, ClientError> {
        let path = "/v1/admin/billing/close";
        self.call(Repeat::Safe, Method::POST, path, &[("period", period)], Some(json(path, &serde_json::json!({}))?))
            .await
    }

    /// The caller's own usage, quota and charges so far this period.
    pub async fn usage(&self) -> Result<scatter_proto::billing::UsageResponse, ClientError> {
        self.get("/v1/usage", &[]).await
    }

    /// The grid's data health (admins only).
    pub async fn admin_health(&self) -> Result<serde_json::Value, ClientError> {
        self.get("/v1/admin/health", &[]).await
    }

    /// Takes a catalog backup now (admins only).
    pub async fn catalog_backup(&self) -> Result<scatter_proto::api::CatalogBackupResponse, ClientError> {
        self.post(Repeat::Safe, "/v1/admin/catalog-backup", &serde_json::json!({})).await
    }

    /// Sweeps unreferenced chunks; lists packs to repack.
    pub async fn prune(&self, max_unused_percent: u8) -> Result<PruneResponse, ClientError> {
        self.post(Repeat::Safe, "/v1/prune", &PruneRequest { max_unused_percent }).await
    }

    /// Replaces the sealed record of snapshot `id` (same session key), keeping everything else.
    pub async fn replace_snapshot_record(&self, id: &str, record: &[u8]) -> Result<(), ClientError> {
        let req = ReplaceSnapshotRecordRequest { id: id.to_owned(), record: B64.encode(record) };
        let _: serde_json::Value = self.post(Repeat::Safe, "/v1/snapshots/record", &req).await?;
        Ok(())
    }

    /// Which of these chunks are already stored. With the open write `session` that will
    /// reference them, the hits count as its references (a prune keeps them meanwhile).
    pub async fn lookup_chunks(&self, session: Option<u64>, ids: Vec<ChunkId>) -> Result<Vec<ChunkId>, ClientError> {
        let r: LookupChunksResponse =
            self.post(Repeat::Safe, "/v1/chunks/lookup", &LookupChunksRequest { ids, session }).await?;
        Ok(r.known)
    }

    /// The readers and appenders of the caller's data.
    pub async fn delegates(&self) -> Result<Vec<DelegateEntry>, ClientError> {
        self.get("/v1/delegates", &[]).await
    }

    /// Disables one of the caller's delegates: its requests are refused and its write
    /// sessions end (only the admin enables it again).
    pub async fn disable_delegate(&self, user: scatter_core::UserId) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post(Repeat::Safe, "/v1/delegates/disable", &UserRequest { user }).await?;
        Ok(())
    }

    /// Trusts (or stops trusting) a delegate's snapshots as the caller's own.
    pub async fn set_trusted(&self, user: scatter_core::UserId, trusted: bool) -> Result<(), ClientError> {
        let _: serde_json::Value =
            self.post(Repeat::Safe, "/v1/delegates/trust", &TrustRequest { user, trusted }).await?;
        Ok(())
    }

    /// Where to store a pack's shards.
    pub async fn place(&self, req: &PlaceRequest) -> Result<PlaceResponse, ClientError> {
        self.post(Repeat::Safe, "/v1/packs/place", req).await
    }

    /// Gives back placements this account will not commit (their upload failed or was
    /// interrupted), so what they uploaded is deleted from hosts now. Returns how many of the
    /// caller's were dropped.
    pub async fn abandon(&self, shards: &[(scatter_core::HostId, scatter_core::ShardId)]) -> Result<u64, ClientError> {
        let shards = shards.iter().map(|(host, shard)| PlacedShard { host: *host, shard: *shard }).collect();
        let r: AbandonResponse = self.post(Repeat::Safe, "/v1/packs/abandon", &AbandonRequest { shards }).await?;
        Ok(r.dropped)
    }

    /// Records a stored pack.
    pub async fn commit_pack(&self, req: &CommitPackRequest) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post(Repeat::Safe, "/v1/packs/commit", req).await?;
        Ok(())
    }

    /// Makes an object visible.
    pub async fn commit_object(&self, req: &CommitObjectRequest) -> Result<u64, ClientError> {
        let r: CommitObjectResponse = self.post(Repeat::Unsafe, "/v1/objects/commit", req).await?;
        Ok(r.version)
    }

    /// Commits several objects in one transaction (at most
    /// [`scatter_proto::api::MAX_BATCH_COMMITS`]); each one's version or refusal, in order.
    pub async fn commit_objects(
        &self,
        objects: Vec<CommitObjectRequest>,
    ) -> Result<Vec<Result<u64, ClientError>>, ClientError> {
        let asked = objects.len();
        let r: CommitObjectsResponse =
            self.post(Repeat::Unsafe, "/v1/objects/commit-many", &CommitObjectsRequest { objects }).await?;
        if r.results.len() != asked {
            return Err(ClientError::Invalid(format!(
                "the coordinator answered {} outcomes for {asked} commits; nothing can be told about them, run the puts again",
                r.results.len()
            )));
        }
        Ok(r.results
            .into_iter()
            .map(|o| match (o.version, o.error) {
                (Some(version), None) => Ok(version),
                (_, Some(e)) => {
                    Err(ClientError::Api { status: o.status.unwrap_or(500), code: e.code, message: e.error })
                }
                (None, None) => Err(ClientError::Invalid(
                    "the coordinator answered a commit with neither a version nor an error".into(),
                )),
            })
            .collect())
    }

    /// Objects whose encrypted name starts with `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<ListResponse, ClientError> {
        self.get("/v1/objects", &[("prefix", prefix)]).await
    }

    /// One object's manifest and key: its latest version, or `version`.
    pub async fn object(&self, name: &str, version: Option<u64>) -> Result<ObjectResponse, ClientError> {
        match version {
            None => self.get("/v1/object", &[("name", name)]).await,
            Some(v) => self.get("/v1/object", &[("name", name), ("version", &v.to_string())]).await,
        }
    }

    /// Every version of one object still stored, oldest first.
    pub async fn versions(&self, name: &str) -> Result<ListResponse, ClientError> {
        self.get("/v1/object/versions", &[("name", name)]).await
    }

    /// Removes every version of an object.
    pub async fn remove(&self, name: &str) -> Result<RemoveResponse, ClientError> {
        self.call(Repeat::Unsafe, Method::DELETE, "/v1/object", &[("name", name)], None).await
    }

    /// Where chunks are, with read grants.
    pub async fn locate(&self, chunks: Vec<ChunkId>) -> Result<LocateResponse, ClientError> {
        self.post(Repeat::Safe, "/v1/chunks/locate", &LocateRequest { chunks, read: true }).await
    }

    /// Which of `chunks` the index holds, and in which packs, with no grant to read them
    /// (nothing is charged): the packs come without their shards.
    pub async fn indexed(&self, chunks: Vec<ChunkId>) -> Result<LocateResponse, ClientError> {
        self.post(Repeat::Safe, "/v1/chunks/locate", &LocateRequest { chunks, read: false }).await
    }

    /// Grants to read shards `shards` (by index) of one of the user's packs whole, for a
    /// rebuild (a locate's grants cover only the located chunks' bytes); each is charged.
    pub async fn pack_grants(&self, pack: scatter_core::PackId, shards: Vec<u8>) -> Result<PackLocation, ClientError> {
        self.post(Repeat::Safe, "/v1/packs/grants", &PackGrantsRequest { pack, shards }).await
    }

    /// Reports a shard that failed on read.
    pub async fn report_shard(&self, req: &ReportShardRequest) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post(Repeat::Safe, "/v1/shards/report", req).await?;
        Ok(())
    }
}

/// `body` as JSON, serialized here (not by reqwest) so that credentials can be bound to the bytes.
fn json<B: Serialize>(path: &str, body: &B) -> Result<Bytes, ClientError> {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|e| ClientError::Invalid(format!("the request for {path} cannot be encoded: {e}")))
}

pub(crate) use scatter_net::root_cause;
