//! The quality chain on a synthetic monitoring station whose truth is known: chlorine that
//! decays with a diurnal water age, turbidity, pH, conductivity and TOC with slow variation
//! and instrument noise, temperature and the flow in the main as context; one contamination
//! incident (chlorine down, turbidity and TOC up), one fault of each kind on single channels,
//! a pump cycling on and off and a flow surge that stirs up the main's deposits.

use waterline_analytics::Readings;
use waterline_analytics::quality::{self, QualityConfig};
use waterline_core::testing::XorShift;
use waterline_core::{Event, EventKind, Network, SensorId, Severity};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// 2026-03-02T00:00:00Z.
const T0: i64 = 1_772_409_600_000;
const STEP: i64 = 5 * MIN;
const DAYS: i64 = 12;

const NETWORK: &str = r#"
timezone = "Asia/Shanghai"
[[sensor]]
id = "S-cl2"
kind = "chlorine"
unit = "mg/L"
station = "S"
resolution = 0.01
[[sensor]]
id = "S-turb"
kind = "turbidity"
unit = "NTU"
station = "S"
resolution = 0.001
[[sensor]]
id = "S-ph"
kind = "ph"
unit = "pH"
station = "S"
resolution = 0.01
[[sensor]]
id = "S-cond"
kind = "conductivity"
unit = "uS/cm"
station = "S"
resolution = 0.1
[[sensor]]
id = "S-toc"
kind = "toc"
unit = "mg/L"
station = "S"
resolution = 0.01
[[sensor]]
id = "S-temp"
kind = "temperature"
unit = "degC"
station = "S"
role = "context"
resolution = 0.1
[[sensor]]
id = "S-flow"
kind = "flow"
unit = "m3/h"
station = "S"
resolution = 0.01
"#;

/// Incident: day 8 10:00–14:00 (ramps of 30 min at both ends).
const INCIDENT: (i64, i64) = (8 * DAY + 10 * HOUR, 8 * DAY + 14 * HOUR);
/// Faults (offsets from T0).
const FLATLINE_PH: (i64, i64) = (3 * DAY + 2 * HOUR, 3 * DAY + 14 * HOUR);
const FLOOR_PH: (i64, i64) = (4 * DAY + 9 * HOUR, 4 * DAY + 11 * HOUR);
const SPIKES_COND: [i64; 3] = [5 * DAY + 3 * HOUR, 5 * DAY + 4 * HOUR, 5 * DAY + 6 * HOUR];
const DROPOUT_TURB: (i64, i64) = (6 * DAY + 13 * HOUR, 6 * DAY + 16 * HOUR);
/// Day 2: a booster pump cycling, the main's flow down to 1 m³/h for single steps.
const PUMP_CYCLES: (i64, i64) = (2 * DAY, 3 * DAY);
/// Day 7 02:00–05:00: the flow in the main eightfold (a valve operation rerouting supply),
/// lifting its deposits: turbidity +0.3 NTU, nothing else changes.
const SURGE: (i64, i64) = (7 * DAY + 2 * HOUR, 7 * DAY + 5 * HOUR);

fn quantise(x: f64, res: f64) -> f64 {
    (x / res).round() * res
}

/// Incident strength at offset `t`: 0 outside, ramps to 1.
fn incident(t: i64) -> f64 {
    let (a, b) = INCIDENT;
    let ramp = 30 * MIN;
    if t < a || t >= b + ramp {
        0.0
    } else if t < a + ramp {
        (t - a) as f64 / ramp as f64
    } else if t < b {
        1.0
    } else {
        1.0 - (t - b) as f64 / ramp as f64
    }
}

