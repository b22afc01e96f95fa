//! Routes a received message to the codec its topic names, then through the shared steps of
//! [`crate::uplink`] (size, device registry, unit conversion, dead letters):
//!
//! | topic | codec | device id |
//! |---|---|---|
//! | `<prefix>/<device>/up` | native JSON (CONTRACTS §5) | `<device>` |
//! | `application/<app>/device/<dev eui>/event/up` | ChirpStack v4 uplink | `lora-<dev eui>` |
//! | `<cjt188 prefix>/<gateway>/up` | CJ/T 188 frame, raw bytes or hex text | `cjt188-<address>` |
//! | `spBv1.0/<group>/<kind>/<node>[/<device>]` | Sparkplug B | `<group>:<node>[:<device>]` |
//! | `modbus/<device>/up` (internal, from the poller) | native JSON | `<device>` |
//!
//! Sparkplug is stateful (births define aliases, `seq` must not skip): [`SparkplugNodes`]
//! holds one state machine per edge node and asks for a rebirth (rate-limited) when the
//! stream breaks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use waterline_core::codec::NativeReading;
use waterline_core::codec::chirpstack::{self, ProfileCodecs};
use waterline_core::codec::cjt188::{self, Cjt188Frame, ValveState};
use waterline_core::codec::sparkplug::{self, EdgeNodeState, MessageKind};
use waterline_core::{DeviceId, SensorId, Unit};
use waterline_store::DeviceState;

use crate::config::IngestConfig;
use crate::registry::Registry;
use crate::uplink::{self, Processed, admit, check_size, decode_failed, finish};

/// Which protocols are subscribed and how they are recognised.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    /// Native uplinks: `<native_prefix>/<device>/up`.
    pub native_prefix: String,
    /// ChirpStack v4 uplink events.
    pub chirpstack: bool,
    /// Codecs for ChirpStack uplinks without a decoded `object`, by device-profile name.
    pub chirpstack_profiles: ProfileCodecs,
    /// CJ/T 188 frames: `<prefix>/<gateway>/up`.
    pub cjt188_prefix: Option<String>,
    /// Sparkplug B (`spBv1.0/#`).
    pub sparkplug: bool,
}

impl Routes {
    /// The routes the configuration subscribes to.
    pub fn from_config(mqtt: &crate::config::MqttConfig, cfg: &IngestConfig) -> Routes {
        Routes {
            native_prefix: mqtt.topic_prefix.clone(),
            chirpstack: mqtt.chirpstack,
            chirpstack_profiles: cfg.chirpstack_profiles.clone(),
            cjt188_prefix: mqtt.cjt188().map(str::to_owned),
            sparkplug: mqtt.sparkplug,
        }
    }
}

/// Shortest interval between two rebirth requests to one edge node.
const REBIRTH_INTERVAL: Duration = Duration::from_secs(30);

/// Sparkplug session state per edge node.
#[derive(Debug, Default)]
pub struct SparkplugNodes {
    nodes: HashMap<(String, String), EdgeNodeState>,
    last_rebirth: HashMap<(String, String), Instant>,
    /// While a batch may still be undone: each touched node's state before the batch.
    journal: Option<HashMap<(String, String), Option<EdgeNodeState>>>,
}

impl SparkplugNodes {
    /// Starts a batch that may be undone ([`Self::rollback`]): the writer spools a batch it
    /// could not commit, and the drain will run those messages through the sessions again.
    pub fn begin(&mut self) {
        self.journal = Some(HashMap::new());
    }

    /// Keeps what the batch did to the sessions.
    pub fn commit(&mut self) {
        self.journal = None;
    }

    /// Puts every node the batch touched back as it was before [`Self::begin`].
    pub fn rollback(&mut self) {
        for (key, before) in self.journal.take().unwrap_or_default() {
            match before {
                Some(state) => {
                    self.nodes.insert(key, state);
                }
                None => {
                    self.nodes.remove(&key);
                }
            }
        }
    }
}

