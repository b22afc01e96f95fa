//! Waterline's cross-crate tests, one binary (STYLE §9): store conformance on every backend,
//! ingest end to end through a real Mosquitto, the HTTP API, and the `waterline` binary.

mod api;
mod cli;
mod conformance;
mod ingest;
mod support;
