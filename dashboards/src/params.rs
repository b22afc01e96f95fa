//! Query-parameter parsing with errors that name the parameter and the bad value.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use crate::error::ApiError;

/// Raw query parameters.
pub(crate) type Params = HashMap<String, String>;

/// An RFC 3339 time parameter, or `default` when absent.
pub(crate) fn time(
    p: &Params,
    name: &str,
    default: DateTime<Utc>,
) -> Result<DateTime<Utc>, ApiError> {
    match p.get(name) {
        None => Ok(default),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                ApiError::BadRequest(format!(
                    "`{name}`: `{s}` is not an RFC 3339 time with offset, e.g. 2026-11-27T02:00:00Z"
                ))
            }),
    }
}

/// A calendar-day parameter (`YYYY-MM-DD`), or `default` when absent.
pub(crate) fn date(p: &Params, name: &str, default: NaiveDate) -> Result<NaiveDate, ApiError> {
    match p.get(name) {
        None => Ok(default),
        Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .filter(|d| (1900..=9999).contains(&d.year_ce().1))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "`{name}`: `{s}` is not a day like 2026-11-27 (years 1900 to 9999)"
                ))
            }),
    }
}

/// An optional parameter parsed with `FromStr`, whose error is a message.
pub(crate) fn parsed<T>(p: &Params, name: &str) -> Result<Option<T>, ApiError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    p.get(name)
        .map(|s| {
            s.parse::<T>()
                .map_err(|e| ApiError::BadRequest(format!("`{name}`: {e}")))
        })
        .transpose()
}

/// A positive integer parameter no larger than `max`.
pub(crate) fn limit(p: &Params, default: i64, max: i64) -> Result<i64, ApiError> {
    match p.get("limit") {
        None => Ok(default),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::BadRequest(format!(
                "`limit`: `{s}` must be a whole number from 1 to {max}"
            ))),
        },
    }
}

/// Rejects an empty or inverted time range.
pub(crate) fn range(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<(), ApiError> {
    if from >= to {
        return Err(ApiError::BadRequest(format!(
            "`from` ({}) must be before `to` ({})",
            from.to_rfc3339(),
            to.to_rfc3339()
        )));
    }
    Ok(())
}

/// Rejects parameters the endpoint does not know (a typo would otherwise be silently ignored).
pub(crate) fn only(p: &Params, known: &[&str]) -> Result<(), ApiError> {
    match p.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(ApiError::BadRequest(format!(
            "unknown parameter `{k}`; this endpoint takes {}",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}
