//! The rough edges a new user and an operator hit first, with real processes: a closed pipe,
//! Ctrl-C, log flags, TLS settings that do not agree, hosts that come and go, and what
//! commands report.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common;
use common::*;

/// Waits for `child` at most `secs` seconds (killing it then) and returns its output.
fn wait(mut child: Child, secs: u64, what: &str) -> Output {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// `scatter ARGS` as the grid's user, not waited for.
fn spawn(env: &Env, args: &[&str]) -> Child {
    Command::new(EXE)
        .args(args)
        .env("SCATTER_CONFIG", env.grid.client_dir())
        .env("SCATTER_PASSPHRASE", env.grid.passphrase())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn scatter")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_that_goes_away_ends_listings_quietly() {
    let env = grid(3).await;
    let data = env.path("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    for i in 0..20 {
        std::fs::write(data.join(format!("f{i}")), format!("file {i}\n")).expect("write");
    }
    // A FIFO and a socket are said to be skipped, not left out silently.
    let fifo = Command::new("mkfifo").arg(data.join("fifo")).status().expect("mkfifo");
    assert!(fifo.success());
    let _socket = std::os::unix::net::UnixListener::bind(data.join("socket")).expect("socket");
    let out = env.scatter(&["backup", data.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("fifo is a FIFO") && err.contains("socket is a socket"), "{err}");
    env.ok(&["backup", data.to_str().expect("utf-8")]);
    env.put(&data.join("f1"), "one");

    // A put whose chunks are all stored already reports the code of the packs they are in,
    // not the one it asked for.
    let coded = env.write_random("coded", 50_000, 9);
    let coded = coded.to_str().expect("utf-8");
    env.ok(&["put", coded, "--name", "a", "--data", "2", "--parity", "1"]);
    let out = env.ok(&["put", coded, "--name", "b"]);
    assert!(out.contains("(0 new)") && out.contains("its packs coded 2+1 (1 pack(s))"), "{out}");

    // A dry run says what it would do, not that it removed nothing.
    let out = env.ok(&["forget", "--keep-last", "1", "--dry-run"]);
    assert!(out.contains("Would remove 1 snapshot(s) and keep 1") && !out.contains("0 snapshot(s) removed"), "{out}");
    let snapshots: serde_json::Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).expect("JSON");
    assert_eq!(snapshots.as_array().map(Vec::len), Some(2), "a dry run removes nothing");
    // Nothing to forget, or ids and a policy at once, are command-line mistakes: exit 2.
    for args in [&["forget"][..], &["forget", "latest", "--keep-last", "1"][..]] {
        let out = env.scatter(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.code() == Some(2) && err.contains("give snapshot ids"), "{args:?}: {err}");
    }

    // `get -o -` writes to stdout (and its report to stderr), not to a file named `-`.
    let out = env.scatter(&["get", "one", "-o", "-"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"file 1\n");
    assert!(!Path::new("-").exists());

    // `scatter ls latest | head -1`: the reader is gone before anything is written.
    let dump = ["dump", "latest", data.to_str().expect("utf-8")];
    let (get, completion, man) = (["get", "one", "-o", "-"], ["completion", "bash"], ["man"]);
    for args in
        [&["ls", "latest"][..], &["ls"], &["snapshots"], &["ls", "latest", "--json"], &dump, &get, &completion, &man]
    {
        let mut child = spawn(&env, args);
        drop(child.stdout.take());
        let out = wait(child, 30, "a listing into a closed pipe");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked") && !err.contains("error"), "{args:?} said: {err}");
        // 141 is what a process killed by SIGPIPE returns; not 101 (a panic).
        assert_eq!(out.status.code(), Some(141), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_exits_130_and_says_a_rerun_resumes() {
    let env = grid(3).await;
    let data = env.path("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    for i in 0..4 {
        env.write_random(&format!("data/f{i}"), 2 << 20, i);
    }
    let interrupt = |args: &[&str]| {
        let child = spawn(&env, args);
        // Long enough for the command to be at work (the rate limits keep it there).
        std::thread::sleep(Duration::from_secs(3));
        let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
        assert!(kill.success());
        let out = wait(child, 30, "an interrupted command");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };

    let (code, err) = interrupt(&["backup", data.to_str().expect("utf-8"), "--limit-upload", "256KiB"]);
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("run the same backup again to resume"), "{err}");
    assert!(!err.contains("error"), "{err}");
    env.ok(&["backup", data.to_str().expect("utf-8")]);

    let target = env.path("restored");
    let (code, err) =
        interrupt(&["restore", "latest", "--target", target.to_str().expect("utf-8"), "--limit-download", "256KiB"]);
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("run the same restore again to resume"), "{err}");
}

/// A coordinator alone in `dir` with `args`, its stderr in `dir.log`; returns it and its URL.
fn coordinator(dir: &Path, args: &[&str]) -> (Child, String) {
    let log = std::fs::File::create(dir.with_extension("log")).expect("log file");
    let mut child = Command::new(EXE)
        .args(["coordinator", "--data-dir", dir.to_str().expect("utf-8"), "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn coordinator");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(url) = std::fs::read_to_string(dir.join("url")) {
            if url.ends_with('\n') {
                return (child, url.trim().to_owned());
            }
        }
        assert!(child.try_wait().expect("wait").is_none(), "the coordinator exited; see {}", dir.display());
        assert!(Instant::now() < deadline, "the coordinator did not start within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn log_flags_are_checked_and_logs_to_a_file_carry_no_colour() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (args, vars) in
        [(&["--log-level", "verbose", "status"][..], &[][..]), (&["status"], &[("SCATTER_LOG", "loud")])]
    {
        let out = run(&dir.path().join("none"), args, vars);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {vars:?}: {err}");
        assert!(err.contains("is not a log level"), "{err}");
    }
    let out = run(&dir.path().join("none"), &["--log-format", "xml", "status"], &[]);
    assert_eq!(out.status.code(), Some(2));

    for (name, format) in [("text", "text"), ("json", "json")] {
        let data = dir.path().join(name);
        let (mut child, _) = coordinator(&data, &["--log-format", format]);
        child.kill().expect("kill");
        child.wait().expect("wait");
        let log = std::fs::read_to_string(data.with_extension("log")).expect("log");
        assert!(!log.is_empty(), "{format}: nothing logged");
        assert!(!log.contains('\x1b'), "{format}: colour codes in a log file: {log}");
        if format == "json" {
            for line in log.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                assert!(v["level"].is_string(), "{line}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_settings_that_disagree_are_refused_with_a_sentence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("coordinator");

    // A --public-url clients could not use is refused before anything is written.
    for (args, needle) in [
        (&["--public-url", "http://127.0.0.1:7000"][..], "is plain HTTP, but this coordinator serves TLS"),
        (&["--insecure", "--public-url", "https://127.0.0.1:7000"], "is TLS, but this coordinator serves plain HTTP"),
    ] {
        let out = run(
            &dir.path().join("none"),
            &[&["coordinator", "--data-dir", data.to_str().expect("utf-8"), "--listen", "127.0.0.1:0"], args].concat(),
            &[],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!data.join("url").exists());
    }

    let (mut child, url) = coordinator(&data, &[]);
    let mode = |name: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(data.join(name)).expect("metadata").permissions().mode() & 0o777
    };
    assert_eq!((mode("ca.crt"), mode("ca.key")), (0o644, 0o600), "the certificate is public, the key is not");

    // --insecure with a TLS grid's token: refused, with no warning about running without TLS.
    let token = std::fs::read_to_string(data.join("admin-token")).expect("admin token").trim().to_owned();
    let out = run(&dir.path().join("a"), &["init", "--coordinator", &url, "--token", &token, "--insecure"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("leave out --insecure") && !err.contains("WITHOUT TLS"), "{err}");

    // A token of another grid (another CA fingerprint): the certificate is blamed, not a profile.
    let parsed: scatter_net::Token = token.parse().expect("token");
    let other = scatter_net::Token::new(parsed.secret(), Some(scatter_net::Fingerprint([7; 32]))).expect("token");
    let out = run(&dir.path().join("b"), &["init", "--coordinator", &url, "--token", &other.to_string()], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not from the grid in the token") && !err.contains("profile"), "{err}");

    // Liveness and readiness (the catalog answers), for load balancers and service managers.
    let fp = parsed.ca().expect("a TLS grid's token");
    let http = scatter_net::http_client(Some(fp), scatter_net::Peer::Coordinator).build().expect("client");
    for (path, body) in [("/health", "ok"), ("/ready", "ready")] {
        let reply = http.get(format!("{url}{path}")).send().await.expect(path);
        assert_eq!(reply.status(), 200, "{path}");
        assert_eq!(reply.text().await.expect("body"), body, "{path}");
    }

    child.kill().expect("kill");
    child.wait().expect("wait");
}

/// Waits (up to 20 s) for an event `action` by `actor` in `admin events`.
fn wait_for_event(env: &Env, actor: &str, action: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events: serde_json::Value =
            serde_json::from_str(&env.ok(&["admin", "events", "--json"])).expect("events JSON");
        let seen = events.as_array().expect("events").iter().any(|e| e["actor"] == actor && e["action"] == action);
        if seen {
            return;
        }
        assert!(Instant::now() < deadline, "no {action} event by {actor} within 20 s: {events}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_going_offline_and_coming_back_leave_a_trace() {
    let mut env = grid(3).await;
    let (id, _) = host(&env, 2);
    env.grid.kill_host(2);
    wait_for_event(&env, &id.to_string(), "host.offline");
    env.grid.start_host(2).expect("restart");
    wait_for_event(&env, &id.to_string(), "host.online");
    let log = std::fs::read_to_string(env.path("grid/coordinator.log")).expect("coordinator log");
    assert!(log.contains("host.offline") && log.contains("host.online"), "{log}");

    // A host that loses the coordinator says so once (not at every 1 s heartbeat), then that
    // its heartbeats get through again.
    let host_log = env.path("grid/host-0.log");
    let failures = |text: &str| text.lines().filter(|l| l.contains("heartbeat failed")).count();
    let before = failures(&std::fs::read_to_string(&host_log).expect("host log"));
    env.grid.kill_coordinator();
    std::thread::sleep(Duration::from_secs(6));
    env.grid.start_coordinator().expect("coordinator restarts");
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = std::fs::read_to_string(&host_log).expect("host log");
        if text.contains("heartbeats reach the coordinator again") {
            break text;
        }
        assert!(Instant::now() < deadline, "the host never said it was back: {text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(failures(&text) - before, 1, "{text}");
}

/// The amounts a bar of 3 MiB showed (`1.25 MiB` of `1.25 MiB/3.00 MiB`) strictly between
/// none and all of it.
fn amounts_between(text: &str) -> std::collections::HashSet<String> {
    text.split(['\r', '\n'])
        .filter_map(|line| line.split_once("/3.00 MiB"))
        .filter_map(|(before, _)| {
            let words: Vec<&str> = before.split_whitespace().rev().take(2).collect();
            let shown = words.into_iter().rev().collect::<Vec<_>>().join(" ");
            (is_size(&shown) && shown != "0 B" && shown != "3.00 MiB").then_some(shown)
        })
        .collect()
}

/// Whether `shown` is a size as the bar prints it (`512.00 KiB`).
fn is_size(shown: &str) -> bool {
    matches!(shown.split_once(' '), Some((n, "B" | "KiB" | "MiB")) if n.parse::<f64>().is_ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_bar_moves_while_packs_download() {
    let env = grid(3).await;
    let data = env.path("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    env.write_random("data/big", 3 << 20, 5);
    env.ok(&["backup", data.to_str().expect("utf-8")]);
    // On a terminal (script(1) gives it one), slowed down to about 3 s.
    let target = env.path("restored");
    let command = format!("{EXE} restore latest --target {} --limit-download 1MiB", target.to_str().expect("utf-8"));
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("SCATTER_CONFIG", env.grid.client_dir())
        .env("SCATTER_PASSPHRASE", env.grid.passphrase())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script");
    let out = wait(out, 50, "a restore on a terminal");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // The bar shows "DONE/TOTAL" (`1.25 MiB/3.00 MiB`): it moves as bytes arrive, not only
    // once per decoded chunk (about 1 MiB each) after sitting at "0 B/3.00 MiB".
    let between = amounts_between(&text);
    assert!(between.len() >= 5, "the bar hardly moved ({between:?}): {text:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_bar_is_full_only_once_the_data_is_on_the_grid() {
    use std::io::Read;
    let env = grid(3).await;
    let data = env.path("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    env.write_random("data/big", 3 << 20, 6);
    // On a terminal (script(1) gives it one); uploads slowed down to several seconds, while
    // reading takes milliseconds.
    let command = format!("{EXE} backup {} --limit-upload 1MiB", data.to_str().expect("utf-8"));
    let started = Instant::now();
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("SCATTER_CONFIG", env.grid.client_dir())
        .env("SCATTER_PASSPHRASE", env.grid.passphrase())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("script");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        // When the bar first shows the whole 3 MiB done.
        let (mut seen, mut full) = (Vec::new(), None);
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen);
            if full.is_none() && text.contains("3.00 MiB/3.00 MiB") {
                full = Some(Instant::now());
            }
        }
        (full, String::from_utf8_lossy(&seen).into_owned())
    });
    let out = wait(child, 50, "a backup on a terminal");
    let ended = Instant::now();
    let (full, text) = reader.join().expect("reader");
    assert!(out.status.success(), "{text}");
    assert!(ended - started > Duration::from_secs(3), "too fast to tell: {text:?}");
    // The bar moves with the upload: several amounts between none and all of it.
    let between = amounts_between(&text);
    // (Two at least: with 2+1 shards, it moves as each of the first two is stored.)
    assert!(between.len() >= 2, "the bar hardly moved ({between:?}): {text:?}");
    assert!(!text.contains("0 B/3.00 MiB 0 B/s ETA"), "an ETA before anything moved: {text:?}");
    // Full means stored: not for the seconds the upload still takes. (The ETA is
    // indicatif's estimate from the rate so far; it is shown only once something moved.)
    let full = full.expect("the bar never showed all 3 MiB backed up");
    assert!(ended - full < Duration::from_millis(1500), "full {:?} before the end: {text:?}", ended - full);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_restore_continues_the_file_it_was_writing() {
    let env = grid(3).await;
    let data = env.path("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    // Four packs: the first ones arrive (and are written) while the last is on its way.
    let size = 64u64 << 20;
    let original = env.write_random("data/big", size as usize, 7);
    env.ok(&["backup", data.to_str().expect("utf-8")]);
    let target = env.path("restored");
    let dir = target.join(data.strip_prefix("/").expect("absolute"));
    let partial = dir.join(".big.scatter-partial");

    // Interrupted once several MiB of the file are written.
    let mut child =
        spawn(&env, &["restore", "latest", "--target", target.to_str().expect("utf-8"), "--limit-download", "8MiB"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) < 6 << 20 {
        assert!(Instant::now() < deadline, "the restore wrote too little within 60 s");
        assert!(child.try_wait().expect("wait").is_none(), "the restore ended before it could be interrupted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(kill.success());
    let out = wait(child, 30, "an interrupted restore");
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let kept = std::fs::metadata(&partial).expect("the partial file is kept for the rerun").len();
    assert!(!dir.join("big").exists(), "a partial file is never visible under its name");

    // Damage inside what was written: only the verified chunks before it are kept.
    {
        use std::io::{Seek, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&partial).expect("open");
        f.seek(std::io::SeekFrom::Start(kept - 1)).expect("seek");
        f.write_all(&[0x55]).expect("write");
    }
    let report: serde_json::Value =
        serde_json::from_str(&env.ok(&["restore", "latest", "--target", target.to_str().expect("utf-8"), "--json"]))
            .expect("json");
    let resumed = report["bytes_resumed"].as_u64().expect("bytes_resumed");
    assert!(resumed >= 2 << 20 && resumed < kept, "kept {kept}, resumed {resumed}: {report}");
    assert_eq!(report["bytes_written"].as_u64(), Some(size - resumed), "{report}");
    assert_eq!(std::fs::read(dir.join("big")).expect("restored"), std::fs::read(&original).expect("original"));
    assert!(!partial.exists());

    // A planted partial that is a symlink to elsewhere is neither read nor written through.
    std::fs::remove_file(dir.join("big")).expect("rm");
    let outside = env.path("outside");
    std::fs::copy(&original, &outside).expect("cp");
    std::os::unix::fs::symlink(&outside, &partial).expect("symlink");
    let report: serde_json::Value =
        serde_json::from_str(&env.ok(&["restore", "latest", "--target", target.to_str().expect("utf-8"), "--json"]))
            .expect("json");
    assert_eq!(report["bytes_resumed"].as_u64(), Some(0), "{report}");
    assert_eq!(std::fs::read(&outside).expect("outside"), std::fs::read(&original).expect("original"));
    assert_eq!(std::fs::read(dir.join("big")).expect("restored"), std::fs::read(&original).expect("original"));
}

/// A tmpfs of `size` mounted on `dir`, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).expect("mkdir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", dir.to_str().expect("utf-8")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").args(["-l", self.0.to_str().unwrap_or("")]).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_that_cannot_fit_says_so_before_fetching() {
    let env = grid(3).await;
    let data = env.path("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    env.write_random("data/big", 8 << 20, 8);
    env.ok(&["backup", data.to_str().expect("utf-8")]);
    let small = env.path("small");
    let Some(_tmpfs) = Tmpfs::mount(&small, "4m") else {
        eprintln!("skipping: cannot mount a tmpfs here (not root, or no mount permission)");
        return;
    };
    let out = env.scatter(&["restore", "latest", "--target", small.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("4.0 MiB free") && err.contains("needs at least 8.0 MiB more"), "{err}");
    assert!(!err.contains("scatter-partial") && !err.contains("os error"), "{err}");
    // So does a get, with the object's size (it said 0 B free and the last chunk's size,
    // once the disk was full), and it leaves nothing behind.
    env.put(&data.join("big"), "big");
    let out = env.scatter(&["get", "big", "-o", small.join("big").to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("4.0 MiB free") && err.contains("needs at least 8.0 MiB more"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&small).expect("read_dir").flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Mistakes a new user made, each told in one sentence with what to do instead of an OS
/// error's words (`No such file or directory (os error 2)`), and usage mistakes with exit 2.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_users_mistakes_are_told_with_what_to_do() {
    let env = grid(3).await;
    let missing = env.path("Docments");
    let err = env.fails(&["backup", missing.to_str().expect("utf-8")]);
    assert!(err.contains("does not exist") && err.contains("check the path") && !err.contains("os error"), "{err}");
    let dir = env.path("src");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("a.txt"), b"a").expect("write");
    let err = env.fails(&["put", dir.to_str().expect("utf-8")]);
    assert!(err.contains("is a folder") && err.contains("scatter backup"), "{err}");
    env.put(&dir.join("a.txt"), "a");
    let nowhere = env.path("nodir/x");
    let err = env.fails(&["get", "a", "--output", nowhere.to_str().expect("utf-8")]);
    assert!(err.contains("does not exist") && err.contains("mkdir -p") && !err.contains("os error"), "{err}");
    env.ok(&["backup", dir.to_str().expect("utf-8")]);
    let err = env.fails(&["restore", "latest:src/a.txt", "--target", env.path("out").to_str().expect("utf-8")]);
    assert!(err.contains("is not in the snapshot") && err.contains("scatter ls"), "{err}");
    let out = env.scatter(&["admin", "billing", "--period", "2026-13"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let out = env.ok(&["find", "a.txt"]);
    assert!(out.contains("1 match(es) in 1 of the 1 snapshot(s) searched"), "{out}");
}
