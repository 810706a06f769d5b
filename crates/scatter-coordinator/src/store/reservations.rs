//! Reservations: shards placed and not yet committed. They count against their hosts' room
//! and their owner's quota, and a pack commit is checked against them (each is used once).
//! They live in the catalog, not in one process's memory, so a coordinator restart does not
//! lose the uploads under way and several coordinators can share them.
//!
//! A placement given back (its client abandons it, or it lapses) is not simply forgotten:
//! what its upload may have left on the host is queued for deletion (`abandoned`) unless a
//! pack records that shard there or someone else's live placement names it, and the host
//! deletes its copy only if that upload alone wrote it (`Op::DeleteIf`). So a failed put
//! leaves nothing on hosts for long, and no commit, now or later, loses its shard.

use std::collections::HashMap;

use scatter_core::{HostId, ShardId, UserId};

use super::sql::{Sql, SqlError};
use super::{Store, StoreError};

/// A shard placed for an account and not yet committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The host it was placed on.
    pub host: HostId,
    /// The shard.
    pub shard: ShardId,
    /// The account that asked for the placement, and alone may commit it.
    pub caller: UserId,
    /// Whose quota it counts against.
    pub owner: UserId,
    /// Bytes it takes on its host.
    pub bytes: u64,
    /// BLAKE3 of the put grant issued for it, which the host's receipt must answer.
    pub grant: [u8; 32],
    /// The code (k, m) of the pack it was placed for: a commit must name the same.
    pub code: (u8, u8),
    /// Shards of its pack one failure domain may hold, as the rule stood at placement.
    pub per_domain: usize,
    /// Unix time it lapses.
    pub expires: u64,
    /// Placed under a placement policy, which chose its zones: its pack is not re-spread
    /// over zones the policy may exclude.
    pub narrowed: bool,
}

/// An upload given back, to delete from its host: (host, shard, hash of its put grant, when
/// it was given back).
pub type GivenBack = (HostId, ShardId, [u8; 32], u64);

/// What is reserved now, as a placement needs to know it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reserved {
    /// Bytes reserved per host.
    pub by_host: HashMap<HostId, u64>,
    /// Shards and bytes the caller has reserved.
    pub caller: (usize, u64),
    /// Bytes reserved against the owner's quota.
    pub owner: u64,
    /// What counts against the owner's quota already ([`super::quota_used`]), read in the
    /// same transaction: read before it, a pack committed in between counted neither as
    /// reserved nor as used, and a placement raced past the quota.
    pub used: u64,
}

/// Why a placement was not recorded.
#[derive(Debug)]
pub enum ReserveError<E> {
    /// The placement decided against it.
    Refused(E),
    /// The catalog failed.
    Store(StoreError),
}

impl<E> super::sql::Retry for ReserveError<E> {
    fn conflict(&self) -> bool {
        matches!(self, ReserveError::Store(e) if super::sql::Retry::conflict(e))
    }
}

impl<E> From<SqlError> for ReserveError<E> {
    fn from(e: SqlError) -> Self {
        ReserveError::Store(e.into())
    }
}

