//! What the quality detectors know about each station signal: its role, valid range,
//! resolution, the smallest change that matters, floor values and set-point tiers — all in
//! canonical units, from `network.toml` with GB 5749-2022 defaults.

use waterline_core::network::{Sensor, SignalRole};
use waterline_core::{SensorId, SensorKind};

/// How serious a set-point crossing is (CONTRACTS §4 `severity`: info / warning / alarm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    Advisory,
    Alert,
    Alarm,
}

impl Tier {
    /// The name lab staff use.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Advisory => "advisory",
            Tier::Alert => "alert",
            Tier::Alarm => "alarm",
        }
    }

    /// The event severity of this tier.
    pub fn severity(self) -> waterline_core::Severity {
        match self {
            Tier::Advisory => waterline_core::Severity::Info,
            Tier::Alert => waterline_core::Severity::Warning,
            Tier::Alarm => waterline_core::Severity::Alarm,
        }
    }
}

/// Which side of the acceptable range a set point guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Low,
    High,
}

/// One set point: crossing `value` on `side` raises a `quality_threshold` of `tier`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SetPoint {
    pub side: Side,
    pub tier: Tier,
    pub value: f64,
}

impl SetPoint {
    /// Whether `x` lies beyond this set point.
    pub fn crossed_by(&self, x: f64) -> bool {
        match self.side {
            Side::Low => x < self.value,
            Side::High => x > self.value,
        }
    }
}

/// A station signal as the detectors see it.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalSpec {
    pub sensor: SensorId,
    pub kind: SensorKind,
    pub role: SignalRole,
    /// Values outside are impossible: treated as missing and reported as a fault.
    pub valid: (f64, f64),
    /// Instrument resolution (changes below it are noise).
    pub resolution: f64,
    /// The smallest deviation that is worth an alarm, whatever the signal's own noise.
    pub min_change: f64,
    /// Values an instrument reports when it is not measuring (exact zero, pH buffer 4.0).
    pub floors: Vec<f64>,
    /// Set points, most severe last per side.
    pub set_points: Vec<SetPoint>,
    /// The primary analyser this one duplicates (`redundant_of`), if it is a redundant one.
    pub redundant_of: Option<SensorId>,
}

/// Whether a sensor kind belongs at a monitoring station.
pub fn is_station_kind(kind: SensorKind) -> bool {
    matches!(
        kind,
        SensorKind::Chlorine
            | SensorKind::Turbidity
            | SensorKind::Ph
            | SensorKind::Conductivity
            | SensorKind::Temperature
            | SensorKind::Redox
            | SensorKind::Toc
            | SensorKind::Flow
            | SensorKind::Pressure
    )
}

/// The role a signal has when `network.toml` does not say: water-quality parameters may raise
/// events, temperature, flow and pressure only explain them.
pub fn default_role(kind: SensorKind) -> SignalRole {
    match kind {
        SensorKind::Chlorine
        | SensorKind::Turbidity
        | SensorKind::Ph
        | SensorKind::Conductivity
        | SensorKind::Redox
        | SensorKind::Toc => SignalRole::Quality,
        _ => SignalRole::Context,
    }
}

/// Default resolution in canonical units when the network does not state one.
fn default_resolution(kind: SensorKind) -> f64 {
    match kind {
        SensorKind::Turbidity => 0.001,
        SensorKind::Conductivity | SensorKind::Temperature | SensorKind::Redox => 0.1,
        SensorKind::Flow | SensorKind::Pressure => 0.01,
        _ => 0.01,
    }
}

/// The smallest deviation worth reporting, in canonical units (a floor under the signal's own
/// spread so that a very steady signal does not alarm on a change nobody would act on).
fn default_min_change(kind: SensorKind) -> f64 {
    match kind {
        SensorKind::Chlorine => 0.05,
        SensorKind::Turbidity => 0.03,
        SensorKind::Ph => 0.05,
        SensorKind::Conductivity => 3.0,
        SensorKind::Toc => 0.1,
        SensorKind::Redox => 10.0,
        SensorKind::Temperature => 0.3,
        _ => 0.0,
    }
}

/// GB 5749-2022 set points and the lab's tiers (turbidity 1 / 2 / 4 NTU).
fn default_set_points(kind: SensorKind) -> Vec<SetPoint> {
    let sp = |side, tier, value| SetPoint { side, tier, value };
    match kind {
        SensorKind::Turbidity => vec![
            sp(Side::High, Tier::Advisory, 1.0),
            sp(Side::High, Tier::Alert, 2.0),
            sp(Side::High, Tier::Alarm, 4.0),
        ],
        SensorKind::Chlorine => vec![
            sp(Side::Low, Tier::Advisory, 0.2),
            sp(Side::Low, Tier::Alarm, 0.05),
            sp(Side::High, Tier::Alarm, 2.0),
        ],
        SensorKind::Ph => vec![
            sp(Side::Low, Tier::Alarm, 6.5),
            sp(Side::High, Tier::Alarm, 8.5),
        ],
        _ => Vec::new(),
    }
}

