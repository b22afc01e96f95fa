//! Instrument faults of the hydraulic pressure sensors (off with `--ideal`), so that the
//! pressure analytics' `sensor_fault` detection can be scored.
//!
//! Listed in a scenario as `[[sensor_fault]]` with a pressure sensor's id, or drawn from the
//! seed (`random_pressure_faults`). The types are those of the quality analysers, on one
//! sensor from `start` to `end`:
//!
//! - `flatline`: the reading freezes at the last value measured before `start` (a logger that
//!   keeps repeating its last sample);
//! - `spike`: isolated single-step outliers, one in each started hour, never adjacent, of
//!   `magnitude` (default 15 m), up or down at random;
//! - `drift`: a bias growing linearly from 0 at `start` to `magnitude` at `end` (default −5 m:
//!   a transducer losing its zero), gone after `end` (the recalibration);
//! - `dropout`: no rows at all;
//! - `floor`: the reading sits at `value` (default 0 m: a transducer that lost its supply).
//!
//! Random faults cycle through these five types from a random one, on a random pressure sensor,
//! with the durations of [`FaultType`]'s random quality faults, wholly inside the window.
//! `maintenance` is a quality-station fault only.

use chrono::{DateTime, TimeDelta, Utc};
use rand::RngExt;
use rand::rngs::StdRng;
use waterline_core::SensorKind;

use super::TwinError;
use super::faults::{FaultType, SensorFault, Target, spike_steps};
use super::sensors::SensorSpec;

/// The fault types a pressure sensor can have.
pub const TYPES: [FaultType; 5] = [
    FaultType::Flatline,
    FaultType::Spike,
    FaultType::Drift,
    FaultType::Dropout,
    FaultType::Floor,
];

/// What the scenario asks for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PressureFaultConfig {
    /// Faults on named pressure sensors.
    pub listed: Vec<SensorFault>,
    /// Faults to draw from the seed.
    pub random: usize,
}

/// One fault placed on a sensor of the export.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedPressureFault {
    pub fault: FaultType,
    /// Index into the export's sensor list.
    pub spec: usize,
    pub sensor: String,
    pub dma: Option<String>,
    /// Steps `first..last` (exclusive) are affected.
    pub first: usize,
    pub last: usize,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub magnitude: f64,
    pub value: f64,
    /// Spike steps, with the sign of each.
    spikes: Vec<(usize, f64)>,
}

/// The faults of one export and the state they need while it runs.
#[derive(Debug, Clone, Default)]
pub struct PressureFaults {
    pub faults: Vec<PlacedPressureFault>,
    /// Per sensor: the last value written (what a flatline freezes at).
    last_written: Vec<Option<f64>>,
    /// Per fault: the frozen value of a running flatline.
    frozen: Vec<Option<f64>>,
}

/// The window of the export, in steps.
#[derive(Debug, Clone, Copy)]
pub struct Steps {
    pub start: DateTime<Utc>,
    pub count: usize,
    pub step_s: usize,
}

impl Steps {
    fn index_of(&self, t: DateTime<Utc>) -> usize {
        let s = (t - self.start).num_seconds().max(0) as usize;
        s.div_ceil(self.step_s).min(self.count)
    }

    fn time_of(&self, k: usize) -> DateTime<Utc> {
        self.start + TimeDelta::seconds((k * self.step_s) as i64)
    }
}

