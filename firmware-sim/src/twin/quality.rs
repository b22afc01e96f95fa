//! Water quality at the monitoring stations, step by step: the baseline derived from the
//! hydraulics, the incidents carried downstream, and (unless ideal) instrument noise and faults.
//!
//! **Source water** (one for the network) varies slowly: each property is a mean plus a
//! first-order autoregressive wander (time constant τ, stationary σ):
//! chlorine dose 1.1 mg/L (τ 6 h, σ 0.04), pH 7.45 (12 h, 0.04), conductivity 320 µS/cm
//! (24 h, 8), TOC 2.0 mg/L (24 h, 0.12), turbidity 0.10 NTU (6 h, 0.02), and temperature
//! `15 − 7·cos(2π (day of year − 35) / 365.25)` °C (8 °C in early February, 22 °C in early
//! August) plus a wander (48 h, 0.4).
//!
//! **At a station** of water age `a` ([`super::age`]) the water left the source `a` ago, so
//! each source property is read from that step of its history, then:
//!
//! - temperature moves towards the ground's (`15 + (seasonal − 15)/2`) by `1 − e^(−a/24 h)`,
//!   plus ±0.15 °C over the local day (warmest at 16:00);
//! - free chlorine decays first-order in the bulk: `C = dose · e^(−k_b·a)`,
//!   `k_b = 0.55 /day · 1.07^(T − 20)` (0.25 /day at 8 °C, 0.63 /day at 22 °C);
//! - pH falls by 0.05 per day of age (up to 4 days); TOC by 4 % per day (up to 5 days);
//!   conductivity has a fixed station offset of ±5 µS/cm;
//! - turbidity adds a station share of 0.05–0.2 NTU (deposits), stirred up by 30 % of the
//!   excess of the flow through the node over its 24-hour mean;
//!
//! and each signal has its own small wander at the station. Incidents then change the values
//! ([`super::incidents`]); the readings add Gaussian instrument noise
//! ([`Channel::noise_sd`]), go through the faults ([`super::faults`]) and are rounded to the
//! resolution. `--ideal` writes the true values (4 decimals): no noise, no faults.

use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc};
use rand::RngExt;
use rand::rngs::StdRng;

use super::age::WaterAge;
use super::demand::gaussian;
use super::engine::Engine;
use super::faults::{self, FaultType, SensorFault, Target};
use super::incidents::{self, Origin, QualityIncident};
use super::stations::{self, Channel, Station, StationSpec};
use super::{Twin, TwinConfig, TwinError};

/// What quality to simulate, as the scenario (or the defaults) asks.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QualityConfig {
    /// Stations; empty: the default ones.
    pub stations: Vec<StationSpec>,
    pub incidents: Vec<QualityIncident>,
    pub random_incidents: usize,
    pub faults: Vec<SensorFault>,
    pub random_faults: usize,
    /// Signals measured twice at every station (a second analyser, `<station>-<suffix>b`).
    pub redundant: Vec<Channel>,
}

/// An incident with its id and origin node.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedIncident {
    /// `qi1`, `qi2`, … (listed ones first).
    pub id: String,
    pub incident: QualityIncident,
    pub node: usize,
}

/// A fault on a station's signal (`channel`), or station-wide maintenance (`None`).
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedFault {
    pub fault: SensorFault,
    pub station: usize,
    pub channel: Option<Channel>,
    /// On the second analyser of `channel`.
    pub redundant: bool,
}

/// Stations, incidents and faults placed on a twin.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QualityPlan {
    pub stations: Vec<Station>,
    pub incidents: Vec<PlacedIncident>,
    pub faults: Vec<PlacedFault>,
    /// Signals with a second analyser at every station.
    pub redundant: Vec<Channel>,
}

impl QualityPlan {
    /// Sensors per station: the six signals, then the redundant analysers.
    pub fn sensors_per_station(&self) -> usize {
        Channel::ALL.len() + self.redundant.len()
    }

