//! Instrument faults, one signal at a time and causally: impossible values, floor values,
//! resolution-aware flatlines, spikes and dropouts. A faulted value never reaches the event
//! detector or the set-point check: faults are single-channel, events are water. A station's
//! flow and pressure are not checked for spikes ([`FaultConfig::spikes`]): they change in one
//! step whenever a pump or a valve operates.

use std::collections::VecDeque;

use waterline_core::{Event, EventKind, Severity};

use super::signals::SignalSpec;
use crate::stats::CountedWindow;
use crate::timefmt::EpochMillis;

/// What is wrong with an instrument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// A value outside the physically possible range.
    Impossible,
    /// A value the instrument reports when not measuring (exact zero, pH buffer 4.0).
    Floor,
    /// No change beyond the resolution for far longer than the signal ever stays still.
    Flatline,
    /// Isolated single-step outliers.
    Spike,
    /// No readings while they were expected.
    Dropout,
}

impl FaultKind {
    /// The name used in event messages and ground truth.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Impossible => "impossible",
            FaultKind::Floor => "floor",
            FaultKind::Flatline => "flatline",
            FaultKind::Spike => "spike",
            FaultKind::Dropout => "dropout",
        }
    }
}

/// One fault episode of one signal.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultEpisode {
    pub kind: FaultKind,
    pub start: EpochMillis,
    pub detected_at: EpochMillis,
    /// First time the signal was healthy again; `None` while open.
    pub end: Option<EpochMillis>,
    /// A value that shows the fault (the frozen, floor, impossible or spike value).
    pub value: Option<f64>,
    /// How many single-step spikes an episode holds.
    pub count: usize,
}

impl FaultEpisode {
    /// The `sensor_fault` event of this episode on the signal `spec` (CONTRACTS §4).
    pub fn event(&self, spec: &SignalSpec) -> Event {
        let utc = super::utc;
        let mut e = Event::new(
            EventKind::SensorFault,
            utc(self.start),
            utc(self.detected_at),
        );
        e.end = self.end.map(utc);
        e.sensor = Some(spec.sensor.clone());
        e.severity = Some(Severity::Warning);
        e.value = self.value;
        e.confidence = Some(match self.kind {
            FaultKind::Impossible | FaultKind::Dropout => 1.0,
            _ => 0.8,
        });
        e.message = Some(match self.kind {
            FaultKind::Spike => format!("spike: {} isolated outlier(s)", self.count),
            FaultKind::Flatline => format!(
                "flatline: no change beyond the resolution {} for far longer than usual",
                spec.resolution
            ),
            FaultKind::Floor => {
                "floor: the instrument reads a value it shows when not measuring".into()
            }
            FaultKind::Impossible => format!(
                "impossible: outside the valid range {}..{}",
                spec.valid.0, spec.valid.1
            ),
            FaultKind::Dropout => "dropout: no readings".into(),
        });
        e
    }
}

/// Tuning of the fault checks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultConfig {
    /// A flatline needs at least this long without change.
    pub flatline_min_ms: i64,
    /// … and this many times the longest run of equal values the signal normally shows (p99).
    pub flatline_factor: f64,
    /// No change for this long is a flatline whatever the signal's history (even at start).
    pub flatline_max_ms: i64,
    /// A spike departs by this many robust standard deviations of the step-to-step change.
    pub spike_sigmas: f64,
    /// … and by at least this much, in the signal's unit (0: no floor beyond three times the
    /// smallest change worth an alarm).
    pub spike_min_jump: f64,
    /// Spikes closer than this form one episode.
    pub spike_merge_ms: i64,
    /// Whether to look for spikes at all (not on a station's flow or pressure, which change
    /// in one step whenever a pump or a valve operates).
    pub spikes: bool,
    /// A signal silent for this long (and at least three steps) has dropped out.
    pub dropout_min_ms: i64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            flatline_min_ms: 3 * 3_600_000,
            flatline_factor: 3.0,
            flatline_max_ms: 24 * 3_600_000,
            spike_sigmas: 8.0,
            spike_min_jump: 0.0,
            spike_merge_ms: 6 * 3_600_000,
            spikes: true,
            dropout_min_ms: 3_600_000,
        }
    }
}

