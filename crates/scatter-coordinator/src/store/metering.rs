//! Usage records, running tallies, the sampler's byte-seconds, rate cards, closed periods
//! and recovery gaps (see [`crate::metering`] for what they mean and how statements are
//! built from them).
//!
//! - `meter_records` is append-only: nothing here updates or deletes a row. A record is
//!   written in the transaction of the fact it counts ([`record`], called where the catalog
//!   changes: `held` and `stored` in the store's module, repair's `move_shard`, audits).
//! - `meter_current` holds the running tallies (bytes a user stores, with and without
//!   redundancy; bytes a host holds), changed by the same [`record`] call, so the sampler
//!   reads one row per user and host instead of summing packs.
//! - A record whose period is closed is written into the next open period, marked as an
//!   adjustment of the closed one: a closed period's records never change.

use std::collections::BTreeMap;

use scatter_core::{HostId, ShardId, UserId};
use scatter_proto::billing::{Gap, RateCard, Statement};

use super::sql::{Sql, SqlError};
use super::{leases, Fence, Store, StoreError};
use crate::metering::{self, HostStanding, Kind, Period, Record, Subject};

/// The tables, created with the schema (and by the migration to this version).
pub(super) const DDL: &str = "
-- What reads each account was charged for lately (see `Store::charge_reads`): per account,
-- host and shard, when its window opened and the bytes charged in it.
CREATE TABLE IF NOT EXISTS read_charges (
    user INTEGER NOT NULL,
    host INTEGER NOT NULL,
    shard BLOB NOT NULL,
    opened INTEGER NOT NULL,
    charged INTEGER NOT NULL,
    PRIMARY KEY (user, host, shard)
);
CREATE INDEX IF NOT EXISTS read_charges_by_age ON read_charges(opened);
CREATE TABLE IF NOT EXISTS meter_records (
    id INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    period TEXT NOT NULL,
    subject TEXT NOT NULL,
    who INTEGER NOT NULL,
    kind TEXT NOT NULL,
    amount INTEGER NOT NULL,
    claim INTEGER NOT NULL DEFAULT 0,
    adjusts TEXT
);
CREATE INDEX IF NOT EXISTS meter_records_by_period ON meter_records(period, subject, who);
CREATE TABLE IF NOT EXISTS meter_current (
    subject TEXT NOT NULL,
    who INTEGER NOT NULL,
    kind TEXT NOT NULL,
    slot INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    PRIMARY KEY (subject, who, kind, slot)
);
CREATE TABLE IF NOT EXISTS meter_periods (
    period TEXT PRIMARY KEY,
    closed INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meter_rates (
    effective INTEGER PRIMARY KEY,
    currency TEXT NOT NULL,
    storage_gib_month INTEGER NOT NULL,
    egress_gib INTEGER NOT NULL,
    host_storage_gib_month INTEGER NOT NULL,
    host_egress_gib INTEGER NOT NULL,
    set_at INTEGER NOT NULL,
    set_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meter_gaps (
    start_time INTEGER NOT NULL,
    end_time INTEGER NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (start_time, end_time)
);
";

/// The migration to this schema version: the tables, and opening tallies from what the
/// catalog holds already (sampled from the first pass on; no usage before it is recorded).
pub(super) const MIGRATION: &str = "
CREATE TABLE IF NOT EXISTS meter_records (
    id INTEGER PRIMARY KEY, time INTEGER NOT NULL, period TEXT NOT NULL, subject TEXT NOT NULL,
    who INTEGER NOT NULL, kind TEXT NOT NULL, amount INTEGER NOT NULL,
    claim INTEGER NOT NULL DEFAULT 0, adjusts TEXT
);
CREATE TABLE IF NOT EXISTS meter_current (
    subject TEXT NOT NULL, who INTEGER NOT NULL, kind TEXT NOT NULL, slot INTEGER NOT NULL,
    amount INTEGER NOT NULL, PRIMARY KEY (subject, who, kind, slot)
);
INSERT INTO meter_current (subject, who, kind, slot, amount)
    SELECT 'user', user, 'stored', 0, SUM(bytes) FROM usage_counts GROUP BY user HAVING SUM(bytes) > 0;
INSERT INTO meter_current (subject, who, kind, slot, amount)
    SELECT 'user', user, 'logical', 0, SUM(size) FROM packs WHERE state = 'live' GROUP BY user;
INSERT INTO meter_current (subject, who, kind, slot, amount)
    SELECT 'host', id, 'held', 0, held_bytes FROM hosts WHERE held_bytes > 0;
INSERT INTO meter_current (subject, who, kind, slot, amount)
    SELECT 'host', id, 'served_seen', 0, served_bytes FROM hosts;
INSERT INTO meter_current (subject, who, kind, slot, amount)
    SELECT 'host', id, 'online_seen', 0, online_secs FROM hosts
";

/// Meta key: unix time up to which byte-seconds have been recorded.
const SAMPLED_AT: &str = "meter_sampled_at";

/// The unix time up to which byte-seconds have been recorded ([`SAMPLED_AT`]), if any.
fn sampled_at(conn: &Sql<'_>) -> Result<Option<u64>, SqlError> {
    let value = conn.query_opt("SELECT value FROM meta WHERE key = ?1", params![SAMPLED_AT], |r| r.get::<String>(0))?;
    Ok(value.and_then(|v| v.parse().ok()))
}

fn now_wall() -> u64 {
    crate::now()
}

fn is_closed(conn: &Sql<'_>, period: Period) -> Result<bool, SqlError> {
    conn.exists("SELECT 1 FROM meter_periods WHERE period = ?1", params![period.to_string()])
}

/// Appends a usage record at `time` (its period, or the next open one as an adjustment if
/// that is closed) and moves the running tally of tallied kinds, in the caller's transaction.
pub(crate) fn record(conn: &Sql<'_>, subject: Subject, kind: Kind, amount: i64, time: u64) -> Result<(), SqlError> {
    record_in(conn, subject, kind, amount, time, 0)
}

/// [`record`], moving the tally in row `slot`.
pub(crate) fn record_in(
    conn: &Sql<'_>,
    subject: Subject,
    kind: Kind,
    amount: i64,
    time: u64,
    slot: u8,
) -> Result<(), SqlError> {
    if amount == 0 {
        return Ok(());
    }
    let mut period = Period::of(time);
    let mut adjusts = None;
    while is_closed(conn, period)? {
        adjusts.get_or_insert(Period::of(time));
        period = period.next();
    }
    conn.execute(
        "INSERT INTO meter_records (time, period, subject, who, kind, amount, claim, adjusts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            time as i64,
            period.to_string(),
            subject.kind_str(),
            subject.id() as i64,
            kind.as_str(),
            amount,
            i64::from(kind.is_claim()),
            adjusts.map(|p: Period| p.to_string())
        ],
    )?;
    if kind.sampled_as().is_some() {
        conn.execute(
            "INSERT INTO meter_current (subject, who, kind, slot, amount) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (subject, who, kind, slot) DO UPDATE SET amount = meter_current.amount + excluded.amount",
            params![subject.kind_str(), subject.id() as i64, kind.as_str(), slot, amount],
        )?;
    }
    Ok(())
}

/// [`record_in`] now (wall clock): the hook the catalog's counters call.
pub(crate) fn record_now(conn: &Sql<'_>, subject: Subject, kind: Kind, amount: i64, slot: u8) -> Result<(), SqlError> {
    record_in(conn, subject, kind, amount, now_wall(), slot)
}

fn rate_cards(conn: &Sql<'_>) -> Result<Vec<RateCard>, SqlError> {
    conn.query_map(
        "SELECT effective, currency, storage_gib_month, egress_gib, host_storage_gib_month, host_egress_gib, set_at, set_by
         FROM meter_rates ORDER BY effective",
        params![],
        |r| {
            Ok(RateCard {
                effective: r.get::<i64>(0)? as u64,
                currency: r.get(1)?,
                storage_gib_month: r.get::<i64>(2)? as u64,
                egress_gib: r.get::<i64>(3)? as u64,
                host_storage_gib_month: r.get::<i64>(4)? as u64,
                host_egress_gib: r.get::<i64>(5)? as u64,
                set_at: r.get::<i64>(6)? as u64,
                set_by: r.get(7)?,
            })
        },
    )
}

fn record_row(r: &super::sql::Row) -> Result<Option<Record>, SqlError> {
    let (id, time, period, subject, who, kind, amount, adjusts): (
        i64,
        i64,
        String,
        String,
        i64,
        String,
        i64,
        Option<String>,
    ) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?);
    let (Ok(period), Some(subject), Some(kind)) =
        (period.parse::<Period>(), Subject::parse(&subject, who as u64), Kind::parse(&kind))
    else {
        return Ok(None);
    };
    Ok(Some(Record {
        id: id as u64,
        time: time as u64,
        period,
        subject,
        kind,
        amount,
        adjusts: adjusts.and_then(|a| a.parse().ok()),
    }))
}

