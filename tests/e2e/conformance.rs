//! One conformance suite for every store backend: SQLite, plain PostgreSQL and — when the
//! server has the extension — TimescaleDB. Each case is a function over a `Store`; the macro
//! at the end runs it on every backend.

use chrono::{DateTime, TimeDelta, Utc};
use waterline_core::{DeviceId, Event, EventKind, Reading, Role, SensorId, Unit};
use waterline_store::{Batch, Bucket, DeadLetter, DeviceSeen, DeviceStatus, NewSensor, Store};

use waterline_tests::fixtures as support;

fn sid(s: &str) -> SensorId {
    SensorId::parse(s).unwrap()
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn readings(sensor: &str, start: DateTime<Utc>, step_s: i64, values: &[f64]) -> Vec<Reading> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Reading::new(
                sid(sensor),
                start + TimeDelta::seconds(step_s * i as i64),
                *v,
            )
        })
        .collect()
}

async fn prepared(store: &Store) -> Store {
    store
        .upsert_described_sensors(&support::network())
        .await
        .unwrap();
    store.clone()
}

async fn batch_insert_is_idempotent(store: Store) {
    let store = prepared(&store).await;
    let t = at("2026-01-10T00:00:00Z");
    let mut batch = Batch {
        readings: readings("A-flow", t, 60, &[1.0, 2.0, 3.0]),
        ..Batch::default()
    };
    batch.readings.extend(readings("B-p", t, 60, &[40.0, 41.0]));
    let first = store.commit_batch(&batch).await.unwrap();
    assert_eq!((first.inserted, first.duplicates), (5, 0));
    let again = store.commit_batch(&batch).await.unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 5));
    assert_eq!(store.count_readings().await.unwrap(), 5);
    // First write wins: a redelivery with another value does not overwrite.
    let changed = Batch {
        readings: vec![Reading::new(sid("A-flow"), t, 99.0)],
        ..Batch::default()
    };
    store.commit_batch(&changed).await.unwrap();
    let pts = store
        .readings(&sid("A-flow"), t, t + TimeDelta::hours(1), 10)
        .await
        .unwrap();
    assert_eq!(pts[0].value, 1.0);
}

async fn duplicates_within_one_batch_count_once(store: Store) {
    let store = prepared(&store).await;
    let t = at("2026-01-10T00:00:00Z");
    let batch = Batch {
        readings: vec![
            Reading::new(sid("A-flow"), t, 1.0),
            Reading::new(sid("A-flow"), t, 1.0),
            Reading::new(sid("A-flow"), t + TimeDelta::seconds(1), 2.0),
        ],
        ..Batch::default()
    };
    let o = store.commit_batch(&batch).await.unwrap();
    assert_eq!((o.inserted, o.duplicates), (2, 1));
    let agg = store
        .bucketed(&sid("A-flow"), Bucket::Hour, t, t + TimeDelta::hours(1), 10)
        .await
        .unwrap();
    assert_eq!(agg[0].count, 2);
}

async fn raw_reads_are_ordered_half_open_and_limited(store: Store) {
    let store = prepared(&store).await;
    let t = at("2026-01-10T00:00:00Z");
    let mut rs = readings("A-p", t, 60, &[5.0, 6.0, 7.0, 8.0, 9.0]);
    rs.reverse(); // arrival order does not matter
    store
        .commit_batch(&Batch {
            readings: rs,
            ..Batch::default()
        })
        .await
        .unwrap();
    let pts = store
        .readings(
            &sid("A-p"),
            t + TimeDelta::minutes(1),
            t + TimeDelta::minutes(4),
            100,
        )
        .await
        .unwrap();
    let values: Vec<f64> = pts.iter().map(|p| p.value).collect();
    assert_eq!(
        values,
        vec![6.0, 7.0, 8.0],
        "from inclusive, to exclusive, oldest first"
    );
    assert_eq!(pts[0].time, t + TimeDelta::minutes(1));
    let limited = store
        .readings(&sid("A-p"), t, t + TimeDelta::hours(1), 2)
        .await
        .unwrap();
    assert_eq!(limited.len(), 2);
    assert!(
        store
            .readings(&sid("nope"), t, t + TimeDelta::hours(1), 2)
            .await
            .is_err()
    );
}

