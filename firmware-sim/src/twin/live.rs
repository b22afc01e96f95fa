//! The twin live: steps paced against the wall clock (`speed` simulated seconds per second;
//! 60 runs a day in 24 minutes) or as fast as the solver goes, with one Modbus TCP controller
//! per PRV of the network. Each controller is a `dma-inlet-rtu` device with the register map
//! ingest ships (`examples/modbus/dma-inlet-rtu.toml`, word orders and scales included), device
//! id `RTU-<PRV id>`:
//!
//! | point | register | value |
//! |---|---|---|
//! | `{device}-inlet-flow` | 0–1, f32 CDAB, L/s | flow through the valve |
//! | `{device}-inlet-total` | 2–3, u32, L | volume through the valve since the start (wraps) |
//! | `{device}-prv-inlet-p` | 4, u16, bar × 100 | pressure upstream (P1) |
//! | `{device}-prv-outlet-p` | 5, u16, m × 10 | pressure downstream (P2) |
//! | `{device}-prv-setpoint` | 10, u16, m × 10, writable 10–60 m | the outlet set point |
//!
//! A client writing the set point changes the valve's setting from the next step on, and so
//! the zone's pressures and leak flows: the dispatch centre's closed loop. A value outside the
//! point's writable range is refused like a controller would (the register reverts). Registers outside
//! the map answer `IllegalDataAddress`, and only the set point accepts writes.
//!
//! [`LiveTwin::state`] shows what the twin did (pressures, leak flows, settings, the writes
//! applied and at which step), for tests and for the operator.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use waterline_core::modbus::{self, MapTemplate, PointDef, RegisterMap};
use waterline_core::{DeviceId, Unit};

use super::{Twin, TwinError};
use crate::modbus_device::{ModbusTcpServer, RegisterBank};

/// The controllers' register map (the one shipped for ingest).
pub const CONTROLLER_MAP: &str = include_str!("../../../examples/modbus/dma-inlet-rtu.toml");
/// The controllers' device model name.
pub const CONTROLLER_MODEL: &str = "dma-inlet-rtu";

/// The device id of a PRV's controller.
pub fn controller_id(prv: &str) -> String {
    format!("RTU-{prv}")
}

/// The set-point point of a PRV's controller.
pub fn setpoint_sensor(prv: &str) -> String {
    format!("{}-prv-setpoint", controller_id(prv))
}

/// How to run live.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveConfig {
    /// Simulated seconds per wall-clock second; `None`: as fast as the solver goes.
    pub speed: Option<f64>,
    /// Address the controllers listen on, each on a free port.
    pub listen: IpAddr,
}

/// Receives the live twin's solved steps on its thread: the field devices
/// ([`crate::field`]) read their instruments here.
pub trait StepSink: Send {
    /// A solved step.
    fn step(&mut self, step: &super::Step<'_>) -> Result<(), TwinError>;
    /// The run of `twin` ended (all steps done or stopped) after the step at `last`.
    fn finish(&mut self, twin: &Twin, last: Option<DateTime<Utc>>) -> Result<(), TwinError>;
}

/// Optional parts of a live run.
#[derive(Default)]
pub struct LiveOptions {
    /// Run each step once its time has come on the wall clock, whatever the speed: steps in
    /// the past run at once (a back-fill that then goes on live).
    pub wall_clock: bool,
    /// Receives every solved step and the end of the run.
    pub sink: Option<Box<dyn StepSink>>,
}

impl std::fmt::Debug for LiveOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveOptions")
            .field("wall_clock", &self.wall_clock)
            .field("sink", &self.sink.is_some())
            .finish()
    }
}

/// One PRV controller on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Controller {
    pub prv: String,
    /// Its device id (`RTU-<PRV>`); the map's `{device}`.
    pub device: String,
    pub addr: SocketAddr,
}

