//! CANARY-style event detection for one monitoring station.
//!
//! Per signal, a baseline learnt from the last `window` trusted steps that were not part of an
//! event: a linear-prediction filter (AR model fitted by least squares, refitted every few
//! steps) gives a one-step prediction, and the window's median and robust spread give the
//! level. A step is an outlier for a signal when either standardised residual exceeds its
//! threshold; the spread is floored so that a change smaller than the signal's `min_change`
//! never counts. A multivariate nearest-neighbour distance (CANARY's MVNN) between the
//! station's standardised state and its history flags combinations the history never showed.
//!
//! A binomial event discriminator turns outliers into an event probability over the last `n`
//! steps; above the threshold an event opens (onset: the first outlier in the window). Strong
//! evidence (two or more signals, or one that may alarm alone far from its baseline, in each of
//! the last two steps) opens it without waiting for the window to fill. Either way a signal
//! takes part only when its departure is abrupt: its newest value is an outlier also against
//! its own values of the hour before, so a slow wander or a drifting sensor that crept past the
//! long baseline raises nothing. Once open, the baseline freezes, and the event lasts while
//! each step still shows the evidence that opens one (two or more signals beyond the outlier
//! threshold, or one that may alarm alone): it ends after `clear_steps` steps without it, so a
//! lasting change in conductivity or TOC alone (a change of source) does not hold it open; or
//! at the timeout, when the change is absorbed into a new baseline. Context signals
//! (temperature, flow, pressure) are modelled the same way but only explain: an event that
//! coincides with a context change is reported with lower confidence and severity, never
//! raised by a context signal alone; and a departure of turbidity alone while the flow in the
//! station's main runs above its usual daily peak is deposits stirred up by the flow
//! (resuspension), a hydraulic disturbance rather than different water, and raises no event.

use std::collections::VecDeque;

use waterline_core::SensorKind;

use super::signals::SignalSpec;
use crate::clock::DAY_MS;
use crate::stats::select_median;
use crate::timefmt::EpochMillis;

/// Which outlier detectors vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Linear-prediction filter and level check per signal.
    Lpcf,
    /// Multivariate nearest neighbour over the station's quality signals.
    Mvnn,
    /// A step is an outlier when either says so.
    Both,
}

impl std::str::FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "lpcf" => Ok(Algorithm::Lpcf),
            "mvnn" => Ok(Algorithm::Mvnn),
            "both" => Ok(Algorithm::Both),
            _ => Err(format!(
                "unknown algorithm `{s}`; expected lpcf, mvnn or both"
            )),
        }
    }
}

/// Tuning of the station detector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectConfig {
    pub algorithm: Algorithm,
    /// Baseline history, as a duration (bounded to 48..=4320 steps). Several days, so that
    /// the hours an event took out of the baseline are still covered by the other days.
    pub window_ms: i64,
    /// AR order of the linear-prediction filter.
    pub ar_order: usize,
    /// Outlier thresholds in robust standard deviations.
    pub ar_sigmas: f64,
    pub level_sigmas: f64,
    pub mvnn_sigmas: f64,
    /// An event on one quality signal alone needs that signal this far from its baseline, and
    /// only chlorine, turbidity and pH may raise one alone: real water changes move several
    /// parameters, and conductivity, TOC or redox alone shift with every change of source.
    pub single_signal_sigmas: f64,
    /// Binomial event discriminator: window (steps) and probability threshold.
    pub bed_window: usize,
    pub bed_probability: f64,
    /// Normal steps in a row that end an event.
    pub clear_steps: usize,
    /// An event lasting longer is absorbed into the baseline.
    pub timeout_ms: i64,
    /// A gap in the station's data longer than this restarts the discriminator.
    pub gap_reset_ms: i64,
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::Both,
            window_ms: 72 * 3_600_000,
            ar_order: 3,
            ar_sigmas: 6.0,
            level_sigmas: 6.0,
            mvnn_sigmas: 4.0,
            single_signal_sigmas: 8.0,
            bed_window: 4,
            bed_probability: 0.9,
            clear_steps: 3,
            timeout_ms: 6 * 3_600_000,
            gap_reset_ms: 6 * 3_600_000,
        }
    }
}

