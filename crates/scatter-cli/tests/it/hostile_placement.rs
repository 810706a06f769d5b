//! Hostile tenants and delegates against placement, with real processes: a delegate places
//! under its owner's policy and cannot loosen it, and an account cannot block another's
//! uploads by placing shard ids it does not have.

use crate::common;

use std::time::Duration;

use common::attacker::Attacker;
use common::{fingerprint, grid, host, Env};
use scatter_core::{ByteSize, HostId, ShardId};
use scatter_proto::api::*;

/// A placement of `shards` (at indices 0..) of a 4+2 pack, `size` bytes each.
fn place(shards: &[ShardId], size: u64, policy: Policy) -> PlaceRequest {
    PlaceRequest {
        shard_size: size,
        shards: shards.iter().enumerate().map(|(i, s)| ShardToPlace { index: i as u8, shard: *s }).collect(),
        exclude: vec![],
        k: 4,
        m: 2,
        placed: vec![],
        policy,
    }
}

/// Attack: the owner rules out zone-0 and zone-1; its appender sends a per-request policy
/// that excludes some other zone (replacing the owner's exclusions) or names every zone, so
/// the owner's data and quota go to hosts the owner ruled out. A delegate's conditions may
/// only narrow the owner's policy.
#[tokio::test(flavor = "multi_thread")]
async fn a_delegate_cannot_loosen_the_owners_placement_policy() {
    let env = grid(3).await; // zones round robin: host i in zone-(i % 3)
    env.ok(&["policy", "set", "--exclude-zone", "zone-0", "--exclude-zone", "zone-1"]);
    let allowed: HostId = host(&env, 2).0;
    let nas = Attacker::invite(&env, &["nas", "--role", "appender", "--of", "u1"]).await;
    let every = vec!["zone-0".into(), "zone-1".into(), "zone-2".into()];
    let loosened = [
        Policy { exclude_zones: vec!["nowhere".into()], ..Default::default() },
        Policy { zones: every, exclude_zones: vec!["nowhere".into()], ..Default::default() },
    ];
    for (n, policy) in loosened.into_iter().enumerate() {
        // Six shards need all three hosts (two each at f = 1): only the owner's policy
        // stops them.
        let ids: Vec<ShardId> = (0..6u8).map(|i| ShardId::of(&[n as u8, i])).collect();
        let (status, body) = nas.post("/v1/packs/place", &place(&ids, 4096, policy.clone())).await;
        if status == 200 {
            let placed: PlaceResponse = serde_json::from_value(body.clone()).expect("placement");
            let outside: Vec<HostId> = placed.targets.iter().map(|t| t.host).filter(|h| *h != allowed).collect();
            assert!(outside.is_empty(), "the appender's policy {policy:?} put the owner's shards on {outside:?}");
        }
        // Two shards fit on the one host the owner allows; they must go there.
        let (status, body) = nas.post("/v1/packs/place", &place(&ids[..2], 4096, policy.clone())).await;
        assert_eq!(status, 200, "{body}");
        let placed: PlaceResponse = serde_json::from_value(body).expect("placement");
        assert!(placed.targets.iter().all(|t| t.host == allowed), "{policy:?}: {:?}", placed.targets);
    }
    // Nor does it see the policy: where the owner keeps its data is the owner's to manage
    // (red team: any delegate read it).
    for delegate in [&nas, &Attacker::invite(&env, &["reader", "--role", "reader", "--of", "u1"]).await] {
        let (status, body) = delegate.call(reqwest::Method::GET, "/v1/policy", None).await;
        assert_eq!(status, 403, "a delegate read the owner's policy: {body}");
    }
    // The owner itself still overrides its own policy for one run (4+2 needs all three).
    let file = env.write_random("mine", 64 << 10, 3);
    env.ok(&["put", file.to_str().expect("utf-8"), "--name", "mine", "--exclude-zone", "elsewhere"]);
}

