//! Object lock and expiry in the catalog: `holds` (one row per locked or expiring snapshot
//! or object version) and `lock_limits` (an admin's maxima and default lock per user).
//!
//! Snapshot records and object names are sealed by the client, so locks live here, in the
//! coordinator's own rows, and are checked inside every transaction that would remove what
//! they hold (see [`locked`]). Chunks are removed only when nothing references them, and a
//! locked snapshot or object keeps referencing its chunks until its lock ends; a repack may
//! not move a chunk a lock holds (the coordinator cannot check the new copy's content, so a
//! client could swap garbage in), so locked chunks stay in the packs they were stored in.

use scatter_core::UserId;
use scatter_proto::api::{Hold, LockEntry, LockLimits, LockMode, LockTarget};

use super::sql::{Sql, SqlError};
use super::{release_packs, Store, StoreError};
use crate::lock::{self, Lock, Refusal};

/// The tables of object lock and expiry (schema version 15; `kept_chunks`, new in version 23's
/// catalogs, is made at the next start): created by [`super::SCHEMA`]'s companion in
/// `Store::init` and by migration 14.
pub(super) const TABLES: &str = "
CREATE TABLE IF NOT EXISTS holds (
    target TEXT NOT NULL,
    id TEXT NOT NULL,
    user INTEGER NOT NULL,
    mode TEXT,
    lock_until INTEGER,
    expires INTEGER,
    PRIMARY KEY (target, id)
);
CREATE INDEX IF NOT EXISTS holds_by_user ON holds(user);
CREATE INDEX IF NOT EXISTS holds_by_expiry ON holds(expires);
-- The copy a lock held of a chunk whose id was taken over by another copy (an untrusted
-- delegate's chunk gives way to its owner's, see `record_pack`), kept with its pack until no
-- lock in force holds the chunk through a snapshot or object committed before the takeover
-- (snapshots up to `snapshots_upto` in `seq`, objects up to `objects_upto` in `id`): later
-- ones read the copy that took the id over. Locates return it for readers to fall back on.
CREATE TABLE IF NOT EXISTS kept_chunks (
    user INTEGER NOT NULL,
    id BLOB NOT NULL,
    pack BLOB NOT NULL REFERENCES packs(id),
    off INTEGER NOT NULL,
    len INTEGER NOT NULL,
    snapshots_upto INTEGER NOT NULL,
    objects_upto INTEGER NOT NULL,
    PRIMARY KEY (user, id, pack)
);
CREATE INDEX IF NOT EXISTS kept_chunks_by_pack ON kept_chunks(pack);
CREATE TABLE IF NOT EXISTS lock_limits (
    user INTEGER PRIMARY KEY,
    max_lock INTEGER,
    max_delegate_lock INTEGER,
    default_lock INTEGER,
    default_mode TEXT
);
";

/// A hold row's `mode` and `lock_until`.
type LockColumns = (Option<String>, Option<i64>);

/// `holds.target` of a snapshot.
const SNAPSHOT: &str = "snapshot";
/// `holds.target` of an object version (`holds.id` is its `objects.id` as text).
const OBJECT: &str = "object";

fn target_name(t: LockTarget) -> &'static str {
    match t {
        LockTarget::Snapshot => SNAPSHOT,
        LockTarget::Object => OBJECT,
    }
}

/// A hold row's lock.
fn lock_of(mode: Option<String>, until: Option<i64>) -> Option<Lock> {
    Some(Lock { mode: LockMode::parse(&mode?)?, until: until? as u64 })
}

