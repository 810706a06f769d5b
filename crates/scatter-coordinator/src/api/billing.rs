//! Metering and billing over HTTP: statements, raw records, rate cards and closing periods
//! (`/v1/admin/billing*`, admins only); a user's own usage (`/v1/usage`); a host's own
//! earnings (`/v1/hosts/earnings`, with the host's secret). Who sees what: an admin sees
//! everyone's; a user (role `user`) only its own; a delegate (reader, appender) nothing of
//! its owner's bill; a host only its own statement.

use scatter_proto::billing::{EarningsRequest, RateCard, RateCardRequest, Statement, UsageRecord, UsageResponse};

use super::*;
use crate::metering::{Kind, Period, Subject};

/// `?period=YYYY-MM&user=u3&host=h2`.
#[derive(Debug, Deserialize)]
pub(super) struct BillingQuery {
    period: Option<String>,
    user: Option<String>,
    host: Option<String>,
}

fn period_of(text: Option<&str>) -> Result<Period, ApiError> {
    match text {
        None => Ok(Period::of(now())),
        Some(t) => t.parse().map_err(ApiError::BadRequest),
    }
}

fn subject_of(q: &BillingQuery) -> Result<Option<Subject>, ApiError> {
    match (&q.user, &q.host) {
        (Some(_), Some(_)) => Err(ApiError::BadRequest("ask for one user or one host, not both".into())),
        (Some(u), None) => {
            let id: UserId =
                u.parse().map_err(|_| ApiError::BadRequest(format!("`{u}` is not a user id (e.g. u3)")))?;
            Ok(Some(Subject::User(id.0)))
        }
        (None, Some(h)) => {
            let id: HostId =
                h.parse().map_err(|_| ApiError::BadRequest(format!("`{h}` is not a host id (e.g. h2)")))?;
            Ok(Some(Subject::Host(id.0)))
        }
        (None, None) => Ok(None),
    }
}

/// Records what reads cost, when grants for them are issued (see [`Store::charge_reads`]: a
/// shard's bytes count once per grant lifetime, however many grants name them, from
/// whichever coordinator).
pub(super) async fn record_reads(sh: &Arc<Shared>, user: UserId, reads: Vec<Read>) {
    let window = super::GRANT_TTL.as_secs();
    if let Err(e) = sh.catalog(move |s| s.charge_reads(user, &reads, window, now())).await {
        tracing::warn!(error = %e, "could not record read grants as usage");
    }
}

/// `GET /v1/admin/billing?period=&user=|host=`: a period's statement (admins).
pub(super) async fn statement(State(sh): S, headers: HeaderMap, Query(q): Query<BillingQuery>) -> ApiResult<Statement> {
    caller(&sh, &headers, Right::Admin).await?;
    let (period, only) = (period_of(q.period.as_deref())?, subject_of(&q)?);
    Ok(Json(db(&sh, move |s| s.statement(period, only, now())).await?))
}

/// `GET /v1/admin/billing/records?period=&user=|host=`: the raw usage records (admins).
pub(super) async fn records(
    State(sh): S,
    headers: HeaderMap,
    Query(q): Query<BillingQuery>,
) -> ApiResult<Vec<UsageRecord>> {
    caller(&sh, &headers, Right::Admin).await?;
    let period = q.period.as_deref().map(|p| p.parse::<Period>().map_err(ApiError::BadRequest)).transpose()?;
    let only = subject_of(&q)?;
    let rows = db(&sh, move |s| s.usage_records(period, only)).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| UsageRecord {
                id: r.id,
                time: r.time,
                period: r.period.to_string(),
                subject: r.subject.kind_str().into(),
                who: r.subject.id(),
                kind: r.kind.as_str().into(),
                amount: r.amount,
                claim: r.kind.is_claim(),
                adjusts: r.adjusts.map(|p| p.to_string()),
            })
            .collect(),
    ))
}

/// `GET /v1/admin/billing/rates`: every rate card (admins).
pub(super) async fn rates(State(sh): S, headers: HeaderMap) -> ApiResult<Vec<RateCard>> {
    caller(&sh, &headers, Right::Admin).await?;
    Ok(Json(db(&sh, |s| s.rate_cards()).await?))
}

