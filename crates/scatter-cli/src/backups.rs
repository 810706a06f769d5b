//! The backup commands: backup, snapshots, ls of a snapshot, diff, find, restore,
//! check-local, recover, forget, prune and check.
//!
//! Exit codes: 0 done; 3 done, but something needs attention (files that could not be read
//! during a backup, missing or corrupt files found by check-local); 1 failed.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use globset::Glob;
use scatter_client::backup::BackupOptions;
use scatter_client::fetch::Fetcher;
use scatter_client::hosts::Hosts;
use scatter_client::restore::{self, LocalState};
use scatter_client::snapshots::{self, SnapshotInfo, Trees};
use scatter_client::upload::Redundancy;
use scatter_core::retention::Policy;
use scatter_core::tree::{escape, Node, NodeKind, TreePath};
use scatter_core::ByteSize;

use crate::placing::CodeArgs;
use crate::{load, mb_per_s, passphrase, Bar};

/// Exit code for "done, but look at what was reported".
pub const EXIT_ATTENTION: i32 = 3;

/// What `scatter backup` was asked to do.
pub struct BackupArgs {
    pub paths: Vec<PathBuf>,
    pub habits: BackupHabits,
    pub tags: Vec<String>,
    pub excludes: Vec<String>,
    pub exclude_files: Vec<PathBuf>,
    pub one_file_system: bool,
    pub hostname: Option<String>,
    pub force: bool,
    pub code: CodeArgs,
    /// Conditions on hosts, over the user's stored policy.
    pub policy: scatter_proto::api::Policy,
    pub limit_upload: Option<ByteSize>,
    /// Object lock and expiry asked for the snapshot.
    pub retention: scatter_proto::api::Retention,
    pub json: bool,
}

/// The backup flags restic users know: where the paths come from, more ways to leave
/// things out, and a dry run.
#[derive(clap::Args, Debug, Default)]
pub struct BackupHabits {
    /// Read the paths to back up from FILE, one per line (empty lines and lines starting
    /// with `#` are skipped; no glob expansion); repeatable, combines with PATHS.
    #[arg(long = "files-from", value_name = "FILE")]
    pub files_from: Vec<PathBuf>,
    /// Like --files-from, but every non-empty line is a path exactly as written.
    #[arg(long = "files-from-verbatim", value_name = "FILE")]
    pub files_from_verbatim: Vec<PathBuf>,
    /// Like --files-from, but paths are separated by NUL bytes (`find -print0`).
    #[arg(long = "files-from-raw", value_name = "FILE")]
    pub files_from_raw: Vec<PathBuf>,
    /// Leave out the contents of a directory holding a file named NAME (keeping that file);
    /// NAME:HEADER only when the file starts with HEADER. Repeatable.
    #[arg(long = "exclude-if-present", value_name = "NAME[:HEADER]")]
    pub exclude_if_present: Vec<String>,
    /// Leave out cache directories marked with a CACHEDIR.TAG file (bford.info/cachedir).
    #[arg(long)]
    pub exclude_caches: bool,
    /// Leave out files larger than SIZE, e.g. 100MiB.
    #[arg(long, value_name = "SIZE", value_parser = scatter_cli::size::parse)]
    pub exclude_larger_than: Option<ByteSize>,
    /// Only say what the backup would add (files new and changed, bytes not stored yet):
    /// everything is read and looked up, nothing is uploaded or committed.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Trust a file's size and mtime alone, whatever its inode number: for the first backup
    /// after a restore (every file has a new inode), or file systems whose inode numbers do
    /// not last (some FUSE and network mounts).
    #[arg(long)]
    pub ignore_inode: bool,
}

impl BackupHabits {
    /// The paths listed in the --files-from* files.
    fn listed_paths(&self) -> Result<Vec<PathBuf>> {
        let read = |f: &PathBuf| {
            std::fs::read(f).with_context(|| format!("cannot read the list of paths {}; fix the path", shown(f)))
        };
        let mut out = Vec::new();
        for f in &self.files_from {
            let bytes = read(f)?;
            let before = out.len();
            for line in bytes.split(|b| *b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let trimmed = line.trim_ascii();
                if !trimmed.is_empty() && !trimmed.starts_with(b"#") {
                    out.push(PathBuf::from(OsStr::from_bytes(trimmed)));
                }
            }
            if out.len() == before {
                bail!("{} lists no paths; write one path per line", shown(f));
            }
        }
        for (files, sep) in [(&self.files_from_verbatim, b'\n'), (&self.files_from_raw, 0u8)] {
            for f in files {
                let bytes = read(f)?;
                let before = out.len();
                out.extend(
                    bytes.split(|b| *b == sep).filter(|p| !p.is_empty()).map(|p| PathBuf::from(OsStr::from_bytes(p))),
                );
                if out.len() == before {
                    bail!("{} lists no paths", shown(f));
                }
            }
        }
        Ok(out)
    }
}

fn hosts(
    coord: &scatter_client::coordinator::Coordinator,
    upload: Option<ByteSize>,
    download: Option<ByteSize>,
) -> Result<Hosts> {
    Ok(coord.hosts()?.with_limits(upload.map(|b| b.0), download.map(|b| b.0)))
}

