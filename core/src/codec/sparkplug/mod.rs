//! Sparkplug B: protobuf payloads, topics, and the per-edge-node session state machine.
//!
//! Written against the Eclipse Sparkplug Specification **3.0.0** (chapters 4 "Topics and
//! Messages", 5 "Operational Behavior", 6 "Payloads") and the message definitions of
//! `sparkplug_b/sparkplug_b.proto` (eclipse/tahu). Pure code: no IO, no clock.
//!
//! Main items:
//! - [`Payload`], [`Metric`], [`MetricValue`], [`PropertySet`], [`PropertyValue`], [`MetaData`]:
//!   the protobuf messages, written by hand with `prost` derives and the `.proto`'s field
//!   numbers. `DataSet`, `Template` and extension values are kept as their raw encoded bytes
//!   ([`MetricValue::DatasetValue`] …), so they are tolerated and re-encoded verbatim but not
//!   interpreted. Unknown fields (the `.proto`'s `extensions 6 to max` …) are skipped on decode
//!   and not re-encoded.
//! - [`decode_payload`] / [`encode_payload`]; [`SparkplugError`] says why a payload, topic or
//!   message was refused precisely enough to be stored as a dead-letter reason.
//! - [`parse_topic`] / [`SparkplugTopic::parse`]: `spBv1.0/<group>/<type>/<edge node>[/<device>]`
//!   and `spBv1.0/STATE/<host id>`, into a [`SparkplugTopic`] with a [`MessageKind`].
//! - [`EdgeNodeState`]: what a host application must remember about one edge node (its
//!   session, `seq`, `bdSeq`, and the name ↔ alias ↔ datatype maps of its NBIRTH and DBIRTHs).
//!   [`EdgeNodeState::on_message`] turns one message into an [`Outcome`]: readings, rejected
//!   metrics, devices that came online or went offline, problems, and whether a rebirth must be
//!   requested — with [`rebirth_command`] building that NCMD.
//!
//! # Mapping to Waterline readings
//!
//! - Device id: `<group>:<edge node>` for node metrics (NBIRTH/NDATA) and
//!   `<group>:<edge node>:<device>` for device metrics (DBIRTH/DDATA) — see [`device_id`].
//! - Sensor id: `<device id>:<metric name>` — see [`sensor_id`]. In metric names `/` (the
//!   Sparkplug folder separator) becomes `.` and a space becomes `_`, so
//!   `Inlet/Flow Rate` → `Inlet.Flow_Rate`.
//! - Everywhere, a character Waterline ids do not allow (anything but letters, digits and
//!   `_ - .`) becomes `_`; that includes `:`, which is reserved as our separator (so no two
//!   topics can produce the same id by moving a `:` between parts). Distinct Sparkplug names
//!   that differ only in such characters (`a b` and `a_b`) map to the same id. Ids longer than
//!   [`MAX_ID_LEN`](crate::ids::MAX_ID_LEN) are rejected, not truncated.
//! - Values: the integer, float and boolean datatypes become `f64` (`false`/`true` → 0/1);
//!   signed integers are read as two's complement at their width, whether the sender
//!   sign-extended them to 32/64 bits (Tahu Java) or not (Tahu Python). Strings, bytes, files,
//!   arrays, DateTimes, datasets and templates are rejected with a reason, as are null
//!   (`is_null`), non-finite and value-less metrics. The datatype comes from the metric or,
//!   since DATA messages normally omit it, from the BIRTH that declared the metric.
//! - Not readings, and not rejected either: `bdSeq` and the `Node Control/…` and
//!   `Device Control/…` metrics, which are protocol, not measurements.
//! - Time: the metric's `timestamp` (ms since the epoch), else the payload's, else — only for
//!   metrics not flagged `is_historical` — the time the message was received.
//! - Unit: a property `engUnit` or `Engineering Units` (keys compared case-insensitively)
//!   whose string value parses as a [`Unit`](crate::units::Unit); otherwise the unit the BIRTH
//!   declared for that metric; otherwise none.

// Layout: `proto` (the protobuf messages and `DataType`), `payload` (decode/encode with size
// limits), `topic` (topics and message kinds), `ids` (Waterline ids), `rebirth` (the rebirth
// NCMD), `state` (the edge-node session state machine and `Outcome`), `readings` (metrics of a
// BIRTH or DATA into readings); `tests` holds fixtures shared by their tests.
mod ids;
mod payload;
mod proto;
mod readings;
mod rebirth;
mod state;
#[cfg(test)]
mod tests;
mod topic;

pub use ids::{device_id, sensor_id};
pub use payload::{MAX_DECODED_SIZE, MAX_PAYLOAD_LEN, decode_payload, encode_payload};
pub use proto::{
    DataType, MetaData, Metric, MetricValue, Payload, PropertySet, PropertySetList, PropertyValue,
    PropertyValueKind,
};
pub use rebirth::rebirth_command;
pub use state::{EdgeNodeState, Outcome};
pub use topic::{MessageKind, SparkplugTopic, parse_topic};

use crate::ids::IdError;

/// The topic namespace of Sparkplug B (spec "Topics and Messages → namespace Element").
pub const NAMESPACE: &str = "spBv1.0";
/// The name of the birth/death sequence metric of NBIRTH and NDEATH.
pub const BD_SEQ_METRIC: &str = "bdSeq";
/// The NCMD metric that asks an edge node for a new NBIRTH and DBIRTHs.
pub const REBIRTH_METRIC: &str = "Node Control/Rebirth";

/// Why a Sparkplug topic, payload or message was refused, or what was wrong with a message that
/// was still taken (see [`Outcome::problems`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SparkplugError {
    #[error("topic `{topic}` is not a Sparkplug B topic: {reason}")]
    BadTopic { topic: String, reason: String },
    #[error("payload of {len} bytes is larger than the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("payload would take about {estimate} bytes once decoded, more than the limit of {max}")]
    TooComplex { estimate: usize, max: usize },
    #[error("payload is not a Sparkplug B protobuf: {0}")]
    NotProtobuf(String),
    #[error("{kind} payload has no `seq`")]
    MissingSeq { kind: MessageKind },
    #[error("{kind} payload has `seq` {seq}, outside 0–255")]
    SeqOutOfRange { kind: MessageKind, seq: u64 },
    #[error(
        "{kind} has `seq` {got} where {expected} was expected: messages were lost or reordered"
    )]
    SeqGap {
        kind: MessageKind,
        expected: u8,
        got: u8,
    },
    #[error(
        "{kind} arrived while the edge node has no session (no NBIRTH since it started or died)"
    )]
    BeforeBirth { kind: MessageKind },
    #[error("{kind} for device `{device}`, which has no DBIRTH in this session")]
    UnknownDevice { kind: MessageKind, device: String },
    #[error("metric alias {alias} was not declared in the BIRTH")]
    UnknownAlias { alias: u64 },
    #[error("metric `{name}` was not declared in the BIRTH")]
    UnknownMetric { name: String },
    #[error(
        "NDEATH has bdSeq {death:?} but the session's NBIRTH had bdSeq {birth}: ignored as stale"
    )]
    BdSeqMismatch { birth: u64, death: Option<u64> },
    #[error("message of edge node `{got}` given to the state of edge node `{expected}`")]
    OtherEdgeNode { expected: String, got: String },
    #[error(transparent)]
    BadId(#[from] IdError),
}
