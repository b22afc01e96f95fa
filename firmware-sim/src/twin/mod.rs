//! The hydraulic digital twin: an EPANET network simulated over days at fixed steps, with
//! varying customer demand, pressure-dependent leaks and PRV set-point changes, exported as the
//! readings a utility's sensors would send (CONTRACTS §6, `waterline sim --export`).
//!
//! - [`engine`]: the EPANET solver (epanet-rs, pure Rust) driven step by step.
//! - [`inp`]: the sensor marks in an `.inp`'s comments.
//! - [`zones`]: DMAs, their balance meters, AZP and critical points, from the topology.
//! - [`demand`]: diurnal, weekly and random demand; large night users.
//! - [`leaks`]: abrupt and incipient leaks as orifice emitters (FAVAD).
//! - [`scenario`]: the scenario file (leaks, set points, stations, incidents, faults).
//! - [`sensors`]: which sensors the export has, and their noise; [`instruments`]: all of them
//!   read at each step (noise, faults, quality signals), for the export and the field devices.
//! - [`age`]: water age (and a tracer) from the solved flows.
//! - [`stations`]: water-quality monitoring stations and their signals.
//! - [`incidents`]: quality incidents carried downstream; [`faults`]: instrument faults;
//!   [`pressure_faults`]: the same on the pressure sensors.
//! - [`quality`]: the stations' readings step by step.
//! - [`export`]: `readings.csv`, `network.toml`, `truth.jsonl`.
//! - [`live`]: the twin paced against the wall clock behind Modbus TCP PRV controllers whose
//!   set points, when written, change the hydraulics (the dispatch centre's closed loop).
//!
//! [`Twin::run`] is the loop the export and the tests share: at each step it applies set
//! points and leak sizes, draws demand, solves, and hands the solution to a callback.
//!
//! Time: steps are UTC instants; the `.inp`'s patterns run on the local clock of the configured
//! time zone (across daylight-saving changes: the spring-forward hour is skipped, the
//! fall-back hour repeats), with pattern time 0 at local midnight, or at Monday 00:00 when
//! the patterns span whole weeks.

pub mod age;
pub mod demand;
pub mod engine;
pub mod export;
pub mod faults;
pub mod incidents;
pub mod inp;
pub mod instruments;
pub mod lab;
pub mod leaks;
pub mod live;
pub mod pressure_faults;
pub mod quality;
pub mod scenario;
pub mod sensors;
pub mod stations;
pub mod zones;

use chrono::{DateTime, Datelike, TimeDelta, Utc};
use chrono_tz::Tz;

use self::demand::Demand;
use self::engine::{Engine, LinkKind, NodeKind};
use self::leaks::Leak;
use self::scenario::Setpoint;
use self::zones::Zone;

/// The built-in network (three DMAs, a PRV, a pump and a tank), used when no `.inp` is given.
pub const BUILTIN_INP: &str = include_str!("builtin.inp");

/// What can go wrong building or running the twin.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TwinError {
    /// A bad `.inp`.
    #[error("network: {0}")]
    Inp(String),
    /// A bad scenario (or one that does not fit the network).
    #[error("scenario: {0}")]
    Scenario(String),
    /// The solver failed.
    #[error("hydraulic solver: {0}")]
    Solver(String),
    /// A bad request (days, step length).
    #[error("{0}")]
    Request(String),
    /// Reading or writing files.
    #[error("{0}")]
    Io(String),
}

/// How to run the twin.
#[derive(Debug, Clone, PartialEq)]
pub struct TwinConfig {
    /// First step.
    pub start: DateTime<Utc>,
    /// Number of steps.
    pub steps: usize,
    /// Step length, seconds.
    pub step_s: usize,
    /// Local time of the demand patterns.
    pub timezone: Tz,
    /// Seed of every random draw.
    pub seed: u64,
    /// Random demand variation and night users (off: the `.inp`'s demands exactly).
    pub demand_variation: bool,
    /// Leaks to inject.
    pub leaks: Vec<Leak>,
    /// Leaks to draw at random from the seed, besides those listed.
    pub random_leaks: usize,
    /// PRV set-point changes.
    pub setpoints: Vec<Setpoint>,
}

