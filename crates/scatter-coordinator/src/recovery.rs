//! The grid recovery key, and what catalog backups are made of (the coordinator's
//! `catalog_backup` job takes them; [`crate::recover`] is the way back).
//!
//! **The recovery key** (`recovery.key`, made at a SQLite coordinator's first start) holds an
//! age X25519 identity, to which catalog backups are encrypted, and an Ed25519 "recovery
//! access" key, whose signatures let its holder list and fetch backup shards from hosts. It
//! also names the grid's grant-signing public key (backup headers must verify with it: a
//! host can plant files, not sign them) and the CA fingerprint (to check the hosts' TLS).
//! Backups hold the CA and signing keys, so this file is the grid's master key: the
//! operator is told to move it offline. Only the public halves stay (`recovery.pub`).
//!
//! **A backup** is a bundle of the catalog snapshot and the data directory's key files,
//! encrypted with age to the recovery identity, then erasure-coded into one shard per host
//! under a header the grid signs ([`scatter_proto::catalog_backup`]).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use ed25519_dalek::{SigningKey, VerifyingKey};
use scatter_net::Fingerprint;

/// The secret recovery key file in a data directory (until the operator moves it away).
pub const KEY_FILE: &str = "recovery.key";
/// The public halves, kept in the data directory.
pub const PUB_FILE: &str = "recovery.pub";
/// Files of a data directory that make a coordinator the same coordinator again, with the
/// catalog snapshot (`catalog.db`). Not the recovery key, not the lock, not `url` (written
/// at every start).
pub const BUNDLE_FILES: &[&str] =
    &["catalog.db", "coordinator.key", "join-token", "admin-token", "ca.crt", "ca.key", PUB_FILE];

const KEY_VERSION: &str = "scatter-recovery-key";
const PUB_VERSION: &str = "scatter-recovery-pub";
const BUNDLE_MAGIC: &[u8] = b"SCATTER-CATALOG-BUNDLE-1\n";

/// Why a recovery file or a backup could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A recovery key or public file is not in its format.
    #[error("{path} is not a Scatter recovery key file ({what}); give the recovery.key the coordinator wrote at its first start")]
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A decrypted bundle is damaged.
    #[error("the catalog backup's contents are damaged ({0})")]
    BadBundle(String),
}

/// The secret recovery key, as in `recovery.key`.
pub struct RecoveryKey {
    /// Opens catalog backups.
    pub identity: age::x25519::Identity,
    /// Proves to hosts that its holder may list and fetch backups.
    pub access: SigningKey,
    /// The grid's grant-signing key: backup headers must verify with it.
    pub signing_public: VerifyingKey,
    /// The grid CA's fingerprint; none on an `--insecure` grid.
    pub ca: Option<Fingerprint>,
}

impl std::fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveryKey").field("ca", &self.ca).finish_non_exhaustive()
    }
}

/// The public halves, as in `recovery.pub`.
#[derive(Clone)]
pub struct RecoveryPub {
    /// Catalog backups are encrypted to it.
    pub recipient: age::x25519::Recipient,
    /// Hosts check access proofs with it.
    pub access: VerifyingKey,
}

/// `key = value` lines, `#` comments; every key once.
fn fields(text: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut out = std::collections::BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (k, v) = line.split_once('=').ok_or_else(|| "a line is not `key = value`".to_owned())?;
        if out.insert(k.trim().to_owned(), v.trim().to_owned()).is_some() {
            return Err(format!("`{}` appears twice", k.trim()));
        }
    }
    Ok(out)
}

fn field<'a>(f: &'a std::collections::BTreeMap<String, String>, key: &str) -> Result<&'a str, String> {
    f.get(key).map(String::as_str).ok_or_else(|| format!("no `{key}` line"))
}

fn ed25519_seed(hex_text: &str, what: &str) -> Result<[u8; 32], String> {
    let mut b = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut b).map_err(|_| format!("`{what}` is not 64 hex digits"))?;
    Ok(b)
}

fn verifying(hex_text: &str, what: &str) -> Result<VerifyingKey, String> {
    VerifyingKey::from_bytes(&ed25519_seed(hex_text, what)?).map_err(|_| format!("`{what}` is not an Ed25519 key"))
}

