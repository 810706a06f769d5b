//! Hostile transport (issue 13, attacks 5 and 7), with real processes and real TLS on
//! 127.0.0.1: a host cannot get a certificate that passes for the coordinator, a captured
//! credential is good for one request only, unauthenticated floods do not exhaust the
//! coordinator's memory, uploads trickling in do not starve a host's readers, and silent
//! connections up to every connection limit do not shut anyone out.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{coordinator_key, fingerprint, grid, grid_with, host, peak_rss, shard_files, Env, EXE};
use ed25519_dalek::SigningKey;
use scatter_core::ShardId;
use scatter_proto::api::{HostCertRequest, InviteRequest, JoinRequest, JoinResponse, Role, GRANT_HEADER};
use scatter_proto::{Grant, Op};

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

fn client(env: &Env, peer: scatter_net::Peer) -> reqwest::Client {
    scatter_net::http_client(Some(fingerprint(env)), peer).timeout(Duration::from_secs(120)).build().expect("client")
}

/// A grid with no hosts: enough for everything that only talks to the coordinator.
async fn coordinator_only() -> Env {
    grid_with(0, scatter_cli::grid::GridOptions { passphrase: "test passphrase".into(), ..Default::default() }).await
}

/// Serves every request with `answer`, over TLS with `config`, on a free port; returns the URL
/// and the requests seen (method, path with query, authorization header, body).
type Seen = Arc<Mutex<Vec<(String, String, Option<String>, Vec<u8>)>>>;

async fn fake_server(config: Arc<rustls::ServerConfig>) -> (String, Seen, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("https://{}", listener.local_addr().expect("addr"));
    let seen: Seen = Default::default();
    let log = seen.clone();
    let router = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let log = log.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
            let auth = parts.headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let target = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
            log.lock().expect("lock").push((parts.method.to_string(), target, auth, body.to_vec()));
            (axum::http::StatusCode::SERVICE_UNAVAILABLE, "{\"code\":\"busy\",\"error\":\"try later\"}")
        }
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(scatter_net::serve::serve(listener, router, Some(config), async move {
        let _ = rx.await;
    }));
    (url, seen, tx)
}

#[tokio::test(flavor = "multi_thread")]
async fn no_host_certificate_passes_for_the_coordinator() {
    let env = coordinator_only().await;
    let base = env.grid.url().to_owned();
    let http = client(&env, scatter_net::Peer::Coordinator);
    let join_token = std::fs::read_to_string(env.grid.coordinator_dir().join("join-token")).expect("token");
    let ca_pem = std::fs::read_to_string(env.grid.coordinator_dir().join("ca.crt")).expect("ca");
    let ca = scatter_net::tls::parse_pem_cert(&ca_pem).expect("ca cert");

    let (mut certified, mut posed) = (Vec::new(), Vec::new());
    let hostile = [
        "https://*.scatter.internal:7100",
        "https://*.internal:7100",
        "https://coordinator.scatter.internal.:7100",
        "https://Coordinator.Scatter.Internal:7100",
        "https://x.scatter.internal:7100",
        "https://scatter.internal:7100",
        "https://127.0.0.1:7100",
    ];
    for address in hostile {
        // A host joins with the hostile address (or is refused already)...
        let join = JoinRequest {
            join_token: join_token.trim().to_owned(),
            address: address.into(),
            zone: "z".into(),
            capacity: scatter_core::ByteSize(1 << 30),
            receipt_key: None,
            terms: Default::default(),
        };
        let resp = http.post(format!("{base}/v1/hosts/join")).json(&join).send().await.expect("join");
        if !resp.status().is_success() {
            continue;
        }
        let joined: JoinResponse = resp.json().await.expect("join answer");
        // ...and asks for a certificate for it.
        let key = scatter_net::tls::LeafKey::generate().expect("key");
        let req = HostCertRequest {
            host_id: joined.host_id,
            host_secret: joined.host_secret,
            address: address.into(),
            public_key: hex::encode(key.public_key()),
        };
        let resp = http.post(format!("{base}/v1/hosts/cert")).json(&req).send().await.expect("cert");
        if !resp.status().is_success() {
            let text = resp.text().await.unwrap_or_default();
            assert!(!address.contains("127.0.0.1"), "a plain IP address was refused: {text}");
            assert!(text.contains("cannot be put in a"), "{address}: {text}");
            continue;
        }
        let cert: scatter_proto::api::HostCertResponse = resp.json().await.expect("cert answer");
        let leaf = scatter_net::tls::parse_pem_cert(&cert.certificate).expect("leaf");
        certified.push(address);
        // Whatever it was certified for, the host serves with it and poses as the coordinator.
        let (url, seen, _stop) = fake_server(key.server_config(leaf, ca.clone()).expect("config")).await;
        let answered = http.get(format!("{url}/v1/status")).send().await;
        if answered.is_ok() || !seen.lock().expect("lock").is_empty() {
            posed.push(address);
        }
    }
    // Only the plain IP address may be certified, and even that host is no coordinator.
    assert_eq!(certified, vec!["https://127.0.0.1:7100"], "hosts were certified for these names");
    assert!(posed.is_empty(), "hosts passed for the coordinator with certificates for {posed:?}");
}

