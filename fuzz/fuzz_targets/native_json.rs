#![no_main]
//! The native JSON uplink decoder on arbitrary bytes.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = waterline_core::codec::decode_native("device-1", data);
});
