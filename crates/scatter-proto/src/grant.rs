//! Grants: coordinator-signed permissions for one operation on one shard at one host.
//!
//! A host checks a grant with the coordinator's public key only: there is no call back to the
//! coordinator on the data path. Encoding (big-endian integers), then base64url:
//!
//! ```text
//! "SGR2" | host u64 | shard id [32] | op u8 | max size u64 | expires (unix s) u64 | nonce u64 | Ed25519 signature [64]
//! ```
//!
//! The signature covers everything before it. The nonce makes every put grant unique (Ed25519
//! signatures are deterministic): a receipt answers exactly one placement, even one made
//! again for the same host and shard within the same second.
//!
//! A range read ([`Op::GetRange`]) carries, in place of the size, the start of the bytes of
//! the shard it lets be read, and in the nonce's low 32 bits their end (exclusive; shards are
//! far smaller than 4 GiB), its high 32 bits random: a client that located a few chunks may
//! read those, not the rest of their packs (see [`Grant::get_range`]), and hosts keep a read
//! budget per grant, so two locates of the same bytes must not make the same grant.
//!
//! A conditional delete ([`Op::DeleteIf`]) carries, in place of the size and the nonce, the
//! first 16 bytes of the hash of the put grant that alone may have written the host's copy
//! (see [`Grant::delete_if_written_by`]). A host that does not know that op refuses it as
//! malformed, so an older host never takes it for a plain delete.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use scatter_core::{HostId, ShardId};

const MAGIC: &[u8; 4] = b"SGR2";
/// The largest end a range grant carries (the low 32 bits of its nonce).
const RANGE_END: u64 = u32::MAX as u64;
const BODY_LEN: usize = 4 + 8 + 32 + 1 + 8 + 8 + 8;
const LEN: usize = BODY_LEN + 64;

/// What a grant allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Store the shard (up to the grant's size limit).
    Put = 1,
    /// Read the shard or a range of it.
    Get = 2,
    /// Delete the shard.
    Delete = 3,
    /// Delete the shard only if every upload that wrote the host's copy came under one put
    /// grant ([`Grant::written_by`]); otherwise keep it.
    DeleteIf = 4,
    /// Store a shard of a catalog backup (up to the grant's size limit); the grant's shard is
    /// [`catalog_shard`] of the backup's sequence number and the shard's index. Checked before
    /// the body is read, so that nobody but the coordinator can hold a host's one slot for
    /// these uploads or make it take their bytes in.
    CatalogPut = 5,
    /// Read a range of the shard within the bounds the grant carries
    /// ([`Grant::readable`]); a host takes it where a [`Op::Get`] is asked for.
    GetRange = 6,
}

/// The id a [`Op::CatalogPut`] grant names for shard `index` of catalog backup `seq`: derived
/// under its own context, so no data shard (whose id is the hash of its bytes) has it.
pub fn catalog_shard(seq: u64, index: u8) -> ShardId {
    let mut h = blake3::Hasher::new_derive_key("scatter 2026 catalog backup shard grant");
    h.update(&seq.to_be_bytes());
    h.update(&[index]);
    ShardId::from_bytes(*h.finalize().as_bytes())
}

impl Op {
    fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(Op::Put),
            2 => Some(Op::Get),
            3 => Some(Op::Delete),
            4 => Some(Op::DeleteIf),
            5 => Some(Op::CatalogPut),
            6 => Some(Op::GetRange),
            _ => None,
        }
    }
}

/// The statement a grant makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The host that may serve the operation.
    pub host: HostId,
    /// The shard it applies to.
    pub shard: ShardId,
    /// The operation allowed.
    pub op: Op,
    /// Largest number of bytes a put may store.
    pub max_size: u64,
    /// Unix time (seconds) after which the grant is void.
    pub expires: u64,
    /// Makes the grant unique where that matters (put grants draw it at random; 0 elsewhere).
    pub nonce: u64,
}

/// Why a grant was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// Not a grant at all.
    #[error("the grant is malformed")]
    Malformed,
    /// The signature does not verify against the coordinator's key.
    #[error("the grant's signature is not the coordinator's")]
    BadSignature,
    /// Issued for another host.
    #[error("the grant is for host {0}, not this host")]
    WrongHost(HostId),
    /// Issued for another shard.
    #[error("the grant is for another shard")]
    WrongShard,
    /// Issued for another operation.
    #[error("the grant allows {granted:?}, not {wanted:?}")]
    WrongOp {
        /// What it allows.
        granted: Op,
        /// What was asked.
        wanted: Op,
    },
    /// Past its expiry.
    #[error("the grant expired; ask the coordinator for a new one")]
    Expired,
    /// A read outside the bytes a range grant covers (or of the whole shard).
    #[error("the grant covers bytes {0}..{1} of this shard only; ask for a range within them")]
    OutOfRange(u64, u64),
    /// The grant's bytes were served as often as a grant allows (a read and a retry).
    #[error("this grant's {0} bytes were served already; ask the coordinator for a new grant")]
    Spent(u64),
}

