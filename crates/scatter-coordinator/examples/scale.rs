//! The catalog at scale: what each coordinator operation costs as the catalog grows, on
//! SQLite and on PostgreSQL, and requests per second through 1 and 3 real coordinators.
//! Run by `bench/scale.sh` (see `docs/scale.md`); a benchmark, not a test.
//!
//! For each back end a catalog gets 1,000 hosts (registered with `add_host`), one user and
//! one write session, then grows step by step to each size: packs of 4+2 shards placed on 6
//! distinct random hosts, 10 chunks per pack, and one object per pack referencing its 10
//! chunks (20 objects per directory). Growth goes through `Store::bulk_load` (cargo feature
//! `bench`): the rows a commit writes, 5,000 packs per transaction, without a commit's
//! checks. Its ids grow with the fill order (a sequence number in their first bytes, the
//! rest random), so every index is filled at its end rather than at random pages: far
//! faster to fill, and the trees come out densely packed rather than at the ~70% fill of
//! random inserts. What is measured afterwards uses random ids, as clients make them.
//!
//! At each size the operations are timed as the coordinator calls them, one call at a
//! time: `commit_pack` and `commit_object` of new packs, `locate`, `list_objects` of a
//! directory, a heartbeat per host, the checker's `degraded_packs` and `health` with 5 of
//! the 1,000 hosts offline, `reconcile` of one host's full inventory, and a placement
//! (`hosts` and `reserve` with the coordinator's placement code). At the largest size,
//! several threads run at once: locates alone, locates beside a committing thread, and
//! commits. Then, on PostgreSQL, 1 and 3 `scatter coordinator` processes serve signed
//! requests (a list of a directory and a locate of one chunk, alternating) from 32
//! concurrent clients in this process.
//!
//! Usage: scale [--sizes 10000,100000,1000000] [--backends sqlite,postgres] [--quick]
//!              [--scatter target/release/scatter] [--rps-secs 10] [--work /tmp]

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::SigningKey;
use rand::{Rng, SeedableRng};
use scatter_coordinator::durability;
use scatter_coordinator::placement::{self, Candidate};
use scatter_coordinator::store::{
    Beat, BulkObject, BulkPack, HostRow, NewPack, Reservation, ReserveError, Standing, Store, Terms,
};
use scatter_core::{ChunkId, DeviceId, HostId, PackId, ShardId, UserId};
use scatter_proto::api::{ChunkEntry, LocateRequest, Role, StoredShard};
use scatter_proto::auth::{Credential, Request};
use scatter_proto::SignedReceipt;

/// Hosts in the grid.
const HOSTS: usize = 1000;
/// Hosts offline during the checker's pass.
const OFFLINE: usize = 5;
/// Data and parity shards per pack.
const K: u8 = 4;
const M: u8 = 2;
/// Chunks per pack (so 1 M packs hold 10 M chunk references).
const CHUNKS: u64 = 10;
/// Objects per directory: what a list of one directory returns.
const PER_DIR: u64 = 20;
/// Sealed bytes per pack (16 MiB, less a little) and per shard.
const PACK_SIZE: u64 = (16 << 20) - 4096;
const SHARD_SIZE: u64 = PACK_SIZE.div_ceil(K as u64);
/// Packs per bulk-load transaction.
const FILL_BATCH: u64 = 5000;
/// Bytes a receipt takes as stored (base64url of 156 bytes).
const RECEIPT_BYTES: usize = 156;
/// Bytes of a sealed manifest for a 10-chunk file, about.
const MANIFEST_BYTES: usize = 480;
/// Disk a pack takes with its shards, chunks and object, about (measured: SQLite about
/// 5.5 KiB, PostgreSQL about 9 KiB), with a margin, for the free-space check.
const BYTES_PER_PACK: [u64; 2] = [7 << 10, 12 << 10];
/// Concurrent clients of the coordinators.
const CLIENTS: usize = 32;

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970").as_secs()
}

// ---------------------------------------------------------------------------------------
// The generated grid: ids and placements derived from a pack's number, so any of them can
// be recomputed (a host's inventory, a random chunk to locate) without keeping them.

/// 32 bytes derived from a tag, a number and an index.
fn derived(tag: &[u8], n: u64, i: u8) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(tag).update(&n.to_le_bytes()).update(&[i]);
    *h.finalize().as_bytes()
}

/// An id that sorts in fill order: the number and index first, then random bytes.
fn ordered(tag: &[u8], n: u64, i: u8) -> [u8; 32] {
    let mut b = derived(tag, n, i);
    b[..8].copy_from_slice(&(n + 1).to_be_bytes());
    b[8] = i;
    b
}

fn xof(tag: &[u8], n: u64, i: u8, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    let mut h = blake3::Hasher::new();
    h.update(tag).update(&n.to_le_bytes()).update(&[i]);
    h.finalize_xof().fill(&mut out);
    out
}

fn pack_id(n: u64) -> PackId {
    PackId::from_bytes(ordered(b"pack", n, 0))
}

fn shard_id(n: u64, i: u8) -> ShardId {
    ShardId::from_bytes(ordered(b"shard", n, i))
}

fn chunk_id(n: u64, j: u8) -> ChunkId {
    ChunkId::from_bytes(ordered(b"chunk", n, j))
}

/// Indexes (into the host list) of the hosts holding pack `n`'s shards, in shard order.
fn hosts_of(n: u64) -> Vec<usize> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(n ^ 0x5ca1_ab1e);
    rand::seq::index::sample(&mut rng, HOSTS, (K + M) as usize).into_vec()
}

