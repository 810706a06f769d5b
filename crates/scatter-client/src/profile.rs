//! The user's profile and key file, under `SCATTER_CONFIG` (default `~/.config/scatter`).
//!
//! - `profile.toml`: the coordinators' URLs (one as a string, several as an array), grid CA
//!   fingerprint, user id and this device's Ed25519 key, which signs request credentials
//!   (mode 0600, like `~/.ssh/id_ed25519`; it lets this machine act as the user with the
//!   coordinator, but reads no data: that needs the passphrase);
//! - `keys.age`: the key set, encrypted under the passphrase (see [`scatter_core::keys`]).

use std::path::{Path, PathBuf};

use scatter_core::keys::{UserKeys, KEY_FILE_WORK_FACTOR};
use scatter_core::recovery::{self, RecoveryCode};
use scatter_core::{DeviceId, UserId};
use scatter_proto::api::{RecoveryCodeInfo, RecoveryCodeRequest, Role};
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
    /// This device's id, which its credentials name; absent in profiles from before users
    /// had several devices, whose device has the user's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<DeviceId>,
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
            .field("device_id", &self.device_id)
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
        // It holds the device key, which signs this device's requests: as ssh does with keys,
        // nothing is done with one others can read.
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).map_err(ClientError::io(&path))?.permissions(),
        );
        if mode & 0o077 != 0 {
            return Err(ClientError::Invalid(format!(
                "{} holds this device's key and others may read it (mode {:o}); run `chmod 600 {}`, and if someone may have copied it, `scatter key revoke` this device from another one",
                path.display(),
                mode & 0o777,
                path.display()
            )));
        }
        toml::from_str(&text).map_err(|e| {
            ClientError::Invalid(format!(
                "{} is damaged ({e}); fix it by hand (a coordinator URL starts with https://), or set this machine up again with `scatter init` and the recovery code in a new SCATTER_CONFIG folder",
                path.display()
            ))
        })
    }

    /// Loads and decrypts the key file in `dir`.
    pub fn load_keys(dir: &Path, passphrase: &str) -> Result<UserKeys, ClientError> {
        let path = dir.join("keys.age");
        let bytes = std::fs::read(&path).map_err(ClientError::io(&path))?;
        Ok(crate::stats::time(crate::stats::Stage::Unlock, 0, || UserKeys::from_key_file(&bytes, passphrase))?)
    }

    /// This device's id.
    pub fn device(&self) -> DeviceId {
        self.device_id.unwrap_or(DeviceId(self.user_id.0))
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
        let signer = Signer::new(self.device(), ed25519_dalek::SigningKey::from_bytes(&seed), ca);
        Coordinator::new(&self.coordinator, ca, Some(std::sync::Arc::new(signer)))
    }
}

/// What `init` did.
#[derive(Debug)]
pub struct Initialized {
    /// The profile written.
    pub profile: Profile,
    /// The account's role.
    pub role: Role,
    /// Whether the keys came back from the coordinator with a recovery code.
    pub recovered: bool,
    /// Whether the passphrase opens the key file (false only after a recovery with a
    /// passphrase other than the one the kept key file was sealed with).
    pub keys_open: bool,
    /// What became of the account's recovery code.
    pub code: CodeState,
}

/// An account's recovery code after `init`, `key passwd` or `key recovery-code`.
#[derive(Debug)]
pub enum CodeState {
    /// A new code: printed once, here (the token text).
    New(String),
    /// The code made on another device still holds (and now keeps this device's key file,
    /// where that changed).
    Kept,
    /// The account has none and could not get one here (see the reason).
    None(String),
}

/// This machine's name, for the device list.
fn device_name() -> String {
    gethostname::gethostname().to_string_lossy().chars().filter(|c| !c.is_control()).take(64).collect()
}

/// Checks a device name given with `init --device-name`: what the coordinator takes.
pub fn check_device_name(name: &str) -> Result<(), ClientError> {
    if name.trim().is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ClientError::Invalid(format!(
            "`{}` is not a device name: give 1 to 64 printable characters",
            name.escape_debug()
        )));
    }
    Ok(())
}