impl Grant {
    /// A grant to delete `shard` from `host` only if the host's copy was written under the
    /// put grant whose hash is `put_grant` alone (see [`crate::receipt::grant_hash`]).
    pub fn delete_if_written_by(host: HostId, shard: ShardId, put_grant: &[u8; 32], expires: u64) -> Self {
        let half = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&put_grant[i..i + 8]);
            u64::from_be_bytes(b)
        };
        Grant { host, shard, op: Op::DeleteIf, max_size: half(0), expires, nonce: half(8) }
    }

    /// A grant to read bytes `range` of `shard` at `host`, and no others; unique (a random
    /// tag). A range ending past 4 GiB, which no shard has, is cut there.
    pub fn get_range(host: HostId, shard: ShardId, range: std::ops::Range<u64>, expires: u64) -> Self {
        let end = range.end.min(RANGE_END);
        let nonce = (u64::from(rand::random::<u32>()) << 32) | end;
        Grant { host, shard, op: Op::GetRange, max_size: range.start.min(end), expires, nonce }
    }

    /// For [`Op::GetRange`]: the bytes of the shard it lets be read (`None`: any, as for
    /// [`Op::Get`]).
    pub fn readable(&self) -> Option<std::ops::Range<u64>> {
        (self.op == Op::GetRange).then_some(self.max_size..(self.nonce & RANGE_END))
    }

    /// For [`Op::DeleteIf`]: the first 16 bytes of the hash of the put grant the copy must
    /// have been written under alone.
    pub fn written_by(&self) -> Option<[u8; 16]> {
        (self.op == Op::DeleteIf).then(|| {
            let mut out = [0u8; 16];
            out[..8].copy_from_slice(&self.max_size.to_be_bytes());
            out[8..].copy_from_slice(&self.nonce.to_be_bytes());
            out
        })
    }

    fn body(&self) -> [u8; BODY_LEN] {
        let mut b = [0u8; BODY_LEN];
        b[..4].copy_from_slice(MAGIC);
        b[4..12].copy_from_slice(&self.host.0.to_be_bytes());
        b[12..44].copy_from_slice(self.shard.as_bytes());
        b[44] = self.op as u8;
        b[45..53].copy_from_slice(&self.max_size.to_be_bytes());
        b[53..61].copy_from_slice(&self.expires.to_be_bytes());
        b[61..69].copy_from_slice(&self.nonce.to_be_bytes());
        b
    }

    /// Signs the grant with the coordinator's key.
    pub fn sign(&self, key: &SigningKey) -> SignedGrant {
        let body = self.body();
        let sig = key.sign(&body);
        let mut raw = Vec::with_capacity(LEN);
        raw.extend_from_slice(&body);
        raw.extend_from_slice(&sig.to_bytes());
        SignedGrant(URL_SAFE_NO_PAD.encode(raw))
    }
}

/// A signed grant as carried in requests (base64url text).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct SignedGrant(pub String);

impl SignedGrant {
    /// Decodes the grant and checks its signature, without checking what it is for.
    pub fn open(&self, key: &VerifyingKey) -> Result<Grant, GrantError> {
        if self.0.len() > 2 * LEN {
            return Err(GrantError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD.decode(&self.0).map_err(|_| GrantError::Malformed)?;
        if raw.len() != LEN || &raw[..4] != MAGIC {
            return Err(GrantError::Malformed);
        }
        let (body, sig) = raw.split_at(BODY_LEN);
        let sig = Signature::from_slice(sig).map_err(|_| GrantError::Malformed)?;
        key.verify(body, &sig).map_err(|_| GrantError::BadSignature)?;
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&body[i..i + 8]);
            u64::from_be_bytes(b)
        };
        Ok(Grant {
            host: HostId(u64_at(4)),
            shard: ShardId::from_slice(&body[12..44]).ok_or(GrantError::Malformed)?,
            op: Op::from_u8(body[44]).ok_or(GrantError::Malformed)?,
            max_size: u64_at(45),
            expires: u64_at(53),
            nonce: u64_at(61),
        })
    }

