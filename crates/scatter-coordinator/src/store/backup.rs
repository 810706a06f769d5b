//! Sessions as leases, snapshots and their chunk references, and the sweep that frees what
//! nothing references.
//!
//! The coordinator cannot read snapshots, so a backup tells it which chunks a snapshot
//! references (in batches, against its session, checked to exist) and the commit turns them
//! into the snapshot's references in one transaction. That makes freeing space a catalog
//! question: a chunk is garbage when no object, no snapshot and no open session references
//! it. An open session references the chunks it found through dedup (its lookups record the
//! hits), the ones it listed for its snapshot, and the ones in packs it committed; so a sweep
//! never waits for running writes, and a delegate renewing a session forever holds up
//! nothing but what that session itself uses.
//!
//! A session belongs to the account that opened it (`UserRow::me`: the owner, or one of its
//! delegates): no other account can renew, close or commit into it. A snapshot records its
//! writer the same way, at commit, from the caller's credential (never from the sealed
//! record, which the writer chooses).

use scatter_core::{ChunkId, PackId, UserId};

use scatter_proto::api::LockTarget;

use super::sql::{Sql, SqlError, Value};
use super::{Store, StoreError};

/// A snapshot id's first 8 digits, for messages.
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// A stored snapshot, still sealed.
#[derive(Debug, Clone)]
pub struct SnapshotRow {
    /// Random id.
    pub id: String,
    /// Unix time of the commit.
    pub created: u64,
    /// Sealing session.
    pub session: u64,
    /// That session's wrapped key.
    pub wrapped_key: Vec<u8>,
    /// Sealed record.
    pub record: Vec<u8>,
    /// Distinct chunks referenced.
    pub chunks: u64,
    /// Who committed it: the owner, or a delegate (its own id).
    pub writer: UserId,
    /// The writer's name, for listings.
    pub writer_name: String,
    /// Whether it counts as the owner's own: the owner wrote it, or a delegate the owner
    /// trusts.
    pub trusted: bool,
}

/// A reader or appender of a user's data, as its owner sees it.
#[derive(Debug, Clone)]
pub struct DelegateRow {
    /// The delegate's own id.
    pub id: UserId,
    /// Its name.
    pub name: String,
    /// Reader or appender.
    pub role: scatter_proto::api::Role,
    /// Whether its requests are refused.
    pub disabled: bool,
    /// Whether the owner counts its snapshots as its own.
    pub trusted: bool,
}

/// What a sweep did.
#[derive(Debug, Clone, Default)]
pub struct Swept {
    /// Chunks dropped from the index.
    pub chunks_removed: u64,
    /// Their sealed bytes.
    pub bytes_removed: u64,
    /// Packs released for deletion.
    pub packs_released: u64,
}

/// Chunks of user `?1` that nothing references at time `?2`: no object or snapshot, no
/// reference an open session recorded, and not in a pack an open session committed.
pub(super) const UNREFERENCED: &str = "user = ?1
        AND NOT EXISTS (SELECT 1 FROM object_chunks oc WHERE oc.user = chunks.user AND oc.chunk = chunks.id)
        AND NOT EXISTS (SELECT 1 FROM ref_set_chunks rc WHERE rc.user = chunks.user AND rc.chunk = chunks.id)
        AND NOT EXISTS (SELECT 1 FROM session_refs sr JOIN sessions s ON s.id = sr.session
                        WHERE sr.user = chunks.user AND sr.chunk = chunks.id AND s.expires > ?2)
        AND NOT EXISTS (SELECT 1 FROM packs p JOIN sessions s ON s.id = p.session
                        WHERE p.id = chunks.pack AND s.expires > ?2)";

/// Drops the user's unreferenced chunks and releases packs left empty, inside `tx`.
///
/// What open sessions (of the user or of any delegate) may still reference is kept: their
/// recorded references (dedup hits and snapshot refs) and the chunks of packs they
/// committed. References of sessions that ended without a commit are dropped.
pub(super) fn sweep(tx: &Sql<'_>, user: UserId, now: u64) -> Result<Swept, StoreError> {
    let (u, now) = (user.0 as i64, now as i64);
    drop_session_refs(tx, "SELECT id FROM sessions WHERE user = ?1 AND expires <= ?2", params![u, now])?;
    let unreferenced = UNREFERENCED;
    let (count, bytes): (i64, i64) = tx.query_row(
        &format!("SELECT COUNT(*), CAST(COALESCE(SUM(len), 0) AS BIGINT) FROM chunks WHERE {unreferenced}"),
        params![u, now],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    tx.execute(&format!("DELETE FROM chunks WHERE {unreferenced}"), params![u, now])?;
    // Copies kept for locks that ended (or whose snapshots and objects went) go too.
    let kept = tx.execute(
        &format!("DELETE FROM kept_chunks WHERE user = ?1 AND NOT {}", super::locks::kept_copy_held("?2")),
        params![u, now],
    )? as i64;
    let rows = count.saturating_add(kept);
    super::catalog_bytes(tx, u, "", -rows.saturating_mul(super::CHUNK_ROW_BYTES as i64))?;
    let released = super::release_packs(
        tx,
        "user = ?1 AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.pack = packs.id)",
        params![u],
        now as u64,
    )?;
    Ok(Swept { chunks_removed: count as u64, bytes_removed: bytes as u64, packs_released: released })
}

/// The longest a write session stays open, however often it is kept alive: what an open
/// session references is kept through prunes, so a writer that kept one alive for ever would
/// keep data its owner deleted stored (and billed) for ever. A week covers any one backup.
pub const MAX_SESSION_AGE: u64 = 7 * 86_400;

/// Fails unless `session` is an open session on `user`'s data opened by `me`: with
/// [`StoreError::NotYourSession`] when another account opened it, else
/// [`StoreError::SessionClosed`].
fn require_open(tx: &Sql<'_>, user: UserId, me: UserId, session: u64, now: u64) -> Result<(), StoreError> {
    let row: Option<(i64, i64)> = tx.query_opt(
        "SELECT COALESCE(opener, user), expires FROM sessions WHERE id = ?1 AND user = ?2",
        params![session as i64, user.0 as i64],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    match row {
        Some((opener, _)) if opener != me.0 as i64 => Err(StoreError::NotYourSession),
        Some((_, expires)) if expires > now as i64 => Ok(()),
        _ => Err(StoreError::SessionClosed),
    }
}

impl Store {
    /// Extends an open session on `user`'s data opened by `me` until `expires`; fails if it
    /// already ended or another account opened it.
    pub fn keep_session(
        &self,
        user: UserId,
        me: UserId,
        session: u64,
        now: u64,
        expires: u64,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            require_open(tx, user, me, session, now)?;
            // No writer keeps a session, and what it references, stored for ever.
            let created: i64 =
                tx.query_row("SELECT created FROM sessions WHERE id = ?1", params![session as i64], |r| r.get(0))?;
            let last = (created.max(0) as u64).saturating_add(MAX_SESSION_AGE);
            if now >= last {
                return Err(StoreError::SessionAged { days: MAX_SESSION_AGE / 86_400 });
            }
            let expires = expires.min(last);
            tx.execute("UPDATE sessions SET expires = ?2 WHERE id = ?1", params![session as i64, expires as i64])?;
            Ok(())
        })
    }

    /// Ends a session opened by `me` (its key stays: packs sealed with it still need it);
    /// fails if another account opened it. Ending an ended session does nothing.
    pub fn close_session(&self, user: UserId, me: UserId, session: u64) -> Result<(), StoreError> {
        self.write(|tx| {
            match require_open(tx, user, me, session, 0) {
                Ok(()) | Err(StoreError::SessionClosed) => {}
                Err(e) => return Err(e),
            }
            let closed = tx.execute(
                "UPDATE sessions SET expires = 0 WHERE id = ?1 AND user = ?2 AND COALESCE(opener, user) = ?3",
                params![session as i64, user.0 as i64, me.0 as i64],
            )?;
            // What it recorded for a snapshot it did not commit, or for puts that committed
            // their objects, no longer keeps anything.
            if closed > 0 {
                drop_session_refs(tx, "SELECT id FROM sessions WHERE id = ?1", params![session as i64])?;
            }
            // A session closed with nothing stored under it is of no use to anyone: dropped,
            // or opening and closing sessions would grow the catalog by a key each time.
            forget_sessions(
                tx,
                "DELETE FROM sessions WHERE id = ?1 AND user = ?2 AND COALESCE(opener, user) = ?3
                     AND NOT EXISTS (SELECT 1 FROM packs WHERE session = ?1)
                     AND NOT EXISTS (SELECT 1 FROM objects WHERE session = ?1)
                     AND NOT EXISTS (SELECT 1 FROM snapshots WHERE session = ?1)
                     AND NOT EXISTS (SELECT 1 FROM session_refs WHERE session = ?1)",
                params![session as i64, user.0 as i64, me.0 as i64],
            )?;
            Ok(())
        })
    }

    /// Drops, among up to `limit` sessions after id `from`, those that ended (closed, or
    /// lapsed more than [`IDLE_SESSION_GRACE`] before `now`) with nothing stored or
    /// referenced under them: a session left to lapse keeps its wrapped key, so opening
    /// sessions and letting them lapse would otherwise grow the catalog without end. Returns
    /// how many went, and where the next call starts (0 once the end was reached).
    pub fn drop_idle_sessions(&self, from: u64, limit: usize, now: u64) -> Result<(u64, u64), StoreError> {
        self.write(|tx| {
            let window = "SELECT id FROM sessions WHERE id > ?1 ORDER BY id LIMIT ?2";
            let (seen, last): (i64, Option<i64>) = tx.query_row(
                &format!("SELECT COUNT(*), MAX(id) FROM ({window}) w"),
                params![from as i64, limit as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            // What lapsed sessions recorded keeps nothing any more (as a prune finds).
            drop_session_refs(
                tx,
                &format!("SELECT id FROM sessions WHERE id IN ({window}) AND expires <= ?3"),
                params![from as i64, limit as i64, now as i64],
            )?;
            let dropped = forget_sessions(
                tx,
                &format!(
                    "DELETE FROM sessions WHERE id IN ({window}) AND expires <= ?3
                         AND NOT EXISTS (SELECT 1 FROM packs WHERE session = sessions.id)
                         AND NOT EXISTS (SELECT 1 FROM objects WHERE session = sessions.id)
                         AND NOT EXISTS (SELECT 1 FROM snapshots WHERE session = sessions.id)
                         AND NOT EXISTS (SELECT 1 FROM session_refs WHERE session = sessions.id)"
                ),
                params![from as i64, limit as i64, now.saturating_sub(IDLE_SESSION_GRACE) as i64],
            )?;
            // A full window may have more after it; a short one reached the end.
            let next = match last {
                Some(id) if seen as usize >= limit => id as u64,
                _ => 0,
            };
            Ok((dropped as u64, next))
        })
    }

    /// Fails unless `session` on `user`'s data was opened by `me` (open or not): what a pack
    /// or object commit checks before writing under a session.
    pub fn check_session_opener(&self, user: UserId, me: UserId, session: u64) -> Result<(), StoreError> {
        self.write(|tx| match require_open(tx, user, me, session, 0) {
            Ok(()) | Err(StoreError::SessionClosed) => Ok(()),
            Err(e) => Err(e),
        })
    }

    /// Which of `ids` the user stores in chunks `me` may build on (see
    /// [`super::trusted_writers`]), recording the hits as references of the open `session`
    /// (opened by `me`), so a prune keeps them until the session commits or ends.
    pub fn lookup_for_session(
        &self,
        user: UserId,
        me: UserId,
        session: u64,
        ids: &[ChunkId],
        now: u64,
    ) -> Result<Vec<ChunkId>, StoreError> {
        self.write(|tx| {
            require_open(tx, user, me, session, now)?;
            let u = user.0 as i64;
            let trusted = super::trusted_writers(tx, user, me)?;
            let mut known = Vec::new();
            for id in ids {
                if super::chunk_writer(tx, user, id)?.is_some_and(|w| trusted.contains(&w)) {
                    known.push(*id);
                }
            }
            let added = insert_session_refs(tx, u, session, &known)?;
            count_session_refs(tx, user, session, added)?;
            Ok(known)
        })
    }

    /// Records chunks a snapshot of the open `session` will reference; fails, recording
    /// nothing, if any of them is not stored.
    pub fn add_session_refs(
        &self,
        user: UserId,
        me: UserId,
        session: u64,
        ids: &[ChunkId],
        now: u64,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            let u = user.0 as i64;
            require_open(tx, user, me, session, now)?;
            let mut missing = 0;
            for id in ids {
                if !tx.exists("SELECT 1 FROM chunks WHERE user = ?1 AND id = ?2", params![u, &id.as_bytes()[..]])? {
                    missing += 1;
                }
            }
            if missing > 0 {
                return Err(StoreError::MissingChunks(missing));
            }
            let added = insert_session_refs(tx, u, session, ids)?;
            count_session_refs(tx, user, session, added)
        })
    }
}

