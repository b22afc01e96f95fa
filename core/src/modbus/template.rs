//! Register maps for a device model ([`MapTemplate`], [`PointTemplate`]): parsed from TOML,
//! checked, and instantiated for one device.

use serde::Deserialize;
use toml::Spanned;

use super::error::{MapProblem, RegisterMapError};
use super::map::{PointDef, RegisterMap, View, check_limits, check_points, parse_unit};
use super::types::{Table, ValueType, WordOrder, WriteRange};
use super::{DEFAULT_MAX_GAP, DEVICE_PLACEHOLDER, MAX_BITS_PER_READ, MAX_REGISTERS_PER_READ};
use crate::ids::{DeviceId, SensorId};
use crate::units::Unit;

/// One point of a register-map template: like [`PointDef`] with a sensor-id template.
#[derive(Debug, Clone, PartialEq)]
pub struct PointTemplate {
    /// Sensor id with [`DEVICE_PLACEHOLDER`]s, e.g. `{device}-inlet-flow`.
    pub sensor: String,
    pub table: Table,
    pub address: u16,
    pub value_type: ValueType,
    pub order: WordOrder,
    pub scale: f64,
    pub offset: f64,
    pub unit: Unit,
    pub writable: Option<WriteRange>,
    /// The line of the point's `sensor` key, when parsed from TOML.
    pub line: Option<usize>,
}

/// A register map for a device model; [`Self::instantiate`] makes a [`RegisterMap`].
#[derive(Debug, Clone, PartialEq)]
pub struct MapTemplate {
    pub model: String,
    pub points: Vec<PointTemplate>,
    pub max_registers_per_read: u16,
    pub max_bits_per_read: u16,
    pub max_gap: u16,
}

impl MapTemplate {
    /// Parses and checks a register-map TOML text (format in the [module docs](super)).
    pub fn parse_toml(model: &str, text: &str) -> Result<MapTemplate, RegisterMapError> {
        let raw: RawMap = toml::from_str(text).map_err(|e| RegisterMapError {
            line: e.span().map(|s| line_of(text, s.start)),
            sensor: None,
            problem: MapProblem::Toml(e.message().trim().to_owned()),
        })?;
        let limit = |v: &Option<Spanned<u16>>, default: u16| {
            v.as_ref().map_or((default, None), |s| {
                (*s.get_ref(), Some(line_of(text, s.span().start)))
            })
        };
        let (regs, regs_line) = limit(&raw.max_registers_per_read, MAX_REGISTERS_PER_READ);
        let (bits, bits_line) = limit(&raw.max_bits_per_read, MAX_BITS_PER_READ);
        check_limits(regs, bits, regs_line, bits_line)?;

        let mut points = Vec::with_capacity(raw.point.len());
        for p in raw.point {
            let line = Some(line_of(text, p.sensor.span().start));
            let sensor = p.sensor.into_inner();
            let unit_text = p.unit.into_inner();
            let unit = parse_unit(&unit_text).ok_or_else(|| RegisterMapError {
                line,
                sensor: Some(sensor.clone()),
                problem: MapProblem::Unit(unit_text.clone()),
            })?;
            points.push(PointTemplate {
                sensor,
                table: p.table,
                address: p.address,
                value_type: p.value_type,
                order: p.order,
                scale: p.scale,
                offset: p.offset,
                unit,
                writable: p.writable,
                line,
            });
        }
        let map = MapTemplate {
            model: model.to_owned(),
            points,
            max_registers_per_read: regs,
            max_bits_per_read: bits,
            max_gap: raw.max_gap.unwrap_or(DEFAULT_MAX_GAP),
        };
        map.validate()?;
        Ok(map)
    }

    /// Checks the template; see the [module docs](super) for the rules. Sensor-id templates
    /// are checked with `device` in place of [`DEVICE_PLACEHOLDER`].
    pub fn validate(&self) -> Result<(), RegisterMapError> {
        check_limits(
            self.max_registers_per_read,
            self.max_bits_per_read,
            None,
            None,
        )?;
        for p in &self.points {
            SensorId::parse(p.sensor.replace(DEVICE_PLACEHOLDER, "device"))
                .map_err(|e| p.error(&p.sensor, MapProblem::SensorId(e)))?;
        }
        let views: Vec<View<'_>> = self.points.iter().map(|p| p.view(&p.sensor)).collect();
        check_points(&views, self.max_registers_per_read)
    }