/// Attack: eve learns the id of a shard alice is about to place (ids are not secrets: hosts
/// see them in grants, and a re-placement after a failed upload asks for the same id) and
/// places it herself, one byte, on every host, without ever having its bytes. Alice's
/// placement must still be granted: a reservation is no claim on a (host, shard) pair.
#[tokio::test(flavor = "multi_thread")]
async fn placing_anothers_shard_id_blocks_nothing() {
    let env = grid(3).await;
    let alice = Attacker::invite(&env, &["alice"]).await;
    let eve = Attacker::invite(&env, &["eve"]).await;
    let shard = ShardId::of(b"a shard of alice's pack");
    // The same id at three indices goes to three different hosts: all of them.
    let (status, body) = eve.post("/v1/packs/place", &place(&[shard; 3], 4096, Policy::default())).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = alice.post("/v1/packs/place", &place(&[shard], 1 << 20, Policy::default())).await;
    assert_eq!(status, 200, "eve's placements blocked alice's: {body}");
}

/// Attack: an operator (one failure domain, however many hosts) joins two hosts that
/// declare zones of their own. Counted as a domain in each zone, it made the zone cap so
/// tight (two of six shards per zone, while it may hold only two in all) that no 4+2 pack
/// could be placed on a grid whose own hosts share one zone: every upload failed.
#[tokio::test(flavor = "multi_thread")]
async fn an_operator_declaring_zones_cannot_stop_placement() {
    let env = common::grid_with(
        3,
        scatter_cli::grid::GridOptions { zones: 1, passphrase: "test passphrase".into(), ..Default::default() },
    )
    .await;
    let alice = Attacker::invite(&env, &["alice"]).await;
    let ids: Vec<ShardId> = (0..6u8).map(|i| ShardId::of(&[7, i])).collect();
    let (status, body) = alice.post("/v1/packs/place", &place(&ids, 1 << 20, Policy::default())).await;
    assert_eq!(status, 200, "before the operator: {body}");

    let token = env.ok(&["admin", "operator", "add", "acme"]).trim().to_owned();
    let mut fakes = Vec::new();
    for (zone, port) in [("x", 9), ("y", 10)] {
        fakes.push(fake_host(&env, &token, zone, port, 1 << 40).await);
    }
    let ids: Vec<ShardId> = (0..6u8).map(|i| ShardId::of(&[8, i])).collect();
    let (status, body) = alice.post("/v1/packs/place", &place(&ids, 1 << 20, Policy::default())).await;
    assert_eq!(status, 200, "the operator's zones stopped placement: {body}");
    let placed: PlaceResponse = serde_json::from_value(body).expect("placement");
    let held = placed.targets.iter().filter(|t| fakes.contains(&t.host)).count();
    assert!(held <= 2, "one domain holds {held} of a 4+2 pack at f = 1: {:?}", placed.targets);
}

/// A heartbeat of the host `joined`, at `address`, offering and reporting `room` bytes free.
fn heartbeat(joined: &JoinResponse, address: String, room: u64) -> HeartbeatRequest {
    HeartbeatRequest {
        host_id: joined.host_id,
        host_secret: joined.host_secret.clone(),
        address,
        capacity: ByteSize(room),
        used: ByteSize(0),
        free: ByteSize(room),
        refused_grants: 0,
        refusals: vec![],
        spent_grants: 0,
        receipt_key: None,
        terms: HostTerms::default(),
        served: 0,
    }
}

/// Joins a host at `address` that exists only as requests (joined with `token`, in `zone`,
/// offering `room` bytes); returns a client for the coordinator and the join's answer.
async fn join_fake(env: &Env, token: &str, zone: &str, address: &str, room: u64) -> (reqwest::Client, JoinResponse) {
    let http = scatter_net::http_client(Some(fingerprint(env)), scatter_net::Peer::Coordinator)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let join = JoinRequest {
        join_token: token.to_owned(),
        address: address.to_owned(),
        zone: zone.into(),
        capacity: ByteSize(room),
        receipt_key: None,
        terms: HostTerms::default(),
    };
    let resp = http.post(format!("{}/v1/hosts/join", env.grid.url())).json(&join).send().await.expect("join");
    assert!(resp.status().is_success(), "join: {}", resp.text().await.unwrap_or_default());
    (http, resp.json().await.expect("join reply"))
}

