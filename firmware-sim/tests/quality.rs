//! Water quality in the twin's export: water age and chlorine decay along the flow, incidents
//! carried downstream, the signature of every instrument fault inside its truth window,
//! determinism, `--ideal`, scenario errors, and the exported network description.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use waterline_sim::twin::engine::Engine;
use waterline_sim::twin::export::{self, SimRequest};
use waterline_sim::twin::quality::{QualityConfig, QualitySim};
use waterline_sim::twin::stations::Channel;
use waterline_sim::twin::{BUILTIN_INP, Twin, TwinConfig};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

const START: &str = "2026-01-05T00:00:00Z";

fn request(dir: &Path, days: u32, seed: u64, ideal: bool, scenario: Option<&str>) -> SimRequest {
    let scenario = scenario.map(|text| {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join("scenario.toml");
        std::fs::write(&p, text).unwrap();
        p
    });
    SimRequest {
        network: None,
        days,
        seed,
        ideal,
        scenario,
        start: None,
        step_minutes: 5,
        export: dir.to_owned(),
        progress: false,
    }
}

fn read(dir: &Path, f: &str) -> String {
    std::fs::read_to_string(dir.join(f)).unwrap()
}

/// Readings by sensor: time → value.
fn series(dir: &Path) -> HashMap<String, BTreeMap<DateTime<Utc>, f64>> {
    let mut out: HashMap<String, BTreeMap<DateTime<Utc>, f64>> = HashMap::new();
    for line in read(dir, "readings.csv").lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        out.entry(f[1].to_owned())
            .or_default()
            .insert(at(f[0]), f[2].parse().unwrap());
    }
    out
}