/// Processes one message received on `topic` at `now`.
pub fn process(
    topic: &str,
    payload: &[u8],
    routes: &Routes,
    registry: &Registry,
    cfg: &IngestConfig,
    now: DateTime<Utc>,
    nodes: &mut SparkplugNodes,
) -> Processed {
    if let Some(p) = check_size(topic, payload, cfg, now) {
        return p;
    }
    if routes.chirpstack
        && let Some(dev_eui) = chirpstack::topic_dev_eui(topic)
    {
        return process_chirpstack(topic, dev_eui, payload, routes, registry, cfg, now);
    }
    if let Some(prefix) = &routes.cjt188_prefix
        && cjt188_gateway(prefix, topic).is_some()
    {
        return process_cjt188(topic, payload, registry, cfg, now);
    }
    if routes.sparkplug && topic.starts_with("spBv1.0/") {
        return process_sparkplug(topic, payload, registry, cfg, now, nodes);
    }
    if topic.starts_with("modbus/") {
        return uplink::process_native(
            topic,
            payload,
            crate::modbus_poll::MODBUS_TOPIC_PREFIX,
            registry,
            cfg,
            now,
        );
    }
    uplink::process_native(topic, payload, &routes.native_prefix, registry, cfg, now)
}

fn process_chirpstack(
    topic: &str,
    dev_eui: &str,
    payload: &[u8],
    routes: &Routes,
    registry: &Registry,
    cfg: &IngestConfig,
    now: DateTime<Utc>,
) -> Processed {
    let up = match chirpstack::decode_uplink(dev_eui, payload, &routes.chirpstack_profiles) {
        Ok(up) => up,
        Err(e) => {
            let seen = DeviceId::parse(format!(
                "{}{}",
                chirpstack::DEVICE_PREFIX,
                dev_eui.to_ascii_lowercase()
            ))
            .ok()
            .and_then(|d| admit(&d, "chirpstack", topic, payload, registry, cfg, now).ok());
            return decode_failed(topic, payload, now, seen, e.to_string());
        }
    };
    let mut seen = match admit(&up.device, "chirpstack", topic, payload, registry, cfg, now) {
        Ok(seen) => seen,
        Err(p) => return p,
    };
    seen.health = Some(up.health);
    let problems = up
        .rejected
        .iter()
        .map(|r| format!("field {}: {}", r.index, r.reason))
        .collect();
    finish(
        topic,
        payload,
        now,
        seen,
        up.readings,
        problems,
        registry,
        cfg,
    )
}

fn cjt188_gateway<'a>(prefix: &str, topic: &'a str) -> Option<&'a str> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix('/')?;
    let gw = rest.strip_suffix("/up")?;
    (!gw.is_empty() && !gw.contains('/')).then_some(gw)
}

/// A CJ/T 188 payload is either the raw frame or its hex text (gateways do both).
fn decode_cjt188(payload: &[u8]) -> Result<Cjt188Frame, cjt188::Cjt188Error> {
    let looks_hex = !payload.is_empty()
        && payload
            .iter()
            .all(|b| b.is_ascii_hexdigit() || b.is_ascii_whitespace());
    match (looks_hex, std::str::from_utf8(payload)) {
        (true, Ok(text)) => cjt188::decode_hex(text),
        _ => cjt188::decode_frame(payload),
    }
}

fn process_cjt188(
    topic: &str,
    payload: &[u8],
    registry: &Registry,
    cfg: &IngestConfig,
    now: DateTime<Utc>,
) -> Processed {
    let frame = match decode_cjt188(payload) {
        Ok(f) => f,
        Err(e) => return decode_failed(topic, payload, now, None, format!("CJ/T 188: {e}")),
    };
    let name = format!("cjt188-{}", frame.address);
    let (Ok(device), Ok(sensor)) = (
        DeviceId::parse(name.as_str()),
        SensorId::parse(name.as_str()),
    ) else {
        return decode_failed(
            topic,
            payload,
            now,
            None,
            format!(
                "CJ/T 188: meter address `{}` is not a valid id",
                frame.address
            ),
        );
    };
    let seen = match admit(&device, "cjt188", topic, payload, registry, cfg, now) {
        Ok(seen) => seen,
        Err(p) => return p,
    };
    let Some(reading) = frame.reading else {
        // A frame without meter data (a control answer): the device was seen, nothing to store.
        return Processed {
            device: Some(seen),
            ..Processed::default()
        };
    };
    let status = DeviceState::MeterStatus {
        device: device.clone(),
        valve: match reading.status.valve {
            ValveState::Open => "open",
            ValveState::Closed => "closed",
            ValveState::Abnormal => "abnormal",
        },
        battery_low: reading.status.battery_low,
        at: now,
    };
    // The meter's clock is local time of unknown zone and often wrong: the reading is stamped
    // with the time it was received.
    let readings = vec![NativeReading {
        sensor,
        value: reading.cumulative_m3,
        unit: Some(Unit::CubicMetre),
        time: now,
    }];
    let mut out = finish(
        topic,
        payload,
        now,
        seen,
        readings,
        Vec::new(),
        registry,
        cfg,
    );
    if out.pending.is_none() {
        out.states.push(status);
    }
    out
}