/// Runs `scatter ARGS` with the profile in `config`, bounded in time.
fn scatter_in(config: &std::path::Path, args: &[&str], passphrase: &str) -> std::process::Output {
    let mut child = std::process::Command::new(EXE)
        .args(args)
        .env("SCATTER_CONFIG", config)
        .env("SCATTER_PASSPHRASE", passphrase)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn scatter");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("scatter {args:?} did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_captured_credential_is_good_for_its_one_request_only() {
    let env = coordinator_only().await;
    let base = env.grid.url().to_owned();
    // A credential captured in flight: a real client talks to an impostor that has a
    // coordinator certificate (the test holds the CA key; an attacker would need some other
    // way to see the traffic, such as a TLS-terminating proxy or the client's machine).
    let authority = scatter_net::tls::Authority::load_or_create(&env.grid.coordinator_dir()).expect("ca");
    let (fake, seen, _stop) = fake_server(authority.coordinator_config().expect("config")).await;
    let copy = env.path("captured-client");
    std::fs::create_dir_all(&copy).expect("dir");
    for f in std::fs::read_dir(env.grid.client_dir()).expect("client dir").flatten() {
        if f.path().is_file() {
            std::fs::copy(f.path(), copy.join(f.file_name())).expect("copy");
        }
    }
    let profile = std::fs::read_to_string(copy.join("profile.toml")).expect("profile");
    std::fs::write(copy.join("profile.toml"), profile.replace(&base, &fake)).expect("profile");
    // The same command twice: two credentials for the same request.
    for _ in 0..2 {
        let out = scatter_in(&copy, &["ls"], env.grid.passphrase());
        assert!(!out.status.success(), "the impostor answered nothing useful");
    }
    let captured: Vec<_> = seen.lock().expect("lock").iter().filter(|r| r.2.is_some()).cloned().collect();
    assert_eq!(captured.len(), 2, "captured {captured:?}");
    let (method, target, _, body) = captured[0].clone();
    assert_eq!((&captured[1].0, &captured[1].1, &captured[1].3), (&method, &target, &body));
    let (first, second) = (captured[0].2.clone().expect("auth"), captured[1].2.clone().expect("auth"));

    let http = client(&env, scatter_net::Peer::Coordinator);
    let send = |auth: &str, method: &str, target: &str, body: Vec<u8>| {
        http.request(method.parse().expect("method"), format!("{base}{target}"))
            .header("authorization", auth)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let refused = |status: reqwest::StatusCode, text: &str, what: &str, needle: &str| {
        assert_eq!(status.as_u16(), 401, "{what}: {status} {text}");
        assert!(text.contains(needle), "{what}: {text}");
    };
    // Replayed for another purpose: an admin invite, another path, another query.
    let invite = InviteRequest { name: "mallory".into(), role: Role::Admin, quota: None, owner: None, trusted: false };
    let invite = serde_json::to_vec(&invite).expect("json");
    let other_query = if target.contains('?') { format!("{target}x") } else { format!("{target}?prefix=x") };
    for (m, t, b) in [
        ("POST", "/v1/admin/users", invite.clone()),
        ("GET", "/v1/admin/users", Vec::new()),
        ("GET", "/v1/status", Vec::new()),
        (method.as_str(), other_query.as_str(), body.clone()),
    ] {
        let resp = send(&first, m, t, b).await.expect("request");
        let status = resp.status();
        refused(status, &resp.text().await.unwrap_or_default(), &format!("{m} {t}"), "not signed");
    }
    // The request it was made for goes through once (it is the user's own, delivered late),
    // and never again.
    let once = send(&first, &method, &target, body.clone()).await.expect("request");
    assert!(once.status().is_success(), "the captured request itself: {}", once.status());
    let again = send(&first, &method, &target, body.clone()).await.expect("request");
    let status = again.status();
    refused(status, &again.text().await.unwrap_or_default(), "the same request replayed", "already been used");
    // With another body, the credential is refused, and spent: the attacker gets one try.
    let tampered = send(&second, &method, &target, b"{\"tampered\":1}".to_vec()).await.expect("request");
    let status = tampered.status();
    refused(status, &tampered.text().await.unwrap_or_default(), "another body", "not the one its credential");
    let after = send(&second, &method, &target, body.clone()).await.expect("request");
    let status = after.status();
    refused(status, &after.text().await.unwrap_or_default(), "after a tampered try", "already been used");

    // No admin was invited along the way.
    let users = env.ok(&["admin", "user", "ls"]);
    assert!(!users.contains("mallory"), "{users}");

    // A credential in the old format is refused with a sentence that says what to do.
    let old = old_format_credential(&env);
    let resp = http.get(format!("{base}/v1/status")).header("authorization", old).send().await.expect("request");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(status.as_u16(), 401, "an old-format credential: {status} {text}");
    assert!(text.contains("older scatter client"), "{text}");

    // Guessing is throttled: after a burst of failures the address gets 429, before any
    // credential is checked.
    let mut throttled = false;
    for i in 0..80 {
        let resp = http
            .get(format!("{base}/v1/status"))
            .header("authorization", format!("Scatter {}", "A".repeat(100 + i)))
            .send()
            .await
            .expect("request");
        if resp.status().as_u16() == 429 {
            throttled = true;
            break;
        }
    }
    assert!(throttled, "80 failed authentications in a row were never throttled");
    // Only failures are: the user's own requests from the same address (a NAT shared with
    // the guesser) authenticate and go through.
    env.ok(&["admin", "user", "ls"]);
}

/// Attack: a peer behind the same address as the users and the hosts (a NAT, a shared
/// machine) sends garbage credentials until the address is throttled. Before, every request
/// from it was refused, hosts' heartbeats too: every host went offline, and repair began.
/// Now requests that authenticate go through; only failures are throttled.
#[tokio::test(flavor = "multi_thread")]
async fn guessing_from_a_shared_address_locks_out_no_user_and_no_host() {
    let env = grid(3).await;
    let http = client(&env, scatter_net::Peer::Coordinator);
    let base = env.grid.url().to_owned();
    let mut throttled = 0;
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < until {
        let resp = http
            .get(format!("{base}/v1/status"))
            .header("authorization", "Scatter AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
            .send()
            .await
            .expect("request");
        throttled += usize::from(resp.status().as_u16() == 429);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(throttled > 0, "the garbage was never throttled");
    env.ok(&["status"]);
    let hosts = env.ok(&["admin", "host", "ls"]);
    assert_eq!(hosts.matches(" online ").count(), 3, "hosts went offline while their address was throttled: {hosts}");
}

/// A credential as clients before version 2 made them: `SAU1 | user | expires | signature`.
fn old_format_credential(env: &Env) -> String {
    use base64::Engine;
    let profile = env.grid.profile();
    let mut seed = [0u8; 32];
    hex::decode_to_slice(&profile.device_key, &mut seed).expect("device key");
    let key = SigningKey::from_bytes(&seed);
    let expires = now() + 120;
    let mut signed = b"SAU1".to_vec();
    signed.extend_from_slice(&fingerprint(env).0);
    signed.extend_from_slice(&profile.user_id.0.to_be_bytes());
    signed.extend_from_slice(&expires.to_be_bytes());
    let sig = ed25519_dalek::Signer::sign(&key, &signed);
    let mut raw = b"SAU1".to_vec();
    raw.extend_from_slice(&profile.user_id.0.to_be_bytes());
    raw.extend_from_slice(&expires.to_be_bytes());
    raw.extend_from_slice(&sig.to_bytes());
    format!("Scatter {}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
}

#[tokio::test(flavor = "multi_thread")]
async fn large_unauthenticated_bodies_do_not_exhaust_the_coordinator() {
    let env = coordinator_only().await;
    let base = env.grid.url().to_owned();
    let pid = env.grid.coordinator_pid().expect("coordinator runs");
    let before = peak_rss(pid);
    let http = client(&env, scatter_net::Peer::Coordinator);
    let body = bytes::Bytes::from(vec![b' '; 64 << 20]);
    let garbage = format!("Scatter {}", "A".repeat(176));
    let targets: [(&str, Option<&str>); 6] = [
        ("/v1/hosts/join", None),
        ("/v1/users/register", None),
        ("/v1/hosts/inventory", None),
        ("/v1/hosts/heartbeat", None),
        ("/v1/objects/commit", None),
        ("/v1/snapshots/refs", Some(garbage.as_str())),
    ];
    let mut attackers = Vec::new();
    for i in 0..16usize {
        let (path, auth) = targets[i % targets.len()];
        let (http, url, body, auth) = (http.clone(), format!("{base}{path}"), body.clone(), auth.map(str::to_owned));
        attackers.push(tokio::spawn(async move {
            for round in 0..2 {
                let mut req = http.post(&url).header("content-type", "application/json");
                if let Some(a) = &auth {
                    req = req.header("authorization", a);
                }
                // Half declare their length, half stream it in chunks without one.
                req = if (i + round) % 2 == 0 {
                    req.body(body.clone())
                } else {
                    let parts: Vec<Result<bytes::Bytes, std::io::Error>> =
                        (0..64).map(|k| Ok(body.slice(k << 20..(k + 1) << 20))).collect();
                    req.body(reqwest::Body::wrap_stream(futures::stream::iter(parts)))
                };
                let _ = req.send().await;
            }
        }));
    }
    for a in attackers {
        tokio::time::timeout(Duration::from_secs(240), a).await.expect("attackers finish").expect("task");
    }
    let peak = peak_rss(pid);
    eprintln!("the coordinator's peak memory: {} MiB before the flood, {} MiB after", before >> 20, peak >> 20);
    assert!(peak < 300 << 20, "the coordinator's peak memory went from {} MiB to {} MiB", before >> 20, peak >> 20);
    // Unauthenticated requests are small: 64 KiB is already refused, unread.
    let resp = http
        .post(format!("{base}/v1/users/register"))
        .header("content-type", "application/json")
        .body(vec![b' '; 64 << 10])
        .send()
        .await
        .expect("request");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(status.as_u16(), 413, "{text}");
    assert!(text.contains("larger than this request takes"), "{text}");
    // And it still serves its users.
    env.ok(&["ls"]);
}

/// One unauthenticated connection that declares the largest body a route takes (a host
/// inventory, 64 MiB) and trickles it just above the minimum rate held the whole room such
/// requests share; every host's heartbeat waited on it, and all went offline within seconds.
/// Hosts now name themselves in a header, checked before the body, and draw on the room of
/// authenticated requests.
#[tokio::test(flavor = "multi_thread")]
async fn a_trickled_unauthenticated_body_does_not_take_hosts_offline() {
    let env =
        grid_with(3, scatter_cli::grid::GridOptions { passphrase: "test passphrase".into(), ..Default::default() })
            .await;
    let url = format!("{}/v1/hosts/inventory", env.grid.url());
    let http = client(&env, scatter_net::Peer::Coordinator);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attacker = tokio::spawn(
        http.post(&url)
            .header("content-type", "application/json")
            .header("content-length", (64u64 << 20).to_string())
            .body(reqwest::Body::wrap_stream(trickle(stop.clone())))
            .send(),
    );
    hosts_stay_online(&env, 3, None, "an unauthenticated body trickled in").await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    attacker.abort();
    // A host header with a wrong secret is refused before anything is read.
    for value in ["1 not-the-secret", "1", "h1 secret"] {
        let resp =
            http.post(&url).header(scatter_proto::api::HOST_HEADER, value).body("{}").send().await.expect("send");
        assert_eq!(resp.status().as_u16(), 401, "{value}");
    }
}

/// A body that arrives 8 KiB every 100 ms (above the coordinator's minimum rate) until `stop`.
fn trickle(
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    futures::stream::unfold((), move |()| {
        let stop = stop.clone();
        async move {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 8 << 10])), ()))
        }
    })
}

