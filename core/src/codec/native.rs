//! The native JSON uplink (CONTRACTS §5).
//!
//! Topic `<prefix>/<device id>/up`; payload
//! `{"device": ID, "time": RFC3339, "readings": [{"sensor", "value", "unit"?, "time"?}, …]}`.
//! A reading's `time` overrides the message's. Envelope errors reject the whole message; a bad
//! reading is rejected on its own (with its index) while the rest of the message is kept.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{DeviceId, SensorId};
use crate::units::Unit;

/// A decoded native uplink.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeUplink {
    pub device: DeviceId,
    /// The message's time, when it has one.
    pub time: Option<DateTime<Utc>>,
    pub readings: Vec<NativeReading>,
    /// Readings that could not be taken, with why.
    pub rejected: Vec<RejectedReading>,
}

/// One reading as the device sent it (its unit not yet converted).
#[derive(Debug, Clone, PartialEq)]
pub struct NativeReading {
    pub sensor: SensorId,
    pub value: f64,
    pub unit: Option<Unit>,
    pub time: DateTime<Utc>,
}

/// A reading that was rejected, by its position in `readings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedReading {
    pub index: usize,
    pub reason: String,
}

/// Why a native payload was rejected as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is not UTF-8 (invalid byte at offset {0})")]
    NotUtf8(usize),
    #[error("payload is not valid JSON: {0}")]
    Json(String),
    #[error("payload is not a JSON object")]
    NotObject,
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("field `{field}`: {reason}")]
    BadField { field: &'static str, reason: String },
    #[error("payload names device `{payload}` but was published on the topic of device `{topic}`")]
    DeviceMismatch { topic: String, payload: String },
}

/// The device id in `topic` when it has the form `<prefix>/<device>/up`.
pub fn device_from_topic<'a>(prefix: &str, topic: &'a str) -> Option<&'a str> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix('/')?;
    let device = rest.strip_suffix("/up")?;
    (!device.is_empty() && !device.contains('/')).then_some(device)
}

