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
//!   qualified nor as a reading.
//! - `pressure_low` / `pressure_high`: a sustained band violation — three consecutive trusted
//!   readings beyond the bound (a lone spike never alarms); it ends with the first of three
//!   consecutive readings back inside by more than the resolution.
//! - Compliance: qualified readings ÷ trusted readings, per point and local day, and summed per
//!   zone and for the network (every point weighs by its readings, as the national rule counts
//!   readings). Declared-event exclusions are not supported yet.
//!
//! - `pressure_drop`: a sudden drop against the sensor's own time-of-day baseline
//!   ([`crate::pressure_drop`]), fed each trusted reading once the next one shows it was no
//!   spike, then checked against the DMA's inflow ([`crate::drop_incidents`]): reported when
//!   the inflow rose with it, the drops of several sensors at one burst as one incident.
//!
//! Not yet: `transient` summaries from high-rate loggers.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use polars::prelude::PolarsResult;
use waterline_core::{Event, EventKind, Network, SensorKind, Severity};

use crate::clock::LocalClock;
use crate::drop_incidents::{self, IncidentConfig};
use crate::grid::dma_balance_flows;
use crate::pressure_drop::{DropConfig, DropDetector};
use crate::quality::faults::{FaultConfig, FaultTracker};
use crate::quality::signals::{SetPoint, Side, SignalSpec, Tier};
use crate::quality::station::median_interval;
use crate::quality::thresholds::ThresholdTracker;
use crate::quality::utc;
use crate::readings::Readings;

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
}

impl Default for PressureConfig {
    fn default() -> Self {
        Self {
            persist: 3,
            faults: FaultConfig::default(),
            drops: DropConfig::default(),
            incidents: IncidentConfig::default(),
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
    let sensors: Vec<&waterline_core::Sensor> = network
        .sensors
        .values()
        .filter(|s| s.kind == SensorKind::Pressure)
        .collect();
    let results = per_sensor_in_parallel(&sensors, |s| analyze_sensor(readings, network, s, cfg));
    let mut report = PressureReport::default();
    let mut zones: BTreeMap<(String, NaiveDate), (usize, usize)> = BTreeMap::new();
    let mut whole: BTreeMap<NaiveDate, (usize, usize)> = BTreeMap::new();
    for (sensor, result) in sensors.iter().zip(results) {
        let Some(result) = result else { continue };
        report.events.extend(result.events);
        let zone = sensor
            .dma
            .as_ref()
            .map_or_else(|| "-".to_owned(), |d| d.to_string());
        for (date, (n, q)) in result.days {
            report.days.push(ComplianceDay {
                scope: "point",
                id: sensor.id.to_string(),
                date,
                readings: n,
                qualified: q,
            });
            let z = zones.entry((zone.clone(), date)).or_default();
            z.0 += n;
            z.1 += q;
            let w = whole.entry(date).or_default();
            w.0 += n;
            w.1 += q;
        }
    }
    for ((zone, date), (n, q)) in zones {
        report.days.push(ComplianceDay {
            scope: "zone",
            id: zone,
            date,
            readings: n,
            qualified: q,
        });
    }
    for (date, (n, q)) in whole {
        report.days.push(ComplianceDay {
            scope: "network",
            id: "network".into(),
            date,
            readings: n,
            qualified: q,
        });
    }
    if let Some((t0, t1)) = readings.time_range() {
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
    }
    report
        .events
        .sort_by(|a, b| (a.detected_at, a.kind.as_str()).cmp(&(b.detected_at, b.kind.as_str())));
    Ok(report)
}

/// What one sensor's pass found: its events and its (readings, qualified) per local day.
struct SensorResult {
    events: Vec<Event>,
    days: BTreeMap<NaiveDate, (usize, usize)>,
}

/// Runs `f` on every sensor, the sensors shared out over the machine's cores (each sensor's
/// pass is independent and sequential); the results come back in the sensors' order.
fn per_sensor_in_parallel<'a, T: Send>(
    sensors: &[&'a waterline_core::Sensor],
    f: impl Fn(&'a waterline_core::Sensor) -> T + Sync,
) -> Vec<T> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(sensors.len())
        .max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut out: Vec<(usize, T)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(s) = sensors.get(i) else { break };
                        done.push((i, f(s)));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// One pressure sensor's pass: faults, band, drops and daily counts (`None`: no readings).
fn analyze_sensor(
    readings: &Readings,
    network: &Network,
    sensor: &waterline_core::Sensor,
    cfg: &PressureConfig,
) -> Option<SensorResult> {
    let series = readings.series(&sensor.id);
    if series.is_empty() {
        return None;
    }
    let mut clock = LocalClock::new(network.timezone);
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
    let mut days: BTreeMap<NaiveDate, (usize, usize)> = BTreeMap::new();
    // The day and verdict of the newest counted reading, in case it turns out a spike.
    let mut last_counted: Option<(NaiveDate, bool)> = None;
    let mut drops = DropDetector::new(spec.resolution, cfg.drops);
    // The drop detector sees a reading one reading later, once it is known not a spike.
    let mut held: Option<(i64, f64)> = None;
    for (&t, &v) in series.times.iter().zip(series.values) {
        let verdict = faults.step(t, Some(v));
        if verdict.retract_previous {
            held = None;
            if let Some((date, ok)) = last_counted.take()
                && let Some(day) = days.get_mut(&date)
            {
                day.0 -= 1;
                day.1 -= usize::from(ok);
            }
        }
        if let Some((th, xh)) = held.take() {
            drops.step(&mut clock, th, xh);
        }
        let Some(x) = verdict.value else {
            bounds.interrupt();
            last_counted = None;
            continue;
        };
        bounds.step(t, x);
        held = Some((t, x));
        let ok = x >= low && high.is_none_or(|h| x <= h);
        let date = clock.date_and_minute(t).0;
        let day = days.entry(date).or_default();
        day.0 += 1;
        day.1 += usize::from(ok);
        last_counted = Some((date, ok));
    }
    if let Some((th, xh)) = held {
        drops.step(&mut clock, th, xh);
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
    for ep in &faults.episodes {
        let mut e = ep.event(&spec);
        e.dma = dma.clone();
        events.push(e);
    }
    Some(SensorResult { events, days })
}
