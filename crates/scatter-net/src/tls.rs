//! The grid's certificate authority and the TLS configurations that trust only it.
//!
//! The coordinator holds the CA (an ECDSA P-256 key and a self-signed certificate). It signs
//! its own server certificate at every start and each host's certificate when the host asks
//! (the host keeps its private key; it sends only the public half). Every server presents the
//! chain `[leaf, CA]`.
//!
//! Clients and hosts carry the CA's [`Fingerprint`] (SHA-256 of its DER), which arrives inside
//! their join or invite token. [`client_config`] accepts a server only when the chain it
//! presents contains a CA certificate with that fingerprint and the leaf is validly signed by
//! it for the name being dialled: first contact is authenticated, not trust-on-first-use, and
//! nothing but the fingerprint has to be stored.
//!
//! The coordinator's certificate names only [`COORDINATOR_NAME`] and carries, next to the
//! usual server-authentication purpose, an extended key usage of its own
//! ([`COORDINATOR_USAGE`]) that the CA puts in no other certificate. A client talking to the
//! coordinator requires both, whatever address it dialled: a host's certificate — any host
//! certificate this CA ever signed, including ones issued before names were restricted — lacks
//! the usage and is refused. Hosts are certified only for an IP address or a plain DNS name
//! outside `scatter.internal` ([`check_host_name`]), and are verified against the address
//! they are dialled at.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SignatureAlgorithm, PKCS_ECDSA_P256_SHA256,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// The name in the coordinator's certificate, and only in its certificate.
pub const COORDINATOR_NAME: &str = "coordinator.scatter.internal";

/// The extended key usage (OID 2.25.1548214034, a private arc) that marks the
/// coordinator's certificate: [`Authority::issue`] never puts it in a host's.
pub const COORDINATOR_USAGE: &[u64] = &[2, 25, 1_548_214_034];

/// [`COORDINATOR_USAGE`] in DER (the OID's contents octets).
const COORDINATOR_USAGE_DER: &[u8] = &[0x69, 0x85, 0xe2, 0x9f, 0xbe, 0x12];

/// The extended key usage that marks an S3 gateway's certificate: a user may have the CA
/// certify its gateway's address, and a certificate with this usage is refused wherever a
/// host or the coordinator is expected, so it cannot stand in for either.
pub const GATEWAY_USAGE: &[u64] = &[2, 25, 1_548_214_035];

/// [`GATEWAY_USAGE`] in DER.
const GATEWAY_USAGE_DER: &[u8] = &[0x69, 0x85, 0xe2, 0x9f, 0xbe, 0x13];

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Host,
    Coordinator,
    Gateway,
}

/// The id-kp-serverAuth purpose (1.3.6.1.5.5.7.3.1) in DER.
const SERVER_AUTH_DER: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];

/// The domain under which no host may be certified.
const RESERVED_DOMAIN: &str = "scatter.internal";

/// Which kind of server a client connects to; it decides the name the certificate must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// The coordinator: its certificate must name [`COORDINATOR_NAME`].
    Coordinator,
    /// A storage host: its certificate must name the address it is dialled at.
    Host,
}

/// How long an issued leaf certificate is valid. Hosts and the coordinator get a new one at
/// every start, so this only bounds how long a process may run without restarting.
const LEAF_VALIDITY: time::Duration = time::Duration::seconds(LEAF_VALIDITY_SECS as i64);

/// [`LEAF_VALIDITY`] in seconds: how long a host's certificate is valid (397 days).
pub const LEAF_VALIDITY_SECS: u64 = 397 * 86_400;

/// How long an S3 gateway's certificate is valid, in seconds. A name an account gives up
/// passes to another account only once every certificate issued for it has expired (until
/// then its last holder could still pose under it), so this bounds how long that takes. A
/// running gateway renews its certificate daily ([`RenewableCert`]).
pub const GATEWAY_VALIDITY_SECS: u64 = 7 * 86_400;

