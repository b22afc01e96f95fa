//! `pressure_drop`: a sudden drop of one sensor's pressure against its own baseline, causal.
//!
//! The baseline is a time-of-day × day-type profile: for every local quarter hour of weekdays
//! and of weekends, the last [`PROFILE_LEN`] trusted readings of that quarter hour (about four
//! days' worth at 5-minute steps) give a median and a robust spread (1.4826 × MAD, floored at
//! [`MIN_SPREAD_M`] and the resolution). Demand moves a whole day's pressures up or down, so
//! the residual from the profile is taken against the day's own offset (the median residual
//! of the last three hours but the newest half hour): a drop is a sudden step, not a low day.
//! When the day type changes (at midnight into and out of a weekend), the profile of the day
//! type coming into use is moved by the level the other one learnt while it was idle (the
//! median change of the other's slot medians, when at least [`MIN_DROP_M`]): a zone whose
//! pressure fell slowly over the week while leaks grew is no drop at midnight on Saturday.
//! The standardised step feeds an EWMA (λ = 0.3), the univariate burst detector that did best
//! in published comparisons; a drop opens when the EWMA falls below −[`DropConfig::sigmas`]
//! and the step is at least [`MIN_DROP_M`] deep, and closes when the EWMA is back above −1.
//! While a drop is open the profile does not learn; a drop still open after
//! [`DropConfig::absorb_ms`] is closed there and the new level is learnt (a burst that is
//! not repaired must not alarm forever).

use waterline_core::Event;

use crate::clock::weekday_of_day;
use crate::stats::SortedWindow;
use crate::timefmt::EpochMillis;

/// Readings remembered per profile slot.
pub const PROFILE_LEN: usize = 12;
/// The smallest spread a profile slot may claim, m (sensor noise and demand jitter).
pub const MIN_SPREAD_M: f64 = 0.25;
/// A drop must also be this deep, m.
pub const MIN_DROP_M: f64 = 1.0;

/// Residuals remembered for the day's offset, and how many of the newest the offset skips
/// (so that a drop building up does not pull its own reference down).
const RESIDUALS: usize = 36;
const RECENT_SKIP: usize = 6;

/// Tuning of the drop detector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DropConfig {
    pub sigmas: f64,
    pub lambda: f64,
    pub absorb_ms: i64,
}

impl Default for DropConfig {
    fn default() -> Self {
        Self {
            sigmas: 4.0,
            lambda: 0.3,
            absorb_ms: 24 * 3_600_000,
        }
    }
}

/// One detected drop.
#[derive(Debug, Clone, PartialEq)]
pub struct Drop {
    pub start: EpochMillis,
    pub detected_at: EpochMillis,
    pub end: Option<EpochMillis>,
    /// Baseline minus the reading that confirmed it, m.
    pub depth_m: f64,
    pub absorbed: bool,
}

/// The causal drop detector of one pressure sensor.
#[derive(Debug)]
pub struct DropDetector {
    cfg: DropConfig,
    resolution: f64,
    /// 2 day types × 96 quarter hours.
    profile: Vec<SortedWindow>,
    /// Each slot's (median, spread) and how many readings it learnt since they were computed.
    stats: Vec<Option<(f64, f64, usize)>>,
    /// The day's offset and the readings since it was computed.
    offset: (f64, usize),
    ewma: f64,
    /// The newest residuals from the profile, which the day's offset skips (newest last).
    newest: std::collections::VecDeque<f64>,
    /// The residuals before those: the day's own level.
    older: SortedWindow,
    /// The day type of the newest reading (`true`: weekend).
    weekend: Option<bool>,
    /// Per day type, the other day type's slot medians when this one was last left (what the
    /// other has learnt since is the level this one missed).
    left_at: [Option<Vec<Option<f64>>>; 2],
    /// When the EWMA last left the normal band (the onset estimate).
    below_since: Option<EpochMillis>,
    open: Option<Drop>,
    pub drops: Vec<Drop>,
}

