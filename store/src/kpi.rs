//! Daily KPIs the analytics jobs write: leakage figures per DMA, pressure compliance per point,
//! zone and network. One value per (scope, subject, metric, local day); a job run replaces the
//! values of the days it recomputed, so a day that gains late data is corrected by the next run.
//! Monthly KPIs ([`MonthlyKpi`]) are aggregated from the stored days by the job and replaced
//! the same way.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use serde::Serialize;

/// What a KPI is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KpiScope {
    /// A district metered area (leakage figures).
    Dma,
    /// One pressure monitoring point (a sensor).
    Point,
    /// A pressure zone (the DMA of its points).
    Zone,
    /// The whole network.
    Network,
}

impl KpiScope {
    /// Every scope.
    pub const ALL: [KpiScope; 4] = [
        KpiScope::Dma,
        KpiScope::Point,
        KpiScope::Zone,
        KpiScope::Network,
    ];

    /// The name used in the store and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            KpiScope::Dma => "dma",
            KpiScope::Point => "point",
            KpiScope::Zone => "zone",
            KpiScope::Network => "network",
        }
    }
}

impl fmt::Display for KpiScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KpiScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KpiScope::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown KPI scope `{s}` (expected dma, point, zone or network)")
            })
    }
}

/// One KPI value of one local day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DailyKpi {
    pub scope: KpiScope,
    /// The DMA, sensor or zone id, or `network`.
    pub subject: String,
    /// The network's local day.
    pub day: NaiveDate,
    /// The KPI's name, e.g. `nrw_percent` or `compliance_percent` (docs/api.md lists them).
    pub metric: String,
    /// `None`: not computable that day (missing data), which is not zero.
    pub value: Option<f64>,
}

/// One KPI value of one calendar month (the network's local time), aggregated from the days.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonthlyKpi {
    pub scope: KpiScope,
    pub subject: String,
    /// The month's first day.
    pub month: NaiveDate,
    pub metric: String,
    /// `None`: not computable that month.
    pub value: Option<f64>,
    /// Why the figure may not be meaningful (e.g. outside the ILI formula's validity).
    pub note: Option<String>,
}

/// Which KPIs to read: one scope, optionally one subject and one metric, days in `[from, to]`
/// (for monthly KPIs: the months whose first day is in `[from, to]`).
#[derive(Debug, Clone, PartialEq)]
pub struct KpiQuery {
    pub scope: KpiScope,
    pub subject: Option<String>,
    pub metric: Option<String>,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub limit: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_and_unknown_names_are_refused() {
        for s in KpiScope::ALL {
            assert_eq!(s.as_str().parse::<KpiScope>().unwrap(), s);
        }
        let err = "district".parse::<KpiScope>().unwrap_err();
        assert!(err.contains("`district`"), "{err}");
    }
}
