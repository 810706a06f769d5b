//! A host's terms and measured record: what it declares at join and with every heartbeat,
//! and what the coordinator counts of it (time online, bytes served, read speed, repairs it
//! caused).
//!
//! Terms are the host's latest word: a host may change them across restarts and the
//! coordinator uses the newest value. That lets no host escape a commitment: moving `until`
//! later does not undo a drain or retirement already decided (those states only go
//! forward), and moving it sooner only makes the coordinator drain it sooner.

use scatter_core::HostId;

use super::{Fence, Standing, Store, StoreError, Terms};

/// Most bytes per second of the gap since its last heartbeat a host may claim to have
/// served: more than any host serves (10 GiB/s), so only a nonsensical claim is cut.
pub const MAX_SERVED_PER_SEC: u64 = 10 << 30;

/// Largest read speed sample kept (1 TiB/s): a bound, not a measurement.
const MAX_BANDWIDTH_SAMPLE: u64 = 1 << 40;

/// A host joining the grid.
pub struct NewHost<'a> {
    /// Hash of the secret it proves itself with.
    pub secret_hash: &'a [u8; 32],
    /// Where clients reach it.
    pub address: &'a str,
    /// Its zone label.
    pub zone: &'a str,
    /// Bytes it offers.
    pub capacity: u64,
    /// The public half of its receipt key.
    pub receipt_key: Option<&'a [u8; 32]>,
    /// The operator whose token it joined with (`None`: the grid's own token).
    pub operator: Option<u64>,
    /// The terms it offers.
    pub terms: &'a Terms,
}

/// What a host reports with a heartbeat.
pub struct Beat<'a> {
    /// Its current address.
    pub address: &'a str,
    /// Bytes it offers.
    pub capacity: u64,
    /// Bytes of shards it holds.
    pub used: u64,
    /// Bytes free on its disk.
    pub free: u64,
    /// The terms it offers now.
    pub terms: &'a Terms,
    /// Shard bytes it says it served since its last heartbeat.
    pub served: u64,
}

