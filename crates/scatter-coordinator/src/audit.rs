//! Audits: every checker interval the coordinator asks a few hosts (those audited least
//! first) for a Bao proof of a random 4 KiB range of a random shard, and checks it against the
//! shard id in the catalog. A host that lost or altered the data cannot pass. A failed audit
//! marks the shard lost (repair rebuilds it elsewhere) and counts against the host if the
//! host signed a receipt for it; enough failures disqualify it (see
//! [`crate::store::Store::record_audit`]).
//!
//! A host that keeps its heartbeats but leaves audits unanswered (server errors, timeouts)
//! is not lying in a way a proof shows, but it is not serving its shards either (a failing
//! disk, or a host hiding a loss): [`UNANSWERED_LIMIT`] audits of one shard left unanswered
//! in a row count as one failed audit. They are counted per shard, and an unanswered shard
//! is audited again in every pass, so a host that errs only on the shards it lost, and
//! answers for the rest, is caught as surely as one that answers nothing. The audits of a
//! pass run at once, so one slow host delays no other.
//!
//! Clients report shards that failed them ([`ReportChecks`]); a report marks nothing by
//! itself. The coordinator reads the shard whole and hashes it, and only a shard its host
//! cannot serve intact is recorded as a failed audit. A reader that lies gains nothing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use scatter_core::{HostId, PackId, ShardId, UserId};

use crate::store::{AuditTarget as Target, HostRow};
use crate::{now, Shared};

/// Hosts audited per pass.
const AUDITS_PER_PASS: usize = 4;
/// Audits of one shard a heartbeating host may leave unanswered in a row before one counts
/// as failed: a host overloaded for a moment is not blamed, one that never answers is.
const UNANSWERED_LIMIT: u32 = 3;
/// Unanswered shards followed at once; beyond it, new ones wait for a later pass to find them.
const MAX_UNANSWERED: usize = 1024;
/// Unanswered shards audited again per pass (on top of [`AUDITS_PER_PASS`] new ones).
const REAUDITS_PER_PASS: usize = 16;
/// How long an unanswered shard is followed: a host offline for longer has had its shards
/// rebuilt elsewhere, and the room goes to others.
const UNANSWERED_MEMORY: u64 = 3600;

/// A shard whose audits were left unanswered.
struct Strikes {
    target: Target,
    /// Unanswered in a row.
    count: u32,
    /// When it was first left unanswered (unix seconds).
    since: u64,
    /// When it was last left unanswered (unix seconds).
    last: u64,
}

/// Shards whose audits were left unanswered, with how many in a row since their host last
/// answered for them: audited again in every pass until answered or counted as failed.
/// Kept in memory: a coordinator that takes over the checker starts the counts again.
#[derive(Default)]
pub(crate) struct Unanswered(Mutex<HashMap<(HostId, ShardId), Strikes>>);

impl Unanswered {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(HostId, ShardId), Strikes>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows `target` from `now`, if there is room; `None` if there is none. A strike
    /// (`struck`) takes the place of a shard only watched: reports, which anyone reading
    /// data can make, must not crowd out what the audits found.
    fn entry(
        map: &mut HashMap<(HostId, ShardId), Strikes>,
        target: Target,
        now: u64,
        struck: bool,
    ) -> Option<&mut Strikes> {
        let key = (target.0, target.3);
        if !map.contains_key(&key) && map.len() >= MAX_UNANSWERED {
            let watched = map.iter().find(|(_, e)| e.count == 0).map(|(k, _)| *k);
            match watched {
                Some(k) if struck => map.remove(&k),
                _ => return None,
            };
        }
        Some(map.entry(key).or_insert(Strikes { target, count: 0, since: now, last: now }))
    }

    /// Counts an unanswered audit of `target`, whose host was last heard from at `seen`;
    /// true when it makes [`UNANSWERED_LIMIT`] in a row (the shard is then forgotten here).
    /// After the first, a strike counts only if the host sent a heartbeat since the last one:
    /// a host that died is still "heard from lately" until it counts as offline, and a crash
    /// is not a failed audit (a 3-host grid could never place the shard back).
    fn strike(&self, target: Target, now: u64, seen: u64) -> bool {
        let mut map = self.map();
        let Some(entry) = Self::entry(&mut map, target, now, true) else { return false };
        if entry.count > 0 && seen <= entry.last {
            return false;
        }
        entry.count += 1;
        entry.last = now;
        if entry.count >= UNANSWERED_LIMIT {
            map.remove(&(target.0, target.3));
            return true;
        }
        false
    }

