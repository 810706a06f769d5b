//! JSON bodies of the coordinator's HTTP API (`/v1/...`) and the host's error replies.
//!
//! Binary fields (wrapped keys, sealed manifests) travel as base64 strings. Users
//! authenticate with `Authorization: Scatter <credential>` (see [`crate::auth`]); hosts send
//! their secret in the body of their heartbeats. Shard bytes never pass through the coordinator.

use scatter_core::{ByteSize, ChunkId, DeviceId, HostId, PackId, ShardId, UserId};
use serde::{Deserialize, Serialize};

use crate::grant::SignedGrant;
use crate::receipt::SignedReceipt;

/// Header a client sends grants in, to hosts.
pub const GRANT_HEADER: &str = "scatter-grant";

/// What a delegate (a reader, an appender, a gateway's write-only key) is told when its
/// owner's quota is used up: never the owner's figures, which placements of other sizes would
/// measure to the byte.
pub const DELEGATE_QUOTA: &str =
    "the quota of the account this one stores for is exhausted; ask its owner to free space or get more";

/// What went wrong, for programs: the stable code of every error reply (as snake_case text
/// on the wire), from the coordinator and hosts alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No valid credential (or host secret).
    Unauthorized,
    /// The caller's role does not allow it.
    Forbidden,
    /// No such thing.
    NotFound,
    /// The request is malformed.
    BadRequest,
    /// The request body is larger than this request takes.
    TooLarge,
    /// Not enough hosts can take the data.
    TooFewHosts,
    /// A placement failed only because hosts are late with their heartbeats: wait and ask
    /// again.
    HostsLate,
    /// The request conflicts with what is recorded.
    Conflict,
    /// Something else must finish first; retry.
    Busy,
    /// The user's quota is used up.
    Quota,
    /// Too many failures from this peer; wait.
    Throttled,
    /// A conditional commit found the object changed since the version it named.
    Changed,
    /// The request was sent too slowly.
    TooSlow,
    /// The server failed.
    Internal,
    /// A host refused the grant.
    Grant,
    /// A host served a read grant's bytes as often as it may: the reader asks the coordinator
    /// for a new grant (a new locate) to read them again.
    GrantSpent,
    /// The host's offered period is over.
    PeriodOver,
    /// The shard a host holds is damaged.
    Corrupt,
    /// Bytes sent to a host do not hash to the shard id.
    HashMismatch,
    /// A host's offered space or disk is full.
    Full,
    /// A range outside the shard.
    BadRange,
    /// A host's disk failed.
    Io,
    /// (Client side) an error reply that could not be read.
    BadReply,
    /// (Client side) an HTTP error without a reply body.
    Http,
    /// A code this build does not know (from a newer peer).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The code as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::TooFewHosts => "too_few_hosts",
            ErrorCode::HostsLate => "hosts_late",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Busy => "busy",
            ErrorCode::Quota => "quota",
            ErrorCode::Throttled => "throttled",
            ErrorCode::Changed => "changed",
            ErrorCode::TooSlow => "too_slow",
            ErrorCode::Internal => "internal",
            ErrorCode::Grant => "grant",
            ErrorCode::GrantSpent => "grant_spent",
            ErrorCode::PeriodOver => "period_over",
            ErrorCode::Corrupt => "corrupt",
            ErrorCode::HashMismatch => "hash_mismatch",
            ErrorCode::Full => "full",
            ErrorCode::BadRange => "bad_range",
            ErrorCode::Io => "io",
            ErrorCode::BadReply => "bad_reply",
            ErrorCode::Http => "http",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Largest shard a host accepts, and so the most bytes a client takes from one shard read.
pub const MAX_SHARD: u64 = 64 << 20;

/// Every error reply, from coordinator and hosts alike.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable machine-readable code.
    pub code: ErrorCode,
    /// One sentence: what happened and what to do.
    pub error: String,
}

/// A host asks to join the grid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The grid's join token (from the coordinator's `join-token` file).
    pub join_token: String,
    /// Base URL where clients reach the host's shard API.
    pub address: String,
    /// Failure-domain label (rack, building, city).
    pub zone: String,
    /// Bytes the host offers.
    pub capacity: ByteSize,
    /// The public half (Ed25519, hex) of the host's lasting receipt key, which signs the
    /// receipts for shards it stores.
    #[serde(default)]
    pub receipt_key: Option<String>,
    /// The terms it offers.
    #[serde(default)]
    pub terms: HostTerms,
}

/// The terms a host offers, declared at join and with every heartbeat (they may change
/// across restarts). Prices are in millionths of the grid's currency unit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostTerms {
    /// Price per GiB-month stored.
    #[serde(default)]
    pub price: u64,
    /// Price per GiB served.
    #[serde(default)]
    pub egress_price: u64,
    /// Declared bandwidth, bytes per second (0: not declared).
    #[serde(default)]
    pub bandwidth: u64,
    /// Unix time the period it offers ends (none: open-ended).
    #[serde(default)]
    pub until: Option<u64>,
}

/// A host's reputation score (0–100) and its parts (percentages), from what the coordinator
/// measured: see the coordinator's `reputation` module.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReputationParts {
    /// The score: the product of the parts.
    pub score: u8,
    /// Audits passed, smoothed.
    pub audits: u8,
    /// Share of its life it was heard from.
    pub uptime: u8,
    /// Age, up to 30 days.
    pub age: u8,
    /// One minus the share of its shards that had to be rebuilt because of it.
    pub repairs: u8,
}

/// What a user asks of the hosts their data goes to. Every condition is optional; a
/// per-command policy overrides the user's stored one condition by condition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Highest price per GiB-month (millionths) a host may ask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price: Option<u64>,
    /// Zones data may go to (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[serde(deserialize_with = "crate::bounded::zones")]
    pub zones: Vec<String>,
    /// Zones data must not go to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[serde(deserialize_with = "crate::bounded::zones")]
    pub exclude_zones: Vec<String>,
    /// Lowest reputation score (0–100) a host must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_reputation: Option<u8>,
    /// Shortest remaining offered period, in seconds, a host must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_period_secs: Option<u64>,
}

impl Policy {
    /// This policy with every condition `over` sets replacing this one's.
    pub fn overridden_by(&self, over: &Policy) -> Policy {
        Policy {
            max_price: over.max_price.or(self.max_price),
            zones: if over.zones.is_empty() { self.zones.clone() } else { over.zones.clone() },
            exclude_zones: if over.exclude_zones.is_empty() {
                self.exclude_zones.clone()
            } else {
                over.exclude_zones.clone()
            },
            min_reputation: over.min_reputation.or(self.min_reputation),
            min_period_secs: over.min_period_secs.or(self.min_period_secs),
        }
    }

    /// Whether it asks for nothing.
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }
}

