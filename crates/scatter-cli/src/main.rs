//! The `scatter` binary: parses the command line, sets up logging, and calls the libraries.

// Every `println!` and `print!` of this binary (these shadow std's, here and in the modules
// below) goes through `stdout`, which ends the command quietly when stdout's reader went away
// (`scatter ls | head -1`) where std's macros panic. Resetting SIGPIPE would need `unsafe`.
macro_rules! println {
    () => { $crate::stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::stdout(format_args!("{}\n", format_args!($($arg)*))) };
}
macro_rules! print {
    ($($arg:tt)*) => { $crate::stdout(format_args!($($arg)*)) };
}

mod backups;
mod billing;
mod catalog;
mod demo;
mod gateway;
mod inspect;
mod locks;
mod mount;
mod operators;
mod placing;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use placing::CodeArgs;
use scatter_cli::duration;
use scatter_cli::grid::{Grid, GridOptions};
use scatter_cli::terms::PolicyArgs;
use scatter_client::profile::{self, Profile};
use scatter_client::{ClientError, Progress};
use scatter_core::tree::escape;
use scatter_core::ByteSize;

/// jemalloc instead of glibc's malloc. The data path allocates 1-16 MiB buffers on some
/// threads and frees them on others; glibc keeps such memory in per-thread arenas, and the
/// client's peak RSS on a 1 GiB backup was 260-360 MiB with it against about 205 MiB with
/// jemalloc (mimalloc: 270-315 MiB). See docs/performance.md.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Scatter: secure distributed storage. Files are chunked, encrypted, erasure-coded and
/// spread over the hosts of a grid; they come back bit for bit even when hosts are lost.
#[derive(Parser)]
#[command(name = "scatter", version, about)]
struct Cli {
    /// Log filter for stderr: error, warn, info, debug, trace, or per module
    /// (`scatter_coordinator=debug,info`). Default: info for services, warn for commands.
    #[arg(long, global = true, env = "SCATTER_LOG", value_parser = scatter_cli::logging::parse_level)]
    log_level: Option<String>,
    /// Log lines as text (coloured only on a terminal) or as one JSON object per line.
    #[arg(long, global = true, value_enum, default_value = "text", env = "SCATTER_LOG_FORMAT")]
    log_format: scatter_cli::logging::LogFormat,
    /// After a put, get, backup or restore, print on stderr how long each stage of the data
    /// path was busy and how many bytes it moved.
    #[arg(long, global = true)]
    stats: bool,
    /// Read the passphrase from this file (one trailing newline is dropped) instead of
    /// SCATTER_PASSPHRASE or a prompt.
    #[arg(long, global = true, env = "SCATTER_PASSPHRASE_FILE", value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Run this shell command and use what it prints as the passphrase (e.g. `pass show
    /// scatter`); one trailing newline is dropped.
    #[arg(long, global = true, env = "SCATTER_PASSPHRASE_COMMAND", value_name = "COMMAND")]
    passphrase_command: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the coordinator: registry, catalog, placement and grants.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Coordinator {
        #[command(subcommand)]
        action: Option<CoordinatorCmd>,
        /// Read the settings from this TOML file: one key per long flag, spelled as the flag
        /// (`data-dir = "/var/lib/scatter"`, `insecure = true`); flags and environment
        /// variables win over it. A file holding a secret (a PostgreSQL password in `catalog`) must be mode 0600.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Check the settings (config file, environment and flags), print them with where each
        /// one comes from (secrets hidden) and exit without starting.
        #[arg(long)]
        check_config: bool,
        /// Directory for the catalog, keys and tokens (created on first start).
        #[arg(long, required = true)]
        data_dir: Option<PathBuf>,
        /// Keep the catalog in PostgreSQL (postgresql://USER:PASSWORD@HOST:PORT/DATABASE),
        /// shared by any number of coordinators, instead of catalog.db in --data-dir. Read
        /// from SCATTER_CATALOG when not given, which keeps a password off the command line.
        // `hide_env_values` marks a secret: a config file that sets it must be mode 0600
        // (`scatter_cli::config`).
        #[arg(long, env = "SCATTER_CATALOG", hide_env_values = true)]
        catalog: Option<String>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7000")]
        listen: String,
        /// A host is offline once it missed heartbeats for this long.
        #[arg(long, default_value = "30s", value_parser = duration::parse)]
        offline_after: Duration,
        /// URL to advertise to hosts and clients (default: derived from --listen); several,
        /// separated by commas, when coordinators share the catalog (written to the `url`
        /// file for `--coordinator`).
        #[arg(long)]
        public_url: Option<scatter_net::CoordinatorUrls>,
        /// A write session (put, backup) not kept alive for this long is over; prune waits
        /// for open sessions, so this bounds how long a killed backup holds prune off.
        #[arg(long, default_value = "60s", value_parser = duration::parse)]
        session_ttl: Duration,
        /// How often to look for packs short of healthy shards and repair them.
        #[arg(long, default_value = "30s", value_parser = duration::parse)]
        checker_interval: Duration,
        /// Shards on hosts that the catalog does not know are deleted once this old.
        #[arg(long, default_value = "1h", value_parser = duration::parse)]
        orphan_grace: Duration,
        /// Deleted data's shards stay on their hosts this long, so that reads under way when
        /// it was deleted (an S3 GET, a restore, a mount) end as they began.
        #[arg(long, default_value = "10m", value_parser = duration::parse)]
        release_grace: Duration,
        /// How long a placement (and its put grants) waits for its commit; a killed client's
        /// uploads are deleted from hosts soon after.
        #[arg(long, default_value = "10m", value_parser = duration::parse)]
        reservation_ttl: Duration,
        /// Plain HTTP instead of TLS: anyone on the network can read and alter tokens, grants
        /// and metadata. Only for a grid on one machine or behind a TLS-terminating proxy.
        #[arg(long)]
        insecure: bool,
        /// How many hosts (failure domains) every pack must survive losing (default: by the
        /// grid's size: 0 with one host, 1 up to 5, 2 from 6).
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=16))]
        tolerate: Option<u8>,
        /// Give no new data to a host whose offered period (--until) ends sooner than this.
        #[arg(long, default_value = "7d", value_parser = duration::parse)]
        period_margin: Duration,
        /// Time between catalog backups on the hosts (taken only when the catalog changed;
        /// also right after security-relevant changes and at shutdown). SQLite catalogs only.
        #[arg(long, default_value = "5m", value_parser = duration::parse)]
        catalog_backup_interval: Duration,
        /// Serve the web dashboard on this address (e.g. 127.0.0.1:8443 for an SSH tunnel, or
        /// 0.0.0.0:443 with --dashboard-cert/--dashboard-key). Plain HTTP only on loopback.
        #[arg(long, value_name = "ADDR")]
        dashboard: Option<std::net::SocketAddr>,
        /// The dashboard's certificate chain (PEM), issued for the name people open it by.
        #[arg(long, value_name = "FILE", requires = "dashboard")]
        dashboard_cert: Option<PathBuf>,
        /// The private key of --dashboard-cert (PEM).
        #[arg(long, value_name = "FILE", requires = "dashboard")]
        dashboard_key: Option<PathBuf>,
        /// The dashboard's URL as people open it (login links point there), e.g.
        /// https://grid.example.org; by default derived from --dashboard.
        #[arg(long, value_name = "URL", requires = "dashboard")]
        dashboard_url: Option<String>,
        /// How often stored bytes are sampled into byte-hours for metering and billing
        /// (statements are exact to within one interval).
        #[arg(long, default_value = "1h", value_parser = duration::parse)]
        metering_interval: Duration,
    },
    /// Run a storage host that offers disk space to the grid.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Host {
        #[command(subcommand)]
        action: Option<HostAction>,
        /// Read the settings from this TOML file: one key per long flag, spelled as the flag
        /// (`data-dir = "/var/lib/scatter"`, `insecure = true`); flags and environment
        /// variables win over it. A file holding a secret (`join-token`) must be mode 0600.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Check the settings (config file, environment and flags), print them with where each
        /// one comes from (secrets hidden) and exit without starting.
        #[arg(long)]
        check_config: bool,
        /// Directory for shards and the host's identity.
        #[arg(long, required = true)]
        data_dir: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// The coordinator's URL (its data directory's `url` file), or the URLs of several
        /// coordinators sharing the catalog, separated by commas: the host uses whichever
        /// answers.
        #[arg(long, required = true)]
        coordinator: Option<scatter_net::CoordinatorUrls>,
        /// The grid's join token (the coordinator's `join-token` file): needed to join, not
        /// to restart a host that has joined (its data directory keeps what it needs).
        // `hide_env_values` marks a secret: a config file that sets it must be mode 0600
        // (`scatter_cli::config`).
        #[arg(long, env = "SCATTER_JOIN_TOKEN", hide_env_values = true)]
        join_token: Option<String>,
        /// Space offered to the grid, e.g. 500GiB.
        #[arg(long, required = true, value_parser = parse_capacity)]
        capacity: Option<ByteSize>,
        /// Failure-domain label (rack, building, city).
        #[arg(long, default_value = "default")]
        zone: String,
        /// Time between heartbeats.
        #[arg(long, default_value = "10s", value_parser = duration::parse)]
        heartbeat: Duration,
        /// URL to advertise to clients (default: derived from --listen).
        #[arg(long)]
        public_url: Option<String>,
        /// Accept a plain-HTTP coordinator and serve plain HTTP: anyone on the network can read and alter tokens, grants
        /// and metadata. Only for a grid on one machine or behind a TLS-terminating proxy.
        #[arg(long)]
        insecure: bool,
        #[command(flatten)]
        terms: scatter_cli::terms::HostTermsArgs,
    },
    /// Create your keys, register with a coordinator and write a profile.
    Init {
        /// The coordinator's URL, or the URLs of several coordinators sharing the catalog,
        /// separated by commas: the client uses whichever answers (kept in the profile).
        #[arg(long)]
        coordinator: scatter_net::CoordinatorUrls,
        /// An invite token (`scatter admin user add`, or `scatter admin user device` for another
        /// machine of an existing user), the coordinator's `admin-token` for the first user, or
        /// your recovery code (`scr_…`) to get your keys back on a new machine.
        #[arg(long, env = "SCATTER_TOKEN", hide_env_values = true)]
        token: String,
        /// Use keys exported with `scatter key export` (another device of the same user, or a
        /// write-only source) instead of creating new ones. Their transport passphrase comes
        /// from SCATTER_IMPORT_PASSPHRASE or a prompt.
        #[arg(long = "import")]
        import: Option<PathBuf>,
        /// Accept a plain-HTTP coordinator: anyone on the network can read and alter tokens, grants
        /// and metadata. Only for a grid run with --insecure.
        #[arg(long)]
        insecure: bool,
        /// The name this machine is listed under in `scatter key devices` (default: its host
        /// name).
        #[arg(long)]
        device_name: Option<String>,
    },
    /// Your keys and devices: change the passphrase, export the keys for another machine, list
    /// and revoke devices, make a new recovery code.
    Key {
        #[command(subcommand)]
        command: KeyCmd,
    },
    /// The conditions the hosts your data goes to must meet (price, zones, reputation, period).
    Policy {
        #[command(subcommand)]
        command: placing::PolicyCmd,
    },
    /// The readers and appenders of your data, and whether you trust their snapshots as
    /// your own (for `latest`, recover, check-local and backup parents).
    Delegate {
        #[command(subcommand)]
        command: DelegateCmd,
    },
    /// Store a file on the grid.
    Put {
        /// The file to store.
        file: PathBuf,
        /// Name to store it under (default: the file's name).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        code: CodeArgs,
        #[command(flatten)]
        policy: PolicyArgs,
        #[command(flatten)]
        retention: locks::RetentionArgs,
    },
    /// Fetch a stored file.
    Get {
        /// The name it was stored under.
        name: String,
        /// Where to write it (`-`: stdout).
        #[arg(long, short)]
        output: PathBuf,
        /// An earlier version still stored (`scatter versions NAME` lists them); default: the
        /// latest.
        #[arg(long)]
        version: Option<u64>,
    },
    /// List the versions of a stored file still kept: the latest, and earlier ones a lock
    /// keeps (a put of the same name replaces the rest).
    Versions {
        /// The name it was stored under.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List stored files, or the contents of a snapshot (`latest`, an id prefix, `ID:PATH`).
    Ls {
        /// A snapshot (`latest`, 4+ hex digits of an id, optionally `:PATH`), or else a name
        /// prefix of whole path components (e.g. `photos/`).
        target: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Back up files and directories as a new snapshot.
    Backup {
        /// Files and directories to back up.
        #[arg(required_unless_present_any = ["files_from", "files_from_verbatim", "files_from_raw"])]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        habits: backups::BackupHabits,
        /// Tag the snapshot (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Leave out matching entries (glob; without `/` it matches names anywhere; repeatable).
        #[arg(long = "exclude")]
        excludes: Vec<String>,
        /// Read exclude patterns from a file, one per line (`#` starts a comment).
        #[arg(long = "exclude-file")]
        exclude_files: Vec<PathBuf>,
        /// Do not cross into other file systems.
        #[arg(long, short = 'x')]
        one_file_system: bool,
        /// Host name to record (default: this machine's).
        #[arg(long)]
        hostname: Option<String>,
        /// Re-read every file instead of trusting size, mtime and inode.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        code: CodeArgs,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Cap the upload rate, e.g. 10MiB (per second).
        #[arg(long, value_parser = scatter_cli::size::parse)]
        limit_upload: Option<ByteSize>,
        #[command(flatten)]
        retention: locks::RetentionArgs,
        /// Print a JSON summary.
        #[arg(long)]
        json: bool,
    },
    /// Extend the lock of a snapshot (never shortens it; up to your maximum).
    Lock {
        /// The snapshot (`latest`, or 4+ hex digits of its id).
        snapshot: String,
        #[command(flatten)]
        keep: locks::RetentionArgs,
    },
    /// List snapshots, oldest committed first, with who wrote each.
    Snapshots {
        /// Only snapshots of this path.
        #[arg(long)]
        path: Option<String>,
        /// Only snapshots with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only snapshots of this host (repeatable: any of them).
        #[arg(long = "host", value_name = "HOST")]
        hosts: Vec<String>,
        /// Only the N newest snapshots of each host and path set.
        #[arg(long, value_name = "N")]
        latest: Option<usize>,
        /// Warn and exit 3 when the newest of the snapshots selected that count as yours was
        /// committed longer ago than this (e.g. 26h), or there is none: for monitoring.
        #[arg(long, value_name = "DURATION", value_parser = scatter_cli::duration::parse)]
        warn_older_than: Option<std::time::Duration>,
        /// Also write, for node_exporter's textfile collector, the newest selected snapshot's
        /// commit time, how many there are and (with --warn-older-than) whether it is stale,
        /// in Prometheus' text format to this file (replaced atomically).
        #[arg(long, value_name = "FILE")]
        metrics_file: Option<PathBuf>,
        /// Print JSON (an array, as restic prints it).
        #[arg(long)]
        json: bool,
    },
    /// Add, remove or set the tags of snapshots; their ids stay.
    Tag {
        /// Snapshots (`latest`, or 4+ hex digits of an id).
        #[arg(required = true)]
        snapshots: Vec<String>,
        /// Add these tags (TAG[,TAG...]; repeatable).
        #[arg(long, value_name = "TAGS")]
        add: Vec<String>,
        /// Remove these tags (TAG[,TAG...]; repeatable).
        #[arg(long, value_name = "TAGS")]
        remove: Vec<String>,
        /// Replace all tags with these (TAG[,TAG...]; repeatable; `--set ""` clears them).
        #[arg(long, value_name = "TAGS", conflicts_with_all = ["add", "remove"])]
        set: Option<Vec<String>>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy snapshots into another profile (another account, or another grid), as restic's
    /// `copy`: the data is read and checked here, then sealed again under the destination's
    /// keys; snapshots already there are skipped.
    Copy {
        /// Snapshots (`latest`, or 4+ hex digits of an id; default: all of yours).
        snapshots: Vec<String>,
        /// The destination's profile folder (what SCATTER_CONFIG names for it).
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// A file holding the destination's passphrase (else SCATTER_TO_PASSPHRASE, or a
        /// prompt).
        #[arg(long, env = "SCATTER_TO_PASSPHRASE_FILE", value_name = "FILE")]
        to_passphrase_file: Option<PathBuf>,
        #[command(flatten)]
        code: CodeArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// How big snapshots are: as restored (files, bytes), or the distinct data they reference.
    Stats {
        /// Snapshots (default: all).
        snapshots: Vec<String>,
        /// restore-size: files and bytes a restore writes; raw-data: distinct chunks and
        /// their bytes before encryption and redundancy.
        #[arg(long, value_enum, default_value = "restore-size")]
        mode: inspect::StatsMode,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a file of a snapshot to stdout, or a directory as a tar stream, verified as a
    /// restore verifies it.
    Dump {
        /// The snapshot (`latest`, or 4+ hex digits of an id).
        snapshot: String,
        /// The path in the snapshot, as `scatter ls` shows it (`/` for all of it).
        path: String,
    },
    /// Serve the S3 API for this profile (aws CLI, rclone, restic, boto3 store on the grid),
    /// encrypting on this side as the CLI does; or manage its access keys (`gateway key`).
    #[command(args_conflicts_with_subcommands = true)]
    Gateway {
        #[command(subcommand)]
        action: Option<gateway::GatewayAction>,
        /// Address and port to listen on, e.g. 0.0.0.0:9000.
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: String,
        /// The gateway's TLS certificate chain (PEM), e.g. from your CA or Let's Encrypt.
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        /// The private key of --cert (PEM).
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        /// Serve plain HTTP instead of TLS: only on a loopback address (behind a TLS proxy, or
        /// for tools on this machine).
        #[arg(long)]
        plain_http: bool,
        /// Serve TLS with a certificate from the grid's CA for these addresses (IP addresses
        /// or DNS names, comma-separated); S3 clients then trust `gateway-ca.crt`, written
        /// to the profile folder. Hosts and clients refuse this certificate anywhere else.
        #[arg(long, value_delimiter = ',', value_name = "NAMES")]
        grid_cert: Vec<String>,
        /// Multipart uploads started this long ago and neither completed nor aborted are
        /// removed, e.g. 7d, 12h.
        #[arg(long, default_value = "7d", value_parser = scatter_cli::duration::parse)]
        upload_expiry: Duration,
        /// Serve another profile too (repeatable): `DIR` opens with this profile's
        /// passphrase, `DIR=FILE` with the passphrase in FILE. Each profile's own keys
        /// (`gateway key add` run with it) reach its data only.
        #[arg(long = "profile", value_name = "DIR[=FILE]")]
        profiles: Vec<String>,
    },
    /// Mount your snapshots and stored files as a read-only file system (FUSE) and serve it
    /// until Ctrl-C, SIGTERM or `fusermount -u MOUNTPOINT`. Files are fetched as they are
    /// read and verified as a restore verifies them.
    Mount {
        /// An empty directory to mount on.
        mountpoint: PathBuf,
        /// Verified file content kept in memory for reads (least recently used dropped
        /// first), e.g. 64MiB.
        #[arg(long, default_value = "64MiB", value_parser = scatter_cli::size::parse)]
        cache: ByteSize,
    },
    /// Show what changed between two snapshots.
    Diff {
        /// The older snapshot.
        from: String,
        /// The newer snapshot.
        to: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Find files by name or path pattern in all snapshots.
    Find {
        /// A glob, e.g. `*.jpg` or `/home/*/notes.txt`.
        pattern: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restore a snapshot, or part of it, into a directory.
    Restore {
        /// `SNAPSHOT` or `SNAPSHOT:PATH` (`latest` works).
        snapshot: String,
        /// Directory to restore into.
        #[arg(long, short)]
        target: PathBuf,
        /// Only entries matching this glob (or below a matching directory; repeatable).
        #[arg(long = "include")]
        include: Vec<String>,
        /// Cap the download rate, e.g. 10MiB (per second).
        #[arg(long, value_parser = scatter_cli::size::parse)]
        limit_download: Option<ByteSize>,
        /// Leave runs of zeros in files as holes (sparse files: disk images, databases)
        /// rather than writing them.
        #[arg(long)]
        sparse: bool,
        /// Print a JSON summary.
        #[arg(long)]
        json: bool,
    },
    /// Compare live files with a snapshot: missing, corrupt (content differs, size and mtime
    /// do not), modified and new. Exits 3 when something is missing or corrupt.
    CheckLocal {
        /// Only below this path (default: everything the snapshot covers).
        path: Option<PathBuf>,
        /// Snapshot to compare with (default: the newest of this host covering the path).
        #[arg(long)]
        snapshot: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put back, in place, the files check-local finds missing or corrupt.
    Recover {
        /// Only below this path (default: everything the snapshot covers).
        path: Option<PathBuf>,
        /// Snapshot to recover from (default: the newest of this host covering the path).
        #[arg(long)]
        snapshot: Option<String>,
        /// Also overwrite files modified since the snapshot.
        #[arg(long)]
        force: bool,
        /// Print a JSON summary.
        #[arg(long)]
        json: bool,
    },
    /// Remove snapshots by id or by policy (each host and path set keeps its own).
    Forget {
        /// Snapshot ids to remove.
        ids: Vec<String>,
        /// Keep the N newest snapshots.
        #[arg(long, default_value_t = 0)]
        keep_last: u32,
        /// Keep the newest snapshot of each of the last N hours.
        #[arg(long, short = 'H', default_value_t = 0)]
        keep_hourly: u32,
        /// Keep the newest snapshot of each of the last N days.
        #[arg(long, default_value_t = 0)]
        keep_daily: u32,
        /// Keep the newest snapshot of each of the last N weeks.
        #[arg(long, default_value_t = 0)]
        keep_weekly: u32,
        /// Keep the newest snapshot of each of the last N months.
        #[arg(long, default_value_t = 0)]
        keep_monthly: u32,
        /// Keep the newest snapshot of each of the last N years.
        #[arg(long, default_value_t = 0)]
        keep_yearly: u32,
        /// Keep every snapshot newer than the newest one minus DURATION (restic's format:
        /// 1y5m7d2h, `m` is months).
        #[arg(long, value_name = "DURATION")]
        keep_within: Option<scatter_core::retention::Within>,
        /// Keep every snapshot with these tags (TAG[,TAG...]: all of them; repeatable: any list).
        #[arg(long = "keep-tag", value_name = "TAGS")]
        keep_tags: Vec<String>,
        /// Prune afterwards.
        #[arg(long)]
        prune: bool,
        /// Only show what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// With --prune: repack packs at least this percent unused.
        #[arg(long, default_value_t = 20)]
        max_unused: u8,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Free the space of data no snapshot or file references any more.
    Prune {
        /// Repack packs at least this percent unused.
        #[arg(long, default_value_t = 20)]
        max_unused: u8,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify snapshots, trees and the index; with --read-data, fetch and verify the data too.
    Check {
        /// Read and verify every chunk.
        #[arg(long)]
        read_data: bool,
        /// Read and verify this share of the chunks, e.g. 10%.
        #[arg(long)]
        read_data_subset: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a stored file (all its versions); its space is freed on the hosts.
    Rm {
        /// The name it was stored under.
        name: String,
        /// NAME is a stored (encrypted) name, as `scatter ls` shows one that does not decrypt
        /// with your keys.
        #[arg(long)]
        encrypted: bool,
    },
    /// Your own usage: what you store now, your quota, and this period's usage and charges
    /// so far (accounts of role `user` and admins).
    Usage {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the grid's hosts.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Move a coordinator's catalog to a file and back: from SQLite to PostgreSQL, or a
    /// logical backup of either.
    Catalog {
        #[command(subcommand)]
        command: catalog::CatalogCmd,
    },
    /// A one-time login link to the web dashboard (valid 5 minutes): your usage, quota,
    /// snapshots and devices; with --host-dir, a host's state and audits for its operator.
    Dashboard {
        /// Sign in as the operator of the host with this data directory (its `host.json`),
        /// instead of as your account.
        #[arg(long, value_name = "DIR", requires = "coordinator")]
        host_dir: Option<PathBuf>,
        /// With --host-dir: the coordinator's URL (or URLs), as the host was started with.
        #[arg(long)]
        coordinator: Option<scatter_net::CoordinatorUrls>,
    },
    /// Grid administration (admins only).
    Admin {
        #[command(subcommand)]
        command: AdminCmd,
    },
    /// Run a local grid (a coordinator and N hosts) in the foreground until Ctrl-C.
    Dev {
        /// Number of hosts.
        #[arg(long, default_value_t = 6)]
        hosts: usize,
        /// Directory for the grid's data, logs and the `env` file.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Show Scatter at work: store a sample data set on a local grid, lose two hosts, get
    /// everything back and verify it bit for bit.
    Demo {
        /// Keep the demo's directory instead of deleting it.
        #[arg(long)]
        keep: bool,
    },
    /// Print a shell completion script, e.g. `scatter completion bash >
    /// ~/.local/share/bash-completion/completions/scatter`.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff; `scatter man | man -l -`), or write one page per command
    /// (scatter.1, scatter-backup.1, …) into a directory.
    Man {
        /// Write the pages into this directory (created if needed) instead of printing one.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CoordinatorCmd {
    /// Rebuild a lost coordinator's data directory from the newest catalog backup on the
    /// hosts, with the grid's recovery key (the recovery.key written at its first start).
    Recover {
        /// The new data directory (must be absent or empty).
        #[arg(long)]
        data_dir: PathBuf,
        /// The grid's recovery key file.
        #[arg(long)]
        recovery_key: PathBuf,
        /// A host's URL (its data directory's `url` file); repeat for each host you know.
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
    },
}

/// `scatter host <command>`: for a host's operator, with the host's own credentials.
#[derive(Subcommand)]
enum HostAction {
    /// This host's earnings for a billing period, asked with its own identity (the
    /// `host.json` in its data directory): what it earned, what is withheld and why.
    Earnings {
        /// The host's data directory (where it keeps `host.json`).
        #[arg(long)]
        data_dir: PathBuf,
        /// The coordinator's URL (or several, separated by commas).
        #[arg(long)]
        coordinator: scatter_net::CoordinatorUrls,
        /// Accept a plain-HTTP coordinator (a grid run with --insecure).
        #[arg(long)]
        insecure: bool,
        /// The period, YYYY-MM (UTC); the current one by default.
        #[arg(long, value_parser = billing::parse_period)]
        period: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Print CSV, one row per line.
        #[arg(long)]
        csv: bool,
    },
}

#[derive(Subcommand)]
enum AdminCmd {
    /// The audit trail: registrations, invites, refused requests, host joins and state changes.
    Events {
        /// How many of the newest events.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Object locks and expiries: list them, lift a governance lock.
    Lock {
        #[command(subcommand)]
        command: locks::AdminLockCmd,
    },
    /// Users: invite, list, disable, enable, set quotas, remove.
    User {
        #[command(subcommand)]
        command: UserCmd,
    },
    /// Hosts: list them, drain, disable or enable one.
    Host {
        #[command(subcommand)]
        command: HostCmd,
    },
    /// Invites not used yet: list and revoke them.
    Invite {
        #[command(subcommand)]
        command: InviteCmd,
    },
    /// Operators: parties that run hosts; each operator's hosts count as one failure domain.
    Operator {
        #[command(subcommand)]
        command: operators::OperatorCmd,
    },
    /// The grid's data health: packs with all k+m shards healthy, degraded, lost, and repair.
    Health {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Take a catalog backup now and store it on the hosts (they are also taken every
    /// --catalog-backup-interval, after security-relevant changes and at shutdown).
    CatalogBackup,
    /// How much more user data the grid can take under its durability rule.
    Capacity {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A one-time login link to the web dashboard (valid 5 minutes), signed in as you.
    Dashboard,
    /// Statements of a billing period (what each user owes, what each host earned), rate
    /// cards, raw usage records, closing a period.
    #[command(args_conflicts_with_subcommands = true)]
    Billing {
        #[command(subcommand)]
        command: Option<billing::BillingCmd>,
        /// The period, YYYY-MM (UTC); the current one by default.
        #[arg(long, value_parser = billing::parse_period)]
        period: Option<String>,
        /// Only this user's statement: its id (e.g. u3) or its name.
        #[arg(long)]
        user: Option<String>,
        /// Only this host's statement (e.g. h2).
        #[arg(long)]
        host: Option<scatter_core::HostId>,
        /// Print the statement as JSON.
        #[arg(long)]
        json: bool,
        /// Print the statement as CSV, one row per line.
        #[arg(long)]
        csv: bool,
    },
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Re-encrypt your key file under a new passphrase (SCATTER_NEW_PASSPHRASE or a prompt);
    /// stored data is not touched.
    Passwd,
    /// Your devices (machines registered for your account), with the one you are on marked.
    Devices {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Refuse one of your devices from now on (a lost or retired machine).
    Revoke {
        /// The device's id, from `scatter key devices` (e.g. d4).
        id: scatter_core::DeviceId,
    },
    /// Make a new recovery code (the old one stops working) and have the coordinator keep
    /// your key file sealed to it.
    RecoveryCode,
    /// Write your keys, encrypted under a transport passphrase (SCATTER_EXPORT_PASSPHRASE or a
    /// prompt), for `scatter init --import` on another machine.
    Export {
        /// Where to write them.
        #[arg(long, short)]
        output: PathBuf,
        /// Leave out the private key: the machine can back up (and deduplicate) but cannot
        /// read, list or restore anything.
        #[arg(long)]
        write_only: bool,
    },
}

#[derive(Subcommand)]
enum DelegateCmd {
    /// Your readers and appenders, and whether you trust each.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Count an appender's snapshots as your own: they can be `latest`, be recovered from
    /// and be backup parents.
    Trust {
        /// The delegate: its id (e.g. u3) or its name.
        user: String,
    },
    /// Stop counting an appender's snapshots as your own (they stay listed and restorable by id).
    Untrust {
        /// The delegate: its id (e.g. u3) or its name.
        user: String,
    },
    /// Shut a reader or appender out (a machine lost, or one you no longer trust): its
    /// requests are refused and its write sessions end, so what only they kept stored goes
    /// at your next prune. Its snapshots stay. Only the admin can let it back in.
    Disable {
        /// The delegate: its id (e.g. u3) or its name.
        user: String,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Invite a user; prints the one-time token for `scatter init --token`.
    Add {
        /// A name for listings.
        name: String,
        /// admin, user, reader (reads one user's data) or appender (adds to one user's data,
        /// cannot read, overwrite or delete).
        #[arg(long, default_value = "user", value_parser = parse_role)]
        role: scatter_proto::api::Role,
        /// Bytes on hosts (with redundancy) the user may take, e.g. 100GiB (at least 1MiB,
        /// with its unit).
        #[arg(long, value_parser = parse_quota)]
        quota: Option<u64>,
        /// For readers and appenders: whose data (a user's id, e.g. u1, or its name).
        #[arg(long = "of")]
        owner: Option<String>,
        /// For an appender: its owner counts its snapshots as its own from the start (default:
        /// untrusted; the owner changes it with `scatter delegate trust|untrust`).
        #[arg(long)]
        trusted: bool,
    },
    /// Every user with role, state, quota and usage.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A one-time token that adds a machine to an existing user: it brings the user's keys
    /// (`scatter init --import` of a `scatter key export`).
    Device {
        /// The user: its id (e.g. u3) or its name.
        id: String,
    },
    /// Refuse every request of a user from now on.
    Disable {
        /// The user: its id (e.g. u3) or its name.
        id: String,
    },
    /// Remove a user and everything it stored (a user holding data only with --yes).
    Rm {
        /// The user: its id (e.g. u3) or its name.
        id: String,
        /// Remove it even though it holds data: that data is deleted for good.
        #[arg(long)]
        yes: bool,
    },
    /// Accept a disabled user's requests again.
    Enable {
        /// The user: its id (e.g. u3) or its name.
        id: String,
    },
    /// Set a user's lock maxima (its own, its delegates') and default lock.
    Set {
        /// The user: its id (e.g. u3) or its name.
        id: String,
        #[command(flatten)]
        limits: locks::LimitArgs,
    },
    /// Set a user's quota (bytes on hosts, with redundancy), or `none` for no limit.
    Quota {
        /// The user: its id (e.g. u3) or its name.
        id: String,
        /// e.g. 100GiB (at least 1MiB, with its unit), or `none`.
        #[arg(value_parser = parse_quota_or_none)]
        quota: QuotaArg,
    },
}

/// A service's `--data-dir`: a folder, or nothing yet (it is made).
fn folder(dir: PathBuf) -> Result<PathBuf> {
    if dir.exists() && !dir.is_dir() {
        bail!("--data-dir {} is a file, not a folder; give a folder (it is made if missing)", dir.display());
    }
    Ok(dir)
}

/// The user `who` names: an id such as `u3`, or a name (of a user not removed) that only
/// one user has.
async fn user_named(
    coord: &scatter_client::coordinator::Coordinator,
    who: &str,
) -> Result<scatter_proto::api::UserEntry> {
    let users = coord.users().await?;
    if let Ok(id) = who.parse::<scatter_core::UserId>() {
        return users
            .into_iter()
            .find(|u| u.id == id)
            .ok_or_else(|| anyhow::anyhow!("there is no user {id}; `scatter admin user ls` lists them"));
    }
    let mut named: Vec<_> = users.into_iter().filter(|u| u.name == who && !u.removed).collect();
    match named.len() {
        1 => Ok(named.remove(0)),
        0 => bail!("no user is named `{}`; `scatter admin user ls` lists them", escape(who.as_bytes())),
        _ => bail!(
            "several users are named `{}` ({}); give the id",
            escape(who.as_bytes()),
            named.iter().map(|u| u.id.to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// One of the caller's readers and appenders, named by its id (`u3`) or its name.
async fn delegate_named(coord: &scatter_client::coordinator::Coordinator, who: &str) -> Result<scatter_core::UserId> {
    if let Ok(id) = who.parse::<scatter_core::UserId>() {
        return Ok(id);
    }
    let named: Vec<_> = coord.delegates().await?.into_iter().filter(|d| d.name == who).collect();
    match named.as_slice() {
        [one] => Ok(one.id),
        [] => bail!("none of your delegates is named `{}`; `scatter delegate ls` lists them", escape(who.as_bytes())),
        _ => bail!(
            "several of your delegates are named `{}` ({}); give the id",
            escape(who.as_bytes()),
            named.iter().map(|d| d.id.to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// A quota on the command line: a size, or `none`.
#[derive(Clone, Copy)]
struct QuotaArg(Option<u64>);

/// A quota: a size with its unit, at least [`scatter_proto::api::MIN_QUOTA`]. A bare number
/// would be bytes, which is never what is meant.
fn parse_quota(s: &str) -> Result<u64, String> {
    let min = ByteSize(scatter_proto::api::MIN_QUOTA);
    let size = scatter_cli::size::parse(s)?;
    if size.0 < min.0 {
        return Err(format!("a quota below {min} cannot hold even one pack; give at least {min}"));
    }
    Ok(size.0)
}

/// A host's capacity: a size with its unit, at least 1 MiB. A bare number would be bytes: a
/// host offering 500 bytes joined, took no shard, and raised the grid's tolerance all the same.
fn parse_capacity(s: &str) -> Result<ByteSize, String> {
    let size = scatter_cli::size::parse(s)?;
    if size.0 < 1 << 20 {
        return Err(format!("a capacity of {size} cannot hold a shard; offer at least 1 MiB"));
    }
    Ok(size)
}

fn parse_quota_or_none(s: &str) -> Result<QuotaArg, String> {
    match s.trim() {
        "none" => Ok(QuotaArg(None)),
        _ => parse_quota(s).map(|q| QuotaArg(Some(q))),
    }
}

#[derive(Subcommand)]
enum InviteCmd {
    /// The invites not used yet, with the id `rm` takes.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an unused invite: its token is refused from now on.
    Rm {
        /// Its id from `scatter admin invite ls` (or a unique prefix, 6+ hex digits).
        id: String,
    },
}

#[derive(Subcommand)]
enum HostCmd {
    /// Every host with state, last heartbeat, capacity, used bytes and shards held.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop trusting a host: it gets nothing new and its shards are rebuilt elsewhere.
    Disable {
        /// The host's id, e.g. h3 or 3.
        id: scatter_core::HostId,
    },
    /// Move every shard off a host (keeping full redundancy throughout), then retire it.
    /// Refused when the other hosts cannot take its shards under the grid's rule.
    Drain {
        /// The host's id, e.g. h3 or 3.
        id: scatter_core::HostId,
        /// Drain even if the other hosts cannot take its shards as the rule asks (a dying
        /// host): what stays degraded is said.
        #[arg(long)]
        force: bool,
    },
    /// Make a draining host active again (it keeps the shards not moved yet), or a disabled
    /// one once repair has moved all its shards off (it comes back empty).
    #[command(alias = "undrain")]
    Enable {
        /// The host's id, e.g. h3 or 3.
        id: scatter_core::HostId,
    },
}

/// --passphrase-file and --passphrase-command (or their variables), set once in `main`; only
/// looked at when a passphrase is needed, so `completion` or `status` run whatever they hold.
static PASSPHRASE_FLAGS: std::sync::OnceLock<(Option<PathBuf>, Option<String>)> = std::sync::OnceLock::new();

/// The command line, with a service's `--config` file merged in (see `scatter_cli::config`);
/// exits 2 with one sentence when it or the file is wrong, and 0 after `--check-config`.
fn parse_cli() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let merged = match scatter_cli::config::merge(&Cli::command(), std::env::args_os().collect()) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            std::process::exit(2);
        }
    };
    let matches = match Cli::command().try_get_matches_from(&merged.args) {
        Ok(m) => m,
        Err(e) => match merged.explain(&e) {
            Some(said) => {
                eprintln!("error: {said}");
                std::process::exit(2);
            }
            None => e.exit(),
        },
    };
    if let Some((name, sub)) = matches.subcommand() {
        if scatter_cli::config::SERVICES.contains(&name) && sub.get_flag("check_config") {
            let from = match &merged.file {
                Some(f) => format!("config file {}", f.display()),
                None => "no config file".into(),
            };
            println!("# scatter {name}: the settings it would run with ({from})");
            let settings = scatter_cli::config::settings(&Cli::command(), name, sub, &merged.from_file);
            let width = settings.iter().map(|s| s.key.len() + s.value.len()).max().unwrap_or(0) + 3;
            for s in settings {
                let line = format!("{} = {}", s.key, s.value);
                println!("{line:width$} # {}", s.source);
            }
            std::process::exit(0);
        }
    }
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Lets a service hold as many sockets as its connection limits allow
/// ([`scatter_net::serve::MAX_CONNECTIONS`] of its own, and those to hosts): the soft limit on
/// open files is often 1024 where the hard one is far higher.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    const WANTED: u64 = 65536;
    let limit = getrlimit(Resource::Nofile);
    let target = limit.maximum.map_or(WANTED, |max| max.min(WANTED));
    if limit.current.is_some_and(|current| current < target) {
        if let Err(e) = setrlimit(Resource::Nofile, Rlimit { current: Some(target), maximum: limit.maximum }) {
            tracing::debug!(error = %e, "could not raise the limit on open files");
        }
    }
}

fn main() {
    let cli = parse_cli();
    let _ = PASSPHRASE_FLAGS.set((cli.passphrase_file.clone(), cli.passphrase_command.clone()));
    let service = matches!(
        cli.command,
        Cmd::Coordinator { action: None, .. }
            | Cmd::Host { action: None, .. }
            | Cmd::Gateway { action: None, .. }
            | Cmd::Dev { .. }
    );
    if service {
        raise_open_file_limit();
    }
    let filter = match cli.command {
        Cmd::Gateway { action: None, .. } => Some(scatter_cli::logging::gateway_filter(cli.log_level.as_deref())),
        _ => cli.log_level.clone(),
    };
    let filter = filter.unwrap_or_else(|| match cli.command {
        _ if service => "info".into(),
        // fuser warns about calls a read-only file system leaves to the kernel's defaults,
        // and about unmounting after `fusermount -u` did: nothing a user can act on.
        Cmd::Mount { .. } => "warn,fuser=error".into(),
        _ => "warn".into(),
    });
    // Checked by clap (`parse_level`); the fallback is for the built-in defaults only.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr);
    match cli.log_format {
        // Colour only for a person at a terminal, not in log files.
        scatter_cli::logging::LogFormat::Text if service => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // A command's warnings are for the person who ran it, now: no time, no module path.
        scatter_cli::logging::LogFormat::Text => {
            logs.without_time().with_target(false).with_ansi(std::io::stderr().is_terminal()).init()
        }
        scatter_cli::logging::LogFormat::Json => logs.json().with_ansi(false).init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let started = std::time::Instant::now();
    let show_stats = cli.stats && !service;
    let interrupted = match cli.command {
        // Both are safe to rerun: packs are committed as they complete, and a restore skips
        // the files already right.
        Cmd::Backup { .. } => "interrupted; run the same backup again to resume: what was uploaded is not sent again",
        Cmd::Restore { .. } => {
            "interrupted; run the same restore again to resume: the files already restored are not fetched again, and the one cut short continues from what it holds"
        }
        _ => "interrupted; nothing half-done was made visible",
    };
    // `mount` unmounts on Ctrl-C and SIGTERM itself, and then exits 0.
    let own_signals = service || matches!(cli.command, Cmd::Mount { .. });
    let result = runtime.block_on(async {
        if own_signals {
            // Services and `dev` handle Ctrl-C themselves and shut down cleanly.
            return run(cli.command).await;
        }
        // Ctrl-C first: its handler is installed when it is first polled, and until then
        // SIGINT kills the process outright (no 130, no resume hint, uploads not given
        // back) while the command's first poll may run for seconds (the key file's KDF).
        let r = tokio::select! {
            biased;
            _ = tokio::signal::ctrl_c() => Err(Interrupted.into()),
            r = run(cli.command) => r,
        };
        if r.is_err() {
            // Uploads cut short are given back, so hosts delete them now rather than after
            // the coordinator's orphan grace; bounded, so a dead coordinator cannot hold us.
            let _ = tokio::time::timeout(Duration::from_secs(15), scatter_client::upload::abandon_unsettled()).await;
        }
        r
    });
    if show_stats {
        eprint!("{}", scatter_client::stats::report(started.elapsed()));
    }
    match result {
        Ok(0) => {}
        Ok(code) => std::process::exit(code),
        Err(e) if e.is::<Interrupted>() => {
            eprintln!("{interrupted}");
            // 128 + SIGINT, as shells report a command stopped by Ctrl-C.
            std::process::exit(130);
        }
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            std::process::exit(1);
        }
    }
}

/// Ctrl-C stopped a client command.
#[derive(Debug)]
struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Writes to stdout. When its reader is gone (a closed pipe) the command ends at once with
/// 141, what a process killed by SIGPIPE returns, saying nothing: nobody reads any more. Any
/// other failure (a full disk) is one sentence and exit 1.
fn stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("error: cannot write the output ({e}); check where stdout goes");
        std::process::exit(1);
    }
}

/// Whether `e` is, or was caused by, stdout's reader going away.
fn is_closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

/// Copies `from` to stdout, ending quietly as [`stdout`] does when the reader is gone.
fn copy_to_stdout(from: &mut impl std::io::Read) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match std::io::copy(from, &mut out).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(141),
        r => r.context("cannot write to stdout"),
    }
}

/// The error and its causes as one line, without repeating a cause already in the message.
fn chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    // SIGTERM too: it is what service managers (and `kill`) send. Without it, `scatter dev`
    // would die without stopping the processes it started.
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn bind(listen: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}; pick a free address with --listen"))
}

/// The user's passphrase: from --passphrase-file or --passphrase-command (or their variables)
/// when given, as restic prefers them over RESTIC_PASSWORD; else SCATTER_PASSPHRASE or a prompt.
fn passphrase(confirm: bool) -> Result<String> {
    if let Some((file, command)) = PASSPHRASE_FLAGS.get() {
        if let Some(source) = scatter_cli::passphrase::Source::pick(file.clone(), command.clone())? {
            return source.read();
        }
    }
    secret("SCATTER_PASSPHRASE", "Passphrase: ", confirm)
}

/// Whether [`passphrase`] reads from a prompt (no flag, file, command or variable gives it),
/// so asking again makes sense.
fn asks_for_passphrase() -> bool {
    let flagged = PASSPHRASE_FLAGS.get().is_some_and(|(file, command)| file.is_some() || command.is_some());
    !flagged && std::env::var_os("SCATTER_PASSPHRASE").is_none() && std::io::stdin().is_terminal()
}

/// A secret from the environment variable `var`, else from a prompt on the terminal.
fn secret(var: &str, prompt: &str, confirm: bool) -> Result<String> {
    if let Ok(p) = std::env::var(var) {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        if var == "SCATTER_PASSPHRASE" {
            bail!(
                "a passphrase is needed: give --passphrase-file FILE or --passphrase-command CMD, set {var}, or run on a terminal"
            );
        }
        bail!("a passphrase is needed: set {var} or run on a terminal");
    }
    let p = rpassword::prompt_password(prompt)?;
    if confirm && rpassword::prompt_password("Repeat it: ")? != p {
        bail!("the two passphrases differ; try again");
    }
    Ok(p)
}

/// A role on the command line.
fn parse_role(s: &str) -> Result<scatter_proto::api::Role, String> {
    use scatter_proto::api::Role;
    Role::parse(s).ok_or_else(|| {
        let all: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        format!("`{s}` is not a role; use one of {}", all.join(", "))
    })
}

fn load() -> Result<(PathBuf, Profile)> {
    let dir = profile::config_dir();
    let p = Profile::load(&dir)?;
    Ok((dir, p))
}

/// A progress bar on stderr when it is a terminal; nothing otherwise. It shows bytes, rate,
/// ETA, and for backups and restores the files done and the current one.
struct Bar {
    bar: indicatif::ProgressBar,
    /// Files started.
    files: AtomicU64,
    /// Bytes done (read, written or backed up).
    done: AtomicU64,
    /// Bytes downloaded since `start`: a restore shows the larger of the two (up to the
    /// total), so it moves while a pack downloads rather than only once it is decoded.
    downloaded: AtomicU64,
    /// Whether the ETA is shown: only once something moved (with nothing done yet,
    /// indicatif's estimate is "0s").
    eta_shown: std::sync::atomic::AtomicBool,
}

/// The bar's layout, with or without the ETA.
fn bar_style(eta: bool) -> indicatif::ProgressStyle {
    let template = if eta {
        "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {wide_msg}"
    } else {
        "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} {wide_msg}"
    };
    indicatif::ProgressStyle::with_template(template).unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
}

impl Bar {
    fn new() -> Self {
        let bar = if std::io::stderr().is_terminal() {
            indicatif::ProgressBar::new(0)
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_style(bar_style(false));
        Self {
            bar,
            files: AtomicU64::new(0),
            done: AtomicU64::new(0),
            downloaded: AtomicU64::new(0),
            eta_shown: Default::default(),
        }
    }

    fn show(&self) {
        let total = self.bar.length().unwrap_or(0);
        let downloaded = self.downloaded.load(Relaxed).min(total);
        let position = self.done.load(Relaxed).max(downloaded);
        if position > 0 && !self.eta_shown.swap(true, Relaxed) {
            self.bar.set_style(bar_style(true));
        }
        self.bar.set_position(position);
    }

    /// Clears the bar (when a copy of it is still held elsewhere, so dropping would not).
    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for Bar {
    fn wants_total(&self) -> bool {
        !self.bar.is_hidden()
    }
    fn start(&self, total: u64) {
        // What was downloaded before (a restore's trees) is not part of the total.
        self.downloaded.store(0, Relaxed);
        self.bar.set_length(total);
        self.show();
    }
    fn advance(&self, n: u64) {
        self.done.fetch_add(n, Relaxed);
        self.show();
    }
    fn downloaded(&self, n: u64) {
        self.downloaded.fetch_add(n, Relaxed);
        // Not before `start`: a restore reads its trees first, and 0 B/0 B says nothing.
        if self.bar.length().unwrap_or(0) > 0 {
            self.show();
        }
    }
    fn item(&self, name: &str) {
        let n = self.files.fetch_add(1, Relaxed) + 1;
        self.bar.set_message(format!("{n} files  {name}"));
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.finish();
    }
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

async fn run(cmd: Cmd) -> Result<i32> {
    match cmd {
        Cmd::Backup {
            paths,
            habits,
            tags,
            excludes,
            exclude_files,
            one_file_system,
            hostname,
            force,
            code,
            policy,
            limit_upload,
            retention,
            json,
        } => {
            return backups::backup(backups::BackupArgs {
                retention: retention.retention()?,
                paths,
                habits,
                tags,
                excludes,
                exclude_files,
                one_file_system,
                hostname,
                force,
                code,
                policy: policy.policy(),
                limit_upload,
                json,
            })
            .await
        }
        Cmd::Snapshots { path, tag, hosts, latest, warn_older_than, metrics_file, json } => {
            let selection = backups::Selection { path, tag, hosts, latest };
            return backups::list(selection, warn_older_than, metrics_file.as_deref(), json).await;
        }
        Cmd::Delegate { command } => {
            let (_, p) = load()?;
            let coord = p.coordinator()?;
            match command {
                DelegateCmd::Ls { json } => {
                    let delegates = coord.delegates().await?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&delegates)?);
                    } else {
                        println!("{:<5} {:<16} {:<9} {:<9} snapshots", "id", "name", "role", "state");
                        for d in delegates {
                            println!(
                                "{:<5} {:<16} {:<9} {:<9} {}",
                                d.id.to_string(),
                                d.name,
                                d.role.to_string(),
                                if d.disabled { "disabled" } else { "active" },
                                // A reader writes no snapshots: nothing of it to trust.
                                match (d.trusted, d.role == scatter_proto::api::Role::Reader) {
                                    (_, true) => "-",
                                    (true, false) => "trusted as yours",
                                    (false, false) => "untrusted",
                                }
                            );
                        }
                    }
                }
                DelegateCmd::Trust { user } => {
                    let user = delegate_named(&coord, &user).await?;
                    coord.set_trusted(user, true).await?;
                    println!("{user}'s snapshots now count as yours: they can be `latest`, be recovered from and be backup parents.");
                }
                DelegateCmd::Untrust { user } => {
                    let user = delegate_named(&coord, &user).await?;
                    coord.set_trusted(user, false).await?;
                    println!("{user}'s snapshots no longer count as yours; they stay listed and restorable by id.");
                }
                DelegateCmd::Disable { user } => {
                    let user = delegate_named(&coord, &user).await?;
                    coord.disable_delegate(user).await?;
                    println!("{user} is disabled: its requests are refused and its write sessions ended; `scatter prune` now drops what only they kept. Its snapshots stay.");
                }
            }
        }
        Cmd::Ls { target: Some(t), json } if backups::looks_like_snapshot(&t) => {
            return backups::ls_snapshot(&t, json).await
        }
        Cmd::Diff { from, to, json } => return backups::diff(&from, &to, json).await,
        Cmd::Tag { snapshots, add, remove, set, json } => {
            return inspect::tag(&snapshots, inspect::TagChange { add, remove, set }, json).await
        }
        Cmd::Stats { snapshots, mode, json } => return inspect::stats(&snapshots, mode, json).await,
        Cmd::Copy { snapshots, to, to_passphrase_file, code, json } => {
            backups::copy_target_check(&to)?;
            let to_passphrase = match scatter_cli::passphrase::Source::pick(to_passphrase_file, None)? {
                Some(source) => source.read()?,
                None => secret("SCATTER_TO_PASSPHRASE", "Passphrase of the destination: ", false)?,
            };
            return backups::copy(&snapshots, &to, &to_passphrase, code, json).await;
        }
        Cmd::Dump { snapshot, path } => return inspect::dump(&snapshot, &path).await,
        Cmd::Mount { mountpoint, cache } => return mount::mount(&mountpoint, cache.0).await,
        Cmd::Gateway { action, listen, cert, key, plain_http, grid_cert, upload_expiry, profiles } => {
            let (dir, p) = load()?;
            match action {
                // The coordinator knows the device: no passphrase.
                Some(gateway::GatewayAction::Name { command }) => gateway::names(&p, command).await?,
                Some(gateway::GatewayAction::Key { command }) => {
                    gateway::keys(&dir, &Profile::load_keys(&dir, &passphrase(false)?)?, command)?
                }
                None => {
                    let secret = passphrase(false)?;
                    let keys = Profile::load_keys(&dir, &secret)?;
                    let mut served = vec![(dir, p, keys)];
                    for spec in profiles {
                        served.push(gateway::open_profile(&spec, &secret)?);
                    }
                    let tls = match (cert.zip(key), grid_cert.is_empty(), plain_http) {
                        (Some(files), true, false) => gateway::Tls::Operator(files),
                        (None, false, false) => gateway::Tls::Grid(grid_cert),
                        (None, true, true) => gateway::Tls::Plain,
                        (None, true, false) => anyhow::bail!(
                            "give the gateway a certificate: --cert and --key (your own), --grid-cert ADDRESS (from the grid's CA), or --plain-http on a loopback address"
                        ),
                        _ => anyhow::bail!("--cert/--key, --grid-cert and --plain-http exclude each other; give one"),
                    };
                    let args = gateway::ServeArgs { listen, tls, upload_expiry };
                    gateway::serve(served, args, shutdown_signal()).await?;
                }
            }
        }
        Cmd::Find { pattern, json } => return backups::find(&pattern, json).await,
        Cmd::Restore { snapshot, target, include, limit_download, sparse, json } => {
            return backups::restore(&snapshot, &target, &include, limit_download, sparse, json).await
        }
        Cmd::CheckLocal { path, snapshot, json } => return backups::check_local(path, snapshot, json).await,
        Cmd::Recover { path, snapshot, force, json } => return backups::recover(path, snapshot, force, json).await,
        Cmd::Forget {
            ids,
            keep_last,
            keep_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_yearly,
            keep_within,
            keep_tags,
            prune,
            dry_run,
            max_unused,
            json,
        } => {
            let policy = scatter_core::retention::Policy {
                last: keep_last,
                hourly: keep_hourly,
                daily: keep_daily,
                weekly: keep_weekly,
                monthly: keep_monthly,
                yearly: keep_yearly,
                within: keep_within,
                tags: keep_tags
                    .iter()
                    .map(|l| l.split(',').map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect())
                    .filter(|l: &Vec<String>| !l.is_empty())
                    .collect(),
            };
            return backups::forget(ids, policy, prune, dry_run, max_unused, json).await;
        }
        Cmd::Prune { max_unused, json } => return backups::prune(max_unused, json).await,
        Cmd::Check { read_data, read_data_subset, json } => {
            return backups::check(read_data, read_data_subset, json).await
        }
        Cmd::Coordinator { action: Some(CoordinatorCmd::Recover { data_dir, recovery_key, hosts }), .. } => {
            recover(data_dir, recovery_key, hosts).await?;
        }
        Cmd::Coordinator {
            action: None,
            config,
            check_config: _,
            data_dir,
            catalog,
            listen,
            offline_after,
            public_url,
            session_ttl,
            checker_interval,
            orphan_grace,
            release_grace,
            reservation_ttl,
            insecure,
            tolerate,
            period_margin,
            catalog_backup_interval,
            dashboard,
            dashboard_cert,
            dashboard_key,
            dashboard_url,
            metering_interval,
        } => {
            let data_dir = folder(data_dir.context("--data-dir is required")?)?;
            let dashboard = dashboard.map(|listen| scatter_coordinator::dashboard::DashboardConfig {
                listen,
                cert: dashboard_cert,
                key: dashboard_key,
                public_url: dashboard_url,
            });
            let listener = bind(&listen).await?;
            let config = scatter_coordinator::Config {
                config_file: config,
                catalog_backup_interval,
                data_dir,
                catalog,
                offline_after,
                public_url,
                session_ttl,
                checker_interval,
                orphan_grace,
                release_grace,
                reservation_ttl,
                insecure,
                tolerate,
                period_margin,
                dashboard,
                metering_interval,
            };
            scatter_coordinator::run(config, listener, shutdown_signal()).await?;
        }
        Cmd::Host {
            action: Some(HostAction::Earnings { data_dir, coordinator, insecure, period, json, csv }), ..
        } => {
            let format = billing::Format::of(json, csv)?;
            let s = scatter_host::earnings(&data_dir, &coordinator, insecure, period).await?;
            billing::print(&s, format)?;
        }
        Cmd::Host {
            action: None,
            config,
            check_config: _,
            data_dir,
            listen,
            coordinator,
            join_token,
            capacity,
            zone,
            heartbeat,
            public_url,
            insecure,
            terms,
        } => {
            let listener = bind(&listen).await?;
            let config = scatter_host::Config {
                config_file: config,
                data_dir: folder(data_dir.context("--data-dir is required")?)?,
                coordinator: coordinator.context("--coordinator is required")?,
                join_token,
                capacity: capacity.context("--capacity is required")?,
                zone,
                heartbeat,
                public_url,
                insecure,
                terms: terms.terms(),
            };
            scatter_host::run(config, listener, shutdown_signal()).await?;
        }
        Cmd::Init { coordinator, token, import, insecure, device_name } => {
            // Before anything is asked or spent.
            if let Some(name) = &device_name {
                profile::check_device_name(name)?;
            }
            let dir = profile::config_dir();
            let imported = match import {
                Some(file) => {
                    // An exported key file is a few kilobytes.
                    let bytes = scatter_net::read_small(&file, 1 << 20).with_context(|| {
                        format!("cannot read {}; give the file `scatter key export` wrote", file.display())
                    })?;
                    let transport = secret("SCATTER_IMPORT_PASSPHRASE", "Passphrase of the exported keys: ", false)?;
                    Some(scatter_core::keys::UserKeys::from_key_file(&bytes, &transport)?)
                }
                None => None,
            };
            let recovering = token.trim().starts_with("scr_");
            let pass = passphrase(!recovering)?;
            let mut done =
                profile::init(&dir, &coordinator, &token, &pass, imported, insecure, device_name.as_deref()).await?;
            // A mistyped passphrase after a recovery: the code is spent and the key file saved,
            // so on a terminal the right passphrase is asked for here, not left to a later command.
            if done.recovered && !done.keys_open && asks_for_passphrase() {
                for _ in 0..3 {
                    let again = rpassword::prompt_password(
                        "That passphrase does not open the key file that came back; the one it was last sealed with (Enter to stop): ",
                    )?;
                    if again.is_empty() {
                        break;
                    }
                    if let Some(code) = profile::open_recovered(&dir, &done.profile, &again).await? {
                        (done.keys_open, done.code) = (true, code);
                        break;
                    }
                }
            }
            // After: an --insecure refused for a TLS grid's token is not warned about first.
            if insecure {
                eprintln!("warning: {}", scatter_net::INSECURE_WARNING);
            }
            print!("{}", scatter_cli::devices::initialized(&done, &dir));
            // Done (the profile is saved, the code spent), but the device may do nothing yet:
            // a script must not read this as success.
            if !done.keys_open {
                return Ok(3);
            }
        }
        Cmd::Lock { snapshot, keep } => {
            let (coord, _, all) = backups::open_snapshots().await?;
            let id = scatter_client::snapshots::resolve(&all, &snapshot)?.id.clone();
            locks::extend(&coord, id, &keep).await?;
        }
        Cmd::Admin { command: AdminCmd::Lock { command } } => {
            let (_, p) = load()?;
            locks::admin(&p.coordinator()?, command).await?;
        }
        Cmd::Put { file, name, code, policy, retention } => {
            let retention = retention.retention()?;
            let (dir, p) = load()?;
            let keys = Profile::load_keys(&dir, &passphrase(false)?)?;
            let name = match name {
                Some(n) => n,
                None => file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .with_context(|| format!("{} has no file name; pass --name", file.display()))?,
            };
            let bar = Bar::new();
            let coord = p.coordinator()?;
            let redundancy = code.resolve(&coord).await?;
            let r = scatter_client::put::put_file(
                &coord,
                keys.write_keys(),
                &file,
                &name,
                redundancy,
                policy.policy(),
                retention,
                &bar,
            )
            .await?;
            drop(bar);
            // Deduplicated chunks stay in the packs (and codes) they were stored in.
            let coded = match r.codes.as_slice() {
                [] => format!("coded {}+{}", redundancy.k, redundancy.m),
                codes => {
                    let each: Vec<String> = codes.iter().map(|((k, m), n)| format!("{k}+{m} ({n} pack(s))")).collect();
                    format!("its packs coded {}", each.join(", "))
                }
            };
            println!(
                "Stored {name} (version {}): {}, {} chunks ({} new) in {} new pack(s), {coded} over the grid's hosts, {:.1} MB/s.",
                r.version,
                ByteSize(r.size),
                r.chunks,
                r.new_chunks,
                r.packs,
                mb_per_s(r.size, r.elapsed)
            );
        }
        Cmd::Get { name, output, version } => {
            let (dir, p) = load()?;
            let keys = Profile::load_keys(&dir, &passphrase(false)?)?;
            // `-o -`: into a temporary file first, which the data path verifies whole before
            // it is shown, then to stdout; the report goes to stderr.
            let to_stdout = output.as_os_str() == "-";
            let tmp = match to_stdout {
                true => Some(tempfile::tempdir().context("cannot make a temporary directory for `-o -`; set TMPDIR")?),
                false => None,
            };
            let path = tmp.as_ref().map(|t| t.path().join("object")).unwrap_or_else(|| output.clone());
            // Said before anything is fetched (the move into place failed after the download).
            if output.is_dir() {
                bail!("{} is a folder; give --output a file's path (e.g. {}/NAME)", output.display(), output.display());
            }
            if let Some(parent) = output.parent().filter(|p| !to_stdout && !p.as_os_str().is_empty() && !p.is_dir()) {
                bail!(
                    "the folder {} does not exist; make it (`mkdir -p {}`) or give --output a path in an existing one",
                    parent.display(),
                    parent.display()
                );
            }
            let bar = Bar::new();
            let r = scatter_client::get::get_file(&p.coordinator()?, &keys, (&name, version), &path, &bar).await?;
            drop(bar);
            if to_stdout {
                let mut file = std::fs::File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
                copy_to_stdout(&mut file)?;
            }
            for (host, shard, problem) in &r.fetch.bad_shards {
                eprintln!("warning: shard {shard} on host {host} is bad ({problem}); reported to the coordinator");
            }
            if !r.fetch.unreachable_hosts.is_empty() {
                let list: Vec<String> = r.fetch.unreachable_hosts.iter().map(|h| h.to_string()).collect();
                eprintln!("warning: hosts {} were unreachable; data was rebuilt from the others", list.join(", "));
            }
            let report = format!(
                "Wrote {} ({}) to {}{}, {:.1} MB/s.",
                name,
                ByteSize(r.size),
                if to_stdout { "stdout".into() } else { output.display().to_string() },
                if r.fetch.reconstructed_packs > 0 {
                    format!(", {} packs rebuilt from parity", r.fetch.reconstructed_packs)
                } else {
                    String::new()
                },
                mb_per_s(r.size, r.elapsed)
            );
            match to_stdout {
                true => eprintln!("{report}"),
                false => println!("{report}"),
            }
        }
        Cmd::Ls { target: prefix, json } => {
            let (dir, p) = load()?;
            let keys = Profile::load_keys(&dir, &passphrase(false)?)?;
            let names = keys.write_keys().name_key();
            let enc_prefix = match prefix.as_deref() {
                None | Some("") => String::new(),
                Some(pfx) => {
                    // Whole components only: `photos/` lists everything under photos.
                    let trimmed = pfx.trim_end_matches('/');
                    format!("{}/", names.encrypt(trimmed))
                }
            };
            let coordinator = p.coordinator()?;
            let mut objects = coordinator.list(&enc_prefix).await?.objects;
            // A whole name (no `/` at the end) lists that file too: `scatter ls notes.txt`.
            let exact = prefix.as_deref().filter(|p| !p.is_empty() && !p.ends_with('/'));
            if let Some(name) = exact {
                let mut same = coordinator.list(&names.encrypt(name)).await?.objects;
                same.retain(|o| names.decrypt(&o.name).is_ok_and(|n| n == name));
                objects.extend(same);
            }
            let mut rows = Vec::new();
            for o in objects {
                match names.decrypt(&o.name) {
                    Ok(name) => rows.push((name, o)),
                    // Written with other keys (a delegate's own, or a hostile one) or damaged:
                    // named and left out, never a reason to list nothing.
                    Err(_) => eprintln!(
                        "warning: the stored name {} does not decrypt with your keys (written with other keys, or \
                         damaged); it is left out. `scatter rm --encrypted {}` removes it",
                        escape(o.name.as_bytes()),
                        escape(o.name.as_bytes())
                    ),
                }
            }
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(n, o)| {
                        let mut v =
                            serde_json::json!({"name": n, "size": o.size, "version": o.version, "created": o.created});
                        if let (Some(v), serde_json::Value::Object(h)) = (v.as_object_mut(), locks::json(&o.hold)) {
                            v.extend(h);
                        }
                        v
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "objects": v }))?);
            } else {
                for (n, o) in rows {
                    let hold = locks::describe(&o.hold);
                    let hold = if hold.is_empty() { hold } else { format!("  [{hold}]") };
                    println!("{:>12}  v{:<3} {}{hold}", ByteSize(o.size).to_string(), o.version, escape(n.as_bytes()));
                }
            }
        }
        Cmd::Versions { name, json } => {
            let (dir, p) = load()?;
            let keys = Profile::load_keys(&dir, &passphrase(false)?)?;
            let encrypted = keys.write_keys().name_key().encrypt(&name);
            let list = p.coordinator()?.versions(&encrypted).await.map_err(|e| match e {
                ClientError::Api { code: scatter_proto::api::ErrorCode::NotFound, .. } => {
                    anyhow::anyhow!("no object named `{name}` is stored; `scatter ls` lists what is")
                }
                e => e.into(),
            })?;
            if json {
                let v: Vec<_> = list
                    .objects
                    .iter()
                    .map(|o| {
                        let mut v = serde_json::json!({"version": o.version, "size": o.size, "created": o.created});
                        if let (Some(v), serde_json::Value::Object(h)) = (v.as_object_mut(), locks::json(&o.hold)) {
                            v.extend(h);
                        }
                        v
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "name": name, "versions": v }))?);
            } else {
                for o in list.objects {
                    let hold = locks::describe(&o.hold);
                    let hold = if hold.is_empty() { hold } else { format!("  [{hold}]") };
                    let when = scatter_cli::terms::format_time(o.created);
                    println!("v{:<4} {:>12}  {when}{hold}", o.version, ByteSize(o.size).to_string());
                }
            }
        }
        Cmd::Rm { name, encrypted } => {
            let (dir, p) = load()?;
            let stored = match encrypted {
                // As `ls` printed it: escaped where it is not plain text.
                true => String::from_utf8(scatter_core::tree::unescape(&name))
                    .map_err(|_| anyhow::anyhow!("`{name}` is not a stored name as `scatter ls` prints one"))?,
                false => Profile::load_keys(&dir, &passphrase(false)?)?.write_keys().name_key().encrypt(&name),
            };
            let r = p.coordinator()?.remove(&stored).await.map_err(|e| match e {
                ClientError::Api { code: scatter_proto::api::ErrorCode::NotFound, .. } => {
                    anyhow::anyhow!("no object named `{name}` is stored; `scatter ls` lists what is")
                }
                e => e.into(),
            })?;
            println!(
                "Removed {name} ({} version(s)); {} pack(s) will be deleted from hosts.",
                r.versions, r.packs_released
            );
        }
        Cmd::Status { json } => {
            let (_, p) = load()?;
            let s = p.coordinator()?.status().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print_hosts(&s.hosts);
                println!("{}", placing::describe_grid(&s.grid));
            }
        }
        Cmd::Policy { command } => {
            let (_, p) = load()?;
            placing::policy(&p.coordinator()?, command).await?;
        }
        Cmd::Admin { command: AdminCmd::Dashboard } | Cmd::Dashboard { host_dir: None, .. } => {
            let (_, p) = load()?;
            let link = p.coordinator()?.dashboard_link().await?;
            println!("{}", link.url);
            eprintln!(
                "Open this link in a browser within {} minutes; it signs you in once (the part after # never reaches a server or a log).",
                link.expires_in / 60
            );
        }
        Cmd::Dashboard { host_dir: Some(dir), coordinator } => {
            let urls = coordinator.context("--host-dir needs --coordinator")?;
            let link = scatter_host::dashboard_link(&dir, &urls).await?;
            println!("{}", link.url);
            eprintln!(
                "Open this link in a browser within {} minutes; it signs you in once as the host's operator.",
                link.expires_in / 60
            );
        }
        Cmd::Admin { command: AdminCmd::Capacity { json } } => {
            let (_, p) = load()?;
            let c = p.coordinator()?.capacity().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                placing::print_capacity(&c);
            }
        }
        Cmd::Admin { command: AdminCmd::Host { command: HostCmd::Ls { json } } } => {
            let (_, p) = load()?;
            let s = p.coordinator()?.status().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s.hosts)?);
            } else {
                print_hosts(&s.hosts);
            }
        }
        Cmd::Key { command: KeyCmd::Passwd } => {
            let dir = profile::config_dir();
            let old = passphrase(false)?;
            let new = secret("SCATTER_NEW_PASSPHRASE", "New passphrase: ", true)?;
            let code = profile::change_passphrase(&dir, &old, &new).await?;
            println!("The key file in {} is now encrypted under the new passphrase.", dir.display());
            println!("{}", scatter_cli::devices::after_passwd(&code));
        }
        Cmd::Key { command: KeyCmd::Devices { json } } => {
            let (_, p) = load()?;
            let list = p.coordinator()?.devices().await?;
            match json {
                true => println!("{}", serde_json::to_string_pretty(&list.devices)?),
                false => print!("{}", scatter_cli::devices::table(&list)),
            }
        }
        Cmd::Key { command: KeyCmd::Revoke { id } } => {
            let (dir, p) = load()?;
            // Signed with the user's keys: a device's key alone does not revoke the others.
            let keys = Profile::load_keys(&dir, &passphrase(false)?)?;
            p.coordinator()?.revoke_device(p.user_id, id, &keys).await?;
            println!("Device {id} is revoked: its requests are refused from now on.");
        }
        Cmd::Key { command: KeyCmd::RecoveryCode } => {
            let (dir, p) = load()?;
            let pass = passphrase(false)?;
            let keys = Profile::load_keys(&dir, &pass)?;
            let key_file = std::fs::read(dir.join("keys.age"))
                .with_context(|| format!("cannot read {}/keys.age", dir.display()))?;
            let code = profile::new_code(&p, &keys, &key_file).await?;
            print!("{}", scatter_cli::devices::new_code(&code));
        }
        Cmd::Key { command: KeyCmd::Export { output, write_only } } => {
            let dir = profile::config_dir();
            let pass = passphrase(false)?;
            let transport = secret("SCATTER_EXPORT_PASSPHRASE", "Passphrase to protect the export: ", true)?;
            let bytes = profile::export_keys(&dir, &pass, &transport, write_only)?;
            // Created readable by its owner only, never briefly readable by others; an
            // existing file is not touched.
            let mut file = {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&output)
            }
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    anyhow::anyhow!("{} exists; pick another --output", output.display())
                }
                _ => anyhow::anyhow!("cannot create {} ({e}); pick another --output", output.display()),
            })?;
            std::io::Write::write_all(&mut file, &bytes)
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cannot write {}", output.display()))?;
            // Which invite goes with which keys: write-only keys make an appender; a machine
            // of the user's own with them could not read, nor make a recovery code.
            let invite = match write_only {
                true => "an appender's invite (`scatter admin user add NAME --role appender --of USER`)",
                false => "a reader's invite or a device invite (`scatter admin user device USER`)",
            };
            println!(
                "Wrote {}keys to {}; on the other machine, with {invite}: scatter init --coordinator URL --token TOKEN --import {}",
                if write_only { "write-only " } else { "" },
                output.display(),
                output.display()
            );
        }
        Cmd::Admin { command: AdminCmd::Events { limit, json } } => {
            let (_, p) = load()?;
            let events = p.coordinator()?.events(limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&events)?);
            } else {
                for e in events {
                    let t = e["time"].as_i64().unwrap_or(0);
                    println!(
                        "{}  {:<8} {:<22} {}",
                        backups::time_text(t.saturating_mul(1_000_000_000)),
                        escape(e["actor"].as_str().unwrap_or("?").as_bytes()),
                        escape(e["action"].as_str().unwrap_or("?").as_bytes()),
                        escape(e["detail"].as_str().unwrap_or("").as_bytes())
                    );
                }
            }
        }
        Cmd::Admin { command: AdminCmd::User { command } } => {
            let (_, p) = load()?;
            let coord = p.coordinator()?;
            match command {
                UserCmd::Add { name, role, quota, owner, trusted } => {
                    let owner = match owner {
                        Some(o) => Some(user_named(&coord, &o).await?.id),
                        None => None,
                    };
                    let req = scatter_proto::api::InviteRequest { name: name.clone(), role, quota, owner, trusted };
                    let token = coord.invite(&req).await?;
                    println!("{token}");
                    // A delegate brings its owner's keys, exported on one of the owner's devices.
                    let import = match role {
                        scatter_proto::api::Role::Appender => {
                            " --import FILE (FILE from `scatter key export --write-only -o FILE` on the owner's device)"
                        }
                        scatter_proto::api::Role::Reader => {
                            " --import FILE (FILE from `scatter key export -o FILE` on the owner's device)"
                        }
                        _ => "",
                    };
                    eprintln!(
                        "Give this one-time token to {}: scatter init --coordinator {} --token TOKEN{import}",
                        escape(name.as_bytes()),
                        p.coordinator
                    );
                }
                UserCmd::Ls { json } => {
                    let users = coord.users().await?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&users)?);
                    } else {
                        // Columns as wide as the longest name: names are up to 64 characters.
                        let w = users.iter().map(|u| u.name.chars().count()).max().unwrap_or(0).max(4);
                        println!(
                            "{:<5} {:<w$} {:<9} {:<9} {:>12} {:>12}  of",
                            "id", "name", "role", "state", "used", "quota"
                        );
                        for u in users {
                            println!(
                                "{:<5} {:<w$} {:<9} {:<9} {:>12} {:>12}  {}",
                                u.id.to_string(),
                                u.name,
                                u.role.to_string(),
                                match (u.removed, u.disabled) {
                                    (true, _) => "removed",
                                    (false, true) => "disabled",
                                    (false, false) => "active",
                                },
                                ByteSize(u.used).to_string(),
                                u.quota.map(|q| ByteSize(q).to_string()).unwrap_or_else(|| "-".into()),
                                u.owner.map(|o| o.to_string()).unwrap_or_default()
                            );
                        }
                    }
                }
                UserCmd::Device { id } => {
                    let id = user_named(&coord, &id).await?.id;
                    let t = coord.device_invite(id).await?;
                    println!("{}", t.token);
                    eprintln!(
                        "One-time token adding a device to user {id}: on the new machine, `scatter init --coordinator URL --token TOKEN --import FILE` \
                         with the user's full keys from `scatter key export` (not --write-only), or the user runs `scatter init` with the recovery code instead."
                    );
                }
                UserCmd::Disable { id } => {
                    let id = user_named(&coord, &id).await?.id;
                    coord.disable_user(id).await?;
                    println!("User {id} is disabled: its requests are refused from now on.");
                }
                UserCmd::Rm { id, yes } => {
                    let user = user_named(&coord, &id).await?;
                    let id = user.id;
                    // Said before --yes is asked for, which would not help.
                    if id == p.user_id {
                        bail!("an admin cannot remove its own account; ask another admin");
                    }
                    if user.used > 0 && !user.removed && !yes {
                        bail!(
                            "user {id} ({}) holds {}, which removing it deletes for good; run `scatter admin user rm {id} --yes` to go ahead",
                            escape(user.name.as_bytes()),
                            ByteSize(user.used)
                        );
                    }
                    coord.remove_user(id).await?;
                    println!("User {id} is removed; its data is deleted from the hosts in the background.");
                }
                UserCmd::Enable { id } => {
                    let id = user_named(&coord, &id).await?.id;
                    coord.enable_user(id).await?;
                    println!("User {id} is enabled: its requests are accepted again.");
                }
                UserCmd::Set { id, limits } => {
                    locks::set_limits(&coord, user_named(&coord, &id).await?.id, limits).await?
                }
                UserCmd::Quota { id, quota: QuotaArg(quota) } => {
                    let user = user_named(&coord, &id).await?;
                    let id = user.id;
                    coord.set_quota(id, quota).await?;
                    match quota {
                        Some(q) => println!("User {id} may now take {} on hosts.", ByteSize(q)),
                        None => println!("User {id} has no quota now."),
                    }
                    if let Some(q) = quota.filter(|q| user.used > *q) {
                        eprintln!(
                            "warning: user {id} already uses {}, more than {}: its writes are refused until it frees space (`scatter forget` and `scatter prune`); nothing it stored is removed",
                            ByteSize(user.used),
                            ByteSize(q)
                        );
                    }
                }
            }
        }
        Cmd::Admin { command: AdminCmd::Host { command: HostCmd::Disable { id: host } } } => {
            let (_, p) = load()?;
            p.coordinator()?.disable_host(host).await?;
            println!("Host {host} is disabled: it gets nothing new and its shards are rebuilt on other hosts.");
        }
        Cmd::Admin { command: AdminCmd::Host { command: HostCmd::Drain { id: host, force } } } => {
            let (_, p) = load()?;
            let warning = p.coordinator()?.drain(host, force).await?;
            println!("Host {host} is draining: its shards are rebuilt on other hosts while it keeps serving them; it is retired once empty (`scatter admin host ls`).");
            if let Some(w) = warning {
                eprintln!("warning: {w}");
            }
        }
        Cmd::Admin { command: AdminCmd::Host { command: HostCmd::Enable { id: host } } } => {
            let (_, p) = load()?;
            let was = p.coordinator()?.enable_host(host).await?;
            println!("Host {host} is active again (it was {was}): it takes new data.");
        }
        Cmd::Admin { command: AdminCmd::Invite { command } } => {
            let (_, p) = load()?;
            let coord = p.coordinator()?;
            match command {
                InviteCmd::Ls { json } => {
                    let list = coord.invites().await?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&list)?);
                    } else {
                        println!("{:<12} {:<16} {:<9} {:>12}  for", "id", "name", "role", "quota");
                        for i in list {
                            let whose = match (i.device_of, i.owner) {
                                (Some(u), _) => format!("a device of {u}"),
                                (None, Some(o)) => format!("{o}'s data"),
                                (None, None) => String::new(),
                            };
                            println!(
                                "{:<12} {:<16} {:<9} {:>12}  {whose}",
                                i.id,
                                escape(i.name.as_bytes()),
                                // A role's Display ignores widths: padded as text.
                                i.role.to_string(),
                                i.quota.map(|q| ByteSize(q).to_string()).unwrap_or_else(|| "-".into()),
                            );
                        }
                    }
                }
                InviteCmd::Rm { id } => {
                    let id = coord.remove_invite(&id).await?;
                    println!("Invite {id} is revoked: its token is refused from now on.");
                }
            }
        }
        Cmd::Admin { command: AdminCmd::Billing { command: Some(command), .. } } => {
            let (_, p) = load()?;
            billing::run(&p.coordinator()?, command).await?;
        }
        Cmd::Admin { command: AdminCmd::Billing { command: None, period, user, host, json, csv } } => {
            let format = billing::Format::of(json, csv)?;
            let (_, p) = load()?;
            let coord = p.coordinator()?;
            let user = match user {
                Some(who) => Some(user_named(&coord, &who).await?.id),
                None => None,
            };
            let s = coord.billing_statement(period.as_deref(), user, host).await?;
            billing::print(&s, format)?;
        }
        Cmd::Usage { json } => {
            let (_, p) = load()?;
            billing::usage(&p.coordinator()?, json).await?;
        }
        Cmd::Admin { command: AdminCmd::Operator { command } } => {
            let (_, p) = load()?;
            operators::run(&p.coordinator()?, &p.coordinator, command).await?;
        }
        Cmd::Admin { command: AdminCmd::Health { json } } => {
            let (_, p) = load()?;
            let h = p.coordinator()?.admin_health().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&h)?);
            } else {
                println!(
                    "packs: {} total, {} full, {} degraded, {} lost; repair queue {}; {} shards ({}) repaired since the catalog was created",
                    h["packs_total"],
                    h["packs_full"],
                    h["packs_degraded"],
                    h["packs_lost"],
                    h["repair_queue"],
                    h["shards_repaired"],
                    ByteSize(h["bytes_repaired"].as_u64().unwrap_or(0))
                );
                match &h["catalog_backup"] {
                    serde_json::Value::Null => {}
                    b if b["seq"].is_null() => {
                        println!("catalog backup: none yet (`scatter admin catalog-backup` takes one now)")
                    }
                    b => println!(
                        "catalog backup: #{} taken {} ago",
                        b["seq"],
                        scatter_cli::terms::format_age(b["age_secs"].as_u64().unwrap_or(0))
                    ),
                }
                if let Some(f) = h["catalog_backup"]["failing"].as_object() {
                    let since = f.get("since").and_then(|v| v.as_u64()).unwrap_or(0);
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0);
                    println!(
                        "warning: catalog backups have failed for {} ({}); released data is deleted from hosts only \
                         once a backup records it, and a recovery would start from the last one taken",
                        scatter_cli::terms::format_age(now.saturating_sub(since)),
                        escape(f.get("error").and_then(|v| v.as_str()).unwrap_or_default().as_bytes())
                    );
                }
                // Why repair waits, as the checker's last pass found it.
                for w in h["repair_waiting"].as_array().into_iter().flatten() {
                    println!(
                        "repair waits for {} pack(s): {}",
                        w["packs"],
                        escape(w["reason"].as_str().unwrap_or_default().as_bytes())
                    );
                }
            }
            // A monitoring script reads the exit code: lost packs are data gone for good.
            if h["packs_lost"].as_u64().unwrap_or(0) > 0 {
                if !json {
                    eprintln!(
                        "warning: {} pack(s) have fewer than k readable shards and cannot be read or rebuilt now; bring their hosts \
                         back if you can (`scatter admin host ls` shows which are offline); each owner's `scatter check` \
                         names the files lost with them",
                        h["packs_lost"]
                    );
                }
                return Ok(backups::EXIT_ATTENTION);
            }
        }
        Cmd::Admin { command: AdminCmd::CatalogBackup } => {
            let (_, p) = load()?;
            let b = p.coordinator()?.catalog_backup().await?;
            println!(
                "Catalog backup #{} stored: {} encrypted, {}+{} over {} hosts.",
                b.seq,
                ByteSize(b.size),
                b.k,
                b.m,
                b.hosts
            );
        }
        Cmd::Dev { hosts, data_dir } => dev(hosts, &data_dir).await?,
        Cmd::Catalog { command } => tokio::task::spawn_blocking(move || catalog::run(command)).await??,
        Cmd::Demo { keep } => demo::run(keep).await?,
        Cmd::Completion { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "scatter", &mut out);
            copy_to_stdout(&mut out.as_slice())?;
        }
        Cmd::Man { dir: None } => {
            let mut out = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                .render(&mut out)
                .context("cannot render the man page")?;
            copy_to_stdout(&mut out.as_slice())?;
        }
        Cmd::Man { dir: Some(dir) } => {
            std::fs::create_dir_all(&dir)
                .and_then(|()| clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), &dir))
                .with_context(|| format!("cannot write man pages into {}; pick another --dir", dir.display()))?;
            println!("Wrote the man pages into {}.", dir.display());
        }
    }
    Ok(0)
}

