//! Payload codecs: bytes from the wire into uplinks, and back (for the simulator).
//!
//! Each codec is a pure function. Errors say what was wrong precisely enough to be stored as a
//! dead-letter reason.

pub mod native;

pub use native::{
    DecodeError, NativeReading, NativeUplink, RejectedReading, decode_native, device_from_topic,
    encode_native,
};
