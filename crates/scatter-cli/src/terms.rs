//! Terms and policies on the command line: prices (decimal amounts of the grid's currency,
//! kept as integer millionths: no floats in money), dates (`--until`), and the placement
//! policy flags `put` and `backup` share with `scatter policy set`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use scatter_proto::api::Policy;

/// Millionths in one currency unit.
const MICRO: u64 = 1_000_000;

/// Parses a price such as `1.25` (at most six decimals) into millionths.
pub fn parse_price(s: &str) -> Result<u64, String> {
    let bad = || format!("`{s}` is not a price; write an amount such as 0, 2 or 1.25 (at most 6 decimals)");
    let (whole, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    if whole.is_empty() && frac.is_empty() || frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad())? };
    let frac: u64 = if frac.is_empty() { 0 } else { format!("{frac:0<6}").parse().map_err(|_| bad())? };
    whole.checked_mul(MICRO).and_then(|w| w.checked_add(frac)).ok_or_else(bad)
}

pub use scatter_proto::api::format_price;

/// Parses the end of an offered period: a UTC date (`2027-06-30`, the start of that day), a
/// UTC time (`2027-06-30T12:00:00Z`), or a span from now (`+90d`, `+10m`). Returns Unix time.
pub fn parse_until(s: &str) -> Result<u64, String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
    let t = s.trim();
    let at = if let Some(span) = t.strip_prefix('+') {
        now + crate::duration::parse(span)?.as_secs()
    } else {
        parse_utc(t).ok_or_else(|| {
            format!("`{s}` is not a date; write 2027-06-30, 2027-06-30T12:00:00Z or a span from now such as +90d")
        })?
    };
    if at <= now {
        return Err(format!("`{s}` is in the past; the period a host offers must end in the future"));
    }
    Ok(at)
}

/// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SSZ` as Unix time.
pub fn parse_utc(s: &str) -> Option<u64> {
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z')?)),
        None => (s, None),
    };
    let mut d = date.splitn(3, '-').map(|p| p.parse::<u32>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || day == 0 || day > days_in_month(y, m) {
        return None;
    }
    let secs = match time {
        None => 0,
        Some(t) => {
            let mut p = t.splitn(3, ':').map(|p| p.parse::<u64>().ok());
            let (h, mi, se) = (p.next()??, p.next()??, p.next()??);
            if h > 23 || mi > 59 || se > 59 {
                return None;
            }
            h * 3600 + mi * 60 + se
        }
    };
    Some(days_from_epoch(y, m, day) * 86_400 + secs)
}

fn is_leap(y: u32) -> bool {
    y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400))
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given date (on or after it).
fn days_from_epoch(y: u32, m: u32, d: u32) -> u64 {
    let years: u64 = (1970..y).map(|y| if is_leap(y) { 366 } else { 365 }).sum();
    let months: u64 = (1..m).map(|m| days_in_month(y, m) as u64).sum();
    years + months + (d - 1) as u64
}

/// Formats a span of seconds for people: `42 s`, `7 min`, `3 h 5 min`, `2 d 4 h`.
pub fn format_age(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s"),
        120..=3599 => format!("{} min", secs / 60),
        3600..=86_399 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d {} h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// Formats Unix time as `YYYY-MM-DD HH:MM UTC`.
pub fn format_time(t: u64) -> String {
    // In closed form: a time is whatever a host or the coordinator sent, up to u64::MAX,
    // and walking year by year to it hung `scatter status`.
    let (days, secs) = (t / 86_400, t % 86_400);
    let (y, m, d) = scatter_core::retention::civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", secs / 3600, secs % 3600 / 60)
}

/// The terms `scatter host` offers, sent to the coordinator at join and with every
/// heartbeat (the coordinator keeps the latest).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct HostTermsArgs {
    /// Price asked per GiB-month stored, in the grid's currency (e.g. 0.5; default 0).
    #[arg(long, value_parser = parse_price)]
    pub price: Option<u64>,
    /// Price asked per GiB served to readers (default 0).
    #[arg(long, value_parser = parse_price)]
    pub egress_price: Option<u64>,
    /// Bandwidth offered, per second, e.g. 100MiB; once the coordinator has measured the
    /// host's reads it goes by its measurement instead.
    #[arg(long, value_parser = crate::size::parse)]
    pub bandwidth: Option<scatter_core::ByteSize>,
    /// End of the period offered: 2027-06-30, 2027-06-30T12:00:00Z (UTC), or a span from
    /// this start such as +90d. The coordinator moves its data off in time and retires it by
    /// then (at that time whatever it holds); from then on it stores no new shards.
    #[arg(long, value_parser = parse_until)]
    pub until: Option<u64>,
}

