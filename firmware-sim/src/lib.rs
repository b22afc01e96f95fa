//! Waterline's firmware simulator: field devices that speak the real wire protocols, so that
//! everything downstream is tested and demonstrated the way it runs in the field.
//!
//! - [`model`]: a small synthetic network (diurnal demand, head loss, FAVAD leakage, injected
//!   leaks) for the demo.
//! - [`demo`]: the demo's RTUs, smart meters and quality station publishing native JSON
//!   uplinks over MQTT ([`demo::run`], [`demo::network_toml`]).
//! - [`twin`]: the hydraulic digital twin: an EPANET network simulated over days with varying
//!   demand and injected leaks, exported as readings, a network description and the truth
//!   (`waterline sim --export`), or run live behind Modbus TCP PRV controllers
//!   ([`twin::live`]).
//! - [`modbus_device`]: a Modbus TCP device over a bank of registers (tokio-modbus server).
//!
//! This crate never imports ingest or the store: like a real device, it only speaks the wire.

pub mod demo;
pub mod modbus_device;
pub mod model;
pub mod twin;