/// Why a certificate or TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file of the CA could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A stored key or certificate does not parse.
    #[error("{0} is damaged; restore it from a backup (without it, every host and user must join again)")]
    Damaged(std::path::PathBuf),
    /// A public key sent for signing is not an uncompressed P-256 point.
    #[error("the public key is not an uncompressed ECDSA P-256 point (65 bytes, starting with 4)")]
    BadPublicKey,
    /// A name is neither an IP address nor a DNS name.
    #[error("`{0}` cannot be put in a certificate (expected an IP address or a DNS name of letters, digits, hyphens and dots, without wildcards)")]
    BadName(String),
    /// A host asked for a name under `scatter.internal`, which only the coordinator may have.
    #[error("`{0}` cannot be put in a host's certificate: names under scatter.internal are the coordinator's; give the host an IP address or another DNS name")]
    Reserved(String),
    /// A file given as a PEM certificate or key holds none.
    #[error("{0} holds no PEM {1}; give the {1} in PEM form (-----BEGIN ...)")]
    NotPem(std::path::PathBuf, &'static str),
    /// A certificate and key that do not go together, or that rustls cannot use.
    #[error(
        "{0} cannot be served with that key ({1}); give the certificate chain and the private key that belong together"
    )]
    Mismatch(std::path::PathBuf, String),
    /// rcgen or rustls refused (should not happen with the parameters used here).
    #[error("TLS setup failed: {0}")]
    Setup(String),
}

fn setup(e: impl fmt::Display) -> TlsError {
    TlsError::Setup(e.to_string())
}

/// The crypto provider used for every TLS connection: ring (audited, constant-time AES-GCM and
/// ChaCha20-Poly1305 with hardware acceleration).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}

/// SHA-256 of the grid CA's certificate (DER): what tokens carry to authenticate first contact.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a certificate.
    pub fn of(cert_der: &[u8]) -> Self {
        Self(Sha256::digest(cert_der).into())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = hex::FromHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s, &mut b)?;
        Ok(Self(b))
    }
}

/// The CA's subject; fixed, so the issuer can be rebuilt from the key alone.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Scatter grid");
    dn.push(DnType::CommonName, "Scatter grid CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

/// How a TLS connection refused for a certificate of another CA than the pinned one begins
/// (what `scatter init` looks for to blame the token or the URL rather than the network).
pub const NOT_GRID_CA: &str = "the server's certificate is not from this grid's CA";

/// The grid's certificate authority, held by the coordinator.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
}

