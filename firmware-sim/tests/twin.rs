//! The digital twin on its built-in network: water balance, FAVAD leak behaviour, PRV set
//! points, determinism, the exported files, and agreement with EPANET (epanet-rs's own
//! simulation driver, and reference values from the C EPANET 2.3).

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use waterline_sim::twin::engine::Engine;
use waterline_sim::twin::export::{self, SimRequest};
use waterline_sim::twin::leaks::{Leak, LeakType, emitter_coefficient};
use waterline_sim::twin::scenario::Setpoint;
use waterline_sim::twin::{BUILTIN_INP, Twin, TwinConfig, inp};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

const START: &str = "2026-01-05T00:00:00Z";

fn config(steps: usize, variation: bool, leaks: Vec<Leak>) -> TwinConfig {
    TwinConfig {
        start: at(START),
        steps,
        step_s: 300,
        timezone: chrono_tz::Tz::UTC,
        seed: 42,
        demand_variation: variation,
        leaks,
        random_leaks: 0,
        setpoints: Vec::new(),
    }
}

fn abrupt(pipe: &str, diameter_mm: f64, start: &str) -> Leak {
    Leak {
        pipe: pipe.into(),
        start: at(start),
        end: None,
        diameter_mm,
        leak_type: LeakType::Abrupt,
        peak: at(start),
    }
}

fn builtin(config: TwinConfig) -> Twin {
    let engine = Engine::from_inp_text(BUILTIN_INP, "built-in").unwrap();
    Twin::new(engine, config).unwrap()
}

#[test]
fn builtin_network_has_three_dmas_with_closable_balances() {
    let twin = builtin(config(1, true, vec![]));
    let ids: Vec<&str> = twin.zones().iter().map(|z| z.id.as_str()).collect();
    assert_eq!(ids, ["A", "B", "C"]);
    let names = |ms: &[waterline_sim::twin::zones::Meter]| {
        ms.iter().map(|m| m.id.clone()).collect::<Vec<_>>()
    };
    let [a, b, c] = twin.zones() else {
        panic!("three zones")
    };
    assert_eq!(names(&a.inlets), ["P-IN"]);
    assert_eq!(names(&a.outlets), ["PUMP-C", "PRV-B"]);
    assert_eq!(names(&b.inlets), ["PRV-B"]);
    assert_eq!(names(&c.inlets), ["C-T"]);
    assert!(b.outlets.is_empty() && c.outlets.is_empty());
}

#[test]
fn mass_balance_of_every_dma_closes_with_demand_and_leaks() {
    let leaks = vec![
        abrupt("A6", 12.0, "2026-01-05T03:00:00Z"),
        Leak {
            leak_type: LeakType::Incipient,
            end: Some(at("2026-01-05T22:00:00Z")),
            peak: at("2026-01-05T12:00:00Z"),
            ..abrupt("B-3", 18.0, "2026-01-05T02:00:00Z")
        },
        abrupt("C-3", 9.0, "2026-01-05T06:00:00Z"),
    ];
    let mut twin = builtin(config(288, true, leaks));
    let zones = twin.zones().to_vec();
    let zone_of = twin.zone_of().to_vec();
    let placed: Vec<Option<usize>> = twin.leaks().iter().map(|l| l.zone).collect();
    let mut worst = 0.0f64;
    let mut leak_seen = [false; 3];
    twin.run(|step| {
        let e = step.engine;
        for (zi, z) in zones.iter().enumerate() {
            let inflow: f64 = z.inlets.iter().map(|m| e.flow_m3h(m.link)).sum::<f64>()
                - z.outlets.iter().map(|m| e.flow_m3h(m.link)).sum::<f64>();
            let demand: f64 = z.junctions.iter().map(|&n| e.demand_m3h(n)).sum();
            let emitted: f64 = z.junctions.iter().map(|&n| e.emitter_m3h(n)).sum();
            let leak: f64 = placed
                .iter()
                .zip(step.leak_flows_m3h)
                .filter(|(z, _)| **z == Some(zi))
                .map(|(_, q)| q)
                .sum();
            // The leaks' flows are what the area's emitters discharge.
            assert!((emitted - leak).abs() < 1e-9, "{} {emitted} {leak}", z.id);
            if leak > 0.0 {
                leak_seen[zi] = true;
            }
            let diff = (inflow - demand - leak).abs();
            worst = worst.max(diff / inflow.abs().max(1.0));
            assert!(
                diff < 0.001,
                "{} at {}: inflow {inflow}, demand {demand} + leak {leak}",
                z.id,
                step.time
            );
        }
        Ok(())
    })
    .unwrap();
    assert!(leak_seen.iter().all(|s| *s), "every DMA had a leak running");
    assert!(zone_of.iter().flatten().count() == 18);
    eprintln!("worst relative imbalance {worst:e}");
}

