//! Red-team tests of the day's new surface (restore resume, dashboard, copy, mount, config),
//! with real processes: each test is the attacker's try and asserts that it fails.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::common;
use common::*;

fn utf8(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut data = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

/// Two files whose names differ only past the 238 bytes a temporary name keeps share one
/// temporary name (`.PREFIX.scatter-partial`). A leftover under it, from an interrupted run,
/// is found for both: the first is resumed and renamed into place, and the second must not
/// then be "resumed" into the first's (now final) file, truncating it and writing its own
/// bytes there.
#[tokio::test(flavor = "multi_thread")]
async fn a_resumed_leftover_is_not_continued_into_a_file_already_restored() {
    let env = grid(6).await;
    let src = env.path("src");
    std::fs::create_dir_all(&src).expect("mkdir src");
    let stem = vec![b'n'; 240];
    let (a, b) = ([&stem[..], b"-a"].concat(), [&stem[..], b"-b"].concat());
    // The same first megabytes (so the same first chunks), different tails.
    let head = random(3 << 20, 1);
    let content_a = [&head[..], &random(2 << 20, 2)[..]].concat();
    let content_b = [&head[..], &random(2 << 20, 3)[..]].concat();
    std::fs::write(src.join(OsStr::from_bytes(&a)), &content_a).expect("write a");
    std::fs::write(src.join(OsStr::from_bytes(&b)), &content_b).expect("write b");
    env.ok(&["backup", utf8(&src)]);

    // What an interrupted restore leaves: the shared head under the shared temporary name.
    let target = env.path("restored");
    let at = target.join(src.strip_prefix("/").expect("absolute"));
    std::fs::create_dir_all(&at).expect("mkdir target");
    let leftover = [b".", &stem[..238], b".scatter-partial"].concat();
    assert_eq!(leftover.len(), 255);
    std::fs::write(at.join(OsStr::from_bytes(&leftover)), &head).expect("plant leftover");

    let out = env.scatter(&["restore", "latest", "--target", utf8(&target)]);
    let restored_a = std::fs::read(at.join(OsStr::from_bytes(&a))).unwrap_or_default();
    assert!(restored_a == content_a, "the first file holds wrong bytes after the restore");
    assert!(out.status.success(), "restore failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(at.join(OsStr::from_bytes(&b))).expect("b") == content_b, "b differs");
}

/// An operator's certificate for 127.0.0.1 (chain, key), from a CA of the test's own.
fn operator_certificate(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    let cert = leaf.signed_by(&key, &issuer).expect("leaf");
    let (cert_path, key_path) = (dir.join("dashboard.crt"), dir.join("dashboard.key"));
    std::fs::write(&cert_path, format!("{}{}", cert.pem(), ca_cert.pem())).expect("write the chain");
    std::fs::write(&key_path, key.serialize_pem()).expect("write the key");
    (cert_path, key_path)
}

/// Over TLS the session cookie is `__Host-scatter-session`: browsers accept it only from the
/// dashboard's own origin, over TLS. A cookie of the plain name (`scatter-session`) can be
/// set for the host by any other port of it, a sibling domain, or whoever answers a plain
/// `http://` request of the victim's (there is no HSTS); honoured, it signs the victim into
/// the attacker's session (or out of theirs). Over TLS the dashboard must ignore it.
#[tokio::test(flavor = "multi_thread")]
async fn over_tls_a_session_cookie_without_the_host_prefix_is_not_honoured() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key) = operator_certificate(certs.path());
    let opts = scatter_cli::grid::GridOptions {
        passphrase: "test passphrase".into(),
        coordinator_args: vec![
            "--dashboard".into(),
            "127.0.0.1:0".into(),
            "--dashboard-cert".into(),
            cert.to_string_lossy().into_owned(),
            "--dashboard-key".into(),
            key.to_string_lossy().into_owned(),
        ],
        ..Default::default()
    };
    let env = grid_with(1, opts).await;
    let base = dashboard_url(&env);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client");
    // The attacker's own session (any account's: here the grid's user, an admin).
    let url = env.ok(&["admin", "dashboard"]).trim().to_owned();
    let token = url.split_once("/login#").expect("a login link").1.to_owned();
    let resp = http.post(format!("{base}/login")).form(&[("token", token)]).send().await.expect("login");
    let set = resp.headers().get("set-cookie").and_then(|v| v.to_str().ok()).expect("a cookie").to_owned();
    let value = set
        .strip_prefix("__Host-scatter-session=")
        .and_then(|r| r.split(';').next())
        .expect("the TLS cookie")
        .to_owned();
    let page = |cookie: String| {
        let http = http.clone();
        let base = base.clone();
        async move { http.get(format!("{base}/grid")).header("cookie", cookie).send().await.expect("get").status() }
    };
    assert_eq!(page(format!("__Host-scatter-session={value}")).await, 200, "the real cookie works");
    let tossed = page(format!("scatter-session={value}")).await;
    assert!(tossed.is_redirection(), "a session from a cookie without the __Host- prefix was honoured: {tossed}");
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("JSON")
}