fn this_host() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// `YYYY-MM-DD hh:mm:ss` (UTC) of a time in nanoseconds since the epoch.
pub fn time_text(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let (y, mo, d) = scatter_core::retention::civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!("{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn rfc3339(ns: i64) -> String {
    let t = time_text(ns);
    format!("{}T{}.{:09}Z", &t[..10], &t[11..], ns.rem_euclid(1_000_000_000))
}

pub async fn backup(a: BackupArgs) -> Result<i32> {
    // Said before the key file is opened, in words: the walk would say "No such file or
    // directory (os error 2)".
    for path in &a.paths {
        if let Err(e) = std::fs::symlink_metadata(path) {
            match e.kind() {
                std::io::ErrorKind::NotFound => {
                    bail!("{} does not exist; check the path, or leave it out of the backup", shown(path))
                }
                _ => bail!("cannot read {} ({e}); check its permissions, or leave it out of the backup", shown(path)),
            }
        }
    }
    let (dir, p) = load()?;
    let keys = scatter_client::profile::Profile::load_keys(&dir, &passphrase(false)?)?;
    let mut excludes = a.excludes;
    for f in &a.exclude_files {
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read exclude file {}", f.display()))?;
        excludes.extend(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from));
    }
    let mut paths = a.paths;
    paths.extend(a.habits.listed_paths()?);
    let mut markers = a
        .habits
        .exclude_if_present
        .iter()
        .map(|m| scatter_client::backup::Marker::parse(m))
        .collect::<Result<Vec<_>, _>>()?;
    if a.habits.exclude_caches {
        markers.push(scatter_client::backup::Marker::cachedir_tag());
    }
    let dry_run = a.habits.dry_run;
    let opts = BackupOptions {
        paths,
        exclude_larger_than: a.habits.exclude_larger_than.map(|b| b.0),
        exclude_if_present: markers,
        dry_run,
        tags: a.tags,
        excludes,
        one_file_system: a.one_file_system,
        redundancy: Redundancy::default(),
        policy: a.policy,
        hostname: a.hostname,
        force: a.force,
        ignore_inode: a.habits.ignore_inode,
        retention: a.retention,
    };
    let coord = p.coordinator()?;
    let opts = BackupOptions { redundancy: a.code.resolve(&coord).await?, ..opts };
    let bar = Arc::new(Bar::new());
    let r = scatter_client::backup::backup(&coord, &keys, &opts, &hosts(&coord, a.limit_upload, None)?, bar.clone())
        .await?;
    drop(bar);
    let s = &r.summary;
    if a.json {
        let errors: Vec<_> = r
            .errors
            .iter()
            .map(|(p, e)| path_json(p.as_os_str().as_bytes(), serde_json::json!({"error": e})))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "dry_run": dry_run,
                "snapshot_id": if dry_run { None } else { Some(&r.snapshot) },
                "parent": r.parent,
                "files_new": s.files_new,
                "files_changed": s.files_changed,
                "files_unmodified": s.files_unmodified,
                "dirs": s.dirs,
                "total_bytes": s.total_bytes,
                "bytes_read": s.bytes_read,
                "bytes_new": s.bytes_new,
                "chunks_new": r.new_chunks,
                "bytes_uploaded": r.bytes_uploaded,
                "seconds": r.elapsed.as_secs_f64(),
                "errors": errors,
                "skipped": r.skipped.iter().map(|(p, kind)| path_json(p.as_os_str().as_bytes(), serde_json::json!({"kind": kind}))).collect::<Vec<_>>(),
            }))?
        );
    } else {
        for (path, e) in &r.errors {
            eprintln!("warning: {} could not be read ({e}); it is not in the snapshot", shown(path));
        }
        for (path, kind) in &r.skipped {
            eprintln!("note: {} is a {kind}, which a snapshot does not hold; skipped", shown(path));
        }
        if dry_run {
            println!(
                "Dry run: {} new, {} changed, {} unmodified files; {} dirs; {} in total, {} read; would add {} in {} chunks. Nothing was uploaded.",
                s.files_new,
                s.files_changed,
                s.files_unmodified,
                s.dirs,
                ByteSize(s.total_bytes),
                ByteSize(s.bytes_read),
                ByteSize(s.bytes_new),
                r.new_chunks
            );
            return Ok(if r.errors.is_empty() { 0 } else { EXIT_ATTENTION });
        }
        println!(
            "Files: {} new, {} changed, {} unmodified; {} dirs; {} in total, {} read, {} new ({} uploaded with redundancy).",
            s.files_new,
            s.files_changed,
            s.files_unmodified,
            s.dirs,
            ByteSize(s.total_bytes),
            ByteSize(s.bytes_read),
            ByteSize(s.bytes_new),
            ByteSize(r.bytes_uploaded)
        );
        println!(
            "Snapshot {} saved in {:.1} s ({:.1} MB/s read).",
            &r.snapshot[..8],
            r.elapsed.as_secs_f64(),
            mb_per_s(s.bytes_read, r.elapsed)
        );
    }
    Ok(if r.errors.is_empty() { 0 } else { EXIT_ATTENTION })
}

fn snapshot_json(s: &SnapshotInfo) -> serde_json::Value {
    serde_json::json!({
        "id": s.id,
        "short_id": s.short_id(),
        "time": rfc3339(s.snapshot.time_ns),
        "hostname": s.snapshot.hostname,
        "username": s.snapshot.username,
        "paths": s.snapshot.paths,
        "tags": s.snapshot.tags,
        "tree": s.snapshot.tree_id().to_string(),
        "parent": s.snapshot.parent,
        "summary": s.snapshot.summary,
        "writer": s.writer.map(|w| w.to_string()),
        "writer_name": s.writer_name,
        "trusted": s.trusted,
        "lock_mode": s.hold.mode,
        "lock_until": s.hold.lock_until,
        "expires": s.hold.expires,
    })
}

