//! Helpers shared by the tests of several submodules.

use super::*;
use crate::ids::SensorId;
use crate::units::Unit;

pub(super) fn point(sensor: &str, table: Table, address: u16, value_type: ValueType) -> PointDef {
    PointDef {
        sensor: SensorId::parse(sensor).unwrap(),
        table,
        address,
        value_type,
        order: WordOrder::Abcd,
        scale: 1.0,
        offset: 0.0,
        unit: Unit::Metre,
        writable: None,
    }
}

pub(super) fn reg(address: u16, value_type: ValueType) -> PointDef {
    point(
        &format!("p{address}-{value_type}"),
        Table::Holding,
        address,
        value_type,
    )
}

pub(super) fn map(points: Vec<PointDef>) -> RegisterMap {
    RegisterMap {
        model: "test".into(),
        points,
        max_registers_per_read: MAX_REGISTERS_PER_READ,
        max_bits_per_read: MAX_BITS_PER_READ,
        max_gap: DEFAULT_MAX_GAP,
    }
}

pub(super) const ORDERS: [WordOrder; 4] = [
    WordOrder::Abcd,
    WordOrder::Cdab,
    WordOrder::Badc,
    WordOrder::Dcba,
];

pub(super) fn spans(reqs: &[ReadRequest]) -> Vec<(Table, u16, u16)> {
    reqs.iter().map(|r| (r.table, r.start, r.count)).collect()
}

pub(super) fn perr(text: &str) -> RegisterMapError {
    MapTemplate::parse_toml("m", text).unwrap_err()
}

/// A one-point map with `extra` lines added to the point (line 2 is `sensor`).
pub(super) fn one(extra: &str) -> String {
    format!(
        "max_gap = 4\n[[point]]\nsensor = \"{{device}}-p\"\ntable = \"holding\"\naddress = 0\ntype = \"u16\"\nunit = \"m\"\n{extra}"
    )
}