    /// Has the next pass audit `target` (a shard a client could not read), counting nothing.
    fn watch(&self, target: Target, now: u64) {
        Self::entry(&mut self.map(), target, now, false);
    }

    /// Stops following `shard` on `host`, returning it if an audit of it was left unanswered
    /// (a strike, not a report only watched).
    fn struck(&self, host: HostId, shard: ShardId) -> Option<Target> {
        let mut map = self.map();
        match map.get(&(host, shard)) {
            Some(e) if e.count > 0 => map.remove(&(host, shard)).map(|e| e.target),
            _ => None,
        }
    }

    /// `host` answered an audit of `shard`.
    fn answered(&self, host: HostId, shard: ShardId) {
        self.map().remove(&(host, shard));
    }

    /// The shards to audit again this pass, on active hosts heard from since `cutoff`: those
    /// nearest to counting as failed first. Shards of hosts no longer active, or followed for
    /// longer than [`UNANSWERED_MEMORY`], are forgotten.
    fn due(&self, hosts: &[HostRow], cutoff: u64, now: u64) -> Vec<Target> {
        let mut map = self.map();
        let standing = |id: HostId| hosts.iter().find(|h| h.id == id && h.state == crate::store::Standing::Active);
        map.retain(|&(host, _), e| standing(host).is_some() && e.since + UNANSWERED_MEMORY > now);
        let mut due: Vec<&Strikes> =
            map.values().filter(|e| standing(e.target.0).is_some_and(|h| h.last_seen >= cutoff)).collect();
        due.sort_by_key(|e| std::cmp::Reverse(e.count));
        due.into_iter().take(REAUDITS_PER_PASS).map(|e| e.target).collect()
    }
}

/// How long after its start a coordinator restored from a catalog backup waits for a
/// host's first inventory before it audits the host anyway.
const INVENTORY_WAIT: u64 = 600;

/// Hosts whose inventory this coordinator has reconciled since it started. A catalog
/// restored from a backup may place shards where the catalog it replaced had moved them
/// from, and deleted them since: a host's first inventory marks those lost (the host's own
/// word, which counts against nobody, as any loss it reports itself), and only then is the
/// host audited, or asked about a shard a client reported. Audited first, healthy hosts
/// failed audit after audit for shards they had rightly deleted, and were disqualified for
/// good. A host that sends no inventory is audited anyway after [`INVENTORY_WAIT`].
pub(crate) struct Inventoried {
    started: u64,
    hosts: Mutex<HashSet<HostId>>,
}

impl Default for Inventoried {
    fn default() -> Self {
        Self { started: now(), hosts: Mutex::default() }
    }
}

impl Inventoried {
    /// `host`'s inventory was reconciled.
    pub(crate) fn note(&self, host: HostId) {
        self.hosts.lock().unwrap_or_else(|p| p.into_inner()).insert(host);
    }

    /// Whether `host` may be audited at `now`; `restored`: the catalog was restored from a
    /// backup lately (see [`crate::Shared::holding_orphans`]).
    fn may_audit(&self, host: HostId, now: u64, restored: bool) -> bool {
        !restored
            || now >= self.started.saturating_add(INVENTORY_WAIT)
            || self.hosts.lock().unwrap_or_else(|p| p.into_inner()).contains(&host)
    }
}

/// Bytes proven per audit.
const RANGE: u64 = 4096;
/// The largest proof read from a host: the range, with a Bao tree's hashes for a shard of up
/// to 64 GiB (far more than any proof of [`RANGE`] bytes needs).
const MAX_PROOF: u64 = 64 << 10;

/// Reported shards being checked: at most [`REPORT_CHECKS`] at once, each (host, shard)
/// once at a time, a shard found intact not again on report for [`CLEARED_FOR`], and at
/// most [`CHECKS_PER_ACCOUNT`] an hour on one account's reports; reports beyond that are
/// dropped (the audits and the next read find real damage anyway), so reports cannot make
/// the coordinator read without bound, nor one account's lies keep the checks from others'.
#[derive(Default)]
pub(crate) struct ReportChecks {
    slots: Slots,
    pending: Mutex<HashSet<(HostId, ShardId)>>,
    /// Shards a check found intact, and when.
    cleared: Mutex<HashMap<(HostId, ShardId), u64>>,
    /// Checks started on each account's reports: the hour (unix hours) and how many.
    started: Mutex<HashMap<UserId, (u64, u32)>>,
}

