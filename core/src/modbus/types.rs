//! What a point is made of: [`Table`], [`ValueType`], [`WordOrder`], [`WriteRange`] (see the
//! module docs of [`super`]).

use std::fmt;

use serde::{Deserialize, Serialize};

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

/// Word and byte order of a multi-byte value in registers; see the [module docs](super).
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

#[cfg(test)]
mod tests {
    use super::super::tests::ORDERS;
    use super::*;

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
}
