//! The catalog: SQLite embedded in the coordinator's data directory, or PostgreSQL shared
//! by several coordinators, behind one type.
//!
//! Every write that makes data visible (a pack and its shards and chunks; an object and its
//! chunk references) is one transaction. The SQL is kept portable (no SQLite-only syntax
//! `ON CONFLICT`, `RETURNING` and `CASE` rather than SQLite's `INSERT OR IGNORE/REPLACE`,
//! `last_insert_rowid` or two-argument `MAX`), and runs on SQLite or PostgreSQL through
//! [`sql`], which bridges what still differs: the DDL's types, `?N` parameters and a column
//! named `user` (reserved in PostgreSQL).

use std::path::Path;

use scatter_core::{ChunkId, HostId, PackId, ShardId, UserId};
use scatter_proto::api::{ChunkEntry, StoredShard};

/// A statement's parameters, bound in order to `?1`, `?2`, ….
macro_rules! params {
    ($($p:expr),* $(,)?) => {
        &[$(&$p as &dyn $crate::store::sql::Param),*] as &[&dyn $crate::store::sql::Param]
    };
}

mod backup;
#[cfg(any(test, feature = "bench"))]
mod bulk;
#[cfg(test)]
mod conformance;
mod dashboard;
mod devices;
mod events;
mod hosts;
mod leases;
mod locks;
mod metering;
mod names;
mod operators;
mod repair;
mod reservations;
pub mod sql;
#[cfg(test)]
pub(crate) mod testing;
mod transfer;
mod users;

pub use backup::{DelegateRow, SnapshotRow, Swept};
#[cfg(any(test, feature = "bench"))]
pub use bulk::{BulkObject, BulkPack};
pub use dashboard::{DashboardSession, Holder, Sample};
pub use devices::RecoveryBinding;
pub use events::{Event, Party};
pub use hosts::{Beat, NewHost, MAX_SERVED_PER_SEC};
pub use leases::Fence;
pub use locks::Expired;
pub use metering::{BillingError, Read};
pub use names::{GatewayName, NameHolder, NameRefusal, GATEWAY_NAMES_PER_ACCOUNT};
pub use repair::{AuditTarget, Deferred, DegradedPack, Health, Reconciled, ShardMove, ZoneCap};
pub use reservations::{Reservation, ReserveError, Reserved};
use sql::{Backend, Sql, SqlError};
pub use transfer::{Moved, TransferError};