/// An unreachable coordinator at `init`, said for what it is then: there is no profile yet
/// to check, and a certificate of another CA means the token and the URL are of two grids.
fn at_init(e: ClientError) -> ClientError {
    let ClientError::Unreachable(u) = e else { return e };
    let urls: Vec<&str> = u.tried.iter().map(|a| a.url.as_str()).collect();
    if u.tried.iter().all(|a| a.reason.contains(scatter_net::tls::NOT_GRID_CA)) {
        return ClientError::Invalid(format!(
            "the coordinator at {} has a certificate that is not from the grid in the token; \
             check that the URL and the token come from the same grid",
            urls.join(", ")
        ));
    }
    ClientError::Invalid(format!("{u}; check that a coordinator is running there and that --coordinator is right"))
}

/// Creates a profile and registers this device: with an invite (new keys, or `imported` ones,
/// e.g. another device's, or a write-only set for a backup source), or with a recovery code
/// (the keys come back from the coordinator, sealed to the code and under the passphrase).
/// For an account that owns data, makes sure a recovery code exists. Refuses to overwrite an
/// existing key file. The device is listed under `name`, or this machine's host name.
pub async fn init(
    dir: &Path,
    coordinator: &scatter_net::CoordinatorUrls,
    token: &str,
    passphrase: &str,
    imported: Option<UserKeys>,
    insecure: bool,
    name: Option<&str>,
) -> Result<Initialized, ClientError> {
    let name = match name {
        Some(name) => check_device_name(name).map(|()| name.to_owned())?,
        None => device_name(),
    };
    let token: scatter_net::Token = token.parse().map_err(|e| ClientError::Invalid(format!("{e}")))?;
    let ca = coordinator.check_mode(token.ca(), insecure).map_err(|e| ClientError::Invalid(e.to_string()))?;
    if passphrase.is_empty() {
        return Err(ClientError::Invalid("the passphrase must not be empty".into()));
    }
    if token.is_recovery() && imported.is_some() {
        return Err(ClientError::Invalid("a recovery code brings the keys back by itself; leave out --import".into()));
    }
    let key_path = dir.join("keys.age");
    if key_path.exists() {
        return Err(ClientError::Invalid(format!(
            "{} already exists; use another SCATTER_CONFIG directory, or move it away if you really mean to start over",
            key_path.display()
        )));
    }
    // Made before a recovery code is spent (a folder that cannot be made fails first), and
    // removed again when the coordinator refuses the token: nothing of a failed init stays.
    let made = !dir.exists();
    // The folder holds the device key and the key file: only its owner may list it (its
    // parents, such as ~/.config, are made as the umask says).
    std::fs::create_dir_all(dir).map_err(ClientError::io(dir))?;
    if made {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(ClientError::io(dir))?;
    }
    let unmake = |e: ClientError| {
        if made {
            let _ = std::fs::remove_dir(dir);
        }
        e
    };
    let device = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let open = Coordinator::new(coordinator, ca, None).map_err(unmake)?;
    let (user_id, device_id, role, key_file, keys) = if token.is_recovery() {
        let code = RecoveryCode::from_secret(token.secret_bytes());
        let reply = open.recover(&code, &device.verifying_key(), &name).await.map_err(at_init).map_err(unmake)?;
        let escrow = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &reply.escrow)
            .map_err(|_| ClientError::Invalid("the coordinator sent a kept key file that is not base64".into()))?;
        let key_file = code.open(&escrow)?;
        // The code is spent now: the key file is saved even if this passphrase does not open
        // it, so the right one still can.
        let keys = UserKeys::from_key_file(&key_file, passphrase).ok();
        (reply.user_id, reply.device_id, reply.role, key_file, keys)
    } else {
        let keys = imported.unwrap_or_else(UserKeys::generate);
        let key_file = keys.to_key_file(passphrase, KEY_FILE_WORK_FACTOR);
        let write_only = !keys.can_read();
        let reply = open
            .register(token.secret(), &keys.write_keys().public_key(), &device.verifying_key(), &name, write_only)
            .await
            .map_err(at_init)
            .map_err(unmake)?;
        (reply.user_id, reply.device_id, reply.role, key_file, Some(keys))
    };
    write_private(&key_path, &key_file)?;
    let profile = Profile {
        coordinator: coordinator.clone(),
        user_id,
        device_id: Some(device_id),
        device_key: hex::encode(device.to_bytes()),
        ca: ca.map(|fp| fp.to_string()),
    };
    let text = toml::to_string(&profile).map_err(|e| ClientError::Invalid(e.to_string()))?;
    write_private(&dir.join("profile.toml"), text.as_bytes())?;
    let code = match (&keys, role.has_recovery_code()) {
        (_, false) => CodeState::None(format!(
            "a {role} recovers through the grid's admin, who can invite it again (with its owner's keys)"
        )),
        (None, true) => CodeState::None(
            "the passphrase given does not open the key file; run `scatter key recovery-code` with the right one"
                .into(),
        ),
        (Some(keys), true) => {
            let made = async {
                // A device invite to an account with a code keeps that code.
                if !token.is_recovery() && current_code(&profile, keys).await?.is_some() {
                    return Ok(CodeState::Kept);
                }
                Ok::<_, ClientError>(CodeState::New(new_code(&profile, keys, &key_file).await?))
            };
            // The device is registered and its profile written: a failure here must not
            // read as a failed init.
            made.await.unwrap_or_else(|e| {
                CodeState::None(format!("it could not be made now ({e}); run `scatter key recovery-code`"))
            })
        }
    };
    Ok(Initialized { keys_open: keys.is_some(), profile, role, recovered: token.is_recovery(), code })
}

