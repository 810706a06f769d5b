//! Request credentials: short-lived tokens a client signs with its device key.
//!
//! Each device registers an Ed25519 public key when it redeems its invite; the coordinator
//! stores only that public key, so a stolen catalog lets nobody act as a user. Every request
//! carries `Authorization: Scatter <credential>`, a token the client signs itself (no round
//! trip) and reuses for a few minutes. Encoding (big-endian integers), then base64url:
//!
//! ```text
//! "SAU1" | user u64 | expires (unix s) u64 | Ed25519 signature [64]
//! ```
//!
//! The signature covers `"SAU1" | grid [32] | user | expires`, where `grid` is the CA
//! fingerprint of the grid (zeros on an `--insecure` grid): a credential is good for one grid
//! only. A credential is refused once expired, and when it claims to live longer than
//! [`MAX_LIFETIME`] (a clock far ahead, or a token minted to last).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use scatter_core::UserId;

const MAGIC: &[u8; 4] = b"SAU1";
const BODY_LEN: usize = 4 + 8 + 8;
const LEN: usize = BODY_LEN + 64;

/// The longest a credential may be valid for, counted from the coordinator's clock.
pub const MAX_LIFETIME: u64 = 600;

/// How long the client makes its credentials valid.
pub const LIFETIME: u64 = 300;

/// Why a credential was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Not a credential at all.
    #[error("the request's credential is malformed; run a current scatter client")]
    Malformed,
    /// The signature does not verify with the user's device key.
    #[error("the request's credential is not signed by this user's device key; run `scatter init` again")]
    BadSignature,
    /// Past its expiry.
    #[error("the request's credential has expired; check this machine's clock")]
    Expired,
    /// Valid for longer than allowed.
    #[error("the request's credential is valid for too long; check this machine's clock")]
    TooLong,
}

/// What a credential asserts: "I am this user until then".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credential {
    /// The user (the row registered by this device, not the owner it may work for).
    pub user: UserId,
    /// Unix seconds after which it is refused.
    pub expires: u64,
}

fn signed_bytes(grid: &[u8; 32], user: UserId, expires: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(4 + 32 + 16);
    m.extend_from_slice(MAGIC);
    m.extend_from_slice(grid);
    m.extend_from_slice(&user.0.to_be_bytes());
    m.extend_from_slice(&expires.to_be_bytes());
    m
}

impl Credential {
    /// Signs the credential for `grid` with the device key.
    pub fn sign(&self, key: &SigningKey, grid: &[u8; 32]) -> String {
        let sig = key.sign(&signed_bytes(grid, self.user, self.expires));
        let mut b = Vec::with_capacity(LEN);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&self.user.0.to_be_bytes());
        b.extend_from_slice(&self.expires.to_be_bytes());
        b.extend_from_slice(&sig.to_bytes());
        URL_SAFE_NO_PAD.encode(b)
    }

    /// Reads the claims of a credential without checking it: the coordinator needs the user
    /// to find the key to [`verify`](Self::verify) with.
    pub fn peek(text: &str) -> Result<Self, AuthError> {
        Ok(Self::decode(text)?.0)
    }

    fn decode(text: &str) -> Result<(Self, Signature), AuthError> {
        if text.len() > 2 * LEN {
            return Err(AuthError::Malformed);
        }
        let b = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| AuthError::Malformed)?;
        if b.len() != LEN || &b[..4] != MAGIC {
            return Err(AuthError::Malformed);
        }
        let u64_at = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let sig = Signature::from_bytes(&b[BODY_LEN..].try_into().expect("64 bytes"));
        Ok((Self { user: UserId(u64_at(4)), expires: u64_at(12) }, sig))
    }

    /// Checks a credential against the user's device key, the grid and the time `now`.
    pub fn verify(text: &str, key: &VerifyingKey, grid: &[u8; 32], now: u64) -> Result<Self, AuthError> {
        let (c, sig) = Self::decode(text)?;
        key.verify(&signed_bytes(grid, c.user, c.expires), &sig).map_err(|_| AuthError::BadSignature)?;
        if c.expires <= now {
            return Err(AuthError::Expired);
        }
        if c.expires > now + MAX_LIFETIME {
            return Err(AuthError::TooLong);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRID: [u8; 32] = [9; 32];

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn a_signed_credential_verifies_within_its_lifetime() {
        let c = Credential { user: UserId(7), expires: 1_000 + LIFETIME };
        let text = c.sign(&key(1), &GRID);
        assert_eq!(Credential::peek(&text), Ok(c));
        assert_eq!(Credential::verify(&text, &key(1).verifying_key(), &GRID, 1_000), Ok(c));
    }

    #[test]
    fn refuses_other_keys_grids_times_and_tampering() {
        let c = Credential { user: UserId(7), expires: 1_300 };
        let text = c.sign(&key(1), &GRID);
        let vk = key(1).verifying_key();
        assert_eq!(Credential::verify(&text, &key(2).verifying_key(), &GRID, 1_000), Err(AuthError::BadSignature));
        assert_eq!(Credential::verify(&text, &vk, &[0; 32], 1_000), Err(AuthError::BadSignature));
        assert_eq!(Credential::verify(&text, &vk, &GRID, 1_300), Err(AuthError::Expired));
        assert_eq!(Credential::verify(&text, &vk, &GRID, 1_300 - MAX_LIFETIME - 1), Err(AuthError::TooLong));
        // Every bit of the encoding matters.
        let raw = URL_SAFE_NO_PAD.decode(&text).expect("b64");
        for i in 0..raw.len() * 8 {
            let mut t = raw.clone();
            t[i / 8] ^= 1 << (i % 8);
            let r = Credential::verify(&URL_SAFE_NO_PAD.encode(&t), &vk, &GRID, 1_000);
            assert!(r.is_err(), "flipped bit {i} accepted");
        }
    }

    #[test]
    fn malformed_credentials_are_refused() {
        let text = Credential { user: UserId(1), expires: 5 }.sign(&key(1), &GRID);
        for bad in ["", "!!!", &text[..text.len() - 2], &format!("{text}AA"), &"A".repeat(10_000)] {
            assert_eq!(Credential::peek(bad), Err(AuthError::Malformed), "{bad:.20}");
        }
    }
}
