//! Helpers shared by the acceptance tests: a grid of real processes and a way to run
//! `scatter` commands against it, bounded in time.
#![allow(dead_code)]

pub mod attacker;
pub mod browser;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use rand::{RngCore, SeedableRng};
use scatter_cli::grid::{Grid, GridOptions};
use scatter_core::{ChunkId, PackId, ShardId};
use scatter_proto::api::{ChunkEntry, CommitPackRequest, StoredShard};

pub const EXE: &str = env!("CARGO_BIN_EXE_scatter");

pub struct Env {
    pub grid: Grid,
    pub dir: tempfile::TempDir,
}

pub async fn grid(hosts: usize) -> Env {
    grid_with(hosts, GridOptions { passphrase: "test passphrase".into(), ..Default::default() }).await
}

/// A grid whose background work cannot find a damaged shard before a reader does, for tests
/// of what a reader does with one: hosts scrub only at start (every fifth heartbeat, which
/// comes every minute), the coordinator notices no dead host within a test and makes one
/// checker pass (audits) soon after it starts, which this waits for. (CI met a scrub and an
/// audit that quarantined the shard before the reader came.)
pub async fn quiet_grid(hosts: usize) -> Env {
    let opts = GridOptions {
        offline_after: "10m".into(),
        checker_interval: "10m".into(),
        heartbeat: "60s".into(),
        coordinator_args: vec!["--log-level".into(), "info,scatter::jobs=debug".into()],
        ..Default::default()
    };
    let env = grid_with(hosts, opts).await;
    let log = env.grid.coordinator_dir().with_file_name("coordinator.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("background pass job=\"checker\"") {
        assert!(std::time::Instant::now() < deadline, "the checker made no first pass within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env
}

/// A grid of `hosts` started with `opts`, under `grid/` in the test's directory.
pub async fn grid_with(hosts: usize, opts: GridOptions) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let grid = Grid::start(Path::new(EXE), &dir.path().join("grid"), hosts, opts).await.expect("grid starts");
    Env { grid, dir }
}

impl Env {
    /// The coordinator's SQLite catalog, opened read-only: what tests check the coordinator
    /// recorded.
    pub fn catalog_db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.grid.coordinator_dir().join("catalog.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("catalog")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `scatter ARGS` as the grid's user, bounded in time.
    pub fn scatter(&self, args: &[&str]) -> Output {
        self.scatter_with(args, self.grid.passphrase())
    }

    pub fn scatter_with(&self, args: &[&str], passphrase: &str) -> Output {
        run_with(&self.grid.client_dir(), passphrase, args, &[])
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.scatter(args);
        assert!(out.status.success(), "scatter {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.scatter(args);
        assert!(!out.status.success(), "scatter {args:?} should have failed");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!err.contains("panicked"), "scatter {args:?} panicked: {err}");
        err
    }

    pub fn write_random(&self, name: &str, len: usize, seed: u64) -> PathBuf {
        let mut data = vec![0u8; len];
        rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
        let p = self.path(name);
        std::fs::write(&p, data).expect("write input");
        p
    }

    pub fn put(&self, file: &Path, name: &str) {
        self.ok(&["put", file.to_str().expect("utf-8 path"), "--name", name]);
    }

    pub fn get_and_compare(&self, name: &str, original: &Path) -> String {
        let out = self.path(&format!("{}.out", name.replace('/', "_")));
        let _ = std::fs::remove_file(&out);
        let res = self.scatter(&["get", name, "--output", out.to_str().expect("utf-8 path")]);
        let stderr = String::from_utf8_lossy(&res.stderr).into_owned();
        assert!(res.status.success(), "get {name} failed: {stderr}");
        assert!(std::fs::read(&out).expect("output") == std::fs::read(original).expect("input"), "{name} differs");
        stderr
    }
}

pub fn shard_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(fans) = std::fs::read_dir(dir.join("shards")) else { return out };
    for fan in fans.flatten() {
        for f in std::fs::read_dir(fan.path()).into_iter().flatten().flatten() {
            out.push(f.path());
        }
    }
    out
}

/// The grid CA's fingerprint, from the grid user's profile.
pub fn fingerprint(env: &Env) -> scatter_net::Fingerprint {
    env.grid.profile().fingerprint().expect("profile").expect("a TLS grid")
}

/// The coordinator's grant-signing key, read from its data directory (what a forger lacks).
pub fn coordinator_key(env: &Env) -> ed25519_dalek::SigningKey {
    let text = std::fs::read_to_string(env.grid.coordinator_dir().join("coordinator.key")).expect("key");
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed).expect("hex");
    ed25519_dalek::SigningKey::from_bytes(&seed)
}