    /// What sensor `j` of a station measures, and whether it is a redundant analyser.
    pub fn channel_of(&self, j: usize) -> (Channel, bool) {
        match Channel::ALL.get(j) {
            Some(c) => (*c, false),
            None => (self.redundant[j - Channel::ALL.len()], true),
        }
    }

    /// The sensor ids of station `s`, in [`Self::channel_of`] order.
    pub fn sensor_ids(&self, s: usize) -> Vec<String> {
        let st = &self.stations[s];
        (0..self.sensors_per_station())
            .map(|j| match self.channel_of(j) {
                (c, false) => st.sensor_id(c),
                (c, true) => st.redundant_id(c),
            })
            .collect()
    }
}

/// Places stations, incidents (listed and random) and faults on the twin.
pub fn plan(twin: &Twin, cfg: &QualityConfig) -> Result<QualityPlan, TwinError> {
    let tc = twin.config();
    let stations = stations::place(twin, &cfg.stations)?;
    let end = twin.time_of(tc.steps);
    let step_s = tc.step_s as i64;
    let ids: Vec<String> = stations.iter().map(|s| s.id.clone()).collect();
    let mut all = cfg.incidents.clone();
    let mut rng = crate::model::rng(tc.seed ^ 0x0a11_c1de);
    all.extend(incidents::random_incidents(
        &mut rng,
        &ids,
        tc.start,
        end,
        step_s,
        cfg.random_incidents,
    ));
    let mut placed = Vec::new();
    for (i, inc) in all.into_iter().enumerate() {
        let what = format!("quality_incident {}", i + 1);
        let node = match &inc.origin {
            Origin::Node(id) => twin.engine().node_index(id).ok_or_else(|| {
                TwinError::Scenario(format!("{what}: the network has no node `{id}`"))
            })?,
            Origin::Station(id) => station_named(&stations, id, &what)?.node,
        };
        placed.push(PlacedIncident {
            id: format!("qi{}", i + 1),
            incident: inc,
            node,
        });
    }
    let mut all = cfg.faults.clone();
    let mut rng = crate::model::rng(tc.seed ^ 0x0000_fa17);
    all.extend(faults::random_faults(
        &mut rng,
        &ids,
        &Channel::QUALITY_SUFFIXES,
        tc.start,
        end,
        step_s,
        cfg.random_faults,
    ));
    let mut faults = Vec::new();
    for (i, f) in all.into_iter().enumerate() {
        let what = format!("sensor_fault {} ({})", i + 1, f.fault.as_str());
        let (station, channel) = match &f.target {
            Target::Station(id) => (
                index_of(&stations, station_named(&stations, id, &what)?),
                None,
            ),
            Target::Sensor(id) => {
                let found = id.rsplit_once('-').and_then(|(s, suffix)| {
                    let i = stations.iter().position(|st| st.id == s)?;
                    if let Some(c) = Channel::from_suffix(suffix) {
                        return Some((i, c, false));
                    }
                    let c = Channel::from_suffix(suffix.strip_suffix('b')?)?;
                    cfg.redundant.contains(&c).then_some((i, c, true))
                });
                let Some((s, c, redundant)) = found else {
                    let known: Vec<String> = stations
                        .iter()
                        .map(|s| format!("{}-{{cl2,turb,ph,cond,toc,temp,flow}}", s.id))
                        .collect();
                    return Err(TwinError::Scenario(format!(
                        "{what}: no quality sensor `{id}` (the stations' sensors are {})",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    )));
                };
                (s, Some((c, redundant)))
            }
        };
        faults.push(PlacedFault {
            fault: f,
            station,
            channel: channel.map(|(c, _)| c),
            redundant: channel.is_some_and(|(_, r)| r),
        });
    }
    Ok(QualityPlan {
        stations,
        incidents: placed,
        faults,
        redundant: cfg.redundant.clone(),
    })
}

