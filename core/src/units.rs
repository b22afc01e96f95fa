//! Sensor kinds, units and conversion to the canonical unit of each kind.
//!
//! Canonical units (what the store holds): flow m³/h, pressure m head, volume m³, level m,
//! chlorine and TOC mg/L, turbidity NTU, pH, conductivity µS/cm, temperature °C, redox mV,
//! battery %. Pressure head assumes water at 1000 kg/m³ and standard gravity 9.806 65 m/s².

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Pascal per metre of water head (ρ = 1000 kg/m³, g = 9.806 65 m/s²).
const PA_PER_M_HEAD: f64 = 9_806.65;

/// What a sensor measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SensorKind {
    Flow,
    Pressure,
    Volume,
    Level,
    Chlorine,
    Turbidity,
    Ph,
    Conductivity,
    Temperature,
    Redox,
    Toc,
    Battery,
}

impl SensorKind {
    /// Every kind, in the order CONTRACTS §1 lists them.
    pub const ALL: [SensorKind; 12] = [
        SensorKind::Flow,
        SensorKind::Pressure,
        SensorKind::Volume,
        SensorKind::Level,
        SensorKind::Chlorine,
        SensorKind::Turbidity,
        SensorKind::Ph,
        SensorKind::Conductivity,
        SensorKind::Temperature,
        SensorKind::Redox,
        SensorKind::Toc,
        SensorKind::Battery,
    ];

    /// The name used in `network.toml`, the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            SensorKind::Flow => "flow",
            SensorKind::Pressure => "pressure",
            SensorKind::Volume => "volume",
            SensorKind::Level => "level",
            SensorKind::Chlorine => "chlorine",
            SensorKind::Turbidity => "turbidity",
            SensorKind::Ph => "ph",
            SensorKind::Conductivity => "conductivity",
            SensorKind::Temperature => "temperature",
            SensorKind::Redox => "redox",
            SensorKind::Toc => "toc",
            SensorKind::Battery => "battery",
        }
    }

    /// The unit the store holds values of this kind in.
    pub fn canonical_unit(self) -> Unit {
        match self {
            SensorKind::Flow => Unit::CubicMetrePerHour,
            SensorKind::Pressure | SensorKind::Level => Unit::Metre,
            SensorKind::Volume => Unit::CubicMetre,
            SensorKind::Chlorine | SensorKind::Toc => Unit::MilligramPerLitre,
            SensorKind::Turbidity => Unit::Ntu,
            SensorKind::Ph => Unit::Ph,
            SensorKind::Conductivity => Unit::MicrosiemensPerCm,
            SensorKind::Temperature => Unit::DegreeCelsius,
            SensorKind::Redox => Unit::Millivolt,
            SensorKind::Battery => Unit::Percent,
        }
    }

    /// The physically possible range of a canonical value of this kind. A value outside it
    /// is an instrument or transmission fault, not water behaviour.
    pub fn plausible_range(self) -> (f64, f64) {
        match self {
            SensorKind::Flow => (-100_000.0, 100_000.0),
            SensorKind::Pressure => (-15.0, 2_000.0),
            SensorKind::Level => (-100.0, 1_000.0),
            SensorKind::Volume => (0.0, 1e12),
            SensorKind::Chlorine | SensorKind::Toc => (0.0, 1_000.0),
            SensorKind::Turbidity => (0.0, 10_000.0),
            SensorKind::Ph => (0.0, 14.0),
            SensorKind::Conductivity => (0.0, 200_000.0),
            SensorKind::Temperature => (-50.0, 100.0),
            SensorKind::Redox => (-2_000.0, 2_000.0),
            SensorKind::Battery => (0.0, 100.0),
        }
    }

    /// Whether `unit` may be used for a sensor of this kind.
    pub fn accepts(self, unit: Unit) -> bool {
        unit.dimension() == self.canonical_unit().dimension()
            && !(self == SensorKind::Level
                && unit.dimension() == Dimension::Pressure
                && unit != Unit::Metre)
    }
}

