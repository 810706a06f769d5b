#![no_main]
//! Fuzzes request credential decoding on the coordinator.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]).verifying_key();
        let _ = scatter_proto::auth::Credential::peek(text);
        let _ = scatter_proto::auth::Credential::verify(text, &key, &[0; 32], 1_000);
    }
});
