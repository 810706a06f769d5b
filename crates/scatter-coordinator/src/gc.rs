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

use crate::store::Fence;
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
    delete_orphans(shared, fence).await?;
    let released_by = now().saturating_sub(shared.release_grace.as_secs());
    let todo = shared.catalog(move |s| s.shards_to_delete(BATCH, released_by)).await?;
    if todo.is_empty() {
        return Ok(());
    }
    let hosts = shared.catalog(|s| s.hosts()).await?;
    for (pack, index, shard, host, still_needed) in todo {
        if still_needed {
            // Another pack places the same shard on this host: forget the row, keep the bytes.
            {
                let fence = fence.clone();
                shared.catalog(move |s| s.shard_deleted(&pack, index, Some(&fence), now())).await?;
            }
            continue;
        }
        let Some(h) = hosts.iter().find(|h| h.id == host) else { continue };
        if crate::shards::delete(shared, h, &shard).await {
            {
                let fence = fence.clone();
                shared.catalog(move |s| s.shard_deleted(&pack, index, Some(&fence), now())).await?;
            }
        }
    }
    Ok(())
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
    for (host, shard, grant, since) in todo {
        let done = match hosts.iter().find(|h| h.id == host) {
            None => true,
            // An offline host is not waited for on every pass.
            Some(h) if !crate::room::is_online(shared, h.last_seen) => now().saturating_sub(since) > grace,
            Some(h) => match crate::shards::delete_if(shared, h, &shard, &grant).await {
                crate::shards::Deleted::Gone | crate::shards::Deleted::Kept => true,
                crate::shards::Deleted::Failed => now().saturating_sub(since) > grace,
            },
        };
        if done {
            let fence = fence.clone();
            shared.catalog(move |s| s.abandoned_done(host, &shard, &grant, Some(&fence), now())).await?;
        }
    }
    Ok(())
}

/// Deletes shard copies left on hosts after repair moved their shard elsewhere.
async fn delete_orphans(shared: &Arc<Shared>, fence: &Fence) -> Result<(), crate::store::StoreError> {
    let todo = shared.catalog(|s| s.orphans(BATCH)).await?;
    if todo.is_empty() {
        return Ok(());
    }
    let hosts = shared.catalog(|s| s.hosts()).await?;
    for (host, shard) in todo {
        let Some(h) = hosts.iter().find(|h| h.id == host) else { continue };
        if crate::shards::delete(shared, h, &shard).await {
            {
                let fence = fence.clone();
                shared.catalog(move |s| s.orphan_deleted(host, &shard, Some(&fence), now())).await?;
            }
        }
    }
    Ok(())
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
        crate::api::event(shared, "coordinator".into(), "data.expired", detail).await;
        if done.packs_released > 0 {
            shared.backup_soon();
        }
    }
    Ok(())
}
