//! Grants, credentials and receipts arrive from the network: random and mutated text must be refused,
//! never panic, and never verify. The same decoders have cargo-fuzz targets in `fuzz/`.

use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use scatter_core::{DeviceId, HostId, ShardId};
use scatter_proto::auth::{Credential, Request};
use scatter_proto::{Grant, Op, Receipt, SignedGrant, SignedReceipt};

fn key() -> SigningKey {
    SigningKey::from_bytes(&[3; 32])
}

fn valid_grant() -> String {
    Grant { host: HostId(1), shard: ShardId::from_bytes([2; 32]), op: Op::Put, max_size: 10, expires: 2_000, nonce: 0 }
        .sign(&key())
        .0
}

/// A valid encoding with one character replaced, one inserted or the tail cut.
fn mutate(valid: String) -> impl Strategy<Value = String> {
    let len = valid.len();
    (0..3u8, 0..len, proptest::char::any()).prop_map(move |(how, at, c)| {
        let mut s: Vec<char> = valid.chars().collect();
        match how {
            0 => s[at] = c,
            1 => s.insert(at, c),
            _ => s.truncate(at),
        }
        s.into_iter().collect()
    })
}

proptest! {
    #[test]
    fn random_grants_are_refused(text in ".{0,200}") {
        prop_assert!(SignedGrant(text).open(&key().verifying_key()).is_err());
    }

    #[test]
    fn mutated_grants_are_refused(text in mutate(valid_grant())) {
        prop_assume!(text != valid_grant());
        let r = SignedGrant(text).check(&key().verifying_key(), HostId(1), &ShardId::from_bytes([2; 32]), Op::Put, 1_000);
        prop_assert!(r.is_err());
    }

    #[test]
    fn random_credentials_are_refused(text in ".{0,300}") {
        prop_assert!(Credential::verify(&text, &key().verifying_key(), &[0; 32], REQ, 1_000).is_err());
    }

    #[test]
    fn mutated_credentials_are_refused(text in mutate(valid_credential())) {
        // Whitespace around a credential is not part of it (header values are trimmed), so a
        // mutation that only adds some is the same credential.
        prop_assume!(text.trim() != valid_credential());
        prop_assert!(Credential::verify(&text, &key().verifying_key(), &[0; 32], REQ, 1_000).is_err());
    }

    #[test]
    fn credentials_verify_for_their_own_request_and_body_only(
        method in "[A-Z]{0,8}",
        target in "/[ -~]{0,80}",
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let c = Credential::peek(&valid_credential()).expect("decodes");
        prop_assert_eq!(c, fixed());
        let vk = key().verifying_key();
        let text = valid_credential();
        let same = method == REQ.method && target == REQ.target;
        let verified = Credential::verify(&text, &vk, &[0; 32], Request { method: &method, target: &target }, 1_000);
        prop_assert_eq!(verified.is_ok(), same);
        prop_assert_eq!(c.check_body(&body).is_ok(), body == BODY);
    }
}

const REQ: Request<'static> = Request { method: "POST", target: "/v1/snapshots/refs" };
const BODY: &[u8] = b"{\"session\":1,\"chunks\":[]}";

/// One fixed credential, made for [`REQ`] with [`BODY`].
fn fixed() -> Credential {
    Credential { device: DeviceId(4), expires: 1_100, nonce: [7; 16], body_hash: *blake3::hash(BODY).as_bytes() }
}

fn valid_credential() -> String {
    fixed().sign(&key(), &[0; 32], REQ).expect("sign")
}

proptest! {
    #[test]
    fn request_lists_longer_than_their_bound_are_refused(extra in 1usize..50) {
        let heartbeat = |n: usize| {
            let refusals = vec!["\"refused\""; n].join(",");
            format!(
                r#"{{"host_id":1,"host_secret":"s","address":"https://a","capacity":1,"used":0,"free":0,"refused_grants":0,"refusals":[{refusals}]}}"#
            )
        };
        let max = scatter_proto::api::MAX_REFUSALS;
        prop_assert!(serde_json::from_str::<scatter_proto::api::HeartbeatRequest>(&heartbeat(max)).is_ok());
        prop_assert!(serde_json::from_str::<scatter_proto::api::HeartbeatRequest>(&heartbeat(max + extra)).is_err());
    }

    #[test]
    fn random_receipts_are_refused(text in ".{0,300}") {
        prop_assert!(SignedReceipt(text).open(&key().verifying_key()).is_err());
    }

    #[test]
    fn mutated_receipts_are_refused(text in mutate(valid_receipt())) {
        prop_assume!(text != valid_receipt());
        let r = SignedReceipt(text).check(&key().verifying_key(), HostId(1), &ShardId::from_bytes([2; 32]), 10, &[5; 32]);
        prop_assert!(r.is_err());
    }
}

fn valid_receipt() -> String {
    Receipt { host: HostId(1), shard: ShardId::from_bytes([2; 32]), size: 10, time: 2_000, grant: [5; 32] }
        .sign(&key())
        .0
}
