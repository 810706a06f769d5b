//! Scatter's coordinator: the registry of hosts and users, the catalog of where every shard
//! lives, placement of new packs, and the grants that let clients talk to hosts.
//!
//! It never sees plaintext, keys or file names: names and manifests arrive encrypted, chunk
//! ids are keyed hashes. [`run`] serves the HTTP API until shutdown.

mod api;
mod audit;
mod catalog_backup;
pub mod dashboard;
pub mod durability;
pub mod error;
mod gc;
mod jobs;
pub mod lock;
pub mod metering;
mod metering_job;
mod metrics;
pub mod period;
pub mod placement;
mod presence;
pub mod recover;
pub mod recovery;
mod repair;
pub mod reputation;
mod room;
mod shards;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use rand::RngCore;
use tokio::net::TcpListener;

use crate::store::Store;

/// How the coordinator runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file these settings were read from (`--config`), if any; named in the
    /// startup log line.
    pub config_file: Option<PathBuf>,
    /// Holds the signing key, the CA, the tokens, the URL file and (unless `catalog` names
    /// another) the catalog.
    pub data_dir: PathBuf,
    /// The catalog: a `postgresql://` URL shared by several coordinators, or by default
    /// the SQLite file `catalog.db` in the data directory.
    pub catalog: Option<String>,
    /// A host is offline once it has not sent a heartbeat for this long.
    pub offline_after: Duration,
    /// The URL clients and hosts should use, or the URLs of all the coordinators sharing the
    /// catalog; by default derived from the listening address. Written to the `url` file
    /// (several separated by commas, as `--coordinator` takes them).
    pub public_url: Option<scatter_net::CoordinatorUrls>,
    /// How long a write session stays open without a keepalive; a killed backup holds off
    /// prune for at most this long.
    pub session_ttl: Duration,
    /// How often the checker looks for packs short of healthy shards and repairs them.
    pub checker_interval: Duration,
    /// Shards a host holds that the catalog does not know are deleted once this old (an
    /// interrupted put leaves them; a running one commits well within it).
    pub orphan_grace: Duration,
    /// How long the shards of released packs (deleted objects, pruned snapshots) stay on
    /// their hosts, so that reads already under way when the delete came end as they began.
    pub release_grace: Duration,
    /// How long a placement and its put grants wait for a commit (the CLI's default: 10
    /// minutes); what a lapsed one uploaded is deleted from its host soon after.
    pub reservation_ttl: Duration,
    /// Serve plain HTTP instead of TLS (tests on one machine, or behind a TLS proxy).
    pub insecure: bool,
    /// f: failure domains every pack must survive losing; `None` follows the grid's size
    /// (see [`durability::auto_tolerance`]).
    pub tolerate: Option<u8>,
    /// No data goes to a host whose offered period ends sooner than this.
    pub period_margin: Duration,
    /// Time between catalog backups on hosts (taken only when something changed; also
    /// soon after security-relevant changes and at clean shutdown). SQLite catalogs only.
    pub catalog_backup_interval: Duration,
    /// The web dashboard's own listener, if it is served (see [`dashboard`]).
    pub dashboard: Option<dashboard::DashboardConfig>,
    /// How often stored bytes are sampled into byte-seconds for metering (see
    /// [`metering`]); statements are exact to within one interval.
    pub metering_interval: Duration,
}

