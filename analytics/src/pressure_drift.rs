//! Pressure-sensor drift against the zone's other sensors. A drifting transducer reads a few
//! metres off over days; its own history cannot tell that from a real change, but its zone's
//! other pressure points can: pressures in one DMA rise and fall together, so a sensor's
//! offset from the median of its neighbours repeats from day to day, hour by hour.
//!
//! Per DMA with at least `min_neighbours + 1` pressure sensors, on hourly means:
//!
//! - `d(h)` = the sensor's mean − the median of its neighbours' means in hour `h`;
//! - `e(h)` = `d(h)` − the median of `d` at the same hour of the day over the last
//!   `baseline_days` (at least `min_history_days` of them), so the daily pattern of head loss
//!   cancels;
//! - the noise of `e`: a robust standard deviation over the last week but the 12 hours being
//!   judged (at least a day of it), so that a drift which began soon after the usual offset
//!   did is not its own noise;
//! - **drift** when the mean of `e` over the last 12 h is beyond `threshold_m` and
//!   `sd_factor` standard deviations, the last three 6-hour means of `e` move steadily the
//!   same way, and no two-hour change of `e` in those 18 h is more than 60 % of the whole
//!   change (a step, as a burst next to one sensor makes, is one big jump; a drift creeps);
//!   and when two or more of the zone's sensors move at once (a 12-hour mean of `e` beyond the
//!   threshold) it is a hydraulic change, not an instrument: nothing opens, and a drift
//!   opened in the last 12 h is taken back. While a sensor drifts it counts in its
//!   neighbours' medians with its drift (its `e`) taken out: in a zone of three, half its
//!   drift would show on each of the other two, and they would seem to drift too. The fault
//!   starts with the first of those blocks, is detected at the end of the hour that showed it
//!   (causal), and ends when the 12-hour mean is back within half the threshold. While it
//!   lasts, the sensor's baseline is frozen.
//! - **one drifting, not several moving**: before the drift is known, its neighbours' medians
//!   still carry it. With four or more points that moves the others only through the order of
//!   the values: of the two middle points of four, each is the other's median, so one's drift
//!   shows in full, mirrored, on the other (and on the outer points whose median it is), and
//!   the zone seems to move at once. So when several moved, each candidate is tried as the
//!   drifting one: the last 18 h are read again with its `e` taken out of its neighbours'
//!   medians, as when it drifts. If then every other sensor is back within half the threshold
//!   (clearly at its usual, not merely below the threshold) and no other candidate explains
//!   it as well, it alone moved: its drift opens, and the others' last hours are kept as
//!   re-read. This needs at least three other points to judge: with two, their agreeing once
//!   its drift is out is as much the two moving together (one of three drifting up is the
//!   other two moving down), which the zone cannot tell apart.
//!
//! The result is a `sensor_fault` with a message starting `drift`. Once the zone's drops have
//! been checked against its inflow, [`retract_burst_moved`] takes back a drift whose evidence
//! holds a burst of its zone (a burst sags the points unevenly).

use std::collections::VecDeque;

use polars::prelude::PolarsResult;
use waterline_core::{Event, EventKind, Network, SensorId, SensorKind, Severity};

use crate::grid::sensor_means;
use crate::quality::utc;
use crate::readings::Readings;
use crate::stats::median;
use crate::timefmt::EpochMillis;

const HOUR: EpochMillis = 3_600_000;

/// Hours whose mean `e` is judged against the threshold and the noise.
const JUDGED_HOURS: usize = 12;
/// Hours of `e` before those judged that the noise estimate needs (a day: every hour of it).
const MIN_NOISE_HOURS: usize = 24;

/// How drift is recognised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftConfig {
    /// Other pressure sensors a DMA needs besides the one checked.
    pub min_neighbours: usize,
    /// Smallest offset from the usual, m.
    pub threshold_m: f64,
    /// … and at least this many standard deviations of the usual.
    pub sd_factor: f64,
    pub baseline_days: usize,
    pub min_history_days: usize,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            min_neighbours: 2,
            threshold_m: 1.0,
            sd_factor: 4.0,
            baseline_days: 7,
            min_history_days: 3,
        }
    }
}

/// The state of one sensor's check.
#[derive(Debug, Default)]
struct Track {
    /// Per hour of day, the recent `d` values.
    by_hour: Vec<VecDeque<f64>>,
    /// Recent `e` values (noise), a week.
    recent_e: VecDeque<f64>,
    /// `e` of the last 18 hours (`None`: no value that hour).
    last: VecDeque<Option<f64>>,
    open: Option<(EpochMillis, EpochMillis, f64)>,
}

