//! Write sessions: a fresh data key, wrapped to the user's public key and registered with the
//! coordinator, kept open by a background keepalive for as long as the write runs.
//!
//! While a session is open, a prune keeps what it references: the chunks its dedup lookups
//! found, the references it sent and the chunks of the packs it committed. Only this device
//! (the account that opened it) can renew, close or write under it. A killed client stops its
//! keepalive and the session lapses after the coordinator's TTL, and with it what only it held.

use std::sync::Arc;
use std::time::Duration;

use scatter_core::crypto::DataKey;
use scatter_core::keys::WriteKeys;

use crate::coordinator::Coordinator;
use crate::ClientError;

/// An open write session.
pub struct Session {
    /// Session id at the coordinator.
    pub id: u64,
    /// The data key chunks of this session are sealed with.
    pub key: Arc<DataKey>,
    coord: Coordinator,
    keepalive: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Opens a session with a new random data key.
    pub async fn open(coord: &Coordinator, keys: &WriteKeys) -> Result<Self, ClientError> {
        let key = Arc::new(DataKey::generate());
        let created = coord.create_session(&keys.wrap(&key)).await?;
        let id = created.session;
        let period = Duration::from_secs(created.ttl_secs.max(1)).div_f32(3.0);
        let keepalive = {
            let coord = coord.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(period).await;
                    if let Err(e) = coord.keep_session(id).await {
                        tracing::warn!(session = id, error = %e, "could not keep the write session open");
                    }
                }
            })
        };
        Ok(Self { id, key, coord: coord.clone(), keepalive })
    }

    /// Ends the session (a snapshot commit ends it too).
    pub async fn close(self) -> Result<(), ClientError> {
        self.keepalive.abort();
        self.coord.close_session(self.id).await
    }

    /// Ends the session once what it wrote is committed: a failure is only logged, as the
    /// commit stands and the session lapses by itself. (Answering an error there would tell
    /// the caller an object it stored was not.)
    pub async fn close_committed(self) {
        let id = self.id;
        if let Err(e) = self.close().await {
            tracing::warn!(session = id, error = %e, "could not close a write session after its commit; it lapses by itself");
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}
