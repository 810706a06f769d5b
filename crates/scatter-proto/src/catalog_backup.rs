//! Catalog backups on hosts: the coordinator's SQLite catalog and keys, encrypted to the grid
//! recovery key, erasure-coded, one shard per host, kept apart from data shards.
//!
//! Three formats, each opening with a version magic (big-endian integers throughout):
//!
//! ```text
//! header  "SCB1" | grid [32] | seq u64 | time u64 | ciphertext BLAKE3 [32] | ciphertext size u64
//!         | k u8 | m u8 | shard size u64 | shard BLAKE3 [32] × (k+m) | Ed25519 signature [64]
//! shard   "SCS1" | header length u32 | header | index u8 | shard bytes
//! proof   "SRA1" | host u64 | time u64 | path length u16 | path | Ed25519 signature [64]
//! ```
//!
//! The header is signed by the grid's grant-signing key (the key hosts already check grants
//! with): a host stores a backup shard only under a header that verifies, and a recovering
//! operator refuses any header that does not, so a host can withhold or plant files but
//! never make its own "newest" backup count. The header names every shard's hash, so each
//! shard is checked alone before decoding. The proof (sent base64url in [`RECOVERY_HEADER`])
//! is signed by the recovery access key: hosts list and serve backups only to its holder.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use scatter_core::HostId;
use serde::{Deserialize, Serialize};

const HEADER_MAGIC: &[u8; 4] = b"SCB1";
const SHARD_MAGIC: &[u8; 4] = b"SCS1";
const PROOF_MAGIC: &[u8; 4] = b"SRA1";
/// Header bytes before the shard hashes.
const HEADER_FIXED: usize = 4 + 32 + 8 + 8 + 32 + 8 + 1 + 1 + 8;

/// The request header carrying an access proof.
pub const RECOVERY_HEADER: &str = "scatter-recovery";
/// Most shards (k+m) one backup is cut into.
pub const MAX_BACKUP_SHARDS: usize = 64;
/// Largest backup shard a host stores (the file, header included). The coordinator refuses
/// to back up a catalog that would need more; such a grid belongs on PostgreSQL.
pub const MAX_BACKUP_SHARD: u64 = 512 << 20;
/// Backups (distinct sequence numbers) a host keeps; older ones are deleted.
pub const KEEP_BACKUPS: usize = 3;
/// How far an access proof's time may be from the host's clock, in seconds.
pub const PROOF_WINDOW: u64 = 120;
/// Longest signed header (k+m at [`MAX_BACKUP_SHARDS`]).
pub const MAX_HEADER: usize = HEADER_FIXED + 32 * MAX_BACKUP_SHARDS + 64;
/// Longest path an access proof names.
const MAX_PROOF_PATH: usize = 256;

/// Why a backup header, shard file or access proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackupError {
    /// Not in the format at all (wrong magic, lengths that do not add up).
    #[error("not a catalog backup {0} (malformed)")]
    Malformed(&'static str),
    /// The signature does not verify with the grid's key.
    #[error("the catalog backup's signature is not the grid's (a host may have planted it)")]
    BadSignature,
    /// A shard's bytes do not hash to what the header names.
    #[error("shard {0} of the backup does not match its header's hash")]
    ShardHash(u8),
    /// The access proof does not verify with the recovery access key.
    #[error("the recovery proof is not signed by this grid's recovery key")]
    BadProof,
    /// The access proof names another host or path.
    #[error("the recovery proof is for another host or request")]
    WrongTarget,
    /// The access proof is too old or from the future.
    #[error("the recovery proof is outside its {PROOF_WINDOW} s window (check both clocks)")]
    Stale,
}

/// What a catalog backup's header states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupHeader {
    /// The grid: its CA fingerprint (zeros on an `--insecure` grid).
    pub grid: [u8; 32],
    /// Strictly increasing per grid: the newest backup has the highest.
    pub seq: u64,
    /// When it was taken (unix seconds).
    pub time: u64,
    /// BLAKE3 of the whole ciphertext.
    pub hash: [u8; 32],
    /// Bytes of ciphertext.
    pub size: u64,
    /// Data shards.
    pub k: u8,
    /// Parity shards.
    pub m: u8,
    /// Bytes in every shard.
    pub shard_size: u64,
    /// BLAKE3 of each of the k+m shards.
    pub shard_hashes: Vec<[u8; 32]>,
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[i..i + 8]);
    u64::from_be_bytes(x)
}

