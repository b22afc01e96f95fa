#![no_main]
//! Sparkplug B payloads through the decoder and an edge-node state machine.
use libfuzzer_sys::fuzz_target;
use waterline_core::codec::sparkplug::{EdgeNodeState, SparkplugTopic, decode_payload};

fuzz_target!(|data: &[u8]| {
    if let Ok(payload) = decode_payload(data) {
        let mut state = EdgeNodeState::new("g", "e");
        for topic in ["spBv1.0/g/NBIRTH/e", "spBv1.0/g/NDATA/e", "spBv1.0/g/DBIRTH/e/d", "spBv1.0/g/NDEATH/e"] {
            if let Ok(t) = SparkplugTopic::parse(topic) {
                let _ = state.on_message(&t, &payload, chrono::Utc::now());
            }
        }
    }
});