#[test]
fn leak_flow_follows_pressure_as_an_orifice() {
    let mut twin = builtin(config(288, false, vec![abrupt("A6", 15.0, START)]));
    let node = twin.leaks()[0].node;
    let area = twin.leaks()[0].leak.full_area_m2();
    let c = emitter_coefficient(area, 0.5);
    let mut points = Vec::new();
    twin.run(|step| {
        let p = step.engine.pressure_m(node);
        let q = step.leak_flows_m3h[0];
        // FAVAD with N1 = 0.5: Q = C · p^0.5 at every step.
        assert!(
            (q - c * p.sqrt()).abs() < 0.005 * q,
            "q {q} vs {}",
            c * p.sqrt()
        );
        points.push((p, q));
        Ok(())
    })
    .unwrap();
    let (pmin, qmin) = points
        .iter()
        .copied()
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap();
    let (pmax, qmax) = points
        .iter()
        .copied()
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap();
    assert!(pmax > pmin + 0.2, "pressure varies over the day");
    assert!(qmax > qmin, "higher pressure, more leakage");
    let ratio = (qmax / qmin).ln() / (pmax / pmin).ln();
    assert!(
        (ratio - 0.5).abs() < 0.02,
        "L1/L0 = (P1/P0)^N1 with N1 {ratio}"
    );
}

#[test]
fn a_lower_prv_set_point_lowers_downstream_pressure_and_leak_flow() {
    let run = |setting: Option<f64>| {
        let mut cfg = config(96, false, vec![abrupt("B-3", 15.0, START)]);
        if let Some(s) = setting {
            cfg.setpoints.push(Setpoint {
                link: "PRV-B".into(),
                at: at(START),
                setting_m: s,
            });
        }
        let mut twin = builtin(cfg);
        let b4 = twin.engine().node_index("B4").unwrap();
        let (mut p, mut q) = (0.0, 0.0);
        twin.run(|step| {
            p += step.engine.pressure_m(b4) / 96.0;
            q += step.leak_flows_m3h[0] / 96.0;
            Ok(())
        })
        .unwrap();
        (p, q)
    };
    let (p30, q30) = run(None);
    let (p20, q20) = run(Some(20.0));
    assert!((p30 - p20 - 10.0).abs() < 0.5, "pressure {p30} → {p20}");
    assert!(q20 < q30, "leak {q30} → {q20}");
    let expected = q30 * (p20 / p30).sqrt();
    assert!((q20 - expected).abs() < 0.01 * q30, "{q20} vs {expected}");
}

fn request(dir: &Path, seed: u64, ideal: bool) -> SimRequest {
    SimRequest {
        network: None,
        days: 2,
        seed,
        ideal,
        scenario: None,
        start: None,
        step_minutes: 5,
        export: dir.to_owned(),
        progress: false,
    }
}

fn read(dir: &Path, f: &str) -> String {
    std::fs::read_to_string(dir.join(f)).unwrap()
}