/// An encrypted name component: base64url of 24 bytes, as long as a short name's AES-SIV.
fn component(tag: &[u8], n: u64) -> String {
    URL_SAFE_NO_PAD.encode(&derived(tag, n, 0)[..24])
}

fn dir_name(d: u64) -> String {
    component(b"dir", d)
}

fn object_name(n: u64) -> String {
    format!("{}/{}", dir_name(n / PER_DIR), component(b"file", n))
}

fn receipt(n: u64, i: u8) -> String {
    URL_SAFE_NO_PAD.encode(xof(b"receipt", n, i, RECEIPT_BYTES))
}

/// A grid's fixed parts, as registered in a catalog.
struct Grid {
    user: UserId,
    /// The user's device, which signs the measured requests.
    device: DeviceId,
    session: u64,
    hosts: Vec<HostId>,
    /// When the grid was made: hosts joined then, and offline hosts were last seen then.
    t0: u64,
    /// Packs filled so far (numbered from 0).
    filled: u64,
    /// Shards of packs committed by the measurements: their hosts' inventories include them.
    committed: Mutex<Vec<(HostId, ShardId)>>,
    /// The time of the last heartbeats: each round is later, as real ones are.
    last_beat: AtomicU64,
}

/// The key the benchmark user's requests are signed with.
fn device_key() -> SigningKey {
    SigningKey::from_bytes(&derived(b"device key", 0, 0))
}

impl Grid {
    fn create(store: &Store) -> Grid {
        let t0 = unix_now();
        let token = derived(b"invite", 0, 0);
        store.add_token(&token, "bench", Role::User, None, None).expect("add the invite");
        let key = device_key().verifying_key().to_bytes();
        let row = store.redeem_token(&token, "age1bench", &key, "bench", t0).expect("redeem").expect("a fresh invite");
        let (user, device) = (row.id, row.device);
        let session = store.add_session(user, &[7; 60], t0, t0 + 10 * 365 * 86_400).expect("session");
        let hosts = (0..HOSTS)
            .map(|i| {
                let address = format!("https://127.0.0.2:{}", 20_000 + i);
                let zone = format!("zone-{}", i % 10);
                let secret = derived(b"host secret", i as u64, 0);
                store.add_host(&secret, &address, &zone, 64 << 40, None, t0).expect("add a host")
            })
            .collect();
        Grid {
            user,
            device,
            session,
            hosts,
            t0,
            filled: 0,
            committed: Mutex::new(Vec::new()),
            last_beat: AtomicU64::new(t0),
        }
    }

    fn online(&self) -> &[HostId] {
        &self.hosts[OFFLINE..]
    }

    fn bulk_pack(&self, n: u64) -> BulkPack {
        let len = PACK_SIZE / CHUNKS;
        BulkPack {
            id: pack_id(n),
            session: self.session,
            size: PACK_SIZE,
            k: K,
            m: M,
            shard_size: SHARD_SIZE,
            created: self.t0 - 86_400,
            shards: hosts_of(n)
                .into_iter()
                .enumerate()
                .map(|(i, h)| (i as u8, shard_id(n, i as u8), self.hosts[h], receipt(n, i as u8)))
                .collect(),
            chunks: (0..CHUNKS).map(|j| (chunk_id(n, j as u8), j * len, len)).collect(),
        }
    }

    fn bulk_object(&self, n: u64) -> BulkObject {
        BulkObject {
            name: object_name(n),
            session: self.session,
            manifest: xof(b"manifest", n, 0, MANIFEST_BYTES),
            size: PACK_SIZE - 1024,
            created: self.t0 - 86_400,
            chunks: (0..CHUNKS).map(|j| chunk_id(n, j as u8)).collect(),
        }
    }

