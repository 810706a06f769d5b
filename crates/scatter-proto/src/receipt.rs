//! Receipts: a host's signed statement that a shard is durable on its disk.
//!
//! The coordinator records a shard only with the receipt its host signed, so no client can
//! make the catalog place a shard on a host that never received it (whose audits would then
//! fail), or name a shard it never uploaded. A receipt answers one put grant: it carries
//! the BLAKE3 hash of that grant, which the coordinator matches against the placement it
//! made, so an old receipt cannot be replayed for a shard deleted since. Receipts that
//! answer no grant (the backfill of shards stored before receipts existed) carry zeros
//! there. Encoding (big-endian integers), then base64url:
//!
//! ```text
//! "SRC1" | host u64 | shard id [32] | size u64 | time (unix s) u64 | grant hash [32] | Ed25519 signature [64]
//! ```
//!
//! The signature, by the host's lasting receipt key (made at join, kept in the host's data
//! folder, its public half registered with the coordinator), covers everything before it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use scatter_core::{HostId, ShardId};

use crate::SignedGrant;

const MAGIC: &[u8; 4] = b"SRC1";
const BODY_LEN: usize = 4 + 8 + 32 + 8 + 8 + 32;
const LEN: usize = BODY_LEN + 64;

/// The grant hash of a receipt that answers no grant (backfill).
pub const NO_GRANT: [u8; 32] = [0; 32];

/// What a receipt states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The host holding the shard.
    pub host: HostId,
    /// The shard (BLAKE3 of its bytes, which the host checked).
    pub shard: ShardId,
    /// Its length in bytes.
    pub size: u64,
    /// Unix time (seconds, the host's clock) when it was durable.
    pub time: u64,
    /// BLAKE3 of the put grant the upload came with ([`NO_GRANT`] for a backfill).
    pub grant: [u8; 32],
}

/// Why a receipt was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// Not a receipt at all.
    #[error("the receipt is malformed")]
    Malformed,
    /// The signature does not verify against the host's receipt key.
    #[error("the receipt's signature is not the host's")]
    BadSignature,
    /// It states something other than what it was presented for.
    #[error("the receipt is for another {0}")]
    Mismatch(&'static str),
}

/// BLAKE3 of a grant as sent, which a receipt for that upload names.
pub fn grant_hash(grant: &SignedGrant) -> [u8; 32] {
    *blake3::hash(grant.0.as_bytes()).as_bytes()
}

impl Receipt {
    fn body(&self) -> [u8; BODY_LEN] {
        let mut b = [0u8; BODY_LEN];
        b[..4].copy_from_slice(MAGIC);
        b[4..12].copy_from_slice(&self.host.0.to_be_bytes());
        b[12..44].copy_from_slice(self.shard.as_bytes());
        b[44..52].copy_from_slice(&self.size.to_be_bytes());
        b[52..60].copy_from_slice(&self.time.to_be_bytes());
        b[60..92].copy_from_slice(&self.grant);
        b
    }

    /// Signs the receipt with the host's receipt key.
    pub fn sign(&self, key: &SigningKey) -> SignedReceipt {
        let body = self.body();
        let mut raw = Vec::with_capacity(LEN);
        raw.extend_from_slice(&body);
        raw.extend_from_slice(&key.sign(&body).to_bytes());
        SignedReceipt(URL_SAFE_NO_PAD.encode(raw))
    }
}

/// A signed receipt as carried in requests (base64url text).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct SignedReceipt(pub String);

