//! `scatter coordinator recover`: rebuilds a lost coordinator's data directory from the
//! newest catalog backup found on the grid's hosts, with the recovery key alone.
//!
//! Every step trusts the hosts for nothing but availability: their TLS is checked against
//! the CA fingerprint in the recovery key file, a backup counts only under a header the
//! grid's signing key signed (a planted one is refused, and said so), every shard is checked
//! against that header, the decoded ciphertext against its hash, and age authenticates the
//! plaintext. A host can withhold backups (then an older one, or none, is found), never
//! substitute one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use scatter_core::HostId;
use scatter_net::limits::{read_response, MinRate};
use scatter_proto::catalog_backup::{
    self as cb, BackupError, BackupHeader, CatalogHostId, CatalogListing, MAX_BACKUP_SHARD, RECOVERY_HEADER,
};

use crate::recovery::{self, RecoveryError, RecoveryKey};

/// What to recover, from where.
#[derive(Debug, Clone)]
pub struct RecoverOptions {
    /// The new data directory (absent or empty).
    pub data_dir: PathBuf,
    /// The grid's `recovery.key`.
    pub key_file: PathBuf,
    /// Hosts' URLs (any of the grid's hosts; the more, the likelier a full backup).
    pub hosts: Vec<String>,
}

/// What a recovery restored.
#[derive(Debug, Clone)]
pub struct Recovered {
    /// The backup's sequence number.
    pub seq: u64,
    /// When it was taken (unix seconds).
    pub time: u64,
    /// Hosts that answered with the recovery key's proof.
    pub hosts_answered: usize,
    /// What was refused or failed on the way, one sentence each (planted backups,
    /// unreachable hosts, bad shards).
    pub notes: Vec<String>,
}

/// Why a recovery failed.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// The target folder holds files.
    #[error("{0} is not empty; recover into a new, empty folder (it becomes the coordinator's --data-dir)")]
    NotEmpty(PathBuf),
    /// The recovery key file is unusable.
    #[error(transparent)]
    Key(#[from] RecoveryError),
    /// No host accepted the key's proof.
    #[error(
        "no host accepted this recovery key ({refused} refused it, the first saying: {first}); give the recovery.key this grid's coordinator wrote (hosts serve backups only to its holder)"
    )]
    Refused {
        /// Hosts that refused.
        refused: usize,
        /// The first one's answer.
        first: String,
    },
    /// No usable backup was found.
    #[error("no complete catalog backup signed by this grid was found on the hosts given ({0}); name more of the grid's hosts with --host")]
    NoneFound(String),
    /// The backup does not open with this key.
    #[error(
        "catalog backup {0} does not open with this recovery key's age identity, nor does any older one on the hosts given; use the grid's current recovery.key"
    )]
    Decrypt(u64),
    /// Writing the new data directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The restored catalog could not be marked as recovered.
    #[error("the restored catalog: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// Largest listing a host may answer with.
const MAX_LISTING: u64 = 4 << 20;
/// Largest other answer (a host id, an error).
const SMALL_ANSWER: u64 = 16 << 10;
/// A host that sends nothing for this long (no answer, or no more of one) is skipped.
const SILENT_HOST: Duration = Duration::from_secs(if cfg!(test) { 1 } else { 30 });

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// One host, as far as recovery got with it.
struct Host {
    url: String,
    id: HostId,
}

/// Why a host did not give what was asked.
enum Failed {
    /// It answered no (the key's proof refused, above all).
    Refused(String),
    /// It could not be reached, or sent nothing.
    Unreachable(String),
}

impl Failed {
    fn into_note(self) -> String {
        match self {
            Failed::Refused(s) | Failed::Unreachable(s) => s,
        }
    }
}

