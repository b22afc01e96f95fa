//! The `waterline` binary's commands, as a library so that tests can drive them.
//!
//! Subcommands (CONTRACTS §6): `serve` (the production daemon), `demo` (everything embedded),
//! `token create`, `db migrate`, `device list|register|approve|retire`, `modbus write`,
//! `sim` (the digital twin's export), `analyze leakage|pressure|quality`, `evaluate leakage|quality`. Each wires the
//! crates together; none holds domain logic of its own.

pub mod analyze;
pub mod broker;
pub mod config;
pub mod demo;
pub mod pressure;
pub mod prv_schedule;
pub mod quality;
pub mod scheduler;
pub mod services;
pub mod setpoints;
pub mod sim;
pub mod telemetry;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::sync::watch;
use waterline_core::health::HealthBoard;
use waterline_core::{DeviceId, Role};
use waterline_store::DeviceStatus;

use crate::config::{Config, Overrides};

/// Waterline: telemetry and analytics for a water utility's network.
#[derive(Debug, Parser)]
#[command(name = "waterline", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Flags shared by the commands that open the store or the services.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CommonArgs {
    /// Configuration file (TOML); env WATERLINE_CONFIG.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Store URL: postgres://USER@HOST:PORT/DB or sqlite://PATH.
    #[arg(long)]
    pub database_url: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the production daemon: ingest and the HTTP API.
    Serve {
        #[command(flatten)]
        common: CommonArgs,
        /// MQTT broker, mqtt://HOST:PORT.
        #[arg(long)]
        broker: Option<String>,
        /// Network description (network.toml).
        #[arg(long)]
        network: Option<PathBuf>,
        /// HTTP listen address, e.g. 127.0.0.1:8080.
        #[arg(long)]
        http: Option<String>,
    },
    /// Run everything in one process on embedded defaults (broker, SQLite, simulator).
    Demo(demo::DemoArgs),
    /// API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Database administration.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// The device registry.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Simulate a network (EPANET .inp) and export readings, network.toml and the truth.
    Sim(sim::SimArgs),
    /// Modbus devices of the configuration.
    Modbus {
        #[command(subcommand)]
        command: ModbusCommand,
    },
    /// Replay a readings file through the detectors (CONTRACTS §3).
    Analyze {
        #[command(subcommand)]
        command: analyze::AnalyzeCommand,
    },
    /// Score the detectors against ground truth (e.g. a simulator export).
    Evaluate {
        #[command(subcommand)]
        command: analyze::EvaluateCommand,
    },
}

/// `waterline modbus …`.
#[derive(Debug, Subcommand)]
pub enum ModbusCommand {
    /// Write a set point (e.g. a PRV outlet pressure) to a writable point, check it by reading
    /// it back, and record who wrote what in the audit log.
    Write {
        /// Device id from `[[modbus.devices]]`.
        #[arg(long)]
        device: String,
        /// The point's sensor id (from the device's register map).
        #[arg(long)]
        sensor: String,
        /// Value in the point's unit.
        #[arg(long)]
        value: f64,
        /// Who asks for the write (kept in the audit log).
        #[arg(long, default_value = "cli")]
        actor: String,
        #[command(flatten)]
        common: CommonArgs,
    },
}

/// `waterline token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a bearer token and print it on stdout (shown once; only its hash is stored).
    Create {
        /// admin, engineer, dispatcher, lab or viewer.
        #[arg(long)]
        role: String,
        /// What the token is for (kept in the audit log).
        #[arg(long, default_value = "cli")]
        label: String,
        #[command(flatten)]
        common: CommonArgs,
    },
}

/// `waterline db …`.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply migrations (and the TimescaleDB layout when available), then exit.
    Migrate {
        #[command(flatten)]
        common: CommonArgs,
    },
}

