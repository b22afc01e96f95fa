//! Declared windows over HTTP (docs/api.md §9): compliance exclusions for declared events and
//! quality-station maintenance, declared, listed and withdrawn, each change audited.
//!
//! Who may act: an exclusion (a DMA's or pressure sensor's readings left out of the compliance
//! rate) is the dispatch centre's or an engineer's; maintenance (a station or sensor being
//! serviced) the lab's or an engineer's; admin both; everyone reads.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{Duration as Span, Utc};
use waterline_core::{
    DeclaredWindow, DmaId, Note, Role, SensorId, StationId, WindowKind, WindowSubject,
};
use waterline_store::{StoreError, StoredWindow};

use crate::AppState;
use crate::api::READ_ROLES;
use crate::auth::Caller;
use crate::body::{Body, invalid};
use crate::error::ApiError;
use crate::params::{self, Params};

const FIELDS: &[&str] = &["kind", "dma", "station", "sensor", "from", "to", "reason"];

/// May the caller declare or withdraw a window of `kind`? (403 naming who may.)
fn check_may_declare(caller: &Caller, kind: WindowKind) -> Result<(), ApiError> {
    match kind {
        WindowKind::Exclusion => caller.require(
            &[Role::Dispatcher, Role::Engineer],
            "dispatcher, engineer or admin",
        ),
        WindowKind::Maintenance => {
            caller.require(&[Role::Lab, Role::Engineer], "lab, engineer or admin")
        }
    }
}

/// A window from a JSON body with the fields of [`FIELDS`].
fn declared(b: &Body) -> Result<DeclaredWindow, ApiError> {
    let kind_text = b.required("kind", b.str("kind")?)?;
    let kind: WindowKind = kind_text
        .parse()
        .map_err(|e: String| invalid(waterline_core::alert::InputError::new("kind", e)))?;
    let id_error = |field: &str, e: waterline_core::IdError| {
        invalid(waterline_core::alert::InputError::new(field, e.to_string()))
    };
    let subjects = [
        b.str("dma")?
            .map(|s| {
                DmaId::parse(s)
                    .map(WindowSubject::Dma)
                    .map_err(|e| id_error("dma", e))
            })
            .transpose()?,
        b.str("station")?
            .map(|s| {
                StationId::parse(s)
                    .map(WindowSubject::Station)
                    .map_err(|e| id_error("station", e))
            })
            .transpose()?,
        b.str("sensor")?
            .map(|s| {
                SensorId::parse(s)
                    .map(WindowSubject::Sensor)
                    .map_err(|e| id_error("sensor", e))
            })
            .transpose()?,
    ];
    let mut given = subjects.into_iter().flatten();
    let subject = match (given.next(), given.next()) {
        (Some(s), None) => s,
        _ => {
            return Err(ApiError::Unprocessable(
                "`dma`, `station`, `sensor`: give exactly one of them".into(),
            ));
        }
    };
    let from = b.required("from", b.time("from")?)?;
    let to = b.required("to", b.time("to")?)?;
    let reason = Note::parse("reason", b.required("reason", b.str("reason")?)?).map_err(invalid)?;
    DeclaredWindow::new(kind, subject, from, to, reason).map_err(invalid)
}

/// `POST /api/v1/windows`: declares a window (201 with the stored window).
pub(crate) async fn declare(
    State(state): State<AppState>,
    caller: Caller,
    bytes: Bytes,
) -> Result<(StatusCode, Json<StoredWindow>), ApiError> {
    caller.require(
        &[Role::Dispatcher, Role::Engineer, Role::Lab],
        "dispatcher, lab, engineer or admin",
    )?;
    let body = Body::parse(&bytes, false, FIELDS)?;
    let window = declared(&body)?;
    check_may_declare(&caller, window.kind)?;
    let stored = state
        .store
        .declare_window(&window, &caller.0.label, Utc::now())
        .await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// `GET /api/v1/windows?from=&to=[&kind=]`: the windows in force overlapping the span
/// (default: 30 days before and after now).
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<Params>,
) -> Result<Json<Vec<StoredWindow>>, ApiError> {
    caller.require(READ_ROLES, "viewer or above")?;
    params::only(&p, &["from", "to", "kind"])?;
    let now = Utc::now();
    let from = params::time(&p, "from", now - Span::days(30))?;
    let to = params::time(&p, "to", now + Span::days(30))?;
    params::range(from, to)?;
    let kind = params::parsed::<WindowKind>(&p, "kind")?;
    Ok(Json(state.store.declared_windows(from, to, kind).await?))
}

/// `POST /api/v1/windows/{id}/withdraw`: withdraws a window (409 when already withdrawn).
pub(crate) async fn withdraw(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<StoredWindow>, ApiError> {
    caller.require(
        &[Role::Dispatcher, Role::Engineer, Role::Lab],
        "dispatcher, lab, engineer or admin",
    )?;
    let id = match id.parse::<i64>() {
        Ok(id) if id > 0 => id,
        _ => {
            return Err(ApiError::BadRequest(format!(
                "`id`: `{id}` is not a window id; expected a positive whole number"
            )));
        }
    };
    let known = state
        .store
        .window(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("window {id}")))?;
    check_may_declare(&caller, known.window.kind)?;
    let withdrawn = state
        .store
        .withdraw_window(id, &caller.0.label, Utc::now())
        .await
        .map_err(|e| match e {
            StoreError::Conflict(m) => ApiError::Conflict(m),
            e => e.into(),
        })?;
    Ok(Json(withdrawn))
}
