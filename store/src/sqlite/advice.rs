//! PRV recommendations on SQLite.

use sqlx::Row;

use super::{SqliteStore, from_micros, us};
use crate::advice::PrvAdvice;
use crate::error::StoreError;

impl SqliteStore {
    pub(crate) async fn replace_prv_advice(&self, all: &[PrvAdvice]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM prv_recommendations")
            .execute(&mut *tx)
            .await?;
        for a in all {
            sqlx::query(
                "INSERT INTO prv_recommendations (prv, dma, computed_at, body)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .bind(&a.prv)
            .bind(&a.dma)
            .bind(us(a.computed_at))
            .bind(a.body.to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn prv_advice(&self) -> Result<Vec<PrvAdvice>, StoreError> {
        let rows =
            sqlx::query("SELECT prv, dma, computed_at, body FROM prv_recommendations ORDER BY prv")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                let body: String = r.try_get("body")?;
                let prv: String = r.try_get("prv")?;
                let body = serde_json::from_str(&body).map_err(|e| {
                    StoreError::Conflict(format!(
                        "stored recommendation of PRV `{prv}` is not JSON: {e}"
                    ))
                })?;
                Ok(PrvAdvice {
                    prv,
                    dma: r.try_get("dma")?,
                    computed_at: from_micros(r.try_get("computed_at")?),
                    body,
                })
            })
            .collect()
    }
}
