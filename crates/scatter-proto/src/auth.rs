//! Request credentials: one-request tokens a client signs with its device key.
//!
//! Each device registers an Ed25519 public key when it redeems its invite; the coordinator
//! stores only that public key, so a stolen catalog lets nobody act as a user. Every request
//! carries `Authorization: Scatter <credential>`, a token the client signs itself (no round
//! trip) for that request alone. Encoding (big-endian integers), then base64url without
//! padding (176 characters):
//!
//! ```text
//! "SAU2" | device u64 | expires (unix s) u64 | nonce [16] | body BLAKE3 [32] | Ed25519 signature [64]
//! ```
//!
//! The signature covers
//!
//! ```text
//! "SAU2" | grid [32] | device | expires | nonce | body hash | method length u8 | method
//!        | target length u32 | target
//! ```
//!
//! where `grid` is the CA fingerprint of the grid (zeros on an `--insecure` grid), `method` the
//! HTTP method and `target` the path with its query, exactly as sent (`/v1/objects?prefix=a`).
//! A credential is therefore good for one grid, one method, one path and query, and one body;
//! the coordinator checks the signature from the headers alone, before it reads the body, and
//! compares the body's hash once it has read it (within the route's size limit). It remembers
//! every credential it accepted until the credential expires ([`ReplayCache`]), so each is
//! accepted once. A credential is refused once expired, and when it claims to live longer than
//! [`MAX_LIFETIME`] (a clock far ahead, or a token minted to last).
//!
//! Version 1 (`"SAU1"`, bound to nothing but the user and the expiry) is refused with
//! [`AuthError::OldFormat`].

use std::collections::{BinaryHeap, HashSet};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use scatter_core::DeviceId;

const MAGIC: &[u8; 4] = b"SAU2";
const OLD_MAGICS: [&[u8; 4]; 1] = [b"SAU1"];
const NONCE_LEN: usize = 16;
const BODY_LEN: usize = 4 + 8 + 8 + NONCE_LEN + 32;
const LEN: usize = BODY_LEN + 64;
/// Characters of a credential in base64url without padding.
const TEXT_LEN: usize = (LEN * 8).div_ceil(6);

/// The longest a credential may be valid for, counted from the coordinator's clock.
pub const MAX_LIFETIME: u64 = 300;

/// How long the client makes its credentials valid: they are used at once, so this only
/// covers clock differences and a slow network.
pub const LIFETIME: u64 = 120;

/// The longest request target (path with query) a credential can be made for.
pub const MAX_TARGET: usize = 16 << 10;

/// Why a credential was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Not a credential at all.
    #[error("the request's credential is malformed; run a current scatter client")]
    Malformed,
    /// A credential of an earlier version of the format.
    #[error(
        "the request's credential is from an older scatter client; upgrade the client to the coordinator's version"
    )]
    OldFormat,
    /// The signature does not verify with the user's device key for this request.
    #[error("the request's credential is not signed by this user's device key for this request; run `scatter init` again if this persists")]
    BadSignature,
    /// Past its expiry.
    #[error("the request's credential has expired; check this machine's clock")]
    Expired,
    /// Valid for longer than allowed.
    #[error("the request's credential is valid for too long; check this machine's clock")]
    TooLong,
    /// The body is not the one the credential was made for.
    #[error("the request's body is not the one its credential was signed for")]
    BodyMismatch,
    /// Accepted before.
    #[error("the request's credential has already been used; every request needs a new one")]
    Replayed,
    /// The replay cache is full of live credentials.
    #[error("the coordinator is handling too many requests to remember them all; try again in a minute")]
    Busy,
    /// The device was revoked by its user.
    #[error("this device was revoked; if that was a mistake, register it again: `scatter init` with a device invite or the recovery code, in a new SCATTER_CONFIG folder")]
    Revoked,
}

