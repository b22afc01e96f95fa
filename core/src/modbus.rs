//! Modbus register maps: which register holds which sensor, and how register words turn
//! into values in engineering units and back. Pure: no IO, no Modbus client.
//!
//! Main types and functions:
//! - [`MapTemplate`] / [`PointTemplate`]: a register map for a device *model*, as parsed from
//!   TOML by [`MapTemplate::parse_toml`]. Sensor ids are templates containing `{device}`.
//! - [`RegisterMap`] / [`PointDef`]: the map instantiated for one device
//!   ([`MapTemplate::instantiate`]), with real [`SensorId`]s. Everything below works on it.
//! - [`Table`], [`ValueType`], [`WordOrder`], [`WriteRange`]: what a point is made of.
//! - [`plan_reads`] coalesces points into [`ReadRequest`]s; [`decode_read`] /
//!   [`decode_read_bits`] turn a response into values; [`decode_registers`] / [`decode_bit`]
//!   do one point; [`encode_registers`] / [`encode_bit`] prepare a write.
//! - Errors: [`RegisterMapError`] (with [`MapProblem`]) for maps, [`DecodeError`] for register
//!   words a device returned, [`EncodeError`] for values that cannot be written.
//!
//! Device exceptions and transport failures are the Modbus client's business (the ingest
//! side); a [`DecodeError`] always means the device answered, but with words that do not make
//! a value (a NaN float, a short response).
//!
//! # Values
//!
//! A point's value in engineering units (in [`PointDef::unit`]) is `raw * scale + offset`,
//! where `raw` is the register content read as the point's [`ValueType`]. Writing inverts
//! this: `raw = (value - offset) / scale`, rounded half away from zero for integer types,
//! after checking `value` against the point's [`WriteRange`]. A float register holding NaN or
//! ±infinity is a [`DecodeError::NotFinite`], never a value.
//!
//! # Word and byte order
//!
//! Modbus defines a register as 16 bits sent high byte first, and nothing for values wider
//! than one register. Devices differ; the four orders are named after the bytes of a 32-bit
//! value `A B C D` (`A` most significant) as they appear in the registers, following the
//! names libmodbus uses for `modbus_get_float_abcd`/`_badc`/`_cdab`/`_dcba`:
//!
//! ```text
//! order  meaning                                     123.456f32 = 0x42F6E979
//! ABCD   big-endian words, big-endian bytes          [0x42F6, 0xE979]   (the default)
//! CDAB   word-swapped (low word first)               [0xE979, 0x42F6]
//! BADC   byte-swapped within each word               [0xF642, 0x79E9]
//! DCBA   fully little-endian                         [0x79E9, 0xF642]
//! ```
//!
//! An order is two independent switches: *word order* (CDAB and DCBA put the least significant
//! register first) and *byte order within a register* (BADC and DCBA swap the two bytes of
//! every register). For 64-bit values (`f64`, bytes `A B C D E F G H`) the same two switches
//! apply to all four registers, so a swapped word order reverses the *whole* register list:
//!
//! ```text
//! ABCD   [AB, CD, EF, GH]
//! CDAB   [GH, EF, CD, AB]
//! BADC   [BA, DC, FE, HG]
//! DCBA   [HG, FE, DC, BA]   (the 8 bytes fully little-endian)
//! ```
//!
//! This is the convention of pymodbus (`ModbusClientMixin.convert_from_registers` /
//! `convert_to_registers` with `word_order="little"` reverse the register list of a 64-bit
//! value) and of Home Assistant's Modbus integration (`swap: word` reverses the registers,
//! `swap: byte` swaps the bytes of each, `swap: word_byte` does both). Some devices instead
//! swap the two 32-bit halves only (`[EF, GH, AB, CD]`); that is not supported. One-register
//! types follow the same rule: BADC and DCBA byte-swap a `u16`/`i16`, ABCD and CDAB leave it
//! alone. Device manuals (and even library documentation) name these orders inconsistently:
//! check a new device by reading a register whose value you know.
//!
//! ```
//! use waterline_core::modbus::WordOrder;
//! let be = 123.456f32.to_be_bytes();
//! assert_eq!(WordOrder::Cdab.to_words(&be), vec![0xE979, 0x42F6]);
//! assert_eq!(WordOrder::Cdab.from_words(&[0xE979, 0x42F6]), be.to_vec());
//! ```
//!
//! # Register-map TOML
//!
//! One file per device model (the model name is given to [`MapTemplate::parse_toml`]):
//!
//! ```toml
//! # register map for device model "acme-rtu"
//! max_registers_per_read = 125   # optional, 1..=125 (default 125)
//! max_bits_per_read = 2000       # optional, 1..=2000 (default 2000), for coils/discrete inputs
//! max_gap = 8                    # optional: read across up to this many unused registers (default 8)
//!
//! [[point]]
//! sensor = "{device}-inlet-flow" # `{device}` is replaced by the device id on instantiation
//! table = "holding"              # holding | input | coil | discrete_input
//! address = 0                    # 0-based protocol address (register 40001 is address 0)
//! type = "f32"                   # u16 | i16 | u32 | i32 | f32 | f64 | bool
//! order = "CDAB"                 # optional: ABCD (default) | CDAB | BADC | DCBA
//! unit = "L/s"                   # a unit of some sensor kind (see `Unit`)
//! scale = 1.0                    # optional, finite and non-zero (default 1)
//! offset = 0.0                   # optional, finite (default 0)
//!
//! [[point]]
//! sensor = "{device}-prv-setpoint"
//! table = "holding"
//! address = 10
//! type = "u16"
//! unit = "m"
//! scale = 0.1
//! writable = { min = 10.0, max = 60.0 }   # optional; engineering units; holding or coil only
//! ```
//!
//! Checks ([`MapTemplate::validate`], run by `parse_toml` and again by `instantiate`): no
//! unknown keys; sensor ids valid (after substitution) and unique; `bool` only in the coil and
//! discrete-input tables and numbers only in the holding and input tables; a point fits in the
//! 65 536-address space and in one read; no two points of one table overlap; scale finite and
//! non-zero, offset finite; `writable` only on holding registers (and coils) with finite
//! `min < max` whose raw values fit the type. Errors name the line (of the point's `sensor`
//! key when the problem is a point's) and the point's sensor id.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::ids::{DeviceId, IdError, SensorId};
use crate::units::{SensorKind, Unit};

