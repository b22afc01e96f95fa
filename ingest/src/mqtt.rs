//! The MQTT connection: a persistent session with manual acknowledgements, over MQTT 3.1.1 or
//! MQTT 5 (`mqtt.protocol`). [`Client`] and [`Connection`] hide which: the rest of ingest sees
//! [`Delivery`]s and acknowledges them through the client. With MQTT 5 the session outlives
//! the connection by `mqtt.session_expiry_secs` (3.1.1's persistent session never expires).
//!
//! The source task polls the connection, forwards each publish (tagged with the connection
//! generation) into a bounded channel, re-subscribes after every reconnect and reports broker
//! health. Acknowledgements are sent by the writer only after the batch holding the message
//! has committed; a publish received on an earlier connection is never acknowledged on a later
//! one (the broker redelivers it and the idempotent store ignores the duplicate).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rumqttc::v5;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5 as mqtt5;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use tokio::sync::{mpsc, oneshot, watch};
use waterline_core::health::HealthBoard;

use crate::backoff::Backoff;
use crate::config::{MqttConfig, MqttProtocol};

/// Health-board component name of the broker connection.
pub const BROKER_COMPONENT: &str = "broker";

/// The broker component's detail once the broker has confirmed every subscription.
pub const SUBSCRIBED: &str = "subscribed";

/// Most messages held between the connection and the writer's channel.
const MAX_HELD: usize = 10_000;

/// A message as the client received it, kept for its acknowledgement.
#[derive(Debug)]
pub(crate) enum Received {
    V4(Publish),
    V5(mqtt5::Publish),
    /// Produced in this process (a Modbus poll): nothing to acknowledge.
    Local {
        topic: String,
        payload: Vec<u8>,
    },
}

/// A message to write: received from the broker (not yet acknowledged), or produced in this
/// process (a Modbus poll), which needs no acknowledgement.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) received: Received,
    pub(crate) generation: u64,
    pub(crate) received_at: DateTime<Utc>,
}

impl Delivery {
    /// A message produced in this process.
    pub(crate) fn local(topic: String, payload: Vec<u8>) -> Delivery {
        Delivery {
            received: Received::Local { topic, payload },
            generation: 0,
            received_at: Utc::now(),
        }
    }

    /// The topic (an MQTT 5 topic that is not UTF-8 reads as empty: no route takes it).
    pub(crate) fn topic(&self) -> &str {
        match &self.received {
            Received::V4(p) => &p.topic,
            Received::V5(p) => std::str::from_utf8(&p.topic).unwrap_or(""),
            Received::Local { topic, .. } => topic,
        }
    }

    pub(crate) fn payload(&self) -> &[u8] {
        match &self.received {
            Received::V4(p) => &p.payload,
            Received::V5(p) => &p.payload,
            Received::Local { payload, .. } => payload,
        }
    }

    /// Whether the broker waits for an acknowledgement of this message.
    pub(crate) fn needs_ack(&self) -> bool {
        match &self.received {
            Received::V4(p) => p.qos != QoS::AtMostOnce,
            Received::V5(p) => p.qos != QoS5::AtMostOnce,
            Received::Local { .. } => false,
        }
    }
}

/// The client half of the connection, of either protocol version.
#[derive(Debug, Clone)]
pub(crate) enum Client {
    V4(AsyncClient),
    V5(v5::AsyncClient),
}

impl Client {
    /// Acknowledges `r`, waiting for room in the request queue.
    pub(crate) async fn ack(&self, r: &Received) -> Result<(), String> {
        match (self, r) {
            (Client::V4(c), Received::V4(p)) => c.ack(p).await.map_err(|e| e.to_string()),
            (Client::V5(c), Received::V5(p)) => c.ack(p).await.map_err(|e| e.to_string()),
            _ => Ok(()),
        }
    }

    /// Acknowledges `r` if the request queue has room.
    pub(crate) fn try_ack(&self, r: &Received) -> Result<(), String> {
        match (self, r) {
            (Client::V4(c), Received::V4(p)) => c.try_ack(p).map_err(|e| e.to_string()),
            (Client::V5(c), Received::V5(p)) => c.try_ack(p).map_err(|e| e.to_string()),
            _ => Ok(()),
        }
    }

    /// Publishes with QoS 1 if the request queue has room.
    pub(crate) fn try_publish(&self, topic: String, payload: Vec<u8>) -> Result<(), String> {
        match self {
            Client::V4(c) => c
                .try_publish(topic, QoS::AtLeastOnce, false, payload)
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .try_publish(topic, QoS5::AtLeastOnce, false, payload)
                .map_err(|e| e.to_string()),
        }
    }

