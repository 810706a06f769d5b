//! Scatter's wire formats: the JSON bodies of the coordinator's and hosts' HTTP APIs, and the
//! grants the coordinator signs so that hosts can authorise shard operations locally, and the
//! request timings both services expose on `/metrics`, the credentials clients sign, and the receipts hosts sign for shards they hold.

pub mod api;
pub mod auth;
pub mod billing;
mod bounded;
pub mod catalog_backup;
pub mod grant;
pub mod metrics;
pub mod receipt;

pub use grant::{Grant, GrantError, Op, SignedGrant};
pub use receipt::{Receipt, ReceiptError, SignedReceipt};
