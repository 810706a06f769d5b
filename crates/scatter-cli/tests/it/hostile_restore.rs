//! Hostile snapshots, with real processes: a write-only source (appender) backs up a folder
//! crafted to make the owner's `restore`, `recover` and listings write or print outside what
//! they should. Every test asserts the outcome on the file system (nothing outside the target
//! exists or changed, names restore under exactly their bytes) and on the terminal (no raw
//! control characters from the snapshot).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::common;
use common::*;

/// A directory and a symlink whose raw names differ but whose lossy UTF-8 forms are equal.
const DIR_NAME: &[u8] = b"a\xef\xbf\xbd";
const LINK_NAME: &[u8] = b"a\xff";
/// An honest name that is not UTF-8.
const LATIN1: &[u8] = b"caf\xe9.txt";
/// A name that would inject a terminal escape sequence and a fake line.
const NASTY: &[u8] = b"x\x1b[2J\nfake line\x07.txt";

fn name(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// A folder outside every target, with a file and a known mode; `snapshot` reads it back.
struct Outside {
    dir: PathBuf,
}

impl Outside {
    fn new(env: &Env) -> Self {
        let dir = env.path("outside");
        std::fs::create_dir_all(&dir).expect("mkdir outside");
        std::fs::write(dir.join("victim.txt"), b"original").expect("write victim");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).expect("chmod outside");
        Self { dir }
    }

    /// Names, contents and modes of everything in it, and its own mode.
    fn snapshot(&self) -> Vec<(Vec<u8>, Vec<u8>, u32)> {
        let mut out = vec![(Vec::new(), Vec::new(), std::fs::symlink_metadata(&self.dir).expect("outside").mode())];
        for e in std::fs::read_dir(&self.dir).expect("read outside").flatten() {
            let m = e.metadata().expect("meta");
            let data = if m.is_file() { std::fs::read(e.path()).expect("read") } else { Vec::new() };
            out.push((e.file_name().as_bytes().to_vec(), data, m.mode()));
        }
        out.sort();
        out
    }

    fn assert_untouched(&self, before: &[(Vec<u8>, Vec<u8>, u32)], what: &str) {
        assert_eq!(self.snapshot(), before, "{what} wrote outside its target: {:?}", self.snapshot());
    }
}

/// The crafted folder: the lossy-name pair, honest non-UTF-8 names, a terminal-escape name.
fn craft_source(env: &Env, outside: &Path) -> PathBuf {
    let src = env.path("src");
    std::fs::create_dir_all(&src).expect("mkdir src");
    std::os::unix::fs::symlink(outside, src.join(name(LINK_NAME))).expect("symlink");
    let dir = src.join(name(DIR_NAME));
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("victim.txt"), b"pwned").expect("write");
    std::fs::write(dir.join("new.txt"), b"planted").expect("write");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    // A second pair, the other way round: the symlink sorts first.
    std::os::unix::fs::symlink(outside, src.join(name(b"b\xef\xbf\xbd"))).expect("symlink");
    std::fs::create_dir(src.join(name(b"b\xff"))).expect("mkdir");
    std::fs::write(src.join(name(b"b\xff")).join("new2.txt"), b"planted").expect("write");
    // Honest names.
    let data = env.write_random("latin1-data", 300_000, 7);
    std::fs::copy(&data, src.join(name(LATIN1))).expect("copy");
    let deep = src.join(name(b"d\xfe")).join(name(b"e\x80"));
    std::fs::create_dir_all(&deep).expect("mkdir deep");
    std::fs::write(deep.join(name(b"f\xc0")), b"deep file").expect("write");
    std::fs::write(src.join(name(NASTY)), b"nasty").expect("write");
    src
}

/// Sets up a trusted appender (write-only source of u1) with its own profile; returns its
/// config dir and the mode `key export` gave the exported key file. Trusted: the write-only
/// source is the machine being backed up, so its snapshots are the owner's `latest` (an
/// untrusted one is only restored by id); a compromised source must still not reach outside
/// the target.
fn trusted_appender(env: &Env, label: &str) -> (PathBuf, u32) {
    let cfg = appender(env, label, &["--trusted"]);
    let mode = std::fs::metadata(env.path(&format!("{label}.keys"))).expect("exported").mode() & 0o777;
    (cfg, mode)
}

fn assert_no_raw_controls(text: &str, what: &str) {
    assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'), "{what} printed raw control characters: {text:?}");
    assert!(!text.contains("\nfake line"), "{what} printed a fake line: {text:?}");
}

