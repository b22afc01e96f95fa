//! The twin's field devices on the wire: RTUs, pressure loggers, quality analysers and smart
//! meters reading the twin's instruments and publishing over MQTT in every payload format
//! ingest supports, misbehaving like real devices, while the PRV controllers serve Modbus TCP
//! ([`crate::twin::live`]).
//!
//! - [`fleet`]: which devices there are, what each reads, its protocol and ids.
//! - [`wire`]: the payloads (native JSON, Sparkplug B, ChirpStack v4, CJ/T 188).
//! - [`misbehave`]: duplicates, late and shuffled batches, corrupt payloads, clock skew,
//!   repeated hours, silent devices, battery decay — planned from the seed, in the truth.
//! - [`traffic`]: the messages step by step (pure, deterministic).
//! - [`publish`]: QoS 1 publishing, PUBACK counting, Sparkplug rebirth requests.
//! - [`analysers`]: quality analysers serving their readings on Modbus TCP.
//!
//! [`prepare`] lays the fleet out (its `network.toml` goes to the service first) and
//! [`Prepared::start`] runs it all: the twin steps as fast as it can (a back-fill), at a speed
//! factor, or on the wall clock (past steps at once, then live), and [`FieldRun::finish`]
//! reports what was sent and acknowledged, with the twin's and the misbehaviour's truth.

pub mod analysers;
pub mod fleet;
pub mod misbehave;
pub mod publish;
pub mod traffic;
pub mod wire;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use self::analysers::{AnalyserBank, AnalyserEndpoint, Analysers};
use self::fleet::{Fleet, FleetConfig};
use self::misbehave::Misbehaviour;
use self::publish::{BrokerConfig, PublishError, Published};
use self::traffic::{Clock, Expected, Outgoing, Traffic, TrafficStats};
use crate::twin::export::{self, LeakFlows};
use crate::twin::instruments::{Instruments, Measured};
use crate::twin::live::{Controller, LiveConfig, LiveOptions, LiveState, LiveTwin, StepSink};
use crate::twin::{Step, Twin, TwinError};

/// How to run the fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldConfig {
    pub broker: BrokerConfig,
    /// Speed and the Modbus controllers' address (`speed: None`: as fast as possible).
    pub live: LiveConfig,
    /// Steps run when their time comes on the wall clock (past ones at once).
    pub wall_clock: bool,
    /// Progress on stderr about every 5 % of the steps.
    pub progress: bool,
    /// Publish nothing until [`FieldRun::release`]: the Modbus controllers are up (their
    /// addresses known) but the twin waits, so a service can be configured for them and
    /// subscribe first.
    pub hold: bool,
}

/// What a run sent.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldReport {
    pub state: LiveState,
    pub traffic: TrafficStats,
    pub published: Published,
    /// The twin's truth (`truth.jsonl` lines of leaks, incidents and faults up to the last
    /// step run), as the export writes it.
    pub twin_truth: String,
    /// Misbehaviour truth lines.
    pub truth: Vec<serde_json::Value>,
    pub expected: Option<Expected>,
    pub seconds: f64,
}

/// A fleet laid out on its twin, ready to start.
#[derive(Debug)]
pub struct Prepared {
    twin: Twin,
    instruments: Instruments,
    traffic: Traffic,
    network_toml: String,
}

/// Lays out the fleet of `twin` (its instruments chosen with `tags`). The devices misbehave
/// as the twin says ([`Twin::device_misbehaviour`]); in ideal mode the instruments are exact
/// and the devices behave.
pub fn prepare(
    twin: Twin,
    tags: &crate::twin::inp::SensorTags,
    ideal: bool,
    fleet: FleetConfig,
) -> Result<Prepared, TwinError> {
    twin.device_misbehaviour()
        .check()
        .map_err(TwinError::Scenario)?;
    let instruments = Instruments::new(&twin, tags, ideal)?;
    let fleet = Fleet::new(&instruments, &twin, fleet)?;
    let network_toml = fleet.network_toml(&twin, &instruments);
    let c = twin.config();
    let misbehaviour = if ideal {
        Misbehaviour::none()
    } else {
        twin.device_misbehaviour().clone()
    };
    let traffic = Traffic::new(
        fleet,
        misbehaviour,
        c.seed,
        c.start,
        twin.time_of(c.steps),
        c.step_s,
    );
    Ok(Prepared {
        twin,
        instruments,
        traffic,
        network_toml,
    })
}

