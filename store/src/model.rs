//! Records the store reads and writes.

use chrono::{DateTime, Utc};
use serde::Serialize;
use waterline_core::{DeviceId, Event, EventState, Reading, Resolution, Role, SensorId};

/// A device's place in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceStatus {
    /// Its data is stored.
    Active,
    /// Seen, but awaiting approval: its uplinks are kept aside.
    Pending,
    /// Retired: its uplinks are dead-lettered.
    Retired,
}

impl DeviceStatus {
    /// The name used in the store and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Active => "active",
            DeviceStatus::Pending => "pending",
            DeviceStatus::Retired => "retired",
        }
    }

    pub(crate) fn from_db(s: &str) -> Self {
        match s {
            "pending" => DeviceStatus::Pending,
            "retired" => DeviceStatus::Retired,
            _ => DeviceStatus::Active,
        }
    }
}

/// A device as the registry holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceRecord {
    pub id: String,
    pub status: DeviceStatus,
    pub protocol: Option<String>,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    /// Who registered it (CLI or API); `None` when it only registered itself by reporting.
    pub registered_by: Option<String>,
    pub registered_at: Option<DateTime<Utc>>,
    /// Last reported radio and power state, and when.
    pub rssi_dbm: Option<f64>,
    pub snr_db: Option<f64>,
    pub battery_percent: Option<f64>,
    pub health_at: Option<DateTime<Utc>>,
    /// Sparkplug B: online since its birth certificate, offline since its death (or its edge
    /// node's), and when that was received.
    pub online: Option<bool>,
    pub online_at: Option<DateTime<Utc>>,
    /// CJ/T 188 meter status: valve `open`, `closed` or `abnormal`, battery low, and when.
    pub valve: Option<String>,
    pub battery_low: Option<bool>,
    pub meter_status_at: Option<DateTime<Utc>>,
}

/// What a device reported about itself in one message (besides readings and radio health).
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceState {
    /// Sparkplug B birth (online) or death (offline) of the device or its edge node.
    Presence {
        device: DeviceId,
        online: bool,
        at: DateTime<Utc>,
    },
    /// A CJ/T 188 meter's status word.
    MeterStatus {
        device: DeviceId,
        /// `open`, `closed` or `abnormal`.
        valve: &'static str,
        battery_low: bool,
        at: DateTime<Utc>,
    },
}

/// A device seen in a batch: registered on first contact, `last_seen` advanced otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSeen {
    pub device: DeviceId,
    pub protocol: &'static str,
    pub at: DateTime<Utc>,
    /// Status given to the device if this is its first contact.
    pub status_if_new: DeviceStatus,
    /// Radio and power state reported with this message, if any.
    pub health: Option<waterline_core::codec::DeviceHealth>,
}

/// Input that could not be taken, kept with its raw bytes and the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub received_at: DateTime<Utc>,
    /// Which input path: `mqtt`, `modbus`, `api` …
    pub source: String,
    pub topic: Option<String>,
    pub reason: String,
    pub payload: Vec<u8>,
}

/// An uplink of a device awaiting approval.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingUplink {
    pub device: DeviceId,
    pub received_at: DateTime<Utc>,
    pub source: String,
    pub topic: Option<String>,
    pub payload: Vec<u8>,
}

/// Everything one ingest batch writes, committed in one transaction (on PostgreSQL, a large
/// batch's readings in two concurrent ones first, the rest after them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub readings: Vec<Reading>,
    pub dead_letters: Vec<DeadLetter>,
    pub pending: Vec<PendingUplink>,
    pub devices: Vec<DeviceSeen>,
    /// Held-back uplinks (by id) whose data this batch stores: deleted in the same
    /// transaction (for a large batch on PostgreSQL, the one after its readings).
    pub release_pending: Vec<i64>,
    /// Device states reported (applied after the devices are registered; an older state never
    /// overwrites a newer one).
    pub states: Vec<DeviceState>,
}

impl Batch {
    /// Whether the batch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.readings.is_empty() && self.holds_only_readings()
    }

    /// Whether the batch writes nothing but readings (if any).
    pub fn holds_only_readings(&self) -> bool {
        self.dead_letters.is_empty()
            && self.pending.is_empty()
            && self.devices.is_empty()
            && self.release_pending.is_empty()
            && self.states.is_empty()
    }
}

/// What committing a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Readings that were new.
    pub inserted: u64,
    /// Readings already stored under the same (series, time): ignored.
    pub duplicates: u64,
}

/// A sensor as stored: described by `network.toml`, or registered on first contact.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SensorRecord {
    pub id: String,
    pub kind: Option<String>,
    /// The sensor's own unit (readings without a unit are in it); the store holds canonical.
    pub unit: Option<String>,
    pub dma: Option<String>,
    pub station: Option<String>,
    pub role: Option<String>,
    /// Whether `network.toml` describes it.
    pub described: bool,
    pub last_time: Option<DateTime<Utc>>,
    pub last_value: Option<f64>,
}

/// A sensor registered on first contact because a payload named it with a unit.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSensor {
    pub id: SensorId,
    pub unit: waterline_core::Unit,
    pub device: Option<DeviceId>,
}

/// One raw point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub time: DateTime<Utc>,
    pub value: f64,
}

/// One aggregated bucket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BucketPoint {
    pub time: DateTime<Utc>,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
    pub count: i64,
}

/// A stored event with its lifecycle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    pub id: i64,
    #[serde(flatten)]
    pub event: Event,
    pub state: EventState,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolution: Option<Resolution>,
    pub resolution_note: Option<String>,
}

/// A stored dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDeadLetter {
    pub id: i64,
    pub letter: DeadLetter,
}

/// Who a bearer token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: i64,
    pub label: String,
    pub role: Role,
}
