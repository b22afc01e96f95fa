//! Analyser drift: a bias that grows slowly, which the signal's own history cannot tell from a
//! change of the water. Two independent references show it:
//!
//! - a **redundant analyser** of the same parameter at the station (`redundant_of` in
//!   `network.toml`) sees the same water. [`PairTracker`] compares the pair's hourly medians
//!   and opens a drift episode when they differ by more than
//!   [`SignalSpec::agreement_tolerance`] for [`OPEN_HOURS`] hours in a row; as many hours back
//!   within it close the episode (the recalibration). The onset estimate is the end of the
//!   last hour the pair differed by its usual offset (within a quarter of the tolerance).
//!   Which of the two drifts is told by comparing each with itself at the same hour of
//!   earlier days when the pair agreed as usual:
//!   the water moved both alike, the drift only one. When neither moved clearly more, the
//!   event says so and names both. While the primary drifts (or has no trusted value), the
//!   redundant analyser's value, less the pair's usual offset, stands in for it.
//! - **laboratory grab samples** ([`LabSample`], see [`super::lab`]): the analyser's median within
//!   [`SAMPLE_WINDOW_MS`] of the sample time is compared with the lab's value
//!   ([`SampleChecker`]); one sample beyond twice the tolerance, or two in a row beyond it on
//!   the same side, show the analyser drifting, from the last sample it agreed with until the
//!   next one it agrees with. A comparison is skipped when the analyser has no trusted reading
//!   then, or the water changed by more than the tolerance within the window (the tap and the
//!   analyser may not have seen the same water). While the lab says it drifts, its values
//!   reach neither the event detector nor the set-point checks.
//!
//! Both are causal: a pair's episode is decided at the end of an hour on that hour's and
//! earlier readings; a sample's at the later of its result time and the end of its window.

use std::collections::VecDeque;

use super::lab::LabSample;
use super::signals::SignalSpec;
use crate::stats::select_median;
use crate::timefmt::EpochMillis;

const HOUR_MS: i64 = 3_600_000;
/// Hours in a row beyond (or back within) the tolerance that open (or close) a pair episode.
pub const OPEN_HOURS: usize = 2;
/// Paired values an hour needs to count.
const MIN_PAIRS: usize = 3;
/// Hourly statistics kept per pair (a week).
const HISTORY_HOURS: usize = 168;
/// A grab sample is compared with the analyser's readings this close to its time.
pub const SAMPLE_WINDOW_MS: i64 = 10 * 60_000;

/// Which analyser of a redundant pair drifts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drifting {
    Primary,
    Redundant,
}

/// A drift episode between a primary analyser and its redundant twin.
#[derive(Debug, Clone, PartialEq)]
pub struct PairDrift {
    /// End of the last hour the pair differed by its usual offset (the estimated onset).
    pub start: EpochMillis,
    pub detected_at: EpochMillis,
    /// Start of the first hour back within the tolerance; `None` while open.
    pub end: Option<EpochMillis>,
    /// `None` when the data cannot tell which one drifts.
    pub drifting: Option<Drifting>,
    /// Redundant minus primary (hourly medians) when detected.
    pub difference: f64,
    /// Each analyser's change against itself at the same hour of earlier days.
    pub change_primary: Option<f64>,
    pub change_redundant: Option<f64>,
    pub tolerance: f64,
}

#[derive(Debug, Clone, Copy)]
struct HourStat {
    hour: i64,
    primary: Option<f64>,
    redundant: Option<f64>,
    difference: Option<f64>,
    tolerance: f64,
    /// The pair's usual difference as known before this hour.
    offset: f64,
    /// A drift episode was open.
    in_episode: bool,
}

impl HourStat {
    /// The pair agreed as usual: within a quarter of the tolerance of its usual offset.
    fn clean(&self) -> bool {
        self.difference
            .is_some_and(|d| (d - self.offset).abs() <= self.tolerance / 4.0)
    }
}

