//! Waterline's analytics: the leakage, pressure and water-quality detectors, KPI jobs and the
//! offline `waterline analyze` replay, built on polars.
//!
//! Not built yet: this crate is an empty shell so that the workspace has its final shape. The
//! detectors arrive with their own issues; until then nothing writes events and
//! `/api/v1/events` answers an empty list. When they come, this is the only crate that uses
//! polars; it reads readings from the store and writes events back, and neither ingest nor
//! dashboards import it.
