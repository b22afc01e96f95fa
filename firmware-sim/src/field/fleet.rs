//! The field devices of a twin and what each carries:
//!
//! | device | id | carries | protocol | reads | uploads |
//! |---|---|---|---|---|---|
//! | DMA RTU | `RTU-<dma>` (`RTU-network` outside areas) | the area's flow meters and tank levels | native JSON | every step | every step |
//! | pressure logger | `PL-<sensor>` | one pressure point | native JSON | every step | every 15 min (a batch) |
//! | quality station | `QS-<station>` | the station's seven signals (six analyser signals and the flow) | native JSON | every step | every step |
//! | quality analyser on Modbus (the last `modbus_stations`) | `<station>` | the six analyser signals (the flow and any redundant analysers from `QS-<station>`) | Modbus TCP, polled by ingest | every step | — |
//! | smart meter | see below | its cumulative register (m³) | round robin over the four meter protocols | hourly | see below |
//!
//! Smart meters, by protocol (ids as ingest derives them):
//!
//! - native JSON (NB-IoT): device `MTR-<junction>`, sensor `<junction>-reg`, six hourly reads
//!   an upload;
//! - Sparkplug B: an AMI concentrator per area (edge node `AMI-<dma>` of group `waterline`),
//!   one Sparkplug device per meter, sensor `waterline:AMI-<dma>:<junction>:Volume`, a DDATA per
//!   read;
//! - ChirpStack v4 (LoRaWAN): DevEUI `57a7e411` + 8 hex digits, sensor
//!   `lora-<deveui>.volume_m3`, an uplink per read (with battery and radio figures);
//! - CJ/T 188: a wired M-Bus meter behind the area's gateway `GW-<dma>`, BCD address
//!   `2026` + 10 digits, sensor `cjt188-<address>`, a frame per read. CJ/T 188 frames carry
//!   no trustworthy time (ingest stamps them on receipt), so these meters only send while the
//!   simulated clock is the wall clock (`--realtime`), never in a back-fill.

use std::collections::BTreeMap;

use waterline_core::codec::cjt188::MeterAddress;
use waterline_core::codec::sparkplug;
use waterline_core::{DeviceId, SensorId};

use crate::twin::instruments::Instruments;
use crate::twin::sensors::{SensorSpec, Source};
use crate::twin::stations::Channel;
use crate::twin::{Twin, TwinError};

/// A meter's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MeterProtocol {
    Native,
    Sparkplug,
    Chirpstack,
    Cjt188,
}

impl MeterProtocol {
    pub const ALL: [MeterProtocol; 4] = [
        MeterProtocol::Native,
        MeterProtocol::Sparkplug,
        MeterProtocol::Chirpstack,
        MeterProtocol::Cjt188,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MeterProtocol::Native => "native",
            MeterProtocol::Sparkplug => "sparkplug",
            MeterProtocol::Chirpstack => "chirpstack",
            MeterProtocol::Cjt188 => "cjt188",
        }
    }
}

/// How a device reaches the broker.
#[derive(Debug, Clone, PartialEq)]
pub enum Wire {
    /// Native JSON on `<prefix>/<device>/up`.
    Native,
    /// A Sparkplug device `device` of edge node `node` (index into [`Fleet::nodes`]); its
    /// register metric's alias.
    Sparkplug {
        node: usize,
        device: String,
        alias: u64,
    },
    /// A LoRaWAN device behind ChirpStack.
    Chirpstack { dev_eui: String },
    /// A CJ/T 188 meter behind an M-Bus gateway.
    Cjt188 {
        address: MeterAddress,
        gateway: String,
    },
    /// Polled over Modbus TCP, not published ([`super::analysers`]).
    Modbus,
}

/// What a device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Rtu,
    PressureLogger,
    QualityStation,
    Meter,
}

/// One field device.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    /// The Waterline device id ingest derives for it.
    pub id: DeviceId,
    pub role: Role,
    pub wire: Wire,
    /// The instruments it reads ([`Instruments::ids`] indices) and their ids on the wire.
    pub sensors: Vec<(usize, SensorId)>,
    /// Steps between reads.
    pub read_every: usize,
    /// Reads per upload.
    pub reads_per_upload: usize,
}

