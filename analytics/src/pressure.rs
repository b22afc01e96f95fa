//! Pressure analytics, first part: the service band, sudden drops and the compliance rate
//! (压力合格率) per monitoring point, zone and network per local day, with instrument faults
//! set aside. Causal (CONTRACTS §3), one pass per pressure sensor.
//!
//! - A **monitoring point** is every `pressure` sensor. Its band is its DMA's
//!   `min_service_pressure_m` / `max_service_pressure_m`; without a DMA or a configured lower
//!   bound the national minimum at the network's tail, 14 m (0.14 MPa), applies, and without a
//!   configured upper bound there is none.
//! - Each reading first passes the instrument-fault checks the quality analytics use
//!   ([`crate::quality::faults`]: impossible values, flatlines judged against the resolution,
//!   spikes, dropouts); a faulted reading raises a `sensor_fault` and counts neither as
//!   qualified nor as a reading. A jump that two or more of the zone's sensors made at the
//!   same moment ([`crate::zone_jumps`]) is the water, not an instrument, and passes.
//! - `pressure_low` / `pressure_high`: a sustained band violation — three consecutive trusted
//!   readings beyond the bound (a lone spike never alarms); it ends with the first of three
//!   consecutive readings back inside by more than the resolution.
//! - Compliance: qualified readings ÷ trusted readings, per point and local day, and summed per
//!   zone and for the network (every point weighs by its readings, as the national rule counts
//!   readings). Readings inside a declared exclusion window of the sensor or its DMA
//!   ([`analyze_with`]) count in neither, only as `excluded`.
//!
//! - `pressure_drop`: a sudden drop against the sensor's own time-of-day baseline
//!   ([`crate::pressure_drop`]), fed each trusted reading once the next one shows it was no
//!   spike, then checked against the DMA's inflow ([`crate::drop_incidents`]): reported when
//!   the inflow rose with it, the drops of several sensors at one burst as one incident.
//!
//! - `sensor_fault` drift: a sensor drifting away from its zone's other pressure points
//!   ([`crate::pressure_drift`]), unless a `pressure_drop` incident of its zone started
//!   while the drift's evidence built (a burst moves the points unevenly).
//! - `transient`: surges in high-rate data (readings seconds apart), one event per surge with
//!   its swing, extremes, largest |dP/dt| and duration ([`crate::transients`]); read from the
//!   raw readings (a surge is what the spike check calls a spike).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use polars::prelude::PolarsResult;
use waterline_core::{
    DeclaredWindow, Event, EventKind, Network, SensorKind, Severity, WindowKind, WindowSubject,
};

use crate::clock::{LocalClock, date_of_day};
use crate::drop_incidents::{self, IncidentConfig};
use crate::grid::dma_balance_flows;
use crate::pressure_drift::{self, DriftConfig};
use crate::pressure_drop::{DropConfig, DropDetector};
use crate::quality::faults::{FaultConfig, FaultTracker};
use crate::quality::signals::{SetPoint, Side, SignalSpec, Tier};
use crate::quality::station::median_interval;
use crate::quality::thresholds::ThresholdTracker;
use crate::quality::utc;
use crate::readings::Readings;
use crate::timefmt::EpochMillis;
use crate::transients::{self, TransientConfig};
use crate::zone_jumps;

/// The lower bound where the network configures none: 0.14 MPa at the network's tail.
pub const DEFAULT_MIN_SERVICE_PRESSURE_M: f64 = 14.0;

/// Tuning of the pressure analysis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PressureConfig {
    /// Consecutive readings beyond a bound that make a violation (and back inside that end it).
    pub persist: usize,
    pub faults: FaultConfig,
    pub drops: DropConfig,
    pub incidents: IncidentConfig,
    pub transients: TransientConfig,
    pub drift: DriftConfig,
}

impl Default for PressureConfig {
    fn default() -> Self {
        Self {
            persist: 3,
            // A pressure spike departs by a metre at least: a quiet night's step noise would
            // otherwise make the first morning's demand step (half a metre at a point, within
            // five minutes) a "spike".
            faults: FaultConfig {
                spike_min_jump: 1.0,
                ..FaultConfig::default()
            },
            drops: DropConfig::default(),
            incidents: IncidentConfig::default(),
            transients: TransientConfig::default(),
            drift: DriftConfig::default(),
        }
    }
}

