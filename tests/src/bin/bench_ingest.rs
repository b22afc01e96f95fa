//! Ingest benchmark: backlog drain through a real Mosquitto into PostgreSQL, against a plain
//! `COPY` of the same rows.
//!
//! ```sh
//! cargo build --release --bin waterline
//! cargo run --release -p waterline-tests --bin bench-ingest -- [--batched-messages N] \
//!     [--readings-per-message R] [--single-messages N] [--live-rate MSG_PER_S] [--live-seconds S] \
//!     [--live-batch R] [--live-devices N]
//! ```
//!
//! The live part runs `waterline serve` (the release binary next to this one) as its own
//! process and the simulator's load mode ([`waterline_sim::load`]) against it: `--live-devices`
//! devices publish `--live-rate` messages a second in all, `--live-batch` readings each, the
//! newest stamped with the time of publishing. It prints the load mode's report (what rate the
//! publisher actually achieved, whether it fell behind, PUBACKs), then the publish-to-commit
//! latency (p50, p99) from the service's `waterline_ingest_reading_age_at_commit_seconds`
//! histogram and the service's peak RSS.
//!
//! Each scenario: start ingest once to create its persistent session, stop it, publish the
//! backlog with QoS 1 (every message acknowledged by the broker), start ingest and time until
//! ingest reports every reading committed (its own counter; the store's count is checked after
//! the clock stops, so polling does not compete with ingest for the server). Then `COPY` the
//! same rows into an empty table with the same (series, time) key and report ingest's
//! throughput as a fraction of it; each timed phase starts after a `CHECKPOINT`. The broker
//! is a private Mosquitto with `max_queued_messages` raised (its default of 1,000 would drop
//! most of the backlog) and `max_inflight_messages 1000`; PostgreSQL is the test server
//! (`WATERLINE_TEST_DATABASE_URL`).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::Connection;
use tokio::sync::watch;
use waterline_core::Network;
use waterline_core::health::HealthBoard;
use waterline_ingest::{IngestConfig, MqttConfig};
use waterline_sim::load::{self, LoadConfig, LoadError};
use waterline_store::Store;
use waterline_tests::fixtures::publish_all;
use waterline_tests::{Mosquitto, PgDb};

/// How many distinct sensors the generated traffic spreads over.
const SENSORS: usize = 1_000;

struct Args {
    batched_messages: usize,
    readings_per_message: usize,
    single_messages: usize,
    live_rate: usize,
    live_seconds: usize,
    live_batch: usize,
    live_devices: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        batched_messages: 10_000,
        readings_per_message: 50,
        single_messages: 20_000,
        live_rate: 10_000,
        live_seconds: 20,
        live_batch: 1,
        live_devices: 1_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let n: usize = value
            .parse()
            .with_context(|| format!("{flag}: `{value}` is not a whole number"))?;
        match flag.as_str() {
            "--batched-messages" => args.batched_messages = n,
            "--readings-per-message" => args.readings_per_message = n,
            "--single-messages" => args.single_messages = n,
            "--live-rate" => args.live_rate = n,
            "--live-seconds" => args.live_seconds = n,
            "--live-batch" => args.live_batch = n,
            "--live-devices" => args.live_devices = n,
            other => anyhow::bail!(
                "unknown flag {other}; expected --batched-messages, --readings-per-message, --single-messages, --live-rate, --live-seconds, --live-batch, --live-devices"
            ),
        }
    }
    Ok(args)
}

fn network() -> Network {
    let mut toml = String::from("timezone = \"UTC\"\n");
    for i in 0..SENSORS {
        let _ = write!(
            toml,
            "[[sensor]]\nid = \"M-{i:05}\"\nkind = \"volume\"\nunit = \"m3\"\n"
        );
    }
    Network::parse(&toml).expect("generated network is valid")
}