/// The hosts table of `status` and `admin host ls`: state, space, terms and reputation
/// (`--json` has the parts of the score and the measured record). What a host sent (its zone,
/// its address) is printed escaped: a catalog may hold zones from before they were checked.
fn print_hosts(hosts: &[scatter_proto::api::HostInfo]) {
    use scatter_cli::terms::{format_price, format_time};
    println!(
        "{:<5} {:<12} {:<10} {:>12} {:>12} {:>12} {:>8} {:>10} {:>13} {:>5} {:>9} {:>9} {:>11} {:<20}  address",
        "id",
        "state",
        "zone",
        "capacity",
        "used",
        "room",
        "shards",
        "last seen",
        "audits ok/bad",
        "score",
        "price",
        "egress",
        "bandwidth",
        "until"
    );
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    for h in hosts {
        println!(
            "{:<5} {:<12} {:<10} {:>12} {:>12} {:>12} {:>8} {:>9}s {:>13} {:>5} {:>9} {:>9} {:>11} {:<20}  {}",
            h.id.to_string(),
            h.state.to_string(),
            scatter_core::tree::escape(h.zone.as_bytes()),
            ByteSize(h.capacity).to_string(),
            ByteSize(h.used).to_string(),
            ByteSize(h.room).to_string(),
            h.shards,
            now.saturating_sub(h.last_seen),
            format!("{}/{}", h.audits_passed, h.audits_failed),
            h.reputation.score,
            format_price(h.terms.price),
            format_price(h.terms.egress_price),
            match h.terms.bandwidth {
                0 => "-".to_owned(),
                b => format!("{}/s", ByteSize(b)),
            },
            h.terms.until.map(format_time).unwrap_or_else(|| "-".into()),
            scatter_core::tree::escape(h.address.as_bytes())
        );
    }
}