impl RecoveryKey {
    /// A new random recovery key for the grid with this signing key and CA.
    pub fn generate(signing_public: VerifyingKey, ca: Option<Fingerprint>) -> Self {
        Self {
            identity: age::x25519::Identity::generate(),
            access: SigningKey::generate(&mut rand::rngs::OsRng),
            signing_public,
            ca,
        }
    }

    /// The public halves.
    pub fn public(&self) -> RecoveryPub {
        RecoveryPub { recipient: self.identity.to_public(), access: self.access.verifying_key() }
    }

    /// The grid id backups name: the CA fingerprint, zeros without TLS.
    pub fn grid_id(&self) -> [u8; 32] {
        self.ca.map(|f| f.0).unwrap_or([0; 32])
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        format!(
            "# Scatter grid recovery key. This is the grid's MASTER KEY: it opens the coordinator's catalog\n\
             # backups, which hold the grid's CA and signing keys. Move it offline (a safe, a password\n\
             # manager, paper) and delete it from the coordinator. Without it a lost coordinator cannot be\n\
             # recovered: `scatter coordinator recover --data-dir NEW --recovery-key THIS_FILE --host URL...`\n\
             {KEY_VERSION} = 1\n\
             age-identity = {}\n\
             access-key = {}\n\
             grid-signing-key = {}\n\
             ca-fingerprint = {}\n",
            self.identity.to_string().expose_secret(),
            hex::encode(self.access.to_bytes()),
            hex::encode(self.signing_public.as_bytes()),
            self.ca.map(|f| f.to_string()).unwrap_or_else(|| "none".into()),
        )
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let f = fields(text)?;
        if field(&f, KEY_VERSION)? != "1" {
            return Err(format!("unknown `{KEY_VERSION}` version (made by a newer scatter?)"));
        }
        let identity = age::x25519::Identity::from_str(field(&f, "age-identity")?)
            .map_err(|_| "`age-identity` is not an age X25519 identity".to_owned())?;
        let access = SigningKey::from_bytes(&ed25519_seed(field(&f, "access-key")?, "access-key")?);
        let signing_public = verifying(field(&f, "grid-signing-key")?, "grid-signing-key")?;
        let ca = match field(&f, "ca-fingerprint")? {
            "none" => None,
            fp => Some(fp.parse().map_err(|_| "`ca-fingerprint` is not a CA fingerprint".to_owned())?),
        };
        Ok(Self { identity, access, signing_public, ca })
    }

    /// Reads and parses a recovery key file.
    pub fn read(path: &Path) -> Result<Self, RecoveryError> {
        // A key file is under a kilobyte.
        let bytes = scatter_net::read_small(path, 64 << 10).map_err(|source| match source.kind() {
            std::io::ErrorKind::InvalidData => {
                RecoveryError::BadKeyFile { path: path.to_owned(), what: source.to_string() }
            }
            _ => RecoveryError::Io { path: path.to_owned(), source },
        })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| RecoveryError::BadKeyFile { path: path.to_owned(), what: "it is not text".into() })?;
        Self::parse(&text).map_err(|what| RecoveryError::BadKeyFile { path: path.to_owned(), what })
    }
}

impl RecoveryPub {
    /// The file's text.
    pub fn to_text(&self) -> String {
        format!(
            "# The public halves of this grid's recovery key (the secret one belongs offline).\n\
             {PUB_VERSION} = 1\nage-recipient = {}\naccess-public-key = {}\n",
            self.recipient,
            hex::encode(self.access.as_bytes())
        )
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let f = fields(text)?;
        if field(&f, PUB_VERSION)? != "1" {
            return Err(format!("unknown `{PUB_VERSION}` version"));
        }
        let recipient = age::x25519::Recipient::from_str(field(&f, "age-recipient")?)
            .map_err(|_| "`age-recipient` is not an age X25519 recipient".to_owned())?;
        let access = verifying(field(&f, "access-public-key")?, "access-public-key")?;
        Ok(Self { recipient, access })
    }
}

