//! `scatter admin billing` (statements, raw records, rate cards, closing periods),
//! `scatter usage` (a user's own) and `scatter host earnings` (a host's own): the drawing
//! of what the coordinator's metering computed. Formats: a table for people, `--json` (the
//! [`Statement`] as the API returns it) and `--csv` (one row per statement line, see
//! [`CSV_HEADER`]); the README's "Metering and billing" documents both.

use anyhow::{Context, Result};
use clap::Subcommand;
use scatter_client::coordinator::Coordinator;
use scatter_proto::billing::{RateCardRequest, Statement};

/// The CSV export's columns, one row per statement line (and one per party with no line).
pub const CSV_HEADER: &str =
    "period,party,id,name,item,quantity,unit,price,price_per,rate_from,amount,adjusts,total,withheld,withheld_reason,payable";

/// `scatter admin billing rates …`.
#[derive(Subcommand)]
pub(crate) enum RatesCmd {
    /// Add prices from a UTC day on (in the smallest unit of the currency, integers).
    Set {
        /// First day the prices apply (YYYY-MM-DD, UTC); not within a closed period.
        #[arg(long)]
        from: String,
        /// The currency and unit the prices are in (free text).
        #[arg(long, default_value = "EUR-micro")]
        currency: String,
        /// A user pays this per GiB-month stored on hosts (with redundancy; 30-day months).
        #[arg(long, value_parser = parse_price)]
        storage_gib_month: u64,
        /// A user pays this per GiB read.
        #[arg(long, value_parser = parse_price)]
        egress_gib: u64,
        /// A host earns this per GiB-month of shards it holds.
        #[arg(long, value_parser = parse_price)]
        host_storage_gib_month: u64,
        /// A host earns this per GiB served to readers (its claim, capped by the grants issued).
        #[arg(long, value_parser = parse_price)]
        host_egress_gib: u64,
    },
    /// Every rate card, oldest first.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `scatter admin billing <command>`.
#[derive(Subcommand)]
pub(crate) enum BillingCmd {
    /// Rate cards: prices with the date they apply from.
    Rates {
        #[command(subcommand)]
        command: RatesCmd,
    },
    /// Close a period that is over: usage recorded for it later goes into the next period
    /// as an adjustment, and its prices can no longer change.
    Close {
        /// The period (YYYY-MM).
        #[arg(long, value_parser = parse_period)]
        period: String,
    },
    /// The raw usage records (append-only), as JSON.
    Records {
        /// Only this period (YYYY-MM).
        #[arg(long, value_parser = parse_period)]
        period: Option<String>,
        /// Only this user (e.g. u3).
        #[arg(long)]
        user: Option<scatter_core::UserId>,
    },
}

/// The output format asked for.
#[derive(Clone, Copy)]
pub(crate) enum Format {
    /// A table.
    Text,
    /// The statement as JSON.
    Json,
    /// One CSV row per line.
    Csv,
}

impl Format {
    /// From the `--json` and `--csv` flags.
    pub(crate) fn of(json: bool, csv: bool) -> Result<Format> {
        match (json, csv) {
            (true, true) => anyhow::bail!("choose one of --json and --csv"),
            (true, false) => Ok(Format::Json),
            (false, true) => Ok(Format::Csv),
            (false, false) => Ok(Format::Text),
        }
    }
}

/// Runs a billing subcommand.
pub(crate) async fn run(coord: &Coordinator, command: BillingCmd) -> Result<()> {
    match command {
        BillingCmd::Rates {
            command:
                RatesCmd::Set { from, currency, storage_gib_month, egress_gib, host_storage_gib_month, host_egress_gib },
        } => {
            let effective = parse_date(&from).map_err(anyhow::Error::msg)?;
            let card = coord
                .set_rate_card(&RateCardRequest {
                    effective,
                    currency,
                    storage_gib_month,
                    egress_gib,
                    host_storage_gib_month,
                    host_egress_gib,
                })
                .await?;
            println!("Prices from {} ({}) set.", from, card.currency);
        }
        BillingCmd::Rates { command: RatesCmd::Ls { json } } => {
            let cards = coord.rate_cards().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&cards)?);
            } else {
                println!(
                    "{:<11} {:<12} {:>17} {:>11} {:>22} {:>16}  set by",
                    "from", "currency", "storage/GiB-month", "egress/GiB", "host storage/GiB-month", "host egress/GiB"
                );
                for c in cards {
                    println!(
                        "{:<11} {:<12} {:>17} {:>11} {:>22} {:>16}  {}",
                        &crate::billing::time(c.effective)[..10],
                        scatter_core::tree::escape(c.currency.as_bytes()),
                        c.storage_gib_month,
                        c.egress_gib,
                        c.host_storage_gib_month,
                        c.host_egress_gib,
                        c.set_by
                    );
                }
            }
        }
        BillingCmd::Close { period } => {
            let answer = coord.close_period(&period).await?;
            match answer.get("closed_now").and_then(|v| v.as_bool()) {
                Some(true) => println!("Period {period} is closed."),
                _ => println!("Period {period} was closed already."),
            }
        }
        BillingCmd::Records { period, user } => {
            let records = coord.usage_records(period.as_deref(), user).await?;
            println!("{}", serde_json::to_string_pretty(&records)?);
        }
    }
    Ok(())
}

