//! Sizes for flags: `100MiB`, `2TiB`, `512KiB`. The unit is required: a bare number would
//! be bytes, and `--exclude-larger-than 10` (read as 10 MiB by habit) quietly left every
//! file above ten bytes out of a backup that then reported success.

use scatter_core::ByteSize;

/// Parses a size with its unit, such as `100MiB`.
pub fn parse(s: &str) -> Result<ByteSize, String> {
    if s.trim().ends_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("`{s}` has no unit; write e.g. 512KiB, 100MiB or 2GiB"));
    }
    s.parse().map_err(|e| format!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_needs_its_unit() {
        assert_eq!(parse("100MiB"), Ok(ByteSize(100 << 20)));
        assert_eq!(parse(" 2GiB "), Ok(ByteSize(2 << 30)));
        for bare in ["10", "0", " 5 ", "1.5"] {
            let err = parse(bare).expect_err(bare);
            assert!(err.contains("has no unit"), "{bare}: {err}");
        }
        assert!(parse("ten").is_err());
    }
}
