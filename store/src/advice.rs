//! Advice the analytics job leaves for people to act on: the latest PRV set-point
//! recommendation per valve. The body is the analytics' JSON, stored as it is, so the store
//! does not need to know its shape; the dashboards serve it and apply it.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// The latest recommendation of one PRV.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrvAdvice {
    pub prv: String,
    pub dma: String,
    pub computed_at: DateTime<Utc>,
    /// The recommendation, or why there is none (`reason`).
    pub body: serde_json::Value,
}
