//! Scoring quality detections against ground truth (the simulator's `truth.jsonl`) or against
//! row labels (`time,event[,station]`, as in the GECCO water-quality challenge).
//!
//! Row-wise: a row is a station grid step; it is labelled an event when it lies in a truth
//! `quality_event` window of its station (`start` ≤ t < `end`) and flagged when it lies between
//! a detected `quality_event`'s `detected_at` and its `end` (open events: to the end of the
//! data). Precision, recall and F1 count rows over all stations. Incidents are also counted
//! one by one (found when a detection overlaps the window) with the detection delay, and
//! `sensor_fault` detections are scored against truth faults and maintenance windows.

use std::collections::BTreeMap;
use std::io::BufRead;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use waterline_core::{Event, EventKind};

use super::QualityReport;
use crate::timefmt::EpochMillis;

/// One quality line of a truth file (`quality_event`, `sensor_fault` or `maintenance`).
#[derive(Debug, Clone, Deserialize)]
pub struct QualityTruth {
    pub kind: String,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    #[serde(default)]
    pub station: Option<String>,
    #[serde(default)]
    pub sensor: Option<String>,
    #[serde(default)]
    pub sensors: Vec<String>,
    /// Fault type of a `sensor_fault` line.
    #[serde(default)]
    pub fault: Option<String>,
    /// Incident type of a `quality_event` line (contamination, ph_excursion …).
    #[serde(default, rename = "type")]
    pub incident_type: Option<String>,
}

/// Reads the quality lines of a truth file (leaks and other kinds are skipped).
pub fn read_truth(reader: impl BufRead, name: &str) -> Result<Vec<QualityTruth>, String> {
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("cannot read {name}: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let t: QualityTruth =
            serde_json::from_str(&line).map_err(|e| format!("{name} line {}: {e}", i + 1))?;
        if matches!(
            t.kind.as_str(),
            "quality_event" | "sensor_fault" | "maintenance"
        ) {
            if t.kind == "sensor_fault" && t.sensor.is_none() {
                return Err(format!(
                    "{name} line {}: a sensor_fault needs `sensor`",
                    i + 1
                ));
            }
            if t.kind != "sensor_fault" && t.station.is_none() {
                return Err(format!(
                    "{name} line {}: a {} needs `station`",
                    i + 1,
                    t.kind
                ));
            }
            out.push(t);
        }
    }
    Ok(out)
}

/// One labelled row.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub time: EpochMillis,
    /// `None`: the label applies to every station.
    pub station: Option<String>,
    pub event: bool,
}

/// Reads a label file: CSV with the header `time,event` or `time,event,station` (any column
/// order); `event` is `true`/`false`/`1`/`0`.
pub fn read_labels(reader: impl BufRead, name: &str) -> Result<Vec<Label>, String> {
    let mut lines = reader.lines();
    let (header, cols) = super::lab::csv_header(&mut lines, name)?;
    let col = |n: &str| cols.iter().position(|c| c == n);
    let (Some(ti), Some(ei)) = (col("time"), col("event")) else {
        return Err(format!(
            "{name}: the header must name `time` and `event` columns (got `{header}`)"
        ));
    };
    let si = col("station");
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let line = line.map_err(|e| format!("cannot read {name}: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let at = |c: usize| {
            f.get(c)
                .copied()
                .ok_or_else(|| format!("{name} line {}: missing column {}", i + 2, cols[c]))
        };
        let time = crate::timefmt::parse_rfc3339(at(ti)?)
            .map_err(|e| format!("{name} line {}: time: {e}", i + 2))?;
        let event = match at(ei)?.to_ascii_lowercase().as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            other => {
                return Err(format!(
                    "{name} line {}: event `{other}` is not true/false/1/0",
                    i + 2
                ));
            }
        };
        let station = match si {
            Some(c) => Some(at(c)?.to_owned()).filter(|s| !s.is_empty()),
            None => None,
        };
        out.push(Label {
            time,
            station,
            event,
        });
    }
    Ok(out)
}