/// Records the lock and expiry of a snapshot or object version just committed, in the
/// commit's transaction.
pub(super) fn record(
    tx: &Sql<'_>,
    target: LockTarget,
    id: &str,
    user: UserId,
    lock: Option<Lock>,
    expires: Option<u64>,
) -> Result<(), SqlError> {
    if lock.is_none() && expires.is_none() {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO holds (target, id, user, mode, lock_until, expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (target, id) DO UPDATE SET mode = excluded.mode, lock_until = excluded.lock_until,
                                                expires = excluded.expires",
        params![
            target_name(target),
            id,
            user.0 as i64,
            lock.map(|l| l.mode.as_str()),
            lock.map(|l| l.until as i64),
            expires.map(|e| e as i64)
        ],
    )?;
    Ok(())
}

/// Fails with [`StoreError::Locked`] if a lock in force at `now` holds the snapshot or object
/// version `id`; `what` names it in the message.
pub(super) fn check(tx: &Sql<'_>, target: LockTarget, id: &str, what: &str, now: u64) -> Result<(), StoreError> {
    let row: Option<(Option<String>, Option<i64>)> = tx.query_opt(
        "SELECT mode, lock_until FROM holds WHERE target = ?1 AND id = ?2",
        params![target_name(target), id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let lock = row.and_then(|(m, u)| lock_of(m, u));
    lock::may_remove(lock, now).map_err(|refusal| StoreError::Locked { what: what.to_owned(), refusal })
}

/// Fails if any version of object `name` of `user` is locked at `now`.
pub(super) fn check_object(tx: &Sql<'_>, user: UserId, name: &str, now: u64) -> Result<(), StoreError> {
    let ids: Vec<i64> =
        tx.query_map("SELECT id FROM objects WHERE user = ?1 AND name = ?2", params![user.0 as i64, name], |r| {
            r.get(0)
        })?;
    for id in ids {
        check(tx, LockTarget::Object, &id.to_string(), "this object", now)?;
    }
    Ok(())
}

/// A condition on `chunks` (aliased `c`, parameter `?{now}` the time): the chunk is
/// referenced by a snapshot or object version whose lock is in force.
pub(super) fn locked_chunk(now: &str) -> String {
    format!(
        "(EXISTS (SELECT 1 FROM ref_set_chunks rc JOIN snapshot_sets ss ON ss.user = rc.user AND ss.ref_set = rc.ref_set
                  JOIN holds h ON h.target = 'snapshot' AND h.id = ss.snapshot
                  WHERE rc.user = c.user AND rc.chunk = c.id AND h.mode IS NOT NULL AND h.lock_until > {now})
          OR EXISTS (SELECT 1 FROM object_chunks oc JOIN holds h ON h.target = 'object' AND h.id = CAST(oc.object AS TEXT)
                  WHERE oc.user = c.user AND oc.chunk = c.id AND h.mode IS NOT NULL AND h.lock_until > {now}))"
    )
}

/// A condition on `kept_chunks` (parameter `?{now}` the time): a lock in force holds the kept
/// copy, through a snapshot or object version committed before the copy was taken over.
pub(super) fn kept_copy_held(now: &str) -> String {
    format!(
        "(EXISTS (SELECT 1 FROM ref_set_chunks rc JOIN snapshot_sets ss ON ss.user = rc.user AND ss.ref_set = rc.ref_set
                  JOIN snapshots sn ON sn.id = ss.snapshot
                  JOIN holds h ON h.target = 'snapshot' AND h.id = ss.snapshot
                  WHERE rc.user = kept_chunks.user AND rc.chunk = kept_chunks.id AND sn.seq <= kept_chunks.snapshots_upto
                    AND h.mode IS NOT NULL AND h.lock_until > {now})
          OR EXISTS (SELECT 1 FROM object_chunks oc JOIN holds h ON h.target = 'object' AND h.id = CAST(oc.object AS TEXT)
                  WHERE oc.user = kept_chunks.user AND oc.chunk = kept_chunks.id AND oc.object <= kept_chunks.objects_upto
                    AND h.mode IS NOT NULL AND h.lock_until > {now}))"
    )
}

