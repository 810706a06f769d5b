//! The README's threat model rows for devices and recovery codes, tried as the attacker would,
//! with real processes: a taken device (its profile folder without the passphrase), a spent
//! code, a delegate, another tenant.

use std::path::Path;

use base64::Engine;
use serde_json::json;

use crate::common;
use common::attacker::Attacker;
use common::*;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `scatter init` with `token` in a fresh profile `dir`.
fn init(env: &Env, dir: &Path, token: &str) -> std::process::Output {
    run_with_pass(dir, env.grid.passphrase(), &["init", "--coordinator", env.grid.url(), "--token", token])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_device_cannot_void_or_spoil_the_recovery_code() {
    let env = grid(3).await;
    let code = env.grid.recovery_code().expect("init printed a recovery code").to_owned();
    // The laptop is taken: its device key works until revoked, but the passphrase is not on it.
    let thief = Attacker::from_profile(&env, &env.grid.client_dir());
    let (status, current) = thief.call(reqwest::Method::GET, "/v1/recovery", None).await;
    assert_eq!(status, 200, "{current}");
    let info = current["code"].clone();
    assert!(info.is_object(), "the account has a code: {current}");

    // Re-sealing garbage for the current code would spend the code on a key file that opens
    // nothing; a code of the thief's own would void the user's. The thief signs the changes
    // with keys of its own (it has none of the user's), or not at all.
    let theirs = scatter_core::keys::UserKeys::generate();
    let signed = |info: &serde_json::Value, escrow: &[u8]| {
        let verifier =
            <[u8; 32]>::try_from(hex::decode(info["verifier"].as_str().expect("hex")).expect("hex")).expect("32 bytes");
        let grid = fingerprint(&env).0;
        let recipient = info["recipient"].as_str().expect("recipient");
        let change = scatter_core::recovery::change(&grid, thief.user.0, &verifier, recipient, escrow);
        json!({
            "info": info, "escrow": b64(escrow),
            "owner": hex::encode(scatter_core::recovery::owner(theirs.write_keys())),
            "proof": hex::encode(scatter_core::recovery::sign_change(theirs.write_keys(), &change)),
        })
    };
    let (status, body) = thief.post("/v1/recovery/escrow", &json!({ "info": info, "escrow": b64(b"garbage") })).await;
    assert!(status == 400 || status == 403, "an unsigned re-seal was taken: {body}");
    let (status, body) = thief.post("/v1/recovery/escrow", &signed(&info, b"garbage")).await;
    assert_eq!(status, 403, "a device without the keys re-sealed the kept key file: {body}");
    let own = scatter_core::recovery::RecoveryCode::generate();
    let mine = json!({
        "verifier": hex::encode(own.verifier()), "recipient": own.recipient(), "binding": hex::encode([0u8; 32]),
    });
    let (status, body) = thief.call(reqwest::Method::PUT, "/v1/recovery", Some(signed(&mine, b"garbage"))).await;
    assert_eq!(status, 403, "a device without the keys replaced the recovery code: {body}");

    // The user's code still brings the keys back, with the passphrase.
    let out = ok(init(&env, &env.path("new"), &code), "recovery after the attempts");
    assert!(out.contains("Recovered your keys") && !out.contains("warning"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_device_cannot_lock_its_user_out_by_revoking_the_others() {
    let env = grid(3).await;
    let code = env.grid.recovery_code().expect("init printed a recovery code").to_owned();
    let thief = Attacker::from_profile(&env, &env.grid.client_dir());
    // The user gets the keys back on a new machine, to revoke the taken one from there.
    let new = env.path("new");
    ok(init(&env, &new, &code), "recovery");
    let listed: serde_json::Value =
        serde_json::from_str(&ok(run_with_pass(&new, env.grid.passphrase(), &["key", "devices", "--json"]), "devices"))
            .expect("json");
    let fresh = listed[1]["id"].as_u64().expect("the new device");

    // The thief is faster, but holds the device key only: unsigned, or signed with keys of its
    // own, its revocation of the new machine is refused.
    let (status, body) = thief.post("/v1/devices/revoke", &json!({ "device": fresh })).await;
    assert_eq!(status, 403, "a device without the keys revoked its user's other device: {body}");
    let theirs = scatter_core::keys::UserKeys::generate();
    let revocation = scatter_core::recovery::revocation(&fingerprint(&env).0, thief.user.0, fresh);
    let forged = json!({
        "device": fresh,
        "owner": hex::encode(scatter_core::recovery::owner(theirs.write_keys())),
        "proof": hex::encode(scatter_core::recovery::sign_change(theirs.write_keys(), &revocation)),
    });
    let (status, body) = thief.post("/v1/devices/revoke", &forged).await;
    assert_eq!(status, 403, "{body}");

    // The user, with the passphrase, revokes the taken device; the thief is refused from then on.
    let taken = thief.device.0.to_string();
    ok(run_with_pass(&new, env.grid.passphrase(), &["key", "revoke", &taken]), "revoke");
    let (status, body) = thief.call(reqwest::Method::GET, "/v1/devices", None).await;
    assert_eq!(status, 401, "{body}");
}

/// Attack: whoever finds the recovery code, but not the passphrase, registers a device with
/// it. That device was a full device of the user: it listed the objects and deleted them.
/// Until it shows it holds the keys (by signing a new code with the owner key, as `init`
/// does when the passphrase opens the key file), it may do nothing but that.
#[tokio::test(flavor = "multi_thread")]
async fn a_recovery_code_without_the_passphrase_registers_a_device_that_can_do_nothing() {
    let env = grid(3).await;
    let file = env.write_random("data", 64 << 10, 5);
    env.put(&file, "data");
    let code = env.grid.recovery_code().expect("init printed a recovery code").to_owned();
    let dir = env.path("found");
    let out = run_with_pass(&dir, "a guess", &["init", "--coordinator", env.grid.url(), "--token", &code]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("does not open the key file"), "{text}");
    assert_eq!(out.status.code(), Some(3), "a recovery whose device may do nothing is not a success: {text}");
    let finder = Attacker::from_profile(&env, &dir);
    let (status, body) = finder.call(reqwest::Method::GET, "/v1/objects", None).await;
    assert_eq!(status, 403, "a device registered with the code alone listed the objects: {body}");
    assert!(body.to_string().contains("scatter key recovery-code"), "{body}");
    let (status, body) = finder.call(reqwest::Method::DELETE, "/v1/object?name=data", None).await;
    assert_eq!(status, 403, "a device registered with the code alone deleted: {body}");
    let (status, body) = finder.call(reqwest::Method::GET, "/v1/usage", None).await;
    assert_eq!(status, 403, "{body}");
    // The user's own devices list it as one that has not shown the keys.
    let listed = env.ok(&["key", "devices"]);
    assert!(listed.contains("not shown the keys"), "{listed}");
    env.get_and_compare("data", &file);

    // A user who mistyped the passphrase at `init` follows the advice, and the device works.
    ok(run_with_pass(&dir, env.grid.passphrase(), &["key", "recovery-code"]), "a new code");
    let listed = ok(run_with_pass(&dir, env.grid.passphrase(), &["ls"]), "ls");
    assert!(listed.contains("data"), "{listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_code_registers_one_device_however_its_claims_are_raced_or_replayed() {
    let env = grid(3).await;
    let token: scatter_net::Token = env.grid.recovery_code().expect("a recovery code").parse().expect("token");
    let code = scatter_core::recovery::RecoveryCode::from_secret(token.secret_bytes());
    let fp = fingerprint(&env);
    let http = scatter_net::http_client(Some(fp), scatter_net::Peer::Coordinator).build().expect("client");
    let claim = |n: u8| {
        let device = ed25519_dalek::SigningKey::from_bytes(&[n; 32]).verifying_key();
        let time = common::attacker::now();
        let claim = scatter_core::recovery::claim(&fp.0, device.as_bytes(), time);
        json!({
            "verifier": hex::encode(code.verifier()), "signature": hex::encode(code.sign(&claim)), "time": time,
            "device_key": hex::encode(device.as_bytes()), "device_name": format!("racer {n}"),
        })
    };
    let url = format!("{}/v1/users/recover", env.grid.url());
    let send = |body: serde_json::Value| {
        let (http, url) = (http.clone(), url.clone());
        async move { http.post(url).json(&body).send().await.expect("recover").status().as_u16() }
    };
    // Eight claims of the same code for eight devices, at once: one device is registered.
    let (first, rest) = (claim(1), (2..=8).map(claim).collect::<Vec<_>>());
    let mut all = vec![tokio::spawn(send(first.clone()))];
    all.extend(rest.into_iter().map(|c| tokio::spawn(send(c))));
    let mut statuses = Vec::new();
    for h in all {
        statuses.push(h.await.expect("task"));
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 401), "{statuses:?}");
    // A claim seen on the wire, replayed as it was: refused.
    assert_eq!(send(first).await, 401);
    let devices: serde_json::Value = serde_json::from_str(&env.ok(&["key", "devices", "--json"])).expect("json");
    assert_eq!(devices.as_array().map(Vec::len), Some(2), "{devices}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_invite_dies_with_its_user() {
    let env = grid(3).await;
    let bob = Attacker::invite(&env, &["bob"]).await;
    let user = bob.user.to_string();
    let before = env.ok(&["admin", "user", "device", &user]).trim().to_owned();
    env.ok(&["admin", "user", "rm", &user]);
    // The invite handed out before the removal registers nothing.
    let http =
        scatter_net::http_client(Some(fingerprint(&env)), scatter_net::Peer::Coordinator).build().expect("client");
    let device = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng).verifying_key();
    let req = json!({
        "token": before, "public_key": "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq",
        "device_key": hex::encode(device.as_bytes()), "device_name": "late",
    });
    let resp = http.post(format!("{}/v1/users/register", env.grid.url())).json(&req).send().await.expect("register");
    let status = resp.status().as_u16();
    assert!(status == 401 || status == 403, "a removed user's device invite registered a device: {status}");
    // And no new one is made for it.
    env.fails(&["admin", "user", "device", &user]);
}

/// A machine of the user's own set up with write-only keys (a device invite with a
/// `--write-only` export) changed its passphrase, and re-sealed the copy kept for the
/// recovery code with its write-only key file: the code then brought back keys that could
/// read nothing. A machine with write-only keys neither re-seals that copy nor makes a code.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_only_machine_cannot_spoil_the_recovery_code() {
    let env = grid(3).await;
    let file = env.write_random("data", 64 << 10, 9);
    env.put(&file, "data");
    let code = env.grid.recovery_code().expect("init printed a recovery code").to_owned();
    let keys = env.path("wo.keys");
    let moving = [("SCATTER_EXPORT_PASSPHRASE", "moving"), ("SCATTER_IMPORT_PASSPHRASE", "moving")];
    let export = ["key", "export", "--write-only", "--output", keys.to_str().expect("utf-8")];
    ok(run_with(&env.grid.client_dir(), env.grid.passphrase(), &export, &moving), "export");
    let invite = env.ok(&["admin", "user", "device", "u1"]).trim().to_owned();
    let nas = env.path("nas");
    let args = ["init", "--coordinator", env.grid.url(), "--token", &invite, "--import", keys.to_str().expect("utf-8")];
    ok(run(&nas, &args, &moving), "write-only machine init");
    let out = ok(run(&nas, &["key", "passwd"], &[("SCATTER_NEW_PASSPHRASE", "another")]), "passwd");
    assert!(out.contains("write-only"), "{out}");
    let out = run_with(&nas, "another", &["key", "recovery-code"], &[]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("write-only"), "{out:?}");
    // The code still brings back the full keys, under the user's passphrase.
    let back = env.path("back");
    ok(init(&env, &back, &code), "recovery");
    let listed = ok(run_with_pass(&back, env.grid.passphrase(), &["ls"]), "ls after recovery");
    assert!(listed.contains("data"), "{listed}");
}
