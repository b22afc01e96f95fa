//! `waterline sim --export DIR`: runs the twin and writes
//!
//! - `DIR/readings.csv`: `time,sensor,value` (CONTRACTS §2), RFC 3339 UTC, one row per sensor
//!   and step, in the units `network.toml` gives (m, m³/h, L/h for customer meters);
//! - `DIR/network.toml`: the areas and sensors (CONTRACTS §1);
//! - `DIR/truth.jsonl`: one line per injected leak that overlaps the simulated window: `kind`
//!   (`leak`), `start`, `end` (the repair, or the end of the window when the leak outlives it;
//!   `repaired` says which), `dma`, `pipe`, `node` (the emitter's junction), `diameter_mm`,
//!   `leak_type`, `peak`, and `mean_flow_m3h`, the simulated leak flow averaged over the steps
//!   in which the leak was open. An abrupt leak that opens inside the window also has
//!   `pressure_drop_m`, the largest drop its opening caused at a pressure sensor (that step
//!   solved with and without it, all else equal), `pressure_drop_sensor`, that sensor, and
//!   `pressure_noise_m`, the standard deviation of its instrument noise (0 with `--ideal`):
//!   whether the burst moved a monitored pressure by more than its noise.
//!
//! With water quality ([`super::quality`], on in `waterline sim`), `readings.csv` also has
//! the stations' signals (`<station>-cl2`, … rounded to their resolution, or 4 decimals with
//! `--ideal`), `network.toml` describes them (`station`, `role`, alarms, resolution), and
//! `truth.jsonl` goes on, after the leak lines, with one line per station that an incident
//! reaches (`{"kind":"quality_event","incident","type","station","sensors","node","start",
//! "end"}`: when the abnormal water shows at that station, from the onset of its ramp until it
//! is back to normal) and, unless `--ideal`, one per instrument fault
//! (`{"kind":"sensor_fault","fault","sensor","station","start","end"}`) or maintenance
//! (`{"kind":"maintenance","station","sensors","start","end"}`). Windows are cut at the end of
//! the simulated window; those wholly outside it are left out.
//!
//! With stations, `DIR/grab_samples.csv` holds the lab's routine grab samples at them
//! ([`super::lab`]): the true water, measured by the lab's methods, to check the analysers.
//!
//! Unless `--ideal`, pressure sensors have instrument faults too ([`super::pressure_faults`]):
//! their rows are changed (or left out, for a dropout) and `truth.jsonl` ends with one line per
//! fault, `{"kind":"sensor_fault","fault","sensor","dma","start","end"}` (no `station`).
//!
//! Progress goes to stderr (when asked) about every 5 % of the steps.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;

use super::engine::Engine;
use super::faults::FaultType;
use super::inp::sensor_tags;
use super::instruments::Instruments;
use super::lab::{self, GrabSampler};
use super::pressure_faults::PressureFaultConfig;
use super::quality::{QualityConfig, QualityPlan, QualitySim};
use super::scenario::{Scenario, split_faults};
use super::sensors::{self, SensorSpec, Source};
use super::{Twin, TwinConfig, TwinError};

/// Random quality incidents per simulated fortnight without a scenario (prorated, rounded
/// down: exports under 5 days have none).
pub const DEFAULT_INCIDENTS_PER_FORTNIGHT: usize = 3;
/// Random instrument faults per simulated fortnight without a scenario (prorated, rounded
/// down: exports under 3 days have none).
pub const DEFAULT_FAULTS_PER_FORTNIGHT: usize = 6;
/// Random pressure-sensor faults per simulated fortnight without a scenario (prorated, rounded
/// down: exports under 5 days have none).
pub const DEFAULT_PRESSURE_FAULTS_PER_FORTNIGHT: usize = 3;

