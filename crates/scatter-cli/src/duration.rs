//! Human durations for flags: `500ms`, `4s`, `10m`, `1h`, `30d`.

use std::time::Duration;

/// Parses a duration such as `4s`, `10m` (minutes), `30d` or `2y` (365 days each).
pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a duration; write e.g. 500ms, 4s, 10m or 1h"))?;
    let secs = |per: u64| n.checked_mul(per).map(Duration::from_secs).ok_or_else(|| format!("`{s}` is too long"));
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => secs(60)?,
        "h" => secs(3600)?,
        "d" => secs(86_400)?,
        "w" => secs(7 * 86_400)?,
        "y" => secs(365 * 86_400)?,
        _ => return Err(format!("`{s}` has an unknown unit; use ms, s, m (minutes), h, d, w or y (365 days)")),
    };
    if d.is_zero() {
        return Err("a duration must be greater than zero".into());
    }
    Ok(d)
}

/// A duration for messages, in its two largest units: `3d 4h`, `26h`, `5m 3s`, `12s`.
pub fn text(d: Duration) -> String {
    let secs = d.as_secs();
    let units = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let parts: Vec<String> = units
        .iter()
        .scan(secs, |left, &(size, unit)| {
            let n = *left / size;
            *left %= size;
            Some((n, unit))
        })
        .skip_while(|(n, _)| *n == 0)
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if parts.is_empty() {
        return "0s".into();
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_show_the_two_largest_units() {
        let t = |s| text(Duration::from_secs(s));
        assert_eq!(
            [t(0), t(12), t(303), t(3600), t(93_600), t(273_600), t(86_400 + 59)],
            ["0s", "12s", "5m 3s", "1h", "1d 2h", "3d 4h", "1d"]
        );
    }

    #[test]
    fn parses_units_and_rejects_garbage() {
        assert_eq!(parse("4s"), Ok(Duration::from_secs(4)));
        assert_eq!(parse("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse("2y"), Ok(Duration::from_secs(2 * 365 * 86_400)));
        assert_eq!(parse("1w"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse("99999999999999999999d").is_err(), "not a number that fits");
        assert!(parse("18446744073709551615y").expect_err("too long").contains("too long"));
        assert!(parse("0s").is_err());
        assert!(parse("4 parsecs").is_err());
        assert!(parse("").is_err());
    }
}