impl std::fmt::Display for Policy {
    /// The policy in words, e.g. `max price 0.5, excluded zones eu-west, min reputation 60`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(max) = self.max_price {
            parts.push(format!("max price {}", format_price(max)));
        }
        if !self.zones.is_empty() {
            parts.push(format!("zones {}", self.zones.join(" ")));
        }
        if !self.exclude_zones.is_empty() {
            parts.push(format!("excluded zones {}", self.exclude_zones.join(" ")));
        }
        if let Some(r) = self.min_reputation {
            parts.push(format!("min reputation {r}"));
        }
        if let Some(s) = self.min_period_secs {
            parts.push(format!("min remaining period {}", crate::api::format_span(s)));
        }
        if parts.is_empty() {
            f.write_str("none (any host)")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// Formats a price in millionths as a decimal amount with no trailing zeros: `1.25`, `3`.
pub fn format_price(micro: u64) -> String {
    let (whole, frac) = (micro / 1_000_000, micro % 1_000_000);
    if frac == 0 {
        return whole.to_string();
    }
    format!("{whole}.{}", format!("{frac:06}").trim_end_matches('0'))
}

/// Formats seconds as the largest whole unit: `90d`, `36h`, `10m`, `45s`.
pub fn format_span(secs: u64) -> String {
    match secs {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Zones a policy names, at most.
pub const MAX_ZONES: usize = 64;

/// The coordinator's answer to a join.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinResponse {
    /// The host's id.
    pub host_id: HostId,
    /// Secret the host proves itself with on heartbeats.
    pub host_secret: String,
    /// The coordinator's Ed25519 public key (hex), which signs grants.
    pub coordinator_key: String,
    /// Something the host's operator should know (a host already registered at this address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// A host asks for a TLS certificate (at every start: its key pair is new each time).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostCertRequest {
    /// Which host.
    pub host_id: HostId,
    /// Its secret from the join.
    pub host_secret: String,
    /// The address it will serve at; the certificate names its host part.
    pub address: String,
    /// Its ECDSA P-256 public key, raw uncompressed point in hex (the private key stays on
    /// the host).
    pub public_key: String,
}

/// The host's certificate, signed by the grid CA.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostCertResponse {
    /// The certificate (PEM).
    pub certificate: String,
    /// The grid CA's certificate (PEM), which the host presents after its own.
    pub ca: String,
}

/// A user asks the grid CA to certify its S3 gateway's names (`scatter gateway
/// --grid-cert`): the certificate carries a usage that hosts' and the coordinator's clients
/// refuse, so it serves S3 clients only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewayCertRequest {
    /// IP addresses or DNS names the gateway is reached at (at most 8).
    #[serde(deserialize_with = "crate::bounded::list")]
    pub names: Vec<String>,
    /// Its ECDSA P-256 public key, raw uncompressed point in hex.
    pub public_key: String,
}

/// A name bound to an account's S3 gateways (`GET /v1/gateway/names`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewayNameEntry {
    /// The name (an IP address or DNS name).
    pub name: String,
    /// The account (or delegate) that had it certified.
    pub account: UserId,
    /// When it was bound (Unix seconds).
    pub since: u64,
    /// Until when certificates issued for it are valid (Unix seconds).
    pub certified_until: u64,
    /// Given up: it passes to whoever asks for it at `certified_until`.
    pub released: bool,
}

/// `GET /v1/gateway/names`: the names the caller's gateways hold (its own and, for an
/// account, its delegates'), or every account's for an admin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewayNamesResponse {
    /// By name.
    pub names: Vec<GatewayNameEntry>,
    /// The most names an account's gateways (with its delegates') may hold at once.
    pub limit: u32,
}

/// `POST /v1/gateway/names/release`: give up a name the caller's gateways hold (an admin:
/// any account's). It no longer counts against the account's limit, and passes to whoever
/// asks for it once the certificates issued for it have expired.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseGatewayNameRequest {
    /// The name.
    pub name: String,
}

/// A host's periodic report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// Which host.
    pub host_id: HostId,
    /// Its secret from the join.
    pub host_secret: String,
    /// Its current address (it may change across restarts).
    pub address: String,
    /// Bytes the host offers (it may be changed on the command line across restarts).
    pub capacity: ByteSize,
    /// Bytes of shards it holds.
    pub used: ByteSize,
    /// Bytes free on its disk.
    pub free: ByteSize,
    /// Requests refused for a missing or bad grant since the last heartbeat.
    #[serde(default)]
    pub refused_grants: u64,
    /// What the first of them were (at most [`MAX_REFUSALS`]), for the audit trail.
    #[serde(default)]
    #[serde(deserialize_with = "crate::bounded::refusals")]
    pub refusals: Vec<String>,
    /// Reads refused since the last heartbeat because their grant's bytes were served twice
    /// already. Counted apart from `refused_grants`: an honest restore meets this when it
    /// wants the same bytes again (copies of a file), and reads them under a new grant.
    #[serde(default)]
    pub spent_grants: u64,
    /// The public half (Ed25519, hex) of the host's receipt key: registered by the first
    /// heartbeat that carries it if the host joined before receipts existed.
    #[serde(default)]
    pub receipt_key: Option<String>,
    /// The terms it offers now.
    #[serde(default)]
    pub terms: HostTerms,
    /// Shard bytes it served to readers since the last heartbeat (a claim: counted, not
    /// trusted for anything but the record).
    #[serde(default)]
    pub served: u64,
}

/// The coordinator's answer to a heartbeat.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// The public half (Ed25519, hex) of the grid's recovery access key: whoever proves they
    /// hold it may list and read the catalog backups this host keeps. A host keeps the
    /// first one it learns (see `scatter_host`); none from a coordinator without backups.
    #[serde(default)]
    pub recovery_access_key: Option<String>,
    /// The host's standing in the catalog (`active`, `draining`, `disabled`,
    /// `disqualified`, `retired`), for its log; none from an older coordinator.
    #[serde(default)]
    pub standing: Option<String>,
}

/// Answer of `POST /v1/admin/catalog-backup`: the backup just taken, or why none was.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogBackupResponse {
    /// Its sequence number.
    pub seq: u64,
    /// When it was taken (unix seconds).
    pub time: u64,
    /// Bytes encrypted (the catalog and keys).
    pub size: u64,
    /// Data shards.
    pub k: u8,
    /// Parity shards.
    pub m: u8,
    /// Hosts that stored a shard.
    pub hosts: usize,
    /// False when nothing changed since the last backup (that one still stands).
    pub taken: bool,
}

/// How many refusals a heartbeat describes; the rest are only counted.
pub const MAX_REFUSALS: usize = 16;