/// Drops lapsed reservations, giving back what their uploads may have left ([`give_back`]).
fn lapse(tx: &Sql<'_>, now: u64) -> Result<(), SqlError> {
    let gone: Vec<(i64, Vec<u8>, Vec<u8>)> = tx.query_map(
        "DELETE FROM reservations WHERE expires <= ?1 RETURNING host, shard, grant_hash",
        params![now as i64],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    for (host, shard, grant) in gone {
        give_back(tx, host, &shard, &grant, now)?;
    }
    Ok(())
}

/// Queues the deletion of what the upload under put grant `grant` may have left of `shard`
/// on `host`, unless a pack records that shard there (live: needed; released: the deleter's
/// own) or anyone holds a live placement of it there (its upload may be the host's copy, and
/// may still commit). Runs in the transaction that dropped the placement, so no commit slips
/// between the check and the queueing; a placement made later comes with a grant of its own,
/// and its upload makes the host keep the copy.
fn give_back(tx: &Sql<'_>, host: i64, shard: &[u8], grant: &[u8], now: u64) -> Result<(), SqlError> {
    let needed = tx.exists("SELECT 1 FROM shards WHERE host = ?1 AND hash = ?2", params![host, shard])?
        || tx.exists(
            "SELECT 1 FROM reservations WHERE host = ?1 AND shard = ?2 AND expires > ?3",
            params![host, shard, now as i64],
        )?;
    if !needed {
        tx.execute(
            "INSERT INTO abandoned (host, hash, grant_hash, since) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            params![host, shard, grant, now as i64],
        )?;
    }
    Ok(())
}

fn by_host(tx: &Sql<'_>) -> Result<HashMap<HostId, u64>, SqlError> {
    let rows =
        tx.query_map("SELECT host, CAST(SUM(bytes) AS BIGINT) FROM reservations GROUP BY host", params![], |r| {
            Ok((HostId(r.get::<i64>(0)? as u64), r.get::<i64>(1)? as u64))
        })?;
    Ok(rows.into_iter().collect())
}

impl Store {
    /// Bytes reserved per host, lapsed reservations dropped first.
    pub fn reserved_by_host(&self, now: u64) -> Result<HashMap<HostId, u64>, StoreError> {
        self.write(|tx| {
            lapse(tx, now)?;
            let out = by_host(tx)?;
            Ok(out)
        })
    }

    /// Drops lapsed reservations, queueing what their uploads left for deletion: for the
    /// deleter, so a killed client's shards go soon after its placements lapse. Writes only
    /// when something lapsed.
    pub fn lapse_reservations(&self, now: u64) -> Result<(), StoreError> {
        let any =
            self.read(|c| Ok(c.exists("SELECT 1 FROM reservations WHERE expires <= ?1", params![now as i64])?))?;
        if any {
            self.write(|tx| Ok(lapse(tx, now)?))?;
        }
        Ok(())
    }

    /// Gives back `caller`'s live placements of these (host, shard) pairs (an upload it
    /// abandoned): each is dropped, and what its upload may have left is queued for deletion
    /// where nothing else needs it ([`give_back`]). Pairs the caller holds no placement of
    /// are ignored: an account gives back only its own. Returns how many were dropped.
    pub fn abandon(&self, caller: UserId, keys: &[(HostId, ShardId)], now: u64) -> Result<u64, StoreError> {
        self.write(|tx| {
            lapse(tx, now)?;
            let mut dropped = 0;
            for (host, shard) in keys {
                let grant: Option<Vec<u8>> = tx.query_opt(
                    "DELETE FROM reservations WHERE host = ?1 AND shard = ?2 AND caller = ?3 RETURNING grant_hash",
                    params![host.0 as i64, &shard.as_bytes()[..], caller.0 as i64],
                    |r| r.get(0),
                )?;
                if let Some(grant) = grant {
                    give_back(tx, host.0 as i64, &shard.as_bytes()[..], &grant, now)?;
                    dropped += 1;
                }
            }
            Ok(dropped)
        })
    }

    /// Uploads given back, to delete from their hosts: (host, shard, put grant hash, since).
    /// One a pack has recorded since is left out (a commit after the give-back whose
    /// upload the host keeps anyway).
    pub fn abandoned(&self, limit: usize) -> Result<Vec<GivenBack>, StoreError> {
        self.read(|c| {
            Ok(c.query_map(
                "SELECT a.host, a.hash, a.grant_hash, a.since FROM abandoned a
                 WHERE NOT EXISTS (SELECT 1 FROM shards s WHERE s.host = a.host AND s.hash = a.hash) LIMIT ?1",
                params![limit as i64],
                |r| {
                    Ok((
                        HostId(r.get::<i64>(0)? as u64),
                        ShardId::from_bytes(r.get::<[u8; 32]>(1)?),
                        r.get::<[u8; 32]>(2)?,
                        r.get::<i64>(3)? as u64,
                    ))
                },
            )?)
        })
    }

    /// Forgets an upload given back: its host deleted it, kept it, or it is left to the
    /// orphan sweep; and any that a pack has recorded since.
    pub fn abandoned_done(
        &self,
        host: HostId,
        shard: &ShardId,
        grant: &[u8; 32],
        fence: Option<&super::Fence>,
        now: u64,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            super::leases::check(tx, fence, now)?;
            tx.execute(
                "DELETE FROM abandoned WHERE host = ?1 AND hash = ?2 AND grant_hash = ?3",
                params![host.0 as i64, &shard.as_bytes()[..], &grant[..]],
            )?;
            tx.execute(
                "DELETE FROM abandoned WHERE EXISTS
                     (SELECT 1 FROM shards s WHERE s.host = abandoned.host AND s.hash = abandoned.hash)",
                params![],
            )?;
            Ok(())
        })
    }

    /// Places shards in one transaction: drops lapsed reservations, hands `decide` what is
    /// reserved (per host, by `caller`, against `owner`'s quota), and records the
    /// reservations it returns (with whatever else it returns, handed back). A (host, shard)
    /// the caller holds a live reservation of is replaced. Another account's reservation of
    /// the same (host, shard) is no obstacle: a reservation is no claim (anyone can name a
    /// shard id), only a commit with the host's receipt is, and a shard is recorded on a
    /// host once.
    pub fn reserve<T, E>(
        &self,
        caller: UserId,
        owner: UserId,
        now: u64,
        mut decide: impl FnMut(&Reserved) -> Result<(Vec<Reservation>, T), E>,
    ) -> Result<T, ReserveError<E>> {
        // `decide` runs again if PostgreSQL has the transaction start over.
        self.db.write(|tx| {
            lapse(tx, now)?;
            let count = |sql: &str, who: UserId| -> Result<(i64, i64), SqlError> {
                tx.query_row(sql, params![who.0 as i64], |r| Ok((r.get(0)?, r.get(1)?)))
            };
            let (n, bytes) = count(
                "SELECT COUNT(*), CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM reservations WHERE caller = ?1",
                caller,
            )?;
            let (_, quota) = count(
                "SELECT COUNT(*), CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM reservations WHERE owner = ?1",
                owner,
            )?;
            let reserved = Reserved {
                by_host: by_host(tx)?,
                caller: (n as usize, bytes as u64),
                owner: quota as u64,
                used: super::quota_used(tx, owner.0 as i64)?,
            };
            let (new, out) = decide(&reserved).map_err(ReserveError::Refused)?;
            for r in &new {
                tx.execute(
                    "INSERT INTO reservations (host, shard, caller, owner, bytes, grant_hash, k, m, per_domain, expires, narrowed)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT (host, shard, caller) DO UPDATE SET owner = excluded.owner, bytes = excluded.bytes,
                         grant_hash = excluded.grant_hash, k = excluded.k, m = excluded.m,
                         per_domain = excluded.per_domain, expires = excluded.expires, narrowed = excluded.narrowed",
                    params![
                        r.host.0 as i64,
                        &r.shard.as_bytes()[..],
                        r.caller.0 as i64,
                        r.owner.0 as i64,
                        r.bytes as i64,
                        &r.grant[..],
                        r.code.0,
                        r.code.1,
                        r.per_domain as i64,
                        r.expires as i64,
                        i64::from(r.narrowed)
                    ],
                )?;
            }
            Ok(out)
        })
    }

    /// `caller`'s live reservations of these (host, shard) pairs, as [`take`] would return
    /// them (`None` where it holds none), left in place.
    pub fn placements_of(
        &self,
        caller: UserId,
        keys: &[(HostId, ShardId)],
        now: u64,
    ) -> Result<Vec<Option<Reservation>>, StoreError> {
        self.read(|c| {
            let mut out = Vec::with_capacity(keys.len());
            for (host, shard) in keys {
                out.push(c.query_opt(
                    &format!("SELECT {COLUMNS} FROM reservations WHERE host = ?1 AND shard = ?2 AND caller = ?3 AND expires > ?4"),
                    params![host.0 as i64, &shard.as_bytes()[..], caller.0 as i64, now as i64],
                    |r| row(r, *host, *shard, caller),
                )?);
            }
            Ok(out)
        })
    }

    /// Uses up `caller`'s live reservations of these (host, shard) pairs: each is returned
    /// once and deleted; `None` where the caller holds none. For tests and the catalog
    /// benchmark: a commit uses them in the transaction that records its pack
    /// ([`Store::commit_placed_pack`]), or one that then failed would leave nothing to give back.
    #[cfg(any(test, feature = "bench"))]
    pub fn take_reservations(
        &self,
        caller: UserId,
        keys: &[(HostId, ShardId)],
        now: u64,
    ) -> Result<Vec<Option<Reservation>>, StoreError> {
        self.write(|tx| Ok(take(tx, caller, keys, now)?))
    }
}