impl Prepared {
    /// The `network.toml` of what the fleet sends: give it to the service before starting.
    pub fn network_toml(&self) -> &str {
        &self.network_toml
    }

    /// The devices.
    pub fn fleet(&self) -> &Fleet {
        self.traffic.fleet()
    }

    /// Also keep the readings ingest should end up with ([`FieldReport::expected`]; tests).
    pub fn record_expected(mut self) -> Self {
        self.traffic = self.traffic.record_expected();
        self
    }

    /// Starts the publisher and the twin.
    pub async fn start(self, cfg: FieldConfig) -> Result<FieldRun, TwinError> {
        let Prepared {
            twin,
            instruments,
            traffic,
            network_toml,
        } = self;
        let c = twin.config().clone();
        let group = traffic.fleet().config.sparkplug_group.clone();
        let banks = traffic
            .fleet()
            .devices
            .iter()
            .filter(|d| d.wire == fleet::Wire::Modbus)
            .map(|d| {
                Ok((
                    d.id.to_string(),
                    AnalyserBank::new(d.id.as_str(), &d.sensors)?,
                ))
            })
            .collect::<Result<Vec<_>, TwinError>>()?;
        let analysers = Analysers::start(banks, cfg.live.listen).await?;
        let traffic = Arc::new(Mutex::new(traffic));
        let (tx, rx) = mpsc::channel(64);
        let rebirth = Arc::new(AtomicBool::new(false));
        let (release, mut gate) = tokio::sync::watch::channel(!cfg.hold);
        let publisher = {
            let (broker, rebirth) = (cfg.broker.clone(), rebirth.clone());
            tokio::spawn(async move {
                // Released, or the run dropped before: publish (nothing, then) and end.
                let _ = gate.wait_for(|go| *go).await;
                publish::publish(&broker, rx, &group, rebirth, Duration::from_secs(120)).await
            })
        };
        let sink = Sink {
            instruments,
            traffic: traffic.clone(),
            tx,
            rebirth,
            wall_clock: cfg.wall_clock,
            paced: cfg.live.speed.is_some(),
            step_s: c.step_s as i64,
            steps: c.steps,
            births_sent: false,
            progress: cfg.progress.then(Instant::now),
            read: Vec::new(),
            analysers: analysers.banks.clone(),
            flows: LeakFlows::new(twin.leaks().len()),
        };
        let live = LiveTwin::start_with(
            twin,
            cfg.live.clone(),
            LiveOptions {
                wall_clock: cfg.wall_clock,
                sink: Some(Box::new(sink)),
            },
        )
        .await?;
        Ok(FieldRun {
            live,
            analysers,
            traffic,
            publisher,
            release,
            started: Instant::now(),
            network_toml,
        })
    }
}

/// A running fleet.
pub struct FieldRun {
    live: LiveTwin,
    analysers: Analysers,
    traffic: Arc<Mutex<Traffic>>,
    publisher: JoinHandle<Result<Published, PublishError>>,
    release: tokio::sync::watch::Sender<bool>,
    started: Instant,
    network_toml: String,
}

impl std::fmt::Debug for FieldRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldRun")
            .field("controllers", &self.live.controllers())
            .field("state", &self.live.state().steps_done)
            .finish_non_exhaustive()
    }
}

fn lock(t: &Mutex<Traffic>) -> MutexGuard<'_, Traffic> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}

impl FieldRun {
    /// Lets a held run ([`FieldConfig::hold`]) publish.
    pub fn release(&self) {
        let _ = self.release.send(true);
    }

    /// The `network.toml` of what the fleet sends.
    pub fn network_toml(&self) -> &str {
        &self.network_toml
    }

    /// The PRV controllers (Modbus TCP).
    pub fn controllers(&self) -> &[Controller] {
        self.live.controllers()
    }

    /// The quality analysers on Modbus TCP (model [`analysers::ANALYSER_MODEL`]).
    pub fn analysers(&self) -> &[AnalyserEndpoint] {
        &self.analysers.endpoints
    }

    /// The twin's progress.
    pub fn state(&self) -> LiveState {
        self.live.state()
    }

    /// The misbehaviour truth so far.
    pub fn truth(&self) -> Vec<serde_json::Value> {
        lock(&self.traffic).truth().to_vec()
    }

    /// Counts of the messages sent so far.
    pub fn traffic(&self) -> TrafficStats {
        lock(&self.traffic).stats()
    }

