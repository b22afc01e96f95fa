//! The error types: [`RegisterMapError`] (with [`MapProblem`]), [`DecodeError`],
//! [`EncodeError`].

use std::fmt;

use super::types::{Table, ValueType};
use crate::ids::IdError;
use crate::units::Unit;

/// A problem with a register map: where it is, and what.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterMapError {
    /// The line in the TOML text, when known.
    pub line: Option<usize>,
    /// The point's sensor id (or id template), when the problem is a point's.
    pub sensor: Option<String>,
    pub problem: MapProblem,
}

impl fmt::Display for RegisterMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(sensor) = &self.sensor {
            write!(f, "point `{sensor}`: ")?;
        }
        write!(f, "{}", self.problem)
    }
}

impl std::error::Error for RegisterMapError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.problem)
    }
}

/// What is wrong in a register map.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MapProblem {
    /// TOML syntax, an unknown key, a missing key or a value of the wrong type.
    #[error("{0}")]
    Toml(String),
    /// `max_registers_per_read` or `max_bits_per_read` outside `1..=max`.
    #[error("{key} = {value} is out of range (1 to {max})")]
    Limit {
        key: &'static str,
        value: u16,
        max: u16,
    },
    #[error("{0}")]
    SensorId(IdError),
    #[error("the sensor id is used by another point{}", on_line(*.first_line))]
    DuplicateSensor { first_line: Option<usize> },
    #[error("unit `{0}` is not a unit of any sensor kind; expected one of {units}", units = unit_list())]
    Unit(String),
    #[error(
        "type `{value_type}` cannot be in the {table} table (bool goes in coil or discrete_input, numbers in holding or input)"
    )]
    TableType { table: Table, value_type: ValueType },
    #[error(
        "type `{value_type}` needs {count} registers, more than max_registers_per_read = {max}"
    )]
    TooWide {
        value_type: ValueType,
        count: u16,
        max: u16,
    },
    #[error("address {address} + {count} runs past the last address 65535")]
    AddressOverflow { address: u16, count: u16 },
    #[error("{table} address {address} overlaps point `{other}`{}", on_line(*.other_line))]
    Overlap {
        table: Table,
        address: u16,
        other: String,
        other_line: Option<usize>,
    },
    #[error("scale = {0} must be finite and non-zero")]
    Scale(f64),
    #[error("offset = {0} must be finite")]
    Offset(f64),
    #[error("only holding registers and coils can be writable, not {table} `{value_type}`")]
    NotWritable { table: Table, value_type: ValueType },
    #[error("writable range min = {min}, max = {max}: both must be finite with min < max")]
    WriteRange { min: f64, max: f64 },
    #[error(
        "writable range {min} to {max} does not fit type `{value_type}` with this scale and offset"
    )]
    WriteRangeOverflow {
        min: f64,
        max: f64,
        value_type: ValueType,
    },
}

fn on_line(line: Option<usize>) -> String {
    line.map(|l| format!(" (line {l})")).unwrap_or_default()
}

fn unit_list() -> String {
    let names: Vec<_> = Unit::ALL.iter().map(|u| u.as_str()).collect();
    names.join(", ")
}

/// Register words a device returned that do not make a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The point is a bit (or in a bit table): use [`decode_bit`](super::decode_bit).
    #[error("a `{value_type}` point in the {table} table is not decoded from registers")]
    NotRegisters { table: Table, value_type: ValueType },
    /// [`decode_registers`](super::decode_registers) got the wrong number of words.
    #[error("type `{value_type}` needs {expected} registers, got {got}")]
    Length {
        value_type: ValueType,
        expected: usize,
        got: usize,
    },
    /// A float register held NaN or ±infinity, or scaling overflowed.
    #[error("registers {words:04X?} do not make a finite value")]
    NotFinite { words: Vec<u16> },
    /// The request names a point index the map does not have.
    #[error("the request names point {index}, which the map does not have")]
    UnknownPoint { index: usize },
    /// The point does not lie inside the request (another table, or other addresses).
    #[error(
        "point at {table} address {address} lies outside the request ({req_table}, {start} + {count})"
    )]
    OutsideRequest {
        table: Table,
        address: u16,
        req_table: Table,
        start: u16,
        count: u16,
    },
    /// The response holds fewer words than the point needs.
    #[error("the response has {got} registers; the point needs {needed}")]
    ShortResponse { needed: usize, got: usize },
}

/// A value that cannot be written to a point.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    /// Registers are written to holding registers only, bits to coils only.
    #[error("cannot write a `{value_type}` point in the {table} table this way")]
    WrongTable { table: Table, value_type: ValueType },
    #[error("{value} is not a finite number")]
    NotFinite { value: f64 },
    #[error("the point is not writable")]
    NotWritable,
    #[error("{value} is outside the writable range {min} to {max}")]
    OutOfRange { value: f64, min: f64, max: f64 },
    /// The raw value (after offset and scale) does not fit the point's type.
    #[error("raw value {raw} does not fit type `{value_type}`")]
    Overflow { raw: f64, value_type: ValueType },
}
