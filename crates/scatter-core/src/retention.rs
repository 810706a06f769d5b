//! Which snapshots a `forget` policy keeps.
//!
//! The rules are restic's (0.17), so people can carry their policies over. Walking from
//! newest to oldest, `last` keeps the N newest; `hourly` keeps the newest snapshot of each of
//! the N most recent hours that have one; likewise `daily`, `weekly` (ISO weeks starting
//! Monday), `monthly` and `yearly`. When a counting rule still has some of its N left at the
//! oldest snapshot, that one is kept too (the longest history the counts allow). `within`
//! keeps every snapshot newer than the newest one minus a calendar duration; `tags` keeps
//! every snapshot carrying all the tags of one of its lists. A snapshot kept by any rule is
//! kept. Hours and days are UTC.

/// A retention policy; an empty one keeps nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Newest N snapshots.
    pub last: u32,
    /// Newest snapshot of each of the last N hours.
    pub hourly: u32,
    /// Newest snapshot of each of the last N days.
    pub daily: u32,
    /// Newest snapshot of each of the last N weeks.
    pub weekly: u32,
    /// Newest snapshot of each of the last N months.
    pub monthly: u32,
    /// Newest snapshot of each of the last N years.
    pub yearly: u32,
    /// Every snapshot newer than the newest minus this.
    pub within: Option<Within>,
    /// Every snapshot that has all the tags of one of these lists.
    pub tags: Vec<Vec<String>>,
}

impl Policy {
    /// Whether the policy keeps nothing at all (forgetting everything is never implied).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A calendar duration, restic's `--keep-within` format: `1y5m7d2h` (years, months, days,
/// hours; `m` is months).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Within {
    /// Years.
    pub years: i64,
    /// Months.
    pub months: i64,
    /// Days.
    pub days: i64,
    /// Hours.
    pub hours: i64,
}

/// Returned when a `--keep-within` duration cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a duration for --keep-within; write numbers with y, m (months), d or h, e.g. 1y6m, 14d or 36h")]
pub struct ParseWithinError(String);

impl std::str::FromStr for Within {
    type Err = ParseWithinError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseWithinError(s.chars().take(40).collect());
        let mut w = Within::default();
        let mut num = String::new();
        let mut any = false;
        for c in s.trim().chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let n: i64 = num.parse().ok().filter(|n| *n <= 1_000_000).ok_or_else(err)?;
            num.clear();
            let slot = match c {
                'y' => &mut w.years,
                'm' => &mut w.months,
                'd' => &mut w.days,
                'h' => &mut w.hours,
                _ => return Err(err()),
            };
            *slot += n;
            any = true;
        }
        if !num.is_empty() || !any || w == Within::default() {
            return Err(err());
        }
        Ok(w)
    }
}