fn truth(dir: &Path) -> Vec<Value> {
    read(dir, "truth.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn window(v: &Value) -> (DateTime<Utc>, DateTime<Utc>) {
    (
        at(v["start"].as_str().unwrap()),
        at(v["end"].as_str().unwrap()),
    )
}

#[test]
fn water_is_older_and_chlorine_lower_downstream_and_chlorine_follows_demand() {
    let engine = Engine::from_inp_text(BUILTIN_INP, "built-in").unwrap();
    let cfg = TwinConfig {
        start: at(START),
        steps: 2 * 288,
        step_s: 300,
        timezone: chrono_tz::Tz::UTC,
        seed: 5,
        demand_variation: true,
        leaks: Vec::new(),
        random_leaks: 0,
        setpoints: Vec::new(),
    };
    let mut twin = Twin::new(engine, cfg.clone())
        .unwrap()
        .with_quality(&QualityConfig::default())
        .unwrap();
    let plan = twin.quality().unwrap().clone();
    let ids: Vec<&str> = plan
        .stations
        .iter()
        .map(|s| twin.engine().nodes()[s.node].id.as_str())
        .collect();
    assert_eq!((ids[0], ids[2], ids[4]), ("J1", "B1", "C1"));
    let mut q = QualitySim::new(plan.clone(), twin.engine(), &cfg, true);
    let n = plan.stations.len();
    let (mut age, mut cl2) = (vec![0.0; n], vec![0.0; n]);
    // Second day only (the tank's age has settled somewhat); S2's age by hour, and its
    // age and chlorine at each step.
    let mut s2_by_hour = [0.0f64; 24];
    let mut s2 = Vec::new();
    let mut rows = Vec::new();
    twin.run(|step| {
        q.step(step.index, step.time, step.engine, &mut rows);
        if step.index >= 288 {
            for s in 0..n {
                age[s] += q.age().age_h(plan.stations[s].node) / 288.0;
                cl2[s] += q.true_value(s, Channel::Chlorine) / 288.0;
            }
            let a = q.age().age_h(plan.stations[1].node);
            s2_by_hour[(step.index - 288) / 12] += a / 12.0;
            s2.push((a, q.true_value(1, Channel::Chlorine)));
        }
        Ok(())
    })
    .unwrap();
    eprintln!("age h {age:?}\nchlorine {cl2:?}");
    // S1 at the source inlet, S2 at area A's far end; S5 at the tank outlet, S6 beyond.
    assert!(age[0] < 1.5, "fresh water at the inlet: {}", age[0]);
    assert!(age[1] > age[0] + 0.5, "older downstream: {age:?}");
    assert!(cl2[1] < cl2[0] - 0.01, "less chlorine downstream: {cl2:?}");
    assert!(age[4] > 12.0, "the tank holds water for long: {age:?}");
    assert!(age[5] > age[4] && cl2[5] < cl2[4], "{age:?} {cl2:?}");
    assert!(cl2[0] > 0.9 && cl2[0] < 1.3, "source dose: {}", cl2[0]);
    for c in &cl2 {
        assert!(*c > 0.05 && *c < 2.0, "within GB 5749 limits: {cl2:?}");
    }
    // Night flows are slow: the far end's water is older then, and older water has less
    // chlorine.
    let night = s2_by_hour[2..5].iter().sum::<f64>() / 3.0;
    let day = s2_by_hour[9..12].iter().sum::<f64>() / 3.0;
    assert!(night > day + 0.5, "diurnal age at S2: {s2_by_hour:?}");
    let m = s2.len() as f64;
    let (ma, mc) = (
        s2.iter().map(|p| p.0).sum::<f64>() / m,
        s2.iter().map(|p| p.1).sum::<f64>() / m,
    );
    let cov: f64 = s2.iter().map(|p| (p.0 - ma) * (p.1 - mc)).sum();
    assert!(cov < 0.0, "chlorine falls as age grows at S2");
}

const INCIDENT: &str = r#"
[[quality_incident]]
type = "contamination"
station = "S1"
start = "2026-01-05T10:00:00Z"
duration = "4h"
magnitude = 0.6
"#;

#[test]
fn an_incident_shows_first_near_its_origin_then_downstream_and_only_in_its_window() {
    let tmp = tempfile::tempdir().unwrap();
    let (with, without) = (tmp.path().join("with"), tmp.path().join("without"));
    export::run(&request(&with, 2, 4, true, Some(INCIDENT))).unwrap();
    export::run(&request(&without, 2, 4, true, Some("random_leaks = 0\n"))).unwrap();
    let events: Vec<Value> = truth(&with)
        .into_iter()
        .filter(|v| v["kind"] == "quality_event")
        .collect();
    let station = |s: &str| {
        events
            .iter()
            .find(|v| v["station"] == s)
            .unwrap_or_else(|| panic!("{s} reached: {events:?}"))
    };
    let (s1, s2) = (station("S1"), station("S2"));
    assert_eq!(s1["incident"], "qi1");
    assert_eq!(s1["type"], "contamination");
    assert_eq!(s1["node"], "J1");
    assert_eq!(s1["start"], "2026-01-05T10:00:00Z");
    assert_eq!(s1["end"], "2026-01-05T14:00:00Z");
    let sensors: Vec<&str> = s1["sensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(sensors, ["S1-cl2", "S1-turb", "S1-toc", "S1-cond"]);
    assert!(window(s2).0 > window(s1).0, "S2 downstream sees it later");
    // J1 feeds the whole of areas A and B (the tank stops the tracer).
    assert!(events.iter().all(|v| v["station"] != "S5"), "{events:?}");

    let (a, b) = (series(&with), series(&without));
    let mut checked = 0;
    for ev in &events {
        let st = ev["station"].as_str().unwrap();
        let (from, to) = window(ev);
        for (sensor, values) in a.iter().filter(|(k, _)| k.starts_with(&format!("{st}-"))) {
            for (t, v) in values {
                let base = b[sensor][t];
                if *t <= from || *t >= to {
                    assert_eq!(*v, base, "{sensor} at {t} is normal outside its window");
                }
            }
        }
        // The middle of the window: full strength.
        let mid = from + (to - from) / 2;
        let cl2 = (a[&format!("{st}-cl2")][&mid], b[&format!("{st}-cl2")][&mid]);
        let turb = (
            a[&format!("{st}-turb")][&mid],
            b[&format!("{st}-turb")][&mid],
        );
        let toc = (a[&format!("{st}-toc")][&mid], b[&format!("{st}-toc")][&mid]);
        assert!(cl2.0 < 0.5 * cl2.1, "{st}: chlorine {cl2:?}");
        assert!(turb.0 > 3.0 * turb.1, "{st}: turbidity {turb:?}");
        assert!(toc.0 > toc.1 + 1.0, "{st}: TOC {toc:?}");
        // Onset ramps over steps: the first step after the onset is only partly abnormal.
        let first = from + TimeDelta::minutes(5);
        let c1 = a[&format!("{st}-cl2")][&first];
        assert!(
            c1 < b[&format!("{st}-cl2")][&first] && c1 > cl2.0,
            "{st} ramp"
        );
        checked += 1;
    }
    assert!(checked >= 2, "{checked}");
}

const FAULTS: &str = r#"
random_leaks = 0

[[sensor_fault]]
type = "flatline"
sensor = "S1-ph"
start = "2026-01-05T06:00:00Z"
end = "2026-01-05T12:00:00Z"

[[sensor_fault]]
type = "dropout"
sensor = "S1-turb"
start = "2026-01-05T08:00:00Z"
duration = "3h"

[[sensor_fault]]
type = "floor"
sensor = "S2-ph"
start = "2026-01-05T13:00:00Z"
end = "2026-01-05T15:00:00Z"

[[sensor_fault]]
type = "floor"
sensor = "S1-cl2"
start = "2026-01-05T20:00:00Z"
end = "2026-01-05T21:00:00Z"

[[sensor_fault]]
type = "spike"
sensor = "S1-cond"
start = "2026-01-06T01:00:00Z"
end = "2026-01-06T05:30:00Z"

[[sensor_fault]]
type = "drift"
sensor = "S2-toc"
start = "2026-01-05T12:00:00Z"
end = "2026-01-06T12:00:00Z"

[[sensor_fault]]
type = "maintenance"
station = "S3"
start = "2026-01-06T09:00:00Z"
duration = "2h"
"#;

#[test]
fn every_fault_leaves_its_signature_inside_its_truth_window() {
    let tmp = tempfile::tempdir().unwrap();
    let (noisy, ideal) = (tmp.path().join("noisy"), tmp.path().join("ideal"));
    export::run(&request(&noisy, 2, 11, false, Some(FAULTS))).unwrap();
    export::run(&request(&ideal, 2, 11, true, Some(FAULTS))).unwrap();
    let (r, exact) = (series(&noisy), series(&ideal));
    let lines = truth(&noisy);
    let fault = |kind: &str, sensor: &str| {
        lines
            .iter()
            .find(|v| v["fault"] == kind && v["sensor"] == sensor)
            .unwrap_or_else(|| panic!("{kind} on {sensor} in {lines:?}"))
    };
    let inside = |s: &str, w: (DateTime<Utc>, DateTime<Utc>)| -> Vec<(DateTime<Utc>, f64)> {
        r[s].range(w.0..w.1).map(|(t, v)| (*t, *v)).collect()
    };
    let step = TimeDelta::minutes(5);

    let f = fault("flatline", "S1-ph");
    assert_eq!(f["station"], "S1");
    let w = window(f);
    let frozen = inside("S1-ph", w);
    assert_eq!(frozen.len(), 72);
    let before = r["S1-ph"][&(w.0 - step)];
    assert!(frozen.iter().all(|(_, v)| *v == before), "flatline");
    let after: Vec<f64> = r["S1-ph"].range(w.1..).take(24).map(|(_, v)| *v).collect();
    assert!(
        after.iter().any(|v| *v != before),
        "reads again after the flatline"
    );

    let w = window(fault("dropout", "S1-turb"));
    assert_eq!(w.1 - w.0, TimeDelta::hours(3));
    assert!(inside("S1-turb", w).is_empty(), "no rows in a dropout");
    assert!(r["S1-turb"].contains_key(&(w.0 - step)) && r["S1-turb"].contains_key(&w.1));
    assert_eq!(r["S1-turb"].len(), 576 - 36);

    let w = window(fault("floor", "S2-ph"));
    let v = inside("S2-ph", w);
    assert_eq!(v.len(), 24);
    assert!(v.iter().all(|(_, v)| *v == 4.0), "pH floor 4.0");
    assert!(r["S2-ph"][&w.1] > 6.5);
    let w = window(fault("floor", "S1-cl2"));
    assert!(inside("S1-cl2", w).iter().all(|(_, v)| *v == 0.0));
    assert!(r["S1-cl2"][&(w.0 - step)] > 0.5);

    // Spikes: one per started hour (5 in 4.5 h), isolated, none outside the window.
    let w = window(fault("spike", "S1-cond"));
    let outliers: Vec<DateTime<Utc>> = r["S1-cond"]
        .iter()
        .filter(|(t, v)| (**v - exact["S1-cond"][*t]).abs() > 75.0)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(outliers.len(), 5, "{outliers:?}");
    assert!(outliers.iter().all(|t| *t >= w.0 && *t < w.1));
    assert!(outliers.windows(2).all(|p| p[1] - p[0] > step));

    // Drift: a growing bias, + 3 mg/L of TOC at the end, gone after it.
    let w = window(fault("drift", "S2-toc"));
    let bias = |t: DateTime<Utc>| r["S2-toc"][&t] - exact["S2-toc"][&t];
    assert!(bias(w.0 + TimeDelta::hours(1)).abs() < 0.3);
    assert!(bias(w.0 + TimeDelta::hours(12)) > 1.0 && bias(w.0 + TimeDelta::hours(12)) < 2.0);
    assert!(bias(w.1 - step) > 2.6);
    assert!(bias(w.1 + step).abs() < 0.3);

    let m = lines
        .iter()
        .find(|v| v["kind"] == "maintenance")
        .expect("maintenance line");
    assert_eq!(m["station"], "S3");
    let sensors: Vec<&str> = m["sensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(sensors, ["S3-cl2", "S3-turb", "S3-ph", "S3-cond", "S3-toc"]);
    let w = window(m);
    assert!(inside("S3-cl2", w).iter().all(|(_, v)| *v == 0.0));
    assert!(inside("S3-cond", w).iter().all(|(_, v)| *v == 1413.0));
    let ph: Vec<f64> = inside("S3-ph", w).into_iter().map(|(_, v)| v).collect();
    assert_eq!(ph.len(), 24);
    assert!(ph[..12].iter().all(|v| *v == 7.0) && ph[12..].iter().all(|v| *v == 4.0));
    assert!(
        r["S3-cond"][&w.1] < 400.0,
        "back to water after maintenance"
    );

    // Seven fault lines, none in the ideal export, whose readings have every row.
    let kinds = |ls: &[Value]| {
        ls.iter()
            .filter(|v| v["kind"] == "sensor_fault" || v["kind"] == "maintenance")
            .count()
    };
    assert_eq!(kinds(&lines), 7);
    assert_eq!(kinds(&truth(&ideal)), 0);
    assert!(exact.values().all(|s| s.len() == 576));
}

#[test]
fn the_default_export_is_deterministic_and_ideal_has_no_faults() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|d| tmp.path().join(d))
        .collect();
    export::run(&request(&dirs[0], 7, 3, false, None)).unwrap();
    export::run(&request(&dirs[1], 7, 3, false, None)).unwrap();
    export::run(&request(&dirs[2], 7, 4, false, None)).unwrap();
    export::run(&request(&dirs[3], 7, 3, true, None)).unwrap();
    for f in ["readings.csv", "network.toml", "truth.jsonl"] {
        assert_eq!(
            read(&dirs[0], f),
            read(&dirs[1], f),
            "{f} differs for one seed"
        );
    }
    assert_ne!(read(&dirs[0], "truth.jsonl"), read(&dirs[2], "truth.jsonl"));
    let count = |d: &Path, kind: &str| truth(d).iter().filter(|v| v["kind"] == kind).count();
    // A week: one leak, one incident (3 per fortnight), three analyser faults (6 per
    // fortnight) and one pressure-sensor fault (3 per fortnight, no station).
    assert_eq!(count(&dirs[0], "leak"), 1);
    assert!(count(&dirs[0], "quality_event") >= 1);
    let pressure_faults = truth(&dirs[0])
        .iter()
        .filter(|v| v["kind"] == "sensor_fault" && v.get("station").is_none())
        .count();
    assert_eq!(pressure_faults, 1);
    assert_eq!(
        count(&dirs[0], "sensor_fault") + count(&dirs[0], "maintenance"),
        3 + pressure_faults
    );
    assert_eq!(
        count(&dirs[3], "sensor_fault") + count(&dirs[3], "maintenance"),
        0,
        "--ideal: no faults"
    );
    assert_eq!(
        count(&dirs[3], "quality_event"),
        count(&dirs[0], "quality_event"),
        "incidents are water, not instruments"
    );
    let ideal = series(&dirs[3]);
    let net = waterline_core::network::Network::parse(&read(&dirs[3], "network.toml")).unwrap();
    assert_eq!(ideal.len(), net.sensors.len());
    assert!(
        ideal.values().all(|s| s.len() == 7 * 288),
        "every row when ideal"
    );
}

#[test]
fn the_network_description_names_each_station_and_role() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario =
        "[[station]]\nid = \"QS-A\"\nnode = \"J5\"\n\n[[station]]\nid = \"QS-C\"\nnode = \"C3\"\n";
    let summary = export::run(&request(tmp.path(), 1, 2, false, Some(scenario))).unwrap();
    assert_eq!(summary.stations, 2);
    let net = waterline_core::network::Network::parse(&read(tmp.path(), "network.toml")).unwrap();
    let quality: Vec<_> = net
        .sensors
        .values()
        .filter(|s| s.station.is_some())
        .collect();
    assert_eq!(quality.len(), 14, "seven signals per station");
    let s = |id: &str| {
        net.sensor(&waterline_core::SensorId::parse(id).unwrap())
            .unwrap()
    };
    let cl2 = s("QS-A-cl2");
    assert_eq!(cl2.kind.as_str(), "chlorine");
    assert_eq!(cl2.station.as_ref().unwrap().as_str(), "QS-A");
    assert_eq!(cl2.role.unwrap().as_str(), "quality");
    assert_eq!((cl2.alarm_low, cl2.alarm_high), (Some(0.05), Some(2.0)));
    assert_eq!(cl2.resolution, Some(0.01));
    assert_eq!(cl2.dma.as_ref().unwrap().as_str(), "A");
    let ph = s("QS-C-ph");
    assert_eq!((ph.alarm_low, ph.alarm_high), (Some(6.5), Some(8.5)));
    assert_eq!(ph.dma.as_ref().unwrap().as_str(), "C");
    assert_eq!(s("QS-C-turb").alarm_high, Some(1.0));
    assert_eq!(s("QS-C-temp").role.unwrap().as_str(), "context");
    assert_eq!(s("QS-C-cond").unit.as_str(), "uS/cm");
    let flow = s("QS-C-flow");
    assert_eq!(flow.role.unwrap().as_str(), "context");
    assert_eq!(flow.unit.as_str(), "m3/h");
    // Every reading of a quality sensor sits on its resolution and in a plausible range.
    for (id, values) in series(tmp.path()) {
        let Some(c) = id
            .rsplit_once('-')
            .and_then(|(_, x)| Channel::from_suffix(x))
        else {
            continue;
        };
        let (lo, hi) = match c {
            Channel::Chlorine => (0.05, 2.0),
            Channel::Turbidity => (0.0, 1.0),
            Channel::Ph => (6.5, 8.5),
            Channel::Conductivity => (250.0, 400.0),
            Channel::Toc => (0.5, 4.0),
            Channel::Temperature => (0.0, 30.0),
            // The water passing the node: never negative, far below the network's inflow.
            Channel::Flow => (0.0, 5_000.0),
        };
        for v in values.values() {
            let r = c.resolution();
            assert!(((v / r).round() * r - v).abs() < 1e-9, "{id} {v}");
            assert!(*v >= lo && *v <= hi, "{id} {v}");
        }
    }
}