    fn try_subscribe_many(&self, filters: &[String]) -> Result<(), String> {
        match self {
            Client::V4(c) => c
                .try_subscribe_many(
                    filters
                        .iter()
                        .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce)),
                )
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .try_subscribe_many(
                    filters
                        .iter()
                        .map(|f| mqtt5::Filter::new(f.clone(), QoS5::AtLeastOnce)),
                )
                .map_err(|e| e.to_string()),
        }
    }

    fn try_disconnect(&self) {
        let _ = match self {
            Client::V4(c) => c.try_disconnect().map_err(|e| e.to_string()),
            Client::V5(c) => c.try_disconnect().map_err(|e| e.to_string()),
        };
    }
}

/// The event half of the connection.
pub(crate) enum Connection {
    V4(Box<EventLoop>),
    V5(Box<v5::EventLoop>),
}

/// What polling the connection gave, whatever the protocol version.
enum Polled {
    Connected { session_present: bool },
    Subscribed { refused: bool },
    Message(Received),
    Other,
    Lost(String),
}

impl Connection {
    async fn poll(&mut self) -> Polled {
        match self {
            Connection::V4(e) => match e.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => Polled::Connected {
                    session_present: ack.session_present,
                },
                Ok(Event::Incoming(Packet::SubAck(ack))) => Polled::Subscribed {
                    refused: ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)),
                },
                Ok(Event::Incoming(Packet::Publish(p))) => Polled::Message(Received::V4(p)),
                Ok(_) => Polled::Other,
                Err(e) => Polled::Lost(e.to_string()),
            },
            Connection::V5(e) => match e.poll().await {
                Ok(v5::Event::Incoming(mqtt5::Packet::ConnAck(ack))) => Polled::Connected {
                    session_present: ack.session_present,
                },
                Ok(v5::Event::Incoming(mqtt5::Packet::SubAck(ack))) => Polled::Subscribed {
                    refused: ack
                        .return_codes
                        .iter()
                        .any(|c| !matches!(c, mqtt5::SubscribeReasonCode::Success(_))),
                },
                Ok(v5::Event::Incoming(mqtt5::Packet::Publish(p))) => {
                    Polled::Message(Received::V5(p))
                }
                Ok(_) => Polled::Other,
                Err(e) => Polled::Lost(e.to_string()),
            },
        }
    }
}

/// Builds the client and its connection from the configuration (nothing connects until the
/// connection is polled). `capacity`: the client's request queue.
pub(crate) fn connect(cfg: &MqttConfig, capacity: usize) -> Result<(Client, Connection), String> {
    let (host, port) = cfg.broker_addr()?;
    let transport = transport(cfg)?;
    Ok(match cfg.protocol {
        MqttProtocol::V311 => {
            let mut opts = MqttOptions::new(cfg.client_id.clone(), host, port);
            opts.set_keep_alive(Duration::from_secs(cfg.keep_alive_secs))
                .set_clean_session(false)
                .set_manual_acks(true)
                .set_inflight(cfg.inflight)
                .set_max_packet_size(cfg.max_packet_bytes, cfg.max_packet_bytes);
            if let Some(user) = &cfg.username {
                opts.set_credentials(user.clone(), cfg.password.clone().unwrap_or_default());
            }
            if let Some(t) = transport {
                opts.set_transport(t);
            }
            let (c, e) = AsyncClient::new(opts, capacity);
            (Client::V4(c), Connection::V4(Box::new(e)))
        }
        MqttProtocol::V5 => {
            let mut opts = v5::MqttOptions::new(cfg.client_id.clone(), host, port);
            let max = u32::try_from(cfg.max_packet_bytes).unwrap_or(u32::MAX);
            opts.set_keep_alive(Duration::from_secs(cfg.keep_alive_secs))
                .set_clean_start(false)
                .set_session_expiry_interval(Some(cfg.session_expiry_secs))
                .set_manual_acks(true)
                .set_receive_maximum(Some(cfg.inflight))
                .set_outgoing_inflight_upper_limit(cfg.inflight)
                .set_max_packet_size(Some(max));
            if let Some(user) = &cfg.username {
                opts.set_credentials(user.clone(), cfg.password.clone().unwrap_or_default());
            }
            if let Some(t) = transport {
                opts.set_transport(t);
            }
            let (c, e) = v5::AsyncClient::new(opts, capacity);
            (Client::V5(c), Connection::V5(Box::new(e)))
        }
    })
}

