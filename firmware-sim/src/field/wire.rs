//! Payloads as the field devices put them on the wire: native JSON uplinks (CONTRACTS §5),
//! Sparkplug B births and data, ChirpStack v4 uplink events and CJ/T 188 meter frames. Pure
//! functions over `waterline_core`'s encoders; the ids they lead to are the ones ingest derives
//! (see `ingest/src/route.rs`), so the fleet's `network.toml` describes exactly what arrives.

use chrono::{DateTime, SecondsFormat, Utc};
use waterline_core::codec::cjt188::{self, MeterAddress, MeterReading, MeterStatus, ValveState};
use waterline_core::codec::sparkplug::{
    self, BD_SEQ_METRIC, DataType, Metric, MetricValue, Payload, REBIRTH_METRIC,
};
use waterline_core::codec::{NativeReading, NativeUplink, encode_native};
use waterline_core::{DeviceId, SensorId};

/// The Sparkplug metric name of a meter's register.
pub const VOLUME_METRIC: &str = "Volume";
/// The ChirpStack `object` field of a meter's register (m³ by its suffix).
pub const VOLUME_FIELD: &str = "volume_m3";
/// The ChirpStack device profile of the simulated LoRaWAN meters.
pub const CHIRPSTACK_PROFILE: &str = "waterline-sim-meter";
/// CJ/T 188 meter type of a cold-water meter.
pub const CJT188_COLD_WATER: u8 = 0x10;

/// One reading a device sends: sensor id on the wire, value, the time the device stamps.
#[derive(Debug, Clone, PartialEq)]
pub struct WireReading {
    pub sensor: SensorId,
    pub value: f64,
    pub time: DateTime<Utc>,
}

/// A native JSON uplink of `readings`; the message time is the newest reading's.
pub fn native(device: &DeviceId, readings: &[WireReading]) -> Vec<u8> {
    let time = readings.iter().map(|r| r.time).max();
    encode_native(&NativeUplink {
        device: device.clone(),
        time,
        readings: readings
            .iter()
            .map(|r| NativeReading {
                sensor: r.sensor.clone(),
                value: r.value,
                unit: None,
                time: r.time,
            })
            .collect(),
        rejected: Vec::new(),
    })
}

/// The topic of a native uplink.
pub fn native_topic(prefix: &str, device: &DeviceId) -> String {
    format!("{prefix}/{device}/up")
}

/// The topic of a Sparkplug message of `kind` (`NBIRTH`, `DDATA`, …) from `node` (and `device`).
pub fn sparkplug_topic(group: &str, kind: &str, node: &str, device: Option<&str>) -> String {
    match device {
        Some(d) => format!("{}/{group}/{kind}/{node}/{d}", sparkplug::NAMESPACE),
        None => format!("{}/{group}/{kind}/{node}", sparkplug::NAMESPACE),
    }
}

fn millis(t: DateTime<Utc>) -> u64 {
    t.timestamp_millis().max(0) as u64
}

/// An edge node's NBIRTH: `bdSeq` and the rebirth control, `seq` 0.
pub fn sparkplug_node_birth(bd_seq: u64, at: DateTime<Utc>) -> Vec<u8> {
    sparkplug::encode_payload(&Payload {
        timestamp: Some(millis(at)),
        seq: Some(0),
        metrics: vec![
            Metric {
                name: Some(BD_SEQ_METRIC.into()),
                datatype: Some(DataType::Int64.code()),
                value: Some(MetricValue::LongValue(bd_seq)),
                ..Metric::default()
            },
            Metric {
                name: Some(REBIRTH_METRIC.into()),
                datatype: Some(DataType::Boolean.code()),
                value: Some(MetricValue::BooleanValue(false)),
                ..Metric::default()
            },
        ],
        ..Payload::default()
    })
}