/// Row-wise figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowScore {
    pub rows: usize,
    pub labelled: usize,
    pub flagged: usize,
    pub true_positives: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

impl RowScore {
    fn finish(mut self) -> Self {
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        self.precision = ratio(self.true_positives, self.flagged);
        self.recall = ratio(self.true_positives, self.labelled);
        self.f1 = if self.precision + self.recall > 0.0 {
            2.0 * self.precision * self.recall / (self.precision + self.recall)
        } else {
            0.0
        };
        self
    }
}

/// Incident-level and fault figures (truth files only).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventScore {
    /// Truth incident windows (one per station they reached) and how many were found.
    pub incidents: usize,
    pub incidents_found: usize,
    /// Detected quality events overlapping no truth window of their station.
    pub false_events: usize,
    pub median_delay_minutes: Option<f64>,
    /// Truth faults (maintenance counted once per sensor) and how many were found.
    pub faults: usize,
    pub faults_found: usize,
    pub fault_detections: usize,
    /// Fault detections overlapping a truth fault or maintenance window on their sensor.
    pub fault_detections_true: usize,
    pub faults_found_by_type: BTreeMap<String, (usize, usize)>,
}

type Windows = BTreeMap<String, Vec<(EpochMillis, EpochMillis)>>;

fn ms(t: &DateTime<Utc>) -> EpochMillis {
    t.timestamp_millis()
}

fn detection_windows(report: &QualityReport, horizon: EpochMillis) -> Windows {
    let mut w: Windows = BTreeMap::new();
    for e in report
        .events
        .iter()
        .filter(|e| e.kind == EventKind::QualityEvent)
    {
        if let Some(st) = &e.station {
            let end = e.end.as_ref().map_or(horizon, ms);
            w.entry(st.to_string())
                .or_default()
                .push((ms(&e.detected_at), end));
        }
    }
    w
}

fn inside(windows: Option<&Vec<(EpochMillis, EpochMillis)>>, t: EpochMillis) -> bool {
    windows.is_some_and(|w| w.iter().any(|(a, b)| *a <= t && t < *b))
}

fn horizon(report: &QualityReport) -> EpochMillis {
    report
        .stations
        .iter()
        .filter_map(|s| s.times.last().map(|t| t + s.step_ms))
        .max()
        .unwrap_or(0)
}

/// Row-wise score against truth windows.
pub fn score_rows(report: &QualityReport, truth: &[QualityTruth]) -> RowScore {
    let h = horizon(report);
    let detected = detection_windows(report, h);
    let mut labelled: Windows = BTreeMap::new();
    for t in truth.iter().filter(|t| t.kind == "quality_event") {
        if let Some(st) = &t.station {
            labelled
                .entry(st.clone())
                .or_default()
                .push((ms(&t.start), t.end.as_ref().map_or(h, ms)));
        }
    }
    let mut s = RowScore::default();
    for st in &report.stations {
        let key = st.station.to_string();
        for &t in &st.times {
            let l = inside(labelled.get(&key), t);
            let f = inside(detected.get(&key), t);
            s.rows += 1;
            s.labelled += usize::from(l);
            s.flagged += usize::from(f);
            s.true_positives += usize::from(l && f);
        }
    }
    s.finish()
}

/// Row-wise score against labelled rows; a label without a station applies to all stations.
pub fn score_labels(report: &QualityReport, labels: &[Label]) -> RowScore {
    let detected = detection_windows(report, horizon(report));
    let mut s = RowScore::default();
    for l in labels {
        let f = match &l.station {
            Some(st) => inside(detected.get(st), l.time),
            None => detected.values().any(|w| inside(Some(w), l.time)),
        };
        s.rows += 1;
        s.labelled += usize::from(l.event);
        s.flagged += usize::from(f);
        s.true_positives += usize::from(l.event && f);
    }
    s.finish()
}

