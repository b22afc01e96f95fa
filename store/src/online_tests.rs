//! What the analytics jobs write, on both backends: detections recorded without duplicates
//! (and without touching the alert workflow), and daily KPIs replaced per day.

use chrono::{DateTime, NaiveDate, Utc};
use waterline_core::{DmaId, Event, EventKind, EventState, Note, Resolution, Role, Severity};

use crate::{Actor, DailyKpi, DetectionOutcome, KpiQuery, KpiScope, PrvAdvice, Store};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn burst(start: &str, detected: &str, end: Option<&str>, flow: f64) -> Event {
    let mut e = Event::new(EventKind::Burst, t(start), t(detected));
    e.dma = Some(DmaId::parse("DMA-1").unwrap());
    e.end = end.map(t);
    e.flow_m3h = Some(flow);
    e.severity = Some(Severity::Alarm);
    e
}

fn day(d: &str) -> NaiveDate {
    NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap()
}

fn kpi(subject: &str, d: &str, metric: &str, value: Option<f64>) -> DailyKpi {
    DailyKpi {
        scope: KpiScope::Dma,
        subject: subject.into(),
        day: day(d),
        metric: metric.into(),
        value,
    }
}

async fn repeated_runs_update_one_event_and_keep_its_workflow(store: Store) {
    let first = burst("2026-03-01T02:00:00Z", "2026-03-01T02:30:00Z", None, 12.0);
    let outcome = store.record_detections(&[first]).await.unwrap();
    assert_eq!(
        outcome,
        DetectionOutcome {
            inserted: 1,
            ..Default::default()
        }
    );
    let stored = store
        .events(t("2026-03-01T00:00:00Z"), t("2026-03-02T00:00:00Z"), None)
        .await
        .unwrap();
    let id = stored[0].id;
    let engineer = Actor {
        name: "eng".into(),
        role: Role::Engineer,
        token_id: None,
    };
    store
        .acknowledge_event(id, &engineer, t("2026-03-01T03:00:00Z"), None)
        .await
        .unwrap();

    // The next run sees the same burst (onset estimated 15 min later), still open: nothing
    // changes. The run after sees it end.
    let again = burst("2026-03-01T02:15:00Z", "2026-03-01T02:45:00Z", None, 12.0);
    let outcome = store.record_detections(&[again]).await.unwrap();
    assert_eq!(outcome.unchanged, 1, "{outcome:?}");
    let ended = burst(
        "2026-03-01T02:00:00Z",
        "2026-03-01T02:30:00Z",
        Some("2026-03-01T09:00:00Z"),
        11.5,
    );
    let outcome = store.record_detections(&[ended]).await.unwrap();
    assert_eq!(outcome.updated, 1, "{outcome:?}");

    let stored = store
        .events(t("2026-03-01T00:00:00Z"), t("2026-03-02T00:00:00Z"), None)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1, "one burst, stored once: {stored:?}");
    let e = &stored[0];
    assert_eq!(e.id, id);
    assert_eq!(e.event.start, t("2026-03-01T02:00:00Z"));
    assert_eq!(e.event.detected_at, t("2026-03-01T02:30:00Z"));
    assert_eq!(e.event.end, Some(t("2026-03-01T09:00:00Z")));
    assert_eq!(e.event.flow_m3h, Some(11.5));
    assert_eq!(
        e.state,
        EventState::Acknowledged,
        "the workflow is untouched"
    );
    assert_eq!(e.acknowledged_by.as_deref(), Some("eng"));

    // A burst after this one ended is a new event, even when the first was resolved.
    store
        .resolve_event(
            id,
            &engineer,
            t("2026-03-01T10:00:00Z"),
            Resolution::TrueEvent,
            &Note::parse("note", "main repaired").unwrap(),
            None,
        )
        .await
        .unwrap();
    let later = burst("2026-03-01T20:00:00Z", "2026-03-01T20:30:00Z", None, 8.0);
    let outcome = store.record_detections(&[later]).await.unwrap();
    assert_eq!(outcome.inserted, 1, "{outcome:?}");
    let all = store
        .events(t("2026-03-01T00:00:00Z"), t("2026-03-02T00:00:00Z"), None)
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].state, EventState::Open);
}

