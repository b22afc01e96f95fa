//! Scenario files (TOML): the leaks to inject and the PRV set-point changes to make.
//!
//! ```toml
//! start = "2018-01-01T00:00:00Z"   # optional: first time step (--start overrides)
//! timezone = "Europe/Nicosia"      # optional: local time of demand patterns and network.toml
//! random_leaks = 2                 # optional: leaks drawn from the seed, besides those listed
//! holidays = ["2018-01-01", "2018-01-06"]  # optional: local dates with a Sunday's demand, later morning
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
//!
//! random_quality_incidents = 1     # optional: incidents drawn from the seed
//! random_sensor_faults = 2         # optional: quality-analyser faults drawn from the seed
//! random_pressure_faults = 3       # optional: pressure-sensor faults drawn from the seed
//!
//! redundant_analysers = ["cl2"]    # optional: a second analyser of these signals at every
//!                                  # station (`<station>-cl2b`), for drift checks
//!
//! [[station]]                      # optional: replaces the default stations
//! id = "S1"
//! node = "n54"
//!
//! [[quality_incident]]
//! type = "contamination"           # contamination | ph_excursion
//! node = "n54"                     # or station = "S1"
//! start = "2018-01-03T10:00:00Z"
//! duration = "4h"                  # or end = "…"; units s, min, h, d
//! magnitude = 0.6                  # optional: chlorine share consumed / pH shift
//!
//! [[sensor_fault]]
//! type = "flatline"                # flatline | spike | drift | dropout | floor | maintenance
//! sensor = "S1-ph"                 # maintenance: station = "S1"; or a pressure sensor (not maintenance)
//! start = "2018-01-04T00:00:00Z"
//! end = "2018-01-04T06:00:00Z"     # or duration
//! magnitude = 0.5                  # optional: spike size, drift at the end
//! value = 4.0                      # optional: the floor reading
//!
//! [devices]                        # optional: device misbehaviour on the wire (`--broker`)
//! duplicate_rate = 0.01            # see `crate::field::misbehave` for every key
//! ```
//!
//! Unknown keys and bad values are errors that name the line; checks across fields name the
//! leak, incident or fault (by position and pipe, node or sensor).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use super::TwinError;
use super::faults::{FaultType, SensorFault, Target};
use super::incidents::{IncidentType, Origin, QualityIncident};
use super::leaks::{Leak, LeakType};
use super::stations::StationSpec;

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
    /// Local dates on which demand follows the holiday profile.
    pub holidays: Vec<chrono::NaiveDate>,
    pub random_leaks: usize,
    pub leaks: Vec<Leak>,
    pub setpoints: Vec<Setpoint>,
    /// Quality stations; empty: the default ones.
    pub stations: Vec<StationSpec>,
    pub quality_incidents: Vec<QualityIncident>,
    pub random_quality_incidents: usize,
    pub sensor_faults: Vec<SensorFault>,
    pub random_sensor_faults: usize,
    pub random_pressure_faults: usize,
    /// Signals with a second analyser at every station.
    pub redundant_analysers: Vec<super::stations::Channel>,
    /// Device misbehaviour on the wire (`[devices]`); `None`: the defaults.
    pub devices: Option<crate::field::misbehave::Misbehaviour>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    start: Option<String>,
    timezone: Option<String>,
    #[serde(default)]
    holidays: Vec<String>,
    #[serde(default)]
    random_leaks: usize,
    #[serde(default)]
    leak: Vec<RawLeak>,
    #[serde(default)]
    setpoint: Vec<RawSetpoint>,
    #[serde(default)]
    random_quality_incidents: usize,
    #[serde(default)]
    random_sensor_faults: usize,
    #[serde(default)]
    random_pressure_faults: usize,
    #[serde(default)]
    redundant_analysers: Vec<String>,
    #[serde(default)]
    station: Vec<RawStation>,
    #[serde(default)]
    quality_incident: Vec<RawIncident>,
    #[serde(default)]
    sensor_fault: Vec<RawFault>,
    devices: Option<crate::field::misbehave::Misbehaviour>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStation {
    id: String,
    node: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIncident {
    #[serde(rename = "type")]
    incident_type: String,
    node: Option<String>,
    station: Option<String>,
    start: String,
    end: Option<String>,
    duration: Option<String>,
    magnitude: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    #[serde(rename = "type")]
    fault_type: String,
    sensor: Option<String>,
    station: Option<String>,
    start: String,
    end: Option<String>,
    duration: Option<String>,
    magnitude: Option<f64>,
    value: Option<f64>,
}

/// Parses a duration such as `90min`, `4h`, `1.5h`, `2d` or `30s`, seconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = t.split_at(split);
    let n: f64 = num.trim().parse().ok()?;
    let unit_s = match unit {
        "s" => 1.0,
        "min" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => return None,
    };
    let secs = (n * unit_s).round();
    (n.is_finite() && secs > 0.0).then_some(secs as i64)
}