    /// Waits until the last step has run, or until `stop` turns true.
    pub async fn wait(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            if self.live.state().finished || *stop.borrow() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Stops the twin (if still running), sends what the devices still hold and waits for the
    /// broker to acknowledge everything.
    pub async fn finish(self) -> Result<FieldReport, TwinError> {
        let FieldRun {
            mut live,
            mut analysers,
            traffic,
            publisher,
            release,
            started,
            ..
        } = self;
        let _ = release.send(true);
        // Joining the twin's thread drops the sink, which closes the publisher's channel.
        let live = tokio::task::spawn_blocking(move || {
            live.stop();
            live
        })
        .await
        .map_err(|e| TwinError::Io(format!("live twin: {e}")))?;
        let state = live.state();
        drop(live);
        analysers.stop();
        let published = publisher
            .await
            .map_err(|e| TwinError::Io(format!("publisher: {e}")))?
            .map_err(|e| TwinError::Io(format!("publisher: {e}")))?;
        if let Some(e) = &state.error {
            return Err(TwinError::Io(format!("live twin stopped: {e}")));
        }
        let t = lock(&traffic);
        Ok(FieldReport {
            state,
            traffic: t.stats(),
            published,
            twin_truth: t.twin_truth().to_owned(),
            truth: t.truth().to_vec(),
            expected: t.expected().cloned(),
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// The twin's side: reads the instruments at each step and hands the devices' messages to
/// the publisher (blocking when it falls behind, so a back-fill goes at the broker's pace).
struct Sink {
    instruments: Instruments,
    traffic: Arc<Mutex<Traffic>>,
    tx: mpsc::Sender<Vec<Outgoing>>,
    rebirth: Arc<AtomicBool>,
    wall_clock: bool,
    /// Paced at a speed factor (not as fast as possible).
    paced: bool,
    step_s: i64,
    steps: usize,
    births_sent: bool,
    progress: Option<Instant>,
    read: Vec<Measured>,
    analysers: Vec<AnalyserBank>,
    flows: LeakFlows,
}

impl Sink {
    fn clock_at(&self, t: DateTime<Utc>) -> Clock {
        let current = Utc::now() - t < TimeDelta::seconds(2 * self.step_s);
        match (self.wall_clock, self.paced) {
            (true, _) if current => Clock::RealTime,
            (false, true) => Clock::Paced,
            _ => Clock::Backfill,
        }
    }

    fn send(&self, out: Vec<Outgoing>) -> Result<(), TwinError> {
        if out.is_empty() {
            return Ok(());
        }
        self.tx
            .blocking_send(out)
            .map_err(|_| TwinError::Io("the MQTT publisher stopped".into()))
    }
}

impl StepSink for Sink {
    fn step(&mut self, step: &Step<'_>) -> Result<(), TwinError> {
        self.instruments.read(step, &mut self.read);
        self.flows.add(step, &self.instruments.specs);
        for a in &self.analysers {
            a.update(&self.read);
        }
        let clock = self.clock_at(step.time);
        let mut out = Vec::new();
        {
            let mut t = lock(&self.traffic);
            if !self.births_sent || self.rebirth.swap(false, Ordering::Relaxed) {
                out.extend(t.births(step.time));
                self.births_sent = true;
            }
            t.step(step.index, step.time, &self.read, clock, &mut out);
        }
        self.send(out)?;
        if let Some(started) = self.progress {
            let every = (self.steps / 20).max(1);
            if (step.index + 1).is_multiple_of(every) || step.index + 1 == self.steps {
                let s = lock(&self.traffic).stats();
                eprintln!(
                    "sim: {} / {} steps ({}%), {}, {} messages, {} readings, {:.1} s",
                    step.index + 1,
                    self.steps,
                    (step.index + 1) * 100 / self.steps.max(1),
                    crate::twin::export::rfc3339(step.time),
                    s.messages,
                    s.readings,
                    started.elapsed().as_secs_f64()
                );
            }
        }
        Ok(())
    }

    fn finish(&mut self, twin: &Twin, last: Option<DateTime<Utc>>) -> Result<(), TwinError> {
        let Some(last) = last else { return Ok(()) };
        let end = last + TimeDelta::seconds(self.step_s);
        let truth = export::truth(twin, &self.instruments, &self.flows, end);
        lock(&self.traffic).set_twin_truth(truth.text);
        let clock = self.clock_at(last);
        let mut out = Vec::new();
        {
            let mut t = lock(&self.traffic);
            t.finish(last, clock, &mut out);
            out.extend(t.deaths(last));
        }
        self.send(out)
    }
}
