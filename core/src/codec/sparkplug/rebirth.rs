//! The NCMD that asks an edge node for a rebirth.

use chrono::{DateTime, Utc};

use super::payload::encode_payload;
use super::proto::{DataType, Metric, MetricValue, Payload};
use super::{NAMESPACE, REBIRTH_METRIC};

/// The NCMD asking edge node `edge_node` of `group` to publish its NBIRTH and DBIRTHs again
/// (spec "Operational Behavior → Commands" and the NCMD example of "Payloads → Payload
/// Representation on Host Applications"): topic `spBv1.0/<group>/NCMD/<edge node>` and a
/// payload with `timestamp` and one metric, `Node Control/Rebirth` = true, datatype Boolean,
/// by name (edge nodes must not alias it), stamped with the same time.
///
/// There is no `seq`: "Every NCMD message MUST NOT include a sequence number"
/// (`tck-id-payloads-ncmd-seq`). `group` and `edge_node` are the raw topic elements, not ids.
/// Publish with QoS 0, not retained.
pub fn rebirth_command(
    group: &str,
    edge_node: &str,
    timestamp: DateTime<Utc>,
) -> (String, Vec<u8>) {
    let ms = u64::try_from(timestamp.timestamp_millis()).unwrap_or(0);
    let payload = Payload {
        timestamp: Some(ms),
        metrics: vec![Metric {
            name: Some(REBIRTH_METRIC.to_owned()),
            timestamp: Some(ms),
            datatype: Some(DataType::Boolean.code()),
            value: Some(MetricValue::BooleanValue(true)),
            ..Metric::default()
        }],
        ..Payload::default()
    };
    (
        format!("{NAMESPACE}/{group}/NCMD/{edge_node}"),
        encode_payload(&payload),
    )
}

#[cfg(test)]
mod tests {
    use super::super::payload::decode_payload;
    use super::super::tests::{born, topic};
    use super::super::topic::MessageKind;
    use super::*;

    #[test]
    fn rebirth_command_follows_the_spec() {
        // The spec's example (Payloads → Payload Representation on Host Applications → NCMD):
        // topic spBv1.0/Sparkplug B Devices/NCMD/Raspberry Pi, payload
        // {"timestamp": 1486144502122, "metrics": [{"name": "Node Control/Rebirth",
        //  "timestamp": 1486144502122, "dataType": "Boolean", "value": true}]}
        let at = DateTime::from_timestamp_millis(1_486_144_502_122).unwrap();
        let (tp, bytes) = rebirth_command("Sparkplug B Devices", "Raspberry Pi", at);
        assert_eq!(tp, "spBv1.0/Sparkplug B Devices/NCMD/Raspberry Pi");
        assert_eq!(topic(&tp).kind, MessageKind::NCmd);
        let p = decode_payload(&bytes).unwrap();
        let want = Payload {
            timestamp: Some(1_486_144_502_122),
            metrics: vec![Metric {
                name: Some("Node Control/Rebirth".into()),
                timestamp: Some(1_486_144_502_122),
                datatype: Some(11),
                value: Some(MetricValue::BooleanValue(true)),
                ..Metric::default()
            }],
            ..Payload::default()
        };
        assert_eq!(p, want);
        assert_eq!(p.seq, None, "an NCMD must not carry a seq");
        assert_eq!(p.metrics[0].alias, None);
        let (tp, _) = born().rebirth_command(at);
        assert_eq!(tp, "spBv1.0/Plant A/NCMD/RTU 1");
    }
}