impl BackupHeader {
    fn body(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_FIXED + 32 * self.shard_hashes.len() + 64);
        b.extend_from_slice(HEADER_MAGIC);
        b.extend_from_slice(&self.grid);
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.extend_from_slice(&self.time.to_be_bytes());
        b.extend_from_slice(&self.hash);
        b.extend_from_slice(&self.size.to_be_bytes());
        b.push(self.k);
        b.push(self.m);
        b.extend_from_slice(&self.shard_size.to_be_bytes());
        for h in &self.shard_hashes {
            b.extend_from_slice(h);
        }
        b
    }

    /// The signed header's bytes.
    pub fn sign(&self, key: &SigningKey) -> Vec<u8> {
        let mut b = self.body();
        let sig = key.sign(&b);
        b.extend_from_slice(&sig.to_bytes());
        b
    }

    /// Decodes a signed header and checks its signature with the grid's key.
    pub fn open(raw: &[u8], key: &VerifyingKey) -> Result<Self, BackupError> {
        let bad = || BackupError::Malformed("header");
        if raw.len() < HEADER_FIXED + 64 || &raw[..4] != HEADER_MAGIC {
            return Err(bad());
        }
        let (k, m) = (raw[92], raw[93]);
        let n = k as usize + m as usize;
        if k == 0 || n > MAX_BACKUP_SHARDS || raw.len() != HEADER_FIXED + 32 * n + 64 {
            return Err(bad());
        }
        let (body, sig) = raw.split_at(raw.len() - 64);
        let sig = Signature::from_slice(sig).map_err(|_| bad())?;
        key.verify(body, &sig).map_err(|_| BackupError::BadSignature)?;
        let mut grid = [0u8; 32];
        grid.copy_from_slice(&body[4..36]);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&body[52..84]);
        let shard_hashes = body[HEADER_FIXED..]
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Ok(Self {
            grid,
            seq: u64_at(body, 36),
            time: u64_at(body, 44),
            hash,
            size: u64_at(body, 84),
            k,
            m,
            shard_size: u64_at(body, 94),
            shard_hashes,
        })
    }

    /// Total shards (k+m).
    pub fn total(&self) -> usize {
        self.k as usize + self.m as usize
    }
}

/// Makes the file a host stores for shard `index` of a backup.
pub fn encode_shard(signed_header: &[u8], index: u8, shard: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 4 + signed_header.len() + 1 + shard.len());
    out.extend_from_slice(SHARD_MAGIC);
    out.extend_from_slice(&(signed_header.len() as u32).to_be_bytes());
    out.extend_from_slice(signed_header);
    out.push(index);
    out.extend_from_slice(shard);
    out
}

/// A backup shard file, checked.
#[derive(Debug, Clone)]
pub struct OpenedShard<'a> {
    /// Its backup's header (signature verified).
    pub header: BackupHeader,
    /// The signed header's bytes.
    pub signed_header: &'a [u8],
    /// Which shard.
    pub index: u8,
    /// The shard's bytes (hash verified).
    pub shard: &'a [u8],
}

/// Checks a backup shard file: the header's signature with the grid's key, the index, the
/// length and the shard's hash.
pub fn open_shard<'a>(raw: &'a [u8], key: &VerifyingKey) -> Result<OpenedShard<'a>, BackupError> {
    let bad = || BackupError::Malformed("shard");
    if raw.len() < 8 || &raw[..4] != SHARD_MAGIC {
        return Err(bad());
    }
    let mut l = [0u8; 4];
    l.copy_from_slice(&raw[4..8]);
    let header_len = u32::from_be_bytes(l) as usize;
    let rest = &raw[8..];
    if header_len >= rest.len() {
        return Err(bad());
    }
    let (signed_header, rest) = rest.split_at(header_len);
    let header = BackupHeader::open(signed_header, key)?;
    let (index, shard) = (rest[0], &rest[1..]);
    if index as usize >= header.total() || shard.len() as u64 != header.shard_size {
        return Err(bad());
    }
    if *blake3::hash(shard).as_bytes() != header.shard_hashes[index as usize] {
        return Err(BackupError::ShardHash(index));
    }
    Ok(OpenedShard { header, signed_header, index, shard })
}

/// Signs an access proof for `path` at `host`, made at `now` (unix seconds).
pub fn sign_proof(key: &SigningKey, host: HostId, path: &str, now: u64) -> String {
    let mut b = Vec::with_capacity(4 + 8 + 8 + 2 + path.len() + 64);
    b.extend_from_slice(PROOF_MAGIC);
    b.extend_from_slice(&host.0.to_be_bytes());
    b.extend_from_slice(&now.to_be_bytes());
    b.extend_from_slice(&(path.len().min(u16::MAX as usize) as u16).to_be_bytes());
    b.extend_from_slice(path.as_bytes());
    let sig = key.sign(&b);
    b.extend_from_slice(&sig.to_bytes());
    URL_SAFE_NO_PAD.encode(b)
}

/// Checks an access proof: signed by `key`, for `host` and `path`, made within
/// [`PROOF_WINDOW`] of `now`.
pub fn check_proof(proof: &str, key: &VerifyingKey, host: HostId, path: &str, now: u64) -> Result<(), BackupError> {
    let bad = || BackupError::Malformed("proof");
    if proof.len() > 2 * (4 + 8 + 8 + 2 + MAX_PROOF_PATH + 64) {
        return Err(bad());
    }
    let raw = URL_SAFE_NO_PAD.decode(proof).map_err(|_| bad())?;
    if raw.len() < 22 + 64 || &raw[..4] != PROOF_MAGIC {
        return Err(bad());
    }
    let path_len = u16::from_be_bytes([raw[20], raw[21]]) as usize;
    if raw.len() != 22 + path_len + 64 {
        return Err(bad());
    }
    let (body, sig) = raw.split_at(raw.len() - 64);
    let sig = Signature::from_slice(sig).map_err(|_| bad())?;
    key.verify(body, &sig).map_err(|_| BackupError::BadProof)?;
    if u64_at(body, 4) != host.0 || &body[22..] != path.as_bytes() {
        return Err(BackupError::WrongTarget);
    }
    if u64_at(body, 12).abs_diff(now) > PROOF_WINDOW {
        return Err(BackupError::Stale);
    }
    Ok(())
}

