//! Ingest configuration: the `[mqtt]` and `[ingest]` sections of the service config.

use std::path::PathBuf;

use serde::Deserialize;

/// The MQTT protocol version ingest speaks: `protocol = "3.1.1"` (the default) or `"5"` (also
/// written as the number 5, and 4 for 3.1.1, the protocol level).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MqttProtocol {
    #[default]
    V311,
    V5,
}

impl<'de> Deserialize<'de> for MqttProtocol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(i64),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Text(t) => t,
            Raw::Number(n) => n.to_string(),
        };
        match text.as_str() {
            "3.1.1" | "4" => Ok(MqttProtocol::V311),
            "5" | "5.0" => Ok(MqttProtocol::V5),
            other => Err(serde::de::Error::custom(format!(
                "MQTT protocol `{other}` is not \"3.1.1\" or \"5\""
            ))),
        }
    }
}

/// How to reach the MQTT broker and what to subscribe to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Broker URL, `mqtt://HOST:PORT`, or `mqtts://HOST:PORT` for TLS (default port 8883).
    pub broker: String,
    /// PEM file of the CA(s) that signed the broker's certificate (TLS); default: the system
    /// bundle `/etc/ssl/certs/ca-certificates.crt`.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate and key for TLS client authentication (both or neither).
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// Client id; with a persistent session the broker keeps unacknowledged messages for it.
    pub client_id: String,
    /// MQTT protocol version: `"3.1.1"` or `"5"`.
    pub protocol: MqttProtocol,
    /// MQTT 5: how long the broker keeps the session (subscriptions and unacknowledged
    /// messages) after a disconnect, seconds. (A 3.1.1 persistent session never expires.)
    pub session_expiry_secs: u32,
    /// Topic prefix of native uplinks: `<prefix>/<device>/up`.
    pub topic_prefix: String,
    /// Share one subscription between several ingest processes (`$share/<group>/…`).
    pub shared_group: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Keep-alive interval in seconds.
    pub keep_alive_secs: u64,
    /// Largest MQTT packet accepted from the broker, in bytes.
    pub max_packet_bytes: usize,
    /// Also subscribe to ChirpStack v4 uplink events (`application/+/device/+/event/up`).
    pub chirpstack: bool,
    /// Also subscribe to Sparkplug B (`spBv1.0/#`).
    pub sparkplug: bool,
    /// Also subscribe to CJ/T 188 meter frames on `<prefix>/<gateway>/up`; `""` disables.
    pub cjt188_prefix: Option<String>,
    /// QoS 1 messages this client publishes that may be unacknowledged at once. (How many
    /// *incoming* messages are in flight is the broker's setting, e.g. Mosquitto's
    /// `max_inflight_messages`, which also bounds how many messages one batch can gather.)
    pub inflight: u16,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            broker: "mqtt://127.0.0.1:1883".into(),
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            client_id: "waterline-ingest".into(),
            protocol: MqttProtocol::V311,
            session_expiry_secs: 7 * 24 * 3600,
            topic_prefix: "waterline".into(),
            shared_group: None,
            username: None,
            password: None,
            keep_alive_secs: 30,
            max_packet_bytes: 16 * 1024 * 1024,
            chirpstack: true,
            sparkplug: true,
            cjt188_prefix: Some("cjt188".into()),
            inflight: 1000,
        }
    }
}

impl MqttConfig {
    /// Host and port of `broker`.
    pub fn broker_addr(&self) -> Result<(String, u16), String> {
        parse_broker_url(&self.broker).map(|(h, p, _)| (h, p))
    }

    /// The CJ/T 188 topic prefix, if that input is on (`""` in the configuration turns it off).
    pub fn cjt188(&self) -> Option<&str> {
        self.cjt188_prefix.as_deref().filter(|p| !p.is_empty())
    }

    /// Whether the broker is reached over TLS (`mqtts://`).
    pub fn tls(&self) -> bool {
        matches!(parse_broker_url(&self.broker), Ok((_, _, true)))
    }

