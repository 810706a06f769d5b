//! The object manifest: the ordered list of chunks that make up one stored file.
//!
//! Manifests are sealed with the session's data key before they leave the client. Plaintext
//! layout (all integers little-endian):
//!
//! ```text
//! "SCMF" | version u8 = 1 | size u64 | count u32 | count × (chunk id [32] | plain len u32)
//! ```

use crate::ids::ChunkId;

const MAGIC: &[u8; 4] = b"SCMF";
const VERSION: u8 = 1;
const HEADER: usize = 4 + 1 + 8 + 4;
const ENTRY: usize = 32 + 4;

/// Why a manifest could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not a manifest, or a version this build does not know.
    #[error("not a Scatter manifest (bad magic or unknown version)")]
    BadHeader,
    /// Lengths inside do not add up.
    #[error("manifest is inconsistent: {0}")]
    Inconsistent(&'static str),
}

/// One file's content as a list of chunks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    /// Total plaintext bytes.
    pub size: u64,
    /// Chunks in file order, with their plaintext lengths.
    pub chunks: Vec<(ChunkId, u32)>,
}

impl Manifest {
    /// Serializes the manifest.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.chunks.len() * ENTRY);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&(self.chunks.len() as u32).to_le_bytes());
        for (id, len) in &self.chunks {
            out.extend_from_slice(id.as_bytes());
            out.extend_from_slice(&len.to_le_bytes());
        }
        out
    }

    /// Parses a manifest, checking every length before using it.
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() < HEADER || &bytes[..4] != MAGIC || bytes[4] != VERSION {
            return Err(ManifestError::BadHeader);
        }
        let size = u64::from_le_bytes(bytes[5..13].try_into().map_err(|_| ManifestError::BadHeader)?);
        let count = u32::from_le_bytes(bytes[13..17].try_into().map_err(|_| ManifestError::BadHeader)?) as usize;
        let body = &bytes[HEADER..];
        if count.checked_mul(ENTRY) != Some(body.len()) {
            return Err(ManifestError::Inconsistent("chunk count does not match length"));
        }
        let mut chunks = Vec::with_capacity(count);
        let mut total: u64 = 0;
        for entry in body.chunks_exact(ENTRY) {
            let id = ChunkId::from_slice(&entry[..32]).ok_or(ManifestError::BadHeader)?;
            let len = u32::from_le_bytes(entry[32..].try_into().map_err(|_| ManifestError::BadHeader)?);
            total += len as u64;
            chunks.push((id, len));
        }
        if total != size {
            return Err(ManifestError::Inconsistent("chunk lengths do not add up to the size"));
        }
        Ok(Self { size, chunks })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest { size: 30, chunks: vec![(ChunkId::from_bytes([1; 32]), 10), (ChunkId::from_bytes([2; 32]), 20)] }
    }

    #[test]
    fn round_trips() {
        assert_eq!(Manifest::decode(&sample().encode()), Ok(sample()));
        assert_eq!(Manifest::decode(&Manifest::default().encode()), Ok(Manifest::default()));
    }

    #[test]
    fn rejects_every_truncation_and_bad_sizes() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(Manifest::decode(&bytes[..cut]).is_err(), "cut at {cut} accepted");
        }
        let mut wrong_size = sample();
        wrong_size.size = 31;
        assert!(Manifest::decode(&wrong_size.encode()).is_err());
        let mut huge_count = sample().encode();
        huge_count[13..17].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Manifest::decode(&huge_count).is_err());
    }
}
