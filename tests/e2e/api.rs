//! The HTTP API (CONTRACTS §7) driven through `app(state)` with `oneshot`, on a real store.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::{DateTime, TimeDelta, Utc};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use waterline_core::health::HealthBoard;
use waterline_core::{Reading, Role, SensorId};
use waterline_dashboards::{AppState, app};
use waterline_store::{Batch, DeadLetter, Store};
use waterline_tests::SqliteDb;

use waterline_tests::fixtures as support;

struct Api {
    _db: SqliteDb,
    store: Store,
    health: HealthBoard,
    admin: String,
    viewer: String,
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

impl Api {
    async fn new() -> Api {
        let db = SqliteDb::create().unwrap();
        let store = db.store().await.unwrap();
        store
            .upsert_described_sensors(&support::network())
            .await
            .unwrap();
        let t = at("2026-01-10T00:00:00Z");
        let readings = (0..120)
            .map(|i| {
                Reading::new(
                    SensorId::parse("A-flow").unwrap(),
                    t + TimeDelta::minutes(i),
                    i as f64,
                )
            })
            .collect();
        store
            .commit_batch(&Batch {
                readings,
                dead_letters: vec![DeadLetter {
                    received_at: Utc::now(),
                    source: "mqtt".into(),
                    topic: Some("waterline/x/up".into()),
                    reason: "payload is not valid JSON".into(),
                    payload: b"{oops".to_vec(),
                }],
                ..Batch::default()
            })
            .await
            .unwrap();
        let admin = store.create_token(Role::Admin, "t").await.unwrap();
        let viewer = store.create_token(Role::Viewer, "t").await.unwrap();
        Api {
            _db: db,
            store,
            health: HealthBoard::new(),
            admin,
            viewer,
        }
    }