/// Joins a host that exists only as requests: joined with `token`, in `zone`, offering and
/// reporting `room` bytes free, heard from every half second.
async fn fake_host(env: &Env, token: &str, zone: &str, port: u16, room: u64) -> HostId {
    let address = format!("https://127.0.0.1:{port}");
    let (http, joined) = join_fake(env, token, zone, &address, room).await;
    let beat = heartbeat(&joined, address, room);
    let url = format!("{}/v1/hosts/heartbeat", env.grid.url());
    let resp = http.post(&url).json(&beat).send().await.expect("beat");
    assert!(resp.status().is_success(), "heartbeat: {}", resp.text().await.unwrap_or_default());
    // It stays heard from for the rest of the test (the runtime drops this task at its end).
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let _ = http.post(&url).json(&beat).send().await;
        }
    });
    joined.host_id
}

/// Attack: on a grid of five domains (f = 1), an operator joins one host with no room, or
/// with a sliver of it. Counted as a sixth domain it raised f to 2 (one shard of a 4+2 pack
/// per domain), which the five domains with room cannot meet: every upload failed. A domain
/// offering far less than the others does not tighten the rule.
#[tokio::test(flavor = "multi_thread")]
async fn an_operator_host_with_no_room_cannot_stop_placement() {
    let env = grid(5).await;
    let alice = Attacker::invite(&env, &["alice"]).await;
    for (n, room) in [1u64, 1 << 20].into_iter().enumerate() {
        let token = env.ok(&["admin", "operator", "add", &format!("acme{n}")]).trim().to_owned();
        fake_host(&env, &token, "x", 9, room).await;
        let ids: Vec<ShardId> = (0..6u8).map(|i| ShardId::of(&[9, n as u8, i])).collect();
        let (status, body) = alice.post("/v1/packs/place", &place(&ids, 1 << 20, Policy::default())).await;
        assert_eq!(status, 200, "a host offering {room} bytes stopped placement: {body}");
    }
}

/// Attack: the operator's host offers plenty of room and then refuses every upload (nothing
/// listens at its address). It counts as a domain, so f is 2; the client's uploads to it
/// fail, and its pack is placed again without it, under-spread, rather than refused.
#[tokio::test(flavor = "multi_thread")]
async fn an_operator_host_that_refuses_uploads_cannot_stop_backups() {
    let env = grid(5).await;
    let token = env.ok(&["admin", "operator", "add", "acme"]).trim().to_owned();
    fake_host(&env, &token, "x", 9, 64 << 30).await;
    let status: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--json"])).expect("status JSON");
    assert_eq!(status["grid"]["tolerate"].as_u64(), Some(2), "{status}");
    let file = env.write_random("data", 3 << 20, 11);
    env.put(&file, "data");
    env.get_and_compare("data", &file);
}

/// Attack: one operator's three hosts, in a grid of five, took three of a catalog backup's
/// five shards (spread by host id, whatever the domains) and refused them: no backup could be
/// taken, and recovery found too few shards of the last ones. A backup is spread by failure
/// domain: the operator holds no more of it than its code can lose, and its shards that no
/// host of the operator stored go to domains holding none.
#[tokio::test(flavor = "multi_thread")]
async fn an_operator_cannot_stop_catalog_backups() {
    let env = grid(2).await;
    let token = env.ok(&["admin", "operator", "add", "acme"]).trim().to_owned();
    for port in 9..12 {
        fake_host(&env, &token, "x", port, 64 << 30).await;
    }
    let out = env.ok(&["admin", "catalog-backup"]);
    assert!(out.contains("Catalog backup #") && out.contains("2+2 over 2 hosts"), "{out}");
}

