//! The alert workflow and the OpenAPI document through the real router (`app(state)` driven
//! with `oneshot`), on a fresh PostgreSQL database or SQLite file per test.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::{DateTime, TimeDelta, Utc};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use waterline_core::health::HealthBoard;
use waterline_core::{Event, EventKind, Role, SensorId, StationId};
use waterline_dashboards::{AppState, ROUTES, app};
use waterline_store::Store;
use waterline_store::testing::TestDb;

struct Api {
    _db: TestDb,
    store: Store,
    lab: String,
    engineer: String,
    dispatcher: String,
    viewer: String,
}

struct Answer {
    status: StatusCode,
    body: Value,
}

impl Answer {
    fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or_default()
    }
}

impl Api {
    async fn on(db: TestDb) -> Api {
        let store = db.store().await.unwrap();
        Api {
            lab: store.create_token(Role::Lab, "lab-anna").await.unwrap(),
            engineer: store.create_token(Role::Engineer, "eng-bo").await.unwrap(),
            dispatcher: store
                .create_token(Role::Dispatcher, "disp-cy")
                .await
                .unwrap(),
            viewer: store.create_token(Role::Viewer, "view-di").await.unwrap(),
            store,
            _db: db,
        }
    }

    async fn postgres() -> Api {
        Api::on(TestDb::postgres().await.unwrap()).await
    }

    async fn sqlite() -> Api {
        Api::on(TestDb::sqlite().unwrap()).await
    }

    fn router(&self) -> axum::Router {
        app(AppState {
            store: self.store.clone(),
            health: HealthBoard::new(),
            metrics: None,
            setpoints: None,
        })
    }

    async fn call(&self, method: Method, uri: &str, token: Option<&str>, body: &str) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if !body.is_empty() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let resp = self
            .router()
            .oneshot(req.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    async fn get(&self, uri: &str, token: Option<&str>) -> Answer {
        self.call(Method::GET, uri, token, "").await
    }

    async fn post(&self, uri: &str, token: Option<&str>, body: Value) -> Answer {
        let text = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        self.call(Method::POST, uri, token, &text).await
    }

    async fn event(&self, kind: EventKind, detected_at: DateTime<Utc>) -> i64 {
        let mut e = Event::new(kind, detected_at, detected_at);
        match kind {
            EventKind::QualityEvent => e.station = Some(StationId::parse("Q1").unwrap()),
            _ => e.sensor = Some(SensorId::parse("S1").unwrap()),
        }
        self.store.insert_event(&e).await.unwrap()
    }
}

fn recent() -> DateTime<Utc> {
    Utc::now() - TimeDelta::hours(3)
}

fn sample_json(at: DateTime<Utc>) -> Value {
    json!({ "parameter": "chlorine", "value": 0.07, "unit": "mg/L",
            "sampled_at": at.to_rfc3339(), "sample_id": "LIMS-7" })
}

async fn full_lifecycle(api: Api) {
    let id = api.event(EventKind::QualityThreshold, recent()).await;
    let base = format!("/api/v1/events/{id}");

    let a = api.get(&base, Some(&api.viewer)).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.body["state"], "open");
    assert_eq!(a.body["kind"], "quality_threshold");
    assert_eq!(a.body["samples"], json!([]));
    assert_eq!(a.body["history"], json!([]));

    let a = api
        .post(
            &format!("{base}/acknowledge"),
            Some(&api.lab),
            json!({ "note": "on my way" }),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.body["state"], "acknowledged");
    assert_eq!(a.body["acknowledged_by"], "lab-anna");
    assert_eq!(a.body["history"][0]["details"]["note"], "on my way");