    /// The CA bundle used for TLS.
    pub fn ca_path(&self) -> PathBuf {
        self.ca_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE))
    }

    /// The topic filters subscribed to, each shared when `shared_group` is set.
    pub fn subscriptions(&self) -> Vec<String> {
        let mut filters = vec![format!("{}/+/up", self.topic_prefix)];
        if self.chirpstack {
            filters.push("application/+/device/+/event/up".into());
        }
        if self.sparkplug {
            filters.push("spBv1.0/#".into());
        }
        if let Some(p) = self.cjt188() {
            filters.push(format!("{p}/+/up"));
        }
        match &self.shared_group {
            Some(g) => filters
                .into_iter()
                .map(|f| format!("$share/{g}/{f}"))
                .collect(),
            None => filters,
        }
    }

    /// Checks the values once, at start-up.
    pub fn validate(&self) -> Result<(), String> {
        self.broker_addr()?;
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            return Err("mqtt.client_cert_file and mqtt.client_key_file go together".into());
        }
        if self.tls() {
            let ca = self.ca_path();
            if !ca.exists() {
                return Err(format!(
                    "mqtt.ca_file {} does not exist (needed for {})",
                    ca.display(),
                    self.broker
                ));
            }
        } else if self.ca_file.is_some() || self.client_cert_file.is_some() {
            return Err(format!(
                "mqtt.ca_file / client certificates are set but the broker URL `{}` is not mqtts://",
                self.broker
            ));
        }
        if self.client_id.is_empty() {
            return Err("mqtt.client_id must not be empty".into());
        }
        if self.topic_prefix.is_empty() || self.topic_prefix.contains(['+', '#']) {
            return Err(format!(
                "mqtt.topic_prefix `{}` must be non-empty and free of wildcards",
                self.topic_prefix
            ));
        }
        if let Some(g) = &self.shared_group
            && (g.is_empty() || g.contains(['/', '+', '#']))
        {
            return Err(format!(
                "mqtt.shared_group `{g}` must be a single topic level"
            ));
        }
        if let Some(p) = self.cjt188()
            && (p.contains(['+', '#', '/']) || p == self.topic_prefix || p == "modbus")
        {
            return Err(format!(
                "mqtt.cjt188_prefix `{p}` must be one topic level without wildcards, other than mqtt.topic_prefix and `modbus` (\"\" turns the input off)"
            ));
        }
        if self.keep_alive_secs == 0 {
            return Err("mqtt.keep_alive_secs must be at least 1".into());
        }
        if self.inflight == 0 {
            return Err("mqtt.inflight must be at least 1".into());
        }
        Ok(())
    }
}

/// Where Debian and most distributions keep the system's CA bundle.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Parses `mqtt://HOST:PORT` (port defaults to 1883) or `mqtts://HOST:PORT` (TLS, 8883).
/// Returns host, port and whether TLS is asked for.
pub fn parse_broker_url(url: &str) -> Result<(String, u16, bool), String> {
    let (rest, tls) = if let Some(r) = url.strip_prefix("mqtts://") {
        (r, true)
    } else if let Some(r) = url.strip_prefix("ssl://") {
        (r, true)
    } else if let Some(r) = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
    {
        (r, false)
    } else {
        return Err(format!(
            "broker URL `{url}` must start with mqtt:// or mqtts://"
        ));
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Err(format!("broker URL `{url}` has no host"));
    }
    let default_port = if tls { 8883 } else { 1883 };
    match rest.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !port.contains(']') => {
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("broker URL `{url}`: `{port}` is not a port number"))?;
            Ok((host.trim_matches(['[', ']']).to_owned(), port, tls))
        }
        Some(("", _)) => Err(format!("broker URL `{url}` has no host")),
        _ => Ok((rest.trim_matches(['[', ']']).to_owned(), default_port, tls)),
    }
}

/// What to do with what arrives.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Run the ingest pipeline in this process.
    pub enabled: bool,
    /// Commit when a batch holds this many readings.
    pub batch_max_readings: usize,
    /// Commit when a batch holds this many messages.
    pub batch_max_messages: usize,
    /// Commit at the latest this long after the first message of a batch arrived.
    pub batch_linger_ms: u64,
    /// Messages buffered between the MQTT connection and the writer.
    pub channel_capacity: usize,
    /// Payloads larger than this go to the dead-letter table.
    pub max_payload_bytes: usize,
    /// Readings stamped further than this in the future are rejected.
    pub max_future_secs: i64,
    /// Readings older than this are rejected.
    pub max_age_days: i64,
    /// New devices wait for approval before their data is stored.
    pub require_device_approval: bool,
    /// Messages a minute one topic (one device, gateway or edge node) may send; more are
    /// dead-lettered with the reason. 0 disables the limit.
    pub max_messages_per_device_per_minute: u32,
    /// Directory of the on-disk spool that takes accepted messages while the store is
    /// unavailable; `""` disables it (the broker then holds unacknowledged messages).
    pub spool_dir: Option<PathBuf>,
    /// Most bytes the spool may use.
    pub spool_max_bytes: u64,
    /// Size at which the spool starts a new segment file.
    pub spool_segment_bytes: u64,
    /// Codecs for ChirpStack uplinks that carry no decoded `object`, by device-profile name:
    /// `[ingest.chirpstack_profiles."<profile>"]` with `fields = [{ name, offset, kind, scale,
    /// unit }]`.
    pub chirpstack_profiles: waterline_core::codec::chirpstack::ProfileCodecs,
    /// What happens when the spool is full: `block` (stop acknowledging; the broker holds new
    /// messages) or `drop_oldest` (delete the oldest segment, counted in
    /// `waterline_ingest_spool_dropped_bytes_total`).
    pub spool_when_full: WhenFull,
}

/// The explicit choice for a full spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Stop acknowledging until the store drains the spool (nothing is lost).
    Block,
    /// Drop the oldest spooled data to make room (counted; data is lost).
    DropOldest,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            batch_max_readings: 20_000,
            batch_max_messages: 1_000,
            batch_linger_ms: 50,
            channel_capacity: 2_000,
            max_payload_bytes: 8 * 1024 * 1024,
            max_future_secs: 300,
            max_age_days: 400,
            require_device_approval: false,
            max_messages_per_device_per_minute: 600,
            spool_dir: Some(PathBuf::from("waterline-spool")),
            spool_max_bytes: 1 << 30,
            spool_segment_bytes: 64 << 20,
            spool_when_full: WhenFull::Block,
            chirpstack_profiles: Default::default(),
        }
    }
}

