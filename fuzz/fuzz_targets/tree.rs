#![no_main]
//! Fuzzes tree decoding (trees come back from hosts, decrypted; a name must never be a path).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = scatter_core::tree::Tree::decode(data) {
        assert!(t.nodes.iter().all(|n| scatter_core::tree::is_component(&n.name)));
    }
});
