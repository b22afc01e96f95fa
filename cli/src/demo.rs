//! `waterline demo`: everything in one process on embedded defaults, fed by the digital twin.
//!
//! The built-in three-DMA network runs on the wall clock in one-minute steps from
//! `--backfill-hours` ago: the past is back-filled at once, then the twin goes on live. Its
//! field devices ([`waterline_sim::field`]) publish through the broker in every payload format
//! ingest speaks (native JSON, Sparkplug B, ChirpStack, CJ/T 188) and misbehave now and then;
//! the PRV controller and the last station's quality analyser serve Modbus TCP and ingest
//! polls them, so a dispatcher applying a PRV recommendation changes the twin's pressures.
//! The scenario (`DATA_DIR/scenario.toml`, rewritten at each start) opens a 12 mm burst in
//! area B ten hours before the start and a contamination incident at station S1 twenty hours
//! before (when the back-fill reaches that far), so the dashboards have something to show at
//! once.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use tokio::sync::watch;
use waterline_core::Role;
use waterline_core::health::HealthBoard;
use waterline_sim::field::fleet::{FleetConfig, Role as DeviceRole};
use waterline_sim::field::publish::BrokerConfig;
use waterline_sim::field::{self, FieldConfig};
use waterline_sim::twin::export::{self, SimRequest};
use waterline_sim::twin::live::{self, LiveConfig};

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
    /// Hours of history the simulated devices publish at start (three weeks by default: the
    /// leakage baselines and the PRV recommendation need that much).
    #[arg(long, default_value_t = 504)]
    pub backfill_hours: u32,
    /// Seed of the twin's random draws (demand, faults, misbehaviour).
    #[arg(long, default_value_t = 2018)]
    pub seed: u64,
}

/// Minutes between the twin's steps in the demo.
const STEP_MINUTES: u32 = 1;
/// Days the twin runs on after the back-fill (the demo stops before, on Ctrl-C).
const LIVE_DAYS: u32 = 30;

