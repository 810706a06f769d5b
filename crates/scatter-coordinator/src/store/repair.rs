//! What repair needs from the catalog: packs short of healthy shards, the grid's data
//! health, atomic shard moves, and shards left behind on hosts that must be deleted.
//!
//! A shard is *healthy* when its state is `ok` and its host is active (not draining or
//! retired) and has sent a heartbeat since the cutoff the caller passes (now minus the
//! offline grace).

use std::collections::HashMap;

use rand::seq::SliceRandom;

use scatter_core::{HostId, PackId, ShardId, UserId};

use super::leases::{self, Fence};
use super::sql::Sql;
use super::{shards_of, ShardState, Store, StoreError};

/// What an audit asks of a host: (host, pack, shard index, shard id, shard size).
pub type AuditTarget = (HostId, PackId, u8, ShardId, u64);

/// A pack with fewer than k+m healthy shards.
#[derive(Debug, Clone)]
pub struct DegradedPack {
    /// The pack.
    pub id: PackId,
    /// Sealed bytes.
    pub size: u64,
    /// Data shards.
    pub k: u8,
    /// Parity shards.
    pub m: u8,
    /// Bytes per shard.
    pub shard_size: u64,
    /// Healthy shards.
    pub healthy: usize,
    /// Placed under a placement policy, which chose its zones.
    pub narrowed: bool,
    /// The account whose data it holds: repair keeps to its placement policy.
    pub owner: UserId,
    /// Every shard: (index, id, host, state).
    pub shards: Vec<(u8, ShardId, HostId, ShardState)>,
}

/// A shard moving from one host to another (repair, drain, re-spread).
#[derive(Debug, Clone, Copy)]
pub struct ShardMove<'a> {
    /// Its pack.
    pub pack: &'a PackId,
    /// Its index in the pack.
    pub index: u8,
    /// The host the catalog places it on now.
    pub from: HostId,
    /// The host that stored its rebuilt copy.
    pub to: HostId,
    /// That host's receipt for the copy (checked by the caller).
    pub receipt: &'a str,
}

/// Packs by health.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Health {
    /// Live packs.
    pub packs_total: u64,
    /// All k+m shards healthy.
    pub packs_full: u64,
    /// Fewer than k+m healthy, but at least k readable (healthy, or still served from a
    /// draining host or as surplus): repair rebuilds it.
    pub packs_degraded: u64,
    /// Fewer than k readable: unreadable until hosts come back.
    pub packs_lost: u64,
}

/// Packs and accounts whose repair failed lately, with when it last did: repair takes their
/// packs after the others, so that however many of them there are (one account's policy
/// that no host meets, say), they do not hold up the packs that can be repaired.
#[derive(Debug, Clone, Default)]
pub struct Deferred {
    /// Packs whose repair failed.
    pub packs: HashMap<PackId, u64>,
    /// Accounts whose placement policy left a pack of theirs no host to be rebuilt on.
    pub owners: HashMap<UserId, u64>,
}

/// Failed audits before a host can be disqualified.
pub const DISQUALIFY_AFTER: i64 = 3;

/// Healthy shards of pack `p`, with `?1` the cutoff.
const HEALTHY: &str = "(SELECT COUNT(*) FROM shards s JOIN hosts h ON h.id = s.host
                        WHERE s.pack = p.id AND s.state = 'ok' AND h.last_seen >= ?1 AND h.state = 'active')";

/// Shards of pack `p` a rebuild can read, with `?1` the cutoff: healthy ones, and those
/// still served while they move (on a draining host, or surplus on its host).
const READABLE: &str = "(SELECT COUNT(*) FROM shards s JOIN hosts h ON h.id = s.host
                         WHERE s.pack = p.id AND s.state IN ('ok', 'surplus') AND h.last_seen >= ?1
                         AND h.state IN ('active', 'draining'))";

/// Shards from a random point among which an audit target is drawn (see
/// [`Store::audit_targets`]). A shard is then as likely as the 64 gaps before it are wide
/// together, which vary far less than one gap: a host that drops the tenth of its shards
/// least likely to be asked for meets about 8% of audits (simulated, 10,000 shards), where
/// the first shard after a random point let it meet 0.5%.
const AUDIT_WINDOW: usize = 64;

/// Pack ids per statement when packs are read by id (one statement text for every batch:
/// the last is padded with its own last id).
const IDS_PER_STATEMENT: usize = 500;

/// A live pack that may be damaged, with its healthy shards counted.
struct Suspect {
    id: [u8; 32],
    size: u64,
    k: u8,
    m: u8,
    shard_size: u64,
    created: i64,
    healthy: usize,
    readable: usize,
    narrowed: bool,
    owner: i64,
}

/// Live packs that may be damaged: a shard not `ok`, or on a host that is not active or not
/// heard from since `cutoff`; each with its healthy shards counted. What this costs grows
/// with the damage, not with the catalog.
///
/// It goes in steps, each planned on keys it is handed: the hosts that are down (a small
/// table), the packs with a shard on one of them (shards by host) or a shard not `ok` (the
/// partial index), then those packs by id. As one statement, PostgreSQL planned it on its
/// estimate of how many hosts are down, from statistics of `last_seen` that heartbeats
/// outrun between two analyses: it then took every host for down, read every shard and
/// counted every pack (0.9 s instead of 0.1 s at 100,000 packs, and minutes with other
/// stale statistics).
fn suspects(conn: &Sql<'_>, cutoff: u64) -> Result<Vec<Suspect>, StoreError> {
    let cutoff = cutoff as i64;
    let down: Vec<i64> =
        conn.query_map("SELECT id FROM hosts WHERE state != 'active' OR last_seen < ?1", params![cutoff], |r| {
            r.get(0)
        })?;
    let mut ids: std::collections::BTreeSet<[u8; 32]> = std::collections::BTreeSet::new();
    let mut add = |r: &super::sql::Row| {
        ids.insert(r.get(0)?);
        Ok(())
    };
    conn.each("SELECT pack FROM shards WHERE state != 'ok'", params![], &mut add)?;
    for host in down {
        conn.each("SELECT pack FROM shards WHERE host = ?1", params![host], &mut add)?;
    }
    let ids: Vec<[u8; 32]> = ids.into_iter().collect();
    let marks: Vec<String> = (0..IDS_PER_STATEMENT).map(|i| format!("?{}", i + 2)).collect();
    let stmt = format!(
        "SELECT p.id, p.size, p.k, p.m, p.shard_size, p.created, {HEALTHY}, p.narrowed, p.user, {READABLE}
         FROM packs p WHERE p.state = 'live' AND p.id IN ({})",
        marks.join(", ")
    );
    let mut out = Vec::new();
    for batch in ids.chunks(IDS_PER_STATEMENT) {
        let mut params: Vec<&dyn super::sql::Param> = vec![&cutoff];
        for i in 0..IDS_PER_STATEMENT {
            params.push(&batch[i.min(batch.len() - 1)]);
        }
        conn.each(&stmt, &params, |r| {
            out.push(Suspect {
                id: r.get(0)?,
                size: r.get::<i64>(1)? as u64,
                k: r.get(2)?,
                m: r.get(3)?,
                shard_size: r.get::<i64>(4)? as u64,
                created: r.get(5)?,
                healthy: r.get::<i64>(6)? as usize,
                narrowed: r.get::<i64>(7)? != 0,
                owner: r.get(8)?,
                readable: r.get::<i64>(9)? as usize,
            });
            Ok(())
        })?;
    }
    Ok(out)
}

