//! A user's keys and the files that hold them.
//!
//! The key model follows age: each user has an X25519 identity. Writing needs only the
//! public half plus two symmetric keys (dedup and name keys, both derived with BLAKE3's KDF
//! from one random *write root*); reading also needs the private half. So a source machine
//! can hold a write-only key set: it can add data that deduplicates against earlier data, and
//! it can neither decrypt nor (with the right role at the coordinator) delete anything.
//!
//! Every session draws a random [`DataKey`] and stores it only wrapped to the public key.
//!
//! Key file: an age file encrypted under the user's passphrase (scrypt), whose plaintext is
//! JSON `{"format": "scatter-keys-v1", "identity": "AGE-SECRET-KEY-1…" | null,
//! "recipient": "age1…", "write_root": "<64 hex>"}`.

use std::str::FromStr;

use age::secrecy::{ExposeSecret, SecretString};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::crypto::{DataKey, DedupKey};
use crate::names::NameKey;

const FORMAT: &str = "scatter-keys-v1";
const DEDUP_CONTEXT: &str = "scatter 2026-11 dedup key v1";
const NAME_CONTEXT: &str = "scatter 2026-11 name key v1";
const PRIVATE_SEAL_CONTEXT: &str = "scatter 2026-11 private seal v1";
/// scrypt work factor (log2 N) for new key files: 128 MiB and a few hundred milliseconds.
pub const KEY_FILE_WORK_FACTOR: u8 = 17;
/// The highest work factor a key file may ask for: 8 times ours, 1 GiB. age's own bound is
/// calibrated on the machine's speed at that moment, so on a busy machine it refused the
/// user's own key file ("decryption would take around 32 seconds"): a fixed bound opens
/// every key file Scatter makes, however loaded the machine, and still stops a planted one
/// from asking for more memory and time than that.
pub const MAX_KEY_FILE_WORK_FACTOR: u8 = KEY_FILE_WORK_FACTOR + 3;

/// Why keys could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The passphrase does not open the key file.
    #[error("the passphrase is wrong (it does not decrypt the key file)")]
    WrongPassphrase,
    /// The key file is not a Scatter key file, or is damaged.
    #[error("the key file is damaged or not a Scatter key file: {0}")]
    Corrupt(String),
    /// Reading needs the private key, and this key set is write-only.
    #[error("this key set is write-only: reading data needs the private key, which is kept on another machine")]
    WriteOnly,
    /// A wrapped data key could not be unwrapped with this identity.
    #[error("a data key could not be unwrapped: it was not wrapped to this user's key, or it is damaged")]
    Unwrap,
}

/// What a machine needs to add data: the public key, the dedup key and the name key.
#[derive(Clone)]
pub struct WriteKeys {
    recipient: age::x25519::Recipient,
    root: Zeroizing<[u8; 32]>,
}

impl WriteKeys {
    /// The user's public key, as an age recipient string (`age1…`).
    pub fn public_key(&self) -> String {
        self.recipient.to_string()
    }

    /// The key that makes chunk ids.
    pub fn dedup_key(&self) -> DedupKey {
        DedupKey(blake3::derive_key(DEDUP_CONTEXT, &*self.root))
    }

    /// The key that encrypts object names.
    pub fn name_key(&self) -> NameKey {
        let mut out = [0u8; 64];
        let mut xof = blake3::Hasher::new_derive_key(NAME_CONTEXT);
        xof.update(&*self.root);
        xof.finalize_xof().fill(&mut out);
        let key = NameKey::new(&out);
        out.zeroize();
        key
    }

    /// The write root, for keys derived from it elsewhere in this crate.
    pub(crate) fn root(&self) -> &[u8; 32] {
        &self.root
    }

    /// Wraps a session's data key to the user's public key.
    pub fn wrap(&self, key: &DataKey) -> Vec<u8> {
        age::encrypt(&self.recipient, key.as_bytes()).expect("age encrypts 32 bytes to an x25519 recipient")
    }
}

/// A user's full key set. The identity is absent on a write-only machine.
#[derive(Clone)]
pub struct UserKeys {
    identity: Option<age::x25519::Identity>,
    write: WriteKeys,
}

#[derive(Serialize, Deserialize)]
struct KeyFileBody {
    format: String,
    identity: Option<String>,
    recipient: String,
    write_root: String,
}