/// Fails if chunk `id` of `user` is held by a lock in force: a repack may not move it.
pub(super) fn check_chunk(tx: &Sql<'_>, user: i64, id: &[u8], now: u64) -> Result<(), StoreError> {
    let until: Option<(String, i64)> = tx.query_opt(
        "SELECT h.mode, h.lock_until FROM holds h
         WHERE h.mode IS NOT NULL AND h.lock_until > ?3 AND (
             (h.target = 'snapshot' AND h.id IN (SELECT ss.snapshot FROM ref_set_chunks rc
                  JOIN snapshot_sets ss ON ss.user = rc.user AND ss.ref_set = rc.ref_set WHERE rc.user = ?1 AND rc.chunk = ?2))
          OR (h.target = 'object' AND h.id IN (SELECT CAST(object AS TEXT) FROM object_chunks WHERE user = ?1 AND chunk = ?2)))
         ORDER BY h.lock_until DESC LIMIT 1",
        params![user, id, now as i64],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    match until.and_then(|(m, u)| lock_of(Some(m), Some(u))) {
        Some(l) => Err(StoreError::Locked { what: "a chunk this repack moves".into(), refusal: Refusal::Locked(l) }),
        None => Ok(()),
    }
}

/// Drops the hold of a removed snapshot or object version.
pub(super) fn forget(tx: &Sql<'_>, target: LockTarget, id: &str) -> Result<(), SqlError> {
    tx.execute("DELETE FROM holds WHERE target = ?1 AND id = ?2", params![target_name(target), id])?;
    Ok(())
}

/// Drops the chunks among `chunks` that nothing references any more and releases the packs
/// left empty; returns how many packs.
pub(super) fn drop_unreferenced(tx: &Sql<'_>, user: UserId, chunks: Vec<Vec<u8>>, now: u64) -> Result<u64, SqlError> {
    let u = user.0 as i64;
    let mut emptied = std::collections::BTreeSet::new();
    let mut rows = 0;
    for chunk in chunks {
        let packs: Vec<Vec<u8>> = tx.query_map(
            &format!("DELETE FROM chunks WHERE id = ?3 AND {} RETURNING pack", super::backup::UNREFERENCED),
            params![u, now as i64, chunk],
            |r| r.get(0),
        )?;
        rows += packs.len() as i64;
        emptied.extend(packs);
    }
    super::catalog_bytes(tx, u, "", -rows * super::CHUNK_ROW_BYTES as i64)?;
    let mut released = 0;
    for pack in emptied {
        released += release_packs(
            tx,
            "id = ?1 AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.pack = packs.id)",
            params![pack],
            now,
        )?;
    }
    Ok(released)
}

/// What an expiry pass removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expired {
    /// Snapshots removed.
    pub snapshots: u64,
    /// Object versions removed.
    pub objects: u64,
    /// Packs released for deletion from hosts.
    pub packs_released: u64,
}

impl Store {
    /// The lock maxima and default lock of `user` (an owner), the grid's defaults where an
    /// admin set none.
    pub fn lock_limits(&self, user: UserId) -> Result<LockLimits, StoreError> {
        self.read(|c| limits(c, user))
    }

