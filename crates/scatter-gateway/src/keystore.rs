//! The gateway's S3 access keys for one profile, kept in the profile folder.
//!
//! SigV4 signs with the secret itself, so the gateway must hold secrets in the clear while
//! it runs. On disk they are sealed (AES-SIV, under a key derived from the profile's private
//! key, which only the profile's key file and passphrase open, and which an appender's write
//! keys do not hold) in `gateway-keys`, mode 0600, written atomically. A store sealed the
//! earlier way (under a key derived from the name key, which write keys hold) is sealed
//! again only by the owner's `scatter gateway key` commands: a gateway refuses it, or anyone
//! with an appender's keys and the folder could plant keys it would serve.

use std::path::{Path, PathBuf};

use rand::Rng;
use scatter_core::keys::UserKeys;
use scatter_core::names::NameKey;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The file in the profile folder.
pub const FILE: &str = "gateway-keys";

/// What the store's seal is bound to (never an encrypted object name: those are base64url).
const SEAL_CONTEXT: &str = "scatter gateway key store v1";

/// One S3 access key.
#[derive(Clone, Serialize, Deserialize)]
pub struct AccessKey {
    /// The public half, `SC` and 18 letters or digits: 12 random, then 6 that bind it to its
    /// profile (see [`bound_to`]).
    pub access_key: String,
    /// The secret half: 40 letters and digits.
    pub secret_key: String,
    /// An appender's rights: put (and multipart uploads), nothing else.
    #[serde(default)]
    pub write_only: bool,
    /// Unix time it was made.
    #[serde(default)]
    pub created: u64,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("access_key", &self.access_key)
            .field("write_only", &self.write_only)
            .finish_non_exhaustive()
    }
}

/// Why the key store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file does not open with this profile's keys.
    #[error(
        "{0} does not open with this profile's keys (another profile's, or damaged); remove it and add the keys again"
    )]
    Sealed(PathBuf),
    /// No key has this id.
    #[error("no gateway key is named {0}; `scatter gateway key ls` lists them")]
    NoSuchKey(String),
    /// The file is sealed the earlier way, which the gateway no longer trusts.
    #[error(
        "{0} is sealed the earlier way (under a key an appender also holds); run `scatter gateway key ls` with this profile to seal it again, then replace its keys if a copy of the file may exist"
    )]
    Earlier(PathBuf),
    /// The profile cannot read: its keys cannot seal S3 secrets, and no gateway serves it.
    #[error(
        "this profile is write-only (an appender's): gateway keys belong to a profile that can read; give appenders a write-only gateway key instead"
    )]
    WriteOnly,
}

/// The access keys of one profile.
pub struct KeyStore {
    path: PathBuf,
    seal: NameKey,
    /// The profile's public key, which its new access keys are bound to.
    owner: String,
    keys: Vec<AccessKey>,
}

/// Random letters and digits in an access key, after `SC`.
const RANDOM_PART: usize = 12;
/// Letters and digits that bind an access key to its profile, after the random ones.
const BINDING_PART: usize = 6;
/// The letters and digits of access keys.
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// The binding part of an access key whose `SC` and random part are `head`, for the profile
/// whose public key is `owner`.
fn binding(owner: &str, head: &str) -> String {
    let hash = blake3::Hasher::new_derive_key("scatter gateway access key binding v1")
        .update(owner.as_bytes())
        .update(&[0])
        .update(head.as_bytes())
        .finalize();
    hash.as_bytes()[..BINDING_PART].iter().map(|b| UPPER[*b as usize % UPPER.len()] as char).collect()
}

/// Whether `access_key` was made for the profile whose public key is `owner`. Access keys
/// are public (they travel in every request), so another profile served by the same
/// gateway can name one in its own store; the gateway serves a key named twice only for
/// the profile it is bound to. (Keys made before the binding bind to nobody.)
pub fn bound_to(access_key: &str, owner: &str) -> bool {
    let split = 2 + RANDOM_PART;
    access_key.len() == split + BINDING_PART
        && access_key.is_char_boundary(split)
        && access_key.starts_with("SC")
        && access_key[split..] == binding(owner, &access_key[..split])
}

impl KeyStore {
    /// Opens the store in profile folder `dir` (empty if there is none yet) with `keys`; one
    /// sealed the earlier way is refused ([`KeyStoreError::Earlier`]).
    pub fn open(dir: &Path, keys: &UserKeys) -> Result<Self, KeyStoreError> {
        match Self::open_migrating(dir, keys, false)? {
            (store, false) => Ok(store),
            (store, true) => Err(KeyStoreError::Earlier(store.path)),
        }
    }

