//! The audit trail: security-relevant events with who, when and what, for `scatter admin
//! events`. Events are kept in four pools, the newest [`KEEP`] of each, by who could repeat
//! them: what the grid's side does (admins, the operator at the coordinator's machine, the
//! coordinator itself); refusals of accounts' and unknown peers' requests; what accounts that
//! are not admins do (their devices, delegates, recovery codes, policies, links); and what
//! hosts send or do (their reports, keys, certificates, comings and goings). So no account
//! or host, however often it repeats what it may, pushes a change of the grid's side out of
//! the trail, nor fills the disk; a host does not push out the record of requests refused;
//! and in the pools of accounts and hosts each actor keeps at most its newest
//! [`PER_ACTOR`], so one pushes out only its own. (Once, a tenant's 100,000 repeated
//! requests, a few minutes' work, erased every record of who was invited or disabled.)

use super::{Store, StoreError};

/// Events kept, of each pool.
pub const KEEP: i64 = 100_000;

/// Events one actor keeps in the pools of accounts and of hosts.
pub const PER_ACTOR: i64 = 1_000;

/// Who did what an event records, as far as it decides where the event is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    /// The grid's side: an admin, the operator at the coordinator's machine, or the
    /// coordinator itself.
    Grid,
    /// An account that is not an admin (user, reader, appender, or a device of one), or a
    /// peer not known: what it does it may repeat at will.
    Account,
    /// A storage host, or whoever holds a join token.
    Host,
}

/// The pool changes of the grid's side are kept in.
const GRID: i64 = 0;
/// The pool of refused requests (of accounts and unknown peers).
const REFUSALS: i64 = 1;
/// The pool of what accounts that are not admins do.
const ACCOUNTS: i64 = 2;
/// The pool of what hosts send or do.
const HOSTS: i64 = 3;

/// The pool an event of `party` doing `action` is kept in.
fn pool(party: Party, action: &str) -> i64 {
    let refused = action.ends_with("refused") || action.ends_with("forbidden");
    match party {
        Party::Host => HOSTS,
        _ if refused => REFUSALS,
        Party::Account => ACCOUNTS,
        // The coordinator's record of removing what tenants set to expire: as often as they
        // like, one every pass.
        Party::Grid if action == "data.expired" => ACCOUNTS,
        Party::Grid => GRID,
    }
}

/// One recorded event.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Event {
    /// Unix time.
    pub time: u64,
    /// Who: a user (`u3`), a host (`h2`), or `unknown`.
    pub actor: String,
    /// What, e.g. `user.invited`, `auth.refused`, `host.joined`.
    pub action: String,
    /// Details (never a secret).
    pub detail: String,
}

impl Store {
    /// Records an event of `party`, by `actor` (`u3`, `h2`, `unknown`…).
    pub fn record_event(
        &self,
        time: u64,
        party: Party,
        actor: &str,
        action: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let pool = pool(party, action);
        self.write(|conn| {
            let (n, k): (i64, i64) = conn.query_row(
                "INSERT INTO events (time, actor, action, detail, pool, n, k)
                 VALUES (?1, ?2, ?3, ?4, ?5,
                         (SELECT COALESCE(MAX(n), 0) + 1 FROM events WHERE pool = ?5),
                         (SELECT COALESCE(MAX(k), 0) + 1 FROM events WHERE pool = ?5 AND actor = ?2))
                 RETURNING n, k",
                params![time as i64, actor, action, detail, pool],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            conn.execute("DELETE FROM events WHERE pool = ?1 AND n <= ?2", params![pool, n - KEEP])?;
            if pool == ACCOUNTS || pool == HOSTS {
                conn.execute(
                    "DELETE FROM events WHERE pool = ?1 AND actor = ?2 AND k <= ?3",
                    params![pool, actor, k - PER_ACTOR],
                )?;
            }
            Ok(())
        })
    }

    /// The newest `limit` events, oldest first.
    pub fn events(&self, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.read(|conn| {
            let rows = conn.query_map(
                "SELECT time, actor, action, detail FROM (SELECT * FROM events ORDER BY id DESC LIMIT ?1) AS recent ORDER BY id",
                params![limit as i64],
                |r| Ok(Event { time: r.get::<i64>(0)? as u64, actor: r.get(1)?, action: r.get(2)?, detail: r.get(3)? }),
            )?;
            Ok(rows)
        })
    }
}