    /// Sets the lock maxima and default lock of `user` (`None` leaves one as it is; 0 goes
    /// back to the grid's default). False if there is no such user.
    pub fn set_lock_limits(
        &self,
        user: UserId,
        max_lock: Option<u64>,
        max_delegate_lock: Option<u64>,
        default_lock: Option<u64>,
        default_mode: Option<LockMode>,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            let u = user.0 as i64;
            if !tx.exists("SELECT 1 FROM users WHERE id = ?1", params![u])? {
                return Ok(false);
            }
            tx.execute("INSERT INTO lock_limits (user) VALUES (?1) ON CONFLICT (user) DO NOTHING", params![u])?;
            let zero_is_none = |v: Option<u64>| v.map(|v| (v > 0).then_some(v as i64));
            for (column, value) in [
                ("max_lock", zero_is_none(max_lock)),
                ("max_delegate_lock", zero_is_none(max_delegate_lock)),
                ("default_lock", zero_is_none(default_lock)),
            ] {
                if let Some(v) = value {
                    tx.execute(&format!("UPDATE lock_limits SET {column} = ?2 WHERE user = ?1"), params![u, v])?;
                }
            }
            if let Some(mode) = default_mode {
                tx.execute("UPDATE lock_limits SET default_mode = ?2 WHERE user = ?1", params![u, mode.as_str()])?;
            }
            Ok(true)
        })
    }

    /// The holds of `user`'s snapshots, by snapshot id.
    pub fn snapshot_holds(&self, user: UserId) -> Result<std::collections::HashMap<String, Hold>, StoreError> {
        self.read(|c| {
            let rows: Vec<(String, Hold)> = c.query_map(
                "SELECT id, mode, lock_until, expires FROM holds WHERE user = ?1 AND target = 'snapshot'",
                params![user.0 as i64],
                |r| Ok((r.get(0)?, hold(r.get(1)?, r.get(2)?, r.get(3)?))),
            )?;
            Ok(rows.into_iter().collect())
        })
    }

    /// The holds of `user`'s objects, by encrypted name: the latest-ending lock over its
    /// versions and the latest version's expiry.
    pub fn object_holds(&self, user: UserId) -> Result<std::collections::HashMap<String, Hold>, StoreError> {
        self.read(|c| {
            let rows: Vec<(String, i64, Hold)> = c.query_map(
                "SELECT o.name, o.version, h.mode, h.lock_until, h.expires
                 FROM holds h JOIN objects o ON h.target = 'object' AND h.id = CAST(o.id AS TEXT)
                 WHERE h.user = ?1 AND o.user = ?1 ORDER BY o.name, o.version",
                params![user.0 as i64],
                |r| Ok((r.get(0)?, r.get(1)?, hold(r.get(2)?, r.get(3)?, r.get(4)?))),
            )?;
            let mut out: std::collections::HashMap<String, Hold> = std::collections::HashMap::new();
            for (name, _, h) in rows {
                let e = out.entry(name).or_default();
                if h.lock_until > e.lock_until {
                    (e.mode, e.lock_until) = (h.mode, h.lock_until);
                }
                e.expires = h.expires;
            }
            Ok(out)
        })
    }

    /// Every version of `user`'s object `name`, oldest first, each with its own lock and
    /// expiry (a lock keeps a version a later put left behind).
    pub fn object_versions(&self, user: UserId, name: &str) -> Result<Vec<(super::ObjectRow, Hold)>, StoreError> {
        self.read(|c| {
            Ok(c.query_map(
                "SELECT o.name, o.version, o.session, NULL, o.size, o.created, o.meta, h.mode, h.lock_until, h.expires
                 FROM objects o LEFT JOIN holds h ON h.target = 'object' AND h.id = CAST(o.id AS TEXT)
                 WHERE o.user = ?1 AND o.name = ?2 ORDER BY o.version",
                params![user.0 as i64, name],
                |r| Ok((super::object_row(r)?, hold(r.get(7)?, r.get(8)?, r.get(9)?))),
            )?)
        })
    }

    /// Every hold (of `user`, when given), for `scatter admin lock ls`.
    pub fn holds(&self, user: Option<UserId>) -> Result<Vec<LockEntry>, StoreError> {
        self.read(|c| {
            let rows = c.query_map(
                "SELECT user, target, id, mode, lock_until, expires FROM holds
                 WHERE ?1 = 0 OR user = ?1 ORDER BY user, target, id",
                params![user.map_or(0, |u| u.0 as i64)],
                |r| {
                    let target: String = r.get(1)?;
                    Ok(LockEntry {
                        user: UserId(r.get::<i64>(0)? as u64),
                        target: if target == SNAPSHOT { LockTarget::Snapshot } else { LockTarget::Object },
                        id: r.get(2)?,
                        hold: hold(r.get(3)?, r.get(4)?, r.get(5)?),
                    })
                },
            )?;
            Ok(rows)
        })
    }

    /// Lifts the lock on a snapshot or object version (its expiry stays), as an admin:
    /// allowed for a governance lock, refused for a compliance lock in force. Returns the
    /// owner and the lock lifted, `None` if it has no lock.
    pub fn lift_lock(
        &self,
        target: LockTarget,
        id: &str,
        now: u64,
    ) -> Result<Option<(UserId, Option<Lock>)>, StoreError> {
        self.write(|tx| {
            let row: Option<(i64, Option<String>, Option<i64>)> = tx.query_opt(
                "SELECT user, mode, lock_until FROM holds WHERE target = ?1 AND id = ?2",
                params![target_name(target), id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let Some((user, mode, until)) = row else { return Ok(None) };
            let old = lock_of(mode, until);
            lock::may_change(old, None, true, now)
                .map_err(|refusal| StoreError::Locked { what: format!("{target:?} {id}").to_lowercase(), refusal })?;
            tx.execute(
                "UPDATE holds SET mode = NULL, lock_until = NULL WHERE target = ?1 AND id = ?2",
                params![target_name(target), id],
            )?;
            Ok(Some((UserId(user as u64), old)))
        })
    }

    /// Extends the lock of one of `user`'s snapshots to `until` in `mode` (never shortens
    /// or weakens it: see [`lock::may_change`]). With `keep_mode` (no mode was asked for), a
    /// compliance lock in force stays compliance. False if it has no such snapshot.
    pub fn extend_lock(
        &self,
        user: UserId,
        snapshot: &str,
        mut new: Lock,
        keep_mode: bool,
        now: u64,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            if !tx.exists("SELECT 1 FROM snapshots WHERE id = ?1 AND user = ?2", params![snapshot, user.0 as i64])? {
                return Ok(false);
            }
            let row: Option<(Option<String>, Option<i64>, Option<i64>)> = tx.query_opt(
                "SELECT mode, lock_until, expires FROM holds WHERE target = 'snapshot' AND id = ?1",
                params![snapshot],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let (old, expires) = row.map(|(m, u, e)| (lock_of(m, u), e.map(|e| e as u64))).unwrap_or((None, None));
            if keep_mode && old.is_some_and(|o| o.holds_at(now) && o.mode == LockMode::Compliance) {
                new.mode = LockMode::Compliance;
            }
            lock::may_change(old, Some(new), false, now)
                .map_err(|refusal| StoreError::Locked { what: format!("snapshot {snapshot}"), refusal })?;
            // An expiry before the new end waits for it.
            let expires = expires.map(|e| e.max(new.until));
            record(tx, LockTarget::Snapshot, snapshot, user, Some(new), expires)?;
            Ok(true)
        })
    }

    /// Removes snapshots and object versions whose expiry passed and whose lock (if any)
    /// ended, with what only they referenced (packs left empty are released for the
    /// deleter). At most `limit` of them per call; fenced by the deleter's lease.
    pub fn expire(&self, now: u64, limit: usize, fence: Option<&super::Fence>) -> Result<Expired, StoreError> {
        self.write(|tx| {
            super::leases::check(tx, fence, now)?;
            let due: Vec<(String, String, i64, LockColumns)> = tx.query_map(
                "SELECT target, id, user, mode, lock_until FROM holds
                 WHERE expires IS NOT NULL AND expires <= ?1 AND (mode IS NULL OR lock_until <= ?1)
                 ORDER BY expires LIMIT ?2",
                params![now as i64, limit as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, (r.get(3)?, r.get(4)?))),
            )?;
            let mut done = Expired::default();
            for (target, id, user, (mode, until)) in due {
                if !lock::due(lock_of(mode, until), Some(0), now) {
                    continue;
                }
                let user = UserId(user as u64);
                let chunks: Vec<Vec<u8>> = if target == SNAPSHOT {
                    let chunks = super::backup::snapshot_chunks(tx, &id)?;
                    done.snapshots += super::backup::drop_snapshot(tx, user.0 as i64, &id)?;
                    forget(tx, LockTarget::Snapshot, &id)?;
                    chunks
                } else {
                    let object: i64 = id.parse().unwrap_or(-1);
                    super::forget_object_bytes(tx, object)?;
                    let chunks =
                        tx.query_map("SELECT chunk FROM object_chunks WHERE object = ?1", params![object], |r| {
                            r.get(0)
                        })?;
                    tx.execute("DELETE FROM object_chunks WHERE object = ?1", params![object])?;
                    done.objects += tx.execute("DELETE FROM objects WHERE id = ?1", params![object])? as u64;
                    forget(tx, LockTarget::Object, &id)?;
                    chunks
                };
                done.packs_released += drop_unreferenced(tx, user, chunks, now)?;
            }
            Ok(done)
        })
    }
}

