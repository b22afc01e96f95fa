//! PostgreSQL backend (plain, or with TimescaleDB). Batch writes use `UNNEST` arrays in one
//! transaction (a large batch's readings in two concurrent ones, then the rest); rollups are
//! maintained with the readings unless TimescaleDB's continuous aggregates do it. A batch is
//! first written as all new (plain `INSERT`, rollups aggregated in memory) and falls back to
//! `ON CONFLICT DO NOTHING` when it meets stored readings.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Postgres, Row, Transaction};
use waterline_core::{DeviceId, Event, EventKind, Network, Role, SensorId};

use crate::error::{StoreError, redact_url};
use crate::model::*;
use crate::rollup::Bucket;
use crate::token;

mod advice;
mod kpi;
mod samples;
mod schedules;
mod windows;
mod workflow;

/// Bounds a connection attempt to ten seconds.
async fn tokio_timeout<T>(
    fut: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or(Err(sqlx::Error::PoolTimedOut))
}

/// Inserts a batch of readings and counts the new ones (TimescaleDB keeps the rollups).
const INSERT_ONLY: &str = "WITH ins AS (
    INSERT INTO readings (series_id, time, value)
    SELECT * FROM UNNEST($1::int4[], $2::timestamptz[], $3::float8[])
    ON CONFLICT DO NOTHING
    RETURNING 1)
SELECT count(*) FROM ins";

/// Inserts a batch of readings and folds exactly the new ones (not the duplicates) into the
/// three rollups, in one statement: nothing travels back to the client but the count. Rollup
/// rows are written in (series, bucket) order so that concurrent writers lock them in the
/// same order. Built once, from one template per [`Bucket`].
static INSERT_WITH_ROLLUPS: LazyLock<String> = LazyLock::new(|| {
    let rollups: Vec<String> = Bucket::ALL
        .iter()
        .map(|b| {
            format!(
                "up_{t} AS (
    INSERT INTO {t} AS r (series_id, bucket, min, max, sum, count)
    SELECT series_id, date_bin('{w}', time, '1970-01-01 00:00:00+00'), min(value), max(value), sum(value), count(*)
    FROM ins GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (series_id, bucket) DO UPDATE SET
      min = LEAST(r.min, EXCLUDED.min), max = GREATEST(r.max, EXCLUDED.max),
      sum = r.sum + EXCLUDED.sum, count = r.count + EXCLUDED.count
)",
                t = b.table(),
                w = b.interval()
            )
        })
        .collect();
    format!(
        "WITH ins AS (
    INSERT INTO readings (series_id, time, value)
    SELECT * FROM UNNEST($1::int4[], $2::timestamptz[], $3::float8[])
    ON CONFLICT DO NOTHING
    RETURNING series_id, time, value
), {}
SELECT count(*) FROM ins",
        rollups.join(", ")
    )
});

/// The fast path for a batch with no reading stored before: a plain insert (half the index
/// work of `ON CONFLICT`, which probes the key before inserting it) and the rollups folded in
/// from the partial aggregates computed in memory ([`rollup::aggregate`]), in one statement.
/// A reading stored before fails it with a unique violation, and the batch takes the
/// `ON CONFLICT` path instead. Built once, from one template per [`Bucket`].
static INSERT_NEW_WITH_ROLLUPS: LazyLock<String> = LazyLock::new(|| {
    let rollups: Vec<String> = Bucket::ALL
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let p = 4 + 6 * i;
            format!(
                "up_{t} AS (
    INSERT INTO {t} AS r (series_id, bucket, min, max, sum, count)
    SELECT * FROM UNNEST(${p}::int4[], ${}::timestamptz[], ${}::float8[], ${}::float8[], ${}::float8[], ${}::int8[])
    ON CONFLICT (series_id, bucket) DO UPDATE SET
      min = LEAST(r.min, EXCLUDED.min), max = GREATEST(r.max, EXCLUDED.max),
      sum = r.sum + EXCLUDED.sum, count = r.count + EXCLUDED.count
)",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                t = b.table(),
            )
        })
        .collect();
    format!(
        "WITH ins AS (
    INSERT INTO readings (series_id, time, value)
    SELECT * FROM UNNEST($1::int4[], $2::timestamptz[], $3::float8[])
), {}
SELECT 1",
        rollups.join(", ")
    )
});

