//! Hosts going offline leave a trace: the checker (one coordinator at a time, see `jobs`)
//! records a `host.offline` event when an active or draining host's heartbeats stop for
//! longer than the offline grace, and the heartbeat that brings it back records
//! `host.online` (see the heartbeat handler). Events are logged too.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use scatter_core::HostId;

use crate::store::{Standing, StoreError};
use crate::{now, Shared};

/// The hosts already said to be offline, so each outage is recorded once.
pub(crate) struct Offline {
    known: Mutex<HashSet<HostId>>,
    /// When this coordinator started looking.
    since: Instant,
}

impl Default for Offline {
    fn default() -> Self {
        Self { known: Mutex::default(), since: Instant::now() }
    }
}

impl Offline {
    /// Records the hosts that went offline since the last pass. Not within the offline grace
    /// after this coordinator started: a host it could not hear from while it was down gets
    /// that long to send a heartbeat. A coordinator taking the checker over records a host
    /// already offline once more: better twice than never.
    pub(crate) async fn pass(&self, shared: &Arc<Shared>) -> Result<(), StoreError> {
        if self.since.elapsed() < shared.offline_after {
            return Ok(());
        }
        let hosts = shared.catalog(|s| s.hosts()).await?;
        let now = now();
        let gone: Vec<(HostId, u64)> = {
            let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            let mut gone = Vec::new();
            for h in hosts.iter().filter(|h| matches!(h.state, Standing::Active | Standing::Draining)) {
                let silent = now.saturating_sub(h.last_seen);
                if crate::room::is_online(shared, h.last_seen) {
                    known.remove(&h.id);
                } else if known.insert(h.id) {
                    gone.push((h.id, silent));
                }
            }
            gone
        };
        for (host, silent) in gone {
            let detail = format!(
                "no heartbeat for {silent} s; its shards do not count (and are repaired elsewhere) until it is back"
            );
            crate::api::event(shared, host, "host.offline", detail).await;
        }
        Ok(())
    }
}