fn readings(net: &Network) -> Readings {
    let mut rng = XorShift(0x5eed_0001);
    let mut flow_rng = XorShift(0x5eed_0002);
    let id = |s: &str| SensorId::parse(s).expect("id");
    let mut rows = Vec::new();
    let mut frozen_ph = None;
    for k in 0..(DAYS * DAY / STEP) {
        let off = k * STEP;
        let t = T0 + off;
        let hour = (off % DAY) as f64 / HOUR as f64;
        let day = off as f64 / DAY as f64;
        let age_h = 20.0 + 8.0 * (std::f64::consts::TAU * (hour - 4.0) / 24.0).cos();
        let inc = incident(off);
        let cl2 = 1.1 * (-0.02 * age_h).exp() * (1.0 - 0.6 * inc) + 0.01 * rng.normal();
        let surge = (SURGE.0..SURGE.1).contains(&off);
        let turb = (0.25 + 0.02 * (day * 0.7).sin()) * (1.0 + 5.0 * inc)
            + 0.01 * rng.normal()
            + if surge { 0.3 } else { 0.0 };
        let mut flow = (12.0 + 6.0 * (std::f64::consts::TAU * (hour - 8.0) / 24.0).sin())
            * (1.0 + 0.01 * flow_rng.normal());
        if surge {
            flow *= 8.0;
        }
        if (PUMP_CYCLES.0..PUMP_CYCLES.1).contains(&off) && off % (2 * HOUR) == 0 {
            flow = 1.0;
        }
        let mut ph = 7.4 + 0.05 * (std::f64::consts::TAU * hour / 24.0).sin() + 0.01 * rng.normal();
        let mut cond = 320.0 + 5.0 * (day * 0.5).sin() + 20.0 * inc + 0.8 * rng.normal();
        let toc = 2.0 + 0.1 * (day * 0.3).cos() + 2.0 * inc + 0.03 * rng.normal();
        let temp =
            12.0 + 1.5 * (std::f64::consts::TAU * (hour - 15.0) / 24.0).cos() + 0.05 * rng.normal();

        if (FLATLINE_PH.0..FLATLINE_PH.1).contains(&off) {
            ph = *frozen_ph.get_or_insert(quantise(ph, 0.01));
        }
        if (FLOOR_PH.0..FLOOR_PH.1).contains(&off) {
            ph = 4.0;
        }
        if SPIKES_COND.contains(&off) {
            cond += 180.0;
        }
        rows.push((id("S-cl2"), t, quantise(cl2, 0.01)));
        if !(DROPOUT_TURB.0..DROPOUT_TURB.1).contains(&off) {
            rows.push((id("S-turb"), t, quantise(turb, 0.001)));
        }
        rows.push((id("S-ph"), t, quantise(ph, 0.01)));
        rows.push((id("S-cond"), t, quantise(cond, 0.1)));
        rows.push((id("S-toc"), t, quantise(toc, 0.01)));
        rows.push((id("S-temp"), t, quantise(temp, 0.1)));
        rows.push((id("S-flow"), t, quantise(flow, 0.01)));
    }
    Readings::from_rows(net, rows)
}

fn off(e: &chrono::DateTime<chrono::Utc>) -> i64 {
    e.timestamp_millis() - T0
}

fn faults_of<'a>(events: &'a [Event], sensor: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.kind == EventKind::SensorFault)
        .filter(|e| e.sensor.as_ref().is_some_and(|s| s.as_str() == sensor))
        .collect()
}

fn overlaps(e: &Event, w: (i64, i64)) -> bool {
    let end = e.end.as_ref().map_or(i64::MAX, off);
    off(&e.start) < w.1 + HOUR && w.0 < end
}

