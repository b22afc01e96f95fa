//! The binary's [`SetpointWriter`]: a PRV's set point goes to the Modbus point the network
//! names as its `setpoint_sensor`, on whichever configured device has that point, through
//! ingest's verified write ([`write_point`]: write, then read back).

use std::collections::HashMap;

use waterline_core::modbus::RegisterMap;
use waterline_core::{Network, PrvId, SensorId, Unit};
use waterline_dashboards::{SetpointError, SetpointWriter, SetpointWritten, WriteFuture};
use waterline_ingest::modbus_poll::{ModbusDevice, ModbusError, write_point};

/// PRV set points over Modbus.
#[derive(Debug)]
pub struct ModbusSetpoints {
    /// Each PRV of the network and its set-point point, if any.
    prvs: HashMap<PrvId, Option<SensorId>>,
    devices: Vec<(ModbusDevice, RegisterMap)>,
}

impl ModbusSetpoints {
    /// The writer for `network`'s PRVs and the configured Modbus `devices`.
    pub fn new(network: &Network, devices: Vec<(ModbusDevice, RegisterMap)>) -> Self {
        ModbusSetpoints {
            prvs: network
                .prvs
                .iter()
                .map(|p| (p.id.clone(), p.setpoint_sensor.clone()))
                .collect(),
            devices,
        }
    }

    async fn write_m(&self, prv: &PrvId, setting_m: f64) -> Result<SetpointWritten, SetpointError> {
        let sensor = self
            .prvs
            .get(prv)
            .ok_or(SetpointError::UnknownPrv)?
            .as_ref()
            .ok_or_else(|| {
                SetpointError::NotWritable(format!(
                    "PRV {prv} has no setpoint_sensor in network.toml"
                ))
            })?;
        let (dev, map, def) = self
            .devices
            .iter()
            .find_map(|(d, m)| m.point(sensor).map(|(_, def)| (d, m, def)))
            .ok_or_else(|| {
                SetpointError::NotWritable(format!(
                    "PRV {prv}: no [[modbus.devices]] entry has the point `{sensor}`"
                ))
            })?;
        // The register map may count the set point in another pressure unit.
        let value = Unit::Metre
            .convert(setting_m, def.unit)
            .map_err(|e| SetpointError::NotWritable(format!("PRV {prv}: point `{sensor}`: {e}")))?;
        let read = write_point(dev, map, sensor, value)
            .await
            .map_err(|e| match e {
                ModbusError::Encode(e) => SetpointError::OutOfRange(e.to_string()),
                ModbusError::UnknownPoint { .. } => SetpointError::NotWritable(e.to_string()),
                e => SetpointError::Device(e.to_string()),
            })?;
        let read_back_m = def
            .unit
            .convert(read, Unit::Metre)
            .map_err(|e| SetpointError::Device(e.to_string()))?;
        Ok(SetpointWritten {
            target: format!("{}/{sensor}", dev.id),
            read_back_m,
        })
    }
}

impl SetpointWriter for ModbusSetpoints {
    fn write<'a>(&'a self, prv: &'a PrvId, setting_m: f64) -> WriteFuture<'a> {
        Box::pin(self.write_m(prv, setting_m))
    }
}
