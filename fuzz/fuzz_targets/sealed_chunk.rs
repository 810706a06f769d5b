#![no_main]
//! Fuzzes opening sealed chunks read from hosts.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = scatter_core::crypto::DataKey::from_bytes([9; 32]);
    assert!(key.open_chunk(&scatter_core::ChunkId::from_bytes([1; 32]), data).is_err());
});