/// What the catalog holds, read straight from its file (what an attacker is assumed to
/// have learned: ids are not secrets).
pub struct Catalog {
    pub chunks: Vec<ChunkId>,
    /// (pack, index, shard, host)
    pub shards: Vec<(PackId, u8, ShardId, scatter_core::HostId)>,
}

pub fn catalog(env: &Env) -> Catalog {
    let db = env.catalog_db();
    let id32 = |v: Vec<u8>| <[u8; 32]>::try_from(v).expect("32 bytes");
    let chunks = db
        .prepare("SELECT id FROM chunks")
        .expect("sql")
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .expect("sql")
        .map(|r| ChunkId::from_bytes(id32(r.expect("row"))))
        .collect();
    let shards = db
        .prepare("SELECT pack, idx, hash, host FROM shards ORDER BY pack, idx")
        .expect("sql")
        .query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, u8>(1)?, r.get::<_, Vec<u8>>(2)?, r.get::<_, i64>(3)?))
        })
        .expect("sql")
        .map(|r| {
            let (p, i, s, h) = r.expect("row");
            (PackId::from_bytes(id32(p)), i, ShardId::from_bytes(id32(s)), scatter_core::HostId(h as u64))
        })
        .collect();
    Catalog { chunks, shards }
}

/// The data folder of the host with id `id` (hosts join in any order).
pub fn host_dir(env: &Env, id: scatter_core::HostId) -> PathBuf {
    let i = (0..env.grid.host_count()).find(|i| host(env, *i).0 == id).expect("a host with this id");
    env.grid.host_dir(i)
}

/// The file of `shard` on the host with id `id`.
pub fn shard_file(env: &Env, id: scatter_core::HostId, shard: scatter_core::ShardId) -> PathBuf {
    let name = shard.to_string();
    shard_files(&host_dir(env, id)).into_iter().find(|p| p.ends_with(&name)).expect("the shard's file")
}

/// Flips a byte in the middle of the file at `path`: a shard gone bad on its host's disk.
pub fn flip_byte(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read the shard");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(path, bytes).expect("write the shard");
}

/// Host `i`'s id and address, as it saved them.
pub fn host(env: &Env, i: usize) -> (scatter_core::HostId, String) {
    let id: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.grid.host_dir(i).join("host.json")).expect("host.json"))
            .expect("json");
    let url = std::fs::read_to_string(env.grid.host_dir(i).join("url")).expect("url");
    (scatter_core::HostId(id["host_id"].as_u64().expect("id")), url.trim().to_owned())
}

/// The passphrase of the other accounts tests set up with [`run`].
pub const THEIR_PASSPHRASE: &str = "their passphrase";

/// Runs `scatter ARGS` with its own profile directory, [`THEIR_PASSPHRASE`] and `vars`,
/// bounded in time.
pub fn run(config: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    run_with(config, THEIR_PASSPHRASE, args, vars)
}

/// Runs `scatter ARGS` with `passphrase`, bounded in time.
pub fn run_with_pass(config: &Path, passphrase: &str, args: &[&str]) -> Output {
    run_with(config, passphrase, args, &[])
}

