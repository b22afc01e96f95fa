//! An hourly PRV schedule, end to end: a dispatcher puts the recommended schedule in force
//! through the API, which writes the current hour's set point to the live twin's PRV
//! controller over Modbus; the service's runner writes the next hour's when it comes (and
//! nothing twice); a fixed set point ends the schedule; every step is audited.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, TimeDelta, Timelike, Utc};
use waterline::prv_schedule::Runner;
use waterline_core::health::HealthBoard;
use waterline_core::{Network, Role};
use waterline_dashboards::{AppState, SetpointWriter, app};
use waterline_sim::twin::export::{self, SimRequest};
use waterline_sim::twin::live::{LiveConfig, LiveTwin};
use waterline_store::PrvAdvice;
use waterline_tests::SqliteDb;

mod prv_loop;
use prv_loop::{call, controller_writer};

/// The recommended schedule: a distinct set point per UTC hour, inside the controller's range.
fn hourly() -> Vec<f64> {
    (0..24).map(|h| 20.0 + f64::from(h) * 0.25).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_is_written_hour_by_hour_to_the_live_controller() {
    let dir = tempfile::tempdir().unwrap();
    let request = SimRequest {
        network: None,
        days: 1,
        seed: 5,
        ideal: false,
        scenario: None,
        start: None,
        step_minutes: 1,
        export: dir.path().join("export"),
        progress: false,
    };
    export::run(&request).unwrap();
    let text = std::fs::read_to_string(dir.path().join("export/network.toml")).unwrap();
    let network = Network::parse(&text).unwrap();

    let db = SqliteDb::create().unwrap();
    let store = db.store().await.unwrap();
    store
        .replace_prv_advice(&[PrvAdvice {
            prv: "PRV-B".into(),
            dma: "B".into(),
            computed_at: Utc::now(),
            body: serde_json::json!({
                "fixed": {"hourly_setting_m": [24.0]},
                "schedule": {"hourly_setting_m": hourly()},
                "timezone": "UTC",
            }),
        }])
        .await
        .unwrap();
    let dispatcher = store
        .create_token(Role::Dispatcher, "dispatch-wu")
        .await
        .unwrap();
    let viewer = store.create_token(Role::Viewer, "view-li").await.unwrap();

    // The twin runs live (a 1-minute step every 20 ms) behind its PRV controllers.
    let (twin, _) = export::build(&request).unwrap();
    let mut live = LiveTwin::start(
        twin,
        LiveConfig {
            speed: Some(60.0 / 0.02),
            listen: [127, 0, 0, 1].into(),
        },
    )
    .await
    .unwrap();
    let writer: Arc<dyn SetpointWriter> = Arc::new(controller_writer(&live, &network, "PRV-B"));
    let router = app(AppState {
        store: store.clone(),
        health: HealthBoard::new(),
        metrics: None,
        setpoints: Some(writer.clone()),
    });

    // The controllers hold their initial set points once the first steps ran.
    live.wait_for_steps(3, Duration::from_secs(30)).await;

    // Only a dispatcher, only with confirm; a bad schedule names the hour.
    let uri = "/api/v1/prvs/PRV-B/schedule";
    let (status, body) = call(&router, &viewer, uri, r#"{"confirm": true}"#).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = call(&router, &dispatcher, uri, "{}").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("`confirm`"),
        "{body}"
    );
    let mut bad = hourly();
    bad[7] = -1.0;
    let (status, body) = call(
        &router,
        &dispatcher,
        uri,
        &serde_json::json!({"hourly_setting_m": bad, "confirm": true}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"].as_str().unwrap().contains("hour 7"), "{body}");
    assert!(live.state().applied.is_empty(), "nothing written yet");

    // The recommended schedule: this hour's set point is written at once and read back.
    let (status, body) = call(
        &router,
        &dispatcher,
        uri,
        r#"{"confirm": true, "note": "night pressure management"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hour_start: DateTime<Utc> = body["hour_start"].as_str().unwrap().parse().unwrap();
    assert_eq!(hour_start.minute(), 0);
    let expected = hourly()[hour_start.hour() as usize];
    assert_eq!(body["schedule"]["source"], "recommendation");
    assert_eq!(body["setting_m"], expected);
    assert!(
        (body["read_back_m"].as_f64().unwrap() - expected).abs() < 0.051,
        "{body}"
    );
    let (_, list) = call(&router, &viewer, "/api/v1/prvs", "").await;
    assert_eq!(list[0]["schedule_in_force"]["timezone"], "UTC");
    assert_eq!(list[0]["schedule_in_force"]["written_m"], expected);

    // The runner: nothing more this hour; the next hour's set point when it comes, once.
    // (The twin takes one write per step: let it take this one first.)
    let done = live.state().steps_done;
    live.wait_for_steps(done + 2, Duration::from_secs(30)).await;
    // The runner is told the time: within this hour, then within the next, whenever the
    // test runs.
    let mut runner = Runner::default();
    let this_hour = hour_start + TimeDelta::minutes(30);
    let tick = runner
        .tick(&store, writer.as_ref(), this_hour)
        .await
        .unwrap();
    assert!(
        tick.written.is_empty() && tick.failed.is_empty(),
        "{tick:?}"
    );
    let next_hour: DateTime<Utc> = hour_start + TimeDelta::minutes(61);
    let tick = runner
        .tick(&store, writer.as_ref(), next_hour)
        .await
        .unwrap();
    let next = hourly()[next_hour.hour() as usize];
    assert_eq!(tick.written, [("PRV-B".to_owned(), next)], "{tick:?}");
    let tick = runner
        .tick(&store, writer.as_ref(), next_hour + TimeDelta::minutes(5))
        .await
        .unwrap();
    assert!(tick.written.is_empty(), "written once: {tick:?}");

    // The controller took both, in order.
    let mut applied = Vec::new();
    for _ in 0..100 {
        applied = live.state().applied;
        if applied.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let settings: Vec<f64> = applied.iter().map(|a| a.setting_m).collect();
    assert_eq!(settings.len(), 2, "{applied:?}");
    assert!((settings[0] - expected).abs() < 0.051 && (settings[1] - next).abs() < 0.051);

    // A fixed set point ends the schedule; cancelling again finds none.
    let (status, body) = call(
        &router,
        &dispatcher,
        "/api/v1/prvs/PRV-B/apply",
        r#"{"setting_m": 26.5, "confirm": true}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["schedule_cancelled"], true);
    let (status, _) = call(
        &router,
        &dispatcher,
        "/api/v1/prvs/PRV-B/schedule/cancel",
        "{}",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let tick = runner
        .tick(&store, writer.as_ref(), next_hour + TimeDelta::hours(1))
        .await
        .unwrap();
    assert_eq!(tick.in_force, 0);
    live.stop();

    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT actor, action FROM audit_log WHERE action LIKE 'prv.%' ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let rows: Vec<(&str, &str)> = rows.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(
        rows,
        [
            ("dispatch-wu", "prv.schedule.write"),
            ("dispatch-wu", "prv.schedule.apply"),
            ("scheduler", "prv.schedule.write"),
            ("dispatch-wu", "prv.apply"),
            ("dispatch-wu", "prv.schedule.cancel"),
        ]
    );
}
