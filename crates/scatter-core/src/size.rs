//! Human byte sizes: `10GiB`, `500MB`, `4096`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A number of bytes, parsed from and shown as a human size.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ByteSize(pub u64);

/// Returned when a size cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a size; write a number with an optional unit, like 4096, 500MB or 10GiB")]
pub struct ParseSizeError(String);

const UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("k", 1_000),
    ("kb", 1_000),
    ("kib", 1 << 10),
    ("m", 1_000_000),
    ("mb", 1_000_000),
    ("mib", 1 << 20),
    ("g", 1_000_000_000),
    ("gb", 1_000_000_000),
    ("gib", 1 << 30),
    ("t", 1_000_000_000_000),
    ("tb", 1_000_000_000_000),
    ("tib", 1 << 40),
];

impl FromStr for ByteSize {
    type Err = ParseSizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseSizeError(s.chars().take(40).collect());
        let t = s.trim();
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let unit = unit.trim().to_ascii_lowercase();
        let mult = UNITS.iter().find(|(u, _)| *u == unit).ok_or_else(err)?.1;
        if num.contains('.') {
            let v: f64 = num.parse().map_err(|_| err())?;
            let bytes = v * mult as f64;
            if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
                return Err(err());
            }
            Ok(ByteSize(bytes.round() as u64))
        } else {
            let v: u64 = num.parse().map_err(|_| err())?;
            v.checked_mul(mult).map(ByteSize).ok_or_else(err)
        }
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const STEPS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        let mut v = self.0 as f64;
        let mut i = 0;
        while v >= 1024.0 && i + 1 < STEPS.len() {
            v /= 1024.0;
            i += 1;
        }
        if i == 0 {
            write!(f, "{} B", self.0)
        } else {
            write!(f, "{v:.1} {}", STEPS[i])
        }
    }
}

impl fmt::Debug for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!("4096".parse(), Ok(ByteSize(4096)));
        assert_eq!("10GiB".parse(), Ok(ByteSize(10 << 30)));
        assert_eq!("500 MB".parse(), Ok(ByteSize(500_000_000)));
        assert_eq!("1.5k".parse(), Ok(ByteSize(1500)));
        assert_eq!("2t".parse(), Ok(ByteSize(2_000_000_000_000)));
    }

    #[test]
    fn rejects_garbage_and_overflow() {
        for bad in ["", "GiB", "12 parsecs", "-1", "99999999999999999999TiB", "1e9"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn displays_in_binary_units() {
        assert_eq!(ByteSize(512).to_string(), "512 B");
        assert_eq!(ByteSize(3 << 20).to_string(), "3.0 MiB");
    }
}
