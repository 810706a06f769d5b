//! The deleter: removes shards of released packs, copies repair left behind, and uploads
//! given back (placements abandoned by their client or lapsed), from their hosts, then
//! forgets them.
//!
//! Each pass also drops a window of sessions that ended with nothing under them (see
//! [`crate::store::Store::drop_idle_sessions`]), going round all of them in turn.
//!
//! Each pass first removes what expired (`--expire-after`) once its lock, if any, ended
//! (see `store::locks`): what only it referenced is released, and its shards go in the
//! same pass.
//!
//! It runs in the background with a grant it signs itself, so a client that removes an
//! object does not have to stay around, and a host that is offline now is retried later.

use std::sync::Arc;
use std::time::Duration;

use crate::store::{Fence, HostRow, Standing};
use crate::{now, Shared};

const INTERVAL: Duration = Duration::from_secs(2);
const BATCH: usize = 256;
/// Sessions looked at per pass for being idle: a million are gone through in half an hour.
const SESSIONS_PER_PASS: usize = 1024;

pub(crate) async fn run(shared: Arc<Shared>, stop: tokio::sync::watch::Receiver<bool>) {
    crate::jobs::run(shared, "deleter", INTERVAL, stop, |shared, fence| async move {
        if let Err(e) = pass(&shared, &fence).await {
            tracing::warn!(error = %e, "deleting released shards failed; will retry");
        }
    })
    .await
}

async fn pass(shared: &Arc<Shared>, fence: &Fence) -> Result<(), crate::store::StoreError> {
    expire(shared, fence).await?;
    drop_idle_sessions(shared).await?;
    delete_abandoned(shared, fence).await?;
    let covered = crate::catalog_backup::covered(shared).await?;
    delete_orphans(shared, fence, covered).await?;
    let released_by = now().saturating_sub(shared.release_grace.as_secs()).min(covered.saturating_sub(1));
    let todo = shared.catalog(move |s| s.shards_to_delete(BATCH, released_by)).await?;
    if todo.is_empty() {
        return Ok(());
    }
    let hosts = shared.catalog(|s| s.hosts()).await?;
    by_host(
        todo,
        |t| t.3,
        |(pack, index, shard, host, still_needed)| {
            let (hosts, fence) = (&hosts, fence.clone());
            async move {
                // Another pack places the same shard on this host: forget the row, keep the bytes.
                if !still_needed && !deleted_or_gone(shared, hosts.iter().find(|h| h.id == host), &shard).await {
                    return Ok(false);
                }
                shared.catalog(move |s| s.shard_deleted(&pack, index, Some(&fence), now())).await?;
                Ok(true)
            }
        },
    )
    .await
}

/// Whether `host`'s copy of `shard` may be forgotten: deleted now, or gone with its host (one
/// unknown, or disabled or disqualified and silent past the orphan grace; asked for ever, such
/// a host's address, taken by another host, answered every pass with a refused grant). A host
/// offline now is not asked, and left for a later pass.
async fn deleted_or_gone(shared: &Arc<Shared>, host: Option<&HostRow>, shard: &scatter_core::ShardId) -> bool {
    let Some(h) = host else { return true };
    if crate::room::is_online(shared, h.last_seen) {
        return crate::shards::delete(shared, h, shard).await;
    }
    matches!(h.state, Standing::Disabled | Standing::Disqualified)
        && now().saturating_sub(h.last_seen) > shared.orphan_grace.as_secs()
}

/// Runs `op` on `items` grouped by their host (`host_of`): the hosts at once, each host's
/// items one after another, the rest of a host's left for the next pass once `op` says one
/// failed. Run one after another, a host that let each delete hang until the timeout held up
/// every other host's deletes for 30 s an item: a batch took two hours.
async fn by_host<T, Fut>(
    items: Vec<T>,
    host_of: impl Fn(&T) -> scatter_core::HostId,
    op: impl Fn(T) -> Fut,
) -> Result<(), crate::store::StoreError>
where
    Fut: std::future::Future<Output = Result<bool, crate::store::StoreError>>,
{
    let mut groups: std::collections::BTreeMap<scatter_core::HostId, Vec<T>> = std::collections::BTreeMap::new();
    for item in items {
        groups.entry(host_of(&item)).or_default().push(item);
    }
    let op = &op;
    let runs = groups.into_values().map(|items| async move {
        for item in items {
            if !op(item).await? {
                break;
            }
        }
        Ok::<_, crate::store::StoreError>(())
    });
    futures::future::join_all(runs).await.into_iter().collect()
}