/// One hour as the zone's comparison saw it, kept for the last 18 hours so that they can be
/// read again with a sensor's drift taken out of its neighbours' medians.
#[derive(Debug, Clone)]
struct Seen {
    /// Each sensor's hourly mean.
    values: Vec<Option<f64>>,
    /// Each sensor's usual `d` at that hour of day (the median `e` is taken from) and its `e`.
    usual: Vec<Option<f64>>,
    e: Vec<Option<f64>>,
    /// The sensors that counted in the medians with their drift taken out.
    drifting: Vec<bool>,
}

/// Finds drifting pressure sensors in `[t0, t1]`.
pub fn detect(
    readings: &Readings,
    network: &Network,
    cfg: &DriftConfig,
    t0: EpochMillis,
    t1: EpochMillis,
) -> PolarsResult<Vec<Event>> {
    let zones: Vec<&waterline_core::Dma> = network.dmas.iter().collect();
    let mut events = Vec::new();
    for found in crate::parallel::map_in_parallel(&zones, |dma| {
        detect_zone(readings, network, dma, cfg, t0, t1)
    }) {
        events.extend(found?);
    }
    Ok(events)
}

/// [`detect`] for the pressure sensors of one DMA.
fn detect_zone(
    readings: &Readings,
    network: &Network,
    dma: &waterline_core::Dma,
    cfg: &DriftConfig,
    t0: EpochMillis,
    t1: EpochMillis,
) -> PolarsResult<Vec<Event>> {
    let mut events = Vec::new();
    let ids: Vec<SensorId> = network
        .sensors
        .values()
        .filter(|s| s.kind == SensorKind::Pressure && s.dma.as_ref() == Some(&dma.id))
        .map(|s| s.id.clone())
        .collect();
    if ids.len() < cfg.min_neighbours + 1 {
        return Ok(events);
    }
    let grids = sensor_means(readings, &ids, t0, t1, HOUR)?;
    let series: Vec<&crate::grid::Grid> = ids.iter().map(|s| &grids[s]).collect();
    let n_hours = series[0].len();
    let start = series[0].start;
    let mut tracks: Vec<Track> = ids
        .iter()
        .map(|_| Track {
            by_hour: vec![VecDeque::new(); 24],
            ..Track::default()
        })
        .collect();
    let mut pending: Vec<(usize, usize, f64, Option<f64>)> = Vec::new();
    let mut seen: VecDeque<Seen> = VecDeque::new();
    for h in 0..n_hours {
        let t = start + h as i64 * HOUR;
        let hod = (t.div_euclid(HOUR) % 24) as usize;
        // The hour's values, sorted once: each sensor's neighbours are all but its own. A
        // drifting sensor counts in its neighbours' medians with its drift taken out (this
        // hour's offset from its usual): raw, half of it would show on each of the other two
        // in a zone of three, and they would seem to drift too.
        let values: Vec<Option<f64>> = series.iter().map(|g| g.values[h]).collect();
        let mut offsets: Vec<Option<(f64, Option<f64>)>> = vec![None; ids.len()];
        let mut usual: Vec<Option<f64>> = vec![None; ids.len()];
        let drifting = |k: usize| tracks[k].open.is_some();
        // Drifting sensors against everyone's raw values first, then the others against the
        // drifting ones corrected by that.
        for pass in [true, false] {
            let counted: Vec<Option<f64>> = (0..ids.len())
                .map(|k| match (pass, drifting(k)) {
                    (false, true) => Some(values[k]? - offsets[k]?.1?),
                    _ => values[k],
                })
                .collect();
            let ds = offsets_from_others(&values, &counted, |k| drifting(k) == pass, cfg);
            for (k, d) in ds.into_iter().enumerate() {
                let Some(d) = d else { continue };
                let track = &tracks[k];
                if track.by_hour[hod].len() >= cfg.min_history_days {
                    let mut hist: Vec<f64> = track.by_hour[hod].iter().copied().collect();
                    usual[k] = median(&mut hist);
                }
                offsets[k] = Some((d, usual[k].map(|m| d - m)));
            }
        }
        for (k, track) in tracks.iter_mut().enumerate() {
            match offsets[k] {
                Some((d, e)) => {
                    push_last(track, e);
                    pending.push((k, hod, d, e));
                }
                None => push_last(track, None),
            }
        }
        seen.push_back(Seen {
            e: offsets.iter().map(|o| o.and_then(|(_, e)| e)).collect(),
            values,
            usual,
            drifting: tracks.iter().map(|tr| tr.open.is_some()).collect(),
        });
        if seen.len() > 18 {
            seen.pop_front();
        }
        // Close what recovered; open what drifts, unless several sensors of the zone moved
        // at once (a hydraulic change, not an instrument): then nothing opens, and a drift
        // opened in the last 12 h is taken back.
        let now = t + HOUR;
        for (k, track) in tracks.iter_mut().enumerate() {
            if let Some(ev) = closing(track, &ids[k], now, cfg) {
                let mut ev = ev;
                ev.dma = Some(dma.id.clone());
                events.push(ev);
            }
        }
        let mut candidates = candidates_of(&tracks, cfg);
        let mut moved = moved_of(&tracks, cfg);
        // Several moved, but maybe only because one drifts and its neighbours' medians still
        // carry it (of the two middle points of four, each is the other's median, so one's
        // drift is the other's, mirrored): if one candidate's drift, taken out of those
        // medians over the last 18 h, leaves all the others at their usual, it alone moved.
        if moved >= 2
            && let Some(SoleMover { k, value, others }) =
                sole_mover(&tracks, &seen, &candidates, cfg)
        {
            tracks[k].open = Some((now - 18 * HOUR, now, value));
            for (j, last) in others {
                tracks[j].last = last;
            }
            candidates = candidates_of(&tracks, cfg);
            moved = moved_of(&tracks, cfg);
        }
        if moved >= 2 {
            for tr in tracks.iter_mut() {
                if tr
                    .open
                    .is_some_and(|(_, detected, _)| now - detected < 12 * HOUR)
                {
                    tr.open = None;
                }
            }
        } else {
            for (k, value) in candidates {
                tracks[k].open = Some((now - 18 * HOUR, now, value));
            }
        }
        for (k, hod, d, e) in pending.drain(..) {
            let track = &mut tracks[k];
            // Learn the usual only while nothing is wrong.
            if track.open.is_none() {
                let ring = &mut track.by_hour[hod];
                ring.push_back(d);
                if ring.len() > cfg.baseline_days {
                    ring.pop_front();
                }
                if let Some(e) = e {
                    track.recent_e.push_back(e);
                    if track.recent_e.len() > 24 * 7 {
                        track.recent_e.pop_front();
                    }
                }
            }
        }
    }
    for (k, track) in tracks.iter_mut().enumerate() {
        if let Some((s, detected, value)) = track.open.take() {
            events.push(event(
                &ids[k],
                s,
                detected,
                None,
                value,
                Some(dma.id.clone()),
            ));
        }
    }
    Ok(events)
}

