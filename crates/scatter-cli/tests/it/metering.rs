//! Metering and billing with real processes: known traffic (puts, gets, a repair, a removal
//! and a prune) across a coordinator restart, checked against figures the test computes on
//! its own (shard bytes in the hosts' data directories, the sizes it put, the clock), and who
//! may see which bills.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common;
use common::*;
use scatter_cli::grid::GridOptions;
use serde_json::Value;

/// The sampling interval the coordinator runs with here.
const INTERVAL: u64 = 1;

/// Sealed bytes a chunk adds to its plaintext (zstd is skipped for random data): a 2-byte
/// header, a 12-byte nonce and a 16-byte tag (`scatter_core::crypto::SEAL_OVERHEAD`).
const SEAL_OVERHEAD: i64 = 30;

fn unix() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs_f64()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Bytes of shard files in the data directories of the hosts that run.
fn live_shard_bytes(env: &Env) -> i64 {
    (0..env.grid.host_count())
        .filter(|i| env.grid.host_running(*i))
        .flat_map(|i| shard_files(&env.grid.host_dir(i)))
        .map(|f| std::fs::metadata(f).map(|m| m.len() as i64).unwrap_or(0))
        .sum()
}

/// Sum of the amounts of `kind` records of subject `subject` (`user`/`host`), of `who` if given.
fn total(records: &Value, subject: &str, who: Option<u64>, kind: &str) -> i64 {
    records
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["subject"] == subject && r["kind"] == kind && who.is_none_or(|w| r["who"] == w))
        .map(|r| r["amount"].as_i64().expect("amount"))
        .sum()
}

fn records(env: &Env) -> Value {
    json(&env.ok(&["admin", "billing", "records"]))
}

