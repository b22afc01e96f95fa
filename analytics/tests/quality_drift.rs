//! Analyser drift through the whole quality chain, on a synthetic station whose truth is
//! known: a second chlorine analyser (`redundant_of`) shows the primary drifting and stands in
//! for it, and the lab's daily grab samples show a turbidity analyser drifting.

use waterline_analytics::Readings;
use waterline_analytics::quality::{self, LabSample, QualityConfig};
use waterline_core::testing::XorShift;
use waterline_core::{Event, EventKind, Network, SensorId, SensorKind, StationId};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// 2026-03-02T00:00:00Z.
const T0: i64 = 1_772_409_600_000;
const STEP: i64 = 5 * MIN;
const DAYS: i64 = 14;

/// The primary chlorine analyser reads low by up to 0.5 mg/L from day 4 to day 8, then is
/// recalibrated.
const CL2_DRIFT: (i64, i64) = (4 * DAY, 8 * DAY);
/// The turbidity analyser reads high by up to 0.5 NTU from day 2 to day 6.
const TURB_DRIFT: (i64, i64) = (2 * DAY, 6 * DAY);
/// A contamination passes the station on day 11, 10:00–14:00.
const INCIDENT: (i64, i64) = (11 * DAY + 10 * HOUR, 11 * DAY + 14 * HOUR);

fn network(redundant: bool) -> Network {
    let mut text = String::from("timezone = \"UTC\"\n");
    for (id, kind, unit, res) in [
        ("S-cl2", "chlorine", "mg/L", 0.01),
        ("S-turb", "turbidity", "NTU", 0.001),
        ("S-ph", "ph", "pH", 0.01),
        ("S-cond", "conductivity", "uS/cm", 0.1),
        ("S-toc", "toc", "mg/L", 0.01),
        ("S-temp", "temperature", "degC", 0.1),
    ] {
        text.push_str(&format!(
            "[[sensor]]\nid = \"{id}\"\nkind = \"{kind}\"\nunit = \"{unit}\"\nstation = \"S\"\nresolution = {res}\n"
        ));
    }
    if redundant {
        text.push_str(
            "[[sensor]]\nid = \"S-cl2b\"\nkind = \"chlorine\"\nunit = \"mg/L\"\nstation = \"S\"\n\
             resolution = 0.01\nredundant_of = \"S-cl2\"\n",
        );
    }
    Network::parse(&text).expect("network")
}

fn ramp(off: i64, (a, b): (i64, i64)) -> f64 {
    if off < a || off >= b {
        0.0
    } else {
        (off - a) as f64 / (b - a) as f64
    }
}

fn incident(off: i64) -> f64 {
    let (a, b) = INCIDENT;
    let r = 30 * MIN;
    if off < a || off >= b + r {
        0.0
    } else if off < a + r {
        (off - a) as f64 / r as f64
    } else if off < b {
        1.0
    } else {
        1.0 - (off - b) as f64 / r as f64
    }
}

/// The true water at offset `off`: chlorine, turbidity.
fn water(off: i64) -> (f64, f64) {
    let hour = (off % DAY) as f64 / HOUR as f64;
    let day = off as f64 / DAY as f64;
    let age_h = 20.0 + 8.0 * (std::f64::consts::TAU * (hour - 4.0) / 24.0).cos();
    let inc = incident(off);
    let cl2 = 1.1 * (-0.02 * age_h).exp() * (1.0 - 0.6 * inc);
    let turb = (0.25 + 0.02 * (day * 0.7).sin()) * (1.0 + 5.0 * inc);
    (cl2, turb)
}

