//! The quality chain on real data: the CANARY tutorial's Station B and its plant (20-minute
//! steps, Feb–May 2006, `data/canary-station-b/`, unlabelled). What the file is known to
//! hold: Station B's chlorine analyser reads 0.00–0.01 mg/L for a month from 26 February, its
//! TOC stays at 10.31 mg/L from the first row for four weeks, and on 1 April the plant's pH
//! reads 4.0 and its turbidity 0 together for nine hours (maintenance). Those must be
//! instrument faults; and the detector must not drown the lab in events.

use std::fmt::Write as _;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use waterline_analytics::quality::{self, QualityConfig};
use waterline_analytics::{LoadOptions, Readings};
use waterline_core::{Event, EventKind, Network};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/canary-station-b")
}

/// The wide tutorial file as a readings file (CONTRACTS §2): ids without `_VAL`/`_OP`,
/// temperature from °F to °C, local times read as EST (UTC−05:00) throughout.
fn readings_csv() -> String {
    let wide = std::fs::read_to_string(data_dir().join("Tutorial_Station_B.csv")).expect("data");
    let mut lines = wide.lines();
    let header: Vec<String> = lines
        .next()
        .expect("header")
        .split(',')
        .map(|c| c.replace("_VAL", "").replace("_OP", ""))
        .collect();
    let mut out = String::from("time,sensor,value\n");
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let (date, time) = f[0].split_once(' ').expect("timestamp");
        let d: Vec<&str> = date.split('/').collect();
        let stamp = format!("{}-{}-{}T{time}-05:00", d[2], d[0], d[1]);
        for (c, v) in header.iter().zip(&f).skip(1) {
            let v = match (c.as_str(), v.parse::<f64>()) {
                (_, Err(_)) => String::new(),
                ("B_TEMP", Ok(x)) => format!("{:.2}", (x - 32.0) * 5.0 / 9.0),
                (_, Ok(_)) => v.to_string(),
            };
            let _ = writeln!(out, "{stamp},{c},{v}");
        }
    }
    out
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

fn covers(e: &Event, t: DateTime<Utc>) -> bool {
    e.start <= t && e.end.is_none_or(|end| end > t)
}

fn faults<'a>(events: &'a [Event], sensor: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.kind == EventKind::SensorFault)
        .filter(|e| e.sensor.as_ref().is_some_and(|s| s.as_str() == sensor))
        .collect()
}

#[test]
fn station_b_faults_are_faults_and_events_stay_few() {
    let text = std::fs::read_to_string(data_dir().join("network.toml")).expect("network");
    let net = Network::parse(&text).expect("network parses");
    let (readings, report) = Readings::from_csv(
        readings_csv().as_bytes(),
        "station-b",
        &net,
        LoadOptions::default(),
    )
    .expect("readings");
    assert_eq!(report.bad_rows, 0);
    assert!(
        report.unknown_sensors.is_empty(),
        "{:?}",
        report.unknown_sensors
    );
    let result = quality::analyze(&readings, &net, &QualityConfig::default());
    let events = &result.events;

    // The dead chlorine analyser: one fault covers the middle of its month.
    assert!(
        faults(events, "B_CL2")
            .iter()
            .any(|e| covers(e, at("2006-03-05T00:00:00Z")) || covers(e, at("2006-03-20T00:00:00Z"))),
        "chlorine at 0 for a month is not a fault"
    );
    // TOC frozen from the start: a flatline within a day and a half of the first row.
    let toc = faults(events, "B_TOC");
    assert!(
        toc.iter()
            .any(|e| e.detected_at <= at("2006-02-22T12:00:00Z")
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("flatline"))),
        "{toc:?}"
    );
    // Plant maintenance on 1 April: pH 4.0 and turbidity 0 are floor faults, noted together.
    for sensor in ["B_PLNT_PH", "B_PLNT_TURB"] {
        let f = faults(events, sensor);
        assert!(
            f.iter().any(|e| covers(e, at("2006-04-01T18:00:00Z"))
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("floor") && m.contains("at the same time"))),
            "{sensor}: {f:?}"
        );
    }
    // … and no pH alarm from the buffer value.
    assert!(
        !events.iter().any(|e| e.kind == EventKind::QualityThreshold
            && e.sensor.as_ref().is_some_and(|s| s.as_str() == "B_PLNT_PH")
            && covers(e, at("2006-04-01T18:00:00Z"))),
        "pH 4.0 during maintenance raised a threshold alarm"
    );
    // Not drowning the lab: at most four quality events per station-week on this data.
    let weeks = 100.0 / 7.0;
    for station in ["B", "PLANT"] {
        let n = events
            .iter()
            .filter(|e| e.kind == EventKind::QualityEvent)
            .filter(|e| e.station.as_ref().is_some_and(|s| s.as_str() == station))
            .count();
        assert!(
            (n as f64) / weeks <= 4.0,
            "station {station}: {n} quality events in {weeks:.0} weeks"
        );
    }
    // Causal throughout.
    for e in events {
        assert!(e.start <= e.detected_at, "{e:?}");
        if let Some(end) = e.end {
            assert!(end >= e.start, "{e:?}");
        }
    }
}
