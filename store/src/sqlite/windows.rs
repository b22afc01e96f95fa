//! Declared windows on SQLite. (The SQL is formatted only with the constant column list.)

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Row};
use waterline_core::{DeclaredWindow, WindowKind};

use super::{SqliteStore, audit_entry, from_micros, opt_time, us};
use crate::error::StoreError;
use crate::windows::{StoredWindow, WindowRow, audit_detail, subject_columns};

const COLUMNS: &str = "id, kind, dma, station, sensor, from_time, to_time, reason, declared_by, \
                       declared_at, withdrawn_by, withdrawn_at";

fn row(r: &SqliteRow) -> Result<StoredWindow, StoreError> {
    WindowRow {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        dma: r.try_get("dma")?,
        station: r.try_get("station")?,
        sensor: r.try_get("sensor")?,
        from: from_micros(r.try_get("from_time")?),
        to: from_micros(r.try_get("to_time")?),
        reason: r.try_get("reason")?,
        declared_by: r.try_get("declared_by")?,
        declared_at: from_micros(r.try_get("declared_at")?),
        withdrawn_by: r.try_get("withdrawn_by")?,
        withdrawn_at: opt_time(r.try_get("withdrawn_at")?),
    }
    .into_stored()
}

impl SqliteStore {
    pub(crate) async fn declare_window(
        &self,
        w: &DeclaredWindow,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<StoredWindow, StoreError> {
        let (dma, station, sensor) = subject_columns(&w.subject);
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO declared_windows (kind, dma, station, sensor, from_time, to_time, reason,
                                           declared_by, declared_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING {COLUMNS}"
        )))
        .bind(w.kind.as_str())
        .bind(dma)
        .bind(station)
        .bind(sensor)
        .bind(us(w.from))
        .bind(us(w.to))
        .bind(w.reason.as_str())
        .bind(actor)
        .bind(us(at))
        .fetch_one(&mut *tx)
        .await?;
        let stored = row(&r)?;
        audit_entry(
            &mut *tx,
            actor,
            "window.declare",
            Some(&format!("window {}", stored.id)),
            &audit_detail(w),
        )
        .await?;
        tx.commit().await?;
        Ok(stored)
    }

    pub(crate) async fn declared_windows(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        kind: Option<WindowKind>,
    ) -> Result<Vec<StoredWindow>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM declared_windows
             WHERE withdrawn_at IS NULL AND from_time < ?2 AND to_time > ?1
               AND (?3 IS NULL OR kind = ?3)
             ORDER BY from_time, id"
        )))
        .bind(us(from))
        .bind(us(to))
        .bind(kind.map(WindowKind::as_str))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row).collect()
    }

    pub(crate) async fn window(&self, id: i64) -> Result<Option<StoredWindow>, StoreError> {
        let r = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM declared_windows WHERE id = ?1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        r.as_ref().map(row).transpose()
    }

    pub(crate) async fn withdraw_window(
        &self,
        id: i64,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<StoredWindow, StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(AssertSqlSafe(format!(
            "UPDATE declared_windows SET withdrawn_by = ?2, withdrawn_at = ?3
             WHERE id = ?1 AND withdrawn_at IS NULL RETURNING {COLUMNS}"
        )))
        .bind(id)
        .bind(actor)
        .bind(us(at))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(r) = r else {
            drop(tx);
            return Err(match self.window(id).await? {
                None => StoreError::NotFound(format!("window {id}")),
                Some(w) => StoreError::Conflict(format!(
                    "window {id} was already withdrawn by {} at {}",
                    w.withdrawn_by.unwrap_or_default(),
                    w.withdrawn_at.map(|t| t.to_rfc3339()).unwrap_or_default()
                )),
            });
        };
        let stored = row(&r)?;
        audit_entry(
            &mut *tx,
            actor,
            "window.withdraw",
            Some(&format!("window {id}")),
            &audit_detail(&stored.window),
        )
        .await?;
        tx.commit().await?;
        Ok(stored)
    }
}
