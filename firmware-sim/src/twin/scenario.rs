//! Scenario files (TOML): the leaks to inject and the PRV set-point changes to make.
//!
//! ```toml
//! start = "2018-01-01T00:00:00Z"   # optional: first time step (--start overrides)
//! timezone = "Europe/Nicosia"      # optional: local time of demand patterns and network.toml
//! random_leaks = 2                 # optional: leaks drawn from the seed, besides those listed
//!
//! [[leak]]
//! pipe = "p257"
//! start = "2018-01-08T13:30:00Z"
//! end = "2018-12-31T23:55:00Z"     # optional: never repaired
//! diameter_mm = 11.843
//! type = "incipient"               # abrupt | incipient
//! peak = "2018-01-25T08:30:00Z"    # incipient: time of full size
//!
//! [[setpoint]]
//! link = "PRV-1"
//! at = "2018-02-01T00:00:00Z"
//! setting_m = 35.0
//! ```
//!
//! Unknown keys and bad values are errors that name the line; checks across fields name the
//! leak (by position and pipe).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use super::TwinError;
use super::leaks::{Leak, LeakType};

/// A PRV set-point change.
#[derive(Debug, Clone, PartialEq)]
pub struct Setpoint {
    pub link: String,
    pub at: DateTime<Utc>,
    pub setting_m: f64,
}

/// A checked scenario.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scenario {
    pub start: Option<DateTime<Utc>>,
    pub timezone: Option<Tz>,
    pub random_leaks: usize,
    pub leaks: Vec<Leak>,
    pub setpoints: Vec<Setpoint>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    start: Option<String>,
    timezone: Option<String>,
    #[serde(default)]
    random_leaks: usize,
    #[serde(default)]
    leak: Vec<RawLeak>,
    #[serde(default)]
    setpoint: Vec<RawSetpoint>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLeak {
    pipe: String,
    start: String,
    end: Option<String>,
    diameter_mm: f64,
    #[serde(rename = "type")]
    leak_type: String,
    peak: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSetpoint {
    link: String,
    at: String,
    setting_m: f64,
}

fn time(what: &str, s: &str) -> Result<DateTime<Utc>, TwinError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            TwinError::Scenario(format!(
                "{what}: `{s}` is not an RFC 3339 time such as 2018-01-01T00:00:00Z ({e})"
            ))
        })
}

impl Scenario {
    /// Parses and checks a scenario; `name` (the file) prefixes every error.
    pub fn parse(text: &str, name: &str) -> Result<Self, TwinError> {
        let raw: RawScenario = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("line {line}, column {column}: ")
            });
            TwinError::Scenario(format!(
                "{name}: {}{}",
                at.unwrap_or_default(),
                e.message().trim_end()
            ))
        })?;
        let err = |m: String| TwinError::Scenario(format!("{name}: {m}"));
        let start = match &raw.start {
            Some(s) => Some(time("start", s).map_err(|e| err(e.to_string()))?),
            None => None,
        };
        let timezone = match &raw.timezone {
            Some(tz) => Some(
                tz.parse::<Tz>()
                    .map_err(|_| err(format!("timezone `{tz}` is not an IANA time zone name")))?,
            ),
            None => None,
        };
        let mut leaks = Vec::new();
        for (i, l) in raw.leak.iter().enumerate() {
            let what = format!("leak {} (pipe {})", i + 1, l.pipe);
            let t = |field: &str, s: &str| {
                time(&format!("{what}: {field}"), s).map_err(|e| err(e.to_string()))
            };
            let start = t("start", &l.start)?;
            let end = match &l.end {
                Some(s) => Some(t("end", s)?),
                None => None,
            };
            if end.is_some_and(|e| e <= start) {
                return Err(err(format!("{what}: end is not after start")));
            }
            if !(l.diameter_mm > 0.0 && l.diameter_mm <= 1000.0) {
                return Err(err(format!(
                    "{what}: diameter_mm {} is not in (0, 1000]",
                    l.diameter_mm
                )));
            }
            let leak_type = match l.leak_type.as_str() {
                "abrupt" => LeakType::Abrupt,
                "incipient" => LeakType::Incipient,
                other => {
                    return Err(err(format!(
                        "{what}: type `{other}` is neither `abrupt` nor `incipient`"
                    )));
                }
            };
            let peak = match (&l.peak, leak_type) {
                (Some(p), _) => t("peak", p)?,
                (None, LeakType::Abrupt) => start,
                (None, LeakType::Incipient) => {
                    return Err(err(format!("{what}: an incipient leak needs `peak`")));
                }
            };
            if peak < start || end.is_some_and(|e| peak > e) {
                return Err(err(format!("{what}: peak is not between start and end")));
            }
            leaks.push(Leak {
                pipe: l.pipe.clone(),
                start,
                end,
                diameter_mm: l.diameter_mm,
                leak_type,
                peak,
            });
        }
        let mut setpoints = Vec::new();
        for (i, s) in raw.setpoint.iter().enumerate() {
            let what = format!("setpoint {} (link {})", i + 1, s.link);
            let at = time(&format!("{what}: at"), &s.at).map_err(|e| err(e.to_string()))?;
            if !(s.setting_m.is_finite() && s.setting_m >= 0.0) {
                return Err(err(format!(
                    "{what}: setting_m {} is not a pressure ≥ 0",
                    s.setting_m
                )));
            }
            setpoints.push(Setpoint {
                link: s.link.clone(),
                at,
                setting_m: s.setting_m,
            });
        }
        setpoints.sort_by_key(|s| s.at);
        Ok(Self {
            start,
            timezone,
            random_leaks: raw.random_leaks,
            leaks,
            setpoints,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_leaks_and_setpoints() {
        let s = Scenario::parse(
            "timezone = \"Europe/Nicosia\"\n[[leak]]\npipe = \"p1\"\nstart = \"2018-01-01T00:00:00Z\"\n\
             diameter_mm = 12.5\ntype = \"abrupt\"\n[[setpoint]]\nlink = \"PRV-1\"\nat = \"2018-01-02T00:00:00Z\"\nsetting_m = 30\n",
            "s.toml",
        )
        .unwrap();
        assert_eq!(s.leaks.len(), 1);
        assert_eq!(s.leaks[0].peak, s.leaks[0].start);
        assert_eq!(s.leaks[0].end, None);
        assert_eq!(s.setpoints[0].setting_m, 30.0);
        assert_eq!(s.timezone, Some(chrono_tz::Europe::Nicosia));
    }

    #[test]
    fn errors_name_the_key_line_or_leak() {
        let e = Scenario::parse("random_leaks = 1\nleaks = []\n", "s.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("s.toml") && e.contains("leaks") && e.contains("line 2"),
            "{e}"
        );
        let e = Scenario::parse(
            "[[leak]]\npipe = \"p9\"\nstart = \"2018-01-01T00:00:00Z\"\ndiameter_mm = 10\ntype = \"incipient\"\n",
            "s.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("leak 1 (pipe p9)") && e.contains("peak"), "{e}");
        let e = Scenario::parse(
            "[[leak]]\npipe = \"p9\"\nstart = \"yesterday\"\ndiameter_mm = 10\ntype = \"abrupt\"\n",
            "s.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("leak 1 (pipe p9): start") && e.contains("yesterday"),
            "{e}"
        );
    }
}
