//! Snapshot trees: one directory's entries, stored as an ordinary chunk.
//!
//! A backup turns every directory into a [`Tree`] blob that lists its entries with their
//! metadata; a file entry lists its content chunks, a directory entry names its subtree by
//! chunk id. Trees go through the same path as file data (chunk id with the dedup key, sealed,
//! packed), so an unchanged directory produces the same blob and costs nothing the next time.
//!
//! Encoding: `"STRE" | version u8 = 1 | postcard(Tree)`. Names and symlink targets are raw
//! bytes (Unix names need not be UTF-8). Entries are sorted by name and names are unique, so
//! equal directories encode to equal bytes.

use serde::{Deserialize, Serialize};

use crate::ids::ChunkId;

const MAGIC: &[u8; 4] = b"STRE";
const VERSION: u8 = 1;

/// Why a tree blob could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// Not a tree, or a version this build does not know.
    #[error("not a Scatter tree (bad magic or unknown version)")]
    BadHeader,
    /// The body does not parse.
    #[error("tree is malformed: {0}")]
    Malformed(String),
    /// Entries are not sorted, repeat a name, or carry a name that is not one path component.
    #[error("tree entries are invalid: {0}")]
    Invalid(&'static str),
}

/// What an entry is, with what it needs to be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    /// A regular file: its chunks in order, with their plaintext lengths.
    File {
        /// (chunk id bytes, plaintext length).
        chunks: Vec<([u8; 32], u32)>,
    },
    /// A directory: the chunk id of its own tree blob.
    Dir {
        /// Chunk id bytes of the subtree.
        subtree: [u8; 32],
    },
    /// A symbolic link and its target, as raw bytes.
    Symlink {
        /// Target path bytes.
        target: Vec<u8>,
    },
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The entry's name: one path component, raw bytes.
    pub name: Vec<u8>,
    /// Type and content.
    pub kind: NodeKind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Size in bytes (files: content length).
    pub size: u64,
    /// Inode number, to notice a file replaced by another of equal size and mtime.
    pub inode: u64,
    /// Device, for the same reason.
    pub dev: u64,
    /// Extended attributes (name, value), sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Node {
    /// The content chunks of a file entry (empty for other kinds).
    pub fn chunk_ids(&self) -> impl Iterator<Item = (ChunkId, u32)> + '_ {
        let chunks: &[([u8; 32], u32)] = match &self.kind {
            NodeKind::File { chunks } => chunks,
            _ => &[],
        };
        chunks.iter().map(|(id, len)| (ChunkId::from_bytes(*id), *len))
    }

    /// The subtree of a directory entry.
    pub fn subtree(&self) -> Option<ChunkId> {
        match &self.kind {
            NodeKind::Dir { subtree } => Some(ChunkId::from_bytes(*subtree)),
            _ => None,
        }
    }

    /// The name for display (lossy for names that are not UTF-8).
    pub fn display_name(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// One directory's entries, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tree {
    /// Entries in ascending name order.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Builds a tree from entries in any order; fails on a repeated or invalid name.
    pub fn new(mut nodes: Vec<Node>) -> Result<Self, TreeError> {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let tree = Self { nodes };
        tree.validate()?;
        Ok(tree)
    }

    /// Serializes the tree.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.nodes.len() * 96);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        postcard::to_extend(self, out).expect("serializing plain data into memory cannot fail")
    }

    /// Parses and validates a tree blob.
    pub fn decode(bytes: &[u8]) -> Result<Self, TreeError> {
        if bytes.len() < 5 || &bytes[..4] != MAGIC || bytes[4] != VERSION {
            return Err(TreeError::BadHeader);
        }
        let (tree, rest): (Tree, &[u8]) =
            postcard::take_from_bytes(&bytes[5..]).map_err(|e| TreeError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(TreeError::Malformed(format!("{} trailing bytes", rest.len())));
        }
        tree.validate()?;
        Ok(tree)
    }

    /// The entry called `name`.
    pub fn get(&self, name: &[u8]) -> Option<&Node> {
        self.nodes.binary_search_by(|n| n.name.as_slice().cmp(name)).ok().map(|i| &self.nodes[i])
    }

    fn validate(&self) -> Result<(), TreeError> {
        for n in &self.nodes {
            if !is_component(&n.name) {
                return Err(TreeError::Invalid("a name is empty, `.`, `..` or contains `/` or NUL"));
            }
        }
        if self.nodes.windows(2).any(|w| w[0].name >= w[1].name) {
            return Err(TreeError::Invalid("names are not sorted and unique"));
        }
        Ok(())
    }
}

/// Whether `name` is a single, safe path component: restoring it can never escape the
/// directory it is restored into.
pub fn is_component(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, chunks: usize) -> Node {
        Node {
            name: name.as_bytes().to_vec(),
            kind: NodeKind::File { chunks: (0..chunks).map(|i| ([i as u8; 32], 1000 + i as u32)).collect() },
            mode: 0o644,
            uid: 1000,
            gid: 1000,
            mtime_ns: 1_700_000_000_123_456_789,
            size: 1234,
            inode: 42,
            dev: 7,
            xattrs: vec![(b"user.a".to_vec(), b"v".to_vec())],
        }
    }

    #[test]
    fn round_trips_and_sorts() {
        let mut link = file("l", 0);
        link.kind = NodeKind::Symlink { target: b"../x\xff".to_vec() };
        let mut dir = file("d", 0);
        dir.kind = NodeKind::Dir { subtree: [9; 32] };
        let tree = Tree::new(vec![file("b", 3), link, dir, file("a\u{e9}", 0)]).expect("valid");
        assert_eq!(tree.nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>()[0], b"a\xc3\xa9".to_vec());
        let bytes = tree.encode();
        assert_eq!(Tree::decode(&bytes).expect("decode"), tree);
        assert_eq!(tree.get(b"d").and_then(|n| n.subtree()), Some(ChunkId::from_bytes([9; 32])));
        assert_eq!(tree.get(b"b").map(|n| n.chunk_ids().count()), Some(3));
        assert!(tree.get(b"zz").is_none());
    }

    #[test]
    fn equal_directories_encode_equally() {
        let a = Tree::new(vec![file("x", 1), file("y", 2)]).expect("valid");
        let b = Tree::new(vec![file("y", 2), file("x", 1)]).expect("valid");
        assert_eq!(a.encode(), b.encode());
    }

    #[test]
    fn rejects_unsafe_or_repeated_names() {
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(Tree::new(vec![file(bad, 0)]).is_err(), "{bad:?} accepted");
        }
        assert!(Tree::new(vec![file("a", 0), file("a", 1)]).is_err());
        // A hand-made blob with unsorted names is refused on decode too.
        let t = Tree { nodes: vec![file("b", 0), file("a", 0)] };
        assert!(matches!(Tree::decode(&t.encode()), Err(TreeError::Invalid(_))));
    }

    #[test]
    fn rejects_every_truncation_and_bad_header() {
        let bytes = Tree::new(vec![file("a", 2), file("b", 1)]).expect("valid").encode();
        for n in 0..bytes.len() {
            assert!(Tree::decode(&bytes[..n]).is_err(), "truncation to {n} accepted");
        }
        let mut wrong = bytes.clone();
        wrong[4] = 2;
        assert_eq!(Tree::decode(&wrong), Err(TreeError::BadHeader));
        let mut long = bytes;
        long.push(0);
        assert!(Tree::decode(&long).is_err());
    }
}