impl Within {
    /// `t_ns` minus this duration, by the calendar as Go's `AddDate` does it (a day past the
    /// end of a month rolls into the next: March 31 minus one month is March 3 or 2).
    pub fn before(&self, t_ns: i64) -> i64 {
        const NS: i64 = 1_000_000_000;
        let (secs, frac) = (t_ns.div_euclid(NS), t_ns.rem_euclid(NS));
        let (days, time_of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        let months = y * 12 + i64::from(m) - 1 - (self.years * 12 + self.months);
        let first = days_from_civil(months.div_euclid(12), months.rem_euclid(12) as u32 + 1, 1);
        let day = first + i64::from(d) - 1 - self.days;
        (day * 86_400 + time_of_day - self.hours * 3600).saturating_mul(NS).saturating_add(frac)
    }
}

/// Maps a time (ns since the epoch) to the number of the period it falls in.
type Bucket = fn(i64) -> i64;

/// For each snapshot, given as (time in ns since the epoch, tags) in any order, whether the
/// policy keeps it.
pub fn apply(policy: &Policy, snapshots: &[(i64, &[String])]) -> Vec<bool> {
    let mut order: Vec<usize> = (0..snapshots.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(snapshots[i].0));
    let mut keep = vec![false; snapshots.len()];
    let Some(&newest) = order.first() else { return keep };
    let cutoff = policy.within.map(|w| w.before(snapshots[newest].0));
    let bucket_fns: [(u32, Bucket); 5] = [
        (policy.hourly, hour),
        (policy.daily, day),
        (policy.weekly, week),
        (policy.monthly, month),
        (policy.yearly, year),
    ];
    let mut last_left = policy.last;
    let mut left: Vec<u32> = bucket_fns.iter().map(|(n, _)| *n).collect();
    let mut last_bucket: Vec<Option<i64>> = vec![None; bucket_fns.len()];
    for (rank, &i) in order.iter().enumerate() {
        let (time, tags) = snapshots[i];
        let oldest = rank + 1 == order.len();
        if last_left > 0 {
            keep[i] = true;
            last_left -= 1;
        }
        if policy.tags.iter().any(|list| list.iter().all(|t| tags.contains(t))) {
            keep[i] = true;
        }
        if cutoff.is_some_and(|c| time > c) {
            keep[i] = true;
        }
        for (r, (_, bucket)) in bucket_fns.iter().enumerate() {
            let b = bucket(time);
            if left[r] > 0 && (last_bucket[r] != Some(b) || oldest) {
                keep[i] = true;
                left[r] -= 1;
                last_bucket[r] = Some(b);
            }
        }
    }
    keep
}

fn hour(t: i64) -> i64 {
    t.div_euclid(3_600_000_000_000)
}

fn day(t: i64) -> i64 {
    t.div_euclid(86_400_000_000_000)
}

fn week(t: i64) -> i64 {
    // 1970-01-01 was a Thursday; shift so weeks start on Monday.
    (day(t) + 3).div_euclid(7)
}

fn month(t: i64) -> i64 {
    let (y, m, _) = civil_from_days(day(t));
    y * 12 + i64::from(m) - 1
}

fn year(t: i64) -> i64 {
    civil_from_days(day(t)).0
}

/// The day count since 1970-01-01 of a (year, month 1–12, day 1–31), proleptic Gregorian;
/// the inverse of [`civil_from_days`] (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month 1–12, day 1–31) of a day count since 1970-01-01, proleptic Gregorian.
/// The algorithm is Howard Hinnant's `civil_from_days`.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000_000;
    const HOUR: i64 = 3_600_000_000_000;
    const MIN: i64 = 60_000_000_000;

    /// Untagged snapshots at these times.
    fn keep(p: &Policy, times: &[i64]) -> Vec<bool> {
        let items: Vec<(i64, &[String])> = times.iter().map(|t| (*t, &[][..])).collect();
        apply(p, &items)
    }

    /// The kept times, newest first.
    fn kept(p: &Policy, times: &[i64]) -> Vec<i64> {
        let mut v: Vec<i64> = times.iter().zip(keep(p, times)).filter(|(_, k)| *k).map(|(t, _)| *t).collect();
        v.sort_by_key(|t| std::cmp::Reverse(*t));
        v
    }

