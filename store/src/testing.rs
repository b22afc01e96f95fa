//! Fresh databases for tests (this crate's, and other crates' through the `testing` feature),
//! the same way the `waterline-tests` harness makes them: a new PostgreSQL database with a
//! unique name on the server named by `WATERLINE_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped when the [`TestDb`] is dropped, or
//! a new SQLite file in a temporary directory. Never a fixed port, never leftover state.

use sqlx::Connection;

use crate::{Store, StoreError, StoreOptions};

/// The PostgreSQL server tests use.
pub fn pg_admin_url() -> String {
    std::env::var("WATERLINE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database that exists for one test.
#[derive(Debug)]
pub enum TestDb {
    /// A PostgreSQL database, dropped (with `FORCE`) on drop.
    Postgres { name: String, url: String },
    /// A SQLite file, deleted with its directory on drop.
    Sqlite { dir: tempfile::TempDir, url: String },
}

/// A database name no other test run uses (process id, clock and a random number).
fn unique_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "wl_test_{}_{}_{}",
        std::process::id(),
        nanos,
        rand::random::<u32>()
    )
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let root = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{root}/{db}?{q}"),
        None => format!("{root}/{db}"),
    }
}

impl TestDb {
    /// Creates an empty database on the test server. Fails loudly when the server is
    /// unreachable: a missing server is a broken environment, not a reason to skip.
    pub async fn postgres() -> Result<TestDb, StoreError> {
        let admin = pg_admin_url();
        let name = unique_name();
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .map_err(|source| StoreError::Connect {
                url: crate::redact_url(&admin),
                source,
            })?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(TestDb::Postgres {
            url: with_database(&admin, &name),
            name,
        })
    }

    /// A new, empty SQLite file.
    pub fn sqlite() -> Result<TestDb, std::io::Error> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        Ok(TestDb::Sqlite { dir, url })
    }

    /// The database URL.
    pub fn url(&self) -> &str {
        match self {
            TestDb::Postgres { url, .. } | TestDb::Sqlite { url, .. } => url,
        }
    }

    /// Opens (and migrates) the store on this database. PostgreSQL runs without TimescaleDB
    /// so that the plain backend is what is tested.
    pub async fn store(&self) -> Result<Store, StoreError> {
        let opts = StoreOptions {
            use_timescale: false,
            ..StoreOptions::default()
        };
        Store::open(self.url(), opts).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let TestDb::Postgres { name, .. } = self else {
            return;
        };
        let admin = pg_admin_url();
        let name = name.clone();
        // A runtime of its own: Drop may run inside or outside one.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut c)
                    .await;
                }
            });
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
    }
}