    /// Grows the catalog to `to` packs, a batch per transaction, the next batch made while
    /// the last one loads.
    fn fill(&mut self, store: &Store, to: u64) -> Duration {
        let started = Instant::now();
        let (from, grid) = (self.filled, &*self);
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<BulkPack>, Vec<BulkObject>)>(1);
            s.spawn(move || {
                let mut n = from;
                while n < to {
                    let end = (n + FILL_BATCH).min(to);
                    let batch = (
                        (n..end).map(|n| grid.bulk_pack(n)).collect(),
                        (n..end).map(|n| grid.bulk_object(n)).collect(),
                    );
                    if tx.send(batch).is_err() {
                        return;
                    }
                    n = end;
                }
            });
            let mut done = from;
            let mut shown = Instant::now();
            for (packs, objects) in rx {
                store.bulk_load(grid.user, &packs, &objects).expect("bulk load");
                done += packs.len() as u64;
                if shown.elapsed() > Duration::from_secs(30) {
                    let rate = (done - from) as f64 / started.elapsed().as_secs_f64();
                    eprintln!("    filled {done} of {to} packs ({rate:.0} packs/s)");
                    shown = Instant::now();
                }
            }
        });
        self.filled = to;
        started.elapsed()
    }

    /// What `host` holds: every shard the fill and the measurements placed on it.
    fn inventories(&self, hosts: &[HostId]) -> HashMap<HostId, Vec<(ShardId, u64)>> {
        let index: HashMap<HostId, usize> = self.hosts.iter().enumerate().map(|(i, h)| (*h, i)).collect();
        let wanted: Vec<usize> = hosts.iter().map(|h| index[h]).collect();
        let mut out: HashMap<HostId, Vec<(ShardId, u64)>> = hosts.iter().map(|h| (*h, Vec::new())).collect();
        for n in 0..self.filled {
            for (i, h) in hosts_of(n).into_iter().enumerate() {
                if wanted.contains(&h) {
                    out.entry(self.hosts[h]).or_default().push((shard_id(n, i as u8), 1 << 20));
                }
            }
        }
        for (h, s) in self.committed.lock().expect("not poisoned").iter() {
            if let Some(inv) = out.get_mut(h) {
                inv.push((*s, 1 << 20));
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// Timing.

/// Latencies of one operation.
#[derive(Clone, Default)]
struct Stats {
    samples: Vec<Duration>,
    /// Something worth saying beside it (rows returned, shards reconciled).
    note: String,
}

impl Stats {
    fn pct(&self, p: f64) -> Duration {
        let mut v = self.samples.clone();
        v.sort_unstable();
        if v.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }
}

fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let out = f();
    (t.elapsed(), out)
}

fn fmt_dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 10_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else if us < 1_000_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

fn fmt_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// The operations.

/// A new pack as a client makes it (random ids) on `K + M` distinct online hosts.
fn new_pack(grid: &Grid, rng: &mut impl Rng) -> (PackId, Vec<StoredShard>, Vec<ChunkEntry>) {
    let online = grid.online();
    let hosts = rand::seq::index::sample(rng, online.len(), (K + M) as usize);
    let shards = hosts
        .into_iter()
        .enumerate()
        .map(|(i, h)| StoredShard {
            index: i as u8,
            shard: ShardId::from_bytes(rng.gen()),
            host: online[h],
            receipt: SignedReceipt(URL_SAFE_NO_PAD.encode(xof(b"r", rng.gen(), 0, RECEIPT_BYTES))),
        })
        .collect();
    let len = PACK_SIZE / CHUNKS;
    let chunks = (0..CHUNKS).map(|j| ChunkEntry { id: ChunkId::from_bytes(rng.gen()), offset: j * len, len }).collect();
    (PackId::from_bytes(rng.gen()), shards, chunks)
}

fn commit_pack(store: &Store, grid: &Grid, rng: &mut impl Rng) -> (Duration, Vec<ChunkId>) {
    let (id, shards, chunks) = new_pack(grid, rng);
    let pack = NewPack {
        id,
        user: grid.user,
        session: grid.session,
        size: PACK_SIZE,
        k: K,
        m: M,
        shard_size: SHARD_SIZE,
        shards: &shards,
        chunks: &chunks,
        relocate: false,
    };
    let (took, out) = time(|| store.commit_pack(&pack, unix_now()));
    out.expect("commit a pack");
    grid.committed.lock().expect("not poisoned").extend(shards.iter().map(|s| (s.host, s.shard)));
    (took, chunks.iter().map(|c| c.id).collect())
}

fn random_chunk(grid: &Grid, rng: &mut impl Rng) -> ChunkId {
    chunk_id(rng.gen_range(0..grid.filled), rng.gen_range(0..CHUNKS) as u8)
}

fn locate(store: &Store, grid: &Grid, n: usize, rng: &mut impl Rng) -> Duration {
    let ids: Vec<ChunkId> = (0..n).map(|_| random_chunk(grid, rng)).collect();
    let (took, out) = time(|| store.locate(grid.user, &ids));
    let found = out.expect("locate").chunks;
    assert_eq!(found.len(), n, "every chunk asked for is stored");
    took
}

/// A placement as `POST /v1/packs/place` makes it: the hosts, then in one transaction what
/// is reserved, the coordinator's choice and the new reservations.
fn place(store: &Store, grid: &Grid, cutoff: u64, rng: &mut impl Rng) -> Duration {
    let shards: Vec<ShardId> = (0..K + M).map(|_| ShardId::from_bytes(rng.gen())).collect();
    let now = unix_now();
    let (took, placed) = time(|| {
        let hosts = store.hosts().expect("hosts");
        let up = |h: &HostRow| h.state == Standing::Active && h.last_seen >= cutoff;
        let f = durability::auto_tolerance(hosts.iter().filter(|h| up(h)).count());
        let per_domain = durability::per_domain(K, M, f).expect("4+2 meets the rule");
        store.reserve(grid.user, grid.user, now, |reserved| {
            let candidates: Vec<Candidate> = hosts
                .iter()
                .filter(|h| up(h))
                .map(|h| {
                    let r = reserved.by_host.get(&h.id).copied().unwrap_or(0);
                    let by_capacity = h.capacity.saturating_sub(h.catalog_used.max(h.reported_used) + r);
                    Candidate {
                        host: h.id,
                        free: by_capacity.min(h.free.saturating_sub(r)),
                        zone: h.zone.clone(),
                        domain: h.domain(),
                        price: h.terms.price,
                    }
                })
                .collect();
            let limits = placement::limits(shards.len(), per_domain, &candidates, SHARD_SIZE, &[]);
            let chosen = placement::choose(&candidates, &shards, SHARD_SIZE, &[], limits, &mut rand::thread_rng())
                .map_err(|e| e.why)?;
            let reservations = chosen
                .iter()
                .zip(&shards)
                .map(|(host, shard)| Reservation {
                    host: *host,
                    shard: *shard,
                    caller: grid.user,
                    owner: grid.user,
                    bytes: SHARD_SIZE,
                    grant: [0; 32],
                    code: (K, M),
                    per_domain,
                    expires: now + 600,
                    narrowed: false,
                })
                .collect();
            Ok::<_, String>((reservations, chosen))
        })
    });
    let chosen = match placed {
        Ok(chosen) => chosen,
        Err(ReserveError::Refused(why)) => panic!("placement refused: {why}"),
        Err(ReserveError::Store(e)) => panic!("placement failed: {e}"),
    };
    // Used up as a commit would, so reservations do not pile up from sample to sample.
    let keys: Vec<(HostId, ShardId)> = chosen.into_iter().zip(shards).collect();
    store.take_reservations(grid.user, &keys, now).expect("take the reservations");
    took
}

/// Every operation at one catalog size, one call at a time.
fn measure(store: &Store, grid: &Grid, quick: bool) -> BTreeMap<&'static str, Stats> {
    let mut rng = rand::rngs::StdRng::from_entropy();
    let n = |full: usize| if quick { full / 5 } else { full };
    let mut out: BTreeMap<&'static str, Stats> = BTreeMap::new();
    let mut add = |op: &'static str, d: Duration| out.entry(op).or_default().samples.push(d);

    // Hosts heartbeat (all but the offline ones), which puts them online for what follows.
    // Each host at its own second of a 10 s round, as hosts beating every 10 s do; the
    // offline ones were last seen at the grid's start, before the cutoff.
    let beat_at = unix_now().max(grid.last_beat.load(Ordering::Relaxed) + 20);
    grid.last_beat.store(beat_at, Ordering::Relaxed);
    let terms = Terms::default();
    for (i, h) in grid.online().iter().enumerate() {
        let address = format!("https://127.0.0.2:{}", 20_000 + OFFLINE + i);
        let beat = Beat { address: &address, capacity: 64 << 40, used: 0, free: 64 << 40, terms: &terms, served: 0 };
        let (took, r) = time(|| store.heartbeat(*h, &beat, 60, beat_at - (i as u64 % 10)));
        r.expect("heartbeat");
        add("01 heartbeat", took);
    }
    let cutoff = beat_at - 10;
    for _ in 0..n(100) {
        let (took, r) = time(|| store.hosts());
        assert_eq!(r.expect("hosts").len(), HOSTS);
        add("01 hosts (all 1,000, read by placement and locate)", took);
    }

    let mut names = Vec::new();
    for _ in 0..n(500) {
        let (took, chunks) = commit_pack(store, grid, &mut rng);
        add("02 commit_pack (4+2, 10 chunks)", took);
        let name = format!("{}/{}", component(b"new dir", rng.gen()), component(b"new file", rng.gen()));
        names.push(name.clone());
        let (took, r) = time(|| {
            store.commit_object(grid.user, &name, grid.session, &[9; MANIFEST_BYTES], 1, &chunks, false, unix_now())
        });
        r.expect("commit an object");
        add("03 commit_object (10 chunks)", took);
    }
    for _ in 0..n(200) {
        // Half stored, half new, as in an incremental backup.
        let ids: Vec<ChunkId> = (0..64)
            .map(|i| if i % 2 == 0 { random_chunk(grid, &mut rng) } else { ChunkId::from_bytes(rng.gen()) })
            .collect();
        let (took, r) = time(|| store.lookup_for_session(grid.user, grid.user, grid.session, &ids, unix_now()));
        assert_eq!(r.expect("dedup lookup").len(), 32, "the stored half is found");
        add("04 dedup lookup of 64 chunks", took);
    }
    for _ in 0..n(1000) {
        add("05 locate 1 chunk", locate(store, grid, 1, &mut rng));
    }
    for _ in 0..n(200) {
        add("06 locate 64 chunks", locate(store, grid, 64, &mut rng));
    }
    for _ in 0..n(500) {
        let dirs = grid.filled / PER_DIR;
        let prefix = format!("{}/", dir_name(rng.gen_range(0..dirs)));
        let (took, r) = time(|| store.list_objects(grid.user, &prefix));
        assert_eq!(r.expect("list").len() as u64, PER_DIR, "a directory holds {PER_DIR} objects");
        add("07 list_objects (a directory of 20)", took);
    }
    for _ in 0..n(200) {
        add("08 place 4+2 (hosts + reserve)", place(store, grid, cutoff, &mut rng));
    }
    for _ in 0..n(50).max(3) {
        let (took, r) = time(|| store.usage(grid.user));
        r.expect("usage");
        add("09 quota: usage of the user", took);
    }
    let mut damaged = 0;
    for _ in 0..n(10).max(3) {
        let (took, r) = time(|| store.degraded_packs(cutoff, 16, &Default::default()));
        assert_eq!(r.expect("degraded packs").len(), 16, "offline hosts leave packs degraded");
        add("10 checker: degraded_packs (16)", took);
        let (took, r) = time(|| store.health(cutoff));
        let h = r.expect("health");
        damaged = h.packs_degraded + h.packs_lost;
        add("11 checker: health", took);
        let (took, r) = time(|| store.audit_targets(cutoff, 4));
        assert_eq!(r.expect("audit targets").len(), 4, "four hosts to audit");
        add("12 checker: audit_targets (4)", took);
        let (took, r) =
            time(|| store.shards_to_delete(256, u64::MAX).and_then(|d| Ok((d, store.orphans(256, u64::MAX)?))));
        let (deleting, orphans) = r.expect("deleter");
        assert!(deleting.is_empty() && orphans.is_empty(), "nothing was released");
        add("13 deleter: shards_to_delete + orphans", took);
    }
    let hosts: Vec<HostId> = (0..n(5).max(3)).map(|i| grid.online()[i * 97 % grid.online().len()]).collect();
    let inventories = grid.inventories(&hosts);
    let mut shards = 0;
    for h in &hosts {
        let inventory = &inventories[h];
        let (took, r) = time(|| store.reconcile(*h, inventory, unix_now() + 1, 0, unix_now()));
        let r = r.expect("reconcile");
        assert_eq!((r.lost, r.orphaned), (0, 0), "the inventory is what the catalog places there");
        shards = inventory.len();
        add("14 reconcile one host (full inventory)", took);
        // What hosts send between two full inventories: what changed since (here one shard
        // added and one gone, neither known to the catalog as placed there).
        let since = r.ack.expect("acknowledged");
        let added = [(scatter_core::ShardId::from_bytes([0xa5; 32]), 0)];
        let gone = [scatter_core::ShardId::from_bytes([0x5a; 32])];
        let (took, r) = time(|| store.reconcile_changes(*h, since, &added, &gone, unix_now() + 1, 60, unix_now()));
        assert_eq!(r.expect("changes").ack, Some(since + 1));
        add("14b reconcile one host (changes since the last)", took);
    }
    // A removal sweeps the user's chunks that nothing references any more (nothing here:
    // the session that wrote them is open). Once: it reads every chunk of the user.
    let (took, r) = time(|| store.remove_object(grid.user, &names[0], unix_now()));
    assert_eq!(r.expect("remove"), (1, 0), "one version removed, no pack released");
    add("16 remove_object (its sweep)", took);
    for _ in 0..2 {
        // With the zone rule of three zones for the grid's code, as the checker asks.
        let (took, r) = time(|| store.crowded_packs(2, &[(K, M, 2)], 16, 0));
        assert!(r.expect("crowded packs").is_empty(), "every pack is spread one shard per host");
        add("15 re-spread search: crowded_packs", took);
    }
    out.entry("10 checker: degraded_packs (16)").or_default().note = format!("{damaged} packs damaged");
    out.entry("14 reconcile one host (full inventory)").or_default().note = format!("{shards} shards");
    out
}

/// Several threads at once, for `secs` each: locates alone, locates beside a committing
/// thread, commits alone. Rows: (what, ops/s, p50, p99).
fn concurrency(store: &Store, grid: &Grid, secs: f64) -> Vec<(String, f64, Duration, Duration)> {
    let run = |readers: usize, writers: usize| -> (Stats, Stats) {
        let until = Instant::now() + Duration::from_secs_f64(secs);
        std::thread::scope(|s| {
            let r: Vec<_> = (0..readers)
                .map(|_| {
                    s.spawn(move || {
                        let mut rng = rand::rngs::StdRng::from_entropy();
                        let mut st = Stats::default();
                        while Instant::now() < until {
                            st.samples.push(locate(store, grid, 1, &mut rng));
                        }
                        st
                    })
                })
                .collect();
            let w: Vec<_> = (0..writers)
                .map(|_| {
                    s.spawn(move || {
                        let mut rng = rand::rngs::StdRng::from_entropy();
                        let mut st = Stats::default();
                        while Instant::now() < until {
                            st.samples.push(commit_pack(store, grid, &mut rng).0);
                        }
                        st
                    })
                })
                .collect();
            let merge = |handles: Vec<std::thread::ScopedJoinHandle<'_, Stats>>| {
                let mut all = Stats::default();
                for h in handles {
                    all.samples.extend(h.join().expect("a benchmark thread").samples);
                }
                all
            };
            (merge(r), merge(w))
        })
    };
    let mut rows = Vec::new();
    let row = |what: String, st: &Stats| (what, st.samples.len() as f64 / secs, st.pct(50.0), st.pct(99.0));
    for readers in [1, 2, 4] {
        let (r, _) = run(readers, 0);
        rows.push(row(format!("locate 1 chunk, {readers} thread(s)"), &r));
    }
    let (r, w) = run(2, 1);
    rows.push(row("locate 1 chunk, 2 threads, beside 1 committing".into(), &r));
    rows.push(row("  ... the committing thread's commit_pack".into(), &w));
    for writers in [1, 4] {
        let (_, w) = run(0, writers);
        rows.push(row(format!("commit_pack, {writers} thread(s)"), &w));
    }
    rows
}