/// Why a billing change was refused.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// A rate card would change the prices of a closed period.
    #[error("prices from {0} would change period {1}, which is closed; set them from {2} or later")]
    ClosedPrices(String, String, String),
    /// The period is not over yet.
    #[error("period {0} is not over until {1}; close it after that")]
    NotOver(String, String),
    /// A rate card would bill one period in two currencies.
    #[error(
        "prices in {0} from {1} would bill period {2} partly in {3}: a period is billed in one currency; change it from the start of a period ({4})"
    )]
    MixedCurrency(String, String, String, String, String),
}

/// Records, for each host, what its heartbeats added to its served bytes (a claim) and its
/// time online since the last sample, from the hosts' own counters and the marks kept in
/// `meter_current` (kinds `served_seen`, `online_seen`): one record per host and sample
/// rather than one per heartbeat. Returns the records written.
fn host_counters(conn: &Sql<'_>, now: u64) -> Result<u64, SqlError> {
    let hosts: Vec<(i64, i64, i64)> =
        conn.query_map("SELECT id, served_bytes, online_secs FROM hosts ORDER BY id", params![], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    let mut written = 0;
    for (id, served, online) in hosts {
        for (mark, value, kind) in [("served_seen", served, Kind::Served), ("online_seen", online, Kind::Online)] {
            let seen: i64 = conn
                .query_opt(
                    "SELECT amount FROM meter_current WHERE subject = 'host' AND who = ?1 AND kind = ?2 AND slot = 0",
                    params![id, mark],
                    |r| r.get(0),
                )?
                .unwrap_or(0);
            if value > seen {
                record(conn, Subject::Host(id as u64), kind, value - seen, now)?;
                written += 1;
            }
            if value != seen {
                conn.execute(
                    "INSERT INTO meter_current (subject, who, kind, slot, amount) VALUES ('host', ?1, ?2, 0, ?3)
                     ON CONFLICT (subject, who, kind, slot) DO UPDATE SET amount = excluded.amount",
                    params![id, mark, value],
                )?;
            }
        }
    }
    Ok(written)
}

/// A read granted: `bytes` of `shard` on `host`, a shard of `shard_size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    /// The host that serves it.
    pub host: HostId,
    /// The shard.
    pub shard: ShardId,
    /// The bytes the grant lets be read.
    pub bytes: u64,
    /// The whole shard's size.
    pub shard_size: u64,
}

