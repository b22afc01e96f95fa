//! The register map of one device ([`RegisterMap`], [`PointDef`]) and the checks it shares
//! with [`MapTemplate`](super::MapTemplate) (the rules are in the module docs of [`super`]).

use std::collections::HashMap;

use super::codec::raw_to_be_bytes;
use super::error::{MapProblem, RegisterMapError};
use super::types::{Table, ValueType, WordOrder, WriteRange, register_count};
use super::{MAX_BITS_PER_READ, MAX_REGISTERS_PER_READ};
use crate::ids::SensorId;
use crate::units::{SensorKind, Unit};

/// One point of an instantiated register map.
#[derive(Debug, Clone, PartialEq)]
pub struct PointDef {
    pub sensor: SensorId,
    pub table: Table,
    /// 0-based protocol address of the first register (or bit).
    pub address: u16,
    pub value_type: ValueType,
    pub order: WordOrder,
    pub scale: f64,
    pub offset: f64,
    /// The unit of `raw * scale + offset`.
    pub unit: Unit,
    /// Present when the point may be written, with the accepted values.
    pub writable: Option<WriteRange>,
}

/// A register map instantiated for one device.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterMap {
    /// The device model the map describes.
    pub model: String,
    pub points: Vec<PointDef>,
    /// Most registers per read, 1..=125 (default 125).
    pub max_registers_per_read: u16,
    /// Most coils or discrete inputs per read, 1..=2000 (default 2000).
    pub max_bits_per_read: u16,
    /// Reads may span up to this many unused addresses between points (default 8).
    pub max_gap: u16,
}

impl RegisterMap {
    /// Checks the map; see the [module docs](super) for the rules.
    pub fn validate(&self) -> Result<(), RegisterMapError> {
        check_limits(
            self.max_registers_per_read,
            self.max_bits_per_read,
            None,
            None,
        )?;
        let views: Vec<View<'_>> = self
            .points
            .iter()
            .map(|p| View {
                sensor: p.sensor.as_str(),
                line: None,
                table: p.table,
                address: p.address,
                value_type: p.value_type,
                scale: p.scale,
                offset: p.offset,
                unit: p.unit,
                writable: p.writable,
            })
            .collect();
        check_points(&views, self.max_registers_per_read)
    }

    /// The index (into [`Self::points`]) and definition of the point for `sensor`.
    pub fn point(&self, sensor: &SensorId) -> Option<(usize, &PointDef)> {
        self.points
            .iter()
            .enumerate()
            .find(|(_, p)| &p.sensor == sensor)
    }