#[test]
fn the_export_is_deterministic_for_a_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    export::run(&request(&a, 7, false)).unwrap();
    export::run(&request(&b, 7, false)).unwrap();
    export::run(&request(&c, 8, false)).unwrap();
    for f in ["readings.csv", "network.toml", "truth.jsonl"] {
        assert_eq!(read(&a, f), read(&b, f), "{f} differs for one seed");
    }
    assert_ne!(read(&a, "readings.csv"), read(&c, "readings.csv"));
    // --ideal drops the noise: same seed, other values; noisy values sit on the resolution.
    let d = tmp.path().join("d");
    export::run(&request(&d, 7, true)).unwrap();
    let (noisy, ideal) = (read(&a, "readings.csv"), read(&d, "readings.csv"));
    assert_ne!(noisy, ideal);
    let mut differ = 0;
    for (n, i) in noisy.lines().zip(ideal.lines()).skip(1) {
        let (n, i): (Vec<&str>, Vec<&str>) = (n.split(',').collect(), i.split(',').collect());
        assert_eq!(n[..2], i[..2], "same rows in the same order");
        let (vn, vi): (f64, f64) = (n[2].parse().unwrap(), i[2].parse().unwrap());
        let resolution = match n[1] {
            "T1" => 0.001,
            id if id.ends_with("-amr") => 1.0,
            _ => 0.01,
        };
        assert!(
            ((vn / resolution).round() * resolution - vn).abs() < 1e-9,
            "{n:?}"
        );
        assert!(
            (vn - vi).abs() < 1.0 + 0.05 * vi.abs(),
            "noise is small: {n:?} {i:?}"
        );
        differ += usize::from((vn - vi).abs() > resolution);
    }
    assert!(differ > 1000, "noise on most readings ({differ})");
}

#[test]
fn the_exported_network_parses_and_describes_every_sensor_read() {
    let tmp = tempfile::tempdir().unwrap();
    let summary = export::run(&request(tmp.path(), 3, false)).unwrap();
    let net = waterline_core::network::Network::parse(&read(tmp.path(), "network.toml")).unwrap();
    assert_eq!(net.dmas.len(), 3);
    let a = &net.dmas[0];
    assert_eq!(
        a.inlets.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        ["P-IN"]
    );
    assert!(
        net.dmas
            .iter()
            .all(|d| d.azp_sensor.is_some() && d.critical_sensor.is_some())
    );
    let c_meters: Vec<&str> = net.dmas[2]
        .customer_meters
        .iter()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(c_meters, ["C1-amr", "C2-amr", "C3-amr", "C4-amr", "C5-amr"]);
    let csv = read(tmp.path(), "readings.csv");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("time,sensor,value"));
    let mut rows = 0;
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 3, "{line}");
        DateTime::parse_from_rfc3339(f[0]).unwrap();
        let id = waterline_core::SensorId::parse(f[1]).unwrap();
        assert!(net.sensors.contains_key(&id), "{line}");
        f[2].parse::<f64>().unwrap();
        rows += 1;
    }
    assert_eq!(rows, summary.rows);
    assert_eq!(rows, summary.sensors * 576);
    let truth = read(tmp.path(), "truth.jsonl");
    let leaks: Vec<serde_json::Value> = truth
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(leaks.len(), 1, "one random leak per started week");
    let l = &leaks[0];
    assert_eq!(l["kind"], "leak");
    assert!(l["mean_flow_m3h"].as_f64().unwrap() > 0.0);
    assert!(["A", "B", "C"].contains(&l["dma"].as_str().unwrap()));
}

/// Exported ideal readings of the twin, as (step, sensor) → value.
fn ideal_readings(twin: &mut Twin, dir: &Path) -> HashMap<(usize, String), f64> {
    let tags = inp::sensor_tags(BUILTIN_INP);
    export::export(twin, &tags, dir, true, false).unwrap();
    let start = at(START);
    read(dir, "readings.csv")
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let t = at(f[0]);
            let k = ((t - start).num_seconds() / 300) as usize;
            ((k, f[1].to_owned()), f[2].parse().unwrap())
        })
        .collect()
}

