//! Water-quality analysers on Modbus TCP: a station the fleet puts on Modbus
//! ([`super::fleet::FleetConfig::modbus_stations`]) publishes nothing; its analyser serves the
//! register map ingest ships (`examples/modbus/quality-analyser.toml`: `f32` BADC input
//! registers, temperature as `i16` tenths) with the station's latest readings, and ingest
//! polls it. The device id is the station id, so the polled signals get the same sensor ids
//! as a station on MQTT (`<station>-cl2`, …). A reading the instrument did not deliver (a
//! dropout) leaves the register at its last value, as an analyser holds its display.

use std::net::{IpAddr, SocketAddr};

use waterline_core::modbus::{self, MapTemplate, PointDef};
use waterline_core::{DeviceId, SensorId};

use crate::modbus_device::{ModbusTcpServer, RegisterBank};
use crate::twin::TwinError;
use crate::twin::instruments::Measured;

/// The analysers' register map (the one shipped for ingest).
pub const ANALYSER_MAP: &str = include_str!("../../../examples/modbus/quality-analyser.toml");
/// The analysers' device model name.
pub const ANALYSER_MODEL: &str = "quality-analyser";

/// An analyser on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyserEndpoint {
    /// Device id (the station id): the map's `{device}`.
    pub device: String,
    pub addr: SocketAddr,
}

/// The points an analyser serves, by the instrument they show.
#[derive(Debug, Clone)]
pub struct AnalyserBank {
    bank: RegisterBank,
    points: Vec<(usize, PointDef)>,
}

impl AnalyserBank {
    /// Lays out the bank of station `device` whose signals are `sensors` (instrument index and
    /// id); every point of the map must be one of them.
    pub fn new(device: &str, sensors: &[(usize, SensorId)]) -> Result<Self, TwinError> {
        let bad = |e: String| TwinError::Request(format!("analyser {device}: {e}"));
        let template = MapTemplate::parse_toml(ANALYSER_MODEL, ANALYSER_MAP)
            .map_err(|e| bad(e.to_string()))?;
        let id = DeviceId::parse(device).map_err(|e| bad(e.to_string()))?;
        let map = template.instantiate(&id).map_err(|e| bad(e.to_string()))?;
        let mut points = Vec::new();
        for p in &map.points {
            let (i, _) = sensors
                .iter()
                .find(|(_, s)| *s == p.sensor)
                .ok_or_else(|| bad(format!("the station has no signal `{}`", p.sensor)))?;
            points.push((*i, p.clone()));
        }
        let size = points
            .iter()
            .map(|(_, p)| p.address + modbus::register_count(p.value_type))
            .max()
            .unwrap_or(0);
        Ok(Self {
            bank: RegisterBank::new(size).writable_only(Vec::new()),
            points,
        })
    }

    /// Shows this step's readings.
    pub fn update(&self, read: &[Measured]) {
        for m in read {
            for (i, def) in &self.points {
                if *i == m.sensor {
                    crate::twin::live::put(&self.bank, def, m.value, def.unit);
                }
            }
        }
    }

    /// The registers (for tests and the server).
    pub fn registers(&self) -> &RegisterBank {
        &self.bank
    }

    /// The map's points and the instruments they show.
    pub fn points(&self) -> &[(usize, PointDef)] {
        &self.points
    }
}

/// Running analysers.
#[derive(Debug, Default)]
pub struct Analysers {
    pub endpoints: Vec<AnalyserEndpoint>,
    pub banks: Vec<AnalyserBank>,
    servers: Vec<ModbusTcpServer>,
}

impl Analysers {
    /// Serves each `(station, bank)` on a free port of `listen`.
    pub async fn start(
        banks: Vec<(String, AnalyserBank)>,
        listen: IpAddr,
    ) -> Result<Self, TwinError> {
        let mut out = Analysers::default();
        for (device, bank) in banks {
            let server = ModbusTcpServer::bind(SocketAddr::new(listen, 0), bank.bank.clone())
                .await
                .map_err(|e| TwinError::Io(format!("analyser {device}: {e}")))?;
            out.endpoints.push(AnalyserEndpoint {
                device,
                addr: server.addr(),
            });
            out.servers.push(server);
            out.banks.push(bank);
        }
        Ok(out)
    }

    /// Stops serving.
    pub fn stop(&mut self) {
        for s in &mut self.servers {
            s.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_land_in_the_shipped_map_and_decode_back() {
        let channels = ["cl2", "turb", "ph", "temp", "cond", "toc"];
        let sensors: Vec<(usize, SensorId)> = channels
            .iter()
            .enumerate()
            .map(|(i, c)| (10 + i, SensorId::parse(format!("S6-{c}")).unwrap()))
            .collect();
        let bank = AnalyserBank::new("S6", &sensors).unwrap();
        let values = [0.52, 0.31, 7.43, 12.6, 312.5, 1.87];
        let read: Vec<Measured> = values
            .iter()
            .enumerate()
            .map(|(i, v)| Measured {
                sensor: 10 + i,
                value: *v,
                decimals: 2,
            })
            .collect();
        bank.update(&read);
        for (i, def) in bank.points() {
            let words: Vec<u16> = (0..modbus::register_count(def.value_type))
                .map(|j| bank.registers().get(def.address + j))
                .collect();
            let got = modbus::decode_registers(def, &words).unwrap();
            let want = values[i - 10];
            assert!(
                (got - want).abs() < 1e-4 * want.abs().max(1.0),
                "{}: {got} vs {want}",
                def.sensor
            );
        }
        // A station without one of the map's signals cannot be an analyser.
        let e = AnalyserBank::new("S6", &sensors[..5])
            .unwrap_err()
            .to_string();
        assert!(e.contains("S6-toc"), "{e}");
    }
}
