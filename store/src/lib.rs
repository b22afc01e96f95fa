//! Waterline's storage: the only crate that talks SQL.
//!
//! One interface, [`Store`], over three backends chosen by the database URL:
//! - **TimescaleDB** (`postgres://…` on a server with the extension): `readings` is a
//!   hypertable with compression segmented by series, rollups are continuous aggregates with
//!   refresh policies, raw data may have a retention policy ([`timescale`]).
//! - **plain PostgreSQL** (`postgres://…` without it): the same schema as ordinary tables; the
//!   rollups are kept exact by the service inside each write transaction.
//! - **embedded SQLite** (`sqlite://PATH`, bundled): the zero-setup store for `demo`.
//!
//! Migrations are embedded and applied by [`Store::open`]. Readings are keyed by
//! (series, time): [`Store::commit_batch`] is idempotent, so a redelivered message adds no row,
//! and it writes readings, rollups, dead letters, held-back uplinks and device sightings in a
//! single transaction (on PostgreSQL a large batch's readings first, in two concurrent
//! transactions, and the rest once they have committed; a retry after a failure finds only
//! keyed readings stored), so an ingest that acknowledges after it returns never loses data.
//! (Sensors first seen in a payload are registered just before, by
//! [`Store::register_sensors`]; that is idempotent too.)
//!
//! Events follow the alert workflow (`open → acknowledged → resolved`, grab samples, an
//! audit trail and follow-up KPIs): see [`workflow`] and [`Store::acknowledge_event`].
//!
//! Main types: [`Store`], [`Batch`], [`Bucket`], [`StoreError`] (with
//! [`StoreError::is_retryable`]), [`EventDetail`], [`AlertKpis`]. With the `testing` feature,
//! [`testing::TestDb`] gives a test a fresh database.

pub mod advice;
mod decode;
pub mod detections;
mod error;
pub mod joblock;
pub mod kpi;
mod model;
mod pg;
mod rollup;
pub mod samples;
pub mod schedules;
mod sqlite;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod timescale;
mod token;
pub mod windows;
pub mod workflow;
#[cfg(test)]
#[macro_use]
mod test_macros;
#[cfg(test)]
mod online_tests;
#[cfg(test)]
mod workflow_tests;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

pub use advice::PrvAdvice;
use chrono::{DateTime, Utc};
pub use detections::DetectionOutcome;
pub use error::{StoreError, redact_url};
pub use joblock::JobLock;
pub use kpi::{DailyKpi, KpiQuery, KpiScope, MonthlyKpi};
pub use model::*;
pub use rollup::Bucket;
pub use samples::StationSample;
pub use schedules::{PrvSchedule, ScheduleSource};
pub use timescale::TimescaleOptions;
pub use token::TOKEN_PREFIX;
use waterline_core::{
    DeclaredWindow, DeviceId, Event, EventKind, GrabSample, HourlySchedule, Network, Note, Reading,
    Resolution, Role, SensorId, StationId, WindowKind,
};
pub use windows::StoredWindow;
pub use workflow::{
    Actor, AlertKpis, DurationStats, EventDetail, HistoryAction, HistoryEntry, StoredSample,
};

/// Which backend a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Sqlite,
    Postgres,
    Timescale,
}

impl BackendKind {
    /// A name for logs and `/health`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Sqlite => "sqlite",
            BackendKind::Postgres => "postgres",
            BackendKind::Timescale => "timescaledb",
        }
    }
}

/// How to open a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Pool size for PostgreSQL.
    pub max_connections: u32,
    /// Use TimescaleDB when the server offers it.
    pub use_timescale: bool,
    /// TimescaleDB policies.
    pub timescale: TimescaleOptions,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            use_timescale: true,
            timescale: TimescaleOptions::default(),
        }
    }
}

#[derive(Debug, Clone)]
enum Inner {
    Pg(pg::PgStore),
    Sqlite(sqlite::SqliteStore),
}

/// Runs the same call on whichever backend this store has.
macro_rules! on_backend {
    ($self:ident, $b:ident => $call:expr) => {
        match &$self.inner {
            Inner::Pg($b) => $call,
            Inner::Sqlite($b) => $call,
        }
    };
}

