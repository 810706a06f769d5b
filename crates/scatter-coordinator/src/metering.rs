//! Metering and billing, the pure half: billing periods on UTC boundaries, the rate card in
//! effect at a time, money in integers, and statements built from raw usage records.
//!
//! The catalog keeps raw usage records (see `store::metering`): each is written in the
//! transaction of the fact it records (a pack committed with its hosts' receipts, a pack
//! released, a shard moved by repair, an audit, read grants issued), or by the sampling job
//! (stored bytes × seconds since the last sample). A statement is a pure function of a
//! period's records, the rate cards and the recovery gaps: [`statement`] here, so the same
//! records always give the same statement, and a unit test can rebuild one from records.
//!
//! Money is integers only: prices are in the smallest unit of the card's currency (e.g.
//! micro-units), quantities are bytes or byte-seconds held in `u128`, and every statement
//! line is rounded once, half up (see [`charge`]).

use std::collections::BTreeMap;

use scatter_proto::billing::{Gap, HostStatement, Line, RateCard, Statement, UserStatement};

/// Bytes in a GiB, the unit prices are quoted per.
pub const GIB: u128 = 1 << 30;

/// Seconds in a billing month for prices per GiB-month: 30 days, whatever the calendar
/// month's length (so a GiB held for all of February costs less than for all of March).
pub const MONTH_SECS: u128 = 30 * 24 * 3600;

/// What a raw usage record counts. Stored as its [`Kind::as_str`] name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// User: bytes its hosts received for a committed pack (every shard, with receipts).
    Ingress,
    /// User: change in bytes its live packs take on hosts (all k+m shards).
    Stored,
    /// User: change in sealed bytes of its live packs (before redundancy).
    Logical,
    /// User: sealed chunk bytes located for reading (the grants issued for them).
    Egress,
    /// User: byte-seconds of [`Kind::Stored`], from the sampler.
    StoredSeconds,
    /// User: byte-seconds of [`Kind::Logical`], from the sampler.
    LogicalSeconds,
    /// Host: change in shard bytes the catalog places on it.
    Held,
    /// Host: byte-seconds of [`Kind::Held`], from the sampler.
    HeldSeconds,
    /// Host: data-shard bytes of read grants issued naming it (a healthy read's share).
    Granted,
    /// Host: bytes it says it served readers (a claim, from its signed-in heartbeat).
    Served,
    /// Host: bytes the repairer read from it.
    RepairServed,
    /// Host: bytes of rebuilt shards it stored for the repairer (with its receipt).
    RepairReceived,
    /// Host: an audit it passed (amount 1).
    AuditPassed,
    /// Host: an audit it failed on a shard it signed a receipt for (amount 1).
    AuditFailed,
    /// Host: seconds online (between heartbeats no further apart than the offline grace).
    Online,
}

impl Kind {
    /// Every kind, for parsing.
    pub const ALL: [Kind; 15] = [
        Kind::Ingress,
        Kind::Stored,
        Kind::Logical,
        Kind::Egress,
        Kind::StoredSeconds,
        Kind::LogicalSeconds,
        Kind::Held,
        Kind::HeldSeconds,
        Kind::Granted,
        Kind::Served,
        Kind::RepairServed,
        Kind::RepairReceived,
        Kind::AuditPassed,
        Kind::AuditFailed,
        Kind::Online,
    ];

    /// The name stored in the catalog and shown in exports.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ingress => "ingress",
            Kind::Stored => "stored",
            Kind::Logical => "logical",
            Kind::Egress => "egress",
            Kind::StoredSeconds => "stored_byte_seconds",
            Kind::LogicalSeconds => "logical_byte_seconds",
            Kind::Held => "held",
            Kind::HeldSeconds => "held_byte_seconds",
            Kind::Granted => "granted",
            Kind::Served => "served",
            Kind::RepairServed => "repair_served",
            Kind::RepairReceived => "repair_received",
            Kind::AuditPassed => "audit_passed",
            Kind::AuditFailed => "audit_failed",
            Kind::Online => "online_seconds",
        }
    }

    /// The kind a stored name names.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether it is a claim (a host's word) rather than a fact the coordinator verified.
    pub fn is_claim(self) -> bool {
        self == Kind::Served
    }

    /// The byte-seconds kind a running tally is sampled into, for the tallied kinds.
    pub fn sampled_as(self) -> Option<Kind> {
        match self {
            Kind::Stored => Some(Kind::StoredSeconds),
            Kind::Logical => Some(Kind::LogicalSeconds),
            Kind::Held => Some(Kind::HeldSeconds),
            _ => None,
        }
    }
}