async fn kpis_are_replaced_per_day_and_missing_stays_missing(store: Store) {
    let computed = t("2026-03-03T01:00:00Z");
    let first = [
        kpi("DMA-1", "2026-03-01", "nrw_percent", Some(18.5)),
        kpi("DMA-1", "2026-03-02", "nrw_percent", None),
        kpi("DMA-1", "2026-03-02", "mnf_m3h", Some(4.25)),
        kpi("DMA-2", "2026-03-01", "nrw_percent", Some(9.0)),
    ];
    assert_eq!(store.upsert_kpis(&first, computed).await.unwrap(), 4);
    // Late data completed 2 March: the next run replaces that day's value.
    let second = [kpi("DMA-1", "2026-03-02", "nrw_percent", Some(21.0))];
    store.upsert_kpis(&second, computed).await.unwrap();

    let q = KpiQuery {
        scope: KpiScope::Dma,
        subject: Some("DMA-1".into()),
        metric: Some("nrw_percent".into()),
        from: day("2026-03-01"),
        to: day("2026-03-31"),
        limit: 100,
    };
    let got = store.kpis(&q).await.unwrap();
    assert_eq!(
        got,
        [
            kpi("DMA-1", "2026-03-01", "nrw_percent", Some(18.5)),
            kpi("DMA-1", "2026-03-02", "nrw_percent", Some(21.0)),
        ]
    );
    // Every metric of every DMA, and a day range that excludes 1 March.
    let q = KpiQuery {
        subject: None,
        metric: None,
        from: day("2026-03-02"),
        ..q
    };
    let got = store.kpis(&q).await.unwrap();
    assert_eq!(
        got,
        [
            kpi("DMA-1", "2026-03-02", "mnf_m3h", Some(4.25)),
            kpi("DMA-1", "2026-03-02", "nrw_percent", Some(21.0)),
        ]
    );
    // Another scope holds nothing.
    let q = KpiQuery {
        scope: KpiScope::Zone,
        ..q
    };
    assert!(store.kpis(&q).await.unwrap().is_empty());
}

async fn prv_advice_is_replaced_as_a_whole(store: Store) {
    assert!(store.prv_advice().await.unwrap().is_empty());
    let advice = |prv: &str, at: &str, setting: f64| PrvAdvice {
        prv: prv.into(),
        dma: "B".into(),
        computed_at: t(at),
        body: serde_json::json!({ "prv": prv, "fixed": { "hourly_setting_m": [setting] } }),
    };
    let first = [
        advice("PRV-B", "2026-03-01T00:00:00Z", 40.5),
        advice("PRV-A", "2026-03-01T00:00:00Z", 35.0),
    ];
    store.replace_prv_advice(&first).await.unwrap();
    let stored = store.prv_advice().await.unwrap();
    assert_eq!(
        stored,
        [first[1].clone(), first[0].clone()],
        "ordered by valve"
    );
    // The next run knows only PRV-B: PRV-A's stale advice goes.
    let second = [advice("PRV-B", "2026-03-01T00:15:00Z", 39.8)];
    store.replace_prv_advice(&second).await.unwrap();
    assert_eq!(store.prv_advice().await.unwrap(), second);
}

on_both_backends!(
    repeated_runs_update_one_event_and_keep_its_workflow,
    kpis_are_replaced_per_day_and_missing_stays_missing,
    prv_advice_is_replaced_as_a_whole,
);

mod windows {
    use chrono::{DateTime, Utc};
    use waterline_core::{DeclaredWindow, DmaId, Note, StationId, WindowKind, WindowSubject};

    use super::t;
    use crate::{Store, StoreError};

    fn window(kind: WindowKind, subject: WindowSubject, from: &str, to: &str) -> DeclaredWindow {
        DeclaredWindow::new(
            kind,
            subject,
            t(from),
            t(to),
            Note::parse("reason", "planned works").unwrap(),
        )
        .unwrap()
    }

