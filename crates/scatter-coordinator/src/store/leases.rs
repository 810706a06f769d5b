//! Leases on background jobs (the checker, the deleter), so that with several coordinators
//! on one catalog each job runs in one of them at a time, and one that stalls (paused,
//! partitioned) cannot act on a job another has taken over since.
//!
//! A lease has a holder, an expiry and a **fencing token** that grows each time the lease
//! changes hands. A job's writes carry the [`Fence`] it got, and each checks it inside its
//! own transaction (and renews the lease there): a write whose token is no longer the
//! lease's, or whose lease lapsed, is refused with [`StoreError::Fenced`]. So a coordinator
//! resumed after its lease passed to another cannot record anything from the pass it was in.

use super::sql::Sql;
use super::{Store, StoreError};

/// Proof that a job's lease was held: checked by the job's writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The job.
    pub job: &'static str,
    /// The lease's fencing token when it was acquired.
    pub token: u64,
    /// How long each checked write extends the lease, in seconds.
    pub ttl: u64,
}

/// Checks `fence` (if any) inside the caller's transaction and renews the lease: the write
/// goes ahead only if the lease still carries this token and has not lapsed at `now`.
pub(super) fn check(conn: &Sql<'_>, fence: Option<&Fence>, now: u64) -> Result<(), StoreError> {
    let Some(f) = fence else { return Ok(()) };
    let renewed = conn.execute(
        "UPDATE leases SET expires = ?3 WHERE job = ?1 AND token = ?2 AND expires > ?4",
        params![f.job, f.token as i64, now.saturating_add(f.ttl) as i64, now as i64],
    )?;
    if renewed == 0 {
        return Err(StoreError::Fenced(f.job));
    }
    Ok(())
}

impl Store {
    /// Takes or renews the lease on `job` for `holder` until `now + ttl`. A free or lapsed
    /// lease changes hands with a new fencing token; a lease `holder` has is extended with
    /// its token; one another holder has is not taken (`None`).
    pub fn acquire_lease(
        &self,
        job: &'static str,
        holder: &str,
        now: u64,
        ttl: u64,
    ) -> Result<Option<Fence>, StoreError> {
        self.write(|tx| {
            let current: Option<(String, i64, i64)> =
                tx.query_opt("SELECT holder, token, expires FROM leases WHERE job = ?1", params![job], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
            let expires = now.saturating_add(ttl) as i64;
            let token = match current {
                None => {
                    tx.execute(
                        "INSERT INTO leases (job, holder, token, expires) VALUES (?1, ?2, 1, ?3)",
                        params![job, holder, expires],
                    )?;
                    1
                }
                Some((h, token, until)) if h == holder && until > now as i64 => {
                    tx.execute("UPDATE leases SET expires = ?2 WHERE job = ?1", params![job, expires])?;
                    token
                }
                Some((_, token, until)) if until <= now as i64 => {
                    tx.execute(
                        "UPDATE leases SET holder = ?2, token = ?3, expires = ?4 WHERE job = ?1",
                        params![job, holder, token + 1, expires],
                    )?;
                    token + 1
                }
                Some(_) => return Ok(None),
            };
            Ok(Some(Fence { job, token: token as u64, ttl }))
        })
    }

    /// Lets go of every lease `holder` has (a clean shutdown), so another coordinator can
    /// take the jobs at once; their tokens stay, so the next holder's are new.
    pub fn release_leases(&self, holder: &str) -> Result<(), StoreError> {
        self.write(|c| Ok(c.execute("UPDATE leases SET expires = 0 WHERE holder = ?1", params![holder])?))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Standing;
    use super::*;
    use scatter_core::HostId;

    crate::store::testing::conformance! {
        fn a_lease_is_held_once_and_a_stale_holder_is_fenced_off() {
            let (_dir, store) = crate::store::testing::catalog();
            let a = store.acquire_lease("checker", "a", 100, 10).expect("sql").expect("free");
            assert_eq!(a.token, 1);
            assert_eq!(store.acquire_lease("checker", "b", 105, 10).expect("sql"), None, "a holds it");
            assert_eq!(store.acquire_lease("checker", "a", 105, 10).expect("sql"), Some(a.clone()), "renewed");
            // Writes under a's fence renew it.
            store.change_host_state(HostId(1), &[Standing::Active], Standing::Draining, Some(&a), 112).expect("a writes");
            assert_eq!(store.acquire_lease("checker", "b", 120, 10).expect("sql"), None, "renewed to 122");
            // a stalls past its lease; b takes over with a new token.
            let b = store.acquire_lease("checker", "b", 123, 10).expect("sql").expect("lapsed");
            assert_eq!(b.token, 2);
            // a resumes: its writes are refused, b's go through.
            let stale = store.change_host_state(HostId(1), &[Standing::Draining], Standing::Retired, Some(&a), 124);
            assert!(matches!(stale, Err(StoreError::Fenced("checker"))), "{stale:?}");
            store.change_host_state(HostId(1), &[Standing::Draining], Standing::Retired, Some(&b), 124).expect("b writes");
            // Another job's lease is separate.
            assert_eq!(store.acquire_lease("deleter", "a", 124, 10).expect("sql").map(|f| f.token), Some(1));
            // Released at shutdown: taken at once, with a new token.
            store.release_leases("b").expect("release");
            assert_eq!(store.acquire_lease("checker", "c", 125, 10).expect("sql").map(|f| f.token), Some(3));
        }
    }
}
