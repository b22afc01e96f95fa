//! Declared windows: spans of time that people declare for a part of the network, which the
//! analytics then treat differently.
//!
//! - [`WindowKind::Exclusion`]: a declared event (source shortage, a burst being repaired,
//!   planned works) during which a DMA's or a pressure sensor's readings are left out of the
//!   pressure compliance rate (压力合格率), as the national rule allows with an audited reason.
//! - [`WindowKind::Maintenance`]: a quality station (or one of its sensors) is being serviced:
//!   its readings are neither events nor instrument faults.
//!
//! [`DeclaredWindow::new`] checks a window once (one subject that fits the kind, `from <
//! to`, a reason); who declared it and when is the store's business (and its audit log's).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::alert::{InputError, Note};
use crate::ids::{DmaId, SensorId, StationId};

/// Longest span a window may declare (a year): a longer one is almost surely a typo.
pub const MAX_WINDOW_DAYS: i64 = 366;

/// What a declared window does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// Readings left out of the pressure compliance rate.
    Exclusion,
    /// A quality station or sensor being serviced.
    Maintenance,
}

impl WindowKind {
    /// Both kinds.
    pub const ALL: [WindowKind; 2] = [WindowKind::Exclusion, WindowKind::Maintenance];

    /// The name used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            WindowKind::Exclusion => "exclusion",
            WindowKind::Maintenance => "maintenance",
        }
    }
}

impl fmt::Display for WindowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WindowKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WindowKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown window kind `{s}` (expected exclusion or maintenance)"))
    }
}

/// What a window covers: one DMA, one station or one sensor.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowSubject {
    Dma(DmaId),
    Station(StationId),
    Sensor(SensorId),
}

/// A checked declared window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeclaredWindow {
    pub kind: WindowKind,
    #[serde(flatten)]
    pub subject: WindowSubject,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub reason: Note,
}

impl DeclaredWindow {
    /// Checks a window: an exclusion covers a DMA or a sensor, maintenance a station or a
    /// sensor; `from` is before `to`, at most [`MAX_WINDOW_DAYS`] apart.
    pub fn new(
        kind: WindowKind,
        subject: WindowSubject,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        reason: Note,
    ) -> Result<Self, InputError> {
        match (kind, &subject) {
            (WindowKind::Exclusion, WindowSubject::Station(_)) => {
                return Err(InputError::new(
                    "station",
                    "an exclusion covers a DMA or a pressure sensor, not a station",
                ));
            }
            (WindowKind::Maintenance, WindowSubject::Dma(_)) => {
                return Err(InputError::new(
                    "dma",
                    "maintenance covers a station or a sensor, not a DMA",
                ));
            }
            _ => {}
        }
        if from >= to {
            return Err(InputError::new(
                "to",
                format!(
                    "{} is not after `from` {}",
                    to.to_rfc3339(),
                    from.to_rfc3339()
                ),
            ));
        }
        if (to - from).num_days() > MAX_WINDOW_DAYS {
            return Err(InputError::new(
                "to",
                format!("the window is longer than {MAX_WINDOW_DAYS} days"),
            ));
        }
        Ok(Self {
            kind,
            subject,
            from,
            to,
            reason,
        })
    }

    /// Whether `t` lies in `[from, to)`.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.from <= t && t < self.to
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn reason() -> Note {
        Note::parse("reason", "source shortage at the plant").unwrap()
    }

    #[test]
    fn kinds_round_trip_and_unknown_names_are_refused() {
        for k in WindowKind::ALL {
            assert_eq!(k.as_str().parse::<WindowKind>().unwrap(), k);
        }
        assert!(
            "outage"
                .parse::<WindowKind>()
                .unwrap_err()
                .contains("`outage`")
        );
    }

    #[test]
    fn subjects_must_fit_the_kind_and_spans_be_sane() {
        let dma = WindowSubject::Dma(DmaId::parse("A").unwrap());
        let station = WindowSubject::Station(StationId::parse("S1").unwrap());
        let (a, b) = (t("2026-03-01T00:00:00Z"), t("2026-03-01T06:00:00Z"));
        let w = DeclaredWindow::new(WindowKind::Exclusion, dma.clone(), a, b, reason()).unwrap();
        assert!(w.contains(a) && !w.contains(b));
        assert!(
            DeclaredWindow::new(WindowKind::Maintenance, station.clone(), a, b, reason()).is_ok()
        );

        let e = DeclaredWindow::new(WindowKind::Exclusion, station, a, b, reason()).unwrap_err();
        assert_eq!(e.field, "station");
        let e =
            DeclaredWindow::new(WindowKind::Maintenance, dma.clone(), a, b, reason()).unwrap_err();
        assert_eq!(e.field, "dma");
        let e =
            DeclaredWindow::new(WindowKind::Exclusion, dma.clone(), b, a, reason()).unwrap_err();
        assert_eq!(e.field, "to");
        let e = DeclaredWindow::new(
            WindowKind::Exclusion,
            dma,
            a,
            t("2027-06-01T00:00:00Z"),
            reason(),
        )
        .unwrap_err();
        assert!(e.problem.contains("366 days"), "{e}");
    }
}
