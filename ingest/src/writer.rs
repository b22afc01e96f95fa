//! The batching writer: gathers messages into a batch (bounded by readings, messages and a
//! linger time), commits it to the store, and only then acknowledges the messages, in order.
//!
//! When the store is unavailable and a spool is configured, the batch's raw messages are
//! appended to the crash-safe [`Spool`] (fsync'd) and acknowledged; while the spool holds
//! anything, new batches go to its end too, and the writer drains it in order, oldest first,
//! as soon as the store answers again. Without a spool (or with a full spool under the
//! `block` policy) nothing is acknowledged and the batch is retried with backoff: the broker
//! holds the messages. A batch the store refuses for its content is split so that only the
//! offending messages are dead-lettered.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::mqtt::{Client, Received};
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};
use waterline_core::health::HealthBoard;
use waterline_store::{Batch, BatchOutcome, DeadLetter, Store, StoreError};

use crate::backoff::Backoff;
use crate::config::{IngestConfig, WhenFull};
use crate::mqtt::Delivery;
use crate::ratelimit::RateLimiter;
use crate::registry::Registry;
use crate::route::{Routes, SparkplugNodes, process};
use crate::spool::{Spool, SpoolError};
use crate::spooled;
use crate::uplink::{Processed, source_of};

/// Health-board component name of ingest's writes to the store.
pub const STORE_COMPONENT: &str = "ingest";

/// How often the registry is reloaded so that approvals made elsewhere take effect.
const REGISTRY_REFRESH: Duration = Duration::from_secs(30);

/// A live message over its device's rate limit: dead-lettered with the reason.
/// The store component's detail while the spool drains.
fn draining(bytes: u64) -> String {
    format!("store reachable; draining the spool ({bytes} bytes left)")
}

fn rate_limited(m: &Raw<'_>, per_minute: u32) -> Processed {
    Processed {
        dead_letter: Some(DeadLetter {
            received_at: m.received_at,
            source: source_of(m.topic).into(),
            topic: Some(m.topic.to_owned()),
            reason: format!(
                "rate limit: more than {per_minute} messages a minute on this topic (ingest.max_messages_per_device_per_minute)"
            ),
            payload: m.payload.to_vec(),
        }),
        reject_label: Some("rate_limit"),
        ..Processed::default()
    }
}

/// A message to write: live from the broker, or back from the spool.
#[derive(Debug, Clone, Copy)]
struct Raw<'a> {
    topic: &'a str,
    payload: &'a [u8],
    received_at: DateTime<Utc>,
}

/// What became of a batch.
enum Written {
    Committed,
    /// The store is unavailable: the caller should spool the batch.
    StoreDown,
    /// Shutdown interrupted a retry; nothing may be acknowledged.
    Interrupted,
}

/// Everything the writer needs.
pub(crate) struct Writer {
    pub(crate) store: Store,
    pub(crate) client: Client,
    pub(crate) cfg: IngestConfig,
    pub(crate) routes: Routes,
    pub(crate) sparkplug: SparkplugNodes,
    pub(crate) rate_limit: RateLimiter,
    pub(crate) registry: Registry,
    pub(crate) generation: Arc<AtomicU64>,
    pub(crate) health: HealthBoard,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Acknowledgements (with the connection generation their message arrived on) that did
    /// not fit into the client's request queue yet, oldest first.
    pub(crate) unsent_acks: VecDeque<(u64, Received)>,
    /// The store answered the last drain of the spool: while the spool still holds data the
    /// store component is healthy ("draining"), not down.
    pub(crate) draining: bool,
    /// Told how many readings each commit newly stored.
    pub(crate) arrivals: Option<crate::Arrivals>,
    pub(crate) spool: Option<Spool>,
    /// When the next drain attempt may run (backs off while the store is down).
    pub(crate) next_drain: Instant,
    pub(crate) drain_backoff: Backoff,
}

