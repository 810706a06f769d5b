//! Snapshot records: what one backup run saw, sealed before it leaves the client.
//!
//! The coordinator keeps a snapshot as an opaque random id, its commit time and this record
//! sealed with the backup session's data key; host name, paths, tags and the root tree are
//! visible only to holders of the user's private key.
//!
//! Encoding: `"SSNP" | version u8 = 1 | postcard(Snapshot)`.

use serde::{Deserialize, Serialize};

use crate::ids::ChunkId;

const MAGIC: &[u8; 4] = b"SSNP";
const VERSION: u8 = 1;

/// The context snapshot records are sealed under.
pub const SNAPSHOT_CONTEXT: &[u8] = b"scatter snapshot v1";

/// Why a snapshot record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Not a snapshot record, or a version this build does not know.
    #[error("not a Scatter snapshot record (bad magic or unknown version)")]
    BadHeader,
    /// The body does not parse.
    #[error("snapshot record is malformed: {0}")]
    Malformed(String),
}

/// Counters of one backup run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Files seen for the first time.
    pub files_new: u64,
    /// Files whose content changed since the parent snapshot.
    pub files_changed: u64,
    /// Files unchanged since the parent snapshot (not re-read).
    pub files_unmodified: u64,
    /// Directories.
    pub dirs: u64,
    /// Plaintext bytes the snapshot covers.
    pub total_bytes: u64,
    /// Plaintext bytes read from disk.
    pub bytes_read: u64,
    /// Plaintext bytes of chunks that were not stored before.
    pub bytes_new: u64,
}

/// One backup run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When the backup started, nanoseconds since the Unix epoch.
    pub time_ns: i64,
    /// The source machine's host name.
    pub hostname: String,
    /// The user running the backup on the source machine.
    pub username: String,
    /// The absolute paths backed up.
    pub paths: Vec<String>,
    /// Tags given with `--tag`.
    pub tags: Vec<String>,
    /// Chunk id bytes of the root tree.
    pub tree: [u8; 32],
    /// Id of the snapshot used as parent, if any.
    pub parent: Option<String>,
    /// What the run did.
    pub summary: Summary,
}

impl Snapshot {
    /// The root tree's chunk id.
    pub fn tree_id(&self) -> ChunkId {
        ChunkId::from_bytes(self.tree)
    }

    /// Serializes the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        postcard::to_extend(self, out).expect("serializing plain data into memory cannot fail")
    }

    /// Parses a record.
    pub fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        if bytes.len() < 5 || &bytes[..4] != MAGIC || bytes[4] != VERSION {
            return Err(SnapshotError::BadHeader);
        }
        let (s, rest): (Snapshot, &[u8]) =
            postcard::take_from_bytes(&bytes[5..]).map_err(|e| SnapshotError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(SnapshotError::Malformed(format!("{} trailing bytes", rest.len())));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let s = Snapshot {
            time_ns: 1_790_000_000_000_000_000,
            hostname: "laptop".into(),
            username: "ann".into(),
            paths: vec!["/home/ann".into()],
            tags: vec!["daily".into()],
            tree: [3; 32],
            parent: Some("ab".repeat(32)),
            summary: Summary { files_new: 3, bytes_read: 10, ..Default::default() },
        };
        let bytes = s.encode();
        assert_eq!(Snapshot::decode(&bytes).expect("decode"), s);
        for n in 0..bytes.len() {
            assert!(Snapshot::decode(&bytes[..n]).is_err(), "truncation to {n} accepted");
        }
        let mut wrong = bytes;
        wrong[0] = b'X';
        assert_eq!(Snapshot::decode(&wrong), Err(SnapshotError::BadHeader));
    }
}