impl Authority {
    /// Loads the CA from `dir` (`ca.key`, `ca.crt`), creating it on first start.
    pub fn load_or_create(dir: &Path) -> Result<Self, TlsError> {
        let (key_path, cert_path) = (dir.join("ca.key"), dir.join("ca.crt"));
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| TlsError::Io { path, source }
        };
        if !key_path.exists() {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(setup)?;
            let cert = ca_params().self_signed(&key).map_err(setup)?;
            // The certificate first: a key without its certificate is regenerated next time,
            // a certificate without its key would be useless.
            write_public(&cert_path, cert.pem().as_bytes()).map_err(io(&cert_path))?;
            write_private(&key_path, key.serialize_pem().as_bytes()).map_err(io(&key_path))?;
        }
        // The certificate is public, and a scraper running as its own user (Prometheus) must
        // read it; grids made before were written 0600.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&cert_path).map_err(io(&cert_path))?.permissions().mode() & 0o777;
            if mode != 0o644 {
                std::fs::set_permissions(&cert_path, std::fs::Permissions::from_mode(0o644)).map_err(io(&cert_path))?;
            }
        }
        let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|_| TlsError::Damaged(key_path.clone()))?;
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
        let cert = parse_pem_cert(&cert_pem).ok_or_else(|| TlsError::Damaged(cert_path.clone()))?;
        Ok(Self { issuer: Issuer::new(ca_params(), key), cert })
    }

    /// The CA certificate (DER).
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The CA certificate in PEM, as handed to hosts.
    pub fn cert_pem(&self) -> String {
        to_pem(&self.cert)
    }

    /// What tokens carry.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.cert)
    }

    /// Signs a host's server certificate for `names` over a P-256 public key in raw (SEC1
    /// uncompressed) form. Every name must pass [`check_host_name`]; the certificate never
    /// carries [`COORDINATOR_USAGE`].
    pub fn issue(&self, names: &[String], public_key: &[u8]) -> Result<CertificateDer<'static>, TlsError> {
        let names = names.iter().map(|n| check_host_name(n)).collect::<Result<Vec<_>, _>>()?;
        if names.is_empty() {
            return Err(TlsError::BadName(String::new()));
        }
        self.sign(&names, public_key, Role::Host)
    }

    /// Signs an S3 gateway's certificate for `names` (checked as a host's are) over a P-256
    /// public key: it carries [`GATEWAY_USAGE`], which hosts' and the coordinator's clients
    /// refuse, so S3 clients can trust the grid CA for the gateway without the gateway's
    /// owner being able to pose as a host.
    pub fn issue_gateway(&self, names: &[String], public_key: &[u8]) -> Result<CertificateDer<'static>, TlsError> {
        let names = names.iter().map(|n| check_host_name(n)).collect::<Result<Vec<_>, _>>()?;
        if names.is_empty() {
            return Err(TlsError::BadName(String::new()));
        }
        self.sign(&names, public_key, Role::Gateway)
    }

    fn sign(&self, names: &[String], public_key: &[u8], role: Role) -> Result<CertificateDer<'static>, TlsError> {
        if public_key.len() != 65 || public_key[0] != 4 {
            return Err(TlsError::BadPublicKey);
        }
        let key = RawP256(public_key.to_vec());
        Ok(leaf_params(names, role)?.signed_by(&key, &self.issuer).map_err(setup)?.der().clone())
    }

    /// A server configuration for the coordinator itself: a fresh key and a leaf for
    /// [`COORDINATOR_NAME`] with [`COORDINATOR_USAGE`].
    pub fn coordinator_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let key = LeafKey::generate()?;
        let leaf = self.sign(&[COORDINATOR_NAME.to_owned()], key.public_key(), Role::Coordinator)?;
        key.server_config(leaf, self.cert.clone())
    }
}

/// A server configuration from an operator's own certificate chain and private key (PEM
/// files, as a public CA such as Let's Encrypt issues them): for the web dashboard, which
/// browsers must accept without a warning, so not the grid CA's. HTTP/1.1, TLS
/// 1.2 and 1.3 (what browsers speak).
pub fn operator_server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let read = |path: &Path| std::fs::read(path).map_err(|source| TlsError::Io { path: path.to_owned(), source });
    let cert_pem = read(cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .ok()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| TlsError::NotPem(cert.to_owned(), "certificate"))?;
    let key_der =
        PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|_| TlsError::NotPem(key.to_owned(), "private key"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(setup)?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| TlsError::Mismatch(cert.to_owned(), e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Whether `name` (as [`check_host_name`] returns it) reaches only the machine itself: a
/// loopback address, or `localhost`. Not names under `.localhost`: browsers keep them on the
/// machine, but many resolvers (glibc's among them) ask DNS for them, so such a name is
/// certified to one account like any other.
pub fn is_loopback(name: &str) -> bool {
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => name == "localhost",
    }
}

/// Checks a name a host asks to be certified for, and returns it in canonical form (lower
/// case): an IP address, or a DNS name of letters, digits and hyphens in dot-separated labels
/// (no wildcard, no empty label, no trailing dot), not `scatter.internal` or under it.
pub fn check_host_name(name: &str) -> Result<String, TlsError> {
    let bare = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(name);
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Ok(ip.to_string());
    }
    let bad = || TlsError::BadName(name.chars().take(255).collect());
    let lower = name.to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if lower.is_empty() || lower.len() > 253 || !lower.split('.').all(label_ok) {
        return Err(bad());
    }
    // All-numeric names are IP addresses in some parsers and DNS names in others.
    if lower.rsplit('.').next().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit())) {
        return Err(bad());
    }
    if lower == RESERVED_DOMAIN || lower.ends_with(&format!(".{RESERVED_DOMAIN}")) {
        return Err(TlsError::Reserved(lower));
    }
    Ok(lower)
}

