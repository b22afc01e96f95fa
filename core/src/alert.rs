//! The vocabulary of the alert workflow (DOMAIN: the lab's closed-loop rule): every alert is
//! acknowledged, then resolved with a note, optionally with a lab grab sample attached.
//!
//! - [`Resolution`]: how an alert was classified when it was resolved.
//! - [`GrabSample`]: a lab grab-sample result, checked once when it is built.
//! - [`Note`]: a non-empty, bounded free-text note.
//! - [`kind_group`]: named groups of event kinds (`quality`, `pressure`, `leakage`) for filters.
//!
//! Which role may do what is decided by the HTTP layer; the states live in [`crate::event`].

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::EventKind;
use crate::units::{SensorKind, Unit};

/// Longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 4000;
/// Longest sample parameter name, in characters.
pub const MAX_PARAMETER_CHARS: usize = 64;
/// Longest sample unit, in characters.
pub const MAX_UNIT_CHARS: usize = 32;
/// Longest laboratory sample id, in characters.
pub const MAX_SAMPLE_ID_CHARS: usize = 128;

/// A field of workflow input that was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {problem}")]
pub struct InputError {
    /// The field's name as the client spelled it (`note`, `sample.value` …).
    pub field: String,
    pub problem: String,
}

impl InputError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// The same error with the field named inside `parent` (`value` → `sample.value`).
    pub fn within(mut self, parent: &str) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }
}

/// How a resolved alert is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Something really happened in the network (a leak, bad water …).
    TrueEvent,
    /// The instrument was wrong (fouled probe, drift, flatline …).
    SensorFault,
    /// Caused by planned work (flushing, valve operations, calibration …).
    Maintenance,
    /// Nothing happened and the sensor was fine: the detector was wrong.
    FalseAlarm,
}

impl Resolution {
    /// Every class.
    pub const ALL: [Resolution; 4] = [
        Resolution::TrueEvent,
        Resolution::SensorFault,
        Resolution::Maintenance,
        Resolution::FalseAlarm,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::TrueEvent => "true_event",
            Resolution::SensorFault => "sensor_fault",
            Resolution::Maintenance => "maintenance",
            Resolution::FalseAlarm => "false_alarm",
        }
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Resolution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Resolution::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "`{s}` is not a resolution; expected true_event, sensor_fault, maintenance or false_alarm"
                )
            })
    }
}

/// A free-text note: trimmed, not empty, at most [`MAX_NOTE_CHARS`] characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Note(String);

impl Note {
    /// Checks `text` as the value of the field `field`.
    pub fn parse(field: &str, text: &str) -> Result<Note, InputError> {
        bounded_text(field, text, MAX_NOTE_CHARS).map(Note)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn bounded_text(field: &str, text: &str, max: usize) -> Result<String, InputError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(InputError::new(field, "must not be empty"));
    }
    let n = t.chars().count();
    if n > max {
        return Err(InputError::new(
            field,
            format!("is {n} characters long; at most {max} are allowed"),
        ));
    }
    if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(InputError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(t.to_owned())
}

/// A laboratory grab-sample result, attached to an alert. Built only by [`GrabSample::new`],
/// so every value of this type has a named parameter and unit and a finite value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GrabSample {
    parameter: String,
    value: f64,
    unit: String,
    sampled_at: DateTime<Utc>,
    sample_id: Option<String>,
}

impl GrabSample {
    /// Checks each field; errors name the field (`parameter`, `value`, `unit`, `sample_id`).
    /// The parameter and unit are free text, since lab analyses (E. coli, total coliforms …)
    /// go beyond the sensor kinds.
    pub fn new(
        parameter: &str,
        value: f64,
        unit: &str,
        sampled_at: DateTime<Utc>,
        sample_id: Option<&str>,
    ) -> Result<GrabSample, InputError> {
        let parameter = bounded_text("parameter", parameter, MAX_PARAMETER_CHARS)?;
        if !value.is_finite() {
            return Err(InputError::new("value", "must be a finite number"));
        }
        let unit = bounded_text("unit", unit, MAX_UNIT_CHARS)?;
        let sample_id = sample_id
            .map(|s| bounded_text("sample_id", s, MAX_SAMPLE_ID_CHARS))
            .transpose()?;
        Ok(GrabSample {
            parameter,
            value,
            unit,
            sampled_at,
            sample_id,
        })
    }

    /// What was measured (`chlorine`, `turbidity`, `e_coli` …).
    pub fn parameter(&self) -> &str {
        &self.parameter
    }

    /// The measured value, in [`GrabSample::unit`].
    pub fn value(&self) -> f64 {
        self.value
    }

    /// The unit the lab reported (`mg/L`, `NTU`, `CFU/100mL` …), kept as given.
    pub fn unit(&self) -> &str {
        &self.unit
    }

    /// When the sample was taken.
    pub fn sampled_at(&self) -> DateTime<Utc> {
        self.sampled_at
    }

    /// The laboratory's id of the sample, when it has one.
    pub fn sample_id(&self) -> Option<&str> {
        self.sample_id.as_deref()
    }

