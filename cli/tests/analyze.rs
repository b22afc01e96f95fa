//! `waterline analyze leakage` and `waterline evaluate leakage` as a script drives them
//! (CONTRACTS §3): events on stdout or in `--out`, exit 0 even when nothing is found, a
//! non-zero exit with a one-line reason on bad input, unknown sensors reported once.

use std::fmt::Write as _;

mod process;
use process::{Noise, run, write};

const NETWORK: &str = r#"
timezone = "Asia/Shanghai"
[[dma]]
id = "A"
inlets = ["A-in"]
[[sensor]]
id = "A-in"
kind = "flow"
unit = "L/s"
"#;

/// 21 days of 5-minute inflow (L/s) of a DMA whose demand follows the day, with a burst of
/// 5 L/s (18 m³/h) from day 15 at 09:00 local (01:00 UTC) onwards; plus rows of a sensor the
/// network does not describe.
fn readings_csv() -> String {
    let mut s = String::from("time,sensor,value\n");
    let t0 = chrono::DateTime::parse_from_rfc3339("2018-03-05T00:00:00Z").unwrap();
    let mut noise = Noise::new();
    for k in 0..21 * 288 {
        let t = t0 + chrono::TimeDelta::minutes(5 * k);
        let local_h = ((k % 288) as f64 / 12.0 + 8.0) % 24.0;
        let shape = 1.0 + 0.7 * (std::f64::consts::TAU * (local_h - 10.0) / 24.0).sin();
        let burst = if k >= 15 * 288 + 12 { 5.0 } else { 0.0 };
        let value = 20.0 * shape + 0.2 * noise.next() + burst;
        let _ = writeln!(s, "{},A-in,{value:.3}", t.format("%Y-%m-%dT%H:%M:%SZ"));
        if k % 100 == 0 {
            let _ = writeln!(s, "{},ghost,1.0", t.format("%Y-%m-%dT%H:%M:%SZ"));
        }
    }
    s
}

#[test]
fn analyze_leakage_reports_the_burst_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let net = write(dir.path(), "network.toml", NETWORK);
    let csv = write(dir.path(), "readings.csv", &readings_csv());
    let days = dir.path().join("days.csv").display().to_string();
    let months = dir.path().join("months.csv").display().to_string();
    let (code, stdout, stderr) = run(&[
        "analyze",
        "leakage",
        "--network",
        &net,
        "--readings",
        &csv,
        "--daily-kpis",
        &days,
        "--monthly-kpis",
        &months,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1, "{stdout}");
    let e = &events[0];
    assert_eq!(e["kind"], "burst");
    assert_eq!(e["dma"], "A");
    let flow = e["flow_m3h"].as_f64().unwrap();
    assert!((14.0..22.0).contains(&flow), "18 m³/h expected: {flow}");
    // Onset at 2018-03-20T01:00Z; found within two hours.
    assert_eq!(e["start"], "2018-03-20T01:00:00Z");
    let detected = e["detected_at"].as_str().unwrap();
    assert!(detected.starts_with("2018-03-20T0"), "{detected}");
    // The unknown sensor is reported once, by name.
    assert_eq!(stderr.matches("ghost").count(), 1, "{stderr}");
    let days = std::fs::read_to_string(&days).unwrap();
    assert!(days.starts_with("dma,date,inflow_completeness,siv_m3"));
    assert_eq!(
        days.lines().count(),
        1 + 22,
        "21 UTC days span 22 local days"
    );
    let months = std::fs::read_to_string(&months).unwrap();
    assert!(months.contains("A,2018-03,"), "{months}");
}

#[test]
fn analyze_writes_out_and_exits_0_when_nothing_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let net = write(dir.path(), "network.toml", NETWORK);
    let csv = write(
        dir.path(),
        "r.csv",
        "time,sensor,value\n2018-03-05T00:00:00Z,A-in,3\n2018-03-05T00:05:00Z,A-in,\n",
    );
    let out = dir.path().join("events.jsonl");
    let (code, stdout, stderr) = run(&[
        "analyze",
        "leakage",
        "--network",
        &net,
        "--readings",
        &csv,
        "--out",
        &out.display().to_string(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "");
}

#[test]
fn bad_input_is_one_line_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let net = write(dir.path(), "network.toml", NETWORK);
    let csv = write(
        dir.path(),
        "r.csv",
        "time,sensor,value\n2018-03-05T00:00:00Z,A-in,3\n2018-03-05 00:05,A-in,4\n",
    );
    let args = ["analyze", "leakage", "--network", &net, "--readings", &csv];
    let (code, _, stderr) = run(&args);
    assert_ne!(code, 0);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("r.csv line 3") && stderr.contains("bad time"),
        "{stderr}"
    );

    // --skip-bad-rows counts and reports it instead.
    let mut skip = args.to_vec();
    skip.push("--skip-bad-rows");
    let (code, _, stderr) = run(&skip);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("1 malformed rows skipped"), "{stderr}");

    let bad_net = write(dir.path(), "bad.toml", "[[dma]]\nid = \"A\"\nmains = 3\n");
    let (code, _, stderr) = run(&[
        "analyze",
        "leakage",
        "--network",
        &bad_net,
        "--readings",
        &csv,
    ]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("mains"),
        "{stderr}"
    );

    let (code, _, stderr) = run(&[
        "analyze",
        "leakage",
        "--network",
        &net,
        "--readings",
        "/nonexistent/r.csv",
    ]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("cannot read /nonexistent/r.csv"),
        "{stderr}"
    );
}

#[test]
fn evaluate_scores_ours_and_the_baseline() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "network.toml", NETWORK);
    write(dir.path(), "readings.csv", &readings_csv());
    write(
        dir.path(),
        "truth.jsonl",
        "{\"kind\":\"leak\",\"start\":\"2018-03-20T01:00:00Z\",\"dma\":\"A\",\
         \"leak_type\":\"abrupt\",\"flow_m3h\":18.0}\n",
    );
    let (code, stdout, stderr) = run(&[
        "evaluate",
        "leakage",
        "--dir",
        &dir.path().display().to_string(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let ours = stdout
        .lines()
        .find(|l| l.starts_with("waterline"))
        .unwrap_or_else(|| panic!("{stdout}"));
    let cols: Vec<&str> = ours.split_whitespace().collect();
    // precision, recall, F1 of 1.0, one leak found of one, no false alarm.
    assert_eq!(
        &cols[1..6],
        &["1.000", "1.000", "1.000", "1/1", "0"],
        "{stdout}"
    );
    assert!(stdout.lines().any(|l| l.starts_with("leakdb")), "{stdout}");
    // Both find the one leak: the like-for-like line compares their delays on it.
    assert!(
        stdout.contains("on the 1 leak(s) both found: median delay waterline"),
        "{stdout}"
    );
}
