//! Ingest end to end through a real Mosquitto into a real store: every published reading is
//! stored exactly once, redelivery adds nothing, bad payloads are dead-lettered without
//! stopping the stream, and the persistent session carries messages across an ingest restart
//! and a broker restart.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use tokio::sync::watch;
use waterline_core::health::HealthBoard;
use waterline_ingest::{IngestConfig, MqttConfig};
use waterline_store::Store;
use waterline_tests::{Mosquitto, PgDb, SqliteDb, eventually};

use waterline_tests::fixtures::{self as support, publish_all, uplinks};

/// A running ingest and the means to stop it.
pub(crate) struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Ingest without a spool: during a store outage the broker holds the messages.
    pub(crate) async fn start(store: &Store, broker: &Mosquitto, client_id: &str) -> Running {
        Self::start_with_spool(store, broker, client_id, None).await
    }

    /// Ingest speaking MQTT 5.
    pub(crate) async fn start_v5(store: &Store, broker: &Mosquitto, client_id: &str) -> Running {
        let mqtt = MqttConfig {
            broker: broker.url(),
            client_id: client_id.into(),
            protocol: waterline_ingest::config::MqttProtocol::V5,
            ..MqttConfig::default()
        };
        Self::start_mqtt(store, mqtt, None).await
    }

    pub(crate) async fn start_with_spool(
        store: &Store,
        broker: &Mosquitto,
        client_id: &str,
        spool: Option<&std::path::Path>,
    ) -> Running {
        let mqtt = MqttConfig {
            broker: broker.url(),
            client_id: client_id.into(),
            ..MqttConfig::default()
        };
        Self::start_mqtt(store, mqtt, spool).await
    }

    async fn start_mqtt(
        store: &Store,
        mqtt: MqttConfig,
        spool: Option<&std::path::Path>,
    ) -> Running {
        let cfg = IngestConfig {
            spool_dir: spool.map(|p| p.to_owned()),
            spool_max_bytes: 64 << 20,
            spool_segment_bytes: 1 << 20,
            ..IngestConfig::default()
        };
        let (stop, rx) = watch::channel(false);
        let task = waterline_ingest::run_mqtt(store.clone(), mqtt, cfg, HealthBoard::new(), rx)
            .await
            .unwrap();
        Running { stop, task }
    }

    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("ingest stops within 15 s")
            .unwrap();
    }
}

/// A plain-PostgreSQL store on `db` that knows the test network's sensors.
async fn store_with_network(db: &PgDb) -> Store {
    let store = db.plain_store().await.unwrap();
    store
        .upsert_described_sensors(&support::network())
        .await
        .unwrap();
    store
}

/// Waits until the broker has confirmed ingest's subscriptions.
pub(crate) async fn subscribed(health: &HealthBoard) {
    let ok = eventually(Duration::from_secs(20), || async {
        let s = health.snapshot();
        let b = s.get(waterline_ingest::BROKER_COMPONENT)?;
        (b.ok && b.detail == waterline_ingest::SUBSCRIBED).then_some(())
    })
    .await;
    assert!(ok.is_some(), "ingest subscribed: {:?}", health.snapshot());
}

pub(crate) async fn wait_for_count(store: &Store, n: i64) -> i64 {
    let got = eventually(Duration::from_secs(30), || async {
        let c = store.count_readings().await.unwrap();
        (c >= n).then_some(c)
    })
    .await;
    match got {
        Some(c) => c,
        None => store.count_readings().await.unwrap(),
    }
}

/// Waits until ingest connected and subscribed: a probe message must come through.
pub(crate) async fn wait_until_subscribed(store: &Store, broker: &Mosquitto) {
    let t = Utc::now() - TimeDelta::minutes(1);
    let probe = format!(
        r#"{{"device":"probe","time":"{}","readings":[{{"sensor":"probe-level","value":1,"unit":"m"}}]}}"#,
        t.to_rfc3339()
    );
    let before = store.count_readings().await.unwrap();
    for _ in 0..50 {
        publish_all(
            broker.port,
            &[("waterline/probe/up".into(), probe.clone().into_bytes())],
        )
        .await
        .unwrap();
        let ok = eventually(Duration::from_millis(300), || async {
            (store.count_readings().await.unwrap() > before).then_some(())
        })
        .await;
        if ok.is_some() {
            return;
        }
    }
    panic!("ingest never subscribed");
}

