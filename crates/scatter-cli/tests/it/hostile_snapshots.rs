//! Hostile delegates against the owner's snapshots and sessions, with real processes: an
//! appender's snapshots must not steer what the owner restores, recovers or keeps, and an
//! appender's session must neither be run by another account nor hold up (or be undone by)
//! the owner's prune.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scatter_client::profile::Profile;

use crate::common;
use common::*;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The owner's snapshots as `scatter snapshots --json` lists them.
fn snapshots(env: &Env) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).expect("JSON");
    v.as_array().expect("a list").clone()
}

fn backup_id(out: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(out).expect("backup JSON");
    v["snapshot_id"].as_str().expect("snapshot id").to_owned()
}

const OWNER_KEY: &str = "ssh-ed25519 AAAA-the-owners-key owner@home\n";
const ATTACKER_KEY: &str = "ssh-ed25519 AAAA-the-attackers-key mallory@evil\n";

#[tokio::test(flavor = "multi_thread")]
async fn an_appender_claiming_the_owners_host_and_paths_does_not_steer_latest_recover_or_parents() {
    let env = grid(6).await;
    let ssh = env.path("home/.ssh");
    std::fs::create_dir_all(&ssh).expect("mkdir");
    let keys = ssh.join("authorized_keys");
    std::fs::write(&keys, OWNER_KEY).expect("write");
    let first = backup_id(&env.ok(&["backup", s(&ssh), "--json"]));

    // The appender runs on "the same machine" (same host name, same absolute path) and backs
    // up its own authorized_keys: a snapshot claiming the owner's host and paths.
    let laptop = appender(&env, "laptop", &[]);
    std::fs::write(&keys, ATTACKER_KEY).expect("write");
    let evil = backup_id(&ok(run(&laptop, &["backup", s(&ssh), "--json"], &[]), "appender backup"));

    // The file is lost on the owner's machine; recover brings back the owner's version.
    std::fs::remove_file(&keys).expect("rm");
    let checked = env.scatter(&["check-local", s(&ssh)]);
    let text = String::from_utf8_lossy(&checked.stdout);
    assert!(
        text.contains(&format!("Compared with snapshot {}", &first[..8])),
        "check-local used another snapshot: {text}"
    );
    let recovered = env.scatter(&["recover", s(&ssh)]);
    assert!(recovered.status.success(), "recover: {}", String::from_utf8_lossy(&recovered.stderr));
    assert_eq!(std::fs::read_to_string(&keys).expect("recovered"), OWNER_KEY, "recover restored the appender's file");

    // `restore latest` is the owner's too.
    let target = env.path("restored");
    env.ok(&["restore", "latest", "--target", s(&target)]);
    let restored = target.join(keys.strip_prefix("/").expect("absolute"));
    assert_eq!(std::fs::read_to_string(&restored).expect("restored"), OWNER_KEY);

    // The owner's next backup compares against its own snapshot, not the appender's (whose
    // tree could pass hostile chunk lists off as the owner's unchanged files).
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["backup", s(&ssh), "--json"])).expect("backup JSON");
    assert_eq!(v["parent"], serde_json::Value::from(first.clone()), "{v}");

    // The listing says who wrote what.
    let list = snapshots(&env);
    let by_id = |id: &str| list.iter().find(|x| x["id"] == id).cloned().expect("listed");
    assert_eq!(by_id(&first)["writer"], "u1", "{list:#?}");
    assert_eq!(by_id(&evil)["writer"], "u2", "{list:#?}");
    assert_eq!(by_id(&evil)["writer_name"], "laptop", "{list:#?}");
    assert_eq!(by_id(&evil)["trusted"], false, "{list:#?}");
    assert_eq!(by_id(&first)["trusted"], true, "{list:#?}");
    let text = env.ok(&["snapshots"]);
    assert!(text.contains("laptop"), "the table names the writer: {text}");

    // Named by id, `recover` (which writes to the snapshot's own absolute paths) refuses the
    // appender's snapshot: it wrote the attacker's key in place, without a word.
    std::fs::remove_file(&keys).expect("rm");
    let refused = env.scatter(&["recover", s(&ssh), "--snapshot", &evil[..8]]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("you do not trust"), "{err}");
    assert!(!keys.exists(), "recover wrote the untrusted snapshot's file in place");
    env.ok(&["recover", s(&ssh)]);

    // The appender's snapshot is still the owner's to restore, by id.
    let theirs = env.path("theirs");
    env.ok(&["restore", &evil[..8], "--target", s(&theirs)]);
    assert_eq!(
        std::fs::read_to_string(theirs.join(keys.strip_prefix("/").expect("absolute"))).expect("restored"),
        ATTACKER_KEY
    );

    // Trust is the owner's choice, per delegate: once trusted, the laptop's newest snapshot is
    // the latest; untrusted again, it is not.
    std::fs::write(&keys, "laptop's newer key\n").expect("write");
    let newer = backup_id(&ok(run(&laptop, &["backup", s(&ssh), "--json"], &[]), "appender backup"));
    let out = env.ok(&["delegate", "ls", "--json"]);
    assert!(out.contains("laptop"), "{out}");
    // By its name, as `delegate ls` shows it, or by its id (a new user was told to give a name
    // and was refused it).
    let err = env.fails(&["delegate", "trust", "desktop"]);
    assert!(err.contains("none of your delegates is named `desktop`"), "{err}");
    env.ok(&["delegate", "trust", "laptop"]);
    let latest = env.path("latest-trusted");
    env.ok(&["restore", "latest", "--target", s(&latest)]);
    assert_eq!(
        std::fs::read_to_string(latest.join(keys.strip_prefix("/").expect("absolute"))).expect("restored"),
        "laptop's newer key\n"
    );
    assert!(snapshots(&env).iter().any(|x| x["id"] == newer && x["trusted"] == true));
    env.ok(&["delegate", "untrust", "u2"]);
    let latest = env.path("latest-untrusted");
    env.ok(&["restore", "latest", "--target", s(&latest)]);
    assert_eq!(
        std::fs::read_to_string(latest.join(keys.strip_prefix("/").expect("absolute"))).expect("restored"),
        OWNER_KEY
    );
    // A delegate cannot trust itself.
    let out = run(&laptop, &["delegate", "trust", "u2"], &[]);
    assert!(!out.status.success(), "an appender trusted itself");
    assert!(String::from_utf8_lossy(&out.stderr).contains("only the owner"), "{out:?}");
    assert!(snapshots(&env).iter().all(|x| x["writer"] == "u1" || x["trusted"] == false));
}

