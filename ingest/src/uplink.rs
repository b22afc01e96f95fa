//! Turns one received message into what the batch writes: converted readings, sensors to
//! register, a dead letter for what was rejected, or the whole payload held back for a device
//! awaiting approval. Pure apart from reading the registry.

use chrono::{DateTime, Duration, Utc};
use waterline_core::codec::{NativeReading, decode_native, device_from_topic};
use waterline_core::{DeviceId, Quantity, Reading, SensorId};
use waterline_store::{
    Batch, DeadLetter, DeviceSeen, DeviceState, DeviceStatus, NewSensor, PendingUplink,
};

use crate::config::IngestConfig;
use crate::registry::Registry;

/// Where a message came from.
pub const SOURCE_MQTT: &str = "mqtt";

/// What one message contributes to a batch.
#[derive(Debug, Default, PartialEq)]
pub struct Processed {
    pub readings: Vec<Reading>,
    pub new_sensors: Vec<NewSensor>,
    pub dead_letter: Option<DeadLetter>,
    pub pending: Option<PendingUplink>,
    pub device: Option<DeviceSeen>,
    /// Short reason label for metrics when something was rejected.
    pub reject_label: Option<&'static str>,
    /// A Sparkplug rebirth request to publish (topic, payload).
    pub rebirth: Option<(String, Vec<u8>)>,
    /// What the device said about itself (online/offline, meter status).
    pub states: Vec<DeviceState>,
}

impl Processed {
    /// Adds this message's contribution to `batch`.
    pub fn add_to(&self, batch: &mut Batch) {
        batch.readings.extend(self.readings.iter().cloned());
        batch.dead_letters.extend(self.dead_letter.iter().cloned());
        batch.pending.extend(self.pending.iter().cloned());
        batch.devices.extend(self.device.iter().cloned());
        batch.states.extend(self.states.iter().cloned());
    }
}

/// The input path a topic came in on: polled Modbus values use internal topics.
pub(crate) fn source_of(topic: &str) -> &'static str {
    if topic.starts_with("modbus/") {
        "modbus"
    } else {
        SOURCE_MQTT
    }
}

/// Longest dead-letter reason kept.
const MAX_REASON: usize = 2_000;

fn letter(topic: &str, payload: &[u8], at: DateTime<Utc>, reason: String) -> DeadLetter {
    let mut reason = reason;
    if reason.len() > MAX_REASON {
        let mut cut = MAX_REASON;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
        reason.push('…');
    }
    DeadLetter {
        received_at: at,
        source: source_of(topic).into(),
        topic: Some(topic.to_owned()),
        reason,
        payload: payload.to_vec(),
    }
}

fn rejected(
    topic: &str,
    payload: &[u8],
    at: DateTime<Utc>,
    label: &'static str,
    reason: String,
) -> Processed {
    Processed {
        dead_letter: Some(letter(topic, payload, at, reason)),
        reject_label: Some(label),
        ..Processed::default()
    }
}

/// Checks the device against the registry. `Ok` carries the sighting to record for an
/// active device; `Err` is the finished result for a pending (held back) or retired one.
#[allow(clippy::result_large_err)]
pub fn admit(
    device: &DeviceId,
    protocol: &'static str,
    topic: &str,
    payload: &[u8],
    registry: &Registry,
    cfg: &IngestConfig,
    now: DateTime<Utc>,
) -> Result<DeviceSeen, Processed> {
    let status_if_new = if cfg.require_device_approval {
        DeviceStatus::Pending
    } else {
        DeviceStatus::Active
    };
    let seen = DeviceSeen {
        device: device.clone(),
        protocol,
        at: now,
        status_if_new,
        health: None,
    };
    match registry.device(device).unwrap_or(status_if_new) {
        DeviceStatus::Active => Ok(seen),
        DeviceStatus::Pending => Err(Processed {
            pending: Some(PendingUplink {
                device: device.clone(),
                received_at: now,
                source: source_of(topic).into(),
                topic: Some(topic.to_owned()),
                payload: payload.to_vec(),
            }),
            device: Some(seen),
            ..Processed::default()
        }),
        DeviceStatus::Retired => {
            let mut p = rejected(
                topic,
                payload,
                now,
                "device_retired",
                format!("device `{device}` is retired"),
            );
            p.device = Some(seen);
            Err(p)
        }
    }
}

