//! Instrument faults of the quality stations' analysers (off with `--ideal`).
//!
//! Single-channel faults, on one sensor from `start` to `end`:
//!
//! - `flatline`: the reading freezes at the last value before `start`;
//! - `spike`: isolated single-step outliers, one in each started hour of the fault (never two
//!   in adjacent steps), of `magnitude` (default per signal: chlorine 1.5 mg/L, turbidity
//!   4 NTU, pH 2, conductivity 150 µS/cm, TOC 6 mg/L, temperature 8 °C), up or down at random
//!   (up where down would go below 0);
//! - `drift`: a bias growing linearly from 0 at `start` to `magnitude` at `end` (default:
//!   chlorine −0.5, turbidity +0.5, pH +0.8, conductivity +40, TOC +3, temperature +2),
//!   gone after `end` (the recalibration);
//! - `dropout`: no rows at all;
//! - `floor`: the reading sits at `value` (default pH 4.0, every other signal exactly 0).
//!
//! `maintenance` is station-wide: its analysers read calibration values, chlorine 0.00 and
//! TOC 0.00 (zero water), turbidity 0.02 NTU (filtered water), pH 7.00 then 4.00 (two-point
//! buffer calibration, halves of the window), conductivity 1413 µS/cm (the KCl standard);
//! temperature reads on.
//!
//! Random faults (`random_sensor_faults`) cycle through the six types from a random one, on a
//! random station and (single-channel) a random quality signal; they last flatline 3–12 h,
//! spike 2–6 h, drift 2–5 days, dropout 1–6 h, floor 1–6 h, maintenance 1–3 h, and lie
//! wholly inside the window, starting on a step.

use chrono::{DateTime, TimeDelta, Utc};
use rand::RngExt;
use rand::rngs::StdRng;

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultType {
    Flatline,
    Spike,
    Drift,
    Dropout,
    Floor,
    Maintenance,
}

impl FaultType {
    pub const ALL: [FaultType; 6] = [
        FaultType::Flatline,
        FaultType::Spike,
        FaultType::Drift,
        FaultType::Dropout,
        FaultType::Floor,
        FaultType::Maintenance,
    ];

    /// The name used in scenarios and `truth.jsonl`.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultType::Flatline => "flatline",
            FaultType::Spike => "spike",
            FaultType::Drift => "drift",
            FaultType::Dropout => "dropout",
            FaultType::Floor => "floor",
            FaultType::Maintenance => "maintenance",
        }
    }

    /// Parses a scenario's `type`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// Range of random durations, hours.
    fn hours(self) -> (f64, f64) {
        match self {
            FaultType::Flatline => (3.0, 12.0),
            FaultType::Spike => (2.0, 6.0),
            FaultType::Drift => (48.0, 120.0),
            FaultType::Dropout | FaultType::Floor => (1.0, 6.0),
            FaultType::Maintenance => (1.0, 3.0),
        }
    }
}

impl FaultType {
    /// A random `(start, end)` of this type's random duration, on whole steps, wholly inside
    /// the `window_s` seconds from `start` (at least two steps, at most half the window).
    pub(crate) fn random_window(
        self,
        rng: &mut StdRng,
        start: DateTime<Utc>,
        window_s: i64,
        step_s: i64,
    ) -> (DateTime<Utc>, DateTime<Utc>) {
        let (lo, hi) = self.hours();
        let hours = rng.random_range(lo..hi);
        let duration = ((hours * 3600.0) as i64 / step_s * step_s)
            .clamp(2 * step_s, (window_s / 2).max(step_s));
        let offset = rng.random_range(0..(window_s - duration).max(1)) / step_s * step_s;
        let t0 = start + TimeDelta::seconds(offset);
        (t0, t0 + TimeDelta::seconds(duration))
    }
}

/// What a fault applies to.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A sensor id (single-channel faults).
    Sensor(String),
    /// A station id (maintenance).
    Station(String),
}

/// A fault as a scenario gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorFault {
    pub fault: FaultType,
    pub target: Target,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Spike size or drift at the end (default per signal).
    pub magnitude: Option<f64>,
    /// Floor reading (default per signal).
    pub value: Option<f64>,
}

/// Draws `count` faults in `[start, end)`: `stations` are station ids and `channels` the
/// sensor-id suffixes single-channel faults may hit.
pub fn random_faults(
    rng: &mut StdRng,
    stations: &[String],
    channels: &[&str],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    step_s: i64,
    count: usize,
) -> Vec<SensorFault> {
    let window = (end - start).num_seconds().max(step_s);
    let mut out = Vec::with_capacity(count);
    if stations.is_empty() || channels.is_empty() {
        return out;
    }
    let first = rng.random_range(0..FaultType::ALL.len());
    for i in 0..count {
        let fault = FaultType::ALL[(first + i) % FaultType::ALL.len()];
        let station = &stations[rng.random_range(0..stations.len())];
        let channel = channels[rng.random_range(0..channels.len())];
        let (t0, t1) = fault.random_window(rng, start, window, step_s);
        let target = if fault == FaultType::Maintenance {
            Target::Station(station.clone())
        } else {
            Target::Sensor(format!("{station}-{channel}"))
        };
        out.push(SensorFault {
            fault,
            target,
            start: t0,
            end: t1,
            magnitude: None,
            value: None,
        });
    }
    out
}

/// The steps of a spike fault over steps `first..last` (exclusive): one per started hour,
/// never adjacent.
pub fn spike_steps(rng: &mut StdRng, first: usize, last: usize, step_s: usize) -> Vec<usize> {
    let slot = (3600 / step_s.max(1)).max(2);
    let mut out = Vec::new();
    let mut s = first;
    while s < last {
        // Never the slot's last step, so that the next slot's spike is not adjacent.
        let room = (slot - 1).min(last - s);
        out.push(s + rng.random_range(0..room));
        s += slot;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_faults_cycle_through_every_type_inside_the_window() {
        let start: DateTime<Utc> = "2026-01-05T00:00:00Z".parse().unwrap();
        let end = start + TimeDelta::days(14);
        let mut rng = crate::model::rng(4);
        let v = random_faults(
            &mut rng,
            &["S1".into()],
            &["cl2", "ph"],
            start,
            end,
            300,
            12,
        );
        for t in FaultType::ALL {
            assert_eq!(v.iter().filter(|f| f.fault == t).count(), 2, "{t:?}");
        }
        for f in &v {
            assert!(f.start >= start && f.end <= end && f.end > f.start);
            match (&f.target, f.fault) {
                (Target::Station(s), FaultType::Maintenance) => assert_eq!(s, "S1"),
                (Target::Sensor(s), t) if t != FaultType::Maintenance => {
                    assert!(s == "S1-cl2" || s == "S1-ph")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn spikes_are_isolated_one_per_hour() {
        let mut rng = crate::model::rng(9);
        for _ in 0..50 {
            let v = spike_steps(&mut rng, 100, 160, 300);
            assert_eq!(v.len(), 5);
            let w = spike_steps(&mut rng, 100, 154, 300);
            assert_eq!(w.len(), 5, "a started hour has its spike");
            assert!(w.iter().all(|k| (100..154).contains(k)));
            assert!(v.windows(2).all(|w| w[1] > w[0] + 1));
            assert!(v.iter().all(|k| (100..160).contains(k)));
        }
    }
}
