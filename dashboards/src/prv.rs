//! Pressure management over HTTP (docs/api.md §8): the analytics job's PRV set-point
//! recommendations, and applying a set point to a valve.
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
use waterline_core::{Note, PrvId, Role};
use waterline_store::PrvAdvice;

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
}

impl From<PrvAdvice> for PrvEntry {
    fn from(a: PrvAdvice) -> Self {
        PrvEntry {
            prv: a.prv,
            dma: a.dma,
            computed_at: a.computed_at,
            recommendation: a.body,
        }
    }
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
    Ok(Json(all.into_iter().map(PrvEntry::from).collect()))
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
    let prv = PrvId::parse(id.as_str()).map_err(|e| ApiError::BadRequest(format!("`id`: {e}")))?;
    let body = Body::parse(&bytes, false, &["setting_m", "confirm", "note"])?;
    let requested = body.number("setting_m")?;
    let confirm = body.boolean("confirm")?.unwrap_or(false);
    let note = body
        .str("note")?
        .map(|s| Note::parse("note", s).map(|n| n.as_str().to_owned()))
        .transpose()
        .map_err(invalid)?;
    if let Some(s) = requested
        && !(s.is_finite() && s > 0.0)
    {
        return Err(ApiError::Unprocessable(format!(
            "`setting_m`: {s} is not a positive pressure in metres"
        )));
    }
    let advice = state
        .store
        .prv_advice()
        .await?
        .into_iter()
        .find(|a| a.prv == prv.as_str());
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
    let writer = state.setpoints.as_ref().ok_or_else(|| {
        ApiError::Conflict(
            "this server writes no set points: it runs no Modbus devices (docs/operations.md §12)"
                .into(),
        )
    })?;
    let actor = caller.0.label.clone();
    let result = writer.write(&prv, setting).await;
    let mut detail = json!({
        "setting_m": setting,
        "source": source,
        "note": note,
        "recommendation_computed_at": advice.as_ref().map(|a| a.computed_at),
    });
    match &result {
        Ok(w) => {
            detail["target"] = json!(w.target);
            detail["read_back_m"] = json!(w.read_back_m);
        }
        Err(e) => detail["error"] = json!(e.to_string()),
    }
    let action = if result.is_ok() {
        "prv.apply"
    } else {
        "prv.apply.failed"
    };
    state
        .store
        .audit(&actor, action, Some(prv.as_str()), &detail)
        .await?;
    let written = result.map_err(|e| match e {
        SetpointError::UnknownPrv => ApiError::NotFound(format!("PRV {prv}")),
        SetpointError::NotWritable(m) => ApiError::Conflict(m),
        SetpointError::OutOfRange(m) => ApiError::Unprocessable(format!("`setting_m`: {m}")),
        SetpointError::Device(m) => ApiError::BadGateway(m),
    })?;
    tracing::info!(%prv, setting, target = %written.target, %actor, "PRV set point applied");
    Ok(Json(Applied {
        prv: prv.to_string(),
        target: written.target,
        setting_m: setting,
        read_back_m: written.read_back_m,
        source,
        applied_by: actor,
        applied_at: Utc::now(),
    }))
}