/// A host's answer to `GET /catalog/id`: who it is, for the proofs of the next requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogHostId {
    /// The host's id.
    pub host_id: HostId,
}

/// One backup shard a host holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// The backup's sequence number (as its file name says; the header is what counts).
    pub seq: u64,
    /// Which of its shards.
    pub index: u8,
    /// Bytes of the file.
    pub size: u64,
    /// The signed header, base64url.
    pub header: String,
}

/// A host's answer to `GET /catalog`: the backup shards it holds, at most
/// [`KEEP_BACKUPS`] × [`MAX_BACKUP_SHARDS`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogListing {
    /// The shards.
    pub entries: Vec<CatalogEntry>,
}

/// Encodes a signed header for a listing.
pub fn header_text(signed_header: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(signed_header)
}

/// Decodes a listing's header text (bounded).
pub fn header_bytes(text: &str) -> Option<Vec<u8>> {
    if text.len() > 2 * MAX_HEADER {
        return None;
    }
    URL_SAFE_NO_PAD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(n: usize) -> BackupHeader {
        BackupHeader {
            grid: [7; 32],
            seq: 42,
            time: 1_700_000_000,
            hash: [1; 32],
            size: 1000,
            k: 2,
            m: (n - 2) as u8,
            shard_size: 3,
            shard_hashes: (0..n).map(|i| *blake3::hash(&[i as u8; 3]).as_bytes()).collect(),
        }
    }

    #[test]
    fn headers_round_trip_and_only_the_grid_key_signs_them() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let other = SigningKey::from_bytes(&[4; 32]);
        let h = header(4);
        let signed = h.sign(&key);
        assert_eq!(BackupHeader::open(&signed, &key.verifying_key()), Ok(h.clone()));
        assert_eq!(BackupHeader::open(&signed, &other.verifying_key()), Err(BackupError::BadSignature));
        let mut tampered = signed.clone();
        tampered[40] ^= 1;
        assert_eq!(BackupHeader::open(&tampered, &key.verifying_key()), Err(BackupError::BadSignature));
        assert!(matches!(
            BackupHeader::open(&signed[..signed.len() - 1], &key.verifying_key()),
            Err(BackupError::Malformed(_))
        ));
        assert!(matches!(BackupHeader::open(b"SCB1", &key.verifying_key()), Err(BackupError::Malformed(_))));
    }

    #[test]
    fn shard_files_are_checked_against_their_header() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let signed = header(4).sign(&key);
        let file = encode_shard(&signed, 1, &[1; 3]);
        let opened = open_shard(&file, &key.verifying_key()).expect("valid");
        assert_eq!((opened.index, opened.shard), (1, &[1u8; 3][..]));
        assert_eq!(
            open_shard(&encode_shard(&signed, 2, &[1; 3]), &key.verifying_key()).err(),
            Some(BackupError::ShardHash(2))
        );
        assert!(open_shard(&encode_shard(&signed, 4, &[1; 3]), &key.verifying_key()).is_err());
        assert!(open_shard(&encode_shard(&signed, 1, &[1; 4]), &key.verifying_key()).is_err());
        let planted = header(4).sign(&SigningKey::from_bytes(&[9; 32]));
        assert_eq!(
            open_shard(&encode_shard(&planted, 1, &[1; 3]), &key.verifying_key()).err(),
            Some(BackupError::BadSignature)
        );
        assert!(open_shard(&file[..10], &key.verifying_key()).is_err());
    }

    #[test]
    fn proofs_bind_key_host_path_and_time() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let vk = key.verifying_key();
        let p = sign_proof(&key, HostId(3), "/catalog", 1000);
        assert_eq!(check_proof(&p, &vk, HostId(3), "/catalog", 1050), Ok(()));
        assert_eq!(check_proof(&p, &vk, HostId(4), "/catalog", 1000), Err(BackupError::WrongTarget));
        assert_eq!(check_proof(&p, &vk, HostId(3), "/catalog/1/0", 1000), Err(BackupError::WrongTarget));
        assert_eq!(check_proof(&p, &vk, HostId(3), "/catalog", 1000 + PROOF_WINDOW + 1), Err(BackupError::Stale));
        let other = SigningKey::from_bytes(&[6; 32]).verifying_key();
        assert_eq!(check_proof(&p, &other, HostId(3), "/catalog", 1000), Err(BackupError::BadProof));
        assert!(check_proof("!!", &vk, HostId(3), "/catalog", 1000).is_err());
    }
}