/// The most shards a host's inventory lists (a 64 MiB request body holds about 800 000).
pub const MAX_INVENTORY: usize = 1_000_000;

/// The most ids one lookup, locate, snapshot reference or forget request lists.
pub const MAX_IDS: usize = 100_000;

/// The most shards a pack has (indices are bytes).
pub const MAX_SHARDS: usize = 256;

/// The most hosts one request names.
pub const MAX_HOSTS: usize = 100_000;

/// The most chunks an object or a pack lists (a 64 MiB request body holds about 950 000).
pub const MAX_LIST: usize = 1_000_000;

/// A host's shard inventory, sent every few heartbeats for reconciliation: in full now and
/// then, and in between as what changed since the last one the coordinator acknowledged,
/// so that what a round costs follows the changes, not what the host holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InventoryRequest {
    /// Which host.
    pub host_id: HostId,
    /// Its secret from the join.
    pub host_secret: String,
    /// Every intact shard it holds, with its age in seconds; with `since`, only the shards
    /// added since that inventory (and those the coordinator left pending).
    #[serde(deserialize_with = "crate::bounded::inventory")]
    pub shards: Vec<(ShardId, u64)>,
    /// The acknowledgement ([`InventoryResponse::ack`]) of the inventory this one changes;
    /// none for a full inventory.
    #[serde(default)]
    pub since: Option<u64>,
    /// With `since`: the shards held then and not now (deleted, or found corrupt).
    #[serde(default, deserialize_with = "crate::bounded::inventory")]
    pub removed: Vec<ShardId>,
}

/// What the coordinator made of an inventory.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InventoryResponse {
    /// Shards the catalog expected on the host that it lacks: marked lost, to be repaired.
    pub lost: u64,
    /// Shards the host holds that the catalog does not know (older than the grace): to delete.
    pub orphaned: u64,
    /// Shards the catalog places on the host without a receipt (stored before receipts
    /// existed): the host signs receipts for those it holds and sends them to
    /// `POST /v1/hosts/receipts`.
    #[serde(default)]
    pub receipts_wanted: Vec<ShardId>,
    /// What the next inventory may name as `since` to send only what changed; none when a
    /// change-only inventory did not follow the one acknowledged last (the host then sends a
    /// full one).
    #[serde(default)]
    pub ack: Option<u64>,
    /// Added shards too young to judge (an upload may be about to commit them): the host
    /// lists them again next time.
    #[serde(default)]
    pub pending: Vec<ShardId>,
    /// Missing shards of packs too young to judge (an upload may have been under way when
    /// the host listed its shards): the host names them as removed again next time.
    #[serde(default)]
    pub unsettled: Vec<ShardId>,
}

/// The header a host names itself with on its requests to the coordinator: `ID SECRET` (its
/// id and the secret from its join, as in the body). Checked before the body is read, so that
/// a host's heartbeats and inventories do not wait on the room that requests from anyone who
/// can connect share.
pub const HOST_HEADER: &str = "scatter-host";

/// [`HOST_HEADER`]'s value for host `id` with `secret`.
pub fn host_header(id: HostId, secret: &str) -> String {
    format!("{} {secret}", id.0)
}

/// The host id and secret in a [`HOST_HEADER`] value.
pub fn parse_host_header(value: &str) -> Option<(HostId, &str)> {
    let (id, secret) = value.split_once(' ')?;
    Some((HostId(id.parse().ok()?), secret))
}

/// Most receipts asked for in one inventory answer (and sent in one request).
pub const MAX_RECEIPTS: usize = 512;

/// `POST /v1/hosts/receipts`: receipts for shards stored before receipts existed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceiptsRequest {
    /// Which host.
    pub host_id: HostId,
    /// Its secret from the join.
    pub host_secret: String,
    /// At most [`MAX_RECEIPTS`] receipts, answering no grant.
    #[serde(deserialize_with = "crate::bounded::receipts")]
    pub receipts: Vec<SignedReceipt>,
}

/// A host's answer to a shard upload: its receipt for the now durable shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredResponse {
    /// Signed by the host's receipt key; answers the upload's grant.
    pub receipt: SignedReceipt,
}

/// A user registers its public key with a token (the admin token, or later an invite).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// One-time token.
    pub token: String,
    /// The user's age X25519 recipient (`age1…`).
    pub public_key: String,
    /// This device's Ed25519 public key (hex), which signs its request credentials.
    pub device_key: String,
    /// A name for this device in `scatter key devices` (e.g. the machine's host name).
    #[serde(default)]
    pub device_name: String,
    /// The keys the device brings are write-only (`key export --write-only`): a reader's
    /// invite is refused with them, before it is spent (a reader could never read).
    #[serde(default)]
    pub write_only: bool,
}

/// `POST /v1/users/recover`: a new device registers with a recovery code, proven by a
/// signature over [`scatter_core::recovery::claim`] (the code itself never leaves the user).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoverRequest {
    /// The code's verifier (hex).
    pub verifier: String,
    /// The claim's signature (hex).
    pub signature: String,
    /// The claim's time (unix seconds).
    pub time: u64,
    /// This device's Ed25519 public key (hex).
    pub device_key: String,
    /// A name for this device.
    #[serde(default)]
    pub device_name: String,
}

/// The answer to a recovery: who the device now signs for, and the key file kept for the
/// code (sealed to it, and under the passphrase inside).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoverResponse {
    /// The account's id.
    pub user_id: UserId,
    /// The new device's id.
    pub device_id: DeviceId,
    /// The account's role.
    pub role: Role,
    /// The kept key file (base64), to open with the code and then the passphrase.
    pub escrow: String,
}

/// One of the caller's devices (`GET /v1/devices`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceEntry {
    /// Its id, for `scatter key revoke`.
    pub id: DeviceId,
    /// The name it registered with.
    pub name: String,
    /// When it registered (unix seconds).
    pub created: u64,
    /// When it was revoked, if it was.
    pub revoked: Option<u64>,
    /// Registered with a recovery code and not yet shown to hold the keys: it may do nothing
    /// else until it does (`scatter key recovery-code` on it, with the passphrase).
    #[serde(default)]
    pub unproven: bool,
}

/// The caller's devices, and which of them made the request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevicesResponse {
    /// Oldest first.
    pub devices: Vec<DeviceEntry>,
    /// The device that asked.
    pub current: DeviceId,
}

/// `POST /v1/devices/revoke`: refuse one of the caller's devices from now on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokeDeviceRequest {
    /// The device.
    pub device: DeviceId,
    /// The user's owner key (hex), as for a change of the recovery code: required once the
    /// account has one, so a device's key alone cannot revoke the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The owner key's signature (hex) over the revocation
    /// (see `scatter_core::recovery::revocation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
}

