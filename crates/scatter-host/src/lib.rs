//! Scatter's storage host: keeps shards as files on its own disk, serves store, ranged read
//! and delete to holders of a coordinator-signed grant, enforces its offered capacity, keeps
//! the coordinator's catalog backups ([`catalog`]), and heartbeats to the coordinator. [`run`] joins the grid on first start and serves until
//! shutdown.
//!
//! A host may be given the URLs of several coordinators sharing the catalog: every call goes
//! to the one that answered last and fails over to the next on a connection-level failure
//! (see [`scatter_net::failover`]). All of a host's calls are safe to send again after they
//! may have reached a coordinator that died ([`Repeat::Safe`]): heartbeats, inventories and
//! receipts report state, and a certificate request gets one more certificate. A join sent
//! again can register a second host row if the first one's answer was lost: that row never
//! heartbeats, holds nothing and shows as offline, as a join retried against one coordinator
//! always could.

mod api;
mod budget;
pub mod catalog;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};
use scatter_core::{ByteSize, HostId, ShardId};
use scatter_net::failover::{Failover, Failure, Repeat};
use scatter_proto::api::{
    host_header, ErrorBody, HeartbeatRequest, HeartbeatResponse, HostCertRequest, HostCertResponse, HostTerms,
    InventoryRequest, InventoryResponse, JoinRequest, JoinResponse, ReceiptsRequest, HOST_HEADER,
};
use scatter_proto::receipt::{Receipt, SignedReceipt, NO_GRANT};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::store::DiskStore;

/// How a host runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file these settings were read from (`--config`), if any; named in the
    /// startup log line.
    pub config_file: Option<PathBuf>,
    /// Where shards and the host's identity live.
    pub data_dir: PathBuf,
    /// The URLs of the grid's coordinators (one, or several sharing the catalog).
    pub coordinator: scatter_net::CoordinatorUrls,
    /// The grid's join token: needed to join, not once joined.
    pub join_token: Option<String>,
    /// Bytes offered to the grid.
    pub capacity: ByteSize,
    /// Failure-domain label.
    pub zone: String,
    /// Time between heartbeats.
    pub heartbeat: Duration,
    /// The URL clients should use; by default derived from the listening address.
    pub public_url: Option<String>,
    /// Accept a plain-HTTP coordinator and serve plain HTTP.
    pub insecure: bool,
    /// The terms offered: prices, declared bandwidth, and the end of the period (after which
    /// the host refuses new shards). Sent at join and with every heartbeat.
    pub terms: HostTerms,
}

/// Why the host could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The identity file is damaged.
    #[error("{0} is damaged; move it away to join the grid again as a new host")]
    Damaged(PathBuf),
    /// No coordinator could be reached (each URL tried, with its reason).
    #[error("{0}; check that a coordinator runs and the URLs are right")]
    Unreachable(Failure<reqwest::Error>),
    /// The coordinator refused to let this host join.
    #[error("the coordinator refused the join: {0}")]
    Refused(String),
    /// The coordinator answered, but could not serve the request now (a server error: its
    /// catalog not reachable yet, say).
    #[error("the coordinator cannot answer now: {0}")]
    Unavailable(String),
    /// The coordinator refused a request signed in with this host's secret.
    #[error("the coordinator refused: {0}")]
    Denied(String),
    /// The host has not joined, and no join token was given.
    #[error(
        "{0} holds no host identity yet, so this host must join the grid: give --join-token (the \
         coordinator's join-token file, or SCATTER_JOIN_TOKEN); once joined, it restarts without it"
    )]
    NoToken(PathBuf),
    /// This data directory holds no host identity.
    #[error("{0} holds no host identity (host.json); give the --data-dir of a host that joined the grid")]
    NotJoined(PathBuf),
    /// The coordinator URL, the token and `--insecure` do not agree.
    #[error(transparent)]
    Mode(#[from] scatter_net::ModeError),
    /// The join token is malformed.
    #[error("the join token: {0}")]
    Token(#[from] scatter_net::token::BadToken),
    /// The host's certificate could not be obtained or used.
    #[error("the host's TLS certificate: {0}")]
    Tls(String),
    /// Serving failed.
    #[error("serving HTTP failed: {0}")]
    Serve(std::io::Error),
    /// Another host process runs on the data directory.
    #[error(
        "another host is running on {0} (it holds the lock on its `lock` file); stop it first, \
         or give this one a --data-dir of its own (each host joins the grid on its own)"
    )]
    Busy(PathBuf),
}

/// What the host keeps about itself between restarts (`DIR/host.json`).
#[derive(Serialize, Deserialize)]
struct Identity {
    host_id: HostId,
    host_secret: String,
    coordinator_key: String,
    /// The grid CA's fingerprint, from the join token (none on an `--insecure` grid).
    #[serde(default)]
    ca: Option<String>,
}