/// Causal drift tracking for one redundant pair (indices into the station's signals).
#[derive(Debug)]
pub struct PairTracker {
    pub primary: usize,
    pub redundant: usize,
    spec: SignalSpec,
    hour: Option<i64>,
    acc_primary: Vec<f64>,
    acc_redundant: Vec<f64>,
    acc_difference: Vec<f64>,
    hours: VecDeque<HourStat>,
    beyond: usize,
    within: usize,
    /// The pair's usual difference (redundant − primary): see [`PairTracker::usual_offset`].
    offset: Option<f64>,
    open: Option<PairDrift>,
    /// Closed and open episodes, in detection order.
    pub episodes: Vec<PairDrift>,
}

impl PairTracker {
    /// Tracks `redundant` against `primary`, judged with the primary's `spec`.
    pub fn new(primary: usize, redundant: usize, spec: SignalSpec) -> Self {
        Self {
            primary,
            redundant,
            spec,
            hour: None,
            acc_primary: Vec::new(),
            acc_redundant: Vec::new(),
            acc_difference: Vec::new(),
            hours: VecDeque::with_capacity(HISTORY_HOURS + 1),
            beyond: 0,
            within: 0,
            offset: None,
            open: None,
            episodes: Vec::new(),
        }
    }

    /// Feeds both analysers' trusted values at grid time `t`.
    pub fn step(&mut self, t: EpochMillis, primary: Option<f64>, redundant: Option<f64>) {
        let hour = t.div_euclid(HOUR_MS);
        if self.hour != Some(hour) {
            if let Some(done) = self.hour {
                self.finish_hour(done, t);
            }
            self.hour = Some(hour);
        }
        if let Some(p) = primary {
            self.acc_primary.push(p);
        }
        if let Some(r) = redundant {
            self.acc_redundant.push(r);
        }
        if let (Some(p), Some(r)) = (primary, redundant) {
            self.acc_difference.push(r - p);
        }
    }

    /// The value the detectors should use for the primary's channel at this step: the
    /// primary's own, unless it drifts or has none, then the redundant one's less the usual
    /// offset.
    pub fn stand_in(&self, primary: Option<f64>, redundant: Option<f64>) -> Option<f64> {
        let from_redundant = || redundant.map(|r| r - self.offset.unwrap_or(0.0));
        match self.open.as_ref().map(|e| e.drifting) {
            None => primary.or_else(from_redundant),
            Some(Some(Drifting::Primary)) => from_redundant(),
            // The redundant one drifts, or nobody can tell which: keep the primary.
            Some(_) => primary,
        }
    }

    /// End of the data: an open episode stays open.
    pub fn finish(&mut self) {
        if let Some(e) = self.open.take() {
            self.episodes.push(e);
        }
    }

    fn finish_hour(&mut self, hour: i64, now: EpochMillis) {
        let median = |v: &mut Vec<f64>| {
            let m = (v.len() >= MIN_PAIRS).then(|| select_median(v));
            v.clear();
            m
        };
        let primary = median(&mut self.acc_primary);
        let redundant = median(&mut self.acc_redundant);
        let difference = median(&mut self.acc_difference);
        let level = primary
            .map(f64::abs)
            .into_iter()
            .chain(redundant.map(f64::abs))
            .fold(0.0, f64::max);
        let stat = HourStat {
            hour,
            primary,
            redundant,
            difference,
            tolerance: self.spec.agreement_tolerance(level),
            offset: self.offset.unwrap_or(0.0),
            in_episode: self.open.is_some(),
        };
        self.hours.push_back(stat);
        if self.hours.len() > HISTORY_HOURS {
            self.hours.pop_front();
        }
        self.offset = self.usual_offset(hour);
        let Some(d) = difference else {
            return; // an hour without pairs decides nothing
        };
        let agrees = d.abs() <= stat.tolerance;
        if self.open.is_none() {
            if agrees {
                self.beyond = 0;
            } else {
                self.beyond += 1;
                if self.beyond >= OPEN_HOURS {
                    self.within = 0;
                    self.open = Some(self.open_episode(&stat, d, now));
                }
            }
        } else if agrees {
            self.within += 1;
            if self.within >= OPEN_HOURS {
                let first_back = (hour + 1 - OPEN_HOURS as i64) * HOUR_MS;
                if let Some(mut e) = self.open.take() {
                    e.end = Some(first_back.max(e.start));
                    self.episodes.push(e);
                }
                self.beyond = 0;
            }
        } else {
            self.within = 0;
        }
    }

