//! Losing the coordinator: its catalog is backed up on the hosts and recovered from them
//! with the grid's recovery key alone, with real processes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common;
use common::*;
use scatter_proto::catalog_backup::{self as cb, BackupHeader};

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Runs `scatter coordinator recover` (no profile needed).
fn recover(env: &Env, data_dir: &Path, key: &Path) -> std::process::Output {
    let mut args = vec![
        "coordinator".to_owned(),
        "recover".into(),
        "--data-dir".into(),
        s(data_dir).into(),
        "--recovery-key".into(),
        s(key).into(),
    ];
    for i in 0..env.grid.host_count() {
        args.extend(["--host".to_owned(), host(env, i).1]);
    }
    Command::new(EXE).args(&args).env("SCATTER_CONFIG", env.path("nobody")).output().expect("run recover")
}

/// Every file under `dir`, with its bytes, by relative path.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push((p.strip_prefix(dir).expect("under").to_owned(), std::fs::read(&p).expect("read")));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_coordinator_is_rebuilt_from_catalog_backups_on_the_hosts() {
    let started = Instant::now();
    let mut env = grid(6).await;
    // A tree of a few MiB, backed up twice (two snapshots).
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    std::fs::rename(env.write_random("a", 3 << 20, 1), src.join("a.bin")).expect("mv");
    for i in 0..5u64 {
        std::fs::rename(env.write_random("f", 20_000 + i as usize, 10 + i), src.join(format!("sub/f{i}"))).expect("mv");
    }
    let first = json(&env.ok(&["backup", s(&src), "--json"]));
    let copy1 = tree(&src);
    std::fs::write(src.join("sub/new.txt"), b"written before the catalog backup").expect("write");
    let second = json(&env.ok(&["backup", s(&src), "--json"]));
    let copy2 = tree(&src);
    let ids =
        [first["snapshot_id"].as_str().expect("id").to_owned(), second["snapshot_id"].as_str().expect("id").to_owned()];

    // The recovery key was made at the first start; a backup is taken on request.
    let key_file = env.grid.coordinator_dir().join("recovery.key");
    let key_text = std::fs::read_to_string(&key_file).expect("recovery.key exists");
    assert!(key_text.contains("MASTER KEY"), "{key_text}");
    let offline_key = env.path("offline-recovery.key");
    std::fs::write(&offline_key, &key_text).expect("copy the key");
    let out = env.ok(&["admin", "catalog-backup"]);
    assert!(out.contains("Catalog backup #") && out.contains("over 6 hosts"), "{out}");
    let health = json(&env.ok(&["admin", "health", "--json"]));
    let seq = health["catalog_backup"]["seq"].as_u64().expect("a backup is recorded");
    assert!(health["catalog_backup"]["age_secs"].as_u64().expect("age") < 60, "{health}");
    assert!(env.ok(&["admin", "health"]).contains("catalog backup: #"), "health shows the backup");
    let metrics = {
        let ca = env.grid.profile().fingerprint().expect("profile");
        let http = scatter_net::http_client(ca, scatter_net::Peer::Coordinator).build().expect("client");
        http.get(format!("{}/metrics", env.grid.url())).send().await.expect("metrics").text().await.expect("text")
    };
    assert!(metrics.contains("scatter_catalog_backup_age_seconds "), "{metrics}");
    // Hosts list and serve backups only with a proof of the recovery key.
    let (host_id, host_url) = host(&env, 1);
    let http = scatter_net::http_client(Some(fingerprint(&env)), scatter_net::Peer::Host).build().expect("client");
    for path in ["/catalog".to_owned(), format!("/catalog/{seq}/1")] {
        let r = http.get(format!("{host_url}{path}")).send().await.expect("host answers");
        assert_eq!(r.status(), 403, "{path} without a proof");
    }

    // Data written after the last catalog backup: a snapshot the restored catalog will not
    // know, whose shards must stay on the hosts (not be deleted as orphans).
    std::fs::write(src.join("sub/late.txt"), vec![7u8; 300_000]).expect("write");
    let late = json(&env.ok(&["backup", s(&src), "--json"]));
    let late_at = Instant::now();
    let shards_before: Vec<PathBuf> =
        (0..env.grid.host_count()).flat_map(|i| shard_files(&env.grid.host_dir(i))).collect();

    // Host 0 plants a "newer" backup that the grid did not sign.
    let forger = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let seq_planted = seq + 100;
    let fake = BackupHeader {
        grid: fingerprint(&env).0,
        seq: seq_planted,
        time: 4_000_000_000,
        hash: [0; 32],
        size: 4,
        k: 1,
        m: 1,
        shard_size: 4,
        shard_hashes: vec![*blake3::hash(b"evil").as_bytes(); 2],
    };
    let planted = cb::encode_shard(&fake.sign(&forger), 0, b"evil");
    // Uploaded, it is refused: hosts take only what the coordinator grants, and store only
    // what the grid signed.
    let r = http.put(format!("{host_url}/catalog/{seq_planted}/0")).body(planted.clone()).send().await.expect("put");
    assert_eq!(r.status(), 403, "a backup shard without the coordinator's grant is refused");
    let grant = scatter_proto::Grant {
        host: host_id,
        shard: scatter_proto::grant::catalog_shard(seq_planted, 0),
        op: scatter_proto::Op::CatalogPut,
        max_size: planted.len() as u64,
        expires: 4_000_000_000,
        nonce: 0,
    }
    .sign(&coordinator_key(&env));
    let r = http
        .put(format!("{host_url}/catalog/{seq_planted}/0"))
        .header(scatter_proto::api::GRANT_HEADER, grant.0)
        .body(planted.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 400, "an unsigned backup shard is refused, even under a grant");
    assert!(!env.grid.host_dir(1).join(format!("catalog/{seq_planted:020}-000.cbk")).exists());
    std::fs::write(env.grid.host_dir(0).join(format!("catalog/{seq_planted:020}-000.cbk")), planted).expect("plant");

    // The coordinator's machine is lost: kill -9, and its data folder is gone.
    env.grid.kill_coordinator();
    std::fs::remove_dir_all(env.grid.coordinator_dir()).expect("delete the data folder");

    // Another grid's recovery key (same signing key and CA named, other secrets) is refused
    // by every host, in one sentence.
    let wrong_key = env.path("wrong-recovery.key");
    let real = scatter_coordinator::recovery::RecoveryKey::parse(&key_text).expect("parses");
    let other = scatter_coordinator::recovery::RecoveryKey::generate(real.signing_public, real.ca);
    std::fs::write(&wrong_key, other.to_text()).expect("write");
    let target = env.grid.coordinator_dir();
    let out = recover(&env, &target, &wrong_key);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "recovered with the wrong key");
    assert!(err.contains("no host accepted this recovery key"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
    assert!(!target.exists() || std::fs::read_dir(&target).expect("dir").next().is_none(), "nothing written");
    let garbage = env.path("garbage.key");
    std::fs::write(&garbage, "not a key").expect("write");
    let err = String::from_utf8_lossy(&recover(&env, &target, &garbage).stderr).into_owned();
    assert!(err.contains("is not a Scatter recovery key file"), "{err}");
    // Too few hosts named: it says how many shards of which backup it found (it said "none
    // at all"), and writes nothing.
    let one = [
        "coordinator",
        "recover",
        "--data-dir",
        s(&target),
        "--recovery-key",
        s(&offline_key),
        "--host",
        &host(&env, 1).1,
    ];
    let out = Command::new(EXE).args(one).env("SCATTER_CONFIG", env.path("nobody")).output().expect("run recover");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("too few shards of any one backup"), "{err}");
    assert!(err.contains(&format!("#{seq}: 1 of the 4 shards needed")), "{err}");
    assert!(!target.exists() || std::fs::read_dir(&target).expect("dir").next().is_none(), "nothing written");

    // The real key, with one host down (4 of the 6 shards are needed): the planted backup
    // is refused and said so, the grid's own is restored.
    env.grid.kill_host(5);
    let out = recover(&env, &target, &offline_key);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "recover failed: {stderr}");
    assert!(stdout.contains(&format!("Recovered catalog backup #{seq} ")), "{stdout}");
    assert!(stdout.contains("not in this catalog") && stdout.contains("kept for 7 days"), "{stdout}");
    assert!(stderr.contains("not signed by this grid"), "{stderr}");
    assert!(stderr.contains("could not be reached"), "the dead host is named: {stderr}");
    assert!(stdout.contains("from 5 host(s)"), "{stdout}");
    assert!(!target.join("recovery.key").exists(), "the master key is not written back");
    use std::os::unix::fs::PermissionsExt;
    let mode = |name: &str| std::fs::metadata(target.join(name)).expect("recovered file").permissions().mode() & 0o777;
    assert_eq!(
        (mode("ca.crt"), mode("ca.key"), mode("coordinator.key")),
        (0o644, 0o600, 0o600),
        "as a new data directory"
    );
    assert!(target.join("recovery.pub").exists() && target.join("ca.key").exists());
    let out = recover(&env, &target, &offline_key);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not empty"), "a non-empty folder is refused");

    // The same coordinator again, on the same port: hosts come back on their own, the
    // existing profile restores every snapshot bit for bit and backs up again.
    env.grid.start_coordinator().expect("the recovered coordinator starts");
    env.grid.start_host(5).expect("the sixth host is back");
    env.grid.wait_online(6, Duration::from_secs(40)).await.expect("hosts reconnect");
    // Each online at once in one listing: on a loaded machine one heartbeat comes late now
    // and then, and the host reads as suspect until the next (seen once in CI).
    let settling = Instant::now();
    loop {
        let hosts = json(&env.ok(&["admin", "host", "ls", "--json"]));
        if hosts.as_array().expect("hosts").iter().all(|h| h["state"] == "online") {
            break;
        }
        assert!(settling.elapsed() < Duration::from_secs(30), "{hosts}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let list = json(&env.ok(&["snapshots", "--json"]));
    let listed: Vec<&str> = list.as_array().expect("array").iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(
        listed,
        [ids[0].as_str(), ids[1].as_str()],
        "the snapshot after the catalog backup ({late}) is rolled back"
    );
    for (id, expected) in [(&ids[0], &copy1), (&ids[1], &copy2)] {
        let out = env.path(&format!("restore-{}", &id[..8]));
        env.ok(&["restore", &id[..8], "--target", s(&out)]);
        assert_eq!(&tree(&out.join(src.strip_prefix("/").expect("absolute"))), expected, "snapshot {id}");
    }
    std::fs::write(src.join("sub/after.txt"), b"written after the recovery").expect("write");
    let third = json(&env.ok(&["backup", s(&src), "--json"]));
    let out = env.path("restore-third");
    env.ok(&["restore", third["snapshot_id"].as_str().expect("id"), "--target", s(&out)]);
    assert_eq!(tree(&out.join(src.strip_prefix("/").expect("absolute"))), tree(&src));
    let taken = env.ok(&["admin", "catalog-backup"]);
    let next: u64 = taken
        .trim_start_matches("Catalog backup #")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no sequence number in {taken}"));
    assert!(next > seq, "sequence numbers go on after a recovery: {taken}");

    // A security-relevant change is backed up within seconds, without asking.
    appender(&env, "source2", &[]);
    env.ok(&["admin", "user", "disable", "u2"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let h = json(&env.ok(&["admin", "health", "--json"]));
        if h["catalog_backup"]["seq"].as_u64() > Some(next) {
            break;
        }
        assert!(Instant::now() < deadline, "no catalog backup followed disabling a user: {h}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // So does every other change of who may do what: revoking an invite, trusting and
    // untrusting an appender (each was missed once, and a recovery undid it).
    env.ok(&["admin", "user", "add", "mallory"]);
    let invites = json(&env.ok(&["admin", "invite", "ls", "--json"]));
    let invite = invites[0]["id"].as_str().expect("an invite id").to_owned();
    let changes: [&[&str]; 3] =
        [&["admin", "invite", "rm", &invite], &["delegate", "trust", "u2"], &["delegate", "untrust", "u2"]];
    for change in changes {
        let before = json(&env.ok(&["admin", "health", "--json"]))["catalog_backup"]["seq"].as_u64();
        env.ok(change);
        let deadline = Instant::now() + Duration::from_secs(15);
        while json(&env.ok(&["admin", "health", "--json"]))["catalog_backup"]["seq"].as_u64() <= before {
            assert!(Instant::now() < deadline, "no catalog backup followed `{}`", change.join(" "));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    // Past the orphan grace (20 s here) and a few inventories: the rolled-back snapshot's
    // shards are still on the hosts, since the catalog was recovered.
    tokio::time::sleep(Duration::from_secs(32).saturating_sub(late_at.elapsed())).await;
    let missing: Vec<&PathBuf> = shards_before.iter().filter(|p| !p.exists()).collect();
    assert!(missing.is_empty(), "shards unknown to the recovered catalog were deleted: {missing:?}");

    // A clean shutdown takes a last backup of what changed (an invite here).
    env.ok(&["admin", "user", "add", "carol"]);
    let last = json(&env.ok(&["admin", "health", "--json"]))["catalog_backup"]["seq"].as_u64().expect("seq");
    let pid = env.grid.coordinator_pid().expect("running");
    let term = Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill");
    assert!(term.success());
    let newest = |env: &Env| {
        (0..env.grid.host_count())
            .flat_map(|i| std::fs::read_dir(env.grid.host_dir(i).join("catalog")).into_iter().flatten().flatten())
            .filter_map(|e| e.file_name().to_str()?.split('-').next()?.parse::<u64>().ok())
            .filter(|seq| *seq < seq_planted)
            .max()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while newest(&env) <= Some(last) {
        assert!(Instant::now() < deadline, "no catalog backup at shutdown");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("recovery test took {:?}", started.elapsed());
}

/// A recovery key replaced as the README says (new pair at the coordinator, then each host
/// told): until every host has learned the new key, hosts serve backups only to the old
/// one, whose newest backups are encrypted to the new. `recover` with the old key stopped at
/// the newest backup ("does not open with this recovery key") although older ones it opens
/// were on the hosts; it now says so and recovers the newest it opens.
#[tokio::test(flavor = "multi_thread")]
async fn a_recovery_during_a_key_replacement_takes_the_newest_backup_the_key_opens() {
    let mut env = grid(4).await;
    let file = env.write_random("before", 100_000, 3);
    env.put(&file, "before");
    let old_key = env.path("old-recovery.key");
    std::fs::copy(env.grid.coordinator_dir().join("recovery.key"), &old_key).expect("copy the key");
    let out = env.ok(&["admin", "catalog-backup"]);
    assert!(out.contains("Catalog backup #"), "{out}");

    env.grid.kill_coordinator();
    for f in ["recovery.pub", "recovery.key"] {
        std::fs::remove_file(env.grid.coordinator_dir().join(f)).expect("remove the old pair");
    }
    env.grid.start_coordinator().expect("coordinator restarts");
    env.put(&env.write_random("after", 100_000, 4), "after");
    let out = env.ok(&["admin", "catalog-backup"]);
    assert!(out.contains("Catalog backup #"), "a backup under the new key: {out}");

    let rebuilt = env.path("rebuilt");
    let out = recover(&env, &rebuilt, &old_key);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "recover with the key the hosts know: {err}");
    assert!(err.contains("does not open with this recovery key"), "the newer backup is not mentioned: {err}");
    assert!(rebuilt.join("catalog.db").exists());
    // Each host refuses the new key, and says so once, not at every heartbeat (it did).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = std::fs::read_to_string(env.grid.coordinator_dir().with_file_name("host-0.log")).expect("host log");
    let warnings = log.lines().filter(|l| l.contains("sends another recovery access key")).count();
    assert_eq!(warnings, 1, "{log}");
}

/// Every shard the catalog in `db` places on a host, live, that this host's disk lacks.
fn placed_but_missing(env: &Env, db: &rusqlite::Connection) -> Vec<String> {
    let mut q = db
        .prepare("SELECT s.host, s.hash FROM shards s JOIN packs p ON p.id = s.pack WHERE p.state = 'live' AND s.state = 'ok'")
        .expect("sql");
    let rows = q.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))).expect("sql");
    rows.map(|r| r.expect("row"))
        .filter(|(h, hash)| {
            let hex = hex::encode(hash);
            !host_dir(env, scatter_core::HostId(*h as u64)).join("shards").join(&hex[..2]).join(&hex).exists()
        })
        .map(|(h, hash)| format!("h{h}:{}", &hex::encode(hash)[..12]))
        .collect()
}

/// Repair moves a dead host's shards elsewhere, and once the host is back its old copies
/// are deleted. Those deletions waited for nothing: the newest catalog backup, taken before
/// the moves, still placed the shards on that host, so a coordinator recovered from it
/// audited healthy hosts for shards they had rightly deleted, disqualified them for good,
/// and counted most packs as lost. Now a moved shard's old copy is deleted only once a
/// catalog backup that knows the move is stored: the newest backup matches the disks.
#[tokio::test(flavor = "multi_thread")]
async fn the_newest_catalog_backup_places_every_shard_where_it_is_after_a_repair() {
    let mut env = grid(7).await;
    let file = env.write_random("data", 24 << 20, 5);
    env.put(&file, "data");
    env.ok(&["admin", "catalog-backup"]);
    let db = env.catalog_db();
    let busiest = (0..7).max_by_key(|i| shard_files(&env.grid.host_dir(*i)).len()).expect("hosts");
    assert!(!shard_files(&env.grid.host_dir(busiest)).is_empty());
    env.grid.kill_host(busiest);

    // Repaired elsewhere, then back: its old copies are orphans, deleted once it is online.
    let started = Instant::now();
    loop {
        let h = json(&env.ok(&["admin", "health", "--json"]));
        if h["packs_full"] == h["packs_total"] && h["shards_repaired"].as_u64() > Some(0) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "not repaired: {h}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    env.grid.start_host(busiest).expect("the host restarts");
    let started = Instant::now();
    loop {
        let orphans: i64 = db.query_row("SELECT COUNT(*) FROM orphans", [], |r| r.get(0)).expect("sql");
        let left = shard_files(&env.grid.host_dir(busiest)).len();
        let placed: i64 = db
            .query_row("SELECT COUNT(*) FROM shards WHERE host = ?1", [host(&env, busiest).0 .0 as i64], |r| r.get(0))
            .expect("sql");
        if orphans == 0 && left as i64 == placed {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "old copies not deleted: {orphans} orphans, {left} files");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(placed_but_missing(&env, &db).is_empty(), "the live catalog matches the disks");

    // What a coordinator recovered now would have.
    let key = env.path("offline-recovery.key");
    std::fs::copy(env.grid.coordinator_dir().join("recovery.key"), &key).expect("copy the key");
    let dir = env.path("recovered");
    let out = recover(&env, &dir, &key);
    assert!(out.status.success(), "recover: {}", String::from_utf8_lossy(&out.stderr));
    let recovered = rusqlite::Connection::open(dir.join("catalog.db")).expect("recovered catalog");
    let missing = placed_but_missing(&env, &recovered);
    assert!(
        missing.is_empty(),
        "the newest backup places {} shard(s) where they were deleted: {missing:?}",
        missing.len()
    );
}
