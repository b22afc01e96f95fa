#![no_main]
//! Spool records as read back from disk.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = waterline_ingest::spooled::decode(data);
});
