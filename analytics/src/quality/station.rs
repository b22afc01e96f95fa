//! A monitoring station's signals on one regular time grid.
//!
//! Analysers report at their own pace and irregularly; the detectors step through time. The
//! station's nominal step is its fastest signal's median interval, rounded to a usual logger
//! step; each reading goes to the step it falls in (the newest wins), steps where no signal reported are absent (a gap,
//! not a zero) and every signal may be missing at any step.

use std::collections::BTreeMap;

use waterline_core::{Network, StationId};

use super::signals::{SignalSpec, is_station_kind};
use crate::readings::Readings;
use crate::timefmt::EpochMillis;

/// One station's aligned data.
#[derive(Debug, Clone)]
pub struct StationGrid {
    pub station: StationId,
    pub signals: Vec<SignalSpec>,
    /// Nominal step, ms.
    pub step_ms: i64,
    /// Step start times with at least one reading, ascending.
    pub times: Vec<EpochMillis>,
    /// `values[signal][i]` at `times[i]`; NaN when missing.
    pub values: Vec<Vec<f64>>,
}

/// The stations the network describes (sensors with a `station`), each with its signals in
/// sensor-id order.
pub fn stations(network: &Network) -> BTreeMap<StationId, Vec<SignalSpec>> {
    let mut out: BTreeMap<StationId, Vec<SignalSpec>> = BTreeMap::new();
    for s in network.sensors.values() {
        if let Some(st) = &s.station
            && is_station_kind(s.kind)
        {
            out.entry(st.clone())
                .or_default()
                .push(SignalSpec::from_sensor(s));
        }
    }
    out
}

/// Steps an analyser or logger is set to, ms.
const NICE_STEPS_MS: [i64; 18] = [
    1_000, 2_000, 5_000, 10_000, 15_000, 20_000, 30_000, 60_000, 120_000, 180_000, 300_000,
    600_000, 900_000, 1_200_000, 1_800_000, 3_600_000, 7_200_000, 86_400_000,
];

/// The station's step: per signal the median positive interval between its readings, the
/// fastest signal's, rounded to the nearest usual logger step (clock jitter of a few seconds
/// must not make a 5-minute station a 5:10 one). One minute when there is nothing to measure.
fn nominal_step(readings: &Readings, signals: &[SignalSpec]) -> i64 {
    let fastest = signals
        .iter()
        .filter_map(|s| median_interval(readings.series(&s.sensor).times))
        .min();
    let Some(step) = fastest else {
        return 60_000;
    };
    let distance = |n: i64| ((n as f64) / (step as f64)).ln().abs();
    NICE_STEPS_MS
        .into_iter()
        .min_by(|a, b| distance(*a).total_cmp(&distance(*b)))
        .unwrap_or(step)
}

/// The median positive interval between consecutive (sorted) times, `None` without one.
pub(crate) fn median_interval(times: &[EpochMillis]) -> Option<i64> {
    let mut gaps: Vec<i64> = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|g| *g > 0)
        .collect();
    if gaps.is_empty() {
        return None;
    }
    let mid = gaps.len() / 2;
    Some(*gaps.select_nth_unstable(mid).1)
}

impl StationGrid {
    /// Aligns the station's readings on its nominal step.
    pub fn build(readings: &Readings, station: StationId, signals: Vec<SignalSpec>) -> Self {
        let step_ms = nominal_step(readings, &signals).max(1);
        let bucket = |t: EpochMillis| t.div_euclid(step_ms) * step_ms;
        let mut times: Vec<EpochMillis> = Vec::new();
        for s in &signals {
            times.extend(readings.series(&s.sensor).times.iter().map(|t| bucket(*t)));
        }
        times.sort_unstable();
        times.dedup();
        let mut values = Vec::with_capacity(signals.len());
        for s in &signals {
            let series = readings.series(&s.sensor);
            let mut col = vec![f64::NAN; times.len()];
            let mut i = 0;
            for (t, v) in series.times.iter().zip(series.values) {
                let b = bucket(*t);
                while times[i] < b {
                    i += 1;
                }
                if v.is_finite() {
                    col[i] = *v;
                }
            }
            values.push(col);
        }
        StationGrid {
            station,
            signals,
            step_ms,
            times,
            values,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readings::LoadOptions;

    #[test]
    fn aligns_jittery_readings_on_the_usual_step() {
        let net = Network::parse(
            "timezone = \"UTC\"\n\
             [[sensor]]\nid = \"cl\"\nkind = \"chlorine\"\nunit = \"mg/L\"\nstation = \"S\"\n\
             [[sensor]]\nid = \"tu\"\nkind = \"turbidity\"\nunit = \"NTU\"\nstation = \"S\"\n\
             [[sensor]]\nid = \"q\"\nkind = \"flow\"\nunit = \"m3/h\"\n",
        )
        .expect("network");
        let csv = "time,sensor,value\n\
                   2026-01-01T00:00:00Z,cl,1.0\n2026-01-01T00:05:10Z,cl,1.1\n\
                   2026-01-01T00:10:00Z,cl,1.2\n2026-01-01T00:20:00Z,cl,1.3\n\
                   2026-01-01T00:00:30Z,tu,0.2\n2026-01-01T00:05:00Z,tu,\n\
                   2026-01-01T00:10:20Z,tu,0.4\n2026-01-01T00:00:00Z,q,5\n";
        let (readings, _) =
            Readings::from_csv(csv.as_bytes(), "t.csv", &net, LoadOptions::default())
                .expect("readings");
        let st = stations(&net);
        assert_eq!(st.len(), 1, "the flow sensor has no station");
        let (id, signals) = st.into_iter().next().expect("one station");
        let g = StationGrid::build(&readings, id, signals);
        assert_eq!(g.step_ms, 300_000);
        let base = g.times[0];
        let offsets: Vec<i64> = g.times.iter().map(|t| (t - base) / 60_000).collect();
        assert_eq!(offsets, vec![0, 5, 10, 20], "no step at 15 min: a gap");
        assert_eq!(g.values[0], vec![1.0, 1.1, 1.2, 1.3]);
        assert_eq!(g.values[1][0], 0.2);
        assert!(g.values[1][1].is_nan(), "an empty value is missing");
        assert_eq!(g.values[1][2], 0.4);
        assert!(g.values[1][3].is_nan());
    }
}
