//! Acceptance tests: real `scatter` processes (coordinator, hosts, client commands) on
//! 127.0.0.1 with real SQLite files and real disks. Every process is killed on drop.

use std::time::Duration;

use crate::common;
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn sizes_round_trip_and_listing_works() {
    let env = grid(6).await;
    for (name, len) in [("empty", 0usize), ("one", 1), ("mib", 1 << 20), ("big/100mib", 100 << 20)] {
        let file = env.write_random(&name.replace('/', "_"), len, len as u64);
        env.put(&file, name);
        env.get_and_compare(name, &file);
    }
    let ls = env.ok(&["ls", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&ls).expect("ls --json is JSON");
    let names: Vec<&str> =
        v["objects"].as_array().expect("objects").iter().filter_map(|o| o["name"].as_str()).collect();
    assert_eq!(names, ["big/100mib", "empty", "mib", "one"]);
    let under: serde_json::Value = serde_json::from_str(&env.ok(&["ls", "big/", "--json"])).expect("JSON");
    assert_eq!(under["objects"].as_array().map(Vec::len), Some(1));
    // A whole name lists that file, and only it; part of a name lists nothing.
    let listed = |arg: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(&env.ok(&["ls", arg, "--json"])).expect("JSON");
        v["objects"].as_array().expect("objects").iter().filter_map(|o| o["name"].as_str().map(str::to_owned)).collect()
    };
    assert_eq!(listed("big/100mib"), ["big/100mib"]);
    assert_eq!(listed("mib"), ["mib"]);
    assert!(listed("mi").is_empty() && listed("big").len() == 1, "whole components only");

    // Names never reach the coordinator in the clear.
    let catalog = std::fs::read(env.grid.coordinator_dir().join("catalog.db")).expect("catalog");
    let wal = std::fs::read(env.grid.coordinator_dir().join("catalog.db-wal")).unwrap_or_default();
    for needle in [b"100mib".as_slice(), b"big/".as_slice()] {
        assert!(!catalog.windows(needle.len()).any(|w| w == needle), "plaintext name in catalog");
        assert!(!wal.windows(needle.len()).any(|w| w == needle), "plaintext name in catalog WAL");
    }

    let status: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--json"])).expect("JSON");
    let hosts = status["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 6);
    for h in hosts {
        assert_eq!(h["state"], "online");
        for field in ["id", "address", "zone", "capacity", "used"] {
            assert!(!h[field].is_null(), "status lacks {field}");
        }
    }

    // rm makes the object invisible and frees the hosts' space.
    let before: usize = (0..6).map(|i| shard_files(&env.grid.host_dir(i)).len()).sum();
    env.ok(&["rm", "big/100mib"]);
    env.fails(&["get", "big/100mib", "--output", env.path("gone").to_str().expect("utf-8")]);
    let mut after = before;
    for _ in 0..100 {
        after = (0..6).map(|i| shard_files(&env.grid.host_dir(i)).len()).sum();
        if after + 6 * 6 <= before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(after + 6 * 6 <= before, "shards were not deleted from hosts ({before} -> {after})");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hosts_killed_then_get_is_identical() {
    let mut env = grid(6).await;
    let file = env.write_random("data", 100 << 20, 42);
    env.put(&file, "data");
    env.grid.kill_host(1);
    env.grid.kill_host(4);
    env.get_and_compare("data", &file);
    // A third loss is beyond 4+2: the error says so, and no partial output appears.
    env.grid.kill_host(0);
    let out = env.path("three-down");
    let err = env.fails(&["get", "data", "--output", out.to_str().expect("utf-8")]);
    assert!(err.contains("needs 4 of its 6 shards"), "unexpected error: {err}");
    assert!(!out.exists());
    assert!(std::fs::read_dir(env.dir.path())
        .expect("dir")
        .flatten()
        .all(|e| !e.file_name().to_string_lossy().contains("partial")));
}

/// A data shard whose bytes went bad on its host's disk: the get reads it directly, its chunks
/// fail authentication, and the pack is rebuilt from shards read whole and hash-checked, so
/// the host finds the damage, quarantines its copy, and the reader reports it.
#[tokio::test(flavor = "multi_thread")]
async fn corrupt_shard_is_detected_and_routed_around() {
    // A scrub or an audit that found the damage first would leave the reader nothing to meet
    // (CI met one: tests side by side make each get slow).
    let env = quiet_grid(6).await;
    let file = env.write_random("data", 5 << 20, 7);
    env.put(&file, "data");
    let shards = catalog(&env).shards;
    assert_eq!(shards.len(), 6, "one 4+2 pack");
    // Data shard 1: a get reads data shards only.
    let (_, _, bad, host) = *shards.iter().find(|s| s.1 == 1).expect("data shard 1 is stored");
    let dir = host_dir(&env, host);
    let path = shard_file(&env, host, bad);
    flip_byte(&path);
    let stderr = env.get_and_compare("data", &file);
    assert!(
        stderr.contains(&format!("shard {bad} on host {host} is bad")),
        "the corrupt shard was not reported: {stderr}"
    );
    let quarantined = std::fs::read_dir(dir.join("quarantine")).expect("quarantine").count();
    assert_eq!(quarantined, 1, "the host did not quarantine its corrupt shard");
}

/// A host that lacks a shard it is asked for (its catalog is older than its disk, after a
/// recovery, say) is asked for it once per read, not once per run of the pack: a restore
/// after a recovery asked one host for one shard more than 60 times, with a warning each.
#[tokio::test(flavor = "multi_thread")]
async fn a_shard_its_host_lacks_is_asked_for_once() {
    let env = quiet_grid(6).await;
    let file = env.write_random("data", 12 << 20, 8);
    env.put(&file, "data");
    let shards = catalog(&env).shards;
    assert_eq!(shards.len(), 6, "one 4+2 pack");
    // Data shard 0: the first runs of a read (1 MiB, then 2 MiB) both need it.
    let (_, _, gone, host) = *shards.iter().find(|s| s.1 == 0).expect("data shard 0 is stored");
    let path = shard_file(&env, host, gone);
    std::fs::remove_file(&path).expect("remove the shard");
    let stderr = env.get_and_compare("data", &file);
    let refusals = stderr.matches("host refused a shard read").count();
    assert_eq!(refusals, 1, "asked the host again for a shard it lacks: {stderr}");
    // A command's warning is for a person: no time, no module path.
    let line = stderr.lines().find(|l| l.contains("host refused a shard read")).unwrap_or_default();
    assert!(line.trim_start().starts_with("WARN host refused"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn everything_survives_restarts() {
    let mut env = grid(6).await;
    let file = env.write_random("data", 3 << 20, 9);
    env.put(&file, "data");
    env.grid.stop();
    env.grid.start_coordinator().expect("coordinator restarts");
    for i in 0..6 {
        env.grid.start_host(i).expect("host restarts");
    }
    env.grid.wait_online(6, Duration::from_secs(30)).await.expect("hosts back online");
    env.get_and_compare("data", &file);
    let second = env.write_random("more", 1 << 20, 10);
    env.put(&second, "more");
    env.get_and_compare("more", &second);
}

/// A joined host started while its coordinator is down (both machines rebooted, the host's
/// first) waits for it and comes online once it is up. Before, it exited at once ("no
/// coordinator could be reached") and stayed down unless a supervisor restarted it. It is
/// started without the join token, which a joined host no longer needs (it was required at
/// every start).
#[tokio::test(flavor = "multi_thread")]
async fn a_host_started_before_its_coordinator_waits_for_it() {
    let mut env = grid(6).await;
    let file = env.write_random("data", 3 << 20, 11);
    env.put(&file, "data");
    env.grid.kill_host(0);
    env.grid.kill_coordinator();
    let dir = env.grid.host_dir(0);
    let log = env.path("early-host.log");
    /// Kills the host by its PID however the test ends.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut host = Killed(
        std::process::Command::new(EXE)
            .args(["host", "--data-dir", dir.to_str().expect("utf-8"), "--listen", "127.0.0.1:0"])
            .args(["--coordinator", env.grid.url(), "--capacity", "20GiB"])
            .args(["--zone", "zone-0", "--heartbeat", "1s"])
            .env_remove("SCATTER_JOIN_TOKEN")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("host starts"),
    );
    // It says it waits (its first try fails at once), and keeps waiting.
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("trying again in") {
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(host.0.try_wait().expect("host status").is_none(), "the host exited: {said}");
        assert!(started.elapsed() < Duration::from_secs(30), "the host does not say it waits: {said}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(host.0.try_wait().expect("host status").is_none(), "the host exited while waiting: {said}");

    // A new host joining while no coordinator answers says at once that it waits, and gives
    // up after some seconds with what to check (it said nothing for 10 s, then failed).
    let token = std::fs::read_to_string(env.grid.coordinator_dir().join("join-token")).expect("join token");
    let joiner_log = env.path("joiner.log");
    let joiner_dir = env.path("joiner");
    let mut joiner = Killed(
        std::process::Command::new(EXE)
            .args(["host", "--data-dir", joiner_dir.to_str().expect("utf-8"), "--listen", "127.0.0.1:0"])
            .args(["--coordinator", env.grid.url(), "--capacity", "1GiB"])
            .env("SCATTER_JOIN_TOKEN", token.trim())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&joiner_log).expect("log"))
            .spawn()
            .expect("host starts"),
    );
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = joiner.0.try_wait().expect("joiner status") {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(40), "the joining host never gave up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let said = std::fs::read_to_string(&joiner_log).unwrap_or_default();
    assert!(!status.success(), "a join with no coordinator succeeded: {said}");
    assert!(said.contains("trying again for"), "the joining host did not say it waits: {said}");
    assert!(said.contains("check that a coordinator runs"), "the joining host's error says what to check: {said}");

    env.grid.start_coordinator().expect("coordinator restarts");
    env.grid
        .wait_online(6, Duration::from_secs(60))
        .await
        .expect("the early host came online once its coordinator was up");
    env.get_and_compare("data", &file);
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_one_clear_sentence() {
    let mut env = grid(4).await;
    let file = env.write_random("data", 1000, 1);

    // 4+1 survives one lost shard, so at f = 1 (4 hosts) each host may hold one: five are
    // needed. The refusal says which limit bound it.
    let err = env.fails(&["put", file.to_str().expect("utf-8"), "--data", "4", "--parity", "1"]);
    assert!(
        err.contains("4 of the 5 shards") && err.contains("at most 1 in one failure domain"),
        "too few hosts: {err}"
    );

    env.ok(&["put", file.to_str().expect("utf-8"), "--data", "2", "--parity", "1"]);
    let err = env.fails(&["get", "nope", "--output", env.path("x").to_str().expect("utf-8")]);
    assert!(err.contains("no object named `nope`"), "unknown object: {err}");

    let out = env.scatter_with(&["ls"], "wrong passphrase");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("passphrase is wrong"));

    let err = env.fails(&["put", "/no/such/file"]);
    assert!(err.contains("/no/such/file"), "missing file: {err}");

    // A profile others may read (it holds the device key) is refused, then fine once closed.
    use std::os::unix::fs::PermissionsExt;
    let profile = env.grid.client_dir().join("profile.toml");
    let folder = std::fs::metadata(env.grid.client_dir()).expect("profile folder").permissions().mode() & 0o777;
    assert_eq!(folder, 0o700, "the profile's folder is its owner's alone");
    std::fs::set_permissions(&profile, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = env.fails(&["ls"]);
    assert!(err.contains("others may read it") && err.contains("chmod 600"), "open profile: {err}");
    std::fs::set_permissions(&profile, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    env.ok(&["ls"]);
    // Mistakes caught before anything is fetched or started.
    let err = env.fails(&["get", "data", "--output", env.path("").to_str().expect("utf-8")]);
    assert!(err.contains("is a folder; give --output a file's path"), "output a folder: {err}");
    let err = env.fails(&["restore", "latest", "--target", file.to_str().expect("utf-8")]);
    assert!(err.contains("is not a folder"), "target a file: {err}");
    let err =
        env.fails(&["coordinator", "recover", "--data-dir", "x", "--recovery-key", "k", "--host", "127.0.0.1:7100"]);
    assert!(err.contains("is not a URL"), "host without a scheme: {err}");

    // A host that has not joined, started without the token it needs to.
    let fresh = env.path("fresh-host");
    let out = std::process::Command::new(EXE)
        .args(["host", "--data-dir", fresh.to_str().expect("utf-8"), "--listen", "127.0.0.1:0"])
        .args(["--coordinator", env.grid.url(), "--capacity", "1GiB"])
        .env_remove("SCATTER_JOIN_TOKEN")
        .output()
        .expect("host runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("must join the grid: give --join-token"), "no token: {err}");
    let out = std::process::Command::new(EXE)
        .args(["host", "--data-dir", file.to_str().expect("utf-8"), "--listen", "127.0.0.1:0"])
        .args(["--coordinator", env.grid.url(), "--capacity", "1GiB"])
        .output()
        .expect("host runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is a file, not a folder"), "data dir a file: {err}");

    env.grid.kill_coordinator();
    let err = env.fails(&["ls"]);
    assert!(err.contains("cannot be reached"), "coordinator down: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_dying_during_put_is_replaced() {
    let mut env = grid(7).await;
    // Kill a host without the coordinator noticing yet (offline grace is 4 s): placement
    // still offers it, the upload to it fails, and the shard goes to the seventh host.
    env.grid.kill_host(3);
    let file = env.write_random("data", 2 << 20, 3);
    env.put(&file, "data");
    env.get_and_compare("data", &file);
}

/// A host dies and the coordinator will not notice for a minute: the client leaves it out
/// of its next placements once an upload to it failed, rather than meeting it again for
/// every pack (a failed upload and a warning each).
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_host_is_left_out_after_one_failed_upload() {
    let opts = scatter_cli::grid::GridOptions {
        offline_after: "60s".into(),
        passphrase: "test passphrase".into(),
        ..Default::default()
    };
    let mut env = grid_with(7, opts).await;
    env.grid.kill_host(5);
    let big = env.write_random("big", 96 << 20, 4);
    let out = env.scatter(&["put", big.to_str().expect("utf-8"), "--name", "big"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    // The packs already being placed when the first upload failed may each meet it once;
    // the user is told once.
    let failed = stderr.matches("shard upload failed").count();
    assert_eq!(failed, 1, "{failed} warnings for one dead host: {stderr}");
    env.get_and_compare("big", &big);
}

/// `scatter dev` stopped with SIGTERM (what `kill` and service managers send) stops every
/// process it started.
#[test]
fn dev_stops_its_processes_on_sigterm() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("dev");
    let mut dev = std::process::Command::new(common::EXE)
        .args(["dev", "--hosts", "2", "--data-dir", data.to_str().expect("utf-8")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn dev");
    let started = std::time::Instant::now();
    while !data.join("env").exists() {
        assert!(started.elapsed() < Duration::from_secs(60), "the dev grid did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let ours = || {
        let out = std::process::Command::new("pgrep").args(["-f", data.to_str().expect("utf-8")]).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).lines().count()).unwrap_or(0)
    };
    assert!(ours() >= 3, "coordinator and hosts run");
    let kill = std::process::Command::new("kill").args(["-TERM", &dev.id().to_string()]).status();
    assert!(kill.is_ok_and(|s| s.success()));
    let status = dev.wait().expect("dev exits");
    assert!(status.success(), "dev exited with {status}");
    let stopped = std::time::Instant::now();
    while ours() > 0 {
        assert!(stopped.elapsed() < Duration::from_secs(10), "processes outlived `scatter dev`");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A host late with its heartbeats (stopped until the coordinator calls it suspect) makes a
/// put wait for it instead of failing: the coordinator answers `hosts_late`, not
/// `too_few_hosts`, while the late host would make up the difference.
#[tokio::test(flavor = "multi_thread")]
async fn a_put_waits_for_a_late_host() {
    let opts = scatter_cli::grid::GridOptions {
        passphrase: "test passphrase".into(),
        offline_after: "10s".into(),
        ..Default::default()
    };
    let env = grid_with(6, opts).await;
    let file = env.write_random("data", 1 << 20, 4);
    let pid = env.grid.host_pid(0).expect("host 0 runs").to_string();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill").args([sig, pid.as_str()]).status().is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP");
    let mut suspect = false;
    for _ in 0..150 {
        let status: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--json"])).expect("JSON");
        if status["hosts"].as_array().is_some_and(|h| h.iter().any(|h| h["state"] == "suspect")) {
            suspect = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resume = {
        let pid = pid.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(2));
            std::process::Command::new("kill").args(["-CONT", pid.as_str()]).status()
        })
    };
    assert!(suspect, "the stopped host never became suspect");
    let out = env.scatter(&["put", file.to_str().expect("utf-8"), "--name", "data"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the put failed: {err}");
    // It says to wait, not to change the grid.
    assert!(err.contains("would make up the difference") && !err.contains("add hosts"), "{err}");
    assert!(resume.join().is_ok_and(|s| s.is_ok_and(|s| s.success())), "host 0 resumed");
    env.get_and_compare("data", &file);
}

/// Several coordinator URLs: hosts and a client (initialised through the CLI) are given a
/// URL nobody listens on before the real one; they fail over past it for everything (join,
/// certificate, heartbeats; register, put, get), and with no live URL at all the client
/// says which URLs it tried.
#[tokio::test(flavor = "multi_thread")]
async fn clients_and_hosts_fail_over_past_a_dead_coordinator() {
    let started = std::time::Instant::now();
    // A port nobody listens on: bound, then released.
    let dead_url = || {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("https://{}", listener.local_addr().expect("addr"))
    };
    let dead = dead_url();
    let opts = scatter_cli::grid::GridOptions {
        passphrase: "test passphrase".into(),
        other_coordinators: vec![dead.clone()],
        ..Default::default()
    };
    // Every host is started with `--coordinator DEAD,REAL`, tries DEAD first, and comes
    // online (join, certificate and heartbeats go to REAL).
    let env = grid_with(3, opts).await;

    let token = env.ok(&["admin", "user", "add", "bob"]).trim().to_owned();
    let bob = env.path("bob");
    let both = format!("{dead},{}", env.grid.url());
    ok(run(&bob, &["init", "--coordinator", &both, "--token", &token], &[]), "init with a dead URL first");
    let profile = std::fs::read_to_string(bob.join("profile.toml")).expect("profile");
    assert!(profile.contains(&format!("coordinator = [\"{dead}\", \"{}\"]", env.grid.url())), "{profile}");
    let file = env.write_random("data", 3 << 20, 11);
    let file_s = file.to_str().expect("utf-8");
    ok(run(&bob, &["put", file_s, "--name", "data"], &[]), "put with a dead URL first");
    let out = env.path("data.out");
    ok(run(&bob, &["get", "data", "--output", out.to_str().expect("utf-8")], &[]), "get with a dead URL first");
    assert!(std::fs::read(&out).expect("output") == std::fs::read(&file).expect("input"), "data differs");

    // Only dead URLs: one sentence naming each, and what to do.
    let other = dead_url();
    std::fs::write(bob.join("profile.toml"), profile.replace(env.grid.url(), &other)).expect("profile");
    let out = run(&bob, &["ls"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "ls with no live coordinator succeeded");
    assert!(err.contains("no coordinator can be reached") && err.contains(&dead) && err.contains(&other), "{err}");
    assert!(err.contains("URLs in your profile"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(120), "took {:?}", started.elapsed());
}

/// A host machine that lost its data directory joins again as a new host at the same
/// address; the operator is told which old host that was and how to let repair start now.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_that_lost_its_data_directory_is_told_to_disable_its_old_self() {
    let mut env = grid(6).await;
    let file = env.write_random("data", 1 << 20, 44);
    env.put(&file, "data");
    let (old, _) = host(&env, 2);
    env.grid.kill_host(2);
    std::fs::remove_dir_all(env.grid.host_dir(2)).expect("wipe the host's data directory");
    env.grid.start_host(2).expect("the host starts again");
    let log_path = env.grid.coordinator_dir().join("../host-2.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("joined the grid") || std::time::Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(log.contains("was registered at this address before"), "{log}");
    assert!(log.contains(&format!("scatter admin host disable {old}")), "{log}");
    let events = env.ok(&["admin", "events"]);
    assert!(events.contains(&format!("admin host disable {old}")), "{events}");
    env.get_and_compare("data", &file);
}

/// The only coordinator restarts (an upgrade, a crash) while a backup runs: the backup waits
/// for it and finishes, and what it stored comes back.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_waits_for_its_coordinator_to_restart() {
    let mut env = grid(6).await;
    let src = env.path("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    for i in 0..3 {
        let f = env.write_random(&format!("f{i}"), 8 << 20, 50 + i);
        std::fs::rename(&f, src.join(format!("f{i}"))).expect("move into the tree");
    }
    let (dir, pass, tree) = (env.grid.client_dir(), env.grid.passphrase().to_owned(), src.clone());
    let backup = std::thread::spawn(move || {
        let tree = tree.to_str().expect("utf-8").to_owned();
        run_with(&dir, &pass, &["backup", &tree, "--limit-upload", "8MiB"], &[])
    });
    // Killed once the backup has opened its session (not after a fixed time: on a loaded
    // machine the client may still be unlocking its key file, and a coordinator down before
    // a command starts is an error at once, not a wait).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let sessions = |env: &Env| -> i64 {
        env.catalog_db().query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0)).unwrap_or(0)
    };
    while sessions(&env) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.grid.kill_coordinator();
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.grid.start_coordinator().expect("the coordinator starts again");
    let out = backup.join().expect("the backup thread");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "the backup failed across the restart: {stderr}");
    assert!(stderr.contains("trying again"), "the coordinator was down during the backup: {stderr}");
    let target = env.path("restored");
    env.ok(&["restore", "latest", "--target", target.to_str().expect("utf-8")]);
    for i in 0..3 {
        let name = format!("f{i}");
        let restored =
            std::fs::read(target.join(src.strip_prefix("/").expect("absolute")).join(&name)).expect("restored file");
        assert!(restored == std::fs::read(src.join(&name)).expect("source"), "{name} differs");
    }
}