fn station_named<'a>(
    stations: &'a [Station],
    id: &str,
    what: &str,
) -> Result<&'a Station, TwinError> {
    stations.iter().find(|s| s.id == id).ok_or_else(|| {
        let ids: Vec<&str> = stations.iter().map(|s| s.id.as_str()).collect();
        TwinError::Scenario(format!(
            "{what}: no station `{id}` (stations: {})",
            if ids.is_empty() {
                "none".to_owned()
            } else {
                ids.join(", ")
            }
        ))
    })
}

fn index_of(stations: &[Station], s: &Station) -> usize {
    stations
        .iter()
        .position(|x| std::ptr::eq(x, s))
        .expect("a station of the list")
}

/// A first-order autoregressive wander with stationary deviation `sd` and time constant `tau_h`.
#[derive(Debug, Clone, Copy)]
struct Wander {
    x: f64,
    phi: f64,
    kick: f64,
}

impl Wander {
    fn new(rng: &mut StdRng, sd: f64, tau_h: f64, dt_s: usize) -> Self {
        let phi = (-(dt_s as f64) / 3600.0 / tau_h).exp();
        Self {
            x: sd * gaussian(rng),
            phi,
            kick: sd * (1.0 - phi * phi).sqrt(),
        }
    }

    fn next(&mut self, rng: &mut StdRng) -> f64 {
        self.x = self.phi * self.x + self.kick * gaussian(rng);
        self.x
    }
}

/// The source water at one step.
#[derive(Debug, Clone, Copy)]
struct Source {
    dose: f64,
    ph: f64,
    conductivity: f64,
    toc: f64,
    turbidity: f64,
    temperature: f64,
    seasonal: f64,
}

/// Bulk chlorine decay constant at 20 °C, per day.
pub const K_BULK_20: f64 = 0.55;
/// Temperature factor of the bulk decay (per °C).
pub const K_THETA: f64 = 1.07;

/// Seasonal source-water temperature on a day of the year, °C.
pub fn seasonal_temperature(day_of_year: f64) -> f64 {
    15.0 - 7.0 * (std::f64::consts::TAU * (day_of_year - 35.0) / 365.25).cos()
}

/// Bulk chlorine decay constant at `t_c` °C, per day.
pub fn bulk_decay_per_day(t_c: f64) -> f64 {
    K_BULK_20 * K_THETA.powf(t_c - 20.0)
}

#[derive(Debug)]
struct StationState {
    turbidity_extra: f64,
    conductivity_offset: f64,
    /// cl2, turb, ph, cond, toc, temp wanders.
    wander: [Wander; 6],
    flow_mean: Option<f64>,
}

/// An incident's passage at one station.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    /// Index in [`QualityPlan::incidents`].
    pub incident: usize,
    pub station: usize,
    /// When the abnormal water starts to show (ramp onset).
    pub start: DateTime<Utc>,
    /// When it is back to normal.
    pub end: DateTime<Utc>,
    /// Share of the station's water from the origin.
    pub share: f64,
    pub ramp_s: i64,
}

#[derive(Debug)]
struct FaultRun {
    first: usize,
    last: usize,
    frozen: Option<f64>,
    spikes: Vec<(usize, f64)>,
}

/// The quality simulation riding along the hydraulic steps of a twin.
#[derive(Debug)]
pub struct QualitySim {
    plan: QualityPlan,
    age: WaterAge,
    step_s: usize,
    timezone: chrono_tz::Tz,
    ideal: bool,
    process: StdRng,
    noise: StdRng,
    /// The redundant analysers' own noise (so that adding them changes no other reading).
    noise_redundant: StdRng,
    /// Each redundant analyser's calibration offset (station × redundant channel).
    offsets: Vec<f64>,
    source_wander: [Wander; 6],
    history: Vec<Source>,
    stations: Vec<StationState>,
    scheduled: Vec<bool>,
    arrivals: Vec<Arrival>,
    runs: Vec<FaultRun>,
    last: Vec<Option<f64>>,
    /// True values of the last step, per sensor (station × [`QualityPlan::channel_of`]).
    truth: Vec<f64>,
}

