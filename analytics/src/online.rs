//! The online analytics job: the same detectors as `waterline analyze`, run by the service on
//! what the store holds, writing events and daily KPIs back to it.
//!
//! One run covers a sliding [`Window`]: from the local midnight `lookback_days` before `now` up
//! to `now`. It has three steps, split so that the caller can run the CPU-bound middle one off
//! its async runtime:
//!
//! 1. [`load`]: the readings of every sensor of the network in the window, from the store.
//! 2. [`analyse`]: leakage (`leak`, `burst`, daily DMA figures), pressure (`pressure_low`,
//!    `pressure_high`, `pressure_drop`, instrument faults, daily compliance) and water quality
//!    (`quality_event`, `quality_threshold`, instrument faults). Detection is causal, so an
//!    event found in an earlier run is found again, and [`record`] keeps it once.
//!    It also recommends PRV set points ([`crate::prv`]) from the whole window.
//! 3. [`record`]: detections through [`Store::record_detections`] (a repeated detection updates
//!    the stored event's course and never its workflow state), KPIs through
//!    [`Store::upsert_kpis`]. The window's first day is a warm-up (meter registers need the
//!    read before the day, baselines need history) and its KPIs are not written. Every run
//!    rewrites the KPIs of the other days, so with the default 35-day look-back a day's figures
//!    are recomputed for 34 days after it, and late batches correct them. PRV recommendations
//!    replace the stored ones ([`Store::replace_prv_advice`]). Last, the monthly KPIs of every
//!    month the window touches are aggregated from the daily KPIs in the store (so a month is
//!    whole although a run sees only its window) and replaced ([`Store::upsert_monthly_kpis`]).
//!
//! [`run_once`] does all three in order.

use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use waterline_core::{DeclaredWindow, Event, Network};
use waterline_store::{
    DailyKpi, DetectionOutcome, KpiQuery, KpiScope, MonthlyKpi, PrvAdvice, Store, StoreError,
};

use crate::Readings;
use crate::leakage::{self, DayFigures, DmaDay, LeakageConfig};
use crate::pressure::{self, ComplianceDay, PressureConfig};
use crate::prv::{self, PrvConfig, PrvReport};
use crate::quality::{self, LabSample, QualityConfig};

/// Settings of the online job.
#[derive(Debug, Clone, Copy)]
pub struct OnlineConfig {
    /// Days of history each run analyses (the detectors' baselines need weeks).
    pub lookback_days: u32,
    pub leakage: LeakageConfig,
    pub pressure: PressureConfig,
    pub quality: QualityConfig,
    pub prv: PrvConfig,
}

impl Default for OnlineConfig {
    fn default() -> Self {
        Self {
            lookback_days: 35,
            leakage: LeakageConfig::default(),
            pressure: PressureConfig::default(),
            quality: QualityConfig::default(),
            prv: PrvConfig::default(),
        }
    }
}

/// The span of one run: `[from, to)`, `from` a local midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The first local day whose KPIs are written (the day after the warm-up day).
    pub first_day: NaiveDate,
}

impl Window {
    /// The window of a run at `now` looking back `lookback_days` local days.
    pub fn ending_at(tz: Tz, now: DateTime<Utc>, lookback_days: u32) -> Window {
        let today = now.with_timezone(&tz).date_naive();
        let start_day = today - TimeDelta::days(i64::from(lookback_days.max(1)));
        Window {
            from: local_midnight(tz, start_day).min(now),
            to: now,
            first_day: start_day.succ_opt().unwrap_or(start_day),
        }
    }
}

/// The UTC instant of `day`'s first local moment (the earlier one when midnight repeats; the
/// first existing minute when a DST change skips it).
fn local_midnight(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    let mut t = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    for _ in 0..180 {
        if let Some(local) = tz.from_local_datetime(&t).earliest() {
            return local.with_timezone(&Utc);
        }
        t += TimeDelta::minutes(1);
    }
    Utc.from_utc_datetime(&t)
}

/// What one run analyses.
#[derive(Debug)]
pub struct Inputs {
    pub readings: Readings,
    /// The declared windows in force that overlap the run's window.
    pub windows: Vec<DeclaredWindow>,
    /// Lab grab samples taken at stations in the window, as analyser checks.
    pub samples: Vec<LabSample>,
}

