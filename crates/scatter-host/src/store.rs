//! Shards on disk: one file per shard, named by its BLAKE3 hash.
//!
//! Layout under the data directory: `shards/ab/abcdef…` (two-level fan-out), `tmp/` for
//! uploads in progress, `quarantine/` for files that failed their hash. Writes go temp file →
//! fsync → rename → fsync directory, so a shard is either absent or complete under its name,
//! even across a crash. Shard files are written and read around the page cache
//! (`scatter-disk`): they are fsynced at once and read back rarely. Every read re-hashes the
//! file; a mismatch moves it to quarantine and returns [`ShardError::Corrupt`], never the
//! bytes.

use bytes::Bytes;
use scatter_disk::{AlignedBuf, DirectFile};
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use scatter_core::ShardId;

/// A shard operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// No such shard here.
    #[error("shard {0} is not stored on this host")]
    NotFound(ShardId),
    /// The stored bytes no longer match the shard's hash; the file was quarantined.
    #[error("shard {0} is corrupt on this host's disk (hash mismatch); it was quarantined, read another shard")]
    Corrupt(ShardId),
    /// The uploaded bytes do not hash to the shard id.
    #[error("the uploaded bytes do not match shard id {0}; nothing was stored")]
    HashMismatch(ShardId),
    /// Storing would exceed the capacity this host offers.
    #[error("this host is full: storing {need} more bytes would exceed its offered capacity ({used} of {capacity} bytes used)")]
    Full {
        /// Bytes asked for.
        need: u64,
        /// Bytes in use.
        used: u64,
        /// Offered capacity.
        capacity: u64,
    },
    /// The disk itself has no room.
    #[error("this host's disk is full; nothing was stored")]
    DiskFull,
    /// A requested range lies outside the shard.
    #[error("range {start}..{end} is outside shard {shard} ({len} bytes)")]
    BadRange {
        /// Shard.
        shard: ShardId,
        /// Range start.
        start: u64,
        /// Range end.
        end: u64,
        /// Shard length.
        len: u64,
    },
    /// Other I/O failure.
    #[error("disk I/O failed: {0}")]
    Io(std::io::Error),
    /// A conditional delete found the copy written under another grant too, or could not
    /// tell (written before this process started): the shard is kept.
    #[error("shard {0} was kept: this host cannot tell that only the named upload wrote it")]
    Kept(ShardId),
    /// The placement this upload came under was given back (its deletion already asked for
    /// while the upload was on its way): nothing was stored.
    #[error("the placement of shard {0} was given back before its upload arrived; nothing was stored")]
    Voided(ShardId),
}

impl From<std::io::Error> for ShardError {
    fn from(e: std::io::Error) -> Self {
        if e.raw_os_error() == Some(28) {
            ShardError::DiskFull
        } else {
            ShardError::Io(e)
        }
    }
}

/// How long a shard file's writers are remembered after its last upload. Put grants and the
/// placements behind them lapse after 10 minutes, and the coordinator asks for an abandoned
/// upload's deletion within seconds of that: an hour leaves room for a coordinator or a
/// host that was away, and a copy whose writers are forgotten is simply kept (the orphan
/// sweep deletes it later).
const WRITERS_KEPT: Duration = Duration::from_secs(3600);
/// Uploads of one file remembered at most; past that its writers count as unknown.
const MAX_WRITERS: usize = 8;
/// Given-back placements remembered at most (see [`Uploads::voided`]); past that the oldest
/// are forgotten, and an upload arriving that late is left to the orphan sweep.
const MAX_VOIDED: usize = 65_536;

/// The put grants (hashes) of every upload that wrote a file since this process created it.
#[derive(Debug)]
struct Writers {
    grants: Vec<[u8; 32]>,
    last: Instant,
}

/// What this process knows of uploads, under one lock so that an upload's rename and a
/// conditional delete of the same shard happen one after the other.
#[derive(Debug, Default)]
struct Uploads {
    /// Who wrote the files this process created: a file has an entry only while every
    /// upload that wrote it is known.
    writers: HashMap<ShardId, Writers>,
    /// Put grants (hash prefixes) whose conditional delete came before their upload's file:
    /// the client gave the placement back while the upload was still on its way (Ctrl-C,
    /// a failed pack). Such an upload is refused when it lands, or it would stay behind
    /// until the orphan sweep. Kept as long as a put grant can live ([`WRITERS_KEPT`]).
    voided: HashMap<(ShardId, [u8; 16]), Instant>,
}

