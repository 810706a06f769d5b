//! Wire types of metering and billing: rate cards, statements, a user's usage and a host's
//! earnings. The JSON export of `scatter admin billing --json` is [`Statement`] as is; the
//! README ("Metering and billing") documents every field.
//!
//! Money is in the smallest unit of the card's currency (integers); byte-seconds can exceed
//! 64 bits over a period and travel as decimal strings.

use serde::{Deserialize, Serialize};

/// Prices from a date on, set by an admin (`scatter admin billing rates set`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateCard {
    /// Unix time from which it applies (a UTC day's start).
    pub effective: u64,
    /// The currency and unit prices are in, e.g. `EUR-micro` (free text).
    pub currency: String,
    /// A user pays per GiB-month stored on hosts (with redundancy; a month is 30 days).
    pub storage_gib_month: u64,
    /// A user pays per GiB read (egress).
    pub egress_gib: u64,
    /// A host earns per GiB-month of shards it holds.
    pub host_storage_gib_month: u64,
    /// A host earns per GiB it served to readers (its claim, capped by the grants issued).
    pub host_egress_gib: u64,
    /// Unix time it was set.
    pub set_at: u64,
    /// Who set it (a user id, e.g. `u1`).
    pub set_by: String,
}

/// `POST /v1/admin/billing/rates`: a new card (its `set_at` and `set_by` are filled in).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RateCardRequest {
    /// Unix time from which it applies.
    pub effective: u64,
    /// Currency and unit.
    pub currency: String,
    /// See [`RateCard::storage_gib_month`].
    pub storage_gib_month: u64,
    /// See [`RateCard::egress_gib`].
    pub egress_gib: u64,
    /// See [`RateCard::host_storage_gib_month`].
    pub host_storage_gib_month: u64,
    /// See [`RateCard::host_egress_gib`].
    pub host_egress_gib: u64,
}

/// A time with no usage records: the catalog was recovered from a backup taken at `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// Unix time of the last record kept (the backup's time).
    pub from: u64,
    /// Unix time records resume (the recovery).
    pub to: u64,
    /// Why, e.g. `catalog recovered from backup`.
    pub reason: String,
}

/// One line of a statement: a quantity, its price and the amount (rounded once, half up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// `storage`, `egress` (users); `host_storage`, `host_egress` (hosts).
    pub item: String,
    /// How much, in `unit` (a decimal integer string: byte-seconds exceed 64 bits).
    pub quantity: String,
    /// `byte_seconds` or `bytes`.
    pub unit: String,
    /// Price per `price_per`, in the smallest currency unit.
    pub price: u64,
    /// `GiB-month` (2^30 bytes for 30 days) or `GiB` (2^30 bytes).
    pub price_per: String,
    /// The rate card's start the price comes from (none: no card, price 0).
    pub rate_from: Option<u64>,
    /// `quantity × price / price_per`, rounded half up.
    pub amount: i64,
    /// For an adjustment: the closed period the usage belonged to.
    pub adjusts: Option<String>,
}

/// What a user owes for a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserStatement {
    /// The user's id.
    pub user: u64,
    /// Its name, as invited.
    pub name: String,
    /// Bytes hosts received for its committed packs (all shards, with receipts).
    pub ingress_bytes: i64,
    /// Sealed chunk bytes located for reading (read grants issued).
    pub egress_bytes: i64,
    /// Change in bytes on hosts (with redundancy) over the period.
    pub stored_change_bytes: i64,
    /// Change in sealed bytes (before redundancy) over the period.
    pub logical_change_bytes: i64,
    /// Bytes on hosts × seconds, sampled (decimal string).
    pub stored_byte_seconds: String,
    /// Sealed bytes × seconds, sampled (decimal string).
    pub logical_byte_seconds: String,
    /// What it is charged for.
    pub lines: Vec<Line>,
    /// The sum of the lines' amounts.
    pub owed: i64,
}