    /// Checks that this grant allows `op` on `shard` at `host` at time `now` (unix seconds).
    pub fn check(
        &self,
        key: &VerifyingKey,
        host: HostId,
        shard: &ShardId,
        op: Op,
        now: u64,
    ) -> Result<Grant, GrantError> {
        let g = self.open(key)?;
        if g.host != host {
            return Err(GrantError::WrongHost(g.host));
        }
        if &g.shard != shard {
            return Err(GrantError::WrongShard);
        }
        // A range read is a read, bounded by the caller with [`Grant::readable`].
        if g.op != op && !(g.op == Op::GetRange && op == Op::Get) {
            return Err(GrantError::WrongOp { granted: g.op, wanted: op });
        }
        if now > g.expires {
            return Err(GrantError::Expired);
        }
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SigningKey {
        SigningKey::from_bytes(&[b; 32])
    }

    fn grant() -> Grant {
        Grant { host: HostId(3), shard: ShardId::of(b"s"), op: Op::Put, max_size: 100, expires: 1000, nonce: 0 }
    }

    #[test]
    fn a_range_grant_is_a_read_of_its_bytes_only() {
        let k = key(1);
        let g = Grant::get_range(HostId(3), ShardId::of(b"s"), 100..164, 1000);
        let opened = g.sign(&k).check(&k.verifying_key(), HostId(3), &ShardId::of(b"s"), Op::Get, 999).expect("a read");
        assert_eq!(opened.readable(), Some(100..164));
        assert_eq!(grant().readable(), None, "other grants are not bounded so");
        // Two grants for the same bytes are two grants (each has a read budget of its own).
        let again = Grant::get_range(HostId(3), ShardId::of(b"s"), 100..164, 1000);
        assert_ne!(g.sign(&k).0, again.sign(&k).0);
        assert_eq!(again.readable(), Some(100..164));
        // A range past what the nonce holds is cut, never wrapped.
        let huge = Grant::get_range(HostId(3), ShardId::of(b"s"), 10..u64::MAX, 1000);
        assert_eq!(huge.readable(), Some(10..u64::from(u32::MAX)));
        let refused = g.sign(&k).check(&k.verifying_key(), HostId(3), &ShardId::of(b"s"), Op::Put, 999);
        assert_eq!(refused, Err(GrantError::WrongOp { granted: Op::GetRange, wanted: Op::Put }));
    }

    #[test]
    fn a_valid_grant_passes() {
        let k = key(1);
        let g = grant().sign(&k);
        assert_eq!(g.check(&k.verifying_key(), HostId(3), &ShardId::of(b"s"), Op::Put, 999), Ok(grant()));
    }

    #[test]
    fn every_mismatch_is_refused() {
        let k = key(1);
        let vk = k.verifying_key();
        let g = grant().sign(&k);
        let s = ShardId::of(b"s");
        assert_eq!(g.check(&key(2).verifying_key(), HostId(3), &s, Op::Put, 0), Err(GrantError::BadSignature));
        assert_eq!(g.check(&vk, HostId(4), &s, Op::Put, 0), Err(GrantError::WrongHost(HostId(3))));
        assert_eq!(g.check(&vk, HostId(3), &ShardId::of(b"t"), Op::Put, 0), Err(GrantError::WrongShard));
        assert!(matches!(g.check(&vk, HostId(3), &s, Op::Delete, 0), Err(GrantError::WrongOp { .. })));
        assert_eq!(g.check(&vk, HostId(3), &s, Op::Put, 1001), Err(GrantError::Expired));
    }

    #[test]
    fn a_catalog_backup_grant_names_its_backup_and_shard_and_is_no_put() {
        let k = key(1);
        let vk = k.verifying_key();
        let (a, b, c) = (catalog_shard(7, 0), catalog_shard(7, 1), catalog_shard(8, 0));
        assert!(a != b && a != c && b != c);
        let g = Grant { shard: a, op: Op::CatalogPut, ..grant() }.sign(&k);
        assert_eq!(g.check(&vk, HostId(3), &a, Op::CatalogPut, 0).map(|g| g.op), Ok(Op::CatalogPut));
        assert!(matches!(g.check(&vk, HostId(3), &a, Op::Put, 0), Err(GrantError::WrongOp { .. })));
        assert_eq!(g.check(&vk, HostId(3), &b, Op::CatalogPut, 0), Err(GrantError::WrongShard));
    }

    #[test]
    fn a_conditional_delete_carries_its_put_grant() {
        let k = key(1);
        let put = [7u8; 32];
        let g = Grant::delete_if_written_by(HostId(3), ShardId::of(b"s"), &put, 1000);
        let opened = g.sign(&k).check(&k.verifying_key(), HostId(3), &ShardId::of(b"s"), Op::DeleteIf, 999);
        assert_eq!(opened.map(|g| g.written_by()), Ok(Some([7u8; 16])));
        assert_eq!(grant().written_by(), None);
    }

    #[test]
    fn tampering_and_garbage_are_refused() {
        let k = key(1);
        let vk = k.verifying_key();
        let g = grant().sign(&k);
        let mut raw = URL_SAFE_NO_PAD.decode(&g.0).expect("b64");
        raw[50] ^= 1; // raise max_size
        assert_eq!(SignedGrant(URL_SAFE_NO_PAD.encode(&raw)).open(&vk), Err(GrantError::BadSignature));
        for bad in ["", "!!", "AAAA", &"A".repeat(10_000)] {
            assert_eq!(SignedGrant(bad.into()).open(&vk), Err(GrantError::Malformed));
        }
    }
}
