//! Losing the source machine: devices, recovery codes and device invites, with real
//! processes. The recovery code and the passphrase alone get the keys back; the coordinator
//! keeps nothing that opens them with the passphrase alone; revoked devices and spent or
//! voided codes are refused.

use std::path::Path;

use scatter_core::keys::UserKeys;
use serde_json::json;

use crate::common;
use common::attacker::{now, Attacker};
use common::*;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The recovery code a command printed (`scr_…`).
fn code_in(out: &str) -> String {
    out.split_whitespace()
        .find(|w| w.starts_with("scr_"))
        .unwrap_or_else(|| panic!("no recovery code in: {out}"))
        .to_owned()
}

/// Every value in every table of the catalog that is long enough to be a key file.
fn catalog_values(db: &Path) -> Vec<Vec<u8>> {
    let conn = rusqlite::Connection::open(db).expect("catalog");
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .expect("tables")
        .query_map([], |r| r.get(0))
        .expect("tables")
        .collect::<Result<_, _>>()
        .expect("names");
    let mut out = Vec::new();
    for t in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{t}\"")).expect("select");
        let n = stmt.column_count();
        let mut rows = stmt.query([]).expect("rows");
        while let Some(row) = rows.next().expect("row") {
            for i in 0..n {
                let v = match row.get_ref(i).expect("value") {
                    rusqlite::types::ValueRef::Blob(b) => b.to_vec(),
                    rusqlite::types::ValueRef::Text(t) => t.to_vec(),
                    _ => continue,
                };
                if v.len() >= 100 {
                    out.push(v);
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_passphrase_and_recovery_code_bring_back_a_lost_source() {
    let env = grid(6).await;
    let url = env.grid.url().to_owned();
    let pass = env.grid.passphrase().to_owned();
    let src = env.path("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::rename(env.write_random("big", 3 << 20, 1), src.join("big.bin")).expect("mv");
    std::fs::rename(env.write_random("small", 5000, 2), src.join("small.txt")).expect("mv");
    env.ok(&["backup", s(&src)]);
    let first = env.grid.recovery_code().expect("init printed a recovery code").to_owned();

    // Everything the coordinator keeps, with the right passphrase and no code, opens nothing.
    let values = catalog_values(&env.grid.coordinator_dir().join("catalog.db"));
    assert!(!values.is_empty(), "the kept key file is in the catalog");
    for v in &values {
        assert!(UserKeys::from_key_file(v, &pass).is_err(), "a catalog value opened with the passphrase alone");
    }

    // The source machine is lost (a copy of its profile stays with whoever took it).
    let client = env.grid.client_dir();
    let stolen = env.path("stolen-profile");
    assert!(std::process::Command::new("cp").arg("-a").arg(&client).arg(&stolen).status().expect("cp").success());
    std::fs::remove_dir_all(&client).expect("rm profile");
    // A name that is no device name is refused before the code is spent.
    let err = env.fails(&["init", "--coordinator", &url, "--token", &first, "--device-name", "bad\nname"]);
    assert!(err.contains("not a device name"), "{err}");
    let out = env.ok(&["init", "--coordinator", &url, "--token", &first, "--device-name", "new laptop"]);
    assert!(out.contains("Recovered your keys") && out.contains("u1"), "{out}");
    let second = code_in(&out);
    assert_ne!(second, first, "using a code prints a new one");
    let target = env.path("restored");
    env.ok(&["restore", "latest", "--target", s(&target)]);
    let back = target.join(src.strip_prefix("/").expect("absolute"));
    for f in ["big.bin", "small.txt"] {
        assert!(std::fs::read(src.join(f)).expect("src") == std::fs::read(back.join(f)).expect("restored"), "{f}");
    }

    // The new device is listed next to the old one, which is revoked and then refused.
    let devices: serde_json::Value = serde_json::from_str(&env.ok(&["key", "devices", "--json"])).expect("json");
    assert_eq!(devices.as_array().map(Vec::len), Some(2), "{devices}");
    ok(run_with_pass(&stolen, &pass, &["snapshots"]), "the old device, before it is revoked");
    // Ids are numbers in JSON; `key revoke` takes them with or without the `d`.
    let id = |i: usize| devices[i]["id"].as_u64().expect("a device id").to_string();
    let old = id(0);
    assert!(env.ok(&["key", "devices"]).contains("this device"));
    assert_eq!(devices[1]["name"], "new laptop", "{devices}");
    env.fails(&["key", "revoke", &id(1)]);
    env.ok(&["key", "revoke", &old]);
    let refused = run_with_pass(&stolen, &pass, &["snapshots"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("revoked"), "a revoked device: {err}");

    // A used code is refused; so is one voided by a newer code.
    let fresh = env.path("fresh");
    let init = |dir: &Path, token: &str, passphrase: &str| {
        run_with_pass(dir, passphrase, &["init", "--coordinator", &url, "--token", token])
    };
    let used = init(&fresh, &first, &pass);
    assert!(!used.status.success() && String::from_utf8_lossy(&used.stderr).contains("unknown, used or voided"));
    let third = code_in(&env.ok(&["key", "recovery-code"]));
    let voided = init(&env.path("fresh2"), &second, &pass);
    assert!(!voided.status.success() && String::from_utf8_lossy(&voided.stderr).contains("unknown, used or voided"));
    assert!(!fresh.join("keys.age").exists(), "a refused recovery writes no key file");

    // After a passphrase change, the code opens the kept key file with the new passphrase.
    let out = run_with(&client, &pass, &["key", "passwd"], &[("SCATTER_NEW_PASSPHRASE", "new passphrase")]);
    assert!(ok(out, "key passwd").contains("re-sealed"));
    let out = ok(init(&env.path("after-passwd"), &third, "new passphrase"), "recovery after passwd");
    assert!(out.contains("Recovered your keys") && out.contains("scr_") && !out.contains("warning"), "{out}");

    // A device invite adds a machine that brings the keys from an export: same user, same data.
    let token = env.ok(&["admin", "user", "device", "u1"]).trim().to_owned();
    let export = env.path("keys.export");
    ok(
        run_with(
            &client,
            "new passphrase",
            &["key", "export", "--output", s(&export)],
            &[("SCATTER_EXPORT_PASSPHRASE", "moving")],
        ),
        "export",
    );
    let desk = env.path("desk");
    let out = run_with(
        &desk,
        "desk passphrase",
        &["init", "--coordinator", &url, "--token", &token, "--import", s(&export)],
        &[("SCATTER_IMPORT_PASSPHRASE", "moving")],
    );
    let out = ok(out, "init with a device invite");
    assert!(out.contains("u1") && out.contains("still works"), "{out}");
    let target = env.path("restored-desk");
    ok(run_with_pass(&desk, "desk passphrase", &["restore", "latest", "--target", s(&target)]), "desk restore");
    let back = target.join(src.strip_prefix("/").expect("absolute"));
    assert!(std::fs::read(src.join("big.bin")).expect("src") == std::fs::read(back.join("big.bin")).expect("restored"));
    // A device invite is for its user's keys only, and works once.
    let other_keys = env.path("other");
    let again = run_with(
        &other_keys,
        "x",
        &["init", "--coordinator", &url, "--token", &token, "--import", s(&export)],
        &[("SCATTER_IMPORT_PASSPHRASE", "moving")],
    );
    assert!(!again.status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn other_accounts_cannot_use_or_touch_anothers_devices_and_code() {
    let env = grid(3).await;
    let bob = Attacker::invite(&env, &["bob"]).await;
    // Bob cannot revoke the admin's device, nor read or replace its code.
    let (status, _) = bob.post("/v1/devices/revoke", &json!({ "device": 1 })).await;
    assert_eq!(status, 404);
    env.ok(&["ls"]);
    let (status, body) = bob.call(reqwest::Method::GET, "/v1/devices", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["devices"].as_array().map(Vec::len), Some(1), "only bob's own: {body}");
    // A claim that does not verify, a made-up code, and another grid's claim are refused.
    let code = scatter_core::recovery::RecoveryCode::generate();
    let device = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng).verifying_key();
    let t = now();
    let claim = |grid: [u8; 32]| scatter_core::recovery::claim(&grid, device.as_bytes(), t);
    let grid = fingerprint(&env).0;
    for (what, verifier, signature) in [
        ("a made-up code", code.verifier(), code.sign(&claim(grid))),
        ("another grid's claim", code.verifier(), code.sign(&claim([0; 32]))),
        ("a forged signature", code.verifier(), [7u8; 64]),
    ] {
        let req = json!({
            "verifier": hex::encode(verifier), "signature": hex::encode(signature), "time": t,
            "device_key": hex::encode(device.as_bytes()), "device_name": "x",
        });
        let (status, body) = bob.post("/v1/users/recover", &req).await;
        assert_eq!(status, 401, "{what}: {body}");
    }
    // A reader has no code of its own.
    let reader = Attacker::invite(&env, &["eve", "--role", "reader", "--of", "u1"]).await;
    let (status, body) = reader.call(reqwest::Method::GET, "/v1/recovery", None).await;
    assert_eq!(status, 403, "{body}");
    // The admin's code is untouched: it still recovers.
    let code = env.grid.recovery_code().expect("code").to_owned();
    let out = run_with_pass(
        &env.path("new"),
        env.grid.passphrase(),
        &["init", "--coordinator", env.grid.url(), "--token", &code],
    );
    assert!(ok(out, "recovery").contains("Recovered your keys"));
}

/// A sole admin who lost every device and the recovery code, and kept a `key export` file,
/// gets back in through the coordinator's operator: without an `admin-token` file a
/// coordinator writes a new one at start, a new admin registers with it and invites a
/// device for the old account, which brings the exported keys. Nothing was documented for
/// this, and no other admin could invite the device.
#[tokio::test(flavor = "multi_thread")]
async fn a_sole_admin_without_devices_gets_back_in_through_the_operator() {
    let mut env = grid(3).await;
    let url = env.grid.url().to_owned();
    let file = env.write_random("kept", 200_000, 5);
    env.put(&file, "kept");
    let export = env.path("admin.keys");
    ok(
        run_with(
            &env.grid.client_dir(),
            env.grid.passphrase(),
            &["key", "export", "--output", s(&export)],
            &[("SCATTER_EXPORT_PASSPHRASE", "moving")],
        ),
        "export",
    );
    // The operator, on the coordinator's machine: the spent admin token moved away, a restart.
    env.grid.kill_coordinator();
    let admin_token = env.grid.coordinator_dir().join("admin-token");
    let spent = std::fs::read_to_string(&admin_token).expect("admin token");
    std::fs::remove_file(&admin_token).expect("move the spent token away");
    env.grid.start_coordinator().expect("coordinator restarts");
    let fresh = std::fs::read_to_string(&admin_token).expect("a new admin token");
    assert_ne!(fresh.trim(), spent.trim(), "the token is new");
    let rescue = env.path("rescue");
    ok(run(&rescue, &["init", "--coordinator", &url, "--token", fresh.trim()], &[]), "a new admin registers");
    let invite = ok(run(&rescue, &["admin", "user", "device", "u1"], &[]), "device invite for the old admin");
    let back = env.path("back");
    let out = run_with(
        &back,
        "back passphrase",
        &["init", "--coordinator", &url, "--token", invite.trim(), "--import", s(&export)],
        &[("SCATTER_IMPORT_PASSPHRASE", "moving")],
    );
    assert!(ok(out, "the old admin's new device").contains("u1"));
    let restored = env.path("kept.back");
    ok(run_with_pass(&back, "back passphrase", &["get", "kept", "--output", s(&restored)]), "get");
    assert!(std::fs::read(&file).expect("file") == std::fs::read(&restored).expect("restored"), "same bytes");
    // The event trail says a new admin token was made, for a name not taken.
    let events = ok(run(&rescue, &["admin", "events"], &[]), "events");
    assert!(events.contains("admin token for `admin-2`"), "{events}");
    let users: serde_json::Value =
        serde_json::from_str(&ok(run(&rescue, &["admin", "user", "ls", "--json"], &[]), "users")).expect("JSON");
    let names: Vec<&str> = users.as_array().expect("users").iter().filter_map(|u| u["name"].as_str()).collect();
    assert_eq!(names, ["admin", "admin-2"]);
}