/// Reads every network sensor's readings in the window (sensors the store has never seen
/// have no readings yet and are left out), the declared windows overlapping it and the grab
/// samples taken in it (a result counts from when it was entered).
pub async fn load(store: &Store, network: &Network, window: Window) -> Result<Inputs, StoreError> {
    let mut rows = Vec::new();
    for id in network.sensors.keys() {
        let points = match store.readings(id, window.from, window.to, i64::MAX).await {
            Ok(p) => p,
            Err(StoreError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        rows.extend(
            points
                .into_iter()
                .map(|p| (id.clone(), p.time.timestamp_millis(), p.value)),
        );
    }
    let windows = store
        .declared_windows(window.from, window.to, None)
        .await?
        .into_iter()
        .map(|w| w.window)
        .collect();
    let samples = store
        .station_samples(window.from, window.to, None)
        .await?
        .into_iter()
        .filter_map(|s| LabSample::from_grab(s.station, &s.sample, s.entered_at))
        .collect();
    Ok(Inputs {
        readings: Readings::from_rows(network, rows),
        windows,
        samples,
    })
}

/// What one run found.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    /// Every event of the window, by detection time.
    pub events: Vec<Event>,
    /// Daily KPIs of the days after the warm-up day.
    pub kpis: Vec<DailyKpi>,
    /// PRV set-point recommendations from the whole window.
    pub prv: PrvReport,
    /// Readings analysed.
    pub readings: usize,
}

/// Runs every detector and KPI computation over the window's readings (CPU-bound).
pub fn analyse(
    inputs: &Inputs,
    network: &Network,
    cfg: &OnlineConfig,
    window: Window,
) -> Result<Findings, polars::error::PolarsError> {
    let readings = &inputs.readings;
    let mut found = Findings {
        readings: readings.len(),
        ..Findings::default()
    };
    let leaks = leakage::analyze(readings, network, &cfg.leakage)?;
    let pressure = pressure::analyze_with(readings, network, &cfg.pressure, &inputs.windows)?;
    let quality = quality::analyze_with(
        readings,
        network,
        &cfg.quality,
        &inputs.windows,
        &inputs.samples,
    );
    found.prv = prv::recommend(readings, network, &prv::night_flows(&leaks.days), &cfg.prv)?;
    for d in leaks.days.iter().filter(|d| d.date >= window.first_day) {
        found.kpis.extend(dma_day_kpis(d));
    }
    for d in pressure.days.iter().filter(|d| d.date >= window.first_day) {
        found.kpis.extend(compliance_kpis(d));
    }
    found.events.extend(leaks.events);
    found.events.extend(pressure.events);
    // A burst seen in both the inflow and the pressures is one incident: the two events name
    // each other.
    crate::drop_incidents::link_with_bursts(&mut found.events);
    found.events.extend(quality.events);
    found.events.sort_by_key(|e| e.detected_at);
    Ok(found)
}

/// The KPI names of a DMA day (docs/api.md lists them with their units).
pub const DMA_DAY_METRICS: [&str; 16] = [
    "inflow_completeness",
    "siv_m3",
    "consumption_m3",
    "consumption_completeness",
    "nrw_m3",
    "nrw_percent",
    "mnf_m3h",
    "legitimate_night_use_m3h",
    "nnf_m3h",
    "hdf_hours",
    "real_losses_m3",
    "azp_mean_m",
    "uarl_m3",
    "ili",
    "nnf_trend_7d_m3h_per_day",
    "nnf_trend_30d_m3h_per_day",
];

fn dma_day_kpis(d: &DmaDay) -> impl Iterator<Item = DailyKpi> + '_ {
    let values = [
        Some(d.inflow_completeness),
        d.siv_m3,
        d.consumption_m3,
        d.consumption_completeness,
        d.nrw_m3,
        d.nrw_percent,
        d.mnf_m3h,
        Some(d.legitimate_night_use_m3h),
        d.nnf_m3h,
        Some(d.hdf_hours),
        d.real_losses_m3,
        d.azp_mean_m,
        d.uarl_m3,
        d.ili,
        d.nnf_trend_7d,
        d.nnf_trend_30d,
    ];
    DMA_DAY_METRICS
        .into_iter()
        .zip(values)
        .map(|(metric, value)| DailyKpi {
            scope: KpiScope::Dma,
            subject: d.dma.clone(),
            day: d.date,
            metric: metric.into(),
            value: value.filter(|v| v.is_finite()),
        })
}

