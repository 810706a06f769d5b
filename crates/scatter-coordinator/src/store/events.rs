//! The audit trail: security-relevant events with who, when and what, for `scatter admin
//! events`. The newest [`KEEP`] are kept, so refused requests cannot fill the disk.

use super::{Store, StoreError};

/// Events kept.
pub const KEEP: i64 = 100_000;

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
        self.write(|conn| {
            conn.execute(
                "INSERT INTO events (time, actor, action, detail) VALUES (?1, ?2, ?3, ?4)",
                params![time as i64, actor, action, detail],
            )?;
            conn.execute("DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?1", params![KEEP])?;
            Ok(())
        })
    }

    /// The newest `limit` events, oldest first.
    pub fn events(&self, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.read(|conn| {
            let rows = conn.query_map(
                "SELECT time, actor, action, detail FROM (SELECT * FROM events ORDER BY id DESC LIMIT ?1) AS e ORDER BY id",
                params![limit as i64],
                |r| Ok(Event { time: r.get::<i64>(0)? as u64, actor: r.get(1)?, action: r.get(2)?, detail: r.get(3)? }),
            )?;
            Ok(rows)
        })
    }
}
