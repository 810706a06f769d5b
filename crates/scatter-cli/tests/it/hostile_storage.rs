//! Hostile tenants and delegates against the catalog, with real processes: the coordinator
//! records a shard only with its host's receipt for an upload placed for the caller, a shard
//! is deleted only when no pack needs it, a report of a bad shard is checked before it
//! counts, and placements without uploads cannot fill the grid or dodge a quota. Every test
//! asserts the outcome for the owner: data restores bit for bit, no host is disqualified by
//! someone else's lie, others can still write.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::attacker::{now, Attacker};
use common::{
    catalog, coordinator_key, fingerprint, flip_byte, grid, grid_with, host, host_dir, quiet_grid, run, shard_file,
    shard_files, uploaded_pack, Env,
};
use ed25519_dalek::SigningKey;
use scatter_cli::grid::GridOptions;
use scatter_core::{ChunkId, HostId, PackId, ShardId};
use scatter_proto::api::*;
use scatter_proto::{Receipt, SignedGrant, SignedReceipt};

/// Every shard file on every host.
fn all_shard_files(env: &Env) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = (0..env.grid.host_count()).flat_map(|i| shard_files(&env.grid.host_dir(i))).collect();
    v.sort();
    v
}

/// Locates `chunk` as the grid's own user does before a read: with its read grants.
async fn locate_as_owner(env: &Env, chunk: ChunkId) -> (Attacker, LocateResponse) {
    let reader = Attacker::from_profile(env, &env.grid.client_dir());
    let (status, body) = reader.post("/v1/chunks/locate", &LocateRequest { chunks: vec![chunk], read: true }).await;
    assert_eq!(status, 200, "{body}");
    (reader, serde_json::from_value(body).expect("locate answer"))
}