impl Store {
    /// Records what reads granted to `user` at `now` cost, in one transaction: egress to
    /// `user`, and for each host the bytes of its shards they let be read (`granted`: the
    /// most a read asks of it, which caps what it may claim to have served). A shard's bytes
    /// are charged to an account at most once per `window` (the grants' lifetime), however
    /// many grants name them and whichever coordinator issues them: without that, a delegate
    /// could run up its owner's bill, and raise what hosts may claim to have served, by
    /// asking for the same grants over and over without reading a byte. A shard read again
    /// within the window is not charged again (nor paid to its host): the price of that
    /// bound. Returns the egress charged.
    pub fn charge_reads(&self, user: UserId, reads: &[Read], window: u64, now: u64) -> Result<u64, StoreError> {
        if reads.is_empty() {
            return Ok(0);
        }
        self.write(|tx| {
            let mut per_host: BTreeMap<u64, i64> = BTreeMap::new();
            let mut egress = 0u64;
            for read in reads {
                let shard = &read.shard.as_bytes()[..];
                let key = params![user.0 as i64, read.host.0 as i64, shard];
                let seen: Option<(i64, i64)> = tx.query_opt(
                    "SELECT opened, charged FROM read_charges WHERE user = ?1 AND host = ?2 AND shard = ?3",
                    key,
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                let (opened, charged) = match seen {
                    Some((opened, charged)) if (opened.max(0) as u64).saturating_add(window) > now => {
                        (opened.max(0) as u64, charged.max(0) as u64)
                    }
                    _ => (now, 0),
                };
                let due = read.bytes.min(read.shard_size.saturating_sub(charged));
                tx.execute(
                    "INSERT INTO read_charges (user, host, shard, opened, charged) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (user, host, shard) DO UPDATE SET opened = excluded.opened, charged = excluded.charged",
                    params![user.0 as i64, read.host.0 as i64, shard, opened as i64, (charged + due) as i64],
                )?;
                *per_host.entry(read.host.0).or_default() += due as i64;
                egress += due;
            }
            record(tx, Subject::User(user.0), Kind::Egress, egress as i64, now)?;
            for (host, bytes) in per_host {
                record(tx, Subject::Host(host), Kind::Granted, bytes, now)?;
            }
            Ok(egress)
        })
    }

    /// Forgets the read charges whose `window` closed by `now`: their shards are charged
    /// again when read again. Returns how many.
    pub fn forget_read_charges(&self, window: u64, now: u64) -> Result<u64, StoreError> {
        let closed = now.saturating_sub(window) as i64;
        self.write(|tx| Ok(tx.execute("DELETE FROM read_charges WHERE opened <= ?1", params![closed])? as u64))
    }

    /// Records usage now, one transaction (facts seen outside a catalog change: bytes the
    /// repairer read, grants issued, hosts' claims of bytes served).
    pub fn record_usage(&self, records: &[(Subject, Kind, i64)], now: u64) -> Result<(), StoreError> {
        if records.iter().all(|(_, _, a)| *a == 0) {
            return Ok(());
        }
        self.write(|tx| {
            for (s, k, a) in records {
                record(tx, *s, *k, *a, now)?;
            }
            Ok(())
        })
    }

    /// Adds byte-seconds for every running tally since the last sample (split at period
    /// starts and rate changes) and moves the sample time to `now`, under the metering job's
    /// lease. The first sample only sets the time. Returns the records written.
    pub fn sample_usage(&self, fence: Option<&Fence>, now: u64) -> Result<u64, StoreError> {
        self.write(|tx| {
            leases::check(tx, fence, now)?;
            let last = sampled_at(tx)?;
            let mut written = 0;
            if let Some(last) = last.filter(|l| *l < now) {
                let cuts: Vec<u64> = rate_cards(tx)?.iter().map(|c| c.effective).collect();
                let tallies: Vec<(String, i64, String, i64)> = tx.query_map(
                    "SELECT subject, who, kind, CAST(SUM(amount) AS BIGINT) FROM meter_current
                     GROUP BY subject, who, kind HAVING SUM(amount) > 0 ORDER BY subject, who, kind",
                    params![],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )?;
                let spans = metering::segments(last, now, &cuts);
                for (subject, who, kind, bytes) in tallies {
                    let (Some(subject), Some(sampled)) =
                        (Subject::parse(&subject, who as u64), Kind::parse(&kind).and_then(Kind::sampled_as))
                    else {
                        continue;
                    };
                    for (a, b) in &spans {
                        let amount = i64::try_from(i128::from(bytes) * i128::from(b - a)).unwrap_or(i64::MAX);
                        record(tx, subject, sampled, amount, *a)?;
                        written += 1;
                    }
                }
            }
            written += host_counters(tx, now)?;
            if last.is_none_or(|l| l < now) {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    params![SAMPLED_AT, now.to_string()],
                )?;
            }
            Ok(written)
        })
    }

