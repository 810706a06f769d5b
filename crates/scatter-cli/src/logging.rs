//! Logging flags: `--log-level` checked before use, and the text or JSON format.

/// The levels a directive may name.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Checks a `--log-level` filter (comma-separated levels or `MODULE=LEVEL` directives) and
/// returns it without spaces around its commas. A word
/// that is not a level is refused rather than read as a module name, so a typo (`verbose`)
/// cannot silently leave the default in place.
pub fn parse_level(s: &str) -> Result<String, String> {
    let refused = |what: &str| {
        format!(
            "`{what}` is not a log level; use {}, or MODULE=LEVEL (e.g. scatter_coordinator=debug,info)",
            LEVELS.join(", ")
        )
    };
    let directives: Vec<&str> = s.split(',').map(str::trim).filter(|d| !d.is_empty()).collect();
    if directives.is_empty() {
        return Err(refused(s));
    }
    for d in &directives {
        let level = match d.split_once('=') {
            Some((_, level)) => level.trim(),
            None if d.contains('[') => continue,
            None => d,
        };
        if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            return Err(refused(d));
        }
    }
    // Spaces around commas are forgiven; the filter's own grammar (span and field filters)
    // has the last word.
    let filter = directives.join(",");
    tracing_subscriber::EnvFilter::try_new(&filter).map_err(|e| format!("`{s}` is not a log filter ({e})"))?;
    Ok(filter)
}

/// The gateway's log filter: the one asked for (`info` by default), with s3s's lines left out
/// whatever it says. s3s logs every refused request twice at error level without who sent it
/// (anyone could fill the log), and at debug level each refused signature beside the one the
/// request should have carried, and every request's Authorization header: whoever reads the
/// log could sign requests of their choosing, or replay them. The gateway logs refusals
/// itself, at debug level.
pub fn gateway_filter(asked: Option<&str>) -> String {
    let mut kept: Vec<&str> =
        asked.unwrap_or("info").split(',').filter(|d| !d.trim_start().starts_with("s3s")).collect();
    kept.push("s3s=off");
    kept.join(",")
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event; coloured only on a terminal.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_never_logs_what_s3s_would() {
        assert_eq!(gateway_filter(None), "info,s3s=off");
        assert_eq!(gateway_filter(Some("debug")), "debug,s3s=off");
        assert_eq!(
            gateway_filter(Some("s3s=trace,scatter_gateway=debug,s3s::ops=debug")),
            "scatter_gateway=debug,s3s=off"
        );
        let filter = tracing_subscriber::EnvFilter::try_new(gateway_filter(Some("trace"))).expect("filter");
        assert!(filter.to_string().contains("s3s=off"), "{filter}");
    }

    #[test]
    fn levels_and_module_directives_pass_and_typos_do_not() {
        for ok in ["info", "WARN", "scatter_coordinator=debug,info", "off"] {
            assert_eq!(parse_level(ok).as_deref(), Ok(ok), "{ok}");
        }
        assert_eq!(parse_level("a=trace, b=error").as_deref(), Ok("a=trace,b=error"));
        for bad in ["verbose", "", " , ", "info,loud", "scatter_host=loud", "scatter_host"] {
            let e = parse_level(bad).expect_err(bad);
            assert!(e.contains("is not a log"), "{bad}: {e}");
        }
    }
}