impl DropDetector {
    pub fn new(resolution: f64, cfg: DropConfig) -> Self {
        Self {
            cfg,
            resolution,
            profile: (0..2 * 96)
                .map(|_| SortedWindow::with_capacity(PROFILE_LEN))
                .collect(),
            stats: vec![None; 2 * 96],
            offset: (0.0, usize::MAX),
            ewma: 0.0,
            newest: std::collections::VecDeque::with_capacity(RECENT_SKIP + 1),
            older: SortedWindow::with_capacity(RESIDUALS - RECENT_SKIP),
            weekend: None,
            left_at: [None, None],
            below_since: None,
            open: None,
            drops: Vec::new(),
        }
    }

    /// Feeds one trusted reading (m) at `t`, which falls on local `day` at local `minute`
    /// ([`crate::clock::LocalClock::day_and_minute`]).
    pub fn step(&mut self, (day, minute): (i64, u32), t: EpochMillis, x: f64) {
        let weekend = weekday_of_day(day) >= 5;
        let quarter = (minute / 15) as usize % 96;
        let slot = usize::from(weekend) * 96 + quarter;
        if self.weekend.replace(weekend).is_some_and(|w| w != weekend) {
            self.catch_up(weekend);
        }
        let hist = &self.profile[slot];
        if hist.len() < PROFILE_LEN / 2 {
            self.learn(slot, x);
            return;
        }
        // A slot's statistics move slowly: recomputed after every third reading it learnt.
        let (median, spread) = match self.stats[slot] {
            Some((m, sp, learnt)) if learnt < 3 => (m, sp),
            _ => {
                let median = hist.median();
                let spread = (1.4826 * hist.median_deviation(median))
                    .max(MIN_SPREAD_M)
                    .max(self.resolution);
                self.stats[slot] = Some((median, spread, 0));
                (median, spread)
            }
        };
        // Demand moves a whole day's pressure up or down; what matters is a sudden step
        // against the last hours' offset from the profile, not that offset.
        let r = x - median;
        // The offset moves slowly too: recomputed every third reading.
        if self.offset.1 >= 3 {
            self.offset.0 = if self.older.len() > 6 {
                self.older.median()
            } else {
                0.0
            };
            self.offset.1 = 0;
        }
        self.offset.1 += 1;
        let offset = self.offset.0;
        let z = (r - offset) / spread;
        self.ewma = self.cfg.lambda * z + (1.0 - self.cfg.lambda) * self.ewma;
        if self.ewma < -1.0 {
            self.below_since.get_or_insert(t);
        } else {
            self.below_since = None;
        }
        match &mut self.open {
            None => {
                if self.ewma < -self.cfg.sigmas && offset - r >= MIN_DROP_M {
                    self.open = Some(Drop {
                        start: self.below_since.unwrap_or(t),
                        detected_at: t,
                        end: None,
                        depth_m: offset - r,
                        absorbed: false,
                    });
                } else {
                    self.learn(slot, x);
                    self.remember(r);
                }
            }
            Some(d) => {
                if self.ewma > -1.0 {
                    d.end = Some(t);
                    self.drops.extend(self.open.take());
                    self.learn(slot, x);
                    self.remember(r);
                } else if t - d.start > self.cfg.absorb_ms {
                    d.end = Some(t);
                    d.absorbed = true;
                    self.drops.extend(self.open.take());
                    // The new level is the baseline from now on.
                    for h in &mut self.profile {
                        h.clear();
                    }
                    self.stats.iter_mut().for_each(|s| *s = None);
                    self.offset = (0.0, usize::MAX);
                    self.ewma = 0.0;
                    self.below_since = None;
                    self.newest.clear();
                    self.older.clear();
                    self.left_at = [None, None];
                }
            }
        }
    }

    /// Ends the data: an open drop stays open.
    pub fn finish(&mut self) {
        self.drops.extend(self.open.take());
    }

    fn remember(&mut self, r: f64) {
        self.newest.push_back(r);
        if self.newest.len() > RECENT_SKIP
            && let Some(old) = self.newest.pop_front()
        {
            self.older.push_capped(old, RESIDUALS - RECENT_SKIP);
        }
    }

