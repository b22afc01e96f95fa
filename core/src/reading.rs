//! A reading: one value of one sensor at one instant, in the canonical unit of its kind.

use chrono::{DateTime, Utc};

use crate::ids::SensorId;

/// One stored measurement. `value` is in the canonical unit of the sensor's kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub sensor: SensorId,
    pub time: DateTime<Utc>,
    pub value: f64,
}

impl Reading {
    /// A reading of `value` (canonical unit) for `sensor` at `time`.
    pub fn new(sensor: SensorId, time: DateTime<Utc>, value: f64) -> Self {
        Self {
            sensor,
            time,
            value,
        }
    }
}
