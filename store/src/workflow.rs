//! The alert workflow's records and the parts of it that need no SQL.
//!
//! An event moves `open → acknowledged → resolved`. Both backends apply a transition with a
//! conditional `UPDATE … WHERE id = ? AND state = ?` inside a transaction, so of two people
//! acting at once exactly one succeeds; the other gets [`StoreError::InvalidTransition`].
//! Resolving an open event acknowledges it implicitly in the same transaction (the resolver
//! becomes the acknowledger, at the same instant, and the history says `implicit`), so every
//! resolved event has a time to acknowledge. Grab samples may be attached in any state.
//! Every transition and sample appends an [`HistoryEntry`].
//!
//! Main types: [`Actor`], [`EventDetail`], [`StoredSample`], [`HistoryEntry`], [`AlertKpis`]
//! (computed by [`kpis`] from [`KpiRow`]s that the backends read).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use waterline_core::{EventKind, EventState, GrabSample, Resolution, Role};

use crate::error::StoreError;
use crate::model::StoredEvent;

/// Who performs a workflow action: the name recorded as `acknowledged_by`, `resolved_by`,
/// `entered_by` and in the history, the role they acted in and, for API callers, the id of
/// their token (names are labels and need not be unique; the token id is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub role: Role,
    pub token_id: Option<i64>,
}

/// What a history entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HistoryAction {
    Acknowledge,
    Resolve,
    Sample,
}

impl HistoryAction {
    /// The name stored and answered.
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryAction::Acknowledge => "acknowledge",
            HistoryAction::Resolve => "resolve",
            HistoryAction::Sample => "sample",
        }
    }

    pub(crate) fn from_db(s: &str) -> Result<Self, StoreError> {
        match s {
            "acknowledge" => Ok(HistoryAction::Acknowledge),
            "resolve" => Ok(HistoryAction::Resolve),
            "sample" => Ok(HistoryAction::Sample),
            _ => Err(StoreError::Conflict(format!(
                "stored history action `{s}` is invalid"
            ))),
        }
    }
}

/// One line of an event's audit trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: HistoryAction,
    /// `role` and `token_id` (when known), plus per action: `note` and `implicit` (acknowledge); `resolution`, `note` and
    /// `sample` (resolve); `sample`, `parameter`, `value`, `unit`, `sample_id` (sample).
    pub details: serde_json::Value,
}

/// A grab sample as stored, with who entered it and when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredSample {
    pub id: i64,
    pub event_id: i64,
    #[serde(flatten)]
    pub sample: GrabSample,
    pub entered_by: String,
    pub entered_at: DateTime<Utc>,
}

/// One event with its samples and history, both oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventDetail {
    #[serde(flatten)]
    pub event: StoredEvent,
    pub samples: Vec<StoredSample>,
    pub history: Vec<HistoryEntry>,
}

/// The history details of an action.
pub(crate) fn details(actor: &Actor, extra: serde_json::Value) -> serde_json::Value {
    let mut d = serde_json::json!({ "role": actor.role.as_str(), "token_id": actor.token_id });
    if let (Some(d), serde_json::Value::Object(extra)) = (d.as_object_mut(), extra) {
        d.extend(extra);
    }
    if let Some(d) = d.as_object_mut() {
        d.retain(|_, v| !v.is_null());
    }
    d
}

/// The history details of a stored sample.
pub(crate) fn sample_details(actor: &Actor, row_id: i64, s: &GrabSample) -> serde_json::Value {
    details(
        actor,
        serde_json::json!({
            "sample": row_id,
            "parameter": s.parameter(),
            "value": s.value(),
            "unit": s.unit(),
            "sample_id": s.sample_id(),
        }),
    )
}

/// The lifecycle columns of an event, read when a conditional update matched no row.
#[derive(Debug, Clone)]
pub(crate) struct CurrentState {
    pub(crate) state: String,
    pub(crate) acknowledged_by: Option<String>,
    pub(crate) acknowledged_at: Option<DateTime<Utc>>,
    pub(crate) resolved_by: Option<String>,
    pub(crate) resolved_at: Option<DateTime<Utc>>,
}