/// What an inventory changed in the catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Shards marked lost: the catalog places them on the host, which lacks them.
    pub lost: u64,
    /// Their ids.
    pub marked: Vec<ShardId>,
    /// Shards the host holds that nothing places there: queued for deletion.
    pub orphaned: u64,
    /// Unknown shards too young to judge: the host lists them again.
    pub pending: Vec<ShardId>,
    /// Missing shards of packs too young to judge (an upload may have been under way when
    /// the host listed its shards): the host names them as removed again, until they are
    /// judged. Otherwise a change list would drop them, and the loss wait for a full one.
    pub unsettled: Vec<ShardId>,
    /// The acknowledgement the host's next change list names; none if it must send all.
    pub ack: Option<u64>,
}

/// Marks the shards `gone` from host `h` lost where the catalog places them there in live
/// packs settled before `settled`; those it places there in younger live packs are named in
/// `out.unsettled`.
fn mark_lost(tx: &Sql<'_>, h: i64, gone: &[ShardId], settled: u64, out: &mut Reconciled) -> Result<(), StoreError> {
    for id in gone {
        let lost = tx.execute(
            "UPDATE shards SET state = 'lost' WHERE host = ?1 AND hash = ?2 AND state = 'ok'
             AND pack IN (SELECT id FROM packs WHERE state = 'live' AND created < ?3)",
            params![h, id.as_bytes(), settled as i64],
        )? as u64;
        out.lost += lost;
        if lost > 0 {
            out.marked.push(*id);
        }
        if lost == 0
            && tx.exists(
                "SELECT 1 FROM shards s JOIN packs p ON p.id = s.pack
                 WHERE s.host = ?1 AND s.hash = ?2 AND s.state = 'ok' AND p.state = 'live' AND p.created >= ?3",
                params![h, id.as_bytes(), settled as i64],
            )?
        {
            out.unsettled.push(*id);
        }
    }
    Ok(())
}

/// Shards host `h` holds that no shard row places there: orphans once `grace` old, pending
/// before. `placed` is every shard the catalog places on the host, when the caller read them
/// all; otherwise each shard is looked up.
fn note_unknown(
    tx: &Sql<'_>,
    h: i64,
    held: &[(ShardId, u64)],
    placed: Option<&std::collections::HashSet<ShardId>>,
    grace: u64,
    out: &mut Reconciled,
) -> Result<(), StoreError> {
    // What a host may have queued as orphans at once: the rest is noted by later inventories
    // as these go. A host listing made-up shards grew the catalog by 700,000 rows a request.
    let mut room = MAX_ORPHANS_PER_HOST.saturating_sub(tx.query_row(
        "SELECT COUNT(*) FROM orphans WHERE host = ?1",
        params![h],
        |r| r.get::<i64>(0),
    )? as u64);
    for (id, age) in held {
        let known = match placed {
            Some(placed) => placed.contains(id),
            None => tx.exists("SELECT 1 FROM shards WHERE host = ?1 AND hash = ?2", params![h, id.as_bytes()])?,
        };
        if known {
            continue;
        }
        if *age >= grace {
            if room == 0 {
                continue;
            }
            // Queued as of time 0: no catalog backup need record anything before it goes (the
            // catalog never placed it here since its last backup; a copy a move left is queued
            // by the move, with the move's time). Queued as of now, it waited for a backup that
            // nothing asked for, up to the backup interval.
            let added = tx.execute(
                "INSERT INTO orphans (host, hash, since) VALUES (?1, ?2, 0) ON CONFLICT DO NOTHING",
                params![h, id.as_bytes()],
            )? as u64;
            out.orphaned += added;
            room -= added;
        } else {
            out.pending.push(*id);
        }
    }
    Ok(())
}

/// Orphans one host may have queued for deletion at once (see `note_unknown`).
pub const MAX_ORPHANS_PER_HOST: u64 = 10_000;

/// A code in use and the most shards of one of its packs a zone should hold, given the
/// zones and domains of the hosts up: (k, m, cap).
pub type ZoneCap = (u8, u8, usize);

/// Live packs where one failure domain holds more than ⌊m / ?1⌋ (at least one) of the
/// shards: `spread > max(⌊m/f⌋, 1)`, which for integers is `spread > 1 AND spread·f > m`;
/// or where one zone holds more than its code's cap in `caps` (integers, written into the
/// statement), unless a placement policy chose the pack's zones or its owner has one now
/// (repair keeps such packs' zones: found here, they would be found again every time).
fn crowded(caps: &[ZoneCap]) -> String {
    let zones: String = caps
        .iter()
        .map(|(k, m, cap)| {
            format!(
                " OR (p.k = {k} AND p.m = {m} AND p.zone_spread > {cap} AND p.narrowed = 0
                      AND NOT EXISTS (SELECT 1 FROM policies o WHERE o.user = p.user))"
            )
        })
        .collect();
    format!(
        "SELECT p.id, p.size, p.k, p.m, p.shard_size, p.k + p.m, p.narrowed, p.user FROM packs p
         WHERE ((p.spread > 1 AND p.spread * ?1 > p.m){zones}) AND p.state = 'live'"
    )
}

/// Packs selected as (id, size, k, m, shard size, healthy shards, narrowed, owner), each with
/// its shards.
fn with_shards(conn: &Sql<'_>, sql: &str, params: &[&dyn super::sql::Param]) -> Result<Vec<DegradedPack>, StoreError> {
    let rows = conn.query_map(sql, params, |r| {
        Ok(DegradedPack {
            id: PackId::from_bytes(r.get::<[u8; 32]>(0)?),
            size: r.get::<i64>(1)? as u64,
            k: r.get(2)?,
            m: r.get(3)?,
            shard_size: r.get::<i64>(4)? as u64,
            healthy: r.get::<i64>(5)? as usize,
            narrowed: r.get::<i64>(6)? != 0,
            owner: UserId(r.get::<i64>(7)? as u64),
            shards: Vec::new(),
        })
    })?;
    let mut out = Vec::with_capacity(rows.len());
    for mut p in rows {
        p.shards = shards_of(conn, &p.id)?;
        out.push(p);
    }
    Ok(out)
}