/// What a host earned for a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatement {
    /// The host's id.
    pub host: u64,
    /// Its state when the statement was made.
    pub state: String,
    /// Shard bytes held × seconds, sampled (decimal string).
    pub held_byte_seconds: String,
    /// Change in shard bytes held over the period.
    pub held_change_bytes: i64,
    /// Data-shard bytes of read grants issued naming it (verified: the coordinator signed them).
    pub granted_bytes: i64,
    /// Bytes it says it served (a claim).
    pub served_claimed_bytes: i64,
    /// Bytes the repairer read from it.
    pub repair_served_bytes: i64,
    /// Bytes of rebuilt shards it took for the repairer.
    pub repair_received_bytes: i64,
    /// Audits passed in the period.
    pub audits_passed: i64,
    /// Audits failed in the period (on shards it signed receipts for).
    pub audits_failed: i64,
    /// Seconds it was online in the period (heartbeats no further apart than the offline grace).
    pub online_seconds: i64,
    /// What it earns for.
    pub lines: Vec<Line>,
    /// The sum of the lines' amounts.
    pub earned: i64,
    /// What is held back.
    pub withheld: i64,
    /// Why, if anything is.
    pub withheld_reason: Option<String>,
    /// `earned - withheld`.
    pub payable: i64,
}

/// A period's statement: every user's and host's, or one of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// `YYYY-MM` (a UTC month).
    pub period: String,
    /// Unix time it starts.
    pub from: u64,
    /// Unix time the next one starts.
    pub to: u64,
    /// Whether it is closed (no record can be added to it any more).
    pub closed: bool,
    /// Unix time this statement was made.
    pub generated: u64,
    /// The currency of the last card in effect in the period.
    pub currency: String,
    /// Times within the period with no records (catalog recoveries).
    pub gaps: Vec<Gap>,
    /// Unix time of the coordinator's last sample of stored bytes: byte-seconds (what storage
    /// costs) are counted up to it, and what is stored since at the next sample (every
    /// metering interval). `None` before the first sample, or from a coordinator that does
    /// not say.
    #[serde(default)]
    pub sampled_until: Option<u64>,
    /// Users with usage.
    pub users: Vec<UserStatement>,
    /// Hosts with usage.
    pub hosts: Vec<HostStatement>,
}

/// One raw usage record (`GET /v1/admin/billing/records`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Sequence number.
    pub id: u64,
    /// Unix time.
    pub time: u64,
    /// The period it counts in.
    pub period: String,
    /// `user` or `host`.
    pub subject: String,
    /// The user's or host's id.
    pub who: u64,
    /// What it counts (`ingress`, `stored`, `stored_byte_seconds`, …).
    pub kind: String,
    /// Bytes, byte-seconds or a count.
    pub amount: i64,
    /// Whether it is a host's claim rather than a verified fact.
    pub claim: bool,
    /// The closed period it adjusts, if it is an adjustment.
    pub adjusts: Option<String>,
}

/// `GET /v1/usage`: the caller's own usage and charges so far this period.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UsageResponse {
    /// Bytes the account's live packs take on hosts now (with redundancy).
    pub stored_bytes: u64,
    /// Sealed bytes of its live packs now (before redundancy).
    pub logical_bytes: u64,
    /// What the catalog keeps of its objects (names, manifests) and references (one per
    /// chunk per snapshot): counted against the quota with `stored_bytes`.
    #[serde(default)]
    pub catalog_bytes: u64,
    /// Its quota, if limited (bytes on hosts and in the catalog).
    pub quota: Option<u64>,
    /// Object versions it stores now (`put`).
    pub objects: u64,
    /// Snapshots it has now (`backup`).
    pub snapshots: u64,
    /// This period's statement for the account (an empty one if it has no records yet).
    pub statement: Statement,
}

/// `POST /v1/hosts/earnings`: a host's own earnings, with its credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EarningsRequest {
    /// Which host.
    pub host_id: scatter_core::HostId,
    /// Its secret from the join.
    pub host_secret: String,
    /// The period (`YYYY-MM`); the current one if none.
    pub period: Option<String>,
}