/// Why `action` on event `id` was refused: it does not exist, or its state forbids it.
pub(crate) fn refusal(id: i64, action: &'static str, current: Option<CurrentState>) -> StoreError {
    let Some(c) = current else {
        return StoreError::NotFound(format!("event {id}"));
    };
    let state = match c.state.parse::<EventState>() {
        Ok(s) => s,
        Err(e) => return StoreError::Conflict(format!("stored event state is invalid: {e}")),
    };
    let (by, at) = match state {
        EventState::Resolved => (c.resolved_by, c.resolved_at),
        EventState::Acknowledged => (c.acknowledged_by, c.acknowledged_at),
        EventState::Open => (None, None),
    };
    StoreError::InvalidTransition {
        id,
        action,
        state,
        by,
        at,
    }
}

/// The lifecycle of one event, as the KPIs need it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KpiRow {
    pub(crate) kind: String,
    pub(crate) detected_at: DateTime<Utc>,
    pub(crate) state: String,
    pub(crate) acknowledged_at: Option<DateTime<Utc>>,
    pub(crate) resolved_at: Option<DateTime<Utc>>,
    pub(crate) resolution: Option<String>,
}

/// Median and 90th percentile of a set of durations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DurationStats {
    /// How many durations there are.
    pub count: u64,
    /// `None` when there are none.
    pub median_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
}

impl DurationStats {
    fn of(mut secs: Vec<f64>) -> Self {
        secs.sort_by(f64::total_cmp);
        DurationStats {
            count: secs.len() as u64,
            median_seconds: quantile(&secs, 0.5),
            p90_seconds: quantile(&secs, 0.9),
        }
    }
}

/// The `q` quantile of sorted values, interpolating linearly between the closest ranks
/// (the usual "type 7" definition: the median of an even count is the mean of the middle two).
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let pos = q * last as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

/// The follow-up KPIs of the alerts raised (`detected_at`) in `[from, to)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertKpis {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The kinds counted; empty means every kind.
    pub kinds: Vec<EventKind>,
    /// Alerts raised in the window.
    pub raised: u64,
    /// Of those, how many have been acknowledged (including those resolved since).
    pub acknowledged: u64,
    /// Of those, how many have been resolved.
    pub resolved: u64,
    /// Of those, how many are still open (not even acknowledged).
    pub open: u64,
    /// `resolved / raised`; `None` when nothing was raised.
    pub follow_up_rate: Option<f64>,
    /// From `detected_at` to `acknowledged_at`, over the acknowledged alerts.
    pub time_to_acknowledge: DurationStats,
    /// From `detected_at` to `resolved_at`, over the resolved alerts.
    pub time_to_resolve: DurationStats,
    /// Resolved alerts per class; every class is present.
    pub resolutions: BTreeMap<Resolution, u64>,
}

