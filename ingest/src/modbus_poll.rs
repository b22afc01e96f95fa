//! Modbus polling: one task per device reads its register map (coalesced into as few requests
//! as the map allows) every poll interval and hands the values to the writer as a native
//! uplink on the internal topic `modbus/<device>/up`, so Modbus data is validated, converted,
//! batched and spooled exactly like MQTT data.
//!
//! Failure domains are kept apart (STYLE §5): a **device exception** (illegal address, device
//! busy, …) is data about the device — counted per device and code, the other requests of the
//! poll still run; a **transport error** or timeout drops the connection, which is re-opened
//! with capped exponential backoff and jitter. Devices are split between ingest processes by a
//! stable hash of their id ([`ModbusConfig::polls`]). [`write_point`] writes a set point with
//! a range check and read-back verification.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_modbus::client::{Client, Context, Reader, Writer};
use tokio_modbus::{ExceptionCode, Slave};
use waterline_core::codec::{NativeReading, NativeUplink, encode_native};
use waterline_core::modbus::{
    self, MapTemplate, ReadRequest, RegisterMap, Table, decode_read, decode_read_bits,
};
use waterline_core::{DeviceId, SensorId};

use crate::backoff::Backoff;
use crate::mqtt::Delivery;

/// Internal topic prefix of polled values.
pub const MODBUS_TOPIC_PREFIX: &str = "modbus";

/// How a device is reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// Modbus TCP (MBAP header).
    #[default]
    Tcp,
    /// Modbus RTU frames (with CRC) through a serial-to-TCP gateway.
    RtuOverTcp,
}

/// One polled device: `[[modbus.devices]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusDevice {
    /// Device id; `{device}` in the model's register map becomes this.
    pub id: String,
    /// `HOST:PORT` of the device or gateway.
    pub address: String,
    #[serde(default)]
    pub transport: Transport,
    /// Modbus unit (slave) id.
    #[serde(default = "default_unit")]
    pub unit_id: u8,
    /// Register-map model, a key of `[modbus.models]`.
    pub model: String,
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_unit() -> u8 {
    1
}
fn default_poll_ms() -> u64 {
    60_000
}
fn default_timeout_ms() -> u64 {
    3_000
}

/// `[modbus]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModbusConfig {
    pub enabled: bool,
    /// Register maps by device model: model name → path of its register-map TOML.
    pub models: BTreeMap<String, PathBuf>,
    pub devices: Vec<ModbusDevice>,
    /// This process polls the devices whose id hashes to `instance` modulo `instances`.
    pub instance: u32,
    pub instances: u32,
}

impl Default for ModbusConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            models: BTreeMap::new(),
            devices: Vec::new(),
            instance: 0,
            instances: 1,
        }
    }
}

/// Stable FNV-1a hash, so every process agrees on who polls which device.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl ModbusConfig {
    /// Whether this process polls `device`.
    pub fn polls(&self, device: &str) -> bool {
        fnv1a(device) % u64::from(self.instances.max(1)) == u64::from(self.instance)
    }

    /// Checks the values and loads every model's register map, instantiated per device.
    pub fn load(&self, base: &Path) -> Result<Vec<(ModbusDevice, RegisterMap)>, String> {
        if self.instances == 0 || self.instance >= self.instances {
            return Err(format!(
                "modbus.instance = {} must be below modbus.instances = {}",
                self.instance, self.instances
            ));
        }
        let mut templates = BTreeMap::new();
        for (model, path) in &self.models {
            let path = if path.is_absolute() {
                path.clone()
            } else {
                base.join(path)
            };
            let text = std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "modbus model `{model}`: cannot read {}: {e}",
                    path.display()
                )
            })?;
            let t = MapTemplate::parse_toml(model, &text)
                .map_err(|e| format!("modbus model `{model}` ({}): {e}", path.display()))?;
            templates.insert(model.clone(), t);
        }
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for d in &self.devices {
            if !seen.insert(d.id.clone()) {
                return Err(format!("modbus device `{}` is listed twice", d.id));
            }
            let id = DeviceId::parse(d.id.as_str()).map_err(|e| format!("modbus device: {e}"))?;
            d.address.parse::<SocketAddr>().map_err(|_| {
                format!(
                    "modbus device `{}`: address `{}` is not HOST:PORT with an IP address",
                    d.id, d.address
                )
            })?;
            if d.poll_interval_ms < 100 || d.timeout_ms == 0 {
                return Err(format!(
                    "modbus device `{}`: poll_interval_ms must be ≥ 100 and timeout_ms ≥ 1",
                    d.id
                ));
            }
            let template = templates.get(&d.model).ok_or_else(|| {
                format!(
                    "modbus device `{}`: model `{}` is not in [modbus.models]",
                    d.id, d.model
                )
            })?;
            let map = template
                .instantiate(&id)
                .map_err(|e| format!("modbus device `{}`: {e}", d.id))?;
            out.push((d.clone(), map));
        }
        Ok(out)
    }
}