/// Who wrote `s`, for messages: `u3 (laptop)`, or `u3`.
fn writer_of(s: &SnapshotInfo) -> String {
    let id = s.writer.map(|w| w.to_string()).unwrap_or_else(|| "an unknown account".into());
    match s.writer_name.is_empty() {
        true => id,
        false => format!("{id} ({})", escape(s.writer_name.as_bytes())),
    }
}

/// The coordinator, the keys and the snapshots they open; those they do not are named on
/// stderr and left out.
pub(crate) async fn open_snapshots(
) -> Result<(scatter_client::coordinator::Coordinator, scatter_core::keys::UserKeys, Vec<SnapshotInfo>)> {
    let (coord, keys, listing) = open_listing().await?;
    Ok((coord, keys, listing.snapshots))
}

/// As [`open_snapshots`], with the snapshots the keys do not open (for `forget`).
async fn open_listing(
) -> Result<(scatter_client::coordinator::Coordinator, scatter_core::keys::UserKeys, snapshots::Listing)> {
    let (dir, p) = load()?;
    let keys = scatter_client::profile::Profile::load_keys(&dir, &passphrase(false)?)?;
    let coord = p.coordinator()?;
    let listing = snapshots::list(&coord, &keys).await?;
    for u in &listing.unreadable {
        eprintln!("warning: {}", escape(u.warning().as_bytes()));
    }
    Ok((coord, keys, listing))
}

/// Names on stderr a snapshot whose files could not be read, left out of a command that
/// goes over every snapshot: one damaged or hostile snapshot (an appender's, whose tree does
/// not exist) must not stop it for all the others.
pub(crate) fn left_out(s: &SnapshotInfo, e: &dyn std::fmt::Display) {
    let short = s.short_id();
    let warning = format!(
        "snapshot {short}, written by {}, could not be read ({e}); it is left out. \
         `scatter check` tells more, `scatter forget {short}` removes it",
        s.writer_label()
    );
    eprintln!("warning: {}", escape(warning.as_bytes()));
}

/// Which snapshots `snapshots` lists.
pub struct Selection {
    pub path: Option<String>,
    pub tag: Option<String>,
    /// Any of these hosts (all when empty).
    pub hosts: Vec<String>,
    /// Only the N newest of each host and path set, as restic's `--latest`.
    pub latest: Option<usize>,
}

impl Selection {
    /// The snapshots selected, in the order of `all` (oldest first).
    fn apply<'a>(&self, all: &'a [SnapshotInfo]) -> Vec<&'a SnapshotInfo> {
        let mut shown: Vec<&SnapshotInfo> = all
            .iter()
            .filter(|s| {
                self.path.as_ref().is_none_or(|p| s.snapshot.paths.iter().any(|x| x == p.trim_end_matches('/')))
            })
            .filter(|s| self.tag.as_ref().is_none_or(|t| s.snapshot.tags.contains(t)))
            .filter(|s| self.hosts.is_empty() || self.hosts.contains(&s.snapshot.hostname))
            .collect();
        if let Some(n) = self.latest {
            let mut seen: std::collections::HashMap<(&str, &[String]), usize> = Default::default();
            let mut keep = vec![false; shown.len()];
            for (i, s) in shown.iter().enumerate().rev() {
                let count = seen.entry((s.snapshot.hostname.as_str(), &s.snapshot.paths[..])).or_default();
                if *count < n {
                    *count += 1;
                    keep[i] = true;
                }
            }
            let mut k = keep.into_iter();
            shown.retain(|_| k.next().unwrap_or(false));
        }
        shown
    }
}

/// Why the newest snapshot that counts as the user's is older than `limit` at `now` (or
/// there is none), for `snapshots --warn-older-than`; `None` when one is recent enough. Times
/// are the coordinator's commit times, which a source's wrong clock cannot move.
pub fn stale(shown: &[&SnapshotInfo], limit: std::time::Duration, now: u64) -> Option<String> {
    let newest = shown.iter().filter(|s| s.trusted).map(|s| s.created).max();
    let Some(newest) = newest else {
        return Some("there is no snapshot of yours among those selected; check that backups run".into());
    };
    let age = now.saturating_sub(newest);
    (age > limit.as_secs()).then(|| {
        format!(
            "the newest snapshot of yours among those selected was committed {} ago, longer than {}; check that backups run",
            crate::duration::text(std::time::Duration::from_secs(age)),
            crate::duration::text(limit)
        )
    })
}

/// The Prometheus text `snapshots --metrics-file` writes for the profile in `profile`: the
/// newest of the user's selected snapshots (commit time), how many are selected, when this
/// was checked and, with a limit, whether the newest is stale.
pub fn metrics_text(profile: &Path, shown: &[&SnapshotInfo], stale: Option<bool>, now: u64) -> String {
    let label = profile.to_string_lossy().replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let label = format!("{{profile=\"{label}\"}}");
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, value: u64| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name}{label} {value}\n"));
    };
    if let Some(newest) = shown.iter().filter(|s| s.trusted).map(|s| s.created).max() {
        metric(
            "scatter_backup_newest_snapshot_timestamp_seconds",
            "Commit time of the newest selected snapshot of the user's (the coordinator's clock).",
            newest,
        );
    }
    metric("scatter_backup_snapshots", "Snapshots selected.", shown.len() as u64);
    metric("scatter_backup_checked_timestamp_seconds", "When the snapshots were last listed.", now);
    if let Some(stale) = stale {
        metric(
            "scatter_backup_stale",
            "1 when the newest selected snapshot is older than --warn-older-than, or there is none.",
            u64::from(stale),
        );
    }
    out
}