    async fn get(&self, uri: &str, token: Option<&str>) -> (StatusCode, Value, String) {
        let state = AppState {
            store: self.store.clone(),
            health: self.health.clone(),
            metrics: None,
            setpoints: None,
        };
        let mut req = Request::get(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = app(state)
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        )
    }
}

#[tokio::test]
async fn requests_without_valid_credentials_get_401_and_missing_roles_403() {
    let api = Api::new().await;
    for uri in [
        "/api/v1/sensors",
        "/api/v1/readings?sensor=A-flow",
        "/api/v1/events",
        "/api/v1/dead-letters",
    ] {
        let (s, body, _) = api.get(uri, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(body["error"].as_str().unwrap().contains("bearer token"));
        let (s, _, _) = api.get(uri, Some("wl_forged")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{uri}");
    }
    let (s, body, _) = api.get("/api/v1/dead-letters", Some(&api.viewer)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("admin or engineer")
    );
    let engineer = api.store.create_token(Role::Engineer, "e").await.unwrap();
    let (s, body, _) = api.get("/api/v1/dead-letters", Some(&engineer)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body[0]["payload_base64"], "e29vcHM=");
    assert_eq!(body[0]["reason"], "payload is not valid JSON");
    assert_eq!(body[0]["topic"], "waterline/x/up");
    // /health and /metrics need no credentials.
    assert_eq!(api.get("/health", None).await.0, StatusCode::OK);
    assert_eq!(api.get("/metrics", None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn sensors_list_units_and_last_values() {
    let api = Api::new().await;
    let (s, body, _) = api.get("/api/v1/sensors", Some(&api.viewer)).await;
    assert_eq!(s, StatusCode::OK);
    let a = body
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == "A-flow")
        .unwrap();
    assert_eq!(a["kind"], "flow");
    assert_eq!(
        a["unit"], "m3/h",
        "answers are in canonical units, not the device's L/s"
    );
    assert_eq!(a["dma"], "A");
    assert_eq!(a["last_value"], 119.0);
    assert_eq!(a["last_time"], "2026-01-10T01:59:00Z");
    assert_eq!(body.as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn raw_readings_are_ordered_limited_and_flag_truncation() {
    let api = Api::new().await;
    let q = "/api/v1/readings?sensor=A-flow&from=2026-01-10T00:00:00Z&to=2026-01-10T01:00:00Z";
    let (s, body, _) = api.get(q, Some(&api.admin)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["sensor"], "A-flow");
    assert_eq!(body["unit"], "m3/h");
    let pts = body["points"].as_array().unwrap();
    assert_eq!(pts.len(), 60);
    assert_eq!(pts[0]["time"], "2026-01-10T00:00:00Z");
    assert_eq!(pts[59]["value"], 59.0);
    assert_eq!(body["truncated"], false);

    let (_, body, _) = api.get(&format!("{q}&limit=10"), Some(&api.admin)).await;
    assert_eq!(body["points"].as_array().unwrap().len(), 10);
    assert_eq!(body["truncated"], true);
    let (_, body, _) = api.get(&format!("{q}&limit=60"), Some(&api.admin)).await;
    assert_eq!(body["truncated"], false, "exactly the limit is not a cut");
}

#[tokio::test]
async fn bucketed_readings_carry_min_max_avg_count() {
    let api = Api::new().await;
    let q = "/api/v1/readings?sensor=A-flow&from=2026-01-10T00:00:00Z&to=2026-01-11T00:00:00Z&bucket=1h";
    let (s, body, _) = api.get(q, Some(&api.viewer)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["bucket"], "1h");
    let pts = body["points"].as_array().unwrap();
    assert_eq!(pts.len(), 2);
    assert_eq!(pts[0]["time"], "2026-01-10T00:00:00Z");
    assert_eq!(pts[0]["min"], 0.0);
    assert_eq!(pts[0]["max"], 59.0);
    assert_eq!(pts[0]["avg"], 29.5);
    assert_eq!(pts[0]["count"], 60);
    let (_, body, _) = api.get(&q.replace("1h", "15m"), Some(&api.viewer)).await;
    assert_eq!(body["points"].as_array().unwrap().len(), 8);
    let (_, body, _) = api.get(&q.replace("1h", "1d"), Some(&api.viewer)).await;
    assert_eq!(body["points"][0]["count"], 120);
}

#[tokio::test]
async fn bad_requests_name_the_parameter() {
    let api = Api::new().await;
    let cases = [
        ("/api/v1/readings", "`sensor` is required"),
        ("/api/v1/readings?sensor=A-flow&from=yesterday", "`from`"),
        ("/api/v1/readings?sensor=A-flow&bucket=5m", "`bucket`"),
        ("/api/v1/readings?sensor=A-flow&limit=0", "`limit`"),
        ("/api/v1/readings?sensor=A-flow&limit=99999999", "`limit`"),
        (
            "/api/v1/readings?sensor=A-flow&sensr=x",
            "unknown parameter `sensr`",
        ),
        ("/api/v1/readings?sensor=bad%20id", "`sensor`"),
        (
            "/api/v1/readings?sensor=A-flow&from=2026-01-11T00:00:00Z&to=2026-01-10T00:00:00Z",
            "must be before",
        ),
        ("/api/v1/events?kind=flood", "unknown event kind `flood`"),
    ];
    for (uri, needle) in cases {
        let (s, body, text) = api.get(uri, Some(&api.admin)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}: {text}");
        assert!(
            body["error"].as_str().unwrap().contains(needle),
            "{uri}: {text}"
        );
    }
    let (s, body, _) = api
        .get("/api/v1/readings?sensor=ghost", Some(&api.admin))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("ghost"));
    assert_eq!(
        api.get("/api/v2/nothing", Some(&api.admin)).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn events_carry_their_lifecycle_state() {
    let api = Api::new().await;
    let t = at("2026-01-10T03:00:00Z");
    let mut e = waterline_core::Event::new(
        waterline_core::EventKind::Burst,
        t,
        t + TimeDelta::minutes(20),
    );
    e.dma = Some(waterline_core::DmaId::parse("A").unwrap());
    e.flow_m3h = Some(30.0);
    api.store.insert_event(&e).await.unwrap();
    let (s, body, _) = api
        .get(
            "/api/v1/events?from=2026-01-10T00:00:00Z&to=2026-01-11T00:00:00Z&kind=burst",
            Some(&api.viewer),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body[0]["kind"], "burst");
    assert_eq!(body[0]["dma"], "A");
    assert_eq!(body[0]["flow_m3h"], 30.0);
    assert_eq!(body[0]["start"], "2026-01-10T03:00:00Z");
    assert_eq!(body[0]["detected_at"], "2026-01-10T03:20:00Z");
    assert_eq!(body[0]["state"], "open");
    let (_, body, _) = api
        .get(
            "/api/v1/events?from=2026-01-10T00:00:00Z&to=2026-01-11T00:00:00Z&kind=leak",
            Some(&api.viewer),
        )
        .await;
    assert_eq!(body.as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn health_is_503_when_a_component_is_down() {
    let api = Api::new().await;
    api.health.set("broker", true, "connected");
    let (s, body, _) = api.get("/health", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["components"]["store"]["ok"], true);
    assert_eq!(body["components"]["broker"]["ok"], true);
    api.health
        .set("broker", false, "disconnected: connection refused");
    let (s, body, _) = api.get("/health", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "unavailable");
    assert_eq!(
        body["components"]["broker"]["detail"],
        "disconnected: connection refused"
    );
    api.store.close().await;
    let (s, body, _) = api.get("/health", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["components"]["store"]["ok"], false);
}

#[tokio::test]
async fn devices_show_who_is_unregistered_and_who_is_silent() {
    let api = Api::new().await;
    let now = Utc::now();
    let seen = |id: &str, at: DateTime<Utc>| waterline_store::DeviceSeen {
        device: waterline_core::DeviceId::parse(id).unwrap(),
        protocol: "native-json",
        at,
        status_if_new: waterline_store::DeviceStatus::Active,
        health: None,
    };
    // Reporting since this morning, never registered by anyone.
    // Registered by an engineer, but silent for two days.
    // Registered and reporting.
    api.store
        .commit_batch(&Batch {
            devices: vec![
                seen("MTR-new", now),
                seen("MTR-quiet", now - TimeDelta::days(2)),
                seen("MTR-ok", now),
            ],
            ..Batch::default()
        })
        .await
        .unwrap();
    for id in ["MTR-quiet", "MTR-ok", "MTR-installed-today"] {
        api.store
            .set_device_status(
                &waterline_core::DeviceId::parse(id).unwrap(),
                waterline_store::DeviceStatus::Active,
                "engineer",
            )
            .await
            .unwrap();
    }
    let (s, body, text) = api.get("/api/v1/devices", Some(&api.viewer)).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert_eq!(body.as_array().unwrap().len(), 4);
    let ids = |b: &Value| -> Vec<String> {
        b.as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, body, _) = api
        .get("/api/v1/devices?view=unregistered", Some(&api.viewer))
        .await;
    assert_eq!(ids(&body), vec!["MTR-new"]);
    let (_, body, _) = api
        .get("/api/v1/devices?view=silent", Some(&api.viewer))
        .await;
    assert_eq!(
        ids(&body),
        vec!["MTR-installed-today", "MTR-quiet"],
        "registered but never or not recently heard"
    );
    let (_, body, _) = api
        .get(
            "/api/v1/devices?view=silent&silent_hours=72",
            Some(&api.viewer),
        )
        .await;
    assert_eq!(ids(&body), vec!["MTR-installed-today"]);
    let (s, body, _) = api
        .get("/api/v1/devices?view=lost", Some(&api.viewer))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("`view`"));
    assert_eq!(
        api.get("/api/v1/devices", None).await.0,
        StatusCode::UNAUTHORIZED
    );
}
