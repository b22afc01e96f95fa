//! Pressure transients from high-rate loggers: a pump trip, a fast valve closure or a burst
//! sends a pressure wave through the network that lasts seconds to minutes and is invisible
//! in 5- or 15-minute data. Transient loggers sample every second or faster; from their data
//! this finds each surge and summarises it as one `transient` event.
//!
//! Only consecutive readings at most [`TransientConfig::max_interval_ms`] apart are read
//! (slow data never makes a transient; a gap ends one). A transient **starts** at the reading
//! before the first change faster than [`TransientConfig::rate_m_per_s`], **goes on** while
//! such changes keep coming, and **ends** at the last fast change once none has come for
//! [`TransientConfig::quiet_ms`] (or at a gap, or the end of the data). It is reported when it
//! ends, if its swing (highest − lowest pressure within it) reached
//! [`TransientConfig::min_swing_m`]; noise alone never does. Causal: `detected_at` is the
//! reading that showed the quiet, and nothing after it is read.
//!
//! The event: `value` = the swing (m); `message` = highest, lowest, starting pressure, the
//! largest |dP/dt| and the duration; `severity` `alarm` when the pressure fell below 0 m
//! (column separation: a risk of drawing in contaminated water) or rose above the sensor's
//! upper service bound, else `warning`.

use waterline_core::{Event, EventKind, SensorId, Severity};

use crate::quality::utc;
use crate::timefmt::EpochMillis;

/// How transients are recognised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TransientConfig {
    /// Readings further apart than this are not high-rate data, ms.
    pub max_interval_ms: i64,
    /// A change at least this fast starts or continues a transient, m/s.
    pub rate_m_per_s: f64,
    /// The smallest swing reported, m.
    pub min_swing_m: f64,
    /// Calm this long ends a transient, ms.
    pub quiet_ms: i64,
}

impl Default for TransientConfig {
    fn default() -> Self {
        Self {
            max_interval_ms: 10_000,
            rate_m_per_s: 1.0,
            min_swing_m: 5.0,
            quiet_ms: 30_000,
        }
    }
}

/// One transient being followed.
#[derive(Debug, Clone, Copy)]
struct Episode {
    start: EpochMillis,
    last_fast: EpochMillis,
    before: f64,
    min: f64,
    max: f64,
    max_rate: f64,
}

/// Finds the transients of one pressure sensor (readings in time order, m). `upper` is the
/// sensor's upper service bound, when it has one.
pub fn detect(
    sensor: &SensorId,
    times: &[EpochMillis],
    values: &[f64],
    upper: Option<f64>,
    cfg: &TransientConfig,
) -> Vec<Event> {
    let mut events = Vec::new();
    let mut open: Option<Episode> = None;
    for i in 1..times.len() {
        let (t0, t1) = (times[i - 1], times[i]);
        let (v0, v1) = (values[i - 1], values[i]);
        let dt = t1 - t0;
        if dt <= 0 || dt > cfg.max_interval_ms || !v0.is_finite() || !v1.is_finite() {
            // A gap (or an unusable reading) ends what was going on, as of the last reading.
            if let Some(ep) = open.take() {
                push(&mut events, sensor, ep, t0, upper, cfg);
            }
            continue;
        }
        let rate = (v1 - v0).abs() / (dt as f64 / 1000.0);
        if let Some(ep) = open.as_mut() {
            ep.min = ep.min.min(v1);
            ep.max = ep.max.max(v1);
            if rate >= cfg.rate_m_per_s {
                ep.last_fast = t1;
                ep.max_rate = ep.max_rate.max(rate);
            } else if t1 - ep.last_fast >= cfg.quiet_ms {
                let ep = open.take().expect("open");
                push(&mut events, sensor, ep, t1, upper, cfg);
            }
        } else if rate >= cfg.rate_m_per_s {
            open = Some(Episode {
                start: t0,
                last_fast: t1,
                before: v0,
                min: v0.min(v1),
                max: v0.max(v1),
                max_rate: rate,
            });
        }
    }
    if let (Some(ep), Some(&last)) = (open, times.last()) {
        push(&mut events, sensor, ep, last, upper, cfg);
    }
    events
}