fn overlaps(a: (EpochMillis, EpochMillis), b: (EpochMillis, EpochMillis)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Incident and fault figures against a truth file.
pub fn score_events(report: &QualityReport, truth: &[QualityTruth]) -> EventScore {
    let h = horizon(report);
    let tolerance = 3_600_000;
    let mut s = EventScore::default();
    let quality: Vec<&Event> = report
        .events
        .iter()
        .filter(|e| e.kind == EventKind::QualityEvent)
        .collect();
    let span = |e: &Event| {
        (
            ms(&e.start).min(ms(&e.detected_at)),
            e.end.as_ref().map_or(h, ms),
        )
    };
    let truth_span = |t: &QualityTruth| (ms(&t.start), t.end.as_ref().map_or(h, ms));
    let station_of = |e: &Event| e.station.as_ref().map(|s| s.to_string());

    let incidents: Vec<&QualityTruth> =
        truth.iter().filter(|t| t.kind == "quality_event").collect();
    let mut delays = Vec::new();
    for t in &incidents {
        s.incidents += 1;
        let window = truth_span(t);
        let hit = quality
            .iter()
            .filter(|e| {
                station_of(e) == t.station && overlaps((ms(&e.detected_at), span(e).1), window)
            })
            .map(|e| ms(&e.detected_at))
            .min();
        if let Some(at) = hit {
            s.incidents_found += 1;
            delays.push(((at - window.0).max(0)) as f64 / 60_000.0);
        }
    }
    s.false_events = quality
        .iter()
        .filter(|e| {
            !incidents.iter().any(|t| {
                station_of(e) == t.station
                    && overlaps(span(e), (truth_span(t).0, truth_span(t).1 + tolerance))
            })
        })
        .count();
    s.median_delay_minutes = crate::stats::median(&mut delays);

    // Faults: per sensor windows (maintenance applies to every sensor it lists).
    let mut fault_windows: Vec<(String, String, (EpochMillis, EpochMillis))> = Vec::new();
    for t in truth {
        match t.kind.as_str() {
            // A fault without a station is on a hydraulic sensor (pressure analytics').
            "sensor_fault" if t.station.is_some() => {
                if let Some(sensor) = &t.sensor {
                    let kind = t.fault.clone().unwrap_or_else(|| "fault".into());
                    fault_windows.push((sensor.clone(), kind, truth_span(t)));
                }
            }
            "maintenance" => {
                for sensor in &t.sensors {
                    fault_windows.push((sensor.clone(), "maintenance".into(), truth_span(t)));
                }
            }
            _ => {}
        }
    }
    // A detection names its sensor, and a station-wide one (maintenance) all it set aside.
    let fault_events: Vec<&Event> = report
        .events
        .iter()
        .filter(|e| e.kind == EventKind::SensorFault)
        .collect();
    let covers = |e: &Event, sensor: &str| {
        e.sensor.as_ref().is_some_and(|s| s.as_str() == sensor)
            || e.sensors.iter().any(|s| s.as_str() == sensor)
    };
    for (sensor, kind, w) in &fault_windows {
        let found = fault_events
            .iter()
            .any(|e| covers(e, sensor) && overlaps(span(e), (w.0, w.1 + tolerance)));
        s.faults += 1;
        s.faults_found += usize::from(found);
        let entry = s.faults_found_by_type.entry(kind.clone()).or_default();
        entry.0 += usize::from(found);
        entry.1 += 1;
    }
    s.fault_detections = fault_events.len();
    s.fault_detections_true = fault_events
        .iter()
        .filter(|e| {
            fault_windows
                .iter()
                .any(|(s2, _, w)| covers(e, s2) && overlaps(span(e), (w.0, w.1 + tolerance)))
        })
        .count();
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::StationSummary;
    use waterline_core::StationId;

    fn t(min: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(min * 60_000).expect("time")
    }

    fn report(events: Vec<Event>) -> QualityReport {
        QualityReport {
            events,
            stations: vec![StationSummary {
                station: StationId::parse("S").expect("id"),
                step_ms: 60_000,
                times: (0..100).map(|m| m * 60_000).collect(),
            }],
        }
    }

    fn quality_event(detected: i64, end: Option<i64>) -> Event {
        let mut e = Event::new(EventKind::QualityEvent, t(detected - 5), t(detected));
        e.end = end.map(t);
        e.station = Some(StationId::parse("S").expect("id"));
        e
    }

    #[test]
    fn rows_count_from_detection_to_end() {
        let truth: Vec<QualityTruth> = read_truth(
            "{\"kind\":\"quality_event\",\"station\":\"S\",\"start\":\"1970-01-01T00:10:00Z\",\"end\":\"1970-01-01T00:30:00Z\"}\n\
             {\"kind\":\"leak\",\"dma\":\"A\",\"start\":\"1970-01-01T00:00:00Z\"}\n"
                .as_bytes(),
            "truth",
        )
        .expect("truth");
        assert_eq!(truth.len(), 1, "leak lines are skipped");
        // Detected at minute 15, ended at 35: rows 15..35 flagged; truth rows 10..30.
        let r = report(vec![quality_event(15, Some(35))]);
        let s = score_rows(&r, &truth);
        assert_eq!(
            (s.rows, s.labelled, s.flagged, s.true_positives),
            (100, 20, 20, 15)
        );
        assert!((s.precision - 0.75).abs() < 1e-12 && (s.recall - 0.75).abs() < 1e-12);
        // An open event is flagged to the end of the data.
        let s = score_rows(&report(vec![quality_event(90, None)]), &truth);
        assert_eq!((s.flagged, s.true_positives), (10, 0));
        let e = score_events(&r, &truth);
        assert_eq!((e.incidents, e.incidents_found, e.false_events), (1, 1, 0));
        assert_eq!(e.median_delay_minutes, Some(5.0));
    }

    #[test]
    fn labels_parse_and_score() {
        let labels = read_labels(
            "event,time\nfalse,1970-01-01T00:14:00Z\ntrue,1970-01-01T00:15:00Z\n1,1970-01-01T00:50:00Z\n"
                .as_bytes(),
            "labels.csv",
        )
        .expect("labels");
        let s = score_labels(&report(vec![quality_event(15, Some(35))]), &labels);
        assert_eq!(
            (s.rows, s.labelled, s.flagged, s.true_positives),
            (3, 2, 1, 1)
        );
        let err = read_labels("time,flag\n".as_bytes(), "l.csv").expect_err("bad header");
        assert!(err.contains("`event`"), "{err}");
        let err = read_labels(
            "time,event\n1970-01-01T00:14:00Z,maybe\n".as_bytes(),
            "l.csv",
        )
        .expect_err("bad value");
        assert!(err.contains("line 2") && err.contains("maybe"), "{err}");
    }

    #[test]
    fn faults_match_by_sensor_with_tolerance() {
        let truth = read_truth(
            "{\"kind\":\"sensor_fault\",\"fault\":\"flatline\",\"sensor\":\"S-ph\",\"station\":\"S\",\"start\":\"1970-01-01T00:10:00Z\",\"end\":\"1970-01-01T00:20:00Z\"}\n\
             {\"kind\":\"maintenance\",\"station\":\"S\",\"sensors\":[\"S-cl2\",\"S-turb\"],\"start\":\"1970-01-01T01:00:00Z\",\"end\":\"1970-01-01T01:10:00Z\"}\n"
                .as_bytes(),
            "truth",
        )
        .expect("truth");
        let fault = |sensor: &str, detected: i64| {
            let mut e = Event::new(EventKind::SensorFault, t(detected), t(detected));
            e.end = Some(t(detected + 5));
            e.sensor = Some(waterline_core::SensorId::parse(sensor).expect("id"));
            e
        };
        let r = report(vec![
            fault("S-ph", 40),
            fault("S-cl2", 62),
            fault("S-toc", 62),
        ]);
        let s = score_events(&r, &truth);
        assert_eq!((s.faults, s.faults_found), (3, 2));
        assert_eq!((s.fault_detections, s.fault_detections_true), (3, 2));
        assert_eq!(s.faults_found_by_type.get("flatline"), Some(&(1, 1)));
        assert!(
            read_truth(
                "{\"kind\":\"sensor_fault\",\"start\":\"1970-01-01T00:00:00Z\"}".as_bytes(),
                "x"
            )
            .is_err()
        );
    }
}
