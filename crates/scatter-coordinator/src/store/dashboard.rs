//! What the web dashboard keeps in the catalog, so that every coordinator sharing it serves
//! the same sign-ins: one-time login links, browser sessions, and samples of the grid's
//! figures for its charts.
//!
//! Links and sessions are stored only as BLAKE3 hashes of their secrets: a copied catalog
//! signs nobody in. A link is used once (deleted in the transaction that opens its
//! session); a session lapses after an idle or an absolute limit, ends at sign-out, and
//! ends with its device (revoked) or its user's account (disabled or removed), and with
//! its owner's for a delegate.

use scatter_core::{DeviceId, HostId, UserId};

use super::sql::Sql;
use super::{Store, StoreError};

/// Who a login link signs in, and whose a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// The account of the device whose signed request made the link.
    Device(DeviceId),
    /// The operator of a host, who made the link with the host's secret: sees that host only.
    Host(HostId),
}

impl Holder {
    fn columns(self) -> (Option<i64>, Option<i64>) {
        match self {
            Holder::Device(d) => (Some(d.0 as i64), None),
            Holder::Host(h) => (None, Some(h.0 as i64)),
        }
    }

    fn from_columns(device: Option<i64>, host: Option<i64>) -> Option<Self> {
        match (device, host) {
            (Some(d), None) => Some(Holder::Device(DeviceId(d as u64))),
            (None, Some(h)) => Some(Holder::Host(HostId(h as u64))),
            _ => None,
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Holder::Device(d) => write!(f, "{d}"),
            Holder::Host(h) => write!(f, "{h}"),
        }
    }
}

/// A dashboard session as the catalog has it.
#[derive(Debug, Clone)]
pub struct DashboardSession {
    /// Whose it is.
    pub holder: Holder,
    /// The session's CSRF token (compared in constant time with what forms send).
    pub csrf: [u8; 32],
    /// Unix time it was opened.
    pub created: u64,
}

/// One sample of the grid's figures, for the dashboard's charts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// Unix time.
    pub time: u64,
    /// Shard bytes the catalog places on hosts.
    pub stored: u64,
    /// Bytes hosts say they served since they joined (summed over hosts; a counter).
    pub served: u64,
    /// Shards rebuilt since the grid began (a counter).
    pub repaired_shards: u64,
    /// Live packs below full redundancy.
    pub degraded: u64,
}

/// A session's row: device, host, CSRF token, opened, last used.
type SessionColumns = (Option<i64>, Option<i64>, [u8; 32], i64, i64);

/// Dashboard sessions one device (or host operator) keeps open: its newest.
pub const SESSIONS_PER_HOLDER: i64 = 16;

/// Samples kept: about 30 days at one per 5 minutes.
pub const SAMPLES_KEPT: i64 = 8_640;

impl Store {
    /// Records a login link (by its hash) for `device`, valid until `expires`; drops links
    /// that lapsed.
    pub fn add_dashboard_link(
        &self,
        hash: &[u8; 32],
        holder: Holder,
        expires: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        let (device, host) = holder.columns();
        self.write(|c| {
            c.execute("DELETE FROM dashboard_links WHERE expires <= ?1", params![now as i64])?;
            c.execute(
                "INSERT INTO dashboard_links (hash, device, host, expires) VALUES (?1, ?2, ?3, ?4)",
                params![&hash[..], device, host, expires as i64],
            )?;
            Ok(())
        })
    }