fn close(ours: f64, theirs: f64, flow: bool) -> bool {
    if flow {
        (ours - theirs).abs() <= 0.005 * theirs.abs() + 0.01
    } else {
        (ours - theirs).abs() <= 0.1
    }
}

#[test]
fn ideal_readings_match_epanet_rs_own_simulation() {
    let tmp = tempfile::tempdir().unwrap();
    let mut twin = builtin(config(289, false, vec![]));
    let ours = ideal_readings(&mut twin, tmp.path());
    let file = tmp.path().join("builtin.inp");
    std::fs::write(&file, BUILTIN_INP).unwrap();
    let mut sim = epanet_rs::simulation::Simulation::from_file(file.to_str().unwrap()).unwrap();
    let res = sim.solve_hydraulics(false).unwrap();
    let net = &sim.network;
    let mut compared = 0;
    for ((k, id), v) in &ours {
        let (theirs, flow) = if let Some(&l) = net.link_map.get(id.as_str()) {
            (res.flows[*k][l], true)
        } else if let Some(node) = id.strip_suffix("-amr") {
            // A customer meter, L/h: the junction's demand (no leaks here).
            (res.demands[*k][net.node_map[node]] * 1000.0, true)
        } else {
            let n = net.node_map[id.as_str()];
            let elevation_m = net.nodes[n].elevation * epanet_rs::constants::MperFT;
            (res.heads[*k][n] - elevation_m, false)
        };
        assert!(
            close(*v, theirs, flow),
            "{id} at step {k}: ours {v}, epanet-rs {theirs}"
        );
        compared += 1;
    }
    assert_eq!(compared, 289 * 20);
}

#[test]
fn ideal_readings_match_the_c_epanet_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let mut twin = builtin(config(289, false, vec![abrupt("B-3", 15.0, START)]));
    let b4 = twin.engine().node_index("B4").unwrap();
    let mut outflow = Vec::new();
    let ours = {
        // The export does the reading; a second run records B4's demand + leak.
        let mut other = builtin(config(289, false, vec![abrupt("B-3", 15.0, START)]));
        other
            .run(|s| {
                outflow.push(s.engine.demand_m3h(b4) + s.engine.emitter_m3h(b4));
                Ok(())
            })
            .unwrap();
        ideal_readings(&mut twin, tmp.path())
    };
    let fixture = include_str!("fixtures/builtin-epanet23.csv");
    let mut compared = 0;
    let (mut worst_head, mut worst_flow) = (0.0f64, 0.0f64);
    for line in fixture.lines().filter(|l| !l.starts_with('#')).skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let hour: usize = f[0].parse().unwrap();
        let reference: f64 = f[3].parse().unwrap();
        let k = hour * 12;
        let (v, flow) = match f[2] {
            "outflow" => (outflow[k], true),
            "flow" => (ours[&(k, f[1].to_owned())], true),
            _ => (ours[&(k, f[1].to_owned())], false),
        };
        assert!(
            close(v, reference, flow),
            "{} {} at {hour} h: ours {v}, EPANET 2.3 {reference}",
            f[1],
            f[2]
        );
        if flow {
            worst_flow = worst_flow.max((v - reference).abs() / reference.abs().max(1.0));
        } else {
            worst_head = worst_head.max((v - reference).abs());
        }
        compared += 1;
    }
    assert!(compared > 250, "{compared}");
    eprintln!("largest deviation from EPANET 2.3: {worst_head:.4} m, {worst_flow:.5} of flow");
}

