//! The audit trail: security-relevant events with who, when and what, for `scatter admin
//! events`. Refusals (refused or forbidden requests) and the other events are kept apart, the
//! newest [`KEEP`] of each: refused requests can neither fill the disk nor push the record of
//! a change out of the trail (any account could, with 100,000 forbidden requests in about a
//! minute and a half).

use super::{Store, StoreError};

/// Events kept, of refusals and of the others each.
pub const KEEP: i64 = 100_000;

/// Whether `action` records a refusal (`auth.refused`, `auth.forbidden`, `lock.refused`…).
fn is_refusal(action: &str) -> bool {
    action.ends_with("refused") || action.ends_with("forbidden")
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
        let refusal = i64::from(is_refusal(action));
        self.write(|conn| {
            let n: i64 = conn.query_row(
                "INSERT INTO events (time, actor, action, detail, refusal, n)
                 VALUES (?1, ?2, ?3, ?4, ?5, (SELECT COALESCE(MAX(n), 0) + 1 FROM events WHERE refusal = ?5))
                 RETURNING n",
                params![time as i64, actor, action, detail, refusal],
                |r| r.get(0),
            )?;
            conn.execute("DELETE FROM events WHERE refusal = ?1 AND n <= ?2", params![refusal, n - KEEP])?;
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