/// How the fleet is laid out.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetConfig {
    /// Native uplink topic prefix (ingest's `mqtt.topic_prefix`).
    pub topic_prefix: String,
    pub sparkplug_group: String,
    /// ChirpStack application id in the topic.
    pub chirpstack_application: String,
    /// CJ/T 188 topic prefix (ingest's `mqtt.cjt188_prefix`).
    pub cjt188_prefix: String,
    /// Meter protocols, assigned round robin in meter order.
    pub meter_protocols: Vec<MeterProtocol>,
    /// Seconds between meter reads.
    pub meter_read_s: usize,
    /// Reads per upload of a native (NB-IoT) meter.
    pub native_meter_reads_per_upload: usize,
    /// Seconds of readings per pressure logger upload.
    pub logger_upload_s: usize,
    /// How many quality stations (the last ones) have a Modbus analyser that ingest polls
    /// instead of publishing over MQTT. Polled values carry the poll's time, so these
    /// stations have no history in a back-fill.
    pub modbus_stations: usize,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            topic_prefix: "waterline".into(),
            sparkplug_group: "waterline".into(),
            chirpstack_application: "waterline-sim".into(),
            cjt188_prefix: "cjt188".into(),
            meter_protocols: MeterProtocol::ALL.to_vec(),
            meter_read_s: 3600,
            native_meter_reads_per_upload: 6,
            logger_upload_s: 900,
            modbus_stations: 0,
        }
    }
}

/// The devices of a twin.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    pub config: FleetConfig,
    pub devices: Vec<Device>,
    /// Sparkplug edge nodes (`AMI-<dma>`).
    pub nodes: Vec<String>,
    /// The hydraulic sensors as the fleet reports them (meters as registers, with their wire
    /// ids), for `network.toml`.
    wire_specs: Vec<SensorSpec>,
    /// Export id → wire id of each meter.
    renamed: BTreeMap<String, String>,
}

fn bad(e: impl std::fmt::Display) -> TwinError {
    TwinError::Request(format!("field devices: {e}"))
}

fn device_id(s: &str) -> Result<DeviceId, TwinError> {
    DeviceId::parse(s).map_err(bad)
}

fn sensor_id(s: &str) -> Result<SensorId, TwinError> {
    SensorId::parse(s).map_err(bad)
}

