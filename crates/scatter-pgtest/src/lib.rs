//! Test support: a real PostgreSQL server of a test's own.
//!
//! [`TestPg::start`] runs `initdb` in a fresh temp folder, starts `postgres` on a free port
//! of 127.0.0.1 (trust authentication, loopback only) and creates an empty database
//! `scatter`. Dropping the [`TestPg`] stops the server by its process id and removes the
//! folder, also when the test panicked. A small watchdog process stops the server too if
//! the test process ends without dropping it (for example a server kept in a `static`).
//!
//! The PostgreSQL binaries are taken from `$SCATTER_PG_BIN` if set, else from the highest
//! version under `/usr/lib/postgresql/*/bin`, else from the folder of `initdb` on `PATH`.
//! When the tests run as root (as CI does), `initdb` and `postgres` run as the `postgres`
//! system user, since PostgreSQL refuses to run as root.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use tempfile::TempDir;

/// The database superuser `initdb` creates, and the user of [`TestPg::url`].
const SUPERUSER: &str = "scatter";
/// How long a server may take to accept connections after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to stop on SIGINT (fast shutdown) before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `initdb` may take.
const INITDB_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a client command (`pg_isready`, `createdb`, `psql`) may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How many fresh ports [`TestPg::start`] tries when the chosen one got taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

const INSTALL_HINT: &str = "install PostgreSQL (Debian/Ubuntu: `apt-get install postgresql`) \
     or set SCATTER_PG_BIN to the folder holding initdb, postgres, pg_isready, createdb and psql";

/// A PostgreSQL server of a test's own: its data folder in a temp dir, on a free port on
/// 127.0.0.1, stopped (by PID) when dropped.
pub struct TestPg {
    bin: PathBuf,
    port: u16,
    /// The uid and gid the server runs as, when the tests run as root; `None`: as ourselves.
    run_as: Option<(u32, u32)>,
    server: Option<Child>,
    watchdog: Option<Child>,
    /// Server settings (`name=value`) given after the test defaults, so they win.
    settings: Vec<String>,
    /// Last field: removed after the server is stopped.
    dir: TempDir,
}

impl TestPg {
    /// Starts a fresh server with one empty database `scatter`; panics with a clear message
    /// saying how to install PostgreSQL (`apt-get install postgresql`) if its binaries are
    /// not found.
    pub fn start() -> TestPg {
        Self::start_with(&[])
    }