fn compliance_kpis(d: &ComplianceDay) -> [DailyKpi; 4] {
    let scope = match d.scope {
        "point" => KpiScope::Point,
        "zone" => KpiScope::Zone,
        _ => KpiScope::Network,
    };
    let kpi = |metric: &str, value: Option<f64>| DailyKpi {
        scope,
        subject: d.id.clone(),
        day: d.date,
        metric: metric.into(),
        value,
    };
    [
        kpi("compliance_percent", d.percent()),
        kpi("compliance_readings", Some(d.readings as f64)),
        kpi("compliance_qualified", Some(d.qualified as f64)),
        kpi("compliance_excluded", Some(d.excluded as f64)),
    ]
}

/// What writing one run's findings did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded {
    pub events: DetectionOutcome,
    pub kpis: u64,
    /// Monthly KPI values written (the months the window touches, from the stored days).
    pub monthly_kpis: u64,
    /// PRV recommendations stored (with those saying why there is none).
    pub prv_advice: usize,
}

/// Writes a run's findings: detections reconciled with stored events, daily KPIs replaced,
/// then the monthly KPIs of the months the window touches aggregated from the stored days.
pub async fn record(
    store: &Store,
    network: &Network,
    found: &Findings,
    window: Window,
    now: DateTime<Utc>,
) -> Result<Recorded, StoreError> {
    let advice = prv_advice(&found.prv, now);
    let events = store.record_detections(&found.events).await?;
    let kpis = store.upsert_kpis(&found.kpis, now).await?;
    store.replace_prv_advice(&advice).await?;
    let monthly = monthly_kpis(store, network, window).await?;
    let monthly_kpis = store.upsert_monthly_kpis(&monthly, now).await?;
    Ok(Recorded {
        events,
        kpis,
        monthly_kpis,
        prv_advice: advice.len(),
    })
}

/// The monthly KPI names of a DMA (docs/api.md lists them).
pub const DMA_MONTH_METRICS: [&str; 9] = [
    "days",
    "days_balanced",
    "siv_m3",
    "consumption_m3",
    "comprehensive_leakage_percent",
    "assessed_leakage_percent",
    "real_losses_m3",
    "uarl_m3",
    "ili",
];

/// Each DMA's months from the first day the window writes to its end, aggregated from the
/// daily KPIs in the store (earlier runs wrote the month's first days).
async fn monthly_kpis(
    store: &Store,
    network: &Network,
    window: Window,
) -> Result<Vec<MonthlyKpi>, StoreError> {
    let first = window.first_day.with_day(1).unwrap_or(window.first_day);
    let last = window.to.with_timezone(&network.timezone).date_naive();
    let mut out = Vec::new();
    for dma in &network.dmas {
        let stored = store
            .kpis(&KpiQuery {
                scope: KpiScope::Dma,
                subject: Some(dma.id.to_string()),
                metric: None,
                from: first,
                to: last,
                limit: 1_000_000,
            })
            .await?;
        let mut days: BTreeMap<NaiveDate, DayFigures> = BTreeMap::new();
        for k in stored {
            let f = days.entry(k.day).or_insert_with(|| DayFigures {
                date: k.day,
                ..DayFigures::default()
            });
            match k.metric.as_str() {
                "siv_m3" => f.siv_m3 = k.value,
                "consumption_m3" => f.consumption_m3 = k.value,
                "real_losses_m3" => f.real_losses_m3 = k.value,
                "uarl_m3" => f.uarl_m3 = k.value,
                "azp_mean_m" => f.azp_mean_m = k.value,
                _ => {}
            }
        }
        let figures: Vec<DayFigures> = days.into_values().collect();
        for m in leakage::months_of(dma, &figures) {
            let Ok(month) = NaiveDate::parse_from_str(&format!("{}-01", m.month), "%Y-%m-%d")
            else {
                continue;
            };
            let values = [
                Some(m.days as f64),
                Some(m.days_balanced as f64),
                Some(m.siv_m3),
                m.consumption_m3,
                m.comprehensive_leakage_percent,
                m.assessed_leakage_percent,
                m.real_losses_m3,
                m.uarl_m3,
                m.ili,
            ];
            for (metric, value) in DMA_MONTH_METRICS.into_iter().zip(values) {
                let note = (metric == "ili" && !m.ili_notes.is_empty()).then(|| {
                    format!(
                        "outside the UARL formula's range: {}",
                        m.ili_notes.join("; ")
                    )
                });
                out.push(MonthlyKpi {
                    scope: KpiScope::Dma,
                    subject: m.dma.clone(),
                    month,
                    metric: metric.into(),
                    value: value.filter(|v| v.is_finite()),
                    note,
                });
            }
        }
    }
    Ok(out)
}

