//! The analytics scheduler of `serve` and `demo`: runs [`waterline_analytics::online`] now and
//! then every `[analytics] interval_secs`, and as data arrives — when ingest in this process
//! has stored new readings, at most once every `arrival_min_gap_secs` (so a burst reported by
//! its inlet RTU is an event within about a minute, not at the next interval) — the
//! CPU-bound analysis on a blocking thread so that
//! ingest and HTTP keep their runtime. A failed run is logged, counted and reported on
//! `/health`; the next run tries again. Shutdown waits for a run in progress to finish writing.
//!
//! Several processes may share a database with the job enabled: each run first takes the
//! store's job lock ([`waterline_store::JobLock`]), and a process that does not get it skips
//! that run, so the job never runs twice at once (which could store a new event twice).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use waterline_analytics::online::{self, OnlineConfig, OnlineError, RunReport, Window};
use waterline_core::Network;
use waterline_core::health::HealthBoard;
use waterline_store::Store;

use crate::config::AnalyticsConfig;

/// The job's name for the store's job lock.
const JOB: &str = "analytics";

/// The component name on `/health`.
pub const COMPONENT: &str = "analytics";

/// One run at the current time, analysing off the async runtime.
async fn run(
    store: &Store,
    network: &Arc<Network>,
    cfg: OnlineConfig,
) -> Result<RunReport, OnlineError> {
    let now = Utc::now();
    let window = Window::ending_at(network.timezone, now, cfg.lookback_days);
    let started = Instant::now();
    let inputs = online::load(store, network, window).await?;
    let loaded = Instant::now();
    let net = Arc::clone(network);
    let found = tokio::task::spawn_blocking(move || online::analyse(&inputs, &net, &cfg, window))
        .await
        .map_err(|e| OnlineError::Task(e.to_string()))??;
    let analysed = Instant::now();
    let recorded = online::record(store, network, &found, window, now).await?;
    Ok(RunReport {
        window,
        readings: found.readings,
        recorded,
        load: loaded - started,
        analyse: analysed - loaded,
        record: analysed.elapsed(),
    })
}

fn report(health: &HealthBoard, result: &Result<RunReport, OnlineError>, took: Duration) {
    metrics::histogram!("waterline_analytics_run_seconds").record(took.as_secs_f64());
    match result {
        Ok(r) => {
            metrics::counter!("waterline_analytics_runs_total", "outcome" => "ok").increment(1);
            let e = r.recorded.events;
            for (action, n) in [("inserted", e.inserted), ("updated", e.updated)] {
                metrics::counter!("waterline_analytics_events_total", "action" => action)
                    .increment(n as u64);
            }
            metrics::gauge!("waterline_analytics_last_success_timestamp_seconds")
                .set(Utc::now().timestamp() as f64);
            tracing::info!(
                readings = r.readings,
                from = %r.window.from,
                new_events = e.inserted,
                updated_events = e.updated,
                kpis = r.recorded.kpis,
                monthly_kpis = r.recorded.monthly_kpis,
                prv_recommendations = r.recorded.prv_advice,
                load_s = r.load.as_secs_f64(),
                analyse_s = r.analyse.as_secs_f64(),
                record_s = r.record.as_secs_f64(),
                "analytics run done"
            );
            health.set(
                COMPONENT,
                true,
                format!(
                    "last run: {} readings, {} new and {} updated events",
                    r.readings, e.inserted, e.updated
                ),
            );
        }
        Err(err) => {
            metrics::counter!("waterline_analytics_runs_total", "outcome" => "error").increment(1);
            tracing::warn!(error = %err, "analytics run failed; retrying at the next interval");
            health.set(COMPONENT, false, err.to_string());
        }
    }
}

/// Waits until ingest reports newly stored readings (true), or forever without a feed (ingest
/// elsewhere or off) or once the feed is gone (false, after its sender is dropped).
async fn new_readings(arrived: &mut Option<watch::Receiver<u64>>) -> bool {
    let Some(rx) = arrived.as_mut() else {
        return std::future::pending().await;
    };
    if rx.changed().await.is_err() {
        *arrived = None;
        return false;
    }
    true
}

/// Starts the scheduler; it stops when `shutdown` turns true.
pub fn spawn(
    store: Store,
    network: Network,
    cfg: &AnalyticsConfig,
    health: HealthBoard,
    mut shutdown: watch::Receiver<bool>,
    mut arrived: Option<watch::Receiver<u64>>,
) -> JoinHandle<()> {
    let online = OnlineConfig {
        lookback_days: cfg.lookback_days,
        ..OnlineConfig::default()
    };
    let interval = Duration::from_secs(cfg.interval_secs);
    let min_gap = Duration::from_secs(cfg.arrival_min_gap_secs);
    let network = Arc::new(network);
    health.set(COMPONENT, true, "first run pending");
    tokio::spawn(async move {
        loop {
            if *shutdown.borrow() {
                break;
            }
            let started = Instant::now();
            match store.try_job_lock(JOB).await {
                Ok(Some(lock)) => {
                    let result = run(&store, &network, online).await;
                    if let Err(e) = lock.release().await {
                        tracing::warn!(error = %e, "could not release the analytics job lock");
                    }
                    report(&health, &result, started.elapsed());
                }
                Ok(None) => {
                    metrics::counter!("waterline_analytics_runs_total", "outcome" => "skipped")
                        .increment(1);
                    tracing::debug!("analytics run skipped: another process is running it");
                    health.set(COMPONENT, true, "skipped: another process runs the job now");
                }
                Err(e) => report(&health, &Err(e.into()), started.elapsed()),
            }
            // Readings stored during this run count as news for the next one.
            tokio::select! {
                _ = tokio::time::sleep(interval.saturating_sub(started.elapsed())) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break; // the process is going away
                    }
                }
                arrival = new_readings(&mut arrived) => {
                    if arrival {
                        // Let more of the same upload arrive, and keep runs `min_gap` apart;
                        // never later than the scheduled run would have been.
                        let wait = min_gap.min(interval).saturating_sub(started.elapsed());
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = shutdown.changed() => {}
                        }
                        metrics::counter!("waterline_analytics_arrival_triggers_total").increment(1);
                    }
                }
            }
        }
    })
}
