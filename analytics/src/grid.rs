//! Regular time grids built from irregular readings: per-sensor bucket means and each DMA's
//! balance flow (Σ inlets − Σ outlets) per bucket, each from a pass over the sensors' own
//! sorted readings (the table keeps each sensor's readings contiguous), so the cost follows
//! the sensors asked for, not the size of the table.
//!
//! A bucket is present only when every sensor it needs reported in it: a missing inlet makes the
//! DMA's flow unknown for that bucket, never zero.

use std::collections::HashMap;

use polars::prelude::PolarsResult;
use waterline_core::{Network, SensorId};

use crate::readings::Readings;
use crate::timefmt::EpochMillis;

/// Values on a regular grid: `values[i]` covers `[start + i·step, start + (i+1)·step)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub start: EpochMillis,
    pub step: EpochMillis,
    pub values: Vec<Option<f64>>,
}

impl Grid {
    /// An empty grid covering `[start, end]` (bucket-aligned), all missing.
    pub fn empty(start: EpochMillis, end: EpochMillis, step: EpochMillis) -> Grid {
        let start = start.div_euclid(step) * step;
        let n = (end.div_euclid(step) * step - start) / step + 1;
        Grid {
            start,
            step,
            values: vec![None; n.max(0) as usize],
        }
    }

    /// Start time of bucket `i`.
    pub fn time(&self, i: usize) -> EpochMillis {
        self.start + i as i64 * self.step
    }

    /// Index of the bucket holding `t`, if inside the grid.
    pub fn index(&self, t: EpochMillis) -> Option<usize> {
        let i = (t - self.start).div_euclid(self.step);
        (i >= 0 && (i as usize) < self.values.len()).then_some(i as usize)
    }