impl PressureFaults {
    /// Places the listed and random faults on the pressure sensors among `specs`.
    pub fn plan(
        cfg: &PressureFaultConfig,
        specs: &[SensorSpec],
        steps: Steps,
        rng: &mut StdRng,
    ) -> Result<Self, TwinError> {
        let pressure: Vec<usize> = (0..specs.len())
            .filter(|&i| specs[i].kind() == SensorKind::Pressure)
            .collect();
        let mut placed = Vec::new();
        for (i, f) in cfg.listed.iter().enumerate() {
            let Target::Sensor(id) = &f.target else {
                continue;
            };
            let what = format!("sensor_fault {} ({id})", i + 1);
            let Some(&spec) = pressure.iter().find(|&&j| &specs[j].id == id) else {
                let known: Vec<&str> = pressure.iter().map(|&j| specs[j].id.as_str()).collect();
                return Err(TwinError::Scenario(format!(
                    "{what}: no sensor of that id; quality sensors end in -cl2, -turb, -ph, \
                     -cond, -toc or -temp, and the pressure sensors are {}",
                    known.join(", ")
                )));
            };
            if !TYPES.contains(&f.fault) {
                return Err(TwinError::Scenario(format!(
                    "{what}: a pressure sensor has no {} fault",
                    f.fault.as_str()
                )));
            }
            placed.push(place(f, spec, &specs[spec], steps, rng));
        }
        if !pressure.is_empty() && steps.count > 2 {
            let first = rng.random_range(0..TYPES.len());
            let window_s = (steps.count * steps.step_s) as i64;
            let step_s = steps.step_s as i64;
            for i in 0..cfg.random {
                let fault = TYPES[(first + i) % TYPES.len()];
                let spec = pressure[rng.random_range(0..pressure.len())];
                let (start, end) = fault.random_window(rng, steps.start, window_s, step_s);
                let f = SensorFault {
                    fault,
                    target: Target::Sensor(specs[spec].id.clone()),
                    start,
                    end,
                    magnitude: None,
                    value: None,
                };
                placed.push(place(&f, spec, &specs[spec], steps, rng));
            }
        }
        placed.retain(|p| p.first < p.last);
        Ok(PressureFaults {
            frozen: vec![None; placed.len()],
            faults: placed,
            last_written: vec![None; specs.len()],
        })
    }

    /// The value written for sensor `spec` at step `k` given its measured value; `None`: no
    /// row (a dropout).
    pub fn apply(&mut self, spec: usize, k: usize, measured: f64) -> Option<f64> {
        if self.faults.is_empty() {
            return Some(measured);
        }
        let mut out = Some(measured);
        for (i, f) in self.faults.iter().enumerate() {
            if f.spec != spec || k < f.first || k >= f.last {
                continue;
            }
            out = match f.fault {
                FaultType::Flatline => {
                    let v =
                        *self.frozen[i].get_or_insert(self.last_written[spec].unwrap_or(measured));
                    Some(v)
                }
                FaultType::Spike => {
                    let bump = f
                        .spikes
                        .iter()
                        .find(|(s, _)| *s == k)
                        .map_or(0.0, |(_, sign)| sign * f.magnitude);
                    out.map(|v| v + bump)
                }
                FaultType::Drift => {
                    let share = (k - f.first) as f64 / (f.last - f.first) as f64;
                    out.map(|v| v + f.magnitude * share)
                }
                FaultType::Dropout => None,
                FaultType::Floor => Some(f.value),
                FaultType::Maintenance => out,
            };
        }
        if let Some(v) = out {
            self.last_written[spec] = Some(v);
        }
        out
    }

    /// The truth lines: `{"kind":"sensor_fault","fault","sensor","dma","start","end"}`.
    pub fn truth(&self) -> Vec<serde_json::Value> {
        self.faults
            .iter()
            .map(|f| {
                serde_json::json!({
                    "kind": "sensor_fault",
                    "fault": f.fault.as_str(),
                    "sensor": f.sensor,
                    "dma": f.dma,
                    "start": super::export::rfc3339(f.start),
                    "end": super::export::rfc3339(f.end),
                })
            })
            .collect()
    }
}

