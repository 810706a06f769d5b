//! Users and rights, with real processes: invites, quotas, disabling, readers and write-only
//! appenders, key export and passphrase change.

use std::process::{Command, Output};

use crate::common;
use common::*;

fn refused(out: Output, what: &str, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what} should have been refused");
    assert!(err.contains(needle), "{what}: expected `{needle}` in: {err}");
    assert!(!err.contains("panicked"), "{what} panicked: {err}");
}

fn invite(env: &Env, args: &[&str]) -> String {
    let mut all = vec!["admin", "user", "add"];
    all.extend_from_slice(args);
    env.ok(&all).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_quotas_and_write_only_sources() {
    let env = grid(6).await;
    let url = env.grid.url().to_owned();
    let small = env.write_random("small", 1 << 20, 1);
    let big = env.write_random("big", 4 << 20, 2);

    // A user with a quota: a small put fits, a big one is refused with one clear sentence.
    let bob = env.path("bob");
    let token = invite(&env, &["bob", "--role", "user", "--quota", "3MiB"]);
    ok(run(&bob, &["init", "--coordinator", &url, "--token", &token], &[]), "bob init");
    ok(run(&bob, &["put", small.to_str().expect("utf-8"), "--name", "s"], &[]), "bob small put");
    refused(run(&bob, &["put", big.to_str().expect("utf-8"), "--name", "b"], &[]), "bob big put", "quota");
    // Tokens are single use.
    refused(run(&env.path("bob2"), &["init", "--coordinator", &url, "--token", &token], &[]), "reuse", "already used");

    // A write-only source of the admin's data: backs up, cannot read, list, overwrite or delete.
    let wo = env.path("keys.wo");
    let src = env.path("source");
    let token = invite(&env, &["laptop", "--role", "appender", "--of", "u1"]);
    let transport = [("SCATTER_IMPORT_PASSPHRASE", "moving"), ("SCATTER_EXPORT_PASSPHRASE", "moving")];
    let out = Command::new(EXE)
        .args(["key", "export", "--write-only", "--output", wo.to_str().expect("utf-8")])
        .env("SCATTER_CONFIG", env.grid.client_dir())
        .env("SCATTER_PASSPHRASE", env.grid.passphrase())
        .env("SCATTER_EXPORT_PASSPHRASE", "moving")
        .output()
        .expect("export");
    ok(out, "export");
    ok(
        run(
            &src,
            &["init", "--coordinator", &url, "--token", &token, "--import", wo.to_str().expect("utf-8")],
            &transport,
        ),
        "appender init",
    );
    let data = env.path("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::copy(&small, data.join("a.bin")).expect("copy");
    ok(run(&src, &["backup", data.to_str().expect("utf-8")], &[]), "appender backup");
    // An appender of bob is stopped by bob's quota, without the figures: they would tell it
    // bob's usage (which `usage` refuses it) to the byte, by trying placements of other sizes.
    let bob_wo = env.path("bob.wo");
    let export = ["key", "export", "--write-only", "--output", bob_wo.to_str().expect("utf-8")];
    ok(run(&bob, &export, &transport), "bob's export");
    let token = invite(&env, &["bobnas", "--role", "appender", "--of", "u2"]);
    let bobnas = env.path("bobnas");
    let init = ["init", "--coordinator", &url, "--token", &token, "--import", bob_wo.to_str().expect("utf-8")];
    ok(run(&bobnas, &init, &transport), "bob's appender init");
    let out = run(&bobnas, &["put", big.to_str().expect("utf-8"), "--name", "too-big"], &[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    refused(out, "appender over its owner's quota", "quota of the account this one stores for");
    assert!(!err.contains("MiB") && !err.contains(" used"), "{err}");
    refused(run(&src, &["snapshots"], &[]), "appender snapshots", "may not read");
    refused(run(&src, &["forget", "latest"], &[]), "appender forget", "may not read");
    refused(run(&src, &["prune"], &[]), "appender prune", "may not remove");
    refused(run(&src, &["usage"], &[]), "appender usage", "may not see or manage the account");
    env.put(&small, "existing");
    refused(
        run(&src, &["put", small.to_str().expect("utf-8"), "--name", "existing"], &[]),
        "overwrite",
        "not overwrite",
    );
    // With bytes of its own, refused only once they are stored: told sooner, without writing,
    // the appender would learn which names its owner has for nothing (red team).
    let fresh = env.write_random("fresh", 1 << 20, 77);
    let packs = || env.catalog_db().query_row("SELECT COUNT(*) FROM packs", [], |r| r.get::<_, i64>(0)).expect("packs");
    let before = packs();
    refused(
        run(&src, &["put", fresh.to_str().expect("utf-8"), "--name", "existing"], &[]),
        "overwrite with new bytes",
        "not overwrite",
    );
    assert!(packs() > before, "the appender was told the name is taken before it wrote");
    // Bob cannot list, fetch or remove the admin's data, nor get grants for it even when he
    // knows its chunk ids (here read straight from the catalog).
    assert!(!ok(run(&bob, &["ls"], &[]), "bob ls").contains("existing"));
    let out = env.path("stolen");
    refused(run(&bob, &["get", "existing", "--output", out.to_str().expect("utf-8")], &[]), "bob get", "no object");
    refused(run(&bob, &["rm", "existing"], &[]), "bob rm", "no object");
    let catalog = rusqlite::Connection::open(env.grid.coordinator_dir().join("catalog.db")).expect("catalog");
    let ids: Vec<scatter_core::ChunkId> = catalog
        .prepare("SELECT id FROM chunks WHERE user = 1")
        .expect("query")
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .expect("rows")
        .filter_map(|id| id.ok().and_then(|b| <[u8; 32]>::try_from(b).ok()))
        .map(scatter_core::ChunkId::from_bytes)
        .collect();
    drop(catalog);
    assert!(!ids.is_empty(), "the admin has chunks");
    let bobs = scatter_client::profile::Profile::load(&bob).expect("profile").coordinator().expect("coordinator");
    let located = bobs.locate(ids).await.expect("locate");
    assert!(located.packs.is_empty() && located.chunks.is_empty(), "bob was given the admin's shards");
    assert!(!out.exists());

    // The owner sees the source's snapshot, marked as the appender's, and restores it by id
    // (an untrusted delegate's snapshot is never `latest`).
    let snaps: serde_json::Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).expect("JSON");
    assert_eq!(snaps.as_array().map(Vec::len), Some(1));
    assert_eq!(snaps[0]["writer_name"], "laptop", "{snaps}");
    let id = snaps[0]["id"].as_str().expect("id").to_owned();
    let target = env.path("restored");
    env.ok(&["restore", &id, "--target", target.to_str().expect("utf-8")]);
    assert_eq!(
        std::fs::read(target.join(data.strip_prefix("/").expect("abs")).join("a.bin")).expect("restored"),
        std::fs::read(&small).expect("small")
    );

    // A reader of the admin's data, on a second device with the full keys.
    let full = env.path("keys.full");
    let out = Command::new(EXE)
        .args(["key", "export", "--output", full.to_str().expect("utf-8")])
        .env("SCATTER_CONFIG", env.grid.client_dir())
        .env("SCATTER_PASSPHRASE", env.grid.passphrase())
        .env("SCATTER_EXPORT_PASSPHRASE", "moving")
        .output()
        .expect("export");
    ok(out, "full export");
    let reader = env.path("reader");
    let token = invite(&env, &["auditor", "--role", "reader", "--of", "u1"]);
    // A name that reads as a user id would be taken for that user by every command.
    let out = env.scatter(&["admin", "user", "add", "u2"]);
    refused(out, "a user named u2", "reads as a user id");
    refused(env.scatter(&["admin", "user", "add", " padded"]), "a padded name", "no space at either end");
    // Told at once, not after asking for --yes.
    refused(env.scatter(&["admin", "user", "rm", "u1"]), "removing oneself", "cannot remove its own account");
    // Write-only keys on a reader's invite could never read: refused, and the invite is not
    // spent (it was, and the reader registered unable to read anything).
    let wrong = ["init", "--coordinator", &url, "--token", &token, "--import", wo.to_str().expect("utf-8")];
    refused(run(&env.path("wrong-reader"), &wrong, &transport), "reader with write-only keys", "write-only");
    ok(
        run(
            &reader,
            &["init", "--coordinator", &url, "--token", &token, "--import", full.to_str().expect("utf-8")],
            &transport,
        ),
        "reader init",
    );
    let list = ok(run(&reader, &["snapshots", "--json"], &[]), "reader snapshots");
    assert!(list.contains("hostname"), "{list}");
    refused(run(&reader, &["backup", data.to_str().expect("utf-8")], &[]), "reader backup", "may not add");
    refused(run(&reader, &["rm", "existing"], &[]), "reader rm", "may not remove");
    refused(run(&reader, &["admin", "user", "ls"], &[]), "reader admin", "may not administer");
    // A reader writes no snapshots: trusting one means nothing, and is refused as such.
    refused(env.scatter(&["delegate", "trust", "u5"]), "trusting a reader", "only appenders write snapshots");

    // The admin's view, then disabling bob: his next request fails at once.
    let users: serde_json::Value = serde_json::from_str(&env.ok(&["admin", "user", "ls", "--json"])).expect("JSON");
    let roles: Vec<&str> = users.as_array().expect("users").iter().filter_map(|u| u["role"].as_str()).collect();
    assert_eq!(roles, ["admin", "user", "appender", "appender", "reader"]);
    assert!(users[1]["used"].as_u64() > Some(1 << 20), "{users}");
    env.ok(&["admin", "user", "disable", "u2"]);
    refused(run(&bob, &["ls"], &[]), "disabled bob", "disabled");

    // The audit trail has who did what.
    let events: serde_json::Value = serde_json::from_str(&env.ok(&["admin", "events", "--json"])).expect("JSON");
    let actions: Vec<String> = events
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["actor"].as_str().unwrap_or(""),
                e["action"].as_str().unwrap_or(""),
                e["detail"].as_str().unwrap_or("")
            )
        })
        .collect();
    for want in [
        "h1 host.joined",
        "u1 user.registered role admin",
        "u1 user.invited bob as user",
        "u2 user.registered role user",
        "user.register_refused",
        "u3 auth.forbidden role appender",
        "u1 user.disabled u2",
        "u2 auth.refused account disabled",
    ] {
        assert!(actions.iter().any(|a| a.contains(want)), "no `{want}` event in {actions:#?}");
    }

    // A new passphrase opens the key file; the old one no longer does.
    ok(run(&bob, &["key", "passwd"], &[("SCATTER_NEW_PASSPHRASE", "new one")]), "passwd");
    refused(run(&bob, &["key", "export", "--output", "/nonexistent/x"], &[]), "old passphrase", "passphrase");
}