    /// The analyser kind this result checks, when the parameter is one an online analyser
    /// measures: `chlorine` (also `free_chlorine`, `free chlorine`, `cl2`), `turbidity`,
    /// `ph`, `conductivity` (`ec`), `toc`, `temperature` (`temp`), `redox` (`orp`); case and
    /// `_`/`-`/space do not matter. `None` for lab-only analyses (E. coli, coliforms …).
    pub fn analyser_kind(&self) -> Option<SensorKind> {
        let name: String = self
            .parameter
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c == '-' || c == ' ' { '_' } else { c })
            .collect();
        Some(match name.as_str() {
            "chlorine" | "free_chlorine" | "cl2" | "free_cl2" | "residual_chlorine" => {
                SensorKind::Chlorine
            }
            "turbidity" => SensorKind::Turbidity,
            "ph" => SensorKind::Ph,
            "conductivity" | "ec" => SensorKind::Conductivity,
            "toc" => SensorKind::Toc,
            "temperature" | "temp" => SensorKind::Temperature,
            "redox" | "orp" => SensorKind::Redox,
            _ => return None,
        })
    }

    /// The value in the canonical unit of [`GrabSample::analyser_kind`], when the parameter
    /// is an analyser's and the unit fits it (`None` otherwise).
    pub fn canonical_value(&self) -> Option<f64> {
        let kind = self.analyser_kind()?;
        let unit: Unit = self.unit.parse().ok()?;
        if !kind.accepts(unit) {
            return None;
        }
        unit.convert(self.value, kind.canonical_unit()).ok()
    }
}

/// Kinds raised by the water-quality analytics.
pub const QUALITY_KINDS: &[EventKind] = &[EventKind::QualityEvent, EventKind::QualityThreshold];
/// Kinds raised by the pressure analytics.
pub const PRESSURE_KINDS: &[EventKind] = &[
    EventKind::PressureLow,
    EventKind::PressureHigh,
    EventKind::PressureDrop,
    EventKind::Transient,
];
/// Kinds raised by the leakage analytics.
pub const LEAKAGE_KINDS: &[EventKind] = &[EventKind::Leak, EventKind::Burst];

/// The kinds a group name stands for: `quality`, `pressure` or `leakage`.
pub fn kind_group(name: &str) -> Option<&'static [EventKind]> {
    match name {
        "quality" => Some(QUALITY_KINDS),
        "pressure" => Some(PRESSURE_KINDS),
        "leakage" => Some(LEAKAGE_KINDS),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-01T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn grab_samples_name_the_analyser_they_check() {
        let g = |p: &str, v: f64, u: &str| GrabSample::new(p, v, u, t(), None).unwrap();
        let s = g("Free Chlorine", 0.8, "mg/L");
        assert_eq!(s.analyser_kind(), Some(SensorKind::Chlorine));
        assert_eq!(s.canonical_value(), Some(0.8));
        assert_eq!(g("pH", 7.2, "pH").canonical_value(), Some(7.2));
        assert_eq!(g("e_coli", 0.0, "CFU/100mL").analyser_kind(), None);
        assert_eq!(g("e_coli", 0.0, "CFU/100mL").canonical_value(), None);
        // A unit that does not fit the parameter, or is unknown, gives no comparable value.
        assert_eq!(g("turbidity", 0.3, "mg/L").canonical_value(), None);
        assert_eq!(g("turbidity", 0.3, "FTU").canonical_value(), None);
    }

    #[test]
    fn resolutions_round_trip_and_reject_unknown() {
        for r in Resolution::ALL {
            assert_eq!(r.as_str().parse::<Resolution>().unwrap(), r);
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        let e = "fixed".parse::<Resolution>().unwrap_err();
        assert!(e.contains("`fixed`") && e.contains("false_alarm"), "{e}");
    }

    #[test]
    fn samples_are_checked_field_by_field() {
        let s = GrabSample::new(" chlorine ", 0.42, "mg/L", t(), Some("LIMS-1")).unwrap();
        assert_eq!(s.parameter(), "chlorine");
        assert_eq!(s.sample_id(), Some("LIMS-1"));
        let e = GrabSample::new("", 1.0, "mg/L", t(), None).unwrap_err();
        assert_eq!(e.field, "parameter");
        let e = GrabSample::new("ph", f64::NAN, "pH", t(), None).unwrap_err();
        assert_eq!(e.field, "value");
        let e = GrabSample::new("ph", 7.0, " ", t(), None).unwrap_err();
        assert_eq!(e.field, "unit");
        let e = GrabSample::new("ph", 7.0, "pH", t(), Some(&"x".repeat(200))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`sample_id`: is 200 characters long; at most 128 are allowed"
        );
        assert_eq!(e.within("sample").field, "sample.sample_id");
    }

    #[test]
    fn notes_are_trimmed_and_bounded() {
        assert_eq!(Note::parse("note", "  ok \n").unwrap().as_str(), "ok");
        assert!(Note::parse("note", "   ").is_err());
        assert!(Note::parse("note", &"a".repeat(MAX_NOTE_CHARS + 1)).is_err());
        assert!(Note::parse("note", "bell\u{7}").is_err());
        assert!(Note::parse("note", "line one\nline two").is_ok());
    }

    #[test]
    fn groups_name_their_kinds() {
        assert_eq!(kind_group("quality"), Some(QUALITY_KINDS));
        assert!(
            kind_group("pressure")
                .unwrap()
                .contains(&EventKind::Transient)
        );
        assert_eq!(kind_group("floods"), None);
    }
}
