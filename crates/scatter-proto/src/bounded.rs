//! Lists in requests whose length is bounded while they are decoded: a request listing more
//! items than any honest one needs is refused at the first item too many, before the rest is
//! allocated or handled. Each bound is a constant in [`crate::api`]; the functions here are for
//! `#[serde(deserialize_with = ...)]`.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, Error, SeqAccess, Visitor};

use crate::api::{
    MAX_BATCH_COMMITS, MAX_HOSTS, MAX_IDS, MAX_INVENTORY, MAX_LIST, MAX_RECEIPTS, MAX_REFUSALS, MAX_SHARDS, MAX_ZONES,
};

/// Decodes a list of at most `max` items.
fn up_to<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D, max: usize) -> Result<Vec<T>, D::Error> {
    struct Bounded<T>(usize, PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Bounded<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a list of at most {} items", self.0)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.0).min(4096));
            while let Some(item) = seq.next_element()? {
                if out.len() == self.0 {
                    return Err(A::Error::invalid_length(self.0 + 1, &self));
                }
                out.push(item);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Bounded(max, PhantomData))
}

macro_rules! bounded {
    ($($(#[$doc:meta])* $name:ident = $max:expr;)*) => {$(
        $(#[$doc])*
        pub(crate) fn $name<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
            up_to(d, $max)
        }
    )*};
}

bounded! {
    /// A heartbeat's refusals.
    refusals = MAX_REFUSALS;
    /// A host's inventory.
    inventory = MAX_INVENTORY;
    /// Ids looked up, located, referenced or forgotten in one request.
    ids = MAX_IDS;
    /// A pack's shards.
    shards = MAX_SHARDS;
    /// Hosts named in one request.
    hosts = MAX_HOSTS;
    /// An object's or a pack's chunks.
    list = MAX_LIST;
    /// A host's backfilled receipts.
    receipts = MAX_RECEIPTS;
    /// Zones a policy names.
    zones = MAX_ZONES;
    /// Objects committed in one request.
    commits = MAX_BATCH_COMMITS;
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize, Debug)]
    struct Three {
        #[serde(deserialize_with = "three")]
        items: Vec<u8>,
    }

    fn three<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        super::up_to(d, 3)
    }

    #[test]
    fn lists_longer_than_the_bound_are_refused() {
        assert_eq!(serde_json::from_str::<Three>(r#"{"items": [1, 2, 3]}"#).expect("three").items, [1, 2, 3]);
        let err = serde_json::from_str::<Three>(r#"{"items": [1, 2, 3, 4]}"#).expect_err("four");
        assert!(err.to_string().contains("at most 3"), "{err}");
        assert!(serde_json::from_str::<Three>(r#"{"items": 5}"#).is_err());
    }
}
