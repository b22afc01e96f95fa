//! Water-quality analytics per monitoring station: instrument faults, set-point crossings and
//! CANARY-style events, all causal (CONTRACTS §3) and in one pass over each station's data.
//!
//! - [`signals`]: each signal's role, valid range, resolution, floors and set-point tiers
//!   (GB 5749-2022 defaults, `network.toml` overrides).
//! - [`station`]: a station's signals aligned on its nominal step (gaps stay gaps).
//! - [`faults`]: `sensor_fault` — impossible and floor values, flatlines, spikes, dropouts;
//!   faulted values never reach the other two.
//! - [`drift`]: `sensor_fault` for drift, against a redundant analyser (`redundant_of`) or lab
//!   grab samples; a redundant analyser stands in for a failed or drifting primary.
//! - [`lab`]: lab grab samples as analyser checks (from the store or a CSV file).
//! - [`thresholds`]: `quality_threshold` — tiered set-point crossings.
//! - [`detect`]: `quality_event` — linear prediction and multivariate nearest neighbour,
//!   binomial event discriminator, timeout.
//! - [`score`]: row-wise precision / recall / F1 (GECCO style) and fault scoring against
//!   ground truth or labels.

pub mod detect;
pub mod drift;
pub mod faults;
pub mod lab;
pub mod score;
pub mod signals;
pub mod station;
pub mod thresholds;

use chrono::{DateTime, Utc};
use waterline_core::{
    DeclaredWindow, Event, EventKind, Network, Severity, StationId, WindowKind, WindowSubject,
};

pub use detect::{Algorithm, DetectConfig};
pub use faults::FaultConfig;
pub use lab::{LabFile, LabSample, read_lab_samples};

use crate::readings::Readings;
use crate::timefmt::EpochMillis;
use faults::{FaultEpisode, FaultTracker};
use station::StationGrid;
use thresholds::ThresholdTracker;

/// Tuning of the quality analysis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityConfig {
    pub detect: DetectConfig,
    pub faults: FaultConfig,
    /// Consecutive values beyond a set point that raise a `quality_threshold`.
    pub threshold_persist: usize,
}

impl Default for QualityConfig {
    fn default() -> Self {
        Self {
            detect: DetectConfig::default(),
            faults: FaultConfig::default(),
            threshold_persist: 2,
        }
    }
}

/// What one station's analysis covered (the rows a row-wise score counts).
#[derive(Debug, Clone)]
pub struct StationSummary {
    pub station: StationId,
    pub step_ms: i64,
    /// The station's grid steps.
    pub times: Vec<EpochMillis>,
}

/// The result of [`analyze`].
#[derive(Debug, Clone, Default)]
pub struct QualityReport {
    /// `quality_event`, `quality_threshold` and `sensor_fault` events by detection time.
    pub events: Vec<Event>,
    pub stations: Vec<StationSummary>,
}

pub(crate) fn utc(ms: EpochMillis) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

/// Runs faults, thresholds and event detection over every station of the network.
pub fn analyze(readings: &Readings, network: &Network, cfg: &QualityConfig) -> QualityReport {
    analyze_with(readings, network, cfg, &[], &[])
}

/// [`analyze`] with what people declared and measured:
///
/// - declared windows: inside a maintenance window of a station (or of one of its sensors)
///   its readings (or that sensor's) reach neither the event detector nor the set-point
///   checks, and no instrument fault starting inside is reported: the lab said the station
///   was being serviced;
/// - lab grab samples: each is compared with the station's analysers of its parameter
///   ([`drift`]).
pub fn analyze_with(
    readings: &Readings,
    network: &Network,
    cfg: &QualityConfig,
    windows: &[DeclaredWindow],
    samples: &[LabSample],
) -> QualityReport {
    let mut report = QualityReport::default();
    for (station, signals) in station::stations(network) {
        let grid = StationGrid::build(readings, station, signals);
        let serviced: Vec<Vec<(EpochMillis, EpochMillis)>> = grid
            .signals
            .iter()
            .map(|spec| maintenance_of(windows, &grid.station, &spec.sensor))
            .collect();
        let lab: Vec<&LabSample> = samples
            .iter()
            .filter(|s| s.station == grid.station)
            .collect();
        analyze_station(&grid, cfg, &serviced, &lab, &mut report);
    }
    report
        .events
        .sort_by(|a, b| (a.detected_at, a.kind.as_str()).cmp(&(b.detected_at, b.kind.as_str())));
    report
}

