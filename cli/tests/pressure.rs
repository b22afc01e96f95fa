//! `waterline analyze pressure` as a script drives it (CONTRACTS §3–§4): band events as JSON
//! Lines, the daily compliance rate as CSV, one-line reasons on bad input.

use std::fmt::Write as _;

mod process;
use process::run;

const NETWORK: &str = r#"
timezone = "UTC"
[[dma]]
id = "A"
inlets = ["A-in"]
min_service_pressure_m = 20.0
[[sensor]]
id = "A-in"
kind = "flow"
unit = "m3/h"
[[sensor]]
id = "A-p"
kind = "pressure"
unit = "kPa"
dma = "A"
"#;

#[test]
fn analyze_pressure_reports_the_sag_and_the_daily_compliance() {
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("network.toml");
    std::fs::write(&net, NETWORK).unwrap();
    // Two days of 15-minute readings at 300 kPa (30.6 m); 06:00–08:00 on day 2 at 150 kPa.
    let mut csv = String::from("time,sensor,value\n");
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-03-02T00:00:00Z").unwrap();
    for k in 0..2 * 96 {
        let t = t0 + chrono::TimeDelta::minutes(15 * k);
        let v = if (96 + 24..96 + 32).contains(&k) {
            150.0
        } else {
            300.0 + (k % 3) as f64
        };
        let _ = writeln!(csv, "{},A-p,{v}", t.format("%Y-%m-%dT%H:%M:%SZ"));
    }
    let readings = dir.path().join("readings.csv");
    std::fs::write(&readings, csv).unwrap();
    let kpis = dir.path().join("days.csv");
    let (code, stdout, stderr) = run(&[
        "analyze",
        "pressure",
        "--network",
        net.to_str().unwrap(),
        "--readings",
        readings.to_str().unwrap(),
        "--daily-kpis",
        kpis.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1, "{stdout}");
    assert_eq!(events[0]["kind"], "pressure_low");
    assert_eq!(events[0]["sensor"], "A-p");
    assert_eq!(events[0]["start"], "2026-03-03T06:00:00Z");
    assert_eq!(events[0]["end"], "2026-03-03T08:00:00Z");
    let days = std::fs::read_to_string(&kpis).unwrap();
    let lines: Vec<&str> = days.lines().collect();
    assert_eq!(
        lines[0],
        "scope,id,date,readings,qualified,compliance_percent"
    );
    assert!(
        lines.contains(&"point,A-p,2026-03-02,96,96,100.000"),
        "{days}"
    );
    assert!(
        lines.contains(&"point,A-p,2026-03-03,96,88,91.667"),
        "{days}"
    );
    assert!(lines.contains(&"zone,A,2026-03-03,96,88,91.667"), "{days}");
    assert!(
        lines.contains(&"network,network,2026-03-03,96,88,91.667"),
        "{days}"
    );

    let (code, _, stderr) = run(&[
        "analyze",
        "pressure",
        "--network",
        net.to_str().unwrap(),
        "--readings",
        "/nonexistent/readings.csv",
    ]);
    assert_ne!(code, 0);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/nonexistent/readings.csv"), "{stderr}");
}