/// A count or size as SQLite keeps it (signed 64 bits), saturating.
fn db_int(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

impl Store {
    /// What live packs keep on `host`, by code: (k, m, shards, bytes), for the check before
    /// a drain.
    pub fn held_by_code(&self, host: HostId) -> Result<Vec<(u8, u8, u64, u64)>, StoreError> {
        self.read(|c| {
            Ok(c.query_map(
                "SELECT p.k, p.m, COUNT(*), CAST(SUM(p.shard_size) AS BIGINT)
                 FROM shards s JOIN packs p ON p.id = s.pack
                 WHERE s.host = ?1 AND p.state = 'live' GROUP BY p.k, p.m ORDER BY p.k, p.m",
                params![host.0 as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get::<i64>(2)? as u64, r.get::<i64>(3)? as u64)),
            )?)
        })
    }

    /// Registers a new host with its operator and terms.
    pub fn join_host(&self, h: &NewHost<'_>, now: u64) -> Result<HostId, StoreError> {
        self.write(|conn| {
            let id: i64 = conn.query_row(
                "INSERT INTO hosts (secret_hash, address, zone, capacity, last_seen, joined, receipt_key, operator,
                                    price, egress_price, bandwidth, until)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8, ?9, ?10, ?11) RETURNING id",
                params![
                    &h.secret_hash[..],
                    h.address,
                    h.zone,
                    db_int(h.capacity),
                    db_int(now),
                    h.receipt_key.map(|k| &k[..]),
                    h.operator.map(db_int),
                    db_int(h.terms.price),
                    db_int(h.terms.egress_price),
                    db_int(h.terms.bandwidth),
                    h.terms.until.map(db_int),
                ],
                |r| r.get(0),
            )?;
            Ok(HostId(id as u64))
        })
    }

    /// Records a heartbeat: the host's report and terms, and its record. The gap since the
    /// last heartbeat counts as time online when it is within `grace` seconds (a host that
    /// was silent longer gets nothing for the silence); the bytes it claims to have served
    /// count up to [`MAX_SERVED_PER_SEC`] over that gap. Returns the gap in seconds and the
    /// host's standing (0 and none for an unknown host).
    pub fn heartbeat(
        &self,
        id: HostId,
        beat: &Beat<'_>,
        grace: u64,
        now: u64,
    ) -> Result<(u64, Option<Standing>), StoreError> {
        self.write(|tx| {
            let row: Option<(i64, i64, i64, Standing)> = tx.query_opt(
                "SELECT last_seen, online_secs, served_bytes, state FROM hosts WHERE id = ?1",
                params![id.0 as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
            let Some((last_seen, online, served, standing)) = row else { return Ok((0, None)) };
            let gap = now.saturating_sub(last_seen.max(0) as u64);
            let online = (online.max(0) as u64).saturating_add(if gap <= grace { gap } else { 0 });
            let claim = beat.served.min(gap.max(1).saturating_mul(MAX_SERVED_PER_SEC));
            let served = (served.max(0) as u64).saturating_add(claim);
            // `served_bytes` and `online_secs` reach usage records at the next metering sample.
            tx.execute(
                "UPDATE hosts SET address = ?2, capacity = ?3, reported_used = ?4, free = ?5,
                                  last_seen = CASE WHEN last_seen > ?6 THEN last_seen ELSE ?6 END, online_secs = ?7, served_bytes = ?8,
                                  price = ?9, egress_price = ?10, bandwidth = ?11, until = ?12
                 WHERE id = ?1",
                params![
                    id.0 as i64,
                    beat.address,
                    db_int(beat.capacity),
                    db_int(beat.used),
                    db_int(beat.free),
                    db_int(now),
                    db_int(online),
                    db_int(served),
                    db_int(beat.terms.price),
                    db_int(beat.terms.egress_price),
                    db_int(beat.terms.bandwidth),
                    beat.terms.until.map(db_int),
                ],
            )?;
            Ok((gap, Some(standing)))
        })
    }

    /// Folds a measured read speed (bytes per second) into the host's record: the first
    /// sample is taken as is, later ones weigh a quarter, so one slow read moves it little.
    pub fn record_bandwidth(&self, id: HostId, sample: u64) -> Result<(), StoreError> {
        self.write(|c| {
            Ok(c.execute(
                "UPDATE hosts SET measured_bandwidth =
                 CASE WHEN measured_bandwidth <= 0 THEN ?2 ELSE (3 * measured_bandwidth + ?2) / 4 END
             WHERE id = ?1",
                params![id.0 as i64, db_int(sample.min(MAX_BANDWIDTH_SAMPLE))],
            )?)
        })?;
        Ok(())
    }

    /// Counts one shard rebuilt elsewhere because the host lost or damaged it.
    pub fn count_repair_caused(&self, id: HostId) -> Result<(), StoreError> {
        self.write(|c| {
            Ok(c.execute("UPDATE hosts SET repairs_caused = repairs_caused + 1 WHERE id = ?1", params![id.0 as i64])?)
        })?;
        Ok(())
    }

    /// Sets a host's state to `to` if it is in one of the states `from`; returns whether it
    /// changed. The check and the change are one statement, so a state an admin set in the
    /// meantime is not overwritten.
    pub fn change_host_state(
        &self,
        id: HostId,
        from: &[Standing],
        to: Standing,
        fence: Option<&Fence>,
        now: u64,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            super::leases::check(tx, fence, now)?;
            let current: Option<Standing> =
                tx.query_opt("SELECT state FROM hosts WHERE id = ?1", params![id.0 as i64], |r| r.get(0))?;
            let changed = match current.filter(|c| from.contains(c)) {
                Some(current) => tx.execute(
                    "UPDATE hosts SET state = ?3 WHERE id = ?1 AND state = ?2",
                    params![id.0 as i64, current, to],
                )?,
                None => 0,
            };
            // Committed either way: the fence check renewed the lease.
            Ok(changed > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (crate::store::testing::Guard, Store, HostId) {
        let (dir, store) = crate::store::testing::catalog();
        let terms = Terms { price: 1_500_000, egress_price: 20_000, bandwidth: 1 << 20, until: Some(5000) };
        let h = NewHost {
            secret_hash: &[3; 32],
            address: "http://127.0.0.1:1",
            zone: "z",
            capacity: 1 << 30,
            receipt_key: None,
            operator: None,
            terms: &terms,
        };
        let id = store.join_host(&h, 1000).expect("join");
        (dir, store, id)
    }

    fn beat(store: &Store, id: HostId, terms: &Terms, served: u64, now: u64) {
        let b = Beat { address: "http://127.0.0.1:2", capacity: 1 << 30, used: 0, free: 1 << 40, terms, served };
        store.heartbeat(id, &b, 30, now).expect("heartbeat");
    }

    fn row(store: &Store) -> crate::store::HostRow {
        store.hosts().expect("hosts").remove(0)
    }

    crate::store::testing::conformance! {
        fn heartbeats_count_time_online_within_the_grace_only() {
            let (_d, store, id) = store();
            let terms = row(&store).terms;
            assert_eq!((terms.price, terms.until, row(&store).record.joined), (1_500_000, Some(5000), 1000));
            beat(&store, id, &terms, 0, 1010);
            beat(&store, id, &terms, 0, 1040);
            assert_eq!(row(&store).record.online_secs, 40, "gaps of 10 and 30 s, within the grace");
            // Silent for 100 s: the silence does not count, the heartbeats after it do.
            beat(&store, id, &terms, 0, 1140);
            beat(&store, id, &terms, 0, 1150);
            assert_eq!(row(&store).record.online_secs, 50);
            // A clock going back counts nothing and does not move last_seen back.
            beat(&store, id, &terms, 0, 1100);
            let r = row(&store);
            assert_eq!((r.record.online_secs, r.last_seen), (50, 1150));
        }
    }

    crate::store::testing::conformance! {
        fn served_bytes_are_a_claim_capped_by_the_gap() {
            let (_d, store, id) = store();
            let terms = row(&store).terms;
            beat(&store, id, &terms, 5 << 20, 1010);
            assert_eq!(row(&store).record.served_bytes, 5 << 20);
            // 10 s at most 10 GiB/s: a claim of an exabyte counts as 100 GiB.
            beat(&store, id, &terms, u64::MAX, 1020);
            assert_eq!(row(&store).record.served_bytes, (5 << 20) + 10 * MAX_SERVED_PER_SEC);
            // Two heartbeats in the same second still count a second's worth, no more.
            beat(&store, id, &terms, u64::MAX, 1020);
            assert_eq!(row(&store).record.served_bytes, (5 << 20) + 11 * MAX_SERVED_PER_SEC);
        }
    }

    crate::store::testing::conformance! {
        fn heartbeats_carry_the_latest_terms() {
            let (_d, store, id) = store();
            let later = Terms { price: 0, egress_price: 0, bandwidth: 0, until: None };
            beat(&store, id, &later, 0, 1010);
            let r = row(&store);
            assert_eq!((r.terms, r.address.as_str()), (later, "http://127.0.0.1:2"));
        }
    }

    crate::store::testing::conformance! {
        fn bandwidth_is_smoothed_and_repairs_counted() {
            let (_d, store, id) = store();
            store.record_bandwidth(id, 100 << 20).expect("first");
            assert_eq!(row(&store).record.measured_bandwidth, 100 << 20, "the first sample as is");
            store.record_bandwidth(id, 20 << 20).expect("second");
            assert_eq!(row(&store).record.measured_bandwidth, 80 << 20, "(3·100 + 20) / 4");
            store.count_repair_caused(id).expect("count");
            store.count_repair_caused(id).expect("count");
            assert_eq!(row(&store).record.repairs_caused, 2);
        }
    }

    crate::store::testing::conformance! {
        fn state_changes_only_from_the_states_named() {
            let (_d, store, id) = store();
            assert!(store.change_host_state(id, &[Standing::Active], Standing::Draining, None, 0).expect("drain"));
            assert!(!store.change_host_state(id, &[Standing::Active], Standing::Draining, None, 0).expect("again"));
            assert!(store.set_host_state(id, Standing::Disabled).expect("admin"));
            assert!(!store
                .change_host_state(id, &[Standing::Active, Standing::Draining], Standing::Retired, None, 0)
                .expect("retire"));
            assert_eq!(row(&store).state, Standing::Disabled);
            assert!(!store
                .change_host_state(HostId(99), &[Standing::Active], Standing::Retired, None, 0)
                .expect("no host"));
        }
    }
}