impl Store {
    /// Up to `limit` live packs with fewer than k+m healthy shards, in the order repair takes
    /// them. Packs it can rebuild now (k shards readable) come before those it cannot, so
    /// packs lost until their hosts return never take every place in a pass; among the rest,
    /// packs of accounts whose placement policy held up a repair lately come after the
    /// others, the account held up longest ago first (see [`Deferred`]); then the most
    /// endangered (fewest healthy shards over k); among equals, packs whose repair failed
    /// lately after the others, longest ago first; then the oldest. Only packs that may be
    /// damaged are looked at (`suspects`), so a pass costs what is damaged, not what is
    /// stored.
    pub fn degraded_packs(
        &self,
        cutoff: u64,
        limit: usize,
        deferred: &Deferred,
    ) -> Result<Vec<DegradedPack>, StoreError> {
        self.read(|conn| {
            let mut found: Vec<Suspect> =
                suspects(conn, cutoff)?.into_iter().filter(|p| p.healthy < p.k as usize + p.m as usize).collect();
            found.sort_by_key(|p| {
                let owner_held = deferred.owners.get(&UserId(p.owner as u64)).copied();
                let last_failed = deferred.packs.get(&PackId::from_bytes(p.id)).copied();
                (p.readable < p.k as usize, owner_held, p.healthy as i64 - p.k as i64, last_failed, p.created, p.id)
            });
            found.truncate(limit);
            found
                .into_iter()
                .map(|p| {
                    let id = PackId::from_bytes(p.id);
                    Ok(DegradedPack {
                        id,
                        size: p.size,
                        k: p.k,
                        m: p.m,
                        shard_size: p.shard_size,
                        healthy: p.healthy,
                        narrowed: p.narrowed,
                        owner: UserId(p.owner as u64),
                        shards: shards_of(conn, &id)?,
                    })
                })
                .collect()
        })
    }

    /// Live packs where one failure domain holds more than ⌊m / f⌋ (at least one) of the
    /// shards, or one zone more than its code's cap in `caps`, at most `limit`: the rule got
    /// stricter (the grid grew), or zones came back, since they were placed. The oldest
    /// `skip` of them are passed over.
    pub fn crowded_packs(
        &self,
        f: u8,
        caps: &[ZoneCap],
        limit: usize,
        skip: usize,
    ) -> Result<Vec<DegradedPack>, StoreError> {
        if f == 0 {
            return Ok(Vec::new());
        }
        self.read(|conn| {
            with_shards(
                conn,
                &format!("{} ORDER BY p.created, p.id LIMIT ?2 OFFSET ?3", crowded(caps)),
                params![f as i64, limit as i64, skip as i64],
            )
        })
    }