impl QualitySim {
    /// Ready to take the twin's steps (`ideal`: no noise and no faults).
    pub fn new(plan: QualityPlan, engine: &Engine, cfg: &TwinConfig, ideal: bool) -> Self {
        let dt = cfg.step_s;
        let mut process = crate::model::rng(cfg.seed ^ 0x0c1a_55ed);
        let source_wander = [
            Wander::new(&mut process, 0.04, 6.0, dt),
            Wander::new(&mut process, 0.04, 12.0, dt),
            Wander::new(&mut process, 8.0, 24.0, dt),
            Wander::new(&mut process, 0.12, 24.0, dt),
            Wander::new(&mut process, 0.02, 6.0, dt),
            Wander::new(&mut process, 0.4, 48.0, dt),
        ];
        let stations = plan
            .stations
            .iter()
            .map(|_| StationState {
                turbidity_extra: process.random_range(0.05..0.2),
                conductivity_offset: process.random_range(-5.0..5.0),
                wander: [
                    Wander::new(&mut process, 0.01, 2.0, dt),
                    Wander::new(&mut process, 0.01, 1.0, dt),
                    Wander::new(&mut process, 0.01, 2.0, dt),
                    Wander::new(&mut process, 0.5, 4.0, dt),
                    Wander::new(&mut process, 0.02, 4.0, dt),
                    Wander::new(&mut process, 0.03, 3.0, dt),
                ],
                flow_mean: None,
            })
            .collect();
        let mut fault_rng = crate::model::rng(cfg.seed ^ 0x005b_1ce5);
        let index = |t: DateTime<Utc>| {
            let s = (t - cfg.start).num_seconds().max(0) as usize;
            s.div_ceil(dt)
        };
        let runs = plan
            .faults
            .iter()
            .map(|f| {
                let (first, last) = (index(f.fault.start), index(f.fault.end));
                let spikes = if f.fault.fault == FaultType::Spike {
                    let size = f
                        .fault
                        .magnitude
                        .unwrap_or_else(|| f.channel.map_or(1.0, |c| c.spike()));
                    faults::spike_steps(&mut fault_rng, first, last, dt)
                        .into_iter()
                        .map(|k| {
                            let sign = if fault_rng.random_range(0..2) == 0 {
                                -1.0
                            } else {
                                1.0
                            };
                            (k, sign * size)
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                FaultRun {
                    first,
                    last,
                    frozen: None,
                    spikes,
                }
            })
            .collect();
        let sensors = plan.stations.len() * plan.sensors_per_station();
        let mut noise_redundant = crate::model::rng(cfg.seed ^ 0x0005_e25b);
        let offsets = (0..plan.stations.len() * plan.redundant.len())
            .map(|i| {
                let c = plan.redundant[i % plan.redundant.len()];
                noise_redundant.random_range(-2.0..2.0) * c.resolution()
            })
            .collect();
        Self {
            scheduled: vec![false; plan.incidents.len()],
            plan,
            age: WaterAge::new(engine),
            step_s: dt,
            timezone: cfg.timezone,
            ideal,
            process,
            noise: crate::model::rng(cfg.seed ^ 0x0005_e25f),
            noise_redundant,
            offsets,
            source_wander,
            history: Vec::new(),
            stations,
            arrivals: Vec::new(),
            runs,
            last: vec![None; sensors],
            truth: vec![0.0; sensors],
        }
    }

    /// The plan.
    pub fn plan(&self) -> &QualityPlan {
        &self.plan
    }

    /// The water-age model.
    pub fn age(&self) -> &WaterAge {
        &self.age
    }

    /// Where and when the incidents started so far showed at the stations.
    pub fn arrivals(&self) -> &[Arrival] {
        &self.arrivals
    }

    /// The true value of a station's signal at the last step.
    pub fn true_value(&self, station: usize, c: Channel) -> f64 {
        self.truth[station * self.plan.sensors_per_station() + channel_index(c)]
    }

    /// Takes solved step `k` (at `t`): writes each sensor's reading into `out` (per station ×
    /// [`QualityPlan::channel_of`]; `None`: no row).
    pub fn step(
        &mut self,
        k: usize,
        t: DateTime<Utc>,
        engine: &Engine,
        out: &mut Vec<Option<f64>>,
    ) {
        let dt = self.step_s;
        self.age.update(engine, dt);
        self.push_source(t);
        self.schedule_incidents(t);
        let local_h = {
            let l = t.with_timezone(&self.timezone);
            l.hour() as f64 + l.minute() as f64 / 60.0
        };
        out.clear();
        let per = self.plan.sensors_per_station();
        let redundant = self.plan.redundant.len();
        for s in 0..self.plan.stations.len() {
            let values = self.station_values(s, k, t, local_h);
            for j in 0..per {
                let (c, second) = self.plan.channel_of(j);
                let truth = values[channel_index(c)];
                let sensor = s * per + j;
                self.truth[sensor] = truth;
                if self.ideal {
                    out.push(Some(truth));
                    continue;
                }
                let noisy = if second {
                    let offset = self.offsets[s * redundant + (j - Channel::ALL.len())];
                    truth + offset + c.noise_sd(truth) * gaussian(&mut self.noise_redundant)
                } else {
                    truth + c.noise_sd(truth) * gaussian(&mut self.noise)
                };
                let reading = self.apply_faults(s, (c, second), sensor, k, noisy);
                if let Some(v) = reading {
                    self.last[sensor] = Some(v);
                }
                out.push(reading);
            }
        }
    }

    fn push_source(&mut self, t: DateTime<Utc>) {
        let w: Vec<f64> = self
            .source_wander
            .iter_mut()
            .map(|w| w.next(&mut self.process))
            .collect();
        let doy = t.ordinal0() as f64 + t.hour() as f64 / 24.0;
        let seasonal = seasonal_temperature(doy);
        self.history.push(Source {
            dose: 1.1 + w[0],
            ph: 7.45 + w[1],
            conductivity: 320.0 + w[2],
            toc: (2.0 + w[3]).max(0.3),
            turbidity: (0.10 + w[4]).max(0.02),
            temperature: seasonal + w[5],
            seasonal,
        });
    }

    fn schedule_incidents(&mut self, t: DateTime<Utc>) {
        let step = TimeDelta::seconds(self.step_s as i64);
        for i in 0..self.plan.incidents.len() {
            let inc = &self.plan.incidents[i];
            if self.scheduled[i] || inc.incident.start >= t + step {
                continue;
            }
            self.scheduled[i] = true;
            let traced = self.age.trace(inc.node);
            let duration = inc.incident.end - inc.incident.start;
            let mut reached: Vec<Arrival> = Vec::new();
            for (s, st) in self.plan.stations.iter().enumerate() {
                let (share, travel_h) = traced[st.node];
                if share < incidents::MIN_SHARE {
                    continue;
                }
                let steps = (travel_h * 3600.0 / self.step_s as f64).round() as i64;
                let delay = steps * self.step_s as i64;
                let ramp = incidents::RAMP_S.max(3 * self.step_s as i64) + delay / 4;
                let start = inc.incident.start + TimeDelta::seconds(delay);
                reached.push(Arrival {
                    incident: i,
                    station: s,
                    start,
                    end: start + duration,
                    share,
                    ramp_s: ramp,
                });
            }
            reached.sort_by_key(|a| (a.start, a.station));
            self.arrivals.extend(reached);
        }
    }

    /// True values of a station (in [`Channel::ALL`] order).
    fn station_values(
        &mut self,
        s: usize,
        k: usize,
        t: DateTime<Utc>,
        local_h: f64,
    ) -> [f64; Channel::ALL.len()] {
        let node = self.plan.stations[s].node;
        let age_h = self.age.age_h(node);
        let age_d = age_h / 24.0;
        let lag = ((age_h * 3600.0 / self.step_s as f64).round() as usize).min(k);
        let src = self.history[k - lag];
        let st = &mut self.stations[s];
        let w: Vec<f64> = st
            .wander
            .iter_mut()
            .map(|w| w.next(&mut self.process))
            .collect();
        let ground = 15.0 + (src.seasonal - 15.0) / 2.0;
        let temperature = src.temperature
            + (ground - src.temperature) * (1.0 - (-age_h / 24.0).exp())
            + 0.15 * (std::f64::consts::TAU * (local_h - 10.0) / 24.0).sin()
            + w[5];
        let mut chlorine = src.dose * (-bulk_decay_per_day(temperature) * age_d).exp() + w[0];
        let mut ph = src.ph - 0.05 * age_d.min(4.0) + w[2];
        let mut conductivity = src.conductivity + st.conductivity_offset + w[3];
        let mut toc = src.toc * (1.0 - 0.04 * age_d.min(5.0)) + w[4];
        let q = self.age.inflow_m3h(node);
        let alpha = 1.0 - (-(self.step_s as f64) / 86_400.0).exp();
        let mean = st.flow_mean.map_or(q, |m| m + (q - m) * alpha);
        st.flow_mean = Some(mean);
        let stir = if mean > 1e-6 { q / mean - 1.0 } else { 0.0 };
        let mut turbidity = src.turbidity + st.turbidity_extra * (1.0 + 0.3 * stir.max(0.0)) + w[1];
        for a in self.arrivals.iter().filter(|a| a.station == s) {
            let x = a.share
                * incidents::strength(
                    (t - a.start).num_seconds(),
                    (a.end - a.start).num_seconds(),
                    a.ramp_s,
                );
            if x <= 0.0 {
                continue;
            }
            let e = self.plan.incidents[a.incident].incident.effect();
            chlorine *= (1.0 + e.chlorine * x).max(0.0);
            turbidity *= 1.0 + e.turbidity * x;
            toc += e.toc * x;
            conductivity += e.conductivity * x;
            ph += e.ph * x;
        }
        let mut v = [chlorine, turbidity, ph, conductivity, toc, temperature, q];
        for (x, c) in v.iter_mut().zip(Channel::ALL) {
            let (lo, hi) = c.bounds();
            *x = x.clamp(lo, hi);
        }
        v
    }

    /// The reading after faults (`None`: dropped), rounded to the resolution.
    /// `analyser`: the channel and whether it is the redundant analyser of it.
    fn apply_faults(
        &mut self,
        s: usize,
        analyser: (Channel, bool),
        sensor: usize,
        k: usize,
        mut v: f64,
    ) -> Option<f64> {
        let (c, second) = analyser;
        for (f, run) in self.plan.faults.iter().zip(self.runs.iter_mut()) {
            if f.station != s || k < run.first || k >= run.last {
                continue;
            }
            // A single-channel fault hits one analyser; maintenance the whole station.
            if f.channel.is_some_and(|fc| fc != c || f.redundant != second) {
                continue;
            }
            let sf = &f.fault;
            match sf.fault {
                FaultType::Flatline => {
                    let frozen = *run.frozen.get_or_insert(self.last[sensor].unwrap_or(v));
                    v = frozen;
                }
                FaultType::Spike => {
                    if let Some((_, size)) = run.spikes.iter().find(|(at, _)| *at == k) {
                        v = if v - size.abs() < 0.0 {
                            v + size.abs()
                        } else {
                            v + size
                        };
                    }
                }
                FaultType::Drift => {
                    let span = (run.last - run.first).max(1) as f64;
                    let m = sf.magnitude.unwrap_or(c.drift());
                    v += m * (k - run.first) as f64 / span;
                }
                FaultType::Dropout => return None,
                FaultType::Floor => v = sf.value.unwrap_or(c.floor()),
                FaultType::Maintenance => {
                    let late = 2 * (k - run.first) >= run.last - run.first;
                    if let Some(cal) = c.calibration(late) {
                        v = cal;
                    }
                }
            }
        }
        let (lo, hi) = c.bounds();
        let r = c.resolution();
        Some(((v / r).round() * r).clamp(lo, hi) + 0.0)
    }
}

fn channel_index(c: Channel) -> usize {
    Channel::ALL
        .iter()
        .position(|x| *x == c)
        .expect("every channel is listed")
}