/// The shard files of one host.
#[derive(Debug)]
pub struct DiskStore {
    root: PathBuf,
    capacity: u64,
    used: AtomicU64,
    /// Who wrote the files this process created and which uploads were given back, for
    /// conditional deletes.
    uploads: Mutex<Uploads>,
    /// Shards whose files the last scrub of them could not read: left out of the inventory
    /// until a scrub reads them whole again.
    unreadable: Mutex<HashSet<ShardId>>,
}

impl DiskStore {
    /// Opens the store under `root`, creating its folders, dropping leftover uploads and
    /// counting the bytes held.
    ///
    /// All 256 fan-out folders of `shards/` are made here, once, and made durable: a put then
    /// never creates a folder. Creating one per early put cost a fresh grid's hosts about 6%
    /// of their CPU in a 1 GiB backup (ext4 searches its bitmaps for every new inode).
    pub fn open(root: &Path, capacity: u64) -> std::io::Result<Self> {
        for d in ["shards", "tmp", "quarantine"] {
            std::fs::create_dir_all(root.join(d))?;
        }
        let shards = root.join("shards");
        let mut made = false;
        for fan in 0..=255u8 {
            let dir = shards.join(format!("{fan:02x}"));
            if !dir.is_dir() {
                std::fs::create_dir(&dir)?;
                made = true;
            }
        }
        if made {
            std::fs::File::open(&shards)?.sync_all()?;
        }
        for entry in std::fs::read_dir(root.join("tmp"))? {
            let _ = std::fs::remove_file(entry?.path());
        }
        let mut used = 0;
        for fan in std::fs::read_dir(root.join("shards"))? {
            let fan = fan?;
            if fan.file_type()?.is_dir() {
                for f in std::fs::read_dir(fan.path())? {
                    used += f?.metadata()?.len();
                }
            }
        }
        Ok(Self {
            root: root.to_owned(),
            capacity,
            used: AtomicU64::new(used),
            uploads: Mutex::default(),
            unreadable: Mutex::default(),
        })
    }

    /// Bytes of shards held.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The capacity this host offers.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Free bytes on the disk holding the store.
    pub fn disk_free(&self) -> u64 {
        fs4::available_space(&self.root).unwrap_or(0)
    }

    fn path(&self, id: &ShardId) -> PathBuf {
        let hex = id.to_string();
        self.root.join("shards").join(&hex[..2]).join(hex)
    }

    /// Every shard held, with its age in seconds (since its file was written).
    pub fn inventory(&self) -> std::io::Result<Vec<(ShardId, u64)>> {
        let now = std::time::SystemTime::now();
        let mut out = Vec::new();
        for fan in std::fs::read_dir(self.root.join("shards"))? {
            let fan = fan?;
            if !fan.file_type()?.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(fan.path())? {
                let f = f?;
                let Some(id) = f.file_name().to_str().and_then(|n| n.parse::<ShardId>().ok()) else { continue };
                let age = f
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                out.push((id, age));
            }
        }
        Ok(out)
    }

    /// Re-hashes one shard; one whose bytes are wrong is quarantined. Returns whether it can
    /// be served intact: one that cannot be read (a failing disk) is kept where it is, in
    /// case the error passes, but is not intact either.
    pub fn scrub(&self, id: &ShardId) -> bool {
        let result = self.read(id, None);
        let mut unreadable = self.unreadable.lock().unwrap_or_else(|p| p.into_inner());
        match &result {
            Err(ShardError::Io(_)) => unreadable.insert(*id),
            _ => unreadable.remove(id),
        };
        drop(unreadable);
        match result {
            Ok(_) => true,
            Err(ShardError::Corrupt(_)) => {
                tracing::warn!(shard = %id, "scrub found a corrupt shard; quarantined, the grid will repair it");
                false
            }
            Err(ShardError::NotFound(_)) => false,
            Err(e) => {
                tracing::warn!(shard = %id, error = %e, "scrub could not read a shard; not reported as held, the grid will repair it");
                false
            }
        }
    }

