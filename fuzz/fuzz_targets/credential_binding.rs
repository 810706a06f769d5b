#![no_main]
//! Fuzzes what a credential is bound to: a valid credential for one request verifies for
//! exactly that method and target, and its body check passes for exactly that body; any
//! other request or body the fuzzer makes up is refused.
use libfuzzer_sys::fuzz_target;
use scatter_core::UserId;
use scatter_proto::auth::{Credential, Request};

const METHOD: &str = "POST";
const TARGET: &str = "/v1/snapshots/refs?session=1";
const BODY: &[u8] = b"{\"session\":1,\"chunks\":[]}";

fuzz_target!(|data: &[u8]| {
    let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let body_hash = Credential::new(UserId(4), 1_100, BODY).body_hash;
    let c = Credential { user: UserId(4), expires: 1_100, nonce: [7; 16], body_hash };
    let Ok(text) = c.sign(&key, &[0; 32], Request { method: METHOD, target: TARGET }) else { return };
    // The fuzzer's bytes split into a method, a target and a body.
    let mut parts = data.splitn(3, |&b| b == 0);
    let method = std::str::from_utf8(parts.next().unwrap_or_default()).unwrap_or("");
    let target = std::str::from_utf8(parts.next().unwrap_or_default()).unwrap_or("");
    let body = parts.next().unwrap_or_default();
    let verified = Credential::verify(&text, &key.verifying_key(), &[0; 32], Request { method, target }, 1_000);
    assert_eq!(verified.is_ok(), method == METHOD && target == TARGET);
    assert_eq!(c.check_body(body).is_ok(), body == BODY);
});

