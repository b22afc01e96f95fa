//! Scoring detected leak events against ground truth (the simulator's `truth.jsonl`).
//!
//! A detection (`leak` or `burst`, with a DMA) is a true positive when it is raised while a
//! true leak of that DMA is running (`start ≤ detected_at ≤ end`) and that leak has not been
//! claimed by an earlier detection (of several such leaks, it claims the one that started
//! last); otherwise it is a false alarm (before any leak, a second
//! report of a claimed leak, or in the wrong DMA). Recall counts true leaks found; the delay of
//! a found leak is `detected_at − start`. The economic score follows BattLeDIM: water saved
//! (the leak's flow from detection to the leak's end, at a price per m³) minus a cost per false
//! alarm.
//!
//! Two detectors that find different leaks have medians over different leaks: one that finds
//! only the easiest leak can show a shorter median delay than one that finds them all.
//! [`paired_delays`] compares them like for like, on the leaks both found.

use std::collections::BTreeMap;
use std::io::BufRead;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use waterline_core::{Event, EventKind};

use crate::stats::median;

/// One injected incident of the ground truth.
#[derive(Debug, Clone, Deserialize)]
pub struct TruthLeak {
    pub kind: String,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    pub dma: Option<String>,
    #[serde(default)]
    pub pipe: Option<String>,
    /// `abrupt` or `incipient`, when the truth says.
    #[serde(default, alias = "leak_type")]
    pub profile: Option<String>,
    /// Mean leak flow over the leak's life, m³/h.
    #[serde(default, alias = "mean_flow_m3h")]
    pub flow_m3h: Option<f64>,
}

/// Reads the `leak` lines of a truth file (other kinds are skipped).
pub fn read_truth(reader: impl BufRead, name: &str) -> Result<Vec<TruthLeak>, String> {
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("cannot read {name}: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let t: TruthLeak =
            serde_json::from_str(&line).map_err(|e| format!("{name} line {}: {e}", i + 1))?;
        if t.kind == "leak" || t.kind == "burst" {
            out.push(t);
        }
    }
    Ok(out)
}

/// Economic-score settings.
#[derive(Debug, Clone, Copy)]
pub struct Economics {
    pub price_per_m3: f64,
    pub false_alarm_cost: f64,
}

impl Default for Economics {
    fn default() -> Self {
        Economics {
            price_per_m3: 0.8,
            false_alarm_cost: 500.0,
        }
    }
}

/// Scores of one detector.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub detections: usize,
    pub true_positives: usize,
    pub false_alarms: usize,
    pub leaks: usize,
    pub found: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Median delay over found leaks by profile (`abrupt`, `incipient`, `all`), hours.
    pub median_delay_h: BTreeMap<String, f64>,
    pub water_saved_m3: f64,
    /// Per truth leak (in the truth's order), the detection that claimed it.
    pub claimed: Vec<Option<DateTime<Utc>>>,
    /// Saved water × price − false alarms × cost, €.
    pub economic_score: f64,
}