/// `scatter snapshots`: lists the selected snapshots; with `warn_older_than`, warns and exits
/// [`EXIT_ATTENTION`] when the newest one of the user's is older than that; with
/// `metrics_file`, writes [`metrics_text`] there.
pub async fn list(
    selection: Selection,
    warn_older_than: Option<std::time::Duration>,
    metrics_file: Option<&Path>,
    json: bool,
) -> Result<i32> {
    let (_, _, all) = open_snapshots().await?;
    let shown = selection.apply(&all);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let warning = warn_older_than.and_then(|limit| stale(&shown, limit, now));
    if let Some(file) = metrics_file {
        let (dir, _) = load()?;
        let text = metrics_text(&dir, &shown, warn_older_than.map(|_| warning.is_some()), now);
        scatter_net::tls::write_public(file, text.as_bytes()).with_context(|| {
            format!("cannot write the metrics file {}; check that its folder exists and is writable", self::shown(file))
        })?;
    }
    let code = match &warning {
        Some(why) => {
            eprintln!("warning: {why}");
            EXIT_ATTENTION
        }
        None => 0,
    };
    if json {
        let v: Vec<_> = shown.iter().map(|s| snapshot_json(s)).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(code);
    }
    println!("{:<9} {:<20} {:<16} {:<12} {:<12} {:>10}  paths", "id", "time (UTC)", "host", "writer", "tags", "size");
    for s in &shown {
        println!(
            "{:<9} {:<20} {:<16} {:<12} {:<12} {:>10}  {}",
            format!("{}{}", s.short_id(), if s.trusted { "" } else { "!" }),
            time_text(s.snapshot.time_ns),
            escape(s.snapshot.hostname.as_bytes()),
            escape(s.writer_label().as_bytes()),
            escape(s.snapshot.tags.join(",").as_bytes()),
            ByteSize(s.snapshot.summary.total_bytes).to_string(),
            escape(s.snapshot.paths.join(" ").as_bytes())
        );
        let hold = crate::locks::describe(&s.hold);
        if !hold.is_empty() {
            println!("          {hold}");
        }
    }
    println!("{} snapshot(s)", shown.len());
    let untrusted = shown.iter().filter(|s| !s.trusted).count();
    if untrusted > 0 {
        println!(
            "{untrusted} marked ! were written by delegates you do not trust: `latest`, recover, check-local and backup parents ignore them; restore one by its id, or `scatter delegate trust USER`."
        );
    }
    Ok(code)
}

/// Whether `ls` was given a snapshot (`latest`, or 4+ hex digits, optionally `:PATH`).
pub fn looks_like_snapshot(spec: &str) -> bool {
    let (s, _) = snapshots::split_spec(spec);
    s == "latest" || (s.len() >= 4 && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn kind_char(n: &Node) -> char {
    match n.kind {
        NodeKind::File { .. } => '-',
        NodeKind::Dir { .. } => 'd',
        NodeKind::Symlink { .. } => 'l',
    }
}

/// A path (raw bytes) as JSON fields added to `fields`: `path` is exactly the path when it is
/// valid UTF-8 (JSON's own escaping keeps control characters harmless); otherwise it is the
/// escaped form that text output shows (`\xNN` for each byte that is not UTF-8, a backslash
/// doubled), and `path_base64` holds the exact bytes.
fn path_json(bytes: &[u8], mut fields: serde_json::Value) -> serde_json::Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => fields["path"] = text.into(),
        Err(_) => {
            fields["path"] = escape(bytes).into();
            fields["path_base64"] = scatter_client::snapshots::base64(bytes).into();
        }
    }
    fields
}

/// A local path for a message, escaped.
fn shown(path: &Path) -> String {
    escape(path.as_os_str().as_bytes())
}

fn node_json(path: &TreePath, n: &Node) -> serde_json::Value {
    let kind = match n.kind {
        NodeKind::File { .. } => "file",
        NodeKind::Dir { .. } => "dir",
        NodeKind::Symlink { .. } => "symlink",
    };
    path_json(
        &path.to_absolute_bytes(),
        serde_json::json!({"type": kind, "size": n.size, "mode": n.mode, "mtime": rfc3339(n.mtime_ns), "uid": n.uid, "gid": n.gid}),
    )
}

/// A path given on the command line as a path inside a snapshot, as `ls` shows it (escaped
/// names such as `caf\xe9` stand for their raw bytes).
fn snapshot_path(given: &str) -> Result<TreePath> {
    TreePath::parse(&scatter_core::tree::unescape(given))
        .map_err(|e| anyhow::anyhow!("`{given}` is not a path in a snapshot ({e})"))
}

