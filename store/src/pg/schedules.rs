//! PRV schedules on PostgreSQL.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;
use waterline_core::HourlySchedule;

use super::{PgStore, audit_entry};
use crate::error::StoreError;
use crate::schedules::{PrvSchedule, ScheduleRow, ScheduleSource, audit_detail};

const COLUMNS: &str = "prv, hourly_setting_m, timezone, source, note, applied_by, applied_at, \
                       written_hour, written_m";

fn row(r: &PgRow) -> Result<PrvSchedule, StoreError> {
    ScheduleRow {
        prv: r.try_get("prv")?,
        hourly_setting_m: r.try_get("hourly_setting_m")?,
        timezone: r.try_get("timezone")?,
        source: r.try_get("source")?,
        note: r.try_get("note")?,
        applied_by: r.try_get("applied_by")?,
        applied_at: r.try_get("applied_at")?,
        written_hour: r.try_get("written_hour")?,
        written_m: r.try_get("written_m")?,
    }
    .into_stored()
}

impl PgStore {
    pub(crate) async fn put_prv_schedule(
        &self,
        prv: &str,
        schedule: &HourlySchedule,
        source: ScheduleSource,
        note: Option<&str>,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<PrvSchedule, StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO prv_schedules (prv, hourly_setting_m, timezone, source, note, applied_by,
                                        applied_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (prv) DO UPDATE SET
                 hourly_setting_m = EXCLUDED.hourly_setting_m, timezone = EXCLUDED.timezone,
                 source = EXCLUDED.source, note = EXCLUDED.note,
                 applied_by = EXCLUDED.applied_by, applied_at = EXCLUDED.applied_at,
                 written_hour = NULL, written_m = NULL
             RETURNING {COLUMNS}"
        )))
        .bind(prv)
        .bind(schedule.settings().to_vec())
        .bind(schedule.timezone().name())
        .bind(source.as_str())
        .bind(note)
        .bind(actor)
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        let stored = row(&r)?;
        audit_entry(
            &mut *tx,
            actor,
            "prv.schedule.apply",
            Some(prv),
            &audit_detail(schedule, source, note),
        )
        .await?;
        tx.commit().await?;
        Ok(stored)
    }

    pub(crate) async fn cancel_prv_schedule(
        &self,
        prv: &str,
        actor: &str,
        why: Option<&str>,
    ) -> Result<Option<PrvSchedule>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM prv_schedules WHERE prv = $1 RETURNING {COLUMNS}"
        )))
        .bind(prv)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(r) = r else {
            return Ok(None);
        };
        let stored = row(&r)?;
        let mut detail = audit_detail(&stored.schedule()?, stored.source, stored.note.as_deref());
        detail["why"] = serde_json::json!(why);
        audit_entry(&mut *tx, actor, "prv.schedule.cancel", Some(prv), &detail).await?;
        tx.commit().await?;
        Ok(Some(stored))
    }

    pub(crate) async fn prv_schedules(&self) -> Result<Vec<PrvSchedule>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM prv_schedules ORDER BY prv"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row).collect()
    }

    pub(crate) async fn mark_schedule_written(
        &self,
        prv: &str,
        applied_at: DateTime<Utc>,
        hour: DateTime<Utc>,
        setting_m: f64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE prv_schedules SET written_hour = $3, written_m = $4
             WHERE prv = $1 AND applied_at = $2",
        )
        .bind(prv)
        .bind(applied_at)
        .bind(hour)
        .bind(setting_m)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
