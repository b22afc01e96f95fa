//! JSON API handlers (CONTRACTS §7).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{Datelike, Duration as Span, NaiveDate, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use waterline_core::{EventKind, Role, SensorId, SensorKind, Unit};
use waterline_store::{
    Bucket, DailyKpi, KpiQuery, KpiScope, MonthlyKpi, SensorRecord, StoredEvent,
};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::params::{self, Params};

/// Most points one readings answer may carry.
pub const MAX_LIMIT: i64 = 1_000_000;
/// Points a readings answer carries unless `limit` says otherwise.
pub const DEFAULT_LIMIT: i64 = 100_000;

/// Roles that may read (admin always may).
pub(crate) const READ_ROLES: &[Role] = &[Role::Engineer, Role::Dispatcher, Role::Lab, Role::Viewer];

pub(crate) async fn health(State(state): State<AppState>) -> Response {
    let mut components: BTreeMap<String, Value> = state
        .health
        .snapshot()
        .into_iter()
        .map(|(k, v)| (k, json!({ "ok": v.ok, "detail": v.detail })))
        .collect();
    let store_ok = match tokio::time::timeout(Duration::from_secs(3), state.store.ping()).await {
        Ok(Ok(())) => {
            components.insert(
                "store".into(),
                json!({ "ok": true, "detail": state.store.backend().as_str() }),
            );
            true
        }
        Ok(Err(e)) => {
            components.insert(
                "store".into(),
                json!({ "ok": false, "detail": e.to_string() }),
            );
            false
        }
        Err(_) => {
            components.insert(
                "store".into(),
                json!({ "ok": false, "detail": "ping timed out" }),
            );
            false
        }
    };
    let all_ok = store_ok && components.values().all(|c| c["ok"] == json!(true));
    let status = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "status": if all_ok { "ok" } else { "unavailable" }, "components": components })),
    )
        .into_response()
}

pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let body = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// The unit values of this sensor are stored (and answered) in.
fn canonical_unit(s: &SensorRecord) -> Option<Unit> {
    if let Some(kind) = s.kind.as_deref().and_then(|k| k.parse::<SensorKind>().ok()) {
        return Some(kind.canonical_unit());
    }
    s.unit
        .as_deref()
        .and_then(|u| u.parse::<Unit>().ok())
        .map(Unit::canonical)
}

#[derive(Serialize)]
pub(crate) struct SensorOut {
    id: String,
    kind: Option<String>,
    unit: Option<&'static str>,
    dma: Option<String>,
    station: Option<String>,
    role: Option<String>,
    described: bool,
    last_time: Option<chrono::DateTime<Utc>>,
    last_value: Option<f64>,
}

pub(crate) async fn sensors(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<Params>,
) -> Result<Json<Vec<SensorOut>>, ApiError> {
    caller.require(READ_ROLES, "viewer or above")?;
    params::only(&p, &[])?;
    let out = state
        .store
        .sensors()
        .await?
        .into_iter()
        .map(|s| SensorOut {
            unit: canonical_unit(&s).map(Unit::as_str),
            id: s.id,
            kind: s.kind,
            dma: s.dma,
            station: s.station,
            role: s.role,
            described: s.described,
            last_time: s.last_time,
            last_value: s.last_value,
        })
        .collect();
    Ok(Json(out))
}

