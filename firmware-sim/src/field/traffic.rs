//! What the fleet sends, step by step: each device reads its instruments on its schedule
//! (meters integrate consumption into their registers between reads), batches the reads into
//! uploads, and puts them on the wire in its protocol, misbehaving as planned
//! ([`super::misbehave`]). Pure and deterministic for a seed: the publisher
//! ([`super::publish`]) only carries the messages to the broker.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use rand::RngExt;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde_json::json;
use waterline_core::SensorId;

use super::fleet::{Fleet, Role, Wire};
use super::misbehave::{self, BATTERY_LOW_PERCENT, DevicePlan, Misbehaviour};
use super::wire::{self, Radio, WireReading};
use crate::twin::export::rfc3339;
use crate::twin::instruments::Measured;

/// A message to publish (QoS 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub topic: String,
    pub payload: Vec<u8>,
    /// Readings it carries (0 for births and deaths; counted for a malformed one too).
    pub readings: usize,
    /// Simulated time at which the device sends it.
    pub due: DateTime<Utc>,
}

/// How the simulated clock relates to the wall clock at a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// History sent as fast as it goes: devices catch up like loggers with a backlog, an
    /// upload per hour of reads at most (CJ/T 188 meters stay quiet: their frames carry no
    /// time).
    Backfill,
    /// Paced at a speed factor: devices upload on their own schedule; CJ/T 188 stays quiet.
    Paced,
    /// The simulated clock is the wall clock: everything on its own schedule.
    RealTime,
}

/// Counts of what was sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficStats {
    pub messages: u64,
    pub readings: u64,
    pub duplicates: u64,
    pub late: u64,
    pub out_of_order: u64,
    pub malformed: u64,
    /// CJ/T 188 reads not sent because the simulated clock was not the wall clock.
    pub cjt188_not_live: u64,
}

/// The readings ingest should hold after the run: the first value sent for each (sensor,
/// time) in a message that was not corrupted.
pub type Expected = BTreeMap<(SensorId, DateTime<Utc>), f64>;

/// The fleet in motion.
#[derive(Debug)]
pub struct Traffic {
    fleet: Fleet,
    plans: Vec<DevicePlan>,
    misbehaviour: Misbehaviour,
    rng: StdRng,
    start: DateTime<Utc>,
    step_h: f64,
    /// Per device: meter register, m³ (meters only).
    registers: Vec<f64>,
    /// Per device: reads not yet uploaded.
    pending: Vec<Vec<WireReading>>,
    /// Messages held back (late uploads), sent once their time comes.
    held: Vec<Outgoing>,
    /// Per Sparkplug node: the next `seq`.
    node_seq: Vec<u64>,
    bd_seq: u64,
    /// Per device: ChirpStack frame counter or CJ/T 188 sequence.
    counters: Vec<u32>,
    radio: Vec<Radio>,
    truth: Vec<serde_json::Value>,
    twin_truth: String,
    stats: TrafficStats,
    expected: Option<Expected>,
}

impl Traffic {
    /// Plans the fleet's misbehaviour over `[start, end)` (deterministic for `seed`).
    pub fn new(
        fleet: Fleet,
        misbehaviour: Misbehaviour,
        seed: u64,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step_s: usize,
    ) -> Traffic {
        let mut rng = crate::model::rng(seed ^ 0x00f1_e1d5);
        let meters: Vec<bool> = fleet
            .devices
            .iter()
            .map(|d| d.role == Role::Meter && !matches!(d.wire, Wire::Native))
            .collect();
        let plans = misbehave::plan(&misbehaviour, &meters, start, end, &mut rng);
        let registers = fleet
            .devices
            .iter()
            .map(|d| {
                if d.role == Role::Meter {
                    (rng.random_range(10.0..3000.0f64) * 1000.0).round() / 1000.0
                } else {
                    0.0
                }
            })
            .collect();
        let radio = fleet
            .devices
            .iter()
            .map(|_| Radio {
                rssi_dbm: rng.random_range(-118..-75),
                snr_db: (rng.random_range(-5.0..10.0f64) * 10.0).round() / 10.0,
            })
            .collect();
        let n = fleet.devices.len();
        let mut t = Traffic {
            node_seq: vec![0; fleet.nodes.len()],
            fleet,
            plans,
            misbehaviour,
            rng,
            start,
            step_h: step_s as f64 / 3600.0,
            registers,
            pending: vec![Vec::new(); n],
            held: Vec::new(),
            bd_seq: 0,
            counters: vec![0; n],
            radio,
            truth: Vec::new(),
            twin_truth: String::new(),
            stats: TrafficStats::default(),
            expected: None,
        };
        t.plan_truth(end);
        t
    }