async fn rollups_are_exact_and_survive_redelivery_and_late_data(store: Store) {
    let store = prepared(&store).await;
    let t = at("2026-01-10T23:00:00Z");
    // 2 h of 5-minute data across a day boundary.
    let values: Vec<f64> = (0..24).map(|i| (i * 7 % 13) as f64).collect();
    let batch = Batch {
        readings: readings("B-flow", t, 300, &values),
        ..Batch::default()
    };
    store.commit_batch(&batch).await.unwrap();
    store.commit_batch(&batch).await.unwrap();
    let stored: Vec<(DateTime<Utc>, f64)> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| (t + TimeDelta::seconds(300 * i as i64), v))
        .collect();
    rollups_match(&store, "B-flow", &stored).await;
    let to = t + TimeDelta::days(1);
    // A late reading inside an existing bucket (a batched meter upload hours late).
    let late = Batch {
        readings: vec![Reading::new(
            sid("B-flow"),
            t + TimeDelta::seconds(30),
            100.0,
        )],
        ..Batch::default()
    };
    store.commit_batch(&late).await.unwrap();
    let h = store
        .bucketed(&sid("B-flow"), Bucket::Hour, t, to, 10)
        .await
        .unwrap();
    assert_eq!(h[0].count, 13);
    assert_eq!(h[0].max, 100.0);
    let limited = store
        .bucketed(&sid("B-flow"), Bucket::Min15, t, to, 3)
        .await
        .unwrap();
    assert_eq!(limited.len(), 3);
}

/// A backend may write a batch of new readings one way and a batch that meets stored readings
/// another (PostgreSQL: a plain insert with the rollups aggregated in memory, falling back to
/// `ON CONFLICT` under a savepoint). Whichever way each batch went, the counts, the first value
/// written, the rollups and the rest of the batch come out the same.
async fn batches_new_or_overlapping_keep_counts_rollups_and_the_rest_exact(store: Store) {
    let store = prepared(&store).await;
    let t = at("2026-01-10T23:30:00Z");
    let minutes = |m: i64| t + TimeDelta::minutes(m);
    let batch = |rs: Vec<(i64, f64)>| Batch {
        readings: rs
            .into_iter()
            .map(|(m, v)| Reading::new(sid("B-flow"), minutes(m), v))
            .collect(),
        ..Batch::default()
    };
    // New readings across an hour and a day boundary.
    let o = store
        .commit_batch(&batch(vec![(0, 4.0), (10, 6.0), (20, 1.0), (35, 9.0)]))
        .await
        .unwrap();
    assert_eq!((o.inserted, o.duplicates), (4, 0));
    // Overlapping (a redelivery with other values) plus new readings, and a dead letter
    // that must survive whichever way the readings are written.
    let mut overlapping = batch(vec![(20, 50.0), (35, 50.0), (40, 2.0), (45, 7.0)]);
    overlapping.dead_letters.push(a_dead_letter(t));
    let o = store.commit_batch(&overlapping).await.unwrap();
    assert_eq!((o.inserted, o.duplicates), (2, 2));
    assert_eq!(dead_letters_in_the_second_of(&store, t).await, 1);
    // Then only new readings into the same buckets, twice (after a batch with duplicates and
    // after one without).
    for rs in [vec![(5, 3.0), (50, 8.0)], vec![(25, 0.5), (55, 12.0)]] {
        let o = store.commit_batch(&batch(rs)).await.unwrap();
        assert_eq!((o.inserted, o.duplicates), (2, 0));
    }
    let stored: Vec<(i64, f64)> = vec![
        (0, 4.0),
        (5, 3.0),
        (10, 6.0),
        (20, 1.0),
        (25, 0.5),
        (35, 9.0),
        (40, 2.0),
        (45, 7.0),
        (50, 8.0),
        (55, 12.0),
    ];
    let pts = store
        .readings(&sid("B-flow"), t, minutes(60), 100)
        .await
        .unwrap();
    let got: Vec<(i64, f64)> = pts
        .iter()
        .map(|p| ((p.time - t).num_minutes(), p.value))
        .collect();
    assert_eq!(got, stored, "every reading once, the first value written");
    let stored: Vec<(DateTime<Utc>, f64)> = stored.iter().map(|&(m, v)| (minutes(m), v)).collect();
    rollups_match(&store, "B-flow", &stored).await;
}

