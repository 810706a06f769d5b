//! Which snapshots a `forget` policy keeps.
//!
//! The rules are restic's, so people can carry their policies over: walking from newest to
//! oldest, `last` keeps the N newest; `daily` keeps the newest snapshot of each of the N most
//! recent days that have one; likewise `weekly` (ISO weeks starting Monday), `monthly` and
//! `yearly`. A snapshot kept by any rule is kept. Days are UTC.

/// A retention policy; zero means the rule keeps nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Newest N snapshots.
    pub last: u32,
    /// Newest snapshot of each of the last N days.
    pub daily: u32,
    /// Newest snapshot of each of the last N weeks.
    pub weekly: u32,
    /// Newest snapshot of each of the last N months.
    pub monthly: u32,
    /// Newest snapshot of each of the last N years.
    pub yearly: u32,
}

impl Policy {
    /// Whether the policy keeps nothing at all (forgetting everything is never implied).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Maps a day number to the number of the period (day, week, month, year) it falls in.
type Bucket = fn(i64) -> i64;

/// Given snapshot times (ns since the epoch, any order), returns for each whether it is kept.
pub fn apply(policy: &Policy, times_ns: &[i64]) -> Vec<bool> {
    let mut order: Vec<usize> = (0..times_ns.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(times_ns[i]));
    let mut keep = vec![false; times_ns.len()];
    let bucket_fns: [(u32, Bucket); 4] =
        [(policy.daily, day), (policy.weekly, week), (policy.monthly, month), (policy.yearly, year)];
    let mut left: Vec<u32> = bucket_fns.iter().map(|(n, _)| *n).collect();
    let mut last_bucket: Vec<Option<i64>> = vec![None; bucket_fns.len()];
    for (rank, &i) in order.iter().enumerate() {
        if (rank as u64) < u64::from(policy.last) {
            keep[i] = true;
        }
        let days = times_ns[i].div_euclid(86_400_000_000_000);
        for (r, (_, bucket)) in bucket_fns.iter().enumerate() {
            let b = bucket(days);
            if left[r] > 0 && last_bucket[r] != Some(b) {
                keep[i] = true;
                left[r] -= 1;
                last_bucket[r] = Some(b);
            }
        }
    }
    keep
}

fn day(days: i64) -> i64 {
    days
}

fn week(days: i64) -> i64 {
    // 1970-01-01 was a Thursday; shift so weeks start on Monday.
    (days + 3).div_euclid(7)
}

fn month(days: i64) -> i64 {
    let (y, m, _) = civil_from_days(days);
    y * 12 + i64::from(m) - 1
}

fn year(days: i64) -> i64 {
    civil_from_days(days).0
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

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }

    #[test]
    fn keep_last_keeps_the_newest() {
        let times = [3 * DAY, DAY, 2 * DAY, 4 * DAY];
        let keep = apply(&Policy { last: 2, ..Default::default() }, &times);
        assert_eq!(keep, vec![true, false, false, true]);
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
        let keep = apply(&Policy { daily: 2, ..Default::default() }, &times);
        let kept: Vec<i64> = times.iter().zip(&keep).filter(|(_, k)| **k).map(|(t, _)| *t).collect();
        assert_eq!(kept, vec![20_003 * DAY + 9 * HOUR, 20_002 * DAY + 9 * HOUR]);
    }

    #[test]
    fn rules_combine_and_empty_policy_keeps_nothing() {
        let times: Vec<i64> = (0..60).map(|d| 20_000 * DAY + d * DAY).collect();
        let p = Policy { last: 1, weekly: 2, monthly: 3, ..Default::default() };
        let keep = apply(&p, &times);
        // newest (also newest of its week and month), 1 more week, 2 more months.
        assert_eq!(keep.iter().filter(|k| **k).count(), 4);
        assert!(keep[59]);
        assert!(Policy::default().is_empty());
        assert!(apply(&Policy::default(), &times).iter().all(|k| !k));
    }

    #[test]
    fn weeks_start_on_monday() {
        // 2026-11-23 is a Monday, 2026-11-22 a Sunday.
        let monday = 20_780;
        assert_eq!(civil_from_days(monday), (2026, 11, 23));
        assert_eq!(week(monday), week(monday + 6));
        assert_ne!(week(monday), week(monday - 1));
    }
}
