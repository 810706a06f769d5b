//! Hostile tenants and hosts against the audit trail, with real processes: what an account
//! or a host may repeat at will is kept apart from the admin's changes, so no flood of it
//! pushes those out of `admin events`.

use crate::common;

use common::attacker::Attacker;
use common::grid;
use scatter_core::ByteSize;
use scatter_proto::api::{HeartbeatRequest, HostTerms};

/// Host `i`'s id and secret, as it saved them: what a host's owner holds.
fn host_identity(env: &common::Env, i: usize) -> (scatter_core::HostId, String) {
    let raw = std::fs::read(env.grid.host_dir(i).join("host.json")).expect("host.json");
    let id: serde_json::Value = serde_json::from_slice(&raw).expect("json");
    let secret = id["host_secret"].as_str().expect("secret").to_owned();
    (scatter_core::HostId(id["host_id"].as_u64().expect("id")), secret)
}

/// Attack: a tenant disables its own delegate again and again (each call was accepted and
/// recorded), and a host alternates its receipt key at every heartbeat (each change was
/// recorded and asked for a catalog backup). Both landed in the trail's pool of the admin's
/// changes, which keeps its newest 100,000: about 100,000 such requests, a few minutes'
/// work, erased every record of who was invited, disabled or given a quota. Now a change
/// that changes nothing is not recorded, and what a tenant or a host does is kept in pools
/// of its own, with at most 1,000 events of any one actor there.
#[tokio::test(flavor = "multi_thread")]
async fn neither_a_tenant_nor_a_host_floods_the_admins_changes_out_of_the_trail() {
    let env = grid(4).await;
    let bob = Attacker::invite(&env, &["bob"]).await;
    let reader = Attacker::invite(&env, &["bobs-reader", "--role", "reader", "--of", &bob.user.to_string()]).await;

    for _ in 0..20 {
        let (status, body) = bob
            .call(reqwest::Method::POST, "/v1/delegates/disable", Some(serde_json::json!({ "user": reader.user })))
            .await;
        assert_eq!(status, 200, "disabling one's own delegate again: {body}");
    }

    let (host, secret) = host_identity(&env, 0);
    let http = scatter_net::http_client(Some(common::fingerprint(&env)), scatter_net::Peer::Coordinator)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("client");
    let keys: Vec<String> = (0..2u8)
        .map(|i| hex::encode(ed25519_dalek::SigningKey::from_bytes(&[i + 40; 32]).verifying_key().to_bytes()))
        .collect();
    let url = format!("{}/v1/hosts/heartbeat", env.grid.url());
    let flips = 1_100;
    for i in 0..flips {
        let beat = HeartbeatRequest {
            host_id: host,
            host_secret: secret.clone(),
            address: common::host(&env, 0).1,
            capacity: ByteSize(1 << 30),
            used: ByteSize(0),
            free: ByteSize(1 << 30),
            refused_grants: 0,
            refusals: vec![],
            spent_grants: 0,
            receipt_key: Some(keys[i % 2].clone()),
            terms: HostTerms::default(),
            served: 0,
        };
        let resp = http.post(&url).json(&beat).send().await.expect("heartbeat");
        assert!(resp.status().is_success(), "heartbeat: {}", resp.text().await.unwrap_or_default());
    }

    let events: serde_json::Value =
        serde_json::from_str(&env.ok(&["admin", "events", "--limit", "10000", "--json"])).expect("events JSON");
    let events = events.as_array().expect("a list");
    let count = |action: &str| events.iter().filter(|e| e["action"] == action).count();
    assert_eq!(count("delegate.disabled"), 1, "disabling a disabled delegate again was recorded again");
    assert!(
        count("host.receipt_key_changed") <= 1_000,
        "one host kept {} events in the trail",
        count("host.receipt_key_changed")
    );
    let bob_invited = events
        .iter()
        .any(|e| e["action"] == "user.invited" && e["detail"].as_str().is_some_and(|d| d.starts_with("bob ")));
    assert!(bob_invited, "the admin's invite is gone from the trail");

    // Where they are kept: not in the pool of the admin's changes (pool 0), which the
    // admin's invite is in.
    let db = env.catalog_db();
    let pool_of = |action: &str| -> Vec<i64> {
        let mut q = db.prepare("SELECT DISTINCT pool FROM events WHERE action = ?1").expect("query");
        q.query_map([action], |r| r.get(0)).expect("rows").map(|r| r.expect("row")).collect()
    };
    assert_eq!(pool_of("user.invited"), [0]);
    for action in ["delegate.disabled", "host.receipt_key_changed"] {
        assert!(!pool_of(action).contains(&0), "{action} is kept with the admin's changes");
    }
}
