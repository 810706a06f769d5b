//! Object lock and expiry: the rules, as pure functions of a lock, a request and a time.
//!
//! A lock is the coordinator's own record (never the sealed snapshot record, which the
//! client writes): until it ends, nothing that removes the data it is on is carried out —
//! `rm`, `forget`, rewriting a snapshot's record, a repack moving its chunks, removing the
//! user, expiry. *Governance* locks may be lifted by an admin (recorded as an event);
//! *compliance* locks may be lifted or shortened by nobody. Any lock may be extended.
//! The store applies these rules inside the transactions that delete (see `store::locks`).

use scatter_proto::api::{LockLimits, LockMode, Retention};

/// A lock in force or ended: its mode and the Unix time it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lock {
    /// How it may be lifted.
    pub mode: LockMode,
    /// Unix time it ends (removal is allowed from this second on).
    pub until: u64,
}

impl Lock {
    /// Whether it still stops removal at `now`.
    pub fn holds_at(&self, now: u64) -> bool {
        now < self.until
    }
}

/// Why a change to data or to its lock is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The data is locked.
    #[error("it is under a {} lock until {}; {}", .0.mode, utc(.0.until), way_out(.0.mode))]
    Locked(Lock),
    /// A compliance lock cannot be lifted or shortened, by anyone.
    #[error("its compliance lock until {} cannot be lifted or shortened, not even by an admin", utc(.0.until))]
    Compliance(Lock),
    /// A lock asked for ends before the one in force, which only an admin lifting a
    /// governance lock may cut short.
    #[error("its {} lock runs until {}, and a lock is only ever extended; ask for a later end", .0.mode, utc(.0.until))]
    Shorter(Lock),
    /// The lock asked for is longer than the caller may take.
    #[error("a lock of {asked} is longer than the {max} {who} may take; ask the grid's admin to raise it (`scatter admin user set --max-lock`)", asked = span(*.asked), max = span(*.max))]
    TooLong {
        /// Seconds asked for.
        asked: u64,
        /// Seconds allowed.
        max: u64,
        /// "this account" or "a delegate".
        who: &'static str,
    },
    /// The request does not hold together.
    #[error("{0}")]
    Invalid(&'static str),
}

/// Whether data under `lock` may be removed at `now` (by anyone: admins included, since
/// lifting a governance lock is a separate, recorded act).
pub fn may_remove(lock: Option<Lock>, now: u64) -> Result<(), Refusal> {
    match lock {
        Some(l) if l.holds_at(now) => Err(Refusal::Locked(l)),
        _ => Ok(()),
    }
}

/// Whether `old` may be replaced by `new` at `now` (`None`: lifted). Extending (a later end,
/// or governance made compliance) is always allowed; shortening or lifting a lock in force
/// is allowed only for a governance lock, and only to an admin.
pub fn may_change(old: Option<Lock>, new: Option<Lock>, admin: bool, now: u64) -> Result<(), Refusal> {
    let Some(old) = old.filter(|l| l.holds_at(now)) else { return Ok(()) };
    let extends = new.is_some_and(|n| n.until >= old.until && (n.mode == old.mode || n.mode == LockMode::Compliance));
    if extends {
        return Ok(());
    }
    match old.mode {
        LockMode::Governance if admin => Ok(()),
        LockMode::Compliance if admin => Err(Refusal::Compliance(old)),
        _ if new.is_some_and(|n| n.until < old.until) => Err(Refusal::Shorter(old)),
        LockMode::Compliance => Err(Refusal::Compliance(old)),
        LockMode::Governance => Err(Refusal::Locked(old)),
    }
}