async fn dev(hosts: usize, dir: &Path) -> Result<()> {
    if hosts == 0 {
        bail!("a grid needs at least one host; pass --hosts 6 for the default 4+2");
    }
    let exe = std::env::current_exe().context("cannot find the scatter executable")?;
    let dir = std::path::absolute(dir)?;
    if dir.join("client").join("keys.age").exists() {
        bail!("{} already holds a grid; pick another --data-dir or remove it", dir.display());
    }
    let opts = GridOptions::default();
    let grid = Grid::start(&exe, &dir, hosts, opts).await?;
    let env = format!(
        "export SCATTER_CONFIG={}\nexport SCATTER_PASSPHRASE={}\n",
        grid.client_dir().display(),
        grid.passphrase()
    );
    scatter_cli::grid::write_private(&dir.join("env"), &env)?;
    println!("A grid of {hosts} hosts runs at {}.", grid.url());
    println!("In another shell: source {}/env; scatter put FILE; scatter ls; scatter status", dir.display());
    println!("Logs are in {}. Press Ctrl-C to stop everything.", dir.display());
    shutdown_signal().await;
    drop(grid);
    println!("Stopped.");
    Ok(())
}

/// `scatter coordinator recover`: rebuilds the data directory, then says what to do and
/// what the rollback to the backup undoes.
async fn recover(data_dir: PathBuf, recovery_key: PathBuf, hosts: Vec<String>) -> Result<()> {
    if let Some(bare) = hosts.iter().find(|h| !h.starts_with("https://") && !h.starts_with("http://")) {
        bail!(
            "--host {} is not a URL; give it as the host's `url` file has it (https://ADDRESS:PORT)",
            escape(bare.as_bytes())
        );
    }
    let opts =
        scatter_coordinator::recover::RecoverOptions { data_dir: data_dir.clone(), key_file: recovery_key, hosts };
    let r = scatter_coordinator::recover::recover(&opts).await?;
    for note in &r.notes {
        eprintln!("note: {note}");
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let age = scatter_cli::terms::format_age(now.saturating_sub(r.time));
    println!(
        "Recovered catalog backup #{} (taken {age} ago) from {} host(s) into {}.",
        r.seq,
        r.hosts_answered,
        data_dir.display()
    );
    println!(
        "The grid is back as it was {age} ago: data committed after that (new snapshots, puts) is not in this catalog. \
         Its shards on hosts are kept for 7 days, not deleted; clients' next backups store that data again. \
         Snapshots made after the backup are gone from the list; nothing security-relevant is undone (a backup follows each such change)."
    );
    println!(
        "Next: start `scatter coordinator --data-dir {} --listen ADDRESS:PORT --public-url URL` with the lost coordinator's listen address and public URL, reachable where it was (move its DNS name or IP here); hosts, profiles and tokens keep working (same CA, fingerprint and signing key).",
        data_dir.display()
    );
    Ok(())
}
