//! The dashboard's pages (askama templates in `templates/dashboard/`, escaped by default)
//! and its actions.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use scatter_core::{ByteSize, HostId, UserId};
use scatter_proto::api::{DrainRequest, Role};

use super::{chart, Signed, Viewer};
use crate::api::{db, Right};
use crate::error::ApiError;
use crate::{now, Shared};

/// The stylesheet, embedded.
pub(super) const STYLE: &str = include_str!("../../templates/dashboard/style.css");
/// The login page's script (reads the link's fragment and posts it), embedded.
pub(super) const LOGIN_JS: &str = include_str!("../../templates/dashboard/login.js");

type Sh = State<Arc<Shared>>;

/// One link of the navigation bar.
pub(super) struct Nav {
    href: &'static str,
    label: &'static str,
    active: bool,
}

/// What every signed-in page shows around its content.
pub(super) struct Chrome {
    title: &'static str,
    nav: Vec<Nav>,
    who: String,
    csrf: String,
    generated: String,
}

fn chrome(v: &Viewer, title: &'static str, at: &str) -> Chrome {
    let mut links = vec![("/me", "My data")];
    if v.user.role == Role::Admin {
        links = vec![
            ("/grid", "Grid"),
            ("/hosts", "Hosts"),
            ("/users", "Users"),
            ("/access", "Invites & devices"),
            ("/events", "Events"),
            ("/me", "My data"),
        ];
    }
    Chrome {
        title,
        nav: links.into_iter().map(|(href, label)| Nav { href, label, active: href == at }).collect(),
        who: format!("{} ({}, {})", v.name, v.user.me, v.user.role),
        csrf: v.csrf.clone(),
        generated: time_text(now()),
    }
}

/// A unix time as `YYYY-MM-DD HH:MM:SS UTC`.
pub(super) fn time_text(t: u64) -> String {
    let days = (t / 86_400) as i64;
    let (y, m, d) = scatter_core::retention::civil_from_days(days);
    let s = t % 86_400;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
}

/// How long ago `t` was, in words.
fn ago(t: u64) -> String {
    if t == 0 {
        return "never".into();
    }
    let s = now().saturating_sub(t);
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        7200..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a dashboard page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered; see the coordinator's log")
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "dashboard/message.html")]
struct Message<'a> {
    title: &'a str,
    text: &'a str,
}

/// A page saying what went wrong (or why access is refused), with `status`.
pub(super) fn error_page(status: StatusCode, text: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    (status, render(&Message { title, text })).into_response()
}

/// The page after signing out.
pub(super) fn signed_out() -> Response {
    render(&Message {
        title: "Signed out",
        text: "You are signed out. Run `scatter admin dashboard` (or `scatter dashboard`) to sign in again.",
    })
}

#[derive(Template)]
#[template(path = "dashboard/login.html")]
struct Login;

/// `GET /login`: the page a login link opens; its script posts the link's fragment.
pub(super) async fn login_page() -> Response {
    render(&Login)
}

/// The page refusing a host operator's session what only accounts see.
fn host_only(host: HostId) -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        &format!("This session is the operator's of host {host}: it shows that host only (/host)."),
    )
}

/// The signed-in viewer, or the response for a signed-out browser (sent to `/login`) or a
/// host operator's session (refused).
async fn signed_in(sh: &Arc<Shared>, h: &HeaderMap) -> Result<Viewer, Response> {
    match super::session(sh, h).await {
        Ok(Some(Signed::User(v))) => Ok(v),
        Ok(Some(Signed::Host(hv))) => Err(host_only(hv.host)),
        Ok(None) => Err(Redirect::to("/login").into_response()),
        Err(e) => Err(fail(e)),
    }
}

/// The signed-in viewer with the admin role, or the refusal.
async fn admin(sh: &Arc<Shared>, h: &HeaderMap) -> Result<Viewer, Response> {
    let v = signed_in(sh, h).await?;
    v.require(sh, Right::Admin).await?;
    Ok(v)
}

/// Catalog errors as a page.
fn fail(e: ApiError) -> Response {
    error_page(e.status(), &e.to_string())
}