/// A leak placed on the network.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedLeak {
    pub leak: Leak,
    /// The junction carrying its emitter.
    pub node: usize,
    /// Its area's index in [`Twin::zones`].
    pub zone: Option<usize>,
}

/// One solved step, as the callback of [`Twin::run`] sees it.
#[derive(Debug)]
pub struct Step<'a> {
    pub index: usize,
    pub time: DateTime<Utc>,
    pub engine: &'a Engine,
    /// Flow of each placed leak, m³/h (0 when not active).
    pub leak_flows_m3h: &'a [f64],
    /// The abrupt leaks that opened at this step, with what each did to the pressures.
    pub onsets: &'a [LeakOnset],
}

/// An abrupt leak's opening: how far it lowered the pressure at every node at that step (the
/// step solved as it was minus solved without this leak, all else equal), m; positive is a
/// drop. The truth's measure of whether a burst moved a monitored pressure at all.
#[derive(Debug, Clone, PartialEq)]
pub struct LeakOnset {
    /// Index into [`Twin::leaks`].
    pub leak: usize,
    pub pressure_drop_m: Vec<f64>,
}

/// The twin: network, areas, leaks and demand, ready to run.
#[derive(Debug)]
pub struct Twin {
    engine: Engine,
    zones: Vec<Zone>,
    zone_of: Vec<Option<usize>>,
    leaks: Vec<PlacedLeak>,
    setpoints: Vec<(usize, Setpoint)>,
    demand: Demand,
    config: TwinConfig,
    quality: Option<quality::QualityPlan>,
    pressure_faults: pressure_faults::PressureFaultConfig,
    devices: crate::field::misbehave::Misbehaviour,
}

impl Twin {
    /// Places the leaks (listed and random) and set points on the network.
    pub fn new(engine: Engine, config: TwinConfig) -> Result<Self, TwinError> {
        let (zones, zone_of) = zones::find_zones(&engine);
        let end = config.start + TimeDelta::seconds((config.steps * config.step_s) as i64);
        let mut all = config.leaks.clone();
        if config.random_leaks > 0 {
            let pipes: Vec<(String, f64)> = engine
                .links()
                .iter()
                .filter(|l| {
                    l.kind == LinkKind::Pipe
                        && !l.closed
                        && zone_of[l.from].is_some()
                        && zone_of[l.to].is_some()
                })
                .map(|l| (l.id.clone(), l.length_m))
                .collect();
            let mut rng = crate::model::rng(config.seed ^ 0x5eed_1eaf);
            all.extend(leaks::random_leaks(
                &mut rng,
                &pipes,
                config.start,
                end,
                config.random_leaks,
            ));
        }
        let mut placed = Vec::new();
        for (i, leak) in all.into_iter().enumerate() {
            let link = engine.link_index(&leak.pipe).ok_or_else(|| {
                TwinError::Scenario(format!(
                    "leak {} (pipe {}): the network has no link `{}`",
                    i + 1,
                    leak.pipe,
                    leak.pipe
                ))
            })?;
            let l = &engine.links()[link];
            if l.kind != LinkKind::Pipe {
                return Err(TwinError::Scenario(format!(
                    "leak {} (pipe {}): `{}` is a pump or valve, not a pipe",
                    i + 1,
                    leak.pipe,
                    leak.pipe
                )));
            }
            let junction = |n: usize| engine.nodes()[n].kind == NodeKind::Junction;
            let node = if junction(l.to) {
                l.to
            } else if junction(l.from) {
                l.from
            } else {
                return Err(TwinError::Scenario(format!(
                    "leak {} (pipe {}): the pipe joins no junction to carry the leak",
                    i + 1,
                    leak.pipe
                )));
            };
            placed.push(PlacedLeak {
                zone: zone_of[node],
                node,
                leak,
            });
        }
        let mut setpoints = Vec::new();
        for (i, s) in config.setpoints.iter().enumerate() {
            let link = engine.link_index(&s.link).ok_or_else(|| {
                TwinError::Scenario(format!(
                    "setpoint {} (link {}): the network has no link `{}`",
                    i + 1,
                    s.link,
                    s.link
                ))
            })?;
            if !engine.links()[link].prv {
                return Err(TwinError::Scenario(format!(
                    "setpoint {} (link {}): `{}` is not a PRV",
                    i + 1,
                    s.link,
                    s.link
                )));
            }
            setpoints.push((link, s.clone()));
        }
        let demand = Demand::new(
            &engine,
            crate::model::rng(config.seed),
            config.demand_variation,
        );
        Ok(Self {
            engine,
            zones,
            zone_of,
            leaks: placed,
            setpoints,
            demand,
            config,
            quality: None,
            pressure_faults: pressure_faults::PressureFaultConfig::default(),
            devices: crate::field::misbehave::Misbehaviour::default(),
        })
    }