/// Compliance of one scope (a point, a zone or the network) on one local day.
#[derive(Debug, Clone, PartialEq)]
pub struct ComplianceDay {
    /// `point`, `zone` or `network`.
    pub scope: &'static str,
    /// The sensor, DMA or `network`.
    pub id: String,
    pub date: NaiveDate,
    /// Trusted readings (faulted ones are not counted).
    pub readings: usize,
    /// Readings inside the band.
    pub qualified: usize,
    /// Trusted readings left out by a declared exclusion window (counted in neither).
    pub excluded: usize,
}

impl ComplianceDay {
    /// Qualified ÷ readings × 100, `None` without readings.
    pub fn percent(&self) -> Option<f64> {
        (self.readings > 0).then(|| 100.0 * self.qualified as f64 / self.readings as f64)
    }
}

/// The result of [`analyze`].
#[derive(Debug, Clone, Default)]
pub struct PressureReport {
    /// `pressure_low`, `pressure_high` and `sensor_fault` events by detection time.
    pub events: Vec<Event>,
    /// Points, then zones, then the network; each by id and date.
    pub days: Vec<ComplianceDay>,
    /// Pressure drops in areas with balance meters that their inflow did not confirm.
    pub unconfirmed_drops: usize,
}

/// The band of a pressure sensor: (lower, upper) in m.
fn band(network: &Network, sensor: &waterline_core::Sensor) -> (f64, Option<f64>) {
    let dma = sensor.dma.as_ref().and_then(|d| network.dma(d));
    (
        dma.and_then(|d| d.min_service_pressure_m)
            .unwrap_or(DEFAULT_MIN_SERVICE_PRESSURE_M),
        dma.and_then(|d| d.max_service_pressure_m),
    )
}

/// Runs the band checks, drops and the compliance rate over every pressure sensor of the
/// network (the drops checked against their DMA's inflow).
pub fn analyze(
    readings: &Readings,
    network: &Network,
    cfg: &PressureConfig,
) -> PolarsResult<PressureReport> {
    analyze_with(readings, network, cfg, &[])
}

/// [`analyze`] with declared windows: readings of a sensor inside an exclusion window of the
/// sensor or of its DMA are left out of the compliance rate (counted as `excluded`); events
/// are raised as usual.
pub fn analyze_with(
    readings: &Readings,
    network: &Network,
    cfg: &PressureConfig,
    windows: &[DeclaredWindow],
) -> PolarsResult<PressureReport> {
    let sensors: Vec<&waterline_core::Sensor> = network
        .sensors
        .values()
        .filter(|s| s.kind == SensorKind::Pressure)
        .collect();
    let clock = match readings.time_range() {
        Some((t0, t1)) => LocalClock::spanning(network.timezone, t0, t1),
        None => LocalClock::new(network.timezone),
    };
    let common = zone_jumps::common_jumps(readings, network);
    let results = crate::parallel::map_in_parallel(&sensors, |s| {
        let jumps = common.get(&s.id).map_or(&[][..], Vec::as_slice);
        let excluded = exclusions(windows, s);
        analyze_sensor(readings, network, s, cfg, &excluded, jumps, &clock)
    });
    let mut report = PressureReport::default();
    let mut zones: BTreeMap<(String, NaiveDate), Counts> = BTreeMap::new();
    let mut whole: BTreeMap<NaiveDate, Counts> = BTreeMap::new();
    for (sensor, result) in sensors.iter().zip(results) {
        let Some(result) = result else { continue };
        report.events.extend(result.events);
        let zone = sensor
            .dma
            .as_ref()
            .map_or_else(|| "-".to_owned(), |d| d.to_string());
        for (date, c) in result.days {
            report
                .days
                .push(c.day("point", sensor.id.to_string(), date));
            zones.entry((zone.clone(), date)).or_default().add(c);
            whole.entry(date).or_default().add(c);
        }
    }
    for ((zone, date), c) in zones {
        report.days.push(c.day("zone", zone, date));
    }
    for (date, c) in whole {
        report.days.push(c.day("network", "network".into(), date));
    }
    if let Some((t0, t1)) = readings.time_range() {
        report.events.extend(pressure_drift::detect(
            readings, network, &cfg.drift, t0, t1,
        )?);
        let inflows = dma_balance_flows(readings, network, t0, t1, 15 * 60_000)?;
        let checked = drop_incidents::check_drops(
            std::mem::take(&mut report.events),
            readings,
            network,
            &inflows,
            &cfg.incidents,
        );
        report.events = checked.events;
        report.unconfirmed_drops = checked.unconfirmed;
        pressure_drift::retract_burst_moved(&mut report.events);
    }
    report
        .events
        .sort_by(|a, b| (a.detected_at, a.kind.as_str()).cmp(&(b.detected_at, b.kind.as_str())));
    Ok(report)
}