pub(crate) struct Shared {
    pub id: HostId,
    pub coordinator_key: VerifyingKey,
    /// Signs receipts for the shards this host stores (see [`scatter_proto::receipt`]).
    pub receipt_key: SigningKey,
    pub store: Arc<DiskStore>,
    /// Shard transfers running at once: taken through [`Shared::transfer`].
    uploads: tokio::sync::Semaphore,
    /// Uploads running at once, fewer than the transfer slots: reads always find a slot.
    writes: tokio::sync::Semaphore,
    /// Uploads each peer may run at once (see [`scatter_net::serve::peer_key`]).
    peer_writes: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, Arc<tokio::sync::Semaphore>>>,
    pub request_times: scatter_proto::metrics::RequestTimes,
    /// Grant refusals since the last heartbeat: how many, and the first few.
    pub refusals: std::sync::Mutex<(u64, Vec<String>)>,
    /// Reads refused since the last heartbeat for a spent read budget (see [`budget`]).
    pub spent: std::sync::atomic::AtomicU64,
    /// When the process started, and milliseconds after that when a transfer last ended.
    started: std::time::Instant,
    last_transfer_ms: std::sync::atomic::AtomicU64,
    /// Unix time the offered period ends: uploads are refused from then on.
    pub until: Option<u64>,
    /// Shard bytes served to readers since the last heartbeat that reached the coordinator.
    pub served: std::sync::atomic::AtomicU64,
    /// Bytes served under each read grant: a grant's bytes are served twice at most.
    pub read_budgets: std::sync::Mutex<budget::ReadBudgets>,
    /// Shards held as of the last inventory, for `/metrics`: counting them there walked the
    /// whole store on each request, and anyone may ask (a flood of them starved the
    /// heartbeats, and the host was taken for gone).
    pub shards_held: std::sync::atomic::AtomicU64,
    /// Catalog backup shards, apart from data shards.
    pub catalog: Arc<catalog::CatalogStore>,
    /// Catalog backup uploads at once (each is held in memory to be checked).
    pub catalog_uploads: tokio::sync::Semaphore,
    /// The grid's recovery access key, once learned from the coordinator.
    pub recovery_access: std::sync::Mutex<Option<VerifyingKey>>,
    /// The grid: its CA fingerprint, zeros on an `--insecure` grid (catalog backups name it).
    pub grid: [u8; 32],
}

/// A shard transfer under way: holds one of the [`api::CONCURRENT_TRANSFERS`] slots, and
/// notes when it ended.
pub(crate) struct Transfer<'a> {
    shared: &'a Shared,
    _slot: tokio::sync::SemaphorePermit<'a>,
}

impl Drop for Transfer<'_> {
    fn drop(&mut self) {
        let now = self.shared.started.elapsed().as_millis() as u64;
        self.shared.last_transfer_ms.store(now, std::sync::atomic::Ordering::Relaxed);
    }
}

/// An upload under way: its transfer slot, and its share of the upload slots (in all and of
/// its peer).
pub(crate) struct Upload<'a> {
    _transfer: Transfer<'a>,
    _write: tokio::sync::SemaphorePermit<'a>,
    _peer: Option<PeerSlot<'a>>,
}

/// One of a peer's upload slots; the peer's entry goes once it holds and waits for none.
struct PeerSlot<'a> {
    shared: &'a Shared,
    peer: std::net::IpAddr,
    slots: Arc<tokio::sync::Semaphore>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for PeerSlot<'_> {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut map = self.shared.peer_writes.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map and this slot hold the semaphore: nobody else uses or waits for it (a
        // permit and a pending acquisition each hold it too).
        if Arc::strong_count(&self.slots) == 2 {
            map.remove(&self.peer);
        }
    }
}

/// Why an upload got no slot.
pub(crate) enum NoSlot {
    /// The host is shutting down.
    ShuttingDown,
    /// The slots stayed taken for [`api::SLOT_WAIT`].
    Busy,
}

impl Shared {
    /// Waits for a transfer slot; `None` when the host is shutting down.
    pub async fn transfer(&self) -> Option<Transfer<'_>> {
        let slot = self.uploads.acquire().await.ok()?;
        Some(Transfer { shared: self, _slot: slot })
    }

    /// Waits (up to [`api::SLOT_WAIT`]) for an upload slot of `peer`, an upload slot, then a
    /// transfer slot: a peer holds at most [`api::UPLOADS_PER_PEER`] uploads, and uploads
    /// at most [`api::CONCURRENT_UPLOADS`] of the transfer slots.
    pub async fn upload(&self, peer: Option<std::net::IpAddr>) -> Result<Upload<'_>, NoSlot> {
        let wait = async {
            let peer_slot = match peer {
                Some(peer) => {
                    let slots = {
                        let mut map = self.peer_writes.lock().unwrap_or_else(|p| p.into_inner());
                        map.entry(peer)
                            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(api::UPLOADS_PER_PEER)))
                            .clone()
                    };
                    // The slot exists while it waits, so that a wait given up still tidies the map.
                    let mut slot = PeerSlot { shared: self, peer, slots, permit: None };
                    slot.permit = Some(slot.slots.clone().acquire_owned().await.map_err(|_| NoSlot::ShuttingDown)?);
                    Some(slot)
                }
                None => None,
            };
            let write = self.writes.acquire().await.map_err(|_| NoSlot::ShuttingDown)?;
            let transfer = self.transfer().await.ok_or(NoSlot::ShuttingDown)?;
            Ok(Upload { _transfer: transfer, _write: write, _peer: peer_slot })
        };
        tokio::time::timeout(api::SLOT_WAIT, wait).await.map_err(|_| NoSlot::Busy)?
    }

    /// Whether shards are being transferred, or were within the last `quiet`.
    fn busy(&self, quiet: Duration) -> bool {
        let last = Duration::from_millis(self.last_transfer_ms.load(std::sync::atomic::Ordering::Relaxed));
        self.uploads.available_permits() < api::CONCURRENT_TRANSFERS || self.started.elapsed() < last + quiet
    }

    /// A receipt for `shard` of `size` bytes, durable here, answering the grant hashed to
    /// `grant` ([`NO_GRANT`] for a backfill).
    pub fn receipt(&self, shard: ShardId, size: u64, grant: [u8; 32]) -> SignedReceipt {
        Receipt { host: self.id, shard, size, time: unix_now(), grant }.sign(&self.receipt_key)
    }

    /// Whether the offered period is over (no new shards from then on).
    pub fn period_over(&self) -> bool {
        self.until.is_some_and(|until| unix_now() >= until)
    }

    /// Notes a refused grant for the coordinator's audit trail.
    pub fn refused(&self, what: String) {
        let mut r = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        r.0 += 1;
        if r.1.len() < scatter_proto::api::MAX_REFUSALS {
            r.1.push(what);
        }
    }
}