/// Records `ids` as references of account `u`'s open `session`, many rows per statement (a
/// backup's lookups name thousands of chunks at a time). Returns the rows that were new.
fn insert_session_refs(tx: &Sql<'_>, u: i64, session: u64, ids: &[ChunkId]) -> Result<usize, StoreError> {
    let rows: Vec<Value> = ids
        .iter()
        .flat_map(|id| [Value::Int(session as i64), Value::Int(u), Value::Blob(id.as_bytes().to_vec())])
        .collect();
    let mut added = 0;
    tx.insert_many(
        "INSERT INTO session_refs (session, user, chunk) VALUES",
        "ON CONFLICT DO NOTHING RETURNING chunk",
        3,
        &rows,
        |_| {
            added += 1;
            Ok(())
        },
    )?;
    Ok(added)
}

/// How long after it lapsed a session with nothing under it is dropped: a client late in
/// renewing it, or committing a pack under it, still finds it well within this.
pub const IDLE_SESSION_GRACE: u64 = 3600;

/// Bytes of snapshot records the catalog keeps for one account (its own and its delegates'):
/// a record takes about a kilobyte (more with long exclude lists), so this is tens of
/// thousands of snapshots, while no account can grow the catalog, its backups on the hosts
/// or its own listings without bound.
pub const RECORD_BYTES_PER_ACCOUNT: u64 = 64 << 20;
/// The part of [`RECORD_BYTES_PER_ACCOUNT`] the account's delegates may fill together: an
/// appender cannot use up its owner's room to commit.
pub const RECORD_BYTES_OF_DELEGATES: u64 = 16 << 20;

/// What a snapshot takes in the catalog besides its record and its session's wrapped key
/// (its id, its row and its session's, their indexes), as [`record_bytes`] counts it: an
/// empty record costs something too, or rows could be added without end.
pub const SNAPSHOT_ROW_BYTES: u64 = 1024;

/// What a reference takes in the catalog: a row of `session_refs` (a chunk a session
/// recorded), of `ref_set_chunks` (a chunk of a reference set) or of `snapshot_sets` (a set
/// a snapshot names), with its index entries (about 150 to 300 bytes on SQLite with random
/// ids). Counted against the quota while the row exists: from when a session records a
/// chunk (one its snapshot will name, or a dedup hit) until its session ends, and for a
/// set from when the first snapshot naming it commits until the last one goes.
pub const SNAPSHOT_REF_BYTES: u64 = 256;

