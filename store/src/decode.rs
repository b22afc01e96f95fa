//! Row-to-model conversions shared by the backends.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use waterline_core::{DeviceId, DmaId, Event, EventKind, SensorId, StationId};

use crate::error::StoreError;
use crate::model::{DeviceSeen, Principal, StoredEvent};

/// An `events` row with times already converted.
pub(crate) struct EventRow {
    pub(crate) id: i64,
    pub(crate) kind: String,
    pub(crate) dma: Option<String>,
    pub(crate) sensor: Option<String>,
    pub(crate) station: Option<String>,
    pub(crate) sensors: String,
    pub(crate) start: DateTime<Utc>,
    pub(crate) detected_at: DateTime<Utc>,
    pub(crate) end: Option<DateTime<Utc>>,
    pub(crate) severity: Option<String>,
    pub(crate) value: Option<f64>,
    pub(crate) flow_m3h: Option<f64>,
    pub(crate) confidence: Option<f64>,
    pub(crate) message: Option<String>,
    pub(crate) state: String,
    pub(crate) acknowledged_by: Option<String>,
    pub(crate) acknowledged_at: Option<DateTime<Utc>>,
    pub(crate) resolved_by: Option<String>,
    pub(crate) resolved_at: Option<DateTime<Utc>>,
    pub(crate) resolution: Option<String>,
    pub(crate) resolution_note: Option<String>,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Conflict(format!("stored {what} is invalid: {e}"))
}

pub(crate) fn stored_event(r: EventRow) -> Result<StoredEvent, StoreError> {
    let kind: EventKind = r.kind.parse().map_err(|e| corrupt("event kind", e))?;
    let sensors: Vec<SensorId> =
        serde_json::from_str(&r.sensors).map_err(|e| corrupt("event sensors", e))?;
    let mut event = Event::new(kind, r.start, r.detected_at);
    event.end = r.end;
    event.dma = r
        .dma
        .map(DmaId::parse)
        .transpose()
        .map_err(|e| corrupt("DMA id", e))?;
    event.sensor = r
        .sensor
        .map(SensorId::parse)
        .transpose()
        .map_err(|e| corrupt("sensor id", e))?;
    event.station = r
        .station
        .map(StationId::parse)
        .transpose()
        .map_err(|e| corrupt("station id", e))?;
    event.sensors = sensors;
    event.severity = r
        .severity
        .map(|s| s.parse())
        .transpose()
        .map_err(|e| corrupt("severity", e))?;
    event.value = r.value;
    event.flow_m3h = r.flow_m3h;
    event.confidence = r.confidence;
    event.message = r.message;
    Ok(StoredEvent {
        id: r.id,
        event,
        state: r.state.parse().map_err(|e| corrupt("event state", e))?,
        acknowledged_by: r.acknowledged_by,
        acknowledged_at: r.acknowledged_at,
        resolved_by: r.resolved_by,
        resolved_at: r.resolved_at,
        resolution: r
            .resolution
            .map(|s| s.parse())
            .transpose()
            .map_err(|e| corrupt("event resolution", e))?,
        resolution_note: r.resolution_note,
    })
}

pub(crate) fn principal(id: i64, label: String, role: String) -> Result<Principal, StoreError> {
    Ok(Principal {
        token_id: id,
        label,
        role: role.parse().map_err(|e| corrupt("token role", e))?,
    })
}

/// One entry per device, sorted by id (an upsert may touch each row once), with the
/// earliest sighting of the batch as `.1` and the latest as `.0.at`.
pub(crate) fn merge_devices(devices: &[DeviceSeen]) -> Vec<(DeviceSeen, DateTime<Utc>)> {
    let mut by_id: BTreeMap<&DeviceId, (DeviceSeen, DateTime<Utc>)> = BTreeMap::new();
    for d in devices {
        by_id
            .entry(&d.device)
            .and_modify(|(e, first)| {
                if d.at >= e.at && d.health.is_some() {
                    e.health = d.health;
                }
                e.at = e.at.max(d.at);
                *first = (*first).min(d.at);
            })
            .or_insert_with(|| (d.clone(), d.at));
    }
    by_id.into_values().collect()
}