/// What a credential asserts: "I am this device, until then, for this one request".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credential {
    /// The device that signs (a device registered before users had several has its user's
    /// id; the coordinator finds its account).
    pub device: DeviceId,
    /// Unix seconds after which it is refused.
    pub expires: u64,
    /// Random: makes every credential distinct, and keys the replay cache.
    pub nonce: [u8; NONCE_LEN],
    /// BLAKE3 of the request body (of no bytes for a request without one).
    pub body_hash: [u8; 32],
}

/// The request a credential is for: the HTTP method and the target (path with query).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path with its query, as sent: `/v1/objects?prefix=a`.
    pub target: &'a str,
}

fn signed_bytes(grid: &[u8; 32], c: &Credential, req: Request<'_>) -> Result<Vec<u8>, AuthError> {
    let method = u8::try_from(req.method.len()).map_err(|_| AuthError::Malformed)?;
    if req.target.len() > MAX_TARGET {
        return Err(AuthError::Malformed);
    }
    let mut m = Vec::with_capacity(4 + 32 + BODY_LEN + 5 + req.method.len() + req.target.len());
    m.extend_from_slice(MAGIC);
    m.extend_from_slice(grid);
    m.extend_from_slice(&c.device.0.to_be_bytes());
    m.extend_from_slice(&c.expires.to_be_bytes());
    m.extend_from_slice(&c.nonce);
    m.extend_from_slice(&c.body_hash);
    m.push(method);
    m.extend_from_slice(req.method.as_bytes());
    m.extend_from_slice(&(req.target.len() as u32).to_be_bytes());
    m.extend_from_slice(req.target.as_bytes());
    Ok(m)
}

impl Credential {
    /// A new credential for a request with `body`, valid until `expires`, with a random nonce.
    pub fn new(device: DeviceId, expires: u64, body: &[u8]) -> Self {
        let mut nonce = [0u8; NONCE_LEN];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
        Self { device, expires, nonce, body_hash: *blake3::hash(body).as_bytes() }
    }

    /// Signs the credential for `req` on `grid` with the device key.
    pub fn sign(&self, key: &SigningKey, grid: &[u8; 32], req: Request<'_>) -> Result<String, AuthError> {
        let sig = key.sign(&signed_bytes(grid, self, req)?);
        let mut b = Vec::with_capacity(LEN);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&self.device.0.to_be_bytes());
        b.extend_from_slice(&self.expires.to_be_bytes());
        b.extend_from_slice(&self.nonce);
        b.extend_from_slice(&self.body_hash);
        b.extend_from_slice(&sig.to_bytes());
        Ok(URL_SAFE_NO_PAD.encode(b))
    }

    /// Reads the claims of a credential without checking it: the coordinator needs the device
    /// to find the key to [`verify`](Self::verify) with.
    pub fn peek(text: &str) -> Result<Self, AuthError> {
        Ok(Self::decode(text)?.0)
    }

    fn decode(text: &str) -> Result<(Self, Signature), AuthError> {
        let text = text.trim();
        if text.len() > 2 * TEXT_LEN {
            return Err(AuthError::Malformed);
        }
        let b = URL_SAFE_NO_PAD.decode(text).map_err(|_| AuthError::Malformed)?;
        if b.len() >= 4 && OLD_MAGICS.iter().any(|m| b[..4] == m[..]) {
            return Err(AuthError::OldFormat);
        }
        if b.len() != LEN || &b[..4] != MAGIC {
            return Err(AuthError::Malformed);
        }
        let u64_at = |i: usize| {
            let mut v = [0u8; 8];
            v.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(v)
        };
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&b[20..20 + NONCE_LEN]);
        let mut body_hash = [0u8; 32];
        body_hash.copy_from_slice(&b[20 + NONCE_LEN..BODY_LEN]);
        let mut sig = [0u8; 64];
        sig.copy_from_slice(&b[BODY_LEN..]);
        let c = Self { device: DeviceId(u64_at(4)), expires: u64_at(12), nonce, body_hash };
        Ok((c, Signature::from_bytes(&sig)))
    }

    /// Checks a credential against the user's device key, the grid, the request and the time
    /// `now`. The body is checked apart, once read: [`check_body`](Self::check_body).
    pub fn verify(
        text: &str,
        key: &VerifyingKey,
        grid: &[u8; 32],
        req: Request<'_>,
        now: u64,
    ) -> Result<Self, AuthError> {
        let (c, sig) = Self::decode(text)?;
        key.verify(&signed_bytes(grid, &c, req)?, &sig).map_err(|_| AuthError::BadSignature)?;
        if c.expires <= now {
            return Err(AuthError::Expired);
        }
        if c.expires > now.saturating_add(MAX_LIFETIME) {
            return Err(AuthError::TooLong);
        }
        Ok(c)
    }

    /// Checks that `body` is the one the credential was signed for.
    pub fn check_body(&self, body: &[u8]) -> Result<(), AuthError> {
        let actual = blake3::hash(body);
        // blake3::Hash compares in constant time.
        if actual == blake3::Hash::from_bytes(self.body_hash) {
            Ok(())
        } else {
            Err(AuthError::BodyMismatch)
        }
    }
}

