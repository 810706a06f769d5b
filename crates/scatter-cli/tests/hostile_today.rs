//! Red-team tests of the day's new surface (restore resume, dashboard, copy, mount, config),
//! with real processes: each test is the attacker's try and asserts that it fails.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

mod common;
use common::*;

fn utf8(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut data = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

/// Two files whose names differ only past the 238 bytes a temporary name keeps share one
/// temporary name (`.PREFIX.scatter-partial`). A leftover under it, from an interrupted run,
/// is found for both: the first is resumed and renamed into place, and the second must not
/// then be "resumed" into the first's (now final) file, truncating it and writing its own
/// bytes there.
#[tokio::test(flavor = "multi_thread")]
async fn a_resumed_leftover_is_not_continued_into_a_file_already_restored() {
    let env = grid(6).await;
    let src = env.path("src");
    std::fs::create_dir_all(&src).expect("mkdir src");
    let stem = vec![b'n'; 240];
    let (a, b) = ([&stem[..], b"-a"].concat(), [&stem[..], b"-b"].concat());
    // The same first megabytes (so the same first chunks), different tails.
    let head = random(3 << 20, 1);
    let content_a = [&head[..], &random(2 << 20, 2)[..]].concat();
    let content_b = [&head[..], &random(2 << 20, 3)[..]].concat();
    std::fs::write(src.join(OsStr::from_bytes(&a)), &content_a).expect("write a");
    std::fs::write(src.join(OsStr::from_bytes(&b)), &content_b).expect("write b");
    env.ok(&["backup", utf8(&src)]);

    // What an interrupted restore leaves: the shared head under the shared temporary name.
    let target = env.path("restored");
    let at = target.join(src.strip_prefix("/").expect("absolute"));
    std::fs::create_dir_all(&at).expect("mkdir target");
    let leftover = [b".", &stem[..238], b".scatter-partial"].concat();
    assert_eq!(leftover.len(), 255);
    std::fs::write(at.join(OsStr::from_bytes(&leftover)), &head).expect("plant leftover");

    let out = env.scatter(&["restore", "latest", "--target", utf8(&target)]);
    let restored_a = std::fs::read(at.join(OsStr::from_bytes(&a))).unwrap_or_default();
    assert!(restored_a == content_a, "the first file holds wrong bytes after the restore");
    assert!(out.status.success(), "restore failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(at.join(OsStr::from_bytes(&b))).expect("b") == content_b, "b differs");
}