impl SignalSpec {
    /// The detectors' view of a described sensor. A configured tier (`advisory_*`, `alert_*`,
    /// `alarm_*`) replaces the default of its tier and side; after a configured alarm, the
    /// default milder tiers of that side stay only where they are less severe than it.
    pub fn from_sensor(s: &Sensor) -> Self {
        let canonical = s.kind.canonical_unit();
        let conv = |v: f64| s.unit.convert(v, canonical).unwrap_or(v);
        // A resolution is a difference, so only the scale of the conversion applies.
        let resolution = s
            .resolution
            .map(|r| (conv(r) - conv(0.0)).abs())
            .filter(|r| *r > 0.0)
            .unwrap_or_else(|| default_resolution(s.kind));
        let mut set_points = default_set_points(s.kind);
        for (configured, side, tier) in [
            (s.advisory_low, Side::Low, Tier::Advisory),
            (s.advisory_high, Side::High, Tier::Advisory),
            (s.alert_low, Side::Low, Tier::Alert),
            (s.alert_high, Side::High, Tier::Alert),
        ] {
            if let Some(v) = configured.map(conv) {
                set_points.retain(|p| (p.side, p.tier) != (side, tier));
                set_points.push(SetPoint {
                    side,
                    tier,
                    value: v,
                });
            }
        }
        let configured_tier = |p: &SetPoint| match (p.side, p.tier) {
            (Side::Low, Tier::Advisory) => s.advisory_low.is_some(),
            (Side::High, Tier::Advisory) => s.advisory_high.is_some(),
            (Side::Low, Tier::Alert) => s.alert_low.is_some(),
            (Side::High, Tier::Alert) => s.alert_high.is_some(),
            _ => false,
        };
        for (configured, side) in [(s.alarm_low, Side::Low), (s.alarm_high, Side::High)] {
            let Some(v) = configured.map(conv) else {
                continue;
            };
            set_points.retain(|p| {
                p.side != side
                    || (p.tier != Tier::Alarm
                        && (configured_tier(p)
                            || match side {
                                Side::Low => p.value > v,
                                Side::High => p.value < v,
                            }))
            });
            set_points.push(SetPoint {
                side,
                tier: Tier::Alarm,
                value: v,
            });
        }
        set_points.sort_by_key(|p| (p.side == Side::High, p.tier));
        let floors = match s.kind {
            SensorKind::Ph => vec![0.0, 4.0, 14.0],
            SensorKind::Chlorine
            | SensorKind::Turbidity
            | SensorKind::Toc
            | SensorKind::Conductivity => vec![0.0],
            // A transducer without supply or signal reads exactly 0; a main losing its
            // pressure to a burst reads small values, not a steady 0.00 (docs/pressure.md).
            SensorKind::Pressure => vec![0.0],
            _ => Vec::new(),
        };
        SignalSpec {
            sensor: s.id.clone(),
            kind: s.kind,
            role: s.role.unwrap_or_else(|| default_role(s.kind)),
            valid: s.kind.plausible_range(),
            resolution,
            min_change: default_min_change(s.kind).max(2.0 * resolution),
            floors,
            set_points,
            redundant_of: s.redundant_of.clone(),
        }
    }

    /// How far two good measurements of the same water may differ, at `level` (canonical
    /// units): the usual acceptance when an online analyser is verified against a lab grab
    /// sample or a second analyser — chlorine ±0.1 mg/L or 15 %, turbidity ±0.1 NTU or 15 %,
    /// pH ±0.2, conductivity ±10 µS/cm or 5 %, TOC ±0.3 mg/L or 15 %, temperature ±0.5 °C,
    /// redox ±20 mV — and never less than four resolution steps.
    pub fn agreement_tolerance(&self, level: f64) -> f64 {
        let level = level.abs();
        let tol = match self.kind {
            SensorKind::Chlorine | SensorKind::Turbidity => (0.15 * level).max(0.1),
            SensorKind::Ph => 0.2,
            SensorKind::Conductivity => (0.05 * level).max(10.0),
            SensorKind::Toc => (0.15 * level).max(0.3),
            SensorKind::Temperature => 0.5,
            SensorKind::Redox => 20.0,
            _ => (0.05 * level).max(self.min_change),
        };
        tol.max(4.0 * self.resolution)
    }