/// What the fault check says about one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// The value the detectors may use (`None`: missing or faulted).
    pub value: Option<f64>,
    /// The previous step's value turned out to be a spike: take it back.
    pub retract_previous: bool,
}

/// Causal fault tracking for one signal.
#[derive(Debug)]
pub struct FaultTracker {
    spec: SignalSpec,
    cfg: FaultConfig,
    step_ms: i64,
    /// Recent trusted values (the baseline a floor value or a spike departs from).
    recent: VecDeque<f64>,
    /// Recent absolute step-to-step changes, for the spike scale.
    diffs: VecDeque<f64>,
    /// Scratch space for the spike scale's median.
    scratch: Vec<u64>,
    diff_scale: f64,
    diffs_since_scale: usize,
    /// Current run of unchanged values: its value, first time and length in steps.
    run: Option<(f64, EpochMillis, usize)>,
    /// Lengths of finished runs (steps), for the signal's normal stillness.
    runs: CountedWindow,
    run_p99: usize,
    runs_since_rank: usize,
    last_seen: Option<EpochMillis>,
    pending_spike: Option<(EpochMillis, f64, f64)>,
    last_spike: Option<EpochMillis>,
    open: Vec<FaultEpisode>,
    /// Finished and open episodes, in detection order.
    pub episodes: Vec<FaultEpisode>,
}

const RECENT: usize = 12;
const DIFFS: usize = 288;
const RUNS: usize = 200;

impl FaultTracker {
    /// A tracker for `spec` on a grid of `step_ms`.
    pub fn new(spec: SignalSpec, cfg: FaultConfig, step_ms: i64) -> Self {
        Self {
            spec,
            cfg,
            step_ms: step_ms.max(1),
            recent: VecDeque::with_capacity(RECENT + 1),
            diffs: VecDeque::with_capacity(DIFFS + 1),
            scratch: Vec::with_capacity(DIFFS + 1),
            diff_scale: 0.0,
            diffs_since_scale: 0,
            run: None,
            runs: CountedWindow::default(),
            run_p99: 0,
            runs_since_rank: 0,
            last_seen: None,
            pending_spike: None,
            last_spike: None,
            open: Vec::new(),
            episodes: Vec::new(),
        }
    }

    /// The signal this tracker watches.
    pub fn spec(&self) -> &SignalSpec {
        &self.spec
    }

    /// Whether a fault of any kind is open.
    pub fn faulted(&self) -> bool {
        !self.open.is_empty()
    }

    /// Whether the current value is untrustworthy (impossible, floor or frozen) — as opposed to
    /// missing or spiky now and then.
    pub fn value_faulted(&self) -> bool {
        self.open.iter().any(|e| {
            matches!(
                e.kind,
                FaultKind::Impossible | FaultKind::Floor | FaultKind::Flatline
            )
        })
    }

    /// Feeds the value at grid time `t` (`None` when the signal has no reading there).
    pub fn step(&mut self, t: EpochMillis, value: Option<f64>) -> Verdict {
        self.step_checked(t, value, true)
    }

    /// Feeds a value known to be the water's own jump (several sensors of its zone made it at
    /// once, [`crate::zone_jumps`]): checked for dropouts, impossible values and flatlines as
    /// ever, but not judged as a floor or a spike, and not taken into the spike scale; it
    /// becomes the baseline the next values are judged against, as the water's level does.
    pub fn step_hydraulic(&mut self, t: EpochMillis, value: f64) -> Verdict {
        self.step_checked(t, Some(value), false)
    }