/// Reported shards checked at once.
const REPORT_CHECKS: usize = 2;
/// Seconds a shard found intact is not checked on report again.
const CLEARED_FOR: u64 = 3600;
/// Shards remembered as found intact at most (the oldest are forgotten first).
const MAX_CLEARED: usize = 65_536;
/// Checks one account's reports may start in an hour.
const CHECKS_PER_ACCOUNT: u32 = 64;

struct Slots(Arc<tokio::sync::Semaphore>);

impl Default for Slots {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::Semaphore::new(REPORT_CHECKS)))
    }
}

impl ReportChecks {
    /// Whether a report by `account` of `shard` on `host` is worth a check at `now`; if so,
    /// counts it as started and marks the shard pending.
    fn admit(&self, account: UserId, host: HostId, shard: ShardId, now: u64) -> bool {
        let cleared = self.cleared.lock().unwrap_or_else(|p| p.into_inner());
        if cleared.get(&(host, shard)).is_some_and(|at| now < at.saturating_add(CLEARED_FOR)) {
            return false;
        }
        let mut started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        let hour = now / 3600;
        let count = started.entry(account).or_insert((hour, 0));
        if count.0 != hour {
            *count = (hour, 0);
        }
        if count.1 >= CHECKS_PER_ACCOUNT
            || !self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert((host, shard))
        {
            return false;
        }
        count.1 += 1;
        started.retain(|_, (h, _)| *h == hour);
        true
    }

    /// Ends the check of `shard` on `host`; `intact`: it passed, at `now`.
    fn done(&self, host: HostId, shard: ShardId, intact: bool, now: u64) {
        if intact {
            let mut cleared = self.cleared.lock().unwrap_or_else(|p| p.into_inner());
            if cleared.len() >= MAX_CLEARED {
                cleared.retain(|_, at| now < at.saturating_add(CLEARED_FOR));
                if cleared.len() >= MAX_CLEARED {
                    cleared.clear();
                }
            }
            cleared.insert((host, shard), now);
        }
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&(host, shard));
    }
}

/// Checks, in the background, a shard that `account` reported bad: shard `index` of `pack`
/// on `host`, `size` bytes. Returns whether a check was started.
pub(crate) fn check_report(
    shared: &Arc<Shared>,
    account: UserId,
    host: HostId,
    pack: PackId,
    index: u8,
    shard: ShardId,
    size: u64,
) -> bool {
    if !shared.inventoried.may_audit(host, now(), shared.holding_orphans(now())) {
        return false;
    }
    let checks = &shared.report_checks;
    let Ok(slot) = checks.slots.0.clone().try_acquire_owned() else { return false };
    if !checks.admit(account, host, shard, now()) {
        return false;
    }
    let sh = shared.clone();
    tokio::spawn(async move {
        let _slot = slot;
        // Only a failure is recorded: passes on request would let a host and a reader in
        // league pad the host's audit record against the share of failures that disqualifies.
        let verdict = check_whole(&sh, host, &shard, size).await;
        match verdict {
            Some(false) => {
                tracing::warn!(%host, %shard, "a reported shard failed the coordinator's check; it will be rebuilt");
                match sh.catalog(move |s| s.record_audit(host, &pack, index, false, None, now())).await {
                    Ok(true) => disqualified(&sh, host).await,
                    Ok(false) => {}
                    Err(_) => tracing::warn!(%host, %shard, "could not record the check of a reported shard"),
                }
            }
            // Not answered: the audits ask again until it is, or until it counts as failed
            // (a report counts nothing by itself, whoever made it).
            None => sh.unanswered.watch((host, pack, index, shard, size), now()),
            Some(true) => {}
        }
        sh.report_checks.done(host, shard, verdict == Some(true), now());
    });
    true
}

/// Reads a whole shard from its host and hashes it: `Some(true)` intact, `Some(false)` the
/// host lacks it or serves other bytes, `None` the host could not be asked (offline or
/// struggling: heartbeats deal with that).
async fn check_whole(shared: &Arc<Shared>, host: HostId, shard: &ShardId, size: u64) -> Option<bool> {
    let hosts = shared.catalog(|s| s.hosts()).await.ok()?;
    let row: &HostRow = hosts.iter().find(|h| h.id == host)?;
    match crate::shards::read(shared, row, shard, size).await {
        crate::shards::Answer::Ok(_) => Some(true),
        crate::shards::Answer::Wrong(_) => Some(false),
        crate::shards::Answer::Unreachable(_) => None,
    }
}

