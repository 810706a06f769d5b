//! Proofs of storage: a host proves it holds a shard by sending a byte range of it together
//! with the BLAKE3 tree nodes that link that range to the shard's root hash (Bao verified
//! streaming). The root hash is the shard id the catalog already has, so the coordinator
//! checks a proof without keeping anything else, and a host that lacks the data or holds
//! different data cannot produce one.

use std::io::Read;

use crate::ids::ShardId;

/// Why a proof was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// The range does not fit the shard.
    #[error("the audited range {start}+{len} is outside the {size}-byte shard")]
    Range {
        /// Start.
        start: u64,
        /// Length.
        len: u64,
        /// Shard size.
        size: u64,
    },
    /// The proof does not verify against the shard's root hash.
    #[error("the proof does not match the shard's hash: {0}")]
    Invalid(String),
}

/// A proof for bytes `start..start+len` of `data`.
pub fn prove(data: &[u8], start: u64, len: u64) -> Result<Vec<u8>, AuditError> {
    let size = data.len() as u64;
    if len == 0 || start.checked_add(len).is_none_or(|end| end > size) {
        return Err(AuditError::Range { start, len, size });
    }
    let (outboard, _) = bao::encode::outboard(data);
    let mut proof = Vec::new();
    bao::encode::SliceExtractor::new_outboard(std::io::Cursor::new(data), std::io::Cursor::new(&outboard), start, len)
        .read_to_end(&mut proof)
        .map_err(|e| AuditError::Invalid(e.to_string()))?;
    Ok(proof)
}

/// Verifies a proof against the shard id; returns the proven bytes.
pub fn verify(shard: &ShardId, start: u64, len: u64, proof: &[u8]) -> Result<Vec<u8>, AuditError> {
    let root = blake3::Hash::from_bytes(*shard.as_bytes());
    let mut out = Vec::with_capacity(len as usize);
    bao::decode::SliceDecoder::new(proof, &root, start, len)
        .read_to_end(&mut out)
        .map_err(|e| AuditError::Invalid(e.to_string()))?;
    if out.len() as u64 != len {
        return Err(AuditError::Invalid(format!("{} bytes proven, {len} asked", out.len())));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn an_honest_host_passes() {
        let d = data(1 << 20);
        let id = ShardId::of(&d);
        for (start, len) in [(0, 4096), (123_457, 4096), ((1 << 20) - 10, 10), (0, 1 << 20)] {
            let proof = prove(&d, start, len).expect("prove");
            let got = verify(&id, start, len, &proof).expect("verifies");
            assert_eq!(got, &d[start as usize..(start + len) as usize]);
        }
    }

    #[test]
    fn different_or_missing_data_fails() {
        let d = data(300_000);
        let id = ShardId::of(&d);
        // A host holding other bytes of the same size.
        let mut other = d.clone();
        other[150_000] ^= 1;
        let proof = prove(&other, 149_000, 4096).expect("prove");
        assert!(verify(&id, 149_000, 4096, &proof).is_err());
        // A proof of another range, a truncated proof, garbage.
        let proof = prove(&d, 0, 4096).expect("prove");
        assert!(verify(&id, 8192, 4096, &proof).is_err());
        assert!(verify(&id, 0, 4096, &proof[..proof.len() - 1]).is_err());
        assert!(verify(&id, 0, 4096, &[0u8; 5000]).is_err());
        // Ranges outside the shard.
        assert!(matches!(prove(&d, 299_999, 2), Err(AuditError::Range { .. })));
        assert!(matches!(prove(&d, 0, 0), Err(AuditError::Range { .. })));
    }
}
