//! Daily KPIs and the course of detected events on SQLite.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;
use waterline_core::Event;

use super::{SqliteStore, us};
use crate::error::StoreError;
use crate::kpi::{DailyKpi, KpiQuery, MonthlyKpi};

/// Rows per multi-row INSERT (6 parameters each, well under SQLite's 32 766).
const CHUNK: usize = 1000;

fn day_text(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

impl SqliteStore {
    pub(crate) async fn upsert_kpis(
        &self,
        kpis: &[DailyKpi],
        computed_at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut affected = 0;
        for chunk in kpis.chunks(CHUNK) {
            let mut b = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO kpi_daily (scope, subject, day, metric, value, computed_at) ",
            );
            b.push_values(chunk, |mut row, k| {
                row.push_bind(k.scope.as_str())
                    .push_bind(k.subject.as_str())
                    .push_bind(day_text(k.day))
                    .push_bind(k.metric.as_str())
                    .push_bind(k.value)
                    .push_bind(us(computed_at));
            });
            b.push(
                " ON CONFLICT (scope, subject, metric, day) DO UPDATE
                  SET value = excluded.value, computed_at = excluded.computed_at",
            );
            affected += b.build().execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(affected)
    }

    pub(crate) async fn kpis(&self, q: &KpiQuery) -> Result<Vec<DailyKpi>, StoreError> {
        let rows = sqlx::query(
            "SELECT subject, day, metric, value FROM kpi_daily
             WHERE scope = ?1 AND (?2 IS NULL OR subject = ?2)
               AND (?3 IS NULL OR metric = ?3) AND day BETWEEN ?4 AND ?5
             ORDER BY subject, metric, day LIMIT ?6",
        )
        .bind(q.scope.as_str())
        .bind(q.subject.as_deref())
        .bind(q.metric.as_deref())
        .bind(day_text(q.from))
        .bind(day_text(q.to))
        .bind(q.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let day: String = r.try_get("day")?;
                let day = NaiveDate::parse_from_str(&day, "%Y-%m-%d").map_err(|e| {
                    StoreError::Conflict(format!("stored KPI day `{day}` is invalid: {e}"))
                })?;
                Ok(DailyKpi {
                    scope: q.scope,
                    subject: r.try_get("subject")?,
                    day,
                    metric: r.try_get("metric")?,
                    value: r.try_get("value")?,
                })
            })
            .collect()
    }

    pub(crate) async fn upsert_monthly_kpis(
        &self,
        kpis: &[MonthlyKpi],
        computed_at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut affected = 0;
        for chunk in kpis.chunks(CHUNK) {
            let mut b = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO kpi_monthly (scope, subject, month, metric, value, note, computed_at) ",
            );
            b.push_values(chunk, |mut row, k| {
                row.push_bind(k.scope.as_str())
                    .push_bind(k.subject.as_str())
                    .push_bind(day_text(k.month))
                    .push_bind(k.metric.as_str())
                    .push_bind(k.value)
                    .push_bind(k.note.as_deref())
                    .push_bind(us(computed_at));
            });
            b.push(
                " ON CONFLICT (scope, subject, metric, month) DO UPDATE
                  SET value = excluded.value, note = excluded.note,
                      computed_at = excluded.computed_at",
            );
            affected += b.build().execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(affected)
    }

    pub(crate) async fn monthly_kpis(&self, q: &KpiQuery) -> Result<Vec<MonthlyKpi>, StoreError> {
        let rows = sqlx::query(
            "SELECT subject, month, metric, value, note FROM kpi_monthly
             WHERE scope = ?1 AND (?2 IS NULL OR subject = ?2)
               AND (?3 IS NULL OR metric = ?3) AND month BETWEEN ?4 AND ?5
             ORDER BY subject, metric, month LIMIT ?6",
        )
        .bind(q.scope.as_str())
        .bind(q.subject.as_deref())
        .bind(q.metric.as_deref())
        .bind(day_text(q.from))
        .bind(day_text(q.to))
        .bind(q.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let month: String = r.try_get("month")?;
                let month = NaiveDate::parse_from_str(&month, "%Y-%m-%d").map_err(|e| {
                    StoreError::Conflict(format!("stored KPI month `{month}` is invalid: {e}"))
                })?;
                Ok(MonthlyKpi {
                    scope: q.scope,
                    subject: r.try_get("subject")?,
                    month,
                    metric: r.try_get("metric")?,
                    value: r.try_get("value")?,
                    note: r.try_get("note")?,
                })
            })
            .collect()
    }

    pub(crate) async fn update_event_course(&self, id: i64, e: &Event) -> Result<(), StoreError> {
        let sensors = serde_json::to_string(&e.sensors).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "UPDATE events SET end_time = ?2, severity = ?3, value = ?4, flow_m3h = ?5,
                    confidence = ?6, message = ?7, sensors = ?8
             WHERE id = ?1",
        )
        .bind(id)
        .bind(e.end.map(us))
        .bind(e.severity.map(|s| s.as_str()))
        .bind(e.value)
        .bind(e.flow_m3h)
        .bind(e.confidence)
        .bind(e.message.as_deref())
        .bind(sensors)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