/// Scores detections against the truth. `horizon` ends leaks that have no end (the data's end).
pub fn score(
    truth: &[TruthLeak],
    events: &[Event],
    horizon: DateTime<Utc>,
    econ: Economics,
) -> Score {
    let mut detections: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Leak | EventKind::Burst))
        .collect();
    detections.sort_by_key(|e| e.detected_at);
    let mut claimed: Vec<Option<DateTime<Utc>>> = vec![None; truth.len()];
    let mut tp = 0;
    for e in &detections {
        let dma = e.dma.as_ref().map(|d| d.as_str());
        let hit = truth
            .iter()
            .enumerate()
            .filter(|(i, t)| {
                claimed[*i].is_none()
                    && t.dma.as_deref() == dma
                    && t.start <= e.detected_at
                    && e.detected_at <= t.end.unwrap_or(horizon)
            })
            // The most recently started leak is the likeliest cause of a new detection.
            .max_by_key(|(_, t)| t.start)
            .map(|(i, _)| i);
        if let Some(i) = hit {
            claimed[i] = Some(e.detected_at);
            tp += 1;
        }
    }
    let found = claimed.iter().filter(|c| c.is_some()).count();
    let false_alarms = detections.len() - tp;
    let precision = if detections.is_empty() {
        0.0
    } else {
        tp as f64 / detections.len() as f64
    };
    let recall = if truth.is_empty() {
        0.0
    } else {
        found as f64 / truth.len() as f64
    };
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    let mut delays: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut saved = 0.0;
    for (t, c) in truth.iter().zip(&claimed) {
        let Some(at) = c else {
            continue;
        };
        let delay = (*at - t.start).num_seconds() as f64 / 3_600.0;
        let profile = t.profile.clone().unwrap_or_else(|| "unknown".into());
        delays.entry(profile).or_default().push(delay);
        delays.entry("all".into()).or_default().push(delay);
        let end = t.end.unwrap_or(horizon);
        let hours = ((end - *at).num_seconds() as f64 / 3_600.0).max(0.0);
        saved += t.flow_m3h.unwrap_or(0.0) * hours;
    }
    Score {
        detections: detections.len(),
        true_positives: tp,
        false_alarms,
        leaks: truth.len(),
        found,
        precision,
        recall,
        f1,
        median_delay_h: delays
            .into_iter()
            .filter_map(|(k, mut v)| median(&mut v).map(|m| (k, m)))
            .collect(),
        water_saved_m3: saved,
        claimed,
        economic_score: saved * econ.price_per_m3 - false_alarms as f64 * econ.false_alarm_cost,
    }
}

/// Detection delays of two detectors on the leaks both found.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedDelays {
    /// Leaks both detectors found.
    pub both: usize,
    /// Median delay of each over those leaks, hours (`None` when there are none).
    pub median_h: Option<(f64, f64)>,
    /// Of those leaks, how many the first detector found earlier, and how many later.
    pub earlier: usize,
    pub later: usize,
}