#[test]
fn the_incident_is_one_event_and_each_fault_is_a_fault() {
    let net = Network::parse(NETWORK).expect("network");
    let r = readings(&net);
    let report = quality::analyze(&r, &net, &QualityConfig::default());
    let events = &report.events;
    let summary: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} {:?} {:.1}h..{:?} det {:.1}h {}",
                e.kind,
                e.sensor.as_ref().map(|s| s.to_string()),
                off(&e.start) as f64 / HOUR as f64,
                e.end.as_ref().map(|x| off(x) as f64 / HOUR as f64),
                off(&e.detected_at) as f64 / HOUR as f64,
                e.message.clone().unwrap_or_default()
            )
        })
        .collect();
    let all = summary.join("\n");

    // Exactly one quality event: the incident, found within 30 min of its onset and ended
    // within an hour of the water being back to normal. The turbidity the flow surge stirs up
    // is explained by the flow (a turbidity-only change as large as this one raises an event
    // without it: `detect.rs`'s unit tests).
    let q: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == EventKind::QualityEvent)
        .collect();
    assert_eq!(q.len(), 1, "{all}");
    let e = q[0];
    let delay = off(&e.detected_at) - INCIDENT.0;
    assert!((0..=30 * MIN).contains(&delay), "delay {delay} ms\n{all}");
    let end = off(e.end.as_ref().expect("closed"));
    assert!(
        (INCIDENT.1..=INCIDENT.1 + 90 * MIN).contains(&end),
        "end {end}\n{all}"
    );
    // The event names the signals abnormal when it was detected: turbidity and at least one
    // more of the incident's (strong evidence opens it within two steps, possibly before
    // chlorine has moved far enough).
    let sensors: Vec<&str> = e.sensors.iter().map(|s| s.as_str()).collect();
    assert!(
        sensors.contains(&"S-turb") && (sensors.contains(&"S-cl2") || sensors.contains(&"S-toc")),
        "{sensors:?}"
    );
    assert!(
        !sensors.contains(&"S-temp") && !sensors.contains(&"S-flow"),
        "context never alarms"
    );
    assert_eq!(e.severity, Some(Severity::Alarm));

    // Turbidity reaches 1.5 NTU: an advisory crossing of 1 NTU inside the incident.
    let th: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == EventKind::QualityThreshold)
        .collect();
    assert!(!th.is_empty(), "{all}");
    for e in &th {
        assert!(
            overlaps(e, INCIDENT),
            "threshold outside the incident\n{all}"
        );
    }
    assert!(th.iter().any(|e| e.severity == Some(Severity::Info)
        && e.sensor.as_ref().is_some_and(|s| s.as_str() == "S-turb")));
    // The pH floor value 4.0 is a fault, not a pH alarm.
    assert!(
        !th.iter()
            .any(|e| e.sensor.as_ref().is_some_and(|s| s.as_str() == "S-ph")),
        "{all}"
    );

    // Faults: each injected one is reported on its sensor, with its kind.
    let ph = faults_of(events, "S-ph");
    assert!(
        ph.iter().any(|e| overlaps(e, FLATLINE_PH)
            && e.message
                .as_deref()
                .is_some_and(|m| m.starts_with("flatline"))),
        "{all}"
    );
    assert!(
        ph.iter().any(|e| overlaps(e, FLOOR_PH)
            && e.message.as_deref().is_some_and(|m| m.starts_with("floor"))),
        "{all}"
    );
    let cond = faults_of(events, "S-cond");
    assert!(
        cond.iter().any(
            |e| e.message.as_deref().is_some_and(|m| m.starts_with("spike"))
                && overlaps(e, (SPIKES_COND[0], SPIKES_COND[2]))
        ),
        "{all}"
    );
    let turb = faults_of(events, "S-turb");
    assert!(
        turb.iter().any(|e| overlaps(e, DROPOUT_TURB)
            && e.message
                .as_deref()
                .is_some_and(|m| m.starts_with("dropout"))),
        "{all}"
    );
    // And nothing else: no fault on a healthy channel (the pump's single-step flow drops are
    // operation, not spikes).
    for s in ["S-cl2", "S-toc", "S-temp", "S-flow"] {
        assert!(faults_of(events, s).is_empty(), "{s}\n{all}");
    }
    // Causality: nothing is detected before it starts.
    for e in events {
        assert!(e.start <= e.detected_at, "{all}");
    }
}