/// Takes back the drift faults a burst explains, and returns how many. A burst lowers its
/// zone's pressures unevenly (a point next to the source hardly at all, one next to the burst
/// most), so a point's offset from its neighbours changes with it, and as the burst's flow
/// and head loss follow the day's demand that change can creep like a drift. A drift whose
/// evidence (from its start to its detection) holds the start of a `pressure_drop` incident
/// of its zone, known by the time the drift was, is the burst's, not the instrument's. (On the
/// built-in network's seed 13, area A's inlet point read 1.3 m above its usual offset after
/// a 21 mm burst deep in the area sagged the other three.)
pub fn retract_burst_moved(events: &mut Vec<Event>) -> usize {
    let incidents: Vec<(Option<waterline_core::DmaId>, EpochMillis, EpochMillis)> = events
        .iter()
        .filter(|e| e.kind == EventKind::PressureDrop)
        .map(|e| {
            (
                e.dma.clone(),
                e.start.timestamp_millis(),
                e.detected_at.timestamp_millis(),
            )
        })
        .collect();
    let before = events.len();
    events.retain(|e| {
        let is_drift = e.kind == EventKind::SensorFault
            && e.message.as_deref().is_some_and(|m| m.starts_with("drift"));
        if !is_drift || e.dma.is_none() {
            return true;
        }
        let (from, by) = (e.start.timestamp_millis(), e.detected_at.timestamp_millis());
        !incidents
            .iter()
            .any(|(dma, start, known)| *dma == e.dma && (from..=by).contains(start) && *known <= by)
    });
    before - events.len()
}

/// A candidate found to be the only one that moved ([`sole_mover`]).
struct SoleMover {
    k: usize,
    /// Its 12-hour mean `e`.
    value: f64,
    /// The other sensors not drifting, each with its last 18 `e` read again with `k`'s drift
    /// taken out of its median.
    others: Vec<(usize, VecDeque<Option<f64>>)>,
}

