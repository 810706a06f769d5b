//! Recovery codes: how a user who lost every device gets their keys back with the passphrase.
//!
//! A recovery code is 32 random bytes, handed to the user once as a token (`sct_<hex>` and the
//! grid CA's fingerprint). BLAKE3's KDF derives two keys from it, under separate contexts:
//!
//! - an Ed25519 key whose public half (the *verifier*) is all the coordinator keeps to check
//!   the code: a new device proves it holds the code by signing a [`claim`], so the
//!   coordinator never learns the code, not even when it is used;
//! - an age X25519 identity whose public half (the *recipient*) the user's key file (itself
//!   encrypted under the passphrase) is encrypted to: the *escrow* the coordinator keeps.
//!
//! So the coordinator's copy opens only with the code *and* the passphrase: whoever holds the
//! catalog cannot try passphrases offline against it. Devices that do not hold the code (it is
//! printed, not stored) re-seal the escrow after `key passwd` to the recipient the coordinator
//! hands back, after checking its [`binding`]: a MAC under a key derived from the user's write
//! root, which the coordinator does not have, so it cannot substitute a recipient of its own.
//!
//! A new code or a re-sealed key file is also signed with the user's *owner key*, an Ed25519
//! key derived from the write root whose public half the coordinator learns with the account's
//! first code and checks every later change against ([`change`]), and every revocation of a
//! device ([`revocation`]): a device's signing key alone (a taken laptop, without the
//! passphrase) can neither void the code, nor spoil the kept key file it opens, nor revoke the
//! user's other devices.

use std::str::FromStr;

use bech32::{ToBase32, Variant};
use ed25519_dalek::Signer;
use rand::RngCore;
use zeroize::Zeroizing;

use crate::keys::{KeyError, WriteKeys};

const PROOF_CONTEXT: &str = "scatter 2026-11 recovery proof ed25519 v1";
const ESCROW_CONTEXT: &str = "scatter 2026-11 recovery escrow x25519 v1";
const BINDING_CONTEXT: &str = "scatter 2026-11 recovery binding v1";
const OWNER_CONTEXT: &str = "scatter 2026-11 recovery owner ed25519 v1";
const CLAIM_MAGIC: &[u8; 4] = b"SRC1";
const CHANGE_MAGIC: &[u8; 4] = b"SRO1";
const REVOKE_MAGIC: &[u8; 4] = b"SRR1";
/// The most bytes a sealed key file may have (a key file is under 1 KiB).
pub const MAX_ESCROW: usize = 8 << 10;

/// A recovery code's secret and the keys derived from it.
pub struct RecoveryCode {
    secret: Zeroizing<[u8; 32]>,
}

impl RecoveryCode {
    /// A new random code.
    pub fn generate() -> Self {
        let mut secret = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut *secret);
        Self { secret }
    }

    /// The code with this secret (from the token the user kept).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self { secret: Zeroizing::new(secret) }
    }

    /// The secret, to print as a token.
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    fn proof_key(&self) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&blake3::derive_key(PROOF_CONTEXT, &*self.secret))
    }

    fn identity(&self) -> age::x25519::Identity {
        let bytes = Zeroizing::new(blake3::derive_key(ESCROW_CONTEXT, &*self.secret));
        // age builds identities only from their Bech32 text.
        let text = Zeroizing::new(
            bech32::encode("age-secret-key-", bytes.to_base32(), Variant::Bech32)
                .expect("the age HRP is valid Bech32")
                .to_uppercase(),
        );
        age::x25519::Identity::from_str(&text).expect("32 bytes in Bech32 are an age identity")
    }

    /// What the coordinator keeps to check the code: the proof key's public half.
    pub fn verifier(&self) -> [u8; 32] {
        self.proof_key().verifying_key().to_bytes()
    }

    /// The age recipient key files are sealed to for this code (`age1…`).
    pub fn recipient(&self) -> String {
        self.identity().to_public().to_string()
    }

    /// Signs a [`claim`] made with this code.
    pub fn sign(&self, claim: &[u8]) -> [u8; 64] {
        self.proof_key().sign(claim).to_bytes()
    }

    /// Opens an escrow made by [`seal`] for this code: the key file, still under the
    /// passphrase.
    pub fn open(&self, escrow: &[u8]) -> Result<Vec<u8>, KeyError> {
        age::decrypt(&self.identity(), escrow)
            .map_err(|_| KeyError::Corrupt("the kept key file does not open with this recovery code".into()))
    }
}

