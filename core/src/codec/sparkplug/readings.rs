//! From the metrics of a BIRTH or DATA payload to readings: what a BIRTH declares, resolving
//! aliases and names against it, and reading values, times and units.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::ids::sensor_id;
use super::proto::{DataType, Metric, MetricValue, Payload, PropertySet, PropertyValueKind};
use super::state::Outcome;
use super::{BD_SEQ_METRIC, SparkplugError};
use crate::codec::native::{NativeReading, RejectedReading};
use crate::ids::{DeviceId, IdError};
use crate::units::Unit;

/// The metrics one BIRTH declared.
#[derive(Debug, Clone, Default)]
pub(super) struct Scope {
    defs: HashMap<String, MetricDef>,
    aliases: HashMap<u64, String>,
}

#[derive(Debug, Clone, Default)]
struct MetricDef {
    datatype: Option<u32>,
    unit: Option<Unit>,
}

/// The name → (datatype, unit) and alias → name maps a BIRTH declares.
pub(super) fn birth_scope(payload: &Payload) -> Scope {
    let mut scope = Scope::default();
    for m in &payload.metrics {
        let Some(name) = &m.name else { continue };
        if let Some(alias) = m.alias {
            scope.aliases.insert(alias, name.clone());
        }
        scope.defs.insert(
            name.clone(),
            MetricDef {
                datatype: m.datatype,
                unit: unit_of(m.properties.as_ref()),
            },
        );
    }
    scope
}

pub(super) fn reject_all(payload: &Payload, e: &IdError, out: &mut Outcome) {
    out.problems.push(e.clone().into());
    out.rejected
        .extend((0..payload.metrics.len()).map(|index| RejectedReading {
            index,
            reason: e.to_string(),
        }));
}

/// Turns the metrics of one BIRTH or DATA payload into readings of `device`, resolving names,
/// datatypes and units against `scope` (the declaring BIRTH; `None` outside a session).
pub(super) fn take_readings(
    device: DeviceId,
    scope: Option<&Scope>,
    payload: &Payload,
    birth: bool,
    received_at: DateTime<Utc>,
    out: &mut Outcome,
) {
    for (index, m) in payload.metrics.iter().enumerate() {
        let result = resolve(scope, m, birth, out).and_then(|(name, def)| {
            metric_reading(&device, name, def, m, payload.timestamp, received_at)
        });
        match result {
            Ok(Some(r)) => out.readings.push(r),
            Ok(None) => {}
            Err(reason) => out.rejected.push(RejectedReading { index, reason }),
        }
    }
    out.device = Some(device);
}

/// The name of a metric and what its BIRTH declared about it. In DATA, an alias or name the
/// BIRTH did not declare is a problem asking for a rebirth; the metric is still taken by its
/// own name and datatype when it has them.
fn resolve<'a>(
    scope: Option<&'a Scope>,
    m: &'a Metric,
    birth: bool,
    out: &mut Outcome,
) -> Result<(&'a str, Option<&'a MetricDef>), String> {
    let name = match (m.alias, &m.name) {
        _ if birth => m.name.as_deref().ok_or("BIRTH metric without a name")?,
        (Some(alias), own) => match scope.and_then(|s| s.aliases.get(&alias)) {
            Some(name) => name.as_str(),
            None => {
                if scope.is_some() {
                    out.problems.push(SparkplugError::UnknownAlias { alias });
                    out.rebirth_needed = true;
                }
                own.as_deref().ok_or_else(|| {
                    format!("alias {alias} was not declared in a BIRTH and the metric has no name")
                })?
            }
        },
        (None, Some(name)) => {
            if let Some(s) = scope
                && !s.defs.contains_key(name)
            {
                out.problems
                    .push(SparkplugError::UnknownMetric { name: name.clone() });
                out.rebirth_needed = true;
            }
            name.as_str()
        }
        (None, None) => return Err("metric has neither a name nor an alias".to_owned()),
    };
    if name.is_empty() {
        return Err("metric name is empty".to_owned());
    }
    Ok((name, scope.and_then(|s| s.defs.get(name))))
}

/// Protocol metrics, handled rather than stored.
fn is_protocol_metric(name: &str) -> bool {
    name == BD_SEQ_METRIC
        || name.starts_with("Node Control/")
        || name.starts_with("Device Control/")
}