fn parse_time(v: &Value) -> Result<DateTime<Utc>, String> {
    let s = v
        .as_str()
        .ok_or_else(|| format!("expected an RFC 3339 string, found {v}"))?;
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{s}` is not an RFC 3339 time with offset ({e})"))
}

/// Decodes a native uplink published on the topic of `topic_device`.
pub fn decode_native(topic_device: &str, payload: &[u8]) -> Result<NativeUplink, DecodeError> {
    let text = std::str::from_utf8(payload).map_err(|e| DecodeError::NotUtf8(e.valid_up_to()))?;
    let value: Value = serde_json::from_str(text).map_err(|e| DecodeError::Json(e.to_string()))?;
    let obj = value.as_object().ok_or(DecodeError::NotObject)?;

    let device_str = obj
        .get("device")
        .ok_or(DecodeError::Missing("device"))?
        .as_str()
        .ok_or_else(|| DecodeError::BadField {
            field: "device",
            reason: "expected a string".into(),
        })?;
    if device_str != topic_device {
        return Err(DecodeError::DeviceMismatch {
            topic: topic_device.to_owned(),
            payload: device_str.to_owned(),
        });
    }
    let device = DeviceId::parse(device_str).map_err(|e| DecodeError::BadField {
        field: "device",
        reason: e.to_string(),
    })?;
    let time = obj
        .get("time")
        .map(|t| {
            parse_time(t).map_err(|reason| DecodeError::BadField {
                field: "time",
                reason,
            })
        })
        .transpose()?;
    let list = obj
        .get("readings")
        .ok_or(DecodeError::Missing("readings"))?
        .as_array()
        .ok_or_else(|| DecodeError::BadField {
            field: "readings",
            reason: "expected an array".into(),
        })?;

    let mut readings = Vec::with_capacity(list.len());
    let mut rejected = Vec::new();
    for (index, r) in list.iter().enumerate() {
        match decode_reading(r, time) {
            Ok(r) => readings.push(r),
            Err(reason) => rejected.push(RejectedReading { index, reason }),
        }
    }
    Ok(NativeUplink {
        device,
        time,
        readings,
        rejected,
    })
}

fn decode_reading(r: &Value, message_time: Option<DateTime<Utc>>) -> Result<NativeReading, String> {
    let obj = r.as_object().ok_or("expected an object")?;
    let sensor = obj
        .get("sensor")
        .ok_or("missing `sensor`")?
        .as_str()
        .ok_or("`sensor` must be a string")?;
    let sensor = SensorId::parse(sensor).map_err(|e| e.to_string())?;
    let value = obj
        .get("value")
        .ok_or_else(|| format!("sensor `{sensor}`: missing `value`"))?;
    let value = value
        .as_f64()
        .ok_or_else(|| format!("sensor `{sensor}`: `value` must be a number, found {value}"))?;
    let unit = obj
        .get("unit")
        .map(|u| {
            u.as_str()
                .ok_or_else(|| format!("sensor `{sensor}`: `unit` must be a string"))?
                .parse::<Unit>()
                .map_err(|e| format!("sensor `{sensor}`: {e}"))
        })
        .transpose()?;
    let time = match obj.get("time") {
        Some(t) => parse_time(t).map_err(|e| format!("sensor `{sensor}`: `time` {e}"))?,
        None => message_time.ok_or_else(|| {
            format!("sensor `{sensor}`: no `time` on the reading nor on the message")
        })?,
    };
    Ok(NativeReading {
        sensor,
        value,
        unit,
        time,
    })
}

#[derive(Serialize, Deserialize)]
struct WireUplink<'a> {
    device: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    readings: Vec<WireReading<'a>>,
}

#[derive(Serialize, Deserialize)]
struct WireReading<'a> {
    sensor: &'a str,
    value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<String>,
}

/// Encodes an uplink; a reading's time is written only where it differs from the message's.
pub fn encode_native(uplink: &NativeUplink) -> Vec<u8> {
    let fmt = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let wire = WireUplink {
        device: uplink.device.as_str(),
        time: uplink.time.as_ref().map(fmt),
        readings: uplink
            .readings
            .iter()
            .map(|r| WireReading {
                sensor: r.sensor.as_str(),
                value: r.value,
                unit: r.unit.map(Unit::as_str),
                time: (Some(r.time) != uplink.time).then(|| fmt(&r.time)),
            })
            .collect(),
    };
    serde_json::to_vec(&wire).expect("serialising plain data cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTRACT_EXAMPLE: &[u8] = br#"{"device": "RTU-A-01", "time": "2026-11-27T02:00:00Z",
 "readings": [{"sensor": "A-inlet-flow", "value": 41.7},
              {"sensor": "A-inlet-p", "value": 52.3, "unit": "m", "time": "2026-11-27T01:59:30Z"}]}"#;

    #[test]
    fn decodes_the_contract_example() {
        let up = decode_native("RTU-A-01", CONTRACT_EXAMPLE).unwrap();
        assert_eq!(up.device.as_str(), "RTU-A-01");
        assert!(up.rejected.is_empty());
        assert_eq!(up.readings.len(), 2);
        assert_eq!(up.readings[0].sensor.as_str(), "A-inlet-flow");
        assert_eq!(
            up.readings[0].time.to_rfc3339(),
            "2026-11-27T02:00:00+00:00"
        );
        assert_eq!(up.readings[0].unit, None);
        assert_eq!(up.readings[1].unit, Some(Unit::Metre));
        assert_eq!(
            up.readings[1].time.to_rfc3339(),
            "2026-11-27T01:59:30+00:00"
        );
    }

    #[test]
    fn offsets_are_normalised_to_utc() {
        let up = decode_native(
            "d",
            br#"{"device":"d","readings":[{"sensor":"s","value":1,"time":"2026-11-27T10:00:00+08:00"}]}"#,
        )
        .unwrap();
        assert_eq!(
            up.readings[0].time.to_rfc3339(),
            "2026-11-27T02:00:00+00:00"
        );
    }

    #[test]
    fn envelope_errors_reject_the_message() {
        assert_eq!(
            decode_native("d", b"\xff\xfe"),
            Err(DecodeError::NotUtf8(0))
        );
        assert!(matches!(
            decode_native("d", b"{not json"),
            Err(DecodeError::Json(_))
        ));
        assert_eq!(decode_native("d", b"[1,2]"), Err(DecodeError::NotObject));
        assert_eq!(
            decode_native("d", br#"{"readings":[]}"#),
            Err(DecodeError::Missing("device"))
        );
        assert_eq!(
            decode_native("d", br#"{"device":"e","readings":[]}"#),
            Err(DecodeError::DeviceMismatch {
                topic: "d".into(),
                payload: "e".into()
            })
        );
        assert!(matches!(
            decode_native("d", br#"{"device":"d","time":"yesterday","readings":[]}"#),
            Err(DecodeError::BadField { field: "time", .. })
        ));
        assert!(matches!(
            decode_native("d", br#"{"device":"d","readings":{}}"#),
            Err(DecodeError::BadField {
                field: "readings",
                ..
            })
        ));
    }

    #[test]
    fn bad_readings_are_rejected_one_by_one() {
        let up = decode_native(
            "d",
            br#"{"device":"d","time":"2026-11-27T02:00:00Z","readings":[
                {"sensor":"ok","value":1.5},
                {"sensor":"s2","value":"high"},
                {"sensor":"s3","value":1,"unit":"furlong"},
                {"value":1},
                {"sensor":"s5","value":null},
                {"sensor":"ok2","value":2,"unit":"bar"}]}"#,
        )
        .unwrap();
        assert_eq!(up.readings.len(), 2);
        let idx: Vec<_> = up.rejected.iter().map(|r| r.index).collect();
        assert_eq!(idx, vec![1, 2, 3, 4]);
        assert!(up.rejected[1].reason.contains("furlong"));
    }

    #[test]
    fn reading_without_any_time_is_rejected() {
        let up = decode_native(
            "d",
            br#"{"device":"d","readings":[{"sensor":"s","value":1}]}"#,
        )
        .unwrap();
        assert!(up.readings.is_empty());
        assert!(up.rejected[0].reason.contains("no `time`"));
    }

    #[test]
    fn topic_parsing() {
        assert_eq!(
            device_from_topic("waterline", "waterline/RTU-1/up"),
            Some("RTU-1")
        );
        assert_eq!(device_from_topic("a/b", "a/b/x/up"), Some("x"));
        assert_eq!(device_from_topic("waterline", "waterline/a/b/up"), None);
        assert_eq!(device_from_topic("waterline", "waterline//up"), None);
        assert_eq!(device_from_topic("waterline", "other/RTU-1/up"), None);
        assert_eq!(device_from_topic("waterline", "waterline/RTU-1/down"), None);
    }

    #[test]
    fn encode_then_decode_is_identity() {
        let up = decode_native("RTU-A-01", CONTRACT_EXAMPLE).unwrap();
        let bytes = encode_native(&up);
        assert_eq!(decode_native("RTU-A-01", &bytes).unwrap(), up);
    }
}