/// An untrusted appender's snapshot is never `latest` in its owner's account (README, threat
/// model). `scatter copy SNAPSHOT` of it commits the copy with the copier's own device, so in
/// the destination it is a trusted snapshot of the owner's: its claimed host, paths and time
/// make it `latest` there (and a backup's parent, and what `recover` uses), and its content
/// is restored by `restore latest`. Laundered: nothing in the destination remembers whose it
/// was.
#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_appenders_snapshot_is_not_laundered_by_copy() {
    let env = grid(3).await;
    let home = env.path("home");
    std::fs::create_dir_all(&home).expect("mkdir");
    std::fs::write(home.join("authorized_keys"), b"ssh-ed25519 AAAA-owner\n").expect("write");
    let own = json(&env.ok(&["backup", utf8(&home), "--hostname", "server", "--json"]));
    let own = own["snapshot_id"].as_str().expect("id").to_owned();

    // The appender (not trusted) claims the same host and path, later, with its own key.
    let laptop = appender(&env, "laptop", &[]);
    std::fs::write(home.join("authorized_keys"), b"ssh-ed25519 AAAA-mallory\n").expect("write");
    let theirs = json(&ok(run(&laptop, &["backup", utf8(&home), "--hostname", "server", "--json"], &[]), "backup"));
    let theirs = theirs["snapshot_id"].as_str().expect("id").to_owned();

    // The owner mirrors both snapshots into a second account, by id.
    let token = env.ok(&["admin", "user", "add", "dora", "--role", "user"]).trim().to_owned();
    let dora = env.path("dora");
    ok(run(&dora, &["init", "--coordinator", env.grid.url(), "--token", &token], &[]), "dora init");
    // Named by id, the delegate's snapshot is refused (the copy would be the destination's
    // own, trusted, snapshot): nothing is copied.
    let copy = |ids: &[&str]| {
        let mut args = vec!["copy"];
        args.extend_from_slice(ids);
        args.extend_from_slice(&["--to", utf8(&dora)]);
        run_with(&env.grid.client_dir(), env.grid.passphrase(), &args, &[("SCATTER_TO_PASSPHRASE", THEIR_PASSPHRASE)])
    };
    let refused = copy(&[&own, &theirs]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(err.contains("do not trust") && !err.contains("panicked"), "{err}");
    let none = json(&ok(run(&dora, &["snapshots", "--json"], &[]), "dora snapshots"));
    assert_eq!(none.as_array().map(Vec::len), Some(0), "{none}");
    // Copying everything takes the owner's own snapshots only.
    ok(copy(&[]), "copy");

    let target = env.path("restored");
    ok(run(&dora, &["restore", "latest", "--target", utf8(&target)], &[]), "restore latest in the destination");
    let keys = std::fs::read(target.join(home.strip_prefix("/").expect("absolute")).join("authorized_keys"))
        .expect("restored");
    assert!(
        String::from_utf8_lossy(&keys).contains("owner"),
        "the untrusted appender's snapshot became `latest` in the destination"
    );
}

/// A snapshot may hold a file named like another's temporary file (`X` and
/// `.X.scatter-partial`: a backup taken while a restore or get was under way there, or a
/// hostile writer's). Restoring it, the one must not take the other's place or bytes, on a
/// first run or on a rerun after an interrupted one (a leftover of `X` under the name).
#[tokio::test(flavor = "multi_thread")]
async fn a_file_named_like_anothers_temporary_file_is_restored_as_itself() {
    let env = grid(6).await;
    let src = env.path("src");
    std::fs::create_dir_all(&src).expect("mkdir src");
    let head = random(3 << 20, 11);
    let content_x = [&head[..], &random(2 << 20, 12)[..]].concat();
    let content_p = random(1 << 20, 13);
    std::fs::write(src.join("x.bin"), &content_x).expect("write x");
    std::fs::write(src.join(".x.bin.scatter-partial"), &content_p).expect("write p");
    env.ok(&["backup", utf8(&src)]);

    let check = |target: &Path, what: &str| {
        let at = target.join(src.strip_prefix("/").expect("absolute"));
        let x = std::fs::read(at.join("x.bin")).unwrap_or_default();
        let p = std::fs::read(at.join(".x.bin.scatter-partial")).unwrap_or_default();
        assert!(x == content_x, "{what}: x.bin holds wrong bytes ({} bytes)", x.len());
        assert!(p == content_p, "{what}: .x.bin.scatter-partial holds wrong bytes ({} bytes)", p.len());
    };
    // A first restore.
    let fresh = env.path("fresh");
    env.ok(&["restore", "latest", "--target", utf8(&fresh)]);
    check(&fresh, "a first restore");

    // A rerun where an interrupted run left x.bin's start under its temporary name.
    let target = env.path("restored");
    let at = target.join(src.strip_prefix("/").expect("absolute"));
    std::fs::create_dir_all(&at).expect("mkdir target");
    std::fs::write(at.join(".x.bin.scatter-partial"), &head).expect("plant leftover");
    env.ok(&["restore", "latest", "--target", utf8(&target)]);
    check(&target, "a rerun");
}
