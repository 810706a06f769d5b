//! Security acceptance tests, with real processes and real TLS on 127.0.0.1: hosts refuse
//! every bad grant, coordinator and hosts shrug off hostile requests, clients refuse servers
//! not certified by their grid's CA, and no plaintext, name or passphrase lands on a server.

use crate::common;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{coordinator_key, fingerprint, grid, grid_with, host, shard_files, EXE};
use ed25519_dalek::SigningKey;
use scatter_core::{DeviceId, HostId, ShardId};
use scatter_proto::api::GRANT_HEADER;
use scatter_proto::auth::{Credential, Request};
use scatter_proto::{Grant, Op};

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

fn grant(key: &SigningKey, host: HostId, shard: ShardId, op: Op, max_size: u64, expires: u64) -> String {
    Grant { host, shard, op, max_size, expires, nonce: 0 }.sign(key).0
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every regular file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_enforce_grants_and_refuse_hostile_requests() {
    let env = grid(6).await;
    let http = scatter_net::http_client(Some(fingerprint(&env)), scatter_net::Peer::Host)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let key = coordinator_key(&env);
    let (h0, url0) = host(&env, 0);
    let (h1, _) = host(&env, 1);
    let data = vec![7u8; 100_000];
    let id = ShardId::of(&data);
    let other = ShardId::of(b"another shard");
    let later = now() + 300;
    let put = |g: Option<String>, body: Vec<u8>| {
        let mut req = http.put(format!("{url0}/shards/{id}")).body(body);
        if let Some(g) = g {
            req = req.header(GRANT_HEADER, g);
        }
        req.send()
    };
    let forger = SigningKey::from_bytes(&[42; 32]);
    let refused = [
        ("no grant", None, data.clone(), "grant"),
        ("another host's grant", Some(grant(&key, h1, id, Op::Put, 1 << 20, later)), data.clone(), "host"),
        ("another shard's grant", Some(grant(&key, h0, other, Op::Put, 1 << 20, later)), data.clone(), "shard"),
        ("an expired grant", Some(grant(&key, h0, id, Op::Put, 1 << 20, now() - 5)), data.clone(), "expired"),
        ("a forged grant", Some(grant(&forger, h0, id, Op::Put, 1 << 20, later)), data.clone(), "signature"),
        ("a read grant", Some(grant(&key, h0, id, Op::Get, 1 << 20, later)), data.clone(), "grant"),
        ("more than granted", Some(grant(&key, h0, id, Op::Put, 1_000, later)), data.clone(), "at most 1000"),
        ("bytes that are not the shard", Some(grant(&key, h0, id, Op::Put, 1 << 20, later)), vec![8u8; 100_000], ""),
        ("a garbage grant", Some("not-a-grant".into()), data.clone(), "grant"),
    ];
    for (what, g, body, needle) in refused {
        let resp = put(g, body).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_client_error(), "{what}: {status} {text}");
        assert!(text.to_lowercase().contains(needle), "{what}: {text}");
        assert!(shard_files(&env.grid.host_dir(0)).is_empty(), "{what}: something was stored");
    }

    // An upload cut short (the connection dies halfway) leaves nothing behind.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(data[..50_000].to_vec()), Err(std::io::Error::other("cut"))];
    let cut = http
        .put(format!("{url0}/shards/{id}"))
        .header(GRANT_HEADER, grant(&key, h0, id, Op::Put, 1 << 20, later))
        .header("content-length", data.len().to_string())
        .body(reqwest::Body::wrap_stream(futures_stream(chunks)))
        .send()
        .await;
    assert!(cut.is_err() || !cut.expect("response").status().is_success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(shard_files(&env.grid.host_dir(0)).is_empty(), "a cut upload was kept");

    // The real thing works, once.
    let ok = put(Some(grant(&key, h0, id, Op::Put, 1 << 20, later)), data.clone()).await.expect("put");
    assert!(ok.status().is_success(), "{}", ok.status());
    let get = |g: String| http.get(format!("{url0}/shards/{id}")).header(GRANT_HEADER, g).send();
    let back = get(grant(&key, h0, id, Op::Get, 0, later)).await.expect("get");
    assert_eq!(back.bytes().await.expect("body").as_ref(), data.as_slice());
    assert!(!get(grant(&key, h1, id, Op::Get, 0, later)).await.expect("get").status().is_success());

    // A delete needs a delete grant for this host and shard.
    for g in [grant(&key, h0, id, Op::Get, 0, later), grant(&key, h0, other, Op::Delete, 0, later)] {
        let resp = http.delete(format!("{url0}/shards/{id}")).header(GRANT_HEADER, g).send().await.expect("delete");
        assert!(resp.status().is_client_error(), "{}", resp.status());
    }
    assert_eq!(shard_files(&env.grid.host_dir(0)).len(), 1, "the shard survived bad deletes");

    // Ids that are not hashes never reach the file system.
    for raw in ["..%2F..%2Fhost.json", "%2e%2e", "zz", &"a".repeat(63), &"A".repeat(64), &"0".repeat(5000)] {
        let resp = http
            .get(format!("{url0}/shards/{raw}"))
            .header(GRANT_HEADER, grant(&key, h0, id, Op::Get, 0, later))
            .send()
            .await
            .expect("request");
        assert!(resp.status().is_client_error(), "{raw}: {}", resp.status());
        assert!(!resp.text().await.unwrap_or_default().contains("host_secret"), "{raw} escaped the shard directory");
    }

    // Oversized declared uploads are refused before a byte is read.
    let resp = http
        .put(format!("{url0}/shards/{other}"))
        .header(GRANT_HEADER, grant(&key, h0, other, Op::Put, u64::MAX, later))
        .body(vec![0u8; (64 << 20) + 1])
        .send()
        .await;
    assert!(resp.is_err() || resp.expect("response").status().is_client_error());

    // The host is still up and serving.
    let back = get(grant(&key, h0, id, Op::Get, 0, later)).await.expect("get after the sweep");
    assert_eq!(back.bytes().await.expect("body").len(), data.len());

    // Its refusals reach the coordinator's audit trail with the next heartbeat.
    let mut events = String::new();
    for _ in 0..50 {
        events = env.ok(&["admin", "events", "--json"]);
        if events.contains("grant.refused") && events.contains("expired") && events.contains("signature") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(events.contains("grant.refused") && events.contains("expired"), "{events}");
}

fn futures_stream(
    items: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    use futures::StreamExt;
    futures::stream::iter(items).then(|item| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        item
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_coordinator_refuses_bad_credentials_and_hostile_bodies() {
    let env = grid(6).await;
    let file = env.write_random("kept", 300_000, 3);
    env.put(&file, "kept");
    let base = env.grid.url().to_owned();
    let fp = fingerprint(&env);
    let http = scatter_net::http_client(Some(fp), scatter_net::Peer::Coordinator)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let me = env.grid.profile().device();
    let status = |auth: Option<String>| {
        let mut req = http.get(format!("{base}/v1/status"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send()
    };
    let stranger = SigningKey::from_bytes(&[5; 32]);
    let cred = |key: &SigningKey, device: DeviceId, expires: u64, grid: [u8; 32]| {
        let req = Request { method: "GET", target: "/v1/status" };
        format!("Scatter {}", Credential::new(device, expires, b"").sign(key, &grid, req).expect("sign"))
    };
    let cases = [
        ("no credential", None, "run `scatter init`"),
        ("a bearer token", Some("Bearer sct_0123".to_owned()), "run `scatter init`"),
        ("garbage", Some("Scatter !!!".to_owned()), "malformed"),
        ("a stranger's key", Some(cred(&stranger, me, now() + 60, fp.0)), "not signed by this user"),
        ("an unknown device", Some(cred(&stranger, DeviceId(999), now() + 60, fp.0)), "not registered"),
    ];
    for (what, auth, needle) in cases {
        let resp = status(auth).await.expect("request");
        assert_eq!(resp.status().as_u16(), 401, "{what}");
        let text = resp.text().await.unwrap_or_default();
        assert!(text.contains(needle), "{what}: {text}");
    }

    // Malformed and oversized bodies get a clear 4xx, and nothing changes.
    for (path, body) in [
        ("/v1/hosts/join", "{"),
        ("/v1/hosts/join", "[]"),
        ("/v1/users/register", "{\"token\": 5}"),
        ("/v1/hosts/heartbeat", "{\"host_id\": 1, \"host_secret\": \"x\", \"address\": \"javascript:1\"}"),
        (
            "/v1/hosts/cert",
            "{\"host_id\": 1, \"host_secret\": \"x\", \"address\": \"https://a\", \"public_key\": \"00\"}",
        ),
    ] {
        let resp = http
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        assert!(resp.status().is_client_error(), "{path} {body}: {}", resp.status());
        let err: serde_json::Value = resp.json().await.expect("a JSON error");
        assert!(err["error"].as_str().is_some_and(|e| !e.is_empty()), "{path}: {err}");
    }
    let huge = http
        .post(format!("{base}/v1/hosts/join"))
        .header("content-type", "application/json")
        .body(vec![b' '; (64 << 20) + 10])
        .send()
        .await;
    assert!(huge.is_err() || huge.expect("response").status().as_u16() == 413);

    // A registered user sees only refusals recorded, and its data is intact.
    let events = env.ok(&["admin", "events", "--json"]);
    assert!(events.contains("auth.refused"), "{events}");
    env.get_and_compare("kept", &file);
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_refuse_other_grids_and_plain_http_without_insecure() {
    let env = grid(6).await;
    // A second grid: its coordinator and host have certificates from another CA.
    let other_dir = tempfile::tempdir().expect("tmp");
    let opts = scatter_cli::grid::GridOptions { zones: 1, ..Default::default() };
    let other = scatter_cli::grid::Grid::start(Path::new(EXE), other_dir.path(), 1, opts).await.expect("grid B");
    let theirs = (0..1).map(|i| std::fs::read_to_string(other.host_dir(i).join("url")).expect("url")).next();
    let theirs = theirs.expect("one host").trim().to_owned();

    // Our pinned clients refuse grid B's coordinator and host.
    for (peer, url) in [(scatter_net::Peer::Coordinator, other.url()), (scatter_net::Peer::Host, theirs.as_str())] {
        let http = scatter_net::http_client(Some(fingerprint(&env)), peer).build().expect("client");
        let err = http.get(format!("{url}/health")).send().await.expect_err("another grid's server");
        let why = scatter_net::root_cause(&err);
        assert!(why.contains("not from this grid's CA"), "{peer:?}: {why}");
    }

    // `scatter init` with grid A's token against grid B's URL fails on the TLS identity.
    let token = std::fs::read_to_string(env.grid.coordinator_dir().join("join-token")).expect("token");
    let config = env.path("confused");
    let run = |args: &[&str]| {
        std::process::Command::new(EXE)
            .args(args)
            .env("SCATTER_CONFIG", &config)
            .env("SCATTER_PASSPHRASE", "pw")
            .output()
            .expect("run")
    };
    let out = run(&["init", "--coordinator", other.url(), "--token", token.trim()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("not from the grid in the token"), "{err}");
    assert!(!config.join("keys.age").exists(), "a refused init left keys behind");

    // Plain HTTP needs --insecure, and a TLS grid's token never goes over plain HTTP.
    let plain = env.grid.url().replace("https://", "http://");
    let out = run(&["init", "--coordinator", &plain, "--token", token.trim()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("token is for a grid with TLS"), "{err}");
    let bare = token.trim().get(..68).expect("secret part");
    let out = run(&["init", "--coordinator", &plain, "--token", bare]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--insecure"), "{err}");
    let out = run(&["init", "--coordinator", env.grid.url(), "--token", bare]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no CA fingerprint"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_never_see_plaintext_names_or_passphrases_and_tampering_is_caught() {
    let mut env = grid(6).await;
    let marker = b"PLAINTEXT-MARKER-7d1f3c";
    let mut content = Vec::new();
    for i in 0..20_000 {
        content.extend_from_slice(marker);
        content.extend_from_slice(format!(" line {i}\n").as_bytes());
    }
    let file = env.path("input");
    std::fs::write(&file, &content).expect("write");
    let name = "quarterly-report-4b2e.txt";
    env.put(&file, name);
    env.get_and_compare(name, &file);

    let mut searched = 0;
    let dirs = std::iter::once(env.grid.coordinator_dir()).chain((0..6).map(|i| env.grid.host_dir(i)));
    for dir in dirs {
        for f in files(&dir) {
            let bytes = std::fs::read(&f).unwrap_or_default();
            searched += bytes.len();
            for needle in [&marker[..], name.as_bytes(), env.grid.passphrase().as_bytes()] {
                assert!(!contains(&bytes, needle), "{} holds {:?}", f.display(), String::from_utf8_lossy(needle));
            }
        }
    }
    assert!(searched > content.len(), "searched only {searched} bytes");

    // A tampered manifest (one byte of the sealed blob in the catalog) is detected, and the
    // output file is not created.
    env.grid.kill_coordinator();
    let db = rusqlite::Connection::open(env.grid.coordinator_dir().join("catalog.db")).expect("catalog");
    let (id, mut sealed): (i64, Vec<u8>) =
        db.query_row("SELECT id, manifest FROM objects", [], |r| Ok((r.get(0)?, r.get(1)?))).expect("manifest");
    let mid = sealed.len() / 2;
    sealed[mid] ^= 0x20;
    db.execute("UPDATE objects SET manifest = ?1 WHERE id = ?2", rusqlite::params![sealed, id]).expect("tamper");
    drop(db);
    env.grid.start_coordinator().expect("restart");
    env.grid.wait_online(6, Duration::from_secs(30)).await.expect("online");
    let out = env.path("tampered.out");
    let err = env.fails(&["get", name, "--output", out.to_str().expect("utf-8")]);
    assert!(err.contains("manifest"), "{err}");
    assert!(!out.exists(), "a tampered manifest produced output");

    // A tampered key file is refused with a clear sentence.
    let keys = env.grid.client_dir().join("keys.age");
    let mut k = std::fs::read(&keys).expect("keys");
    let mid = k.len() / 2;
    k[mid] ^= 1;
    std::fs::write(&keys, k).expect("tamper keys");
    let err = env.fails(&["ls"]);
    assert!(err.contains("key file") || err.contains("passphrase"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_insecure_grid_works_and_says_so() {
    let env = grid_with(6, scatter_cli::grid::GridOptions { insecure: true, ..Default::default() }).await;
    assert!(env.grid.url().starts_with("http://"), "{}", env.grid.url());
    let log = std::fs::read_to_string(env.path("grid/coordinator.log")).expect("log");
    assert!(log.contains("WITHOUT TLS"), "no warning in the coordinator's log");
    let file = env.write_random("plain", 1 << 20, 9);
    env.put(&file, "plain");
    env.get_and_compare("plain", &file);
}
