#![no_main]
//! Fuzzes checking storage proofs sent by hosts.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 16 {
        let start = u64::from_le_bytes(data[..8].try_into().unwrap_or_default()) % (1 << 30);
        let len = u64::from_le_bytes(data[8..16].try_into().unwrap_or_default()) % (1 << 20);
        let _ = scatter_core::audit::verify(&scatter_core::ShardId::from_bytes([5; 32]), start, len, &data[16..]);
    }
});
