//! What each read grant has served. A read grant is charged to its account once, when the
//! coordinator issues it, so a host serves its bytes twice at most (the read and a retry)
//! and refuses it after: a reader cannot take the same bytes again and again for the price
//! of one locate. Pure bookkeeping: the caller names the grant (a hash of its token) and the
//! time.

use std::collections::HashMap;

/// How many times a grant's bytes may be served: once, and once more for a retry.
pub const TIMES: u64 = 2;

/// Grants remembered at most (about 80 bytes each). Past it, expired grants go first, then
/// those expiring soonest: a reader would need this many other grants, each charged, to
/// make a host forget one of its own.
const MAX_GRANTS: usize = 100_000;

/// Bytes served under each unexpired read grant.
#[derive(Debug, Default)]
pub struct ReadBudgets {
    served: HashMap<[u8; 32], Served>,
}

#[derive(Debug, Clone, Copy)]
struct Served {
    bytes: u64,
    expires: u64,
}

/// A read that would take a grant past what it may serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spent {
    /// What the grant may serve in all.
    pub allowed: u64,
}

impl ReadBudgets {
    /// Takes `len` bytes from the budget of `grant` (which expires at `expires`, unix
    /// seconds, and covers `covered` bytes), or refuses if it would pass [`TIMES`] × `covered`.
    pub fn take(&mut self, grant: [u8; 32], expires: u64, covered: u64, len: u64, now: u64) -> Result<(), Spent> {
        let allowed = covered.saturating_mul(TIMES);
        if !self.served.contains_key(&grant) && self.served.len() >= MAX_GRANTS {
            self.make_room(now);
        }
        let s = self.served.entry(grant).or_insert(Served { bytes: 0, expires });
        match s.bytes.checked_add(len) {
            Some(total) if total <= allowed => {
                s.bytes = total;
                Ok(())
            }
            _ => Err(Spent { allowed }),
        }
    }

    /// Gives back `len` bytes taken for `grant` and not served (the read failed, or was
    /// shorter than reserved).
    pub fn give_back(&mut self, grant: [u8; 32], len: u64) {
        if let Some(s) = self.served.get_mut(&grant) {
            s.bytes = s.bytes.saturating_sub(len);
        }
    }

    fn make_room(&mut self, now: u64) {
        self.served.retain(|_, s| s.expires >= now);
        if self.served.len() < MAX_GRANTS {
            return;
        }
        let mut expiries: Vec<u64> = self.served.values().map(|s| s.expires).collect();
        let half = expiries.len() / 2;
        let (_, median, _) = expiries.select_nth_unstable(half);
        let median = *median;
        self.served.retain(|_, s| s.expires > median);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.served.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: [u8; 32] = [7; 32];

    #[test]
    fn a_grant_serves_its_bytes_twice_then_is_spent() {
        let mut b = ReadBudgets::default();
        assert_eq!(b.take(G, 100, 10, 10, 0), Ok(()));
        assert_eq!(b.take(G, 100, 10, 10, 0), Ok(()));
        assert_eq!(b.take(G, 100, 10, 1, 0), Err(Spent { allowed: 20 }));
        // Another grant has a budget of its own.
        assert_eq!(b.take([8; 32], 100, 10, 10, 0), Ok(()));
    }

    #[test]
    fn parts_of_a_grant_add_up_and_failed_reads_are_given_back() {
        let mut b = ReadBudgets::default();
        for _ in 0..4 {
            assert_eq!(b.take(G, 100, 10, 5, 0), Ok(()));
        }
        assert!(b.take(G, 100, 10, 5, 0).is_err());
        b.give_back(G, 5);
        assert_eq!(b.take(G, 100, 10, 5, 0), Ok(()));
        // Giving back more than was taken cannot make room beyond the budget.
        b.give_back(G, u64::MAX);
        assert!(b.take(G, 100, 10, 21, 0).is_err());
        assert!(b.take([8; 32], 100, u64::MAX, u64::MAX, 0).is_ok(), "no overflow: a budget saturates");
    }

    #[test]
    fn the_grants_remembered_are_bounded_and_expired_ones_go_first() {
        let mut b = ReadBudgets::default();
        let grant = |tag: u8, i: u64| {
            let mut g = [tag; 32];
            g[..8].copy_from_slice(&i.to_be_bytes());
            g
        };
        // Half of them long expired by the time the table is full.
        for i in 0..MAX_GRANTS as u64 {
            let expires = if i % 2 == 0 { 10 } else { 1_000 };
            b.take(grant(0, i), expires, 10, 20, 0).expect("a fresh grant");
        }
        assert_eq!(b.len(), MAX_GRANTS);
        b.take(G, 2_000, 10, 10, 500).expect("a new grant");
        assert_eq!(b.len(), MAX_GRANTS / 2 + 1, "the expired half went");
        assert!(b.take(grant(0, 1), 1_000, 10, 1, 500).is_err(), "an unexpired spent grant is remembered");

        // Full of unexpired grants: those expiring soonest go, the latest stay.
        let late = [9u8; 32];
        b.take(late, u64::MAX, 10, 20, 500).expect("a fresh grant");
        for i in 0..MAX_GRANTS as u64 {
            b.take(grant(1, i), 3_000 + i, 10, 1, 500).expect("a fresh grant");
            assert!(b.len() <= MAX_GRANTS);
        }
        assert!(b.take(late, u64::MAX, 10, 1, 500).is_err(), "the latest-expiring spent grant is remembered");
    }
}