#[tokio::test(flavor = "multi_thread")]
async fn appender_snapshots_do_not_evict_the_owners_under_a_forget_policy() {
    let env = grid(6).await;
    let dir = env.path("data");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("f"), "owner 1").expect("write");
    let o1 = backup_id(&env.ok(&["backup", s(&dir), "--json"]));
    std::fs::write(dir.join("f"), "owner 2").expect("write");
    let o2 = backup_id(&env.ok(&["backup", s(&dir), "--json"]));
    // Three appender snapshots of the same host and paths, all newer than the owner's.
    let laptop = appender(&env, "laptop", &[]);
    let mut theirs = Vec::new();
    for i in 0..3 {
        std::fs::write(dir.join("f"), format!("appender {i}")).expect("write");
        theirs.push(backup_id(&ok(run(&laptop, &["backup", s(&dir), "--json"], &[]), "appender backup")));
    }
    env.ok(&["forget", "--keep-last", "2"]);
    let left: Vec<String> = snapshots(&env).iter().filter_map(|x| x["id"].as_str().map(str::to_owned)).collect();
    assert!(left.contains(&o1) && left.contains(&o2), "the owner's snapshots were evicted: {left:?}");
    // The policy still applies to the appender's group, separately.
    assert!(!left.contains(&theirs[0]), "the appender's oldest should be forgotten: {left:?}");
    assert!(left.contains(&theirs[1]) && left.contains(&theirs[2]), "{left:?}");
    assert_eq!(left.len(), 4, "{left:?}");

    // An appender invited as trusted counts as the owner's from the start; only an appender
    // can be.
    let nas = appender(&env, "nas", &["--trusted"]);
    let id = backup_id(&ok(run(&nas, &["backup", s(&dir), "--json"], &[]), "trusted appender backup"));
    assert!(snapshots(&env).iter().any(|x| x["id"] == id && x["trusted"] == true && x["writer_name"] == "nas"));
    let out = env.scatter(&["admin", "user", "add", "eve", "--role", "reader", "--of", "u1", "--trusted"]);
    assert!(!out.status.success(), "a reader was invited as trusted");
}

/// Pauses a backup when it reaches a file whose name ends in `pause_here`, until released.
struct Pause {
    reached: AtomicBool,
    released: AtomicBool,
}

