//! Durability acceptance tests: the coordinator repairs by itself, with real processes.

use std::time::{Duration, Instant};

use crate::common;
use common::*;

/// The grid's health report; exit 3 (packs lost) is a report too.
fn health(env: &Env) -> serde_json::Value {
    let out = env.scatter(&["admin", "health", "--json"]);
    let lost = out.status.code() == Some(3);
    let h: serde_json::Value = serde_json::from_slice(&out.stdout).expect("health is JSON");
    assert!(lost || out.status.success(), "admin health failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(lost, h["packs_lost"].as_u64() > Some(0), "exit {:?} for {h}", out.status.code());
    h
}

/// The host holding the most shard files, and those files.
fn busiest(env: &Env) -> (usize, Vec<std::path::PathBuf>) {
    (0..env.grid.host_count())
        .map(|i| (i, shard_files(&env.grid.host_dir(i))))
        .max_by_key(|(_, f)| f.len())
        .expect("hosts")
}

/// Waits until every pack has all k+m shards healthy; returns the time it took.
async fn wait_full(env: &Env, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let h = health(env);
        if h["packs_full"] == h["packs_total"] && h["packs_total"].as_u64() > Some(0) {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "not back at full redundancy after {limit:?}: {h}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_hosts_are_repaired_so_further_losses_are_survived() {
    let mut env = grid(8).await;
    let file = env.write_random("data", 48 << 20, 9);
    env.put(&file, "data");
    let h = health(&env);
    assert_eq!(h["packs_full"], h["packs_total"], "{h}");

    // Hosts by the shards they hold, most first: a host that was late with its heartbeats
    // when the file was put (a loaded machine) may hold none, and its loss would prove nothing.
    let mut by_load: Vec<usize> = (0..env.grid.host_count()).collect();
    by_load.sort_by_key(|i| std::cmp::Reverse(shard_files(&env.grid.host_dir(*i)).len()));
    let (first, second) = ([by_load[0], by_load[1]], [by_load[2], by_load[3]]);

    // Two hosts die: packs lose up to two shards each and are rebuilt on the others.
    let first_ids = first.map(|i| host(&env, i).0);
    for i in first {
        env.grid.kill_host(i);
    }
    let killed = Instant::now();
    loop {
        let hosts: serde_json::Value =
            serde_json::from_str(&env.ok(&["admin", "host", "ls", "--json"])).expect("host ls is JSON");
        let state = |id: scatter_core::HostId| {
            hosts.as_array().and_then(|a| a.iter().find(|h| h["id"] == id.0)).map(|h| h["state"].clone())
        };
        if first_ids.iter().all(|id| state(*id) == Some("offline".into())) {
            break;
        }
        assert!(killed.elapsed() < Duration::from_secs(30), "the coordinator never noticed the dead hosts: {hosts}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let took = wait_full(&env, Duration::from_secs(90)).await;
    println!("full redundancy again {took:?} after two hosts were killed");
    let h = health(&env);
    assert!(h["shards_repaired"].as_u64() > Some(0), "{h}");
    let ca = env.grid.profile().fingerprint().expect("profile");
    let scrape = |peer, url: String| async move {
        let http = scatter_net::http_client(ca, peer).build().expect("client");
        http.get(url).send().await.expect("metrics").text().await.expect("text")
    };
    let metrics = scrape(scatter_net::Peer::Coordinator, format!("{}/metrics", env.grid.url())).await;
    assert!(metrics.contains("scatter_packs{health=\"full\"}"), "{metrics}");
    assert!(metrics.contains("scatter_repaired_shards_total"), "{metrics}");
    // At least the two killed hosts are offline (on a busy machine a live host may be late too).
    let offline = metrics
        .lines()
        .find_map(|l| l.strip_prefix("scatter_hosts{state=\"offline\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(offline >= Some(2), "{metrics}");
    // Per host too, so an alert can name the host; and the build.
    for id in first_ids {
        let up = metrics.lines().find(|l| l.starts_with(&format!("scatter_host_up{{host=\"{id}\",zone=\"")));
        assert!(up.is_some_and(|l| l.ends_with(",state=\"offline\"} 0")), "{id}: {metrics}");
    }
    assert!(metrics.contains("scatter_host_used_bytes{host=\"h1\"}"), "{metrics}");
    assert!(
        metrics.contains(&format!("scatter_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))),
        "{metrics}"
    );
    assert!(metrics.contains("scatter_http_request_duration_seconds_count{route=\"/v1/packs/commit\"}"), "{metrics}");
    let host_url = std::fs::read_to_string(env.grid.host_dir(second[0]).join("url")).expect("host url");
    let host_metrics = scrape(scatter_net::Peer::Host, format!("{}/metrics", host_url.trim())).await;
    assert!(host_metrics.contains("scatter_host_shards "), "{host_metrics}");
    assert!(host_metrics.contains("route=\"PUT /shards/{id}\""), "{host_metrics}");

    // Two more die: without repair some packs would be down to 2 shards; now all have 4.
    for i in second {
        env.grid.kill_host(i);
    }
    env.get_and_compare("data", &file);

    // A killed host that comes back has its now-surplus copies deleted, once a catalog
    // backup records the moves: that backup may wait its turn (backups asked for by changes
    // come ten at once, then one every 30 s) and fail once on the two hosts killed moments
    // ago (they count as online for a few seconds), to be tried again 20 s later. Alone this
    // takes about 10 s. Only copies the catalog does not place there are surplus: once the
    // two hosts just killed count as offline, repair rebuilds their shards, and the host that
    // came back is one of the few with room (20 s after its return the catalog placed 8
    // shards there). The test waited for it to hold none, which under a full run's load, when
    // repair came before the deletion, never happened: it failed after 150 s, then 300 s.
    env.grid.start_host(first[0]).expect("restart the first host killed");
    let surplus = |env: &Env| {
        let placed: std::collections::HashSet<String> =
            catalog(env).shards.into_iter().filter(|s| s.3 == first_ids[0]).map(|s| s.2.to_string()).collect();
        shard_files(&env.grid.host_dir(first[0]))
            .into_iter()
            .filter(|f| !f.file_name().and_then(|n| n.to_str()).is_some_and(|n| placed.contains(n)))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while surplus(&env) > 0 {
        if Instant::now() > deadline {
            panic!("surplus shards stayed on the returning host\n{}", surplus_diagnosis(&env, first_ids[0]));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What keeps copies on `host`: the catalog's orphans and deletions queued for it, what the
/// newest catalog backup covers, and the coordinator's log about backups and deletions.
fn surplus_diagnosis(env: &Env, host: scatter_core::HostId) -> String {
    let db = env.catalog_db();
    let rows = |sql: &str| -> String {
        let mut stmt = db.prepare(sql).expect("sql");
        let n = stmt.column_count();
        let rows: Vec<String> = stmt
            .query_map([host.0 as i64], |r| {
                let cell = |i| match r.get_ref(i) {
                    Ok(rusqlite::types::ValueRef::Integer(v)) => v.to_string(),
                    Ok(rusqlite::types::ValueRef::Text(t)) => String::from_utf8_lossy(t).into_owned(),
                    Ok(rusqlite::types::ValueRef::Blob(b)) => hex::encode(&b[..b.len().min(6)]),
                    _ => "null".into(),
                };
                Ok((0..n).map(cell).collect::<Vec<_>>().join(" "))
            })
            .map(|it| it.filter_map(Result::ok).collect())
            .unwrap_or_default();
        rows.join("\n")
    };
    let orphans = rows("SELECT * FROM orphans WHERE host = ?1 LIMIT 20");
    let meta = rows("SELECT key, value FROM meta WHERE key LIKE 'catalog_backup%' AND ?1 IS NOT NULL");
    let log = std::fs::read_to_string(env.grid.coordinator_dir().with_file_name("coordinator.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().filter(|l| !l.contains("DEBUG")).collect();
    let tail = lines[lines.len().saturating_sub(60)..].join("\n");
    format!(
        "orphans on h{}:\n{orphans}\nbackup meta:\n{meta}\nhealth:\n{}\ncoordinator log:\n{tail}",
        host.0,
        env.ok(&["admin", "health"])
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drained_host_can_be_removed_without_loss() {
    let mut env = grid(8).await;
    let file = env.write_random("data", 32 << 20, 11);
    env.put(&file, "data");
    let hosts = |env: &Env| -> serde_json::Value {
        serde_json::from_str(&env.ok(&["admin", "host", "ls", "--json"])).expect("host ls is JSON")
    };
    // Drain the host holding the most shards.
    let list = hosts(&env);
    let (victim, held) = list
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| h["shards"].as_u64().expect("shards"))
        .enumerate()
        .max_by_key(|(_, n)| *n)
        .expect("hosts");
    assert!(held > 0, "no host holds a shard to drain");
    let out = env.ok(&["admin", "host", "drain", &format!("h{}", victim + 1)]);
    assert!(out.contains("draining"), "{out}");
    let started = Instant::now();
    loop {
        let h = hosts(&env);
        if h[victim]["state"] == "retired" {
            assert_eq!(h[victim]["shards"], 0, "{h}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "the host was not drained in time: {h}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    wait_full(&env, Duration::from_secs(30)).await;
    // Draining it again would have put it back to draining.
    let err = env.fails(&["admin", "host", "drain", &format!("h{}", victim + 1)]);
    assert!(err.contains("is retired already"), "{err}");
    // Remove the retired host and lose two more: every pack still has k shards.
    env.grid.kill_host(victim);
    for other in (0..8).filter(|i| *i != victim).take(2) {
        env.grid.kill_host(other);
    }
    env.get_and_compare("data", &file);
    let err = env.fails(&["admin", "host", "drain", "h99"]);
    assert!(err.contains("no host h99"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_reconcile_lost_and_unknown_shards() {
    let env = grid(7).await;
    let file = env.write_random("data", 24 << 20, 12);
    env.put(&file, "data");
    // A host's disk loses shards behind its back, and holds one the catalog never heard of.
    let victim = busiest(&env).1;
    assert!(!victim.is_empty());
    for f in &victim {
        std::fs::remove_file(f).expect("remove shard");
    }
    let stray_dir = env.grid.host_dir(3).join("shards").join("ab");
    std::fs::create_dir_all(&stray_dir).expect("mkdir");
    let stray = stray_dir.join(format!("ab{}", "0".repeat(62)));
    std::fs::write(&stray, b"left by a crashed put").expect("stray");
    let old = filetime::FileTime::from_unix_time(1_700_000_000, 0);
    filetime::set_file_mtime(&stray, old).expect("age it");

    // The lost shards are noticed through the inventory and rebuilt; the stray one goes.
    let started = Instant::now();
    loop {
        let h = health(&env);
        if h["shards_repaired"].as_u64() >= Some(victim.len() as u64)
            && h["packs_full"] == h["packs_total"]
            && !stray.exists()
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "not reconciled: {h}, stray exists: {}", stray.exists());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    env.get_and_compare("data", &file);
}

/// A shard lost on a grid with no failure domain to spare (6 hosts, a 4+2 pack, one shard
/// each) goes back to the host that lost it, which is up and the only one the rule allows.
/// Before, the hosts of the shards being repaired were all left out, so the pack stayed
/// degraded for good ("0 of the 1 shards could be placed") until a seventh host joined.
#[tokio::test(flavor = "multi_thread")]
async fn a_shard_lost_where_no_other_domain_may_take_it_is_rebuilt_on_its_host() {
    let env = grid(6).await;
    let file = env.write_random("data", 3 << 20, 21);
    env.put(&file, "data");
    let lost = shard_files(&env.grid.host_dir(0));
    assert_eq!(lost.len(), 1, "one pack puts one shard on each host");
    std::fs::remove_file(&lost[0]).expect("remove shard");
    let started = Instant::now();
    loop {
        let h = health(&env);
        if h["shards_repaired"].as_u64() >= Some(1) && h["packs_full"] == h["packs_total"] {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "the lost shard was not rebuilt: {h}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(lost[0].exists(), "rebuilt where it was lost, the only host the rule allows");
    env.get_and_compare("data", &file);
}

#[tokio::test(flavor = "multi_thread")]
async fn audits_catch_a_host_whose_data_is_not_what_it_claims() {
    let env = grid(7).await;
    // Three packs of six shards over seven hosts: the busiest holds three or more, as many
    // failed audits as disqualify a host.
    let file = env.write_random("data", 48 << 20, 13);
    env.put(&file, "data");
    // Host h3 keeps its file names but the bytes are garbage of the same size.
    let (liar_index, liar) = busiest(&env);
    assert!(liar.len() >= 3, "{liar:?}");
    for f in &liar {
        let len = std::fs::metadata(f).expect("meta").len() as usize;
        std::fs::write(f, vec![0x5a; len]).expect("overwrite");
    }
    let started = Instant::now();
    loop {
        let hosts: serde_json::Value =
            serde_json::from_str(&env.ok(&["admin", "host", "ls", "--json"])).expect("host ls is JSON");
        let h = health(&env);
        let failed = hosts[liar_index]["audits_failed"].as_u64().unwrap_or(0);
        let passed_elsewhere = hosts.as_array().expect("hosts").iter().any(|x| x["audits_passed"].as_u64() > Some(0));
        if failed > 0 && passed_elsewhere && h["packs_full"] == h["packs_total"] {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "the bad host was not caught: {hosts} {h}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    env.get_and_compare("data", &file);
    // Disqualified once it has failed enough audits, and said so in the audit trail.
    let started = Instant::now();
    loop {
        let hosts: serde_json::Value =
            serde_json::from_str(&env.ok(&["admin", "host", "ls", "--json"])).expect("host ls is JSON");
        if hosts[liar_index]["state"] == "disqualified" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "the bad host was not disqualified: {hosts}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let events = env.ok(&["admin", "events"]);
    assert!(events.contains("host.state") && events.contains("disqualified after failed audits"), "{events}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_that_shrinks_has_its_surplus_moved_off() {
    let mut env = grid(7).await;
    let file = env.write_random("data", 32 << 20, 14);
    env.put(&file, "data");
    let used = |env: &Env| -> Vec<u64> {
        let hosts: serde_json::Value =
            serde_json::from_str(&env.ok(&["admin", "host", "ls", "--json"])).expect("host ls is JSON");
        hosts.as_array().expect("hosts").iter().map(|h| h["used"].as_u64().expect("used")).collect()
    };
    // The fullest host shrinks to 2 MiB.
    let before = used(&env);
    let (victim, held) = before.iter().copied().enumerate().max_by_key(|(_, u)| *u).expect("hosts");
    assert!(held > 4 << 20, "no host holds enough to shrink: {before:?}");
    env.grid.restart_host_with_capacity(victim, "2MiB").expect("restart smaller");
    let started = Instant::now();
    while used(&env)[victim] > 2 << 20 {
        assert!(started.elapsed() < Duration::from_secs(90), "the surplus stayed on the host");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    wait_full(&env, Duration::from_secs(60)).await;
    env.get_and_compare("data", &file);
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_go_on_with_a_host_down_and_full_redundancy_returns_with_it() {
    // Six hosts ask for 4+2 at f = 2: one shard per host. One is down when the backup runs.
    let mut env = grid(6).await;
    env.grid.kill_host(5);
    let src = env.path("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    for i in 0..4u64 {
        std::fs::rename(env.write_random("tmp", 3 << 20, 40 + i), src.join(format!("f{i}"))).expect("mv");
    }
    let out = env.scatter(&["backup", src.to_str().expect("utf-8"), "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a backup with one of six hosts down failed: {stderr}");
    assert!(stderr.contains("too few hosts are up for the grid's full redundancy"), "the user is told: {stderr}");
    let id = serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")["snapshot_id"]
        .as_str()
        .expect("id")
        .to_owned();

    // The host returns: packs are re-spread to one shard per host again.
    env.grid.start_host(5).expect("restart");
    let started = Instant::now();
    loop {
        let status: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--json"])).expect("status");
        let grid = &status["grid"];
        let h = health(&env);
        if grid["tolerate"] == 2
            && grid["crowded_packs"] == 0
            && grid["lowest_tolerance"] == 2
            && h["packs_full"] == h["packs_total"]
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(180), "not re-spread: {grid} {h}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Any two hosts may go now.
    env.grid.kill_host(0);
    env.grid.kill_host(3);
    let target = env.path("restored");
    env.ok(&["restore", &id, "--target", target.to_str().expect("utf-8")]);
    let restored = target.join(src.strip_prefix("/").expect("absolute"));
    for i in 0..4 {
        let name = format!("f{i}");
        assert!(std::fs::read(src.join(&name)).expect("src") == std::fs::read(restored.join(&name)).expect("restored"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_health_says_why_repair_waits() {
    // Three hosts, 4+2 with two shards each: two hosts gone leave two shards of four needed.
    let mut env = grid(3).await;
    let file = env.write_random("data", 2 << 20, 21);
    env.put(&file, "data");
    env.grid.kill_host(1);
    env.grid.kill_host(2);
    // The two hosts' last heartbeats differ by up to one interval: while one counts as gone
    // and the other not yet, the pack reads as 4 of 6 and the reason is rightly "no room".
    let started = Instant::now();
    let waiting = loop {
        let h = health(&env);
        let waits =
            |w: &serde_json::Value| w["reason"].as_str().is_some_and(|r| r.contains("waiting for hosts to come back"));
        if let Some(w) = h["repair_waiting"].as_array().filter(|w| w.iter().any(waits)) {
            break w.iter().filter(|w| waits(w)).cloned().collect::<Vec<_>>();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no reason given: {h}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(waiting[0]["packs"].as_u64() >= Some(1), "{waiting:?}");
    // Two of four shards needed: the pack is lost while they are away, and the exit code
    // tells a monitoring script so.
    let out = env.scatter(&["admin", "health"]);
    let (text, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{text}{err}");
    assert!(text.contains("repair waits for") && text.contains("waiting for hosts to come back"), "{text}");
    assert!(err.contains("cannot be read or rebuilt now") && err.contains("admin host ls"), "{err}");
    // Back: nothing waits any more.
    env.grid.start_host(1).expect("restart");
    env.grid.start_host(2).expect("restart");
    wait_full(&env, Duration::from_secs(60)).await;
    let started = Instant::now();
    while health(&env)["repair_waiting"].as_array().is_some_and(|w| !w.is_empty()) {
        assert!(started.elapsed() < Duration::from_secs(30), "the reasons stay after repair");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Sends `signal` (`-STOP`, `-CONT`) to host `i`.
fn signal_host(env: &Env, i: usize, signal: &str) {
    let pid = env.grid.host_pid(i).expect("running host").to_string();
    assert!(std::process::Command::new("kill").args([signal, &pid]).status().expect("kill").success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_coordinator_back_after_the_offline_grace_does_not_take_its_hosts_for_lost() {
    // A coordinator down for longer than the offline grace (an upgrade, a reboot) finds every
    // host's last heartbeat too old. Until a host's next heartbeat reaches it, it cannot tell
    // it from a dead one; taking it for dead would start repairs (and placements around it)
    // for a grid that lost nothing. Eight hosts: a repair would have somewhere to go.
    let opts = scatter_cli::grid::GridOptions { offline_after: "10s".into(), ..Default::default() };
    let mut env = grid_with(8, opts).await;
    let file = env.write_random("data", 8 << 20, 31);
    env.put(&file, "data");
    let before = catalog(&env).shards;
    // The two hosts holding the most shards are slow to be heard from after the restart.
    let mut by_load: Vec<usize> = (0..env.grid.host_count()).collect();
    by_load.sort_by_key(|i| std::cmp::Reverse(shard_files(&env.grid.host_dir(*i)).len()));
    let late = [by_load[0], by_load[1]];
    let late_ids = late.map(|i| host(&env, i).0);

    env.grid.kill_coordinator();
    tokio::time::sleep(Duration::from_secs(12)).await;
    for i in late {
        signal_host(&env, i, "-STOP");
    }
    env.grid.start_coordinator().expect("the coordinator restarts");
    // The repairer's first pass runs within a couple of seconds of the start.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let hosts: serde_json::Value = serde_json::from_str(&env.ok(&["admin", "host", "ls", "--json"])).expect("json");
    for i in late {
        signal_host(&env, i, "-CONT");
    }
    for h in hosts.as_array().expect("hosts") {
        if late_ids.iter().any(|id| h["id"] == id.0) {
            assert_ne!(h["state"], "offline", "a host not heard from yet since the restart counts as offline: {h}");
        }
    }
    env.grid.wait_online(8, Duration::from_secs(30)).await.expect("the hosts are heard from");
    // Two more repair passes with every host heard from: nothing was moved.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(catalog(&env).shards, before, "shards were repaired or moved after a restart that lost nothing");
    env.get_and_compare("data", &file);
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_health_warns_while_catalog_backups_fail() {
    // A new user's full grid failed every catalog backup for minutes, and `admin health` said
    // only when the last one was taken: released data waits for a backup to be deleted.
    let mut env = grid(3).await;
    for i in 0..3 {
        env.grid.kill_host(i);
    }
    // A change asks for a backup, which no host takes.
    env.ok(&["admin", "user", "add", "someone"]);
    let started = Instant::now();
    loop {
        let text = env.ok(&["admin", "health"]);
        if text.contains("warning: catalog backups have failed for") {
            let h = health(&env);
            assert!(h["catalog_backup"]["failing"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{h}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no word of the failing backups: {text}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Back, the next backup succeeds and the warning goes.
    for i in 0..3 {
        env.grid.start_host(i).expect("restart");
    }
    env.ok(&["admin", "user", "add", "someone-else"]);
    let started = Instant::now();
    while env.ok(&["admin", "health"]).contains("catalog backups have failed") {
        assert!(started.elapsed() < Duration::from_secs(90), "the warning stayed once backups succeed");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
