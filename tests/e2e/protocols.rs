//! Every field protocol through a real Mosquitto into the store: ChirpStack uplinks, CJ/T 188
//! frames (raw and hex), and a Sparkplug B edge node whose broken sequence makes ingest ask it
//! to rebirth.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use waterline_core::SensorId;
use waterline_core::codec::cjt188::{self, MeterAddress, MeterReading, MeterStatus, ValveState};
use waterline_core::codec::sparkplug::{self, DataType, Metric, MetricValue, Payload};
use waterline_tests::fixtures::publish_all;
use waterline_tests::{Mosquitto, PgDb, eventually};

use crate::ingest::{Running, wait_until_subscribed};

fn sid(s: &str) -> SensorId {
    SensorId::parse(s).unwrap()
}

pub(crate) fn metric(
    name: Option<&str>,
    alias: u64,
    dt: Option<DataType>,
    v: MetricValue,
) -> Metric {
    Metric {
        name: name.map(str::to_owned),
        alias: Some(alias),
        datatype: dt.map(DataType::code),
        value: Some(v),
        ..Metric::default()
    }
}

/// An NBIRTH (`seq` 0, `bdSeq` 1) declaring metric `Outlet/Pressure` with alias 7 at `value`.
pub(crate) fn node_birth(ts_ms: u64, value: f64) -> Vec<u8> {
    spb(
        0,
        ts_ms,
        vec![
            metric(
                Some("bdSeq"),
                0,
                Some(DataType::Int64),
                MetricValue::LongValue(1),
            ),
            metric(
                Some("Outlet/Pressure"),
                7,
                Some(DataType::Double),
                MetricValue::DoubleValue(value),
            ),
        ],
    )
}