/// A set point a client wrote, as the twin applied it.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedSetpoint {
    /// The first step solved with it.
    pub step: usize,
    pub prv: String,
    pub setting_m: f64,
}

/// What the live twin has done so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveState {
    /// Steps solved.
    pub steps_done: usize,
    /// Time of the last solved step.
    pub time: Option<DateTime<Utc>>,
    /// Pressure at every node after the last step, m (indexed like `Engine::nodes`).
    pub pressures_m: Vec<f64>,
    /// Flow of every placed leak after the last step, m³/h (like `Twin::leaks`).
    pub leak_flows_m3h: Vec<f64>,
    /// Each controller's current set point, m.
    pub settings_m: Vec<f64>,
    /// Set points written by clients, in order.
    pub applied: Vec<AppliedSetpoint>,
    /// Why the run stopped early, if it did.
    pub error: Option<String>,
    /// The run has ended (all steps done, stopped, or failed).
    pub finished: bool,
}

/// The points of one controller.
#[derive(Debug)]
struct Points {
    link: usize,
    flow: PointDef,
    total: PointDef,
    inlet_p: PointDef,
    outlet_p: PointDef,
    setpoint: PointDef,
}

impl Points {
    fn new(map: &RegisterMap, link: usize) -> Result<Self, TwinError> {
        let point = |suffix: &str| {
            map.points
                .iter()
                .find(|p| p.sensor.as_str().ends_with(suffix))
                .cloned()
                .ok_or_else(|| TwinError::Request(format!("controller map has no `{suffix}`")))
        };
        Ok(Points {
            link,
            flow: point("-inlet-flow")?,
            total: point("-inlet-total")?,
            inlet_p: point("-prv-inlet-p")?,
            outlet_p: point("-prv-outlet-p")?,
            setpoint: point("-prv-setpoint")?,
        })
    }

    /// Registers needed to hold every point.
    fn size(&self) -> u16 {
        [
            &self.flow,
            &self.total,
            &self.inlet_p,
            &self.outlet_p,
            &self.setpoint,
        ]
        .iter()
        .map(|p| p.address + modbus::register_count(p.value_type))
        .max()
        .unwrap_or(0)
    }
}

/// Sets `value` (canonical `from` units) at `def` in the bank, converted to the point's unit;
/// a value the registers cannot hold (a negative pressure in a u16) is clamped to the
/// nearest that fits.
pub(crate) fn put(bank: &RegisterBank, def: &PointDef, value: f64, from: Unit) {
    let v = from.convert(value, def.unit).unwrap_or(value);
    let words = modbus::device_registers(def, v)
        .or_else(|_| modbus::device_registers(def, v.max(0.0)))
        .or_else(|_| modbus::device_registers(def, 0.0));
    if let Ok(words) = words {
        bank.set(def.address, &words);
    }
}

