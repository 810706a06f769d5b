//! Writes that fail leave nothing on hosts for long, and a drain that cannot finish is
//! refused with the figures, with real processes.

use crate::common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{grid_with, wait_clean_on, wait_for_upload, Env, EXE, THEIR_PASSPHRASE};
use scatter_cli::grid::GridOptions;

/// Every host of the grid, by index.
fn all(env: &Env) -> Vec<usize> {
    (0..env.grid.host_count()).collect()
}

/// Starts `scatter put FILE` as the account whose profile is `profile`, stops it with
/// `signal` once some of its shards are on hosts and not yet committed, and waits for it.
/// Its stderr goes to `put{signal}.log` in the test's folder ([`wait_clean`] shows it).
fn put_interrupted(env: &Env, profile: &std::path::Path, file: &std::path::Path, signal: &str) {
    let log = std::fs::File::create(env.path(&format!("put{signal}.log"))).expect("put log");
    let mut child = Command::new(EXE)
        .args(["put", file.to_str().expect("utf-8"), "--name", "cut"])
        .env("SCATTER_LOG", "debug")
        .env("SCATTER_CONFIG", profile)
        .env("SCATTER_PASSPHRASE", THEIR_PASSPHRASE)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn put");
    wait_for_upload(env, &all(env), &mut child);
    let sent = Command::new("kill").args([signal, &child.id().to_string()]).status().expect("kill");
    assert!(sent.success());
    let status = child.wait().expect("wait");
    assert!(!status.success(), "the put was cut short, yet succeeded");
}

/// Prints the interrupted puts' logs and the grid's, for a failure to be read from CI.
fn show_logs(env: &Env) {
    let grid = env.grid.coordinator_dir().with_file_name("");
    let mut logs: Vec<PathBuf> =
        ["put-INT.log", "put-KILL.log", "put-doomed.log"].iter().map(|l| env.path(l)).collect();
    logs.extend((0..env.grid.host_count()).map(|i| grid.join(format!("host-{i}.log"))));
    logs.push(grid.join("coordinator.log"));
    for log in logs {
        if let Ok(text) = std::fs::read_to_string(&log) {
            eprintln!("--- {} ---\n{text}", log.display());
        }
    }
}

/// Waits until hosts `which` hold no upload the catalog does not record, showing the logs
/// if they still do after `limit`.
fn wait_clean(env: &Env, which: &[usize], limit: Duration, what: &str) -> Duration {
    wait_clean_on(env, which, limit).unwrap_or_else(|left| {
        show_logs(env);
        panic!("{what}: {} uncommitted shard file(s) still on hosts after {limit:?}: {left:?}", left.len())
    })
}

/// A put cut short leaves no uncommitted shard on any host for long, while another user's
/// object is intact: interrupted (Ctrl-C), the client gives its placements back and the
/// coordinator deletes their uploads at once; killed outright, its placements lapse and
/// their uploads are deleted just after. The orphan sweep (an hour here) plays no part.
#[tokio::test(flavor = "multi_thread")]
async fn a_put_cut_short_leaves_no_shards_behind() {
    let opts = GridOptions { orphan_grace: "1h".into(), passphrase: "test passphrase".into(), ..Default::default() };
    let mut env = grid_with(6, opts).await;
    let kept = env.write_random("kept", 3 << 20, 1);
    env.put(&kept, "kept");
    let token = env.ok(&["admin", "user", "add", "bob"]).trim().to_owned();
    let bob = env.path("bob");
    let url = env.grid.url().to_owned();
    common::ok(common::run(&bob, &["init", "--coordinator", &url, "--token", &token], &[]), "bob init");
    let big = env.write_random("big", 96 << 20, 2);

    // Ctrl-C: placements given back, uploads gone within seconds (placements last 10 minutes).
    put_interrupted(&env, &bob, &big, "-INT");
    let took = wait_clean(&env, &all(&env), Duration::from_secs(10), "after Ctrl-C");
    eprintln!("after Ctrl-C, hosts were clean in {took:?}");

    // Killed: nothing is said; placements lapse (8 s here) and their uploads go just after.
    env.grid.kill_coordinator();
    env.grid.set_coordinator_args(&["--reservation-ttl", "8s"]);
    env.grid.start_coordinator().expect("coordinator restarts");
    env.grid.wait_online(6, Duration::from_secs(30)).await.expect("hosts back");
    put_interrupted(&env, &bob, &big, "-KILL");
    let took = wait_clean(&env, &all(&env), Duration::from_secs(30), "after kill -9");
    eprintln!("after kill -9, hosts were clean in {took:?}");
    env.get_and_compare("kept", &kept);
}