    /// Most addresses one read of `table` may cover.
    pub fn read_limit(&self, table: Table) -> u16 {
        if table.is_bits() {
            self.max_bits_per_read
        } else {
            self.max_registers_per_read
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Checking

/// A unit some sensor kind accepts.
pub(super) fn parse_unit(s: &str) -> Option<Unit> {
    s.parse::<Unit>()
        .ok()
        .filter(|u| SensorKind::ALL.iter().any(|k| k.accepts(*u)))
}

pub(super) fn check_limits(
    regs: u16,
    bits: u16,
    regs_line: Option<usize>,
    bits_line: Option<usize>,
) -> Result<(), RegisterMapError> {
    for (key, value, max, line) in [
        (
            "max_registers_per_read",
            regs,
            MAX_REGISTERS_PER_READ,
            regs_line,
        ),
        ("max_bits_per_read", bits, MAX_BITS_PER_READ, bits_line),
    ] {
        if !(1..=max).contains(&value) {
            return Err(RegisterMapError {
                line,
                sensor: None,
                problem: MapProblem::Limit { key, value, max },
            });
        }
    }
    Ok(())
}

/// What the checks need of a point, templated or instantiated.
pub(super) struct View<'a> {
    pub(super) sensor: &'a str,
    pub(super) line: Option<usize>,
    pub(super) table: Table,
    pub(super) address: u16,
    pub(super) value_type: ValueType,
    pub(super) scale: f64,
    pub(super) offset: f64,
    pub(super) unit: Unit,
    pub(super) writable: Option<WriteRange>,
}

impl View<'_> {
    fn error(&self, problem: MapProblem) -> RegisterMapError {
        RegisterMapError {
            line: self.line,
            sensor: Some(self.sensor.to_owned()),
            problem,
        }
    }

    fn check(&self, max_registers: u16) -> Result<(), RegisterMapError> {
        let (t, table) = (self.value_type, self.table);
        if (t == ValueType::Bool) != table.is_bits() {
            return Err(self.error(MapProblem::TableType {
                table,
                value_type: t,
            }));
        }
        let count = register_count(t);
        if !table.is_bits() && count > max_registers {
            return Err(self.error(MapProblem::TooWide {
                value_type: t,
                count,
                max: max_registers,
            }));
        }
        if u32::from(self.address) + u32::from(count) > 1 << 16 {
            return Err(self.error(MapProblem::AddressOverflow {
                address: self.address,
                count,
            }));
        }
        if !self.scale.is_finite() || self.scale == 0.0 {
            return Err(self.error(MapProblem::Scale(self.scale)));
        }
        if !self.offset.is_finite() {
            return Err(self.error(MapProblem::Offset(self.offset)));
        }
        if parse_unit(self.unit.as_str()).is_none() {
            return Err(self.error(MapProblem::Unit(self.unit.as_str().to_owned())));
        }
        if let Some(WriteRange { min, max }) = self.writable {
            if !matches!(table, Table::Holding | Table::Coil) {
                return Err(self.error(MapProblem::NotWritable {
                    table,
                    value_type: t,
                }));
            }
            if !(min.is_finite() && max.is_finite() && min < max) {
                return Err(self.error(MapProblem::WriteRange { min, max }));
            }
            let fits = |v: f64| raw_to_be_bytes(t, (v - self.offset) / self.scale).is_some();
            if !(fits(min) && fits(max)) {
                return Err(self.error(MapProblem::WriteRangeOverflow {
                    min,
                    max,
                    value_type: t,
                }));
            }
        }
        Ok(())
    }
}

pub(super) fn check_points(
    points: &[View<'_>],
    max_registers: u16,
) -> Result<(), RegisterMapError> {
    let mut seen: HashMap<&str, Option<usize>> = HashMap::new();
    for p in points {
        p.check(max_registers)?;
        if let Some(&first_line) = seen.get(p.sensor) {
            return Err(p.error(MapProblem::DuplicateSensor { first_line }));
        }
        seen.insert(p.sensor, p.line);
    }

    // Overlaps: by table and address, against the point reaching furthest so far.
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by_key(|&i| (points[i].table, points[i].address, i));
    let mut reach: Option<(Table, u32, usize)> = None;
    for i in order {
        let p = &points[i];
        let start = u32::from(p.address);
        let end = start + u32::from(register_count(p.value_type));
        match reach {
            Some((table, far, j)) if table == p.table && start < far => {
                // Blame whichever of the two comes later in the file.
                let (later, earlier) = if i > j {
                    (p, &points[j])
                } else {
                    (&points[j], p)
                };
                return Err(later.error(MapProblem::Overlap {
                    table: later.table,
                    address: later.address,
                    other: earlier.sensor.to_owned(),
                    other_line: earlier.line,
                }));
            }
            Some((table, far, _)) if table == p.table && far >= end => {}
            _ => reach = Some((p.table, end, i)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::MapTemplate;
    use super::super::tests::{map, one, perr, reg};
    use super::*;
    use crate::ids::IdError;

    #[test]
    fn limit_errors() {
        let e = perr("max_registers_per_read = 126\n");
        assert_eq!(e.line, Some(1));
        assert_eq!(
            e.problem,
            MapProblem::Limit {
                key: "max_registers_per_read",
                value: 126,
                max: 125
            }
        );
        let e = perr("max_gap = 1\nmax_bits_per_read = 0\n");
        assert_eq!(e.line, Some(2));
        assert!(e.to_string().contains("max_bits_per_read = 0"), "{e}");
    }

    #[test]
    fn point_errors_name_sensor_and_line() {
        let e = perr(&one("unit = \"m\"\n"));
        assert!(matches!(e.problem, MapProblem::Toml(_)), "duplicate key");

        let e = perr(&one("").replace("unit = \"m\"", "unit = \"gal/min\""));
        assert_eq!(e.line, Some(3));
        assert_eq!(e.sensor.as_deref(), Some("{device}-p"));
        assert_eq!(e.problem, MapProblem::Unit("gal/min".into()));
        assert!(
            e.to_string()
                .starts_with("line 3: point `{device}-p`: unit `gal/min`"),
            "{e}"
        );

        let e = perr(&one("").replace("{device}-p", "{device} p"));
        assert_eq!(e.line, Some(3));
        assert!(matches!(
            e.problem,
            MapProblem::SensorId(IdError::BadChar { ch: ' ', .. })
        ));
        let e = perr(&one("").replace("{device}-p", "{dev}-p"));
        assert!(
            matches!(e.problem, MapProblem::SensorId(_)),
            "unknown placeholder"
        );

        let e = perr(&one("").replace("\"u16\"", "\"bool\""));
        assert_eq!(
            e.problem,
            MapProblem::TableType {
                table: Table::Holding,
                value_type: ValueType::Bool
            }
        );
        let e = perr(&one("").replace("\"holding\"", "\"coil\""));
        assert!(matches!(e.problem, MapProblem::TableType { .. }));

        let e = perr(
            &one("")
                .replace("address = 0", "address = 65535")
                .replace("u16", "f32"),
        );
        assert_eq!(
            e.problem,
            MapProblem::AddressOverflow {
                address: 65535,
                count: 2
            }
        );
        // Ending exactly at the last address is fine.
        MapTemplate::parse_toml("m", &one("").replace("address = 0", "address = 65535")).unwrap();
        MapTemplate::parse_toml(
            "m",
            &one("")
                .replace("address = 0", "address = 65534")
                .replace("u16", "f32"),
        )
        .unwrap();

        let e = perr(&format!(
            "max_registers_per_read = 3\n{}",
            one("").replace("u16", "f64")
        ));
        assert_eq!(
            e.problem,
            MapProblem::TooWide {
                value_type: ValueType::F64,
                count: 4,
                max: 3
            }
        );

        assert_eq!(perr(&one("scale = 0.0\n")).problem, MapProblem::Scale(0.0));
        assert!(matches!(
            perr(&one("scale = nan\n")).problem,
            MapProblem::Scale(s) if s.is_nan()
        ));
        assert_eq!(
            perr(&one("offset = -inf\n")).problem,
            MapProblem::Offset(f64::NEG_INFINITY)
        );
    }

    #[test]
    fn writable_errors() {
        let e = perr(&one("writable = { min = 5.0, max = 5.0 }\n"));
        assert_eq!(e.line, Some(3));
        assert_eq!(e.problem, MapProblem::WriteRange { min: 5.0, max: 5.0 });
        let e = perr(&one("writable = { min = 0.0, max = inf }\n"));
        assert!(matches!(e.problem, MapProblem::WriteRange { .. }));
        let e = perr(&one("writable = { min = 0.0, max = 1.0, step = 1 }\n"));
        assert!(matches!(e.problem, MapProblem::Toml(_)), "{e}");

        let e =
            perr(&one("writable = { min = 0.0, max = 1.0 }\n").replace("\"holding\"", "\"input\""));
        assert_eq!(
            e.problem,
            MapProblem::NotWritable {
                table: Table::Input,
                value_type: ValueType::U16
            }
        );
        let e = perr(
            &one("writable = { min = 0.0, max = 1.0 }\n")
                .replace("\"holding\"", "\"discrete_input\"")
                .replace("u16", "bool"),
        );
        assert!(matches!(e.problem, MapProblem::NotWritable { .. }));
        // Coils may be writable.
        MapTemplate::parse_toml(
            "m",
            &one("writable = { min = 0.0, max = 1.0 }\n")
                .replace("\"holding\"", "\"coil\"")
                .replace("u16", "bool"),
        )
        .unwrap();

        // 0.1 m steps in a u16: 6553.5 m is the most it can hold; negative values none.
        let e = perr(&one("scale = 0.1\nwritable = { min = -1.0, max = 10.0 }\n"));
        assert_eq!(
            e.problem,
            MapProblem::WriteRangeOverflow {
                min: -1.0,
                max: 10.0,
                value_type: ValueType::U16
            }
        );
        let e = perr(&one(
            "scale = 0.1\nwritable = { min = 1.0, max = 7000.0 }\n",
        ));
        assert!(matches!(e.problem, MapProblem::WriteRangeOverflow { .. }));
    }

    #[test]
    fn duplicates_and_overlaps() {
        let two = |a: &str, b: &str| {
            format!(
                "[[point]]\nsensor = \"{a}\"\ntable = \"holding\"\naddress = 0\ntype = \"f32\"\nunit = \"m\"\n\
                 [[point]]\nsensor = \"{b}\"\ntable = \"holding\"\naddress = 1\ntype = \"u16\"\nunit = \"m\"\n"
            )
        };
        let e = perr(&two("{device}-a", "{device}-a"));
        assert_eq!(e.line, Some(8));
        assert_eq!(
            e.problem,
            MapProblem::DuplicateSensor {
                first_line: Some(2)
            }
        );
        assert_eq!(
            e.to_string(),
            "line 8: point `{device}-a`: the sensor id is used by another point (line 2)"
        );

        let e = perr(&two("{device}-a", "{device}-b"));
        assert_eq!(e.line, Some(8));
        assert_eq!(e.sensor.as_deref(), Some("{device}-b"));
        assert_eq!(
            e.problem,
            MapProblem::Overlap {
                table: Table::Holding,
                address: 1,
                other: "{device}-a".into(),
                other_line: Some(2)
            }
        );
        // The same addresses in different tables do not overlap.
        MapTemplate::parse_toml(
            "m",
            &two("{device}-a", "{device}-b").replacen("\"holding\"", "\"input\"", 1),
        )
        .unwrap();

        // A wide point overlapping a point that is not its neighbour in address order.
        let mut m = map(vec![
            reg(0, ValueType::F64),
            reg(1, ValueType::U16),
            reg(3, ValueType::U16),
        ]);
        m.points[1].address = 5;
        let e = m.validate().unwrap_err();
        assert_eq!(e.sensor.as_deref(), Some("p3-u16"));
        assert!(matches!(e.problem, MapProblem::Overlap { ref other, .. } if other == "p0-f64"));
        assert_eq!(e.line, None);
        // Earlier in the file but later in address: the later one in the file is blamed.
        let m = map(vec![reg(2, ValueType::U16), reg(0, ValueType::F64)]);
        assert_eq!(m.validate().unwrap_err().sensor.as_deref(), Some("p0-f64"));
    }

    #[test]
    fn register_map_validate() {
        let mut m = map(vec![reg(0, ValueType::U16)]);
        m.validate().unwrap();
        m.max_bits_per_read = 2001;
        assert!(matches!(
            m.validate().unwrap_err().problem,
            MapProblem::Limit { .. }
        ));
        let mut m = map(vec![reg(0, ValueType::U16), reg(0, ValueType::U16)]);
        m.points[1].address = 9;
        m.points[1].sensor = m.points[0].sensor.clone();
        let e = m.validate().unwrap_err();
        assert_eq!(e.problem, MapProblem::DuplicateSensor { first_line: None });
        assert_eq!(
            e.to_string(),
            "point `p0-u16`: the sensor id is used by another point"
        );
    }
}