/// The maintenance spans (UTC ms) declared for `sensor` or its whole `station`.
fn maintenance_of(
    windows: &[DeclaredWindow],
    station: &StationId,
    sensor: &waterline_core::SensorId,
) -> Vec<(EpochMillis, EpochMillis)> {
    windows
        .iter()
        .filter(|w| w.kind == WindowKind::Maintenance)
        .filter(|w| match &w.subject {
            WindowSubject::Station(s) => s == station,
            WindowSubject::Sensor(s) => s == sensor,
            WindowSubject::Dma(_) => false,
        })
        .map(|w| (w.from.timestamp_millis(), w.to.timestamp_millis()))
        .collect()
}

fn within(spans: &[(EpochMillis, EpochMillis)], t: EpochMillis) -> bool {
    spans.iter().any(|&(a, b)| a <= t && t < b)
}

/// One station's pass; `serviced[i]` are signal `i`'s declared maintenance spans, `lab` the
/// station's grab samples.
fn analyze_station(
    grid: &StationGrid,
    cfg: &QualityConfig,
    serviced: &[Vec<(EpochMillis, EpochMillis)>],
    lab: &[&LabSample],
    report: &mut QualityReport,
) {
    let mut trackers: Vec<FaultTracker> = grid
        .signals
        .iter()
        .map(|s| {
            let faults = faults::FaultConfig {
                spikes: cfg.faults.spikes && !s.steps_with_operations(),
                ..cfg.faults
            };
            FaultTracker::new(s.clone(), faults, grid.step_ms)
        })
        .collect();
    let mut thresholds: Vec<Option<ThresholdTracker>> = grid
        .signals
        .iter()
        .map(|s| {
            (s.is_quality() && s.redundant_of.is_none())
                .then(|| ThresholdTracker::new(s, cfg.threshold_persist))
        })
        .collect();
    // A redundant analyser is no signal of its own for the detectors: it is compared with its
    // primary and stands in for it. `channels[c]` is the signal behind detector channel `c`.
    let mut pairs = redundant_pairs(&grid.signals);
    let channels: Vec<usize> = (0..grid.signals.len())
        .filter(|&i| grid.signals[i].redundant_of.is_none())
        .collect();
    let channel_specs: Vec<signals::SignalSpec> =
        channels.iter().map(|&i| grid.signals[i].clone()).collect();
    let mut detector = detect::StationDetector::new(&channel_specs, grid.step_ms, cfg.detect);
    let mut values: Vec<Option<f64>> = vec![None; grid.signals.len()];
    let mut channel_values: Vec<Option<f64>> = vec![None; channels.len()];
    // Each analyser against the lab's grab samples of its parameter.
    let mut checkers: Vec<(usize, drift::SampleChecker)> = grid
        .signals
        .iter()
        .enumerate()
        .filter_map(|(i, spec)| {
            let mine: Vec<&LabSample> = lab
                .iter()
                .copied()
                .filter(|s| s.kind == spec.kind)
                .collect();
            (!mine.is_empty()).then(|| {
                (
                    i,
                    drift::SampleChecker::new(spec.clone(), grid.step_ms, &mine),
                )
            })
        })
        .collect();
    // Several signals at floor, impossible or frozen values at once: maintenance (or a station
    // problem). The station's data is set aside while it lasts.
    let mut maintenance: Option<(EpochMillis, EpochMillis, usize)> = None;
    let mut maintenances: Vec<(EpochMillis, EpochMillis, Option<EpochMillis>, usize)> = Vec::new();
    for (k, &t) in grid.times.iter().enumerate() {
        for (i, tracker) in trackers.iter_mut().enumerate() {
            let raw = grid.values[i][k];
            let verdict = tracker.step(t, raw.is_finite().then_some(raw));
            if verdict.retract_previous
                && let Some(c) = channels.iter().position(|&g| g == i)
            {
                detector.retract(c);
            }
            values[i] = verdict.value.filter(|_| !within(&serviced[i], t));
        }
        let suspect: Vec<usize> = (0..trackers.len())
            .filter(|&i| trackers[i].value_faulted())
            .collect();
        let declared = suspect.iter().all(|&i| within(&serviced[i], t));
        if suspect.len() >= 2 && !declared {
            if maintenance.is_none() {
                maintenance = Some((t, t, suspect[0]));
            }
            values.iter_mut().for_each(|v| *v = None);
        } else if let Some((start, detected, first)) = maintenance.take() {
            maintenances.push((start, detected, Some(t), first));
        }
        for (i, checker) in &mut checkers {
            checker.step(t, values[*i]);
            if checker.drifting() {
                values[*i] = None; // the lab says it drifts
            }
        }
        for pair in &mut pairs {
            let (p, r) = (values[pair.primary], values[pair.redundant]);
            pair.step(t, p, r);
            values[pair.primary] = pair.stand_in(p, r);
            values[pair.redundant] = None;
        }
        for (i, th) in thresholds.iter_mut().enumerate() {
            if let Some(th) = th {
                match values[i] {
                    Some(x) => th.step(t, x),
                    None => th.interrupt(),
                }
            }
        }
        for (slot, &i) in channel_values.iter_mut().zip(&channels) {
            *slot = values[i];
        }
        detector.step(t, &channel_values);
    }
    if let Some((start, detected, first)) = maintenance {
        maintenances.push((start, detected, None, first));
    }
    detector.finish();
    for t in &mut trackers {
        t.finish();
    }
    let mut drifts: Vec<Event> = Vec::new();
    for p in &mut pairs {
        p.finish();
        drifts.extend(p.episodes.iter().map(|e| pair_drift_event(grid, p, e)));
    }
    for (i, checker) in &mut checkers {
        checker.finish();
        let spec = &grid.signals[*i];
        for d in &checker.episodes {
            let sample = sample_drift_event(grid, spec, d);
            // The same drift told by the redundant pair: one event, which the sample confirms
            // (and attributes, when the pair could not tell which analyser drifts).
            let same = drifts.iter_mut().find(|e| {
                e.sensors.contains(&spec.sensor)
                    && (e.sensor.as_ref() == Some(&spec.sensor) || e.confidence == Some(0.5))
                    && overlaps(e, &sample)
            });
            match same {
                Some(e) => {
                    e.sensor = Some(spec.sensor.clone());
                    e.confidence = Some(0.9);
                    let text = sample.message.unwrap_or_default();
                    let confirmed = text.strip_prefix("drift: ").unwrap_or(&text);
                    e.message = Some(format!(
                        "{}; confirmed by the lab: {confirmed}",
                        e.message.take().unwrap_or_default()
                    ));
                }
                None => drifts.push(sample),
            }
        }
    }
    report.events.extend(drifts);

    let station = &grid.station;
    for (i, th) in thresholds.iter_mut().enumerate() {
        let Some(th) = th else { continue };
        th.finish();
        let spec = &grid.signals[i];
        let unit = spec.kind.canonical_unit();
        for c in &th.crossings {
            let sp = c.set_point;
            let side = match sp.side {
                signals::Side::Low => "below",
                signals::Side::High => "above",
            };
            let mut e = Event::new(
                EventKind::QualityThreshold,
                utc(c.start),
                utc(c.detected_at),
            );
            e.end = c.end.map(utc);
            e.sensor = Some(spec.sensor.clone());
            e.station = Some(station.clone());
            e.severity = Some(sp.tier.severity());
            e.value = Some(c.value);
            e.confidence = Some(1.0);
            e.message = Some(format!(
                "{}: {} {} {side} the {} set point {} {unit} (worst {})",
                sp.tier.as_str(),
                spec.kind,
                c.value,
                sp.tier.as_str(),
                sp.value,
                c.worst
            ));
            report.events.push(e);
        }
    }

    let episodes: Vec<(usize, &FaultEpisode)> = trackers
        .iter()
        .enumerate()
        .flat_map(|(i, t)| t.episodes.iter().map(move |e| (i, e)))
        .collect();
    for &(i, ep) in &episodes {
        if within(&serviced[i], ep.start) {
            continue; // declared maintenance, not a fault
        }
        let spec = &grid.signals[i];
        // Several signals of one station failing at once: maintenance or a station problem.
        let together = episodes
            .iter()
            .filter(|(j, o)| {
                *j != i && o.start <= ep.detected_at && o.end.is_none_or(|end| end > ep.start)
            })
            .count();
        let mut e = ep.event(spec);
        e.station = Some(station.clone());
        let mut message = e.message.take().unwrap_or_default();
        if together > 0 {
            message.push_str(&format!(
                "; {together} other signal(s) of station {station} faulted at the same time \
                 (maintenance or station outage?)"
            ));
        }
        e.message = Some(message);
        report.events.push(e);
    }

    let quality_sensors: Vec<waterline_core::SensorId> = grid
        .signals
        .iter()
        .filter(|s| s.is_quality())
        .map(|s| s.sensor.clone())
        .collect();
    for (start, detected, end, first) in maintenances {
        let mut e = Event::new(EventKind::SensorFault, utc(start), utc(detected));
        e.end = end.map(utc);
        e.sensor = Some(grid.signals[first].sensor.clone());
        e.sensors = quality_sensors.clone();
        e.station = Some(station.clone());
        e.severity = Some(Severity::Warning);
        e.confidence = Some(0.8);
        e.message = Some(format!(
            "maintenance suspected: several signals of station {station} at floor, impossible \
             or frozen values at once; its data is set aside until they recover"
        ));
        report.events.push(e);
    }

    for ev in &detector.events {
        let names = |idx: &[usize]| -> Vec<String> {
            idx.iter()
                .map(|&c| grid.signals[channels[c]].sensor.to_string())
                .collect()
        };
        let mut e = Event::new(EventKind::QualityEvent, utc(ev.start), utc(ev.detected_at));
        e.end = ev.end.map(utc);
        e.station = Some(station.clone());
        e.sensors = ev
            .signals
            .iter()
            .map(|&c| grid.signals[channels[c]].sensor.clone())
            .collect();
        let explained = !ev.context.is_empty();
        let multi = ev.signals.len() >= 2;
        e.severity = Some(match (explained, multi) {
            (true, _) => Severity::Info,
            (false, true) => Severity::Alarm,
            (false, false) => Severity::Warning,
        });
        let confidence =
            ev.probability * if multi { 1.0 } else { 0.7 } * if explained { 0.5 } else { 1.0 };
        e.confidence = Some((confidence * 1000.0).round() / 1000.0);
        let mut message = format!(
            "abnormal water at station {station}: {}",
            names(&ev.signals).join(", ")
        );
        if explained {
            message.push_str(&format!(
                "; coincides with a change in {} (context)",
                names(&ev.context).join(", ")
            ));
        }
        if ev.absorbed {
            message.push_str("; lasted past the timeout and became the new baseline");
        }
        e.message = Some(message);
        report.events.push(e);
    }

    report.stations.push(StationSummary {
        station: station.clone(),
        step_ms: grid.step_ms,
        times: grid.times.clone(),
    });
}