pub(crate) async fn readings(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    caller.require(READ_ROLES, "viewer or above")?;
    params::only(&p, &["sensor", "from", "to", "bucket", "limit"])?;
    let sensor = p
        .get("sensor")
        .ok_or_else(|| ApiError::BadRequest("`sensor` is required".into()))?;
    let sensor = SensorId::parse(sensor.as_str())
        .map_err(|e| ApiError::BadRequest(format!("`sensor`: {e}")))?;
    let now = Utc::now();
    let to = params::time(&p, "to", now)?;
    let from = params::time(&p, "from", to - Span::hours(24))?;
    params::range(from, to)?;
    let limit = params::limit(&p, DEFAULT_LIMIT, MAX_LIMIT)?;
    let bucket: Option<Bucket> = params::parsed(&p, "bucket")?;

    let record = state
        .store
        .sensor(&sensor)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("sensor `{sensor}`")))?;
    let unit = canonical_unit(&record).map(Unit::as_str);
    // One more than asked tells whether the answer was cut.
    let (points, truncated) = match bucket {
        None => {
            let mut pts = state.store.readings(&sensor, from, to, limit + 1).await?;
            let cut = pts.len() as i64 > limit;
            pts.truncate(limit as usize);
            (serde_json::to_value(pts), cut)
        }
        Some(b) => {
            let mut pts = state
                .store
                .bucketed(&sensor, b, from, to, limit + 1)
                .await?;
            let cut = pts.len() as i64 > limit;
            pts.truncate(limit as usize);
            (serde_json::to_value(pts), cut)
        }
    };
    let points = points.map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut body =
        json!({ "sensor": sensor, "unit": unit, "points": points, "truncated": truncated });
    if let Some(b) = bucket {
        body["bucket"] = json!(b.as_str());
    }
    Ok(Json(body))
}

#[derive(Serialize)]
struct EventOut {
    #[serde(flatten)]
    stored: StoredEvent,
}

pub(crate) async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<Params>,
) -> Result<Json<Vec<Value>>, ApiError> {
    caller.require(READ_ROLES, "viewer or above")?;
    params::only(&p, &["from", "to", "kind"])?;
    let now = Utc::now();
    let to = params::time(&p, "to", now)?;
    let from = params::time(&p, "from", to - Span::days(7))?;
    params::range(from, to)?;
    let kind: Option<EventKind> = params::parsed(&p, "kind")?;
    let out = state
        .store
        .events(from, to, kind)
        .await?
        .into_iter()
        .map(|e| serde_json::to_value(EventOut { stored: e }))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(out))
}

/// Days per daily-KPI request at most (a year of every metric of a few hundred subjects).
const MAX_KPI_DAYS: i64 = 400;

pub(crate) async fn daily_kpis(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<Params>,
) -> Result<Json<Vec<DailyKpi>>, ApiError> {
    let scope = kpi_scope(&caller, &p)?;
    let to = params::date(&p, "to", Utc::now().date_naive())?;
    let from = params::date(&p, "from", to - Span::days(30))?;
    if from > to {
        return Err(ApiError::BadRequest(format!(
            "`from` ({from}) must not be after `to` ({to})"
        )));
    }
    if (to - from).num_days() >= MAX_KPI_DAYS {
        return Err(ApiError::BadRequest(format!(
            "`from` to `to` spans more than {MAX_KPI_DAYS} days; ask for less"
        )));
    }
    Ok(Json(
        state.store.kpis(&kpi_query(&p, scope, from, to)?).await?,
    ))
}

/// The role check, parameter list and `scope` shared by the daily and monthly KPI routes.
fn kpi_scope(caller: &Caller, p: &Params) -> Result<KpiScope, ApiError> {
    caller.require(READ_ROLES, "viewer or above")?;
    params::only(p, &["scope", "subject", "metric", "from", "to", "limit"])?;
    params::parsed(p, "scope")?.ok_or_else(|| {
        ApiError::BadRequest("`scope` is required: dma, point, zone or network".into())
    })
}

