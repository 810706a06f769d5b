//! Object lock and expiry against a real grid: a compliance lock survives every way of
//! removing data (the CLI's and hand-made requests), an admin's attempt and a coordinator
//! restart, and ends on time; a governance lock is lifted by an admin and recorded; locks
//! longer than a maximum are refused; expiring data goes on time and frees its shards,
//! while chunks it shares stay.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use common::attacker::{now, Attacker};
use common::{grid, ok, run, shard_files, Env};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn shards(env: &Env) -> usize {
    (0..env.grid.host_count()).map(|i| shard_files(&env.grid.host_dir(i)).len()).sum()
}

/// Waits (bounded) until `done` holds; panics with `what` when it does not in `limit`.
async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen within {limit:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Sleeps until Unix time `t` has passed (bounded: a lock in these tests is seconds long).
async fn sleep_past(t: u64) {
    let wait = t.saturating_sub(now()) + 1;
    assert!(wait < 120, "a test lock lasts seconds, not {wait} s");
    tokio::time::sleep(Duration::from_secs(wait)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compliance_lock_survives_every_removal_and_an_admin_until_it_ends() {
    let mut env = grid(6).await;
    let src = env.path("data");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::rename(env.write_random("f", 3 << 20, 1), src.join("f")).expect("mv");
    let file = env.write_random("object", 2 << 20, 2);
    // Long enough for every refusal below (and a restart) on a loaded machine.
    let keep = ["--keep-for", "25s", "--lock-mode", "compliance"];
    let mut args = vec!["backup", s(&src), "--json"];
    args.extend_from_slice(&keep);
    let id = json(&env.ok(&args))["snapshot_id"].as_str().expect("id").to_owned();
    let mut args = vec!["put", s(&file), "--name", "locked"];
    args.extend_from_slice(&keep);
    env.ok(&args);
    let stored = shards(&env);

    // Extended without naming the mode, it stays compliance (it was refused as a weakening).
    env.ok(&["lock", &id[..8], "--keep-for", "25s"]);

    // Shown in listings, in JSON too.
    let list = json(&env.ok(&["snapshots", "--json"]));
    assert_eq!(list[0]["lock_mode"], "compliance", "{list}");
    let until = list[0]["lock_until"].as_u64().expect("lock end");
    assert!(env.ok(&["snapshots"]).contains("locked (compliance) until"));
    let objects = json(&env.ok(&["ls", "--json"]));
    assert_eq!(objects["objects"][0]["lock_mode"], "compliance", "{objects}");
    assert!(env.ok(&["ls"]).contains("locked (compliance)"));

    // The CLI's ways of removing it are refused, naming the lock and its end.
    let err = env.fails(&["forget", &id]);
    assert!(err.contains("compliance lock until"), "{err}");
    let err = env.fails(&["rm", "locked"]);
    assert!(err.contains("compliance lock until") && err.contains("nobody can lift it"), "{err}");
    env.ok(&["prune", "--max-unused", "0"]);
    // An admin cannot lift it either (the grid's user is its admin).
    let err = env.fails(&["admin", "lock", "lift", &id, "--reason", "please"]);
    assert!(err.contains("not even by an admin"), "{err}");
    assert!(env.ok(&["admin", "events"]).contains("lock.lift_refused"));

    // Nor can hand-made requests with the user's own device key: forget, rewrite the
    // record, remove the object, or have a repack move its chunks.
    let me = Attacker::from_profile(&env, &env.grid.client_dir());
    let (status, body) = me.post("/v1/snapshots/forget", &serde_json::json!({ "ids": [id] })).await;
    assert_eq!(status, 403, "{body}");
    let record = base64::engine::general_purpose::STANDARD.encode(b"garbage");
    let (status, body) = me.post("/v1/snapshots/record", &serde_json::json!({ "id": id, "record": record })).await;
    assert_eq!(status, 403, "a locked snapshot's record is not rewritten: {body}");
    let names = json(&env.ok(&["ls", "--json"]));
    assert_eq!(names["objects"].as_array().map(Vec::len), Some(1));
    let keys =
        scatter_client::profile::Profile::load_keys(&env.grid.client_dir(), env.grid.passphrase()).expect("keys");
    let name = keys.write_keys().name_key().encrypt("locked");
    let q = format!("/v1/object?name={}", urlencode(&name));
    let (status, body) = me.call(reqwest::Method::DELETE, &q, None).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = me.post("/v1/prune", &serde_json::json!({ "max_unused_percent": 0 })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["repack"].as_array().map(Vec::len), Some(0), "no locked chunk is offered for repacking: {body}");
    assert_eq!(body["packs_released"], 0, "{body}");
    assert_eq!(shards(&env), stored, "nothing left the hosts");

    // Locks are the coordinator's records: they hold across a restart.
    env.grid.kill_coordinator();
    env.grid.start_coordinator().expect("restart coordinator");
    assert!(env.fails(&["forget", &id]).contains("compliance lock until"));
    let target = env.path("restored");
    env.ok(&["restore", &id, "--target", s(&target)]);
    env.get_and_compare("locked", &file);

    // Once it ends, everything goes, and the hosts are freed.
    sleep_past(until).await;
    env.ok(&["forget", &id]);
    env.ok(&["rm", "locked"]);
    env.ok(&["prune", "--max-unused", "0"]);
    wait_until(Duration::from_secs(30), "shards freed", || shards(&env) == 0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_governance_lock_is_lifted_by_an_admin_and_maxima_and_defaults_hold() {
    let env = grid(6).await;
    let src = env.path("data");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("a"), b"governed").expect("write");
    let id = json(&env.ok(&["backup", s(&src), "--keep-for", "1h", "--json"]))["snapshot_id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(json(&env.ok(&["snapshots", "--json"]))[0]["lock_mode"], "governance");
    assert!(env.fails(&["forget", &id]).contains("governance lock until"));
    // A forget policy passes over it; a lock is extended, never shortened by its user.
    let out = env.ok(&["forget", "--keep-tag", "none-has-it"]);
    assert!(out.contains(&format!("keep {}", &id[..8])) && out.contains("0 snapshot(s) removed"), "{out}");
    let before = json(&env.ok(&["snapshots", "--json"]))[0]["lock_until"].as_u64().expect("end");
    let err = env.fails(&["lock", &id[..8], "--keep-for", "10m"]);
    assert!(err.contains("governance lock runs until") && err.contains("only ever extended"), "{err}");
    let said = env.ok(&["lock", &id[..8], "--keep-for", "2h"]);
    assert!(said.contains("is locked until 20"), "says until when: {said}");
    let after = json(&env.ok(&["snapshots", "--json"]))[0]["lock_until"].as_u64().expect("end");
    assert!(after >= before + 3000, "extended: {before} -> {after}");
    assert!(env.fails(&["admin", "lock", "lift", &id, "--reason", " "]).contains("say why"));
    // The start of the id, as `snapshots` shows it, will do (it was refused as not locked).
    env.ok(&["admin", "lock", "lift", &id[..8], "--reason", "Legal hold released"]);
    // Lifted once: a second lift is nothing to record (it said "Lifted" again).
    let err = env.fails(&["admin", "lock", "lift", &id, "--reason", "again"]);
    assert!(err.contains("is locked now"), "{err}");
    let events = env.ok(&["admin", "events"]);
    assert!(events.contains("lock.lifted") && events.contains("Legal hold released"), "the reason as given: {events}");
    env.ok(&["forget", &id]);

    // The grid's default maximum (a year), then an admin's for another user.
    let file = env.write_random("f", 100 << 10, 3);
    let err = env.fails(&["put", s(&file), "--name", "long", "--keep-for", "400d"]);
    assert!(err.contains("longer than the 365d this account may take"), "{err}");
    let token = env.ok(&["admin", "user", "add", "bob"]).trim().to_owned();
    let bob = env.path("bob");
    ok(run(&bob, &["init", "--coordinator", env.grid.url(), "--token", &token], &[]), "bob init");
    let set = ["--max-lock", "1h", "--max-delegate-lock", "10m", "--default-lock", "20s"];
    let mut args = vec!["admin", "user", "set", "u2"];
    args.extend_from_slice(&set);
    args.extend_from_slice(&["--default-lock-mode", "compliance"]);
    assert!(env.ok(&args).contains("locks up to 1h, its delegates' up to 10m"));
    let out = run(&bob, &["put", s(&file), "--name", "x", "--keep-for", "2h"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("longer than the 1h"), "{out:?}");
    assert!(env.ok(&["admin", "events"]).contains("lock.refused"));
    // Its default: every new object locked, in compliance mode.
    ok(run(&bob, &["put", s(&file), "--name", "x"], &[]), "bob put");
    let list = json(&ok(run(&bob, &["ls", "--json"], &[]), "bob ls"));
    assert_eq!(list["objects"][0]["lock_mode"], "compliance", "{list}");
    let out = run(&bob, &["rm", "x"], &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("compliance lock until"), "{out:?}");
    // Removing a user holding data takes --yes (a mistyped id deleted another's backups).
    let err = env.fails(&["admin", "user", "rm", "u2"]);
    assert!(err.contains("deletes for good") && err.contains("--yes"), "{err}");
    // Removing a user waits for its compliance locks to end.
    let err = env.fails(&["admin", "user", "rm", "u2", "--yes"]);
    assert!(err.contains("user u2's data") && err.contains("compliance lock until"), "{err}");

    // A delegate (an appender of u1) takes at most u1's delegate maximum (30 days by default).
    let nas = common::appender(&env, "nas", &[]);
    let out = run(&nas, &["backup", s(&src), "--keep-for", "31d"], &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("longer than the 30d a delegate may take"), "{out:?}");
    ok(run(&nas, &["backup", s(&src), "--keep-for", "7d"], &[]), "a delegate's lock within its maximum");
}

#[tokio::test(flavor = "multi_thread")]
async fn expiring_objects_go_on_time_and_free_their_shards_but_not_shared_chunks() {
    let env = grid(6).await;
    let kept = env.write_random("kept", 2 << 20, 4);
    env.put(&kept, "kept");
    let base = shards(&env);
    // The same content under another name: every chunk shared with `kept`.
    env.ok(&["put", s(&kept), "--name", "copy", "--expire-after", "10s"]);
    assert_eq!(shards(&env), base, "deduplicated: no new shards");
    let gone = env.write_random("gone", 2 << 20, 5);
    env.ok(&["put", s(&gone), "--name", "gone", "--expire-after", "10s"]);
    let src = env.path("data");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::copy(&gone, src.join("g")).expect("copy");
    env.ok(&["backup", s(&src), "--expire-after", "10s"]);
    let snaps = json(&env.ok(&["snapshots", "--json"]));
    assert!(snaps[0]["expires"].as_u64().is_some(), "{snaps}");
    let with = shards(&env);
    assert!(with > base);
    let list = json(&env.ok(&["ls", "--json"]));
    let expires = list["objects"][1]["expires"].as_u64().expect("expiry shown");
    assert!(expires <= now() + 11);
    assert!(env.ok(&["ls"]).contains("expires"));

    wait_until(Duration::from_secs(30), "expired objects removed", || {
        let list = json(&env.ok(&["ls", "--json"]));
        list["objects"].as_array().map(Vec::len) == Some(1)
    })
    .await;
    wait_until(Duration::from_secs(30), "the expired snapshot removed", || {
        json(&env.ok(&["snapshots", "--json"])).as_array().is_some_and(Vec::is_empty)
    })
    .await;
    wait_until(Duration::from_secs(30), "their shards freed on hosts", || shards(&env) == base).await;
    assert_eq!(json(&env.ok(&["ls", "--json"]))["objects"][0]["name"], "kept");
    env.get_and_compare("kept", &kept);
    assert!(env.ok(&["admin", "events"]).contains("data.expired"));
    // A lock ending after the expiry is refused outright.
    let err = env.fails(&["put", s(&gone), "--name", "odd", "--expire-after", "3s", "--keep-for", "1h"]);
    assert!(err.contains("expire before its lock ends"), "{err}");
}

/// Percent-encodes a query value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// Red team: a put over a locked object was allowed ("it adds a version, removes nothing"),
/// but only the latest version could be read or listed: a stolen device could hide every
/// locked object behind a new version, the listing still showing it locked. The versions a
/// lock keeps are listed (`scatter versions`) and read (`scatter get --version`).
#[tokio::test(flavor = "multi_thread")]
async fn a_locked_version_stays_readable_behind_a_newer_one() {
    let env = grid(6).await;
    let (first, second) = (env.write_random("first", 300_000, 5), env.write_random("second", 200_000, 6));
    env.ok(&["put", s(&first), "--name", "contract.pdf", "--keep-for", "1d", "--lock-mode", "compliance"]);
    env.ok(&["put", s(&second), "--name", "contract.pdf"]);
    env.get_and_compare("contract.pdf", &second);

    let versions = json(&env.ok(&["versions", "contract.pdf", "--json"]));
    let listed: Vec<(u64, Option<&str>)> = versions["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| (v["version"].as_u64().expect("version"), v["lock_mode"].as_str()))
        .collect();
    assert_eq!(listed, [(1, Some("compliance")), (2, None)], "{versions}");
    assert!(env.ok(&["versions", "contract.pdf"]).contains("locked (compliance)"));

    let out = env.path("v1");
    env.ok(&["get", "contract.pdf", "--version", "1", "-o", s(&out)]);
    assert!(std::fs::read(&out).expect("v1") == std::fs::read(&first).expect("first"), "version 1 came back altered");
    let err = env.fails(&["get", "contract.pdf", "--version", "7", "-o", s(&env.path("v7"))]);
    assert!(err.contains("no version 7") && err.contains("scatter versions"), "{err}");
    let err = env.fails(&["get", "contract.pdf", "--version", "0", "-o", s(&env.path("v0"))]);
    assert!(err.contains("no version 0"), "version 0 is no version: {err}");
    assert!(!env.path("v7").exists());
    assert!(env.fails(&["versions", "nothing-here"]).contains("no object named"));
}