    /// The medians of one day type's slots (`None`: a slot that has not learnt enough).
    fn medians(&self, weekend: bool) -> Vec<Option<f64>> {
        let base = usize::from(weekend) * 96;
        self.profile[base..base + 96]
            .iter()
            .map(|h| (h.len() >= PROFILE_LEN / 2).then(|| h.median()))
            .collect()
    }

    /// The day type changed to `weekend`: its profile is moved by the level the other day
    /// type's profile learnt since this one was last in use, when that is at least
    /// [`MIN_DROP_M`] (less cannot make a drop).
    fn catch_up(&mut self, weekend: bool) {
        let other = !weekend;
        let now = self.medians(other);
        if let Some(then) = &self.left_at[usize::from(weekend)] {
            let mut moved: Vec<f64> = now
                .iter()
                .zip(then)
                .filter_map(|(a, b)| Some((*a)? - (*b)?))
                .collect();
            let shift = crate::stats::median(&mut moved).unwrap_or(0.0);
            if shift.abs() >= MIN_DROP_M {
                let base = usize::from(weekend) * 96;
                for slot in base..base + 96 {
                    self.profile[slot].shift(shift);
                    self.stats[slot] = None;
                }
            }
        }
        // What this day type's profile knows now, for when the other comes back.
        self.left_at[usize::from(other)] = Some(self.medians(weekend));
    }

    fn learn(&mut self, slot: usize, x: f64) {
        self.profile[slot].push_capped(x, PROFILE_LEN);
        if let Some(s) = &mut self.stats[slot] {
            s.2 += 1;
        }
    }
}

impl Drop {
    /// The `pressure_drop` event of this drop on `sensor`.
    pub fn event(&self, sensor: &waterline_core::Sensor) -> Event {
        let utc = crate::quality::utc;
        let mut e = Event::new(
            waterline_core::EventKind::PressureDrop,
            utc(self.start),
            utc(self.detected_at),
        );
        e.end = self.end.map(utc);
        e.sensor = Some(sensor.id.clone());
        e.dma = sensor.dma.clone();
        e.severity = Some(waterline_core::Severity::Warning);
        e.value = Some((self.depth_m * 100.0).round() / 100.0);
        e.confidence = Some(0.8);
        let mut m = format!(
            "pressure {:.2} m below its usual level for this time of day",
            self.depth_m
        );
        if self.absorbed {
            m.push_str("; lasted a day and became the new baseline");
        }
        e.message = Some(m);
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::DAY_MS;

    /// Three weeks of 5-minute readings from a Monday, the level of each moment given by
    /// `level` (days since the start); the drops found.
    fn run(level: impl Fn(f64) -> f64) -> Vec<Drop> {
        let monday = 4 + 7 * 2_900;
        let mut d = DropDetector::new(0.01, DropConfig::default());
        let mut noise = 0x2545_f491_u64;
        for k in 0..21 * 288 {
            let (day, minute) = (monday + k / 288, (k % 288) as u32 * 5);
            noise ^= noise << 13;
            noise ^= noise >> 7;
            noise ^= noise << 17;
            let jitter = (noise % 21) as f64 / 100.0 - 0.1;
            let x = level(k as f64 / 288.0) + jitter;
            d.step((day, minute), day * DAY_MS + i64::from(minute) * 60_000, x);
        }
        d.finish();
        d.drops
    }

    #[test]
    fn a_level_the_weekdays_learnt_is_no_drop_on_the_first_weekend_day() {
        // Two weeks at 40 m, then down to 26 m over three days (too slow for a drop), which
        // the weekday profile learns; the weekend profile still knows 40 m on Saturday.
        let drops = run(|day| 40.0 - 14.0 * ((day - 14.0) / 3.0).clamp(0.0, 1.0));
        assert!(drops.is_empty(), "{drops:?}");
        // A sudden fall of the same size on the Saturday is a drop, found at once.
        let drops = run(|day| if day < 19.5 { 40.0 } else { 26.0 });
        assert_eq!(drops.len(), 1, "{drops:?}");
        let found = drops[0].detected_at - drops[0].start;
        assert!(found <= 15 * 60_000, "{drops:?}");
    }
}
