//! Catalog backups: shards of the coordinator's encrypted catalog, kept apart from data
//! shards under `DIR/catalog/` as `SEQ-INDEX.cbk` files (see
//! [`scatter_proto::catalog_backup`] for their format).
//!
//! - `PUT /catalog/{seq}/{index}` stores one, if its header is signed by the grid's
//!   grant-signing key (the key grants are checked with) and the bytes match it. The newest
//!   [`KEEP_BACKUPS`] sequence numbers are kept, older files deleted.
//! - `GET /catalog/id` names the host (what the proofs below are bound to).
//! - `GET /catalog` and `GET /catalog/{seq}/{index}` list and serve them, only with a fresh
//!   proof signed by the grid's recovery access key, which the host learned from the
//!   coordinator: they are how a lost coordinator is rebuilt, without the catalog and
//!   without the coordinator's grants.
//!
//! **The access key is learned once.** A host keeps the first recovery access key a
//! coordinator sends (`DIR/recovery-access.pub`) and refuses to replace it silently: a
//! hostile or compromised coordinator could otherwise swap in a key of its own and read (or
//! let another read) every host's backup shards. They are encrypted to the recovery key, so
//! that gains little, but the operator who holds the recovery key offline must be the only
//! one able to collect them. A changed key is logged at every heartbeat; the operator
//! accepts it by removing the file.
//!
//! Writes are atomic and durable (temp file, fsync, rename, fsync the folder) before the
//! upload is acknowledged; a leftover temp file is removed at start.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ed25519_dalek::VerifyingKey;
use futures::StreamExt;
use scatter_proto::api::{ErrorBody, ErrorCode, GRANT_HEADER};
use scatter_proto::catalog_backup::{
    self as cb, CatalogEntry, CatalogHostId, CatalogListing, KEEP_BACKUPS, MAX_BACKUP_SHARD, MAX_BACKUP_SHARDS,
    RECOVERY_HEADER,
};
use scatter_proto::grant::catalog_shard;
use scatter_proto::{GrantError, Op, SignedGrant};

use crate::{unix_now, Shared};

/// The backup shard files of one host.
#[derive(Debug)]
pub struct CatalogStore {
    dir: PathBuf,
    used: AtomicU64,
    /// One write (and its pruning) at a time.
    writing: std::sync::Mutex<()>,
}

fn file_name(seq: u64, index: u8) -> String {
    format!("{seq:020}-{index:03}.cbk")
}

fn parse_name(name: &str) -> Option<(u64, u8)> {
    let (seq, index) = name.strip_suffix(".cbk")?.split_once('-')?;
    Some((seq.parse().ok()?, index.parse().ok()?))
}

