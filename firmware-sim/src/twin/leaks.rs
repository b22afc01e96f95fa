//! Leaks as pressure-dependent orifices (FAVAD-consistent emitters).
//!
//! A leak of diameter d discharges like an orifice: Q = Cd · A · √(2 g p), A = π d² / 4,
//! Cd = 0.75, p the pressure at the leak. That is an EPANET emitter Q = C · p^N1 with N1 = 0.5
//! and C = Cd · A · √(2 g). When the `.inp` sets another emitter exponent N1, the coefficient
//! is scaled so that the leak discharges the orifice flow at 30 m (FAVAD: L1/L0 = (P1/P0)^N1).
//!
//! The emitter sits at one end node of the leaking pipe (its end node when that is a
//! junction, else its start node), not at a split in the middle of the pipe: the flows in the
//! pipe differ slightly from a mid-pipe leak, the area's water balance does not.
//!
//! An **abrupt** leak has its full size from its start; an **incipient** leak grows linearly
//! in area from nothing at its start to full size at its peak time and stays there. Both stop
//! at their end (the repair).

use chrono::{DateTime, TimeDelta, Utc};
use rand::RngExt;
use rand::rngs::StdRng;

/// Discharge coefficient of a leak orifice.
pub const DISCHARGE_COEFFICIENT: f64 = 0.75;
/// Gravity, m/s².
pub const G: f64 = 9.81;
/// Pressure at which a leak with N1 ≠ 0.5 matches the orifice flow, m.
pub const REFERENCE_PRESSURE_M: f64 = 30.0;

/// How a leak develops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeakType {
    Abrupt,
    Incipient,
}

impl LeakType {
    /// The name used in scenarios and `truth.jsonl`.
    pub fn as_str(self) -> &'static str {
        match self {
            LeakType::Abrupt => "abrupt",
            LeakType::Incipient => "incipient",
        }
    }
}

/// A leak on a pipe.
#[derive(Debug, Clone, PartialEq)]
pub struct Leak {
    pub pipe: String,
    pub start: DateTime<Utc>,
    /// Repair time; `None`: never repaired.
    pub end: Option<DateTime<Utc>>,
    pub diameter_mm: f64,
    pub leak_type: LeakType,
    /// Time of full size (incipient); the start for an abrupt leak.
    pub peak: DateTime<Utc>,
}

impl Leak {
    /// Full-size area, m².
    pub fn full_area_m2(&self) -> f64 {
        let d = self.diameter_mm / 1000.0;
        std::f64::consts::PI * d * d / 4.0
    }

    /// Leak area at `t`, m².
    pub fn area_m2(&self, t: DateTime<Utc>) -> f64 {
        if t < self.start || self.end.is_some_and(|e| t >= e) {
            return 0.0;
        }
        match self.leak_type {
            LeakType::Abrupt => self.full_area_m2(),
            LeakType::Incipient => {
                let span = (self.peak - self.start).num_seconds();
                if span <= 0 || t >= self.peak {
                    self.full_area_m2()
                } else {
                    self.full_area_m2() * (t - self.start).num_seconds() as f64 / span as f64
                }
            }
        }
    }
}

/// Emitter coefficient of an orifice of area `area_m2` for exponent `n1`: m³/h per m^N1.
pub fn emitter_coefficient(area_m2: f64, n1: f64) -> f64 {
    let c_half = DISCHARGE_COEFFICIENT * area_m2 * (2.0 * G).sqrt() * 3600.0;
    c_half * REFERENCE_PRESSURE_M.powf(0.5 - n1)
}