/// After a recovery whose passphrase did not open the key file that came back: tries
/// `passphrase` on the saved key file and, if it opens, makes a new recovery code (which also
/// shows the coordinator that this device holds the keys). `None` if it does not open.
pub async fn open_recovered(dir: &Path, profile: &Profile, passphrase: &str) -> Result<Option<CodeState>, ClientError> {
    let path = dir.join("keys.age");
    let key_file = std::fs::read(&path).map_err(ClientError::io(&path))?;
    let Ok(keys) = UserKeys::from_key_file(&key_file, passphrase) else { return Ok(None) };
    Ok(Some(match new_code(profile, &keys, &key_file).await {
        Ok(code) => CodeState::New(code),
        Err(e) => CodeState::None(format!("it could not be made now ({e}); run `scatter key recovery-code`")),
    }))
}

/// The account's recovery code as the coordinator keeps it, checked against the keys: a code
/// whose binding does not hold was not made by a device of this user, and nothing is sealed
/// to it.
async fn current_code(profile: &Profile, keys: &UserKeys) -> Result<Option<(RecoveryCodeInfo, [u8; 32])>, ClientError> {
    let Some(info) = profile.coordinator()?.recovery_code().await?.code else { return Ok(None) };
    let mut verifier = [0u8; 32];
    let mut mac = [0u8; 32];
    let parsed = hex::decode_to_slice(&info.verifier, &mut verifier).is_ok()
        && hex::decode_to_slice(&info.binding, &mut mac).is_ok();
    if !parsed || !recovery::binding_holds(keys.write_keys(), &verifier, &info.recipient, &mac) {
        return Err(ClientError::Invalid(
            "the coordinator's record of your recovery code is not bound to your keys, so nothing was sealed to it; \
             run `scatter key recovery-code` to make a new one, and tell the grid's admin"
                .into(),
        ));
    }
    Ok(Some((info, verifier)))
}

/// Why a machine with write-only keys neither makes a recovery code nor re-seals the copy
/// kept for it: the code would bring back keys that cannot read the account's data.
const WRITE_ONLY_CODE: &str =
    "this machine holds write-only keys, and a recovery code must bring back keys that read your data; \
     run `scatter key recovery-code` (or `scatter key passwd`) on a machine with your full keys";

