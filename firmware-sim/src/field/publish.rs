//! Carries the fleet's messages to an MQTT broker with QoS 1 (rumqttc), in the order the
//! devices sent them, and counts the broker's PUBACKs. It also listens for Sparkplug rebirth
//! requests (`NCMD` with `Node Control/Rebirth`) and raises a flag the fleet answers with
//! fresh births.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use waterline_core::codec::sparkplug::{self, MetricValue, REBIRTH_METRIC};

use super::traffic::Outgoing;

/// Where and how to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    /// QoS 1 messages in flight before waiting for PUBACKs.
    pub max_inflight: u16,
}

/// What was published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    pub messages: u64,
    /// PUBACKs received.
    pub acked: u64,
}

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("MQTT client request failed: {0}")]
    Client(#[from] rumqttc::ClientError),
    #[error("the broker did not acknowledge {missing} of {sent} messages within {secs} s")]
    Unacknowledged { missing: u64, sent: u64, secs: u64 },
}

/// Whether a Sparkplug payload asks for a rebirth.
fn asks_rebirth(payload: &[u8]) -> bool {
    sparkplug::decode_payload(payload).is_ok_and(|p| {
        p.metrics.iter().any(|m| {
            m.name.as_deref() == Some(REBIRTH_METRIC)
                && matches!(m.value, Some(MetricValue::BooleanValue(true)))
        })
    })
}

/// Publishes every batch arriving on `rx` until it closes, then waits (up to `ack_timeout`)
/// for the broker to acknowledge all of it. Sets `rebirth` when an `NCMD` on
/// `spBv1.0/<group>/NCMD/+` asks for one.
pub async fn publish(
    cfg: &BrokerConfig,
    mut rx: mpsc::Receiver<Vec<Outgoing>>,
    sparkplug_group: &str,
    rebirth: Arc<AtomicBool>,
    ack_timeout: Duration,
) -> Result<Published, PublishError> {
    let mut opts = MqttOptions::new(cfg.client_id.clone(), cfg.host.clone(), cfg.port);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_inflight(cfg.max_inflight.max(1))
        .set_max_packet_size(4 << 20, 4 << 20);
    let (client, mut events) = AsyncClient::new(opts, 1_000);
    let acked = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let closing = Arc::new(AtomicBool::new(false));
    let ncmd = format!("{}/{sparkplug_group}/NCMD/+", sparkplug::NAMESPACE);
    let poller = {
        let (acked, done, closing, client, ncmd) = (
            acked.clone(),
            done.clone(),
            closing.clone(),
            client.clone(),
            ncmd,
        );
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client.try_subscribe(ncmd.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if asks_rebirth(&p.payload) {
                            tracing::info!(topic = %p.topic, "simulator: rebirth requested");
                            rebirth.store(true, Ordering::Relaxed);
                        }
                    }
                    Ok(_) => {}
                    Err(_) if closing.load(Ordering::Relaxed) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "simulator: broker connection lost; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        })
    };
    let mut sent = 0u64;
    while let Some(batch) = rx.recv().await {
        for m in batch {
            client
                .publish(m.topic, QoS::AtLeastOnce, false, m.payload)
                .await?;
            sent += 1;
        }
    }
    let deadline = Instant::now() + ack_timeout;
    while acked.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = acked.load(Ordering::Relaxed);
    closing.store(true, Ordering::Relaxed);
    let _ = client.disconnect().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    done.store(true, Ordering::Relaxed);
    poller.abort();
    if got < sent {
        return Err(PublishError::Unacknowledged {
            missing: sent - got,
            sent,
            secs: ack_timeout.as_secs(),
        });
    }
    Ok(Published {
        messages: sent,
        acked: got,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_true_rebirth_metric_asks_for_a_rebirth() {
        let (_, yes) = sparkplug::rebirth_command("waterline", "AMI-A", chrono::Utc::now());
        assert!(asks_rebirth(&yes));
        assert!(!asks_rebirth(b"not protobuf"));
        assert!(!asks_rebirth(&super::super::wire::sparkplug_node_death(1)));
    }
}
