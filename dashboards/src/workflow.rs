//! The alert workflow over HTTP (docs/api.md): one event with its samples and history,
//! acknowledge, resolve, attach a grab sample, and the follow-up KPIs.
//!
//! Who may act: lab, engineer and admin on every alert; dispatcher only on the pressure kinds
//! (`pressure_low`, `pressure_high`, `pressure_drop`, `transient`), which the dispatch centre
//! handles; viewer reads only. Grab samples are lab data: lab, engineer and admin. The actor
//! recorded is the caller's token label (and token id); the time is the server's clock.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{Duration as Span, Utc};
use waterline_core::alert::{self, PRESSURE_KINDS};
use waterline_core::{EventKind, GrabSample, Note, Resolution, Role};
use waterline_store::{Actor, AlertKpis, EventDetail, StoredSample};

use crate::AppState;
use crate::api::READ_ROLES;
use crate::auth::Caller;
use crate::body::{Body, invalid};
use crate::error::ApiError;
use crate::params::{self, Params};

/// Roles that may acknowledge or resolve some alert (dispatcher: pressure kinds only).
const HANDLER_ROLES: &[Role] = &[Role::Engineer, Role::Lab, Role::Dispatcher];
const HANDLER_NAMES: &str = "lab, engineer or admin (dispatcher for pressure alerts)";
/// Roles that may enter grab samples.
pub(crate) const SAMPLE_ROLES: &[Role] = &[Role::Engineer, Role::Lab];
pub(crate) const SAMPLE_NAMES: &str = "lab, engineer or admin";
/// How far in the future a sample's time may be (clocks differ a little).
const SAMPLE_CLOCK_SLACK: Span = Span::minutes(5);

pub(crate) const SAMPLE_FIELDS: &[&str] =
    &["parameter", "value", "unit", "sampled_at", "sample_id"];

/// The `{id}` of an event route.
fn event_id(raw: &str) -> Result<i64, ApiError> {
    match raw.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(ApiError::BadRequest(format!(
            "`id`: `{raw}` is not an event id; expected a positive whole number"
        ))),
    }
}

pub(crate) fn actor(caller: &Caller) -> Actor {
    Actor {
        name: caller.0.label.clone(),
        role: caller.0.role,
        token_id: Some(caller.0.token_id),
    }
}

/// Checks that event `id` exists (404) and that the caller may handle alerts of its kind (403).
async fn check_may_handle(state: &AppState, caller: &Caller, id: i64) -> Result<(), ApiError> {
    let d = state
        .store
        .event(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("event {id}")))?;
    let kind = d.event.event.kind;
    if caller.0.role == Role::Dispatcher && !PRESSURE_KINDS.contains(&kind) {
        return Err(ApiError::Forbidden(
            "lab, engineer or admin (dispatcher only for pressure_low, pressure_high, pressure_drop and transient alerts)",
        ));
    }
    Ok(())
}

/// A grab sample from a JSON object with the fields of [`SAMPLE_FIELDS`]. A parameter that
/// an analyser measures (chlorine, turbidity, pH …) needs a unit that fits it, or the sample
/// could never be compared with the analyser.
pub(crate) fn grab_sample(b: &Body) -> Result<GrabSample, ApiError> {
    let parameter = b.required("parameter", b.str("parameter")?)?;
    let value = b.required("value", b.number("value")?)?;
    let unit = b.required("unit", b.str("unit")?)?;
    let sampled_at = b.required("sampled_at", b.time("sampled_at")?)?;
    if sampled_at > Utc::now() + SAMPLE_CLOCK_SLACK {
        return Err(ApiError::Unprocessable(format!(
            "`{}sampled_at`: {} is in the future",
            b.prefix(),
            sampled_at.to_rfc3339()
        )));
    }
    let sample_id = b.str("sample_id")?;
    let sample = GrabSample::new(parameter, value, unit, sampled_at, sample_id).map_err(|e| {
        let prefix = b.prefix().trim_end_matches('.');
        invalid(if prefix.is_empty() {
            e
        } else {
            e.within(prefix)
        })
    })?;
    if let Some(kind) = sample.analyser_kind()
        && sample.canonical_value().is_none()
    {
        return Err(ApiError::Unprocessable(format!(
            "`{}unit`: `{}` is not a unit of {kind} (expected {} or a unit convertible to it)",
            b.prefix(),
            sample.unit(),
            kind.canonical_unit()
        )));
    }
    Ok(sample)
}

/// `GET /api/v1/events/{id}`: the event, its grab samples and its history.
pub(crate) async fn event(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(p): Query<Params>,
) -> Result<Json<EventDetail>, ApiError> {
    caller.require(READ_ROLES, "viewer or above")?;
    params::only(&p, &[])?;
    let id = event_id(&id)?;
    let d = state
        .store
        .event(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("event {id}")))?;
    Ok(Json(d))
}

