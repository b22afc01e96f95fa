//! Decoding and encoding payloads, with limits on their size checked before decoding.

use prost::Message as _;

use super::SparkplugError;
use super::proto::{Metric, Payload, PropertySet, PropertyValue};

/// Largest payload [`decode_payload`] accepts, in bytes.
pub const MAX_PAYLOAD_LEN: usize = 4 * 1024 * 1024;
/// Most memory the decoded structure of one payload may take, in bytes, as estimated before
/// decoding (the contents of strings and byte arrays, bounded by [`MAX_PAYLOAD_LEN`], and the
/// allocator's slack aside): about 100 000 bare metrics, or 50 000 with four properties each.
pub const MAX_DECODED_SIZE: usize = 32 * 1024 * 1024;

/// Decodes a Sparkplug B payload. Refuses, before allocating for them, payloads over
/// [`MAX_PAYLOAD_LEN`] bytes and payloads whose decoded structure would take more than
/// [`MAX_DECODED_SIZE`] bytes (a metric costs a few hundred bytes decoded but can take two on
/// the wire). Every length inside the payload is checked against the bytes that remain.
pub fn decode_payload(bytes: &[u8]) -> Result<Payload, SparkplugError> {
    if bytes.len() > MAX_PAYLOAD_LEN {
        return Err(SparkplugError::TooLarge {
            len: bytes.len(),
            max: MAX_PAYLOAD_LEN,
        });
    }
    let mut pos = 0;
    if let Some(estimate) = scan(bytes, &mut pos, Some(Shape::Payload), 0, None)
        && estimate > MAX_DECODED_SIZE
    {
        return Err(SparkplugError::TooComplex {
            estimate,
            max: MAX_DECODED_SIZE,
        });
    }
    Payload::decode(bytes).map_err(|e| SparkplugError::NotProtobuf(e.to_string()))
}

/// Encodes a payload (fields in field-number order; unknown fields are not kept).
pub fn encode_payload(payload: &Payload) -> Vec<u8> {
    payload.encode_to_vec()
}

/// The messages that allocate per element of a repeated field, for [`scan`].
#[derive(Debug, Clone, Copy)]
enum Shape {
    Payload,
    Metric,
    PropertySet,
    PropertySetList,
    PropertyValue,
}

impl Shape {
    /// For length-delimited field `tag` of this message: the message inside, when it is one
    /// [`scan`] must look into, and what one occurrence adds to the decoded size.
    fn field(self, tag: u64) -> (Option<Shape>, usize) {
        use std::mem::size_of;
        match (self, tag) {
            (Shape::Payload, 2) => (Some(Shape::Metric), size_of::<Metric>()),
            (Shape::Metric, 9) | (Shape::PropertyValue, 9) => (Some(Shape::PropertySet), 0),
            (Shape::PropertySet, 1) => (None, size_of::<String>()),
            (Shape::PropertySet, 2) => (Some(Shape::PropertyValue), size_of::<PropertyValue>()),
            (Shape::PropertySetList, 1) => (Some(Shape::PropertySet), size_of::<PropertySet>()),
            (Shape::PropertyValue, 10) => (Some(Shape::PropertySetList), 0),
            _ => (None, 0),
        }
    }
}