/// Most registers one read may ask for (Modbus: 125 for function codes 3 and 4).
pub const MAX_REGISTERS_PER_READ: u16 = 125;
/// Most bits one read may ask for (Modbus: 2000 for function codes 1 and 2).
pub const MAX_BITS_PER_READ: u16 = 2000;
/// Default for [`RegisterMap::max_gap`].
pub const DEFAULT_MAX_GAP: u16 = 8;
/// The text in a sensor-id template that [`MapTemplate::instantiate`] replaces.
pub const DEVICE_PLACEHOLDER: &str = "{device}";

/// A Modbus data table.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// 16-bit read/write registers (function codes 3, 6, 16).
    Holding,
    /// 16-bit read-only registers (function code 4).
    Input,
    /// Read/write bits (function codes 1, 5, 15).
    Coil,
    /// Read-only bits (function code 2).
    DiscreteInput,
}

impl Table {
    /// The name used in register-map TOML.
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Holding => "holding",
            Table::Input => "input",
            Table::Coil => "coil",
            Table::DiscreteInput => "discrete_input",
        }
    }

    /// Whether the table holds bits (coils, discrete inputs) rather than registers.
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::DiscreteInput)
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a point's register content is read.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    U16,
    I16,
    U32,
    I32,
    /// IEEE 754 single precision, two registers.
    F32,
    /// IEEE 754 double precision, four registers.
    F64,
    /// One coil or discrete input.
    Bool,
}

impl ValueType {
    /// The name used in register-map TOML.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::U16 => "u16",
            ValueType::I16 => "i16",
            ValueType::U32 => "u32",
            ValueType::I32 => "i32",
            ValueType::F32 => "f32",
            ValueType::F64 => "f64",
            ValueType::Bool => "bool",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many registers (for `Bool`: bits) a value of type `t` occupies.
pub fn register_count(t: ValueType) -> u16 {
    match t {
        ValueType::U16 | ValueType::I16 | ValueType::Bool => 1,
        ValueType::U32 | ValueType::I32 | ValueType::F32 => 2,
        ValueType::F64 => 4,
    }
}

/// Word and byte order of a multi-byte value in registers; see the [module docs](self).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
pub enum WordOrder {
    /// Big-endian words, big-endian bytes: `[AB, CD]`.
    #[default]
    #[serde(rename = "ABCD", alias = "abcd")]
    Abcd,
    /// Least significant word first: `[CD, AB]`.
    #[serde(rename = "CDAB", alias = "cdab")]
    Cdab,
    /// Bytes swapped within each word: `[BA, DC]`.
    #[serde(rename = "BADC", alias = "badc")]
    Badc,
    /// Fully little-endian: `[DC, BA]`.
    #[serde(rename = "DCBA", alias = "dcba")]
    Dcba,
}

impl WordOrder {
    /// The name used in register-map TOML.
    pub fn as_str(self) -> &'static str {
        match self {
            WordOrder::Abcd => "ABCD",
            WordOrder::Cdab => "CDAB",
            WordOrder::Badc => "BADC",
            WordOrder::Dcba => "DCBA",
        }
    }

    fn swaps_words(self) -> bool {
        matches!(self, WordOrder::Cdab | WordOrder::Dcba)
    }

    fn swaps_bytes(self) -> bool {
        matches!(self, WordOrder::Badc | WordOrder::Dcba)
    }

    /// Registers, in transmission order, holding the big-endian bytes `be` (a trailing odd
    /// byte is ignored).
    pub fn to_words(self, be: &[u8]) -> Vec<u16> {
        let mut words: Vec<u16> = be
            .chunks_exact(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .collect();
        self.permute(&mut words);
        words
    }

    /// The big-endian bytes of the value held in `words` (the inverse of [`Self::to_words`]).
    pub fn from_words(self, words: &[u16]) -> Vec<u8> {
        let mut words = words.to_vec();
        self.permute(&mut words);
        words.iter().flat_map(|w| w.to_be_bytes()).collect()
    }

    /// Both switches are involutions and commute, so this is its own inverse.
    fn permute(self, words: &mut [u16]) {
        if self.swaps_bytes() {
            for w in words.iter_mut() {
                *w = w.swap_bytes();
            }
        }
        if self.swaps_words() {
            words.reverse();
        }
    }
}

impl fmt::Display for WordOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The values a writable point accepts, in engineering units (inclusive).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Debug)]
#[serde(deny_unknown_fields)]
pub struct WriteRange {
    pub min: f64,
    pub max: f64,
}

impl WriteRange {
    /// Whether `value` lies in `min..=max`.
    pub fn contains(&self, value: f64) -> bool {
        self.min <= value && value <= self.max
    }
}

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
    /// Checks the map; see the [module docs](self) for the rules.
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
    /// Parses and checks a register-map TOML text (format in the [module docs](self)).
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

    /// Checks the template; see the [module docs](self) for the rules. Sensor-id templates
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
    /// The point is a bit (or in a bit table): use [`decode_bit`].
    #[error("a `{value_type}` point in the {table} table is not decoded from registers")]
    NotRegisters { table: Table, value_type: ValueType },
    /// [`decode_registers`] got the wrong number of words.
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

/// One read: `count` registers (or bits) of `table` from `start`, covering some points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    pub table: Table,
    pub start: u16,
    pub count: u16,
    /// Indices into [`RegisterMap::points`], by address.
    pub points: Vec<usize>,
}

