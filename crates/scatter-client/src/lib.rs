//! Scatter's client: everything that touches plaintext or keys happens here.
//!
//! - [`profile`]: the user's profile and key file under `SCATTER_CONFIG`;
//! - [`coordinator`]: typed calls to the coordinator's API;
//! - [`hosts`]: shard transfers to and from hosts;
//! - [`put`] and [`get`]: the streaming pipelines (chunk → id → seal → pack → erasure-code →
//!   upload → commit, and back);
//! - [`reader`]: random access to file content through a bounded cache (`scatter mount`);
//! - [`stats`]: per-stage busy time and bytes, for `--stats`.
//!
//! Libraries do not print: progress goes through the [`Progress`] trait.

pub mod backup;
pub mod batch;
pub mod buffers;
pub mod check;
pub mod confined;
pub mod coordinator;
pub mod copy;
pub mod error;
pub mod fetch;
pub mod get;
pub mod hosts;
pub mod partial;
pub mod profile;
pub mod prune;
pub mod put;
pub mod reader;
pub mod restore;
pub mod session;
pub mod snapshots;
pub mod stats;
pub mod upload;

pub use error::ClientError;

/// Receives progress of a long transfer; the CLI draws it, tests ignore it.
pub trait Progress: Send + Sync {
    /// Whether anyone looks at [`Progress::start`]'s total. When not, a backup does not walk
    /// its paths a second time to size the job (10,000 stats of CPU, competing with the
    /// backup itself).
    fn wants_total(&self) -> bool {
        true
    }
    /// The total number of bytes the operation will process.
    fn start(&self, total: u64);
    /// `n` more bytes were processed.
    fn advance(&self, n: u64);
    /// Work moved on to `name` (a file being backed up or restored).
    fn item(&self, _name: &str) {}
    /// `n` more bytes arrived from hosts, not decoded yet (see
    /// [`crate::hosts::Hosts::report_downloads`]).
    fn downloaded(&self, _n: u64) {}
}

/// A [`Progress`] that shows nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn wants_total(&self) -> bool {
        false
    }
    fn start(&self, _: u64) {}
    fn advance(&self, _: u64) {}
}