impl Fleet {
    /// Lays out the devices reading `instruments` (chosen on `twin`) with `step_s` steps.
    pub fn new(
        instruments: &Instruments,
        twin: &Twin,
        config: FleetConfig,
    ) -> Result<Fleet, TwinError> {
        if config.meter_protocols.is_empty() {
            return Err(bad("no meter protocol configured"));
        }
        let step_s = twin.config().step_s;
        let per = |s: usize| (s / step_s).max(1);
        let area = |d: &Option<String>| d.clone().unwrap_or_else(|| "network".into());
        let mut devices = Vec::new();
        let mut rtus: BTreeMap<String, Vec<(usize, SensorId)>> = BTreeMap::new();
        let mut nodes: Vec<String> = Vec::new();
        let mut wire_specs = Vec::new();
        let mut renamed = BTreeMap::new();
        let mut meters = 0usize;
        let mut aliases: BTreeMap<usize, u64> = BTreeMap::new();
        for (i, s) in instruments.specs.iter().enumerate() {
            let mut spec = s.clone();
            match s.source {
                Source::Flow(_) | Source::Level(_) => {
                    rtus.entry(area(&s.dma))
                        .or_default()
                        .push((i, sensor_id(&s.id)?));
                }
                Source::Pressure(_) => devices.push(Device {
                    id: device_id(&format!("PL-{}", s.id))?,
                    role: Role::PressureLogger,
                    wire: Wire::Native,
                    sensors: vec![(i, sensor_id(&s.id)?)],
                    read_every: 1,
                    reads_per_upload: per(config.logger_upload_s),
                }),
                Source::Consumption(_) => {
                    let junction = s.id.strip_suffix("-amr").unwrap_or(&s.id);
                    let protocol = config.meter_protocols[meters % config.meter_protocols.len()];
                    meters += 1;
                    let (id, sensor, wire, reads) = match protocol {
                        MeterProtocol::Native => (
                            device_id(&format!("MTR-{junction}"))?,
                            sensor_id(&format!("{junction}-reg"))?,
                            Wire::Native,
                            config.native_meter_reads_per_upload.max(1),
                        ),
                        MeterProtocol::Sparkplug => {
                            let node_name = format!("AMI-{}", area(&s.dma));
                            let node = match nodes.iter().position(|n| *n == node_name) {
                                Some(n) => n,
                                None => {
                                    nodes.push(node_name.clone());
                                    nodes.len() - 1
                                }
                            };
                            let alias = aliases.entry(node).or_insert(0);
                            *alias += 1;
                            let id = sparkplug::device_id(
                                &config.sparkplug_group,
                                &node_name,
                                Some(junction),
                            )
                            .map_err(bad)?;
                            let sensor = sparkplug::sensor_id(&id, super::wire::VOLUME_METRIC)
                                .map_err(bad)?;
                            (
                                id,
                                sensor,
                                Wire::Sparkplug {
                                    node,
                                    device: junction.to_owned(),
                                    alias: *alias,
                                },
                                1,
                            )
                        }
                        MeterProtocol::Chirpstack => {
                            let dev_eui = format!("57a7e411{meters:08x}");
                            (
                                device_id(&format!("lora-{dev_eui}"))?,
                                sensor_id(&format!(
                                    "lora-{dev_eui}.{}",
                                    super::wire::VOLUME_FIELD
                                ))?,
                                Wire::Chirpstack { dev_eui },
                                1,
                            )
                        }
                        MeterProtocol::Cjt188 => {
                            let text = format!("2026{meters:010}");
                            let address = MeterAddress::parse(&text).map_err(bad)?;
                            (
                                device_id(&format!("cjt188-{text}"))?,
                                sensor_id(&format!("cjt188-{text}"))?,
                                Wire::Cjt188 {
                                    address,
                                    gateway: format!("GW-{}", area(&s.dma)),
                                },
                                1,
                            )
                        }
                    };
                    renamed.insert(s.id.clone(), sensor.to_string());
                    spec.id = sensor.to_string();
                    spec.register = true;
                    devices.push(Device {
                        id,
                        role: Role::Meter,
                        wire,
                        sensors: vec![(i, sensor)],
                        read_every: per(config.meter_read_s),
                        reads_per_upload: reads,
                    });
                }
            }
            wire_specs.push(spec);
        }
        for (a, sensors) in rtus {
            devices.push(Device {
                id: device_id(&format!("RTU-{a}"))?,
                role: Role::Rtu,
                wire: Wire::Native,
                sensors,
                read_every: 1,
                reads_per_upload: 1,
            });
        }
        let base = instruments.specs.len();
        if let Some(q) = instruments.quality() {
            let ids: Vec<&str> = instruments.ids().skip(base).collect();
            let stations = q.plan().stations.len();
            let per_station = q.plan().sensors_per_station();
            let first_modbus = stations.saturating_sub(config.modbus_stations);
            for (k, st) in q.plan().stations.iter().enumerate() {
                let sensors = (0..per_station)
                    .map(|c| {
                        let i = base + k * per_station + c;
                        Ok((i, sensor_id(ids[i - base])?))
                    })
                    .collect::<Result<Vec<_>, TwinError>>()?;
                let native = device_id(&format!("QS-{}", st.id))?;
                if k < first_modbus {
                    devices.push(Device {
                        id: native,
                        role: Role::QualityStation,
                        wire: Wire::Native,
                        sensors,
                        read_every: 1,
                        reads_per_upload: 1,
                    });
                    continue;
                }
                // The Modbus analyser serves the six signals its register map has; the
                // station's flow meter and redundant analysers report over native JSON.
                let analyser = Channel::ALL.iter().filter(|c| c.from_analyser()).count();
                let (six, redundant) = sensors.split_at(analyser.min(sensors.len()));
                devices.push(Device {
                    id: device_id(&st.id)?,
                    role: Role::QualityStation,
                    wire: Wire::Modbus,
                    sensors: six.to_vec(),
                    read_every: 1,
                    reads_per_upload: 1,
                });
                if !redundant.is_empty() {
                    devices.push(Device {
                        id: native,
                        role: Role::QualityStation,
                        wire: Wire::Native,
                        sensors: redundant.to_vec(),
                        read_every: 1,
                        reads_per_upload: 1,
                    });
                }
            }
        }
        Ok(Fleet {
            config,
            devices,
            nodes,
            wire_specs,
            renamed,
        })
    }

    /// The `network.toml` describing what the fleet sends (CONTRACTS §1): the export's, with
    /// customer meters as cumulative registers (kind volume, m³) under their wire ids.
    pub fn network_toml(&self, twin: &Twin, instruments: &Instruments) -> String {
        let points: Vec<_> = instruments
            .points
            .iter()
            .map(|p| {
                let mut p = p.clone();
                for m in &mut p.customer_meters {
                    if let Some(w) = self.renamed.get(m) {
                        *m = w.clone();
                    }
                }
                p
            })
            .collect();
        let mut toml = crate::twin::export::network_toml(twin, &self.wire_specs, &points);
        if let Some(q) = instruments.quality() {
            toml.push_str(&crate::twin::export::quality_toml(q.plan()));
        }
        toml
    }

    /// How many devices use each meter protocol.
    pub fn meters_by_protocol(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for d in &self.devices {
            let p = match d.wire {
                Wire::Native if d.role == Role::Meter => MeterProtocol::Native,
                Wire::Sparkplug { .. } => MeterProtocol::Sparkplug,
                Wire::Chirpstack { .. } => MeterProtocol::Chirpstack,
                Wire::Cjt188 { .. } => MeterProtocol::Cjt188,
                Wire::Native | Wire::Modbus => continue,
            };
            *out.entry(p.as_str()).or_insert(0) += 1;
        }
        out
    }
}
