//! Hosts' terms with real processes: a host whose offered period ends is drained in time and
//! retired with no loss; terms, reputation and the measured record are shown; an operator's
//! hosts count as one failure domain until the admin says otherwise.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common;
use common::*;
use scatter_cli::grid::GridOptions;
use scatter_core::ShardId;
use scatter_proto::api::GRANT_HEADER;
use scatter_proto::{Grant, Op};

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

fn hosts(env: &Env) -> serde_json::Value {
    serde_json::from_str(&env.ok(&["admin", "host", "ls", "--json"])).expect("host ls is JSON")
}

/// The actions of the audit trail, with their details.
fn events(env: &Env) -> Vec<(String, String)> {
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["admin", "events", "--json", "--limit", "1000"])).expect("events are JSON");
    v.as_array()
        .expect("a list")
        .iter()
        .map(|e| (e["action"].as_str().unwrap_or("").to_owned(), e["detail"].as_str().unwrap_or("").to_owned()))
        .collect()
}

/// Waits (up to `limit`) until `done` holds of the host list; returns that list.
async fn wait_hosts(
    env: &Env,
    limit: Duration,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let h = hosts(env);
        if done(&h) {
            return h;
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}: {h:#}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn flags(f: &[&str]) -> Vec<String> {
    f.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_whose_period_ends_is_drained_in_time_and_retired_without_loss() {
    // Six hosts ask a little; the seventh asks nothing for 40 s, so it is the cheapest and
    // every pack puts a shard on it while its period lasts. It declares 256 KiB/s, so the
    // coordinator starts its drain well before the end (twice the time its bytes take).
    let mut host_args = vec![flags(&["--price", "0.01"]); 6];
    host_args.push(flags(&["--until", "+40s", "--bandwidth", "256KiB"]));
    let opts = GridOptions {
        passphrase: "test passphrase".into(),
        coordinator_args: flags(&["--period-margin", "5s"]),
        host_args,
        ..Default::default()
    };
    let mut env = grid_with(7, opts).await;
    let until = hosts(&env)[6]["terms"]["until"].as_u64().expect("the period's end is recorded");
    assert!((now() + 20..=now() + 41).contains(&until), "until {until}, now {}", now());

    let files = [("big", env.write_random("big", 6 << 20, 1)), ("small", env.write_random("small", 1 << 20, 2))];
    std::fs::write(env.path("note"), "a note that outlives the host it was first stored on\n").expect("write");
    for (name, path) in &files {
        env.put(path, name);
    }
    env.put(&env.path("note"), "note");
    let h = hosts(&env);
    assert!(now() + 5 <= until, "the puts took too long to test anything: {h:#}");
    let held = h[6]["shards"].as_u64().expect("shards");
    assert!(held >= 3, "the host with a period was not a target while its period lasted: {h:#}");

    // Drained (its shards rebuilt elsewhere while it serves them) and retired before its end.
    let h = wait_hosts(&env, Duration::from_secs(60), "the host retired", |h| {
        assert!(now() < until, "the period ended before the host was drained: {h:#}");
        h[6]["state"] == "retired"
    })
    .await;
    assert_eq!(h[6]["shards"], 0, "{h:#}");
    println!("retired {} s before the end of its period", until.saturating_sub(now()));
    assert!(
        h.as_array().expect("hosts").iter().any(|h| h["measured_bandwidth"].as_u64() > Some(0)),
        "the drain read whole shards, yet no bandwidth was measured: {h:#}"
    );
    let ev = events(&env);
    assert!(ev.iter().any(|(a, d)| a == "host.period_ending" && d.starts_with("h7")), "{ev:?}");

    // Once its period is over the host takes no new shard, whoever grants it.
    while now() < until {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (id, url) = host(&env, 6);
    let data = vec![5u8; 70_000];
    let shard = ShardId::of(&data);
    let grant = Grant { host: id, shard, op: Op::Put, max_size: 1 << 20, expires: now() + 300, nonce: 0 }
        .sign(&coordinator_key(&env))
        .0;
    let http = scatter_net::http_client(Some(fingerprint(&env)), scatter_net::Peer::Host)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let resp = http.put(format!("{url}/shards/{shard}")).header(GRANT_HEADER, grant).body(data).send().await;
    let resp = resp.expect("the host answers");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert!(status.is_client_error() && text.contains("period_over"), "{status} {text}");
    // It was drained, not cut off: the hard end found nothing to retire.
    let ev = events(&env);
    assert!(!ev.iter().any(|(a, _)| a == "host.period_ended"), "{ev:?}");

    // Without it, and with two more hosts gone, every file comes back bit for bit: its
    // shards were rebuilt on the others, not merely readable.
    env.grid.kill_host(6);
    env.grid.kill_host(0);
    env.grid.kill_host(1);
    for (name, path) in &files {
        env.get_and_compare(name, path);
    }
    env.get_and_compare("note", &env.path("note"));
    let h = hosts(&env);
    assert_eq!(h[6]["state"], "retired", "{h:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn terms_reputation_and_operators_are_shown() {
    let mut host_args =
        vec![flags(&["--price", "0.5", "--egress-price", "0.02", "--bandwidth", "100MiB", "--until", "2099-01-01"])];
    host_args.resize(4, Vec::new());
    // One zone: four hosts over three zones would leave a lost shard nowhere to go.
    let opts = GridOptions { passphrase: "test passphrase".into(), host_args, zones: 1, ..Default::default() };
    let mut env = grid_with(4, opts).await;

    // Terms as declared, reputation with its parts, and time online counted from heartbeats.
    let h =
        wait_hosts(&env, Duration::from_secs(20), "time online counted", |h| h[0]["online_secs"].as_u64() >= Some(2))
            .await;
    let terms = &h[0]["terms"];
    assert_eq!(
        (&terms["price"], &terms["egress_price"], &terms["bandwidth"], &terms["until"]),
        (&500_000.into(), &20_000.into(), &(100u64 << 20).into(), &4_070_908_800u64.into()),
        "{h:#}"
    );
    assert_eq!(h[1]["terms"]["until"], serde_json::Value::Null, "{h:#}");
    for part in ["score", "audits", "uptime", "age", "repairs"] {
        assert!(h[0]["reputation"][part].is_u64(), "no {part} in {h:#}");
    }
    assert!(h[0]["reputation"]["uptime"].as_u64() >= Some(50), "{h:#}");
    let table = env.ok(&["admin", "host", "ls"]);
    for needle in ["score", "2099-01-01 00:00 UTC", "0.5", "0.02", "100.0 MiB/s"] {
        assert!(table.contains(needle), "no {needle} in:\n{table}");
    }

    // What hosts serve to readers is counted, as they report it.
    let file = env.write_random("data", 3 << 20, 7);
    env.put(&file, "data");
    env.get_and_compare("data", &file);
    wait_hosts(&env, Duration::from_secs(20), "served bytes counted", |h| {
        h.as_array().expect("hosts").iter().filter_map(|h| h["served_bytes"].as_u64()).sum::<u64>() >= 3 << 20
    })
    .await;

    // A shard a host loses is rebuilt elsewhere and counts against that host.
    let (victim, shards) =
        (0..4).map(|i| (i, shard_files(&env.grid.host_dir(i)))).max_by_key(|(_, f)| f.len()).expect("hosts");
    std::fs::remove_file(&shards[0]).expect("remove a shard file");
    let h = wait_hosts(&env, Duration::from_secs(90), "the lost shard counted", |h| {
        h[victim]["repairs_caused"].as_u64() >= Some(1)
    })
    .await;
    assert!(h[victim]["reputation"]["repairs"].as_u64() < Some(100), "{h:#}");
    env.get_and_compare("data", &file);

    // An operator's hosts join with its own token and count as one failure domain.
    let token = env.ok(&["admin", "operator", "add", "acme"]).trim().to_owned();
    assert!(token.starts_with("sct_"), "{token}");
    let err = env.fails(&["admin", "operator", "add", "acme"]);
    assert!(err.contains("exists"), "{err}");
    let a = env.grid.add_host(&token, &["--price", "0.1"]).await.expect("an operator's host joins");
    let b = env.grid.add_host(&token, &[]).await.expect("another joins");
    let status: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--json"])).expect("status is JSON");
    let domain = |i: usize| status["hosts"][i]["domain"].as_str().expect("domain").to_owned();
    assert_eq!(domain(a), "operator 1", "{status:#}");
    assert_eq!(domain(b), "operator 1", "{status:#}");
    assert_eq!(domain(0), "host h1", "the grid's own hosts are each their own domain");
    let ops: serde_json::Value =
        serde_json::from_str(&env.ok(&["admin", "operator", "ls", "--json"])).expect("operators are JSON");
    assert_eq!((&ops[0]["name"], &ops[0]["hosts"], &ops[0]["independent"]), (&"acme".into(), &2.into(), &false.into()));

    // Until the admin declares them independent.
    env.ok(&["admin", "operator", "independent", "acme", "yes"]);
    let status: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--json"])).expect("status is JSON");
    assert_eq!(status["hosts"][a]["domain"], format!("host h{}", a + 1), "{status:#}");
    let err = env.fails(&["admin", "operator", "independent", "nobody", "yes"]);
    assert!(err.contains("no operator"), "{err}");
    let listed = env.ok(&["admin", "operator", "ls"]);
    assert!(listed.contains("acme") && listed.contains("one per host"), "{listed}");
    let ev = events(&env);
    for action in ["operator.added", "operator.independent"] {
        assert!(ev.iter().any(|(a, _)| a == action), "no {action} in {ev:?}");
    }
    assert!(ev.iter().any(|(a, d)| a == "host.joined" && d.contains("operator 1")), "{ev:?}");
}