/// Asks `url` for `path` with a fresh proof of the recovery access key.
async fn get(
    http: &reqwest::Client,
    key: &RecoveryKey,
    host: &Host,
    path: &str,
    limit: u64,
) -> Result<Vec<u8>, Failed> {
    let proof = cb::sign_proof(&key.access, host.id, path, unix_now());
    let resp = http.get(format!("{}{path}", host.url)).header(RECOVERY_HEADER, proof).send().await.map_err(|e| {
        Failed::Unreachable(match e.is_timeout() {
            true => format!("{} sent nothing for {} s; skipped", host.url, SILENT_HOST.as_secs()),
            false => format!("{} could not be reached: {}", host.url, scatter_net::root_cause(&e)),
        })
    })?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = read_response(resp, SMALL_ANSWER, MinRate::new(Duration::from_secs(10), 1024)).await;
        let why = body
            .ok()
            .and_then(|b| serde_json::from_slice::<scatter_proto::api::ErrorBody>(&b).ok())
            .map(|b| b.error.chars().take(300).collect::<String>())
            .unwrap_or_default();
        return Err(Failed::Refused(format!("{} answered {status}: {why}", host.url)));
    }
    read_response(resp, limit, MinRate::new(Duration::from_secs(10), 64 << 10))
        .await
        .map_err(|e| Failed::Unreachable(format!("{}: {e}", host.url)))
}

