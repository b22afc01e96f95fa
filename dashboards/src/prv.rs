//! Pressure management over HTTP (docs/api.md §8): the analytics job's PRV set-point
//! recommendations, applying a set point to a valve, and putting an hourly schedule in force
//! (the binary's runner writes each next hour's set point).
//!
//! Applying writes to a field device, so it takes three things: the dispatcher (or admin)
//! role, an explicit `"confirm": true` in the body (without it the answer says what would be
//! written and nothing is), and a [`SetpointWriter`] that the binary wires to the valve's
//! Modbus point. Every attempt, done or failed, goes to the audit log with the caller, the
//! value, the point and the value read back.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use waterline_core::{HourlySchedule, Note, PrvId, Role};
use waterline_store::{PrvAdvice, PrvSchedule, ScheduleSource};

use crate::AppState;
use crate::api::READ_ROLES;
use crate::auth::Caller;
use crate::body::{Body, invalid};
use crate::error::ApiError;
use crate::params::{self, Params};

/// Roles that may write a set point (admin always may).
const APPLY_ROLES: &[Role] = &[Role::Dispatcher];
const APPLY_NAMES: &str = "dispatcher or admin";

/// What a set-point write did.
#[derive(Debug, Clone, PartialEq)]
pub struct SetpointWritten {
    /// The point written, as `device/sensor`.
    pub target: String,
    /// The value the device holds after the write, m.
    pub read_back_m: f64,
}

/// Why a set point could not be written.
#[derive(Debug, Clone, PartialEq)]
pub enum SetpointError {
    /// The network describes no such PRV.
    UnknownPrv,
    /// The PRV has no writable point this server can reach (no `setpoint_sensor`, or no
    /// Modbus device with that point).
    NotWritable(String),
    /// The value is outside the point's writable range.
    OutOfRange(String),
    /// The device failed: unreachable, an exception, or a read-back that differs.
    Device(String),
}

impl fmt::Display for SetpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetpointError::UnknownPrv => f.write_str("the network describes no such PRV"),
            SetpointError::NotWritable(m)
            | SetpointError::OutOfRange(m)
            | SetpointError::Device(m) => f.write_str(m),
        }
    }
}

/// The future of a set-point write.
pub type WriteFuture<'a> =
    Pin<Box<dyn Future<Output = Result<SetpointWritten, SetpointError>> + Send + 'a>>;

/// Writes PRV set points to the field. The binary implements it over Modbus (ingest), so this
/// crate needs no field protocol.
pub trait SetpointWriter: Send + Sync + fmt::Debug {
    /// Writes `setting_m` as the outlet set point of `prv`, verified by reading it back.
    fn write<'a>(&'a self, prv: &'a PrvId, setting_m: f64) -> WriteFuture<'a>;
}

/// One PRV's latest recommendation, as `GET /api/v1/prvs` lists it.
#[derive(Debug, Serialize)]
pub(crate) struct PrvEntry {
    prv: String,
    dma: String,
    computed_at: DateTime<Utc>,
    /// The recommendation, or `{"reason": …}` when there is none.
    recommendation: serde_json::Value,
    /// The hourly schedule in force on the valve, if a dispatcher applied one.
    schedule_in_force: Option<PrvSchedule>,
}

/// `GET /api/v1/prvs`: the latest recommendation of every PRV.
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<Params>,
) -> Result<Json<Vec<PrvEntry>>, ApiError> {
    caller.require(READ_ROLES, "viewer or above")?;
    params::only(&p, &[])?;
    let all = state.store.prv_advice().await?;
    let mut schedules = state.store.prv_schedules().await?;
    Ok(Json(
        all.into_iter()
            .map(|a| PrvEntry {
                schedule_in_force: schedules
                    .iter()
                    .position(|s| s.prv == a.prv)
                    .map(|i| schedules.swap_remove(i)),
                prv: a.prv,
                dma: a.dma,
                computed_at: a.computed_at,
                recommendation: a.body,
            })
            .collect(),
    ))
}

/// The answer to a confirmed apply.
#[derive(Debug, Serialize)]
pub(crate) struct Applied {
    prv: String,
    target: String,
    setting_m: f64,
    read_back_m: f64,
    /// `request` (the body's `setting_m`) or `recommendation` (the stored fixed set point).
    source: &'static str,
    applied_by: String,
    applied_at: DateTime<Utc>,
    /// The hourly schedule that was in force and no longer is (a fixed set point replaces it).
    schedule_cancelled: bool,
}

