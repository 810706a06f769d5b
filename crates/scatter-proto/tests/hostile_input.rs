//! Grants, credentials and receipts arrive from the network: random and mutated text must be refused,
//! never panic, and never verify. The same decoders have cargo-fuzz targets in `fuzz/`.

use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use scatter_core::{HostId, ShardId, UserId};
use scatter_proto::auth::Credential;
use scatter_proto::{Grant, Op, Receipt, SignedGrant, SignedReceipt};

fn key() -> SigningKey {
    SigningKey::from_bytes(&[3; 32])
}

fn valid_grant() -> String {
    Grant { host: HostId(1), shard: ShardId::from_bytes([2; 32]), op: Op::Put, max_size: 10, expires: 2_000 }
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
    fn random_credentials_are_refused(text in ".{0,200}") {
        prop_assert!(Credential::verify(&text, &key().verifying_key(), &[0; 32], 1_000).is_err());
    }

    #[test]
    fn mutated_credentials_are_refused(
        text in mutate(Credential { user: UserId(4), expires: 1_100 }.sign(&key(), &[0; 32]))
    ) {
        let valid = Credential { user: UserId(4), expires: 1_100 }.sign(&key(), &[0; 32]);
        // Whitespace around a credential is not part of it (header values are trimmed), so a
        // mutation that only adds some is the same credential.
        prop_assume!(text.trim() != valid);
        prop_assert!(Credential::verify(&text, &key().verifying_key(), &[0; 32], 1_000).is_err());
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
