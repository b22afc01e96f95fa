//! The twin's instruments: every sensor the network has (pressure, flow, level, customer meters
//! and the quality stations' signals), read at each solved step with its noise, resolution and
//! instrument faults. The export writes what they read to `readings.csv`; the field devices
//! ([`crate::field`]) send it over the wire. One place decides what a sensor measures, so a
//! file export and a broker run of the same seed carry the same values.

use rand::rngs::StdRng;

use super::inp::SensorTags;
use super::pressure_faults::{PressureFaults, Steps};
use super::quality::QualitySim;
use super::sensors::{self, SensorSpec, ZonePoints};
use super::{Step, Twin, TwinError};

/// One value read at a step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// Index into [`Instruments::ids`].
    pub sensor: usize,
    pub value: f64,
    /// Decimals the value is written with (its resolution's, or 4 in ideal mode).
    pub decimals: usize,
}

/// The sensors of a twin and the state their readings need while it runs.
#[derive(Debug)]
pub struct Instruments {
    /// Hydraulic sensors (pressure, flow, level, customer meters): ids `0..specs.len()`.
    pub specs: Vec<SensorSpec>,
    /// Each area's AZP and critical sensor and customer meters.
    pub points: Vec<ZonePoints>,
    /// Quality signals (station × its analysers, [`super::quality::QualityPlan::channel_of`]): ids after the
    /// hydraulic ones.
    quality_ids: Vec<String>,
    quality: Option<QualitySim>,
    quality_rows: Vec<Option<f64>>,
    pressure_faults: PressureFaults,
    noise: StdRng,
    ideal: bool,
}

impl Instruments {
    /// Chooses the sensors of `twin` (see [`sensors::choose`]) and places the pressure faults
    /// (none in ideal mode).
    pub fn new(twin: &Twin, tags: &SensorTags, ideal: bool) -> Result<Self, TwinError> {
        let (specs, points) = sensors::choose(twin, tags).map_err(TwinError::Inp)?;
        let plan = twin.quality().cloned().unwrap_or_default();
        let quality_ids: Vec<String> = (0..plan.stations.len())
            .flat_map(|s| plan.sensor_ids(s))
            .collect();
        if let Some(id) = quality_ids
            .iter()
            .find(|id| specs.iter().any(|s| &s.id == *id))
        {
            return Err(TwinError::Scenario(format!(
                "quality sensor `{id}` would share its id with a hydraulic sensor; rename the station"
            )));
        }
        let quality = (!plan.stations.is_empty())
            .then(|| QualitySim::new(plan, twin.engine(), twin.config(), ideal));
        let pressure_faults = if ideal {
            PressureFaults::default()
        } else {
            let window = Steps {
                start: twin.config().start,
                count: twin.config().steps,
                step_s: twin.config().step_s,
            };
            let mut rng = crate::model::rng(twin.config().seed ^ 0x0070_f417);
            PressureFaults::plan(twin.pressure_faults(), &specs, window, &mut rng)?
        };
        Ok(Self {
            specs,
            points,
            quality_ids,
            quality,
            quality_rows: Vec::new(),
            pressure_faults,
            noise: crate::model::rng(twin.config().seed ^ 0x0005_e25e),
            ideal,
        })
    }

    /// Every sensor id: the hydraulic sensors, then the quality signals.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.specs
            .iter()
            .map(|s| s.id.as_str())
            .chain(self.quality_ids.iter().map(String::as_str))
    }

    /// How many sensors [`Self::ids`] lists.
    pub fn len(&self) -> usize {
        self.specs.len() + self.quality_ids.len()
    }

    /// Whether the twin has no sensor at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The quality simulation (stations, incidents, faults), when the twin has stations.
    pub fn quality(&self) -> Option<&QualitySim> {
        self.quality.as_ref()
    }

    /// The pressure sensors' faults.
    pub fn pressure_faults(&self) -> &PressureFaults {
        &self.pressure_faults
    }

    /// Whether readings are exact (no noise, no faults).
    pub fn ideal(&self) -> bool {
        self.ideal
    }

    /// Reads every sensor at a solved step into `out` (cleared first). A sensor in a dropout
    /// has no value.
    pub fn read(&mut self, step: &Step<'_>, out: &mut Vec<Measured>) {
        out.clear();
        for (j, s) in self.specs.iter().enumerate() {
            let v = s.true_value(step.engine);
            if self.ideal {
                out.push(Measured {
                    sensor: j,
                    value: v,
                    decimals: 4,
                });
                continue;
            }
            let measured = s.measure(v, &mut self.noise);
            if let Some(written) = self.pressure_faults.apply(j, step.index, measured) {
                out.push(Measured {
                    sensor: j,
                    value: written,
                    decimals: 3,
                });
            }
        }
        if let Some(q) = self.quality.as_mut() {
            q.step(step.index, step.time, step.engine, &mut self.quality_rows);
            let base = self.specs.len();
            let per = q.plan().sensors_per_station();
            for (i, v) in self.quality_rows.iter().enumerate() {
                let Some(v) = v else { continue };
                let decimals = if self.ideal {
                    4
                } else {
                    q.plan().channel_of(i % per).0.decimals()
                };
                out.push(Measured {
                    sensor: base + i,
                    value: *v,
                    decimals,
                });
            }
        }
    }
}
