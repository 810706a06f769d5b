//! `scatter gateway`: serve the S3 API for this profile, and manage its S3 access keys.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use scatter_client::profile::Profile;
use scatter_client::put::PutOptions;
use scatter_client::upload::Redundancy;
use scatter_core::keys::UserKeys;
use scatter_gateway::access::Served;
use scatter_gateway::keystore::KeyStore;
use scatter_gateway::tenant::Tenant;

/// `scatter gateway key …` and `scatter gateway name …`.
#[derive(clap::Subcommand)]
pub enum GatewayAction {
    /// The S3 access keys of this profile (sealed in its folder, mode 0600).
    Key {
        #[command(subcommand)]
        command: KeyCmd,
    },
    /// The names the grid's CA certified for this account's gateways (`--grid-cert`): each is
    /// bound to the account, so no other account's gateway is certified under it.
    Name {
        #[command(subcommand)]
        command: NameCmd,
    },
}

/// `scatter gateway name …`.
#[derive(clap::Subcommand)]
pub enum NameCmd {
    /// List the names this account's gateways hold (an admin: every account's).
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Give up a name: it no longer counts against the account's limit, and passes to whoever
    /// asks for it once the certificates issued for it have expired (within 7 days). An
    /// admin may give up any account's name.
    Rm {
        /// The name, as `name ls` shows it.
        name: String,
    },
}

