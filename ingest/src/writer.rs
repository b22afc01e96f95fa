//! The batching writer: gathers messages into a batch (bounded by readings, messages and a
//! linger time), commits it to the store in one transaction, and only then acknowledges the
//! messages, in order. A store outage stops acknowledgements (the broker holds the messages)
//! and the batch is retried with backoff; a batch the store refuses for its content is split so
//! that only the offending messages are dead-lettered.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use rumqttc::{AsyncClient, Publish};
use tokio::sync::{mpsc, watch};
use waterline_core::health::HealthBoard;
use waterline_store::{Batch, BatchOutcome, DeadLetter, Store, StoreError};

use crate::backoff::Backoff;
use crate::config::IngestConfig;
use crate::mqtt::Delivery;
use crate::registry::Registry;
use crate::uplink::{Processed, SOURCE_MQTT, process_native};

/// Health-board component name of the store as ingest sees it.
pub const STORE_COMPONENT: &str = "store";

/// Everything the writer needs.
pub(crate) struct Writer {
    pub(crate) store: Store,
    pub(crate) client: AsyncClient,
    pub(crate) cfg: IngestConfig,
    pub(crate) topic_prefix: String,
    pub(crate) registry: Registry,
    pub(crate) generation: Arc<AtomicU64>,
    pub(crate) health: HealthBoard,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Acknowledgements that did not fit into the client's request queue yet, oldest first.
    pub(crate) unsent_acks: VecDeque<Publish>,
}

/// How often the registry is reloaded so that approvals made elsewhere take effect.
const REGISTRY_REFRESH: Duration = Duration::from_secs(30);