/// TLS transport when the broker URL is `mqtts://`.
fn transport(cfg: &MqttConfig) -> Result<Option<rumqttc::Transport>, String> {
    if !cfg.tls() {
        return Ok(None);
    }
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let ca = read(&cfg.ca_path())?;
    let client_auth = match (&cfg.client_cert_file, &cfg.client_key_file) {
        (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
        _ => None,
    };
    Ok(Some(rumqttc::Transport::tls(ca, client_auth, None)))
}

/// Runs the connection until `writer_done` fires (the writer has drained and acknowledged
/// everything after shutdown), then disconnects.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_source(
    client: Client,
    mut eventloop: Connection,
    subscriptions: Vec<String>,
    tx: mpsc::Sender<Delivery>,
    generation: Arc<AtomicU64>,
    health: HealthBoard,
    mut shutdown: watch::Receiver<bool>,
    mut writer_done: oneshot::Receiver<()>,
) {
    let mut tx = Some(tx);
    // Messages received but not yet handed to the writer. The connection keeps being polled
    // (so keep-alive pings go out) while the writer is busy, e.g. retrying during a database
    // outage; only when this buffer is full does polling pause.
    let mut held: VecDeque<Delivery> = VecDeque::new();
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    health.set(BROKER_COMPONENT, false, "connecting");
    loop {
        let sender = tx.clone();
        tokio::select! {
            biased;
            _ = &mut writer_done => break,
            _ = shutdown.changed(), if tx.is_some() => {
                // Closing the channel lets the writer drain, commit and acknowledge, then
                // stop. Held messages stay unacknowledged; the broker keeps them for this
                // persistent session.
                tx = None;
                held.clear();
            }
            permit = async { sender.as_ref().expect("guarded").reserve().await }, if sender.is_some() && !held.is_empty() => {
                match permit {
                    Ok(permit) => permit.send(held.pop_front().expect("guarded")),
                    Err(_) => {
                        tracing::warn!("writer stopped; held messages left unacknowledged for redelivery");
                        held.clear();
                    }
                }
            }
            event = eventloop.poll(), if held.len() < MAX_HELD => match event {
                Polled::Connected { session_present } => {
                    let g = generation.fetch_add(1, Ordering::SeqCst) + 1;
                    // Messages of the previous connection will be redelivered on this one.
                    held.clear();
                    backoff.reset();
                    health.set(BROKER_COMPONENT, true, "connected; subscribing");
                    tracing::info!(generation = g, session_present, "connected to MQTT broker");
                    if let Err(e) = client.try_subscribe_many(&subscriptions) {
                        tracing::error!(error = %e, "could not queue the subscriptions");
                    }
                }
                Polled::Subscribed { refused } => {
                    let joined = subscriptions.join(", ");
                    if refused {
                        health.set(BROKER_COMPONENT, false, format!("subscription to {joined} refused"));
                        tracing::error!(subscriptions = %joined, "broker refused a subscription");
                    } else {
                        health.set(BROKER_COMPONENT, true, SUBSCRIBED);
                        tracing::info!(subscriptions = %joined, "subscribed");
                    }
                }
                Polled::Message(received) => {
                    let delivery = Delivery {
                        received,
                        generation: generation.load(Ordering::SeqCst),
                        received_at: Utc::now(),
                    };
                    metrics::counter!("waterline_mqtt_messages_received_total").increment(1);
                    metrics::counter!("waterline_mqtt_bytes_received_total").increment(delivery.payload().len() as u64);
                    if tx.is_some() {
                        held.push_back(delivery);
                    }
                    // After shutdown began, new messages stay unacknowledged: the broker keeps
                    // them for this persistent session.
                }
                Polled::Other => {}
                Polled::Lost(e) => {
                    let delay = backoff.next_delay();
                    health.set(BROKER_COMPONENT, false, format!("disconnected: {e}"));
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "MQTT connection lost");
                    metrics::counter!("waterline_mqtt_connection_errors_total").increment(1);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = &mut writer_done => break,
                    }
                }
            }
        }
        metrics::gauge!("waterline_mqtt_held_messages").set(held.len() as f64);
    }
    client.try_disconnect();
    // Let the disconnect (and any last acknowledgements) go out.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while !matches!(eventloop.poll().await, Polled::Lost(_)) {}
    })
    .await;
    health.set(BROKER_COMPONENT, false, "stopped");
}
