//! Load mode: many simulated devices publishing native JSON uplinks (CONTRACTS §5) with QoS 1
//! at a fixed total rate, for benchmarks, and a report of what was actually achieved.
//!
//! Device `LOAD-00001` … `LOAD-<devices>` has one sensor, `LOAD-00001-vol`, a cumulative volume
//! register in m³. Message `i` of the run belongs to device `i mod devices` and is due at
//! `i / rate` seconds after the start. A fine tick ([`TICK`]) wakes the publisher, which sends
//! what the schedule says is due, at most [`BURST_TICKS`] ticks' worth at once: a publisher that
//! fell behind catches up at a bounded pace, and the report says how far behind it was and how
//! many scheduled messages it never sent, rather than hiding it in a burst.
//!
//! Each message carries `batch` readings of its device's sensor. The newest is stamped with the
//! time of publishing (truncated to the microsecond, the store's precision), so ingest's
//! `waterline_ingest_reading_age_at_commit_seconds` measures publish-to-commit latency; the
//! older readings of the batch lie 1 µs apart before it. A device's next message starts after
//! its previous one, so every (sensor, time) of a run is distinct and every reading is stored.
//! Every reading carries its unit (`m3`), so ingest registers the sensors on first contact;
//! [`network_toml`] describes them (kind `volume`) for `waterline serve --network`.
//!
//! One rumqttc connection publishes; its event loop counts the broker's PUBACKs. After the
//! last publish the run waits up to [`LoadConfig::ack_timeout`] for the outstanding ones.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::watch;
use waterline_core::codec::{NativeReading, NativeUplink, encode_native};
use waterline_core::units::Unit;
use waterline_core::{DeviceId, SensorId};

/// How often the publisher wakes to send what is due.
pub const TICK: Duration = Duration::from_millis(10);

/// At most this many ticks' worth of messages are sent at one wake-up (catching up after a
/// stall at no more than this multiple of the target rate).
pub const BURST_TICKS: u64 = 5;

/// Most devices a run may simulate.
pub const MAX_DEVICES: usize = 1_000_000;

/// Most readings one message may carry.
pub const MAX_BATCH: usize = 10_000;

/// Most readings a second one device may produce: its readings lie 1 µs apart, and they must
/// not run ahead of the clock (ingest refuses readings too far in the future).
pub const MAX_DEVICE_READINGS_PER_S: f64 = 100_000.0;

/// What to publish, where, and for how long.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub broker_host: String,
    pub broker_port: u16,
    /// Topics are `<topic_prefix>/<device>/up`.
    pub topic_prefix: String,
    pub client_id: String,
    /// Simulated devices, `LOAD-00001` onwards.
    pub devices: usize,
    /// Messages a second over all devices.
    pub rate: f64,
    /// Readings per message.
    pub batch: usize,
    /// How long to publish.
    pub duration: Duration,
    /// QoS 1 messages awaiting the broker's PUBACK at most.
    pub max_inflight: u16,
    /// How long to wait after the last publish for the outstanding PUBACKs.
    pub ack_timeout: Duration,
    /// How long to wait for the broker's CONNACK before giving up.
    pub connect_timeout: Duration,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            broker_host: "127.0.0.1".into(),
            broker_port: 1883,
            topic_prefix: "waterline".into(),
            client_id: "waterline-load".into(),
            devices: 100,
            rate: 100.0,
            batch: 1,
            duration: Duration::from_secs(10),
            max_inflight: 1000,
            ack_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a load run did not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A configuration value is out of range; `field` is the [`LoadConfig`] field.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// No CONNACK from the broker within the connect timeout.
    #[error("cannot connect to the MQTT broker {host}:{port} within {timeout:?}: {error}")]
    Connect {
        host: String,
        port: u16,
        timeout: Duration,
        error: String,
    },
    #[error("MQTT client request failed: {0}")]
    Client(#[from] rumqttc::ClientError),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> LoadError {
    LoadError::Invalid {
        field,
        reason: reason.into(),
    }
}