/// The lock and expiry a commit at `now` gets: what `asked` says, else the user's default
/// lock; checked against the maxima (`delegate`: the writer is a reader or appender).
/// Returns `(lock, expires)`.
pub fn decide(
    asked: &Retention,
    limits: &LockLimits,
    delegate: bool,
    now: u64,
) -> Result<(Option<Lock>, Option<u64>), Refusal> {
    if asked.keep_until.is_some() && asked.keep_for.is_some() {
        return Err(Refusal::Invalid("give either a lock end (--keep-until) or a lock length (--keep-for), not both"));
    }
    let (max, who) =
        if delegate { (limits.max_delegate_lock, "a delegate") } else { (limits.max_lock, "this account") };
    let until = match (asked.keep_until, asked.keep_for) {
        (Some(t), _) if t <= now => {
            return Err(Refusal::Invalid("the lock's end (--keep-until) is in the past"));
        }
        (Some(t), _) => Some(t),
        (None, Some(0)) => return Err(Refusal::Invalid("a lock length must be greater than zero")),
        (None, Some(secs)) => Some(now.saturating_add(secs)),
        // The default never refuses a write: it is capped at the writer's maximum.
        (None, None) if limits.default_lock > 0 => Some(now.saturating_add(limits.default_lock.min(max))),
        (None, None) => None,
    };
    let mode = asked.mode.unwrap_or(limits.default_mode);
    if asked.mode.is_some() && until.is_none() {
        return Err(Refusal::Invalid("a lock mode needs a lock: add --keep-for or --keep-until"));
    }
    let lock = until.map(|until| Lock { mode, until });
    if let Some(l) = lock {
        let asked = l.until - now;
        if asked > max {
            return Err(Refusal::TooLong { asked, max, who });
        }
    }
    let expires = match asked.expire_after {
        Some(0) => return Err(Refusal::Invalid("an expiry must be greater than zero")),
        Some(secs) => Some(now.saturating_add(secs)),
        None => None,
    };
    if let (Some(l), Some(e)) = (lock, expires) {
        if e < l.until {
            return Err(Refusal::Invalid(
                "the data would expire before its lock ends; expire it later or lock it shorter",
            ));
        }
    }
    Ok((lock, expires))
}

/// Whether data with `lock` and `expires` is due for removal at `now`: expired, and its
/// lock (if any) ended.
pub fn due(lock: Option<Lock>, expires: Option<u64>, now: u64) -> bool {
    expires.is_some_and(|e| e <= now) && may_remove(lock, now).is_ok()
}

/// What a user refused by a lock of `mode` can do.
fn way_out(mode: LockMode) -> &'static str {
    match mode {
        LockMode::Governance => "wait until then, or ask the grid's admin to lift it (`scatter admin lock lift`)",
        LockMode::Compliance => "it stays until then: nobody can lift it",
    }
}