/// A handle to the store; cheap to clone and share between tasks.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Inner,
    kind: BackendKind,
    /// Sensor id → series id, filled lazily; series ids never change once assigned.
    series: Arc<RwLock<HashMap<SensorId, i32>>>,
}

impl Store {
    /// Connects to `url`, applies migrations and, on PostgreSQL with the extension available
    /// (and `opts.use_timescale`), the TimescaleDB layout.
    pub async fn open(url: &str, opts: StoreOptions) -> Result<Store, StoreError> {
        let (inner, kind) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut pg = pg::PgStore::connect(url, opts.max_connections).await?;
            pg.migrate().await?;
            let avail = timescale::availability(pg.pool()).await?;
            let use_it = match avail {
                _ if !opts.use_timescale => false,
                timescale::Availability::NotAvailable => false,
                timescale::Availability::Installed => true,
                // Offered by the server but not created here: create it if we can (it must be
                // in shared_preload_libraries and we need the privilege); otherwise run on
                // plain PostgreSQL and say why.
                timescale::Availability::Available => {
                    match timescale::create_extension(pg.pool()).await {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::warn!(error = %e, "TimescaleDB is offered by the server but cannot be created in this database; running on plain PostgreSQL");
                            false
                        }
                    }
                }
            };
            let kind = if use_it {
                timescale::enable(pg.pool(), opts.timescale).await?;
                pg.refresh_mode().await?;
                BackendKind::Timescale
            } else {
                BackendKind::Postgres
            };
            (Inner::Pg(pg), kind)
        } else if url.starts_with("sqlite:") {
            let s = sqlite::SqliteStore::connect(url).await?;
            s.migrate().await?;
            (Inner::Sqlite(s), BackendKind::Sqlite)
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };
        tracing::info!(backend = kind.as_str(), url = %redact_url(url), "store opened");
        Ok(Store {
            inner,
            kind,
            series: Arc::default(),
        })
    }

    /// The backend in use.
    pub fn backend(&self) -> BackendKind {
        self.kind
    }

    /// Whether rollups are maintained by this service (not by TimescaleDB).
    pub fn service_rollups(&self) -> bool {
        match &self.inner {
            Inner::Pg(p) => p.service_rollups(),
            Inner::Sqlite(_) => true,
        }
    }

    /// A trivial round trip, for `/health`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_backend!(self, b => b.ping().await)
    }

    /// Closes the connection pool, waiting for in-flight queries.
    pub async fn close(&self) {
        on_backend!(self, b => b.close().await)
    }

    /// Writes the sensors `network.toml` describes (kind, unit, DMA, station, set points).
    pub async fn upsert_described_sensors(&self, net: &Network) -> Result<(), StoreError> {
        on_backend!(self, b => b.upsert_described_sensors(net).await)
    }

    /// Registers sensors first seen in payloads (kind unknown, unit from the payload).
    pub async fn register_sensors(&self, sensors: &[NewSensor]) -> Result<(), StoreError> {
        if sensors.is_empty() {
            return Ok(());
        }
        on_backend!(self, b => b.register_sensors(sensors).await)
    }

    /// Every sensor with its newest reading.
    pub async fn sensors(&self) -> Result<Vec<SensorRecord>, StoreError> {
        on_backend!(self, b => b.sensor_records(None).await)
    }

    /// One sensor, if known.
    pub async fn sensor(&self, id: &SensorId) -> Result<Option<SensorRecord>, StoreError> {
        let mut v = on_backend!(self, b => b.sensor_records(Some(id)).await)?;
        Ok(v.pop())
    }

    async fn resolve_series(
        &self,
        readings: &[Reading],
    ) -> Result<HashMap<SensorId, i32>, StoreError> {
        let mut map = HashMap::new();
        let mut missing = Vec::new();
        {
            let cache = self.series.read().unwrap_or_else(|e| e.into_inner());
            for r in readings {
                if map.contains_key(&r.sensor) {
                    continue;
                }
                match cache.get(&r.sensor) {
                    Some(&id) => {
                        map.insert(r.sensor.clone(), id);
                    }
                    None => {
                        if !missing.contains(&&r.sensor) {
                            missing.push(&r.sensor);
                        }
                    }
                }
            }
        }
        if !missing.is_empty() {
            let found = on_backend!(self, b => b.series_ids(&missing).await)?;
            let mut cache = self.series.write().unwrap_or_else(|e| e.into_inner());
            for (k, v) in found {
                cache.insert(k.clone(), v);
                map.insert(k, v);
            }
        }
        Ok(map)
    }

    async fn series_id(&self, sensor: &SensorId) -> Result<Option<i32>, StoreError> {
        if self.sensor(sensor).await?.is_none() {
            return Ok(None);
        }
        let probe = [Reading::new(sensor.clone(), Utc::now(), 0.0)];
        Ok(self.resolve_series(&probe).await?.get(sensor).copied())
    }

    /// Commits one ingest batch atomically; duplicates of stored readings are ignored.
    pub async fn commit_batch(&self, batch: &Batch) -> Result<BatchOutcome, StoreError> {
        if batch.is_empty() {
            return Ok(BatchOutcome::default());
        }
        let series = self.resolve_series(&batch.readings).await?;
        on_backend!(self, b => b.commit_batch(batch, &series).await)
    }

    /// Raw readings of `sensor` in `[from, to)`, oldest first, at most `limit`.
    pub async fn readings(
        &self,
        sensor: &SensorId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Point>, StoreError> {
        let Some(id) = self.series_id(sensor).await? else {
            return Err(StoreError::NotFound(format!("sensor `{sensor}`")));
        };
        on_backend!(self, b => b.readings(id, from, to, limit).await)
    }

    /// Aggregates of `sensor` per `bucket` for buckets starting in `[floor(from), to)`.
    pub async fn bucketed(
        &self,
        sensor: &SensorId,
        bucket: Bucket,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<BucketPoint>, StoreError> {
        let Some(id) = self.series_id(sensor).await? else {
            return Err(StoreError::NotFound(format!("sensor `{sensor}`")));
        };
        on_backend!(self, b => b.bucketed(id, bucket, from, to, limit).await)
    }

    /// Dead letters received in `[from, to)`.
    pub async fn dead_letters(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<StoredDeadLetter>, StoreError> {
        on_backend!(self, b => b.dead_letters(from, to, limit).await)
    }

    /// Stores a new (open) event and returns its id.
    pub async fn insert_event(&self, event: &Event) -> Result<i64, StoreError> {
        on_backend!(self, b => b.insert_event(event).await)
    }

    /// Events whose span `[start, end]` overlaps `[from, to)` (open events have no end).
    pub async fn events(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        kind: Option<EventKind>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        on_backend!(self, b => b.events(from, to, kind).await)
    }

    /// Records what an analytics run detected: repeated detections update the stored event's
    /// course, new ones are inserted open ([`detections`] has the matching rule).
    pub async fn record_detections(
        &self,
        detected: &[Event],
    ) -> Result<DetectionOutcome, StoreError> {
        let mut outcome = DetectionOutcome::default();
        let Some(from) = detected.iter().map(|e| e.start).min() else {
            return Ok(outcome);
        };
        // Every stored event that can overlap a detection started before the latest moment
        // any detection covers.
        let to = detected
            .iter()
            .map(|e| e.end.unwrap_or(e.detected_at).max(e.detected_at))
            .max()
            .unwrap_or(from)
            + chrono::TimeDelta::seconds(1);
        let stored = self.events(from, to, None).await?;
        for (action, event) in detections::plan(&stored, detected)
            .into_iter()
            .zip(detected)
        {
            match action {
                detections::Action::Insert => {
                    self.insert_event(event).await?;
                    outcome.inserted += 1;
                }
                detections::Action::Update(id) => {
                    on_backend!(self, b => b.update_event_course(id, event).await)?;
                    outcome.updated += 1;
                }
                detections::Action::Unchanged => outcome.unchanged += 1,
            }
        }
        Ok(outcome)
    }

    /// Writes daily KPI values, replacing those of the same scope, subject, metric and day.
    pub async fn upsert_kpis(
        &self,
        kpis: &[DailyKpi],
        computed_at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        if kpis.is_empty() {
            return Ok(0);
        }
        on_backend!(self, b => b.upsert_kpis(kpis, computed_at).await)
    }

    /// Daily KPI values, by subject, metric and day.
    pub async fn kpis(&self, query: &KpiQuery) -> Result<Vec<DailyKpi>, StoreError> {
        on_backend!(self, b => b.kpis(query).await)
    }

    /// Writes monthly KPI values, replacing those of the same scope, subject, metric and month.
    pub async fn upsert_monthly_kpis(
        &self,
        kpis: &[MonthlyKpi],
        computed_at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        if kpis.is_empty() {
            return Ok(0);
        }
        on_backend!(self, b => b.upsert_monthly_kpis(kpis, computed_at).await)
    }

    /// Monthly KPI values (months whose first day is in the query's days), by subject, metric
    /// and month.
    pub async fn monthly_kpis(&self, query: &KpiQuery) -> Result<Vec<MonthlyKpi>, StoreError> {
        on_backend!(self, b => b.monthly_kpis(query).await)
    }

    /// Replaces the stored PRV recommendations with `all` (one per valve), in one transaction.
    pub async fn replace_prv_advice(&self, all: &[PrvAdvice]) -> Result<(), StoreError> {
        on_backend!(self, b => b.replace_prv_advice(all).await)
    }

    /// Records a declared window (and its audit entry, in the same transaction).
    pub async fn declare_window(
        &self,
        window: &DeclaredWindow,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<StoredWindow, StoreError> {
        on_backend!(self, b => b.declare_window(window, actor, at).await)
    }

    /// The windows in force (not withdrawn) that overlap `[from, to)`, optionally of one kind,
    /// by start.
    pub async fn declared_windows(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        kind: Option<WindowKind>,
    ) -> Result<Vec<StoredWindow>, StoreError> {
        on_backend!(self, b => b.declared_windows(from, to, kind).await)
    }

    /// One window, withdrawn or not.
    pub async fn window(&self, id: i64) -> Result<Option<StoredWindow>, StoreError> {
        on_backend!(self, b => b.window(id).await)
    }

    /// Withdraws a window (audited); `NotFound`, or `Conflict` when already withdrawn.
    pub async fn withdraw_window(
        &self,
        id: i64,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<StoredWindow, StoreError> {
        on_backend!(self, b => b.withdraw_window(id, actor, at).await)
    }

    /// Records a routine grab sample taken at `station` (and its audit entry, in the same
    /// transaction).
    pub async fn record_station_sample(
        &self,
        station: &StationId,
        sample: &GrabSample,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<StationSample, StoreError> {
        on_backend!(self, b => b.record_station_sample(station, sample, actor, at).await)
    }

    /// The grab samples taken at stations in `[from, to)` — routine ones and those attached to
    /// an event with a station — optionally at one station, by sample time.
    pub async fn station_samples(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        station: Option<&StationId>,
    ) -> Result<Vec<StationSample>, StoreError> {
        on_backend!(self, b => b.station_samples(from, to, station).await)
    }

    /// Puts `schedule` in force for `prv`, replacing any (audited `prv.schedule.apply`, in the
    /// same transaction).
    pub async fn put_prv_schedule(
        &self,
        prv: &str,
        schedule: &HourlySchedule,
        source: ScheduleSource,
        note: Option<&str>,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<PrvSchedule, StoreError> {
        on_backend!(self, b => b.put_prv_schedule(prv, schedule, source, note, actor, at).await)
    }

    /// Takes `prv`'s schedule out of force (audited `prv.schedule.cancel`, with `why`); `None`
    /// when it had none.
    pub async fn cancel_prv_schedule(
        &self,
        prv: &str,
        actor: &str,
        why: Option<&str>,
    ) -> Result<Option<PrvSchedule>, StoreError> {
        on_backend!(self, b => b.cancel_prv_schedule(prv, actor, why).await)
    }

    /// The schedules in force, by valve id.
    pub async fn prv_schedules(&self) -> Result<Vec<PrvSchedule>, StoreError> {
        on_backend!(self, b => b.prv_schedules().await)
    }

    /// Records that the set point of the local hour starting at `hour` was written, for the
    /// schedule applied at `applied_at`; `false` when that schedule is no longer in force.
    pub async fn mark_schedule_written(
        &self,
        prv: &str,
        applied_at: DateTime<Utc>,
        hour: DateTime<Utc>,
        setting_m: f64,
    ) -> Result<bool, StoreError> {
        on_backend!(self, b => b.mark_schedule_written(prv, applied_at, hour, setting_m).await)
    }

    /// The stored PRV recommendations, by valve id.
    pub async fn prv_advice(&self) -> Result<Vec<PrvAdvice>, StoreError> {
        on_backend!(self, b => b.prv_advice().await)
    }

    /// One event with its grab samples and history (oldest first), if it exists.
    pub async fn event(&self, id: i64) -> Result<Option<EventDetail>, StoreError> {
        on_backend!(self, b => b.event_detail(id).await)
    }

    async fn event_after(&self, id: i64) -> Result<EventDetail, StoreError> {
        self.event(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("event {id}")))
    }

    /// `open → acknowledged` by `actor` at `at`, with an optional note in the history.
    /// [`StoreError::InvalidTransition`] unless the event is open (so of concurrent
    /// acknowledgements exactly one succeeds); [`StoreError::NotFound`] for an unknown id.
    pub async fn acknowledge_event(
        &self,
        id: i64,
        actor: &Actor,
        at: DateTime<Utc>,
        note: Option<&Note>,
    ) -> Result<EventDetail, StoreError> {
        on_backend!(self, b => b.acknowledge_event(id, actor, at, note).await)?;
        self.event_after(id).await
    }

    /// `open | acknowledged → resolved` with a class, a note and optionally a grab sample,
    /// all in one transaction. Resolving an open event acknowledges it implicitly (same actor
    /// and time; the history records it with `implicit: true`). Resolving a resolved event is
    /// [`StoreError::InvalidTransition`].
    pub async fn resolve_event(
        &self,
        id: i64,
        actor: &Actor,
        at: DateTime<Utc>,
        resolution: Resolution,
        note: &Note,
        sample: Option<&GrabSample>,
    ) -> Result<EventDetail, StoreError> {
        on_backend!(self, b => b.resolve_event(id, actor, at, resolution, note, sample).await)?;
        self.event_after(id).await
    }

    /// Attaches a grab sample to an event in any state, with a history entry.
    pub async fn add_event_sample(
        &self,
        id: i64,
        actor: &Actor,
        at: DateTime<Utc>,
        sample: &GrabSample,
    ) -> Result<StoredSample, StoreError> {
        let row = on_backend!(self, b => b.add_event_sample(id, actor, at, sample).await)?;
        Ok(StoredSample {
            id: row,
            event_id: id,
            sample: sample.clone(),
            entered_by: actor.name.clone(),
            entered_at: at,
        })
    }

    /// Follow-up KPIs of the events of `kinds` (every kind when empty) raised in `[from, to)`.
    pub async fn alert_kpis(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        kinds: &[EventKind],
    ) -> Result<AlertKpis, StoreError> {
        on_backend!(self, b => b.alert_kpis(from, to, kinds).await)
    }

    /// Creates a bearer token for `role` and returns it; only its hash is stored.
    pub async fn create_token(&self, role: Role, label: &str) -> Result<String, StoreError> {
        let token = on_backend!(self, b => b.create_token(role, label).await)?;
        self.audit(
            "cli",
            "token.create",
            Some(label),
            &serde_json::json!({ "role": role.as_str() }),
        )
        .await?;
        Ok(token)
    }

    /// Who `token` speaks for, if it is valid and not revoked.
    pub async fn principal(&self, token: &str) -> Result<Option<Principal>, StoreError> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        on_backend!(self, b => b.principal(token).await)
    }

    /// Appends to the audit log.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        on_backend!(self, b => b.audit(actor, action, target, detail).await)
    }

    /// Every device in the registry.
    pub async fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        on_backend!(self, b => b.devices().await)
    }

    /// Sets a device's status (registering it if new), with an audit record.
    pub async fn set_device_status(
        &self,
        device: &DeviceId,
        status: DeviceStatus,
        actor: &str,
    ) -> Result<(), StoreError> {
        on_backend!(self, b => b.set_device_status(device, status, actor).await)
    }

    /// Held-back uplinks of devices that have since been approved, oldest first: to be
    /// processed and committed with [`Batch::release_pending`].
    pub async fn pending_of_active_devices(
        &self,
        limit: i64,
    ) -> Result<Vec<(i64, PendingUplink)>, StoreError> {
        on_backend!(self, b => b.pending_of_active_devices(limit).await)
    }

    /// How many raw readings are stored (for tests and the demo's summary).
    pub async fn count_readings(&self) -> Result<i64, StoreError> {
        on_backend!(self, b => b.count_readings().await)
    }
}
