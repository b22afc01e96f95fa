//! What the twin's parts share: the seeded random generators (one per concern, so adding a
//! draw to one does not shift another's) and the default diurnal demand pattern.

use rand::SeedableRng;
use rand::rngs::StdRng;

/// Relative demand at a local hour (mean 1.0 over the day): low at night, morning and evening
/// peaks.
pub fn diurnal_factor(hour: f64) -> f64 {
    let g = |mu: f64, sigma: f64| (-(hour - mu).powi(2) / (2.0 * sigma * sigma)).exp();
    let raw = 0.35 + 1.1 * g(7.5, 1.5) + 0.7 * g(12.5, 2.0) + 1.0 * g(19.5, 2.0);
    // Normalised so that the mean over a day is 1.0.
    raw / 0.875
}

/// A seeded generator.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diurnal_pattern_has_a_night_minimum_and_averages_near_one() {
        let mean: f64 = (0..240)
            .map(|i| diurnal_factor(i as f64 / 10.0))
            .sum::<f64>()
            / 240.0;
        assert!((mean - 1.0).abs() < 0.1, "mean {mean}");
        assert!(diurnal_factor(3.0) < 0.5 * diurnal_factor(7.5));
    }
}