/// How many dead letters were received in the second from `t`.
async fn dead_letters_in_the_second_of(store: &Store, t: DateTime<Utc>) -> usize {
    store
        .dead_letters(t, t + TimeDelta::seconds(1), 10)
        .await
        .unwrap()
        .len()
}

/// A dead letter received at `t`, to see that a batch's other content is stored.
fn a_dead_letter(t: DateTime<Utc>) -> DeadLetter {
    DeadLetter {
        received_at: t,
        source: "mqtt".into(),
        topic: Some("waterline/x/up".into()),
        reason: "test".into(),
        payload: b"x".to_vec(),
    }
}

/// Every rollup of `sensor` around `stored` (all its readings) is exactly their aggregate.
async fn rollups_match(store: &Store, sensor: &str, stored: &[(DateTime<Utc>, f64)]) {
    let first = stored.iter().map(|r| r.0).min().expect("readings to check");
    let last = stored.iter().map(|r| r.0).max().expect("readings to check");
    for bucket in Bucket::ALL {
        let mut expected: std::collections::BTreeMap<i64, Vec<f64>> = Default::default();
        for &(t, v) in stored {
            let ts = t.timestamp();
            expected
                .entry(ts - ts.rem_euclid(bucket.seconds()))
                .or_default()
                .push(v);
        }
        let agg = store
            .bucketed(
                &sid(sensor),
                bucket,
                first - TimeDelta::days(1),
                last + TimeDelta::days(1),
                100_000,
            )
            .await
            .unwrap();
        assert_eq!(agg.len(), expected.len(), "{sensor} {bucket}");
        for (g, (&start, vs)) in agg.iter().zip(&expected) {
            let min = vs.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = vs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            assert_eq!(
                (g.time.timestamp(), g.count, g.min, g.max),
                (start, vs.len() as i64, min, max),
                "{sensor} {bucket}"
            );
            let mean = vs.iter().sum::<f64>() / vs.len() as f64;
            assert!(
                (g.avg - mean).abs() < 1e-9,
                "{sensor} {bucket}: mean {} vs {mean}",
                g.avg
            );
        }
    }
}

/// Large batches (PostgreSQL writes their readings over two connections at once, the batch's
/// other content after them): new, overlapping with a dead letter, then new again.
async fn large_batches_are_stored_once_with_exact_rollups(store: Store) {
    let store = prepared(&store).await;
    let t = at("2026-01-10T00:00:00Z");
    let sensors = ["A-flow", "A-p", "B-flow", "B-p"];
    let value = |k: usize, m: i64| ((m * 7 + k as i64 * 3) % 101) as f64;
    let batch = |from: i64, to: i64, shift: f64| Batch {
        readings: (from..to)
            .flat_map(|m| {
                sensors.iter().enumerate().map(move |(k, s)| {
                    Reading::new(sid(s), t + TimeDelta::minutes(m), value(k, m) + shift)
                })
            })
            .collect(),
        ..Batch::default()
    };
    let o = store.commit_batch(&batch(0, 1500, 0.0)).await.unwrap();
    assert_eq!((o.inserted, o.duplicates), (6000, 0));
    // Minutes 1000–1499 again with other values (first write wins), 1500–2499 new.
    let mut overlapping = batch(1000, 2500, 0.5);
    for r in overlapping
        .readings
        .iter_mut()
        .filter(|r| r.time >= t + TimeDelta::minutes(1500))
    {
        r.value -= 0.5;
    }
    overlapping.dead_letters.push(a_dead_letter(t));
    let o = store.commit_batch(&overlapping).await.unwrap();
    assert_eq!((o.inserted, o.duplicates), (4000, 2000));
    for (from, to) in [(2500, 3500), (3500, 4500)] {
        let o = store.commit_batch(&batch(from, to, 0.0)).await.unwrap();
        assert_eq!((o.inserted, o.duplicates), (4000, 0));
    }
    assert_eq!(store.count_readings().await.unwrap(), 18_000);
    assert_eq!(dead_letters_in_the_second_of(&store, t).await, 1);
    for (k, sensor) in sensors.iter().enumerate() {
        let stored: Vec<(DateTime<Utc>, f64)> = (0..4500)
            .map(|m| (t + TimeDelta::minutes(m), value(k, m)))
            .collect();
        let pts = store
            .readings(&sid(sensor), t, t + TimeDelta::days(4), 10_000)
            .await
            .unwrap();
        let got: Vec<(DateTime<Utc>, f64)> = pts.iter().map(|p| (p.time, p.value)).collect();
        assert!(
            got == stored,
            "{sensor}: every reading once, the first value written"
        );
        rollups_match(&store, sensor, &stored).await;
    }
}