/// One metric as a reading; `Ok(None)` for protocol metrics.
fn metric_reading(
    device: &DeviceId,
    name: &str,
    def: Option<&MetricDef>,
    m: &Metric,
    payload_time: Option<u64>,
    received_at: DateTime<Utc>,
) -> Result<Option<NativeReading>, String> {
    if is_protocol_metric(name) {
        return Ok(None);
    }
    if m.is_null == Some(true) {
        return Err(format!("metric `{name}` is null"));
    }
    let datatype = m.datatype.or_else(|| def.and_then(|d| d.datatype));
    let value =
        numeric_value(m.value.as_ref(), datatype).map_err(|e| format!("metric `{name}`: {e}"))?;
    let time = match m.timestamp.or(payload_time) {
        Some(ms) => i64::try_from(ms)
            .ok()
            .and_then(DateTime::from_timestamp_millis)
            .ok_or_else(|| format!("metric `{name}`: timestamp {ms} ms is out of range"))?,
        None if m.is_historical == Some(true) => {
            return Err(format!(
                "metric `{name}` is historical but has no timestamp (nor has the payload)"
            ));
        }
        None => received_at,
    };
    let unit = unit_of(m.properties.as_ref()).or_else(|| def.and_then(|d| d.unit));
    let sensor = sensor_id(device, name).map_err(|e| format!("metric `{name}`: {e}"))?;
    Ok(Some(NativeReading {
        sensor,
        value,
        unit,
        time,
    }))
}

/// The unit an `engUnit` / `Engineering Units` string property names, when it is a Waterline
/// unit.
fn unit_of(properties: Option<&PropertySet>) -> Option<Unit> {
    let p = properties?;
    p.keys.iter().zip(&p.values).find_map(|(key, value)| {
        let key = key.trim();
        if !(key.eq_ignore_ascii_case("engUnit") || key.eq_ignore_ascii_case("Engineering Units")) {
            return None;
        }
        match &value.value {
            Some(PropertyValueKind::StringValue(s)) => s.trim().parse().ok(),
            _ => None,
        }
    })
}

/// A metric value as `f64`, read according to its datatype.
fn numeric_value(value: Option<&MetricValue>, datatype: Option<u32>) -> Result<f64, String> {
    let dt = datatype.and_then(DataType::from_code);
    let value = value.ok_or("has no value")?;
    let finite = |v: f64| {
        if v.is_finite() {
            Ok(v)
        } else {
            Err(format!("value {v} is not finite"))
        }
    };
    use DataType as T;
    use MetricValue as V;
    match (dt, value) {
        (Some(T::Boolean) | None | Some(T::Unknown), V::BooleanValue(b)) => {
            Ok(f64::from(u8::from(*b)))
        }
        (Some(T::Float | T::Double) | None | Some(T::Unknown), V::FloatValue(v)) => {
            finite(f64::from(*v))
        }
        (Some(T::Float | T::Double) | None | Some(T::Unknown), V::DoubleValue(v)) => finite(*v),
        (Some(t), V::IntValue(raw)) if t.integer().is_some() => integer(t, u64::from(*raw), 32),
        (Some(t), V::LongValue(raw)) if t.integer().is_some() => integer(t, *raw, 64),
        (None | Some(T::Unknown), V::IntValue(_) | V::LongValue(_)) => Err(
            "integer value without a datatype (on the metric or in its BIRTH) is ambiguous"
                .to_owned(),
        ),
        (Some(T::DateTime), _) => Err("DateTime values are times, not measurements".to_owned()),
        (Some(T::String | T::Text | T::Uuid), _) | (_, V::StringValue(_)) => {
            Err("string values are not numeric".to_owned())
        }
        (Some(T::DataSet), _) | (_, V::DatasetValue(_)) => {
            Err("datasets are not supported".to_owned())
        }
        (Some(T::Template), _) | (_, V::TemplateValue(_)) => {
            Err("templates are not supported".to_owned())
        }
        (_, V::BytesValue(_)) => Err(match dt {
            Some(t) => format!("{t} values (bytes) are not numeric"),
            None => "bytes values are not numeric".to_owned(),
        }),
        (_, V::ExtensionValue(_)) => Err("extension values are not supported".to_owned()),
        (Some(t), v) => Err(format!(
            "datatype {t} does not match its {} field",
            v.kind_name()
        )),
    }
}