/// Deletes the sessions `delete` (a `DELETE FROM sessions` statement, with `params`) picks
/// and stops counting their wrapped keys against their users' quotas; how many went.
fn forget_sessions(tx: &Sql<'_>, delete: &str, params: &[&dyn super::sql::Param]) -> Result<usize, SqlError> {
    let gone: Vec<(i64, i64, i64)> =
        tx.query_map(&format!("{delete} RETURNING id, user, CAST(LENGTH(wrapped_key) AS BIGINT)"), params, |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    for (id, user, len) in &gone {
        super::catalog_bytes(tx, *user, &id.to_string(), -len)?;
    }
    Ok(gone.len())
}

/// Counts `added` references newly recorded by `session` against `user`'s quota; refused,
/// recording none, past it.
fn count_session_refs(tx: &Sql<'_>, user: UserId, session: u64, added: usize) -> Result<(), StoreError> {
    if added == 0 {
        return Ok(());
    }
    let (u, cost) = (user.0 as i64, added as u64 * SNAPSHOT_REF_BYTES);
    super::check_quota(tx, u, cost)?;
    Ok(super::catalog_bytes(tx, u, &session.to_string(), cost as i64)?)
}

/// Drops the references recorded by the sessions `sessions` selects (SQL, with `params`)
/// and gives back what they counted.
pub(super) fn drop_session_refs(
    tx: &Sql<'_>,
    sessions: &str,
    params: &[&dyn super::sql::Param],
) -> Result<(), SqlError> {
    let counted: Vec<(i64, i64)> = tx.query_map(
        &format!("SELECT user, COUNT(*) FROM session_refs WHERE session IN ({sessions}) GROUP BY user"),
        params,
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    for (user, refs) in counted {
        super::catalog_bytes(tx, user, "", -refs.saturating_mul(SNAPSHOT_REF_BYTES as i64))?;
    }
    tx.execute(&format!("DELETE FROM session_refs WHERE session IN ({sessions})"), params)?;
    Ok(())
}

/// The chunks snapshot `id` references, through its sets.
pub(super) fn snapshot_chunks(tx: &Sql<'_>, id: &str) -> Result<Vec<Vec<u8>>, SqlError> {
    tx.query_map(
        "SELECT rc.chunk FROM snapshot_sets ss JOIN ref_set_chunks rc ON rc.user = ss.user AND rc.ref_set = ss.ref_set
         WHERE ss.snapshot = ?1",
        params![id],
        |r| r.get(0),
    )
}

/// Records the references the open `session` of `user` recorded as snapshot `id`'s, and
/// drops the session's: grouped by the pack holding each chunk into reference sets, each
/// kept once per account however many snapshots name it. A snapshot then costs a row per
/// pack it uses, plus rows for the chunks of the sets no snapshot named before (new data,
/// or packs it uses differently): where naming every chunk again cost a row per chunk per
/// snapshot. Refused, recording nothing, if the rows it adds would pass the quota.
fn commit_refs(tx: &Sql<'_>, user: UserId, session: u64, id: &str) -> Result<(), StoreError> {
    let u = user.0 as i64;
    // A chunk gone from the index since it was recorded (it cannot be while the session
    // is open) would be grouped on its own, under no pack.
    let rows: Vec<(Option<Vec<u8>>, Vec<u8>)> = tx.query_map(
        "SELECT c.pack, sr.chunk FROM session_refs sr LEFT JOIN chunks c ON c.user = sr.user AND c.id = sr.chunk
         WHERE sr.session = ?1",
        params![session as i64],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let recorded = rows.len() as u64;
    let added = record_sets(tx, u, id, rows)?;
    if added > recorded {
        super::check_quota(tx, u, (added - recorded) * SNAPSHOT_REF_BYTES)?;
    }
    tx.execute("DELETE FROM session_refs WHERE session = ?1", params![session as i64])?;
    let change = (added as i64 - recorded as i64).saturating_mul(SNAPSHOT_REF_BYTES as i64);
    Ok(super::catalog_bytes(tx, u, id, change)?)
}

/// Records `(pack, chunk)` rows of account `u` as snapshot `id`'s reference sets, adding
/// the sets no snapshot named before. Returns the rows added.
fn record_sets(tx: &Sql<'_>, u: i64, id: &str, rows: Vec<(Option<Vec<u8>>, Vec<u8>)>) -> Result<u64, SqlError> {
    // Many rows per statement (a first snapshot of a million chunks would otherwise be a
    // million statements): the sets first, learning which are new, then the new sets'
    // chunks, a set at a time (a pack's worth), then the snapshot's names for them.
    let sets: Vec<([u8; 32], Vec<Vec<u8>>)> = ref_sets(rows).into_iter().map(|c| (ref_set_id(&c), c)).collect();
    let rows: Vec<Value> = sets
        .iter()
        .flat_map(|(set, chunks)| [Value::Int(u), Value::Blob(set.to_vec()), Value::Int(chunks.len() as i64)])
        .collect();
    let mut new = std::collections::HashSet::new();
    tx.insert_many(
        "INSERT INTO ref_sets (user, id, chunks) VALUES",
        "ON CONFLICT DO NOTHING RETURNING id",
        3,
        &rows,
        |r| {
            new.insert(r.get::<[u8; 32]>(0)?);
            Ok(())
        },
    )?;
    let mut added = sets.len() as u64;
    for (set, chunks) in sets.iter().filter(|(set, _)| new.contains(set)) {
        let rows: Vec<Value> =
            chunks.iter().flat_map(|c| [Value::Int(u), Value::Blob(set.to_vec()), Value::Blob(c.clone())]).collect();
        tx.insert_many("INSERT INTO ref_set_chunks (user, ref_set, chunk) VALUES", "", 3, &rows, |_| Ok(()))?;
        added += chunks.len() as u64;
    }
    let rows: Vec<Value> = sets
        .iter()
        .flat_map(|(set, _)| [Value::Text(id.to_owned()), Value::Int(u), Value::Blob(set.to_vec())])
        .collect();
    tx.insert_many("INSERT INTO snapshot_sets (snapshot, user, ref_set) VALUES", "", 3, &rows, |_| Ok(()))?;
    Ok(added)
}

/// Moves the references of a catalog from before schema 23, a row per chunk per snapshot
/// in `snapshot_chunks`, into reference sets, and drops that table. (The counters of
/// catalog bytes are made again after.)
pub(super) fn group_snapshot_chunks(tx: &Sql<'_>) -> Result<(), SqlError> {
    let old = match tx.is_postgres() {
        true => tx.exists(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'snapshot_chunks'",
            params![],
        )?,
        false => tx.exists("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'snapshot_chunks'", params![])?,
    };
    if !old {
        return Ok(());
    }
    let snapshots: Vec<(String, i64)> =
        tx.query_map("SELECT DISTINCT snapshot, user FROM snapshot_chunks", params![], |r| Ok((r.get(0)?, r.get(1)?)))?;
    for (id, user) in snapshots {
        let rows = tx.query_map(
            "SELECT c.pack, sc.chunk FROM snapshot_chunks sc LEFT JOIN chunks c ON c.user = sc.user AND c.id = sc.chunk
             WHERE sc.snapshot = ?1",
            params![&id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        record_sets(tx, user, &id, rows)?;
    }
    tx.execute("DROP TABLE snapshot_chunks", params![])?;
    Ok(())
}

/// Groups `(pack, chunk)` rows into reference sets: a set per pack (chunks under no pack
/// together), each sorted, the sets in the order of their packs.
fn ref_sets(mut rows: Vec<(Option<Vec<u8>>, Vec<u8>)>) -> Vec<Vec<Vec<u8>>> {
    rows.sort_unstable();
    rows.dedup();
    let mut sets: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut last: Option<Option<Vec<u8>>> = None;
    for (pack, chunk) in rows {
        match sets.last_mut() {
            Some(set) if last.as_ref() == Some(&pack) => set.push(chunk),
            _ => {
                sets.push(vec![chunk]);
                last = Some(pack);
            }
        }
    }
    sets
}

/// A reference set's id: the hash of its chunk ids, in order. Two sets of an account
/// with the same id are the same set.
fn ref_set_id(chunks: &[Vec<u8>]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("scatter 2026 catalog reference set");
    for c in chunks {
        h.update(&(c.len() as u32).to_le_bytes());
        h.update(c);
    }
    *h.finalize().as_bytes()
}

/// Drops snapshot `id`'s references (of `user`'s chunks), with the sets no other snapshot
/// names, and gives back what they counted.
pub(super) fn forget_refs(tx: &Sql<'_>, user: i64, id: &str) -> Result<(), SqlError> {
    let sets: Vec<Vec<u8>> =
        tx.query_map("SELECT ref_set FROM snapshot_sets WHERE snapshot = ?1", params![id], |r| r.get(0))?;
    let mut rows = tx.execute("DELETE FROM snapshot_sets WHERE snapshot = ?1", params![id])? as u64;
    for set in sets {
        if tx.exists("SELECT 1 FROM snapshot_sets WHERE user = ?1 AND ref_set = ?2", params![user, &set])? {
            continue;
        }
        rows += tx.execute("DELETE FROM ref_set_chunks WHERE user = ?1 AND ref_set = ?2", params![user, &set])? as u64;
        tx.execute("DELETE FROM ref_sets WHERE user = ?1 AND id = ?2", params![user, &set])?;
    }
    super::catalog_bytes(tx, user, id, -((rows * SNAPSHOT_REF_BYTES) as i64))
}

/// Deletes `user`'s snapshot `id`, gives back what its references and its record counted
/// against the quota; how many rows went.
pub(super) fn drop_snapshot(tx: &Sql<'_>, user: i64, id: &str) -> Result<u64, SqlError> {
    forget_refs(tx, user, id)?;
    let record: Option<i64> = tx.query_opt(
        "SELECT CAST(LENGTH(record) AS BIGINT) FROM snapshots WHERE id = ?1 AND user = ?2",
        params![id, user],
        |r| r.get(0),
    )?;
    let Some(record) = record else { return Ok(0) };
    super::catalog_bytes(tx, user, id, -(record + SNAPSHOT_ROW_BYTES as i64))?;
    Ok(tx.execute("DELETE FROM snapshots WHERE id = ?1 AND user = ?2", params![id, user])? as u64)
}

/// Bytes the catalog keeps for `user`'s snapshots (each its record, its session's wrapped
/// key and [`SNAPSHOT_ROW_BYTES`]): all of them, and those written by its delegates.
fn record_bytes(tx: &Sql<'_>, user: UserId) -> Result<(u64, u64), SqlError> {
    let (all, delegates): (i64, i64) = tx.query_row(
        &format!(
            "SELECT CAST(COALESCE(SUM(b), 0) AS BIGINT), CAST(COALESCE(SUM(CASE WHEN delegated THEN b ELSE 0 END), 0) AS BIGINT)
             FROM (SELECT LENGTH(s.record) + COALESCE(LENGTH(k.wrapped_key), 0) + {SNAPSHOT_ROW_BYTES} AS b,
                          COALESCE(s.writer, s.user) <> s.user AS delegated
                   FROM snapshots s LEFT JOIN sessions k ON k.id = s.session WHERE s.user = ?1) t"
        ),
        params![user.0 as i64],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((all.max(0) as u64, delegates.max(0) as u64))
}

impl Store {
    /// Makes a snapshot of `user`'s data, written by `me` (the owner or a delegate), visible
    /// with the references recorded for its session, and closes the session, in one
    /// transaction.
    pub fn commit_snapshot(
        &self,
        user: UserId,
        me: UserId,
        session: u64,
        id: &str,
        record: &[u8],
        now: u64,
    ) -> Result<(), StoreError> {
        self.commit_snapshot_held(user, me, session, id, record, (None, None), now)
    }

    /// [`Store::commit_snapshot`], recording the snapshot's lock and expiry in the same
    /// transaction.
    #[allow(clippy::too_many_arguments)]
    pub fn commit_snapshot_held(
        &self,
        user: UserId,
        me: UserId,
        session: u64,
        id: &str,
        record: &[u8],
        hold: (Option<crate::lock::Lock>, Option<u64>),
        now: u64,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            let u = user.0 as i64;
            require_open(tx, user, me, session, now)?;
            if tx.exists("SELECT 1 FROM snapshots WHERE id = ?1", params![id])? {
                return Err(StoreError::SnapshotExists);
            }
            let (all, delegates) = record_bytes(tx, user)?;
            let wrapped: i64 = tx.query_row(
                "SELECT CAST(COALESCE(LENGTH(wrapped_key), 0) AS BIGINT) FROM sessions WHERE id = ?1",
                params![session as i64],
                |r| r.get(0),
            )?;
            let len = record.len() as u64 + wrapped.max(0) as u64 + SNAPSHOT_ROW_BYTES;
            if me != user && delegates + len > RECORD_BYTES_OF_DELEGATES {
                return Err(StoreError::DelegatesRecordsFull { limit: RECORD_BYTES_OF_DELEGATES });
            }
            if all + len > RECORD_BYTES_PER_ACCOUNT {
                return Err(StoreError::RecordsFull { used: all, limit: RECORD_BYTES_PER_ACCOUNT });
            }
            // The record and its row count against the quota too (the session's key already
            // does): 64 MiB of records were the catalog's, and its backups', for any account.
            let cost = record.len() as u64 + SNAPSHOT_ROW_BYTES;
            super::check_quota(tx, u, cost)?;
            tx.execute(
                "INSERT INTO snapshots (id, user, session, record, created, writer, seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, (SELECT COALESCE(MAX(seq), 0) + 1 FROM snapshots))",
                params![id, u, session as i64, record, now as i64, me.0 as i64],
            )?;
            super::catalog_bytes(tx, u, id, cost as i64)?;
            commit_refs(tx, user, session, id)?;
            tx.execute("UPDATE sessions SET expires = 0 WHERE id = ?1", params![session as i64])?;
            super::locks::record(tx, LockTarget::Snapshot, id, user, hold.0, hold.1)?;
            Ok(())
        })
    }

    /// The user's snapshots in commit order (the coordinator's clock, not the time the
    /// sealed record claims), oldest first, with their writers.
    pub fn snapshots(&self, user: UserId) -> Result<Vec<SnapshotRow>, StoreError> {
        self.snapshot_rows(user, None)
    }

    /// The user's `newest` snapshots, oldest first, without their sealed records and keys
    /// (left empty), and how many the user has in all: what a page listing them shows,
    /// bounded whatever the account keeps, and without reading up to 64 MiB of records.
    pub fn snapshot_heads(&self, user: UserId, newest: usize) -> Result<(Vec<SnapshotRow>, u64), StoreError> {
        let mut rows = self.snapshot_rows(user, Some(newest))?;
        rows.reverse();
        let all: i64 = self.read(|conn| {
            Ok(conn.query_row("SELECT COUNT(*) FROM snapshots WHERE user = ?1", params![user.0 as i64], |r| r.get(0))?)
        })?;
        Ok((rows, all.max(0) as u64))
    }

    /// Every snapshot with its record and key (`newest: None`, oldest first), or the
    /// `newest` without them (newest first).
    fn snapshot_rows(&self, user: UserId, newest: Option<usize>) -> Result<Vec<SnapshotRow>, StoreError> {
        // SUBSTR(…, 1, 0): an empty blob of the column's type, in SQLite and PostgreSQL alike.
        let (key, record, order) = match newest {
            None => ("k.wrapped_key", "s.record", "ORDER BY s.created, s.seq".to_owned()),
            Some(n) => (
                "SUBSTR(k.wrapped_key, 1, 0)",
                "SUBSTR(s.record, 1, 0)",
                format!("ORDER BY s.created DESC, s.seq DESC LIMIT {}", n.min(i64::MAX as usize)),
            ),
        };
        self.read(|conn| {
            let rows = conn.query_map(
                &format!(
                    "SELECT s.id, s.created, s.session, {key}, {record},
                        (SELECT CAST(COALESCE(SUM(r.chunks), 0) AS BIGINT) FROM snapshot_sets ss
                         JOIN ref_sets r ON r.user = ss.user AND r.id = ss.ref_set WHERE ss.snapshot = s.id),
                        COALESCE(s.writer, s.user), COALESCE(w.name, ''),
                        COALESCE(s.writer, s.user) = s.user OR COALESCE(w.trusted, 0) <> 0
                 FROM snapshots s JOIN sessions k ON k.id = s.session
                      LEFT JOIN users w ON w.id = COALESCE(s.writer, s.user)
                 WHERE s.user = ?1 {order}"
                ),
                params![user.0 as i64],
                |r| {
                    Ok(SnapshotRow {
                        id: r.get(0)?,
                        created: r.get::<i64>(1)? as u64,
                        session: r.get::<i64>(2)? as u64,
                        wrapped_key: r.get(3)?,
                        record: r.get(4)?,
                        chunks: r.get::<i64>(5)? as u64,
                        writer: UserId(r.get::<i64>(6)? as u64),
                        writer_name: r.get(7)?,
                        trusted: r.get(8)?,
                    })
                },
            )?;
            Ok(rows)
        })
    }

    /// The readers and appenders of `owner`'s data.
    pub fn delegates(&self, owner: UserId) -> Result<Vec<DelegateRow>, StoreError> {
        self.read(|conn| {
            let rows = conn.query_map(
                "SELECT id, name, role, disabled, trusted FROM users WHERE owner = ?1 ORDER BY id",
                params![owner.0 as i64],
                |r| {
                    Ok(DelegateRow {
                        id: UserId(r.get::<i64>(0)? as u64),
                        name: r.get(1)?,
                        role: super::users::role(r.get(2)?)?,
                        disabled: r.get(3)?,
                        trusted: r.get(4)?,
                    })
                },
            )?;
            Ok(rows)
        })
    }

    /// Sets whether `owner` counts `delegate`'s snapshots as its own; false if `delegate` is
    /// no delegate of `owner`.
    pub fn set_trusted(&self, owner: UserId, delegate: UserId, trusted: bool) -> Result<bool, StoreError> {
        // Only an appender writes snapshots to trust (a reader's trust would mean nothing).
        let sql = match trusted {
            true => "UPDATE users SET trusted = ?3 WHERE id = ?2 AND owner = ?1 AND role = 'appender'",
            false => "UPDATE users SET trusted = ?3 WHERE id = ?2 AND owner = ?1",
        };
        let n = self.write(|c| Ok(c.execute(sql, params![owner.0 as i64, delegate.0 as i64, trusted])?))?;
        Ok(n > 0)
    }

    /// Replaces the sealed record of one of `user`'s snapshots; false if it has none of that
    /// id. Id, commit time, order, writer, session and references stay.
    /// Refused while a lock holds the snapshot: the record is what makes it readable.
    pub fn replace_snapshot_record(&self, user: UserId, id: &str, record: &[u8], now: u64) -> Result<bool, StoreError> {
        let n = self.write(|tx| {
            super::locks::check(tx, LockTarget::Snapshot, id, &format!("snapshot {}", short(id)), now)?;
            let (all, _) = record_bytes(tx, user)?;
            let old: u64 = tx
                .query_opt(
                    "SELECT CAST(LENGTH(record) AS BIGINT) FROM snapshots WHERE id = ?1 AND user = ?2",
                    params![id, user.0 as i64],
                    |r| r.get::<i64>(0),
                )?
                .unwrap_or(0) as u64;
            if (all - old.min(all)) + record.len() as u64 > RECORD_BYTES_PER_ACCOUNT {
                return Err(StoreError::RecordsFull { used: all, limit: RECORD_BYTES_PER_ACCOUNT });
            }
            let u = user.0 as i64;
            let grown = record.len() as i64 - old as i64;
            if grown > 0 {
                super::check_quota(tx, u, grown as u64)?;
            }
            let n =
                tx.execute("UPDATE snapshots SET record = ?3 WHERE id = ?1 AND user = ?2", params![id, u, record])?;
            if n > 0 {
                super::catalog_bytes(tx, u, id, grown)?;
            }
            Ok(n)
        })?;
        Ok(n > 0)
    }

    /// Drops snapshots of the user (unknown ids are ignored). Returns how many went.
    /// Refused, dropping none, if a lock in force at `now` holds any of them.
    pub fn forget(&self, user: UserId, ids: &[String], now: u64) -> Result<u64, StoreError> {
        self.write(|tx| {
            let mut removed = 0;
            for id in ids {
                let mine: Option<i64> = tx.query_opt(
                    "SELECT 1 FROM snapshots WHERE id = ?1 AND user = ?2",
                    params![id, user.0 as i64],
                    |r| r.get(0),
                )?;
                if mine.is_none() {
                    continue;
                }
                super::locks::check(tx, LockTarget::Snapshot, id, &format!("snapshot {}", short(id)), now)?;
                super::locks::forget(tx, LockTarget::Snapshot, id)?;
                removed += drop_snapshot(tx, user.0 as i64, id)?;
            }
            Ok(removed)
        })
    }

    /// Sweeps the user's unreferenced chunks (see [`sweep`]; it never waits for open
    /// sessions), then lists live packs whose
    /// unreferenced share is at least `max_unused_percent`, with their live chunks.
    #[allow(clippy::type_complexity)]
    pub fn prune(
        &self,
        user: UserId,
        max_unused_percent: u8,
        now: u64,
        plan_until: u64,
    ) -> Result<(Swept, Vec<(PackId, u64, u64, Vec<ChunkId>)>), StoreError> {
        self.write(|tx| {
            let swept = sweep(tx, user, now)?;
            let u = user.0 as i64;
            tx.execute("DELETE FROM relocations WHERE user = ?1 AND expires <= ?2", params![u, now as i64])?;
            let mut candidates = Vec::new();
            {
                let rows = tx.query_map(
                    &format!(
                        "SELECT p.id, p.size, CAST(SUM(c.len) AS BIGINT) FROM packs p JOIN chunks c ON c.pack = p.id
                         WHERE p.user = ?1 AND p.state = 'live'
                           AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.pack = p.id AND {})
                         GROUP BY p.id, p.size
                         HAVING (p.size - SUM(c.len)) * 100 >= p.size * ?2",
                        super::locks::locked_chunk("?3")
                    ),
                    params![u, i64::from(max_unused_percent.min(100)), now as i64],
                    |r| {
                        Ok((
                            PackId::from_bytes(r.get::<[u8; 32]>(0)?),
                            r.get::<i64>(1)? as u64,
                            r.get::<i64>(2)? as u64,
                        ))
                    },
                )?;
                for row in rows {
                    candidates.push(row);
                }
            }
            let mut out = Vec::with_capacity(candidates.len());
            {
                let stmt = "SELECT id FROM chunks WHERE pack = ?1 ORDER BY off";
                for (pack, size, live) in candidates {
                    let ids = tx.query_map(stmt, params![&pack.as_bytes()[..]], |r| {
                        Ok(ChunkId::from_bytes(r.get::<[u8; 32]>(0)?))
                    })?;
                    // What the repack that follows may move (see `commit_pack`'s relocate).
                    for id in &ids {
                        tx.execute(
                            "INSERT INTO relocations (user, chunk, expires) VALUES (?1, ?2, ?3)
                             ON CONFLICT (user, chunk) DO UPDATE SET expires = excluded.expires",
                            params![u, id.as_bytes(), plan_until as i64],
                        )?;
                    }
                    out.push((pack, size, live, ids));
                }
            }
            Ok((swept, out))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scatter_proto::api::Role;
    use scatter_proto::api::{ChunkEntry, StoredShard};

    use crate::store::NewPack;

    fn setup() -> (crate::store::testing::Guard, Store, UserId, scatter_core::HostId) {
        let (dir, store) = crate::store::testing::catalog();
        store.add_token(&[1; 32], "ann", Role::User, None, None).expect("token");
        let user = store.redeem_token(&[1; 32], "pk", &[2; 32], "", 0).expect("redeem").expect("user").id;
        let host = store.add_host(&[3; 32], "http://127.0.0.1:1", "z", 1 << 30, None, 0).expect("host");
        (dir, store, user, host)
    }

    fn pack(store: &Store, user: UserId, host: scatter_core::HostId, session: u64, n: u8, ids: &[u8], relocate: bool) {
        pack_sized(store, user, host, session, (n, ids.len() as u64 * 10), ids, relocate).expect("commit pack");
    }

    /// Commits pack `n` of `size` bytes holding chunks `ids`.
    fn pack_sized(
        store: &Store,
        user: UserId,
        host: scatter_core::HostId,
        session: u64,
        (n, size): (u8, u64),
        ids: &[u8],
        relocate: bool,
    ) -> Result<(), StoreError> {
        let chunks: Vec<ChunkEntry> = ids
            .iter()
            .enumerate()
            .map(|(i, b)| ChunkEntry { id: ChunkId::from_bytes([*b; 32]), offset: i as u64 * 10, len: 10 })
            .collect();
        let receipt = scatter_proto::SignedReceipt(String::new());
        let shards = [StoredShard { index: 0, shard: scatter_core::ShardId::from_bytes([n; 32]), host, receipt }];
        store.commit_pack(
            &NewPack {
                id: PackId::from_bytes([n; 32]),
                user,
                session,
                size,
                k: 1,
                m: 0,
                shard_size: 64,
                shards: &shards,
                chunks: &chunks,
                relocate,
            },
            1,
        )
    }

    crate::store::testing::conformance! {
        fn an_appenders_commit_never_adds_a_version_to_a_name_that_exists() {
            let (_d, store, user, _host) = setup();
            let session = store.add_session(user, b"k", 0, 100).expect("session");
            assert_eq!(store.commit_object(user, "n", session, b"m", 1, &[], true, 1).expect("first"), 1);
            assert!(matches!(store.commit_object(user, "n", session, b"m", 1, &[], true, 2), Err(StoreError::NameTaken)));
            assert_eq!(store.commit_object(user, "n", session, b"m", 1, &[], false, 3).expect("owner"), 2);
        }
    }

    crate::store::testing::conformance! {
        fn snapshot_heads_are_the_newest_without_records_and_count_all() {
            let (_d, store, user, _host) = setup();
            for i in 0..5u64 {
                let s = store.add_session(user, b"key", 1, 100).expect("session");
                store.commit_snapshot(user, user, s, &format!("snap{i}"), b"record", 10 + i).expect("commit");
            }
            let (heads, all) = store.snapshot_heads(user, 3).expect("heads");
            let ids: Vec<&str> = heads.iter().map(|h| h.id.as_str()).collect();
            assert_eq!((ids, all), (vec!["snap2", "snap3", "snap4"], 5), "the newest, oldest first");
            assert!(heads.iter().all(|h| h.record.is_empty() && h.wrapped_key.is_empty()));
            let (heads, all) = store.snapshot_heads(user, 10).expect("heads");
            assert_eq!((heads.len(), all), (5, 5));
            assert_eq!(store.snapshots(user).expect("all")[4].record, b"record");
        }
    }

    crate::store::testing::conformance! {
        fn snapshot_references_keep_chunks_and_forget_frees_them() {
            let (_d, store, user, host) = setup();
            let s = store.add_session(user, b"k", 1, 100).expect("session");
            pack(&store, user, host, s, 1, &[10, 11, 12, 13], false);
            // Refs to a chunk that is not stored are refused.
            assert!(matches!(
                store.add_session_refs(user, user, s, &[ChunkId::from_bytes([99; 32])], 2),
                Err(StoreError::MissingChunks(1))
            ));
            let refs: Vec<ChunkId> = [10u8, 11].iter().map(|b| ChunkId::from_bytes([*b; 32])).collect();
            store.add_session_refs(user, user, s, &refs, 2).expect("refs");
            // While the session is open, prune runs but keeps everything of the session's pack.
            let (swept, _) = store.prune(user, 20, 2, 2 + 3600).expect("prune while a session is open");
            assert_eq!(swept.chunks_removed, 0);
            store.commit_snapshot(user, user, s, "snap1", b"rec", 3).expect("commit");
            assert!(matches!(store.commit_snapshot(user, user, s, "snap2", b"rec", 3), Err(StoreError::SessionClosed)));
            let snaps = store.snapshots(user).expect("list");
            assert_eq!((snaps.len(), snaps[0].chunks), (1, 2));

            // 12 and 13 are unreferenced: swept; the pack is half empty and offered for repack.
            let (swept, repack) = store.prune(user, 20, 4, 4 + 3600).expect("prune");
            assert_eq!((swept.chunks_removed, swept.packs_released), (2, 0));
            assert_eq!(repack.len(), 1);
            assert_eq!(repack[0].3, refs);

            // A repack moves the live chunks and releases the old pack.
            let s2 = store.add_session(user, b"k2", 5, 100).expect("session");
            // It may move only what the prune assigned: 77 was not.
            let unplanned = pack_sized(&store, user, host, s2, (2, 30), &[10, 11, 77], true);
            assert!(matches!(unplanned, Err(StoreError::NotPlanned)), "{unplanned:?}");
            assert!(!store.pack_exists(&PackId::from_bytes([2; 32])).expect("exists"), "nothing of it recorded");
            pack_sized(&store, user, host, s2, (2, 30), &[10, 11], true).expect("repack");
            let moved_again = pack_sized(&store, user, host, s2, (3, 20), &[10, 11], true);
            assert!(matches!(moved_again, Err(StoreError::NotPlanned)), "each planned chunk moves once");
            store.close_session(user, user, s2).expect("close");
            let (_, repack) = store.prune(user, 20, 6, 6 + 3600).expect("prune");
            assert_eq!(repack.len(), 1, "77 was not revived, so a third of the new pack is unused");
            assert_eq!(repack[0].0, PackId::from_bytes([2; 32]));
            let located = store.locate(user, &refs).expect("locate").chunks;
            assert!(located.iter().all(|(_, p, _, _)| *p == PackId::from_bytes([2; 32])));
            let to_delete = store.shards_to_delete(10, u64::MAX).expect("deleting");
            assert_eq!(to_delete.len(), 1, "the old pack is released");

            assert_eq!(store.forget(user, &["snap1".into(), "nope".into()], 0).expect("forget"), 1);
            let (swept, _) = store.prune(user, 20, 7, 7 + 3600).expect("prune");
            assert_eq!((swept.chunks_removed, swept.packs_released), (2, 1));
        }
    }

    crate::store::testing::conformance! {
        fn expired_sessions_lose_their_refs() {
            let (_d, store, user, host) = setup();
            let s = store.add_session(user, b"k", 1, 10).expect("session");
            pack(&store, user, host, s, 1, &[1, 2], false);
            store.add_session_refs(user, user, s, &[ChunkId::from_bytes([1; 32])], 2).expect("refs");
            assert!(store.keep_session(user, user, s, 5, 20).is_ok());
            let (swept, _) = store.prune(user, 20, 15, 15 + 3600).expect("prune while open");
            assert_eq!(swept.chunks_removed, 0, "an open session's pack and refs are kept");
            let (swept, _) = store.prune(user, 20, 21, 21 + 3600).expect("prune after expiry");
            assert_eq!(swept.chunks_removed, 2);
            assert!(matches!(store.keep_session(user, user, s, 22, 40), Err(StoreError::SessionClosed)));
        }
    }

    fn id(b: u8) -> ChunkId {
        ChunkId::from_bytes([b; 32])
    }

    /// A delegate (`reader` or `appender`) of `owner`, registered with token and key `n`.
    fn delegate(store: &Store, owner: UserId, role: scatter_proto::api::Role, n: u8) -> UserId {
        store.add_token(&[n; 32], "laptop", role, None, Some(owner)).expect("token");
        store.redeem_token(&[n; 32], "pk", &[n + 100; 32], "", 0).expect("redeem").expect("user").me
    }

    crate::store::testing::conformance! {
        fn sessions_belong_to_their_opener() {
            let (_d, store, user, host) = setup();
            let app = delegate(&store, user, Role::Appender, 5);
            let s = store.open_session(user, app, b"k", 1, 100).expect("session");
            pack(&store, user, host, s, 1, &[10], false);
            let ids = [id(10)];
            // The owner can neither renew, close, fill nor commit its delegate's session.
            assert!(matches!(store.keep_session(user, user, s, 2, 50), Err(StoreError::NotYourSession)));
            assert!(matches!(store.close_session(user, user, s), Err(StoreError::NotYourSession)));
            assert!(matches!(store.add_session_refs(user, user, s, &ids, 2), Err(StoreError::NotYourSession)));
            assert!(matches!(store.lookup_for_session(user, user, s, &ids, 2), Err(StoreError::NotYourSession)));
            assert!(matches!(store.commit_snapshot(user, user, s, "x", b"r", 2), Err(StoreError::NotYourSession)));
            assert!(matches!(store.check_session_opener(user, user, s), Err(StoreError::NotYourSession)));
            // Nor can the delegate use the owner's.
            let own = store.add_session(user, b"k", 1, 100).expect("session");
            assert!(matches!(store.keep_session(user, app, own, 2, 50), Err(StoreError::NotYourSession)));
            assert!(matches!(store.check_session_opener(user, app, own), Err(StoreError::NotYourSession)));
            // Its opener can.
            store.keep_session(user, app, s, 2, 50).expect("renew");
            store.check_session_opener(user, app, s).expect("opener");
            store.add_session_refs(user, app, s, &ids, 3).expect("refs");
            store.commit_snapshot(user, app, s, "snap", b"r", 4).expect("commit");
            let snaps = store.snapshots(user).expect("list");
            assert_eq!((snaps[0].writer, snaps[0].trusted, snaps[0].writer_name.as_str()), (app, false, "laptop"));
        }
    }

    #[test]
    fn what_the_catalog_keeps_is_counted_again_from_its_rows_at_upgrade() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.db");
        let user = {
            let store = Store::open(&path).expect("open");
            store.add_token(&[1; 32], "ann", Role::User, None, None).expect("token");
            let user = store.redeem_token(&[1; 32], "pk", &[2; 32], "", 0).expect("redeem").expect("user").id;
            let host = store.add_host(&[3; 32], "http://127.0.0.1:1", "z", 1 << 30, None, 0).expect("host");
            let s = store.add_session(user, b"k", 1, 100).expect("session");
            pack(&store, user, host, s, 1, &[1, 2, 3], false);
            let ids: Vec<ChunkId> = [1, 2, 3].map(|b| ChunkId::from_bytes([b; 32])).to_vec();
            store.add_session_refs(user, user, s, &ids, 2).expect("refs");
            store.commit_snapshot(user, user, s, "snap", b"r", 3).expect("snapshot");
            // A snapshot as schema 22 kept its references: a row per chunk.
            let s = store.add_session(user, b"k", 3, 100).expect("session");
            store.add_session_refs(user, user, s, &ids, 3).expect("refs");
            store.commit_snapshot(user, user, s, "old", b"r", 3).expect("snapshot");
            let raw = store.conn();
            raw.execute("DELETE FROM snapshot_sets WHERE snapshot = 'old'", params![]).expect("sql");
            raw.execute(
                "CREATE TABLE snapshot_chunks (snapshot TEXT NOT NULL, user INTEGER NOT NULL, chunk BLOB NOT NULL,
                 PRIMARY KEY (snapshot, chunk))",
                params![],
            )
            .expect("sql");
            for id in &ids {
                raw.execute(
                    "INSERT INTO snapshot_chunks (snapshot, user, chunk) VALUES ('old', ?1, ?2)",
                    params![user.0 as i64, &id.as_bytes()[..]],
                )
                .expect("sql");
            }
            // And a session under way with references of its own.
            let open = store.add_session(user, b"k", 3, 100).expect("session");
            store.add_session_refs(user, user, open, &ids[..2], 4).expect("refs");
            // As a catalog of schema 21 might read: some counted, some not, some twice.
            store.conn().execute("UPDATE catalog_usage SET bytes = bytes * 3 - 7", params![]).expect("sql");
            store.conn().execute("UPDATE meta SET value = '21' WHERE key = 'schema'", params![]).expect("sql");
            assert_ne!(store.quota_usage(user).expect("usage"), store.usage(user).expect("usage"));
            user
        };
        let store = Store::open(&path).expect("upgrade");
        // The old snapshot's references are now the set the other names too.
        let snaps = store.snapshots(user).expect("snapshots");
        assert_eq!(snaps.iter().map(|s| (s.id.as_str(), s.chunks)).collect::<Vec<_>>(), [("snap", 3), ("old", 3)]);
        let catalog = store.quota_usage(user).expect("usage") - store.usage(user).expect("usage");
        // A set of three, a row for each snapshot, the open session's two, the chunks, and
        // the sessions' wrapped keys (counted since schema 26).
        let refs = 3 + 2 + 2;
        let keys = store
            .conn()
            .query_i64("SELECT SUM(LENGTH(wrapped_key)) FROM sessions WHERE user = ?1", params![user.0 as i64])
            .expect("sql");
        assert!(keys > 0);
        // And the snapshots' records and rows (since schema 27).
        let records = store
            .conn()
            .query_i64(
                &format!("SELECT SUM(LENGTH(record) + {SNAPSHOT_ROW_BYTES}) FROM snapshots WHERE user = ?1"),
                params![user.0 as i64],
            )
            .expect("sql");
        assert_eq!(records as u64, 2 + 2 * SNAPSHOT_ROW_BYTES);
        assert_eq!(
            catalog,
            refs * SNAPSHOT_REF_BYTES + 3 * super::super::CHUNK_ROW_BYTES + keys as u64 + records as u64,
            "references, chunks' rows, keys and records"
        );
        // And they are given back when the snapshots go, when the session ends, and when a
        // prune drops the chunks.
        store.forget(user, &["snap".into(), "old".into()], 4).expect("forget");
        store.close_session(user, user, 3).expect("close");
        store.prune(user, 0, 200, 200).expect("prune");
        let keys = store
            .conn()
            .query_i64(
                "SELECT COALESCE(SUM(LENGTH(wrapped_key)), 0) FROM sessions WHERE user = ?1",
                params![user.0 as i64],
            )
            .expect("sql");
        assert_eq!(store.quota_usage(user).expect("usage"), store.usage(user).expect("usage") + keys as u64);
    }

    crate::store::testing::conformance! {
        fn snapshot_records_are_bounded_per_account_and_delegates_leave_the_owner_room() {
            let (_d, store, user, _host) = setup();
            let app = delegate(&store, user, Role::Appender, 5);
            // A quarter of the delegates' share, less what each snapshot's row and key take.
            let big = vec![1u8; (RECORD_BYTES_OF_DELEGATES / 4 - SNAPSHOT_ROW_BYTES - 16) as usize];
            let commit = |me: UserId, n: usize, record: &[u8]| {
                let s = store.open_session(user, me, b"k", 1, 100).expect("session");
                store.commit_snapshot(user, me, s, &format!("{me}-{n}"), record, 2)
            };
            for n in 0..4 {
                commit(app, n, &big).expect("within the delegates' share");
            }
            assert!(matches!(commit(app, 4, b"r"), Err(StoreError::DelegatesRecordsFull { .. })));
            // The owner fills what is left of the account's room, and no more.
            let mut n = 0;
            let err = loop {
                match commit(user, n, &big) {
                    Ok(()) => n += 1,
                    Err(e) => break e,
                }
            };
            assert_eq!(n, 12, "the owner commits up to the account's limit");
            assert!(matches!(err, StoreError::RecordsFull { .. }), "{err}");
            // A rewritten record may not grow past it either, and may shrink.
            let first = format!("{user}-0");
            assert!(matches!(
                store.replace_snapshot_record(user, &first, &[&big[..], &[0u8; 4096]].concat(), 3),
                Err(StoreError::RecordsFull { .. })
            ));
            assert!(store.replace_snapshot_record(user, &first, b"small", 3).expect("replace"));
            // What was freed is room again; forgetting frees it too.
            commit(user, 100, b"r").expect("room after the rewrite");
            assert_eq!(store.forget(user, &[format!("{app}-0")], 4).expect("forget"), 1);
            commit(app, 100, &big).expect("room after a forget");
        }
    }

    crate::store::testing::conformance! {
        fn an_account_holds_a_bounded_number_of_sessions_open() {
            let (_d, store, user, _host) = setup();
            let app = delegate(&store, user, Role::Appender, 5);
            let sessions: Vec<u64> = (0..crate::store::MAX_OPEN_SESSIONS)
                .map(|_| store.open_session(user, app, b"k", 1, 100).expect("session"))
                .collect();
            assert!(matches!(store.open_session(user, app, b"k", 1, 100), Err(StoreError::TooManySessions)));
            // Each opener on its own: the owner still opens one.
            store.add_session(user, b"k", 1, 100).expect("the owner's");
            // A closed session, or a lapsed one, makes room.
            store.close_session(user, app, sessions[0]).expect("close");
            store.open_session(user, app, b"k", 1, 100).expect("after a close");
            assert!(matches!(store.open_session(user, app, b"k", 1, 100), Err(StoreError::TooManySessions)));
            store.open_session(user, app, b"k", 100, 200).expect("once the others lapsed");
        }
    }

    crate::store::testing::conformance! {
        fn a_session_closed_with_nothing_under_it_is_dropped() {
            let (_d, store, user, host) = setup();
            let kept = |s: u64| {
                store.read(|c| Ok(c.exists("SELECT 1 FROM sessions WHERE id = ?1", params![s as i64])?)).expect("read")
            };
            let empty = store.add_session(user, &[7u8; 4096], 1, 100).expect("session");
            store.close_session(user, user, empty).expect("close");
            assert!(!kept(empty), "an unused session's key stays in the catalog");
            // One with a pack under it stays: the pack's key is wrapped in it.
            let used = store.add_session(user, b"k", 1, 100).expect("session");
            pack(&store, user, host, used, 1, &[10], false);
            store.close_session(user, user, used).expect("close");
            assert!(kept(used));
        }
    }

    crate::store::testing::conformance! {
        fn sessions_that_lapsed_with_nothing_under_them_are_dropped_after_a_grace() {
            let (_d, store, user, host) = setup();
            let kept = |s: u64| {
                store.read(|c| Ok(c.exists("SELECT 1 FROM sessions WHERE id = ?1", params![s as i64])?)).expect("read")
            };
            // Sessions left to lapse (a killed client, or one opening sessions in a loop).
            let lapsed: Vec<u64> = (0..5).map(|_| store.add_session(user, &[7u8; 4096], 1, 100).expect("session")).collect();
            let used = store.add_session(user, b"k", 1, 100).expect("session");
            pack(&store, user, host, used, 1, &[10], false);
            let open = store.add_session(user, b"k", 1, 10_000).expect("session");
            // Not before the grace is over: a client may be late renewing.
            let (dropped, _) = store.drop_idle_sessions(0, 10, 100 + 5).expect("sweep");
            assert_eq!(dropped, 0);
            // In windows of three ids: the cursor moves on, then wraps around.
            let (dropped, next) = store.drop_idle_sessions(0, 3, 100 + 3600).expect("sweep");
            assert_eq!(dropped, 3);
            let (dropped, next) = store.drop_idle_sessions(next, 3, 100 + 3600).expect("sweep");
            assert_eq!(dropped, 2, "two lapsed; the used one kept");
            let (dropped, next) = store.drop_idle_sessions(next, 3, 100 + 3600).expect("sweep");
            assert_eq!((dropped, next), (0, 0), "the open one kept; then from the start");
            assert!(lapsed.iter().all(|s| !kept(*s)), "a lapsed session's key stays in the catalog");
            assert!(kept(used) && kept(open));
        }
    }

    crate::store::testing::conformance! {
        fn an_empty_record_costs_its_row_and_its_sessions_key() {
            let (_d, store, user, _host) = setup();
            let app = delegate(&store, user, Role::Appender, 5);
            let s = store.open_session(user, app, &[3u8; 4096], 1, 100).expect("session");
            store.commit_snapshot(user, app, s, "empty", b"", 2).expect("commit");
            let counted = store.read(|c| Ok(record_bytes(c, user)?)).expect("bytes");
            assert_eq!(counted, (4096 + SNAPSHOT_ROW_BYTES, 4096 + SNAPSHOT_ROW_BYTES));
            // So a delegate's empty snapshots run out as its records would.
            let most = RECORD_BYTES_OF_DELEGATES / (4096 + SNAPSHOT_ROW_BYTES);
            assert!(most < 4000, "{most} empty snapshots with 4 KiB keys fit");
        }
    }

    crate::store::testing::conformance! {
        fn a_replaced_record_keeps_the_snapshots_place_writer_and_references() {
            let (_d, store, user, host) = setup();
            let app = delegate(&store, user, Role::Appender, 5);
            let s = store.add_session(user, b"k", 1, 100).expect("session");
            pack(&store, user, host, s, 1, &[10, 11], false);
            store.add_session_refs(user, user, s, &[ChunkId::from_bytes([10; 32])], 2).expect("refs");
            store.commit_snapshot(user, user, s, "first", b"old", 3).expect("commit");
            let theirs = store.open_session(user, app, b"k", 4, 100).expect("session");
            store.commit_snapshot(user, app, theirs, "second", b"r", 5).expect("commit");
            assert!(store.replace_snapshot_record(user, "first", b"new", 0).expect("replace"));
            assert!(store.replace_snapshot_record(user, "second", b"new too", 0).expect("replace"));
            let snaps = store.snapshots(user).expect("list");
            let view: Vec<_> =
                snaps.iter().map(|r| (r.id.as_str(), r.record.as_slice(), r.created, r.chunks, r.writer)).collect();
            assert_eq!(view, [("first", &b"new"[..], 3, 1, user), ("second", &b"new too"[..], 5, 0, app)]);
            assert!(!snaps[1].trusted, "a rewritten delegate's snapshot stays untrusted");
            // Unknown ids and other users' snapshots are not touched.
            assert!(!store.replace_snapshot_record(user, "nope", b"x", 0).expect("replace"));
            store.add_token(&[7; 32], "bob", Role::User, None, None).expect("token");
            let bob = store.redeem_token(&[7; 32], "pk", &[8; 32], "", 0).expect("redeem").expect("user").id;
            assert!(!store.replace_snapshot_record(bob, "first", b"x", 0).expect("replace"));
            assert_eq!(store.snapshots(user).expect("list")[0].record, b"new");
        }
    }

    crate::store::testing::conformance! {
        fn the_owner_decides_whether_a_delegates_snapshots_count_as_its_own() {
            let (_d, store, user, _host) = setup();
            let app = delegate(&store, user, Role::Appender, 5);
            let own = store.add_session(user, b"k", 1, 100).expect("session");
            store.commit_snapshot(user, user, own, "mine", b"r", 2).expect("commit");
            let theirs = store.open_session(user, app, b"k", 2, 100).expect("session");
            store.commit_snapshot(user, app, theirs, "theirs", b"r", 3).expect("commit");
            let view = |store: &Store| -> Vec<(String, UserId, bool)> {
                store.snapshots(user).expect("list").into_iter().map(|s| (s.id, s.writer, s.trusted)).collect()
            };
            assert_eq!(view(&store), [("mine".into(), user, true), ("theirs".into(), app, false)]);
            // Another user cannot trust someone else's delegate.
            store.add_token(&[7; 32], "bob", Role::User, None, None).expect("token");
            let bob = store.redeem_token(&[7; 32], "pk", &[8; 32], "", 0).expect("redeem").expect("user").id;
            assert!(!store.set_trusted(bob, app, true).expect("set"));
            assert!(store.set_trusted(user, app, true).expect("set"));
            assert_eq!(view(&store)[1], ("theirs".into(), app, true));
            // Trusted from the invite on.
            store.add_token(&[9; 32], "nas", Role::Appender, None, Some(user)).expect("token");
            store.trust_token(&[9; 32]).expect("trust");
            store.redeem_token(&[9; 32], "pk", &[10; 32], "", 0).expect("redeem");
            let trusted: Vec<bool> = store.delegates(user).expect("delegates").iter().map(|d| d.trusted).collect();
            assert_eq!(trusted, [true, true]);
        }
    }

    crate::store::testing::conformance! {
        fn prune_keeps_what_open_sessions_of_any_writer_reference() {
            let (_d, store, user, host) = setup();
            let app = delegate(&store, user, Role::Appender, 5);
            // The owner's snapshot holds 1 and 2; 3 is in its pack unreferenced.
            let s0 = store.add_session(user, b"k", 1, 100).expect("session");
            pack(&store, user, host, s0, 1, &[1, 2, 3], false);
            store.add_session_refs(user, user, s0, &[id(1), id(2)], 2).expect("refs");
            store.commit_snapshot(user, user, s0, "old", b"r", 2).expect("commit");
            // A delegate's backup runs: it finds 1 through dedup, sends 2 as a reference and
            // commits a pack holding 4.
            let s = store.open_session(user, app, b"k", 3, 100).expect("session");
            assert_eq!(store.lookup_for_session(user, app, s, &[id(1), id(9)], 3).expect("lookup"), [id(1)]);
            store.add_session_refs(user, app, s, &[id(2)], 3).expect("refs");
            pack(&store, user, host, s, 2, &[4], false);
            // The owner forgets its snapshot and prunes, without waiting: only 3 goes.
            assert_eq!(store.forget(user, &["old".into()], 0).expect("forget"), 1);
            let (swept, _) = store.prune(user, 100, 4, 4 + 3600).expect("prune");
            assert_eq!(swept.chunks_removed, 1);
            // The delegate's references survived the prune and become its snapshot's.
            store.add_session_refs(user, app, s, &[id(4)], 5).expect("refs");
            store.commit_snapshot(user, app, s, "new", b"r", 5).expect("commit");
            assert_eq!(store.snapshots(user).expect("list")[0].chunks, 3);
            assert_eq!(store.prune(user, 100, 6, 6 + 3600).expect("prune").0.chunks_removed, 0);
            // A session that stops renewing ends: what only it held goes at the next prune.
            let s2 = store.open_session(user, app, b"k", 7, 10).expect("session");
            pack(&store, user, host, s2, 3, &[5], false);
            assert_eq!(store.prune(user, 100, 8, 8 + 3600).expect("prune").0.chunks_removed, 0);
            assert_eq!(store.prune(user, 100, 11, 11 + 3600).expect("prune").0.chunks_removed, 1);
        }
    }

    #[test]
    fn a_version_4_catalog_gets_writers_openers_and_trust() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.db");
        {
            let conn = rusqlite::Connection::open(&path).expect("open");
            conn.execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO meta VALUES ('schema', '4');
                 CREATE TABLE tokens (hash BLOB PRIMARY KEY, role TEXT NOT NULL, used INTEGER NOT NULL DEFAULT 0,
                                      name TEXT NOT NULL DEFAULT '', quota INTEGER, owner INTEGER);
                 CREATE TABLE users (id INTEGER PRIMARY KEY, role TEXT NOT NULL, public_key TEXT NOT NULL,
                                     device_key BLOB NOT NULL UNIQUE, created INTEGER NOT NULL,
                                     name TEXT NOT NULL DEFAULT '', disabled INTEGER NOT NULL DEFAULT 0,
                                     quota INTEGER, owner INTEGER);
                 INSERT INTO users (id, role, public_key, device_key, created, name) VALUES (1, 'user', 'pk', x'01', 0, 'ann');
                 INSERT INTO users (id, role, public_key, device_key, created, name, owner)
                     VALUES (2, 'appender', 'pk', x'02', 0, 'laptop', 1);
                 CREATE TABLE sessions (id INTEGER PRIMARY KEY, user INTEGER NOT NULL REFERENCES users(id),
                                        wrapped_key BLOB NOT NULL, created INTEGER NOT NULL,
                                        expires INTEGER NOT NULL DEFAULT 0);
                 INSERT INTO sessions VALUES (7, 1, x'AA', 0, 0);
                 INSERT INTO sessions VALUES (8, 1, x'AA', 0, 1000);
                 CREATE TABLE snapshots (id TEXT PRIMARY KEY, user INTEGER NOT NULL REFERENCES users(id),
                                         session INTEGER NOT NULL REFERENCES sessions(id),
                                         record BLOB NOT NULL, created INTEGER NOT NULL);
                 INSERT INTO snapshots VALUES ('old', 1, 7, x'00', 5);",
            )
            .expect("v4 schema");
        }
        let store = Store::open(&path).expect("upgrade");
        let user = UserId(1);
        // Snapshots from before were the owner's; sessions from before were opened by it.
        let snaps = store.snapshots(user).expect("snapshots");
        assert_eq!((snaps[0].writer, snaps[0].trusted), (user, true));
        store.keep_session(user, user, 8, 1, 2000).expect("the owner renews its old session");
        assert!(matches!(store.keep_session(user, UserId(2), 8, 1, 2000), Err(StoreError::NotYourSession)));
        // Delegates start untrusted.
        let delegates = store.delegates(user).expect("delegates");
        assert_eq!((delegates[0].id, delegates[0].trusted), (UserId(2), false));
        // Each account's key became its first device, under its id: old profiles sign on.
        let (ann, key, revoked) = store.device_login(scatter_core::DeviceId(1)).expect("sql").expect("device 1");
        assert_eq!((ann.me, ann.device.0, key, revoked), (user, 1, vec![1], false));
        let (laptop, _, _) = store.device_login(scatter_core::DeviceId(2)).expect("sql").expect("device 2");
        assert_eq!((laptop.me, laptop.id), (UserId(2), user));
        store.add_device_token(&[9; 32], user).expect("device invite");
        let new = store.redeem_token(&[9; 32], "pk", &[3; 32], "new", 10).expect("redeem").expect("unused");
        assert_eq!((new.me, new.device.0), (user, 3), "new devices are numbered after the old ones");
        drop(store);
        assert!(Store::open(&path).is_ok(), "reopening an upgraded catalog works");
    }

    #[test]
    fn a_version_1_catalog_is_upgraded_in_place_to_the_current_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.db");
        {
            let conn = rusqlite::Connection::open(&path).expect("open");
            conn.execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO meta VALUES ('schema', '1');
                 CREATE TABLE users (id INTEGER PRIMARY KEY, role TEXT NOT NULL, public_key TEXT NOT NULL,
                                     key_hash BLOB NOT NULL UNIQUE, created INTEGER NOT NULL);
                 INSERT INTO users VALUES (1, 'admin', 'pk', x'01', 0);
                 CREATE TABLE sessions (id INTEGER PRIMARY KEY, user INTEGER NOT NULL REFERENCES users(id),
                                        wrapped_key BLOB NOT NULL, created INTEGER NOT NULL);
                 INSERT INTO sessions VALUES (7, 1, x'AA', 0);
                 CREATE TABLE tokens (hash BLOB PRIMARY KEY, role TEXT NOT NULL, used INTEGER NOT NULL DEFAULT 0);
                 CREATE TABLE hosts (id INTEGER PRIMARY KEY, secret_hash BLOB NOT NULL, address TEXT NOT NULL,
                                     zone TEXT NOT NULL, capacity INTEGER NOT NULL,
                                     reported_used INTEGER NOT NULL DEFAULT 0, free INTEGER NOT NULL DEFAULT 0,
                                     last_seen INTEGER NOT NULL, joined INTEGER NOT NULL);
                 INSERT INTO hosts (id, secret_hash, address, zone, capacity, last_seen, joined)
                     VALUES (1, x'02', 'http://127.0.0.1:1', 'z', 100, 0, 0);",
            )
            .expect("v1 schema");
        }
        let store = Store::open(&path).expect("upgrade");
        let user = UserId(1);
        // The old session exists and is closed; new ones work; snapshots tables exist.
        assert!(matches!(store.keep_session(user, user, 7, 1, 10), Err(StoreError::SessionClosed)));
        let s = store.add_session(user, b"k", 1, 100).expect("session");
        assert!(s > 7);
        assert!(store.snapshots(user).expect("snapshots").is_empty());
        let hosts = store.hosts().expect("hosts");
        assert_eq!(
            (hosts[0].state, hosts[0].audits_passed),
            (crate::store::Standing::Active, 0),
            "new host columns have defaults"
        );
        drop(store);
        assert!(Store::open(&path).is_ok(), "reopening an upgraded catalog works");
    }
}