/// Why a Modbus operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ModbusError {
    #[error("cannot reach {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no answer from {address} within {ms} ms")]
    Timeout { address: String, ms: u64 },
    #[error("transport error with {address}: {source}")]
    Transport {
        address: String,
        #[source]
        source: tokio_modbus::Error,
    },
    #[error("device {device} answered with exception {code:?}")]
    Exception { device: String, code: ExceptionCode },
    #[error("device {device} has no point `{sensor}`")]
    UnknownPoint { device: String, sensor: String },
    #[error(transparent)]
    Encode(#[from] modbus::EncodeError),
    #[error(transparent)]
    Decode(#[from] modbus::DecodeError),
    #[error("wrote {wrote} to `{sensor}` but read back {read}")]
    ReadBack {
        sensor: String,
        wrote: f64,
        read: f64,
    },
}

async fn connect(dev: &ModbusDevice) -> Result<Context, ModbusError> {
    let address = dev.address.clone();
    let ms = dev.timeout_ms;
    let stream = tokio::time::timeout(Duration::from_millis(ms), TcpStream::connect(&dev.address))
        .await
        .map_err(|_| ModbusError::Timeout {
            address: address.clone(),
            ms,
        })?
        .map_err(|source| ModbusError::Connect { address, source })?;
    let _ = stream.set_nodelay(true);
    let slave = Slave(dev.unit_id);
    Ok(match dev.transport {
        Transport::Tcp => tokio_modbus::client::tcp::attach_slave(stream, slave),
        Transport::RtuOverTcp => tokio_modbus::client::rtu::attach_slave(stream, slave),
    })
}

/// The answer to one read: words or bits.
enum Data {
    Words(Vec<u16>),
    Bits(Vec<bool>),
}

async fn read(
    ctx: &mut Context,
    dev: &ModbusDevice,
    req: &ReadRequest,
) -> Result<Result<Data, ExceptionCode>, ModbusError> {
    let fut = async {
        Ok::<_, tokio_modbus::Error>(match req.table {
            Table::Holding => ctx
                .read_holding_registers(req.start, req.count)
                .await?
                .map(Data::Words),
            Table::Input => ctx
                .read_input_registers(req.start, req.count)
                .await?
                .map(Data::Words),
            Table::Coil => ctx.read_coils(req.start, req.count).await?.map(Data::Bits),
            Table::DiscreteInput => ctx
                .read_discrete_inputs(req.start, req.count)
                .await?
                .map(Data::Bits),
        })
    };
    deadline(dev, fut).await
}

/// One request within the device's timeout: a timeout or transport failure is the error, the
/// device's answer (values or an exception) the value.
async fn deadline<T>(
    dev: &ModbusDevice,
    fut: impl std::future::Future<Output = Result<T, tokio_modbus::Error>>,
) -> Result<T, ModbusError> {
    let ms = dev.timeout_ms;
    tokio::time::timeout(Duration::from_millis(ms), fut)
        .await
        .map_err(|_| ModbusError::Timeout {
            address: dev.address.clone(),
            ms,
        })?
        .map_err(|source| ModbusError::Transport {
            address: dev.address.clone(),
            source,
        })
}

/// [`deadline`] with a device exception as an error too (writes and their read-backs).
async fn call<T>(
    dev: &ModbusDevice,
    fut: impl std::future::Future<Output = tokio_modbus::Result<T>>,
) -> Result<T, ModbusError> {
    deadline(dev, fut)
        .await?
        .map_err(|code| ModbusError::Exception {
            device: dev.id.clone(),
            code,
        })
}

/// One poll of every request in `plan`. Transport failures end the poll (the caller
/// reconnects); exceptions are counted and skipped.
async fn poll_once(
    ctx: &mut Context,
    dev: &ModbusDevice,
    map: &RegisterMap,
    plan: &[ReadRequest],
) -> Result<Vec<NativeReading>, ModbusError> {
    let now = Utc::now();
    let mut readings = Vec::new();
    for req in plan {
        let started = Instant::now();
        let answer = read(ctx, dev, req).await;
        metrics::histogram!("waterline_modbus_request_seconds", "device" => dev.id.clone())
            .record(started.elapsed().as_secs_f64());
        let values: Vec<(usize, f64)> = match answer? {
            Ok(Data::Words(words)) => decode_read(map, req, &words)
                .into_iter()
                .filter_map(|(i, r)| match r {
                    Ok(v) => Some((i, v)),
                    Err(e) => {
                        metrics::counter!("waterline_modbus_decode_errors_total", "device" => dev.id.clone())
                            .increment(1);
                        tracing::warn!(device = %dev.id, sensor = %map.points[i].sensor, error = %e, "register value not decodable");
                        None
                    }
                })
                .collect(),
            Ok(Data::Bits(bits)) => decode_read_bits(map, req, &bits),
            Err(code) => {
                metrics::counter!("waterline_modbus_exceptions_total", "device" => dev.id.clone(), "code" => format!("{code:?}"))
                    .increment(1);
                tracing::warn!(device = %dev.id, table = req.table.as_str(), start = req.start, count = req.count, ?code, "device exception");
                continue;
            }
        };
        for (i, value) in values {
            let def = &map.points[i];
            readings.push(NativeReading {
                sensor: def.sensor.clone(),
                value,
                unit: Some(def.unit),
                time: now,
            });
        }
    }
    Ok(readings)
}

/// Polls one device until `shutdown`, sending each poll's values to the writer.
pub(crate) async fn run_device(
    dev: ModbusDevice,
    map: RegisterMap,
    tx: mpsc::Sender<Delivery>,
    mut shutdown: watch::Receiver<bool>,
) {
    let plan = modbus::plan_reads(&map);
    let device = DeviceId::parse(dev.id.as_str()).expect("validated at load");
    let topic = format!("{MODBUS_TOPIC_PREFIX}/{}/up", dev.id);
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
    let up = metrics::gauge!("waterline_modbus_device_up", "device" => dev.id.clone());
    'connection: loop {
        let mut ctx = match connect(&dev).await {
            Ok(c) => c,
            Err(e) => {
                up.set(0.0);
                metrics::counter!("waterline_modbus_errors_total", "device" => dev.id.clone(), "kind" => "connect")
                    .increment(1);
                let delay = backoff.next_delay();
                tracing::warn!(device = %dev.id, error = %e, retry_in_ms = delay.as_millis() as u64, "Modbus device unreachable");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => continue 'connection,
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
        };
        up.set(1.0);
        let mut ticker = tokio::time::interval(Duration::from_millis(dev.poll_interval_ms));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            match poll_once(&mut ctx, &dev, &map, &plan).await {
                Ok(readings) => {
                    backoff.reset();
                    if readings.is_empty() {
                        continue;
                    }
                    let uplink = NativeUplink {
                        device: device.clone(),
                        time: None,
                        readings,
                        rejected: Vec::new(),
                    };
                    let delivery = Delivery::local(topic.clone(), encode_native(&uplink));
                    tokio::select! {
                        r = tx.send(delivery) => if r.is_err() { return },
                        _ = shutdown.wait_for(|s| *s) => return,
                    }
                }
                Err(e) => {
                    up.set(0.0);
                    metrics::counter!("waterline_modbus_errors_total", "device" => dev.id.clone(), "kind" => "transport")
                        .increment(1);
                    tracing::warn!(device = %dev.id, error = %e, "Modbus transport failed; reconnecting");
                    let delay = backoff.next_delay();
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => continue 'connection,
                        _ = shutdown.wait_for(|s| *s) => return,
                    }
                }
            }
        }
    }
}