/// Walks the protobuf framing of a message of `shape` (`None`: a message not looked into) from
/// `pos`, to the end of `bytes` or, inside a group, to the group's end, and estimates what its
/// decoded structure takes (the contents of strings and bytes excluded: they are bounded by the
/// input). Stops early once past [`MAX_DECODED_SIZE`]. `None` when the framing is broken or
/// nests deeper than prost's recursion limit: prost then says why.
fn scan(
    bytes: &[u8],
    pos: &mut usize,
    shape: Option<Shape>,
    depth: u32,
    group: Option<u64>,
) -> Option<usize> {
    fn varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *bytes.get(*pos)?;
            *pos += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    if depth > 100 {
        return None;
    }
    let mut size = 0usize;
    while *pos < bytes.len() {
        let key = varint(bytes, pos)?;
        let tag = key >> 3;
        match key & 7 {
            0 => {
                varint(bytes, pos)?;
            }
            1 => *pos = pos.checked_add(8)?,
            2 => {
                let len = usize::try_from(varint(bytes, pos)?).ok()?;
                let end = pos.checked_add(len).filter(|&end| end <= bytes.len())?;
                let (inner, cost) = shape.map_or((None, 0), |s| s.field(tag));
                size = size.saturating_add(cost);
                if let Some(inner) = inner {
                    let nested = scan(&bytes[*pos..end], &mut 0, Some(inner), depth + 1, None)?;
                    size = size.saturating_add(nested);
                }
                *pos = end;
            }
            3 => size = size.saturating_add(scan(bytes, pos, None, depth + 1, Some(tag))?),
            4 => return (group == Some(tag)).then_some(size),
            5 => *pos = pos.checked_add(4)?,
            _ => return None,
        }
        if *pos > bytes.len() {
            return None;
        }
        if size > MAX_DECODED_SIZE {
            return Some(size);
        }
    }
    group.is_none().then_some(size)
}

#[cfg(test)]
mod tests {
    use super::super::proto::{DataType, MetaData, MetricValue, PropertyValueKind};
    use super::super::tests::{
        GO_NBIRTH, GO_NDATA, GO_NDATA_GAP, GO_NDEATH, GO_TIMESTAMP, b64, named,
    };
    use super::*;

    // --- golden fixtures ------------------------------------------------------------------

    #[test]
    fn decodes_payloads_encoded_by_go_protobuf() {
        let birth = decode_payload(&b64(GO_NBIRTH)).unwrap();
        assert_eq!(birth.timestamp, Some(GO_TIMESTAMP));
        assert_eq!(birth.seq, Some(0));
        assert_eq!(birth.uuid, None);
        assert_eq!(birth.metrics.len(), 3);
        let m = &birth.metrics;
        assert_eq!(m[0].name.as_deref(), Some("bdSeq"));
        assert_eq!(m[0].alias, Some(1));
        assert_eq!(m[0].datatype, Some(DataType::UInt64.code()));
        assert_eq!(m[0].value, Some(MetricValue::LongValue(88)));
        assert_eq!(m[1].name.as_deref(), Some("Node Control/Rebirth"));
        assert_eq!(m[1].alias, Some(2));
        assert_eq!(m[1].datatype, Some(DataType::Boolean.code()));
        assert_eq!(m[1].value, Some(MetricValue::BooleanValue(false)));
        assert_eq!(m[2].name.as_deref(), Some("Temperature"));
        assert_eq!(m[2].alias, Some(100));
        assert_eq!(m[2].datatype, Some(DataType::Double.code()));
        assert_eq!(m[2].value, Some(MetricValue::DoubleValue(21.5)));
        assert_eq!(m[2].timestamp, None);

        let data = decode_payload(&b64(GO_NDATA)).unwrap();
        assert_eq!(data.seq, Some(1));
        assert_eq!(data.metrics.len(), 1);
        assert_eq!(data.metrics[0].name, None);
        assert_eq!(data.metrics[0].alias, Some(100));
        assert_eq!(data.metrics[0].value, Some(MetricValue::DoubleValue(22.5)));

        let death = decode_payload(&b64(GO_NDEATH)).unwrap();
        assert_eq!(death.metrics.len(), 1);
        assert_eq!(death.metrics[0].name.as_deref(), Some("bdSeq"));
        assert_eq!(death.metrics[0].value, Some(MetricValue::LongValue(0)));
    }

