//! Hostile tenants against abandoning placements (`/v1/packs/abandon`), with real
//! processes: an account gives back only its own placements, and the shards they free are
//! deleted from hosts only where nobody else's pack or placement may need them.

use crate::common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::attacker::Attacker;
use common::{fingerprint, grid_with, host, uploaded_pack, Env};
use scatter_cli::grid::GridOptions;
use scatter_core::{ChunkId, HostId, ShardId};
use scatter_proto::api::*;

/// Where host `id` keeps shard `shard` (hosts join in any order).
fn shard_file(env: &Env, id: HostId, shard: &ShardId) -> PathBuf {
    let i = (0..env.grid.host_count()).find(|i| host(env, *i).0 == id).expect("a host with this id");
    let hex = shard.to_string();
    env.grid.host_dir(i).join("shards").join(&hex[..2]).join(hex)
}

/// The (host, shard) pairs the catalog records, read straight from its file (ids are no
/// secrets: an attacker is assumed to know them).
fn committed(env: &Env) -> Vec<(HostId, ShardId)> {
    let db = env.catalog_db();
    let mut stmt = db.prepare("SELECT host, hash FROM shards").expect("sql");
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))).expect("sql");
    rows.map(|r| {
        let (h, s) = r.expect("row");
        (HostId(h as u64), ShardId::from_bytes(<[u8; 32]>::try_from(s).expect("32 bytes")))
    })
    .collect()
}

/// A placement of the 4+2 shards `ids`, 4 KiB each.
fn placement(ids: &[ShardId]) -> PlaceRequest {
    PlaceRequest {
        shard_size: 4096,
        shards: ids.iter().enumerate().map(|(i, s)| ShardToPlace { index: i as u8, shard: *s }).collect(),
        exclude: vec![],
        k: 4,
        m: 2,
        placed: vec![],
        policy: Default::default(),
    }
}

/// Places `shards` as `who` and uploads their bytes where the placement says; returns
/// what a commit names, by index.
async fn place_and_upload(env: &Env, who: &Attacker, shards: &[Vec<u8>]) -> Vec<StoredShard> {
    let http = scatter_net::http_client(Some(fingerprint(env)), scatter_net::Peer::Host)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let ids: Vec<ShardId> = shards.iter().map(|s| ShardId::of(s)).collect();
    let (status, body) = who.post("/v1/packs/place", &placement(&ids)).await;
    assert_eq!(status, 200, "{body}");
    let placed: PlaceResponse = serde_json::from_value(body).expect("placement");
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
        assert_eq!(resp.status().as_u16(), 201);
        let reply: StoredResponse = resp.json().await.expect("a receipt");
        stored.push(StoredShard { index: t.index, shard: ids[i], host: t.host, receipt: reply.receipt });
    }
    stored.sort_by_key(|s| s.index);
    stored
}

/// Attack: eve gives back, as if they were her abandoned placements, shards she never
/// placed (the owner's committed ones, and alice's, uploaded and not yet committed), and
/// her own placements of alice's shard ids, whose bytes she uploaded after alice did on
/// the same hosts. Nothing of the owner's or alice's may go: every file stays, alice's pack
/// still commits, the owner's file restores. Eve's own copies that nobody else placed are
/// deleted promptly.
#[tokio::test(flavor = "multi_thread")]
async fn abandoning_cannot_delete_or_disturb_anothers_shards() {
    // The orphan sweep is kept out of the way: only abandoning deletes within this test.
    let opts = GridOptions { orphan_grace: "1h".into(), passphrase: "test passphrase".into(), ..Default::default() };
    let env = grid_with(6, opts).await;
    let file = env.write_random("owned", 1 << 20, 4);
    env.put(&file, "owned");
    let owners = committed(&env);
    assert!(!owners.is_empty());

    let alice = Attacker::invite(&env, &["alice"]).await;
    let session = alice.session().await;
    let bytes: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i ^ 0x5a; 4096]).collect();
    let ids: Vec<ShardId> = bytes.iter().map(|b| ShardId::of(b)).collect();
    let alices = place_and_upload(&env, &alice, &bytes).await;

    // Eve has the bytes too (hosts see them): she places the same ids and uploads them.
    let eve = Attacker::invite(&env, &["eve"]).await;
    let eves = place_and_upload(&env, &eve, &bytes).await;
    let mut named: Vec<(HostId, ShardId)> = eves.iter().map(|s| (s.host, s.shard)).collect();
    named.extend(alices.iter().map(|s| (s.host, s.shard)));
    named.extend(owners.iter().copied());
    let (status, body) = eve.give_back(&named).await;
    assert_eq!(status, 200, "abandon: {body}");

    // Eve's copies on hosts where neither alice nor the owner has that shard go promptly.
    let others: Vec<(HostId, ShardId)> = alices.iter().map(|s| (s.host, s.shard)).chain(owners.clone()).collect();
    let eve_only: Vec<PathBuf> = eves
        .iter()
        .filter(|s| !others.contains(&(s.host, s.shard)))
        .map(|s| shard_file(&env, s.host, &s.shard))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while eve_only.iter().any(|p| p.exists()) {
        assert!(Instant::now() < deadline, "eve's abandoned copies stayed on their hosts");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A few more deleter passes, for anything wrongly queued to be acted on.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for (h, s) in &others {
        assert!(shard_file(&env, *h, s).exists(), "shard {s} of another account left host {h}");
    }
    let (status, body) = alice
        .post("/v1/packs/commit", &uploaded_pack(session, &ids, alices, &[ChunkId::from_bytes([9; 32])], false))
        .await;
    assert_eq!(status, 200, "eve's abandon disturbed alice's placements: {body}");
    env.get_and_compare("owned", &file);
}

