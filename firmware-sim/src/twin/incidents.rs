//! Water-quality incidents: abnormal water entering the network at a node and carried
//! downstream.
//!
//! - **contamination** (`magnitude` m, the share of free chlorine consumed, 0–1, default 0.6):
//!   at full strength chlorine × (1 − m), turbidity × (1 + 10·m), TOC + 3.5·m mg/L and
//!   conductivity + 50·m µS/cm. m = 0.3 … 0.8 gives chlorine −30 … −80 %, turbidity × 4 … 9,
//!   TOC + 1 … 2.8 mg/L.
//! - **ph_excursion** (`magnitude`: the pH shift, signed, default +1.0): pH + m.
//!
//! The abnormal water passes the origin node from `start` to `end`. Its strength ramps up over
//! [`RAMP_S`] (at least three steps) and back down before `end`, so that it is 0 at both ends.
//! A station downstream sees it [`super::age::WaterAge::trace`]'s travel time later (taken
//! from the flows at the incident's start, rounded to steps), diluted by the share of its
//! water that passed the origin, with the ramps widened by a quarter of the travel time
//! (dispersion); stations whose share is under [`MIN_SHARE`] do not see it.
//!
//! Random incidents (`random_quality_incidents`): two in three contaminations (m 0.3–0.8,
//! 2–8 h), else pH excursions (±0.5–1.5, 1–4 h), each entering at a random station's node and
//! starting on a step between the end of the warm-up ([`WARM_UP_S`], at most a quarter of
//! the window) and 80 % of the window.

use chrono::{DateTime, TimeDelta, Utc};
use rand::RngExt;
use rand::rngs::StdRng;

/// The onset (and recovery) ramp at the origin, seconds.
pub const RAMP_S: i64 = 1800;
/// Random incidents start after this much of the window (at most a quarter of it): a station
/// detector learns normal water from its data first (CANARY's history window is days), and
/// an incident in the hours before any baseline exists scores the evaluation, not the
/// detector. Listed incidents may start at any time.
pub const WARM_UP_S: i64 = 2 * 86_400;
/// A station whose water is less than this share from the origin does not see the incident.
pub const MIN_SHARE: f64 = 0.1;

/// What kind of abnormal water.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentType {
    Contamination,
    PhExcursion,
}

impl IncidentType {
    /// The name used in scenarios and `truth.jsonl`.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentType::Contamination => "contamination",
            IncidentType::PhExcursion => "ph_excursion",
        }
    }

    /// Parses a scenario's `type`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "contamination" => Some(IncidentType::Contamination),
            "ph_excursion" => Some(IncidentType::PhExcursion),
            _ => None,
        }
    }

    /// The default magnitude.
    pub fn default_magnitude(self) -> f64 {
        match self {
            IncidentType::Contamination => 0.6,
            IncidentType::PhExcursion => 1.0,
        }
    }
}

/// Where an incident enters.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// A node id.
    Node(String),
    /// A station id (its node).
    Station(String),
}

/// A quality incident as a scenario gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityIncident {
    pub incident_type: IncidentType,
    pub origin: Origin,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub magnitude: f64,
}

/// How strongly abnormal water shows, 0–1, `offset_s` after it started to arrive, for a
/// passage of `duration_s` with ramps of `ramp_s`.
pub fn strength(offset_s: i64, duration_s: i64, ramp_s: i64) -> f64 {
    if offset_s <= 0 || offset_s >= duration_s {
        return 0.0;
    }
    let ramp = ramp_s.clamp(1, (duration_s / 2).max(1)) as f64;
    (offset_s as f64 / ramp)
        .min((duration_s - offset_s) as f64 / ramp)
        .min(1.0)
}

/// Changes to a station's true values at full strength × share.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Effect {
    /// Chlorine multiplier − 1 (negative: consumed).
    pub chlorine: f64,
    /// Turbidity multiplier − 1.
    pub turbidity: f64,
    /// Added TOC, mg/L.
    pub toc: f64,
    /// Added conductivity, µS/cm.
    pub conductivity: f64,
    /// Added pH.
    pub ph: f64,
}