/// Whose usage a record counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    /// A data user (the account whose data it is, whoever of its delegates acted).
    User(u64),
    /// A storage host.
    Host(u64),
}

impl Subject {
    /// `user` or `host`, as stored.
    pub fn kind_str(self) -> &'static str {
        match self {
            Subject::User(_) => "user",
            Subject::Host(_) => "host",
        }
    }

    /// The user's or host's id.
    pub fn id(self) -> u64 {
        match self {
            Subject::User(id) | Subject::Host(id) => id,
        }
    }

    /// The subject a stored (`kind`, `id`) pair names.
    pub fn parse(kind: &str, id: u64) -> Option<Subject> {
        match kind {
            "user" => Some(Subject::User(id)),
            "host" => Some(Subject::Host(id)),
            _ => None,
        }
    }
}

/// One raw usage record, as read back from the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its sequence number (append order).
    pub id: u64,
    /// When it was recorded (or, for byte-seconds, when the sampled span starts): unix seconds.
    pub time: u64,
    /// The period it counts in.
    pub period: Period,
    /// Whose.
    pub subject: Subject,
    /// What.
    pub kind: Kind,
    /// Bytes, byte-seconds or a count; negative for a decrease of a tally.
    pub amount: i64,
    /// For a record that belonged to a period closed before it was written: that period (it
    /// counts in the next open one, as an adjustment).
    pub adjusts: Option<Period>,
}

/// A billing period: one UTC calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    /// Year, e.g. 2026.
    pub year: i32,
    /// Month, 1 to 12.
    pub month: u32,
}

impl Period {
    /// The period `unix` (seconds) falls in.
    pub fn of(unix: u64) -> Period {
        let (year, month, _) = civil_from_days((unix / 86_400) as i64);
        Period { year, month }
    }

    /// Its first second (unix).
    pub fn start(self) -> u64 {
        (days_from_civil(self.year, self.month, 1) * 86_400).max(0) as u64
    }

    /// The first second after it (the next period's start).
    pub fn end(self) -> u64 {
        self.next().start()
    }