impl Writer {
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Delivery>) {
        let mut last_refresh = Instant::now();
        loop {
            self.flush_acks();
            let first = if self.unsent_acks.is_empty() {
                rx.recv().await
            } else {
                tokio::select! {
                    d = rx.recv() => d,
                    _ = tokio::time::sleep(Duration::from_millis(5)) => continue,
                }
            };
            let Some(first) = first else { break };
            let mut deliveries = vec![first];
            let deadline = tokio::time::Instant::now() + Duration::from_millis(self.cfg.batch_linger_ms);
            while deliveries.len() < self.cfg.batch_max_messages {
                tokio::select! {
                    d = rx.recv() => match d {
                        Some(d) => deliveries.push(d),
                        None => break,
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            if !self.handle(deliveries).await {
                break;
            }
            if last_refresh.elapsed() > REGISTRY_REFRESH {
                last_refresh = Instant::now();
                match Registry::load(&self.store).await {
                    Ok(r) => self.registry = r,
                    Err(e) => tracing::warn!(error = %e, "could not refresh the registry"),
                }
            }
        }
        // Shutting down: every committed message's acknowledgement goes out before we stop.
        while let Some(p) = self.unsent_acks.pop_front() {
            if self.client.ack(&p).await.is_err() {
                break;
            }
        }
        tracing::info!("ingest writer drained");
    }

    /// Processes, commits and acknowledges one batch. Returns false when shutdown interrupted
    /// a retry (the batch stays unacknowledged, for redelivery).
    async fn handle(&mut self, deliveries: Vec<Delivery>) -> bool {
        let now = Utc::now();
        let parts: Vec<Processed> = deliveries
            .iter()
            .map(|d| {
                process_native(
                    &d.publish.topic,
                    &d.publish.payload,
                    &self.topic_prefix,
                    &self.registry,
                    &self.cfg,
                    d.received_at.max(now - chrono::Duration::seconds(5)),
                )
            })
            .collect();
        let mut parts = parts;
        // Split messages that would alone exceed the batch, so commits stay bounded.
        let readings: usize = parts.iter().map(|p| p.readings.len()).sum();
        metrics::histogram!("waterline_ingest_batch_messages").record(deliveries.len() as f64);
        metrics::histogram!("waterline_ingest_batch_readings").record(readings as f64);

        let started = Instant::now();
        let Some(outcome) = self.commit_with_retry(&mut parts, &deliveries).await else {
            return false;
        };
        metrics::histogram!("waterline_ingest_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("waterline_ingest_readings_inserted_total").increment(outcome.inserted);
        metrics::counter!("waterline_ingest_readings_duplicate_total").increment(outcome.duplicates);
        metrics::counter!("waterline_ingest_messages_committed_total").increment(deliveries.len() as u64);
        for p in &parts {
            if let Some(label) = p.reject_label {
                metrics::counter!("waterline_ingest_dead_letters_total", "reason" => label).increment(1);
            }
            for s in &p.new_sensors {
                self.registry.add_sensor(s.id.clone(), s.unit);
            }
            if let Some(d) = &p.device
                && self.registry.device(&d.device).is_none()
            {
                self.registry.set_device(d.device.clone(), d.status_if_new);
            }
        }

        let current = self.generation.load(Ordering::SeqCst);
        for d in deliveries {
            if d.generation == current {
                self.unsent_acks.push_back(d.publish);
            } else {
                metrics::counter!("waterline_mqtt_acks_skipped_stale_total").increment(1);
            }
        }
        self.flush_acks();
        true
    }

    fn flush_acks(&mut self) {
        while let Some(p) = self.unsent_acks.front() {
            if self.client.try_ack(p).is_err() {
                return;
            }
            self.unsent_acks.pop_front();
        }
    }

    async fn commit_with_retry(
        &mut self,
        parts: &mut [Processed],
        deliveries: &[Delivery],
    ) -> Option<BatchOutcome> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        loop {
            match self.commit(parts).await {
                Ok(o) => {
                    self.health.set(STORE_COMPONENT, true, "ok");
                    return Some(o);
                }
                Err(e) if e.is_retryable() => {
                    let delay = backoff.next_delay();
                    self.health.set(STORE_COMPONENT, false, e.to_string());
                    metrics::counter!("waterline_ingest_commit_retries_total").increment(1);
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "store unavailable; batch held unacknowledged");
                    if *self.shutdown.borrow() {
                        return None;
                    }
                    let mut shutdown = self.shutdown.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => return None,
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "store refused the batch; committing message by message");
                    return self.commit_one_by_one(parts, deliveries, &e).await;
                }
            }
        }
    }

    async fn commit(&self, parts: &[Processed]) -> Result<BatchOutcome, StoreError> {
        let new_sensors: Vec<_> = parts.iter().flat_map(|p| p.new_sensors.iter().cloned()).collect();
        self.store.register_sensors(&new_sensors).await?;
        let mut batch = Batch::default();
        for p in parts {
            batch.readings.extend(p.readings.iter().cloned());
            batch.dead_letters.extend(p.dead_letter.iter().cloned());
            batch.pending.extend(p.pending.iter().cloned());
            batch.devices.extend(p.device.iter().cloned());
        }
        self.store.commit_batch(&batch).await
    }

    /// Commits each message alone; one the store refuses becomes a dead letter naming why.
    async fn commit_one_by_one(
        &self,
        parts: &mut [Processed],
        deliveries: &[Delivery],
        batch_error: &StoreError,
    ) -> Option<BatchOutcome> {
        let mut total = BatchOutcome::default();
        for (p, d) in parts.iter_mut().zip(deliveries) {
            match self.commit(std::slice::from_ref(p)).await {
                Ok(o) => {
                    total.inserted += o.inserted;
                    total.duplicates += o.duplicates;
                }
                Err(e) => {
                    let letter = DeadLetter {
                        received_at: d.received_at,
                        source: SOURCE_MQTT.into(),
                        topic: Some(d.publish.topic.clone()),
                        reason: format!("store refused the message: {e} (batch error: {batch_error})"),
                        payload: d.publish.payload.to_vec(),
                    };
                    *p = Processed {
                        dead_letter: Some(letter),
                        reject_label: Some("store_refused"),
                        ..Processed::default()
                    };
                    if let Err(e) = self.commit(std::slice::from_ref(p)).await {
                        tracing::error!(error = %e, topic = %d.publish.topic, "could not even dead-letter a message; it stays unacknowledged");
                        return None;
                    }
                }
            }
        }
        Some(total)
    }
}