/// Runs `scatter ARGS` with `passphrase` and `vars`, bounded in time.
pub fn run_with(config: &Path, passphrase: &str, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(EXE);
    cmd.args(args)
        .env("SCATTER_CONFIG", config)
        .env("SCATTER_PASSPHRASE", passphrase)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn scatter");
    // Read as it comes: a command printing more than a pipe holds (64 KiB) would block on
    // it and never finish.
    fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    }
    let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let (stdout, stderr) = (stdout.join().expect("stdout"), stderr.join().expect("stderr"));
            return Output { status, stdout, stderr };
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("scatter {args:?} did not finish within 300 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The stdout of a command that must succeed.
pub fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sets up an appender (a write-only source of u1) invited with `extra` options, with its
/// own profile directory `env.path(name)`, from keys exported to `env.path("NAME.keys")`.
pub fn appender(env: &Env, name: &str, extra: &[&str]) -> PathBuf {
    let mut args = vec!["admin", "user", "add", name, "--role", "appender", "--of", "u1"];
    args.extend_from_slice(extra);
    let token = env.ok(&args).trim().to_owned();
    let wo = env.path(&format!("{name}.keys"));
    let wo_s = wo.to_str().expect("utf-8 path");
    let export = run_with(
        &env.grid.client_dir(),
        env.grid.passphrase(),
        &["key", "export", "--write-only", "--output", wo_s],
        &[("SCATTER_EXPORT_PASSPHRASE", "moving")],
    );
    ok(export, "write-only export");
    let dir = env.path(name);
    let init = ["init", "--coordinator", env.grid.url(), "--token", &token, "--import", wo_s];
    ok(run(&dir, &init, &[("SCATTER_IMPORT_PASSPHRASE", "moving")]), "appender init");
    dir
}

/// Shard files on hosts `which` (by index) that the catalog does not place there: uploads
/// not committed (or not yet deleted after being given back).
pub fn unrecorded_on(env: &Env, which: &[usize]) -> Vec<PathBuf> {
    let db = env.catalog_db();
    let mut stmt = db.prepare("SELECT host, hash FROM shards").expect("sql");
    let recorded: std::collections::HashSet<(u64, String)> = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, hex::encode(r.get::<_, Vec<u8>>(1)?))))
        .expect("sql")
        .map(|r| r.expect("row"))
        .collect();
    let mut out = Vec::new();
    for &i in which {
        let id = host(env, i).0 .0;
        for f in shard_files(&env.grid.host_dir(i)) {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if !recorded.contains(&(id, name)) {
                out.push(f);
            }
        }
    }
    out
}

/// Waits until `child`, still running, has put an upload the catalog does not record on one
/// of hosts `which` (bounded).
pub fn wait_for_upload(env: &Env, which: &[usize], child: &mut std::process::Child) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while unrecorded_on(env, which).is_empty() {
        assert!(child.try_wait().expect("wait").is_none(), "the upload finished before it could be cut short");
        assert!(std::time::Instant::now() < deadline, "the upload put nothing on the hosts");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits up to `limit` until hosts `which` hold no upload the catalog does not record: how
/// long that took, or the files still there.
pub fn wait_clean_on(env: &Env, which: &[usize], limit: Duration) -> Result<Duration, Vec<PathBuf>> {
    let started = std::time::Instant::now();
    loop {
        let left = unrecorded_on(env, which);
        if left.is_empty() {
            return Ok(started.elapsed());
        }
        if started.elapsed() >= limit {
            return Err(left);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The commit of a 4+2 pack of 4 KiB shards `ids`, stored as `stored`, claiming `chunks` (64
/// bytes each, one after another from its start, as a real pack lays them out: 256 at most).
pub fn uploaded_pack(
    session: u64,
    ids: &[ShardId],
    stored: Vec<StoredShard>,
    chunks: &[ChunkId],
    relocate: bool,
) -> CommitPackRequest {
    CommitPackRequest {
        pack: PackId::of_shards(ids),
        session,
        size: 4 * 4096,
        k: 4,
        m: 2,
        shard_size: 4096,
        shards: stored,
        chunks: (0..).zip(chunks).map(|(i, c)| ChunkEntry { id: *c, offset: i * 64, len: 64 }).collect(),
        relocate,
    }
}

/// The dashboard's URL, once the coordinator wrote it (bounded).
pub fn dashboard_url(env: &Env) -> String {
    let path = env.grid.coordinator_dir().join("dashboard-url");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            if text.ends_with('\n') {
                return text.trim().to_owned();
            }
        }
        assert!(std::time::Instant::now() < deadline, "the coordinator wrote no dashboard-url");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The most memory process `pid` has held (VmHWM, in bytes) since it started or since
/// [`reset_peak`].
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number");
    kib * 1024
}

/// Starts counting process `pid`'s peak memory anew, from what it holds now.
pub fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("clear_refs");
}

/// The grid user's (u1's) egress so far, from the admin's usage records.
pub fn egress(env: &Env) -> i64 {
    let records: serde_json::Value =
        serde_json::from_str(&env.ok(&["admin", "billing", "records"])).expect("records as JSON");
    let mine = |r: &&serde_json::Value| r["subject"] == "user" && r["who"] == 1 && r["kind"] == "egress";
    records.as_array().expect("records").iter().filter(mine).map(|r| r["amount"].as_i64().expect("amount")).sum()
}
