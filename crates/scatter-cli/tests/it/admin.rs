//! An admin undoes what it did, with real processes: enable a user or a host again, change a
//! quota, list and revoke invites; removed users stay apart; names and quotas are checked.
//! Every new endpoint is first tried by a non-admin, who is refused and changes nothing.

use std::process::Output;

use crate::common;
use common::attacker::Attacker;
use common::*;

fn refused(out: Output, what: &str, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what} should have been refused");
    assert!(err.contains(needle), "{what}: expected `{needle}` in: {err}");
    assert!(!err.contains("panicked"), "{what} panicked: {err}");
}

/// `admin user ls --json`, the entry of `id`.
fn user(env: &Env, id: u64) -> serde_json::Value {
    let users: serde_json::Value = serde_json::from_str(&env.ok(&["admin", "user", "ls", "--json"])).expect("JSON");
    users.as_array().expect("users").iter().find(|u| u["id"] == id).cloned().expect("listed")
}

/// `admin host ls --json`, the state of host `id`.
fn host_state(env: &Env, id: u64) -> String {
    let hosts: serde_json::Value = serde_json::from_str(&env.ok(&["admin", "host", "ls", "--json"])).expect("JSON");
    let h = hosts.as_array().expect("hosts").iter().find(|h| h["id"] == id).cloned().expect("host");
    h["state"].as_str().expect("state").to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_undo_what_they_did_and_nobody_else_can() {
    let env = grid(3).await;
    let url = env.grid.url().to_owned();
    // Every host holds a shard of this pack: a drain cannot move them, so it stays draining.
    let file = env.write_random("data", 100_000, 1);
    env.put(&file, "data");

    let mallory = Attacker::invite(&env, &["mallory", "--quota", "5MiB"]).await;
    let carol = env.path("carol");
    let token = env.ok(&["admin", "user", "add", "carol"]).trim().to_owned();
    ok(run(&carol, &["init", "--coordinator", &url, "--token", &token], &[]), "carol init");
    env.ok(&["admin", "user", "disable", "u3"]);
    let pending = env.ok(&["admin", "user", "add", "dave"]).trim().to_owned();
    let invites: serde_json::Value = serde_json::from_str(&env.ok(&["admin", "invite", "ls", "--json"])).expect("JSON");
    let dave = invites.as_array().expect("invites").iter().find(|i| i["name"] == "dave").expect("dave's invite");
    let dave_id = dave["id"].as_str().expect("id").to_owned();
    env.ok(&["admin", "host", "drain", "h1", "--force"]);
    assert_eq!(host_state(&env, 1), "draining");

    // The attacker (a plain user) first: each new endpoint refuses it, and nothing changes.
    let me = mallory.user.to_string();
    let my = mallory.user.0;
    let tries = [
        ("/v1/admin/users/enable", serde_json::json!({ "user": 3 })),
        ("/v1/admin/users/quota", serde_json::json!({ "user": my, "quota": null })),
        ("/v1/admin/invites/remove", serde_json::json!({ "id": dave_id })),
        ("/v1/admin/hosts/enable", serde_json::json!({ "host": 1 })),
    ];
    for (path, body) in tries {
        let (status, reply) = mallory.call(reqwest::Method::POST, path, Some(body)).await;
        assert_eq!(status, 403, "{path}: {reply}");
    }
    let (status, reply) = mallory.call(reqwest::Method::GET, "/v1/admin/invites", None).await;
    assert_eq!(status, 403, "invites: {reply}");
    assert!(!reply.to_string().contains(&dave_id), "{reply}");
    assert_eq!(user(&env, 3)["disabled"], true);
    assert_eq!(user(&env, my)["quota"], 5 << 20);
    let listed = env.ok(&["admin", "invite", "ls"]);
    assert!(listed.contains(&dave_id));
    // The quota column ends where its heading does, on every line.
    for line in listed.lines() {
        assert_eq!(line.get(52..54), Some("  "), "columns out of line: {listed}");
    }
    assert_eq!(host_state(&env, 1), "draining");

    // The admin can.
    env.ok(&["admin", "user", "enable", "u3"]);
    ok(run(&carol, &["ls"], &[]), "carol enabled again");
    env.ok(&["admin", "user", "quota", &me, "1GiB"]);
    assert_eq!(user(&env, my)["quota"], 1u64 << 30);
    env.ok(&["admin", "user", "quota", &me, "none"]);
    assert!(user(&env, my)["quota"].is_null());
    env.ok(&["admin", "invite", "rm", &dave_id]);
    assert!(!env.ok(&["admin", "invite", "ls"]).contains(&dave_id));
    refused(run(&env.path("dave"), &["init", "--coordinator", &url, "--token", &pending], &[]), "revoked", "unknown");
    assert!(!env.path("dave").exists(), "a refused init left its profile folder");
    // The hosts' join token is not an invite, and is told apart.
    let join = std::fs::read_to_string(env.grid.coordinator_dir().join("join-token")).expect("join token");
    let init = ["init", "--coordinator", &url, "--token", join.trim()];
    refused(run(&env.path("erin"), &init, &[]), "a join token", "this is a join token, for hosts");
    env.ok(&["admin", "host", "undrain", "h1"]);
    assert_eq!(host_state(&env, 1), "online");
    // A disabled host is not trusted: it comes back only once repair moved its shards off,
    // which it cannot here (every host holds a shard of the pack).
    env.ok(&["admin", "host", "disable", "h2"]);
    refused(env.scatter(&["admin", "host", "enable", "h2"]), "enable a disabled host", "not trusted again");
    // Its operator reads it in the host's log (a new user's disabled host said nothing).
    let i = (0..env.grid.host_count()).find(|i| host(&env, *i).0 .0 == 2).expect("h2");
    let log = env.grid.host_dir(i).with_file_name(format!("host-{i}.log"));
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("the grid's admin has disabled this host") {
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "the host's log does not say it is disabled");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // Sizes without a unit, tiny quotas and taken names are refused with a sentence.
    let out = env.scatter(&["admin", "user", "add", "erin", "--quota", "10"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no unit"));
    refused(env.scatter(&["admin", "user", "quota", &me, "10KiB"]), "tiny quota", "cannot hold even one pack");
    // So are a host's (it joined as 500 bytes, and raised the grid's tolerance with no room).
    for (capacity, says) in [("500", "has no unit"), ("500KiB", "cannot hold a shard")] {
        let out = env.scatter(&["host", "--data-dir", "/nonexistent", "--join-token", "x", "--capacity", capacity]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.code() == Some(2) && err.contains(says), "--capacity {capacity}: {err}");
    }
    refused(env.scatter(&["admin", "user", "add", "carol"]), "taken name", "is taken");

    // A removed user is listed as removed, not disabled, and cannot be enabled again. Users
    // are named by id or by name.
    refused(env.scatter(&["admin", "user", "rm", "nobody"]), "unknown name", "no user is named `nobody`");
    env.ok(&["admin", "user", "rm", "carol"]);
    assert_eq!(user(&env, 3)["removed"], true);
    assert!(env.ok(&["admin", "user", "ls"]).lines().any(|l| l.contains("carol") && l.contains("removed")));
    refused(env.scatter(&["admin", "user", "enable", "u3"]), "enable removed", "removed");

    let events = env.ok(&["admin", "events"]);
    for action in ["user.enabled", "user.quota", "invite.revoked", "host.state"] {
        assert!(events.contains(action), "no {action} in: {events}");
    }
    assert!(events.contains("h1 active (was draining)"), "{events}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_host_comes_back_empty_once_repair_moved_its_shards() {
    let env = grid(4).await;
    let file = env.write_random("data", 200_000, 2);
    env.put(&file, "data");
    let hosts: serde_json::Value = serde_json::from_str(&env.ok(&["admin", "host", "ls", "--json"])).expect("JSON");
    let host =
        hosts.as_array().expect("hosts").iter().find(|h| h["shards"].as_u64() > Some(0)).expect("a host with shards");
    let id = host["id"].as_u64().expect("id");
    let h = format!("h{id}");
    env.ok(&["admin", "host", "disable", &h]);
    // The other three hosts can hold every shard of a 4+2 pack (two each): repair moves
    // them, and only then is the host let back in.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    let left = || {
        let hosts: serde_json::Value = serde_json::from_str(&env.ok(&["admin", "host", "ls", "--json"])).expect("JSON");
        hosts.as_array().expect("hosts").iter().find(|x| x["id"] == id).expect("host")["shards"].clone()
    };
    loop {
        if left() == 0 {
            env.ok(&["admin", "host", "enable", &h]);
            break;
        }
        let out = env.scatter(&["admin", "host", "enable", &h]);
        // Repair may finish its last move between the look and the enable: then the enable
        // is right, and nothing may be left on the host.
        if out.status.success() {
            assert_eq!(left(), 0, "enabled while the catalog still placed shards on it");
            break;
        }
        refused(out, "enable too early", "not trusted again");
        assert!(std::time::Instant::now() < deadline, "repair did not move the disabled host's shards: {}", left());
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert_eq!(host_state(&env, id), "online");
    env.get_and_compare("data", &file);
    assert!(env.ok(&["admin", "events"]).contains(&format!("{h} active (was disabled)")));
}

/// New-user trial: a host gone for good and disabled still had copies for the deleter
/// (repair's leftovers) to remove, which it tried every 2 s for ever; once another host
/// took its address, each try was refused there and logged as a `grant.refused` event.
/// A disabled host silent past the orphan grace is no longer asked: its copies are gone
/// with it, and their rows are forgotten.
#[tokio::test(flavor = "multi_thread")]
async fn the_copies_of_a_dead_disabled_host_are_forgotten_not_asked_for_for_ever() {
    let mut env = grid(6).await;
    let file = env.write_random("data", 300_000, 7);
    env.put(&file, "data");
    let (dead, _) = host(&env, 0);
    env.grid.kill_host(0);
    env.ok(&["admin", "host", "disable", &dead.to_string()]);
    let count = |sql: &str| -> i64 { env.catalog_db().query_row(sql, [dead.0 as i64], |r| r.get(0)).expect("count") };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let mut orphaned = false;
    loop {
        let (shards, orphans) = (
            count("SELECT COUNT(*) FROM shards WHERE host = ?1"),
            count("SELECT COUNT(*) FROM orphans WHERE host = ?1"),
        );
        orphaned |= orphans > 0;
        if shards == 0 && orphaned && orphans == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the dead host still has {shards} shard row(s) and {orphans} orphan(s) (any recorded: {orphaned})"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    env.get_and_compare("data", &file);
}
