//! Pressure management closed loop: four days of the twin's readings give a PRV set-point
//! recommendation; a dispatcher applies it through the HTTP API; the binary's Modbus writer
//! writes it to the live twin's PRV controller; and the twin's zone pressure and leak flow
//! fall against the same twin left alone.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, TimeDelta, Utc};
use waterline_analytics::leakage::{self, LeakageConfig};
use waterline_analytics::prv::{self, PrvConfig};
use waterline_analytics::{LoadOptions, Readings};
use waterline_core::health::HealthBoard;
use waterline_core::{Network, Role};
use waterline_dashboards::{AppState, app};
use waterline_sim::twin::export::{self, SimRequest};
use waterline_sim::twin::live::{LiveConfig, LiveTwin};
use waterline_store::PrvAdvice;
use waterline_tests::SqliteDb;

mod prv_loop;
use prv_loop::{call, controller_writer};

const START: &str = "2026-01-05T00:00:00Z";
const SEED: u64 = 17;

/// An abrupt 12 mm leak in area B (behind PRV-B) from the start, nothing random.
const SCENARIO: &str = r#"
random_leaks = 0
random_quality_incidents = 0
random_sensor_faults = 0
random_pressure_faults = 0
[[leak]]
pipe = "B-2"
start = "2026-01-05T00:00:00Z"
diameter_mm = 12.0
type = "abrupt"
"#;