/// The station's readings; the turbidity analyser drifts when `turbidity_drifts`.
fn readings(net: &Network, turbidity_drifts: bool) -> Readings {
    let mut rng = XorShift(0x5eed_0d71);
    let id = |s: &str| SensorId::parse(s).expect("id");
    let q = |x: f64, r: f64| (x / r).round() * r;
    let mut rows = Vec::new();
    for k in 0..(DAYS * DAY / STEP) {
        let off = k * STEP;
        let t = T0 + off;
        let hour = (off % DAY) as f64 / HOUR as f64;
        let day = off as f64 / DAY as f64;
        let inc = incident(off);
        let (cl2, turb) = water(off);
        let cl2_read = cl2 - 0.5 * ramp(off, CL2_DRIFT) + 0.01 * rng.normal();
        let cl2b_read = cl2 + 0.02 + 0.01 * rng.normal();
        let bias = if turbidity_drifts {
            0.5 * ramp(off, TURB_DRIFT)
        } else {
            0.0
        };
        let turb_read = turb + bias + 0.005 * rng.normal();
        let ph = 7.4 + 0.05 * (std::f64::consts::TAU * hour / 24.0).sin() + 0.01 * rng.normal();
        let cond = 320.0 + 5.0 * (day * 0.5).sin() + 20.0 * inc + 0.8 * rng.normal();
        let toc = 2.0 + 0.1 * (day * 0.3).cos() + 2.0 * inc + 0.03 * rng.normal();
        let temp =
            12.0 + 1.5 * (std::f64::consts::TAU * (hour - 15.0) / 24.0).cos() + 0.05 * rng.normal();
        rows.push((id("S-cl2"), t, q(cl2_read, 0.01)));
        rows.push((id("S-cl2b"), t, q(cl2b_read, 0.01)));
        rows.push((id("S-turb"), t, q(turb_read, 0.001)));
        rows.push((id("S-ph"), t, q(ph, 0.01)));
        rows.push((id("S-cond"), t, q(cond, 0.1)));
        rows.push((id("S-toc"), t, q(toc, 0.01)));
        rows.push((id("S-temp"), t, q(temp, 0.1)));
    }
    Readings::from_rows(net, rows)
}

/// The lab's turbidity grab samples: every day at 09:00, the true water within 0.02 NTU,
/// reported two hours later.
fn grab_samples() -> Vec<LabSample> {
    let mut rng = XorShift(0x1ab_5a3);
    (0..DAYS)
        .map(|d| {
            let off = d * DAY + 9 * HOUR;
            LabSample {
                station: StationId::parse("S").expect("id"),
                kind: SensorKind::Turbidity,
                value: ((water(off).1 + 0.01 * rng.normal()) * 100.0).round() / 100.0,
                sampled_at: T0 + off,
                known_at: T0 + off + 2 * HOUR,
                sample_id: Some(format!("LIMS-{d}")),
            }
        })
        .collect()
}

fn off(t: &chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis() - T0
}

fn drift_faults<'a>(events: &'a [Event], sensor: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.kind == EventKind::SensorFault)
        .filter(|e| e.sensor.as_ref().is_some_and(|s| s.as_str() == sensor))
        .filter(|e| e.message.as_deref().is_some_and(|m| m.starts_with("drift")))
        .collect()
}

