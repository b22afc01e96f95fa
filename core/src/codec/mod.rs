//! Payload codecs: bytes from the wire into uplinks, and back (for the simulator).
//!
//! Each codec is a pure function. Errors say what was wrong precisely enough to be stored as a
//! dead-letter reason. Decoded readings keep the device's own unit (when the payload states
//! one); ingest converts to canonical units against the sensor registry.
//!
//! - [`native`]: the native JSON uplink (CONTRACTS §5).
//! - [`chirpstack`]: ChirpStack v4 LoRaWAN uplink events.
//! - [`cjt188`]: CJ/T 188-2018 water-meter frames.
//! - [`sparkplug`]: Sparkplug B (protobuf) payloads and topics.

pub mod chirpstack;
pub mod cjt188;
pub mod native;
pub mod sparkplug;

pub use native::{
    DecodeError, NativeReading, NativeUplink, RejectedReading, decode_native, device_from_topic,
    encode_native,
};

/// Radio and power state a device reports beside its readings (LoRaWAN RSSI/SNR, battery).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DeviceHealth {
    /// Received signal strength at the best gateway, dBm.
    pub rssi_dbm: Option<f64>,
    /// Signal-to-noise ratio at the best gateway, dB.
    pub snr_db: Option<f64>,
    /// Battery level, percent (0–100).
    pub battery_percent: Option<f64>,
}