#[test]
fn scenario_mistakes_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let err = |text: &str| {
        export::run(&request(&tmp.path().join("x"), 1, 1, false, Some(text)))
            .unwrap_err()
            .to_string()
    };
    let e = err(
        "[[quality_incident]]\ntype = \"contamination\"\nstation = \"S1\"\nstart = \"2026-01-05T01:00:00Z\"\nduration = \"2h\"\nstrength = 2\n",
    );
    assert!(e.contains("strength") && e.contains("line 6"), "{e}");
    let e = err(
        "[[sensor_fault]]\ntype = \"stuck\"\nsensor = \"S1-ph\"\nstart = \"2026-01-05T01:00:00Z\"\nend = \"2026-01-05T02:00:00Z\"\n",
    );
    assert!(
        e.contains("sensor_fault 1 (S1-ph)") && e.contains("stuck"),
        "{e}"
    );
    let e = err(
        "[[sensor_fault]]\ntype = \"flatline\"\nsensor = \"S9-ph\"\nstart = \"2026-01-05T01:00:00Z\"\nend = \"2026-01-05T02:00:00Z\"\n",
    );
    assert!(e.contains("S9-ph") && e.contains("S1-{"), "{e}");
    let e = err(
        "[[quality_incident]]\ntype = \"contamination\"\nnode = \"nowhere\"\nstart = \"2026-01-05T01:00:00Z\"\nduration = \"2h\"\n",
    );
    assert!(
        e.contains("quality_incident 1") && e.contains("nowhere"),
        "{e}"
    );
    let e = err(
        "[[quality_incident]]\ntype = \"ph_excursion\"\nnode = \"J2\"\nstart = \"2026-01-05T01:00:00Z\"\nduration = \"2 hours\"\n",
    );
    assert!(e.contains("duration `2 hours`"), "{e}");
    let e = err("[[station]]\nid = \"S1\"\nnode = \"J99\"\n");
    assert!(e.contains("station 1 (S1)") && e.contains("J99"), "{e}");
}

