//! `waterline analyze quality` and `waterline evaluate quality` as a script drives them
//! (CONTRACTS §3–§4): events as JSON Lines, exit 0 when nothing is found, one-line reasons on
//! bad input, row-wise scores against a truth file or labelled rows.

use std::fmt::Write as _;

mod process;
use process::{Noise, run, write};

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
id = "S-temp"
kind = "temperature"
unit = "degC"
station = "S"
role = "context"
"#;

/// 6 days of 10-minute station data; chlorine down by half and turbidity up fivefold on day 5
/// from 06:00 to 10:00 UTC when `incident`.
fn readings_csv(incident: bool) -> String {
    let mut s = String::from("time,sensor,value\n");
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-03-02T00:00:00Z").unwrap();
    let mut noise = Noise::new();
    let mut noise = || noise.next();
    for k in 0..6 * 144 {
        let t = t0 + chrono::TimeDelta::minutes(10 * k);
        let hour = (k % 144) as f64 / 6.0;
        let inc = incident && (4 * 144 + 36..4 * 144 + 60).contains(&k);
        let f = if inc { 1.0 } else { 0.0 };
        let cl2 = (0.8 + 0.1 * (std::f64::consts::TAU * hour / 24.0).sin()) * (1.0 - 0.5 * f)
            + 0.02 * noise();
        let turb = 0.2 * (1.0 + 4.0 * f) + 0.01 * noise();
        let stamp = t.format("%Y-%m-%dT%H:%M:%SZ");
        let _ = writeln!(s, "{stamp},S-cl2,{cl2:.2}");
        let _ = writeln!(s, "{stamp},S-turb,{turb:.3}");
        let _ = writeln!(s, "{stamp},S-temp,{:.1}", 12.0 + noise());
    }
    s
}

const TRUTH: &str = "{\"kind\":\"quality_event\",\"incident\":\"qi1\",\"type\":\"contamination\",\
\"station\":\"S\",\"sensors\":[\"S-cl2\",\"S-turb\"],\"start\":\"2026-03-06T06:00:00Z\",\
\"end\":\"2026-03-06T10:00:00Z\"}\n";

#[test]
fn analyze_quality_reports_the_incident_and_its_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let net = write(dir.path(), "network.toml", NETWORK);
    let csv = write(dir.path(), "readings.csv", &readings_csv(true));
    let (code, stdout, stderr) =
        run(&["analyze", "quality", "--network", &net, "--readings", &csv]);
    assert_eq!(code, 0, "{stderr}");
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let quality: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["kind"] == "quality_event")
        .collect();
    assert_eq!(quality.len(), 1, "{stdout}");
    let e = quality[0];
    assert_eq!(e["station"], "S");
    assert!(e["detected_at"].as_str().unwrap() >= "2026-03-06T06:00:00Z");
    assert!(
        e["detected_at"].as_str().unwrap() <= "2026-03-06T07:00:00Z",
        "{e}"
    );
    let sensors: Vec<&str> = e["sensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        sensors.contains(&"S-cl2") && sensors.contains(&"S-turb"),
        "{e}"
    );
    // Turbidity at 1 NTU crosses nothing (the advisory needs more than 1.0) — or, with noise,
    // just the advisory: never an alert.
    for t in events.iter().filter(|e| e["kind"] == "quality_threshold") {
        assert_eq!(t["sensor"], "S-turb", "{t}");
        assert_eq!(t["severity"], "info", "{t}");
    }
    assert!(stderr.contains("1 quality events"), "{stderr}");
}

#[test]
fn analyze_quality_exits_0_with_nothing_to_report() {
    let dir = tempfile::tempdir().unwrap();
    let net = write(dir.path(), "network.toml", NETWORK);
    let csv = write(dir.path(), "readings.csv", &readings_csv(false));
    let out = dir.path().join("events.jsonl");
    let (code, stdout, stderr) = run(&[
        "analyze",
        "quality",
        "--network",
        &net,
        "--readings",
        &csv,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty());
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(
        !written.contains("quality_event"),
        "a healthy station raises no event: {written}"
    );
}

#[test]
fn bad_quality_flags_are_one_line_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let net = write(dir.path(), "network.toml", NETWORK);
    let csv = write(dir.path(), "readings.csv", &readings_csv(false));
    let (code, _, stderr) = run(&[
        "analyze",
        "quality",
        "--network",
        &net,
        "--readings",
        &csv,
        "--bed-probability",
        "1.5",
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--bed-probability 1.5"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let (code, _, stderr) = run(&[
        "analyze",
        "quality",
        "--network",
        &net,
        "--readings",
        &csv,
        "--algorithm",
        "magic",
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("magic"), "{stderr}");
}

#[test]
fn evaluate_quality_scores_rows_against_truth_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "network.toml", NETWORK);
    write(dir.path(), "readings.csv", &readings_csv(true));
    write(dir.path(), "truth.jsonl", TRUTH);
    let d = dir.path().display().to_string();
    let (code, stdout, stderr) = run(&["evaluate", "quality", "--dir", &d]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("incidents found 1/1"), "{stdout}");
    let f1: f64 = stdout
        .split("F1 ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no F1 in {stdout}"));
    assert!(f1 >= 0.8, "{stdout}");

    // The same incident as labelled rows.
    let mut labels = String::from("time,event\n");
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-03-02T00:00:00Z").unwrap();
    for k in 0..6 * 144 {
        let t = t0 + chrono::TimeDelta::minutes(10 * k);
        let event = (4 * 144 + 36..4 * 144 + 60).contains(&k);
        let _ = writeln!(labels, "{},{event}", t.format("%Y-%m-%dT%H:%M:%SZ"));
    }
    let labels = write(dir.path(), "labels.csv", &labels);
    let (code, stdout, stderr) = run(&["evaluate", "quality", "--dir", &d, "--labels", &labels]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("labelled 24"), "{stdout}");
    assert!(
        !stdout.contains("incidents"),
        "labels have no incidents: {stdout}"
    );
}
