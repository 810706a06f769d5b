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

    /// The name for display, escaped by [`escape`]: never a path to open, since two names
    /// can display alike only if they are equal.
    pub fn display_name(&self) -> String {
        escape(&self.name)
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

/// A path inside a snapshot tree, or below a restore target: components that each pass
/// [`is_component`], as raw bytes joined by `/`, without a leading `/`; empty for the root.
/// Built only through [`TreePath::parse`] and [`TreePath::join`], so it can never name `..`,
/// an absolute path, or anything but the entry it was made from.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TreePath(Vec<u8>);

impl TreePath {
    /// The root (no components).
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// Parses `/`-separated bytes; empty and `.` components are skipped, a leading `/` is
    /// optional, and `..` or NUL are refused.
    pub fn parse(bytes: &[u8]) -> Result<Self, TreeError> {
        let mut out = Self::root();
        for part in bytes.split(|b| *b == b'/').filter(|p| !p.is_empty() && *p != b".") {
            out = out.join(part)?;
        }
        Ok(out)
    }

    /// This path with one more component, which must pass [`is_component`].
    pub fn join(&self, name: &[u8]) -> Result<Self, TreeError> {
        if !is_component(name) {
            return Err(TreeError::Invalid("a name is empty, `.`, `..` or contains `/` or NUL"));
        }
        let mut v = Vec::with_capacity(self.0.len() + 1 + name.len());
        v.extend_from_slice(&self.0);
        if !v.is_empty() {
            v.push(b'/');
        }
        v.extend_from_slice(name);
        Ok(Self(v))
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The components, outermost first.
    pub fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.0.split(|b| *b == b'/').filter(|p| !p.is_empty())
    }

    /// How many components there are.
    pub fn depth(&self) -> usize {
        self.components().count()
    }

    /// The parent and the last component; `None` for the root.
    pub fn split_last(&self) -> Option<(TreePath, &[u8])> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.0.iter().rposition(|b| *b == b'/') {
            Some(i) => (Self(self.0[..i].to_vec()), &self.0[i + 1..]),
            None => (Self::root(), &self.0[..]),
        })
    }

    /// The last component; `None` for the root.
    pub fn file_name(&self) -> Option<&[u8]> {
        self.split_last().map(|(_, n)| n)
    }

    /// Whether `base` is this path or one of its ancestors (component by component).
    pub fn starts_with(&self, base: &TreePath) -> bool {
        base.0.is_empty() || (self.0.starts_with(&base.0) && matches!(self.0.get(base.0.len()), None | Some(b'/')))
    }

    /// This path relative to `base`, if it lies below (or is) `base`.
    pub fn strip_prefix(&self, base: &TreePath) -> Option<TreePath> {
        if !self.starts_with(base) {
            return None;
        }
        let rest = &self.0[base.0.len()..];
        Some(Self(rest.strip_prefix(b"/").unwrap_or(rest).to_vec()))
    }

    /// `base` followed by this path's components.
    pub fn under(&self, base: &TreePath) -> TreePath {
        match (base.0.is_empty(), self.0.is_empty()) {
            (true, _) => self.clone(),
            (false, true) => base.clone(),
            (false, false) => Self([&base.0[..], b"/", &self.0[..]].concat()),
        }
    }

    /// The raw bytes, components joined by `/`, without a leading `/`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The absolute form (`/` + the raw bytes), as a path inside the snapshot.
    pub fn to_absolute_bytes(&self) -> Vec<u8> {
        [b"/", &self.0[..]].concat()
    }

    /// The absolute form for display, escaped by [`escape`].
    pub fn display(&self) -> String {
        escape(&self.to_absolute_bytes())
    }
}