/// After `scatter coordinator recover`, shards on hosts that the restored catalog does not
/// know are kept this long (not deleted as orphans): data written after the backup is
/// re-uploaded by its owners' next backups meanwhile.
pub const RECOVERY_HOLD: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why the coordinator could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// A file in the data directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A file in the data directory is damaged.
    #[error("{path} is damaged ({what}); restore it from a backup")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The catalog could not be opened.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// Another coordinator runs on this data directory.
    #[error(
        "another coordinator is running on {0} (it holds the lock on its `lock` file); stop it first, \
         or give this one its own --data-dir (several coordinators share a PostgreSQL --catalog, not a data directory)"
    )]
    Busy(PathBuf),
    /// `--public-url` names a scheme this coordinator does not serve.
    #[error("--public-url {url} is {given}, but this coordinator serves {serves}; advertise its {scheme}:// URL")]
    PublicUrl {
        /// The URL given.
        url: String,
        /// What the URL is (plain HTTP or TLS).
        given: &'static str,
        /// What the coordinator serves.
        serves: &'static str,
        /// The scheme to use instead.
        scheme: &'static str,
    },
    /// `--catalog` named something other than a PostgreSQL database.
    #[error("--catalog takes a postgresql:// URL; the SQLite catalog is always catalog.db in --data-dir")]
    NotPostgres,
    /// The catalog belongs to a grid with other keys than this data directory's.
    #[error(
        "the catalog belongs to a grid whose {what} is {recorded}, not this data directory's; \
         every coordinator of a grid needs the same ca.crt, ca.key, coordinator.key and join-token \
         (copy them from the first coordinator's data directory)"
    )]
    OtherGrid {
        /// Which key differs.
        what: String,
        /// What the catalog recorded.
        recorded: String,
    },
    /// The recovery key files could not be made or read.
    #[error(transparent)]
    Recovery(#[from] recovery::RecoveryError),
    /// The certificate authority could not be loaded or used.
    #[error(transparent)]
    Tls(#[from] scatter_net::tls::TlsError),
    /// Serving failed.
    #[error("serving HTTP failed: {0}")]
    Serve(std::io::Error),
    /// The dashboard's settings cannot be served safely.
    #[error(transparent)]
    Dashboard(#[from] dashboard::DashboardError),
}

pub(crate) struct Shared {
    pub store: Store,
    /// The data directory's lock, held while the process runs.
    pub _lock: std::fs::File,
    pub signing: SigningKey,
    pub join_token_hash: [u8; 32],
    pub offline_after: Duration,
    pub session_ttl: Duration,
    pub checker_interval: Duration,
    pub metering_interval: Duration,
    pub orphan_grace: Duration,
    pub release_grace: Duration,
    pub reservation_ttl: Duration,
    pub tolerate: Option<u8>,
    pub period_margin: Duration,
    /// This process among the coordinators sharing the catalog: the holder of the leases
    /// on background jobs it runs.
    pub instance: String,
    /// How live packs meet the rule (lowest tolerance, crowded packs) as `status` last
    /// computed it, reading every shard's row: kept for a checker interval, dropped when a
    /// pack is committed or a shard moves.
    pub spread: std::sync::Mutex<Option<(std::time::Instant, Option<u32>, u64)>>,
    /// Where the search for packs to re-spread stands (see `repair`).
    pub respread: std::sync::Mutex<repair::Respread>,
    /// Packs and accounts whose repair failed lately: repair takes them after the others.
    pub repair_deferred: std::sync::Mutex<store::Deferred>,
    /// Hosts that refused a rebuilt shard lately: repair places elsewhere for a while.
    pub repair_refusals: repair::Recent,
    /// Hosts whose reads for a rebuild lagged lately: read last.
    pub repair_laggards: repair::Recent,
    pub request_times: scatter_proto::metrics::RequestTimes,
    /// Checks of shards clients reported bad.
    pub report_checks: audit::ReportChecks,
    /// Audits each host left unanswered in a row (see `audit`).
    pub unanswered: audit::Unanswered,
    /// Hosts whose inventory was reconciled since this coordinator started (see `audit`).
    pub inventoried: audit::Inventoried,
    /// Where the deleter's next look for idle sessions starts (see `gc`).
    pub idle_sessions_from: std::sync::atomic::AtomicU64,
    pub http: reqwest::Client,
    /// The grid CA (none with `--insecure`): signs host certificates.
    pub authority: Option<scatter_net::tls::Authority>,
    /// Credentials accepted and not yet expired: each is accepted once.
    pub replay: std::sync::Mutex<scatter_proto::auth::ReplayCache>,
    /// Recent authentication failures per peer.
    pub failures: api::guard::Failures,
    /// Room for request bodies in flight, in KiB.
    pub body_budget: tokio::sync::Semaphore,
    /// Of that, room for bodies of requests without a verified user, in KiB.
    pub open_body_budget: tokio::sync::Semaphore,
    /// Room for bodies of requests of hosts named in their header, in KiB: apart from the
    /// users', so that no account trickling large bodies holds up the hosts' heartbeats.
    pub host_body_budget: tokio::sync::Semaphore,
    /// Each account's share of `body_budget`, while it has bodies in flight (see `guard`).
    pub account_bodies: std::sync::Mutex<std::collections::HashMap<scatter_core::UserId, Arc<tokio::sync::Semaphore>>>,
    /// Per account (the data's owner), the one listing of its snapshots being made.
    pub listings: std::sync::Mutex<std::collections::HashMap<scatter_core::UserId, Arc<tokio::sync::Mutex<()>>>>,
    /// Each account's room for large answers held until read, in KiB permits (see `guard`).
    pub account_answers: std::sync::Mutex<std::collections::HashMap<scatter_core::UserId, Arc<tokio::sync::Semaphore>>>,
    /// Bodies of hosts' heartbeats and receipts held at once: apart from their inventories,
    /// so that a host trickling inventories holds up no heartbeat.
    pub host_beat_budget: tokio::sync::Semaphore,
    /// Each host's shares of the hosts' budgets, for heartbeats (`true`) and inventories
    /// (see `api::guard`).
    pub host_bodies:
        std::sync::Mutex<std::collections::HashMap<(scatter_core::HostId, bool), Arc<tokio::sync::Semaphore>>>,
    /// Seals the verified user between the request gate and the handlers; never leaves the
    /// process.
    pub verdict_key: [u8; 32],
    /// Catalog backups (a SQLite catalog only).
    pub backups: Option<catalog_backup::Backups>,
    /// When this coordinator's catalog was restored from a backup, if it was.
    pub recovered_at: Option<u64>,
    /// When this coordinator started, and what its catalog had heard of the hosts then.
    pub start: room::Start,
    /// The web dashboard this coordinator serves, if any: where login links point.
    pub dashboard: Option<dashboard::Served>,
}

impl Shared {
    /// Runs a catalog call on the blocking pool: the one way async code reaches the catalog
    /// (its calls block on SQLite). A call that panicked is an error, never "nothing to do".
    pub async fn catalog<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Store) -> Result<T, store::StoreError> + Send + 'static,
    ) -> Result<T, store::StoreError> {
        let sh = self.clone();
        tokio::task::spawn_blocking(move || f(&sh.store)).await.map_err(|e| store::StoreError::Task(e.to_string()))?
    }

    /// Takes (or renews) the lease on background job `job` for this process, for `ttl`:
    /// `None` while another coordinator holds it (see [`jobs`]).
    pub async fn lease(self: &Arc<Self>, job: &'static str, ttl: Duration) -> Option<store::Fence> {
        let holder = self.instance.clone();
        match self.catalog(move |s| s.acquire_lease(job, &holder, now(), ttl.as_secs().max(1))).await {
            Ok(fence) => fence,
            Err(e) => {
                tracing::warn!(job, error = %e, "could not take the lease on a background job; will retry");
                None
            }
        }
    }

    /// Asks for a catalog backup soon (within about a second): call it after every
    /// security-relevant change (a user removed or disabled, a host removed, a device
    /// revoked, a recovery code voided), so that a restored catalog never undoes one.
    pub fn backup_soon(&self) {
        if let Some(b) = &self.backups {
            b.soon.notify_one();
        }
    }

    /// Whether shards unknown to the catalog must be kept for now: within
    /// [`RECOVERY_HOLD`] of a recovery from a catalog backup.
    pub fn holding_orphans(&self, now: u64) -> bool {
        self.recovered_at.is_some_and(|t| now < t.saturating_add(RECOVERY_HOLD.as_secs()))
    }

    /// What request credentials are bound to: the CA fingerprint, zeros without TLS.
    pub fn grid_id(&self) -> [u8; 32] {
        self.authority.as_ref().map(|a| a.fingerprint().0).unwrap_or([0; 32])
    }

    /// A token as handed out: the secret and, on a TLS grid, the CA fingerprint.
    pub fn token(&self, secret: &str) -> String {
        let ca = self.authority.as_ref().map(|a| a.fingerprint());
        scatter_net::Token::new(secret, ca).map(|t| t.to_string()).unwrap_or_else(|_| secret.to_owned())
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CoordinatorError + '_ {
    move |source| CoordinatorError::Io { path: path.to_owned(), source }
}

/// Writes a file readable only by its owner, atomically (temp file, fsync, rename).
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), CoordinatorError> {
    scatter_net::write_private(path, contents).map_err(io_err(path))
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("sct_{}", hex::encode(b))
}