fn leaf_params(names: &[String], role: Role) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(names.to_vec()).map_err(|_| TlsError::BadName(names.join(", ")))?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, names.first().cloned().unwrap_or_default());
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    match role {
        Role::Coordinator => {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::Other(COORDINATOR_USAGE.to_vec()))
        }
        Role::Gateway => params.extended_key_usages.push(ExtendedKeyUsagePurpose::Other(GATEWAY_USAGE.to_vec())),
        Role::Host => {}
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let now = time::OffsetDateTime::now_utc();
    // An hour of slack for clocks that are a little behind.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now
        + match role {
            Role::Gateway => time::Duration::seconds(GATEWAY_VALIDITY_SECS as i64),
            Role::Host | Role::Coordinator => LEAF_VALIDITY,
        };
    Ok(params)
}

/// A public key that arrived as bytes, for rcgen to sign.
struct RawP256(Vec<u8>);

impl PublicKeyData for RawP256 {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

/// A server's own key pair: generated in memory at every start, never written to disk; only
/// its public half leaves the process, to be certified.
pub struct LeafKey(KeyPair);

impl LeafKey {
    /// A new P-256 key.
    pub fn generate() -> Result<Self, TlsError> {
        Ok(Self(KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(setup)?))
    }

    /// The public key in raw (SEC1 uncompressed) form, as [`Authority::issue`] takes it.
    pub fn public_key(&self) -> &[u8] {
        self.0.public_key_raw()
    }

    /// A server configuration presenting `[leaf, ca]` (HTTP/1.1, TLS 1.3 only).
    pub fn server_config(
        &self,
        leaf: CertificateDer<'static>,
        ca: CertificateDer<'static>,
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.0.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(setup)?
            .with_no_client_auth()
            .with_single_cert(vec![leaf, ca], key)
            .map_err(setup)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// A server configuration presenting `[leaf, ca]` as [`Self::server_config`] does, whose
    /// certificate can be replaced while it serves: a connection takes the one current when
    /// it is accepted.
    pub fn renewable_config(
        &self,
        leaf: CertificateDer<'static>,
        ca: CertificateDer<'static>,
    ) -> Result<(Arc<rustls::ServerConfig>, Arc<RenewableCert>), TlsError> {
        let current = Arc::new(RenewableCert(std::sync::RwLock::new(self.certified(leaf, ca)?)));
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(setup)?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok((Arc::new(config), current))
    }

    fn certified(
        &self,
        leaf: CertificateDer<'static>,
        ca: CertificateDer<'static>,
    ) -> Result<Arc<rustls::sign::CertifiedKey>, TlsError> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.0.serialize_der()));
        let certified = rustls::sign::CertifiedKey::from_der(vec![leaf, ca], key, &provider()).map_err(setup)?;
        Ok(Arc::new(certified))
    }
}

/// The certificate of a [`LeafKey::renewable_config`], replaced by [`Self::renew`]: a server
/// with a short-lived certificate (an S3 gateway's) renews it without a restart.
#[derive(Debug)]
pub struct RenewableCert(std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>);

impl RenewableCert {
    /// Presents `[leaf, ca]` for `key` from the next connection on.
    pub fn renew(
        &self,
        key: &LeafKey,
        leaf: CertificateDer<'static>,
        ca: CertificateDer<'static>,
    ) -> Result<(), TlsError> {
        let certified = key.certified(leaf, ca)?;
        *self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = certified;
        Ok(())
    }