#[test]
fn the_example_scenario_places_its_stations_incidents_and_faults() {
    use waterline_sim::twin::scenario::Scenario;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/sim/scenario.toml");
    let s = Scenario::parse(&std::fs::read_to_string(path).unwrap(), "scenario.toml").unwrap();
    assert_eq!(
        (
            s.stations.len(),
            s.quality_incidents.len(),
            s.sensor_faults.len()
        ),
        (3, 2, 5)
    );
    let (quality_faults, pressure_faults) =
        waterline_sim::twin::scenario::split_faults(s.sensor_faults);
    assert_eq!((quality_faults.len(), pressure_faults.len()), (4, 1));
    let engine = Engine::from_inp_text(BUILTIN_INP, "built-in").unwrap();
    let cfg = TwinConfig {
        start: s.start.unwrap(),
        steps: 14 * 288,
        step_s: 300,
        timezone: s.timezone.unwrap(),
        seed: 3,
        demand_variation: true,
        leaks: Vec::new(),
        random_leaks: 0,
        setpoints: Vec::new(),
    };
    let q = QualityConfig {
        stations: s.stations,
        incidents: s.quality_incidents,
        random_incidents: s.random_quality_incidents,
        faults: quality_faults,
        random_faults: s.random_sensor_faults,
        redundant: s.redundant_analysers,
    };
    let twin = Twin::new(engine, cfg).unwrap().with_quality(&q).unwrap();
    let plan = twin.quality().unwrap();
    assert_eq!(
        (plan.stations.len(), plan.incidents.len(), plan.faults.len()),
        (3, 3, 6)
    );
}

