//! Scoring the pressure analytics against the simulator's ground truth (`truth.jsonl`).
//!
//! - **Instrument faults**: a truth `sensor_fault` without a `station` is a pressure sensor's.
//!   It is found when a `sensor_fault` event of that sensor overlaps the fault's window (or the
//!   hour after it: a flatline is only recognisable once it has lasted); the delay is from the
//!   fault's start to the first such detection.
//! - **Bursts**: truth leaks of type `abrupt` and at least `min_burst_mm` (default 10 mm). A
//!   burst is found when a `pressure_drop` or `pressure_low` of a sensor in the leak's DMA is
//!   raised while it runs, within `burst_window_h` (default 24 h) of its start. Not every such
//!   leak moves a monitored pressure by more than the sensors' noise (a burst far from every
//!   sensor in a well-fed zone may not), so recall is given twice: over all of them, and over
//!   the **visible** ones, whose opening lowered some monitored pressure by more than three
//!   times that sensor's noise (the truth's `pressure_drop_m` and `pressure_noise_m`, from the
//!   simulator's what-if solve without the leak; a burst the truth has no such figure for
//!   counts as visible).
//! - **Precision** over every pressure event: a `sensor_fault` is true when it overlaps a truth
//!   fault of its sensor (plus the hour after); a `pressure_drop` when a truth leak of its
//!   sensor's DMA began within `burst_window_h` before its detection (a slowly growing leak
//!   does not step the pressure down, so a drop long after a leak's start is not its doing); a
//!   `pressure_low` or `pressure_high` when a truth leak of its DMA runs at its detection time.
//!   Everything else (a drop caused by a faulty reading included) is a false event.

use std::collections::BTreeMap;
use std::io::BufRead;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use waterline_core::{Event, EventKind, Network};

use crate::stats::median;

/// One line of a truth file that the pressure score reads.
#[derive(Debug, Clone, Deserialize)]
pub struct PressureTruth {
    pub kind: String,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    #[serde(default)]
    pub dma: Option<String>,
    #[serde(default)]
    pub sensor: Option<String>,
    #[serde(default)]
    pub station: Option<String>,
    /// Fault type of a `sensor_fault`.
    #[serde(default)]
    pub fault: Option<String>,
    /// `abrupt` or `incipient` for a leak.
    #[serde(default)]
    pub leak_type: Option<String>,
    #[serde(default)]
    pub diameter_mm: Option<f64>,
    /// A burst's largest drop at a monitored pressure when it opened, m.
    #[serde(default)]
    pub pressure_drop_m: Option<f64>,
    /// The standard deviation of that sensor's noise, m.
    #[serde(default)]
    pub pressure_noise_m: Option<f64>,
}

impl PressureTruth {
    fn is_pressure_fault(&self) -> bool {
        self.kind == "sensor_fault" && self.station.is_none() && self.sensor.is_some()
    }

    fn is_leak(&self) -> bool {
        self.kind == "leak" || self.kind == "burst"
    }

    /// Whether the leak moved a monitored pressure by more than its noise (three standard
    /// deviations) when it opened; unknown counts as yes.
    pub fn moved_a_monitored_pressure(&self) -> bool {
        match (self.pressure_drop_m, self.pressure_noise_m) {
            (Some(drop), Some(noise)) => drop > VISIBLE_NOISE_SDS * noise,
            _ => true,
        }
    }
}

/// How many noise standard deviations a burst's pressure drop must exceed to be visible.
pub const VISIBLE_NOISE_SDS: f64 = 3.0;

/// Reads the leak and pressure-fault lines of a truth file (other lines are skipped).
pub fn read_truth(reader: impl BufRead, name: &str) -> Result<Vec<PressureTruth>, String> {
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("cannot read {name}: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let t: PressureTruth =
            serde_json::from_str(&line).map_err(|e| format!("{name} line {}: {e}", i + 1))?;
        if t.is_leak() || t.is_pressure_fault() {
            out.push(t);
        }
    }
    Ok(out)
}