    /// [`TestPg::start`] with server settings (`name=value`, as `postgres -c` takes them)
    /// over the test defaults, which favour speed over durability (`fsync=off`,
    /// `synchronous_commit=off`, `full_page_writes=off`): a benchmark that wants a durable
    /// server turns them back on here, and can size `shared_buffers` or `max_wal_size`.
    pub fn start_with(settings: &[&str]) -> TestPg {
        for s in settings {
            assert!(s.contains('=') && !s.starts_with('='), "scatter-pgtest: a setting is `name=value`, not {s:?}");
        }
        let settings = settings.iter().map(|s| s.to_string()).collect();
        let bin = find_bin_dir();
        let run_as = if rustix::process::geteuid().is_root() { Some(postgres_user()) } else { None };
        let dir =
            tempfile::Builder::new().prefix("scatter-pgtest-").tempdir().expect("scatter-pgtest: create a temp dir");
        fs::create_dir(dir.path().join("sock")).expect("scatter-pgtest: create the socket dir");
        if let Some((uid, gid)) = run_as {
            for path in [dir.path().to_path_buf(), dir.path().join("sock")] {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("scatter-pgtest: chown {} to the postgres user: {e}", path.display()));
            }
        }
        let mut pg = TestPg { bin, port: 0, run_as, server: None, watchdog: None, settings, dir };
        pg.initdb();
        // From here on, a panic drops `pg`, which stops whatever server runs.
        for attempt in 1..=PORT_ATTEMPTS {
            pg.port = free_port();
            match pg.launch() {
                Ok(()) => break,
                Err(Failure::PortTaken) if attempt < PORT_ATTEMPTS => continue,
                Err(failure) => pg.fail("start", failure),
            }
        }
        pg.create_database_named("scatter");
        pg
    }

    /// `postgresql://scatter@127.0.0.1:PORT/scatter` (no password: trust auth on loopback
    /// only, the server listens on 127.0.0.1 only).
    pub fn url(&self) -> String {
        self.database_url("scatter")
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.server.as_ref().map(Child::id).expect("scatter-pgtest: the server is running")
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (fast shutdown, waits for the process) and starts it again on the
    /// same port and data: for tests of reconnection after a PostgreSQL restart.
    pub fn restart(&mut self) {
        self.stop();
        // The port was ours until just now; should someone grab it meanwhile, wait a bit.
        let mut attempt = 1;
        loop {
            match self.launch() {
                Ok(()) => return,
                Err(Failure::PortTaken) if attempt < PORT_ATTEMPTS => {
                    attempt += 1;
                    thread::sleep(Duration::from_millis(500));
                }
                Err(failure) => self.fail("restart", failure),
            }
        }
    }

    /// Creates another empty database on this server and returns its URL (so one server
    /// can serve several independent tests/catalogs). `name`: lower-case ASCII letters,
    /// digits and `_`, starting with a letter, at most 63 bytes.
    pub fn create_database(&self, name: &str) -> String {
        check_database_name(name);
        self.create_database_named(name);
        self.database_url(name)
    }

    fn database_url(&self, name: &str) -> String {
        format!("postgresql://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// A command for a program of the bin dir, with a clean environment (no `PG*` variables
    /// of the caller's leak in), run from the temp dir.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
            .env("HOME", self.dir.path())
            .env("LC_ALL", "C")
            .env("PGCONNECT_TIMEOUT", "10")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        cmd
    }

    /// A command that runs as the server's user (`initdb`, `postgres`).
    fn server_command(&self, program: &str) -> Command {
        let mut cmd = self.command(program);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn initdb(&self) {
        let mut cmd = self.server_command("initdb");
        cmd.arg("-D").arg(self.data_dir()).args([
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        let out =
            run_bounded(cmd, INITDB_TIMEOUT).unwrap_or_else(|e| panic!("scatter-pgtest: initdb: {e}; {INSTALL_HINT}"));
        assert!(
            out.status.success(),
            "scatter-pgtest: initdb failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `postgres` on `self.port` and waits until it accepts connections; on failure
    /// the server is stopped again.
    fn launch(&mut self) -> Result<(), Failure> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("scatter-pgtest: open the server log");
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log_out = log.try_clone().expect("scatter-pgtest: clone the log handle");
        let mut cmd = self.server_command("postgres");
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path().join("sock"))
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ]);
        for setting in &self.settings {
            cmd.arg("-c").arg(setting);
        }
        cmd.stdout(log_out).stderr(log);
        let server = cmd.spawn().unwrap_or_else(|e| {
            panic!("scatter-pgtest: run {}: {e}; {INSTALL_HINT}", self.bin.join("postgres").display())
        });
        self.server = Some(server);
        self.watchdog = self.spawn_watchdog();
        let result = self.wait_ready();
        if let Err(Failure::Exited(_)) = &result {
            let new_log = read_log_from(&self.log_path(), log_start);
            if new_log.contains("could not bind")
                || new_log.contains("Address already in use")
                || new_log.contains("could not create any TCP/IP sockets")
            {
                self.stop();
                return Err(Failure::PortTaken);
            }
        }
        if result.is_err() {
            self.stop();
        }
        result
    }

    fn wait_ready(&mut self) -> Result<(), Failure> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Some(server) = self.server.as_mut() {
                if let Ok(Some(status)) = server.try_wait() {
                    return Err(Failure::Exited(status));
                }
            }
            if Instant::now() > deadline {
                return Err(Failure::Timeout);
            }
            if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                let mut cmd = self.command("pg_isready");
                cmd.args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                    .args(["-U", SUPERUSER, "-d", "postgres", "-t", "5"]);
                if run_bounded(cmd, CLIENT_TIMEOUT).is_ok_and(|out| out.status.success()) {
                    return Ok(());
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// A process that stops the server and removes the temp dir should this test process
    /// end without dropping the [`TestPg`]. `None` if `sh` could not be started.
    fn spawn_watchdog(&self) -> Option<Child> {
        let server = self.server.as_ref()?.id();
        let script = format!(
            "while kill -0 {test} 2>/dev/null; do sleep 1; done; \
             kill -INT {server} 2>/dev/null; i=0; \
             while kill -0 {server} 2>/dev/null && [ $i -lt 20 ]; do sleep 0.5; i=$((i+1)); done; \
             kill -KILL {server} 2>/dev/null; rm -rf -- \"$1\"",
            test = std::process::id(),
        );
        Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .arg("scatter-pgtest-watchdog")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()
    }

    /// Stops the server: SIGINT (fast shutdown), waits at most [`STOP_TIMEOUT`], then
    /// SIGKILL; then ends the watchdog. Never panics.
    fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            stop_process(&mut server, Signal::INT, STOP_TIMEOUT);
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            stop_process(&mut watchdog, Signal::KILL, STOP_TIMEOUT);
        }
    }

    fn create_database_named(&self, name: &str) {
        let mut cmd = self.command("createdb");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]).args(["-U", SUPERUSER, name]);
        let out = run_bounded(cmd, CLIENT_TIMEOUT).unwrap_or_else(|e| panic!("scatter-pgtest: createdb {name}: {e}"));
        assert!(
            out.status.success(),
            "scatter-pgtest: createdb {name} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Panics with the failure and the server's log.
    fn fail(&self, what: &str, failure: Failure) -> ! {
        let why = match failure {
            Failure::PortTaken => "its port stayed taken by another process".to_string(),
            Failure::Exited(status) => format!("the server exited ({status})"),
            Failure::Timeout => format!("not accepting connections after {READY_TIMEOUT:?}"),
        };
        panic!(
            "scatter-pgtest: {what} PostgreSQL on 127.0.0.1:{} failed: {why}; server log:\n{}",
            self.port,
            read_log_from(&self.log_path(), 0)
        );
    }
}

impl Drop for TestPg {
    fn drop(&mut self) {
        self.stop();
        // `dir` (a TempDir) is removed when the fields drop, after this.
    }
}

enum Failure {
    /// The server could not listen on its port.
    PortTaken,
    Exited(ExitStatus),
    Timeout,
}

/// Panics unless `name` is lower-case ASCII letters, digits and `_`, starting with a letter,
/// at most 63 bytes (so it needs no quoting anywhere).
fn check_database_name(name: &str) {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    assert!(
        valid,
        "scatter-pgtest: database name {name:?}: use lower-case ASCII letters, digits and _, \
         starting with a letter, at most 63 bytes"
    );
}

/// Sends `signal` to `child`, waits at most `timeout` for it to exit, then SIGKILLs it and
/// reaps it.
fn stop_process(child: &mut Child, signal: Signal, timeout: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let pid = i32::try_from(child.id()).ok().and_then(Pid::from_raw);
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process(pid, signal);
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `cmd` with captured output; kills it if it takes longer than `timeout`.
fn run_bounded(mut cmd: Command, timeout: Duration) -> Result<Output, String> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let program = cmd.get_program().to_string_lossy().into_owned();
    let child = cmd.spawn().map_err(|e| format!("run {program}: {e}"))?;
    let pid = i32::try_from(child.id()).ok().and_then(Pid::from_raw);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.map_err(|e| format!("wait for {program}: {e}")),
        Err(_) => {
            if let Some(pid) = pid {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
            Err(format!("{program} did not finish within {timeout:?}"))
        }
    }
}

fn read_log_from(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        if file.seek(SeekFrom::Start(offset)).is_ok() {
            let mut bytes = Vec::new();
            let _ = file.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    text
}

/// A port of 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("scatter-pgtest: bind 127.0.0.1:0 to find a free port")
}

/// The folder of the PostgreSQL server binaries.
fn find_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SCATTER_PG_BIN") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("initdb").is_file() && dir.join("postgres").is_file(),
            "scatter-pgtest: SCATTER_PG_BIN={} holds no initdb and postgres; {INSTALL_HINT}",
            dir.display()
        );
        return dir;
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name.split('.').map(str::parse).collect::<Result<Vec<u32>, _>>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| dir.join("initdb").is_file())
        .unwrap_or_else(|| {
            panic!(
                "scatter-pgtest: PostgreSQL not found (no /usr/lib/postgresql/*/bin/initdb, \
                 no initdb on PATH); {INSTALL_HINT}"
            )
        })
}