// ---------------------------------------------------------------------------------------
// Back ends.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// The PostgreSQL server's settings: durable (as a production server), with room to cache
/// and to write the fill without a checkpoint every few seconds.
const PG_SETTINGS: &[&str] = &[
    "fsync=on",
    "synchronous_commit=on",
    "full_page_writes=on",
    "shared_buffers=1GB",
    "max_wal_size=2GB",
    "effective_cache_size=8GB",
];

/// Lets the fill's writes reach the disk before anything is timed: a checkpoint (SQLite's
/// WAL into the file, PostgreSQL's dirty buffers), then every file system's dirty pages.
fn settle(pg: &Option<scatter_pgtest::TestPg>, sqlite: &Path) {
    match pg {
        Some(pg) => {
            let mut c = postgres::Client::connect(&pg.url(), postgres::NoTls).expect("connect");
            // What autovacuum would have done by then: statistics and the visibility map.
            c.batch_execute("VACUUM ANALYZE").expect("vacuum");
            c.batch_execute("CHECKPOINT").expect("checkpoint");
        }
        None => {
            let c = rusqlite::Connection::open(sqlite).expect("open");
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).expect("checkpoint");
        }
    }
    rustix::fs::sync();
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

fn free_bytes(path: &Path) -> u64 {
    rustix::fs::statvfs(path).map(|s| s.f_bavail * s.f_frsize).unwrap_or(u64::MAX)
}