/// Draws `count` leaks in `[start, end)` on the given pipes (with their lengths, m; longer
/// pipes are likelier): diameters 8–23 mm, half abrupt and half incipient, lasting 2–30 days,
/// incipient ones peaking 1–20 days after their start.
pub fn random_leaks(
    rng: &mut StdRng,
    pipes: &[(String, f64)],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    count: usize,
) -> Vec<Leak> {
    let total: f64 = pipes.iter().map(|p| p.1.max(1.0)).sum();
    let window = (end - start).num_seconds().max(1);
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        if pipes.is_empty() {
            break;
        }
        let mut x = rng.random_range(0.0..total);
        let mut pipe = &pipes[pipes.len() - 1].0;
        for (id, len) in pipes {
            x -= len.max(1.0);
            if x < 0.0 {
                pipe = id;
                break;
            }
        }
        // Starts on 5-minute marks in the first 85 % of the window, so that each leak is seen.
        let offset = rng.random_range(0..(window * 85 / 100).max(1)) / 300 * 300;
        let t0 = start + TimeDelta::seconds(offset);
        let duration = TimeDelta::seconds(rng.random_range(2 * 86_400..30 * 86_400) / 300 * 300);
        let leak_type = if rng.random_range(0..2) == 0 {
            LeakType::Abrupt
        } else {
            LeakType::Incipient
        };
        let peak = match leak_type {
            LeakType::Abrupt => t0,
            LeakType::Incipient => {
                let grow = TimeDelta::seconds(rng.random_range(86_400..20 * 86_400) / 300 * 300);
                t0 + grow.min(duration)
            }
        };
        let diameter_mm = (rng.random_range(8.0..23.0) * 10.0f64).round() / 10.0;
        out.push(Leak {
            pipe: pipe.clone(),
            start: t0,
            end: Some(t0 + duration),
            diameter_mm,
            leak_type,
            peak,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn incipient_leak_grows_linearly_to_its_peak_and_stops_at_repair() {
        let leak = Leak {
            pipe: "p1".into(),
            start: at("2026-01-01T00:00:00Z"),
            end: Some(at("2026-01-20T00:00:00Z")),
            diameter_mm: 20.0,
            leak_type: LeakType::Incipient,
            peak: at("2026-01-11T00:00:00Z"),
        };
        let full = leak.full_area_m2();
        assert_eq!(leak.area_m2(at("2025-12-31T23:55:00Z")), 0.0);
        assert!((leak.area_m2(at("2026-01-06T00:00:00Z")) - full / 2.0).abs() < 1e-12);
        assert_eq!(leak.area_m2(at("2026-01-15T00:00:00Z")), full);
        assert_eq!(leak.area_m2(at("2026-01-20T00:00:00Z")), 0.0);
    }

    #[test]
    fn orifice_coefficient_gives_the_orifice_flow() {
        // 15 mm at 40 m: Q = 0.75 · π/4 · 0.015² · √(2 · 9.81 · 40) · 3600 m³/h.
        let a = std::f64::consts::PI / 4.0 * 0.015f64.powi(2);
        let expected = 0.75 * a * (2.0f64 * 9.81 * 40.0).sqrt() * 3600.0;
        let c = emitter_coefficient(a, 0.5);
        assert!((c * 40f64.sqrt() - expected).abs() < 1e-9);
        // Another exponent matches at the reference pressure only.
        let c1 = emitter_coefficient(a, 1.0);
        let q30 = emitter_coefficient(a, 0.5) * 30f64.sqrt();
        assert!((c1 * 30.0 - q30).abs() < 1e-9);
    }

    #[test]
    fn random_leaks_stay_in_the_window_and_in_the_size_range() {
        let pipes = vec![("a".to_owned(), 100.0), ("b".to_owned(), 300.0)];
        let (s, e) = (at("2026-01-01T00:00:00Z"), at("2026-03-01T00:00:00Z"));
        let leaks = random_leaks(&mut crate::model::rng(7), &pipes, s, e, 40);
        assert_eq!(leaks.len(), 40);
        for l in &leaks {
            assert!(l.start >= s && l.start < e, "{l:?}");
            assert!((8.0..=23.0).contains(&l.diameter_mm), "{l:?}");
            assert!(l.peak >= l.start && Some(l.peak) <= l.end, "{l:?}");
        }
        assert!(leaks.iter().any(|l| l.pipe == "a") && leaks.iter().any(|l| l.pipe == "b"));
    }
}
