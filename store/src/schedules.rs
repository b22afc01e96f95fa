//! PRV schedules in force: the hourly set points a dispatcher applied to a valve, which the
//! service writes at each local hour (docs/api.md §8). One per valve; applying replaces it,
//! cancelling removes it, and the audit log keeps every apply, cancel and write. The checks of
//! a schedule live in core ([`HourlySchedule::new`]); a stored row that fails them again is
//! reported, never silently dropped.

use chrono::{DateTime, Utc};
use serde::Serialize;
use waterline_core::HourlySchedule;

use crate::error::StoreError;

/// Where a schedule's set points came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleSource {
    /// The analytics job's recommendation.
    Recommendation,
    /// The dispatcher's request body.
    Request,
}

impl ScheduleSource {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleSource::Recommendation => "recommendation",
            ScheduleSource::Request => "request",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "recommendation" => Some(ScheduleSource::Recommendation),
            "request" => Some(ScheduleSource::Request),
            _ => None,
        }
    }
}

/// A schedule in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrvSchedule {
    pub prv: String,
    pub hourly_setting_m: Vec<f64>,
    pub timezone: String,
    pub source: ScheduleSource,
    pub note: Option<String>,
    pub applied_by: String,
    pub applied_at: DateTime<Utc>,
    /// The start of the last local hour whose set point was written, and that set point.
    pub written_hour: Option<DateTime<Utc>>,
    pub written_m: Option<f64>,
}

impl PrvSchedule {
    /// The checked schedule.
    pub fn schedule(&self) -> Result<HourlySchedule, StoreError> {
        HourlySchedule::new(&self.hourly_setting_m, &self.timezone)
            .map_err(|e| StoreError::Conflict(format!("stored schedule of PRV {}: {e}", self.prv)))
    }
}

/// A row's columns, as both backends read them.
pub(crate) struct ScheduleRow {
    pub prv: String,
    pub hourly_setting_m: Vec<f64>,
    pub timezone: String,
    pub source: String,
    pub note: Option<String>,
    pub applied_by: String,
    pub applied_at: DateTime<Utc>,
    pub written_hour: Option<DateTime<Utc>>,
    pub written_m: Option<f64>,
}

impl ScheduleRow {
    pub(crate) fn into_stored(self) -> Result<PrvSchedule, StoreError> {
        let source = ScheduleSource::parse(&self.source).ok_or_else(|| {
            StoreError::Conflict(format!(
                "stored schedule of PRV {}: source `{}` is invalid",
                self.prv, self.source
            ))
        })?;
        let stored = PrvSchedule {
            prv: self.prv,
            hourly_setting_m: self.hourly_setting_m,
            timezone: self.timezone,
            source,
            note: self.note,
            applied_by: self.applied_by,
            applied_at: self.applied_at,
            written_hour: self.written_hour,
            written_m: self.written_m,
        };
        stored.schedule()?;
        Ok(stored)
    }
}

/// The audit detail of a schedule.
pub(crate) fn audit_detail(
    s: &HourlySchedule,
    source: ScheduleSource,
    note: Option<&str>,
) -> serde_json::Value {
    serde_json::json!({
        "hourly_setting_m": s.settings(),
        "timezone": s.timezone().name(),
        "source": source.as_str(),
        "note": note,
    })
}
