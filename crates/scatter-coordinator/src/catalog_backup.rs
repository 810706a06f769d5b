//! Catalog backups: the SQLite catalog is never a single copy.
//!
//! Every `--catalog-backup-interval` (when something changed), soon after every
//! security-relevant change ([`crate::Shared::backup_soon`]), at clean shutdown (bounded)
//! and on an admin's request, the coordinator takes a consistent online snapshot of its
//! catalog (`VACUUM INTO`), bundles it with the data directory's key files, encrypts the
//! bundle to the grid recovery key (age), signs a header naming the grid, a strictly
//! increasing sequence number, the time and the ciphertext's and shards' hashes, and
//! stores one erasure-coded shard on each of as many online hosts as the code has shards,
//! spread over failure domains (see [`plan`]).
//! Hosts keep the newest few. See [`crate::recovery`] for the formats and the way back.
//!
//! "Changed" leaves out what moves all the time (heartbeats, leases, keepalives; see
//! [`crate::recovery::content_hash`]), so an idle grid is not backed up every interval.
//! A PostgreSQL catalog has no catalog backups: PostgreSQL is backed up by its own means.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use scatter_proto::api::CatalogBackupResponse;
use scatter_proto::catalog_backup::{self as cb, BackupHeader, MAX_BACKUP_SHARD};

use crate::recovery::{self, RecoveryPub, BUNDLE_FILES};
use crate::{now, Shared};

/// A change waits this long before its backup, so a burst of changes makes one backup.
const SETTLE: Duration = Duration::from_secs(1);
/// Backups asked for by changes that may start one right after another...
const SOON_BURST: f64 = 10.0;
/// ...and how often one more may, past those: some changes any account or host may make
/// at will (its recovery code, whom it trusts), and each backup encrypts and uploads the
/// whole catalog. A change waits at most this long for its backup.
const SOON_EVERY: Duration = Duration::from_secs(30);
/// The first backup after start comes at most this late.
const FIRST_AFTER: Duration = Duration::from_secs(60);
/// How long the backup at shutdown may take.
const AT_SHUTDOWN: Duration = Duration::from_secs(15);
/// How long one host may take to store its shard.
const PUT_TIMEOUT: Duration = Duration::from_secs(120);
/// A backup that failed is tried again this soon (or at the interval, if shorter): it may
/// hold a security-relevant change (a revoked device, a new recovery code) that a recovery
/// from the backup before would undo.
const RETRY_AFTER: Duration = Duration::from_secs(20);

/// Meta keys of the last backup.
pub(crate) const META_SEQ: &str = "catalog_backup.seq";
pub(crate) const META_SEQ_USED: &str = "catalog_backup.seq_used";
pub(crate) const META_TIME: &str = "catalog_backup.time";
pub(crate) const META_CONTENT: &str = "catalog_backup.content";
/// Changes committed before this time (unix seconds) are in the newest backup: it was taken
/// after them, or nothing changed since one that was.
const META_COVERS: &str = "catalog_backup.covers";

/// What the backup job needs: present for a SQLite catalog only.
pub(crate) struct Backups {
    /// The recovery key's public halves.
    pub public: RecoveryPub,
    /// Time between backups (when something changed).
    pub interval: Duration,
    /// The data directory (key files, temp snapshots).
    pub data_dir: PathBuf,
    /// Woken by [`crate::Shared::backup_soon`].
    pub soon: tokio::sync::Notify,
    /// One backup at a time.
    pub running: tokio::sync::Mutex<()>,
    /// Since when (unix seconds) the backups tried have failed, and the last one's error:
    /// `admin health` says so (released data waits for a backup to be deleted).
    pub failing: std::sync::Mutex<Option<(u64, String)>>,
}

/// Why a backup was not taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BackupFailed {
    /// This coordinator keeps no catalog backups (PostgreSQL catalog).
    #[error("this coordinator's catalog is in PostgreSQL, which is backed up by its own means; there are no catalog backups")]
    NotSqlite,
    /// No host is online.
    #[error("no host is online to store a catalog backup (hosts late with their heartbeats are tried too); it is retried in 20 s")]
    NoHosts,
    /// The catalog is too large for backups on hosts.
    #[error(
        "the catalog is too large for backups on hosts ({0} bytes encrypted); move the grid to a PostgreSQL catalog"
    )]
    TooLarge(u64),
    /// Too few hosts stored their shard.
    #[error("only {stored} of {needed} hosts stored their shard of the catalog backup: {why}")]
    TooFewStored {
        /// Stored.
        stored: usize,
        /// Needed at least (k).
        needed: usize,
        /// The hosts' errors.
        why: String,
    },
    /// Reading, encrypting or coding failed.
    #[error("taking a catalog backup failed: {0}")]
    Local(String),
}

