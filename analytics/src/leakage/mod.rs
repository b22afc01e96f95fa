//! Leakage analytics per DMA: daily and monthly KPIs ([`days`], [`months`]), causal leak and
//! burst detection ([`detect`]) and the LeakDB reference rule ([`baseline`]).
//!
//! [`analyze`] runs the whole chain over a [`Readings`] table: polars builds the regular
//! balance-flow and pressure grids, then each DMA's days and detector run in time order (the
//! DMAs shared out over the cores).

pub mod baseline;
pub mod days;
pub mod detect;
pub mod months;

use std::collections::HashMap;

use chrono::Datelike;
use polars::prelude::PolarsResult;
use waterline_core::{Event, Network, SensorId, SensorKind};

use crate::clock::{LocalClock, weekday_of_day};
use crate::consumption::Register;
use crate::grid::{dma_balance_flows, sensor_means};
use crate::readings::Readings;

pub use days::{DayConfig, DmaDay, NightUseSource};
pub use detect::DetectorConfig;
pub use months::{DayFigures, DmaMonth, months_of};

/// Settings of the leakage analysis.
#[derive(Debug, Clone, Copy)]
pub struct LeakageConfig {
    /// Bucket of the balance-flow grid, minutes.
    pub step_minutes: i64,
    pub days: DayConfig,
    pub detector: DetectorConfig,
}

impl Default for LeakageConfig {
    fn default() -> Self {
        LeakageConfig {
            step_minutes: 15,
            days: DayConfig::default(),
            detector: DetectorConfig::default(),
        }
    }
}

/// Everything the leakage analysis found.
#[derive(Debug, Clone, Default)]
pub struct LeakageReport {
    pub days: Vec<DmaDay>,
    pub months: Vec<DmaMonth>,
    /// `leak` and `burst` events, ordered by detection time.
    pub events: Vec<Event>,
}

/// Runs the leakage analysis over all DMAs of the network.
pub fn analyze(
    readings: &Readings,
    network: &Network,
    cfg: &LeakageConfig,
) -> PolarsResult<LeakageReport> {
    let mut report = LeakageReport::default();
    let Some((t0, t1)) = readings.time_range() else {
        return Ok(report);
    };
    let step = cfg.step_minutes.max(1) * 60_000;
    let inflows = dma_balance_flows(readings, network, t0, t1, step)?;

    // Pressure and flow-type customer meters on the same grid; registers for volume meters.
    let mut grid_sensors: Vec<SensorId> = Vec::new();
    let mut registers: HashMap<SensorId, Register> = HashMap::new();
    for dma in &network.dmas {
        grid_sensors.extend(dma.azp_sensor.iter().cloned());
        for m in &dma.customer_meters {
            match network.sensor(m).map(|s| s.kind) {
                Some(SensorKind::Volume) => {
                    registers
                        .entry(m.clone())
                        .or_insert_with(|| Register::from_reads(readings.series(m)));
                }
                _ => grid_sensors.push(m.clone()),
            }
        }
    }
    grid_sensors.sort();
    grid_sensors.dedup();
    let grids = sensor_means(readings, &grid_sensors, t0, t1, step)?;

    // Each DMA's days and detector are independent of the others': one DMA per core at a
    // time, the results in the network's order.
    let zones: Vec<(&waterline_core::Dma, &crate::grid::Grid)> =
        network.dmas.iter().zip(&inflows).collect();
    let zone_refs: Vec<&(&waterline_core::Dma, &crate::grid::Grid)> = zones.iter().collect();
    let per_zone = crate::parallel::map_in_parallel(&zone_refs, |&(dma, inflow)| {
        let inputs = days::DmaInputs {
            dma,
            inflow,
            azp: dma.azp_sensor.as_ref().and_then(|s| grids.get(s)),
            registers: dma
                .customer_meters
                .iter()
                .filter_map(|m| registers.get(m))
                .collect(),
            meter_flows: dma
                .customer_meters
                .iter()
                .filter_map(|m| grids.get(m))
                .collect(),
        };
        let dma_days = days::dma_days(&inputs, network.timezone, &cfg.days);
        let events = run_detector(dma, inflow, &dma_days, network, cfg);
        let months = months::dma_months(dma, &dma_days);
        (dma_days, events, months)
    });
    for (dma_days, events, months) in per_zone {
        report.events.extend(events);
        report.months.extend(months);
        report.days.extend(dma_days);
    }
    report.events.sort_by_key(|e| e.detected_at);
    Ok(report)
}

/// Feeds one DMA's buckets and nights, merged in time order, through its detector.
fn run_detector(
    dma: &waterline_core::Dma,
    inflow: &crate::grid::Grid,
    days: &[DmaDay],
    network: &Network,
    cfg: &LeakageConfig,
) -> Vec<Event> {
    let slots = (86_400_000 / inflow.step).max(1) as usize;
    let mut det = detect::DmaDetector::new(dma.id.clone(), slots, cfg.detector);
    let mut clock = LocalClock::new(network.timezone);
    let nights: Vec<detect::Night> = days
        .iter()
        .filter_map(|d| {
            Some(detect::Night {
                end: d.night_end,
                mnf_start: d.mnf_start?,
                flow: d.nnf_m3h?,
                weekday: d.date.weekday().num_days_from_monday() as usize,
            })
        })
        .collect();
    let mut next_night = 0;
    for i in 0..inflow.len() {
        let start = inflow.time(i);
        let end = start + inflow.step;
        let (day, minute) = clock.day_and_minute(start);
        let minute = i64::from(minute);
        det.bucket(detect::Bucket {
            start,
            end,
            slot: (minute * 60_000 / inflow.step) as usize % slots,
            weekday: weekday_of_day(day) as usize,
            flow: inflow.values[i],
        });
        while next_night < nights.len() && nights[next_night].end <= end {
            det.night(nights[next_night]);
            next_night += 1;
        }
    }
    det.events()
}

/// The LeakDB reference rule over the days of every DMA.
pub fn baseline_events(network: &Network, days: &[DmaDay], gamma: f64) -> Vec<Event> {
    let mut out = Vec::new();
    for dma in &network.dmas {
        let mine: Vec<DmaDay> = days
            .iter()
            .filter(|d| d.dma == dma.id.as_str())
            .cloned()
            .collect();
        out.extend(baseline::leakdb_mnf(&dma.id, &mine, gamma));
    }
    out.sort_by_key(|e| e.detected_at);
    out
}
