//! Jumps that a zone's pressure sensors make together. An instrument's spike or a transducer
//! reading its floor is one sensor's doing; when two or more pressure points of one DMA jump
//! the same way at the same moment (a tank running empty and refilling, a pump tripping, a
//! supply cut), it is the water. The pressure analysis lets those readings past its spike and
//! floor checks, so they count as pressures (for the band and the compliance rate) and raise
//! no `sensor_fault`.
//!
//! A reading **jumps** when it is at least [`MIN_JUMP_M`] and [`MIN_JUMP_SHARE`] of the level
//! away from the median of the sensor's three readings before it: far beyond a sensor's noise
//! and beyond what a burst's step does to a pressure in one reading.

use std::collections::HashMap;

use waterline_core::{DmaId, Network, SensorKind};

use crate::readings::Readings;
use crate::timefmt::EpochMillis;

/// The smallest jump, m.
pub const MIN_JUMP_M: f64 = 5.0;
/// … and share of the level before.
pub const MIN_JUMP_SHARE: f64 = 0.2;

/// Per DMA, the sorted times at which two or more of its pressure sensors jumped the same way.
pub fn common_jumps(readings: &Readings, network: &Network) -> HashMap<DmaId, Vec<EpochMillis>> {
    let mut per_dma: HashMap<DmaId, HashMap<EpochMillis, [usize; 2]>> = HashMap::new();
    for sensor in network.sensors.values() {
        let (SensorKind::Pressure, Some(dma)) = (sensor.kind, sensor.dma.as_ref()) else {
            continue;
        };
        let series = readings.series(&sensor.id);
        let counts = per_dma.entry(dma.clone()).or_default();
        for (t, up) in jumps(series.times, series.values) {
            counts.entry(t).or_default()[usize::from(up)] += 1;
        }
    }
    per_dma
        .into_iter()
        .map(|(dma, counts)| {
            let mut times: Vec<EpochMillis> = counts
                .into_iter()
                .filter(|(_, [down, up])| *down >= 2 || *up >= 2)
                .map(|(t, _)| t)
                .collect();
            times.sort_unstable();
            (dma, times)
        })
        .collect()
}

/// The times at which a series jumps, and whether up.
fn jumps(times: &[EpochMillis], values: &[f64]) -> Vec<(EpochMillis, bool)> {
    let mut out = Vec::new();
    for i in 3..values.len() {
        let mut before = [values[i - 3], values[i - 2], values[i - 1]];
        before.sort_by(f64::total_cmp);
        let level = before[1];
        let change = values[i] - level;
        if change.abs() >= MIN_JUMP_M.max(MIN_JUMP_SHARE * level.abs()) {
            out.push((times[i], change > 0.0));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use waterline_core::SensorId;

    const NET: &str = r#"
[[dma]]
id = "C"
[[dma]]
id = "A"
[[sensor]]
id = "c1"
kind = "pressure"
unit = "m"
dma = "C"
[[sensor]]
id = "c2"
kind = "pressure"
unit = "m"
dma = "C"
[[sensor]]
id = "a1"
kind = "pressure"
unit = "m"
dma = "A"
[[sensor]]
id = "a2"
kind = "pressure"
unit = "m"
dma = "A"
"#;

    #[test]
    fn a_jump_of_two_sensors_of_a_zone_is_the_water_and_of_one_an_instrument() {
        let net = Network::parse(NET).unwrap();
        let id = |s: &str| SensorId::parse(s).unwrap();
        let step = 300_000;
        let mut rows = Vec::new();
        for k in 0..20i64 {
            let t = k * step;
            // C's tank runs empty at readings 8 and 12: both its points fall to about zero.
            let empty = k == 8 || k == 12;
            rows.push((id("c1"), t, if empty { 0.4 } else { 37.0 }));
            rows.push((
                id("c2"),
                t,
                if empty { -3.0 } else { 25.0 + 0.1 * k as f64 },
            ));
            // In A one transducer spikes at reading 10, the other reads on; both sag 1 m at
            // reading 15 (a burst's step, no jump).
            let sag = if k >= 15 { 1.0 } else { 0.0 };
            rows.push((id("a1"), t, if k == 10 { 80.0 } else { 50.0 - sag }));
            rows.push((id("a2"), t, 44.0 - sag));
        }
        let r = Readings::from_rows(&net, rows);
        let jumps = common_jumps(&r, &net);
        assert_eq!(
            jumps[&DmaId::parse("C").unwrap()],
            vec![8 * step, 12 * step]
        );
        assert!(jumps[&DmaId::parse("A").unwrap()].is_empty());
    }
}