/// Writes `value` (engineering units) to the writable point `sensor` of `dev` (holding
/// registers or a coil), then reads it back and checks that the device holds what was written
/// (to within the register's resolution). Returns the value read back. The caller records who
/// wrote what.
pub async fn write_point(
    dev: &ModbusDevice,
    map: &RegisterMap,
    sensor: &SensorId,
    value: f64,
) -> Result<f64, ModbusError> {
    let (_, def) = map.point(sensor).ok_or_else(|| ModbusError::UnknownPoint {
        device: dev.id.clone(),
        sensor: sensor.to_string(),
    })?;
    let (as_written, read) = if def.table == Table::Coil {
        // A coil (a pump or valve command, say): the bit written, then read back.
        let bit = modbus::encode_bit(def, value)?;
        let mut ctx = connect(dev).await?;
        call(dev, ctx.write_single_coil(def.address, bit)).await?;
        let back = call(dev, ctx.read_coils(def.address, 1)).await?;
        let _ = ctx.disconnect().await;
        let held = back.first().copied().unwrap_or(!bit);
        (held == bit, modbus::decode_bit(def, held))
    } else {
        let words = modbus::encode_registers(def, value)?;
        let mut ctx = connect(dev).await?;
        if words.len() == 1 {
            call(dev, ctx.write_single_register(def.address, words[0])).await?;
        } else {
            call(dev, ctx.write_multiple_registers(def.address, &words)).await?;
        }
        let back = call(
            dev,
            ctx.read_holding_registers(def.address, words.len() as u16),
        )
        .await?;
        let _ = ctx.disconnect().await;
        let read = modbus::decode_registers(def, &back)?;
        ((read - value).abs() <= def.scale.abs() / 2.0 + 1e-9, read)
    };
    if !as_written {
        return Err(ModbusError::ReadBack {
            sensor: sensor.to_string(),
            wrote: value,
            read,
        });
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_split_between_instances_stably() {
        let ids: Vec<String> = (0..300).map(|i| format!("RTU-{i}")).collect();
        let cfgs: Vec<ModbusConfig> = (0..3)
            .map(|i| ModbusConfig {
                instance: i,
                instances: 3,
                ..ModbusConfig::default()
            })
            .collect();
        for id in &ids {
            assert_eq!(
                cfgs.iter().filter(|c| c.polls(id)).count(),
                1,
                "{id} polled by one"
            );
        }
        for c in &cfgs {
            let n = ids.iter().filter(|id| c.polls(id)).count();
            assert!((60..=140).contains(&n), "roughly a third each: {n}");
        }
    }

    #[test]
    fn bad_device_entries_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("m.toml"),
            "[[point]]\nsensor = \"{device}-p\"\ntable = \"holding\"\naddress = 0\ntype = \"u16\"\nunit = \"m\"\n",
        )
        .unwrap();
        let mut cfg = ModbusConfig::default();
        cfg.models.insert("m".into(), PathBuf::from("m.toml"));
        let dev = |id: &str, addr: &str, model: &str| ModbusDevice {
            id: id.into(),
            address: addr.into(),
            transport: Transport::Tcp,
            unit_id: 1,
            model: model.into(),
            poll_interval_ms: 1000,
            timeout_ms: 1000,
        };
        cfg.devices = vec![dev("RTU-1", "127.0.0.1:502", "m")];
        let loaded = cfg.load(dir.path()).unwrap();
        assert_eq!(loaded[0].1.points[0].sensor.as_str(), "RTU-1-p");
        cfg.devices = vec![dev("RTU-1", "plc.local", "m")];
        assert!(cfg.load(dir.path()).unwrap_err().contains("not HOST:PORT"));
        cfg.devices = vec![dev("RTU-1", "127.0.0.1:502", "other")];
        assert!(cfg.load(dir.path()).unwrap_err().contains("model `other`"));
        cfg.devices = vec![
            dev("RTU-1", "127.0.0.1:502", "m"),
            dev("RTU-1", "127.0.0.1:503", "m"),
        ];
        assert!(cfg.load(dir.path()).unwrap_err().contains("twice"));
        cfg.devices = vec![];
        cfg.models.insert("x".into(), PathBuf::from("missing.toml"));
        assert!(cfg.load(dir.path()).unwrap_err().contains("cannot read"));
    }
}