/// BLAKE3 of a secret, as stored in the catalog instead of the secret itself.
pub(crate) fn secret_hash(secret: &str) -> [u8; 32] {
    *blake3::hash(secret.as_bytes()).as_bytes()
}

/// Reads a token file, rewriting it when the grid's CA fingerprint is not the one it carries
/// (a grid that moved to or from `--insecure`). Returns the secret.
fn token_file(path: &Path, ca: Option<scatter_net::Fingerprint>) -> Result<String, CoordinatorError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let token: scatter_net::Token =
        text.parse().map_err(|e| CoordinatorError::Damaged { path: path.to_owned(), what: format!("{e}") })?;
    if token.ca() != ca {
        let fixed = scatter_net::Token::new(token.secret(), ca).expect("the secret parsed already");
        write_private(path, format!("{fixed}\n").as_bytes())?;
    }
    Ok(token.secret().to_owned())
}

/// Creates `dir` (and its parents) if missing, readable by its owner only: it holds the
/// catalog, the CA and the signing key. A folder that exists is closed to others (its group
/// keeps what it had), and that is said.
pub(crate) fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o007 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o770))?;
            tracing::warn!(dir = %dir.display(), "the data directory was open to others; it is closed to them now (its group keeps what it had; the secrets in it are mode 0600)");
        }
    }
    Ok(())
}