fn local(e: impl std::fmt::Display) -> BackupFailed {
    BackupFailed::Local(e.to_string())
}

/// Runs the backup job until `stop` changes, then takes a last backup (bounded in time).
pub(crate) async fn run(shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let Some(b) = shared.backups.as_ref() else { return };
    let mut wait = b.interval.min(FIRST_AFTER);
    let mut allowance = Allowance::new(std::time::Instant::now());
    loop {
        let soon = tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            _ = b.soon.notified() => true,
            _ = stop.changed() => break,
        };
        if soon {
            let turn = allowance.wait(std::time::Instant::now());
            tokio::select! {
                _ = tokio::time::sleep(SETTLE.max(turn)) => {}
                _ = stop.changed() => break,
            }
        }
        // Changes asked for before this backup starts are in it: a request stored meanwhile
        // (several changes in a row leave one) would take another backup right after, of
        // whatever changed since, however little.
        let _ = futures::FutureExt::now_or_never(b.soon.notified());
        let taken = take(&shared, false).await;
        wait = if taken.is_ok() { b.interval } else { b.interval.min(RETRY_AFTER) };
        {
            let mut failing = b.failing.lock().unwrap_or_else(|p| p.into_inner());
            match &taken {
                Ok(_) => *failing = None,
                Err(e) => *failing = Some((failing.as_ref().map_or(now(), |f| f.0), e.to_string())),
            }
        }
        log(taken);
    }
    match tokio::time::timeout(AT_SHUTDOWN, take(&shared, false)).await {
        Ok(r) => log(r),
        Err(_) => tracing::warn!("the catalog backup at shutdown did not finish in time; the last one stands"),
    }
}

/// When backups asked for by changes may start: [`SOON_BURST`] at once, then one every
/// [`SOON_EVERY`], so that no flood of changes keeps the coordinator backing up.
struct Allowance {
    /// Backups that may start now (below zero: how far behind the next one is).
    level: f64,
    /// When `level` was last brought up to date.
    at: std::time::Instant,
}

impl Allowance {
    fn new(now: std::time::Instant) -> Self {
        Self { level: SOON_BURST, at: now }
    }

    /// Takes the next backup's turn at `now`: how long it waits for it.
    fn wait(&mut self, now: std::time::Instant) -> Duration {
        let earned = now.saturating_duration_since(self.at).as_secs_f64() / SOON_EVERY.as_secs_f64();
        self.level = (self.level + earned).min(SOON_BURST) - 1.0;
        self.at = now;
        SOON_EVERY.mul_f64((-self.level).max(0.0))
    }
}

fn log(r: Result<CatalogBackupResponse, BackupFailed>) {
    match r {
        Ok(b) if b.taken => {
            tracing::info!(
                seq = b.seq,
                bytes = b.size,
                k = b.k,
                m = b.m,
                hosts = b.hosts,
                "catalog backup stored on hosts"
            )
        }
        Ok(_) => tracing::debug!("catalog unchanged since its last backup"),
        Err(e) => tracing::warn!(error = %e, "catalog backup failed"),
    }
}

/// What the snapshot step produced.
struct Snapshot {
    bundle: Vec<u8>,
    content: String,
}