/// Smallest read that says anything about a host's bandwidth: below it, latency dominates.
const MIN_BANDWIDTH_SAMPLE: u64 = 64 << 10;

/// Folds a whole-shard read of `bytes` from `host` that took `took` into the host's
/// measured bandwidth (reads below [`MIN_BANDWIDTH_SAMPLE`] are ignored). The figure is the
/// coordinator's own measurement, unlike what the host declares; a failure to record it is
/// logged only.
pub(crate) async fn note_bandwidth(shared: &Arc<Shared>, host: HostId, bytes: u64, took: Duration) {
    if bytes < MIN_BANDWIDTH_SAMPLE {
        return;
    }
    let sample = (bytes as f64 / took.as_secs_f64().max(1e-6)) as u64;
    if shared.catalog(move |s| s.record_bandwidth(host, sample)).await.is_err() {
        tracing::debug!(%host, "could not record a bandwidth sample");
    }
}

/// Runs one round of audits.
pub(crate) async fn pass(shared: &Arc<Shared>, fence: &crate::store::Fence) -> Result<(), crate::store::StoreError> {
    // Hosts heard from within the grace, this coordinator's start not counting as heard
    // (`room::Start`): asking a host not heard from since would only time out.
    let cutoff = now().saturating_sub(shared.offline_after.as_secs());
    let hosts = shared.catalog(|s| s.hosts()).await?;
    let due = shared.unanswered.due(&hosts, cutoff, now());
    let asked_again = due.clone();
    let mut targets = shared.catalog(move |s| s.still_audited(asked_again)).await?;
    for gone in due.iter().filter(|t| !targets.contains(t)) {
        // Moved, repaired or deleted since: nothing left to ask its host.
        shared.unanswered.answered(gone.0, gone.3);
    }
    for t in shared.catalog(move |s| s.audit_targets(cutoff, AUDITS_PER_PASS)).await? {
        if !targets.iter().any(|d| (d.0, d.3) == (t.0, t.3)) {
            targets.push(t);
        }
    }
    let (at, restored) = (now(), shared.holding_orphans(now()));
    targets.retain(|t| shared.inventoried.may_audit(t.0, at, restored));
    if targets.is_empty() {
        return Ok(());
    }
    let asked = targets.into_iter().filter_map(|(host, pack, index, shard, size)| {
        let row = hosts.iter().find(|h| h.id == host)?;
        let len = RANGE.min(size);
        let start = rand::thread_rng().gen_range(0..=size - len);
        Some(async move {
            let answer = crate::shards::proof(shared, row, &shard, size, (start, len), MAX_PROOF).await;
            (host, pack, index, shard, size, start, len, answer)
        })
    });
    for (host, pack, index, shard, size, start, len, answer) in futures::future::join_all(asked).await {
        let verdict = match answer {
            crate::shards::Answer::Ok(proof) => {
                shared.unanswered.answered(host, shard);
                scatter_core::audit::verify(&shard, start, len, &proof).map(|_| ()).map_err(|e| e.to_string())
            }
            crate::shards::Answer::Wrong(why) => {
                shared.unanswered.answered(host, shard);
                Err(why)
            }
            // Offline or struggling for now (the targets were heard from lately), or hiding
            // a loss behind errors: only a run of these counts.
            crate::shards::Answer::Unreachable(why) => {
                let seen = hosts.iter().find(|h| h.id == host).map_or(0, |h| h.last_seen);
                match shared.unanswered.strike((host, pack, index, shard, size), now(), seen) {
                    true => Err(format!("left {UNANSWERED_LIMIT} audits in a row unanswered ({why})")),
                    false => continue,
                }
            }
        };
        let passed = verdict.is_ok();
        if let Err(why) = &verdict {
            tracing::warn!(%host, %shard, %why, "audit failed; the shard will be rebuilt elsewhere");
        }
        let fence = fence.clone();
        let disqualified =
            shared.catalog(move |s| s.record_audit(host, &pack, index, passed, Some(&fence), now())).await?;
        if disqualified {
            self::disqualified(shared, host).await;
        }
    }
    Ok(())
}