    /// One round of the scrub, from the `from`-th shard (in id order, wrapping around): re-hashes
    /// shards until `budget()` bytes were read (asked again before each shard, so a round can
    /// be cut short when transfers start) or every shard was read once. Corrupt shards are
    /// quarantined. Returns the inventory without them and those that could not be read, and
    /// where the next round starts.
    pub fn scrub_round(&self, from: usize, budget: impl Fn() -> u64) -> std::io::Result<(Vec<(ShardId, u64)>, usize)> {
        let mut inv = self.inventory()?;
        inv.sort_by_key(|(id, _)| *id);
        let mut next = from;
        let mut scrubbed = 0u64;
        let mut bad = Vec::new();
        while next - from < inv.len() && scrubbed < budget() {
            let (id, _) = inv[next % inv.len()];
            if !self.scrub(&id) {
                bad.push(id);
            }
            scrubbed += self.shard_len(&id).unwrap_or(1 << 20).max(1);
            next += 1;
        }
        let unreadable = self.unreadable.lock().unwrap_or_else(|p| p.into_inner());
        inv.retain(|(id, _)| !bad.contains(id) && !unreadable.contains(id));
        Ok((inv, next))
    }

    /// The size of a stored shard.
    pub fn shard_len(&self, id: &ShardId) -> Option<u64> {
        std::fs::metadata(self.path(id)).ok().map(|m| m.len())
    }

    /// Whether the shard is stored.
    pub fn contains(&self, id: &ShardId) -> bool {
        self.path(id).exists()
    }