/// Settings of the score.
#[derive(Debug, Clone, Copy)]
pub struct ScoreConfig {
    /// Smallest abrupt leak counted as a burst, mm.
    pub min_burst_mm: f64,
    /// How long after a burst's start a detection still counts, hours.
    pub burst_window_h: i64,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        Self {
            min_burst_mm: 10.0,
            burst_window_h: 24,
        }
    }
}

/// Found / total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub total: usize,
    pub found: usize,
}

/// The pressure analytics' score.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PressureScore {
    pub faults: Tally,
    /// Per fault type.
    pub faults_by_type: BTreeMap<String, Tally>,
    pub fault_delay_median_min: Option<f64>,
    pub bursts: Tally,
    /// The bursts that moved a monitored pressure by more than its noise.
    pub visible_bursts: Tally,
    pub burst_delay_median_h: Option<f64>,
    /// Per event kind: events (`total`) and true ones (`found`).
    pub events_by_kind: BTreeMap<String, Tally>,
    pub events: Tally,
    /// True events ÷ events (`None` without events).
    pub precision: Option<f64>,
}

fn dma_of<'a>(network: &'a Network, e: &'a Event) -> Option<&'a str> {
    e.dma.as_ref().map(|d| d.as_str()).or_else(|| {
        let s = network.sensor(e.sensor.as_ref()?)?;
        s.dma.as_ref().map(|d| d.as_str())
    })
}

/// The span an event covers, open events to `horizon`.
fn span(e: &Event, horizon: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    (e.start.min(e.detected_at), e.end.unwrap_or(horizon))
}