/// A recovery code as the coordinator keeps it for the user's devices: what checks it, and
/// the recipient key files are sealed to, bound to the user's keys
/// ([`scatter_core::recovery::binding`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoveryCodeInfo {
    /// The code's verifier (hex).
    pub verifier: String,
    /// The age recipient (`age1…`).
    pub recipient: String,
    /// The binding MAC (hex).
    pub binding: String,
}

/// `PUT /v1/recovery`: a new recovery code (voiding the old one) with the key file sealed to
/// it; `POST /v1/recovery/escrow` re-seals the key file for the same code (`info` unchanged).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoveryCodeRequest {
    /// The code.
    pub info: RecoveryCodeInfo,
    /// The key file sealed to the code's recipient (base64).
    pub escrow: String,
    /// The user's owner key (hex Ed25519 public key, derived from the user's keys): the
    /// coordinator keeps the first it sees and refuses changes signed with another.
    pub owner: String,
    /// The owner key's signature (hex) over the change (see `scatter_core::recovery::change`).
    pub proof: String,
}

/// `GET /v1/recovery`: the caller's recovery code, if it has one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoveryCodeResponse {
    /// `None` before the first code, and once a code was used until a new one is made.
    pub code: Option<RecoveryCodeInfo>,
}

/// `POST /v1/admin/users/device`: a one-time token that adds a device to an existing user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceInviteRequest {
    /// The user.
    pub user: UserId,
}

/// What an account may do. On the wire and in the catalog, its lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, on the whole grid.
    Admin,
    /// Its own data: store, read, remove.
    User,
    /// Reads one user's data (a delegate).
    Reader,
    /// Adds to one user's data, never reads or removes it (a delegate).
    Appender,
}

impl Role {
    /// Every role, for messages.
    pub const ALL: [Role; 4] = [Role::Admin, Role::User, Role::Reader, Role::Appender];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
            Role::Reader => "reader",
            Role::Appender => "appender",
        }
    }

    /// The role of a name, if it is one.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether accounts of this role have a recovery code: those that own data (a delegate
    /// is invited again by the grid's admin, with its owner's keys).
    pub fn has_recovery_code(self) -> bool {
        matches!(self, Role::Admin | Role::User)
    }

    /// Whether it works on another user's data (readers and appenders).
    pub fn is_delegate(self) -> bool {
        matches!(self, Role::Reader | Role::Appender)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The coordinator's answer to a registration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterResponse {
    /// The new user's id.
    pub user_id: UserId,
    /// The new device's id, which signs its credentials.
    pub device_id: DeviceId,
    /// The user's role.
    pub role: Role,
}

/// Availability of a host as the coordinator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostState {
    /// Heartbeating.
    Online,
    /// Missed heartbeats for half the grace: gets no new shards, its shards still count.
    Suspect,
    /// Missed heartbeats for longer than the grace: its shards are repaired elsewhere.
    Offline,
    /// Its shards are being moved off; gets no new shards.
    Draining,
    /// Drained: holds nothing and gets nothing.
    Retired,
    /// Failed too many audits: treated as lost, gets nothing.
    Disqualified,
    /// Disabled by an admin: treated as lost, gets nothing.
    Disabled,
}

impl std::fmt::Display for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HostState::Online => "online",
            HostState::Suspect => "suspect",
            HostState::Offline => "offline",
            HostState::Draining => "draining",
            HostState::Retired => "retired",
            HostState::Disqualified => "disqualified",
            HostState::Disabled => "disabled",
        })
    }
}

/// One host in `scatter status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostInfo {
    /// Its id.
    pub id: HostId,
    /// Where clients reach it.
    pub address: String,
    /// Its zone.
    pub zone: String,
    /// Online or offline.
    pub state: HostState,
    /// Bytes offered.
    pub capacity: u64,
    /// Bytes of shards the catalog places there.
    pub used: u64,
    /// Bytes it can still take: what it offers less what it holds, or what its disk has
    /// free if that is less (as placement counts it).
    #[serde(default)]
    pub room: u64,
    /// Shards the catalog places there.
    #[serde(default)]
    pub shards: u64,
    /// Unix time of its last heartbeat.
    #[serde(default)]
    pub last_seen: u64,
    /// Audits passed.
    #[serde(default)]
    pub audits_passed: u64,
    /// Audits failed.
    #[serde(default)]
    pub audits_failed: u64,
    /// Its failure domain: `host N`, or `operator N` (the operator's id) when one operator's
    /// hosts count as one.
    #[serde(default)]
    pub domain: String,
    /// The terms it offers.
    #[serde(default)]
    pub terms: HostTerms,
    /// Its reputation, with the parts it is made of.
    #[serde(default)]
    pub reputation: ReputationParts,
    /// Seconds it was heard from, of its life.
    #[serde(default)]
    pub online_secs: u64,
    /// Unix time it joined.
    #[serde(default)]
    pub joined: u64,
    /// Shards rebuilt because it lost or damaged them.
    #[serde(default)]
    pub repairs_caused: u64,
    /// Bytes per second the coordinator measured reading from it (0: not yet).
    #[serde(default)]
    pub measured_bandwidth: u64,
    /// Bytes it reports having served.
    #[serde(default)]
    pub served_bytes: u64,
}

/// `POST /v1/admin/hosts/drain` and `/v1/admin/hosts/disable`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostRequest {
    /// The host to drain.
    pub host: HostId,
}

/// `POST /v1/admin/hosts/drain`: a drain is refused when the other hosts cannot take the
/// host's shards under the grid's rule, unless forced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrainRequest {
    /// The host to drain.
    pub host: HostId,
    /// Drain even so (a dying host): what cannot move is said in the answer.
    #[serde(default)]
    pub force: bool,
}

/// The answer to a [`DrainRequest`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DrainResponse {
    /// For a forced drain that cannot finish as the rule asks: what stays degraded, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusResponse {
    /// Every registered host.
    pub hosts: Vec<HostInfo>,
    /// The grid's durability rule and how well packs meet it.
    #[serde(default)]
    pub grid: GridInfo,
}

/// The grid's durability rule: every pack must survive the loss of any `tolerate` failure
/// domains, so no domain holds more than ⌊m / tolerate⌋ shards of a pack.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GridInfo {
    /// f: failure domains any pack must survive losing.
    pub tolerate: u8,
    /// Whether f follows the grid's size (the admin did not set it).
    pub auto: bool,
    /// Failure domains with hosts that take data.
    pub domains: usize,
    /// The code new data uses when a command does not choose one.
    pub data: u8,
    /// Parity shards of that code.
    pub parity: u8,
    /// The fewest domain losses any live pack survives now (none: no packs).
    pub lowest_tolerance: Option<u32>,
    /// Packs whose spread does not meet the rule yet (being re-spread in the background).
    pub crowded_packs: u64,
}

