//! Object lock and expiry on the command line: the `--keep-until`, `--keep-for`,
//! `--lock-mode` and `--expire-after` flags of `put` and `backup`, `scatter lock` (extend
//! a snapshot's lock), and the admin's `scatter admin lock ls|lift` and
//! `scatter admin user set` (maxima and default lock).
//!
//! The coordinator decides and enforces every lock; these only ask and show.

use anyhow::{bail, Result};
use scatter_client::coordinator::Coordinator;
use scatter_proto::api::{Hold, LiftLockRequest, LockLimitsRequest, LockMode, LockTarget, Retention};

/// `--keep-until`, `--keep-for`, `--lock-mode`, `--expire-after`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct RetentionArgs {
    /// Lock the new data until DATE (UTC: 2027-06-30 or 2027-06-30T12:00:00Z): until then
    /// the coordinator refuses rm, forget, prune and every other removal of it.
    #[arg(long, value_name = "DATE", conflicts_with = "keep_for")]
    pub keep_until: Option<String>,
    /// Lock the new data for DURATION from now (e.g. 30d, 12h).
    #[arg(long, value_name = "DURATION")]
    pub keep_for: Option<String>,
    /// governance (an admin may lift it) or compliance (nobody may); default: your default
    /// mode as the admin set it, else governance.
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    pub lock_mode: Option<LockMode>,
    /// Have the coordinator remove the new data DURATION from now (once any lock ended).
    #[arg(long, value_name = "DURATION")]
    pub expire_after: Option<String>,
}

impl RetentionArgs {
    /// What to ask the coordinator for.
    pub fn retention(&self) -> Result<Retention> {
        let keep_until = match &self.keep_until {
            None => None,
            Some(d) => Some(scatter_cli::terms::parse_utc(d.trim()).ok_or_else(|| {
                anyhow::anyhow!("`{d}` is not a date; write 2027-06-30 or 2027-06-30T12:00:00Z (UTC)")
            })?),
        };
        let secs = |d: &Option<String>| -> Result<Option<u64>> {
            d.as_deref()
                .map(|d| scatter_cli::duration::parse(d).map(|d| d.as_secs().max(1)))
                .transpose()
                .map_err(anyhow::Error::msg)
        };
        Ok(Retention {
            keep_until,
            keep_for: secs(&self.keep_for)?,
            mode: self.lock_mode,
            expire_after: secs(&self.expire_after)?,
        })
    }
}

/// A lock mode by name.
pub fn parse_mode(s: &str) -> Result<LockMode, String> {
    LockMode::parse(s.trim()).ok_or_else(|| format!("`{s}` is not a lock mode; use governance or compliance"))
}

/// A hold for listings: `compliance until 2026-12-01 08:00 UTC, expires …`, or empty.
pub fn describe(hold: &Hold) -> String {
    let mut parts = Vec::new();
    if let (Some(mode), Some(until)) = (hold.mode, hold.lock_until) {
        let now = now();
        if until > now {
            parts.push(format!("locked ({mode}) until {}", scatter_cli::terms::format_time(until)));
        }
    }
    if let Some(e) = hold.expires {
        parts.push(format!("expires {}", scatter_cli::terms::format_time(e)));
    }
    parts.join(", ")
}

