//! `scatter mount`: a real FUSE mount of a real grid's snapshots, compared with the source
//! tree by `diff -r`, read through a rotten host, refused writes, EIO rather than wrong bytes
//! when too many shards are bad, and a clean exit on SIGTERM.
//!
//! Skipped, with a message, only where FUSE cannot be used (no /dev/fuse, no fusermount, or
//! the kernel refuses the mount, as in many containers).

use crate::common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{grid, shard_files, Env, EXE};

const EROFS: i32 = 30;
const EIO: i32 = 5;

/// A `scatter mount` child: killed and its mount detached when dropped, whatever happened.
/// A watchdog kills it after [`WATCHDOG`] too, so that a hung file system fails the test's
/// file operations (the kernel answers ENOTCONN once the daemon is gone) instead of hanging.
struct Mounted {
    child: Child,
    point: PathBuf,
    log: PathBuf,
    /// Dropped with the guard: the watchdog stands down.
    _watchdog: std::sync::mpsc::Sender<()>,
}

const WATCHDOG: Duration = Duration::from_secs(240);

fn watchdog(pid: u32) -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(WATCHDOG) {
            eprintln!("scatter mount (pid {pid}) still running after {WATCHDOG:?}: killing it");
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
        }
    });
    tx
}

impl Mounted {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (bounded) for the exit code.
    fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for helper in ["fusermount3", "fusermount"] {
            let ok = Command::new(helper)
                .arg("-u")
                .arg("-z")
                .arg(&self.point)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
        }
    }
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

/// Why FUSE cannot be used here, if it cannot (before any grid is started).
fn no_fuse() -> Option<&'static str> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is missing");
    }
    if !on_path("fusermount") && !on_path("fusermount3") {
        return Some("neither fusermount nor fusermount3 is installed");
    }
    None
}