    #[test]
    fn go_fixtures_re_encode_byte_for_byte() {
        for s in [GO_NBIRTH, GO_NDATA, GO_NDEATH, GO_NDATA_GAP] {
            let bytes = b64(s);
            assert_eq!(encode_payload(&decode_payload(&bytes).unwrap()), bytes);
        }
    }

    #[test]
    fn round_trips_every_field() {
        let mut m = named("a/b", Some(7), DataType::Int32, MetricValue::IntValue(5));
        m.timestamp = Some(1);
        m.is_historical = Some(true);
        m.is_transient = Some(false);
        m.is_null = Some(false);
        m.metadata = Some(MetaData {
            is_multi_part: Some(false),
            content_type: Some("text/plain".into()),
            size: Some(12),
            seq: Some(0),
            file_name: Some("f".into()),
            file_type: Some("txt".into()),
            md5: Some("x".into()),
            description: Some("d".into()),
        });
        m.properties = Some(PropertySet {
            keys: vec!["nested".into()],
            values: vec![PropertyValue {
                r#type: Some(DataType::PropertySet.code()),
                is_null: None,
                value: Some(PropertyValueKind::PropertysetValue(PropertySet {
                    keys: vec!["k".into()],
                    values: vec![PropertyValue {
                        value: Some(PropertyValueKind::LongValue(9)),
                        ..PropertyValue::default()
                    }],
                })),
            }],
        });
        let values = [
            MetricValue::IntValue(1),
            MetricValue::LongValue(u64::MAX),
            MetricValue::FloatValue(1.5),
            MetricValue::DoubleValue(-2.5),
            MetricValue::BooleanValue(true),
            MetricValue::StringValue("s".into()),
            MetricValue::BytesValue(vec![0, 1]),
            MetricValue::DatasetValue(vec![0x08, 0x01]),
            MetricValue::TemplateValue(vec![0x0a, 0x01, b'v']),
            MetricValue::ExtensionValue(vec![]),
        ];
        let metrics = values
            .into_iter()
            .map(|v| Metric {
                value: Some(v),
                ..m.clone()
            })
            .collect();
        let p = Payload {
            timestamp: Some(2),
            metrics,
            seq: Some(255),
            uuid: Some("u".into()),
            body: Some(vec![1, 2, 3]),
        };
        assert_eq!(decode_payload(&encode_payload(&p)).unwrap(), p);
    }

    #[test]
    fn unknown_fields_and_datasets_are_tolerated() {
        // A real DataSet message (2 columns, 1 row) as a metric value, an unknown metric field
        // 25 and a payload extension field 6.
        let dataset = [
            0x08, 0x02, // num_of_columns = 2
            0x12, 0x01, b'a', 0x12, 0x01, b'b', // columns
            0x18, 0x03, 0x18, 0x0a, // types Int32, Double
            0x22, 0x06, 0x0a, 0x02, 0x08, 0x01, 0x0a, 0x00, // one row
        ];
        let mut metric = vec![0x0a, 0x01, b'd', 0x20, 16, 0x8a, 0x01, dataset.len() as u8];
        metric.extend(dataset);
        metric.extend([0xc8, 0x01, 0x05]); // field 25, varint 5
        let mut bytes = vec![0x18, 0x00, 0x12, metric.len() as u8];
        bytes.extend(&metric);
        bytes.extend([0x30, 0x01, 0x32, 0x02, 0xff, 0xff]); // field 6 varint, field 6 bytes
        let p = decode_payload(&bytes).unwrap();
        assert_eq!(p.metrics.len(), 1);
        assert_eq!(
            p.metrics[0].value,
            Some(MetricValue::DatasetValue(dataset.to_vec()))
        );
        // Dataset bytes are kept verbatim; unknown fields are dropped on re-encode.
        let again = decode_payload(&encode_payload(&p)).unwrap();
        assert_eq!(again, p);
    }