/// The candidates (sensors not yet drifting which drift now) with their 12-hour mean `e`.
fn candidates_of(tracks: &[Track], cfg: &DriftConfig) -> Vec<(usize, f64)> {
    tracks
        .iter()
        .enumerate()
        .filter(|(_, tr)| tr.open.is_none())
        .filter_map(|(k, tr)| candidate(tr, cfg).map(|v| (k, v)))
        .collect()
}

/// How many sensors not drifting are off their usual over the last 12 h.
fn moved_of(tracks: &[Track], cfg: &DriftConfig) -> usize {
    tracks
        .iter()
        .filter(|tr| tr.open.is_none())
        .filter(|tr| recent_mean(&tr.last).is_some_and(|m| m.abs() >= cfg.threshold_m))
        .count()
}

/// The others' `e` in an hour had sensor `k` counted in their medians with its `e` taken out,
/// as a drifting sensor's is (`None` for `k`, for sensors drifting then, and where there is no
/// `e`). With nothing taken out these are the hour's `e`.
fn e_without(seen: &Seen, k: usize, cfg: &DriftConfig) -> Vec<Option<f64>> {
    let n = seen.values.len();
    let counted: Vec<Option<f64>> = (0..n)
        .map(|j| {
            let v = seen.values[j]?;
            if seen.drifting[j] {
                Some(v - seen.e[j]?)
            } else if j == k {
                Some(seen.e[j].map_or(v, |e| v - e))
            } else {
                Some(v)
            }
        })
        .collect();
    let judged = |j: usize| j != k && !seen.drifting[j];
    offsets_from_others(&seen.values, &counted, judged, cfg)
        .into_iter()
        .zip(&seen.usual)
        .map(|(d, usual)| Some(d? - (*usual)?))
        .collect()
}

/// Each `judged` sensor's offset `d` from the median of the others' `counted` values in one
/// hour (`values` raw; a judged sensor counts with its raw value), `None` for the others,
/// without a value, or with fewer neighbours than [`DriftConfig::min_neighbours`] (at least
/// one: a median of none is none).
fn offsets_from_others(
    values: &[Option<f64>],
    counted: &[Option<f64>],
    judged: impl Fn(usize) -> bool,
    cfg: &DriftConfig,
) -> Vec<Option<f64>> {
    let mut present: Vec<f64> = counted.iter().flatten().copied().collect();
    present.sort_by(f64::total_cmp);
    (0..values.len())
        .map(|j| {
            if !judged(j) {
                return None;
            }
            // Its own value is among them.
            let v = values[j]?;
            if present.len() - 1 < cfg.min_neighbours.max(1) {
                return None;
            }
            Some(v - median_without(&present, v))
        })
        .collect()
}

/// The one candidate that alone moved: its drift, taken out of its neighbours' medians over
/// the last 18 h, leaves every other sensor not drifting within half the threshold (clearly
/// at its usual) over the last 12 h. It needs three such others with a 12-hour mean: with
/// two, their agreeing with each other once its drift is out is just as much the two moving
/// together (in a zone of three, one drifting up is the other two moving down).
fn sole_mover(
    tracks: &[Track],
    seen: &VecDeque<Seen>,
    candidates: &[(usize, f64)],
    cfg: &DriftConfig,
) -> Option<SoleMover> {
    let mut found = None;
    for &(k, value) in candidates {
        let reread: Vec<Vec<Option<f64>>> = seen.iter().map(|s| e_without(s, k, cfg)).collect();
        let others: Vec<(usize, VecDeque<Option<f64>>)> = (0..tracks.len())
            .filter(|&j| j != k && tracks[j].open.is_none())
            .map(|j| {
                let last = tracks[j]
                    .last
                    .iter()
                    .zip(&reread)
                    .map(|(&old, row)| row[j].or(old))
                    .collect();
                (j, last)
            })
            .collect();
        let means: Vec<f64> = others
            .iter()
            .filter_map(|(_, last)| recent_mean(last))
            .collect();
        if means.len() < 3 || means.iter().any(|m| m.abs() >= cfg.threshold_m / 2.0) {
            continue;
        }
        if found.is_some() {
            // Two could each be the one: not yet told apart.
            return None;
        }
        found = Some(SoleMover { k, value, others });
    }
    found
}

/// The median of sorted `values` without one occurrence of `own` (which they hold).
fn median_without(values: &[f64], own: f64) -> f64 {
    let at = values.partition_point(|x| x.total_cmp(&own) == std::cmp::Ordering::Less);
    // The i-th smallest of the others.
    let rank = |i: usize| if i < at { values[i] } else { values[i + 1] };
    let n = values.len() - 1;
    if n % 2 == 1 {
        rank(n / 2)
    } else {
        (rank(n / 2 - 1) + rank(n / 2)) / 2.0
    }
}