const SCHEMA_VERSION: i64 = 27;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hosts (
    id INTEGER PRIMARY KEY,
    secret_hash BLOB NOT NULL,
    address TEXT NOT NULL,
    zone TEXT NOT NULL,
    capacity INTEGER NOT NULL,
    reported_used INTEGER NOT NULL DEFAULT 0,
    free INTEGER NOT NULL DEFAULT 0,
    last_seen INTEGER NOT NULL,
    joined INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'active',
    audits_passed INTEGER NOT NULL DEFAULT 0,
    audits_failed INTEGER NOT NULL DEFAULT 0,
    receipt_key BLOB,
    operator INTEGER,
    price INTEGER NOT NULL DEFAULT 0,
    egress_price INTEGER NOT NULL DEFAULT 0,
    bandwidth INTEGER NOT NULL DEFAULT 0,
    until INTEGER,
    online_secs INTEGER NOT NULL DEFAULT 0,
    served_bytes INTEGER NOT NULL DEFAULT 0,
    repairs_caused INTEGER NOT NULL DEFAULT 0,
    measured_bandwidth INTEGER NOT NULL DEFAULT 0,
    held_shards INTEGER NOT NULL DEFAULT 0,
    held_bytes INTEGER NOT NULL DEFAULT 0,
    inventory_ack INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS operators (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_hash BLOB NOT NULL UNIQUE,
    independent INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reservations (
    host INTEGER NOT NULL,
    shard BLOB NOT NULL,
    caller INTEGER NOT NULL,
    owner INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    grant_hash BLOB NOT NULL,
    k INTEGER NOT NULL,
    m INTEGER NOT NULL,
    per_domain INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    -- Placed under a placement policy: the pack keeps the zones its policy chose.
    narrowed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (host, shard, caller)
);
CREATE INDEX IF NOT EXISTS reservations_by_caller ON reservations(caller);
CREATE INDEX IF NOT EXISTS reservations_by_owner ON reservations(owner);
CREATE TABLE IF NOT EXISTS relocations (
    user INTEGER NOT NULL,
    chunk BLOB NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (user, chunk)
);
CREATE TABLE IF NOT EXISTS replays (
    user INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (user, nonce)
);
CREATE INDEX IF NOT EXISTS replays_by_expiry ON replays(expires);
CREATE TABLE IF NOT EXISTS leases (
    job TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    token INTEGER NOT NULL,
    expires INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    hash BLOB PRIMARY KEY,
    role TEXT NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    name TEXT NOT NULL DEFAULT '',
    quota INTEGER,
    owner INTEGER,
    trusted INTEGER NOT NULL DEFAULT 0,
    device_of INTEGER
);
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    role TEXT NOT NULL,
    public_key TEXT NOT NULL,
    device_key BLOB NOT NULL UNIQUE,
    created INTEGER NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    disabled INTEGER NOT NULL DEFAULT 0,
    quota INTEGER,
    owner INTEGER,
    trusted INTEGER NOT NULL DEFAULT 0,
    owner_key BLOB
);
CREATE TABLE IF NOT EXISTS devices (
    id INTEGER PRIMARY KEY,
    user INTEGER NOT NULL,
    device_key BLOB NOT NULL UNIQUE,
    name TEXT NOT NULL DEFAULT '',
    created INTEGER NOT NULL,
    revoked INTEGER,
    unproven INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS devices_by_user ON devices (user);
CREATE TABLE IF NOT EXISTS recovery (
    user INTEGER PRIMARY KEY,
    verifier BLOB NOT NULL UNIQUE,
    recipient TEXT NOT NULL,
    binding BLOB NOT NULL,
    escrow BLOB NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS usage_counts (
    user INTEGER NOT NULL,
    slot INTEGER NOT NULL,
    packs INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user, slot)
);
CREATE TABLE IF NOT EXISTS catalog_usage (
    user INTEGER NOT NULL,
    slot INTEGER NOT NULL,
    bytes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user, slot)
);
CREATE TABLE IF NOT EXISTS policies (
    user INTEGER PRIMARY KEY REFERENCES users(id),
    policy TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    user INTEGER NOT NULL REFERENCES users(id),
    wrapped_key BLOB NOT NULL,
    created INTEGER NOT NULL,
    expires INTEGER NOT NULL DEFAULT 0,
    opener INTEGER
);
CREATE INDEX IF NOT EXISTS sessions_by_opener ON sessions(user, opener, expires);
CREATE TABLE IF NOT EXISTS packs (
    id BLOB PRIMARY KEY,
    user INTEGER NOT NULL REFERENCES users(id),
    session INTEGER NOT NULL REFERENCES sessions(id),
    size INTEGER NOT NULL,
    k INTEGER NOT NULL,
    m INTEGER NOT NULL,
    shard_size INTEGER NOT NULL,
    state TEXT NOT NULL,
    created INTEGER NOT NULL,
    spread INTEGER NOT NULL DEFAULT 0,
    tolerance INTEGER NOT NULL DEFAULT 0,
    -- When the pack was released (state 'deleting'): its shards stay for the release grace.
    released INTEGER,
    -- The most shards of the pack one zone holds.
    zone_spread INTEGER NOT NULL DEFAULT 0,
    -- Placed under a placement policy: not re-spread over zones the policy may exclude.
    narrowed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS packs_crowded ON packs(spread) WHERE spread > 1;
-- Released packs, for the deleter (every 2 s): without it, finding none read every pack.
CREATE INDEX IF NOT EXISTS packs_deleting ON packs(id) WHERE state = 'deleting';
CREATE INDEX IF NOT EXISTS packs_tolerance ON packs(tolerance) WHERE state = 'live';
-- What references a session, for dropping one closed with nothing under it.
CREATE INDEX IF NOT EXISTS packs_by_session ON packs(session);
CREATE TABLE IF NOT EXISTS shards (
    pack BLOB NOT NULL REFERENCES packs(id),
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    host INTEGER NOT NULL REFERENCES hosts(id),
    state TEXT NOT NULL,
    receipt TEXT,
    PRIMARY KEY (pack, idx)
);
CREATE INDEX IF NOT EXISTS shards_by_host ON shards(host, hash);
CREATE INDEX IF NOT EXISTS shards_by_hash ON shards(hash);
CREATE INDEX IF NOT EXISTS shards_not_ok ON shards(pack) WHERE state != 'ok';
CREATE TABLE IF NOT EXISTS chunks (
    user INTEGER NOT NULL,
    id BLOB NOT NULL,
    pack BLOB NOT NULL REFERENCES packs(id),
    off INTEGER NOT NULL,
    len INTEGER NOT NULL,
    PRIMARY KEY (user, id)
);
CREATE INDEX IF NOT EXISTS chunks_by_pack ON chunks(pack);
CREATE TABLE IF NOT EXISTS objects (
    id INTEGER PRIMARY KEY,
    user INTEGER NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    session INTEGER NOT NULL REFERENCES sessions(id),
    manifest BLOB NOT NULL,
    size INTEGER NOT NULL,
    created INTEGER NOT NULL,
    meta BLOB,
    -- The distinct chunks it references (its rows in object_chunks), counted in its cost.
    refs INTEGER NOT NULL DEFAULT 0,
    UNIQUE (user, name, version)
);
CREATE INDEX IF NOT EXISTS objects_by_session ON objects(session);
CREATE TABLE IF NOT EXISTS object_chunks (
    object INTEGER NOT NULL REFERENCES objects(id),
    user INTEGER NOT NULL,
    chunk BLOB NOT NULL,
    PRIMARY KEY (object, chunk)
);
CREATE INDEX IF NOT EXISTS object_chunks_by_chunk ON object_chunks(user, chunk);
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY,
    user INTEGER NOT NULL REFERENCES users(id),
    session INTEGER NOT NULL REFERENCES sessions(id),
    record BLOB NOT NULL,
    created INTEGER NOT NULL,
    writer INTEGER,
    seq INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS snapshots_by_user ON snapshots(user, created);
CREATE INDEX IF NOT EXISTS snapshots_by_session ON snapshots(session);
-- What snapshots reference, in sets of chunks (those of one pack a snapshot uses), each
-- kept once per account however many snapshots name it (see backup::commit_refs).
CREATE TABLE IF NOT EXISTS ref_sets (
    user INTEGER NOT NULL,
    id BLOB NOT NULL,
    chunks INTEGER NOT NULL,
    PRIMARY KEY (user, id)
);
CREATE TABLE IF NOT EXISTS ref_set_chunks (
    user INTEGER NOT NULL,
    ref_set BLOB NOT NULL,
    chunk BLOB NOT NULL,
    PRIMARY KEY (user, ref_set, chunk)
);
CREATE INDEX IF NOT EXISTS ref_set_chunks_by_chunk ON ref_set_chunks(user, chunk);
CREATE TABLE IF NOT EXISTS snapshot_sets (
    snapshot TEXT NOT NULL REFERENCES snapshots(id),
    user INTEGER NOT NULL,
    ref_set BLOB NOT NULL,
    PRIMARY KEY (snapshot, ref_set)
);
CREATE INDEX IF NOT EXISTS snapshot_sets_by_set ON snapshot_sets(user, ref_set);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    -- Kept in pools (events::pool: the grid, refusals, accounts, hosts), each its
    -- newest events::KEEP, numbered by n within each; an actor keeps its newest
    -- events::PER_ACTOR of the pools of accounts and hosts, numbered by k within each.
    pool INTEGER NOT NULL DEFAULT 0,
    n INTEGER NOT NULL DEFAULT 0,
    k INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_by_pool ON events(pool, n);
CREATE INDEX IF NOT EXISTS events_by_actor ON events(pool, actor, k);
-- Names certified for S3 gateways, each bound to the account that first had one, and the
-- names of hosts (`names`). A name an account gave up (`released`) passes on once the
-- certificates issued for it expire (`certified_until`). No quote marks in these comments:
-- statements are rewritten for PostgreSQL outside string literals only.
CREATE TABLE IF NOT EXISTS gateway_names (
    name TEXT PRIMARY KEY,
    account INTEGER NOT NULL,
    since INTEGER NOT NULL,
    certified_until INTEGER NOT NULL DEFAULT 0,
    released INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS orphans (
    host INTEGER NOT NULL,
    hash BLOB NOT NULL,
    since INTEGER NOT NULL,
    PRIMARY KEY (host, hash)
);
CREATE TABLE IF NOT EXISTS session_refs (
    session INTEGER NOT NULL REFERENCES sessions(id),
    user INTEGER NOT NULL,
    chunk BLOB NOT NULL,
    PRIMARY KEY (session, chunk)
);
CREATE INDEX IF NOT EXISTS session_refs_by_chunk ON session_refs(user, chunk);
-- Uploads given back (a placement abandoned by its client, or lapsed) that nothing else
-- needs: the deleter asks their host to delete its copy if that upload alone wrote it.
CREATE TABLE IF NOT EXISTS abandoned (
    host INTEGER NOT NULL,
    hash BLOB NOT NULL,
    grant_hash BLOB NOT NULL,
    since INTEGER NOT NULL,
    PRIMARY KEY (host, hash, grant_hash)
);
-- The web dashboard (see `dashboard`): one-time login links and browser sessions, by the
-- hashes of their secrets, and samples of the figures of the grid for its charts. A link or
-- session belongs to a device (and its user) or to the operator of a host. (No apostrophes
-- in these comments: the PostgreSQL bridge would read one as the start of a literal.)
CREATE TABLE IF NOT EXISTS dashboard_links (
    hash BLOB PRIMARY KEY,
    device INTEGER,
    host INTEGER,
    expires INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dashboard_sessions (
    hash BLOB PRIMARY KEY,
    device INTEGER,
    user INTEGER,
    host INTEGER,
    csrf BLOB NOT NULL,
    created INTEGER NOT NULL,
    seen INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS dashboard_sessions_by_user ON dashboard_sessions(user);
CREATE TABLE IF NOT EXISTS samples (
    time INTEGER NOT NULL PRIMARY KEY,
    stored INTEGER NOT NULL,
    served INTEGER NOT NULL,
    repaired_shards INTEGER NOT NULL,
    degraded INTEGER NOT NULL
);
";

/// Upgrades from older schema versions, in order. Tables new in a version (reservations and
/// leases in 7) are created by [`SCHEMA`].
const MIGRATIONS: &[(i64, &str)] = &[
    (1, "ALTER TABLE sessions ADD COLUMN expires INTEGER NOT NULL DEFAULT 0;"),
    (
        2,
        "ALTER TABLE hosts ADD COLUMN state TEXT NOT NULL DEFAULT 'active';
         ALTER TABLE hosts ADD COLUMN audits_passed INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE hosts ADD COLUMN audits_failed INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE tokens ADD COLUMN name TEXT NOT NULL DEFAULT '';
         ALTER TABLE tokens ADD COLUMN quota INTEGER;
         ALTER TABLE tokens ADD COLUMN owner INTEGER;
         ALTER TABLE users ADD COLUMN name TEXT NOT NULL DEFAULT '';
         ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE users ADD COLUMN quota INTEGER;
         ALTER TABLE users ADD COLUMN owner INTEGER;",
    ),
    // Bearer API keys (stored hashed) give way to device keys that sign credentials. A hash
    // is no usable public key, so clients registered before must run `scatter init` again.
    (3, "ALTER TABLE users RENAME COLUMN key_hash TO device_key;"),
    // Hosts sign receipts for the shards they store; shards recorded before have none until
    // their host's backfill (see `receipts_wanted`). Lookups by (host, shard) check that a
    // shard is recorded once and deleted only when nothing references it.
    // Who wrote a snapshot and who opened a session (a delegate's own id, `UserRow::me`), and
    // whether the owner counts a delegate's snapshots as its own. Rows from before were the
    // owner's. A catalog from before snapshots existed gets that table in its version 4 shape
    // first, so the ALTER has something to alter.
    (
        4,
        "ALTER TABLE hosts ADD COLUMN receipt_key BLOB;
         ALTER TABLE shards ADD COLUMN receipt TEXT;
         DROP INDEX IF EXISTS shards_by_host;
         CREATE TABLE IF NOT EXISTS snapshots (
             id TEXT PRIMARY KEY,
             user INTEGER NOT NULL REFERENCES users(id),
             session INTEGER NOT NULL REFERENCES sessions(id),
             record BLOB NOT NULL,
             created INTEGER NOT NULL
         );
         ALTER TABLE snapshots ADD COLUMN writer INTEGER;
         UPDATE snapshots SET writer = user;
         ALTER TABLE sessions ADD COLUMN opener INTEGER;
         UPDATE sessions SET opener = user;
         ALTER TABLE users ADD COLUMN trusted INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE tokens ADD COLUMN trusted INTEGER NOT NULL DEFAULT 0;",
    ),
    // Placement by fit: who runs a host (its failure domain), the terms it offers, and its
    // measured record. Hosts from before joined with the grid's own token: no operator.
    (
        5,
        "ALTER TABLE hosts ADD COLUMN operator INTEGER;
         ALTER TABLE hosts ADD COLUMN price INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE hosts ADD COLUMN egress_price INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE hosts ADD COLUMN bandwidth INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE hosts ADD COLUMN until INTEGER;
         ALTER TABLE hosts ADD COLUMN online_secs INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE hosts ADD COLUMN served_bytes INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE hosts ADD COLUMN repairs_caused INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE hosts ADD COLUMN measured_bandwidth INTEGER NOT NULL DEFAULT 0;",
    ),
    // What each host holds is kept as counters, updated with every shard row, instead of
    // summed over all shards for every placement.
    (
        6,
        "ALTER TABLE hosts ADD COLUMN held_shards INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE hosts ADD COLUMN held_bytes INTEGER NOT NULL DEFAULT 0;
         UPDATE hosts SET
             held_shards = (SELECT COUNT(*) FROM shards s WHERE s.host = hosts.id),
             held_bytes = COALESCE((SELECT SUM(p.shard_size) FROM shards s JOIN packs p ON p.id = s.pack
                                    WHERE s.host = hosts.id), 0);",
    ),
    // A reservation is no claim on its (host, shard): several accounts may have placed the
    // same shard id on a host (only one can commit it), so the key names the caller.
    (
        7,
        "ALTER TABLE reservations RENAME TO reservations_v7;
         CREATE TABLE reservations (
             host INTEGER NOT NULL,
             shard BLOB NOT NULL,
             caller INTEGER NOT NULL,
             owner INTEGER NOT NULL,
             bytes INTEGER NOT NULL,
             grant_hash BLOB NOT NULL,
             k INTEGER NOT NULL,
             m INTEGER NOT NULL,
             per_domain INTEGER NOT NULL,
             expires INTEGER NOT NULL,
             PRIMARY KEY (host, shard, caller)
         );
         INSERT INTO reservations SELECT * FROM reservations_v7;
         DROP TABLE IF EXISTS reservations_v7",
    ),
    // Snapshots taken in one second keep the order they were recorded in, without SQLite's
    // `rowid` (which PostgreSQL has not).
    (
        8,
        "ALTER TABLE snapshots ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
         UPDATE snapshots SET seq = rowid",
    ),
    // Hosts send what changed since the inventory the coordinator acknowledged last.
    (9, "ALTER TABLE hosts ADD COLUMN inventory_ack INTEGER NOT NULL DEFAULT 0"),
    // What each user's live packs take on hosts is kept in counters (see `stored`), updated
    // with every pack that becomes live or is released, instead of summed for every placement.
    (
        10,
        "CREATE TABLE IF NOT EXISTS usage_counts (
             user INTEGER NOT NULL,
             slot INTEGER NOT NULL,
             packs INTEGER NOT NULL DEFAULT 0,
             bytes INTEGER NOT NULL DEFAULT 0,
             PRIMARY KEY (user, slot)
         );
         INSERT INTO usage_counts (user, slot, packs, bytes)
             SELECT user, 0, COUNT(*), SUM(shard_size * (k + m)) FROM packs WHERE state = 'live' GROUP BY user",
    ),
    // How each pack's shards spread over failure domains is kept with it (see `spread`),
    // so status and the re-spread search read an index instead of every shard. Packs from
    // before are measured once when the catalog opens (see `Store::init`).
    (
        11,
        "ALTER TABLE packs ADD COLUMN spread INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE packs ADD COLUMN tolerance INTEGER NOT NULL DEFAULT 0",
    ),
    // A user has devices (see `devices`); each account's device key becomes its first device,
    // under the account's id, so profiles from before sign on as they did. `users.device_key`
    // stays the key the account was created with (SQLite cannot drop a UNIQUE column without
    // rebuilding a table others reference); authentication reads `devices` only.
    (
        12,
        "ALTER TABLE tokens ADD COLUMN device_of INTEGER;
         CREATE TABLE IF NOT EXISTS devices (
             id INTEGER PRIMARY KEY,
             user INTEGER NOT NULL,
             device_key BLOB NOT NULL UNIQUE,
             name TEXT NOT NULL DEFAULT '',
             created INTEGER NOT NULL,
             revoked INTEGER
         );
         INSERT INTO devices (id, user, device_key, created) SELECT id, id, device_key, created FROM users",
    ),
    // The owner key changes of an account's recovery code are checked against (see
    // `devices`): learnt with the account's next code.
    (13, "ALTER TABLE users ADD COLUMN owner_key BLOB"),
    // Object lock and expiry (see `locks`): the coordinator's own records of what may not
    // be removed before when, and of what it removes when; and each user's lock maxima.
    (14, locks::TABLES),
    // Metering (see `metering`): usage records, running tallies, rate cards, closed
    // periods and recovery gaps. Its tables are in `metering::DDL`, created with the schema.
    (15, metering::MIGRATION),
    // An object version's sealed attributes (the S3 gateway's ETag, content type and user
    // metadata), listed with it: opaque to the coordinator.
    (16, "ALTER TABLE objects ADD COLUMN meta BLOB"),
    // When a pack was released: its shards stay on their hosts for the release grace, so
    // that reads under way end as they began. Packs released before count as long ago.
    // And the most shards of a pack one zone holds, measured below, so that packs placed
    // while a zone was down are re-spread once it is back, unless a placement policy chose
    // their zones (`narrowed`, carried from the placements to the pack). And events kept in
    // pools (the events before count as changes).
    (
        17,
        "ALTER TABLE packs ADD COLUMN released INTEGER;
         ALTER TABLE packs ADD COLUMN zone_spread INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE packs ADD COLUMN narrowed INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE reservations ADD COLUMN narrowed INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE events ADD COLUMN pool INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE events ADD COLUMN n INTEGER NOT NULL DEFAULT 0;
         UPDATE events SET n = id",
    ),
    // Devices registered with a recovery code, until they show they hold the keys (see
    // `devices`).
    (18, "ALTER TABLE devices ADD COLUMN unproven INTEGER NOT NULL DEFAULT 0"),
    // Events numbered per actor too (see `events`): the events before count as the oldest.
    // And an object version's chunk references counted in what it costs the catalog.
    (
        23,
        "ALTER TABLE events ADD COLUMN k INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE objects ADD COLUMN refs INTEGER NOT NULL DEFAULT 0;
         UPDATE objects SET refs = (SELECT COUNT(*) FROM object_chunks oc WHERE oc.object = objects.id)",
    ),
    // Gateway names can be given up; they pass on once their certificates expire.
    (
        24,
        "ALTER TABLE gateway_names ADD COLUMN certified_until INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE gateway_names ADD COLUMN released INTEGER NOT NULL DEFAULT 0",
    ),
];

/// A catalog failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database (SQLite or PostgreSQL) reported an error.
    #[error("catalog database error: {0}")]
    Sql(#[from] SqlError),
    /// The PostgreSQL catalog could not be reached (or refused the login) at start.
    #[error("could not open the PostgreSQL catalog ({0}); check the --catalog URL (host, port, user, password, database) and that the server runs and accepts this user")]
    Unreachable(String),
    /// The catalog's address is not one the coordinator can use.
    #[error("the catalog address is not usable: {0}; give a path for SQLite or postgresql://USER@HOST:PORT/DATABASE")]
    Address(String),
    /// The file was made by a newer Scatter.
    #[error(
        "the catalog has schema version {0}, newer than this build understands ({SCHEMA_VERSION}); upgrade scatter"
    )]
    TooNew(i64),
    /// A device invite was redeemed with keys other than its user's.
    #[error("this device invite is for another user's keys; import that user's key file (`scatter key export` on one of its devices) or use its recovery code")]
    OtherKeys,
    /// A reader or appender invite was redeemed with keys other than its owner's.
    #[error("this invite is for a reader or appender of another account, which works with that account's keys: on one of the owner's devices run `scatter key export -o FILE` (`--write-only` for an appender), then `scatter init --coordinator URL --token TOKEN --import FILE` here")]
    NotOwnersKeys,
    /// A change of the recovery code was signed with keys other than the account's.
    #[error("this change of the recovery code is not signed with this account's keys; run it on a device that holds them (with the passphrase)")]
    NotOwner,
    /// The account is disabled.
    #[error("this account is disabled; ask the grid's admin")]
    AccountDisabled,
    /// A device key is registered already.
    #[error("this device key is registered already; run `scatter init` with a fresh profile")]
    DeviceTaken,
    /// A conditional commit found another version than the one it named.
    #[error("the object changed since the version this commit is conditional on; read it again")]
    Changed,
    /// A commit that may only create (an appender's, or one asked to be exclusive) names an
    /// object that exists.
    #[error("an object with this name exists, and this commit may create one but not overwrite it (an appender's, or an exclusive commit); pick a new name")]
    NameTaken,
    /// A pack names a shard that is already recorded on that host (another pack's).
    #[error("the pack names a shard that is already stored on host {0} for another pack; a shard is recorded once")]
    ShardTaken(HostId),
    /// A shard would move onto a host where an old copy of it waits to be deleted.
    #[error("an old copy of this shard on host {0} waits to be deleted; the shard goes elsewhere, or there once the copy is gone")]
    ShardLeaving(HostId),
    /// A commit references chunks that are not (or no longer) stored.
    #[error(
        "{0} chunk(s) this object needs are not stored (a concurrent remove may have released them); run the put again"
    )]
    MissingChunks(usize),
    /// A pack names a session of another user, or unknown hosts.
    #[error("the pack refers to an unknown session or host")]
    BadReference,
    /// A session is closed or expired.
    #[error("the write session expired (was the client paused for long?); run the command again")]
    SessionClosed,
    /// A session reached [`backup::MAX_SESSION_AGE`] and is not kept alive any longer.
    #[error(
        "this write session is {days} days old, the longest one stays open (so that no writer keeps deleted data stored for ever); run the command again"
    )]
    SessionAged {
        /// The maximum age in days.
        days: u64,
    },
    /// Prune must wait for running writes (no longer returned: a sweep keeps what open
    /// sessions reference instead of waiting for them).
    #[error("a backup or put of this user is still running (or was killed less than a session lifetime ago); retry when it has finished")]
    Busy,
    /// The write session was opened by another account (the owner or another delegate).
    #[error("this write session was opened by another account; a session is used only by the device that opened it, so open your own")]
    NotYourSession,
    /// A catalog task could not run.
    #[error("a catalog task failed: {0}")]
    Task(String),
    /// The snapshot id is taken.
    #[error("a snapshot with this id exists already")]
    SnapshotExists,
    /// The account holds [`MAX_OPEN_SESSIONS`] write sessions open already.
    #[error(
        "this account has 256 write sessions open already; let running puts and backups finish (an unused session \
         lapses within minutes) and try again"
    )]
    TooManySessions,
    /// The account's quota has no room for what the catalog would keep of an object or a
    /// snapshot's references.
    #[error(
        "the quota is exhausted (what this account stores on hosts, and what the catalog keeps of its objects, \
         chunks, write sessions' keys and snapshots' references to them: `scatter usage` shows both); remove data (`scatter rm`, `scatter \
         forget` and `scatter prune`) or ask the grid's admin for more (from a reader's or appender's device: ask \
         the account's owner)"
    )]
    QuotaFull,
    /// The account's snapshot records would take more of the catalog than it keeps for one.
    #[error(
        "this account's snapshot records take {used} bytes of the {limit} the coordinator keeps for one account; \
         forget snapshots you no longer need (`scatter forget ID`, or `scatter forget --keep-last N`) to commit new ones"
    )]
    RecordsFull {
        /// Bytes its records take now.
        used: u64,
        /// [`RECORD_BYTES_PER_ACCOUNT`].
        limit: u64,
    },
    /// The records written by an account's delegates would take more than their share.
    #[error(
        "the snapshot records written by this account's delegates fill their share ({limit} bytes) of what the \
         coordinator keeps for the account; its owner can forget some (`scatter snapshots` names each writer, \
         `scatter forget ID` removes one)"
    )]
    DelegatesRecordsFull {
        /// [`RECORD_BYTES_OF_DELEGATES`].
        limit: u64,
    },
    /// A repack names chunks the last prune did not assign to it.
    #[error("a repack may move only the chunks the last prune assigned to it (within an hour); run prune again")]
    NotPlanned,
    /// A lock in force holds what the request would remove (see [`crate::lock`]).
    #[error("{what} cannot be removed or changed: {refusal}")]
    Locked {
        /// What is locked ("snapshot 1a2b3c4d", "this object").
        what: String,
        /// Why it is refused.
        refusal: crate::lock::Refusal,
    },
    /// A background job's lease passed to another coordinator (or lapsed): it must not
    /// record anything more from the pass it was in.
    #[error("the lease on the {0} job is held elsewhere now; this pass stops")]
    Fenced(&'static str),
}

