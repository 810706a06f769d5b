//! Bulk loading, for benchmarks (cargo feature `bench`; compiled into unit tests too, so its
//! test runs with the others): fills a catalog with many packs and objects per transaction,
//! through the same SQL surface as every other write.
//!
//! What a load writes is what [`Store::commit_pack`] and [`Store::commit_object`] would have
//! written for the same packs and objects (the same rows, columns and host counters), but
//! it skips their checks: that the session exists and is the user's, that no host already
//! records a shard, which writer a chunk stored twice keeps, that an object's chunks are
//! stored, and which version an object gets (always 1: names must be new). It writes
//! many rows per statement ([`Sql::insert_many`]) and many packs per transaction, where a
//! commit writes a row per statement and a transaction per pack. The caller vouches for the
//! data being consistent; the benchmark builds it so.

use std::collections::HashMap;

use scatter_core::{ChunkId, HostId, PackId, ShardId, UserId};

use super::sql::{Sql, SqlError, Value};
use super::{Store, StoreError};

/// A pack with its shards and chunks, as a bulk load records it.
pub struct BulkPack {
    /// Id.
    pub id: PackId,
    /// The session it was written in (must be the user's).
    pub session: u64,
    /// Sealed size.
    pub size: u64,
    /// Data shards.
    pub k: u8,
    /// Parity shards.
    pub m: u8,
    /// Bytes per shard.
    pub shard_size: u64,
    /// Unix time of its commit.
    pub created: u64,
    /// Shards: (index, id, host, receipt).
    pub shards: Vec<(u8, ShardId, HostId, String)>,
    /// Chunks: (id, offset, sealed length).
    pub chunks: Vec<(ChunkId, u64, u64)>,
}

/// An object (version 1 of a new name) and the chunks it references.
pub struct BulkObject {
    /// Encrypted name, new for the user.
    pub name: String,
    /// The session it was written in.
    pub session: u64,
    /// Sealed manifest.
    pub manifest: Vec<u8>,
    /// Plaintext size.
    pub size: u64,
    /// Unix time of its commit.
    pub created: u64,
    /// The chunks it references (stored, in this load or before).
    pub chunks: Vec<ChunkId>,
}

/// SQLite page cache for the load's transactions (KiB, as `PRAGMA cache_size` takes a
/// negative number): a load's transaction touches far more pages than the store's default
/// 2 MiB cache holds, and SQLite would spill them to the WAL over and over. Set back after.
const LOAD_CACHE_KIB: i64 = 1 << 20;

fn blob(b: &[u8]) -> Value {
    Value::Blob(b.to_vec())
}

/// The distinct chunks `o` references, as a commit counts them.
fn refs(o: &BulkObject) -> u64 {
    o.chunks.iter().collect::<std::collections::HashSet<_>>().len() as u64
}

impl Store {
    /// Records `packs` (with shards, chunks and the hosts' counters) and `objects` (with
    /// their chunk references) of `user` in one transaction, without the checks of a commit
    /// (see the module). Benchmarks only.
    #[doc(hidden)]
    pub fn bulk_load(&self, user: UserId, packs: &[BulkPack], objects: &[BulkObject]) -> Result<(), StoreError> {
        self.write(|tx| {
            let cache = match tx.is_postgres() {
                true => None,
                false => {
                    let before: i64 = tx.query_row("PRAGMA cache_size", params![], |r| r.get(0))?;
                    tx.batch(&format!("PRAGMA cache_size = -{LOAD_CACHE_KIB}"))?;
                    Some(before)
                }
            };
            let loaded = load(tx, user, packs, objects);
            if let Some(before) = cache {
                tx.batch(&format!("PRAGMA cache_size = {before}"))?;
            }
            loaded
        })
    }
}

