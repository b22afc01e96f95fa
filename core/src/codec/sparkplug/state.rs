//! The session state machine a host application keeps for one edge node.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::ids::device_id;
use super::proto::{MetricValue, Payload};
use super::readings::{Scope, birth_scope, reject_all, take_readings};
use super::rebirth::rebirth_command;
use super::topic::{MessageKind, SparkplugTopic};
use super::{BD_SEQ_METRIC, SparkplugError};
use crate::codec::native::{NativeReading, RejectedReading};
use crate::ids::DeviceId;

/// What one message did, as [`EdgeNodeState::on_message`] saw it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    /// The device `readings` and `rejected` belong to (the edge node for NBIRTH/NDATA, its
    /// device for DBIRTH/DDATA); `None` when the message carries no readings.
    pub device: Option<DeviceId>,
    /// Metric values taken as readings (BIRTH values included).
    pub readings: Vec<NativeReading>,
    /// Metrics not taken, by their index in `Payload::metrics`, with why.
    pub rejected: Vec<RejectedReading>,
    /// Devices that came online: the edge node on NBIRTH, a device on DBIRTH.
    pub online: Vec<DeviceId>,
    /// Devices that went offline: the edge node and all its devices on an NDEATH that matches
    /// the session's bdSeq, a device on DDEATH.
    pub offline: Vec<DeviceId>,
    /// The edge node's state is no longer trustworthy: send [`rebirth_command`]. Raised on a
    /// `seq` gap, an alias or metric the BIRTH did not declare, and a DBIRTH/DDEATH/DATA
    /// outside a session. The owner should rate-limit the NCMDs it sends.
    pub rebirth_needed: bool,
    /// Protocol problems noticed, whether or not they ask for a rebirth.
    pub problems: Vec<SparkplugError>,
}

/// The session state of one Sparkplug edge node and its devices, as a host application keeps
/// it. Feed it every message of that edge node in arrival order; it does no IO and keeps no
/// clock (`received_at` is only a fallback timestamp).
///
/// Sequence rules: NBIRTH sets the expected sequence to its own `seq` (normally 0); each
/// following NDATA, DBIRTH, DDATA and DDEATH must carry the previous `seq` + 1 mod 256. A
/// mismatch raises [`Outcome::rebirth_needed`] and resynchronises on the received value.
/// A missing or out-of-range `seq` is reported as a problem and leaves the next message to set
/// the sequence again, without asking for a rebirth (a node that never sends one would
/// otherwise be asked forever). Messages are not reordered: there is no reorder window.
#[derive(Debug, Clone)]
pub struct EdgeNodeState {
    group: String,
    edge_node: String,
    session: Option<Session>,
}

#[derive(Debug, Clone, Default)]
struct Session {
    bd_seq: Option<u64>,
    last_seq: Option<u8>,
    node: Scope,
    devices: BTreeMap<String, Scope>,
}