/// The report as the store keeps it: one body per valve, a recommendation or a `reason`.
fn prv_advice(report: &PrvReport, now: DateTime<Utc>) -> Vec<PrvAdvice> {
    let advice = |prv: &str, dma: &str, body: serde_json::Value| PrvAdvice {
        prv: prv.to_owned(),
        dma: dma.to_owned(),
        computed_at: now,
        body,
    };
    let recommended = report
        .recommendations
        .iter()
        .map(|r| advice(&r.prv, &r.dma, serde_json::to_value(r).unwrap_or_default()));
    let skipped = report
        .skipped
        .iter()
        .map(|s| advice(&s.prv, &s.dma, serde_json::to_value(s).unwrap_or_default()));
    recommended.chain(skipped).collect()
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum OnlineError {
    #[error("analytics run: {0}")]
    Store(#[from] StoreError),
    #[error("analytics run: computation failed: {0}")]
    Compute(#[from] polars::error::PolarsError),
    /// The thread running the analysis panicked or was cancelled.
    #[error("analytics run: the analysis task failed: {0}")]
    Task(String),
}

/// One whole run and how long each step took.
#[derive(Debug, Clone, Copy)]
pub struct RunReport {
    pub window: Window,
    pub readings: usize,
    pub recorded: Recorded,
    pub load: Duration,
    pub analyse: Duration,
    pub record: Duration,
}

/// Loads, analyses and records one window ending at `now`, analysing on the calling thread.
pub async fn run_once(
    store: &Store,
    network: &Network,
    cfg: &OnlineConfig,
    now: DateTime<Utc>,
) -> Result<RunReport, OnlineError> {
    let window = Window::ending_at(network.timezone, now, cfg.lookback_days);
    let started = Instant::now();
    let inputs = load(store, network, window).await?;
    let loaded = Instant::now();
    let found = analyse(&inputs, network, cfg, window)?;
    let analysed = Instant::now();
    let recorded = record(store, network, &found, window, now).await?;
    Ok(RunReport {
        window,
        readings: found.readings,
        recorded,
        load: loaded - started,
        analyse: analysed - loaded,
        record: analysed.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_starts_at_a_local_midnight_and_skips_its_first_day() {
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        let now = DateTime::parse_from_rfc3339("2026-03-10T05:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let w = Window::ending_at(tz, now, 7);
        // 13:30 local on 10 March; seven days back is 3 March 00:00 local = 2 March 16:00 UTC.
        assert_eq!(w.from.to_rfc3339(), "2026-03-02T16:00:00+00:00");
        assert_eq!(w.to, now);
        assert_eq!(w.first_day.to_string(), "2026-03-04");
    }

    #[test]
    fn a_skipped_midnight_starts_the_day_at_its_first_minute() {
        // Santiago skips 00:00–00:59 on 6 September 2026 (clocks go to 01:00).
        let tz: Tz = "America/Santiago".parse().unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
        let t = local_midnight(tz, day);
        assert_eq!(t.with_timezone(&tz).date_naive(), day);
        assert_eq!(t.to_rfc3339(), "2026-09-06T04:00:00+00:00");
    }
}