fn load(tx: &Sql<'_>, user: UserId, packs: &[BulkPack], objects: &[BulkObject]) -> Result<(), StoreError> {
    let u = Value::Int(user.0 as i64);
    let zones: HashMap<HostId, String> = tx
        .query_map("SELECT id, zone FROM hosts", params![], |r| Ok((HostId(r.get::<i64>(0)? as u64), r.get(1)?)))?
        .into_iter()
        .collect();
    let mut rows = Vec::new();
    for p in packs {
        // How the pack spreads, as `measure_spread` would record it: a bulk load's hosts are
        // each their own failure domain (no operators).
        let mut per_host: HashMap<HostId, usize> = HashMap::new();
        let mut per_zone: HashMap<Option<&String>, usize> = HashMap::new();
        for (_, _, host, _) in &p.shards {
            *per_host.entry(*host).or_default() += 1;
            *per_zone.entry(zones.get(host)).or_default() += 1;
        }
        let held: Vec<usize> = per_host.into_values().collect();
        let spread = held.iter().copied().max().unwrap_or(0);
        let tolerance = crate::durability::tolerance(&held, p.k as usize).unwrap_or(0);
        let zone_spread = per_zone.into_values().max().unwrap_or(0);
        rows.extend([
            blob(p.id.as_bytes()),
            u.clone(),
            Value::Int(p.session as i64),
            Value::Int(p.size as i64),
            Value::Int(p.k.into()),
            Value::Int(p.m.into()),
            Value::Int(p.shard_size as i64),
            Value::Text("live".into()),
            Value::Int(p.created as i64),
            Value::Int(spread as i64),
            Value::Int(tolerance.into()),
            Value::Int(zone_spread as i64),
        ]);
    }
    tx.insert_many(
        "INSERT INTO packs (id, user, session, size, k, m, shard_size, state, created, spread, tolerance, zone_spread) VALUES",
        "",
        12,
        &rows,
        |_| Ok(()),
    )?;
    rows.clear();
    let mut held: HashMap<HostId, (i64, i64)> = HashMap::new();
    for p in packs {
        for (index, shard, host, receipt) in &p.shards {
            rows.extend([
                blob(p.id.as_bytes()),
                Value::Int((*index).into()),
                blob(shard.as_bytes()),
                Value::Int(host.0 as i64),
                Value::Text("ok".into()),
                Value::Text(receipt.clone()),
            ]);
            let h = held.entry(*host).or_default();
            h.0 += 1;
            h.1 += p.shard_size as i64;
        }
    }
    tx.insert_many("INSERT INTO shards (pack, idx, hash, host, state, receipt) VALUES", "", 6, &rows, |_| Ok(()))?;
    rows.clear();
    for (host, (shards, bytes)) in held {
        super::held_count(tx, host, shards, bytes)?;
    }
    // The usage records a commit writes, pack by pack in the same order: what it stores, its
    // ingress, and what each host now holds.
    let who = crate::metering::Subject::User(user.0);
    for p in packs {
        let bytes = (p.shard_size * (u64::from(p.k) + u64::from(p.m))) as i64;
        super::stored(tx, user.0 as i64, &p.id.as_bytes()[..], 1, bytes, p.size as i64)?;
        super::metering::record(tx, who, crate::metering::Kind::Ingress, bytes, p.created)?;
        for (_, _, host, _) in &p.shards {
            let host = crate::metering::Subject::Host(host.0);
            super::metering::record_now(tx, host, crate::metering::Kind::Held, p.shard_size as i64, 0)?;
        }
    }
    for p in packs {
        for (id, offset, len) in &p.chunks {
            rows.extend([
                u.clone(),
                blob(id.as_bytes()),
                blob(p.id.as_bytes()),
                Value::Int(*offset as i64),
                Value::Int(*len as i64),
            ]);
        }
    }
    // Chunks' rows counted as a commit counts them: per pack, under its id.
    let mut added: HashMap<Vec<u8>, i64> = HashMap::new();
    tx.insert_many(
        "INSERT INTO chunks (user, id, pack, off, len) VALUES",
        "ON CONFLICT DO NOTHING RETURNING pack",
        5,
        &rows,
        |r| {
            *added.entry(r.get(0)?).or_default() += 1;
            Ok(())
        },
    )?;
    for p in packs {
        let rows = added.get(&p.id.as_bytes()[..]).copied().unwrap_or(0);
        super::catalog_bytes(tx, user.0 as i64, &p.id.to_string(), rows * super::CHUNK_ROW_BYTES as i64)?;
    }
    rows.clear();
    for o in objects {
        rows.extend([
            u.clone(),
            Value::Text(o.name.clone()),
            Value::Int(1),
            Value::Int(o.session as i64),
            Value::Blob(o.manifest.clone()),
            Value::Int(o.size as i64),
            Value::Int(o.created as i64),
            Value::Int(refs(o) as i64),
        ]);
    }
    // The database numbers the objects; the names (new, so unique) say which is which.
    let mut ids: HashMap<String, i64> = HashMap::with_capacity(objects.len());
    tx.insert_many(
        "INSERT INTO objects (user, name, version, session, manifest, size, created, refs) VALUES",
        "RETURNING name, id",
        8,
        &rows,
        |r| {
            ids.insert(r.get(0)?, r.get(1)?);
            Ok(())
        },
    )?;
    rows.clear();
    // What the catalog keeps of each, counted as a commit counts it.
    for o in objects {
        let cost = o.name.len() as u64
            + o.manifest.len() as u64
            + super::OBJECT_ROW_BYTES
            + refs(o) * super::backup::SNAPSHOT_REF_BYTES;
        super::catalog_bytes(tx, user.0 as i64, &o.name, cost as i64)?;
    }
    for o in objects {
        let id = *ids.get(&o.name).ok_or(SqlError::NoRow)?;
        for c in &o.chunks {
            rows.extend([Value::Int(id), u.clone(), blob(c.as_bytes())]);
        }
    }
    tx.insert_many(
        "INSERT INTO object_chunks (object, user, chunk) VALUES",
        "ON CONFLICT DO NOTHING",
        3,
        &rows,
        |_| Ok(()),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use scatter_proto::api::{ChunkEntry, Role, StoredShard};
    use scatter_proto::SignedReceipt;

    use super::*;
    use crate::store::{testing, NewPack};

    /// A catalog with one user, a session and three hosts: (guard, store, user, session, hosts).
    fn grid() -> (testing::Guard, Store, UserId, u64, Vec<HostId>) {
        let (guard, store) = testing::catalog();
        store.add_token(&[1; 32], "ann", Role::User, None, None).expect("token");
        let user = store.redeem_token(&[1; 32], "pk", &[2; 32], "", 0).expect("redeem").expect("user").id;
        let session = store.add_session(user, b"k", 0, 100).expect("session");
        let hosts = (0..3u8)
            .map(|i| store.add_host(&[i; 32], &format!("http://127.0.0.1:{i}"), "z", 1 << 30, None, 0).expect("host"))
            .collect();
        (guard, store, user, session, hosts)
    }

    /// A usage record's line (`[id,time,"YYYY-MM",…`) with the time left out.
    fn without_time(line: &str) -> String {
        let Some(rest) = line.strip_prefix('[') else { return line.to_owned() };
        let parts: Vec<&str> = rest.splitn(3, ',').collect();
        match parts.as_slice() {
            [id, time, tail]
                if time.len() == 10
                    && time.bytes().all(|b| b.is_ascii_digit())
                    && tail.starts_with("\"")
                    && tail.as_bytes().get(8) == Some(&b'"') =>
            {
                format!("[{id},T,{tail}")
            }
            _ => line.to_owned(),
        }
    }

    /// The whole catalog as sorted export lines: equal for two catalogs holding the same rows.
    fn rows(store: &Store) -> Vec<String> {
        let mut out = Vec::new();
        store.export(&mut out).expect("export");
        // Usage records carry the wall clock's time of the write: the second may differ.
        let mut lines: Vec<String> = String::from_utf8(out).expect("utf-8").lines().map(without_time).collect();
        lines.sort();
        lines
    }

    crate::store::testing::conformance! {
        fn a_bulk_load_writes_what_commits_write() {
            let (_a, committed, user, session, hosts) = grid();
            let (_b, loaded, _, _, _) = grid();
            let mut packs = Vec::new();
            let mut objects = Vec::new();
            for n in 0..3u8 {
                let shards: Vec<(u8, ShardId, HostId, String)> =
                    (0..3u8).map(|i| (i, ShardId::from_bytes([n * 8 + i; 32]), hosts[i as usize], format!("r{n}{i}"))).collect();
                let chunks: Vec<(ChunkId, u64, u64)> = (0..2u8).map(|j| (ChunkId::from_bytes([100 + n * 8 + j; 32]), j as u64 * 10, 10)).collect();
                let stored: Vec<StoredShard> = shards
                    .iter()
                    .map(|(i, s, h, r)| StoredShard { index: *i, shard: *s, host: *h, receipt: SignedReceipt(r.clone()) })
                    .collect();
                let entries: Vec<ChunkEntry> = chunks.iter().map(|(id, offset, len)| ChunkEntry { id: *id, offset: *offset, len: *len }).collect();
                let pack = NewPack {
                    id: PackId::from_bytes([200 + n; 32]),
                    user,
                    session,
                    size: 20,
                    k: 2,
                    m: 1,
                    shard_size: 10,
                    shards: &stored,
                    chunks: &entries,
                    relocate: false,
                };
                committed.commit_pack(&pack, 5).expect("commit a pack");
                let ids: Vec<ChunkId> = chunks.iter().map(|c| c.0).collect();
                let name = format!("dir/{n}");
                committed.commit_object(user, &name, session, b"manifest", 20, &ids, false, 6).expect("commit an object");
                packs.push(BulkPack {
                    id: pack.id,
                    session,
                    size: 20,
                    k: 2,
                    m: 1,
                    shard_size: 10,
                    created: 5,
                    shards,
                    chunks,
                });
                objects.push(BulkObject { name, session, manifest: b"manifest".to_vec(), size: 20, created: 6, chunks: ids });
            }
            loaded.bulk_load(user, &packs, &objects).expect("bulk load");
            assert_eq!(rows(&loaded), rows(&committed));
            let held: Vec<(u64, u64)> = loaded.hosts().expect("hosts").iter().map(|h| (h.shards, h.catalog_used)).collect();
            assert_eq!(held, [(3, 30); 3]);
        }
    }
}