impl HostTermsArgs {
    /// The terms as the API carries them.
    pub fn terms(&self) -> scatter_proto::api::HostTerms {
        scatter_proto::api::HostTerms {
            price: self.price.unwrap_or(0),
            egress_price: self.egress_price.unwrap_or(0),
            bandwidth: self.bandwidth.map(|b| b.0).unwrap_or(0),
            until: self.until,
        }
    }
}

/// The conditions on hosts a command can ask for (over the user's stored policy).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PolicyArgs {
    /// Use only hosts asking at most this price per GiB-month (e.g. 0.5).
    #[arg(long, value_parser = parse_price)]
    pub max_price: Option<u64>,
    /// Use only hosts in this zone (repeatable).
    #[arg(long = "zone")]
    pub zones: Vec<String>,
    /// Never use hosts in this zone (repeatable).
    #[arg(long = "exclude-zone")]
    pub exclude_zones: Vec<String>,
    /// Use only hosts with at least this reputation score (0-100).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub min_reputation: Option<u8>,
    /// Use only hosts whose offered period lasts at least this much longer (e.g. 90d).
    #[arg(long, value_parser = crate::duration::parse)]
    pub min_period: Option<Duration>,
}

impl PolicyArgs {
    /// The policy these flags ask for.
    pub fn policy(&self) -> Policy {
        Policy {
            max_price: self.max_price,
            zones: self.zones.clone(),
            exclude_zones: self.exclude_zones.clone(),
            min_reputation: self.min_reputation,
            min_period_secs: self.min_period.map(|d| d.as_secs()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_exact_integers() {
        assert_eq!(parse_price("1.25"), Ok(1_250_000));
        assert_eq!(parse_price("0"), Ok(0));
        assert_eq!(parse_price(".5"), Ok(500_000));
        assert_eq!(parse_price("3"), Ok(3_000_000));
        assert_eq!(parse_price("0.000001"), Ok(1));
        for bad in ["", ".", "1.2345678", "-1", "1e3", "x", "99999999999999999999"] {
            assert!(parse_price(bad).is_err(), "{bad}");
        }
        assert_eq!(format_price(1_250_000), "1.25");
        assert_eq!(format_price(3_000_000), "3");
        assert_eq!(format_price(1), "0.000001");
    }

    #[test]
    fn dates_parse_in_utc() {
        assert_eq!(parse_utc("1970-01-01"), Some(0));
        assert_eq!(parse_utc("2000-03-01"), Some(951_868_800));
        assert_eq!(parse_utc("2026-11-29T15:10:32Z"), Some(1_795_965_032));
        assert_eq!(format_time(1_795_965_032), "2026-11-29 15:10 UTC");
        assert_eq!(format_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_time(951_868_800), "2000-03-01 00:00 UTC");
        // Whatever a host sends is shown at once (walking to it year by year hung `status`).
        assert!(format_time(u64::MAX).ends_with(" UTC"));
        for bad in ["2026-02-30", "2026-13-01", "2026-11-29T25:00:00Z", "2026-11-29T10:00:00", "tomorrow"] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
        assert!(parse_until("2001-01-01").is_err(), "the past");
        let soon = parse_until("+10m").expect("relative");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
        assert!((now + 590..=now + 610).contains(&soon));
    }
}