/// Rejects a payload larger than the configured limit.
pub fn check_size(
    topic: &str,
    payload: &[u8],
    cfg: &IngestConfig,
    now: DateTime<Utc>,
) -> Option<Processed> {
    (payload.len() > cfg.max_payload_bytes).then(|| {
        rejected(
            topic,
            payload,
            now,
            "too_large",
            format!(
                "payload of {} bytes exceeds ingest.max_payload_bytes = {}",
                payload.len(),
                cfg.max_payload_bytes
            ),
        )
    })
}

/// A whole message rejected by its codec, still recording that the device was seen.
pub fn decode_failed(
    topic: &str,
    payload: &[u8],
    now: DateTime<Utc>,
    seen: Option<DeviceSeen>,
    reason: String,
) -> Processed {
    let mut p = rejected(topic, payload, now, "decode", reason);
    p.device = seen;
    p
}

/// Processes a native uplink received on `topic` at `now`.
pub fn process_native(
    topic: &str,
    payload: &[u8],
    prefix: &str,
    registry: &Registry,
    cfg: &IngestConfig,
    now: DateTime<Utc>,
) -> Processed {
    if let Some(p) = check_size(topic, payload, cfg, now) {
        return p;
    }
    let Some(device_str) = device_from_topic(prefix, topic) else {
        return rejected(
            topic,
            payload,
            now,
            "bad_topic",
            format!("topic `{topic}` is not of the form {prefix}/<device>/up"),
        );
    };
    let device = match DeviceId::parse(device_str) {
        Ok(d) => d,
        Err(e) => {
            return rejected(
                topic,
                payload,
                now,
                "bad_topic",
                format!("topic `{topic}`: {e}"),
            );
        }
    };
    // Checked before decoding: a pending device's payload is kept aside as it came.
    let protocol = if prefix == crate::modbus_poll::MODBUS_TOPIC_PREFIX {
        "modbus"
    } else {
        "native-json"
    };
    let seen = match admit(&device, protocol, topic, payload, registry, cfg, now) {
        Ok(seen) => seen,
        Err(p) => return p,
    };
    match decode_native(device_str, payload) {
        Ok(uplink) => {
            let problems = uplink
                .rejected
                .iter()
                .map(|r| format!("reading {}: {}", r.index, r.reason))
                .collect();
            finish(
                topic,
                payload,
                now,
                seen,
                uplink.readings,
                problems,
                registry,
                cfg,
            )
        }
        Err(e) => decode_failed(topic, payload, now, Some(seen), e.to_string()),
    }
}