    /// The map for one device: every [`DEVICE_PLACEHOLDER`] in a sensor id becomes `device`.
    /// The result is checked (errors name the instantiated id and the template's line).
    pub fn instantiate(&self, device: &DeviceId) -> Result<RegisterMap, RegisterMapError> {
        check_limits(
            self.max_registers_per_read,
            self.max_bits_per_read,
            None,
            None,
        )?;
        let mut ids = Vec::with_capacity(self.points.len());
        for p in &self.points {
            let id = p.sensor.replace(DEVICE_PLACEHOLDER, device.as_str());
            let sensor =
                SensorId::parse(id.clone()).map_err(|e| p.error(&id, MapProblem::SensorId(e)))?;
            ids.push(sensor);
        }
        let views: Vec<View<'_>> = self
            .points
            .iter()
            .zip(&ids)
            .map(|(p, id)| p.view(id.as_str()))
            .collect();
        check_points(&views, self.max_registers_per_read)?;
        let points = self
            .points
            .iter()
            .zip(ids)
            .map(|(p, sensor)| PointDef {
                sensor,
                table: p.table,
                address: p.address,
                value_type: p.value_type,
                order: p.order,
                scale: p.scale,
                offset: p.offset,
                unit: p.unit,
                writable: p.writable,
            })
            .collect();
        Ok(RegisterMap {
            model: self.model.clone(),
            points,
            max_registers_per_read: self.max_registers_per_read,
            max_bits_per_read: self.max_bits_per_read,
            max_gap: self.max_gap,
        })
    }
}

impl PointTemplate {
    fn view<'a>(&'a self, sensor: &'a str) -> View<'a> {
        View {
            sensor,
            line: self.line,
            table: self.table,
            address: self.address,
            value_type: self.value_type,
            scale: self.scale,
            offset: self.offset,
            unit: self.unit,
            writable: self.writable,
        }
    }

