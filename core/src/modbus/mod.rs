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

// Layout: `types` (tables, value types, word orders, write ranges), `map` (the instantiated map
// and the checks shared with templates), `template` (templates and their TOML), `plan` (read
// planning), `codec` (decoding and encoding values), `error` (the error types); `tests` holds
// helpers shared by their tests.
mod codec;
mod error;
mod map;
mod plan;
mod template;
#[cfg(test)]
mod tests;
mod types;

pub use codec::{
    decode_bit, decode_read, decode_read_bits, decode_registers, device_registers, encode_bit,
    encode_registers,
};
pub use error::{DecodeError, EncodeError, MapProblem, RegisterMapError};
pub use map::{PointDef, RegisterMap};
pub use plan::{ReadRequest, plan_reads};
pub use template::{MapTemplate, PointTemplate};
pub use types::{Table, ValueType, WordOrder, WriteRange, register_count};

#[cfg(doc)]
use crate::ids::SensorId; // linked from the module docs

/// Most registers one read may ask for (Modbus: 125 for function codes 3 and 4).
pub const MAX_REGISTERS_PER_READ: u16 = 125;
/// Most bits one read may ask for (Modbus: 2000 for function codes 1 and 2).
pub const MAX_BITS_PER_READ: u16 = 2000;
/// Default for [`RegisterMap::max_gap`].
pub const DEFAULT_MAX_GAP: u16 = 8;
/// The text in a sensor-id template that [`MapTemplate::instantiate`] replaces.
pub const DEVICE_PLACEHOLDER: &str = "{device}";