struct Args {
    sizes: Vec<u64>,
    backends: Vec<Backend>,
    quick: bool,
    scatter: Option<PathBuf>,
    rps_secs: u64,
    work: PathBuf,
    /// Wait for a line on stdin before a catalog is deleted (to look into it).
    pause: bool,
}

fn args() -> Args {
    let mut a = Args {
        sizes: vec![10_000, 100_000, 1_000_000],
        backends: vec![Backend::Sqlite, Backend::Postgres],
        quick: false,
        scatter: None,
        rps_secs: 10,
        work: std::env::temp_dir(),
        pause: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--sizes" => {
                a.sizes =
                    value().split(',').map(|s| s.trim().parse().expect("--sizes: packs, e.g. 10000,100000")).collect()
            }
            "--backends" => {
                a.backends = value()
                    .split(',')
                    .map(|b| match b.trim() {
                        "sqlite" => Backend::Sqlite,
                        "postgres" | "postgresql" => Backend::Postgres,
                        other => panic!("--backends: sqlite or postgres, not {other}"),
                    })
                    .collect()
            }
            "--quick" => a.quick = true,
            "--pause" => a.pause = true,
            "--scatter" => a.scatter = Some(value().into()),
            "--rps-secs" => a.rps_secs = value().parse().expect("--rps-secs: seconds"),
            "--work" => a.work = value().into(),
            other => panic!("unknown argument {other}; see the top of examples/scale.rs"),
        }
    }
    a.sizes.sort_unstable();
    assert!(a.sizes.first().is_some_and(|s| *s >= 1000), "--sizes: at least 1000 packs");
    a
}