    /// The buckets from the one holding `from` up to the one holding `to` (not included),
    /// clamped to the grid.
    pub fn between(&self, from: EpochMillis, to: EpochMillis) -> &[Option<f64>] {
        let at = |t: EpochMillis| {
            (((t - self.start).max(0) / self.step) as usize).min(self.values.len())
        };
        let to = at(to);
        &self.values[at(from).min(to)..to]
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Each listed sensor's mean per bucket, as grids over `[start, end]` (a pass over each
/// sensor's own sorted readings).
pub fn sensor_means(
    readings: &Readings,
    sensors: &[SensorId],
    start: EpochMillis,
    end: EpochMillis,
    step: EpochMillis,
) -> PolarsResult<HashMap<SensorId, Grid>> {
    Ok(sensors
        .iter()
        .map(|s| {
            let mut grid = Grid::empty(start, end, step);
            grid.values = bucket_means(readings.series(s), &grid);
            (s.clone(), grid)
        })
        .collect())
}

/// Each DMA's balance flow (Σ inlets − Σ outlets, m³/h) per bucket over `[start, end]`, in the
/// network's DMA order. A bucket is present when every inlet and outlet reported in it.
///
/// Computed from each balance meter's own sorted series (a pass over its readings only), not
/// by a group-by over the whole table: a network's many other sensors cost nothing here.
pub fn dma_balance_flows(
    readings: &Readings,
    network: &Network,
    start: EpochMillis,
    end: EpochMillis,
    step: EpochMillis,
) -> PolarsResult<Vec<Grid>> {
    let mut grids = Vec::with_capacity(network.dmas.len());
    for dma in &network.dmas {
        let mut grid = Grid::empty(start, end, step);
        let terms: Vec<(&SensorId, f64)> = dma
            .inlets
            .iter()
            .map(|s| (s, 1.0))
            .chain(dma.outlets.iter().map(|s| (s, -1.0)))
            .collect();
        if !terms.is_empty() {
            let mut sum = vec![0.0f64; grid.len()];
            let mut present = vec![0usize; grid.len()];
            for (sensor, sign) in &terms {
                for (i, mean) in bucket_means(readings.series(sensor), &grid)
                    .into_iter()
                    .enumerate()
                {
                    if let Some(m) = mean {
                        sum[i] += sign * m;
                        present[i] += 1;
                    }
                }
            }
            for (i, v) in grid.values.iter_mut().enumerate() {
                if present[i] == terms.len() {
                    *v = Some(sum[i]);
                }
            }
        }
        grids.push(grid);
    }
    Ok(grids)
}

/// The mean of a sorted series in each bucket of `grid` (`None` where it has no reading).
fn bucket_means(series: crate::readings::SensorSeries<'_>, grid: &Grid) -> Vec<Option<f64>> {
    let mut sums = vec![(0.0f64, 0u32); grid.len()];
    for (&t, &v) in series.times.iter().zip(series.values) {
        if let Some(i) = grid.index(t) {
            sums[i].0 += v;
            sums[i].1 += 1;
        }
    }
    sums.into_iter()
        .map(|(s, n)| (n > 0).then(|| s / f64::from(n)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn network() -> Network {
        Network::parse(
            r#"
[[dma]]
id = "A"
inlets = ["in1", "in2"]
outlets = ["out"]
[[dma]]
id = "B"
inlets = ["out"]
[[sensor]]
id = "in1"
kind = "flow"
unit = "m3/h"
[[sensor]]
id = "in2"
kind = "flow"
unit = "m3/h"
[[sensor]]
id = "out"
kind = "flow"
unit = "m3/h"
"#,
        )
        .unwrap()
    }

    fn id(s: &str) -> SensorId {
        SensorId::parse(s).unwrap()
    }

    #[test]
    fn balance_needs_every_sensor_in_a_bucket() {
        let net = network();
        let mut rows = Vec::new();
        for k in 0..6 {
            let t = k * 5 * MIN;
            rows.push((id("in1"), t, 10.0 + k as f64));
            if k != 4 {
                // in2 misses 00:20, so the 00:15 bucket has in2 at 00:15 only
                rows.push((id("in2"), t, 5.0));
            }
            if k < 3 {
                rows.push((id("out"), t, 2.0));
            }
        }
        let r = Readings::from_rows(&net, rows);
        let grids = dma_balance_flows(&r, &net, 0, 25 * MIN, 15 * MIN).unwrap();
        // A: bucket 0 = mean(10,11,12) + 5 − 2 = 14; bucket 1 has no outlet reading → missing.
        assert_eq!(grids[0].values, vec![Some(14.0), None]);
        // B: the outlet of A is B's inlet.
        assert_eq!(grids[1].values, vec![Some(2.0), None]);
        assert_eq!(grids[0].time(1), 15 * MIN);
    }

    #[test]
    fn sensor_means_per_bucket() {
        let net = network();
        let rows = (0..8).map(|k| (id("in1"), k * 30 * MIN, k as f64));
        let r = Readings::from_rows(&net, rows);
        let m = sensor_means(&r, &[id("in1"), id("in2")], 0, 210 * MIN, 60 * MIN).unwrap();
        assert_eq!(
            m[&id("in1")].values,
            vec![Some(0.5), Some(2.5), Some(4.5), Some(6.5)]
        );
        assert!(m[&id("in2")].values.iter().all(Option::is_none));
    }

    #[test]
    fn between_takes_the_buckets_of_a_span_clamped_to_the_grid() {
        let mut g = Grid::empty(60 * MIN, 240 * MIN, 60 * MIN);
        for (i, v) in g.values.iter_mut().enumerate() {
            *v = Some(i as f64);
        }
        assert_eq!(g.between(60 * MIN, 180 * MIN), &[Some(0.0), Some(1.0)]);
        assert_eq!(g.between(90 * MIN, 150 * MIN), &[Some(0.0)]);
        assert_eq!(g.between(0, 120 * MIN), &[Some(0.0)]);
        assert_eq!(g.between(200 * MIN, 900 * MIN), &[Some(2.0), Some(3.0)]);
        assert!(g.between(900 * MIN, 960 * MIN).is_empty());
        assert!(g.between(180 * MIN, 120 * MIN).is_empty());
    }
}
