//! The daily leakage figures of one DMA: water balance, minimum night flow and real losses.
//!
//! Per local day: system input volume from the balance flow (Σ inlets − Σ outlets), customer
//! consumption from the meters, NRW; the minimum night flow (lowest 1-hour mean inside the
//! night window), legitimate night use, net night flow, the hour-day factor from the AZP
//! profile (FAVAD N1) and the daily real-loss estimate; UARL and ILI. A figure that the data
//! do not support is `None` and the completeness figures say why, never a silent zero.

use chrono::{Duration, NaiveDate, NaiveTime, TimeZone};
use chrono_tz::Tz;
use serde::Serialize;
use waterline_core::Dma;

use crate::clock::LocalClock;
use crate::consumption::{Register, flow_volume};
use crate::grid::Grid;
use crate::stats::slope;
use crate::timefmt::EpochMillis;

/// Where the legitimate night use came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NightUseSource {
    /// Night reads of the DMA's smart meters (plus the allowance for unmetered connections).
    Ami,
    /// `legitimate_night_use_m3h` of the network description.
    Configured,
    /// Connections × the per-connection allowance.
    Connections,
    /// Nothing known: taken as zero.
    None,
}

/// Settings of the daily computation.
#[derive(Debug, Clone, Copy)]
pub struct DayConfig {
    /// A day's volume needs at least this share of its buckets.
    pub min_completeness: f64,
    /// Hour-day factor without pressure data (hours).
    pub default_hdf_hours: f64,
    /// FAVAD N1 when the DMA does not set one.
    pub default_n1: f64,
    /// Household night use per connection when the DMA does not set one (L/h).
    pub night_use_l_per_connection_h: f64,
}

impl Default for DayConfig {
    fn default() -> Self {
        DayConfig {
            min_completeness: 0.9,
            default_hdf_hours: 24.0 * 0.8,
            default_n1: 1.0,
            night_use_l_per_connection_h: 1.7,
        }
    }
}

/// One DMA's figures for one local day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DmaDay {
    pub dma: String,
    pub date: NaiveDate,
    /// Share of the day's balance-flow buckets present.
    pub inflow_completeness: f64,
    /// System input volume, m³ (None below the completeness bar).
    pub siv_m3: Option<f64>,
    /// Metered customer consumption, m³ (None when not every meter covers the day).
    pub consumption_m3: Option<f64>,
    /// Share of the DMA's customer meters whose reads cover the day (None: no meters).
    pub consumption_completeness: Option<f64>,
    pub nrw_m3: Option<f64>,
    pub nrw_percent: Option<f64>,
    /// Minimum night flow: lowest 1-hour mean of the balance flow in the night window, m³/h.
    pub mnf_m3h: Option<f64>,
    /// UTC start of the MNF hour, ms.
    #[serde(skip)]
    pub mnf_start: Option<EpochMillis>,
    pub legitimate_night_use_m3h: f64,
    pub night_use_source: NightUseSource,
    /// Net night flow = MNF − legitimate night use, m³/h.
    pub nnf_m3h: Option<f64>,
    /// Hour-day factor, hours.
    pub hdf_hours: f64,
    /// Whether the HDF came from the AZP profile (else the default).
    pub hdf_from_pressure: bool,
    /// Daily real losses = NNF × HDF, m³.
    pub real_losses_m3: Option<f64>,
    /// Mean AZP pressure, m.
    pub azp_mean_m: Option<f64>,
    /// Unavoidable real losses for the day, m³.
    pub uarl_m3: Option<f64>,
    /// Real losses / UARL for the day.
    pub ili: Option<f64>,
    /// Trend of the net night flow over the last 7 days (least squares), m³/h per day.
    pub nnf_trend_7d: Option<f64>,
    /// Trend of the net night flow over the last 30 days, m³/h per day.
    pub nnf_trend_30d: Option<f64>,
    /// UTC end of the night window, ms (when the night's figures became known).
    #[serde(skip)]
    pub night_end: EpochMillis,
}

/// The inputs of one DMA's daily figures.
#[derive(Debug)]
pub struct DmaInputs<'a> {
    pub dma: &'a Dma,
    /// Balance flow per bucket, m³/h.
    pub inflow: &'a Grid,
    /// AZP pressure per bucket (same grid), m.
    pub azp: Option<&'a Grid>,
    /// Volume-register customer meters.
    pub registers: Vec<&'a Register>,
    /// Flow-type customer meters' bucket means (same grid), m³/h.
    pub meter_flows: Vec<&'a Grid>,
}

