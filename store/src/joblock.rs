//! One process at a time for a scheduled job: several `serve` processes may share a database
//! (ingest scales out), but the analytics job must not run in two of them at once, or both
//! could store the same new event.
//!
//! On PostgreSQL, [`Store::try_job_lock`] takes a session-level advisory lock on a connection
//! held for the job's length; a process that does not get it skips that run. The lock goes
//! with the connection: [`JobLock::release`] unlocks it, and a lock dropped without release
//! (a panic) closes its connection, so a crashed or stuck holder never blocks the others
//! beyond its own life. On SQLite (one embedded store per process) the lock is always granted.

use sqlx::pool::PoolConnection;
use sqlx::{Postgres, Row};

use crate::Store;
use crate::error::StoreError;

/// The advisory-lock key of a job: FNV-1a of `waterline:<job>`, so every process derives the
/// same key from the same name.
fn key(job: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in "waterline:".bytes().chain(job.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// A held job lock.
#[derive(Debug)]
pub struct JobLock {
    held: Option<(PoolConnection<Postgres>, i64)>,
}

impl JobLock {
    /// Unlocks; the connection goes back to the pool.
    pub async fn release(mut self) -> Result<(), StoreError> {
        if let Some((mut conn, key)) = self.held.take() {
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(key)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

impl Drop for JobLock {
    fn drop(&mut self) {
        // Not released: close the connection (which ends the lock) instead of returning a
        // locked session to the pool.
        if let Some((conn, _)) = self.held.take() {
            drop(conn.detach());
        }
    }
}

impl Store {
    /// Takes the lock of `job` if no other process holds it (`None`: another does).
    pub async fn try_job_lock(&self, job: &str) -> Result<Option<JobLock>, StoreError> {
        let crate::Inner::Pg(pg) = &self.inner else {
            return Ok(Some(JobLock { held: None }));
        };
        let mut conn = pg.pool().acquire().await?;
        let key = key(job);
        let got: bool = sqlx::query("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        Ok(got.then(|| JobLock {
            held: Some((conn, key)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDb;

    #[test]
    fn keys_are_stable_and_distinct() {
        assert_eq!(key("analytics"), key("analytics"));
        assert_ne!(key("analytics"), key("retention"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_process_at_a_time_on_postgres() {
        let db = TestDb::postgres().await.unwrap();
        // Two stores = two processes' pools on the same database.
        let (a, b) = (db.store().await.unwrap(), db.store().await.unwrap());
        let lock = a.try_job_lock("analytics").await.unwrap().expect("free");
        assert!(
            b.try_job_lock("analytics").await.unwrap().is_none(),
            "held by a"
        );
        assert!(
            b.try_job_lock("other").await.unwrap().is_some(),
            "other jobs are free"
        );
        lock.release().await.unwrap();
        let again = b
            .try_job_lock("analytics")
            .await
            .unwrap()
            .expect("released");
        // Dropped without release (a panicking holder): its connection closes, the lock ends.
        drop(again);
        let mut freed = None;
        for _ in 0..50 {
            freed = a.try_job_lock("analytics").await.unwrap();
            if freed.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(freed.is_some(), "a dropped lock does not stay held");
    }

    #[tokio::test]
    async fn sqlite_always_grants_it() {
        let db = TestDb::sqlite().unwrap();
        let s = db.store().await.unwrap();
        let l1 = s.try_job_lock("analytics").await.unwrap();
        assert!(l1.is_some());
        l1.unwrap().release().await.unwrap();
    }
}