/// What `waterline sim` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct SimRequest {
    /// `.inp` file; `None`: the built-in network.
    pub network: Option<PathBuf>,
    pub days: u32,
    pub seed: u64,
    /// No sensor noise.
    pub ideal: bool,
    pub scenario: Option<PathBuf>,
    /// First step; default: the scenario's, else 2026-01-05T00:00:00Z (a Monday).
    pub start: Option<DateTime<Utc>>,
    pub step_minutes: u32,
    pub export: PathBuf,
    /// Print progress to stderr.
    pub progress: bool,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSummary {
    pub steps: usize,
    pub sensors: usize,
    pub rows: usize,
    pub leaks: usize,
    pub dmas: usize,
    /// Water-quality stations.
    pub stations: usize,
    /// `quality_event` lines of the truth (incident × station reached).
    pub quality_events: usize,
    /// `sensor_fault` and `maintenance` lines of the truth.
    pub faults: usize,
    /// Lab results in `grab_samples.csv` ([`super::lab`]).
    pub grab_samples: usize,
    /// Large night users (junction id, m³/h from 23:00 to 05:00 local): legitimate night use
    /// that `truth.jsonl` does not list.
    pub night_users: Vec<(String, f64)>,
    pub seconds: f64,
}

fn io(what: &Path, e: std::io::Error) -> TwinError {
    TwinError::Io(format!("{}: {e}", what.display()))
}

pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Builds the twin a request describes: network, scenario, random leaks, start and steps.
pub fn build(req: &SimRequest) -> Result<(Twin, super::inp::SensorTags), TwinError> {
    if req.days == 0 {
        return Err(TwinError::Request("--days must be at least 1".into()));
    }
    if req.step_minutes == 0 || 1440 % req.step_minutes != 0 {
        return Err(TwinError::Request(format!(
            "--step-minutes {} does not divide a day",
            req.step_minutes
        )));
    }
    let (engine, text) = match &req.network {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| io(p, e))?;
            (Engine::from_inp_file(p)?, text)
        }
        None => (
            Engine::from_inp_text(super::BUILTIN_INP, "built-in network")?,
            super::BUILTIN_INP.to_owned(),
        ),
    };
    let scenario = match &req.scenario {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| io(p, e))?;
            Scenario::parse(&text, &p.display().to_string())?
        }
        None => Scenario {
            random_leaks: (req.days as usize).div_ceil(7),
            random_quality_incidents: req.days as usize * DEFAULT_INCIDENTS_PER_FORTNIGHT / 14,
            random_sensor_faults: req.days as usize * DEFAULT_FAULTS_PER_FORTNIGHT / 14,
            random_pressure_faults: req.days as usize * DEFAULT_PRESSURE_FAULTS_PER_FORTNIGHT / 14,
            ..Scenario::default()
        },
    };
    let (quality_faults, pressure_faults) = split_faults(scenario.sensor_faults);
    let quality = QualityConfig {
        stations: scenario.stations,
        incidents: scenario.quality_incidents,
        random_incidents: scenario.random_quality_incidents,
        faults: quality_faults,
        random_faults: scenario.random_sensor_faults,
        redundant: scenario.redundant_analysers,
    };
    let pressure_faults = PressureFaultConfig {
        listed: pressure_faults,
        random: scenario.random_pressure_faults,
    };
    let start = req
        .start
        .or(scenario.start)
        .unwrap_or_else(|| "2026-01-05T00:00:00Z".parse().expect("valid time"));
    let step_s = req.step_minutes as usize * 60;
    let config = TwinConfig {
        start,
        steps: req.days as usize * 86_400 / step_s,
        step_s,
        timezone: scenario.timezone.unwrap_or(Tz::UTC),
        seed: req.seed,
        demand_variation: true,
        leaks: scenario.leaks,
        random_leaks: scenario.random_leaks,
        setpoints: scenario.setpoints,
    };
    let twin = Twin::new(engine, config)?
        .with_quality(&quality)?
        .with_pressure_faults(pressure_faults)
        .with_holidays(scenario.holidays)
        .with_device_misbehaviour(scenario.devices.unwrap_or_default());
    Ok((twin, sensor_tags(&text)))
}

