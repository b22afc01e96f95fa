//! The digital twin's export through the leakage analytics: leaks injected into the hydraulic
//! simulation of the built-in network (abrupt in DMA A with a repair, incipient in DMA B).
//! The abrupt leak is found in the right DMA within hours and closed at its repair, and
//! nothing false is reported. (The small incipient leak in B is not found yet within the
//! window: issue 5's note records it; the assertion on it will tighten when it is.)

use chrono::{DateTime, Utc};
use waterline_analytics::evaluate::{self, Economics};
use waterline_analytics::leakage::{self, LeakageConfig};
use waterline_analytics::{LoadOptions, Readings};
use waterline_core::Network;
use waterline_sim::twin::export::{self, SimRequest};

const SCENARIO: &str = r#"
start = "2026-03-02T00:00:00Z"
timezone = "Asia/Shanghai"

[[leak]]
pipe = "A6"
start = "2026-03-16T02:30:00Z"
end = "2026-03-21T10:00:00Z"
diameter_mm = 14.0
type = "abrupt"

[[leak]]
pipe = "B-3"
start = "2026-03-19T00:00:00Z"
diameter_mm = 16.0
type = "incipient"
peak = "2026-03-26T00:00:00Z"
"#;

/// Exports `days` of the built-in network (`seed`, the scenario file or random leaks) into
/// `dir` and runs the leakage analysis on it: the readings, the report and the truth.
fn simulate_and_analyse(
    dir: &std::path::Path,
    days: u32,
    seed: u64,
    scenario: Option<std::path::PathBuf>,
) -> (Readings, leakage::LeakageReport, Vec<evaluate::TruthLeak>) {
    let out = dir.join("export");
    export::run(&SimRequest {
        network: None,
        days,
        seed,
        ideal: false,
        scenario,
        start: None,
        step_minutes: 5,
        export: out.clone(),
        progress: false,
    })
    .unwrap();
    let net = Network::parse(&std::fs::read_to_string(out.join("network.toml")).unwrap()).unwrap();
    let (readings, _) =
        Readings::load(&out.join("readings.csv"), &net, LoadOptions::default()).unwrap();
    let report = leakage::analyze(&readings, &net, &LeakageConfig::default()).unwrap();
    let truth = evaluate::read_truth(
        std::io::BufReader::new(std::fs::File::open(out.join("truth.jsonl")).unwrap()),
        "truth.jsonl",
    )
    .unwrap();
    (readings, report, truth)
}

#[test]
fn detectors_find_the_twins_abrupt_leak_in_time_close_it_at_the_repair_and_raise_no_false_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("scenario.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let (_, report, truth) = simulate_and_analyse(dir.path(), 28, 7, Some(scenario));
    assert_eq!(truth.len(), 2);
    let horizon: DateTime<Utc> = "2026-03-30T00:00:00Z".parse().unwrap();
    for e in &report.events {
        eprintln!("{}", serde_json::to_string(e).unwrap());
    }
    let s = evaluate::score(&truth, &report.events, horizon, Economics::default());
    assert_eq!(s.false_alarms, 0, "{s:?}");
    assert!(s.found >= 1, "{s:?}");
    assert!(s.median_delay_h["abrupt"] <= 12.0, "{s:?}");
    // The repaired leak's event is closed within a day of the repair.
    let repair: DateTime<Utc> = "2026-03-21T10:00:00Z".parse().unwrap();
    let closed = report
        .events
        .iter()
        .find(|e| {
            e.dma
                .as_ref()
                .is_some_and(|d| d.as_str() == truth[0].dma.as_deref().unwrap())
        })
        .and_then(|e| e.end)
        .expect("the repair closes the abrupt leak's event");
    assert!(
        (closed - repair).num_hours().abs() <= 24,
        "closed at {closed}"
    );
}

/// Seven random leaks on the built-in network over 45 days (seed 5): incipient leaks of up to
/// 20 mm carry more water than an area's whole night demand, and an error of a few m³/h in
/// their estimated flow, divided by a flat night's small demand, once made a demand factor
/// that the morning ramp multiplied into a `burst` day after day (31 false alarms). The
/// factor is judged on the whole flow now. And a leak the night detector finds in the first
/// two weeks, before the profile judges any bucket, is taken out of the demand the profile
/// learnt since it began (left in, 5 false alarms and one leak missed).
#[test]
fn open_leaks_do_not_turn_every_morning_ramp_into_a_burst() {
    let s = score_built_in_45_days(5);
    assert_eq!(s.found, 7, "{s:?}");
    assert!(s.false_alarms <= 4, "{s:?}");
}

/// Seed 2: a leak that grew from the data's first days is repaired before the profile judges
/// any bucket, and its event closes only at the second low night. The demand learnt in
/// between had the leak's estimated flow taken out of it, 16 m³/h of water that was no longer
/// lost: given back when the repair is found (left negative, that slot read every week as a
/// `burst` at the same hour: 8 false alarms).
#[test]
fn a_repair_gives_back_the_demand_learnt_after_it() {
    let s = score_built_in_45_days(2);
    assert_eq!(s.found, 7, "{s:?}");
    assert!(s.false_alarms <= 4, "{s:?}");
}

/// Seed 1: a 20 mm leak grows from the data's first night. The night baseline is a recent
/// level plus each weekday's offset from the nights centred on it, so the first week's growth
/// is not learnt as each weekday's own night use (baselines of one same-weekday night each:
/// the leak's flow estimate shrank night by night to nothing, then bursts: 12 false alarms).
#[test]
fn a_leak_growing_from_the_first_day_is_not_learnt_as_weekday_night_use() {
    let s = score_built_in_45_days(1);
    assert_eq!(s.found, 7, "{s:?}");
    assert!(s.false_alarms <= 4, "{s:?}");
}

/// Seed 8: a jump counts only if neither a demand factor nor an offset fitted on the buckets
/// before explains it. An error in the open leaks' estimated flow is a constant offset, which
/// a factor fitted on a flat night scales up along the morning ramp (factor only: 5 false
/// alarms).
#[test]
fn an_error_in_an_open_leaks_flow_is_not_scaled_into_a_burst() {
    let s = score_built_in_45_days(8);
    assert_eq!(s.found, 7, "{s:?}");
    assert!(s.false_alarms <= 2, "{s:?}");
}

/// The detectors' score on 45 days of the built-in network (seven random leaks) for `seed`.
fn score_built_in_45_days(seed: u64) -> evaluate::Score {
    let dir = tempfile::tempdir().unwrap();
    let (readings, report, truth) = simulate_and_analyse(dir.path(), 45, seed, None);
    assert_eq!(truth.len(), 7);
    let horizon = readings
        .time_range()
        .map(|(_, t1)| DateTime::from_timestamp_millis(t1).unwrap())
        .unwrap();
    evaluate::score(&truth, &report.events, horizon, Economics::default())
}