/// A registered host as stored.
#[derive(Debug, Clone)]
pub struct HostRow {
    /// Id.
    pub id: HostId,
    /// Address.
    pub address: String,
    /// Zone label.
    pub zone: String,
    /// Offered bytes.
    pub capacity: u64,
    /// Used bytes as the host reports them.
    pub reported_used: u64,
    /// Free disk bytes as the host reports them.
    pub free: u64,
    /// Unix time of the last heartbeat.
    pub last_seen: u64,
    /// Bytes of shards the catalog places on it.
    pub catalog_used: u64,
    /// Its administrative standing.
    pub state: Standing,
    /// Shards the catalog places on it.
    pub shards: u64,
    /// Audits it passed.
    pub audits_passed: u64,
    /// Audits it failed.
    pub audits_failed: u64,
    /// The public half of its receipt key, once registered.
    pub receipt_key: Option<[u8; 32]>,
    /// Who runs it: `None` for hosts joined with the grid's own join token (the admin's),
    /// else the operator whose invite it joined with, and whether the admin declared that
    /// operator's hosts independent of each other.
    pub operator: Option<(u64, bool)>,
    /// What it offers.
    pub terms: Terms,
    /// What the coordinator measured of it.
    pub record: Record,
}

impl HostRow {
    /// Its failure domain: hosts of one operator fail together (one party, one domain)
    /// unless the admin declared them independent; the admin's own hosts are each their own.
    pub fn domain(&self) -> Domain {
        match self.operator {
            Some((op, false)) => Domain::Operator(op),
            _ => Domain::Host(self.id),
        }
    }
}

/// A host's administrative standing (the catalog's `hosts.state`); whether it is online
/// comes from its heartbeats on top (see `room::host_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Standing {
    /// Takes and serves data.
    Active,
    /// Its shards are being moved off while it still serves them; retired once empty.
    Draining,
    /// Out of the grid: holds nothing the catalog counts.
    Retired,
    /// Failed too many audits: treated as lost.
    Disqualified,
    /// Stopped by the admin: treated as lost until enabled.
    Disabled,
}

impl Standing {
    /// The name kept in the catalog and shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Active => "active",
            Standing::Draining => "draining",
            Standing::Retired => "retired",
            Standing::Disqualified => "disqualified",
            Standing::Disabled => "disabled",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Standing::Active,
            "draining" => Standing::Draining,
            "retired" => Standing::Retired,
            "disqualified" => Standing::Disqualified,
            "disabled" => Standing::Disabled,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Standing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl sql::Param for Standing {
    fn value(&self) -> sql::Value {
        sql::Value::Text(self.as_str().to_owned())
    }
}

impl sql::FromValue for Standing {
    fn from_value(v: &sql::Value, i: usize) -> Result<Self, SqlError> {
        let name = String::from_value(v, i)?;
        Standing::parse(&name).ok_or(SqlError::Type(i, format!("the host state `{name}`")))
    }
}

/// What the catalog knows of one shard of a pack (the catalog's `shards.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShardState {
    /// Stored on its host as far as the catalog knows.
    Ok,
    /// Its host lost or damaged it (inventory, audit or a verified report): to be rebuilt.
    Lost,
    /// Readable but not counted: its host holds more than it now offers, so it moves.
    Surplus,
}

impl ShardState {
    /// The name kept in the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            ShardState::Ok => "ok",
            ShardState::Lost => "lost",
            ShardState::Surplus => "surplus",
        }
    }
}

impl sql::Param for ShardState {
    fn value(&self) -> sql::Value {
        sql::Value::Text(self.as_str().to_owned())
    }
}

impl sql::FromValue for ShardState {
    fn from_value(v: &sql::Value, i: usize) -> Result<Self, SqlError> {
        match String::from_value(v, i)?.as_str() {
            "ok" => Ok(ShardState::Ok),
            "lost" => Ok(ShardState::Lost),
            "surplus" => Ok(ShardState::Surplus),
            other => Err(SqlError::Type(i, format!("the shard state `{other}`"))),
        }
    }
}

/// A failure domain: the unit the durability rule counts a pack's shards per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Domain {
    /// One host on its own.
    Host(HostId),
    /// Every host of one operator.
    Operator(u64),
}

/// The terms a host offers, as it declares them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Terms {
    /// Price per GiB-month stored, in millionths of the grid's currency unit.
    pub price: u64,
    /// Price per GiB served, in millionths.
    pub egress_price: u64,
    /// Declared bandwidth, bytes per second (0: not declared).
    pub bandwidth: u64,
    /// Unix time the period it offers ends, if it is limited.
    pub until: Option<u64>,
}

/// What the coordinator measured of a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// Unix time it joined.
    pub joined: u64,
    /// Seconds it was heard from (heartbeats within the offline grace of each other).
    pub online_secs: u64,
    /// Bytes it served, as it reports them (a claim).
    pub served_bytes: u64,
    /// Shards rebuilt because it lost or damaged them.
    pub repairs_caused: u64,
    /// Bytes per second the coordinator read from it, smoothed (0: never measured).
    pub measured_bandwidth: u64,
}

/// A user as stored.
#[derive(Debug, Clone)]
pub struct UserRow {
    /// Whose data the caller works on: itself, or for a `reader` or `appender` the user it
    /// was invited for.
    pub id: UserId,
    /// The caller's own id.
    pub me: UserId,
    /// The device the caller signs with.
    pub device: scatter_core::DeviceId,
    /// What it may do.
    pub role: scatter_proto::api::Role,
    /// Requests fail while set.
    pub disabled: bool,
    /// Bytes of packs the data user may store, if limited.
    pub quota: Option<u64>,
    /// The device was registered with a recovery code and has not shown yet that it holds
    /// the account's keys (a change of the code signed with the owner key): the code alone,
    /// without the passphrase, must not make a device that can list or delete.
    pub unproven: bool,
}

/// A pack, as needed by readers and the deleter.
#[derive(Debug, Clone)]
pub struct PackRow {
    /// Id.
    pub id: PackId,
    /// Session.
    pub session: u64,
    /// Sealed size.
    pub size: u64,
    /// Data shards.
    pub k: u8,
    /// Parity shards.
    pub m: u8,
    /// Bytes per shard.
    pub shard_size: u64,
    /// Its shards: (index, id, host, state).
    pub shards: Vec<(u8, ShardId, HostId, ShardState)>,
}

/// A stored object version.
#[derive(Debug, Clone)]
pub struct ObjectRow {
    /// Encrypted name.
    pub name: String,
    /// Version.
    pub version: u64,
    /// Session.
    pub session: u64,
    /// Sealed manifest.
    pub manifest: Vec<u8>,
    /// Plaintext size.
    pub size: u64,
    /// Unix time.
    pub created: u64,
    /// Sealed attributes, if the writer stored any.
    pub meta: Option<Vec<u8>>,
}

/// A new pack to record.
pub struct NewPack<'a> {
    /// Id.
    pub id: PackId,
    /// Owner.
    pub user: UserId,
    /// Session.
    pub session: u64,
    /// Sealed size.
    pub size: u64,
    /// Data shards.
    pub k: u8,
    /// Parity shards.
    pub m: u8,
    /// Bytes per shard.
    pub shard_size: u64,
    /// Shards, their receipts checked by the caller.
    pub shards: &'a [StoredShard],
    /// Chunks.
    pub chunks: &'a [ChunkEntry],
    /// Move chunks already stored into this pack (a repack).
    pub relocate: bool,
}

/// The catalog.
pub struct Store {
    db: Backend,
}

impl sql::Retry for StoreError {
    fn conflict(&self) -> bool {
        matches!(self, StoreError::Sql(e) if sql::Retry::conflict(e))
    }
}

/// Counts `shards` shard rows of `bytes` more (or fewer) on `host`, in the caller's
/// transaction: every change to the shard rows goes with one.
fn held(conn: &Sql<'_>, host: HostId, shards: i64, bytes: i64) -> Result<(), SqlError> {
    held_count(conn, host, shards, bytes)?;
    metering::record_now(conn, crate::metering::Subject::Host(host.0), crate::metering::Kind::Held, bytes, 0)?;
    Ok(())
}