/// `messages` uplinks of `per_message` readings each; reading k of the whole stream is sensor
/// k mod SENSORS at t0 + (k / SENSORS) minutes, so every (sensor, time) is distinct.
fn traffic(t0: DateTime<Utc>, messages: usize, per_message: usize) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::with_capacity(messages);
    for m in 0..messages {
        let device = format!("BENCH-{}", m % 100);
        let mut body = format!("{{\"device\":\"{device}\",\"readings\":[");
        for r in 0..per_message {
            let k = m * per_message + r;
            let t = t0 + TimeDelta::minutes((k / SENSORS) as i64);
            if r > 0 {
                body.push(',');
            }
            let _ = write!(
                body,
                "{{\"sensor\":\"M-{:05}\",\"value\":{}.{:03},\"time\":\"{}\"}}",
                k % SENSORS,
                k % 997,
                k % 1000,
                t.format("%Y-%m-%dT%H:%M:%SZ")
            );
        }
        body.push_str("]}");
        out.push((format!("waterline/{device}/up"), body.into_bytes()));
    }
    out
}

struct Ingest {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// Readings newly committed by this ingest (its own counter, told after each commit).
    committed: watch::Receiver<u64>,
}

async fn start_ingest(
    store: &Store,
    broker: &Mosquitto,
    client_id: &str,
) -> anyhow::Result<Ingest> {
    let mqtt = MqttConfig {
        broker: broker.url(),
        client_id: client_id.into(),
        ..MqttConfig::default()
    };
    // No spool: the benchmark measures the direct path from broker to store.
    let cfg = IngestConfig {
        spool_dir: None,
        max_messages_per_device_per_minute: 0,
        ..IngestConfig::default()
    };
    let (stop, rx) = watch::channel(false);
    let (arrivals, committed) = watch::channel(0);
    let task = waterline_ingest::run(
        store.clone(),
        mqtt,
        cfg,
        Vec::new(),
        HealthBoard::new(),
        rx,
        Some(arrivals),
    )
    .await?;
    Ok(Ingest {
        stop,
        task,
        committed,
    })
}

impl Ingest {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

struct Drain {
    readings: usize,
    messages: usize,
    seconds: f64,
}

async fn drain(
    store: &Store,
    db_url: &str,
    broker: &Mosquitto,
    name: &str,
    msgs: &[(String, Vec<u8>)],
    readings: usize,
) -> anyhow::Result<Drain> {
    // The first run creates the persistent session and its subscription.
    let session = start_ingest(store, broker, name).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    session.stop().await;
    let before = store.count_readings().await? as usize;

    let published = Instant::now();
    publish_all(broker.port, msgs).await?;
    println!(
        "  published {} messages with QoS 1 in {:.2} s ({:.0} messages/s)",
        msgs.len(),
        published.elapsed().as_secs_f64(),
        msgs.len() as f64 / published.elapsed().as_secs_f64()
    );

    checkpoint(db_url).await?;
    // Timed from start until ingest reports every reading committed: its own counter, so the
    // benchmark does not compete with it for PostgreSQL (a `count(*)` every few milliseconds
    // over a growing table took a good share of the server's core). The store's count is
    // checked afterwards.
    let started = Instant::now();
    let mut ingest = start_ingest(store, broker, name).await?;
    let all_in = ingest.committed.wait_for(|&n| n as usize >= readings);
    let outcome = tokio::time::timeout(Duration::from_secs(600), all_in)
        .await
        .map(|r| r.is_ok());
    match outcome {
        Ok(true) => {}
        Ok(false) => anyhow::bail!("ingest stopped before the drain completed"),
        Err(_) => anyhow::bail!(
            "drain incomplete after 600 s: {} of {readings} readings",
            *ingest.committed.borrow()
        ),
    }
    let seconds = started.elapsed().as_secs_f64();
    ingest.stop().await;
    let stored = store.count_readings().await? as usize - before;
    anyhow::ensure!(
        stored == readings,
        "ingest reported {readings} readings committed but the store holds {stored} new ones"
    );
    Ok(Drain {
        readings,
        messages: msgs.len(),
        seconds,
    })
}

/// Writes out every dirty buffer, so that a timed phase does not pay for the previous one's
/// writes (ingest's half million rows would otherwise land in the middle of the `COPY`).
async fn checkpoint(url: &str) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    if let Err(e) = sqlx::query("CHECKPOINT").execute(&mut conn).await {
        // Needs superuser or pg_checkpoint; the figures are then noisier, not wrong.
        println!("  (no CHECKPOINT before this phase: {e})");
    }
    conn.close().await?;
    Ok(())
}