/// Drops the next window of sessions that ended with nothing under them.
async fn drop_idle_sessions(shared: &Arc<Shared>) -> Result<(), crate::store::StoreError> {
    use std::sync::atomic::Ordering;
    let from = shared.idle_sessions_from.load(Ordering::Relaxed);
    let (dropped, next) = shared.catalog(move |s| s.drop_idle_sessions(from, SESSIONS_PER_PASS, now())).await?;
    shared.idle_sessions_from.store(next, Ordering::Relaxed);
    if dropped > 0 {
        tracing::debug!(dropped, "dropped sessions that ended with nothing under them");
    }
    Ok(())
}

/// Deletes what uploads given back left on hosts, each only where that upload alone wrote
/// the host's copy (the host checks). Lapsed placements are given back first, so a killed
/// client's uploads go seconds after their placements lapse. One the host keeps, or whose
/// host stayed away past the orphan grace, is left to the orphan sweep.
async fn delete_abandoned(shared: &Arc<Shared>, fence: &Fence) -> Result<(), crate::store::StoreError> {
    shared.catalog(|s| s.lapse_reservations(now())).await?;
    let todo = shared.catalog(|s| s.abandoned(BATCH)).await?;
    if todo.is_empty() {
        return Ok(());
    }
    let hosts = shared.catalog(|s| s.hosts()).await?;
    let grace = shared.orphan_grace.as_secs();
    by_host(
        todo,
        |t| t.0,
        |(host, shard, grant, since)| {
            let (hosts, fence) = (&hosts, fence.clone());
            async move {
                let (done, answered) = match hosts.iter().find(|h| h.id == host) {
                    None => (true, true),
                    // An offline host is not waited for on every pass.
                    Some(h) if !crate::room::is_online(shared, h.last_seen) => {
                        (now().saturating_sub(since) > grace, false)
                    }
                    Some(h) => match crate::shards::delete_if(shared, h, &shard, &grant).await {
                        crate::shards::Deleted::Gone | crate::shards::Deleted::Kept => (true, true),
                        crate::shards::Deleted::Failed => (now().saturating_sub(since) > grace, false),
                    },
                };
                if done {
                    shared.catalog(move |s| s.abandoned_done(host, &shard, &grant, Some(&fence), now())).await?;
                }
                Ok(answered)
            }
        },
    )
    .await
}

/// Deletes shard copies left on hosts after repair moved their shard elsewhere (once the
/// newest catalog backup knows the move: before `covered`), and unknown ones.
async fn delete_orphans(shared: &Arc<Shared>, fence: &Fence, covered: u64) -> Result<(), crate::store::StoreError> {
    let todo = shared.catalog(move |s| s.orphans(BATCH, covered)).await?;
    if todo.is_empty() {
        return Ok(());
    }
    let hosts = shared.catalog(|s| s.hosts()).await?;
    by_host(
        todo,
        |t| t.0,
        |(host, shard)| {
            let (hosts, fence) = (&hosts, fence.clone());
            async move {
                if !deleted_or_gone(shared, hosts.iter().find(|h| h.id == host), &shard).await {
                    return Ok(false);
                }
                shared.catalog(move |s| s.orphan_deleted(host, &shard, Some(&fence), now())).await?;
                Ok(true)
            }
        },
    )
    .await
}

/// Removes snapshots and objects whose expiry passed (and whose lock ended).
async fn expire(shared: &Arc<Shared>, fence: &Fence) -> Result<(), crate::store::StoreError> {
    let fence = fence.clone();
    let done = shared.catalog(move |s| s.expire(now(), BATCH, Some(&fence))).await?;
    if done != crate::store::Expired::default() {
        let detail = format!(
            "{} snapshot(s), {} object version(s); {} pack(s) released",
            done.snapshots, done.objects, done.packs_released
        );
        crate::api::event(shared, crate::api::Who::coordinator(), "data.expired", detail).await;
        if done.packs_released > 0 {
            shared.backup_soon();
        }
    }
    Ok(())
}
