//! Register words and bits into values in engineering units ([`decode_registers`],
//! [`decode_read`] …), and values into words and bits to write ([`encode_registers`],
//! [`encode_bit`]).

use super::error::{DecodeError, EncodeError};
use super::map::{PointDef, RegisterMap};
use super::plan::ReadRequest;
use super::types::{Table, ValueType, register_count};

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
    if def.table != Table::Holding || def.value_type == ValueType::Bool {
        return Err(EncodeError::WrongTable {
            table: def.table,
            value_type: def.value_type,
        });
    }
    raw_for_write(def, value)?;
    device_registers(def, value)
}

/// The registers a device holds for `value` (in `def.unit`) at a holding- or input-register
/// point, which [`decode_registers`] turns back into `value` (to the point's resolution): the
/// device's side, for simulated devices. No writability check.
pub fn device_registers(def: &PointDef, value: f64) -> Result<Vec<u16>, EncodeError> {
    let t = def.value_type;
    if def.table.is_bits() || t == ValueType::Bool {
        return Err(EncodeError::WrongTable {
            table: def.table,
            value_type: t,
        });
    }
    if !value.is_finite() {
        return Err(EncodeError::NotFinite { value });
    }
    let raw = (value - def.offset) / def.scale;
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
pub(super) fn raw_to_be_bytes(t: ValueType, raw: f64) -> Option<Vec<u8>> {
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

#[cfg(test)]
mod tests {
    use super::super::tests::{ORDERS, map, point, reg, spans};
    use super::super::{WordOrder, WriteRange, plan_reads};
    use super::*;
    use crate::units::Unit;

    fn with_order(mut def: PointDef, order: WordOrder) -> PointDef {
        def.order = order;
        def
    }

    // ---- word order golden values ------------------------------------------------------

    #[test]
    fn device_registers_hold_read_only_points_as_decode_reads_them() {
        // f32 CDAB, as the DMA-inlet RTU's flow: 123.456 → words swapped.
        let flow = with_order(
            point("flow", Table::Input, 0, ValueType::F32),
            WordOrder::Cdab,
        );
        assert_eq!(
            device_registers(&flow, f64::from(123.456f32)).unwrap(),
            [0xE979, 0x42F6]
        );
        // u16 in tenths with an offset: 35.2 m → (35.2 − 1) / 0.1 = 342.
        let mut p = reg(5, ValueType::U16);
        p.scale = 0.1;
        p.offset = 1.0;
        assert_eq!(device_registers(&p, 35.2).unwrap(), [342]);
        assert!((decode_registers(&p, &[342]).unwrap() - 35.2).abs() < 1e-9);
        // No writability needed, but the type must hold the value.
        assert_eq!(encode_registers(&p, 35.2), Err(EncodeError::NotWritable));
        assert!(matches!(
            device_registers(&p, -5.0),
            Err(EncodeError::Overflow { .. })
        ));
        assert!(matches!(
            device_registers(&p, f64::NAN),
            Err(EncodeError::NotFinite { .. })
        ));
        let coil = point("c", Table::Coil, 0, ValueType::Bool);
        assert!(matches!(
            device_registers(&coil, 1.0),
            Err(EncodeError::WrongTable { .. })
        ));
    }

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

    // ---- decode_read / decode_read_bits -------------------------------------------------

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