impl scatter_client::Progress for Pause {
    fn wants_total(&self) -> bool {
        false
    }
    fn start(&self, _: u64) {}
    fn advance(&self, _: u64) {}
    fn item(&self, name: &str) {
        if !name.ends_with("pause_here") {
            return;
        }
        self.reached.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.released.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

async fn wait_for(flag: &AtomicBool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !flag.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "{what} did not happen within 120 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prune_during_a_delegates_backup_keeps_what_that_backup_references() {
    let env = grid(6).await;
    // The owner stores a file; the appender's backup will find it through dedup.
    let owner_dir = env.path("owner");
    std::fs::create_dir_all(&owner_dir).expect("mkdir");
    let shared = env.write_random("shared.bin", 20 << 20, 7);
    std::fs::copy(&shared, owner_dir.join("shared.bin")).expect("copy");
    let owners = backup_id(&env.ok(&["backup", s(&owner_dir), "--json"]));

    let laptop = appender(&env, "laptop", &[]);
    let src = env.path("laptop-data");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::copy(&shared, src.join("a_shared.bin")).expect("copy");
    let fresh = env.write_random("fresh.bin", 20 << 20, 8);
    std::fs::copy(&fresh, src.join("b_fresh.bin")).expect("copy");
    std::fs::write(src.join("c_pause_here"), "pause").expect("write");
    let tail = env.write_random("tail.bin", 1 << 20, 9);
    std::fs::copy(&tail, src.join("d_tail.bin")).expect("copy");

    // The appender's backup runs in this process, so it can be held in the middle.
    let profile = Profile::load(&laptop).expect("profile");
    let keys = Profile::load_keys(&laptop, THEIR_PASSPHRASE).expect("keys");
    let coord = profile.coordinator().expect("coordinator");
    let hosts = coord.hosts().expect("hosts");
    let pause = Arc::new(Pause { reached: AtomicBool::new(false), released: AtomicBool::new(false) });
    let opts = scatter_client::backup::BackupOptions { paths: vec![src.clone()], ..Default::default() };
    let running = {
        let (pause, coord) = (pause.clone(), coord.clone());
        tokio::spawn(async move { scatter_client::backup::backup(&coord, &keys, &opts, &hosts, pause).await })
    };
    wait_for(&pause.reached, "the appender's backup reaching its pause").await;
    // Let the batches already walked go through dedup lookup and upload.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Meanwhile the owner forgets its own snapshot and prunes: the prune must not wait for
    // the appender, and must keep what the appender's open session found or uploaded.
    env.ok(&["forget", &owners[..8]]);
    let started = Instant::now();
    let pruned = env.scatter(&["prune"]);
    let waited = started.elapsed();
    pause.released.store(true, Ordering::SeqCst);
    assert!(pruned.status.success(), "prune during a delegate's backup: {}", String::from_utf8_lossy(&pruned.stderr));
    assert!(waited < Duration::from_secs(30), "the prune waited {waited:?} for the delegate's backup");

    let report = tokio::time::timeout(Duration::from_secs(240), running)
        .await
        .expect("the backup finishes")
        .expect("the backup task")
        .expect("the appender's backup succeeds after the prune");
    // Another prune after the commit, then every byte comes back.
    env.ok(&["prune"]);
    let target = env.path("restored");
    env.ok(&["restore", &report.snapshot[..8], "--target", s(&target)]);
    let base = target.join(src.strip_prefix("/").expect("absolute"));
    for (name, original) in [("a_shared.bin", &shared), ("b_fresh.bin", &fresh), ("d_tail.bin", &tail)] {
        assert!(
            std::fs::read(base.join(name)).expect("restored") == std::fs::read(original).expect("original"),
            "{name} differs after the prune"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_belong_to_their_opener_and_a_renewed_one_does_not_block_prune() {
    let env = grid(6).await;
    let small = env.write_random("small", 1 << 20, 3);
    env.put(&small, "something");
    let laptop = appender(&env, "laptop", &[]);
    let theirs = Profile::load(&laptop).expect("profile").coordinator().expect("coordinator");
    let mine = Profile::load(&env.grid.client_dir()).expect("profile").coordinator().expect("coordinator");
    let wrapped = Profile::load_keys(&laptop, THEIR_PASSPHRASE)
        .expect("keys")
        .write_keys()
        .wrap(&scatter_core::crypto::DataKey::generate());
    let session = theirs.create_session(&wrapped).await.expect("appender session").session;

    // The owner cannot renew, close, fill or commit the appender's session.
    assert!(mine.keep_session(session).await.is_err(), "the owner renewed the appender's session");
    assert!(mine.close_session(session).await.is_err(), "the owner closed the appender's session");
    assert!(mine.snapshot_refs(session, Vec::new()).await.is_err(), "the owner sent refs into it");
    let commit = scatter_proto::api::CommitSnapshotRequest {
        session,
        id: "ab".repeat(32),
        record: "AAAA".into(),
        retention: Default::default(),
    };
    assert!(mine.commit_snapshot(&commit).await.is_err(), "the owner committed into it");
    // ... and the appender cannot touch the owner's.
    let owners = mine.create_session(&wrapped).await.expect("owner session").session;
    assert!(theirs.keep_session(owners).await.is_err(), "the appender renewed the owner's session");
    assert!(theirs.close_session(owners).await.is_err(), "the appender closed the owner's session");
    assert!(theirs.snapshot_refs(owners, Vec::new()).await.is_err(), "the appender sent refs into it");
    mine.close_session(owners).await.expect("the owner closes its own session");
    // The appender's session is still its own and open.
    theirs.keep_session(session).await.expect("the appender renews its session");

    // The appender renews forever (the grid's lease is 6 s); the owner's prune still runs.
    let stop = Arc::new(AtomicBool::new(false));
    let renewer = {
        let (stop, theirs) = (stop.clone(), theirs.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let _ = theirs.keep_session(session).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(8)).await;
    let started = Instant::now();
    let pruned = env.scatter(&["prune"]);
    stop.store(true, Ordering::SeqCst);
    let _ = renewer.await;
    assert!(pruned.status.success(), "prune while a delegate renews: {}", String::from_utf8_lossy(&pruned.stderr));
    assert!(started.elapsed() < Duration::from_secs(6), "the prune waited for the delegate's session");
    env.get_and_compare("something", &small);
}

/// Attack: an untrusted appender backs up a set-user-id file (and, where the file system
/// allows, a `trusted.*` attribute); the owner restores that snapshot by id, possibly as
/// root. Before, the restored file kept its set-user-id bit (a root shell in the target
/// when the snapshot said root). Now an untrusted writer's metadata grants nothing: set-id
/// bits and privileged attributes are dropped and the files are the restorer's, while a
/// trusted writer's are restored as recorded.
#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_snapshot_restores_without_privileges() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let env = grid(6).await;
    let dir = env.path("setid");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let tool = dir.join("tool");
    std::fs::write(&tool, "#!/bin/sh\n").expect("write");
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o4755)).expect("chmod");
    let tagged = xattr::set(&tool, "trusted.scatter-test", b"x").is_ok();
    let laptop = appender(&env, "laptop", &[]);
    let id = backup_id(&ok(run(&laptop, &["backup", s(&dir), "--json"], &[]), "appender backup"));

    let target = env.path("restored");
    env.ok(&["restore", &id, "--target", s(&target)]);
    let restored = target.join(tool.strip_prefix("/").expect("absolute"));
    let meta = std::fs::metadata(&restored).expect("restored");
    assert_eq!(meta.mode() & 0o7777, 0o755, "set-user-id dropped, permissions kept");
    assert_eq!(meta.uid(), own_uid(), "the restorer owns it");
    if tagged {
        assert!(xattr::get(&restored, "trusted.scatter-test").ok().flatten().is_none(), "trusted.* dropped");
    }

    // Trusted, the same snapshot restores as recorded.
    let delegates: serde_json::Value = serde_json::from_str(&env.ok(&["delegate", "ls", "--json"])).expect("json");
    let who = delegates[0]["id"].as_str().map(str::to_owned).unwrap_or_else(|| delegates[0]["id"].to_string());
    env.ok(&["delegate", "trust", &who]);
    let target2 = env.path("restored-trusted");
    env.ok(&["restore", &id, "--target", s(&target2)]);
    let meta = std::fs::metadata(target2.join(tool.strip_prefix("/").expect("absolute"))).expect("restored");
    assert_eq!(meta.mode() & 0o7777, 0o4755);
}

/// The uid this test runs as: the owner of a file it just made.
fn own_uid() -> u32 {
    let probe = tempfile::NamedTempFile::new().expect("probe");
    std::os::unix::fs::MetadataExt::uid(&probe.as_file().metadata().expect("meta"))
}

/// Attack: an appender commits a snapshot sealed to a key its owner cannot open (one set up
/// with keys of its own, or a hostile one writing garbage). Every command that lists the
/// owner's snapshots failed on it: `snapshots`, `restore latest`, `backup`, `check`, even
/// `forget` of that snapshot, so one delegate denied its owner every restore. A delegate
/// registering with keys other than its owner's is refused, and a snapshot the owner's keys
/// cannot open is named, left out and can be forgotten.
#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_the_owner_cannot_open_denies_it_nothing() {
    let env = grid(3).await;
    let home = env.path("home");
    std::fs::create_dir_all(&home).expect("mkdir");
    std::fs::write(home.join("notes"), OWNER_KEY).expect("write");
    env.ok(&["backup", s(&home)]);

    // `init` with an appender invite and fresh keys: refused, with what to do.
    let token = env.ok(&["admin", "user", "add", "nas", "--role", "appender", "--of", "u1"]).trim().to_owned();
    let out = run(&env.path("nas"), &["init", "--coordinator", env.grid.url(), "--token", &token], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("scatter key export"), "{err}");

    // A hostile appender (with the owner's public key) commits garbage.
    let mallory = common::attacker::Attacker::invite(&env, &["mallory", "--role", "appender", "--of", "u1"]).await;
    let session = mallory.session().await;
    let id = hex::encode(rand::random::<[u8; 32]>());
    let record = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"garbage");
    let (status, body) = mallory
        .post("/v1/snapshots/commit", &serde_json::json!({ "session": session, "id": id, "record": record }))
        .await;
    assert_eq!(status, 200, "{body}");

    let out = env.scatter(&["snapshots"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "snapshots failed: {err}");
    assert!(err.contains(&id[..8]) && err.contains("cannot be opened"), "{err}");
    let target = env.path("restored");
    env.ok(&["restore", "latest", "--target", s(&target)]);
    let notes = target.join(home.strip_prefix("/").expect("absolute")).join("notes");
    assert_eq!(std::fs::read(notes).expect("restored"), OWNER_KEY.as_bytes());
    env.ok(&["backup", s(&home)]);
    // `check` reports it; `forget` removes it, and the listing is clean again.
    let out = env.scatter(&["check"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains(&id[..8]), "{out:?}");
    env.ok(&["forget", &id[..8]]);
    let out = env.scatter(&["snapshots"]);
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(snapshots(&env).len(), 2);
}

/// Attack: an appender commits snapshot records of the largest size, as many as it likes.
/// Nothing counted them: a hundred grew the catalog by 100 MB (and its backups on the hosts)
/// and made the owner's every listing fetch them all. A delegate's records are now held to
/// a share of what the coordinator keeps per account, which leaves the owner room to commit.
#[tokio::test(flavor = "multi_thread")]
async fn an_appender_cannot_fill_the_catalog_with_snapshot_records() {
    let env = grid(3).await;
    let mallory = common::attacker::Attacker::invite(&env, &["mallory", "--role", "appender", "--of", "u1"]).await;
    let record = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, vec![7u8; 1 << 20]);
    let mut refused = None;
    for n in 0..40 {
        let session = mallory.session().await;
        let id = hex::encode(rand::random::<[u8; 32]>());
        let (status, body) = mallory
            .post("/v1/snapshots/commit", &serde_json::json!({ "session": session, "id": id, "record": record }))
            .await;
        if status != 200 {
            refused = Some((n, status, body));
            break;
        }
    }
    let (n, status, body) = refused.expect("40 records of 1 MiB from one appender were all taken");
    assert!(n <= 16, "{n} records of 1 MiB taken from one appender");
    assert_eq!(status, 507, "{body}");
    assert!(body.to_string().contains("scatter forget"), "{body}");
    // The owner still commits its own backups.
    let home = env.path("home");
    std::fs::create_dir_all(&home).expect("mkdir");
    std::fs::write(home.join("notes"), OWNER_KEY).expect("write");
    env.ok(&["backup", s(&home)]);
}

/// Attack: an appender (holding its owner's public key, as every appender does) commits a
/// snapshot that opens but whose tree does not exist. `find` and `stats` failed as a whole on
/// it, without naming it; they now name it, leave it out, and go on with the others.
#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_without_its_tree_does_not_stop_find_or_stats() {
    let env = grid(3).await;
    let home = env.path("home");
    std::fs::create_dir_all(&home).expect("mkdir");
    std::fs::write(home.join("notes"), OWNER_KEY).expect("write");
    env.ok(&["backup", s(&home)]);

    let id = appenders_snapshot_of(&env, rand::random()).await;
    for args in [&["find", "notes"][..], &["stats"], &["stats", "--mode", "raw-data"]] {
        let out = env.scatter(args);
        let (stdout, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "scatter {args:?} failed: {err}");
        assert!(err.contains(&id[..8]) && err.contains(&format!("scatter forget {}", &id[..8])), "{err}");
        assert!(stdout.contains(if args[0] == "find" { "1 match" } else { "1 snapshot" }), "{stdout}");
    }
}

/// Commits, as a hostile appender holding its owner's public key (as every appender does), a
/// snapshot record the owner's keys open, whose root is the tree `tree`; returns its id.
async fn appenders_snapshot_of(env: &Env, tree: [u8; 32]) -> String {
    let mallory = common::attacker::Attacker::invite(env, &["mallory", "--role", "appender", "--of", "u1"]).await;
    let keys = Profile::load_keys(&env.grid.client_dir(), env.grid.passphrase()).expect("owner's keys");
    let key = scatter_core::crypto::DataKey::generate();
    let session = mallory.session_wrapping(&keys.write_keys().wrap(&key)).await;
    let snapshot = scatter_core::snapshot::Snapshot {
        time_ns: 1,
        hostname: "nas".into(),
        username: "mallory".into(),
        paths: vec!["/srv".into()],
        tags: vec![],
        tree,
        parent: None,
        summary: Default::default(),
        excluded: Default::default(),
    };
    let record = key.seal(scatter_core::snapshot::SNAPSHOT_CONTEXT, &snapshot.encode());
    let record = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, record);
    let id = hex::encode(rand::random::<[u8; 32]>());
    let (status, body) = mallory
        .post("/v1/snapshots/commit", &serde_json::json!({ "session": session, "id": id, "record": record }))
        .await;
    assert_eq!(status, 200, "{body}");
    id
}

