//! Observability: `GET /metrics` in the Prometheus text format, and the data health that
//! `scatter admin health` prints.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;

use crate::api::{caller, db, Right};
use crate::error::ApiError;
use crate::{now, Shared};

/// The grid's data health, as JSON.
pub(crate) async fn health(
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller(&sh, &headers, Right::Admin).await?;
    let cutoff = crate::room::online_cutoff(&sh);
    let h = db(&sh, move |s| s.health(cutoff)).await?;
    let (shards_repaired, bytes_repaired) = db(&sh, |s| s.repair_totals()).await?;
    let waits = db(&sh, |s| s.repair_waits()).await?;
    let waiting: Vec<serde_json::Value> =
        waits.into_iter().map(|(reason, packs)| serde_json::json!({ "reason": reason, "packs": packs })).collect();
    Ok(Json(serde_json::json!({
        "repair_waiting": waiting,
        "packs_total": h.packs_total,
        "packs_full": h.packs_full,
        "packs_degraded": h.packs_degraded,
        "packs_lost": h.packs_lost,
        "repair_queue": h.packs_degraded + h.packs_lost,
        "shards_repaired": shards_repaired,
        "bytes_repaired": bytes_repaired,
        "catalog_backup": catalog_backup(&sh).await,
    })))
}

/// The newest catalog backup: sequence, time and age, and since when the backups tried
/// since have failed, with the last error (`failing`, null while they succeed); null without
/// catalog backups (PostgreSQL), `{"seq": null, ...}` before the first.
async fn catalog_backup(sh: &Arc<Shared>) -> serde_json::Value {
    let Some(b) = &sh.backups else { return serde_json::Value::Null };
    let failing = b.failing.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let failing = failing.map(|(since, error)| serde_json::json!({ "since": since, "error": error }));
    match crate::catalog_backup::last(sh).await {
        Some((seq, time)) => {
            serde_json::json!({ "seq": seq, "time": time, "age_secs": now().saturating_sub(time), "failing": failing })
        }
        None => serde_json::json!({ "seq": null, "failing": failing }),
    }
}

/// Prometheus text exposition: hosts by state, packs by health, repair, bytes stored.
pub(crate) async fn metrics(State(sh): State<Arc<Shared>>) -> Result<String, ApiError> {
    let cutoff = crate::room::online_cutoff(&sh);
    let h = db(&sh, move |s| s.health(cutoff)).await?;
    let hosts = db(&sh, |s| s.hosts()).await?;
    let mut by_state: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for x in &hosts {
        *by_state.entry(crate::room::host_state(&sh, x).to_string()).or_default() += 1;
    }
    let states: String =
        by_state.iter().map(|(state, n)| format!("scatter_hosts{{state=\"{state}\"}} {n}\n")).collect();
    let per_host = per_host(&sh, &hosts);
    let stored: u64 = hosts.iter().map(|x| x.catalog_used).sum();
    let passed: u64 = hosts.iter().map(|x| x.audits_passed).sum();
    let failed: u64 = hosts.iter().map(|x| x.audits_failed).sum();
    let (shards_repaired, bytes_repaired) = db(&sh, |s| s.repair_totals()).await?;
    // The age of the newest catalog backup; -1 before the first (none at all on PostgreSQL).
    let backup_age = match (&sh.backups, crate::catalog_backup::last(&sh).await) {
        (None, _) => String::new(),
        (Some(_), last) => format!(
            "# HELP scatter_catalog_backup_age_seconds Age of the newest catalog backup on hosts (-1: none yet).\n\
             # TYPE scatter_catalog_backup_age_seconds gauge\nscatter_catalog_backup_age_seconds {}\n",
            last.map(|(_, t)| now().saturating_sub(t) as i64).unwrap_or(-1)
        ),
    };
    Ok(format!(
        "# HELP scatter_hosts Hosts by state.\n# TYPE scatter_hosts gauge\n\
         {states}\
         # HELP scatter_packs Live packs by health.\n# TYPE scatter_packs gauge\n\
         scatter_packs{{health=\"full\"}} {}\nscatter_packs{{health=\"degraded\"}} {}\nscatter_packs{{health=\"lost\"}} {}\n\
         # HELP scatter_repair_queue Packs below full redundancy.\n# TYPE scatter_repair_queue gauge\n\
         scatter_repair_queue {}\n\
         # HELP scatter_repaired_shards_total Shards rebuilt and stored on another host.\n# TYPE scatter_repaired_shards_total counter\n\
         scatter_repaired_shards_total {}\n\
         # HELP scatter_repaired_bytes_total Bytes of repaired shards.\n# TYPE scatter_repaired_bytes_total counter\n\
         scatter_repaired_bytes_total {}\n\
         # HELP scatter_stored_bytes Shard bytes the catalog places on hosts.\n# TYPE scatter_stored_bytes gauge\n\
         scatter_stored_bytes {stored}\n\
         # HELP scatter_audits_total Audits by result.\n# TYPE scatter_audits_total counter\n\
         scatter_audits_total{{result=\"passed\"}} {passed}\nscatter_audits_total{{result=\"failed\"}} {failed}\n{backup_age}{per_host}\
         # HELP scatter_build_info The running build.\n# TYPE scatter_build_info gauge\n\
         scatter_build_info{{version=\"{}\"}} 1\n{}",
        h.packs_full,
        h.packs_degraded,
        h.packs_lost,
        h.packs_degraded + h.packs_lost,
        shards_repaired,
        bytes_repaired,
        env!("CARGO_PKG_VERSION"),
        sh.request_times.render(),
    ))
}

/// A Prometheus label value: backslashes, quotes and line breaks escaped (zones are the
/// hosts' own words).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// One series per host: whether it is up (with its zone and state), what it offers and
/// holds, and its audits; so an operator can alert on one host, not only on counts. Each
/// family's lines are one group, as the text format wants.
fn per_host(sh: &Shared, hosts: &[crate::store::HostRow]) -> String {
    type Family = (&'static str, &'static str, &'static str, fn(&crate::store::HostRow) -> u64);
    let families: [Family; 5] = [
        ("scatter_host_capacity_bytes", "gauge", "Bytes a host offers.", |x| x.capacity),
        ("scatter_host_used_bytes", "gauge", "Bytes a host holds.", |x| x.catalog_used.max(x.reported_used)),
        ("scatter_host_shards", "gauge", "Shards the catalog places on a host.", |x| x.shards),
        ("scatter_host_audits_passed_total", "counter", "Audits a host passed.", |x| x.audits_passed),
        ("scatter_host_audits_failed_total", "counter", "Audits a host failed.", |x| x.audits_failed),
    ];
    let mut out = String::from(
        "# HELP scatter_host_up Whether a host is online (1) or not (0), with its zone and state.\n\
         # TYPE scatter_host_up gauge\n",
    );
    for x in hosts {
        let state = crate::room::host_state(sh, x).to_string();
        let online = u8::from(state == "online");
        out +=
            &format!("scatter_host_up{{host=\"{}\",zone=\"{}\",state=\"{state}\"}} {online}\n", x.id, label(&x.zone));
    }
    for (name, kind, help, value) in families {
        out += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n");
        for x in hosts {
            out += &format!("{name}{{host=\"{}\"}} {}\n", x.id, value(x));
        }
    }
    out
}
