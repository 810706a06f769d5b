//! The client's errors.
//!
//! Policy: each variant's message is one sentence a user can act on: what happened, and what
//! to do. Errors from the coordinator carry its own sentence through unchanged.

use std::path::PathBuf;

/// A client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No coordinator could be reached (each URL tried, with its reason).
    #[error("{0}; check that a coordinator is running and the URLs in your profile are right")]
    Unreachable(scatter_net::failover::Unreachable),
    /// A request that is not safe to repeat may have been done by a coordinator that failed
    /// before answering; it was sent to no other.
    #[error("{0}; check what was done (`scatter ls`, `scatter snapshots`) before running the command again")]
    Interrupted(scatter_net::failover::Interrupted),
    /// The coordinator answered with an error.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Machine-readable code.
        code: scatter_proto::api::ErrorCode,
        /// The coordinator's sentence.
        message: String,
    },
    /// No profile yet.
    #[error(
        "no Scatter profile in {0}; run `scatter init --coordinator URL --token TOKEN` first (or set SCATTER_CONFIG)"
    )]
    NoProfile(PathBuf),
    /// Keys could not be loaded or used.
    #[error(transparent)]
    Keys(#[from] scatter_core::keys::KeyError),
    /// A local file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A restore or get needs more room than the file system it writes to has.
    #[error(
        "{path} has {free} free, and this needs at least {needed} more; free space there (or write elsewhere) and run the same command again (a restore continues where it stopped)"
    )]
    NoRoom {
        /// Where it writes, escaped for display.
        path: String,
        /// Bytes still to write.
        needed: scatter_core::ByteSize,
        /// Bytes free there.
        free: scatter_core::ByteSize,
    },
    /// Writing (or reading) below a restore target failed; the path is escaped for display.
    #[error("cannot {action} {path}: {source}")]
    Target {
        /// What was being done, e.g. "create the directory".
        action: &'static str,
        /// The path, escaped (it may hold names from a snapshot).
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// Stored data is damaged beyond what redundancy can fix, or inconsistent.
    #[error("stored data could not be recovered: {0}")]
    Unrecoverable(String),
    /// A pack's shards could not all be stored.
    #[error("could not store a shard on any host ({0}); check `scatter status` and retry")]
    Upload(String),
    /// The operation was given bad arguments.
    #[error("{0}")]
    Invalid(String),
}

impl ClientError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ClientError {
        let path = path.into();
        move |source| ClientError::Io { path, source }
    }

    /// The same error again, for each of several operations that failed together (the puts
    /// of one batch). Errors from other crates that cannot be cloned keep their sentence.
    pub fn duplicate(&self) -> ClientError {
        match self {
            ClientError::Unreachable(e) => ClientError::Unreachable(e.clone()),
            ClientError::Interrupted(e) => ClientError::Interrupted(e.clone()),
            ClientError::Api { status, code, message } => {
                ClientError::Api { status: *status, code: *code, message: message.clone() }
            }
            ClientError::NoProfile(p) => ClientError::NoProfile(p.clone()),
            ClientError::Io { path, source } => {
                ClientError::Io { path: path.clone(), source: std::io::Error::new(source.kind(), source.to_string()) }
            }
            ClientError::NoRoom { path, needed, free } => {
                ClientError::NoRoom { path: path.clone(), needed: *needed, free: *free }
            }
            ClientError::Target { action, path, source } => ClientError::Target {
                action,
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            ClientError::Unrecoverable(m) => ClientError::Unrecoverable(m.clone()),
            ClientError::Upload(m) => ClientError::Upload(m.clone()),
            ClientError::Keys(_) | ClientError::Invalid(_) => ClientError::Invalid(self.to_string()),
        }
    }

    /// An I/O error below a restore target; `path` is already escaped for display.
    pub fn target(action: &'static str, path: &str, source: std::io::Error) -> ClientError {
        ClientError::Target { action, path: path.to_owned(), source }
    }
}