fn overlaps(a: (DateTime<Utc>, DateTime<Utc>), b: (DateTime<Utc>, DateTime<Utc>)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

/// Scores `events` (the pressure analysis of the readings) against `truth`.
pub fn score(
    events: &[Event],
    truth: &[PressureTruth],
    network: &Network,
    cfg: &ScoreConfig,
) -> PressureScore {
    let mut s = PressureScore::default();
    let horizon = events
        .iter()
        .map(|e| e.end.unwrap_or(e.detected_at).max(e.detected_at))
        .chain(truth.iter().filter_map(|t| t.end))
        .max()
        .unwrap_or_default();
    let grace = TimeDelta::hours(1);
    let burst_window = TimeDelta::hours(cfg.burst_window_h);
    let faults: Vec<&PressureTruth> = truth.iter().filter(|t| t.is_pressure_fault()).collect();
    let fault_window = |t: &PressureTruth| (t.start, t.end.unwrap_or(horizon) + grace);
    let sensor_faults: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == EventKind::SensorFault)
        .collect();

    let mut delays = Vec::new();
    for t in &faults {
        let hit = sensor_faults
            .iter()
            .filter(|e| {
                e.sensor.as_ref().map(|x| x.as_str()) == t.sensor.as_deref()
                    && overlaps(span(e, horizon), fault_window(t))
            })
            .map(|e| e.detected_at)
            .min();
        let by_type = s
            .faults_by_type
            .entry(t.fault.clone().unwrap_or_else(|| "fault".into()))
            .or_default();
        by_type.total += 1;
        s.faults.total += 1;
        if let Some(at) = hit {
            by_type.found += 1;
            s.faults.found += 1;
            delays.push((at - t.start).num_seconds().max(0) as f64 / 60.0);
        }
    }
    s.fault_delay_median_min = median(&mut delays);

    let leaks: Vec<&PressureTruth> = truth.iter().filter(|t| t.is_leak()).collect();
    let is_drop = |e: &Event| matches!(e.kind, EventKind::PressureDrop | EventKind::PressureLow);
    let mut delays = Vec::new();
    for t in leaks.iter().filter(|t| {
        t.leak_type.as_deref() == Some("abrupt")
            && t.diameter_mm.is_some_and(|d| d >= cfg.min_burst_mm)
    }) {
        let visible = t.moved_a_monitored_pressure();
        s.bursts.total += 1;
        s.visible_bursts.total += usize::from(visible);
        let until = (t.start + burst_window).min(t.end.unwrap_or(horizon));
        let hit = events
            .iter()
            .filter(|e| {
                is_drop(e)
                    && dma_of(network, e) == t.dma.as_deref()
                    && e.detected_at >= t.start
                    && e.detected_at <= until
            })
            .map(|e| e.detected_at)
            .min();
        if let Some(at) = hit {
            s.bursts.found += 1;
            s.visible_bursts.found += usize::from(visible);
            delays.push((at - t.start).num_seconds() as f64 / 3600.0);
        }
    }
    s.burst_delay_median_h = median(&mut delays);

    for e in events {
        let truly = match e.kind {
            EventKind::SensorFault => faults.iter().any(|t| {
                e.sensor.as_ref().map(|x| x.as_str()) == t.sensor.as_deref()
                    && overlaps(span(e, horizon), fault_window(t))
            }),
            // A sudden drop is explained by a leak of its DMA that began in the window before
            // it (a growing incipient leak does not step the pressure down).
            EventKind::PressureDrop => leaks.iter().any(|t| {
                dma_of(network, e) == t.dma.as_deref()
                    && t.start <= e.detected_at
                    && e.detected_at <= t.start + burst_window
            }),
            // A sustained band violation, by any leak of its DMA running at the time.
            EventKind::PressureLow | EventKind::PressureHigh => leaks.iter().any(|t| {
                dma_of(network, e) == t.dma.as_deref()
                    && t.start <= e.detected_at
                    && e.detected_at <= t.end.unwrap_or(horizon)
            }),
            _ => continue,
        };
        let k = s.events_by_kind.entry(e.kind.as_str().into()).or_default();
        k.total += 1;
        s.events.total += 1;
        if truly {
            k.found += 1;
            s.events.found += 1;
        }
    }
    s.precision = (s.events.total > 0).then(|| s.events.found as f64 / s.events.total as f64);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use waterline_core::{DmaId, SensorId};

    const NET: &str = r#"
timezone = "UTC"
[[dma]]
id = "A"
inlets = ["A-in"]
[[dma]]
id = "B"
inlets = ["B-in"]
[[sensor]]
id = "A-in"
kind = "flow"
unit = "m3/h"
[[sensor]]
id = "B-in"
kind = "flow"
unit = "m3/h"
[[sensor]]
id = "pa"
kind = "pressure"
unit = "m"
dma = "A"
[[sensor]]
id = "pb"
kind = "pressure"
unit = "m"
dma = "B"
"#;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + h * 3600, 0).unwrap()
    }

    fn event(kind: EventKind, sensor: &str, start: i64, detected: i64, end: Option<i64>) -> Event {
        let mut e = Event::new(kind, t(start), t(detected));
        e.sensor = Some(SensorId::parse(sensor).unwrap());
        e.end = end.map(t);
        e
    }

    fn truth() -> Vec<PressureTruth> {
        let lines = [
            r#"{"kind":"leak","start":"2026-01-01T10:00:00Z","end":"2026-01-03T00:00:00Z","dma":"A","leak_type":"abrupt","diameter_mm":15.0}"#,
            r#"{"kind":"leak","start":"2026-01-02T10:00:00Z","end":"2026-01-04T00:00:00Z","dma":"B","leak_type":"abrupt","diameter_mm":8.0}"#,
            r#"{"kind":"leak","start":"2026-01-05T10:00:00Z","end":"2026-01-06T00:00:00Z","dma":"B","leak_type":"abrupt","diameter_mm":12.0,"pressure_drop_m":0.25,"pressure_noise_m":0.1}"#,
            r#"{"kind":"leak","start":"2026-01-06T10:00:00Z","end":"2026-01-07T00:00:00Z","dma":"B","leak_type":"abrupt","diameter_mm":12.0,"pressure_drop_m":0.35,"pressure_noise_m":0.1}"#,
            r#"{"kind":"leak","start":"2026-01-01T00:00:00Z","end":"2026-01-04T00:00:00Z","dma":"B","leak_type":"incipient","diameter_mm":20.0}"#,
            r#"{"kind":"sensor_fault","fault":"flatline","sensor":"pa","dma":"A","start":"2026-01-02T00:00:00Z","end":"2026-01-02T06:00:00Z"}"#,
            r#"{"kind":"sensor_fault","fault":"floor","sensor":"pb","dma":"B","start":"2026-01-03T00:00:00Z","end":"2026-01-03T02:00:00Z"}"#,
            r#"{"kind":"sensor_fault","fault":"drift","sensor":"S1-cl2","station":"S1","start":"2026-01-01T00:00:00Z","end":"2026-01-02T00:00:00Z"}"#,
            r#"{"kind":"quality_event","station":"S1","start":"2026-01-01T00:00:00Z","end":"2026-01-02T00:00:00Z"}"#,
        ];
        read_truth(lines.join("\n").as_bytes(), "truth").unwrap()
    }

    #[test]
    fn reads_only_leaks_and_pressure_faults() {
        let kinds: Vec<String> = truth().iter().map(|t| t.kind.clone()).collect();
        assert_eq!(
            kinds,
            [
                "leak",
                "leak",
                "leak",
                "leak",
                "leak",
                "sensor_fault",
                "sensor_fault"
            ]
        );
        let err = read_truth("{\"kind\": 1}".as_bytes(), "t.jsonl").unwrap_err();
        assert!(err.contains("t.jsonl line 1"), "{err}");
    }

    #[test]
    fn faults_bursts_and_precision() {
        let net = Network::parse(NET).unwrap();
        let mut drop_a = event(EventKind::PressureDrop, "pa", 10, 11, Some(20));
        drop_a.dma = Some(DmaId::parse("A").unwrap());
        let events = vec![
            // The 15 mm burst in A, found an hour in.
            drop_a,
            // The flatline on pa, found two hours in.
            event(EventKind::SensorFault, "pa", 24, 26, Some(30)),
            // A drop in B an hour after its 8 mm leak began: true, though 8 mm is below the
            // burst bar.
            event(EventKind::PressureDrop, "pb", 35, 35, None),
            // A drop in B 30 h into its incipient leak, before the 8 mm one: false.
            event(EventKind::PressureDrop, "pb", 30, 30, Some(31)),
            // A drop in A after its leak was repaired: false.
            event(EventKind::PressureDrop, "pa", 60, 61, Some(62)),
            // A fault on pb before its floor fault: false.
            event(EventKind::SensorFault, "pb", 5, 6, Some(7)),
        ];
        let s = score(&events, &truth(), &net, &ScoreConfig::default());
        assert_eq!(s.faults, Tally { total: 2, found: 1 });
        assert_eq!(s.faults_by_type["flatline"], Tally { total: 1, found: 1 });
        assert_eq!(s.faults_by_type["floor"], Tally { total: 1, found: 0 });
        assert_eq!(s.fault_delay_median_min, Some(120.0));
        // Two 12 mm bursts in B go unseen: one moved a pressure by 2.5 noise SDs (not
        // visible), the other by 3.5 (visible); the 15 mm one in A has no figure (visible).
        assert_eq!(s.bursts, Tally { total: 3, found: 1 });
        assert_eq!(s.visible_bursts, Tally { total: 2, found: 1 });
        assert_eq!(s.burst_delay_median_h, Some(1.0));
        assert_eq!(s.events, Tally { total: 6, found: 3 });
        assert_eq!(
            s.events_by_kind["pressure_drop"],
            Tally { total: 4, found: 2 }
        );
        assert_eq!(s.precision, Some(0.5));
    }
}
