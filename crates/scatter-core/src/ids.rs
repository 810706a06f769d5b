//! Newtypes for every identifier that crosses an API.
//!
//! Content ids (chunks, packs, shards) are 32-byte BLAKE3 outputs shown as lowercase hex;
//! registry ids (hosts, users) are small integers assigned by the coordinator.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Returned when a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a valid {kind} (expected {expected})")]
pub struct ParseIdError {
    kind: &'static str,
    expected: &'static str,
    input: String,
}

macro_rules! hash_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Wraps raw bytes.
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Builds an id from a slice, which must be exactly 32 bytes.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                bytes.try_into().ok().map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), &hex::encode(self.0)[..12])
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let err = || ParseIdError {
                    kind: $kind,
                    expected: "64 lowercase hex digits",
                    input: s.chars().take(80).collect(),
                };
                if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    return Err(err());
                }
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out).map_err(|_| err())?;
                Ok(Self(out))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hash_id!(
    /// A chunk: keyed BLAKE3 of its plaintext under the user's dedup key.
    ChunkId,
    "chunk id"
);
hash_id!(
    /// A pack: BLAKE3 of its sealed (encrypted) bytes.
    PackId,
    "pack id"
);
hash_id!(
    /// A shard: BLAKE3 of the shard's bytes as stored on a host.
    ShardId,
    "shard id"
);

impl ShardId {
    /// The id of these shard bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }
}

impl PackId {
    /// The id of a pack stored as these shards: a hash of their ids, which are hashes of all
    /// its bytes (padding and parity included), so it names the content without hashing the
    /// pack once more.
    pub fn of_shards(shards: &[ShardId]) -> Self {
        let mut h = blake3::Hasher::new_derive_key("scatter pack id from shard ids v1");
        for s in shards {
            h.update(s.as_bytes());
        }
        Self(*h.finalize().as_bytes())
    }
}

macro_rules! registry_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.strip_prefix($prefix)
                    .unwrap_or(s)
                    .parse()
                    .map(Self)
                    .map_err(|_| ParseIdError {
                        kind: $kind,
                        expected: concat!("a number, optionally prefixed with `", $prefix, "`"),
                        input: s.chars().take(80).collect(),
                    })
            }
        }
    };
}

registry_id!(
    /// A storage host, as numbered by the coordinator at join.
    HostId,
    "h",
    "host id"
);
registry_id!(
    /// A user, as numbered by the coordinator at registration.
    UserId,
    "u",
    "user id"
);
registry_id!(
    /// A device of a user: the Ed25519 key its requests are signed with, numbered by the
    /// coordinator when registered. A device registered before users could have several has
    /// its user's id.
    DeviceId,
    "d",
    "device id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_ids_round_trip_through_text_and_json() {
        let id = ShardId::of(b"hello");
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<ShardId>(), Ok(id));
        let json = serde_json::to_string(&id).expect("serialize");
        assert_eq!(serde_json::from_str::<ShardId>(&json).expect("deserialize"), id);
    }

    #[test]
    fn hash_ids_reject_anything_but_64_lowercase_hex() {
        for bad in ["", "../../etc/passwd", &"A".repeat(64), &"0".repeat(63), &"g".repeat(64)] {
            assert!(bad.parse::<ShardId>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn registry_ids_parse_with_or_without_prefix() {
        assert_eq!("h7".parse::<HostId>(), Ok(HostId(7)));
        assert_eq!("7".parse::<HostId>(), Ok(HostId(7)));
        assert_eq!(HostId(7).to_string(), "h7");
        assert!("hx".parse::<HostId>().is_err());
    }
}