/// Unix time as RFC 3339 UTC (`2026-12-01T08:00:00Z`).
pub fn utc(t: u64) -> String {
    let (days, secs) = ((t / 86_400) as i64, t % 86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// A length of time in its largest whole unit (`90d`, `36h`, `5m`, `12s`).
fn span(secs: u64) -> String {
    match secs {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h", s / 3600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: LockMode = LockMode::Governance;
    const C: LockMode = LockMode::Compliance;

    fn lock(mode: LockMode, until: u64) -> Option<Lock> {
        Some(Lock { mode, until })
    }

    #[test]
    fn removal_waits_for_the_lock_to_end_whatever_its_mode() {
        for mode in [G, C] {
            assert!(matches!(may_remove(lock(mode, 100), 99), Err(Refusal::Locked(_))));
            assert_eq!(may_remove(lock(mode, 100), 100), Ok(()));
            assert_eq!(may_remove(lock(mode, 100), 101), Ok(()));
        }
        assert_eq!(may_remove(None, 0), Ok(()));
    }

    #[test]
    fn a_lock_may_be_extended_by_anyone_but_shortened_only_when_governance_and_by_an_admin() {
        for mode in [G, C] {
            assert_eq!(may_change(lock(mode, 100), lock(mode, 200), false, 50), Ok(()), "extend {mode}");
            assert_eq!(may_change(lock(mode, 100), lock(mode, 100), false, 50), Ok(()), "same {mode}");
        }
        // Governance to compliance is stronger: allowed; the reverse is a weakening.
        assert_eq!(may_change(lock(G, 100), lock(C, 100), false, 50), Ok(()));
        assert!(matches!(may_change(lock(C, 100), lock(G, 100), true, 50), Err(Refusal::Compliance(_))));
        // Shortening and lifting.
        assert!(matches!(may_change(lock(G, 100), lock(G, 60), false, 50), Err(Refusal::Shorter(_))));
        assert!(matches!(may_change(lock(C, 100), lock(C, 60), false, 50), Err(Refusal::Shorter(_))));
        assert!(matches!(may_change(lock(G, 100), None, false, 50), Err(Refusal::Locked(_))));
        assert_eq!(may_change(lock(G, 100), None, true, 50), Ok(()), "an admin lifts governance");
        assert_eq!(may_change(lock(G, 100), lock(G, 60), true, 50), Ok(()));
        assert!(matches!(may_change(lock(C, 100), None, true, 50), Err(Refusal::Compliance(_))));
        assert!(matches!(may_change(lock(C, 100), lock(C, 99), true, 50), Err(Refusal::Compliance(_))));
        // An ended lock binds nobody.
        assert_eq!(may_change(lock(C, 100), None, false, 100), Ok(()));
    }

    #[test]
    fn a_commit_gets_the_asked_lock_or_the_default_within_the_maxima() {
        let limits = LockLimits { max_lock: 1000, max_delegate_lock: 100, default_lock: 0, default_mode: G };
        let ask = |keep_for, mode| Retention { keep_for, mode, ..Default::default() };
        assert_eq!(decide(&ask(None, None), &limits, false, 10), Ok((None, None)));
        assert_eq!(decide(&ask(Some(50), Some(C)), &limits, false, 10), Ok((lock(C, 60), None)));
        assert_eq!(decide(&ask(Some(1000), None), &limits, false, 10), Ok((lock(G, 1010), None)));
        assert!(matches!(decide(&ask(Some(1001), None), &limits, false, 10), Err(Refusal::TooLong { max: 1000, .. })));
        assert!(matches!(decide(&ask(Some(101), None), &limits, true, 10), Err(Refusal::TooLong { max: 100, .. })));
        assert_eq!(decide(&ask(Some(100), None), &limits, true, 10), Ok((lock(G, 110), None)));
        let until = Retention { keep_until: Some(500), ..Default::default() };
        assert_eq!(decide(&until, &limits, false, 10), Ok((lock(G, 500), None)));
        assert!(matches!(decide(&until, &limits, true, 10), Err(Refusal::TooLong { .. })));
        let past = Retention { keep_until: Some(5), ..Default::default() };
        assert!(matches!(decide(&past, &limits, false, 10), Err(Refusal::Invalid(_))));
        assert!(matches!(decide(&ask(None, Some(C)), &limits, false, 10), Err(Refusal::Invalid(_))));
        // The user's default, in its mode, unless the commit asks otherwise.
        let defaults = LockLimits { default_lock: 30, default_mode: C, ..limits };
        assert_eq!(decide(&ask(None, None), &defaults, false, 10), Ok((lock(C, 40), None)));
        assert_eq!(decide(&ask(Some(5), None), &defaults, false, 10), Ok((lock(C, 15), None)));
        assert_eq!(decide(&ask(Some(5), Some(G)), &defaults, false, 10), Ok((lock(G, 15), None)));
        // A default longer than a delegate may take is cut to its maximum, never refused.
        let long = LockLimits { default_lock: 500, ..limits };
        assert_eq!(decide(&ask(None, None), &long, true, 10), Ok((lock(G, 110), None)));
        assert_eq!(decide(&ask(None, None), &long, false, 10), Ok((lock(G, 510), None)));
        // Expiry, never before the lock ends.
        let expiring = Retention { expire_after: Some(20), ..Default::default() };
        assert_eq!(decide(&expiring, &limits, false, 10), Ok((None, Some(30))));
        let both = Retention { keep_for: Some(50), expire_after: Some(20), ..Default::default() };
        assert!(matches!(decide(&both, &limits, false, 10), Err(Refusal::Invalid(_))));
    }

    #[test]
    fn data_is_due_once_expired_and_unlocked() {
        assert!(!due(None, None, 100));
        assert!(!due(None, Some(101), 100));
        assert!(due(None, Some(100), 100));
        assert!(!due(lock(C, 200), Some(100), 150));
        assert!(due(lock(C, 200), Some(100), 200));
    }

    #[test]
    fn times_are_written_in_utc() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_796_083_199), "2026-11-30T23:59:59Z");
        assert_eq!(span(90 * 86_400), "90d");
        assert_eq!(span(3 * 3600), "3h");
    }
}