impl CatalogStore {
    /// Opens `root/catalog`, creating it, dropping leftover temp files and counting bytes.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        let dir = root.join("catalog");
        std::fs::create_dir_all(&dir)?;
        let mut used = 0;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if parse_name(&name).is_some() {
                used += entry.metadata()?.len();
            } else if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Self { dir, used: AtomicU64::new(used), writing: Default::default() })
    }

    /// Bytes of backup shards held.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Every backup shard held: sequence number, index and size, newest first.
    pub fn list(&self) -> std::io::Result<Vec<(u64, u8, u64)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if let Some((seq, index)) = parse_name(&entry.file_name().to_string_lossy()) {
                out.push((seq, index, entry.metadata()?.len()));
            }
        }
        out.sort_by(|a, b| b.cmp(a));
        Ok(out)
    }

    /// One backup shard's file, if held.
    pub fn read(&self, seq: u64, index: u8) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.dir.join(file_name(seq, index))) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The signed header at the start of a backup shard file, read without the rest of it.
    pub fn header(&self, seq: u64, index: u8) -> std::io::Result<Option<Vec<u8>>> {
        use std::io::Read;
        let mut f = match std::fs::File::open(self.dir.join(file_name(seq, index))) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut start = [0u8; 8];
        if f.read_exact(&mut start).is_err() {
            return Ok(None);
        }
        let len = u32::from_be_bytes([start[4], start[5], start[6], start[7]]) as usize;
        if len > cb::MAX_HEADER {
            return Ok(None);
        }
        let mut header = vec![0u8; len];
        Ok(f.read_exact(&mut header).ok().map(|()| header))
    }

    /// Stores a (checked) backup shard durably, then deletes backups older than the newest
    /// [`KEEP_BACKUPS`].
    pub fn put(&self, seq: u64, index: u8, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let name = file_name(seq, index);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let old = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        std::fs::rename(&tmp, &path)?;
        self.used.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.used.fetch_sub(old.min(self.used()), Ordering::Relaxed);
        let held = self.list()?;
        let mut seqs: Vec<u64> = held.iter().map(|(s, _, _)| *s).collect();
        seqs.dedup();
        if let Some(&oldest_kept) = seqs.get(KEEP_BACKUPS - 1) {
            for (s, i, len) in held.iter().filter(|(s, _, _)| *s < oldest_kept) {
                if std::fs::remove_file(self.dir.join(file_name(*s, *i))).is_ok() {
                    self.used.fetch_sub((*len).min(self.used()), Ordering::Relaxed);
                }
            }
        }
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

/// The recovery access key a host learned, in `DIR/recovery-access.pub` (hex).
pub(crate) fn read_access_key(dir: &Path) -> Option<VerifyingKey> {
    let text = std::fs::read_to_string(dir.join("recovery-access.pub")).ok()?;
    parse_key(text.trim())
}

fn parse_key(hex_key: &str) -> Option<VerifyingKey> {
    let mut k = [0u8; 32];
    hex::decode_to_slice(hex_key, &mut k).ok()?;
    VerifyingKey::from_bytes(&k).ok()
}

/// What to do with a recovery access key a coordinator sent.
#[derive(Debug, PartialEq, Eq)]
enum Learn {
    /// The one already known: nothing.
    Same,
    /// The first: keep it.
    First(VerifyingKey),
    /// Another than the one known: refuse it.
    Other,
    /// Not a key.
    Invalid,
}

fn learn(known: Option<VerifyingKey>, sent: &str) -> Learn {
    match (known, parse_key(sent)) {
        (_, None) => Learn::Invalid,
        (None, Some(k)) => Learn::First(k),
        (Some(k), Some(s)) if k == s => Learn::Same,
        (Some(_), Some(_)) => Learn::Other,
    }
}

/// Takes the recovery access key a coordinator sent, if the host has none yet; a different
/// one is refused (see the module's documentation). False when the key could not be saved,
/// so it is taken again from the next heartbeat; true once the answer to it is settled.
pub(crate) fn learn_access_key(sh: &Shared, dir: &Path, sent: &str) -> bool {
    let mut known = sh.recovery_access.lock().unwrap_or_else(|p| p.into_inner());
    match learn(*known, sent) {
        Learn::Same => true,
        Learn::Invalid => {
            tracing::warn!("the coordinator sent a recovery access key that is not an Ed25519 public key; ignored");
            true
        }
        Learn::Other => {
            tracing::warn!(
                file = %dir.join("recovery-access.pub").display(),
                "the coordinator sends another recovery access key than the one this host learned first; the first is \
                 kept (a coordinator must not be able to take over access to catalog backups). If the grid's recovery \
                 key was replaced on purpose, remove that file and restart the host"
            );
            true
        }
        Learn::First(key) => {
            let path = dir.join("recovery-access.pub");
            match scatter_net::write_private(&path, format!("{}\n", hex::encode(key.as_bytes())).as_bytes()) {
                Ok(()) => {
                    tracing::info!("learned the grid's recovery access key: catalog backups are served to its holder");
                    *known = Some(key);
                    true
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not save the recovery access key");
                    false
                }
            }
        }
    }
}

/// A catalog request refused.
pub(crate) struct Refused(StatusCode, ErrorCode, String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { code: self.1, error: self.2 })).into_response()
    }
}

fn bad(msg: impl Into<String>) -> Refused {
    Refused(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, msg.into())
}

fn io(e: impl std::fmt::Display) -> Refused {
    Refused(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Io, format!("disk I/O failed: {e}"))
}