/// Computes the KPIs over `rows` (the events raised in `[from, to)`) of the given `kinds`
/// (every kind when empty). A duration below zero (clocks disagreeing) counts as zero.
pub(crate) fn kpis(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    kinds: &[EventKind],
    rows: &[KpiRow],
) -> Result<AlertKpis, StoreError> {
    let mut resolutions: BTreeMap<Resolution, u64> =
        Resolution::ALL.into_iter().map(|r| (r, 0)).collect();
    let (mut raised, mut open) = (0u64, 0u64);
    let mut to_ack = Vec::new();
    let mut to_resolve = Vec::new();
    let secs =
        |a: DateTime<Utc>, b: DateTime<Utc>| ((b - a).num_milliseconds() as f64 / 1e3).max(0.0);
    for r in rows {
        if !(from..to).contains(&r.detected_at) {
            continue;
        }
        if !kinds.is_empty() && !kinds.iter().any(|k| k.as_str() == r.kind) {
            continue;
        }
        raised += 1;
        if r.state == EventState::Open.as_str() {
            open += 1;
        }
        if let Some(a) = r.acknowledged_at {
            to_ack.push(secs(r.detected_at, a));
        }
        if let (true, Some(t)) = (r.state == EventState::Resolved.as_str(), r.resolved_at) {
            to_resolve.push(secs(r.detected_at, t));
            if let Some(class) = &r.resolution {
                let class: Resolution = class.parse().map_err(|e| {
                    StoreError::Conflict(format!("stored event resolution is invalid: {e}"))
                })?;
                *resolutions.entry(class).or_default() += 1;
            }
        }
    }
    let resolved = to_resolve.len() as u64;
    Ok(AlertKpis {
        from,
        to,
        kinds: kinds.to_vec(),
        raised,
        acknowledged: to_ack.len() as u64,
        resolved,
        open,
        follow_up_rate: (raised > 0).then(|| resolved as f64 / raised as f64),
        time_to_acknowledge: DurationStats::of(to_ack),
        time_to_resolve: DurationStats::of(to_resolve),
        resolutions,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn quantiles_interpolate_between_ranks() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[7.0], 0.9), Some(7.0));
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.5));
        // 0.9 × 9 = 8.1: a tenth of the way from the 9th to the 10th value.
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert!((quantile(&v, 0.9).unwrap() - 9.1).abs() < 1e-9);
    }

    #[test]
    fn kpis_count_the_cohort_raised_in_the_window() {
        let t0 = t("2026-03-01T00:00:00Z");
        let row =
            |kind: &str, min: i64, state: &str, ack: Option<i64>, res: Option<(i64, &str)>| {
                KpiRow {
                    kind: kind.into(),
                    detected_at: t0 + TimeDelta::minutes(min),
                    state: state.into(),
                    acknowledged_at: ack.map(|m| t0 + TimeDelta::minutes(min + m)),
                    resolved_at: res.map(|(m, _)| t0 + TimeDelta::minutes(min + m)),
                    resolution: res.map(|(_, c)| c.into()),
                }
            };
        let rows = vec![
            row(
                "quality_event",
                0,
                "resolved",
                Some(10),
                Some((60, "true_event")),
            ),
            row(
                "quality_threshold",
                5,
                "resolved",
                Some(20),
                Some((120, "sensor_fault")),
            ),
            row("quality_event", 10, "acknowledged", Some(30), None),
            row("quality_event", 15, "open", None, None),
            row("leak", 20, "resolved", Some(1), Some((2, "false_alarm"))),
            // Raised after the window: not counted even though it is resolved.
            row(
                "quality_event",
                24 * 60,
                "resolved",
                Some(1),
                Some((1, "maintenance")),
            ),
        ];
        let to = t0 + TimeDelta::days(1);
        let k = kpis(t0, to, waterline_core::alert::QUALITY_KINDS, &rows).unwrap();
        assert_eq!((k.raised, k.acknowledged, k.resolved, k.open), (4, 3, 2, 1));
        assert_eq!(k.follow_up_rate, Some(0.5));
        assert_eq!(k.time_to_acknowledge.median_seconds, Some(1200.0));
        assert_eq!(k.time_to_acknowledge.p90_seconds, Some(1680.0));
        assert_eq!(k.time_to_resolve.median_seconds, Some(5400.0));
        assert_eq!(k.resolutions[&Resolution::TrueEvent], 1);
        assert_eq!(k.resolutions[&Resolution::SensorFault], 1);
        assert_eq!(k.resolutions[&Resolution::Maintenance], 0);
        let all = kpis(t0, to, &[], &rows).unwrap();
        assert_eq!(all.raised, 5);
        let none = kpis(to, to + TimeDelta::days(1), &[EventKind::Burst], &rows).unwrap();
        assert_eq!(none.raised, 0);
        assert_eq!(none.follow_up_rate, None);
        assert_eq!(none.time_to_resolve.median_seconds, None);
    }

    #[test]
    fn refusals_say_what_state_the_event_is_in_and_since_when() {
        assert!(
            matches!(refusal(9, "acknowledge", None), StoreError::NotFound(w) if w == "event 9")
        );
        let e = refusal(
            9,
            "acknowledge",
            Some(CurrentState {
                state: "resolved".into(),
                acknowledged_by: Some("ann".into()),
                acknowledged_at: Some(t("2026-03-01T01:00:00Z")),
                resolved_by: Some("bob".into()),
                resolved_at: Some(t("2026-03-01T02:00:00Z")),
            }),
        );
        assert_eq!(
            e.to_string(),
            "cannot acknowledge event 9: it is already resolved (by bob at 2026-03-01T02:00:00Z)"
        );
    }
}