/// Compares the delays of `a` and `b` (scored on the same `truth`) on the leaks both found.
pub fn paired_delays(truth: &[TruthLeak], a: &Score, b: &Score) -> PairedDelays {
    let mut da = Vec::new();
    let mut db = Vec::new();
    let (mut earlier, mut later) = (0, 0);
    for ((t, ca), cb) in truth.iter().zip(&a.claimed).zip(&b.claimed) {
        let (Some(ca), Some(cb)) = (ca, cb) else {
            continue;
        };
        let hours = |at: &DateTime<Utc>| (*at - t.start).num_seconds() as f64 / 3_600.0;
        da.push(hours(ca));
        db.push(hours(cb));
        earlier += usize::from(ca < cb);
        later += usize::from(ca > cb);
    }
    PairedDelays {
        both: da.len(),
        median_h: median(&mut da).zip(median(&mut db)),
        earlier,
        later,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use waterline_core::DmaId;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn event(dma: &str, at: &str) -> Event {
        let mut e = Event::new(EventKind::Leak, t(at), t(at));
        e.dma = Some(DmaId::parse(dma).unwrap());
        e
    }

    #[test]
    fn matching_delays_and_money() {
        let truth = read_truth(
            concat!(
                r#"{"kind":"leak","start":"2018-01-02T00:00:00Z","end":"2018-01-12T00:00:00Z","dma":"A","leak_type":"abrupt","flow_m3h":10.0}"#,
                "\n",
                r#"{"kind":"leak","start":"2018-01-05T00:00:00Z","dma":"B","leak_type":"incipient","flow_m3h":4.0}"#,
                "\n",
                r#"{"kind":"sensor_fault","start":"2018-01-05T00:00:00Z","sensor":"x"}"#,
                "\n"
            )
            .as_bytes(),
            "truth",
        )
        .unwrap();
        assert_eq!(truth.len(), 2);
        let events = vec![
            event("A", "2018-01-01T12:00:00Z"), // before the leak: false alarm
            event("A", "2018-01-02T06:00:00Z"), // found after 6 h
            event("A", "2018-01-03T06:00:00Z"), // the same leak again: false alarm
            event("B", "2018-01-07T00:00:00Z"), // found after 48 h
        ];
        let s = score(
            &truth,
            &events,
            t("2018-01-20T00:00:00Z"),
            Economics::default(),
        );
        assert_eq!((s.true_positives, s.false_alarms, s.found), (2, 2, 2));
        assert!((s.precision - 0.5).abs() < 1e-9 && (s.recall - 1.0).abs() < 1e-9);
        assert_eq!(s.median_delay_h["abrupt"], 6.0);
        assert_eq!(s.median_delay_h["incipient"], 48.0);
        assert_eq!(s.median_delay_h["all"], 27.0);
        // A saves 10 m³/h × 234 h; B (open-ended) 4 m³/h × 312 h to the horizon.
        assert!((s.water_saved_m3 - (2340.0 + 1248.0)).abs() < 1e-6);
        assert!((s.economic_score - (3588.0 * 0.8 - 1000.0)).abs() < 1e-6);
    }

    #[test]
    fn a_detection_claims_the_leak_that_started_last() {
        let leak = |start: &str| TruthLeak {
            kind: "leak".into(),
            start: t(start),
            end: None,
            dma: Some("A".into()),
            pipe: None,
            profile: Some("abrupt".into()),
            flow_m3h: Some(1.0),
        };
        let truth = vec![leak("2018-01-01T00:00:00Z"), leak("2018-01-10T00:00:00Z")];
        let events = vec![event("A", "2018-01-10T02:00:00Z")];
        let s = score(
            &truth,
            &events,
            t("2018-01-20T00:00:00Z"),
            Economics::default(),
        );
        assert_eq!((s.found, s.false_alarms), (1, 0));
        assert_eq!(s.median_delay_h["abrupt"], 2.0);
    }

    #[test]
    fn paired_delays_compare_only_the_leaks_both_found() {
        let leak = |dma: &str, start: &str| TruthLeak {
            kind: "leak".into(),
            start: t(start),
            end: None,
            dma: Some(dma.into()),
            pipe: None,
            profile: Some("incipient".into()),
            flow_m3h: Some(1.0),
        };
        let truth = vec![
            leak("A", "2018-01-01T00:00:00Z"),
            leak("B", "2018-01-01T00:00:00Z"),
            leak("C", "2018-01-01T00:00:00Z"),
        ];
        let horizon = t("2018-01-20T00:00:00Z");
        // `a` finds all three (after 10, 60 and 90 h), `b` only B, after 50 h: b's own median
        // (50 h) is shorter than a's (60 h), but on the one leak both found a was 10 h later.
        let a = score(
            &truth,
            &[
                event("A", "2018-01-01T10:00:00Z"),
                event("B", "2018-01-03T12:00:00Z"),
                event("C", "2018-01-04T18:00:00Z"),
            ],
            horizon,
            Economics::default(),
        );
        let b = score(
            &truth,
            &[event("B", "2018-01-03T02:00:00Z")],
            horizon,
            Economics::default(),
        );
        assert_eq!(a.median_delay_h["all"], 60.0);
        assert_eq!(b.median_delay_h["all"], 50.0);
        let p = paired_delays(&truth, &a, &b);
        assert_eq!(p.both, 1);
        assert_eq!(p.median_h, Some((60.0, 50.0)));
        assert_eq!((p.earlier, p.later), (0, 1));
        assert_eq!(paired_delays(&truth, &b, &a).earlier, 1);
        let none = paired_delays(
            &truth,
            &a,
            &score(&truth, &[], horizon, Economics::default()),
        );
        assert_eq!((none.both, none.median_h), (0, None));
    }

    #[test]
    fn a_bad_truth_line_is_named() {
        let err = read_truth("{}\n".as_bytes(), "truth.jsonl").unwrap_err();
        assert!(err.contains("truth.jsonl line 1"), "{err}");
    }
}
