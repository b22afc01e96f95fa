//! Fault injection against real services: the database restarts or goes away while devices
//! keep publishing with QoS 1. Every reading sent must be stored, none twice.

use std::time::Duration;

use chrono::TimeDelta;
use waterline_store::{Store, StoreOptions};
use waterline_tests::fixtures::{self, publish_all, uplinks};
use waterline_tests::{Mosquitto, PgServer};

use crate::ingest::{Running, wait_for_count, wait_until_subscribed};

const READINGS_PER_MESSAGE: i64 = 4;

async fn private_store(server: &PgServer) -> Store {
    let url = server.create_database("faults").await.unwrap();
    let opts = StoreOptions {
        use_timescale: false,
        ..StoreOptions::default()
    };
    let store = Store::open(&url, opts).await.unwrap();
    store
        .upsert_described_sensors(&fixtures::network())
        .await
        .unwrap();
    store
}

/// Checks that exactly the expected minutes are stored for every sensor.
async fn assert_exactly(store: &Store, t0: chrono::DateTime<chrono::Utc>, messages: i64) {
    for sensor in ["A-flow", "A-p", "B-flow", "B-p"] {
        let id = waterline_core::SensorId::parse(sensor).unwrap();
        let pts = store
            .readings(&id, t0, t0 + TimeDelta::minutes(messages), messages + 10)
            .await
            .unwrap();
        assert_eq!(
            pts.len() as i64,
            messages,
            "{sensor}: every minute stored once"
        );
        for (i, p) in pts.iter().enumerate() {
            assert_eq!(
                p.time,
                t0 + TimeDelta::minutes(i as i64),
                "{sensor}: minute {i}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_during_a_stream_loses_and_duplicates_nothing() {
    let server = PgServer::start().unwrap();
    let store = private_store(&server).await;
    let broker = Mosquitto::start().unwrap();
    let ingest = Running::start(&store, &broker, "fault-restart").await;
    wait_until_subscribed(&store, &broker).await;
    let base = store.count_readings().await.unwrap();

    let n = 3_000usize;
    let t0 = fixtures::t0();
    let msgs = uplinks(t0, n, 10);
    let (first, second) = msgs.split_at(n / 2);
    publish_all(broker.port, first).await.unwrap();
    // Restart while the first half is being written and the second is arriving.
    let restart = tokio::task::spawn_blocking(move || {
        server.restart().unwrap();
        server
    });
    publish_all(broker.port, second).await.unwrap();
    let _server = restart.await.unwrap();

    let want = base + n as i64 * READINGS_PER_MESSAGE;
    assert_eq!(wait_for_count(&store, want).await, want);
    assert_exactly(&store, t0, n as i64).await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_for_a_minute_loses_nothing() {
    let outage = std::env::var("WATERLINE_TEST_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60u64);
    let mut server = PgServer::start().unwrap();
    let store = private_store(&server).await;
    let broker = Mosquitto::start().unwrap();
    let ingest = Running::start(&store, &broker, "fault-outage").await;
    wait_until_subscribed(&store, &broker).await;
    let base = store.count_readings().await.unwrap();

    let n = 2_000usize;
    let t0 = fixtures::t0();
    let msgs = uplinks(t0, n, 10);
    let (before, during) = msgs.split_at(500);
    publish_all(broker.port, before).await.unwrap();
    server.stop().unwrap();
    let down = std::time::Instant::now();
    publish_all(broker.port, during).await.unwrap();
    tokio::time::sleep(Duration::from_secs(outage).saturating_sub(down.elapsed())).await;
    server.resume().unwrap();

    let want = base + n as i64 * READINGS_PER_MESSAGE;
    let got = wait_for_count(&store, want).await;
    assert_eq!(got, want, "server log:\n{}", server.log());
    assert_exactly(&store, t0, n as i64).await;
    ingest.stop().await;
}

/// Bytes of spooled records on disk (segment headers excluded).
fn spooled_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
                .map(|e| e.metadata().map(|m| m.len().saturating_sub(8)).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_an_outage_the_spool_takes_and_acknowledges_everything_then_drains_in_order() {
    let mut server = PgServer::start().unwrap();
    let store = private_store(&server).await;
    let broker = Mosquitto::start().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let ingest = Running::start_with_spool(&store, &broker, "spool-a", Some(spool.path())).await;
    wait_until_subscribed(&store, &broker).await;
    let base = store.count_readings().await.unwrap();

    let t0 = fixtures::t0();
    let n = 1_500usize;
    let msgs = uplinks(t0, n, 10);
    let (before, during) = msgs.split_at(300);
    publish_all(broker.port, before).await.unwrap();
    assert_eq!(wait_for_count(&store, base + 1_200).await, base + 1_200);
    server.stop().unwrap();
    publish_all(broker.port, during).await.unwrap();
    // Everything published during the outage ends up in the spool and is acknowledged.
    // A spool record holds each message's topic and payload plus 16 bytes of framing: wait
    // until all of them are in (and so acknowledged).
    let whole: u64 = during
        .iter()
        .map(|(t, p)| (t.len() + p.len() + 16) as u64)
        .sum();
    let mut spooled = 0;
    for _ in 0..600 {
        spooled = spooled_bytes(spool.path());
        if spooled >= whole {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        spooled >= whole,
        "the spool holds the outage's messages: {spooled} of {whole} bytes"
    );
    ingest.stop().await;

    // A different MQTT client: nothing can come from the broker's session of the first one,
    // so whatever arrives comes from the spool.
    server.resume().unwrap();
    let again = Running::start_with_spool(&store, &broker, "spool-b", Some(spool.path())).await;
    let want = base + n as i64 * READINGS_PER_MESSAGE;
    let got = wait_for_count(&store, want).await;
    assert_eq!(got, want, "server log:\n{}", server.log());
    assert_exactly(&store, t0, n as i64).await;
    for _ in 0..100 {
        if spooled_bytes(spool.path()) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        spooled_bytes(spool.path()),
        0,
        "the spool is drained and its segments deleted"
    );
    again.stop().await;
}

/// A Sparkplug edge node keeps publishing through a database outage; the same ingest process
/// spools its messages and drains them when the database is back. Its session sees each `seq`
/// once: no false gap, no dead letter, no rebirth request, every value stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparkplug_messages_spooled_in_an_outage_are_drained_without_a_false_gap() {
    use crate::protocols::{metric, node_birth, spb};
    use waterline_core::codec::sparkplug::MetricValue;

    let mut server = PgServer::start().unwrap();
    let store = private_store(&server).await;
    let net = waterline_core::Network::parse(
        "[[sensor]]\nid = \"plant:edge-9:Outlet.Pressure\"\nkind = \"pressure\"\nunit = \"m\"\n",
    )
    .unwrap();
    store.upsert_described_sensors(&net).await.unwrap();
    let broker = Mosquitto::start().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let ingest = Running::start_with_spool(&store, &broker, "spool-spb", Some(spool.path())).await;
    wait_until_subscribed(&store, &broker).await;
    let since = chrono::Utc::now() - TimeDelta::minutes(1);
    let base = store.count_readings().await.unwrap();

    let ts = (fixtures::t0().timestamp_millis()) as u64;
    let data = |seq: u64, v: f64| {
        (
            "spBv1.0/plant/NDATA/edge-9".to_owned(),
            spb(
                seq,
                ts + seq * 60_000,
                vec![metric(None, 7, None, MetricValue::DoubleValue(v))],
            ),
        )
    };
    let birth = node_birth(ts, 40.0);
    publish_all(
        broker.port,
        &[
            ("spBv1.0/plant/NBIRTH/edge-9".to_owned(), birth),
            data(1, 41.0),
        ],
    )
    .await
    .unwrap();
    assert_eq!(wait_for_count(&store, base + 2).await, base + 2);

    server.stop().unwrap();
    publish_all(broker.port, &[data(2, 42.0), data(3, 43.0)])
        .await
        .unwrap();
    // Both are spooled (and acknowledged) while the database is down.
    for _ in 0..200 {
        if spooled_bytes(spool.path()) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.resume().unwrap();
    publish_all(broker.port, &[data(4, 44.0)]).await.unwrap();
    assert_eq!(
        wait_for_count(&store, base + 5).await,
        base + 5,
        "server log:\n{}",
        server.log()
    );
    let dead = store
        .dead_letters(since, chrono::Utc::now() + TimeDelta::minutes(1), 100)
        .await
        .unwrap();
    assert!(dead.is_empty(), "no false sequence gap: {dead:?}");
    ingest.stop().await;
}