/// What one back end measured.
struct Results {
    backend: Backend,
    /// Per size: (packs, fill time, catalog bytes, operations).
    sizes: Vec<(u64, Duration, u64, BTreeMap<&'static str, Stats>)>,
    concurrency: Vec<(String, f64, Duration, Duration)>,
    rps: Vec<RpsRow>,
}

fn run_backend(backend: Backend, a: &Args) -> Results {
    let largest = *a.sizes.last().expect("sizes");
    let need = largest * BYTES_PER_PACK[(backend == Backend::Postgres) as usize];
    let free = free_bytes(&a.work);
    assert!(
        free > need + (2 << 30),
        "{}: a catalog of {largest} packs needs about {} GiB in {}, which has {} GiB free",
        backend.name(),
        need >> 30,
        a.work.display(),
        free >> 30
    );
    let dir = tempfile::Builder::new().prefix("scatter-scale-").tempdir_in(&a.work).expect("work dir");
    let pg = (backend == Backend::Postgres).then(|| {
        std::env::set_var("TMPDIR", &a.work);
        scatter_pgtest::TestPg::start_with(PG_SETTINGS)
    });
    let store = match &pg {
        Some(pg) => Store::open_postgres(&pg.url()).expect("open the PostgreSQL catalog"),
        None => Store::open(&dir.path().join("catalog.db")).expect("open the SQLite catalog"),
    };
    let size_of = |pg: &Option<scatter_pgtest::TestPg>| match pg {
        Some(pg) => {
            let mut c = postgres::Client::connect(&pg.url(), postgres::NoTls).expect("connect");
            c.query_one("SELECT pg_database_size(current_database())", &[]).expect("size").get::<_, i64>(0) as u64
        }
        None => dir_size(dir.path()),
    };
    eprintln!("== {}: 1,000 hosts, then packs up to {largest}", backend.name());
    let mut grid = Grid::create(&store);
    let mut results = Results { backend, sizes: Vec::new(), concurrency: Vec::new(), rps: Vec::new() };
    for &size in &a.sizes {
        let took = grid.fill(&store, size);
        settle(&pg, &dir.path().join("catalog.db"));
        eprintln!("  {size} packs filled ({:.0} s for this step); measuring", took.as_secs_f64());
        let ops = measure(&store, &grid, a.quick);
        let bytes = size_of(&pg);
        results.sizes.push((size, took, bytes, ops));
    }
    if a.pause {
        let at = match &pg {
            Some(pg) => pg.url(),
            None => dir.path().join("catalog.db").display().to_string(),
        };
        eprintln!("  the catalog is at {at}; press Enter to go on");
        let _ = std::io::stdin().read_line(&mut String::new());
    }
    eprintln!("  several threads at once");
    results.concurrency = concurrency(&store, &grid, if a.quick { 1.0 } else { 3.0 });
    if let (Some(pg), Some(exe)) = (&pg, &a.scatter) {
        drop(store);
        results.rps = rps(pg, exe, &grid, dir.path(), a.rps_secs);
    }
    results
}

// ---------------------------------------------------------------------------------------
// Requests per second through real coordinators.

struct RpsRow {
    coordinators: usize,
    rps: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
    /// Share of the machine's CPU time: coordinators, PostgreSQL, this load generator.
    cpu: (f64, f64, f64),
}

/// CPU ticks a process used (user + system), or 0 once it is gone.
fn ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

/// A process and its children's ticks (PostgreSQL's postmaster and its backends).
fn tree_ticks(pid: u32) -> u64 {
    let mut total = ticks(pid);
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        if after.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            total += ticks(child);
        }
    }
    total
}

/// All CPUs' ticks, busy or idle.
fn machine_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines().next().map(|l| l.split_whitespace().skip(1).filter_map(|v| v.parse::<u64>().ok()).sum()).unwrap_or(0)
}