#[test]
fn redundant_analysers_read_the_same_water_and_the_lab_samples_it() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = "redundant_analysers = [\"cl2\"]\n\
                    [[sensor_fault]]\ntype = \"drift\"\nsensor = \"S2-cl2b\"\n\
                    start = \"2026-01-06T00:00:00Z\"\nend = \"2026-01-08T00:00:00Z\"\nmagnitude = 0.6\n";
    let summary = export::run(&request(tmp.path(), 7, 5, false, Some(scenario))).unwrap();
    let net = waterline_core::network::Network::parse(&read(tmp.path(), "network.toml")).unwrap();
    let id = |s: &str| waterline_core::SensorId::parse(s).unwrap();
    for st in 1..=summary.stations {
        let b = net
            .sensor(&id(&format!("S{st}-cl2b")))
            .expect("a second analyser");
        assert_eq!(
            b.redundant_of.as_ref().map(|p| p.to_string()),
            Some(format!("S{st}-cl2"))
        );
    }
    // The pair reads the same water: close outside the drift, apart by up to 0.6 inside it.
    let s = series(tmp.path());
    let gap = |station: &str, from: &str, to: &str| -> f64 {
        let (a, b) = (
            &s[&format!("{station}-cl2")],
            &s[&format!("{station}-cl2b")],
        );
        let d: Vec<f64> = a
            .range(at(from)..at(to))
            .filter_map(|(t, x)| b.get(t).map(|y| (y - x).abs()))
            .collect();
        d.iter().sum::<f64>() / d.len() as f64
    };
    assert!(gap("S1", START, "2026-01-12T00:00:00Z") < 0.06);
    assert!(gap("S2", START, "2026-01-06T00:00:00Z") < 0.06);
    assert!(gap("S2", "2026-01-07T12:00:00Z", "2026-01-08T00:00:00Z") > 0.4);
    let fault = truth(tmp.path())
        .into_iter()
        .find(|v| v["fault"] == "drift")
        .expect("the drift in the truth");
    assert_eq!(fault["sensor"], "S2-cl2b");

    // The lab: weekdays only (2026-01-10/11 are a weekend), TOC on Monday only, close to the
    // primary analyser (no fault touches the lab), one sample id per visit.
    let lab = read(tmp.path(), "grab_samples.csv");
    let mut lines = lab.lines();
    assert_eq!(
        lines.next(),
        Some("station,parameter,value,unit,sampled_at,sample_id,reported_at")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), summary.grab_samples);
    let visits = 5 * summary.stations;
    assert_eq!(
        rows.len(),
        visits * 4 + summary.stations,
        "4 a day, TOC on Monday"
    );
    for r in &rows {
        let t = at(r[4]);
        assert!(!matches!(
            chrono::Datelike::weekday(&t),
            chrono::Weekday::Sat | chrono::Weekday::Sun
        ));
        if r[1] == "toc" {
            assert_eq!(chrono::Datelike::weekday(&t), chrono::Weekday::Mon);
            assert_eq!(at(r[6]) - t, TimeDelta::days(2));
        }
        if r[1] == "chlorine" && r[0] == "S1" {
            let analyser = s["S1-cl2"][&t];
            let lab: f64 = r[2].parse().unwrap();
            assert!((lab - analyser).abs() < 0.15, "{r:?} vs {analyser}");
        }
    }
    let ids: std::collections::BTreeSet<&str> = rows.iter().map(|r| r[5]).collect();
    assert_eq!(ids.len(), visits, "one id per visit");
}