/// Takes the data directory's lock (a file locked for as long as it is open): one
/// coordinator per data directory.
fn lock_data_dir(dir: &Path) -> Result<std::fs::File, CoordinatorError> {
    let path = dir.join("lock");
    let file =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io_err(&path))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .map_err(|_| CoordinatorError::Busy(dir.to_owned()))?;
    Ok(file)
}

/// What a coordinator opens at start: the catalog and the keys in its data directory.
struct Opened {
    store: Store,
    signing: SigningKey,
    join_token_hash: [u8; 32],
}

/// Opens the (locked) data directory and the catalog, creating the catalog, signing key and
/// tokens on first start. Blocks (on the catalog).
fn open_data_dir(
    dir: &Path,
    catalog: Option<&str>,
    ca: Option<scatter_net::Fingerprint>,
) -> Result<Opened, CoordinatorError> {
    let store = match catalog {
        Some(url) if store::is_postgres_url(url) => Store::open_postgres(url)?,
        Some(_) => return Err(CoordinatorError::NotPostgres),
        None => Store::open(&dir.join("catalog.db"))?,
    };
    let key_path = dir.join("coordinator.key");
    let signing = if key_path.exists() {
        let text = std::fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes)
            .map_err(|e| CoordinatorError::Damaged { path: key_path.clone(), what: e.to_string() })?;
        SigningKey::from_bytes(&bytes)
    } else {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        write_private(&key_path, hex::encode(key.to_bytes()).as_bytes())?;
        key
    };
    let join_path = dir.join("join-token");
    if !join_path.exists() {
        write_private(&join_path, random_token().as_bytes())?;
    }
    let join = token_file(&join_path, ca)?;
    // Before anything is written to the catalog: a coordinator with another grid's keys (a
    // new data directory pointed at a shared catalog) must not register an admin token there.
    let mut identity = vec![
        ("grant signing key", hex::encode(signing.verifying_key().as_bytes())),
        ("join token", hex::encode(secret_hash(&join))),
    ];
    if let Some(ca) = ca {
        identity.push(("CA", ca.to_string()));
    }
    if let Some((what, recorded)) = store.claim_grid(&identity)? {
        return Err(CoordinatorError::OtherGrid { what, recorded });
    }
    // Also the operator's way back in for a sole admin who lost every device and the
    // recovery code: with the file moved away, a start writes a new one (README, *Losing the
    // source machine*), and the event trail says so.
    let admin_path = dir.join("admin-token");
    if !admin_path.exists() {
        let token = random_token();
        // Named `admin`, or `admin-2`… when that name is taken (names are unique).
        let mut n = 1;
        let name = loop {
            let name = if n == 1 { "admin".to_owned() } else { format!("admin-{n}") };
            let role = scatter_proto::api::Role::Admin;
            if store.add_invite(&secret_hash(&token), &name, role, None, None, false)? {
                break name;
            }
            n += 1;
        };
        write_private(&admin_path, token.as_bytes())?;
        let detail = format!("a one-time admin token for `{name}`, written to {} at start", admin_path.display());
        store.record_event(now(), store::Party::Grid, "operator", "admin.token", &detail)?;
    }
    token_file(&admin_path, ca)?;
    Ok(Opened { store, signing, join_token_hash: secret_hash(&join) })
}