/// Starts `scatter mount` on `point` and waits (bounded) until it serves. `Err` with its log
/// when the mount was refused by the system (the caller skips), panics on any other failure.
fn mount(env: &Env, point: &Path, name: &str) -> Result<Mounted, String> {
    std::fs::create_dir_all(point).expect("mountpoint");
    let log = env.path(&format!("{name}.log"));
    let child = Command::new(EXE)
        .arg("mount")
        .arg(point)
        .arg("--cache")
        .arg("16MiB")
        .env("SCATTER_CONFIG", env.grid.client_dir())
        .env("SCATTER_PASSPHRASE", env.grid.passphrase())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn scatter mount");
    let _watchdog = watchdog(child.id());
    let mut m = Mounted { child, point: point.to_path_buf(), log, _watchdog };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if point.join("snapshots").is_dir() {
            return Ok(m);
        }
        if let Ok(Some(status)) = m.child.try_wait() {
            let log = m.log();
            assert!(!log.contains("panicked"), "scatter mount panicked: {log}");
            if log.contains("cannot mount") || log.contains("FUSE") {
                return Err(log);
            }
            panic!("scatter mount exited ({status}) before serving: {log}");
        }
        assert!(Instant::now() < deadline, "the mount did not come up within 60 s: {}", m.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn write_random(path: &Path, len: usize, seed: u64) {
    use rand::{RngCore, SeedableRng};
    let mut data = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    std::fs::write(path, data).expect("write");
}

/// Flips a byte in every shard of at least `min_len` bytes stored on host `i` (bit rot,
/// sizes unchanged).
fn rot_host(env: &Env, i: usize, min_len: u64) -> usize {
    let files: Vec<_> = shard_files(&env.grid.host_dir(i))
        .into_iter()
        .filter(|f| std::fs::metadata(f).is_ok_and(|m| m.len() >= min_len))
        .collect();
    for f in &files {
        let mut bytes = std::fs::read(f).expect("shard");
        let at = bytes.len() / 2;
        bytes[at] ^= 0xff;
        std::fs::write(f, bytes).expect("rot");
    }
    files.len()
}

fn snapshot_id(backup_json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(backup_json).expect("backup JSON");
    v["snapshot_id"].as_str().expect("snapshot id").to_owned()
}

fn diff(a: &Path, b: &Path) -> std::process::Output {
    Command::new("diff").arg("-r").arg("--no-dereference").arg(a).arg(b).output().expect("diff runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mounted_snapshot_is_its_source_tree_and_refuses_writes() {
    if let Some(why) = no_fuse() {
        eprintln!("skipping: FUSE cannot be used here ({why})");
        return;
    }
    let env = grid(6).await;
    let src = env.path("src");
    std::fs::create_dir_all(src.join("nested/deeper/deepest")).expect("mkdir");
    std::fs::create_dir_all(src.join("empty-dir")).expect("mkdir");
    for i in 0..6u64 {
        write_random(&src.join(format!("nested/f{i}.bin")), 30_000 + 7_919 * i as usize, i);
    }
    write_random(&src.join("nested/deeper/deepest/leaf.bin"), 120_000, 10);
    write_random(&src.join("big.bin"), 6 << 20, 11);
    // More entries than one readdir reply holds.
    std::fs::create_dir_all(src.join("many")).expect("mkdir");
    for i in 0..1500 {
        std::fs::write(src.join(format!("many/entry-with-a-longish-name-{i:05}")), i.to_string()).expect("small");
    }
    std::fs::write(src.join("empty"), b"").expect("empty");
    std::fs::write(src.join("notes.txt"), "a few words\n").expect("notes");
    std::os::unix::fs::symlink("nested/deeper/deepest/leaf.bin", src.join("link")).expect("symlink");
    std::fs::set_permissions(src.join("notes.txt"), std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let tagged = xattr::set(src.join("notes.txt"), "user.scatter-test", b"a value").is_ok();
    let own_id = snapshot_id(&env.ok(&["backup", src.to_str().expect("utf-8"), "--json"]));
    let object = env.write_random("object.bin", 300_000, 12);
    env.put(&object, "docs/2026/object.bin");

    // A write-only source (an untrusted appender) commits a newer snapshot with a hostile
    // host name and a set-user-id file.
    let evil = env.path("evil");
    std::fs::create_dir_all(&evil).expect("mkdir");
    std::fs::write(evil.join("tool"), "#!/bin/sh\n").expect("tool");
    std::fs::set_permissions(evil.join("tool"), std::fs::Permissions::from_mode(0o4755)).expect("chmod");
    let laptop = common::appender(&env, "laptop", &[]);
    let args = ["backup", evil.to_str().expect("utf-8"), "--hostname", "../../etc", "--json"];
    let evil_id = snapshot_id(&common::ok(common::run(&laptop, &args, &[]), "appender backup"));

    // A host rots: every shard on it has a flipped byte. Reads rebuild from the others.
    assert!(rot_host(&env, 0, 0) > 0, "host 0 holds shards");

    let point = env.path("mnt");
    let mut m = match mount(&env, &point, "mount1") {
        Ok(m) => m,
        Err(log) => {
            eprintln!("skipping: this machine refuses FUSE mounts: {log}");
            return;
        }
    };
    let rel = src.strip_prefix("/").expect("absolute");
    let mounted = point.join("snapshots/latest").join(rel);
    let out = diff(&src, &mounted);
    assert!(
        out.status.success(),
        "diff -r found differences: {}{}\nmount log: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        m.log()
    );

    // Metadata as recorded.
    let (a, b) = (
        std::fs::metadata(src.join("notes.txt")).expect("a"),
        std::fs::metadata(mounted.join("notes.txt")).expect("b"),
    );
    assert_eq!(
        (a.mode() & 0o7777, a.len(), a.mtime(), a.mtime_nsec()),
        (b.mode() & 0o7777, b.len(), b.mtime(), b.mtime_nsec())
    );
    if tagged {
        let got = xattr::get(mounted.join("notes.txt"), "user.scatter-test").expect("getxattr");
        assert_eq!(got.as_deref(), Some(&b"a value"[..]), "xattrs as recorded");
    }
    assert_eq!(std::fs::metadata(mounted.join("empty")).expect("empty").len(), 0);
    assert_eq!(
        std::fs::read_link(mounted.join("link")).expect("link"),
        PathBuf::from("nested/deeper/deepest/leaf.bin")
    );

    // `latest` points to the one snapshot, named by its commit time.
    let latest = std::fs::read_link(point.join("snapshots/latest")).expect("latest is a symlink");
    let name = latest.to_str().expect("utf-8").to_owned();
    assert!(name.len() == 20 && name.starts_with("20") && name.ends_with('Z'), "{name}");
    assert!(point.join("snapshots").join(&name).join(rel).join("big.bin").is_file());

    // hosts/HOST/TIME and ids/SHORT show the same tree. The hostile host name is one
    // escaped component, and its untrusted snapshot is nobody's `latest`.
    let mut hosts: Vec<String> = std::fs::read_dir(point.join("hosts"))
        .expect("hosts")
        .flatten()
        .map(|e| e.file_name().into_string().expect("utf-8"))
        .collect();
    hosts.sort();
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    assert!(hosts.contains(&"..\\x2f..\\x2fetc".to_owned()), "{hosts:?}");
    assert!(!point.join("hosts/..\\x2f..\\x2fetc/latest").exists(), "an untrusted snapshot is not `latest`");
    let own_host = point.join("hosts").join(hosts.iter().find(|h| !h.contains("x2f")).expect("own host"));
    let by_host = own_host.join(&name).join(rel);
    assert_eq!(
        std::fs::read(by_host.join("big.bin")).expect("by host"),
        std::fs::read(src.join("big.bin")).expect("src")
    );
    assert!(own_host.join("latest").is_symlink());
    let ids: Vec<String> = std::fs::read_dir(point.join("ids"))
        .expect("ids")
        .flatten()
        .map(|e| e.file_name().into_string().expect("utf-8"))
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.iter().all(|id| id.len() == 8 && id.bytes().all(|c| c.is_ascii_hexdigit())), "{ids:?}");
    assert!(diff(&src, &point.join("ids").join(&own_id[..8]).join(rel)).status.success(), "ids/ differs");
    // The untrusted snapshot's set-user-id bit is not shown (nosuid anyway).
    let tool = point.join("ids").join(&evil_id[..8]).join(evil.strip_prefix("/").expect("absolute")).join("tool");
    assert_eq!(std::fs::metadata(&tool).expect("tool").mode() & 0o7777, 0o755);

    // Stored objects by name.
    assert_eq!(
        std::fs::read(point.join("objects/docs/2026/object.bin")).expect("object"),
        std::fs::read(&object).expect("input")
    );

    // Read-only: writing, creating, removing and making folders are refused with EROFS.
    let refused = |r: std::io::Result<()>, what: &str| {
        let e = r.expect_err(what);
        assert_eq!(e.raw_os_error(), Some(EROFS), "{what}: {e}");
    };
    refused(std::fs::write(mounted.join("notes.txt"), b"x"), "overwrite");
    refused(std::fs::write(mounted.join("new.txt"), b"x"), "create");
    refused(std::fs::create_dir(mounted.join("new-dir")), "mkdir");
    refused(std::fs::remove_file(mounted.join("notes.txt")), "unlink");
    refused(std::fs::OpenOptions::new().append(true).open(mounted.join("big.bin")).map(drop), "append");
    assert_eq!(std::fs::read(src.join("notes.txt")).expect("notes"), b"a few words\n");

    // SIGTERM unmounts and exits 0.
    assert_eq!(m.terminate(), Some(0), "exit code on SIGTERM; log: {}", m.log());
    assert!(
        std::fs::read_dir(&point).expect("mountpoint").next().is_none(),
        "the mountpoint is empty again once unmounted"
    );
    drop(m);

    // Four of six hosts rotten in the pack of the backup's file data (its shards are the
    // big ones; trees and the object are in packs of their own, left alone): no copy of the
    // data can be rebuilt. Folders list, files stat, reads fail with EIO (logged once per
    // file), never with other bytes, and the mount goes on serving.
    for i in 1..=4 {
        assert!(rot_host(&env, i, 1 << 20) > 0, "host {i} holds a data shard");
    }
    let m = mount(&env, &point, "mount2").expect("mounted before");
    let mounted = point.join("snapshots/latest").join(rel);
    assert!(std::fs::read_dir(&mounted).expect("trees are intact").count() >= 5);
    assert_eq!(std::fs::read_dir(mounted.join("many")).expect("many").count(), 1500);
    assert_eq!(std::fs::metadata(mounted.join("big.bin")).expect("stat").len(), 6 << 20);
    for _ in 0..2 {
        let e = std::fs::read(mounted.join("big.bin")).expect_err("big.bin cannot be verified");
        assert_eq!(e.raw_os_error(), Some(EIO), "{e}");
    }
    assert_eq!(
        std::fs::read(point.join("objects/docs/2026/object.bin")).expect("the object's pack is intact"),
        std::fs::read(&object).expect("input")
    );
    // `fusermount -u` from outside ends it too, with 0.
    let mut m = m;
    let helper = if on_path("fusermount3") { "fusermount3" } else { "fusermount" };
    let unmounted = Command::new(helper).arg("-u").arg(&point).status().expect("fusermount");
    assert!(unmounted.success(), "fusermount -u");
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(status) = m.child.try_wait().expect("wait") {
            break status.code();
        }
        assert!(Instant::now() < deadline, "scatter mount did not exit after fusermount -u");
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = m.log();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(log.matches("a file could not be read and verified").count(), 1, "logged once: {log}");
    assert!(!log.contains("panicked") && !log.contains("WARN fuser"), "{log}");
}

#[test]
fn a_missing_or_busy_mountpoint_is_one_clear_sentence() {
    let dir = tempfile::tempdir().expect("tmp");
    let run = |point: &Path| {
        let out = Command::new(EXE)
            .arg("mount")
            .arg(point)
            .env("SCATTER_CONFIG", dir.path().join("no-profile"))
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&dir.path().join("nowhere"));
    assert!(err.contains("does not exist") && err.contains("create an empty directory"), "{err}");
    let full = dir.path().join("full");
    std::fs::create_dir_all(&full).expect("mkdir");
    std::fs::write(full.join("file"), b"x").expect("file");
    let err = run(&full);
    assert!(err.contains("is not empty"), "{err}");
    let err = run(&full.join("file"));
    assert!(err.contains("not a directory"), "{err}");
}