    async fn declared_windows_are_listed_by_overlap_and_withdrawn_once(store: Store) {
        let at: DateTime<Utc> = t("2026-03-01T00:00:00Z");
        let a = window(
            WindowKind::Exclusion,
            WindowSubject::Dma(DmaId::parse("A").unwrap()),
            "2026-03-02T08:00:00Z",
            "2026-03-02T12:00:00Z",
        );
        let m = window(
            WindowKind::Maintenance,
            WindowSubject::Station(StationId::parse("S1").unwrap()),
            "2026-03-03T09:00:00Z",
            "2026-03-03T10:00:00Z",
        );
        let sa = store.declare_window(&a, "disp-wu", at).await.unwrap();
        let sm = store.declare_window(&m, "lab-li", at).await.unwrap();
        assert_eq!(
            (sa.window.clone(), sa.declared_by.as_str()),
            (a.clone(), "disp-wu")
        );
        assert!(sa.withdrawn_at.is_none());

        let all = store
            .declared_windows(t("2026-03-01T00:00:00Z"), t("2026-03-04T00:00:00Z"), None)
            .await
            .unwrap();
        assert_eq!(all.iter().map(|w| w.id).collect::<Vec<_>>(), [sa.id, sm.id]);
        // Half-open overlap: a query ending at the exclusion's start does not see it.
        let before = store
            .declared_windows(t("2026-03-02T00:00:00Z"), t("2026-03-02T08:00:00Z"), None)
            .await
            .unwrap();
        assert!(before.is_empty(), "{before:?}");
        let maint = store
            .declared_windows(
                t("2026-03-01T00:00:00Z"),
                t("2026-03-04T00:00:00Z"),
                Some(WindowKind::Maintenance),
            )
            .await
            .unwrap();
        assert_eq!(maint.len(), 1);
        assert_eq!(maint[0].window, m);

        let w = store
            .withdraw_window(sa.id, "disp-ma", t("2026-03-02T09:00:00Z"))
            .await
            .unwrap();
        assert_eq!(w.withdrawn_by.as_deref(), Some("disp-ma"));
        let again = store
            .withdraw_window(sa.id, "disp-ma", t("2026-03-02T09:05:00Z"))
            .await
            .unwrap_err();
        assert!(
            matches!(&again, StoreError::Conflict(m) if m.contains("already withdrawn by disp-ma")),
            "{again:?}"
        );
        assert!(matches!(
            store.withdraw_window(999, "x", at).await,
            Err(StoreError::NotFound(_))
        ));
        let left = store
            .declared_windows(t("2026-03-01T00:00:00Z"), t("2026-03-04T00:00:00Z"), None)
            .await
            .unwrap();
        assert_eq!(left.len(), 1, "a withdrawn window no longer applies");
        assert!(
            store
                .window(sa.id)
                .await
                .unwrap()
                .unwrap()
                .withdrawn_at
                .is_some()
        );
    }

    on_both_backends!(declared_windows_are_listed_by_overlap_and_withdrawn_once);
}

mod device_states {
    use waterline_core::DeviceId;

    use super::t;
    use crate::{Batch, DeviceSeen, DeviceState, DeviceStatus, Store};

