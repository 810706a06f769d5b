#![no_main]
//! Fuzzes grant decoding on hosts.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]).verifying_key();
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = scatter_proto::SignedGrant(text.to_owned()).open(&key);
    }
});