fn repo_file(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

#[test]
fn the_example_scenarios_parse_and_fit_their_networks() {
    use waterline_sim::twin::scenario::Scenario;
    let builtin_example = repo_file("examples/sim/scenario.toml");
    let s = Scenario::parse(
        &std::fs::read_to_string(&builtin_example).unwrap(),
        "scenario.toml",
    )
    .unwrap();
    assert_eq!(
        (s.leaks.len(), s.setpoints.len(), s.random_leaks),
        (2, 1, 1)
    );
    let mut cfg = config(12, true, s.leaks);
    cfg.setpoints = s.setpoints;
    cfg.random_leaks = s.random_leaks;
    assert_eq!(builtin(cfg).leaks().len(), 3);

    let l_town = repo_file("examples/sim/l-town-2018.toml");
    let s = Scenario::parse(&std::fs::read_to_string(&l_town).unwrap(), "l-town").unwrap();
    assert_eq!(s.leaks.len(), 14, "the 14 leaks of leaks-2018.yalm");
    let engine = Engine::from_inp_file(&repo_file("data/l-town/L-TOWN.inp")).unwrap();
    let twin = Twin::new(engine, config(1, true, s.leaks)).unwrap();
    assert!(twin.leaks().iter().all(|l| l.zone.is_some()));
}

#[test]
fn l_town_areas_match_the_benchmark_and_balance() {
    let path = repo_file("data/l-town/L-TOWN.inp");
    let engine = Engine::from_inp_file(&path).unwrap();
    let leaks = vec![abrupt("p257", 11.8, START), abrupt("p158", 19.4, START)];
    let mut twin = Twin::new(engine, config(36, true, leaks)).unwrap();
    let summary: Vec<(String, usize, Vec<String>, Vec<String>)> = twin
        .zones()
        .iter()
        .map(|z| {
            let ids = |ms: &[waterline_sim::twin::zones::Meter]| {
                ms.iter().map(|m| m.id.clone()).collect::<Vec<_>>()
            };
            (
                z.id.clone(),
                z.junctions.len(),
                ids(&z.inlets),
                ids(&z.outlets),
            )
        })
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(summary[0].0, "A");
    assert_eq!(summary[0].2, s(&["p227", "p235"]));
    assert_eq!(summary[0].3, s(&["PUMP_1", "PRV-3"]));
    assert_eq!((summary[1].1, summary[1].2.clone()), (31, s(&["PRV-3"])));
    assert_eq!((summary[2].1, summary[2].2.clone()), (92, s(&["p239"])));
    assert_eq!(summary[0].1 + summary[1].1 + summary[2].1, 782);
    let tags = inp::sensor_tags(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(
        (
            tags.pressure.len(),
            tags.flow.len(),
            tags.level.len(),
            tags.amr.len()
        ),
        (33, 3, 1, 82)
    );
    let zones = twin.zones().to_vec();
    let placed: Vec<Option<usize>> = twin.leaks().iter().map(|l| l.zone).collect();
    twin.run(|step| {
        let e = step.engine;
        for (zi, z) in zones.iter().enumerate() {
            let inflow: f64 = z.inlets.iter().map(|m| e.flow_m3h(m.link)).sum::<f64>()
                - z.outlets.iter().map(|m| e.flow_m3h(m.link)).sum::<f64>();
            let demand: f64 = z.junctions.iter().map(|&n| e.demand_m3h(n)).sum();
            let leak: f64 = placed
                .iter()
                .zip(step.leak_flows_m3h)
                .filter(|(z, _)| **z == Some(zi))
                .map(|(_, q)| q)
                .sum();
            assert!(
                (inflow - demand - leak).abs() < 0.01,
                "{}: {inflow} vs {demand} + {leak}",
                z.id
            );
        }
        Ok(())
    })
    .unwrap();
}

#[test]
fn demand_patterns_follow_local_time() {
    let demand_at_start = |tz: chrono_tz::Tz| {
        let mut cfg = config(1, false, vec![]);
        cfg.timezone = tz;
        let mut twin = builtin(cfg);
        let j1 = twin.engine().node_index("J1").unwrap();
        let mut d = 0.0;
        twin.run(|s| {
            d = s.engine.demand_m3h(j1);
            Ok(())
        })
        .unwrap();
        d
    };
    // J1: base 3 m³/h; DIURNAL is 0.55 at local midnight and 1.50 at 08:00.
    assert!((demand_at_start(chrono_tz::Tz::UTC) - 3.0 * 0.55).abs() < 1e-9);
    assert!((demand_at_start(chrono_tz::Asia::Shanghai) - 3.0 * 1.50).abs() < 1e-9);
}

#[test]
fn week_long_patterns_start_on_monday() {
    // A copy of the built-in network whose pattern spans a week: 1.0 on Monday, 2.0 on
    // Tuesday, 3.0 on Wednesday, … (one value per day).
    let week = BUILTIN_INP
        .replace(
            " DIURNAL  0.55  0.45  0.40  0.38  0.42  0.60\n DIURNAL  0.95  1.35  1.50  1.35  1.20  1.15\n \
             DIURNAL  1.20  1.10  1.00  1.00  1.10  1.30\n DIURNAL  1.50  1.60  1.45  1.15  0.85  0.65\n",
            " DIURNAL  1 2 3 4 5 6 7\n",
        )
        .replace(" Pattern Timestep    1:00", " Pattern Timestep    24:00");
    assert_ne!(week, BUILTIN_INP, "the pattern was replaced");
    // Wednesday 2026-01-07.
    let mut cfg = config(1, false, vec![]);
    cfg.start = at("2026-01-07T06:00:00Z");
    let engine = Engine::from_inp_text(&week, "weekly").unwrap();
    assert_eq!(engine.pattern_span_s(), 7 * 86_400);
    let mut twin = Twin::new(engine, cfg).unwrap();
    let j1 = twin.engine().node_index("J1").unwrap();
    let mut d = 0.0;
    twin.run(|s| {
        d = s.engine.demand_m3h(j1);
        Ok(())
    })
    .unwrap();
    assert!((d - 3.0 * 3.0).abs() < 1e-9, "Wednesday's multiplier: {d}");
}

#[test]
fn a_holiday_draws_less_water_with_a_later_morning_peak() {
    // Two Mondays (5 and 12 January 2026), the second a holiday; exact demands.
    let day_demand = |holiday: bool| {
        let mut twin = builtin(config(288 * 8, false, Vec::new()));
        if holiday {
            twin = twin.with_holidays(vec!["2026-01-12".parse().unwrap()]);
        }
        let junctions: Vec<usize> = (0..twin.engine().nodes().len())
            .filter(|&n| {
                twin.engine().nodes()[n].kind == waterline_sim::twin::engine::NodeKind::Junction
            })
            .collect();
        let mut by_hour = [0.0f64; 24];
        twin.run(|step| {
            if step.index >= 288 * 7 {
                let h = (step.index - 288 * 7) / 12;
                by_hour[h] += junctions
                    .iter()
                    .map(|&n| step.engine.demand_m3h(n))
                    .sum::<f64>();
            }
            Ok(())
        })
        .unwrap();
        by_hour
    };
    let (ordinary, holiday) = (day_demand(false), day_demand(true));
    let total = |d: &[f64; 24]| d.iter().sum::<f64>();
    assert!(
        total(&holiday) < 0.97 * total(&ordinary),
        "{} vs {}",
        total(&holiday),
        total(&ordinary)
    );
    // 07:00–08:00 is quieter on the holiday, 09:00–10:00 busier.
    assert!(holiday[7] < ordinary[7], "{holiday:?} {ordinary:?}");
    assert!(holiday[9] > ordinary[9], "{holiday:?} {ordinary:?}");
}

#[test]
fn demand_patterns_follow_the_local_clock_across_a_daylight_saving_change() {
    // Europe/Nicosia moves from UTC+2 to UTC+3 on Sunday 29 March 2026 at 03:00 local time.
    let mut cfg = config(288 * 4, false, Vec::new());
    cfg.start = at("2026-03-27T22:00:00Z"); // Saturday 00:00 local
    cfg.timezone = chrono_tz::Europe::Nicosia;
    let mut twin = builtin(cfg);
    let junction = twin.engine().node_index("J2").unwrap();
    let mut at_utc = HashMap::new();
    twin.run(|step| {
        at_utc.insert(step.time, step.engine.demand_m3h(junction));
        Ok(())
    })
    .unwrap();
    // 07:00 local: 05:00 UTC on Saturday, 04:00 UTC on Monday. The daily pattern gives both
    // the same demand (exact demands, no weekly factor on a daily pattern without variation).
    let saturday = at_utc[&at("2026-03-28T05:00:00Z")];
    let monday = at_utc[&at("2026-03-30T04:00:00Z")];
    assert!((saturday - monday).abs() < 1e-9, "{saturday} vs {monday}");
    // And not the demand of 07:00 UTC+2 on Monday (06:00 local summer time).
    let wrong = at_utc[&at("2026-03-30T05:00:00Z")];
    assert!(
        (saturday - wrong).abs() > 1e-6,
        "the pattern still differs by the hour"
    );
}

#[test]
fn a_bursts_opening_is_measured_as_what_it_took_from_each_nodes_pressure() {
    // The same steady network with and without a 20 mm burst in A opening at step 12: the
    // onset the twin reports at that step is the difference of the two runs' pressures, node by
    // node, and no other step reports one.
    let opens = "2026-01-05T01:00:00Z";
    let run = |leaks: Vec<Leak>| {
        let mut twin = builtin(config(16, false, leaks));
        let mut pressures = Vec::new();
        let mut onsets = Vec::new();
        twin.run(|step| {
            let n = step.engine.nodes().len();
            pressures.push(
                (0..n)
                    .map(|i| step.engine.pressure_m(i))
                    .collect::<Vec<_>>(),
            );
            onsets.extend(step.onsets.iter().map(|o| (step.index, o.clone())));
            Ok(())
        })
        .unwrap();
        (pressures, onsets)
    };
    let (with, onsets) = run(vec![abrupt("A6", 20.0, opens)]);
    let (without, none) = run(vec![]);
    assert!(none.is_empty());
    // A burst open since before the window did not open in it: no onset.
    let (_, before) = run(vec![abrupt("A6", 20.0, "2026-01-04T12:00:00Z")]);
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(onsets.len(), 1, "{onsets:?}");
    let (k, onset) = &onsets[0];
    assert_eq!((*k, onset.leak), (12, 0));
    let mut largest = 0.0f64;
    for (node, drop) in onset.pressure_drop_m.iter().enumerate() {
        let expected = without[12][node] - with[12][node];
        assert!(
            (drop - expected).abs() < 1e-3,
            "node {node}: {drop} vs {expected}"
        );
        largest = largest.max(*drop);
    }
    assert!(
        largest > 1.0,
        "a 20 mm burst lowers its area's pressures: {largest} m"
    );

    // The export's truth gives the largest drop at a pressure sensor, and which sensor.
    let tmp = tempfile::tempdir().unwrap();
    let mut twin = builtin(config(16, false, vec![abrupt("A6", 20.0, opens)]));
    let tags = inp::sensor_tags(BUILTIN_INP);
    export::export(&mut twin, &tags, tmp.path(), true, false).unwrap();
    let truth: serde_json::Value =
        serde_json::from_str(read(tmp.path(), "truth.jsonl").lines().next().unwrap()).unwrap();
    let sensor = truth["pressure_drop_sensor"].as_str().unwrap();
    let net = waterline_core::network::Network::parse(&read(tmp.path(), "network.toml")).unwrap();
    let id = waterline_core::SensorId::parse(sensor).unwrap();
    assert_eq!(net.sensors[&id].kind, waterline_core::SensorKind::Pressure);
    let drop_m = truth["pressure_drop_m"].as_f64().unwrap();
    assert!(
        drop_m > 0.5 && drop_m <= largest + 1e-3,
        "{drop_m} of {largest}"
    );
}
