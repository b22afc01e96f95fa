//! Regular time grids built from irregular readings with polars group-bys: per-sensor bucket
//! means, and each DMA's balance flow (Σ inlets − Σ outlets) per bucket.
//!
//! A bucket is present only when every sensor it needs reported in it: a missing inlet makes the
//! DMA's flow unknown for that bucket, never zero.

use std::collections::HashMap;

use polars::prelude::*;
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

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

fn bucket_expr(step: EpochMillis) -> Expr {
    // Floor to the bucket (times may precede 1970 in principle: floor, not truncate).
    (col("time") - ((col("time") % lit(step)) + lit(step)) % lit(step)).alias("bucket")
}

/// Each listed sensor's mean per bucket, as grids over `[start, end]`.
pub fn sensor_means(
    readings: &Readings,
    sensors: &[SensorId],
    start: EpochMillis,
    end: EpochMillis,
    step: EpochMillis,
) -> PolarsResult<HashMap<SensorId, Grid>> {
    let wanted: Vec<u32> = sensors
        .iter()
        .filter_map(|s| readings.sensor_index(s))
        .collect();
    let mut out: HashMap<SensorId, Grid> = sensors
        .iter()
        .map(|s| (s.clone(), Grid::empty(start, end, step)))
        .collect();
    if wanted.is_empty() {
        return Ok(out);
    }
    let members = df!("sensor" => wanted)?.lazy();
    let means = readings
        .frame()
        .clone()
        .lazy()
        .join(
            members,
            [col("sensor")],
            [col("sensor")],
            JoinArgs::new(JoinType::Inner),
        )
        .with_column(bucket_expr(step))
        .group_by([col("sensor"), col("bucket")])
        .agg([col("value").mean().alias("mean")])
        .collect()?;
    let s = means.column("sensor")?.u32()?;
    let b = means.column("bucket")?.i64()?;
    let m = means.column("mean")?.f64()?;
    for ((s, b), m) in s.iter().zip(b.iter()).zip(m.iter()) {
        let (Some(s), Some(b), Some(m)) = (s, b, m) else {
            continue;
        };
        let grid = out
            .get_mut(readings.sensor_id(s))
            .expect("joined on the wanted sensors");
        if let Some(i) = grid.index(b) {
            grid.values[i] = Some(m);
        }
    }
    Ok(out)
}

/// Each DMA's balance flow (Σ inlets − Σ outlets, m³/h) per bucket over `[start, end]`, in the
/// network's DMA order. A bucket is present when every inlet and outlet reported in it.
pub fn dma_balance_flows(
    readings: &Readings,
    network: &Network,
    start: EpochMillis,
    end: EpochMillis,
    step: EpochMillis,
) -> PolarsResult<Vec<Grid>> {
    let mut sensor_col = Vec::new();
    let mut dma_col = Vec::new();
    let mut sign_col = Vec::new();
    let mut expected = Vec::new();
    for (d, dma) in network.dmas.iter().enumerate() {
        let terms = dma
            .inlets
            .iter()
            .map(|s| (s, 1.0))
            .chain(dma.outlets.iter().map(|s| (s, -1.0)));
        let mut n = 0u32;
        for (s, sign) in terms {
            n += 1;
            if let Some(i) = readings.sensor_index(s) {
                sensor_col.push(i);
                dma_col.push(d as u32);
                sign_col.push(sign);
            }
        }
        expected.push(n);
    }
    let mut grids: Vec<Grid> = network
        .dmas
        .iter()
        .map(|_| Grid::empty(start, end, step))
        .collect();
    if sensor_col.is_empty() {
        return Ok(grids);
    }
    let members = df!("sensor" => sensor_col, "dma" => dma_col, "sign" => sign_col)?.lazy();
    let flows = readings
        .frame()
        .clone()
        .lazy()
        .with_column(bucket_expr(step))
        .group_by([col("sensor"), col("bucket")])
        .agg([col("value").mean().alias("mean")])
        .join(
            members,
            [col("sensor")],
            [col("sensor")],
            JoinArgs::new(JoinType::Inner),
        )
        .group_by([col("dma"), col("bucket")])
        .agg([
            (col("mean") * col("sign")).sum().alias("flow"),
            col("sensor").count().alias("n"),
        ])
        .collect()?;
    let d = flows.column("dma")?.u32()?;
    let b = flows.column("bucket")?.i64()?;
    let f = flows.column("flow")?.f64()?;
    let n = flows.column("n")?.cast(&DataType::UInt32)?;
    let n = n.u32()?;
    for (((d, b), f), n) in d.iter().zip(b.iter()).zip(f.iter()).zip(n.iter()) {
        let (Some(d), Some(b), Some(f), Some(n)) = (d, b, f, n) else {
            continue;
        };
        if n != expected[d as usize] {
            continue;
        }
        let grid = &mut grids[d as usize];
        if let Some(i) = grid.index(b) {
            grid.values[i] = Some(f);
        }
    }
    Ok(grids)
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
}