/// [`Store::take_reservations`] in a transaction of the caller's, lapsed ones dropped first.
pub(super) fn take(
    tx: &Sql<'_>,
    caller: UserId,
    keys: &[(HostId, ShardId)],
    now: u64,
) -> Result<Vec<Option<Reservation>>, SqlError> {
    lapse(tx, now)?;
    let mut out = Vec::with_capacity(keys.len());
    for (host, shard) in keys {
        out.push(tx.query_opt(
            &format!("DELETE FROM reservations WHERE host = ?1 AND shard = ?2 AND caller = ?3 RETURNING {COLUMNS}"),
            params![host.0 as i64, &shard.as_bytes()[..], caller.0 as i64],
            |r| row(r, *host, *shard, caller),
        )?);
    }
    Ok(out)
}

/// The columns [`row`] reads, in its order.
const COLUMNS: &str = "owner, bytes, grant_hash, k, m, per_domain, expires, narrowed";

/// A reservation of (`host`, `shard`) by `caller` from a row of [`COLUMNS`].
fn row(r: &super::sql::Row, host: HostId, shard: ShardId, caller: UserId) -> Result<Reservation, SqlError> {
    Ok(Reservation {
        host,
        shard,
        caller,
        owner: UserId(r.get::<i64>(0)? as u64),
        bytes: r.get::<i64>(1)? as u64,
        grant: r.get::<[u8; 32]>(2)?,
        code: (r.get(3)?, r.get(4)?),
        per_domain: r.get::<i64>(5)? as usize,
        expires: r.get::<i64>(6)? as u64,
        narrowed: r.get::<i64>(7)? != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(host: u64, shard: u8, caller: u64, expires: u64) -> Reservation {
        Reservation {
            host: HostId(host),
            shard: ShardId::of(&[shard]),
            caller: UserId(caller),
            owner: UserId(caller),
            bytes: 100,
            grant: [shard; 32],
            code: (4, 2),
            per_domain: 1,
            expires,
            narrowed: false,
        }
    }

    crate::store::testing::conformance! {
        fn reservations_count_lapse_are_no_claim_and_are_used_once() {
            let (_dir, store) = crate::store::testing::catalog();
            let placed = store
                .reserve(UserId(1), UserId(1), 10, |seen| {
                    assert_eq!(*seen, Reserved::default());
                    Ok::<_, ()>((vec![r(1, 1, 1, 100), r(2, 2, 1, 100)], "placed"))
                })
                .expect("reserve");
            assert_eq!(placed, "placed");
            store
                .reserve(UserId(1), UserId(1), 20, |seen| {
                    assert_eq!((seen.caller, seen.owner, seen.by_host[&HostId(1)]), ((2, 200), 200, 100));
                    Ok::<_, ()>((vec![], ()))
                })
                .expect("look");
            // Another account may place the same shard on the same host: its reservation is its
            // own, and using it leaves the first account's in place.
            store.reserve(UserId(2), UserId(2), 30, |_| Ok::<_, ()>((vec![r(1, 1, 2, 100)], ()))).expect("no claim");
            let theirs = store.take_reservations(UserId(2), &[(HostId(1), ShardId::of(&[1]))], 35).expect("take");
            assert_eq!(theirs, vec![Some(r(1, 1, 2, 100))]);
            let refused = store.reserve(UserId(2), UserId(2), 30, |_| Err::<(Vec<Reservation>, ()), _>("no"));
            assert!(matches!(refused, Err(ReserveError::Refused("no"))));
            // Used once, by its caller only.
            let keys = [(HostId(1), ShardId::of(&[1])), (HostId(2), ShardId::of(&[2]))];
            assert_eq!(store.take_reservations(UserId(2), &keys, 40).expect("take"), vec![None, None]);
            let got = store.take_reservations(UserId(1), &keys, 40).expect("take");
            assert_eq!(got, vec![Some(r(1, 1, 1, 100)), Some(r(2, 2, 1, 100))]);
            assert_eq!(store.take_reservations(UserId(1), &keys, 40).expect("again"), vec![None, None]);
            // They lapse.
            store.reserve(UserId(1), UserId(1), 50, |_| Ok::<_, ()>((vec![r(3, 3, 1, 60)], ()))).expect("reserve");
            assert_eq!(store.reserved_by_host(59).expect("sum").get(&HostId(3)), Some(&100));
            assert!(store.reserved_by_host(60).expect("sum").is_empty());
        }
    }

    crate::store::testing::conformance! {
        fn abandoned_placements_are_the_callers_own_and_freed_only_where_nothing_needs_them() {
            let (_dir, store) = crate::store::testing::catalog();
            let key = |h: u64, s: u8| (HostId(h), ShardId::of(&[s]));
            let queued = |store: &Store| {
                let mut v: Vec<_> = store.abandoned(100).expect("abandoned").into_iter().map(|(h, s, g, _)| (h, s, g[0])).collect();
                v.sort();
                v
            };
            // Alice places shard 1 on host 1 and shard 2 on host 2; eve places shard 1 on host 1 too.
            store.reserve(UserId(1), UserId(1), 10, |_| Ok::<_, ()>((vec![r(1, 1, 1, 100), r(2, 2, 1, 100)], ()))).expect("alice");
            let mut eves = r(1, 1, 2, 100);
            eves.grant = [9; 32];
            store.reserve(UserId(2), UserId(2), 10, |_| Ok::<_, ()>((vec![eves.clone()], ()))).expect("eve");
            // Eve naming alice's placements drops nothing and queues nothing.
            assert_eq!(store.abandon(UserId(2), &[key(2, 2)], 20).expect("abandon"), 0);
            assert!(queued(&store).is_empty());
            // Eve's own is dropped, but alice's placement of the same pair keeps the copy.
            assert_eq!(store.abandon(UserId(2), &[key(1, 1), key(2, 2)], 20).expect("abandon"), 1);
            assert!(queued(&store).is_empty());
            assert_eq!(store.take_reservations(UserId(2), &[key(1, 1)], 20).expect("take"), vec![None]);
            // Alice gives back shard 2: nothing else needs it, so its upload is queued.
            assert_eq!(store.abandon(UserId(1), &[key(2, 2)], 20).expect("abandon"), 1);
            assert_eq!(queued(&store), [(HostId(2), ShardId::of(&[2]), 2)]);
            // Alice's placement of shard 1 lapses (a killed client): queued once the deleter looks.
            store.lapse_reservations(99).expect("not yet");
            assert_eq!(queued(&store).len(), 1);
            store.lapse_reservations(100).expect("lapse");
            assert_eq!(queued(&store), [(HostId(1), ShardId::of(&[1]), 1), (HostId(2), ShardId::of(&[2]), 2)]);
            store.abandoned_done(HostId(2), &ShardId::of(&[2]), &[2; 32], None, 120).expect("done");
            assert_eq!(queued(&store), [(HostId(1), ShardId::of(&[1]), 1)]);
        }
    }

    #[test]
    fn a_version_7_catalog_keeps_its_reservations() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("c.db");
        drop(Store::open(&path).expect("open"));
        // The version 7 table: one reservation per (host, shard).
        let conn = rusqlite::Connection::open(&path).expect("sqlite");
        conn.execute_batch(
            "DROP TABLE reservations;
             CREATE TABLE reservations (host INTEGER NOT NULL, shard BLOB NOT NULL, caller INTEGER NOT NULL,
                 owner INTEGER NOT NULL, bytes INTEGER NOT NULL, grant_hash BLOB NOT NULL, k INTEGER NOT NULL,
                 m INTEGER NOT NULL, per_domain INTEGER NOT NULL, expires INTEGER NOT NULL,
                 PRIMARY KEY (host, shard));
             CREATE INDEX reservations_by_caller ON reservations(caller);
             UPDATE meta SET value = '7' WHERE key = 'schema';",
        )
        .expect("downgrade");
        let old = r(1, 1, 1, 100);
        conn.execute(
            "INSERT INTO reservations VALUES (1, ?1, 1, 1, 100, ?2, 4, 2, 1, 100)",
            rusqlite::params![&old.shard.as_bytes()[..], &old.grant[..]],
        )
        .expect("row");
        drop(conn);
        let store = Store::open(&path).expect("migrates");
        store.reserve(UserId(2), UserId(2), 10, |_| Ok::<_, ()>((vec![r(1, 1, 2, 100)], ()))).expect("no claim");
        let key = [(HostId(1), ShardId::of(&[1]))];
        assert_eq!(store.take_reservations(UserId(1), &key, 20).expect("take"), vec![Some(old)]);
        assert_eq!(store.take_reservations(UserId(2), &key, 20).expect("take"), vec![Some(r(1, 1, 2, 100))]);
    }
}
