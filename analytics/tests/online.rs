//! The online job against a real store (SQLite and PostgreSQL): readings arrive in the store,
//! scheduled runs over a sliding window find a burst once, close it when the main is repaired,
//! and write each day's KPIs except the window's warm-up day.

use chrono::{DateTime, TimeDelta, Utc};
use waterline_analytics::online::{self, OnlineConfig};
use waterline_core::testing::XorShift;
use waterline_core::{EventKind, Network, Reading, SensorId};
use waterline_store::testing::TestDb;
use waterline_store::{Batch, KpiQuery, KpiScope, Store};

const NETWORK: &str = r#"
timezone = "Asia/Shanghai"
[[dma]]
id = "A"
inlets = ["in"]
azp_sensor = "azp"
mains_km = 30.0
connections = 400
min_service_pressure_m = 20.0
[[sensor]]
id = "in"
kind = "flow"
unit = "m3/h"
[[sensor]]
id = "azp"
kind = "pressure"
unit = "m"
"#;

/// 2026-01-05T00:00:00+08:00 (a Monday, local midnight).
fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-04T16:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn at_day(d: f64) -> DateTime<Utc> {
    t0() + TimeDelta::seconds((d * 86_400.0) as i64)
}

/// The burst: 25 m³/h from day 20 10:00 until the repair on day 24 14:00.
fn burst(d: f64) -> f64 {
    if (20.0 + 10.0 / 24.0..24.0 + 14.0 / 24.0).contains(&d) {
        25.0
    } else {
        0.0
    }
}

/// Five-minute inflow and AZP pressure of a diurnal DMA for days `[from, to)`.
fn readings(from: f64, to: f64) -> Vec<Reading> {
    let mut rng = XorShift(0xfeed_0042);
    let id = |s: &str| SensorId::parse(s).unwrap();
    let mut out = Vec::new();
    let mut day_factor = 1.0;
    for k in 0..(40 * 288) {
        let d = k as f64 / 288.0;
        if k % 288 == 0 {
            day_factor = 1.0 + 0.03 * rng.normal();
        }
        let noise = (rng.normal(), rng.normal());
        if d < from || d >= to {
            continue;
        }
        let hour = (k % 288) as f64 / 12.0;
        let g = |mu: f64, s: f64| (-(hour - mu).powi(2) / (2.0 * s * s)).exp();
        let demand = 80.0 * (0.35 + 1.1 * g(7.5, 1.5) + 0.7 * g(12.5, 2.0) + g(19.5, 2.0)) / 0.875;
        let demand = demand * day_factor;
        let pressure = 45.0 - 0.0005 * demand * demand - 0.08 * burst(d);
        let inflow = demand + 4.0 + burst(d);
        let t = at_day(d);
        out.push(Reading::new(id("in"), t, inflow + 0.3 * noise.0));
        out.push(Reading::new(id("azp"), t, pressure + 0.1 * noise.1));
    }
    out
}

async fn deliver(store: &Store, readings: Vec<Reading>) {
    for chunk in readings.chunks(5_000) {
        let batch = Batch {
            readings: chunk.to_vec(),
            ..Batch::default()
        };
        store.commit_batch(&batch).await.unwrap();
    }
}

async fn bursts(store: &Store) -> Vec<waterline_store::StoredEvent> {
    store
        .events(t0(), at_day(60.0), None)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.event.kind, EventKind::Burst | EventKind::Leak))
        .collect()
}