impl QualityIncident {
    /// The change at full strength at the origin.
    pub fn effect(&self) -> Effect {
        let m = self.magnitude;
        match self.incident_type {
            IncidentType::Contamination => Effect {
                chlorine: -m,
                turbidity: 10.0 * m,
                toc: 3.5 * m,
                conductivity: 50.0 * m,
                ph: 0.0,
            },
            IncidentType::PhExcursion => Effect {
                ph: m,
                ..Effect::default()
            },
        }
    }

    /// The suffixes of the sensors an incident changes.
    pub fn channels(&self) -> &'static [&'static str] {
        match self.incident_type {
            IncidentType::Contamination => &["cl2", "turb", "toc", "cond"],
            IncidentType::PhExcursion => &["ph"],
        }
    }
}

fn on_step(t: i64, step_s: i64) -> i64 {
    t / step_s * step_s
}

/// Draws `count` incidents in `[start, end)` entering at the given station ids.
pub fn random_incidents(
    rng: &mut StdRng,
    stations: &[String],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    step_s: i64,
    count: usize,
) -> Vec<QualityIncident> {
    let window = (end - start).num_seconds().max(1);
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        if stations.is_empty() {
            break;
        }
        let station = stations[rng.random_range(0..stations.len())].clone();
        let contamination = rng.random_range(0..3) < 2;
        let (incident_type, hours, magnitude) = if contamination {
            (
                IncidentType::Contamination,
                rng.random_range(2.0..8.0),
                rng.random_range(0.3..0.8),
            )
        } else {
            let sign = if rng.random_range(0..2) == 0 {
                -1.0
            } else {
                1.0
            };
            (
                IncidentType::PhExcursion,
                rng.random_range(1.0..4.0),
                sign * rng.random_range(0.5..1.5),
            )
        };
        let duration = on_step((hours * 3600.0) as i64, step_s).max(4 * step_s);
        let warm_up = WARM_UP_S.min(window / 4);
        let latest = (window * 8 / 10).max(warm_up + 1);
        let offset = on_step(rng.random_range(warm_up..latest), step_s);
        let t0 = start + TimeDelta::seconds(offset);
        out.push(QualityIncident {
            incident_type,
            origin: Origin::Station(station),
            start: t0,
            end: t0 + TimeDelta::seconds(duration),
            magnitude: (magnitude * 100.0f64).round() / 100.0,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strength_ramps_up_and_down_inside_the_passage() {
        assert_eq!(strength(0, 7200, 1800), 0.0);
        assert_eq!(strength(900, 7200, 1800), 0.5);
        assert_eq!(strength(3600, 7200, 1800), 1.0);
        assert_eq!(strength(6300, 7200, 1800), 0.5);
        assert_eq!(strength(7200, 7200, 1800), 0.0);
        assert_eq!(strength(-300, 7200, 1800), 0.0);
        // A passage shorter than two ramps peaks in its middle.
        assert_eq!(strength(600, 1200, 1800), 1.0);
    }

    #[test]
    fn random_incidents_are_realistic_and_inside_the_window() {
        let start: DateTime<Utc> = "2026-01-05T00:00:00Z".parse().unwrap();
        let end = start + TimeDelta::days(14);
        let mut rng = crate::model::rng(1);
        let v = random_incidents(&mut rng, &["S1".into(), "S2".into()], start, end, 300, 40);
        assert_eq!(v.len(), 40);
        for i in &v {
            assert!(i.start >= start + TimeDelta::seconds(WARM_UP_S), "{i:?}");
            assert!(i.end < end && i.end > i.start);
            assert_eq!((i.start - start).num_seconds() % 300, 0);
            match i.incident_type {
                IncidentType::Contamination => {
                    assert!((0.3..=0.8).contains(&i.magnitude));
                    let e = i.effect();
                    assert!(e.turbidity >= 2.0 && e.toc >= 1.0 && e.chlorine <= -0.3);
                }
                IncidentType::PhExcursion => {
                    assert!((0.5..=1.5).contains(&i.magnitude.abs()));
                }
            }
        }
        assert!(
            v.iter()
                .any(|i| i.incident_type == IncidentType::PhExcursion)
        );
    }
}
