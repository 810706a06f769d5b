//! The dashboard's sessions and login links, tried as the attacker would with real
//! processes: a delegate watching its owner, and sessions and links that outlive what
//! signed them in (a revoked device, a disabled owner).

use std::path::{Path, PathBuf};

use crate::common;
use common::*;

/// A grid of one host with the dashboard on plain HTTP (loopback).
async fn dashboard_grid() -> (Env, String) {
    let opts = scatter_cli::grid::GridOptions {
        passphrase: "test passphrase".into(),
        coordinator_args: vec!["--dashboard".into(), "127.0.0.1:0".into()],
        ..Default::default()
    };
    let env = grid_with(1, opts).await;
    let base = dashboard_url(&env);
    (env, base)
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Bob (u2, a user) with a reader (u3) of his data, each with a profile of its own.
fn bob_and_reader(env: &Env) -> (PathBuf, PathBuf) {
    let bob = env.path("bob");
    let token = env.ok(&["admin", "user", "add", "bob", "--quota", "1GiB"]).trim().to_owned();
    ok(run(&bob, &["init", "--coordinator", env.grid.url(), "--token", &token], &[]), "bob init");
    let keys = env.path("bob.keys");
    let export = ["key", "export", "--output", utf8(&keys)];
    ok(run(&bob, &export, &[("SCATTER_EXPORT_PASSPHRASE", "moving")]), "export");
    let token = env.ok(&["admin", "user", "add", "reader", "--role", "reader", "--of", "u2"]).trim().to_owned();
    let reader = env.path("reader");
    let init = ["init", "--coordinator", env.grid.url(), "--token", &token, "--import", utf8(&keys)];
    ok(run(&reader, &init, &[("SCATTER_IMPORT_PASSPHRASE", "moving")]), "reader init");
    (bob, reader)
}

/// A browser of the dashboard at `base`, as plain requests.
struct Browser {
    http: reqwest::Client,
    base: String,
}

impl Browser {
    fn new(base: &str) -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        Self { http, base: base.to_owned() }
    }

    /// Signs in with `link` (as `scatter dashboard` prints it); the session cookie, or `None`
    /// when the link is refused.
    async fn sign_in(&self, link: &str) -> Option<String> {
        let token = link.split_once("/login#").expect("a login link").1.to_owned();
        let resp =
            self.http.post(format!("{}/login", self.base)).form(&[("token", token)]).send().await.expect("login");
        let set = resp.headers().get("set-cookie")?.to_str().ok()?.to_owned();
        Some(set.split(';').next().expect("a cookie").to_owned())
    }

    /// The status and text of `page` with `cookie`.
    async fn get(&self, page: &str, cookie: &str) -> (u16, String) {
        let resp = self.http.get(format!("{}{page}", self.base)).header("cookie", cookie).send().await.expect("get");
        (resp.status().as_u16(), resp.text().await.unwrap_or_default())
    }
}

fn link(dir: &Path) -> String {
    ok(run(dir, &["dashboard"], &[]), "dashboard link").trim().to_owned()
}

/// Attack: a delegate signs in to the dashboard to watch its owner's usage and quota, which
/// `scatter usage` (the API) refuses it: the page showed them.
#[tokio::test(flavor = "multi_thread")]
async fn a_delegate_does_not_see_its_owners_usage_on_the_dashboard() {
    let (env, base) = dashboard_grid().await;
    let (bob, reader) = bob_and_reader(&env);
    let file = env.write_random("data", 300 << 10, 1);
    ok(run(&bob, &["put", utf8(&file), "--name", "data"], &[]), "bob's put");
    let browser = Browser::new(&base);
    let cookie = browser.sign_in(&link(&reader)).await.expect("the reader signs in");
    let (status, page) = browser.get("/me", &cookie).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("working on u2"), "{page}");
    assert!(!page.contains("id=\"usage\"") && !page.contains("id=\"quota\""), "the reader sees bob's usage: {page}");
    // Bob does.
    let cookie = browser.sign_in(&link(&bob)).await.expect("bob signs in");
    let (_, page) = browser.get("/me", &cookie).await;
    assert!(page.contains("id=\"usage\"") && page.contains("1.0 GiB"), "{page}");
}

