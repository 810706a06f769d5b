//! What receipts cost: a host signs one per stored shard, the coordinator checks one per
//! shard of every pack commit and repair. `cargo bench -p scatter-proto`.
// criterion_group! defines an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use ed25519_dalek::SigningKey;
use scatter_core::{HostId, ShardId};
use scatter_proto::receipt::{grant_hash, Receipt};
use scatter_proto::SignedGrant;

fn receipts(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let public = key.verifying_key();
    let shard = ShardId::of(b"shard");
    let grant = grant_hash(&SignedGrant("a grant of about a hundred characters".repeat(3)));
    let receipt = Receipt { host: HostId(1), shard, size: 4 << 20, time: 1, grant };
    let mut g = c.benchmark_group("receipts");
    g.bench_function("sign (host, per shard)", |b| b.iter(|| receipt.sign(&key)));
    let signed = receipt.sign(&key);
    g.bench_function("check (coordinator, per shard)", |b| {
        b.iter(|| signed.check(&public, HostId(1), &shard, 4 << 20, &grant).expect("valid"))
    });
    g.finish();
}

criterion_group!(benches, receipts);
criterion_main!(benches);
