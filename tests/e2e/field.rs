//! The twin's field devices through a real Mosquitto into ingest and PostgreSQL: two days of
//! the built-in network back-filled in native JSON, Sparkplug B and ChirpStack uplinks, with
//! duplicates, late and shuffled batches, corrupt payloads, clock skew, a repeated hour and
//! silent devices. Every reading the devices sent intact is stored once with its value, every
//! corrupt message is a dead letter, and nothing else is stored.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use waterline_core::{Network, SensorId};
use waterline_sim::field::fleet::FleetConfig;
use waterline_sim::field::publish::BrokerConfig;
use waterline_sim::field::{self, FieldConfig};

use waterline_sim::twin::export::{self, SimRequest};
use waterline_sim::twin::live::LiveConfig;
use waterline_tests::{Mosquitto, PgDb, eventually};

use crate::ingest::{Running, wait_until_subscribed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_of_the_twins_devices_is_stored_exactly_once() {
    let broker = Mosquitto::start().unwrap();
    let db = PgDb::create().await.unwrap();
    let store = db.plain_store().await.unwrap();
    // Two days ending a day ago: inside ingest's accepted window, and a clock skew of minutes
    // cannot push a reading into the future.
    let start = (Utc::now() - TimeDelta::days(3))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let dir = tempfile::tempdir().unwrap();
    let request = SimRequest {
        network: None,
        days: 2,
        seed: 17,
        ideal: false,
        scenario: None,
        start: Some(start),
        step_minutes: 5,
        export: dir.path().to_owned(),
        progress: false,
    };
    let (twin, tags) = export::build(&request).unwrap();
    let twin = twin.with_device_misbehaviour(waterline_sim::field::misbehave::Misbehaviour {
        duplicate_rate: 0.05,
        late_rate: 0.2,
        out_of_order_rate: 0.3,
        malformed_rate: 0.01,
        clock_skew_rate: 0.2,
        repeated_hours: 2,
        silent_per_week: 7.0,
        battery_decay_per_day: 30.0,
    });
    let prepared = field::prepare(twin, &tags, false, FleetConfig::default())
        .unwrap()
        .record_expected();
    let network = Network::parse(prepared.network_toml()).unwrap();
    store.upsert_described_sensors(&network).await.unwrap();
    let ingest = Running::start(&store, &broker, "field-ingest").await;
    wait_until_subscribed(&store, &broker).await;
    let base = store.count_readings().await.unwrap();
    let since = Utc::now() - TimeDelta::minutes(1);

    let run = prepared
        .start(FieldConfig {
            broker: BrokerConfig {
                host: "127.0.0.1".into(),
                port: broker.port,
                client_id: "field-devices".into(),
                max_inflight: 100,
            },
            live: LiveConfig {
                speed: None,
                listen: [127, 0, 0, 1].into(),
            },
            wall_clock: false,
            progress: false,
            hold: false,
        })
        .await
        .unwrap();
    let report = tokio::time::timeout(Duration::from_secs(120), async {
        run.wait(tokio::sync::watch::channel(false).1).await;
        run.finish().await
    })
    .await
    .expect("the back-fill ends within 2 minutes")
    .unwrap();
    let t = report.traffic;
    assert_eq!(report.state.steps_done, 576);
    assert_eq!(report.published.acked, report.published.messages);
    assert_eq!(
        report.published.messages, t.messages,
        "every message sent was published"
    );
    assert!(
        t.duplicates > 0 && t.late > 0 && t.malformed > 0 && t.out_of_order > 0,
        "{t:?}"
    );
    assert!(
        t.cjt188_not_live > 0,
        "CJ/T 188 meters stay quiet in a back-fill"
    );
    let expected = report.expected.unwrap();
    eprintln!(
        "field back-fill: {} messages ({} acknowledged), {} readings, {} expected stored; {t:?}",
        report.published.messages,
        report.published.acked,
        t.readings,
        expected.len()
    );

    // Everything intact is stored (ingest commits in batches: wait for the count).
    let want = base + expected.len() as i64;
    let got = eventually(Duration::from_secs(60), || async {
        let c = store.count_readings().await.unwrap();
        (c >= want).then_some(c)
    })
    .await;
    assert_eq!(
        got,
        Some(want),
        "stored {:?} of {want}",
        store.count_readings().await
    );
    // …each with the value the device sent first, and nothing more arrives later.
    let mut by_sensor: BTreeMap<&SensorId, Vec<(chrono::DateTime<Utc>, f64)>> = BTreeMap::new();
    for ((s, time), v) in &expected {
        by_sensor.entry(s).or_default().push((*time, *v));
    }
    for (sensor, want) in &by_sensor {
        let from = want.iter().map(|p| p.0).min().unwrap();
        let to = want.iter().map(|p| p.0).max().unwrap() + TimeDelta::seconds(1);
        let stored: Vec<(chrono::DateTime<Utc>, f64)> = store
            .readings(sensor, from, to, 100_000)
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.time, p.value))
            .collect();
        assert_eq!(&stored, want, "{sensor}");
    }
    // Every corrupt message is a dead letter, and nothing else is.
    let dead = store
        .dead_letters(since, Utc::now() + TimeDelta::minutes(1), 10_000)
        .await
        .unwrap();
    assert_eq!(dead.len() as u64, t.malformed, "{dead:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(store.count_readings().await.unwrap(), want);
    ingest.stop().await;
}