/// The demo's scenario: a burst in B and a contamination incident shortly before the start,
/// random faults and incidents spread over the rest.
fn scenario(now: DateTime<Utc>) -> String {
    let at = |h: i64| {
        (now - TimeDelta::hours(h))
            .duration_trunc(TimeDelta::minutes(5))
            .expect("a valid time")
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    format!(
        "# Written by `waterline demo` at each start.\n\
         timezone = \"Asia/Shanghai\"\n\
         random_leaks = 0\n\
         random_quality_incidents = 4\n\
         random_sensor_faults = 6\n\
         random_pressure_faults = 2\n\n\
         [[leak]]\npipe = \"B-2\"\nstart = \"{}\"\ndiameter_mm = 12.0\ntype = \"abrupt\"\n\n\
         [[quality_incident]]\ntype = \"contamination\"\nstation = \"{}\"\nstart = \"{}\"\nduration = \"3h\"\n",
        at(10),
        DEMO_STATION,
        at(20),
    )
}

/// The quality station the scenario's incident reaches (the built-in network's first).
const DEMO_STATION: &str = "S1";

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
    let default_db = format!("sqlite://{}", args.data_dir.join("waterline.db").display());
    let network_path = args.data_dir.join("network.toml");
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

    // The twin, from `--backfill-hours` ago, and its devices (held until ingest listens).
    let now = Utc::now();
    let step = TimeDelta::minutes(i64::from(STEP_MINUTES));
    let start = (now - TimeDelta::hours(i64::from(args.backfill_hours)))
        .duration_trunc(step)
        .context("demo start time")?;
    let scenario_path = args.data_dir.join("scenario.toml");
    std::fs::write(&scenario_path, scenario(now))
        .with_context(|| format!("cannot write {}", scenario_path.display()))?;
    let days = (args.backfill_hours.div_ceil(24)) + LIVE_DAYS;
    let (twin, tags) = export::build(&SimRequest {
        network: None,
        days,
        seed: args.seed,
        ideal: false,
        scenario: Some(scenario_path),
        start: Some(start),
        step_minutes: STEP_MINUTES,
        export: PathBuf::new(),
        progress: false,
    })?;
    let fleet = FleetConfig {
        topic_prefix: cfg.mqtt.topic_prefix.clone(),
        cjt188_prefix: cfg
            .mqtt
            .cjt188()
            .unwrap_or(&FleetConfig::default().cjt188_prefix)
            .to_owned(),
        // The last station's analyser is polled over Modbus (its history starts live).
        modbus_stations: 1,
        ..FleetConfig::default()
    };
    let prepared = field::prepare(twin, &tags, false, fleet)?;
    std::fs::write(&network_path, prepared.network_toml())
        .with_context(|| format!("cannot write {}", network_path.display()))?;
    let devices = describe_fleet(prepared.fleet());
    let (host, port) = cfg.mqtt.broker_addr().map_err(anyhow::Error::msg)?;
    let twin_run = prepared
        .start(FieldConfig {
            broker: BrokerConfig {
                host,
                port,
                client_id: format!("{}-devices", cfg.mqtt.client_id),
                max_inflight: 100,
            },
            live: LiveConfig {
                speed: None,
                listen: [127, 0, 0, 1].into(),
            },
            wall_clock: true,
            progress: false,
            hold: true,
        })
        .await?;
    // Ingest polls the PRV controllers (and the set-point writer reaches them) and the Modbus
    // quality analysers, once a step.
    let polled = twin_run
        .controllers()
        .iter()
        .map(|c| {
            (
                c.device.clone(),
                c.addr,
                live::CONTROLLER_MODEL,
                live::CONTROLLER_MAP,
            )
        })
        .chain(twin_run.analysers().iter().map(|a| {
            (
                a.device.clone(),
                a.addr,
                field::analysers::ANALYSER_MODEL,
                field::analysers::ANALYSER_MAP,
            )
        }));
    for (device, addr, model, map) in polled {
        let path = args.data_dir.join(format!("{model}.toml"));
        std::fs::write(&path, map).with_context(|| format!("cannot write {}", path.display()))?;
        cfg.modbus.models.insert(model.to_owned(), path);
        cfg.modbus
            .devices
            .push(waterline_ingest::modbus_poll::ModbusDevice {
                id: device,
                address: addr.to_string(),
                transport: Default::default(),
                unit_id: 1,
                model: model.to_owned(),
                poll_interval_ms: u64::from(STEP_MINUTES) * 60_000,
                timeout_ms: 3_000,
            });
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
    twin_run.release();

    println!("Waterline demo is running.");
    println!("  broker:     {}", cfg.mqtt.broker);
    println!(
        "  store:      {} ({})",
        waterline_store::redact_url(&cfg.database.url),
        store.backend().as_str()
    );
    println!("  network:    {}", network_path.display());
    println!(
        "  twin:       built-in network, {STEP_MINUTES}-min steps from {} ({} h back-filled, then live)",
        start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        args.backfill_hours
    );
    println!("  devices:    {devices}");
    for c in twin_run.controllers() {
        println!(
            "  modbus:     PRV {} controller {} on {}",
            c.prv, c.device, c.addr
        );
    }
    for a in twin_run.analysers() {
        println!(
            "  modbus:     quality analyser of station {} on {}",
            a.device, a.addr
        );
    }
    println!("  API:        http://{http}/api/v1/sensors");
    println!("  health:     http://{http}/health    metrics: http://{http}/metrics");
    println!("  login:      admin bearer token {token}");
    println!("  try:        curl -H 'Authorization: Bearer {token}' http://{http}/api/v1/sensors");
    println!("Press Ctrl-C to stop.");

    services::stop_signal().await;
    println!("Stopping: the devices send what they hold, ingest drains, the store closes…");
    match twin_run.finish().await {
        Ok(r) => tracing::info!(
            messages = r.published.messages,
            readings = r.traffic.readings,
            steps = r.state.steps_done,
            "simulated devices stopped"
        ),
        Err(e) => tracing::warn!(error = %e, "simulated devices stopped with an error"),
    }
    let _ = stop_tx.send(true);
    running.join().await;
    let stored = store.count_readings().await.unwrap_or(0);
    store.close().await;
    println!("Stopped cleanly; {stored} readings stored in total.");
    Ok(())
}

/// One line saying what devices the fleet has.
fn describe_fleet(fleet: &waterline_sim::field::fleet::Fleet) -> String {
    let count = |r: DeviceRole| fleet.devices.iter().filter(|d| d.role == r).count();
    let meters: Vec<String> = fleet
        .meters_by_protocol()
        .into_iter()
        .map(|(p, n)| format!("{n} {p}"))
        .collect();
    format!(
        "{} RTUs, {} pressure loggers, {} quality stations, smart meters: {} (MQTT); PRV controllers (Modbus TCP)",
        count(DeviceRole::Rtu),
        count(DeviceRole::PressureLogger),
        count(DeviceRole::QualityStation),
        meters.join(", ")
    )
}