/// Validates and converts decoded readings to canonical units, registers sensors seen for the
/// first time (when the reading names its unit), and dead-letters the raw payload with every
/// reason when anything was rejected.
#[allow(clippy::too_many_arguments)]
pub fn finish(
    topic: &str,
    payload: &[u8],
    now: DateTime<Utc>,
    seen: DeviceSeen,
    readings: Vec<NativeReading>,
    mut problems: Vec<String>,
    registry: &Registry,
    cfg: &IngestConfig,
) -> Processed {
    let device = seen.device.clone();
    let mut out = Processed {
        device: Some(seen),
        ..Processed::default()
    };
    let earliest = now - Duration::days(cfg.max_age_days);
    let latest = now + Duration::seconds(cfg.max_future_secs);
    let mut pending_new: Vec<SensorId> = Vec::new();

    for r in readings {
        if r.time > latest {
            problems.push(format!(
                "sensor `{}`: time {} is more than {} s in the future",
                r.sensor,
                r.time.to_rfc3339(),
                cfg.max_future_secs
            ));
            continue;
        }
        if r.time < earliest {
            problems.push(format!(
                "sensor `{}`: time {} is older than {} days",
                r.sensor,
                r.time.to_rfc3339(),
                cfg.max_age_days
            ));
            continue;
        }
        let info = registry.sensor(&r.sensor);
        let unit = r.unit.or(info.and_then(|i| i.unit));
        let Some(unit) = unit else {
            problems.push(format!(
                "sensor `{}` is not registered and the reading gives no unit",
                r.sensor
            ));
            continue;
        };
        let converted = match (info.and_then(|i| i.kind), info.and_then(|i| i.unit)) {
            (Some(kind), _) => Quantity::new(r.value, unit)
                .canonical_for(kind)
                .map_err(|e| format!("sensor `{}` ({kind}): {e}", r.sensor)),
            // Registered on first contact: later readings must measure the same dimension.
            (None, Some(first)) if first.dimension() != unit.dimension() => Err(format!(
                "sensor `{}` was first registered in {first}; {unit} measures something else",
                r.sensor
            )),
            (None, _) => unit
                .convert(r.value, unit.canonical())
                .map_err(|e| format!("sensor `{}`: {e}", r.sensor)),
        };
        let value = match converted {
            Ok(v) => v,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        let (lo, hi) = match info.and_then(|i| i.kind) {
            Some(kind) => kind.plausible_range(),
            None => unit.plausible_range(),
        };
        if !(lo..=hi).contains(&value) {
            // Kept out of the readings (and so of rollups and detectors), and kept in the
            // dead letter with the reason: flagged, never silently dropped.
            metrics::counter!("waterline_ingest_impossible_values_total").increment(1);
            problems.push(format!(
                "sensor `{}`: {value} {} is physically impossible (outside {lo} … {hi})",
                r.sensor,
                unit.canonical()
            ));
            continue;
        }
        if info.is_none() && !pending_new.contains(&r.sensor) {
            pending_new.push(r.sensor.clone());
            out.new_sensors.push(NewSensor {
                id: r.sensor.clone(),
                unit,
                device: Some(device.clone()),
            });
        }
        out.readings.push(Reading::new(r.sensor, r.time, value));
    }

    if !problems.is_empty() {
        out.reject_label = Some("reading");
        out.dead_letter = Some(letter(
            topic,
            payload,
            now,
            format!(
                "message partly rejected ({} problems; its other readings were stored): {}",
                problems.len(),
                problems.join("; ")
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use waterline_core::{SensorKind, Unit};

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-27T02:00:30Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn registry() -> Registry {
        let mut reg = Registry::default();
        reg.add_sensor(SensorId::parse("known-flow").unwrap(), Unit::LitrePerSecond);
        reg
    }

    fn run(topic: &str, payload: &str, reg: &Registry, cfg: &IngestConfig) -> Processed {
        process_native(topic, payload.as_bytes(), "waterline", reg, cfg, now())
    }

    #[test]
    fn converts_to_canonical_units() {
        let p = run(
            "waterline/RTU-1/up",
            r#"{"device":"RTU-1","time":"2026-11-27T02:00:00Z","readings":[
                {"sensor":"known-flow","value":10},
                {"sensor":"new-p","value":2,"unit":"bar"}]}"#,
            &registry(),
            &IngestConfig::default(),
        );
        assert!(p.dead_letter.is_none(), "{:?}", p.dead_letter);
        assert_eq!(p.readings.len(), 2);
        assert!((p.readings[0].value - 36.0).abs() < 1e-9);
        assert!((p.readings[1].value - 20.394_324).abs() < 1e-5);
        assert_eq!(p.new_sensors.len(), 1);
        assert_eq!(p.new_sensors[0].unit, Unit::Bar);
        assert_eq!(p.device.unwrap().status_if_new, DeviceStatus::Active);
    }

    #[test]
    fn described_kind_refuses_wrong_unit() {
        let mut reg = Registry::default();
        reg.set_sensor(
            SensorId::parse("p1").unwrap(),
            crate::registry::SensorInfo {
                kind: Some(SensorKind::Pressure),
                unit: Some(Unit::Metre),
            },
        );
        let p = run(
            "waterline/d/up",
            r#"{"device":"d","time":"2026-11-27T02:00:00Z","readings":[{"sensor":"p1","value":1,"unit":"L/s"}]}"#,
            &reg,
            &IngestConfig::default(),
        );
        assert!(p.readings.is_empty());
        let reason = p.dead_letter.unwrap().reason;
        assert!(reason.contains("cannot convert L/s to m"), "{reason}");
    }

    #[test]
    fn first_contact_sensors_keep_their_dimension() {
        let p = run(
            "waterline/d/up",
            r#"{"device":"d","time":"2026-11-27T02:00:00Z","readings":[
                {"sensor":"known-flow","value":1,"unit":"m3/h"},
                {"sensor":"known-flow","value":1,"unit":"bar","time":"2026-11-27T02:00:01Z"}]}"#,
            &registry(),
            &IngestConfig::default(),
        );
        assert_eq!(p.readings.len(), 1);
        let reason = p.dead_letter.unwrap().reason;
        assert!(
            reason.contains("first registered in L/s; bar measures something else"),
            "{reason}"
        );
    }

    #[test]
    fn physically_impossible_values_are_flagged_not_stored() {
        let mut reg = Registry::default();
        reg.set_sensor(
            SensorId::parse("ph1").unwrap(),
            crate::registry::SensorInfo {
                kind: Some(SensorKind::Ph),
                unit: Some(Unit::Ph),
            },
        );
        let p = run(
            "waterline/d/up",
            r#"{"device":"d","time":"2026-11-27T02:00:00Z","readings":[
                {"sensor":"ph1","value":7.2},
                {"sensor":"ph1","value":19.5,"time":"2026-11-27T02:00:01Z"}]}"#,
            &reg,
            &IngestConfig::default(),
        );
        assert_eq!(p.readings.len(), 1);
        let reason = p.dead_letter.unwrap().reason;
        assert!(
            reason.contains("19.5 pH is physically impossible"),
            "{reason}"
        );
    }

    #[test]
    fn malformed_payload_is_dead_lettered_with_raw_bytes() {
        let p = run(
            "waterline/d/up",
            "{oops",
            &registry(),
            &IngestConfig::default(),
        );
        let dl = p.dead_letter.unwrap();
        assert_eq!(dl.payload, b"{oops");
        assert!(
            dl.reason.starts_with("payload is not valid JSON"),
            "{}",
            dl.reason
        );
        assert_eq!(p.reject_label, Some("decode"));
        assert!(p.readings.is_empty());
    }

    #[test]
    fn partly_bad_message_keeps_the_good_readings() {
        let p = run(
            "waterline/d/up",
            r#"{"device":"d","time":"2026-11-27T02:00:00Z","readings":[
                {"sensor":"known-flow","value":1},
                {"sensor":"unknown","value":1},
                {"sensor":"known-flow","value":2,"time":"2027-01-01T00:00:00Z"},
                {"sensor":"known-flow","value":3,"time":"2020-01-01T00:00:00Z"}]}"#,
            &registry(),
            &IngestConfig::default(),
        );
        assert_eq!(p.readings.len(), 1);
        let reason = p.dead_letter.unwrap().reason;
        assert!(
            reason.starts_with("message partly rejected (3 problems"),
            "{reason}"
        );
        assert!(reason.contains("not registered and the reading gives no unit"));
        assert!(reason.contains("in the future"));
        assert!(reason.contains("older than 400 days"));
    }

    #[test]
    fn oversized_and_misaddressed_messages_are_rejected() {
        let cfg = IngestConfig {
            max_payload_bytes: 10,
            ..IngestConfig::default()
        };
        let p = run(
            "waterline/d/up",
            r#"{"device":"d","readings":[]}"#,
            &registry(),
            &cfg,
        );
        assert_eq!(p.reject_label, Some("too_large"));
        let p = run("other/d/up", "{}", &registry(), &IngestConfig::default());
        assert_eq!(p.reject_label, Some("bad_topic"));
        let p = run(
            "waterline/d/up",
            r#"{"device":"e","readings":[]}"#,
            &registry(),
            &IngestConfig::default(),
        );
        assert!(p.dead_letter.unwrap().reason.contains("device `e`"));
    }

    #[test]
    fn pending_devices_are_held_back_and_retired_refused() {
        let cfg = IngestConfig {
            require_device_approval: true,
            ..IngestConfig::default()
        };
        let body = r#"{"device":"new","time":"2026-11-27T02:00:00Z","readings":[{"sensor":"known-flow","value":1}]}"#;
        let p = run("waterline/new/up", body, &registry(), &cfg);
        assert!(p.readings.is_empty());
        assert_eq!(p.pending.unwrap().payload, body.as_bytes());
        assert_eq!(p.device.unwrap().status_if_new, DeviceStatus::Pending);

        let mut reg = registry();
        reg.set_device(DeviceId::parse("new").unwrap(), DeviceStatus::Active);
        assert_eq!(run("waterline/new/up", body, &reg, &cfg).readings.len(), 1);
        reg.set_device(DeviceId::parse("new").unwrap(), DeviceStatus::Retired);
        let p = run("waterline/new/up", body, &reg, &cfg);
        assert_eq!(p.reject_label, Some("device_retired"));
    }
}