pub async fn ls_snapshot(spec: &str, json: bool) -> Result<i32> {
    let (coord, keys, all) = open_snapshots().await?;
    let (s, path) = snapshots::split_spec(spec);
    let snap = snapshots::resolve(&all, s)?;
    let mut trees = Trees::new(Fetcher::new(&coord, &coord.hosts()?, &keys));
    let root = snap.snapshot.tree_id();
    let clean = snapshot_path(path.unwrap_or("/"))?;
    let entries = match trees.lookup(root, &clean).await? {
        None => trees.walk(root, &TreePath::root()).await?,
        Some(node) => {
            let mut v = vec![(clean.clone(), node.clone())];
            if let Some(sub) = node.subtree() {
                v.extend(trees.walk(sub, &clean).await?);
            }
            v
        }
    };
    if json {
        let v: Vec<_> = entries.iter().map(|(p, n)| node_json(p, n)).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (p, n) in &entries {
            println!("{}{:04o} {:>12}  {}  {}", kind_char(n), n.mode, n.size, time_text(n.mtime_ns), p.display());
        }
    }
    Ok(0)
}

pub async fn diff(a: &str, b: &str, json: bool) -> Result<i32> {
    let (coord, keys, all) = open_snapshots().await?;
    let (sa, sb) = (snapshots::resolve(&all, a)?, snapshots::resolve(&all, b)?);
    let mut trees = Trees::new(Fetcher::new(&coord, &coord.hosts()?, &keys));
    let changes = snapshots::diff(&mut trees, sa.snapshot.tree_id(), sb.snapshot.tree_id()).await?;
    if json {
        let v: Vec<_> =
            changes.iter().map(|(p, c)| path_json(&p.to_absolute_bytes(), serde_json::json!({"change": c}))).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (p, c) in &changes {
            let mark = match c {
                snapshots::Change::Added => '+',
                snapshots::Change::Removed => '-',
                snapshots::Change::Modified => 'M',
                snapshots::Change::Metadata => 'U',
            };
            println!("{mark}    {}", p.display());
        }
        println!("{} change(s) from {} to {}", changes.len(), sa.short_id(), sb.short_id());
    }
    Ok(0)
}

pub async fn find(pattern: &str, json: bool) -> Result<i32> {
    let glob = Glob::new(pattern).with_context(|| format!("`{pattern}` is not a valid pattern"))?.compile_matcher();
    let (coord, keys, all) = open_snapshots().await?;
    let mut trees = Trees::new(Fetcher::new(&coord, &coord.hosts()?, &keys));
    let (mut hits, mut searched) = (Vec::new(), 0);
    for s in &all {
        let entries = match trees.walk(s.snapshot.tree_id(), &TreePath::root()).await {
            Ok(entries) => entries,
            Err(e) => {
                left_out(s, &e);
                continue;
            }
        };
        searched += 1;
        for (p, n) in entries {
            let abs = p.to_absolute_bytes();
            if glob.is_match(Path::new(OsStr::from_bytes(&abs))) || glob.is_match(Path::new(OsStr::from_bytes(&n.name)))
            {
                hits.push((s, p, n));
            }
        }
    }
    if json {
        let v: Vec<_> = hits
            .iter()
            .map(|(s, p, n)| {
                let mut j = node_json(p, n);
                j["snapshot"] = serde_json::Value::from(s.id.clone());
                j
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (s, p, n) in &hits {
            println!("{}  {}{:04o} {:>12}  {}", s.short_id(), kind_char(n), n.mode, n.size, p.display());
        }
        let with_hits: std::collections::HashSet<&str> = hits.iter().map(|(s, _, _)| s.id.as_str()).collect();
        println!("{} match(es) in {} of the {searched} snapshot(s) searched", hits.len(), with_hits.len());
    }
    Ok(0)
}

pub async fn restore(
    spec: &str,
    target: &Path,
    include: &[String],
    limit_download: Option<ByteSize>,
    sparse: bool,
    json: bool,
) -> Result<i32> {
    if target.exists() && !target.is_dir() {
        bail!("{} is not a folder; --target names the folder to restore into (made if missing)", shown(target));
    }
    let (coord, keys, all) = open_snapshots().await?;
    let (s, path) = snapshots::split_spec(spec);
    let snap = snapshots::resolve(&all, s)?;
    let bar = Arc::new(Bar::new());
    let fetcher = Fetcher::new(&coord, &hosts(&coord, None, limit_download)?.report_downloads(bar.clone()), &keys);
    let mut trees = Trees::new(fetcher.clone());
    let mut entries = restore::plan_restore(&mut trees, snap, path, include).await?;
    if entries.is_empty() {
        bail!("nothing in snapshot {} matches; check the path and --include patterns", snap.short_id());
    }
    // Made only once there is something to restore: a refused restore leaves no empty folder.
    std::fs::create_dir_all(target).with_context(|| format!("cannot create {}", shown(target)))?;
    if !snap.trusted {
        // Written by a delegate the owner does not trust: its metadata could grant privileges.
        restore::distrust_metadata(entries.iter_mut().map(|(_, node)| node));
    }
    let r = restore::restore_entries(&fetcher, &keys, target, entries, sparse, &*bar).await?;
    bar.finish();
    report_restore(&r, json, &format!("Restored snapshot {} to {}", snap.short_id(), shown(target)))?;
    Ok(0)
}

fn report_restore(r: &restore::RestoreReport, json: bool, what: &str) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    for (p, w) in &r.warnings {
        eprintln!("warning: {p}: {w}");
    }
    for (host, shard, problem) in &r.fetch.bad_shards {
        eprintln!("warning: shard {shard} on host {host} is bad ({problem}); reported to the coordinator");
    }
    // Counts that are zero are left out, but files written: "0 files written" is news.
    let mut also: Vec<String> = Vec::new();
    if r.files_unchanged > 0 {
        also.push(format!("{} already right", r.files_unchanged));
    }
    for (n, one, many) in
        [(r.dirs, "dir", "dirs"), (r.symlinks, "symlink", "symlinks"), (r.hardlinks, "hard link", "hard links")]
    {
        if n > 0 {
            also.push(counted(n, one, many));
        }
    }
    println!(
        "{what}: {} written ({}{}){} in {:.1} s ({:.1} MB/s){}.",
        counted(r.files_restored, "file", "files"),
        ByteSize(r.bytes_written),
        if r.bytes_resumed > 0 {
            format!(", and {} an interrupted run had written, checked and kept", ByteSize(r.bytes_resumed))
        } else {
            String::new()
        },
        also.iter().map(|a| format!(", {a}")).collect::<String>(),
        r.elapsed.as_secs_f64(),
        mb_per_s(r.bytes_written, r.elapsed),
        if r.fetch.reconstructed_packs > 0 {
            format!(", {} rebuilt from parity", counted(r.fetch.reconstructed_packs as u64, "pack", "packs"))
        } else {
            String::new()
        }
    );
    Ok(())
}

/// `n` with the word for one or for many.
fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn absolute(path: Option<PathBuf>) -> Result<Option<PathBuf>> {
    path.map(|p| std::path::absolute(&p).with_context(|| format!("bad path {}", shown(&p)))).transpose()
}

/// The snapshots `check-local` and `recover` compare with: the one asked for, or the newest
/// covering `path`; without either, the newest of each backup set this machine made.
fn compared_with<'a>(
    all: &'a [SnapshotInfo],
    snapshot: Option<&str>,
    path: Option<&Path>,
) -> Result<Vec<&'a SnapshotInfo>> {
    Ok(match (snapshot, path) {
        (None, None) => restore::newest_of_each_set(all, &this_host())?,
        _ => vec![restore::pick_for_path(all, snapshot, path, &this_host())?],
    })
}