/// `POST /v1/admin/billing/rates`: adds a rate card (admins); recorded in the audit trail.
pub(super) async fn set_rates(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<RateCardRequest>,
) -> ApiResult<RateCard> {
    let admin = caller(&sh, &headers, Right::Admin).await?;
    if req.currency.is_empty() || req.currency.len() > 32 || req.currency.chars().any(|c| c.is_control()) {
        return Err(ApiError::BadRequest("name the currency and unit in 1 to 32 characters, e.g. EUR-micro".into()));
    }
    if req.effective % 86_400 != 0 {
        return Err(ApiError::BadRequest("prices change at the start of a UTC day".into()));
    }
    let card = RateCard {
        effective: req.effective,
        currency: req.currency,
        storage_gib_month: req.storage_gib_month,
        egress_gib: req.egress_gib,
        host_storage_gib_month: req.host_storage_gib_month,
        host_egress_gib: req.host_egress_gib,
        set_at: now(),
        set_by: admin.me.to_string(),
    };
    let c = card.clone();
    db(&sh, move |s| s.set_rate_card(&c)).await?.map_err(|e| ApiError::Conflict(e.to_string()))?;
    let detail = format!(
        "from {}: {} storage/GiB-month {}, egress/GiB {}, host storage/GiB-month {}, host egress/GiB {}",
        crate::metering::format_time(card.effective),
        card.currency,
        card.storage_gib_month,
        card.egress_gib,
        card.host_storage_gib_month,
        card.host_egress_gib
    );
    event(&sh, &admin, "billing.rates", detail).await;
    Ok(Json(card))
}

/// `POST /v1/admin/billing/close?period=`: closes a period that is over (admins).
pub(super) async fn close(
    State(sh): S,
    headers: HeaderMap,
    Query(q): Query<BillingQuery>,
) -> ApiResult<serde_json::Value> {
    let admin = caller(&sh, &headers, Right::Admin).await?;
    let Some(text) = q.period.as_deref() else {
        return Err(ApiError::BadRequest("say which period to close, e.g. --period 2026-11".into()));
    };
    let period = period_of(Some(text))?;
    let closed =
        db(&sh, move |s| s.close_period(period, now())).await?.map_err(|e| ApiError::Conflict(e.to_string()))?;
    if closed {
        event(&sh, &admin, "billing.closed", format!("period {period}")).await;
    }
    Ok(Json(serde_json::json!({ "period": period.to_string(), "closed_now": closed })))
}

/// `GET /v1/usage`: the caller's own usage, quota and charges this period. Accounts of role
/// `user` and admins only: a delegate does not see its owner's bill.
pub(super) async fn usage(State(sh): S, headers: HeaderMap) -> ApiResult<UsageResponse> {
    let u = caller(&sh, &headers, Right::Manage).await?;
    let who = Subject::User(u.me.0);
    let period = Period::of(now());
    let id = u.id;
    let (stored, logical, (objects, snapshots), statement, catalog) = db(&sh, move |s| {
        Ok((
            s.tally(who, Kind::Stored)?,
            s.tally(who, Kind::Logical)?,
            s.object_counts(who.id())?,
            s.statement(period, Some(who), now())?,
            s.quota_usage(id)?.saturating_sub(s.usage(id)?),
        ))
    })
    .await?;
    Ok(Json(UsageResponse {
        stored_bytes: stored.max(0) as u64,
        logical_bytes: logical.max(0) as u64,
        catalog_bytes: catalog,
        quota: u.quota,
        objects,
        snapshots,
        statement,
    }))
}

/// `POST /v1/hosts/earnings`: a host's own statement, signed in with its secret.
pub(super) async fn earnings(State(sh): S, Body(req): Body<EarningsRequest>) -> ApiResult<Statement> {
    check_host(&sh, req.host_id, &req.host_secret).await?;
    let period = period_of(req.period.as_deref())?;
    let who = Subject::Host(req.host_id.0);
    Ok(Json(db(&sh, move |s| s.statement(period, Some(who), now())).await?))
}
