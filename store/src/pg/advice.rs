//! PRV recommendations on PostgreSQL.

use sqlx::Row;

use super::PgStore;
use crate::advice::PrvAdvice;
use crate::error::StoreError;

impl PgStore {
    pub(crate) async fn replace_prv_advice(&self, all: &[PrvAdvice]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM prv_recommendations")
            .execute(&mut *tx)
            .await?;
        for a in all {
            sqlx::query(
                "INSERT INTO prv_recommendations (prv, dma, computed_at, body)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&a.prv)
            .bind(&a.dma)
            .bind(a.computed_at)
            .bind(&a.body)
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
                Ok(PrvAdvice {
                    prv: r.try_get("prv")?,
                    dma: r.try_get("dma")?,
                    computed_at: r.try_get("computed_at")?,
                    body: r.try_get("body")?,
                })
            })
            .collect()
    }
}
