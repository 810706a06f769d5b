//! The user's profile and key file, under `SCATTER_CONFIG` (default `~/.config/scatter`).
//!
//! - `profile.toml`: coordinator URL, user id, API key (mode 0600; like `~/.aws/credentials`);
//! - `keys.age`: the key set, encrypted under the passphrase (see [`scatter_core::keys`]).

use std::path::{Path, PathBuf};

use scatter_core::keys::{UserKeys, KEY_FILE_WORK_FACTOR};
use scatter_core::UserId;
use serde::{Deserialize, Serialize};

use crate::coordinator::Coordinator;
use crate::ClientError;

/// What the client knows about its grid and user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    /// The coordinator's URL.
    pub coordinator: String,
    /// This user's id.
    pub user_id: UserId,
    /// The key this client authenticates with.
    pub api_key: String,
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
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp).map_err(ClientError::io(&tmp))?;
    f.write_all(contents).and_then(|_| f.sync_all()).map_err(ClientError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(ClientError::io(path))
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

    /// A client for this profile's coordinator.
    pub fn coordinator(&self) -> Result<Coordinator, ClientError> {
        Coordinator::new(&self.coordinator, Some(self.api_key.clone()))
    }
}

/// Creates a profile: new keys (or `imported` ones, e.g. another device's, or a write-only
/// set for a backup source), registered with the coordinator, saved under `dir`.
/// Refuses to overwrite an existing key file.
pub async fn init(
    dir: &Path,
    coordinator: &str,
    token: &str,
    passphrase: &str,
    imported: Option<UserKeys>,
) -> Result<Profile, ClientError> {
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
    let coordinator = coordinator.trim_end_matches('/').to_owned();
    let keys = imported.unwrap_or_else(UserKeys::generate);
    let key_file = keys.to_key_file(passphrase, KEY_FILE_WORK_FACTOR);
    let reg = Coordinator::new(&coordinator, None)?.register(token, &keys.write_keys().public_key()).await?;
    write_private(&key_path, &key_file)?;
    let profile = Profile { coordinator, user_id: reg.user_id, api_key: reg.api_key };
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