impl Writer {
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Delivery>) {
        let mut last_refresh = Instant::now();
        let mut closed = false;
        while !closed {
            self.flush_acks();
            if last_refresh.elapsed() >= REGISTRY_REFRESH {
                last_refresh = Instant::now();
                self.refresh().await;
            }
            if self.spool_pending() && Instant::now() >= self.next_drain {
                self.drain_one().await;
                // New messages keep flowing (to the spool's end) while it drains.
                let mut ready = Vec::new();
                while ready.len() < self.cfg.batch_max_messages {
                    match rx.try_recv() {
                        Ok(d) => ready.push(d),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                }
                if !ready.is_empty() && !self.handle(ready).await {
                    break;
                }
                continue;
            }
            let until_refresh = REGISTRY_REFRESH.saturating_sub(last_refresh.elapsed());
            let wait = if self.spool_pending() {
                self.next_drain.saturating_duration_since(Instant::now())
            } else if !self.unsent_acks.is_empty() {
                Duration::from_millis(5)
            } else {
                until_refresh
            };
            let wait = wait.min(until_refresh);
            let first = tokio::select! {
                d = rx.recv() => d,
                _ = tokio::time::sleep(wait) => continue,
            };
            let Some(first) = first else { break };
            let mut deliveries = vec![first];
            let deadline =
                tokio::time::Instant::now() + Duration::from_millis(self.cfg.batch_linger_ms);
            while deliveries.len() < self.cfg.batch_max_messages {
                tokio::select! {
                    d = rx.recv() => match d {
                        Some(d) => deliveries.push(d),
                        None => { closed = true; break }
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            if !self.handle(deliveries).await {
                break;
            }
        }
        // Shutting down: every committed or spooled message's acknowledgement goes out first.
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

    /// Reloads the registry (approvals made elsewhere take effect) and stores the held-back
    /// uplinks of devices approved since. Runs every [`REGISTRY_REFRESH`], busy or idle.
    async fn refresh(&mut self) {
        // While the spool holds data the store is (or was just) unavailable: reloading would
        // only wait for the pool's connect timeout. The drain resumes refreshing afterwards.
        if self.spool_pending() {
            return;
        }
        match Registry::load(&self.store).await {
            Ok(r) => self.registry = r,
            Err(e) => tracing::warn!(error = %e, "could not refresh the registry"),
        }
        let replayed = crate::pending::replay_approved(
            &self.store,
            &self.registry,
            &self.routes,
            &self.cfg,
            &mut self.sparkplug,
        )
        .await;
        if let Err(e) = replayed {
            tracing::warn!(error = %e, "could not replay held-back uplinks");
        }
    }

    fn spool_pending(&self) -> bool {
        self.spool.as_ref().is_some_and(|s| !s.is_empty())
    }

    /// Routes and decodes each message. `live` messages count against the per-device rate
    /// limit; messages drained from the spool were accepted before and do not.
    fn process(&mut self, raw: &[Raw<'_>], live: bool) -> Vec<Processed> {
        let now = Utc::now();
        let clock = Instant::now();
        let parts: Vec<Processed> = raw
            .iter()
            .map(|m| {
                if live && !self.rate_limit.allow(m.topic, clock) {
                    return rate_limited(m, self.cfg.max_messages_per_device_per_minute);
                }
                process(
                    m.topic,
                    m.payload,
                    &self.routes,
                    &self.registry,
                    &self.cfg,
                    m.received_at.min(now),
                    &mut self.sparkplug,
                )
            })
            .collect();
        for (topic, payload) in parts.iter().filter_map(|p| p.rebirth.clone()) {
            match self.client.try_publish(topic.clone(), payload) {
                Ok(()) => {
                    metrics::counter!("waterline_sparkplug_rebirth_requests_total").increment(1);
                    tracing::info!(%topic, "asked a Sparkplug edge node to rebirth");
                }
                Err(e) => {
                    tracing::warn!(%topic, error = %e, "could not queue a Sparkplug rebirth request")
                }
            }
        }
        parts
    }

    /// Writes one batch of live messages (to the store, or to the spool) and queues their
    /// acknowledgements. Returns false when shutdown interrupted it (nothing acknowledged).
    async fn handle(&mut self, deliveries: Vec<Delivery>) -> bool {
        let raw: Vec<Raw<'_>> = deliveries
            .iter()
            .map(|d| Raw {
                topic: d.topic(),
                payload: d.payload(),
                received_at: d.received_at,
            })
            .collect();
        let mut ack = vec![true; deliveries.len()];
        let stored = if self.spool_pending() {
            // Keep order: nothing overtakes what is already spooled.
            self.spool_batch(&raw).await
        } else {
            match self.write(&raw, &mut ack, self.spool.is_none(), true).await {
                Written::Committed => true,
                Written::StoreDown => self.spool_batch(&raw).await,
                Written::Interrupted => false,
            }
        };
        drop(raw);
        if !stored {
            return false;
        }
        for (d, ack) in deliveries.into_iter().zip(ack) {
            if ack && d.needs_ack() {
                self.unsent_acks.push_back((d.generation, d.received));
            }
        }
        self.flush_acks();
        true
    }

    /// Processes and commits `raw`. With `retry`, a store outage is retried until it ends (or
    /// shutdown); without, it is reported as [`Written::StoreDown`] at once. `live` messages
    /// count against the rate limit (spooled ones were accepted before).
    async fn write(
        &mut self,
        raw: &[Raw<'_>],
        ack: &mut [bool],
        retry: bool,
        live: bool,
    ) -> Written {
        // A batch that may end in the spool (no retry) is processed again when drained: its
        // effect on the Sparkplug sessions must then be undone, or the drain sees each
        // message's `seq` twice (a false gap and a needless rebirth request).
        if !retry {
            self.sparkplug.begin();
        }
        let mut parts = self.process(raw, live);
        let readings: usize = parts.iter().map(|p| p.readings.len()).sum();
        metrics::histogram!("waterline_ingest_batch_messages").record(raw.len() as f64);
        metrics::histogram!("waterline_ingest_batch_readings").record(readings as f64);
        let started = Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let outcome = loop {
            match self.commit(&parts).await {
                Ok(o) => break o,
                Err(e) if e.is_retryable() => {
                    self.health
                        .set(STORE_COMPONENT, false, format!("store unavailable: {e}"));
                    metrics::counter!("waterline_ingest_commit_retries_total").increment(1);
                    if !retry {
                        tracing::warn!(error = %e, "store unavailable; spooling");
                        self.sparkplug.rollback();
                        return Written::StoreDown;
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "store unavailable; batch held unacknowledged");
                    if !self.pause(delay).await {
                        return Written::Interrupted;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "store refused the batch; committing message by message");
                    match self.commit_one_by_one(&mut parts, raw, ack, &e).await {
                        Some(o) => break o,
                        None => return Written::Interrupted,
                    }
                }
            }
        };
        self.sparkplug.commit();
        if !self.spool_pending() {
            self.health.set(STORE_COMPONENT, true, "writing");
        }
        metrics::histogram!("waterline_ingest_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("waterline_ingest_readings_inserted_total").increment(outcome.inserted);
        if outcome.inserted > 0
            && let Some(a) = &self.arrivals
        {
            a.send_modify(|n| *n += outcome.inserted);
        }
        metrics::counter!("waterline_ingest_readings_duplicate_total")
            .increment(outcome.duplicates);
        metrics::counter!("waterline_ingest_messages_committed_total").increment(raw.len() as u64);
        if live {
            // Freshness at commit: from the time a device stamped its newest reading to the
            // commit. Only recent data counts (a batched upload of yesterday is not slow).
            let committed = Utc::now();
            let latency = metrics::histogram!("waterline_ingest_reading_age_at_commit_seconds");
            for p in &parts {
                if let Some(newest) = p.readings.iter().map(|r| r.time).max() {
                    let age =
                        (committed - newest).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
                    if (0.0..600.0).contains(&age) {
                        latency.record(age);
                    }
                }
            }
        }
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
        Written::Committed
    }

    /// Appends the raw messages to the spool (durably). When it is full, the configured
    /// policy decides: wait for the store (`block`) or drop the oldest segment. Returns false
    /// only when shutdown interrupted the wait.
    async fn spool_batch(&mut self, raw: &[Raw<'_>]) -> bool {
        let record = spooled::encode(raw.iter().map(|m| (m.topic, m.payload, m.received_at)));
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        loop {
            let Some(spool) = self.spool.as_mut() else {
                // No spool: wait for the store instead.
                let mut ack = vec![true; raw.len()];
                return matches!(
                    self.write(raw, &mut ack, true, true).await,
                    Written::Committed
                );
            };
            match spool.append(&record) {
                Ok(()) => {
                    metrics::counter!("waterline_ingest_spooled_messages_total")
                        .increment(raw.len() as u64);
                    metrics::gauge!("waterline_ingest_spool_bytes").set(spool.bytes() as f64);
                    let bytes = spool.bytes();
                    if self.draining {
                        self.health.set(STORE_COMPONENT, true, draining(bytes));
                    } else {
                        self.health.set(
                            STORE_COMPONENT,
                            false,
                            format!("store unavailable; spooling ({bytes} bytes spooled)"),
                        );
                    }
                    return true;
                }
                Err(SpoolError::Full { .. })
                    if self.cfg.spool_when_full == WhenFull::DropOldest =>
                {
                    match spool.drop_oldest() {
                        Ok(0) => {
                            tracing::error!(
                                "spool full and nothing left to drop; waiting for the store"
                            );
                            if !self.pause(backoff.next_delay()).await {
                                return false;
                            }
                            self.drain_one().await;
                        }
                        Ok(lost) => {
                            metrics::counter!("waterline_ingest_spool_dropped_bytes_total")
                                .increment(lost);
                            tracing::warn!(
                                lost_bytes = lost,
                                "spool full: dropped its oldest segment"
                            );
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "could not drop the oldest spool segment");
                            if !self.pause(backoff.next_delay()).await {
                                return false;
                            }
                        }
                    }
                }
                Err(e) => {
                    // Full under `block`, or a disk error: hold the batch unacknowledged and
                    // keep trying to drain into the store, which frees space.
                    tracing::warn!(error = %e, "cannot spool; batch held unacknowledged");
                    if !self.pause(backoff.next_delay()).await {
                        return false;
                    }
                    self.drain_one().await;
                }
            }
        }
    }

    /// Commits the oldest spool record if the store answers; backs off if it does not.
    async fn drain_one(&mut self) {
        if self.spool.is_none() {
            return;
        }
        // A cheap probe first: while the store is down a failed batch would wait for the
        // pool's connect timeout, and the writer would stop spooling meanwhile.
        let probe = tokio::time::timeout(Duration::from_secs(2), self.store.ping()).await;
        if !matches!(probe, Ok(Ok(()))) {
            self.draining = false;
            self.next_drain = Instant::now() + self.drain_backoff.next_delay();
            return;
        }
        let Some(spool) = self.spool.as_mut() else {
            return;
        };
        let (record, next) = match spool.peek() {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the spool");
                self.next_drain = Instant::now() + self.drain_backoff.next_delay();
                return;
            }
        };
        let written = match spooled::decode(&record) {
            Ok(messages) => {
                let raw: Vec<Raw<'_>> = messages
                    .iter()
                    .map(|m| Raw {
                        topic: &m.topic,
                        payload: &m.payload,
                        received_at: m.received_at,
                    })
                    .collect();
                let mut ack = vec![true; raw.len()];
                self.write(&raw, &mut ack, false, false).await
            }
            Err(reason) => {
                // Passed its checksum yet does not decode: keep its bytes where people look.
                let letter = Processed {
                    dead_letter: Some(DeadLetter {
                        received_at: Utc::now(),
                        source: "spool".into(),
                        topic: None,
                        reason: format!("undecodable spool record: {reason}"),
                        payload: record.clone(),
                    }),
                    ..Processed::default()
                };
                match self.commit(std::slice::from_ref(&letter)).await {
                    Ok(_) => Written::Committed,
                    Err(_) => Written::StoreDown,
                }
            }
        };
        match written {
            Written::Committed => {
                let Some(spool) = self.spool.as_mut() else {
                    return;
                };
                if let Err(e) = spool.consume(next) {
                    tracing::error!(error = %e, "cannot advance the spool checkpoint");
                }
                metrics::gauge!("waterline_ingest_spool_bytes").set(spool.bytes() as f64);
                self.drain_backoff.reset();
                self.next_drain = Instant::now();
                if spool.is_empty() {
                    tracing::info!("spool drained");
                    self.draining = false;
                    self.health.set(STORE_COMPONENT, true, "writing");
                } else {
                    // The store is back: healthy while it catches up.
                    self.draining = true;
                    self.health
                        .set(STORE_COMPONENT, true, draining(spool.bytes()));
                }
            }
            Written::StoreDown | Written::Interrupted => {
                self.draining = false;
                self.next_drain = Instant::now() + self.drain_backoff.next_delay();
            }
        }
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
            p.add_to(&mut batch);
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
        raw: &[Raw<'_>],
        ack: &mut [bool],
        batch_error: &StoreError,
    ) -> Option<BatchOutcome> {
        let mut total = BatchOutcome::default();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        for ((p, m), ack) in parts.iter_mut().zip(raw).zip(ack.iter_mut()) {
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
                        tracing::error!(error = %e, topic = %m.topic, "could not even dead-letter a message; it stays unacknowledged");
                        *ack = false;
                        *p = Processed::default();
                        break;
                    }
                    Err(e) => {
                        refused_once = true;
                        *p = Processed {
                            dead_letter: Some(DeadLetter {
                                received_at: m.received_at,
                                source: source_of(m.topic).into(),
                                topic: Some(m.topic.to_owned()),
                                reason: format!(
                                    "store refused the message: {e} (batch error: {batch_error})"
                                ),
                                payload: m.payload.to_vec(),
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