impl IngestConfig {
    /// The spool directory, if the spool is on (`""` in the configuration turns it off).
    pub fn spool(&self) -> Option<&std::path::Path> {
        self.spool_dir
            .as_deref()
            .filter(|p| !p.as_os_str().is_empty())
    }

    /// Checks the values once, at start-up.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("ingest.batch_max_readings", self.batch_max_readings),
            ("ingest.batch_max_messages", self.batch_max_messages),
            ("ingest.channel_capacity", self.channel_capacity),
            ("ingest.max_payload_bytes", self.max_payload_bytes),
        ];
        for (k, v) in positive {
            if v == 0 {
                return Err(format!("{k} must be at least 1"));
            }
        }
        if self.spool_dir.is_some()
            && self.spool_max_bytes < 2 * self.spool_segment_bytes.max(1 << 20)
        {
            return Err(format!(
                "ingest.spool_max_bytes = {} must hold at least two segments of ingest.spool_segment_bytes = {} (and at least 2 MiB)",
                self.spool_max_bytes, self.spool_segment_bytes
            ));
        }
        if self.max_future_secs < 0 || self.max_age_days <= 0 {
            return Err("ingest.max_future_secs must be ≥ 0 and ingest.max_age_days ≥ 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_is_3_1_1_or_5_as_text_or_number() {
        let parse = |v: &str| serde_json::from_str::<MqttConfig>(&format!("{{\"protocol\": {v}}}"));
        assert_eq!(parse("\"5\"").unwrap().protocol, MqttProtocol::V5);
        assert_eq!(parse("5").unwrap().protocol, MqttProtocol::V5);
        assert_eq!(parse("\"3.1.1\"").unwrap().protocol, MqttProtocol::V311);
        assert_eq!(parse("4").unwrap().protocol, MqttProtocol::V311);
        assert_eq!(MqttConfig::default().protocol, MqttProtocol::V311);
        let e = parse("\"3\"").unwrap_err().to_string();
        assert!(e.contains("MQTT protocol `3`"), "{e}");
    }

    #[test]
    fn broker_urls() {
        let ok = |u: &str| parse_broker_url(u).unwrap();
        assert_eq!(
            ok("mqtt://127.0.0.1:1883"),
            ("127.0.0.1".into(), 1883, false)
        );
        assert_eq!(ok("mqtt://broker"), ("broker".into(), 1883, false));
        assert_eq!(ok("mqtt://[::1]:1884"), ("::1".into(), 1884, false));
        assert_eq!(ok("mqtts://broker"), ("broker".into(), 8883, true));
        assert_eq!(ok("mqtts://broker:9883"), ("broker".into(), 9883, true));
        assert!(
            parse_broker_url("http://x:1")
                .unwrap_err()
                .contains("mqtt://")
        );
        assert!(
            parse_broker_url("mqtt://x:notaport")
                .unwrap_err()
                .contains("notaport")
        );
        assert!(parse_broker_url("mqtt://").is_err());
    }

    #[test]
    fn tls_settings_are_checked_together() {
        let c = MqttConfig {
            broker: "mqtt://b".into(),
            ca_file: Some("/tmp/ca.pem".into()),
            ..MqttConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("not mqtts://"));
        let c = MqttConfig {
            broker: "mqtts://b".into(),
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..MqttConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("does not exist"));
        let c = MqttConfig {
            client_cert_file: Some("a".into()),
            ..MqttConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("go together"));
    }

    #[test]
    fn empty_strings_turn_the_spool_and_cjt188_off() {
        let mqtt = MqttConfig {
            cjt188_prefix: Some(String::new()),
            ..MqttConfig::default()
        };
        mqtt.validate().unwrap();
        assert!(
            !mqtt
                .subscriptions()
                .iter()
                .any(|f| f.contains("/+/up") && f.starts_with('/'))
        );
        assert_eq!(mqtt.cjt188(), None);
        assert_eq!(mqtt.subscriptions().len(), 3);
        let ingest = IngestConfig {
            spool_dir: Some(PathBuf::new()),
            ..IngestConfig::default()
        };
        ingest.validate().unwrap();
        assert_eq!(ingest.spool(), None);
        assert!(IngestConfig::default().spool().is_some(), "on by default");
    }

    #[test]
    fn shared_subscription() {
        let mut c = MqttConfig::default();
        assert_eq!(
            c.subscriptions(),
            vec![
                "waterline/+/up",
                "application/+/device/+/event/up",
                "spBv1.0/#",
                "cjt188/+/up"
            ]
        );
        c.shared_group = Some("ingest".into());
        c.chirpstack = false;
        c.sparkplug = false;
        c.cjt188_prefix = None;
        assert_eq!(c.subscriptions(), vec!["$share/ingest/waterline/+/up"]);
        c.shared_group = Some("a/b".into());
        assert!(c.validate().is_err());
    }
}