/// `scatter gateway key …`.
#[derive(clap::Subcommand)]
pub enum KeyCmd {
    /// Make a new access key and print it with its secret (shown this once).
    Add {
        /// An appender's rights: put objects and multipart uploads, no get, list or delete.
        #[arg(long)]
        write_only: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the access keys (never their secrets).
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove an access key: a running gateway refuses requests signed with it within a second.
    Rm {
        /// The access key, as `key ls` shows it.
        access_key: String,
    },
}

/// Where the gateway's TLS certificate comes from.
pub enum Tls {
    /// The operator's certificate chain and key (PEM files).
    Operator((PathBuf, PathBuf)),
    /// The grid CA, for these names.
    Grid(Vec<String>),
    /// None: plain HTTP, on loopback only.
    Plain,
}

/// How `scatter gateway` serves.
pub struct ServeArgs {
    /// Where to listen.
    pub listen: String,
    /// Its certificate.
    pub tls: Tls,
    /// Multipart uploads older than this are aborted.
    pub upload_expiry: Duration,
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// How often a gateway renews its certificate from the grid's CA (valid for
/// [`scatter_net::tls::GATEWAY_VALIDITY_SECS`], a week).
const RENEW_EVERY: Duration = Duration::from_secs(86_400);

/// How soon a renewal that failed is tried again.
const RENEW_RETRY: Duration = Duration::from_secs(600);

/// A certificate from the grid's CA for `key` and `names`, with the CA's certificate.
async fn certify(
    coord: &scatter_client::coordinator::Coordinator,
    names: &[String],
    key: &scatter_net::tls::LeafKey,
) -> Result<(rustls::pki_types::CertificateDer<'static>, rustls::pki_types::CertificateDer<'static>, String)> {
    let issued = coord
        .gateway_cert(names.to_vec(), hex::encode(key.public_key()))
        .await
        .context("the grid's CA did not certify the gateway")?;
    let leaf = scatter_net::tls::parse_pem_cert(&issued.certificate).context("the coordinator sent no certificate")?;
    let ca = scatter_net::tls::parse_pem_cert(&issued.ca).context("the coordinator sent no CA certificate")?;
    Ok((leaf, ca, issued.ca))
}

/// A TLS configuration with a new key certified by the grid CA for `names`, renewed while
/// the gateway runs ([`renew`]); the CA's certificate is written to `gateway-ca.crt` in the
/// profile folder for S3 clients.
async fn grid_certificate(
    dir: &Path,
    profile: &Profile,
    names: Vec<String>,
) -> Result<(Arc<rustls::ServerConfig>, tokio::task::JoinHandle<()>)> {
    let key = scatter_net::tls::LeafKey::generate()?;
    let coord = profile.coordinator()?;
    let (leaf, ca, ca_pem) = certify(&coord, &names, &key).await?;
    let path = dir.join("gateway-ca.crt");
    scatter_net::tls::write_public(&path, ca_pem.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("Certified by the grid's CA for {}; S3 clients trust {}", names.join(", "), path.display());
    let (config, current) = key.renewable_config(leaf, ca)?;
    Ok((config, tokio::spawn(renew(coord, names, key, current))))
}

/// Renews the gateway's certificate every [`RENEW_EVERY`] (certificates from the grid's CA
/// last a week, so that a name an account gives up passes on soon), and after a failure
/// every [`RENEW_RETRY`]: the certificate in use stays until a new one arrives.
async fn renew(
    coord: scatter_client::coordinator::Coordinator,
    names: Vec<String>,
    key: scatter_net::tls::LeafKey,
    current: Arc<scatter_net::tls::RenewableCert>,
) {
    let mut wait = RENEW_EVERY;
    loop {
        tokio::time::sleep(wait).await;
        let renewed = match certify(&coord, &names, &key).await {
            Ok((leaf, ca, _)) => current.renew(&key, leaf, ca).map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        wait = match renewed {
            Ok(()) => {
                tracing::info!("renewed the gateway's certificate for {}", names.join(", "));
                RENEW_EVERY
            }
            Err(e) => {
                tracing::warn!(
                    "could not renew the gateway's certificate ({e:#}); it stays in use, valid for up to 7 days from its last renewal; trying again in 10 minutes"
                );
                RENEW_RETRY
            }
        };
    }
}

/// Runs `scatter gateway name …`.
pub async fn names(profile: &Profile, cmd: NameCmd) -> Result<()> {
    let coord = profile.coordinator()?;
    let when = |t: u64| crate::backups::time_text(t.min(i64::MAX as u64 / 1_000_000_000) as i64 * 1_000_000_000);
    match cmd {
        NameCmd::Ls { json } => {
            let listed = coord.gateway_names().await.context("cannot list the gateway names")?;
            if json {
                println!("{}", serde_json::to_string(&listed)?);
            } else if listed.names.is_empty() {
                println!("No gateway names; `scatter gateway --grid-cert NAMES` has the grid's CA certify some.");
            } else {
                println!("{:<40}  {:<8}  {:<19}  CERTIFIED UNTIL", "NAME", "ACCOUNT", "SINCE");
                for n in &listed.names {
                    let given_up = if n.released { "  (given up: passes on then)" } else { "" };
                    println!(
                        "{:<40}  {:<8}  {:<19}  {}{given_up}",
                        n.name,
                        n.account.to_string(),
                        when(n.since),
                        when(n.certified_until)
                    );
                }
                println!("An account's gateways hold at most {} names at once.", listed.limit);
            }
        }
        NameCmd::Rm { name } => {
            let released = coord.release_gateway_name(name).await.context("cannot give up the name")?;
            println!(
                "Gave up `{}`: it passes to whoever asks for it once its certificates expire, at {} UTC.",
                released.name,
                when(released.certified_until)
            );
        }
    }
    Ok(())
}

/// Runs `scatter gateway key …`.
pub fn keys(dir: &Path, keys: &UserKeys, cmd: KeyCmd) -> Result<()> {
    let (mut store, migrated) = KeyStore::open_migrating(dir, keys, true)?;
    if migrated {
        let carried: Vec<&str> = store.keys().iter().map(|k| k.access_key.as_str()).collect();
        eprintln!(
            "Sealed {} again under this profile's private key (it was sealed under a key an appender also holds), with the keys {}; the secrets are unchanged: remove any key you did not make, and replace the others (`gateway key add`, then `rm`) if a copy of the old file may exist.",
            dir.join(scatter_gateway::keystore::FILE).display(),
            if carried.is_empty() { "(none)".to_owned() } else { carried.join(", ") }
        );
    }
    match cmd {
        KeyCmd::Add { write_only, json } => {
            let k = store.add(write_only, now())?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "access_key": k.access_key, "secret_key": k.secret_key, "write_only": k.write_only })
                );
            } else {
                println!("access key: {}", k.access_key);
                println!("secret key: {}", k.secret_key);
                println!(
                    "Keep the secret now: it is not shown again. {}",
                    if write_only {
                        "This key may put objects only."
                    } else {
                        "This key may do anything this profile may."
                    }
                );
            }
        }
        KeyCmd::Ls { json } => {
            if json {
                let list: Vec<_> = store
                    .keys()
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "access_key": k.access_key,
                            "write_only": k.write_only,
                            "created": k.created,
                            "bound": store.is_bound(k),
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else if store.keys().is_empty() {
                println!("No gateway keys; make one with `scatter gateway key add`.");
            } else {
                for k in store.keys() {
                    let older = match store.is_bound(k) {
                        true => "",
                        false => "  (made before keys were bound to their profile: replace it)",
                    };
                    println!("{}  {}{older}", k.access_key, if k.write_only { "write-only" } else { "full" });
                }
            }
        }
        KeyCmd::Rm { access_key } => {
            store.remove(&access_key)?;
            println!("Removed {access_key}; a running gateway refuses it within a second.");
        }
    }
    Ok(())
}

/// Opens another profile to serve: `DIR` with `passphrase`, `DIR=FILE` with the passphrase
/// in FILE.
pub fn open_profile(spec: &str, passphrase: &str) -> Result<(PathBuf, Profile, UserKeys)> {
    let (dir, secret) = match spec.split_once('=') {
        Some((dir, file)) => {
            let source = scatter_cli::passphrase::Source::File(PathBuf::from(file));
            (PathBuf::from(dir), source.read()?)
        }
        None => (PathBuf::from(spec), passphrase.to_owned()),
    };
    let profile = Profile::load(&dir).with_context(|| format!("--profile {}", dir.display()))?;
    let keys = Profile::load_keys(&dir, &secret).with_context(|| format!("--profile {}", dir.display()))?;
    Ok((dir, profile, keys))
}

/// Marks `dir` as served by this gateway for as long as the returned file is open, and warns
/// when another gateway on this machine serves it already: each knows a bucket's names from
/// its own start and its own writes, so neither sees what the other writes until it restarts.
fn serving_lock(dir: &std::path::Path) -> Option<std::fs::File> {
    let path = dir.join("gateway.lock");
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).ok()?;
    if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        eprintln!(
            "warning: another `scatter gateway` on this machine serves the profile {}: neither sees the objects the other writes until it restarts; run one gateway per profile",
            dir.display()
        );
        return None;
    }
    Some(file)
}

