//! Station grab samples on PostgreSQL.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;
use waterline_core::{GrabSample, StationId};

use super::{PgStore, audit_entry};
use crate::error::StoreError;
use crate::samples::{SampleRow, StationSample, audit_detail};
use crate::workflow::Actor;

fn row(r: &PgRow) -> Result<StationSample, StoreError> {
    SampleRow {
        id: r.try_get("id")?,
        event_id: r.try_get("event_id")?,
        station: r.try_get("station")?,
        parameter: r.try_get("parameter")?,
        value: r.try_get("value")?,
        unit: r.try_get("unit")?,
        sampled_at: r.try_get("sampled_at")?,
        sample_id: r.try_get("sample_id")?,
        entered_by: r.try_get("entered_by")?,
        entered_at: r.try_get("entered_at")?,
    }
    .into_stored()
}

impl PgStore {
    pub(crate) async fn record_station_sample(
        &self,
        station: &StationId,
        sample: &GrabSample,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<StationSample, StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "INSERT INTO station_samples (station, parameter, value, unit, sampled_at, sample_id,
                                          entered_by, entered_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             RETURNING id, NULL::bigint AS event_id, station, parameter, value, unit, sampled_at,
                       sample_id, entered_by, entered_at",
        )
        .bind(station.as_str())
        .bind(sample.parameter())
        .bind(sample.value())
        .bind(sample.unit())
        .bind(sample.sampled_at())
        .bind(sample.sample_id())
        .bind(&actor.name)
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        let stored = row(&r)?;
        audit_entry(
            &mut *tx,
            &actor.name,
            "sample.record",
            Some(&format!("station {station}")),
            &audit_detail(actor, stored.id, station, sample),
        )
        .await?;
        tx.commit().await?;
        Ok(stored)
    }

    pub(crate) async fn station_samples(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        station: Option<&StationId>,
    ) -> Result<Vec<StationSample>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, NULL::bigint AS event_id, station, parameter, value, unit, sampled_at,
                    sample_id, entered_by, entered_at
             FROM station_samples
             WHERE sampled_at >= $1 AND sampled_at < $2 AND ($3::text IS NULL OR station = $3)
             UNION ALL
             SELECT s.id, s.event_id, e.station, s.parameter, s.value, s.unit, s.sampled_at,
                    s.sample_id, s.entered_by, s.entered_at
             FROM event_samples s JOIN events e ON e.id = s.event_id
             WHERE e.station IS NOT NULL AND s.sampled_at >= $1 AND s.sampled_at < $2
               AND ($3::text IS NULL OR e.station = $3)
             ORDER BY sampled_at, event_id NULLS FIRST, id",
        )
        .bind(from)
        .bind(to)
        .bind(station.map(StationId::as_str))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row).collect()
    }
}
