//! PRV set-point recommendations (pressure management, DOMAIN §4): for each pressure-reducing
//! valve of the network (`[[prv]]`) whose DMA has a critical point, from the readings of the
//! last weeks propose
//!
//! - a **fixed** outlet set point and
//! - an **hourly schedule** (time-modulated control, local time)
//!
//! that keep the critical point at least `margin_m` above the DMA's minimum service pressure,
//! with the expected lowest critical-point pressure, the average-zone-pressure reduction and
//! the leakage saving from FAVAD.
//!
//! The model, on 15-minute bucket means of the outlet (P2), critical-point (P3) and AZP (P4)
//! pressures: lowering the outlet pressure from P2 to a set point S lowers every pressure of
//! the zone by P2 − S while the flows stay as they were, so P3 becomes P3 − (P2 − S). The set
//! point that bucket needs is `P2 − P3 + min + margin`; an hour's setting is the largest need
//! seen in that hour of the day over the window, the fixed setting the largest of all, both
//! rounded up to 0.1 m and kept inside the valve's `min_setting_m`/`max_setting_m`. Less
//! pressure means less leakage and less pressure-dependent demand, so less head loss and a
//! slightly higher critical point than predicted: the model errs on the safe side.
//!
//! Leakage (FAVAD): the DMA's real-loss flow at night is its net night flow (median over the
//! window of the leakage analysis' daily NNF) at the night's AZP, and scales with
//! `(AZP / AZP_night)^N1` through the day (N1 the DMA's `favad_n1`, default 1.0). The saving
//! is that flow at today's AZP minus the flow at the lowered AZP, per day. Without an AZP
//! sensor the zone pressure is taken as the mean of P2 and P3; without NNF (no inflow meters)
//! the saving is not estimated.
//!
//! Recommendations are advice: applying one writes the set point over Modbus, which only an
//! authorised dispatcher may do (the API's `POST /api/v1/prvs/{id}/apply`).

use std::collections::HashMap;

use chrono::{DateTime, Timelike, Utc};
use polars::prelude::PolarsResult;
use serde::Serialize;
use waterline_core::{Dma, Network, Prv, SensorId};

use crate::clock::LocalClock;
use crate::grid::{Grid, sensor_means};
use crate::leakage::DmaDay;
use crate::pressure::DEFAULT_MIN_SERVICE_PRESSURE_M;
use crate::readings::Readings;
use crate::stats::median;

/// Settings of the recommendation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrvConfig {
    /// Bucket of the pressure means, minutes.
    pub bucket_minutes: i64,
    /// Margin above the minimum service pressure where the PRV configures none, m.
    pub margin_m: f64,
    /// The least data (buckets with both outlet and critical pressure) to recommend from, as
    /// days.
    pub min_days: f64,
    /// Settings are rounded up to a multiple of this, m.
    pub step_m: f64,
}

impl Default for PrvConfig {
    fn default() -> Self {
        Self {
            bucket_minutes: 15,
            margin_m: 2.0,
            min_days: 3.0,
            step_m: 0.1,
        }
    }
}

/// One way of operating the valve and what it is expected to do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The set point of each local hour 0–23 (all equal for a fixed set point), m.
    pub hourly_setting_m: Vec<f64>,
    /// The lowest critical-point pressure over the window had the plan been in force, m.
    pub expected_critical_min_m: f64,
    /// Mean reduction of the average zone pressure, m (negative: a rise).
    pub azp_reduction_m: f64,
    /// Leakage saved, m³/day (None without a net night flow for the DMA).
    pub leakage_saving_m3_day: Option<f64>,
}

/// The recommendation for one PRV.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrvRecommendation {
    pub prv: String,
    pub dma: String,
    /// The writable set-point point, when the network names it.
    pub setpoint_sensor: Option<String>,
    /// The span of data it was computed from.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Days of data with both outlet and critical-point pressure.
    pub days_of_data: f64,
    pub critical_sensor: String,
    /// The DMA's minimum service pressure at the critical point, m.
    pub critical_min_m: f64,
    pub margin_m: f64,
    /// Today: mean and highest outlet pressure, lowest critical-point pressure, mean AZP, m.
    pub outlet_mean_m: f64,
    pub outlet_max_m: f64,
    pub critical_min_observed_m: f64,
    pub azp_mean_m: f64,
    /// Whether the AZP came from the DMA's AZP sensor (else the mean of P2 and P3).
    pub azp_from_sensor: bool,
    /// The FAVAD exponent used.
    pub n1: f64,
    /// Today's real losses estimated from the net night flow, m³/day.
    pub leakage_now_m3_day: Option<f64>,
    /// One set point for all hours.
    pub fixed: Plan,
    /// One set point per local hour.
    pub schedule: Plan,
    /// The IANA time zone of the schedule's hours (the network's).
    pub timezone: String,
    /// What limited the recommendation (bounds hit, data missing, critical point already low).
    pub notes: Vec<String>,
}