    fn step_checked(&mut self, t: EpochMillis, value: Option<f64>, shape: bool) -> Verdict {
        let mut verdict = Verdict {
            value: None,
            retract_previous: false,
        };
        let Some(x) = value.filter(|x| x.is_finite()) else {
            self.check_dropout(t);
            return verdict;
        };
        // A gap just ended: a dropout (possibly noticed only now, when data resumed).
        if let Some(last) = self.last_seen {
            let gap = t - last;
            if gap >= self.dropout_threshold() && !self.is_open(FaultKind::Dropout) {
                self.open_fault(FaultKind::Dropout, last + self.step_ms, t, None);
            }
        }
        self.close(FaultKind::Dropout, t);
        self.last_seen = Some(t);

        let (lo, hi) = self.spec.valid;
        if !(lo..=hi).contains(&x) {
            if !self.is_open(FaultKind::Impossible) {
                self.open_fault(FaultKind::Impossible, t, t, Some(x));
            }
            return verdict;
        }
        self.close(FaultKind::Impossible, t);

        if shape
            && self.spec.is_floor(x)
            && self
                .baseline()
                .is_some_and(|b| (b - x).abs() > 5.0 * self.spec.min_change)
        {
            if !self.is_open(FaultKind::Floor) {
                self.open_fault(FaultKind::Floor, t, t, Some(x));
            }
            self.track_run(t, x);
            return verdict;
        }
        self.close(FaultKind::Floor, t);

        // Spike: the previous value departed and this one is back where it came from.
        if let Some((ts, xs, b)) = self.pending_spike.take() {
            // Back: within the signal's own step noise of where it was, or at least 80 % of
            // the way (a signal with a trend does not return to the exact value).
            let back = (x - b).abs()
                <= (3.0 * self.diff_scale)
                    .max(self.spec.min_change)
                    .max(0.2 * (xs - b).abs());
            if back {
                verdict.retract_previous = true;
                self.note_spike(ts, t, xs);
                // The spike value was never trusted: forget it as a baseline value.
                self.recent.pop_back();
            }
        }
        if let Some(b) = self.recent.back().copied()
            && self.cfg.spikes
            && shape
        {
            let jump = (x - b).abs();
            let threshold = (self.cfg.spike_sigmas * self.diff_scale)
                .max(3.0 * self.spec.min_change)
                .max(self.cfg.spike_min_jump);
            if self.diffs.len() >= 48 && jump > threshold && !verdict.retract_previous {
                self.pending_spike = Some((t, x, b));
            } else if !self.is_open(FaultKind::Flatline) {
                // A frozen reading's zero changes are not the signal's step noise.
                self.push_diff(jump);
            }
        }
        self.close_spike_episode(t);

        self.track_run(t, x);
        if self.is_open(FaultKind::Flatline) {
            return verdict;
        }
        self.recent.push_back(x);
        if self.recent.len() > RECENT {
            self.recent.pop_front();
        }
        verdict.value = Some(x);
        verdict
    }

    /// Closes nothing, but marks the end of the data: open episodes stay open.
    pub fn finish(&mut self) {
        for e in self.open.drain(..) {
            self.episodes.push(e);
        }
        self.episodes.sort_by_key(|e| (e.detected_at, e.kind));
    }

    fn baseline(&self) -> Option<f64> {
        let n = self.recent.len();
        if n < 3 {
            return None;
        }
        let mut v = [0.0f64; RECENT];
        for (slot, x) in v.iter_mut().zip(&self.recent) {
            *slot = *x;
        }
        Some(crate::stats::select_median(&mut v[..n]))
    }

    fn dropout_threshold(&self) -> i64 {
        self.cfg.dropout_min_ms.max(3 * self.step_ms)
    }

    fn check_dropout(&mut self, t: EpochMillis) {
        if let Some(last) = self.last_seen
            && t - last >= self.dropout_threshold()
            && !self.is_open(FaultKind::Dropout)
        {
            self.open_fault(FaultKind::Dropout, last + self.step_ms, t, None);
        }
    }

    fn push_diff(&mut self, d: f64) {
        self.diffs.push_back(d);
        if self.diffs.len() > DIFFS {
            self.diffs.pop_front();
        }
        self.diffs_since_scale += 1;
        if self.diffs_since_scale >= 24 || self.diff_scale == 0.0 {
            self.rescale();
        }
    }