/// The credentials accepted and not yet expired, so that each is accepted once.
///
/// Keyed by device and nonce (the nonce alone is chosen by the signer; a credential's signature
/// covers both). Bounded: beyond `capacity` live entries, new credentials are refused with
/// [`AuthError::Busy`] until old ones expire, rather than forgetting one that could then be
/// replayed. An entry costs about 80 bytes.
#[derive(Debug)]
pub struct ReplayCache {
    live: HashSet<(u64, [u8; NONCE_LEN])>,
    by_expiry: BinaryHeap<std::cmp::Reverse<(u64, u64, [u8; NONCE_LEN])>>,
    capacity: usize,
}

impl ReplayCache {
    /// An empty cache holding at most `capacity` live credentials.
    pub fn new(capacity: usize) -> Self {
        Self { live: HashSet::new(), by_expiry: BinaryHeap::new(), capacity }
    }

    /// Records a verified credential; refuses one seen before. Forgets credentials expired at
    /// `now` first (they are refused by their expiry from then on).
    pub fn admit(&mut self, c: &Credential, now: u64) -> Result<(), AuthError> {
        while let Some(std::cmp::Reverse((expires, device, nonce))) = self.by_expiry.peek().copied() {
            if expires > now {
                break;
            }
            self.by_expiry.pop();
            self.live.remove(&(device, nonce));
        }
        let key = (c.device.0, c.nonce);
        if self.live.contains(&key) {
            return Err(AuthError::Replayed);
        }
        if self.live.len() >= self.capacity {
            return Err(AuthError::Busy);
        }
        self.live.insert(key);
        self.by_expiry.push(std::cmp::Reverse((c.expires, c.device.0, c.nonce)));
        Ok(())
    }

    /// Live credentials remembered.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether no credential is remembered.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRID: [u8; 32] = [9; 32];
    const REQ: Request<'static> = Request { method: "POST", target: "/v1/packs/commit" };

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn credential(expires: u64, body: &[u8]) -> Credential {
        Credential::new(DeviceId(7), expires, body)
    }

    #[test]
    fn a_signed_credential_verifies_for_its_request_within_its_lifetime() {
        let c = credential(1_000 + LIFETIME, b"{}");
        let text = c.sign(&key(1), &GRID, REQ).expect("sign");
        assert_eq!(text.len(), TEXT_LEN);
        assert_eq!(Credential::peek(&text), Ok(c));
        let v = Credential::verify(&text, &key(1).verifying_key(), &GRID, REQ, 1_000).expect("verify");
        assert_eq!(v, c);
        assert_eq!(v.check_body(b"{}"), Ok(()));
        assert_eq!(v.check_body(b"{ }"), Err(AuthError::BodyMismatch));
        assert_ne!(credential(5, b"").nonce, credential(5, b"").nonce, "nonces repeat");
    }

