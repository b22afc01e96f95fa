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

/// Health-board component name of ingest's writes to the store.
pub const STORE_COMPONENT: &str = "ingest";

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
    /// Acknowledgements (with the connection generation their message arrived on) that did
    /// not fit into the client's request queue yet, oldest first.
    pub(crate) unsent_acks: VecDeque<(u64, Publish)>,
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
            let deadline =
                tokio::time::Instant::now() + Duration::from_millis(self.cfg.batch_linger_ms);
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
        while let Some((generation, p)) = self.unsent_acks.pop_front() {
            if generation != self.generation.load(Ordering::SeqCst) {
                continue;
            }
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
        let mut parts: Vec<Processed> = deliveries
            .iter()
            .map(|d| {
                process_native(
                    &d.publish.topic,
                    &d.publish.payload,
                    &self.topic_prefix,
                    &self.registry,
                    &self.cfg,
                    d.received_at.min(now),
                )
            })
            .collect();
        let readings: usize = parts.iter().map(|p| p.readings.len()).sum();
        metrics::histogram!("waterline_ingest_batch_messages").record(deliveries.len() as f64);
        metrics::histogram!("waterline_ingest_batch_readings").record(readings as f64);

        let started = Instant::now();
        let mut ack = vec![true; deliveries.len()];
        let Some(outcome) = self
            .commit_with_retry(&mut parts, &deliveries, &mut ack)
            .await
        else {
            return false;
        };
        metrics::histogram!("waterline_ingest_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("waterline_ingest_readings_inserted_total").increment(outcome.inserted);
        metrics::counter!("waterline_ingest_readings_duplicate_total")
            .increment(outcome.duplicates);
        metrics::counter!("waterline_ingest_messages_committed_total")
            .increment(deliveries.len() as u64);
        for p in &parts {
            if let Some(label) = p.reject_label {
                metrics::counter!("waterline_ingest_dead_letters_total", "reason" => label)
                    .increment(1);
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
        for (d, ack) in deliveries.into_iter().zip(ack) {
            if ack {
                self.unsent_acks.push_back((d.generation, d.publish));
            }
        }
        self.flush_acks();
        true
    }

    /// Hands queued acknowledgements to the client without blocking. One whose message
    /// arrived on an earlier connection is dropped: the broker redelivers that message and the
    /// store ignores the duplicate.
    fn flush_acks(&mut self) {
        let current = self.generation.load(Ordering::SeqCst);
        while let Some((generation, p)) = self.unsent_acks.front() {
            if *generation != current {
                metrics::counter!("waterline_mqtt_acks_skipped_stale_total").increment(1);
                self.unsent_acks.pop_front();
                continue;
            }
            if self.client.try_ack(p).is_err() {
                return;
            }
            self.unsent_acks.pop_front();
        }
    }

    /// Sleeps `delay` unless shutdown comes first; returns false on shutdown.
    async fn pause(&self, delay: Duration) -> bool {
        if *self.shutdown.borrow() {
            return false;
        }
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = shutdown.changed() => false,
        }
    }

    async fn commit_with_retry(
        &mut self,
        parts: &mut [Processed],
        deliveries: &[Delivery],
        ack: &mut [bool],
    ) -> Option<BatchOutcome> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        loop {
            match self.commit(parts).await {
                Ok(o) => {
                    self.health.set(STORE_COMPONENT, true, "writing");
                    return Some(o);
                }
                Err(e) if e.is_retryable() => {
                    let delay = backoff.next_delay();
                    self.health
                        .set(STORE_COMPONENT, false, format!("store unavailable: {e}"));
                    metrics::counter!("waterline_ingest_commit_retries_total").increment(1);
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "store unavailable; batch held unacknowledged");
                    if !self.pause(delay).await {
                        return None;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "store refused the batch; committing message by message");
                    return self.commit_one_by_one(parts, deliveries, ack, &e).await;
                }
            }
        }
    }

    /// Commits the batch's contributions, in transactions of at most `batch_max_readings`
    /// readings (a single message larger than that goes alone). A retry after a partial
    /// failure repeats earlier chunks harmlessly: writes are idempotent.
    async fn commit(&self, parts: &[Processed]) -> Result<BatchOutcome, StoreError> {
        let new_sensors: Vec<_> = parts
            .iter()
            .flat_map(|p| p.new_sensors.iter().cloned())
            .collect();
        self.store.register_sensors(&new_sensors).await?;
        let mut total = BatchOutcome::default();
        let mut batch = Batch::default();
        for p in parts {
            if !batch.readings.is_empty()
                && batch.readings.len() + p.readings.len() > self.cfg.batch_max_readings
            {
                let o = self.store.commit_batch(&batch).await?;
                total.inserted += o.inserted;
                total.duplicates += o.duplicates;
                batch = Batch::default();
            }
            batch.readings.extend(p.readings.iter().cloned());
            batch.dead_letters.extend(p.dead_letter.iter().cloned());
            batch.pending.extend(p.pending.iter().cloned());
            batch.devices.extend(p.device.iter().cloned());
        }
        let o = self.store.commit_batch(&batch).await?;
        total.inserted += o.inserted;
        total.duplicates += o.duplicates;
        Ok(total)
    }

    /// Commits each message alone, retrying while the store is unavailable. A message the
    /// store refuses becomes a dead letter naming why; if even that cannot be written, the
    /// message is left unacknowledged (the broker keeps it) and the error is logged.
    async fn commit_one_by_one(
        &self,
        parts: &mut [Processed],
        deliveries: &[Delivery],
        ack: &mut [bool],
        batch_error: &StoreError,
    ) -> Option<BatchOutcome> {
        let mut total = BatchOutcome::default();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        for ((p, d), ack) in parts.iter_mut().zip(deliveries).zip(ack.iter_mut()) {
            let mut refused_once = false;
            loop {
                match self.commit(std::slice::from_ref(p)).await {
                    Ok(o) => {
                        total.inserted += o.inserted;
                        total.duplicates += o.duplicates;
                        break;
                    }
                    Err(e) if e.is_retryable() => {
                        if !self.pause(backoff.next_delay()).await {
                            return None;
                        }
                    }
                    Err(e) if refused_once => {
                        tracing::error!(error = %e, topic = %d.publish.topic, "could not even dead-letter a message; it stays unacknowledged");
                        *ack = false;
                        *p = Processed::default();
                        break;
                    }
                    Err(e) => {
                        refused_once = true;
                        *p = Processed {
                            dead_letter: Some(DeadLetter {
                                received_at: d.received_at,
                                source: SOURCE_MQTT.into(),
                                topic: Some(d.publish.topic.clone()),
                                reason: format!(
                                    "store refused the message: {e} (batch error: {batch_error})"
                                ),
                                payload: d.publish.payload.to_vec(),
                            }),
                            reject_label: Some("store_refused"),
                            ..Processed::default()
                        };
                    }
                }
            }
        }
        Some(total)
    }
}