/// `waterline device …`.
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// List devices with their status and first and last contact.
    List {
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Register a device ahead of its first contact (active).
    Register {
        id: String,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Approve a pending device: its data is stored from now on.
    Approve {
        id: String,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Retire a device: its uplinks are dead-lettered.
    Retire {
        id: String,
        #[command(flatten)]
        common: CommonArgs,
    },
}

fn load_config(common: &CommonArgs, flags: Overrides) -> anyhow::Result<Config> {
    let file = common
        .config
        .clone()
        .or_else(|| std::env::var_os("WATERLINE_CONFIG").map(PathBuf::from));
    let flags = Overrides {
        database_url: common.database_url.clone(),
        ..flags
    };
    Ok(Config::load(file.as_deref(), std::env::vars(), &flags)?)
}

async fn set_status(common: &CommonArgs, id: &str, status: DeviceStatus) -> anyhow::Result<()> {
    let id = DeviceId::parse(id)?;
    let cfg = load_config(common, Overrides::default())?;
    let store = services::open_store(&cfg).await?;
    store.set_device_status(&id, status, "cli").await?;
    println!("device {id}: {}", status.as_str());
    store.close().await;
    Ok(())
}

/// An error and its causes on one line, each cause once: libraries such as sqlx repeat their
/// source inside their own message, which a plain `{:#}` would print twice.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Runs one command to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            common,
            broker,
            network,
            http,
        } => {
            let cfg = load_config(
                &common,
                Overrides {
                    broker,
                    network,
                    http,
                    ..Overrides::default()
                },
            )?;
            serve(cfg).await
        }
        Command::Demo(args) => demo::run(args).await,
        Command::Sim(args) => sim::run(args).await,
        Command::Analyze { command } => {
            tokio::task::spawn_blocking(move || analyze::analyze(command)).await?
        }
        Command::Evaluate { command } => {
            tokio::task::spawn_blocking(move || analyze::evaluate(command)).await?
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    role,
                    label,
                    common,
                },
        } => {
            let role: Role = role.parse().map_err(anyhow::Error::msg)?;
            let cfg = load_config(&common, Overrides::default())?;
            let store = services::open_store(&cfg).await?;
            let token = store.create_token(role, &label).await?;
            println!("{token}");
            store.close().await;
            Ok(())
        }
        Command::Db {
            command: DbCommand::Migrate { common },
        } => {
            let cfg = load_config(&common, Overrides::default())?;
            let store = services::open_store(&cfg).await?;
            println!("store migrated ({})", store.backend().as_str());
            store.close().await;
            Ok(())
        }
        Command::Modbus {
            command:
                ModbusCommand::Write {
                    device,
                    sensor,
                    value,
                    actor,
                    common,
                },
        } => modbus_write(&common, &device, &sensor, value, &actor).await,
        Command::Device { command } => match command {
            DeviceCommand::List { common } => {
                let cfg = load_config(&common, Overrides::default())?;
                let store = services::open_store(&cfg).await?;
                for d in store.devices().await? {
                    let t = |x: Option<chrono::DateTime<chrono::Utc>>| {
                        x.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339())
                    };
                    println!(
                        "{}\t{}\t{}\tfirst {}\tlast {}",
                        d.id,
                        d.status.as_str(),
                        d.protocol.as_deref().unwrap_or("-"),
                        t(d.first_seen),
                        t(d.last_seen)
                    );
                }
                store.close().await;
                Ok(())
            }
            DeviceCommand::Register { id, common } => {
                set_status(&common, &id, DeviceStatus::Active).await
            }
            DeviceCommand::Approve { id, common } => {
                let device = DeviceId::parse(id.as_str())?;
                let cfg = load_config(&common, Overrides::default())?;
                let store = services::open_store(&cfg).await?;
                let known = store.devices().await?.into_iter().find(|d| d.id == id);
                match known.map(|d| d.status) {
                    None => anyhow::bail!(
                        "device {device} has never been seen; use `waterline device register {device}` to register it ahead of its first contact"
                    ),
                    Some(DeviceStatus::Pending) => {}
                    Some(other) => anyhow::bail!(
                        "device {device} is {}, not pending approval",
                        other.as_str()
                    ),
                }
                store
                    .set_device_status(&device, DeviceStatus::Active, "cli")
                    .await?;
                let replayed =
                    waterline_ingest::pending::replay_approved_once(&store, &cfg.mqtt, &cfg.ingest)
                        .await
                        .context("approved, but its held-back uplinks could not be stored yet (a running service retries every 30 s)")?;
                println!("device {device}: active; {replayed} held-back uplinks stored");
                store.close().await;
                Ok(())
            }
            DeviceCommand::Retire { id, common } => {
                set_status(&common, &id, DeviceStatus::Retired).await
            }
        },
    }
}

async fn modbus_write(
    common: &CommonArgs,
    device: &str,
    sensor: &str,
    value: f64,
    actor: &str,
) -> anyhow::Result<()> {
    let cfg = load_config(common, Overrides::default())?;
    let (dev, map) = cfg
        .modbus
        .load(&cfg.base_dir)
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .find(|(d, _)| d.id == device)
        .with_context(|| format!("device `{device}` is not in [[modbus.devices]]"))?;
    let sensor_id = waterline_core::SensorId::parse(sensor)?;
    let store = services::open_store(&cfg).await?;
    let target = format!("{device}/{sensor}");
    let result = waterline_ingest::modbus_poll::write_point(&dev, &map, &sensor_id, value).await;
    let detail = match &result {
        Ok(read_back) => serde_json::json!({ "value": value, "read_back": read_back }),
        Err(e) => serde_json::json!({ "value": value, "error": e.to_string() }),
    };
    let action = if result.is_ok() {
        "modbus.write"
    } else {
        "modbus.write.failed"
    };
    store.audit(actor, action, Some(&target), &detail).await?;
    store.close().await;
    let read_back = result.with_context(|| format!("writing {value} to {target}"))?;
    println!("{target}: wrote {value}, read back {read_back}");
    Ok(())
}

/// `waterline serve`: runs until SIGTERM or Ctrl-C, then drains and stops.
pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    let network = match &cfg.network.path {
        Some(p) => Some(services::load_network(p)?),
        None => None,
    };
    let store = services::open_store(&cfg).await?;
    if let Some(net) = &network {
        store
            .upsert_described_sensors(net)
            .await
            .context("cannot store the network's sensors")?;
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let health = HealthBoard::new();
    let running = services::start(&cfg, network.as_ref(), &store, &health, &stop_rx, None).await?;
    tracing::info!(
        http = ?running.http_addr,
        broker = %cfg.mqtt.broker,
        backend = store.backend().as_str(),
        "waterline serving"
    );
    if let Some(addr) = running.http_addr {
        eprintln!("waterline: serving HTTP on http://{addr}");
    }
    services::stop_signal().await;
    tracing::info!("shutting down: draining in-flight batches");
    let _ = stop_tx.send(true);
    running.join().await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}