fn push_last(track: &mut Track, e: Option<f64>) {
    track.last.push_back(e);
    if track.last.len() > 18 {
        track.last.pop_front();
    }
}

fn mean(v: impl Iterator<Item = Option<f64>>, min: usize) -> Option<f64> {
    let xs: Vec<f64> = v.flatten().collect();
    (xs.len() >= min).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// The mean `e` of the last [`JUDGED_HOURS`] of the last 18 hours (at least 8 of them).
fn recent_mean(last: &VecDeque<Option<f64>>) -> Option<f64> {
    if last.len() < 18 {
        return None;
    }
    mean(last.iter().skip(18 - JUDGED_HOURS).copied(), 8)
}

/// Closes an open fault whose sensor is back to its usual offset (returns it).
fn closing(
    track: &mut Track,
    sensor: &SensorId,
    now: EpochMillis,
    cfg: &DriftConfig,
) -> Option<Event> {
    let (s, detected, value) = track.open?;
    let recent12 = recent_mean(&track.last)?;
    if recent12.abs() < cfg.threshold_m / 2.0 {
        track.open = None;
        return Some(event(sensor, s, detected, Some(now), value, None));
    }
    None
}

/// The 12-hour mean offset when the sensor drifts now (beyond the threshold and its noise,
/// moving steadily the same way over 18 h).
fn candidate(track: &Track, cfg: &DriftConfig) -> Option<f64> {
    let recent12 = recent_mean(&track.last)?;
    // Most hours stop here: the noise estimate below sorts a week of values.
    if recent12.abs() < cfg.threshold_m {
        return None;
    }
    // The noise from the hours before the ones judged: a drift that began soon after the
    // usual offset did would otherwise widen its own noise estimate as it grows.
    let before = track.recent_e.len().saturating_sub(JUDGED_HOURS);
    let mut noise: Vec<f64> = track.recent_e.iter().take(before).copied().collect();
    if noise.len() < MIN_NOISE_HOURS {
        return None;
    }
    let mid = median(&mut noise)?;
    let mut dev: Vec<f64> = noise.iter().map(|x| (x - mid).abs()).collect();
    let sd = 1.4826 * median(&mut dev)?;
    if recent12.abs() < cfg.threshold_m.max(cfg.sd_factor * sd) {
        return None;
    }
    let blocks: Vec<Option<f64>> = (0..3)
        .map(|b| mean(track.last.iter().skip(b * 6).take(6).copied(), 4))
        .collect();
    let [Some(b0), Some(b1), Some(b2)] = blocks[..] else {
        return None;
    };
    let sign = recent12.signum();
    let steady = (b1 - b0) * sign > 0.1 && (b2 - b1) * sign > 0.1;
    // A step (a burst next to the sensor) makes one big jump within two hours (an hour's mean
    // may catch half of it); a drift creeps.
    let hourly: Vec<f64> = track.last.iter().flatten().copied().collect();
    let jump = hourly
        .windows(3)
        .map(|w| (w[2] - w[0]).abs())
        .fold(0.0, f64::max);
    let creeping = jump <= 0.6 * ((b2 - b0) * sign);
    (steady && creeping).then_some(recent12)
}

fn event(
    sensor: &SensorId,
    start: EpochMillis,
    detected: EpochMillis,
    end: Option<EpochMillis>,
    value: f64,
    dma: Option<waterline_core::DmaId>,
) -> Event {
    let mut e = Event::new(EventKind::SensorFault, utc(start), utc(detected));
    e.end = end.map(utc);
    e.sensor = Some(sensor.clone());
    e.dma = dma;
    e.severity = Some(Severity::Warning);
    e.value = Some((value * 100.0).round() / 100.0);
    e.confidence = Some(0.8);
    e.message = Some(format!(
        "drift: reads {value:+.2} m off its usual offset from the zone's other pressure points, growing steadily over 18 h"
    ));
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_the_others_is_the_median_without_one_own_value() {
        let values = [3.0, -1.0, 2.5, 2.5, 7.0, 0.0, 2.5, 9.5];
        for n in 2..=values.len() {
            let mut sorted = values[..n].to_vec();
            sorted.sort_by(f64::total_cmp);
            for k in 0..n {
                let mut others: Vec<f64> = (0..n).filter(|&j| j != k).map(|j| values[j]).collect();
                let expected = median(&mut others).unwrap();
                assert_eq!(median_without(&sorted, values[k]), expected, "n {n} k {k}");
            }
        }
    }

    /// 18 hours of a zone whose points sit at `base` plus `change(point, hour)`, their usual
    /// offsets those of `base`, and their tracks holding the hours' `e`.
    fn hours(base: &[f64], change: impl Fn(usize, usize) -> f64) -> (Vec<Track>, VecDeque<Seen>) {
        let n = base.len();
        let mut sorted = base.to_vec();
        sorted.sort_by(f64::total_cmp);
        let usual: Vec<Option<f64>> = base
            .iter()
            .map(|&v| Some(v - median_without(&sorted, v)))
            .collect();
        let mut tracks: Vec<Track> = (0..n).map(|_| Track::default()).collect();
        let mut seen = VecDeque::new();
        for h in 0..18 {
            let mut hour = Seen {
                values: (0..n).map(|j| Some(base[j] + change(j, h))).collect(),
                usual: usual.clone(),
                e: vec![None; n],
                drifting: vec![false; n],
            };
            // Nothing taken out (no point `n`): the hour's `e`.
            hour.e = e_without(&hour, n, &DriftConfig::default());
            for (tr, &e) in tracks.iter_mut().zip(&hour.e) {
                push_last(tr, e);
            }
            seen.push_back(hour);
        }
        (tracks, seen)
    }

    #[test]
    fn one_drifting_is_told_from_several_moving_only_with_three_others() {
        let cfg = DriftConfig::default();
        let drift = |h: usize| -0.1 * h as f64;
        // Four points, the second highest drifting: the second lowest and the lowest have it
        // for their median and move with it, but taking its drift out leaves them at their
        // usual, which taking out the mirror's does not.
        let (tracks, seen) = hours(&[50.0, 44.0, 38.0, 41.0], |j, h| {
            if j == 1 { drift(h) } else { 0.0 }
        });
        assert_eq!(moved_of(&tracks, &cfg), 3);
        let value = recent_mean(&tracks[1].last).unwrap();
        assert_eq!(recent_mean(&tracks[3].last), Some(-value));
        let found = sole_mover(&tracks, &seen, &[(1, value), (3, -value)], &cfg).unwrap();
        assert_eq!((found.k, found.value), (1, value));
        for (j, last) in &found.others {
            assert!(recent_mean(last).unwrap().abs() < 1e-9, "{j}: {last:?}");
        }
        // Three points: the highest rising alone reads as the other two sinking together.
        let (tracks, seen) = hours(
            &[50.0, 44.0, 38.0],
            |j, h| {
                if j == 0 { -drift(h) } else { 0.0 }
            },
        );
        let value = recent_mean(&tracks[0].last).unwrap();
        assert!(sole_mover(&tracks, &seen, &[(0, value)], &cfg).is_none());
    }

    const NET: &str = r#"
[[dma]]
id = "A"
inlets = ["A-in"]
[[sensor]]
id = "A-in"
kind = "flow"
unit = "m3/h"
dma = "A"
[[sensor]]
id = "p1"
kind = "pressure"
unit = "m"
dma = "A"
[[sensor]]
id = "p2"
kind = "pressure"
unit = "m"
dma = "A"
[[sensor]]
id = "p3"
kind = "pressure"
unit = "m"
dma = "A"
[[sensor]]
id = "p4"
kind = "pressure"
unit = "m"
dma = "A"
"#;
    const T0: EpochMillis = 1_767_225_600_000;
    const STEP: EpochMillis = 300_000;
    const DAY: EpochMillis = 24 * HOUR;

    /// Twelve days of 5-minute data of four points sharing the zone's daily swing (with their
    /// own head-loss share and noise); `change(sensor, t)` adds to a sensor's reading.
    fn zone(change: impl Fn(usize, EpochMillis) -> f64) -> (Network, Readings) {
        let net = Network::parse(NET).unwrap();
        let mut rng = waterline_core::testing::XorShift(0x000d_71f7);
        let mut rows = Vec::new();
        for k in 0..(12 * DAY / STEP) {
            let off = k * STEP;
            let hour = (off % DAY) as f64 / HOUR as f64;
            let swing = 4.0 * (std::f64::consts::TAU * (hour - 14.0) / 24.0).cos();
            for (i, (base, share)) in [(50.0, 1.0), (44.0, 1.3), (38.0, 0.8), (41.0, 1.1)]
                .into_iter()
                .enumerate()
            {
                let noise = ((rng.next_u64() % 1000) as f64 / 1000.0 - 0.5) * 0.3;
                let v = base + share * swing + noise + change(i, off);
                rows.push((
                    SensorId::parse(format!("p{}", i + 1)).unwrap(),
                    T0 + off,
                    (v * 100.0).round() / 100.0,
                ));
            }
        }
        let readings = Readings::from_rows(&net, rows);
        (net, readings)
    }

    fn run(net: &Network, r: &Readings) -> Vec<Event> {
        let (t0, t1) = r.time_range().unwrap();
        detect(r, net, &DriftConfig::default(), t0, t1).unwrap()
    }

    /// Point `i` of the zone drifts to −5 m over three days from day 7, then is recalibrated.
    fn one_drifting(i: usize) -> impl Fn(usize, EpochMillis) -> f64 {
        let (a, b) = (7 * DAY, 10 * DAY);
        move |j, t| {
            if j == i && (a..b).contains(&t) {
                -5.0 * (t - a) as f64 / (b - a) as f64
            } else {
                0.0
            }
        }
    }

    /// `e`, the fault of [`one_drifting`], was raised within two days of the drift's start and
    /// closed after the recalibration.
    fn assert_found_in_time_and_closed(e: &Event) {
        let a = 7 * DAY;
        let detected = e.detected_at.timestamp_millis() - T0;
        assert!(
            detected > a && detected < a + 2 * DAY,
            "detected {} h after the start",
            (detected - a) / HOUR
        );
        assert!(e.end.is_some(), "closed after the recalibration");
    }

    #[test]
    fn a_sensor_drifting_away_from_its_zone_is_a_fault() {
        let (net, r) = zone(one_drifting(2));
        let events = run(&net, &r);
        assert_eq!(events.len(), 1, "{events:#?}");
        let e = &events[0];
        assert_eq!(e.sensor.as_ref().unwrap().as_str(), "p3");
        assert!(e.message.as_deref().unwrap().starts_with("drift"));
        assert_found_in_time_and_closed(e);
    }

    #[test]
    fn a_drift_that_begins_before_the_usual_offset_is_known_is_found_while_it_lasts() {
        // L-Town seed 6: n516 began drifting 43 h into the data, before the three days a
        // usual offset needs, and was recalibrated 3 days later. Its first `e` already
        // carried the drift, and a noise estimate over all of them grew with it until the
        // drift was over.
        let (a, b) = (43 * HOUR, 117 * HOUR);
        let (net, r) = zone(|i, t| {
            if i == 2 && (a..b).contains(&t) {
                -4.5 * (t - a) as f64 / (b - a) as f64
            } else {
                0.0
            }
        });
        let events = run(&net, &r);
        assert_eq!(events.len(), 1, "{events:#?}");
        let e = &events[0];
        assert_eq!(e.sensor.as_ref().unwrap().as_str(), "p3");
        let detected = e.detected_at.timestamp_millis() - T0;
        assert!(
            detected < b,
            "detected {} h after the drift ended",
            (detected - b) / HOUR
        );
    }

    #[test]
    fn a_drift_a_burst_of_its_zone_explains_is_taken_back() {
        let at = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        let event = |kind: EventKind, dma: &str, start: &str, detected: &str, message: &str| {
            let mut e = Event::new(kind, at(start), at(detected));
            e.dma = Some(waterline_core::DmaId::parse(dma).unwrap());
            e.message = Some(message.to_owned());
            e
        };
        let drift = |dma: &str| {
            event(
                EventKind::SensorFault,
                dma,
                "2026-02-06T09:00:00Z",
                "2026-02-07T03:00:00Z",
                "drift: reads +1.31 m off its usual offset",
            )
        };
        let burst = |dma: &str, start: &str, detected: &str| {
            event(EventKind::PressureDrop, dma, start, detected, "a burst")
        };
        let flatline = event(
            EventKind::SensorFault,
            "A",
            "2026-02-06T10:00:00Z",
            "2026-02-06T16:00:00Z",
            "flatline: no change",
        );
        // In its zone, inside its evidence and known before it: taken back.
        let mut events = vec![
            drift("A"),
            burst("A", "2026-02-06T14:30:00Z", "2026-02-06T15:15:00Z"),
            flatline,
        ];
        assert_eq!(retract_burst_moved(&mut events), 1);
        assert_eq!(events.len(), 2);
        assert!(
            events
                .iter()
                .all(|e| !e.message.as_deref().unwrap().starts_with("drift"))
        );
        // Another zone's burst, a burst before the evidence, one known only after the drift
        // was: the drift stands.
        for other in [
            burst("B", "2026-02-06T14:30:00Z", "2026-02-06T15:15:00Z"),
            burst("A", "2026-02-06T08:00:00Z", "2026-02-06T08:45:00Z"),
            burst("A", "2026-02-07T02:30:00Z", "2026-02-07T03:15:00Z"),
        ] {
            let mut events = vec![drift("A"), other];
            assert_eq!(retract_burst_moved(&mut events), 0);
        }
    }

    #[test]
    fn in_a_zone_of_three_only_the_drifting_sensor_is_a_fault() {
        // p4 is not installed; p3 drifts to −5 m over three days from day 7. Against the
        // median of the other two, p1 and p2 would each read half of that off by day 9 (p2,
        // which creeps up 0.3 m itself meanwhile, a few hours before p1).
        let (a, b) = (7 * DAY, 10 * DAY);
        let (net, r) = zone(|i, t| {
            let f = ((t - a) as f64 / (b - a) as f64).clamp(0.0, 1.0);
            match i {
                1 => 0.3 * f,
                2 if t < b => -5.0 * f,
                _ => 0.0,
            }
        });
        let p4 = SensorId::parse("p4").unwrap();
        let rows: Vec<(SensorId, EpochMillis, f64)> = ["p1", "p2", "p3"]
            .into_iter()
            .flat_map(|id| {
                let id = SensorId::parse(id).unwrap();
                let s = r.series(&id);
                s.times
                    .iter()
                    .zip(s.values)
                    .map(|(&t, &v)| (id.clone(), t, v))
                    .collect::<Vec<_>>()
            })
            .collect();
        let r = Readings::from_rows(&net, rows);
        assert!(r.series(&p4).times.is_empty());
        let events = run(&net, &r);
        let sensors: Vec<&str> = events
            .iter()
            .map(|e| e.sensor.as_ref().unwrap().as_str())
            .collect();
        assert_eq!(sensors, ["p3"], "{events:#?}");
    }

    #[test]
    fn no_neighbours_required_still_needs_one_to_compare_with() {
        // Only p1 reports in its last days: with `min_neighbours = 0` it has nobody to be
        // compared with, which is no comparison (and no panic), not a drift.
        let (net, r) = zone(|_, _| 0.0);
        let mut rows: Vec<(SensorId, EpochMillis, f64)> = Vec::new();
        for id in ["p1", "p2", "p3", "p4"] {
            let id = SensorId::parse(id).unwrap();
            let s = r.series(&id);
            for (&t, &v) in s.times.iter().zip(s.values) {
                if id.as_str() == "p1" || t < T0 + 9 * DAY {
                    rows.push((id.clone(), t, v));
                }
            }
        }
        let r = Readings::from_rows(&net, rows);
        let (t0, t1) = r.time_range().unwrap();
        let cfg = DriftConfig {
            min_neighbours: 0,
            ..DriftConfig::default()
        };
        assert!(detect(&r, &net, &cfg, t0, t1).unwrap().is_empty());
    }

    #[test]
    fn a_middle_point_of_four_drifting_is_a_fault() {
        // p2, the second highest of four, drifts to −5 m over three days from day 7. It is the
        // median of p3's and p4's neighbours, so they read its drift too (mirrored, in full):
        // three points move, yet only one drifts.
        let (net, r) = zone(one_drifting(1));
        let events = run(&net, &r);
        let sensors: Vec<&str> = events
            .iter()
            .map(|e| e.sensor.as_ref().unwrap().as_str())
            .collect();
        assert_eq!(sensors, ["p2"], "{events:#?}");
        assert_found_in_time_and_closed(&events[0]);
    }

    #[test]
    fn zone_wide_changes_are_no_drift() {
        // The whole zone sags slowly (an incipient leak), two points a little more.
        let (net, r) = zone(|i, t| {
            let slow = ((t - 6 * DAY) as f64 / (4 * DAY) as f64).clamp(0.0, 1.0);
            -4.0 * slow * if i < 2 { 1.5 } else { 1.0 }
        });
        let events = run(&net, &r);
        assert!(events.is_empty(), "{events:#?}");
    }

    #[test]
    fn a_step_at_one_sensor_is_no_drift() {
        // p1 (the highest point, so its neighbours' medians do not move) steps down 3 m at
        // 08:30 on day 8, as next to a burst.
        let (net, r) = zone(|i, t| {
            if i == 0 && t > 8 * DAY + 8 * HOUR + HOUR / 2 {
                -3.0
            } else {
                0.0
            }
        });
        let events = run(&net, &r);
        assert!(events.is_empty(), "{events:#?}");
    }
}
