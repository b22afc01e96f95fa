//! The alert workflow on both backends: each case runs on a fresh PostgreSQL database and on a
//! fresh SQLite file ([`crate::testing::TestDb`]).

use chrono::{DateTime, TimeDelta, Utc};
use waterline_core::{
    Event, EventKind, EventState, GrabSample, Note, Resolution, Role, SensorId, StationId,
};

use crate::{Actor, HistoryAction, Store, StoreError};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn t0() -> DateTime<Utc> {
    t("2026-03-01T06:00:00Z")
}

fn lab() -> Actor {
    Actor {
        name: "lab-anna".into(),
        role: Role::Lab,
        token_id: Some(7),
    }
}

fn engineer() -> Actor {
    Actor {
        name: "eng-bo".into(),
        role: Role::Engineer,
        token_id: None,
    }
}

fn note(s: &str) -> Note {
    Note::parse("note", s).unwrap()
}

fn chlorine(at: DateTime<Utc>) -> GrabSample {
    GrabSample::new("chlorine", 0.08, "mg/L", at, Some("LIMS-2026-0042")).unwrap()
}

async fn quality_event(store: &Store, detected_at: DateTime<Utc>) -> i64 {
    let mut e = Event::new(EventKind::QualityThreshold, detected_at, detected_at);
    e.sensor = Some(SensorId::parse("Q1-chlorine").unwrap());
    e.station = Some(StationId::parse("Q1").unwrap());
    store.insert_event(&e).await.unwrap()
}

on_both_backends!(
    full_lifecycle_records_who_when_and_every_step_in_order,
    resolving_an_open_event_acknowledges_it_implicitly,
    invalid_transitions_are_refused_and_change_nothing,
    unknown_events_are_not_found,
    concurrent_acknowledgements_exactly_one_wins,
    concurrent_resolutions_exactly_one_wins,
    samples_attach_in_any_state,
    kpis_on_known_timestamps,
    station_samples_are_recorded_audited_and_listed_with_event_samples,
);

async fn full_lifecycle_records_who_when_and_every_step_in_order(store: Store) {
    let id = quality_event(&store, t0()).await;
    let d = store.event(id).await.unwrap().unwrap();
    assert_eq!(d.event.state, EventState::Open);
    assert!(d.samples.is_empty() && d.history.is_empty());

    let t1 = t0() + TimeDelta::minutes(12);
    let d = store
        .acknowledge_event(id, &lab(), t1, Some(&note("taking a grab sample")))
        .await
        .unwrap();
    assert_eq!(d.event.state, EventState::Acknowledged);
    assert_eq!(d.event.acknowledged_by.as_deref(), Some("lab-anna"));
    assert_eq!(d.event.acknowledged_at, Some(t1));

    let t2 = t0() + TimeDelta::minutes(50);
    let s = store
        .add_event_sample(id, &lab(), t2, &chlorine(t0() + TimeDelta::minutes(40)))
        .await
        .unwrap();
    assert_eq!((s.event_id, s.entered_by.as_str()), (id, "lab-anna"));

    let t3 = t0() + TimeDelta::hours(2);
    let confirm = GrabSample::new("chlorine", 0.31, "mg/L", t3, None).unwrap();
    let d = store
        .resolve_event(
            id,
            &engineer(),
            t3,
            Resolution::TrueEvent,
            &note("low residual confirmed; reservoir dosing pump restarted"),
            Some(&confirm),
        )
        .await
        .unwrap();
    assert_eq!(d.event.state, EventState::Resolved);
    assert_eq!(d.event.resolved_by.as_deref(), Some("eng-bo"));
    assert_eq!(d.event.resolved_at, Some(t3));
    assert_eq!(d.event.resolution, Some(Resolution::TrueEvent));
    assert_eq!(
        d.event.resolution_note.as_deref(),
        Some("low residual confirmed; reservoir dosing pump restarted")
    );
    // The acknowledgement is kept as it was.
    assert_eq!(d.event.acknowledged_by.as_deref(), Some("lab-anna"));
    assert_eq!(d.event.acknowledged_at, Some(t1));

    assert_eq!(d.samples.len(), 2);
    assert_eq!(d.samples[0].id, s.id);
    assert_eq!(d.samples[0].sample, chlorine(t0() + TimeDelta::minutes(40)));
    assert_eq!(d.samples[0].entered_at, t2);
    assert_eq!(d.samples[1].sample.value(), 0.31);
    assert_eq!(d.samples[1].sample.sample_id(), None);

    let steps: Vec<(HistoryAction, &str, DateTime<Utc>)> = d
        .history
        .iter()
        .map(|h| (h.action, h.actor.as_str(), h.at))
        .collect();
    assert_eq!(
        steps,
        vec![
            (HistoryAction::Acknowledge, "lab-anna", t1),
            (HistoryAction::Sample, "lab-anna", t2),
            (HistoryAction::Sample, "eng-bo", t3),
            (HistoryAction::Resolve, "eng-bo", t3),
        ]
    );
    assert_eq!(d.history[0].details["note"], "taking a grab sample");
    assert_eq!(d.history[0].details["role"], "lab");
    assert_eq!(d.history[0].details["token_id"], 7);
    assert!(d.history[3].details.get("token_id").is_none());
    assert!(d.history[0].details.get("implicit").is_none());
    assert_eq!(d.history[1].details["sample_id"], "LIMS-2026-0042");
    assert_eq!(d.history[3].details["resolution"], "true_event");
    assert_eq!(d.history[3].details["sample"], d.samples[1].id);
    assert!(d.history.windows(2).all(|w| w[0].id < w[1].id));

    // The list answers the lifecycle too, and the event reads back the same.
    let listed = store
        .events(t0() - TimeDelta::days(1), t0() + TimeDelta::days(1), None)
        .await
        .unwrap();
    assert_eq!(listed, vec![d.event.clone()]);
    assert_eq!(store.event(id).await.unwrap().unwrap(), d);
}

