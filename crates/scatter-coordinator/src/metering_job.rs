//! The metering sampler: every `--metering-interval`, under the `metering` job's lease, adds
//! each running tally × the seconds since the last sample to the open period (see
//! `Store::sample_usage`). The last sample's time is in the catalog, so after a restart the
//! first pass covers the time the coordinator was down (nothing changed meanwhile: the
//! catalog changes only through a coordinator).

use std::sync::Arc;

use crate::{now, Shared};

pub(crate) async fn run(shared: Arc<Shared>, stop: tokio::sync::watch::Receiver<bool>) {
    let every = shared.metering_interval;
    crate::jobs::run(shared, "metering", every, stop, |shared, fence| async move {
        match shared.catalog(move |s| s.sample_usage(Some(&fence), now())).await {
            Ok(n) => tracing::debug!(records = n, "usage sampled"),
            Err(e) => tracing::warn!(error = %e, "sampling usage failed; the next pass covers the time"),
        }
        // Reads whose charge windows closed are charged again when read again.
        let window = crate::api::GRANT_TTL.as_secs();
        if let Err(e) = shared.catalog(move |s| s.forget_read_charges(window, now())).await {
            tracing::warn!(error = %e, "forgetting closed read charge windows failed; the next pass tries again");
        }
    })
    .await
}