/// A snapshot's backed-up paths, for a summary line.
fn paths_of(snap: &SnapshotInfo) -> String {
    snap.snapshot.paths.iter().map(|p| escape(p.as_bytes())).collect::<Vec<_>>().join(", ")
}

pub async fn check_local(path: Option<PathBuf>, snapshot: Option<String>, json: bool) -> Result<i32> {
    let path = absolute(path)?;
    let (coord, keys, all) = open_snapshots().await?;
    let snaps = compared_with(&all, snapshot.as_deref(), path.as_deref())?;
    let mut trees = Trees::new(Fetcher::new(&coord, &coord.hosts()?, &keys));
    let mut lost_in_all = 0;
    let mut found = Vec::new();
    for snap in &snaps {
        let bar = Bar::new();
        let findings = restore::check_local(&mut trees, &keys, snap, path.as_deref(), &bar).await?;
        drop(bar);
        let lost = findings.iter().filter(|f| matches!(f.state, LocalState::Missing | LocalState::Corrupt)).count();
        lost_in_all += lost;
        if json {
            found.extend(findings.iter().map(|f| {
                path_json(&f.path.to_absolute_bytes(), serde_json::json!({"state": f.state, "snapshot": snap.id}))
            }));
            continue;
        }
        for f in &findings {
            let word = match f.state {
                LocalState::Missing => "missing ",
                LocalState::Corrupt => "corrupt ",
                LocalState::Modified => "modified",
                LocalState::New => "new     ",
            };
            println!("{word}  {}", f.path.display());
        }
        println!(
            "Compared with snapshot {}{}: {lost} missing or corrupt, {} modified, {} new.{}",
            snap.short_id(),
            if snaps.len() > 1 { format!(" (of {})", paths_of(snap)) } else { String::new() },
            findings.iter().filter(|f| f.state == LocalState::Modified).count(),
            findings.iter().filter(|f| f.state == LocalState::New).count(),
            if lost > 0 { " Run `scatter recover` to bring back what was lost." } else { "" }
        );
    }
    if json {
        let ids: Vec<&str> = snaps.iter().map(|s| s.id.as_str()).collect();
        let v = serde_json::json!({"snapshot": snaps[0].id, "snapshots": ids, "findings": found});
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(if lost_in_all > 0 { EXIT_ATTENTION } else { 0 })
}

pub async fn recover(path: Option<PathBuf>, snapshot: Option<String>, force: bool, json: bool) -> Result<i32> {
    let path = absolute(path)?;
    let (coord, keys, all) = open_snapshots().await?;
    let fetcher = Fetcher::new(&coord, &coord.hosts()?, &keys);
    let mut trees = Trees::new(fetcher.clone());
    for snap in compared_with(&all, snapshot.as_deref(), path.as_deref())? {
        recover_from(&fetcher, &mut trees, &keys, snap, path.as_deref(), force, json).await?;
    }
    Ok(0)
}

/// `recover` from one snapshot, with the fetcher and the trees read so far.
async fn recover_from(
    fetcher: &Arc<Fetcher>,
    trees: &mut Trees,
    keys: &scatter_core::keys::UserKeys,
    snap: &SnapshotInfo,
    path: Option<&Path>,
    force: bool,
    json: bool,
) -> Result<()> {
    // `recover` writes to the paths the snapshot names, in place: an untrusted delegate's
    // snapshot may name any path (an ~/.ssh/authorized_keys of its own, say).
    if !snap.trusted {
        bail!(
            "snapshot {} was written by {}, a delegate you do not trust, and `recover` writes in place to \
             the paths it names; restore it into a folder of its own (`scatter restore {} --target DIR`) and \
             look before you copy anything back, or trust that delegate (`scatter delegate trust`)",
            snap.short_id(),
            writer_of(snap),
            snap.short_id()
        );
    }
    let findings = restore::check_local(trees, keys, snap, path, &scatter_client::NoProgress).await?;
    let wanted =
        |s: LocalState| matches!(s, LocalState::Missing | LocalState::Corrupt) || (force && s == LocalState::Modified);
    if !findings.iter().any(|f| wanted(f.state) && f.node.is_some()) {
        if !json {
            println!(
                "Nothing is missing or corrupt compared with snapshot {} (of {}).",
                snap.short_id(),
                paths_of(snap)
            );
        }
        return Ok(());
    }
    let bar = Bar::new();
    let (r, kept) = restore::recover(fetcher, keys, findings, force, snap.trusted, &bar).await?;
    drop(bar);
    report_restore(&r, json, &format!("Recovered from snapshot {} (of {})", snap.short_id(), paths_of(snap)))?;
    if kept > 0 && !json {
        println!(
            "{kept} file(s) changed since the snapshot were left alone; --force puts the snapshot's version back."
        );
    }
    Ok(())
}

pub async fn forget(
    ids: Vec<String>,
    policy: Policy,
    prune_after: bool,
    dry_run: bool,
    max_unused: u8,
    json: bool,
) -> Result<i32> {
    // Mistakes on the command line, told before the key file is opened, with exit code 2.
    let mistake = match (ids.is_empty(), policy.is_empty()) {
        (false, false) => Some("give snapshot ids or a --keep-* policy, not both"),
        (true, true) => Some("give snapshot ids to forget, or a policy such as --keep-last 7 --keep-daily 14"),
        _ => None,
    };
    if let Some(m) = mistake {
        eprintln!("error: {m}");
        return Ok(2);
    }
    let (coord, keys, listing) = open_listing().await?;
    let all = listing.snapshots;
    // Ids of snapshots the keys cannot open are forgotten by hand only, never by a policy.
    let mut unreadable = Vec::new();
    let mut readable = Vec::new();
    for i in &ids {
        let spec = i.to_ascii_lowercase();
        let found: Vec<&str> = listing
            .unreadable
            .iter()
            .map(|u| u.id.as_str())
            .filter(|id| spec.len() >= 4 && id.starts_with(&spec))
            .collect();
        match (found.as_slice(), snapshots::resolve(&all, i)) {
            ([one], Err(_)) => unreadable.push(one.to_string()),
            ([], found) => readable.push(found?),
            _ => bail!("several snapshots start with `{i}`; give more digits of the id"),
        }
    }
    let doomed: Vec<&SnapshotInfo> = match ids.is_empty() {
        false => readable,
        true => snapshots::to_forget(&all, &policy, true),
    };
    // A policy passes over locked snapshots (the coordinator would refuse the whole
    // request); ids given by hand are sent as they are, and refused if locked.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (locked, doomed): (Vec<&SnapshotInfo>, Vec<&SnapshotInfo>) = match ids.is_empty() {
        true => doomed.into_iter().partition(|s| s.hold.lock_until.is_some_and(|t| t > now)),
        false => (Vec::new(), doomed),
    };
    let mut gone: Vec<String> = doomed.iter().map(|s| s.id.clone()).collect();
    gone.extend(unreadable.iter().cloned());
    // Said once the coordinator has done it: a refused request removed nothing.
    let removed = if dry_run { 0 } else { coord.forget(gone.clone()).await? };
    if !json {
        let verb = if dry_run { "would remove" } else { "removed" };
        for s in &locked {
            println!("keep {}  {}  ({})", s.short_id(), time_text(s.snapshot.time_ns), crate::locks::describe(&s.hold));
        }
        for s in &doomed {
            let paths = escape(s.snapshot.paths.join(" ").as_bytes());
            println!("{verb} {}  {}  {paths}", s.short_id(), time_text(s.snapshot.time_ns));
        }
        for id in &unreadable {
            let short = escape(id.get(..8).unwrap_or(id).as_bytes());
            println!("{verb} {short}  (cannot be opened with your keys)");
        }
    }
    let pruned = if prune_after && !dry_run {
        Some(
            scatter_client::prune::prune(
                &coord,
                &keys,
                &coord.hosts()?,
                max_unused,
                CodeArgs::default().resolve(&coord).await?,
            )
            .await?,
        )
    } else {
        None
    };
    if json {
        let ids = &gone;
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"removed": removed, "ids": ids, "dry_run": dry_run, "prune": pruned})
            )?
        );
    } else if dry_run {
        println!(
            "Would remove {} snapshot(s) and keep {}; nothing was removed (--dry-run).",
            gone.len(),
            all.len() - doomed.len()
        );
    } else {
        println!("{removed} snapshot(s) removed, {} kept.", all.len() - doomed.len());
        if let Some(p) = &pruned {
            print_prune(p);
        }
    }
    Ok(0)
}

