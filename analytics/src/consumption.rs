//! Customer consumption from smart meters: the volume a meter registered between two instants.
//!
//! Volume meters report a cumulative register. Consecutive reads give deltas, corrected for
//! **rollover** (the register passes its maximum, a power of ten, and restarts near zero) and
//! **replacement** (a new meter starts from a low register: the delta across the swap is
//! unknown and taken as zero, and counted). Small backward steps are reverse flow and kept.
//! Between reads, volume is apportioned linearly in time, so a batch uploaded late, or a gap of
//! a day, still splits correctly between days. An interval that the meter's reads do not
//! bracket is unknown (`None`), never zero.
//!
//! Flow-type customer meters (e.g. AMR in L/h) are integrated from their bucket means.

use crate::grid::Grid;
use crate::readings::SensorSeries;
use crate::timefmt::EpochMillis;

/// Backward steps up to this many m³ are reverse flow, not a replacement.
const REVERSE_FLOW_M3: f64 = 1.0;

/// A volume meter's corrected cumulative volume over time.
#[derive(Debug, Clone, Default)]
pub struct Register {
    times: Vec<EpochMillis>,
    cumulative: Vec<f64>,
    /// Register rollovers seen.
    pub rollovers: usize,
    /// Meter replacements (unexplained resets) seen.
    pub replacements: usize,
}

impl Register {
    /// Builds the corrected cumulative volume from a meter's time-sorted register reads (m³).
    pub fn from_reads(series: SensorSeries<'_>) -> Register {
        let mut r = Register {
            times: Vec::with_capacity(series.len()),
            cumulative: Vec::with_capacity(series.len()),
            ..Register::default()
        };
        let mut prev: Option<f64> = None;
        let mut total = 0.0;
        for (&t, &v) in series.times.iter().zip(series.values) {
            if let Some(p) = prev {
                let delta = v - p;
                if delta >= -REVERSE_FLOW_M3 {
                    total += delta;
                } else if let Some(max) = rollover_max(p, v) {
                    total += max - p + v;
                    r.rollovers += 1;
                } else {
                    r.replacements += 1;
                }
            }
            prev = Some(v);
            r.times.push(t);
            r.cumulative.push(total);
        }
        r
    }

    /// The cumulative volume at `t` by linear interpolation; `None` outside the reads.
    fn at(&self, t: EpochMillis) -> Option<f64> {
        let (first, last) = (*self.times.first()?, *self.times.last()?);
        if t < first || t > last {
            return None;
        }
        let i = self.times.partition_point(|&x| x < t);
        if self.times[i] == t {
            return Some(self.cumulative[i]);
        }
        let (t0, t1) = (self.times[i - 1], self.times[i]);
        let (c0, c1) = (self.cumulative[i - 1], self.cumulative[i]);
        Some(c0 + (c1 - c0) * (t - t0) as f64 / (t1 - t0) as f64)
    }

    /// Volume registered in `[a, b)`, m³; `None` unless reads bracket the interval.
    pub fn volume(&self, a: EpochMillis, b: EpochMillis) -> Option<f64> {
        Some(self.at(b)? - self.at(a)?)
    }
}

/// The register maximum when `prev → next` looks like a rollover: `prev` in the top tenth of
/// the smallest power of ten above it and `next` in the bottom tenth.
fn rollover_max(prev: f64, next: f64) -> Option<f64> {
    if prev <= 0.0 || next < 0.0 {
        return None;
    }
    let max = 10f64.powf(prev.log10().floor() + 1.0);
    (prev >= 0.9 * max && next <= 0.1 * max).then_some(max)
}

/// Volume (m³) through a flow meter in `[a, b)` from its bucket means (m³/h); `None` when fewer
/// than `min_coverage` of the buckets are present (the rest are filled with the present mean).
pub fn flow_volume(grid: &Grid, a: EpochMillis, b: EpochMillis, min_coverage: f64) -> Option<f64> {
    let first = grid.index(a)?;
    let last = grid.index(b - 1)?;
    let n = last + 1 - first;
    let present: Vec<f64> = grid.values[first..=last]
        .iter()
        .flatten()
        .copied()
        .collect();
    if present.is_empty() || (present.len() as f64) < min_coverage * n as f64 {
        return None;
    }
    let mean = present.iter().sum::<f64>() / present.len() as f64;
    Some(mean * (b - a) as f64 / 3_600_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn reg(times: &[i64], values: &[f64]) -> Register {
        Register::from_reads(SensorSeries { times, values })
    }

    #[test]
    fn interpolates_between_reads_and_refuses_outside() {
        let r = reg(&[0, 10 * H, 20 * H], &[100.0, 110.0, 130.0]);
        assert_eq!(r.volume(0, 10 * H), Some(10.0));
        // Half of the first interval and half of the second.
        assert!((r.volume(5 * H, 15 * H).unwrap() - 15.0).abs() < 1e-9);
        assert_eq!(r.volume(15 * H, 25 * H), None);
    }

    #[test]
    fn rollover_replacement_and_reverse_flow() {
        let r = reg(
            &[0, H, 2 * H, 3 * H, 4 * H],
            &[99_990.0, 5.0, 4.5, 4.2, 5.2],
        );
        // 99,990 → 5 rolls over at 100,000 (+15); 5 → 4.5 → 4.2 is reverse flow (−0.8,
        // within 1 m³ a step); then +1.0.
        assert_eq!(r.rollovers, 1);
        assert_eq!(r.replacements, 0);
        assert!((r.volume(0, 4 * H).unwrap() - (15.0 - 0.8 + 1.0)).abs() < 1e-9);
        let swapped = reg(&[0, H, 2 * H], &[5_123.0, 3.0, 4.0]);
        assert_eq!(swapped.replacements, 1);
        assert!((swapped.volume(0, 2 * H).unwrap() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn flow_meter_volume_needs_coverage() {
        let g = Grid {
            start: 0,
            step: H,
            values: vec![Some(2.0), Some(4.0), None, Some(3.0)],
        };
        assert_eq!(flow_volume(&g, 0, 2 * H, 0.9), Some(6.0));
        assert_eq!(flow_volume(&g, 0, 4 * H, 0.9), None);
        assert_eq!(flow_volume(&g, 0, 4 * H, 0.7), Some(12.0));
    }
}