/// A healthy station with clock jitter, a ten-hour outage, a repeated hour (the same rows sent
/// twice, as after a logger restart or a DST fold) and shuffled order.
#[test]
fn gaps_jitter_and_repeats_raise_no_alarm() {
    let net = Network::parse(NETWORK).expect("network");
    let mut rng = XorShift(0x0bad_5eed);
    let id = |s: &str| SensorId::parse(s).expect("id");
    let outage = (5 * DAY + 2 * HOUR, 5 * DAY + 12 * HOUR);
    let repeated = (7 * DAY + HOUR, 7 * DAY + 2 * HOUR);
    let mut rows = Vec::new();
    for k in 0..(10 * DAY / STEP) {
        let off = k * STEP;
        if (outage.0..outage.1).contains(&off) {
            continue;
        }
        let jitter = (rng.uniform() * 40.0 - 20.0) as i64 * 1000;
        let t = T0 + off + jitter;
        let hour = (off % DAY) as f64 / HOUR as f64;
        let age_h = 20.0 + 8.0 * (std::f64::consts::TAU * (hour - 4.0) / 24.0).cos();
        let mut push = |s: &str, v: f64, res: f64| rows.push((id(s), t, quantise(v, res)));
        push(
            "S-cl2",
            1.1 * (-0.02 * age_h).exp() + 0.01 * rng.normal(),
            0.01,
        );
        push("S-turb", 0.25 + 0.01 * rng.normal(), 0.001);
        push("S-ph", 7.4 + 0.01 * rng.normal(), 0.01);
        push("S-cond", 320.0 + 0.8 * rng.normal(), 0.1);
        push("S-toc", 2.0 + 0.03 * rng.normal(), 0.01);
        push("S-temp", 12.0 + 0.05 * rng.normal(), 0.1);
        push("S-flow", 12.0 * (1.0 + 0.01 * rng.normal()), 0.01);
    }
    let again: Vec<_> = rows
        .iter()
        .filter(|(_, t, _)| (repeated.0..repeated.1).contains(&(t - T0)))
        .cloned()
        .collect();
    rows.extend(again);
    rows.reverse();
    let report = quality::analyze(
        &Readings::from_rows(&net, rows),
        &net,
        &QualityConfig::default(),
    );
    let alarms: Vec<&Event> = report
        .events
        .iter()
        .filter(|e| {
            e.kind != EventKind::SensorFault
                || !e
                    .message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("dropout"))
        })
        .collect();
    assert!(alarms.is_empty(), "{alarms:#?}");
    // The outage is a dropout of every signal, reported once each, when the data resumed.
    let dropouts = report.events.len();
    assert_eq!(dropouts, 7, "{:#?}", report.events);
    for e in &report.events {
        assert!(off(&e.start) <= outage.0 + STEP && off(&e.start) >= outage.0 - STEP);
        assert!(off(&e.detected_at) >= outage.1 - STEP);
    }
}

/// The lab declared maintenance of station S over the incident and of pH over its floor
/// fault: neither raises anything, and the rest of the station's faults still do.
#[test]
fn declared_maintenance_raises_no_event_and_no_fault() {
    use chrono::DateTime;
    use waterline_core::{DeclaredWindow, Note, StationId, WindowKind, WindowSubject};
    let net = Network::parse(NETWORK).expect("network");
    let r = readings(&net);
    let at = |ms: i64| DateTime::from_timestamp_millis(T0 + ms).unwrap();
    let reason = || Note::parse("reason", "probe cleaning").unwrap();
    let windows = [
        DeclaredWindow::new(
            WindowKind::Maintenance,
            WindowSubject::Station(StationId::parse("S").unwrap()),
            at(INCIDENT.0 - HOUR),
            at(INCIDENT.1 + HOUR),
            reason(),
        )
        .unwrap(),
        DeclaredWindow::new(
            WindowKind::Maintenance,
            WindowSubject::Sensor(SensorId::parse("S-ph").unwrap()),
            at(FLOOR_PH.0 - 10 * MIN),
            at(FLOOR_PH.1 + 10 * MIN),
            reason(),
        )
        .unwrap(),
    ];
    let plain = quality::analyze(&r, &net, &QualityConfig::default());
    let declared = quality::analyze_with(&r, &net, &QualityConfig::default(), &windows, &[]);
    let events_in = |events: &[Event], w: (i64, i64)| -> usize {
        events
            .iter()
            .filter(|e| e.kind == EventKind::QualityEvent && overlaps(e, w))
            .count()
    };
    assert!(
        events_in(&plain.events, INCIDENT) >= 1,
        "the incident without a window"
    );
    assert_eq!(
        events_in(&declared.events, INCIDENT),
        0,
        "{:#?}",
        declared.events
    );
    let floor = |events: &[Event]| {
        faults_of(events, "S-ph")
            .into_iter()
            .filter(|e| overlaps(e, FLOOR_PH))
            .count()
    };
    assert!(floor(&plain.events) >= 1);
    assert_eq!(
        floor(&declared.events),
        0,
        "{:#?}",
        faults_of(&declared.events, "S-ph")
    );
    // The pH flatline (outside the windows) and the conductivity spikes are still faults.
    assert!(
        faults_of(&declared.events, "S-ph")
            .iter()
            .any(|e| overlaps(e, FLATLINE_PH))
    );
    assert_eq!(
        faults_of(&declared.events, "S-cond").len(),
        faults_of(&plain.events, "S-cond").len()
    );
}