impl LoadConfig {
    /// Checks every value; the error names the field.
    pub fn validate(&self) -> Result<(), LoadError> {
        if self.broker_host.trim().is_empty() {
            return Err(invalid("broker_host", "must not be empty"));
        }
        if self.broker_port == 0 {
            return Err(invalid("broker_port", "must not be 0"));
        }
        if self.topic_prefix.is_empty()
            || self.topic_prefix.contains(['+', '#'])
            || self.topic_prefix.starts_with('/')
            || self.topic_prefix.ends_with('/')
        {
            return Err(invalid(
                "topic_prefix",
                format!(
                    "`{}` must be a non-empty topic without wildcards or a leading or trailing `/`",
                    self.topic_prefix
                ),
            ));
        }
        if self.client_id.is_empty() {
            return Err(invalid("client_id", "must not be empty"));
        }
        if !(1..=MAX_DEVICES).contains(&self.devices) {
            return Err(invalid(
                "devices",
                format!("{} is not between 1 and {MAX_DEVICES}", self.devices),
            ));
        }
        if !self.rate.is_finite() || self.rate <= 0.0 {
            return Err(invalid(
                "rate",
                format!("{} messages/s must be a finite number above 0", self.rate),
            ));
        }
        if !(1..=MAX_BATCH).contains(&self.batch) {
            return Err(invalid(
                "batch",
                format!(
                    "{} readings per message is not between 1 and {MAX_BATCH}",
                    self.batch
                ),
            ));
        }
        if self.duration.is_zero() {
            return Err(invalid("duration", "must be longer than 0 s"));
        }
        if self.duration > Duration::from_secs(7 * 86_400) {
            return Err(invalid(
                "duration",
                format!("{:?} is longer than a week", self.duration),
            ));
        }
        if self.rate * self.duration.as_secs_f64() < 1.0 {
            return Err(invalid(
                "rate",
                format!(
                    "{} messages/s for {:.3} s schedules no message",
                    self.rate,
                    self.duration.as_secs_f64()
                ),
            ));
        }
        let per_device = self.device_readings_per_s();
        if per_device > MAX_DEVICE_READINGS_PER_S {
            return Err(invalid(
                "rate",
                format!(
                    "{} messages/s × {} readings over {} devices is {per_device:.0} readings/s per device, more than {MAX_DEVICE_READINGS_PER_S:.0} (add devices)",
                    self.rate, self.batch, self.devices
                ),
            ));
        }
        if self.max_inflight == 0 {
            return Err(invalid("max_inflight", "must be at least 1"));
        }
        Ok(())
    }

    /// Messages a minute each device sends (compare with ingest's per-device rate limit,
    /// `ingest.max_messages_per_device_per_minute`).
    pub fn device_msgs_per_minute(&self) -> f64 {
        self.rate * 60.0 / self.devices as f64
    }

    /// Readings a second each device produces.
    pub fn device_readings_per_s(&self) -> f64 {
        self.rate * self.batch as f64 / self.devices as f64
    }

    /// The schedule of this configuration.
    fn schedule(&self) -> Schedule {
        Schedule::new(self.rate, self.duration, TICK)
    }
}

/// The id of device `index` (0-based): `LOAD-00001` for 0.
pub fn device_id(index: usize) -> String {
    format!("LOAD-{:05}", index + 1)
}

/// The sensor of device `index` (0-based): `LOAD-00001-vol` for 0.
pub fn sensor_id(index: usize) -> String {
    format!("{}-vol", device_id(index))
}

/// The `network.toml` describing the sensors of `devices` load devices: one cumulative volume
/// sensor (m³) each, in no DMA.
pub fn network_toml(devices: usize) -> String {
    let mut s = format!(
        "# Waterline load mode: {devices} simulated devices, one cumulative volume sensor each.\n\
         timezone = \"UTC\"\n"
    );
    for i in 0..devices {
        s.push_str(&format!(
            "\n[[sensor]]\nid = \"{}\"\nkind = \"volume\"\nunit = \"m3\"\n",
            sensor_id(i)
        ));
    }
    s
}

/// The pacing: message `i` is due `i / rate` seconds after the start; `total` messages fit in
/// the duration.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Schedule {
    rate: f64,
    total: u64,
    /// Most messages sent at one wake-up.
    burst: u64,
}

impl Schedule {
    fn new(rate: f64, duration: Duration, tick: Duration) -> Schedule {
        // Messages 0..total are those with i / rate < duration.
        let total = (rate * duration.as_secs_f64() - 1e-9).ceil().max(0.0) as u64;
        let per_tick = rate * tick.as_secs_f64();
        let burst = ((per_tick * BURST_TICKS as f64).ceil() as u64).max(1);
        Schedule { rate, total, burst }
    }

