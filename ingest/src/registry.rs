//! What ingest knows about sensors (kind, unit) and devices (status), loaded from the store and
//! refreshed periodically so that approvals made elsewhere take effect.

use std::collections::HashMap;

use waterline_core::{DeviceId, SensorId, SensorKind, Unit};
use waterline_store::{DeviceStatus, Store, StoreError};

/// A sensor's kind (when described) and own unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SensorInfo {
    pub kind: Option<SensorKind>,
    pub unit: Option<Unit>,
}

/// In-memory view of the sensor and device registry.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    sensors: HashMap<SensorId, SensorInfo>,
    devices: HashMap<DeviceId, DeviceStatus>,
}

impl Registry {
    /// Loads sensors and devices from the store.
    pub async fn load(store: &Store) -> Result<Registry, StoreError> {
        let mut reg = Registry::default();
        for s in store.sensors().await? {
            let Ok(id) = SensorId::parse(s.id) else {
                continue;
            };
            reg.sensors.insert(
                id,
                SensorInfo {
                    kind: s.kind.and_then(|k| k.parse().ok()),
                    unit: s.unit.and_then(|u| u.parse().ok()),
                },
            );
        }
        for d in store.devices().await? {
            if let Ok(id) = DeviceId::parse(d.id) {
                reg.devices.insert(id, d.status);
            }
        }
        Ok(reg)
    }

    /// The sensor, if registered.
    pub fn sensor(&self, id: &SensorId) -> Option<SensorInfo> {
        self.sensors.get(id).copied()
    }

    /// Records what is known of a sensor.
    pub fn set_sensor(&mut self, id: SensorId, info: SensorInfo) {
        self.sensors.insert(id, info);
    }

    /// Records a sensor registered on first contact.
    pub fn add_sensor(&mut self, id: SensorId, unit: Unit) {
        self.sensors.entry(id).or_insert(SensorInfo {
            kind: None,
            unit: Some(unit),
        });
    }

    /// The device's status, if registered.
    pub fn device(&self, id: &DeviceId) -> Option<DeviceStatus> {
        self.devices.get(id).copied()
    }

    /// Records a device's status.
    pub fn set_device(&mut self, id: DeviceId, status: DeviceStatus) {
        self.devices.insert(id, status);
    }
}