    /// The pair's usual difference after `hour`: the median over the kept hours, outside
    /// drift episodes and within the tolerance, that are at least a day older (so that a drift
    /// that has not yet crossed the tolerance is not learnt as the normal); the younger ones
    /// while there are no older.
    fn usual_offset(&self, hour: i64) -> Option<f64> {
        let usable =
            |h: &&HourStat| !h.in_episode && h.difference.is_some_and(|d| d.abs() <= h.tolerance);
        let mut old: Vec<f64> = self
            .hours
            .iter()
            .filter(usable)
            .filter(|h| h.hour <= hour - 24)
            .filter_map(|h| h.difference)
            .collect();
        if old.is_empty() {
            old = self
                .hours
                .iter()
                .filter(usable)
                .filter_map(|h| h.difference)
                .collect();
        }
        (!old.is_empty()).then(|| select_median(&mut old))
    }

    fn open_episode(&self, now_stat: &HourStat, difference: f64, now: EpochMillis) -> PairDrift {
        let start = self.hours.iter().rev().find(|h| h.clean()).map_or_else(
            || self.hours.front().map_or(now, |h| h.hour * HOUR_MS),
            |h| (h.hour + 1) * HOUR_MS,
        );
        // Each analyser against itself at the same hour of earlier days when the pair agreed.
        let reference = |pick: fn(&HourStat) -> Option<f64>| -> Option<f64> {
            let mut v: Vec<f64> = self
                .hours
                .iter()
                .filter(|h| {
                    h.hour < now_stat.hour && (now_stat.hour - h.hour) % 24 == 0 && h.clean()
                })
                .filter_map(pick)
                .collect();
            (!v.is_empty()).then(|| select_median(&mut v))
        };
        let change_primary = now_stat
            .primary
            .zip(reference(|h| h.primary))
            .map(|(now, then)| now - then);
        let change_redundant = now_stat
            .redundant
            .zip(reference(|h| h.redundant))
            .map(|(now, then)| now - then);
        let tol = now_stat.tolerance;
        let drifting = match (change_primary, change_redundant) {
            (Some(cp), Some(cr)) if cp.abs() >= 2.0 * cr.abs() && cp.abs() >= tol / 2.0 => {
                Some(Drifting::Primary)
            }
            (Some(cp), Some(cr)) if cr.abs() >= 2.0 * cp.abs() && cr.abs() >= tol / 2.0 => {
                Some(Drifting::Redundant)
            }
            _ => None,
        };
        PairDrift {
            start: start.min(now),
            detected_at: now,
            end: None,
            drifting,
            difference,
            change_primary,
            change_redundant,
            tolerance: tol,
        }
    }
}

/// An analyser's disagreement with the lab.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleDrift {
    /// The last sample it agreed with (or the first it disagreed with).
    pub start: EpochMillis,
    pub detected_at: EpochMillis,
    /// The next sample it agreed with; `None` while open.
    pub end: Option<EpochMillis>,
    /// The analyser and the lab at the sample that opened the episode.
    pub analyser: f64,
    pub lab: f64,
    pub tolerance: f64,
    pub sample_id: Option<String>,
    /// Disagreeing samples in the episode.
    pub samples: usize,
}

/// One sample compared, waiting until its result is known.
#[derive(Debug, Clone)]
struct Compared {
    decide_at: EpochMillis,
    sample: LabSample,
    analyser: f64,
    tolerance: f64,
}

/// Causal comparison of one analyser with the lab's samples of its parameter, stepped with
/// the analyser's trusted values. A sample is compared once its window has passed and decided
/// when its result is known. One sample beyond twice the tolerance opens a drift episode;
/// within twice the tolerance it takes a second one beyond it on the same side in a row (a
/// single sampling or lab error does not call an analyser drifting).
#[derive(Debug)]
pub struct SampleChecker {
    spec: SignalSpec,
    step_ms: i64,
    window: i64,
    /// Samples not yet compared, by sample time.
    waiting: VecDeque<LabSample>,
    /// Compared samples, by decision time.
    compared: Vec<Compared>,
    /// Recent trusted values, enough to cover a sample's window.
    recent: VecDeque<(EpochMillis, f64)>,
    last_agree: Option<EpochMillis>,
    /// A first disagreement within twice the tolerance, waiting for a second.
    suspect: Option<Compared>,
    open: Option<SampleDrift>,
    /// Closed and open episodes, in detection order.
    pub episodes: Vec<SampleDrift>,
}

