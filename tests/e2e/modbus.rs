//! Modbus end to end: a real Modbus TCP device polled by ingest into the store, with word
//! orders and scaling, a device exception that does not stop the other reads, a device
//! restart, and set-point and coil writes with range check and read-back; the same through a
//! serial-to-TCP gateway (RTU frames over TCP).

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use tokio::sync::watch;
use waterline_core::health::HealthBoard;
use waterline_core::modbus::MapTemplate;
use waterline_core::{DeviceId, SensorId};
use waterline_ingest::modbus_poll::{ModbusDevice, ModbusError, Transport, write_point};
use waterline_ingest::{IngestConfig, MqttConfig};
use waterline_store::Store;
use waterline_tests::{ModbusServer, Mosquitto, SqliteDb, eventually};

/// The shipped DMA-inlet RTU map plus one point in the device's exception range.
fn map_text() -> String {
    let shipped = include_str!("../../examples/modbus/dma-inlet-rtu.toml");
    format!(
        "{shipped}\n[[point]]\nsensor = \"{{device}}-missing\"\ntable = \"holding\"\naddress = 200\ntype = \"u16\"\nunit = \"m\"\n[[point]]\nsensor = \"{{device}}-pump-run\"\ntable = \"coil\"\naddress = 3\ntype = \"bool\"\nunit = \"%\"\nscale = 100\nwritable = {{ min = 0, max = 100 }}\n"
    )
}

async fn last(store: &Store, sensor: &str) -> Option<f64> {
    store
        .sensor(&SensorId::parse(sensor).unwrap())
        .await
        .ok()
        .flatten()
        .and_then(|s| s.last_value)
}

async fn wait_value(store: &Store, sensor: &str, want: f64, tol: f64) -> Option<f64> {
    eventually(Duration::from_secs(20), || async {
        let v = last(store, sensor).await?;
        ((v - want).abs() <= tol).then_some(v)
    })
    .await
}