/// Checks the recovery access proof of a listing or fetch of `path`.
fn check_access(sh: &Shared, headers: &HeaderMap, path: &str) -> Result<(), Refused> {
    let Some(key) = *sh.recovery_access.lock().unwrap_or_else(|p| p.into_inner()) else {
        return Err(Refused(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "this host has not learned the grid's recovery key yet, so it serves no catalog backups".into(),
        ));
    };
    let Some(proof) = headers.get(RECOVERY_HEADER).and_then(|v| v.to_str().ok()) else {
        return Err(Refused(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "catalog backups are served only with a proof of the grid's recovery key".into(),
        ));
    };
    cb::check_proof(proof, &key, sh.id, path, unix_now()).map_err(|e| {
        tracing::warn!(path, error = %e, "refused a catalog backup request without a valid recovery proof");
        Refused(StatusCode::FORBIDDEN, ErrorCode::Forbidden, format!("refused: {e}"))
    })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> Result<T, Refused> {
    tokio::task::spawn_blocking(f).await.map_err(io)?.map_err(io)
}

/// `GET /catalog/id`.
pub(crate) async fn id(State(sh): State<Arc<Shared>>) -> Json<CatalogHostId> {
    Json(CatalogHostId { host_id: sh.id })
}

/// `GET /catalog`: the backup shards held, each with its signed header.
pub(crate) async fn list(State(sh): State<Arc<Shared>>, headers: HeaderMap) -> Result<Json<CatalogListing>, Refused> {
    check_access(&sh, &headers, "/catalog")?;
    let store = sh.catalog.clone();
    let entries = blocking(move || {
        let mut out = Vec::new();
        for (seq, index, size) in store.list()?.into_iter().take(KEEP_BACKUPS * MAX_BACKUP_SHARDS) {
            // The header is what counts; a file too damaged to carry one is left out.
            let Some(header) = store.header(seq, index)? else { continue };
            out.push(CatalogEntry { seq, index, size, header: cb::header_text(&header) });
        }
        Ok(out)
    })
    .await?;
    Ok(Json(CatalogListing { entries }))
}

/// `GET /catalog/{seq}/{index}`: one backup shard file.
pub(crate) async fn fetch(
    State(sh): State<Arc<Shared>>,
    UrlPath((seq, index)): UrlPath<(u64, u8)>,
    headers: HeaderMap,
) -> Result<Vec<u8>, Refused> {
    check_access(&sh, &headers, &format!("/catalog/{seq}/{index}"))?;
    let store = sh.catalog.clone();
    blocking(move || store.read(seq, index)).await?.ok_or_else(|| {
        Refused(StatusCode::NOT_FOUND, ErrorCode::NotFound, format!("this host holds no shard {index} of backup {seq}"))
    })
}

/// Free disk space a catalog backup shard leaves at least, for the host's own files.
const CATALOG_HEADROOM: u64 = 16 << 20;

/// What catalog backups may take on a host offering `capacity` for data, on top of it: a
/// quarter of it, and 64 MiB at least (the newest [`KEEP_BACKUPS`] of a small grid's catalog).
fn catalog_allowance(capacity: u64) -> u64 {
    (capacity / 4).max(64 << 20)
}

/// `PUT /catalog/{seq}/{index}`: stores a backup shard whose header the grid signed, sent
/// under a coordinator's [`Op::CatalogPut`] grant for this host and shard, checked before the
/// body is read (which must then keep up the data uploads' minimum rate). Without it, anyone
/// could hold the host's one slot for these uploads for hours and make it take up to 512 MiB
/// into memory.
pub(crate) async fn put(
    State(sh): State<Arc<Shared>>,
    UrlPath((seq, index)): UrlPath<(u64, u8)>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, Refused> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| bad("a catalog backup upload needs a Content-Length"))?;
    if declared > MAX_BACKUP_SHARD {
        return Err(bad(format!("a catalog backup shard is at most {MAX_BACKUP_SHARD} bytes")));
    }
    let refused = |e: GrantError| {
        tracing::warn!(seq, index, error = %e, "refused a catalog backup upload without a valid grant");
        Refused(StatusCode::FORBIDDEN, ErrorCode::Forbidden, format!("refused: {e}"))
    };
    let grant =
        headers.get(GRANT_HEADER).and_then(|v| v.to_str().ok()).ok_or(GrantError::Malformed).map_err(refused)?;
    let grant = SignedGrant(grant.to_owned())
        .check(&sh.coordinator_key, sh.id, &catalog_shard(seq, index), Op::CatalogPut, unix_now())
        .map_err(refused)?;
    if declared > grant.max_size {
        return Err(bad(format!("the shard is {declared} bytes but the grant allows at most {}", grant.max_size)));
    }
    // Not held to the capacity offered, which data shards fill: a grid whose hosts were all
    // full could then take no catalog backup, and released data, deleted only once a backup
    // records its release, never left them (a new user's full grid stayed full after a
    // prune). Backups have an allowance of their own on top (the catalog grows with every
    // account's data), and the disk's free space bounds it too.
    let allowance = catalog_allowance(sh.store.capacity());
    let held = sh.catalog.used();
    if held.saturating_add(declared) > allowance {
        return Err(Refused(
            StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::Full,
            format!(
                "this host's catalog backups would take more than the {allowance} bytes they may ({held} held); the \
                 coordinator stores this shard on another host, or the operator raises --capacity"
            ),
        ));
    }
    let store = sh.store.clone();
    let free = tokio::task::spawn_blocking(move || store.disk_free()).await.unwrap_or(0);
    if free < declared.saturating_add(CATALOG_HEADROOM) {
        return Err(Refused(
            StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::Full,
            format!("this host's disk is full ({free} bytes free); free space on it or raise the disk"),
        ));
    }
    // One at a time: each is held whole in memory to be checked before it is written.
    let _slot = tokio::time::timeout(crate::api::SLOT_WAIT, sh.catalog_uploads.acquire())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| Refused(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Busy, "busy; retry".into()))?;
    let rate = scatter_net::limits::MinRate::new(crate::api::UPLOAD_GRACE, crate::api::MIN_UPLOAD_RATE);
    let cut_short = || bad("the upload was cut short or is larger than its Content-Length");
    let mut bytes = Vec::with_capacity(declared as usize);
    let mut stream = body.into_data_stream();
    loop {
        let frame = tokio::time::timeout_at(rate.deadline(bytes.len() as u64), stream.next())
            .await
            .map_err(|_| Refused(StatusCode::REQUEST_TIMEOUT, ErrorCode::TooSlow, "the upload was too slow".into()))?;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|_| cut_short())?;
        if bytes.len() + frame.len() > declared as usize {
            return Err(cut_short());
        }
        bytes.extend_from_slice(&frame);
    }
    if bytes.len() as u64 != declared {
        return Err(cut_short());
    }
    let (key, grid) = (sh.coordinator_key, sh.grid);
    let bytes = tokio::task::spawn_blocking(move || {
        let opened = cb::open_shard(&bytes, &key).map_err(|e| bad(e.to_string()))?;
        if opened.header.seq != seq || opened.index != index {
            return Err(bad("the URL names another backup shard than the body"));
        }
        if opened.header.grid != grid {
            return Err(bad("the backup belongs to another grid"));
        }
        Ok(bytes)
    })
    .await
    .map_err(io)?
    .inspect_err(|e| tracing::warn!(seq, index, error = %e.2, "refused a catalog backup shard"))?;
    let store = sh.catalog.clone();
    blocking(move || store.put(seq, index, &bytes)).await?;
    tracing::debug!(seq, index, "stored a catalog backup shard");
    Ok(StatusCode::CREATED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_backups_have_an_allowance_beside_the_capacity_for_data() {
        assert_eq!(catalog_allowance(3 << 20), 64 << 20, "a small host still takes a small grid's backups");
        assert_eq!(catalog_allowance(1 << 40), 1 << 38);
    }

    #[test]
    fn the_first_access_key_is_kept_and_another_refused() {
        let a = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
        let b = ed25519_dalek::SigningKey::from_bytes(&[2; 32]).verifying_key();
        let hex_a = hex::encode(a.as_bytes());
        assert_eq!(learn(None, &hex_a), Learn::First(a));
        assert_eq!(learn(Some(a), &hex_a), Learn::Same);
        assert_eq!(learn(Some(b), &hex_a), Learn::Other);
        assert_eq!(learn(None, "zz"), Learn::Invalid);
    }

    #[test]
    fn keeps_the_newest_backups_and_counts_their_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("catalog")).expect("dir");
        std::fs::write(dir.path().join("catalog/.x.tmp"), b"half").expect("tmp");
        let s = CatalogStore::open(dir.path()).expect("open");
        assert!(!dir.path().join("catalog/.x.tmp").exists(), "a leftover temp file is removed");
        for seq in 1..=5u64 {
            s.put(seq, 0, &[0; 10]).expect("put");
            s.put(seq, 1, &[0; 10]).expect("put");
        }
        let held: Vec<u64> = s.list().expect("list").iter().map(|(seq, _, _)| *seq).collect();
        assert_eq!(held, vec![5, 5, 4, 4, 3, 3]);
        assert_eq!(s.used(), 60);
        s.put(5, 1, &[0; 4]).expect("replace");
        assert_eq!(s.used(), 54);
        assert_eq!(CatalogStore::open(dir.path()).expect("reopen").used(), 54);
        assert_eq!(s.read(5, 1).expect("read"), Some(vec![0; 4]));
        assert_eq!(s.read(1, 0).expect("read"), None);
        // A listing reads only the header at the start of a file.
        s.put(9, 0, b"SCS1\x00\x00\x00\x02hhrest").expect("put");
        assert_eq!(s.header(9, 0).expect("header"), Some(b"hh".to_vec()));
        s.put(9, 1, b"SCS1\xff\xff\xff\xff").expect("put");
        assert_eq!(s.header(9, 1).expect("header"), None, "a header longer than any is not read");
    }
}
