//! Acceptance tests of the habits restic users bring (issue 19): passphrase files and
//! commands, backup --dry-run and its filters, snapshot selection, retention flags, tags,
//! stats, dump, completions and the man page. Real `scatter` processes on a small grid.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::common;
use common::*;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Runs `scatter ARGS` as the grid's user without SCATTER_PASSPHRASE, with `vars`, stdin closed.
fn without_passphrase(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(EXE);
    cmd.args(args)
        .env("SCATTER_CONFIG", env.grid.client_dir())
        .env_remove("SCATTER_PASSPHRASE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().expect("run scatter")
}

/// The stderr of a command that must fail with exit code 1 and a one-line message.
fn one_sentence_failure(out: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{what} should fail with 1: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{what}: one line expected: {err}");
    assert!(err.starts_with("error: "), "{what}: {err}");
    err
}

#[tokio::test(flavor = "multi_thread")]
async fn passphrase_from_a_file_or_a_command() {
    let env = grid(3).await;
    let pass = env.grid.passphrase().to_owned();
    let file = env.path("pass");
    std::fs::write(&file, format!("{pass}\n")).expect("write");

    // The variable and the flag, each with a trailing newline that is dropped.
    ok(without_passphrase(&env, &["ls"], &[("SCATTER_PASSPHRASE_FILE", s(&file))]), "ls with a passphrase file");
    ok(without_passphrase(&env, &["ls", "--passphrase-file", s(&file)], &[]), "ls --passphrase-file");
    let cmd = format!("printf '%s\\n' '{pass}'");
    ok(without_passphrase(&env, &["ls"], &[("SCATTER_PASSPHRASE_COMMAND", &cmd)]), "ls with a passphrase command");
    ok(without_passphrase(&env, &["ls", "--passphrase-command", &cmd], &[]), "ls --passphrase-command");

    // Only one trailing newline goes: a second one is part of the (then wrong) passphrase.
    std::fs::write(&file, format!("{pass}\n\n")).expect("write");
    let out = without_passphrase(&env, &["ls", "--passphrase-file", s(&file)], &[]);
    assert!(!out.status.success(), "a passphrase with an extra newline must not open the keys");

    let missing = env.path("no-such-file");
    let out = without_passphrase(&env, &["ls", "--passphrase-file", s(&missing)], &[]);
    let err = one_sentence_failure(&out, "a missing passphrase file");
    assert!(err.contains("cannot read the passphrase file") && err.contains("no-such-file"), "{err}");

    let out = without_passphrase(&env, &["ls"], &[("SCATTER_PASSPHRASE_COMMAND", "echo nope >&2; exit 7")]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    // The command's own stderr passes through; ours is the last line, one sentence.
    let last = err.trim_end().lines().last().expect("a message");
    assert!(last.starts_with("error: the passphrase command") && last.contains("exit status: 7"), "{err}");

    let out = without_passphrase(&env, &["ls", "--passphrase-file", s(&file), "--passphrase-command", "true"], &[]);
    one_sentence_failure(&out, "both a file and a command");
    // Commands that need no passphrase do not run the command (restic's issue 2951).
    let marker = env.path("ran");
    let cmd = format!("touch {}; exit 1", s(&marker));
    ok(without_passphrase(&env, &["status"], &[("SCATTER_PASSPHRASE_COMMAND", &cmd)]), "status");
    assert!(!marker.exists(), "the passphrase command ran for a command that needs no passphrase");
}

/// Every shard file on the grid's hosts.
fn all_shards(env: &Env, hosts: usize) -> usize {
    (0..hosts).map(|i| shard_files(&env.grid.host_dir(i)).len()).sum()
}

fn snapshot_count(env: &Env) -> usize {
    json(&env.ok(&["snapshots", "--json"])).as_array().expect("array").len()
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_counts_what_a_backup_adds_and_filters_apply() {
    let env = grid(3).await;
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    std::fs::create_dir_all(src.join("skip")).expect("mkdir");
    std::fs::create_dir_all(src.join("cache")).expect("mkdir");
    for (name, len, seed) in [("a.bin", 300_000, 1), ("sub/c.bin", 200_000, 2), ("big.bin", 2_000_000, 3)] {
        std::fs::rename(env.write_random("tmp", len, seed), src.join(name)).expect("mv");
    }
    std::fs::write(src.join("b.txt"), b"small file").expect("write");
    std::fs::write(src.join("skip/.nobackup"), b"").expect("write");
    std::fs::write(src.join("skip/secret.txt"), b"do not back up").expect("write");
    std::fs::write(src.join("cache/CACHEDIR.TAG"), b"Signature: 8a477f597d28d172789f06886806bc55\n").expect("write");
    std::fs::write(src.join("cache/blob"), b"cached").expect("write");
    std::fs::write(src.join("scratch.tmp"), b"left out by a glob").expect("write");
    let fifo = std::process::Command::new("mkfifo").arg(src.join("pipe")).status().expect("mkfifo");
    assert!(fifo.success());
    let list = env.path("list");
    std::fs::write(&list, format!("# what to back up\n\n{}\n", s(&src))).expect("write");
    // A size without its unit is refused, not read as bytes: `10` meant 10 MiB to its user,
    // and the backup left out every file above ten bytes and said it succeeded.
    for flag in ["--exclude-larger-than", "--limit-upload"] {
        let err = env.fails(&["backup", s(&src), flag, "10"]);
        assert!(err.contains("has no unit"), "{flag}: {err}");
    }
    let flags = [
        "--files-from",
        s(&list),
        "--exclude-if-present",
        ".nobackup",
        "--exclude-caches",
        "--exclude-larger-than",
        "1MB",
        "--exclude",
        "*.tmp",
        "--json",
    ];
    let backup = |dry: bool| {
        let mut args = vec!["backup"];
        args.extend_from_slice(&flags);
        if dry {
            args.push("--dry-run");
        }
        json(&env.ok(&args))
    };

    let shards = all_shards(&env, 3);
    let dry = backup(true);
    assert_eq!(dry["dry_run"], true);
    assert!(dry["snapshot_id"].is_null(), "{dry}");
    assert_eq!(snapshot_count(&env), 0, "a dry run commits nothing");
    assert_eq!(all_shards(&env, 3), shards, "a dry run uploads nothing");
    let real = backup(false);
    // a.bin, b.txt, sub/c.bin and the two markers; big.bin and the marked dirs' files are out.
    assert_eq!(real["files_new"], 5, "{real}");
    for key in ["files_new", "files_changed", "files_unmodified", "dirs", "total_bytes", "bytes_new"] {
        assert_eq!(dry[key], real[key], "{key}: dry run {dry} vs backup {real}");
    }
    assert!(real["bytes_new"].as_u64().expect("bytes") > 500_000, "{real}");

    let listed = env.ok(&["ls", "latest"]);
    assert!(listed.contains("skip/.nobackup") && listed.contains("cache/CACHEDIR.TAG"), "{listed}");
    for gone in ["big.bin", "secret.txt", "cache/blob"] {
        assert!(!listed.contains(gone), "{gone} should be left out: {listed}");
    }
    // What the backup left out, by any rule, is not "new" to check-local; a new file is.
    let checked = json(&env.ok(&["check-local", s(&src), "--json"]));
    assert_eq!(checked["findings"], serde_json::json!([]), "{checked}");
    std::fs::write(src.join("skip/more.txt"), b"still behind the marker").expect("write");
    std::fs::write(src.join("sub/fresh.txt"), b"new").expect("write");
    let checked = json(&env.ok(&["check-local", s(&src), "--json"]));
    let found = checked["findings"].as_array().expect("findings");
    assert_eq!(found.len(), 1, "{checked}");
    assert!(found[0]["path"].as_str().is_some_and(|p| p.ends_with("sub/fresh.txt")), "{checked}");
    std::fs::remove_file(src.join("sub/fresh.txt")).expect("rm");

    // A second round: one file changed, one new; the dry run predicts the backup exactly.
    std::fs::write(src.join("b.txt"), b"small file, edited").expect("write");
    std::fs::rename(env.write_random("tmp", 150_000, 4), src.join("sub/d.bin")).expect("mv");
    let shards = all_shards(&env, 3);
    let dry = backup(true);
    assert_eq!((dry["files_new"].as_u64(), dry["files_changed"].as_u64()), (Some(1), Some(1)), "{dry}");
    assert_eq!(dry["files_unmodified"], 4, "{dry}");
    assert_eq!(snapshot_count(&env), 1);
    assert_eq!(all_shards(&env, 3), shards, "a dry run uploads nothing");
    let real = backup(false);
    for key in ["files_new", "files_changed", "files_unmodified", "dirs", "total_bytes", "bytes_new"] {
        assert_eq!(dry[key], real[key], "{key}: dry run {dry} vs backup {real}");
    }
    let new = real["bytes_new"].as_u64().expect("bytes");
    assert!((150_000..200_000).contains(&new), "a new file and small trees: {real}");

    let text = env.ok(&["backup", "--files-from", s(&list), "--dry-run"]);
    assert!(text.starts_with("Dry run:") && text.contains("Nothing was uploaded"), "{text}");
    let empty = env.path("empty-list");
    std::fs::write(&empty, "# nothing\n").expect("write");
    let err = env.fails(&["backup", "--files-from", s(&empty)]);
    assert!(err.contains("lists no paths"), "{err}");
    let err = env.fails(&["backup", "--files-from", s(&env.path("missing-list"))]);
    assert!(err.contains("cannot read the list of paths"), "{err}");
}

fn ids(v: &serde_json::Value) -> Vec<String> {
    v.as_array().expect("array").iter().map(|s| s["id"].as_str().expect("id").to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshots_by_host_and_latest_and_forget_by_tag_hour_and_age() {
    let env = grid(3).await;
    let src = env.path("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("a"), b"a").expect("write");
    let backup = |extra: &[&str]| {
        let mut args = vec!["backup", s(&src), "--json"];
        args.extend_from_slice(extra);
        json(&env.ok(&args))["snapshot_id"].as_str().expect("id").to_owned()
    };
    let one = backup(&["--hostname", "alpha", "--tag", "keep", "--tag", "monthly"]);
    let two = backup(&["--hostname", "alpha"]);
    let three = backup(&["--hostname", "alpha"]);
    let four = backup(&["--hostname", "beta"]);

    let list = |args: &[&str]| {
        let mut a = vec!["snapshots", "--json"];
        a.extend_from_slice(args);
        ids(&json(&env.ok(&a)))
    };
    assert_eq!(list(&["--host", "alpha"]), vec![one.clone(), two.clone(), three.clone()]);
    assert_eq!(list(&["--host", "beta"]), vec![four.clone()]);
    assert_eq!(list(&["--host", "alpha", "--host", "beta"]).len(), 4);
    assert!(list(&["--host", "gamma"]).is_empty());
    assert_eq!(list(&["--latest", "1"]), vec![three.clone(), four.clone()]);
    assert_eq!(list(&["--host", "alpha", "--latest", "2"]), vec![two.clone(), three.clone()]);
    let text = env.ok(&["snapshots", "--host", "beta"]);
    assert!(text.contains("1 snapshot(s)") && text.contains("beta"), "{text}");

    // Monitoring: a recent enough newest snapshot is fine; an old one, or none, exits 3.
    let prom = env.path("scatter.prom");
    env.ok(&["snapshots", "--warn-older-than", "1h", "--metrics-file", s(&prom)]);
    let metrics = std::fs::read_to_string(&prom).expect("metrics file");
    let value = |name: &str| {
        metrics.lines().find(|l| l.starts_with(&format!("{name}{{profile="))).and_then(|l| l.rsplit(' ').next())
    };
    assert_eq!(value("scatter_backup_stale"), Some("0"), "{metrics}");
    assert_eq!(value("scatter_backup_snapshots"), Some("4"), "{metrics}");
    let newest: u64 = value("scatter_backup_newest_snapshot_timestamp_seconds").expect("newest").parse().expect("int");
    assert!(common::attacker::now().abs_diff(newest) < 600, "{metrics}");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&prom).expect("meta").permissions()) & 0o777,
        0o644
    );
    env.scatter(&["snapshots", "--host", "gamma", "--warn-older-than", "1h", "--metrics-file", s(&prom)]);
    let metrics = std::fs::read_to_string(&prom).expect("metrics file");
    assert!(metrics.contains("} 1\n") && !metrics.contains("newest_snapshot"), "none is stale: {metrics}");
    let err = env.fails(&["snapshots", "--metrics-file", s(&env.path("no/such/dir/x.prom"))]);
    assert!(err.contains("cannot write the metrics file"), "{err}");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    for args in
        [&["snapshots", "--warn-older-than", "1s"][..], &["snapshots", "--host", "gamma", "--warn-older-than", "1h"]]
    {
        let out = env.scatter(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {err}");
        assert!(err.contains("check that backups run"), "{args:?}: {err}");
    }

    // All were taken within the last minutes: --keep-within keeps them all.
    let dry = json(&env.ok(&["forget", "--keep-within", "1d", "--dry-run", "--json"]));
    assert_eq!(dry["ids"].as_array().map(Vec::len), Some(0), "{dry}");
    // --keep-tag needs every tag of a list: `keep,daily` matches nothing, `keep` matches one.
    let dry = json(&env.ok(&["forget", "--keep-last", "1", "--keep-tag", "keep,daily", "--dry-run", "--json"]));
    assert_eq!(dry["ids"], serde_json::json!([one, two]), "{dry}");
    // Per host and path set: alpha keeps its newest (hourly 1) and the tagged one; beta its one.
    let done = json(&env.ok(&["forget", "--keep-hourly", "1", "--keep-tag", "keep", "--json"]));
    assert_eq!(done["ids"], serde_json::json!([two]), "{done}");
    assert_eq!(list(&[]), vec![one, three, four]);
}

/// Runs `scatter ARGS` with no profile at all: completions and man pages need none.
fn bare(args: &[&str]) -> Output {
    Command::new(EXE)
        .args(args)
        .env("SCATTER_CONFIG", "/nonexistent/scatter-profile")
        .env_remove("SCATTER_PASSPHRASE")
        .stdin(Stdio::null())
        .output()
        .expect("run scatter")
}

#[test]
fn completions_and_man_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bash = ok(bare(&["completion", "bash"]), "completion bash");
    assert!(bash.contains("_scatter") && bash.contains("--exclude-if-present"), "bash completion");
    let script = dir.path().join("scatter.bash");
    std::fs::write(&script, &bash).expect("write");
    let syntax = Command::new("bash").arg("-n").arg(&script).output().expect("bash -n");
    assert!(syntax.status.success(), "bash completion syntax: {}", String::from_utf8_lossy(&syntax.stderr));
    let zsh = ok(bare(&["completion", "zsh"]), "completion zsh");
    assert!(zsh.starts_with("#compdef scatter"), "zsh completion");
    let fish = ok(bare(&["completion", "fish"]), "completion fish");
    assert!(fish.contains("complete -c scatter") && fish.contains("keep-within"), "fish completion");
    assert!(!bare(&["completion", "tcsh"]).status.success(), "an unknown shell is refused");

    let page = ok(bare(&["man"]), "man");
    assert!(page.contains(".TH scatter") && page.contains("backup"), "man page: {page}");
    let pages = dir.path().join("man1");
    ok(bare(&["man", "--dir", s(&pages)]), "man --dir");
    for name in ["scatter.1", "scatter-backup.1", "scatter-forget.1"] {
        let text = std::fs::read_to_string(pages.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains(".TH"), "{name}");
    }
    let backup = std::fs::read_to_string(pages.join("scatter-backup.1")).expect("page");
    assert!(backup.contains("dry\\-run"), "the backup page lists its flags");
}

fn tags_of(env: &Env, id: &str) -> Vec<String> {
    let all = json(&env.ok(&["snapshots", "--json"]));
    let s = all.as_array().expect("array").iter().find(|s| s["id"] == id).expect("listed");
    s["tags"].as_array().expect("tags").iter().map(|t| t.as_str().expect("tag").to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn tag_stats_and_dump() {
    let env = grid(3).await;
    let src = env.path("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    let big = src.join("big.bin");
    std::fs::rename(env.write_random("tmp", 400_000, 9), &big).expect("mv");
    std::fs::write(src.join("note.txt"), b"a note\n").expect("write");
    let first = json(&env.ok(&["backup", s(&src), "--json"]))["snapshot_id"].as_str().expect("id").to_owned();
    let second = json(&env.ok(&["backup", s(&src), "--json"]))["snapshot_id"].as_str().expect("id").to_owned();

    // dump: the bytes, verified; a directory or a missing path is one sentence.
    // Read while it runs: 400 kB does not fit in a pipe's buffer.
    let out = Command::new(EXE)
        .args(["dump", "latest", s(&big)])
        .env("SCATTER_CONFIG", env.grid.client_dir())
        .env("SCATTER_PASSPHRASE", env.grid.passphrase())
        .stdin(Stdio::null())
        .output()
        .expect("run scatter dump");
    assert!(out.status.success(), "dump: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout == std::fs::read(&big).expect("read"), "dump gives the file's bytes");
    assert_eq!(env.ok(&["dump", &first[..8], s(&src.join("note.txt"))]), "a note\n");
    let out = env.scatter(&["dump", "latest", "/no/such/file"]);
    let err = one_sentence_failure(&out, "dump of a missing path");
    assert!(err.contains("is not in the snapshot"), "{err}");
    // A restore of it fails the same way, and makes no target folder.
    let nowhere = env.path("nowhere");
    let out = env.scatter(&["restore", "latest:/no/such/file", "--target", s(&nowhere)]);
    let err = one_sentence_failure(&out, "restore of a missing path");
    assert!(err.contains("is not in the snapshot") && !nowhere.exists(), "{err}");
    // A directory is a tar stream that unpacks to what a restore writes.
    std::os::unix::fs::symlink("note.txt", src.join("link")).expect("symlink");
    let deep = src.join("a-directory-name-long-enough-that-the-whole-path-passes-the-hundred-bytes-of-a-tar-name");
    std::fs::create_dir_all(&deep).expect("mkdir");
    std::fs::write(deep.join("inner.txt"), b"deep").expect("write");
    // Another name of a file is a hard link in the stream (its target's name is long).
    std::fs::hard_link(deep.join("inner.txt"), src.join("inner-again.txt")).expect("link");
    // Folders keep their mtimes through tar too (it sets one once it has left the folder).
    let old = Command::new("touch").args(["-m", "-d", "2001-02-03 04:05:06"]).arg(&deep).status().expect("touch");
    assert!(old.success());
    let third = json(&env.ok(&["backup", s(&src), "--json"]))["snapshot_id"].as_str().expect("id").to_owned();
    let tar = Command::new(EXE)
        .args(["dump", &third[..8], s(&src)])
        .env("SCATTER_CONFIG", env.grid.client_dir())
        .env("SCATTER_PASSPHRASE", env.grid.passphrase())
        .stdin(Stdio::null())
        .output()
        .expect("run scatter dump");
    assert!(tar.status.success(), "dump of a directory: {}", String::from_utf8_lossy(&tar.stderr));
    let unpacked = env.path("unpacked");
    std::fs::create_dir_all(&unpacked).expect("mkdir");
    let mut untar = Command::new("tar").arg("-x").arg("-C").arg(&unpacked).stdin(Stdio::piped()).spawn().expect("tar");
    std::io::Write::write_all(&mut untar.stdin.take().expect("stdin"), &tar.stdout).expect("feed tar");
    assert!(untar.wait().expect("tar").success(), "tar reads the stream");
    let below = unpacked.join(src.strip_prefix("/").expect("absolute"));
    assert!(std::fs::read(below.join("big.bin")).expect("big") == std::fs::read(&big).expect("read"));
    assert_eq!(std::fs::read_link(below.join("link")).expect("link"), Path::new("note.txt"));
    let inner = below.join(deep.file_name().expect("name")).join("inner.txt");
    assert_eq!(std::fs::read(&inner).expect("deep"), b"deep");
    use std::os::unix::fs::MetadataExt;
    let inode = |p: &Path| std::fs::metadata(p).expect("stat").ino();
    assert_eq!(inode(&inner), inode(&below.join("inner-again.txt")), "unpacked as one file with two names");
    let mtime = |p: &Path| std::fs::metadata(p).expect("stat").mtime();
    assert_eq!(mtime(inner.parent().expect("folder")), mtime(&deep), "a folder's mtime, unpacked");
    env.ok(&["forget", &third[..8]]);

    // stats: restore-size counts every snapshot's files; raw-data counts shared data once.
    let one = json(&env.ok(&["stats", "latest", "--json"]));
    assert_eq!((one["total_file_count"].as_u64(), one["total_size"].as_u64()), (Some(2), Some(400_007)), "{one}");
    let both = json(&env.ok(&["stats", "--json"]));
    assert_eq!(both["total_size"], 800_014, "{both}");
    let raw_one = json(&env.ok(&["stats", "latest", "--mode", "raw-data", "--json"]));
    let raw_both = json(&env.ok(&["stats", "--mode", "raw-data", "--json"]));
    // The same data, counted once. (Only a tree may differ: the snapshot's ancestor folders
    // (/tmp) are recorded with their mtime, which other tests running at the same time move.)
    let (size_one, size_both) = (raw_one["total_size"].as_u64(), raw_both["total_size"].as_u64());
    let grew = size_both.zip(size_one).map(|(b, o)| b.checked_sub(o));
    assert!(matches!(grew, Some(Some(0..=1024))), "the same data: {raw_one} {raw_both}");
    let raw = raw_one["total_size"].as_u64().expect("size");
    assert!((400_007..420_000).contains(&raw), "file data plus small trees: {raw_one}");
    assert!(env.ok(&["stats"]).contains("Total size"));

    // tag: ids, order and `latest` stay.
    assert!(env.ok(&["tag", &first[..8], "--add", "a,b"]).contains("1 snapshot(s) changed"));
    assert_eq!(tags_of(&env, &first), ["a", "b"]);
    let listed: Vec<String> = ids(&json(&env.ok(&["snapshots", "--json"])));
    assert_eq!(listed, vec![first.clone(), second.clone()], "ids and order stay");
    assert_eq!(ids(&json(&env.ok(&["snapshots", "--tag", "a", "--json"]))), vec![first.clone()]);
    let out = env.ok(&["tag", "latest", "--add", "c"]);
    assert!(out.contains(&second[..8]), "latest is still the newest: {out}");
    env.ok(&["tag", &first[..8], &second[..8], "--remove", "a"]);
    assert_eq!(tags_of(&env, &first), ["b"]);
    assert_eq!(tags_of(&env, &second), ["c"]);
    env.ok(&["tag", &first[..8], "--set", "x", "--set", "y"]);
    assert_eq!(tags_of(&env, &first), ["x", "y"]);
    assert!(env.ok(&["tag", &first[..8], "--set", "x,y"]).contains("0 snapshot(s) changed"));
    env.ok(&["tag", &first[..8], "--set", ""]);
    assert!(tags_of(&env, &first).is_empty());
    let err = one_sentence_failure(&env.scatter(&["tag", "latest"]), "tag without a change");
    assert!(err.contains("--add"), "{err}");
    // The data is untouched: a retagged snapshot restores and checks.
    let target = env.path("restored");
    env.ok(&["restore", &first[..8], "--target", s(&target)]);
    let back = target.join(big.strip_prefix("/").expect("absolute"));
    assert!(std::fs::read(back).expect("restored") == std::fs::read(&big).expect("read"));
    let check = env.ok(&["check"]);
    assert!(check.contains("No errors"), "{check}");
}

/// `scatter copy`, as restic's: snapshots into another account, sealed again under its keys,
/// restored there bit for bit; a second run skips what is there.
#[tokio::test(flavor = "multi_thread")]
async fn copy_puts_snapshots_into_another_account() {
    let env = grid(3).await;
    let src = env.path("src");
    std::fs::create_dir_all(src.join("deep/er")).expect("mkdir");
    std::fs::rename(env.write_random("tmp", 3 << 20, 21), src.join("big.bin")).expect("mv");
    std::fs::write(src.join("deep/er/note.txt"), b"a note").expect("write");
    std::fs::copy(src.join("big.bin"), src.join("deep/same.bin")).expect("cp");
    std::os::unix::fs::symlink("er/note.txt", src.join("deep/link")).expect("symlink");
    env.ok(&["backup", s(&src), "--tag", "first"]);
    std::fs::write(src.join("deep/er/note.txt"), b"a longer note").expect("write");
    env.ok(&["backup", s(&src)]);

    let token = env.ok(&["admin", "user", "add", "dora", "--role", "user"]).trim().to_owned();
    let dora = env.path("dora");
    ok(run(&dora, &["init", "--coordinator", env.grid.url(), "--token", &token], &[]), "dora init");
    let copy = |vars: &[(&str, &str)]| {
        let out = run_with(&env.grid.client_dir(), env.grid.passphrase(), &["copy", "--to", s(&dora), "--json"], vars);
        json(&ok(out, "copy"))
    };
    let to = [("SCATTER_TO_PASSPHRASE", THEIR_PASSPHRASE)];
    let first = copy(&to);
    let copied = first["snapshots"].as_array().expect("snapshots");
    assert_eq!(copied.len(), 2, "{first}");
    assert!(copied.iter().all(|c| c["copy"].is_string()), "{first}");
    // The two snapshots share most chunks; the second copy uploads only what changed.
    assert!(copied[1]["new_bytes"].as_u64().expect("bytes") < 100_000, "{first}");

    // Dora sees both, with their times, hosts, paths and tags, and restores them exactly.
    let listed = json(&ok(run(&dora, &["snapshots", "--json"], &[]), "dora snapshots"));
    let mine = json(&env.ok(&["snapshots", "--json"]));
    for key in ["time", "hostname", "paths", "tags"] {
        let theirs: Vec<_> = listed.as_array().expect("array").iter().map(|v| v[key].clone()).collect();
        let ours: Vec<_> = mine.as_array().expect("array").iter().map(|v| v[key].clone()).collect();
        assert_eq!(theirs, ours, "{key}");
    }
    let target = env.path("restored");
    ok(run(&dora, &["restore", "latest", "--target", s(&target)], &[]), "dora restore");
    let diff = Command::new("diff")
        .args(["-r", "--no-dereference", s(&src), s(&target.join(src.strip_prefix("/").expect("absolute")))])
        .output()
        .expect("diff");
    assert!(diff.status.success(), "{}", String::from_utf8_lossy(&diff.stdout));

    // Again: nothing new.
    let again = copy(&to);
    assert!(again["snapshots"].as_array().expect("snapshots").iter().all(|c| c["skipped"] == true), "{again}");
    // A wrong passphrase for the destination is one sentence.
    let out = run_with(
        &env.grid.client_dir(),
        env.grid.passphrase(),
        &["copy", "--to", s(&dora)],
        &[("SCATTER_TO_PASSPHRASE", "wrong")],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("destination") && !err.contains("panicked"), "{err}");
    let err = env.fails(&["copy", "--to", s(&env.grid.client_dir())]);
    assert!(err.contains("the profile copied from"), "{err}");
}