    /// Uses up the login link with hash `link` and opens a session with hash `session` and
    /// CSRF token `csrf` for its device, in one transaction: the device, or `None` when the
    /// link is unknown, used or expired (a used link is gone, so it opens nothing twice).
    pub fn redeem_dashboard_link(
        &self,
        link: &[u8; 32],
        session: &[u8; 32],
        csrf: &[u8; 32],
        now: u64,
    ) -> Result<Option<Holder>, StoreError> {
        self.write(|c| {
            let found: Vec<(Option<i64>, Option<i64>, i64)> = c.query_map(
                "DELETE FROM dashboard_links WHERE hash = ?1 RETURNING device, host, expires",
                params![&link[..]],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let Some(&(device, host, expires)) = found.first() else { return Ok(None) };
            let Some(holder) = Holder::from_columns(device, host).filter(|_| expires > now as i64) else {
                return Ok(None);
            };
            // A link outlives neither its device nor its account (nor, for a delegate, its
            // owner's): revoking or disabling drops links, and this holds if one was missed.
            if let Some(d) = device {
                match super::devices::login(c, scatter_core::DeviceId(d as u64))? {
                    Some((row, _, revoked)) if !revoked && !row.disabled && !row.unproven => {}
                    _ => return Ok(None),
                }
            }
            c.execute(
                "INSERT INTO dashboard_sessions (hash, device, user, host, csrf, created, seen)
                 VALUES (?1, ?2, (SELECT user FROM devices WHERE id = ?2), ?3, ?4, ?5, ?5)",
                params![&session[..], device, host, &csrf[..], now as i64],
            )?;
            // The holder's newest sessions only: sessions nobody opens again are never swept
            // otherwise, and one account made 3,000 in 11 s (red team).
            let (column, id) = match (device, host) {
                (Some(d), _) => ("device", d),
                (None, Some(h)) => ("host", h),
                (None, None) => return Ok(Some(holder)),
            };
            let oldest_kept: Option<i64> = c.query_opt(
                &format!("SELECT created FROM dashboard_sessions WHERE {column} = ?1 ORDER BY created DESC LIMIT 1 OFFSET ?2"),
                params![id, SESSIONS_PER_HOLDER - 1],
                |r| r.get(0),
            )?;
            if let Some(oldest) = oldest_kept {
                c.execute(
                    &format!("DELETE FROM dashboard_sessions WHERE {column} = ?1 AND created < ?2"),
                    params![id, oldest],
                )?;
            }
            Ok(Some(holder))
        })
    }

    /// The session with hash `hash`, if it is open at `now`: used within `idle` seconds and
    /// opened within `absolute`. A lapsed one is deleted. Its last use is recorded (at most
    /// once a minute, to spare the catalog a write per page).
    pub fn dashboard_session(
        &self,
        hash: &[u8; 32],
        now: u64,
        idle: u64,
        absolute: u64,
    ) -> Result<Option<DashboardSession>, StoreError> {
        self.write(|c| {
            let row: Option<SessionColumns> = c.query_opt(
                "SELECT device, host, csrf, created, seen FROM dashboard_sessions WHERE hash = ?1",
                params![&hash[..]],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )?;
            let Some((device, host, csrf, created, seen)) = row else { return Ok(None) };
            let Some(holder) = Holder::from_columns(device, host) else { return Ok(None) };
            let now_i = now as i64;
            if now_i.saturating_sub(seen) > idle as i64 || now_i.saturating_sub(created) > absolute as i64 {
                c.execute("DELETE FROM dashboard_sessions WHERE hash = ?1", params![&hash[..]])?;
                return Ok(None);
            }
            if now_i.saturating_sub(seen) >= 60 {
                c.execute("UPDATE dashboard_sessions SET seen = ?2 WHERE hash = ?1", params![&hash[..], now_i])?;
            }
            Ok(Some(DashboardSession { holder, csrf, created: created as u64 }))
        })
    }

    /// Ends the session with hash `hash` (sign-out).
    pub fn end_dashboard_session(&self, hash: &[u8; 32]) -> Result<(), StoreError> {
        self.write(|c| Ok(c.execute("DELETE FROM dashboard_sessions WHERE hash = ?1", params![&hash[..]])?))?;
        Ok(())
    }

    /// Records a sample of the grid's figures (one per second at most), keeping the newest
    /// [`SAMPLES_KEPT`].
    pub fn record_sample(&self, s: &Sample) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute(
                "INSERT INTO samples (time, stored, served, repaired_shards, degraded) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (time) DO NOTHING",
                params![s.time as i64, s.stored as i64, s.served as i64, s.repaired_shards as i64, s.degraded as i64],
            )?;
            c.execute(
                "DELETE FROM samples WHERE time < (SELECT MIN(time) FROM
                     (SELECT time FROM samples ORDER BY time DESC LIMIT ?1) AS newest)",
                params![SAMPLES_KEPT],
            )?;
            Ok(())
        })
    }

    /// The time of the newest sample, if any.
    pub fn last_sample(&self) -> Result<Option<u64>, StoreError> {
        self.read(|c| {
            let t: Option<i64> = c.query_row("SELECT MAX(time) FROM samples", params![], |r| r.get(0))?;
            Ok(t.map(|t| t as u64))
        })
    }

    /// Samples taken at or after `since`, oldest first.
    pub fn samples(&self, since: u64) -> Result<Vec<Sample>, StoreError> {
        self.read(|c| {
            Ok(c.query_map(
                "SELECT time, stored, served, repaired_shards, degraded FROM samples WHERE time >= ?1 ORDER BY time",
                params![since as i64],
                |r| {
                    Ok(Sample {
                        time: r.get::<i64>(0)? as u64,
                        stored: r.get::<i64>(1)? as u64,
                        served: r.get::<i64>(2)? as u64,
                        repaired_shards: r.get::<i64>(3)? as u64,
                        degraded: r.get::<i64>(4)? as u64,
                    })
                },
            )?)
        })
    }
}