impl DmaInputs<'_> {
    fn meters(&self) -> usize {
        self.registers.len() + self.meter_flows.len()
    }

    /// Σ metered volume in `[a, b)` and how many meters cover it.
    fn metered_volume(&self, a: EpochMillis, b: EpochMillis, cfg: &DayConfig) -> (f64, usize) {
        let mut total = 0.0;
        let mut covering = 0;
        for r in &self.registers {
            if let Some(v) = r.volume(a, b) {
                total += v;
                covering += 1;
            }
        }
        for g in &self.meter_flows {
            if let Some(v) = flow_volume(g, a, b, cfg.min_completeness) {
                total += v;
                covering += 1;
            }
        }
        (total, covering)
    }
}

/// UTC instant of a local date's midnight (the earliest, if a DST change repeats it).
pub(crate) fn local_midnight(tz: Tz, date: NaiveDate) -> EpochMillis {
    let naive = date.and_time(NaiveTime::MIN);
    tz.from_local_datetime(&naive)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(naive + Duration::hours(1)))
                .earliest()
        })
        .map(|d| d.timestamp_millis())
        .unwrap_or_else(|| naive.and_utc().timestamp_millis())
}

/// The night of local date `d` is the window ending on `d` (for a window across midnight,
/// it starts on `d − 1`). Returns the night's date for a bucket, if the bucket is inside one.
fn night_date(dma: &Dma, date: NaiveDate, minute: u32) -> Option<NaiveDate> {
    let w = &dma.night_window;
    let t = NaiveTime::from_num_seconds_from_midnight_opt(minute * 60, 0)?;
    if !w.contains(t) {
        return None;
    }
    if w.start > w.end && t >= w.start {
        date.succ_opt()
    } else {
        Some(date)
    }
}

