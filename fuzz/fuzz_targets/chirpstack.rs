#![no_main]
//! ChirpStack uplink events on arbitrary bytes (no profile codecs configured).
use libfuzzer_sys::fuzz_target;
use waterline_core::codec::chirpstack::{ProfileCodecs, decode_uplink};

fuzz_target!(|data: &[u8]| {
    let _ = decode_uplink("0102030405060708", data, &ProfileCodecs::new());
});