/// A hold in JSON: `lock_mode`, `lock_until` and `expires` (Unix times), null when unset.
pub fn json(hold: &Hold) -> serde_json::Value {
    serde_json::json!({ "lock_mode": hold.mode, "lock_until": hold.lock_until, "expires": hold.expires })
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `scatter admin lock …`.
#[derive(clap::Subcommand)]
pub enum AdminLockCmd {
    /// Every lock and expiry the coordinator holds (of one user).
    Ls {
        /// Only this user's (e.g. u3).
        #[arg(long)]
        user: Option<scatter_core::UserId>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lift a governance lock (a compliance lock cannot be lifted by anyone); recorded with
    /// the reason in `scatter admin events`.
    Lift {
        /// A snapshot id (or the start of one, as `lock ls` and `snapshots` show it), or
        /// `object:N` as `lock ls` lists object versions.
        id: String,
        /// Why (recorded).
        #[arg(long)]
        reason: String,
    },
}

/// `scatter admin user set USER --max-lock … --max-delegate-lock … --default-lock …`.
#[derive(clap::Args, Debug, Default)]
pub struct LimitArgs {
    /// Longest lock the user may take (e.g. 90d; `0` back to the grid's default, 365d).
    #[arg(long, value_name = "DURATION", value_parser = parse_span)]
    pub max_lock: Option<u64>,
    /// Longest lock its readers and appenders may take (`0` back to the default, 30d).
    #[arg(long, value_name = "DURATION", value_parser = parse_span)]
    pub max_delegate_lock: Option<u64>,
    /// Lock every new snapshot and object of the user for DURATION unless it asks otherwise
    /// (`0`: no default lock).
    #[arg(long, value_name = "DURATION", value_parser = parse_span)]
    pub default_lock: Option<u64>,
    /// The default lock's mode.
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    pub default_lock_mode: Option<LockMode>,
}

/// A duration in seconds, `0` allowed (it clears a setting).
fn parse_span(s: &str) -> Result<u64, String> {
    if s.trim() == "0" {
        return Ok(0);
    }
    scatter_cli::duration::parse(s).map(|d| d.as_secs())
}

/// Runs `scatter admin user set`.
pub async fn set_limits(coord: &Coordinator, user: scatter_core::UserId, a: LimitArgs) -> Result<()> {
    if a.max_lock.is_none()
        && a.max_delegate_lock.is_none()
        && a.default_lock.is_none()
        && a.default_lock_mode.is_none()
    {
        bail!("say what to set: --max-lock, --max-delegate-lock, --default-lock or --default-lock-mode");
    }
    let l = coord
        .set_lock_limits(&LockLimitsRequest {
            user,
            max_lock: a.max_lock,
            max_delegate_lock: a.max_delegate_lock,
            default_lock: a.default_lock,
            default_mode: a.default_lock_mode,
        })
        .await?;
    let text = |s: u64| scatter_cli::duration::text(std::time::Duration::from_secs(s));
    let default = match l.default_lock {
        0 => "no default lock".to_string(),
        s => format!("default lock {} ({})", text(s), l.default_mode),
    };
    println!(
        "{user}: locks up to {}, its delegates' up to {}; {default}.",
        text(l.max_lock),
        text(l.max_delegate_lock)
    );
    Ok(())
}

/// Runs `scatter admin lock …`.
pub async fn admin(coord: &Coordinator, cmd: AdminLockCmd) -> Result<()> {
    match cmd {
        AdminLockCmd::Ls { user, json } => {
            let all = coord.locks(user).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(());
            }
            for l in &all {
                let id = match l.target {
                    LockTarget::Snapshot => l.id.clone(),
                    LockTarget::Object => format!("object:{}", l.id),
                };
                let shown = describe(&l.hold);
                println!(
                    "{:<6} {id}  {}",
                    l.user.to_string(),
                    if shown.is_empty() { "lock ended or lifted" } else { &shown }
                );
            }
            println!("{} lock(s) or expiries", all.len());
        }
        AdminLockCmd::Lift { id, reason } => {
            let (target, id) = match id.strip_prefix("object:") {
                Some(n) => (LockTarget::Object, n.to_owned()),
                None => (LockTarget::Snapshot, snapshot_by_prefix(coord, id).await?),
            };
            coord.lift_lock(&LiftLockRequest { target, id: id.clone(), reason }).await?;
            let shown = if target == LockTarget::Object { format!("object:{id}") } else { id };
            println!("Lifted the lock on {shown}; recorded in `scatter admin events`.");
        }
    }
    Ok(())
}

/// The id of the locked snapshot `prefix` starts (as `lock ls` and `snapshots` show ids,
/// shortened): itself when none or several do, for the coordinator to say so.
async fn snapshot_by_prefix(coord: &Coordinator, prefix: String) -> Result<String> {
    let locks = coord.locks(None).await?;
    let mut matching = locks.iter().filter(|l| l.target == LockTarget::Snapshot && l.id.starts_with(&prefix));
    match (matching.next(), matching.next()) {
        (Some(one), None) => Ok(one.id.clone()),
        (Some(_), Some(_)) => bail!("several locked snapshots start with {prefix}; give more of the id"),
        _ => Ok(prefix),
    }
}

/// Runs `scatter lock SNAPSHOT --keep-for|--keep-until [--lock-mode]`: extends a lock.
pub async fn extend(coord: &Coordinator, id: String, a: &RetentionArgs) -> Result<()> {
    let r = a.retention()?;
    if r.expire_after.is_some() {
        bail!("`scatter lock` extends a lock; an expiry is set when the data is stored");
    }
    let until = coord
        .extend_lock(&scatter_proto::api::ExtendLockRequest {
            id: id.clone(),
            keep_until: r.keep_until,
            keep_for: r.keep_for,
            mode: r.mode,
        })
        .await?;
    let short = &id[..8.min(id.len())];
    match until {
        Some(t) => println!("Snapshot {short} is locked until {}.", crate::billing::time(t)),
        // A coordinator from before it said until when.
        None => println!("Snapshot {short} is locked as asked."),
    }
    Ok(())
}
