//! Background jobs (the checker with its audits, the deleter) run in one coordinator at a
//! time among those sharing a catalog, through leases in the catalog.
//!
//! Every [`TICK`] each coordinator takes or renews a job's lease; the holder runs a pass
//! whenever the job's interval has passed since its own last one, and goes on renewing the
//! lease while the pass runs (a pass waiting on a slow host must not lose it half-way). A
//! lease lasts [`TTL`] past its last renewal (each fenced write of a pass renews it too), so
//! a coordinator that dies or stalls hands its jobs over within about `TTL + TICK`, and its
//! writes after that are refused by their fence. Passes are logged (target `scatter::jobs`, at debug) with
//! their fencing token and times, which is how a test shows no job ran twice at once.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::store::Fence;
use crate::Shared;

/// How often a coordinator takes or renews the leases of its jobs.
const TICK: Duration = Duration::from_secs(2);

/// How long a lease lasts past its last renewal.
pub(crate) const TTL: Duration = Duration::from_secs(10);

fn unix_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

/// Runs `pass` every `every` in whichever coordinator holds the lease on `job`, until
/// `stop` changes.
pub(crate) async fn run<F, Fut>(
    shared: Arc<Shared>,
    job: &'static str,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mut pass: F,
) where
    F: FnMut(Arc<Shared>, Fence) -> Fut,
    Fut: Future<Output = ()>,
{
    let tick = TICK.min(every);
    let mut last: Option<Instant> = None;
    let mut held: Option<u64> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.changed() => return,
        }
        let Some(fence) = shared.lease(job, TTL).await else {
            if held.take().is_some() {
                tracing::info!(job, "another coordinator holds this background job now");
            }
            continue;
        };
        if held != Some(fence.token) {
            tracing::info!(job, token = fence.token, "running this background job (took its lease)");
            held = Some(fence.token);
            last = None;
        }
        if last.is_some_and(|t| t.elapsed() < every) {
            continue;
        }
        last = Some(Instant::now());
        let (token, started) = (fence.token, unix_ms());
        let renew = async {
            loop {
                tokio::time::sleep(tick).await;
                if shared.lease(job, TTL).await.is_none() {
                    // Taken over: the pass's fenced writes are refused from now on.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            () = pass(shared.clone(), fence) => {}
            () = renew => {}
        }
        tracing::debug!(target: "scatter::jobs", job, token, holder = %shared.instance, started, ended = unix_ms(), "background pass");
    }
}