async fn dead_letters_keep_raw_bytes_and_reason(store: Store) {
    let t = at("2026-01-10T00:00:00Z");
    let payload = vec![0xFF, 0x00, b'{', 0x80];
    let batch = Batch {
        dead_letters: vec![DeadLetter {
            received_at: t,
            source: "mqtt".into(),
            topic: Some("waterline/x/up".into()),
            reason: "payload is not UTF-8".into(),
            payload: payload.clone(),
        }],
        ..Batch::default()
    };
    store.commit_batch(&batch).await.unwrap();
    let got = store
        .dead_letters(t, t + TimeDelta::seconds(1), 10)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].letter.payload, payload);
    assert_eq!(got[0].letter.reason, "payload is not UTF-8");
    assert_eq!(got[0].letter.topic.as_deref(), Some("waterline/x/up"));
    assert_eq!(got[0].letter.received_at, t);
    assert!(
        store
            .dead_letters(t + TimeDelta::seconds(1), t + TimeDelta::hours(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn events_round_trip_and_filter(store: Store) {
    let t = at("2026-01-10T00:00:00Z");
    let mut leak = Event::new(EventKind::Leak, t, t + TimeDelta::hours(3));
    leak.dma = Some(waterline_core::DmaId::parse("A").unwrap());
    leak.flow_m3h = Some(4.5);
    leak.confidence = Some(0.8);
    let mut q = Event::new(
        EventKind::QualityEvent,
        t + TimeDelta::days(2),
        t + TimeDelta::days(2),
    );
    q.sensors = vec![sid("A-p"), sid("B-p")];
    q.end = Some(t + TimeDelta::days(3));
    q.severity = Some(waterline_core::Severity::Alarm);
    let id = store.insert_event(&leak).await.unwrap();
    store.insert_event(&q).await.unwrap();
    let all = store
        .events(t, t + TimeDelta::days(10), None)
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].id, id);
    assert_eq!(all[0].event, leak);
    assert_eq!(all[0].state, waterline_core::EventState::Open);
    assert_eq!(all[1].event, q);
    let leaks = store
        .events(t, t + TimeDelta::days(10), Some(EventKind::Leak))
        .await
        .unwrap();
    assert_eq!(leaks.len(), 1);
    // The quality event ended before this window; the open leak still overlaps it.
    let later = store
        .events(t + TimeDelta::days(4), t + TimeDelta::days(5), None)
        .await
        .unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].event.kind, EventKind::Leak);
}

async fn tokens_authenticate_by_hash(store: Store) {
    let token = store.create_token(Role::Lab, "lab bench").await.unwrap();
    let p = store.principal(&token).await.unwrap().unwrap();
    assert_eq!(p.role, Role::Lab);
    assert_eq!(p.label, "lab bench");
    assert!(
        store
            .principal("wl_not-a-real-token")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.principal("").await.unwrap().is_none());
    let other = store
        .create_token(Role::Viewer, "wall screen")
        .await
        .unwrap();
    assert_ne!(other, token);
}