async fn copy_baseline(url: &str, t0: DateTime<Utc>, rows: usize) -> anyhow::Result<f64> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::query("CREATE TABLE bench_copy (series_id integer NOT NULL, time timestamptz NOT NULL, value double precision NOT NULL, PRIMARY KEY (series_id, time))")
        .execute(&mut conn)
        .await?;
    let mut text = String::with_capacity(rows * 40);
    for k in 0..rows {
        let t = t0 + TimeDelta::minutes((k / SENSORS) as i64);
        let _ = writeln!(
            text,
            "{}\t{}\t{}.{:03}",
            k % SENSORS,
            t.format("%Y-%m-%d %H:%M:%S+00"),
            k % 997,
            k % 1000
        );
    }
    checkpoint(url).await?;
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw("COPY bench_copy (series_id, time, value) FROM STDIN")
        .await?;
    copy.send(text.as_bytes()).await?;
    let n = copy.finish().await?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(n as usize == rows, "COPY stored {n} of {rows} rows");
    conn.close().await?;
    Ok(rows as f64 / seconds)
}

fn peak_rss_mib(pid: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let broker = Mosquitto::start()?;
    let db = PgDb::create().await?;
    let store = db.plain_store().await?;
    store.upsert_described_sensors(&network()).await?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "ingest backlog-drain benchmark: publisher, Mosquitto, ingest and PostgreSQL ({}) on this machine ({cores} cores)",
        store.backend().as_str()
    );

    let t0 = Utc::now() - TimeDelta::days(30);
    let per = args.readings_per_message;
    let batched = traffic(t0, args.batched_messages, per);
    println!(
        "batched: {} messages × {per} readings",
        args.batched_messages
    );
    let b = drain(
        &store,
        &db.url,
        &broker,
        "bench-batched",
        &batched,
        args.batched_messages * per,
    )
    .await?;
    drop(batched);
    let rate_b = b.readings as f64 / b.seconds;
    println!(
        "  drained {} readings in {:.2} s: {:.0} readings/s ({:.0} messages/s)",
        b.readings,
        b.seconds,
        rate_b,
        b.messages as f64 / b.seconds
    );

    let t1 = t0 + TimeDelta::days(10);
    let single = traffic(t1, args.single_messages, 1);
    println!("single-reading: {} messages", args.single_messages);
    let s = drain(
        &store,
        &db.url,
        &broker,
        "bench-single",
        &single,
        args.single_messages,
    )
    .await?;
    println!(
        "  drained {} messages in {:.2} s: {:.0} messages/s",
        s.messages,
        s.seconds,
        s.messages as f64 / s.seconds
    );

    let copy_rate = copy_baseline(&db.url, t0, b.readings).await?;
    println!(
        "COPY of the same {} rows into an empty table keyed by (series, time): {:.0} rows/s",
        b.readings, copy_rate
    );
    println!("ingest (batched) / COPY = {:.2}", rate_b / copy_rate);
    if let Some(mib) = peak_rss_mib("self") {
        println!("peak RSS of this process (ingest + publisher + generated traffic): {mib:.0} MiB");
    }
    if args.live_rate > 0 {
        live(&args, &db.url, &store).await?;
    }
    store.close().await;
    Ok(())
}

async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        code,
        text.split_once("\r\n\r\n")
            .map(|x| x.1.to_owned())
            .unwrap_or_default(),
    ))
}

/// Quantile `q` from a Prometheus histogram exposition (linear within a bucket).
fn quantile(exposition: &str, metric: &str, q: f64) -> Option<f64> {
    let prefix = format!("{metric}_bucket{{le=\"");
    let mut buckets: Vec<(f64, f64)> = exposition
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    let target = q * total;
    let (mut lo, mut below) = (0.0, 0.0);
    for (le, cum) in buckets {
        if cum >= target {
            if le.is_infinite() {
                return Some(lo);
            }
            let share = if cum > below {
                (target - below) / (cum - below)
            } else {
                1.0
            };
            return Some(lo + (le - lo) * share);
        }
        lo = le;
        below = cum;
    }
    None
}

