#![no_main]
//! The whole ingest path of one message: topic routing, every codec, validation.
use libfuzzer_sys::fuzz_target;
use waterline_ingest::IngestConfig;
use waterline_ingest::registry::Registry;
use waterline_ingest::route::{Routes, SparkplugNodes, process};

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len().saturating_sub(1));
    let (topic, payload) = data.get(1..).unwrap_or_default().split_at(split.min(data.len().saturating_sub(1)));
    let topic = String::from_utf8_lossy(topic);
    let routes = Routes {
        native_prefix: "waterline".into(),
        chirpstack: true,
        cjt188_prefix: Some("cjt188".into()),
        sparkplug: true,
        ..Routes::default()
    };
    let _ = process(
        &topic,
        payload,
        &routes,
        &Registry::default(),
        &IngestConfig::default(),
        chrono::Utc::now(),
        &mut SparkplugNodes::default(),
    );
});
