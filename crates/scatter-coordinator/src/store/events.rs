//! The audit trail: security-relevant events with who, when and what, for `scatter admin
//! events`. Events are kept in four pools, the newest [`KEEP`] of each: refusals (refused
//! or forbidden requests), what any account or host may repeat at will (certificates,
//! dashboard links, its own policy and trust settings, hosts coming and going), what hosts
//! report (grants they refused), and the rest, changes only admins, invites and recovery
//! codes make. So neither refused requests nor repeated self-service can fill the disk or
//! push the record of a change out of the trail (any account could, with 100,000 forbidden
//! requests in about a minute and a half), and a host, which may report whatever it likes at
//! every heartbeat, pushes out only hosts' reports, not the coordinator's own record of
//! refused requests.

use super::{Store, StoreError};

/// Events kept, of each pool.
pub const KEEP: i64 = 100_000;

/// The pool `action` is kept in: 1 for a refusal (`auth.refused`, `auth.forbidden`,
/// `lock.refused`…), 2 for what any account or host may repeat at will, 3 for what a host
/// reports (`grant.refused`), 0 for the rest.
fn pool(action: &str) -> i64 {
    const REPEATABLE: &[&str] = &[
        "dashboard.link",
        "dashboard.login",
        "delegate.trusted",
        "delegate.untrusted",
        "gateway.certified",
        "host.certified",
        "host.offline",
        "host.online",
        "host.receipts_backfilled",
        "lock.extended",
        "policy.set",
    ];
    if action == "grant.refused" {
        3
    } else if action.ends_with("refused") || action.ends_with("forbidden") {
        1
    } else if REPEATABLE.contains(&action) {
        2
    } else {
        0
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
    /// Records an event.
    pub fn record_event(&self, time: u64, actor: &str, action: &str, detail: &str) -> Result<(), StoreError> {
        let pool = pool(action);
        self.write(|conn| {
            let n: i64 = conn.query_row(
                "INSERT INTO events (time, actor, action, detail, pool, n)
                 VALUES (?1, ?2, ?3, ?4, ?5, (SELECT COALESCE(MAX(n), 0) + 1 FROM events WHERE pool = ?5))
                 RETURNING n",
                params![time as i64, actor, action, detail, pool],
                |r| r.get(0),
            )?;
            conn.execute("DELETE FROM events WHERE pool = ?1 AND n <= ?2", params![pool, n - KEEP])?;
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