    /// The period after it.
    pub fn next(self) -> Period {
        match self.month {
            12 => Period { year: self.year + 1, month: 1 },
            m => Period { year: self.year, month: m + 1 },
        }
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl std::str::FromStr for Period {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a billing period; write it as YEAR-MONTH, e.g. 2026-11");
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u32 = m.parse().map_err(|_| bad())?;
        if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) {
            return Err(bad());
        }
        Ok(Period { year, month })
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month, day) `days` after 1970-01-01.
pub fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

/// Parses a UTC date `YYYY-MM-DD` into unix seconds at its start.
pub fn parse_date(s: &str) -> Result<u64, String> {
    let bad = || format!("`{s}` is not a date; write it as YEAR-MONTH-DAY, e.g. 2026-12-01 (UTC)");
    let mut parts = s.splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else { return Err(bad()) };
    let (year, month, day): (i32, u32, u32) =
        (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || day == 0 {
        return Err(bad());
    }
    let start = days_from_civil(year, month, day);
    if civil_from_days(start) != (year, month, day) {
        return Err(bad());
    }
    Ok(start as u64 * 86_400)
}

/// `unix` as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_time(unix: u64) -> String {
    let (y, m, d) = civil_from_days((unix / 86_400) as i64);
    let s = unix % 86_400;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

/// Splits `[from, to)` at period starts and at the `cuts` (rate changes) inside it.
pub fn segments(from: u64, to: u64, cuts: &[u64]) -> Vec<(u64, u64)> {
    let mut points: Vec<u64> = cuts.iter().copied().filter(|c| *c > from && *c < to).collect();
    let mut p = Period::of(from);
    while p.end() < to {
        points.push(p.end());
        p = p.next();
    }
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::with_capacity(points.len() + 1);
    let mut start = from;
    for point in points {
        out.push((start, point));
        start = point;
    }
    if start < to {
        out.push((start, to));
    }
    out
}

/// `quantity × price / per`, rounded half up: the one rounding a statement line takes.
/// Negative quantities (adjustments that take back) round half away from zero, so a charge
/// and its reversal cancel exactly.
pub fn charge(quantity: i128, price: u64, per: u128) -> i64 {
    let magnitude = quantity.unsigned_abs().saturating_mul(u128::from(price));
    let rounded = magnitude.saturating_add(per / 2) / per;
    let rounded = i64::try_from(rounded).unwrap_or(i64::MAX);
    if quantity < 0 {
        -rounded
    } else {
        rounded
    }
}

/// The card in effect at `time`: the one with the latest start at or before it.
pub fn card_at(cards: &[RateCard], time: u64) -> Option<&RateCard> {
    cards.iter().filter(|c| c.effective <= time).max_by_key(|c| c.effective)
}

/// What a host's standing and audits withhold from its earnings.
#[derive(Debug, Clone, Default)]
pub struct HostStanding {
    /// Its state now (`active`, `disqualified`, …).
    pub state: String,
}

/// A line's key while summing: (item, card start, adjusted period).
type LineKey = (&'static str, Option<u64>, Option<Period>);

/// Statement lines being summed: per line, (quantity, price, amount), the amount priced
/// again on the whole quantity so that each line is rounded once.
#[derive(Default)]
struct Items(BTreeMap<LineKey, (i128, u64, i64)>);

impl Items {
    fn add(&mut self, key: LineKey, quantity: i128, price: u64, per: u128) {
        let e = self.0.entry(key).or_insert((0, price, 0));
        e.0 += quantity;
        e.2 = charge(e.0, price, per);
    }

    fn lines<'a>(self, card_of: impl Fn(Option<u64>) -> Option<&'a RateCard>) -> Vec<Line> {
        self.0
            .into_iter()
            .map(|((item, card, adjusts), (q, price, amount))| line(item, q, price, amount, card_of(card), adjusts))
            .collect()
    }
}

/// Sums per subject, per (kind, card start, adjusted period).
type Sums = BTreeMap<Subject, BTreeMap<(Kind, Option<u64>, Option<Period>), i128>>;

/// Builds the statement of `period` from its raw records (those recorded in it, adjustments
/// for closed periods included), the rate cards, the recovery gaps and the hosts' standing.
/// `users` names users (id → name); only subjects with records appear.
#[allow(clippy::too_many_arguments)]
pub fn statement(
    period: Period,
    closed: bool,
    records: &[Record],
    cards: &[RateCard],
    gaps: &[Gap],
    users: &BTreeMap<u64, String>,
    hosts: &BTreeMap<u64, HostStanding>,
    now: u64,
) -> Statement {
    // Sum per subject, per line (kind, card, adjusted period).
    let mut sums: Sums = BTreeMap::new();
    for r in records.iter().filter(|r| r.period == period) {
        let card = card_at(cards, r.time).map(|c| c.effective);
        *sums.entry(r.subject).or_default().entry((r.kind, card, r.adjusts)).or_default() += i128::from(r.amount);
    }
    let card_of = |effective: Option<u64>| effective.and_then(|e| cards.iter().find(|c| c.effective == e));
    let mut out_users = Vec::new();
    let mut out_hosts = Vec::new();
    for (subject, lines) in &sums {
        let total = |kind: Kind| -> i128 { lines.iter().filter(|((k, _, _), _)| *k == kind).map(|(_, v)| *v).sum() };
        match *subject {
            Subject::User(id) => {
                let mut items = Items::default();
                for ((kind, card, adjusts), q) in lines {
                    let (item, price, per) = match kind {
                        Kind::StoredSeconds => {
                            ("storage", card_of(*card).map_or(0, |c| c.storage_gib_month), GIB * MONTH_SECS)
                        }
                        Kind::Egress => ("egress", card_of(*card).map_or(0, |c| c.egress_gib), GIB),
                        _ => continue,
                    };
                    items.add((item, *card, *adjusts), *q, price, per);
                }
                let lines = items.lines(card_of);
                let owed = lines.iter().map(|l| l.amount).sum();
                out_users.push(UserStatement {
                    user: id,
                    name: users.get(&id).cloned().unwrap_or_default(),
                    ingress_bytes: clamp(total(Kind::Ingress)),
                    egress_bytes: clamp(total(Kind::Egress)),
                    stored_change_bytes: clamp(total(Kind::Stored)),
                    logical_change_bytes: clamp(total(Kind::Logical)),
                    stored_byte_seconds: total(Kind::StoredSeconds).max(0).to_string(),
                    logical_byte_seconds: total(Kind::LogicalSeconds).max(0).to_string(),
                    lines,
                    owed,
                });
            }
            Subject::Host(id) => {
                // Serving is credited as the host claims it, but never beyond the grants the
                // coordinator issued naming it in the period (the cross-check), per card.
                let mut items = Items::default();
                for ((kind, card, adjusts), q) in lines {
                    let (item, price, per, q) = match kind {
                        Kind::HeldSeconds => (
                            "host_storage",
                            card_of(*card).map_or(0, |c| c.host_storage_gib_month),
                            GIB * MONTH_SECS,
                            *q,
                        ),
                        Kind::Served => {
                            let granted: i128 = lines
                                .iter()
                                .filter(|((k, c, a), _)| *k == Kind::Granted && c == card && a == adjusts)
                                .map(|(_, v)| *v)
                                .sum();
                            (
                                "host_egress",
                                card_of(*card).map_or(0, |c| c.host_egress_gib),
                                GIB,
                                (*q).min(granted).max(0),
                            )
                        }
                        _ => continue,
                    };
                    items.add((item, *card, *adjusts), q, price, per);
                }
                let lines = items.lines(card_of);
                let earned: i64 = lines.iter().map(|l| l.amount).sum();
                let (passed, failed) = (total(Kind::AuditPassed), total(Kind::AuditFailed));
                let state = hosts.get(&id).map(|h| h.state.clone()).unwrap_or_default();
                let (withheld, reason) = withheld(earned, &state, passed, failed);
                out_hosts.push(HostStatement {
                    host: id,
                    state,
                    held_byte_seconds: total(Kind::HeldSeconds).max(0).to_string(),
                    held_change_bytes: clamp(total(Kind::Held)),
                    granted_bytes: clamp(total(Kind::Granted)),
                    served_claimed_bytes: clamp(total(Kind::Served)),
                    repair_served_bytes: clamp(total(Kind::RepairServed)),
                    repair_received_bytes: clamp(total(Kind::RepairReceived)),
                    audits_passed: clamp(passed),
                    audits_failed: clamp(failed),
                    online_seconds: clamp(total(Kind::Online)),
                    lines,
                    earned,
                    withheld,
                    withheld_reason: reason,
                    payable: earned - withheld,
                });
            }
        }
    }
    let currency = cards
        .iter()
        .filter(|c| c.effective < period.end())
        .max_by_key(|c| c.effective)
        .map(|c| c.currency.clone())
        .unwrap_or_default();
    Statement {
        period: period.to_string(),
        from: period.start(),
        to: period.end(),
        closed,
        generated: now,
        currency,
        gaps: gaps.iter().filter(|g| g.to > period.start() && g.from < period.end()).cloned().collect(),
        sampled_until: None,
        users: out_users,
        hosts: out_hosts,
    }
}

fn clamp(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

fn line(item: &str, q: i128, price: u64, amount: i64, card: Option<&RateCard>, adjusts: Option<Period>) -> Line {
    let unit = match item {
        "storage" | "host_storage" => "byte_seconds",
        _ => "bytes",
    };
    Line {
        item: item.into(),
        quantity: q.to_string(),
        unit: unit.into(),
        price,
        price_per: if unit == "byte_seconds" { "GiB-month".into() } else { "GiB".into() },
        rate_from: card.map(|c| c.effective),
        amount,
        adjusts: adjusts.map(|p| p.to_string()),
    }
}

/// What is withheld from a host's `earned` and why: everything once it is disqualified;
/// otherwise the share of the period's audits it failed (rounded half up), if any.
pub fn withheld(earned: i64, state: &str, passed: i128, failed: i128) -> (i64, Option<String>) {
    if earned <= 0 {
        return (0, None);
    }
    if state == "disqualified" {
        return (earned, Some("disqualified: failed too many audits".into()));
    }
    if failed > 0 {
        let all = (passed + failed).max(1) as u128;
        let share = ((earned as u128) * failed as u128 + all / 2) / all;
        let share = i64::try_from(share).unwrap_or(earned).min(earned);
        return (share, Some(format!("failed {failed} of {} audits this period", passed + failed)));
    }
    (0, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(effective: u64, storage: u64, egress: u64) -> RateCard {
        RateCard {
            effective,
            currency: "EUR-micro".into(),
            storage_gib_month: storage,
            egress_gib: egress,
            host_storage_gib_month: storage / 2,
            host_egress_gib: egress / 2,
            set_at: 0,
            set_by: "test".into(),
        }
    }

    fn rec(id: u64, time: u64, subject: Subject, kind: Kind, amount: i64) -> Record {
        Record { id, time, period: Period::of(time), subject, kind, amount, adjusts: None }
    }

    #[test]
    fn periods_are_utc_months() {
        let nov = Period { year: 2026, month: 11 };
        assert_eq!(nov.to_string(), "2026-11");
        assert_eq!("2026-11".parse::<Period>(), Ok(nov));
        assert!("2026-13".parse::<Period>().is_err() && "26-11".parse::<Period>().is_err());
        assert_eq!(nov.start(), 1_793_491_200); // 2026-11-01T00:00:00Z
        assert_eq!(nov.end(), 1_796_083_200); // 2026-12-01T00:00:00Z
        assert_eq!(Period::of(nov.end() - 1), nov);
        assert_eq!(Period::of(nov.end()), nov.next());
        assert_eq!(Period { year: 2026, month: 12 }.next(), Period { year: 2027, month: 1 });
        assert_eq!(Period::of(0).to_string(), "1970-01");
        // A leap February.
        let feb = Period { year: 2028, month: 2 };
        assert_eq!(feb.end() - feb.start(), 29 * 86_400);
        assert_eq!(parse_date("2026-12-01"), Ok(nov.end()));
        assert!(parse_date("2026-02-30").is_err());
        assert_eq!(format_time(nov.end() + 3661), "2026-12-01T01:01:01Z");
    }

    #[test]
    fn spans_split_at_periods_and_rate_changes() {
        let nov = Period { year: 2026, month: 11 };
        let (a, b) = (nov.end() - 100, nov.end() + 50);
        assert_eq!(segments(a, b, &[]), vec![(a, nov.end()), (nov.end(), b)]);
        assert_eq!(segments(a, b, &[a + 10, b + 10]), vec![(a, a + 10), (a + 10, nov.end()), (nov.end(), b)]);
        assert_eq!(segments(a, a, &[]), vec![]);
    }

    #[test]
    fn money_rounds_half_up_once_per_line() {
        // 1.5 units rounds to 2, 1.4999 to 1; a reversal cancels exactly.
        assert_eq!(charge(3, 1, 2), 2);
        assert_eq!(charge(2999, 1, 2000), 1);
        assert_eq!(charge(-3, 1, 2), -2);
        // A GiB for a whole 30-day month at 4000 µ/GiB-month is 4000.
        assert_eq!(charge((GIB * MONTH_SECS) as i128, 4000, GIB * MONTH_SECS), 4000);
        // Big quantities do not overflow: 1 EiB-month.
        let eib_month = (GIB << 30) * MONTH_SECS;
        assert_eq!(charge(eib_month as i128, 4000, GIB * MONTH_SECS), 4000 << 30);
        // Two records of half a unit each are summed first, then rounded: 1, not 2 × 1.
        let t = Period { year: 2026, month: 11 }.start();
        let recs = [
            rec(1, t, Subject::User(1), Kind::Egress, (GIB / 4) as i64),
            rec(2, t + 1, Subject::User(1), Kind::Egress, (GIB / 4) as i64),
        ];
        let s = statement(Period::of(t), false, &recs, &[card(0, 0, 2)], &[], &BTreeMap::new(), &BTreeMap::new(), t);
        assert_eq!(s.users[0].lines[0].amount, 1);
    }

    #[test]
    fn statements_are_rebuilt_from_records() {
        let nov = Period { year: 2026, month: 11 };
        let t = nov.start();
        let change = t + 10 * 86_400;
        let cards = [card(0, 4000, 7000), card(change, 8000, 7000)];
        let gib_month = (GIB * MONTH_SECS / 2) as i64; // half a GiB-month
        let recs = vec![
            rec(1, t, Subject::User(1), Kind::Ingress, 600),
            rec(2, t + 5, Subject::User(1), Kind::StoredSeconds, gib_month),
            rec(3, change, Subject::User(1), Kind::StoredSeconds, gib_month),
            rec(4, t + 9, Subject::User(1), Kind::Egress, GIB as i64),
            rec(5, t, Subject::User(2), Kind::Egress, 5),
            rec(6, t, Subject::Host(7), Kind::HeldSeconds, 2 * gib_month),
            rec(7, t, Subject::Host(7), Kind::Granted, GIB as i64),
            rec(8, t, Subject::Host(7), Kind::Served, 2 * GIB as i64),
            rec(9, t, Subject::Host(7), Kind::AuditPassed, 3),
            rec(10, t, Subject::Host(7), Kind::AuditFailed, 1),
            rec(12, t, Subject::Host(7), Kind::Online, 30),
            // Another period's record is not in this statement.
            rec(11, nov.end(), Subject::User(1), Kind::Egress, GIB as i64),
        ];
        let hosts = BTreeMap::from([(7, HostStanding { state: "active".into() })]);
        let s = statement(nov, false, &recs, &cards, &[], &BTreeMap::new(), &hosts, t);
        let u = &s.users[0];
        // Half a GiB-month at each price, then a GiB of egress.
        let amounts: Vec<(&str, i64)> = u.lines.iter().map(|l| (l.item.as_str(), l.amount)).collect();
        assert_eq!(amounts, vec![("egress", 7000), ("storage", 2000), ("storage", 4000)]);
        assert_eq!((u.owed, u.ingress_bytes, u.egress_bytes), (13_000, 600, GIB as i64));
        assert_eq!(s.users[1].owed, 0);
        let h = &s.hosts[0];
        // Serving is credited only up to the grants: 1 GiB at 3500, plus a GiB-month at 2000.
        assert_eq!(h.earned, 2000 + 3500);
        assert_eq!(h.online_seconds, 30);
        // One audit in four failed: a quarter withheld.
        assert_eq!((h.withheld, h.payable), (1375, 4125));
        // The same records in another order give the same statement.
        let mut shuffled = recs.clone();
        shuffled.reverse();
        let again = statement(nov, false, &shuffled, &cards, &[], &BTreeMap::new(), &hosts, t);
        assert_eq!(serde_json::to_string(&again).expect("test"), serde_json::to_string(&s).expect("test"));
    }

    #[test]
    fn adjustments_count_in_the_period_they_were_written_in() {
        let nov = Period { year: 2026, month: 11 };
        let dec = nov.next();
        let mut late = rec(1, nov.end() - 10, Subject::User(1), Kind::Egress, GIB as i64);
        late.period = dec;
        late.adjusts = Some(nov);
        let cards = [card(0, 0, 100)];
        let s_nov =
            statement(nov, true, std::slice::from_ref(&late), &cards, &[], &BTreeMap::new(), &BTreeMap::new(), 0);
        assert!(s_nov.users.is_empty());
        let s_dec = statement(dec, false, &[late], &cards, &[], &BTreeMap::new(), &BTreeMap::new(), 0);
        assert_eq!(s_dec.users[0].lines[0].adjusts.as_deref(), Some("2026-11"));
        assert_eq!(s_dec.users[0].owed, 100);
    }

    #[test]
    fn disqualified_hosts_earn_nothing_payable() {
        assert_eq!(withheld(500, "disqualified", 10, 3).0, 500);
        assert_eq!(withheld(500, "active", 10, 0), (0, None));
        assert_eq!(withheld(0, "disqualified", 0, 0), (0, None));
    }
}