/// Asserts that the `n` hosts other than `attacker` stay online for 12 s (the offline grace
/// is 4 s and hosts beat every second: three graces) while `what`.
async fn hosts_stay_online(env: &Env, n: usize, attacker: Option<u64>, what: &str) {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(12) {
        let status: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--json"])).expect("status JSON");
        let hosts = status["hosts"].as_array().expect("hosts");
        let others = hosts.iter().filter(|h| h["id"].as_u64() != attacker);
        let online = others.filter(|h| h["state"] == "online").count();
        assert_eq!(online, n, "hosts went offline while {what}: {status}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A host may send its inventory, the largest body there is (64 MiB), and the hosts' bodies
/// share a room of their own: one host trickling two of them held it all, every other
/// host's heartbeat waited on it, and the whole grid went offline. A host's bodies take at
/// most its share of that room, and heartbeats have a room of their own.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_trickling_inventories_does_not_take_the_others_offline() {
    let env =
        grid_with(3, scatter_cli::grid::GridOptions { passphrase: "test passphrase".into(), ..Default::default() })
            .await;
    let identity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.grid.host_dir(0).join("host.json")).expect("host.json"))
            .expect("json");
    let header = format!("{} {}", identity["host_id"], identity["host_secret"].as_str().expect("secret"));
    let url = format!("{}/v1/hosts/inventory", env.grid.url());
    let http = client(&env, scatter_net::Peer::Coordinator);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tricklers: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(
                http.post(&url)
                    .header(scatter_proto::api::HOST_HEADER, &header)
                    .header("content-type", "application/json")
                    .header("content-length", (64u64 << 20).to_string())
                    .body(reqwest::Body::wrap_stream(trickle(stop.clone())))
                    .send(),
            )
        })
        .collect();
    // The trickling host may hold up its own heartbeats, no other's.
    hosts_stay_online(&env, 2, identity["host_id"].as_u64(), "a host trickled two inventories").await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tricklers {
        t.abort();
    }
}