/// Ends the dashboard sessions and unused login links of `user` and of its delegates, whose
/// accounts go with it (disabled or removed).
pub(super) fn end_sessions_of(c: &Sql<'_>, user: UserId) -> Result<(), StoreError> {
    let u = user.0 as i64;
    c.execute(
        "DELETE FROM dashboard_links WHERE device IN
             (SELECT d.id FROM devices d JOIN users x ON x.id = d.user WHERE x.id = ?1 OR x.owner = ?1)",
        params![u],
    )?;
    c.execute(
        "DELETE FROM dashboard_sessions WHERE user IN (SELECT id FROM users WHERE id = ?1 OR owner = ?1)",
        params![u],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: Holder = Holder::Device(DeviceId(1));

    /// A catalog with one user (u1, device d1).
    fn with_user() -> (crate::store::testing::Guard, Store) {
        let (guard, store) = crate::store::testing::catalog();
        store.add_token(&[7; 32], "admin", scatter_proto::api::Role::Admin, None, None).expect("token");
        store.redeem_token(&[7; 32], "age1x", &[1; 32], "laptop", 10).expect("sql").expect("registered");
        (guard, store)
    }

    crate::store::testing::conformance! {
        fn a_login_link_opens_one_session_once_and_not_after_it_lapses() {
            let (_g, store) = with_user();
            store.add_dashboard_link(&[1; 32], D1, 400, 100).expect("link");
            assert_eq!(store.redeem_dashboard_link(&[1; 32], &[2; 32], &[3; 32], 101).expect("sql"), Some(D1));
            assert_eq!(store.redeem_dashboard_link(&[1; 32], &[4; 32], &[3; 32], 102).expect("sql"), None, "used");
            assert!(store.dashboard_session(&[4; 32], 102, 60, 600).expect("sql").is_none());
            assert_eq!(store.user_name(UserId(1)).expect("sql").as_deref(), Some("admin"));
            assert_eq!(store.user_name(UserId(9)).expect("sql"), None);
            let s = store.dashboard_session(&[2; 32], 150, 60, 600).expect("sql").expect("open");
            assert_eq!((s.holder, s.csrf), (D1, [3; 32]));
            // A link past its expiry opens nothing.
            store.add_dashboard_link(&[5; 32], D1, 200, 150).expect("link");
            assert_eq!(store.redeem_dashboard_link(&[5; 32], &[6; 32], &[3; 32], 200).expect("sql"), None);
            // A host operator's link opens a session for that host.
            let h = Holder::Host(HostId(4));
            store.add_dashboard_link(&[7; 32], h, 400, 300).expect("link");
            assert_eq!(store.redeem_dashboard_link(&[7; 32], &[8; 32], &[3; 32], 301).expect("sql"), Some(h));
            assert_eq!(store.dashboard_session(&[8; 32], 302, 60, 600).expect("sql").map(|s| s.holder), Some(h));
        }

        fn sessions_lapse_idle_or_old_and_end_with_their_user() {
            let (_g, store) = with_user();
            for (i, link) in [[1u8; 32], [2; 32], [3; 32]].iter().enumerate() {
                store.add_dashboard_link(link, D1, 10_000, 100).expect("link");
                store.redeem_dashboard_link(link, &[10 + i as u8; 32], &[0; 32], 100).expect("sql").expect("open");
            }
            // Idle for longer than 60 s: gone, and stays gone.
            assert!(store.dashboard_session(&[10; 32], 161, 60, 600).expect("sql").is_none());
            assert!(store.dashboard_session(&[10; 32], 100, 60, 600).expect("sql").is_none());
            // Kept in use, but older than the absolute limit.
            // (Its last use is recorded at most once a minute.)
            for t in [160, 220, 280] {
                assert!(store.dashboard_session(&[11; 32], t, 100, 190).expect("sql").is_some(), "{t}");
            }
            assert!(store.dashboard_session(&[11; 32], 340, 100, 190).expect("sql").is_none());
            // Sign-out and disabling end the others.
            store.end_dashboard_session(&[12; 32]).expect("sql");
            assert!(store.dashboard_session(&[12; 32], 101, 60, 600).expect("sql").is_none());
            store.add_dashboard_link(&[4; 32], D1, 10_000, 100).expect("link");
            store.redeem_dashboard_link(&[4; 32], &[13; 32], &[0; 32], 100).expect("sql").expect("open");
            store.add_dashboard_link(&[5; 32], D1, 10_000, 100).expect("link");
            assert!(store.set_disabled(UserId(1), true).expect("disable"));
            assert!(store.dashboard_session(&[13; 32], 101, 60, 600).expect("sql").is_none());
            assert_eq!(store.redeem_dashboard_link(&[5; 32], &[14; 32], &[0; 32], 101).expect("sql"), None, "links too");
            // Enabling the account again brings neither back.
            assert!(store.set_disabled(UserId(1), false).expect("enable"));
            assert!(store.dashboard_session(&[13; 32], 102, 60, 600).expect("sql").is_none());
        }

        fn a_device_keeps_its_newest_sessions_only() {
            // Attack (red team): one account opened 3,000 sessions in 11 s, and sessions
            // nobody opened again were never swept.
            let (_g, store) = with_user();
            let h = Holder::Host(HostId(4));
            store.add_dashboard_link(&[0; 32], h, 10_000, 10).expect("link");
            store.redeem_dashboard_link(&[0; 32], &[0; 32], &[0; 32], 10).expect("sql").expect("the host's");
            let extra = 3u8;
            for i in 1..=(SESSIONS_PER_HOLDER as u8 + extra) {
                store.add_dashboard_link(&[i; 32], D1, 10_000, 100).expect("link");
                store.redeem_dashboard_link(&[i; 32], &[i; 32], &[0; 32], 100 + u64::from(i)).expect("sql").expect("open");
            }
            let open = |i: u8| store.dashboard_session(&[i; 32], 200, 600, 6_000).expect("sql").is_some();
            assert!((1..=extra).all(|i| !open(i)), "the oldest went");
            assert!((extra + 1..=SESSIONS_PER_HOLDER as u8 + extra).all(open), "the newest stay");
            assert!(open(0), "another holder's stays");
        }

        fn samples_are_kept_in_time_order() {
            let (_g, store) = crate::store::testing::catalog();
            assert_eq!(store.last_sample().expect("sql"), None);
            for t in [30u64, 10, 20] {
                store.record_sample(&Sample { time: t, stored: t * 2, ..Default::default() }).expect("sample");
            }
            assert_eq!(store.last_sample().expect("sql"), Some(30));
            let got: Vec<u64> = store.samples(15).expect("sql").iter().map(|s| s.stored).collect();
            assert_eq!(got, vec![40, 60]);
        }
    }
}