fn push(
    events: &mut Vec<Event>,
    sensor: &SensorId,
    ep: Episode,
    detected_at: EpochMillis,
    upper: Option<f64>,
    cfg: &TransientConfig,
) {
    let swing = ep.max - ep.min;
    if swing < cfg.min_swing_m {
        return;
    }
    let mut e = Event::new(EventKind::Transient, utc(ep.start), utc(detected_at));
    e.end = Some(utc(ep.last_fast));
    e.sensor = Some(sensor.clone());
    let severe = ep.min < 0.0 || upper.is_some_and(|u| ep.max > u);
    e.severity = Some(if severe {
        Severity::Alarm
    } else {
        Severity::Warning
    });
    e.value = Some(round2(swing));
    e.confidence = Some(1.0);
    let seconds = (ep.last_fast - ep.start) as f64 / 1000.0;
    e.message = Some(format!(
        "pressure transient: swing {:.2} m (max {:.2} m, min {:.2} m, from {:.2} m), max |dP/dt| {:.2} m/s, {:.0} s{}",
        swing,
        ep.max,
        ep.min,
        ep.before,
        ep.max_rate,
        seconds,
        if ep.min < 0.0 {
            "; below 0 m: risk of intrusion"
        } else {
            ""
        }
    ));
    events.push(e);
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid() -> SensorId {
        SensorId::parse("J5").unwrap()
    }

    /// Ten minutes of 1-s data at 45 m with ±0.1 m of deterministic noise; from `trip_s` on a
    /// pump trip: a damped oscillation of `amplitude` m, 8 s period, decaying with a 20 s time
    /// constant (the first swing goes down).
    fn logger(trip_s: Option<i64>, amplitude: f64) -> (Vec<i64>, Vec<f64>) {
        let t0 = 1_767_225_600_000i64;
        let mut times = Vec::new();
        let mut values = Vec::new();
        for s in 0..600i64 {
            let noise = 0.1 * ((s * 7919 % 200) as f64 / 100.0 - 1.0);
            let mut v = 45.0 + noise;
            if let Some(trip) = trip_s
                && s >= trip
            {
                let x = (s - trip) as f64;
                v -= amplitude * (std::f64::consts::TAU * x / 8.0).sin() * (-x / 20.0).exp();
            }
            times.push(t0 + s * 1000);
            values.push(v);
        }
        (times, values)
    }

    #[test]
    fn a_pump_trip_is_one_transient_with_its_swing_and_rate() {
        let (t, v) = logger(Some(300), 35.0);
        let events = detect(&sid(), &t, &v, Some(70.0), &TransientConfig::default());
        assert_eq!(events.len(), 1, "{events:?}");
        let e = &events[0];
        assert_eq!(e.kind, EventKind::Transient);
        // The trip starts at 300 s (sin 0 = 0): the first fast change is from 300 s to 301 s.
        assert_eq!(
            e.start,
            utc(t[300]),
            "starts at the reading before the first fast change"
        );
        assert!(
            e.end.unwrap() > e.start && e.end.unwrap() <= utc(t[420]),
            "{e:?}"
        );
        // Reported once 30 s of calm have passed: causal.
        assert!(e.detected_at >= e.end.unwrap() + chrono::TimeDelta::seconds(30));
        let swing = e.value.unwrap();
        assert!(swing > 40.0 && swing < 72.0, "swing {swing}");
        // Above 70 m (the upper bound) at its peak: an alarm.
        assert_eq!(e.severity, Some(Severity::Alarm), "{:?}", e.message);
        assert!(e.message.as_deref().unwrap().contains("max |dP/dt|"));
    }

    #[test]
    fn noise_slow_changes_and_slow_data_make_no_transient() {
        let (t, v) = logger(None, 0.0);
        assert!(detect(&sid(), &t, &v, None, &TransientConfig::default()).is_empty());
        // The same trip in 5-minute data: the readings are too far apart to say anything.
        let (t, v) = logger(Some(300), 35.0);
        let slow_t: Vec<i64> = t.iter().step_by(300).copied().collect();
        let slow_v: Vec<f64> = v.iter().step_by(300).copied().collect();
        assert!(detect(&sid(), &slow_t, &slow_v, None, &TransientConfig::default()).is_empty());
        // A small, fast wobble below the swing threshold is not reported.
        let (t, v) = logger(Some(300), 2.0);
        assert!(detect(&sid(), &t, &v, None, &TransientConfig::default()).is_empty());
    }

    #[test]
    fn negative_pressure_is_an_alarm_and_a_gap_ends_the_transient() {
        let (t, mut v) = logger(Some(300), 50.0);
        // The logger stops 10 s into the trip: what was seen is reported, ending at the gap.
        let cut = 310;
        v.truncate(cut);
        let mut t: Vec<i64> = t[..cut].to_vec();
        t.push(t[cut - 1] + 60_000);
        v.push(45.0);
        let events = detect(&sid(), &t, &v, None, &TransientConfig::default());
        assert_eq!(events.len(), 1, "{events:?}");
        let e = &events[0];
        assert!(e.end.unwrap() <= utc(t[cut - 1]));
        assert_eq!(e.detected_at, utc(t[cut - 1]));
        assert!(
            v[..cut].iter().any(|x| *x < 0.0),
            "the trip pulls below 0 m"
        );
        assert_eq!(e.severity, Some(Severity::Alarm));
        assert!(e.message.as_deref().unwrap().contains("intrusion"));
    }
}