/// Refuses a `--public-url` that clients could not use: http on a TLS coordinator (it is
/// written to `url` and handed out), or https on an `--insecure` one (its tokens carry no CA
/// fingerprint to check a certificate by).
fn check_public_url(urls: Option<&scatter_net::CoordinatorUrls>, insecure: bool) -> Result<(), CoordinatorError> {
    let (scheme, serves, given) =
        if insecure { ("http", "plain HTTP (--insecure)", "TLS") } else { ("https", "TLS", "plain HTTP") };
    match urls
        .into_iter()
        .flat_map(|u| u.as_slice())
        .find(|u| !u.to_ascii_lowercase().starts_with(&format!("{scheme}://")))
    {
        Some(url) => Err(CoordinatorError::PublicUrl { url: url.clone(), given, serves, scheme }),
        None => Ok(()),
    }
}

/// Serves the coordinator on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), CoordinatorError> {
    check_public_url(config.public_url.as_ref(), config.insecure)?;
    // Checked and bound before anything is written: a dashboard that cannot be served safely
    // (plain HTTP beyond loopback, a certificate that does not load) stops the start.
    let dashboard = match &config.dashboard {
        Some(d) => Some(dashboard::bind(d).await?),
        None => None,
    };
    // The folder first (the CA is written into it on a first start), then its lock, before
    // anything in it is read or written.
    private_dir(&config.data_dir).map_err(io_err(&config.data_dir))?;
    let lock = lock_data_dir(&config.data_dir)?;
    let authority = match config.insecure {
        true => {
            tracing::warn!("{}", scatter_net::INSECURE_WARNING);
            None
        }
        false => Some(scatter_net::tls::Authority::load_or_create(&config.data_dir)?),
    };
    let fingerprint = authority.as_ref().map(|a| a.fingerprint());
    let (dir, catalog) = (config.data_dir.clone(), config.catalog.clone());
    let Opened { store, signing, join_token_hash } =
        tokio::task::spawn_blocking(move || open_data_dir(&dir, catalog.as_deref(), fingerprint))
            .await
            .map_err(|e| CoordinatorError::Store(store::StoreError::Task(e.to_string())))??;
    let tls = authority.as_ref().map(|a| a.coordinator_config()).transpose()?;
    let backups = match shared_catalog(&config) {
        true => None,
        false => {
            let public = recovery::ensure_key(&config.data_dir, signing.verifying_key(), fingerprint)?;
            let key_path = config.data_dir.join(recovery::KEY_FILE);
            if key_path.exists() {
                tracing::warn!(
                    "move {} offline (it is the grid's master key: it opens catalog backups, which hold the CA and signing keys); \
                     without it a lost coordinator cannot be recovered",
                    key_path.display()
                );
            }
            Some(catalog_backup::Backups {
                public,
                interval: config.catalog_backup_interval,
                data_dir: config.data_dir.clone(),
                soon: tokio::sync::Notify::new(),
                running: tokio::sync::Mutex::new(()),
                failing: Default::default(),
            })
        }
    };
    // On the blocking pool: PostgreSQL's client blocks (and must not run on the runtime).
    let (store, recovered_at, hosts) = tokio::task::spawn_blocking(move || {
        let (got, hosts) = (store.meta("recovered_at"), store.hosts());
        (store, got, hosts)
    })
    .await
    .map_err(|e| CoordinatorError::Store(store::StoreError::Task(e.to_string())))?;
    let recovered_at = recovered_at?.and_then(|v| v.parse::<u64>().ok());
    let start = room::Start { at: now(), last_heard: hosts?.iter().map(|h| h.last_seen).max().unwrap_or(0) };
    let addr = listener.local_addr().map_err(CoordinatorError::Serve)?;
    let url = config.public_url.as_ref().map(|u| u.to_string()).unwrap_or_else(|| {
        let scheme = if config.insecure { "http" } else { "https" };
        scatter_net::listening_url(scheme, addr, "coordinator")
    });
    let shared = Arc::new(Shared {
        store,
        _lock: lock,
        signing,
        join_token_hash,
        offline_after: config.offline_after,
        session_ttl: config.session_ttl,
        checker_interval: config.checker_interval,
        metering_interval: config.metering_interval,
        orphan_grace: config.orphan_grace,
        release_grace: config.release_grace,
        reservation_ttl: config.reservation_ttl,
        tolerate: config.tolerate,
        period_margin: config.period_margin,
        instance: {
            let mut b = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut b);
            hex::encode(b)
        },
        spread: Default::default(),
        respread: std::sync::Mutex::new(repair::Respread { more: true, ..Default::default() }),
        repair_deferred: Default::default(),
        repair_refusals: Default::default(),
        repair_laggards: Default::default(),
        request_times: Default::default(),
        report_checks: Default::default(),
        unanswered: Default::default(),
        inventoried: Default::default(),
        idle_sessions_from: Default::default(),
        http: scatter_net::http_client(fingerprint, scatter_net::Peer::Host)
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| CoordinatorError::Serve(std::io::Error::other(e)))?,
        authority,
        replay: std::sync::Mutex::new(scatter_proto::auth::ReplayCache::new(api::guard::REPLAY_CAPACITY)),
        failures: Default::default(),
        body_budget: tokio::sync::Semaphore::new(api::guard::BODY_BUDGET >> 10),
        open_body_budget: tokio::sync::Semaphore::new(api::guard::OPEN_BODY_BUDGET >> 10),
        host_body_budget: tokio::sync::Semaphore::new(api::guard::HOST_BODY_BUDGET >> 10),
        account_bodies: Default::default(),
        account_answers: Default::default(),
        listings: Default::default(),
        host_beat_budget: tokio::sync::Semaphore::new(api::guard::HOST_BEAT_BUDGET >> 10),
        host_bodies: Default::default(),
        verdict_key: {
            let mut k = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut k);
            k
        },
        backups,
        recovered_at,
        start,
        dashboard: dashboard.as_ref().map(|d| d.served.clone()),
    });
    if let Some(t) = recovered_at.filter(|_| shared.holding_orphans(now())) {
        tracing::warn!(
            recovered_at = t,
            "this catalog was restored from a backup: shards on hosts that it does not know are kept (not deleted) for 7 days after the recovery"
        );
    }
    write_private(&config.data_dir.join("url"), format!("{url}\n").as_bytes())?;
    let config_file = config.config_file.as_ref().map_or_else(|| "none".into(), |f| f.display().to_string());
    match fingerprint {
        Some(fp) => {
            tracing::info!(%url, data_dir = %config.data_dir.display(), catalog = shared.store.backend(), ca = %fp, config = %config_file, "coordinator listening (TLS)")
        }
        None => {
            tracing::info!(%url, data_dir = %config.data_dir.display(), catalog = shared.store.backend(), config = %config_file, "coordinator listening (plain HTTP)")
        }
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let gc = tokio::spawn(gc::run(shared.clone(), stop_rx.clone()));
    let checker = tokio::spawn(repair::check(shared.clone(), stop_rx.clone()));
    let repairer = tokio::spawn(repair::run(shared.clone(), stop_rx.clone()));
    let sampler = tokio::spawn(metering_job::run(shared.clone(), stop_rx.clone()));
    let backup = tokio::spawn(catalog_backup::run(shared.clone(), stop_rx.clone()));
    let board = dashboard.map(|d| {
        write_private(&config.data_dir.join("dashboard-url"), format!("{}\n", d.served.url).as_bytes())?;
        tracing::info!(url = %d.served.url, tls = d.served.secure, "dashboard listening");
        let mut stop = stop_rx.clone();
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        Ok::<_, CoordinatorError>(tokio::spawn(scatter_net::serve::serve(
            d.listener,
            dashboard::router(shared.clone()),
            d.tls,
            stopped,
        )))
    });
    let board = board.transpose()?;
    let served = scatter_net::serve::serve(listener, api::router(shared.clone()), tls, shutdown).await;
    let _ = stop_tx.send(true);
    if let Some(board) = board {
        let _ = board.await;
    }
    let _ = gc.await;
    let _ = checker.await;
    let _ = repairer.await;
    let _ = backup.await;
    let _ = sampler.await;
    // Hand the background jobs over at once rather than when the leases lapse.
    let holder = shared.instance.clone();
    if let Err(e) = shared.catalog(move |s| s.release_leases(&holder)).await {
        tracing::warn!(error = %e, "could not release the leases on background jobs; they lapse by themselves");
    }
    served.map_err(CoordinatorError::Serve)
}

/// Whether the catalog is PostgreSQL's (no catalog backups then).
fn shared_catalog(config: &Config) -> bool {
    config.catalog.is_some()
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