impl fmt::Display for SensorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown sensor kind name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown sensor kind `{0}`; expected one of flow, pressure, volume, level, chlorine, turbidity, ph, conductivity, temperature, redox, toc, battery"
)]
pub struct UnknownKind(pub String);

impl FromStr for SensorKind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SensorKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

impl Serialize for SensorKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SensorKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Physical dimension: units of one dimension convert into each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    Flow,
    Pressure,
    Volume,
    MassConcentration,
    Turbidity,
    Ph,
    Conductivity,
    Temperature,
    Potential,
    Fraction,
}

/// A unit a device may report in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    CubicMetrePerHour,
    LitrePerSecond,
    LitrePerHour,
    /// Metre of water head (pressure) or metre of level.
    Metre,
    Bar,
    Kilopascal,
    Megapascal,
    Psi,
    CubicMetre,
    Litre,
    MilligramPerLitre,
    Ntu,
    Ph,
    MicrosiemensPerCm,
    DegreeCelsius,
    Millivolt,
    Percent,
}

impl Unit {
    /// Every unit.
    pub const ALL: [Unit; 17] = [
        Unit::CubicMetrePerHour,
        Unit::LitrePerSecond,
        Unit::LitrePerHour,
        Unit::Metre,
        Unit::Bar,
        Unit::Kilopascal,
        Unit::Megapascal,
        Unit::Psi,
        Unit::CubicMetre,
        Unit::Litre,
        Unit::MilligramPerLitre,
        Unit::Ntu,
        Unit::Ph,
        Unit::MicrosiemensPerCm,
        Unit::DegreeCelsius,
        Unit::Millivolt,
        Unit::Percent,
    ];

    /// The spelling used in `network.toml` and payloads (CONTRACTS §1).
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::CubicMetrePerHour => "m3/h",
            Unit::LitrePerSecond => "L/s",
            Unit::LitrePerHour => "L/h",
            Unit::Metre => "m",
            Unit::Bar => "bar",
            Unit::Kilopascal => "kPa",
            Unit::Megapascal => "MPa",
            Unit::Psi => "psi",
            Unit::CubicMetre => "m3",
            Unit::Litre => "L",
            Unit::MilligramPerLitre => "mg/L",
            Unit::Ntu => "NTU",
            Unit::Ph => "pH",
            Unit::MicrosiemensPerCm => "uS/cm",
            Unit::DegreeCelsius => "degC",
            Unit::Millivolt => "mV",
            Unit::Percent => "%",
        }
    }

    /// The dimension this unit measures.
    pub fn dimension(self) -> Dimension {
        match self {
            Unit::CubicMetrePerHour | Unit::LitrePerSecond | Unit::LitrePerHour => Dimension::Flow,
            Unit::Metre | Unit::Bar | Unit::Kilopascal | Unit::Megapascal | Unit::Psi => {
                Dimension::Pressure
            }
            Unit::CubicMetre | Unit::Litre => Dimension::Volume,
            Unit::MilligramPerLitre => Dimension::MassConcentration,
            Unit::Ntu => Dimension::Turbidity,
            Unit::Ph => Dimension::Ph,
            Unit::MicrosiemensPerCm => Dimension::Conductivity,
            Unit::DegreeCelsius => Dimension::Temperature,
            Unit::Millivolt => Dimension::Potential,
            Unit::Percent => Dimension::Fraction,
        }
    }

    /// The canonical unit of this unit's dimension (what the store holds values in).
    pub fn canonical(self) -> Unit {
        match self.dimension() {
            Dimension::Flow => Unit::CubicMetrePerHour,
            Dimension::Pressure => Unit::Metre,
            Dimension::Volume => Unit::CubicMetre,
            _ => self,
        }
    }

    /// The physically possible range of a canonical value of this unit's dimension, for a
    /// sensor whose kind is not known (the widest range of the kinds sharing the dimension).
    pub fn plausible_range(self) -> (f64, f64) {
        match self.dimension() {
            Dimension::Flow => SensorKind::Flow.plausible_range(),
            Dimension::Pressure => (-100.0, 2_000.0),
            Dimension::Volume => SensorKind::Volume.plausible_range(),
            Dimension::MassConcentration => SensorKind::Chlorine.plausible_range(),
            Dimension::Turbidity => SensorKind::Turbidity.plausible_range(),
            Dimension::Ph => SensorKind::Ph.plausible_range(),
            Dimension::Conductivity => SensorKind::Conductivity.plausible_range(),
            Dimension::Temperature => SensorKind::Temperature.plausible_range(),
            Dimension::Potential => SensorKind::Redox.plausible_range(),
            Dimension::Fraction => SensorKind::Battery.plausible_range(),
        }
    }

    /// Multiplier from this unit to the canonical unit of its dimension.
    fn factor(self) -> f64 {
        match self {
            Unit::LitrePerSecond => 3.6,
            Unit::LitrePerHour => 0.001,
            Unit::Bar => 100_000.0 / PA_PER_M_HEAD,
            Unit::Kilopascal => 1_000.0 / PA_PER_M_HEAD,
            Unit::Megapascal => 1_000_000.0 / PA_PER_M_HEAD,
            Unit::Psi => 6_894.757_293_168 / PA_PER_M_HEAD,
            Unit::Litre => 0.001,
            _ => 1.0,
        }
    }

    /// Converts `value` in this unit to `target`. Fails when the dimensions differ.
    pub fn convert(self, value: f64, target: Unit) -> Result<f64, UnitMismatch> {
        if self.dimension() != target.dimension() {
            return Err(UnitMismatch {
                from: self,
                to: target,
            });
        }
        if self == target {
            return Ok(value);
        }
        Ok(value * self.factor() / target.factor())
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Two units that do not measure the same thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot convert {from} to {to}")]
pub struct UnitMismatch {
    pub from: Unit,
    pub to: Unit,
}

/// An unknown unit spelling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown unit `{0}`; expected one of m3/h, L/s, L/h, m, bar, kPa, MPa, psi, m3, L, mg/L, NTU, pH, uS/cm, degC, mV, %"
)]
pub struct UnknownUnit(pub String);