/// How often a running gateway looks whether `gateway key add|rm` changed its keys.
const KEY_CHECK: Duration = Duration::from_secs(1);

/// Runs the gateway for `profiles` until `stop`.
pub async fn serve(
    profiles: Vec<(PathBuf, Profile, UserKeys)>,
    args: ServeArgs,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let addr: SocketAddr =
        args.listen.parse().with_context(|| format!("--listen {} is not an address and port", args.listen))?;
    if matches!(args.tls, Tls::Plain) && !addr.ip().is_loopback() {
        bail!(
            "--plain-http is only allowed on a loopback address: S3 clients would send data and signatures in the clear; serve TLS with --cert and --key or --grid-cert"
        );
    }
    let first = profiles.first().map(|(dir, p, _)| (dir.clone(), p.clone()));
    let mut served = Vec::new();
    let mut _locks = Vec::new();
    for (dir, profile, keys) in profiles {
        _locks.extend(serving_lock(&dir));
        if !keys.can_read() {
            bail!(
                "the profile {} is write-only (an appender's): the gateway needs a profile that can read; give appenders a write-only gateway key instead",
                dir.display()
            );
        }
        let coord = profile.coordinator()?;
        let grid =
            coord.grid().await.with_context(|| format!("the coordinator of {} cannot be reached", dir.display()))?;
        let put = PutOptions { redundancy: Redundancy { k: grid.data, m: grid.parity }, ..Default::default() };
        served.push(Served { tenant: Arc::new(Tenant::new(coord, keys, put)), dir });
    }
    let keys = scatter_gateway::access::keys(&served)?;
    let router = scatter_gateway::router(keys.clone());
    let mut background = Vec::new();
    let tls = match args.tls {
        Tls::Operator((cert, key)) => Some(scatter_net::tls::operator_server_config(&cert, &key)?),
        Tls::Plain => None,
        Tls::Grid(names) => {
            let (dir, profile) = first.context("no profile to serve")?;
            let (config, renewal) = grid_certificate(&dir, &profile, names).await?;
            background.push(renewal);
            Some(config)
        }
    };
    // HTTP/1.1 only, as every server of the grid (`scatter_net::serve`): as S3 itself, and over
    // HTTP/2 (which rclone takes when offered) uploads crawled through flow-control windows.
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!(
        "S3 gateway for {} profile(s), {} key(s), listening on {scheme}://{bound} (path-style addressing, region us-east-1)",
        served.len(),
        keys.len()
    );
    let every = (args.upload_expiry / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    background.extend(
        served
            .iter()
            .map(|s| tokio::spawn(scatter_gateway::expire_uploads(s.tenant.clone(), args.upload_expiry, every))),
    );
    background.push(tokio::spawn(scatter_gateway::access::watch(served, keys, KEY_CHECK)));
    let served = scatter_net::serve::serve(listener, router, tls, stop).await;
    for task in background {
        task.abort();
    }
    served.context("the gateway stopped")?;
    eprintln!("S3 gateway stopped");
    Ok(())
}