    /// How many messages are due by `elapsed` (message 0 is due at once).
    fn due(&self, elapsed: Duration) -> u64 {
        let n = (elapsed.as_secs_f64() * self.rate + 1e-9).floor() as u64 + 1;
        n.min(self.total)
    }

    /// How many to send now, with `sent` already sent.
    fn take(&self, elapsed: Duration, sent: u64) -> u64 {
        self.due(elapsed).saturating_sub(sent).min(self.burst)
    }

    /// How far behind the schedule the publisher is at `elapsed` with `sent` sent: the age of
    /// the oldest message due and not sent, zero when none is.
    fn behind(&self, elapsed: Duration, sent: u64) -> Duration {
        if sent >= self.due(elapsed) {
            return Duration::ZERO;
        }
        let due_at = sent as f64 / self.rate;
        Duration::from_secs_f64((elapsed.as_secs_f64() - due_at).max(0.0))
    }
}

/// Per-device reading times, so that every (sensor, time) of a run is distinct: a message's
/// newest reading is at `now` unless that would overlap the device's previous message, whose
/// newest reading it then follows by `batch` µs.
#[derive(Debug, Clone)]
struct DeviceClock {
    last_us: Vec<i64>,
}

impl DeviceClock {
    fn new(devices: usize) -> DeviceClock {
        DeviceClock {
            last_us: vec![i64::MIN; devices],
        }
    }

    /// The times (µs since the epoch, oldest first) of the next `batch` readings of `device`.
    fn stamps(
        &mut self,
        device: usize,
        now_us: i64,
        batch: usize,
    ) -> std::ops::RangeInclusive<i64> {
        let n = batch as i64;
        let last = self.last_us[device];
        let newest = if last == i64::MIN {
            now_us
        } else {
            now_us.max(last + n)
        };
        self.last_us[device] = newest;
        (newest - n + 1)..=newest
    }
}

/// One device's fixed parts.
struct Device {
    id: DeviceId,
    sensor: SensorId,
    topic: String,
    /// The register's next value, in thousandths of a m³.
    register_milli: u64,
}

/// Builds the messages of a run.
struct Fleet {
    devices: Vec<Device>,
    clock: DeviceClock,
    batch: usize,
}

impl Fleet {
    fn new(cfg: &LoadConfig) -> Fleet {
        let devices = (0..cfg.devices)
            .map(|i| {
                let id = device_id(i);
                Device {
                    topic: format!("{}/{id}/up", cfg.topic_prefix),
                    sensor: SensorId::parse(sensor_id(i)).expect("load sensor ids are valid"),
                    id: DeviceId::parse(&id).expect("load device ids are valid"),
                    register_milli: 1_000_000 + (i as u64 % 1000) * 1000,
                }
            })
            .collect();
        Fleet {
            devices,
            clock: DeviceClock::new(cfg.devices),
            batch: cfg.batch,
        }
    }

    /// Message `i` of the run, built at `now`: its topic and payload.
    fn message(&mut self, i: u64, now: DateTime<Utc>) -> (String, Vec<u8>) {
        let d = (i % self.devices.len() as u64) as usize;
        let stamps = self.clock.stamps(d, now.timestamp_micros(), self.batch);
        let dev = &mut self.devices[d];
        let readings: Vec<NativeReading> = stamps
            .map(|us| {
                dev.register_milli += 1;
                NativeReading {
                    sensor: dev.sensor.clone(),
                    value: dev.register_milli as f64 / 1000.0,
                    unit: Some(Unit::CubicMetre),
                    time: DateTime::from_timestamp_micros(us).expect("a time near now"),
                }
            })
            .collect();
        let uplink = NativeUplink {
            device: dev.id.clone(),
            time: readings.last().map(|r| r.time),
            readings,
            rejected: Vec::new(),
        };
        (dev.topic.clone(), encode_native(&uplink))
    }
}