impl EdgeNodeState {
    /// The state of edge node `edge_node` in group `group` (raw topic elements), offline.
    pub fn new(group: impl Into<String>, edge_node: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            edge_node: edge_node.into(),
            session: None,
        }
    }

    /// The group id this state is for.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The edge node id this state is for.
    pub fn edge_node(&self) -> &str {
        &self.edge_node
    }

    /// Whether the edge node has a session (an NBIRTH not followed by a matching NDEATH).
    pub fn is_online(&self) -> bool {
        self.session.is_some()
    }

    /// The bdSeq of the session's NBIRTH.
    pub fn bd_seq(&self) -> Option<u64> {
        self.session.as_ref().and_then(|s| s.bd_seq)
    }

    /// The `seq` of the last sequenced message of the session.
    pub fn last_seq(&self) -> Option<u8> {
        self.session.as_ref().and_then(|s| s.last_seq)
    }

    /// The devices with a DBIRTH in this session (raw device ids), in order.
    pub fn online_devices(&self) -> impl Iterator<Item = &str> {
        self.session
            .iter()
            .flat_map(|s| s.devices.keys().map(String::as_str))
    }

    /// [`rebirth_command`] for this edge node.
    pub fn rebirth_command(&self, timestamp: DateTime<Utc>) -> (String, Vec<u8>) {
        rebirth_command(&self.group, &self.edge_node, timestamp)
    }

    /// Applies one message of this edge node, received at `received_at`:
    ///
    /// - NBIRTH starts a new session (forgetting the previous one and its devices): records its
    ///   `seq`, `bdSeq` and metric definitions; the edge node comes online; its values are
    ///   readings.
    /// - DBIRTH records the device's metric definitions; the device comes online; its values
    ///   are readings.
    /// - NDATA / DDATA values are readings, resolved against the NBIRTH / that device's DBIRTH.
    /// - DDEATH takes the device offline.
    /// - NDEATH, when its `bdSeq` matches the session's NBIRTH (or that NBIRTH had none), ends
    ///   the session: the edge node and all its devices go offline. Another `bdSeq` is a stale
    ///   will from an earlier session and is ignored.
    /// - NCMD, DCMD and STATE are published by host applications (this one included) and
    ///   change nothing.
    ///
    /// A message for another edge node changes nothing and is reported as a problem.
    pub fn on_message(
        &mut self,
        topic: &SparkplugTopic,
        payload: &Payload,
        received_at: DateTime<Utc>,
    ) -> Outcome {
        let mut out = Outcome::default();
        if matches!(
            topic.kind,
            MessageKind::NCmd | MessageKind::DCmd | MessageKind::State
        ) {
            return out;
        }
        if topic.group != self.group || topic.edge_node != self.edge_node {
            out.problems.push(SparkplugError::OtherEdgeNode {
                expected: format!("{}/{}", self.group, self.edge_node),
                got: format!("{}/{}", topic.group, topic.edge_node),
            });
            return out;
        }
        let kind = topic.kind;
        match kind {
            MessageKind::NBirth => self.on_nbirth(payload, received_at, &mut out),
            MessageKind::NDeath => self.on_ndeath(payload, &mut out),
            _ => {
                if self.session.is_none() {
                    out.problems.push(SparkplugError::BeforeBirth { kind });
                    out.rebirth_needed = true;
                } else if kind.needs_seq() {
                    self.check_seq(kind, payload, &mut out);
                }
                let device = topic.device.as_deref().unwrap_or_default();
                match kind {
                    MessageKind::DBirth => self.on_dbirth(device, payload, received_at, &mut out),
                    MessageKind::DDeath => self.on_ddeath(device, &mut out),
                    MessageKind::NData | MessageKind::DData => {
                        self.on_data(topic, payload, received_at, &mut out)
                    }
                    _ => {}
                }
            }
        }
        out
    }

    fn check_seq(&mut self, kind: MessageKind, payload: &Payload, out: &mut Outcome) {
        let got = seq_of(kind, payload, out);
        let Some(session) = self.session.as_mut() else {
            return;
        };
        if let (Some(last), Some(got)) = (session.last_seq, got) {
            let expected = last.wrapping_add(1);
            if got != expected {
                out.problems.push(SparkplugError::SeqGap {
                    kind,
                    expected,
                    got,
                });
                out.rebirth_needed = true;
            }
        }
        session.last_seq = got;
    }

    fn on_nbirth(&mut self, payload: &Payload, received_at: DateTime<Utc>, out: &mut Outcome) {
        let last_seq = seq_of(MessageKind::NBirth, payload, out);
        let bd_seq = bd_seq_of(payload);
        let node = birth_scope(payload);
        self.session = Some(Session {
            bd_seq,
            last_seq,
            node,
            devices: BTreeMap::new(),
        });
        match device_id(&self.group, &self.edge_node, None) {
            Ok(id) => {
                out.online.push(id.clone());
                let scope = self.session.as_ref().map(|s| &s.node);
                take_readings(id, scope, payload, true, received_at, out);
            }
            Err(e) => reject_all(payload, &e, out),
        }
    }

    fn on_ndeath(&mut self, payload: &Payload, out: &mut Outcome) {
        let Some(session) = &self.session else {
            return;
        };
        let death = bd_seq_of(payload);
        if let Some(birth) = session.bd_seq
            && death != Some(birth)
        {
            out.problems
                .push(SparkplugError::BdSeqMismatch { birth, death });
            return;
        }
        let mut ids = vec![device_id(&self.group, &self.edge_node, None)];
        ids.extend(
            session
                .devices
                .keys()
                .map(|d| device_id(&self.group, &self.edge_node, Some(d))),
        );
        for id in ids {
            match id {
                Ok(id) => out.offline.push(id),
                Err(e) => out.problems.push(e.into()),
            }
        }
        self.session = None;
    }

    fn on_dbirth(
        &mut self,
        device: &str,
        payload: &Payload,
        received_at: DateTime<Utc>,
        out: &mut Outcome,
    ) {
        let scope = birth_scope(payload);
        let id = match device_id(&self.group, &self.edge_node, Some(device)) {
            Ok(id) => id,
            Err(e) => return reject_all(payload, &e, out),
        };
        take_readings(id.clone(), Some(&scope), payload, true, received_at, out);
        if let Some(session) = self.session.as_mut() {
            session.devices.insert(device.to_owned(), scope);
            out.online.push(id);
        }
    }

    fn on_ddeath(&mut self, device: &str, out: &mut Outcome) {
        if let Some(session) = self.session.as_mut() {
            session.devices.remove(device);
        }
        match device_id(&self.group, &self.edge_node, Some(device)) {
            Ok(id) => out.offline.push(id),
            Err(e) => out.problems.push(e.into()),
        }
    }

    fn on_data(
        &mut self,
        topic: &SparkplugTopic,
        payload: &Payload,
        received_at: DateTime<Utc>,
        out: &mut Outcome,
    ) {
        let device = topic.device.as_deref();
        let scope = match (&self.session, device) {
            (None, _) => None,
            (Some(s), None) => Some(&s.node),
            (Some(s), Some(d)) => {
                let scope = s.devices.get(d);
                if scope.is_none() {
                    out.problems.push(SparkplugError::UnknownDevice {
                        kind: topic.kind,
                        device: d.to_owned(),
                    });
                    out.rebirth_needed = true;
                }
                scope
            }
        };
        match device_id(&self.group, &self.edge_node, device) {
            Ok(id) => take_readings(id, scope, payload, false, received_at, out),
            Err(e) => reject_all(payload, &e, out),
        }
    }
}