struct Coordinator {
    child: Child,
    base: String,
    dir: PathBuf,
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn start_coordinator(exe: &Path, url: &str, dir: &Path, first: Option<&Path>) -> Coordinator {
    std::fs::create_dir_all(dir).expect("data dir");
    if let Some(first) = first {
        for f in ["ca.crt", "ca.key", "coordinator.key", "join-token", "admin-token"] {
            std::fs::copy(first.join(f), dir.join(f)).expect("copy the first coordinator's keys");
        }
    }
    let log = std::fs::File::create(dir.join("log")).expect("log");
    let child = Command::new(exe)
        .args(["--log-level", "warn", "coordinator", "--data-dir"])
        .arg(dir)
        .args(["--catalog", url, "--listen", &format!("127.0.0.1:{}", free_port())])
        // The simulated hosts never heartbeat to it: count them online (no repair of the
        // whole catalog), and run the checker once, at start.
        .args(["--offline-after", "3650d", "--checker-interval", "1h"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start scatter coordinator");
    let url_file = dir.join("url");
    let started = Instant::now();
    while !url_file.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the coordinator did not start; see {}/log",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let base = std::fs::read_to_string(&url_file).expect("url").trim().to_owned();
    Coordinator { child, base, dir: dir.to_owned() }
}

/// Waits until PostgreSQL runs no query but ours for 3 s in a row: the coordinators' first
/// background pass (it reads every shard once) is over.
fn wait_quiet(url: &str) {
    let mut c = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    let (started, mut quiet) = (Instant::now(), 0);
    while quiet < 3 && started.elapsed() < Duration::from_secs(300) {
        let busy: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid()
                 AND backend_type = 'client backend'",
                &[],
            )
            .expect("activity")
            .get(0);
        quiet = if busy == 0 { quiet + 1 } else { 0 };
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Signed requests from `CLIENTS` concurrent clients, each bound to one coordinator, for
/// `secs` after a 2 s warm-up: a list of a random directory and a locate of one random
/// chunk, alternating. Returns (requests done, errors, latencies).
fn load(coordinators: &[Coordinator], grid: &Grid, secs: u64) -> (u64, u64, Stats) {
    let fingerprint = {
        let text = std::fs::read_to_string(coordinators[0].dir.join("join-token")).expect("join token");
        let token: scatter_net::Token = text.trim().parse().expect("a token");
        token.ca().expect("a TLS grid's token names its CA")
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let key = device_key();
        let (warm, until) = (Instant::now() + Duration::from_secs(2), Instant::now() + Duration::from_secs(2 + secs));
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|t| {
                let http = scatter_net::http_client(Some(fingerprint), scatter_net::Peer::Coordinator)
                    .timeout(Duration::from_secs(30))
                    .build()
                    .expect("http client");
                let base = coordinators[t % coordinators.len()].base.clone();
                let (key, device, filled) = (key.clone(), grid.device, grid.filled);
                tokio::spawn(async move {
                    let mut rng = rand::rngs::StdRng::from_entropy();
                    let (mut errors, mut st) = (0u64, Stats::default());
                    let mut i = 0u64;
                    while Instant::now() < until {
                        i += 1;
                        let (method, target, body) = if i.is_multiple_of(2) {
                            let dir = dir_name(rng.gen_range(0..filled / PER_DIR));
                            (reqwest::Method::GET, format!("/v1/objects?prefix={dir}/"), Vec::new())
                        } else {
                            let id = chunk_id(rng.gen_range(0..filled), rng.gen_range(0..CHUNKS) as u8);
                            let body =
                                serde_json::to_vec(&LocateRequest { chunks: vec![id], read: true }).expect("json");
                            (reqwest::Method::POST, "/v1/chunks/locate".to_owned(), body)
                        };
                        let request = Request { method: method.as_str(), target: &target };
                        let started = Instant::now();
                        let credential = Credential::new(device, unix_now() + 60, &body)
                            .sign(&key, &fingerprint.0, request)
                            .expect("sign a credential");
                        let mut req = http
                            .request(method, format!("{base}{target}"))
                            .header("authorization", format!("Scatter {credential}"));
                        if !body.is_empty() {
                            req = req.header("content-type", "application/json").body(body);
                        }
                        let ok = match req.send().await {
                            Ok(resp) => resp.status().is_success() && resp.bytes().await.is_ok(),
                            Err(_) => false,
                        };
                        if started < warm {
                            continue;
                        }
                        match ok {
                            true => st.samples.push(started.elapsed()),
                            false => errors += 1,
                        }
                    }
                    (errors, st)
                })
            })
            .collect();
        let (mut errors, mut all) = (0, Stats::default());
        for t in tasks {
            let (e, st) = t.await.expect("a client task");
            errors += e;
            all.samples.extend(st.samples);
        }
        (all.samples.len() as u64, errors, all)
    })
}

fn rps(pg: &scatter_pgtest::TestPg, exe: &Path, grid: &Grid, work: &Path, secs: u64) -> Vec<RpsRow> {
    let url = pg.url();
    let mut coordinators = vec![start_coordinator(exe, &url, &work.join("c1"), None)];
    let mut rows = Vec::new();
    for n in [1, 3] {
        while coordinators.len() < n {
            let dir = work.join(format!("c{}", coordinators.len() + 1));
            let first = coordinators[0].dir.clone();
            coordinators.push(start_coordinator(exe, &url, &dir, Some(&first)));
        }
        eprintln!("  {n} coordinator(s): waiting for their first background pass, then {secs} s of requests");
        wait_quiet(&url);
        let pids: Vec<u32> = coordinators.iter().map(|c| c.child.id()).collect();
        let before = (
            pids.iter().map(|p| ticks(*p)).sum::<u64>(),
            tree_ticks(pg.pid()),
            ticks(std::process::id()),
            machine_ticks(),
        );
        let started = Instant::now();
        let (done, errors, st) = load(&coordinators, grid, secs);
        let elapsed = started.elapsed().as_secs_f64() - 2.0;
        let after = (
            pids.iter().map(|p| ticks(*p)).sum::<u64>(),
            tree_ticks(pg.pid()),
            ticks(std::process::id()),
            machine_ticks(),
        );
        let all = (after.3 - before.3).max(1) as f64;
        rows.push(RpsRow {
            coordinators: n,
            rps: done as f64 / elapsed,
            p50: st.pct(50.0),
            p99: st.pct(99.0),
            errors,
            cpu: (
                (after.0 - before.0) as f64 / all,
                (after.1 - before.1) as f64 / all,
                (after.2 - before.2) as f64 / all,
            ),
        });
    }
    rows
}

// ---------------------------------------------------------------------------------------
// Report.

fn report(r: &Results, out: &mut impl std::io::Write) -> std::io::Result<()> {
    let settings = match r.backend {
        Backend::Sqlite => "WAL, synchronous=FULL, the store's settings".to_owned(),
        Backend::Postgres => format!("private server, {}", PG_SETTINGS.join(" ")),
    };
    writeln!(out, "\n### {} ({settings})\n", r.backend.name())?;
    let sizes: Vec<String> = r.sizes.iter().map(|(n, ..)| fmt_count(*n)).collect();
    write!(out, "| operation |")?;
    for s in &sizes {
        write!(out, " {s} p50 | {s} p99 |")?;
    }
    writeln!(out, " p50 {}/{} |", sizes.last().map(String::as_str).unwrap_or(""), sizes[0])?;
    writeln!(out, "|---|{}---|", "---|---|".repeat(sizes.len()))?;
    let ops: Vec<&'static str> = r.sizes[0].3.keys().copied().collect();
    for op in ops {
        let label = op.split_once(' ').map(|(_, l)| l).unwrap_or(op);
        write!(out, "| {label} |")?;
        for (_, _, _, stats) in &r.sizes {
            let st = &stats[op];
            write!(out, " {} | {} |", fmt_dur(st.pct(50.0)), fmt_dur(st.pct(99.0)))?;
        }
        let first = r.sizes[0].3[op].pct(50.0).as_secs_f64();
        let last = r.sizes.last().map(|s| s.3[op].pct(50.0).as_secs_f64()).unwrap_or(first);
        writeln!(out, " {:.2}× |", last / first.max(1e-9))?;
    }
    let notes: Vec<String> = r.sizes[0]
        .3
        .iter()
        .filter(|(_, st)| !st.note.is_empty())
        .map(|(op, _)| {
            let label = op.split_once(' ').map(|(_, l)| l).unwrap_or(op);
            let per: Vec<String> =
                r.sizes.iter().map(|(n, _, _, s)| format!("{}: {}", fmt_count(*n), s[op].note)).collect();
            format!("{label}: {}", per.join(", "))
        })
        .collect();
    writeln!(out)?;
    for n in notes {
        writeln!(out, "- {n}")?;
    }
    let fills: Vec<String> = r
        .sizes
        .iter()
        .map(|(n, took, bytes, _)| {
            format!(
                "{}: {:.0} s, catalog {:.2} GiB",
                fmt_count(*n),
                took.as_secs_f64(),
                *bytes as f64 / (1u64 << 30) as f64
            )
        })
        .collect();
    writeln!(out, "- fill steps: {}", fills.join("; "))?;
    if let Some((n, ..)) = r.sizes.last() {
        writeln!(out, "\nSeveral threads at once, {} packs:\n", fmt_count(*n))?;
        writeln!(out, "| threads | ops/s | p50 | p99 |\n|---|---|---|---|")?;
        for (what, rate, p50, p99) in &r.concurrency {
            writeln!(out, "| {what} | {rate:.0} | {} | {} |", fmt_dur(*p50), fmt_dur(*p99))?;
        }
    }
    if !r.rps.is_empty() {
        let n = r.sizes.last().map(|s| s.0).unwrap_or(0);
        writeln!(
            out,
            "\nSigned requests through `scatter coordinator` processes on this PostgreSQL ({} packs), {CLIENTS} clients:\n",
            fmt_count(n)
        )?;
        writeln!(out, "| coordinators | requests/s | p50 | p99 | errors | CPU: coordinators / PostgreSQL / clients |")?;
        writeln!(out, "|---|---|---|---|---|---|")?;
        for row in &r.rps {
            writeln!(
                out,
                "| {} | {:.0} | {} | {} | {} | {:.0}% / {:.0}% / {:.0}% |",
                row.coordinators,
                row.rps,
                fmt_dur(row.p50),
                fmt_dur(row.p99),
                row.errors,
                row.cpu.0 * 100.0,
                row.cpu.1 * 100.0,
                row.cpu.2 * 100.0
            )?;
        }
    }
    Ok(())
}

fn main() {
    let a = args();
    let started = Instant::now();
    let mut stdout = std::io::stdout();
    for &backend in &a.backends {
        let results = run_backend(backend, &a);
        report(&results, &mut stdout).expect("write the report");
        stdout.flush().expect("flush");
    }
    eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
}