fn place(
    f: &SensorFault,
    spec: usize,
    s: &SensorSpec,
    steps: Steps,
    rng: &mut StdRng,
) -> PlacedPressureFault {
    let first = steps.index_of(f.start);
    let last = steps.index_of(f.end);
    let magnitude = f.magnitude.unwrap_or(match f.fault {
        FaultType::Drift => -5.0,
        _ => 15.0,
    });
    let spikes = if f.fault == FaultType::Spike && first < last {
        spike_steps(rng, first, last, steps.step_s)
            .into_iter()
            .map(|k| (k, if rng.random_bool(0.5) { 1.0 } else { -1.0 }))
            .collect()
    } else {
        Vec::new()
    };
    PlacedPressureFault {
        fault: f.fault,
        spec,
        sensor: s.id.clone(),
        dma: s.dma.clone(),
        first,
        last,
        start: steps.time_of(first),
        end: steps.time_of(last),
        magnitude,
        value: f.value.unwrap_or(0.0),
        spikes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twin::sensors::Source;

    fn specs() -> Vec<SensorSpec> {
        let spec = |id: &str, source| SensorSpec {
            id: id.into(),
            source,
            dma: Some("A".into()),
            register: false,
        };
        vec![
            spec("A-in", Source::Flow(0)),
            spec("n1", Source::Pressure(1)),
            spec("n2", Source::Pressure(2)),
        ]
    }

    fn steps() -> Steps {
        Steps {
            start: "2026-01-05T00:00:00Z".parse().unwrap(),
            count: 288 * 14,
            step_s: 300,
        }
    }

    fn listed(fault: FaultType, sensor: &str, from_h: i64, hours: i64) -> SensorFault {
        let start = steps().start + TimeDelta::hours(from_h);
        SensorFault {
            fault,
            target: Target::Sensor(sensor.into()),
            start,
            end: start + TimeDelta::hours(hours),
            magnitude: None,
            value: None,
        }
    }

    #[test]
    fn each_type_changes_exactly_its_window() {
        let cfg = PressureFaultConfig {
            listed: vec![
                listed(FaultType::Flatline, "n1", 10, 2),
                listed(FaultType::Dropout, "n2", 10, 1),
                listed(FaultType::Floor, "n1", 30, 1),
                listed(FaultType::Drift, "n2", 30, 10),
                listed(FaultType::Spike, "n1", 50, 3),
            ],
            random: 0,
        };
        let mut f =
            PressureFaults::plan(&cfg, &specs(), steps(), &mut crate::model::rng(1)).unwrap();
        let mut out = Vec::new();
        for k in 0..(60 * 12) {
            let v1 = f.apply(1, k, 40.0 + k as f64 * 0.001);
            let v2 = f.apply(2, k, 30.0);
            out.push((v1, v2));
        }
        // Flatline 10:00–12:00 on n1: frozen at the 09:55 value.
        let frozen = out[119].0.unwrap();
        assert!((120..144).all(|k| out[k].0 == Some(frozen)));
        assert_ne!(out[144].0, Some(frozen));
        // Dropout 10:00–11:00 on n2: no rows, then back.
        assert!((120..132).all(|k| out[k].1.is_none()));
        assert_eq!(out[132].1, Some(30.0));
        // Floor 30:00–31:00 on n1: 0 m.
        assert!((360..372).all(|k| out[k].0 == Some(0.0)));
        // Drift on n2 from 30:00 over 10 h to −5 m, gone after.
        assert!((out[479].1.unwrap() - (30.0 - 5.0 * 119.0 / 120.0)).abs() < 1e-9);
        assert_eq!(out[480].1, Some(30.0));
        // Spikes 50:00–53:00 on n1: three isolated ±15 m steps.
        let spikes: Vec<usize> = (600..636)
            .filter(|&k| (out[k].0.unwrap() - (40.0 + k as f64 * 0.001)).abs() > 14.0)
            .collect();
        assert_eq!(spikes.len(), 3, "{spikes:?}");
        assert!(spikes.windows(2).all(|w| w[1] > w[0] + 1));
        assert_eq!(f.truth().len(), 5);
        assert_eq!(f.truth()[0]["sensor"], "n1");
        assert_eq!(f.truth()[0]["dma"], "A");
    }

    #[test]
    fn random_faults_cycle_through_the_types_on_pressure_sensors_only() {
        let cfg = PressureFaultConfig {
            listed: Vec::new(),
            random: 10,
        };
        let f = PressureFaults::plan(&cfg, &specs(), steps(), &mut crate::model::rng(7)).unwrap();
        assert_eq!(f.faults.len(), 10);
        for t in TYPES {
            assert_eq!(f.faults.iter().filter(|p| p.fault == t).count(), 2, "{t:?}");
        }
        assert!(
            f.faults
                .iter()
                .all(|p| p.sensor != "A-in" && p.last <= steps().count)
        );
    }

    #[test]
    fn unknown_sensors_and_maintenance_are_refused_by_name() {
        for (fault, sensor, words) in [
            (FaultType::Flatline, "A-in", "pressure sensors are n1, n2"),
            (FaultType::Maintenance, "n1", "no maintenance fault"),
        ] {
            let cfg = PressureFaultConfig {
                listed: vec![listed(fault, sensor, 1, 1)],
                random: 0,
            };
            let err = PressureFaults::plan(&cfg, &specs(), steps(), &mut crate::model::rng(1))
                .unwrap_err()
                .to_string();
            assert!(err.contains(words), "{err}");
        }
    }
}
