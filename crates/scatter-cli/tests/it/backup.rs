//! Acceptance tests of backups: real `scatter` processes on a local grid, real files.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common;
use common::*;

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn cp_a(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp").arg("-a").arg(from).arg(to).status().expect("cp");
    assert!(st.success());
}

/// Asserts two trees are equal: names, types, content, permissions, mtimes, link targets.
fn assert_same_tree(a: &Path, b: &Path) {
    let (ma, mb) = (std::fs::symlink_metadata(a).expect("a"), std::fs::symlink_metadata(b).expect("b"));
    assert_eq!(ma.file_type(), mb.file_type(), "{} vs {}: type", a.display(), b.display());
    if ma.file_type().is_symlink() {
        assert_eq!(std::fs::read_link(a).expect("link"), std::fs::read_link(b).expect("link"));
        return;
    }
    assert_eq!(ma.permissions().mode() & 0o7777, mb.permissions().mode() & 0o7777, "{}: mode", b.display());
    assert_eq!((ma.mtime(), ma.mtime_nsec()), (mb.mtime(), mb.mtime_nsec()), "{}: mtime", b.display());
    if ma.is_file() {
        assert!(std::fs::read(a).expect("read a") == std::fs::read(b).expect("read b"), "{}: content", b.display());
    } else {
        let names = |p: &Path| {
            let mut v: Vec<_> = std::fs::read_dir(p).expect("dir").map(|e| e.expect("entry").file_name()).collect();
            v.sort();
            v
        };
        assert_eq!(names(a), names(b), "{}: entries", b.display());
        for n in names(a) {
            assert_same_tree(&a.join(&n), &b.join(&n));
        }
    }
}

