//! Real TLS over 127.0.0.1: a client pinned to one grid's CA talks to that grid's servers and
//! refuses every other certificate.

use std::sync::Arc;

use scatter_net::tls::COORDINATOR_NAME;
use scatter_net::tls::{Authority, LeafKey};
use scatter_net::{http_client, serve::serve, Fingerprint, Peer};

/// Serves "ok" over TLS with `config` on a free port; returns the URL and a stopper.
async fn server(config: Arc<rustls::ServerConfig>) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("https://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    tokio::spawn(serve(listener, router, Some(config), async move {
        let _ = rx.await;
    }));
    (url, tx)
}

async fn get(fp: Fingerprint, url: &str) -> Result<String, String> {
    get_as(fp, Peer::Host, url).await
}

async fn get_as(fp: Fingerprint, peer: Peer, url: &str) -> Result<String, String> {
    let client = http_client(Some(fp), peer).build().map_err(|e| e.to_string())?;
    let resp = client.get(url).send().await.map_err(|e| format!("{e:?}"))?;
    resp.text().await.map_err(|e| e.to_string())
}

fn names() -> Vec<String> {
    vec!["127.0.0.1".into(), "localhost".into()]
}

#[tokio::test]
async fn pinned_client_accepts_its_grid_and_refuses_others() {
    let (dir_a, dir_b) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    let a = Authority::load_or_create(dir_a.path()).expect("ca a");
    let b = Authority::load_or_create(dir_b.path()).expect("ca b");
    assert_ne!(a.fingerprint(), b.fingerprint());
    // Loading again gives the same CA.
    assert_eq!(Authority::load_or_create(dir_a.path()).expect("reload").fingerprint(), a.fingerprint());

    // The coordinator's own certificate, and a host's (its key never leaves it).
    let (coord, _stop1) = server(a.coordinator_config().expect("config")).await;
    let host_key = LeafKey::generate().expect("key");
    let leaf = a.issue(&names(), host_key.public_key()).expect("issue");
    let (host, _stop2) = server(host_key.server_config(leaf, a.cert().clone()).expect("config")).await;
    assert_eq!(get_as(a.fingerprint(), Peer::Coordinator, &coord).await.expect("coordinator"), "ok");
    assert_eq!(get(a.fingerprint(), &host).await.expect("host"), "ok");
    // A host cannot pass itself off as the coordinator, nor obtain a certificate that would.
    get_as(a.fingerprint(), Peer::Coordinator, &host).await.expect_err("host posing as coordinator");
    for name in [
        COORDINATOR_NAME.to_owned(),
        format!("{COORDINATOR_NAME}."),
        COORDINATOR_NAME.to_uppercase(),
        "*.scatter.internal".into(),
        "*.internal".into(),
        "*".into(),
        "other.scatter.internal".into(),
        "scatter.internal".into(),
    ] {
        assert!(
            a.issue(std::slice::from_ref(&name), LeafKey::generate().expect("key").public_key()).is_err(),
            "{name}"
        );
        assert!(a.issue(&["10.0.0.1".into(), name.clone()], LeafKey::generate().expect("key").public_key()).is_err());
    }

    // Another grid's server is refused.
    let (other, _stop3) = server(b.coordinator_config().expect("config")).await;
    let err = get_as(a.fingerprint(), Peer::Coordinator, &other).await.expect_err("other grid");
    assert!(err.contains("not from this grid's CA"), "{err}");

    // A leaf from another CA presented next to the real (public) CA certificate is refused.
    let forger = LeafKey::generate().expect("key");
    let forged = b.issue(&names(), forger.public_key()).expect("issue");
    let (forgery, _stop4) = server(forger.server_config(forged, a.cert().clone()).expect("config")).await;
    get(a.fingerprint(), &forgery).await.expect_err("forged chain");

    // A certificate for another name is refused.
    let wrong_key = LeafKey::generate().expect("key");
    let wrong_leaf = a.issue(&["10.9.9.9".into()], wrong_key.public_key()).expect("issue");
    let (wrong_name, _stop5) = server(wrong_key.server_config(wrong_leaf, a.cert().clone()).expect("config")).await;
    get(a.fingerprint(), &wrong_name).await.expect_err("wrong name");

    // Plain HTTP is refused by a pinned client.
    let plain = coord.replace("https://", "http://");
    get_as(a.fingerprint(), Peer::Coordinator, &plain).await.expect_err("plain http");
}

/// The CA of `dir` as rcgen sees it, to sign what [`Authority::issue`] would refuse: the
/// certificates a host may hold from before names were restricted.
fn raw_issuer(dir: &std::path::Path) -> rcgen::Issuer<'static, rcgen::KeyPair> {
    let key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key")).expect("key")).expect("key");
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "Scatter grid");
    dn.push(rcgen::DnType::CommonName, "Scatter grid CA");
    params.distinguished_name = dn;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    rcgen::Issuer::new(params, key)
}

#[tokio::test]
async fn no_certificate_signed_for_a_host_passes_for_the_coordinator() {
    let dir = tempfile::tempdir().expect("tmp");
    let ca = Authority::load_or_create(dir.path()).expect("ca");
    let issuer = raw_issuer(dir.path());
    // Host certificates as an older coordinator signed them: server authentication only, for
    // names under scatter.internal (a wildcard, or the coordinator's own name in another case).
    for name in ["*.scatter.internal", COORDINATOR_NAME, "Coordinator.Scatter.Internal"] {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let leaf = params.signed_by(&key, &issuer).expect("sign").der().clone();
        let config = {
            let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
            let mut c = rustls::ServerConfig::builder_with_provider(scatter_net::tls::provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("tls 1.3")
                .with_no_client_auth()
                .with_single_cert(vec![leaf, ca.cert().clone()], der)
                .expect("config");
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(c)
        };
        let (url, _stop) = server(config).await;
        let err = get_as(ca.fingerprint(), Peer::Coordinator, &url).await.expect_err(name);
        assert!(err.contains("not the coordinator's"), "{name}: {err}");
    }
    // The coordinator's own certificate passes.
    let (url, _stop) = server(ca.coordinator_config().expect("config")).await;
    assert_eq!(get_as(ca.fingerprint(), Peer::Coordinator, &url).await.expect("coordinator"), "ok");
}

#[test]
fn issue_rejects_keys_that_are_not_p256_points() {
    let dir = tempfile::tempdir().expect("tmp");
    let ca = Authority::load_or_create(dir.path()).expect("ca");
    for bad in [&[][..], &[4u8; 64][..], &[5u8; 65][..], &[4u8; 66][..]] {
        assert!(ca.issue(&names(), bad).is_err());
    }
    assert!(ca.issue(&["hôte.example".into()], LeafKey::generate().expect("key").public_key()).is_err());
}

#[test]
fn damaged_ca_files_are_reported() {
    let dir = tempfile::tempdir().expect("tmp");
    Authority::load_or_create(dir.path()).expect("ca");
    std::fs::write(dir.path().join("ca.key"), "garbage").expect("write");
    let err = Authority::load_or_create(dir.path()).err().expect("damaged");
    assert!(err.to_string().contains("ca.key is damaged"), "{err}");
}

#[test]
fn fingerprints_round_trip_as_hex() {
    let fp = Fingerprint([7; 32]);
    assert_eq!(fp.to_string().parse::<Fingerprint>().expect("parse"), fp);
    assert!("zz".parse::<Fingerprint>().is_err());
}
