//! The PRV schedule runner of `serve` and `demo`: every [`TICK`] it writes, for each hourly
//! schedule in force (`POST /api/v1/prvs/{id}/schedule`), the set point of the current local
//! hour when it has not been written yet — at the start of each hour, and again after a
//! restart or a failure. Each write goes through the same verified Modbus write as a
//! dispatcher's (write, read back) and is audited as `prv.schedule.write` by `scheduler`; a
//! failed write is audited once per hour (`prv.schedule.write.failed`), retried every tick,
//! and shown on `/health`.
//!
//! Several processes may share a database: each tick first takes the store's job lock, so
//! one process writes. The hour written is kept in the store with the schedule, so a restart
//! or another process does not write it again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use waterline_core::PrvId;
use waterline_core::health::HealthBoard;
use waterline_dashboards::SetpointWriter;
use waterline_store::{Store, StoreError};

/// How often schedules are checked.
pub const TICK: Duration = Duration::from_secs(20);
/// The job's name for the store's job lock.
const JOB: &str = "prv-schedule";
/// The component name on `/health`.
pub const COMPONENT: &str = "prv-schedule";
/// The actor of the runner's writes in the audit log.
const ACTOR: &str = "scheduler";

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tick {
    /// Schedules in force.
    pub in_force: usize,
    /// PRVs written: (id, set point m).
    pub written: Vec<(String, f64)>,
    /// PRVs whose write failed, with the error.
    pub failed: Vec<(String, String)>,
    /// Another process holds the lock: nothing was checked.
    pub skipped: bool,
}

/// The runner's memory: per PRV, the hour whose failure was already audited.
#[derive(Debug, Default)]
pub struct Runner {
    failed_hour: HashMap<String, DateTime<Utc>>,
}

impl Runner {
    /// Checks every schedule in force at `now` and writes what is due.
    pub async fn tick(
        &mut self,
        store: &Store,
        writer: &dyn SetpointWriter,
        now: DateTime<Utc>,
    ) -> Result<Tick, StoreError> {
        let Some(lock) = store.try_job_lock(JOB).await? else {
            return Ok(Tick {
                skipped: true,
                ..Tick::default()
            });
        };
        let result = self.write_due(store, writer, now).await;
        lock.release().await?;
        result
    }

    async fn write_due(
        &mut self,
        store: &Store,
        writer: &dyn SetpointWriter,
        now: DateTime<Utc>,
    ) -> Result<Tick, StoreError> {
        let schedules = store.prv_schedules().await?;
        let mut tick = Tick {
            in_force: schedules.len(),
            ..Tick::default()
        };
        for s in schedules {
            let plan = match s.schedule() {
                Ok(p) => p,
                Err(e) => {
                    tick.failed.push((s.prv.clone(), e.to_string()));
                    continue;
                }
            };
            let (setting, hour) = plan.due(now);
            if s.written_hour == Some(hour) && s.written_m == Some(setting) {
                continue;
            }
            let prv = match PrvId::parse(s.prv.as_str()) {
                Ok(p) => p,
                Err(e) => {
                    tick.failed.push((s.prv.clone(), e.to_string()));
                    continue;
                }
            };
            let mut detail = json!({
                "setting_m": setting,
                "hour_start": hour,
                "source": "schedule",
                "schedule_applied_at": s.applied_at,
                "schedule_applied_by": s.applied_by,
            });
            match writer.write(&prv, setting).await {
                Ok(w) => {
                    detail["target"] = json!(w.target);
                    detail["read_back_m"] = json!(w.read_back_m);
                    store
                        .audit(ACTOR, "prv.schedule.write", Some(&s.prv), &detail)
                        .await?;
                    store
                        .mark_schedule_written(&s.prv, s.applied_at, hour, setting)
                        .await?;
                    self.failed_hour.remove(&s.prv);
                    tracing::info!(prv = %s.prv, setting, target = %w.target, "scheduled PRV set point written");
                    tick.written.push((s.prv.clone(), setting));
                }
                Err(e) => {
                    if self.failed_hour.insert(s.prv.clone(), hour) != Some(hour) {
                        detail["error"] = json!(e.to_string());
                        store
                            .audit(ACTOR, "prv.schedule.write.failed", Some(&s.prv), &detail)
                            .await?;
                        tracing::warn!(prv = %s.prv, setting, error = %e, "scheduled PRV set point not written; retrying");
                    }
                    tick.failed.push((s.prv.clone(), e.to_string()));
                }
            }
        }
        Ok(tick)
    }
}