/// Text for showing `bytes` (a name or path read from a snapshot) on a terminal or in a log.
/// Valid UTF-8 is kept as it is, except: a backslash is doubled; tab, newline and carriage
/// return become `\t`, `\n`, `\r`; other control characters, and the invisible characters
/// that reorder or hide text (bidirectional controls, zero-width characters, line and
/// paragraph separators), become `\xNN` (ASCII) or `\u{NNNN}`; every byte that is not part of
/// valid UTF-8 becomes `\xNN`. So the result is one line that cannot move the cursor, change
/// colours or fake output, and different inputs always give different text.
pub fn escape(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c if c.is_ascii_control() => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control() || is_invisible(c) => {
                    let _ = write!(out, "\\u{{{:04x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// The bytes `text` stands for when it was written as [`escape`] shows names, so a path
/// printed by `ls` can be given back on the command line: `\\`, `\t`, `\n`, `\r`, `\xNN`
/// and `\u{N..}` are decoded; any other backslash is kept as it is.
pub fn unescape(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &text[i..];
        let (bytes, used): (Vec<u8>, usize) = if !rest.starts_with('\\') {
            let c = rest.chars().next().map_or(1, char::len_utf8);
            (b[i..i + c].to_vec(), c)
        } else if rest.starts_with("\\\\") {
            (vec![b'\\'], 2)
        } else if let Some(c) =
            [("\\t", b'\t'), ("\\n", b'\n'), ("\\r", b'\r')].iter().find(|(e, _)| rest.starts_with(e))
        {
            (vec![c.1], 2)
        } else if let Some(v) = rest.strip_prefix("\\x").and_then(|r| r.get(..2)).and_then(hex_number).map(|v| v as u8)
        {
            (vec![v], 4)
        } else if let Some((c, len)) = rest
            .strip_prefix("\\u{")
            .and_then(|r| r.split_once('}'))
            .and_then(|(h, _)| hex_number(h).and_then(char::from_u32).map(|c| (c, h.len() + 4)))
        {
            (c.to_string().into_bytes(), len)
        } else {
            (vec![b'\\'], 1)
        };
        out.extend_from_slice(&bytes);
        i += used;
    }
    out
}

/// `h` as a hexadecimal number of 1 to 6 digits (nothing else: no sign, no spaces).
fn hex_number(h: &str) -> Option<u32> {
    let digits = (1..=6).contains(&h.len()) && h.bytes().all(|c| c.is_ascii_hexdigit());
    digits.then(|| u32::from_str_radix(h, 16).ok()).flatten()
}

/// Characters that change how the text around them shows without showing themselves.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}' | '\u{061c}')
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

    #[test]
    fn escape_keeps_text_and_shows_everything_else() {
        assert_eq!(escape("plain é 名前.txt".as_bytes()), "plain é 名前.txt");
        assert_eq!(escape(b"a\xff"), "a\\xff");
        assert_eq!(escape("a\u{fffd}".as_bytes()), "a\u{fffd}");
        assert_ne!(escape(b"a\xff"), escape("a\u{fffd}".as_bytes()));
        assert_eq!(escape(b"x\x1b[2J\nfake\x07"), "x\\x1b[2J\\nfake\\x07");
        assert_eq!(escape(b"a\\xff"), "a\\\\xff");
        assert_eq!(escape("\u{202e}txt.exe\u{85}".as_bytes()), "\\u{202e}txt.exe\\u{0085}");
        assert_eq!(escape(b"\xe2\x82"), "\\xe2\\x82");
    }

    #[test]
    fn unescape_inverts_escape() {
        for raw in
            [&b"a\xff"[..], b"x\x1b[2J\nfake\x07", b"a\\xff", "\u{202e}t\u{85}é".as_bytes(), b"\xe2\x82", b"\t\r"]
        {
            assert_eq!(unescape(&escape(raw)), raw, "{}", escape(raw));
        }
        // A lone backslash that starts no escape stays.
        assert_eq!(unescape("a\\b\\x4"), b"a\\b\\x4");
        assert_eq!(unescape("\\x+f\\u{+1}"), b"\\x+f\\u{+1}");
    }

    #[test]
    fn tree_paths_hold_only_safe_components() {
        let p = TreePath::parse(b"/home//./ann/caf\xe9/").expect("valid");
        assert_eq!(p.as_bytes(), b"home/ann/caf\xe9");
        assert_eq!(p.depth(), 3);
        assert_eq!(p.display(), "/home/ann/caf\\xe9");
        let (parent, name) = p.split_last().expect("not root");
        assert_eq!((parent.as_bytes(), name), (&b"home/ann"[..], &b"caf\xe9"[..]));
        for bad in [&b"/a/../b"[..], b"..", b"a\0b"] {
            assert!(TreePath::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(p.join(b"..").is_err() && p.join(b"a/b").is_err() && p.join(b"").is_err());
        let home = TreePath::parse(b"home").expect("valid");
        assert!(p.starts_with(&home) && !p.starts_with(&TreePath::parse(b"hom").expect("valid")));
        assert_eq!(p.strip_prefix(&home).map(|r| r.as_bytes().to_vec()), Some(b"ann/caf\xe9".to_vec()));
        assert_eq!(p.strip_prefix(&home).map(|r| r.under(&home)), Some(p.clone()));
        assert!(TreePath::root().split_last().is_none() && TreePath::root().is_root());
    }
}
