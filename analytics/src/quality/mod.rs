//! Water-quality analytics per monitoring station: instrument faults, set-point crossings and
//! CANARY-style events, all causal (CONTRACTS §3) and in one pass over each station's data.
//!
//! - [`signals`]: each signal's role, valid range, resolution, floors and set-point tiers
//!   (GB 5749-2022 defaults, `network.toml` overrides).
//! - [`station`]: a station's signals aligned on its nominal step (gaps stay gaps).
//! - [`faults`]: `sensor_fault` — impossible and floor values, flatlines, spikes, dropouts;
//!   faulted values never reach the other two.
//! - [`thresholds`]: `quality_threshold` — tiered set-point crossings.
//! - [`detect`]: `quality_event` — linear prediction and multivariate nearest neighbour,
//!   binomial event discriminator, timeout.
//! - [`score`]: row-wise precision / recall / F1 (GECCO style) and fault scoring against
//!   ground truth or labels.

pub mod detect;
pub mod faults;
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
    analyze_with(readings, network, cfg, &[])
}

/// [`analyze`] with declared windows: inside a maintenance window of a station (or of one of
/// its sensors) its readings (or that sensor's) reach neither the event detector nor the
/// set-point checks, and no instrument fault starting inside is reported: the lab said the
/// station was being serviced.
pub fn analyze_with(
    readings: &Readings,
    network: &Network,
    cfg: &QualityConfig,
    windows: &[DeclaredWindow],
) -> QualityReport {
    let mut report = QualityReport::default();
    for (station, signals) in station::stations(network) {
        let grid = StationGrid::build(readings, station, signals);
        let serviced: Vec<Vec<(EpochMillis, EpochMillis)>> = grid
            .signals
            .iter()
            .map(|spec| maintenance_of(windows, &grid.station, &spec.sensor))
            .collect();
        analyze_station(&grid, cfg, &serviced, &mut report);
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

/// One station's pass; `serviced[i]` are signal `i`'s declared maintenance spans.
fn analyze_station(
    grid: &StationGrid,
    cfg: &QualityConfig,
    serviced: &[Vec<(EpochMillis, EpochMillis)>],
    report: &mut QualityReport,
) {
    let mut trackers: Vec<FaultTracker> = grid
        .signals
        .iter()
        .map(|s| FaultTracker::new(s.clone(), cfg.faults, grid.step_ms))
        .collect();
    let mut thresholds: Vec<Option<ThresholdTracker>> = grid
        .signals
        .iter()
        .map(|s| {
            s.is_quality()
                .then(|| ThresholdTracker::new(s, cfg.threshold_persist))
        })
        .collect();
    let mut detector = detect::StationDetector::new(&grid.signals, grid.step_ms, cfg.detect);
    let mut values: Vec<Option<f64>> = vec![None; grid.signals.len()];
    // Several signals at floor, impossible or frozen values at once: maintenance (or a station
    // problem). The station's data is set aside while it lasts.
    let mut maintenance: Option<(EpochMillis, EpochMillis, usize)> = None;
    let mut maintenances: Vec<(EpochMillis, EpochMillis, Option<EpochMillis>, usize)> = Vec::new();
    for (k, &t) in grid.times.iter().enumerate() {
        for (i, tracker) in trackers.iter_mut().enumerate() {
            let raw = grid.values[i][k];
            let verdict = tracker.step(t, raw.is_finite().then_some(raw));
            if verdict.retract_previous {
                detector.retract(i);
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
        for (i, th) in thresholds.iter_mut().enumerate() {
            if let Some(th) = th {
                match values[i] {
                    Some(x) => th.step(t, x),
                    None => th.interrupt(),
                }
            }
        }
        detector.step(t, &values);
    }
    if let Some((start, detected, first)) = maintenance {
        maintenances.push((start, detected, None, first));
    }
    detector.finish();
    for t in &mut trackers {
        t.finish();
    }

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
                .map(|&i| grid.signals[i].sensor.to_string())
                .collect()
        };
        let mut e = Event::new(EventKind::QualityEvent, utc(ev.start), utc(ev.detected_at));
        e.end = ev.end.map(utc);
        e.station = Some(station.clone());
        e.sensors = ev
            .signals
            .iter()
            .map(|&i| grid.signals[i].sensor.clone())
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