/// [`held`]'s counters alone, for a bulk load that writes the usage records itself.
fn held_count(conn: &Sql<'_>, host: HostId, shards: i64, bytes: i64) -> Result<(), SqlError> {
    conn.execute(
        "UPDATE hosts SET held_shards = held_shards + ?2, held_bytes = held_bytes + ?3 WHERE id = ?1",
        params![host.0 as i64, shards, bytes],
    )?;
    Ok(())
}

/// Write sessions one account (an owner, or one of its delegates) may hold open at once: a
/// gateway's concurrent puts each hold one, and a session that is never closed lapses.
pub const MAX_OPEN_SESSIONS: usize = 256;

/// Counter rows per user: a pack counts in the row its id's first byte picks, so commits of
/// one user running at once (a backup's parallel packs, through several coordinators)
/// rarely update the same row, which PostgreSQL's serializable transactions would make
/// retry; reading a user's usage sums this many rows.
const USAGE_SLOTS: u8 = 16;

/// Counts `packs` live packs of `bytes` on hosts more (or fewer) for `user`, in the row that
/// `pack` picks, in the caller's transaction: every pack that becomes live or is released
/// goes with one, and so does its usage record (bytes on hosts, and `logical`: sealed bytes).
fn stored(conn: &Sql<'_>, user: i64, pack: &[u8], packs: i64, bytes: i64, logical: i64) -> Result<(), SqlError> {
    let who = crate::metering::Subject::User(user as u64);
    let slot = pack.first().map_or(0, |b| b % USAGE_SLOTS);
    metering::record_now(conn, who, crate::metering::Kind::Stored, bytes, slot)?;
    metering::record_now(conn, who, crate::metering::Kind::Logical, logical, slot)?;
    conn.execute(
        "INSERT INTO usage_counts (user, slot, packs, bytes) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (user, slot) DO UPDATE SET packs = usage_counts.packs + excluded.packs,
                                                bytes = usage_counts.bytes + excluded.bytes",
        params![user, slot, packs, bytes],
    )?;
    Ok(())
}

/// What one object version takes in the catalog, as SQL over a row of `objects`: its
/// encrypted name, sealed manifest and attributes, [`OBJECT_ROW_BYTES`], and a reference's
/// bytes ([`backup::SNAPSHOT_REF_BYTES`]) for each chunk it names.
/// (`OCTET_LENGTH`: a name's bytes, as the commit counts them, not its characters.)
const OBJECT_BYTES: &str = "(OCTET_LENGTH(name) + LENGTH(manifest) + COALESCE(LENGTH(meta), 0) + 128 + refs * 256)";
const _: () = assert!(OBJECT_ROW_BYTES == 128 && backup::SNAPSHOT_REF_BYTES == 256, "as OBJECT_BYTES counts");
/// What an object version's row takes beyond its name, manifest and attributes (ids, sizes,
/// indexes), as [`OBJECT_BYTES`] counts it.
const OBJECT_ROW_BYTES: u64 = 128;
/// What a chunk's row takes in the catalog with its indexes (about 170 bytes on SQLite): a
/// pack's chunks count against its owner's quota beside its bytes on hosts, or packs of
/// many tiny chunks would make the catalog grow faster than the quota counts.
pub(crate) const CHUNK_ROW_BYTES: u64 = 160;

/// Counts `bytes` more (or fewer) of the catalog for `user` (its objects, chunks or
/// references), in the row that `name` (an object's encrypted name, a pack, snapshot or
/// session id) picks, as [`stored`] spreads its counters.
pub(super) fn catalog_bytes(conn: &Sql<'_>, user: i64, name: &str, bytes: i64) -> Result<(), SqlError> {
    let slot = name.as_bytes().first().map_or(0, |b| b % USAGE_SLOTS);
    conn.execute(
        "INSERT INTO catalog_usage (user, slot, bytes) VALUES (?1, ?2, ?3)
         ON CONFLICT (user, slot) DO UPDATE SET bytes = catalog_usage.bytes + excluded.bytes",
        params![user, slot, bytes],
    )?;
    Ok(())
}

/// Adds to each account's catalog bytes what `bytes` (an SQL aggregate over its rows) counts
/// of `table`: how an upgrade starts counting rows the quota did not count before.
fn count_rows_into_usage(conn: &Sql<'_>, table: &str, bytes: &str) -> Result<(), SqlError> {
    conn.execute(
        &format!(
            "INSERT INTO catalog_usage (user, slot, bytes)
             SELECT user, 0, CAST({bytes} AS BIGINT) FROM {table} GROUP BY user
             ON CONFLICT (user, slot) DO UPDATE SET bytes = catalog_usage.bytes + excluded.bytes"
        ),
        params![],
    )?;
    Ok(())
}

/// Stops counting what object version `object` (a row id) takes in the catalog, before its
/// row is deleted.
fn forget_object_bytes(conn: &Sql<'_>, object: i64) -> Result<(), SqlError> {
    let row: Option<(i64, String, i64)> = conn.query_opt(
        &format!("SELECT user, name, CAST({OBJECT_BYTES} AS BIGINT) FROM objects WHERE id = ?1"),
        params![object],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    match row {
        Some((user, name, bytes)) => catalog_bytes(conn, user, &name, -bytes),
        None => Ok(()),
    }
}

/// What counts against `user`'s quota: its live packs on hosts, and what the catalog keeps
/// of its objects, chunks and references.
pub(super) fn quota_used(conn: &Sql<'_>, user: i64) -> Result<u64, SqlError> {
    let used: i64 = conn.query_row(
        "SELECT CAST(COALESCE((SELECT SUM(bytes) FROM usage_counts WHERE user = ?1), 0)
                   + COALESCE((SELECT SUM(bytes) FROM catalog_usage WHERE user = ?1), 0) AS BIGINT)",
        params![user],
        |r| r.get(0),
    )?;
    Ok(used.max(0) as u64)
}

/// Refuses `cost` more bytes of the catalog for `user` if it has a quota they would pass.
pub(super) fn check_quota(conn: &Sql<'_>, user: i64, cost: u64) -> Result<(), StoreError> {
    let quota: Option<i64> =
        conn.query_opt("SELECT quota FROM users WHERE id = ?1", params![user], |r| r.get(0))?.flatten();
    match quota {
        Some(q) if quota_used(conn, user)? + cost > q.max(0) as u64 => Err(StoreError::QuotaFull),
        _ => Ok(()),
    }
}

