//! Declared windows as stored: who declared each and when, and whether it was withdrawn.
//! The checks of a window live in core ([`DeclaredWindow::new`]); a stored row that fails them
//! again is reported, never silently dropped.

use chrono::{DateTime, Utc};
use serde::Serialize;
use waterline_core::{DeclaredWindow, DmaId, Note, SensorId, StationId, WindowKind, WindowSubject};

use crate::error::StoreError;

/// A declared window and its record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredWindow {
    pub id: i64,
    #[serde(flatten)]
    pub window: DeclaredWindow,
    pub declared_by: String,
    pub declared_at: DateTime<Utc>,
    pub withdrawn_by: Option<String>,
    pub withdrawn_at: Option<DateTime<Utc>>,
}

/// A row's columns, as both backends read them.
pub(crate) struct WindowRow {
    pub id: i64,
    pub kind: String,
    pub dma: Option<String>,
    pub station: Option<String>,
    pub sensor: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub reason: String,
    pub declared_by: String,
    pub declared_at: DateTime<Utc>,
    pub withdrawn_by: Option<String>,
    pub withdrawn_at: Option<DateTime<Utc>>,
}

impl WindowRow {
    pub(crate) fn into_stored(self) -> Result<StoredWindow, StoreError> {
        let id = self.id;
        let bad = |what: String| StoreError::Conflict(format!("stored window {id}: {what}"));
        let kind: WindowKind = self.kind.parse().map_err(bad)?;
        let subject = match (self.dma, self.station, self.sensor) {
            (Some(d), None, None) => {
                WindowSubject::Dma(DmaId::parse(d).map_err(|e| bad(e.to_string()))?)
            }
            (None, Some(s), None) => {
                WindowSubject::Station(StationId::parse(s).map_err(|e| bad(e.to_string()))?)
            }
            (None, None, Some(s)) => {
                WindowSubject::Sensor(SensorId::parse(s).map_err(|e| bad(e.to_string()))?)
            }
            _ => return Err(bad("not exactly one of dma, station, sensor".into())),
        };
        let reason = Note::parse("reason", &self.reason).map_err(|e| bad(e.to_string()))?;
        let window = DeclaredWindow::new(kind, subject, self.from, self.to, reason)
            .map_err(|e| bad(e.to_string()))?;
        Ok(StoredWindow {
            id,
            window,
            declared_by: self.declared_by,
            declared_at: self.declared_at,
            withdrawn_by: self.withdrawn_by,
            withdrawn_at: self.withdrawn_at,
        })
    }
}

/// The (dma, station, sensor) columns of a subject.
pub(crate) fn subject_columns(s: &WindowSubject) -> (Option<&str>, Option<&str>, Option<&str>) {
    match s {
        WindowSubject::Dma(d) => (Some(d.as_str()), None, None),
        WindowSubject::Station(x) => (None, Some(x.as_str()), None),
        WindowSubject::Sensor(x) => (None, None, Some(x.as_str())),
    }
}

/// The audit detail of a window.
pub(crate) fn audit_detail(w: &DeclaredWindow) -> serde_json::Value {
    serde_json::to_value(w).unwrap_or_default()
}
