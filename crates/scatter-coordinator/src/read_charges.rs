//! What reads each account was charged for lately, so that a shard's bytes are charged to an
//! account (and counted as granted of its host) at most once while a grant lives, however
//! many grants for them it asks for.
//!
//! Egress is charged when grants are issued: the coordinator cannot see which bytes a host
//! really served. Without this memory a delegate could run up its owner's bill, and raise
//! what hosts may claim to have served, by asking for the same grants over and over without
//! reading a byte (red team: a reader charged its owner 1.26 GiB in under two seconds). Now
//! an account pays for at most what a full read of each of its shards once per window costs,
//! which is what a reader reading for real could cost anyway. A shard read again within the
//! window is not charged again (nor paid to its host): the price of that bound.

use std::collections::HashMap;
use std::sync::Mutex;

use scatter_core::{HostId, ShardId, UserId};

/// How many (account, host, shard) entries are remembered at most. Past that, expired ones
/// are dropped, and while none is, new reads are charged in full: never less than before.
const CAPACITY: usize = 1 << 20;

/// A read to charge: `bytes` of `shard` on `host`, a shard of `shard_size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    pub host: HostId,
    pub shard: ShardId,
    pub bytes: u64,
    pub shard_size: u64,
}

/// An account's copy of a shard: whose, on which host, which shard.
type Key = (UserId, HostId, ShardId);

/// Per account, host and shard: when its window opened and how many bytes were charged in it.
#[derive(Debug)]
pub struct ReadCharges {
    window: u64,
    seen: Mutex<HashMap<Key, (u64, u64)>>,
}

impl ReadCharges {
    /// A memory of charges that each last `window` seconds (the grants' lifetime).
    pub fn new(window: u64) -> Self {
        Self { window, seen: Mutex::new(HashMap::new()) }
    }

    /// The bytes of `read` to charge to `user` at unix time `now`: what its shard has not
    /// been charged to `user` yet in the window, up to the shard's size.
    pub fn charge(&self, user: UserId, read: Read, now: u64) -> u64 {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let key = (user, read.host, read.shard);
        let live = |opened: u64| now < opened.saturating_add(self.window);
        if !seen.contains_key(&key) && seen.len() >= CAPACITY {
            seen.retain(|_, (opened, _)| live(*opened));
            if seen.len() >= CAPACITY {
                return read.bytes;
            }
        }
        let entry = seen.entry(key).or_insert((now, 0));
        if !live(entry.0) {
            *entry = (now, 0);
        }
        let due = read.bytes.min(read.shard_size.saturating_sub(entry.1));
        entry.1 += due;
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: UserId = UserId(1);
    const BOB: UserId = UserId(2);

    fn read(shard: u8, bytes: u64) -> Read {
        Read { host: HostId(1), shard: ShardId::of(&[shard]), bytes, shard_size: 1000 }
    }

    #[test]
    fn a_shard_is_charged_at_most_its_size_per_window() {
        let c = ReadCharges::new(3600);
        assert_eq!(c.charge(ALICE, read(0, 1000), 10), 1000);
        for _ in 0..100 {
            assert_eq!(c.charge(ALICE, read(0, 1000), 20), 0, "asked again: nothing more");
        }
        // Ranges add up to the whole shard, then stop.
        assert_eq!(c.charge(ALICE, read(1, 400), 10), 400);
        assert_eq!(c.charge(ALICE, read(1, 400), 11), 400);
        assert_eq!(c.charge(ALICE, read(1, 400), 12), 200);
        assert_eq!(c.charge(ALICE, read(1, 400), 13), 0);
        // A new window charges again.
        assert_eq!(c.charge(ALICE, read(0, 1000), 3610), 1000);
    }

    #[test]
    fn accounts_hosts_and_shards_are_charged_apart() {
        let c = ReadCharges::new(3600);
        assert_eq!(c.charge(ALICE, read(0, 1000), 0), 1000);
        assert_eq!(c.charge(BOB, read(0, 1000), 0), 1000, "another account");
        assert_eq!(c.charge(ALICE, read(2, 1000), 0), 1000, "another shard");
        let elsewhere = Read { host: HostId(2), ..read(0, 1000) };
        assert_eq!(c.charge(ALICE, elsewhere, 0), 1000, "the same shard on another host");
    }

    #[test]
    fn a_full_memory_charges_in_full() {
        let c = ReadCharges::new(10);
        {
            let mut seen = c.seen.lock().expect("not poisoned");
            for i in 0..CAPACITY as u64 {
                seen.insert((ALICE, HostId(i), ShardId::of(&[0])), (0, 1000));
            }
        }
        // All live: a new read is charged whole, and charged whole again.
        assert_eq!(c.charge(BOB, read(0, 1000), 5), 1000);
        assert_eq!(c.charge(BOB, read(0, 1000), 5), 1000);
        // Expired: dropped, and the memory works again.
        assert_eq!(c.charge(BOB, read(0, 1000), 20), 1000);
        assert_eq!(c.charge(BOB, read(0, 1000), 21), 0);
        assert_eq!(c.seen.lock().expect("not poisoned").len(), 1);
    }
}
