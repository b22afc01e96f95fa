//! The MQTT connection: a persistent session with manual acknowledgements.
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
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use tokio::sync::{mpsc, oneshot, watch};
use waterline_core::health::HealthBoard;

use crate::backoff::Backoff;
use crate::config::MqttConfig;

/// Health-board component name of the broker connection.
pub const BROKER_COMPONENT: &str = "broker";

/// The broker component's detail once the broker has confirmed every subscription.
pub const SUBSCRIBED: &str = "subscribed";

/// Most messages held between the connection and the writer's channel.
const MAX_HELD: usize = 10_000;

/// A message to write: received from the broker (not yet acknowledged), or produced in this
/// process (a Modbus poll), which is a QoS 0 publish that needs no acknowledgement.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) publish: Publish,
    pub(crate) generation: u64,
    pub(crate) received_at: DateTime<Utc>,
}

impl Delivery {
    /// A message produced in this process.
    pub(crate) fn local(topic: String, payload: Vec<u8>) -> Delivery {
        Delivery {
            publish: Publish::new(topic, QoS::AtMostOnce, payload),
            generation: 0,
            received_at: Utc::now(),
        }
    }

    /// Whether the broker waits for an acknowledgement of this message.
    pub(crate) fn needs_ack(&self) -> bool {
        self.publish.qos != QoS::AtMostOnce
    }
}

/// Builds the client options from the configuration.
pub(crate) fn options(cfg: &MqttConfig) -> Result<MqttOptions, String> {
    let (host, port) = cfg.broker_addr()?;
    let mut opts = MqttOptions::new(cfg.client_id.clone(), host, port);
    opts.set_keep_alive(Duration::from_secs(cfg.keep_alive_secs))
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_inflight(cfg.inflight)
        .set_max_packet_size(cfg.max_packet_bytes, cfg.max_packet_bytes);
    if let Some(user) = &cfg.username {
        opts.set_credentials(user.clone(), cfg.password.clone().unwrap_or_default());
    }
    if cfg.tls() {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        let ca = read(&cfg.ca_path())?;
        let client_auth = match (&cfg.client_cert_file, &cfg.client_key_file) {
            (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
            _ => None,
        };
        opts.set_transport(rumqttc::Transport::tls(ca, client_auth, None));
    }
    Ok(opts)
}

/// Runs the connection until `writer_done` fires (the writer has drained and acknowledged
/// everything after shutdown), then disconnects.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_source(
    client: AsyncClient,
    mut eventloop: EventLoop,
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
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    let g = generation.fetch_add(1, Ordering::SeqCst) + 1;
                    // Messages of the previous connection will be redelivered on this one.
                    held.clear();
                    backoff.reset();
                    health.set(BROKER_COMPONENT, true, "connected; subscribing");
                    tracing::info!(generation = g, session_present = ack.session_present, "connected to MQTT broker");
                    let filters = subscriptions
                        .iter()
                        .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                    if let Err(e) = client.try_subscribe_many(filters) {
                        tracing::error!(error = %e, "could not queue the subscriptions");
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let refused = ack.return_codes.iter().any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure));
                    let joined = subscriptions.join(", ");
                    if refused {
                        health.set(BROKER_COMPONENT, false, format!("subscription to {joined} refused"));
                        tracing::error!(subscriptions = %joined, "broker refused a subscription");
                    } else {
                        health.set(BROKER_COMPONENT, true, SUBSCRIBED);
                        tracing::info!(subscriptions = %joined, "subscribed");
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    metrics::counter!("waterline_mqtt_messages_received_total").increment(1);
                    metrics::counter!("waterline_mqtt_bytes_received_total").increment(publish.payload.len() as u64);
                    if tx.is_some() {
                        held.push_back(Delivery {
                            publish,
                            generation: generation.load(Ordering::SeqCst),
                            received_at: Utc::now(),
                        });
                    }
                    // After shutdown began, new messages stay unacknowledged: the broker keeps
                    // them for this persistent session.
                }
                Ok(_) => {}
                Err(e) => {
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
    let _ = client.try_disconnect();
    // Let the disconnect (and any last acknowledgements) go out.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
    health.set(BROKER_COMPONENT, false, "stopped");
}
