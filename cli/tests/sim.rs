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

#[test]
fn sim_live_serves_the_prv_controllers_and_prints_their_modbus_devices() {
    // A day of 15-minute steps at 172,800× (half a second).
    let (code, stdout, stderr) = process::run(&[
        "sim",
        "--live",
        "--days",
        "1",
        "--step-minutes",
        "15",
        "--speed",
        "172800",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let devices: toml::Value = toml::from_str(&stdout).unwrap();
    let d = &devices["modbus"]["devices"][0];
    assert_eq!(d["id"].as_str(), Some("RTU-PRV-B"), "{stdout}");
    assert_eq!(d["model"].as_str(), Some("dma-inlet-rtu"));
    let addr: std::net::SocketAddr = d["address"].as_str().unwrap().parse().unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    assert!(stderr.contains("RTU-PRV-B-prv-setpoint"), "{stderr}");
    assert!(stderr.contains("96 of 96 steps done"), "{stderr}");

    // Live and export are one or the other (without --broker); a bad speed is refused with
    // the reason.
    let (code, _, stderr) = process::run(&["sim", "--live", "--days", "1", "--export", "x"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("--export"), "{stderr}");
    let (code, _, stderr) = process::run(&["sim", "--live", "--days", "1", "--speed=-3"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("speed -3"), "{stderr}");
}

#[test]
fn sim_load_refuses_bad_values_naming_the_flag() {
    // Checked before any connection: no broker needed.
    for (args, flag) in [
        (&["--rate=-3"][..], "--rate"),
        (&["--rate", "0"], "--rate"),
        (&["--batch", "0"], "--batch"),
        (&["--batch", "10001"], "--batch"),
        (&["--devices", "0"], "--devices"),
        (&["--seconds", "0"], "--seconds"),
        (&["--broker", "http://localhost:1883"], "--broker"),
        (&["--broker", "mqtts://localhost"], "--broker"),
    ] {
        let mut argv = vec!["sim", "--load"];
        argv.extend_from_slice(args);
        let (code, stderr) = waterline(&argv);
        assert_eq!(code, 1, "{argv:?}: {stderr}");
        assert!(stderr.contains(flag), "{argv:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    }
    // Load mode needs no --days and takes none of the twin's flags; load flags need --load.
    let (code, stderr) = waterline(&["sim", "--load", "--days", "1"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--days"), "{stderr}");
    let (code, stderr) = waterline(&["sim", "--days", "1", "--live", "--rate", "5"]);
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("--rate") && stderr.contains("--load"),
        "{stderr}"
    );
    let (code, stderr) = waterline(&["sim", "--rate", "5"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--load"), "{stderr}");
}

#[test]
fn sim_load_publishes_to_a_broker_and_reports_what_it_achieved() {
    let broker = waterline_tests::Mosquitto::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = process::run(&[
        "sim",
        "--load",
        "--broker",
        &broker.url(),
        "--devices",
        "5",
        "--rate",
        "50",
        "--batch",
        "3",
        "--seconds",
        "1",
        "--export",
        tmp.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("published 50 messages (150 readings)"),
        "{stdout}"
    );
    assert!(stdout.contains("acknowledged 50 of 50"), "{stdout}");
    let toml = std::fs::read_to_string(tmp.path().join("network.toml")).unwrap();
    let net = waterline_core::network::Network::parse(&toml).unwrap();
    assert_eq!(net.sensors.len(), 5);
}

#[test]
fn sim_broker_backfills_the_twins_devices_and_writes_their_network_and_truth() {
    let broker = waterline_tests::Mosquitto::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = process::run(&[
        "sim",
        "--days",
        "2",
        "--seed",
        "4",
        "--broker",
        &broker.url(),
        "--modbus-stations",
        "1",
        "--export",
        tmp.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    // The PRV controller and the last station's analyser are Modbus devices to poll.
    let devices: toml::Value = toml::from_str(&stdout).unwrap();
    let models: Vec<&str> = devices["modbus"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["model"].as_str().unwrap())
        .collect();
    assert_eq!(models, ["dma-inlet-rtu", "quality-analyser"], "{stdout}");
    assert!(stderr.contains("back-filling 576 steps"), "{stderr}");
    assert!(stderr.contains("100%"), "progress is reported: {stderr}");
    // Every message the broker took was acknowledged: "N messages (N acknowledged)".
    let summary = stderr
        .lines()
        .find(|l| l.contains("acknowledged"))
        .unwrap_or_else(|| panic!("{stderr}"));
    let numbers: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(numbers[0..3], [576, 576, numbers[2]], "{summary}");
    assert!(numbers[2] > 500 && numbers[2] == numbers[3], "{summary}");
    let toml = std::fs::read_to_string(tmp.path().join("network.toml")).unwrap();
    let net = waterline_core::network::Network::parse(&toml).unwrap();
    let meters = &net
        .dmas
        .iter()
        .find(|d| !d.customer_meters.is_empty())
        .unwrap()
        .customer_meters;
    assert!(
        meters.iter().any(|m| m.as_str().starts_with("lora-")),
        "{meters:?}"
    );
    // The twin's truth (two days: its random leak), then the misbehaviour.
    let truth = std::fs::read_to_string(tmp.path().join("truth.jsonl")).unwrap();
    let kinds: Vec<String> = truth
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].to_string())
        .collect();
    assert_eq!(kinds[0], r#""leak""#, "{truth}");
    let first_misbehaviour = kinds.iter().position(|k| k == r#""misbehaviour""#).unwrap();
    assert!(first_misbehaviour >= 1, "{truth}");
    assert!(
        kinds[first_misbehaviour..]
            .iter()
            .all(|k| k == r#""misbehaviour""#)
    );
    // The default rates over two days: a repeated hour at least.
    assert!(truth.contains("repeated_hour"), "{truth}");
}