/// A tracker for each redundant analyser whose primary is among the station's signals.
fn redundant_pairs(signals: &[signals::SignalSpec]) -> Vec<drift::PairTracker> {
    signals
        .iter()
        .enumerate()
        .filter_map(|(j, s)| {
            let primary = s.redundant_of.as_ref()?;
            let i = signals.iter().position(|p| &p.sensor == primary)?;
            Some(drift::PairTracker::new(i, j, signals[i].clone()))
        })
        .collect()
}

/// The `sensor_fault` of a redundant pair's drift episode: on the drifting analyser (the
/// primary when that cannot be told), listing both.
fn pair_drift_event(grid: &StationGrid, pair: &drift::PairTracker, d: &drift::PairDrift) -> Event {
    let primary = &grid.signals[pair.primary];
    let redundant = &grid.signals[pair.redundant];
    let unit = primary.kind.canonical_unit();
    let mut e = Event::new(EventKind::SensorFault, utc(d.start), utc(d.detected_at));
    e.end = d.end.map(utc);
    e.station = Some(grid.station.clone());
    e.sensors = vec![primary.sensor.clone(), redundant.sensor.clone()];
    e.severity = Some(Severity::Warning);
    e.value = Some(round3(d.difference));
    let moved = |c: Option<f64>| c.map_or("unknown".to_owned(), |c| format!("{:+.3}", c));
    let which = match d.drifting {
        Some(drift::Drifting::Primary) => {
            e.sensor = Some(primary.sensor.clone());
            e.confidence = Some(0.8);
            format!("{} drifts", primary.sensor)
        }
        Some(drift::Drifting::Redundant) => {
            e.sensor = Some(redundant.sensor.clone());
            e.confidence = Some(0.8);
            format!("{} drifts", redundant.sensor)
        }
        None => {
            e.sensor = Some(primary.sensor.clone());
            e.confidence = Some(0.5);
            "which one drifts cannot be told from the data: check both against a grab sample"
                .to_owned()
        }
    };
    e.message = Some(format!(
        "drift: redundant analysers {} and {} differ by {:+.3} {unit} (tolerance {:.3}); \
         against the same hours of earlier days {} moved {} and {} moved {}: {which}",
        primary.sensor,
        redundant.sensor,
        d.difference,
        d.tolerance,
        primary.sensor,
        moved(d.change_primary),
        redundant.sensor,
        moved(d.change_redundant),
    ));
    e
}