/// A detected event at a station.
#[derive(Debug, Clone, PartialEq)]
pub struct StationEvent {
    pub start: EpochMillis,
    pub detected_at: EpochMillis,
    pub end: Option<EpochMillis>,
    /// Indices of the quality signals that were abnormal when it was detected, and of those
    /// that were abnormal in two steps in a row while it was open.
    pub signals: Vec<usize>,
    /// Indices of context signals that changed at the same time.
    pub context: Vec<usize>,
    pub probability: f64,
    /// Closed by the timeout: the change became the new baseline.
    pub absorbed: bool,
}

/// Fitted baseline of one signal.
#[derive(Debug, Clone, Default)]
struct Fit {
    median: f64,
    level_scale: f64,
    mean: f64,
    ar: Vec<f64>,
    ar_scale: f64,
}

#[derive(Debug)]
struct SignalModel {
    quality: bool,
    /// May raise an event on its own (chlorine, turbidity, pH); the others only corroborate.
    alone: bool,
    /// Turbidity: rises when a higher flow stirs up the deposits in the main.
    stirred_by_flow: bool,
    /// A context flow: the water passing the station.
    flow: bool,
    min_change: f64,
    resolution: f64,
    /// Trusted values of non-event steps, newest last.
    history: VecDeque<f64>,
    /// All trusted values, newest last (what the baseline becomes on timeout).
    recent: VecDeque<f64>,
    /// The newest value, not yet in `history` (a spike may still take it back).
    pending: Option<f64>,
    fit: Option<Fit>,
    since_fit: usize,
}

impl SignalModel {
    fn new(spec: &SignalSpec) -> Self {
        Self {
            quality: spec.is_quality(),
            alone: spec.may_alarm_alone(),
            stirred_by_flow: spec.is_quality() && spec.kind == SensorKind::Turbidity,
            flow: !spec.is_quality() && spec.kind == SensorKind::Flow,
            min_change: spec.min_change.max(spec.resolution),
            resolution: spec.resolution,
            history: VecDeque::new(),
            recent: VecDeque::new(),
            pending: None,
            fit: None,
            since_fit: usize::MAX,
        }
    }

    fn refit(&mut self, order: usize, level_sigmas: f64, ar_sigmas: f64) {
        let all: Vec<f64> = self.history.iter().copied().collect();
        let mut scratch = all.clone();
        let median = select_median(&mut scratch);
        for (d, x) in scratch.iter_mut().zip(&all) {
            *d = (x - median).abs();
        }
        let level_scale = (1.4826 * select_median(&mut scratch))
            .max(self.resolution)
            .max(self.min_change / level_sigmas);
        // The prediction filter learns from the newest day or so only.
        let h = &all[all.len().saturating_sub(AR_FIT_MAX)..];
        let n = h.len();
        let mean = h.iter().sum::<f64>() / n as f64;
        let ar = fit_ar(h, mean, order);
        let mut res: Vec<f64> = (order..n)
            .map(|i| h[i] - predict(&ar, mean, &h[..i]))
            .collect();
        let ar_scale = if res.is_empty() {
            level_scale
        } else {
            let m = select_median(&mut res);
            for r in &mut res {
                *r = (*r - m).abs();
            }
            1.4826 * select_median(&mut res)
        }
        .max(self.resolution)
        .max(self.min_change / ar_sigmas);
        self.fit = Some(Fit {
            median,
            level_scale,
            mean,
            ar,
            ar_scale,
        });
        self.since_fit = 0;
    }
}

/// The newest values the prediction filter is fitted on.
const AR_FIT_MAX: usize = 1440;

/// Least-squares AR(p) coefficients of the mean-removed series (small ridge for stability).
fn fit_ar(h: &[f64], mean: f64, p: usize) -> Vec<f64> {
    let n = h.len();
    if p == 0 || n <= p + 2 {
        return vec![0.0; p];
    }
    let mut ata = vec![vec![0.0; p]; p];
    let mut atb = vec![0.0; p];
    for i in p..n {
        let y = h[i] - mean;
        for a in 0..p {
            let xa = h[i - 1 - a] - mean;
            atb[a] += xa * y;
            for b in 0..p {
                ata[a][b] += xa * (h[i - 1 - b] - mean);
            }
        }
    }
    let trace: f64 = (0..p).map(|i| ata[i][i]).sum::<f64>() / p as f64;
    for (i, row) in ata.iter_mut().enumerate() {
        row[i] += 1e-6 * trace + 1e-12;
    }
    solve(ata, atb).unwrap_or_else(|| vec![0.0; p])
}

/// Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for c in 0..n {
        let piv = (c..n).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[piv][c].abs() < 1e-300 {
            return None;
        }
        a.swap(c, piv);
        b.swap(c, piv);
        let (upper, lower) = a.split_at_mut(c + 1);
        let pivot_row = &upper[c];
        for (r, row) in lower.iter_mut().enumerate() {
            let f = row[c] / pivot_row[c];
            for (x, p) in row[c..].iter_mut().zip(&pivot_row[c..]) {
                *x -= f * p;
            }
            b[c + 1 + r] -= f * b[c];
        }
    }
    let mut x = vec![0.0; n];
    for c in (0..n).rev() {
        let s: f64 = (c + 1..n).map(|k| a[c][k] * x[k]).sum();
        x[c] = (b[c] - s) / a[c][c];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// One-step prediction from the values before it (newest last).
fn predict(ar: &[f64], mean: f64, past: &[f64]) -> f64 {
    let mut y = mean;
    for (k, a) in ar.iter().enumerate() {
        if let Some(x) = past.len().checked_sub(k + 1).map(|i| past[i]) {
            y += a * (x - mean);
        }
    }
    y
}

/// P(X ≤ x) for X ~ Binomial(n, p).
pub fn binomial_cdf(x: usize, n: usize, p: f64) -> f64 {
    let mut term = (1.0 - p).powi(n as i32);
    let mut sum = term;
    for k in 0..x.min(n) {
        term *= (n - k) as f64 / (k + 1) as f64 * p / (1.0 - p);
        sum += term;
    }
    sum.min(1.0)
}

#[derive(Debug, Clone, Copy)]
struct StepFlags {
    time: EpochMillis,
    /// Bit i: quality signal i was an outlier.
    quality: u64,
    /// Bit i: context signal i was an outlier.
    context: u64,
    mvnn: bool,
}

impl StepFlags {
    fn outlier(&self) -> bool {
        self.quality != 0 || self.mvnn
    }
}

/// The causal detector of one station.
#[derive(Debug)]
pub struct StationDetector {
    cfg: DetectConfig,
    step_ms: i64,
    window: usize,
    refit_every: usize,
    models: Vec<SignalModel>,
    /// Station history of quality vectors for the nearest-neighbour check (subsampled).
    mv_history: VecDeque<Vec<f64>>,
    mv_stride: usize,
    mv_count: usize,
    bed: VecDeque<StepFlags>,
    open: Option<StationEvent>,
    normal_run: usize,
    last_time: Option<EpochMillis>,
    /// Closed and open events, in detection order.
    pub events: Vec<StationEvent>,
}

const MV_HISTORY: usize = 144;

/// A one-signal event also needs a deviation of this many "smallest changes" (pH 0.2,
/// chlorine 0.2 mg/L, turbidity 0.12 NTU): a very steady signal's 8 σ can be a change nobody
/// acts on.
const SINGLE_SIGNAL_MIN_CHANGES: f64 = 4.0;

/// How far back an onset is judged: a signal takes part in a new event only when its newest
/// value is an outlier also against its own values of this span before the discriminator's
/// window (the water there was normal then, or at least different).
const ONSET_LOOKBACK_MS: i64 = 3_600_000;

/// A flow this many times its highest of a day stirs up a main's deposits (beyond the
/// day-to-day variation of the daily peak and a flow meter's error).
const STIRRING_FLOW: f64 = 1.1;

/// Consecutive steps of strong evidence that open an event before the discriminator's window
/// fills. Two, not one: a spike is a single step (and taken back one step later).
const STRONG_ONSET_STEPS: usize = 2;

impl StationDetector {
    /// A detector for `signals` on a grid of `step_ms`.
    pub fn new(signals: &[SignalSpec], step_ms: i64, cfg: DetectConfig) -> Self {
        let window = ((cfg.window_ms / step_ms.max(1)) as usize).clamp(48, 4320);
        Self {
            cfg,
            step_ms: step_ms.max(1),
            window,
            refit_every: (window / 32).max(4),
            models: signals.iter().map(SignalModel::new).collect(),
            mv_history: VecDeque::with_capacity(MV_HISTORY + 1),
            mv_stride: (window / MV_HISTORY).max(1),
            mv_count: 0,
            bed: VecDeque::with_capacity(cfg.bed_window + 1),
            open: None,
            normal_run: 0,
            last_time: None,
            events: Vec::new(),
        }
    }

    /// Whether an event is open.
    pub fn in_event(&self) -> bool {
        self.open.is_some()
    }

    /// The previous step's value of signal `i` was a spike: forget it.
    pub fn retract(&mut self, i: usize) {
        let m = &mut self.models[i];
        if m.pending.take().is_some() {
            m.recent.pop_back();
        }
        if let Some(last) = self.bed.back_mut() {
            last.quality &= !(1u64 << i);
            last.context &= !(1u64 << i);
        }
    }

    /// Feeds the trusted values at time `t` (`None`: missing or faulted).
    pub fn step(&mut self, t: EpochMillis, values: &[Option<f64>]) {
        if let Some(last) = self.last_time
            && t - last > self.cfg.gap_reset_ms
        {
            self.bed.clear();
            self.close_event(last + self.step_ms, false);
        }
        self.last_time = Some(t);
        let in_event = self.open.is_some();
        let mut flags = StepFlags {
            time: t,
            quality: 0,
            context: 0,
            mvnn: false,
        };
        let mut z: Vec<f64> = Vec::with_capacity(self.models.len());
        for (i, (m, v)) in self.models.iter_mut().zip(values).enumerate() {
            // Yesterday's pending value is now safe to learn from (unless in an event).
            if let Some(p) = m.pending.take()
                && !in_event
            {
                m.history.push_back(p);
                if m.history.len() > self.window {
                    m.history.pop_front();
                }
                m.since_fit = m.since_fit.saturating_add(1);
            }
            let ready = m.history.len() >= self.window / 2;
            if ready && (m.fit.is_none() || m.since_fit >= self.refit_every) && !in_event {
                m.refit(self.cfg.ar_order, self.cfg.level_sigmas, self.cfg.ar_sigmas);
            }
            let Some(x) = *v else {
                if m.quality {
                    z.push(f64::NAN);
                }
                continue;
            };
            m.pending = Some(x);
            m.recent.push_back(x);
            if m.recent.len() > self.window {
                m.recent.pop_front();
            }
            let Some(fit) = &m.fit else {
                if m.quality {
                    z.push(f64::NAN);
                }
                continue;
            };
            let e_lvl = (x - fit.median) / fit.level_scale;
            // In an event the newest values are not in the history, so a one-step prediction
            // has nothing recent to stand on: the level alone says whether it is still abnormal.
            let e_ar = if in_event {
                0.0
            } else {
                let past = m.history.make_contiguous();
                (x - predict(&fit.ar, fit.mean, past)) / fit.ar_scale
            };
            let outlier = e_ar.abs() > self.cfg.ar_sigmas || e_lvl.abs() > self.cfg.level_sigmas;
            let lpcf = self.cfg.algorithm != Algorithm::Mvnn;
            if outlier && (lpcf || !m.quality) {
                if m.quality {
                    flags.quality |= 1u64 << i;
                } else {
                    flags.context |= 1u64 << i;
                }
            }
            if m.quality {
                z.push(e_lvl);
            }
        }
        if self.cfg.algorithm != Algorithm::Lpcf {
            flags.mvnn = self.mvnn_outlier(&z);
            if !in_event {
                self.remember_state(&z);
            }
        }
        self.bed.push_back(flags);
        if self.bed.len() > self.cfg.bed_window {
            self.bed.pop_front();
        }
        let Some(started) = self.open.as_ref().map(|e| e.start) else {
            self.maybe_open(t);
            return;
        };
        self.join_signals();
        if self.still_abnormal(&flags) {
            self.normal_run = 0;
        } else {
            self.normal_run += 1;
        }
        if self.normal_run >= self.cfg.clear_steps {
            // The event ended with the first of the normal steps.
            let end = self
                .bed
                .iter()
                .rev()
                .nth(self.cfg.clear_steps - 1)
                .map_or(t, |f| f.time);
            self.close_event(end, false);
            // The normal steps that ended it are the baseline's newest values again.
            for m in &mut self.models {
                let back: Vec<f64> = m
                    .recent
                    .iter()
                    .rev()
                    .take(self.cfg.clear_steps)
                    .rev()
                    .copied()
                    .collect();
                let last = back.last().copied();
                for x in back.iter().take(back.len().saturating_sub(1)) {
                    m.history.push_back(*x);
                }
                // The newest stays pending, as in normal operation.
                m.pending = last;
                while m.history.len() > self.window {
                    m.history.pop_front();
                }
            }
        } else if t - started > self.cfg.timeout_ms {
            self.close_event(t, true);
            // The change is the new normal: learn it.
            for m in &mut self.models {
                m.history = m.recent.clone();
                m.pending = None;
                m.fit = None;
            }
            self.mv_history.clear();
        }
    }

    /// Ends the data: an open event stays open.
    pub fn finish(&mut self) {
        if let Some(e) = self.open.take() {
            self.events.push(e);
        }
    }

    fn close_event(&mut self, end: EpochMillis, absorbed: bool) {
        if let Some(mut e) = self.open.take() {
            e.end = Some(end);
            e.absorbed = absorbed;
            self.events.push(e);
        }
        self.bed.clear();
        self.normal_run = 0;
    }

    fn maybe_open(&mut self, t: EpochMillis) {
        if let Some((quality, context, p)) = self.discriminator().or_else(|| self.strong_onset()) {
            self.open_event(t, quality, context, p);
        }
    }

    /// Whether the evidence of `quality` suffices: two or more signals, or one that may raise an
    /// event alone and is far (in σ and in "smallest changes") from its baseline now.
    fn sufficient(&self, quality: u64) -> bool {
        match quality.count_ones() {
            0 => false,
            1 => {
                let i = quality.trailing_zeros() as usize;
                let m = &self.models[i];
                m.alone
                    && m.fit.as_ref().zip(m.recent.back()).is_some_and(|(fit, x)| {
                        let d = (x - fit.median).abs();
                        d / fit.level_scale >= self.cfg.single_signal_sigmas
                            && d >= SINGLE_SIGNAL_MIN_CHANGES * m.min_change
                    })
            }
            _ => true,
        }
    }

    /// CANARY's binomial event discriminator over the full window.
    fn discriminator(&self) -> Option<(u64, u64, f64)> {
        let n = self.cfg.bed_window;
        if self.bed.len() < n {
            return None;
        }
        let x = self.bed.iter().filter(|f| f.outlier()).count();
        if x == 0 {
            return None;
        }
        let p = binomial_cdf(x - 1, n, 0.5);
        // CANARY's discriminator: the probability that fewer outliers than seen happen by
        // chance; an event when it exceeds the threshold.
        if p < self.cfg.bed_probability {
            return None;
        }
        // A signal takes part when it was abnormal in at least half of the window's steps: one
        // noisy step does not make a second parameter agree.
        let persistent = |mask_of: fn(&StepFlags) -> u64| -> u64 {
            (0..64)
                .filter(|i| {
                    let hits = self
                        .bed
                        .iter()
                        .filter(|f| mask_of(f) & (1u64 << i) != 0)
                        .count();
                    2 * hits >= n
                })
                .fold(0u64, |m, i| m | (1u64 << i))
        };
        let mut quality = persistent(|f| f.quality);
        let context = persistent(|f| f.context);
        if quality == 0 {
            // Only the multivariate check spoke: name the signals furthest from normal now.
            quality = self.furthest_signals();
        }
        quality = self.abrupt(quality);
        (self.sufficient(quality) && !self.stirred_up(quality)).then_some((quality, context, p))
    }

    /// Strong evidence opens an event before the discriminator's window fills: the same
    /// signals abnormal in each of the last steps, two or more of them or one that may raise an
    /// event alone far from its baseline, and the departure abrupt.
    fn strong_onset(&self) -> Option<(u64, u64, f64)> {
        let k = STRONG_ONSET_STEPS;
        if self.bed.len() < k {
            return None;
        }
        let last = || self.bed.iter().rev().take(k);
        let quality = self.abrupt(last().fold(!0u64, |m, f| m & f.quality));
        let context = last().fold(!0u64, |m, f| m & f.context);
        (self.sufficient(quality) && !self.stirred_up(quality))
            .then(|| (quality, context, binomial_cdf(k - 1, k, 0.5)))
    }

    /// Deposits stirred up by the flow: every signal of `quality` is turbidity, and a flow
    /// at the station runs well above its highest of a day that ended a timeout ago (so that a
    /// surge of the last hours is not its own reference). The loose deposits in a main settle
    /// to what its daily peak flow leaves in place; a flow beyond that raises the shear on
    /// the pipe wall and lifts them (resuspension, as in the PODDS model): the water carries
    /// its own sediment, and that explains the change. Contaminated water moves chlorine, TOC
    /// or conductivity as well and is not explained away, nor is turbidity at an ordinary
    /// flow; and a surge that outlasts the timeout is the new normal.
    fn stirred_up(&self, quality: u64) -> bool {
        let mut signals = (0..self.models.len()).filter(|i| quality & (1u64 << i) != 0);
        if quality == 0 || !signals.all(|i| self.models[i].stirred_by_flow) {
            return false;
        }
        let day = (DAY_MS / self.step_ms).max(1) as usize;
        let look = self.lookback_steps();
        let hold = (self.cfg.timeout_ms / self.step_ms).max(0) as usize;
        self.models.iter().filter(|m| m.flow).any(|m| {
            let n = m.recent.len();
            let last = n.saturating_sub(hold);
            let Some(x) = m.recent.back().filter(|_| last >= look) else {
                return false; // not an hour of flow known before the reference ends
            };
            let peak = m
                .recent
                .range(last.saturating_sub(day)..last)
                .fold(0.0f64, |a, v| a.max(v.abs()));
            x.abs() > STIRRING_FLOW * peak
        })
    }

    /// The steps of [`ONSET_LOOKBACK_MS`] (at least three).
    fn lookback_steps(&self) -> usize {
        (ONSET_LOOKBACK_MS / self.step_ms).max(3) as usize
    }

    /// The median of a signal's values in the hour before the discriminator's window (where
    /// the water was normal, or at least different); `None` while too few are known.
    fn before_onset(&self, m: &SignalModel) -> Option<f64> {
        let look = self.lookback_steps();
        let skip = self.cfg.bed_window;
        let n = m.recent.len();
        if n < skip + look {
            return None;
        }
        let mut before: Vec<f64> = m.recent.range(n - skip - look..n - skip).copied().collect();
        Some(select_median(&mut before))
    }

    fn open_event(&mut self, t: EpochMillis, quality: u64, context: u64, p: f64) {
        let start = self.bed.iter().find(|f| f.outlier()).map_or(t, |f| f.time);
        // Besides the signals that carried the decision, those that jumped with them during
        // the onset took part (a step change is one outlier for the prediction filter, and
        // may stay within the level band of a signal with a wide daily cycle).
        let quality = self
            .bed
            .iter()
            .filter(|f| f.time >= start)
            .fold(quality, |m, f| m | f.quality);
        let bits = |mask: u64| (0..64).filter(move |i| mask & (1u64 << i) != 0);
        self.open = Some(StationEvent {
            start,
            detected_at: t,
            end: None,
            signals: bits(quality).collect(),
            context: bits(context).collect(),
            probability: p,
            absorbed: false,
        });
        self.normal_run = 0;
        // The onset steps are abnormal: do not let them into the baseline.
        let onset = self.bed.iter().filter(|f| f.time >= start).count();
        for m in &mut self.models {
            m.pending = None;
            for _ in 0..onset.saturating_sub(1) {
                m.history.pop_back();
            }
        }
    }

    /// A quality signal abnormal in the last two steps of an open event takes part in it too
    /// (an event opened early on its strongest signal names the others as they follow).
    fn join_signals(&mut self) {
        let n = self.bed.len();
        if n < 2 {
            return;
        }
        let both = self.bed[n - 1].quality & self.bed[n - 2].quality;
        if let Some(e) = self.open.as_mut() {
            for i in (0..64).filter(|i| both & (1u64 << i) != 0) {
                if !e.signals.contains(&i) {
                    e.signals.push(i);
                }
            }
            e.signals.sort_unstable();
        }
    }

    /// Whether a step inside an event still shows abnormal water: the evidence that opens an
    /// event, at the outlier threshold. Two or more quality signals beyond it, or one that may
    /// raise an event alone; conductivity, TOC or redox alone (a lasting change of source, a
    /// drifting sensor) do not keep an event open, not even through the nearest-neighbour
    /// distance that its one large deviation makes. With no signal beyond it, the
    /// nearest-neighbour check still may (a combination the history never showed).
    fn still_abnormal(&self, f: &StepFlags) -> bool {
        match f.quality.count_ones() {
            0 => f.mvnn,
            1 => self.models[f.quality.trailing_zeros() as usize].alone,
            _ => true,
        }
    }

    /// Keeps in `mask` the signals whose departure is recent: the newest value is an outlier
    /// also against the signal's own values of the hour before the discriminator's window, so
    /// a slow wander or a drifting sensor that crept past the long baseline does not count.
    fn abrupt(&self, mask: u64) -> u64 {
        let mut out = 0u64;
        for (i, m) in self.models.iter().enumerate() {
            if mask & (1u64 << i) == 0 {
                continue;
            }
            let (Some(fit), Some(&x), Some(reference)) =
                (&m.fit, m.recent.back(), self.before_onset(m))
            else {
                out |= 1u64 << i;
                continue;
            };
            if (x - reference).abs() / fit.level_scale > self.cfg.level_sigmas {
                out |= 1u64 << i;
            }
        }
        out
    }

    fn furthest_signals(&self) -> u64 {
        let mut mask = 0u64;
        for (i, m) in self.models.iter().enumerate() {
            if !m.quality {
                continue;
            }
            if let (Some(fit), Some(x)) = (&m.fit, m.recent.back())
                && ((x - fit.median) / fit.level_scale).abs() > self.cfg.level_sigmas / 2.0
            {
                mask |= 1u64 << i;
            }
        }
        mask
    }

    fn remember_state(&mut self, z: &[f64]) {
        if z.is_empty() || z.iter().any(|v| v.is_nan()) {
            return;
        }
        self.mv_count += 1;
        if !self.mv_count.is_multiple_of(self.mv_stride) {
            return;
        }
        // Stored as raw values, so a later refit re-standardises them.
        let raw: Vec<f64> = self
            .models
            .iter()
            .filter(|m| m.quality)
            .zip(z)
            .map(|(m, zi)| {
                m.fit
                    .as_ref()
                    .map_or(f64::NAN, |f| f.median + zi * f.level_scale)
            })
            .collect();
        self.mv_history.push_back(raw);
        if self.mv_history.len() > MV_HISTORY {
            self.mv_history.pop_front();
        }
    }

    /// Whether the standardised state `z` is far from every remembered state.
    fn mvnn_outlier(&self, z: &[f64]) -> bool {
        if self.mv_history.len() < MV_HISTORY / 4 || z.is_empty() {
            return false;
        }
        let fits: Vec<&Fit> = self
            .models
            .iter()
            .filter(|m| m.quality)
            .filter_map(|m| m.fit.as_ref())
            .collect();
        if fits.len() != z.len() {
            return false;
        }
        let mut best = f64::INFINITY;
        for h in &self.mv_history {
            let mut d = 0.0;
            let mut k = 0usize;
            for ((zi, hi), f) in z.iter().zip(h).zip(&fits) {
                if zi.is_nan() || hi.is_nan() {
                    continue;
                }
                let zh = (hi - f.median) / f.level_scale;
                d += (zi - zh) * (zi - zh);
                k += 1;
            }
            if k > 0 {
                best = best.min((d / k as f64).sqrt());
            }
        }
        best.is_finite() && best > self.cfg.mvnn_sigmas
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_cdf_matches_known_values() {
        assert!((binomial_cdf(4, 6, 0.5) - 0.890625).abs() < 1e-12);
        assert!((binomial_cdf(6, 6, 0.5) - 1.0).abs() < 1e-12);
        assert!((binomial_cdf(0, 3, 0.2) - 0.512).abs() < 1e-12);
    }

    #[test]
    fn ar_fit_recovers_an_ar1_process() {
        let mut rng = waterline_core::testing::XorShift(0x9e37_79b9_7f4a_7c15);
        let mut x = vec![0.0f64];
        for _ in 0..2000 {
            let prev = *x.last().expect("value");
            x.push(0.8 * prev + rng.normal());
        }
        let a = fit_ar(&x, 0.0, 1);
        assert!((a[0] - 0.8).abs() < 0.05, "{a:?}");
    }

    /// Chlorine, turbidity, pH and conductivity of one station, and the flow in its main
    /// (context), in that order.
    fn station() -> Vec<SignalSpec> {
        let mut text = String::from("timezone = \"UTC\"\n");
        for (id, kind, unit) in [
            ("S-cl2", "chlorine", "mg/L"),
            ("S-turb", "turbidity", "NTU"),
            ("S-ph", "ph", "pH"),
            ("S-cond", "conductivity", "uS/cm"),
            ("S-flow", "flow", "m3/h"),
        ] {
            text.push_str(&format!(
                "[[sensor]]\nid = \"{id}\"\nkind = \"{kind}\"\nunit = \"{unit}\"\nstation = \"S\"\n"
            ));
        }
        let net = waterline_core::Network::parse(&text).expect("network parses");
        let mut specs: Vec<SignalSpec> =
            net.sensors.values().map(SignalSpec::from_sensor).collect();
        let order = ["S-cl2", "S-turb", "S-ph", "S-cond", "S-flow"];
        specs.sort_by_key(|s| order.iter().position(|o| *o == s.sensor.as_str()));
        specs
    }

    const STEP: i64 = 300_000;
    const HOUR: i64 = 3_600_000;

    /// Runs four days of steady water, then `change(hours since t0)` added to the means for
    /// two more days; returns the events and t0.
    fn run(change: impl Fn(f64) -> [f64; 5]) -> (Vec<StationEvent>, EpochMillis) {
        let specs = station();
        let mut det = StationDetector::new(&specs, STEP, DetectConfig::default());
        let mut rng = waterline_core::testing::XorShift(0x2545_f491_4f6c_dd1d);
        let mean = [1.0, 0.2, 7.4, 320.0, 4.0];
        let noise = [0.01, 0.005, 0.01, 0.5, 0.04];
        let t0 = 96 * HOUR;
        for k in 0..(144 * HOUR / STEP) {
            let t = k * STEP;
            let d = if t >= t0 {
                change((t - t0) as f64 / HOUR as f64)
            } else {
                [0.0; 5]
            };
            let values: Vec<Option<f64>> = (0..5)
                .map(|i| Some(mean[i] + d[i] + noise[i] * rng.normal()))
                .collect();
            det.step(t, &values);
        }
        det.finish();
        (det.events, t0)
    }

    #[test]
    fn a_lasting_change_of_one_corroborating_signal_does_not_hold_an_event_open() {
        // Two hours of dirty water (chlorine down, turbidity up) with a change of source whose
        // conductivity stays 30 µS/cm higher.
        let (events, t0) = run(|h| {
            let dirty = if h < 2.0 { 1.0 } else { 0.0 };
            [-0.4 * dirty, 0.3 * dirty, 0.0, 30.0, 0.0]
        });
        assert_eq!(events.len(), 1, "{events:#?}");
        let e = &events[0];
        assert!(e.detected_at <= t0 + 3 * STEP, "{e:?}");
        let end = e.end.expect("closed");
        assert!(!e.absorbed, "{e:?}");
        assert!(end <= t0 + 2 * HOUR + 3 * STEP, "{e:?}");
    }

    #[test]
    fn a_slow_drift_raises_no_event_and_a_sudden_shift_does() {
        // pH creeping up 0.6 over two days: far past its baseline, but never abruptly.
        let (drift, _) = run(|h| [0.0, 0.0, 0.6 * h / 48.0, 0.0, 0.0]);
        assert!(drift.is_empty(), "{drift:#?}");
        // The same 0.6 within a quarter of an hour is an event on pH alone.
        let (jump, t0) = run(|h| [0.0, 0.0, 0.6 * (h * 4.0).min(1.0), 0.0, 0.0]);
        assert!(!jump.is_empty(), "no event");
        assert_eq!(jump[0].signals, vec![2]);
        assert!(jump[0].detected_at <= t0 + 4 * STEP, "{:?}", jump[0]);
    }

    #[test]
    fn turbidity_stirred_up_by_a_flow_surge_is_explained_and_dirty_water_is_not() {
        // Three hours of a tenfold flow in the main lifting its deposits: turbidity +0.25 NTU
        // and nothing else.
        let surge = |h: f64| if h < 3.0 { 1.0 } else { 0.0 };
        let (stirred, _) = run(|h| [0.0, 0.25 * surge(h), 0.0, 0.0, 36.0 * surge(h)]);
        assert!(stirred.is_empty(), "{stirred:#?}");
        // The same turbidity with a steady flow is abnormal water.
        let (alone, t0) = run(|h| [0.0, 0.25 * surge(h), 0.0, 0.0, 0.0]);
        assert_eq!(alone.len(), 1, "{alone:#?}");
        assert_eq!(alone[0].signals, vec![1]);
        assert!(alone[0].detected_at <= t0 + 4 * STEP, "{:?}", alone[0]);
        // A falling flow stirs nothing up: the turbidity is not explained.
        let (falling, _) = run(|h| [0.0, 0.25 * surge(h), 0.0, 0.0, -3.0 * surge(h)]);
        assert_eq!(falling.len(), 1, "{falling:#?}");
        // Dirty water arriving with the surge moves chlorine too: an event, the flow named as
        // context.
        let (dirty, _) = run(|h| [-0.4 * surge(h), 0.25 * surge(h), 0.0, 0.0, 36.0 * surge(h)]);
        assert_eq!(dirty.len(), 1, "{dirty:#?}");
        assert!(dirty[0].signals.contains(&0), "{:?}", dirty[0]);
        assert_eq!(dirty[0].context, vec![4], "{:?}", dirty[0]);
    }
}