/// The fast path without service rollups (TimescaleDB keeps them).
const INSERT_NEW_ONLY: &str = "INSERT INTO readings (series_id, time, value)
    SELECT * FROM UNNEST($1::int4[], $2::timestamptz[], $3::float8[])";

/// From this many readings a batch's readings are written by two connections at once.
const PARALLEL_MIN_READINGS: usize = 4_000;

/// The columns [`event_from_row`] reads.
pub(crate) const EVENT_COLUMNS: &str =
    "id, kind, dma, sensor, station, sensors::text AS sensors, start_time, detected_at,
    end_time, severity, value, flow_m3h, confidence, message, state,
    acknowledged_by, acknowledged_at, resolved_by, resolved_at, resolution, resolution_note";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A PostgreSQL store.
#[derive(Debug, Clone)]
pub(crate) struct PgStore {
    pool: PgPool,
    service_rollups: bool,
    /// The last batch met readings stored before (a redelivery, a device re-sending an
    /// overlapping upload): the next one goes straight to the `ON CONFLICT` path rather than
    /// failing the fast path again. Cleared by a batch without duplicates.
    recent_duplicates: Arc<AtomicBool>,
}

impl PgStore {
    pub(crate) async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let opts: PgConnectOptions = url.parse().map_err(|e| StoreError::Connect {
            url: redact_url(url),
            source: e,
        })?;
        // One direct connection first: a refused or misaddressed server fails at once with
        // its real cause, instead of after the pool's acquire timeout.
        let probe = tokio_timeout(PgConnection::connect_with(&opts)).await;
        match probe {
            Ok(conn) => {
                let _ = conn.close().await;
            }
            Err(e) => {
                return Err(StoreError::Connect {
                    url: redact_url(url),
                    source: e,
                });
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Connect {
                url: redact_url(url),
                source: e,
            })?;
        Ok(Self {
            pool,
            service_rollups: true,
            recent_duplicates: Arc::new(AtomicBool::new(false)),
        })
    }

    pub(crate) async fn migrate(&mut self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        self.refresh_mode().await
    }