/// `GET /v1/admin/capacity`: how much more the grid can take under its durability rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityResponse {
    /// The rule it was computed under.
    pub grid: GridInfo,
    /// Hosts that take data now (online, active, with a period beyond the margin).
    pub hosts: usize,
    /// Their free bytes, in all.
    pub free: u64,
    /// Raw bytes (with redundancy) the rule lets them take: no failure domain or zone more
    /// than its share of any pack.
    pub raw: u64,
    /// User data that is: `raw` divided by the default code's expansion.
    pub user_data: u64,
}

/// Which of these chunks does the user already store?
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LookupChunksRequest {
    /// Chunk ids.
    #[serde(deserialize_with = "crate::bounded::ids")]
    pub ids: Vec<ChunkId>,
    /// The caller's open write session, if the hits are about to be referenced: they are
    /// recorded as its references, so a prune keeps them while it runs. Older clients omit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<u64>,
}

/// The subset of the asked chunks that is stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LookupChunksResponse {
    /// Known chunk ids.
    pub known: Vec<ChunkId>,
}

/// A write session: its data key, wrapped to the user's public key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateSessionRequest {
    /// age-encrypted data key (base64).
    pub wrapped_key: String,
}

/// The new session's id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateSessionResponse {
    /// Session id.
    pub session: u64,
    /// Seconds the session stays open without a keepalive. While it is open, prune keeps
    /// the chunks it references: its dedup hits (lookups naming the session), the chunks it
    /// sent as snapshot references and those of the packs it committed. Only the account
    /// that opened a session may renew, close or write under it.
    pub ttl_secs: u64,
}

/// Keeps a session open, or closes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRequest {
    /// Session id.
    pub session: u64,
}

/// Chunks a snapshot being written references, sent in batches before its commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotRefsRequest {
    /// The backup's session.
    pub session: u64,
    /// Chunk ids (file content and trees).
    #[serde(deserialize_with = "crate::bounded::ids")]
    pub chunks: Vec<ChunkId>,
}

/// Makes a snapshot visible: its references are those sent for the session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommitSnapshotRequest {
    /// The backup's session, whose key sealed the record.
    pub session: u64,
    /// The snapshot's random id (64 hex digits).
    pub id: String,
    /// The snapshot record sealed with the session's data key (base64).
    pub record: String,
    /// Object lock and expiry asked for (`--keep-for`, `--expire-after`); the coordinator
    /// applies the user's default lock when none is asked for.
    #[serde(default, skip_serializing_if = "Retention::is_empty")]
    pub retention: Retention,
}

/// Replaces a snapshot's sealed record (new tags, say), keeping its id, commit time, writer,
/// session and references: the record is sealed again with the same session key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplaceSnapshotRecordRequest {
    /// The snapshot's id (64 hex digits).
    pub id: String,
    /// The new record, sealed with the snapshot's session key (base64).
    pub record: String,
}

/// One stored snapshot, still sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotEntry {
    /// Random id (64 hex digits).
    pub id: String,
    /// Unix time of the commit.
    pub created: u64,
    /// Session whose key sealed the record.
    pub session: u64,
    /// That session's wrapped data key (base64).
    pub wrapped_key: String,
    /// The sealed record (base64).
    pub record: String,
    /// Distinct chunks it references.
    pub chunks: u64,
    /// Who committed it, as the coordinator saw the credential: the owner, or one of its
    /// delegates (never taken from the sealed record). Older coordinators omit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<UserId>,
    /// The writer's name, for listings.
    #[serde(default)]
    pub writer_name: String,
    /// Whether it counts as the owner's own (written by the owner, or by a delegate the
    /// owner trusts): only those are `latest`, recovered from and used as backup parents.
    /// Older coordinators, which did not tell writers apart, omit it: true.
    #[serde(default = "yes")]
    pub trusted: bool,
    /// The object lock and expiry the coordinator holds it under.
    #[serde(default, skip_serializing_if = "Hold::is_empty")]
    pub hold: Hold,
}

fn yes() -> bool {
    true
}

/// The caller's snapshots, in commit order (the coordinator's clock), oldest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotsResponse {
    /// Snapshots.
    pub snapshots: Vec<SnapshotEntry>,
}

/// Drop snapshots (their data is freed by a later prune).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForgetRequest {
    /// Full snapshot ids.
    #[serde(deserialize_with = "crate::bounded::ids")]
    pub ids: Vec<String>,
}

/// What a forget removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForgetResponse {
    /// Snapshots removed.
    pub removed: u64,
}

/// Drop unreferenced chunks and list packs worth repacking.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PruneRequest {
    /// Report packs whose unreferenced share is at least this percentage.
    pub max_unused_percent: u8,
}

/// What the sweep did, and what is left to repack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PruneResponse {
    /// Chunks dropped from the index.
    pub chunks_removed: u64,
    /// Sealed bytes those chunks occupied.
    pub bytes_removed: u64,
    /// Packs released to be deleted from hosts.
    pub packs_released: u64,
    /// Live packs with too much unreferenced space, to repack.
    pub repack: Vec<RepackCandidate>,
}

/// A pack partly unreferenced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepackCandidate {
    /// The pack.
    pub pack: PackId,
    /// Sealed bytes in it.
    pub size: u64,
    /// Bytes of chunks still referenced.
    pub live_bytes: u64,
    /// The chunks still referenced.
    pub chunks: Vec<ChunkId>,
}

/// Ask where to put the shards of a pack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceRequest {
    /// Bytes per shard.
    pub shard_size: u64,
    /// The shards to place, by index, with their ids.
    #[serde(deserialize_with = "crate::bounded::shards")]
    pub shards: Vec<ShardToPlace>,
    /// Hosts that must not be chosen (their upload failed).
    #[serde(default)]
    #[serde(deserialize_with = "crate::bounded::hosts")]
    pub exclude: Vec<HostId>,
    /// Data shards of the pack (its code, with `m`): the durability rule depends on it.
    pub k: u8,
    /// Parity shards of the pack.
    pub m: u8,
    /// Hosts that already hold the pack's other shards, once per shard (re-placement after
    /// a failed upload): the rule counts them.
    #[serde(default)]
    #[serde(deserialize_with = "crate::bounded::hosts")]
    pub placed: Vec<HostId>,
    /// Conditions on the hosts, over the user's stored policy.
    #[serde(default)]
    pub policy: Policy,
}

/// One shard to place.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardToPlace {
    /// Index in the pack (0..k+m).
    pub index: u8,
    /// The shard's id (BLAKE3 of its bytes).
    pub shard: ShardId,
}

/// `POST /v1/packs/abandon`: placements the caller will not commit (its upload failed or
/// was interrupted), given back so that what their uploads left is deleted from hosts now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AbandonRequest {
    /// The placements, as (host, shard); pairs the caller holds no placement of are ignored.
    pub shards: Vec<PlacedShard>,
}