/// A source tree with a large file, small files, a subdirectory and a symlink.
fn make_source(env: &Env) -> PathBuf {
    let src = env.path("src");
    std::fs::create_dir_all(src.join("docs/deep")).expect("mkdir");
    std::fs::rename(env.write_random("big.bin", 24 << 20, 1), src.join("big.bin")).expect("mv");
    for i in 0..20u64 {
        std::fs::rename(
            env.write_random("small", 1000 + 3000 * i as usize, 100 + i),
            src.join(format!("docs/f{i}.txt")),
        )
        .expect("mv");
    }
    std::fs::write(src.join("docs/deep/note.md"), b"hello").expect("write");
    std::fs::write(src.join("empty"), b"").expect("write");
    std::os::unix::fs::symlink("docs/deep/note.md", src.join("link")).expect("symlink");
    std::fs::set_permissions(src.join("docs/f3.txt"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    src
}

fn restored(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").expect("absolute"))
}

#[tokio::test(flavor = "multi_thread")]
async fn incremental_backups_restore_exactly_and_upload_little() {
    let env = grid(6).await;
    let src = make_source(&env);
    let first = json(&env.ok(&["backup", s(&src), "--tag", "t1", "--json"]));
    let id1 = first["snapshot_id"].as_str().expect("id").to_owned();
    assert_eq!(first["files_new"], 23);
    let copy1 = env.path("copy1");
    cp_a(&src, &copy1);

    // Edit the middle of the big file, add, delete, chmod, rename, add a symlink.
    {
        use std::io::{Seek, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(src.join("big.bin")).expect("open");
        f.seek(std::io::SeekFrom::Start(12 << 20)).expect("seek");
        f.write_all(b"an edit in the middle").expect("write");
    }
    std::fs::write(src.join("docs/new.txt"), b"new file").expect("write");
    std::fs::remove_file(src.join("docs/f1.txt")).expect("rm");
    std::fs::set_permissions(src.join("docs/f2.txt"), std::fs::Permissions::from_mode(0o640)).expect("chmod");
    std::fs::rename(src.join("docs/f4.txt"), src.join("docs/renamed.txt")).expect("rename");
    std::os::unix::fs::symlink("/nonexistent/target", src.join("docs/dangling")).expect("symlink");
    let second = json(&env.ok(&["backup", s(&src), "--json"]));
    let id2 = second["snapshot_id"].as_str().expect("id").to_owned();
    assert_eq!(second["parent"].as_str(), Some(id1.as_str()));
    let (total, new) = (second["total_bytes"].as_u64().expect("total"), second["bytes_new"].as_u64().expect("new"));
    assert!(
        new * 4 < total,
        "second backup uploaded {new} of {total} bytes: content-defined chunking should keep it small"
    );
    assert!(second["files_unmodified"].as_u64().expect("unmodified") >= 18, "{second}");

    // Listing, by unique prefix and `latest`.
    let list = json(&env.ok(&["snapshots", "--json"]));
    let ids: Vec<&str> = list.as_array().expect("array").iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(ids, [id1.as_str(), id2.as_str()]);
    assert_eq!(list[0]["tags"][0], "t1");
    assert_eq!(list[0]["paths"][0], s(&src));
    assert!(list[0]["hostname"].is_string() && list[0]["time"].is_string());
    let ls = env.ok(&["ls", &format!("{}:{}/docs", &id2[..8], s(&src))]);
    assert!(ls.contains("renamed.txt") && !ls.contains("f1.txt"), "{ls}");
    let diff = env.ok(&["diff", &id1[..6], "latest"]);
    for want in ["+    ", "docs/new.txt", "-    ", "docs/f1.txt", "M    ", "big.bin", "U    ", "docs/f2.txt"] {
        assert!(diff.contains(want), "diff lacks {want}: {diff}");
    }
    let found = env.ok(&["find", "renamed.txt"]);
    assert!(found.contains(&id2[..8]) && !found.contains(&id1[..8]), "{found}");

    // Restore both snapshots and compare byte for byte and metadata.
    for (id, expected) in [(&id1, &copy1), (&id2, &src)] {
        let target = env.path(&format!("restore-{}", &id[..8]));
        env.ok(&["restore", &id[..8], "--target", s(&target)]);
        assert_same_tree(expected, &restored(&target, &src));
    }
    // A subset, and a rerun that finds everything already there.
    let part = env.path("part");
    let out = env.ok(&["restore", &format!("latest:{}/docs", s(&src)), "--target", s(&part), "--include", "*.md"]);
    assert!(out.contains("1 file written"), "{out}");
    assert_eq!(std::fs::read(part.join("docs/deep/note.md")).expect("note"), b"hello");
    assert!(!part.join("docs/new.txt").exists());
    let target = env.path(&format!("restore-{}", &id2[..8]));
    let again = json(&env.ok(&["restore", &id2, "--target", s(&target), "--json"]));
    assert_eq!(again["files_restored"], 0, "{again}");

    // Unknown and ambiguous ids are one clear sentence.
    let err = env.fails(&["restore", "ffff0000", "--target", s(&target)]);
    assert!(err.contains("no snapshot id starts with"), "{err}");
}

/// Trees go to packs of their own: a later backup, `ls` or restore reads a snapshot's folders
/// from a few packs instead of from a pack per folder.
#[tokio::test(flavor = "multi_thread")]
async fn trees_are_stored_in_packs_of_their_own() {
    use scatter_core::tree::NodeKind;
    let env = grid(6).await;
    let src = make_source(&env);
    for d in 0..5 {
        std::fs::create_dir_all(src.join(format!("more/d{d}"))).expect("mkdir");
        std::fs::write(src.join(format!("more/d{d}/f")), vec![d as u8; 100_000]).expect("write");
    }
    env.ok(&["backup", s(&src)]);

    let dir = env.grid.client_dir();
    let coord = scatter_client::profile::Profile::load(&dir).expect("profile").coordinator().expect("coordinator");
    let keys = scatter_client::profile::Profile::load_keys(&dir, env.grid.passphrase()).expect("keys");
    let hosts = coord.hosts().expect("hosts");
    let all = scatter_client::snapshots::list(&coord, &keys).await.expect("snapshots").snapshots;
    let root = all[0].snapshot.tree_id();
    let mut trees = scatter_client::snapshots::Trees::new(scatter_client::fetch::Fetcher::new(&coord, &hosts, &keys));
    let (mut tree_ids, mut data_ids) = (vec![root], Vec::new());
    for (_, node) in trees.walk(root, &scatter_core::tree::TreePath::root()).await.expect("walk") {
        match node.kind {
            NodeKind::Dir { subtree } => tree_ids.push(scatter_core::ChunkId::from_bytes(subtree)),
            NodeKind::File { chunks } => {
                data_ids.extend(chunks.iter().map(|(id, _)| scatter_core::ChunkId::from_bytes(*id)))
            }
            NodeKind::Symlink { .. } => {}
        }
    }
    assert!(tree_ids.len() >= 10, "{} trees", tree_ids.len());
    let packs_of = |located: scatter_proto::api::LocateResponse| {
        located.chunks.iter().map(|c| c.pack).collect::<std::collections::HashSet<_>>()
    };
    let tree_packs = packs_of(coord.locate(tree_ids).await.expect("locate trees"));
    let data_packs = packs_of(coord.locate(data_ids).await.expect("locate data"));
    assert_eq!(tree_packs.len(), 1, "all trees of a small backup fit one pack");
    assert!(tree_packs.is_disjoint(&data_packs), "a pack holds both trees and file data");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_local_finds_loss_and_recover_brings_it_back() {
    let env = grid(6).await;
    let src = make_source(&env);
    env.ok(&["backup", s(&src)]);
    let clean = env.scatter(&["check-local", s(&src)]);
    assert_eq!(clean.status.code(), Some(0), "{}", String::from_utf8_lossy(&clean.stdout));
    let pristine = env.path("pristine");
    cp_a(&src, &pristine);

    // A deleted file, a deleted directory, silent corruption (same size and mtime), an edit.
    std::fs::remove_file(src.join("docs/f5.txt")).expect("rm");
    std::fs::remove_dir_all(src.join("docs/deep")).expect("rm -r");
    let victim = src.join("big.bin");
    let meta = std::fs::metadata(&victim).expect("meta");
    {
        use std::io::{Seek, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&victim).expect("open");
        f.seek(std::io::SeekFrom::Start(5 << 20)).expect("seek");
        f.write_all(&[0xAA; 16]).expect("write");
    }
    filetime::set_file_mtime(&victim, filetime::FileTime::from_last_modification_time(&meta)).expect("mtime");
    std::fs::write(src.join("docs/f6.txt"), b"a legitimate edit").expect("edit");
    std::fs::write(src.join("docs/brand-new.txt"), b"x").expect("new");

    let out = env.scatter(&["check-local", s(&src), "--json"]);
    assert_eq!(out.status.code(), Some(3), "check-local must exit 3 when data was lost");
    let report = json(&String::from_utf8_lossy(&out.stdout));
    let state = |p: &Path| {
        report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .find(|f| f["path"] == s(p))
            .map(|f| f["state"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(state(&src.join("docs/f5.txt")).as_deref(), Some("missing"));
    assert_eq!(state(&src.join("docs/deep/note.md")).as_deref(), Some("missing"));
    assert_eq!(state(&victim).as_deref(), Some("corrupt"));
    assert_eq!(state(&src.join("docs/f6.txt")).as_deref(), Some("modified"));
    assert_eq!(state(&src.join("docs/brand-new.txt")).as_deref(), Some("new"));

    let out = env.ok(&["recover", s(&src)]);
    assert!(out.contains("left alone"), "{out}");
    assert_eq!(std::fs::read(src.join("docs/f6.txt")).expect("edit kept"), b"a legitimate edit");
    std::fs::write(pristine.join("docs/f6.txt"), b"a legitimate edit").expect("align");
    filetime::set_file_mtime(
        pristine.join("docs/f6.txt"),
        filetime::FileTime::from_last_modification_time(&std::fs::metadata(src.join("docs/f6.txt")).expect("m")),
    )
    .expect("mtime");
    std::fs::remove_file(src.join("docs/brand-new.txt")).expect("rm");
    // Directory mtimes moved with the edits (recover leaves existing directories alone);
    // compare everything else exactly.
    for d in ["", "docs"] {
        let live = std::fs::metadata(src.join(d)).expect("meta");
        filetime::set_file_mtime(pristine.join(d), filetime::FileTime::from_last_modification_time(&live))
            .expect("mtime");
    }
    assert_same_tree(&pristine, &src);
    let after = env.scatter(&["check-local", s(&src)]);
    assert_eq!(after.status.code(), Some(0), "{}", String::from_utf8_lossy(&after.stdout));

    // --force puts the snapshot's version back over the edit too.
    env.ok(&["recover", s(&src), "--force"]);
    assert!(std::fs::read(src.join("docs/f6.txt")).expect("f6") != b"a legitimate edit");
}

/// A lost name of a hard-linked file comes back as a link to its other names. It came back
/// as a copy of its own, and `check-local` then found nothing wrong (new user).
#[tokio::test(flavor = "multi_thread")]
async fn recover_puts_a_lost_hard_link_back_as_a_link() {
    use std::os::unix::fs::MetadataExt;
    let env = grid(6).await;
    let src = env.path("linked");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    std::fs::write(src.join("a"), b"one file, three names").expect("a");
    std::fs::hard_link(src.join("a"), src.join("b")).expect("b");
    std::fs::hard_link(src.join("a"), src.join("sub/c")).expect("c");
    env.ok(&["backup", s(&src)]);
    std::fs::remove_file(src.join("sub/c")).expect("rm");
    env.ok(&["recover", s(&src)]);
    let ino = |name: &str| std::fs::metadata(src.join(name)).expect("stat").ino();
    assert_eq!(ino("a"), ino("b"));
    assert_eq!(ino("a"), ino("sub/c"), "the lost name is a link again");
    assert_eq!(std::fs::metadata(src.join("a")).expect("stat").nlink(), 3);
    assert_eq!(std::fs::read(src.join("sub/c")).expect("c"), b"one file, three names");
    let after = env.scatter(&["check-local", s(&src)]);
    assert_eq!(after.status.code(), Some(0), "{}", String::from_utf8_lossy(&after.stdout));
}

/// Without a path, `check-local` and `recover` compared with the newest snapshot only: a
/// folder backed up apart, then lost, was passed over, and they said nothing was missing
/// (new user). They go through the newest snapshot of each backup set now.
#[tokio::test(flavor = "multi_thread")]
async fn check_local_and_recover_without_a_path_cover_every_backup_set() {
    let env = grid(6).await;
    let (docs, photos) = (env.path("docs"), env.path("photos"));
    for (dir, name) in [(&docs, "letter.txt"), (&photos, "cat.jpg")] {
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::write(dir.join(name), format!("the {name} kept")).expect("write");
    }
    env.ok(&["backup", s(&docs)]);
    env.ok(&["backup", s(&photos)]);
    std::fs::remove_file(docs.join("letter.txt")).expect("rm");
    let out = env.scatter(&["check-local"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "the older set's loss was passed over: {text}");
    assert!(text.contains("missing") && text.contains("letter.txt"), "{text}");
    assert!(text.contains(&format!("(of {})", docs.display())), "which set each line is of: {text}");
    let out = env.scatter(&["check-local", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["snapshots"].as_array().map(Vec::len), Some(2), "{v}");
    env.ok(&["recover"]);
    assert_eq!(std::fs::read(docs.join("letter.txt")).expect("recovered"), b"the letter.txt kept");
    let clean = env.scatter(&["check-local"]);
    assert_eq!(clean.status.code(), Some(0), "{}", String::from_utf8_lossy(&clean.stdout));
}

fn host_bytes(env: &Env) -> u64 {
    (0..env.grid.host_count())
        .flat_map(|i| shard_files(&env.grid.host_dir(i)))
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

async fn wait_for_bytes(env: &Env, below: u64) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = host_bytes(env);
        if now <= below || std::time::Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn forget_and_prune_free_host_bytes_and_survive_interruption() {
    let env = grid(6).await;
    let src = env.path("data");
    std::fs::create_dir_all(&src).expect("mkdir");
    // Three generations: each replaces one 8 MiB file, so old snapshots pin old data.
    let mut ids = Vec::new();
    for gen in 0..3u64 {
        for f in 0..3u64 {
            if gen == 0 || f == gen {
                std::fs::rename(env.write_random("tmp", 8 << 20, gen * 10 + f), src.join(format!("f{f}"))).expect("mv");
            }
        }
        ids.push(json(&env.ok(&["backup", s(&src), "--json"]))["snapshot_id"].as_str().expect("id").to_owned());
    }
    let before = host_bytes(&env);
    let out = json(&env.ok(&["forget", "--keep-last", "1", "--prune", "--json"]));
    assert_eq!(out["removed"], 2, "{out}");
    let after = wait_for_bytes(&env, before * 3 / 4).await;
    assert!(after <= before * 3 / 4, "prune freed too little: {before} -> {after} bytes on hosts");
    let target = env.path("r1");
    env.ok(&["restore", "latest", "--target", s(&target)]);
    assert_same_tree(&src, &restored(&target, &src));

    // A prune killed midway, then run again: everything still restores.
    for gen in 3..6u64 {
        std::fs::rename(env.write_random("tmp", 8 << 20, gen), src.join(format!("f{}", gen % 3))).expect("mv");
        env.ok(&["backup", s(&src)]);
    }
    env.ok(&["forget", "--keep-last", "1"]);
    let mut child = std::process::Command::new(EXE)
        .args(["prune", "--max-unused", "0"])
        .env("SCATTER_CONFIG", env.grid.client_dir())
        .env("SCATTER_PASSPHRASE", env.grid.passphrase())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn prune");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let _ = child.kill();
    let _ = child.wait();
    env.ok(&["prune"]);
    let check = json(&env.ok(&["check", "--read-data", "--json"]));
    assert_eq!(check["errors"].as_array().map(Vec::len), Some(0), "{check}");
    let target = env.path("r2");
    env.ok(&["restore", "latest", "--target", s(&target)]);
    assert_same_tree(&src, &restored(&target, &src));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_backups_and_an_interrupted_one() {
    let env = grid(6).await;
    let (a, b) = (env.path("a"), env.path("b"));
    for (dir, seed) in [(&a, 1u64), (&b, 2)] {
        std::fs::create_dir_all(dir).expect("mkdir");
        for i in 0..4 {
            std::fs::rename(env.write_random("tmp", 4 << 20, seed * 100 + i), dir.join(format!("f{i}"))).expect("mv");
        }
    }
    let spawn = |dir: &Path, host: &str| {
        std::process::Command::new(EXE)
            .args(["backup", s(dir), "--hostname", host])
            .env("SCATTER_CONFIG", env.grid.client_dir())
            .env("SCATTER_PASSPHRASE", env.grid.passphrase())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn backup")
    };
    let (ca, cb) = (spawn(&a, "machine-a"), spawn(&b, "machine-b"));
    for c in [ca, cb] {
        let out = c.wait_with_output().expect("wait");
        assert!(out.status.success(), "concurrent backup failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let list = json(&env.ok(&["snapshots", "--json"]));
    let mut hosts: Vec<&str> = list.as_array().expect("array").iter().filter_map(|s| s["hostname"].as_str()).collect();
    hosts.sort();
    assert_eq!(hosts, ["machine-a", "machine-b"]);
    for snap in list.as_array().expect("array") {
        let (id, path) = (snap["id"].as_str().expect("id"), PathBuf::from(snap["paths"][0].as_str().expect("path")));
        let target = env.path(&format!("r-{}", &id[..8]));
        env.ok(&["restore", id, "--target", s(&target)]);
        assert_same_tree(&path, &restored(&target, &path));
    }

    // kill -9 a slow backup halfway; the rerun uploads roughly the other half.
    let c = env.path("c");
    std::fs::create_dir_all(&c).expect("mkdir");
    for i in 0..6 {
        std::fs::rename(env.write_random("tmp", 8 << 20, 500 + i), c.join(format!("f{i}"))).expect("mv");
    }
    let before = host_bytes(&env);
    let mut child = std::process::Command::new(EXE)
        .args(["backup", s(&c), "--limit-upload", "24MiB"])
        .env("SCATTER_CONFIG", env.grid.client_dir())
        .env("SCATTER_PASSPHRASE", env.grid.passphrase())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn backup");
    // 48 MiB of data is 72 MiB with parity: about 3 s at 24 MiB/s. Kill it halfway.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while host_bytes(&env) < before + (30 << 20) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let rerun = json(&env.ok(&["backup", s(&c), "--json"]));
    let (total, new) = (rerun["total_bytes"].as_u64().expect("total"), rerun["bytes_new"].as_u64().expect("new"));
    assert!(new < total * 4 / 5 && new > total / 10, "the rerun uploaded {new} of {total} bytes");
    // Hosts hold about one copy (with parity) plus at most the packs in flight at the kill.
    let added = host_bytes(&env) - before;
    assert!(added < (72 << 20) + (48 << 20), "hosts gained {added} bytes for 72 MiB of shards");
    let target = env.path("rc");
    env.ok(&["restore", "latest", "--target", s(&target)]);
    assert_same_tree(&c, &restored(&target, &c));
}

/// Reads of chunks with gaps between them stay within the locate's grants. Trees are stored
/// children first, and walked a level at a time: a level's trees lie in their pack with the
/// next level's between them. A run of them was read from its first byte to its last, across
/// the ends of data shards between, while the grant for each shard ends at its last located
/// byte: hosts refused those reads, and the packs were rebuilt from parity (warnings on
/// every `ls`, `find` and restore of a real tree on a healthy grid, and whole shards charged).
#[tokio::test(flavor = "multi_thread")]
async fn a_healthy_grid_serves_many_folders_without_a_refused_read() {
    let env = grid(6).await;
    let src = env.path("many");
    for d in 0..60 {
        for e in 0..50 {
            let dir = src.join(format!("d{d}/s{e}"));
            std::fs::create_dir_all(&dir).expect("dir");
            std::fs::write(dir.join("f"), format!("file {d} {e}\n")).expect("write");
        }
    }
    env.ok(&["backup", s(&src)]);
    let target = env.path("back");
    for args in [vec!["ls", "latest"], vec!["restore", "latest", "--target", s(&target)]] {
        without_a_refused_read(&env, &args);
    }
    assert_same_tree(&src, &restored(&target, &src));
}

/// Runs `args`, which must succeed with no read refused and no pack rebuilt.
fn without_a_refused_read(env: &Env, args: &[&str]) {
    let out = env.scatter(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {err}");
    assert!(!err.contains("refused"), "{args:?} met refused reads: {err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("rebuilt"), "{args:?} rebuilt packs");
}

/// Copies of one file are one chunk (deduplicated), wanted again for every copy; between the
/// copies come files stored in other packs, so each copy is a read of its own, under the
/// grant of one locate. Hosts refused past twice a grant's bytes: a healthy grid holding
/// 12,500 files of /usr/include and /usr/share/doc (73 MiB of them duplicates) met 17
/// refused reads in a restore, and rebuilt 2 packs from parity.
#[tokio::test(flavor = "multi_thread")]
async fn copies_of_one_file_are_restored_without_a_refused_read() {
    let env = grid(6).await;
    // The file's chunk goes into a pack of an earlier backup...
    let first = env.path("first");
    std::fs::create_dir_all(&first).expect("dir");
    std::fs::rename(env.write_random("copyright", 100_000, 1), first.join("copyright")).expect("mv");
    env.ok(&["backup", s(&first)]);
    // ...and its copies, each next to a file of its own, into a later one's.
    let src = env.path("copies");
    for d in 0..10 {
        let dir = src.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::copy(first.join("copyright"), dir.join("copyright")).expect("copy");
        std::fs::write(dir.join("own"), format!("a file of its own {d}\n")).expect("write");
    }
    env.ok(&["backup", s(&src)]);
    let target = env.path("back");
    without_a_refused_read(&env, &["restore", "latest", "--target", s(&target)]);
    assert_same_tree(&src, &restored(&target, &src));
}

/// Hard links come back as hard links (a tree of `cp -al` copies would otherwise grow by a
/// copy per name and might not fit where it came from), and are read once by the backup.
#[tokio::test(flavor = "multi_thread")]
async fn hard_links_are_backed_up_once_and_restored_as_links() {
    let env = grid(6).await;
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    std::fs::rename(env.write_random("big", 3 << 20, 7), src.join("a")).expect("mv");
    std::fs::hard_link(src.join("a"), src.join("b")).expect("link");
    std::fs::hard_link(src.join("a"), src.join("sub/c")).expect("link");
    std::fs::write(src.join("e"), b"small and linked").expect("write");
    std::fs::hard_link(src.join("e"), src.join("sub/d")).expect("link");
    std::fs::write(src.join("lone"), b"one name").expect("write");

    let made = json(&env.ok(&["backup", s(&src), "--json"]));
    assert_eq!(made["files_new"], 6, "{made}");
    assert_eq!(made["bytes_read"], (3 << 20) + 16 + 8, "each linked file is read once: {made}");

    let target = env.path("target");
    let inode = |p: &Path| std::fs::metadata(p).expect("stat").ino();
    for round in 0..2 {
        // The second round restores over the first: the links are kept (or made again).
        let out = json(&env.ok(&["restore", "latest", "--target", s(&target), "--json"]));
        assert_eq!(out["hardlinks"], 3, "round {round}: {out}");
        let back = restored(&target, &src);
        for name in ["a", "b", "sub/c", "e", "sub/d", "lone"] {
            assert_eq!(std::fs::read(back.join(name)).expect("read"), std::fs::read(src.join(name)).expect("read"));
        }
        assert_eq!(inode(&back.join("a")), inode(&back.join("b")), "round {round}");
        assert_eq!(inode(&back.join("a")), inode(&back.join("sub/c")), "round {round}");
        assert_eq!(inode(&back.join("e")), inode(&back.join("sub/d")), "round {round}");
        assert_ne!(inode(&back.join("a")), inode(&back.join("e")));
        assert_eq!(std::fs::metadata(back.join("a")).expect("stat").nlink(), 3);
        assert_eq!(std::fs::metadata(back.join("lone")).expect("stat").nlink(), 1);
    }
    // A link restored alone (its first name not selected) is a file of its own.
    let part = env.path("part");
    let out = env.ok(&["restore", &format!("latest:{}/sub", s(&src)), "--target", s(&part)]);
    assert!(out.contains("2 files written"), "{out}");
    assert_eq!(std::fs::read(part.join("sub/c")).expect("c"), std::fs::read(src.join("a")).expect("a"));
}

/// `restore --sparse` leaves runs of zeros as holes (a disk image comes back taking the space
/// it took, not its length), and the content is the same either way.
#[tokio::test(flavor = "multi_thread")]
async fn a_sparse_restore_leaves_holes_where_the_file_has_zeros() {
    use std::io::{Seek, Write};
    let env = grid(6).await;
    let src = env.path("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    let image = src.join("disk.img");
    {
        let mut f = std::fs::File::create(&image).expect("create");
        f.set_len(64 << 20).expect("length");
        f.write_all(&std::fs::read(env.write_random("head", 1 << 20, 3)).expect("head")).expect("write");
        f.seek(std::io::SeekFrom::Start(40 << 20)).expect("seek");
        f.write_all(&std::fs::read(env.write_random("middle", 1 << 20, 4)).expect("middle")).expect("write");
    }
    // 4 KiB of data every MiB: every chunk holds data, and the holes are inside chunks (a
    // chunk was left a hole only when all zeros, so this came back dense).
    let blocks = src.join("blocks.img");
    {
        let mut f = std::fs::File::create(&blocks).expect("create");
        f.set_len(16 << 20).expect("length");
        let block = std::fs::read(env.write_random("block", 4096, 5)).expect("block");
        for i in 0..16u64 {
            f.seek(std::io::SeekFrom::Start(i << 20)).expect("seek");
            f.write_all(&block).expect("write");
        }
    }
    env.ok(&["backup", s(&src)]);
    let allocated = |p: &Path| std::fs::metadata(p).expect("stat").blocks() * 512;
    let (dense, sparse) = (env.path("dense"), env.path("sparse"));
    env.ok(&["restore", "latest", "--target", s(&dense)]);
    env.ok(&["restore", "latest", "--target", s(&sparse), "--sparse"]);
    for target in [&dense, &sparse] {
        for file in [&image, &blocks] {
            let back = restored(target, file);
            assert!(std::fs::read(&back).expect("read") == std::fs::read(file).expect("read"), "{}", back.display());
        }
    }
    assert!(allocated(&restored(&dense, &image)) >= 60 << 20, "written whole without --sparse");
    let taken = allocated(&restored(&sparse, &image));
    assert!(taken <= 16 << 20, "the sparse restore took {taken} bytes for 2 MiB of data");
    let taken = allocated(&restored(&sparse, &blocks));
    assert!(taken <= 1 << 20, "the sparse restore took {taken} bytes for 64 KiB of data");
}

/// Files given new inodes with their size and mtime kept (as a restore gives them) are read
/// again by the next backup, unless `--ignore-inode` says size and mtime are enough.
#[tokio::test(flavor = "multi_thread")]
async fn ignore_inode_trusts_size_and_mtime_after_files_got_new_inodes() {
    let env = grid(6).await;
    let src = env.path("data");
    std::fs::create_dir_all(&src).expect("mkdir");
    for i in 0..4u64 {
        std::fs::rename(env.write_random("tmp", 100_000, i), src.join(format!("f{i}"))).expect("mv");
    }
    let first = json(&env.ok(&["backup", s(&src), "--json"]));
    // The folder backed up, not the folders above it.
    assert_eq!(first["dirs"], 1, "{first}");
    let renew = || {
        for i in 0..4 {
            let (f, tmp) = (src.join(format!("f{i}")), src.join(format!("f{i}.new")));
            let copied = std::process::Command::new("cp").arg("-p").arg(&f).arg(&tmp).status().expect("cp");
            assert!(copied.success());
            std::fs::rename(&tmp, &f).expect("mv");
        }
    };
    renew();
    let plain = json(&env.ok(&["backup", s(&src), "--json"]));
    assert_eq!((plain["files_changed"].as_u64(), plain["files_unmodified"].as_u64()), (Some(4), Some(0)), "{plain}");
    renew();
    let trusting = json(&env.ok(&["backup", s(&src), "--ignore-inode", "--json"]));
    assert_eq!(
        (trusting["files_changed"].as_u64(), trusting["files_unmodified"].as_u64()),
        (Some(0), Some(4)),
        "{trusting}"
    );
}