/// Coalesces the map's points into as few reads as the limits allow.
///
/// Points are grouped by table (requests come out in [`Table`] order, then by address); a
/// point joins the current request when the unused addresses before it number at most
/// [`RegisterMap::max_gap`] and the request then still covers at most
/// [`RegisterMap::read_limit`] addresses. A point is never split across requests (a point
/// wider than the limit, which [`RegisterMap::validate`] refuses, gets a request of its own).
/// The map need not be valid: overlapping points are merged, nothing panics.
pub fn plan_reads(map: &RegisterMap) -> Vec<ReadRequest> {
    struct Open {
        table: Table,
        start: u32,
        end: u32,
        points: Vec<usize>,
    }
    fn close(o: Open) -> ReadRequest {
        ReadRequest {
            table: o.table,
            start: u16::try_from(o.start).unwrap_or(u16::MAX),
            count: u16::try_from(o.end - o.start).unwrap_or(u16::MAX),
            points: o.points,
        }
    }

    let mut order: Vec<usize> = (0..map.points.len()).collect();
    order.sort_by_key(|&i| (map.points[i].table, map.points[i].address, i));
    let gap = u32::from(map.max_gap);
    let mut out = Vec::new();
    let mut open: Option<Open> = None;
    for i in order {
        let p = &map.points[i];
        let start = u32::from(p.address);
        let end = start + u32::from(register_count(p.value_type));
        let limit = u32::from(map.read_limit(p.table).max(1));
        if let Some(o) = open.as_mut()
            && o.table == p.table
            && start <= o.end + gap
            && end.max(o.end) - o.start <= limit
        {
            o.end = o.end.max(end);
            o.points.push(i);
            continue;
        }
        if let Some(o) = open.replace(Open {
            table: p.table,
            start,
            end,
            points: vec![i],
        }) {
            out.push(close(o));
        }
    }
    out.extend(open.map(close));
    out
}

/// The value of a register point in `def.unit`: `words` (exactly
/// [`register_count`]`(def.value_type)` of them, as read) decoded per type and order, then
/// `raw * scale + offset`.
pub fn decode_registers(def: &PointDef, words: &[u16]) -> Result<f64, DecodeError> {
    let t = def.value_type;
    if t == ValueType::Bool || def.table.is_bits() {
        return Err(DecodeError::NotRegisters {
            table: def.table,
            value_type: t,
        });
    }
    let expected = usize::from(register_count(t));
    if words.len() != expected {
        return Err(DecodeError::Length {
            value_type: t,
            expected,
            got: words.len(),
        });
    }
    let b = def.order.from_words(words);
    let raw = match t {
        ValueType::U16 => f64::from(u16::from_be_bytes(bytes(&b))),
        ValueType::I16 => f64::from(i16::from_be_bytes(bytes(&b))),
        ValueType::U32 => f64::from(u32::from_be_bytes(bytes(&b))),
        ValueType::I32 => f64::from(i32::from_be_bytes(bytes(&b))),
        ValueType::F32 => f64::from(f32::from_be_bytes(bytes(&b))),
        ValueType::F64 => f64::from_be_bytes(bytes(&b)),
        ValueType::Bool => f64::NAN, // refused above
    };
    let value = raw * def.scale + def.offset;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(DecodeError::NotFinite {
            words: words.to_vec(),
        })
    }
}

/// The first `N` bytes of `b`, which the caller guarantees has at least `N`.
fn bytes<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&b[..N]);
    out
}

/// The value of a bit point in `def.unit`: `0` or `1`, times scale, plus offset.
pub fn decode_bit(def: &PointDef, bit: bool) -> f64 {
    f64::from(u8::from(bit)) * def.scale + def.offset
}

/// Decodes the response `words` to a register read `req` (planned from `map`): one result
/// per point of the request, in the request's order.
pub fn decode_read(
    map: &RegisterMap,
    req: &ReadRequest,
    words: &[u16],
) -> Vec<(usize, Result<f64, DecodeError>)> {
    req.points
        .iter()
        .map(|&i| {
            let result = map
                .points
                .get(i)
                .ok_or(DecodeError::UnknownPoint { index: i })
                .and_then(|def| {
                    let range = offset_in(def, req).ok_or(DecodeError::OutsideRequest {
                        table: def.table,
                        address: def.address,
                        req_table: req.table,
                        start: req.start,
                        count: req.count,
                    })?;
                    let slice = words.get(range.clone()).ok_or(DecodeError::ShortResponse {
                        needed: range.end,
                        got: words.len(),
                    })?;
                    decode_registers(def, slice)
                });
            (i, result)
        })
        .collect()
}

/// Where in the response to `req` the point `def` lies, if it lies inside the request.
fn offset_in(def: &PointDef, req: &ReadRequest) -> Option<std::ops::Range<usize>> {
    if def.table != req.table || def.address < req.start {
        return None;
    }
    let start = usize::from(def.address - req.start);
    let end = start + usize::from(register_count(def.value_type));
    (end <= usize::from(req.count)).then_some(start..end)
}

/// Decodes the response `bits` to a coil or discrete-input read `req`: one value per point of
/// the request that lies inside it and inside `bits` (points not covered, e.g. because the
/// response is short, are left out; compare lengths to notice).
pub fn decode_read_bits(map: &RegisterMap, req: &ReadRequest, bits: &[bool]) -> Vec<(usize, f64)> {
    req.points
        .iter()
        .filter_map(|&i| {
            let def = map.points.get(i)?;
            let range = offset_in(def, req)?;
            let bit = *bits.get(range.start)?;
            Some((i, decode_bit(def, bit)))
        })
        .collect()
}

/// The registers to write for `value` (in `def.unit`) to a holding-register point: checked
/// against `def.writable`, turned into `(value - offset) / scale`, rounded for integer types,
/// checked to fit the type, then laid out in the point's order.
pub fn encode_registers(def: &PointDef, value: f64) -> Result<Vec<u16>, EncodeError> {
    let t = def.value_type;
    if def.table != Table::Holding || t == ValueType::Bool {
        return Err(EncodeError::WrongTable {
            table: def.table,
            value_type: t,
        });
    }
    let raw = raw_for_write(def, value)?;
    let be = raw_to_be_bytes(t, raw).ok_or(EncodeError::Overflow { raw, value_type: t })?;
    Ok(def.order.to_words(&be))
}

