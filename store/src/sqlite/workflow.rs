//! The alert workflow on SQLite: conditional updates in one transaction per action (see
//! [`crate::workflow`] for the rules). Each transaction's first statement is a write, so it
//! takes SQLite's single write lock before it reads anything: concurrent transitions queue on
//! that lock (the busy timeout) and the later one finds the state already changed.

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Row, Sqlite, Transaction};
use waterline_core::{EventKind, GrabSample, Note, Resolution};

use super::{EVENT_COLUMNS, SqliteStore, event_from_row, opt_time, us};
use crate::error::StoreError;
use crate::rollup::from_micros;
use crate::workflow::{
    self, Actor, AlertKpis, CurrentState, EventDetail, HistoryAction, HistoryEntry, KpiRow,
    StoredSample,
};

type Tx<'a> = Transaction<'a, Sqlite>;

impl SqliteStore {
    pub(crate) async fn event_detail(&self, id: i64) -> Result<Option<EventDetail>, StoreError> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ?1");
        let Some(row) = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let event = event_from_row(&row)?;
        let samples = sqlx::query(
            "SELECT id, event_id, parameter, value, unit, sampled_at, sample_id, entered_by, entered_at
             FROM event_samples WHERE event_id = ?1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            let sample = GrabSample::new(
                r.try_get("parameter")?,
                r.try_get("value")?,
                r.try_get("unit")?,
                from_micros(r.try_get("sampled_at")?),
                r.try_get("sample_id")?,
            )
            .map_err(|e| StoreError::Conflict(format!("stored grab sample is invalid: {e}")))?;
            Ok(StoredSample {
                id: r.try_get("id")?,
                event_id: r.try_get("event_id")?,
                sample,
                entered_by: r.try_get("entered_by")?,
                entered_at: from_micros(r.try_get("entered_at")?),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        let history = sqlx::query(
            "SELECT id, at, actor, action, details FROM event_history WHERE event_id = ?1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(HistoryEntry {
                id: r.try_get("id")?,
                at: from_micros(r.try_get("at")?),
                actor: r.try_get("actor")?,
                action: HistoryAction::from_db(r.try_get("action")?)?,
                details: serde_json::from_str(r.try_get("details")?).map_err(|e| {
                    StoreError::Conflict(format!("stored history details are invalid: {e}"))
                })?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(EventDetail {
            event,
            samples,
            history,
        }))
    }

    pub(crate) async fn acknowledge_event(
        &self,
        id: i64,
        actor: &Actor,
        at: DateTime<Utc>,
        note: Option<&Note>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        if !mark_acknowledged(&mut tx, id, actor, at).await? {
            return Err(refusal(&mut tx, id, "acknowledge").await);
        }
        let d = workflow::details(actor, serde_json::json!({ "note": note }));
        history(&mut tx, id, at, actor, HistoryAction::Acknowledge, d).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn resolve_event(
        &self,
        id: i64,
        actor: &Actor,
        at: DateTime<Utc>,
        resolution: Resolution,
        note: &Note,
        sample: Option<&GrabSample>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let implicit = mark_acknowledged(&mut tx, id, actor, at).await?;
        let done = sqlx::query(
            "UPDATE events SET state = 'resolved', resolved_by = ?2, resolved_at = ?3,
                    resolution = ?4, resolution_note = ?5
             WHERE id = ?1 AND state = 'acknowledged'",
        )
        .bind(id)
        .bind(&actor.name)
        .bind(us(at))
        .bind(resolution.as_str())
        .bind(note.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 0 {
            return Err(refusal(&mut tx, id, "resolve").await);
        }
        if implicit {
            let d = workflow::details(actor, serde_json::json!({ "implicit": true }));
            history(&mut tx, id, at, actor, HistoryAction::Acknowledge, d).await?;
        }
        let sample_row = match sample {
            Some(s) => Some(insert_sample(&mut tx, id, actor, at, s).await?),
            None => None,
        };
        let d = workflow::details(
            actor,
            serde_json::json!({ "resolution": resolution, "note": note, "sample": sample_row }),
        );
        history(&mut tx, id, at, actor, HistoryAction::Resolve, d).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn add_event_sample(
        &self,
        id: i64,
        actor: &Actor,
        at: DateTime<Utc>,
        sample: &GrabSample,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = insert_sample(&mut tx, id, actor, at, sample).await?;
        tx.commit().await?;
        Ok(row)
    }

    pub(crate) async fn alert_kpis(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        kinds: &[EventKind],
    ) -> Result<AlertKpis, StoreError> {
        // The kinds are filtered by `workflow::kpis`.
        let rows = sqlx::query(
            "SELECT kind, detected_at, state, acknowledged_at, resolved_at, resolution FROM events
             WHERE detected_at >= ?1 AND detected_at < ?2",
        )
        .bind(us(from))
        .bind(us(to))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(KpiRow {
                kind: r.try_get("kind")?,
                detected_at: from_micros(r.try_get("detected_at")?),
                state: r.try_get("state")?,
                acknowledged_at: opt_time(r.try_get("acknowledged_at")?),
                resolved_at: opt_time(r.try_get("resolved_at")?),
                resolution: r.try_get("resolution")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        workflow::kpis(from, to, kinds, &rows)
    }
}

/// `open → acknowledged`; whether this call made the change.
async fn mark_acknowledged(
    tx: &mut Tx<'_>,
    id: i64,
    actor: &Actor,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = sqlx::query(
        "UPDATE events SET state = 'acknowledged', acknowledged_by = ?2, acknowledged_at = ?3
         WHERE id = ?1 AND state = 'open'",
    )
    .bind(id)
    .bind(&actor.name)
    .bind(us(at))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Why a conditional update matched nothing (the transaction is then rolled back).
async fn refusal(tx: &mut Tx<'_>, id: i64, action: &'static str) -> StoreError {
    let row = sqlx::query(
        "SELECT state, acknowledged_by, acknowledged_at, resolved_by, resolved_at FROM events WHERE id = ?1",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await;
    let current = match row {
        Ok(row) => row.map(|r| -> Result<CurrentState, sqlx::Error> {
            Ok(CurrentState {
                state: r.try_get("state")?,
                acknowledged_by: r.try_get("acknowledged_by")?,
                acknowledged_at: opt_time(r.try_get("acknowledged_at")?),
                resolved_by: r.try_get("resolved_by")?,
                resolved_at: opt_time(r.try_get("resolved_at")?),
            })
        }),
        Err(e) => return e.into(),
    };
    match current.transpose() {
        Ok(c) => workflow::refusal(id, action, c),
        Err(e) => e.into(),
    }
}

/// Stores a sample of event `id` with its history entry; `NotFound` when there is no such
/// event. (A write first, so that the transaction takes the write lock before reading.)
async fn insert_sample(
    tx: &mut Tx<'_>,
    id: i64,
    actor: &Actor,
    at: DateTime<Utc>,
    s: &GrabSample,
) -> Result<i64, StoreError> {
    let row: Option<i64> = sqlx::query_scalar(
        "INSERT INTO event_samples (event_id, parameter, value, unit, sampled_at, sample_id, entered_by, entered_at)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 WHERE EXISTS (SELECT 1 FROM events WHERE id = ?1)
         RETURNING id",
    )
    .bind(id)
    .bind(s.parameter())
    .bind(s.value())
    .bind(s.unit())
    .bind(us(s.sampled_at()))
    .bind(s.sample_id())
    .bind(&actor.name)
    .bind(us(at))
    .fetch_optional(&mut **tx)
    .await?;
    let row = row.ok_or_else(|| StoreError::NotFound(format!("event {id}")))?;
    let d = workflow::sample_details(actor, row, s);
    history(tx, id, at, actor, HistoryAction::Sample, d).await?;
    Ok(row)
}

async fn history(
    tx: &mut Tx<'_>,
    id: i64,
    at: DateTime<Utc>,
    actor: &Actor,
    action: HistoryAction,
    details: serde_json::Value,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO event_history (event_id, at, actor, action, details) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(id)
    .bind(us(at))
    .bind(&actor.name)
    .bind(action.as_str())
    .bind(details.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