/// Any account may send large bodies, which the coordinator reads only after the
/// credential in the headers checks out: two 64 MiB commits trickled just above the minimum
/// rate held the whole room that bodies in flight share, every host's heartbeat waited on it,
/// and all went offline within seconds, and every other account's writes were refused after
/// 30 s. Hosts' requests now have a room of their own, and an account a share of the users'.
#[tokio::test(flavor = "multi_thread")]
async fn an_account_trickling_large_bodies_does_not_take_hosts_offline() {
    let env =
        grid_with(3, scatter_cli::grid::GridOptions { passphrase: "test passphrase".into(), ..Default::default() })
            .await;
    let mallory = common::attacker::Attacker::invite(&env, &["mallory"]).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tricklers: Vec<_> = (0..2).map(|_| mallory.trickle("/v1/packs/commit", 64 << 20, stop.clone())).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Read from /metrics, which takes no body: users' requests wait on the room the
    // attacker holds (that an account can hold up the others' writes is left to the 30 s
    // after which they are told to retry).
    let http = client(&env, scatter_net::Peer::Coordinator);
    let metrics = format!("{}/metrics", env.grid.url());
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(12) {
        let text = http.get(&metrics).send().await.expect("metrics").text().await.expect("text");
        let online = text
            .lines()
            .filter(|l| l.starts_with("scatter_host_up{") && l.contains("state=\"online\"") && l.ends_with(" 1"))
            .count();
        assert_eq!(online, 3, "hosts went offline while an account trickled large bodies:\n{text}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // And another account still writes: one account's bodies take at most three quarters
    // of the room users share (its second 64 MiB body waits on its own share).
    let file = env.write_random("another account's", 300_000, 5);
    let started = Instant::now();
    env.put(&file, "written meanwhile");
    assert!(started.elapsed() < Duration::from_secs(20), "the put waited {:?}", started.elapsed());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tricklers {
        t.abort();
    }
}

/// A host takes a catalog backup shard only under the coordinator's grant for it, checked
/// before the body is read. Without one, anyone could trickle an upload into every host's one
/// slot for these and hold it for hours (catalog backups then failed, "busy"), making the host
/// take up to 512 MiB into memory on the way.
#[tokio::test(flavor = "multi_thread")]
async fn catalog_backup_uploads_need_the_coordinators_grant() {
    let env = grid(4).await;
    let http = client(&env, scatter_net::Peer::Host);
    let key = coordinator_key(&env);
    for i in 0..4 {
        let (h, url) = host(&env, i);
        // No grant, then a data shard's put grant naming the same id: the wrong operation.
        let shard = scatter_proto::grant::catalog_shard(900, 0);
        let data = Grant { host: h, shard, op: Op::Put, max_size: 64 << 20, expires: now() + 600, nonce: 0 };
        for grant in [None, Some(data.sign(&key).0)] {
            let slow = futures::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Some((Ok::<_, std::io::Error>(vec![0u8]), ()))
            });
            let mut req = http
                .put(format!("{url}/catalog/900/0"))
                .header("content-length", (64u64 << 20).to_string())
                .body(reqwest::Body::wrap_stream(slow));
            if let Some(g) = grant {
                req = req.header(GRANT_HEADER, g);
            }
            let resp = tokio::time::timeout(Duration::from_secs(10), req.send())
                .await
                .expect("refused before the body came")
                .expect("an answer");
            assert_eq!(resp.status().as_u16(), 403, "host {i}");
        }
    }
    let taken = env.ok(&["admin", "catalog-backup"]);
    assert!(taken.starts_with("Catalog backup #"), "{taken}");
}