/// A shard placed on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedShard {
    /// The host it was placed on.
    pub host: HostId,
    /// The shard.
    pub shard: ShardId,
}

/// The answer to an [`AbandonRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AbandonResponse {
    /// Placements of the caller's that were dropped.
    pub dropped: u64,
}

/// Where each shard goes, with a put grant for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceResponse {
    /// One target per shard asked.
    pub targets: Vec<Target>,
    /// Set when too few hosts were up to place as the grid's durability rule asks: the pack
    /// survives the loss of this many failure domains (at least one) instead, until the
    /// coordinator re-spreads it as hosts return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reduced_to: Option<u8>,
}

/// A host chosen for one shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    /// Shard index in the pack.
    pub index: u8,
    /// The host.
    pub host: HostId,
    /// Its address.
    pub address: String,
    /// The grant to present there.
    pub grant: SignedGrant,
}

/// Record a pack whose shards are durable on their hosts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommitPackRequest {
    /// The pack.
    pub pack: PackId,
    /// The session whose key sealed its chunks.
    pub session: u64,
    /// Sealed bytes before padding.
    pub size: u64,
    /// Data shards.
    pub k: u8,
    /// Parity shards.
    pub m: u8,
    /// Bytes per shard.
    pub shard_size: u64,
    /// Where every shard is stored.
    #[serde(deserialize_with = "crate::bounded::shards")]
    pub shards: Vec<StoredShard>,
    /// Where each chunk lies in the pack.
    #[serde(deserialize_with = "crate::bounded::list")]
    pub chunks: Vec<ChunkEntry>,
    /// A repack: chunks already stored move here (their old packs are released once empty)
    /// instead of keeping their first location; chunks no longer stored are not revived.
    #[serde(default)]
    pub relocate: bool,
}

/// A shard stored on a host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredShard {
    /// Index in the pack.
    pub index: u8,
    /// The shard's id.
    pub shard: ShardId,
    /// The host holding it.
    pub host: HostId,
    /// The host's receipt for it, answering the put grant of this placement.
    pub receipt: SignedReceipt,
}

/// A chunk's place in its pack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkEntry {
    /// The chunk.
    pub id: ChunkId,
    /// Offset of the sealed chunk in the pack.
    pub offset: u64,
    /// Sealed length.
    pub len: u64,
}

/// Make a stored file visible under a (encrypted) name. Fields this version does not know
/// are refused, not skipped: a condition dropped by a coordinator that does not know it
/// (from a newer client, or `if_version` from an older one) would turn a conditional write
/// into an unconditional one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitObjectRequest {
    /// The encrypted name.
    pub name: String,
    /// The session whose key sealed the manifest.
    pub session: u64,
    /// Plaintext size (for listings and metering).
    pub size: u64,
    /// The sealed manifest (base64).
    pub manifest: String,
    /// Every chunk the object references, so the coordinator can count references without
    /// reading the manifest.
    #[serde(deserialize_with = "crate::bounded::list")]
    pub chunks: Vec<ChunkId>,
    /// Object lock and expiry asked for (`--keep-for`, `--expire-after`); the coordinator
    /// applies the user's default lock when none is asked for.
    #[serde(default, skip_serializing_if = "Retention::is_empty")]
    pub retention: Retention,
    /// Sealed attributes of this version (base64, at most [`MAX_OBJECT_META`] bytes once
    /// decoded), listed with it: the S3 gateway's ETag, content type and user metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<String>,
    /// Removes the object's older versions in the same commit (an overwrite; needs the
    /// right to remove data, and no lock on them).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace: bool,
    /// Only if the name has no version yet (checked in the commit's transaction): a
    /// create that two writers cannot both win. An appender's commits always are.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exclusive: bool,
    /// Only if the name's latest version carries the sealed attributes of this tag
    /// ([`attributes_tag`], hex; checked in the commit's transaction): a conditional
    /// overwrite (S3's `If-Match`) that two writers cannot both win. Not a version number:
    /// those start again at 1 once every version of a name is deleted, so a name deleted and
    /// written again would pass for the version matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_attributes: Option<String>,
}

/// What names one committed object version in a condition on it: the BLAKE3 digest of its
/// sealed attributes. They are sealed with a fresh random nonce at every commit, so no
/// later write has the same tag.
pub type AttributesTag = [u8; 32];

/// The [`AttributesTag`] of the sealed attributes `sealed` (as committed, not base64).
pub fn attributes_tag(sealed: &[u8]) -> AttributesTag {
    *blake3::hash(sealed).as_bytes()
}

/// The most bytes of sealed attributes an object version may carry.
pub const MAX_OBJECT_META: usize = 8 << 10;

/// The most bytes of an object's name, encrypted as the catalog holds it.
pub const MAX_OBJECT_NAME: usize = 4096;

/// The committed object's version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommitObjectResponse {
    /// Version number (1 for the first put of a name).
    pub version: u64,
}

/// Several objects committed in one transaction (small objects stored together in one
/// session): each is checked and committed as [`CommitObjectRequest`] alone would be, and
/// one refused does not stop the others.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitObjectsRequest {
    /// At most [`MAX_BATCH_COMMITS`].
    #[serde(deserialize_with = "crate::bounded::commits")]
    pub objects: Vec<CommitObjectRequest>,
}

/// The most objects one [`CommitObjectsRequest`] commits.
pub const MAX_BATCH_COMMITS: usize = 256;

/// What became of each object of a [`CommitObjectsRequest`], in its order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommitObjectsResponse {
    /// One per object asked for.
    pub results: Vec<CommitOutcome>,
}

/// One object's commit: its version, or why it was refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommitOutcome {
    /// The version committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The HTTP status the refusal would have had alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// One object in a listing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectInfo {
    /// The encrypted name.
    pub name: String,
    /// Latest version.
    pub version: u64,
    /// Plaintext bytes.
    pub size: u64,
    /// Unix time of the put.
    pub created: u64,
    /// The object lock and expiry the coordinator holds it under (the latest-ending lock
    /// over its versions, the latest version's expiry).
    #[serde(default, skip_serializing_if = "Hold::is_empty")]
    pub hold: Hold,
    /// The version's sealed attributes (base64), if its writer stored any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<String>,
}

/// `GET /v1/objects`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListResponse {
    /// Latest version of each object.
    pub objects: Vec<ObjectInfo>,
}

/// `GET /v1/object?name=…`: what a reader needs to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectResponse {
    /// Listing fields.
    #[serde(flatten)]
    pub info: ObjectInfo,
    /// The sealed manifest (base64).
    pub manifest: String,
    /// The manifest's session key, wrapped (base64).
    pub wrapped_key: String,
}