/// The payload's `seq` when it has one in 0–255; otherwise a problem.
fn seq_of(kind: MessageKind, payload: &Payload, out: &mut Outcome) -> Option<u8> {
    let Some(seq) = payload.seq else {
        out.problems.push(SparkplugError::MissingSeq { kind });
        return None;
    };
    u8::try_from(seq).ok().or_else(|| {
        out.problems
            .push(SparkplugError::SeqOutOfRange { kind, seq });
        None
    })
}

/// The value of the `bdSeq` metric, if the payload has one with an integer value.
fn bd_seq_of(payload: &Payload) -> Option<u64> {
    payload
        .metrics
        .iter()
        .find(|m| m.name.as_deref() == Some(BD_SEQ_METRIC))
        .and_then(|m| match m.value {
            Some(MetricValue::LongValue(v)) => Some(v),
            Some(MetricValue::IntValue(v)) => Some(u64::from(v)),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::super::payload::decode_payload;
    use super::super::proto::{DataType, Metric};
    use super::super::tests::{
        GO_NBIRTH, GO_NDATA, GO_NDATA_GAP, GO_NDEATH, NODE, aliased, b64, bd_seq, born, dbirth,
        dev, named, nbirth, node, now, payload, sensors, t, topic,
    };
    use super::*;
    use crate::units::Unit;

    #[test]
    fn go_fixtures_drive_a_session() {
        let mut s = EdgeNodeState::new("G", "N");
        let nt = |k: &str| topic(&format!("spBv1.0/G/{k}/N"));
        let out = s.on_message(
            &nt("NBIRTH"),
            &decode_payload(&b64(GO_NBIRTH)).unwrap(),
            now(),
        );
        assert_eq!(sensors(&out), vec![("G:N:Temperature", 21.5)]);
        assert_eq!(out.readings[0].time, t("2025-06-25T12:47:23.474Z"));
        assert!(
            out.rejected.is_empty(),
            "bdSeq and Node Control are handled"
        );
        assert_eq!(s.bd_seq(), Some(88));

        let out = s.on_message(
            &nt("NDATA"),
            &decode_payload(&b64(GO_NDATA)).unwrap(),
            now(),
        );
        assert_eq!(sensors(&out), vec![("G:N:Temperature", 22.5)]);
        assert!(!out.rebirth_needed);

        let out = s.on_message(
            &nt("NDATA"),
            &decode_payload(&b64(GO_NDATA_GAP)).unwrap(),
            now(),
        );
        assert_eq!(sensors(&out), vec![("G:N:Temperature", 27.0)]);
        assert!(out.rebirth_needed);

        // Its NDEATH carries bdSeq 0, not the birth's 88: a stale will, ignored.
        let out = s.on_message(
            &nt("NDEATH"),
            &decode_payload(&b64(GO_NDEATH)).unwrap(),
            now(),
        );
        assert!(out.offline.is_empty());
        assert_eq!(
            out.problems,
            vec![SparkplugError::BdSeqMismatch {
                birth: 88,
                death: Some(0)
            }]
        );
        assert!(s.is_online());
    }

    #[test]
    fn normal_flow() {
        let mut s = EdgeNodeState::new("Plant A", "RTU 1");
        assert!(!s.is_online());
        let out = s.on_message(&topic(NODE), &nbirth(0, 3), now());
        assert_eq!(out.device.as_ref().unwrap().as_str(), "Plant_A:RTU_1");
        assert_eq!(
            sensors(&out),
            vec![
                ("Plant_A:RTU_1:Inlet.Flow_Rate", 41.7),
                ("Plant_A:RTU_1:Pump_Running", 1.0)
            ]
        );
        assert_eq!(out.readings[0].time, now());
        assert!(out.rejected.is_empty() && out.problems.is_empty() && !out.rebirth_needed);
        assert_eq!(out.online.len(), 1);
        assert_eq!((s.bd_seq(), s.last_seq()), (Some(3), Some(0)));

        let out = s.on_message(&dev("DBIRTH"), &dbirth(1), now());
        assert_eq!(out.device.as_ref().unwrap().as_str(), "Plant_A:RTU_1:PRV-7");
        assert_eq!(
            sensors(&out),
            vec![
                ("Plant_A:RTU_1:PRV-7:Pressure", 3.5),
                ("Plant_A:RTU_1:PRV-7:Level", -2.0)
            ]
        );
        assert_eq!(out.readings[0].unit, Some(Unit::Bar));
        assert_eq!(out.online[0].as_str(), "Plant_A:RTU_1:PRV-7");
        assert_eq!(s.online_devices().collect::<Vec<_>>(), vec!["PRV-7"]);

        let out = s.on_message(
            &node("NDATA"),
            &payload(Some(2), vec![aliased(1, MetricValue::DoubleValue(40.0))]),
            now(),
        );
        assert_eq!(sensors(&out), vec![("Plant_A:RTU_1:Inlet.Flow_Rate", 40.0)]);
        assert!(!out.rebirth_needed && out.problems.is_empty());

        // DDATA by alias: datatype and unit come from the DBIRTH.
        let mut level = aliased(11, MetricValue::IntValue(0xFFFF_FFFF));
        level.timestamp = Some(1_795_744_860_000);
        let out = s.on_message(
            &dev("DDATA"),
            &payload(
                Some(3),
                vec![aliased(10, MetricValue::FloatValue(3.25)), level],
            ),
            now(),
        );
        assert_eq!(
            sensors(&out),
            vec![
                ("Plant_A:RTU_1:PRV-7:Pressure", 3.25),
                ("Plant_A:RTU_1:PRV-7:Level", -1.0)
            ]
        );
        assert_eq!(out.readings[0].unit, Some(Unit::Bar));
        assert_eq!(out.readings[0].time, now());
        assert_eq!(out.readings[1].time, t("2026-11-27T02:01:00Z"));
        assert!(!out.rebirth_needed && out.problems.is_empty());
        assert_eq!(s.last_seq(), Some(3));
    }

    #[test]
    fn commands_and_state_messages_change_nothing() {
        let mut s = born();
        let (tp, bytes) = s.rebirth_command(now());
        let out = s.on_message(&topic(&tp), &decode_payload(&bytes).unwrap(), now());
        assert_eq!(out, Outcome::default());
        let out = s.on_message(&dev("DCMD"), &payload(None, vec![]), now());
        assert_eq!(out, Outcome::default());
        let out = s.on_message(&topic("spBv1.0/STATE/h"), &Payload::default(), now());
        assert_eq!(out, Outcome::default());
        assert_eq!(s.last_seq(), Some(0));
    }

    #[test]
    fn messages_of_another_node_are_refused() {
        let mut s = born();
        let out = s.on_message(
            &topic("spBv1.0/Plant A/NDATA/RTU 2"),
            &payload(Some(1), vec![]),
            now(),
        );
        assert!(matches!(
            out.problems[..],
            [SparkplugError::OtherEdgeNode { .. }]
        ));
        assert_eq!(s.last_seq(), Some(0));
    }

    #[test]
    fn seq_wraps_from_255_to_0() {
        let mut s = EdgeNodeState::new("Plant A", "RTU 1");
        s.on_message(&topic(NODE), &nbirth(254, 0), now());
        for seq in [255, 0, 1] {
            let out = s.on_message(
                &node("NDATA"),
                &payload(Some(seq), vec![aliased(1, MetricValue::DoubleValue(1.0))]),
                now(),
            );
            assert!(!out.rebirth_needed, "seq {seq}: {out:?}");
            assert_eq!(out.readings.len(), 1);
        }
        assert_eq!(s.last_seq(), Some(1));
    }

    #[test]
    fn a_gap_asks_for_a_rebirth_and_keeps_the_readings() {
        let mut s = born();
        let out = s.on_message(
            &node("NDATA"),
            &payload(Some(2), vec![aliased(1, MetricValue::DoubleValue(1.0))]),
            now(),
        );
        assert!(out.rebirth_needed);
        assert_eq!(
            out.problems,
            vec![SparkplugError::SeqGap {
                kind: MessageKind::NData,
                expected: 1,
                got: 2
            }]
        );
        assert_eq!(out.readings.len(), 1);
        // Resynchronised: 3 follows 2.
        let out = s.on_message(&node("NDATA"), &payload(Some(3), vec![]), now());
        assert!(!out.rebirth_needed);
        // A repeated seq is a gap too (no reordering).
        let out = s.on_message(&node("NDATA"), &payload(Some(3), vec![]), now());
        assert!(out.rebirth_needed);
        // The device messages count in the same sequence.
        let out = s.on_message(&dev("DBIRTH"), &dbirth(5), now());
        assert!(out.rebirth_needed);
    }

    #[test]
    fn missing_or_out_of_range_seq_is_a_problem_without_rebirth() {
        let mut s = born();
        let out = s.on_message(&node("NDATA"), &payload(None, vec![]), now());
        assert_eq!(
            out.problems,
            vec![SparkplugError::MissingSeq {
                kind: MessageKind::NData
            }]
        );
        assert!(!out.rebirth_needed);
        assert_eq!(s.last_seq(), None);
        // The next message sets the sequence again.
        let out = s.on_message(&node("NDATA"), &payload(Some(9), vec![]), now());
        assert!(out.problems.is_empty() && !out.rebirth_needed);
        let out = s.on_message(&node("NDATA"), &payload(Some(256), vec![]), now());
        assert_eq!(
            out.problems,
            vec![SparkplugError::SeqOutOfRange {
                kind: MessageKind::NData,
                seq: 256
            }]
        );
        assert_eq!(
            out.problems[0].to_string(),
            "NDATA payload has `seq` 256, outside 0–255"
        );
        let mut s = EdgeNodeState::new("Plant A", "RTU 1");
        let mut birth = nbirth(0, 0);
        birth.seq = None;
        let out = s.on_message(&topic(NODE), &birth, now());
        assert_eq!(out.problems[0].to_string(), "NBIRTH payload has no `seq`");
        assert!(s.is_online());
        assert_eq!(out.readings.len(), 2);
    }

    #[test]
    fn unknown_alias_asks_for_a_rebirth() {
        let mut s = born();
        let mut named_unknown = aliased(99, MetricValue::DoubleValue(2.0));
        named_unknown.name = Some("Extra".into());
        let out = s.on_message(
            &node("NDATA"),
            &payload(
                Some(1),
                vec![
                    aliased(42, MetricValue::DoubleValue(1.0)),
                    aliased(1, MetricValue::DoubleValue(5.0)),
                    named_unknown,
                ],
            ),
            now(),
        );
        assert!(out.rebirth_needed);
        assert_eq!(
            out.problems,
            vec![
                SparkplugError::UnknownAlias { alias: 42 },
                SparkplugError::UnknownAlias { alias: 99 }
            ]
        );
        assert_eq!(
            sensors(&out),
            vec![
                ("Plant_A:RTU_1:Inlet.Flow_Rate", 5.0),
                ("Plant_A:RTU_1:Extra", 2.0)
            ]
        );
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(out.rejected[0].index, 0);
        assert!(
            out.rejected[0].reason.contains("alias 42"),
            "{:?}",
            out.rejected
        );
        // Device aliases live in the device's scope: node alias 1 is unknown to the device.
        s.on_message(&dev("DBIRTH"), &dbirth(2), now());
        let out = s.on_message(
            &dev("DDATA"),
            &payload(Some(3), vec![aliased(1, MetricValue::DoubleValue(1.0))]),
            now(),
        );
        assert!(out.rebirth_needed);
    }

    #[test]
    fn metrics_by_name_resolve_and_unknown_names_ask_for_a_rebirth() {
        let mut s = born();
        let out = s.on_message(
            &node("NDATA"),
            &payload(
                Some(1),
                vec![
                    Metric {
                        name: Some("Pump Running".into()),
                        value: Some(MetricValue::BooleanValue(false)),
                        ..Metric::default()
                    },
                    named("New", None, DataType::UInt8, MetricValue::IntValue(7)),
                ],
            ),
            now(),
        );
        assert_eq!(
            sensors(&out),
            vec![
                ("Plant_A:RTU_1:Pump_Running", 0.0),
                ("Plant_A:RTU_1:New", 7.0)
            ]
        );
        assert!(out.rebirth_needed);
        assert_eq!(
            out.problems,
            vec![SparkplugError::UnknownMetric { name: "New".into() }]
        );
    }

    #[test]
    fn data_before_birth_asks_for_a_rebirth() {
        let mut s = EdgeNodeState::new("Plant A", "RTU 1");
        let out = s.on_message(
            &node("NDATA"),
            &payload(
                Some(5),
                vec![
                    aliased(1, MetricValue::DoubleValue(1.0)),
                    named(
                        "Flow",
                        None,
                        DataType::Double,
                        MetricValue::DoubleValue(2.0),
                    ),
                ],
            ),
            now(),
        );
        assert!(out.rebirth_needed);
        assert_eq!(
            out.problems,
            vec![SparkplugError::BeforeBirth {
                kind: MessageKind::NData
            }]
        );
        assert_eq!(sensors(&out), vec![("Plant_A:RTU_1:Flow", 2.0)]);
        assert_eq!(out.rejected.len(), 1);
        assert!(!s.is_online());
        for kind in ["DBIRTH", "DDATA", "DDEATH"] {
            let out = s.on_message(&dev(kind), &dbirth(6), now());
            assert!(out.rebirth_needed, "{kind}");
        }
        // A DDATA of a device without DBIRTH in a session.
        let mut s = born();
        let out = s.on_message(&dev("DDATA"), &payload(Some(1), vec![]), now());
        assert!(out.rebirth_needed);
        assert_eq!(
            out.problems,
            vec![SparkplugError::UnknownDevice {
                kind: MessageKind::DData,
                device: "PRV-7".into()
            }]
        );
    }

    #[test]
    fn ndeath_with_matching_bd_seq_takes_everything_offline() {
        let mut s = born();
        s.on_message(&dev("DBIRTH"), &dbirth(1), now());
        s.on_message(
            &topic("spBv1.0/Plant A/DBIRTH/RTU 1/AAA"),
            &payload(Some(2), vec![]),
            now(),
        );
        // NDEATH has no seq; its bdSeq 3 matches the NBIRTH's.
        let out = s.on_message(&node("NDEATH"), &payload(None, vec![bd_seq(3)]), now());
        let offline: Vec<_> = out.offline.iter().map(DeviceId::as_str).collect();
        assert_eq!(
            offline,
            vec!["Plant_A:RTU_1", "Plant_A:RTU_1:AAA", "Plant_A:RTU_1:PRV-7"]
        );
        assert!(out.problems.is_empty() && !out.rebirth_needed && out.readings.is_empty());
        assert!(!s.is_online());
        // A second (will) NDEATH for a dead node changes nothing.
        let out = s.on_message(&node("NDEATH"), &payload(None, vec![bd_seq(3)]), now());
        assert_eq!(out, Outcome::default());
    }

    #[test]
    fn ndeath_with_another_bd_seq_is_ignored() {
        let mut s = born();
        for death in [payload(None, vec![bd_seq(2)]), payload(None, vec![])] {
            let out = s.on_message(&node("NDEATH"), &death, now());
            assert!(out.offline.is_empty());
            assert!(matches!(
                out.problems[..],
                [SparkplugError::BdSeqMismatch { birth: 3, .. }]
            ));
            assert!(s.is_online());
        }
        // A birth without bdSeq cannot be correlated: any NDEATH ends it.
        let mut birth = nbirth(0, 0);
        birth.metrics.remove(0);
        s.on_message(&topic(NODE), &birth, now());
        let out = s.on_message(&node("NDEATH"), &payload(None, vec![bd_seq(7)]), now());
        assert_eq!(out.offline.len(), 1);
    }

    #[test]
    fn a_new_nbirth_starts_a_new_session() {
        let mut s = born();
        s.on_message(&dev("DBIRTH"), &dbirth(1), now());
        s.on_message(&topic(NODE), &nbirth(0, 4), now());
        assert_eq!(s.bd_seq(), Some(4));
        assert_eq!(s.online_devices().count(), 0);
        // The old session's will (bdSeq 3) arrives late: ignored.
        let out = s.on_message(&node("NDEATH"), &payload(None, vec![bd_seq(3)]), now());
        assert!(out.offline.is_empty());
        assert!(s.is_online());
    }

    #[test]
    fn ddeath_takes_one_device_offline() {
        let mut s = born();
        s.on_message(&dev("DBIRTH"), &dbirth(1), now());
        let out = s.on_message(&dev("DDEATH"), &payload(Some(2), vec![]), now());
        assert_eq!(out.offline.len(), 1);
        assert_eq!(out.offline[0].as_str(), "Plant_A:RTU_1:PRV-7");
        assert!(!out.rebirth_needed && out.problems.is_empty());
        assert_eq!(s.online_devices().count(), 0);
        assert!(s.is_online());
        // DDATA of the dead device asks for a rebirth; DDEATH needs its seq.
        let out = s.on_message(&dev("DDATA"), &payload(Some(3), vec![]), now());
        assert!(out.rebirth_needed);
        let out = s.on_message(&dev("DDEATH"), &payload(None, vec![]), now());
        assert_eq!(
            out.problems,
            vec![SparkplugError::MissingSeq {
                kind: MessageKind::DDeath
            }]
        );
    }
}