/// Live load: `waterline serve` as its own process, the simulator's load mode, latency and
/// RSS.
async fn live(args: &Args, db_url: &str, store: &Store) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("waterline");
    anyhow::ensure!(
        bin.exists(),
        "{} not found: build it first with `cargo build --release --bin waterline`",
        bin.display()
    );
    // Checked before `serve` starts, with the flags' names (the broker's port comes later).
    let cfg = LoadConfig {
        client_id: "bench-live-pub".into(),
        devices: args.live_devices,
        rate: args.live_rate as f64,
        batch: args.live_batch,
        duration: Duration::from_secs(args.live_seconds as u64),
        ..LoadConfig::default()
    };
    if let Err(LoadError::Invalid { field, reason }) = cfg.validate() {
        let flag = match field {
            "devices" => "--live-devices",
            "rate" => "--live-rate",
            "batch" => "--live-batch",
            "duration" => "--live-seconds",
            other => other,
        };
        anyhow::bail!("{flag}: {reason}");
    }
    let broker = Mosquitto::start()?;
    let dir = tempfile::tempdir()?;
    let net = dir.path().join("network.toml");
    std::fs::write(&net, load::network_toml(args.live_devices))?;
    let port = waterline_tests::free_port();
    let mut serve = tokio::process::Command::new(&bin)
        .args(["serve", "--database-url", db_url, "--broker", &broker.url()])
        .arg("--network")
        .arg(&net)
        .args(["--http", &format!("127.0.0.1:{port}")])
        .env("WATERLINE_MQTT__CLIENT_ID", "bench-live")
        .env("WATERLINE_INGEST__SPOOL_DIR", dir.path().join("spool"))
        .env("WATERLINE_INGEST__MAX_MESSAGES_PER_DEVICE_PER_MINUTE", "0")
        .env("WATERLINE_LOG", "warn")
        .kill_on_drop(true)
        .spawn()?;
    let pid = serve.id().context("serve has no pid")?.to_string();
    let started = Instant::now();
    while !matches!(http_get(port, "/health").await, Some((200, _))) {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "serve did not become healthy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = store.count_readings().await? as usize;

    println!(
        "live: {} devices publishing {} messages/s of {} reading{} for {} s into `waterline serve`",
        args.live_devices,
        args.live_rate,
        args.live_batch,
        if args.live_batch == 1 { "" } else { "s" },
        args.live_seconds
    );
    let cfg = LoadConfig {
        broker_port: broker.port,
        ..cfg
    };
    let (_stop, stopped) = watch::channel(false);
    let report = load::run(&cfg, stopped).await?;
    println!("  {report}");
    let target = before + report.readings as usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    while (store.count_readings().await? as usize) < target {
        anyhow::ensure!(
            Instant::now() < deadline,
            "live stream not fully committed within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, metrics) = http_get(port, "/metrics").await.context("no /metrics")?;
    let metric = "waterline_ingest_reading_age_at_commit_seconds";
    match (
        quantile(&metrics, metric, 0.5),
        quantile(&metrics, metric, 0.99),
    ) {
        (Some(p50), Some(p99)) => println!(
            "  publish-to-commit latency of each message's newest reading: p50 {:.1} ms, p99 {:.1} ms (from the service's histogram)",
            p50 * 1e3,
            p99 * 1e3
        ),
        _ => println!("  publish-to-commit latency: histogram empty"),
    }
    if let Some(mib) = peak_rss_mib(&pid) {
        println!("  peak RSS of the waterline serve process: {mib:.0} MiB");
    }
    let _ = serve.start_kill();
    let _ = serve.wait().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let text = "m_bucket{le=\"0.01\"} 50\nm_bucket{le=\"0.02\"} 90\nm_bucket{le=\"0.1\"} 100\nm_bucket{le=\"+Inf\"} 100\nm_sum 1\nm_count 100\n";
        assert!((quantile(text, "m", 0.5).unwrap() - 0.01).abs() < 1e-12);
        assert!((quantile(text, "m", 0.7).unwrap() - 0.015).abs() < 1e-12);
        assert!((quantile(text, "m", 0.99).unwrap() - 0.092).abs() < 1e-12);
        assert_eq!(quantile("", "m", 0.5), None);
    }
}