/// S3 clients trust the grid CA for a gateway's certificate, and any account may have one
/// certified for its own gateway: a second account certified under the first one's name could
/// pose as that gateway (and see every signed request and body). A name is now bound to the
/// account that first had it, and never given to a gateway when it is a host's address, nor to
/// a host when it is a gateway's; only loopback names are shared.
#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_name_is_certified_for_one_account_only() {
    let env = grid(1).await;
    let token = env.ok(&["admin", "user", "add", "bob"]).trim().to_owned();
    let bob_dir = env.path("bob");
    let url = env.grid.url().to_owned();
    common::ok(common::run(&bob_dir, &["init", "--coordinator", &url, "--token", &token], &[]), "bob init");
    let alice = env.grid.profile().coordinator().expect("alice's coordinator");
    let bob = scatter_client::profile::Profile::load(&bob_dir).expect("bob's profile").coordinator().expect("bob's");
    let key = || hex::encode(scatter_net::tls::LeafKey::generate().expect("key").public_key());
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    alice.gateway_cert(names(&["gw.alice.example", "127.0.0.1"]), key()).await.expect("alice's name");
    alice.gateway_cert(names(&["GW.Alice.Example"]), key()).await.expect("again, for alice");
    for taken in [&["gw.alice.example"][..], &["bob.example", "gw.ALICE.example"][..]] {
        let err = bob.gateway_cert(names(taken), key()).await.expect_err("alice's name is hers").to_string();
        assert!(err.contains("certified for another account's S3 gateway"), "{err}");
    }
    bob.gateway_cert(names(&["bob.example", "127.0.0.1", "localhost"]), key()).await.expect("a name of bob's own");
    // A host's address is not a gateway's name, and a gateway's name is not a host's.
    let (h, host_url) = host(&env, 0);
    let host_name = reqwest::Url::parse(&host_url).expect("url").host_str().expect("host").to_owned();
    if !scatter_net::tls::is_loopback(&host_name) {
        let err = bob.gateway_cert(names(&[&host_name]), key()).await.expect_err("a host's address").to_string();
        assert!(err.contains("is the address of host"), "{err}");
    }
    let secret = serde_json::from_slice::<serde_json::Value>(
        &std::fs::read(env.grid.host_dir(0).join("host.json")).expect("host.json"),
    )
    .expect("json")["host_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let req = HostCertRequest {
        host_id: h,
        host_secret: secret,
        address: "https://gw.alice.example:7100".into(),
        public_key: key(),
    };
    let refused = |path: &'static str, body: serde_json::Value| {
        let (env, url) = (&env, &url);
        async move {
            let resp = client(env, scatter_net::Peer::Coordinator)
                .post(format!("{url}{path}"))
                .json(&body)
                .send()
                .await
                .expect("send");
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            assert_eq!(status, 403, "{path}: {text}");
            assert!(text.contains("certified for an S3 gateway"), "{path}: {text}");
        }
    };
    refused("/v1/hosts/cert", serde_json::to_value(&req).expect("json")).await;
    // Nor does a new host join there: refused before it is registered, so no row is left
    // that could never be certified and never serve.
    // Hosts by id and address (their reputation moves with time between two listings).
    let hosts = || {
        let listed: serde_json::Value =
            serde_json::from_str(&env.ok(&["admin", "host", "ls", "--json"])).expect("json");
        listed.as_array().expect("hosts").iter().map(|h| (h["id"].clone(), h["address"].clone())).collect::<Vec<_>>()
    };
    let before = hosts();
    let join = JoinRequest {
        join_token: std::fs::read_to_string(env.grid.coordinator_dir().join("join-token")).expect("token"),
        address: "https://gw.alice.example:7100".into(),
        zone: "z".into(),
        capacity: scatter_core::ByteSize(1 << 30),
        receipt_key: None,
        terms: Default::default(),
    };
    refused("/v1/hosts/join", serde_json::to_value(&join).expect("json")).await;
    assert_eq!(hosts(), before, "no host row for a refused join");
}