    pub(crate) async fn refresh_mode(&mut self) -> Result<(), StoreError> {
        let mode: String = sqlx::query_scalar("SELECT value FROM store_meta WHERE key = 'rollups'")
            .fetch_one(&self.pool)
            .await?;
        self.service_rollups = mode == "service";
        Ok(())
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) fn service_rollups(&self) -> bool {
        self.service_rollups
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) async fn upsert_described_sensors(&self, net: &Network) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for s in net.sensors.values() {
            sqlx::query(
                "INSERT INTO series (sensor, kind, unit, dma, station, role, alarm_low, alarm_high, resolution, described)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, true)
                 ON CONFLICT (sensor) DO UPDATE SET kind = EXCLUDED.kind, unit = EXCLUDED.unit,
                   dma = EXCLUDED.dma, station = EXCLUDED.station, role = EXCLUDED.role,
                   alarm_low = EXCLUDED.alarm_low, alarm_high = EXCLUDED.alarm_high,
                   resolution = EXCLUDED.resolution, described = true",
            )
            .bind(s.id.as_str())
            .bind(s.kind.as_str())
            .bind(s.unit.as_str())
            .bind(s.dma.as_ref().map(|d| d.as_str()))
            .bind(s.station.as_ref().map(|d| d.as_str()))
            .bind(s.role.map(|r| r.as_str()))
            .bind(s.alarm_low)
            .bind(s.alarm_high)
            .bind(s.resolution)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn register_sensors(&self, sensors: &[NewSensor]) -> Result<(), StoreError> {
        let ids: Vec<&str> = sensors.iter().map(|s| s.id.as_str()).collect();
        let units: Vec<&str> = sensors.iter().map(|s| s.unit.as_str()).collect();
        let devices: Vec<Option<&str>> = sensors
            .iter()
            .map(|s| s.device.as_ref().map(|d| d.as_str()))
            .collect();
        sqlx::query(
            "INSERT INTO series (sensor, unit, device)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[])
             ON CONFLICT (sensor) DO NOTHING",
        )
        .bind(&ids)
        .bind(&units)
        .bind(&devices)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn series_ids(
        &self,
        sensors: &[&SensorId],
    ) -> Result<HashMap<SensorId, i32>, StoreError> {
        let names: Vec<&str> = sensors.iter().map(|s| s.as_str()).collect();
        sqlx::query(
            "INSERT INTO series (sensor) SELECT * FROM UNNEST($1::text[]) ON CONFLICT (sensor) DO NOTHING",
        )
        .bind(&names)
        .execute(&self.pool)
        .await?;
        let rows = sqlx::query("SELECT id, sensor FROM series WHERE sensor = ANY($1)")
            .bind(&names)
            .fetch_all(&self.pool)
            .await?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in rows {
            let name: String = r.try_get("sensor")?;
            if let Ok(id) = SensorId::parse(name) {
                out.insert(id, r.try_get::<i32, _>("id")?);
            }
        }
        Ok(out)
    }

    pub(crate) async fn sensor_records(
        &self,
        only: Option<&SensorId>,
    ) -> Result<Vec<SensorRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.sensor, s.kind, s.unit, s.dma, s.station, s.role, s.described,
                    l.time AS last_time, l.value AS last_value
             FROM series s
             LEFT JOIN LATERAL (
                 SELECT time, value FROM readings r WHERE r.series_id = s.id
                 ORDER BY time DESC LIMIT 1
             ) l ON true
             WHERE $1::text IS NULL OR s.sensor = $1
             ORDER BY s.sensor",
        )
        .bind(only.map(|s| s.as_str()))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(SensorRecord {
                    id: r.try_get("sensor")?,
                    kind: r.try_get("kind")?,
                    unit: r.try_get("unit")?,
                    dma: r.try_get("dma")?,
                    station: r.try_get("station")?,
                    role: r.try_get("role")?,
                    described: r.try_get("described")?,
                    last_time: r.try_get("last_time")?,
                    last_value: r.try_get("last_value")?,
                })
            })
            .collect()
    }

    pub(crate) async fn commit_batch(
        &self,
        batch: &Batch,
        series: &HashMap<SensorId, i32>,
    ) -> Result<BatchOutcome, StoreError> {
        let rows: Vec<(i32, DateTime<Utc>, f64)> = batch
            .readings
            .iter()
            .map(|r| (series[&r.sensor], r.time, r.value))
            .collect();
        if rows.len() < PARALLEL_MIN_READINGS || self.pool.options().get_max_connections() < 2 {
            return self.commit_in_one(batch, rows).await;
        }
        // A large batch's readings go in two transactions at once, so that the server puts
        // two cores to the insert: the series of even id in one, odd in the other (disjoint
        // readings and rollup rows, so they never wait for each other). The batch's other
        // content follows once both have committed, so a retry after a failure repeats no
        // dead letter or held-back uplink; a retry may only find some readings stored
        // already, which the (series, time) key turns into duplicates.
        let (even, odd): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r.0 % 2 == 0);
        let (a, b) = tokio::join!(self.commit_readings(even), self.commit_readings(odd));
        let (a, b) = (a?, b?);
        let rest = self.commit_in_one(batch, Vec::new()).await?;
        Ok(BatchOutcome {
            inserted: a.inserted + b.inserted + rest.inserted,
            duplicates: a.duplicates + b.duplicates + rest.duplicates,
        })
    }

    /// Readings alone, in a transaction of their own.
    async fn commit_readings(
        &self,
        rows: Vec<(i32, DateTime<Utc>, f64)>,
    ) -> Result<BatchOutcome, StoreError> {
        if rows.is_empty() {
            return Ok(BatchOutcome::default());
        }
        let mut tx = self.pool.begin().await?;
        let outcome = self.insert_readings(&mut tx, rows).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// The whole batch in one transaction, with `rows` for its readings (none: the batch's
    /// other content alone; nothing to do when it has none).
    async fn commit_in_one(
        &self,
        batch: &Batch,
        rows: Vec<(i32, DateTime<Utc>, f64)>,
    ) -> Result<BatchOutcome, StoreError> {
        if rows.is_empty() && batch.holds_only_readings() {
            return Ok(BatchOutcome::default());
        }
        let mut tx = self.pool.begin().await?;
        upsert_devices(&mut tx, &batch.devices).await?;
        apply_states(&mut tx, &batch.states).await?;
        let outcome = self.insert_readings(&mut tx, rows).await?;
        insert_dead_letters(&mut tx, &batch.dead_letters).await?;
        insert_pending(&mut tx, &batch.pending).await?;
        if !batch.release_pending.is_empty() {
            sqlx::query("DELETE FROM pending_uplinks WHERE id = ANY($1)")
                .bind(&batch.release_pending)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    async fn insert_readings(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        mut rows: Vec<(i32, DateTime<Utc>, f64)>,
    ) -> Result<BatchOutcome, StoreError> {
        if rows.is_empty() {
            return Ok(BatchOutcome::default());
        }
        // One lock order for every writer: (series, time).
        rows.sort_by_key(|r| (r.0, r.1));
        let ids: Vec<i32> = rows.iter().map(|r| r.0).collect();
        let times: Vec<DateTime<Utc>> = rows.iter().map(|r| r.1).collect();
        let values: Vec<f64> = rows.iter().map(|r| r.2).collect();
        let repeats_inside = rows
            .windows(2)
            .any(|w| (w[0].0, w[0].1) == (w[1].0, w[1].1));
        if !repeats_inside && !self.recent_duplicates.load(Ordering::Relaxed) {
            // Under a savepoint: a unique violation undoes only this attempt.
            let mut attempt = (**tx).begin().await?;
            match self
                .insert_new(&mut attempt, &rows, &ids, &times, &values)
                .await
            {
                Ok(()) => {
                    attempt.commit().await?;
                    return Ok(BatchOutcome {
                        inserted: rows.len() as u64,
                        duplicates: 0,
                    });
                }
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    attempt.rollback().await?;
                    tracing::debug!(
                        readings = rows.len(),
                        "batch holds readings stored before; inserting it with ON CONFLICT"
                    );
                }
                Err(e) => return Err(e.into()),
            }
        }
        let sql: &'static str = if self.service_rollups {
            INSERT_WITH_ROLLUPS.as_str()
        } else {
            INSERT_ONLY
        };
        let inserted: i64 = sqlx::query_scalar(sql)
            .bind(&ids)
            .bind(&times)
            .bind(&values)
            .fetch_one(&mut **tx)
            .await?;
        let duplicates = (rows.len() as u64).saturating_sub(inserted as u64);
        self.recent_duplicates
            .store(duplicates > 0, Ordering::Relaxed);
        Ok(BatchOutcome {
            inserted: inserted as u64,
            duplicates,
        })
    }

    /// Inserts `rows` (sorted, none repeated), all of them new, and folds them into the
    /// service's rollups. Fails with a unique violation, having written nothing that survives
    /// the caller's savepoint, when any was stored before.
    async fn insert_new(
        &self,
        conn: &mut PgConnection,
        rows: &[(i32, DateTime<Utc>, f64)],
        ids: &[i32],
        times: &[DateTime<Utc>],
        values: &[f64],
    ) -> Result<(), sqlx::Error> {
        if !self.service_rollups {
            sqlx::query(INSERT_NEW_ONLY)
                .bind(ids)
                .bind(times)
                .bind(values)
                .execute(conn)
                .await?;
            return Ok(());
        }
        let micros: Vec<(i32, i64, f64)> = rows
            .iter()
            .map(|&(s, t, v)| (s, t.timestamp_micros(), v))
            .collect();
        let mut q = sqlx::query(INSERT_NEW_WITH_ROLLUPS.as_str())
            .bind(ids)
            .bind(times)
            .bind(values);
        for bucket in Bucket::ALL {
            let parts = crate::rollup::aggregate(&micros, bucket);
            let mut series = Vec::with_capacity(parts.len());
            let mut starts = Vec::with_capacity(parts.len());
            let mut mins = Vec::with_capacity(parts.len());
            let mut maxs = Vec::with_capacity(parts.len());
            let mut sums = Vec::with_capacity(parts.len());
            let mut counts = Vec::with_capacity(parts.len());
            for (&(s, start), p) in &parts {
                series.push(s);
                starts.push(crate::rollup::from_micros(start));
                mins.push(p.min);
                maxs.push(p.max);
                sums.push(p.sum);
                counts.push(p.count);
            }
            q = q
                .bind(series)
                .bind(starts)
                .bind(mins)
                .bind(maxs)
                .bind(sums)
                .bind(counts);
        }
        q.execute(conn).await?;
        Ok(())
    }

    pub(crate) async fn readings(
        &self,
        series_id: i32,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Point>, StoreError> {
        let rows = sqlx::query(
            "SELECT time, value FROM readings
             WHERE series_id = $1 AND time >= $2 AND time < $3 ORDER BY time LIMIT $4",
        )
        .bind(series_id)
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(Point {
                    time: r.try_get(0)?,
                    value: r.try_get(1)?,
                })
            })
            .collect()
    }

    pub(crate) async fn bucketed(
        &self,
        series_id: i32,
        bucket: Bucket,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<BucketPoint>, StoreError> {
        let sql = format!(
            "SELECT bucket, min, max, sum, count FROM {}
             WHERE series_id = $1 AND bucket >= $2 AND bucket < $3 ORDER BY bucket LIMIT $4",
            bucket.table()
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(series_id)
            .bind(bucket.floor(from))
            .bind(to)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                let sum: f64 = r.try_get(3)?;
                let count: i64 = r.try_get(4)?;
                Ok(BucketPoint {
                    time: r.try_get(0)?,
                    min: r.try_get(1)?,
                    max: r.try_get(2)?,
                    avg: sum / count.max(1) as f64,
                    count,
                })
            })
            .collect()
    }

    pub(crate) async fn dead_letters(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<StoredDeadLetter>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, received_at, source, topic, reason, payload FROM dead_letters
             WHERE received_at >= $1 AND received_at < $2 ORDER BY received_at, id LIMIT $3",
        )
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(StoredDeadLetter {
                    id: r.try_get(0)?,
                    letter: DeadLetter {
                        received_at: r.try_get(1)?,
                        source: r.try_get(2)?,
                        topic: r.try_get(3)?,
                        reason: r.try_get(4)?,
                        payload: r.try_get(5)?,
                    },
                })
            })
            .collect()
    }

    pub(crate) async fn insert_event(&self, e: &Event) -> Result<i64, StoreError> {
        let sensors = serde_json::to_value(&e.sensors).unwrap_or_default();
        let id = sqlx::query_scalar(
            "INSERT INTO events (kind, dma, sensor, station, sensors, start_time, detected_at, end_time,
                                 severity, value, flow_m3h, confidence, message)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
        )
        .bind(e.kind.as_str())
        .bind(e.dma.as_ref().map(|x| x.as_str()))
        .bind(e.sensor.as_ref().map(|x| x.as_str()))
        .bind(e.station.as_ref().map(|x| x.as_str()))
        .bind(sensors)
        .bind(e.start)
        .bind(e.detected_at)
        .bind(e.end)
        .bind(e.severity.map(|s| s.as_str()))
        .bind(e.value)
        .bind(e.flow_m3h)
        .bind(e.confidence)
        .bind(e.message.as_deref())
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    pub(crate) async fn events(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        kind: Option<EventKind>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events
             WHERE start_time < $2 AND (end_time IS NULL OR end_time >= $1)
               AND ($3::text IS NULL OR kind = $3)
             ORDER BY detected_at, id"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(from)
            .bind(to)
            .bind(kind.map(|k| k.as_str()))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    pub(crate) async fn create_token(&self, role: Role, label: &str) -> Result<String, StoreError> {
        let token = token::generate();
        sqlx::query("INSERT INTO api_tokens (token_hash, role, label) VALUES ($1, $2, $3)")
            .bind(token::hash(&token))
            .bind(role.as_str())
            .bind(label)
            .execute(&self.pool)
            .await?;
        Ok(token)
    }

    pub(crate) async fn principal(&self, token: &str) -> Result<Option<Principal>, StoreError> {
        let row = sqlx::query(
            "SELECT id, label, role FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(token::hash(token))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            crate::decode::principal(r.try_get(0)?, r.try_get(1)?, r.try_get::<String, _>(2)?)
        })
        .transpose()
    }

    pub(crate) async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        audit_entry(&self.pool, actor, action, target, detail).await
    }

    pub(crate) async fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, status, protocol, first_seen, last_seen, registered_by, registered_at,
                    rssi_dbm, snr_db, battery_percent, health_at,
                    online, online_at, valve, battery_low, meter_status_at
             FROM devices ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(DeviceRecord {
                    id: r.try_get(0)?,
                    status: DeviceStatus::from_db(r.try_get::<&str, _>(1)?),
                    protocol: r.try_get(2)?,
                    first_seen: r.try_get(3)?,
                    last_seen: r.try_get(4)?,
                    registered_by: r.try_get(5)?,
                    registered_at: r.try_get(6)?,
                    rssi_dbm: r.try_get(7)?,
                    snr_db: r.try_get(8)?,
                    battery_percent: r.try_get(9)?,
                    health_at: r.try_get(10)?,
                    online: r.try_get(11)?,
                    online_at: r.try_get(12)?,
                    valve: r.try_get(13)?,
                    battery_low: r.try_get(14)?,
                    meter_status_at: r.try_get(15)?,
                })
            })
            .collect()
    }

    pub(crate) async fn set_device_status(
        &self,
        device: &DeviceId,
        status: DeviceStatus,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO devices (id, status, updated_by, registered_by, registered_at)
             VALUES ($1, $2, $3, CASE WHEN $2 = 'active' THEN $3 END, CASE WHEN $2 = 'active' THEN now() END)
             ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, updated_by = EXCLUDED.updated_by,
               registered_by = COALESCE(devices.registered_by, EXCLUDED.registered_by),
               registered_at = COALESCE(devices.registered_at, EXCLUDED.registered_at)",
        )
        .bind(device.as_str())
        .bind(status.as_str())
        .bind(actor)
        .execute(&mut *tx)
        .await?;
        audit_entry(
            &mut *tx,
            actor,
            "device.status",
            Some(device.as_str()),
            &serde_json::json!({ "status": status.as_str() }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn pending_of_active_devices(
        &self,
        limit: i64,
    ) -> Result<Vec<(i64, PendingUplink)>, StoreError> {
        let rows = sqlx::query(
            "SELECT p.id, p.device, p.received_at, p.source, p.topic, p.payload
             FROM pending_uplinks p JOIN devices d ON d.id = p.device
             WHERE d.status = 'active' ORDER BY p.id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let Ok(device) = DeviceId::parse(r.try_get::<String, _>(1)?) else {
                continue;
            };
            out.push((
                r.try_get(0)?,
                PendingUplink {
                    device,
                    received_at: r.try_get(2)?,
                    source: r.try_get(3)?,
                    topic: r.try_get(4)?,
                    payload: r.try_get(5)?,
                },
            ));
        }
        Ok(out)
    }

    pub(crate) async fn count_readings(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM readings")
            .fetch_one(&self.pool)
            .await?)
    }
}

