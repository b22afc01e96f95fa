//! Waterline's cross-crate tests, one binary (STYLE §9): store conformance on every backend,
//! ingest end to end through a real Mosquitto, and the HTTP API. The binary's own process
//! tests live with it, in `cli/tests/`.

mod api;
mod conformance;
mod faults;
mod field;
mod ingest;
mod leakage;
mod load;
mod modbus;
mod protocols;