fn print_prune(p: &scatter_client::prune::PruneReport) {
    println!(
        "Pruned: {} chunks ({}) dropped, {} packs repacked ({} moved), {} packs released; hosts delete their shards once the release grace ends.",
        p.chunks_removed,
        ByteSize(p.bytes_removed),
        p.packs_repacked,
        ByteSize(p.bytes_repacked),
        p.packs_released
    );
}

pub async fn prune(max_unused: u8, json: bool) -> Result<i32> {
    let (dir, p) = load()?;
    let keys = scatter_client::profile::Profile::load_keys(&dir, &passphrase(false)?)?;
    let coord = p.coordinator()?;
    let r = scatter_client::prune::prune(
        &coord,
        &keys,
        &coord.hosts()?,
        max_unused,
        CodeArgs::default().resolve(&coord).await?,
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print_prune(&r);
    }
    Ok(0)
}

pub async fn check(read_data: bool, subset: Option<String>, json: bool) -> Result<i32> {
    let fraction = match subset {
        Some(s) => {
            let n: f64 = s
                .trim_end_matches('%')
                .parse()
                .ok()
                .filter(|n: &f64| *n > 0.0 && *n <= 100.0)
                .with_context(|| format!("--read-data-subset takes a percentage such as 10%, not `{s}`"))?;
            n / 100.0
        }
        None if read_data => 1.0,
        None => 0.0,
    };
    let (dir, p) = load()?;
    let keys = scatter_client::profile::Profile::load_keys(&dir, &passphrase(false)?)?;
    let bar = Bar::new();
    let coord = p.coordinator()?;
    let r = scatter_client::check::check(&coord, &keys, &coord.hosts()?, fraction, &bar).await?;
    drop(bar);
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        for e in &r.errors {
            eprintln!("error: {e}");
        }
        println!(
            "Checked {} snapshots, {} trees, {} chunks; {} chunks ({}) read back and verified{}. {}",
            r.snapshots,
            r.trees,
            r.chunks,
            r.chunks_read,
            ByteSize(r.bytes_read),
            if r.packs_rebuilt > 0 {
                format!(", {} packs rebuilt from parity", r.packs_rebuilt)
            } else {
                String::new()
            },
            if r.errors.is_empty() { "No errors." } else { "Errors were found." }
        );
    }
    Ok(if r.errors.is_empty() { 0 } else { 1 })
}