async fn devices_register_on_first_contact(store: Store) {
    let t = at("2026-01-10T00:00:00Z");
    let dev = DeviceId::parse("MTR-1").unwrap();
    let seen = |at: DateTime<Utc>| DeviceSeen {
        device: dev.clone(),
        protocol: "native-json",
        at,
        status_if_new: DeviceStatus::Pending,
        health: None,
    };
    let batch = Batch {
        devices: vec![seen(t), seen(t + TimeDelta::minutes(5))],
        ..Batch::default()
    };
    store.commit_batch(&batch).await.unwrap();
    store
        .commit_batch(&Batch {
            devices: vec![seen(t - TimeDelta::hours(1))],
            ..Batch::default()
        })
        .await
        .unwrap();
    let d = &store.devices().await.unwrap()[0];
    assert_eq!(d.status, DeviceStatus::Pending);
    assert_eq!(d.registered_by, None, "first contact is not a registration");
    assert_eq!(d.first_seen, Some(t));
    assert_eq!(
        d.last_seen,
        Some(t + TimeDelta::minutes(5)),
        "last_seen never goes back"
    );
    store
        .set_device_status(&dev, DeviceStatus::Active, "tester")
        .await
        .unwrap();
    assert_eq!(
        store.devices().await.unwrap()[0].status,
        DeviceStatus::Active
    );
    // Radio health: the newest report wins, an older one arriving late does not overwrite it.
    let with_health = |at: DateTime<Utc>, rssi: f64| DeviceSeen {
        health: Some(waterline_core::codec::DeviceHealth {
            rssi_dbm: Some(rssi),
            snr_db: Some(5.0),
            battery_percent: None,
        }),
        ..seen(at)
    };
    store
        .commit_batch(&Batch {
            devices: vec![with_health(t + TimeDelta::minutes(30), -90.0)],
            ..Batch::default()
        })
        .await
        .unwrap();
    store
        .commit_batch(&Batch {
            devices: vec![with_health(t + TimeDelta::minutes(10), -120.0)],
            ..Batch::default()
        })
        .await
        .unwrap();
    let d = &store.devices().await.unwrap()[0];
    assert_eq!(d.rssi_dbm, Some(-90.0));
    assert_eq!(d.health_at, Some(t + TimeDelta::minutes(30)));
    // A later sighting does not reset an approval.
    store
        .commit_batch(&Batch {
            devices: vec![seen(t + TimeDelta::hours(1))],
            ..Batch::default()
        })
        .await
        .unwrap();
    assert_eq!(
        store.devices().await.unwrap()[0].status,
        DeviceStatus::Active
    );
}

async fn held_back_uplinks_are_released_with_their_batch(store: Store) {
    let t = at("2026-01-10T00:00:00Z");
    let dev = DeviceId::parse("NEW-1").unwrap();
    let pending = waterline_store::PendingUplink {
        device: dev.clone(),
        received_at: t,
        source: "mqtt".into(),
        topic: Some("waterline/NEW-1/up".into()),
        payload: b"{\"raw\":true}".to_vec(),
    };
    let seen = DeviceSeen {
        device: dev.clone(),
        protocol: "native-json",
        at: t,
        status_if_new: DeviceStatus::Pending,
        health: None,
    };
    store
        .commit_batch(&Batch {
            pending: vec![pending.clone()],
            devices: vec![seen],
            ..Batch::default()
        })
        .await
        .unwrap();
    assert!(
        store
            .pending_of_active_devices(10)
            .await
            .unwrap()
            .is_empty(),
        "still pending"
    );
    store
        .set_device_status(&dev, DeviceStatus::Active, "tester")
        .await
        .unwrap();
    let held = store.pending_of_active_devices(10).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].1, pending);
    let batch = Batch {
        readings: vec![Reading::new(sid("A-flow"), t, 1.0)],
        release_pending: vec![held[0].0],
        ..Batch::default()
    };
    store.commit_batch(&batch).await.unwrap();
    assert!(
        store
            .pending_of_active_devices(10)
            .await
            .unwrap()
            .is_empty(),
        "released"
    );
    assert_eq!(store.count_readings().await.unwrap(), 1);
}