/// A PRV that could not get a recommendation, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrvSkipped {
    pub prv: String,
    pub dma: String,
    pub reason: String,
}

/// Every PRV's outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PrvReport {
    pub recommendations: Vec<PrvRecommendation>,
    pub skipped: Vec<PrvSkipped>,
}

/// Each DMA's median net night flow over the leakage analysis' days, m³/h (at least 0), by
/// DMA id: the night leak flow [`recommend`] starts from.
pub fn night_flows(days: &[DmaDay]) -> HashMap<String, f64> {
    let mut by_dma: HashMap<String, Vec<f64>> = HashMap::new();
    for d in days {
        if let Some(f) = d.nnf_m3h {
            by_dma.entry(d.dma.clone()).or_default().push(f);
        }
    }
    by_dma
        .into_iter()
        .filter_map(|(dma, mut v)| Some((dma, median(&mut v)?.max(0.0))))
        .collect()
}

/// Recommends set points for every PRV of the network from `readings`; `night_flows` are the
/// DMAs' net night flows ([`night_flows`]).
pub fn recommend(
    readings: &Readings,
    network: &Network,
    night_flows: &HashMap<String, f64>,
    cfg: &PrvConfig,
) -> PolarsResult<PrvReport> {
    let mut report = PrvReport::default();
    let Some((t0, t1)) = readings.time_range() else {
        for prv in &network.prvs {
            report.skipped.push(skipped(prv, "no readings".into()));
        }
        return Ok(report);
    };
    let step = cfg.bucket_minutes.max(1) * 60_000;
    let mut wanted: Vec<SensorId> = Vec::new();
    for prv in &network.prvs {
        wanted.push(prv.outlet_sensor.clone());
        if let Some(dma) = network.dma(&prv.dma) {
            wanted.extend(dma.critical_sensor.iter().cloned());
            wanted.extend(dma.azp_sensor.iter().cloned());
        }
    }
    wanted.sort();
    wanted.dedup();
    let grids = sensor_means(readings, &wanted, t0, t1, step)?;
    for prv in &network.prvs {
        let Some(dma) = network.dma(&prv.dma) else {
            continue; // Network::parse guarantees the DMA
        };
        let nnf = night_flows.get(dma.id.as_str()).copied();
        match recommend_one(prv, dma, network, &grids, nnf, cfg) {
            Ok(r) => report.recommendations.push(r),
            Err(reason) => report.skipped.push(skipped(prv, reason)),
        }
    }
    Ok(report)
}

fn skipped(prv: &Prv, reason: String) -> PrvSkipped {
    PrvSkipped {
        prv: prv.id.to_string(),
        dma: prv.dma.to_string(),
        reason,
    }
}

/// One bucket with the pressures the model needs.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    hour: usize,
    night: bool,
    outlet: f64,
    critical: f64,
    azp: f64,
}