/// An edge node's NDEATH (its MQTT will, or sent when it stops).
pub fn sparkplug_node_death(bd_seq: u64) -> Vec<u8> {
    sparkplug::encode_payload(&Payload {
        metrics: vec![Metric {
            name: Some(BD_SEQ_METRIC.into()),
            datatype: Some(DataType::Int64.code()),
            value: Some(MetricValue::LongValue(bd_seq)),
            ..Metric::default()
        }],
        ..Payload::default()
    })
}

/// A meter's DBIRTH: its register metric with name, alias, datatype and current value.
pub fn sparkplug_device_birth(
    seq: u64,
    alias: u64,
    register_m3: f64,
    at: DateTime<Utc>,
) -> Vec<u8> {
    sparkplug::encode_payload(&Payload {
        timestamp: Some(millis(at)),
        seq: Some(seq),
        metrics: vec![Metric {
            name: Some(VOLUME_METRIC.into()),
            alias: Some(alias),
            timestamp: Some(millis(at)),
            datatype: Some(DataType::Double.code()),
            value: Some(MetricValue::DoubleValue(register_m3)),
            ..Metric::default()
        }],
        ..Payload::default()
    })
}

/// A meter's DDATA: register readings by alias, each with its own timestamp.
pub fn sparkplug_device_data(seq: u64, alias: u64, readings: &[(f64, DateTime<Utc>)]) -> Vec<u8> {
    let newest = readings.iter().map(|r| r.1).max();
    sparkplug::encode_payload(&Payload {
        timestamp: newest.map(millis),
        seq: Some(seq),
        metrics: readings
            .iter()
            .map(|&(v, t)| Metric {
                alias: Some(alias),
                timestamp: Some(millis(t)),
                value: Some(MetricValue::DoubleValue(v)),
                ..Metric::default()
            })
            .collect(),
        ..Payload::default()
    })
}

/// Radio figures of a LoRaWAN uplink.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Radio {
    pub rssi_dbm: i32,
    pub snr_db: f64,
}

/// A ChirpStack v4 `up` event of a meter: its register (and battery) in the decoded `object`.
pub fn chirpstack_uplink(
    dev_eui: &str,
    f_cnt: u32,
    register_m3: f64,
    battery_percent: Option<f64>,
    radio: Radio,
    at: DateTime<Utc>,
) -> Vec<u8> {
    let mut object = serde_json::Map::new();
    object.insert(VOLUME_FIELD.into(), serde_json::json!(register_m3));
    if let Some(b) = battery_percent {
        object.insert(
            "battery_pct".into(),
            serde_json::json!((b * 10.0).round() / 10.0),
        );
    }
    let event = serde_json::json!({
        "deduplicationId": format!("{dev_eui}-{f_cnt}"),
        "time": at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "deviceInfo": {
            "applicationName": "waterline-sim",
            "deviceProfileName": CHIRPSTACK_PROFILE,
            "deviceName": format!("meter-{dev_eui}"),
            "devEui": dev_eui,
        },
        "fCnt": f_cnt,
        "fPort": 2,
        "object": object,
        "rxInfo": [{"gatewayId": "0016c001ff10a235", "rssi": radio.rssi_dbm, "snr": radio.snr_db}],
    });
    serde_json::to_vec(&event).expect("serialising plain data cannot fail")
}

/// The topic of a ChirpStack uplink event.
pub fn chirpstack_topic(application: &str, dev_eui: &str) -> String {
    format!("application/{application}/device/{dev_eui}/event/up")
}

/// A CJ/T 188 read response of a cold-water meter (raw bytes, with the `FE FE` preamble that
/// M-Bus gateways relay).
pub fn cjt188_frame(
    address: &MeterAddress,
    seq: u8,
    register_m3: f64,
    battery_low: bool,
) -> Vec<u8> {
    let reading = MeterReading {
        cumulative_m3: register_m3,
        settlement_m3: None,
        meter_time: None,
        status: MeterStatus::new(ValveState::Open, battery_low),
    };
    let mut frame = vec![0xFE, 0xFE];
    frame.extend(cjt188::encode_read_response(
        CJT188_COLD_WATER,
        address,
        seq,
        &reading,
    ));
    frame
}