/// The coil state to write for `value` (in `def.unit`) to a coil point: checked like
/// [`encode_registers`]; the raw value must round to 0 or 1.
pub fn encode_bit(def: &PointDef, value: f64) -> Result<bool, EncodeError> {
    let t = def.value_type;
    if def.table != Table::Coil || t != ValueType::Bool {
        return Err(EncodeError::WrongTable {
            table: def.table,
            value_type: t,
        });
    }
    let raw = raw_for_write(def, value)?;
    let be = raw_to_be_bytes(t, raw).ok_or(EncodeError::Overflow { raw, value_type: t })?;
    Ok(be == [1])
}

fn raw_for_write(def: &PointDef, value: f64) -> Result<f64, EncodeError> {
    if !value.is_finite() {
        return Err(EncodeError::NotFinite { value });
    }
    let range = def.writable.ok_or(EncodeError::NotWritable)?;
    if !range.contains(value) {
        return Err(EncodeError::OutOfRange {
            value,
            min: range.min,
            max: range.max,
        });
    }
    Ok((value - def.offset) / def.scale)
}

/// The big-endian bytes of `raw` as type `t` (`Bool`: one byte, 0 or 1), rounding for integer
/// types; `None` when it does not fit.
fn raw_to_be_bytes(t: ValueType, raw: f64) -> Option<Vec<u8>> {
    if !raw.is_finite() {
        return None;
    }
    let r = raw.round();
    let within = |lo: f64, hi: f64| (lo..=hi).contains(&r);
    // Each `as` below converts an integral value already checked to be in range: exact.
    let bytes = match t {
        ValueType::U16 if within(0.0, f64::from(u16::MAX)) => (r as u16).to_be_bytes().to_vec(),
        ValueType::I16 if within(f64::from(i16::MIN), f64::from(i16::MAX)) => {
            (r as i16).to_be_bytes().to_vec()
        }
        ValueType::U32 if within(0.0, f64::from(u32::MAX)) => (r as u32).to_be_bytes().to_vec(),
        ValueType::I32 if within(f64::from(i32::MIN), f64::from(i32::MAX)) => {
            (r as i32).to_be_bytes().to_vec()
        }
        ValueType::Bool if within(0.0, 1.0) => vec![r as u8],
        ValueType::F32 => {
            let f = raw as f32;
            if !f.is_finite() {
                return None;
            }
            f.to_be_bytes().to_vec()
        }
        ValueType::F64 => raw.to_be_bytes().to_vec(),
        _ => return None,
    };
    Some(bytes)
}

// ---------------------------------------------------------------------------------------------
// Checking

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

/// A unit some sensor kind accepts.
fn parse_unit(s: &str) -> Option<Unit> {
    s.parse::<Unit>()
        .ok()
        .filter(|u| SensorKind::ALL.iter().any(|k| k.accepts(*u)))
}