fn recommend_one(
    prv: &Prv,
    dma: &Dma,
    network: &Network,
    grids: &HashMap<SensorId, Grid>,
    nnf_m3h: Option<f64>,
    cfg: &PrvConfig,
) -> Result<PrvRecommendation, String> {
    let critical_sensor = dma.critical_sensor.as_ref().ok_or_else(|| {
        format!(
            "DMA `{}` has no critical_sensor, so there is no point to keep above the minimum",
            dma.id
        )
    })?;
    let outlet = &grids[&prv.outlet_sensor];
    let critical = &grids[critical_sensor];
    let azp = dma.azp_sensor.as_ref().map(|s| &grids[s]);
    let mut clock = LocalClock::new(network.timezone);
    let buckets: Vec<Bucket> = (0..outlet.len())
        .filter_map(|i| {
            let (p2, p3) = (outlet.values[i]?, critical.values[i]?);
            let local = clock.local(outlet.time(i));
            let p4 = azp.and_then(|g| g.values[i]);
            Some(Bucket {
                hour: local.hour() as usize,
                night: dma.night_window.contains(local.time()),
                outlet: p2,
                critical: p3,
                azp: p4.unwrap_or((p2 + p3) / 2.0),
            })
        })
        .collect();
    let bucket_days = buckets.len() as f64 * outlet.step as f64 / 86_400_000.0;
    if bucket_days < cfg.min_days {
        return Err(format!(
            "only {bucket_days:.1} days with both outlet pressure ({}) and critical-point pressure ({critical_sensor}); at least {} needed",
            prv.outlet_sensor, cfg.min_days
        ));
    }
    let azp_from_sensor = azp.is_some_and(|g| g.values.iter().any(Option::is_some));
    let min_p = dma
        .min_service_pressure_m
        .unwrap_or(DEFAULT_MIN_SERVICE_PRESSURE_M);
    let margin = prv.margin_m.unwrap_or(cfg.margin_m);
    let floor_needed = min_p + margin;
    let mut notes = Vec::new();

    // The set point each hour of the day needs: its largest bucket need.
    let mut hour_need = [f64::NEG_INFINITY; 24];
    for b in &buckets {
        let need = b.outlet - b.critical + floor_needed;
        hour_need[b.hour] = hour_need[b.hour].max(need);
    }
    let worst = hour_need.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let missing_hours = hour_need.iter().filter(|h| !h.is_finite()).count();
    if missing_hours > 0 {
        notes.push(format!(
            "{missing_hours} hours of the day have no data; they keep the fixed set point"
        ));
    }
    // Up to the step, then to a micrometre, so that 202 steps of 0.1 m read 20.2, not
    // 20.200000000000003 (the value goes to people and to a register).
    let round_up = |x: f64| ((x / cfg.step_m - 1e-9).ceil() * cfg.step_m * 1e6).round() / 1e6;
    let clamp = |x: f64, notes: &mut Vec<String>, what: &str| -> f64 {
        let mut s = round_up(x);
        if let Some(hi) = prv.max_setting_m
            && s > hi
        {
            notes.push(format!(
                "{what} needs {s:.1} m, above the valve's max_setting_m {hi} m: the critical point cannot be kept at {floor_needed:.1} m"
            ));
            s = hi;
        }
        if let Some(lo) = prv.min_setting_m
            && s < lo
        {
            s = lo;
        }
        s
    };
    let fixed_setting = clamp(worst, &mut notes, "the fixed set point");
    let schedule_settings: Vec<f64> = hour_need
        .iter()
        .enumerate()
        .map(|(h, &need)| {
            if need.is_finite() {
                clamp(need, &mut notes, &format!("hour {h:02}"))
            } else {
                fixed_setting
            }
        })
        .collect();

    let n = buckets.len() as f64;
    let outlet_mean = buckets.iter().map(|b| b.outlet).sum::<f64>() / n;
    let outlet_max = buckets.iter().map(|b| b.outlet).fold(f64::MIN, f64::max);
    let critical_min_observed = buckets.iter().map(|b| b.critical).fold(f64::MAX, f64::min);
    let azp_mean = buckets.iter().map(|b| b.azp).sum::<f64>() / n;
    if critical_min_observed < floor_needed {
        notes.push(format!(
            "the critical point fell to {critical_min_observed:.1} m, below the {floor_needed:.1} m wanted: the set point must rise at those hours"
        ));
    }
    let n1 = dma.favad_n1.unwrap_or(1.0);
    let night_azp: Vec<f64> = buckets.iter().filter(|b| b.night).map(|b| b.azp).collect();
    let leak = match (nnf_m3h, night_azp.is_empty()) {
        (Some(nnf), false) => {
            let p_night = night_azp.iter().sum::<f64>() / night_azp.len() as f64;
            (p_night > 0.0).then_some(Favad {
                night_flow_m3h: nnf,
                night_azp_m: p_night,
                n1,
            })
        }
        _ => None,
    };
    if leak.is_none() {
        notes.push(
            "no net night flow for the DMA (inflow meters, night window): leakage saving not estimated"
                .into(),
        );
    }
    let leakage_now = leak.map(|f| buckets.iter().map(|b| f.flow(b.azp)).sum::<f64>() / n * 24.0);
    let fixed = plan(&buckets, &[fixed_setting; 24], leak);
    let schedule = plan(&buckets, &schedule_settings, leak);
    Ok(PrvRecommendation {
        prv: prv.id.to_string(),
        dma: dma.id.to_string(),
        setpoint_sensor: prv.setpoint_sensor.as_ref().map(ToString::to_string),
        timezone: network.timezone.name().to_owned(),
        from: millis(outlet.start),
        to: millis(outlet.time(outlet.len())),
        days_of_data: bucket_days,
        critical_sensor: critical_sensor.to_string(),
        critical_min_m: min_p,
        margin_m: margin,
        outlet_mean_m: outlet_mean,
        outlet_max_m: outlet_max,
        critical_min_observed_m: critical_min_observed,
        azp_mean_m: azp_mean,
        azp_from_sensor,
        n1,
        leakage_now_m3_day: leakage_now,
        fixed,
        schedule,
        notes,
    })
}

