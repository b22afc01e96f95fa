//! Analytics events (CONTRACTS §4) and their lifecycle state.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{DmaId, SensorId, StationId};

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Leak,
    Burst,
    PressureLow,
    PressureHigh,
    PressureDrop,
    Transient,
    QualityEvent,
    QualityThreshold,
    SensorFault,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 9] = [
        EventKind::Leak,
        EventKind::Burst,
        EventKind::PressureLow,
        EventKind::PressureHigh,
        EventKind::PressureDrop,
        EventKind::Transient,
        EventKind::QualityEvent,
        EventKind::QualityThreshold,
        EventKind::SensorFault,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Leak => "leak",
            EventKind::Burst => "burst",
            EventKind::PressureLow => "pressure_low",
            EventKind::PressureHigh => "pressure_high",
            EventKind::PressureDrop => "pressure_drop",
            EventKind::Transient => "transient",
            EventKind::QualityEvent => "quality_event",
            EventKind::QualityThreshold => "quality_threshold",
            EventKind::SensorFault => "sensor_fault",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown event kind `{s}`"))
    }
}

/// How serious an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Alarm,
}

impl Severity {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Alarm => "alarm",
        }
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "info" => Ok(Severity::Info),
            "warning" => Ok(Severity::Warning),
            "alarm" => Ok(Severity::Alarm),
            _ => Err(format!("unknown severity `{s}`")),
        }
    }
}

/// Where an event is in the closed-loop workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventState {
    Open,
    Acknowledged,
    Resolved,
}

impl EventState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventState::Open => "open",
            EventState::Acknowledged => "acknowledged",
            EventState::Resolved => "resolved",
        }
    }
}

impl FromStr for EventState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(EventState::Open),
            "acknowledged" => Ok(EventState::Acknowledged),
            "resolved" => Ok(EventState::Resolved),
            _ => Err(format!("unknown event state `{s}`")),
        }
    }
}

/// An event as CONTRACTS §4 defines it (one JSON line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub start: DateTime<Utc>,
    pub detected_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dma: Option<DmaId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor: Option<SensorId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station: Option<StationId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensors: Vec<SensorId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_m3h: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Event {
    /// A new event of `kind` with only the required fields set.
    pub fn new(kind: EventKind, start: DateTime<Utc>, detected_at: DateTime<Utc>) -> Self {
        Self {
            kind,
            start,
            detected_at,
            end: None,
            dma: None,
            sensor: None,
            station: None,
            sensors: Vec::new(),
            severity: None,
            value: None,
            flow_m3h: None,
            confidence: None,
            message: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_a_contract_json_line() {
        let t = DateTime::parse_from_rfc3339("2018-03-01T04:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut e = Event::new(EventKind::Leak, t, t);
        e.dma = Some(DmaId::parse("A").unwrap());
        e.flow_m3h = Some(3.2);
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(
            line,
            r#"{"kind":"leak","start":"2018-03-01T04:00:00Z","detected_at":"2018-03-01T04:00:00Z","dma":"A","flow_m3h":3.2}"#
        );
        let back: Event = serde_json::from_str(&line).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn names_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>().unwrap(), k);
        }
        assert!("flood".parse::<EventKind>().is_err());
    }
}
