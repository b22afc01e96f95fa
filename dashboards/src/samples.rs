//! Routine lab grab samples at monitoring stations over HTTP (docs/api.md, "Grab samples"):
//! entered by the lab, listed with the samples attached to the station's alerts. The
//! analytics compare them with the station's analysers to find drift.
//!
//! Who may act: lab, engineer and admin enter samples (each entry audited); everyone reads.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::{Duration as Span, Utc};
use waterline_core::StationId;
use waterline_store::StationSample;

use crate::AppState;
use crate::api::READ_ROLES;
use crate::auth::Caller;
use crate::body::{Body, invalid};
use crate::error::ApiError;
use crate::params::{self, Params};
use crate::workflow::{SAMPLE_FIELDS, SAMPLE_NAMES, SAMPLE_ROLES, actor, grab_sample};

fn station(raw: &str) -> Result<StationId, waterline_core::alert::InputError> {
    StationId::parse(raw)
        .map_err(|e| waterline_core::alert::InputError::new("station", e.to_string()))
}

/// `POST /api/v1/samples`: records a grab sample taken at a station (201 with the stored
/// sample).
pub(crate) async fn record(
    State(state): State<AppState>,
    caller: Caller,
    bytes: Bytes,
) -> Result<(StatusCode, Json<StationSample>), ApiError> {
    caller.require(SAMPLE_ROLES, SAMPLE_NAMES)?;
    let mut fields = vec!["station"];
    fields.extend_from_slice(SAMPLE_FIELDS);
    let body = Body::parse(&bytes, false, &fields)?;
    let at = station(body.required("station", body.str("station")?)?).map_err(invalid)?;
    let sample = grab_sample(&body)?;
    let stored = state
        .store
        .record_station_sample(&at, &sample, &actor(&caller), Utc::now())
        .await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// `GET /api/v1/samples?from=&to=[&station=]`: samples taken in the span (default: the last
/// 30 days), routine ones and those attached to alerts with a station, by sample time.
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<Params>,
) -> Result<Json<Vec<StationSample>>, ApiError> {
    caller.require(READ_ROLES, "viewer or above")?;
    params::only(&p, &["from", "to", "station"])?;
    let now = Utc::now();
    let from = params::time(&p, "from", now - Span::days(30))?;
    let to = params::time(&p, "to", now + Span::minutes(5))?;
    params::range(from, to)?;
    let at = p
        .get("station")
        .map(|s| station(s).map_err(|e| ApiError::BadRequest(e.to_string())))
        .transpose()?;
    Ok(Json(
        state.store.station_samples(from, to, at.as_ref()).await?,
    ))
}