impl FromStr for Unit {
    type Err = UnknownUnit;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unit = match s {
            "m3/h" | "m³/h" => Unit::CubicMetrePerHour,
            "L/s" | "l/s" => Unit::LitrePerSecond,
            "L/h" | "l/h" => Unit::LitrePerHour,
            "m" => Unit::Metre,
            "bar" => Unit::Bar,
            "kPa" => Unit::Kilopascal,
            "MPa" => Unit::Megapascal,
            "psi" => Unit::Psi,
            "m3" | "m³" => Unit::CubicMetre,
            "L" | "l" => Unit::Litre,
            "mg/L" | "mg/l" => Unit::MilligramPerLitre,
            "NTU" => Unit::Ntu,
            "pH" => Unit::Ph,
            "uS/cm" | "µS/cm" | "μS/cm" => Unit::MicrosiemensPerCm,
            "degC" | "°C" | "C" => Unit::DegreeCelsius,
            "mV" => Unit::Millivolt,
            "%" => Unit::Percent,
            other => return Err(UnknownUnit(other.to_owned())),
        };
        Ok(unit)
    }
}

impl Serialize for Unit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Unit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A value with its unit, as a device reported it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantity {
    pub value: f64,
    pub unit: Unit,
}

impl Quantity {
    /// A quantity of `value` in `unit`.
    pub fn new(value: f64, unit: Unit) -> Self {
        Self { value, unit }
    }

