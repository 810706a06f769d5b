//! The user's profile and key file, under `SCATTER_CONFIG` (default `~/.config/scatter`).
//!
//! - `profile.toml`: the coordinators' URLs (one as a string, several as an array), grid CA
//!   fingerprint, user id and this device's Ed25519 key, which signs request credentials
//!   (mode 0600, like `~/.ssh/id_ed25519`; it lets this machine act as the user with the
//!   coordinator, but reads no data: that needs the passphrase);
//! - `keys.age`: the key set, encrypted under the passphrase (see [`scatter_core::keys`]).

use std::path::{Path, PathBuf};

use scatter_core::keys::{UserKeys, KEY_FILE_WORK_FACTOR};
use scatter_core::UserId;
use serde::{Deserialize, Serialize};

use crate::coordinator::{Coordinator, Signer};
use crate::ClientError;

/// What the client knows about its grid and user.
#[derive(Clone, Serialize, Deserialize)]
pub struct Profile {
    /// The URLs of the grid's coordinators, in the order to try them. Profiles from before
    /// there could be several hold one URL as a string, which still reads.
    pub coordinator: scatter_net::CoordinatorUrls,
    /// This user's id.
    pub user_id: UserId,
    /// This device's Ed25519 signing key (hex), which signs request credentials.
    pub device_key: String,
    /// The grid CA's fingerprint (hex), from the invite token; absent for a grid run with
    /// `--insecure`.
    #[serde(default)]
    pub ca: Option<String>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the device key.
        f.debug_struct("Profile")
            .field("coordinator", &self.coordinator)
            .field("user_id", &self.user_id)
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

/// The configuration directory: `SCATTER_CONFIG`, else `~/.config/scatter`.
pub fn config_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SCATTER_CONFIG") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".config").join("scatter")
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), ClientError> {
    scatter_net::write_private(path, contents).map_err(ClientError::io(path))
}

impl Profile {
    /// Loads the profile in `dir`.
    pub fn load(dir: &Path) -> Result<Self, ClientError> {
        let path = dir.join("profile.toml");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ClientError::NoProfile(dir.to_owned())),
            Err(e) => return Err(ClientError::io(&path)(e)),
        };
        toml::from_str(&text)
            .map_err(|e| ClientError::Invalid(format!("{} is damaged ({e}); run `scatter init` again", path.display())))
    }

    /// Loads and decrypts the key file in `dir`.
    pub fn load_keys(dir: &Path, passphrase: &str) -> Result<UserKeys, ClientError> {
        let path = dir.join("keys.age");
        let bytes = std::fs::read(&path).map_err(ClientError::io(&path))?;
        Ok(UserKeys::from_key_file(&bytes, passphrase)?)
    }

    /// The grid CA's fingerprint, if the grid uses TLS.
    pub fn fingerprint(&self) -> Result<Option<scatter_net::Fingerprint>, ClientError> {
        self.ca.as_deref().map(str::parse).transpose().map_err(|_| {
            ClientError::Invalid("the CA fingerprint in profile.toml is damaged; run `scatter init` again".into())
        })
    }

    /// A client for this profile's coordinator.
    pub fn coordinator(&self) -> Result<Coordinator, ClientError> {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(&self.device_key, &mut seed).map_err(|_| {
            ClientError::Invalid("the device key in profile.toml is damaged; run `scatter init` again".into())
        })?;
        let ca = self.fingerprint()?;
        let signer = Signer::new(self.user_id, ed25519_dalek::SigningKey::from_bytes(&seed), ca);
        Coordinator::new(&self.coordinator, ca, Some(std::sync::Arc::new(signer)))
    }
}

/// Creates a profile: new keys (or `imported` ones, e.g. another device's, or a write-only
/// set for a backup source), registered with the coordinator, saved under `dir`.
/// Refuses to overwrite an existing key file.
pub async fn init(
    dir: &Path,
    coordinator: &scatter_net::CoordinatorUrls,
    token: &str,
    passphrase: &str,
    imported: Option<UserKeys>,
    insecure: bool,
) -> Result<Profile, ClientError> {
    let token: scatter_net::Token = token.parse().map_err(|e| ClientError::Invalid(format!("{e}")))?;
    let ca = coordinator.check_mode(token.ca(), insecure).map_err(|e| ClientError::Invalid(e.to_string()))?;
    if passphrase.is_empty() {
        return Err(ClientError::Invalid("the passphrase must not be empty".into()));
    }
    let key_path = dir.join("keys.age");
    if key_path.exists() {
        return Err(ClientError::Invalid(format!(
            "{} already exists; use another SCATTER_CONFIG directory, or move it away if you really mean to start over",
            key_path.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(ClientError::io(dir))?;
    let keys = imported.unwrap_or_else(UserKeys::generate);
    let key_file = keys.to_key_file(passphrase, KEY_FILE_WORK_FACTOR);
    let device = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let reg = Coordinator::new(coordinator, ca, None)?
        .register(token.secret(), &keys.write_keys().public_key(), &device.verifying_key())
        .await?;
    write_private(&key_path, &key_file)?;
    let profile = Profile {
        coordinator: coordinator.clone(),
        user_id: reg.user_id,
        device_key: hex::encode(device.to_bytes()),
        ca: ca.map(|fp| fp.to_string()),
    };
    let text = toml::to_string(&profile).map_err(|e| ClientError::Invalid(e.to_string()))?;
    write_private(&dir.join("profile.toml"), text.as_bytes())?;
    Ok(profile)
}

/// Re-encrypts the key file in `dir` under a new passphrase (the data keys do not change, so
/// nothing stored needs re-encrypting).
pub fn change_passphrase(dir: &Path, old: &str, new: &str) -> Result<(), ClientError> {
    if new.is_empty() {
        return Err(ClientError::Invalid("the new passphrase must not be empty".into()));
    }
    let keys = Profile::load_keys(dir, old)?;
    write_private(&dir.join("keys.age"), &keys.to_key_file(new, KEY_FILE_WORK_FACTOR))
}

/// The key set in `dir`, encrypted under a transport passphrase for another machine;
/// `write_only` leaves out the private key (a backup source that must not read).
pub fn export_keys(dir: &Path, passphrase: &str, transport: &str, write_only: bool) -> Result<Vec<u8>, ClientError> {
    if transport.is_empty() {
        return Err(ClientError::Invalid("the export passphrase must not be empty".into()));
    }
    let keys = Profile::load_keys(dir, passphrase)?;
    let keys = if write_only { keys.write_only() } else { keys };
    Ok(keys.to_key_file(transport, KEY_FILE_WORK_FACTOR))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    #[test]
    fn profiles_with_one_url_still_read_and_several_round_trip() {
        let dir = tempfile::tempdir().expect("tmp");
        let old = format!("coordinator = \"https://a:7000\"\nuser_id = 1\ndevice_key = \"{KEY}\"\n");
        std::fs::write(dir.path().join("profile.toml"), &old).expect("write");
        let p = Profile::load(dir.path()).expect("an old profile reads");
        assert_eq!(p.coordinator.as_slice(), ["https://a:7000"]);
        assert_eq!(toml::to_string(&p).expect("toml"), old, "one URL is written as before");

        let p = Profile { coordinator: "https://a:7000,https://b:7000".parse().expect("urls"), ..p };
        let text = toml::to_string(&p).expect("toml");
        assert!(text.contains(r#"coordinator = ["https://a:7000", "https://b:7000"]"#), "{text}");
        std::fs::write(dir.path().join("profile.toml"), &text).expect("write");
        assert_eq!(Profile::load(dir.path()).expect("reads").coordinator, p.coordinator);
    }
}