    /// The chain presented now.
    pub fn current(&self) -> Vec<CertificateDer<'static>> {
        self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner()).cert.clone()
    }
}

impl rustls::server::ResolvesServerCert for RenewableCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone())
    }
}

/// A certificate in PEM.
pub fn to_pem(cert: &CertificateDer<'_>) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// The first certificate in a PEM text, if there is one.
pub fn parse_pem_cert(pem: &str) -> Option<CertificateDer<'static>> {
    use base64::Engine;
    let start = pem.find("-----BEGIN CERTIFICATE-----")? + "-----BEGIN CERTIFICATE-----".len();
    let end = start + pem[start..].find("-----END CERTIFICATE-----")?;
    let b64: String = pem[start..end].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok().map(CertificateDer::from)
}

/// A client configuration that trusts exactly the CA with `fingerprint` (TLS 1.3, HTTP/1.1:
/// large sequential bodies move faster over pooled HTTP/1.1 connections than through HTTP/2
/// flow control).
pub fn client_config(fingerprint: Fingerprint, peer: Peer) -> rustls::ClientConfig {
    let name = match peer {
        Peer::Coordinator => Some(ServerName::try_from(COORDINATOR_NAME).expect("a valid DNS name")),
        Peer::Host => None,
    };
    let verifier = Arc::new(PinnedCa { fingerprint, name, inner: OnceLock::new() });
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// Verifies servers against the CA whose fingerprint is pinned. The CA certificate itself comes
/// from the server's chain the first time and is kept for later handshakes; the usual WebPKI
/// checks (signature, validity, name, key usage) are then done with it as the only root. For
/// the coordinator, the leaf must also carry [`COORDINATOR_USAGE`].
#[derive(Debug)]
struct PinnedCa {
    fingerprint: Fingerprint,
    /// The name to verify instead of the dialled one (the coordinator's); set for the
    /// coordinator only.
    name: Option<ServerName<'static>>,
    inner: OnceLock<(Arc<WebPkiServerVerifier>, CertificateDer<'static>)>,
}

impl PinnedCa {
    fn verifier(
        &self,
        presented: &[CertificateDer<'_>],
    ) -> Result<(Arc<WebPkiServerVerifier>, CertificateDer<'static>), rustls::Error> {
        if let Some(v) = self.inner.get() {
            return Ok(v.clone());
        }
        let ca = presented
            .iter()
            .find(|c| Fingerprint::of(c) == self.fingerprint)
            .ok_or_else(|| rustls::Error::General(format!("{NOT_GRID_CA} (fingerprint {})", self.fingerprint)))?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned()).map_err(|e| rustls::Error::General(format!("the grid CA: {e}")))?;
        let v = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        Ok(self.inner.get_or_init(|| (v, ca.clone().into_owned())).clone())
    }
}

/// Accepts a certificate only when its extended key usages include both server
/// authentication and [`COORDINATOR_USAGE`].
struct CoordinatorUsage;

impl webpki::ExtendedKeyUsageValidator for CoordinatorUsage {
    fn validate(&self, iter: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        // Compared as encoded: webpki's own decoding of OID arcs is wrong for arcs of more
        // than one byte.
        let (mut server, mut coordinator) = (false, false);
        for id in iter {
            let id = id?;
            server |= id == webpki::KeyPurposeId::new(SERVER_AUTH_DER);
            coordinator |= id == webpki::KeyPurposeId::new(COORDINATOR_USAGE_DER);
        }
        if server && coordinator {
            Ok(())
        } else {
            Err(webpki::Error::RequiredEkuNotFoundContext(webpki::RequiredEkuNotFoundContext {
                required: webpki::KeyUsage::required(COORDINATOR_USAGE_DER),
                present: Vec::new(),
            }))
        }
    }
}

/// Checks that `leaf`, signed by `ca`, is the coordinator's certificate and not a host's.
fn require_coordinator_usage(
    leaf: &CertificateDer<'_>,
    ca: &CertificateDer<'_>,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    let refused = |e: webpki::Error| {
        rustls::Error::General(format!(
            "the server's certificate is not the coordinator's (it may be a host's: {e:?}); check the coordinator URL"
        ))
    };
    let anchor = webpki::anchor_from_trusted_cert(ca).map_err(refused)?;
    let leaf = webpki::EndEntityCert::try_from(leaf).map_err(refused)?;
    leaf.verify_for_usage(
        provider().signature_verification_algorithms.all,
        &[anchor],
        &[],
        now,
        CoordinatorUsage,
        None,
        None,
    )
    .map(|_| ())
    .map_err(refused)
}

/// Accepts a certificate for server authentication unless it carries [`GATEWAY_USAGE`].
struct NotGateway;

impl webpki::ExtendedKeyUsageValidator for NotGateway {
    fn validate(&self, iter: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let (mut server, mut gateway) = (false, false);
        for id in iter {
            let id = id?;
            server |= id == webpki::KeyPurposeId::new(SERVER_AUTH_DER);
            gateway |= id == webpki::KeyPurposeId::new(GATEWAY_USAGE_DER);
        }
        if server && !gateway {
            Ok(())
        } else {
            Err(webpki::Error::RequiredEkuNotFoundContext(webpki::RequiredEkuNotFoundContext {
                required: webpki::KeyUsage::required(SERVER_AUTH_DER),
                present: Vec::new(),
            }))
        }
    }
}

/// Checks that `leaf`, signed by `ca`, is not an S3 gateway's certificate (which a user may
/// have certified for any address): where a host is dialled, only a host may answer.
fn refuse_gateway_usage(
    leaf: &CertificateDer<'_>,
    ca: &CertificateDer<'_>,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    let refused = |e: webpki::Error| {
        rustls::Error::General(format!("the server's certificate is an S3 gateway's, not a host's ({e:?})"))
    };
    let anchor = webpki::anchor_from_trusted_cert(ca).map_err(refused)?;
    let leaf = webpki::EndEntityCert::try_from(leaf).map_err(refused)?;
    leaf.verify_for_usage(provider().signature_verification_algorithms.all, &[anchor], &[], now, NotGateway, None, None)
        .map(|_| ())
        .map_err(refused)
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The leaf is signed by the CA directly: intermediates are not passed on, so a chain
        // through some other certificate the server sends cannot be built.
        let (verifier, ca) = self.verifier(intermediates)?;
        let verified = verifier.verify_server_cert(
            end_entity,
            &[],
            self.name.as_ref().unwrap_or(server_name),
            ocsp_response,
            now,
        )?;
        if self.name.is_some() {
            require_coordinator_usage(end_entity, &ca, now)?;
        } else {
            refuse_gateway_usage(end_entity, &ca, now)?;
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}

/// Writes a file readable only by its owner, atomically (temp file, fsync, rename).
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_atomic(path, contents, 0o600)
}