async fn stores_every_reading_once(store: Store) {
    let broker = Mosquitto::start().unwrap();
    store
        .upsert_described_sensors(&support::network())
        .await
        .unwrap();
    let ingest = Running::start(&store, &broker, "ingest-once").await;
    wait_until_subscribed(&store, &broker).await;
    let base = store.count_readings().await.unwrap();

    let t0 = support::t0();
    let msgs = uplinks(t0, 400, 7);
    publish_all(broker.port, &msgs).await.unwrap();
    assert_eq!(wait_for_count(&store, base + 1600).await, base + 1600);

    // Redelivery of every message (as after a crash before the ack) adds no row; a sentinel
    // published afterwards on the same topics proves they were all processed.
    publish_all(broker.port, &msgs).await.unwrap();
    let sentinel = uplinks(t0 + TimeDelta::days(1), 7, 7);
    publish_all(broker.port, &sentinel).await.unwrap();
    assert_eq!(wait_for_count(&store, base + 1628).await, base + 1628);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.count_readings().await.unwrap(), base + 1628);

    // Units were converted to canonical: A-flow is declared in L/s, A-p in bar.
    let t = t0;
    let a = store
        .readings(&"A-flow".parse_id(), t, t + TimeDelta::minutes(1), 1)
        .await
        .unwrap();
    assert!(
        (a[0].value - 36.0).abs() < 1e-9,
        "10 L/s = 36 m3/h, got {}",
        a[0].value
    );
    let p = store
        .readings(&"A-p".parse_id(), t, t + TimeDelta::minutes(1), 1)
        .await
        .unwrap();
    assert!(
        (p[0].value - 40.788_648).abs() < 1e-5,
        "4 bar in m, got {}",
        p[0].value
    );
    ingest.stop().await;
}

trait ParseId {
    fn parse_id(&self) -> waterline_core::SensorId;
}