/// Attack: a delegate's session, and a login link made before, outlived its owner's
/// disabling: once the owner was enabled again they worked as before. And a link made by a
/// device still signed in after that device was revoked.
#[tokio::test(flavor = "multi_thread")]
async fn sessions_and_links_end_with_a_disabled_owner_or_a_revoked_device() {
    let (env, base) = dashboard_grid().await;
    let (bob, reader) = bob_and_reader(&env);
    let browser = Browser::new(&base);
    let session = browser.sign_in(&link(&reader)).await.expect("the reader signs in");
    assert_eq!(browser.get("/me", &session).await.0, 200);
    let unused = link(&reader);
    env.ok(&["admin", "user", "disable", "u2"]);
    env.ok(&["admin", "user", "enable", "u2"]);
    let (status, page) = browser.get("/me", &session).await;
    assert_eq!(status, 303, "a delegate's session outlived its owner's disabling: {page}");
    assert!(browser.sign_in(&unused).await.is_none(), "a link made before the owner was disabled signed in");

    // A second device of bob's makes a link and is revoked before it is used.
    let keys = env.path("bob.keys");
    let laptop = env.path("laptop");
    let invite = env.ok(&["admin", "user", "device", "u2"]).trim().to_owned();
    let init = ["init", "--coordinator", env.grid.url(), "--token", &invite, "--import", utf8(&keys)];
    ok(run(&laptop, &init, &[("SCATTER_IMPORT_PASSPHRASE", "moving")]), "laptop init");
    let taken = link(&laptop);
    let laptop_id = scatter_client::profile::Profile::load(&laptop).expect("profile").device().0.to_string();
    ok(run(&bob, &["key", "revoke", &laptop_id], &[]), "revoke");
    assert!(browser.sign_in(&taken).await.is_none(), "a revoked device's link signed in");
}

/// Attack: an unauthenticated peer sends a request with a credential that claims the
/// admin's device but is signed with a key of its own, under a method it names `h1` and a
/// query of its words. The refusal was recorded as the admin device's own event, with the
/// peer's text first, so the host operator's page (events whose detail starts with `h1 `)
/// showed the peer's message, signed `d1`.
#[tokio::test(flavor = "multi_thread")]
async fn a_forged_credential_writes_no_event_in_anothers_name_or_on_a_hosts_page() {
    let (env, base) = dashboard_grid().await;
    let (h1, _) = host(&env, 0);
    let grid = fingerprint(&env).0;
    let forger = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let target = "/v1/objects?your_host_is_being_disabled_call_555-0100";
    let method = h1.to_string();
    let request = scatter_proto::auth::Request { method: &method, target };
    let device = scatter_core::DeviceId(1);
    let cred = scatter_proto::auth::Credential::new(device, common::attacker::now() + 60, b"")
        .sign(&forger, &grid, request)
        .expect("sign");
    let http =
        scatter_net::http_client(Some(fingerprint(&env)), scatter_net::Peer::Coordinator).build().expect("client");
    let resp = http
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).expect("a method token"),
            format!("{}{target}", env.grid.url()),
        )
        .header("authorization", format!("Scatter {cred}"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 401);

    let events: serde_json::Value = serde_json::from_str(&env.ok(&["admin", "events", "--json"])).expect("JSON");
    let planted: Vec<_> = events
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["detail"].as_str().is_some_and(|d| d.contains("555-0100")))
        .collect();
    assert!(!planted.is_empty(), "the refusal is recorded: {events}");
    assert!(planted.iter().all(|e| e["actor"] == "unknown"), "a forged credential wrote in d1's name: {planted:?}");
    let host_dir = env.grid.host_dir(0);
    let args = ["dashboard", "--host-dir", utf8(&host_dir), "--coordinator", env.grid.url()];
    let operator = ok(run(&env.path("nobody"), &args, &[]), "host link").trim().to_owned();
    let browser = Browser::new(&base);
    let cookie = browser.sign_in(&operator).await.expect("the operator signs in");
    let (status, page) = browser.get("/host", &cookie).await;
    assert_eq!(status, 200, "{page}");
    assert!(!page.contains("555-0100"), "a peer's text reached the host's page: {page}");
}

/// Attack: an account keeps many snapshots (each costs a kilobyte of its quota) and asks for
/// its dashboard page on many connections without reading: the page listed every snapshot,
/// answered whole by a server outside the API's answer budget, so each connection held it.
/// The page now shows the newest 100 and says how many there are.
#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_lists_a_bounded_number_of_snapshots() {
    let (env, base) = dashboard_grid().await;
    let eve = common::attacker::Attacker::invite(&env, &["eve"]).await;
    let record = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 16]);
    for i in 0..130 {
        let session = eve.session().await;
        let body = serde_json::json!({ "session": session, "id": format!("{i:016x}{:048x}", 0), "record": record });
        let (status, body) = eve.post("/v1/snapshots/commit", &body).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = eve.post("/v1/dashboard/link", &serde_json::json!({})).await;
    assert_eq!(status, 200, "{body}");
    let browser = Browser::new(&base);
    let cookie = browser.sign_in(body["url"].as_str().expect("a link")).await.expect("eve signs in");
    let (status, page) = browser.get("/me", &cookie).await;
    assert_eq!(status, 200, "{page}");
    let rows = page.matches("<tr><td><code>").count();
    assert_eq!(rows, 100, "the page listed {rows} snapshots");
    assert!(page.contains("The newest 100 of 130 snapshots"), "{page}");
    // Newest first: the last one committed is on the page, the first is not.
    let shown = |i: u32| page.contains(&format!("<code>{i:016x}</code>"));
    assert!(shown(129) && shown(30) && !shown(29) && !shown(0), "{page}");
}
