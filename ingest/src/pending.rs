//! Uplinks of devices awaiting approval are kept aside, raw, in the store. Once a device is
//! approved, [`replay_approved`] turns them into readings exactly as if they had just arrived
//! (stamped with the time they were received) and deletes them in the same transaction.

use waterline_store::{Batch, DeviceStatus, Store, StoreError};

use crate::config::{IngestConfig, MqttConfig};
use crate::registry::Registry;
use crate::route::{Routes, SparkplugNodes, process};
use crate::uplink::Processed;

/// Uplinks replayed per transaction.
const CHUNK: i64 = 500;

/// Stores the held-back uplinks of every device approved since they arrived. Returns how
/// many uplinks were replayed.
pub async fn replay_approved(
    store: &Store,
    registry: &Registry,
    routes: &Routes,
    cfg: &IngestConfig,
    nodes: &mut SparkplugNodes,
) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let pending = store.pending_of_active_devices(CHUNK).await?;
        if pending.is_empty() {
            return Ok(total);
        }
        // The store says these devices are active now, whatever the cached registry says.
        let mut registry = registry.clone();
        for (_, p) in &pending {
            registry.set_device(p.device.clone(), DeviceStatus::Active);
        }
        let parts: Vec<Processed> = pending
            .iter()
            .map(|(_, p)| {
                process(
                    p.topic.as_deref().unwrap_or_default(),
                    &p.payload,
                    routes,
                    &registry,
                    cfg,
                    p.received_at,
                    nodes,
                )
            })
            .collect();
        let new_sensors: Vec<_> = parts
            .iter()
            .flat_map(|p| p.new_sensors.iter().cloned())
            .collect();
        store.register_sensors(&new_sensors).await?;
        let mut batch = Batch {
            release_pending: pending.iter().map(|(id, _)| *id).collect(),
            ..Batch::default()
        };
        for p in &parts {
            p.add_to(&mut batch);
        }
        store.commit_batch(&batch).await?;
        total += pending.len();
        tracing::info!(
            uplinks = pending.len(),
            "replayed held-back uplinks of approved devices"
        );
    }
}

/// [`replay_approved`] for a caller without a running ingest (the `device approve` command).
pub async fn replay_approved_once(
    store: &Store,
    mqtt: &MqttConfig,
    cfg: &IngestConfig,
) -> Result<usize, StoreError> {
    let registry = Registry::load(store).await?;
    let routes = Routes::from_config(mqtt, cfg);
    replay_approved(
        store,
        &registry,
        &routes,
        cfg,
        &mut SparkplugNodes::default(),
    )
    .await
}