/// Rebuilds a coordinator's data directory from the newest catalog backup on the hosts.
pub async fn recover(opts: &RecoverOptions) -> Result<Recovered, RecoverError> {
    let dir = &opts.data_dir;
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(RecoverError::NotEmpty(dir.clone()));
    }
    let key = RecoveryKey::read(&opts.key_file)?;
    // Reads only: a host silent for 30 s (no answer, or no more of one) is skipped, where it
    // held the recovery up for the whole 300 s of each request.
    let http = scatter_net::http_client(key.ca, scatter_net::Peer::Host)
        .timeout(Duration::from_secs(300))
        .read_timeout(SILENT_HOST)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| RecoverError::NoneFound(e.to_string()))?;
    let mut notes = Vec::new();
    let mut refusals = Vec::new();

    // Who holds what: every shard under a header the grid signed.
    let mut hosts = Vec::new();
    let mut headers: BTreeMap<u64, (Vec<u8>, BackupHeader)> = BTreeMap::new();
    let mut found: Vec<(u64, u8, u8, usize)> = Vec::new();
    for url in &opts.hosts {
        let url = url.trim_end_matches('/').to_owned();
        let id = match http.get(format!("{url}/catalog/id")).send().await {
            Ok(r) if r.status().is_success() => {
                let answer = read_response(r, SMALL_ANSWER, MinRate::new(Duration::from_secs(10), 1024)).await;
                match answer.ok().and_then(|b| serde_json::from_slice::<CatalogHostId>(&b).ok()) {
                    Some(id) => id.host_id,
                    None => {
                        notes.push(format!("{url} gave an unreadable answer to /catalog/id; skipped"));
                        continue;
                    }
                }
            }
            Ok(r) => {
                notes
                    .push(format!("{url} answered {} (not a scatter host with catalog backups?); skipped", r.status()));
                continue;
            }
            Err(e) => {
                notes.push(format!("{url} could not be reached ({}); skipped", scatter_net::root_cause(&e)));
                continue;
            }
        };
        let host = Host { url, id };
        let listing = match get(&http, &key, &host, "/catalog", MAX_LISTING).await {
            Ok(b) => b,
            Err(Failed::Refused(e)) => {
                refusals.push(e);
                continue;
            }
            Err(Failed::Unreachable(e)) => {
                notes.push(e);
                continue;
            }
        };
        let Ok(listing) = serde_json::from_slice::<CatalogListing>(&listing) else {
            notes.push(format!("{} sent an unreadable listing; skipped", host.url));
            continue;
        };
        let at = hosts.len();
        // A shard listed twice is asked for once: a hostile host listed each of its shards
        // 128 times, and was asked for every copy before any other host.
        let mut listed = std::collections::HashSet::new();
        for entry in listing.entries.iter().take(cb::KEEP_BACKUPS * cb::MAX_BACKUP_SHARDS * 4) {
            let Some(raw) = cb::header_bytes(&entry.header) else { continue };
            match BackupHeader::open(&raw, &key.signing_public) {
                Ok(h) if h.grid == key.grid_id() && h.seq == entry.seq && (entry.index as usize) < h.total() => {
                    if listed.insert((h.seq, entry.index)) {
                        found.push((h.seq, h.k, entry.index, at));
                    }
                    headers.entry(h.seq).or_insert((raw, h));
                }
                Ok(_) => notes.push(format!(
                    "{} holds a catalog backup file (sequence {}) whose header names another grid, sequence or shard: refused",
                    host.url, entry.seq
                )),
                Err(BackupError::BadSignature) => notes.push(format!(
                    "{} holds a catalog backup (sequence {}) not signed by this grid (planted?): refused",
                    host.url, entry.seq
                )),
                Err(e) => notes.push(format!("{} holds a damaged catalog backup header (sequence {}): {e}", host.url, entry.seq)),
            }
        }
        hosts.push(host);
    }
    if let (true, Some(first)) = (hosts.is_empty(), refusals.first()) {
        return Err(RecoverError::Refused { refused: refusals.len(), first: first.clone() });
    }
    notes.extend(refusals);

    // The newest backup with enough shards that actually arrive and check, from hosts that
    // have not failed to serve one.
    let mut undecryptable = None;
    let mut failed = std::collections::HashSet::new();
    loop {
        let Some(seq) = recovery::pick_backup(&found.iter().map(|f| (f.0, f.1, f.2)).collect::<Vec<_>>()) else {
            if let Some(seq) = undecryptable {
                return Err(RecoverError::Decrypt(seq));
            }
            // Shards found, but too few of any one backup: say which, and what would help.
            let mut short: Vec<String> = headers
                .iter()
                .rev()
                .filter_map(|(seq, (_, h))| {
                    let mut indices: Vec<u8> = found.iter().filter(|f| f.0 == *seq).map(|f| f.2).collect();
                    indices.sort_unstable();
                    indices.dedup();
                    (!indices.is_empty()).then(|| format!("#{seq}: {} of the {} shards needed", indices.len(), h.k))
                })
                .collect();
            if !short.is_empty() {
                short.insert(0, "too few shards of any one backup on the hosts given, so give more hosts".into());
            }
            short.extend(notes.iter().cloned());
            let why = if short.is_empty() { "none at all".to_owned() } else { short.join("; ") };
            return Err(RecoverError::NoneFound(why));
        };
        let (signed, header) = headers.get(&seq).cloned().expect("every found shard's header is kept");
        let mut shards: Vec<Option<Vec<u8>>> = vec![None; header.total()];
        let mut have = 0;
        // A shard file is its signed header and the shard: nothing longer is read, so a host
        // trickling bytes holds a request up for no longer than that many bytes take at the
        // slowest rate allowed.
        let limit = (signed.len() as u64 + 16).saturating_add(header.shard_size).min(MAX_BACKUP_SHARD);
        for (_, _, index, at) in found.iter().filter(|f| f.0 == seq) {
            if have >= header.k as usize || shards[*index as usize].is_some() || failed.contains(at) {
                continue;
            }
            let host = &hosts[*at];
            let raw = match get(&http, &key, host, &format!("/catalog/{seq}/{index}"), limit).await {
                Ok(b) => b,
                Err(e) => {
                    notes.push(e.into_note());
                    failed.insert(*at);
                    continue;
                }
            };
            match cb::open_shard(&raw, &key.signing_public) {
                Ok(o) if o.signed_header == signed.as_slice() && o.index == *index => {
                    shards[*index as usize] = Some(o.shard.to_vec());
                    have += 1;
                }
                // A host that fails once is asked for nothing more: the others are.
                Ok(_) => {
                    notes.push(format!("{} served another shard than it listed: refused", host.url));
                    failed.insert(*at);
                }
                Err(e) => {
                    notes.push(format!("{} served a bad shard of backup {seq}: {e}", host.url));
                    failed.insert(*at);
                }
            }
        }
        let decoded = (have >= header.k as usize)
            .then(|| scatter_core::erasure::Layout::stored(header.size, header.k, header.m, header.shard_size))
            .flatten()
            .and_then(|l| scatter_core::erasure::decode(&l, &shards).ok())
            .filter(|ct| *blake3::hash(ct).as_bytes() == header.hash);
        let Some(ct) = decoded else {
            notes.push(format!("backup {seq} could not be rebuilt from the shards that arrived; trying an older one"));
            found.retain(|f| f.0 != seq);
            continue;
        };
        // A backup taken after the recovery key was replaced (and before every host learned
        // the new one) is encrypted to the new key: older ones may still open with this one.
        let Ok(bundle) = age::decrypt(&key.identity, &ct) else {
            notes.push(format!(
                "backup {seq} does not open with this recovery key (taken after the key was replaced?); trying an older one"
            ));
            undecryptable.get_or_insert(seq);
            found.retain(|f| f.0 != seq);
            continue;
        };
        let files = recovery::decode_bundle(&bundle)?;
        let newest_seen = found.iter().map(|f| f.0).max().unwrap_or(seq);
        write_dir(dir, &key, &files, seq, header.time, newest_seen).await?;
        return Ok(Recovered { seq, time: header.time, hosts_answered: hosts.len(), notes });
    }
}