    let a = api
        .post(
            &format!("{base}/acknowledge"),
            Some(&api.engineer),
            Value::Null,
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert!(
        a.error().starts_with(&format!(
            "cannot acknowledge event {id}: it is already acknowledged (by lab-anna at "
        )),
        "{}",
        a.error()
    );

    let a = api
        .post(
            &format!("{base}/samples"),
            Some(&api.lab),
            sample_json(recent()),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    assert_eq!(a.body["event_id"], id);
    assert_eq!(a.body["entered_by"], "lab-anna");
    assert_eq!(a.body["sample_id"], "LIMS-7");

    let a = api
        .post(
            &format!("{base}/resolve"),
            Some(&api.engineer),
            json!({ "resolution": "true_event", "note": "residual restored after dosing fix",
                    "sample": { "parameter": "chlorine", "value": 0.3, "unit": "mg/L",
                                "sampled_at": Utc::now().to_rfc3339() } }),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.body["state"], "resolved");
    assert_eq!(a.body["resolved_by"], "eng-bo");
    assert_eq!(a.body["resolution"], "true_event");
    assert_eq!(
        a.body["resolution_note"],
        "residual restored after dosing fix"
    );
    assert_eq!(a.body["samples"].as_array().unwrap().len(), 2);
    let actions: Vec<&str> = a.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["acknowledge", "sample", "sample", "resolve"]);
    assert_eq!(a.body["history"][3]["details"]["role"], "engineer");

    let a = api
        .post(
            &format!("{base}/resolve"),
            Some(&api.lab),
            json!({ "resolution": "false_alarm", "note": "again" }),
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert!(
        a.error().contains("already resolved (by eng-bo at "),
        "{}",
        a.error()
    );

    // The list still answers as before, lifecycle included.
    let a = api.get("/api/v1/events", Some(&api.viewer)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body[0]["id"], id);
    assert_eq!(a.body[0]["state"], "resolved");
    assert_eq!(a.body[0]["acknowledged_by"], "lab-anna");

    let from = (recent() - TimeDelta::hours(1)).to_rfc3339();
    let uri = format!(
        "/api/v1/alerts/kpis?kind=quality&from={}",
        from.replace('+', "%2B")
    );
    let a = api.get(&uri, Some(&api.viewer)).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.body["raised"], 1);
    assert_eq!(a.body["resolved"], 1);
    assert_eq!(a.body["follow_up_rate"], 1.0);
    assert_eq!(a.body["resolutions"]["true_event"], 1);
    assert_eq!(a.body["resolutions"]["false_alarm"], 0);
    assert_eq!(
        a.body["kinds"],
        json!(["quality_event", "quality_threshold"])
    );
}

#[tokio::test]
async fn full_lifecycle_through_the_api_on_postgres() {
    full_lifecycle(Api::postgres().await).await;
}

#[tokio::test]
async fn full_lifecycle_through_the_api_on_sqlite() {
    full_lifecycle(Api::sqlite().await).await;
}

#[tokio::test]
async fn workflow_routes_need_credentials_and_the_right_role() {
    let api = Api::postgres().await;
    let quality = api.event(EventKind::QualityEvent, recent()).await;
    let pressure = api.event(EventKind::PressureLow, recent()).await;
    let ack_body = json!({});
    let resolve_body = json!({ "resolution": "maintenance", "note": "valve work" });

    for uri in [
        format!("/api/v1/events/{quality}"),
        "/api/v1/alerts/kpis".to_owned(),
        "/api/v1/openapi.json".to_owned(),
    ] {
        let a = api.get(&uri, None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{uri}");
        let a = api.get(&uri, Some("wl_forged")).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{uri}");
        let a = api.get(&uri, Some(&api.viewer)).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}");
    }
    for action in ["acknowledge", "resolve", "samples"] {
        let uri = format!("/api/v1/events/{quality}/{action}");
        let a = api.post(&uri, None, resolve_body.clone()).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{uri}");
        let a = api
            .post(&uri, Some(&api.viewer), resolve_body.clone())
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{uri}");
        assert!(
            a.error().contains("lab, engineer or admin"),
            "{}",
            a.error()
        );
    }

    // Dispatchers handle pressure alerts only, and do not enter grab samples.
    let a = api
        .post(
            &format!("/api/v1/events/{quality}/acknowledge"),
            Some(&api.dispatcher),
            ack_body.clone(),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(
        a.error().contains("dispatcher only for pressure_low"),
        "{}",
        a.error()
    );
    let a = api
        .post(
            &format!("/api/v1/events/{pressure}/acknowledge"),
            Some(&api.dispatcher),
            ack_body,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.body["acknowledged_by"], "disp-cy");
    let a = api
        .post(
            &format!("/api/v1/events/{pressure}/resolve"),
            Some(&api.dispatcher),
            resolve_body,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let a = api
        .post(
            &format!("/api/v1/events/{pressure}/samples"),
            Some(&api.dispatcher),
            sample_json(recent()),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);

    // Admin may do everything.
    let admin = api.store.create_token(Role::Admin, "root").await.unwrap();
    let a = api
        .post(
            &format!("/api/v1/events/{quality}/acknowledge"),
            Some(&admin),
            Value::Null,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
}

#[tokio::test]
async fn bad_ids_and_bodies_are_refused_naming_what_was_wrong() {
    let api = Api::sqlite().await;
    let id = api.event(EventKind::QualityThreshold, recent()).await;
    let resolve = format!("/api/v1/events/{id}/resolve");
    let lab = Some(api.lab.as_str());

    let a = api.get("/api/v1/events/abc", lab).await;
    assert_eq!(
        (a.status, a.error()),
        (
            StatusCode::BAD_REQUEST,
            "`id`: `abc` is not an event id; expected a positive whole number"
        )
    );
    let a = api.get("/api/v1/events/999", lab).await;
    assert_eq!(
        (a.status, a.error()),
        (StatusCode::NOT_FOUND, "event 999 not found")
    );
    let a = api
        .post("/api/v1/events/999/acknowledge", lab, Value::Null)
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = api
        .post("/api/v1/events/999/samples", lab, sample_json(recent()))
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = api.get(&format!("/api/v1/events/{id}?x=1"), lab).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);

    let a = api.call(Method::POST, &resolve, lab, "{not json").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.error().starts_with("the request body is not valid JSON"),
        "{}",
        a.error()
    );
    let a = api.call(Method::POST, &resolve, lab, "").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);

    let cases = [
        (json!({ "resolution": "true_event" }), "`note`: is required"),
        (
            json!({ "resolution": "true_event", "note": "  " }),
            "`note`: must not be empty",
        ),
        (json!({ "note": "x" }), "`resolution`: is required"),
        (
            json!({ "resolution": "fixed", "note": "x" }),
            "`resolution`: `fixed` is not a resolution; expected true_event, sensor_fault, maintenance or false_alarm",
        ),
        (
            json!({ "resolution": "true_event", "note": "x", "by": "me" }),
            "`by`: unknown field; expected resolution, note, sample",
        ),
        (
            json!({ "resolution": "true_event", "note": "x", "sample": { "parameter": "cl", "value": "0.2", "unit": "mg/L", "sampled_at": "2026-01-01T00:00:00Z" } }),
            "`sample.value`: must be a number",
        ),
        (
            json!({ "resolution": "true_event", "note": "x", "sample": { "parameter": "cl", "value": 0.2, "unit": "mg/L" } }),
            "`sample.sampled_at`: is required",
        ),
        (
            json!({ "resolution": "true_event", "note": "x", "sample": { "parameter": "", "value": 0.2, "unit": "mg/L", "sampled_at": "2026-01-01T00:00:00Z" } }),
            "`sample.parameter`: must not be empty",
        ),
        (
            json!({ "resolution": "true_event", "note": "x", "sample": { "parameter": "cl", "value": 0.2, "unit": "mg/L", "sampled_at": "yesterday" } }),
            "`sample.sampled_at`: `yesterday` is not an RFC 3339 time with offset, e.g. 2026-03-01T08:00:00Z",
        ),
        (
            json!({ "resolution": "true_event", "note": "x", "sample": 5 }),
            "`sample`: must be a JSON object",
        ),
    ];
    for (body, message) in cases {
        let a = api.post(&resolve, lab, body.clone()).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(a.error(), message, "{body}");
    }
    let future = json!({ "parameter": "cl", "value": 0.2, "unit": "mg/L",
                         "sampled_at": (Utc::now() + TimeDelta::hours(2)).to_rfc3339() });
    let a = api
        .post(&format!("/api/v1/events/{id}/samples"), lab, future)
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        a.error().starts_with("`sampled_at`: ") && a.error().ends_with("is in the future"),
        "{}",
        a.error()
    );
    let a = api
        .post(
            &format!("/api/v1/events/{id}/acknowledge"),
            lab,
            json!({ "note": 5 }),
        )
        .await;
    assert_eq!(
        (a.status, a.error()),
        (StatusCode::UNPROCESSABLE_ENTITY, "`note`: must be a string")
    );