    /// The codes (k, m) of live packs.
    pub fn codes(&self) -> Result<Vec<(u8, u8)>, StoreError> {
        self.read(|conn| {
            Ok(conn.query_map("SELECT DISTINCT k, m FROM packs WHERE state = 'live'", params![], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?)
        })
    }

    /// How live packs meet the durability rule at tolerance `f`, for status, without reading
    /// every shard: the fewest domain losses any pack would survive with all its shards
    /// intact (kept with each pack), how many packs are crowded, and the packs that may be
    /// damaged now (`suspects`), as (k, m, each shard's host and whether it is `ok`),
    /// whose tolerance now depends on which hosts are up.
    #[allow(clippy::type_complexity)]
    pub fn spread_summary(
        &self,
        f: u8,
        caps: &[ZoneCap],
        cutoff: u64,
    ) -> Result<(Option<u32>, u64, Vec<(u8, u8, Vec<(HostId, bool)>)>), StoreError> {
        self.read(|conn| {
            let lowest: Option<i64> =
                conn.query_row("SELECT MIN(tolerance) FROM packs WHERE state = 'live'", params![], |r| r.get(0))?;
            let crowded: i64 = match f {
                0 => 0,
                f => conn.query_row(
                    &format!("SELECT COUNT(*) FROM ({}) AS c", crowded(caps)),
                    params![i64::from(f)],
                    |r| r.get(0),
                )?,
            };
            let damaged = suspects(conn, cutoff)?;
            let mut out = Vec::with_capacity(damaged.len());
            for p in damaged {
                let shards = shards_of(conn, &PackId::from_bytes(p.id))?;
                out.push((p.k, p.m, shards.into_iter().map(|(_, _, h, s)| (h, s == ShardState::Ok)).collect()));
            }
            Ok((lowest.map(|t| t.max(0) as u32), crowded.max(0) as u64, out))
        })
    }

    /// Live packs by health. Only packs that may be damaged (`suspects`) are looked at
    /// shard by shard; the rest are counted.
    pub fn health(&self, cutoff: u64) -> Result<Health, StoreError> {
        self.read(|conn| {
            let total: i64 =
                conn.query_row("SELECT CAST(COALESCE(SUM(packs), 0) AS BIGINT) FROM usage_counts", params![], |r| {
                    r.get(0)
                })?;
            let mut h = Health { packs_total: total as u64, ..Health::default() };
            for p in suspects(conn, cutoff)? {
                if p.healthy >= p.k as usize + p.m as usize {
                    continue;
                } else if p.readable >= p.k as usize {
                    h.packs_degraded += 1;
                } else {
                    h.packs_lost += 1;
                }
            }
            h.packs_full = h.packs_total.saturating_sub(h.packs_degraded + h.packs_lost);
            Ok(h)
        })
    }

    /// Moves shard `index` of `pack` from `old` to `new` (where its rebuilt copy is now
    /// durable, as `receipt`, checked by the caller, says) if it is still on `old`; the copy
    /// left on `old` is queued for deletion.
    pub fn move_shard(&self, m: ShardMove<'_>, now: u64, fence: Option<&Fence>) -> Result<bool, StoreError> {
        let ShardMove { pack, index, from: old, to: new, receipt } = m;
        self.write(|tx| {
            leases::check(tx, fence, now)?;
            let hash: Option<Vec<u8>> = tx.query_opt(
                "SELECT hash FROM shards s JOIN packs p ON p.id = s.pack
                     WHERE s.pack = ?1 AND s.idx = ?2 AND s.host = ?3 AND p.state = 'live'",
                params![&pack.as_bytes()[..], index, old.0 as i64],
                |r| r.get(0),
            )?;
            let Some(hash) = hash else { return Ok(false) };
            if old != new
                && tx.exists("SELECT 1 FROM shards WHERE host = ?1 AND hash = ?2", params![new.0 as i64, hash])?
            {
                return Err(StoreError::ShardTaken(new));
            }
            // An old copy of these bytes queued for deletion on `new` (the shard left it while it
            // was down, say): the deleter may hold it in its list and delete the new copy next.
            if tx.exists("SELECT 1 FROM orphans WHERE host = ?1 AND hash = ?2", params![new.0 as i64, hash])? {
                return Err(StoreError::ShardLeaving(new));
            }
            tx.execute(
                "UPDATE shards SET host = ?3, state = 'ok', receipt = ?4 WHERE pack = ?1 AND idx = ?2",
                params![&pack.as_bytes()[..], index, new.0 as i64, receipt],
            )?;
            // Totals survive restarts: they live in the catalog, counted in the same transaction.
            let size: i64 =
                tx.query_row("SELECT shard_size FROM packs WHERE id = ?1", params![&pack.as_bytes()[..]], |r| {
                    r.get(0)
                })?;
            if old != new {
                super::held(tx, old, -1, -size)?;
                super::held(tx, new, 1, size)?;
                super::measure_spread(tx, &pack.as_bytes()[..])?;
            }
            let to = crate::metering::Subject::Host(new.0);
            super::metering::record(tx, to, crate::metering::Kind::RepairReceived, size, now)?;
            for (key, add) in [("shards_repaired", 1), ("bytes_repaired", size)] {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)
                     ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(meta.value AS BIGINT) + ?3 AS TEXT)",
                    params![key, add.to_string(), add],
                )?;
            }
            if old != new {
                tx.execute(
                    "INSERT INTO orphans (host, hash, since) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                    params![old.0 as i64, hash, now as i64],
                )?;
            }
            Ok(true)
        })
    }

    /// Reconciles a host's full inventory with the catalog, in one transaction: shards the
    /// catalog places on the host (in packs older than `settled`) that the host lacks are
    /// marked `lost`, so repair rebuilds them; shards the host holds that no shard row places
    /// there, older than `grace` seconds (a put may still be about to commit them), become
    /// orphans for the deleter, and younger ones are pending. Acknowledges the inventory.
    pub fn reconcile(
        &self,
        host: HostId,
        inventory: &[(ShardId, u64)],
        settled: u64,
        grace: u64,
        _now: u64,
    ) -> Result<Reconciled, StoreError> {
        self.write(|tx| {
            let h = host.0 as i64;
            let held: std::collections::HashSet<ShardId> = inventory.iter().map(|(id, _)| *id).collect();
            // Every shard row on the host in one pass of its index, and whether the host must
            // hold it by now; the inventory is compared in memory. (A lookup per inventory
            // shard cost 0.5 s for a host of 6,000 shards on PostgreSQL.)
            let mut placed = std::collections::HashSet::new();
            let mut gone = Vec::new();
            let mut unsettled = Vec::new();
            tx.each(
                "SELECT s.hash, CASE WHEN s.state <> 'ok' OR p.state <> 'live' THEN 0
                                     WHEN p.created < ?2 THEN 1 ELSE 2 END
                 FROM shards s JOIN packs p ON p.id = s.pack WHERE s.host = ?1",
                params![h, settled as i64],
                |r| {
                    let id = ShardId::from_bytes(r.get::<[u8; 32]>(0)?);
                    if !held.contains(&id) {
                        match r.get::<i64>(1)? {
                            1 => gone.push(id),
                            2 => unsettled.push(id),
                            _ => {}
                        }
                    }
                    placed.insert(id);
                    Ok(())
                },
            )?;
            let mut out = Reconciled { unsettled, ..Reconciled::default() };
            mark_lost(tx, h, &gone, settled, &mut out)?;
            note_unknown(tx, h, inventory, Some(&placed), grace, &mut out)?;
            out.ack = Some(tx.query_row(
                "UPDATE hosts SET inventory_ack = inventory_ack + 1 WHERE id = ?1 RETURNING inventory_ack",
                params![h],
                |r| r.get(0),
            )?);
            Ok(out)
        })
    }

    /// Reconciles what changed on a host since the inventory acknowledged as `since`: the
    /// `removed` shards the catalog places there (in settled packs) are marked lost, the
    /// `added` ones it does not know become orphans or pending as in [`Self::reconcile`].
    /// What it costs follows the changes. `ack` is none when `since` is not the last
    /// acknowledgement (a change list missed, or the host restarted): nothing is recorded
    /// and the host must send a full inventory.
    #[allow(clippy::too_many_arguments)]
    pub fn reconcile_changes(
        &self,
        host: HostId,
        since: u64,
        added: &[(ShardId, u64)],
        removed: &[ShardId],
        settled: u64,
        grace: u64,
        _now: u64,
    ) -> Result<Reconciled, StoreError> {
        self.write(|tx| {
            let h = host.0 as i64;
            let Some(ack) = tx.query_opt(
                "UPDATE hosts SET inventory_ack = inventory_ack + 1 WHERE id = ?1 AND inventory_ack = ?2
                 RETURNING inventory_ack",
                params![h, since as i64],
                |r| r.get(0),
            )?
            else {
                return Ok(Reconciled::default());
            };
            let mut out = Reconciled { ack: Some(ack), ..Reconciled::default() };
            mark_lost(tx, h, removed, settled, &mut out)?;
            note_unknown(tx, h, added, None, grace, &mut out)?;
            Ok(out)
        })
    }

    /// Up to `n` shards to audit: on active hosts heard from since `cutoff`, fewest audits
    /// first, one random healthy shard each: (host, pack, index, shard, shard size).
    #[allow(clippy::type_complexity)]
    pub fn audit_targets(&self, cutoff: u64, n: usize) -> Result<Vec<AuditTarget>, StoreError> {
        self.read(|conn| {
            // Only hosts with a shard to audit: hosts holding nothing (new, or joined with
            // no room) are never audited, and would otherwise take the first places for good.
            let hosts: Vec<i64> = conn.query_map(
                "SELECT id FROM hosts h WHERE state = 'active' AND last_seen >= ?1
                     AND EXISTS (SELECT 1 FROM shards s JOIN packs p ON p.id = s.pack
                                 WHERE s.host = h.id AND s.state = 'ok' AND p.state = 'live')
                     ORDER BY audits_passed + audits_failed, random() LIMIT ?2",
                params![cutoff as i64, n as i64],
                |r| r.get(0),
            )?;
            let mut out = Vec::new();
            // One of the AUDIT_WINDOW healthy shards from a random point in the host's shard
            // ids (wrapping round), found through the index on (host, hash) rather than by
            // sorting all of the host's shards. The first shard from that point would be
            // picked as often as the gap before it is wide, and a host knows its ids: it
            // could drop those it sees are rarely asked for. Over a window, the gaps of
            // many shards add up and even out.
            let window = |cmp: &str| {
                format!(
                    "SELECT s.pack, s.idx, s.hash, p.shard_size FROM shards s JOIN packs p ON p.id = s.pack
                     WHERE s.host = ?1 AND s.hash {cmp} ?2 AND s.state = 'ok' AND p.state = 'live'
                     ORDER BY s.hash LIMIT ?3"
                )
            };
            let (after, before) = (window(">="), window("<"));
            let row = |r: &super::sql::Row| {
                Ok((
                    PackId::from_bytes(r.get::<[u8; 32]>(0)?),
                    r.get::<u8>(1)?,
                    ShardId::from_bytes(r.get::<[u8; 32]>(2)?),
                    r.get::<i64>(3)? as u64,
                ))
            };
            for h in hosts {
                let start: [u8; 32] = rand::random();
                let mut rows = conn.query_map(&after, params![h, start, AUDIT_WINDOW as i64], row)?;
                if rows.len() < AUDIT_WINDOW {
                    let more = (AUDIT_WINDOW - rows.len()) as i64;
                    rows.extend(conn.query_map(&before, params![h, start, more], row)?);
                }
                if let Some(&(pack, idx, shard, size)) = rows.choose(&mut rand::thread_rng()) {
                    out.push((HostId(h as u64), pack, idx, shard, size));
                }
            }
            Ok(out)
        })
    }

    /// Those of `targets` (as [`Store::audit_targets`] gives them) whose shard is still on
    /// its host and counted healthy in a live pack: what is worth auditing again.
    pub fn still_audited(&self, targets: Vec<AuditTarget>) -> Result<Vec<AuditTarget>, StoreError> {
        self.read(|conn| {
            let mut out = Vec::with_capacity(targets.len());
            for &t in &targets {
                if conn.exists(
                    "SELECT 1 FROM shards s JOIN packs p ON p.id = s.pack
                     WHERE s.host = ?1 AND s.hash = ?2 AND s.pack = ?3 AND s.idx = ?4 AND s.state = 'ok' AND p.state = 'live'",
                    params![t.0 .0 as i64, &t.3.as_bytes()[..], &t.1.as_bytes()[..], t.2],
                )? {
                    out.push(t);
                }
            }
            Ok(out)
        })
    }

    /// Records an audit. A failed one marks the shard lost (so it is repaired). It counts
    /// against the host only if the host signed a receipt for the shard: a shard recorded
    /// without one (before receipts existed, not yet backfilled) may never have reached the
    /// host, so its failure proves nothing about the host. Once a host has failed at least
    /// `DISQUALIFY_AFTER` counted audits and more than a tenth of all, it is disqualified: its
    /// shards stop counting and are rebuilt elsewhere. Returns whether the host was
    /// disqualified now.
    pub fn record_audit(
        &self,
        host: HostId,
        pack: &PackId,
        index: u8,
        passed: bool,
        fence: Option<&Fence>,
        now: u64,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            leases::check(tx, fence, now)?;
            let h = host.0 as i64;
            let who = crate::metering::Subject::Host(host.0);
            if passed {
                tx.execute("UPDATE hosts SET audits_passed = audits_passed + 1 WHERE id = ?1", params![h])?;
                super::metering::record(tx, who, crate::metering::Kind::AuditPassed, 1, now)?;
                return Ok(false);
            }
            let receipted: bool = tx
                .exists("SELECT 1 FROM shards WHERE pack = ?1 AND idx = ?2 AND host = ?3 AND receipt IS NOT NULL", params![&pack.as_bytes()[..], index, h])?;
            tx.execute(
                "UPDATE shards SET state = 'lost' WHERE pack = ?1 AND idx = ?2 AND host = ?3",
                params![&pack.as_bytes()[..], index, h],
            )?;
            if !receipted {
                return Ok(false);
            }
            tx.execute("UPDATE hosts SET audits_failed = audits_failed + 1 WHERE id = ?1", params![h])?;
            super::metering::record(tx, who, crate::metering::Kind::AuditFailed, 1, now)?;
            let disqualified = tx.execute(
                "UPDATE hosts SET state = 'disqualified'
                 WHERE id = ?1 AND state = 'active' AND audits_failed >= ?2 AND audits_failed * 10 > audits_passed + audits_failed",
                params![h, DISQUALIFY_AFTER],
            )? > 0;
            Ok(disqualified)
        })
    }

    /// Marks shards of `host` as surplus until `excess` bytes are covered (a host that shrank
    /// its capacity). Surplus shards stay readable but stop counting as healthy, so repair
    /// rebuilds them elsewhere and the host's copies are deleted afterwards. Returns how many
    /// were marked.
    pub fn mark_surplus(&self, host: HostId, excess: u64, fence: Option<&Fence>, now: u64) -> Result<u64, StoreError> {
        self.write(|tx| {
            leases::check(tx, fence, now)?;
            let already: i64 = tx.query_row(
                "SELECT CAST(COALESCE(SUM(p.shard_size), 0) AS BIGINT) FROM shards s JOIN packs p ON p.id = s.pack
                 WHERE s.host = ?1 AND s.state = 'surplus'",
                params![host.0 as i64],
                |r| r.get(0),
            )?;
            let mut left = excess.saturating_sub(already as u64);
            let rows: Vec<(Vec<u8>, u8, i64)> = tx.query_map(
                "SELECT s.pack, s.idx, p.shard_size FROM shards s JOIN packs p ON p.id = s.pack
                     WHERE s.host = ?1 AND s.state = 'ok' AND p.state = 'live' ORDER BY random()",
                params![host.0 as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let mut marked = 0;
            for (pack, idx, size) in rows {
                if left == 0 {
                    break;
                }
                tx.execute("UPDATE shards SET state = 'surplus' WHERE pack = ?1 AND idx = ?2", params![pack, idx])?;
                left = left.saturating_sub(size as u64);
                marked += 1;
            }
            Ok(marked)
        })
    }

    /// Hosts where a pack other than `pack` records any of `shards`, or where a copy of one is
    /// queued for deletion (the deleter could delete a new copy with it).
    pub fn hosts_holding(&self, pack: &PackId, shards: &[ShardId]) -> Result<Vec<HostId>, StoreError> {
        self.read(|conn| {
            let stmt = "SELECT host FROM shards WHERE hash = ?1 AND pack != ?2
                        UNION SELECT host FROM orphans WHERE hash = ?1";
            let mut hosts = Vec::new();
            for shard in shards {
                let rows = conn.query_map(stmt, params![&shard.as_bytes()[..], &pack.as_bytes()[..]], |r| {
                    Ok(HostId(r.get::<i64>(0)? as u64))
                })?;
                for h in rows {
                    hosts.push(h);
                }
            }
            Ok(hosts)
        })
    }

    /// Up to `limit` shards the catalog places on `host` without a receipt (recorded before
    /// receipts existed), for the host to backfill.
    pub fn receipts_wanted(&self, host: HostId, limit: usize) -> Result<Vec<ShardId>, StoreError> {
        self.read(|conn| {
            let stmt = "SELECT hash FROM shards WHERE host = ?1 AND receipt IS NULL LIMIT ?2";
            let rows = conn.query_map(stmt, params![host.0 as i64, limit as i64], |r| {
                Ok(ShardId::from_bytes(r.get::<[u8; 32]>(0)?))
            })?;
            Ok(rows)
        })
    }

    /// Records backfilled receipts (signatures checked by the caller) for shards on `host`
    /// that have none, where the size the receipt states is the shard's; returns how many
    /// were recorded.
    pub fn record_receipts(&self, host: HostId, receipts: &[(ShardId, u64, String)]) -> Result<u64, StoreError> {
        self.write(|tx| {
            let mut n = 0;
            {
                let stmt = "UPDATE shards SET receipt = ?3 WHERE host = ?1 AND hash = ?2 AND receipt IS NULL
                       AND pack IN (SELECT id FROM packs WHERE shard_size = ?4)";
                for (shard, size, receipt) in receipts {
                    n += tx.execute(stmt, params![host.0 as i64, &shard.as_bytes()[..], receipt, *size as i64])? as u64;
                }
            }
            Ok(n)
        })
    }

    /// Shards repaired and their bytes, since the catalog was created.
    pub fn repair_totals(&self) -> Result<(u64, u64), StoreError> {
        self.read(|conn| {
            let get = |key: &str| -> Result<u64, StoreError> {
                let v: Option<String> =
                    conn.query_opt("SELECT value FROM meta WHERE key = ?1", params![key], |r| r.get(0))?;
                Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
            };
            Ok((get("shards_repaired")?, get("bytes_repaired")?))
        })
    }

    /// Records why the last checker pass left packs unrepaired: (reason, packs), replacing
    /// what the pass before recorded (none: nothing waits).
    pub fn set_repair_waits(&self, waits: &[(String, u64)], fence: Option<&Fence>, now: u64) -> Result<(), StoreError> {
        let text = serde_json::to_string(waits).map_err(|e| StoreError::Task(e.to_string()))?;
        self.write(|tx| {
            leases::check(tx, fence, now)?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('repair_waits', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![text],
            )?;
            Ok(())
        })
    }

    /// Why the last checker pass left packs unrepaired: (reason, packs), most packs first.
    pub fn repair_waits(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let text: Option<String> = self
            .read(|c| Ok(c.query_opt("SELECT value FROM meta WHERE key = 'repair_waits'", params![], |r| r.get(0))?))?;
        // Written by the checker; an unreadable value reads as nothing waiting.
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default())
    }

    /// Shard copies hosts should no longer keep: (host, shard), queued before `before` (unix
    /// seconds). A copy that a live shard row still places on that host is never listed.
    pub fn orphans(&self, limit: usize, before: u64) -> Result<Vec<(HostId, ShardId)>, StoreError> {
        self.read(|conn| {
            // Shared out between the hosts: one host's many orphans (it may list made-up
            // shards) must not hold back the others'.
            let hosts: Vec<i64> = conn.query_map("SELECT DISTINCT host FROM orphans", params![], |r| r.get(0))?;
            let each = (limit / hosts.len().max(1)).max(1);
            let mut rows = Vec::new();
            for h in hosts {
                if rows.len() >= limit {
                    break;
                }
                rows.extend(conn.query_map(
                    "SELECT o.host, o.hash FROM orphans o
                     WHERE o.host = ?1 AND o.since < ?3
                       AND NOT EXISTS (SELECT 1 FROM shards s WHERE s.host = o.host AND s.hash = o.hash)
                     LIMIT ?2",
                    params![h, each as i64, before.min(i64::MAX as u64) as i64],
                    |r| Ok((HostId(r.get::<i64>(0)? as u64), ShardId::from_bytes(r.get::<[u8; 32]>(1)?))),
                )?);
            }
            Ok(rows)
        })
    }

    /// Forgets an orphan its host has deleted.
    pub fn orphan_deleted(
        &self,
        host: HostId,
        shard: &ShardId,
        fence: Option<&Fence>,
        now: u64,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            leases::check(tx, fence, now)?;
            tx.execute(
                "DELETE FROM orphans WHERE host = ?1 AND hash = ?2",
                params![host.0 as i64, &shard.as_bytes()[..]],
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use scatter_core::UserId;
    use scatter_proto::api::Role;
    use scatter_proto::api::StoredShard;
    use scatter_proto::SignedReceipt;

    use super::*;
    use crate::store::NewPack;

    fn setup() -> (crate::store::testing::Guard, Store, UserId, HostId, u64) {
        let (dir, store) = crate::store::testing::catalog();
        store.add_token(&[1; 32], "ann", Role::User, None, None).expect("token");
        let user = store.redeem_token(&[1; 32], "pk", &[2; 32], "", 0).expect("redeem").expect("user").id;
        let host = store.add_host(&[3; 32], "http://127.0.0.1:1", "z", 1 << 30, None, 0).expect("host");
        let session = store.add_session(user, b"k", 0, 100).expect("session");
        (dir, store, user, host, session)
    }

    /// Commits pack `pack` coded `k`+`m` with shard i on `hosts[i]`, at `now`.
    #[allow(clippy::too_many_arguments)]
    fn commit_on(store: &Store, user: UserId, session: u64, pack: u8, k: u8, m: u8, hosts: &[HostId], now: u64) {
        let shards: Vec<StoredShard> = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| StoredShard {
                index: i as u8,
                shard: ShardId::from_bytes([pack * 16 + i as u8; 32]),
                host: *h,
                receipt: SignedReceipt("r".into()),
            })
            .collect();
        let p = NewPack {
            id: PackId::from_bytes([pack; 32]),
            user,
            session,
            size: 10,
            k,
            m,
            shard_size: 64,
            shards: &shards,
            chunks: &[],
            relocate: false,
        };
        store.commit_pack(&p, now).expect("commit");
    }

    crate::store::testing::conformance! {
        fn the_checker_finds_damaged_packs_most_endangered_first() {
            let (_d, store, user, _, session) = setup();
            let host = |n: u8, seen: u64| {
                store.add_host(&[n; 32], &format!("http://127.0.0.1:{n}"), "z", 1 << 30, None, seen).expect("host")
            };
            let (on1, on2, off1, off2) = (host(10, 100), host(11, 100), host(12, 0), host(13, 0));
            commit_on(&store, user, session, 1, 2, 1, &[on1, on2, off1], 1); // k healthy: degraded
            commit_on(&store, user, session, 2, 1, 2, &[on1, off1, off2], 2); // k healthy: degraded, newer
            commit_on(&store, user, session, 3, 1, 1, &[on1, on2], 3); // full
            commit_on(&store, user, session, 4, 2, 1, &[on1, off1, off2], 4); // fewer than k: lost
            let id = |n: u8| PackId::from_bytes([n; 32]);
            let order = |failed: &[(u8, u64)]| {
                let deferred = Deferred { packs: failed.iter().map(|(n, at)| (id(*n), *at)).collect(), ..Default::default() };
                let found = store.degraded_packs(50, 16, &deferred).expect("degraded packs");
                assert!(found.iter().all(|p| p.shards.len() == 3 && p.owner == user));
                found.iter().map(|p| (p.id, p.healthy)).collect::<Vec<(PackId, usize)>>()
            };
            // A lost pack cannot be rebuilt until its hosts return: it comes last, so that
            // many of them cannot take every place in a pass.
            assert_eq!(order(&[]), [(id(1), 2), (id(2), 1), (id(4), 1)]);
            commit_on(&store, user, session, 6, 1, 2, &[on1, on2, off1], 6); // one shard over k
            // A pack whose repair failed waits behind those as endangered as it, the
            // longest-failed first, but not behind less endangered ones.
            assert_eq!(order(&[(1, 5)]), [(id(2), 1), (id(1), 2), (id(6), 2), (id(4), 1)]);
            assert_eq!(order(&[(1, 5), (2, 7)]), [(id(1), 2), (id(2), 1), (id(6), 2), (id(4), 1)]);
            let limited = store.degraded_packs(50, 1, &Default::default()).expect("limited");
            assert_eq!(limited.iter().map(|p| p.id).collect::<Vec<_>>(), [id(1)]);
            let h = store.health(50).expect("health");
            assert_eq!((h.packs_total, h.packs_full, h.packs_degraded, h.packs_lost), (5, 1, 3, 1));
            // Packs of an account whose policy held up a repair wait behind everyone else's.
            let other = {
                store.add_token(&[9; 32], "bob", Role::User, None, None).expect("token");
                store.redeem_token(&[9; 32], "pk2", &[8; 32], "", 0).expect("redeem").expect("user").id
            };
            let theirs = store.add_session(other, b"k", 0, 100).expect("session");
            commit_on(&store, other, theirs, 5, 1, 2, &[on1, off1, off2], 5); // like pack 2, newer
            let held = |owners: &[(UserId, u64)]| {
                let deferred = Deferred { owners: owners.iter().copied().collect(), ..Default::default() };
                let found = store.degraded_packs(50, 16, &deferred).expect("degraded packs");
                found.iter().map(|p| p.id).collect::<Vec<PackId>>()
            };
            assert_eq!(held(&[(user, 9)]), [id(5), id(1), id(2), id(6), id(4)]);
            // Among accounts held up, the one held up longest ago first.
            assert_eq!(held(&[(user, 9), (other, 8)]), [id(5), id(1), id(2), id(6), id(4)]);
            assert_eq!(held(&[(user, 9), (other, 10)]), [id(1), id(2), id(6), id(5), id(4)]);
        }
    }

    crate::store::testing::conformance! {
        fn the_checker_counts_more_damaged_packs_than_one_statement_reads() {
            let (_d, store, user, _, session) = setup();
            let on = store.add_host(&[10; 32], "http://127.0.0.1:10", "z", 1 << 30, None, 100).expect("host");
            let off = store.add_host(&[11; 32], "http://127.0.0.1:11", "z", 1 << 30, None, 0).expect("host");
            let n = IDS_PER_STATEMENT + 7;
            for i in 0..n {
                // Pack ids and shard ids of their own (commit_on's are one byte each).
                let id = PackId::from_bytes(*blake3::hash(&i.to_le_bytes()).as_bytes());
                let shards: Vec<StoredShard> = [on, off]
                    .iter()
                    .enumerate()
                    .map(|(j, h)| StoredShard {
                        index: j as u8,
                        shard: ShardId::of(&[i.to_le_bytes().as_slice(), &[j as u8]].concat()),
                        host: *h,
                        receipt: SignedReceipt("r".into()),
                    })
                    .collect();
                let p = NewPack {
                    id,
                    user,
                    session,
                    size: 10,
                    k: 1,
                    m: 1,
                    shard_size: 64,
                    shards: &shards,
                    chunks: &[],
                    relocate: false,
                };
                store.commit_pack(&p, i as u64).expect("commit");
            }
            assert_eq!(store.degraded_packs(50, n + 10, &Default::default()).expect("degraded").len(), n);
            let oldest = store.degraded_packs(50, 1, &Default::default()).expect("degraded");
            assert_eq!(oldest[0].id, PackId::from_bytes(*blake3::hash(&0usize.to_le_bytes()).as_bytes()));
            let h = store.health(50).expect("health");
            assert_eq!((h.packs_total, h.packs_full, h.packs_degraded, h.packs_lost), (n as u64, 0, n as u64, 0));
        }
    }

    crate::store::testing::conformance! {
        fn inventories_reconcile_in_full_then_by_changes_since_the_last_acknowledged() {
            let (_dir, store, user, host, session) = setup();
            commit(&store, user, host, session, 1, 7).expect("commit");
            commit(&store, user, host, session, 2, 8).expect("commit");
            let (kept, gone) = (ShardId::from_bytes([7; 32]), ShardId::from_bytes([8; 32]));
            let (young, old) = (ShardId::from_bytes([20; 32]), ShardId::from_bytes([21; 32]));
            // Packs are settled at 10; the grace for unknown shards is 60 s.
            let full = store.reconcile(host, &[(kept, 500), (gone, 500), (young, 5)], 10, 60, 1000).expect("full");
            let expected = Reconciled { lost: 0, marked: vec![], orphaned: 0, pending: vec![young], unsettled: vec![], ack: Some(1) };
            assert_eq!(full, expected);
            // Then only what changed: one shard went, the young one is listed again, now old
            // enough, and one more unknown shard appears.
            let changes = store
                .reconcile_changes(host, 1, &[(young, 70), (old, 100)], &[gone], 10, 60, 1100)
                .expect("changes");
            assert_eq!((changes.lost, changes.orphaned, changes.ack, changes.marked), (1, 2, Some(2), vec![gone]));
            assert!(changes.pending.is_empty());
            let degraded = |store: &Store| -> Vec<(PackId, Vec<ShardState>)> {
                let packs = store.degraded_packs(0, 10, &Default::default()).expect("degraded");
                packs.into_iter().map(|p| (p.id, p.shards.iter().map(|s| s.3).collect())).collect()
            };
            assert_eq!(degraded(&store), [(PackId::from_bytes([2; 32]), vec![ShardState::Lost])]);
            // A change list that does not follow the last acknowledgement records nothing.
            let stale = store.reconcile_changes(host, 1, &[], &[kept], 10, 60, 1200).expect("stale");
            assert_eq!(stale, Reconciled::default());
            assert_eq!(degraded(&store).len(), 1, "the stale list marked nothing");
            // Removing a shard of a pack committed after `settled` marks nothing yet; the
            // host is told to name it again, and once the pack has settled it is lost.
            let fresh = store.reconcile_changes(host, 2, &[], &[kept], 0, 60, 1300).expect("fresh");
            assert_eq!((fresh.lost, fresh.ack, fresh.unsettled), (0, Some(3), vec![kept]));
            let settled = store.reconcile_changes(host, 3, &[], &[kept], 10, 60, 1400).expect("settled");
            assert_eq!((settled.lost, settled.unsettled), (1, vec![]));
            assert_eq!(degraded(&store).len(), 2);
            // A full inventory lacking a shard of a pack too young to judge names it too.
            commit(&store, user, host, session, 3, 9).expect("commit");
            let young_pack = ShardId::from_bytes([9; 32]);
            let full = store.reconcile(host, &[], 1, 60, 1500).expect("full");
            assert_eq!((full.lost, full.unsettled), (0, vec![young_pack]));
        }
    }

    crate::store::testing::conformance! {
        /// Attack (red team): a host listed 700,000 made-up shards, old enough to be orphans,
        /// in one inventory, and each became a row: three requests grew the catalog by 400 MB.
        fn a_host_has_at_most_so_many_orphans_queued() {
            let (_dir, store, _user, host, _session) = setup();
            let made_up: Vec<(ShardId, u64)> = (0..MAX_ORPHANS_PER_HOST + 5)
                .map(|n| {
                    let mut id = [0u8; 32];
                    id[..8].copy_from_slice(&n.to_le_bytes());
                    (ShardId::from_bytes(id), u64::MAX)
                })
                .collect();
            let full = store.reconcile(host, &made_up, 10, 60, 1000).expect("full");
            assert_eq!(full.orphaned, MAX_ORPHANS_PER_HOST);
            let again = store.reconcile_changes(host, full.ack.expect("ack"), &made_up, &[], 10, 60, 1001).expect("changes");
            assert_eq!(again.orphaned, 0, "no room until some are deleted");
        }
    }

    crate::store::testing::conformance! {
        fn what_a_host_holds_is_counted_with_every_shard_row() {
            let (_dir, store, user, host, session) = setup();
            let other = store.add_host(&[4; 32], "http://127.0.0.1:2", "z", 1 << 30, None, 0).expect("host");
            let held = |id: HostId| {
                let h = store.hosts().expect("hosts").into_iter().find(|h| h.id == id).expect("host");
                (h.shards, h.catalog_used)
            };
            commit(&store, user, host, session, 1, 1).expect("commit");
            commit(&store, user, host, session, 2, 2).expect("commit");
            assert_eq!((held(host), held(other)), ((2, 128), (0, 0)));
            let m = ShardMove { pack: &PackId::from_bytes([1; 32]), index: 0, from: host, to: other, receipt: "r" };
            assert!(store.move_shard(m, 2, None).expect("move"));
            assert_eq!((held(host), held(other)), ((1, 64), (1, 64)));
            store.shard_deleted(&PackId::from_bytes([2; 32]), 0, None, 3).expect("delete");
            store.shard_deleted(&PackId::from_bytes([2; 32]), 0, None, 3).expect("a second delete changes nothing");
            assert_eq!((held(host), held(other)), ((0, 0), (1, 64)));
        }
    }

    fn commit(store: &Store, user: UserId, host: HostId, session: u64, pack: u8, shard: u8) -> Result<(), StoreError> {
        let shards = [StoredShard {
            index: 0,
            shard: ShardId::from_bytes([shard; 32]),
            host,
            receipt: SignedReceipt("r".into()),
        }];
        store.commit_pack(
            &NewPack {
                id: PackId::from_bytes([pack; 32]),
                user,
                session,
                size: 10,
                k: 1,
                m: 0,
                shard_size: 64,
                shards: &shards,
                chunks: &[],
                relocate: false,
            },
            1,
        )
    }

    crate::store::testing::conformance! {
        fn a_shard_is_recorded_once_per_host() {
            let (_d, store, user, host, session) = setup();
            commit(&store, user, host, session, 1, 7).expect("first");
            assert!(matches!(commit(&store, user, host, session, 2, 7), Err(StoreError::ShardTaken(h)) if h == host));
            assert!(!store.pack_exists(&PackId::from_bytes([2; 32])).expect("exists"), "nothing of it was recorded");
        }
    }

    crate::store::testing::conformance! {
        fn repair_leaves_out_hosts_where_another_pack_records_the_shard() {
            let (_d, store, user, host, session) = setup();
            commit(&store, user, host, session, 1, 7).expect("commit");
            let shard = ShardId::from_bytes([7; 32]);
            assert!(store.hosts_holding(&PackId::from_bytes([1; 32]), &[shard]).expect("holding").is_empty());
            assert_eq!(store.hosts_holding(&PackId::from_bytes([2; 32]), &[shard]).expect("holding"), vec![host]);
        }
    }

    crate::store::testing::conformance! {
        fn only_failures_of_receipted_shards_count_against_the_host() {
            let (_d, store, user, host, session) = setup();
            commit(&store, user, host, session, 1, 7).expect("commit");
            let conn = store.conn();
            conn.execute("UPDATE shards SET receipt = NULL", params![]).expect("sql");
            let pack = PackId::from_bytes([1; 32]);
            for _ in 0..5 {
                assert!(!store.record_audit(host, &pack, 0, false, None, 0).expect("audit"));
            }
            let h = store.hosts().expect("hosts").remove(0);
            assert_eq!((h.audits_failed, h.state), (0, crate::store::Standing::Active));
            assert_eq!(store.receipts_wanted(host, 10).expect("wanted"), vec![ShardId::from_bytes([7; 32])]);
            // A backfilled receipt must state the shard's size.
            let shard = ShardId::from_bytes([7; 32]);
            assert_eq!(store.record_receipts(host, &[(shard, 65, "r".into())]).expect("record"), 0);
            assert_eq!(store.record_receipts(host, &[(shard, 64, "r".into())]).expect("record"), 1);
            assert!(store.receipts_wanted(host, 10).expect("wanted").is_empty());
            // Now failures count, and enough of them disqualify.
            let conn = store.conn();
            conn.execute("UPDATE shards SET state = 'ok'", params![]).expect("sql");
            let disqualified =
                (0..DISQUALIFY_AFTER).map(|_| store.record_audit(host, &pack, 0, false, None, 0).expect("audit"));
            assert_eq!(disqualified.last(), Some(true));
        }
    }

    crate::store::testing::conformance! {
        fn a_shard_another_pack_still_places_is_not_deleted_from_its_host() {
            let (_d, store, user, host, session) = setup();
            commit(&store, user, host, session, 1, 7).expect("commit");
            // A catalog from before receipts may hold the same (host, shard) in two packs.
            let conn = store.conn();
            conn.execute(
                "INSERT INTO packs (id, user, session, size, k, m, shard_size, state, created)
                 VALUES (?1, ?2, ?3, 10, 1, 0, 64, 'deleting', 1)",
                params![&[2u8; 32][..], user.0 as i64, session as i64],
            )
            .expect("sql");
            conn.execute(
                "INSERT INTO shards (pack, idx, hash, host, state) VALUES (?1, 0, ?2, ?3, 'ok')",
                params![&[2u8; 32][..], &[7u8; 32][..], host.0 as i64],
            )
            .expect("sql");
            let todo = store.shards_to_delete(10, u64::MAX).expect("to delete");
            assert_eq!(todo.len(), 1);
            assert!(todo[0].4, "pack 1 still needs the shard: only the row goes");
        }
    }
}