/// Checks what a restore of the crafted folder put at `at`: exact names, real directories,
/// symlinks left as symlinks, data bit for bit.
fn assert_restored(at: &Path, outside: &Path, latin1: &[u8]) {
    let link = at.join(name(LINK_NAME));
    assert!(std::fs::symlink_metadata(&link).expect("link restored").file_type().is_symlink());
    assert_eq!(std::fs::read_link(&link).expect("readlink"), outside);
    let dir = at.join(name(DIR_NAME));
    let m = std::fs::symlink_metadata(&dir).expect("dir restored");
    assert!(m.is_dir(), "{} is not a directory", dir.display());
    assert_eq!(m.mode() & 0o7777, 0o777);
    assert_eq!(std::fs::read(dir.join("victim.txt")).expect("victim"), b"pwned");
    assert_eq!(std::fs::read(dir.join("new.txt")).expect("new"), b"planted");
    assert!(std::fs::symlink_metadata(at.join(name(b"b\xef\xbf\xbd"))).expect("b link").file_type().is_symlink());
    assert_eq!(std::fs::read(at.join(name(b"b\xff")).join("new2.txt")).expect("new2"), b"planted");
    assert_eq!(std::fs::read(at.join(name(LATIN1))).expect("latin1 restored under its bytes"), latin1);
    let deep = at.join(name(b"d\xfe")).join(name(b"e\x80")).join(name(b"f\xc0"));
    assert_eq!(std::fs::read(deep).expect("deep"), b"deep file");
    assert_eq!(std::fs::read(at.join(name(NASTY))).expect("nasty"), b"nasty");
    // No temporary file is left behind.
    for e in std::fs::read_dir(at).expect("read restored").flatten() {
        assert!(!e.file_name().as_bytes().ends_with(b".scatter-partial"), "{:?} left behind", e.file_name());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn appender_snapshot_cannot_escape_restore_target() {
    let env = grid(6).await;
    let outside = Outside::new(&env);
    let src = craft_source(&env, &outside.dir);
    let latin1 = std::fs::read(src.join(name(LATIN1))).expect("latin1");
    let before = outside.snapshot();

    let (source, key_mode) = trusted_appender(&env, "laptop");
    ok(run(&source, &["backup", utf8(&src), "--hostname", "evil\u{1b}[2J\nfake line"], &[]), "appender backup");

    // The owner restores the source's snapshot.

    let target = env.path("restored");
    let out = env.scatter(&["restore", "latest", "--target", utf8(&target)]);
    outside.assert_untouched(&before, "restore");
    assert!(out.status.success(), "restore failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_no_raw_controls(&String::from_utf8_lossy(&out.stdout), "restore");
    assert_no_raw_controls(&String::from_utf8_lossy(&out.stderr), "restore");
    let at = target.join(src.strip_prefix("/").expect("absolute"));
    assert_restored(&at, &outside.dir, &latin1);

    // What the owner's listings print of the snapshot is escaped.
    let listing = env.ok(&["snapshots"]);
    assert_no_raw_controls(&listing, "snapshots");
    let ls = env.ok(&["ls", "latest"]);
    assert_no_raw_controls(&ls, "ls");
    assert!(ls.contains("a\\xff"), "ls does not show the raw name escaped: {ls}");
    let found = env.ok(&["find", "*.txt"]);
    assert_no_raw_controls(&found, "find");
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["ls", "latest", "--json"])).expect("ls JSON");
    assert!(json
        .as_array()
        .is_some_and(|a| a.iter().any(|e| e["path"].as_str().is_some_and(|p| p.ends_with("/a\\xff")))));

    // Again over the restored tree (everything already right), then over a tree where the
    // directories were replaced by symlinks to the outside folder: they are replaced, not
    // descended into.
    env.ok(&["restore", "latest", "--target", utf8(&target)]);
    outside.assert_untouched(&before, "a second restore");
    std::fs::remove_dir_all(at.join(name(DIR_NAME))).expect("rm dir");
    std::os::unix::fs::symlink(&outside.dir, at.join(name(DIR_NAME))).expect("plant symlink");
    std::fs::remove_dir_all(at.join(name(b"d\xfe"))).expect("rm dir");
    std::os::unix::fs::symlink(&outside.dir, at.join(name(b"d\xfe"))).expect("plant symlink");
    let out = env.scatter(&["restore", "latest", "--target", utf8(&target)]);
    outside.assert_untouched(&before, "a restore over planted symlinks");
    assert!(out.status.success(), "restore failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_restored(&at, &outside.dir, &latin1);

    // A restore of part of the snapshot.
    let target2 = env.path("restored2");
    let spec = format!("latest:{}", utf8(&src));
    env.ok(&["restore", &spec, "--target", utf8(&target2)]);
    outside.assert_untouched(&before, "a restore of a sub path");
    assert_restored(&target2.join("src"), &outside.dir, &latin1);
    // A directory given by its name as `ls` shows it (escaped) restores under its raw bytes.
    let target3 = env.path("restored3");
    env.ok(&["restore", &format!("latest:{}/d\\xfe", utf8(&src)), "--target", utf8(&target3)]);
    let deep = target3.join(name(b"d\xfe")).join(name(b"e\x80")).join(name(b"f\xc0"));
    assert_eq!(std::fs::read(deep).expect("deep file restored by its escaped path"), b"deep file");
    let ls = env.ok(&["ls", &format!("latest:{}/d\\xfe", utf8(&src))]);
    assert!(ls.contains("/d\\xfe/e\\x80/f\\xc0"), "{ls}");

    // The exported key file was created readable by its owner only.
    assert_eq!(key_mode, 0o600, "key export wrote its file with mode {key_mode:o}");
}

#[tokio::test(flavor = "multi_thread")]
async fn recover_and_check_local_stay_under_snapshot_paths() {
    let env = grid(6).await;
    let outside = Outside::new(&env);
    let src = craft_source(&env, &outside.dir);
    let latin1 = std::fs::read(src.join(name(LATIN1))).expect("latin1");
    std::fs::create_dir(src.join("sub")).expect("mkdir sub");
    std::fs::write(src.join("sub").join("only-here.txt"), b"sub file").expect("write");
    std::fs::create_dir_all(src.join("sub2/inner")).expect("mkdir sub2");
    std::fs::write(src.join("sub2/inner/deep.txt"), b"deep").expect("write");
    let before = outside.snapshot();

    let (source, _) = trusted_appender(&env, "laptop");
    ok(run(&source, &["backup", utf8(&src)], &[]), "appender backup");

    // The colliding pair is lost, and `sub` is replaced by a symlink to the outside folder.
    std::fs::remove_dir_all(src.join(name(DIR_NAME))).expect("rm");
    std::fs::remove_file(src.join(name(LINK_NAME))).expect("rm");
    std::fs::remove_file(src.join(name(LATIN1))).expect("rm");
    std::fs::remove_dir_all(src.join("sub")).expect("rm");
    std::os::unix::fs::symlink(&outside.dir, src.join("sub")).expect("plant symlink");

    let out = env.scatter(&["check-local", utf8(&src), "--snapshot", "latest"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    outside.assert_untouched(&before, "check-local");

    // Without --force the changed `sub` is kept, and nothing is written through it.
    let out = env.scatter(&["recover", utf8(&src), "--snapshot", "latest"]);
    outside.assert_untouched(&before, "recover");
    assert!(out.status.success(), "recover failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::symlink_metadata(src.join("sub")).expect("sub").file_type().is_symlink());
    assert_restored(&src, &outside.dir, &latin1);
    // What check-local printed names the entries by their escaped raw names.
    assert_no_raw_controls(&text, "check-local");
    assert!(text.contains("a\\xff"), "check-local does not report the lost symlink by its escaped name: {text}");
    assert!(text.contains("caf\\xe9.txt"), "check-local does not report the lost file: {text}");

    // With --force, `sub` becomes a directory again.
    let out = env.scatter(&["recover", utf8(&src), "--snapshot", "latest", "--force"]);
    outside.assert_untouched(&before, "recover --force");
    assert!(out.status.success(), "recover --force failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::symlink_metadata(src.join("sub")).expect("sub").is_dir());
    assert_eq!(std::fs::read(src.join("sub").join("only-here.txt")).expect("sub file"), b"sub file");
    assert_restored(&src, &outside.dir, &latin1);

    // A path below a lost directory: the directories on the way are recovered too.
    std::fs::remove_dir_all(src.join("sub2")).expect("rm");
    let deep = src.join("sub2/inner/deep.txt");
    env.ok(&["recover", utf8(&deep), "--snapshot", "latest"]);
    assert_eq!(std::fs::read(&deep).expect("deep recovered"), b"deep");
    // A path the user gives that now leads through a symlink: nothing is written through it.
    std::fs::remove_dir_all(src.join("sub2")).expect("rm");
    std::os::unix::fs::symlink(&outside.dir, src.join("sub2")).expect("plant symlink");
    let out = env.scatter(&["recover", utf8(&deep), "--snapshot", "latest"]);
    outside.assert_untouched(&before, "recover of a path through a symlink");
    assert!(out.status.success(), "recover failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::symlink_metadata(src.join("sub2")).expect("sub2").file_type().is_symlink());
}