fn check_limits(
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
struct View<'a> {
    sensor: &'a str,
    line: Option<usize>,
    table: Table,
    address: u16,
    value_type: ValueType,
    scale: f64,
    offset: f64,
    unit: Unit,
    writable: Option<WriteRange>,
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

fn check_points(points: &[View<'_>], max_registers: u16) -> Result<(), RegisterMapError> {
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
    use super::*;

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

    fn point(sensor: &str, table: Table, address: u16, value_type: ValueType) -> PointDef {
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

    fn reg(address: u16, value_type: ValueType) -> PointDef {
        point(
            &format!("p{address}-{value_type}"),
            Table::Holding,
            address,
            value_type,
        )
    }

    fn map(points: Vec<PointDef>) -> RegisterMap {
        RegisterMap {
            model: "test".into(),
            points,
            max_registers_per_read: MAX_REGISTERS_PER_READ,
            max_bits_per_read: MAX_BITS_PER_READ,
            max_gap: DEFAULT_MAX_GAP,
        }
    }

    fn with_order(mut def: PointDef, order: WordOrder) -> PointDef {
        def.order = order;
        def
    }

    const ORDERS: [WordOrder; 4] = [
        WordOrder::Abcd,
        WordOrder::Cdab,
        WordOrder::Badc,
        WordOrder::Dcba,
    ];

    // ---- word order golden values ------------------------------------------------------

    #[test]
    fn f32_golden_in_all_orders() {
        assert_eq!(123.456f32.to_bits(), 0x42F6_E979);
        let expected = [
            [0x42F6, 0xE979],
            [0xE979, 0x42F6],
            [0xF642, 0x79E9],
            [0x79E9, 0xF642],
        ];
        for (order, words) in ORDERS.into_iter().zip(expected) {
            let mut def = with_order(reg(0, ValueType::F32), order);
            def.writable = Some(WriteRange {
                min: -1e9,
                max: 1e9,
            });
            assert_eq!(
                encode_registers(&def, f64::from(123.456f32)).unwrap(),
                words,
                "{order}"
            );
            assert_eq!(
                decode_registers(&def, &words).unwrap(),
                f64::from(123.456f32),
                "{order}"
            );
        }
    }

    #[test]
    fn i32_and_u32_golden_in_all_orders() {
        let minus_two = [
            [0xFFFF, 0xFFFE],
            [0xFFFE, 0xFFFF],
            [0xFFFF, 0xFEFF],
            [0xFEFF, 0xFFFF],
        ];
        let deadbeef = [
            [0xDEAD, 0xBEEF],
            [0xBEEF, 0xDEAD],
            [0xADDE, 0xEFBE],
            [0xEFBE, 0xADDE],
        ];
        for (i, order) in ORDERS.into_iter().enumerate() {
            let mut i32def = with_order(reg(0, ValueType::I32), order);
            i32def.writable = Some(WriteRange {
                min: -10.0,
                max: 10.0,
            });
            assert_eq!(
                decode_registers(&i32def, &minus_two[i]),
                Ok(-2.0),
                "{order}"
            );
            assert_eq!(
                encode_registers(&i32def, -2.0).unwrap(),
                minus_two[i],
                "{order}"
            );

            let mut u32def = with_order(reg(0, ValueType::U32), order);
            u32def.writable = Some(WriteRange {
                min: 0.0,
                max: f64::from(u32::MAX),
            });
            assert_eq!(
                decode_registers(&u32def, &deadbeef[i]),
                Ok(f64::from(0xDEAD_BEEF_u32)),
                "{order}"
            );
            assert_eq!(
                encode_registers(&u32def, f64::from(0xDEAD_BEEF_u32)).unwrap(),
                deadbeef[i],
                "{order}"
            );
        }
    }

    #[test]
    fn f64_golden_in_all_orders() {
        assert_eq!(123.456f64.to_bits(), 0x405E_DD2F_1A9F_BE77);
        let expected = [
            [0x405E, 0xDD2F, 0x1A9F, 0xBE77],
            [0xBE77, 0x1A9F, 0xDD2F, 0x405E],
            [0x5E40, 0x2FDD, 0x9F1A, 0x77BE],
            [0x77BE, 0x9F1A, 0x2FDD, 0x5E40],
        ];
        for (order, words) in ORDERS.into_iter().zip(expected) {
            let mut def = with_order(reg(0, ValueType::F64), order);
            def.writable = Some(WriteRange {
                min: 0.0,
                max: 1000.0,
            });
            assert_eq!(encode_registers(&def, 123.456).unwrap(), words, "{order}");
            assert_eq!(decode_registers(&def, &words), Ok(123.456), "{order}");
        }
        // DCBA is the plain little-endian byte image.
        let le = 123.456f64.to_le_bytes();
        assert_eq!(
            WordOrder::Dcba.to_words(&123.456f64.to_be_bytes()),
            WordOrder::Abcd.to_words(&le)
        );
    }

    #[test]
    fn cdab_matches_pymodbus_little_word_order() {
        // pymodbus issue #2675: convert_to_registers([1.0, 2.0, 3.0], FLOAT32,
        // word_order="little") gives [0, 16448, 0, 16384, 0, 16256] (the whole list reversed);
        // per value that is [0x0000, 0x3F80] for 1.0, [0x0000, 0x4000] for 2.0, …
        let def = with_order(reg(0, ValueType::F32), WordOrder::Cdab);
        assert_eq!(decode_registers(&def, &[0, 16256]), Ok(1.0));
        assert_eq!(decode_registers(&def, &[0, 16384]), Ok(2.0));
        assert_eq!(decode_registers(&def, &[0, 16448]), Ok(3.0));
        // f64 1.0 = 0x3FF0_0000_0000_0000: word-swapped puts the high word last.
        let def = with_order(reg(0, ValueType::F64), WordOrder::Cdab);
        assert_eq!(decode_registers(&def, &[0, 0, 0, 0x3FF0]), Ok(1.0));
    }

    #[test]
    fn sixteen_bit_types_and_byte_swap() {
        let def = reg(0, ValueType::I16);
        assert_eq!(decode_registers(&def, &[0xFFFE]), Ok(-2.0));
        assert_eq!(
            decode_registers(&reg(0, ValueType::U16), &[0xFFFE]),
            Ok(65534.0)
        );
        assert_eq!(
            decode_registers(&with_order(def.clone(), WordOrder::Cdab), &[0xFFFE]),
            Ok(-2.0)
        );
        assert_eq!(
            decode_registers(&with_order(def, WordOrder::Badc), &[0xFEFF]),
            Ok(-2.0)
        );
        assert_eq!(
            decode_registers(
                &with_order(reg(0, ValueType::U16), WordOrder::Dcba),
                &[0x3412]
            ),
            Ok(f64::from(0x1234_u16))
        );
    }

    #[test]
    fn word_order_round_trips_any_width() {
        let be: Vec<u8> = (1..=8).collect();
        for order in ORDERS {
            for n in [2, 4, 8] {
                assert_eq!(
                    order.from_words(&order.to_words(&be[..n])),
                    be[..n],
                    "{order}"
                );
            }
        }
    }

    // ---- scale, offset, non-finite ---------------------------------------------------

    #[test]
    fn scale_and_offset() {
        // A pressure transmitter reporting absolute pressure in 0.01 bar; the map subtracts
        // 1.01 bar of atmosphere to give gauge pressure.
        let mut def = point("p-abs", Table::Input, 3, ValueType::U16);
        def.unit = Unit::Bar;
        def.scale = 0.01;
        def.offset = -1.01;
        let v = decode_registers(&def, &[523]).unwrap();
        assert!((v - 4.22).abs() < 1e-9, "{v}");

        // Temperature in 0.1 °C, signed.
        let mut t = point("t", Table::Input, 0, ValueType::I16);
        t.unit = Unit::DegreeCelsius;
        t.scale = 0.1;
        assert!((decode_registers(&t, &[(-150i16) as u16]).unwrap() + 15.0).abs() < 1e-9);

        // Writing inverts it, rounding to the nearest raw step.
        let mut sp = reg(10, ValueType::U16);
        sp.scale = 0.1;
        sp.offset = 5.0;
        sp.writable = Some(WriteRange {
            min: 10.0,
            max: 60.0,
        });
        assert_eq!(encode_registers(&sp, 45.0), Ok(vec![400]));
        assert_eq!(encode_registers(&sp, 45.04), Ok(vec![400]));
        assert_eq!(encode_registers(&sp, 45.06), Ok(vec![401]));
        assert_eq!(decode_registers(&sp, &[400]), Ok(45.0));
    }

    #[test]
    fn nan_and_infinity_are_decode_errors() {
        let def = reg(0, ValueType::F32);
        for bits in [
            f32::NAN.to_bits(),
            f32::INFINITY.to_bits(),
            0xFF80_0000,
            0x7FC0_0001,
        ] {
            let words = WordOrder::Abcd.to_words(&bits.to_be_bytes());
            assert_eq!(
                decode_registers(&def, &words),
                Err(DecodeError::NotFinite {
                    words: words.clone()
                })
            );
        }
        let def64 = reg(0, ValueType::F64);
        let words = WordOrder::Abcd.to_words(&f64::NAN.to_be_bytes());
        assert!(matches!(
            decode_registers(&def64, &words),
            Err(DecodeError::NotFinite { .. })
        ));
        // Finite raw, but scaling overflows.
        let mut big = reg(0, ValueType::F64);
        big.scale = 1e10;
        let words = WordOrder::Abcd.to_words(&f64::MAX.to_be_bytes());
        let err = decode_registers(&big, &words).unwrap_err();
        assert!(err.to_string().contains("finite"), "{err}");
    }

    #[test]
    fn decode_register_errors() {
        assert_eq!(
            decode_registers(&reg(0, ValueType::F32), &[1]),
            Err(DecodeError::Length {
                value_type: ValueType::F32,
                expected: 2,
                got: 1
            })
        );
        let coil = point("c", Table::Coil, 0, ValueType::Bool);
        assert_eq!(
            decode_registers(&coil, &[1]),
            Err(DecodeError::NotRegisters {
                table: Table::Coil,
                value_type: ValueType::Bool
            })
        );
    }

    #[test]
    fn bits() {
        let mut def = point("pump-run", Table::DiscreteInput, 0, ValueType::Bool);
        assert_eq!(decode_bit(&def, true), 1.0);
        assert_eq!(decode_bit(&def, false), 0.0);
        def.scale = 100.0;
        def.unit = Unit::Percent;
        assert_eq!(decode_bit(&def, true), 100.0);

        let mut coil = point("valve", Table::Coil, 0, ValueType::Bool);
        coil.unit = Unit::Percent;
        coil.scale = 100.0;
        coil.writable = Some(WriteRange {
            min: 0.0,
            max: 100.0,
        });
        assert_eq!(encode_bit(&coil, 100.0), Ok(true));
        assert_eq!(encode_bit(&coil, 0.0), Ok(false));
        assert_eq!(encode_bit(&coil, 30.0), Ok(false), "raw 0.3 rounds to 0");
        coil.offset = -100.0;
        coil.writable = Some(WriteRange {
            min: -100.0,
            max: 100.0,
        });
        assert_eq!(
            encode_bit(&coil, 100.0),
            Err(EncodeError::Overflow {
                raw: 2.0,
                value_type: ValueType::Bool
            })
        );
        assert!(matches!(
            encode_bit(&def, 1.0),
            Err(EncodeError::WrongTable { .. })
        ));
    }

    // ---- encoding errors ----------------------------------------------------------------

    #[test]
    fn encode_errors() {
        let mut def = reg(10, ValueType::U16);
        assert_eq!(encode_registers(&def, 1.0), Err(EncodeError::NotWritable));
        def.writable = Some(WriteRange {
            min: 10.0,
            max: 60.0,
        });
        assert_eq!(
            encode_registers(&def, 60.5),
            Err(EncodeError::OutOfRange {
                value: 60.5,
                min: 10.0,
                max: 60.0
            })
        );
        assert!(matches!(
            encode_registers(&def, f64::NAN),
            Err(EncodeError::NotFinite { .. })
        ));
        assert_eq!(
            encode_registers(&def, f64::INFINITY),
            Err(EncodeError::NotFinite {
                value: f64::INFINITY
            })
        );

        // Raw 60 / 0.0001 = 600 000 does not fit a u16.
        def.scale = 0.0001;
        assert_eq!(
            encode_registers(&def, 60.0),
            Err(EncodeError::Overflow {
                raw: 60.0 / 0.0001,
                value_type: ValueType::U16
            })
        );
        // Negative raw for an unsigned type.
        let mut neg = reg(0, ValueType::U32);
        neg.writable = Some(WriteRange {
            min: -5.0,
            max: 5.0,
        });
        assert!(matches!(
            encode_registers(&neg, -1.0),
            Err(EncodeError::Overflow { .. })
        ));
        assert_eq!(encode_registers(&neg, -0.4), Ok(vec![0, 0]));
        // f32 overflow.
        let mut f = reg(0, ValueType::F32);
        f.writable = Some(WriteRange {
            min: 0.0,
            max: 1e300,
        });
        assert!(matches!(
            encode_registers(&f, 1e300),
            Err(EncodeError::Overflow { .. })
        ));

        let mut input = point("x", Table::Input, 0, ValueType::U16);
        input.writable = def.writable;
        assert_eq!(
            encode_registers(&input, 20.0),
            Err(EncodeError::WrongTable {
                table: Table::Input,
                value_type: ValueType::U16
            })
        );
        let err = encode_registers(&input, 20.0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot write a `u16` point in the input table this way"
        );
    }

    // ---- plan_reads ---------------------------------------------------------------------

    fn spans(reqs: &[ReadRequest]) -> Vec<(Table, u16, u16)> {
        reqs.iter().map(|r| (r.table, r.start, r.count)).collect()
    }

    #[test]
    fn adjacent_points_become_one_request() {
        let m = map(vec![
            reg(4, ValueType::U16),
            reg(0, ValueType::F32),
            reg(2, ValueType::I32),
        ]);
        let reqs = plan_reads(&m);
        assert_eq!(spans(&reqs), [(Table::Holding, 0, 5)]);
        assert_eq!(reqs[0].points, [1, 2, 0], "by address");
    }

    #[test]
    fn gap_up_to_max_gap_is_bridged_larger_splits() {
        // 0..2, then gap of exactly 8 (2..10), then 10.
        let m = map(vec![reg(0, ValueType::F32), reg(10, ValueType::U16)]);
        assert_eq!(spans(&plan_reads(&m)), [(Table::Holding, 0, 11)]);
        let m = map(vec![reg(0, ValueType::F32), reg(11, ValueType::U16)]);
        assert_eq!(
            spans(&plan_reads(&m)),
            [(Table::Holding, 0, 2), (Table::Holding, 11, 1)]
        );
        let mut m = map(vec![reg(0, ValueType::U16), reg(1, ValueType::U16)]);
        m.max_gap = 0;
        assert_eq!(spans(&plan_reads(&m)), [(Table::Holding, 0, 2)]);
        m.points[1].address = 2;
        assert_eq!(plan_reads(&m).len(), 2);
    }

    #[test]
    fn per_read_limit_splits() {
        let mut m = map((0..10).map(|a| reg(a, ValueType::U16)).collect());
        m.max_registers_per_read = 4;
        assert_eq!(
            spans(&plan_reads(&m)),
            [
                (Table::Holding, 0, 4),
                (Table::Holding, 4, 4),
                (Table::Holding, 8, 2)
            ]
        );
    }

    #[test]
    fn limit_of_125_with_a_two_register_point_at_the_boundary() {
        // 123 u16 then an f32 at 123..125: exactly 125 registers, one read.
        let mut points: Vec<_> = (0..123).map(|a| reg(a, ValueType::U16)).collect();
        points.push(reg(123, ValueType::F32));
        let m = map(points);
        m.validate().unwrap();
        assert_eq!(spans(&plan_reads(&m)), [(Table::Holding, 0, 125)]);

        // 124 u16 then an f32 at 124..126: the f32 would straddle; it moves whole.
        let mut points: Vec<_> = (0..124).map(|a| reg(a, ValueType::U16)).collect();
        points.push(reg(124, ValueType::F32));
        let m = map(points);
        let reqs = plan_reads(&m);
        assert_eq!(
            spans(&reqs),
            [(Table::Holding, 0, 124), (Table::Holding, 124, 2)]
        );
        assert_eq!(reqs[1].points, [124]);
    }

    #[test]
    fn tables_never_merge() {
        let m = map(vec![
            point("c0", Table::Coil, 0, ValueType::Bool),
            point("i0", Table::Input, 0, ValueType::U16),
            point("h1", Table::Holding, 1, ValueType::U16),
            point("d0", Table::DiscreteInput, 0, ValueType::Bool),
            point("h0", Table::Holding, 0, ValueType::U16),
            point("c1", Table::Coil, 1, ValueType::Bool),
        ]);
        let reqs = plan_reads(&m);
        assert_eq!(
            spans(&reqs),
            [
                (Table::Holding, 0, 2),
                (Table::Input, 0, 1),
                (Table::Coil, 0, 2),
                (Table::DiscreteInput, 0, 1)
            ]
        );
        assert_eq!(reqs[0].points, [4, 2]);
        assert_eq!(reqs[2].points, [0, 5]);
    }

    #[test]
    fn bit_tables_use_the_bit_limit() {
        let mut m = map((0..3000)
            .step_by(5)
            .map(|a| point(&format!("c{a}"), Table::Coil, a, ValueType::Bool))
            .collect());
        let reqs = plan_reads(&m);
        assert_eq!(
            spans(&reqs),
            [(Table::Coil, 0, 1996), (Table::Coil, 2000, 996)]
        );
        m.max_bits_per_read = 10;
        assert_eq!(plan_reads(&m)[0].count, 6);
    }

    #[test]
    fn plan_and_decode_a_response() {
        let mut flow = with_order(reg(0, ValueType::F32), WordOrder::Cdab);
        flow.unit = Unit::LitrePerSecond;
        let mut sp = reg(5, ValueType::U16);
        sp.scale = 0.1;
        let m = map(vec![flow, sp]);
        let reqs = plan_reads(&m);
        assert_eq!(spans(&reqs), [(Table::Holding, 0, 6)]);
        let words = [0xE979, 0x42F6, 0, 0, 0, 452];
        let out = decode_read(&m, &reqs[0], &words);
        assert_eq!(out[0], (0, Ok(f64::from(123.456f32))));
        assert_eq!(out[1].0, 1);
        assert!((out[1].1.clone().unwrap() - 45.2).abs() < 1e-9);

        // A short response fails only the points it does not cover.
        let out = decode_read(&m, &reqs[0], &words[..4]);
        assert!(out[0].1.is_ok());
        assert_eq!(
            out[1].1,
            Err(DecodeError::ShortResponse { needed: 6, got: 4 })
        );
    }

    #[test]
    fn decode_read_errors_for_foreign_requests() {
        let m = map(vec![reg(0, ValueType::U16), reg(10, ValueType::F32)]);
        let req = ReadRequest {
            table: Table::Holding,
            start: 0,
            count: 11,
            points: vec![0, 1, 7],
        };
        let out = decode_read(&m, &req, &[0; 11]);
        assert_eq!(out[0], (0, Ok(0.0)));
        assert_eq!(
            out[1].1,
            Err(DecodeError::OutsideRequest {
                table: Table::Holding,
                address: 10,
                req_table: Table::Holding,
                start: 0,
                count: 11
            }),
            "the f32 needs registers 10 and 11"
        );
        assert_eq!(out[2], (7, Err(DecodeError::UnknownPoint { index: 7 })));
        let other = ReadRequest {
            table: Table::Input,
            ..req
        };
        assert!(matches!(
            decode_read(&m, &other, &[0; 11])[0].1,
            Err(DecodeError::OutsideRequest { .. })
        ));
    }

    #[test]
    fn decode_read_bits_skips_what_the_response_lacks() {
        let m = map(vec![
            point("a", Table::Coil, 3, ValueType::Bool),
            point("b", Table::Coil, 5, ValueType::Bool),
            point("c", Table::Coil, 9, ValueType::Bool),
        ]);
        let reqs = plan_reads(&m);
        assert_eq!(spans(&reqs), [(Table::Coil, 3, 7)]);
        let out = decode_read_bits(&m, &reqs[0], &[true, false, false, true, false, false]);
        assert_eq!(out, [(0, 1.0), (1, 0.0)], "bit for `c` missing");
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

    fn perr(text: &str) -> RegisterMapError {
        MapTemplate::parse_toml("m", text).unwrap_err()
    }

    /// A one-point map with `extra` lines added to the point (line 2 is `sensor`).
    fn one(extra: &str) -> String {
        format!(
            "max_gap = 4\n[[point]]\nsensor = \"{{device}}-p\"\ntable = \"holding\"\naddress = 0\ntype = \"u16\"\nunit = \"m\"\n{extra}"
        )
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

    #[test]
    fn names_round_trip() {
        for t in [
            Table::Holding,
            Table::Input,
            Table::Coil,
            Table::DiscreteInput,
        ] {
            let v: Table = serde_json::from_str(&format!("\"{t}\"")).unwrap();
            assert_eq!(v, t);
        }
        for o in ORDERS {
            let v: WordOrder = serde_json::from_str(&format!("\"{o}\"")).unwrap();
            assert_eq!(v, o);
            assert_eq!(serde_json::to_string(&o).unwrap(), format!("\"{o}\""));
        }
        let all = [
            ValueType::U16,
            ValueType::I16,
            ValueType::U32,
            ValueType::I32,
            ValueType::F32,
            ValueType::F64,
            ValueType::Bool,
        ];
        let counts: Vec<u16> = all.iter().map(|&t| register_count(t)).collect();
        assert_eq!(counts, [1, 1, 2, 2, 2, 4, 1]);
        for t in all {
            let v: ValueType = serde_json::from_str(&format!("\"{t}\"")).unwrap();
            assert_eq!(v, t);
        }
    }

    // ---- no panics on arbitrary input ---------------------------------------------------

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn f64(&mut self) -> f64 {
            match self.below(6) {
                0 => f64::from_bits(self.next()),
                1 => [
                    f64::NAN,
                    f64::INFINITY,
                    f64::NEG_INFINITY,
                    0.0,
                    -0.0,
                    f64::MAX,
                ][self.below(6) as usize],
                _ => {
                    (self.below(2_000_001) as f64 - 1_000_000.0) / 10f64.powi(self.below(6) as i32)
                }
            }
        }
    }

    const TABLES: [Table; 4] = [
        Table::Holding,
        Table::Input,
        Table::Coil,
        Table::DiscreteInput,
    ];
    const TYPES: [ValueType; 7] = [
        ValueType::U16,
        ValueType::I16,
        ValueType::U32,
        ValueType::I32,
        ValueType::F32,
        ValueType::F64,
        ValueType::Bool,
    ];

    fn random_point(rng: &mut XorShift, n: usize) -> PointDef {
        let mut p = point(
            &format!("s{n}"),
            TABLES[rng.below(4) as usize],
            if rng.below(4) == 0 {
                u16::MAX - rng.below(4) as u16
            } else {
                rng.below(300) as u16
            },
            TYPES[rng.below(7) as usize],
        );
        p.order = ORDERS[rng.below(4) as usize];
        p.scale = rng.f64();
        p.offset = rng.f64();
        if rng.below(2) == 0 {
            let (a, b) = (rng.f64(), rng.f64());
            p.writable = Some(WriteRange {
                min: a.min(b),
                max: a.max(b),
            });
        }
        p
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for round in 0..300 {
            let n = rng.below(12) as usize;
            let mut m = map((0..n).map(|i| random_point(&mut rng, i)).collect());
            m.max_registers_per_read = rng.below(130) as u16;
            m.max_bits_per_read = rng.below(2100) as u16;
            m.max_gap = rng.below(20) as u16;
            let _ = m.validate();
            let mut reqs = plan_reads(&m);
            // Every point is planned exactly once, never split.
            let mut planned: Vec<usize> = reqs.iter().flat_map(|r| r.points.clone()).collect();
            planned.sort_unstable();
            assert_eq!(planned, (0..n).collect::<Vec<_>>(), "round {round}");
            // Plus a request that does not fit the map at all.
            reqs.push(ReadRequest {
                table: TABLES[rng.below(4) as usize],
                start: rng.next() as u16,
                count: rng.below(200) as u16,
                points: (0..rng.below(5)).map(|_| rng.below(15) as usize).collect(),
            });
            for req in &reqs {
                let len = rng.below(u64::from(req.count) + 3) as usize;
                let words: Vec<u16> = (0..len).map(|_| rng.next() as u16).collect();
                let bits: Vec<bool> = (0..len).map(|_| rng.below(2) == 0).collect();
                let out = decode_read(&m, req, &words);
                assert_eq!(out.len(), req.points.len());
                for (_, r) in out {
                    if let Ok(v) = r {
                        assert!(v.is_finite());
                    }
                }
                let _ = decode_read_bits(&m, req, &bits);
            }
            for p in &m.points {
                let len = rng.below(6) as usize;
                let words: Vec<u16> = (0..len).map(|_| rng.next() as u16).collect();
                if let Ok(v) = decode_registers(p, &words) {
                    assert!(v.is_finite());
                }
                let _ = decode_bit(p, rng.below(2) == 0);
                for _ in 0..4 {
                    let value = rng.f64();
                    if let Ok(words) = encode_registers(p, value) {
                        assert_eq!(words.len(), usize::from(register_count(p.value_type)));
                    }
                    let _ = encode_bit(p, value);
                }
            }
        }
    }

    #[test]
    fn encode_decode_round_trip_on_valid_points() {
        let mut rng = XorShift(42);
        for _ in 0..2000 {
            let t = TYPES[rng.below(6) as usize];
            let mut p = with_order(reg(0, t), ORDERS[rng.below(4) as usize]);
            p.scale = [0.1, 0.01, 1.0, -2.0, 10.0][rng.below(5) as usize];
            p.offset = [0.0, -1.0, 5.5][rng.below(3) as usize];
            p.writable = Some(WriteRange {
                min: -1e12,
                max: 1e12,
            });
            let value = (rng.below(200_001) as f64 - 100_000.0) / 100.0;
            let Ok(words) = encode_registers(&p, value) else {
                continue; // does not fit (e.g. negative raw in an unsigned type)
            };
            let back = decode_registers(&p, &words).unwrap();
            // Integer types quantise to one raw step; f32 loses precision.
            let tolerance = match t {
                ValueType::F32 => value.abs() * 1e-6 + 1e-6,
                ValueType::F64 => 1e-9,
                _ => p.scale.abs() / 2.0 + 1e-9,
            };
            assert!((back - value).abs() <= tolerance, "{t} {value} -> {back}");
        }
    }
}