fn process_sparkplug(
    topic: &str,
    payload: &[u8],
    registry: &Registry,
    cfg: &IngestConfig,
    now: DateTime<Utc>,
    nodes: &mut SparkplugNodes,
) -> Processed {
    let parsed = match sparkplug::SparkplugTopic::parse(topic) {
        Ok(t) => t,
        Err(e) => return decode_failed(topic, payload, now, None, e.to_string()),
    };
    // Commands and host state are for edge nodes and hosts, not data.
    if matches!(
        parsed.kind,
        MessageKind::NCmd | MessageKind::DCmd | MessageKind::State
    ) {
        return Processed::default();
    }
    let body = match sparkplug::decode_payload(payload) {
        Ok(b) => b,
        Err(e) => return decode_failed(topic, payload, now, None, e.to_string()),
    };
    let key = (parsed.group.clone(), parsed.edge_node.clone());
    if let Some(journal) = nodes.journal.as_mut() {
        journal
            .entry(key.clone())
            .or_insert_with(|| nodes.nodes.get(&key).cloned());
    }
    let state = nodes
        .nodes
        .entry(key.clone())
        .or_insert_with(|| EdgeNodeState::new(parsed.group.clone(), parsed.edge_node.clone()));
    let outcome = state.on_message(&parsed, &body, now);
    let rebirth = if outcome.rebirth_needed {
        let due = nodes
            .last_rebirth
            .get(&key)
            .is_none_or(|t| t.elapsed() >= REBIRTH_INTERVAL);
        due.then(|| {
            nodes.last_rebirth.insert(key.clone(), Instant::now());
            state.rebirth_command(now)
        })
    } else {
        None
    };
    let mut problems: Vec<String> = outcome.problems.iter().map(|e| e.to_string()).collect();
    problems.extend(
        outcome
            .rejected
            .iter()
            .map(|r| format!("metric {}: {}", r.index, r.reason)),
    );
    let device = match outcome
        .device
        .clone()
        .map(Ok)
        .unwrap_or_else(|| parsed.device_id())
    {
        Ok(d) => d,
        Err(e) => return decode_failed(topic, payload, now, None, e.to_string()),
    };
    let mut out = match admit(&device, "sparkplug", topic, payload, registry, cfg, now) {
        Ok(seen) => {
            let mut out = finish(
                topic,
                payload,
                now,
                seen,
                outcome.readings,
                problems,
                registry,
                cfg,
            );
            let presence = |online: bool| {
                move |device: &DeviceId| DeviceState::Presence {
                    device: device.clone(),
                    online,
                    at: now,
                }
            };
            out.states.extend(outcome.online.iter().map(presence(true)));
            out.states
                .extend(outcome.offline.iter().map(presence(false)));
            out
        }
        Err(p) => p,
    };
    out.rebirth = rebirth;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use waterline_core::codec::cjt188::{MeterAddress, MeterReading, MeterStatus, ValveState};

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-27T02:00:30Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn routes() -> Routes {
        Routes {
            native_prefix: "waterline".into(),
            chirpstack: true,
            chirpstack_profiles: ProfileCodecs::new(),
            cjt188_prefix: Some("cjt188".into()),
            sparkplug: true,
        }
    }

    fn run(topic: &str, payload: &[u8]) -> Processed {
        process(
            topic,
            payload,
            &routes(),
            &Registry::default(),
            &IngestConfig::default(),
            now(),
            &mut SparkplugNodes::default(),
        )
    }

    #[test]
    fn cjt188_frames_arrive_as_raw_bytes_or_hex_text() {
        let reading = MeterReading {
            cumulative_m3: 1234.56,
            settlement_m3: None,
            meter_time: None,
            status: MeterStatus::new(ValveState::Closed, true),
        };
        let frame = cjt188::encode_read_response(
            0x10,
            &MeterAddress::parse("12345678901234").unwrap(),
            1,
            &reading,
        );
        for payload in [
            frame.clone(),
            frame
                .iter()
                .map(|b| format!("{b:02X} "))
                .collect::<String>()
                .into_bytes(),
        ] {
            let p = run("cjt188/gw-7/up", &payload);
            assert!(p.dead_letter.is_none(), "{:?}", p.dead_letter);
            assert_eq!(p.readings.len(), 1);
            assert_eq!(p.readings[0].sensor.as_str(), "cjt188-12345678901234");
            assert!((p.readings[0].value - 1234.56).abs() < 1e-9);
            assert_eq!(p.device.unwrap().protocol, "cjt188");
            assert_eq!(
                p.states,
                [DeviceState::MeterStatus {
                    device: DeviceId::parse("cjt188-12345678901234").unwrap(),
                    valve: "closed",
                    battery_low: true,
                    at: now(),
                }]
            );
        }
        let mut bad = frame.clone();
        let cs = bad.len() - 2;
        bad[cs] ^= 0xFF;
        let p = run("cjt188/gw-7/up", &bad);
        assert!(p.dead_letter.unwrap().reason.contains("checksum"));
    }

    #[test]
    fn chirpstack_uplinks_with_a_decoded_object() {
        let body = br#"{"time":"2026-11-27T02:00:00Z","deviceInfo":{"devEui":"0102030405060708","deviceProfileName":"meter"},"object":{"volume_m3":12.5}}"#;
        let p = run("application/1/device/0102030405060708/event/up", body);
        assert!(p.dead_letter.is_none(), "{:?}", p.dead_letter);
        assert_eq!(p.readings.len(), 1);
        assert_eq!(
            p.readings[0].sensor.as_str(),
            "lora-0102030405060708.volume_m3"
        );
        assert_eq!(p.device.unwrap().device.as_str(), "lora-0102030405060708");
        let p = run(
            "application/1/device/0102030405060708/event/up",
            b"not json",
        );
        assert_eq!(p.reject_label, Some("decode"));
    }

    #[test]
    fn sparkplug_commands_are_not_data_and_garbage_is_dead_lettered() {
        assert_eq!(
            run("spBv1.0/plant/NCMD/edge1", b"\x00"),
            Processed::default()
        );
        let p = run("spBv1.0/plant/NDATA/edge1", b"\xff\xff\xff");
        assert_eq!(p.reject_label, Some("decode"));
    }

    #[test]
    fn sparkplug_data_before_birth_asks_for_a_rebirth_once() {
        let payload = sparkplug::encode_payload(&sparkplug::Payload {
            timestamp: Some(1_790_000_000_000),
            seq: Some(1),
            ..Default::default()
        });
        let mut nodes = SparkplugNodes::default();
        let mut go = || {
            process(
                "spBv1.0/plant/NDATA/edge1",
                &payload,
                &routes(),
                &Registry::default(),
                &IngestConfig::default(),
                now(),
                &mut nodes,
            )
        };
        let first = go();
        let (topic, _) = first.rebirth.expect("a rebirth request");
        assert_eq!(topic, "spBv1.0/plant/NCMD/edge1");
        assert!(go().rebirth.is_none(), "rate-limited");
    }

    /// Bounded, deterministic no-panic run over the whole routing path (the cargo-fuzz target
    /// `route` explores further): random topics of every protocol with random and mutated
    /// payloads.
    #[test]
    fn no_input_makes_routing_panic() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let topics = [
            "waterline/d/up",
            "application/1/device/0102030405060708/event/up",
            "cjt188/gw/up",
            "spBv1.0/g/NBIRTH/e",
            "spBv1.0/g/NDATA/e",
            "spBv1.0/g/DDATA/e/d",
            "modbus/d/up",
            "junk",
        ];
        let seeds: [&[u8]; 4] = [
            br#"{"device":"d","time":"2026-11-27T02:00:00Z","readings":[{"sensor":"s","value":1,"unit":"m"}]}"#,
            br#"{"time":"2026-11-27T02:00:00Z","deviceInfo":{"devEui":"0102030405060708"},"object":{"v_m3":1}}"#,
            b"\xfe\xfe\x68\x10\x11\x22\x33\x44\x55\x66\x77\x81\x16",
            b"\x08\x01\x12\x04\x0a\x02\x61\x62",
        ];
        let mut nodes = SparkplugNodes::default();
        for _ in 0..20_000 {
            let topic = topics[(next() % topics.len() as u64) as usize];
            let mut payload = seeds[(next() % seeds.len() as u64) as usize].to_vec();
            match next() % 3 {
                0 => {
                    let n = (next() % 64) as usize;
                    payload = (0..n).map(|_| next() as u8).collect();
                }
                1 if !payload.is_empty() => {
                    let i = (next() % payload.len() as u64) as usize;
                    payload[i] = next() as u8;
                }
                _ => payload.truncate((next() % (payload.len() as u64 + 1)) as usize),
            }
            let _ = process(
                topic,
                &payload,
                &routes(),
                &Registry::default(),
                &IngestConfig::default(),
                now(),
                &mut nodes,
            );
        }
    }
}
