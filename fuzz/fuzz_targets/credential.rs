#![no_main]
//! Fuzzes request credential decoding (format 2) on the coordinator: any text is refused or
//! decoded without panicking, and never verifies.
use libfuzzer_sys::fuzz_target;
use scatter_proto::auth::{Credential, Request};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]).verifying_key();
        if let Ok(c) = Credential::peek(text) {
            let _ = c.check_body(data);
        }
        let req = Request { method: "POST", target: "/v1/objects/commit" };
        assert!(Credential::verify(text, &key, &[0; 32], req, 1_000).is_err());
    }
});