#[test]
fn a_redundant_analyser_shows_the_primary_drifting_and_stands_in_for_it() {
    let net = network(true);
    let r = readings(&net, false);
    let report = quality::analyze(&r, &net, &QualityConfig::default());
    let events = &report.events;

    let drift = drift_faults(events, "S-cl2");
    assert_eq!(drift.len(), 1, "{events:#?}");
    let d = drift[0];
    let ids: Vec<&str> = d.sensors.iter().map(SensorId::as_str).collect();
    assert_eq!(ids, ["S-cl2", "S-cl2b"]);
    let msg = d.message.as_deref().unwrap_or_default();
    assert!(msg.contains("S-cl2 drifts"), "told which one: {msg}");
    // Found within about a day of its start (0.12 mg/L is reached after ~23 h), estimated to
    // start after it did, and closed by the recalibration.
    let (a, b) = CL2_DRIFT;
    assert!(
        off(&d.detected_at) > a && off(&d.detected_at) < a + 36 * HOUR,
        "{d:?}"
    );
    assert!(off(&d.start) >= a && d.start < d.detected_at, "{d:?}");
    let end = off(&d.end.expect("recalibrated"));
    assert!((b..b + 3 * HOUR).contains(&end), "{d:?}");
    assert!(
        d.value.is_some_and(|v| v > 0.1),
        "redundant minus primary: {d:?}"
    );
    assert!(
        drift_faults(events, "S-cl2b").is_empty(),
        "the healthy analyser is not blamed"
    );

    // While the primary drifts, the redundant analyser stands in: no quality event, no
    // threshold alert on the false low chlorine; the real incident is still one event.
    let quality: Vec<&Event> = events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::QualityEvent | EventKind::QualityThreshold
            )
        })
        .collect();
    let (ia, ib) = INCIDENT;
    for e in &quality {
        let t = off(&e.detected_at);
        assert!(
            (ia..ib + 2 * HOUR).contains(&t),
            "only the incident raises quality events or alerts: {e:?}"
        );
    }
    assert_eq!(
        quality
            .iter()
            .filter(|e| e.kind == EventKind::QualityEvent)
            .count(),
        1,
        "{quality:#?}"
    );
}

#[test]
fn grab_samples_show_an_analyser_drifting_and_its_recalibration() {
    let net = network(false);
    let r = readings(&net, true);
    let samples = grab_samples();
    let report = quality::analyze_with(&r, &net, &QualityConfig::default(), &[], &samples);
    let drift = drift_faults(&report.events, "S-turb");
    assert_eq!(drift.len(), 1, "{:#?}", report.events);
    let d = drift[0];
    let (a, b) = TURB_DRIFT;
    // The daily samples: the last that agreed is the onset estimate; the first beyond the
    // tolerance (0.1 NTU: 0.5 NTU over 4 days passes it on day 2.8) is within twice the
    // tolerance, so the next day's confirms it, known two hours after it was taken; the first
    // sample after the recalibration closes it.
    let first_beyond = 3 * DAY + 9 * HOUR;
    assert_eq!(off(&d.start), first_beyond - DAY, "{d:?}");
    assert_eq!(off(&d.detected_at), first_beyond + DAY + 2 * HOUR, "{d:?}");
    assert_eq!(off(&d.end.expect("recalibrated")), b + 9 * HOUR, "{d:?}");
    assert!(off(&d.start) <= a + DAY);
    let msg = d.message.as_deref().unwrap_or_default();
    assert!(
        msg.contains("sample LIMS-3") && msg.contains("3 disagreeing"),
        "{msg}"
    );
    // Without the samples nothing shows the drift: the signal's own history cannot.
    let blind = quality::analyze(&r, &net, &QualityConfig::default());
    assert!(drift_faults(&blind.events, "S-turb").is_empty());
}

#[test]
fn a_drift_seen_by_the_pair_and_the_lab_is_one_event() {
    let net = network(true);
    let r = readings(&net, false);
    // The lab's chlorine, daily at 09:00: the true water.
    let samples: Vec<LabSample> = (0..DAYS)
        .map(|d| {
            let off = d * DAY + 9 * HOUR;
            LabSample {
                station: StationId::parse("S").expect("id"),
                kind: SensorKind::Chlorine,
                value: (water(off).0 * 100.0).round() / 100.0,
                sampled_at: T0 + off,
                known_at: T0 + off + HOUR,
                sample_id: Some(format!("CL-{d}")),
            }
        })
        .collect();
    let report = quality::analyze_with(&r, &net, &QualityConfig::default(), &[], &samples);
    let drift = drift_faults(&report.events, "S-cl2");
    assert_eq!(drift.len(), 1, "{:#?}", report.events);
    let msg = drift[0].message.as_deref().unwrap_or_default();
    assert!(
        msg.contains("redundant analysers") && msg.contains("confirmed by the lab"),
        "{msg}"
    );
    assert_eq!(drift[0].confidence, Some(0.9));
    assert!(drift_faults(&report.events, "S-cl2b").is_empty());
}