    /// The raw records of `period` (all if none), of one subject if given, in append order.
    pub fn usage_records(&self, period: Option<Period>, subject: Option<Subject>) -> Result<Vec<Record>, StoreError> {
        self.read(|c| {
            let cols = "SELECT id, time, period, subject, who, kind, amount, adjusts FROM meter_records";
            let rows: Vec<Option<Record>> = match (period, subject) {
                (Some(p), Some(s)) => c.query_map(
                    &format!("{cols} WHERE period = ?1 AND subject = ?2 AND who = ?3 ORDER BY id"),
                    params![p.to_string(), s.kind_str(), s.id() as i64],
                    record_row,
                )?,
                (Some(p), None) => {
                    c.query_map(&format!("{cols} WHERE period = ?1 ORDER BY id"), params![p.to_string()], record_row)?
                }
                (None, Some(s)) => c.query_map(
                    &format!("{cols} WHERE subject = ?1 AND who = ?2 ORDER BY id"),
                    params![s.kind_str(), s.id() as i64],
                    record_row,
                )?,
                (None, None) => c.query_map(&format!("{cols} ORDER BY id"), params![], record_row)?,
            };
            Ok(rows.into_iter().flatten().collect())
        })
    }

    /// A running tally now (0 if none): a user's `stored` or `logical` bytes, a host's `held`.
    pub fn tally(&self, subject: Subject, kind: Kind) -> Result<i64, StoreError> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM meter_current
                 WHERE subject = ?1 AND who = ?2 AND kind = ?3",
                params![subject.kind_str(), subject.id() as i64, kind.as_str()],
                |r| r.get::<i64>(0),
            )?)
        })
    }

    /// How many object versions and snapshots `user` has now.
    pub fn object_counts(&self, user: u64) -> Result<(u64, u64), StoreError> {
        self.read(|c| {
            let count = |table: &str| -> Result<u64, SqlError> {
                let n: i64 =
                    c.query_row(&format!("SELECT COUNT(*) FROM {table} WHERE user = ?1"), params![user as i64], |r| {
                        r.get(0)
                    })?;
                Ok(n.max(0) as u64)
            };
            Ok((count("objects")?, count("snapshots")?))
        })
    }

    /// Adds a rate card. Refused if it would apply within a closed period.
    pub fn set_rate_card(&self, card: &RateCard) -> Result<Result<(), BillingError>, StoreError> {
        self.write(|tx| {
            let closed: Vec<String> =
                tx.query_map("SELECT period FROM meter_periods ORDER BY period DESC", params![], |r| r.get(0))?;
            if let Some(last) = closed.iter().filter_map(|p| p.parse::<Period>().ok()).max() {
                if card.effective < last.end() {
                    return Ok(Err(BillingError::ClosedPrices(
                        metering::format_time(card.effective),
                        last.to_string(),
                        metering::format_time(last.end()),
                    )));
                }
            }
            // The cards that price the same period: those starting in it, and the one in
            // force at its start unless this one starts there (a statement had the new
            // currency's name on amounts priced in the old one).
            let period = Period::of(card.effective);
            let cards = rate_cards(tx)?;
            let at_start = cards.iter().rfind(|c| c.effective <= period.start());
            let same_period = cards.iter().filter(|c| {
                c.effective != card.effective && c.effective >= period.start() && c.effective < period.end()
            });
            let before = at_start.filter(|_| card.effective > period.start());
            if let Some(other) = same_period.chain(before).find(|c| c.currency != card.currency) {
                return Ok(Err(BillingError::MixedCurrency(
                    card.currency.clone(),
                    metering::format_time(card.effective),
                    period.to_string(),
                    other.currency.clone(),
                    metering::format_time(period.end()),
                )));
            }
            tx.execute(
                "INSERT INTO meter_rates (effective, currency, storage_gib_month, egress_gib, host_storage_gib_month,
                                          host_egress_gib, set_at, set_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (effective) DO UPDATE SET currency = excluded.currency,
                     storage_gib_month = excluded.storage_gib_month, egress_gib = excluded.egress_gib,
                     host_storage_gib_month = excluded.host_storage_gib_month,
                     host_egress_gib = excluded.host_egress_gib, set_at = excluded.set_at, set_by = excluded.set_by",
                params![
                    card.effective as i64,
                    card.currency,
                    card.storage_gib_month as i64,
                    card.egress_gib as i64,
                    card.host_storage_gib_month as i64,
                    card.host_egress_gib as i64,
                    card.set_at as i64,
                    card.set_by
                ],
            )?;
            Ok(Ok(()))
        })
    }

    /// Every rate card, oldest first.
    pub fn rate_cards(&self) -> Result<Vec<RateCard>, StoreError> {
        self.read(|c| Ok(rate_cards(c)?))
    }

    /// Closes `period` once it is over at `now`: later records for it go into the next open
    /// period as adjustments. Returns whether it was open.
    pub fn close_period(&self, period: Period, now: u64) -> Result<Result<bool, BillingError>, StoreError> {
        self.write(|tx| {
            if period.end() > now {
                return Ok(Err(BillingError::NotOver(period.to_string(), metering::format_time(period.end()))));
            }
            let n = tx.execute(
                "INSERT INTO meter_periods (period, closed) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![period.to_string(), now as i64],
            )?;
            Ok(Ok(n == 1))
        })
    }

    /// Records that no usage was recorded from `from` to `to` (a catalog recovered from a
    /// backup taken at `from`), and starts sampling afresh at `to`: byte-seconds for the gap
    /// are not made up from the backup's tallies.
    pub fn record_gap(&self, from: u64, to: u64, reason: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO meter_gaps (start_time, end_time, reason) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![from as i64, to as i64, reason],
            )?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![SAMPLED_AT, to.to_string()],
            )?;
            Ok(())
        })
    }

    /// The statement of `period` at `now`, built from its raw records; only `only`'s part if given.
    pub fn statement(&self, period: Period, only: Option<Subject>, now: u64) -> Result<Statement, StoreError> {
        let records = self.usage_records(Some(period), only)?;
        self.read(|c| {
            let cards = rate_cards(c)?;
            let closed = is_closed(c, period)?;
            let gaps = c.query_map(
                "SELECT start_time, end_time, reason FROM meter_gaps ORDER BY start_time",
                params![],
                |r| Ok(Gap { from: r.get::<i64>(0)? as u64, to: r.get::<i64>(1)? as u64, reason: r.get(2)? }),
            )?;
            let users: BTreeMap<u64, String> = c
                .query_map("SELECT id, name FROM users", params![], |r| Ok((r.get::<i64>(0)? as u64, r.get(1)?)))?
                .into_iter()
                .collect();
            let hosts: BTreeMap<u64, HostStanding> = c
                .query_map("SELECT id, state FROM hosts", params![], |r| {
                    Ok((r.get::<i64>(0)? as u64, HostStanding { state: r.get(1)? }))
                })?
                .into_iter()
                .collect();
            let mut statement = metering::statement(period, closed, &records, &cards, &gaps, &users, &hosts, now);
            statement.sampled_until = sampled_at(c)?;
            Ok(statement)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{catalog, conformance};

    conformance! {
    fn records_sample_and_adjust() {
        let (_guard, store) = catalog();
        let s = &store;
        let nov = Period { year: 2026, month: 11 };
        let start = nov.end() - 100;
        // First sample sets the clock; then 1000 bytes held for 150 s across the month's end.
        s.sample_usage(None, start).expect("test");
        s.write(|tx| Ok(record(tx, Subject::User(1), Kind::Stored, 1000, start)?)).expect("test");
        s.sample_usage(None, start + 150).expect("test");
        let nov_recs = s.usage_records(Some(nov), None).expect("test");
        let secs: i64 = nov_recs.iter().filter(|r| r.kind == Kind::StoredSeconds).map(|r| r.amount).sum();
        assert_eq!(secs, 100_000);
        let dec_recs = s.usage_records(Some(nov.next()), None).expect("test");
        assert_eq!(dec_recs.iter().map(|r| r.amount).sum::<i64>(), 50_000);
        assert_eq!(s.tally(Subject::User(1), Kind::Stored).expect("test"), 1000);
        // Closing is refused before the month is over; then a late record is an adjustment.
        assert!(s.close_period(nov, nov.end() - 1).expect("test").is_err());
        assert!(s.close_period(nov, nov.end() + 5).expect("test").expect("test"));
        s.record_usage(&[(Subject::User(1), Kind::Egress, 77)], nov.end() - 3).expect("test");
        let after = s.usage_records(Some(nov), None).expect("test");
        assert_eq!(after, nov_recs, "a closed period's records never change");
        let late = s.usage_records(Some(nov.next()), None).expect("test");
        let adj = late.iter().find(|r| r.kind == Kind::Egress).expect("test");
        assert_eq!((adj.adjusts, adj.amount), (Some(nov), 77));
        // Prices within a closed period are refused.
        let card = RateCard {
            effective: nov.start(),
            currency: "X".into(),
            storage_gib_month: 1,
            egress_gib: 1,
            host_storage_gib_month: 1,
            host_egress_gib: 1,
            set_at: 0,
            set_by: "u1".into(),
        };
        assert!(s.set_rate_card(&card).expect("test").is_err());
        assert!(s.set_rate_card(&RateCard { effective: nov.end(), ..card.clone() }).expect("test").is_ok());
        // A period is billed in one currency: another one only from a period's start.
        let dec = nov.next();
        let in_y = |effective| RateCard { effective, currency: "Y".into(), ..card.clone() };
        let mixed = s.set_rate_card(&in_y(dec.start() + 2 * 86_400)).expect("test");
        assert!(matches!(mixed, Err(BillingError::MixedCurrency(..))), "{mixed:?}");
        let later_in_x = RateCard { effective: dec.start() + 86_400, ..card.clone() };
        assert!(s.set_rate_card(&later_in_x).expect("test").is_ok(), "the same currency within the period");
        let replaced = s.set_rate_card(&in_y(dec.start())).expect("test");
        assert!(matches!(replaced, Err(BillingError::MixedCurrency(..))), "a later card of the period is in X");
        assert!(s.set_rate_card(&in_y(dec.end())).expect("test").is_ok(), "from the next period's start");
        // A recovery gap restarts sampling at its end.
        s.record_gap(start + 150, start + 1000, "catalog recovered from backup").expect("test");
        assert_eq!(s.sample_usage(None, start + 1000).expect("test"), 0);
        let st = s.statement(nov.next(), None, start + 1000).expect("test");
        assert_eq!(st.gaps.len(), 1);
    }
    }

    conformance! {
    /// A version 14 catalog (before metering) with data: the upgrade opens the tallies with
    /// what it stores, so the first samples count it.
    fn a_version_14_catalog_opens_its_tallies() {
        let (_guard, location) = crate::store::testing::location();
        {
            let store = Store::connect(&location).expect("open");
            let raw = crate::store::testing::Raw(&store);
            for table in ["meter_records", "meter_current", "meter_periods", "meter_rates", "meter_gaps"] {
                raw.execute(&format!("DROP TABLE {table}"), params![]).expect("drop");
            }
            let blob = vec![1u8];
            raw.execute(
                "INSERT INTO users (id, role, public_key, device_key, created) VALUES (3, 'user', 'age1x', ?1, 0)",
                params![blob],
            )
            .expect("user");
            raw.execute("INSERT INTO sessions (id, user, wrapped_key, created) VALUES (1, 3, ?1, 0)", params![blob])
                .expect("session");
            raw.execute(
                "INSERT INTO packs (id, user, session, size, k, m, shard_size, state, created)
                 VALUES (?1, 3, 1, 1000, 4, 2, 256, 'live', 0)",
                params![vec![0xaau8; 32]],
            )
            .expect("pack");
            raw.execute("INSERT INTO usage_counts (user, slot, packs, bytes) VALUES (3, 10, 1, 1536)", params![])
                .expect("counts");
            raw.execute(
                "INSERT INTO hosts (id, secret_hash, address, zone, capacity, last_seen, joined, held_bytes)
                 VALUES (5, ?1, 'http://h', 'z', 1, 0, 0, 256)",
                params![blob],
            )
            .expect("host");
            raw.execute("UPDATE meta SET value = '14' WHERE key = 'schema'", params![]).expect("downgrade");
        }
        let store = Store::connect(&location).expect("migrates");
        assert_eq!(store.tally(Subject::User(3), Kind::Stored).expect("tally"), 1536);
        assert_eq!(store.tally(Subject::User(3), Kind::Logical).expect("tally"), 1000);
        assert_eq!(store.tally(Subject::Host(5), Kind::Held).expect("tally"), 256);
        store.sample_usage(None, 100).expect("first sample");
        store.sample_usage(None, 110).expect("sample");
        let recs = store.usage_records(None, Some(Subject::User(3))).expect("records");
        assert_eq!(recs.iter().filter(|r| r.kind == Kind::StoredSeconds).map(|r| r.amount).sum::<i64>(), 15_360);
    }
    }
}
