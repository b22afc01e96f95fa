//! The `waterline` binary as an operator runs it (cargo builds it before these tests): `serve` against the real PostgreSQL and
//! Mosquitto, `token create`, and the specific errors for bad input at start-up.

mod process;

use process::run;
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::TimeDelta;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use waterline_tests::fixtures::{self as support, publish_all, uplinks};
use waterline_tests::{Mosquitto, PgDb, eventually, free_port};

/// Whether `/health` answers 200 and the broker has confirmed the subscriptions (messages
/// published after that reach ingest).
async fn subscribed(port: u16) -> Option<()> {
    match http_get(port, "/health", None).await {
        Some((200, body)) if body.contains("\"subscribed\"") => Some(()),
        _ => None,
    }
}

/// A minimal HTTP/1.1 GET: returns the status code and body.
async fn http_get(port: u16, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_owned())
        .unwrap_or_default();
    Some((code, body))
}

/// `waterline serve` on the given services, quiet, with its spool beside the network file (so a
/// restarted process finds it again); callers may add settings before spawning.
fn serve_command(
    db_url: &str,
    broker: &Mosquitto,
    network: &std::path::Path,
    client_id: &str,
    port: u16,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_waterline"));
    cmd.args(["serve", "--database-url", db_url, "--broker", &broker.url()])
        .arg("--network")
        .arg(network)
        .args(["--http", &format!("127.0.0.1:{port}")])
        .env("WATERLINE_MQTT__CLIENT_ID", client_id)
        .env(
            "WATERLINE_INGEST__SPOOL_DIR",
            network.with_file_name("spool"),
        )
        .env("WATERLINE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Sends SIGTERM and checks that `serve` drains and exits 0 within 15 s.
async fn stops_cleanly_on_sigterm(child: &mut tokio::process::Child) {
    let pid = child.id().unwrap().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("serve stops within 15 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status}");
}

/// Starts `waterline serve` on the given services; the caller owns the child.
fn spawn_serve(
    db_url: &str,
    broker: &Mosquitto,
    network: &std::path::Path,
    client_id: &str,
    port: u16,
) -> tokio::process::Child {
    serve_command(db_url, broker, network, client_id, port)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stores_every_published_reading_and_a_redelivery_adds_no_row() {
    let broker = Mosquitto::start().unwrap();
    let db = PgDb::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("network.toml");
    std::fs::write(&net, support::NETWORK).unwrap();
    let port = free_port();
    let mut child = spawn_serve(&db.url, &broker, &net, &format!("serve-test-{port}"), port);

    let healthy = eventually(Duration::from_secs(30), || subscribed(port)).await;
    assert!(
        healthy.is_some(),
        "serve became healthy (store and broker reachable)"
    );

    let store = db.plain_store().await.unwrap();
    let msgs = uplinks(support::t0(), 250, 5);
    // A malformed payload in the middle of the stream must not stop it.
    let mut stream = msgs.clone();
    stream.insert(
        100,
        ("waterline/RTU-1/up".into(), b"\xff not json".to_vec()),
    );
    publish_all(broker.port, &stream).await.unwrap();
    let n = eventually(Duration::from_secs(30), || async {
        let c = store.count_readings().await.unwrap();
        (c >= 1000).then_some(c)
    })
    .await;
    assert_eq!(n, Some(1000));

    publish_all(broker.port, &msgs).await.unwrap();
    publish_all(
        broker.port,
        &uplinks(support::t0() + TimeDelta::days(1), 5, 5),
    )
    .await
    .unwrap();
    let n = eventually(Duration::from_secs(30), || async {
        let c = store.count_readings().await.unwrap();
        (c >= 1020).then_some(c)
    })
    .await;
    assert_eq!(n, Some(1020), "redelivered messages added no row");

    // The dead letter is visible through the API with a token from `waterline token create`.
    let (code, out, err) = run(&[
        "token",
        "create",
        "--role",
        "engineer",
        "--database-url",
        &db.url,
    ]);
    assert_eq!(code, 0, "{err}");
    let token = out.trim();
    assert!(token.starts_with("wl_"));
    let (code, body) = http_get(port, "/api/v1/dead-letters", Some(token))
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let letters: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(letters.as_array().unwrap().len(), 1);
    assert_eq!(letters[0]["payload_base64"], "/yBub3QganNvbg==");
    assert_eq!(
        http_get(port, "/health", None).await.unwrap().0,
        200,
        "still running"
    );

    // SIGTERM: drains and exits cleanly.
    stops_cleanly_on_sigterm(&mut child).await;
    store.close().await;
}

#[test]
fn a_bad_network_description_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("bad-network.toml");
    std::fs::write(&net, "timezone = \"UTC\"\n[[sensor]]\nid = \"x\"\nkind = \"flow\"\nunit = \"m3/h\"\ncolour = \"red\"\n").unwrap();
    let db = format!("sqlite://{}", dir.path().join("w.db").display());
    let (code, _, err) = run(&[
        "serve",
        "--database-url",
        &db,
        "--network",
        net.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("bad-network.toml, line 6"), "{err}");
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn a_bad_config_file_names_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[mqtt]\nbroker = \"mqtt://127.0.0.1:1\"\nkeepalive = 5\n",
    )
    .unwrap();
    let (code, _, err) = run(&["serve", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("keepalive"), "{err}");
}

#[test]
fn bad_database_urls_give_specific_errors() {
    let (code, _, err) = run(&[
        "db",
        "migrate",
        "--database-url",
        "mysql://root@localhost/x",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("must start with postgres:// or sqlite://"),
        "{err}"
    );

    let port = free_port();
    let url = format!("postgres://postgres:secret@127.0.0.1:{port}/nothing");
    let (code, _, err) = run(&["db", "migrate", "--database-url", &url]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot connect to database"), "{err}");
    assert!(!err.contains("secret"), "the password is redacted: {err}");
}

#[test]
fn token_create_refuses_an_unknown_role() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("w.db").display());
    let (code, out, err) = run(&["token", "create", "--role", "root", "--database-url", &db]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(err.contains("unknown role `root`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_readings_within_a_minute_and_stops_cleanly_on_ctrl_c() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_waterline"))
        .args(["demo", "--http", "127.0.0.1:0", "--backfill-hours", "3"])
        .arg("--data-dir")
        .arg(dir.path())
        // The default log filter: a clean run logs no error (the embedded broker logged its
        // clients' clean disconnects and its own shutdown as errors).
        .env_remove("WATERLINE_LOG")
        .env_remove("RUST_LOG")
        // Analytics every 10 s: the run after the back-fill must come at its interval even
        // while readings keep arriving (arrivals never push a run past its schedule).
        .env("WATERLINE_ANALYTICS__INTERVAL_SECS", "10")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut log = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let errors = tokio::spawn(async move {
        let mut errors = Vec::new();
        while let Ok(Some(line)) = log.next_line().await {
            if line.contains("ERROR") {
                errors.push(line);
            }
        }
        errors
    });
    let started = std::time::Instant::now();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut port, mut token) = (None, None);
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("demo prints its banner")
    {
        if let Some(rest) = line.trim().strip_prefix("API:") {
            let addr = rest.trim().trim_start_matches("http://");
            port = addr
                .split(['/', ':'])
                .nth(1)
                .and_then(|p| p.parse::<u16>().ok());
        }
        if let Some(rest) = line.trim().strip_prefix("login:") {
            token = rest.split_whitespace().last().map(str::to_owned);
        }
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    let port = port.expect("banner names the API address");
    let token = token.expect("banner prints an admin token");
    assert!(token.starts_with("wl_"));

    let points = eventually(Duration::from_secs(60), || async {
        let (code, body) = http_get(port, "/api/v1/readings?sensor=PRV-B", Some(&token)).await?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let n = v["points"].as_array()?.len();
        // Three hours of one-minute steps, back-filled in hourly batches.
        (code == 200 && n >= 170).then_some(n)
    })
    .await
    .expect("3 h of minute data arrive through the embedded broker");
    assert!(points <= 181, "one reading a minute, got {points}");
    // Every kind of device got through: Sparkplug, LoRaWAN and (live) CJ/T 188 meters, native
    // loggers, and the PRV controller and quality analyser (station S6) that ingest polls over
    // Modbus.
    let kinds = [
        "waterline:AMI-",
        "lora-",
        "cjt188-",
        "J5",
        "RTU-PRV-B-prv-outlet-p",
        "S6-cl2",
    ];
    let reported = eventually(Duration::from_secs(30), || async {
        let (_, body) = http_get(port, "/api/v1/sensors", Some(&token)).await?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let ids: Vec<&str> = v
            .as_array()?
            .iter()
            .filter(|s| !s["last_time"].is_null())
            .filter_map(|s| s["id"].as_str())
            .collect();
        kinds
            .iter()
            .all(|k| ids.iter().any(|id| id.starts_with(k)))
            .then_some(())
    })
    .await;
    assert!(reported.is_some(), "a reading from each of {kinds:?}");
    let analysed = eventually(Duration::from_secs(40), || async {
        let (_, body) = http_get(port, "/health", None).await?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let detail = v["components"]["analytics"]["detail"].as_str()?.to_owned();
        let n: u64 = detail
            .strip_prefix("last run: ")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        (n > 0).then_some(detail)
    })
    .await;
    assert!(
        analysed.is_some(),
        "the analytics job ran on the back-filled readings"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "within a minute of starting"
    );
    let (code, _) = http_get(port, "/health", None).await.unwrap();
    assert_eq!(code, 200);

    // Ctrl-C.
    Command::new("kill")
        .args(["-INT", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    let mut rest = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push_str(&line);
        rest.push('\n');
    }
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("demo stops within 15 s of Ctrl-C")
        .unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(rest.contains("Stopped cleanly"), "{rest}");
    let errors = errors.await.unwrap();
    assert!(errors.is_empty(), "errors logged: {errors:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_and_duplicates_nothing() {
    let broker = Mosquitto::start().unwrap();
    let db = PgDb::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("network.toml");
    std::fs::write(&net, support::NETWORK).unwrap();
    let store = db.plain_store().await.unwrap();
    let client_id = format!("kill9-{}", free_port());

    let port = free_port();
    let mut first = spawn_serve(&db.url, &broker, &net, &client_id, port);
    let healthy = eventually(Duration::from_secs(30), || async { subscribed(port).await }).await;
    assert!(healthy.is_some());

    let t0 = support::t0();
    let n = 4_000usize;
    let msgs = uplinks(t0, n, 20);
    publish_all(broker.port, &msgs).await.unwrap();
    let total = n as i64 * 4;
    // Kill while the backlog is being written.
    let partial = eventually(Duration::from_secs(30), || async {
        let c = store.count_readings().await.unwrap();
        (c > 0).then_some(c)
    })
    .await
    .expect("ingest started writing");
    first.start_kill().unwrap();
    let _ = first.wait().await;
    let at_kill = store.count_readings().await.unwrap();
    eprintln!("killed with {at_kill} of {total} readings stored (first seen {partial})");

    let port = free_port();
    let mut second = spawn_serve(&db.url, &broker, &net, &client_id, port);
    let n_stored = eventually(Duration::from_secs(60), || async {
        let c = store.count_readings().await.unwrap();
        (c >= total).then_some(c)
    })
    .await;
    assert_eq!(
        n_stored,
        Some(total),
        "every reading of the acknowledged stream stored once"
    );
    for sensor in ["A-flow", "B-p"] {
        let id = waterline_core::SensorId::parse(sensor).unwrap();
        let pts = store
            .readings(&id, t0, t0 + TimeDelta::minutes(n as i64), total)
            .await
            .unwrap();
        assert_eq!(pts.len(), n, "{sensor}");
    }
    second.start_kill().unwrap();
    let _ = second.wait().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_readings_survive_kill_9_during_a_database_outage() {
    let broker = Mosquitto::start().unwrap();
    let mut server = waterline_tests::PgServer::start().unwrap();
    let db_url = server.create_database("spool").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("network.toml");
    std::fs::write(&net, support::NETWORK).unwrap();

    let port = free_port();
    let mut first = spawn_serve(&db_url, &broker, &net, "spool-kill-a", port);
    let healthy = eventually(Duration::from_secs(30), || async { subscribed(port).await }).await;
    assert!(healthy.is_some());

    server.stop().unwrap();
    let t0 = support::t0();
    let n = 1_000usize;
    let msgs = uplinks(t0, n, 10);
    publish_all(broker.port, &msgs).await.unwrap();
    // Wait until serve has spooled (and so acknowledged) the whole stream, then kill it hard.
    // A spool record holds every message's topic and payload plus 16 bytes of framing.
    let whole: u64 = msgs
        .iter()
        .map(|(t, p)| (t.len() + p.len() + 16) as u64)
        .sum();
    let spool = dir.path().join("spool");
    let spooled = eventually(Duration::from_secs(60), || async {
        let bytes: u64 = std::fs::read_dir(&spool)
            .ok()?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        (bytes >= whole).then_some(bytes)
    })
    .await;
    assert!(spooled.is_some(), "serve spooled the outage's messages");
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.start_kill().unwrap();
    let _ = first.wait().await;

    // Database back; a new process with another MQTT client id, so only the spool can
    // deliver the earlier stream.
    server.resume().unwrap();
    let port = free_port();
    let mut second = spawn_serve(&db_url, &broker, &net, "spool-kill-b", port);
    let opts = waterline_store::StoreOptions {
        use_timescale: false,
        ..waterline_store::StoreOptions::default()
    };
    let store = waterline_store::Store::open(&db_url, opts).await.unwrap();
    let total = n as i64 * 4;
    let stored = eventually(Duration::from_secs(60), || async {
        let c = store.count_readings().await.ok()?;
        (c >= total).then_some(c)
    })
    .await;
    assert_eq!(stored, Some(total), "every spooled reading drained once");
    second.start_kill().unwrap();
    let _ = second.wait().await;
    store.close().await;
}

/// The value of a Prometheus counter in a `/metrics` exposition (0 when absent).
fn counter(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_ingest_processes_share_one_subscription_store_each_message_once_and_split_the_load()
{
    let broker = Mosquitto::start().unwrap();
    let db = PgDb::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = db.plain_store().await.unwrap();
    let mut children = Vec::new();
    let mut ports = Vec::new();
    for i in 0..3 {
        let sub = dir.path().join(format!("ingest-{i}"));
        std::fs::create_dir_all(&sub).unwrap();
        let net = sub.join("network.toml");
        std::fs::write(&net, support::NETWORK).unwrap();
        let port = free_port();
        let child = serve_command(&db.url, &broker, &net, &format!("shared-{i}"), port)
            .env("WATERLINE_MQTT__SHARED_GROUP", "ingest")
            .spawn()
            .unwrap();
        children.push(child);
        ports.push(port);
    }
    for &port in &ports {
        let healthy =
            eventually(Duration::from_secs(30), || async { subscribed(port).await }).await;
        assert!(healthy.is_some(), "instance on {port} healthy");
    }
    // Subscriptions are made right after connecting; give the broker a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let t0 = support::t0();
    let n = 3_000usize;
    publish_all(broker.port, &uplinks(t0, n, 30)).await.unwrap();
    let total = n as i64 * 4;
    let stored = eventually(Duration::from_secs(60), || async {
        let c = store.count_readings().await.ok()?;
        (c >= total).then_some(c)
    })
    .await;
    assert_eq!(stored, Some(total), "every message stored exactly once");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.count_readings().await.unwrap(), total);

    // A batch's messages are counted once its last transaction commits, which may be a
    // moment after its readings are visible (PostgreSQL writes a large batch's readings
    // first, its devices after): wait for the counters to settle, then a little longer, so a
    // message committed twice would show.
    let committed = || async {
        let mut per_instance = Vec::new();
        for &port in &ports {
            let (code, body) = http_get(port, "/metrics", None).await?;
            assert_eq!(code, 200);
            per_instance.push(counter(&body, "waterline_ingest_messages_committed_total"));
        }
        Some(per_instance)
    };
    eventually(Duration::from_secs(10), || async {
        let c = committed().await?;
        (c.iter().sum::<f64>() as usize >= n).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let per_instance = committed().await.unwrap();
    eprintln!("messages committed per instance: {per_instance:?}");
    assert_eq!(
        per_instance.iter().sum::<f64>() as usize,
        n,
        "no message processed twice"
    );
    for (i, c) in per_instance.iter().enumerate() {
        assert!(
            *c >= n as f64 / 10.0,
            "instance {i} took a share of the load: {per_instance:?}"
        );
    }
    for mut c in children {
        let _ = c.start_kill();
        let _ = c.wait().await;
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modbus_write_checks_range_reads_back_and_is_audited() {
    let device = waterline_tests::ModbusServer::start().await.unwrap();
    device.set(10, &[350]);
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("rtu.toml");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/modbus/dma-inlet-rtu.toml"
        ),
        &map,
    )
    .unwrap();
    let db = format!("sqlite://{}", dir.path().join("w.db").display());
    let cfg = dir.path().join("waterline.toml");
    std::fs::write(
        &cfg,
        format!(
            "[database]\nurl = \"{db}\"\n[modbus.models]\nrtu = \"rtu.toml\"\n[[modbus.devices]]\nid = \"PRV-7\"\naddress = \"{}\"\nmodel = \"rtu\"\n",
            device.addr
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap().to_owned();
    let cfg1 = cfg.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        run(&[
            "modbus",
            "write",
            "--config",
            &cfg1,
            "--device",
            "PRV-7",
            "--sensor",
            "PRV-7-prv-setpoint",
            "--value",
            "42.5",
            "--actor",
            "dispatcher-li",
        ])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("wrote 42.5, read back 42.5"), "{out}");
    assert_eq!(device.get(10), 425);

    let cfg2 = cfg.clone();
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        run(&[
            "modbus",
            "write",
            "--config",
            &cfg2,
            "--device",
            "PRV-7",
            "--sensor",
            "PRV-7-prv-setpoint",
            "--value",
            "80",
        ])
    })
    .await
    .unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("80"), "{err}");
    assert_eq!(
        device.get(10),
        425,
        "an out-of-range set point is never sent"
    );

    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&db).await.unwrap();
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT actor, action, detail FROM audit_log WHERE action LIKE 'modbus.%' ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].0, "dispatcher-li");
    assert_eq!(rows[0].1, "modbus.write");
    assert!(rows[0].2.contains("42.5"));
    assert_eq!(rows[1].1, "modbus.write.failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_analytics_job_on_stored_readings() {
    use waterline_core::{Network, Reading, SensorId};
    use waterline_store::Batch;

    const NET: &str = r#"
timezone = "Asia/Shanghai"
[[dma]]
id = "Z1"
inlets = ["Z1-in"]
min_service_pressure_m = 20.0
[[sensor]]
id = "Z1-in"
kind = "flow"
unit = "m3/h"
[[sensor]]
id = "Z1-p"
kind = "pressure"
unit = "m"
dma = "Z1"
"#;
    let db = PgDb::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let net_path = dir.path().join("network.toml");
    std::fs::write(&net_path, NET).unwrap();
    let net = Network::parse(NET).unwrap();
    let store = db.plain_store().await.unwrap();
    store.upsert_described_sensors(&net).await.unwrap();

    // Three days of five-minute data up to now; the pressure sags below the 20 m service
    // minimum for an hour ten hours ago.
    let now = chrono::Utc::now();
    let step = TimeDelta::minutes(5);
    let last = now - TimeDelta::seconds(now.timestamp() % 300);
    let sag = (now - TimeDelta::hours(10), now - TimeDelta::hours(9));
    let mut readings = Vec::new();
    let mut t = last - TimeDelta::days(3);
    let mut k = 0u32;
    while t <= last {
        let wobble = f64::from(k % 7) * 0.05;
        let p = if t >= sag.0 && t < sag.1 { 12.0 } else { 32.0 };
        readings.push(Reading::new(
            SensorId::parse("Z1-in").unwrap(),
            t,
            50.0 + wobble,
        ));
        readings.push(Reading::new(
            SensorId::parse("Z1-p").unwrap(),
            t,
            p + wobble,
        ));
        t += step;
        k += 1;
    }
    store
        .commit_batch(&Batch {
            readings,
            ..Batch::default()
        })
        .await
        .unwrap();

    // Two processes on the same database, both with the job on: the sag is still stored once
    // (the job lock that keeps their runs apart is tested in the store, joblock.rs).
    let analytics_serve = |port: u16| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_waterline"))
            .args(["serve", "--database-url", &db.url, "--network"])
            .arg(&net_path)
            .args(["--http", &format!("127.0.0.1:{port}")])
            .env("WATERLINE_INGEST__ENABLED", "false")
            .env("WATERLINE_ANALYTICS__INTERVAL_SECS", "10")
            .env("WATERLINE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let port = free_port();
    let mut child = analytics_serve(port);
    let mut twin = analytics_serve(free_port());
    let token = store
        .create_token(waterline_core::Role::Dispatcher, "disp")
        .await
        .unwrap();

    // The first run finds the sag as one pressure_low event; later runs do not repeat it.
    let events = eventually(Duration::from_secs(60), || async {
        let (code, body) = http_get(port, "/api/v1/events?kind=pressure_low", Some(&token)).await?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (code == 200 && !v.as_array()?.is_empty()).then_some(v)
    })
    .await
    .expect("the analytics job wrote a pressure_low event");
    let e = &events[0];
    assert_eq!(e["sensor"], "Z1-p");
    assert_eq!(e["state"], "open");
    assert!(e["end"].is_string(), "the sag ended: {e}");
    let (_, health) = http_get(port, "/health", None).await.unwrap();
    assert!(health.contains("analytics"), "{health}");

    // Compliance per point and day, from the KPI endpoint.
    let today = now.with_timezone(&net.timezone).date_naive();
    let uri =
        format!("/api/v1/kpis/daily?scope=point&subject=Z1-p&metric=compliance_percent&to={today}");
    // The run writes its events first and its KPIs next: wait for them too.
    let (body, kpis) = eventually(Duration::from_secs(30), || async {
        let (code, body) = http_get(port, &uri, Some(&token)).await?;
        let kpis: serde_json::Value = serde_json::from_str(&body).ok()?;
        (code == 200 && kpis.as_array()?.len() >= 3).then_some((body, kpis))
    })
    .await
    .expect("three days of compliance KPIs");
    let days = kpis.as_array().unwrap();
    let worst = days
        .iter()
        .filter_map(|d| d["value"].as_f64())
        .fold(f64::INFINITY, f64::min);
    // One hour of the sag's local day is below the band; that day holds at least the ten
    // hours since the sag began (and all 24 when it is not today), so at most about a tenth of
    // its readings fail.
    assert!(
        (85.0..100.0).contains(&worst),
        "an hour below the band: {body}"
    );

    // Later runs of both processes: still one event.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (_, body) = http_get(port, "/api/v1/events?kind=pressure_low", Some(&token))
        .await
        .unwrap();
    let again: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(again.as_array().unwrap().len(), 1, "{body}");

    stops_cleanly_on_sigterm(&mut child).await;
    stops_cleanly_on_sigterm(&mut twin).await;
    store.close().await;
}

/// The analytics job runs when readings arrive, not only at its interval: with an hour between
/// scheduled runs, a pressure sag published over MQTT is a `pressure_low` event within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_analytics_job_when_readings_arrive() {
    use waterline_core::{Network, Reading, SensorId};
    use waterline_store::Batch;

    const NET: &str = r#"
timezone = "Asia/Shanghai"
[[dma]]
id = "Z2"
inlets = ["Z2-in"]
min_service_pressure_m = 20.0
[[sensor]]
id = "Z2-in"
kind = "flow"
unit = "m3/h"
[[sensor]]
id = "Z2-p"
kind = "pressure"
unit = "m"
dma = "Z2"
"#;
    let broker = Mosquitto::start().unwrap();
    let db = PgDb::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let net_path = dir.path().join("network.toml");
    std::fs::write(&net_path, NET).unwrap();
    let net = Network::parse(NET).unwrap();
    let store = db.plain_store().await.unwrap();
    store.upsert_described_sensors(&net).await.unwrap();
    // Two healthy days up to an hour ago, already stored.
    let now = chrono::Utc::now();
    let step = TimeDelta::minutes(5);
    let hour_ago = now - TimeDelta::hours(1);
    let last = hour_ago - TimeDelta::seconds(hour_ago.timestamp() % 300);
    let mut readings = Vec::new();
    let mut t = last - TimeDelta::days(2);
    while t <= last {
        readings.push(Reading::new(SensorId::parse("Z2-in").unwrap(), t, 50.0));
        readings.push(Reading::new(SensorId::parse("Z2-p").unwrap(), t, 32.0));
        t += step;
    }
    store
        .commit_batch(&Batch {
            readings,
            ..Batch::default()
        })
        .await
        .unwrap();

    let port = free_port();
    let mut child = serve_command(
        &db.url,
        &broker,
        &net_path,
        &format!("arrival-{port}"),
        port,
    )
    .env("WATERLINE_ANALYTICS__INTERVAL_SECS", "3600")
    .env("WATERLINE_ANALYTICS__ARRIVAL_MIN_GAP_SECS", "5")
    .spawn()
    .unwrap();
    let token = store
        .create_token(waterline_core::Role::Dispatcher, "disp")
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(30), || subscribed(port))
            .await
            .is_some()
    );
    // The first (scheduled) run finds nothing.
    let ran = eventually(Duration::from_secs(30), || async {
        let (_, body) = http_get(port, "/health", None).await?;
        body.contains("last run").then_some(())
    })
    .await;
    assert!(ran.is_some(), "the first run happened");
    let (_, body) = http_get(port, "/api/v1/events?kind=pressure_low", Some(&token))
        .await
        .unwrap();
    assert_eq!(body.trim(), "[]");

    // The last hour arrives over MQTT: the pressure fell to 12 m for 30 minutes.
    let msgs: Vec<(String, Vec<u8>)> = (1..=12)
        .map(|k| {
            let t = last + step * k;
            let p = if (4..10).contains(&k) { 12.0 } else { 32.0 };
            let body = format!(
                r#"{{"device":"RTU-Z2","time":"{}","readings":[{{"sensor":"Z2-p","value":{p}}},{{"sensor":"Z2-in","value":50.0}}]}}"#,
                t.to_rfc3339()
            );
            ("waterline/RTU-Z2/up".to_owned(), body.into_bytes())
        })
        .collect();
    let published = std::time::Instant::now();
    publish_all(broker.port, &msgs).await.unwrap();
    let events = eventually(Duration::from_secs(60), || async {
        let (code, body) = http_get(port, "/api/v1/events?kind=pressure_low", Some(&token)).await?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (code == 200 && !v.as_array()?.is_empty()).then_some(v)
    })
    .await
    .expect("the arrival triggered a run that found the sag");
    assert_eq!(events[0]["sensor"], "Z2-p");
    assert!(
        published.elapsed() < Duration::from_secs(60),
        "well before the hourly run"
    );
    stops_cleanly_on_sigterm(&mut child).await;
}