/// The uid and gid of the `postgres` system user (from /etc/passwd), to run the server as
/// when the tests run as root.
fn postgres_user() -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 4 || fields[0] != "postgres" {
                return None;
            }
            Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
        })
        .unwrap_or_else(|| {
            panic!(
                "scatter-pgtest: running as root, PostgreSQL must run as the `postgres` user, \
                 which /etc/passwd lacks; {INSTALL_HINT} (its package creates that user)"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `sql` with `psql` against `url`; its trimmed output.
    fn psql(pg: &TestPg, url: &str, sql: &str) -> String {
        let mut cmd = pg.command("psql");
        cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", url, "-c", sql]);
        let out = run_bounded(cmd, CLIENT_TIMEOUT).expect("psql runs");
        assert!(out.status.success(), "psql {url} -c {sql:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn alive(pid: u32) -> bool {
        let pid = i32::try_from(pid).ok().and_then(Pid::from_raw).expect("a pid");
        rustix::process::test_kill_process(pid).is_ok()
    }

    #[test]
    fn start_restart_create_database_and_drop() {
        let started = Instant::now();
        let mut pg = TestPg::start();
        let url = pg.url();
        assert_eq!(url, format!("postgresql://scatter@127.0.0.1:{}/scatter", pg.port()));
        assert_eq!(psql(&pg, &url, "select 1"), "1");
        assert_eq!(psql(&pg, &url, "select current_database()"), "scatter");
        psql(&pg, &url, "create table t (x int); insert into t values (42)");

        let first_pid = pg.pid();
        assert!(alive(first_pid));
        pg.restart();
        assert_ne!(pg.pid(), first_pid, "a new server process");
        assert!(!alive(first_pid), "the old server is gone");
        assert_eq!(pg.url(), url, "same port");
        assert_eq!(psql(&pg, &url, "select x from t"), "42", "same data");

        let other = pg.create_database("second_catalog");
        assert_eq!(other, format!("postgresql://scatter@127.0.0.1:{}/second_catalog", pg.port()));
        assert_eq!(psql(&pg, &other, "select current_database()"), "second_catalog");
        assert_eq!(psql(&pg, &other, "select count(*) from pg_tables where tablename = 't'"), "0", "an empty database");

        let pid = pg.pid();
        let dir = pg.dir.path().to_path_buf();
        drop(pg);
        assert!(!alive(pid), "the server is stopped on drop");
        assert!(!dir.exists(), "the temp dir is removed on drop");
        assert!(started.elapsed() < Duration::from_secs(90), "took {:?}", started.elapsed());
    }

    #[test]
    fn servers_are_independent_and_stopped_after_a_panic() {
        let a = TestPg::start();
        let b = TestPg::start();
        assert_ne!(a.port(), b.port());
        psql(&a, &a.url(), "create table only_in_a (x int)");
        assert_eq!(psql(&b, &b.url(), "select count(*) from pg_tables where tablename = 'only_in_a'"), "0");
        let pid = b.pid();
        let panicked = std::panic::catch_unwind(move || {
            let _b = b;
            panic!("a failing test");
        });
        assert!(panicked.is_err());
        assert!(!alive(pid), "the server is stopped when its test panics");
    }

    #[test]
    fn database_names_need_no_quoting() {
        check_database_name("scatter");
        check_database_name("catalog_2");
        for bad in ["", "Bad", "2nd", "bad-name", "x; drop", &"a".repeat(64)] {
            assert!(std::panic::catch_unwind(|| check_database_name(bad)).is_err(), "{bad:?}");
        }
    }
}