/// The end of a window given as `end` or `duration` (exactly one).
fn window_end(
    what: &str,
    start: DateTime<Utc>,
    end: &Option<String>,
    duration: &Option<String>,
) -> Result<DateTime<Utc>, String> {
    let end = match (end, duration) {
        (Some(e), None) => time(&format!("{what}: end"), e).map_err(|e| e.to_string())?,
        (None, Some(d)) => {
            let secs = parse_duration(d).ok_or_else(|| {
                format!("{what}: duration `{d}` is not a positive duration such as 90min, 4h or 2d")
            })?;
            start + chrono::TimeDelta::seconds(secs)
        }
        (Some(_), Some(_)) => return Err(format!("{what}: give `end` or `duration`, not both")),
        (None, None) => return Err(format!("{what}: needs `end` or `duration`")),
    };
    if end <= start {
        return Err(format!("{what}: end is not after start"));
    }
    Ok(end)
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
        let mut holidays = Vec::new();
        for h in &raw.holidays {
            holidays.push(
                chrono::NaiveDate::parse_from_str(h, "%Y-%m-%d")
                    .map_err(|_| err(format!("holiday `{h}` is not a date like 2018-01-01")))?,
            );
        }
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
        let mut redundant_analysers = Vec::new();
        for name in &raw.redundant_analysers {
            let c = super::stations::Channel::from_suffix(name)
                .filter(|c| c.from_analyser())
                .ok_or_else(|| {
                    err(format!(
                        "redundant_analysers: `{name}` is not an analyser signal \
                     (cl2, turb, ph, cond, toc, temp)"
                    ))
                })?;
            if !redundant_analysers.contains(&c) {
                redundant_analysers.push(c);
            }
        }
        let stations = raw
            .station
            .iter()
            .map(|s| StationSpec {
                id: s.id.clone(),
                node: s.node.clone(),
            })
            .collect();
        let mut quality_incidents = Vec::new();
        for (i, q) in raw.quality_incident.iter().enumerate() {
            let at = q
                .node
                .as_ref()
                .map(|n| format!("node {n}"))
                .or(q.station.as_ref().map(|s| format!("station {s}")))
                .unwrap_or_else(|| "no origin".into());
            let what = format!("quality_incident {} ({at})", i + 1);
            let incident_type = IncidentType::parse(&q.incident_type).ok_or_else(|| {
                err(format!(
                    "{what}: type `{}` is neither `contamination` nor `ph_excursion`",
                    q.incident_type
                ))
            })?;
            let origin = match (&q.node, &q.station) {
                (Some(n), None) => Origin::Node(n.clone()),
                (None, Some(s)) => Origin::Station(s.clone()),
                _ => {
                    return Err(err(format!(
                        "{what}: give exactly one of `node` and `station`"
                    )));
                }
            };
            let start =
                time(&format!("{what}: start"), &q.start).map_err(|e| err(e.to_string()))?;
            let end = window_end(&what, start, &q.end, &q.duration).map_err(err)?;
            let magnitude = q.magnitude.unwrap_or(incident_type.default_magnitude());
            let ok = match incident_type {
                IncidentType::Contamination => magnitude > 0.0 && magnitude <= 1.0,
                IncidentType::PhExcursion => magnitude.abs() >= 0.1 && magnitude.abs() <= 3.0,
            };
            if !ok {
                return Err(err(format!(
                    "{what}: magnitude {magnitude} is out of range ({})",
                    match incident_type {
                        IncidentType::Contamination => "the share of chlorine consumed, in (0, 1]",
                        IncidentType::PhExcursion => "a pH shift of ±0.1 to ±3",
                    }
                )));
            }
            quality_incidents.push(QualityIncident {
                incident_type,
                origin,
                start,
                end,
                magnitude,
            });
        }
        let mut sensor_faults = Vec::new();
        for (i, f) in raw.sensor_fault.iter().enumerate() {
            let on = f
                .sensor
                .as_ref()
                .or(f.station.as_ref())
                .map_or("no sensor", |s| s.as_str());
            let what = format!("sensor_fault {} ({on})", i + 1);
            let fault = FaultType::parse(&f.fault_type).ok_or_else(|| {
                err(format!(
                    "{what}: type `{}` is not one of flatline, spike, drift, dropout, floor, maintenance",
                    f.fault_type
                ))
            })?;
            let target = match (fault, &f.sensor, &f.station) {
                (FaultType::Maintenance, None, Some(s)) => Target::Station(s.clone()),
                (FaultType::Maintenance, _, _) => {
                    return Err(err(format!(
                        "{what}: maintenance takes a whole station: give `station` (not `sensor`)"
                    )));
                }
                (_, Some(s), None) => Target::Sensor(s.clone()),
                _ => {
                    return Err(err(format!(
                        "{what}: a {} fault takes one sensor: give `sensor` (not `station`)",
                        fault.as_str()
                    )));
                }
            };
            let start =
                time(&format!("{what}: start"), &f.start).map_err(|e| err(e.to_string()))?;
            let end = window_end(&what, start, &f.end, &f.duration).map_err(err)?;
            for (key, v) in [("magnitude", f.magnitude), ("value", f.value)] {
                if v.is_some_and(|v| !v.is_finite()) {
                    return Err(err(format!("{what}: {key} is not a finite number")));
                }
            }
            sensor_faults.push(SensorFault {
                fault,
                target,
                start,
                end,
                magnitude: f.magnitude,
                value: f.value,
            });
        }
        Ok(Self {
            start,
            timezone,
            holidays,
            random_leaks: raw.random_leaks,
            leaks,
            setpoints,
            stations,
            quality_incidents,
            random_quality_incidents: raw.random_quality_incidents,
            sensor_faults,
            random_sensor_faults: raw.random_sensor_faults,
            random_pressure_faults: raw.random_pressure_faults,
            redundant_analysers,
            devices: match raw.devices {
                Some(d) => {
                    d.check()
                        .map_err(|e| TwinError::Scenario(format!("{name}: {e}")))?;
                    Some(d)
                }
                None => None,
            },
        })
    }
}