/// Takes a backup now (unless nothing changed since the last one and `force` is false).
pub(crate) async fn take(shared: &Arc<Shared>, force: bool) -> Result<CatalogBackupResponse, BackupFailed> {
    let b = shared.backups.as_ref().ok_or(BackupFailed::NotSqlite)?;
    let _one = b.running.lock().await;
    let last_content = shared.catalog(|s| s.meta(META_CONTENT)).await.map_err(local)?;
    // Changes carry whole seconds: the snapshot starts once the second after this one has,
    // so that everything committed in this second or before is in it, whatever the request
    // for a backup it asked (which this backup may have taken up, see `run`).
    let covers = {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let next = t.as_secs() + 1;
        tokio::time::sleep(Duration::from_secs(next).saturating_sub(t)).await;
        next
    };
    let sh = shared.clone();
    let dir = b.data_dir.clone();
    let access = b.public.access.to_bytes();
    let snap = tokio::task::spawn_blocking(move || -> Result<Option<Snapshot>, BackupFailed> {
        let tmp = dir.join(".catalog-backup.tmp.db");
        let _ = std::fs::remove_file(&tmp);
        let made = sh.store.snapshot_into(&tmp).map_err(local);
        let out = made.and_then(|sqlite| {
            if !sqlite {
                return Err(BackupFailed::NotSqlite);
            }
            // With the recovery key named: a new key is a reason for a new backup.
            let content =
                format!("{}:{}", hex::encode(recovery::content_hash(&tmp).map_err(local)?), hex::encode(access));
            if !force && last_content.as_deref() == Some(content.as_str()) {
                return Ok(None);
            }
            let mut files = vec![("catalog.db", std::fs::read(&tmp).map_err(local)?)];
            for name in BUNDLE_FILES.iter().filter(|n| **n != "catalog.db") {
                match std::fs::read(dir.join(name)) {
                    Ok(bytes) => files.push((name, bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(local(format!("{name}: {e}"))),
                }
            }
            Ok(Some(Snapshot { bundle: recovery::encode_bundle(&files), content }))
        });
        let _ = std::fs::remove_file(&tmp);
        out
    })
    .await
    .map_err(local)??;
    let Some(Snapshot { bundle, content }) = snap else {
        let seq = shared.catalog(|s| s.meta(META_SEQ)).await.map_err(local)?.and_then(|v| v.parse().ok());
        let time = shared.catalog(|s| s.meta(META_TIME)).await.map_err(local)?.and_then(|v| v.parse().ok());
        if seq.is_some() {
            // Nothing changed since the newest backup: it holds what the catalog holds now.
            shared.catalog(move |s| s.set_meta(&[(META_COVERS, covers.to_string())])).await.map_err(local)?;
        }
        return Ok(CatalogBackupResponse {
            seq: seq.unwrap_or(0),
            time: time.unwrap_or(0),
            size: 0,
            k: 0,
            m: 0,
            hosts: 0,
            taken: false,
        });
    };

    let hosts: Vec<_> = shared
        .catalog(|s| s.hosts())
        .await
        .map_err(local)?
        .into_iter()
        .map(|h| {
            let (state, domain) = (crate::room::host_state(shared, &h), h.domain());
            (h, state, domain)
        })
        .collect();
    let Some(Plan { domains, spares, k, m }) = plan(hosts, shared.tolerate) else {
        return Err(BackupFailed::NoHosts);
    };

    // A sequence number is used once, even by a backup that then fails.
    let seq = {
        let used = shared.catalog(|s| s.meta(META_SEQ_USED)).await.map_err(local)?;
        let seq = used.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + 1;
        shared.catalog(move |s| s.set_meta(&[(META_SEQ_USED, seq.to_string())])).await.map_err(local)?;
        seq
    };
    let time = now();
    let (recipient, grid, signing) = (b.public.recipient.clone(), shared.grid_id(), shared.signing.clone());
    let files = tokio::task::spawn_blocking(move || -> Result<(BackupHeader, Vec<Vec<u8>>), BackupFailed> {
        let ct = age::encrypt(&recipient, &bundle).map_err(local)?;
        let size = ct.len() as u64;
        if size / k as u64 + 64 * 1024 > MAX_BACKUP_SHARD {
            return Err(BackupFailed::TooLarge(size));
        }
        let hash = *blake3::hash(&ct).as_bytes();
        let shards = scatter_core::erasure::encode(ct, k, m, &mut rand::rngs::OsRng).map_err(local)?;
        let n = k as usize + m as usize;
        let header = BackupHeader {
            grid,
            seq,
            time,
            hash,
            size,
            k,
            m,
            shard_size: shards.layout.shard_size,
            shard_hashes: (0..n).map(|i| *blake3::hash(shards.shard(i)).as_bytes()).collect(),
        };
        let signed = header.sign(&signing);
        let files = (0..n).map(|i| cb::encode_shard(&signed, i as u8, shards.shard(i))).collect();
        Ok((header, files))
    })
    .await
    .map_err(local)??;
    let (header, files) = files;
    // A domain stores its shards on its hosts in turn: a host that refuses, or is gone,
    // leaves its shard to the domain's next host, not unstored.
    let mut files = files.into_iter().map(bytes::Bytes::from).enumerate();
    let puts = domains.iter().map(|(hosts, count)| {
        let mine: Vec<_> = files.by_ref().take(*count).collect();
        async move {
            let mut hosts = hosts.iter();
            let mut out = Vec::new();
            for (i, body) in mine {
                out.push((i, store_on(shared, &mut hosts, seq, i, &body).await.map_err(|why| (why, body))));
            }
            out
        }
    });
    let mut results = Vec::new();
    // A shard its domain could not store goes to a domain that holds none, one each.
    let mut spares = spares.iter();
    for (i, result) in futures::future::join_all(puts).await.into_iter().flatten() {
        let result = match result {
            Ok(()) => Ok(()),
            Err((mut why, body)) => loop {
                let Some(domain) = spares.next() else { break Err(why) };
                match store_on(shared, &mut domain.iter(), seq, i, &body).await {
                    Ok(()) => break Ok(()),
                    Err(e) => why = format!("{why}; {e}"),
                }
            },
        };
        results.push(result);
    }
    let stored = results.iter().filter(|r| r.is_ok()).count();
    let why: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    if stored < k as usize {
        return Err(BackupFailed::TooFewStored { stored, needed: k as usize, why: why.join("; ") });
    }
    if !why.is_empty() {
        tracing::warn!(seq, stored, failed = %why.join("; "), "some hosts did not store their catalog backup shard");
    }
    let (seq, time) = (header.seq, header.time);
    shared
        .catalog(move |s| {
            s.set_meta(&[
                (META_SEQ, seq.to_string()),
                (META_TIME, time.to_string()),
                (META_CONTENT, content),
                (META_COVERS, covers.to_string()),
            ])
        })
        .await
        .map_err(local)?;
    Ok(CatalogBackupResponse { seq, time, size: header.size, k, m, hosts: stored, taken: true })
}

/// Before when (unix seconds) a change must have been committed for the newest backup to
/// hold it; `u64::MAX` without catalog backups (PostgreSQL). A shard the catalog places on a
/// host is deleted there only once this passes the change that let it go (a release, a
/// move): a coordinator recovered from the newest backup must find every shard it places.
pub(crate) async fn covered(shared: &Arc<Shared>) -> Result<u64, crate::store::StoreError> {
    if shared.backups.is_none() {
        return Ok(u64::MAX);
    }
    Ok(shared.catalog(|s| s.meta(META_COVERS)).await?.and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// The newest backup's sequence number and time, as recorded.
pub(crate) async fn last(shared: &Arc<Shared>) -> Option<(u64, u64)> {
    shared.backups.as_ref()?;
    let read = |key: &'static str| async move {
        shared.catalog(move |s| s.meta(key)).await.ok().flatten().and_then(|v| v.parse::<u64>().ok())
    };
    Some((read(META_SEQ).await?, read(META_TIME).await?))
}

/// Stores shard `i` of backup `seq` on the first of `hosts` that takes it; why none did.
async fn store_on(
    shared: &Shared,
    hosts: &mut std::slice::Iter<'_, crate::store::HostRow>,
    seq: u64,
    i: usize,
    body: &bytes::Bytes,
) -> Result<(), String> {
    let mut why = Vec::new();
    for h in hosts {
        match put_shard(shared, h, seq, i as u8, body.clone()).await {
            Ok(()) => return Ok(()),
            Err(e) => why.push(e),
        }
    }
    Err(format!("shard {i}: {}", why.join("; ")))
}

/// Stores shard `i` of backup `seq` on host `h`; the host's refusal, in a sentence.
async fn put_shard(
    shared: &Shared,
    h: &crate::store::HostRow,
    seq: u64,
    i: u8,
    body: bytes::Bytes,
) -> Result<(), String> {
    // The host checks this grant before it reads a byte of the body.
    let grant = scatter_proto::Grant {
        host: h.id,
        shard: scatter_proto::grant::catalog_shard(seq, i),
        op: scatter_proto::Op::CatalogPut,
        max_size: body.len() as u64,
        expires: now() + PUT_TIMEOUT.as_secs() + 60,
        nonce: 0,
    }
    .sign(&shared.signing);
    let req = shared
        .http
        .put(format!("{}/catalog/{seq}/{i}", h.address))
        .header(scatter_proto::api::GRANT_HEADER, grant.0)
        .timeout(PUT_TIMEOUT)
        .body(body);
    match req.send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => {
            // A host's error is read bounded and cut short: it is only reported.
            let status = r.status();
            let rate = scatter_net::limits::MinRate::new(Duration::from_secs(5), 1024);
            let body = scatter_net::limits::read_response(r, 16 << 10, rate).await.ok();
            let why = body
                .and_then(|b| serde_json::from_slice::<scatter_proto::api::ErrorBody>(&b).ok())
                .map(|b| b.error.chars().take(300).collect())
                .unwrap_or_else(|| status.to_string());
            Err(format!("host {}: {why}", h.id))
        }
        Err(e) => Err(format!("host {}: {}", h.id, scatter_net::root_cause(&e))),
    }
}

/// Where a backup's shards go, and its code.
struct Plan<T> {
    /// Each failure domain with its hosts in the order to try them, and how many shards it
    /// stores.
    domains: Vec<(Vec<T>, usize)>,
    /// The domains left, one shard each at most, for shards their own domain could not
    /// store.
    spares: Vec<Vec<T>>,
    /// Data shards.
    k: u8,
    /// Parity shards.
    m: u8,
}

/// Where to store a backup, on the hosts that may take one: those online, then those a
/// heartbeat or two late (suspect), which are up in all likelihood (leaving those out made
/// a grid whose heartbeats come close to its grace take no backup of a security-relevant
/// change at all). None without such hosts.
///
/// Shards are spread by failure domain, not by host: spread by host id, a 4+2 backup put
/// three shards on one operator's three hosts, which could then make every backup fail, and
/// the catalog unrecoverable, by dropping theirs. Every domain stores the same number of
/// shards c (or as many as it has hosts), the largest c for which the loss of any f domains
/// (the grid's tolerance, or the automatic one for this many domains) costs no more than the
/// code's m; at most [`cb::MAX_BACKUP_SHARDS`] in all. Domains with a host online come first.
fn plan<T, D: Eq>(hosts: Vec<(T, scatter_proto::api::HostState, D)>, tolerate: Option<u8>) -> Option<Plan<T>> {
    use scatter_proto::api::HostState::{Online, Suspect};
    let (online, rest): (Vec<_>, Vec<_>) = hosts.into_iter().partition(|(_, s, _)| *s == Online);
    let suspect = rest.into_iter().filter(|(_, s, _)| *s == Suspect);
    let mut by_domain: Vec<(D, Vec<T>)> = Vec::new();
    for (h, _, d) in online.into_iter().chain(suspect) {
        match by_domain.iter_mut().find(|(x, _)| *x == d) {
            Some((_, list)) => list.push(h),
            None => by_domain.push((d, vec![h])),
        }
    }
    let domains: Vec<Vec<T>> = by_domain.into_iter().map(|(_, list)| list).take(cb::MAX_BACKUP_SHARDS).collect();
    if domains.is_empty() {
        return None;
    }
    let f = tolerate.unwrap_or_else(|| crate::durability::auto_tolerance(domains.len()));
    let (dk, dm) = crate::durability::default_code(f, domains.len());
    let biggest = domains.iter().map(Vec::len).max().unwrap_or(1);
    // c = 1 always qualifies when the grid can lose f domains at all (m is kept up to n - 1).
    let (c, k, m) = (1..=biggest)
        .rev()
        .map(|c| {
            let n: usize = domains.iter().map(|d| d.len().min(c)).sum::<usize>().min(cb::MAX_BACKUP_SHARDS);
            let (k, m) = recovery::backup_code(n, dk, dm);
            (c, k, m)
        })
        .find(|&(c, _, m)| f as usize * c <= m as usize)
        .unwrap_or_else(|| {
            let (k, m) = recovery::backup_code(domains.len(), dk, dm);
            (1, k, m)
        });
    let mut left = k as usize + m as usize;
    let (mut chosen, mut spares) = (Vec::new(), Vec::new());
    for d in domains {
        let count = d.len().min(c).min(left);
        left -= count;
        match count {
            0 => spares.push(d),
            _ => chosen.push((d, count)),
        }
    }
    Some(Plan { domains: chosen, spares, k, m })
}

#[cfg(test)]
mod tests {
    use super::*;
    use scatter_proto::api::HostState;
    use scatter_proto::api::HostState::*;

    /// The domains' host lists and shard counts, and the code.
    fn planned<D: Eq>(hosts: Vec<(u64, HostState, D)>, f: Option<u8>) -> (Vec<(Vec<u64>, usize)>, u8, u8) {
        let p = plan(hosts, f).expect("a plan");
        (p.domains, p.k, p.m)
    }

    #[test]
    fn a_flood_of_changes_gets_a_burst_of_backups_then_one_every_while() {
        let start = std::time::Instant::now();
        let mut a = Allowance::new(start);
        for _ in 0..SOON_BURST as usize {
            assert_eq!(a.wait(start), Duration::ZERO);
        }
        // Past the burst, each waits its turn behind the one before.
        assert_eq!(a.wait(start), SOON_EVERY);
        assert_eq!(a.wait(start + SOON_EVERY), SOON_EVERY);
        let later = start + 2 * SOON_EVERY;
        assert_eq!(a.wait(later), SOON_EVERY, "one turn a period, however many ask");
        // Left alone, the allowance comes back, up to the burst.
        let quiet = later + SOON_EVERY * 100;
        for _ in 0..SOON_BURST as usize {
            assert_eq!(a.wait(quiet), Duration::ZERO);
        }
        assert!(a.wait(quiet) > Duration::ZERO);
    }

    #[test]
    fn backups_go_to_online_hosts_first_then_to_late_ones() {
        let hosts =
            vec![(1, Suspect, 1), (2, Offline, 2), (3, Online, 3), (4, Disabled, 4), (5, Suspect, 5), (6, Draining, 6)];
        assert_eq!(planned(hosts, None), (vec![(vec![3], 1), (vec![1], 1), (vec![5], 1)], 1, 2));
        let many: Vec<_> =
            (0..cb::MAX_BACKUP_SHARDS as u64 + 5).map(|i| (i, if i < 5 { Suspect } else { Online }, i)).collect();
        let p = plan(many, None).expect("a plan");
        assert_eq!((p.domains.len(), p.k, p.m), (6, 4, 2));
        assert_eq!(p.spares.len(), cb::MAX_BACKUP_SHARDS - 6);
        assert!(p.domains.iter().all(|(d, _)| d[0] >= 5), "a late host was taken before an online one");
        assert!(plan(vec![(1, Offline, 1)], None).is_none());
    }

    #[test]
    fn one_operator_holds_no_more_of_a_backup_than_its_code_can_lose() {
        // The red team's grid: hosts 1-3 joined with one operator's token (one domain), 4-7 on
        // their own. Spread by host id, a 4+2 backup put three shards on the operator's hosts.
        let domain = |i: u64| if i <= 3 { 0 } else { i };
        let hosts: Vec<_> = (1..=7u64).map(|i| (i, Online, domain(i))).collect();
        // Five domains (f = 1): the operator may hold the two shards a 4+2 backup can lose.
        let (chosen, k, m) = planned(hosts.clone(), None);
        assert_eq!(chosen, [(vec![1, 2, 3], 2), (vec![4], 1), (vec![5], 1), (vec![6], 1), (vec![7], 1)]);
        assert_eq!((k, m), (4, 2));
        assert!(f_losses_covered(&chosen, 1, m));
        // Told to survive two domains: one shard each, with two of parity.
        let (chosen, k, m) = planned(hosts, Some(2));
        assert!(chosen.iter().all(|(_, c)| *c == 1));
        assert_eq!((k, m), (3, 2));
    }

    #[test]
    fn few_domains_take_several_shards_each_as_far_as_the_code_allows() {
        // One party's grid (f = 0): every host a shard, as before domains counted.
        let (chosen, k, m) = planned((1..=6u64).map(|i| (i, Online, 0)).collect(), None);
        assert_eq!((chosen, k, m), (vec![((1..=6).collect(), 6)], 4, 2));
        // Two domains of three hosts (f = 1): two shards each, and 2+2 survives either's loss.
        let (chosen, k, m) = planned((1..=6u64).map(|i| (i, Online, i % 2)).collect(), None);
        assert_eq!((chosen, k, m), (vec![(vec![1, 3, 5], 2), (vec![2, 4, 6], 2)], 2, 2));
        // Domains of 3, 1 and 1 hosts (f = 1): three shards on the big one would pass m = 2.
        let (chosen, k, m) =
            planned(vec![(1, Online, 0), (2, Online, 0), (3, Online, 0), (4, Online, 4), (5, Online, 5)], None);
        assert_eq!((chosen.clone(), k, m), (vec![(vec![1, 2, 3], 2), (vec![4], 1), (vec![5], 1)], 2, 2));
        assert!(f_losses_covered(&chosen, 1, m));
    }

    /// Whether losing the `f` domains holding the most shards leaves at least k.
    fn f_losses_covered(domains: &[(Vec<u64>, usize)], f: usize, m: u8) -> bool {
        let mut counts: Vec<usize> = domains.iter().map(|d| d.1).collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        counts.iter().take(f).sum::<usize>() <= m as usize
    }
}