/// Prints a statement in `format`.
pub(crate) fn print(s: &Statement, format: Format) -> Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(s)?),
        Format::Csv => print!("{}", csv(s)),
        Format::Text => print!("{}", text(s)),
    }
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The statement as CSV: [`CSV_HEADER`], then one row per line of each user and host (a
/// party with no line gets one row with the `item` empty); `total` is the party's owed or
/// earned amount, repeated on each of its rows. Gaps come as rows of party `gap`.
pub fn csv(s: &Statement) -> String {
    let mut out = format!("{CSV_HEADER}\n");
    let mut row = |fields: Vec<String>| {
        out.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        out.push('\n');
    };
    for u in &s.users {
        let base = [s.period.clone(), "user".into(), format!("u{}", u.user), u.name.clone()];
        if u.lines.is_empty() {
            let mut f = base.to_vec();
            f.extend(
                ["", "", "", "", "", "", "0", "", &u.owed.to_string(), "0", "", &u.owed.to_string()].map(String::from),
            );
            row(f);
        }
        for l in &u.lines {
            let mut f = base.to_vec();
            f.extend(line_fields(l));
            f.extend([u.owed.to_string(), "0".into(), String::new(), u.owed.to_string()]);
            row(f);
        }
    }
    for h in &s.hosts {
        let base = [s.period.clone(), "host".into(), format!("h{}", h.host), String::new()];
        let tail = |f: &mut Vec<String>| {
            f.extend([
                h.earned.to_string(),
                h.withheld.to_string(),
                h.withheld_reason.clone().unwrap_or_default(),
                h.payable.to_string(),
            ])
        };
        if h.lines.is_empty() {
            let mut f = base.to_vec();
            f.extend(["", "", "", "", "", "", "0", ""].map(String::from));
            tail(&mut f);
            row(f);
        }
        for l in &h.lines {
            let mut f = base.to_vec();
            f.extend(line_fields(l));
            tail(&mut f);
            row(f);
        }
    }
    for g in &s.gaps {
        let mut f = vec![s.period.clone(), "gap".into(), String::new(), String::new()];
        f.extend([format!("no records from {} to {}: {}", time(g.from), time(g.to), g.reason)]);
        f.extend(std::iter::repeat_n(String::new(), 11));
        row(f);
    }
    out
}

/// `2026-11-30T01:02:03Z`.
pub fn time(unix: u64) -> String {
    scatter_coordinator::metering::format_time(unix)
}

/// A billing period on the command line (YYYY-MM), checked before anything is asked: a bad
/// one is a usage mistake (exit 2), not the coordinator's refusal.
pub fn parse_period(s: &str) -> Result<String, String> {
    s.parse::<scatter_coordinator::metering::Period>().map(|p| p.to_string())
}

/// `YYYY-MM-DD` (UTC) as unix seconds at its start.
pub fn parse_date(s: &str) -> Result<u64, String> {
    scatter_coordinator::metering::parse_date(s)
}

/// The statement as a table, one block per party.
pub fn text(s: &Statement) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let state = if s.closed { "closed" } else { "open" };
    let _ = writeln!(
        out,
        "Statement for {} ({} to {}, {state}), amounts in {}",
        s.period,
        time(s.from),
        time(s.to),
        if s.currency.is_empty() { "no currency (no rate card)" } else { &s.currency }
    );
    for g in &s.gaps {
        let _ = writeln!(out, "  no records from {} to {}: {}", time(g.from), time(g.to), g.reason);
    }
    // Storage is counted by samples, an hour apart by default: without this line a new
    // account's first hour reads as nothing stored.
    if !s.closed {
        let _ = match s.sampled_until {
            Some(t) if t >= s.from => writeln!(
                out,
                "  storage counted up to {} (the coordinator samples stored bytes every metering interval, an hour by default; what is stored since is counted at the next sample)",
                time(t.min(s.to))
            ),
            Some(_) | None => writeln!(
                out,
                "  storage not counted yet this period: the coordinator samples stored bytes every metering interval (an hour by default), the first time soon after it starts"
            ),
        };
    }
    for u in &s.users {
        let _ = writeln!(
            out,
            "\nuser u{} {}: owes {}\n  ingress {} B, egress {} B, stored {} byte-seconds (logical {})",
            u.user,
            scatter_core::tree::escape(u.name.as_bytes()),
            u.owed,
            u.ingress_bytes,
            u.egress_bytes,
            u.stored_byte_seconds,
            u.logical_byte_seconds
        );
        for l in &u.lines {
            line(&mut out, l);
        }
    }
    for h in &s.hosts {
        let _ = writeln!(
            out,
            "\nhost h{} ({}): earned {}, withheld {}{}, payable {}\n  held {} byte-seconds, granted {} B, claims served {} B, repair served {} B / received {} B, audits {} passed / {} failed, online {} s",
            h.host,
            h.state,
            h.earned,
            h.withheld,
            h.withheld_reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default(),
            h.payable,
            h.held_byte_seconds,
            h.granted_bytes,
            h.served_claimed_bytes,
            h.repair_served_bytes,
            h.repair_received_bytes,
            h.audits_passed,
            h.audits_failed,
            h.online_seconds
        );
        for l in &h.lines {
            line(&mut out, l);
        }
    }
    out
}