/// Splits a scenario's faults: those on a station channel (`<station>-cl2`, `-turb`, `-ph`,
/// `-cond`, `-toc`, `-temp`, `-flow`, or a redundant analyser `-cl2b` …) or a whole station belong to
/// the quality analysers (first), the rest name pressure sensors (second).
pub fn split_faults(faults: Vec<SensorFault>) -> (Vec<SensorFault>, Vec<SensorFault>) {
    use super::stations::Channel;
    faults.into_iter().partition(|f| match &f.target {
        Target::Station(_) => true,
        Target::Sensor(id) => id.rsplit_once('-').is_some_and(|(_, suffix)| {
            Channel::from_suffix(suffix).is_some()
                || suffix
                    .strip_suffix('b')
                    .is_some_and(|c| Channel::from_suffix(c).is_some())
        }),
    })
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
    fn parses_stations_incidents_and_faults() {
        let s = Scenario::parse(
            "random_sensor_faults = 2\n[[station]]\nid = \"Q1\"\nnode = \"J5\"\n\
             [[quality_incident]]\ntype = \"ph_excursion\"\nstation = \"Q1\"\n\
             start = \"2026-01-05T01:00:00Z\"\nduration = \"90min\"\nmagnitude = -0.8\n\
             [[sensor_fault]]\ntype = \"maintenance\"\nstation = \"Q1\"\n\
             start = \"2026-01-05T01:00:00Z\"\nend = \"2026-01-05T03:00:00Z\"\n",
            "s.toml",
        )
        .unwrap();
        assert_eq!(s.random_sensor_faults, 2);
        assert_eq!(s.stations[0].node, "J5");
        let q = &s.quality_incidents[0];
        assert_eq!((q.end - q.start).num_minutes(), 90);
        assert_eq!(q.magnitude, -0.8);
        assert_eq!(q.origin, Origin::Station("Q1".into()));
        assert_eq!(s.sensor_faults[0].target, Target::Station("Q1".into()));
        assert_eq!(parse_duration("2d"), Some(172_800));
        assert_eq!(parse_duration("1.5h"), Some(5400));
        assert_eq!(parse_duration("0h"), None);
        assert_eq!(parse_duration("4 hours"), None);
    }

    #[test]
    fn quality_mistakes_name_the_line_or_entry() {
        let e = Scenario::parse(
            "[[station]]\nid = \"S1\"\nnode = \"J1\"\nkind = \"x\"\n",
            "s.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("kind") && e.contains("line 4"), "{e}");
        let e = Scenario::parse(
            "[[quality_incident]]\ntype = \"contamination\"\nnode = \"J1\"\nstart = \"2026-01-05T01:00:00Z\"\n",
            "s.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("quality_incident 1 (node J1)") && e.contains("duration"),
            "{e}"
        );
        let e = Scenario::parse(
            "[[quality_incident]]\ntype = \"contamination\"\nnode = \"J1\"\nstart = \"2026-01-05T01:00:00Z\"\nduration = \"1h\"\nmagnitude = 3\n",
            "s.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("magnitude 3"), "{e}");
        let e = Scenario::parse(
            "[[sensor_fault]]\ntype = \"maintenance\"\nsensor = \"S1-ph\"\nstart = \"2026-01-05T01:00:00Z\"\nduration = \"1h\"\n",
            "s.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("sensor_fault 1 (S1-ph)") && e.contains("station"),
            "{e}"
        );
    }

    #[test]
    fn holidays_are_dates() {
        let s = Scenario::parse("holidays = [\"2026-01-01\"]\n", "s.toml").unwrap();
        assert_eq!(
            s.holidays,
            ["2026-01-01".parse::<chrono::NaiveDate>().unwrap()]
        );
        let e = Scenario::parse("holidays = [\"1 Jan\"]\n", "s.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("s.toml") && e.contains("`1 Jan`"), "{e}");
    }

    #[test]
    fn device_misbehaviour_is_read_and_checked() {
        let s = Scenario::parse("[devices]\nlate_rate = 0.5\n", "s.toml").unwrap();
        let d = s.devices.unwrap();
        assert_eq!(d.late_rate, 0.5);
        assert_eq!(d.duplicate_rate, 0.01, "unset keys keep their defaults");
        let e = Scenario::parse("[devices]\nlate_rate = 1.5\n", "s.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("s.toml") && e.contains("late_rate"), "{e}");
        let e = Scenario::parse("[devices]\nlate = 0.1\n", "s.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("late"), "{e}");
        assert!(Scenario::parse("", "s.toml").unwrap().devices.is_none());
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
