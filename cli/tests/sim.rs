//! `waterline sim` as an operator runs it: the built-in network for two days into a directory,
//! and a bad scenario refused with a reason that names the key.

mod process;

fn waterline(args: &[&str]) -> (i32, String) {
    let (code, _, stderr) = process::run(args);
    (code, stderr)
}

#[test]
fn sim_exports_readings_network_and_truth_for_the_built_in_network() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out");
    let dir_s = dir.to_str().unwrap();
    let (code, stderr) = waterline(&["sim", "--days", "2", "--seed", "5", "--export", dir_s]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("sim: wrote"),
        "progress and summary on stderr: {stderr}"
    );

    let toml = std::fs::read_to_string(dir.join("network.toml")).unwrap();
    let net = waterline_core::network::Network::parse(&toml).unwrap();
    let dmas: Vec<&str> = net.dmas.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(dmas, ["A", "B", "C"]);

    let csv = std::fs::read_to_string(dir.join("readings.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("time,sensor,value"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), net.sensors.len() * 2 * 288);
    assert!(rows[0].starts_with("2026-01-05T00:00:00Z,"), "{}", rows[0]);
    assert!(rows.last().unwrap().starts_with("2026-01-06T23:55:00Z,"));

    let truth = std::fs::read_to_string(dir.join("truth.jsonl")).unwrap();
    let leaks: Vec<serde_json::Value> = truth
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(leaks.len(), 1);
    for key in [
        "start",
        "end",
        "dma",
        "pipe",
        "diameter_mm",
        "leak_type",
        "mean_flow_m3h",
    ] {
        assert!(!leaks[0][key].is_null(), "truth has {key}: {}", leaks[0]);
    }
    assert_eq!(leaks[0]["kind"], "leak");
}

#[test]
fn sim_refuses_a_scenario_with_an_unknown_key() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = tmp.path().join("s.toml");
    std::fs::write(
        &scenario,
        "random_leaks = 1\n\n[[leak]]\npipe = \"A6\"\nsize = 3\n",
    )
    .unwrap();
    let (code, stderr) = waterline(&[
        "sim",
        "--days",
        "1",
        "--scenario",
        scenario.to_str().unwrap(),
        "--export",
        tmp.path().join("out").to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("size") && stderr.contains("line 5"),
        "{stderr}"
    );
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one-line reason: {stderr}"
    );
}
