//! The chaos test: a grid of 8 hosts in 3 zones, real processes, while puts and gets go on,
//! for a bounded time: hosts killed with SIGKILL and restarted, paused with SIGSTOP, shard
//! files deleted or corrupted on disk, the coordinator killed and restarted. At most m = 2
//! hosts are impaired at once (down, paused, with damage not yet repaired, wiped: for good,
//! since a wiped host is often disqualified later for failing audits), which 4+2 must survive. At the end every object that was
//! put comes back bit for bit and every pack is back at full redundancy within a bounded time.
//!
//! Seeded and reproducible in its choices: set `SCATTER_CHAOS_SEED` to replay a run (the
//! seed is printed), `SCATTER_CHAOS_SECS` to run longer (default 60).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, RngCore, SeedableRng};

use crate::common;
use common::*;

const HOSTS: usize = 8;
const MAX_IMPAIRED: usize = 2;
/// Time for on-disk damage to be found: inventory every 5 heartbeats, packs younger than 10 s
/// are not judged yet, then a repair pass. Twice what that takes on an idle machine: with
/// coordinator restarts among the faults and both cores busy, 20 s was seen to be too short
/// (a wiped host counted as healthy again before its loss was known, so the schedule went
/// past the redundancy it is meant to stay within).
const DAMAGE_SETTLE: Duration = Duration::from_secs(40);

fn health(env: &Env) -> Option<serde_json::Value> {
    let out = env.scatter(&["admin", "health", "--json"]);
    // Exit 3 is a health report with lost packs: still a report.
    matches!(out.status.code(), Some(0 | 3)).then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
}

/// Indexes of the hosts the coordinator has disqualified. A host whose shards were wiped
/// fails audits before its own inventory reports the loss, and a young host is disqualified
/// after three (as documented): it is lost for good, so it counts against the fault budget
/// from then on, and repair needs the others to hold full redundancy.
fn disqualified(env: &Env) -> BTreeSet<usize> {
    let out = env.scatter(&["admin", "host", "ls", "--json"]);
    let Ok(hosts) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else { return BTreeSet::new() };
    let gone: Vec<&str> = hosts
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["state"] == "disqualified")
        .filter_map(|h| h["address"].as_str())
        .collect();
    (0..HOSTS)
        .filter(|&i| {
            std::fs::read_to_string(env.grid.host_dir(i).join("url"))
                .is_ok_and(|url| gone.iter().any(|a| url.trim() == a.trim()))
        })
        .collect()
}

fn scatter_cmd(client: &std::path::Path, pass: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(EXE)
        .args(args)
        .env("SCATTER_CONFIG", client)
        .env("SCATTER_PASSPHRASE", pass)
        .output()
        .expect("run scatter")
}