/// The `sensor_fault` of an analyser's disagreement with the lab's grab samples.
fn sample_drift_event(
    grid: &StationGrid,
    spec: &signals::SignalSpec,
    d: &drift::SampleDrift,
) -> Event {
    let unit = spec.kind.canonical_unit();
    let mut e = Event::new(EventKind::SensorFault, utc(d.start), utc(d.detected_at));
    e.end = d.end.map(utc);
    e.station = Some(grid.station.clone());
    e.sensor = Some(spec.sensor.clone());
    e.severity = Some(Severity::Warning);
    e.confidence = Some(0.9);
    e.value = Some(round3(d.analyser - d.lab));
    let sample = d
        .sample_id
        .as_deref()
        .map_or(String::new(), |id| format!(" (sample {id})"));
    e.message = Some(format!(
        "drift: the analyser read {:.3} {unit} where the lab's grab sample{sample} measured \
         {:.3} (tolerance {:.3}); {} disagreeing sample(s) since the last agreement; its \
         readings are set aside until a sample agrees again",
        d.analyser, d.lab, d.tolerance, d.samples
    ));
    e
}

/// Whether two events' spans overlap (an open event lasts to the end of the data).
fn overlaps(a: &Event, b: &Event) -> bool {
    let ends_after = |e: &Event, t| e.end.is_none_or(|end| end > t);
    ends_after(a, b.start) && ends_after(b, a.start)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