/// The body's optional `note` (checked like every note).
fn note(body: &Body) -> Result<Option<String>, ApiError> {
    body.str("note")?
        .map(|s| Note::parse("note", s).map(|n| n.as_str().to_owned()))
        .transpose()
        .map_err(invalid)
}

/// The `{id}` of a PRV route (400 when it is no id).
fn prv_id(raw: &str) -> Result<PrvId, ApiError> {
    PrvId::parse(raw).map_err(|e| ApiError::BadRequest(format!("`id`: {e}")))
}

/// The stored recommendation of `prv`, if the analytics job left one.
async fn advice_of(state: &AppState, prv: &PrvId) -> Result<Option<PrvAdvice>, ApiError> {
    Ok(state
        .store
        .prv_advice()
        .await?
        .into_iter()
        .find(|a| a.prv == prv.as_str()))
}

/// The hourly set points of a stored recommendation.
fn recommended_schedule(advice: &PrvAdvice) -> Option<Vec<f64>> {
    let v = advice
        .body
        .pointer("/schedule/hourly_setting_m")?
        .as_array()?;
    v.iter().map(serde_json::Value::as_f64).collect()
}

/// The fixed set point of a stored recommendation.
fn recommended_setting(advice: &PrvAdvice) -> Option<f64> {
    advice
        .body
        .pointer("/fixed/hourly_setting_m/0")
        .and_then(serde_json::Value::as_f64)
}

