//! Lab grab samples by station: the routine ones entered for a station and those attached to
//! an event that has a station. The analytics compare them with the analysers (drift); the
//! checks of a sample live in core ([`GrabSample::new`]), and a stored row that fails them
//! again is reported, never silently dropped.

use chrono::{DateTime, Utc};
use serde::Serialize;
use waterline_core::{GrabSample, StationId};

use crate::error::StoreError;
use crate::workflow::{Actor, details};

/// A grab sample taken at a station, with who entered it and when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StationSample {
    /// The row id in its table: the routine sample's, or the event sample's when `event_id`
    /// is set.
    pub id: i64,
    /// The event the sample was attached to, if it was.
    pub event_id: Option<i64>,
    pub station: StationId,
    #[serde(flatten)]
    pub sample: GrabSample,
    pub entered_by: String,
    pub entered_at: DateTime<Utc>,
}

/// A row's columns, as both backends read them.
pub(crate) struct SampleRow {
    pub id: i64,
    pub event_id: Option<i64>,
    pub station: String,
    pub parameter: String,
    pub value: f64,
    pub unit: String,
    pub sampled_at: DateTime<Utc>,
    pub sample_id: Option<String>,
    pub entered_by: String,
    pub entered_at: DateTime<Utc>,
}

impl SampleRow {
    pub(crate) fn into_stored(self) -> Result<StationSample, StoreError> {
        let id = self.id;
        let bad = |what: String| StoreError::Conflict(format!("stored grab sample {id}: {what}"));
        let station = StationId::parse(self.station).map_err(|e| bad(e.to_string()))?;
        let sample = GrabSample::new(
            &self.parameter,
            self.value,
            &self.unit,
            self.sampled_at,
            self.sample_id.as_deref(),
        )
        .map_err(|e| bad(e.to_string()))?;
        Ok(StationSample {
            id,
            event_id: self.event_id,
            station,
            sample,
            entered_by: self.entered_by,
            entered_at: self.entered_at,
        })
    }
}

/// The audit detail of a routine sample.
pub(crate) fn audit_detail(
    actor: &Actor,
    id: i64,
    station: &StationId,
    s: &GrabSample,
) -> serde_json::Value {
    details(
        actor,
        serde_json::json!({
            "sample": id,
            "station": station.as_str(),
            "parameter": s.parameter(),
            "value": s.value(),
            "unit": s.unit(),
            "sampled_at": s.sampled_at(),
            "sample_id": s.sample_id(),
        }),
    )
}