    /// Also keep the readings ingest should end up with ([`Self::expected`]; for tests).
    pub fn record_expected(mut self) -> Self {
        self.expected = Some(Expected::new());
        self
    }

    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    pub fn stats(&self) -> TrafficStats {
        self.stats
    }

    /// Ground truth of the misbehaviour so far (JSON Lines objects, `kind: "misbehaviour"`).
    pub fn truth(&self) -> &[serde_json::Value] {
        &self.truth
    }

    /// The twin's own truth lines (leaks, incidents, faults), once the run has ended.
    pub fn twin_truth(&self) -> &str {
        &self.twin_truth
    }

    /// Keeps the twin's truth lines with the fleet's (set by the run at its end).
    pub fn set_twin_truth(&mut self, text: String) {
        self.twin_truth = text;
    }

    pub fn expected(&self) -> Option<&Expected> {
        self.expected.as_ref()
    }

    fn plan_truth(&mut self, end: DateTime<Utc>) {
        for (d, p) in self.fleet.devices.iter().zip(&self.plans) {
            let id = d.id.as_str();
            if p.skew_s != 0 {
                self.truth
                    .push(json!({"kind": "misbehaviour", "type": "clock_skew",
                    "device": id, "offset_s": p.skew_s}));
            }
            if let Some(w) = p.repeated_hour {
                self.truth
                    .push(json!({"kind": "misbehaviour", "type": "repeated_hour",
                    "device": id, "start": rfc3339(w.start), "end": rfc3339(w.end)}));
            }
            for w in &p.silent {
                self.truth
                    .push(json!({"kind": "misbehaviour", "type": "silent",
                    "device": id, "start": rfc3339(w.start), "end": rfc3339(w.end)}));
            }
            if p.battery_decay_per_day > 0.0 {
                let days = (100.0 - BATTERY_LOW_PERCENT) / p.battery_decay_per_day;
                let low = self.start + TimeDelta::seconds((days * 86_400.0) as i64);
                if low < end {
                    self.truth.push(json!({"kind": "misbehaviour", "type": "battery_low",
                        "device": id, "start": rfc3339(low),
                        "decay_percent_per_day": (p.battery_decay_per_day * 100.0).round() / 100.0}));
                }
            }
        }
    }

    fn note(&mut self, kind: &str, device: usize, at: DateTime<Utc>, extra: serde_json::Value) {
        let mut obj = json!({"kind": "misbehaviour", "type": kind,
            "device": self.fleet.devices[device].id.as_str(), "time": rfc3339(at)});
        if let (Some(o), serde_json::Value::Object(e)) = (obj.as_object_mut(), extra) {
            o.extend(e);
        }
        self.truth.push(obj);
    }

    /// The Sparkplug births (NBIRTH of every node, DBIRTH of every meter) at `at`: sent at the
    /// start and again when ingest asks for a rebirth.
    pub fn births(&mut self, at: DateTime<Utc>) -> Vec<Outgoing> {
        let group = self.fleet.config.sparkplug_group.clone();
        let mut out = Vec::new();
        for (n, node) in self.fleet.nodes.iter().enumerate() {
            out.push(Outgoing {
                topic: wire::sparkplug_topic(&group, "NBIRTH", node, None),
                payload: wire::sparkplug_node_birth(self.bd_seq, at),
                readings: 0,
                due: at,
            });
            self.node_seq[n] = 1;
            for (i, d) in self.fleet.devices.iter().enumerate() {
                let Wire::Sparkplug {
                    node: dn,
                    device,
                    alias,
                } = &d.wire
                else {
                    continue;
                };
                if *dn != n {
                    continue;
                }
                let seq = self.node_seq[n];
                self.node_seq[n] = (seq + 1) % 256;
                let value = round(self.registers[i], 3);
                if let Some(e) = self.expected.as_mut() {
                    e.entry((d.sensors[0].1.clone(), at)).or_insert(value);
                }
                out.push(Outgoing {
                    topic: wire::sparkplug_topic(&group, "DBIRTH", node, Some(device)),
                    payload: wire::sparkplug_device_birth(seq, *alias, value, at),
                    readings: 1,
                    due: at,
                });
            }
        }
        self.stats.messages += out.len() as u64;
        out
    }