/// `POST /api/v1/events/{id}/acknowledge` with an optional `{"note": …}`.
pub(crate) async fn acknowledge(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<EventDetail>, ApiError> {
    caller.require(HANDLER_ROLES, HANDLER_NAMES)?;
    let id = event_id(&id)?;
    let body = Body::parse(&bytes, true, &["note"])?;
    let note = body
        .str("note")?
        .map(|s| Note::parse("note", s))
        .transpose()
        .map_err(invalid)?;
    check_may_handle(&state, &caller, id).await?;
    let d = state
        .store
        .acknowledge_event(id, &actor(&caller), Utc::now(), note.as_ref())
        .await?;
    Ok(Json(d))
}

/// `POST /api/v1/events/{id}/resolve` with `{"resolution", "note", "sample"?}`.
pub(crate) async fn resolve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<EventDetail>, ApiError> {
    caller.require(HANDLER_ROLES, HANDLER_NAMES)?;
    let id = event_id(&id)?;
    let body = Body::parse(&bytes, false, &["resolution", "note", "sample"])?;
    let resolution: Resolution = body
        .required("resolution", body.str("resolution")?)?
        .parse()
        .map_err(|e: String| ApiError::Unprocessable(format!("`resolution`: {e}")))?;
    let note = Note::parse("note", body.required("note", body.str("note")?)?).map_err(invalid)?;
    let sample = body
        .object("sample", SAMPLE_FIELDS)?
        .map(|b| grab_sample(&b))
        .transpose()?;
    check_may_handle(&state, &caller, id).await?;
    let d = state
        .store
        .resolve_event(
            id,
            &actor(&caller),
            Utc::now(),
            resolution,
            &note,
            sample.as_ref(),
        )
        .await?;
    Ok(Json(d))
}

/// `POST /api/v1/events/{id}/samples` with a grab sample; 201 with the stored sample.
pub(crate) async fn add_sample(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<(StatusCode, Json<StoredSample>), ApiError> {
    caller.require(SAMPLE_ROLES, SAMPLE_NAMES)?;
    let id = event_id(&id)?;
    let body = Body::parse(&bytes, false, SAMPLE_FIELDS)?;
    let s = grab_sample(&body)?;
    let stored = state
        .store
        .add_event_sample(id, &actor(&caller), Utc::now(), &s)
        .await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// The `kind` parameter of the KPIs: comma-separated kinds and group names
/// (`quality`, `pressure`, `leakage`); absent means every kind.
fn kinds(p: &Params) -> Result<Vec<EventKind>, ApiError> {
    let Some(raw) = p.get("kind") else {
        return Ok(Vec::new());
    };
    let mut out: Vec<EventKind> = Vec::new();
    for name in raw.split(',').map(str::trim) {
        let add: Vec<EventKind> = match alert::kind_group(name) {
            Some(group) => group.to_vec(),
            None => vec![name.parse().map_err(|e| {
                ApiError::BadRequest(format!(
                    "`kind`: {e}; expected event kinds or the groups quality, pressure, leakage, comma-separated"
                ))
            })?],
        };
        for k in add {
            if !out.contains(&k) {
                out.push(k);
            }
        }
    }
    Ok(out)
}

/// `GET /api/v1/alerts/kpis?from=&to=[&kind=]`: follow-up KPIs of the alerts raised in the
/// window (default: the 30 days before now).
pub(crate) async fn kpis(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<Params>,
) -> Result<Json<AlertKpis>, ApiError> {
    caller.require(READ_ROLES, "viewer or above")?;
    params::only(&p, &["from", "to", "kind"])?;
    let to = params::time(&p, "to", Utc::now())?;
    let from = params::time(&p, "from", to - Span::days(30))?;
    params::range(from, to)?;
    let kinds = kinds(&p)?;
    Ok(Json(state.store.alert_kpis(from, to, &kinds).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_positive_whole_numbers() {
        assert_eq!(event_id("17").unwrap(), 17);
        for bad in ["0", "-3", "abc", "1.5", ""] {
            assert!(matches!(event_id(bad), Err(ApiError::BadRequest(m)) if m.starts_with("`id`")));
        }
    }

    #[test]
    fn kinds_take_names_and_groups_without_repeats() {
        let p = |s: &str| Params::from([("kind".to_owned(), s.to_owned())]);
        assert_eq!(kinds(&Params::new()).unwrap(), vec![]);
        assert_eq!(
            kinds(&p("quality,quality_event,leak")).unwrap(),
            vec![
                EventKind::QualityEvent,
                EventKind::QualityThreshold,
                EventKind::Leak
            ]
        );
        assert!(
            matches!(kinds(&p("flood")), Err(ApiError::BadRequest(m)) if m.contains("`flood`"))
        );
    }
}