/// Writes the recovered files into `dir`, then marks the catalog as recovered.
async fn write_dir(
    dir: &Path,
    key: &RecoveryKey,
    files: &[(&'static str, Vec<u8>)],
    seq: u64,
    time: u64,
    newest_seen: u64,
) -> Result<(), RecoverError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| RecoverError::Io { path, source }
    };
    crate::private_dir(dir).map_err(io(dir))?;
    for (name, bytes) in files {
        let path = dir.join(name);
        // The CA certificate is public, as a fresh data directory has it (for scrapers and
        // clients to read); everything else is a secret.
        let write = if *name == "ca.crt" { scatter_net::tls::write_public } else { scatter_net::write_private };
        write(&path, bytes).map_err(io(&path))?;
    }
    let pub_path = dir.join(recovery::PUB_FILE);
    scatter_net::write_private(&pub_path, key.public().to_text().as_bytes()).map_err(io(&pub_path))?;
    let catalog = dir.join("catalog.db");
    let pairs = vec![
        ("recovered_at", unix_now().to_string()),
        (crate::catalog_backup::META_SEQ, seq.to_string()),
        (crate::catalog_backup::META_SEQ_USED, newest_seen.max(seq).to_string()),
        (crate::catalog_backup::META_TIME, time.to_string()),
        // The restored catalog differs from any backup's: the next pass backs it up.
        (crate::catalog_backup::META_CONTENT, String::new()),
    ];
    tokio::task::spawn_blocking(move || {
        let store = crate::store::Store::open(&catalog)?;
        // Usage between the backup and now is lost with the catalog: statements say so.
        store.record_gap(time, unix_now(), "catalog recovered from backup")?;
        store.set_meta(&pairs)
    })
    .await
    .map_err(|e| crate::store::StoreError::Task(e.to_string()))??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A host that answers who it is, then takes every other request and stays silent.
    async fn host_falling_silent() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = vec![0u8; 8192];
                    let n = conn.read(&mut request).await.unwrap_or(0);
                    if request[..n].starts_with(b"GET /catalog/id ") {
                        let body = br#"{"host_id":7}"#;
                        let head =
                            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
                        let _ = conn.write_all(head.as_bytes()).await;
                        let _ = conn.write_all(body).await;
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(600)).await;
                });
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_host_that_falls_silent_is_skipped_not_waited_on() {
        let dir = tempfile::tempdir().expect("dir");
        let signing = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        let key_file = dir.path().join("recovery.key");
        std::fs::write(&key_file, RecoveryKey::generate(signing, None).to_text()).expect("key");
        let opts =
            RecoverOptions { data_dir: dir.path().join("new"), key_file, hosts: vec![host_falling_silent().await] };
        let started = std::time::Instant::now();
        let err = recover(&opts).await.expect_err("nothing to recover from").to_string();
        // Waited on for the whole request timeout (300 s) before.
        assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
        assert!(err.contains("sent nothing"), "{err}");
    }
}