    /// The NDEATH of every node (a graceful stop at `at`), with the current `bdSeq`.
    pub fn deaths(&mut self, at: DateTime<Utc>) -> Vec<Outgoing> {
        let group = self.fleet.config.sparkplug_group.clone();
        let out: Vec<Outgoing> = self
            .fleet
            .nodes
            .iter()
            .map(|node| Outgoing {
                topic: wire::sparkplug_topic(&group, "NDEATH", node, None),
                payload: wire::sparkplug_node_death(self.bd_seq),
                readings: 0,
                due: at,
            })
            .collect();
        self.bd_seq += 1;
        self.stats.messages += out.len() as u64;
        out
    }

    /// Takes solved step `k` at `t` with what the instruments read; appends the messages due
    /// by `t` to `out`.
    pub fn step(
        &mut self,
        k: usize,
        t: DateTime<Utc>,
        measured: &[Measured],
        clock: Clock,
        out: &mut Vec<Outgoing>,
    ) {
        let mut value: BTreeMap<usize, f64> = BTreeMap::new();
        for m in measured {
            value.insert(m.sensor, round(m.value, m.decimals));
        }
        for i in 0..self.fleet.devices.len() {
            if self.fleet.devices[i].wire == Wire::Modbus {
                continue; // polled, not published
            }
            let role = self.fleet.devices[i].role;
            // A meter's register at `t` holds what went through it before `t`; this step's
            // consumption is added after the read.
            if role == Role::Meter {
                let (s, _) = self.fleet.devices[i].sensors[0];
                let litres_per_h = value.get(&s).copied().unwrap_or(0.0).max(0.0);
                let read = self.registers[i];
                self.registers[i] += litres_per_h / 1000.0 * self.step_h;
                let d = &self.fleet.devices[i];
                if k.is_multiple_of(d.read_every) && !self.plans[i].is_silent(t) {
                    self.pending[i].push(WireReading {
                        sensor: d.sensors[0].1.clone(),
                        value: round(read, 3),
                        time: self.plans[i].stamp(t),
                    });
                }
            }
            let d = &self.fleet.devices[i];
            if !k.is_multiple_of(d.read_every) || self.plans[i].is_silent(t) {
                continue;
            }
            let stamp = self.plans[i].stamp(t);
            if role != Role::Meter {
                for (s, id) in &d.sensors {
                    if let Some(v) = value.get(s) {
                        self.pending[i].push(WireReading {
                            sensor: id.clone(),
                            value: *v,
                            time: stamp,
                        });
                    }
                }
            }
            let reads = self.pending[i]
                .iter()
                .map(|r| r.time)
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            let per_upload = match (clock, &d.wire) {
                (Clock::Backfill, Wire::Native) => d.reads_per_upload.max(self.reads_per_hour(i)),
                _ => d.reads_per_upload,
            };
            if reads >= per_upload {
                self.upload(i, t, clock, out);
            }
        }
        self.release(t, out);
    }

    /// Reads a device takes in an hour.
    fn reads_per_hour(&self, i: usize) -> usize {
        let per_read_h = self.fleet.devices[i].read_every as f64 * self.step_h;
        ((1.0 / per_read_h).floor() as usize).max(1)
    }

    /// Sends what is still pending and held back (the end of the run).
    pub fn finish(&mut self, t: DateTime<Utc>, clock: Clock, out: &mut Vec<Outgoing>) {
        for i in 0..self.fleet.devices.len() {
            if !self.pending[i].is_empty() {
                self.upload(i, t, clock, out);
            }
        }
        self.release(DateTime::<Utc>::MAX_UTC, out);
    }

    fn release(&mut self, t: DateTime<Utc>, out: &mut Vec<Outgoing>) {
        if self.held.is_empty() {
            return;
        }
        self.held.sort_by_key(|o| o.due);
        let n = self.held.partition_point(|o| o.due <= t);
        out.extend(self.held.drain(..n));
    }

