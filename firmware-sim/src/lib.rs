//! Waterline's firmware simulator: field devices that speak the real wire protocols, so that
//! everything downstream is tested and demonstrated the way it runs in the field.
//!
//! - [`model`]: seeded random generators and the default diurnal pattern.
//! - [`twin`]: the hydraulic digital twin: an EPANET network simulated over days with varying
//!   demand and injected leaks, exported as readings, a network description and the truth
//!   (`waterline sim --export`), or run live behind Modbus TCP PRV controllers
//!   ([`twin::live`]).
//! - [`field`]: the twin's field devices on the wire: RTUs, loggers, analysers and smart
//!   meters publishing over MQTT in every payload format ingest supports (native JSON,
//!   Sparkplug B, ChirpStack v4, CJ/T 188), misbehaving like real devices, in a back-fill, at a
//!   speed factor or on the wall clock (`waterline sim --broker`, `waterline demo`).
//! - [`modbus_device`]: a Modbus TCP device over a bank of registers (tokio-modbus server).
//! - [`load`]: load mode for benchmarks: N devices publishing native JSON uplinks at R
//!   messages/s with a given batch size, reporting what was actually achieved ([`load::run`],
//!   [`load::network_toml`]).
//!
//! This crate never imports ingest or the store: like a real device, it only speaks the wire.

pub mod field;
pub mod load;
pub mod modbus_device;
pub mod model;
pub mod twin;
