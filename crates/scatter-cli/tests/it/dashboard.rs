//! The web dashboard in a real headless browser (Debian's chromium through chromedriver),
//! against a live grid of real processes: every page renders the grid's own data, an admin
//! disables a user from the page and the CLI sees it, and the attacker's tries fail: a
//! signed-out browser, a non-admin, a host operator beyond its host, a used login link, a
//! missing or wrong CSRF token, a POST from another site, an expired session. An admin also
//! drains a host from the page, and a host's operator sees that host. A screenshot of each page is written under
//! `target/dashboard-screenshots/`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common;
use common::*;

use crate::common::browser;

/// Where screenshots go: `target/dashboard-screenshots/` of the workspace.
fn shots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

/// A login link printed by `scatter ARGS` run with the profile in `config`.
fn link(config: &std::path::Path, passphrase: &str, args: &[&str]) -> String {
    let out = ok(run_with_pass(config, passphrase, args), "dashboard link");
    let url = out.trim().to_owned();
    assert!(url.contains("/login#") && url.len() > 64, "a login link: {url}");
    url
}

/// `admin user ls --json`, the entry of `id`.
fn user(env: &Env, id: u64) -> serde_json::Value {
    let users: serde_json::Value = serde_json::from_str(&env.ok(&["admin", "user", "ls", "--json"])).expect("JSON");
    users.as_array().expect("users").iter().find(|u| u["id"] == id).cloned().expect("listed")
}

/// The CSRF token of the page a browser shows (the sign-out form has it).
fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    page[at..at + 64].to_owned()
}