/// The topic of a CJ/T 188 gateway's uplinks.
pub fn cjt188_topic(prefix: &str, gateway: &str) -> String {
    format!("{prefix}/{gateway}/up")
}

#[cfg(test)]
mod tests {
    use super::*;
    use waterline_core::codec::chirpstack::{ProfileCodecs, decode_uplink};
    use waterline_core::codec::decode_native;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn native_batches_decode_with_every_reading_time() {
        let dev = DeviceId::parse("MTR-n1").unwrap();
        let rs = vec![
            WireReading {
                sensor: SensorId::parse("n1-reg").unwrap(),
                value: 12.345,
                time: at("2026-01-05T01:00:00Z"),
            },
            WireReading {
                sensor: SensorId::parse("n1-reg").unwrap(),
                value: 12.5,
                time: at("2026-01-05T02:00:00Z"),
            },
        ];
        let up = decode_native("MTR-n1", &native(&dev, &rs)).unwrap();
        assert_eq!(up.readings.len(), 2);
        assert_eq!(up.readings[0].time, at("2026-01-05T01:00:00Z"));
        assert_eq!(up.readings[1].value, 12.5);
        assert_eq!(native_topic("waterline", &dev), "waterline/MTR-n1/up");
    }

    #[test]
    fn chirpstack_uplinks_decode_to_the_register_and_battery() {
        let body = chirpstack_uplink(
            "57a7e41100000003",
            9,
            81.25,
            Some(63.44),
            Radio {
                rssi_dbm: -101,
                snr_db: 4.5,
            },
            at("2026-01-05T01:00:00Z"),
        );
        let up = decode_uplink("57a7e41100000003", &body, &ProfileCodecs::new()).unwrap();
        assert_eq!(up.device.as_str(), "lora-57a7e41100000003");
        assert_eq!(up.readings.len(), 1);
        assert_eq!(
            up.readings[0].sensor.as_str(),
            "lora-57a7e41100000003.volume_m3"
        );
        assert_eq!(up.readings[0].value, 81.25);
        assert_eq!(up.health.battery_percent, Some(63.4));
        assert_eq!(up.health.rssi_dbm, Some(-101.0));
    }

    #[test]
    fn cjt188_frames_decode_with_the_battery_bit() {
        let addr = MeterAddress::parse("20260000000007").unwrap();
        let frame = cjt188_frame(&addr, 4, 1234.567, true);
        let f = cjt188::decode_frame(&frame).unwrap();
        assert_eq!(f.address.to_string(), "20260000000007");
        let r = f.reading.unwrap();
        assert_eq!(r.cumulative_m3, 1234.57);
        assert!(r.status.battery_low);
    }

    #[test]
    fn sparkplug_births_and_data_decode() {
        let t = at("2026-01-05T01:00:00Z");
        let b = sparkplug::decode_payload(&sparkplug_device_birth(1, 3, 10.5, t)).unwrap();
        assert_eq!(b.seq, Some(1));
        assert_eq!(b.metrics[0].name.as_deref(), Some(VOLUME_METRIC));
        assert_eq!(b.metrics[0].alias, Some(3));
        let d = sparkplug::decode_payload(&sparkplug_device_data(
            2,
            3,
            &[(10.6, t), (10.7, t + chrono::TimeDelta::hours(1))],
        ))
        .unwrap();
        assert_eq!(d.metrics.len(), 2);
        assert_eq!(d.metrics[1].timestamp, Some(millis(t) + 3_600_000));
        let n = sparkplug::decode_payload(&sparkplug_node_birth(4, t)).unwrap();
        assert_eq!(n.seq, Some(0));
        assert_eq!(n.metrics[0].name.as_deref(), Some(BD_SEQ_METRIC));
        assert_eq!(
            sparkplug_topic("waterline", "DDATA", "AMI-A", Some("n1")),
            "spBv1.0/waterline/DDATA/AMI-A/n1"
        );
    }
}