impl SampleChecker {
    /// A checker of the analyser `spec` (grid step `step_ms`) against `samples` of its kind.
    pub fn new(spec: SignalSpec, step_ms: i64, samples: &[&LabSample]) -> Self {
        let mut waiting: Vec<LabSample> = samples.iter().map(|s| (*s).clone()).collect();
        waiting.sort_by_key(|s| s.sampled_at);
        Self {
            spec,
            step_ms: step_ms.max(1),
            window: SAMPLE_WINDOW_MS.max(step_ms),
            waiting: waiting.into(),
            compared: Vec::new(),
            recent: VecDeque::new(),
            last_agree: None,
            suspect: None,
            open: None,
            episodes: Vec::new(),
        }
    }

    /// Whether the lab says the analyser drifts now (its values should not be trusted).
    pub fn drifting(&self) -> bool {
        self.open.is_some()
    }

    /// Feeds the analyser's trusted value at grid time `t` (`None`: missing or faulted).
    pub fn step(&mut self, t: EpochMillis, value: Option<f64>) {
        if let Some(v) = value {
            self.recent.push_back((t, v));
        }
        let keep_from = t - 2 * self.window - 2 * self.step_ms;
        while self.recent.front().is_some_and(|(u, _)| *u < keep_from) {
            self.recent.pop_front();
        }
        while self
            .waiting
            .front()
            .is_some_and(|s| s.sampled_at + self.window <= t)
        {
            if let Some(s) = self.waiting.pop_front() {
                self.compare(s);
            }
        }
        self.decide(t);
    }

    /// End of the data: samples whose window reaches past it are compared with what there
    /// is, and every result is decided when it is known.
    pub fn finish(&mut self) {
        while let Some(s) = self.waiting.pop_front() {
            self.compare(s);
        }
        self.decide(EpochMillis::MAX);
        if let Some(e) = self.open.take() {
            self.episodes.push(e);
        }
    }

