//! Customer demand: each junction's base demand × diurnal pattern × weekly factor × random
//! variation, plus a few large night users. Deterministic for a seed.
//!
//! - The diurnal pattern is the `.inp`'s own (the engine applies it); a junction whose demand
//!   has no pattern follows [`crate::model::diurnal_factor`] in local time.
//! - The weekly factor applies only when the `.inp`'s patterns are shorter than a week (L-Town's
//!   patterns span a week already): Friday 1.02, Saturday 1.06, Sunday 0.92, else 1.0.
//! - Random variation: a network-wide factor (σ 3 %, weather) drawn for each local noon and
//!   interpolated linearly between noons (the weather does not change at midnight: a step there
//!   would raise every area's inflow at once, which to any detector is a burst), one factor per
//!   junction per day (σ 5 %), and a short-term factor per junction and step (AR(1), σ 12 %,
//!   about an hour's memory at 5-minute steps). The product is clipped at zero.
//! - Large night users (one per 250 junctions, 1 to 5): a junction drawing 1–3 m³/h extra from
//!   23:00 to 05:00 local time every night, such as an irrigation or a factory's night shift.
//! - Holidays (the scenario's `holidays`, local dates): a Sunday's volume (× 0.92) with the
//!   morning peak 1.5 h later (people sleep in), whatever the weekday; applied on top of the
//!   `.inp`'s pattern as the ratio of the default diurnal shape shifted to the unshifted one.

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::engine::{Engine, NodeKind};

/// A junction with a large night-time draw.
#[derive(Debug, Clone, PartialEq)]
pub struct NightUser {
    pub node: usize,
    pub rate_m3h: f64,
}

/// The demand generator's state.
#[derive(Debug)]
pub struct Demand {
    rng: StdRng,
    /// Seeds the network-wide factor of each day (its own stream: the value of a day does
    /// not depend on which days were asked for first).
    weather_seed: u64,
    variation: bool,
    weekly: bool,
    junctions: Vec<usize>,
    unpatterned: Vec<bool>,
    day: Option<i64>,
    day_factor: Vec<f64>,
    short_term: Vec<f64>,
    pub night_users: Vec<NightUser>,
    holidays: Vec<NaiveDate>,
}

/// Demand on a holiday relative to an ordinary day at local hour `hour`: a Sunday's volume
/// with the morning peak 1.5 h later.
pub fn holiday_factor(hour: f64) -> f64 {
    let shifted = (hour - 1.5).rem_euclid(24.0);
    0.92 * crate::model::diurnal_factor(shifted) / crate::model::diurnal_factor(hour)
}