/// The session cookie of a browser, as a Cookie header.
fn cookie(b: &browser::Browser) -> String {
    let c = b.cookies().into_iter().find(|c| c["name"] == "scatter-session").expect("a session cookie");
    assert_eq!(c["httpOnly"], true, "{c}");
    assert_eq!(c["sameSite"], "Strict", "{c}");
    format!("scatter-session={}", c["value"].as_str().expect("value"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_in_a_real_browser() {
    let opts = scatter_cli::grid::GridOptions {
        passphrase: "test passphrase".into(),
        coordinator_args: vec!["--dashboard".into(), "127.0.0.1:0".into()],
        ..Default::default()
    };
    let mut env = grid_with(4, opts).await;
    let base = dashboard_url(&env);
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let shots = shots();

    // Real data: a file, a snapshot, and a second user with a quota and data of its own.
    let file = env.write_random("data", 300_000, 1);
    env.put(&file, "data");
    let src = env.path("src");
    std::fs::create_dir_all(&src).expect("src");
    std::fs::write(src.join("a.txt"), b"hello").expect("file");
    let backup: serde_json::Value =
        serde_json::from_str(&env.ok(&["backup", src.to_str().expect("utf-8"), "--json"])).expect("JSON");
    let snapshot = backup["snapshot_id"].as_str().expect("snapshot id").to_owned();
    let bob = env.path("bob");
    let token = env.ok(&["admin", "user", "add", "bob", "--quota", "1GiB"]).trim().to_owned();
    ok(run(&bob, &["init", "--coordinator", env.grid.url(), "--token", &token], &[]), "bob init");
    ok(run(&bob, &["put", file.to_str().expect("utf-8"), "--name", "b"], &[]), "bob put");
    env.ok(&["admin", "user", "add", "carol"]);
    // A name is anyone's words: the page shows it as text, never as markup.
    env.ok(&["admin", "user", "add", "<img src=x id=xss>"]);

    // Charts need samples: the checker takes one every five checker intervals (10 s here).
    let catalog = env.grid.coordinator_dir().join("catalog.db");
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let db = rusqlite::Connection::open(&catalog).expect("catalog");
        let n: i64 = db.query_row("SELECT COUNT(*) FROM samples", [], |r| r.get(0)).expect("samples");
        if n >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the checker took {n} samples in 40 s");
        std::thread::sleep(Duration::from_millis(500));
    }

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");

    // Security headers on every answer, the login page's included.
    let resp = http.get(format!("{base}/login")).send().await.expect("login page");
    let h = resp.headers();
    let csp = h["content-security-policy"].to_str().expect("csp");
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cache-control"], "no-store");

    let driver = browser::Driver::start(&env.path("chromedriver.log"));
    let profile = |name: &str| {
        let p = env.path(&format!("browser-{name}"));
        std::fs::create_dir_all(&p).expect("profile");
        p
    };

    // Signed out: pages send the browser to the login page; actions are refused.
    let stranger = driver.browser(&profile("stranger"), &[]);
    for page in ["/", "/grid", "/users", "/me"] {
        stranger.open(&format!("{base}{page}"));
        stranger.wait_for_path("/login");
    }
    stranger.screenshot(&shots.join("login.png"));
    let resp =
        http.post(format!("{base}/users/disable")).form(&[("user", "u2"), ("csrf", "00")]).send().await.expect("post");
    assert_eq!(resp.status(), 401);

    // The admin signs in with a link from the CLI.
    let admin_link = link(&env.grid.client_dir(), env.grid.passphrase(), &["admin", "dashboard"]);
    let admin = driver.browser(&profile("admin"), &[]);
    admin.open(&admin_link);
    admin.wait_for_path("/grid");
    assert!(!admin.url().contains('#'), "the token left the address bar: {}", admin.url());
    let admin_cookie = cookie(&admin);

    // Every admin page, with the live grid's facts.
    let pages: [(&str, &[&str]); 6] = [
        ("/grid", &["live packs", "at full redundancy", "repair queue", "Bytes stored on hosts", "<svg", "online"]),
        ("/hosts", &["Zone zone-0", "h1", "h4", "online", "Drain", "passed"]),
        ("/users", &["bob", "1.0 GiB", "disable-u2", "admin", "enabled"]),
        ("/access", &["carol", "Devices", "d1"]),
        ("/events", &["user.registered", "user.invited", "host.joined", "dashboard.login"]),
        ("/me", &[&snapshot[..16], "Snapshots", "Your devices"]),
    ];
    for (page, facts) in pages {
        admin.open(&format!("{base}{page}"));
        let html = admin.source();
        for fact in facts {
            assert!(html.contains(fact), "{page} lacks `{fact}`:\n{html}");
        }
        let name = page.trim_start_matches('/');
        admin.screenshot(&shots.join(format!("{name}.png")));
    }
    admin.open(&format!("{base}/access"));
    let html = admin.source();
    assert!(html.contains("&lt;img src=x id=xss&gt;") && !html.contains("<img src=x"), "{html}");
    // Filters.
    admin.open(&format!("{base}/events?action=host.joined"));
    let text = admin.text();
    assert!(text.contains("host.joined") && !text.contains("user.invited"), "{text}");

    // A used link opens nothing, in another browser or the same.
    stranger.open(&admin_link);
    stranger.wait_for_text("was used already");
    stranger.screenshot(&shots.join("used-link.png"));
    assert!(stranger.cookies().iter().all(|c| c["name"] != "scatter-session"));

    // Bob (a user, not an admin) sees his own data and nothing of the grid's.
    let bob_link = link(&bob, THEIR_PASSPHRASE, &["dashboard"]);
    let bobs = driver.browser(&profile("bob"), &[]);
    bobs.open(&bob_link);
    bobs.wait_for_path("/me");
    let html = bobs.source();
    assert!(html.contains("bob (u2)") && html.contains("1.0 GiB"), "{html}");
    assert!(!html.contains("/users\""), "no admin links for bob: {html}");
    bobs.screenshot(&shots.join("user-me.png"));
    for page in ["/grid", "/hosts", "/users", "/access", "/events"] {
        bobs.open(&format!("{base}{page}"));
        let text = bobs.text();
        assert!(text.contains("may not administer the grid"), "{page}: {text}");
        assert!(!text.contains("carol"), "{page}: {text}");
    }
    bobs.screenshot(&shots.join("user-refused.png"));
    // ... nor act on it, even with his own valid session and CSRF token.
    bobs.open(&format!("{base}/me"));
    let (bob_cookie, bob_csrf) = (cookie(&bobs), csrf(&bobs.source()));
    let resp = http
        .post(format!("{base}/users/disable"))
        .header("cookie", &bob_cookie)
        .form(&[("user", "u1"), ("csrf", bob_csrf.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 403);
    assert_eq!(user(&env, 1)["disabled"], false);
    let resp = http
        .post(format!("{base}/hosts/drain"))
        .header("cookie", &bob_cookie)
        .form(&[("host", "h1"), ("csrf", bob_csrf.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 403);

    // A host's operator signs in with the host's secret and sees that host alone.
    let (h1, _) = host(&env, 0);
    let host_dir = env.grid.host_dir(0);
    let args = ["dashboard", "--host-dir", host_dir.to_str().expect("utf-8"), "--coordinator", env.grid.url()];
    let operator_link = link(&env.path("nobody"), THEIR_PASSPHRASE, &args);
    let operator = driver.browser(&profile("operator"), &[]);
    operator.open(&operator_link);
    operator.wait_for_path("/host");
    let html = operator.source();
    for fact in [format!("Host {h1}"), "online".into(), "audits".into(), "reputation".into(), "metering".into()] {
        assert!(html.contains(&fact), "the host page lacks `{fact}`:\n{html}");
    }
    operator.screenshot(&shots.join("host-operator.png"));
    let operator_csrf = csrf(&html);
    for page in ["/grid", "/users", "/me"] {
        operator.open(&format!("{base}{page}"));
        operator.wait_for_text("shows that host only");
    }
    let c = operator.cookies().into_iter().find(|c| c["name"] == "scatter-session").expect("cookie");
    let operator_cookie = format!("scatter-session={}", c["value"].as_str().expect("value"));
    let resp = http
        .post(format!("{base}/hosts/drain"))
        .header("cookie", &operator_cookie)
        .form(&[("host", "h2"), ("csrf", operator_csrf.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 403);
    // A user's session does not see the host page.
    bobs.open(&format!("{base}/host"));
    bobs.wait_for_text("for a host's operator");

    // The admin's own session, without its CSRF token, with a wrong one, or from another
    // site: refused, and nothing changes.
    admin.open(&format!("{base}/users"));
    let admin_csrf = csrf(&admin.source());
    let wrong = "0".repeat(64);
    for form in [vec![("user", "u2")], vec![("user", "u2"), ("csrf", wrong.as_str())]] {
        let resp = http
            .post(format!("{base}/users/disable"))
            .header("cookie", &admin_cookie)
            .form(&form)
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status(), 403, "{form:?}");
    }
    let resp = http
        .post(format!("{base}/users/disable"))
        .header("cookie", &admin_cookie)
        .header("origin", "https://evil.example")
        .form(&[("user", "u2"), ("csrf", admin_csrf.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 403);
    assert_eq!(user(&env, 2)["disabled"], false);
    let hosts = env.ok(&["admin", "host", "ls", "--json"]);
    assert!(!hosts.contains("draining"), "{hosts}");

    // The admin disables bob from the page: the CLI shows it, and bob's session is over.
    admin.open(&format!("{base}/users"));
    admin.click("#disable-u2");
    admin.wait_for_path("/users");
    // Bob is listed disabled (the post lands back on /users, so wait for the new page).
    admin.wait_for_source("enable-u2");
    assert_eq!(user(&env, 2)["disabled"], true);
    let out = run(&bob, &["ls"], &[]);
    assert!(!out.status.success(), "bob's CLI is refused too");
    bobs.open(&format!("{base}/me"));
    bobs.wait_for_path("/login");
    admin.screenshot(&shots.join("users-after-disable.png"));

    // The admin drains a host from the page (as `scatter admin host drain` would).
    let (h4, _) = host(&env, 3);
    admin.open(&format!("{base}/hosts"));
    admin.click(&format!("#drain-{h4}"));
    admin.wait_for_text("is draining");
    let hosts: serde_json::Value = serde_json::from_str(&env.ok(&["admin", "host", "ls", "--json"])).expect("JSON");
    let state = hosts.as_array().expect("hosts").iter().find(|h| h["id"] == h4.0).expect("h4")["state"].clone();
    assert!(state == "draining" || state == "retired", "{state}");

    // Two hosts die: the grid page lists the packs in the repair queue and says why repair
    // waits (one host left to take data cannot hold a 4+2 pack's shards).
    env.grid.kill_host(1);
    env.grid.kill_host(2);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        admin.open(&format!("{base}/grid"));
        let html = admin.source();
        if html.contains("<table id=\"repair-queue\">") && html.contains("<table id=\"repair-waits\">") {
            assert!(html.contains(" on h") && html.contains("(shard "), "the shards not counted are named: {html}");
            break;
        }
        assert!(Instant::now() < deadline, "the grid page never showed the repair queue and why it waits:\n{html}");
        std::thread::sleep(Duration::from_secs(1));
    }
    admin.screenshot(&shots.join("grid-degraded.png"));

    // An expired session (signed in longer ago than the absolute limit) is refused.
    let catalog = rusqlite::Connection::open(env.grid.coordinator_dir().join("catalog.db")).expect("catalog");
    catalog.execute("UPDATE dashboard_sessions SET created = 0", []).expect("age the sessions");
    drop(catalog);
    admin.open(&format!("{base}/grid"));
    admin.wait_for_path("/login");
    let resp = http
        .post(format!("{base}/users/enable"))
        .header("cookie", &admin_cookie)
        .form(&[("user", "u2"), ("csrf", admin_csrf.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 401);

    // Sign-out ends a session.
    let again = link(&env.grid.client_dir(), env.grid.passphrase(), &["admin", "dashboard"]);
    admin.open(&again);
    admin.wait_for_path("/grid");
    let before = cookie(&admin);
    admin.click("#signout");
    admin.wait_for_text("You are signed out");
    let resp = http.get(format!("{base}/grid")).header("cookie", &before).send().await.expect("get");
    assert_eq!(resp.status(), 303, "a signed-out session is sent to the login page");
}

#[test]
fn plain_http_beyond_loopback_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(EXE)
        .args(["coordinator", "--data-dir"])
        .arg(dir.path().join("c"))
        .args(["--listen", "127.0.0.1:0", "--dashboard", "0.0.0.0:0"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started: {err}");
    assert!(err.contains("not a loopback address") && err.contains("SSH tunnel"), "{err}");
    // A certificate without its key is refused too.
    let out = Command::new(EXE)
        .args(["coordinator", "--data-dir"])
        .arg(dir.path().join("d"))
        .args(["--listen", "127.0.0.1:0", "--dashboard", "127.0.0.1:0", "--dashboard-cert", "/nonexistent.pem"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("go together"), "{err}");
}

/// An operator's certificate for 127.0.0.1 from a CA of its own (as a public CA would issue
/// one): the chain and key as PEM files in `dir`, and the base64 SHA-256 of the key, which the
/// test browser is told to trust (`--ignore-certificate-errors-spki-list`) as a browser
/// trusts a public CA.
fn operator_certificate(dir: &std::path::Path) -> (PathBuf, PathBuf, String) {
    use base64::Engine;
    use rcgen::PublicKeyData;
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "Test operator CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("params");
    let cert = leaf.signed_by(&key, &issuer).expect("leaf");
    let (cert_path, key_path) = (dir.join("dashboard.crt"), dir.join("dashboard.key"));
    std::fs::write(&cert_path, format!("{}{}", cert.pem(), ca_cert.pem())).expect("write the chain");
    std::fs::write(&key_path, key.serialize_pem()).expect("write the key");
    let spki = ring::digest::digest(&ring::digest::SHA256, &key.subject_public_key_info());
    (cert_path, key_path, base64::engine::general_purpose::STANDARD.encode(spki.as_ref()))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_over_tls_with_the_operators_certificate() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key, spki) = operator_certificate(certs.path());
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
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let driver = browser::Driver::start(&env.path("chromedriver.log"));
    let profile = env.path("browser");
    std::fs::create_dir_all(&profile).expect("profile");
    let admin = driver.browser(&profile, &[format!("--ignore-certificate-errors-spki-list={spki}")]);
    admin.open(&link(&env.grid.client_dir(), env.grid.passphrase(), &["admin", "dashboard"]));
    admin.wait_for_path("/grid");
    assert!(admin.url().starts_with("https://"), "{}", admin.url());
    assert!(admin.source().contains("live packs"));
    let c = admin.cookies().into_iter().find(|c| c["name"] == "__Host-scatter-session").expect("the TLS cookie");
    assert_eq!(c["secure"], true, "{c}");
    assert_eq!(c["httpOnly"], true, "{c}");
    admin.screenshot(&shots().join("grid-tls.png"));
}
