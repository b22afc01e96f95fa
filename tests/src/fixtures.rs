//! Test data and an MQTT publisher shared by the end-to-end tests.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use waterline_core::Network;

/// The network description used by the ingest tests: two flow and two pressure sensors.
/// A network description with two DMAs' flow and pressure sensors in assorted units.
pub const NETWORK: &str = r#"
timezone = "Asia/Shanghai"

[[dma]]
id = "A"
inlets = ["A-flow"]
azp_sensor = "A-p"

[[sensor]]
id = "A-flow"
kind = "flow"
unit = "L/s"
dma = "A"

[[sensor]]
id = "A-p"
kind = "pressure"
unit = "bar"
dma = "A"

[[sensor]]
id = "B-flow"
kind = "flow"
unit = "m3/h"

[[sensor]]
id = "B-p"
kind = "pressure"
unit = "m"
"#;

/// [`NETWORK`], parsed.
pub fn network() -> Network {
    Network::parse(NETWORK).expect("test network is valid")
}

/// A start time three days back, on a whole minute. It moves with the clock: call it once per
/// test and keep the value.
pub fn t0() -> DateTime<Utc> {
    // Recent enough to pass the ingest age bound, fixed to the minute for repeatability.
    let now = Utc::now() - TimeDelta::days(3);
    DateTime::from_timestamp(now.timestamp() / 60 * 60, 0).expect("valid time")
}

/// `n` native uplinks from device `RTU-<k>` (k = i mod devices), each with the four test
/// sensors at one instant; message i is at t0 + i minutes.
pub fn uplinks(t0: DateTime<Utc>, n: usize, devices: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let dev = format!("RTU-{}", i % devices);
            let t = (t0 + TimeDelta::minutes(i as i64)).to_rfc3339();
            let payload = format!(
                r#"{{"device":"{dev}","time":"{t}","readings":[
                    {{"sensor":"A-flow","value":{a}}},{{"sensor":"A-p","value":{p}}},
                    {{"sensor":"B-flow","value":{b}}},{{"sensor":"B-p","value":{q},"unit":"m"}}]}}"#,
                a = 10.0 + (i % 7) as f64,
                p = 4.0 + (i % 3) as f64 * 0.1,
                b = 30.0 + (i % 5) as f64,
                q = 40.0 + (i % 11) as f64,
            );
            (format!("waterline/{dev}/up"), payload.into_bytes())
        })
        .collect()
}

/// Publishes every message with QoS 1 and returns once the broker acknowledged all of them.
pub async fn publish_all(broker_port: u16, messages: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
    let id = format!("test-pub-{}", rand::random::<u32>());
    let mut opts = MqttOptions::new(id, "127.0.0.1", broker_port);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(16 << 20, 16 << 20)
        .set_inflight(1000);
    let (client, mut eventloop) = AsyncClient::new(opts, 10_000);
    let total = messages.len();
    let msgs = messages.to_vec();
    let sender = tokio::spawn(async move {
        for (topic, payload) in msgs {
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await?;
        }
        anyhow::Ok(client)
    });
    let mut acked = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while acked < total {
        let ev = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .map_err(|_| {
                anyhow::anyhow!("only {acked} of {total} publishes acknowledged in 300 s")
            })?;
        match ev {
            Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
            Ok(_) => {}
            Err(e) => anyhow::bail!("publisher connection failed: {e}"),
        }
    }
    let client = sender.await??;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
    Ok(())
}