    #[test]
    fn refuses_what_is_not_protobuf() {
        for bytes in [
            &br#"{"online":true,"timestamp":1}"#[..],
            b"\xff\xff\xff",
            b"\x12\x05ab",
        ] {
            match decode_payload(bytes) {
                Err(SparkplugError::NotProtobuf(msg)) => assert!(!msg.is_empty()),
                other => panic!("{bytes:?}: {other:?}"),
            }
        }
        let mut truncated = b64(GO_NBIRTH);
        truncated.truncate(30);
        let err = decode_payload(&truncated).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("payload is not a Sparkplug B protobuf: "),
            "{err}"
        );
        // Invalid UTF-8 in a metric name.
        let err = decode_payload(&[0x12, 0x03, 0x0a, 0x01, 0xff]).unwrap_err();
        assert!(matches!(err, SparkplugError::NotProtobuf(_)), "{err}");
    }

    #[test]
    fn refuses_absurd_lengths_without_allocating() {
        // A metric claiming 2^35 bytes, and a body claiming u64::MAX bytes.
        for bytes in [
            &[0x12, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01][..],
            &[
                0x2a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00,
            ],
        ] {
            assert!(matches!(
                decode_payload(bytes),
                Err(SparkplugError::NotProtobuf(_))
            ));
        }
        assert_eq!(
            decode_payload(&vec![0; MAX_PAYLOAD_LEN + 1]),
            Err(SparkplugError::TooLarge {
                len: MAX_PAYLOAD_LEN + 1,
                max: MAX_PAYLOAD_LEN
            })
        );
    }

    /// `tag` as a length-delimited field holding `body`.
    fn ld(tag: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, &mut out);
        prost::encoding::encode_varint(body.len() as u64, &mut out);
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn refuses_payloads_that_would_decode_too_big() {
        let metric = std::mem::size_of::<Metric>();
        let fit = MAX_DECODED_SIZE / metric;
        assert!(fit >= 100_000, "{metric} bytes per metric");
        // Empty metrics: two bytes on the wire each.
        assert!(matches!(
            decode_payload(&[0x12, 0x00].repeat(fit + 1)),
            Err(SparkplugError::TooComplex {
                max: MAX_DECODED_SIZE,
                ..
            })
        ));
        assert_eq!(
            decode_payload(&[0x12, 0x00].repeat(fit))
                .unwrap()
                .metrics
                .len(),
            fit
        );
        // Empty property values in one metric's property set.
        let value = std::mem::size_of::<PropertyValue>();
        let set = [0x12, 0x00].repeat(MAX_DECODED_SIZE / value + 1);
        let bytes = ld(2, &ld(9, &set));
        assert!(bytes.len() < MAX_PAYLOAD_LEN);
        let err = decode_payload(&bytes).unwrap_err();
        assert!(err.to_string().contains("once decoded"), "{err}");
        // Metrics after a group (an unknown field 6) are counted too.
        let mut grouped = vec![0x33, 0x08, 0x01, 0x34];
        grouped.extend([0x12, 0x00].repeat(fit + 1));
        assert!(matches!(
            decode_payload(&grouped),
            Err(SparkplugError::TooComplex { .. })
        ));
        assert_eq!(decode_payload(&grouped[..6]).unwrap().metrics.len(), 1);
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let mut set = Vec::new();
        for _ in 0..10_000 {
            set = ld(2, &ld(9, &set)); // PropertySet.values -> PropertyValue.propertyset_value
        }
        let bytes = ld(2, &ld(9, &set));
        assert!(matches!(
            decode_payload(&bytes),
            Err(SparkplugError::NotProtobuf(_))
        ));
        let mut shallow = Vec::new();
        for _ in 0..20 {
            shallow = ld(2, &ld(9, &shallow));
        }
        assert!(decode_payload(&ld(2, &ld(9, &shallow))).is_ok());
    }

    #[test]
    fn empty_payload_is_an_empty_message() {
        assert_eq!(decode_payload(b"").unwrap(), Payload::default());
    }
}