/// Waits until `check` holds of the records, or fails with them after `limit`.
async fn until(env: &Env, limit: Duration, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let r = records(env);
        if check(&r) {
            return r;
        }
        assert!(started.elapsed() < limit, "{what} not seen within {limit:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The user's stored bytes over time, as the test saw them change: (earliest, latest
/// possible time of the change, value after it).
struct Timeline(Vec<(f64, f64, i64)>);

impl Timeline {
    /// ∫ stored dt up to `until`, with the tolerance that the change times' windows, the
    /// one-second record clock and one sampling interval (plus the job's tick) allow.
    fn expected(&self, until: f64) -> (f64, f64) {
        let mut sum = 0.0;
        let mut slack = 0.0;
        let mut prev: Option<(f64, i64)> = None;
        for (before, after, value) in &self.0 {
            let mid = (before + after) / 2.0;
            if let Some((t, v)) = prev {
                sum += v as f64 * (mid - t);
                slack += (value - v).abs() as f64 * ((after - before) / 2.0 + INTERVAL as f64 + 1.0);
            } else {
                slack += *value as f64 * ((after - before) / 2.0 + INTERVAL as f64 + 1.0);
            }
            prev = Some((mid, *value));
        }
        if let Some((t, v)) = prev {
            sum += v as f64 * (until - t);
            // The last sample may be an interval and a tick (1 s) old.
            slack += v as f64 * (INTERVAL as f64 + 2.0);
        }
        (sum, slack)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_records_and_statements_match_known_traffic() {
    let opts = GridOptions {
        passphrase: "test passphrase".into(),
        checker_interval: "1s".into(),
        offline_after: "3s".into(),
        coordinator_args: vec!["--metering-interval".into(), format!("{INTERVAL}s")],
        ..Default::default()
    };
    let mut env = grid_with(7, opts).await;
    env.ok(&[
        "admin",
        "billing",
        "rates",
        "set",
        "--from",
        "1970-01-01",
        "--currency",
        "EUR-micro",
        "--storage-gib-month",
        "4000",
        "--egress-gib",
        "7000",
        "--host-storage-gib-month",
        "1500",
        "--host-egress-gib",
        "2000",
    ]);
    let cards = json(&env.ok(&["admin", "billing", "rates", "ls", "--json"]));
    assert_eq!(cards[0]["storage_gib_month"], 4000, "{cards}");

    // Two files of one chunk each (below the chunker's minimum), one pack each.
    let (size_a, size_b) = (100_000i64, 200_000i64);
    let a = env.write_random("a", size_a as usize, 1);
    let b = env.write_random("b", size_b as usize, 2);
    let mut timeline = Timeline(Vec::new());
    let before = unix();
    env.put(&a, "a");
    let on_hosts_a = live_shard_bytes(&env);
    timeline.0.push((before, unix(), on_hosts_a));
    let before = unix();
    env.put(&b, "b");
    let on_hosts_ab = live_shard_bytes(&env);
    timeline.0.push((before, unix(), on_hosts_ab));
    let shards_of_a = on_hosts_a;

    // Ingress and stored bytes: byte-exact against the shard files the hosts hold.
    let r = records(&env);
    assert_eq!(total(&r, "user", Some(1), "ingress"), on_hosts_ab, "ingress = shard bytes on hosts");
    assert_eq!(total(&r, "user", Some(1), "stored"), on_hosts_ab, "stored = shard bytes on hosts");
    assert_eq!(total(&r, "host", None, "held"), on_hosts_ab, "hosts hold what users store");
    let sealed_a = size_a + SEAL_OVERHEAD;
    let sealed_b = size_b + SEAL_OVERHEAD;
    assert_eq!(total(&r, "user", Some(1), "logical"), sealed_a + sealed_b, "logical = sealed bytes put");

    // A read before the restart, one after: egress is the sealed bytes fetched.
    env.get_and_compare("a", &a);
    env.grid.kill_coordinator();
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.grid.start_coordinator().expect("coordinator restarts");
    // Until a host's heartbeat reaches the restarted coordinator, it counts as down, and a
    // read of a pack with a data shard there rebuilds it from parity: more egress than the
    // sealed bytes (it happened once in a full run, under load).
    env.grid.wait_online(7, Duration::from_secs(30)).await.expect("the hosts are heard from again");
    env.get_and_compare("b", &b);
    let r = records(&env);
    assert_eq!(total(&r, "user", Some(1), "egress"), sealed_a + sealed_b, "egress = sealed bytes read");
    // What a healthy read asks of hosts is what was located, spread over them.
    assert_eq!(total(&r, "host", None, "granted"), sealed_a + sealed_b, "grants per host add up");

    // A host dies: its shards are rebuilt elsewhere; the repairer read k=4 shards per rebuilt one.
    let victim = (0..env.grid.host_count()).max_by_key(|i| shard_files(&env.grid.host_dir(*i)).len()).expect("hosts");
    let lost: i64 = shard_files(&env.grid.host_dir(victim))
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len() as i64).unwrap_or(0))
        .sum();
    assert!(lost > 0, "the victim holds shards");
    env.grid.kill_host(victim);
    let r = until(&env, Duration::from_secs(120), "the repair", |r| total(r, "host", None, "repair_received") == lost)
        .await;
    assert_eq!(total(&r, "host", None, "repair_served"), 4 * lost, "k shards read per rebuilt shard");
    assert_eq!(live_shard_bytes(&env), on_hosts_ab, "full redundancy on the hosts that run");
    assert_eq!(total(&r, "user", Some(1), "stored"), on_hosts_ab, "a repair does not change what the user stores");

    // Remove a, prune: the user's stored bytes fall by a's shards, when the removal commits.
    let before = unix();
    env.ok(&["rm", "a"]);
    timeline.0.push((before, unix(), on_hosts_ab - shards_of_a));
    env.ok(&["prune"]);
    let started = Instant::now();
    while live_shard_bytes(&env) != on_hosts_ab - shards_of_a {
        assert!(started.elapsed() < Duration::from_secs(60), "a's shards never left the hosts");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let r = records(&env);
    assert_eq!(total(&r, "user", Some(1), "stored"), on_hosts_ab - shards_of_a, "stored after rm");
    assert_eq!(total(&r, "user", Some(1), "logical"), sealed_b, "logical after rm");
    assert_eq!(total(&r, "host", None, "held"), on_hosts_ab - shards_of_a, "held after the deleter");

    // Byte-seconds: within one sampling interval of what the timeline gives.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let statement = json(&env.ok(&["admin", "billing", "--user", "u1", "--json"]));
    let by_name = json(&env.ok(&["admin", "billing", "--user", "admin", "--json"]));
    // The same user (its byte-seconds have grown between the two calls).
    let who = |s: &Value| (s["users"].as_array().map(Vec::len), s["users"][0]["user"].clone());
    assert_eq!(who(&by_name), who(&statement), "a user by its name, as other admin commands take it");
    let asked = unix();
    let u = &statement["users"][0];
    let byte_seconds: f64 = u["stored_byte_seconds"].as_str().expect("decimal").parse().expect("number");
    let (expected, slack) = timeline.expected(asked);
    assert!(
        (byte_seconds - expected).abs() <= slack,
        "stored byte-seconds {byte_seconds} vs {expected} ± {slack}: {statement}"
    );
    // The statement's figures and money: half up, once per line.
    assert_eq!(u["ingress_bytes"].as_i64(), Some(on_hosts_ab), "{statement}");
    assert_eq!(u["egress_bytes"].as_i64(), Some(sealed_a + sealed_b), "{statement}");
    let lines = u["lines"].as_array().expect("lines");
    let line = |item: &str| lines.iter().find(|l| l["item"] == item).unwrap_or_else(|| panic!("{item}: {statement}"));
    let gib = 1u128 << 30;
    let egress = (sealed_a + sealed_b) as u128;
    assert_eq!(line("egress")["amount"].as_i64(), Some(((egress * 7000 + gib / 2) / gib) as i64));
    let q: u128 = line("storage")["quantity"].as_str().expect("quantity").parse().expect("number");
    let per = gib * 30 * 24 * 3600;
    assert_eq!(line("storage")["amount"].as_i64(), Some(((q * 4000 + per / 2) / per) as i64));
    let owed: i64 = lines.iter().map(|l| l["amount"].as_i64().expect("amount")).sum();
    assert_eq!(u["owed"].as_i64(), Some(owed));

    // Every export: the table, CSV with its documented header, JSON for all.
    let table = env.ok(&["admin", "billing"]);
    assert!(table.contains("Statement for") && table.contains("user u1"), "{table}");
    println!("{table}");
    let csv = env.ok(&["admin", "billing", "--csv"]);
    assert!(csv.starts_with("period,party,id,name,item,quantity,unit,price,price_per,rate_from,amount,adjusts,total,withheld,withheld_reason,payable\n"), "{csv}");
    assert!(csv.lines().any(|l| l.contains(",user,u1,") && l.contains(",storage,")), "{csv}");
    let all = json(&env.ok(&["admin", "billing", "--json"]));
    let held: f64 = all["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| h["held_byte_seconds"].as_str().expect("decimal").parse::<f64>().expect("number"))
        .sum();
    assert!(held > 0.0, "{all}");
    let online: i64 =
        all["hosts"].as_array().expect("hosts").iter().map(|h| h["online_seconds"].as_i64().expect("secs")).sum();
    assert!(online > 0, "hosts' time online is counted: {all}");

    // The user's own view.
    println!("{}", env.ok(&["usage"]));
    let mine = json(&env.ok(&["usage", "--json"]));
    assert_eq!(mine["stored_bytes"].as_i64(), Some(on_hosts_ab - shards_of_a), "{mine}");
    assert_eq!((mine["objects"].as_u64(), mine["snapshots"].as_u64()), (Some(1), Some(0)), "{mine}");
    assert!(mine["statement"]["users"].as_array().expect("users").iter().all(|u| u["user"] == 1), "{mine}");
    assert!(mine["statement"]["hosts"].as_array().expect("hosts").is_empty(), "{mine}");

    // A host's own earnings, with its own identity: its statement, no other's.
    let host_dir = env.grid.host_dir((victim + 1) % env.grid.host_count());
    let (id, _) = host(&env, (victim + 1) % env.grid.host_count());
    let args = ["host", "earnings", "--data-dir", host_dir.to_str().expect("utf-8"), "--coordinator", env.grid.url()];
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let theirs = json(&ok(run(&env.path("nobody"), &with_json, &[]), "host earnings"));
    let hosts = theirs["hosts"].as_array().expect("hosts");
    assert!(hosts.len() == 1 && hosts[0]["host"] == id.0, "{theirs}");
    assert!(theirs["users"].as_array().expect("users").is_empty(), "{theirs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_admins_see_bills_and_each_party_only_its_own() {
    let env = grid(4).await;
    let url = env.grid.url().to_owned();
    let file = env.write_random("f", 50_000, 3);
    env.put(&file, "f");

    // Another user: refused the admin's billing, sees only its own usage.
    let bob = env.path("bob");
    let token = env.ok(&["admin", "user", "add", "bob", "--role", "user"]).trim().to_owned();
    ok(run(&bob, &["init", "--coordinator", &url, "--token", &token], &[]), "bob init");
    for args in [
        vec!["admin", "billing"],
        vec!["admin", "billing", "--user", "u1", "--json"],
        vec!["admin", "billing", "records"],
        vec!["admin", "billing", "rates", "ls"],
        vec!["admin", "billing", "close", "--period", "2026-01"],
        vec![
            "admin",
            "billing",
            "rates",
            "set",
            "--from",
            "2030-01-01",
            "--storage-gib-month",
            "0",
            "--egress-gib",
            "0",
            "--host-storage-gib-month",
            "9999",
            "--host-egress-gib",
            "9999",
        ],
    ] {
        let out = run(&bob, &args, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("may not administer"), "bob {args:?}: {err}");
    }
    let his = json(&ok(run(&bob, &["usage", "--json"], &[]), "bob usage"));
    assert_eq!(his["stored_bytes"], 0, "{his}");
    assert!(his["statement"]["users"].as_array().expect("users").iter().all(|u| u["user"] != 1), "{his}");

    // A reader of u1's data does not see u1's bill.
    let reader = env.path("reader");
    let token = env.ok(&["admin", "user", "add", "rd", "--role", "reader", "--of", "u1"]).trim().to_owned();
    let keys = env.path("u1.keys");
    let moving = [("SCATTER_EXPORT_PASSPHRASE", "moving"), ("SCATTER_IMPORT_PASSPHRASE", "moving")];
    let export = ["key", "export", "--output", keys.to_str().expect("utf-8")];
    ok(run_with(&env.grid.client_dir(), env.grid.passphrase(), &export, &moving), "u1's export");
    let init = ["init", "--coordinator", &url, "--token", &token, "--import", keys.to_str().expect("utf-8")];
    ok(run(&reader, &init, &moving), "reader init");
    let out = run(&reader, &["usage"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("may not"), "reader usage: {err}");

    // A host with another host's id, or a wrong secret, is refused.
    let (id0, _) = host(&env, 0);
    let (id1, _) = host(&env, 1);
    let forged = env.path("forged-host");
    std::fs::create_dir_all(&forged).expect("dir");
    let mut identity: Value =
        json(&std::fs::read_to_string(env.grid.host_dir(0).join("host.json")).expect("host.json"));
    identity["host_id"] = id1.0.into();
    std::fs::write(forged.join("host.json"), identity.to_string()).expect("write");
    let args = ["host", "earnings", "--data-dir", forged.to_str().expect("utf-8"), "--coordinator", &url];
    let out = run(&env.path("nobody"), &args, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("not registered with this secret"), "forged: {err}");
    // Its own identity works, and shows only itself.
    let own = env.grid.host_dir(0);
    let args = ["host", "earnings", "--data-dir", own.to_str().expect("utf-8"), "--coordinator", &url, "--json"];
    let mine = json(&ok(run(&env.path("nobody"), &args, &[]), "host earnings"));
    assert!(mine["hosts"].as_array().expect("hosts").iter().all(|h| h["host"] == id0.0), "{mine}");
    assert!(mine["users"].as_array().expect("users").is_empty(), "{mine}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recovered_catalog_shows_its_gap_in_statements() {
    let mut env = grid(6).await;
    let a = env.write_random("a", 60_000, 4);
    env.put(&a, "a");
    let key = env.path("offline-recovery.key");
    std::fs::copy(env.grid.coordinator_dir().join("recovery.key"), &key).expect("copy the key");
    env.ok(&["admin", "catalog-backup"]);
    // Usage after the backup: lost with the coordinator, and the statement must say so.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b = env.write_random("b", 70_000, 5);
    env.put(&b, "b");
    // The backup a recovery takes is the newest: the grid's start (hosts joining) asks for
    // backups of its own, and on a loaded machine one can land after the one asked for here.
    let health = json(&env.ok(&["admin", "health", "--json"]));
    let backup_at = health["catalog_backup"]["time"].as_f64().expect("the newest catalog backup's time");
    env.grid.kill_coordinator();
    std::fs::remove_dir_all(env.grid.coordinator_dir()).expect("delete the data folder");
    let target = env.grid.coordinator_dir();
    let mut args = vec!["coordinator".to_owned(), "recover".into(), "--data-dir".into()];
    args.extend([target.to_str().expect("utf-8").to_owned(), "--recovery-key".into()]);
    args.push(key.to_str().expect("utf-8").to_owned());
    for i in 0..env.grid.host_count() {
        args.extend(["--host".to_owned(), host(&env, i).1]);
    }
    let out = std::process::Command::new(EXE)
        .args(&args)
        .env("SCATTER_CONFIG", env.path("nobody"))
        .output()
        .expect("recover");
    assert!(out.status.success(), "recover: {}", String::from_utf8_lossy(&out.stderr));
    let recovered_at = unix();
    env.grid.start_coordinator().expect("the recovered coordinator starts");

    let statement = json(&env.ok(&["admin", "billing", "--json"]));
    let gaps = statement["gaps"].as_array().expect("gaps");
    assert_eq!(gaps.len(), 1, "{statement}");
    let (from, to) = (gaps[0]["from"].as_f64().expect("from"), gaps[0]["to"].as_f64().expect("to"));
    assert!(from <= backup_at + 1.0 && from >= backup_at - 60.0, "gap starts at the backup: {statement}");
    assert!(to >= backup_at && to <= recovered_at + 1.0, "gap ends at the recovery: {statement}");
    assert_eq!(gaps[0]["reason"], "catalog recovered from backup");
    let table = env.ok(&["admin", "billing"]);
    assert!(table.contains("no records from") && table.contains("catalog recovered from backup"), "{table}");
    let csv = env.ok(&["admin", "billing", "--csv"]);
    assert!(csv.lines().any(|l| l.contains(",gap,") && l.contains("catalog recovered from backup")), "{csv}");
    // Only a's pack is in the recovered records: b's commit went with the lost catalog.
    let r = records(&env);
    assert_eq!(total(&r, "user", Some(1), "logical"), 60_000 + SEAL_OVERHEAD, "{r}");
}

/// `scatter check` without `--read-data` only asks whether every chunk is indexed: it reads
/// the trees and no data, and is charged for the trees. It located every chunk with read
/// grants, and the whole repository was charged as read at each check.
#[tokio::test(flavor = "multi_thread")]
async fn a_check_that_reads_no_data_is_charged_for_none() {
    let env = grid(4).await;
    let src = env.path("src");
    std::fs::create_dir_all(&src).expect("src");
    for i in 0..3 {
        let f = env.write_random(&format!("f{i}"), 300_000, i);
        std::fs::rename(&f, src.join(format!("f{i}"))).expect("move into the tree");
    }
    env.ok(&["backup", src.to_str().expect("utf-8")]);
    let egress = |env: &Env| total(&records(env), "user", Some(1), "egress");
    let before = egress(&env);
    let report = json(&env.ok(&["check", "--json"]));
    assert!(report["errors"].as_array().is_some_and(|e| e.is_empty()), "{report}");
    // It reads the snapshot's tree (a few hundred bytes) to list the chunks, and no data.
    let charged = egress(&env) - before;
    assert!(charged < 10_000, "a check of the index was charged {charged} bytes");
    // A check that reads data back is charged for what it reads.
    env.ok(&["check", "--read-data"]);
    assert!(egress(&env) >= before + 900_000, "a check reading the data is charged for it");
}