/// Attack (red team): trees are content-addressed, so a few trees may name each other over
/// and over: tree k holds `a` and `b`, both tree k+1. Twenty-one trees of two entries stand
/// for two million paths (forty for a trillion), and `find`, `stats` and `ls` walked them
/// all, for as long as memory lasted. A walk that repeats its directories far beyond what a
/// file system does is refused, and the commands over every snapshot name it and go on.
#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_of_trees_naming_each_other_does_not_hang_find_or_stats() {
    use scatter_core::tree::{Node, NodeKind, Tree};
    let env = grid(3).await;
    let home = env.path("home");
    std::fs::create_dir_all(&home).expect("mkdir");
    std::fs::write(home.join("notes"), OWNER_KEY).expect("write");
    env.ok(&["backup", s(&home)]);

    // The trees' bytes are stored as the data of small files (one chunk each, whose id is the
    // keyed hash an appender computes with its owner's public keys).
    let keys = Profile::load_keys(&env.grid.client_dir(), env.grid.passphrase()).expect("owner's keys");
    let dedup = keys.write_keys().dedup_key();
    let bomb = env.path("bomb");
    std::fs::create_dir_all(&bomb).expect("mkdir");
    let mut below: Option<[u8; 32]> = None;
    for k in (0..=20).rev() {
        let node = |name: &str| Node {
            name: name.into(),
            kind: match below {
                Some(subtree) => NodeKind::Dir { subtree },
                None => NodeKind::File { chunks: vec![] },
            },
            mode: if below.is_some() { 0o40755 } else { 0o100644 },
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            size: 0,
            inode: 0,
            dev: 0,
            xattrs: vec![],
        };
        let tree = Tree::new(vec![node("a"), node("b")]).expect("tree").encode();
        below = Some(*dedup.chunk_id(&tree).as_bytes());
        std::fs::write(bomb.join(format!("t{k}")), tree).expect("write");
    }
    env.ok(&["backup", s(&bomb)]);
    let id = appenders_snapshot_of(&env, below.expect("the root")).await;

    for args in [&["find", "notes"][..], &["stats"], &["stats", "--mode", "raw-data"]] {
        let started = Instant::now();
        let out = env.scatter(args);
        let (stdout, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "scatter {args:?} failed: {err}");
        assert!(err.contains(&id[..8]) && err.contains("over and over"), "scatter {args:?}: {err}");
        assert!(stdout.contains(if args[0] == "find" { "1 match" } else { "2 snapshot" }), "{stdout}");
        assert!(started.elapsed() < Duration::from_secs(60), "scatter {args:?} took {:?}", started.elapsed());
    }
    let err = env.fails(&["ls", &id[..8]]);
    assert!(err.contains("over and over"), "{err}");
}