    /// Drops the newest `k` step changes and re-derives the spike scale from the rest.
    fn forget_diffs(&mut self, k: usize) {
        for _ in 0..k.min(self.diffs.len()) {
            self.diffs.pop_back();
        }
        self.rescale();
    }

    /// The spike scale: the median absolute change of a random walk's steps, as a standard
    /// deviation, never below the resolution.
    fn rescale(&mut self) {
        self.diffs_since_scale = 0;
        if self.diffs.is_empty() {
            return;
        }
        let m = crate::stats::median_magnitude(self.diffs.iter().copied(), &mut self.scratch);
        self.diff_scale = (1.4826 * m).max(self.spec.resolution);
    }

    fn track_run(&mut self, t: EpochMillis, x: f64) {
        let tol = self.spec.resolution / 2.0 + 1e-12;
        match &mut self.run {
            Some((v, _, n)) if (x - *v).abs() <= tol => *n += 1,
            _ => {
                if let Some((_, _, n)) = self.run.take() {
                    if !self.is_open(FaultKind::Flatline) {
                        self.runs.push_back(n);
                        if self.runs.len() > RUNS {
                            self.runs.pop_front();
                        }
                        // The normal stillness moves slowly: re-rank every 20 runs.
                        self.runs_since_rank += 1;
                        if self.run_p99 == 0 || self.runs_since_rank >= 20 {
                            self.runs_since_rank = 0;
                            let n = self.runs.len();
                            self.run_p99 = self.runs.nth((n * 99 / 100).min(n - 1)).unwrap_or(0);
                        }
                    }
                    self.close(FaultKind::Flatline, t);
                }
                self.run = Some((x, t, 1));
            }
        }
        if let Some((v, since, n)) = self.run
            && !self.is_open(FaultKind::Flatline)
            && !self.is_open(FaultKind::Floor)
        {
            let steps_needed = (self.cfg.flatline_factor * self.run_p99 as f64).ceil() as usize;
            let unusual = self.runs.len() >= 20
                && t - since >= self.cfg.flatline_min_ms
                && n > steps_needed.max(3);
            if unusual || (t - since >= self.cfg.flatline_max_ms && n > 3) {
                self.open_fault(FaultKind::Flatline, since, t, Some(v));
                // The run's zero changes went into the spike scale before it was known to be
                // frozen; without them a normal step after the flatline is not a spike.
                self.forget_diffs(n - 1);
            }
        }
    }

    fn note_spike(&mut self, at: EpochMillis, confirmed: EpochMillis, x: f64) {
        if let Some(e) = self.open.iter_mut().find(|e| e.kind == FaultKind::Spike) {
            e.count += 1;
            e.end = None;
            e.value = Some(x);
            self.last_spike = Some(at);
            return;
        }
        self.open.push(FaultEpisode {
            kind: FaultKind::Spike,
            start: at,
            detected_at: confirmed,
            end: None,
            value: Some(x),
            count: 1,
        });
        self.last_spike = Some(at);
    }

    fn close_spike_episode(&mut self, t: EpochMillis) {
        if let Some(last) = self.last_spike
            && t - last > self.cfg.spike_merge_ms
        {
            self.last_spike = None;
            let end = last + self.step_ms;
            if let Some(i) = self.open.iter().position(|e| e.kind == FaultKind::Spike) {
                let mut e = self.open.remove(i);
                e.end = Some(end);
                self.episodes.push(e);
            }
        }
    }

    fn is_open(&self, kind: FaultKind) -> bool {
        self.open.iter().any(|e| e.kind == kind)
    }

    fn open_fault(&mut self, kind: FaultKind, start: EpochMillis, at: EpochMillis, v: Option<f64>) {
        self.open.push(FaultEpisode {
            kind,
            start,
            detected_at: at,
            end: None,
            value: v,
            count: 1,
        });
    }

    fn close(&mut self, kind: FaultKind, t: EpochMillis) {
        if let Some(i) = self.open.iter().position(|e| e.kind == kind) {
            let mut e = self.open.remove(i);
            e.end = Some(t);
            self.episodes.push(e);
        }
    }
}
