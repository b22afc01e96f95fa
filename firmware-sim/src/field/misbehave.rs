//! Device misbehaviour: what real field devices do to a telemetry service, at configurable
//! rates, deterministic for a seed, and every instance written to the ground truth.
//!
//! | misbehaviour | what the device does | what ingest must do |
//! |---|---|---|
//! | `duplicate` | sends a message twice | store it once |
//! | `late` | holds a batched upload back for hours | accept it late, out of order |
//! | `out_of_order` | lists a batch's readings in shuffled order | store them all |
//! | `malformed` | sends a corrupted payload | dead-letter it; lose nothing else |
//! | `clock_skew` | stamps readings with a clock that is off by minutes | (stored as sent) |
//! | `repeated_hour` | its local clock falls back an hour (a DST change done wrong): one hour of readings is stamped an hour early | keep the first value of each key |
//! | `silent` | sends nothing for hours | list it as silent |
//! | `battery` | meters' batteries decay; below 20 % they say so | store the state |
//!
//! Configured by the scenario's `[devices]` table (all keys optional):
//!
//! ```toml
//! [devices]
//! duplicate_rate = 0.01        # share of messages sent twice
//! late_rate = 0.02             # share of batched uploads held back 1–6 h
//! out_of_order_rate = 0.05     # share of batches sent in shuffled order
//! malformed_rate = 0.002       # share of messages corrupted on the wire
//! clock_skew_rate = 0.05       # share of devices whose clock is 1–10 min off
//! repeated_hours = 1           # devices whose clock falls back an hour once
//! silent_per_week = 1          # devices going silent for 2–12 h, per simulated week
//! battery_decay_per_day = 0.2  # meters' mean battery loss, % per day (some decay 10× faster)
//! ```
//!
//! `--ideal` turns all of it off ([`Misbehaviour::none`]).

use chrono::{DateTime, TimeDelta, Utc};
use rand::RngExt;
use rand::rngs::StdRng;
use serde::Deserialize;

/// Battery level below which a meter reports its battery as low, %.
pub const BATTERY_LOW_PERCENT: f64 = 20.0;

/// Rates of device misbehaviour.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Misbehaviour {
    pub duplicate_rate: f64,
    pub late_rate: f64,
    pub out_of_order_rate: f64,
    pub malformed_rate: f64,
    pub clock_skew_rate: f64,
    pub repeated_hours: usize,
    pub silent_per_week: f64,
    pub battery_decay_per_day: f64,
}

impl Default for Misbehaviour {
    fn default() -> Self {
        Self {
            duplicate_rate: 0.01,
            late_rate: 0.02,
            out_of_order_rate: 0.05,
            malformed_rate: 0.002,
            clock_skew_rate: 0.05,
            repeated_hours: 1,
            silent_per_week: 1.0,
            battery_decay_per_day: 0.2,
        }
    }
}

impl Misbehaviour {
    /// Well-behaved devices (`--ideal`).
    pub fn none() -> Self {
        Self {
            duplicate_rate: 0.0,
            late_rate: 0.0,
            out_of_order_rate: 0.0,
            malformed_rate: 0.0,
            clock_skew_rate: 0.0,
            repeated_hours: 0,
            silent_per_week: 0.0,
            battery_decay_per_day: 0.0,
        }
    }

    /// Checks every rate; the error names the key.
    pub fn check(&self) -> Result<(), String> {
        let shares = [
            ("duplicate_rate", self.duplicate_rate),
            ("late_rate", self.late_rate),
            ("out_of_order_rate", self.out_of_order_rate),
            ("malformed_rate", self.malformed_rate),
            ("clock_skew_rate", self.clock_skew_rate),
        ];
        for (key, v) in shares {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!(
                    "[devices] {key} = {v} must be a share between 0 and 1"
                ));
            }
        }
        for (key, v) in [
            ("silent_per_week", self.silent_per_week),
            ("battery_decay_per_day", self.battery_decay_per_day),
        ] {
            if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
                return Err(format!("[devices] {key} = {v} must be between 0 and 100"));
            }
        }
        Ok(())
    }
}

/// A window in which a device misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }
}

/// One device's planned misbehaviour for the whole run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DevicePlan {
    /// Clock offset, seconds (0: a good clock).
    pub skew_s: i64,
    /// The hour whose readings are stamped an hour early.
    pub repeated_hour: Option<Window>,
    /// When the device sends nothing.
    pub silent: Vec<Window>,
    /// Battery loss, % per day (meters only).
    pub battery_decay_per_day: f64,
}