/// What a run achieved.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    pub devices: usize,
    pub batch: usize,
    pub target_msgs_per_s: f64,
    /// Messages the schedule held for the time run (fewer than planned when stopped early).
    pub messages_scheduled: u64,
    /// Messages handed to the MQTT client.
    pub messages_published: u64,
    /// PUBACKs received from the broker.
    pub messages_acked: u64,
    /// Readings in the published messages.
    pub readings: u64,
    /// The publishing window: the configured duration, or longer when publishing overran it,
    /// or shorter when stopped early.
    pub elapsed: Duration,
    pub achieved_msgs_per_s: f64,
    pub achieved_readings_per_s: f64,
    /// How far the publisher fell behind its schedule at worst.
    pub behind_max: Duration,
    /// From the last publish to the last PUBACK (or to giving up waiting).
    pub ack_wait: Duration,
    /// Connection errors of the event loop (it reconnects and resends).
    pub connection_errors: u64,
    /// Stopped by the caller before the end of the schedule.
    pub stopped_early: bool,
}

impl LoadReport {
    /// Scheduled messages that were never published.
    pub fn unpublished(&self) -> u64 {
        self.messages_scheduled
            .saturating_sub(self.messages_published)
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "load: {} device{}, {} reading{} per message: published {} messages ({} readings) in {:.2} s, \
             {:.0} messages/s ({:.0} readings/s) against a target of {:.0} messages/s",
            self.devices,
            if self.devices == 1 { "" } else { "s" },
            self.batch,
            if self.batch == 1 { "" } else { "s" },
            self.messages_published,
            self.readings,
            self.elapsed.as_secs_f64(),
            self.achieved_msgs_per_s,
            self.achieved_readings_per_s,
            self.target_msgs_per_s,
        )?;
        write!(
            f,
            "; broker acknowledged {} of {}",
            self.messages_acked, self.messages_published
        )?;
        if self.messages_acked < self.messages_published {
            write!(
                f,
                " (gave up waiting after {:.1} s)",
                self.ack_wait.as_secs_f64()
            )?;
        } else {
            write!(
                f,
                " (last {:.0} ms after the last publish)",
                self.ack_wait.as_secs_f64() * 1e3
            )?;
        }
        write!(
            f,
            "; at most {:.0} ms behind schedule",
            self.behind_max.as_secs_f64() * 1e3
        )?;
        if self.unpublished() > 0 {
            write!(
                f,
                "; {} scheduled messages never published (the publisher could not keep up)",
                self.unpublished()
            )?;
        }
        if self.connection_errors > 0 {
            write!(f, "; {} connection errors", self.connection_errors)?;
        }
        if self.stopped_early {
            write!(f, "; stopped early")?;
        }
        Ok(())
    }
}

/// What the event loop counts: PUBACKs and connection errors.
struct Acks {
    acked: AtomicU64,
    errors: AtomicU64,
}