/// `DELETE /v1/object?name=…`: what was removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveResponse {
    /// Versions removed.
    pub versions: u64,
    /// Packs no longer referenced, queued for deletion from hosts.
    pub packs_released: u64,
}

/// Where are these chunks, and how can I read them?
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocateRequest {
    /// Chunk ids.
    #[serde(deserialize_with = "crate::bounded::ids")]
    pub chunks: Vec<ChunkId>,
    /// False to learn only which chunks are indexed and in which packs (`scatter check`
    /// without `--read-data`, the codes a deduplicated put reports): the answer then lists
    /// each pack without its shards, grants nothing and is charged nothing. True (the
    /// default) for a read.
    #[serde(default = "yes")]
    pub read: bool,
}

/// `POST /v1/packs/grants`: grants to read some shards of one of the caller's packs whole, for
/// a rebuild from parity (answered with its [`PackLocation`], listing those shards only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackGrantsRequest {
    /// The pack.
    pub pack: PackId,
    /// The shards' indices (each charged as a whole shard).
    #[serde(deserialize_with = "crate::bounded::shards")]
    pub shards: Vec<u8>,
}

/// Chunk locations, their packs with read grants, and the sessions' wrapped keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocateResponse {
    /// One per known chunk asked for.
    pub chunks: Vec<ChunkLocation>,
    /// Other copies of some of those chunks, which a lock keeps: the copy a locked snapshot or
    /// object was stored with, after another took its id over. To try, in order, when the
    /// copy in `chunks` fails to decrypt or authenticate.
    #[serde(default)]
    pub kept: Vec<ChunkLocation>,
    /// Every pack those chunks lie in.
    pub packs: Vec<PackLocation>,
    /// Wrapped keys of the packs' sessions.
    pub sessions: Vec<SessionKey>,
}

/// Where a chunk lies.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkLocation {
    /// The chunk.
    pub id: ChunkId,
    /// Its pack.
    pub pack: PackId,
    /// Offset of the sealed chunk in the pack.
    pub offset: u64,
    /// Sealed length.
    pub len: u64,
}

/// A pack and its shards.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackLocation {
    /// The pack.
    pub id: PackId,
    /// Its session.
    pub session: u64,
    /// Sealed bytes.
    pub size: u64,
    /// Data shards.
    pub k: u8,
    /// Parity shards.
    pub m: u8,
    /// Bytes per shard.
    pub shard_size: u64,
    /// Its shards, by index.
    pub shards: Vec<ShardLocation>,
}

/// A shard and how to read it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardLocation {
    /// Index in the pack.
    pub index: u8,
    /// Its id.
    pub shard: ShardId,
    /// Its host.
    pub host: HostId,
    /// The host's address.
    pub address: String,
    /// Whether the host is online (offline hosts are tried last).
    pub online: bool,
    /// A read grant: from a locate, for the bytes of the located chunks in this shard (none
    /// in a parity shard); from `/v1/packs/grants`, for the whole shard.
    pub grant: SignedGrant,
}

/// A session's wrapped data key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionKey {
    /// Session id.
    pub session: u64,
    /// age-encrypted data key (base64).
    pub wrapped_key: String,
}

/// A client tells the coordinator a shard failed on read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportShardRequest {
    /// The host that served (or failed to serve) it.
    pub host: HostId,
    /// The shard.
    pub shard: ShardId,
    /// What went wrong.
    pub problem: String,
}

/// `POST /v1/admin/users`: invite a user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InviteRequest {
    /// A name for the admin's listings.
    pub name: String,
    /// What the invited account may do.
    pub role: Role,
    /// Bytes on hosts (with redundancy) the user may take.
    #[serde(default)]
    pub quota: Option<u64>,
    /// For `reader` and `appender`: whose data.
    #[serde(default)]
    pub owner: Option<UserId>,
    /// For an `appender`: its owner counts its snapshots as its own from the start (see
    /// [`TrustRequest`]).
    #[serde(default)]
    pub trusted: bool,
}

/// One reader or appender of the caller's data (`GET /v1/delegates`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DelegateEntry {
    /// Its own id.
    pub id: UserId,
    /// Its name.
    pub name: String,
    /// Reader or appender.
    pub role: Role,
    /// Whether its requests are refused.
    pub disabled: bool,
    /// Whether its snapshots count as the owner's own.
    pub trusted: bool,
}

/// `POST /v1/delegates/trust`: whether the owner counts a delegate's snapshots as its own
/// (for `latest`, `recover`, `check-local` and backup parents). Untrusted, they are listed
/// and restorable by id, and kept or forgotten in retention groups of their own.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrustRequest {
    /// The delegate's id.
    pub user: UserId,
    /// Trust (true) or stop trusting (false).
    pub trusted: bool,
}

/// The one-time token to give to the invited person.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InviteResponse {
    /// Redeemed by `scatter init --token`.
    pub token: String,
}

/// `POST /v1/dashboard/link`: a one-time login link to the web dashboard for the caller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DashboardLinkResponse {
    /// The link to open in a browser: the dashboard's address, `/login`, and the one-time
    /// token in the fragment (`#...`), which browsers never send to a server or in a Referer.
    pub url: String,
    /// Seconds the link stays valid (it is used once).
    pub expires_in: u64,
}

/// `POST /v1/hosts/dashboard`: a login link for a host's operator, asked with the host's
/// secret (as heartbeats are).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostDashboardRequest {
    /// The host.
    pub host_id: HostId,
    /// Its secret, from its `host.json`.
    pub host_secret: String,
}

/// One user, for `scatter admin user ls`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserEntry {
    /// Id.
    pub id: UserId,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Whether its requests are refused.
    pub disabled: bool,
    /// Quota on hosts, if any.
    pub quota: Option<u64>,
    /// Whose data (readers and appenders).
    pub owner: Option<UserId>,
    /// What counts against its quota: bytes its packs take on hosts, and what the catalog
    /// keeps of its objects and references.
    pub used: u64,
    /// Removed with its data (`scatter admin user rm`): listed for the record, never enabled
    /// again.
    #[serde(default)]
    pub removed: bool,
}

/// `POST /v1/admin/users/disable` and `/v1/admin/users/remove`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRequest {
    /// The user.
    pub user: UserId,
}

/// The smallest quota: below it not even one pack fits (a bare number of bytes is a
/// mistake, not a quota).
pub const MIN_QUOTA: u64 = 1 << 20;

/// `POST /v1/admin/users/quota`: a user's new quota.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuotaRequest {
    /// The user (not a reader or appender: their writes count against their owner's).
    pub user: UserId,
    /// Bytes on hosts (with redundancy), at least [`MIN_QUOTA`]; none for no limit.
    pub quota: Option<u64>,
}

