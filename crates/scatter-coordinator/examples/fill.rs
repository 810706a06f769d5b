//! How full placement gets a grid before it refuses a put: the placement before placement
//! by fit (weighted random by free space, one shard per host) against today's (the
//! durability rule's limits, cheapest then roomiest first), on grids of unequal and few
//! hosts. Run by `bench/fill.sh`; prints one row per grid and placement.
//!
//! Each put is one pack of `file` bytes; its shards are that divided by k, plus the few
//! bytes sealing and alignment add. The bound is what `scatter admin capacity` reports:
//! the most raw bytes the rule lets the hosts take. Fill is raw bytes placed over it.

use rand::{Rng, SeedableRng};
use scatter_coordinator::durability::{self, Room};
use scatter_coordinator::placement::{self, Candidate, Limits};
use scatter_coordinator::store::Domain;
use scatter_core::{HostId, ShardId};

const MIB: u64 = 1 << 20;
/// Bytes sealing and alignment add to a shard of an 8 MiB pack, about.
const OVERHEAD: u64 = 128;
/// Seeds of the random placement; the median is shown.
const SEEDS: u64 = 9;

/// The placement before placement by fit: `n` distinct hosts with room, drawn without
/// replacement with probability proportional to free space (Efraimidis–Spirakis).
fn before(free: &[u64], n: usize, shard: u64, rng: &mut impl Rng) -> Option<Vec<usize>> {
    let mut keyed: Vec<(f64, usize)> = (0..free.len())
        .filter(|&i| free[i] >= shard)
        .map(|i| (rng.gen_range(f64::MIN_POSITIVE..1.0f64).powf(1.0 / free[i] as f64), i))
        .collect();
    if keyed.len() < n {
        return None;
    }
    keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
    Some(keyed.into_iter().take(n).map(|(_, i)| i).collect())
}

/// Raw bytes placed by puts of `file`-byte packs coded k+m until one is refused.
fn fill(sizes: &[u64], k: u8, m: u8, f: u8, file: u64, old: bool, seed: u64) -> u64 {
    let n = (k + m) as usize;
    let shard = file.div_ceil(k as u64) + OVERHEAD;
    let mut free = sizes.to_vec();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // The placement before knew no rule; today's refuses a code too weak for f.
    let limits = match durability::per_domain(k, m, f) {
        Ok(per_domain) => Limits { per_domain, per_zone: n },
        Err(_) if old => Limits { per_domain: 1, per_zone: n },
        Err(_) => return 0,
    };
    let mut placed = 0;
    for pack in 0u32.. {
        let chosen: Vec<usize> = if old {
            match before(&free, n, shard, &mut rng) {
                Some(c) => c,
                None => break,
            }
        } else {
            let cands: Vec<Candidate> = free
                .iter()
                .enumerate()
                .map(|(i, &fr)| Candidate {
                    host: HostId(i as u64),
                    free: fr,
                    zone: "z".into(),
                    domain: Domain::Host(HostId(i as u64)),
                    price: 0,
                })
                .collect();
            let ids: Vec<ShardId> =
                (0..n as u32).map(|i| ShardId::of(&[pack.to_le_bytes(), i.to_le_bytes()].concat())).collect();
            match placement::choose(&cands, &ids, shard, &[], limits, &mut rng) {
                Ok(c) => c.into_iter().map(|h| h.0 as usize).collect(),
                Err(_) => break,
            }
        };
        for i in chosen {
            free[i] -= shard;
            placed += shard;
        }
    }
    placed
}

fn main() {
    // (grid, host sizes in MiB, f)
    let grids: [(&str, &[u64], u8); 5] = [
        ("7 unequal hosts 32..256 MiB", &[32, 32, 64, 64, 128, 128, 256], 2),
        ("3 equal hosts of 100 MiB", &[100, 100, 100], 1),
        ("4 equal hosts of 100 MiB", &[100, 100, 100, 100], 1),
        ("4 hosts 100,100,100,300 MiB", &[100, 100, 100, 300], 1),
        ("9 hosts 1:1:1:2:2:2:4:4:8 x 64 MiB", &[64, 64, 64, 128, 128, 128, 256, 256, 512], 2),
    ];
    // (placement, k, m)
    let runs: [(&str, bool, u8, u8); 5] = [
        ("before, 4+2 (the default)", true, 4, 2),
        ("before, 2+1 (what fits 3-5 hosts)", true, 2, 1),
        ("by fit, 4+2 (the default)", false, 4, 2),
        ("by fit, 8+4", false, 8, 4),
        ("by fit, 2+1", false, 2, 1),
    ];
    let file = 8 * MIB;
    println!("Puts of 8 MiB files until one is refused; fill = raw bytes placed / the rule's bound.\n");
    println!("{:<36} {:<32} {:>10} {:>10} {:>7}", "grid", "placement", "bound", "placed", "fill");
    for (name, sizes, f) in grids {
        let sizes: Vec<u64> = sizes.iter().map(|s| s * MIB).collect();
        let rooms: Vec<Room<usize, u8>> =
            sizes.iter().enumerate().map(|(i, &s)| Room { domain: i, zone: 0, free: s }).collect();
        // The bound is the rule's: a share of (1 − 1/e)/f of every pack per host, at 1.5×.
        let bound = durability::capacity(&rooms, (1, 3 * f as u64), (1, 1));
        // 2+1 survives one loss: a code for f = 1 grids only.
        for (label, old, k, m) in runs.into_iter().filter(|r| f == 1 || r.3 >= f) {
            let mut results: Vec<u64> =
                (0..if old { SEEDS } else { 1 }).map(|seed| fill(&sizes, k, m, f, file, old, seed)).collect();
            results.sort_unstable();
            let placed = results[results.len() / 2];
            println!(
                "{:<36} {:<32} {:>6} MiB {:>6} MiB {:>6.1}%",
                name,
                label,
                bound / MIB,
                placed / MIB,
                placed as f64 * 100.0 / bound as f64
            );
        }
        println!();
    }
    println!("\"before\" placed one shard per host: 4+2 needed six hosts, so three to five had to pick 2+1.");
    println!("Fill below 100% with equal hosts is granularity: a 100 MiB host takes 49 shards of 2 MiB and a bit.");
}
