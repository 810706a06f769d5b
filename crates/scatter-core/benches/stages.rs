//! Throughput of the pure stages of the data path, so a regression shows up as a number:
//! `cargo bench -p scatter-core`. The pipeline's end-to-end figures are in `bench/`.
// criterion_group! defines an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{RngCore, SeedableRng};
use scatter_core::crypto::DataKey;
use scatter_core::keys::UserKeys;
use scatter_core::pack::PackBuilder;

fn data(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(1).fill_bytes(&mut v);
    v
}

fn stages(c: &mut Criterion) {
    let input = data(16 << 20);
    let mut g = c.benchmark_group("stages");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.sample_size(10);

    g.bench_function("chunk (FastCDC)", |b| {
        b.iter(|| scatter_core::chunker::chunks(std::io::Cursor::new(&input)).count());
    });
    let dedup = UserKeys::generate().write_keys().dedup_key();
    g.bench_function("chunk id (keyed BLAKE3)", |b| b.iter(|| dedup.chunk_id(&input)));
    let key = DataKey::generate();
    let id = dedup.chunk_id(&input);
    g.bench_function("seal (AES-256-GCM)", |b| b.iter(|| key.seal_chunk(&id, &input)));
    let sealed = key.seal_chunk(&id, &input);
    g.bench_function("open (AES-256-GCM)", |b| b.iter(|| key.open_chunk(&id, &sealed)));
    g.bench_function("pack (16 x 1 MiB)", |b| {
        b.iter(|| {
            let mut p = PackBuilder::new();
            for part in input.chunks(1 << 20) {
                p.push(id, part);
            }
            p.finish()
        })
    });
    for (k, m) in [(4u8, 2u8), (8, 4), (10, 4)] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        g.bench_with_input(BenchmarkId::new("erasure encode", format!("{k}+{m}")), &(k, m), |b, &(k, m)| {
            b.iter(|| scatter_core::erasure::encode(input.clone(), k, m, &mut rng))
        });
        let shards = scatter_core::erasure::encode(input.clone(), k, m, &mut rng).expect("encodes");
        let mut have: Vec<Option<Vec<u8>>> =
            (0..shards.layout.total()).map(|i| Some(shards.shard(i).to_vec())).collect();
        for lost in have.iter_mut().take(m as usize) {
            *lost = None;
        }
        g.bench_with_input(BenchmarkId::new("erasure rebuild", format!("{k}+{m}, {m} lost")), &have, |b, have| {
            b.iter(|| scatter_core::erasure::decode(&shards.layout, have))
        });
    }
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