impl UserKeys {
    /// Creates a new random key set.
    pub fn generate() -> Self {
        let identity = age::x25519::Identity::generate();
        let mut root = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut *root);
        let write = WriteKeys { recipient: identity.to_public(), root };
        Self { identity: Some(identity), write }
    }

    /// The keys needed to write.
    pub fn write_keys(&self) -> &WriteKeys {
        &self.write
    }

    /// Whether this set can read (holds the private key).
    pub fn can_read(&self) -> bool {
        self.identity.is_some()
    }

    /// A copy of this set without the private key, for a write-only source machine.
    pub fn write_only(&self) -> Self {
        Self { identity: None, write: self.write.clone() }
    }

    /// A key that seals what only this full key set may open on this machine (the S3 gateway's
    /// secrets): derived from the private key, so the write keys an appender holds, from
    /// which names and their attributes' seals derive, cannot open it. None on a write-only
    /// set.
    pub fn private_seal(&self) -> Option<NameKey> {
        let identity = self.identity.as_ref()?;
        let secret = identity.to_string();
        let mut out = [0u8; 64];
        let mut xof = blake3::Hasher::new_derive_key(PRIVATE_SEAL_CONTEXT);
        xof.update(secret.expose_secret().as_bytes());
        xof.finalize_xof().fill(&mut out);
        let key = NameKey::new(&out);
        out.zeroize();
        Some(key)
    }

    /// Unwraps a session's data key; needs the private key.
    pub fn unwrap(&self, wrapped: &[u8]) -> Result<DataKey, KeyError> {
        let identity = self.identity.as_ref().ok_or(KeyError::WriteOnly)?;
        let plain = Zeroizing::new(age::decrypt(identity, wrapped).map_err(|_| KeyError::Unwrap)?);
        let bytes: [u8; 32] = plain.as_slice().try_into().map_err(|_| KeyError::Unwrap)?;
        Ok(DataKey::from_bytes(bytes))
    }

    /// Encrypts the key set under a passphrase, for storing in a key file.
    pub fn to_key_file(&self, passphrase: &str, work_factor: u8) -> Vec<u8> {
        let body = KeyFileBody {
            format: FORMAT.into(),
            identity: self.identity.as_ref().map(|i| i.to_string().expose_secret().to_string()),
            recipient: self.write.public_key(),
            write_root: hex::encode(*self.write.root),
        };
        let json = Zeroizing::new(serde_json::to_vec(&body).expect("key file body serializes"));
        let mut recipient = age::scrypt::Recipient::new(SecretString::from(passphrase.to_string()));
        recipient.set_work_factor(work_factor);
        age::encrypt(&recipient, &json).expect("age encrypts to a passphrase")
    }

    /// Decrypts a key file made by [`UserKeys::to_key_file`].
    pub fn from_key_file(bytes: &[u8], passphrase: &str) -> Result<Self, KeyError> {
        let mut identity = age::scrypt::Identity::new(SecretString::from(passphrase.to_string()));
        identity.set_max_work_factor(MAX_KEY_FILE_WORK_FACTOR);
        let json = Zeroizing::new(age::decrypt(&identity, bytes).map_err(|e| match e {
            age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys => KeyError::WrongPassphrase,
            other => KeyError::Corrupt(other.to_string()),
        })?);
        let body: KeyFileBody = serde_json::from_slice(&json).map_err(|e| KeyError::Corrupt(e.to_string()))?;
        if body.format != FORMAT {
            return Err(KeyError::Corrupt(format!("unknown format {:?}", body.format)));
        }
        let identity = body
            .identity
            .map(|s| age::x25519::Identity::from_str(&s).map_err(|e| KeyError::Corrupt(e.to_string())))
            .transpose()?;
        let recipient =
            age::x25519::Recipient::from_str(&body.recipient).map_err(|e| KeyError::Corrupt(e.to_string()))?;
        if let Some(id) = &identity {
            if id.to_public().to_string() != recipient.to_string() {
                return Err(KeyError::Corrupt("private and public key do not match".into()));
            }
        }
        let mut root = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(&body.write_root, &mut *root).map_err(|e| KeyError::Corrupt(e.to_string()))?;
        Ok(Self { identity, write: WriteKeys { recipient, root } })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A low work factor keeps the tests fast; the format is the same.
    const FAST: u8 = 4;

    #[test]
    fn key_file_round_trips_and_keeps_derived_keys() {
        let keys = UserKeys::generate();
        let file = keys.to_key_file("correct horse", FAST);
        let back = UserKeys::from_key_file(&file, "correct horse").expect("opens");
        assert!(back.can_read());
        assert_eq!(back.write_keys().public_key(), keys.write_keys().public_key());
        assert_eq!(back.write_keys().dedup_key().chunk_id(b"x"), keys.write_keys().dedup_key().chunk_id(b"x"));
        assert_eq!(back.write_keys().name_key().encrypt("a/b"), keys.write_keys().name_key().encrypt("a/b"));
    }

    #[test]
    fn wrong_passphrase_and_garbage_are_told_apart() {
        let file = UserKeys::generate().to_key_file("right", FAST);
        assert!(matches!(UserKeys::from_key_file(&file, "wrong"), Err(KeyError::WrongPassphrase)));
        assert!(matches!(UserKeys::from_key_file(b"not a key file", "x"), Err(KeyError::Corrupt(_))));
    }

    /// A key file asking for more work than any Scatter makes is refused before scrypt runs
    /// (its header is checked before its MAC), whatever the machine's speed.
    #[test]
    fn a_key_file_asking_for_excessive_work_is_refused_at_once() {
        let file = UserKeys::generate().to_key_file("p", FAST);
        let text = String::from_utf8_lossy(&file).into_owned();
        let stanza = text.lines().find(|l| l.starts_with("-> scrypt ")).expect("a scrypt stanza").to_owned();
        // The work factor is the stanza's last field (replacing its text anywhere also hit a
        // salt that began with the same digits: one run in about 30 failed so).
        let (head, _) = stanza.rsplit_once(' ').expect("a work factor");
        let heavier = format!("{head} {}", MAX_KEY_FILE_WORK_FACTOR + 1);
        let forged = text.replace(&stanza, &heavier);
        match UserKeys::from_key_file(forged.as_bytes(), "p") {
            Err(KeyError::Corrupt(why)) => assert!(why.contains("work"), "{why}"),
            other => panic!("a key file asking for 2^{} work: {:?}", MAX_KEY_FILE_WORK_FACTOR + 1, other.err()),
        }
    }

    #[test]
    fn wrapped_data_keys_open_only_with_the_identity() {
        let keys = UserKeys::generate();
        let dk = DataKey::generate();
        let wrapped = keys.write_keys().wrap(&dk);
        assert_eq!(keys.unwrap(&wrapped).expect("unwraps").as_bytes(), dk.as_bytes());
        assert!(matches!(UserKeys::generate().unwrap(&wrapped), Err(KeyError::Unwrap)));
        let wo = keys.write_only();
        assert!(matches!(wo.unwrap(&wrapped), Err(KeyError::WriteOnly)));
        let wo_file = wo.to_key_file("p", FAST);
        let wo_back = UserKeys::from_key_file(&wo_file, "p").expect("opens");
        assert!(!wo_back.can_read());
        assert_eq!(wo_back.write_keys().dedup_key().chunk_id(b"x"), keys.write_keys().dedup_key().chunk_id(b"x"));
    }

    /// Key files and wrapped data keys made by age 0.11 (before the upgrade to 0.12) must
    /// still open: every existing backup depends on both.
    #[test]
    fn key_files_and_wrapped_keys_from_age_0_11_still_open() {
        let fixture = include_str!("../testdata/keys-age-0.11.txt");
        let field = |name: &str| {
            fixture.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' '))).expect("fixture field")
        };
        let file = hex::decode(field("FILE")).expect("hex");
        let keys = UserKeys::from_key_file(&file, "old passphrase").expect("an age 0.11 key file opens");
        assert_eq!(keys.write_keys().public_key(), field("RECIPIENT"));
        assert_eq!(*keys.write_keys().root(), [7u8; 32]);
        let wrapped = hex::decode(field("WRAPPED")).expect("hex");
        assert_eq!(keys.unwrap(&wrapped).expect("an age 0.11 wrapped key opens").as_bytes(), &[0x5a; 32]);
        assert!(matches!(UserKeys::from_key_file(&file, "new passphrase"), Err(KeyError::WrongPassphrase)));
    }

    #[test]
    fn dedup_and_name_keys_are_independent() {
        let keys = UserKeys::generate();
        let other = UserKeys::generate();
        assert_ne!(keys.write_keys().dedup_key().chunk_id(b"x"), other.write_keys().dedup_key().chunk_id(b"x"));
    }
}