    async fn reported_states_are_kept_and_an_older_one_never_wins(store: Store) {
        let edge = DeviceId::parse("plant:edge-1").unwrap();
        let meter = DeviceId::parse("cjt188-00000000004711").unwrap();
        let seen = |d: &DeviceId, at: &str| DeviceSeen {
            device: d.clone(),
            protocol: "test",
            at: t(at),
            status_if_new: DeviceStatus::Active,
            health: None,
        };
        let presence = |online, at: &str| DeviceState::Presence {
            device: edge.clone(),
            online,
            at: t(at),
        };
        let status = |valve, at: &str| DeviceState::MeterStatus {
            device: meter.clone(),
            valve,
            battery_low: valve == "closed",
            at: t(at),
        };
        store
            .commit_batch(&Batch {
                devices: vec![
                    seen(&edge, "2026-03-01T10:00:00Z"),
                    seen(&meter, "2026-03-01T10:00:00Z"),
                ],
                states: vec![
                    presence(true, "2026-03-01T10:00:00Z"),
                    status("closed", "2026-03-01T10:00:00Z"),
                ],
                ..Batch::default()
            })
            .await
            .unwrap();
        // A late, older message: ignored.
        store
            .commit_batch(&Batch {
                states: vec![
                    presence(false, "2026-03-01T09:00:00Z"),
                    status("open", "2026-03-01T09:00:00Z"),
                ],
                ..Batch::default()
            })
            .await
            .unwrap();
        let devices = store.devices().await.unwrap();
        let get = |id: &DeviceId| {
            devices
                .iter()
                .find(|d| d.id == id.as_str())
                .unwrap()
                .clone()
        };
        let (e, m) = (get(&edge), get(&meter));
        assert_eq!(
            (e.online, e.online_at),
            (Some(true), Some(t("2026-03-01T10:00:00Z")))
        );
        assert_eq!(
            (m.valve.as_deref(), m.battery_low),
            (Some("closed"), Some(true))
        );
        // A newer death: offline. A state for an unknown device changes nothing.
        store
            .commit_batch(&Batch {
                states: vec![
                    presence(false, "2026-03-01T11:00:00Z"),
                    DeviceState::Presence {
                        device: DeviceId::parse("ghost").unwrap(),
                        online: true,
                        at: t("2026-03-01T11:00:00Z"),
                    },
                ],
                ..Batch::default()
            })
            .await
            .unwrap();
        let devices = store.devices().await.unwrap();
        let e = devices.iter().find(|d| d.id == edge.as_str()).unwrap();
        assert_eq!(e.online, Some(false));
        assert!(!devices.iter().any(|d| d.id == "ghost"));
    }

    on_both_backends!(reported_states_are_kept_and_an_older_one_never_wins);
}

mod schedules {
    use waterline_core::HourlySchedule;

    use super::t;
    use crate::{ScheduleSource, Store};

    async fn schedules_are_replaced_marked_and_cancelled(store: Store) {
        let ramp: Vec<f64> = (0..24).map(|h| 20.0 + f64::from(h) / 2.0).collect();
        let s = HourlySchedule::new(&ramp, "Asia/Shanghai").unwrap();
        let at = t("2026-03-01T08:00:00Z");
        let first = store
            .put_prv_schedule(
                "PRV-B",
                &s,
                ScheduleSource::Recommendation,
                None,
                "disp-wu",
                at,
            )
            .await
            .unwrap();
        assert_eq!(first.hourly_setting_m, ramp);
        assert_eq!(first.timezone, "Asia/Shanghai");
        assert_eq!((first.written_hour, first.written_m), (None, None));
        assert_eq!(first.schedule().unwrap(), s);

        let hour = t("2026-03-01T08:00:00Z");
        assert!(
            store
                .mark_schedule_written("PRV-B", first.applied_at, hour, 28.0)
                .await
                .unwrap()
        );
        let listed = store.prv_schedules().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].written_hour, listed[0].written_m),
            (Some(hour), Some(28.0))
        );

        // Applying again replaces it, forgets what was written, and a runner still holding
        // the old one cannot mark it.
        let flat = HourlySchedule::new(&[25.0; 24], "UTC").unwrap();
        let later = at + chrono::TimeDelta::hours(1);
        let second = store
            .put_prv_schedule(
                "PRV-B",
                &flat,
                ScheduleSource::Request,
                Some("night test"),
                "eng",
                later,
            )
            .await
            .unwrap();
        assert_eq!(
            (second.source, second.note.as_deref()),
            (ScheduleSource::Request, Some("night test"))
        );
        assert_eq!(second.written_hour, None);
        assert!(
            !store
                .mark_schedule_written("PRV-B", first.applied_at, hour, 28.0)
                .await
                .unwrap()
        );
        assert_eq!(
            store.prv_schedules().await.unwrap(),
            std::slice::from_ref(&second)
        );

        let cancelled = store
            .cancel_prv_schedule("PRV-B", "disp-wu", None)
            .await
            .unwrap();
        assert_eq!(cancelled, Some(second));
        assert_eq!(
            store
                .cancel_prv_schedule("PRV-B", "disp-wu", None)
                .await
                .unwrap(),
            None
        );
        assert!(store.prv_schedules().await.unwrap().is_empty());
    }

    on_both_backends!(schedules_are_replaced_marked_and_cancelled);
}
