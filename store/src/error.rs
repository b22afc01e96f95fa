//! Store errors, and whether retrying can help.

use chrono::{DateTime, SecondsFormat, Utc};
use waterline_core::EventState;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "database URL `{0}` is not supported; use postgres://USER@HOST:PORT/DB or sqlite://PATH"
    )]
    UnsupportedUrl(String),
    #[error("cannot connect to database {url}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("TimescaleDB set-up failed at `{step}`")]
    Timescale {
        step: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A workflow action the event's current state does not allow (acknowledging an event
    /// that is no longer open, resolving one already resolved).
    #[error("cannot {action} event {id}: it is already {}{}", .state.as_str(), since(.by, .at))]
    InvalidTransition {
        id: i64,
        action: &'static str,
        state: EventState,
        /// Who put it in that state, and when.
        by: Option<String>,
        at: Option<DateTime<Utc>>,
    },
}

/// ` (by NAME at TIME)`, or as much of it as is known.
fn since(by: &Option<String>, at: &Option<DateTime<Utc>>) -> String {
    let at = at.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true));
    match (by, at) {
        (Some(b), Some(t)) => format!(" (by {b} at {t})"),
        (Some(b), None) => format!(" (by {b})"),
        (None, Some(t)) => format!(" (at {t})"),
        (None, None) => String::new(),
    }
}

impl StoreError {
    /// Whether the same operation may succeed later (connection lost, server restarting,
    /// lock contention). Defaults to `false` so that logic errors never loop.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Connect { .. } => true,
            StoreError::Db(e) => sqlx_retryable(e),
            _ => false,
        }
    }
}

fn sqlx_retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // PostgreSQL: connection exceptions (08…), serialization failure, deadlock,
            // admin shutdown, crash shutdown, cannot connect now.
            code.starts_with("08")
                || matches!(&*code, "40001" | "40P01" | "57P01" | "57P02" | "57P03")
                // SQLite: SQLITE_BUSY, SQLITE_LOCKED (and their extended codes).
                || matches!(&*code, "5" | "6" | "261" | "517" | "262")
        }
        _ => false,
    }
}

/// `url` with any password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://wl:s3cret@db:5432/waterline"),
            "postgres://wl:***@db:5432/waterline"
        );
        assert_eq!(redact_url("postgres://wl@db/x"), "postgres://wl@db/x");
        assert_eq!(redact_url("sqlite://demo.db"), "sqlite://demo.db");
    }

    #[test]
    fn logic_errors_are_not_retryable() {
        assert!(!StoreError::NotFound("x".into()).is_retryable());
        assert!(StoreError::Db(sqlx::Error::PoolTimedOut).is_retryable());
        assert!(!StoreError::Db(sqlx::Error::RowNotFound).is_retryable());
    }
}
