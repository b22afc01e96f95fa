//! Daily KPIs and the course of detected events on PostgreSQL.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;
use waterline_core::Event;

use super::PgStore;
use crate::error::StoreError;
use crate::kpi::{DailyKpi, KpiQuery, MonthlyKpi};

impl PgStore {
    pub(crate) async fn upsert_kpis(
        &self,
        kpis: &[DailyKpi],
        computed_at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let scope: Vec<&str> = kpis.iter().map(|k| k.scope.as_str()).collect();
        let subject: Vec<&str> = kpis.iter().map(|k| k.subject.as_str()).collect();
        let day: Vec<NaiveDate> = kpis.iter().map(|k| k.day).collect();
        let metric: Vec<&str> = kpis.iter().map(|k| k.metric.as_str()).collect();
        let value: Vec<Option<f64>> = kpis.iter().map(|k| k.value).collect();
        let done = sqlx::query(
            "INSERT INTO kpi_daily (scope, subject, day, metric, value, computed_at)
             SELECT *, $6 FROM UNNEST($1::text[], $2::text[], $3::date[], $4::text[], $5::float8[])
             ON CONFLICT (scope, subject, metric, day) DO UPDATE
               SET value = EXCLUDED.value, computed_at = EXCLUDED.computed_at",
        )
        .bind(scope)
        .bind(subject)
        .bind(day)
        .bind(metric)
        .bind(value)
        .bind(computed_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    pub(crate) async fn kpis(&self, q: &KpiQuery) -> Result<Vec<DailyKpi>, StoreError> {
        let rows = sqlx::query(
            "SELECT subject, day, metric, value FROM kpi_daily
             WHERE scope = $1 AND ($2::text IS NULL OR subject = $2)
               AND ($3::text IS NULL OR metric = $3) AND day BETWEEN $4 AND $5
             ORDER BY subject, metric, day LIMIT $6",
        )
        .bind(q.scope.as_str())
        .bind(q.subject.as_deref())
        .bind(q.metric.as_deref())
        .bind(q.from)
        .bind(q.to)
        .bind(q.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DailyKpi {
                    scope: q.scope,
                    subject: r.try_get("subject")?,
                    day: r.try_get("day")?,
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
        let scope: Vec<&str> = kpis.iter().map(|k| k.scope.as_str()).collect();
        let subject: Vec<&str> = kpis.iter().map(|k| k.subject.as_str()).collect();
        let month: Vec<NaiveDate> = kpis.iter().map(|k| k.month).collect();
        let metric: Vec<&str> = kpis.iter().map(|k| k.metric.as_str()).collect();
        let value: Vec<Option<f64>> = kpis.iter().map(|k| k.value).collect();
        let note: Vec<Option<&str>> = kpis.iter().map(|k| k.note.as_deref()).collect();
        let done = sqlx::query(
            "INSERT INTO kpi_monthly (scope, subject, month, metric, value, note, computed_at)
             SELECT *, $7 FROM UNNEST($1::text[], $2::text[], $3::date[], $4::text[],
                                      $5::float8[], $6::text[])
             ON CONFLICT (scope, subject, metric, month) DO UPDATE
               SET value = EXCLUDED.value, note = EXCLUDED.note,
                   computed_at = EXCLUDED.computed_at",
        )
        .bind(scope)
        .bind(subject)
        .bind(month)
        .bind(metric)
        .bind(value)
        .bind(note)
        .bind(computed_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    pub(crate) async fn monthly_kpis(&self, q: &KpiQuery) -> Result<Vec<MonthlyKpi>, StoreError> {
        let rows = sqlx::query(
            "SELECT subject, month, metric, value, note FROM kpi_monthly
             WHERE scope = $1 AND ($2::text IS NULL OR subject = $2)
               AND ($3::text IS NULL OR metric = $3) AND month BETWEEN $4 AND $5
             ORDER BY subject, metric, month LIMIT $6",
        )
        .bind(q.scope.as_str())
        .bind(q.subject.as_deref())
        .bind(q.metric.as_deref())
        .bind(q.from)
        .bind(q.to)
        .bind(q.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MonthlyKpi {
                    scope: q.scope,
                    subject: r.try_get("subject")?,
                    month: r.try_get("month")?,
                    metric: r.try_get("metric")?,
                    value: r.try_get("value")?,
                    note: r.try_get("note")?,
                })
            })
            .collect()
    }

    pub(crate) async fn update_event_course(&self, id: i64, e: &Event) -> Result<(), StoreError> {
        let sensors = serde_json::to_value(&e.sensors).unwrap_or_default();
        sqlx::query(
            "UPDATE events SET end_time = $2, severity = $3, value = $4, flow_m3h = $5,
                    confidence = $6, message = $7, sensors = $8
             WHERE id = $1",
        )
        .bind(id)
        .bind(e.end)
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