    fn upload(&mut self, i: usize, t: DateTime<Utc>, clock: Clock, out: &mut Vec<Outgoing>) {
        let mut readings = std::mem::take(&mut self.pending[i]);
        if readings.is_empty() {
            return;
        }
        let d = self.fleet.devices[i].clone();
        let days = (t - self.start).num_seconds() as f64 / 86_400.0;
        let battery = self.plans[i].battery_percent(days);
        let mut shuffled = false;
        let (topic, payload) = match &d.wire {
            Wire::Native => {
                if readings.len() > 1 && self.rng.random_bool(self.misbehaviour.out_of_order_rate) {
                    readings.shuffle(&mut self.rng);
                    shuffled = true;
                }
                (
                    wire::native_topic(&self.fleet.config.topic_prefix, &d.id),
                    wire::native(&d.id, &readings),
                )
            }
            Wire::Sparkplug {
                node,
                device,
                alias,
            } => {
                let seq = self.node_seq[*node];
                self.node_seq[*node] = (seq + 1) % 256;
                let values: Vec<(f64, DateTime<Utc>)> =
                    readings.iter().map(|r| (r.value, r.time)).collect();
                (
                    wire::sparkplug_topic(
                        &self.fleet.config.sparkplug_group,
                        "DDATA",
                        &self.fleet.nodes[*node],
                        Some(device),
                    ),
                    wire::sparkplug_device_data(seq, *alias, &values),
                )
            }
            Wire::Chirpstack { dev_eui } => {
                // One uplink per read: the decoded object has one time.
                let r = readings.pop().expect("not empty");
                readings = vec![r];
                self.counters[i] = self.counters[i].wrapping_add(1);
                (
                    wire::chirpstack_topic(&self.fleet.config.chirpstack_application, dev_eui),
                    wire::chirpstack_uplink(
                        dev_eui,
                        self.counters[i],
                        readings[0].value,
                        Some(battery),
                        self.radio[i],
                        readings[0].time,
                    ),
                )
            }
            Wire::Modbus => return,
            Wire::Cjt188 { address, gateway } => {
                if clock != Clock::RealTime {
                    self.stats.cjt188_not_live += readings.len() as u64;
                    return;
                }
                let r = readings.pop().expect("not empty");
                readings = vec![r];
                self.counters[i] = self.counters[i].wrapping_add(1);
                (
                    wire::cjt188_topic(&self.fleet.config.cjt188_prefix, gateway),
                    wire::cjt188_frame(
                        address,
                        self.counters[i] as u8,
                        readings[0].value,
                        battery < BATTERY_LOW_PERCENT,
                    ),
                )
            }
        };
        let stateful = matches!(d.wire, Wire::Sparkplug { .. });
        let mut msg = Outgoing {
            topic,
            payload,
            readings: readings.len(),
            due: t,
        };
        if shuffled {
            self.stats.out_of_order += 1;
            self.note("out_of_order", i, t, json!({"readings": readings.len()}));
        }
        // Sparkplug streams are sequenced: corrupting, repeating or holding one back would
        // break the sequence (ingest asks for a rebirth), which is not this misbehaviour.
        let corrupted = !stateful && self.rng.random_bool(self.misbehaviour.malformed_rate);
        if corrupted {
            corrupt(&d.wire, &mut msg.payload);
            self.stats.malformed += 1;
            self.note(
                "malformed",
                i,
                t,
                json!({"topic": msg.topic, "readings_lost": readings.len()}),
            );
        } else if let Some(e) = self.expected.as_mut() {
            // CJ/T 188 readings are stamped by ingest on receipt: not comparable by time.
            if !matches!(d.wire, Wire::Cjt188 { .. }) {
                for r in &readings {
                    e.entry((r.sensor.clone(), r.time)).or_insert(r.value);
                }
            }
        }
        self.stats.messages += 1;
        self.stats.readings += readings.len() as u64;
        if !stateful && readings.len() > 1 && self.rng.random_bool(self.misbehaviour.late_rate) {
            let delay = self.rng.random_range(3600..=6 * 3600);
            msg.due = t + TimeDelta::seconds(delay);
            self.stats.late += 1;
            self.note("late", i, t, json!({"delay_s": delay}));
            self.held.push(msg);
            return;
        }
        // (A corrupted message is not repeated: one bad message, one dead letter.)
        if !stateful && !corrupted && self.rng.random_bool(self.misbehaviour.duplicate_rate) {
            self.stats.duplicates += 1;
            self.stats.messages += 1;
            self.note("duplicate", i, t, json!({"topic": msg.topic}));
            out.push(msg.clone());
        }
        out.push(msg);
    }
}

fn round(v: f64, decimals: usize) -> f64 {
    let f = 10f64.powi(decimals as i32);
    (v * f).round() / f
}

/// Corrupts a payload the way a bad link or firmware does: JSON cut short, or a CJ/T 188
/// frame with a wrong checksum.
fn corrupt(wire: &Wire, payload: &mut Vec<u8>) {
    match wire {
        Wire::Cjt188 { .. } => {
            let n = payload.len();
            if n >= 2 {
                payload[n - 2] ^= 0x5A;
            }
        }
        _ => payload.truncate(payload.len() / 2),
    }
}