/// Ingest (MQTT on `broker`, no spool) polling `dev` with `map` into `store`; send true to stop.
async fn poll_into(
    store: &Store,
    broker: &Mosquitto,
    dev: &ModbusDevice,
    map: &waterline_core::modbus::RegisterMap,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let mqtt = MqttConfig {
        broker: broker.url(),
        client_id: format!("modbus-test-{}", dev.id),
        ..MqttConfig::default()
    };
    let cfg = IngestConfig {
        spool_dir: None,
        ..IngestConfig::default()
    };
    let (stop, rx) = watch::channel(false);
    let task = waterline_ingest::run(
        store.clone(),
        mqtt,
        cfg,
        vec![(dev.clone(), map.clone())],
        HealthBoard::new(),
        rx,
        None,
    )
    .await
    .unwrap();
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polled_rtu_is_stored_survives_exceptions_and_restarts_and_takes_verified_writes() {
    let mut device = ModbusServer::start().await.unwrap();
    // 12.5 L/s as f32 CDAB (0x41480000 → [0x0000, 0x4148]); 123 456 L; 4.50 bar; 35.2 m;
    // set point 35.0 m.
    device.set(0, &[0x0000, 0x4148]);
    device.set(2, &[0x0001, 0xE240]);
    device.set(4, &[450, 352]);
    device.set(10, &[350]);

    let broker = Mosquitto::start().unwrap();
    let db = SqliteDb::create().unwrap();
    let store = db.store().await.unwrap();
    let id = DeviceId::parse("RTU-T").unwrap();
    let map = MapTemplate::parse_toml("dma-inlet-rtu", &map_text())
        .unwrap()
        .instantiate(&id)
        .unwrap();
    let dev = ModbusDevice {
        id: "RTU-T".into(),
        address: device.addr.to_string(),
        transport: Transport::Tcp,
        unit_id: 1,
        model: "dma-inlet-rtu".into(),
        poll_interval_ms: 200,
        timeout_ms: 1_000,
    };
    let (stop, task) = poll_into(&store, &broker, &dev, &map).await;

    // Converted to canonical units on the way in.
    assert!(
        wait_value(&store, "RTU-T-inlet-flow", 45.0, 1e-6)
            .await
            .is_some(),
        "12.5 L/s = 45 m3/h"
    );
    assert!(
        wait_value(&store, "RTU-T-inlet-total", 123.456, 1e-9)
            .await
            .is_some(),
        "123456 L"
    );
    assert!(
        wait_value(&store, "RTU-T-prv-inlet-p", 45.887, 1e-3)
            .await
            .is_some(),
        "4.5 bar in m"
    );
    assert!(
        wait_value(&store, "RTU-T-prv-outlet-p", 35.2, 1e-9)
            .await
            .is_some()
    );
    // The point in the exception range never arrives, and did not stop the others.
    assert!(last(&store, "RTU-T-missing").await.is_none());
    let devices = store.devices().await.unwrap();
    assert_eq!(
        devices
            .iter()
            .find(|d| d.id == "RTU-T")
            .unwrap()
            .protocol
            .as_deref(),
        Some("modbus")
    );

    // The device restarts (connections drop); the poller reconnects and sees new values.
    device.restart().await.unwrap();
    device.set(0, &[0x0000, 0x4170]); // 15.0 L/s
    assert!(
        wait_value(&store, "RTU-T-inlet-flow", 54.0, 1e-6)
            .await
            .is_some(),
        "reconnected after the restart"
    );

    // Set-point writes: in range, verified by read-back; out of range, refused before sending.
    let setpoint = SensorId::parse("RTU-T-prv-setpoint").unwrap();
    let back = write_point(&dev, &map, &setpoint, 40.0).await.unwrap();
    assert!((back - 40.0).abs() < 1e-9);
    assert_eq!(device.get(10), 400);
    let err = write_point(&dev, &map, &setpoint, 75.0).await.unwrap_err();
    assert!(matches!(err, ModbusError::Encode(_)), "{err}");
    assert!(err.to_string().contains("75"), "{err}");
    assert_eq!(device.get(10), 400, "nothing written");
    // A coil (a pump's run command, 0 or 100 %): written, read back, polled like the rest.
    let pump = SensorId::parse("RTU-T-pump-run").unwrap();
    assert!(!device.coil(3));
    let back = write_point(&dev, &map, &pump, 100.0).await.unwrap();
    assert_eq!(back, 100.0);
    assert!(device.coil(3));
    assert!(
        wait_value(&store, "RTU-T-pump-run", 100.0, 1e-9)
            .await
            .is_some(),
        "the written coil is polled back"
    );
    let err = write_point(&dev, &map, &pump, 150.0).await.unwrap_err();
    assert!(matches!(err, ModbusError::Encode(_)), "out of range: {err}");
    assert!(device.coil(3), "nothing written");
    let read_only = SensorId::parse("RTU-T-inlet-flow").unwrap();
    assert!(
        write_point(&dev, &map, &read_only, 1.0).await.is_err(),
        "not a writable point"
    );

    let since = Utc::now() - TimeDelta::minutes(5);
    assert!(
        store
            .dead_letters(since, Utc::now() + TimeDelta::seconds(1), 10)
            .await
            .unwrap()
            .is_empty(),
        "no polled value was rejected"
    );
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_behind_an_rtu_over_tcp_gateway_is_polled_and_written() {
    let device = ModbusServer::start_rtu_over_tcp().await.unwrap();
    device.set(0, &[0x0000, 0x4148]); // 12.5 L/s, f32 CDAB
    device.set(4, &[450, 352]);
    device.set(10, &[350]);
    let broker = Mosquitto::start().unwrap();
    let db = SqliteDb::create().unwrap();
    let store = db.store().await.unwrap();
    let id = DeviceId::parse("RTU-G").unwrap();
    let map = MapTemplate::parse_toml(
        "dma-inlet-rtu",
        include_str!("../../examples/modbus/dma-inlet-rtu.toml"),
    )
    .unwrap()
    .instantiate(&id)
    .unwrap();
    let dev = ModbusDevice {
        id: "RTU-G".into(),
        address: device.addr.to_string(),
        transport: Transport::RtuOverTcp,
        unit_id: 7,
        model: "dma-inlet-rtu".into(),
        poll_interval_ms: 200,
        timeout_ms: 1_000,
    };
    let (stop, task) = poll_into(&store, &broker, &dev, &map).await;
    assert!(
        wait_value(&store, "RTU-G-inlet-flow", 45.0, 1e-6)
            .await
            .is_some(),
        "12.5 L/s = 45 m3/h through RTU framing"
    );
    assert!(
        wait_value(&store, "RTU-G-prv-outlet-p", 35.2, 1e-9)
            .await
            .is_some()
    );
    let setpoint = SensorId::parse("RTU-G-prv-setpoint").unwrap();
    let back = write_point(&dev, &map, &setpoint, 42.5).await.unwrap();
    assert!((back - 42.5).abs() < 1e-9);
    assert_eq!(device.get(10), 425);
    // A plain Modbus TCP client cannot talk to the gateway: the transport matters.
    let tcp = ModbusDevice {
        transport: Transport::Tcp,
        timeout_ms: 500,
        ..dev.clone()
    };
    assert!(write_point(&tcp, &map, &setpoint, 30.0).await.is_err());
    assert_eq!(
        device.get(10),
        425,
        "nothing written over the wrong framing"
    );
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}
