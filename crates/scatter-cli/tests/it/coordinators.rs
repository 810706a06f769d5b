//! Several coordinators on one PostgreSQL catalog, as real processes (seven hosts): one dies with SIGKILL
//! in the middle of a backup, the client finishes through the other, which also repairs a
//! host lost meanwhile; the data restores bit for bit, and no background job ran in two
//! coordinators at once.

use crate::common;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ok, EXE};
use scatter_cli::grid::GridOptions;
use scatter_coordinator::store::Store;

/// A coordinator started by the test; killed (by its PID) when dropped.
struct Coordinator {
    child: Child,
    log: PathBuf,
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port's HTTPS URL on loopback.
fn free_url() -> (String, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    (format!("https://{addr}"), addr)
}

/// Starts a second coordinator on `listen` sharing the first one's keys and `catalog`.
fn second_coordinator(first: &Path, dir: &Path, listen: &str, catalog: &str, log: PathBuf) -> Coordinator {
    std::fs::create_dir_all(dir).expect("mkdir");
    for name in ["ca.crt", "ca.key", "coordinator.key", "join-token", "admin-token"] {
        std::fs::copy(first.join(name), dir.join(name)).expect("copy a key file");
    }
    let out = std::fs::File::create(&log).expect("log");
    let child = Command::new(EXE)
        .args(["coordinator", "--data-dir", dir.to_str().expect("utf-8"), "--listen", listen, "--catalog", catalog])
        .args(["--offline-after", "4s", "--checker-interval", "1s", "--session-ttl", "60s", "--orphan-grace", "1h"])
        .env("SCATTER_LOG", LOG)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .expect("start the second coordinator");
    let mut c = Coordinator { child, log };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(dir.join("url")).is_ok_and(|u| u.ends_with('\n')) {
        assert!(c.child.try_wait().expect("wait").is_none(), "the second coordinator exited: {}", read(&c.log));
        assert!(Instant::now() < deadline, "the second coordinator did not start: {}", read(&c.log));
        std::thread::sleep(Duration::from_millis(50));
    }
    // The schema exists already: its `IF NOT EXISTS` statements are no news to log.
    assert!(!read(&c.log).contains("NOTICE"), "the second coordinator logged notices: {}", read(&c.log));
    c
}

/// Logs with the background jobs' passes (target `scatter::jobs`, at debug).
const LOG: &str = "info,scatter::jobs=debug";

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// A background pass as a coordinator logged it: (job, token, holder, started ms, ended ms).
type Pass = (String, u64, String, u128, u128);

fn passes(log: &str) -> Vec<Pass> {
    log.lines()
        .filter(|l| l.contains("background pass"))
        .map(|l| {
            let fields: HashMap<&str, &str> = l.split_whitespace().filter_map(|w| w.split_once('=')).collect();
            let get = |k: &str| fields.get(k).copied().unwrap_or_else(|| panic!("no {k} in {l}")).trim_matches('"');
            let num = |k: &str| get(k).parse::<u128>().unwrap_or_else(|_| panic!("{k} in {l}"));
            (get("job").to_owned(), num("token") as u64, get("holder").to_owned(), num("started"), num("ended"))
        })
        .collect()
}

/// Every file under `dir`, by path relative to it, with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("dir") {
            let p = e.expect("entry").path();
            if std::fs::symlink_metadata(&p).expect("meta").is_dir() {
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
async fn a_backup_survives_its_coordinator_dying_and_the_other_repairs() {
    let started = Instant::now();
    let pg = scatter_pgtest::TestPg::start();
    let url = pg.url();
    // The second coordinator's address, known before the hosts start: they list it too.
    let (b_url, b_listen) = free_url();
    let opts = GridOptions {
        // Coordinator A (the grid's own) logs its passes like B does.
        log: Some(LOG.into()),
        passphrase: "test passphrase".into(),
        coordinator_args: vec!["--catalog".into(), url.clone()],
        other_coordinators: vec![b_url.clone()],
        checker_interval: "1s".into(),
        ..Default::default()
    };
    let mut env = common::grid_with(7, opts).await;
    let a_dir = env.grid.coordinator_dir();
    assert!(!a_dir.join("catalog.db").exists(), "the catalog is in PostgreSQL");
    let b = second_coordinator(&a_dir, &env.path("coordinator-b"), &b_listen, &url, env.path("coordinator-b.log"));

    // The user's profile lists A first, then B.
    let profile_path = env.grid.client_dir().join("profile.toml");
    let profile = read(&profile_path);
    let a_url = env.grid.url().to_owned();
    let both =
        profile.replace(&format!("coordinator = \"{a_url}\""), &format!("coordinator = [\"{a_url}\", \"{b_url}\"]"));
    assert_ne!(both, profile, "the profile names the coordinator: {profile}");
    std::fs::write(&profile_path, both).expect("profile");

    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    for i in 0..8u64 {
        let f = env.write_random("tmp", 6 << 20, 100 + i);
        std::fs::rename(f, src.join(if i % 2 == 0 { format!("f{i}") } else { format!("sub/f{i}") })).expect("mv");
    }
    let catalog = tokio::task::spawn_blocking({
        let url = url.clone();
        move || Store::connect(&url).expect("read the catalog")
    })
    .await
    .expect("open");
    let catalog = std::sync::Arc::new(catalog);
    let packs = |c: std::sync::Arc<Store>| async move {
        tokio::task::spawn_blocking(move || c.health(0).expect("health").packs_total).await.expect("task")
    };
    let before = packs(catalog.clone()).await;

    // 48 MiB at 12 MiB/s of shards: about six seconds.
    let mut backup = Command::new(EXE)
        .args(["backup", src.to_str().expect("utf-8"), "--limit-upload", "12MiB", "--json"])
        .env("SCATTER_CONFIG", env.grid.client_dir())
        .env("SCATTER_PASSPHRASE", env.grid.passphrase())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn backup");
    let deadline = Instant::now() + Duration::from_secs(60);
    while packs(catalog.clone()).await < before + 2 {
        assert!(backup.try_wait().expect("wait").is_none(), "the backup ended before A was killed");
        assert!(Instant::now() < deadline, "the backup committed nothing within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.grid.kill_coordinator();
    let a_log = env.dir.path().join("grid/coordinator.log");
    assert!(backup.try_wait().expect("wait").is_none(), "A died in the middle of the backup");
    // A host dies too; B's background work must rebuild what it held. (Seven hosts: with
    // six, f = 2 asks for six failure domains, which one dead host leaves the grid short of
    // until it is counted offline.)
    env.grid.kill_host(6);
    let killed = Instant::now();

    let out = tokio::task::spawn_blocking(move || backup.wait_with_output().expect("backup")).await.expect("task");
    let report = ok(out, "the backup through B");
    let report: serde_json::Value = serde_json::from_str(&report).expect("json");
    let id = report["snapshot_id"].as_str().expect("a snapshot id").to_owned();

    // Repair by B: once the dead host counts as offline (4 s without a heartbeat), every
    // pack back at k+m healthy shards without it.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let c = catalog.clone();
        let h = tokio::task::spawn_blocking(move || {
            let cutoff =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() - 4;
            c.health(cutoff).expect("health")
        })
        .await
        .expect("task");
        if killed.elapsed() > Duration::from_secs(6) && h.packs_total > before && h.packs_full == h.packs_total {
            break;
        }
        assert!(Instant::now() < deadline, "B did not repair within 120 s: {h:?}\n{}", read(&b.log));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let c = catalog.clone();
    let (repaired, _) = tokio::task::spawn_blocking(move || c.repair_totals().expect("totals")).await.expect("task");
    assert!(repaired > 0, "the dead host held shards, which B rebuilt");

    let target = env.path("restored");
    env.ok(&["restore", &id, "--target", target.to_str().expect("utf-8")]);
    let restored = target.join(src.strip_prefix("/").expect("absolute"));
    assert!(files(&src) == files(&restored), "the restore differs from the source");
    assert_eq!(std::fs::metadata(&restored).expect("restored").uid(), std::fs::metadata(&src).expect("src").uid());

    // No job ran in both at once: per job, passes of different holders never overlap, and
    // fencing tokens grow as the lease changes hands. B took the checker over from A.
    let (a_passes, b_passes) = (passes(&read(&a_log)), passes(&read(&b.log)));
    let b_holder =
        b_passes.first().map(|p| p.2.clone()).unwrap_or_else(|| panic!("B ran no background pass: {}", read(&b.log)));
    assert!(b_passes.iter().all(|p| p.2 == b_holder));
    assert!(a_passes.iter().any(|p| p.0 == "checker"), "A ran the checker before it died");
    assert!(b_passes.iter().any(|p| p.0 == "checker"), "B took the checker over");
    let mut all: Vec<Pass> = a_passes.into_iter().chain(b_passes).collect();
    all.sort_by_key(|p| (p.0.clone(), p.3));
    for pair in all.windows(2) {
        let (x, y) = (&pair[0], &pair[1]);
        if x.0 != y.0 {
            continue;
        }
        assert!(y.1 >= x.1, "the {} job's token went back: {x:?} then {y:?}", x.0);
        if x.2 != y.2 {
            assert!(y.3 >= x.4, "the {} job ran in two coordinators at once: {x:?} and {y:?}", x.0);
            assert!(y.1 > x.1, "the {} job changed hands without a new token: {x:?} then {y:?}", x.0);
        }
    }
    drop(b);
    assert!(started.elapsed() < Duration::from_secs(240), "took {:?}", started.elapsed());
}

/// Attack (red team): "a shard's bytes are charged at most once while a grant lives" held per
/// coordinator, since each kept its charge windows in memory: the same reads through each of
/// N coordinators charged the account N times (and let hosts claim N times the bytes). The
/// windows are in the catalog now: a read again through another coordinator charges nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_through_a_second_coordinator_is_not_charged_again() {
    let pg = scatter_pgtest::TestPg::start();
    let url = pg.url();
    let (b_url, b_listen) = free_url();
    let opts = GridOptions {
        coordinator_args: vec!["--catalog".into(), url.clone()],
        other_coordinators: vec![b_url.clone()],
        ..Default::default()
    };
    let env = common::grid_with(6, opts).await;
    let a_url = env.grid.url().to_owned();
    let _b = second_coordinator(
        &env.grid.coordinator_dir(),
        &env.path("coordinator-b"),
        &b_listen,
        &url,
        env.path("coordinator-b.log"),
    );
    let file = env.write_random("big", 6 << 20, 7);
    env.put(&file, "big");
    let before = common::egress(&env);
    env.get_and_compare("big", &file);
    let once = common::egress(&env) - before;
    assert!(once >= 6 << 20, "a read of 6 MiB charged {once} bytes");

    let profile_path = env.grid.client_dir().join("profile.toml");
    let profile = read(&profile_path);
    let through_b = profile.replace(&format!("coordinator = \"{a_url}\""), &format!("coordinator = \"{b_url}\""));
    assert_ne!(through_b, profile, "the profile names the coordinator: {profile}");
    std::fs::write(&profile_path, through_b).expect("profile");
    env.get_and_compare("big", &file);
    let twice = common::egress(&env) - before;
    // Charged in memory per coordinator, the second read cost the whole file again. A few
    // bytes may differ between two reads' grants (136 in one run): not a second charge.
    assert!(
        twice - once < once / 100,
        "the same read through the second coordinator charged {} bytes more",
        twice - once
    );
}
