//! `waterline demo`: everything in one process on embedded defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use tokio::sync::watch;
use waterline_core::Role;
use waterline_core::health::HealthBoard;
use waterline_sim::demo::DemoSimConfig;

use crate::config::{Config, Overrides};
use crate::services;

/// Options of `waterline demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Store URL; default: an embedded SQLite file in the data directory.
    #[arg(long)]
    pub database_url: Option<String>,
    /// External MQTT broker, mqtt://HOST:PORT; default: an embedded broker on a free port.
    #[arg(long)]
    pub broker: Option<String>,
    /// HTTP address; default 127.0.0.1:8080, or the next free port.
    #[arg(long)]
    pub http: Option<String>,
    /// Where the demo keeps its database and network description.
    #[arg(long, default_value = "waterline-demo")]
    pub data_dir: PathBuf,
    /// Hours of history the simulated devices publish at start.
    #[arg(long, default_value_t = 48)]
    pub backfill_hours: u32,
    /// Seconds between live uploads of the simulated devices.
    #[arg(long, default_value_t = 10)]
    pub live_interval_secs: u64,
}

fn env_has(names: &[&str]) -> bool {
    names.iter().any(|n| std::env::var_os(n).is_some())
}

/// Binds the requested HTTP address, or 127.0.0.1:8080 and the ports after it, or any port.
async fn bind_http(requested: Option<&str>) -> anyhow::Result<tokio::net::TcpListener> {
    if let Some(addr) = requested {
        let addr: SocketAddr = addr
            .parse()
            .with_context(|| format!("--http `{addr}` is not an address like 127.0.0.1:8080"))?;
        return tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"));
    }
    for port in 8080..8100 {
        if let Ok(l) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            return Ok(l);
        }
    }
    Ok(tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?)
}

/// Runs the demo until Ctrl-C.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;

    let broker = match &args.broker {
        Some(b) => b.clone(),
        None if env_has(&["WATERLINE_BROKER", "WATERLINE_MQTT__BROKER"]) => String::new(),
        None => {
            let addr = crate::broker::start_embedded()?;
            format!("mqtt://{addr}")
        }
    };
    let network_path = args.data_dir.join("network.toml");
    std::fs::write(&network_path, waterline_sim::demo::network_toml())
        .with_context(|| format!("cannot write {}", network_path.display()))?;

    let default_db = format!("sqlite://{}", args.data_dir.join("waterline.db").display());
    let flags = Overrides {
        database_url: args.database_url.clone().or_else(|| {
            (!env_has(&["WATERLINE_DATABASE_URL", "WATERLINE_DATABASE__URL"])).then_some(default_db)
        }),
        broker: (!broker.is_empty()).then_some(broker),
        network: Some(network_path.clone()),
        http: None,
    };
    let mut cfg = Config::load(None, std::env::vars(), &flags)?;
    cfg.mqtt.client_id = format!("{}-demo", cfg.mqtt.client_id);
    // Analytics every minute, so the back-filled history shows KPIs and events soon.
    if std::env::var_os("WATERLINE_ANALYTICS__INTERVAL_SECS").is_none() {
        cfg.analytics.interval_secs = 60;
    }
    if std::env::var_os("WATERLINE_INGEST__SPOOL_DIR").is_none() {
        cfg.ingest.spool_dir = Some(args.data_dir.join("spool"));
    }

    let network = services::load_network(&network_path)?;
    let store = services::open_store(&cfg).await?;
    store.upsert_described_sensors(&network).await?;
    let token = store.create_token(Role::Admin, "demo admin").await?;

    let listener = bind_http(args.http.as_deref()).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let health = HealthBoard::new();
    let running = services::start(
        &cfg,
        Some(&network),
        &store,
        &health,
        &stop_rx,
        Some(listener),
    )
    .await?;
    let http = running.http_addr.context("HTTP server did not start")?;

    let (host, port) = cfg.mqtt.broker_addr().map_err(anyhow::Error::msg)?;
    let sim_cfg = DemoSimConfig {
        broker_host: host,
        broker_port: port,
        topic_prefix: cfg.mqtt.topic_prefix.clone(),
        backfill_hours: args.backfill_hours,
        live_interval: std::time::Duration::from_secs(args.live_interval_secs.max(1)),
        ..DemoSimConfig::default()
    };
    // Devices start publishing once ingest's subscriptions are confirmed, so that the
    // back-filled history is not published into the void.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !health
        .snapshot()
        .get(waterline_ingest::BROKER_COMPONENT)
        .is_some_and(|b| b.ok && b.detail == waterline_ingest::SUBSCRIBED)
    {
        if std::time::Instant::now() > deadline {
            tracing::warn!(
                "ingest has not confirmed its subscriptions after 15 s; starting the devices anyway"
            );
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let sim = tokio::spawn(waterline_sim::demo::run(sim_cfg, stop_rx.clone()));

    println!("Waterline demo is running.");
    println!("  broker:     {}", cfg.mqtt.broker);
    println!(
        "  store:      {} ({})",
        waterline_store::redact_url(&cfg.database.url),
        store.backend().as_str()
    );
    println!("  network:    {}", network_path.display());
    println!(
        "  devices:    3 DMA RTUs, 18 smart meters, 1 quality station ({} h of history, then live)",
        args.backfill_hours
    );
    println!("  API:        http://{http}/api/v1/sensors");
    println!("  health:     http://{http}/health    metrics: http://{http}/metrics");
    println!("  login:      admin bearer token {token}");
    println!("  try:        curl -H 'Authorization: Bearer {token}' http://{http}/api/v1/sensors");
    println!("Press Ctrl-C to stop.");

    services::stop_signal().await;
    println!("Stopping: draining ingest, closing the store…");
    let _ = stop_tx.send(true);
    match sim.await {
        Ok(Ok(stats)) => tracing::info!(
            messages = stats.messages,
            readings = stats.readings,
            "simulator stopped"
        ),
        Ok(Err(e)) => tracing::warn!(error = %e, "simulator stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "simulator task failed"),
    }
    running.join().await;
    let stored = store.count_readings().await.unwrap_or(0);
    store.close().await;
    println!("Stopped cleanly; {stored} readings stored in total.");
    Ok(())
}