/// A standard normal draw (Box–Muller).
pub fn gaussian(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

const AR_PHI: f64 = 0.92;
const AR_SIGMA: f64 = 0.12;

impl Demand {
    /// A generator for the engine's junctions. Without `variation` every factor is 1 and
    /// there are no night users: the `.inp`'s demands exactly.
    pub fn new(engine: &Engine, mut rng: StdRng, variation: bool) -> Self {
        let n = engine.nodes().len();
        let junctions: Vec<usize> = (0..n)
            .filter(|&i| engine.nodes()[i].kind == NodeKind::Junction)
            .collect();
        let unpatterned = (0..n)
            .map(|i| !engine.is_patterned(i) && engine.nodes()[i].kind == NodeKind::Junction)
            .collect();
        let weekly = engine.pattern_span_s() < 7 * 86_400;
        let mut night_users = Vec::new();
        if variation && !junctions.is_empty() {
            let count = (junctions.len() / 250).clamp(1, 5);
            for _ in 0..count {
                let node = junctions[rng.random_range(0..junctions.len())];
                let rate_m3h = (rng.random_range(1.0..3.0) * 100.0f64).round() / 100.0;
                night_users.push(NightUser { node, rate_m3h });
            }
        }
        let weather_seed = rng.random::<u64>();
        Self {
            rng,
            weather_seed,
            variation,
            weekly,
            junctions,
            unpatterned,
            day: None,
            day_factor: vec![1.0; n],
            short_term: vec![0.0; n],
            night_users,
            holidays: Vec::new(),
        }
    }

    /// Sets the holidays (local dates).
    pub fn set_holidays(&mut self, mut days: Vec<NaiveDate>) {
        days.sort();
        days.dedup();
        self.holidays = days;
    }

    /// Fills each junction's multiplier of its pattern demand and its extra draw (m³/h) at
    /// local time `local`.
    pub fn at(&mut self, local: NaiveDateTime, factor: &mut [f64], extra_m3h: &mut [f64]) {
        factor.fill(1.0);
        extra_m3h.fill(0.0);
        let hour = local.hour() as f64 + local.minute() as f64 / 60.0;
        for &j in &self.junctions {
            if self.unpatterned[j] {
                factor[j] = crate::model::diurnal_factor(hour);
            }
        }
        if self.holidays.binary_search(&local.date()).is_ok() {
            let h = holiday_factor(hour);
            for &j in &self.junctions {
                factor[j] *= h;
            }
        }
        if !self.variation {
            return;
        }
        let day = local.date().num_days_from_ce() as i64;
        if self.day != Some(day) {
            self.day = Some(day);
            for &j in &self.junctions {
                self.day_factor[j] = 1.0 + 0.05 * gaussian(&mut self.rng);
            }
        }
        let global = self.weather_at(day, hour);
        let holiday = self.holidays.binary_search(&local.date()).is_ok();
        let weekly = if self.weekly && !holiday {
            match local.weekday().num_days_from_monday() {
                4 => 1.02,
                5 => 1.06,
                6 => 0.92,
                _ => 1.0,
            }
        } else {
            1.0
        };
        let innovation = AR_SIGMA * (1.0 - AR_PHI * AR_PHI).sqrt();
        for &j in &self.junctions {
            let e = AR_PHI * self.short_term[j] + innovation * gaussian(&mut self.rng);
            self.short_term[j] = e;
            factor[j] = (factor[j] * weekly * global * self.day_factor[j] * (1.0 + e)).max(0.0);
        }
        let night = local.hour() >= 23 || local.hour() < 5;
        if night {
            for u in &self.night_users {
                extra_m3h[u.node] += u.rate_m3h;
            }
        }
    }
}

impl Demand {
    /// The network-wide factor of local day `day` (days from the common era) at its noon.
    fn weather_of_day(&self, day: i64) -> f64 {
        let mut rng = StdRng::seed_from_u64(
            self.weather_seed ^ (day as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        1.0 + 0.03 * gaussian(&mut rng)
    }

    /// The network-wide factor at local hour `hour` of day `day`: linear between the noons
    /// on either side.
    fn weather_at(&self, day: i64, hour: f64) -> f64 {
        let (before, w) = if hour < 12.0 {
            (day - 1, (hour + 12.0) / 24.0)
        } else {
            (day, (hour - 12.0) / 24.0)
        };
        let a = self.weather_of_day(before);
        let b = self.weather_of_day(before + 1);
        a + (b - a) * w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holiday_uses_less_water_and_starts_later() {
        let day: f64 = (0..240)
            .map(|i| holiday_factor(i as f64 / 10.0))
            .sum::<f64>()
            / 240.0;
        // Less than an ordinary day's mean of 1 (the shift moves demand, the 0.92 removes it).
        assert!(day < 0.97 && day > 0.85, "holiday mean factor {day}");
        // At 07:00 the morning peak has not come yet; by 09:30 it is above an ordinary day's.
        assert!(holiday_factor(7.0) < 0.8, "{}", holiday_factor(7.0));
        assert!(holiday_factor(9.5) > 1.0, "{}", holiday_factor(9.5));
    }

    #[test]
    fn the_weather_moves_between_noons_and_never_steps_at_midnight() {
        let engine = Engine::from_inp_text(include_str!("builtin.inp"), "builtin").unwrap();
        let d = Demand::new(&engine, crate::model::rng(7), true);
        let first = NaiveDate::from_ymd_opt(2026, 1, 1)
            .unwrap()
            .num_days_from_ce() as i64;
        let mut noons = Vec::new();
        let mut largest_midnight_step = 0.0f64;
        for day in first..first + 200 {
            noons.push(d.weather_of_day(day));
            // Noon is the day's own draw; the last step before midnight to the first after it
            // (5 minutes) moves the factor by at most 5/1440 of the noon-to-noon change.
            assert_eq!(d.weather_at(day, 12.0), d.weather_of_day(day));
            let before = d.weather_at(day, 23.0 + 55.0 / 60.0);
            let after = d.weather_at(day + 1, 0.0);
            let noon_to_noon = (d.weather_of_day(day + 1) - d.weather_of_day(day)).abs();
            assert!((after - before).abs() <= noon_to_noon * 5.0 / 1440.0 + 1e-12);
            largest_midnight_step = largest_midnight_step.max((after - before).abs());
        }
        // The days differ as weather does (σ 3 %), and the same day gives the same value.
        let mean = noons.iter().sum::<f64>() / noons.len() as f64;
        let sd =
            (noons.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / noons.len() as f64).sqrt();
        assert!((0.02..0.04).contains(&sd), "day-to-day spread {sd}");
        assert!((mean - 1.0).abs() < 0.01, "mean {mean}");
        assert!(largest_midnight_step < 0.001, "{largest_midnight_step}");
        // A seed's weather is its own: the same seed gives the same days, another seed others.
        let again = Demand::new(&engine, crate::model::rng(7), true);
        let other = Demand::new(&engine, crate::model::rng(8), true);
        assert_eq!(again.weather_of_day(first + 3), d.weather_of_day(first + 3));
        assert_ne!(other.weather_of_day(first + 3), d.weather_of_day(first + 3));
    }
}