    /// 2026-11-29 00:00 UTC, a Sunday.
    fn base() -> i64 {
        days_from_civil(2026, 11, 29) * DAY
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        for d in (-800_000..800_000).step_by(997) {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }

    #[test]
    fn keep_last_keeps_the_newest() {
        let times = [3 * DAY, DAY, 2 * DAY, 4 * DAY];
        assert_eq!(keep(&Policy { last: 2, ..Default::default() }, &times), vec![true, false, false, true]);
        assert_eq!(keep(&Policy { last: 9, ..Default::default() }, &times), vec![true; 4]);
    }

    #[test]
    fn daily_keeps_newest_per_day() {
        // Three per day over four days, shuffled.
        let mut times = Vec::new();
        for d in 0..4 {
            for h in [1, 5, 9] {
                times.push(20_000 * DAY + d * DAY + h * HOUR);
            }
        }
        times.reverse();
        let p = Policy { daily: 2, ..Default::default() };
        assert_eq!(kept(&p, &times), vec![20_003 * DAY + 9 * HOUR, 20_002 * DAY + 9 * HOUR]);
    }

    #[test]
    fn hourly_keeps_newest_per_hour() {
        // Every 20 minutes for 5 hours.
        let times: Vec<i64> = (0..15).map(|i| base() + i * 20 * MIN).collect();
        let p = Policy { hourly: 3, ..Default::default() };
        assert_eq!(kept(&p, &times), vec![base() + 280 * MIN, base() + 220 * MIN, base() + 160 * MIN]);
        // Hours without a snapshot do not count: only hours that have one.
        let sparse = [base(), base() + 10 * HOUR, base() + 30 * HOUR];
        assert_eq!(kept(&Policy { hourly: 2, ..Default::default() }, &sparse), vec![sparse[2], sparse[1]]);
    }

    #[test]
    fn the_oldest_is_kept_while_counts_are_left() {
        // restic 0.17: daily 7 over 3 days, two a day: each day's newest, plus the oldest.
        let times: Vec<i64> = (0..6).map(|i| base() + i * 12 * HOUR + HOUR).collect();
        let p = Policy { daily: 7, ..Default::default() };
        assert_eq!(kept(&p, &times), vec![times[5], times[3], times[1], times[0]]);
        // Counts used up before the oldest: it goes.
        let p = Policy { daily: 3, ..Default::default() };
        assert_eq!(kept(&p, &times), vec![times[5], times[3], times[1]]);
        // `last` is no counting-by-period rule that needs this: it keeps the N newest.
        assert_eq!(kept(&Policy { last: 2, ..Default::default() }, &times), vec![times[5], times[4]]);
    }

    #[test]
    fn rules_combine_and_empty_policy_keeps_nothing() {
        let times: Vec<i64> = (0..60).map(|d| 20_000 * DAY + d * DAY).collect();
        let p = Policy { last: 1, weekly: 2, monthly: 3, ..Default::default() };
        let k = keep(&p, &times);
        // newest (also newest of its week and month), 1 more week, 2 more months.
        assert_eq!(k.iter().filter(|k| **k).count(), 4);
        assert!(k[59]);
        assert!(Policy::default().is_empty());
        assert!(keep(&Policy::default(), &times).iter().all(|k| !k));
        assert!(apply(&Policy { last: 3, ..Default::default() }, &[]).is_empty());
    }

    #[test]
    fn weeks_start_on_monday() {
        // 2026-11-23 is a Monday, 2026-11-22 a Sunday.
        let monday = 20_780;
        assert_eq!(civil_from_days(monday), (2026, 11, 23));
        assert_eq!(week(monday * DAY), week((monday + 6) * DAY + 23 * HOUR));
        assert_ne!(week(monday * DAY), week(monday * DAY - 1));
    }

    #[test]
    fn months_and_years_follow_the_calendar() {
        let at = |y, m, d| days_from_civil(y, m, d) * DAY + 12 * HOUR;
        let times = [at(2025, 12, 31), at(2026, 1, 1), at(2026, 1, 31), at(2026, 2, 1), at(2026, 2, 28)];
        let p = Policy { monthly: 2, ..Default::default() };
        assert_eq!(kept(&p, &times), vec![at(2026, 2, 28), at(2026, 1, 31)]);
        let p = Policy { yearly: 5, ..Default::default() };
        assert_eq!(kept(&p, &times), vec![at(2026, 2, 28), at(2025, 12, 31)]);
    }

    #[test]
    fn within_parses_restic_durations() {
        let w = |s: &str| s.parse::<Within>();
        assert_eq!(w("1y5m7d2h"), Ok(Within { years: 1, months: 5, days: 7, hours: 2 }));
        assert_eq!(w("36h"), Ok(Within { hours: 36, ..Default::default() }));
        assert_eq!(w("2d12h"), Ok(Within { days: 2, hours: 12, ..Default::default() }));
        for bad in ["", "7", "d", "7w", "0d", "1.5d", "-2d", "3d 4h", "99999999999d"] {
            assert!(w(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn within_subtracts_by_the_calendar() {
        let at = |y, m, d, h: i64| days_from_civil(y, m, d) * DAY + h * HOUR;
        let w = |s: &str| s.parse::<Within>().expect("duration");
        assert_eq!(w("1d").before(at(2026, 3, 1, 5)), at(2026, 2, 28, 5));
        assert_eq!(w("1m").before(at(2026, 3, 15, 0)), at(2026, 2, 15, 0));
        // Go's AddDate: February 31 rolls over into March.
        assert_eq!(w("1m").before(at(2026, 3, 31, 0)), at(2026, 3, 3, 0));
        assert_eq!(w("1y").before(at(2024, 2, 29, 0)), at(2023, 3, 1, 0));
        assert_eq!(w("2m").before(at(2026, 1, 10, 0)), at(2025, 11, 10, 0));
        assert_eq!(w("12h").before(at(2026, 1, 1, 6)), at(2025, 12, 31, 18));
        assert_eq!(w("1y2m3d4h").before(at(2026, 6, 10, 10)), at(2025, 4, 7, 6));
    }

    #[test]
    fn within_is_relative_to_the_newest_snapshot() {
        // Daily snapshots ending a year ago: "within 3d" keeps the newest three days of them,
        // not nothing (it is not relative to now).
        let times: Vec<i64> = (0..10).map(|d| base() - 365 * DAY + d * DAY).collect();
        let p = Policy { within: Some("3d".parse().expect("d")), ..Default::default() };
        // Strictly newer than newest - 3d: the one exactly 3 days older goes.
        assert_eq!(kept(&p, &times), vec![times[9], times[8], times[7]]);
        let p = Policy { within: Some("3d1h".parse().expect("d")), ..Default::default() };
        assert_eq!(kept(&p, &times).len(), 4);
        assert!(!p.is_empty());
    }

    #[test]
    fn keep_tag_keeps_snapshots_with_all_tags_of_a_list() {
        let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (a, ab, b, none) = (tags(&["a"]), tags(&["a", "b"]), tags(&["b"]), tags(&[]));
        let items: Vec<(i64, &[String])> =
            vec![(DAY, &a[..]), (2 * DAY, &ab[..]), (3 * DAY, &b[..]), (4 * DAY, &none[..])];
        let p = |lists: &[&[&str]]| Policy { tags: lists.iter().map(|l| tags(l)).collect(), ..Default::default() };
        assert_eq!(apply(&p(&[&["a"]]), &items), vec![true, true, false, false]);
        assert_eq!(apply(&p(&[&["a", "b"]]), &items), vec![false, true, false, false]);
        assert_eq!(apply(&p(&[&["a"], &["b"]]), &items), vec![true, true, true, false]);
        // Tags do not use up counts: last 1 still keeps the newest.
        let both = Policy { last: 1, ..p(&[&["a"]]) };
        assert_eq!(apply(&both, &items), vec![true, true, false, true]);
    }

    #[test]
    fn counts_and_buckets_across_rules_are_independent() {
        // Hourly snapshots for 3 days: hourly 5, daily 2 and last 2 overlap on the newest.
        let times: Vec<i64> = (0..72).map(|h| base() + h * HOUR + 30 * MIN).collect();
        let p = Policy { last: 2, hourly: 5, daily: 2, ..Default::default() };
        let k = kept(&p, &times);
        // 5 newest hours (covers last 2 and day 3's newest) + day 2's newest.
        assert_eq!(k, vec![times[71], times[70], times[69], times[68], times[67], times[47]]);
    }
}