/// An unused invite, for `scatter admin invite ls`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InviteEntry {
    /// The start of the hash of its token in hex: names it for `admin invite rm` without
    /// telling the token.
    pub id: String,
    /// The name it gives the account.
    pub name: String,
    /// The role it gives.
    pub role: Role,
    /// The quota it gives, if any.
    pub quota: Option<u64>,
    /// For readers and appenders: whose data.
    pub owner: Option<UserId>,
    /// For a device invite: the user it adds a device to.
    pub device_of: Option<UserId>,
}

/// `POST /v1/admin/invites/remove`: revokes an unused invite.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InviteIdRequest {
    /// Its id (or a unique prefix of it, at least 6 hex digits).
    pub id: String,
}

/// `POST /v1/admin/operators`: register an operator, a party that runs hosts. Its hosts
/// join with the token the answer carries and count as one failure domain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorRequest {
    /// A name for the admin's listings (unique).
    pub name: String,
    /// Whether its hosts fail independently of each other (each its own failure domain).
    #[serde(default)]
    pub independent: bool,
}

/// The new operator, with the join token its hosts use.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorResponse {
    /// Its id (the `N` of `operator N` in host listings).
    pub id: u64,
    /// Its name.
    pub name: String,
    /// The join token for its hosts (`scatter host --join-token`); shown once, stored hashed.
    pub token: String,
}

/// One operator, for `scatter admin operator ls`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorEntry {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Whether its hosts count as separate failure domains.
    pub independent: bool,
    /// Unix time it was registered.
    pub created: u64,
    /// Hosts that joined with its token.
    pub hosts: u64,
}

/// `POST /v1/admin/operators/independent`: whether an operator's hosts count as separate
/// failure domains (true) or as one (false, the default).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorIndependentRequest {
    /// The operator's name.
    pub name: String,
    /// Independent or not.
    pub independent: bool,
}

// ---- Object lock and expiry (`--keep-for`, `--keep-until`, `--expire-after`) ----

/// How an object lock may be lifted before it ends (as S3 Object Lock's modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// An admin may lift it (`scatter admin lock lift`), recorded in the events.
    Governance,
    /// Nobody may shorten or lift it, not even an admin; it may be extended.
    Compliance,
}

impl LockMode {
    /// Its name, as the catalog and the CLI write it.
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Governance => "governance",
            LockMode::Compliance => "compliance",
        }
    }

    /// The mode of a name written by [`LockMode::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "governance" => Some(LockMode::Governance),
            "compliance" => Some(LockMode::Compliance),
            _ => None,
        }
    }
}

impl std::fmt::Display for LockMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a put or backup asks the coordinator to hold its new data under. The coordinator
/// decides the times on its own clock and checks them against the user's maxima.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Lock until this Unix time (`--keep-until`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_until: Option<u64>,
    /// Lock for this many seconds from the commit (`--keep-for`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_for: Option<u64>,
    /// The lock's mode (default: the user's default mode, else governance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<LockMode>,
    /// Remove the data this many seconds after the commit (`--expire-after`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_after: Option<u64>,
}

impl Retention {
    /// Whether nothing is asked for (the user's default lock applies).
    pub fn is_empty(&self) -> bool {
        *self == Retention::default()
    }
}

/// The lock and expiry a snapshot or object is held under, as the coordinator records them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The lock's mode, while it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<LockMode>,
    /// Unix time the lock ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_until: Option<u64>,
    /// Unix time the coordinator removes the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
}

impl Hold {
    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        *self == Hold::default()
    }
}

/// What a lock is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockTarget {
    /// A snapshot (by its id).
    Snapshot,
    /// An object (every version of a name).
    Object,
}

/// `GET /v1/admin/locks`: one lock or expiry the coordinator holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockEntry {
    /// Whose data.
    pub user: UserId,
    /// What it is on.
    pub target: LockTarget,
    /// The snapshot id, or the object's version id in the catalog.
    pub id: String,
    /// Its lock and expiry.
    pub hold: Hold,
}

/// `POST /v1/admin/locks/lift`: lifts a governance lock (never a compliance one).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiftLockRequest {
    /// What the lock is on.
    pub target: LockTarget,
    /// The snapshot id, or the object version's id (as `scatter admin lock ls` lists them).
    pub id: String,
    /// Why, for the events.
    pub reason: String,
}

/// `POST /v1/snapshots/lock`: extends the lock of one of the caller's snapshots (a lock is
/// never shortened this way; the end is checked against the caller's maximum).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtendLockRequest {
    /// The snapshot id (64 hex digits).
    pub id: String,
    /// The new end, as Unix time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_until: Option<u64>,
    /// Or the new length, in seconds from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_for: Option<u64>,
    /// The mode (a governance lock may become compliance, never the reverse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<LockMode>,
}

/// `POST /v1/admin/users/locks`: a user's lock maxima and default lock. `None` leaves a
/// setting as it is; a zero duration clears it (back to the grid's default maximum, or no
/// default lock).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockLimitsRequest {
    /// The user (an owner: its delegates' maxima are set with it).
    pub user: UserId,
    /// Longest lock, in seconds, the user may take.
    #[serde(default)]
    pub max_lock: Option<u64>,
    /// Longest lock, in seconds, its readers' and appenders' writes may take.
    #[serde(default)]
    pub max_delegate_lock: Option<u64>,
    /// Lock every new snapshot and object for this many seconds unless the put or backup
    /// asks otherwise.
    #[serde(default)]
    pub default_lock: Option<u64>,
    /// The default lock's mode.
    #[serde(default)]
    pub default_mode: Option<LockMode>,
}

/// A user's lock maxima and default lock, as the coordinator applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockLimits {
    /// Longest lock, in seconds, the user may take.
    pub max_lock: u64,
    /// Longest lock, in seconds, its delegates may take.
    pub max_delegate_lock: u64,
    /// Default lock, in seconds (0: none).
    pub default_lock: u64,
    /// The default lock's mode.
    pub default_mode: LockMode,
}

/// The longest lock a user may take unless an admin sets another: one year.
pub const DEFAULT_MAX_LOCK: u64 = 365 * 86_400;
/// The longest lock a delegate (reader, appender) may take unless an admin sets another:
/// 30 days, so a stolen device cannot pin junk for long.
pub const DEFAULT_MAX_DELEGATE_LOCK: u64 = 30 * 86_400;

impl Default for LockLimits {
    fn default() -> Self {
        LockLimits {
            max_lock: DEFAULT_MAX_LOCK,
            max_delegate_lock: DEFAULT_MAX_DELEGATE_LOCK,
            default_lock: 0,
            default_mode: LockMode::Governance,
        }
    }
}