/// Attack: any account that may read could have the grid's CA certify names for its gateways
/// without end, 8 per request, each bound to it for good: one account could grow the catalog
/// at will and take every name others would want, and nobody could free one. An account's
/// gateways (with its delegates') now hold at most 16 names; a name given up (by the account,
/// an admin, or the account's removal) passes on only once the certificates issued for it,
/// valid a week, have expired, since until then its last holder could still pose under it.
#[tokio::test(flavor = "multi_thread")]
async fn an_account_holds_a_bounded_number_of_gateway_names() {
    let env = grid(1).await;
    let url = env.grid.url().to_owned();
    let tenant = |name: &str| {
        let token = env.ok(&["admin", "user", "add", name]).trim().to_owned();
        let dir = env.path(name);
        common::ok(common::run(&dir, &["init", "--coordinator", &url, "--token", &token], &[]), "init");
        let coord = scatter_client::profile::Profile::load(&dir).expect("profile").coordinator().expect("coordinator");
        (dir, coord)
    };
    let ((bob_dir, bob), (carol_dir, carol)) = (tenant("bob"), tenant("carol"));
    let key = || hex::encode(scatter_net::tls::LeafKey::generate().expect("key").public_key());
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let batch = |b: usize| (0..8).map(|i| format!("n{b}-{i}.bob.example")).collect::<Vec<_>>();
    let listed = |dir: &std::path::Path| {
        let out = common::ok(common::run(dir, &["gateway", "name", "ls", "--json"], &[]), "name ls");
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        let entries = v["names"].as_array().expect("names").clone();
        entries
            .into_iter()
            .map(|e| (e["name"].as_str().expect("name").to_owned(), e["released"] == true))
            .collect::<Vec<_>>()
    };

    for b in 0..2 {
        bob.gateway_cert(batch(b), key()).await.expect("within the limit");
    }
    let err = bob.gateway_cert(names(&["more.bob.example"]), key()).await.expect_err("past the limit").to_string();
    assert!(err.contains("more than 16 names") && err.contains("scatter gateway name rm"), "{err}");
    bob.gateway_cert(batch(1), key()).await.expect("names it holds are certified again (a gateway's restart)");
    let held = listed(&bob_dir);
    assert_eq!(held.len(), 16, "{held:?}");
    assert!(held.iter().all(|(_, released)| !released), "{held:?}");

    // Bob gives one up: another fits, and the one given up is nobody else's while
    // certificates issued for it are valid.
    let out = common::ok(common::run(&bob_dir, &["gateway", "name", "rm", "n0-0.bob.example"], &[]), "name rm");
    assert!(out.contains("passes to whoever asks for it once its certificates expire"), "{out}");
    bob.gateway_cert(names(&["more.bob.example"]), key()).await.expect("room for one more");
    let err = carol.gateway_cert(names(&["n0-0.bob.example"]), key()).await.expect_err("still bob's").to_string();
    assert!(err.contains("passes on once its certificates expire"), "{err}");
    // Carol can neither give up bob's names nor see them.
    let out = common::run(&carol_dir, &["gateway", "name", "rm", "n0-1.bob.example"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("no gateway of this account holds"), "{stderr}");
    assert!(listed(&carol_dir).is_empty());

    // An admin sees every account's names and can take one away; a removed account's pass on.
    let all: serde_json::Value = serde_json::from_str(&env.ok(&["gateway", "name", "ls", "--json"])).expect("json");
    assert_eq!(all["names"].as_array().expect("names").len(), 17, "{all}");
    env.ok(&["gateway", "name", "rm", "n0-1.bob.example"]);
    assert_eq!(listed(&bob_dir).iter().filter(|(_, released)| *released).count(), 2);
    env.ok(&["admin", "user", "rm", "bob"]);
    let all: serde_json::Value = serde_json::from_str(&env.ok(&["gateway", "name", "ls", "--json"])).expect("json");
    let all = all["names"].as_array().expect("names");
    assert!(all.len() == 17 && all.iter().all(|n| n["released"] == true), "{all:?}");
    let err = carol.gateway_cert(names(&["n1-3.bob.example"]), key()).await.expect_err("not yet free").to_string();
    assert!(err.contains("passes on once its certificates expire"), "{err}");
}

/// What an unauthenticated peer sends can reach the log (a refused join names its address):
/// control characters in it must not forge lines there nor reach a terminal raw.
#[tokio::test(flavor = "multi_thread")]
async fn a_peer_cannot_forge_lines_in_the_coordinators_log() {
    let env = coordinator_only().await;
    let forged = "INFO scatter_coordinator::api: event actor=u1 action=\"device.revoked\" detail=d6";
    let join = JoinRequest {
        join_token: "sct_wrong".into(),
        address: format!("https://x\n2026-12-01T00:00:00.000000Z  {forged}\n\u{1b}[2J\u{202e}"),
        zone: "z".into(),
        capacity: scatter_core::ByteSize(1 << 30),
        receipt_key: None,
        terms: Default::default(),
    };
    let http = client(&env, scatter_net::Peer::Coordinator);
    let resp = http.post(format!("{}/v1/hosts/join", env.grid.url())).json(&join).send().await.expect("join");
    assert_eq!(resp.status().as_u16(), 401);
    let log = std::fs::read_to_string(env.path("grid/coordinator.log")).expect("the coordinator's log");
    let refused = log.lines().find(|l| l.contains("host.join_refused")).expect("the refusal is logged");
    assert!(refused.contains("\\u{a}") && refused.contains("\\u{1b}"), "escaped: {refused}");
    assert!(refused.contains("\\u{202e}") && !log.contains('\u{202e}'), "a bidi override: {refused}");
    assert!(!log.lines().any(|l| l.trim_start().starts_with("2026-12-01T00:00:00")), "a forged line:\n{log}");
    assert!(!log.contains('\u{1b}'), "an escape sequence reached the log raw");
}

#[tokio::test(flavor = "multi_thread")]
async fn trickling_uploads_do_not_starve_readers() {
    let env = grid(6).await;
    let file = env.write_random("victim", 300_000, 11);
    env.put(&file, "victim");
    let http = client(&env, scatter_net::Peer::Host);
    let key = coordinator_key(&env);
    let before: Vec<usize> = (0..6).map(|i| shard_files(&env.grid.host_dir(i)).len()).collect();

    // Twelve uploads per host, each declaring 1 MiB and sending a byte every two seconds: more
    // than every transfer slot a host has.
    let mut tricklers = Vec::new();
    for i in 0..6 {
        let (h, url) = host(&env, i);
        for n in 0..12u32 {
            let shard = ShardId::of(format!("trickle {i} {n}").as_bytes());
            let grant =
                Grant { host: h, shard, op: Op::Put, max_size: 1 << 20, expires: now() + 600, nonce: 0 }.sign(&key).0;
            let slow = futures::stream::unfold(0u32, |sent| async move {
                if sent >= 1 << 20 {
                    return None;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
                Some((Ok::<_, std::io::Error>(vec![0u8]), sent + 1))
            });
            let req = http
                .put(format!("{url}/shards/{shard}"))
                .header(GRANT_HEADER, grant)
                .header("content-length", (1u32 << 20).to_string())
                .body(reqwest::Body::wrap_stream(slow));
            tricklers.push(tokio::spawn(async move { req.send().await.map(|r| r.status()) }));
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    // A reader still gets its file, within a bound.
    let started = Instant::now();
    let out = env.path("victim.out");
    let mut child = std::process::Command::new(EXE)
        .args(["get", "victim", "--output", out.to_str().expect("utf-8")])
        .env("SCATTER_CONFIG", env.grid.client_dir())
        .env("SCATTER_PASSPHRASE", env.grid.passphrase())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let bound = Duration::from_secs(45);
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > bound {
            let _ = child.kill();
            panic!("`scatter get` did not finish within {bound:?} while uploads trickled in");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = child.wait_with_output().expect("output");
    assert!(got.status.success(), "get failed: {}", String::from_utf8_lossy(&got.stderr));
    assert!(std::fs::read(&out).expect("out") == std::fs::read(&file).expect("in"), "victim differs");

    // The trickling uploads were cut off and refused, and stored nothing.
    for t in tricklers {
        let ended =
            tokio::time::timeout(Duration::from_secs(60), t).await.expect("a trickling upload was never cut off");
        if let Ok(status) = ended.expect("task") {
            assert!(!status.is_success(), "a trickling upload was accepted: {status}");
        }
    }
    let after: Vec<usize> = (0..6).map(|i| shard_files(&env.grid.host_dir(i)).len()).collect();
    assert_eq!(before, after, "trickling uploads left shards behind");
}

/// Connections that send nothing, filling every slot one peer has and then every slot in all,
/// do not shut a client out: the idlest is closed to make room. Before, the coordinator (and
/// every host and gateway, which share its server loop) refused everyone else for as long as
/// the silent connections stayed open: no timeout runs before a request's first byte.
#[tokio::test(flavor = "multi_thread")]
async fn silent_connections_do_not_shut_others_out() {
    use scatter_net::serve::{MAX_CONNECTIONS, MAX_CONNECTIONS_PER_PEER};
    raise_open_file_limit(2 * MAX_CONNECTIONS as u64 + 1024);
    let env = coordinator_only().await;
    let addr: std::net::SocketAddr =
        env.grid.url().trim_start_matches("https://").parse().expect("the coordinator's address");
    let mut silent = Vec::new();
    // Four other addresses take every slot in all; then the client's own address takes every
    // slot one peer has.
    for source in [2u8, 3, 4, 5, 1] {
        for _ in 0..MAX_CONNECTIONS_PER_PEER {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket.bind(std::net::SocketAddr::from(([127, 0, 0, source], 0))).expect("bind a loopback address");
            silent.push(socket.connect(addr).await.expect("connect"));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || {
            let out = env.scatter(&["admin", "user", "ls"]);
            (env, out)
        }),
    )
    .await
    .expect("`scatter admin user ls` did not finish within 60 s")
    .expect("task");
    let (_env, out) = out;
    assert!(
        out.status.success(),
        "a client was shut out by {} silent connections: {}",
        silent.len(),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("answered after {:?} with {} silent connections opened", started.elapsed(), silent.len());
}

/// HTTP/2 is not served: over it, a peer that grants no flow-control window holds a request's
/// response unsent, and its connection busy, for as long as it likes (a thousand such
/// connections, without a credential, shut every client and every host's heartbeats out of
/// the coordinator).
#[tokio::test(flavor = "multi_thread")]
async fn http2_is_not_served() {
    let env = coordinator_only().await;
    let url = format!("{}/health", env.grid.url());
    let h1 = client(&env, scatter_net::Peer::Coordinator).get(&url).send().await.expect("HTTP/1.1");
    assert!(h1.status().is_success(), "{}", h1.status());
    let h2 = scatter_net::http_client(Some(fingerprint(&env)), scatter_net::Peer::Coordinator)
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let answer = h2.get(&url).send().await;
    assert!(answer.is_err(), "the coordinator answered over HTTP/2: {answer:?}");
}

/// Raises this process's soft limit on open files to at least `wanted`, if the hard one allows.
fn raise_open_file_limit(wanted: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let target = limit.maximum.map_or(wanted, |max| max.min(wanted));
    if limit.current.is_some_and(|current| current < target) {
        setrlimit(Resource::Nofile, Rlimit { current: Some(target), maximum: limit.maximum }).expect("setrlimit");
    }
}

/// Attack: a credential seen once (in a proxy's log, say) is sent again after the
/// coordinator restarted. Remembered only in memory, it was accepted again within its
/// lifetime: any request, a delete among them, could be replayed once per restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_credential_is_not_accepted_again_after_the_coordinator_restarts() {
    let mut env = grid(1).await;
    let me = common::attacker::Attacker::from_profile(&env, &env.grid.client_dir());
    let auth = me.credential(&reqwest::Method::GET, "/v1/devices", b"");
    let (status, body) = me.send(reqwest::Method::GET, "/v1/devices", &auth, Vec::new()).await;
    assert_eq!(status, 200, "{body}");
    env.grid.kill_coordinator();
    env.grid.start_coordinator().expect("the coordinator starts again");
    let (status, body) = me.send(reqwest::Method::GET, "/v1/devices", &auth, Vec::new()).await;
    assert_eq!(status, 401, "a credential was accepted again after a restart: {body}");
    assert!(body.to_string().contains("already been used"), "{body}");
}

/// Attack (red team, stop 50): an account stores 60 MB of snapshot records (its cap, apart
/// from its quota), then asks for the listing of them again and again on new connections
/// and reads none. Each answer (about 80 MB of JSON) was made whole in memory and held
/// until read, or a minute without progress: ten held 1.1 GB of the coordinator's memory,
/// and the connection limits allow hundreds. Now an account's unread large answers hold at
/// most 128 MiB, and those past it are refused at once.
#[tokio::test(flavor = "multi_thread")]
async fn answers_an_account_does_not_read_do_not_pile_up_in_the_coordinator() {
    let env = grid(3).await;
    let eve = common::attacker::Attacker::invite(&env, &["eve"]).await;
    let record = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, vec![7u8; 1_000_000]);
    for i in 0..60 {
        let session = eve.session().await;
        let body = serde_json::json!({ "session": session, "id": format!("{i:064x}"), "record": record });
        let (status, body) = eve.post("/v1/snapshots/commit", &body).await;
        assert_eq!(status, 200, "{body}");
    }
    let mut held = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..6 {
        let resp = eve.ask("/v1/snapshots").await;
        match resp.status().as_u16() {
            200 => held.push(resp),
            status => refused.push((status, resp.text().await.unwrap_or_default())),
        }
    }
    assert!(held.len() <= 1, "{} listings of about 80 MB held unread at once", held.len());
    for (status, body) in &refused {
        assert!(*status == 423 && body.contains("large answers") && body.contains("retry"), "{status} {body}");
    }
    // Others' answers are not held up by it.
    let admin = env.ok(&["admin", "user", "ls", "--json"]);
    assert!(admin.contains("eve"), "{admin}");
    // Read (or dropped), its room comes back.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let resp = eve.ask("/v1/snapshots").await;
        if resp.status() == 200 {
            let listing: serde_json::Value = resp.json().await.expect("the listing, read whole");
            assert_eq!(listing["snapshots"].as_array().map(Vec::len), Some(60));
            break;
        }
        assert!(Instant::now() < deadline, "the room of dropped answers did not come back: {}", resp.status());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Asked eight times at once, the listings are made one after another, not side by side
    // (the budget refuses them only once made: eight made at once took about a gigabyte).
    // Under load the last in line may wait past this client's 30 s: no answer, no memory.
    let pid = env.grid.coordinator_pid().expect("coordinator");
    common::reset_peak(pid);
    let before = common::peak_rss(pid);
    let asks = futures::future::join_all((0..8).map(|_| eve.try_ask("/v1/snapshots"))).await;
    let statuses: Vec<u16> = asks.iter().map(|r| r.as_ref().map_or(0, |r| r.status().as_u16())).collect();
    assert!(statuses.iter().filter(|s| **s == 200).count() <= 1, "{statuses:?}");
    let grown = common::peak_rss(pid) - before;
    println!("eight listings at once: the coordinator's peak grew {} MiB (from {} MiB)", grown >> 20, before >> 20);
    assert!(grown < 500 << 20, "eight listings at once took {} MiB more of the coordinator's memory", grown >> 20);
}