/// An HTTP client that trusts the grid's hosts, as a reader's would.
fn host_client(env: &Env) -> reqwest::Client {
    scatter_net::http_client(Some(fingerprint(env)), scatter_net::Peer::Host)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// A 4+2 pack commit naming `shards` (index order), with made-up receipts, claiming `chunks`
/// (32 bytes each, one after another: 8 at most).
fn forged_pack(session: u64, shards: &[(ShardId, HostId)], chunks: &[ChunkId], relocate: bool) -> CommitPackRequest {
    let ids: Vec<ShardId> = shards.iter().map(|(s, _)| *s).collect();
    let liar = SigningKey::from_bytes(&[9; 32]);
    CommitPackRequest {
        pack: PackId::of_shards(&ids),
        session,
        size: 4096 * 4,
        k: 4,
        m: 2,
        shard_size: 4096,
        shards: shards
            .iter()
            .enumerate()
            .map(|(i, (shard, host))| StoredShard {
                index: i as u8,
                shard: *shard,
                host: *host,
                receipt: Receipt { host: *host, shard: *shard, size: 4096, time: now(), grant: [0; 32] }.sign(&liar),
            })
            .collect(),
        chunks: (0..).zip(chunks).map(|(i, c)| ChunkEntry { id: *c, offset: i * 32, len: 32 }).collect(),
        relocate,
    }
}

fn host_states(env: &Env) -> Vec<(u64, String, u64)> {
    let out = env.ok(&["admin", "host", "ls", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    v.as_array()
        .expect("hosts")
        .iter()
        .map(|h| {
            (
                h["id"].as_u64().expect("id"),
                h["state"].as_str().expect("state").to_owned(),
                h["audits_failed"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn health(env: &Env) -> serde_json::Value {
    serde_json::from_str(&env.ok(&["admin", "health", "--json"])).expect("json")
}

/// Attack: an appender commits a repack (`relocate`) naming the owner's chunk ids and
/// made-up shards, uploading nothing. Before receipts, the owner's packs were released and
/// their shards deleted from every host within seconds.
#[tokio::test(flavor = "multi_thread")]
async fn an_appender_cannot_relocate_the_owners_chunks() {
    let env = grid(6).await;
    let file = env.write_random("victim", 6 << 20, 1);
    env.put(&file, "victim");
    let before = all_shard_files(&env);
    let cat = catalog(&env);

    let nas = Attacker::invite(&env, &["nas", "--role", "appender", "--of", "u1"]).await;
    let session = nas.session().await;
    let fake: Vec<(ShardId, HostId)> = (1..=6u8).map(|i| (ShardId::of(&[i; 7]), HostId(i as u64))).collect();
    let (status, body) = nas.post("/v1/packs/commit", &forged_pack(session, &fake, &cat.chunks, true)).await;
    assert_eq!(status, 403, "a relocation needs the delete right: {body}");
    // Without `relocate` the same commit claims the owner's chunk ids for a pack that holds
    // nothing: refused too, for lack of receipts.
    let some = &cat.chunks[..cat.chunks.len().min(8)];
    let (status, body) = nas.post("/v1/packs/commit", &forged_pack(session, &fake, some, false)).await;
    assert_eq!(status, 403, "a pack without receipts: {body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("receipt"), "{body}");

    tokio::time::sleep(Duration::from_secs(5)).await; // the deleter runs every 2 s
    assert_eq!(all_shard_files(&env), before, "no shard of the owner was deleted");
    env.get_and_compare("victim", &file);
}

/// Attack: any user commits packs that name shards no host ever received; audits of those
/// shards fail and, before receipts, every host was disqualified.
#[tokio::test(flavor = "multi_thread")]
async fn shards_no_host_received_cannot_disqualify_hosts() {
    let env = grid(6).await;
    let file = env.write_random("victim", 2 << 20, 2);
    env.put(&file, "victim");
    let eve = Attacker::invite(&env, &["eve"]).await;
    let session = eve.session().await;
    for n in 0..40u32 {
        let fake: Vec<(ShardId, HostId)> =
            (1..=6u64).map(|h| (ShardId::of(format!("{n}-{h}").as_bytes()), HostId(h))).collect();
        let mut req = forged_pack(session, &fake, &[ChunkId::from_bytes([n as u8; 32])], false);
        if n % 2 == 1 {
            // Placed for real this time (reservations and put grants exist), but never
            // uploaded: the receipts are still forged.
            let place = placement(&fake.iter().map(|(s, _)| *s).collect::<Vec<_>>(), 4096);
            let (status, placed) = eve.post("/v1/packs/place", &place).await;
            assert_eq!(status, 200, "{placed}");
            let placed: PlaceResponse = serde_json::from_value(placed).expect("placement");
            for t in placed.targets {
                let s = &mut req.shards[t.index as usize];
                s.host = t.host;
                s.receipt = Receipt { host: t.host, shard: s.shard, size: 4096, time: now(), grant: [1; 32] }
                    .sign(&SigningKey::from_bytes(&[9; 32]));
            }
        }
        let (status, body) = eve.post("/v1/packs/commit", &req).await;
        assert_eq!(status, 403, "pack {n} names shards no host stored: {body}");
    }
    // Several checker passes (every 2 s, four hosts audited each).
    tokio::time::sleep(Duration::from_secs(10)).await;
    for (id, state, failed) in host_states(&env) {
        assert_eq!((state.as_str(), failed), ("online", 0), "host {id} was blamed for a lie");
    }
    // Others can still write, and the owner's data is whole.
    let more = env.write_random("more", 1 << 20, 3);
    env.put(&more, "more");
    env.get_and_compare("victim", &file);
}

/// Attack: an account that learns another user's shard ids commits a pack naming those
/// (host, shard) pairs, then lets it be dropped; before, the deleter removed the real shards.
#[tokio::test(flavor = "multi_thread")]
async fn naming_another_users_shards_cannot_delete_them() {
    let env = grid(6).await;
    let file = env.write_random("victim", 6 << 20, 4);
    env.put(&file, "victim");
    let before = all_shard_files(&env);
    let cat = catalog(&env);
    let mallory = Attacker::invite(&env, &["mallory"]).await;
    let session = mallory.session().await;
    let first = cat.shards[0].0;
    // The owner's first pack's shards, in another order (so another pack id).
    let mut theirs: Vec<(ShardId, HostId)> =
        cat.shards.iter().filter(|s| s.0 == first).map(|(_, _, shard, host)| (*shard, *host)).collect();
    theirs.reverse();
    let (status, body) =
        mallory.post("/v1/packs/commit", &forged_pack(session, &theirs, &[ChunkId::from_bytes([1; 32])], false)).await;
    assert_eq!(status, 403, "{body}");
    // Dropping what it holds (nothing) must not touch the owner's shards.
    let (status, body) = mallory.post("/v1/sessions/close", &SessionRequest { session }).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = mallory.post("/v1/prune", &PruneRequest { max_unused_percent: 0 }).await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(all_shard_files(&env), before, "no shard of the owner was deleted");
    env.get_and_compare("victim", &file);
}

/// Attack: a reader reports every shard of the owner's data "bad". Before, each report
/// marked the shard, so the packs counted as degraded (and, with no spare host, stayed so);
/// now the coordinator reads the shard itself and finds it intact.
#[tokio::test(flavor = "multi_thread")]
async fn lying_reports_of_bad_shards_change_nothing() {
    let env = grid(6).await;
    let file = env.write_random("victim", 6 << 20, 5);
    env.put(&file, "victim");
    let before = catalog(&env).shards;
    let reader = Attacker::invite(&env, &["auditor", "--role", "reader", "--of", "u1"]).await;
    for (_, _, shard, host) in &before {
        let report = ReportShardRequest { host: *host, shard: *shard, problem: "corrupt (trust me)".into() };
        let (status, body) = reader.post("/v1/shards/report", &report).await;
        assert_eq!(status, 200, "{body}");
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let h = health(&env);
    assert_eq!(h["packs_full"], h["packs_total"], "every pack still counts as whole: {h}");
    assert_eq!(catalog(&env).shards, before, "no shard was moved");
    for (id, state, failed) in host_states(&env) {
        assert_eq!((state.as_str(), failed), ("online", 0), "host {id} was blamed for a lie");
    }
    env.get_and_compare("victim", &file);
}

/// Attack: a reader reports the same intact shard again and again, to keep the coordinator
/// reading whole shards from the hosts (unmetered) and the few check slots, which every
/// account shares, busy. A shard found intact is not checked on report again for a while.
#[tokio::test(flavor = "multi_thread")]
async fn a_shard_found_intact_is_not_read_again_for_every_report() {
    let env = grid(6).await;
    let file = env.write_random("victim", 2 << 20, 7);
    env.put(&file, "victim");
    let (_, _, shard, host) = catalog(&env).shards[0];
    let reader = Attacker::invite(&env, &["auditor", "--role", "reader", "--of", "u1"]).await;
    let report = ReportShardRequest { host, shard, problem: "corrupt (again)".into() };
    for _ in 0..5 {
        assert_eq!(reader.post("/v1/shards/report", &report).await.0, 200);
        // Past the check of the last report (a check under way takes no second one).
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let log = std::fs::read_to_string(env.grid.coordinator_dir().join("../coordinator.log")).expect("coordinator log");
    let checks = log.lines().filter(|l| l.contains("shard reported bad") && l.contains("checking=true")).count();
    let reports = log.lines().filter(|l| l.contains("shard reported bad")).count();
    assert_eq!(reports, 5, "every report is logged:\n{log}");
    assert_eq!(checks, 1, "the intact shard was read whole for {checks} of 5 reports");
    env.get_and_compare("victim", &file);
}

/// A real bad shard, reported by the reader who met it, is still found and rebuilt: the
/// check confirms it (the host quarantines the bad copy when asked for it whole).
#[tokio::test(flavor = "multi_thread")]
async fn true_reports_of_bad_shards_are_confirmed_and_repaired() {
    let env = grid(7).await;
    let file = env.write_random("victim", 2 << 20, 6);
    env.put(&file, "victim");
    let shards = catalog(&env).shards;
    let (_, _, shard, host) = shards[0];
    let path = shard_file(&env, host, shard);
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[100] ^= 0xff;
    std::fs::write(&path, bytes).expect("write");
    let reader = Attacker::invite(&env, &["auditor", "--role", "reader", "--of", "u1"]).await;
    let report = ReportShardRequest { host, shard, problem: "corrupt".into() };
    assert_eq!(reader.post("/v1/shards/report", &report).await.0, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Rebuilt (on any host, this one included once it dropped the bad copy).
        let intact = all_shard_files(&env)
            .iter()
            .any(|p| p.ends_with(shard.to_string()) && std::fs::read(p).is_ok_and(|b| ShardId::of(&b) == shard));
        if intact && health(&env)["packs_full"] == health(&env)["packs_total"] {
            break;
        }
        if Instant::now() > deadline {
            let log =
                std::fs::read_to_string(env.grid.coordinator_dir().join("../coordinator.log")).unwrap_or_default();
            panic!("the confirmed bad shard was not rebuilt elsewhere; coordinator log:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    env.get_and_compare("victim", &file);
}

/// Attack: a host serves a corrupt parity shard while another host is down. A rebuild reads
/// its shards as they come (not hash-checked, for speed), so the pack it decodes is wrong;
/// its chunks then fail authentication, and the reader must rebuild again from hash-checked
/// shards: the file comes back bit for bit and the bad shard is found and quarantined.
#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_shard_in_a_rebuild_is_found_and_routed_around() {
    // Nothing else may find the bad shard first, or the reader never meets it.
    let mut env = quiet_grid(6).await;
    let file = env.write_random("victim", 5 << 20, 8);
    env.put(&file, "victim");
    let shards = catalog(&env).shards;
    assert_eq!(shards.len(), 6, "one 4+2 pack");
    let by_index = |i: u8| shards.iter().find(|s| s.1 == i).expect("every index is stored");
    // Data shard 0 gone: the rebuild reads data shards 1-3 and parity shard 4 first.
    let (_, _, _, down) = *by_index(0);
    let (_, _, bad, liar) = *by_index(4);
    let path = shard_file(&env, liar, bad);
    flip_byte(&path);
    let i = (0..env.grid.host_count()).find(|i| host(&env, *i).0 == down).expect("the host");
    env.grid.kill_host(i);
    let out_path = env.path("victim.out");
    let out = env.scatter(&["get", "victim", "--output", out_path.to_str().expect("utf-8")]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "get failed: {stderr}");
    assert!(std::fs::read(&out_path).expect("output") == std::fs::read(&file).expect("input"), "the file differs");
    assert!(stderr.contains("is bad"), "the corrupt shard was not reported: {stderr}");
    // One pack, rebuilt twice (unchecked, then checked) but counted once.
    assert!(stdout.contains("1 packs rebuilt from parity"), "{stdout}");
    let quarantined = std::fs::read_dir(host_dir(&env, liar).join("quarantine")).expect("quarantine").count();
    assert_eq!(quarantined, 1, "the host did not quarantine its corrupt shard");
}

/// Attack: placements without uploads. Before, they bypassed the quota and, repeated, left
/// everyone with "only 0 hosts available"; their put grants outlived them by 50 minutes.
#[tokio::test(flavor = "multi_thread")]
async fn placements_without_uploads_cannot_fill_the_grid_or_dodge_the_quota() {
    let env = grid(6).await;
    let hog = Attacker::invite(&env, &["hog"]).await;
    let big = |n: u32| placement(&made_up_ids(&n.to_string()), MAX_SHARD);
    let mut granted = 0;
    for n in 0..400 {
        let (status, body) = hog.post("/v1/packs/place", &big(n)).await;
        match status {
            200 => granted += 1,
            423 => assert!(body["error"].as_str().unwrap_or_default().contains("not yet committed"), "{body}"),
            _ => panic!("unexpected answer {status}: {body}"),
        }
    }
    assert!(granted <= 3, "{granted} placements of 384 MiB each were granted without an upload");
    // Everyone else still writes.
    let file = env.write_random("file", 4 << 20, 7);
    env.put(&file, "file");
    env.get_and_compare("file", &file);

    // A quota counts what is placed and not yet committed.
    let small = Attacker::invite(&env, &["small", "--quota", "10MiB"]).await;
    let place = |n: u32| placement(&made_up_ids(&format!("q{n}")), 1 << 20);
    let (status, body) = small.post("/v1/packs/place", &place(0)).await;
    assert_eq!(status, 200, "{body}");
    let placed: PlaceResponse = serde_json::from_value(body).expect("placement");
    let (status, body) = small.post("/v1/packs/place", &place(1)).await;
    assert_eq!(status, 507, "6 MiB placed + 6 MiB more > 10 MiB: {body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("quota"), "{body}");

    // A put grant lapses with its reservation (10 minutes), not an hour later.
    let key = coordinator_key(&env).verifying_key();
    for t in placed.targets {
        let g = SignedGrant::open(&t.grant, &key).expect("a grant of this coordinator");
        assert!(g.expires <= now() + 600, "a put grant lives until {} (now {})", g.expires, now());
    }
}

/// Six made-up shard ids, named after `tag`.
fn made_up_ids(tag: &str) -> Vec<ShardId> {
    (0..6u8).map(|i| ShardId::of(format!("{tag}-{i}").as_bytes())).collect()
}

/// A placement of 4+2 shards `ids` of `shard_size` bytes each.
fn placement(ids: &[ShardId], shard_size: u64) -> PlaceRequest {
    PlaceRequest {
        shard_size,
        shards: ids.iter().enumerate().map(|(i, s)| ShardToPlace { index: i as u8, shard: *s }).collect(),
        exclude: vec![],
        k: 4,
        m: 2,
        placed: vec![],
        policy: Default::default(),
    }
}

/// Places and uploads by hand a real 4+2 pack of 4 KiB shards (their bytes drawn from
/// `seed`) as `who`; returns the shard ids and what a commit of them names.
async fn upload_pack(env: &Env, who: &Attacker, seed: u8) -> (Vec<ShardId>, Vec<StoredShard>) {
    let fp = fingerprint(env);
    let hosts_http = scatter_net::http_client(Some(fp), scatter_net::Peer::Host)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let shards: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i ^ seed; 4096]).collect();
    let ids: Vec<ShardId> = shards.iter().map(|s| ShardId::of(s)).collect();
    let (status, body) = who.post("/v1/packs/place", &placement(&ids, 4096)).await;
    assert_eq!(status, 200, "{body}");
    let placed: PlaceResponse = serde_json::from_value(body).expect("placement");
    let mut stored = Vec::new();
    for t in &placed.targets {
        let i = t.index as usize;
        let resp = hosts_http
            .put(format!("{}/shards/{}", t.address, ids[i]))
            .header(GRANT_HEADER, &t.grant.0)
            .body(shards[i].clone())
            .send()
            .await
            .expect("upload");
        assert_eq!(resp.status().as_u16(), 201);
        let reply: StoredResponse = resp.json().await.expect("a receipt");
        stored.push(StoredShard { index: t.index, shard: ids[i], host: t.host, receipt: reply.receipt });
    }
    stored.sort_by_key(|s| s.index);
    (ids, stored)
}

/// A repack moves only the chunks a prune assigned to it, even for an account with the
/// delete right and real receipts.
#[tokio::test(flavor = "multi_thread")]
async fn a_repack_moves_only_what_the_prune_assigned() {
    let env = grid(6).await;
    let file = env.write_random("victim", 2 << 20, 9);
    env.put(&file, "victim");
    let chunks = catalog(&env).chunks;
    // An account with the delete right, real shards and real receipts, but no prune that
    // assigned it anything to move.
    let eve = Attacker::invite(&env, &["eve"]).await;
    let session = eve.session().await;
    let (ids, stored) = upload_pack(&env, &eve, 2).await;
    let commit = uploaded_pack(session, &ids, stored, &chunks, true);
    let (status, body) = eve.post("/v1/packs/commit", &commit).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("prune"), "{body}");
    env.get_and_compare("victim", &file);
}

/// Receipts from hosts are what let a pack in: a receipt a host signed for one upload
/// cannot be presented again once its placement was given back, nor by another account.
#[tokio::test(flavor = "multi_thread")]
async fn a_receipt_is_accepted_once_and_only_from_its_placement() {
    let env = grid(6).await;
    let eve = Attacker::invite(&env, &["eve"]).await;
    let session = eve.session().await;
    let (ids, stored) = upload_pack(&env, &eve, 1).await;
    let place = placement(&ids, 4096);
    let commit = |session: u64, stored: Vec<StoredShard>| uploaded_pack(session, &ids, stored, &[], false);
    // Another account cannot use these receipts.
    let other = Attacker::invite(&env, &["other"]).await;
    let other_session = other.session().await;
    let (status, body) = other.post("/v1/packs/commit", &commit(other_session, stored.clone())).await;
    assert_eq!(status, 403, "receipts for eve's placement: {body}");
    // A receipt with a wrong size or for another shard is refused.
    let mut swapped = stored.clone();
    let r0 = swapped[0].receipt.clone();
    swapped[0].receipt = swapped[1].receipt.clone();
    swapped[1].receipt = r0;
    let (status, body) = eve.post("/v1/packs/commit", &commit(session, swapped)).await;
    assert_eq!(status, 403, "swapped receipts: {body}");
    // Forged: a receipt not signed by the host.
    let mut forged = stored.clone();
    forged[0].receipt = SignedReceipt(forged[0].receipt.0.replace('A', "B"));
    let (status, _) = eve.post("/v1/packs/commit", &commit(session, forged)).await;
    assert_eq!(status, 403);
    // Refused commits leave the placements to eve, who gives them back (their uploads are
    // deleted) and places the shards again: the old receipts answer grants given back.
    let pairs: Vec<(HostId, ShardId)> = stored.iter().map(|s| (s.host, s.shard)).collect();
    let (status, body) = eve.give_back(&pairs).await;
    assert_eq!((status, &body["dropped"]), (200, &serde_json::json!(6)), "give back: {body}");
    let (status, _) = eve.post("/v1/packs/place", &place).await;
    assert_eq!(status, 200);
    let (status, body) = eve.post("/v1/packs/commit", &commit(session, stored.clone())).await;
    assert_eq!(status, 403, "receipts answering grants given back: {body}");
}

/// Shards recorded before receipts existed get them from their hosts (the backfill), and
/// until then their audit failures do not count against the host.
#[tokio::test(flavor = "multi_thread")]
async fn shards_recorded_before_receipts_are_backfilled() {
    let mut env = grid(6).await;
    let file = env.write_random("old", 2 << 20, 8);
    env.put(&file, "old");
    // A catalog from before receipts: no receipt on any shard.
    env.grid.kill_coordinator();
    let path = env.grid.coordinator_dir().join("catalog.db");
    let db = rusqlite::Connection::open(&path).expect("catalog");
    db.execute("UPDATE shards SET receipt = NULL", []).expect("sql");
    drop(db);
    env.grid.start_coordinator().expect("coordinator restarts");
    let missing = || {
        let db =
            rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("catalog");
        db.query_row("SELECT COUNT(*) FROM shards WHERE receipt IS NULL", [], |r| r.get::<_, i64>(0)).expect("sql")
    };
    assert!(missing() > 0);
    // Hosts send their inventory every five heartbeats (1 s here) and answer what it asks.
    let deadline = Instant::now() + Duration::from_secs(40);
    while missing() > 0 {
        assert!(Instant::now() < deadline, "{} shard(s) still lack a receipt", missing());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    env.get_and_compare("old", &file);
}

/// Attack: an appender holds the dedup key, so it can store garbage under the chunk ids of
/// data the owner will back up, uploaded for real (with receipts). Before, the owner's next
/// put found those ids "already stored", uploaded nothing, and its data could not be read
/// back. Now only chunks of the owner and of delegates it trusts are deduplicated against,
/// and the owner's copy takes the id over.
#[tokio::test(flavor = "multi_thread")]
async fn an_appender_cannot_plant_chunks_the_owner_deduplicates_against() {
    let env = grid(6).await;
    let file = env.write_random("future", 3 << 20, 10);
    // The ids the owner's data will have (the appender computes them with its dedup key; the
    // test borrows them from a put the owner then removes).
    env.put(&file, "probe");
    let ids = catalog(&env).chunks;
    env.ok(&["rm", "probe"]);
    assert!(catalog(&env).chunks.is_empty(), "the probe's chunks are gone");

    let nas = Attacker::invite(&env, &["nas", "--role", "appender", "--of", "u1"]).await;
    let session = nas.session().await;
    let (shards, stored) = upload_pack(&env, &nas, 3).await;
    let planted = uploaded_pack(session, &shards, stored, &ids, false);
    let (status, body) = nas.post("/v1/packs/commit", &planted).await;
    assert_eq!(status, 200, "an appender may store packs of its own: {body}");

    env.put(&file, "real");
    env.get_and_compare("real", &file);
}

/// Attack: crowd a pack onto few hosts. Placed as a 1+5 pack (which may put two shards on a
/// host at f = 2) on three hosts, then committed as 4+2, the pack would survive the loss of
/// one host on a grid that promises two. Before the commit checked the code its shards were
/// placed for, it was recorded.
#[tokio::test(flavor = "multi_thread")]
async fn a_pack_cannot_be_crowded_by_placing_it_under_another_code() {
    let env = grid(6).await;
    let eve = Attacker::invite(&env, &["eve"]).await;
    let session = eve.session().await;
    let shards: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i ^ 0x5a; 4096]).collect();
    let ids: Vec<ShardId> = shards.iter().map(|s| ShardId::of(s)).collect();
    let status: StatusResponse = serde_json::from_str(&env.ok(&["status", "--json"])).expect("status");
    let mut place = placement(&ids, 4096);
    (place.k, place.m) = (1, 5);
    place.exclude = status.hosts.iter().skip(3).map(|h| h.id).collect();
    let (status, body) = eve.post("/v1/packs/place", &place).await;
    assert_eq!(status, 200, "{body}");
    let placed: PlaceResponse = serde_json::from_value(body).expect("placement");
    let mut hosts: Vec<HostId> = placed.targets.iter().map(|t| t.host).collect();
    hosts.sort();
    hosts.dedup();
    assert_eq!(hosts.len(), 3, "two shards per host, as a 1+5 pack may have");
    let http = host_client(&env);
    let mut stored = Vec::new();
    for t in &placed.targets {
        let i = t.index as usize;
        let resp = http
            .put(format!("{}/shards/{}", t.address, ids[i]))
            .header(GRANT_HEADER, &t.grant.0)
            .body(shards[i].clone())
            .send()
            .await
            .expect("upload");
        let reply: StoredResponse = resp.json().await.expect("a receipt");
        stored.push(StoredShard { index: t.index, shard: ids[i], host: t.host, receipt: reply.receipt });
    }
    stored.sort_by_key(|s| s.index);
    let (status, body) = eve.post("/v1/packs/commit", &uploaded_pack(session, &ids, stored, &[], false)).await;
    assert_eq!(status, 403, "a 4+2 pack two shards to a host at f = 2 was recorded: {body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("placed for a 1+5 pack"), "{body}");
}

/// Placements live in the catalog: a coordinator restarted between a placement and its
/// commit (a crash, an upgrade) still records the pack. Before, placements lived in the
/// coordinator's memory and the commit was refused.
#[tokio::test(flavor = "multi_thread")]
async fn placements_survive_a_coordinator_restart() {
    let mut env = grid(6).await;
    let eve = Attacker::invite(&env, &["eve"]).await;
    let session = eve.session().await;
    let (ids, stored) = upload_pack(&env, &eve, 3).await;
    env.grid.kill_coordinator();
    env.grid.start_coordinator().expect("coordinator restarts");
    let commit = uploaded_pack(session, &ids, stored, &[], false);
    let (status, body) = eve.post("/v1/packs/commit", &commit).await;
    assert_eq!(status, 200, "{body}");
}

/// Attack: objects committed together (`/v1/objects/commit-many`, for batches of small
/// objects) are checked one by one as a commit alone is: an appender of the owner cannot
/// overwrite or replace the owner's object through a batch, another account cannot name the
/// owner's chunks or sessions, and a batch is bounded. The owner's object stays whole.
#[tokio::test(flavor = "multi_thread")]
async fn objects_committed_together_are_each_checked_as_one_alone() {
    let env = grid(6).await;
    let file = env.write_random("victim", 1 << 20, 5);
    env.put(&file, "victim");
    let db = env.catalog_db();
    let (victim, victim_session): (String, i64) =
        db.query_row("SELECT name, session FROM objects", [], |r| Ok((r.get(0)?, r.get(1)?))).expect("the object");
    let victim_chunks: Vec<ChunkId> = db
        .prepare("SELECT chunk FROM object_chunks")
        .expect("sql")
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .expect("sql")
        .map(|c| ChunkId::from_bytes(<[u8; 32]>::try_from(c.expect("row")).expect("32 bytes")))
        .collect();
    let commit = |name: &str, session: u64, chunks: &[ChunkId], replace: bool| CommitObjectRequest {
        name: name.to_owned(),
        session,
        size: 1,
        manifest: "bQ==".into(),
        chunks: chunks.to_vec(),
        retention: Default::default(),
        meta: None,
        replace,
        exclusive: false,
        if_attributes: None,
    };
    let many = |objects| CommitObjectsRequest { objects };

    // The owner's appender: its own session, the owner's name and chunks.
    let nas = Attacker::invite(&env, &["nas", "--role", "appender", "--of", "u1"]).await;
    let s = nas.session().await;
    let (status, body) = nas
        .post(
            "/v1/objects/commit-many",
            &many(vec![
                commit(&victim, s, &[], false),
                commit(&victim, s, &[], true),
                commit("fresh-name", s, &[], false),
            ]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let r: CommitObjectsResponse = serde_json::from_value(body.clone()).expect("outcomes");
    let codes: Vec<_> = r.results.iter().map(|o| (o.version, o.error.as_ref().map(|e| e.code))).collect();
    assert_eq!(
        codes,
        [(None, Some(ErrorCode::Forbidden)), (None, Some(ErrorCode::Forbidden)), (Some(1), None)],
        "an appender neither overwrites nor replaces, and its new object goes in: {body}"
    );

    // Another account: the owner's chunks, the owner's session.
    let eve = Attacker::invite(&env, &["eve"]).await;
    let s = eve.session().await;
    let (status, body) =
        eve.post("/v1/objects/commit-many", &many(vec![commit("mine", s, &victim_chunks, false)])).await;
    assert_eq!(status, 200, "{body}");
    let r: CommitObjectsResponse = serde_json::from_value(body.clone()).expect("outcomes");
    assert!(r.results[0].version.is_none() && r.results[0].error.is_some(), "eve took the owner's chunks: {body}");
    let (status, body) = eve
        .post(
            "/v1/objects/commit-many",
            &many(vec![commit("mine", s, &[], false), commit("theirs", victim_session as u64, &[], false)]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let r: CommitObjectsResponse = serde_json::from_value(body.clone()).expect("outcomes");
    assert!(r.results[0].version.is_some(), "eve's own object goes in: {body}");
    assert!(r.results[1].version.is_none() && r.results[1].error.is_some(), "under the owner's session: {body}");
    // Bounded: one more than the most is refused unread.
    let too_many = (0..=MAX_BATCH_COMMITS).map(|i| commit(&format!("n{i}"), s, &[], false)).collect();
    let (status, body) = eve.post("/v1/objects/commit-many", &many(too_many)).await;
    assert_eq!(status, 400, "{body}");
    // A field the coordinator does not know (an older client's condition) is refused, not
    // dropped: the commit would otherwise go in unconditionally.
    let mut legacy = serde_json::to_value(commit("legacy", s, &[], true)).expect("json");
    legacy["if_version"] = serde_json::json!(7);
    let (status, body) = eve.post("/v1/objects/commit", &legacy).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = eve.post("/v1/objects/commit-many", &serde_json::json!({ "objects": [legacy] })).await;
    assert_eq!(status, 400, "{body}");
    let eves: i64 =
        db.query_row("SELECT COUNT(*) FROM objects WHERE user = ?1", [eve.user.0 as i64], |r| r.get(0)).expect("count");
    assert_eq!(eves, 1, "refused commits left objects");

    // The owner's object is whole and unchanged.
    let versions: i64 =
        db.query_row("SELECT COUNT(*) FROM objects WHERE name = ?1", [&victim], |r| r.get(0)).expect("count");
    assert_eq!(versions, 1);
    env.get_and_compare("victim", &file);
}

/// Attack (or a failing disk): a host that keeps its heartbeats but answers every request
/// for its shards with a server error (here an honest host whose shard files cannot be read)
/// was never audited: an unanswered audit counted for nothing, its shards stayed `ok`, and
/// the grid claimed a tolerance it no longer had, until one more loss lost data. Audits a
/// heartbeating host leaves unanswered, a few in a row, count as failed.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_that_answers_audits_with_errors_has_its_shards_repaired() {
    let mut env = grid(4).await;
    let file = env.write_random("data", 1 << 20, 12);
    env.put(&file, "data");
    // A host holding a shard of the pack (one that was slow to heartbeat under load may hold none).
    let held = catalog(&env).shards;
    let at = (0..4).find(|i| held.iter().any(|(_, _, _, h)| *h == host(&env, *i).0)).expect("a host with a shard");
    let (broken, _) = host(&env, at);
    let mine: Vec<ShardId> = held.iter().filter(|(_, _, _, h)| *h == broken).map(|(_, _, s, _)| *s).collect();
    assert!(!mine.is_empty());
    // Every shard file of the host becomes a directory: reads fail with an I/O error.
    for path in shard_files(&env.grid.host_dir(at)) {
        std::fs::remove_file(&path).expect("remove");
        std::fs::create_dir(&path).expect("mkdir");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let failed = host_states(&env).iter().find(|(id, _, _)| *id == broken.0).map(|h| h.2).unwrap_or(0);
        let moved = catalog(&env).shards.iter().all(|(_, _, s, h)| !mine.contains(s) || *h != broken);
        if failed > 0 && moved && health(&env)["packs_full"] == health(&env)["packs_total"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the unreadable shards were not found: {:?} {}",
            host_states(&env),
            health(&env)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The pack survives the loss of another host now.
    env.grid.kill_host((at + 1) % 4);
    env.get_and_compare("data", &file);
}

/// Attack: a host that lost a few shards answers the audits of those with server errors and
/// proves every other one. Unanswered audits were counted per host and any answer started
/// the count again, so three audits in a row had to land on the lost shards, and the loss
/// stayed hidden. They are now counted per shard, and an unanswered shard is asked again in
/// the next passes (the audit's unit tests follow the count). An honest host's scrub finds
/// such a shard too and reports it missing: whichever comes first, it is repaired.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_erring_only_on_a_lost_shard_has_it_repaired() {
    let env = grid_with(4, GridOptions { checker_interval: "1s".into(), ..GridOptions::default() }).await;
    for i in 0..12 {
        let file = env.write_random(&format!("data{i}"), 64 << 10, 40 + i);
        env.put(&file, &format!("data{i}"));
    }
    // The host holding the most shards (one slow to heartbeat under load may hold fewer).
    let shards = catalog(&env).shards;
    let on = |i: usize| -> Vec<ShardId> {
        let id = host(&env, i).0;
        shards.iter().filter(|(_, _, _, h)| *h == id).map(|(_, _, s, _)| *s).collect()
    };
    let at = (0..4).max_by_key(|i| on(*i).len()).expect("hosts");
    let (broken, held) = (host(&env, at).0, on(at));
    assert!(held.len() >= 10, "the host holds {} shards", held.len());
    let lost = held[0];
    let path = shard_files(&env.grid.host_dir(at))
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains(&lost.to_string())))
        .expect("the shard's file");
    // Its file becomes a directory: reads of it fail with an I/O error, the others succeed.
    std::fs::remove_file(&path).expect("remove");
    std::fs::create_dir(&path).expect("mkdir");
    // Found: no longer counted healthy on that host (marked lost, or rebuilt elsewhere where a
    // host without a shard of its pack exists).
    let healthy_there = || {
        let db = env.catalog_db();
        db.query_row(
            "SELECT COUNT(*) FROM shards WHERE hash = ?1 AND host = ?2 AND state = 'ok'",
            rusqlite::params![&lost.as_bytes()[..], broken.0 as i64],
            |r| r.get::<_, i64>(0),
        )
        .expect("sql")
            > 0
    };
    let deadline = Instant::now() + Duration::from_secs(150);
    while healthy_there() {
        assert!(Instant::now() < deadline, "the lost shard was never found: {:?}", host_states(&env));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Attack (red team): an appender commits objects of no data with the largest manifests a
/// request takes, under made-up names. Nothing counted them: ten commits grew the catalog by
/// 320 MiB (and every catalog backup on the hosts), and one name that does not decrypt made
/// the owner's `scatter ls` fail as a whole, with no way to remove it. What the catalog keeps
/// of an object counts against the quota, and `ls` names such an object, which
/// `rm --encrypted` removes.
#[tokio::test(flavor = "multi_thread")]
async fn an_appender_cannot_fill_the_catalog_with_object_manifests() {
    let env = grid(3).await;
    let file = env.write_random("mine", 100 << 10, 7);
    let bob = env.path("bob");
    let token = env.ok(&["admin", "user", "add", "bob", "--quota", "16MiB"]).trim().to_owned();
    common::ok(run(&bob, &["init", "--coordinator", env.grid.url(), "--token", &token], &[]), "bob init");
    common::ok(run(&bob, &["put", file.to_str().expect("utf-8"), "--name", "mine"], &[]), "bob put");
    let nas = Attacker::invite(&env, &["nas", "--role", "appender", "--of", "u2"]).await;
    let session = nas.session().await;
    // Names no key decrypts, with a backslash and an invisible character: `ls` prints them
    // escaped, and `rm --encrypted` takes them as printed.
    let flood = |n: u32| format!("flood-{n}\\\u{200b}");
    let manifest = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, vec![9u8; 1 << 20]);
    let empty = |name: String, manifest: String| empty_object(name, session, manifest);
    let mut refused = None;
    for n in 0..40 {
        let (status, body) = nas.post("/v1/objects/commit", &empty(flood(n), manifest.clone())).await;
        if status != 200 {
            refused = Some((n, status, body));
            break;
        }
    }
    let (n, status, body) = refused.expect("40 manifests of 1 MiB were all taken under a 16 MiB quota");
    assert!(n <= 16, "{n} manifests of 1 MiB taken under a 16 MiB quota");
    assert_eq!(status, 507, "{body}");
    assert!(body.to_string().contains("quota"), "{body}");

    // The owner lists its own objects, is told of the others, and removes them.
    let out = run(&bob, &["ls"], &[]);
    let (stdout, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "ls failed: {err}");
    assert!(stdout.contains("mine") && err.contains("flood-0") && err.contains("rm --encrypted"), "{stdout}\n{err}");
    for i in 0..n {
        let printed = scatter_core::tree::escape(flood(i).as_bytes());
        assert!(err.contains(&printed), "{err}");
        common::ok(run(&bob, &["rm", "--encrypted", &printed], &[]), "rm --encrypted");
    }
    // A name with control characters (a NUL, say) is no client's: refused at commit, or no
    // command line could name it to remove it.
    let (status, body) = nas.post("/v1/objects/commit", &empty("nul\u{0}name".into(), "bQ==".into())).await;
    assert_eq!(status, 400, "{body}");
    let out = run(&bob, &["ls"], &[]);
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let back = env.path("back");
    common::ok(run(&bob, &["get", "mine", "--output", back.to_str().expect("utf-8")], &[]), "bob get");
    assert!(std::fs::read(&back).expect("got") == std::fs::read(&file).expect("mine"));
}

/// The commit of an object of no data under `name` in `session`, with `manifest` (base64).
fn empty_object(name: String, session: u64, manifest: String) -> CommitObjectRequest {
    CommitObjectRequest {
        name,
        session,
        size: 0,
        manifest,
        chunks: vec![],
        retention: Default::default(),
        meta: None,
        replace: false,
        exclusive: false,
        if_attributes: None,
    }
}

/// Attack: an account commits a real pack of 16 KiB claiming thousands of chunks, all at one
/// offset or a byte each. Each became a row of the catalog (and of its backups on the hosts):
/// hundreds of times what the pack counted against the quota. Chunks in a pack may not
/// overlap, and each holds at least what sealing adds to a chunk.
#[tokio::test(flavor = "multi_thread")]
async fn a_pack_cannot_claim_more_chunks_than_its_bytes_hold() {
    let env = grid(6).await;
    let eve = Attacker::invite(&env, &["eve"]).await;
    let session = eve.session().await;
    let (ids, stored) = upload_pack(&env, &eve, 4).await;
    let many: Vec<ChunkId> = (0..10_000).map(|_| ChunkId::from_bytes(rand::random())).collect();
    let mut commit = uploaded_pack(session, &ids, stored.clone(), &many, false);
    for c in &mut commit.chunks {
        (c.offset, c.len) = (0, 64);
    }
    let (status, body) = eve.post("/v1/packs/commit", &commit).await;
    assert_eq!(status, 400, "10,000 chunks at one offset: {body}");
    for (i, c) in (0..).zip(&mut commit.chunks) {
        (c.offset, c.len) = (i, 1);
    }
    let (status, body) = eve.post("/v1/packs/commit", &commit).await;
    assert_eq!(status, 400, "10,000 chunks of a byte each: {body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("overlap"), "{body}");
    // Laid out as a real pack is, the same pack goes in.
    let (status, body) = eve.post("/v1/packs/commit", &uploaded_pack(session, &ids, stored, &many[..256], false)).await;
    assert_eq!(status, 200, "{body}");
}

/// An account `eve` with a quota of 1 MiB, and the 256 chunks of the one pack it stored (its
/// bytes drawn from `seed`).
async fn account_of_256_chunks(env: &Env, seed: u8) -> (Attacker, Vec<ChunkId>) {
    let eve = Attacker::invite(env, &["eve", "--quota", "1MiB"]).await;
    let session = eve.session().await;
    let (ids, stored) = upload_pack(env, &eve, seed).await;
    let chunks: Vec<ChunkId> = (0..256).map(|_| ChunkId::from_bytes(rand::random())).collect();
    let (status, body) = eve.post("/v1/packs/commit", &uploaded_pack(session, &ids, stored, &chunks, false)).await;
    assert_eq!(status, 200, "{body}");
    (eve, chunks)
}

/// Attack: an account with a quota commits snapshot after snapshot, each naming its chunks.
/// The coordinator kept a row per chunk per snapshot (about 250 bytes with its indexes) and
/// counted none of them: 40 snapshots of one 16 KiB pack's 256 chunks made 10,240 rows, and
/// nothing bounded the number. References are now kept in sets (a pack's chunks a snapshot
/// names), each once per account: snapshots naming the same chunks share them, and each set
/// that differs costs its rows against the quota until the last snapshot naming it goes.
#[tokio::test(flavor = "multi_thread")]
async fn snapshot_references_count_against_the_quota() {
    let env = grid(6).await;
    let (eve, chunks) = account_of_256_chunks(&env, 5).await;
    let who = &eve;
    let snapshot = move |chunks: Vec<ChunkId>| async move {
        let session = who.session().await;
        let (status, body) = who.post("/v1/snapshots/refs", &SnapshotRefsRequest { session, chunks }).await;
        if status != 200 {
            return (status, body);
        }
        let id = hex::encode(rand::random::<[u8; 32]>());
        let record = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 64]);
        who.post("/v1/snapshots/commit", &serde_json::json!({ "session": session, "id": id, "record": record })).await
    };
    let rows = || {
        let db = env.catalog_db();
        let count = |table: &str| {
            db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get::<_, i64>(0)).expect("count")
        };
        (count("ref_set_chunks"), count("snapshot_sets"))
    };
    // The same chunks named again and again: one set, and a row per snapshot.
    for _ in 0..40 {
        let (status, body) = snapshot(chunks.clone()).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(rows(), (256, 40));
    // A different choice of chunks each time: a set of its own each time, each counted.
    let mut refused = None;
    for n in 1..40 {
        let (status, body) = snapshot(chunks[n..].to_vec()).await;
        if status != 200 {
            refused = Some((n, status, body));
            break;
        }
    }
    let (n, status, body) =
        refused.expect("39 different sets of about 250 references each, all taken under a 1 MiB quota");
    assert!((5..16).contains(&n), "{n} sets of about 250 references each under a 1 MiB quota");
    assert_eq!(status, 507, "{body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("quota"), "{body}");
    // Forgetting snapshots gives back the sets no other snapshot names.
    let ids: Vec<String> = env
        .catalog_db()
        .prepare("SELECT id FROM snapshots ORDER BY seq LIMIT -1 OFFSET 40")
        .expect("sql")
        .query_map([], |r| r.get(0))
        .expect("ids")
        .collect::<Result<_, _>>()
        .expect("ids");
    let (status, body) = eve.post("/v1/snapshots/forget", &ForgetRequest { ids }).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(rows(), (256, 40), "the shared set stays, the others went");
    let (status, body) = snapshot(chunks[n..].to_vec()).await;
    assert_eq!(status, 200, "{body}");
}

/// Attack (red team): the references a write session records (for the snapshot it may
/// commit) were rows counted nowhere, kept after the session was closed or left to lapse
/// until the account's own prune: opening a session, naming every chunk and closing it, 300
/// times, added 900,000 rows and 135 MB to the catalog in 45 s, under a 4 MiB quota. They
/// now count against the quota while kept, and go (given back) when their session ends.
#[tokio::test(flavor = "multi_thread")]
async fn references_of_sessions_that_commit_nothing_do_not_pile_up() {
    let env = grid(6).await;
    let (eve, chunks) = account_of_256_chunks(&env, 6).await;
    let rows =
        || env.catalog_db().query_row("SELECT COUNT(*) FROM session_refs", [], |r| r.get::<_, i64>(0)).expect("count");
    let refs = |session| SnapshotRefsRequest { session, chunks: chunks.clone() };
    for _ in 0..40 {
        let session = eve.session().await;
        let (status, body) = eve.post("/v1/snapshots/refs", &refs(session)).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = eve.post("/v1/sessions/close", &SessionRequest { session }).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(rows(), 0, "closed sessions' references stay in the catalog");
    // Left open (or to lapse), they count against the quota while they are kept.
    let mut refused = None;
    for n in 0..40 {
        let session = eve.session().await;
        let (status, body) = eve.post("/v1/snapshots/refs", &refs(session)).await;
        if status != 200 {
            refused = Some((n, status, body));
            break;
        }
    }
    let (n, status, body) = refused.expect("40 sessions of 256 references each, all kept under a 1 MiB quota");
    assert!((8..16).contains(&n), "{n} sessions of 256 references each under a 1 MiB quota");
    assert_eq!(status, 507, "{body}");
}

/// A plain-HTTP proxy in front of `target` that passes bytes both ways, except that once
/// `hang` is set, a request for a whole shard (`GET /shards/ID`; audits ask for proofs) is
/// held without an answer and its connection left open: with the host behind it advertising
/// the proxy's address, a host that keeps its heartbeats (they do not come through here) and
/// proves every audit, but lets reads of its shards hang.
async fn hanging_proxy(listener: tokio::net::TcpListener, target: String, hang: Arc<AtomicBool>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    async fn pipe(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        hang: Arc<AtomicBool>,
        requests: bool,
    ) {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(n) if n > 0 => n,
                // The host closing a connection it found idle is not passed on either.
                _ if hang.load(Ordering::SeqCst) => std::future::pending().await,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buf[..n.min(120)]);
            let whole_shard =
                request.starts_with("GET /shards/") && !request.lines().next().is_some_and(|l| l.contains("/proof"));
            if requests && whole_shard && hang.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }
    while let Ok((inbound, _)) = listener.accept().await {
        let (target, hang) = (target.clone(), hang.clone());
        tokio::spawn(async move {
            let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else { return };
            let ((ri, wi), (ro, wo)) = (inbound.into_split(), outbound.into_split());
            tokio::join!(pipe(ri, wo, hang.clone(), true), pipe(ro, wi, hang, false));
        });
    }
}

/// Attack (red team): a host that keeps its heartbeats and lets every request for a shard
/// hang held up repair. Repair read its sources one after another, then k at a time with the
/// next one started only when one failed, so such a host among the first k held each pack
/// until the read timed out (120 s), and the checker's other work (noticing hosts gone,
/// audits) waited behind it. A read that lags far behind the others now has the next source
/// read beside it, and a host that lagged is read last for a while.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_letting_reads_hang_does_not_hold_up_repair() {
    let opts = GridOptions { checker_interval: "1s".into(), insecure: true, ..GridOptions::default() };
    let mut env = grid_with(5, opts).await;
    let free_port = || std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let listen = free_port().to_string();
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let public = format!("http://{}", proxy.local_addr().expect("addr"));
    let hang = Arc::new(AtomicBool::new(false));
    tokio::spawn(hanging_proxy(proxy, listen.clone(), hang.clone()));
    let join = std::fs::read_to_string(env.grid.coordinator_dir().join("join-token")).expect("join token");
    let flags = ["--public-url", &public];
    let at = env.grid.add_host_listening(listen, join.trim(), &flags).await.expect("host");
    let hanging = host(&env, at).0;
    // Packs until one has a data shard on the hanging host: repair reads those first.
    let mut files = Vec::new();
    for i in 0..8 {
        let file = env.write_random(&format!("data{i}"), 256 << 10, 60 + i);
        env.put(&file, &format!("data{i}"));
        files.push(file);
        if catalog(&env).shards.iter().any(|(_, index, _, h)| *h == hanging && *index < 4) {
            break;
        }
    }
    let shards = catalog(&env).shards;
    assert!(shards.iter().any(|(_, index, _, h)| *h == hanging && *index < 4), "no data shard on the host");
    let packs: std::collections::HashSet<PackId> = shards.iter().map(|(p, _, _, _)| *p).collect();
    assert_eq!(shards.len(), packs.len() * 6, "every pack is 4+2 over the six hosts");
    // A spare host in the zone of the host that dies takes the rebuilt shards.
    let dies = (0..5).find(|i| i % 3 == 0).expect("a host in zone 0");
    env.grid.add_host(join.trim(), &[]).await.expect("spare host");
    let dead = host(&env, dies).0;
    hang.store(true, Ordering::SeqCst);
    let started = Instant::now();
    env.grid.kill_host(dies);
    // Noticed after the offline grace (4 s) and repaired from the four hosts that answer, well
    // before a read left hanging would time out.
    let deadline = started + Duration::from_secs(70);
    loop {
        let h = health(&env);
        let moved = catalog(&env).shards.iter().all(|(_, _, _, h)| *h != dead);
        if moved && h["packs_full"] == h["packs_total"] && h["packs_total"].as_u64() == Some(packs.len() as u64) {
            break;
        }
        assert!(Instant::now() < deadline, "repair waited on the hanging host: {h}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The hanging host's own shards count as long as its audits are not left unanswered too
    // often; whatever came of that, every file reads back once it is gone.
    env.grid.kill_host(at);
    for (i, file) in files.iter().enumerate() {
        env.get_and_compare(&format!("data{i}"), file);
    }
}

/// Attack (red team): a stolen device of the owner destroys a compliance-locked snapshot.
/// The owner's locked snapshot deduplicated against chunks of an appender it trusted then;
/// untrusted since (by the thief, an ordinary owner action), those chunks gave way to any
/// copy of their ids the owner's device stored, garbage included, and the prune after
/// released the locked snapshot's packs: it could never be restored, yet stayed "locked".
/// A chunk a lock holds now keeps its copy beside the one that takes its id over, restores
/// fall back to it when the other fails them, and its pack stays until the lock ends.
#[tokio::test(flavor = "multi_thread")]
async fn a_locked_snapshot_survives_a_forged_copy_of_its_chunks() {
    let env = grid(6).await;
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    std::fs::copy(env.write_random("big", 1 << 20, 31), src.join("big.bin")).expect("copy");
    std::fs::write(src.join("sub/small.txt"), b"the owner's words").expect("write");
    let path = src.to_str().expect("utf-8");
    let nas = common::appender(&env, "nas", &[]);
    env.ok(&["delegate", "trust", "u2"]);
    common::ok(run(&nas, &["backup", path], &[]), "the appender's backup");
    let locked = env.ok(&["backup", path, "--keep-for", "1d", "--lock-mode", "compliance", "--json"]);
    let locked: serde_json::Value = serde_json::from_str(&locked).expect("JSON");
    let locked = locked["snapshot_id"].as_str().expect("snapshot id").to_owned();
    let (before, after) = (env.path("before"), env.path("after"));
    env.ok(&["restore", &locked, "--target", before.to_str().expect("utf-8")]);

    // The thief, on the owner's device: untrust, then store garbage under every chunk id.
    env.ok(&["delegate", "untrust", "u2"]);
    let thief = Attacker::from_profile(&env, &env.grid.client_dir());
    let session = thief.session().await;
    let (shards, stored) = upload_pack(&env, &thief, 0x3c).await;
    let ids = catalog(&env).chunks;
    let (status, body) = thief.post("/v1/packs/commit", &uploaded_pack(session, &shards, stored, &ids, false)).await;
    assert_eq!(status, 200, "the owner's device may store packs: {body}");
    env.ok(&["prune"]);

    env.ok(&["restore", &locked, "--target", after.to_str().expect("utf-8")]);
    let at = |root: &std::path::Path| root.join(src.strip_prefix("/").expect("absolute"));
    for file in ["big.bin", "sub/small.txt"] {
        let want = std::fs::read(at(&before).join(file)).expect("restored before the attack");
        assert_eq!(std::fs::read(at(&after).join(file)).ok(), Some(want), "{file} of the locked snapshot");
    }
}

/// Attack (red team): egress is charged for the chunks located, but the grants a locate gave
/// covered every shard of their packs whole, for 10 minutes: a client that located one small
/// chunk read its whole pack (parity too), as often as it liked, for the price of that
/// chunk. A locate's grants now cover the located chunks' bytes in the data shards only,
/// charged as such; a rebuild asks for whole-shard grants apart, charged as the k shards it
/// reads.
#[tokio::test(flavor = "multi_thread")]
async fn a_located_chunk_lets_its_bytes_be_read_not_its_whole_pack() {
    let env = grid(6).await;
    let file = env.write_random("big", 6 << 20, 41);
    env.put(&file, "big");
    let (chunk, pack, off, len): (Vec<u8>, Vec<u8>, i64, i64) = env
        .catalog_db()
        .query_row("SELECT id, pack, off, len FROM chunks ORDER BY off LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .expect("a chunk");
    let (reader, located) = locate_as_owner(&env, ChunkId::from_bytes(chunk.try_into().expect("32 bytes"))).await;
    let p = located.packs.iter().find(|p| p.id.as_bytes()[..] == pack[..]).expect("its pack");
    assert!(p.size > 3 * len as u64, "the pack holds more than the chunk");

    let http = host_client(&env);
    let get = |s: &ShardLocation, range: Option<std::ops::Range<u64>>| {
        let mut req = http.get(format!("{}/shards/{}", s.address, s.shard)).header(GRANT_HEADER, &s.grant.0);
        if let Some(r) = range {
            req = req.header("Range", format!("bytes={}-{}", r.start, r.end - 1));
        }
        async move {
            let resp = req.send().await.expect("a host answers");
            (resp.status().as_u16(), resp.bytes().await.map(|b| b.len() as u64).unwrap_or(0))
        }
    };
    let mut read = 0;
    for s in &p.shards {
        let (status, bytes) = get(s, None).await;
        if status < 300 {
            read += bytes;
        }
        let (status, bytes) = get(s, Some(0..p.shard_size)).await;
        if status < 300 {
            read += bytes;
        }
    }
    assert_eq!(read, 0, "whole shards were read under the grants of one located chunk of {len} bytes");
    // The chunk's own bytes, as the client reads them, are served.
    let layout = scatter_core::erasure::Layout { size: p.size, k: p.k, m: p.m, shard_size: p.shard_size };
    for (index, r) in layout.data_ranges(off as u64..(off + len) as u64) {
        let s = p.shards.iter().find(|s| s.index as usize == index).expect("data shard");
        assert_eq!(get(s, Some(r.clone())).await, (206, r.end - r.start), "the located chunk's bytes in shard {index}");
    }
    // A range past any shard is a bad request, not a dropped connection (it overflowed).
    let s0 = p.shards.iter().find(|s| s.index == 0).expect("shard 0");
    assert_eq!(get(s0, Some(0..u64::MAX)).await.0, 403, "a range past the grant");
    let huge = http
        .get(format!("{}/shards/{}", s0.address, s0.shard))
        .header(GRANT_HEADER, &s0.grant.0)
        .header("Range", format!("bytes=0-{}", u64::MAX))
        .send()
        .await
        .expect("the host answers a range ending at 2^64 - 1");
    assert_eq!(huge.status().as_u16(), 400);
    // A rebuild's whole-shard grants are for the shards it names, each charged.
    let (status, body) = reader.post("/v1/packs/grants", &PackGrantsRequest { pack: p.id, shards: vec![0] }).await;
    assert_eq!(status, 200, "{body}");
    let whole: PackLocation = serde_json::from_value(body).expect("pack grants");
    assert_eq!(whole.shards.iter().map(|s| s.index).collect::<Vec<_>>(), [0], "grants for shards not asked for");
    assert_eq!(get(&whole.shards[0], None).await, (200, p.shard_size));
    env.get_and_compare("big", &file);
}

/// A grant is charged once: a reader that reads its bytes over and over gets them served
/// once more (a retry), then refused, and the coordinator's reckoning of what hosts served
/// stays within what was charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_grant_serves_its_bytes_once_and_a_retry_not_forever() {
    let env = grid(6).await;
    let file = env.write_random("big", 3 << 20, 43);
    env.put(&file, "big");
    let chunk: Vec<u8> = env
        .catalog_db()
        .query_row("SELECT id FROM chunks ORDER BY len DESC LIMIT 1", [], |r| r.get(0))
        .expect("a chunk");
    let (_, located) = locate_as_owner(&env, ChunkId::from_bytes(chunk.try_into().expect("32 bytes"))).await;
    let http = host_client(&env);
    let (mut granted, mut served) = (0u64, 0u64);
    for s in located.packs.iter().flat_map(|p| &p.shards) {
        let grant = s.grant.open(&coordinator_key(&env).verifying_key()).expect("a grant the coordinator signed");
        let std::ops::Range { start, end } = grant.readable().expect("a range grant");
        if end <= start {
            continue;
        }
        granted += end - start;
        let mut answers = Vec::new();
        for _ in 0..10 {
            let resp = http
                .get(format!("{}/shards/{}", s.address, s.shard))
                .header(GRANT_HEADER, &s.grant.0)
                .header("Range", format!("bytes={start}-{}", end - 1))
                .send()
                .await
                .expect("a host answers");
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await.map(|b| b.len() as u64).unwrap_or(0);
            if status == 206 {
                served += bytes;
            }
            answers.push(status);
        }
        assert_eq!(answers[..2], [206, 206], "the grant's bytes and a retry are served");
        assert!(answers[2..].iter().all(|s| *s == 403), "a spent grant is refused: {answers:?}");
    }
    assert!(granted > 0, "the locate granted reads");
    assert_eq!(served, 2 * granted, "served: the granted bytes twice, no more");
    env.get_and_compare("big", &file);
    // The hosts report the reads refused for a spent budget apart from refused grants
    // (honest restores meet them too), with their next heartbeats.
    let mut events = String::new();
    for _ in 0..50 {
        events = env.ok(&["admin", "events", "--json"]);
        if events.contains("grant.spent") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(events.contains("grant.spent") && events.contains("served twice already"), "{events}");
    assert!(!events.contains("grant.refused"), "spent budgets were taken for refused grants: {events}");
}

/// Attack (red team): a reader asks for the grants of its owner's packs over and over and
/// reads nothing. Each answer was charged to the owner as egress (1.26 GiB in 1.7 s), and
/// raised what the hosts may claim to have served. A shard's bytes are charged once while a
/// grant lives, however many grants name them; the grants still serve.
#[tokio::test(flavor = "multi_thread")]
async fn asking_for_grants_again_charges_nothing_more() {
    let env = grid(6).await;
    let file = env.write_random("big", 3 << 20, 44);
    env.put(&file, "big");
    let (pack, shard_size): (Vec<u8>, i64) = env
        .catalog_db()
        .query_row("SELECT id, shard_size FROM packs LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("a pack");
    let pack = PackId::from_bytes(pack.try_into().expect("32 bytes"));
    let chunk: Vec<u8> =
        env.catalog_db().query_row("SELECT id FROM chunks LIMIT 1", [], |r| r.get(0)).expect("a chunk");
    let chunk = ChunkId::from_bytes(chunk.try_into().expect("32 bytes"));
    let reader = Attacker::invite(&env, &["reader", "--role", "reader", "--of", "u1"]).await;
    let before = common::egress(&env);
    let ask = PackGrantsRequest { pack, shards: vec![0, 1, 2, 3] };
    let mut last = None;
    for _ in 0..50 {
        let (status, body) = reader.post("/v1/packs/grants", &ask).await;
        assert_eq!(status, 200, "{body}");
        last = Some(body);
        let (status, body) = reader.post("/v1/chunks/locate", &LocateRequest { chunks: vec![chunk], read: true }).await;
        assert_eq!(status, 200, "{body}");
    }
    let charged = common::egress(&env) - before;
    assert_eq!(charged, 4 * shard_size, "50 rounds of grants for 4 shards charged {charged} bytes");
    // The last grants still read their shard.
    let whole: PackLocation = serde_json::from_value(last.expect("grants")).expect("pack grants");
    let s = &whole.shards[0];
    let resp = host_client(&env)
        .get(format!("{}/shards/{}", s.address, s.shard))
        .header(GRANT_HEADER, &s.grant.0)
        .send()
        .await
        .expect("a host answers");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.bytes().await.expect("the shard").len() as i64, shard_size);
}

/// Attack (red team): an appender opens a session of its own, references the owner's chunks
/// in it (their ids are no secret to a writer that deduplicated against them) and keeps it
/// alive for ever. What the owner then deletes stays stored, and billed, through every
/// prune, and the owner could not end it: only the admin could disable the appender. The
/// owner disables it now (and no session outlives a week, however often kept alive).
#[tokio::test(flavor = "multi_thread")]
async fn an_owner_ends_what_its_appenders_sessions_keep_stored() {
    let env = grid(3).await;
    let file = env.write_random("doomed", 300_000, 45);
    env.put(&file, "doomed");
    let chunks: Vec<ChunkId> = {
        let db = env.catalog_db();
        let mut q = db.prepare("SELECT id FROM chunks").expect("query");
        let ids = q.query_map([], |r| r.get::<_, Vec<u8>>(0)).expect("chunks");
        ids.map(|id| ChunkId::from_bytes(id.expect("id").try_into().expect("32 bytes"))).collect()
    };
    let stored = |env: &Env| -> i64 {
        env.catalog_db().query_row("SELECT COUNT(*) FROM chunks", [], |r| r.get(0)).expect("count")
    };
    let nas = Attacker::invite(&env, &["nas", "--role", "appender", "--of", "u1"]).await;
    let session = nas.session().await;
    let (status, body) = nas.post("/v1/snapshots/refs", &SnapshotRefsRequest { session, chunks }).await;
    assert_eq!(status, 200, "{body}");
    env.ok(&["rm", "doomed"]);
    env.ok(&["prune"]);
    assert!(stored(&env) > 0, "kept for the appender's open session");
    let (status, body) = nas.post("/v1/sessions/keepalive", &SessionRequest { session }).await;
    assert_eq!(status, 200, "{body}");
    // A delegate cannot do it to its owner or to another delegate.
    let (status, body) = nas.post("/v1/delegates/disable", &UserRequest { user: nas.user }).await;
    assert_eq!(status, 403, "{body}");
    let out = env.ok(&["delegate", "disable", &nas.user.to_string()]);
    assert!(out.contains("disabled"), "{out}");
    let (status, body) = nas.post("/v1/sessions/keepalive", &SessionRequest { session }).await;
    assert!(status == 401 || status == 403, "a disabled appender kept its session alive: {status} {body}");
    env.ok(&["prune"]);
    assert_eq!(stored(&env), 0, "what only the appender's session kept is gone at the next prune");
    let out = env.fails(&["delegate", "disable", "u1"]);
    assert!(out.contains("not a reader or appender of your data"), "{out}");
}

/// Attack: tiny packs cut into many tiny shards. The quota counts shard bytes, while every
/// shard costs its host a file (a disk block and an inode at least): 64-byte shards of
/// 1-byte puts coded 32+32 were charged 64 bytes for each 4 KiB block they took, and a 1 MiB
/// account filled hosts many times its quota. Shards are at least a block now, so what the
/// quota counts is what hosts hold.
#[tokio::test(flavor = "multi_thread")]
async fn shards_smaller_than_a_disk_block_are_refused() {
    let env = grid(6).await;
    let eve = Attacker::invite(&env, &["eve"]).await;
    let place = |size: u64, n: u32| placement(&made_up_ids(&format!("t{n}")), size);
    let (status, body) = eve.post("/v1/packs/place", &place(64, 0)).await;
    assert_eq!(status, 400, "64-byte shards were placed: {body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("4.0 KiB"), "{body}");
    let (status, body) = eve.post("/v1/packs/place", &place(4096, 1)).await;
    assert_eq!(status, 200, "{body}");

    // A 1-byte put coded 32+32 takes 64 shards of a block each, and is charged for them.
    let tiny = env.write_random("tiny", 1, 3);
    env.ok(&["put", tiny.to_str().expect("utf-8"), "--name", "tiny", "--data", "32", "--parity", "32"]);
    let small: Vec<_> = all_shard_files(&env)
        .into_iter()
        .filter(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) < 4096)
        .collect();
    assert!(small.is_empty(), "shards smaller than a block: {small:?}");
    env.get_and_compare("tiny", &tiny);
}

/// Attack (red team, stop 50): an account opens a session with a 4 KiB wrapped key, commits
/// an empty object under it and closes it, again and again. The object counted about 130
/// bytes against the quota; the session's key, kept for as long as the object is, nothing:
/// the catalog (and its backups on every host) grew 32 times faster than the quota said.
#[tokio::test(flavor = "multi_thread")]
async fn a_sessions_wrapped_key_counts_against_the_quota() {
    let env = grid(3).await;
    let eve = Attacker::invite(&env, &["eve", "--quota", "1MiB"]).await;
    let mut refused = None;
    for n in 0..400 {
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [n as u8; 4096]);
        let (status, body) = eve.post("/v1/sessions", &CreateSessionRequest { wrapped_key: b64 }).await;
        if status != 200 {
            refused = Some((n, status, body));
            break;
        }
        let session = body["session"].as_u64().expect("session id");
        let (status, body) =
            eve.post("/v1/objects/commit", &empty_object(format!("x{n}"), session, String::new())).await;
        if status != 200 {
            refused = Some((n, status, body));
            break;
        }
        let (status, body) = eve.post("/v1/sessions/close", &serde_json::json!({ "session": session })).await;
        assert_eq!(status, 200, "{body}");
    }
    let (n, status, body) = refused.expect("400 sessions of 4 KiB keys were all kept under a 1 MiB quota");
    assert_eq!(status, 507, "{body}");
    assert!(body.to_string().contains("quota"), "{body}");
    let kept: i64 = env
        .catalog_db()
        .query_row("SELECT COALESCE(SUM(LENGTH(wrapped_key)), 0) FROM sessions WHERE user = ?1", [eve.user.0], |r| {
            r.get(0)
        })
        .expect("sql");
    assert!(kept <= 1 << 20, "{n} sessions kept {kept} bytes of keys under a 1 MiB quota");
    // What `usage` reports is what the catalog keeps.
    let (status, usage) = eve.call(reqwest::Method::GET, "/v1/usage", None).await;
    assert_eq!(status, 200, "{usage}");
    assert!(usage["catalog_bytes"].as_i64() >= Some(kept), "{usage}");
}

/// Attack (red team): an appender asked `POST /v1/objects/check-name` whether its owner had
/// an object under a name it guessed (the name key is an appender's too), and was told, with
/// nothing written and nothing recorded. It learns that a name is taken only when a write of
/// its own is refused, as S3's write-only keys do.
#[tokio::test(flavor = "multi_thread")]
async fn an_appender_is_not_told_which_names_exist_without_writing() {
    let env = grid(3).await;
    let file = env.write_random("secret", 10 << 10, 3);
    env.put(&file, "secret");
    let name: String =
        env.catalog_db().query_row("SELECT name FROM objects WHERE user = 1", [], |r| r.get(0)).expect("the name");
    let nas = Attacker::invite(&env, &["nas", "--role", "appender", "--of", "u1"]).await;
    let (status, body) =
        nas.post("/v1/objects/check-name", &serde_json::json!({ "name": name, "exclusive": true })).await;
    assert_eq!(status, 404, "the appender was answered: {body}");
}

/// Attack (red team, stop 50): snapshot records took up to 64 MiB of the catalog (and of its
/// backups on every host) whatever the account's quota: a 1 MiB account stored 67 MB of them.
/// A record and its row count against the quota now.
#[tokio::test(flavor = "multi_thread")]
async fn snapshot_records_count_against_the_quota() {
    let env = grid(3).await;
    let eve = Attacker::invite(&env, &["eve", "--quota", "1MiB"]).await;
    let record = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, vec![7u8; 300_000]);
    let mut refused = None;
    for i in 0..10 {
        let session = eve.session().await;
        let body = serde_json::json!({ "session": session, "id": format!("{i:064x}"), "record": record });
        let (status, body) = eve.post("/v1/snapshots/commit", &body).await;
        if status != 200 {
            refused = Some((i, status, body));
            break;
        }
    }
    let (i, status, body) = refused.expect("3 MB of snapshot records were all taken under a 1 MiB quota");
    assert_eq!(status, 507, "{body}");
    assert!(body.to_string().contains("quota"), "{body}");
    assert!(i <= 4, "{i} records of 300 kB taken under a 1 MiB quota");
}