fn request(dir: &Path, start: DateTime<Utc>, days: u32) -> SimRequest {
    SimRequest {
        network: None,
        days,
        seed: SEED,
        ideal: false,
        scenario: Some(dir.join("scenario.toml")),
        start: Some(start),
        step_minutes: 15,
        export: dir.join("export"),
        progress: false,
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applied_recommendation_lowers_zone_pressure_and_leak_flow_in_the_twin() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("scenario.toml"), SCENARIO).unwrap();
    let start: DateTime<Utc> = START.parse().unwrap();

    // 1. History: four days of readings, exported as the field would send them.
    export::run(&request(dir.path(), start, 4)).unwrap();
    let text = std::fs::read_to_string(dir.path().join("export/network.toml")).unwrap();
    let network = Network::parse(&text).unwrap();
    let prv_b = network
        .prvs
        .iter()
        .find(|p| p.id.as_str() == "PRV-B")
        .expect("the export describes PRV-B");
    assert_eq!(
        prv_b.setpoint_sensor.as_ref().map(|s| s.as_str()),
        Some("RTU-PRV-B-prv-setpoint")
    );
    let (readings, _) = Readings::load(
        &dir.path().join("export/readings.csv"),
        &network,
        LoadOptions::default(),
    )
    .unwrap();
    let days = leakage::analyze(&readings, &network, &LeakageConfig::default())
        .unwrap()
        .days;
    let report = prv::recommend(
        &readings,
        &network,
        &prv::night_flows(&days),
        &PrvConfig::default(),
    )
    .unwrap();
    let rec = report
        .recommendations
        .iter()
        .find(|r| r.prv == "PRV-B")
        .unwrap_or_else(|| panic!("no recommendation: {:?}", report.skipped));
    let setting = rec.fixed.hourly_setting_m[0];
    assert!(
        setting < 28.0,
        "the .inp holds PRV-B at 30 m; the zone needs less: {rec:?}"
    );
    assert!(rec.fixed.expected_critical_min_m >= rec.critical_min_m + rec.margin_m - 1e-9);
    assert!(rec.fixed.leakage_saving_m3_day.unwrap() > 0.0, "{rec:?}");

    // 2. The store holds it, as the analytics job leaves it.
    let db = SqliteDb::create().unwrap();
    let store = db.store().await.unwrap();
    store
        .replace_prv_advice(&[PrvAdvice {
            prv: rec.prv.clone(),
            dma: rec.dma.clone(),
            computed_at: Utc::now(),
            body: serde_json::to_value(rec).unwrap(),
        }])
        .await
        .unwrap();
    let dispatcher = store
        .create_token(Role::Dispatcher, "dispatch-wu")
        .await
        .unwrap();
    let engineer = store.create_token(Role::Engineer, "eng-ma").await.unwrap();

    // 3. The next two days run live behind the PRV controllers.
    let live_start = start + TimeDelta::days(4);
    let (twin, _) = export::build(&request(dir.path(), live_start, 2)).unwrap();
    let mut live = LiveTwin::start(
        twin,
        LiveConfig {
            // A 15-minute step every 50 ms: two days in about 10 s, time enough for the API
            // calls below on a loaded machine.
            speed: Some(900.0 / 0.05),
            listen: [127, 0, 0, 1].into(),
        },
    )
    .await
    .unwrap();
    let router = app(AppState {
        store: store.clone(),
        health: HealthBoard::new(),
        metrics: None,
        setpoints: Some(Arc::new(controller_writer(&live, &network, "PRV-B"))),
    });

    // The API lists the recommendation.
    let (status, list) = call(&router, &engineer, "/api/v1/prvs", "").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list[0]["prv"], "PRV-B");
    assert_eq!(
        list[0]["recommendation"]["fixed"]["hourly_setting_m"][0],
        setting
    );

    // Only a dispatcher applies, and only with confirm = true.
    let apply = "/api/v1/prvs/PRV-B/apply";
    let (status, body) = call(&router, &engineer, apply, r#"{"confirm": true}"#).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = call(&router, &dispatcher, apply, "{}").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("`confirm`"),
        "{body}"
    );
    let (status, body) = call(
        &router,
        &dispatcher,
        apply,
        r#"{"setting_m": 75, "confirm": true}"#,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "out of the point's range: {body}"
    );
    assert!(live.state().applied.is_empty(), "nothing written yet");
    let (status, body) = call(
        &router,
        &dispatcher,
        "/api/v1/prvs/PRV-X/apply",
        r#"{"setting_m": 20, "confirm": true}"#,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Apply after a few hours of the live run.
    live.wait_for_steps(8, Duration::from_secs(30)).await;
    let (status, body) = call(
        &router,
        &dispatcher,
        apply,
        r#"{"confirm": true, "note": "night pressure too high"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["source"], "recommendation");
    assert_eq!(body["target"], "RTU-PRV-B/RTU-PRV-B-prv-setpoint");
    assert!(
        (body["read_back_m"].as_f64().unwrap() - setting).abs() < 0.051,
        "{body}"
    );
    let end = live.wait_for_steps(192, Duration::from_secs(60)).await;
    live.stop();
    assert!(end.error.is_none(), "{:?}", end.error);
    assert_eq!(end.steps_done, 192);
    assert_eq!(end.applied.len(), 1, "{:?}", end.applied);
    let applied = &end.applied[0];
    assert!((applied.setting_m - setting).abs() < 0.051);

    // 4. The same two days without the write, and the live run's own course: re-run both
    //    offline and compare from the step the write took effect.
    let course = |with_write: bool| {
        let (mut twin, _) = export::build(&request(dir.path(), live_start, 2)).unwrap();
        let link = twin.engine().link_index("PRV-B").unwrap();
        let azp = twin
            .engine()
            .node_index(
                network
                    .dmas
                    .iter()
                    .find(|d| d.id.as_str() == "B")
                    .unwrap()
                    .azp_sensor
                    .as_ref()
                    .unwrap()
                    .as_str(),
            )
            .unwrap();
        let critical = twin
            .engine()
            .node_index(rec.critical_sensor.as_str())
            .unwrap();
        let (mut azp_p, mut crit_p, mut leak) = (Vec::new(), Vec::new(), Vec::new());
        twin.run_with(
            |k, _| {
                Ok(if with_write && k == applied.step {
                    vec![(link, applied.setting_m)]
                } else {
                    Vec::new()
                })
            },
            |step| {
                if step.index >= applied.step {
                    azp_p.push(step.engine.pressure_m(azp));
                    crit_p.push(step.engine.pressure_m(critical));
                    leak.push(step.leak_flows_m3h.iter().sum::<f64>());
                }
                Ok(())
            },
        )
        .unwrap();
        (azp_p, crit_p, leak)
    };
    let (azp_before, _, leak_before) = course(false);
    let (azp_after, crit_after, leak_after) = course(true);
    // The offline re-run with the write reproduces the live run's last step exactly.
    assert!(
        (leak_after.last().unwrap() - end.leak_flows_m3h.iter().sum::<f64>()).abs() < 1e-9,
        "the live twin and its replay agree"
    );
    let drop = mean(&azp_before) - mean(&azp_after);
    let saved = mean(&leak_before) - mean(&leak_after);
    eprintln!(
        "PRV-B 30 m → {setting:.1} m: AZP −{drop:.2} m (predicted −{:.2} m); leak {:.2} → {:.2} m³/h ({:.1} m³/day saved, predicted {:.1}); critical point min {:.2} m (kept ≥ {:.1})",
        rec.fixed.azp_reduction_m,
        mean(&leak_before),
        mean(&leak_after),
        saved * 24.0,
        rec.fixed.leakage_saving_m3_day.unwrap(),
        crit_after.iter().copied().fold(f64::MAX, f64::min),
        rec.critical_min_m + rec.margin_m,
    );
    assert!(drop > 2.0, "zone pressure fell by {drop} m");
    assert!(
        (drop - rec.fixed.azp_reduction_m).abs() < 1.0,
        "the fall matches the prediction: {drop} vs {}",
        rec.fixed.azp_reduction_m
    );
    assert!(
        saved > 0.05 * mean(&leak_before),
        "leak flow fell: {saved} m³/h"
    );
    let crit_min = crit_after.iter().copied().fold(f64::MAX, f64::min);
    assert!(
        crit_min >= rec.critical_min_m + rec.margin_m - 0.5,
        "the critical point stayed near or above its floor: {crit_min}"
    );

    // 5. The write is audited with who, what and the value read back.
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
    let rows: Vec<(String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT actor, action, target, detail FROM audit_log WHERE action LIKE 'prv.%' ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let actions: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(
        actions,
        ["prv.apply.failed", "prv.apply.failed", "prv.apply"],
        "{rows:?}"
    );
    let last = &rows[2];
    assert_eq!(last.0, "dispatch-wu");
    assert_eq!(last.2.as_deref(), Some("PRV-B"));
    let detail: serde_json::Value = serde_json::from_str(&last.3).unwrap();
    assert_eq!(detail["note"], "night pressure too high");
    assert!((detail["read_back_m"].as_f64().unwrap() - setting).abs() < 0.051);
}