/// An integer of datatype `t` carried in a `field_bits`-wide field (`int_value` 32,
/// `long_value` 64). Signed values may arrive sign-extended to the field (Tahu Java) or as the
/// plain two's complement of their width (Tahu Python); anything else out of range is refused.
fn integer(t: DataType, raw: u64, field_bits: u32) -> Result<f64, String> {
    let (bits, signed) = t.integer().ok_or("not an integer datatype")?;
    let width = bits.min(field_bits);
    if width < field_bits {
        let upper = raw >> width;
        let ones = (1u64 << (field_bits - width)) - 1;
        if upper != 0 && !(signed && upper == ones) {
            return Err(format!("{raw} is out of range for {t}"));
        }
    }
    let low = if width == 64 {
        raw
    } else {
        raw & ((1u64 << width) - 1)
    };
    // A 64-bit datatype in a 32-bit field cannot carry its sign: read it as unsigned.
    if signed && bits <= field_bits {
        let shift = 64 - width;
        Ok((((low << shift) as i64) >> shift) as f64)
    } else {
        Ok(low as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::super::proto::PropertyValue;
    use super::super::state::EdgeNodeState;
    use super::super::tests::{
        aliased, bd_seq, born, dbirth, dev, named, nbirth, node, now, payload, sensors, topic,
    };
    use super::*;

    #[test]
    fn integers_are_read_at_their_width_and_sign() {
        use DataType as T;
        use MetricValue::{IntValue as I, LongValue as L};
        let cases: [(T, MetricValue, f64); 14] = [
            (T::Int8, I(0xFFFF_FFFF), -1.0), // Tahu Java: sign-extended
            (T::Int8, I(0xFF), -1.0),        // Tahu Python: value + 2^8
            (T::Int8, I(127), 127.0),
            (T::Int16, I(0xFFFF_8000), -32768.0),
            (T::Int16, I(0x8000), -32768.0),
            (T::Int32, I(0x8000_0000), -2_147_483_648.0),
            (T::Int32, L(u64::MAX), -1.0),
            (T::Int64, L(u64::MAX - 1), -2.0),
            (T::UInt8, I(255), 255.0),
            (T::UInt16, I(65535), 65535.0),
            (T::UInt32, I(u32::MAX), 4_294_967_295.0),
            (T::UInt32, L(4_000_000_000), 4_000_000_000.0), // Tahu Java writes UInt32 here
            (T::UInt64, L(1 << 40), 1_099_511_627_776.0),
            (T::Int64, I(5), 5.0),
        ];
        for (dt, v, want) in cases {
            assert_eq!(
                numeric_value(Some(&v), Some(dt.code())),
                Ok(want),
                "{dt} {v:?}"
            );
        }
        for (dt, v) in [
            (T::Int8, I(0x100)),
            (T::UInt8, I(0xFFFF_FFFF)),
            (T::UInt16, I(70_000)),
            (T::UInt32, L(1 << 33)),
            (T::Int32, L(1 << 40)),
        ] {
            let err = numeric_value(Some(&v), Some(dt.code())).unwrap_err();
            assert!(err.contains("out of range"), "{dt} {v:?}: {err}");
        }
    }

    #[test]
    fn non_numeric_metrics_are_rejected_with_a_reason() {
        use DataType as T;
        use MetricValue as V;
        let cases: Vec<(Option<T>, Option<V>, &str)> = vec![
            (Some(T::String), Some(V::StringValue("x".into())), "string"),
            (None, Some(V::StringValue("x".into())), "string"),
            (Some(T::Text), Some(V::StringValue("x".into())), "string"),
            (Some(T::Bytes), Some(V::BytesValue(vec![1])), "Bytes values"),
            (
                Some(T::FloatArray),
                Some(V::BytesValue(vec![1])),
                "FloatArray",
            ),
            (Some(T::DataSet), Some(V::DatasetValue(vec![])), "datasets"),
            (None, Some(V::TemplateValue(vec![])), "templates"),
            (Some(T::DateTime), Some(V::LongValue(1)), "DateTime"),
            (
                Some(T::Double),
                Some(V::DoubleValue(f64::NAN)),
                "not finite",
            ),
            (
                Some(T::Float),
                Some(V::FloatValue(f32::INFINITY)),
                "not finite",
            ),
            (None, Some(V::IntValue(1)), "ambiguous"),
            (
                Some(T::Double),
                Some(V::BooleanValue(true)),
                "does not match",
            ),
            (Some(T::Double), None, "no value"),
        ];
        for (dt, v, reason) in cases {
            let err = numeric_value(v.as_ref(), dt.map(DataType::code)).unwrap_err();
            assert!(err.contains(reason), "{dt:?} {v:?}: {err}");
        }
        // In a message: counted as rejected by index; bdSeq and controls are not.
        let mut null = named("N", Some(5), T::Double, V::DoubleValue(0.0));
        null.is_null = Some(true);
        let mut hist = named("H", Some(6), T::Double, V::DoubleValue(1.0));
        hist.is_historical = Some(true);
        let mut p = payload(
            Some(0),
            vec![
                bd_seq(1),
                named(
                    "Properties/OS",
                    Some(3),
                    T::String,
                    V::StringValue("linux".into()),
                ),
                named(
                    "Node Control/Scan Rate",
                    Some(4),
                    T::Int32,
                    V::IntValue(1000),
                ),
                null,
                hist,
                named("Ok", Some(7), T::Float, V::FloatValue(0.5)),
            ],
        );
        p.timestamp = None;
        let mut s = EdgeNodeState::new("g", "n");
        let out = s.on_message(&topic("spBv1.0/g/NBIRTH/n"), &p, now());
        assert_eq!(sensors(&out), vec![("g:n:Ok", 0.5)]);
        assert_eq!(
            out.readings[0].time,
            now(),
            "falls back to the receive time"
        );
        let idx: Vec<_> = out.rejected.iter().map(|r| r.index).collect();
        assert_eq!(idx, vec![1, 3, 4]);
        assert!(out.rejected[0].reason.contains("Properties/OS"));
        assert!(out.rejected[1].reason.contains("null"));
        assert!(out.rejected[2].reason.contains("historical"));
    }

    #[test]
    fn units_come_from_properties_or_the_birth() {
        let prop = |k: &str, v: &str| PropertySet {
            keys: vec!["Quality".into(), k.into()],
            values: vec![
                PropertyValue {
                    value: Some(PropertyValueKind::IntValue(192)),
                    ..PropertyValue::default()
                },
                PropertyValue {
                    value: Some(PropertyValueKind::StringValue(v.into())),
                    ..PropertyValue::default()
                },
            ],
        };
        assert_eq!(
            unit_of(Some(&prop("engUnit", "L/s"))),
            Some(Unit::LitrePerSecond)
        );
        assert_eq!(
            unit_of(Some(&prop("Engineering Units", "kPa"))),
            Some(Unit::Kilopascal)
        );
        assert_eq!(
            unit_of(Some(&prop("ENGUNIT", " m3/h "))),
            Some(Unit::CubicMetrePerHour)
        );
        assert_eq!(unit_of(Some(&prop("engUnit", "gal/min"))), None);
        assert_eq!(unit_of(Some(&prop("units", "bar"))), None);
        assert_eq!(unit_of(None), None);
        // A DATA metric's own property wins over the birth's.
        let mut s = born();
        s.on_message(&dev("DBIRTH"), &dbirth(1), now());
        let mut m = aliased(10, MetricValue::FloatValue(300.0));
        m.properties = Some(prop("engUnit", "kPa"));
        let out = s.on_message(&dev("DDATA"), &payload(Some(2), vec![m]), now());
        assert_eq!(out.readings[0].unit, Some(Unit::Kilopascal));
    }

    #[test]
    fn metric_timestamps_override_and_are_range_checked() {
        let mut s = born();
        let mut m = aliased(1, MetricValue::DoubleValue(1.0));
        m.timestamp = Some(u64::MAX);
        let out = s.on_message(&node("NDATA"), &payload(Some(1), vec![m]), now());
        assert!(out.rejected[0].reason.contains("out of range"), "{out:?}");
    }

    #[test]
    fn too_long_ids_reject_the_metric() {
        let mut s = born();
        let out = s.on_message(
            &node("NDATA"),
            &payload(
                Some(1),
                vec![named(
                    &"m".repeat(130),
                    None,
                    DataType::Double,
                    MetricValue::DoubleValue(1.0),
                )],
            ),
            now(),
        );
        assert!(out.rejected[0].reason.contains("longer than"), "{out:?}");
        let long = "n".repeat(130);
        let mut s = EdgeNodeState::new("g", long.as_str());
        let out = s.on_message(
            &topic(&format!("spBv1.0/g/NBIRTH/{long}")),
            &nbirth(0, 0),
            now(),
        );
        assert_eq!(out.rejected.len(), 4);
        assert!(matches!(out.problems[..], [SparkplugError::BadId(_)]));
        assert!(s.is_online());
    }
}