/// Seconds since the Unix epoch (0 on a clock set before it).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> HostError + '_ {
    move |source| HostError::Io { path: path.to_owned(), source }
}

/// The identity saved at join, if the host has joined.
fn read_identity(path: &Path) -> Result<Option<Identity>, HostError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|_| HostError::Damaged(path.to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// The host's lasting receipt key (`DIR/receipt.key`, hex seed, mode 0600), made on first
/// use. Losing it only means receipts signed from then on use a new key, which the next
/// heartbeat registers; receipts already recorded stay valid.
fn receipt_key(dir: &Path) -> Result<SigningKey, HostError> {
    let path = dir.join("receipt.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut seed = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| HostError::Damaged(path.clone()))?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::generate(&mut rand::rngs::OsRng);
            write_private(&path, hex::encode(key.to_bytes()).as_bytes())?;
            Ok(key)
        }
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// Times a join is tried, [`JOIN_PAUSE`] apart, while no coordinator is up yet (every URL
/// unreachable, or answering a server error).
const JOIN_ATTEMPTS: u32 = 20;
/// The pause between two tries of a join.
const JOIN_PAUSE: Duration = Duration::from_millis(500);

/// A one-time login link to the coordinator's web dashboard for this host's operator (its
/// state, audits and reputation), asked with the host's secret from `DIR/host.json`, over
/// TLS pinned to the grid CA the host joined.
pub async fn dashboard_link(
    data_dir: &Path,
    coordinator: &scatter_net::CoordinatorUrls,
) -> Result<scatter_proto::api::DashboardLinkResponse, HostError> {
    let path = data_dir.join("host.json");
    let id = read_identity(&path)?.ok_or_else(|| HostError::Io {
        path: path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no host has joined with this data directory"),
    })?;
    let ca = id.ca.as_deref().map(|s| s.parse()).transpose().map_err(|_| HostError::Damaged(path.clone()))?;
    let fingerprint = coordinator.check_mode(ca, ca.is_none())?;
    let http = scatter_net::http_client(fingerprint, scatter_net::Peer::Coordinator)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| HostError::Serve(std::io::Error::other(e)))?;
    let req = scatter_proto::api::HostDashboardRequest { host_id: id.host_id, host_secret: id.host_secret };
    let coordinators = Failover::new(http, coordinator.clone()).with_patience(Duration::ZERO);
    let reply = coordinators
        .send(Repeat::Safe, |http, base| http.post(format!("{base}/v1/hosts/dashboard")).json(&req).build())
        .await
        .map_err(HostError::Unreachable)?;
    let status = reply.response.status();
    if status.is_success() {
        return reply.response.json().await.map_err(|e| HostError::Refused(format!("unreadable answer: {e}")));
    }
    let body: Option<ErrorBody> = reply.response.json().await.ok();
    Err(HostError::Refused(body.map(|b| b.error).unwrap_or_else(|| status.to_string())))
}

/// Joins the grid with `token` and saves the identity.
async fn join(
    config: &Config,
    token: &scatter_net::Token,
    address: &str,
    coordinators: &Failover,
    receipt_key: &SigningKey,
) -> Result<Identity, HostError> {
    let path = config.data_dir.join("host.json");
    let req = JoinRequest {
        join_token: token.secret().to_owned(),
        address: address.to_owned(),
        zone: config.zone.clone(),
        capacity: config.capacity,
        receipt_key: Some(hex::encode(receipt_key.verifying_key().to_bytes())),
        terms: config.terms.clone(),
    };
    let mut attempts = 0;
    loop {
        let sent =
            coordinators.send(Repeat::Safe, |http, base| http.post(format!("{base}/v1/hosts/join")).json(&req).build());
        let failed = match sent.await {
            Ok(reply) if reply.response.status().is_success() => {
                let j: JoinResponse =
                    reply.response.json().await.map_err(|e| HostError::Refused(format!("unreadable answer: {e}")))?;
                let id = Identity {
                    host_id: j.host_id,
                    host_secret: j.host_secret,
                    coordinator_key: j.coordinator_key,
                    ca: token.ca().map(|fp| fp.to_string()),
                };
                write_private(&path, &serde_json::to_vec_pretty(&id).map_err(|e| HostError::Refused(e.to_string()))?)?;
                tracing::info!(host = %id.host_id, coordinator = %reply.url, "joined the grid");
                if let Some(warning) = j.warning {
                    tracing::warn!("{warning}");
                }
                return Ok(id);
            }
            Ok(reply) => {
                let status = reply.response.status();
                let body: Option<ErrorBody> = reply.response.json().await.ok();
                let msg = body.map(|b| b.error).unwrap_or_else(|| status.to_string());
                if status.is_client_error() {
                    return Err(HostError::Refused(msg));
                }
                HostError::Refused(msg)
            }
            Err(e) => HostError::Unreachable(e),
        };
        attempts += 1;
        if attempts == JOIN_ATTEMPTS {
            return Err(failed);
        }
        if attempts == 1 {
            // A host started with its coordinator (systemd, a script) often comes up first.
            tracing::warn!("{failed}; trying again for {} s", (JOIN_PAUSE * (JOIN_ATTEMPTS - 1)).as_secs());
        }
        tokio::time::sleep(JOIN_PAUSE).await;
    }
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), HostError> {
    scatter_net::write_private(path, contents).map_err(io_err(path))
}

/// Has the grid CA certify a new key for `address`; returns the TLS configuration to serve
/// with. The key never leaves this process.
async fn certify(
    identity: &Identity,
    fingerprint: scatter_net::Fingerprint,
    address: &str,
    coordinators: &Failover,
) -> Result<Arc<rustls::ServerConfig>, HostError> {
    let tls = |e: &dyn std::fmt::Display| HostError::Tls(e.to_string());
    let key = scatter_net::tls::LeafKey::generate().map_err(|e| tls(&e))?;
    let req = HostCertRequest {
        host_id: identity.host_id,
        host_secret: identity.host_secret.clone(),
        address: address.to_owned(),
        public_key: hex::encode(key.public_key()),
    };
    let resp = coordinators
        .send(Repeat::Safe, |http, base| http.post(format!("{base}/v1/hosts/cert")).json(&req).build())
        .await
        .map_err(HostError::Unreachable)?
        .response;
    if !resp.status().is_success() {
        let status = resp.status();
        let body: Option<ErrorBody> = resp.json().await.ok();
        let why = body.map(|b| b.error).unwrap_or_else(|| status.to_string());
        return Err(match status.is_server_error() {
            true => HostError::Unavailable(why),
            false => HostError::Refused(why),
        });
    }
    let cert: HostCertResponse = resp.json().await.map_err(|e| tls(&e))?;
    let leaf = scatter_net::tls::parse_pem_cert(&cert.certificate).ok_or_else(|| tls(&"unreadable certificate"))?;
    let ca = scatter_net::tls::parse_pem_cert(&cert.ca).ok_or_else(|| tls(&"unreadable CA certificate"))?;
    if scatter_net::Fingerprint::of(&ca) != fingerprint {
        return Err(tls(&"the coordinator sent a CA certificate that is not the grid's"));
    }
    key.server_config(leaf, ca).map_err(|e| tls(&e))
}

/// The longest wait between two tries to reach the coordinator at start.
const CERTIFY_RETRY_MAX: Duration = Duration::from_secs(30);

/// [`certify`], tried again (1 s apart, doubling up to [`CERTIFY_RETRY_MAX`]) while no
/// coordinator can be reached or answer: a joined host that starts before its coordinator
/// (a machine rebooted, a power cut that took both, the catalog's database not up yet)
/// waits for it instead of exiting. `None` if `shutdown` comes first.
async fn certify_when_up(
    identity: &Identity,
    fingerprint: scatter_net::Fingerprint,
    address: &str,
    coordinators: &Failover,
    shutdown: impl std::future::Future<Output = ()> + Clone,
) -> Result<Option<Arc<rustls::ServerConfig>>, HostError> {
    let mut delay = Duration::from_secs(1);
    loop {
        match certify(identity, fingerprint, address, coordinators).await {
            Err(e @ (HostError::Unreachable(_) | HostError::Unavailable(_))) => {
                tracing::warn!("{e}; trying again in {} s", delay.as_secs());
                tokio::select! {
                    _ = shutdown.clone() => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(CERTIFY_RETRY_MAX);
            }
            other => return other.map(Some),
        }
    }
}

/// Heartbeat intervals between two inventories.
const BEATS_PER_INVENTORY: u32 = 5;
/// Shard bytes re-hashed per inventory round by the scrubber.
const SCRUB_BYTES_PER_ROUND: u64 = 256 << 20;
/// The same while shards are being transferred: the scrub gives way to users. A 1 GiB
/// restore from a local 6-host grid read 1.6 GiB from the disk, 0.6 GiB of it scrubbing,
/// and the disk was the limit. A little is still scrubbed, so a host that is always busy
/// still checks its disk.
const SCRUB_BYTES_WHILE_BUSY: u64 = 16 << 20;
/// How long after its last transfer a host still counts as busy.
const QUIET: Duration = Duration::from_secs(2);

/// Heartbeats, every `config.heartbeat`. They run apart from the scrub and inventory (see
/// [`inventories`]): a scrub reads hundreds of MiB, and on a busy disk that took long enough
/// to make the host miss heartbeats and be taken for suspect.
async fn heartbeats(config: Config, shared: Arc<Shared>, secret: String, address: String, coordinators: Arc<Failover>) {
    let mut outage = Outage::default();
    let auth = host_header(shared.id, &secret);
    // The recovery access key last answered: a refused one is warned about once, not at
    // every heartbeat.
    let mut settled_access_key = None;
    // The standing last answered, and when it was last logged: a change is logged at once,
    // a standing other than active again every hour.
    let mut standing: Option<(String, std::time::Instant)> = None;
    loop {
        let store = shared.store.clone();
        let free = tokio::task::spawn_blocking(move || store.disk_free()).await.unwrap_or(0);
        let (refused_grants, refusals) =
            std::mem::take(&mut *shared.refusals.lock().unwrap_or_else(|p| p.into_inner()));
        let served = shared.served.swap(0, std::sync::atomic::Ordering::Relaxed);
        let spent_grants = shared.spent.swap(0, std::sync::atomic::Ordering::Relaxed);
        let req = HeartbeatRequest {
            refused_grants,
            refusals,
            spent_grants,
            host_id: shared.id,
            host_secret: secret.clone(),
            address: address.clone(),
            capacity: config.capacity,
            // Data shards only: the capacity offered is for them, and catalog backups come on top
            // (within an allowance of their own: see `catalog::put`).
            used: ByteSize(shared.store.used()),
            free: ByteSize(free),
            receipt_key: Some(hex::encode(shared.receipt_key.verifying_key().to_bytes())),
            terms: config.terms.clone(),
            served,
        };
        let beat = coordinators.send(Repeat::Safe, |http, base| {
            http.post(format!("{base}/v1/hosts/heartbeat")).header(HOST_HEADER, &auth).json(&req).build()
        });
        let failure = match beat.await {
            Ok(r) if r.response.status().is_success() => {
                let answer: HeartbeatResponse = r.response.json().await.unwrap_or_default();
                if let Some(key) = answer.recovery_access_key.filter(|k| settled_access_key.as_ref() != Some(k)) {
                    if catalog::learn_access_key(&shared, &config.data_dir, &key) {
                        settled_access_key = Some(key);
                    }
                }
                if let Some(now_standing) = answer.standing {
                    let before = standing.as_ref().map(|(s, _)| s.as_str());
                    let due = standing.as_ref().is_some_and(|(_, t)| t.elapsed() >= STANDING_REPEAT);
                    if before != Some(now_standing.as_str()) || (due && now_standing != "active") {
                        log_standing(&now_standing, before.is_some_and(|b| b != "active"));
                        standing = Some((now_standing, std::time::Instant::now()));
                    }
                }
                None
            }
            Ok(r) => Some(format!("the coordinator at {} refused a heartbeat ({})", r.url, r.response.status())),
            Err(e) => Some(format!("heartbeat failed; the coordinator is unreachable ({e})")),
        };
        let now = std::time::Instant::now();
        match &failure {
            None => {
                if let Some(lasted) = outage.ended(now) {
                    tracing::info!(after_secs = lasted.as_secs(), "heartbeats reach the coordinator again");
                }
            }
            Some(why) => {
                if let Some(lasted) = outage.failed(now) {
                    match lasted.as_secs() {
                        0 => tracing::warn!("{why}"),
                        secs => tracing::warn!(for_secs = secs, "{why}; still failing"),
                    }
                }
            }
        }
        if failure.is_some() {
            // Counted again with the next heartbeat (whose gap then covers it).
            shared.served.fetch_add(served, std::sync::atomic::Ordering::Relaxed);
        }
        tokio::time::sleep(config.heartbeat).await;
    }
}

/// How often a host the coordinator does not count as active says so again.
const STANDING_REPEAT: Duration = Duration::from_secs(3600);

/// Says in the log what the coordinator's record of this host means for its operator:
/// anything but `active`, and `active` when it comes back to it (`after` another standing).
fn log_standing(standing: &str, after: bool) {
    match standing {
        "active" if after => tracing::info!("the coordinator counts this host as active again"),
        "active" => {}
        "draining" => tracing::warn!(
            "the coordinator is draining this host: its shards move to other hosts and it takes no new ones; it is retired once empty"
        ),
        "disabled" => tracing::warn!(
            "the grid's admin has disabled this host: it takes no new shards and its shards are rebuilt elsewhere; ask the admin (`scatter admin host enable`)"
        ),
        "disqualified" => tracing::warn!(
            "the coordinator has disqualified this host after failed audits, for good: its shards are rebuilt elsewhere; check the disk, then join again as a new host with a fresh data directory"
        ),
        "retired" => tracing::warn!("the coordinator has retired this host: it holds nothing the grid counts; it can be stopped"),
        other => tracing::warn!(standing = other, "the coordinator reports a standing this host does not know"),
    }
}

/// How often a host whose heartbeats fail says so again after the first time.
const OUTAGE_REPEAT: Duration = Duration::from_secs(60);

/// Failing heartbeats, so that an outage is logged when it starts, then at most every
/// [`OUTAGE_REPEAT`] (not at every heartbeat), and its end once.
#[derive(Default)]
struct Outage {
    /// When the first failed heartbeat of the outage was.
    since: Option<std::time::Instant>,
    /// When it was last logged.
    said: Option<std::time::Instant>,
}

impl Outage {
    /// A heartbeat failed at `now`: how long the outage lasts so far when it is time to say
    /// so, else `None`.
    fn failed(&mut self, now: std::time::Instant) -> Option<Duration> {
        let since = *self.since.get_or_insert(now);
        match self.said {
            Some(t) if now.duration_since(t) < OUTAGE_REPEAT => None,
            _ => {
                self.said = Some(now);
                Some(now.duration_since(since))
            }
        }
    }

    /// A heartbeat got through at `now`: how long the outage lasted, if there was one.
    fn ended(&mut self, now: std::time::Instant) -> Option<Duration> {
        self.said = None;
        self.since.take().map(|since| now.duration_since(since))
    }
}

/// Inventories between two full ones; in between, only what changed is sent.
const ROUNDS_PER_FULL: u32 = 60;

/// What the coordinator acknowledged of this host's shards, for the next change list.
struct Acked {
    /// The acknowledgement the next inventory names as `since`.
    ack: u64,
    /// The shards held as of it (less those it left pending).
    shards: std::collections::HashSet<ShardId>,
    /// Change lists sent since the last full inventory.
    rounds: u32,
}

/// Scrubs and sends the inventory every [`BEATS_PER_INVENTORY`] heartbeat intervals, from
/// the first one on: in full at start and every [`ROUNDS_PER_FULL`] rounds, else what
/// changed since the last one acknowledged.
async fn inventories(shared: Arc<Shared>, heartbeat: Duration, secret: String, coordinators: Arc<Failover>) {
    let mut scrub_from = 0usize;
    let mut acked = None;
    loop {
        scrub_from = report_inventory(&shared, &secret, &coordinators, scrub_from, &mut acked).await;
        tokio::time::sleep(heartbeat * BEATS_PER_INVENTORY).await;
    }
}

/// The shards the next change list counts from, after `res` answered an inventory of
/// `held`: unknown shards left pending are named again as added, missing ones of packs too
/// young to judge as removed.
fn acknowledged(
    mut held: std::collections::HashSet<ShardId>,
    res: &InventoryResponse,
) -> std::collections::HashSet<ShardId> {
    for id in &res.pending {
        held.remove(id);
    }
    held.extend(res.unsettled.iter().copied());
    held
}

/// Scrubs the next slice of shards (re-hashing them; bad ones are quarantined), then sends
/// the inventory so the coordinator can mark missing shards lost and unknown ones orphaned.
/// Returns where the next scrub starts.
async fn report_inventory(
    shared: &Arc<Shared>,
    secret: &str,
    coordinators: &Failover,
    scrub_from: usize,
    acked: &mut Option<Acked>,
) -> usize {
    let sh = shared.clone();
    let scanned = tokio::task::spawn_blocking(move || {
        sh.store.scrub_round(scrub_from, || if sh.busy(QUIET) { SCRUB_BYTES_WHILE_BUSY } else { SCRUB_BYTES_PER_ROUND })
    })
    .await;
    let (shards, next) = match scanned {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not list the shards for the inventory");
            return scrub_from;
        }
        Err(_) => return scrub_from,
    };
    shared.shards_held.store(shards.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let held: std::collections::HashSet<ShardId> = shards.iter().map(|(id, _)| *id).collect();
    let (host_id, host_secret) = (shared.id, secret.to_owned());
    let auth = host_header(host_id, secret);
    let req = match acked.as_ref().filter(|a| a.rounds < ROUNDS_PER_FULL) {
        Some(a) => InventoryRequest {
            host_id,
            host_secret,
            shards: shards.into_iter().filter(|(id, _)| !a.shards.contains(id)).collect(),
            since: Some(a.ack),
            removed: a.shards.iter().filter(|id| !held.contains(id)).copied().collect(),
        },
        None => InventoryRequest { host_id, host_secret, shards, since: None, removed: Vec::new() },
    };
    let rounds = match req.since {
        Some(_) => acked.as_ref().map_or(0, |a| a.rounds + 1),
        None => 0,
    };
    // Safe to repeat on another coordinator: a change list that reached one already no longer
    // follows the last acknowledgement, so it is refused and a full inventory follows.
    let sent = coordinators.send(Repeat::Safe, |http, base| {
        http.post(format!("{base}/v1/hosts/inventory")).header(HOST_HEADER, &auth).json(&req).build()
    });
    match sent.await {
        Ok(r) if r.response.status().is_success() => {
            if let Ok(res) = r.response.json::<InventoryResponse>().await {
                // Without an acknowledgement (a change list that did not follow the last one,
                // or a coordinator from before change lists) the next inventory is full.
                *acked = res.ack.map(|ack| Acked { ack, shards: acknowledged(held, &res), rounds });
                if res.lost + res.orphaned > 0 {
                    tracing::info!(lost = res.lost, orphaned = res.orphaned, "inventory reconciled");
                }
                if !res.receipts_wanted.is_empty() {
                    send_receipts(shared, secret, coordinators, res.receipts_wanted).await;
                }
            }
        }
        Ok(r) => {
            tracing::warn!(status = %r.response.status(), coordinator = %r.url, "the coordinator refused the inventory")
        }
        Err(e) => tracing::debug!(error = %e, "inventory not sent; the coordinator is unreachable"),
    }
    next
}

/// Signs receipts for the shards the coordinator asks about that this host holds (shards
/// stored before receipts existed) and sends them. Their bytes are not re-read here: the
/// scrub re-hashes every shard in turn, and audits check what a receipt claims.
async fn send_receipts(shared: &Arc<Shared>, secret: &str, coordinators: &Failover, wanted: Vec<ShardId>) {
    let sh = shared.clone();
    let receipts = tokio::task::spawn_blocking(move || {
        wanted
            .into_iter()
            .take(scatter_proto::api::MAX_RECEIPTS)
            .filter_map(|id| sh.store.shard_len(&id).map(|len| sh.receipt(id, len, NO_GRANT)))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    if receipts.is_empty() {
        return;
    }
    let n = receipts.len();
    let req = ReceiptsRequest { host_id: shared.id, host_secret: secret.to_owned(), receipts };
    let auth = host_header(shared.id, secret);
    let sent = coordinators.send(Repeat::Safe, |http, base| {
        http.post(format!("{base}/v1/hosts/receipts")).header(HOST_HEADER, &auth).json(&req).build()
    });
    match sent.await {
        Ok(r) if r.response.status().is_success() => {
            tracing::info!(receipts = n, "receipts sent for shards stored before receipts")
        }
        Ok(r) => {
            tracing::warn!(status = %r.response.status(), coordinator = %r.url, "the coordinator refused the receipts")
        }
        Err(e) => tracing::debug!(error = %e, "receipts not sent; the coordinator is unreachable"),
    }
}

/// Locks `dir` for this process alone (an exclusive `flock` on `dir/lock`, let go when the
/// process ends, however it ends).
fn lock_data_dir(dir: &Path) -> Result<std::fs::File, HostError> {
    let path = dir.join("lock");
    let file =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io_err(&path))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .map_err(|_| HostError::Busy(dir.to_owned()))?;
    Ok(file)
}

/// How a host starts: with the identity it saved when it joined, or joining with a token.
enum Start {
    Joined(Identity),
    Joining(scatter_net::Token),
}

/// Serves the host on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), HostError> {
    use futures::FutureExt;
    // Awaited while the coordinator is waited for at start, and by the server after.
    let shutdown = shutdown.shared();
    std::fs::create_dir_all(&config.data_dir).map_err(io_err(&config.data_dir))?;
    // Held while the host runs: a second process on the folder would take over its
    // registration (the coordinator sends readers to whichever address beat last).
    let _lock = lock_data_dir(&config.data_dir)?;
    let id_path = config.data_dir.join("host.json");
    // A token given is checked even when not needed: a typo in a config file shows at once.
    let token = config.join_token.as_deref().map(str::parse::<scatter_net::Token>).transpose()?;
    let start = match (read_identity(&id_path)?, token) {
        (Some(id), _) => Start::Joined(id),
        (None, Some(token)) => Start::Joining(token),
        (None, None) => return Err(HostError::NoToken(config.data_dir.clone())),
    };
    // Once joined, the CA is the one the host joined (its token may since have been rotated).
    let ca = match &start {
        Start::Joined(id) => {
            id.ca.as_deref().map(|s| s.parse()).transpose().map_err(|_| HostError::Damaged(id_path.clone()))?
        }
        Start::Joining(token) => token.ca(),
    };
    let fingerprint = config.coordinator.check_mode(ca, config.insecure)?;
    if fingerprint.is_none() {
        tracing::warn!("{}", scatter_net::INSECURE_WARNING);
    }
    let addr = listener.local_addr().map_err(HostError::Serve)?;
    let address = config.public_url.clone().unwrap_or_else(|| {
        let scheme = if fingerprint.is_some() { "https" } else { "http" };
        scatter_net::listening_url(scheme, addr, "host")
    });
    let http = scatter_net::http_client(fingerprint, scatter_net::Peer::Coordinator)
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| HostError::Serve(std::io::Error::other(e)))?;
    let coordinators = Arc::new(Failover::new(http, config.coordinator.clone()).with_patience(Duration::ZERO));
    let receipt_key = receipt_key(&config.data_dir)?;
    let identity = match start {
        Start::Joined(id) => id,
        Start::Joining(token) => join(&config, &token, &address, &coordinators, &receipt_key).await?,
    };
    let tls = match fingerprint {
        Some(fp) => match certify_when_up(&identity, fp, &address, &coordinators, shutdown.clone()).await? {
            Some(tls) => Some(tls),
            None => return Ok(()),
        },
        None => None,
    };
    let mut key = [0u8; 32];
    hex::decode_to_slice(&identity.coordinator_key, &mut key).map_err(|_| HostError::Damaged(id_path.clone()))?;
    let coordinator_key = VerifyingKey::from_bytes(&key).map_err(|_| HostError::Damaged(id_path))?;
    let shard_dir = config.data_dir.clone();
    let store = DiskStore::open(&shard_dir, config.capacity.0).map_err(io_err(&shard_dir))?;
    let backups = catalog::CatalogStore::open(&shard_dir).map_err(io_err(&shard_dir))?;
    let shared = Arc::new(Shared {
        id: identity.host_id,
        coordinator_key,
        receipt_key,
        store: Arc::new(store),
        uploads: tokio::sync::Semaphore::new(api::CONCURRENT_TRANSFERS),
        writes: tokio::sync::Semaphore::new(api::CONCURRENT_UPLOADS),
        peer_writes: Default::default(),
        request_times: Default::default(),
        refusals: Default::default(),
        spent: Default::default(),
        started: std::time::Instant::now(),
        last_transfer_ms: Default::default(),
        until: config.terms.until,
        served: Default::default(),
        read_budgets: Default::default(),
        shards_held: Default::default(),
        catalog: Arc::new(backups),
        catalog_uploads: tokio::sync::Semaphore::new(1),
        recovery_access: std::sync::Mutex::new(catalog::read_access_key(&config.data_dir)),
        grid: fingerprint.map(|f| f.0).unwrap_or([0; 32]),
    });
    // Space offered past what the disk has: placements up to the capacity would fail as
    // the disk fills (a host on a 30 MB file system joined offering 300 MiB without a word).
    let (used, free) = (shared.store.used(), shared.store.disk_free());
    if config.capacity.0 > used.saturating_add(free) {
        tracing::warn!(
            capacity = %config.capacity,
            free = %ByteSize(free),
            "--capacity is more than this disk can hold beside what the host holds; lower it, or uploads will be refused as the disk fills"
        );
    }
    let config_file = config.config_file.as_ref().map_or_else(|| "none".into(), |f| f.display().to_string());
    tracing::info!(host = %shared.id, %address, used = shared.store.used(), config = %config_file, "host serving");
    write_private(&config.data_dir.join("url"), format!("{address}\n").as_bytes())?;
    let inventory =
        tokio::spawn(inventories(shared.clone(), config.heartbeat, identity.host_secret.clone(), coordinators.clone()));
    let beat = tokio::spawn(heartbeats(config.clone(), shared.clone(), identity.host_secret, address, coordinators));
    let served = scatter_net::serve::serve(listener, api::router(shared), tls, shutdown).await;
    beat.abort();
    inventory.abort();
    served.map_err(HostError::Serve)
}

/// The host's own earnings for `period` (`YYYY-MM`; the current period if none), asked of
/// the coordinator with the identity in `data_dir` (`scatter host earnings`): the host's
/// secret signs it in, so it sees its own statement and no other's.
pub async fn earnings(
    data_dir: &Path,
    coordinator: &scatter_net::CoordinatorUrls,
    insecure: bool,
    period: Option<String>,
) -> Result<scatter_proto::billing::Statement, HostError> {
    let id_path = data_dir.join("host.json");
    let identity = read_identity(&id_path)?.ok_or_else(|| HostError::NotJoined(data_dir.to_owned()))?;
    let ca = identity.ca.as_deref().map(|s| s.parse()).transpose().map_err(|_| HostError::Damaged(id_path.clone()))?;
    let fingerprint = coordinator.check_mode(ca, insecure)?;
    let http = scatter_net::http_client(fingerprint, scatter_net::Peer::Coordinator)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| HostError::Serve(std::io::Error::other(e)))?;
    let coordinators = Failover::new(http, coordinator.clone()).with_patience(Duration::ZERO);
    let auth = host_header(identity.host_id, &identity.host_secret);
    let req = scatter_proto::billing::EarningsRequest {
        host_id: identity.host_id,
        host_secret: identity.host_secret,
        period,
    };
    let reply = coordinators
        .send(Repeat::Safe, |http, base| {
            http.post(format!("{base}/v1/hosts/earnings")).header(HOST_HEADER, &auth).json(&req).build()
        })
        .await
        .map_err(HostError::Unreachable)?;
    if !reply.response.status().is_success() {
        let status = reply.response.status();
        let body = reply.response.text().await.unwrap_or_default();
        let why = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or(body);
        return Err(HostError::Denied(format!("{status}: {}", why.chars().take(300).collect::<String>())));
    }
    reply.response.json().await.map_err(|e| HostError::Denied(format!("an unreadable answer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_change_list_names_pending_shards_as_added_and_unsettled_ones_as_removed() {
        let id = |n: u8| ShardId::from_bytes([n; 32]);
        let held = [id(1), id(2)].into_iter().collect();
        let res = InventoryResponse {
            lost: 0,
            orphaned: 0,
            receipts_wanted: Vec::new(),
            ack: Some(7),
            pending: vec![id(2)],
            unsettled: vec![id(3)],
        };
        let next = acknowledged(held, &res);
        assert_eq!(next, [id(1), id(3)].into_iter().collect());
        // Still lacking shard 3, the host names it as removed; shard 2 comes again as added.
        let now_held: std::collections::HashSet<ShardId> = [id(1), id(2)].into_iter().collect();
        assert_eq!(next.difference(&now_held).collect::<Vec<_>>(), [&id(3)]);
        assert_eq!(now_held.difference(&next).collect::<Vec<_>>(), [&id(2)]);
    }

    #[test]
    fn an_outage_is_said_when_it_starts_then_once_a_minute_and_its_end_once() {
        let t0 = std::time::Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let mut o = Outage::default();
        assert_eq!(o.ended(at(0)), None, "no outage, nothing to say");
        assert_eq!(o.failed(at(0)), Some(Duration::ZERO));
        for s in [2, 4, 58] {
            assert_eq!(o.failed(at(s)), None, "at {s} s");
        }
        assert_eq!(o.failed(at(61)), Some(Duration::from_secs(61)));
        assert_eq!(o.failed(at(63)), None);
        assert_eq!(o.ended(at(65)), Some(Duration::from_secs(65)));
        assert_eq!(o.ended(at(67)), None, "said once");
        assert_eq!(o.failed(at(70)), Some(Duration::ZERO), "a new outage is said at once");
    }
}