#[tokio::test(flavor = "multi_thread")]
async fn chaos() {
    let seed: u64 = std::env::var("SCATTER_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    let secs: u64 = std::env::var("SCATTER_CHAOS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    println!("chaos seed {seed} ({secs} s); replay with SCATTER_CHAOS_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut env = grid(HOSTS).await;

    // A mixed data set to start with.
    let mut stored: BTreeMap<String, std::path::PathBuf> = BTreeMap::new();
    for i in 0..8u64 {
        let len = [0usize, 1, 100 << 10, 5 << 20, 20 << 20, 40 << 20, 60 << 20, 80 << 20][i as usize];
        let name = format!("base/{i}");
        let file = env.write_random(&format!("base-{i}"), len, seed ^ i);
        env.put(&file, &name);
        stored.insert(name, file);
    }

    // Puts and gets keep going in the background; failures while the grid is hurt are fine,
    // but what was stored must come back.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stored = Arc::new(Mutex::new(stored));
    let (client, pass, dir) = (env.grid.client_dir(), env.grid.passphrase().to_owned(), env.dir.path().to_owned());
    let workload = {
        let (stop, stored) = (stop.clone(), stored.clone());
        let mut wrng = rand::rngs::StdRng::seed_from_u64(seed.wrapping_add(1));
        std::thread::spawn(move || {
            let (mut puts, mut gets, mut failed) = (0, 0, 0);
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let name = format!("live/{n}");
                let path = dir.join(format!("live-{n}"));
                let mut data = vec![0u8; wrng.gen_range(1..(6 << 20))];
                wrng.fill_bytes(&mut data);
                std::fs::write(&path, &data).expect("write");
                if scatter_cmd(&client, &pass, &["put", path.to_str().expect("utf-8"), "--name", &name])
                    .status
                    .success()
                {
                    stored.lock().expect("lock").insert(name, path);
                    puts += 1;
                } else {
                    failed += 1;
                }
                let pick = {
                    let s = stored.lock().expect("lock");
                    let keys: Vec<_> = s.keys().cloned().collect();
                    keys[wrng.gen_range(0..keys.len())].clone()
                };
                let out = dir.join("workload-get");
                let _ = std::fs::remove_file(&out);
                if scatter_cmd(&client, &pass, &["get", &pick, "--output", out.to_str().expect("utf-8")])
                    .status
                    .success()
                {
                    let want = std::fs::read(&stored.lock().expect("lock")[&pick]).expect("original");
                    assert!(std::fs::read(&out).expect("output") == want, "{pick} came back different during chaos");
                    gets += 1;
                } else {
                    failed += 1;
                }
            }
            (puts, gets, failed)
        })
    };

    // Faults.
    let mut faults: BTreeMap<&str, u32> = BTreeMap::new();
    let mut down: BTreeSet<usize> = BTreeSet::new();
    let mut paused: BTreeMap<usize, Instant> = BTreeMap::new();
    // Damage on disk is found by the host's scrub and inventory (every 5 heartbeats) and then
    // repaired; until then it counts against the budget, for at least DAMAGE_SETTLE.
    let mut damaged: BTreeMap<usize, Instant> = BTreeMap::new();
    // A flipped byte counts until its host has found it (the file leaves `shards/` for
    // quarantine): the grid can read as whole before a scrub reaches it (CI seed
    // 178028199137416364: a flipped shard still unfound, a wiped host and a third fault lost a
    // pack).
    let mut corrupt: BTreeMap<usize, Vec<(std::path::PathBuf, Vec<u8>)>> = BTreeMap::new();
    let mut lost: BTreeSet<usize> = BTreeSet::new();
    let started = Instant::now();
    let mut last_restart = started;
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(700..1500))).await;
        // Damage counts until it has surely been noticed and the grid is back at full redundancy.
        if damaged.values().any(|t| t.elapsed() > DAMAGE_SETTLE)
            && health(&env).is_some_and(|h| h["packs_full"] == h["packs_total"])
        {
            damaged.retain(|_, t| t.elapsed() <= DAMAGE_SETTLE);
        }
        for (i, since) in paused.clone() {
            if since.elapsed() > Duration::from_secs(6) {
                std::process::Command::new("kill")
                    .args(["-CONT", &env.grid.host_pid(i).expect("pid").to_string()])
                    .status()
                    .expect("kill");
                paused.remove(&i);
                *faults.entry("resume").or_default() += 1;
            }
        }
        lost.extend(disqualified(&env));
        corrupt.retain(|_, files| {
            files.retain(|(f, flipped)| std::fs::read(f).is_ok_and(|now| now == *flipped));
            !files.is_empty()
        });
        let impaired: BTreeSet<usize> = down
            .iter()
            .chain(paused.keys())
            .chain(damaged.keys())
            .chain(corrupt.keys())
            .chain(&lost)
            .copied()
            .collect();
        let healthy: Vec<usize> = (0..HOSTS).filter(|i| !impaired.contains(i)).collect();
        let can_hurt = impaired.len() < MAX_IMPAIRED;
        let target = healthy[rng.gen_range(0..healthy.len())];
        match rng.gen_range(0..6) {
            0 if can_hurt => {
                env.grid.kill_host(target);
                down.insert(target);
                *faults.entry("kill -9 host").or_default() += 1;
            }
            1 if !down.is_empty() => {
                let i = *down.iter().nth(rng.gen_range(0..down.len())).expect("one");
                env.grid.start_host(i).expect("restart host");
                down.remove(&i);
                *faults.entry("restart host").or_default() += 1;
            }
            2 if can_hurt => {
                let files = shard_files(&env.grid.host_dir(target));
                for f in &files {
                    let _ = std::fs::remove_file(f);
                }
                // Counted for good, not only while the damage settles: a wiped host is often
                // disqualified later (its audits fail before its inventory reports the loss),
                // and with the shards repair put back on it meanwhile. Counted only from then
                // on, a third host could be wiped first (CI seed 9526712529346609142: hosts 0, 2
                // and 6 wiped and disqualified, 4 packs lost).
                lost.insert(target);
                *faults.entry("wipe host shards").or_default() += 1;
            }
            3 if can_hurt => {
                let files = shard_files(&env.grid.host_dir(target));
                if !files.is_empty() {
                    let f = &files[rng.gen_range(0..files.len())];
                    if let Ok(mut bytes) = std::fs::read(f) {
                        let at = rng.gen_range(0..bytes.len().max(1));
                        if let Some(b) = bytes.get_mut(at) {
                            *b ^= 0x40;
                            std::fs::write(f, &bytes).expect("flip");
                            damaged.insert(target, Instant::now());
                            corrupt.entry(target).or_default().push((f.clone(), bytes));
                            *faults.entry("flip a byte").or_default() += 1;
                        }
                    }
                }
            }
            4 if can_hurt => {
                let pid = env.grid.host_pid(target).expect("running host");
                std::process::Command::new("kill").args(["-STOP", &pid.to_string()]).status().expect("kill");
                paused.insert(target, Instant::now());
                *faults.entry("SIGSTOP host").or_default() += 1;
            }
            // A coordinator restart at most every 15 s: hosts report their inventories every
            // few heartbeats, and a coordinator that never stays up that long would never learn
            // of damage on disk (the budget above assumes it learns within DAMAGE_SETTLE).
            5 if last_restart.elapsed() > Duration::from_secs(15) => {
                last_restart = Instant::now();
                env.grid.kill_coordinator();
                env.grid.start_coordinator().expect("restart coordinator");
                *faults.entry("restart coordinator").or_default() += 1;
            }
            _ => {}
        }
    }

    // Faults stop: everything comes back up, and the grid must heal.
    for (i, _) in std::mem::take(&mut paused) {
        std::process::Command::new("kill")
            .args(["-CONT", &env.grid.host_pid(i).expect("pid").to_string()])
            .status()
            .expect("kill");
    }
    for i in std::mem::take(&mut down) {
        env.grid.start_host(i).expect("restart host");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (puts, gets, failed) = workload.join().expect("workload");
    let healing = Instant::now();
    let final_health = loop {
        if let Some(h) = health(&env) {
            if h["packs_full"] == h["packs_total"] {
                break h;
            }
            if healing.elapsed() > Duration::from_secs(150) {
                let unreadable: Vec<String> = stored
                    .lock()
                    .expect("lock")
                    .keys()
                    .filter(|n| {
                        let out = env.path("final-check");
                        !env.scatter(&["get", n, "--output", out.to_str().expect("utf-8")]).status.success()
                    })
                    .cloned()
                    .collect();
                let log = std::fs::read_to_string(env.path("grid/coordinator.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().filter(|l| l.contains("repair") || l.contains("WARN")).collect();
                panic!(
                    "seed {seed}: not back at full redundancy 150 s after the faults stopped: {h}; faults {faults:?}; disqualified: {:?}; unreadable: {unreadable:?}\ncoordinator log (repair and warnings, last 20):\n{}",
                    disqualified(&env),
                    tail[tail.len().saturating_sub(20)..].join("\n")
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let to_full = healing.elapsed();
    let stored = stored.lock().expect("lock").clone();
    for (name, file) in &stored {
        env.get_and_compare(name, file);
    }
    println!("chaos seed {seed}: faults {faults:?}; disqualified {lost:?}");
    println!(
        "workload: {puts} puts and {gets} verified gets during chaos ({failed} refused while the grid was hurt); {} objects verified at the end",
        stored.len()
    );
    println!(
        "repairs: {} shards ({} bytes) rebuilt; full redundancy {:.1} s after faults stopped; {} packs",
        final_health["shards_repaired"],
        final_health["bytes_repaired"],
        to_full.as_secs_f64(),
        final_health["packs_total"]
    );
}