/// One scope's counts of one day.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    readings: usize,
    qualified: usize,
    excluded: usize,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.readings += o.readings;
        self.qualified += o.qualified;
        self.excluded += o.excluded;
    }

    fn day(self, scope: &'static str, id: String, date: NaiveDate) -> ComplianceDay {
        ComplianceDay {
            scope,
            id,
            date,
            readings: self.readings,
            qualified: self.qualified,
            excluded: self.excluded,
        }
    }
}

/// One point's counts per local day number, in a vector from the first day seen.
#[derive(Debug, Default)]
struct DayCounts {
    first: i64,
    days: Vec<Option<Counts>>,
}

impl DayCounts {
    /// The counts of `day`, created empty when the day is new.
    fn get(&mut self, day: i64) -> &mut Counts {
        if self.days.is_empty() {
            self.first = day;
        }
        if day < self.first {
            let before = (self.first - day) as usize;
            self.days.splice(0..0, std::iter::repeat_n(None, before));
            self.first = day;
        }
        let i = (day - self.first) as usize;
        if i >= self.days.len() {
            self.days.resize(i + 1, None);
        }
        self.days[i].get_or_insert_with(Counts::default)
    }

    fn by_date(self) -> BTreeMap<NaiveDate, Counts> {
        let first = self.first;
        self.days
            .into_iter()
            .enumerate()
            .filter_map(|(i, c)| Some((date_of_day(first + i as i64), c?)))
            .collect()
    }
}

/// The exclusion windows that apply to `sensor` (its own and its DMA's), as UTC ms spans.
fn exclusions(windows: &[DeclaredWindow], sensor: &waterline_core::Sensor) -> Vec<(i64, i64)> {
    windows
        .iter()
        .filter(|w| w.kind == WindowKind::Exclusion)
        .filter(|w| match &w.subject {
            WindowSubject::Sensor(id) => id == &sensor.id,
            WindowSubject::Dma(d) => sensor.dma.as_ref() == Some(d),
            WindowSubject::Station(_) => false,
        })
        .map(|w| (w.from.timestamp_millis(), w.to.timestamp_millis()))
        .collect()
}

/// What one sensor's pass found: its events and its counts per local day.
struct SensorResult {
    events: Vec<Event>,
    days: BTreeMap<NaiveDate, Counts>,
}

