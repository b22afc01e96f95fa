#![no_main]
//! CJ/T 188 frames, raw and as hex text.
use libfuzzer_sys::fuzz_target;
use waterline_core::codec::cjt188;

fuzz_target!(|data: &[u8]| {
    let _ = cjt188::decode_frame(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = cjt188::decode_hex(text);
    }
});
