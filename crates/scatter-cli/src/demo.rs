//! `scatter demo`: the whole promise in one command. On a temporary local grid of six hosts it
//! stores a sample data set with 4+2 redundancy, kills two hosts with SIGKILL, gets
//! everything back, and checks it bit for bit.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rand::{Rng, RngCore, SeedableRng};
use scatter_cli::grid::{Grid, GridOptions};
use scatter_client::upload::Redundancy;
use scatter_client::NoProgress;
use scatter_core::ByteSize;

const HOSTS: usize = 6;

/// Writes the sample data set: one large random file, a compressible text file, a spread of
/// small files, and the edge cases (empty, one byte). Seeded, so every run is the same.
fn sample_data(dir: &Path) -> Result<Vec<(String, u64)>> {
    std::fs::create_dir_all(dir)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let mut files = Vec::new();
    let mut write = |name: &str, data: &[u8]| -> Result<()> {
        std::fs::write(dir.join(name), data)?;
        files.push((name.to_owned(), data.len() as u64));
        Ok(())
    };
    let mut big = vec![0u8; 64 << 20];
    rng.fill_bytes(&mut big);
    write("video.bin", &big)?;
    let text: String =
        (0..200_000).map(|i| format!("line {i}: the quick brown fox jumps over the lazy dog\n")).collect();
    write("log.txt", text.as_bytes())?;
    for i in 0..20 {
        let mut small = vec![0u8; rng.gen_range(1..64 * 1024)];
        rng.fill_bytes(&mut small);
        write(&format!("note-{i:02}.dat"), &small)?;
    }
    write("empty", &[])?;
    write("one-byte", b"x")?;
    Ok(files)
}

fn same(a: &Path, b: &Path) -> Result<bool> {
    let hash = |p: &Path| -> Result<blake3::Hash> {
        let mut h = blake3::Hasher::new();
        h.update_reader(std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?)?;
        Ok(h.finalize())
    };
    Ok(hash(a)? == hash(b)?)
}

pub async fn run(keep: bool) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the scatter executable")?;
    let tmp = tempfile::Builder::new().prefix("scatter-demo-").tempdir()?;
    let dir = tmp.path().to_owned();
    println!("Scatter demo in {}", dir.display());
    println!("1. Starting a local grid: 1 coordinator + {HOSTS} hosts in 3 zones (separate processes on 127.0.0.1)...");
    let mut grid = Grid::start(&exe, &dir.join("grid"), HOSTS, GridOptions::default()).await?;
    let coord = grid.profile().coordinator()?;
    let keys = scatter_client::profile::Profile::load_keys(&grid.client_dir(), grid.passphrase())?;

    let source = dir.join("source");
    let files = sample_data(&source)?;
    let total: u64 = files.iter().map(|(_, s)| s).sum();
    println!("2. Storing {} files ({}) with 4+2 erasure coding...", files.len(), ByteSize(total));
    let started = Instant::now();
    let mut uploaded = 0;
    let mut per_host = [0usize; HOSTS + 1];
    for (name, _) in &files {
        let r = scatter_client::put::put_file(
            &coord,
            keys.write_keys(),
            &source.join(name),
            name,
            Redundancy::default(),
            &NoProgress,
        )
        .await?;
        uploaded += r.bytes_uploaded;
        for (_, hosts) in &r.placements {
            for h in hosts {
                if let Some(n) = per_host.get_mut(h.0 as usize) {
                    *n += 1;
                }
            }
        }
    }
    let put_time = started.elapsed();
    println!(
        "   stored in {:.1} s ({:.1} MB/s); {} of shards on hosts (1.5x for 4+2 plus padding)",
        put_time.as_secs_f64(),
        total as f64 / 1e6 / put_time.as_secs_f64(),
        ByteSize(uploaded)
    );
    for (i, n) in per_host.iter().enumerate().skip(1) {
        println!("   host h{i}: {n} shards");
    }

    println!("3. Killing two hosts with SIGKILL (kill -9): h1 and h4...");
    grid.kill_host(0);
    grid.kill_host(3);

    println!("4. Getting everything back from the 4 remaining hosts...");
    let restored = dir.join("restored");
    std::fs::create_dir_all(&restored)?;
    let started = Instant::now();
    let mut rebuilt = 0;
    for (name, _) in &files {
        let r = scatter_client::get::get_file(&coord, &keys, name, &restored.join(name), &NoProgress).await?;
        rebuilt += r.fetch.reconstructed_packs;
    }
    let get_time = started.elapsed();
    println!(
        "   fetched in {:.1} s ({:.1} MB/s), {rebuilt} packs rebuilt from parity",
        get_time.as_secs_f64(),
        total as f64 / 1e6 / get_time.as_secs_f64()
    );

    println!("5. Verifying bit for bit...");
    let mut bad = Vec::new();
    for (name, _) in &files {
        if !same(&source.join(name), &restored.join(name))? {
            bad.push(name.clone());
        }
    }
    grid.stop();
    if keep {
        let kept = tmp.keep();
        println!("   (kept {})", kept.display());
    }
    if !bad.is_empty() {
        bail!("{} files came back different: {}", bad.len(), bad.join(", "));
    }
    println!("OK: all {} files ({}) came back identical with 2 of {HOSTS} hosts gone.", files.len(), ByteSize(total));
    Ok(())
}