/// Daily figures of one DMA over the local days its inflow grid touches.
pub fn dma_days(inputs: &DmaInputs<'_>, tz: Tz, cfg: &DayConfig) -> Vec<DmaDay> {
    let grid = inputs.inflow;
    if grid.is_empty() {
        return Vec::new();
    }
    let dma = inputs.dma;
    let step = grid.step;
    let per_hour = (3_600_000 / step).max(1) as usize;
    let step_h = step as f64 / 3_600_000.0;
    let n1 = dma.favad_n1.unwrap_or(cfg.default_n1);
    let mut clock = LocalClock::new(tz);
    let local: Vec<(NaiveDate, u32)> = (0..grid.len())
        .map(|i| clock.date_and_minute(grid.time(i)))
        .collect();
    let first = local[0].0;
    let last = local[local.len() - 1].0;

    let mut days = Vec::new();
    let mut date = first;
    while date <= last {
        let a = local_midnight(tz, date);
        let b = local_midnight(tz, date.succ_opt().unwrap_or(date));
        let day_idx: Vec<usize> = (grid.index(a).unwrap_or(0)..grid.len())
            .take_while(|&i| grid.time(i) < b)
            .filter(|&i| grid.time(i) >= a)
            .collect();
        let expected = ((b - a) / step).max(1) as usize;
        let present: Vec<f64> = day_idx.iter().filter_map(|&i| grid.values[i]).collect();
        let inflow_completeness = present.len() as f64 / expected as f64;
        let day_hours = (b - a) as f64 / 3_600_000.0;
        let siv_m3 = (inflow_completeness >= cfg.min_completeness && !present.is_empty())
            .then(|| present.iter().sum::<f64>() / present.len() as f64 * day_hours);

        // Night: buckets of this date's night, in time order; the lowest 1-hour mean.
        // (A night ends on `date` and starts at most a day before.)
        let lo = grid.index(a - 86_400_000).unwrap_or(0);
        let hi = grid.index(b).unwrap_or(grid.len());
        let night: Vec<usize> = (lo..hi)
            .filter(|&i| night_date(dma, local[i].0, local[i].1) == Some(date))
            .collect();
        let night_end = night.last().map_or(b, |&i| grid.time(i) + step);
        let mut mnf: Option<(f64, usize)> = None;
        for w in night.windows(per_hour) {
            let contiguous = w[w.len() - 1] - w[0] + 1 == per_hour;
            let vals: Option<Vec<f64>> = w.iter().map(|&i| grid.values[i]).collect();
            if let (true, Some(vals)) = (contiguous, vals) {
                let mean = vals.iter().sum::<f64>() / vals.len() as f64;
                if mnf.is_none_or(|(m, _)| mean < m) {
                    mnf = Some((mean, w[0]));
                }
            }
        }
        let mnf_start = mnf.map(|(_, i)| grid.time(i));

        // Legitimate night use.
        let allowance_m3h = dma
            .night_use_l_per_connection_h
            .unwrap_or(cfg.night_use_l_per_connection_h)
            / 1_000.0;
        let meters = inputs.meters();
        let ami = mnf_start.and_then(|t0| {
            let (v, covering) = inputs.metered_volume(t0, t0 + 3_600_000, cfg);
            (meters > 0 && covering == meters).then_some(v)
        });
        let (legitimate_night_use_m3h, night_use_source) =
            match (ami, dma.legitimate_night_use_m3h, dma.connections) {
                (Some(v), _, conns) => {
                    let unmetered = conns.map_or(0, |c| (c as usize).saturating_sub(meters));
                    (v + unmetered as f64 * allowance_m3h, NightUseSource::Ami)
                }
                (None, Some(q), _) => (q, NightUseSource::Configured),
                (None, None, Some(c)) => {
                    (f64::from(c) * allowance_m3h, NightUseSource::Connections)
                }
                (None, None, None) => (0.0, NightUseSource::None),
            };
        let mnf_m3h = mnf.map(|(m, _)| m);
        let nnf_m3h = mnf_m3h.map(|m| m - legitimate_night_use_m3h);

        // Pressure: AZP daily mean and the hour-day factor.
        let mut azp_mean_m = None;
        let mut hdf = None;
        if let Some(azp) = inputs.azp {
            let p: Vec<f64> = day_idx.iter().filter_map(|&i| azp.values[i]).collect();
            if !p.is_empty() {
                azp_mean_m = Some(p.iter().sum::<f64>() / p.len() as f64);
            }
            let p_night: Option<Vec<f64>> = mnf.and_then(|(_, i0)| {
                (i0..i0 + per_hour)
                    .map(|i| azp.values.get(i).copied().flatten())
                    .collect()
            });
            if let Some(pn) = p_night {
                let pn = pn.iter().sum::<f64>() / pn.len() as f64;
                let share = p.len() as f64 / expected as f64;
                if pn > 0.0 && share >= cfg.min_completeness {
                    let sum: f64 = p.iter().map(|&x| (x.max(0.0) / pn).powf(n1)).sum();
                    hdf = Some(sum / p.len() as f64 * expected as f64 * step_h);
                }
            }
        }
        let hdf_from_pressure = hdf.is_some();
        let hdf_hours = hdf.unwrap_or(cfg.default_hdf_hours);
        let real_losses_m3 = nnf_m3h.map(|q| q * hdf_hours);

        // Consumption.
        let (consumption_m3, consumption_completeness) = if meters == 0 {
            (None, None)
        } else {
            let (v, covering) = inputs.metered_volume(a, b, cfg);
            let share = covering as f64 / meters as f64;
            ((covering == meters).then_some(v), Some(share))
        };
        let nrw_m3 = siv_m3.zip(consumption_m3).map(|(s, c)| s - c);
        let nrw_percent = nrw_m3
            .zip(siv_m3)
            .and_then(|(n, s)| (s > 0.0).then_some(100.0 * n / s));

        // UARL (litres/day) = (18·Lm + 0.8·Nc + 25·Lp) · P.
        let uarl_m3 = match (dma.mains_km, dma.connections, azp_mean_m) {
            (Some(lm), Some(nc), Some(p)) => {
                let lp = dma.service_pipe_km.unwrap_or(0.0);
                Some((18.0 * lm + 0.8 * f64::from(nc) + 25.0 * lp) * p / 1_000.0 * day_hours / 24.0)
            }
            _ => None,
        };
        let ili = real_losses_m3
            .zip(uarl_m3)
            .and_then(|(c, u)| (u > 0.0).then_some(c / u));

        days.push(DmaDay {
            dma: dma.id.as_str().to_owned(),
            date,
            inflow_completeness,
            siv_m3,
            consumption_m3,
            consumption_completeness,
            nrw_m3,
            nrw_percent,
            mnf_m3h,
            mnf_start,
            legitimate_night_use_m3h,
            night_use_source,
            nnf_m3h,
            hdf_hours,
            hdf_from_pressure,
            real_losses_m3,
            azp_mean_m,
            uarl_m3,
            ili,
            nnf_trend_7d: None,
            nnf_trend_30d: None,
            night_end,
        });
        match date.succ_opt() {
            Some(d) => date = d,
            None => break,
        }
    }
    for i in 0..days.len() {
        days[i].nnf_trend_7d = trend(&days[..=i], 7);
        days[i].nnf_trend_30d = trend(&days[..=i], 30);
    }
    days
}

/// Least-squares slope of the net night flow over the last `n` days (at least half present).
fn trend(days: &[DmaDay], n: usize) -> Option<f64> {
    let window = &days[days.len().saturating_sub(n)..];
    let pts: Vec<(f64, f64)> = window
        .iter()
        .enumerate()
        .filter_map(|(i, d)| d.nnf_m3h.map(|q| (i as f64, q)))
        .collect();
    if window.len() < n || pts.len() * 2 < n || pts.len() < 3 {
        return None;
    }
    slope(&pts)
}