/// Packs named files into one blob (names from [`BUNDLE_FILES`]):
/// `magic | count u16 | (name length u8 | name | length u64 | bytes)*`.
pub fn encode_bundle(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let total: usize = files.iter().map(|(n, b)| 1 + n.len() + 8 + b.len()).sum();
    let mut out = Vec::with_capacity(BUNDLE_MAGIC.len() + 2 + total);
    out.extend_from_slice(BUNDLE_MAGIC);
    out.extend_from_slice(&(files.len() as u16).to_be_bytes());
    for (name, bytes) in files {
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// Unpacks a bundle; only the names of [`BUNDLE_FILES`], each once, and `catalog.db`.
pub fn decode_bundle(raw: &[u8]) -> Result<Vec<(&'static str, Vec<u8>)>, RecoveryError> {
    let bad = |what: &str| RecoveryError::BadBundle(what.to_owned());
    let mut rest = raw.strip_prefix(BUNDLE_MAGIC).ok_or_else(|| bad("unknown format"))?;
    let mut take = |n: usize| -> Result<&[u8], RecoveryError> {
        if rest.len() < n {
            return Err(bad("truncated"));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let count = u16::from_be_bytes([take(1)?[0], take(1)?[0]]) as usize;
    let mut out: Vec<(&'static str, Vec<u8>)> = Vec::new();
    for _ in 0..count {
        let len = take(1)?[0] as usize;
        let name = take(len)?;
        let known = BUNDLE_FILES.iter().find(|n| n.as_bytes() == name).ok_or_else(|| bad("an unknown file name"))?;
        if out.iter().any(|(n, _)| n == known) {
            return Err(bad("a file twice"));
        }
        let mut l = [0u8; 8];
        l.copy_from_slice(take(8)?);
        let size = usize::try_from(u64::from_be_bytes(l)).map_err(|_| bad("a file too large"))?;
        out.push((known, take(size)?.to_vec()));
    }
    if !out.iter().any(|(n, _)| *n == "catalog.db") {
        return Err(bad("no catalog"));
    }
    Ok(out)
}

/// Makes the recovery key on a data directory that has none (first start, or a grid from
/// before backups): writes `recovery.key` (mode 0600) and `recovery.pub`. Returns the
/// public halves, made now or read.
pub fn ensure_key(
    dir: &Path,
    signing_public: VerifyingKey,
    ca: Option<Fingerprint>,
) -> Result<RecoveryPub, RecoveryError> {
    let pub_path = dir.join(PUB_FILE);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| RecoveryError::Io { path, source }
    };
    match std::fs::read_to_string(&pub_path) {
        Ok(text) => RecoveryPub::parse(&text).map_err(|what| RecoveryError::BadKeyFile { path: pub_path, what }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key_path = dir.join(KEY_FILE);
            // A secret without its public half (removed by mistake) is kept, never replaced.
            let key = match key_path.exists() {
                true => RecoveryKey::read(&key_path)?,
                false => {
                    let key = RecoveryKey::generate(signing_public, ca);
                    // The secret first: a public half without its secret would lock backups away.
                    scatter_net::write_private(&key_path, key.to_text().as_bytes()).map_err(io(&key_path))?;
                    key
                }
            };
            let public = key.public();
            scatter_net::write_private(&pub_path, public.to_text().as_bytes()).map_err(io(&pub_path))?;
            Ok(public)
        }
        Err(e) => Err(io(&pub_path)(e)),
    }
}

/// The code of a catalog backup on `hosts` distinct hosts when the grid's data uses k+m:
/// replicated (1+n-1) on fewer than 3 hosts, else k+m with m kept as far as the hosts
/// allow and k cut to fit.
pub fn backup_code(hosts: usize, k: u8, m: u8) -> (u8, u8) {
    let hosts = hosts.min(scatter_proto::catalog_backup::MAX_BACKUP_SHARDS);
    if hosts < 3 {
        // With one host, shard 0 of 1+1 is all there is to store.
        return (1, (hosts.max(2) - 1) as u8);
    }
    let m = (m as usize).clamp(1, hosts - 1);
    let k = (k as usize).min(hosts - m).max(1);
    (k as u8, m as u8)
}

/// Which backup to restore: the newest sequence with at least k distinct valid shards
/// found. `found` holds (seq, k, index) of every shard whose header verified.
pub fn pick_backup(found: &[(u64, u8, u8)]) -> Option<u64> {
    let mut seqs: Vec<u64> = found.iter().map(|f| f.0).collect();
    seqs.sort_unstable_by(|a, b| b.cmp(a));
    seqs.dedup();
    seqs.into_iter().find(|&seq| {
        let mut idx: Vec<u8> = found.iter().filter(|f| f.0 == seq).map(|f| f.2).collect();
        idx.sort_unstable();
        idx.dedup();
        let k = found.iter().find(|f| f.0 == seq).map(|f| f.1).unwrap_or(u8::MAX);
        idx.len() >= k as usize
    })
}

/// Columns that change without anything worth a backup (heartbeats, leases, keepalives):
/// left out of [`content_hash`].
const VOLATILE_TABLES: &[&str] = &["leases", "replays"];
const VOLATILE_COLUMNS: &[(&str, &str)] = &[
    ("hosts", "reported_used"),
    ("hosts", "free"),
    ("hosts", "last_seen"),
    ("hosts", "online_secs"),
    ("hosts", "served_bytes"),
    ("hosts", "measured_bandwidth"),
    ("hosts", "held_shards"),
    ("hosts", "held_bytes"),
    ("hosts", "inventory_ack"),
    ("hosts", "audits_passed"),
    ("hosts", "address"),
    ("sessions", "expires"),
];

/// A hash of what a catalog snapshot holds, less what changes all the time (heartbeat
/// figures of hosts, leases, keepalives) and the record of backups itself: equal hashes mean nothing worth
/// a new backup happened.
pub fn content_hash(db: &Path) -> Result<[u8; 32], rusqlite::Error> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut h = blake3::Hasher::new();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for table in tables.iter().filter(|t| !VOLATILE_TABLES.contains(&t.as_str())) {
        h.update(table.as_bytes());
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{}\"", table.replace('"', "\"\"")))?;
        let skip: Vec<bool> =
            stmt.column_names().iter().map(|c| VOLATILE_COLUMNS.contains(&(table.as_str(), *c))).collect();
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            if table == "meta" {
                if let Ok(key) = row.get_ref(0)?.as_str() {
                    if key.starts_with("catalog_backup.") {
                        continue;
                    }
                }
            }
            h.update(b"\x1erow");
            for (i, skipped) in skip.iter().enumerate() {
                if *skipped {
                    continue;
                }
                match row.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => h.update(b"\x00"),
                    rusqlite::types::ValueRef::Integer(v) => h.update(b"\x01").update(&v.to_be_bytes()),
                    rusqlite::types::ValueRef::Real(v) => h.update(b"\x02").update(&v.to_be_bytes()),
                    rusqlite::types::ValueRef::Text(v) | rusqlite::types::ValueRef::Blob(v) => {
                        h.update(b"\x03").update(&(v.len() as u64).to_be_bytes()).update(v)
                    }
                };
            }
        }
    }
    Ok(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_endless_or_huge_file_is_not_read_as_a_key() {
        // `/dev/zero` given by mistake filled memory (7 GB in 8 s) before this.
        let err = RecoveryKey::read(Path::new("/dev/zero")).expect_err("not a key");
        assert!(matches!(&err, RecoveryError::BadKeyFile { what, .. } if what.contains("longer than")), "{err}");
    }

    use super::*;

    #[test]
    fn a_recovery_key_file_round_trips_and_bad_ones_are_named() {
        let signing = SigningKey::from_bytes(&[1; 32]).verifying_key();
        for ca in [None, Some(Fingerprint([9; 32]))] {
            let key = RecoveryKey::generate(signing, ca);
            let text = key.to_text();
            assert!(text.starts_with("# Scatter grid recovery key"));
            let back = RecoveryKey::parse(&text).expect("parses");
            assert_eq!(back.access.to_bytes(), key.access.to_bytes());
            assert_eq!(back.signing_public, signing);
            assert_eq!(back.ca, ca);
            assert_eq!(back.identity.to_public().to_string(), key.identity.to_public().to_string());
            let public = RecoveryPub::parse(&key.public().to_text()).expect("public parses");
            assert_eq!(public.access, key.access.verifying_key());
        }
        let text = RecoveryKey::generate(signing, None).to_text();
        assert!(RecoveryKey::parse("hello").is_err());
        assert!(RecoveryKey::parse(&text.replace("access-key = ", "access-key = zz")).is_err());
        assert!(RecoveryKey::parse(&text.replace("scatter-recovery-key = 1", "scatter-recovery-key = 2")).is_err());
        assert!(RecoveryKey::parse(&format!("{text}access-key = 00\n")).is_err(), "a key twice");
        let no_ca: String = text.lines().filter(|l| !l.starts_with("ca-")).map(|l| format!("{l}\n")).collect();
        assert_eq!(RecoveryKey::parse(&no_ca).err(), Some("no `ca-fingerprint` line".to_owned()));
    }

    #[test]
    fn the_key_is_made_once_and_a_lost_public_half_is_rebuilt_from_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let signing = SigningKey::from_bytes(&[1; 32]).verifying_key();
        let made = ensure_key(dir.path(), signing, None).expect("made");
        let secret = std::fs::read_to_string(dir.path().join(KEY_FILE)).expect("secret written");
        assert_eq!(ensure_key(dir.path(), signing, None).expect("read").access, made.access);
        std::fs::remove_file(dir.path().join(PUB_FILE)).expect("rm");
        assert_eq!(ensure_key(dir.path(), signing, None).expect("rebuilt").access, made.access);
        assert_eq!(std::fs::read_to_string(dir.path().join(KEY_FILE)).expect("secret"), secret, "never replaced");
    }

    #[test]
    fn bundles_round_trip_and_refuse_unknown_names() {
        let files = vec![("catalog.db", vec![1, 2, 3]), ("ca.key", b"pem".to_vec())];
        let raw = encode_bundle(&files);
        assert_eq!(decode_bundle(&raw).expect("decodes"), files);
        assert!(decode_bundle(&raw[..raw.len() - 1]).is_err());
        assert!(decode_bundle(&encode_bundle(&[("../x", vec![])])).is_err());
        assert!(decode_bundle(&encode_bundle(&[("ca.key", vec![])])).is_err(), "no catalog");
        assert!(decode_bundle(&encode_bundle(&[("catalog.db", vec![]), ("catalog.db", vec![])])).is_err());
    }

    #[test]
    fn backup_codes_fit_the_hosts_online() {
        assert_eq!(backup_code(1, 4, 2), (1, 1));
        assert_eq!(backup_code(2, 4, 2), (1, 1));
        assert_eq!(backup_code(3, 4, 2), (1, 2));
        assert_eq!(backup_code(4, 4, 2), (2, 2));
        assert_eq!(backup_code(6, 4, 2), (4, 2));
        assert_eq!(backup_code(20, 4, 2), (4, 2));
    }

    #[test]
    fn the_newest_backup_with_enough_shards_is_picked() {
        // Sequence 9 has only one of the two shards it needs; 8 has both.
        let found = [(9, 2, 0), (9, 2, 0), (8, 2, 0), (8, 2, 3), (7, 1, 1)];
        assert_eq!(pick_backup(&found), Some(8));
        assert_eq!(pick_backup(&[(9, 2, 0), (9, 2, 1)]), Some(9));
        assert_eq!(pick_backup(&[(9, 3, 0)]), None);
        assert_eq!(pick_backup(&[]), None);
    }

    #[test]
    fn the_content_hash_ignores_heartbeats_and_backup_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.db");
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE hosts (id INTEGER PRIMARY KEY, last_seen INTEGER, state TEXT);
             CREATE TABLE leases (job TEXT);
             INSERT INTO hosts VALUES (1, 100, 'active');",
        )
        .expect("schema");
        let first = content_hash(&path).expect("hash");
        conn.execute_batch(
            "UPDATE hosts SET last_seen = 200; INSERT INTO leases VALUES ('x');
             INSERT INTO meta VALUES ('catalog_backup.seq', '3');",
        )
        .expect("volatile");
        assert_eq!(content_hash(&path).expect("hash"), first);
        conn.execute_batch("UPDATE hosts SET state = 'disabled'").expect("change");
        assert_ne!(content_hash(&path).expect("hash"), first);
    }
}