impl std::fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.write_str("RecoveryCode(..)")
    }
}

/// Seals a key file to a code's recipient (`age1…`), for the coordinator to keep.
pub fn seal(key_file: &[u8], recipient: &str) -> Result<Vec<u8>, KeyError> {
    let recipient = age::x25519::Recipient::from_str(recipient)
        .map_err(|e| KeyError::Corrupt(format!("the recovery recipient is not an age key ({e})")))?;
    age::encrypt(&recipient, key_file).map_err(|e| KeyError::Corrupt(e.to_string()))
}

/// What a new device signs with the code: the grid (its CA fingerprint, zeros without TLS),
/// the device key it registers and the time, so a claim works on one grid, for one device,
/// for a short while.
pub fn claim(grid: &[u8; 32], device_key: &[u8; 32], time: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(4 + 32 + 32 + 8);
    m.extend_from_slice(CLAIM_MAGIC);
    m.extend_from_slice(grid);
    m.extend_from_slice(device_key);
    m.extend_from_slice(&time.to_be_bytes());
    m
}

/// Whether `signature` over `claim` was made with the code whose verifier is `verifier`.
pub fn verify(verifier: &[u8; 32], claim: &[u8], signature: &[u8; 64]) -> bool {
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(verifier) else { return false };
    key.verify_strict(claim, &ed25519_dalek::Signature::from_bytes(signature)).is_ok()
}

/// The MAC that binds a code's verifier and recipient to the user: only holders of the
/// user's keys (write-only ones included) can make or check it.
pub fn binding(keys: &WriteKeys, verifier: &[u8; 32], recipient: &str) -> [u8; 32] {
    let key = Zeroizing::new(blake3::derive_key(BINDING_CONTEXT, keys.root()));
    let mut h = blake3::Hasher::new_keyed(&key);
    h.update(verifier);
    h.update(recipient.as_bytes());
    *h.finalize().as_bytes()
}

fn owner_key(keys: &WriteKeys) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&blake3::derive_key(OWNER_CONTEXT, keys.root()))
}

/// The user's owner key's public half: what the coordinator checks changes of the recovery
/// code against. Only holders of the user's keys (write-only ones included) can sign for it.
pub fn owner(keys: &WriteKeys) -> [u8; 32] {
    owner_key(keys).verifying_key().to_bytes()
}

/// What the owner key signs to set a code or re-seal the key file kept for it: the grid (its CA
/// fingerprint, zeros without TLS), the user, the code's verifier and recipient, and the
/// escrow's hash.
pub fn change(grid: &[u8; 32], user: u64, verifier: &[u8; 32], recipient: &str, escrow: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(4 + 32 + 8 + 32 + 32 + 32);
    m.extend_from_slice(CHANGE_MAGIC);
    m.extend_from_slice(grid);
    m.extend_from_slice(&user.to_be_bytes());
    m.extend_from_slice(verifier);
    // Hashed, so the message has a fixed layout whatever the recipient's length.
    m.extend_from_slice(blake3::hash(recipient.as_bytes()).as_bytes());
    m.extend_from_slice(blake3::hash(escrow).as_bytes());
    m
}

/// What the owner key signs to revoke one of the user's devices: the grid, the user and the
/// device. Revoking is final, so a replay does nothing more.
pub fn revocation(grid: &[u8; 32], user: u64, device: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(4 + 32 + 8 + 8);
    m.extend_from_slice(REVOKE_MAGIC);
    m.extend_from_slice(grid);
    m.extend_from_slice(&user.to_be_bytes());
    m.extend_from_slice(&device.to_be_bytes());
    m
}

