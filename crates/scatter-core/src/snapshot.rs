//! Snapshot records: what one backup run saw, sealed before it leaves the client.
//!
//! The coordinator keeps a snapshot as an opaque random id, its commit time and this record
//! sealed with the backup session's data key; host name, paths, tags and the root tree are
//! visible only to holders of the user's private key.
//!
//! Encoding: `"SSNP" | version u8 = 2 | postcard(Snapshot)`. Version 1 records (before
//! [`Excluded`] was recorded) still decode, with nothing recorded as left out.

use serde::{Deserialize, Serialize};

use crate::ids::ChunkId;

const MAGIC: &[u8; 4] = b"SSNP";
const VERSION: u8 = 2;
const VERSION_1: u8 = 1;

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

/// The rules a backup run left entries out by, kept so that comparing the live files with
/// the snapshot later (`check-local`) applies them too and does not call those entries new.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Excluded {
    /// Glob patterns (`--exclude`).
    pub patterns: Vec<String>,
    /// Whether the walk stayed on the file system of each backed-up path.
    pub one_file_system: bool,
    /// Files larger than this many bytes were left out.
    pub larger_than: Option<u64>,
    /// Marker files (name, and the bytes it must start with, if any): a directory holding
    /// one kept only the marker.
    pub markers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
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
    /// What the run's rules left out.
    pub excluded: Excluded,
}

/// A version 1 record: a [`Snapshot`] without [`Excluded`].
#[derive(Deserialize)]
struct SnapshotV1 {
    time_ns: i64,
    hostname: String,
    username: String,
    paths: Vec<String>,
    tags: Vec<String>,
    tree: [u8; 32],
    parent: Option<String>,
    summary: Summary,
}

impl From<SnapshotV1> for Snapshot {
    fn from(v: SnapshotV1) -> Self {
        let SnapshotV1 { time_ns, hostname, username, paths, tags, tree, parent, summary } = v;
        Self { time_ns, hostname, username, paths, tags, tree, parent, summary, excluded: Excluded::default() }
    }
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
        if bytes.len() < 5 || &bytes[..4] != MAGIC {
            return Err(SnapshotError::BadHeader);
        }
        let body = &bytes[5..];
        let (s, rest): (Snapshot, &[u8]) = match bytes[4] {
            VERSION => postcard::take_from_bytes(body),
            VERSION_1 => postcard::take_from_bytes::<SnapshotV1>(body).map(|(v1, rest)| (v1.into(), rest)),
            _ => return Err(SnapshotError::BadHeader),
        }
        .map_err(|e| SnapshotError::Malformed(e.to_string()))?;
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
            excluded: Excluded {
                patterns: vec!["*.tmp".into()],
                one_file_system: true,
                larger_than: Some(1 << 20),
                markers: vec![(b".nobackup".to_vec(), None), (b"CACHEDIR.TAG".to_vec(), Some(b"Sig".to_vec()))],
            },
        };
        let bytes = s.encode();
        assert_eq!(Snapshot::decode(&bytes).expect("decode"), s);
        for n in 0..bytes.len() {
            assert!(Snapshot::decode(&bytes[..n]).is_err(), "truncation to {n} accepted");
        }
        let mut wrong = bytes.clone();
        wrong[0] = b'X';
        assert_eq!(Snapshot::decode(&wrong), Err(SnapshotError::BadHeader));
        let mut future = bytes;
        future[4] = VERSION + 1;
        assert_eq!(Snapshot::decode(&future), Err(SnapshotError::BadHeader));
    }

    #[test]
    fn version_1_records_decode_with_nothing_excluded() {
        // A version 1 record is the version 2 body without the trailing `excluded`.
        let s = Snapshot {
            time_ns: 5,
            hostname: "old".into(),
            username: "bo".into(),
            paths: vec!["/srv".into()],
            tags: Vec::new(),
            tree: [9; 32],
            parent: None,
            summary: Summary::default(),
            excluded: Excluded::default(),
        };
        let mut v1 = s.encode();
        v1[4] = VERSION_1;
        let tail = postcard::to_allocvec(&Excluded::default()).expect("encode");
        v1.truncate(v1.len() - tail.len());
        assert_eq!(Snapshot::decode(&v1).expect("decode"), s);
        v1.push(0);
        assert!(matches!(Snapshot::decode(&v1), Err(SnapshotError::Malformed(_))));
    }
}
