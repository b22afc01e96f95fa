//! Waterline analytics: the only crate that uses polars.
//!
//! - [`readings`]: the readings file of CONTRACTS §2 (CSV or Parquet) as one sorted table in
//!   canonical units, with line-precise errors.
//! - [`grid`]: regular grids from irregular readings (a pass over each sensor's sorted
//!   readings): sensor bucket means and each DMA's balance flow.
//! - [`consumption`]: customer consumption from meter registers (rollover, replacement, gaps).
//! - [`leakage`]: daily and monthly leakage KPIs per DMA and causal leak / burst detection.
//! - [`pressure`]: service-band violations, sudden drops ([`pressure_drop`], confirmed by the
//!   DMA's inflow and grouped per incident in [`drop_incidents`]), transients in high-rate
//!   data ([`transients`]) and the pressure compliance rate per point, zone and network per
//!   day, with sensor faults set aside (drift against the zone in [`pressure_drift`]; jumps
//!   the whole zone made are no fault, [`zone_jumps`]); [`pressure_score`] scores them
//!   against the simulator's truth.
//! - [`prv`]: PRV set-point recommendations (a fixed set point and an hourly schedule that keep
//!   the critical point above its minimum) with their expected pressure and FAVAD leakage
//!   saving.
//! - [`quality`]: per-station water-quality faults, set-point crossings and CANARY-style
//!   events, with their row-wise scoring.
//! - [`evaluate`]: scoring leak detections against ground truth.
//! - [`online`]: the service's scheduled job: the same detectors over a sliding window of the
//!   store's readings, writing events (once, however often they are re-detected) and daily
//!   KPIs back to the store.
//! - [`clock`], [`timefmt`]: local time and fast RFC 3339 parsing; `stats`: median, MAD and
//!   least-squares slope shared by the detectors, the KPIs and the evaluation.
//!
//! Detectors are causal (CONTRACTS §3): an event's `detected_at` is the end of the newest data
//! the detector had used when it decided, and nothing newer is read to decide it. The same
//! code runs offline (`waterline analyze`) and online in the service ([`online`]).

pub mod clock;
pub mod consumption;
pub mod drop_incidents;
pub mod evaluate;
pub mod grid;
pub mod leakage;
pub mod online;
mod parallel;
pub mod pressure;
pub mod pressure_drift;
pub mod pressure_drop;
pub mod pressure_score;
pub mod prv;
pub mod quality;
pub mod readings;
mod stats;
pub mod timefmt;
pub mod transients;
pub mod zone_jumps;

pub use readings::{LoadOptions, LoadReport, Readings, ReadingsError};