    fn error(&self, sensor: &str, problem: MapProblem) -> RegisterMapError {
        RegisterMapError {
            line: self.line,
            sensor: Some(sensor.to_owned()),
            problem,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMap {
    max_registers_per_read: Option<Spanned<u16>>,
    max_bits_per_read: Option<Spanned<u16>>,
    max_gap: Option<u16>,
    #[serde(default)]
    point: Vec<RawPoint>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPoint {
    sensor: Spanned<String>,
    table: Table,
    address: u16,
    #[serde(rename = "type")]
    value_type: ValueType,
    #[serde(default)]
    order: WordOrder,
    #[serde(default = "one")]
    scale: f64,
    #[serde(default)]
    offset: f64,
    unit: Spanned<String>,
    writable: Option<WriteRange>,
}

fn one() -> f64 {
    1.0
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::super::tests::{one, perr, spans};
    use super::super::{encode_registers, plan_reads};
    use super::*;
    use crate::ids::IdError;

    const EXAMPLE: &str = r#"# register map for device model "acme-rtu"
max_registers_per_read = 125
max_gap = 8
[[point]]
sensor = "{device}-inlet-flow"     # `{device}` is replaced by the device id when the map is instantiated
table = "holding"
address = 0
type = "f32"
order = "CDAB"
unit = "L/s"
scale = 1.0
[[point]]
sensor = "{device}-prv-setpoint"
table = "holding"
address = 10
type = "u16"
unit = "m"
scale = 0.1
writable = { min = 10.0, max = 60.0 }
"#;

    fn dev(s: &str) -> DeviceId {
        DeviceId::parse(s).unwrap()
    }

    // ---- TOML and validation ------------------------------------------------------------

    #[test]
    fn parses_and_instantiates_the_documented_example() {
        let t = MapTemplate::parse_toml("acme-rtu", EXAMPLE).unwrap();
        assert_eq!(t.model, "acme-rtu");
        assert_eq!(t.max_registers_per_read, 125);
        assert_eq!(t.max_bits_per_read, 2000);
        assert_eq!(t.max_gap, 8);
        assert_eq!(t.points.len(), 2);
        assert_eq!(t.points[0].sensor, "{device}-inlet-flow");
        assert_eq!(t.points[0].order, WordOrder::Cdab);
        assert_eq!(t.points[0].unit, Unit::LitrePerSecond);
        assert_eq!(t.points[0].line, Some(5));
        assert_eq!(t.points[1].order, WordOrder::Abcd, "default");
        assert_eq!(t.points[1].offset, 0.0, "default");
        assert_eq!(
            t.points[1].writable,
            Some(WriteRange {
                min: 10.0,
                max: 60.0
            })
        );

        let m = t.instantiate(&dev("RTU-A-01")).unwrap();
        m.validate().unwrap();
        assert_eq!(m.points[0].sensor.as_str(), "RTU-A-01-inlet-flow");
        let id = SensorId::parse("RTU-A-01-prv-setpoint").unwrap();
        let (i, sp) = m.point(&id).unwrap();
        assert_eq!(i, 1);
        assert_eq!(encode_registers(sp, 35.0), Ok(vec![350]));

        let reqs = plan_reads(&m);
        assert_eq!(spans(&reqs), [(Table::Holding, 0, 11)]);
    }

    #[test]
    fn toml_defaults_and_integers_for_floats() {
        let t = MapTemplate::parse_toml(
            "m",
            "[[point]]\nsensor = \"{device}-x\"\ntable = \"discrete_input\"\naddress = 7\ntype = \"bool\"\nunit = \"%\"\nscale = 100\n",
        )
        .unwrap();
        assert_eq!(t.max_gap, DEFAULT_MAX_GAP);
        assert_eq!(t.points[0].scale, 100.0);
        assert_eq!(t.points[0].table, Table::DiscreteInput);
        assert!(
            MapTemplate::parse_toml("empty", "")
                .unwrap()
                .points
                .is_empty()
        );
    }

    #[test]
    fn toml_errors_name_the_line() {
        let e = perr(&one("colour = \"red\"\n"));
        assert_eq!(e.line, Some(8), "{e}");
        assert!(matches!(e.problem, MapProblem::Toml(_)));
        assert!(e.to_string().contains("colour"), "{e}");

        let e = perr(&one("order = \"ABDC\"\n"));
        assert_eq!(e.line, Some(8), "{e}");
        assert!(e.to_string().contains("ABDC"), "{e}");

        let e = perr("[[point]]\nsensor = \"a\"\naddress = 70000\n");
        assert_eq!(e.line, Some(3), "{e}");

        let e = perr("max_gap = \n");
        assert_eq!(e.line, Some(1), "{e}");
    }

    #[test]
    fn instantiate_errors() {
        let t = MapTemplate::parse_toml("acme-rtu", EXAMPLE).unwrap();
        // Substitution can make an id too long.
        let long = dev(&"d".repeat(120));
        let e = t.instantiate(&long).unwrap_err();
        assert_eq!(e.line, Some(5));
        assert!(matches!(
            e.problem,
            MapProblem::SensorId(IdError::TooLong { .. })
        ));
        assert!(e.sensor.unwrap().ends_with("-inlet-flow"));

        // … or make two ids equal.
        let mut t2 = t.clone();
        t2.points[1].sensor = "X-inlet-flow".into();
        t2.validate().unwrap();
        let e = t2.instantiate(&dev("X")).unwrap_err();
        assert_eq!(
            e.problem,
            MapProblem::DuplicateSensor {
                first_line: Some(5)
            }
        );
        assert_eq!(e.sensor.as_deref(), Some("X-inlet-flow"));

        // Templates built in code are checked too.
        let mut t3 = t.clone();
        t3.max_registers_per_read = 0;
        assert!(matches!(
            t3.validate().unwrap_err().problem,
            MapProblem::Limit { .. }
        ));
        assert!(matches!(
            t3.instantiate(&dev("X")).unwrap_err().problem,
            MapProblem::Limit { .. }
        ));
        let mut t4 = t;
        t4.points[0].scale = f64::INFINITY;
        assert_eq!(
            t4.instantiate(&dev("X")).unwrap_err().problem,
            MapProblem::Scale(f64::INFINITY)
        );
    }
}