pub(crate) fn spb(seq: u64, ts_ms: u64, metrics: Vec<Metric>) -> Vec<u8> {
    sparkplug::encode_payload(&Payload {
        timestamp: Some(ts_ms),
        seq: Some(seq),
        metrics,
        ..Payload::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chirpstack_cjt188_and_sparkplug_devices_are_stored() {
    let broker = Mosquitto::start().unwrap();
    let db = PgDb::create().await.unwrap();
    let store = db.plain_store().await.unwrap();
    // The Sparkplug metric carries no engineering unit: the network description gives it.
    let net = waterline_core::Network::parse(
        "[[sensor]]\nid = \"plant:edge-1:Outlet.Pressure\"\nkind = \"pressure\"\nunit = \"m\"\n",
    )
    .unwrap();
    store.upsert_described_sensors(&net).await.unwrap();
    let ingest = Running::start(&store, &broker, "protocols").await;
    wait_until_subscribed(&store, &broker).await;

    // Someone listening for the rebirth request, as an edge node would.
    let mut opts = MqttOptions::new("edge-node-listener", "127.0.0.1", broker.port);
    opts.set_keep_alive(Duration::from_secs(30));
    let (listener, mut events) = AsyncClient::new(opts, 10);
    listener
        .subscribe("spBv1.0/+/NCMD/+", QoS::AtLeastOnce)
        .await
        .unwrap();
    let ncmd = tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    return Some((p.topic, p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let t = Utc::now() - TimeDelta::hours(1);
    let ts = t.timestamp_millis() as u64;
    let reading = MeterReading {
        cumulative_m3: 321.5,
        settlement_m3: None,
        meter_time: None,
        status: MeterStatus::new(ValveState::Closed, true),
    };
    let frame = cjt188::encode_read_response(
        0x10,
        &MeterAddress::parse("00000000004711").unwrap(),
        3,
        &reading,
    );
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    let chirp = format!(
        r#"{{"time":"{}","deviceInfo":{{"devEui":"a1b2c3d4e5f60708","deviceProfileName":"meter"}},"fCnt":7,"fPort":2,"rxInfo":[{{"gatewayId":"gw1","rssi":-97,"snr":7.5}}],"object":{{"volume_m3":88.25,"pressure_bar":3.1}}}}"#,
        t.to_rfc3339()
    );
    let birth = node_birth(ts, 42.0);
    let data = spb(
        1,
        ts + 60_000,
        vec![metric(None, 7, None, MetricValue::DoubleValue(43.5))],
    );
    let gap = spb(
        5,
        ts + 120_000,
        vec![metric(None, 7, None, MetricValue::DoubleValue(44.0))],
    );
    let msgs = vec![
        ("cjt188/gw-1/up".to_owned(), frame.clone()),
        ("cjt188/gw-2/up".to_owned(), hex.into_bytes()),
        (
            "application/3/device/a1b2c3d4e5f60708/event/up".to_owned(),
            chirp.into_bytes(),
        ),
        ("spBv1.0/plant/NBIRTH/edge-1".to_owned(), birth),
        ("spBv1.0/plant/NDATA/edge-1".to_owned(), data),
        ("spBv1.0/plant/NDATA/edge-1".to_owned(), gap),
    ];
    publish_all(broker.port, &msgs).await.unwrap();

    let sparkplug_sensor = sid("plant:edge-1:Outlet.Pressure");
    let pts = eventually(Duration::from_secs(20), || async {
        let p = store
            .readings(
                &sparkplug_sensor,
                t - TimeDelta::minutes(1),
                t + TimeDelta::minutes(10),
                10,
            )
            .await
            .ok()?;
        (p.len() >= 3).then_some(p)
    })
    .await;
    let Some(pts) = pts else {
        let letters = store
            .dead_letters(t - TimeDelta::days(1), Utc::now() + TimeDelta::days(1), 100)
            .await
            .unwrap();
        let reasons: Vec<_> = letters
            .iter()
            .map(|l| (l.letter.topic.clone(), l.letter.reason.clone()))
            .collect();
        let sensors: Vec<_> = store
            .sensors()
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.id, s.last_value))
            .collect();
        panic!("Sparkplug values not stored; dead letters: {reasons:#?}; sensors: {sensors:?}");
    };
    let values: Vec<f64> = pts.iter().map(|p| p.value).collect();
    assert_eq!(
        values,
        vec![42.0, 43.5, 44.0],
        "alias resolved; the gap's values are still kept"
    );

    let (topic, payload) = tokio::time::timeout(Duration::from_secs(10), ncmd)
        .await
        .expect("a rebirth request within 10 s")
        .unwrap()
        .unwrap();
    assert_eq!(topic, "spBv1.0/plant/NCMD/edge-1");
    let cmd = sparkplug::decode_payload(&payload).unwrap();
    assert_eq!(
        cmd.metrics[0].name.as_deref(),
        Some(sparkplug::REBIRTH_METRIC)
    );

    let sensors = store.sensors().await.unwrap();
    let value = |id: &str| {
        sensors
            .iter()
            .find(|s| s.id == id)
            .and_then(|s| s.last_value)
            .unwrap_or_else(|| {
                panic!(
                    "{id} stored: {:?}",
                    sensors.iter().map(|s| &s.id).collect::<Vec<_>>()
                )
            })
    };
    assert!((value("cjt188-00000000004711") - 321.5).abs() < 1e-9);
    assert!((value("lora-a1b2c3d4e5f60708.volume_m3") - 88.25).abs() < 1e-9);
    assert!(
        (value("lora-a1b2c3d4e5f60708.pressure_bar") - 31.6112).abs() < 1e-3,
        "3.1 bar in m"
    );
    let devices = store.devices().await.unwrap();
    for (id, protocol) in [
        ("cjt188-00000000004711", "cjt188"),
        ("lora-a1b2c3d4e5f60708", "chirpstack"),
        ("plant:edge-1", "sparkplug"),
    ] {
        let d = devices
            .iter()
            .find(|d| d.id == id)
            .unwrap_or_else(|| panic!("device {id} registered"));
        assert_eq!(d.protocol.as_deref(), Some(protocol));
    }
    // The LoRaWAN radio state is kept as device health.
    let lora = devices
        .iter()
        .find(|d| d.id == "lora-a1b2c3d4e5f60708")
        .unwrap();
    assert_eq!(lora.rssi_dbm, Some(-97.0));
    assert_eq!(lora.snr_db, Some(7.5));
    assert!(lora.health_at.is_some());
    // The meter's status word: valve and battery.
    let meter = devices
        .iter()
        .find(|d| d.id == "cjt188-00000000004711")
        .unwrap();
    assert_eq!(meter.valve.as_deref(), Some("closed"));
    assert_eq!(meter.battery_low, Some(true));
    assert!(meter.meter_status_at.is_some());
    // The edge node is online since its birth certificate; its death takes it offline.
    let edge = devices.iter().find(|d| d.id == "plant:edge-1").unwrap();
    assert_eq!(edge.online, Some(true), "{edge:?}");
    let death = sparkplug::encode_payload(&sparkplug::Payload {
        timestamp: Some(ts + 180_000),
        metrics: vec![metric(
            Some("bdSeq"),
            0,
            Some(DataType::Int64),
            MetricValue::LongValue(1),
        )],
        ..Default::default()
    });
    publish_all(
        broker.port,
        &[("spBv1.0/plant/NDEATH/edge-1".to_owned(), death)],
    )
    .await
    .unwrap();
    let offline = eventually(Duration::from_secs(20), || async {
        let d = store.devices().await.ok()?;
        let edge = d.into_iter().find(|d| d.id == "plant:edge-1")?;
        (edge.online == Some(false)).then_some(edge)
    })
    .await
    .expect("the NDEATH takes the edge node offline");
    assert!(offline.online_at >= edge.online_at);
    ingest.stop().await;
    store.close().await;
}