/// An `events` row (selected with [`EVENT_COLUMNS`]) as a stored event.
pub(crate) fn event_from_row(r: &sqlx::postgres::PgRow) -> Result<StoredEvent, StoreError> {
    crate::decode::stored_event(crate::decode::EventRow {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        dma: r.try_get("dma")?,
        sensor: r.try_get("sensor")?,
        station: r.try_get("station")?,
        sensors: r.try_get("sensors")?,
        start: r.try_get("start_time")?,
        detected_at: r.try_get("detected_at")?,
        end: r.try_get("end_time")?,
        severity: r.try_get("severity")?,
        value: r.try_get("value")?,
        flow_m3h: r.try_get("flow_m3h")?,
        confidence: r.try_get("confidence")?,
        message: r.try_get("message")?,
        state: r.try_get("state")?,
        acknowledged_by: r.try_get("acknowledged_by")?,
        acknowledged_at: r.try_get("acknowledged_at")?,
        resolved_by: r.try_get("resolved_by")?,
        resolved_at: r.try_get("resolved_at")?,
        resolution: r.try_get("resolution")?,
        resolution_note: r.try_get("resolution_note")?,
    })
}

async fn upsert_devices(
    tx: &mut Transaction<'_, Postgres>,
    devices: &[DeviceSeen],
) -> Result<(), StoreError> {
    if devices.is_empty() {
        return Ok(());
    }
    let merged = crate::decode::merge_devices(devices);
    let ids: Vec<&str> = merged.iter().map(|(d, _)| d.device.as_str()).collect();
    let statuses: Vec<&str> = merged
        .iter()
        .map(|(d, _)| d.status_if_new.as_str())
        .collect();
    let protocols: Vec<&str> = merged.iter().map(|(d, _)| d.protocol).collect();
    let first: Vec<DateTime<Utc>> = merged.iter().map(|(_, f)| *f).collect();
    let last: Vec<DateTime<Utc>> = merged.iter().map(|(d, _)| d.at).collect();
    let health = |f: fn(&waterline_core::codec::DeviceHealth) -> Option<f64>| -> Vec<Option<f64>> {
        merged
            .iter()
            .map(|(d, _)| d.health.as_ref().and_then(f))
            .collect()
    };
    let (rssi, snr, battery) = (
        health(|h| h.rssi_dbm),
        health(|h| h.snr_db),
        health(|h| h.battery_percent),
    );
    let health_at: Vec<Option<DateTime<Utc>>> =
        merged.iter().map(|(d, _)| d.health.map(|_| d.at)).collect();
    sqlx::query(
        "INSERT INTO devices (id, status, protocol, first_seen, last_seen, rssi_dbm, snr_db, battery_percent, health_at)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[],
                              $6::float8[], $7::float8[], $8::float8[], $9::timestamptz[])
         ON CONFLICT (id) DO UPDATE SET
           last_seen = GREATEST(devices.last_seen, EXCLUDED.last_seen),
           first_seen = COALESCE(devices.first_seen, EXCLUDED.first_seen),
           protocol = COALESCE(devices.protocol, EXCLUDED.protocol),
           rssi_dbm = CASE WHEN EXCLUDED.health_at >= COALESCE(devices.health_at, EXCLUDED.health_at) THEN EXCLUDED.rssi_dbm ELSE devices.rssi_dbm END,
           snr_db = CASE WHEN EXCLUDED.health_at >= COALESCE(devices.health_at, EXCLUDED.health_at) THEN EXCLUDED.snr_db ELSE devices.snr_db END,
           battery_percent = CASE WHEN EXCLUDED.health_at >= COALESCE(devices.health_at, EXCLUDED.health_at)
                                  THEN COALESCE(EXCLUDED.battery_percent, devices.battery_percent) ELSE devices.battery_percent END,
           health_at = GREATEST(devices.health_at, EXCLUDED.health_at)",
    )
    .bind(&ids)
    .bind(&statuses)
    .bind(&protocols)
    .bind(&first)
    .bind(&last)
    .bind(&rssi)
    .bind(&snr)
    .bind(&battery)
    .bind(&health_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Applies reported device states, each only when newer than the stored one.
async fn apply_states(
    tx: &mut Transaction<'_, Postgres>,
    states: &[DeviceState],
) -> Result<(), StoreError> {
    for s in states {
        match s {
            DeviceState::Presence { device, online, at } => {
                sqlx::query(
                    "UPDATE devices SET online = $2, online_at = $3
                     WHERE id = $1 AND (online_at IS NULL OR online_at <= $3)",
                )
                .bind(device.as_str())
                .bind(online)
                .bind(at)
                .execute(&mut **tx)
                .await?;
            }
            DeviceState::MeterStatus {
                device,
                valve,
                battery_low,
                at,
            } => {
                sqlx::query(
                    "UPDATE devices SET valve = $2, battery_low = $3, meter_status_at = $4
                     WHERE id = $1 AND (meter_status_at IS NULL OR meter_status_at <= $4)",
                )
                .bind(device.as_str())
                .bind(*valve)
                .bind(battery_low)
                .bind(at)
                .execute(&mut **tx)
                .await?;
            }
        }
    }
    Ok(())
}

async fn insert_dead_letters(
    tx: &mut Transaction<'_, Postgres>,
    letters: &[DeadLetter],
) -> Result<(), StoreError> {
    if letters.is_empty() {
        return Ok(());
    }
    let at: Vec<DateTime<Utc>> = letters.iter().map(|l| l.received_at).collect();
    let sources: Vec<&str> = letters.iter().map(|l| l.source.as_str()).collect();
    let topics: Vec<Option<&str>> = letters.iter().map(|l| l.topic.as_deref()).collect();
    let reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    let payloads: Vec<&[u8]> = letters.iter().map(|l| l.payload.as_slice()).collect();
    sqlx::query(
        "INSERT INTO dead_letters (received_at, source, topic, reason, payload)
         SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::bytea[])",
    )
    .bind(&at)
    .bind(&sources)
    .bind(&topics)
    .bind(&reasons)
    .bind(&payloads)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_pending(
    tx: &mut Transaction<'_, Postgres>,
    pending: &[PendingUplink],
) -> Result<(), StoreError> {
    for p in pending {
        sqlx::query(
            "INSERT INTO pending_uplinks (device, received_at, source, topic, payload) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(p.device.as_str())
        .bind(p.received_at)
        .bind(&p.source)
        .bind(p.topic.as_deref())
        .bind(&p.payload)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Appends one line to the audit log, on the pool or inside a caller's transaction (so that a
/// change and its audit entry commit together).
pub(crate) async fn audit_entry<'e, E>(
    executor: E,
    actor: &str,
    action: &str,
    target: Option<&str>,
    detail: &serde_json::Value,
) -> Result<(), StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    sqlx::query("INSERT INTO audit_log (actor, action, target, detail) VALUES ($1, $2, $3, $4)")
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(detail)
        .execute(executor)
        .await?;
    Ok(())
}
