//! The services' config files (`scatter coordinator --config FILE`, `scatter host --config
//! FILE`), with real processes: a grid started from config files alone stores and returns a
//! file; flags win over the file; unknown keys, wrong types and secrets readable by others
//! are refused with one sentence naming the key or the fix; the shipped examples parse.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use scatter_cli::grid::GridOptions;

/// The repository's root (the example configs and units are under `contrib/`).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Writes a config file with `mode`.
fn write_config(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write config");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A process killed (by its PID) when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `scatter ARGS` with the extra variables, bounded in time: a service that starts
/// instead of refusing its settings is killed after 30 s and the test fails.
fn scatter(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(common::EXE);
    cmd.args(args)
        .env_remove("SCATTER_JOIN_TOKEN")
        .env_remove("SCATTER_CATALOG")
        .env_remove("SCATTER_LOG")
        .env_remove("SCATTER_LOG_FORMAT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = Running(cmd.spawn().expect("spawn scatter"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.0.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "scatter {args:?} did not exit within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let Running(inner) = &mut child;
    let mut out = Output { status: inner.wait().expect("status"), stdout: Vec::new(), stderr: Vec::new() };
    use std::io::Read;
    inner.stdout.take().expect("stdout").read_to_end(&mut out.stdout).expect("read stdout");
    inner.stderr.take().expect("stderr").read_to_end(&mut out.stderr).expect("read stderr");
    out
}

/// The stderr of a command that must be refused as a usage error (exit 2) without a panic.
fn refused(args: &[&str]) -> String {
    let out = scatter(args, &[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "scatter {args:?} should be refused with exit 2: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// The stdout of `--check-config`, which must succeed.
fn checked(args: &[&str], vars: &[(&str, &str)]) -> String {
    let out = scatter(args, vars);
    assert!(out.status.success(), "scatter {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The line of `--check-config`'s output for `key`.
fn line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap_or_else(|| panic!("no {key} in:\n{out}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grid_started_from_config_files_alone_stores_and_returns_a_file() {
    let opts = GridOptions {
        passphrase: "test passphrase".into(),
        config_files: true,
        // The third host's zone is in its file and, differently, on its command line.
        host_args: vec![vec![], vec![], vec!["--zone".into(), "from-the-flag".into()]],
        ..Default::default()
    };
    let env = common::grid_with(3, opts).await;
    let dir = env.dir.path().join("grid");

    // Nothing but --config on the command lines (but the one flag above).
    let cmdline = |pid: u32| -> Vec<String> {
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
        raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
    };
    let coordinator = cmdline(env.grid.coordinator_pid().expect("coordinator runs"));
    assert_eq!(coordinator[1..], ["coordinator", "--config", &dir.join("coordinator.toml").to_string_lossy()]);
    let host = cmdline(env.grid.host_pid(0).expect("host runs"));
    assert_eq!(host[1..], ["host", "--config", &dir.join("host-0.toml").to_string_lossy()]);
    let host_file = std::fs::read_to_string(dir.join("host-0.toml")).expect("host-0.toml");
    assert!(host_file.contains("join-token = ") && host_file.contains("capacity = "), "{host_file}");

    // It works: a put and a get through them.
    let input = env.write_random("input", 300_000, 7);
    env.put(&input, "from-config");
    env.get_and_compare("from-config", &input);

    // The flag won over the file.
    let status: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--json"])).expect("json");
    let mut zones: Vec<String> = status["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| h["zone"].as_str().expect("zone").to_owned())
        .collect();
    zones.sort();
    assert_eq!(zones, ["from-the-flag", "zone-0", "zone-1"], "{status}");

    // The startup lines name the file read.
    let log = std::fs::read_to_string(dir.join("coordinator.log")).expect("log");
    let file = dir.join("coordinator.toml");
    assert!(log.contains("coordinator listening") && log.contains(&format!("config={}", file.display())), "{log}");
    let log = std::fs::read_to_string(dir.join("host-1.log")).expect("log");
    assert!(log.contains(&format!("config={}", dir.join("host-1.toml").display())), "{log}");
}

#[test]
fn flags_and_variables_win_over_the_file_and_check_config_says_where_each_setting_comes_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("host.toml");
    write_config(
        &file,
        "data-dir = \"/srv/scatter\"\ncoordinator = [\"https://a.example:7000\", \"https://b.example:7000\"]\n\
         join-token = \"sjt_from_the_file\"\ncapacity = \"1TiB\"\nzone = \"rack-file\"\nprice = 0.5\n\
         until = 2099-06-30\ninsecure = true\nlog-format = \"json\"\n",
        0o600,
    );
    let f = file.to_str().expect("utf-8");
    let out = checked(
        &["host", "--config", f, "--zone", "rack-flag", "--check-config"],
        &[("SCATTER_JOIN_TOKEN", "sjt_from_the_environment"), ("SCATTER_LOG_FORMAT", "text")],
    );
    assert!(out.starts_with(&format!("# scatter host: the settings it would run with (config file {f})")), "{out}");
    assert!(line(&out, "zone").contains("\"rack-flag\"") && line(&out, "zone").ends_with("# command line"), "{out}");
    assert!(line(&out, "capacity").contains("\"1TiB\"") && line(&out, "capacity").ends_with("# config file"));
    assert!(line(&out, "coordinator").contains("\"https://a.example:7000,https://b.example:7000\""), "{out}");
    assert!(line(&out, "price").contains("\"0.5\""), "{out}");
    assert!(line(&out, "until").contains("\"2099-06-30\""), "{out}");
    assert!(line(&out, "insecure").contains("= true"), "{out}");
    assert!(line(&out, "heartbeat").contains("\"10s\"") && line(&out, "heartbeat").ends_with("# default"));
    // The environment wins over the file; secrets are not printed.
    assert!(line(&out, "join-token").contains("<hidden>") && line(&out, "join-token").ends_with("# environment"));
    assert!(line(&out, "log-format").contains("\"text\"") && line(&out, "log-format").ends_with("# environment"));
    assert!(!out.contains("sjt_"), "{out}");

    // The coordinator's secret is hidden too.
    let file = dir.path().join("coordinator.toml");
    write_config(&file, "data-dir = \"/srv\"\ncatalog = \"postgresql://scatter:hunter2@db/scatter\"\n", 0o600);
    let out = checked(&["coordinator", "--config", file.to_str().expect("utf-8"), "--check-config"], &[]);
    assert!(line(&out, "catalog").contains("<hidden>") && !out.contains("hunter2"), "{out}");
}

#[test]
fn unknown_keys_wrong_types_and_bad_values_are_refused_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("coordinator.toml");
    let f = file.to_str().expect("utf-8");
    for (text, said) in [
        ("data-dir = \"/srv\"\nlisten-on = \"0.0.0.0:7000\"\n", "unknown key `listen-on` in the config file"),
        ("data-dir = \"/srv\"\nlisen = \"0.0.0.0:7000\"\n", "unknown key `lisen` (did you mean `listen`?)"),
        ("data-dir = \"/srv\"\norphan_grace = \"2h\"\n", "unknown key `orphan_grace` (write `orphan-grace`"),
        ("data-dir = \"/srv\"\ninsecure = \"yes\"\n", "`insecure` in the config file"),
        ("data-dir = \"/srv\"\ntolerate = true\n", "`tolerate` in the config file"),
        ("data-dir = \"/srv\"\noffline-after = \"soon\"\n", "`offline-after` in the config file"),
        ("data-dir = \"/srv\"\ntolerate = 99\n", "`tolerate` in the config file"),
        ("data-dir = \"/srv\"\nlog-format = \"xml\"\n", "`log-format` in the config file"),
        ("data-dir = \"/srv\"\nlog-level = \"verbose\"\n", "`log-level` in the config file"),
        ("data-dir = \"/srv\"\n[coordinator]\nlisten = \"x\"\n", "`[coordinator]` is a section"),
        ("data-dir = /srv\n", "is not valid TOML (line 1)"),
    ] {
        write_config(&file, text, 0o644);
        let err = refused(&["coordinator", "--config", f]);
        assert!(err.contains(said) && err.contains(f), "{text}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
    }
    // What the file lacks is said as such.
    write_config(&file, "listen = \"127.0.0.1:0\"\n", 0o644);
    let err = refused(&["host", "--config", f]);
    assert!(err.contains("lacks") && err.contains("`data-dir`") && err.contains("`capacity`"), "{err}");
    // A file that is not there.
    let err = refused(&["host", "--config", "/nonexistent/host.toml"]);
    assert!(err.contains("cannot read the config file /nonexistent/host.toml"), "{err}");
}

#[test]
fn a_file_holding_a_secret_must_be_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("host.toml");
    let f = file.to_str().expect("utf-8");
    let text = "data-dir = \"/srv\"\ncoordinator = \"https://c:7000\"\njoin-token = \"sjt_x\"\ncapacity = \"1GiB\"\n";
    for mode in [0o644, 0o640, 0o604] {
        write_config(&file, text, mode);
        let err = refused(&["host", "--config", f, "--check-config"]);
        assert!(err.contains(&format!("run `chmod 600 {f}`")) && err.contains("`join-token`"), "{mode:o}: {err}");
    }
    write_config(&file, text, 0o600);
    checked(&["host", "--config", f, "--check-config"], &[]);
    // The same settings without the token (it comes from the environment) need no rule.
    write_config(&file, "data-dir = \"/srv\"\ncoordinator = \"https://c:7000\"\ncapacity = \"1GiB\"\n", 0o644);
    checked(&["host", "--config", f, "--check-config"], &[("SCATTER_JOIN_TOKEN", "sjt_x")]);
    // A catalog URL (its password) is a secret as well.
    let file = dir.path().join("coordinator.toml");
    write_config(&file, "data-dir = \"/srv\"\ncatalog = \"postgresql://u:p@db/scatter\"\n", 0o644);
    let err = refused(&["coordinator", "--config", file.to_str().expect("utf-8")]);
    assert!(err.contains("chmod 600") && err.contains("`catalog`"), "{err}");
}

#[test]
fn the_shipped_examples_parse_and_name_every_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    for service in ["coordinator", "host"] {
        let shipped = repo().join(format!("contrib/config/{service}.toml"));
        let text = std::fs::read_to_string(&shipped).expect("example");
        // Installed as the units say: private to the service's user.
        let file = dir.path().join(format!("{service}.toml"));
        write_config(&file, &text, 0o600);
        let out = checked(&[service, "--config", file.to_str().expect("utf-8"), "--check-config"], &[]);
        assert!(line(&out, "data-dir").ends_with("# config file"), "{out}");

        // Every long flag of the service is in the example, set or commented out.
        let help = scatter(&[service, "--help"], &[]);
        let help = String::from_utf8_lossy(&help.stdout).into_owned();
        let flags: Vec<&str> = help
            .lines()
            .filter_map(|l| {
                l.trim_start().split_once("--").filter(|(before, _)| before.is_empty() || before.ends_with(", "))
            })
            .filter_map(|(_, rest)| rest.split([' ', '=', '<']).next())
            .filter(|f| {
                !["help", "version", "config", "check-config", "stats"].contains(f) && !f.starts_with("passphrase")
            })
            .collect();
        assert!(flags.contains(&"data-dir") && flags.contains(&"log-level"), "{flags:?}");
        for flag in flags {
            let set = text.lines().any(|l| l.trim_start_matches('#').starts_with(&format!("{flag} = ")));
            assert!(set, "{} does not mention `{flag}`", shipped.display());
        }
    }
    // The example host file holds the join token: as checked out (not private), refused.
    let file = dir.path().join("host-0644.toml");
    write_config(&file, &std::fs::read_to_string(repo().join("contrib/config/host.toml")).expect("example"), 0o644);
    let err = refused(&["host", "--config", file.to_str().expect("utf-8"), "--check-config"]);
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    if Command::new("systemd-analyze").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        eprintln!("skipped: systemd-analyze is not installed (apt-get install systemd)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let units = repo().join("contrib/systemd");
    let mut paths = Vec::new();
    // The templates as one instance; ExecStart= pointed at this build (the binary must exist).
    for (name, as_name) in [
        ("scatter-coordinator.service", "scatter-coordinator.service"),
        ("scatter-host.service", "scatter-host.service"),
        ("scatter-backup@.service", "scatter-backup@test.service"),
        ("scatter-backup@.timer", "scatter-backup@test.timer"),
    ] {
        let text = std::fs::read_to_string(units.join(name)).expect("unit");
        assert!(text.contains("/usr/local/bin/scatter ") || name.ends_with(".timer"), "{name}");
        let path = dir.path().join(as_name);
        std::fs::write(&path, text.replace("/usr/local/bin/scatter", common::EXE)).expect("write unit");
        paths.push(path);
    }
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).args(&paths).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "systemd-analyze verify: {err}");
    // Every service unit is confined the same basic way.
    for name in ["scatter-coordinator.service", "scatter-host.service", "scatter-backup@.service"] {
        let text = std::fs::read_to_string(units.join(name)).expect("unit");
        for line in ["NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "StateDirectory="] {
            assert!(text.lines().any(|l| l.starts_with(line)), "{name} lacks {line}");
        }
    }
}