    /// Adds water-quality stations, incidents and instrument faults (placed on the network,
    /// random ones drawn from the seed); the export then writes their readings and truth.
    pub fn with_quality(mut self, cfg: &quality::QualityConfig) -> Result<Self, TwinError> {
        self.quality = Some(quality::plan(&self, cfg)?);
        Ok(self)
    }

    /// Adds instrument faults on pressure sensors (placed on the export's sensors).
    pub fn with_pressure_faults(mut self, cfg: pressure_faults::PressureFaultConfig) -> Self {
        self.pressure_faults = cfg;
        self
    }

    /// Sets the holidays (local dates), when demand follows [`demand::holiday_factor`].
    pub fn with_holidays(mut self, days: Vec<chrono::NaiveDate>) -> Self {
        self.demand.set_holidays(days);
        self
    }

    /// Sets how the field devices misbehave on the wire ([`crate::field`]).
    pub fn with_device_misbehaviour(mut self, m: crate::field::misbehave::Misbehaviour) -> Self {
        self.devices = m;
        self
    }

    /// How the field devices misbehave (the scenario's `[devices]`, else the defaults).
    pub fn device_misbehaviour(&self) -> &crate::field::misbehave::Misbehaviour {
        &self.devices
    }

    /// The pressure-sensor faults asked for.
    pub fn pressure_faults(&self) -> &pressure_faults::PressureFaultConfig {
        &self.pressure_faults
    }

    /// The water-quality stations, incidents and faults, when added.
    pub fn quality(&self) -> Option<&quality::QualityPlan> {
        self.quality.as_ref()
    }

    /// The engine (topology, and the last solution).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The areas.
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// Each node's area index (junctions only).
    pub fn zone_of(&self) -> &[Option<usize>] {
        &self.zone_of
    }

    /// The placed leaks, listed ones first.
    pub fn leaks(&self) -> &[PlacedLeak] {
        &self.leaks
    }

    /// The large night users.
    pub fn night_users(&self) -> &[demand::NightUser] {
        &self.demand.night_users
    }

    /// The configuration.
    pub fn config(&self) -> &TwinConfig {
        &self.config
    }

    /// Time of step `k`.
    pub fn time_of(&self, k: usize) -> DateTime<Utc> {
        self.config.start + TimeDelta::seconds((k * self.config.step_s) as i64)
    }