/// A hold as listed.
fn hold(mode: Option<String>, until: Option<i64>, expires: Option<i64>) -> Hold {
    let lock = lock_of(mode, until);
    Hold { mode: lock.map(|l| l.mode), lock_until: lock.map(|l| l.until), expires: expires.map(|e| e as u64) }
}

/// The limits of `user`, in a transaction.
pub(super) fn limits(c: &Sql<'_>, user: UserId) -> Result<LockLimits, StoreError> {
    #[allow(clippy::type_complexity)]
    let row: Option<(Option<i64>, Option<i64>, Option<i64>, Option<String>)> = c.query_opt(
        "SELECT max_lock, max_delegate_lock, default_lock, default_mode FROM lock_limits WHERE user = ?1",
        params![user.0 as i64],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let d = LockLimits::default();
    let Some((max, max_delegate, default, mode)) = row else { return Ok(d) };
    Ok(LockLimits {
        max_lock: max.map_or(d.max_lock, |v| v as u64),
        max_delegate_lock: max_delegate.map_or(d.max_delegate_lock, |v| v as u64),
        default_lock: default.map_or(0, |v| v as u64),
        default_mode: mode.as_deref().and_then(LockMode::parse).unwrap_or(d.default_mode),
    })
}

/// The latest-ending lock in force on `user`'s data at `now`, if any: a user is not removed
/// while one holds.
pub(super) fn latest_lock(tx: &Sql<'_>, user: UserId, now: u64) -> Result<Option<Lock>, SqlError> {
    let row: Option<(Option<String>, Option<i64>)> = tx.query_opt(
        "SELECT mode, lock_until FROM holds WHERE user = ?1 AND mode IS NOT NULL AND lock_until > ?2
         ORDER BY lock_until DESC LIMIT 1",
        params![user.0 as i64, now as i64],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(row.and_then(|(m, u)| lock_of(m, u)))
}

#[cfg(test)]
mod tests {
    use scatter_core::{ChunkId, HostId, PackId, ShardId};
    use scatter_proto::api::{ChunkEntry, Role, StoredShard};

    use super::*;
    use crate::store::{NewObject, NewPack};

    const C: LockMode = LockMode::Compliance;
    const G: LockMode = LockMode::Governance;

    fn setup() -> (crate::store::testing::Guard, Store, UserId, HostId) {
        let (dir, store) = crate::store::testing::catalog();
        store.add_token(&[1; 32], "ann", Role::User, None, None).expect("token");
        let user = store.redeem_token(&[1; 32], "pk", &[2; 32], "", 0).expect("redeem").expect("user").id;
        let host = store.add_host(&[3; 32], "http://127.0.0.1:1", "z", 1 << 30, None, 0).expect("host");
        (dir, store, user, host)
    }

    fn id(b: u8) -> ChunkId {
        ChunkId::from_bytes([b; 32])
    }

    /// Commits pack `n` (100 bytes) holding chunks `ids` of 10 bytes each.
    #[allow(clippy::too_many_arguments)]
    fn pack(
        store: &Store,
        user: UserId,
        host: HostId,
        session: u64,
        n: u8,
        ids: &[u8],
        relocate: bool,
        now: u64,
    ) -> Result<(), StoreError> {
        let chunks: Vec<ChunkEntry> =
            ids.iter().enumerate().map(|(i, b)| ChunkEntry { id: id(*b), offset: i as u64 * 10, len: 10 }).collect();
        let receipt = scatter_proto::SignedReceipt(String::new());
        let shards = [StoredShard { index: 0, shard: ShardId::from_bytes([n; 32]), host, receipt }];
        store.commit_pack(
            &NewPack {
                id: PackId::from_bytes([n; 32]),
                user,
                session,
                size: 100,
                k: 1,
                m: 0,
                shard_size: 128,
                shards: &shards,
                chunks: &chunks,
                relocate,
            },
            now,
        )
    }

    fn locked(r: Result<impl std::fmt::Debug, StoreError>) -> bool {
        matches!(r, Err(StoreError::Locked { .. }))
    }

    crate::store::testing::conformance! {
        fn a_lock_keeps_snapshots_objects_and_their_chunks_until_it_ends() {
            let (_d, store, user, host) = setup();
            let s = store.add_session(user, b"k", 1, 1000).expect("session");
            pack(&store, user, host, s, 1, &[1, 2, 3, 4, 5, 6, 7], false, 1).expect("pack");
            store.add_session_refs(user, user, s, &[id(1), id(2)], 2).expect("refs");
            store.commit_snapshot_held(user, user, s, "snap", b"r", (Some(Lock { mode: C, until: 100 }), None), 3).expect("commit");
            let o = store.add_session(user, b"k", 3, 1000).expect("session");
            store.commit_object_held(user, &NewObject { name: "obj", session: o, manifest: b"m", meta: None, size: 10, chunks: &[id(3)], if_attributes: None }, false, false, (Some(Lock { mode: G, until: 50 }), None), 4).expect("object");
            // Removal by any path is refused while the locks hold.
            assert!(locked(store.forget(user, &["snap".into()], 10)));
            assert!(locked(store.replace_snapshot_record(user, "snap", b"x", 10)));
            assert!(locked(store.remove_object(user, "obj", 10)));
            let overwrite = NewObject { name: "obj", session: o, manifest: b"m", meta: None, size: 10, chunks: &[id(3)], if_attributes: None };
            assert!(locked(store.commit_object_held(user, &overwrite, false, true, (None, None), 10)), "an overwrite removes");
            assert!(locked(store.remove_user(user, 10)));
            // A prune frees what is free (4..7 are unreferenced) but offers no pack holding a
            // locked chunk for repacking, and a repack may not move one.
            let (swept, candidates) = store.prune(user, 0, 20, 20 + 3600).expect("prune");
            assert_eq!(swept.chunks_removed, 4);
            assert!(candidates.is_empty(), "{candidates:?}");
            store.conn().execute(
                "INSERT INTO relocations (user, chunk, expires) VALUES (?1, ?2, 9999)",
                params![user.0 as i64, &id(1).as_bytes()[..]],
            ).expect("plant a relocation");
            let r = store.add_session(user, b"k", 20, 1000).expect("session");
            assert!(locked(pack(&store, user, host, r, 2, &[1], true, 21)), "a locked chunk is not moved");
            // An admin lifts governance, never compliance.
            assert!(locked(store.lift_lock(LockTarget::Snapshot, "snap", 30)));
            let obj_id = store.holds(Some(user)).expect("holds").into_iter().find(|h| h.target == LockTarget::Object).expect("object hold").id;
            let (owner, was) = store.lift_lock(LockTarget::Object, &obj_id, 30).expect("lift").expect("held");
            assert_eq!((owner, was), (user, Some(Lock { mode: G, until: 50 })));
            assert_eq!(store.remove_object(user, "obj", 31).expect("rm").0, 1);
            // Extending is allowed; shortening is not.
            assert!(locked(store.extend_lock(user, "snap", Lock { mode: C, until: 90 }, false, 40)));
            assert!(store.extend_lock(user, "snap", Lock { mode: C, until: 120 }, false, 40).expect("extend"));
            // Asked without a mode, an extension keeps compliance (it was refused as weakening).
            assert!(store.extend_lock(user, "snap", Lock { mode: G, until: 120 }, true, 40).expect("extend"));
            assert!(locked(store.extend_lock(user, "snap", Lock { mode: G, until: 120 }, false, 40)));
            assert!(locked(store.forget(user, &["snap".into()], 110)));
            // Once it ends: forgotten, pruned, and the user may go.
            assert_eq!(store.forget(user, &["snap".into()], 120).expect("forget"), 1);
            assert!(store.holds(Some(user)).expect("holds").is_empty());
            assert!(store.remove_user(user, 121).expect("remove"));
        }
    }

    crate::store::testing::conformance! {
        fn expiry_removes_what_is_due_keeps_shared_chunks_and_waits_for_locks() {
            let (_d, store, user, host) = setup();
            let s = store.add_session(user, b"k", 1, 10).expect("session");
            pack(&store, user, host, s, 1, &[1, 2], false, 1).expect("pack");
            pack(&store, user, host, s, 2, &[3], false, 1).expect("pack");
            store.commit_object(user, "kept", s, b"m", 10, &[id(1)], false, 2).expect("kept");
            store.commit_object_held(user, &NewObject { name: "shared", session: s, manifest: b"m", meta: None, size: 10, chunks: &[id(1), id(2)], if_attributes: None }, false, false, (None, Some(20)), 2).expect("shared");
            store.commit_object_held(user, &NewObject { name: "own", session: s, manifest: b"m", meta: None, size: 10, chunks: &[id(3)], if_attributes: None }, false, false, (Some(Lock { mode: C, until: 40 }), Some(30)), 2).expect("own");
            assert_eq!(store.expire(19, 10, None).expect("expire"), Expired::default());
            // `shared` goes; chunk 1 stays (`kept` holds it), chunk 2 goes, pack 1 stays.
            assert_eq!(store.expire(20, 10, None).expect("expire"), Expired { snapshots: 0, objects: 1, packs_released: 0 });
            let names: Vec<String> = store.list_objects(user, "").expect("ls").into_iter().map(|o| o.name).collect();
            assert_eq!(names, ["kept", "own"]);
            // `own` expired at 30 but is locked until 40.
            assert_eq!(store.expire(35, 10, None).expect("expire"), Expired::default());
            assert_eq!(store.expire(40, 10, None).expect("expire"), Expired { snapshots: 0, objects: 1, packs_released: 1 });
            assert_eq!(store.object_holds(user).expect("holds").len(), 0);
        }
    }

    #[test]
    fn locks_and_limits_travel_in_catalog_backups_and_exports() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("c.db")).expect("open");
        store.add_token(&[1; 32], "ann", Role::User, None, None).expect("token");
        let user = store.redeem_token(&[1; 32], "pk", &[2; 32], "", 0).expect("redeem").expect("user").id;
        let s = store.add_session(user, b"k", 1, 1000).expect("session");
        let lock = Some(Lock { mode: C, until: 100 });
        store.commit_snapshot_held(user, user, s, "snap", b"r", (lock, Some(200)), 2).expect("commit");
        store.set_lock_limits(user, Some(3600), None, None, None).expect("limits");
        // A catalog backup is a copy of the whole SQLite file.
        let copy = dir.path().join("backup.db");
        assert!(store.snapshot_into(&copy).expect("backup"));
        let restored = Store::open(&copy).expect("open the backup");
        assert!(locked(restored.forget(user, &["snap".into()], 50)));
        assert_eq!(restored.lock_limits(user).expect("limits").max_lock, 3600);
        // So is `scatter catalog export`/`import`.
        let mut out = Vec::new();
        store.export(&mut out).expect("export");
        let imported = Store::open(&dir.path().join("imported.db")).expect("open");
        imported.import(&mut &out[..]).expect("import");
        let holds = imported.snapshot_holds(user).expect("holds");
        assert_eq!(holds["snap"], Hold { mode: Some(C), lock_until: Some(100), expires: Some(200) });
        assert_eq!(imported.lock_limits(user).expect("limits").max_lock, 3600);
    }

    crate::store::testing::conformance! {
        fn lock_limits_default_and_are_set_per_user() {
            let (_d, store, user, _host) = setup();
            assert_eq!(store.lock_limits(user).expect("limits"), LockLimits::default());
            assert!(store.set_lock_limits(user, Some(3600), None, Some(60), Some(C)).expect("set"));
            let l = store.lock_limits(user).expect("limits");
            assert_eq!((l.max_lock, l.max_delegate_lock, l.default_lock, l.default_mode), (3600, LockLimits::default().max_delegate_lock, 60, C));
            assert!(store.set_lock_limits(user, Some(0), Some(600), Some(0), None).expect("set"));
            let l = store.lock_limits(user).expect("limits");
            assert_eq!((l.max_lock, l.max_delegate_lock, l.default_lock), (LockLimits::default().max_lock, 600, 0));
            assert!(!store.set_lock_limits(UserId(99), Some(1), None, None, None).expect("no such user"));
        }
    }
}
