//! Every decoder of bytes that come from the network or from disk, fed random and mutated
//! input: each must answer with an error (or a value), never panic or hang. This is the
//! corpus-free, stable-toolchain counterpart of fuzzing, and it runs in every test run.

use proptest::prelude::*;
use scatter_core::crypto::DataKey;
use scatter_core::keys::UserKeys;
use scatter_core::manifest::Manifest;
use scatter_core::snapshot::{Snapshot, Summary};
use scatter_core::tree::{Node, NodeKind, Tree};
use scatter_core::{ChunkId, ShardId};

fn sample_tree() -> Vec<u8> {
    let node = |name: &str, kind| Node {
        name: name.as_bytes().to_vec(),
        kind,
        mode: 0o644,
        uid: 1,
        gid: 2,
        mtime_ns: 3,
        size: 4,
        inode: 5,
        dev: 6,
        xattrs: vec![(b"user.x".to_vec(), b"y".to_vec())],
    };
    Tree::new(vec![
        node("a", NodeKind::File { chunks: vec![([1; 32], 10), ([2; 32], 20)] }),
        node("b", NodeKind::Dir { subtree: [3; 32] }),
        node("c", NodeKind::Symlink { target: b"a".to_vec() }),
    ])
    .expect("valid")
    .encode()
}

fn sample_snapshot() -> Vec<u8> {
    Snapshot {
        time_ns: 1,
        hostname: "h".into(),
        username: "u".into(),
        paths: vec!["/p".into()],
        tags: vec!["t".into()],
        tree: [7; 32],
        parent: None,
        summary: Summary::default(),
        excluded: Default::default(),
    }
    .encode()
}

fn sample_manifest() -> Vec<u8> {
    Manifest { size: 30, chunks: vec![(ChunkId::from_bytes([1; 32]), 10), (ChunkId::from_bytes([2; 32]), 20)] }.encode()
}

/// A valid encoding with one byte changed, bytes cut off, or garbage appended.
fn mutate(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = valid.len();
    (0..3u8, 0..len.max(1), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..16)).prop_map(
        move |(how, at, byte, tail)| {
            let mut v = valid.clone();
            match how {
                0 => {
                    if let Some(b) = v.get_mut(at) {
                        *b ^= byte | 1;
                    }
                }
                1 => v.truncate(at),
                _ => v.extend(tail),
            }
            v
        },
    )
}

proptest! {
    #[test]
    fn trees_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = Tree::decode(&bytes);
    }

    #[test]
    fn mutated_trees_never_panic(bytes in mutate(sample_tree())) {
        if let Ok(t) = Tree::decode(&bytes) {
            // Whatever decodes is valid: names are safe single components.
            prop_assert!(t.nodes.iter().all(|n| scatter_core::tree::is_component(&n.name)));
        }
    }

    #[test]
    fn snapshots_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Snapshot::decode(&bytes);
    }

    #[test]
    fn mutated_snapshots_never_panic(bytes in mutate(sample_snapshot())) {
        let _ = Snapshot::decode(&bytes);
    }

    #[test]
    fn manifests_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Manifest::decode(&bytes);
    }

    #[test]
    fn mutated_manifests_never_panic(bytes in mutate(sample_manifest())) {
        let _ = Manifest::decode(&bytes);
    }

    #[test]
    fn sealed_data_from_hosts_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let key = DataKey::from_bytes([9; 32]);
        prop_assert!(key.open(b"ctx", &bytes).is_err());
        prop_assert!(key.open_chunk(&ChunkId::from_bytes([1; 32]), &bytes).is_err());
    }

    #[test]
    fn storage_proofs_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        start in 0u64..1 << 20,
        len in 0u64..1 << 16,
    ) {
        let _ = scatter_core::audit::verify(&ShardId::from_bytes([5; 32]), start, len, &bytes);
    }

    #[test]
    fn encrypted_names_never_panic(text in ".{0,300}") {
        let keys = UserKeys::generate();
        let _ = keys.write_keys().name_key().decrypt(&text);
    }
}

proptest! {
    // Key files are passphrase-protected with scrypt: few cases, as each valid-looking one
    // costs a key derivation.
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn key_files_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        prop_assert!(UserKeys::from_key_file(&bytes, "pass").is_err());
    }
}