fn millis(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t).unwrap_or_default()
}

/// FAVAD leak flow through the day from the night's.
#[derive(Debug, Clone, Copy)]
struct Favad {
    night_flow_m3h: f64,
    night_azp_m: f64,
    n1: f64,
}

impl Favad {
    fn flow(&self, azp_m: f64) -> f64 {
        self.night_flow_m3h * (azp_m.max(0.0) / self.night_azp_m).powf(self.n1)
    }
}

/// What operating at `settings` (per local hour) would have done over the buckets.
fn plan(buckets: &[Bucket], settings: &[f64], leak: Option<Favad>) -> Plan {
    let n = buckets.len() as f64;
    let mut critical_min = f64::MAX;
    let mut reduction = 0.0;
    let mut saving = 0.0;
    for b in buckets {
        let drop = b.outlet - settings[b.hour];
        critical_min = critical_min.min(b.critical - drop);
        reduction += drop;
        if let Some(f) = leak {
            saving += f.flow(b.azp) - f.flow(b.azp - drop);
        }
    }
    Plan {
        hourly_setting_m: settings.to_vec(),
        expected_critical_min_m: critical_min,
        azp_reduction_m: reduction / n,
        leakage_saving_m3_day: leak.map(|_| saving / n * 24.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timefmt::EpochMillis;

    const NET: &str = r#"
timezone = "UTC"
[[dma]]
id = "B"
azp_sensor = "B-azp"
critical_sensor = "B-crit"
min_service_pressure_m = 20.0
[[sensor]]
id = "B-out"
kind = "pressure"
unit = "m"
dma = "B"
[[sensor]]
id = "B-azp"
kind = "pressure"
unit = "m"
dma = "B"
[[sensor]]
id = "B-crit"
kind = "pressure"
unit = "m"
dma = "B"
[[prv]]
id = "PRV-B"
dma = "B"
outlet_sensor = "B-out"
setpoint_sensor = "RTU-B-prv-setpoint"
min_setting_m = 25
margin_m = 2.0
"#;

    /// A zone behind a PRV held at 45 m: head loss to the critical point (and half of it to
    /// the AZP point) follows demand, low at night, highest at 08:00 and 19:00; the critical
    /// point sits 10 m higher than the outlet.
    fn readings(net: &Network, days: i64) -> Readings {
        let mut rows = Vec::new();
        let start: EpochMillis = 1_700_006_400_000; // 2023-11-15T00:00Z
        for k in 0..days * 96 {
            let t = start + k * 900_000;
            let hour = (k % 96) as f64 / 4.0;
            let demand = 0.4
                + 0.6 * ((-(hour - 8.0).powi(2) / 4.0).exp())
                + 0.5 * ((-(hour - 19.0).powi(2) / 4.0).exp());
            let loss = 8.0 * demand * demand;
            let out = 45.0;
            rows.push(("B-out", t, out));
            rows.push(("B-crit", t, out - 10.0 - loss));
            rows.push(("B-azp", t, out - 5.0 - loss / 2.0));
        }
        Readings::from_rows(
            net,
            rows.into_iter()
                .map(|(s, t, v)| (SensorId::parse(s).unwrap(), t, v)),
        )
    }

    fn nnf(flow: f64) -> HashMap<String, f64> {
        HashMap::from([("B".to_string(), flow)])
    }

    #[test]
    fn keeps_the_critical_point_above_minimum_plus_margin() {
        let net = Network::parse(NET).unwrap();
        let report = recommend(&readings(&net, 7), &net, &nnf(4.0), &PrvConfig::default()).unwrap();
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        let r = &report.recommendations[0];
        assert_eq!((r.prv.as_str(), r.dma.as_str()), ("PRV-B", "B"));
        assert_eq!(r.setpoint_sensor.as_deref(), Some("RTU-B-prv-setpoint"));
        assert!((r.days_of_data - 7.0).abs() < 0.01, "{}", r.days_of_data);
        // Worst case: loss 8·(0.4+0.6+0.5·e^-30.25)² ≈ 8.0 at 08:00 → need 45 − (35 − 8) + 22 = 40.
        let fixed = r.fixed.hourly_setting_m[0];
        assert!((fixed - 40.0).abs() <= 0.11, "fixed {fixed}");
        assert!(r.fixed.hourly_setting_m.iter().all(|&s| s == fixed));
        // The critical point is kept at 22 m (min 20 + margin 2), never below.
        assert!(r.fixed.expected_critical_min_m >= 22.0 - 1e-9);
        assert!(r.fixed.expected_critical_min_m < 22.2);
        assert!(r.schedule.expected_critical_min_m >= 22.0 - 1e-9);
        // At 03:00 the loss is ≈ 8·0.4² = 1.3 m: the schedule sets ≈ 45 − 33.7 + 22 = 33.3 m.
        let night = r.schedule.hourly_setting_m[3];
        assert!((33.0..34.0).contains(&night), "night {night}");
        assert!(r.schedule.hourly_setting_m[8] >= 39.9);
        // Whole 0.1 m steps, written as such (no 33.300000000000004 in the API).
        for s in r
            .schedule
            .hourly_setting_m
            .iter()
            .chain(&r.fixed.hourly_setting_m)
        {
            assert!(s.to_string().len() <= 4, "{s}");
            assert!((s * 10.0 - (s * 10.0).round()).abs() < 1e-9, "{s}");
        }
        // Lowering the outlet lowers the zone by the same amount: fixed 5 m, schedule more.
        assert!((r.fixed.azp_reduction_m - (45.0 - fixed)).abs() < 1e-9);
        assert!(r.schedule.azp_reduction_m > r.fixed.azp_reduction_m + 2.0);
        assert!(r.azp_from_sensor);
        assert!(r.notes.is_empty(), "{:?}", r.notes);
    }

    #[test]
    fn leakage_saving_follows_favad() {
        let net = Network::parse(NET).unwrap();
        let r = recommend(&readings(&net, 7), &net, &nnf(4.0), &PrvConfig::default())
            .unwrap()
            .recommendations
            .remove(0);
        let now = r.leakage_now_m3_day.unwrap();
        // N1 = 1: leak flow is proportional to AZP; at night (02–04) AZP ≈ 39.4 m with 4 m³/h.
        assert!(now > 24.0 * 4.0 * 0.9 && now < 24.0 * 4.0, "now {now}");
        let saving = r.fixed.leakage_saving_m3_day.unwrap();
        let expected = now * r.fixed.azp_reduction_m / r.azp_mean_m;
        assert!(
            (saving - expected).abs() < 1e-6 * now,
            "{saving} vs {expected}"
        );
        assert!(r.schedule.leakage_saving_m3_day.unwrap() > saving);
        assert_eq!(r.n1, 1.0);
    }

    #[test]
    fn bounds_and_missing_data_are_reported() {
        // A higher minimum than the valve can give: clamped, and said so.
        let net = Network::parse(&NET.replace("min_setting_m = 25", "max_setting_m = 38")).unwrap();
        let r = recommend(
            &readings(&net, 7),
            &net,
            &HashMap::new(),
            &PrvConfig::default(),
        )
        .unwrap()
        .recommendations
        .remove(0);
        assert_eq!(r.fixed.hourly_setting_m[0], 38.0);
        assert!(r.fixed.expected_critical_min_m < 22.0);
        assert!(
            r.notes.iter().any(|n| n.contains("max_setting_m")),
            "{:?}",
            r.notes
        );
        assert_eq!(r.leakage_now_m3_day, None);
        assert_eq!(r.fixed.leakage_saving_m3_day, None);
        assert!(r.notes.iter().any(|n| n.contains("not estimated")));

        // Too little data, and no critical point: skipped with the reason.
        let net = Network::parse(NET).unwrap();
        let report = recommend(
            &readings(&net, 2),
            &net,
            &HashMap::new(),
            &PrvConfig::default(),
        )
        .unwrap();
        assert!(report.recommendations.is_empty());
        assert!(
            report.skipped[0].reason.contains("only 2.0 days"),
            "{:?}",
            report.skipped
        );
        let no_crit = Network::parse(&NET.replace("critical_sensor = \"B-crit\"\n", "")).unwrap();
        let report = recommend(
            &readings(&no_crit, 7),
            &no_crit,
            &HashMap::new(),
            &PrvConfig::default(),
        )
        .unwrap();
        assert!(report.skipped[0].reason.contains("no critical_sensor"));
    }
}