/// Attack: an operator's host had the grid CA certify it for another operator's host's name
/// (or IP address), and could then pose as that host wherever it could steer the name's
/// traffic: answer its audits wrongly, withhold its shards. A name in use by a host in the
/// grid is certified only for hosts of the same party (one machine, several ports).
#[tokio::test(flavor = "multi_thread")]
async fn a_host_is_not_certified_for_another_operators_host_name() {
    let env = grid(1).await;
    let acme = env.ok(&["admin", "operator", "add", "acme"]).trim().to_owned();
    let evil = env.ok(&["admin", "operator", "add", "evil"]).trim().to_owned();
    let cert = |joined: &JoinResponse, address: &str| HostCertRequest {
        host_id: joined.host_id,
        host_secret: joined.host_secret.clone(),
        address: address.to_owned(),
        public_key: hex::encode(scatter_net::tls::LeafKey::generate().expect("key").public_key()),
    };
    let url = format!("{}/v1/hosts/cert", env.grid.url());
    let (http, victim) = join_fake(&env, &acme, "x", "https://victim.example:7001", 1 << 30).await;
    let (_, sibling) = join_fake(&env, &acme, "x", "https://victim.example:7002", 1 << 30).await;
    let (_, attacker) = join_fake(&env, &evil, "y", "https://evil.example:7001", 1 << 30).await;
    let (_, by_ip) = join_fake(&env, &acme, "x", "https://10.9.9.3:7001", 1 << 30).await;
    let status = |body: HostCertRequest| {
        let (http, url) = (&http, &url);
        async move {
            let resp = http.post(url).json(&body).send().await.expect("cert");
            (resp.status().as_u16(), resp.text().await.unwrap_or_default())
        }
    };
    assert_eq!(status(cert(&victim, "https://victim.example:7001")).await.0, 200);
    assert_eq!(status(cert(&sibling, "https://victim.example:7002")).await.0, 200, "one machine, two ports");
    for address in
        ["https://victim.example:7001", "https://VICTIM.example:9", "https://10.9.9.3:7001", "https://10.9.9.3"]
    {
        let (code, text) = status(cert(&attacker, address)).await;
        assert_eq!(code, 403, "{address}: {text}");
        assert!(text.contains("of another operator"), "{text}");
    }
    assert_eq!(status(cert(&by_ip, "https://10.9.9.3:7001")).await.0, 200);
    assert_eq!(status(cert(&attacker, "https://evil.example:7001")).await.0, 200, "its own name");
    let events = env.ok(&["admin", "events"]);
    assert!(events.contains("host.cert_refused"), "{events}");
}