/// Measures how `pack`'s shards spread over failure domains (a host on its own, or all hosts
/// of one operator not declared independent) and zones, and records it with the pack: the
/// most shards one domain holds, how many domains it survives losing with every shard
/// intact, and the most shards one zone holds. Runs in the transaction that places or moves
/// a shard, so the three columns are always current.
pub(crate) fn measure_spread(conn: &Sql<'_>, pack: &[u8]) -> Result<(), SqlError> {
    let shards: Vec<(i64, String)> = conn.query_map(
        "SELECT CASE WHEN h.operator IS NOT NULL AND COALESCE(o.independent, 0) = 0 THEN -h.operator ELSE h.id END, h.zone
         FROM shards s JOIN hosts h ON h.id = s.host LEFT JOIN operators o ON o.id = h.operator WHERE s.pack = ?1",
        params![pack],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let k: Option<i64> = conn.query_opt("SELECT k FROM packs WHERE id = ?1", params![pack], |r| r.get(0))?;
    let Some(k) = k else { return Ok(()) };
    let mut per_domain: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    let mut per_zone: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (domain, zone) in shards {
        *per_domain.entry(domain).or_default() += 1;
        *per_zone.entry(zone).or_default() += 1;
    }
    let held: Vec<usize> = per_domain.into_values().collect();
    let spread = held.iter().copied().max().unwrap_or(0);
    let tolerance = crate::durability::tolerance(&held, k as usize).unwrap_or(0);
    let zone_spread = per_zone.into_values().max().unwrap_or(0);
    conn.execute(
        "UPDATE packs SET spread = ?2, tolerance = ?3, zone_spread = ?4 WHERE id = ?1",
        params![pack, spread as i64, i64::from(tolerance), zone_spread as i64],
    )?;
    Ok(())
}

/// Records a pack whose shards are durable, with its shards and chunks. Chunks already
/// stored elsewhere keep their first location.
fn record_pack(tx: &Sql<'_>, p: &NewPack<'_>, now: u64) -> Result<(), StoreError> {
    let session_ok: bool =
        tx.exists("SELECT 1 FROM sessions WHERE id = ?1 AND user = ?2", params![p.session as i64, p.user.0 as i64])?;
    if !session_ok {
        return Err(StoreError::BadReference);
    }
    let inserted = tx.execute(
        "INSERT INTO packs (id, user, session, size, k, m, shard_size, state, created)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'live', ?8) ON CONFLICT DO NOTHING",
        params![
            &p.id.as_bytes()[..],
            p.user.0 as i64,
            p.session as i64,
            p.size as i64,
            p.k,
            p.m,
            p.shard_size as i64,
            now as i64
        ],
    )?;
    if inserted == 0 {
        // The same pack committed twice (a retried request): nothing more to do.
        return Ok(());
    }
    let on_hosts = (p.shard_size * (u64::from(p.k) + u64::from(p.m))) as i64;
    stored(tx, p.user.0 as i64, &p.id.as_bytes()[..], 1, on_hosts, p.size as i64)?;
    // Every shard's bytes reached its host: the receipts the caller checked say so.
    let who = crate::metering::Subject::User(p.user.0);
    metering::record(tx, who, crate::metering::Kind::Ingress, on_hosts, now)?;
    let writer: i64 =
        tx.query_row("SELECT COALESCE(opener, user) FROM sessions WHERE id = ?1", params![p.session as i64], |r| {
            r.get(0)
        })?;
    let owners = trusted_writers(tx, p.user, p.user)?;
    let mut emptied: Vec<Vec<u8>> = Vec::new();
    for s in p.shards {
        let taken: bool = tx.exists(
            "SELECT 1 FROM shards WHERE host = ?1 AND hash = ?2",
            params![s.host.0 as i64, &s.shard.as_bytes()[..]],
        )?;
        if taken {
            return Err(StoreError::ShardTaken(s.host));
        }
        tx.execute(
            "INSERT INTO shards (pack, idx, hash, host, state, receipt) VALUES (?1, ?2, ?3, ?4, 'ok', ?5)",
            params![&p.id.as_bytes()[..], s.index, &s.shard.as_bytes()[..], s.host.0 as i64, &s.receipt.0],
        )
        .map_err(|e| match e {
            e if e.is_constraint() => StoreError::BadReference,
            e => e.into(),
        })?;
        held(tx, s.host, 1, p.shard_size as i64)?;
    }
    measure_spread(tx, &p.id.as_bytes()[..])?;
    let mut rows = 0;
    for c in p.chunks {
        let (u, id, pack) = (p.user.0 as i64, &c.id.as_bytes()[..], &p.id.as_bytes()[..]);
        if p.relocate {
            // A chunk a lock holds stays where it is: the coordinator cannot check a
            // new copy's content.
            locks::check_chunk(tx, u, id, now)?;
            // Each chunk a prune assigned moves once; anything else fails the commit.
            let planned = tx.execute(
                "DELETE FROM relocations WHERE user = ?1 AND chunk = ?2 AND expires > ?3",
                params![u, id, now as i64],
            )?;
            if planned == 0 {
                return Err(StoreError::NotPlanned);
            }
            let old: Option<Vec<u8>> =
                tx.query_opt("SELECT pack FROM chunks WHERE user = ?1 AND id = ?2", params![u, id], |r| r.get(0))?;
            let Some(old) = old else { continue };
            tx.execute(
                "UPDATE chunks SET pack = ?3, off = ?4, len = ?5 WHERE user = ?1 AND id = ?2",
                params![u, id, pack, c.offset as i64, c.len as i64],
            )?;
            if !emptied.contains(&old) {
                emptied.push(old);
            }
        } else {
            let inserted = tx.execute(
                "INSERT INTO chunks (user, id, pack, off, len) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                params![u, id, pack, c.offset as i64, c.len as i64],
            )?;
            rows += inserted as u64;
            // A chunk an untrusted delegate wrote first gives way to the same id written
            // by the owner or a trusted delegate: the first could be anything. But a lock
            // holds the copy its snapshots and objects were stored with: the coordinator
            // cannot tell which copy is good (a stolen device could store garbage under the
            // id), so that copy stays too, for readers to fall back on, until the lock ends.
            if inserted == 0
                && owners.contains(&writer)
                && chunk_writer(tx, p.user, &c.id)?.is_some_and(|w| !owners.contains(&w))
            {
                if locks::check_chunk(tx, u, id, now).is_err() {
                    rows += tx.execute(
                        "INSERT INTO kept_chunks (user, id, pack, off, len, snapshots_upto, objects_upto)
                         SELECT user, id, pack, off, len, (SELECT COALESCE(MAX(seq), 0) FROM snapshots),
                                (SELECT COALESCE(MAX(id), 0) FROM objects)
                         FROM chunks WHERE user = ?1 AND id = ?2 ON CONFLICT DO NOTHING",
                        params![u, id],
                    )? as u64;
                }
                tx.execute(
                    "UPDATE chunks SET pack = ?3, off = ?4, len = ?5 WHERE user = ?1 AND id = ?2",
                    params![u, id, pack, c.offset as i64, c.len as i64],
                )?;
            }
        }
    }
    // The placement was checked for the shards' bytes only, and a pack may name a chunk per
    // 30 bytes, each row costing 160: its rows could take the account five times past its
    // quota if only counted here. A pack that takes it past, rows and bytes, is refused
    // whole, whatever its placement raced (a repack's new copy is counted before the old
    // one is released, so it is not).
    if !p.relocate {
        check_quota(tx, p.user.0 as i64, rows * CHUNK_ROW_BYTES)?;
    }
    catalog_bytes(tx, p.user.0 as i64, &p.id.to_string(), (rows * CHUNK_ROW_BYTES) as i64)?;
    for old in emptied {
        release_packs(tx, "id = ?1 AND NOT EXISTS (SELECT 1 FROM chunks WHERE pack = ?1)", params![&old], now)?;
    }
    Ok(())
}

/// Releases live packs for deletion (`state = 'deleting'`, released `now`): those `filter`
/// (a condition on `packs`, with parameters `params`) selects, but for packs holding a copy a
/// lock keeps (`kept_chunks`), taking what they hold off their owners' usage at once. Returns
/// how many.
///
/// Their shards stay on their hosts for the release grace, outside the quota; an owner whose
/// packs waiting for deletion would hold more than its quota gets no grace for any of them,
/// so deleting and storing again cannot hold more than twice the quota on hosts.
pub(crate) fn release_packs(
    conn: &Sql<'_>,
    filter: &str,
    params: &[&dyn sql::Param],
    now: u64,
) -> Result<u64, SqlError> {
    let now = now as i64;
    let mut all = params.to_vec();
    all.push(&now);
    let released: Vec<(i64, Vec<u8>, i64, i64)> = conn.query_map(
        &format!(
            "UPDATE packs SET state = 'deleting', released = ?{} WHERE state = 'live' AND {filter}
                 AND NOT EXISTS (SELECT 1 FROM kept_chunks k WHERE k.pack = packs.id)
             RETURNING user, id, shard_size * (k + m), size",
            all.len()
        ),
        &all,
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    for (user, pack, bytes, logical) in &released {
        stored(conn, *user, pack, -1, -bytes, -logical)?;
    }
    let owners: std::collections::BTreeSet<i64> = released.iter().map(|r| r.0).collect();
    for user in owners {
        let Some(quota) = conn
            .query_opt("SELECT quota FROM users WHERE id = ?1", params![user], |r| r.get::<Option<i64>>(0))?
            .flatten()
        else {
            continue;
        };
        let waiting: i64 = conn.query_row(
            "SELECT CAST(COALESCE(SUM(shard_size * (k + m)), 0) AS BIGINT) FROM packs
             WHERE user = ?1 AND state = 'deleting' AND released > 0",
            params![user],
            |r| r.get(0),
        )?;
        if waiting > quota {
            conn.execute("UPDATE packs SET released = 0 WHERE user = ?1 AND state = 'deleting'", params![user])?;
        }
    }
    Ok(released.len() as u64)
}

/// Whether a catalog location names a PostgreSQL database rather than a SQLite file.
pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgresql://") || location.starts_with("postgres://")
}

/// Connections a coordinator opens to PostgreSQL at most.
const POSTGRES_CONNECTIONS: usize = 16;

/// Serializes schema creation and upgrades among coordinators starting on one PostgreSQL
/// database (a transaction-scoped advisory lock; the number is arbitrary but fixed).
const SCHEMA_LOCK: i64 = 0x5343_4154_5445_5201;

impl Store {
    /// Opens (creating if needed) the catalog at `location`: a PostgreSQL database when it
    /// is a `postgresql://` or `postgres://` URL, else a SQLite file at that path.
    pub fn connect(location: &str) -> Result<Self, StoreError> {
        match is_postgres_url(location) {
            true => Self::open_postgres(location),
            false => Self::open(Path::new(location)),
        }
    }

    /// Opens (creating if needed) the SQLite catalog file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let writer = sql::open_lite(path)?;
        let db = Backend::Lite(sql::Lite {
            writer: std::sync::Mutex::new(writer),
            readers: Default::default(),
            path: path.to_owned(),
        });
        let store = Self { db };
        store.init()?;
        Ok(store)
    }

    /// Opens (creating the schema if needed) a catalog in the PostgreSQL database at `url`
    /// (`postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE`, libpq's URL form).
    pub fn open_postgres(url: &str) -> Result<Self, StoreError> {
        let mut config: postgres::Config =
            url.parse().map_err(|e: postgres::Error| StoreError::Address(e.to_string()))?;
        // The schema's `IF NOT EXISTS` statements each send a NOTICE at every start, which the
        // driver logs: some 60 lines of noise. Warnings still come through.
        let quiet = "-c client_min_messages=warning";
        let options = config.get_options().map_or_else(|| quiet.to_owned(), |o| format!("{o} {quiet}"));
        config.options(&options);
        let store = Self { db: Backend::Pg(sql::Pool::new(config, POSTGRES_CONNECTIONS)) };
        match store.init() {
            Err(StoreError::Sql(SqlError::Postgres(e)))
                if e.as_db_error()
                    .is_none_or(|db| db.code().code().starts_with("28") || db.code().code() == "3D000") =>
            {
                {
                    // The cause (refused, unknown host, bad password) is in the error's sources.
                    let mut why = e.to_string();
                    let mut source = std::error::Error::source(&e);
                    while let Some(cause) = source {
                        why = format!("{why}: {cause}");
                        source = cause.source();
                    }
                    Err(StoreError::Unreachable(why))
                }
            }
            other => other.map(|()| store),
        }
    }

    /// Records a request credential (its device and nonce) as used, until it expires;
    /// false if it was recorded before (by this coordinator before a restart, or by another
    /// sharing the catalog): a replay. Credentials expired at `now` are forgotten now and then.
    pub fn first_use(
        &self,
        device: scatter_core::DeviceId,
        nonce: &[u8],
        expires: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        let sweep = rand::random::<u8>() == 0;
        self.db.statement(|c| {
            if sweep {
                c.execute("DELETE FROM replays WHERE expires <= ?1", params![now as i64])?;
            }
            let n = c.execute(
                "INSERT INTO replays (user, nonce, expires) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![device.0 as i64, nonce, expires as i64],
            )?;
            Ok(n == 1)
        })
    }

    /// Which back end holds the catalog, for logs: `sqlite` or `postgresql`.
    pub fn backend(&self) -> &'static str {
        match self.db {
            Backend::Lite(_) => "sqlite",
            Backend::Pg(_) => "postgresql",
        }
    }

    /// Creates the schema, or upgrades it from the version it has.
    fn init(&self) -> Result<(), StoreError> {
        self.write(|c| {
            let has_meta = if c.is_postgres() {
                c.execute("SELECT pg_advisory_xact_lock(?1)", params![SCHEMA_LOCK])?;
                c.exists("SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'meta'", params![])?
            } else {
                c.exists("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'", params![])?
            };
            let version: Option<i64> = if has_meta {
                c.query_opt("SELECT value FROM meta WHERE key = 'schema'", params![], |r| r.get::<String>(0))?
                    .and_then(|v| v.parse().ok())
            } else {
                None
            };
            match version {
                Some(v) if v > SCHEMA_VERSION => return Err(StoreError::TooNew(v)),
                Some(v) => {
                    for (from, sql) in MIGRATIONS {
                        if *from >= v {
                            migrate(c, sql)?;
                        }
                    }
                }
                None => {}
            }
            match c.is_postgres() {
                true => c.batch(&sql::postgres_ddl(SCHEMA))?,
                false => c.batch(SCHEMA)?,
            }
            match c.is_postgres() {
                true => c.batch(&sql::postgres_ddl(locks::TABLES))?,
                false => c.batch(locks::TABLES)?,
            }
            match c.is_postgres() {
                true => c.batch(&sql::postgres_ddl(metering::DDL))?,
                false => c.batch(metering::DDL)?,
            }
            if version.is_some_and(|v| v <= 12) && c.is_postgres() {
                // Devices were given their accounts' ids: new ones are numbered after them.
                c.execute(
                    "SELECT setval(pg_get_serial_sequence('devices', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM devices",
                    params![],
                )?;
            }
            if version.is_some_and(|v| v <= 17) {
                // Packs from before spreads (and zone spreads) were kept: measured once, here.
                let packs: Vec<Vec<u8>> =
                    c.query_map("SELECT id FROM packs WHERE zone_spread = 0", params![], |r| r.get(0))?;
                for pack in packs {
                    measure_spread(c, &pack)?;
                }
                // Packs of accounts with a placement policy: it may have chosen their zones,
                // which re-spreading must not undo.
                c.execute("UPDATE packs SET narrowed = 1 WHERE user IN (SELECT user FROM policies)", params![])?;
                // Gateway names certified before names were bound: the first account the audit
                // trail shows with one keeps it, so that nobody else binds it before that
                // gateway's next start.
                let certified: Vec<(String, String)> = c.query_map(
                    "SELECT actor, detail FROM events WHERE action = 'gateway.certified' ORDER BY id",
                    params![],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                for (actor, detail) in certified {
                    let Some(account) = actor.strip_prefix('u').and_then(|n| n.parse::<i64>().ok()) else { continue };
                    for name in detail.split(", ").filter_map(|n| scatter_net::tls::check_host_name(n).ok()) {
                        if !scatter_net::tls::is_loopback(&name) {
                            c.execute(
                                "INSERT INTO gateway_names (name, account, since) VALUES (?1, ?2, 0) ON CONFLICT DO NOTHING",
                                params![name, account],
                            )?;
                        }
                    }
                }
            }
            if version.is_some_and(|v| v <= 22) {
                // Snapshots named each chunk in a row of their own until schema 23.
                backup::group_snapshot_chunks(c)?;
                // What the catalog keeps of each account, counted from its rows. Objects were
                // first counted at schema 20, references and chunks at 21 and 22 (21 changed
                // before it was released), references in sets at 23: the counters are made
                // again rather than added to.
                c.execute("DELETE FROM catalog_usage", params![])?;
                let refs = format!("COUNT(*) * {}", backup::SNAPSHOT_REF_BYTES);
                let rows = [
                    ("objects", format!("SUM({OBJECT_BYTES})")),
                    ("ref_set_chunks", refs.clone()),
                    ("snapshot_sets", refs.clone()),
                    ("session_refs", refs),
                    ("chunks", format!("COUNT(*) * {CHUNK_ROW_BYTES}")),
                ];
                for (table, bytes) in rows {
                    count_rows_into_usage(c, table, &bytes)?;
                }
            }
            if version == Some(23) {
                // Counted since schema 24: an object version's chunk references (a catalog of
                // 22 or before counted every object anew from its rows, above, with them).
                count_rows_into_usage(c, "objects", &format!("SUM(refs) * {}", backup::SNAPSHOT_REF_BYTES))?;
            }
            if version.is_some_and(|v| v <= 26) {
                // Snapshot records and their rows count against the quota since schema 27.
                let bytes = format!("SUM(LENGTH(record) + {})", backup::SNAPSHOT_ROW_BYTES);
                count_rows_into_usage(c, "snapshots", &bytes)?;
            }
            if version.is_some_and(|v| v <= 25) {
                // Sessions' wrapped keys count against the quota since schema 26.
                count_rows_into_usage(c, "sessions", "SUM(LENGTH(wrapped_key))")?;
            }
            if version.is_some_and(|v| v <= 24) {
                // Gateway certificates were valid for as long as hosts' until schema 25, and
                // when each name was last certified is not known: from now on, at the most.
                let until = crate::now() + scatter_net::tls::LEAF_VALIDITY_SECS;
                c.execute(
                    "UPDATE gateway_names SET certified_until = ?1 WHERE account >= 0",
                    params![until as i64],
                )?;
            }
            c.execute(
                "INSERT INTO meta (key, value) VALUES ('schema', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![SCHEMA_VERSION.to_string()],
            )?;
            Ok(())
        })
    }

    /// Records, on a catalog's first start, which grid it belongs to: `(name, value)` pairs
    /// such as the grant-signing key and the CA fingerprint. Returns the first pair whose
    /// recorded value differs, with that value: a coordinator started with another grid's
    /// keys on this catalog.
    pub fn claim_grid(&self, identity: &[(&str, String)]) -> Result<Option<(String, String)>, StoreError> {
        self.write(|c| {
            for (name, value) in identity {
                let key = format!("grid.{name}");
                c.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
                    params![key, value],
                )?;
                let recorded: String =
                    c.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| r.get(0))?;
                if recorded != *value {
                    return Ok(Some((name.to_string(), recorded)));
                }
            }
            Ok(None)
        })
    }

    /// A value of the meta table (such as `catalog_backup.seq` or `recovered_at`).
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.read(|c| Ok(c.query_opt("SELECT value FROM meta WHERE key = ?1", params![key], |r| r.get::<String>(0))?))
    }

    /// Sets values of the meta table, in one transaction.
    pub fn set_meta(&self, pairs: &[(&str, String)]) -> Result<(), StoreError> {
        self.write(|c| {
            for (key, value) in pairs {
                c.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    params![key.to_string(), value],
                )?;
            }
            Ok(())
        })
    }

    /// Writes a consistent copy of a SQLite catalog to `path` (a new file) while the
    /// catalog keeps serving (`VACUUM INTO`, on a connection of its own: it reads one
    /// snapshot beside the writer and never blocks it). False for PostgreSQL, which is
    /// backed up by its own means.
    pub fn snapshot_into(&self, path: &Path) -> Result<bool, StoreError> {
        Ok(self.db.vacuum_into(path)?)
    }

    /// Runs `f` in one write transaction (retried from the start when PostgreSQL aborts it
    /// for a conflict with another), committing what it returns `Ok` for.
    fn write<T>(&self, f: impl FnMut(&Sql<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.db.write(f)
    }

    /// Runs `f` on a consistent snapshot of the catalog, beside any write.
    fn read<T>(&self, f: impl FnMut(&Sql<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.db.read(f)
    }

    /// Raw statements for tests that plant what older catalogs or other parties could have
    /// left behind.
    #[cfg(test)]
    pub(crate) fn conn(&self) -> testing::Raw<'_> {
        testing::Raw(self)
    }

    /// Registers a new host joined with the grid's own token, offering no terms (see
    /// [`Store::join_host`]).
    pub fn add_host(
        &self,
        secret_hash: &[u8; 32],
        address: &str,
        zone: &str,
        capacity: u64,
        receipt_key: Option<&[u8; 32]>,
        now: u64,
    ) -> Result<HostId, StoreError> {
        let terms = Terms::default();
        let host = NewHost { secret_hash, address, zone, capacity, receipt_key, operator: None, terms: &terms };
        self.join_host(&host, now)
    }

    /// Registers a host's receipt key; returns whether it differs from the one registered
    /// before (none, for a host that joined before receipts existed, does not count).
    pub fn set_receipt_key(&self, id: HostId, key: &[u8; 32]) -> Result<bool, StoreError> {
        self.write(|conn| {
            let old: Option<Option<Vec<u8>>> =
                conn.query_opt("SELECT receipt_key FROM hosts WHERE id = ?1", params![id.0 as i64], |r| r.get(0))?;
            match old {
                Some(Some(old)) if old == key[..] => Ok(false),
                Some(old) => {
                    conn.execute("UPDATE hosts SET receipt_key = ?2 WHERE id = ?1", params![id.0 as i64, &key[..]])?;
                    Ok(old.is_some())
                }
                None => Ok(false),
            }
        })
    }

    /// A host's registered receipt key, if the host exists and has registered one. One row by
    /// its key: commits check receipts without the aggregates of [`Self::hosts`].
    pub fn receipt_key(&self, id: HostId) -> Result<Option<[u8; 32]>, StoreError> {
        self.read(|conn| {
            let key: Option<Option<[u8; 32]>> =
                conn.query_opt("SELECT receipt_key FROM hosts WHERE id = ?1", params![id.0 as i64], |r| r.get(0))?;
            Ok(key.flatten())
        })
    }

    /// A host's failure domain, if the host is registered. One row by its key, for commits.
    pub fn host_domain(&self, id: HostId) -> Result<Option<Domain>, StoreError> {
        self.read(|conn| {
            let row: Option<(Option<i64>, Option<i64>)> = conn
                .query_opt("SELECT h.operator, o.independent FROM hosts h LEFT JOIN operators o ON o.id = h.operator WHERE h.id = ?1", params![id.0 as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(row.map(|(op, independent)| match op {
                Some(op) if independent.unwrap_or(0) == 0 => Domain::Operator(op as u64),
                _ => Domain::Host(id),
            }))
        })
    }

    /// A user's stored placement policy.
    pub fn policy(&self, user: UserId) -> Result<Option<scatter_proto::api::Policy>, StoreError> {
        let text: Option<String> = self.read(|c| {
            Ok(c.query_opt("SELECT policy FROM policies WHERE user = ?1", params![user.0 as i64], |r| r.get(0))?)
        })?;
        // The coordinator wrote it; an unreadable one is treated as none rather than failing
        // every placement.
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Stores (or with `None` clears) a user's placement policy.
    pub fn set_policy(&self, user: UserId, policy: Option<&scatter_proto::api::Policy>) -> Result<(), StoreError> {
        self.write(|conn| {
            match policy {
                Some(p) => {
                    let text = serde_json::to_string(p).map_err(|e| StoreError::Task(e.to_string()))?;
                    conn.execute(
                        "INSERT INTO policies (user, policy) VALUES (?1, ?2)
                         ON CONFLICT(user) DO UPDATE SET policy = excluded.policy",
                        params![user.0 as i64, text],
                    )?;
                }
                None => {
                    conn.execute("DELETE FROM policies WHERE user = ?1", params![user.0 as i64])?;
                }
            }
            Ok(())
        })
    }

    /// Sets a host's administrative state; false if there is no such host.
    pub fn set_host_state(&self, id: HostId, state: Standing) -> Result<bool, StoreError> {
        Ok(self.write(|c| Ok(c.execute("UPDATE hosts SET state = ?2 WHERE id = ?1", params![id.0 as i64, state])?))?
            > 0)
    }

    /// The hash of a host's secret, if the host is registered.
    pub fn host_secret_hash(&self, id: HostId) -> Result<Option<[u8; 32]>, StoreError> {
        self.read(|conn| {
            let row: Option<[u8; 32]> =
                conn.query_opt("SELECT secret_hash FROM hosts WHERE id = ?1", params![id.0 as i64], |r| r.get(0))?;
            Ok(row)
        })
    }

    /// The address host `id` is registered at, if it is registered.
    pub fn host_address(&self, id: HostId) -> Result<Option<String>, StoreError> {
        self.read(|conn| {
            let row: Option<String> =
                conn.query_opt("SELECT address FROM hosts WHERE id = ?1", params![id.0 as i64], |r| r.get(0))?;
            Ok(row)
        })
    }

    /// Every host, with the bytes the catalog places on it.
    pub fn hosts(&self) -> Result<Vec<HostRow>, StoreError> {
        self.read(|conn| {
            let rows = conn.query_map(
                "SELECT h.id, h.address, h.zone, h.capacity, h.reported_used, h.free, h.last_seen, h.held_bytes,
                        h.state, h.held_shards, h.audits_passed, h.audits_failed,
                        h.receipt_key, h.operator, o.independent, h.price, h.egress_price, h.bandwidth, h.until,
                        h.joined, h.online_secs, h.served_bytes, h.repairs_caused, h.measured_bandwidth
                 FROM hosts h LEFT JOIN operators o ON o.id = h.operator ORDER BY h.id",
                params![],
                |r| {
                    Ok(HostRow {
                        id: HostId(r.get::<i64>(0)? as u64),
                        address: r.get(1)?,
                        zone: r.get(2)?,
                        capacity: r.get::<i64>(3)? as u64,
                        reported_used: r.get::<i64>(4)? as u64,
                        free: r.get::<i64>(5)? as u64,
                        last_seen: r.get::<i64>(6)? as u64,
                        catalog_used: r.get::<i64>(7)? as u64,
                        state: r.get(8)?,
                        shards: r.get::<i64>(9)? as u64,
                        audits_passed: r.get::<i64>(10)? as u64,
                        audits_failed: r.get::<i64>(11)? as u64,
                        receipt_key: r.get(12)?,
                        operator: r
                            .get::<Option<i64>>(13)?
                            .map(|op| Ok::<_, SqlError>((op as u64, r.get::<Option<i64>>(14)?.unwrap_or(0) != 0)))
                            .transpose()?,
                        terms: Terms {
                            price: r.get::<i64>(15)? as u64,
                            egress_price: r.get::<i64>(16)? as u64,
                            bandwidth: r.get::<i64>(17)? as u64,
                            until: r.get::<Option<i64>>(18)?.map(|u| u as u64),
                        },
                        record: Record {
                            joined: r.get::<i64>(19)? as u64,
                            online_secs: r.get::<i64>(20)? as u64,
                            served_bytes: r.get::<i64>(21)? as u64,
                            repairs_caused: r.get::<i64>(22)? as u64,
                            measured_bandwidth: r.get::<i64>(23)? as u64,
                        },
                    })
                },
            )?;
            Ok(rows)
        })
    }

    /// Starts a write session of `user` opened by the user itself, open until `expires`
    /// unless kept alive.
    pub fn add_session(&self, user: UserId, wrapped_key: &[u8], now: u64, expires: u64) -> Result<u64, StoreError> {
        self.open_session(user, user, wrapped_key, now, expires)
    }

    /// Starts a write session on `user`'s data opened by `opener` (the caller's own id: the
    /// user, or one of its delegates), open until `expires` unless kept alive. Only the
    /// opener may use it.
    pub fn open_session(
        &self,
        user: UserId,
        opener: UserId,
        wrapped_key: &[u8],
        now: u64,
        expires: u64,
    ) -> Result<u64, StoreError> {
        self.write(|conn| {
            // Bounded per opener: each holds a wrapped key of up to 4 KiB in the catalog.
            let open: i64 = conn.query_row(
                "SELECT COUNT(*) FROM sessions WHERE user = ?1 AND opener = ?2 AND expires > ?3",
                params![user.0 as i64, opener.0 as i64, now as i64],
                |r| r.get(0),
            )?;
            if open >= MAX_OPEN_SESSIONS as i64 {
                return Err(StoreError::TooManySessions);
            }
            // The wrapped key stays as long as anything committed under the session does:
            // counted against the quota from now until the row goes (`backup::forget_sessions`),
            // or an object of a hundred bytes could keep 4 KiB of key uncounted.
            check_quota(conn, user.0 as i64, wrapped_key.len() as u64)?;
            let id: i64 = conn.query_row(
                "INSERT INTO sessions (user, wrapped_key, created, expires, opener) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                params![user.0 as i64, wrapped_key, now as i64, expires as i64, opener.0 as i64],
                |r| r.get(0),
            )?;
            catalog_bytes(conn, user.0 as i64, &id.to_string(), wrapped_key.len() as i64)?;
            Ok(id as u64)
        })
    }

    /// Which of `ids` the user stores in live packs.
    ///
    /// Only chunks written by someone `me` may build on count (see [`trusted_writers`]): a
    /// chunk an untrusted delegate wrote may hold anything under its id.
    pub fn known_chunks(&self, user: UserId, me: UserId, ids: &[ChunkId]) -> Result<Vec<ChunkId>, StoreError> {
        self.read(|conn| {
            let trusted = trusted_writers(conn, user, me)?;
            let mut known = Vec::new();
            for id in ids {
                if chunk_writer(conn, user, id)?.is_some_and(|w| trusted.contains(&w)) {
                    known.push(*id);
                }
            }
            Ok(known)
        })
    }

    /// Records a pack whose shards are durable, with its shards and chunks, in one
    /// transaction ([`record_pack`]), without placements: for tests and the catalog
    /// benchmark. A commit from a client goes through [`Self::commit_placed_pack`].
    #[cfg(any(test, feature = "bench"))]
    pub fn commit_pack(&self, p: &NewPack<'_>, now: u64) -> Result<(), StoreError> {
        self.write(|tx| record_pack(tx, p, now))
    }

    /// Records a pack whose shards were placed for `caller`, in one transaction with the use
    /// of their placements: `check` is handed the caller's live reservation of each shard of
    /// `p` (by index into `p.shards`; `None` where it holds none) and refuses the pack or lets
    /// it be recorded. A pack already recorded (a retried commit) is left as it is.
    ///
    /// A commit refused or failed (or whose request was dropped before this) leaves the
    /// placements live, to be given back or to lapse, and so the uploads under them deleted
    /// from their hosts; one recorded uses them up, so a receipt is accepted once.
    pub fn commit_placed_pack<E>(
        &self,
        caller: UserId,
        p: &NewPack<'_>,
        mut check: impl FnMut(&[Option<Reservation>]) -> Result<(), E>,
        now: u64,
    ) -> Result<(), ReserveError<E>> {
        let keys: Vec<(HostId, ShardId)> = p.shards.iter().map(|s| (s.host, s.shard)).collect();
        // `check` runs again if PostgreSQL has the transaction start over.
        self.db.write(|tx| {
            if tx.exists("SELECT 1 FROM packs WHERE id = ?1", params![&p.id.as_bytes()[..]])? {
                return Ok(());
            }
            let reserved = reservations::take(tx, caller, &keys, now)?;
            check(&reserved).map_err(ReserveError::Refused)?;
            record_pack(tx, p, now).map_err(ReserveError::Store)?;
            if reserved.iter().flatten().any(|r| r.narrowed) {
                tx.execute("UPDATE packs SET narrowed = 1 WHERE id = ?1", params![&p.id.as_bytes()[..]])?;
            }
            Ok(())
        })
    }

    /// Makes an object version visible, after checking every chunk it references is stored.
    /// With `first_only` (an appender's commit) it fails if the name has a version already.
    #[allow(clippy::too_many_arguments)]
    pub fn commit_object(
        &self,
        user: UserId,
        name: &str,
        session: u64,
        manifest: &[u8],
        size: u64,
        chunks: &[ChunkId],
        first_only: bool,
        now: u64,
    ) -> Result<u64, StoreError> {
        let object = NewObject { name, session, manifest, meta: None, size, chunks, if_attributes: None };
        Ok(self.commit_object_held(user, &object, first_only, false, (None, None), now)?.0)
    }

    /// [`Store::commit_object`], recording the version's lock and expiry in the same
    /// transaction. With `replace`, the object's older versions are removed in it too (as
    /// [`Store::remove_object`] would, locks respected): an overwrite, not one more version.
    pub fn commit_object_held(
        &self,
        user: UserId,
        object: &NewObject<'_>,
        first_only: bool,
        replace: bool,
        hold: (Option<crate::lock::Lock>, Option<u64>),
        now: u64,
    ) -> Result<(u64, u64), StoreError> {
        self.write(|tx| commit_one(tx, user, object, first_only, replace, hold, now))
    }

    /// Commits several object versions in one transaction, each as
    /// [`Store::commit_object_held`] would (`(object, first_only, replace, hold)`), each on
    /// its own terms: one refused (a name taken, a chunk missing, a lock) leaves nothing of
    /// itself and does not stop the others. One transaction, so one flush to disk for all.
    /// Returns each one's outcome, in order; fails as a whole only if the database does.
    #[allow(clippy::type_complexity)]
    pub fn commit_objects_held(
        &self,
        user: UserId,
        objects: &[(NewObject<'_>, bool, bool, (Option<crate::lock::Lock>, Option<u64>))],
        now: u64,
    ) -> Result<Vec<Result<(u64, u64), StoreError>>, StoreError> {
        self.write(|tx| {
            let mut out = Vec::with_capacity(objects.len());
            for (object, first_only, replace, hold) in objects {
                tx.batch("SAVEPOINT one_object")?;
                match commit_one(tx, user, object, *first_only, *replace, *hold, now) {
                    Ok(done) => {
                        tx.batch("RELEASE SAVEPOINT one_object")?;
                        out.push(Ok(done));
                    }
                    // The database's own failures (a conflict PostgreSQL resolves by running
                    // the whole transaction again) fail it all.
                    Err(e @ StoreError::Sql(_)) => return Err(e),
                    Err(refused) => {
                        tx.batch("ROLLBACK TO SAVEPOINT one_object; RELEASE SAVEPOINT one_object")?;
                        out.push(Err(refused));
                    }
                }
            }
            Ok(out)
        })
    }

    /// The latest version of every object whose name starts with `prefix`.
    pub fn list_objects(&self, user: UserId, prefix: &str) -> Result<Vec<ObjectRow>, StoreError> {
        self.read(|conn| {
            let latest = "SELECT name, version, session, NULL, size, created, meta FROM objects o
                 WHERE user = ?1 AND name >= ?2 {below}
                   AND version = (SELECT MAX(version) FROM objects WHERE user = o.user AND name = o.name)
                 ORDER BY name";
            let u = user.0 as i64;
            Ok(match after_prefix(prefix) {
                Some(end) => {
                    conn.query_map(&latest.replace("{below}", "AND name < ?3"), params![u, prefix, end], object_row)?
                }
                None => conn.query_map(&latest.replace("{below}", ""), params![u, prefix], object_row)?,
            })
        })
    }

    /// One version of an object (the latest when `version` is `None`) and its session's key.
    pub fn get_object(
        &self,
        user: UserId,
        name: &str,
        version: Option<u64>,
    ) -> Result<Option<(ObjectRow, Vec<u8>)>, StoreError> {
        self.read(|conn| {
            let row = conn.query_opt(
                "SELECT name, version, session, manifest, size, created, meta FROM objects
                     WHERE user = ?1 AND name = ?2 AND (?3 = 0 OR version = ?3) ORDER BY version DESC LIMIT 1",
                // 0 asks for the latest; a version named that no row can have (0 or past
                // i64) asks for -1, which none has.
                params![
                    user.0 as i64,
                    name,
                    version.map_or(0, |v| i64::try_from(v).ok().filter(|v| *v > 0).unwrap_or(-1))
                ],
                object_row,
            )?;
            let Some(row) = row else { return Ok(None) };
            let key: Vec<u8> =
                conn.query_row("SELECT wrapped_key FROM sessions WHERE id = ?1", params![row.session as i64], |r| {
                    r.get(0)
                })?;
            Ok(Some((row, key)))
        })
    }

    /// Removes every version of an object. The chunks nothing references any more (open
    /// write sessions included) are dropped at once and packs left empty are released for
    /// deletion from hosts.
    /// Returns (versions removed, packs released).
    pub fn remove_object(&self, user: UserId, name: &str, now: u64) -> Result<(u64, u64), StoreError> {
        self.write(|tx| {
            locks::check_object(tx, user, name, now)?;
            Ok(remove_versions(tx, user, name, None, now)?)
        })
    }

    /// Locations of the user's chunks, with the copies locks keep of them, their packs, shards
    /// and session keys.
    pub fn locate(&self, user: UserId, ids: &[ChunkId]) -> Result<Located, StoreError> {
        self.read(|conn| {
            let mut found = Located::default();
            let u = user.0 as i64;
            let location = |r: &sql::Row| {
                Ok((PackId::from_bytes(r.get::<[u8; 32]>(0)?), r.get::<i64>(1)? as u64, r.get::<i64>(2)? as u64))
            };
            // Rare (see `kept_chunks`): one look saves a query per chunk.
            let any_kept = conn.exists("SELECT 1 FROM kept_chunks WHERE user = ?1", params![u])?;
            for id in ids {
                let key = params![u, &id.as_bytes()[..]];
                let row =
                    conn.query_opt("SELECT pack, off, len FROM chunks WHERE user = ?1 AND id = ?2", key, location)?;
                let Some((pack, off, len)) = row else { continue };
                found.chunks.push((*id, pack, off, len));
                add_pack(conn, &mut found, pack)?;
                if any_kept {
                    let kept = "SELECT pack, off, len FROM kept_chunks WHERE user = ?1 AND id = ?2 ORDER BY pack";
                    for (pack, off, len) in conn.query_map(kept, key, location)? {
                        found.kept.push((*id, pack, off, len));
                        add_pack(conn, &mut found, pack)?;
                    }
                }
            }
            Ok(found)
        })
    }

    /// `user`'s live pack `pack` with its shards, if it has one so named (for a rebuild's
    /// grants: a released pack is not read, as a locate does not name it).
    pub fn pack_of_user(&self, user: UserId, pack: &PackId) -> Result<Option<PackRow>, StoreError> {
        self.read(|conn| {
            if !conn.exists(
                "SELECT 1 FROM packs WHERE id = ?1 AND user = ?2 AND state = 'live'",
                params![&pack.as_bytes()[..], user.0 as i64],
            )? {
                return Ok(None);
            }
            let mut found = Located::default();
            add_pack(conn, &mut found, *pack)?;
            Ok(found.packs.pop())
        })
    }

    /// Whether a pack with this id is recorded (for anyone).
    pub fn pack_exists(&self, pack: &PackId) -> Result<bool, StoreError> {
        self.read(|c| Ok(c.exists("SELECT 1 FROM packs WHERE id = ?1", params![&pack.as_bytes()[..]])?))
    }

    /// Where the user's live packs place `shard` on `host`: (pack, index, shard size).
    pub fn shard_of_user(
        &self,
        user: UserId,
        host: HostId,
        shard: &ShardId,
    ) -> Result<Option<(PackId, u8, u64)>, StoreError> {
        self.read(|conn| {
            let row = conn.query_opt(
                "SELECT s.pack, s.idx, p.shard_size FROM shards s JOIN packs p ON p.id = s.pack
                     WHERE s.host = ?1 AND s.hash = ?2 AND p.user = ?3 AND p.state = 'live' AND s.state = 'ok'",
                params![host.0 as i64, &shard.as_bytes()[..], user.0 as i64],
                |r| Ok((r.get::<[u8; 32]>(0)?, r.get::<u8>(1)?, r.get::<i64>(2)? as u64)),
            )?;
            Ok(row.map(|(p, i, size)| (PackId::from_bytes(p), i, size)))
        })
    }

    /// Shards of released packs still to delete from hosts: (pack, index, shard, host, and
    /// whether a pack not being deleted still places the same shard on the same host, in
    /// which case only the row is forgotten and the host keeps the bytes). Catalogs from
    /// before receipts may hold such pairs; a shard is deleted only when nothing needs it.
    /// Only packs released at or before `released_by` count: the others are within the
    /// release grace.
    #[allow(clippy::type_complexity)]
    pub fn shards_to_delete(
        &self,
        limit: usize,
        released_by: u64,
    ) -> Result<Vec<(PackId, u8, ShardId, HostId, bool)>, StoreError> {
        self.read(|conn| {
            let rows = conn.query_map(
                "SELECT s.pack, s.idx, s.hash, s.host,
                        EXISTS (SELECT 1 FROM shards s2 JOIN packs p2 ON p2.id = s2.pack
                                WHERE s2.host = s.host AND s2.hash = s.hash AND p2.state != 'deleting')
                 FROM shards s JOIN packs p ON p.id = s.pack
                 WHERE p.state = 'deleting' AND COALESCE(p.released, 0) <= ?2 LIMIT ?1",
                params![limit as i64, released_by.min(i64::MAX as u64) as i64],
                |r| {
                    Ok((
                        PackId::from_bytes(r.get::<[u8; 32]>(0)?),
                        r.get(1)?,
                        ShardId::from_bytes(r.get::<[u8; 32]>(2)?),
                        HostId(r.get::<i64>(3)? as u64),
                        r.get(4)?,
                    ))
                },
            )?;
            Ok(rows)
        })
    }

    /// Forgets a deleted shard, and its pack once no shard is left.
    pub fn shard_deleted(&self, pack: &PackId, index: u8, fence: Option<&Fence>, now: u64) -> Result<(), StoreError> {
        self.write(|tx| {
            leases::check(tx, fence, now)?;
            let row: Option<(i64, i64)> = tx
                .query_opt(
                    "SELECT s.host, p.shard_size FROM shards s JOIN packs p ON p.id = s.pack WHERE s.pack = ?1 AND s.idx = ?2",
                    params![&pack.as_bytes()[..], index],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
            if let Some((host, size)) = row {
                tx.execute("DELETE FROM shards WHERE pack = ?1 AND idx = ?2", params![&pack.as_bytes()[..], index])?;
                held(tx, HostId(host as u64), -1, -size)?;
            }
            tx.execute(
                "DELETE FROM packs WHERE id = ?1 AND state = 'deleting' AND NOT EXISTS (SELECT 1 FROM shards WHERE pack = ?1)",
                params![&pack.as_bytes()[..]],
            )?;
            Ok(())
        })
    }
}

/// What [`Store::locate`] found.
#[derive(Debug, Default)]
pub struct Located {
    /// (chunk, pack, offset, sealed length) of each chunk found.
    pub chunks: Vec<(ChunkId, PackId, u64, u64)>,
    /// Copies a lock keeps of those chunks beside the ones in `chunks` (see `kept_chunks`):
    /// for a reader to try when that one fails it.
    pub kept: Vec<(ChunkId, PackId, u64, u64)>,
    /// Every pack those lie in, with its shards.
    pub packs: Vec<PackRow>,
    /// The wrapped data keys of the packs' sessions.
    pub sessions: Vec<(u64, Vec<u8>)>,
}

/// Adds `pack`, and its session's key, to what a locate found, once.
fn add_pack(conn: &Sql<'_>, found: &mut Located, pack: PackId) -> Result<(), StoreError> {
    if found.packs.iter().any(|p| p.id == pack) {
        return Ok(());
    }
    let mut p = conn.query_row(
        "SELECT session, size, k, m, shard_size FROM packs WHERE id = ?1",
        params![&pack.as_bytes()[..]],
        |r| {
            Ok(PackRow {
                id: pack,
                session: r.get::<i64>(0)? as u64,
                size: r.get::<i64>(1)? as u64,
                k: r.get(2)?,
                m: r.get(3)?,
                shard_size: r.get::<i64>(4)? as u64,
                shards: Vec::new(),
            })
        },
    )?;
    p.shards = shards_of(conn, &pack)?;
    if !found.sessions.iter().any(|(s, _)| *s == p.session) {
        let key =
            conn.query_row("SELECT wrapped_key FROM sessions WHERE id = ?1", params![p.session as i64], |r| r.get(0))?;
        found.sessions.push((p.session, key));
    }
    found.packs.push(p);
    Ok(())
}

/// Who wrote the pack `user`'s chunk `id` lies in (the opener of its session), if stored.
pub(crate) fn chunk_writer(conn: &Sql<'_>, user: UserId, id: &ChunkId) -> Result<Option<i64>, StoreError> {
    Ok(conn.query_opt(
        "SELECT COALESCE(s.opener, s.user) FROM chunks c JOIN packs p ON p.id = c.pack
             JOIN sessions s ON s.id = p.session WHERE c.user = ?1 AND c.id = ?2",
        params![user.0 as i64, &id.as_bytes()[..]],
        |r| r.get(0),
    )?)
}

/// The writers whose chunks `me`, working on `user`'s data, may build on (deduplicate
/// against): the owner, `me` itself, and the delegates the owner trusts. An untrusted
/// delegate holds the dedup key, so it can store garbage under the id of a chunk the owner
/// has not stored yet; nobody else deduplicates against that.
pub(crate) fn trusted_writers(
    conn: &Sql<'_>,
    user: UserId,
    me: UserId,
) -> Result<std::collections::HashSet<i64>, StoreError> {
    let mut set: std::collections::HashSet<i64> = conn
        .query_map("SELECT id FROM users WHERE owner = ?1 AND trusted = 1", params![user.0 as i64], |r| r.get(0))?
        .into_iter()
        .collect();
    set.insert(user.0 as i64);
    set.insert(me.0 as i64);
    Ok(set)
}

/// Runs one migration, statement by statement. A statement on a table this catalog does not
/// have yet is skipped: the table is created afterwards from [`SCHEMA`], already in its
/// current form; so is adding a column that is there already (the statement ran before). (Only SQLite catalogs are older than PostgreSQL support.)
fn migrate(conn: &Sql<'_>, sql: &str) -> Result<(), StoreError> {
    for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        // A catalog marked older than its tables (one restored from a copy) may have a
        // column already: SQLite's error is let through below, PostgreSQL is told.
        let statement = match conn.is_postgres() {
            true => sql::postgres_ddl(statement).replace("ADD COLUMN ", "ADD COLUMN IF NOT EXISTS "),
            false => statement.to_owned(),
        };
        match conn.batch(&statement) {
            Err(SqlError::Sqlite(rusqlite::Error::SqliteFailure(_, Some(msg))))
                if msg.starts_with("no such table") || msg.starts_with("duplicate column name") => {}
            other => other?,
        }
    }
    Ok(())
}

/// The least string greater than every string starting with `prefix` (none for the empty
/// prefix): names with a prefix are a range of the index on (user, name), as text compares
/// by code point (byte order of UTF-8) on both back ends.
fn after_prefix(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// One object version's commit, in `tx` (see [`Store::commit_object_held`]).
fn commit_one(
    tx: &Sql<'_>,
    user: UserId,
    object: &NewObject<'_>,
    first_only: bool,
    replace: bool,
    hold: (Option<crate::lock::Lock>, Option<u64>),
    now: u64,
) -> Result<(u64, u64), StoreError> {
    let NewObject { name, session, manifest, meta, size, chunks, if_attributes } = *object;
    if replace {
        locks::check_object(tx, user, name, now)?;
    }
    let session_ok =
        tx.exists("SELECT 1 FROM sessions WHERE id = ?1 AND user = ?2", params![session as i64, user.0 as i64])?;
    if !session_ok {
        return Err(StoreError::BadReference);
    }
    let mut missing = 0;
    {
        let stmt = "SELECT 1 FROM chunks WHERE user = ?1 AND id = ?2";
        for c in chunks {
            if !tx.exists(stmt, params![user.0 as i64, &c.as_bytes()[..]])? {
                missing += 1;
            }
        }
    }
    if missing > 0 {
        return Err(StoreError::MissingChunks(missing));
    }
    let version: u64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) + 1 FROM objects WHERE user = ?1 AND name = ?2",
        params![user.0 as i64, name],
        |r| r.get::<i64>(0),
    )? as u64;
    if first_only && version > 1 {
        return Err(StoreError::NameTaken);
    }
    if let Some(tag) = if_attributes {
        let latest: Option<Option<Vec<u8>>> = tx.query_opt(
            "SELECT meta FROM objects WHERE user = ?1 AND name = ?2 ORDER BY version DESC LIMIT 1",
            params![user.0 as i64, name],
            |r| r.get(0),
        )?;
        let matched = latest.flatten().is_some_and(|m| scatter_proto::api::attributes_tag(&m) == *tag);
        if !matched {
            return Err(StoreError::Changed);
        }
    }
    // The catalog keeps the version's name, manifest, attributes and chunk references: they
    // count against the quota, or an account could grow the catalog (and its backups on the
    // hosts) without bound with large manifests, or long chunk lists, of no data.
    let refs = chunks.iter().collect::<std::collections::HashSet<_>>().len() as u64;
    let cost = name.len() as u64
        + manifest.len() as u64
        + meta.map_or(0, |m| m.len() as u64)
        + OBJECT_ROW_BYTES
        + refs * backup::SNAPSHOT_REF_BYTES;
    check_quota(tx, user.0 as i64, cost)?;
    let object: i64 = tx.query_row(
        "INSERT INTO objects (user, name, version, session, manifest, size, created, meta, refs)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id",
        params![
            user.0 as i64,
            name,
            version as i64,
            session as i64,
            manifest,
            size as i64,
            now as i64,
            meta,
            refs as i64
        ],
        |r| r.get(0),
    )?;
    catalog_bytes(tx, user.0 as i64, name, cost as i64)?;
    {
        let stmt = "INSERT INTO object_chunks (object, user, chunk) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING";
        for c in chunks {
            tx.execute(stmt, params![object, user.0 as i64, &c.as_bytes()[..]])?;
        }
    }
    locks::record(tx, scatter_proto::api::LockTarget::Object, &object.to_string(), user, hold.0, hold.1)?;
    let released = if replace { remove_versions(tx, user, name, Some(version), now)?.1 } else { 0 };
    Ok((version, released))
}

/// An object version to commit.
#[derive(Debug, Clone, Copy)]
pub struct NewObject<'a> {
    /// Encrypted name.
    pub name: &'a str,
    /// The session whose key sealed the manifest.
    pub session: u64,
    /// Sealed manifest.
    pub manifest: &'a [u8],
    /// Sealed attributes, if any.
    pub meta: Option<&'a [u8]>,
    /// Plaintext size.
    pub size: u64,
    /// Every chunk it references.
    pub chunks: &'a [ChunkId],
    /// Commit only if the name's latest version carries the sealed attributes of this tag
    /// ([`StoreError::Changed`]).
    pub if_attributes: Option<&'a scatter_proto::api::AttributesTag>,
}

/// Removes the versions of an object (those below `below`, or all), their holds and
/// references; the chunks nothing references any more are dropped and packs left empty
/// released. Locks are the caller's to check. Returns (versions removed, packs released).
fn remove_versions(
    tx: &Sql<'_>,
    user: UserId,
    name: &str,
    below: Option<u64>,
    now: u64,
) -> Result<(u64, u64), SqlError> {
    let u = user.0 as i64;
    let below = below.map_or(i64::MAX, |v| v as i64);
    let versions = "SELECT id FROM objects WHERE user = ?1 AND name = ?2 AND version < ?3";
    tx.execute(
        &format!("DELETE FROM holds WHERE target = 'object' AND id IN (SELECT CAST(id AS TEXT) FROM ({versions}) v)"),
        params![u, name, below],
    )?;
    // Only the chunks the removed versions referenced can have lost their last reference:
    // those are looked at, not every chunk of the user (prune does that).
    let referenced: Vec<Vec<u8>> = tx.query_map(
        &format!("SELECT DISTINCT chunk FROM object_chunks WHERE object IN ({versions})"),
        params![u, name, below],
        |r| r.get(0),
    )?;
    tx.execute(&format!("DELETE FROM object_chunks WHERE object IN ({versions})"), params![u, name, below])?;
    let freed: i64 = tx.query_row(
        &format!(
            "SELECT CAST(COALESCE(SUM({OBJECT_BYTES}), 0) AS BIGINT) FROM objects WHERE user = ?1 AND name = ?2 AND version < ?3"
        ),
        params![u, name, below],
        |r| r.get(0),
    )?;
    catalog_bytes(tx, u, name, -freed)?;
    let removed = tx
        .execute("DELETE FROM objects WHERE user = ?1 AND name = ?2 AND version < ?3", params![u, name, below])?
        as u64;
    let released = locks::drop_unreferenced(tx, user, referenced, now)?;
    Ok((removed, released))
}

pub(super) fn object_row(r: &sql::Row) -> Result<ObjectRow, SqlError> {
    Ok(ObjectRow {
        name: r.get(0)?,
        version: r.get::<i64>(1)? as u64,
        session: r.get::<i64>(2)? as u64,
        manifest: r.get::<Option<Vec<u8>>>(3)?.unwrap_or_default(),
        size: r.get::<i64>(4)? as u64,
        created: r.get::<i64>(5)? as u64,
        meta: r.get(6)?,
    })
}

fn shards_of(conn: &Sql<'_>, pack: &PackId) -> Result<Vec<(u8, ShardId, HostId, ShardState)>, StoreError> {
    let rows = conn.query_map(
        "SELECT idx, hash, host, state FROM shards WHERE pack = ?1 ORDER BY idx",
        params![&pack.as_bytes()[..]],
        |r| Ok((r.get(0)?, ShardId::from_bytes(r.get::<[u8; 32]>(1)?), HostId(r.get::<i64>(2)? as u64), r.get(3)?)),
    )?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use scatter_proto::api::Role;

    use super::*;

    crate::store::testing::conformance! {
        fn a_prefix_lists_exactly_the_names_that_start_with_it() {
            let (_dir, store) = testing::catalog();
            store.add_token(&[1; 32], "ann", Role::User, None, None).expect("token");
            let user = store.redeem_token(&[1; 32], "pk", &[2; 32], "", 0).expect("redeem").expect("user").id;
            let session = store.add_session(user, b"k", 0, 100).expect("session");
            let names = [
                "a", "a/", "a/x", "a/y", "a/yy", "a-b/z", "a_b", "ab", "a.b", "b/c", "é/1", "\u{D7FF}/s", "\u{E000}/t",
                "a\u{10FFFF}/q", "a\u{10FFFF}", "\u{10FFFF}", "\u{10FFFF}x", "Z", "",
            ];
            for name in names {
                store.commit_object(user, name, session, b"m", 1, &[], false, 1).expect("commit");
            }
            // A second version: only the latest is listed.
            assert_eq!(store.commit_object(user, "a/x", session, b"m", 2, &[], false, 2).expect("again"), 2);
            for prefix in ["", "a", "a/", "a/y", "a-", "a\u{10FFFF}", "\u{10FFFF}", "\u{D7FF}", "é", "é/1", "z", "a/x/"] {
                let listed: Vec<(String, u64)> = store
                    .list_objects(user, prefix)
                    .expect("list")
                    .into_iter()
                    .map(|o| (o.name, o.version))
                    .collect();
                let mut want: Vec<&str> = names.iter().copied().filter(|n| n.starts_with(prefix)).collect();
                want.sort_unstable();
                let want: Vec<(String, u64)> =
                    want.into_iter().map(|n| (n.to_owned(), if n == "a/x" { 2 } else { 1 })).collect();
                assert_eq!(listed, want, "prefix {prefix:?}");
            }
        }
    }

    #[test]
    fn a_prefix_ends_below_the_next_string_in_code_point_order() {
        assert_eq!(after_prefix(""), None);
        assert_eq!(after_prefix("ab").as_deref(), Some("ac"));
        assert_eq!(after_prefix("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(after_prefix("\u{10FFFF}"), None);
        assert_eq!(after_prefix("x\u{D7FF}").as_deref(), Some("x\u{E000}"), "surrogates are no chars");
        for name in ["ab", "ab/", "ab\u{10FFFF}zz", "abc\u{FFFF}"] {
            assert!(name.starts_with("ab") && name < after_prefix("ab").expect("bound").as_str());
        }
    }
}