impl ParseId for str {
    fn parse_id(&self) -> waterline_core::SensorId {
        waterline_core::SensorId::parse(self).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_published_reading_is_stored_once_postgres() {
    let db = PgDb::create().await.unwrap();
    let store = db.plain_store().await.unwrap();
    stores_every_reading_once(store.clone()).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_published_reading_is_stored_once_sqlite() {
    let db = SqliteDb::create().unwrap();
    stores_every_reading_once(db.store().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_payload_is_dead_lettered_and_the_stream_continues() {
    let broker = Mosquitto::start().unwrap();
    let db = PgDb::create().await.unwrap();
    let store = store_with_network(&db).await;
    let ingest = Running::start(&store, &broker, "ingest-poison").await;
    wait_until_subscribed(&store, &broker).await;
    let base = store.count_readings().await.unwrap();
    let since = Utc::now() - TimeDelta::seconds(5);

    let garbage = b"\x00\x01{not json at all".to_vec();
    let mut msgs = vec![("waterline/RTU-0/up".to_owned(), garbage.clone())];
    msgs.extend(uplinks(support::t0(), 3, 1));
    msgs.push((
        "waterline/RTU-0/up".to_owned(),
        br#"{"device":"someone-else","readings":[]}"#.to_vec(),
    ));
    msgs.extend(uplinks(support::t0() + TimeDelta::hours(1), 2, 1));
    publish_all(broker.port, &msgs).await.unwrap();
    assert_eq!(wait_for_count(&store, base + 20).await, base + 20);

    let letters = eventually(Duration::from_secs(10), || async {
        let l = store
            .dead_letters(since, Utc::now() + TimeDelta::seconds(1), 100)
            .await
            .unwrap();
        (l.len() >= 2).then_some(l)
    })
    .await
    .expect("both bad messages dead-lettered");
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0].letter.payload, garbage);
    assert_eq!(letters[0].letter.source, "mqtt");
    assert_eq!(
        letters[0].letter.topic.as_deref(),
        Some("waterline/RTU-0/up")
    );
    assert!(
        letters[0].letter.reason.contains("not UTF-8") || letters[0].letter.reason.contains("JSON"),
        "{}",
        letters[0].letter.reason
    );
    assert!(
        letters[1].letter.reason.contains("someone-else"),
        "{}",
        letters[1].letter.reason
    );
    ingest.stop().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_published_while_ingest_is_down_arrive_after_restart() {
    let broker = Mosquitto::start().unwrap();
    let db = PgDb::create().await.unwrap();
    let store = store_with_network(&db).await;
    // The first run creates the persistent session.
    let ingest = Running::start(&store, &broker, "ingest-session").await;
    wait_until_subscribed(&store, &broker).await;
    ingest.stop().await;
    let base = store.count_readings().await.unwrap();

    publish_all(broker.port, &uplinks(support::t0(), 300, 5))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        store.count_readings().await.unwrap(),
        base,
        "nothing stored while ingest is down"
    );

    let ingest = Running::start(&store, &broker, "ingest-session").await;
    assert_eq!(wait_for_count(&store, base + 1200).await, base + 1200);
    ingest.stop().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_session_keeps_messages_across_ingest_and_broker_restarts() {
    let mut broker = Mosquitto::start().unwrap();
    let db = PgDb::create().await.unwrap();
    let store = store_with_network(&db).await;
    // The first run creates the session (clean start off, session expiry of a week).
    let ingest = Running::start_v5(&store, &broker, "ingest-v5").await;
    wait_until_subscribed(&store, &broker).await;
    let base = store.count_readings().await.unwrap();
    publish_all(broker.port, &uplinks(support::t0(), 50, 5))
        .await
        .unwrap();
    assert_eq!(wait_for_count(&store, base + 200).await, base + 200);
    ingest.stop().await;

    // Published while ingest is down: the broker keeps them for the MQTT 5 session.
    publish_all(
        broker.port,
        &uplinks(support::t0() + TimeDelta::days(1), 300, 5),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(store.count_readings().await.unwrap(), base + 200);
    let ingest = Running::start_v5(&store, &broker, "ingest-v5").await;
    assert_eq!(wait_for_count(&store, base + 1400).await, base + 1400);

    // A broker restart: ingest reconnects, the session (persisted by the broker) resumes.
    broker.restart().unwrap();
    publish_all(
        broker.port,
        &uplinks(support::t0() + TimeDelta::days(2), 50, 5),
    )
    .await
    .unwrap();
    assert_eq!(wait_for_count(&store, base + 1600).await, base + 1600);
    // Nothing more arrives (every message was acknowledged once, none stored twice).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(store.count_readings().await.unwrap(), base + 1600);
    ingest.stop().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_a_packet_over_the_limit_is_dropped_by_the_broker_and_blocks_nothing() {
    let broker = Mosquitto::start().unwrap();
    let db = PgDb::create().await.unwrap();
    let store = store_with_network(&db).await;
    // MQTT 5 announces the limit in CONNECT: the broker must not send a bigger packet (with
    // 3.1.1 such a packet breaks the connection and comes back: operations.md §6).
    let mqtt = MqttConfig {
        broker: broker.url(),
        client_id: "ingest-v5-limit".into(),
        protocol: waterline_ingest::config::MqttProtocol::V5,
        max_packet_bytes: 64 * 1024,
        ..MqttConfig::default()
    };
    let ingest = Running::start_mqtt(&store, mqtt, None).await;
    wait_until_subscribed(&store, &broker).await;
    let base = store.count_readings().await.unwrap();
    let huge = format!(
        r#"{{"device":"RTU-0","readings":[{{"sensor":"A-inlet-flow","value":1}}],"pad":"{}"}}"#,
        "x".repeat(200 * 1024)
    );
    let mut msgs = vec![("waterline/RTU-0/up".to_owned(), huge.into_bytes())];
    msgs.extend(uplinks(support::t0(), 20, 5));
    publish_all(broker.port, &msgs).await.unwrap();
    assert_eq!(wait_for_count(&store, base + 80).await, base + 80);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.count_readings().await.unwrap(), base + 80);
    // Never received, so not even a dead letter: the broker discarded it.
    let since = Utc::now() - TimeDelta::minutes(5);
    let dead = store
        .dead_letters(since, Utc::now() + TimeDelta::minutes(1), 10)
        .await
        .unwrap();
    assert!(dead.is_empty(), "{dead:?}");
    ingest.stop().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_reconnects_and_resubscribes_after_a_broker_restart() {
    let mut broker = Mosquitto::start().unwrap();
    let db = PgDb::create().await.unwrap();
    let store = store_with_network(&db).await;
    let ingest = Running::start(&store, &broker, "ingest-restart").await;
    wait_until_subscribed(&store, &broker).await;
    let base = store.count_readings().await.unwrap();
    publish_all(broker.port, &uplinks(support::t0(), 50, 5))
        .await
        .unwrap();
    assert_eq!(wait_for_count(&store, base + 200).await, base + 200);

    broker.restart().unwrap();
    // Published after the restart, while ingest may still be reconnecting: the persistent
    // session (restored from the broker's persistence file) queues them.
    publish_all(
        broker.port,
        &uplinks(support::t0() + TimeDelta::days(1), 50, 5),
    )
    .await
    .unwrap();
    assert_eq!(wait_for_count(&store, base + 400).await, base + 400);
    ingest.stop().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_waits_for_approval_and_its_held_back_data_is_stored_once_approved() {
    let broker = Mosquitto::start().unwrap();
    let db = PgDb::create().await.unwrap();
    let store = store_with_network(&db).await;
    let mqtt = MqttConfig {
        broker: broker.url(),
        client_id: "approval".into(),
        ..MqttConfig::default()
    };
    let cfg = IngestConfig {
        require_device_approval: true,
        spool_dir: None,
        ..IngestConfig::default()
    };
    let health = HealthBoard::new();
    let (stop, rx) = watch::channel(false);
    let task =
        waterline_ingest::run_mqtt(store.clone(), mqtt.clone(), cfg.clone(), health.clone(), rx)
            .await
            .unwrap();

    subscribed(&health).await;

    let t0 = support::t0();
    publish_all(broker.port, &uplinks(t0, 20, 1)).await.unwrap();
    let device = waterline_core::DeviceId::parse("RTU-0").unwrap();
    let seen = eventually(Duration::from_secs(20), || async {
        let d = store
            .devices()
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.id == "RTU-0")?;
        (d.status == waterline_store::DeviceStatus::Pending).then_some(d)
    })
    .await
    .expect("the new device is listed as pending");
    assert_eq!(seen.registered_by, None);
    // All 20 uplinks are held back, raw.
    let held = eventually(Duration::from_secs(20), || async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&db.url).await.ok()?;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pending_uplinks")
            .fetch_one(&mut c)
            .await
            .ok()?;
        (n == 20).then_some(n)
    })
    .await;
    assert_eq!(held, Some(20));
    assert_eq!(
        store.count_readings().await.unwrap(),
        0,
        "nothing stored before approval"
    );

    store
        .set_device_status(&device, waterline_store::DeviceStatus::Active, "engineer")
        .await
        .unwrap();
    let replayed = waterline_ingest::pending::replay_approved_once(&store, &mqtt, &cfg)
        .await
        .unwrap();
    assert_eq!(replayed, 20);
    assert_eq!(store.count_readings().await.unwrap(), 80);
    assert_eq!(
        waterline_ingest::pending::replay_approved_once(&store, &mqtt, &cfg)
            .await
            .unwrap(),
        0,
        "released uplinks are not replayed twice"
    );
    let _ = stop.send(true);
    task.await.unwrap();
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_connects_over_tls_with_a_password_and_refuses_a_wrong_one() {
    let broker = Mosquitto::start_secure().unwrap();
    let secure = broker.secure.clone().unwrap();
    let db = SqliteDb::create().unwrap();
    let store = db.store().await.unwrap();
    store
        .upsert_described_sensors(&support::network())
        .await
        .unwrap();
    let mqtt = MqttConfig {
        broker: format!("mqtts://127.0.0.1:{}", secure.port),
        client_id: "tls-ingest".into(),
        ca_file: Some(secure.ca_file.clone()),
        username: Some(secure.username.clone()),
        password: Some(secure.password.clone()),
        ..MqttConfig::default()
    };
    let cfg = IngestConfig {
        spool_dir: None,
        ..IngestConfig::default()
    };
    let health = HealthBoard::new();
    let (stop, rx) = watch::channel(false);
    let task =
        waterline_ingest::run_mqtt(store.clone(), mqtt.clone(), cfg.clone(), health.clone(), rx)
            .await
            .unwrap();
    let connected = eventually(Duration::from_secs(15), || async {
        health
            .snapshot()
            .get(waterline_ingest::BROKER_COMPONENT)
            .filter(|c| c.ok)
            .map(|_| ())
    })
    .await;
    assert!(
        connected.is_some(),
        "connected over TLS: {:?}",
        health.snapshot()
    );
    subscribed(&health).await;
    // Devices publish on the plain listener; ingest receives over TLS.
    publish_all(broker.port, &uplinks(support::t0(), 10, 2))
        .await
        .unwrap();
    assert_eq!(wait_for_count(&store, 40).await, 40);
    let _ = stop.send(true);
    task.await.unwrap();

    // A wrong password: the broker refuses, health says so, nothing crashes.
    let wrong = MqttConfig {
        password: Some("wrong".into()),
        client_id: "tls-ingest-2".into(),
        ..mqtt
    };
    let health = HealthBoard::new();
    let (stop, rx) = watch::channel(false);
    let task = waterline_ingest::run_mqtt(store.clone(), wrong, cfg, health.clone(), rx)
        .await
        .unwrap();
    let refused = eventually(Duration::from_secs(15), || async {
        let s = health.snapshot();
        let b = s.get(waterline_ingest::BROKER_COMPONENT)?;
        (!b.ok && b.detail.contains("disconnected")).then(|| b.detail.clone())
    })
    .await;
    assert!(refused.is_some(), "{:?}", health.snapshot());
    let _ = stop.send(true);
    task.await.unwrap();
    store.close().await;
}
