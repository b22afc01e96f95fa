//! Jumps that a zone's pressure sensors make together. An instrument's spike or a transducer
//! reading its floor is one sensor's doing; when two or more pressure points of one DMA jump
//! the same way at the same moment (a tank running empty and refilling, a pump tripping, a
//! supply cut), it is the water. The pressure analysis does not judge those readings as spikes
//! or floors, so they count as pressures (for the band and the compliance rate) and raise no
//! `sensor_fault` (an impossible value still does). Loggers of one zone are not synchronised to
//! the second: jumps within half the zone's reading interval are at the same moment.
//!
//! A reading **jumps** when it is at least [`MIN_JUMP_M`] and [`MIN_JUMP_SHARE`] of the level
//! away from the median of the sensor's three readings before it: far beyond a sensor's noise
//! and beyond what a burst's step does to a pressure in one reading.

use std::collections::HashMap;

use waterline_core::{Network, SensorId, SensorKind};

use crate::quality::station::median_interval;
use crate::readings::Readings;
use crate::timefmt::EpochMillis;

/// The smallest jump, m.
pub const MIN_JUMP_M: f64 = 5.0;
/// … and share of the level before.
pub const MIN_JUMP_SHARE: f64 = 0.2;

/// One sensor's jump: when, whether up, and whose.
type Jump<'a> = (EpochMillis, bool, &'a SensorId);

/// Per pressure sensor, the sorted times of its readings that jumped together with another
/// sensor of its DMA: the same way, within half the zone's reading interval (loggers are not
/// synchronised to the second).
pub fn common_jumps(readings: &Readings, network: &Network) -> HashMap<SensorId, Vec<EpochMillis>> {
    // Per DMA: every jump, and its pressure sensors.
    let mut per_dma: HashMap<&waterline_core::DmaId, (Vec<Jump<'_>>, Vec<&SensorId>)> =
        HashMap::new();
    let zoned: Vec<(&SensorId, &waterline_core::DmaId)> = network
        .sensors
        .values()
        .filter(|s| s.kind == SensorKind::Pressure)
        .filter_map(|s| Some((&s.id, s.dma.as_ref()?)))
        .collect();
    let ids: Vec<&SensorId> = zoned.iter().map(|(id, _)| *id).collect();
    let found = crate::parallel::map_in_parallel(&ids, |id| {
        let series = readings.series(id);
        jumps(series.times, series.values)
    });
    for ((id, dma), found) in zoned.into_iter().zip(found) {
        let (list, sensors) = per_dma.entry(dma).or_default();
        sensors.push(id);
        list.extend(found.into_iter().map(|(t, up)| (t, up, id)));
    }
    let mut out: HashMap<SensorId, Vec<EpochMillis>> = HashMap::new();
    // Zones with fewer than two jumps have none together (the usual case: no interval needed).
    for (_, (mut list, sensors)) in per_dma.into_iter().filter(|(_, (l, _))| l.len() >= 2) {
        list.sort_by_key(|&(t, _, _)| t);
        // Half the zone's longest reading interval.
        let tolerance = sensors
            .iter()
            .filter_map(|id| median_interval(readings.series(id).times))
            .max()
            .unwrap_or(0)
            / 2;
        for &(t, up, sensor) in &list {
            let from = list.partition_point(|x| x.0 < t - tolerance);
            let together = list[from..]
                .iter()
                .take_while(|x| x.0 <= t + tolerance)
                .any(|x| x.1 == up && x.2 != sensor);
            if together {
                out.entry(sensor.clone()).or_default().push(t);
            }
        }
    }
    for times in out.values_mut() {
        times.sort_unstable();
        times.dedup();
    }
    out
}

/// The times at which a series jumps, and whether up.
fn jumps(times: &[EpochMillis], values: &[f64]) -> Vec<(EpochMillis, bool)> {
    let mut out = Vec::new();
    for i in 3..values.len() {
        let (a, b, c) = (values[i - 3], values[i - 2], values[i - 1]);
        // The middle of the three (readings are finite).
        let level = a.min(b).max(a.max(b).min(c));
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
        let id = |s: &str| SensorId::parse(s).unwrap();
        assert_eq!(jumps[&id("c1")], vec![8 * step, 12 * step]);
        assert_eq!(jumps[&id("c2")], vec![8 * step, 12 * step]);
        assert!(!jumps.contains_key(&id("a1")) && !jumps.contains_key(&id("a2")));
    }

    #[test]
    fn loggers_a_few_seconds_apart_jump_together_too() {
        let net = Network::parse(NET).unwrap();
        let id = |s: &str| SensorId::parse(s).unwrap();
        let step = 300_000;
        let mut rows = Vec::new();
        for k in 0..20i64 {
            let empty = k == 8;
            // c2 reads 20 s after c1.
            rows.push((id("c1"), k * step, if empty { 0.4 } else { 37.0 }));
            rows.push((id("c2"), k * step + 20_000, if empty { -3.0 } else { 25.0 }));
        }
        let r = Readings::from_rows(&net, rows);
        let jumps = common_jumps(&r, &net);
        assert_eq!(jumps[&id("c1")], vec![8 * step]);
        assert_eq!(jumps[&id("c2")], vec![8 * step + 20_000]);
    }
}
