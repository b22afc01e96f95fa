//! The lab's routine grab samples at the quality stations, as `grab_samples.csv` of an export:
//! what a sampler measuring the true water would report, to check the analysers against.
//!
//! On weekdays (local time) each station is sampled once, station `i` at 09:00 + 20·i minutes
//! (at the first step from then): free chlorine, turbidity, pH and conductivity measured on
//! site (reported an hour later), and on Mondays TOC too (a lab analysis, reported two days
//! later). Each result is the station's true value at that step plus the method's error
//! (Gaussian: chlorine 0.02 + 2 %, turbidity 0.02 + 5 %, pH 0.03, conductivity 2 + 0.5 %,
//! TOC 0.05 — exact with `--ideal`), rounded to the method's resolution. Instrument faults do
//! not touch them: that is the point. A visit's results share its sample id, `G<n>` in order.
//!
//! Columns: `station,parameter,value,unit,sampled_at,sample_id,reported_at`.

use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use rand::rngs::StdRng;

use super::demand::gaussian;
use super::export::rfc3339;
use super::quality::QualitySim;
use super::stations::Channel;

/// The file's header line.
pub const HEADER: &str = "station,parameter,value,unit,sampled_at,sample_id,reported_at\n";

/// Minutes after local midnight of the first station's sample.
const FIRST_MINUTE: u32 = 9 * 60;
/// Minutes between two stations' samples.
const STATION_GAP_MINUTES: u32 = 20;

/// How the lab measures one parameter.
struct Method {
    /// Standard deviation of the method's error: absolute plus relative to the value.
    sd_abs: f64,
    sd_rel: f64,
    resolution: f64,
    /// From sampling to the reported result.
    delay: TimeDelta,
}

/// The lab's method for a signal; `None`: not sampled (temperature).
fn method(c: Channel) -> Option<Method> {
    let on_site = |sd_abs, sd_rel, resolution| Method {
        sd_abs,
        sd_rel,
        resolution,
        delay: TimeDelta::hours(1),
    };
    Some(match c {
        Channel::Chlorine => on_site(0.02, 0.02, 0.01),
        Channel::Turbidity => on_site(0.02, 0.05, 0.01),
        Channel::Ph => on_site(0.03, 0.0, 0.01),
        Channel::Conductivity => on_site(2.0, 0.005, 1.0),
        Channel::Toc => Method {
            sd_abs: 0.05,
            sd_rel: 0.0,
            resolution: 0.01,
            delay: TimeDelta::days(2),
        },
        Channel::Temperature | Channel::Flow => return None,
    })
}

/// Takes the grab samples as the twin runs.
#[derive(Debug)]
pub struct GrabSampler {
    timezone: Tz,
    ideal: bool,
    rng: StdRng,
    /// Per station, the local date last sampled.
    done: Vec<Option<chrono::NaiveDate>>,
    next_id: usize,
    /// The CSV rows so far (without the header).
    pub rows: String,
    pub count: usize,
}

impl GrabSampler {
    /// A sampler for `stations` stations (`seed`: the twin's).
    pub fn new(stations: usize, timezone: Tz, seed: u64, ideal: bool) -> Self {
        Self {
            timezone,
            ideal,
            rng: crate::model::rng(seed ^ 0x0006_4ab5),
            done: vec![None; stations],
            next_id: 1,
            rows: String::new(),
            count: 0,
        }
    }

    /// After the quality simulation took the step at `t`: samples each station whose time
    /// has come today.
    pub fn step(&mut self, t: DateTime<Utc>, q: &QualitySim) {
        let local = t.with_timezone(&self.timezone);
        let weekday = local.weekday();
        if matches!(weekday, Weekday::Sat | Weekday::Sun) {
            return;
        }
        let minute = local.hour() * 60 + local.minute();
        let date = local.date_naive();
        for (s, station) in q.plan().stations.iter().enumerate() {
            let due = FIRST_MINUTE + STATION_GAP_MINUTES * s as u32;
            if minute < due || self.done[s] == Some(date) {
                continue;
            }
            self.done[s] = Some(date);
            let id = self.next_id;
            self.next_id += 1;
            for c in Channel::ALL {
                let Some(m) = method(c) else {
                    continue;
                };
                if c == Channel::Toc && weekday != Weekday::Mon {
                    continue;
                }
                let truth = q.true_value(s, c);
                let v = if self.ideal {
                    truth
                } else {
                    truth + (m.sd_abs + m.sd_rel * truth.abs()) * gaussian(&mut self.rng)
                };
                let (lo, hi) = c.bounds();
                let v = ((v / m.resolution).round() * m.resolution).clamp(lo, hi) + 0.0;
                let decimals = if m.resolution >= 1.0 { 0 } else { 2 };
                use std::fmt::Write as _;
                let _ = writeln!(
                    self.rows,
                    "{},{},{v:.decimals$},{},{},G{id},{}",
                    station.id,
                    c.kind(),
                    c.unit(),
                    rfc3339(t),
                    rfc3339(t + m.delay)
                );
                self.count += 1;
            }
        }
    }
}