/// Builds the twin and writes the three files.
pub fn run(req: &SimRequest) -> Result<ExportSummary, TwinError> {
    let (mut twin, tags) = build(req)?;
    export(&mut twin, &tags, &req.export, req.ideal, req.progress)
}

/// Runs `twin` and writes the three files into `dir` (created if missing).
pub fn export(
    twin: &mut Twin,
    tags: &super::inp::SensorTags,
    dir: &Path,
    ideal: bool,
    progress: bool,
) -> Result<ExportSummary, TwinError> {
    let started = Instant::now();
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut instruments = Instruments::new(twin, tags, ideal)?;
    let plan = twin.quality().cloned().unwrap_or_default();
    let toml_path = dir.join("network.toml");
    let mut toml = network_toml(twin, &instruments.specs, &instruments.points);
    toml.push_str(&quality_toml(&plan));
    std::fs::write(&toml_path, toml).map_err(|e| io(&toml_path, e))?;
    let ids: Vec<String> = instruments.ids().map(str::to_owned).collect();

    let csv_path = dir.join("readings.csv");
    let file = File::create(&csv_path).map_err(|e| io(&csv_path, e))?;
    let mut csv = BufWriter::with_capacity(1 << 20, file);
    csv.write_all(b"time,sensor,value\n")
        .map_err(|e| io(&csv_path, e))?;
    let steps = twin.config().steps;
    let mut flows = LeakFlows::new(twin.leaks().len());
    let mut rows = 0usize;
    let mut line = String::with_capacity(64);
    let mut read = Vec::with_capacity(ids.len());
    let report_every = (steps / 20).max(1);
    let mut lab = instruments.quality().map(|q| {
        let tc = twin.config();
        GrabSampler::new(q.plan().stations.len(), tc.timezone, tc.seed, ideal)
    });
    twin.run(|step| {
        let time = rfc3339(step.time);
        instruments.read(&step, &mut read);
        if let (Some(lab), Some(q)) = (lab.as_mut(), instruments.quality()) {
            lab.step(step.time, q);
        }
        for m in &read {
            line.clear();
            let _ = writeln!(line, "{time},{},{:.*}", ids[m.sensor], m.decimals, m.value);
            csv.write_all(line.as_bytes())
                .map_err(|e| io(&csv_path, e))?;
        }
        rows += read.len();
        flows.add(&step, &instruments.specs);
        if progress && (step.index + 1) % report_every == 0 {
            eprintln!(
                "sim: {} / {} steps ({}%), {}, {:.1} s",
                step.index + 1,
                steps,
                (step.index + 1) * 100 / steps,
                time,
                started.elapsed().as_secs_f64()
            );
        }
        Ok(())
    })?;
    csv.flush().map_err(|e| io(&csv_path, e))?;
    let grab_samples = match &lab {
        Some(lab) => {
            let path = dir.join("grab_samples.csv");
            std::fs::write(&path, format!("{}{}", lab::HEADER, lab.rows))
                .map_err(|e| io(&path, e))?;
            lab.count
        }
        None => 0,
    };

    let truth_path = dir.join("truth.jsonl");
    let Truth {
        text: truth,
        leaks,
        quality_events,
        faults,
    } = truth(twin, &instruments, &flows, twin.time_of(steps));
    std::fs::write(&truth_path, truth).map_err(|e| io(&truth_path, e))?;
    Ok(ExportSummary {
        steps,
        sensors: instruments.len(),
        rows,
        leaks,
        dmas: twin.zones().len(),
        stations: instruments.quality().map_or(0, |q| q.plan().stations.len()),
        quality_events,
        faults,
        grab_samples,
        night_users: twin
            .night_users()
            .iter()
            .map(|u| (twin.engine().nodes()[u.node].id.clone(), u.rate_m3h))
            .collect(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Each leak's flow summed over the steps it was open, for the truth's mean flow, and the
/// largest drop an abrupt leak's opening caused at a pressure sensor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeakFlows {
    sum: Vec<f64>,
    open: Vec<usize>,
    /// Per leak: the drop, m, and the index of the sensor (into the specs) where it was largest.
    onset_drop: Vec<Option<(f64, usize)>>,
}

impl LeakFlows {
    pub fn new(leaks: usize) -> Self {
        Self {
            sum: vec![0.0; leaks],
            open: vec![0; leaks],
            onset_drop: vec![None; leaks],
        }
    }

    /// Adds a step: its leak flows, and for the abrupt leaks that opened, the largest
    /// pressure drop among the pressure sensors of `specs`.
    pub fn add(&mut self, step: &super::Step<'_>, specs: &[SensorSpec]) {
        for (i, q) in step.leak_flows_m3h.iter().enumerate() {
            if *q > 0.0 {
                self.sum[i] += q;
                self.open[i] += 1;
            }
        }
        for onset in step.onsets {
            let largest = specs
                .iter()
                .enumerate()
                .filter_map(|(s, spec)| match spec.source {
                    Source::Pressure(node) => Some((onset.pressure_drop_m[node], s)),
                    _ => None,
                })
                .max_by(|a, b| a.0.total_cmp(&b.0));
            self.onset_drop[onset.leak] = largest;
        }
    }

    fn mean(&self, i: usize) -> f64 {
        match self.open.get(i) {
            Some(&n) if n > 0 => self.sum[i] / n as f64,
            _ => 0.0,
        }
    }
}

/// The truth of a run, as `truth.jsonl` lines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Truth {
    pub text: String,
    pub leaks: usize,
    /// `quality_event` lines.
    pub quality_events: usize,
    /// `sensor_fault` and `maintenance` lines.
    pub faults: usize,
}

/// The truth of `twin`'s run up to `window_end` (see the module docs): leaks with their mean
/// flow, then quality incidents per station reached, instrument faults and maintenance
/// (unless ideal), then the pressure-sensor faults. Shared by the export and the field
/// devices' run.
pub fn truth(
    twin: &Twin,
    instruments: &Instruments,
    flows: &LeakFlows,
    window_end: DateTime<Utc>,
) -> Truth {
    let mut out = Truth::default();
    let specs = &instruments.specs;
    for (i, p) in twin.leaks().iter().enumerate() {
        let l = &p.leak;
        if l.start >= window_end || l.end.is_some_and(|e| e <= twin.config().start) {
            continue;
        }
        out.leaks += 1;
        let end = l.end.map_or(window_end, |e| e.min(window_end));
        let mut obj = serde_json::json!({
            "kind": "leak",
            "start": rfc3339(l.start),
            "end": rfc3339(end),
            "repaired": l.end.is_some_and(|e| e <= window_end),
            "dma": p.zone.map(|z| twin.zones()[z].id.clone()),
            "pipe": l.pipe,
            "node": twin.engine().nodes()[p.node].id,
            "diameter_mm": l.diameter_mm,
            "leak_type": l.leak_type.as_str(),
            "peak": rfc3339(l.peak),
            "mean_flow_m3h": (flows.mean(i) * 1000.0).round() / 1000.0,
        });
        if let Some((drop_m, sensor)) = flows.onset_drop.get(i).copied().flatten() {
            let noise = if instruments.ideal() {
                0.0
            } else {
                specs[sensor].noise_sd(0.0)
            };
            obj["pressure_drop_m"] = serde_json::json!((drop_m * 1000.0).round() / 1000.0);
            obj["pressure_drop_sensor"] = serde_json::json!(specs[sensor].id);
            obj["pressure_noise_m"] = serde_json::json!(noise);
        }
        out.text.push_str(&obj.to_string());
        out.text.push('\n');
    }
    if let Some(q) = instruments.quality() {
        let start = twin.config().start;
        let ideal = instruments.ideal();
        (out.quality_events, out.faults) =
            quality_truth(q, twin, start, window_end, ideal, &mut out.text);
    }
    for line in instruments.pressure_faults().truth() {
        out.text.push_str(&line.to_string());
        out.text.push('\n');
        out.faults += 1;
    }
    out
}

/// Appends the truth lines of the quality incidents and (unless `ideal`) the faults; returns
/// how many of each.
fn quality_truth(
    q: &QualitySim,
    twin: &Twin,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    ideal: bool,
    out: &mut String,
) -> (usize, usize) {
    let plan = q.plan();
    let nodes = twin.engine().nodes();
    let mut events = 0;
    for a in q.arrivals() {
        if a.start >= end || a.end <= start {
            continue;
        }
        let inc = &plan.incidents[a.incident];
        let st = &plan.stations[a.station];
        let sensors: Vec<String> = inc
            .incident
            .channels()
            .iter()
            .map(|c| format!("{}-{c}", st.id))
            .collect();
        let obj = serde_json::json!({
            "kind": "quality_event",
            "incident": inc.id,
            "type": inc.incident.incident_type.as_str(),
            "station": st.id,
            "sensors": sensors,
            "node": nodes[inc.node].id,
            "start": rfc3339(a.start),
            "end": rfc3339(a.end.min(end)),
        });
        out.push_str(&obj.to_string());
        out.push('\n');
        events += 1;
    }
    let mut faults = 0;
    for f in plan.faults.iter().filter(|_| !ideal) {
        let sf = &f.fault;
        if sf.start >= end || sf.end <= start {
            continue;
        }
        let st = &plan.stations[f.station];
        let (from, to) = (rfc3339(sf.start.max(start)), rfc3339(sf.end.min(end)));
        let obj = match (sf.fault, f.channel) {
            (FaultType::Maintenance, _) | (_, None) => {
                let sensors: Vec<String> = (0..plan.sensors_per_station())
                    .map(|j| plan.channel_of(j))
                    .filter(|(c, _)| c.calibration(false).is_some())
                    .map(|(c, second)| {
                        if second {
                            st.redundant_id(c)
                        } else {
                            st.sensor_id(c)
                        }
                    })
                    .collect();
                serde_json::json!({
                    "kind": "maintenance",
                    "station": st.id,
                    "sensors": sensors,
                    "start": from,
                    "end": to,
                })
            }
            (fault, Some(c)) => serde_json::json!({
                "kind": "sensor_fault",
                "fault": fault.as_str(),
                "sensor": if f.redundant { st.redundant_id(c) } else { st.sensor_id(c) },
                "station": st.id,
                "start": from,
                "end": to,
            }),
        };
        out.push_str(&obj.to_string());
        out.push('\n');
        faults += 1;
    }
    (events, faults)
}

/// The `[[sensor]]` stanzas of the quality stations' signals (a redundant analyser names its
/// primary with `redundant_of`).
pub fn quality_toml(plan: &QualityPlan) -> String {
    let mut out = String::new();
    for (s, st) in plan.stations.iter().enumerate() {
        for (j, id) in plan.sensor_ids(s).into_iter().enumerate() {
            let (c, second) = plan.channel_of(j);
            let _ = writeln!(out, "[[sensor]]");
            let _ = writeln!(out, "id = {}", quoted(&id));
            let _ = writeln!(out, "kind = {}", quoted(c.kind()));
            let _ = writeln!(out, "unit = {}", quoted(c.unit()));
            if let Some(d) = &st.dma {
                let _ = writeln!(out, "dma = {}", quoted(d));
            }
            let _ = writeln!(out, "station = {}", quoted(&st.id));
            let _ = writeln!(out, "role = {}", quoted(c.role()));
            let (lo, hi) = c.alarms();
            if let Some(lo) = lo {
                let _ = writeln!(out, "alarm_low = {lo:?}");
            }
            if let Some(hi) = hi {
                let _ = writeln!(out, "alarm_high = {hi:?}");
            }
            let _ = writeln!(out, "resolution = {:?}", c.resolution());
            if second {
                let _ = writeln!(out, "redundant_of = {}", quoted(&st.sensor_id(c)));
            }
            out.push('\n');
        }
    }
    out
}

fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn list(ids: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = ids.map(|s| quoted(&s)).collect();
    format!("[{}]", v.join(", "))
}

/// Service connections estimated from mean demand: 1 m³ per connection per day.
pub fn connections_estimate(mean_demand_m3h: f64) -> u32 {
    (mean_demand_m3h * 24.0).round().max(0.0) as u32
}

/// The network description of the export.
pub fn network_toml(twin: &Twin, specs: &[SensorSpec], points: &[sensors::ZonePoints]) -> String {
    let mut out = String::new();
    let cfg = twin.config();
    let _ = writeln!(
        out,
        "# Written by `waterline sim` (seed {}, {} steps of {} min from {}).",
        cfg.seed,
        cfg.steps,
        cfg.step_s / 60,
        rfc3339(cfg.start)
    );
    let _ = writeln!(
        out,
        "# DMAs derived from the topology; connections estimated at 1 m3/day each.\n"
    );
    let _ = writeln!(out, "timezone = {}\n", quoted(cfg.timezone.name()));
    let sensor_of_link = |link: usize| {
        specs
            .iter()
            .find(|s| s.source == sensors::Source::Flow(link))
            .map(|s| s.id.clone())
            .expect("every balance meter is a sensor")
    };
    for (z, p) in twin.zones().iter().zip(points) {
        let _ = writeln!(out, "[[dma]]");
        let _ = writeln!(out, "id = {}", quoted(&z.id));
        let _ = writeln!(out, "name = {}", quoted(&format!("Area {}", z.id)));
        let _ = writeln!(
            out,
            "inlets = {}",
            list(z.inlets.iter().map(|m| sensor_of_link(m.link)))
        );
        let _ = writeln!(
            out,
            "outlets = {}",
            list(z.outlets.iter().map(|m| sensor_of_link(m.link)))
        );
        if !p.customer_meters.is_empty() {
            let _ = writeln!(
                out,
                "customer_meters = {}",
                list(p.customer_meters.iter().cloned())
            );
        }
        let _ = writeln!(out, "mains_km = {:.2}", z.mains_km);
        let _ = writeln!(
            out,
            "connections = {}",
            connections_estimate(z.mean_demand_m3h)
        );
        if let Some(a) = &p.azp {
            let _ = writeln!(out, "azp_sensor = {}", quoted(a));
        }
        if let Some(c) = &p.critical {
            let _ = writeln!(out, "critical_sensor = {}", quoted(c));
        }
        out.push('\n');
    }
    // A PRV whose outlet is measured and whose area has a critical point can be managed; its
    // set point is the live twin's controller point.
    for l in twin.engine().links() {
        let outlet = specs
            .iter()
            .find(|s| s.source == sensors::Source::Pressure(l.to));
        let zone = twin.zone_of()[l.to];
        let (true, Some(outlet), Some(z)) = (l.prv, outlet, zone) else {
            continue;
        };
        if points[z].critical.is_none() {
            continue;
        }
        let _ = writeln!(out, "[[prv]]");
        let _ = writeln!(out, "id = {}", quoted(&l.id));
        let _ = writeln!(out, "dma = {}", quoted(&twin.zones()[z].id));
        let _ = writeln!(out, "outlet_sensor = {}", quoted(&outlet.id));
        let _ = writeln!(
            out,
            "setpoint_sensor = {}",
            quoted(&super::live::setpoint_sensor(&l.id))
        );
        // The controller's writable range (examples/modbus/dma-inlet-rtu.toml).
        let _ = writeln!(out, "min_setting_m = 10.0\nmax_setting_m = 60.0\n");
    }
    for s in specs {
        let _ = writeln!(out, "[[sensor]]");
        let _ = writeln!(out, "id = {}", quoted(&s.id));
        let _ = writeln!(out, "kind = {}", quoted(s.kind().as_str()));
        let _ = writeln!(out, "unit = {}", quoted(s.unit()));
        if let Some(d) = &s.dma {
            let _ = writeln!(out, "dma = {}", quoted(d));
        }
        let _ = writeln!(out, "resolution = {:?}", s.resolution());
        out.push('\n');
    }
    out
}