/// Counts as failed audits the shards among `marked` (just marked lost because `host`'s
/// inventory lacks them) whose audits `host` left unanswered: a host that answers an audit
/// with an error and then reports the shard gone would otherwise fail no audit, ever, however
/// much it lost, and go on being given shards. A loss reported before any audit asked for it
/// counts nothing: the host said so itself, and repair starts at once.
pub(crate) async fn lost_while_struck(shared: &Arc<Shared>, host: HostId, marked: &[ShardId]) {
    for shard in marked {
        let Some((_, pack, index, _, _)) = shared.unanswered.struck(host, *shard) else { continue };
        tracing::warn!(%host, %shard, "a host reported a shard gone after leaving its audit unanswered; counted as a failed audit");
        match shared.catalog(move |s| s.record_audit(host, &pack, index, false, None, now())).await {
            Ok(true) => disqualified(shared, host).await,
            Ok(false) => {}
            Err(_) => tracing::warn!(%host, %shard, "could not record a failed audit"),
        }
    }
}

/// Says, in the log and the audit trail, that `host` was just disqualified.
async fn disqualified(shared: &Arc<Shared>, host: HostId) {
    tracing::warn!(%host, "host disqualified after failed audits, for good; its shards are repaired elsewhere");
    let detail = format!("{host}: disqualified after failed audits (for good: it may join again as a new host)");
    crate::api::event(shared, crate::api::Who::coordinator(), "host.state", detail).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: u64, shard: u8) -> Target {
        (HostId(host), PackId::from_bytes([shard; 32]), 0, ShardId::from_bytes([shard; 32]), 4096)
    }

    #[test]
    fn after_a_restore_a_host_is_audited_once_it_sent_its_inventory_or_after_a_while() {
        let i = Inventoried { started: 1_000, hosts: Mutex::default() };
        let (h1, h2) = (HostId(1), HostId(2));
        assert!(i.may_audit(h1, 1_000, false), "a catalog not restored lately: at once");
        assert!(!i.may_audit(h1, 1_000, true) && !i.may_audit(h2, 1_000, true));
        i.note(h1);
        assert!(i.may_audit(h1, 1_001, true) && !i.may_audit(h2, 1_001, true), "the one heard from");
        assert!(i.may_audit(h2, 1_000 + INVENTORY_WAIT, true), "a host that sends none, in time");
    }

    #[test]
    fn a_reported_shard_found_intact_is_not_checked_again_for_a_while() {
        let c = ReportChecks::default();
        let (host, shard) = (HostId(1), ShardId::from_bytes([1; 32]));
        assert!(c.admit(UserId(1), host, shard, 1_000));
        assert!(!c.admit(UserId(2), host, shard, 1_000), "a check under way takes no second one");
        c.done(host, shard, true, 1_010);
        assert!(!c.admit(UserId(2), host, shard, 1_020), "found intact just now");
        assert!(c.admit(UserId(2), host, shard, 1_010 + CLEARED_FOR), "found intact an hour ago");
        // A shard found bad (or not answered) may be reported again at once.
        c.done(host, shard, false, 5_000);
        assert!(c.admit(UserId(2), host, shard, 5_000));
    }

    #[test]
    fn one_account_starts_a_bounded_number_of_checks_an_hour() {
        let c = ReportChecks::default();
        let shard = |i: u32| ShardId::from_bytes([(i % 251) as u8; 32]);
        for i in 0..CHECKS_PER_ACCOUNT {
            assert!(c.admit(UserId(1), HostId(u64::from(i)), shard(i), 7_200), "check {i}");
        }
        assert!(!c.admit(UserId(1), HostId(999), shard(999), 7_300), "past the hour's checks");
        assert!(c.admit(UserId(2), HostId(999), shard(999), 7_300), "another account has its own");
        assert!(c.admit(UserId(1), HostId(1_000), shard(1_000), 10_800), "the next hour");
    }

    #[test]
    fn unanswered_audits_count_per_shard_and_an_answer_for_another_shard_resets_nothing() {
        let u = Unanswered::default();
        assert!(!u.strike(target(1, 1), 0, 1));
        assert!(!u.strike(target(1, 1), 0, 1));
        // The host answers for its other shards, as a host hiding one loss does.
        u.answered(HostId(1), ShardId::from_bytes([2; 32]));
        assert!(!u.strike(target(1, 2), 0, 1));
        assert!(u.strike(target(1, 1), 0, 1), "three in a row for one shard count as a failure");
        assert!(!u.strike(target(1, 1), 0, 1), "and the count starts again");
        u.answered(HostId(1), ShardId::from_bytes([1; 32]));
        assert!(!u.strike(target(1, 1), 0, 1) && !u.strike(target(1, 1), 0, 1), "an answer for the shard resets it");
    }

    #[test]
    fn a_shard_reported_gone_after_an_unanswered_audit_is_found_struck_once() {
        let u = Unanswered::default();
        u.watch(target(1, 1), 0);
        assert_eq!(u.struck(HostId(1), ShardId::from_bytes([1; 32])), None, "a report only watched counts nothing");
        assert!(!u.strike(target(1, 2), 0, 1));
        assert_eq!(u.struck(HostId(1), ShardId::from_bytes([2; 32])), Some(target(1, 2)));
        assert_eq!(u.struck(HostId(1), ShardId::from_bytes([2; 32])), None, "once");
        assert_eq!(u.struck(HostId(2), ShardId::from_bytes([1; 32])), None);
    }

    #[test]
    fn a_host_silent_since_its_last_unanswered_audit_is_not_struck_again() {
        // A host that died between heartbeats is still "heard from lately" for a while: its
        // audits go unanswered, but only heartbeats sent after them show it is up and
        // failing to serve. A crash is the heartbeats' business, not a failed audit.
        let u = Unanswered::default();
        assert!(!u.strike(target(1, 1), 100, 99));
        assert!(!u.strike(target(1, 1), 102, 99));
        assert!(!u.strike(target(1, 1), 104, 99), "a dead host's shard counted as failed");
        // Back and heartbeating, still not answering: each strike after a heartbeat counts.
        assert!(!u.strike(target(1, 1), 106, 105));
        assert!(u.strike(target(1, 1), 108, 107));
    }

    #[test]
    fn a_watched_shard_counts_nothing_and_the_map_is_bounded() {
        let u = Unanswered::default();
        u.watch(target(1, 1), 0);
        u.watch(target(1, 1), 0);
        assert!(!u.strike(target(1, 1), 0, 1) && !u.strike(target(1, 1), 0, 1));
        assert!(u.strike(target(1, 1), 0, 1));
        for i in 0..MAX_UNANSWERED as u64 + 10 {
            u.watch(target(i + 10, 3), 0);
        }
        assert_eq!(u.map().len(), MAX_UNANSWERED);
        // Watched shards (which reports add) make way for what the audits find.
        assert!(!u.strike(target(5000, 4), 0, 1) && !u.strike(target(5000, 4), 0, 1));
        assert!(u.strike(target(5000, 4), 0, 1), "a full map of reported shards held a strike back");
        assert_eq!(u.map().len(), MAX_UNANSWERED - 1);
    }

    fn host(id: u64, state: crate::store::Standing, last_seen: u64) -> HostRow {
        HostRow {
            id: HostId(id),
            address: String::new(),
            zone: String::new(),
            capacity: 1 << 40,
            reported_used: 0,
            free: 0,
            last_seen,
            catalog_used: 0,
            state,
            shards: 1,
            audits_passed: 0,
            audits_failed: 0,
            receipt_key: None,
            operator: None,
            terms: Default::default(),
            record: Default::default(),
        }
    }

    #[test]
    fn shards_due_again_are_those_of_live_hosts_nearest_to_failing_first() {
        use crate::store::Standing::{Active, Disqualified};
        let u = Unanswered::default();
        u.strike(target(1, 1), 100, 101);
        u.strike(target(1, 1), 100, 101);
        u.watch(target(1, 2), 100);
        u.strike(target(2, 3), 100, 101); // offline now: kept, not asked
        u.strike(target(3, 4), 100, 101); // disqualified: forgotten
        for i in 0..REAUDITS_PER_PASS as u8 {
            u.watch(target(4, 10 + i), 100);
        }
        let hosts = [host(1, Active, 50), host(2, Active, 10), host(3, Disqualified, 50), host(4, Active, 50)];
        let due = u.due(&hosts, 40, 200);
        assert_eq!(due.len(), REAUDITS_PER_PASS);
        assert_eq!(due[0], target(1, 1), "two strikes first");
        assert!(!due.iter().any(|t| t.0 == HostId(2) || t.0 == HostId(3)));
        assert_eq!(u.map().len(), 2 + REAUDITS_PER_PASS + 1, "the disqualified host's shard is forgotten");
        // An hour on, everything is forgotten and the room is free again.
        assert!(u.due(&hosts, 40, 100 + UNANSWERED_MEMORY).is_empty());
        assert!(u.map().is_empty());
    }
}