async fn scheduled_runs_record_a_burst_once_and_its_repair(store: Store) {
    let net = Network::parse(NETWORK).unwrap();
    store.upsert_described_sensors(&net).await.unwrap();
    let cfg = OnlineConfig::default();

    // Day 21, 00:00: the burst is 14 hours old.
    deliver(&store, readings(0.0, 21.0)).await;
    let run = online::run_once(&store, &net, &cfg, at_day(21.0))
        .await
        .unwrap();
    assert_eq!(run.readings, 2 * 21 * 288);
    let found = bursts(&store).await;
    assert_eq!(found.len(), 1, "one burst: {found:?}");
    let burst = &found[0];
    assert_eq!(burst.event.kind, EventKind::Burst);
    assert_eq!(burst.event.end, None, "still running");
    let onset = at_day(20.0 + 10.0 / 24.0);
    assert!(
        (burst.event.start - onset).num_minutes().abs() <= 60,
        "onset {} vs {onset}",
        burst.event.start
    );
    assert!(burst.event.detected_at <= onset + TimeDelta::hours(2));

    // Two runs later, with the data up to day 30: the same burst, now ended; nothing new.
    let run = online::run_once(&store, &net, &cfg, at_day(21.0) + TimeDelta::minutes(15))
        .await
        .unwrap();
    assert_eq!(run.recorded.events.inserted, 0, "{:?}", run.recorded);
    deliver(&store, readings(21.0, 30.0)).await;
    // A dispatcher declared an exclusion of the AZP point on day 27, 06:00–12:00.
    let excluded = waterline_core::DeclaredWindow::new(
        waterline_core::WindowKind::Exclusion,
        waterline_core::WindowSubject::Sensor(SensorId::parse("azp").unwrap()),
        at_day(27.25),
        at_day(27.5),
        waterline_core::Note::parse("reason", "valve works").unwrap(),
    )
    .unwrap();
    store
        .declare_window(&excluded, "disp", at_day(27.0))
        .await
        .unwrap();
    let run = online::run_once(&store, &net, &cfg, at_day(30.0))
        .await
        .unwrap();
    assert_eq!(run.recorded.events.inserted, 0, "{:?}", run.recorded);
    let after = bursts(&store).await;
    assert_eq!(after.len(), 1, "still one burst: {after:?}");
    assert_eq!(after[0].id, burst.id);
    let end = after[0].event.end.expect("the repair closes the burst");
    let repair = at_day(24.0 + 14.0 / 24.0);
    assert!((end - repair).num_minutes().abs() <= 60, "end {end}");

    // Daily KPIs of every day with data (the windows began before day 0).
    let day = |d: f64| at_day(d).with_timezone(&net.timezone).date_naive();
    let q = KpiQuery {
        scope: KpiScope::Dma,
        subject: Some("A".into()),
        metric: Some("siv_m3".into()),
        from: day(-10.0),
        to: day(60.0),
        limit: 1_000,
    };
    let siv = store.kpis(&q).await.unwrap();
    assert_eq!(siv.first().unwrap().day, day(0.0));
    assert_eq!(siv.last().unwrap().day, day(29.0));
    let burst_day = siv.iter().find(|k| k.day == day(22.0)).unwrap();
    let normal_day = siv.iter().find(|k| k.day == day(27.0)).unwrap();
    let extra = burst_day.value.unwrap() - normal_day.value.unwrap();
    assert!(
        (extra - 24.0 * 25.0).abs() < 100.0,
        "a whole day of the 25 m³/h burst: {extra}"
    );
    let compliance = store
        .kpis(&KpiQuery {
            scope: KpiScope::Point,
            subject: Some("azp".into()),
            metric: Some("compliance_percent".into()),
            ..q
        })
        .await
        .unwrap();
    assert_eq!(compliance.len(), siv.len());
    assert!(compliance.iter().all(|k| k.value == Some(100.0)));
    let count = |metric: &str, d: f64| {
        let store = store.clone();
        let q = KpiQuery {
            scope: KpiScope::Point,
            subject: Some("azp".into()),
            metric: Some(metric.into()),
            from: day(d),
            to: day(d),
            ..q.clone()
        };
        async move { store.kpis(&q).await.unwrap()[0].value }
    };
    assert_eq!(count("compliance_excluded", 27.0).await, Some(72.0));
    assert_eq!(count("compliance_readings", 27.0).await, Some(216.0));
    assert_eq!(count("compliance_excluded", 26.0).await, Some(0.0));

    // Monthly figures, aggregated from the stored days of each month although no run saw a
    // whole month: January 5–31 (27 days) and February 1–3.
    let monthly = store
        .monthly_kpis(&KpiQuery {
            scope: KpiScope::Dma,
            subject: Some("A".into()),
            metric: None,
            from: day(-10.0),
            to: day(60.0),
            limit: 1_000,
        })
        .await
        .unwrap();
    let month_value = |m: &str, metric: &str| {
        monthly
            .iter()
            .find(|k| k.month.to_string() == m && k.metric == metric)
            .unwrap_or_else(|| panic!("{m} {metric}: {monthly:?}"))
            .value
    };
    assert_eq!(month_value("2026-01-01", "days"), Some(27.0));
    assert_eq!(month_value("2026-02-01", "days"), Some(3.0));
    let january: f64 = siv
        .iter()
        .filter(|k| k.day.to_string().starts_with("2026-01"))
        .filter_map(|k| k.value)
        .sum();
    let stored = month_value("2026-01-01", "siv_m3").unwrap();
    assert!(
        (stored - january).abs() < 1e-6 * january,
        "{stored} vs {january}"
    );
    // No customer meters: no balance, so no CJJ 92 rate (missing, not zero).
    assert_eq!(
        month_value("2026-01-01", "comprehensive_leakage_percent"),
        None
    );
    let ili = monthly
        .iter()
        .find(|k| k.month.to_string() == "2026-01-01" && k.metric == "ili")
        .unwrap();
    assert!(ili.value.is_some_and(|v| v > 0.0), "{ili:?}");
    assert!(
        ili.note
            .as_deref()
            .is_some_and(|n| n.contains("400 connections")),
        "400 connections is outside the UARL formula's range: {ili:?}"
    );

    // A 10-day window's first day is a warm-up: its figures lack the day before, so a run
    // does not write them over the good values of the runs before.
    let short = OnlineConfig {
        lookback_days: 10,
        ..cfg
    };
    let window = online::Window::ending_at(net.timezone, at_day(30.0), 10);
    let r = online::load(&store, &net, window).await.unwrap();
    let found = online::analyse(&r, &net, &short, window).unwrap();
    let first = found.kpis.iter().map(|k| k.day).min().unwrap();
    assert_eq!(first, day(21.0), "day 20 is the warm-up day");
    assert!(found.kpis.iter().any(|k| k.day == day(29.0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite() {
    let db = TestDb::sqlite().unwrap();
    scheduled_runs_record_a_burst_once_and_its_repair(db.store().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres() {
    let db = TestDb::postgres().await.unwrap();
    scheduled_runs_record_a_burst_once_and_its_repair(db.store().await.unwrap()).await;
}

const STATION: &str = r#"
timezone = "Asia/Shanghai"
[[sensor]]
id = "Q-turb"
kind = "turbidity"
unit = "NTU"
station = "Q"
resolution = 0.001
[[sensor]]
id = "Q-ph"
kind = "ph"
unit = "pH"
station = "Q"
"#;

/// A monitoring station whose turbidity analyser reads 0.4 NTU high from day 3 on; the lab's
/// grab samples (one entered for the station, one attached to an alert there) show it.
async fn grab_samples_in_the_store_reach_the_quality_job(store: Store) {
    let net = Network::parse(STATION).unwrap();
    store.upsert_described_sensors(&net).await.unwrap();
    let mut rng = XorShift(0x7a3b_0001);
    let id = |s: &str| SensorId::parse(s).unwrap();
    let water = |d: f64| 0.3 + 0.02 * (d * 3.0).sin();
    let mut rows = Vec::new();
    for k in 0..(5 * 288) {
        let d = k as f64 / 288.0;
        let bias = if d >= 3.0 { 0.4 } else { 0.0 };
        let t = at_day(d);
        let turb = water(d) + bias + 0.004 * rng.normal();
        rows.push(Reading::new(
            id("Q-turb"),
            t,
            (turb * 1000.0).round() / 1000.0,
        ));
        rows.push(Reading::new(id("Q-ph"), t, 7.4 + 0.01 * rng.normal()));
    }
    deliver(&store, rows).await;
    let lab = waterline_store::Actor {
        name: "lab-li".into(),
        role: waterline_core::Role::Lab,
        token_id: None,
    };
    let sample = |d: f64, sid: &str| {
        waterline_core::GrabSample::new("turbidity", water(d), "NTU", at_day(d), Some(sid)).unwrap()
    };
    let station = waterline_core::StationId::parse("Q").unwrap();
    // Day 2, 09:00: agrees. Day 4, 09:00: the analyser reads 0.4 high.
    store
        .record_station_sample(&station, &sample(2.375, "L-2"), &lab, at_day(2.5))
        .await
        .unwrap();
    let mut alert =
        waterline_core::Event::new(EventKind::QualityThreshold, at_day(4.0), at_day(4.0));
    alert.station = Some(station.clone());
    let alert = store.insert_event(&alert).await.unwrap();
    store
        .add_event_sample(alert, &lab, at_day(4.5), &sample(4.375, "L-4"))
        .await
        .unwrap();

    online::run_once(&store, &net, &OnlineConfig::default(), at_day(5.0))
        .await
        .unwrap();
    let drift: Vec<_> = store
        .events(t0(), at_day(6.0), None)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event.kind == EventKind::SensorFault)
        .filter(|e| {
            e.event
                .message
                .as_deref()
                .is_some_and(|m| m.starts_with("drift"))
        })
        .collect();
    assert_eq!(drift.len(), 1, "{drift:#?}");
    let e = &drift[0].event;
    assert_eq!(e.sensor.as_ref().map(SensorId::as_str), Some("Q-turb"));
    assert_eq!(e.start, at_day(2.375), "from the last agreeing sample");
    assert_eq!(e.detected_at, at_day(4.5), "when the result was entered");
    assert!(e.message.as_deref().unwrap_or_default().contains("L-4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grab_samples_on_sqlite() {
    let db = TestDb::sqlite().unwrap();
    grab_samples_in_the_store_reach_the_quality_job(db.store().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grab_samples_on_postgres() {
    let db = TestDb::postgres().await.unwrap();
    grab_samples_in_the_store_reach_the_quality_job(db.store().await.unwrap()).await;
}
