//! A small synthetic network for the demo: a few DMAs, each fed through one inlet, with
//! customer demand on a diurnal pattern, pressure that falls with flow (head loss ∝ Q²), and
//! background leakage that follows pressure (FAVAD, N1 = 1). Injected leaks add pressure-
//! dependent flow from their start time. Deterministic for a seed.
//!
//! The EPANET-based digital twin replaces this model for tests and benchmarks; this one keeps
//! the demo self-contained and instant.

use chrono::{DateTime, Timelike, Utc};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// One DMA of the demo network.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoDma {
    pub id: String,
    /// Average customer demand, m³/h.
    pub mean_demand_m3h: f64,
    /// Head at the inlet with zero flow, m.
    pub source_head_m: f64,
    /// Head loss coefficient: loss = k · Q², m per (m³/h)².
    pub headloss_k: f64,
    /// Background leakage at 50 m, m³/h.
    pub background_leak_m3h: f64,
    /// Customer meters.
    pub meters: usize,
}

/// A leak injected into a DMA.
#[derive(Debug, Clone, PartialEq)]
pub struct InjectedLeak {
    pub dma: String,
    pub start: DateTime<Utc>,
    /// Leak flow at 50 m of pressure, m³/h.
    pub flow_at_50m_m3h: f64,
}

/// The state of one DMA at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DmaState {
    pub inflow_m3h: f64,
    pub customer_m3h: f64,
    pub leak_m3h: f64,
    pub inlet_pressure_m: f64,
    pub azp_pressure_m: f64,
    pub critical_pressure_m: f64,
}

/// Relative demand at a local hour (mean 1.0 over the day): low at night, morning and evening
/// peaks.
pub fn diurnal_factor(hour: f64) -> f64 {
    let g = |mu: f64, sigma: f64| (-(hour - mu).powi(2) / (2.0 * sigma * sigma)).exp();
    let raw = 0.35 + 1.1 * g(7.5, 1.5) + 0.7 * g(12.5, 2.0) + 1.0 * g(19.5, 2.0);
    // Normalised so that the mean over a day is 1.0.
    raw / 0.875
}

/// The demo network: three DMAs of different size.
pub fn demo_dmas() -> Vec<DemoDma> {
    vec![
        DemoDma {
            id: "A".into(),
            mean_demand_m3h: 120.0,
            source_head_m: 62.0,
            headloss_k: 0.0006,
            background_leak_m3h: 6.0,
            meters: 6,
        },
        DemoDma {
            id: "B".into(),
            mean_demand_m3h: 80.0,
            source_head_m: 55.0,
            headloss_k: 0.0009,
            background_leak_m3h: 4.0,
            meters: 6,
        },
        DemoDma {
            id: "C".into(),
            mean_demand_m3h: 45.0,
            source_head_m: 48.0,
            headloss_k: 0.0015,
            background_leak_m3h: 2.5,
            meters: 6,
        },
    ]
}

/// Evaluates a DMA at `t` (UTC; `utc_offset_h` shifts to local time for the demand pattern).
pub fn evaluate(
    dma: &DemoDma,
    leaks: &[InjectedLeak],
    t: DateTime<Utc>,
    utc_offset_h: i32,
) -> DmaState {
    let local_h = (t.hour() as i32 + utc_offset_h).rem_euclid(24) as f64
        + t.minute() as f64 / 60.0
        + t.second() as f64 / 3600.0;
    let customer = dma.mean_demand_m3h * diurnal_factor(local_h);
    let leak_at_50: f64 = dma.background_leak_m3h
        + leaks
            .iter()
            .filter(|l| l.dma == dma.id && t >= l.start)
            .map(|l| l.flow_at_50m_m3h)
            .sum::<f64>();
    // Solve Q = customer + leak(P), P = H0 - k Q² by fixed-point iteration (converges fast:
    // the leak term is small against demand).
    let mut q = customer + leak_at_50;
    let mut p = dma.source_head_m;
    for _ in 0..20 {
        p = (dma.source_head_m - dma.headloss_k * q * q).max(0.0);
        let leak = leak_at_50 * p / 50.0;
        q = customer + leak;
    }
    let leak = leak_at_50 * p / 50.0;
    DmaState {
        inflow_m3h: q,
        customer_m3h: customer,
        leak_m3h: leak,
        inlet_pressure_m: dma.source_head_m - 0.2 * dma.headloss_k * q * q,
        azp_pressure_m: p + 0.45 * dma.headloss_k * q * q,
        critical_pressure_m: p,
    }
}

/// Gaussian-ish noise (sum of uniforms) with standard deviation `sd`.
pub fn noise(rng: &mut StdRng, sd: f64) -> f64 {
    let s: f64 = (0..4).map(|_| rng.random_range(-1.0..1.0)).sum();
    s * sd * (3.0f64 / 4.0).sqrt()
}

/// A seeded generator.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn diurnal_pattern_has_a_night_minimum_and_averages_near_one() {
        let mean: f64 = (0..240)
            .map(|i| diurnal_factor(i as f64 / 10.0))
            .sum::<f64>()
            / 240.0;
        assert!((mean - 1.0).abs() < 0.1, "mean {mean}");
        assert!(diurnal_factor(3.0) < 0.5 * diurnal_factor(7.5));
    }

    #[test]
    fn mass_balance_closes_and_leak_follows_pressure() {
        let dma = &demo_dmas()[0];
        let t = at("2026-11-27T03:00:00Z");
        let s = evaluate(dma, &[], t, 0);
        assert!((s.inflow_m3h - s.customer_m3h - s.leak_m3h).abs() < 1e-6);
        // FAVAD N1 = 1: leak at the solved pressure.
        assert!((s.leak_m3h - dma.background_leak_m3h * s.critical_pressure_m / 50.0).abs() < 1e-6);
        // Night pressure is higher than at the evening peak.
        let peak = evaluate(dma, &[], at("2026-11-27T19:30:00Z"), 0);
        assert!(s.critical_pressure_m > peak.critical_pressure_m);
    }

    #[test]
    fn an_injected_leak_raises_inflow_from_its_start() {
        let dma = &demo_dmas()[1];
        let leak = InjectedLeak {
            dma: "B".into(),
            start: at("2026-11-27T02:00:00Z"),
            flow_at_50m_m3h: 10.0,
        };
        let before = evaluate(
            dma,
            std::slice::from_ref(&leak),
            at("2026-11-27T01:59:00Z"),
            0,
        );
        let after = evaluate(
            dma,
            std::slice::from_ref(&leak),
            at("2026-11-27T02:01:00Z"),
            0,
        );
        assert!(after.inflow_m3h - before.inflow_m3h > 5.0);
        assert!(after.critical_pressure_m < before.critical_pressure_m);
    }
}