impl SignedReceipt {
    /// Decodes the receipt and checks its signature, without checking what it states.
    pub fn open(&self, key: &VerifyingKey) -> Result<Receipt, ReceiptError> {
        if self.0.len() > 2 * LEN {
            return Err(ReceiptError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD.decode(&self.0).map_err(|_| ReceiptError::Malformed)?;
        if raw.len() != LEN || &raw[..4] != MAGIC {
            return Err(ReceiptError::Malformed);
        }
        let (body, sig) = raw.split_at(BODY_LEN);
        let sig = Signature::from_slice(sig).map_err(|_| ReceiptError::Malformed)?;
        key.verify_strict(body, &sig).map_err(|_| ReceiptError::BadSignature)?;
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&body[i..i + 8]);
            u64::from_be_bytes(b)
        };
        let mut grant = [0u8; 32];
        grant.copy_from_slice(&body[60..92]);
        Ok(Receipt {
            host: HostId(u64_at(4)),
            shard: ShardId::from_slice(&body[12..44]).ok_or(ReceiptError::Malformed)?,
            size: u64_at(44),
            time: u64_at(52),
            grant,
        })
    }

    /// Checks that this receipt, signed by `key`, states that `host` holds `shard` of
    /// `size` bytes, received with the grant hashed to `grant`.
    pub fn check(
        &self,
        key: &VerifyingKey,
        host: HostId,
        shard: &ShardId,
        size: u64,
        grant: &[u8; 32],
    ) -> Result<Receipt, ReceiptError> {
        let r = self.open(key)?;
        if r.host != host {
            return Err(ReceiptError::Mismatch("host"));
        }
        if &r.shard != shard {
            return Err(ReceiptError::Mismatch("shard"));
        }
        if r.size != size {
            return Err(ReceiptError::Mismatch("size"));
        }
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&r.grant[..], &grant[..])) {
            return Err(ReceiptError::Mismatch("grant"));
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SigningKey {
        SigningKey::from_bytes(&[b; 32])
    }

    fn receipt() -> Receipt {
        Receipt { host: HostId(3), shard: ShardId::of(b"s"), size: 100, time: 1000, grant: [7; 32] }
    }

    #[test]
    fn a_valid_receipt_passes() {
        let k = key(1);
        let r = receipt().sign(&k);
        assert_eq!(r.check(&k.verifying_key(), HostId(3), &ShardId::of(b"s"), 100, &[7; 32]), Ok(receipt()));
    }

    #[test]
    fn every_mismatch_is_refused() {
        let k = key(1);
        let vk = k.verifying_key();
        let r = receipt().sign(&k);
        let s = ShardId::of(b"s");
        assert_eq!(r.check(&key(2).verifying_key(), HostId(3), &s, 100, &[7; 32]), Err(ReceiptError::BadSignature));
        assert_eq!(r.check(&vk, HostId(4), &s, 100, &[7; 32]), Err(ReceiptError::Mismatch("host")));
        assert_eq!(r.check(&vk, HostId(3), &ShardId::of(b"t"), 100, &[7; 32]), Err(ReceiptError::Mismatch("shard")));
        assert_eq!(r.check(&vk, HostId(3), &s, 101, &[7; 32]), Err(ReceiptError::Mismatch("size")));
        assert_eq!(r.check(&vk, HostId(3), &s, 100, &NO_GRANT), Err(ReceiptError::Mismatch("grant")));
    }

    #[test]
    fn tampering_and_garbage_are_refused() {
        let k = key(1);
        let vk = k.verifying_key();
        let r = receipt().sign(&k);
        let mut raw = URL_SAFE_NO_PAD.decode(&r.0).expect("b64");
        for i in [4, 12, 44, 52, 60, 100] {
            raw[i] ^= 1;
            assert_eq!(SignedReceipt(URL_SAFE_NO_PAD.encode(&raw)).open(&vk), Err(ReceiptError::BadSignature));
            raw[i] ^= 1;
        }
        raw[0] = b'X';
        assert_eq!(SignedReceipt(URL_SAFE_NO_PAD.encode(&raw)).open(&vk), Err(ReceiptError::Malformed));
        for bad in ["", "!!", "AAAA", &"A".repeat(10_000)] {
            assert_eq!(SignedReceipt(bad.into()).open(&vk), Err(ReceiptError::Malformed));
        }
    }

    #[test]
    fn grants_hash_apart() {
        assert_ne!(grant_hash(&SignedGrant("a".into())), grant_hash(&SignedGrant("b".into())));
        assert_ne!(grant_hash(&SignedGrant("a".into())), NO_GRANT);
    }
}
