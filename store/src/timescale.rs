//! TimescaleDB features, used only when the extension is available on the server.
//!
//! Idempotent: safe to run at every start-up. It
//! 1. (in `Store::open`) creates the extension if the server offers it but this database does
//!    not have it yet — when that fails, the store runs on plain PostgreSQL with a warning;
//! 2. turns `readings` into a hypertable (7-day chunks, existing rows migrated);
//! 3. enables compression segmented by `series_id`, ordered by `time`, with a policy;
//! 4. replaces the service-maintained rollup tables by continuous aggregates with the same
//!    names and columns (`series_id, bucket, min, max, sum, count`), real-time
//!    (`materialized_only = false`), each with a refresh policy, and back-fills them;
//! 5. adds a retention policy on raw readings when one is configured;
//! 6. records `rollups = timescale` so that writers stop maintaining rollups themselves.
//!
//! Continuous aggregates cannot be created inside a transaction, so each step runs on its own.

use sqlx::{AssertSqlSafe, PgPool};

use crate::error::StoreError;
use crate::rollup::Bucket;

/// Continuous aggregates are refreshed over this many past days: later data does not reach
/// them until a manual refresh, and raw data must be retained longer than this.
pub const REFRESH_WINDOW_DAYS: u32 = 7;

/// What the TimescaleDB set-up should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimescaleOptions {
    /// Compress chunks older than this many days.
    pub compress_after_days: u32,
    /// Drop raw readings older than this many days; `None` keeps them forever. Rollups are kept.
    pub retain_raw_days: Option<u32>,
}

impl Default for TimescaleOptions {
    fn default() -> Self {
        Self {
            compress_after_days: 7,
            retain_raw_days: None,
        }
    }
}

/// Whether the server offers the extension, and whether it is created in this database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    NotAvailable,
    Available,
    Installed,
}

/// Asks the server whether TimescaleDB can be used.
pub(crate) async fn availability(pool: &PgPool) -> Result<Availability, StoreError> {
    let row: Option<(Option<String>,)> = sqlx::query_as(
        "SELECT installed_version FROM pg_available_extensions WHERE name = 'timescaledb'",
    )
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        None => Availability::NotAvailable,
        Some((None,)) => Availability::Available,
        Some((Some(_),)) => Availability::Installed,
    })
}

async fn step(pool: &PgPool, name: &'static str, sql: String) -> Result<(), StoreError> {
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(pool)
        .await
        .map_err(|source| StoreError::Timescale { step: name, source })?;
    Ok(())
}

/// Creates the extension in this database.
pub(crate) async fn create_extension(pool: &PgPool) -> Result<(), StoreError> {
    step(
        pool,
        "create extension",
        "CREATE EXTENSION IF NOT EXISTS timescaledb".into(),
    )
    .await
}

/// Applies the TimescaleDB layout. The extension exists in the database.
pub(crate) async fn enable(pool: &PgPool, opts: TimescaleOptions) -> Result<(), StoreError> {
    step(
        pool,
        "create hypertable",
        "SELECT create_hypertable('readings', 'time', chunk_time_interval => INTERVAL '7 days',
                                  migrate_data => true, if_not_exists => true)"
            .into(),
    )
    .await?;
    step(
        pool,
        "enable compression",
        "ALTER TABLE readings SET (timescaledb.compress,
             timescaledb.compress_segmentby = 'series_id', timescaledb.compress_orderby = 'time')"
            .into(),
    )
    .await?;
    // Replaced on every start so that a changed `compress_after_days` takes effect.
    step(
        pool,
        "compression policy",
        format!(
            "SELECT remove_compression_policy('readings', if_exists => true);
             SELECT add_compression_policy('readings', INTERVAL '{} days')",
            opts.compress_after_days
        ),
    )
    .await?;

    for bucket in Bucket::ALL {
        let t = bucket.table();
        let width = bucket.interval();
        // Step by step and re-entrant: each aggregate is marked ready in `store_meta` only
        // after its policy and back-fill, so a start interrupted anywhere finishes next time.
        let ready_key = format!("cagg_ready:{t}");
        let ready: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM store_meta WHERE key = $1)")
                .bind(&ready_key)
                .fetch_one(pool)
                .await?;
        if ready {
            continue;
        }
        let is_cagg: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM timescaledb_information.continuous_aggregates WHERE view_name = $1)",
        )
        .bind(t)
        .fetch_one(pool)
        .await?;
        if !is_cagg {
            step(
                pool,
                "drop service rollup",
                format!("DROP TABLE IF EXISTS {t}"),
            )
            .await?;
            step(
                pool,
                "create continuous aggregate",
                format!(
                    "CREATE MATERIALIZED VIEW {t}
                     WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
                     SELECT series_id, time_bucket(INTERVAL '{width}', time) AS bucket,
                            min(value) AS min, max(value) AS max, sum(value) AS sum, count(*) AS count
                     FROM readings GROUP BY series_id, time_bucket(INTERVAL '{width}', time)
                     WITH NO DATA"
                ),
            )
            .await?;
        }
        // Late batches (meters upload hours late) land inside the start offset.
        step(
            pool,
            "continuous aggregate policy",
            format!(
                "SELECT add_continuous_aggregate_policy('{t}',
                    start_offset => INTERVAL '{REFRESH_WINDOW_DAYS} days', end_offset => INTERVAL '{width}',
                    schedule_interval => INTERVAL '5 minutes', if_not_exists => true)"
            ),
        )
        .await?;
        step(
            pool,
            "back-fill continuous aggregate",
            format!("CALL refresh_continuous_aggregate('{t}', NULL, NULL)"),
        )
        .await?;
        sqlx::query(
            "INSERT INTO store_meta (key, value) VALUES ($1, 'true') ON CONFLICT (key) DO NOTHING",
        )
        .bind(&ready_key)
        .execute(pool)
        .await?;
    }
    step(
        pool,
        "record rollup mode",
        "UPDATE store_meta SET value = 'timescale' WHERE key = 'rollups'".into(),
    )
    .await?;

    match opts.retain_raw_days {
        Some(days) => {
            step(
                pool,
                "retention policy",
                format!(
                    "SELECT remove_retention_policy('readings', if_exists => true);
                     SELECT add_retention_policy('readings', INTERVAL '{days} days', if_not_exists => true)"
                ),
            )
            .await?
        }
        None => {
            step(
                pool,
                "retention policy",
                "SELECT remove_retention_policy('readings', if_exists => true)".into(),
            )
            .await?
        }
    }
    Ok(())
}