/// A put that fails because hosts die under it (four of six, so no pack can survive a host
/// loss) gives its placements back: the hosts still up hold none of its uploads seconds
/// later. (The dead hosts' copies wait for them, and after a restart for the orphan sweep:
/// a restarted host cannot vouch for who wrote a file.)
#[tokio::test(flavor = "multi_thread")]
async fn a_put_failing_on_dead_hosts_leaves_nothing_on_the_others() {
    let opts = GridOptions { orphan_grace: "1h".into(), passphrase: "test passphrase".into(), ..Default::default() };
    let mut env = grid_with(6, opts).await;
    let kept = env.write_random("kept", 3 << 20, 1);
    env.put(&kept, "kept");
    let big = env.write_random("big", 96 << 20, 2);
    let mut child = Command::new(EXE)
        .args(["put", big.to_str().expect("utf-8"), "--name", "doomed"])
        .env("SCATTER_CONFIG", env.grid.client_dir())
        .env("SCATTER_PASSPHRASE", env.grid.passphrase())
        .env("SCATTER_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(env.path("put-doomed.log")).expect("put log"))
        .spawn()
        .expect("spawn put");
    // Some of its uploads are on the hosts that stay up, not yet committed.
    wait_for_upload(&env, &[0, 1], &mut child);
    for i in 2..6 {
        env.grid.kill_host(i);
    }
    let status = child.wait().expect("put ends");
    assert!(!status.success(), "the put succeeded on two hosts");
    let log = std::fs::read_to_string(env.path("put-doomed.log")).unwrap_or_default();
    eprintln!("the put failed: {}", log.lines().last().unwrap_or_default());
    let took = wait_clean(&env, &[0, 1], Duration::from_secs(30), "the failed put's uploads on the hosts up");
    eprintln!("hosts up were clean {took:?} after the put failed");
    for i in 2..6 {
        env.grid.start_host(i).expect("host restarts");
    }
    env.grid.wait_online(6, Duration::from_secs(30)).await.expect("hosts back");
    env.get_and_compare("kept", &kept);
}

fn hosts(env: &Env) -> serde_json::Value {
    serde_json::from_str(&env.ok(&["admin", "host", "ls", "--json"])).expect("host ls is JSON")
}

/// On six hosts, 4+2 packs need all six failure domains (f = 2): draining one is refused
/// with the figures. With a seventh host the drain is accepted and finishes; forced, a drain
/// that cannot keep the rule goes ahead and says what it costs.
#[tokio::test(flavor = "multi_thread")]
async fn a_drain_that_cannot_finish_is_refused_with_the_figures() {
    let mut env = grid_with(6, GridOptions { passphrase: "test passphrase".into(), ..Default::default() }).await;
    let file = env.write_random("data", 8 << 20, 3);
    env.ok(&["put", file.to_str().expect("utf-8"), "--name", "data", "--data", "4", "--parity", "2"]);
    let err = env.fails(&["admin", "host", "drain", "h1"]);
    eprintln!("refused: {err}");
    for part in ["host h1 holds", "5 host(s)", "free", "packs of 4+2 need 6 failure domains", "--force"] {
        assert!(err.contains(part), "`{part}` missing from: {err}");
    }
    assert_eq!(hosts(&env)[0]["state"], "online", "a refused drain changed the host");

    let token = std::fs::read_to_string(env.grid.coordinator_dir().join("join-token")).expect("join token");
    env.grid.add_host(token.trim(), &[]).await.expect("a seventh host joins");
    env.grid.wait_online(7, Duration::from_secs(30)).await.expect("seven hosts");
    let out = env.ok(&["admin", "host", "drain", "h1"]);
    assert!(out.contains("draining"), "{out}");
    let started = Instant::now();
    loop {
        let h = hosts(&env);
        if h[0]["state"] == "retired" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "the drain did not finish: {h}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    env.get_and_compare("data", &file);

    // Six hosts left again: refused, then forced, which says what it costs.
    env.fails(&["admin", "host", "drain", "h2"]);
    let out = env.scatter(&["admin", "host", "drain", "h2", "--force"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("draining anyway") && err.contains("instead of 2"), "{err}");
    eprintln!("forced: {err}");
}

/// Three of a 4+2 pack's six hosts drained at once leave it three shards that count, fewer
/// than the four a rebuild needs; the drained hosts still serve theirs, so the rebuild reads
/// from them and every drain finishes. Before, repair waited "for hosts to come back" that
/// had never left, and a drain forced by a period's end would have lost the pack.
#[tokio::test(flavor = "multi_thread")]
async fn draining_more_hosts_than_a_pack_can_lose_at_once_still_finishes() {
    let mut env = grid_with(6, GridOptions { passphrase: "test passphrase".into(), ..Default::default() }).await;
    let file = env.write_random("data", 8 << 20, 4);
    env.ok(&["put", file.to_str().expect("utf-8"), "--name", "data", "--data", "4", "--parity", "2"]);
    let token = std::fs::read_to_string(env.grid.coordinator_dir().join("join-token")).expect("join token");
    for _ in 0..3 {
        env.grid.add_host(token.trim(), &[]).await.expect("a host joins");
    }
    env.grid.wait_online(9, Duration::from_secs(30)).await.expect("nine hosts");
    for h in ["h1", "h2", "h3"] {
        env.ok(&["admin", "host", "drain", h]);
    }
    let started = Instant::now();
    loop {
        let h = hosts(&env);
        if (0..3).all(|i| h[i]["state"] == "retired") {
            break;
        }
        let health = env.ok(&["admin", "health"]);
        assert!(started.elapsed() < Duration::from_secs(90), "the drains did not finish: {h}\n{health}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for i in 0..3 {
        env.grid.kill_host(i);
    }
    env.get_and_compare("data", &file);
}
