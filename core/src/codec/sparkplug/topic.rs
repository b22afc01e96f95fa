//! Sparkplug B topics: `spBv1.0/<group>/<type>/<edge node>[/<device>]` and
//! `spBv1.0/STATE/<host id>`.

use std::fmt;

use super::ids::device_id;
use super::{NAMESPACE, SparkplugError};
use crate::ids::{DeviceId, IdError};

/// The message type element of a Sparkplug topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    NBirth,
    NDeath,
    DBirth,
    DDeath,
    NData,
    DData,
    NCmd,
    DCmd,
    /// A host application's birth/death (`spBv1.0/STATE/<host id>`, JSON payload).
    State,
}

impl MessageKind {
    /// Every kind.
    pub const ALL: [MessageKind; 9] = [
        MessageKind::NBirth,
        MessageKind::NDeath,
        MessageKind::DBirth,
        MessageKind::DDeath,
        MessageKind::NData,
        MessageKind::DData,
        MessageKind::NCmd,
        MessageKind::DCmd,
        MessageKind::State,
    ];

    /// The spelling in topics.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::NBirth => "NBIRTH",
            MessageKind::NDeath => "NDEATH",
            MessageKind::DBirth => "DBIRTH",
            MessageKind::DDeath => "DDEATH",
            MessageKind::NData => "NDATA",
            MessageKind::DData => "DDATA",
            MessageKind::NCmd => "NCMD",
            MessageKind::DCmd => "DCMD",
            MessageKind::State => "STATE",
        }
    }

    /// Whether the topic of this kind names a device (DBIRTH, DDEATH, DDATA, DCMD).
    pub fn is_device(self) -> bool {
        matches!(
            self,
            MessageKind::DBirth | MessageKind::DDeath | MessageKind::DData | MessageKind::DCmd
        )
    }

    /// Whether the edge node must put a `seq` in this kind of payload (all it publishes except
    /// NDEATH).
    pub fn needs_seq(self) -> bool {
        matches!(
            self,
            MessageKind::NBirth
                | MessageKind::NData
                | MessageKind::DBirth
                | MessageKind::DData
                | MessageKind::DDeath
        )
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed Sparkplug B topic. For [`MessageKind::State`] the `group` is empty and `edge_node`
/// holds the host application id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SparkplugTopic {
    pub group: String,
    pub kind: MessageKind,
    pub edge_node: String,
    pub device: Option<String>,
}

/// The topic, when it is a Sparkplug B topic (see [`SparkplugTopic::parse`] for why not).
pub fn parse_topic(topic: &str) -> Option<SparkplugTopic> {
    SparkplugTopic::parse(topic).ok()
}

impl SparkplugTopic {
    /// Parses `spBv1.0/<group>/<type>/<edge node>[/<device>]` (the device present exactly for
    /// DBIRTH, DDEATH, DDATA and DCMD) or `spBv1.0/STATE/<host id>`. Elements must be non-empty
    /// and free of `+` and `#`.
    pub fn parse(topic: &str) -> Result<SparkplugTopic, SparkplugError> {
        let bad = |reason: &str| SparkplugError::BadTopic {
            topic: topic.to_owned(),
            reason: reason.to_owned(),
        };
        let parts: Vec<&str> = topic.split('/').collect();
        if parts[0] != NAMESPACE {
            return Err(bad("it does not start with `spBv1.0/`"));
        }
        if let Some(p) = parts.iter().find(|p| p.contains(['+', '#'])) {
            return Err(bad(&format!("element `{p}` contains `+` or `#`")));
        }
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad("it has an empty element"));
        }
        if parts.len() == 3 && parts[1] == "STATE" {
            return Ok(SparkplugTopic {
                group: String::new(),
                kind: MessageKind::State,
                edge_node: parts[2].to_owned(),
                device: None,
            });
        }
        if parts.len() < 4 {
            return Err(bad(
                "expected `spBv1.0/<group>/<message type>/<edge node>[/<device>]`",
            ));
        }
        let kind = MessageKind::ALL
            .into_iter()
            .find(|k| *k != MessageKind::State && k.as_str() == parts[2])
            .ok_or_else(|| bad(&format!("unknown message type `{}`", parts[2])))?;
        let device = match (kind.is_device(), parts.len()) {
            (true, 5) => Some(parts[4].to_owned()),
            (false, 4) => None,
            (true, 4) => return Err(bad(&format!("{kind} needs a device element"))),
            (false, 5) => return Err(bad(&format!("{kind} must not have a device element"))),
            _ => return Err(bad("too many elements")),
        };
        Ok(SparkplugTopic {
            group: parts[1].to_owned(),
            kind,
            edge_node: parts[3].to_owned(),
            device,
        })
    }

    /// The Waterline device the message is about: the edge node, or its device.
    pub fn device_id(&self) -> Result<DeviceId, IdError> {
        device_id(&self.group, &self.edge_node, self.device.as_deref())
    }
}