/// A pack commit the coordinator refuses (here two receipts are swapped) does not use up its
/// placements: its uploader gives them back and the uploads leave the hosts within seconds,
/// instead of staying there, counted against nobody, until the orphan sweep (an hour here).
/// Nor does a refused commit open the door to a second use: once given back, the right
/// receipts no longer commit.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_commit_leaves_its_placements_to_be_given_back() {
    let opts = GridOptions { orphan_grace: "1h".into(), passphrase: "test passphrase".into(), ..Default::default() };
    let env = grid_with(6, opts).await;
    let alice = Attacker::invite(&env, &["alice"]).await;
    let session = alice.session().await;
    let bytes: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i ^ 0x33; 4096]).collect();
    let ids: Vec<ShardId> = bytes.iter().map(|b| ShardId::of(b)).collect();
    let stored = place_and_upload(&env, &alice, &bytes).await;
    let files: Vec<PathBuf> = stored.iter().map(|s| shard_file(&env, s.host, &s.shard)).collect();
    assert!(files.iter().all(|p| p.exists()), "the uploads are on their hosts");
    let commit =
        |shards: Vec<StoredShard>| uploaded_pack(session, &ids, shards, &[ChunkId::from_bytes([7; 32])], false);
    let mut swapped = stored.clone();
    let first = swapped[0].receipt.clone();
    swapped[0].receipt = std::mem::replace(&mut swapped[1].receipt, first);
    let (status, body) = alice.post("/v1/packs/commit", &commit(swapped)).await;
    assert_eq!(status, 403, "a commit with swapped receipts: {body}");

    let pairs: Vec<(HostId, ShardId)> = stored.iter().map(|s| (s.host, s.shard)).collect();
    let (status, body) = alice.give_back(&pairs).await;
    assert_eq!(status, 200, "abandon: {body}");
    assert_eq!(body["dropped"], 6, "the refused commit used up its placements: {body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while files.iter().any(|p| p.exists()) {
        assert!(Instant::now() < deadline, "the uploads of a refused commit stayed on their hosts");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body) = alice.post("/v1/packs/commit", &commit(stored)).await;
    assert_eq!(status, 403, "receipts of placements given back were accepted: {body}");
}

/// Attack: a tenant asks for a drain, forced, to push a host's shards around (or to make the
/// coordinator weigh a drain for it): refused before anything is looked at or changed.
#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_cannot_drain_a_host() {
    let env = common::grid(3).await;
    let eve = Attacker::invite(&env, &["eve"]).await;
    let (h, _) = host(&env, 0);
    let (status, body) = eve.post("/v1/admin/hosts/drain", &DrainRequest { host: h, force: true }).await;
    assert_eq!(status, 403, "{body}");
    let ls: serde_json::Value = serde_json::from_str(&env.ok(&["admin", "host", "ls", "--json"])).expect("JSON");
    assert!(ls.as_array().expect("hosts").iter().all(|h| h["state"] == "online"), "{ls}");
}
