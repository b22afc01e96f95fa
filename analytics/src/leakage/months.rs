//! Monthly leakage figures of one DMA from its days: the water balance totals, CJJ 92's
//! comprehensive leakage rate (综合漏损率) and assessed leakage rate (漏损率) with the
//! DMA's configured corrections, and the ILI, with a note when the DMA lies outside the range
//! for which the UARL formula was derived.
//!
//! The months come from [`DayFigures`]: the offline analysis takes them from its own days
//! ([`dma_months`]), the online job from the daily KPIs stored over many runs
//! ([`months_of`]), so that a month is whole even though each run sees only its window.

use chrono::NaiveDate;
use serde::Serialize;
use waterline_core::Dma;

use super::days::DmaDay;

/// The daily figures a month is made of.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DayFigures {
    pub date: NaiveDate,
    pub siv_m3: Option<f64>,
    pub consumption_m3: Option<f64>,
    pub real_losses_m3: Option<f64>,
    pub uarl_m3: Option<f64>,
    pub azp_mean_m: Option<f64>,
}

impl From<&DmaDay> for DayFigures {
    fn from(d: &DmaDay) -> Self {
        DayFigures {
            date: d.date,
            siv_m3: d.siv_m3,
            consumption_m3: d.consumption_m3,
            real_losses_m3: d.real_losses_m3,
            uarl_m3: d.uarl_m3,
            azp_mean_m: d.azp_mean_m,
        }
    }
}

/// One DMA's figures for one calendar month (local time).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DmaMonth {
    pub dma: String,
    /// `YYYY-MM`.
    pub month: String,
    pub days: usize,
    /// Days with both the input volume and the metered consumption.
    pub days_balanced: usize,
    pub siv_m3: f64,
    pub consumption_m3: Option<f64>,
    /// CJJ 92 comprehensive leakage rate R_WL = (Qs − Qa) / Qs × 100, over balanced days.
    pub comprehensive_leakage_percent: Option<f64>,
    /// CJJ 92 assessed leakage rate R_BL = R_WL − (R1 + R2 + R3 + R4).
    pub assessed_leakage_percent: Option<f64>,
    /// Σ daily real losses, m³.
    pub real_losses_m3: Option<f64>,
    /// Σ daily UARL over the same days, m³.
    pub uarl_m3: Option<f64>,
    /// Infrastructure leakage index CARL / UARL.
    pub ili: Option<f64>,
    /// Why the ILI may not be meaningful for this DMA (empty when within range).
    pub ili_notes: Vec<String>,
}

/// Notes on the UARL formula's original validity: Nc > 5000, density > 20 /km, P 25–100 m.
pub fn ili_validity(dma: &Dma, mean_pressure: Option<f64>) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(nc) = dma.connections {
        if nc <= 5_000 {
            notes.push(format!(
                "{nc} connections (formula derived for more than 5,000)"
            ));
        }
        if let Some(lm) = dma.mains_km.filter(|&l| l > 0.0) {
            let density = f64::from(nc) / lm;
            if density <= 20.0 {
                notes.push(format!(
                    "{density:.1} connections/km (formula derived for more than 20)"
                ));
            }
        }
    }
    if let Some(p) = mean_pressure
        && !(25.0..=100.0).contains(&p)
    {
        notes.push(format!(
            "mean pressure {p:.1} m (formula derived for 25–100 m)"
        ));
    }
    notes
}

/// Groups a DMA's days (in date order) into months.
pub fn dma_months(dma: &Dma, days: &[DmaDay]) -> Vec<DmaMonth> {
    let figures: Vec<DayFigures> = days.iter().map(DayFigures::from).collect();
    months_of(dma, &figures)
}

/// Groups a DMA's daily figures (in date order) into months.
pub fn months_of(dma: &Dma, days: &[DayFigures]) -> Vec<DmaMonth> {
    let mut out: Vec<DmaMonth> = Vec::new();
    let mut start = 0;
    while start < days.len() {
        let month = days[start].date.format("%Y-%m").to_string();
        let end = start
            + days[start..]
                .iter()
                .take_while(|d| d.date.format("%Y-%m").to_string() == month)
                .count();
        let span = &days[start..end];
        let balanced: Vec<&DayFigures> = span
            .iter()
            .filter(|d| d.siv_m3.is_some() && d.consumption_m3.is_some())
            .collect();
        let qs: f64 = balanced.iter().filter_map(|d| d.siv_m3).sum();
        let qa: f64 = balanced.iter().filter_map(|d| d.consumption_m3).sum();
        let rwl = (!balanced.is_empty() && qs > 0.0).then(|| 100.0 * (qs - qa) / qs);
        let corrections: f64 = dma.cjj92_corrections_percent.iter().sum();
        let both: Vec<&DayFigures> = span
            .iter()
            .filter(|d| d.real_losses_m3.is_some() && d.uarl_m3.is_some())
            .collect();
        let carl: f64 = both.iter().filter_map(|d| d.real_losses_m3).sum();
        let uarl: f64 = both.iter().filter_map(|d| d.uarl_m3).sum();
        let pressures: Vec<f64> = span.iter().filter_map(|d| d.azp_mean_m).collect();
        let mean_p =
            (!pressures.is_empty()).then(|| pressures.iter().sum::<f64>() / pressures.len() as f64);
        let real: Vec<f64> = span.iter().filter_map(|d| d.real_losses_m3).collect();
        out.push(DmaMonth {
            dma: dma.id.as_str().to_owned(),
            month,
            days: span.len(),
            days_balanced: balanced.len(),
            siv_m3: span.iter().filter_map(|d| d.siv_m3).sum(),
            consumption_m3: (!balanced.is_empty()).then_some(qa),
            comprehensive_leakage_percent: rwl,
            assessed_leakage_percent: rwl.map(|r| r - corrections),
            real_losses_m3: (!real.is_empty()).then(|| real.iter().sum()),
            uarl_m3: (!both.is_empty()).then_some(uarl),
            ili: (!both.is_empty() && uarl > 0.0).then(|| carl / uarl),
            ili_notes: ili_validity(dma, mean_p),
        });
        start = end;
    }
    out
}