/// Signs a [`change`] or a [`revocation`] with the owner key of `keys`.
pub fn sign_change(keys: &WriteKeys, change: &[u8]) -> [u8; 64] {
    owner_key(keys).sign(change).to_bytes()
}

/// Checks a [`binding`] in constant time.
pub fn binding_holds(keys: &WriteKeys, verifier: &[u8; 32], recipient: &str, mac: &[u8]) -> bool {
    let Ok(mac) = <[u8; 32]>::try_from(mac) else { return false };
    // blake3::Hash compares in constant time.
    blake3::Hash::from(binding(keys, verifier, recipient)) == blake3::Hash::from(mac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::UserKeys;

    #[test]
    fn a_sealed_key_file_opens_with_its_code_only() {
        let code = RecoveryCode::generate();
        let escrow = seal(b"key file", &code.recipient()).expect("seal");
        assert_eq!(code.open(&escrow).expect("opens"), b"key file");
        assert!(RecoveryCode::generate().open(&escrow).is_err());
        assert!(code.open(b"garbage").is_err());
        assert!(seal(b"x", "age1nonsense").is_err());
    }

    #[test]
    fn the_same_secret_derives_the_same_keys() {
        let a = RecoveryCode::generate();
        let b = RecoveryCode::from_secret(*a.secret());
        assert_eq!(a.verifier(), b.verifier());
        assert_eq!(a.recipient(), b.recipient());
        assert_ne!(a.verifier(), RecoveryCode::generate().verifier());
    }

    #[test]
    fn claims_verify_for_their_code_grid_device_and_time_only() {
        let code = RecoveryCode::generate();
        let (grid, device) = ([1u8; 32], [2u8; 32]);
        let c = claim(&grid, &device, 100);
        let sig = code.sign(&c);
        assert!(verify(&code.verifier(), &c, &sig));
        assert!(!verify(&RecoveryCode::generate().verifier(), &c, &sig));
        assert!(!verify(&code.verifier(), &claim(&[0; 32], &device, 100), &sig));
        assert!(!verify(&code.verifier(), &claim(&grid, &[3; 32], 100), &sig));
        assert!(!verify(&code.verifier(), &claim(&grid, &device, 101), &sig));
        let mut bad = sig;
        bad[0] ^= 1;
        assert!(!verify(&code.verifier(), &c, &bad));
    }

    #[test]
    fn changes_verify_for_the_owner_key_and_their_content_only() {
        let keys = UserKeys::generate();
        let code = RecoveryCode::generate();
        let c = change(&[1; 32], 7, &code.verifier(), &code.recipient(), b"escrow");
        let sig = sign_change(keys.write_only().write_keys(), &c);
        let owner = owner(keys.write_keys());
        assert!(verify(&owner, &c, &sig), "write-only keys sign for the owner");
        assert!(!verify(&super::owner(UserKeys::generate().write_keys()), &c, &sig));
        assert!(!verify(&owner, &change(&[1; 32], 7, &code.verifier(), &code.recipient(), b"other"), &sig));
        assert!(!verify(&owner, &change(&[1; 32], 8, &code.verifier(), &code.recipient(), b"escrow"), &sig));
        assert!(!verify(&owner, &change(&[1; 32], 7, &code.verifier(), "age1x", b"escrow"), &sig));
        // The owner key is not the proof key of any code, nor a device key.
        assert_ne!(owner, code.verifier());
    }

    #[test]
    fn bindings_hold_only_for_the_users_keys_and_the_same_recipient() {
        let keys = UserKeys::generate();
        let code = RecoveryCode::generate();
        let mac = binding(keys.write_keys(), &code.verifier(), &code.recipient());
        assert!(binding_holds(keys.write_only().write_keys(), &code.verifier(), &code.recipient(), &mac));
        let other = RecoveryCode::generate();
        assert!(!binding_holds(keys.write_keys(), &code.verifier(), &other.recipient(), &mac));
        assert!(!binding_holds(UserKeys::generate().write_keys(), &code.verifier(), &code.recipient(), &mac));
        assert!(!binding_holds(keys.write_keys(), &code.verifier(), &code.recipient(), &mac[..31]));
    }
}
