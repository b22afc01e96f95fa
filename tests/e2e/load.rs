//! The simulator's load mode through a real Mosquitto and ingest into PostgreSQL: every
//! reading it reports as published is stored exactly once, the broker acknowledged every
//! message, and the achieved rate is the target's.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use tokio::sync::watch;
use waterline_core::{Network, SensorId};
use waterline_sim::load::{self, LoadConfig};
use waterline_tests::{Mosquitto, PgDb};

use crate::ingest::{Running, wait_for_count, wait_until_subscribed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_mode_readings_are_all_stored_once_at_the_target_rate() {
    let broker = Mosquitto::start().unwrap();
    let db = PgDb::create().await.unwrap();
    let store = db.plain_store().await.unwrap();
    let devices = 20;
    let net = Network::parse(&load::network_toml(devices)).unwrap();
    store.upsert_described_sensors(&net).await.unwrap();
    let ingest = Running::start(&store, &broker, "ingest-load").await;
    wait_until_subscribed(&store, &broker).await;
    let base = store.count_readings().await.unwrap();
    let since = Utc::now();

    // 100 messages/s of 5 readings over 20 devices for 2 s: 5 messages a second per device,
    // inside ingest's default rate limit of 600 a minute.
    let cfg = LoadConfig {
        broker_port: broker.port,
        client_id: "load-e2e".into(),
        devices,
        rate: 100.0,
        batch: 5,
        duration: Duration::from_secs(2),
        ..LoadConfig::default()
    };
    let (_stop, stopped) = watch::channel(false);
    let report = load::run(&cfg, stopped).await.unwrap();
    eprintln!("{report}");

    assert!(!report.stopped_early);
    assert_eq!(report.messages_scheduled, 200, "{report}");
    assert_eq!(report.messages_published, 200, "{report}");
    assert_eq!(report.messages_acked, report.messages_published, "{report}");
    assert_eq!(report.readings, report.messages_published * 5);
    assert_eq!(report.connection_errors, 0, "{report}");
    let share = report.achieved_msgs_per_s / report.target_msgs_per_s;
    assert!((0.85..=1.05).contains(&share), "{report}");
    assert!(
        (report.achieved_readings_per_s / (5.0 * report.achieved_msgs_per_s) - 1.0).abs() < 1e-9
    );

    let want = base + report.readings as i64;
    assert_eq!(wait_for_count(&store, want).await, want, "{report}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.count_readings().await.unwrap(), want, "nothing extra");

    // Each device sent every `devices`-th message: 10 of 5 readings each, all stored, the
    // newest of them stamped within the run.
    let (from, to) = (
        since - TimeDelta::seconds(5),
        Utc::now() + TimeDelta::seconds(5),
    );
    for i in 0..devices {
        let sensor = SensorId::parse(load::sensor_id(i)).unwrap();
        let points = store.readings(&sensor, from, to, 10_000).await.unwrap();
        assert_eq!(points.len(), 50, "{sensor}");
        assert!(
            points.windows(2).all(|w| w[0].value < w[1].value),
            "{sensor}"
        );
    }
    let dead = store.dead_letters(from, to, 100).await.unwrap();
    assert!(dead.is_empty(), "{dead:?}");
    ingest.stop().await;
    store.close().await;
}
