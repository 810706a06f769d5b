//! Authenticated encryption of chunks and manifests, and keyed chunk ids.
//!
//! Every sealed blob has a small versioned header so the format can change without
//! guessing:
//!
//! ```text
//! +---------+-----------+-------------+-----------------------------+
//! | version | algorithm | nonce (12)  | ciphertext ‖ tag (16)       |
//! |   0x01  | 0x01=AES-256-GCM         |                             |
//! +---------+-----------+-------------+-----------------------------+
//! ```
//!
//! The header is bound as associated data together with the caller's context (the chunk id
//! for a chunk), so a sealed chunk cannot be passed off as another chunk or as a manifest.
//! Nonces are random: each session key seals at most a few million blobs, far below the
//! 2^32 bound for random 96-bit nonces.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::ids::ChunkId;

const VERSION: u8 = 1;
const ALG_AES256GCM: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Bytes a sealed blob adds to its plaintext.
pub const SEAL_OVERHEAD: usize = 2 + NONCE_LEN + TAG_LEN;

/// Why a sealed blob could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Shorter than the header and tag.
    #[error("sealed data is truncated ({0} bytes)")]
    Truncated(usize),
    /// A header this version does not know.
    #[error("sealed data has unknown format version {0} / algorithm {1}")]
    UnknownFormat(u8, u8),
    /// Wrong key, or the bytes were altered.
    #[error("sealed data failed authentication (wrong key or corrupted bytes)")]
    Authentication,
}

/// A random 256-bit key that encrypts one session's chunks and manifests. It is stored only
/// wrapped to the user's public key (see [`crate::keys`]).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; 32]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

impl DataKey {
    /// Draws a fresh key from the operating system's random source.
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Self(k)
    }

    /// Wraps raw key bytes (from an unwrapped key).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw key bytes, for wrapping.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.0.into())
    }

    /// Encrypts `plaintext`, binding `context` as associated data.
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        out.extend_from_slice(&[VERSION, ALG_AES256GCM]);
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let aad = aad(&out[..2], context);
        let (_, body) = out.split_at_mut(2 + NONCE_LEN);
        let tag = self
            .cipher()
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, body)
            .expect("AES-GCM encrypts any buffer below 64 GiB");
        out.extend_from_slice(&tag);
        out
    }

    /// Decrypts a blob made by [`DataKey::seal`] with the same `context`.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(OpenError::Truncated(sealed.len()));
        }
        if sealed[0] != VERSION || sealed[1] != ALG_AES256GCM {
            return Err(OpenError::UnknownFormat(sealed[0], sealed[1]));
        }
        let nonce = Nonce::from_slice(&sealed[2..2 + NONCE_LEN]);
        let (body, tag) = sealed[2 + NONCE_LEN..].split_at(sealed.len() - SEAL_OVERHEAD);
        let mut plain = body.to_vec();
        self.cipher()
            .decrypt_in_place_detached(nonce, &aad(&sealed[..2], context), &mut plain, Tag::from_slice(tag))
            .map_err(|_| OpenError::Authentication)?;
        Ok(plain)
    }

    /// Seals one chunk; its id is the associated data.
    pub fn seal_chunk(&self, id: &ChunkId, plaintext: &[u8]) -> Vec<u8> {
        self.seal(&chunk_context(id), plaintext)
    }

    /// Opens one chunk sealed by [`DataKey::seal_chunk`].
    pub fn open_chunk(&self, id: &ChunkId, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        self.open(&chunk_context(id), sealed)
    }
}

fn chunk_context(id: &ChunkId) -> Vec<u8> {
    let mut c = b"scatter chunk v1:".to_vec();
    c.extend_from_slice(id.as_bytes());
    c
}

fn aad(header: &[u8], context: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(header.len() + context.len());
    a.extend_from_slice(header);
    a.extend_from_slice(context);
    a
}

/// The key that makes chunk ids: without it, nobody can test whether a given content is
/// stored (the coordinator sees only keyed hashes).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DedupKey(pub(crate) [u8; 32]);

impl std::fmt::Debug for DedupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DedupKey(<redacted>)")
    }
}

impl DedupKey {
    /// The id of a chunk with this plaintext.
    pub fn chunk_id(&self, plaintext: &[u8]) -> ChunkId {
        ChunkId::from_bytes(*blake3::keyed_hash(&self.0, plaintext).as_bytes())
    }

    /// Checks that `plaintext` is the chunk `id`, in constant time.
    pub fn verify(&self, id: &ChunkId, plaintext: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.chunk_id(plaintext).as_bytes().ct_eq(id.as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ChunkId {
        ChunkId::from_bytes([n; 32])
    }

    #[test]
    fn seal_open_round_trip_any_length() {
        let key = DataKey::generate();
        for len in [0usize, 1, 15, 16, 17, 4096, 1 << 20] {
            let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let sealed = key.seal_chunk(&id(1), &plain);
            assert_eq!(sealed.len(), len + SEAL_OVERHEAD);
            assert_eq!(key.open_chunk(&id(1), &sealed), Ok(plain));
        }
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let key = DataKey::generate();
        let sealed = key.seal_chunk(&id(1), b"some secret bytes");
        for i in 0..sealed.len() * 8 {
            let mut bad = sealed.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(key.open_chunk(&id(1), &bad).is_err(), "bit {i} flip undetected");
        }
    }

    #[test]
    fn wrong_key_wrong_id_and_truncation_fail() {
        let key = DataKey::generate();
        let sealed = key.seal_chunk(&id(1), b"data");
        assert_eq!(DataKey::generate().open_chunk(&id(1), &sealed), Err(OpenError::Authentication));
        assert_eq!(key.open_chunk(&id(2), &sealed), Err(OpenError::Authentication));
        assert_eq!(key.open(b"manifest", &sealed), Err(OpenError::Authentication));
        assert_eq!(key.open_chunk(&id(1), &sealed[..10]), Err(OpenError::Truncated(10)));
    }

    #[test]
    fn same_plaintext_seals_differently() {
        let key = DataKey::generate();
        assert_ne!(key.seal_chunk(&id(1), b"x"), key.seal_chunk(&id(1), b"x"));
    }

    #[test]
    fn chunk_ids_depend_on_the_dedup_key() {
        let a = DedupKey([1; 32]);
        let b = DedupKey([2; 32]);
        assert_eq!(a.chunk_id(b"x"), a.chunk_id(b"x"));
        assert_ne!(a.chunk_id(b"x"), b.chunk_id(b"x"));
        assert!(a.verify(&a.chunk_id(b"x"), b"x"));
        assert!(!a.verify(&a.chunk_id(b"x"), b"y"));
    }
}
