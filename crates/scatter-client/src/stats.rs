//! Per-stage counters of the data path, for `--stats`: how long each stage was busy and how
//! many bytes went through it.
//!
//! Stages overlap (reading runs while the previous packs are sealed, coded and uploaded), so
//! busy times add up to more than the wall-clock time; the stage with the most busy time per
//! core is the one that limits a run. The counters are process-wide: a command runs one
//! pipeline, and threading a collector through every call would cost more than two atomic
//! adds per chunk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One stage of the put or get pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Unlocking the key file: the passphrase's scrypt, a fixed cost per command.
    Unlock,
    /// Reading source files and cutting them into chunks with their keyed hashes.
    ReadChunk,
    /// Asking the coordinator which chunks it already has.
    Lookup,
    /// Encrypting new chunks.
    Seal,
    /// Erasure-coding packs and hashing their shards.
    Encode,
    /// Sending shards to hosts.
    Upload,
    /// Placement and pack commits at the coordinator.
    Commit,
    /// Locating chunks at the coordinator.
    Locate,
    /// Reading shards (or ranges of them) from hosts.
    Download,
    /// Rebuilding packs from parity.
    Rebuild,
    /// Decrypting and verifying chunks.
    Open,
    /// Writing restored files.
    Write,
}

const STAGES: [Stage; 12] = [
    Stage::Unlock,
    Stage::ReadChunk,
    Stage::Lookup,
    Stage::Seal,
    Stage::Encode,
    Stage::Upload,
    Stage::Commit,
    Stage::Locate,
    Stage::Download,
    Stage::Rebuild,
    Stage::Open,
    Stage::Write,
];

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Unlock => "unlock key file (scrypt)",
            Stage::ReadChunk => "read + chunk + hash",
            Stage::Lookup => "dedup lookup",
            Stage::Seal => "seal (AES-256-GCM)",
            Stage::Encode => "erasure code + shard ids",
            Stage::Upload => "upload shards",
            Stage::Commit => "place + commit",
            Stage::Locate => "locate",
            Stage::Download => "download shards",
            Stage::Rebuild => "rebuild from parity",
            Stage::Open => "open + verify",
            Stage::Write => "write files",
        }
    }
}

struct Counter {
    nanos: AtomicU64,
    bytes: AtomicU64,
    calls: AtomicU64,
}

static COUNTERS: [Counter; STAGES.len()] =
    [const { Counter { nanos: AtomicU64::new(0), bytes: AtomicU64::new(0), calls: AtomicU64::new(0) } }; STAGES.len()];

/// Adds `elapsed` of busy time and `bytes` to `stage`.
pub fn add(stage: Stage, elapsed: Duration, bytes: u64) {
    let c = &COUNTERS[stage as usize];
    c.nanos.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    c.bytes.fetch_add(bytes, Ordering::Relaxed);
    c.calls.fetch_add(1, Ordering::Relaxed);
}

/// Runs `f`, counting its time and `bytes` against `stage`.
pub fn time<T>(stage: Stage, bytes: u64, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    add(stage, t.elapsed(), bytes);
    out
}

/// Awaits `f`, counting its time and `bytes` against `stage`.
pub async fn time_async<T>(stage: Stage, bytes: u64, f: impl std::future::Future<Output = T>) -> T {
    let t = Instant::now();
    let out = f.await;
    add(stage, t.elapsed(), bytes);
    out
}

/// Counts the time until it is dropped against a stage (for closures with early returns).
pub struct Timer {
    stage: Stage,
    bytes: u64,
    started: Instant,
}

impl Timer {
    /// Starts timing `bytes` of work in `stage`.
    pub fn new(stage: Stage, bytes: u64) -> Self {
        Self { stage, bytes, started: Instant::now() }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        add(self.stage, self.started.elapsed(), self.bytes);
    }
}

/// A table of the stages that ran, for a run that took `wall`.
pub fn report(wall: Duration) -> String {
    let mut out = format!("{:<26} {:>10} {:>10} {:>12} {:>8}\n", "stage", "busy s", "bytes", "MB/s busy", "calls");
    for s in STAGES {
        let c = &COUNTERS[s as usize];
        let (nanos, bytes, calls) =
            (c.nanos.load(Ordering::Relaxed), c.bytes.load(Ordering::Relaxed), c.calls.load(Ordering::Relaxed));
        if calls == 0 {
            continue;
        }
        let secs = nanos as f64 / 1e9;
        let rate = if secs > 0.0 { bytes as f64 / 1e6 / secs } else { 0.0 };
        out.push_str(&format!(
            "{:<26} {:>10.2} {:>10} {:>12.1} {:>8}\n",
            s.name(),
            secs,
            scatter_core::ByteSize(bytes).to_string(),
            rate,
            calls
        ));
    }
    out.push_str(&format!(
        "wall clock {:.2} s; busy times overlap (stages run concurrently, several tasks per stage)\n",
        wall.as_secs_f64()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_time_and_bytes_per_stage() {
        time(Stage::Seal, 1_000_000, || std::thread::sleep(Duration::from_millis(5)));
        add(Stage::Seal, Duration::from_millis(5), 1_000_000);
        let r = report(Duration::from_secs(1));
        let line = r.lines().find(|l| l.starts_with("seal")).expect("a seal line");
        assert!(line.contains("2.0 MB") || line.contains("1.9 MiB"), "{line}");
        assert!(!r.contains("rebuild"), "stages that did not run are left out: {r}");
    }
}