    fn compare(&mut self, s: LabSample) {
        let (from, to) = (s.sampled_at - self.window, s.sampled_at + self.window);
        let mut near: Vec<f64> = self
            .recent
            .iter()
            .filter(|(t, _)| t + self.step_ms > from && *t <= to)
            .map(|(_, v)| *v)
            .collect();
        if near.is_empty() {
            return; // no trusted reading then
        }
        let tolerance = self.spec.agreement_tolerance(s.value);
        let (lo, hi) = near
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(*v), b.max(*v))
            });
        if hi - lo > tolerance {
            return; // the water was changing: no fair comparison
        }
        let analyser = select_median(&mut near);
        let decide_at = s.known_at.max(to);
        let at = self.compared.partition_point(|c| c.decide_at <= decide_at);
        self.compared.insert(
            at,
            Compared {
                decide_at,
                sample: s,
                analyser,
                tolerance,
            },
        );
    }

    fn decide(&mut self, t: EpochMillis) {
        let ready = self.compared.partition_point(|c| c.decide_at <= t);
        let done: Vec<Compared> = self.compared.drain(..ready).collect();
        for c in done {
            let diff = c.analyser - c.sample.value;
            if diff.abs() <= c.tolerance {
                self.suspect = None;
                if let Some(mut e) = self.open.take() {
                    e.end = Some(c.sample.sampled_at);
                    self.episodes.push(e);
                }
                self.last_agree = Some(c.sample.sampled_at);
                continue;
            }
            if let Some(e) = self.open.as_mut() {
                e.samples += 1;
                continue;
            }
            let confirmed = self
                .suspect
                .take()
                .filter(|first| (first.analyser - first.sample.value).signum() == diff.signum());
            if diff.abs() <= 2.0 * c.tolerance && confirmed.is_none() {
                self.suspect = Some(c);
                continue;
            }
            let first = confirmed.as_ref().unwrap_or(&c);
            self.open = Some(SampleDrift {
                start: self.last_agree.unwrap_or(first.sample.sampled_at),
                detected_at: c.decide_at,
                end: None,
                analyser: first.analyser,
                lab: first.sample.value,
                tolerance: first.tolerance,
                sample_id: first.sample.sample_id.clone(),
                samples: if confirmed.is_some() { 2 } else { 1 },
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use waterline_core::{Network, SensorKind, StationId};

    fn chlorine() -> SignalSpec {
        let net = Network::parse(
            "[[sensor]]\nid = \"cl\"\nkind = \"chlorine\"\nunit = \"mg/L\"\nstation = \"S\"\nresolution = 0.01\n",
        )
        .expect("network");
        SignalSpec::from_sensor(net.sensors.values().next().expect("sensor"))
    }

    const STEP: i64 = 300_000;

    /// Water with a daily cycle and a slow wander, as two analysers see it.
    fn water(k: i64) -> f64 {
        let h = (k * STEP) as f64 / HOUR_MS as f64;
        0.8 + 0.1 * (std::f64::consts::TAU * h / 24.0).sin() + 0.03 * (h / 37.0).sin()
    }

    fn noise(k: i64, salt: i64) -> f64 {
        // A deterministic ±0.01 jitter.
        (((k * 7919 + salt * 104_729) % 21) as f64 - 10.0) / 1000.0
    }

    /// Runs a pair for `days` with a drift of `rate` mg/L per hour on one analyser from
    /// `drift_from` (hours) to `drift_to`.
    fn run_pair(on_primary: bool, drift_from: f64, drift_to: f64, rate: f64) -> PairTracker {
        let mut tr = PairTracker::new(0, 1, chlorine());
        let steps = 10 * 24 * 12;
        for k in 0..steps {
            let h = (k * STEP) as f64 / HOUR_MS as f64;
            let bias = if h >= drift_from && h < drift_to {
                -(h - drift_from) * rate
            } else {
                0.0
            };
            let w = water(k);
            let (p, r) = if on_primary {
                (w + bias + noise(k, 1), w + 0.02 + noise(k, 2))
            } else {
                (w + noise(k, 1), w + 0.02 + bias + noise(k, 2))
            };
            tr.step(k * STEP, Some(p), Some(r));
        }
        tr
    }

    #[test]
    fn a_drifting_primary_is_found_told_apart_and_replaced() {
        // Four days in, the primary starts reading low by 0.5 mg/L over 3 days, then is
        // recalibrated.
        let mut tr = run_pair(true, 96.0, 168.0, 0.5 / 72.0);
        tr.finish();
        assert_eq!(tr.episodes.len(), 1, "{:?}", tr.episodes);
        let e = &tr.episodes[0];
        assert_eq!(e.drifting, Some(Drifting::Primary), "{e:?}");
        let hours = |t: EpochMillis| t as f64 / HOUR_MS as f64;
        assert!(hours(e.start) >= 96.0 && hours(e.start) < hours(e.detected_at));
        assert!(
            hours(e.detected_at) < 96.0 + 30.0,
            "found within ~a day: {e:?}"
        );
        assert!(e.difference > 0.1, "the redundant reads higher: {e:?}");
        let end = hours(e.end.expect("closed by the recalibration"));
        assert!((168.0..171.0).contains(&end), "{e:?}");
        // While open the redundant value (less its 0.02 offset) stands in for the primary.
        let mut tr = run_pair(true, 96.0, 400.0, 0.5 / 72.0);
        assert!(tr.open.is_some());
        let v = tr.stand_in(Some(0.3), Some(0.82)).expect("stand-in");
        assert!((v - 0.80).abs() < 0.01, "{v}");
        tr.open = None;
        assert_eq!(tr.stand_in(Some(0.3), Some(0.82)), Some(0.3));
        assert!(tr.stand_in(None, Some(0.82)).is_some(), "primary missing");
    }

    #[test]
    fn a_drifting_redundant_analyser_is_told_apart() {
        let mut tr = run_pair(false, 96.0, 168.0, 0.5 / 72.0);
        tr.finish();
        assert_eq!(tr.episodes.len(), 1, "{:?}", tr.episodes);
        assert_eq!(tr.episodes[0].drifting, Some(Drifting::Redundant));
    }

    #[test]
    fn agreeing_analysers_and_shared_water_changes_raise_nothing() {
        // No drift at all: the daily cycle, the wander and a 0.02 offset are shared.
        let mut tr = run_pair(true, 0.0, 0.0, 0.0);
        tr.finish();
        assert!(tr.episodes.is_empty(), "{:?}", tr.episodes);
        // A sudden shared change of the water (an incident) moves both alike.
        let mut tr = PairTracker::new(0, 1, chlorine());
        for k in 0..(4 * 24 * 12) {
            let w = if (600..700).contains(&k) { 0.2 } else { 0.9 };
            tr.step(k * STEP, Some(w + noise(k, 1)), Some(w + noise(k, 2)));
        }
        tr.finish();
        assert!(tr.episodes.is_empty(), "{:?}", tr.episodes);
    }

    /// Steps a checker through `values` at `times` and finishes it.
    fn check_samples(
        spec: &SignalSpec,
        times: &[EpochMillis],
        values: &[f64],
        step_ms: i64,
        samples: &[&LabSample],
    ) -> Vec<SampleDrift> {
        let mut c = SampleChecker::new(spec.clone(), step_ms, samples);
        for (t, v) in times.iter().zip(values) {
            c.step(*t, v.is_finite().then_some(*v));
        }
        c.finish();
        c.episodes
    }

    fn sample(at_h: f64, value: f64, id: &str) -> LabSample {
        let t = (at_h * HOUR_MS as f64) as i64;
        LabSample {
            station: StationId::parse("S").expect("id"),
            kind: SensorKind::Chlorine,
            value,
            sampled_at: t,
            known_at: t + 2 * HOUR_MS,
            sample_id: Some(id.into()),
        }
    }

    #[test]
    fn grab_samples_find_a_drift_from_the_last_agreement_to_the_next() {
        let times: Vec<EpochMillis> = (0..(20 * 24 * 12)).map(|k| k * STEP).collect();
        // The analyser reads 0.8 and drifts down 0.1 mg/L a day from day 5 to day 12.
        let values: Vec<f64> = times
            .iter()
            .map(|t| {
                let d = *t as f64 / (24 * HOUR_MS) as f64;
                0.8 - 0.1 * (d - 5.0).clamp(0.0, 7.0) * f64::from(u8::from(d < 12.0))
            })
            .collect();
        let s = [
            sample(2.0 * 24.0 + 9.0, 0.82, "L1"),  // agrees
            sample(4.0 * 24.0 + 9.0, 0.79, "L2"),  // agrees
            sample(9.0 * 24.0 + 9.0, 0.80, "L3"),  // analyser 0.38: drift
            sample(11.0 * 24.0 + 9.0, 0.80, "L4"), // still
            sample(14.0 * 24.0 + 9.0, 0.81, "L5"), // recalibrated: agrees
        ];
        let refs: Vec<&LabSample> = s.iter().rev().collect(); // any order
        let found = check_samples(&chlorine(), &times, &values, STEP, &refs);
        assert_eq!(found.len(), 1, "{found:?}");
        let e = &found[0];
        assert_eq!(e.start, s[1].sampled_at, "from the last agreeing sample");
        assert_eq!(
            e.detected_at, s[2].known_at,
            "when the lab result was known"
        );
        assert_eq!(e.end, Some(s[4].sampled_at));
        assert_eq!(e.samples, 2);
        assert_eq!(e.sample_id.as_deref(), Some("L3"));
        assert!((e.analyser - 0.37).abs() < 0.02 && e.lab == 0.80, "{e:?}");
    }

    #[test]
    fn no_comparison_without_readings_or_while_the_water_changes() {
        let times: Vec<EpochMillis> = (0..48).map(|k| k * STEP).collect();
        let mut values = vec![0.8; 48];
        // Hour 1: no trusted readings; hour 3: the water falls 0.4 mg/L within the window.
        for v in &mut values[10..16] {
            *v = f64::NAN;
        }
        for (k, v) in values.iter_mut().enumerate().skip(36) {
            *v = 0.8 - 0.1 * (k - 35) as f64;
        }
        let s = [sample(1.1, 0.3, "gap"), sample(3.05, 0.3, "moving")];
        let refs: Vec<&LabSample> = s.iter().collect();
        assert!(check_samples(&chlorine(), &times, &values, STEP, &refs).is_empty());
    }
}