/// `GET /`: the grid for admins, their own data for everyone else.
pub(super) async fn home(State(sh): Sh, h: HeaderMap) -> Response {
    if let Ok(Some(Signed::Host(_))) = super::session(&sh, &h).await {
        return Redirect::to("/host").into_response();
    }
    match signed_in(&sh, &h).await {
        Ok(v) if v.user.role == Role::Admin => Redirect::to("/grid").into_response(),
        Ok(_) => Redirect::to("/me").into_response(),
        Err(r) => r,
    }
}

struct Figure {
    label: &'static str,
    value: String,
    alarm: bool,
}

/// Packs of the repair queue listed on the grid page, most endangered first.
const QUEUE_SHOWN: usize = 20;

/// How many of an account's snapshots `/me` shows, newest first: an account may keep
/// hundreds of thousands, and the page is answered whole, outside the API's answer budget.
const SNAPSHOTS_SHOWN: usize = 100;

/// A pack in the repair queue.
struct QueueLine {
    pack: String,
    healthy: String,
    readable: bool,
    size: String,
    missing: String,
}

#[derive(Template)]
#[template(path = "dashboard/grid.html")]
struct GridPage {
    c: Chrome,
    figures: Vec<Figure>,
    waits: Vec<(String, u64)>,
    queue: Vec<QueueLine>,
    states: Vec<(String, usize)>,
    charts: Vec<(&'static str, String)>,
    sampled: String,
}

/// `GET /grid` (admins): data health, the repair queue and why it waits, hosts by state,
/// and charts of stored bytes, traffic and repairs.
pub(super) async fn grid(State(sh): Sh, h: HeaderMap) -> Response {
    let v = match admin(&sh, &h).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let cutoff = crate::room::online_cutoff(&sh);
    let got = async {
        let health = db(&sh, move |s| s.health(cutoff)).await?;
        let (shards, bytes) = db(&sh, |s| s.repair_totals()).await?;
        let waits = db(&sh, |s| s.repair_waits()).await?;
        let deferred = sh.repair_deferred.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let queue = db(&sh, move |s| s.degraded_packs(cutoff, QUEUE_SHOWN, &deferred)).await?;
        let hosts = db(&sh, |s| s.hosts()).await?;
        let since = now().saturating_sub(7 * 86_400);
        let mut samples = db(&sh, move |s| s.samples(since)).await?;
        samples.push(super::current(&sh).await?);
        let backup = match &sh.backups {
            None => "none (PostgreSQL: back it up by PostgreSQL's means)".to_owned(),
            Some(_) => match crate::catalog_backup::last(&sh).await {
                Some((seq, t)) => format!("#{seq}, {}", ago(t)),
                None => "none yet".into(),
            },
        };
        Ok::<_, ApiError>((health, shards, bytes, waits, queue, hosts, samples, backup))
    }
    .await;
    let (health, shards, bytes, waits, queue, hosts, samples, backup) = match got {
        Ok(g) => g,
        Err(e) => return fail(e),
    };
    let queue = queue
        .into_iter()
        .map(|p| {
            // As the catalog counts healthy shards: `ok`, on an active host heard from
            // within the offline grace.
            let missing: Vec<String> = p
                .shards
                .iter()
                .filter_map(|(i, _, host, state)| {
                    let row = hosts.iter().find(|x| x.id == *host);
                    let counted = *state == crate::store::ShardState::Ok
                        && row.is_some_and(|x| x.state == crate::store::Standing::Active && x.last_seen >= cutoff);
                    let host_state = row.map(|x| crate::room::host_state(&sh, x).to_string()).unwrap_or_default();
                    (!counted).then(|| format!("#{i} on {host} (shard {}, host {host_state})", state.as_str()))
                })
                .collect();
            QueueLine {
                pack: p.id.to_string().chars().take(16).collect(),
                healthy: format!("{} of {}", p.healthy, p.k as usize + p.m as usize),
                readable: p.healthy >= p.k as usize,
                size: ByteSize(p.size).to_string(),
                missing: missing.join(", "),
            }
        })
        .collect();
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    for x in &hosts {
        *states.entry(crate::room::host_state(&sh, x).to_string()).or_default() += 1;
    }
    let figures = vec![
        Figure { label: "live packs", value: health.packs_total.to_string(), alarm: false },
        Figure { label: "at full redundancy", value: health.packs_full.to_string(), alarm: false },
        Figure { label: "degraded", value: health.packs_degraded.to_string(), alarm: health.packs_degraded > 0 },
        Figure { label: "lost (unreadable now)", value: health.packs_lost.to_string(), alarm: health.packs_lost > 0 },
        Figure {
            label: "repair queue",
            value: (health.packs_degraded + health.packs_lost).to_string(),
            alarm: health.packs_degraded + health.packs_lost > 0,
        },
        Figure { label: "shards repaired", value: format!("{shards} ({})", ByteSize(bytes)), alarm: false },
        Figure {
            label: "stored on hosts",
            value: ByteSize(hosts.iter().map(|x| x.catalog_used).sum()).to_string(),
            alarm: false,
        },
        Figure { label: "newest catalog backup", value: backup, alarm: false },
    ];
    let series = |f: fn(&crate::store::Sample) -> u64| samples.iter().map(|s| (s.time, f(s))).collect::<Vec<_>>();
    let size = |v: u64| ByteSize(v).to_string();
    let clock = |t: u64| time_text(t)[5..16].to_owned();
    let charts = vec![
        ("Bytes stored on hosts", chart::line("bytes stored", &series(|s| s.stored), size, clock)),
        (
            "Traffic: bytes hosts served, per sample interval",
            chart::line("traffic", &chart::deltas(&series(|s| s.served)), size, clock),
        ),
        (
            "Repairs: shards rebuilt, per sample interval",
            chart::line("repairs", &chart::deltas(&series(|s| s.repaired_shards)), |v| v.to_string(), clock),
        ),
        (
            "Packs below full redundancy",
            chart::line("degraded packs", &series(|s| s.degraded), |v| v.to_string(), clock),
        ),
    ];
    let sampled = format!(
        "{} sample(s) over the last 7 days, one every {} s at most, and now",
        samples.len().saturating_sub(1),
        super::sample_every(sh.checker_interval).as_secs()
    );
    render(&GridPage {
        c: chrome(&v, "Grid", "/grid"),
        figures,
        waits,
        queue,
        states: states.into_iter().collect(),
        charts,
        sampled,
    })
}

struct HostLine {
    id: String,
    address: String,
    state: String,
    problem: bool,
    capacity: String,
    used: String,
    percent: u64,
    reputation: String,
    heartbeat: String,
    audits: String,
    shards: u64,
    domain: String,
    drainable: bool,
}

#[derive(Template)]
#[template(path = "dashboard/hosts.html")]
struct HostsPage {
    c: Chrome,
    zones: Vec<(String, Vec<HostLine>)>,
}

/// `GET /hosts` (admins): hosts by zone, with state, capacity, use, reputation and last
/// heartbeat; a drain button on active hosts.
pub(super) async fn hosts(State(sh): Sh, h: HeaderMap) -> Response {
    let v = match admin(&sh, &h).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let rows = match db(&sh, |s| s.hosts()).await {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let mut zones: BTreeMap<String, Vec<HostLine>> = BTreeMap::new();
    for row in &rows {
        let info = crate::api::host_info(&sh, row);
        let state = info.state.to_string();
        zones.entry(info.zone.clone()).or_default().push(HostLine {
            id: info.id.to_string(),
            address: info.address.clone(),
            problem: !matches!(state.as_str(), "online" | "retired"),
            drainable: row.state == crate::store::Standing::Active,
            state,
            capacity: ByteSize(info.capacity).to_string(),
            used: ByteSize(info.used).to_string(),
            percent: (info.used.saturating_mul(100)).checked_div(info.capacity).unwrap_or(0).min(100),
            reputation: format!(
                "{} (audits {}, uptime {}, age {}, repairs {})",
                info.reputation.score,
                info.reputation.audits,
                info.reputation.uptime,
                info.reputation.age,
                info.reputation.repairs
            ),
            heartbeat: ago(info.last_seen),
            audits: format!("{} passed, {} failed", info.audits_passed, info.audits_failed),
            shards: info.shards,
            domain: info.domain.clone(),
        });
    }
    render(&HostsPage { c: chrome(&v, "Hosts", "/hosts"), zones: zones.into_iter().collect() })
}

struct UserLine {
    id: String,
    name: String,
    role: String,
    owner: String,
    state: &'static str,
    used: String,
    quota: String,
    has_quota: bool,
    percent: u64,
    can_disable: bool,
    can_enable: bool,
}

#[derive(Template)]
#[template(path = "dashboard/users.html")]
struct UsersPage {
    c: Chrome,
    users: Vec<UserLine>,
}

/// `GET /users` (admins): users with role, state, usage and quota; disable and enable.
pub(super) async fn users(State(sh): Sh, h: HeaderMap) -> Response {
    let v = match admin(&sh, &h).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let list = match db(&sh, |s| s.users()).await {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let users = list
        .into_iter()
        .map(|u| UserLine {
            id: u.id.to_string(),
            name: u.name,
            role: u.role.to_string(),
            owner: u.owner.map(|o| o.to_string()).unwrap_or_default(),
            state: if u.removed {
                "removed"
            } else if u.disabled {
                "disabled"
            } else {
                "enabled"
            },
            used: ByteSize(u.used).to_string(),
            quota: u.quota.map(|q| ByteSize(q).to_string()).unwrap_or_else(|| "none".into()),
            has_quota: u.quota.is_some(),
            percent: u.quota.and_then(|q| u.used.saturating_mul(100).checked_div(q)).unwrap_or(0).min(100),
            can_disable: !u.removed && !u.disabled && u.id != v.user.me,
            can_enable: !u.removed && u.disabled,
        })
        .collect();
    render(&UsersPage { c: chrome(&v, "Users", "/users"), users })
}

struct DeviceLine {
    user: String,
    id: String,
    name: String,
    created: String,
    revoked: String,
}

#[derive(Template)]
#[template(path = "dashboard/access.html")]
struct AccessPage {
    c: Chrome,
    invites: Vec<scatter_proto::api::InviteEntry>,
    devices: Vec<DeviceLine>,
}

/// `GET /access` (admins): unused invites, and every user's devices.
pub(super) async fn access(State(sh): Sh, h: HeaderMap) -> Response {
    let v = match admin(&sh, &h).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let got = db(&sh, |s| {
        let invites = s.invites()?;
        let mut devices = Vec::new();
        for u in s.users()?.into_iter().filter(|u| !u.removed) {
            for d in s.devices(u.id)? {
                devices.push(DeviceLine {
                    user: format!("{} ({})", u.id, u.name),
                    id: d.id.to_string(),
                    name: d.name,
                    created: time_text(d.created),
                    revoked: d.revoked.map(time_text).unwrap_or_default(),
                });
            }
        }
        Ok((invites, devices))
    })
    .await;
    match got {
        Ok((invites, devices)) => {
            render(&AccessPage { c: chrome(&v, "Invites & devices", "/access"), invites, devices })
        }
        Err(e) => fail(e),
    }
}

/// Filters of the events page.
#[derive(serde::Deserialize, Default)]
pub(super) struct EventFilter {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    limit: Option<usize>,
}

struct EventLine {
    time: String,
    actor: String,
    action: String,
    detail: String,
    alarm: bool,
}

#[derive(Template)]
#[template(path = "dashboard/events.html")]
struct EventsPage {
    c: Chrome,
    actor: String,
    action: String,
    limit: usize,
    events: Vec<EventLine>,
    looked_at: usize,
}

/// `GET /events?actor=&action=&limit=` (admins): the audit trail, newest first, filtered by
/// actor (exact, e.g. `u2`, `h1`) and action (prefix, e.g. `auth.` or `host.offline`).
pub(super) async fn events(State(sh): Sh, h: HeaderMap, Query(f): Query<EventFilter>) -> Response {
    let v = match admin(&sh, &h).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let limit = f.limit.unwrap_or(200).clamp(1, 5_000);
    // The newest 10,000 are searched; the trail keeps 100,000.
    let all = match db(&sh, |s| s.events(10_000)).await {
        Ok(e) => e,
        Err(e) => return fail(e),
    };
    let looked_at = all.len();
    let (actor, action) = (f.actor.trim().to_owned(), f.action.trim().to_owned());
    let events = all
        .into_iter()
        .rev()
        .filter(|e| actor.is_empty() || e.actor == actor)
        .filter(|e| action.is_empty() || e.action.starts_with(&action))
        .take(limit)
        .map(|e| EventLine {
            time: time_text(e.time),
            alarm: e.action.contains("refused") || e.action.contains("forbidden") || e.action == "host.offline",
            actor: e.actor,
            action: e.action,
            detail: e.detail,
        })
        .collect();
    render(&EventsPage { c: chrome(&v, "Events", "/events"), actor, action, limit, events, looked_at })
}

struct SnapshotLine {
    id: String,
    time: String,
    writer: String,
    trusted: bool,
    chunks: u64,
}

#[derive(Template)]
#[template(path = "dashboard/me.html")]
struct MePage {
    c: Chrome,
    account: String,
    role: String,
    data_of: String,
    used: String,
    quota: String,
    has_quota: bool,
    percent: u64,
    snapshots: Vec<SnapshotLine>,
    /// How many snapshots the account has, when `snapshots` shows only the newest of them.
    snapshots_in_all: Option<u64>,
    devices: Vec<DeviceLine>,
    can_list: bool,
    sees_usage: bool,
}

/// `GET /me` (everyone): the account's usage and quota (for those `scatter usage` answers:
/// not a delegate, which must not watch its owner's), its snapshots (ids, commit times and
/// writers only: the records are sealed; for those who may list them) and its devices.
pub(super) async fn me(State(sh): Sh, h: HeaderMap) -> Response {
    let v = match signed_in(&sh, &h).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (data, me) = (v.user.id, v.user.me);
    // Listing snapshots needs the read right, as `scatter snapshots` does (appenders have not).
    let can_list = crate::api::require(&v.user, Right::Read).is_ok();
    // Usage and quota need the owner's right, as `/v1/usage` does.
    let sees_usage = crate::api::require(&v.user, Right::Manage).is_ok();
    let got = db(&sh, move |s| {
        let used = if sees_usage { s.usage(data)? } else { 0 };
        let snaps = if can_list { s.snapshot_heads(data, SNAPSHOTS_SHOWN)? } else { (Vec::new(), 0) };
        let devices = s.devices(me)?;
        Ok((used, snaps, devices))
    })
    .await;
    let (used, (snaps, snapshots_in_all), devices) = match got {
        Ok(g) => g,
        Err(e) => return fail(e),
    };
    let quota = v.user.quota;
    let snapshots = snaps
        .into_iter()
        .rev()
        .map(|s| SnapshotLine {
            id: s.id.chars().take(16).collect(),
            time: time_text(s.created),
            writer: if s.writer_name.is_empty() {
                s.writer.to_string()
            } else {
                format!("{} ({})", s.writer, s.writer_name)
            },
            trusted: s.trusted,
            chunks: s.chunks,
        })
        .collect();
    let devices = devices
        .into_iter()
        .map(|d| DeviceLine {
            user: me.to_string(),
            id: d.id.to_string(),
            name: d.name,
            created: time_text(d.created),
            revoked: d.revoked.map(time_text).unwrap_or_default(),
        })
        .collect();
    render(&MePage {
        c: chrome(&v, "My data", "/me"),
        account: format!("{} ({})", v.name, me),
        role: v.user.role.to_string(),
        data_of: if data == me { String::new() } else { data.to_string() },
        used: ByteSize(used).to_string(),
        quota: quota.map(|q| ByteSize(q).to_string()).unwrap_or_else(|| "none".into()),
        has_quota: quota.is_some(),
        percent: quota.and_then(|q| used.saturating_mul(100).checked_div(q)).unwrap_or(0).min(100),
        snapshots_in_all: (snapshots_in_all > SNAPSHOTS_SHOWN as u64).then_some(snapshots_in_all),
        snapshots,
        devices,
        can_list,
        sees_usage,
    })
}

/// The form of a user action.
#[derive(serde::Deserialize)]
pub(super) struct UserForm {
    #[serde(default)]
    csrf: String,
    user: String,
}

/// The form of a host action.
#[derive(serde::Deserialize)]
pub(super) struct HostForm {
    #[serde(default)]
    csrf: String,
    host: String,
    #[serde(default)]
    force: Option<String>,
}

/// The viewer of an action: signed in (else 401), its CSRF token right (else 403), and an
/// admin (else 403, recorded).
async fn actor(sh: &Arc<Shared>, h: &HeaderMap, csrf: &str) -> Result<Viewer, Response> {
    let v = match super::session(sh, h).await {
        Ok(Some(Signed::User(v))) => v,
        Ok(Some(Signed::Host(hv))) => return Err(host_only(hv.host)),
        Ok(None) => {
            return Err(error_page(
                StatusCode::UNAUTHORIZED,
                "You are not signed in (or your session ended); run `scatter admin dashboard` to sign in.",
            ))
        }
        Err(e) => return Err(e.into_response()),
    };
    if !v.csrf_ok(csrf) {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            "The form's CSRF token is missing or wrong; reload the page and try again.",
        ));
    }
    v.require(sh, Right::Admin).await?;
    Ok(v)
}

/// Runs a user change as `scatter admin user disable|enable` does.
async fn on_user(sh: Arc<Shared>, h: HeaderMap, form: UserForm, disable: bool) -> Response {
    let v = match actor(&sh, &h, &form.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Ok(user) = form.user.parse::<UserId>() else {
        return error_page(StatusCode::BAD_REQUEST, "No such user.");
    };
    let action = if disable { "user.disabled" } else { "user.enabled" };
    let done =
        crate::api::admin::change_user(&sh, &v.user, user, action, " (from the dashboard)".into(), move |s, u| {
            s.set_disabled(u, disable)
        })
        .await;
    match done {
        Ok(()) => Redirect::to("/users").into_response(),
        Err(e) => error_page(e.status(), &e.to_string()),
    }
}

/// `POST /users/disable` (admins, CSRF): as `scatter admin user disable`.
pub(super) async fn disable_user(State(sh): Sh, h: HeaderMap, axum::Form(f): axum::Form<UserForm>) -> Response {
    on_user(sh, h, f, true).await
}

/// `POST /users/enable` (admins, CSRF): as `scatter admin user enable`.
pub(super) async fn enable_user(State(sh): Sh, h: HeaderMap, axum::Form(f): axum::Form<UserForm>) -> Response {
    on_user(sh, h, f, false).await
}

#[derive(Template)]
#[template(path = "dashboard/drained.html")]
struct Drained {
    c: Chrome,
    host: String,
    warning: String,
}

/// `POST /hosts/drain` (admins, CSRF): as `scatter admin host drain [--force]`.
pub(super) async fn drain_host(State(sh): Sh, h: HeaderMap, axum::Form(f): axum::Form<HostForm>) -> Response {
    let v = match actor(&sh, &h, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Ok(host) = f.host.parse::<HostId>() else {
        return error_page(StatusCode::BAD_REQUEST, "No such host.");
    };
    let req = DrainRequest { host, force: f.force.is_some() };
    match crate::api::admin::drain_as(&sh, &v.user, req).await {
        Ok(r) => render(&Drained {
            c: chrome(&v, "Hosts", "/hosts"),
            host: host.to_string(),
            warning: r.warning.unwrap_or_default(),
        }),
        Err(e) => error_page(e.status(), &e.to_string()),
    }
}

struct HostFact {
    label: &'static str,
    value: String,
}

#[derive(Template)]
#[template(path = "dashboard/host.html")]
struct HostPage {
    host: String,
    csrf: String,
    state: String,
    problem: bool,
    facts: Vec<HostFact>,
    events: Vec<EventLine>,
    generated: String,
}

/// `GET /host` (a host operator's session): that host's state, capacity and use, reputation
/// and its parts, audits, terms, and the events about it. Earnings wait for metering.
pub(super) async fn host(State(sh): Sh, h: HeaderMap) -> Response {
    let hv = match super::session(&sh, &h).await {
        Ok(Some(Signed::Host(hv))) => hv,
        Ok(Some(Signed::User(_))) => {
            return error_page(
                StatusCode::FORBIDDEN,
                "This page is for a host's operator: sign in with `scatter dashboard --host-dir DIR` on the host.",
            )
        }
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(e) => return fail(e),
    };
    let id = hv.host;
    let got = async {
        let row = db(&sh, |s| s.hosts()).await?.into_iter().find(|x| x.id == id);
        let events = db(&sh, |s| s.events(10_000)).await?;
        Ok::<_, ApiError>((row, events))
    }
    .await;
    let (row, events) = match got {
        Ok(g) => g,
        Err(e) => return fail(e),
    };
    let Some(row) = row else {
        return error_page(StatusCode::NOT_FOUND, &format!("Host {id} is not registered with this grid (any more)."));
    };
    let info = crate::api::host_info(&sh, &row);
    let state = info.state.to_string();
    let price = |p: u64| format!("{}.{:06}", p / 1_000_000, p % 1_000_000);
    let facts = vec![
        HostFact { label: "address", value: info.address.clone() },
        HostFact { label: "zone", value: info.zone.clone() },
        HostFact { label: "failure domain", value: info.domain.clone() },
        HostFact { label: "last heartbeat", value: ago(info.last_seen) },
        HostFact { label: "capacity offered", value: ByteSize(info.capacity).to_string() },
        HostFact { label: "used", value: ByteSize(info.used).to_string() },
        HostFact { label: "shards held", value: info.shards.to_string() },
        HostFact { label: "audits", value: format!("{} passed, {} failed", info.audits_passed, info.audits_failed) },
        HostFact {
            label: "reputation",
            value: format!(
                "{} of 100 (audits {}, uptime {}, age {}, repairs {})",
                info.reputation.score,
                info.reputation.audits,
                info.reputation.uptime,
                info.reputation.age,
                info.reputation.repairs
            ),
        },
        HostFact { label: "joined", value: time_text(info.joined) },
        HostFact { label: "served (as reported)", value: ByteSize(info.served_bytes).to_string() },
        HostFact { label: "price per GiB-month", value: price(info.terms.price) },
        HostFact { label: "egress price per GiB", value: price(info.terms.egress_price) },
        HostFact {
            label: "period ends",
            value: info.terms.until.map(time_text).unwrap_or_else(|| "not limited".into()),
        },
    ];
    let me = id.to_string();
    let events = events
        .into_iter()
        .rev()
        // Events by the host, and events about it: those the coordinator writes with the
        // host first (`host.*`), never details that merely start with its name.
        .filter(|e| e.actor == me || (e.action.starts_with("host.") && e.detail.starts_with(&format!("{me} "))))
        .take(100)
        .map(|e| EventLine {
            time: time_text(e.time),
            alarm: e.action == "host.offline" || e.action.contains("refused"),
            actor: e.actor,
            action: e.action,
            detail: e.detail,
        })
        .collect();
    render(&HostPage {
        host: me,
        csrf: hv.csrf.clone(),
        problem: !matches!(state.as_str(), "online" | "retired"),
        state,
        facts,
        events,
        generated: time_text(now()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(time_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time_text(1_796_083_200 + 3_723), "2026-12-01 01:02:03 UTC");
    }

    #[test]
    fn text_is_escaped_in_pages() {
        let html = Message { title: "t", text: "<script>alert(1)</script> & \"x\"" }.render().expect("render");
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&#60;script&#62;alert(1)&#60;/script&#62; &#38; &#34;x&#34;"), "{html}");
    }
}