/// The running live twin.
#[derive(Debug)]
pub struct LiveTwin {
    controllers: Vec<Controller>,
    servers: Vec<ModbusTcpServer>,
    state: Arc<Mutex<LiveState>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LiveTwin {
    /// Starts the controllers (on the calling tokio runtime) and the twin's steps (on a
    /// thread of their own).
    pub async fn start(twin: Twin, cfg: LiveConfig) -> Result<LiveTwin, TwinError> {
        Self::start_with(twin, cfg, LiveOptions::default()).await
    }

    /// [`Self::start`] with a wall-clock pace and/or a sink of the solved steps.
    pub async fn start_with(
        mut twin: Twin,
        cfg: LiveConfig,
        options: LiveOptions,
    ) -> Result<LiveTwin, TwinError> {
        if let Some(s) = cfg.speed
            && !(s.is_finite() && s > 0.0)
        {
            return Err(TwinError::Request(format!(
                "speed {s} must be a positive number of simulated seconds per second"
            )));
        }
        let template = MapTemplate::parse_toml(CONTROLLER_MODEL, CONTROLLER_MAP)
            .map_err(|e| TwinError::Request(format!("controller map: {e}")))?;
        let mut controllers = Vec::new();
        let mut servers = Vec::new();
        let mut points = Vec::new();
        let mut banks = Vec::new();
        for (link, l) in twin.engine().links().iter().enumerate() {
            if !l.prv {
                continue;
            }
            let device = controller_id(&l.id);
            let id = DeviceId::parse(device.as_str())
                .map_err(|e| TwinError::Request(format!("PRV {}: {e}", l.id)))?;
            let map = template
                .instantiate(&id)
                .map_err(|e| TwinError::Request(format!("PRV {}: {e}", l.id)))?;
            let p = Points::new(&map, link)?;
            let sp = &p.setpoint;
            let writable = sp.address..sp.address + modbus::register_count(sp.value_type);
            let bank =
                RegisterBank::new(p.size()).writable_only(std::iter::once(writable).collect());
            let setting = twin.engine().prv_setting_m(link).unwrap_or(0.0);
            put(&bank, sp, setting, Unit::Metre);
            let server = ModbusTcpServer::bind(SocketAddr::new(cfg.listen, 0), bank.clone())
                .await
                .map_err(|e| TwinError::Io(format!("PRV {} controller: {e}", l.id)))?;
            controllers.push(Controller {
                prv: l.id.clone(),
                device,
                addr: server.addr(),
            });
            servers.push(server);
            points.push(p);
            banks.push(bank);
        }
        let state = Arc::new(Mutex::new(LiveState {
            settings_m: points
                .iter()
                .map(|p| twin.engine().prv_setting_m(p.link).unwrap_or(0.0))
                .collect(),
            ..LiveState::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let state = state.clone();
            let stop = stop.clone();
            let prvs: Vec<String> = controllers.iter().map(|c| c.prv.clone()).collect();
            std::thread::Builder::new()
                .name("live-twin".into())
                .spawn(move || {
                    let LiveOptions {
                        wall_clock,
                        mut sink,
                    } = options;
                    let loop_cfg = LoopConfig {
                        live: &cfg,
                        wall_clock,
                    };
                    let mut result = step_loop(
                        &mut twin,
                        &loop_cfg,
                        &points,
                        &banks,
                        &prvs,
                        &state,
                        &stop,
                        sink.as_deref_mut(),
                    );
                    if let Some(sink) = sink.as_mut() {
                        let last = lock(&state).time;
                        // The first error wins: the run's (a stop included), else the sink's.
                        result = result.and(sink.finish(&twin, last));
                    }
                    let mut s = lock(&state);
                    if let Err(e) = result
                        && !stop.load(Ordering::Relaxed)
                    {
                        s.error = Some(e.to_string());
                    }
                    s.finished = true;
                })
                .map_err(|e| TwinError::Io(format!("cannot start the twin's thread: {e}")))?
        };
        Ok(LiveTwin {
            controllers,
            servers,
            state,
            stop,
            thread: Some(thread),
        })
    }

    /// The PRV controllers.
    pub fn controllers(&self) -> &[Controller] {
        &self.controllers
    }

    /// What the twin has done so far.
    pub fn state(&self) -> LiveState {
        lock(&self.state).clone()
    }

    /// Waits until `steps` steps are solved (or the run ended), polling every 10 ms.
    pub async fn wait_for_steps(&self, steps: usize, timeout: Duration) -> LiveState {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.state();
            if s.steps_done >= steps || s.finished || Instant::now() >= deadline {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the steps and the controllers.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for s in &mut self.servers {
            s.stop();
        }
    }
}

impl Drop for LiveTwin {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock(state: &Mutex<LiveState>) -> MutexGuard<'_, LiveState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Stop requested: ends the run early (not an error the state reports).
const STOPPED: &str = "stopped";

struct LoopConfig<'a> {
    live: &'a LiveConfig,
    wall_clock: bool,
}

#[allow(clippy::too_many_arguments)]
fn step_loop(
    twin: &mut Twin,
    cfg: &LoopConfig<'_>,
    points: &[Points],
    banks: &[RegisterBank],
    prvs: &[String],
    state: &Mutex<LiveState>,
    stop: &AtomicBool,
    mut sink: Option<&mut (dyn StepSink + 'static)>,
) -> Result<(), TwinError> {
    let started = Instant::now();
    let step_s = twin.config().step_s as f64;
    let mut totals_l = vec![0.0f64; points.len()];
    twin.run_with(
        |k, t| {
            if cfg.wall_clock {
                while Utc::now() < t {
                    if stop.load(Ordering::Relaxed) {
                        return Err(TwinError::Request(STOPPED.into()));
                    }
                    let wait = (t - Utc::now()).to_std().unwrap_or_default();
                    std::thread::sleep(wait.min(Duration::from_millis(20)));
                }
            } else if let Some(speed) = cfg.live.speed {
                let due = started + Duration::from_secs_f64(k as f64 * step_s / speed);
                while Instant::now() < due {
                    if stop.load(Ordering::Relaxed) {
                        return Err(TwinError::Request(STOPPED.into()));
                    }
                    std::thread::sleep((due - Instant::now()).min(Duration::from_millis(20)));
                }
            }
            if stop.load(Ordering::Relaxed) {
                return Err(TwinError::Request(STOPPED.into()));
            }
            let mut changes = Vec::new();
            for (i, (p, bank)) in points.iter().zip(banks).enumerate() {
                if bank.take_writes().is_empty() {
                    continue;
                }
                let sp = &p.setpoint;
                let words: Vec<u16> = (0..modbus::register_count(sp.value_type))
                    .map(|j| bank.get(sp.address + j))
                    .collect();
                let Ok(raw) = modbus::decode_registers(sp, &words) else {
                    continue;
                };
                // Like a real controller, refuse a set point outside its range: the register
                // goes back to the setting in force.
                if sp.writable.is_some_and(|w| !w.contains(raw)) {
                    let current = lock(state).settings_m[i];
                    put(bank, sp, current, Unit::Metre);
                    tracing::warn!(prv = %prvs[i], raw, "live twin: set point out of range, ignored");
                    continue;
                }
                let setting = sp.unit.convert(raw, Unit::Metre).unwrap_or(raw);
                changes.push((p.link, setting));
                let mut s = lock(state);
                s.settings_m[i] = setting;
                s.applied.push(AppliedSetpoint {
                    step: k,
                    prv: prvs[i].clone(),
                    setting_m: setting,
                });
                tracing::info!(prv = %prvs[i], setting, step = k, "live twin: set point written");
            }
            Ok(changes)
        },
        |step| {
            for ((p, bank), total) in points.iter().zip(banks).zip(&mut totals_l) {
                let link = &step.engine.links()[p.link];
                let flow = step.engine.flow_m3h(p.link);
                *total = (*total + flow.max(0.0) * step_s / 3.6) % 4_294_967_296.0;
                put(bank, &p.flow, flow / 3.6, Unit::LitrePerSecond);
                put(bank, &p.total, *total, Unit::Litre);
                put(
                    bank,
                    &p.inlet_p,
                    step.engine.pressure_m(link.from),
                    Unit::Metre,
                );
                put(
                    bank,
                    &p.outlet_p,
                    step.engine.pressure_m(link.to),
                    Unit::Metre,
                );
            }
            let mut s = lock(state);
            s.steps_done = step.index + 1;
            s.time = Some(step.time);
            s.pressures_m = (0..step.engine.nodes().len())
                .map(|n| step.engine.pressure_m(n))
                .collect();
            s.leak_flows_m3h = step.leak_flows_m3h.to_vec();
            drop(s);
            match sink.as_mut() {
                Some(sink) => sink.step(&step),
                None => Ok(()),
            }
        },
    )
}