async fn resolving_an_open_event_acknowledges_it_implicitly(store: Store) {
    let id = quality_event(&store, t0()).await;
    let at = t0() + TimeDelta::minutes(30);
    let d = store
        .resolve_event(
            id,
            &lab(),
            at,
            Resolution::SensorFault,
            &note("probe fouled; cleaned and recalibrated"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(d.event.state, EventState::Resolved);
    assert_eq!(d.event.acknowledged_by.as_deref(), Some("lab-anna"));
    assert_eq!(d.event.acknowledged_at, Some(at));
    let actions: Vec<HistoryAction> = d.history.iter().map(|h| h.action).collect();
    assert_eq!(
        actions,
        vec![HistoryAction::Acknowledge, HistoryAction::Resolve]
    );
    assert_eq!(d.history[0].details["implicit"], true);
    assert!(d.history[1].details.get("sample").is_none());
}

async fn invalid_transitions_are_refused_and_change_nothing(store: Store) {
    let id = quality_event(&store, t0()).await;
    let t1 = t0() + TimeDelta::minutes(5);
    store.acknowledge_event(id, &lab(), t1, None).await.unwrap();
    let e = store
        .acknowledge_event(id, &engineer(), t1 + TimeDelta::minutes(1), None)
        .await
        .unwrap_err();
    match &e {
        StoreError::InvalidTransition {
            id: eid,
            action,
            state,
            by,
            at,
        } => {
            assert_eq!(
                (*eid, *action, *state),
                (id, "acknowledge", EventState::Acknowledged)
            );
            assert_eq!((by.as_deref(), *at), (Some("lab-anna"), Some(t1)));
        }
        other => panic!("expected InvalidTransition, got {other:?}"),
    }
    assert_eq!(
        e.to_string(),
        format!(
            "cannot acknowledge event {id}: it is already acknowledged (by lab-anna at 2026-03-01T06:05:00Z)"
        )
    );

    let t2 = t0() + TimeDelta::hours(1);
    store
        .resolve_event(
            id,
            &lab(),
            t2,
            Resolution::FalseAlarm,
            &note("no change at the tap"),
            None,
        )
        .await
        .unwrap();
    let before = store.event(id).await.unwrap().unwrap();
    // Re-resolving, with a sample: refused, and the sample is not kept either.
    let e = store
        .resolve_event(
            id,
            &engineer(),
            t2 + TimeDelta::hours(1),
            Resolution::TrueEvent,
            &note("second opinion"),
            Some(&chlorine(t2)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::InvalidTransition {
                state: EventState::Resolved,
                action: "resolve",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("already resolved (by lab-anna"),
        "{e}"
    );
    let e = store
        .acknowledge_event(id, &engineer(), t2 + TimeDelta::hours(1), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::InvalidTransition {
                state: EventState::Resolved,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!e.is_retryable());
    assert_eq!(store.event(id).await.unwrap().unwrap(), before);
}

async fn unknown_events_are_not_found(store: Store) {
    assert!(store.event(4242).await.unwrap().is_none());
    let at = t0();
    let nf = |e: StoreError| matches!(e, StoreError::NotFound(w) if w == "event 4242");
    assert!(nf(store
        .acknowledge_event(4242, &lab(), at, None)
        .await
        .unwrap_err()));
    assert!(nf(store
        .resolve_event(
            4242,
            &lab(),
            at,
            Resolution::Maintenance,
            &note("x"),
            Some(&chlorine(at))
        )
        .await
        .unwrap_err()));
    assert!(nf(store
        .add_event_sample(4242, &lab(), at, &chlorine(at))
        .await
        .unwrap_err()));
}

async fn concurrent_acknowledgements_exactly_one_wins(store: Store) {
    let id = quality_event(&store, t0()).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let who = Actor {
                    name: format!("person-{i}"),
                    role: Role::Lab,
                    token_id: None,
                };
                store
                    .acknowledge_event(id, &who, t0() + TimeDelta::seconds(i), None)
                    .await
                    .map(|_| who.name)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(name) => winners.push(name),
            Err(StoreError::InvalidTransition {
                state: EventState::Acknowledged,
                ..
            }) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let d = store.event(id).await.unwrap().unwrap();
    assert_eq!(d.event.acknowledged_by.as_ref(), Some(&winners[0]));
    assert_eq!(d.history.len(), 1);
}

async fn concurrent_resolutions_exactly_one_wins(store: Store) {
    let id = quality_event(&store, t0()).await;
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let who = Actor {
                    name: format!("person-{i}"),
                    role: Role::Engineer,
                    token_id: None,
                };
                let s = chlorine(t0());
                store
                    .resolve_event(
                        id,
                        &who,
                        t0(),
                        Resolution::TrueEvent,
                        &note("done"),
                        Some(&s),
                    )
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::InvalidTransition {
                state: EventState::Resolved,
                ..
            }) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(ok, 1);
    let d = store.event(id).await.unwrap().unwrap();
    assert_eq!(d.samples.len(), 1, "only the winner's sample is kept");
    let actions: Vec<HistoryAction> = d.history.iter().map(|h| h.action).collect();
    assert_eq!(
        actions,
        vec![
            HistoryAction::Acknowledge,
            HistoryAction::Sample,
            HistoryAction::Resolve
        ]
    );
}

async fn samples_attach_in_any_state(store: Store) {
    let id = quality_event(&store, t0()).await;
    let at = t0() + TimeDelta::minutes(1);
    store
        .add_event_sample(id, &lab(), at, &chlorine(at))
        .await
        .unwrap();
    assert_eq!(
        store.event(id).await.unwrap().unwrap().event.state,
        EventState::Open,
        "a sample does not change the state"
    );
    store
        .resolve_event(
            id,
            &lab(),
            at,
            Resolution::TrueEvent,
            &note("confirmed"),
            None,
        )
        .await
        .unwrap();
    let late = GrabSample::new("turbidity", 0.4, "NTU", at + TimeDelta::days(1), None).unwrap();
    store
        .add_event_sample(id, &lab(), at + TimeDelta::days(1), &late)
        .await
        .unwrap();
    let d = store.event(id).await.unwrap().unwrap();
    assert_eq!(d.samples.len(), 2);
    assert_eq!(d.samples[1].sample.parameter(), "turbidity");
    assert_eq!(d.history.last().unwrap().action, HistoryAction::Sample);
}

async fn kpis_on_known_timestamps(store: Store) {
    let min = |m: i64| t0() + TimeDelta::minutes(m);
    // Four quality alerts and one leak raised in the window, one quality alert after it.
    let a = quality_event(&store, min(0)).await;
    let b = quality_event(&store, min(60)).await;
    let c = quality_event(&store, min(120)).await;
    let _open = quality_event(&store, min(180)).await;
    let mut leak = Event::new(EventKind::Leak, min(0), min(0));
    leak.dma = Some(waterline_core::DmaId::parse("A").unwrap());
    let leak = store.insert_event(&leak).await.unwrap();
    let later = quality_event(&store, min(24 * 60)).await;

    store
        .acknowledge_event(a, &lab(), min(10), None)
        .await
        .unwrap();
    store
        .resolve_event(
            a,
            &lab(),
            min(90),
            Resolution::TrueEvent,
            &note("confirmed"),
            None,
        )
        .await
        .unwrap();
    store
        .acknowledge_event(b, &lab(), min(60 + 30), None)
        .await
        .unwrap();
    store
        .resolve_event(
            b,
            &lab(),
            min(60 + 240),
            Resolution::SensorFault,
            &note("drift"),
            None,
        )
        .await
        .unwrap();
    store
        .acknowledge_event(c, &lab(), min(120 + 20), None)
        .await
        .unwrap();
    store
        .resolve_event(
            leak,
            &engineer(),
            min(5),
            Resolution::FalseAlarm,
            &note("meter swap"),
            None,
        )
        .await
        .unwrap();
    store
        .resolve_event(
            later,
            &lab(),
            min(24 * 60 + 1),
            Resolution::Maintenance,
            &note("flushing"),
            None,
        )
        .await
        .unwrap();

    let (from, to) = (t0(), t0() + TimeDelta::days(1));
    let q = store
        .alert_kpis(from, to, waterline_core::alert::QUALITY_KINDS)
        .await
        .unwrap();
    assert_eq!((q.raised, q.acknowledged, q.resolved, q.open), (4, 3, 2, 1));
    assert_eq!(q.follow_up_rate, Some(0.5));
    // To acknowledge: 10, 20, 30 min. To resolve: 90, 240 min.
    assert_eq!(q.time_to_acknowledge.count, 3);
    assert_eq!(q.time_to_acknowledge.median_seconds, Some(1200.0));
    assert_eq!(q.time_to_acknowledge.p90_seconds, Some(1680.0));
    assert_eq!(q.time_to_resolve.median_seconds, Some(165.0 * 60.0));
    assert_eq!(
        q.time_to_resolve.p90_seconds,
        Some((90.0 + 0.9 * 150.0) * 60.0)
    );
    assert_eq!(q.resolutions[&Resolution::TrueEvent], 1);
    assert_eq!(q.resolutions[&Resolution::SensorFault], 1);
    assert_eq!(q.resolutions[&Resolution::FalseAlarm], 0);
    assert_eq!(q.resolutions[&Resolution::Maintenance], 0);

    let all = store.alert_kpis(from, to, &[]).await.unwrap();
    assert_eq!((all.raised, all.resolved), (5, 3));
    assert_eq!(all.follow_up_rate, Some(0.6));
    assert_eq!(all.resolutions[&Resolution::FalseAlarm], 1);
    assert_eq!(
        all.time_to_acknowledge.count, 4,
        "the implicit acknowledgement counts"
    );

    let leaks = store
        .alert_kpis(from, to, &[EventKind::Leak])
        .await
        .unwrap();
    assert_eq!(leaks.raised, 1);
    assert_eq!(leaks.time_to_resolve.median_seconds, Some(300.0));
}

async fn station_samples_are_recorded_audited_and_listed_with_event_samples(store: Store) {
    let q1 = StationId::parse("Q1").unwrap();
    let q2 = StationId::parse("Q2").unwrap();
    let at = t0() + TimeDelta::hours(3);
    let routine = GrabSample::new("pH", 7.31, "pH", t0(), Some("LIMS-7")).unwrap();
    let r = store
        .record_station_sample(&q1, &routine, &lab(), at)
        .await
        .unwrap();
    assert_eq!(
        (
            r.event_id,
            &r.station,
            &r.sample,
            r.entered_by.as_str(),
            r.entered_at
        ),
        (None, &q1, &routine, "lab-anna", at)
    );
    let other = GrabSample::new("turbidity", 0.2, "NTU", t0(), None).unwrap();
    store
        .record_station_sample(&q2, &other, &engineer(), at)
        .await
        .unwrap();
    // A sample attached to an event at station Q1 counts for Q1 too.
    let id = quality_event(&store, t0()).await;
    let attached = chlorine(t0() + TimeDelta::minutes(30));
    store
        .add_event_sample(id, &lab(), at, &attached)
        .await
        .unwrap();

    let from = t0() - TimeDelta::hours(1);
    let to = t0() + TimeDelta::days(1);
    let q1_samples = store.station_samples(from, to, Some(&q1)).await.unwrap();
    let got: Vec<(Option<i64>, &str)> = q1_samples
        .iter()
        .map(|s| (s.event_id, s.sample.parameter()))
        .collect();
    assert_eq!(
        got,
        [(None, "pH"), (Some(id), "chlorine")],
        "by sample time"
    );
    assert_eq!(q1_samples[1].sample, attached);
    assert_eq!(
        store.station_samples(from, to, None).await.unwrap().len(),
        3
    );
    // Half-open: a window ending at the first sample's time does not see it.
    assert!(
        store
            .station_samples(from, t0(), Some(&q1))
            .await
            .unwrap()
            .is_empty()
    );
}