/// Refuses a `copy` into the profile it copies from, before any passphrase is asked for.
pub fn copy_target_check(to: &Path) -> Result<()> {
    let (from_dir, _) = load()?;
    if std::fs::canonicalize(&from_dir).ok() == std::fs::canonicalize(to).ok() {
        bail!("--to names the profile copied from; give another profile's folder");
    }
    Ok(())
}

/// `scatter copy`: the chosen snapshots (default: all of the user's own) into the profile in
/// `to`, each unless a copy of it is there already.
pub async fn copy(specs: &[String], to: &Path, to_passphrase: &str, code: CodeArgs, json: bool) -> Result<i32> {
    use scatter_client::copy::{already_copied, copy_snapshot, Destination};
    let dest_profile = scatter_client::profile::Profile::load(to)?;
    let dest_keys = scatter_client::profile::Profile::load_keys(to, to_passphrase)
        .with_context(|| format!("cannot open the keys of the destination profile {}", shown(to)))?;
    let dest_coord = dest_profile.coordinator()?;
    let dest_hosts = dest_coord.hosts()?;
    let (coord, keys, all) = open_snapshots().await?;
    let chosen: Vec<&SnapshotInfo> = if specs.is_empty() {
        all.iter().filter(|s| s.trusted).collect()
    } else {
        specs.iter().map(|s| snapshots::resolve(&all, s)).collect::<Result<_, _>>()?
    };
    // A copy is committed by this device, so the destination would take a delegate's
    // snapshot for its own (`latest`, recover, backup parents): only trusted ones go.
    if let Some(s) = chosen.iter().find(|s| !s.trusted) {
        bail!(
            "snapshot {} was written by {}, a delegate you do not trust, and its copy would count as your own there; `scatter delegate trust` it first, or restore it by id instead",
            s.short_id(),
            s.writer_label()
        );
    }
    // What the destination holds already (a write-only destination cannot list: copy all).
    let there = match snapshots::list(&dest_coord, &dest_keys).await {
        Ok(there) => there.snapshots,
        Err(scatter_client::ClientError::Api { code: scatter_proto::api::ErrorCode::Forbidden, .. }) => Vec::new(),
        Err(e) => return Err(e).context("cannot list the destination's snapshots"),
    };
    let dest = Destination {
        coord: &dest_coord,
        keys: &dest_keys,
        hosts: &dest_hosts,
        redundancy: code.resolve(&dest_coord).await?,
        policy: Default::default(),
    };
    let fetcher = Fetcher::new(&coord, &coord.hosts()?, &keys);
    let mut results = Vec::new();
    let mut done: Vec<&str> = Vec::new();
    for snap in chosen {
        if done.contains(&snap.id.as_str()) {
            continue;
        }
        done.push(&snap.id);
        if already_copied(&snap.snapshot, &there) {
            if !json {
                println!("{}  already in the destination; skipped", snap.short_id());
            }
            results.push(serde_json::json!({"id": snap.id, "skipped": true}));
            continue;
        }
        let bar = Bar::new();
        let r = copy_snapshot(&fetcher, snap, &dest, &bar).await?;
        drop(bar);
        if !json {
            println!(
                "{}  copied as {} ({} new chunks, {} new, {} uploaded with redundancy)",
                snap.short_id(),
                &r.snapshot[..8],
                r.new_chunks,
                ByteSize(r.new_bytes),
                ByteSize(r.bytes_uploaded)
            );
        }
        results.push(serde_json::json!({
            "id": snap.id, "copy": r.snapshot, "new_chunks": r.new_chunks,
            "new_bytes": r.new_bytes, "bytes_uploaded": r.bytes_uploaded,
        }));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "snapshots": results }))?);
    }
    Ok(0)
}