/// Runs the runner until `shutdown` turns true.
pub fn spawn(
    store: Store,
    writer: Arc<dyn SetpointWriter>,
    health: HealthBoard,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut runner = Runner::default();
        loop {
            match runner.tick(&store, writer.as_ref(), Utc::now()).await {
                Ok(t) if t.skipped => {
                    health.set(COMPONENT, true, "another process writes the schedules");
                }
                Ok(t) if t.failed.is_empty() => {
                    health.set(
                        COMPONENT,
                        true,
                        format!("{} schedule(s) in force, set points written", t.in_force),
                    );
                }
                Ok(t) => {
                    let which: Vec<String> =
                        t.failed.iter().map(|(p, e)| format!("{p}: {e}")).collect();
                    health.set(
                        COMPONENT,
                        false,
                        format!("set points not written: {}", which.join("; ")),
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "PRV schedules not checked");
                    health.set(COMPONENT, false, format!("store: {e}"));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use waterline_core::HourlySchedule;
    use waterline_dashboards::{SetpointError, SetpointWritten, WriteFuture};
    use waterline_store::ScheduleSource;
    use waterline_tests::SqliteDb;

    use super::*;

    /// A valve that is unreachable while `down` and records what reached it.
    #[derive(Debug, Default)]
    struct Valve {
        down: Mutex<bool>,
        written: Mutex<Vec<f64>>,
    }

    impl SetpointWriter for Valve {
        fn write<'a>(&'a self, _prv: &'a PrvId, setting_m: f64) -> WriteFuture<'a> {
            Box::pin(async move {
                if *self.down.lock().unwrap() {
                    return Err(SetpointError::Device("no answer from RTU-PRV-B".into()));
                }
                self.written.lock().unwrap().push(setting_m);
                Ok(SetpointWritten {
                    target: "RTU-PRV-B/RTU-PRV-B-prv-setpoint".into(),
                    read_back_m: setting_m,
                })
            })
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[tokio::test]
    async fn a_failed_write_is_audited_once_an_hour_and_retried() {
        let db = SqliteDb::create().unwrap();
        let store = db.store().await.unwrap();
        let hourly: Vec<f64> = (0..24).map(|h| 30.0 - f64::from(h % 12)).collect();
        // Shanghai is UTC+8: 01:10 UTC is 09:10 local, hour 9 (21 m).
        let plan = HourlySchedule::new(&hourly, "Asia/Shanghai").unwrap();
        store
            .put_prv_schedule(
                "PRV-B",
                &plan,
                ScheduleSource::Request,
                None,
                "disp",
                t("2026-03-02T00:00:00Z"),
            )
            .await
            .unwrap();
        let valve = Valve::default();
        *valve.down.lock().unwrap() = true;
        let mut runner = Runner::default();
        for minute in ["01:10", "01:11", "01:40"] {
            let now = t(&format!("2026-03-02T{minute}:00Z"));
            let tick = runner.tick(&store, &valve, now).await.unwrap();
            assert_eq!(tick.failed.len(), 1, "{tick:?}");
            assert!(tick.failed[0].1.contains("no answer"), "{tick:?}");
        }
        *valve.down.lock().unwrap() = false;
        let tick = runner
            .tick(&store, &valve, t("2026-03-02T01:41:00Z"))
            .await
            .unwrap();
        assert_eq!(tick.written, [("PRV-B".to_owned(), 21.0)]);
        // Down again in the next hour: a new failure is audited.
        *valve.down.lock().unwrap() = true;
        runner
            .tick(&store, &valve, t("2026-03-02T02:00:05Z"))
            .await
            .unwrap();
        assert_eq!(*valve.written.lock().unwrap(), [21.0]);

        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT action FROM audit_log WHERE actor = 'scheduler' ORDER BY id")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        let actions: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(
            actions,
            [
                "prv.schedule.write.failed",
                "prv.schedule.write",
                "prv.schedule.write.failed"
            ],
            "one failure audited per hour"
        );
    }
}