async fn sensors_list_described_and_first_contact_with_last_values(store: Store) {
    let store = prepared(&store).await;
    store
        .register_sensors(&[NewSensor {
            id: sid("new-meter"),
            unit: Unit::Litre,
            device: Some(DeviceId::parse("MTR-9").unwrap()),
        }])
        .await
        .unwrap();
    let t = at("2026-01-10T00:00:00Z");
    store
        .commit_batch(&Batch {
            readings: readings("A-flow", t, 60, &[1.0, 2.0]),
            ..Batch::default()
        })
        .await
        .unwrap();
    let all = store.sensors().await.unwrap();
    assert_eq!(all.len(), 5);
    let a = all.iter().find(|s| s.id == "A-flow").unwrap();
    assert!(a.described);
    assert_eq!(a.kind.as_deref(), Some("flow"));
    assert_eq!(a.unit.as_deref(), Some("L/s"));
    assert_eq!(a.dma.as_deref(), Some("A"));
    assert_eq!(a.last_time, Some(t + TimeDelta::minutes(1)));
    assert_eq!(a.last_value, Some(2.0));
    let n = all.iter().find(|s| s.id == "new-meter").unwrap();
    assert!(!n.described);
    assert_eq!(n.kind, None);
    assert_eq!(n.unit.as_deref(), Some("L"));
    assert_eq!(n.last_value, None);
    // Describing it later fills in its kind.
    assert!(store.sensor(&sid("missing")).await.unwrap().is_none());
}

macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let db = waterline_tests::SqliteDb::create().unwrap();
                    super::$case(db.store().await.unwrap()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let db = waterline_tests::PgDb::create().await.unwrap();
                    let store = db.plain_store().await.unwrap();
                    assert_eq!(store.backend(), waterline_store::BackendKind::Postgres);
                    super::$case(store.clone()).await;
                    store.close().await;
                }
            )*
        }
        mod timescale {
            $(
                #[tokio::test]
                async fn $case() {
                    let db = waterline_tests::PgDb::create().await.unwrap();
                    let Some(store) = super::timescale_store(&db).await else {
                        return;
                    };
                    super::$case(store.clone()).await;
                    store.close().await;
                }
            )*
        }
    };
}

/// The store on TimescaleDB, or `None` (after saying why) when the test server cannot
/// provide it: extension not installed, or installed but not preloaded.
async fn timescale_store(db: &waterline_tests::PgDb) -> Option<Store> {
    let store = db.store().await.unwrap();
    if store.backend() == waterline_store::BackendKind::Timescale {
        return Some(store);
    }
    store.close().await;
    eprintln!(
        "SKIPPED: TimescaleDB is not usable on the test PostgreSQL server (extension not \
         installed, or not in shared_preload_libraries); the TimescaleDB backend was not exercised"
    );
    None
}

on_every_backend!(
    batch_insert_is_idempotent,
    duplicates_within_one_batch_count_once,
    raw_reads_are_ordered_half_open_and_limited,
    rollups_are_exact_and_survive_redelivery_and_late_data,
    batches_new_or_overlapping_keep_counts_rollups_and_the_rest_exact,
    large_batches_are_stored_once_with_exact_rollups,
    dead_letters_keep_raw_bytes_and_reason,
    events_round_trip_and_filter,
    tokens_authenticate_by_hash,
    devices_register_on_first_contact,
    held_back_uplinks_are_released_with_their_batch,
    sensors_list_described_and_first_contact_with_last_values,
);

/// TimescaleDB-only: the layout (hypertable, compression, continuous aggregates, policies).
#[tokio::test]
async fn timescale_layout_is_applied_when_the_extension_exists() {
    use sqlx::Connection;
    let db = waterline_tests::PgDb::create().await.unwrap();
    let Some(store) = timescale_store(&db).await else {
        return;
    };
    assert!(!store.service_rollups());
    let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let hyper: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = 'readings'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(hyper, 1);
    let caggs: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM timescaledb_information.continuous_aggregates
         WHERE view_name IN ('readings_15m', 'readings_1h', 'readings_1d')",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(caggs, 3);
    let segmentby: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM timescaledb_information.compression_settings
         WHERE hypertable_name = 'readings' AND attname = 'series_id' AND segmentby_column_index = 1",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(segmentby, 1);
    let jobs: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM timescaledb_information.jobs
         WHERE proc_name IN ('policy_compression', 'policy_refresh_continuous_aggregate')",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(jobs, 4);
    // Opening again is idempotent.
    store.close().await;
    let again = db.store().await.unwrap();
    again.close().await;
}