/// Attack (or just hosts that hold nothing yet): audits go to the hosts audited least, and a
/// host with nothing to audit was never audited, so four empty hosts took every place in
/// every pass and no host holding data was audited again: a corrupt shard stayed unnoticed.
#[tokio::test(flavor = "multi_thread")]
async fn empty_hosts_do_not_stop_the_audits() {
    let env = grid(2).await;
    let file = env.write_random("data", 256 << 10, 3);
    env.put(&file, "data");
    // Both hosts were audited once; hosts that join now are audited less.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !audited(&env).iter().all(|&(_, passed, _)| passed > 0) {
        assert!(std::time::Instant::now() < deadline, "the hosts were not audited: {:?}", audited(&env));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for n in 0..4u16 {
        let token = env.ok(&["admin", "operator", "add", &format!("empty{n}")]).trim().to_owned();
        fake_host(&env, &token, "x", 9 + n, 0).await;
    }
    // Every shard on the first host is altered.
    for path in common::shard_files(&env.grid.host_dir(0)) {
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[0] ^= 0xff;
        std::fs::write(&path, bytes).expect("write");
    }
    let (first, _) = host(&env, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !audited(&env).iter().any(|&(id, _, failed)| id == first.0 && failed > 0) {
        assert!(std::time::Instant::now() < deadline, "no audit found the altered shards: {:?}", audited(&env));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    env.get_and_compare("data", &file);
}

/// (id, audits passed, audits failed) of the hosts that hold shards.
fn audited(env: &Env) -> Vec<(u64, u64, u64)> {
    let hosts: serde_json::Value = serde_json::from_str(&env.ok(&["admin", "host", "ls", "--json"])).expect("json");
    let n = |h: &serde_json::Value, k: &str| h[k].as_u64().unwrap_or(0);
    hosts
        .as_array()
        .expect("hosts")
        .iter()
        .filter(|h| n(h, "shards") > 0)
        .map(|h| (n(h, "id"), n(h, "audits_passed"), n(h, "audits_failed")))
        .collect()
}

/// Attack: a joined host moves (in its heartbeat) onto the address of another host that is
/// running. Before, it was accepted silently: clients then reached the other host with this
/// one's grants, and that innocent host's refusals filled the events.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_cannot_move_onto_a_running_hosts_address() {
    let env = grid(3).await;
    let token = std::fs::read_to_string(env.grid.coordinator_dir().join("join-token")).expect("join token");
    let (http, joined) = join_fake(&env, token.trim(), "z", "https://127.0.0.1:11", 1 << 30).await;
    let (victim, victim_url) = host(&env, 0);
    let beat = |address: String| heartbeat(&joined, address, 1 << 30);
    let url = format!("{}/v1/hosts/heartbeat", env.grid.url());
    let resp = http.post(&url).json(&beat(victim_url.trim().to_owned())).send().await.expect("beat");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(status, 409, "moved onto {victim}'s address: {text}");
    assert!(text.contains(&format!("address of host {victim}")), "{text}");
    // The same socket spelled otherwise (red team: each was taken). A path, a user name or a
    // query is no host address at all.
    let port = victim_url.trim().rsplit(':').next().expect("a port").to_owned();
    for (spelling, answer) in [
        (format!("https://127.1:{port}"), 409),
        (format!("https://127.0.0.1:{port}/"), 409),
        (format!("HTTPS://127.0.0.1:{port}"), 409),
        (format!("https://0x7f.0.0.1:{port}"), 409),
        (format!("https://127.0.0.1:{port}/x/.."), 409),
        (format!("https://user@127.0.0.1:{port}"), 400),
        (format!("https://127.0.0.1:{port}/x"), 400),
        (format!("https://127.0.0.1:{port}?x"), 400),
    ] {
        let resp = http.post(&url).json(&beat(spelling.clone())).send().await.expect("beat");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status, answer, "moved onto {victim}'s address as {spelling}: {text}");
    }
    let resp = http.post(&url).json(&beat("https://127.0.0.1:11".into())).send().await.expect("beat");
    assert!(resp.status().is_success(), "its own address: {}", resp.text().await.unwrap_or_default());
}

/// A host's zone is printed in every user's `status` and the admin's `admin host ls`: a host
/// cannot put terminal control sequences there (clear the screen, set the window title, forge
/// a row, reverse text). Refused at join; a catalog from before that check prints them
/// escaped.
#[tokio::test(flavor = "multi_thread")]
async fn a_hosts_zone_cannot_drive_a_users_terminal() {
    let env = grid(2).await;
    let token = env.ok(&["admin", "operator", "add", "acme"]).trim().to_owned();
    let evil = "evil\u{1b}[2J\u{1b}]0;PWNED\u{7}\r\nh9    online  fake\u{202e}";
    let http = scatter_net::http_client(Some(fingerprint(&env)), scatter_net::Peer::Coordinator)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let join = JoinRequest {
        join_token: token,
        address: "https://127.0.0.1:9".into(),
        zone: evil.into(),
        capacity: ByteSize(1 << 30),
        receipt_key: None,
        terms: HostTerms::default(),
    };
    let resp = http.post(format!("{}/v1/hosts/join", env.grid.url())).json(&join).send().await.expect("join");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(status, 400, "a zone with control characters: {text}");
    assert!(text.contains("zone"), "{text}");

    let catalog = rusqlite::Connection::open(env.grid.coordinator_dir().join("catalog.db")).expect("catalog");
    catalog.busy_timeout(Duration::from_secs(10)).expect("busy timeout");
    catalog.execute("UPDATE hosts SET zone = ?1 WHERE id = 1", [evil]).expect("an old catalog's zone");
    for args in [&["status"][..], &["admin", "host", "ls"][..]] {
        let out = env.ok(args);
        assert!(!out.contains(['\u{1b}', '\u{7}', '\r', '\u{202e}']), "{args:?} printed the zone raw: {out:?}");
        assert!(out.contains("evil\\x1b[2J"), "{args:?} shows the zone escaped: {out}");
        assert!(!out.contains("\nh9 "), "{args:?}: a forged row: {out}");
    }
}