/// Reads a small file a user names (a key file, a passphrase file), refusing one longer than
/// `limit` bytes before it is all read: `/dev/zero` or a wrong, huge file given by mistake
/// would otherwise fill memory.
pub fn read_small(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("it is longer than {limit} bytes, too long for what is asked for here"),
        ));
    }
    Ok(bytes)
}

/// Writes a file anyone may read (a certificate), atomically.
pub fn write_public(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_atomic(path, contents, 0o644)
}

/// Writes `path` with `mode` (whatever the umask), atomically (temp file, fsync, rename).
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    // Whatever is under the temporary name goes (a symlink itself, never what it points to),
    // and the file is created anew: `create_new` (O_EXCL) never follows a symlink, so one
    // planted in between fails the write instead of redirecting it.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode & 0o600);
    let mut f = opts.open(&tmp)?;
    #[cfg(unix)]
    if mode != mode & 0o600 {
        // Widened only once the file is ours (the umask would narrow a mode given to open).
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_loopback_addresses_and_localhost_itself_count_as_loopback() {
        for name in ["127.0.0.1", "::1", "127.8.9.10", "localhost"] {
            assert!(super::is_loopback(name), "{name}");
        }
        for name in ["bank.localhost", "localhost.example", "10.0.0.1", "example.com", "0.0.0.0"] {
            assert!(!super::is_loopback(name), "{name}");
        }
    }

    use super::*;

    /// `snapshots --metrics-file` writes into a collector's folder, which its service user
    /// (node_exporter's, say) may write to: a symlink planted there under the temporary
    /// name must not make the writer (root, from a timer) replace and chmod 0644 the file it
    /// points to.
    #[cfg(unix)]
    #[test]
    fn a_planted_symlink_at_the_temporary_name_is_not_written_through() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("shadow");
        std::fs::write(&victim, b"secret").expect("write");
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let out = dir.path().join("scatter.prom");
        std::os::unix::fs::symlink(&victim, out.with_extension("tmp")).expect("symlink");
        let _ = write_public(&out, b"metrics\n");
        assert_eq!(std::fs::read(&victim).expect("victim"), b"secret", "written through the symlink");
        let mode = std::fs::metadata(&victim).expect("victim").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the symlink's target was chmodded");
        assert_eq!(std::fs::read(&out).expect("written"), b"metrics\n");
        assert!(std::fs::symlink_metadata(&out).expect("out").file_type().is_file());
    }

    /// The contents octets of an OID.
    fn der(arcs: &[u64]) -> Vec<u8> {
        let mut out = vec![(arcs[0] * 40 + arcs[1]) as u8];
        for &a in &arcs[2..] {
            let mut groups = vec![(a & 0x7f) as u8];
            let mut rest = a >> 7;
            while rest > 0 {
                groups.push(0x80 | (rest & 0x7f) as u8);
                rest >>= 7;
            }
            out.extend(groups.iter().rev());
        }
        out
    }

    #[test]
    fn the_ca_certificate_is_public_and_its_key_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let mode =
            |name: &str| std::fs::metadata(dir.path().join(name)).expect("metadata").permissions().mode() & 0o777;
        Authority::load_or_create(dir.path()).expect("CA");
        assert_eq!((mode("ca.crt"), mode("ca.key")), (0o644, 0o600));
        // A certificate written 0600 by an older version is opened up on the next start.
        let cert = dir.path().join("ca.crt");
        std::fs::set_permissions(&cert, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        Authority::load_or_create(dir.path()).expect("CA again");
        assert_eq!((mode("ca.crt"), mode("ca.key")), (0o644, 0o600));
    }

    /// A TLS handshake over memory: `Ok` when the client accepts the server as `name`.
    async fn handshake(
        server: Arc<rustls::ServerConfig>,
        client: rustls::ClientConfig,
        name: &str,
    ) -> Result<(), String> {
        let (a, b) = tokio::io::duplex(64 << 10);
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let served = tokio::spawn(async move { acceptor.accept(b).await.map(|_| ()) });
        let name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
        let res = tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, a).await;
        served.abort();
        res.map(|_| ()).map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn a_gateway_certificate_is_refused_where_a_host_or_the_coordinator_is_dialled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Authority::load_or_create(dir.path()).expect("CA");
        let key = LeafKey::generate().expect("key");
        let gateway = ca.issue_gateway(&["127.0.0.1".into()], key.public_key()).expect("gateway certificate");
        let served = key.server_config(gateway, ca.cert().clone()).expect("server");
        for peer in [Peer::Host, Peer::Coordinator] {
            let err = handshake(served.clone(), client_config(ca.fingerprint(), peer), "127.0.0.1").await;
            assert!(err.is_err(), "a gateway's certificate passed as {peer:?}");
        }
        // The same address and key certified for a host is accepted as one.
        let host = ca.issue(&["127.0.0.1".into()], key.public_key()).expect("host certificate");
        let served = key.server_config(host, ca.cert().clone()).expect("server");
        handshake(served, client_config(ca.fingerprint(), Peer::Host), "127.0.0.1").await.expect("a host is a host");
        // And a gateway's certificate names only what a host's may.
        assert!(ca.issue_gateway(&["coordinator.scatter.internal".into()], key.public_key()).is_err());
        assert!(ca.issue_gateway(&[], key.public_key()).is_err());
    }

    /// A gateway's certificate lasts a week (a name an account gives up passes to another
    /// once they expire), and a running gateway presents a renewed one without a restart.
    #[tokio::test]
    async fn a_gateway_certificate_lasts_a_week_and_is_renewed_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Authority::load_or_create(dir.path()).expect("CA");
        let key = LeafKey::generate().expect("key");
        let first = ca.issue_gateway(&["127.0.0.1".into()], key.public_key()).expect("gateway certificate");
        let host = ca.issue(&["127.0.0.1".into()], key.public_key()).expect("host certificate");
        let mut roots = RootCertStore::empty();
        roots.add(ca.cert().clone()).expect("root");
        let roots = Arc::new(roots);
        let verifier =
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider()).build().expect("verifier");
        let start = UnixTime::now().as_secs();
        let after = |days: u64| UnixTime::since_unix_epoch(std::time::Duration::from_secs(start + days * 86_400));
        let name = ServerName::try_from("127.0.0.1").expect("name");
        verifier.verify_server_cert(&first, &[], &name, &[], after(6)).expect("valid for six days");
        assert!(verifier.verify_server_cert(&first, &[], &name, &[], after(8)).is_err(), "valid past a week");
        verifier.verify_server_cert(&host, &[], &name, &[], after(300)).expect("a host's lasts longer");

        let (served, current) = key.renewable_config(first, ca.cert().clone()).expect("server");
        let client = || {
            rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots.clone())
                .with_no_client_auth()
        };
        handshake(served.clone(), client(), "127.0.0.1").await.expect("the first certificate");
        assert!(handshake(served.clone(), client(), "localhost").await.is_err());
        let renewed = ca.issue_gateway(&["localhost".into()], key.public_key()).expect("renewed");
        current.renew(&key, renewed.clone(), ca.cert().clone()).expect("renew");
        assert_eq!(current.current()[0], renewed);
        handshake(served, client(), "localhost").await.expect("the renewed certificate, without a restart");
    }

    #[test]
    fn the_usage_oids_are_encoded_right() {
        assert_eq!(der(COORDINATOR_USAGE), COORDINATOR_USAGE_DER);
        assert_eq!(der(GATEWAY_USAGE), GATEWAY_USAGE_DER);
        assert_eq!(der(&[1, 3, 6, 1, 5, 5, 7, 3, 1]), SERVER_AUTH_DER);
    }

    #[test]
    fn host_names_are_plain_and_outside_the_coordinators_domain() {
        for ok in ["203.0.113.7", "[2001:db8::1]", "2001:db8::1", "host-1.example.org", "Storage.Example"] {
            assert!(check_host_name(ok).is_ok(), "{ok}");
        }
        assert_eq!(check_host_name("Storage.Example").ok().as_deref(), Some("storage.example"));
        for bad in [
            "",
            "*.scatter.internal",
            "*.example.org",
            "a.*.org",
            "host.example.",
            ".example",
            "a..b",
            "-a.example",
            "a-.example",
            "under_score.example",
            "hôte.example",
            "1.2.3",
            &"a".repeat(64),
        ] {
            assert!(matches!(check_host_name(bad), Err(TlsError::BadName(_))), "{bad}");
        }
        for reserved in
            ["scatter.internal", "coordinator.scatter.internal", "COORDINATOR.Scatter.Internal", "x.y.scatter.internal"]
        {
            assert!(matches!(check_host_name(reserved), Err(TlsError::Reserved(_))), "{reserved}");
        }
    }
}
