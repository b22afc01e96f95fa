//! Embedded SQLite backend: the zero-setup store for `demo` and small sites. WAL journal,
//! `synchronous = FULL` (an acknowledged batch survives power loss), multi-row inserts in one
//! transaction, rollups maintained in that transaction.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row, Sqlite, Transaction};
use waterline_core::{DeviceId, Event, EventKind, Network, Role, SensorId};

use crate::error::StoreError;
use crate::model::*;
use crate::rollup::{self, Bucket, from_micros};
use crate::token;

mod advice;
mod kpi;
mod samples;
mod schedules;
mod windows;
mod workflow;

/// The columns [`event_from_row`] reads.
pub(crate) const EVENT_COLUMNS: &str =
    "id, kind, dma, sensor, station, sensors, start_time, detected_at,
    end_time, severity, value, flow_m3h, confidence, message, state,
    acknowledged_by, acknowledged_at, resolved_by, resolved_at, resolution, resolution_note";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Rows per multi-row INSERT (3 parameters each, well under SQLite's 32 766).
const CHUNK: usize = 500;

fn us(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn opt_time(v: Option<i64>) -> Option<DateTime<Utc>> {
    v.map(from_micros)
}

/// A SQLite store.
#[derive(Debug, Clone)]
pub(crate) struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub(crate) async fn connect(url: &str) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Connect {
                url: url.to_owned(),
                source: e,
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Connect {
                url: url.to_owned(),
                source: e,
            })?;
        Ok(Self { pool })
    }

    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
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
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1)
                 ON CONFLICT (sensor) DO UPDATE SET kind = excluded.kind, unit = excluded.unit,
                   dma = excluded.dma, station = excluded.station, role = excluded.role,
                   alarm_low = excluded.alarm_low, alarm_high = excluded.alarm_high,
                   resolution = excluded.resolution, described = 1",
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
        let mut tx = self.pool.begin().await?;
        for s in sensors {
            sqlx::query(
                "INSERT INTO series (sensor, unit, device) VALUES (?1, ?2, ?3) ON CONFLICT (sensor) DO NOTHING",
            )
            .bind(s.id.as_str())
            .bind(s.unit.as_str())
            .bind(s.device.as_ref().map(|d| d.as_str()))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn series_ids(
        &self,
        sensors: &[&SensorId],
    ) -> Result<HashMap<SensorId, i32>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut out = HashMap::with_capacity(sensors.len());
        for s in sensors {
            sqlx::query("INSERT INTO series (sensor) VALUES (?1) ON CONFLICT (sensor) DO NOTHING")
                .bind(s.as_str())
                .execute(&mut *tx)
                .await?;
            let id: i64 = sqlx::query_scalar("SELECT id FROM series WHERE sensor = ?1")
                .bind(s.as_str())
                .fetch_one(&mut *tx)
                .await?;
            out.insert((*s).clone(), id as i32);
        }
        tx.commit().await?;
        Ok(out)
    }

    pub(crate) async fn sensor_records(
        &self,
        only: Option<&SensorId>,
    ) -> Result<Vec<SensorRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.sensor, s.kind, s.unit, s.dma, s.station, s.role, s.described,
                    (SELECT time FROM readings r WHERE r.series_id = s.id ORDER BY time DESC LIMIT 1) AS last_time,
                    (SELECT value FROM readings r WHERE r.series_id = s.id ORDER BY time DESC LIMIT 1) AS last_value
             FROM series s
             WHERE ?1 IS NULL OR s.sensor = ?1
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
                    described: r.try_get::<i64, _>("described")? != 0,
                    last_time: opt_time(r.try_get("last_time")?),
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
        let mut tx = self.pool.begin().await?;
        for (d, first) in crate::decode::merge_devices(&batch.devices) {
            let h = d.health.unwrap_or_default();
            sqlx::query(
                "INSERT INTO devices (id, status, protocol, first_seen, last_seen, rssi_dbm, snr_db, battery_percent, health_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (id) DO UPDATE SET
                   last_seen = MAX(COALESCE(devices.last_seen, excluded.last_seen), excluded.last_seen),
                   first_seen = COALESCE(devices.first_seen, excluded.first_seen),
                   protocol = COALESCE(devices.protocol, excluded.protocol),
                   rssi_dbm = CASE WHEN excluded.health_at >= COALESCE(devices.health_at, excluded.health_at) THEN excluded.rssi_dbm ELSE devices.rssi_dbm END,
                   snr_db = CASE WHEN excluded.health_at >= COALESCE(devices.health_at, excluded.health_at) THEN excluded.snr_db ELSE devices.snr_db END,
                   battery_percent = CASE WHEN excluded.health_at >= COALESCE(devices.health_at, excluded.health_at)
                                          THEN COALESCE(excluded.battery_percent, devices.battery_percent) ELSE devices.battery_percent END,
                   health_at = MAX(COALESCE(devices.health_at, excluded.health_at), COALESCE(excluded.health_at, devices.health_at))",
            )
            .bind(d.device.as_str())
            .bind(d.status_if_new.as_str())
            .bind(d.protocol)
            .bind(us(first))
            .bind(us(d.at))
            .bind(h.rssi_dbm)
            .bind(h.snr_db)
            .bind(h.battery_percent)
            .bind(d.health.map(|_| us(d.at)))
            .execute(&mut *tx)
            .await?;
        }
        for s in &batch.states {
            match s {
                DeviceState::Presence { device, online, at } => {
                    sqlx::query(
                        "UPDATE devices SET online = ?2, online_at = ?3
                         WHERE id = ?1 AND (online_at IS NULL OR online_at <= ?3)",
                    )
                    .bind(device.as_str())
                    .bind(online)
                    .bind(us(*at))
                    .execute(&mut *tx)
                    .await?;
                }
                DeviceState::MeterStatus {
                    device,
                    valve,
                    battery_low,
                    at,
                } => {
                    sqlx::query(
                        "UPDATE devices SET valve = ?2, battery_low = ?3, meter_status_at = ?4
                         WHERE id = ?1 AND (meter_status_at IS NULL OR meter_status_at <= ?4)",
                    )
                    .bind(device.as_str())
                    .bind(*valve)
                    .bind(battery_low)
                    .bind(us(*at))
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        let outcome = insert_readings(&mut tx, &batch.readings, series).await?;
        for l in &batch.dead_letters {
            sqlx::query(
                "INSERT INTO dead_letters (received_at, source, topic, reason, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .bind(us(l.received_at))
            .bind(&l.source)
            .bind(l.topic.as_deref())
            .bind(&l.reason)
            .bind(&l.payload)
            .execute(&mut *tx)
            .await?;
        }
        for id in &batch.release_pending {
            sqlx::query("DELETE FROM pending_uplinks WHERE id = ?1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        for p in &batch.pending {
            sqlx::query(
                "INSERT INTO pending_uplinks (device, received_at, source, topic, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .bind(p.device.as_str())
            .bind(us(p.received_at))
            .bind(&p.source)
            .bind(p.topic.as_deref())
            .bind(&p.payload)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(outcome)
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
             WHERE series_id = ?1 AND time >= ?2 AND time < ?3 ORDER BY time LIMIT ?4",
        )
        .bind(series_id)
        .bind(us(from))
        .bind(us(to))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(Point {
                    time: from_micros(r.try_get(0)?),
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
             WHERE series_id = ?1 AND bucket >= ?2 AND bucket < ?3 ORDER BY bucket LIMIT ?4",
            bucket.table()
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(series_id)
            .bind(bucket.floor_micros(us(from)))
            .bind(us(to))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                let sum: f64 = r.try_get(3)?;
                let count: i64 = r.try_get(4)?;
                Ok(BucketPoint {
                    time: from_micros(r.try_get(0)?),
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
             WHERE received_at >= ?1 AND received_at < ?2 ORDER BY received_at, id LIMIT ?3",
        )
        .bind(us(from))
        .bind(us(to))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(StoredDeadLetter {
                    id: r.try_get(0)?,
                    letter: DeadLetter {
                        received_at: from_micros(r.try_get(1)?),
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
        let sensors = serde_json::to_string(&e.sensors).unwrap_or_else(|_| "[]".into());
        let id = sqlx::query_scalar(
            "INSERT INTO events (kind, dma, sensor, station, sensors, start_time, detected_at, end_time,
                                 severity, value, flow_m3h, confidence, message)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) RETURNING id",
        )
        .bind(e.kind.as_str())
        .bind(e.dma.as_ref().map(|x| x.as_str()))
        .bind(e.sensor.as_ref().map(|x| x.as_str()))
        .bind(e.station.as_ref().map(|x| x.as_str()))
        .bind(sensors)
        .bind(us(e.start))
        .bind(us(e.detected_at))
        .bind(e.end.map(us))
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
             WHERE start_time < ?2 AND (end_time IS NULL OR end_time >= ?1)
               AND (?3 IS NULL OR kind = ?3)
             ORDER BY detected_at, id"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(us(from))
            .bind(us(to))
            .bind(kind.map(|k| k.as_str()))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    pub(crate) async fn create_token(&self, role: Role, label: &str) -> Result<String, StoreError> {
        let token = token::generate();
        sqlx::query("INSERT INTO api_tokens (token_hash, role, label) VALUES (?1, ?2, ?3)")
            .bind(token::hash(&token))
            .bind(role.as_str())
            .bind(label)
            .execute(&self.pool)
            .await?;
        Ok(token)
    }

    pub(crate) async fn principal(&self, token: &str) -> Result<Option<Principal>, StoreError> {
        let row = sqlx::query(
            "SELECT id, label, role FROM api_tokens WHERE token_hash = ?1 AND revoked_at IS NULL",
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
                    first_seen: opt_time(r.try_get(3)?),
                    last_seen: opt_time(r.try_get(4)?),
                    registered_by: r.try_get(5)?,
                    registered_at: opt_time(r.try_get(6)?),
                    rssi_dbm: r.try_get(7)?,
                    snr_db: r.try_get(8)?,
                    battery_percent: r.try_get(9)?,
                    health_at: opt_time(r.try_get(10)?),
                    online: r.try_get(11)?,
                    online_at: opt_time(r.try_get(12)?),
                    valve: r.try_get(13)?,
                    battery_low: r.try_get(14)?,
                    meter_status_at: opt_time(r.try_get(15)?),
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
             VALUES (?1, ?2, ?3, CASE WHEN ?2 = 'active' THEN ?3 END, CASE WHEN ?2 = 'active' THEN ?4 END)
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, updated_by = excluded.updated_by,
               registered_by = COALESCE(devices.registered_by, excluded.registered_by),
               registered_at = COALESCE(devices.registered_at, excluded.registered_at)",
        )
        .bind(device.as_str())
        .bind(status.as_str())
        .bind(actor)
        .bind(us(Utc::now()))
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
             WHERE d.status = 'active' ORDER BY p.id LIMIT ?1",
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
                    received_at: from_micros(r.try_get(2)?),
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
pub(crate) fn event_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<StoredEvent, StoreError> {
    crate::decode::stored_event(crate::decode::EventRow {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        dma: r.try_get("dma")?,
        sensor: r.try_get("sensor")?,
        station: r.try_get("station")?,
        sensors: r.try_get("sensors")?,
        start: from_micros(r.try_get("start_time")?),
        detected_at: from_micros(r.try_get("detected_at")?),
        end: opt_time(r.try_get("end_time")?),
        severity: r.try_get("severity")?,
        value: r.try_get("value")?,
        flow_m3h: r.try_get("flow_m3h")?,
        confidence: r.try_get("confidence")?,
        message: r.try_get("message")?,
        state: r.try_get("state")?,
        acknowledged_by: r.try_get("acknowledged_by")?,
        acknowledged_at: opt_time(r.try_get("acknowledged_at")?),
        resolved_by: r.try_get("resolved_by")?,
        resolved_at: opt_time(r.try_get("resolved_at")?),
        resolution: r.try_get("resolution")?,
        resolution_note: r.try_get("resolution_note")?,
    })
}

async fn insert_readings(
    tx: &mut Transaction<'_, Sqlite>,
    readings: &[crate::Reading],
    series: &HashMap<SensorId, i32>,
) -> Result<BatchOutcome, StoreError> {
    if readings.is_empty() {
        return Ok(BatchOutcome::default());
    }
    let mut rows: Vec<(i32, i64, f64)> = readings
        .iter()
        .map(|r| (series[&r.sensor], us(r.time), r.value))
        .collect();
    rows.sort_by_key(|r| (r.0, r.1));
    let mut new_rows = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(CHUNK) {
        let mut sql = String::from("INSERT INTO readings (series_id, time, value) VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str("(?,?,?)");
        }
        sql.push_str(" ON CONFLICT DO NOTHING RETURNING series_id, time, value");
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for &(s, t, v) in chunk {
            q = q.bind(s).bind(t).bind(v);
        }
        for r in q.fetch_all(&mut **tx).await? {
            new_rows.push((
                r.try_get::<i64, _>(0)? as i32,
                r.try_get::<i64, _>(1)?,
                r.try_get::<f64, _>(2)?,
            ));
        }
    }
    for bucket in Bucket::ALL {
        for ((series, b), p) in rollup::aggregate(&new_rows, bucket) {
            let sql = format!(
                "INSERT INTO {t} (series_id, bucket, min, max, sum, count) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (series_id, bucket) DO UPDATE SET
                   min = MIN({t}.min, excluded.min), max = MAX({t}.max, excluded.max),
                   sum = {t}.sum + excluded.sum, count = {t}.count + excluded.count",
                t = bucket.table()
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(series)
                .bind(b)
                .bind(p.min)
                .bind(p.max)
                .bind(p.sum)
                .bind(p.count)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(BatchOutcome {
        inserted: new_rows.len() as u64,
        duplicates: (rows.len() - new_rows.len()) as u64,
    })
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
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    sqlx::query("INSERT INTO audit_log (actor, action, target, detail) VALUES (?1, ?2, ?3, ?4)")
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(detail.to_string())
        .execute(executor)
        .await?;
    Ok(())
}
