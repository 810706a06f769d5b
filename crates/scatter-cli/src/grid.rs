//! A local grid of real `scatter` processes on 127.0.0.1: one coordinator and N hosts, each a
//! child process with its own data directory and log file. Used by `scatter dev`,
//! `scatter demo` and the integration tests. Every process is killed (by PID) on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use scatter_client::profile::{self, Profile};
use scatter_proto::api::HostState;

/// Settings that are secrets, and the variables that carry them in their place.
const SECRET_FLAGS: &[(&str, &str)] = &[("--join-token", "SCATTER_JOIN_TOKEN")];

/// How the grid's processes run.
#[derive(Debug, Clone)]
pub struct GridOptions {
    /// Capacity each host offers.
    pub capacity: String,
    /// Capacities of the first hosts, when they differ from `capacity`.
    pub capacities: Vec<String>,
    /// Zones hosts are spread over, round robin.
    pub zones: usize,
    /// Heartbeat period of hosts.
    pub heartbeat: String,
    /// Offline grace at the coordinator.
    pub offline_after: String,
    /// Lifetime of write sessions without keepalive.
    pub session_ttl: String,
    /// Period of the coordinator's repair checker.
    pub checker_interval: String,
    /// Age at which unknown shards on hosts are deleted.
    pub orphan_grace: String,
    /// How long deleted data's shards stay on hosts (a second by default: tests see
    /// deletions at once).
    pub release_grace: String,
    /// Passphrase of the grid's first user.
    pub passphrase: String,
    /// Run without TLS (`--insecure` on every process).
    pub insecure: bool,
    /// More flags for the coordinator (e.g. `--tolerate 1`).
    pub coordinator_args: Vec<String>,
    /// More flags for each of the first hosts (e.g. `--price 2`).
    pub host_args: Vec<Vec<String>>,
    /// URLs of other coordinators, listed before this grid's own in every host's
    /// `--coordinator` (one nobody listens on, say, to see hosts fail over past it).
    pub other_coordinators: Vec<String>,
    /// Start the coordinator and the hosts with `--config FILE` alone: their settings (all
    /// but `coordinator_args` and `host_args`, which stay flags) are written to
    /// `coordinator.toml` and `host-N.toml` (mode 0600) in the grid's directory.
    pub config_files: bool,
    /// What the grid's processes log (`SCATTER_LOG`); by default this process's
    /// `SCATTER_LOG`, else `info`.
    pub log: Option<String>,
}

impl Default for GridOptions {
    fn default() -> Self {
        Self {
            capacity: "20GiB".into(),
            capacities: Vec::new(),
            zones: 3,
            heartbeat: "1s".into(),
            offline_after: "4s".into(),
            session_ttl: "6s".into(),
            checker_interval: "2s".into(),
            orphan_grace: "20s".into(),
            release_grace: "1s".into(),
            passphrase: "scatter-dev".into(),
            insecure: false,
            coordinator_args: Vec::new(),
            host_args: Vec::new(),
            other_coordinators: Vec::new(),
            config_files: false,
            log: None,
        }
    }
}

/// A running local grid.
pub struct Grid {
    exe: PathBuf,
    dir: PathBuf,
    opts: GridOptions,
    coordinator: Option<Child>,
    coordinator_listen: String,
    hosts: Vec<Option<Child>>,
    host_listen: Vec<String>,
    /// Capacity per host when it differs from the options'.
    capacities: Vec<Option<String>>,
    /// Join token and extra flags of hosts added with [`Grid::add_host`].
    added: Vec<Option<(String, Vec<String>)>>,
    url: String,
    join_token: String,
    /// Set by [`Grid::start`] once the first user is registered.
    profile: Option<Profile>,
    /// That user's recovery code, while it is unused.
    recovery_code: Option<String>,
}