    /// Runs every step, calling `each` with the solution.
    pub fn run(
        &mut self,
        each: impl FnMut(Step<'_>) -> Result<(), TwinError>,
    ) -> Result<(), TwinError> {
        self.run_with(|_, _| Ok(Vec::new()), each)
    }

    /// Runs every step like [`Twin::run`], asking `control` before each step (its index and
    /// time) for PRV set-point changes (link index, setting m) to apply from that step on,
    /// after the scenario's: the closed loop of [`live`].
    pub fn run_with(
        &mut self,
        mut control: impl FnMut(usize, DateTime<Utc>) -> Result<Vec<(usize, f64)>, TwinError>,
        mut each: impl FnMut(Step<'_>) -> Result<(), TwinError>,
    ) -> Result<(), TwinError> {
        let n = self.engine.nodes().len();
        let mut factor = vec![1.0; n];
        let mut extra = vec![0.0; n];
        let mut node_area = vec![0.0f64; n];
        let mut applied_area = vec![0.0f64; n];
        let mut leak_area = vec![0.0f64; self.leaks.len()];
        let mut leak_flows = vec![0.0f64; self.leaks.len()];
        let mut was_open = vec![false; self.leaks.len()];
        let step = TimeDelta::seconds(self.config.step_s as i64);
        let mut onsets: Vec<LeakOnset> = Vec::new();
        let n1 = self.engine.emitter_exponent();
        let tz = self.config.timezone;
        let local_start = self.config.start.with_timezone(&tz).naive_local();
        let midnight = local_start.date().and_hms_opt(0, 0, 0).expect("midnight");
        let clock = (local_start - midnight).num_seconds().max(0) as usize;
        self.engine.set_start_clock(clock);
        // Pattern time 0 is local midnight; patterns spanning whole weeks start on a Monday
        // (L-Town's week-long patterns begin on Monday 2018-01-01).
        let span = self.engine.pattern_span_s();
        let pattern_offset = if span > 0 && span.is_multiple_of(7 * 86_400) {
            clock + local_start.weekday().num_days_from_monday() as usize * 86_400
        } else {
            clock
        };
        let mut next_setpoint = 0;
        for k in 0..self.config.steps {
            let t = self.time_of(k);
            while next_setpoint < self.setpoints.len() && self.setpoints[next_setpoint].1.at <= t {
                let (link, s) = &self.setpoints[next_setpoint];
                self.engine.set_prv_setting(*link, s.setting_m)?;
                next_setpoint += 1;
            }
            for (link, setting_m) in control(k, t)? {
                self.engine.set_prv_setting(link, setting_m)?;
            }
            node_area.fill(0.0);
            for (i, p) in self.leaks.iter().enumerate() {
                leak_area[i] = p.leak.area_m2(t);
                node_area[p.node] += leak_area[i];
            }
            for p in &self.leaks {
                let a = node_area[p.node];
                if a != applied_area[p.node] {
                    self.engine
                        .set_emitter(p.node, leaks::emitter_coefficient(a, n1))?;
                    applied_area[p.node] = a;
                }
            }
            let local = t.with_timezone(&tz).naive_local();
            self.demand.at(local, &mut factor, &mut extra);
            let elapsed = k * self.config.step_s;
            // Patterns follow the local clock, across daylight-saving changes too: people get
            // up at 07:00 local time whatever the offset.
            let local_elapsed = (local - local_start).num_seconds();
            let input = engine::StepInput {
                elapsed_s: elapsed,
                pattern_time_s: (pattern_offset as i64 + local_elapsed).max(0) as usize,
                factor: &factor,
                extra_m3h: &extra,
            };
            onsets.clear();
            for (i, p) in self.leaks.iter().enumerate() {
                // Opens at this step (not open since before the window).
                let opens = leak_area[i] > 0.0 && !was_open[i] && p.leak.start > t - step;
                was_open[i] = leak_area[i] > 0.0;
                if opens && p.leak.leak_type == leaks::LeakType::Abrupt {
                    let others = (node_area[p.node] - leak_area[i]).max(0.0);
                    let without = leaks::emitter_coefficient(others, n1);
                    let pressure = self.engine.pressures_if_emitter(p.node, without, &input)?;
                    onsets.push(LeakOnset {
                        leak: i,
                        pressure_drop_m: pressure,
                    });
                }
            }
            self.engine.solve(&input)?;
            for onset in &mut onsets {
                for (node, p) in onset.pressure_drop_m.iter_mut().enumerate() {
                    *p -= self.engine.pressure_m(node);
                }
            }
            for (i, p) in self.leaks.iter().enumerate() {
                let total = node_area[p.node];
                leak_flows[i] = if total > 0.0 {
                    self.engine.emitter_m3h(p.node) * leak_area[i] / total
                } else {
                    0.0
                };
            }
            each(Step {
                index: k,
                time: t,
                engine: &self.engine,
                leak_flows_m3h: &leak_flows,
                onsets: &onsets,
            })?;
            self.engine.advance(self.config.step_s);
        }
        Ok(())
    }
}