/// Publishes the schedule of `cfg` until it ends or `stop` turns true, then waits for the
/// outstanding PUBACKs and reports.
pub async fn run(cfg: &LoadConfig, stop: watch::Receiver<bool>) -> Result<LoadReport, LoadError> {
    cfg.validate()?;
    let schedule = cfg.schedule();
    let mut opts = MqttOptions::new(
        cfg.client_id.clone(),
        cfg.broker_host.clone(),
        cfg.broker_port,
    );
    opts.set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(16 << 20, 16 << 20)
        .set_inflight(cfg.max_inflight);
    // A short request queue: when the broker or the connection is slow, publishing waits and
    // the report shows the publisher falling behind instead of a queue filling up.
    let queue = (schedule.burst as usize * 2).clamp(64, 10_000);
    let (client, mut eventloop) = AsyncClient::new(opts, queue);
    // No Nagle delay: a lone message goes out at once, so latency measured from its reading
    // time does not include up to 40 ms of the publisher's own TCP buffering.
    let mut net = eventloop.network_options();
    net.set_tcp_nodelay(true);
    eventloop.set_network_options(net);

    let acks = Arc::new(Acks {
        acked: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let (connected_tx, mut connected) = watch::channel(None::<Result<(), String>>);
    let mut poller = {
        let acks = Arc::clone(&acks);
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected_tx.send_replace(Some(Ok(())));
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acks.acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(e) => {
                        acks.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(error = %e, "load publisher's MQTT connection failed; retrying");
                        if !matches!(*connected_tx.borrow(), Some(Ok(()))) {
                            connected_tx.send_replace(Some(Err(e.to_string())));
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        })
    };

    let up = matches!(
        tokio::time::timeout(
            cfg.connect_timeout,
            connected.wait_for(|c| matches!(c, Some(Ok(())))),
        )
        .await,
        Ok(Ok(_))
    );
    if !up {
        poller.abort();
        let error = match &*connected.borrow() {
            Some(Err(e)) => e.clone(),
            _ => "no CONNACK".into(),
        };
        return Err(LoadError::Connect {
            host: cfg.broker_host.clone(),
            port: cfg.broker_port,
            timeout: cfg.connect_timeout,
            error,
        });
    }
    // Connection errors before the first CONNACK are not the run's.
    let errors_before = acks.errors.load(Ordering::Relaxed);

    let mut fleet = Fleet::new(cfg);
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut behind_max = Duration::ZERO;
    let mut stopped_early = false;
    'run: loop {
        ticker.tick().await;
        let elapsed = start.elapsed();
        for _ in 0..schedule.take(elapsed, sent) {
            if *stop.borrow() {
                stopped_early = true;
                break 'run;
            }
            let (topic, payload) = fleet.message(sent, Utc::now());
            if let Err(e) = client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
            {
                poller.abort();
                return Err(e.into());
            }
            sent += 1;
        }
        let now = start.elapsed();
        behind_max = behind_max.max(schedule.behind(now, sent));
        if sent >= schedule.total || now >= cfg.duration {
            break;
        }
        if *stop.borrow() {
            stopped_early = true;
            break;
        }
    }
    let loop_elapsed = start.elapsed();
    let scheduled = if stopped_early {
        schedule.due(loop_elapsed)
    } else {
        schedule.total
    };
    let elapsed = if stopped_early {
        loop_elapsed
    } else {
        loop_elapsed.max(cfg.duration)
    };

    let last_publish = Instant::now();
    let ack_deadline = last_publish + cfg.ack_timeout;
    let mut last_seen = acks.acked.load(Ordering::Relaxed);
    let mut last_ack_at = last_publish;
    while last_seen < sent && Instant::now() < ack_deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let now = acks.acked.load(Ordering::Relaxed);
        if now != last_seen {
            last_seen = now;
            last_ack_at = Instant::now();
        }
    }
    let acked = acks.acked.load(Ordering::Relaxed);
    let ack_wait = if acked >= sent {
        last_ack_at.duration_since(last_publish)
    } else {
        last_publish.elapsed()
    };
    let connection_errors = acks.errors.load(Ordering::Relaxed) - errors_before;

    let _ = client.try_disconnect();
    if tokio::time::timeout(Duration::from_secs(1), &mut poller)
        .await
        .is_err()
    {
        tracing::debug!("load publisher's event loop did not end after DISCONNECT");
        poller.abort();
    }

    let secs = elapsed.as_secs_f64().max(1e-9);
    let readings = sent * cfg.batch as u64;
    Ok(LoadReport {
        devices: cfg.devices,
        batch: cfg.batch,
        target_msgs_per_s: cfg.rate,
        messages_scheduled: scheduled,
        messages_published: sent,
        messages_acked: acked,
        readings,
        elapsed,
        achieved_msgs_per_s: sent as f64 / secs,
        achieved_readings_per_s: readings as f64 / secs,
        behind_max,
        ack_wait,
        connection_errors,
        stopped_early,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use waterline_core::Network;
    use waterline_core::codec::decode_native;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn schedule_holds_rate_times_duration_messages_due_at_i_over_rate() {
        let s = Schedule::new(100.0, Duration::from_secs(2), TICK);
        assert_eq!(s.total, 200);
        assert_eq!(s.burst, 5);
        assert_eq!(s.due(Duration::ZERO), 1);
        assert_eq!(s.due(ms(9)), 1);
        assert_eq!(s.due(ms(10)), 2);
        assert_eq!(s.due(ms(995)), 100);
        assert_eq!(s.due(ms(1_990)), 200);
        assert_eq!(s.due(Duration::from_secs(60)), 200);
        // Fractional totals round up: messages at 0, 0.4 and 0.8 s fit in one second.
        assert_eq!(Schedule::new(2.5, Duration::from_secs(1), TICK).total, 3);
        assert_eq!(Schedule::new(0.5, Duration::from_secs(2), TICK).total, 1);
        // A slow rate still sends one at a time.
        assert_eq!(Schedule::new(1.0, Duration::from_secs(5), TICK).burst, 1);
        // 10,000/s: 100 a tick, bursts of at most 500.
        assert_eq!(
            Schedule::new(10_000.0, Duration::from_secs(1), TICK).burst,
            500
        );
    }

    #[test]
    fn publishing_on_time_stays_on_schedule_and_a_stall_is_caught_up_in_bounded_bursts() {
        let s = Schedule::new(1_000.0, Duration::from_secs(1), TICK);
        // On time: every 10 ms tick sends 10 (the first sends 1, message 0).
        let mut sent = 0;
        let mut t = Duration::ZERO;
        while t < Duration::from_secs(1) {
            let n = s.take(t, sent);
            assert!(n <= 11, "{n} at {t:?}");
            sent += n;
            assert_eq!(s.behind(t, sent), Duration::ZERO);
            t += TICK;
        }
        assert_eq!(sent + s.take(t, sent), 1_000);

        // A 200 ms stall at 100 ms: 200 messages overdue, caught up at 50 a tick.
        let mut sent = s.due(ms(100));
        let n = s.take(ms(300), sent);
        assert_eq!(n, 50);
        let lag = s.behind(ms(300), sent);
        assert!((lag.as_secs_f64() - 0.199).abs() < 1e-6, "{lag:?}");
        sent += n;
        let lag2 = s.behind(ms(300), sent);
        assert!(lag2 < lag && lag2 > Duration::ZERO);
        let mut t = ms(300);
        let mut ticks = 0;
        while s.behind(t, sent) > Duration::ZERO {
            t += TICK;
            sent += s.take(t, sent);
            ticks += 1;
        }
        // 150 left plus 10 more due each tick, 50 a tick: four more ticks.
        assert_eq!(ticks, 4);
    }

    #[test]
    fn every_reading_time_of_a_device_is_distinct_and_the_newest_is_now_when_possible() {
        let mut clock = DeviceClock::new(3);
        let mut seen = HashSet::new();
        let now = 1_800_000_000_000_000i64;
        // Device 0 twice in the same microsecond with batches of 5: the second follows the first.
        let a = clock.stamps(0, now, 5);
        assert_eq!(*a.end(), now);
        assert_eq!(*a.start(), now - 4);
        let b = clock.stamps(0, now, 5);
        assert_eq!(*b.start(), now + 1);
        // Later, the newest is the publish time again.
        let c = clock.stamps(0, now + 1_000, 5);
        assert_eq!(*c.end(), now + 1_000);
        for (d, r) in [(0, a), (0, b), (0, c)] {
            for t in r {
                assert!(seen.insert((d, t)));
            }
        }
        // Many messages of many devices at a coarse clock: all distinct.
        for i in 0..10_000u64 {
            let d = (i % 3) as usize;
            let t_now = now + 2_000 + (i as i64 / 7) * 3;
            for t in clock.stamps(d, t_now, 4) {
                assert!(seen.insert((d, t)), "device {d} time {t} twice");
            }
        }
        // A clock that steps back does not repeat times either.
        let x = clock.stamps(1, now, 2);
        for t in x {
            assert!(seen.insert((1, t)));
        }
    }

    #[test]
    fn messages_decode_with_batch_readings_of_their_device_and_unique_times() {
        let cfg = LoadConfig {
            devices: 3,
            batch: 4,
            ..LoadConfig::default()
        };
        let net = Network::parse(&network_toml(cfg.devices)).unwrap();
        assert_eq!(net.sensors.len(), 3);
        let mut fleet = Fleet::new(&cfg);
        let now = DateTime::parse_from_rfc3339("2026-11-27T02:00:00.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut seen = HashSet::new();
        let mut last_value = [0.0f64; 3];
        for i in 0..30u64 {
            let (topic, payload) = fleet.message(i, now);
            let d = (i % 3) as usize;
            assert_eq!(topic, format!("waterline/{}/up", device_id(d)));
            let up = decode_native(&device_id(d), &payload).unwrap();
            assert_eq!(up.readings.len(), 4);
            assert!(up.rejected.is_empty());
            if i < 3 {
                // The newest reading is the publish time, to the microsecond.
                assert_eq!(
                    up.readings[3].time.to_rfc3339(),
                    "2026-11-27T02:00:00.123456+00:00"
                );
            }
            for r in &up.readings {
                assert_eq!(r.sensor.as_str(), sensor_id(d));
                assert_eq!(r.unit, Some(Unit::CubicMetre));
                assert!(net.sensor(&r.sensor).is_some());
                assert!(seen.insert((r.sensor.clone(), r.time)), "{r:?} twice");
                assert!(r.value > last_value[d], "registers count up");
                last_value[d] = r.value;
            }
        }
        assert_eq!(seen.len(), 120);
    }

    #[test]
    fn configuration_errors_name_the_field() {
        let field = |cfg: LoadConfig| match cfg.validate() {
            Err(LoadError::Invalid { field, reason }) => format!("{field}: {reason}"),
            other => panic!("expected a field error, got {other:?}"),
        };
        assert!(LoadConfig::default().validate().is_ok());
        let d = LoadConfig::default;
        assert!(field(LoadConfig { devices: 0, ..d() }).starts_with("devices: 0"));
        assert!(field(LoadConfig { rate: 0.0, ..d() }).starts_with("rate: 0"));
        assert!(field(LoadConfig { rate: -3.0, ..d() }).starts_with("rate: -3"));
        assert!(
            field(LoadConfig {
                rate: f64::NAN,
                ..d()
            })
            .starts_with("rate: NaN")
        );
        assert!(
            field(LoadConfig {
                rate: f64::INFINITY,
                ..d()
            })
            .starts_with("rate: inf")
        );
        assert!(field(LoadConfig { batch: 0, ..d() }).starts_with("batch: 0"));
        assert!(
            field(LoadConfig {
                batch: 10_001,
                ..d()
            })
            .starts_with("batch: 10001")
        );
        assert!(
            LoadConfig {
                batch: 10_000,
                ..d()
            }
            .validate()
            .is_ok()
        );
        assert!(
            field(LoadConfig {
                duration: Duration::ZERO,
                ..d()
            })
            .starts_with("duration:")
        );
        let e = field(LoadConfig {
            rate: 0.5,
            duration: Duration::from_secs(1),
            ..d()
        });
        assert!(e.contains("schedules no message"), "{e}");
        let e = field(LoadConfig {
            devices: 1,
            rate: 1_000.0,
            batch: 1_000,
            ..d()
        });
        assert!(e.starts_with("rate:") && e.contains("per device"), "{e}");
        assert!(
            field(LoadConfig {
                max_inflight: 0,
                ..d()
            })
            .starts_with("max_inflight")
        );
        assert!(
            field(LoadConfig {
                topic_prefix: "a/#".into(),
                ..d()
            })
            .starts_with("topic_prefix")
        );
        assert!(
            field(LoadConfig {
                broker_host: "".into(),
                ..d()
            })
            .starts_with("broker_host")
        );
        assert_eq!(
            LoadConfig {
                devices: 10,
                rate: 100.0,
                ..d()
            }
            .device_msgs_per_minute(),
            600.0
        );
    }

    #[test]
    fn the_report_says_what_fell_short() {
        let r = LoadReport {
            devices: 10,
            batch: 5,
            target_msgs_per_s: 1_000.0,
            messages_scheduled: 2_000,
            messages_published: 1_500,
            messages_acked: 1_400,
            readings: 7_500,
            elapsed: Duration::from_secs(2),
            achieved_msgs_per_s: 750.0,
            achieved_readings_per_s: 3_750.0,
            behind_max: ms(500),
            ack_wait: Duration::from_secs(10),
            connection_errors: 1,
            stopped_early: false,
        };
        let s = r.to_string();
        assert!(
            s.contains("published 1500 messages (7500 readings) in 2.00 s"),
            "{s}"
        );
        assert!(
            s.contains("750 messages/s (3750 readings/s) against a target of 1000"),
            "{s}"
        );
        assert!(
            s.contains("acknowledged 1400 of 1500 (gave up waiting after 10.0 s)"),
            "{s}"
        );
        assert!(s.contains("at most 500 ms behind schedule"), "{s}");
        assert!(s.contains("500 scheduled messages never published"), "{s}");
        assert!(s.contains("1 connection errors"), "{s}");
        assert!(!s.contains('\n'));
    }

    #[tokio::test]
    async fn an_unreachable_broker_is_an_error_not_a_hang() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = LoadConfig {
            broker_port: port,
            connect_timeout: Duration::from_millis(500),
            ..LoadConfig::default()
        };
        let (_tx, rx) = watch::channel(false);
        let e = run(&cfg, rx).await.unwrap_err();
        assert!(matches!(e, LoadError::Connect { .. }), "{e}");
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    }
}