impl fmt::Display for SparkplugTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == MessageKind::State {
            return write!(f, "{NAMESPACE}/STATE/{}", self.edge_node);
        }
        write!(
            f,
            "{NAMESPACE}/{}/{}/{}",
            self.group, self.kind, self.edge_node
        )?;
        match &self.device {
            Some(d) => write!(f, "/{d}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::topic;
    use super::*;

    #[test]
    fn parses_every_topic_form() {
        for kind in ["NBIRTH", "NDEATH", "NDATA", "NCMD"] {
            let tp = topic(&format!("spBv1.0/G 1/{kind}/Edge 1"));
            assert_eq!(tp.group, "G 1");
            assert_eq!(tp.kind.as_str(), kind);
            assert_eq!(tp.edge_node, "Edge 1");
            assert_eq!(tp.device, None);
            assert_eq!(tp.to_string(), format!("spBv1.0/G 1/{kind}/Edge 1"));
        }
        for kind in ["DBIRTH", "DDEATH", "DDATA", "DCMD"] {
            let s = format!("spBv1.0/G/{kind}/E/Dev.1");
            let tp = parse_topic(&s).unwrap();
            assert!(tp.kind.is_device());
            assert_eq!(tp.device.as_deref(), Some("Dev.1"));
            assert_eq!(tp.to_string(), s);
        }
        let st = topic("spBv1.0/STATE/scada-host");
        assert_eq!(st.kind, MessageKind::State);
        assert_eq!(st.edge_node, "scada-host");
        assert_eq!(st.group, "");
        assert_eq!(st.to_string(), "spBv1.0/STATE/scada-host");
        // A group may be called STATE when the topic has the full form.
        assert_eq!(topic("spBv1.0/STATE/NDATA/e").group, "STATE");
    }

    #[test]
    fn refuses_malformed_topics_with_a_reason() {
        let cases = [
            ("spAv1.0/G/NDATA/E", "does not start"),
            ("spBv1.0/G/NDATA", "expected"),
            ("spBv1.0/G/DATA/E", "unknown message type `DATA`"),
            ("spBv1.0/G/ndata/E", "unknown message type"),
            ("spBv1.0/G/STATE/E", "unknown message type `STATE`"),
            ("spBv1.0/G/NDATA/E/D", "must not have a device"),
            ("spBv1.0/G/DDATA/E", "needs a device"),
            ("spBv1.0/G/DDATA/E/D/x", "too many"),
            ("spBv1.0//NDATA/E", "empty element"),
            ("spBv1.0/G/NDATA/", "empty element"),
            ("spBv1.0/G/NDATA/+", "contains `+` or `#`"),
            ("spBv1.0/#", "contains"),
            ("spBv1.0/STATE/", "empty element"),
            ("", "does not start"),
        ];
        for (s, reason) in cases {
            match SparkplugTopic::parse(s) {
                Err(SparkplugError::BadTopic { topic, reason: r }) => {
                    assert_eq!(topic, s);
                    assert!(r.contains(reason), "{s}: {r}");
                }
                other => panic!("{s}: {other:?}"),
            }
            assert_eq!(parse_topic(s), None);
        }
    }
}