/// One pressure sensor's pass: faults, band, drops and daily counts (`None`: no readings).
fn analyze_sensor(
    readings: &Readings,
    network: &Network,
    sensor: &waterline_core::Sensor,
    cfg: &PressureConfig,
    excluded: &[(i64, i64)],
    zone_jumps: &[EpochMillis],
    clock: &LocalClock,
) -> Option<SensorResult> {
    let series = readings.series(&sensor.id);
    if series.is_empty() {
        return None;
    }
    let mut clock = clock.clone();
    let mut events = Vec::new();
    let (low, high) = band(network, sensor);
    let mut spec = SignalSpec::from_sensor(sensor);
    spec.set_points = std::iter::once(SetPoint {
        side: Side::Low,
        tier: Tier::Alarm,
        value: low,
    })
    .chain(high.map(|value| SetPoint {
        side: Side::High,
        tier: Tier::Alarm,
        value,
    }))
    .collect();
    let mut faults = FaultTracker::new(
        spec.clone(),
        cfg.faults,
        median_interval(series.times).unwrap_or(60_000),
    );
    let mut bounds = ThresholdTracker::new(&spec, cfg.persist);
    // Counts per local day number (readings come in time order), `None` for days without.
    let mut days = DayCounts::default();
    // The day and verdict of the newest counted reading, in case it turns out a spike
    // (`None` as the verdict: it was excluded).
    let mut last_counted: Option<(i64, Option<bool>)> = None;
    let mut drops = DropDetector::new(spec.resolution, cfg.drops);
    // The drop detector sees a reading one reading later, once it is known not a spike
    // (with its local day and minute).
    let mut held: Option<(i64, f64, (i64, u32))> = None;
    for (&t, &v) in series.times.iter().zip(series.values) {
        // A jump the zone's other sensors made too is the water: no spike, no floor (still an
        // impossible value or a flatline), and no burst's step for the drop detector either.
        let zone_jump = zone_jumps.binary_search(&t).is_ok();
        let verdict = if zone_jump {
            faults.step_hydraulic(t, v)
        } else {
            faults.step(t, Some(v))
        };
        if verdict.retract_previous {
            held = None;
            if let Some((date, verdict)) = last_counted.take() {
                let day = days.get(date);
                match verdict {
                    Some(ok) => {
                        day.readings -= 1;
                        day.qualified -= usize::from(ok);
                    }
                    None => day.excluded -= 1,
                }
            }
        }
        if let Some((th, xh, local)) = held.take() {
            drops.step(local, th, xh);
        }
        let Some(x) = verdict.value else {
            bounds.interrupt();
            last_counted = None;
            continue;
        };
        bounds.step(t, x);
        let local = clock.day_and_minute(t);
        held = (!zone_jump).then_some((t, x, local));
        let ok = x >= low && high.is_none_or(|h| x <= h);
        let date = local.0;
        let day = days.get(date);
        if excluded.iter().any(|&(a, b)| a <= t && t < b) {
            day.excluded += 1;
            last_counted = Some((date, None));
        } else {
            day.readings += 1;
            day.qualified += usize::from(ok);
            last_counted = Some((date, Some(ok)));
        }
    }
    if let Some((th, xh, local)) = held {
        drops.step(local, th, xh);
    }
    drops.finish();
    faults.finish();
    bounds.finish();
    let dma = sensor.dma.clone();
    for c in &bounds.crossings {
        let (kind, side, severity) = match c.set_point.side {
            Side::Low => (EventKind::PressureLow, "below the minimum", Severity::Alarm),
            Side::High => (
                EventKind::PressureHigh,
                "above the maximum",
                Severity::Warning,
            ),
        };
        let mut e = Event::new(kind, utc(c.start), utc(c.detected_at));
        e.end = c.end.map(utc);
        e.sensor = Some(sensor.id.clone());
        e.dma = dma.clone();
        e.severity = Some(severity);
        e.value = Some(c.value);
        e.confidence = Some(1.0);
        e.message = Some(format!(
            "pressure {:.2} m {side} service pressure {} m (worst {:.2} m)",
            c.value, c.set_point.value, c.worst
        ));
        events.push(e);
    }
    events.extend(drops.drops.iter().map(|d| d.event(sensor)));
    for mut e in transients::detect(
        &sensor.id,
        series.times,
        series.values,
        high,
        &cfg.transients,
    ) {
        e.dma = dma.clone();
        events.push(e);
    }
    for ep in &faults.episodes {
        let mut e = ep.event(&spec);
        e.dma = dma.clone();
        events.push(e);
    }
    Some(SensorResult {
        events,
        days: days.by_date(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_counts_keep_the_days_seen_in_any_order() {
        let mut days = DayCounts::default();
        // 2019-01-02 is day 17,898; a reading of the day before arrives late.
        days.get(17_898).readings += 2;
        days.get(17_901).qualified += 1;
        days.get(17_897).excluded += 1;
        days.get(17_898).readings += 1;
        let by_date: Vec<(String, usize, usize, usize)> = days
            .by_date()
            .into_iter()
            .map(|(d, c)| (d.to_string(), c.readings, c.qualified, c.excluded))
            .collect();
        assert_eq!(
            by_date,
            [
                ("2019-01-01".to_owned(), 0, 0, 1),
                ("2019-01-02".to_owned(), 3, 0, 0),
                ("2019-01-05".to_owned(), 0, 1, 0),
            ]
        );
    }
}
