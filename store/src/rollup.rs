//! Rollup buckets (15 min, 1 h, 1 day, UTC-aligned) and the in-memory aggregation of newly
//! inserted readings that keeps the rollup tables exact on backends without TimescaleDB.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

/// A rollup granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    Min15,
    Hour,
    Day,
}

impl Bucket {
    /// Every granularity.
    pub const ALL: [Bucket; 3] = [Bucket::Min15, Bucket::Hour, Bucket::Day];

    /// Bucket width in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Bucket::Min15 => 900,
            Bucket::Hour => 3_600,
            Bucket::Day => 86_400,
        }
    }

    /// The width as a PostgreSQL interval literal.
    pub(crate) fn interval(self) -> &'static str {
        match self {
            Bucket::Min15 => "15 minutes",
            Bucket::Hour => "1 hour",
            Bucket::Day => "1 day",
        }
    }

    /// The table (or continuous aggregate) holding this rollup.
    pub(crate) fn table(self) -> &'static str {
        match self {
            Bucket::Min15 => "readings_15m",
            Bucket::Hour => "readings_1h",
            Bucket::Day => "readings_1d",
        }
    }

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Min15 => "15m",
            Bucket::Hour => "1h",
            Bucket::Day => "1d",
        }
    }

    /// Start of the bucket holding `t`, in microseconds since the epoch.
    pub fn floor_micros(self, t_micros: i64) -> i64 {
        let w = self.seconds() * 1_000_000;
        t_micros.div_euclid(w) * w
    }

    /// Start of the bucket holding `t`.
    pub fn floor(self, t: DateTime<Utc>) -> DateTime<Utc> {
        from_micros(self.floor_micros(t.timestamp_micros()))
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Bucket {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "15m" => Ok(Bucket::Min15),
            "1h" => Ok(Bucket::Hour),
            "1d" => Ok(Bucket::Day),
            _ => Err(format!("unknown bucket `{s}`; expected 15m, 1h or 1d")),
        }
    }
}

/// Microseconds since the epoch back to a time (saturating at the representable range).
pub(crate) fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Partial aggregate of one (series, bucket).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Partial {
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) sum: f64,
    pub(crate) count: i64,
}

/// Aggregates freshly inserted `(series, time µs, value)` rows per bucket, ordered by
/// (series, bucket) so that concurrent writers lock rollup rows in the same order.
pub(crate) fn aggregate(rows: &[(i32, i64, f64)], bucket: Bucket) -> BTreeMap<(i32, i64), Partial> {
    let mut out: BTreeMap<(i32, i64), Partial> = BTreeMap::new();
    for &(series, t, v) in rows {
        let key = (series, bucket.floor_micros(t));
        out.entry(key)
            .and_modify(|p| {
                p.min = p.min.min(v);
                p.max = p.max.max(v);
                p.sum += v;
                p.count += 1;
            })
            .or_insert(Partial {
                min: v,
                max: v,
                sum: v,
                count: 1,
            });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_align_to_utc_boundaries() {
        let t = DateTime::parse_from_rfc3339("2026-11-27T02:44:59Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            Bucket::Min15.floor(t).to_rfc3339(),
            "2026-11-27T02:30:00+00:00"
        );
        assert_eq!(
            Bucket::Hour.floor(t).to_rfc3339(),
            "2026-11-27T02:00:00+00:00"
        );
        assert_eq!(
            Bucket::Day.floor(t).to_rfc3339(),
            "2026-11-27T00:00:00+00:00"
        );
        let before_epoch = DateTime::parse_from_rfc3339("1969-12-31T23:59:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            Bucket::Hour.floor(before_epoch).to_rfc3339(),
            "1969-12-31T23:00:00+00:00"
        );
    }

    #[test]
    fn aggregates_per_series_and_bucket() {
        let m = 60_000_000;
        let rows = [(1, 0, 2.0), (1, m, 4.0), (1, 16 * m, 1.0), (2, 0, 7.0)];
        let agg = aggregate(&rows, Bucket::Min15);
        assert_eq!(agg.len(), 3);
        assert_eq!(
            agg[&(1, 0)],
            Partial {
                min: 2.0,
                max: 4.0,
                sum: 6.0,
                count: 2
            }
        );
        assert_eq!(agg[&(1, 15 * m)].count, 1);
        assert_eq!(aggregate(&rows, Bucket::Hour)[&(1, 0)].count, 3);
    }

    #[test]
    fn parses_api_spellings() {
        for b in Bucket::ALL {
            assert_eq!(b.as_str().parse::<Bucket>().unwrap(), b);
        }
        assert!("5m".parse::<Bucket>().is_err());
    }
}