    /// Whether this signal may raise quality events and threshold alerts.
    pub fn is_quality(&self) -> bool {
        self.role == SignalRole::Quality
    }

    /// Whether a change of this signal alone may be a water-quality event (chlorine residual,
    /// turbidity and pH are health parameters; conductivity, TOC and redox only corroborate).
    pub fn may_alarm_alone(&self) -> bool {
        self.is_quality()
            && matches!(
                self.kind,
                SensorKind::Chlorine | SensorKind::Turbidity | SensorKind::Ph
            )
    }

    /// Whether a single-step excursion is part of the signal's normal life at a station: the
    /// flow or pressure in the main changes in one step when a pump starts or a valve moves,
    /// so an isolated outlier there is operation, not an instrument spike. (The pressure
    /// analytics still check their pressure loggers for spikes.)
    pub fn steps_with_operations(&self) -> bool {
        matches!(self.kind, SensorKind::Flow | SensorKind::Pressure)
    }

    /// Whether `x` is a value the instrument reports when not measuring.
    pub fn is_floor(&self, x: f64) -> bool {
        self.floors
            .iter()
            .any(|f| (x - f).abs() <= self.resolution / 2.0 + 1e-12)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use waterline_core::Network;

    fn spec(extra: &str, kind: &str, unit: &str) -> SignalSpec {
        let text = format!(
            "timezone = \"UTC\"\n[[sensor]]\nid = \"s\"\nkind = \"{kind}\"\nunit = \"{unit}\"\nstation = \"B\"\n{extra}"
        );
        let net = Network::parse(&text).expect("network parses");
        SignalSpec::from_sensor(net.sensors.values().next().expect("one sensor"))
    }

    #[test]
    fn defaults_follow_gb5749_and_roles() {
        let t = spec("", "turbidity", "NTU");
        assert!(t.is_quality());
        let tiers: Vec<_> = t.set_points.iter().map(|p| (p.tier, p.value)).collect();
        assert_eq!(
            tiers,
            vec![
                (Tier::Advisory, 1.0),
                (Tier::Alert, 2.0),
                (Tier::Alarm, 4.0)
            ]
        );
        let temp = spec("", "temperature", "degC");
        assert!(!temp.is_quality());
        assert!(temp.set_points.is_empty());
        let ctx = spec("role = \"context\"", "chlorine", "mg/L");
        assert!(!ctx.is_quality());
    }

    #[test]
    fn configured_alarm_replaces_the_default_and_drops_tiers_beyond_it() {
        let t = spec("alarm_high = 1.5\nresolution = 0.01", "turbidity", "NTU");
        let tiers: Vec<_> = t.set_points.iter().map(|p| (p.tier, p.value)).collect();
        assert_eq!(tiers, vec![(Tier::Advisory, 1.0), (Tier::Alarm, 1.5)]);
        assert_eq!(t.resolution, 0.01);
        let c = spec("alarm_high = 4.0", "chlorine", "mg/L");
        assert!(c.set_points.contains(&SetPoint {
            side: Side::High,
            tier: Tier::Alarm,
            value: 4.0
        }));
        assert!(!c.set_points.iter().any(|p| p.value == 2.0));
    }

    #[test]
    fn configured_milder_tiers_replace_the_defaults() {
        // A works' own tighter turbidity tiers, in NTU, and a chlorine alert floor.
        let t = spec(
            "advisory_high = 0.3\nalert_high = 0.5\nalarm_high = 1.0",
            "turbidity",
            "NTU",
        );
        let tiers: Vec<_> = t.set_points.iter().map(|p| (p.tier, p.value)).collect();
        assert_eq!(
            tiers,
            vec![
                (Tier::Advisory, 0.3),
                (Tier::Alert, 0.5),
                (Tier::Alarm, 1.0)
            ]
        );
        let c = spec("alert_low = 0.1", "chlorine", "mg/L");
        let low: Vec<_> = c
            .set_points
            .iter()
            .filter(|p| p.side == Side::Low)
            .map(|p| (p.tier, p.value))
            .collect();
        assert_eq!(
            low,
            vec![
                (Tier::Advisory, 0.2),
                (Tier::Alert, 0.1),
                (Tier::Alarm, 0.05)
            ]
        );
    }

    #[test]
    fn floors_are_resolution_aware() {
        let ph = spec("resolution = 0.01", "ph", "pH");
        assert!(ph.is_floor(4.0));
        assert!(ph.is_floor(4.004));
        assert!(!ph.is_floor(4.02));
        assert!(!ph.is_floor(7.0));
    }
}