/// Makes a new recovery code for the account (voiding the one before) and has the coordinator
/// keep `key_file` sealed to it; returns the code's token, to print once.
pub async fn new_code(profile: &Profile, keys: &UserKeys, key_file: &[u8]) -> Result<String, ClientError> {
    if !keys.can_read() {
        return Err(ClientError::Invalid(WRITE_ONLY_CODE.into()));
    }
    let code = RecoveryCode::generate();
    let (verifier, recipient) = (code.verifier(), code.recipient());
    let info = RecoveryCodeInfo {
        verifier: hex::encode(verifier),
        binding: hex::encode(recovery::binding(keys.write_keys(), &verifier, &recipient)),
        recipient: recipient.clone(),
    };
    let escrow = recovery::seal(key_file, &recipient)?;
    let req = change_request(profile, keys, info, &verifier, &escrow)?;
    profile.coordinator()?.set_recovery_code(&req, true).await?;
    Ok(scatter_net::Token::recovery(code.secret(), profile.fingerprint()?).to_string())
}

/// A change of the account's recovery code (a new code, or the key file re-sealed for it),
/// signed with the owner key of `keys`, which the coordinator checks against the account's.
fn change_request(
    profile: &Profile,
    keys: &UserKeys,
    info: RecoveryCodeInfo,
    verifier: &[u8; 32],
    escrow: &[u8],
) -> Result<RecoveryCodeRequest, ClientError> {
    let grid = profile.fingerprint()?.map(|fp| fp.0).unwrap_or([0; 32]);
    let change = recovery::change(&grid, profile.user_id.0, verifier, &info.recipient, escrow);
    Ok(RecoveryCodeRequest {
        owner: hex::encode(recovery::owner(keys.write_keys())),
        proof: hex::encode(recovery::sign_change(keys.write_keys(), &change)),
        info,
        escrow: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, escrow),
    })
}

/// Re-encrypts the key file in `dir` under a new passphrase (the data keys do not change, so
/// nothing stored needs re-encrypting), and re-seals the copy the coordinator keeps for the
/// recovery code, so the code opens it with the new passphrase.
pub async fn change_passphrase(dir: &Path, old: &str, new: &str) -> Result<CodeState, ClientError> {
    if new.is_empty() {
        return Err(ClientError::Invalid("the new passphrase must not be empty".into()));
    }
    let keys = Profile::load_keys(dir, old)?;
    let key_file = keys.to_key_file(new, KEY_FILE_WORK_FACTOR);
    write_private(&dir.join("keys.age"), &key_file)?;
    // The key file is changed: what follows is reported, never a failure of the command.
    Ok(reseal(dir, &keys, &key_file).await.unwrap_or_else(|e| match e {
        ClientError::Api { code: scatter_proto::api::ErrorCode::Forbidden, message, .. } => CodeState::None(message),
        e => CodeState::None(format!(
            "the copy kept for your recovery code could not be re-sealed ({e}); it still opens with the old passphrase: \
             run `scatter key passwd` again (with the new passphrase as old and new) or `scatter key recovery-code`"
        )),
    }))
}

/// Has the coordinator keep `key_file` sealed to the account's current recovery code.
async fn reseal(dir: &Path, keys: &UserKeys, key_file: &[u8]) -> Result<CodeState, ClientError> {
    if !keys.can_read() {
        return Ok(CodeState::None(format!(
            "the copy kept for your recovery code was left as it was: {WRITE_ONLY_CODE}"
        )));
    }
    let profile = Profile::load(dir)?;
    let Some((info, verifier)) = current_code(&profile, keys).await? else {
        return Ok(CodeState::None("this account has no recovery code; run `scatter key recovery-code`".into()));
    };
    let escrow = recovery::seal(key_file, &info.recipient)?;
    let req = change_request(&profile, keys, info, &verifier, &escrow)?;
    profile.coordinator()?.set_recovery_code(&req, false).await?;
    Ok(CodeState::Kept)
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
        // Written as others may read it: refused (it holds the device key), then closed.
        let open = Profile::load(dir.path()).map(|_| ()).expect_err("an open profile");
        assert!(open.to_string().contains("chmod 600"), "{open}");
        use std::os::unix::fs::PermissionsExt;
        let closed = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(dir.path().join("profile.toml"), closed).expect("chmod");
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