    fn uploads(&self) -> std::sync::MutexGuard<'_, Uploads> {
        self.uploads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores a shard whose bytes are `upload`'s, after checking them against `id` and the
    /// room left: temp file (written around the page cache) → fsync → rename → fsync
    /// directory. On any failure nothing is left behind. `grant` is the hash of the put grant
    /// the upload came under, remembered for conditional deletes
    /// ([`Self::delete_if_written_by`]).
    pub fn put(&self, id: ShardId, upload: Upload, grant: Option<[u8; 32]>) -> Result<(), ShardError> {
        let (mut data, hash) = upload.finish();
        if hash.as_bytes() != id.as_bytes() {
            return Err(ShardError::HashMismatch(id));
        }
        let len = data.len() as u64;
        let used = self.used();
        // Rewriting a shard already here (an upload proving possession) takes no more room.
        if !self.contains(&id) && used + len > self.capacity {
            return Err(ShardError::Full { need: len, used, capacity: self.capacity });
        }
        let tmp = TempFile(self.root.join("tmp").join(format!("{id}.{}", rand_suffix())));
        let mut file = DirectFile::create(&tmp.0)?;
        file.append(&mut data)?;
        file.finish()?.sync_all()?;
        let dest = self.path(&id);
        let dir = dest.parent().map(Path::to_owned).unwrap_or_else(|| self.root.clone());
        let existed = {
            // Held from the existence check to the record of the writer: a conditional delete
            // of this shard sees the file and its writers as one.
            let mut uploads = self.uploads();
            if let Some(g) = grant {
                if uploads.voided.contains_key(&(id, prefix(&g))) {
                    return Err(ShardError::Voided(id));
                }
            }
            let existed = dest.exists();
            if let Err(e) = std::fs::rename(&tmp.0, &dest) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(e.into());
                }
                // Its fan-out folder was removed behind the host's back: make it again.
                std::fs::create_dir_all(&dir)?;
                std::fs::rename(&tmp.0, &dest)?;
            }
            note_writer(&mut uploads.writers, id, existed, grant);
            existed
        };
        std::fs::File::open(&dir)?.sync_all()?;
        if !existed {
            self.used.fetch_add(len, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Reads a whole shard (`range` `None`) after checking its hash, or `range` of it.
    ///
    /// A range is read alone (its disk blocks, not the file) and not hashed here: its reader
    /// authenticates every chunk in it (AES-GCM tag and keyed chunk id), and one that fails
    /// falls back to whole-shard reads, which are checked here and quarantine a bad shard
    /// (and scrubs check every shard in turn). Reading and hashing the whole shard for every
    /// range made each small ranged read cost a 4 MiB read: a 10,000-file restore after an
    /// incremental backup read about 1 GiB to restore 320 MiB.
    pub fn read(&self, id: &ShardId, range: Option<Range<u64>>) -> Result<Bytes, ShardError> {
        let path = self.path(id);
        let not_found = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => ShardError::NotFound(*id),
            _ => e.into(),
        };
        if let Some(r) = range {
            return scatter_disk::read_range(&path, r.clone()).map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => ShardError::BadRange {
                    shard: *id,
                    start: r.start,
                    end: r.end,
                    len: self.shard_len(id).unwrap_or(0),
                },
                _ => not_found(e),
            });
        }
        let data = scatter_disk::read(&path).map_err(not_found)?;
        if blake3::hash(&data).as_bytes() != id.as_bytes() {
            self.quarantine(id, &path, data.len() as u64);
            return Err(ShardError::Corrupt(*id));
        }
        Ok(data)
    }

    fn quarantine(&self, id: &ShardId, path: &Path, len: u64) {
        let dest = self.root.join("quarantine").join(format!("{id}.{}", rand_suffix()));
        self.uploads().writers.remove(id);
        if std::fs::rename(path, &dest).is_ok() {
            self.used.fetch_sub(len.min(self.used()), Ordering::Relaxed);
        }
        tracing::warn!(shard = %id, "shard failed its hash check and was quarantined");
    }

    /// Deletes a shard. Deleting an absent shard is not an error.
    pub fn delete(&self, id: &ShardId) -> Result<bool, ShardError> {
        let mut uploads = self.uploads();
        uploads.writers.remove(id);
        self.remove(id)
    }

    /// Deletes a shard only if every upload that wrote its file came under the put grant whose
    /// hash starts with `grant`, as this process saw them; otherwise keeps it
    /// ([`ShardError::Kept`]). An absent shard is not an error (false). What the coordinator
    /// uses for an abandoned upload: another account's upload of the same shard since, which
    /// it may commit, keeps the file.
    ///
    /// The grant is void from now on: an upload under it still on its way is refused when it
    /// lands ([`ShardError::Voided`]), so a placement given back while its upload was in
    /// flight leaves nothing behind either.
    pub fn delete_if_written_by(&self, id: &ShardId, grant: &[u8; 16]) -> Result<bool, ShardError> {
        let mut uploads = self.uploads();
        void(&mut uploads.voided, *id, *grant);
        if !self.path(id).exists() {
            return Ok(false);
        }
        let only = uploads.writers.get(id).is_some_and(|w| w.grants.iter().all(|g| g[..16] == grant[..]));
        if !only {
            return Err(ShardError::Kept(*id));
        }
        uploads.writers.remove(id);
        self.remove(id)
    }

    fn remove(&self, id: &ShardId) -> Result<bool, ShardError> {
        let path = self.path(id);
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        match std::fs::remove_file(&path) {
            Ok(()) => {
                self.used.fetch_sub(len.min(self.used()), Ordering::Relaxed);
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Flips a byte of a stored shard, for tests of corruption handling.
    #[cfg(test)]
    fn corrupt_for_test(&self, id: &ShardId) -> std::io::Result<()> {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().read(true).write(true).open(self.path(id))?;
        let mut b = [0u8; 1];
        f.read_exact(&mut b)?;
        f.seek(SeekFrom::Start(0))?;
        f.write_all(&[b[0] ^ 0xff])
    }
}

/// The bytes of an upload on their way to [`DiskStore::put`], in a buffer aligned for direct
/// I/O and hashed as they arrive: each piece is hashed while it is still in the cache from
/// its copy, not read back whole afterwards, and the hash always covers exactly the bytes
/// held (the fields are private).
pub struct Upload {
    data: AlignedBuf,
    hasher: blake3::Hasher,
}

impl Upload {
    /// An empty upload that takes at most `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        Self { data: AlignedBuf::with_limit(limit), hasher: blake3::Hasher::new() }
    }

    /// Appends `bytes`; false (and nothing appended) past the limit.
    pub fn extend(&mut self, bytes: &[u8]) -> bool {
        if !self.data.extend(bytes) {
            return false;
        }
        self.hasher.update(bytes);
        true
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn finish(self) -> (AlignedBuf, blake3::Hash) {
        let hash = self.hasher.finalize();
        (self.data, hash)
    }
}

/// Records an upload of `id` under `grant` (after its rename); `existed`: the file was there
/// before. A file this process did not create, or written under an unknown grant, has
/// unknown writers (no entry). Entries past [`WRITERS_KEPT`] are dropped now and then.
fn note_writer(writers: &mut HashMap<ShardId, Writers>, id: ShardId, existed: bool, grant: Option<[u8; 32]>) {
    let now = Instant::now();
    match (existed, grant) {
        (false, Some(g)) => {
            writers.insert(id, Writers { grants: vec![g], last: now });
        }
        (true, Some(g)) => {
            if let Some(w) = writers.get_mut(&id) {
                if w.grants.len() < MAX_WRITERS {
                    w.grants.push(g);
                    w.last = now;
                } else {
                    writers.remove(&id);
                }
            }
        }
        (_, None) => {
            writers.remove(&id);
        }
    }
    // Forgetting old entries now and then bounds the map by the uploads of the last hour.
    static PUTS: AtomicU64 = AtomicU64::new(0);
    if PUTS.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
        writers.retain(|_, w| now.duration_since(w.last) < WRITERS_KEPT);
    }
}

/// The first 16 bytes of a put grant's hash: what a conditional delete names it by.
fn prefix(grant: &[u8; 32]) -> [u8; 16] {
    let mut p = [0u8; 16];
    p.copy_from_slice(&grant[..16]);
    p
}

/// Remembers that uploads of `id` under the put grant `grant` are void, forgetting entries
/// older than any put grant can be and, past [`MAX_VOIDED`], the oldest.
fn void(voided: &mut HashMap<(ShardId, [u8; 16]), Instant>, id: ShardId, grant: [u8; 16]) {
    let now = Instant::now();
    if voided.len() >= MAX_VOIDED {
        voided.retain(|_, at| now.duration_since(*at) < WRITERS_KEPT);
        if voided.len() >= MAX_VOIDED {
            let mut ages: Vec<Instant> = voided.values().copied().collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            voided.retain(|_, at| *at > cut);
        }
    }
    voided.insert((id, grant), now);
}

fn rand_suffix() -> String {
    use std::sync::atomic::AtomicU32;
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A temp file that is removed when dropped; after a rename there is nothing left to remove.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(capacity: u64) -> (tempfile::TempDir, DiskStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = DiskStore::open(dir.path(), capacity).expect("open");
        (dir, s)
    }

    fn put(s: &DiskStore, data: &[u8]) -> Result<ShardId, ShardError> {
        let id = ShardId::of(data);
        s.put(id, buf(data), None)?;
        Ok(id)
    }

    fn buf(data: &[u8]) -> Upload {
        let mut b = Upload::with_limit(data.len());
        // In pieces, as uploads arrive.
        for piece in data.chunks(3) {
            assert!(b.extend(piece));
        }
        b
    }

    #[test]
    fn stores_reads_ranges_and_deletes() {
        let (_d, s) = store(1 << 20);
        let id = put(&s, b"hello world").expect("put");
        assert_eq!(s.used(), 11);
        assert_eq!(s.read(&id, None).expect("read"), &b"hello world"[..]);
        assert_eq!(s.read(&id, Some(6..11)).expect("range"), &b"world"[..]);
        assert!(matches!(s.read(&id, Some(6..12)), Err(ShardError::BadRange { .. })));
        assert!(s.delete(&id).expect("delete"));
        assert_eq!(s.used(), 0);
        assert!(matches!(s.read(&id, None), Err(ShardError::NotFound(_))));
        assert!(matches!(s.read(&id, Some(0..1)), Err(ShardError::NotFound(_))));
    }

    #[test]
    fn wrong_bytes_are_not_stored() {
        let (d, s) = store(1 << 20);
        let id = ShardId::of(b"expected");
        assert!(matches!(s.put(id, buf(b"other"), None), Err(ShardError::HashMismatch(_))));
        assert!(!s.contains(&id));
        assert_eq!(std::fs::read_dir(d.path().join("tmp")).expect("tmp").count(), 0);
    }

    #[test]
    fn a_conditional_delete_takes_only_a_copy_its_grant_alone_wrote() {
        let (_d, s) = store(1 << 20);
        let (a, b) = ([1u8; 32], [2u8; 32]);
        // Written under a alone: deleted; then absent.
        let id = ShardId::of(b"one");
        s.put(id, buf(b"one"), Some(a)).expect("put");
        assert!(matches!(s.delete_if_written_by(&id, &prefix(&b)), Err(ShardError::Kept(_))));
        assert!(s.delete_if_written_by(&id, &prefix(&a)).expect("delete"));
        assert!(!s.delete_if_written_by(&id, &prefix(&a)).expect("absent"));
        // Written under c, then d (another account's upload it may commit): kept for either.
        // (Grants named by a conditional delete are void from then on: fresh ones here.)
        let (c, d) = ([3u8; 32], [4u8; 32]);
        s.put(id, buf(b"one"), Some(c)).expect("put");
        s.put(id, buf(b"one"), Some(d)).expect("again");
        assert!(matches!(s.delete_if_written_by(&id, &prefix(&c)), Err(ShardError::Kept(_))));
        assert!(matches!(s.delete_if_written_by(&id, &prefix(&d)), Err(ShardError::Kept(_))));
        assert!(s.contains(&id));
        // A file from before this process (reopened): its writers are unknown, so it is kept.
        let other = ShardId::of(b"two");
        s.put(other, buf(b"two"), Some(a)).expect("put");
        let again = DiskStore::open(&s.root, 1 << 20).expect("reopen");
        assert!(matches!(again.delete_if_written_by(&other, &prefix(&a)), Err(ShardError::Kept(_))));
        let e = [5u8; 32];
        again.put(other, buf(b"two"), Some(e)).expect("rewritten");
        assert!(matches!(again.delete_if_written_by(&other, &prefix(&e)), Err(ShardError::Kept(_))));
    }

    #[test]
    fn an_upload_landing_after_its_placement_was_given_back_is_refused() {
        let (d, s) = store(1 << 20);
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let id = ShardId::of(b"late");
        // The conditional delete comes first (nothing there yet), the upload after it.
        assert!(!s.delete_if_written_by(&id, &prefix(&a)).expect("absent"));
        assert!(matches!(s.put(id, buf(b"late"), Some(a)), Err(ShardError::Voided(_))));
        assert!(!s.contains(&id));
        assert_eq!(s.used(), 0);
        assert_eq!(std::fs::read_dir(d.path().join("tmp")).expect("tmp").count(), 0);
        // Another placement of the same shard is not affected.
        s.put(id, buf(b"late"), Some(b)).expect("another grant");
        assert!(s.contains(&id));
        // Nor is a copy another upload already wrote: it is kept, and the void one refused.
        assert!(matches!(s.delete_if_written_by(&id, &prefix(&a)), Err(ShardError::Kept(_))));
        assert!(matches!(s.put(id, buf(b"late"), Some(a)), Err(ShardError::Voided(_))));
        assert!(s.contains(&id));
    }

    #[test]
    fn voided_grants_are_bounded() {
        let mut voided = HashMap::new();
        for n in 0..(MAX_VOIDED as u32 + 10) {
            let mut g = [0u8; 16];
            g[..4].copy_from_slice(&n.to_le_bytes());
            void(&mut voided, ShardId::of(b"x"), g);
        }
        assert!(voided.len() <= MAX_VOIDED);
    }

    #[test]
    fn corruption_is_detected_and_quarantined() {
        let (d, s) = store(1 << 20);
        let id = put(&s, b"precious").expect("put");
        s.corrupt_for_test(&id).expect("corrupt");
        // A range is handed out as it is on disk: its reader authenticates it.
        assert_eq!(s.read(&id, Some(0..8)).expect("range").len(), 8);
        assert!(matches!(s.read(&id, None), Err(ShardError::Corrupt(_))));
        assert!(!s.contains(&id));
        assert_eq!(std::fs::read_dir(d.path().join("quarantine")).expect("q").count(), 1);
    }

    #[test]
    fn capacity_is_enforced_and_survives_reopen() {
        let (d, s) = store(10);
        put(&s, b"12345678").expect("fits");
        assert!(matches!(put(&s, b"abc"), Err(ShardError::Full { .. })));
        let reopened = DiskStore::open(d.path(), 10).expect("reopen");
        assert_eq!(reopened.used(), 8);
    }

    #[test]
    fn a_removed_fan_out_folder_is_made_again() {
        let (d, s) = store(1 << 20);
        let id = ShardId::of(b"first");
        let fan = d.path().join("shards").join(&id.to_string()[..2]);
        assert!(fan.is_dir(), "fan-out folders exist from the start");
        std::fs::remove_dir(&fan).expect("remove the empty folder");
        assert_eq!(put(&s, b"first").expect("put"), id);
        assert_eq!(s.read(&id, None).expect("read"), &b"first"[..]);
    }

    #[test]
    fn a_scrub_round_stops_at_its_budget_and_finds_corruption() {
        let (_d, s) = store(1 << 20);
        let ids: Vec<ShardId> = (0..8u8).map(|i| put(&s, &[i; 1000]).expect("put")).collect();
        let (inv, next) = s.scrub_round(0, || 3000).expect("round");
        assert_eq!((inv.len(), next), (8, 3), "three shards of 1000 bytes fill a 3000-byte budget");

        // The budget is asked before each shard: a round is cut short when it shrinks.
        let asked = std::cell::Cell::new(0);
        let shrinking = || {
            asked.set(asked.get() + 1);
            if asked.get() <= 2 {
                u64::MAX
            } else {
                0
            }
        };
        assert_eq!(s.scrub_round(3, shrinking).expect("round").1, 5);

        // A whole pass reads every shard once, whatever the budget, and drops a bad one.
        let mut sorted = ids.clone();
        sorted.sort();
        s.corrupt_for_test(&sorted[6]).expect("corrupt");
        let (inv, next) = s.scrub_round(5, || u64::MAX).expect("round");
        assert_eq!(next, 13, "one pass, wrapping around");
        assert_eq!(inv.len(), 7);
        assert!(!inv.iter().any(|(id, _)| *id == sorted[6]) && !s.contains(&sorted[6]), "quarantined");
    }

    #[test]
    fn a_shard_the_disk_cannot_read_is_not_reported_as_held() {
        let (_d, s) = store(1 << 20);
        let ids: Vec<ShardId> = (0..3u8).map(|i| put(&s, &[i; 1000]).expect("put")).collect();
        // A read that fails (here: a directory where the file was; on a failing disk, EIO)
        // is not a hash mismatch, but the host cannot serve the shard either: it must not be
        // reported as held, or the grid counts on a copy that is not there.
        let path = s.path(&ids[1]);
        std::fs::remove_file(&path).expect("remove");
        std::fs::create_dir(&path).expect("a directory in its place");
        let (inv, _) = s.scrub_round(0, || u64::MAX).expect("round");
        assert_eq!(inv.len(), 2, "{inv:?}");
        assert!(!inv.iter().any(|(id, _)| *id == ids[1]));
        // Nor in the rounds that do not read it again.
        let mut sorted = ids.clone();
        sorted.sort();
        let other = sorted.iter().position(|id| *id == ids[1]).expect("listed") + 1;
        let (inv, _) = s.scrub_round(other, || 1).expect("a round of one other shard");
        assert!(!inv.iter().any(|(id, _)| *id == ids[1]) && inv.len() == 2, "{inv:?}");
        // Left where it is: a disk error may pass, and the next scrub of it says so.
        std::fs::remove_dir(&path).expect("remove the directory");
        std::fs::write(&path, [1u8; 1000]).expect("the shard readable again");
        let (inv, _) = s.scrub_round(0, || u64::MAX).expect("round");
        assert_eq!(inv.len(), 3, "{inv:?}");
    }
}