/// `POST /api/v1/prvs/{id}/apply` with `{"setting_m"?, "confirm": true, "note"?}`.
pub(crate) async fn apply(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<Applied>, ApiError> {
    caller.require(APPLY_ROLES, APPLY_NAMES)?;
    let prv = prv_id(&id)?;
    let body = Body::parse(&bytes, false, &["setting_m", "confirm", "note"])?;
    let requested = body.number("setting_m")?;
    let confirm = body.boolean("confirm")?.unwrap_or(false);
    let note = note(&body)?;
    if let Some(s) = requested
        && !(s.is_finite() && s > 0.0)
    {
        return Err(ApiError::Unprocessable(format!(
            "`setting_m`: {s} is not a positive pressure in metres"
        )));
    }
    let advice = advice_of(&state, &prv).await?;
    let (setting, source) = match (requested, advice.as_ref().and_then(recommended_setting)) {
        (Some(s), _) => (s, "request"),
        (None, Some(s)) => (s, "recommendation"),
        (None, None) => {
            return Err(ApiError::Conflict(format!(
                "PRV {prv} has no recommended set point yet; give `setting_m`"
            )));
        }
    };
    if !confirm {
        return Err(ApiError::Unprocessable(format!(
            "`confirm`: must be true to write {setting:.1} m to PRV {prv} (from the {source}); nothing was written"
        )));
    }
    let actor = caller.0.label.clone();
    let detail = json!({
        "setting_m": setting,
        "source": source,
        "note": note,
        "recommendation_computed_at": advice.as_ref().map(|a| a.computed_at),
    });
    let written = write_audited(&state, &prv, setting, &actor, "prv.apply", detail).await?;
    // A fixed set point ends the schedule, or the next hour would overwrite it.
    let schedule_cancelled = state
        .store
        .cancel_prv_schedule(prv.as_str(), &actor, Some("replaced by a fixed set point"))
        .await?
        .is_some();
    tracing::info!(%prv, setting, target = %written.target, %actor, "PRV set point applied");
    Ok(Json(Applied {
        prv: prv.to_string(),
        target: written.target,
        setting_m: setting,
        read_back_m: written.read_back_m,
        source,
        applied_by: actor,
        applied_at: Utc::now(),
        schedule_cancelled,
    }))
}

/// Writes `setting` to `prv` through the server's [`SetpointWriter`] and audits the attempt as
/// `action` (`action.failed` when it failed) with `detail` plus the target and read-back (or
/// the error). Device problems map to 404 (unknown PRV), 409 (not writable), 422 (out of
/// range) and 502 (device failure).
async fn write_audited(
    state: &AppState,
    prv: &PrvId,
    setting: f64,
    actor: &str,
    action: &str,
    mut detail: serde_json::Value,
) -> Result<SetpointWritten, ApiError> {
    let writer = state.setpoints.as_ref().ok_or_else(|| {
        ApiError::Conflict(
            "this server writes no set points: it runs no Modbus devices (docs/operations.md §12)"
                .into(),
        )
    })?;
    let result = writer.write(prv, setting).await;
    match &result {
        Ok(w) => {
            detail["target"] = json!(w.target);
            detail["read_back_m"] = json!(w.read_back_m);
        }
        Err(e) => detail["error"] = json!(e.to_string()),
    }
    let action = match result {
        Ok(_) => action.to_owned(),
        Err(_) => format!("{action}.failed"),
    };
    state
        .store
        .audit(actor, &action, Some(prv.as_str()), &detail)
        .await?;
    result.map_err(|e| match e {
        SetpointError::UnknownPrv => ApiError::NotFound(format!("PRV {prv}")),
        SetpointError::NotWritable(m) => ApiError::Conflict(m),
        SetpointError::OutOfRange(m) => ApiError::Unprocessable(format!("`setting_m`: {m}")),
        SetpointError::Device(m) => ApiError::BadGateway(m),
    })
}

/// The answer to a confirmed schedule.
#[derive(Debug, Serialize)]
pub(crate) struct Scheduled {
    prv: String,
    schedule: PrvSchedule,
    /// What was written at once: the current local hour's set point.
    hour_start: DateTime<Utc>,
    setting_m: f64,
    target: String,
    read_back_m: f64,
}

/// `POST /api/v1/prvs/{id}/schedule` with `{"hourly_setting_m"?, "timezone"?, "confirm": true,
/// "note"?}`: puts an hourly schedule in force (default: the recommendation's), writing the
/// current hour's set point at once; the service writes each next hour's.
pub(crate) async fn schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<Scheduled>, ApiError> {
    caller.require(APPLY_ROLES, APPLY_NAMES)?;
    let prv = prv_id(&id)?;
    let body = Body::parse(
        &bytes,
        false,
        &["hourly_setting_m", "timezone", "confirm", "note"],
    )?;
    let requested = body.numbers("hourly_setting_m")?;
    let zone = body.str("timezone")?.map(str::to_owned);
    let confirm = body.boolean("confirm")?.unwrap_or(false);
    let note = note(&body)?;
    let advice = advice_of(&state, &prv).await?;
    let recommended = advice.as_ref().and_then(recommended_schedule);
    let recommended_zone = advice
        .as_ref()
        .and_then(|a| a.body.get("timezone")?.as_str().map(str::to_owned));
    let (settings, source) = match (requested, recommended) {
        (Some(s), _) => (s, ScheduleSource::Request),
        (None, Some(s)) => (s, ScheduleSource::Recommendation),
        (None, None) => {
            return Err(ApiError::Conflict(format!(
                "PRV {prv} has no recommended schedule yet; give `hourly_setting_m` and `timezone`"
            )));
        }
    };
    let zone = zone.or(recommended_zone).ok_or_else(|| {
        invalid(waterline_core::alert::InputError::new(
            "timezone",
            "is required (no recommendation gives it)",
        ))
    })?;
    let plan = HourlySchedule::new(&settings, &zone).map_err(invalid)?;
    let now = Utc::now();
    let (setting, hour_start) = plan.due(now);
    if !confirm {
        return Err(ApiError::Unprocessable(format!(
            "`confirm`: must be true to put the {} schedule in force on PRV {prv} ({}) and write \
             this hour's {setting:.1} m now; nothing was written",
            source.as_str(),
            zone
        )));
    }
    let actor = caller.0.label.clone();
    let detail = json!({
        "setting_m": setting,
        "hour_start": hour_start,
        "source": source.as_str(),
        "note": note,
    });
    let written =
        write_audited(&state, &prv, setting, &actor, "prv.schedule.write", detail).await?;
    let stored = state
        .store
        .put_prv_schedule(prv.as_str(), &plan, source, note.as_deref(), &actor, now)
        .await?;
    state
        .store
        .mark_schedule_written(prv.as_str(), stored.applied_at, hour_start, setting)
        .await?;
    tracing::info!(%prv, setting, %actor, "PRV schedule put in force");
    let schedule = PrvSchedule {
        written_hour: Some(hour_start),
        written_m: Some(setting),
        ..stored
    };
    Ok(Json(Scheduled {
        prv: prv.to_string(),
        schedule,
        hour_start,
        setting_m: setting,
        target: written.target,
        read_back_m: written.read_back_m,
    }))
}

/// `POST /api/v1/prvs/{id}/schedule/cancel` with an optional `{"note"}`: takes the schedule
/// out of force (the valve keeps the set point last written); 404 when none is in force.
pub(crate) async fn cancel_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<PrvSchedule>, ApiError> {
    caller.require(APPLY_ROLES, APPLY_NAMES)?;
    let prv = prv_id(&id)?;
    let body = Body::parse(&bytes, true, &["note"])?;
    let note = note(&body)?;
    state
        .store
        .cancel_prv_schedule(prv.as_str(), &caller.0.label, note.as_deref())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no schedule in force on PRV {prv}")))
}