/// The store query of a KPI route: `subject`, `metric` and `limit` from the parameters.
fn kpi_query(
    p: &Params,
    scope: KpiScope,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<KpiQuery, ApiError> {
    Ok(KpiQuery {
        scope,
        subject: p.get("subject").cloned(),
        metric: p.get("metric").cloned(),
        from,
        to,
        limit: params::limit(p, DEFAULT_LIMIT, MAX_LIMIT)?,
    })
}

/// A month parameter (`YYYY-MM`) as its first day, or `default` when absent.
fn month(p: &Params, name: &str, default: NaiveDate) -> Result<NaiveDate, ApiError> {
    match p.get(name) {
        None => Ok(default),
        Some(s) => NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d")
            .ok()
            .filter(|d| (1900..=9999).contains(&d.year()) && s.len() == 7)
            .ok_or_else(|| {
                ApiError::BadRequest(format!("`{name}`: `{s}` is not a month like 2026-11"))
            }),
    }
}

/// `GET /api/v1/kpis/monthly?scope=[&subject=][&metric=][&from=YYYY-MM][&to=YYYY-MM][&limit=]`:
/// the analytics job's monthly KPIs (default: the last twelve months).
pub(crate) async fn monthly_kpis(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<Params>,
) -> Result<Json<Vec<MonthlyKpi>>, ApiError> {
    let scope = kpi_scope(&caller, &p)?;
    let today = Utc::now().date_naive();
    let this_month = today.with_day(1).unwrap_or(today);
    let to = month(&p, "to", this_month)?;
    let from = month(&p, "from", to - Span::days(334))?
        .with_day(1)
        .unwrap_or(to);
    if from > to {
        return Err(ApiError::BadRequest(format!(
            "`from` ({}) must not be after `to` ({})",
            from.format("%Y-%m"),
            to.format("%Y-%m")
        )));
    }
    Ok(Json(
        state
            .store
            .monthly_kpis(&kpi_query(&p, scope, from, to)?)
            .await?,
    ))
}

pub(crate) async fn dead_letters(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<Params>,
) -> Result<Json<Vec<Value>>, ApiError> {
    caller.require(&[Role::Engineer], "admin or engineer")?;
    params::only(&p, &["from", "to", "limit"])?;
    let now = Utc::now();
    let to = params::time(&p, "to", now + Span::seconds(1))?;
    let from = params::time(&p, "from", to - Span::days(7))?;
    params::range(from, to)?;
    let limit = params::limit(&p, 10_000, 100_000)?;
    let out = state
        .store
        .dead_letters(from, to, limit)
        .await?
        .into_iter()
        .map(|d| {
            json!({
                "id": d.id,
                "received_at": d.letter.received_at,
                "source": d.letter.source,
                "topic": d.letter.topic,
                "reason": d.letter.reason,
                "payload_base64": STANDARD.encode(&d.letter.payload),
            })
        })
        .collect();
    Ok(Json(out))
}

/// The device registry with the utility's same-day rule made visible: `unregistered` devices
/// report data but nobody registered them; `silent` ones are registered but have not
/// reported within `silent_hours` (default 24).
pub(crate) async fn devices(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<Params>,
) -> Result<Json<Vec<Value>>, ApiError> {
    caller.require(READ_ROLES, "viewer or above")?;
    params::only(&p, &["silent_hours", "view"])?;
    let hours: i64 = params::parsed(&p, "silent_hours")?.unwrap_or(24);
    if !(1..=24 * 365).contains(&hours) {
        return Err(ApiError::BadRequest(format!(
            "`silent_hours`: {hours} must be from 1 to 8760"
        )));
    }
    let view = p.get("view").map(String::as_str).unwrap_or("all");
    if !matches!(view, "all" | "silent" | "unregistered") {
        return Err(ApiError::BadRequest(format!(
            "`view`: `{view}` is not one of all, silent, unregistered"
        )));
    }
    let since = Utc::now() - Span::hours(hours);
    let out = state
        .store
        .devices()
        .await?
        .into_iter()
        .filter_map(|d| {
            let unregistered = d.registered_by.is_none() && d.last_seen.is_some();
            let silent = d.registered_by.is_some()
                && d.status == waterline_store::DeviceStatus::Active
                && d.last_seen.is_none_or(|t| t < since);
            let keep = match view {
                "silent" => silent,
                "unregistered" => unregistered,
                _ => true,
            };
            keep.then(|| {
                json!({
                    "id": d.id,
                    "status": d.status,
                    "protocol": d.protocol,
                    "first_seen": d.first_seen,
                    "last_seen": d.last_seen,
                    "registered_by": d.registered_by,
                    "registered_at": d.registered_at,
                    "unregistered": unregistered,
                    "silent": silent,
                    "rssi_dbm": d.rssi_dbm,
                    "snr_db": d.snr_db,
                    "battery_percent": d.battery_percent,
                    "health_at": d.health_at,
                })
            })
        })
        .collect();
    Ok(Json(out))
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound("route".into())
}