impl DevicePlan {
    /// The time the device stamps on a reading taken at `t`.
    pub fn stamp(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let mut s = t + TimeDelta::seconds(self.skew_s);
        if self.repeated_hour.is_some_and(|w| w.contains(t)) {
            s -= TimeDelta::hours(1);
        }
        s
    }

    /// Whether the device is silent at `t`.
    pub fn is_silent(&self, t: DateTime<Utc>) -> bool {
        self.silent.iter().any(|w| w.contains(t))
    }

    /// Battery level at `days` since the start, %.
    pub fn battery_percent(&self, days: f64) -> f64 {
        (100.0 - self.battery_decay_per_day * days).clamp(0.0, 100.0)
    }
}

/// Plans each device's misbehaviour over `[start, end)`. `meters[i]` says whether device `i`
/// is a battery meter. Deterministic for `rng`.
pub fn plan(
    m: &Misbehaviour,
    meters: &[bool],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    rng: &mut StdRng,
) -> Vec<DevicePlan> {
    let n = meters.len();
    let mut plans = vec![DevicePlan::default(); n];
    if n == 0 || end <= start {
        return plans;
    }
    let span_s = (end - start).num_seconds();
    for (p, &meter) in plans.iter_mut().zip(meters) {
        if rng.random_bool(m.clock_skew_rate) {
            let minutes = rng.random_range(1..=10) as i64;
            let sign = if rng.random_bool(0.5) { 1 } else { -1 };
            p.skew_s = sign * minutes * 60 + rng.random_range(0..60) as i64;
        }
        if meter && m.battery_decay_per_day > 0.0 {
            // Most cells decay slowly; one in ten is a bad batch, ten times faster.
            let fast = rng.random_bool(0.1);
            let jitter = rng.random_range(0.5..1.5);
            p.battery_decay_per_day =
                m.battery_decay_per_day * jitter * if fast { 10.0 } else { 1.0 };
        }
    }
    // A repeated hour needs an hour before it in the run.
    if span_s > 3 * 3600 {
        for _ in 0..m.repeated_hours.min(n) {
            let d = rng.random_range(0..n);
            let hours = span_s / 3600;
            let h = rng.random_range(1..hours - 1);
            let s = start + TimeDelta::hours(h);
            plans[d].repeated_hour = Some(Window {
                start: s,
                end: s + TimeDelta::hours(1),
            });
        }
    }
    let weeks = span_s as f64 / (7.0 * 86_400.0);
    let silent = (m.silent_per_week * weeks).round() as usize;
    for _ in 0..silent {
        let d = rng.random_range(0..n);
        let len = rng.random_range(2 * 3600..=12 * 3600);
        let s = start + TimeDelta::seconds(rng.random_range(0..span_s.max(1)));
        let e = (s + TimeDelta::seconds(len)).min(end);
        plans[d].silent.push(Window { start: s, end: e });
    }
    plans
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rng;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn rates_outside_zero_to_one_are_refused_by_name() {
        let m = Misbehaviour {
            late_rate: 1.5,
            ..Misbehaviour::default()
        };
        let e = m.check().unwrap_err();
        assert!(e.contains("late_rate"), "{e}");
        assert!(Misbehaviour::default().check().is_ok());
        assert!(Misbehaviour::none().check().is_ok());
    }

    #[test]
    fn a_repeated_hour_stamps_that_hour_an_hour_early() {
        let p = DevicePlan {
            repeated_hour: Some(Window {
                start: at("2026-01-05T02:00:00Z"),
                end: at("2026-01-05T03:00:00Z"),
            }),
            skew_s: 30,
            ..DevicePlan::default()
        };
        assert_eq!(
            p.stamp(at("2026-01-05T02:15:00Z")),
            at("2026-01-05T01:15:30Z")
        );
        assert_eq!(
            p.stamp(at("2026-01-05T03:00:00Z")),
            at("2026-01-05T03:00:30Z")
        );
    }

    #[test]
    fn plans_are_deterministic_and_none_plans_nothing() {
        let meters = vec![true; 50];
        let (s, e) = (at("2026-01-05T00:00:00Z"), at("2026-01-19T00:00:00Z"));
        let a = plan(&Misbehaviour::default(), &meters, s, e, &mut rng(3));
        let b = plan(&Misbehaviour::default(), &meters, s, e, &mut rng(3));
        assert_eq!(a, b);
        assert_eq!(a.iter().map(|p| p.silent.len()).sum::<usize>(), 2);
        assert_eq!(a.iter().filter(|p| p.repeated_hour.is_some()).count(), 1);
        assert!(a.iter().all(|p| p.battery_decay_per_day > 0.0));
        let none = plan(&Misbehaviour::none(), &meters, s, e, &mut rng(3));
        assert!(none.iter().all(|p| *p == DevicePlan::default()));
    }
}
