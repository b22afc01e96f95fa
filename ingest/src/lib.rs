//! Waterline's ingest daemon: field data in, committed readings out.
//!
//! Data flow: [`mqtt`] source (persistent session, manual acks) → bounded channel → [`writer`]
//! (decode and validate with [`uplink`], batch, commit through `waterline-store`, then
//! acknowledge). Nothing is acknowledged before it is committed, and the store's
//! (series, time) key makes redelivery harmless: at-least-once delivery, exactly-once storage.
//!
//! Modbus devices are polled by [`modbus_poll`] into the same writer, so they share its
//! validation, batching and spool.
//!
//! Main entry points: [`run`] (MQTT and Modbus), [`run_mqtt`]. Configuration: [`MqttConfig`],
//! [`IngestConfig`], [`modbus_poll::ModbusConfig`].
//! This crate does not serve HTTP, run analytics or know about dashboards.

pub mod backoff;
pub mod config;
pub mod modbus_poll;
mod mqtt;
pub mod pending;
pub mod ratelimit;
pub mod registry;
pub mod route;
pub mod spool;
pub mod spooled;
pub mod uplink;
mod writer;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

pub use config::{IngestConfig, MqttConfig, WhenFull};
pub use mqtt::{BROKER_COMPONENT, SUBSCRIBED};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use waterline_core::health::HealthBoard;
use waterline_store::{Store, StoreError};
pub use writer::STORE_COMPONENT;

/// Why ingest could not start.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("could not load the device and sensor registry: {0}")]
    Registry(#[from] StoreError),
    #[error("cannot open the ingest spool: {0}")]
    Spool(#[from] spool::SpoolError),
}

/// Starts MQTT ingest. The returned task ends after `shutdown` turns true and every committed
/// message has been acknowledged.
pub async fn run_mqtt(
    store: Store,
    mqtt: MqttConfig,
    cfg: IngestConfig,
    health: HealthBoard,
    shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, IngestError> {
    run(store, mqtt, cfg, Vec::new(), health, shutdown, None).await
}

/// Counts readings newly stored by ingest (live or drained from the spool): the analytics
/// scheduler runs on data arrival by watching it.
pub type Arrivals = watch::Sender<u64>;

/// Starts ingest: MQTT, and a poller for each Modbus device given (already loaded with its
/// register map, and meant for this process). Polled values go through the same writer.
/// Every commit adds the readings it newly stored to `arrivals`, when given.
pub async fn run(
    store: Store,
    mqtt: MqttConfig,
    cfg: IngestConfig,
    modbus: Vec<(
        modbus_poll::ModbusDevice,
        waterline_core::modbus::RegisterMap,
    )>,
    health: HealthBoard,
    shutdown: watch::Receiver<bool>,
    arrivals: Option<Arrivals>,
) -> Result<JoinHandle<()>, IngestError> {
    mqtt.validate().map_err(IngestError::Config)?;
    cfg.validate().map_err(IngestError::Config)?;
    let registry = registry::Registry::load(&store).await?;
    let spool = match cfg.spool() {
        Some(dir) => {
            let s = spool::Spool::open(dir, cfg.spool_max_bytes, cfg.spool_segment_bytes)?;
            if !s.is_empty() {
                tracing::info!(dir = %dir.display(), bytes = s.bytes(), "spool holds data from an earlier run; draining it first");
            }
            Some(s)
        }
        None => None,
    };
    // Room for every acknowledgement of a full channel plus a full batch, so the writer's
    // non-blocking acks rarely have to wait.
    let request_capacity = cfg.channel_capacity + 2 * cfg.batch_max_messages + 64;
    for (profile, codec) in cfg.chirpstack_profiles.iter() {
        codec.validate().map_err(|problems| {
            IngestError::Config(format!(
                "ingest.chirpstack_profiles.\"{profile}\": {}",
                problems.join("; ")
            ))
        })?;
    }
    let rate_limit = ratelimit::RateLimiter::new(cfg.max_messages_per_device_per_minute);
    let routes = route::Routes::from_config(&mqtt, &cfg);
    let (client, eventloop) =
        mqtt::connect(&mqtt, request_capacity).map_err(IngestError::Config)?;
    let (tx, rx) = mpsc::channel(cfg.channel_capacity);
    let poll_tx = tx.clone();
    let shutdown_pollers = shutdown.clone();
    let (done_tx, done_rx) = oneshot::channel();
    let generation = Arc::new(AtomicU64::new(0));

    let writer = writer::Writer {
        store,
        client: client.clone(),
        cfg,
        routes,
        sparkplug: Default::default(),
        rate_limit,
        registry,
        generation: generation.clone(),
        health: health.clone(),
        shutdown: shutdown.clone(),
        unsent_acks: Default::default(),
        draining: false,
        arrivals,
        spool,
        next_drain: std::time::Instant::now(),
        drain_backoff: backoff::Backoff::new(
            std::time::Duration::from_millis(200),
            std::time::Duration::from_secs(10),
        ),
    };
    let writer_task = tokio::spawn(async move {
        writer.run(rx).await;
        let _ = done_tx.send(());
    });
    let source_task = tokio::spawn(mqtt::run_source(
        client,
        eventloop,
        mqtt.subscriptions(),
        tx,
        generation,
        health,
        shutdown,
        done_rx,
    ));
    let pollers: Vec<JoinHandle<()>> = modbus
        .into_iter()
        .map(|(dev, map)| {
            tracing::info!(device = %dev.id, address = %dev.address, points = map.points.len(), "polling Modbus device");
            tokio::spawn(modbus_poll::run_device(dev, map, poll_tx.clone(), shutdown_pollers.clone()))
        })
        .collect();
    drop(poll_tx);
    Ok(tokio::spawn(async move {
        for p in pollers {
            let _ = p.await;
        }
        let _ = writer_task.await;
        let _ = source_task.await;
    }))
}