    // Nothing above changed the event.
    let a = api.get(&format!("/api/v1/events/{id}"), lab).await;
    assert_eq!(a.body["state"], "open");
    assert_eq!(a.body["samples"], json!([]));

    let a = api.get("/api/v1/alerts/kpis?kind=flood", lab).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.error().contains("`flood`"), "{}", a.error());
    let a = api
        .get(
            "/api/v1/alerts/kpis?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            lab,
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn concurrent_acknowledgements_through_the_api_exactly_one_wins() {
    let api = std::sync::Arc::new(Api::postgres().await);
    let id = api.event(EventKind::QualityEvent, recent()).await;
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move {
                let token = if i % 2 == 0 {
                    api.lab.clone()
                } else {
                    api.engineer.clone()
                };
                api.post(
                    &format!("/api/v1/events/{id}/acknowledge"),
                    Some(&token),
                    Value::Null,
                )
                .await
                .status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count(),
        5,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn the_openapi_document_is_served_and_every_route_answers() {
    let api = Api::sqlite().await;
    let a = api.get("/api/v1/openapi.json", Some(&api.viewer)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body["openapi"].as_str().unwrap().starts_with("3."));
    let paths = a.body["paths"].as_object().unwrap();
    for (method, path) in ROUTES {
        assert!(
            paths[*path].get(*method).is_some(),
            "{method} {path} is not documented"
        );
        // The router really has the route: not the fallback's 404 nor a 405.
        let uri = path.replace("{id}", "1");
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let a = api.call(m, &uri, None, "").await;
        assert!(
            a.status != StatusCode::METHOD_NOT_ALLOWED && a.error() != "route not found",
            "{method} {path}: {} {:?}",
            a.status,
            a.body
        );
    }
    let a = api.get("/api/v1/nowhere", Some(&api.viewer)).await;
    assert_eq!(
        (a.status, a.error()),
        (StatusCode::NOT_FOUND, "route not found")
    );
}

#[tokio::test]
async fn daily_kpis_of_the_analytics_job_are_served_by_scope_subject_and_day() {
    use chrono::NaiveDate;
    use waterline_store::{DailyKpi, KpiScope};
    let api = Api::postgres().await;
    let day = |d: &str| NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
    let kpi = |scope, subject: &str, d: &str, metric: &str, value| DailyKpi {
        scope,
        subject: subject.into(),
        day: day(d),
        metric: metric.into(),
        value,
    };
    api.store
        .upsert_kpis(
            &[
                kpi(KpiScope::Dma, "A", "2026-03-01", "nrw_percent", Some(18.0)),
                kpi(KpiScope::Dma, "A", "2026-03-02", "nrw_percent", None),
                kpi(KpiScope::Dma, "B", "2026-03-01", "nrw_percent", Some(9.5)),
                kpi(
                    KpiScope::Zone,
                    "A",
                    "2026-03-01",
                    "compliance_percent",
                    Some(99.0),
                ),
            ],
            DateTime::parse_from_rfc3339("2026-03-03T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        )
        .await
        .unwrap();

    let a = api
        .get(
            "/api/v1/kpis/daily?scope=dma&subject=A&from=2026-03-01&to=2026-03-31",
            Some(&api.viewer),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(
        a.body,
        json!([
            {"scope": "dma", "subject": "A", "day": "2026-03-01", "metric": "nrw_percent", "value": 18.0},
            {"scope": "dma", "subject": "A", "day": "2026-03-02", "metric": "nrw_percent", "value": null},
        ])
    );
    let a = api
        .get(
            "/api/v1/kpis/daily?scope=zone&from=2026-03-01&to=2026-03-01",
            Some(&api.dispatcher),
        )
        .await;
    assert_eq!(a.body.as_array().unwrap().len(), 1, "{:?}", a.body);

    // Bad requests name what is wrong.
    for (uri, words) in [
        ("/api/v1/kpis/daily", "`scope` is required"),
        ("/api/v1/kpis/daily?scope=district", "`district`"),
        ("/api/v1/kpis/daily?scope=dma&from=1.3.2026", "`from`"),
        (
            "/api/v1/kpis/daily?scope=dma&from=2026-03-05&to=2026-03-01",
            "must not be after",
        ),
        (
            "/api/v1/kpis/daily?scope=dma&from=2020-01-01&to=2026-03-01",
            "400 days",
        ),
        (
            "/api/v1/kpis/daily?scope=dma&dma=A",
            "unknown parameter `dma`",
        ),
    ] {
        let a = api.get(uri, Some(&api.viewer)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(a.error().contains(words), "{uri}: {}", a.error());
    }
    let a = api.get("/api/v1/kpis/daily?scope=dma", None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn declared_windows_are_checked_role_bound_listed_and_withdrawn_with_an_audit_trail() {
    let api = Api::sqlite().await;
    let exclusion = json!({
        "kind": "exclusion", "dma": "A",
        "from": "2026-03-02T08:00:00Z", "to": "2026-03-02T12:00:00Z",
        "reason": "source shortage at the plant"
    });
    // The lab declares maintenance, not exclusions; a viewer nothing.
    let a = api
        .post("/api/v1/windows", Some(&api.lab), exclusion.clone())
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{:?}", a.body);
    let a = api
        .post("/api/v1/windows", Some(&api.viewer), exclusion.clone())
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = api
        .post("/api/v1/windows", Some(&api.dispatcher), exclusion.clone())
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    assert_eq!(a.body["kind"], "exclusion");
    assert_eq!(a.body["dma"], "A");
    assert_eq!(a.body["declared_by"], "disp-cy");
    let id = a.body["id"].as_i64().unwrap();

    // Bad bodies name the field.
    for (body, field) in [
        (
            json!({"kind": "exclusion", "station": "S1", "from": "2026-03-02T08:00:00Z", "to": "2026-03-02T09:00:00Z", "reason": "x"}),
            "`station`",
        ),
        (
            json!({"kind": "exclusion", "dma": "A", "sensor": "p1", "from": "2026-03-02T08:00:00Z", "to": "2026-03-02T09:00:00Z", "reason": "x"}),
            "exactly one",
        ),
        (
            json!({"kind": "exclusion", "dma": "A", "from": "2026-03-02T10:00:00Z", "to": "2026-03-02T09:00:00Z", "reason": "x"}),
            "`to`",
        ),
        (
            json!({"kind": "outage", "dma": "A", "from": "2026-03-02T08:00:00Z", "to": "2026-03-02T09:00:00Z", "reason": "x"}),
            "`kind`",
        ),
        (
            json!({"kind": "exclusion", "dma": "A", "from": "2026-03-02T08:00:00Z", "to": "2026-03-02T09:00:00Z"}),
            "`reason`",
        ),
        (
            json!({"kind": "exclusion", "dma": "A", "from": "2026-03-02T08:00:00Z", "to": "2026-03-02T09:00:00Z", "reason": "x", "why": 1}),
            "`why`",
        ),
    ] {
        let a = api.post("/api/v1/windows", Some(&api.engineer), body).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", a.body);
        assert!(a.error().contains(field), "{field}: {}", a.error());
    }

    let maintenance = json!({
        "kind": "maintenance", "station": "S1",
        "from": "2026-03-03T09:00:00Z", "to": "2026-03-03T10:30:00Z",
        "reason": "probe cleaning"
    });
    let a = api
        .post("/api/v1/windows", Some(&api.lab), maintenance)
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);

    let a = api
        .get(
            "/api/v1/windows?from=2026-03-01T00:00:00Z&to=2026-03-05T00:00:00Z",
            Some(&api.viewer),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body.as_array().unwrap().len(), 2);
    let a = api
        .get(
            "/api/v1/windows?from=2026-03-01T00:00:00Z&to=2026-03-05T00:00:00Z&kind=maintenance",
            Some(&api.viewer),
        )
        .await;
    assert_eq!(a.body.as_array().unwrap().len(), 1);
    assert_eq!(a.body[0]["station"], "S1");
    let a = api
        .get("/api/v1/windows?kind=outage", Some(&api.viewer))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);

    // Withdrawing: by a role that may declare it, once.
    let uri = format!("/api/v1/windows/{id}/withdraw");
    let a = api.post(&uri, Some(&api.lab), json!({})).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = api.post(&uri, Some(&api.engineer), json!({})).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.body["withdrawn_by"], "eng-bo");
    let a = api.post(&uri, Some(&api.engineer), json!({})).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{:?}", a.body);
    assert!(a.error().contains("already withdrawn by eng-bo"));
    let a = api
        .post(
            "/api/v1/windows/9999/withdraw",
            Some(&api.engineer),
            json!({}),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = api
        .get(
            "/api/v1/windows?from=2026-03-01T00:00:00Z&to=2026-03-05T00:00:00Z",
            Some(&api.viewer),
        )
        .await;
    assert_eq!(
        a.body.as_array().unwrap().len(),
        1,
        "only the maintenance is left"
    );

    // Every declaration and withdrawal is in the audit log, with who did it.
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(api._db.url())
        .await
        .unwrap();
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT actor, action, target FROM audit_log WHERE action LIKE 'window.%' ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let target = format!("window {id}");
    assert_eq!(
        rows,
        [
            (
                "disp-cy".into(),
                "window.declare".into(),
                Some(target.clone())
            ),
            (
                "lab-anna".into(),
                "window.declare".into(),
                Some(format!("window {}", id + 1))
            ),
            ("eng-bo".into(), "window.withdraw".into(), Some(target)),
        ]
    );
}

#[tokio::test]
async fn monthly_kpis_are_served_by_scope_subject_and_month() {
    use chrono::NaiveDate;
    use waterline_store::{KpiScope, MonthlyKpi};
    let api = Api::sqlite().await;
    let month = |m: &str| NaiveDate::parse_from_str(&format!("{m}-01"), "%Y-%m-%d").unwrap();
    let kpi = |subject: &str, m: &str, metric: &str, value, note: Option<&str>| MonthlyKpi {
        scope: KpiScope::Dma,
        subject: subject.into(),
        month: month(m),
        metric: metric.into(),
        value,
        note: note.map(Into::into),
    };
    api.store
        .upsert_monthly_kpis(
            &[
                kpi("A", "2026-01", "ili", Some(2.4), Some("400 connections")),
                kpi("A", "2026-02", "ili", Some(2.1), None),
                kpi("A", "2026-02", "comprehensive_leakage_percent", None, None),
                kpi("B", "2026-02", "ili", Some(1.3), None),
            ],
            DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        )
        .await
        .unwrap();
    let a = api
        .get(
            "/api/v1/kpis/monthly?scope=dma&subject=A&metric=ili&from=2026-01&to=2026-02",
            Some(&api.viewer),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let rows = a.body.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["month"], "2026-01-01");
    assert_eq!(rows[0]["value"], 2.4);
    assert_eq!(rows[0]["note"], "400 connections");
    let a = api
        .get(
            "/api/v1/kpis/monthly?scope=dma&from=2026-02&to=2026-02",
            Some(&api.viewer),
        )
        .await;
    let rows = a.body.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows.iter().any(|r| r["value"].is_null()),
        "missing stays null"
    );
    for (uri, needle) in [
        ("/api/v1/kpis/monthly?scope=dma&from=2026-13", "`from`"),
        ("/api/v1/kpis/monthly?scope=dma&from=2026-02-01", "`from`"),
        (
            "/api/v1/kpis/monthly?scope=dma&from=2026-03&to=2026-02",
            "must not be after",
        ),
        ("/api/v1/kpis/monthly", "`scope`"),
    ] {
        let a = api.get(uri, Some(&api.viewer)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(a.error().contains(needle), "{uri}: {}", a.error());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn station_samples_are_role_bound_checked_listed_and_audited() {
    let api = Api::sqlite().await;
    let sample = json!({
        "station": "Q1", "parameter": "free chlorine", "value": 0.82, "unit": "mg/L",
        "sampled_at": "2026-03-02T09:05:00Z", "sample_id": "LIMS-2026-0100"
    });
    for token in [&api.viewer, &api.dispatcher] {
        let a = api
            .post("/api/v1/samples", Some(token), sample.clone())
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{:?}", a.body);
    }
    let a = api.post("/api/v1/samples", None, sample.clone()).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = api
        .post("/api/v1/samples", Some(&api.lab), sample.clone())
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    assert_eq!(a.body["station"], "Q1");
    assert_eq!(a.body["event_id"], Value::Null);
    assert_eq!(a.body["parameter"], "free chlorine");
    assert_eq!(a.body["entered_by"], "lab-anna");
    let id = a.body["id"].as_i64().unwrap();

    // Bad bodies name the field; a parameter an analyser measures needs its kind's unit.
    for (body, field) in [
        (
            json!({"parameter": "ph", "value": 7.1, "unit": "pH", "sampled_at": "2026-03-02T09:00:00Z"}),
            "`station`",
        ),
        (
            json!({"station": "Q 1", "parameter": "ph", "value": 7.1, "unit": "pH", "sampled_at": "2026-03-02T09:00:00Z"}),
            "`station`",
        ),
        (
            json!({"station": "Q1", "parameter": "turbidity", "value": 0.3, "unit": "mg/L", "sampled_at": "2026-03-02T09:00:00Z"}),
            "`unit`: `mg/L` is not a unit of turbidity",
        ),
        (
            json!({"station": "Q1", "parameter": "ph", "value": 7.1, "unit": "pH", "sampled_at": "2999-01-01T00:00:00Z"}),
            "`sampled_at`",
        ),
        (
            json!({"station": "Q1", "parameter": "ph", "value": 7.1, "unit": "pH", "sampled_at": "2026-03-02T09:00:00Z", "site": "x"}),
            "`site`",
        ),
    ] {
        let a = api.post("/api/v1/samples", Some(&api.engineer), body).await;
        assert!(
            a.status == StatusCode::UNPROCESSABLE_ENTITY || a.status == StatusCode::BAD_REQUEST,
            "{:?}",
            a.body
        );
        assert!(a.error().contains(field), "{field}: {:?}", a.body);
    }
    // A lab-only analysis takes any unit.
    let a = api
        .post(
            "/api/v1/samples",
            Some(&api.engineer),
            json!({"station": "Q2", "parameter": "e_coli", "value": 0, "unit": "CFU/100mL", "sampled_at": "2026-03-02T10:00:00Z"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);

    // A sample attached to an alert at Q1 is listed with Q1's routine ones.
    let event = api
        .event(
            EventKind::QualityEvent,
            "2026-03-02T08:00:00Z".parse().unwrap(),
        )
        .await;
    let a = api
        .post(
            &format!("/api/v1/events/{event}/samples"),
            Some(&api.lab),
            json!({"parameter": "turbidity", "value": 1.4, "unit": "NTU", "sampled_at": "2026-03-02T08:30:00Z"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let span = "from=2026-03-01T00:00:00Z&to=2026-03-03T00:00:00Z";
    let a = api
        .get(
            &format!("/api/v1/samples?{span}&station=Q1"),
            Some(&api.viewer),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let listed: Vec<(Value, Value)> = a
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["event_id"].clone(), s["parameter"].clone()))
        .collect();
    assert_eq!(
        listed,
        [
            (json!(event), json!("turbidity")),
            (Value::Null, json!("free chlorine"))
        ],
        "by sample time"
    );
    let a = api
        .get(&format!("/api/v1/samples?{span}"), Some(&api.viewer))
        .await;
    assert_eq!(a.body.as_array().unwrap().len(), 3);
    let a = api
        .get("/api/v1/samples?station=Q1&limit=3", Some(&api.viewer))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{:?}", a.body);

    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(api._db.url())
        .await
        .unwrap();
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT actor, action, target FROM audit_log WHERE action = 'sample.record' ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            (
                "lab-anna".into(),
                "sample.record".into(),
                Some("station Q1".into())
            ),
            (
                "eng-bo".into(),
                "sample.record".into(),
                Some("station Q2".into())
            ),
        ]
    );
    assert!(id > 0);
}