    /// The value in the canonical unit of `kind`; fails when the unit does not fit the kind.
    pub fn canonical_for(self, kind: SensorKind) -> Result<f64, UnitMismatch> {
        let target = kind.canonical_unit();
        if !kind.accepts(self.unit) {
            return Err(UnitMismatch {
                from: self.unit,
                to: target,
            });
        }
        self.unit.convert(self.value, target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn every_unit_round_trips_its_spelling() {
        for u in Unit::ALL {
            assert_eq!(u.as_str().parse::<Unit>().unwrap(), u);
        }
        for k in SensorKind::ALL {
            assert_eq!(k.as_str().parse::<SensorKind>().unwrap(), k);
        }
    }

    #[test]
    fn flow_conversions() {
        assert!(close(
            Unit::LitrePerSecond
                .convert(10.0, Unit::CubicMetrePerHour)
                .unwrap(),
            36.0
        ));
        assert!(close(
            Unit::LitrePerHour
                .convert(1500.0, Unit::CubicMetrePerHour)
                .unwrap(),
            1.5
        ));
        assert!(close(
            Unit::CubicMetrePerHour
                .convert(36.0, Unit::LitrePerSecond)
                .unwrap(),
            10.0
        ));
    }

    #[test]
    fn pressure_conversions_use_standard_water_head() {
        // 1 bar = 10.197 16 m of water at 1000 kg/m3 and g = 9.806 65.
        assert!(close(
            Unit::Bar.convert(1.0, Unit::Metre).unwrap(),
            10.197_162_129_779_283
        ));
        assert!(close(
            Unit::Megapascal.convert(0.14, Unit::Metre).unwrap(),
            14.276_026_981_690_996
        ));
        assert!(close(
            Unit::Kilopascal.convert(100.0, Unit::Bar).unwrap(),
            1.0
        ));
        assert!((Unit::Psi.convert(1.0, Unit::Metre).unwrap() - 0.703_07).abs() < 1e-5);
        assert!(close(
            Unit::Metre
                .convert(10.197_162_129_779_283, Unit::Bar)
                .unwrap(),
            1.0
        ));
    }

    #[test]
    fn canonical_units_match_the_kinds() {
        for k in SensorKind::ALL {
            assert_eq!(k.canonical_unit().canonical(), k.canonical_unit(), "{k}");
        }
        assert_eq!(Unit::Psi.canonical(), Unit::Metre);
        assert_eq!(Unit::LitrePerHour.canonical(), Unit::CubicMetrePerHour);
    }

    #[test]
    fn plausible_ranges_hold_real_values_and_refuse_impossible_ones() {
        let ok = |k: SensorKind, v: f64| {
            let (lo, hi) = k.plausible_range();
            (lo..=hi).contains(&v)
        };
        assert!(ok(SensorKind::Ph, 7.4));
        assert!(!ok(SensorKind::Ph, 15.0));
        assert!(ok(SensorKind::Pressure, 52.0));
        assert!(ok(SensorKind::Pressure, -8.0), "a vacuum is possible");
        assert!(!ok(SensorKind::Pressure, 1e6));
        assert!(!ok(SensorKind::Volume, -1.0));
        assert!(!ok(SensorKind::Chlorine, -0.5));
        for k in SensorKind::ALL {
            let (lo, hi) = k.plausible_range();
            assert!(lo < hi, "{k}");
            let (ulo, uhi) = k.canonical_unit().plausible_range();
            assert!(
                ulo <= lo && hi <= uhi,
                "{k}: the dimension's range contains the kind's"
            );
        }
    }

    #[test]
    fn volume_conversions() {
        assert!(close(
            Unit::Litre.convert(2500.0, Unit::CubicMetre).unwrap(),
            2.5
        ));
    }

    #[test]
    fn mismatched_dimensions_are_refused() {
        let err = Unit::Bar.convert(1.0, Unit::CubicMetre).unwrap_err();
        assert_eq!(err.to_string(), "cannot convert bar to m3");
        assert!(
            Quantity::new(1.0, Unit::LitrePerSecond)
                .canonical_for(SensorKind::Pressure)
                .is_err()
        );
        // A level is a length: a pressure unit other than metres makes no sense for it.
        assert!(
            Quantity::new(1.0, Unit::Bar)
                .canonical_for(SensorKind::Level)
                .is_err()
        );
        assert_eq!(
            Quantity::new(3.0, Unit::Metre).canonical_for(SensorKind::Level),
            Ok(3.0)
        );
    }

    #[test]
    fn unknown_spellings_name_the_input() {
        assert_eq!(
            "gal/min".parse::<Unit>().unwrap_err().0,
            "gal/min".to_owned()
        );
        assert!(
            "pressur"
                .parse::<SensorKind>()
                .unwrap_err()
                .to_string()
                .contains("`pressur`")
        );
    }
}
