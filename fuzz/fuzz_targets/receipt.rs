#![no_main]
//! Fuzzes receipt decoding on the coordinator (pack commits, repair, backfill).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]).verifying_key();
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = scatter_proto::SignedReceipt(text.to_owned()).open(&key);
    }
});