/// A statement line's CSV fields (item to adjusts), the same for users and hosts.
fn line_fields(l: &scatter_proto::billing::Line) -> [String; 8] {
    [
        l.item.clone(),
        l.quantity.clone(),
        l.unit.clone(),
        l.price.to_string(),
        l.price_per.clone(),
        l.rate_from.map(|v| v.to_string()).unwrap_or_default(),
        l.amount.to_string(),
        l.adjusts.clone().unwrap_or_default(),
    ]
}

fn line(out: &mut String, l: &scatter_proto::billing::Line) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "  {:<13} {:>28} {:<12} × {:>8} per {:<9} = {:>12}{}",
        l.item,
        l.quantity,
        l.unit,
        l.price,
        l.price_per,
        l.amount,
        l.adjusts.as_deref().map(|p| format!("  (adjusts {p})")).unwrap_or_default()
    );
}

/// `scatter usage`: the caller's own.
pub(crate) async fn usage(coord: &Coordinator, json: bool) -> Result<()> {
    let u = coord.usage().await.context("asking the coordinator for your usage")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&u)?);
        return Ok(());
    }
    let quota = u.quota.map(|q| scatter_core::ByteSize(q).to_string()).unwrap_or_else(|| "none".into());
    println!(
        "Stored now: {} on hosts with redundancy ({} before) and {} in the catalog (names, manifests, chunks, \
         write sessions' keys and snapshots' references to them), quota {quota}; {} object version(s), {} snapshot(s)",
        scatter_core::ByteSize(u.stored_bytes),
        scatter_core::ByteSize(u.logical_bytes),
        scatter_core::ByteSize(u.catalog_bytes),
        u.objects,
        u.snapshots
    );
    print!("{}", text(&u.statement));
    if u.statement.users.is_empty() {
        println!("\nNo usage recorded this period yet.");
    }
    Ok(())
}

/// A price: a whole number of the currency's unit (`EUR-micro`: millionths of a euro), so no
/// rounding ever enters a bill.
fn parse_price(s: &str) -> Result<u64, String> {
    s.parse().map_err(|_| {
        format!("`{s}` is not a whole number: prices are whole amounts of the currency's unit (4.5 EUR is 4500000 EUR-micro)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_are_utc() {
        assert_eq!(parse_date("2026-11-01"), Ok(1_793_491_200));
        assert_eq!(parse_date("2028-02-29").map(time).as_deref(), Ok("2028-02-29T00:00:00Z"));
        assert!(parse_date("2026-02-29").is_err() && parse_date("2026-11").is_err());
        assert_eq!(time(1_793_491_200 + 3723), "2026-11-01T01:02:03Z");
    }

    #[test]
    fn an_open_statement_says_up_to_when_storage_is_counted() {
        let from = 1_793_491_200;
        let mut s = Statement {
            period: "2026-11".into(),
            from,
            to: from + 30 * 86_400,
            closed: false,
            generated: from + 7200,
            currency: String::new(),
            gaps: Vec::new(),
            sampled_until: Some(from + 3600),
            users: Vec::new(),
            hosts: Vec::new(),
        };
        assert!(text(&s).contains("storage counted up to 2026-11-01T01:00:00Z"), "{}", text(&s));
        for before in [None, Some(from - 10)] {
            s.sampled_until = before;
            assert!(text(&s).contains("storage not counted yet this period"), "{}", text(&s));
        }
        s.closed = true;
        assert!(!text(&s).contains("storage"), "a closed statement is complete: {}", text(&s));
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