    /// Opens the store, sealing one sealed the earlier way again if `migrate`; says whether
    /// it was (for the owner's own commands, which tell them).
    pub fn open_migrating(dir: &Path, keys: &UserKeys, migrate: bool) -> Result<(Self, bool), KeyStoreError> {
        let seal = keys.private_seal().ok_or(KeyStoreError::WriteOnly)?;
        let owner = keys.write_keys().public_key();
        let path = dir.join(FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Self { path, seal, owner, keys: Vec::new() }, false));
            }
            Err(source) => return Err(KeyStoreError::Io { path, source }),
        };
        let open = |seal: &NameKey| {
            let plain = Zeroizing::new(seal.open_attributes(SEAL_CONTEXT, &bytes).ok()?);
            serde_json::from_slice::<Vec<AccessKey>>(&plain).ok()
        };
        if let Some(keys) = open(&seal) {
            return Ok((Self { path, seal, owner, keys }, false));
        }
        let earlier = open(&keys.write_keys().name_key()).ok_or_else(|| KeyStoreError::Sealed(path.clone()))?;
        let store = Self { path, seal, owner, keys: earlier };
        if migrate {
            store.save()?;
        }
        Ok((store, true))
    }

    /// Every key.
    pub fn keys(&self) -> &[AccessKey] {
        &self.keys
    }

    /// Whether `key` is bound to this store's profile (made since keys were bound): one that
    /// is not is served only while no other profile names it.
    pub fn is_bound(&self, key: &AccessKey) -> bool {
        bound_to(&key.access_key, &self.owner)
    }

    /// Makes, stores and returns a new key.
    pub fn add(&mut self, write_only: bool, now: u64) -> Result<AccessKey, KeyStoreError> {
        let head = format!("SC{}", random_text(RANDOM_PART, true));
        let key = AccessKey {
            access_key: format!("{head}{}", binding(&self.owner, &head)),
            secret_key: random_text(40, false),
            write_only,
            created: now,
        };
        self.keys.push(key.clone());
        self.save()?;
        Ok(key)
    }

    /// Removes the key `access_key`.
    pub fn remove(&mut self, access_key: &str) -> Result<(), KeyStoreError> {
        let before = self.keys.len();
        self.keys.retain(|k| k.access_key != access_key);
        if self.keys.len() == before {
            return Err(KeyStoreError::NoSuchKey(access_key.to_owned()));
        }
        self.save()
    }

    fn save(&self) -> Result<(), KeyStoreError> {
        let plain = Zeroizing::new(serde_json::to_vec(&self.keys).unwrap_or_default());
        let sealed = self.seal.seal_attributes(SEAL_CONTEXT, &plain);
        scatter_net::tls::write_private(&self.path, &sealed)
            .map_err(|source| KeyStoreError::Io { path: self.path.clone(), source })
    }
}

fn random_text(len: usize, upper: bool) -> String {
    const MIXED: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let set = if upper { UPPER } else { MIXED };
    let mut rng = rand::rngs::OsRng;
    (0..len).map(|_| set[rng.gen_range(0..set.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sealed_private_and_only_open_with_their_profile() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mine, theirs) = (UserKeys::generate(), UserKeys::generate());
        let mut store = KeyStore::open(dir.path(), &mine).expect("open");
        let a = store.add(false, 1).expect("add");
        let b = store.add(true, 2).expect("add");
        let raw = std::fs::read(dir.path().join(FILE)).expect("file");
        assert!(!String::from_utf8_lossy(&raw).contains(&a.secret_key), "secrets are sealed on disk");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(FILE)).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = KeyStore::open(dir.path(), &mine).expect("reopen");
        let ids: Vec<(&str, bool)> = again.keys().iter().map(|k| (k.access_key.as_str(), k.write_only)).collect();
        assert_eq!(ids, [(a.access_key.as_str(), false), (b.access_key.as_str(), true)]);
        assert!(matches!(KeyStore::open(dir.path(), &theirs), Err(KeyStoreError::Sealed(_))));
        let mut again = again;
        again.remove(&a.access_key).expect("remove");
        assert!(matches!(again.remove(&a.access_key), Err(KeyStoreError::NoSuchKey(_))));
        assert_eq!(KeyStore::open(dir.path(), &mine).expect("reopen").keys().len(), 1);
        assert_ne!(a.secret_key, b.secret_key);
        assert_eq!(a.secret_key.len(), 40);
        // Access keys are bound to the profile they were made for, and to no other.
        assert_eq!(a.access_key.len(), 20);
        assert!(a.access_key.bytes().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
        assert!(bound_to(&a.access_key, &mine.write_keys().public_key()));
        assert!(!bound_to(&a.access_key, &theirs.write_keys().public_key()));
        let mut altered = a.access_key.clone();
        altered.replace_range(5..6, if &altered[5..6] == "A" { "B" } else { "A" });
        assert!(!bound_to(&altered, &mine.write_keys().public_key()), "the binding covers the random part");
        assert!(!bound_to("SCÉ", &mine.write_keys().public_key()));
    }

    #[test]
    fn an_appenders_keys_do_not_open_the_store_and_cannot_make_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mine = UserKeys::generate();
        KeyStore::open(dir.path(), &mine).expect("open").add(false, 1).expect("add");
        let appender = mine.write_only();
        assert!(matches!(KeyStore::open(dir.path(), &appender), Err(KeyStoreError::WriteOnly)));
        // Nor does the name key it holds, which sealed stores before.
        let sealed = std::fs::read(dir.path().join(FILE)).expect("file");
        assert!(appender.write_keys().name_key().open_attributes(SEAL_CONTEXT, &sealed).is_err());
    }

    #[test]
    fn a_store_sealed_the_earlier_way_is_refused_but_by_the_owners_commands_which_seal_it_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mine = UserKeys::generate();
        let key = AccessKey { access_key: "SCOLD".into(), secret_key: "s".repeat(40), write_only: false, created: 1 };
        let plain = serde_json::to_vec(&vec![key]).expect("json");
        let earlier = mine.write_keys().name_key().seal_attributes(SEAL_CONTEXT, &plain);
        std::fs::write(dir.path().join(FILE), &earlier).expect("write");
        // A gateway refuses it: an appender could have planted it.
        assert!(matches!(KeyStore::open(dir.path(), &mine), Err(KeyStoreError::Earlier(_))));
        let (store, migrated) = KeyStore::open_migrating(dir.path(), &mine, true).expect("open an earlier store");
        assert!(migrated);
        assert_eq!(store.keys().len(), 1);
        let now = std::fs::read(dir.path().join(FILE)).expect("file");
        assert!(mine.write_keys().name_key().open_attributes(SEAL_CONTEXT, &now).is_err(), "not sealed again");
        assert_eq!(KeyStore::open(dir.path(), &mine).expect("reopen").keys()[0].access_key, "SCOLD");
    }
}
