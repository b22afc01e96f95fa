//! The demo's embedded MQTT broker (rumqttd) on a free loopback port.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Picks a free port on 127.0.0.1 by binding port 0.
fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(l.local_addr()?.port())
}

fn config(addr: SocketAddr) -> anyhow::Result<rumqttd::Config> {
    let text = format!(
        r#"
id = 0
[router]
max_connections = 1000
max_outgoing_packet_count = 1000
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "{addr}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 16777216
max_inflight_count = 1000
dynamic_filters = true
"#
    );
    toml::from_str(&text).context("embedded broker configuration")
}

/// Whether an MQTT 3.1.1 broker answers a CONNECT at `addr` with a successful CONNACK.
fn mqtt_handshake(addr: SocketAddr) -> bool {
    // CONNECT: protocol "MQTT" level 4, clean session, keep-alive 60 s, client id "probe".
    const CONNECT: [u8; 19] = [
        0x10, 17, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 5, b'p', b'r', b'o', b'b', b'e',
    ];
    const DISCONNECT: [u8; 2] = [0xE0, 0];
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut ack = [0u8; 4];
    let ok =
        s.write_all(&CONNECT).is_ok() && s.read_exact(&mut ack).is_ok() && ack == [0x20, 2, 0, 0];
    let _ = s.write_all(&DISCONNECT);
    ok
}

/// Starts rumqttd on a free port of 127.0.0.1 in a background thread and waits until it
/// accepts connections. The broker lives as long as the process.
pub fn start_embedded() -> anyhow::Result<SocketAddr> {
    for _ in 0..5 {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut broker = rumqttd::Broker::new(config(addr)?);
        std::thread::Builder::new()
            .name("rumqttd".into())
            .spawn(move || {
                if let Err(e) = broker.start() {
                    tracing::error!(error = %e, "embedded MQTT broker stopped");
                }
            })
            .context("cannot start the embedded broker thread")?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if mqtt_handshake(addr) {
                return Ok(addr);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::warn!(%addr, "embedded broker did not come up; trying another port");
    }
    bail!("the embedded MQTT broker did not start on any free port")
}