fn wait_for_file(path: &Path, child: &mut Child, what: &str, log: &Path) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with('\n') {
                return Ok(text.trim().to_owned());
            }
        }
        if let Some(status) = child.try_wait()? {
            bail!("the {what} exited ({status}) before it was ready; see {}", log.display());
        }
        if Instant::now() > deadline {
            bail!("the {what} did not become ready within 30 s; see {}", log.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes `text` to `path`, readable by its owner only, whole or not at all: scripts poll for
/// these files and read them as soon as they exist.
pub fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let mut file = open.open(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// An address on 127.0.0.1 with a port that is free now and that a process can be restarted
/// on later: a port from the kernel's ephemeral range, once its listener is gone, may be taken
/// at any moment as the source port of some other process's outgoing connection, so ports
/// are picked below that range, in turn from a random start (no two picks of one process
/// collide). `127.0.0.1:0` when the range leaves no room below it.
fn restartable_address() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    const FIRST: u32 = 10_000;
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = ephemeral.saturating_sub(FIRST).min(u32::from(u16::MAX) - FIRST);
    if span < 1_000 {
        return "127.0.0.1:0".into();
    }
    let next = NEXT.get_or_init(|| AtomicU32::new(rand::random::<u32>() % span));
    for _ in 0..256 {
        let port = FIRST + next.fetch_add(1, Ordering::Relaxed) % span;
        if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return format!("127.0.0.1:{port}");
        }
    }
    "127.0.0.1:0".into()
}

/// `HOST:PORT` of a URL, to restart a process on the same address.
fn listen_address(url: &str) -> String {
    url.trim_start_matches("https://").trim_start_matches("http://").to_owned()
}

impl Grid {
    /// Starts a coordinator and `hosts` hosts under `dir`, registers the first user (profile
    /// in `dir/client`) and waits until every host is online.
    pub async fn start(exe: &Path, dir: &Path, hosts: usize, opts: GridOptions) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let capacities = (0..hosts).map(|i| opts.capacities.get(i).cloned()).collect();
        let mut grid = Grid {
            exe: exe.to_owned(),
            dir: dir.to_owned(),
            opts,
            coordinator: None,
            coordinator_listen: restartable_address(),
            hosts: (0..hosts).map(|_| None).collect(),
            host_listen: (0..hosts).map(|_| restartable_address()).collect(),
            capacities,
            added: vec![None; hosts],
            url: String::new(),
            join_token: String::new(),
            profile: None,
            recovery_code: None,
        };
        grid.start_coordinator()?;
        let cdir = grid.coordinator_dir();
        grid.join_token = std::fs::read_to_string(cdir.join("join-token"))?.trim().to_owned();
        let admin = std::fs::read_to_string(cdir.join("admin-token"))?;
        let insecure = grid.opts.insecure;
        let urls = grid.url.parse().with_context(|| format!("the coordinator wrote a bad URL: {}", grid.url))?;
        let client = grid.client_dir();
        let registered =
            profile::init(&client, &urls, admin.trim(), &grid.opts.passphrase, None, insecure, None).await?;
        grid.recovery_code = match registered.code {
            profile::CodeState::New(code) => Some(code),
            _ => None,
        };
        grid.profile = Some(registered.profile);
        for i in 0..hosts {
            grid.start_host(i)?;
        }
        grid.wait_online(hosts, Duration::from_secs(30)).await?;
        Ok(grid)
    }

    /// The disaster of losing the source machine: deletes the client's profile folder (keys
    /// and device key included), then gets everything back on a fresh one with the passphrase
    /// and the recovery code alone. The new device is registered; its new code is kept.
    pub async fn lose_and_recover_profile(&mut self) -> Result<()> {
        let code = self.recovery_code.take().context("the grid's user has no recovery code")?;
        let client = self.client_dir();
        std::fs::remove_dir_all(&client).with_context(|| format!("cannot remove {}", client.display()))?;
        let urls = self.url.parse().with_context(|| format!("the coordinator wrote a bad URL: {}", self.url))?;
        let done = profile::init(&client, &urls, &code, &self.opts.passphrase, None, self.opts.insecure, None).await?;
        anyhow::ensure!(done.keys_open, "the passphrase does not open the recovered key file");
        if let profile::CodeState::New(code) = done.code {
            self.recovery_code = Some(code);
        }
        self.profile = Some(done.profile);
        Ok(())
    }

    /// The grid's user's recovery code, while it is unused.
    pub fn recovery_code(&self) -> Option<&str> {
        self.recovery_code.as_deref()
    }

    /// The coordinator's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The first user's profile.
    pub fn profile(&self) -> &Profile {
        self.profile.as_ref().expect("Grid::start registers the first user before it returns")
    }

    /// The first user's configuration directory (use as `SCATTER_CONFIG`).
    pub fn client_dir(&self) -> PathBuf {
        self.dir.join("client")
    }

    /// The coordinator's data directory.
    pub fn coordinator_dir(&self) -> PathBuf {
        self.dir.join("coordinator")
    }

    /// Host `i`'s data directory.
    pub fn host_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("host-{i}"))
    }

    /// The passphrase of the first user.
    pub fn passphrase(&self) -> &str {
        &self.opts.passphrase
    }

    /// Number of hosts (running or not).
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// Starts `scatter SERVICE SETTINGS EXTRA`, where `settings` are `--KEY VALUE` pairs: as
    /// flags, or with [`GridOptions::config_files`] written to `NAME.toml` in the grid's
    /// directory and given as `--config` alone. Secrets among them ([`SECRET_FLAGS`]) are
    /// passed in the environment instead of as flags.
    fn spawn(&self, service: &str, name: &str, settings: &[&str], extra: &[&str], log: &Path) -> Result<Child> {
        let mut args = vec![service.to_owned()];
        let mut secrets = Vec::new();
        if self.opts.config_files {
            let mut table = toml::Table::new();
            for pair in settings.chunks(2) {
                if let [key, value] = pair {
                    table.insert(key.trim_start_matches("--").to_owned(), toml::Value::from(*value));
                }
            }
            if self.opts.insecure {
                table.insert("insecure".into(), toml::Value::Boolean(true));
            }
            let path = self.dir.join(format!("{name}.toml"));
            write_private(&path, &toml::to_string(&table)?)?;
            args.extend(["--config".to_owned(), path.to_string_lossy().into_owned()]);
        } else {
            // A secret goes in the environment, not on a command line anyone can read in `ps`.
            for pair in settings.chunks(2) {
                match SECRET_FLAGS.iter().find(|(flag, _)| pair[0] == *flag) {
                    Some((_, var)) => secrets.extend(pair.get(1).map(|value| (*var, *value))),
                    None => args.extend(pair.iter().map(|s| s.to_string())),
                }
            }
            args.extend(self.opts.insecure.then(|| "--insecure".to_owned()));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        Command::new(&self.exe)
            .args(args)
            .envs(secrets)
            .env(
                "SCATTER_LOG",
                self.opts.log.clone().or_else(|| std::env::var("SCATTER_LOG").ok()).unwrap_or_else(|| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", self.exe.display()))
    }

    /// Starts (or restarts, on the same address) the coordinator.
    pub fn start_coordinator(&mut self) -> Result<()> {
        let dir = self.coordinator_dir();
        std::fs::create_dir_all(&dir)?;
        let _ = std::fs::remove_file(dir.join("url"));
        let log = self.dir.join("coordinator.log");
        let dir_s = dir.to_string_lossy().into_owned();
        let args = [
            "--data-dir",
            &dir_s,
            "--listen",
            &self.coordinator_listen,
            "--offline-after",
            &self.opts.offline_after,
            "--session-ttl",
            &self.opts.session_ttl,
            "--checker-interval",
            &self.opts.checker_interval,
            "--orphan-grace",
            &self.opts.orphan_grace,
            "--release-grace",
            &self.opts.release_grace,
        ];
        let extra: Vec<&str> = self.opts.coordinator_args.iter().map(String::as_str).collect();
        let mut child = self.spawn("coordinator", "coordinator", &args, &extra, &log)?;
        self.url = wait_for_file(&dir.join("url"), &mut child, "coordinator", &log)?;
        self.coordinator_listen = listen_address(&self.url);
        self.coordinator = Some(child);
        Ok(())
    }

    /// Extra flags the coordinator starts with from its next start on.
    pub fn set_coordinator_args(&mut self, args: &[&str]) {
        self.opts.coordinator_args = args.iter().map(|a| a.to_string()).collect();
    }

    /// Kills the coordinator with SIGKILL.
    pub fn kill_coordinator(&mut self) {
        if let Some(mut c) = self.coordinator.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts host `i` offering `capacity` (e.g. `10MiB`) from now on.
    pub fn restart_host_with_capacity(&mut self, i: usize, capacity: &str) -> Result<()> {
        self.kill_host(i);
        self.capacities[i] = Some(capacity.to_owned());
        self.start_host(i)
    }

    /// Starts one more host, joined with `join_token` (an operator's, say) and started with
    /// the extra `flags`, and waits until it is online. Returns its index.
    pub async fn add_host(&mut self, join_token: &str, flags: &[&str]) -> Result<usize> {
        self.add_host_listening(restartable_address(), join_token, flags).await
    }

    /// [`Grid::add_host`], listening on `listen` (behind a proxy that `--public-url` names,
    /// say).
    pub async fn add_host_listening(&mut self, listen: String, join_token: &str, flags: &[&str]) -> Result<usize> {
        let i = self.hosts.len();
        self.hosts.push(None);
        self.host_listen.push(listen);
        self.capacities.push(None);
        self.added.push(Some((join_token.to_owned(), flags.iter().map(|f| f.to_string()).collect())));
        self.start_host(i)?;
        let online = self.wait_online(i + 1, Duration::from_secs(30)).await;
        online.map(|()| i)
    }

    /// Starts (or restarts, on the same address) host `i`.
    pub fn start_host(&mut self, i: usize) -> Result<()> {
        let dir = self.host_dir(i);
        std::fs::create_dir_all(&dir)?;
        let _ = std::fs::remove_file(dir.join("url"));
        let log = self.dir.join(format!("host-{i}.log"));
        let zone = format!("zone-{}", i % self.opts.zones.max(1));
        let dir_s = dir.to_string_lossy().into_owned();
        let coordinators =
            self.opts.other_coordinators.iter().chain([&self.url]).cloned().collect::<Vec<_>>().join(",");
        let args = [
            "--data-dir",
            &dir_s,
            "--listen",
            &self.host_listen[i],
            "--coordinator",
            &coordinators,
            "--join-token",
            self.added[i].as_ref().map(|(token, _)| token.as_str()).unwrap_or(&self.join_token),
            "--capacity",
            self.capacities[i].as_deref().unwrap_or(&self.opts.capacity),
            "--zone",
            &zone,
            "--heartbeat",
            &self.opts.heartbeat,
        ];
        let mut extra: Vec<&str> = self.opts.host_args.get(i).into_iter().flatten().map(String::as_str).collect();
        extra.extend(self.added[i].iter().flat_map(|(_, flags)| flags).map(String::as_str));
        let mut child = self.spawn("host", &format!("host-{i}"), &args, &extra, &log)?;
        let url = wait_for_file(&dir.join("url"), &mut child, &format!("host {i}"), &log)?;
        // A port the system picked is learnt from the address the host advertises.
        if self.host_listen[i].ends_with(":0") {
            self.host_listen[i] = listen_address(&url);
        }
        self.hosts[i] = Some(child);
        Ok(())
    }

    /// Kills host `i` with SIGKILL (like `kill -9`).
    pub fn kill_host(&mut self, i: usize) {
        if let Some(mut c) = self.hosts[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The process id of host `i`, while it runs (to pause it with SIGSTOP, say).
    pub fn host_pid(&self, i: usize) -> Option<u32> {
        self.hosts[i].as_ref().map(|c| c.id())
    }

    /// The process id of the coordinator, while it runs (to read its memory use, say).
    pub fn coordinator_pid(&self) -> Option<u32> {
        self.coordinator.as_ref().map(|c| c.id())
    }

    /// Whether host `i` is running.
    pub fn host_running(&self, i: usize) -> bool {
        self.hosts[i].is_some()
    }

    /// Waits until the coordinator reports at least `n` hosts online.
    pub async fn wait_online(&self, n: usize, timeout: Duration) -> Result<()> {
        let coord = self.profile().coordinator()?;
        let deadline = Instant::now() + timeout;
        loop {
            let online = match coord.status().await {
                Ok(s) => s.hosts.iter().filter(|h| h.state == HostState::Online).count(),
                Err(_) => 0,
            };
            if online >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "only {online} of {n} hosts came online within {timeout:?}; see the logs in {}",
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops every process.
    pub fn stop(&mut self) {
        for i in 0..self.hosts.len() {
            self.kill_host(i);
        }
        self.kill_coordinator();
    }
}

impl Drop for Grid {
    fn drop(&mut self) {
        self.stop();
    }
}