    #[test]
    fn refuses_other_keys_grids_requests_times_and_tampering() {
        let c = credential(1_300, b"");
        let text = c.sign(&key(1), &GRID, REQ).expect("sign");
        let vk = key(1).verifying_key();
        let verify = |req: Request<'_>, grid: &[u8; 32], now| Credential::verify(&text, &vk, grid, req, now);
        assert_eq!(Credential::verify(&text, &key(2).verifying_key(), &GRID, REQ, 1_000), Err(AuthError::BadSignature));
        assert_eq!(verify(REQ, &[0; 32], 1_000), Err(AuthError::BadSignature));
        for other in [
            Request { method: "GET", target: REQ.target },
            Request { method: "POST", target: "/v1/admin/users" },
            Request { method: "POST", target: "/v1/packs/commit?x" },
            Request { method: "POST", target: "/v1/packs/commit/" },
            Request { method: "POSTPOST", target: "" },
        ] {
            assert_eq!(verify(other, &GRID, 1_000), Err(AuthError::BadSignature), "{other:?}");
        }
        assert_eq!(verify(REQ, &GRID, 1_300), Err(AuthError::Expired));
        assert_eq!(verify(REQ, &GRID, 1_300 - MAX_LIFETIME - 1), Err(AuthError::TooLong));
        // Every bit of the encoding matters.
        let raw = URL_SAFE_NO_PAD.decode(&text).expect("b64");
        for i in 0..raw.len() * 8 {
            let mut t = raw.clone();
            t[i / 8] ^= 1 << (i % 8);
            let r = Credential::verify(&URL_SAFE_NO_PAD.encode(&t), &vk, &GRID, REQ, 1_000);
            assert!(r.is_err(), "flipped bit {i} accepted");
        }
    }

    #[test]
    fn malformed_and_old_credentials_are_refused() {
        let text = credential(5, b"").sign(&key(1), &GRID, REQ).expect("sign");
        for bad in ["", "!!!", &text[..text.len() - 2], &format!("{text}AA"), &"A".repeat(10_000)] {
            assert_eq!(Credential::peek(bad), Err(AuthError::Malformed), "{bad:.20}");
        }
        // A version 1 credential: "SAU1" | user | expires | signature.
        let mut v1 = b"SAU1".to_vec();
        v1.extend_from_slice(&[0; 8 + 8 + 64]);
        assert_eq!(Credential::peek(&URL_SAFE_NO_PAD.encode(v1)), Err(AuthError::OldFormat));
        // Requests no credential can be made for.
        let long = "x".repeat(MAX_TARGET + 1);
        assert!(credential(5, b"").sign(&key(1), &GRID, Request { method: "GET", target: &long }).is_err());
        assert!(credential(5, b"").sign(&key(1), &GRID, Request { method: &"G".repeat(256), target: "/" }).is_err());
    }

    #[test]
    fn the_replay_cache_accepts_each_credential_once_until_it_expires() {
        let mut cache = ReplayCache::new(3);
        let a = credential(100, b"");
        assert_eq!(cache.admit(&a, 50), Ok(()));
        assert_eq!(cache.admit(&a, 50), Err(AuthError::Replayed));
        assert_eq!(cache.admit(&a, 99), Err(AuthError::Replayed));
        // Another device's credential with the same nonce is another credential.
        let other = Credential { device: DeviceId(8), ..a };
        assert_eq!(cache.admit(&other, 50), Ok(()));
        // Full of live credentials: refuse rather than forget one.
        assert_eq!(cache.admit(&credential(200, b""), 50), Ok(()));
        assert_eq!(cache.admit(&credential(200, b""), 50), Err(AuthError::Busy));
        assert_eq!(cache.len(), 3);
        // Expired ones are forgotten (the expiry check refuses them from then on).
        assert_eq!(cache.admit(&credential(300, b""), 100), Ok(()));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.admit(&credential(300, b""), 200), Ok(()));
        assert_eq!(cache.len(), 2);
    }
}
