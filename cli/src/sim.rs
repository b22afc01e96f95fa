//! `waterline sim`: the hydraulic digital twin's offline export (CONTRACTS §6), or the twin
//! live behind its PRV controllers.
//!
//! ```text
//! waterline sim [--network NET.inp] --days N [--seed S] [--ideal] [--scenario FILE]
//!               [--start RFC3339] [--step-minutes 5] --export DIR
//! waterline sim … --live [--speed 60 | --realtime] [--listen 127.0.0.1]
//! waterline sim … --broker mqtt://HOST:PORT [--live [--speed 60 | --realtime]] [--export DIR]
//! waterline sim --load [--broker mqtt://HOST:PORT] [--devices 100] [--rate 100] [--batch 1]
//!               [--seconds 10] [--max-inflight 1000] [--export DIR]
//! ```
//!
//! `--live` runs the days paced at `--speed` simulated seconds per second, with one Modbus TCP
//! controller per PRV (`waterline_sim::twin::live`) on a free port of `--listen`; it prints the
//! `[[modbus.devices]]` entries that poll them (model `dma-inlet-rtu`) on stdout and runs until
//! the last step or Ctrl-C.
//!
//! `--broker` (without `--load`) puts the twin's field devices on the wire
//! ([`waterline_sim::field`], docs/simulator-devices.md): RTUs, loggers, quality analysers
//! and smart meters publish over MQTT in native JSON, Sparkplug B, ChirpStack and CJ/T 188,
//! misbehaving as the scenario's `[devices]` says (not with `--ideal`). Without `--live` the
//! days are back-filled as fast as the broker takes them, with progress on stderr; with
//! `--live` they are paced by `--speed`, or by the wall clock with `--realtime` (a `--start`
//! in the past is back-filled first). `--export DIR` then writes the fleet's `network.toml`
//! before the first message and `truth.jsonl` at the end: the export's truth lines (leaks,
//! incidents, faults) up to the last step run, then the misbehaviour lines. The
//! run ends when the broker has acknowledged every message; a summary goes to stderr.
//!
//! Without `--network` the built-in three-DMA network runs. Without `--scenario`, one random
//! leak per started week is drawn from the seed, and water-quality stations report with three
//! quality incidents and six instrument faults per simulated fortnight (prorated, rounded down). The work is in
//! [`waterline_sim::twin::export`]; this module only parses flags and reports.
//!
//! `--load` is the load mode for benchmarks ([`waterline_sim::load`]): `--devices` devices
//! publish `--rate` native JSON messages a second in all, `--batch` readings each, for
//! `--seconds`, with QoS 1 to `--broker` (default `mqtt://127.0.0.1:1883`); it prints what it
//! achieved on stdout. `--export DIR` writes the load devices' `network.toml` there first.

use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, Utc};
use waterline_sim::field::fleet::FleetConfig;
use waterline_sim::field::publish::BrokerConfig;
use waterline_sim::field::{self, FieldConfig};
use waterline_sim::load::{self, LoadConfig, LoadError};
use waterline_sim::twin::export::{self, SimRequest};
use waterline_sim::twin::live::{self, LiveConfig, LiveTwin};

/// Flags of `waterline sim`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// EPANET network (.inp); the built-in three-DMA network when omitted.
    #[arg(long)]
    pub network: Option<PathBuf>,
    /// Days to simulate.
    #[arg(long, required_unless_present = "load")]
    pub days: Option<u32>,
    /// Seed of every random draw (demand, random leaks, quality incidents and faults, noise).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// No sensor noise and no instrument faults (exact values, 4 decimals).
    #[arg(long)]
    pub ideal: bool,
    /// Scenario (TOML): leaks, PRV set-point changes, quality stations, incidents and
    /// instrument faults; see examples/sim/.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// First time step, RFC 3339 (default: the scenario's, else 2026-01-05T00:00:00Z).
    #[arg(long)]
    pub start: Option<String>,
    /// Step length in minutes.
    #[arg(long, default_value_t = 5)]
    pub step_minutes: u32,
    /// Directory for readings.csv, network.toml and truth.jsonl (with --broker: network.toml
    /// and truth.jsonl; with --load: network.toml).
    #[arg(long, required_unless_present_any = ["live", "load", "broker"])]
    pub export: Option<PathBuf>,
    /// Run live behind Modbus TCP PRV controllers instead of exporting.
    #[arg(long)]
    pub live: bool,
    /// Live: simulated seconds per wall-clock second (60: a day in 24 minutes).
    #[arg(long, default_value_t = 60.0, requires = "live")]
    pub speed: f64,
    /// Live: steps run when their time comes on the wall clock (past ones at once), instead
    /// of at --speed.
    #[arg(long, requires = "live")]
    pub realtime: bool,
    /// Live: the address the controllers listen on, each on a free port.
    #[arg(long, default_value = "127.0.0.1", requires = "live")]
    pub listen: std::net::IpAddr,
    /// MQTT broker the simulated devices publish to, mqtt://HOST:PORT: the twin's field
    /// devices, or with --load the load devices (default mqtt://127.0.0.1:1883).
    #[arg(long)]
    pub broker: Option<String>,
    /// With --broker: how many quality stations (the last ones) serve their signals on
    /// Modbus TCP (model quality-analyser) instead of publishing them.
    #[arg(long, default_value_t = 0, requires = "broker")]
    pub modbus_stations: usize,
    /// Load mode for benchmarks: devices publishing native JSON uplinks at a fixed rate.
    #[arg(long, conflicts_with_all = ["live", "days", "network", "scenario", "ideal", "start", "step_minutes", "seed"])]
    pub load: bool,
    // The load flags are options so that `check_load_flags` sees which were given (clap lets
    // `requires = "load"` pass when a flag that `--load` conflicts with is present); `run_load`
    // applies the defaults named in the help.
    /// Load: simulated devices, LOAD-00001 onwards, one volume sensor each [default: 100].
    #[arg(long, requires = "load")]
    pub devices: Option<usize>,
    /// Load: messages per second over all devices [default: 100].
    #[arg(long, requires = "load")]
    pub rate: Option<f64>,
    /// Load: readings per message [default: 1].
    #[arg(long, requires = "load")]
    pub batch: Option<usize>,
    /// Load: seconds to publish [default: 10].
    #[arg(long, requires = "load")]
    pub seconds: Option<f64>,
    /// Load: QoS 1 messages awaiting the broker's acknowledgement at most [default: 1000].
    #[arg(long, requires = "load")]
    pub max_inflight: Option<u16>,
}

/// Runs the export (on the calling thread, which may block) or the live twin.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    if args.load {
        return run_load(args).await;
    }
    check_load_flags(&args)?;
    if args.broker.is_some() {
        return run_field(args).await;
    }
    if args.export.is_some() && args.live {
        anyhow::bail!(
            "--export writes a file export, which --live does not make (with --broker it writes the devices' network.toml)"
        );
    }
    if args.live {
        return run_live(args).await;
    }
    tokio::task::spawn_blocking(move || run_export(args)).await?
}

fn request(args: &SimArgs, export: PathBuf, progress: bool) -> anyhow::Result<SimRequest> {
    let start = match &args.start {
        Some(s) => Some(
            DateTime::parse_from_rfc3339(s)
                .with_context(|| format!("--start `{s}` is not an RFC 3339 time"))?
                .with_timezone(&Utc),
        ),
        None => None,
    };
    Ok(SimRequest {
        network: args.network.clone(),
        days: args.days.context("--days N is required")?,
        seed: args.seed,
        ideal: args.ideal,
        scenario: args.scenario.clone(),
        start,
        step_minutes: args.step_minutes,
        export,
        progress,
    })
}

/// Runs the export and prints a summary on stderr.
fn run_export(args: SimArgs) -> anyhow::Result<()> {
    let export = args.export.clone().context("--export DIR is required")?;
    let req = request(&args, export, true)?;
    let summary = export::run(&req)?;
    eprintln!(
        "sim: wrote {} readings of {} sensors ({} steps), {} DMAs, {} leaks, {} quality stations \
         ({} quality events, {} instrument faults, {} lab results) to {} in {:.1} s",
        summary.rows,
        summary.sensors,
        summary.steps,
        summary.dmas,
        summary.leaks,
        summary.stations,
        summary.quality_events,
        summary.faults,
        summary.grab_samples,
        req.export.display(),
        summary.seconds
    );
    for (node, rate) in &summary.night_users {
        eprintln!("sim: large night user at {node}: {rate} m3/h from 23:00 to 05:00 local time");
    }
    Ok(())
}

/// Runs the twin live until its last step or Ctrl-C.
async fn run_live(args: SimArgs) -> anyhow::Result<()> {
    let req = request(&args, PathBuf::new(), false)?;
    let (twin, _) = export::build(&req)?;
    let steps = twin.config().steps;
    let mut live = LiveTwin::start_with(
        twin,
        LiveConfig {
            speed: Some(args.speed),
            listen: args.listen,
        },
        live::LiveOptions {
            wall_clock: args.realtime,
            sink: None,
        },
    )
    .await?;
    print_controllers(live.controllers());
    eprintln!("sim: live, {steps} steps {}", pace(&args));
    let finished = async {
        loop {
            let s = live.state();
            if s.finished {
                return s;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    };
    let state = tokio::select! {
        s = finished => s,
        _ = crate::services::stop_signal() => live.state(),
    };
    live.stop();
    for a in &state.applied {
        eprintln!(
            "sim: step {}: PRV {} set to {:.1} m",
            a.step, a.prv, a.setting_m
        );
    }
    eprintln!("sim: {} of {steps} steps done", state.steps_done);
    match state.error {
        Some(e) => anyhow::bail!("live twin stopped: {e}"),
        None => Ok(()),
    }
}

/// How the live steps are paced, for the operator.
fn pace(args: &SimArgs) -> String {
    if args.realtime {
        "on the wall clock".into()
    } else {
        format!("at {}x", args.speed)
    }
}

/// Prints a `[[modbus.devices]]` entry that polls a simulated device (stdout).
fn print_modbus_device(id: &str, addr: std::net::SocketAddr, model: &str) {
    println!("[[modbus.devices]]\nid = \"{id}\"\naddress = \"{addr}\"\nmodel = \"{model}\"\n");
}

/// Prints the PRV controllers' `[[modbus.devices]]` entries (stdout) and addresses (stderr).
fn print_controllers(controllers: &[live::Controller]) {
    for c in controllers {
        print_modbus_device(&c.device, c.addr, live::CONTROLLER_MODEL);
        eprintln!(
            "sim: PRV {} controller {} on {} (set point: {})",
            c.prv,
            c.device,
            c.addr,
            live::setpoint_sensor(&c.prv)
        );
    }
    if controllers.is_empty() {
        eprintln!("sim: the network has no PRV; running the hydraulics only");
    }
}

/// Runs the twin's field devices against `--broker` until the last step or Ctrl-C.
async fn run_field(args: SimArgs) -> anyhow::Result<()> {
    let url = args.broker.clone().context("--broker is required")?;
    let (host, port) = broker_addr(&url)?;
    let req = request(&args, PathBuf::new(), false)?;
    let (twin, tags) = export::build(&req)?;
    let steps = twin.config().steps;
    let fleet = FleetConfig {
        modbus_stations: args.modbus_stations,
        ..FleetConfig::default()
    };
    let prepared = field::prepare(twin, &tags, args.ideal, fleet)?;
    if let Some(dir) = &args.export {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("network.toml");
        std::fs::write(&path, prepared.network_toml())
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!(
            "sim: wrote the devices' network description to {}",
            path.display()
        );
    }
    let meters: Vec<String> = prepared
        .fleet()
        .meters_by_protocol()
        .into_iter()
        .map(|(p, n)| format!("{n} {p}"))
        .collect();
    eprintln!(
        "sim: {} devices (smart meters: {}) publishing to {url}",
        prepared.fleet().devices.len(),
        meters.join(", ")
    );
    let run = prepared
        .start(FieldConfig {
            broker: BrokerConfig {
                host,
                port,
                client_id: format!("waterline-sim-{}", std::process::id()),
                max_inflight: 100,
            },
            live: LiveConfig {
                speed: args.live.then_some(args.speed),
                listen: args.listen,
            },
            wall_clock: args.realtime,
            progress: true,
            hold: false,
        })
        .await?;
    print_controllers(run.controllers());
    for a in run.analysers() {
        print_modbus_device(&a.device, a.addr, field::analysers::ANALYSER_MODEL);
        eprintln!("sim: quality analyser {} on {}", a.device, a.addr);
    }
    if args.live {
        eprintln!("sim: live, {steps} steps {}", pace(&args));
    } else {
        eprintln!("sim: back-filling {steps} steps");
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let signal = tokio::spawn(async move {
        crate::services::stop_signal().await;
        let _ = stop.send(true);
    });
    run.wait(stopped).await;
    signal.abort();
    let report = run.finish().await?;
    let t = report.traffic;
    eprintln!(
        "sim: {} of {steps} steps; {} messages ({} acknowledged) with {} readings in {:.1} s; \
         misbehaviour: {} duplicates, {} late, {} shuffled, {} corrupt; {} CJ/T 188 reads not \
         sent (not real time)",
        report.state.steps_done,
        report.published.messages,
        report.published.acked,
        t.readings,
        report.seconds,
        t.duplicates,
        t.late,
        t.out_of_order,
        t.malformed,
        t.cjt188_not_live
    );
    for a in &report.state.applied {
        eprintln!(
            "sim: step {}: PRV {} set to {:.1} m",
            a.step, a.prv, a.setting_m
        );
    }
    if let Some(dir) = &args.export {
        let path = dir.join("truth.jsonl");
        let mut text = report.twin_truth.clone();
        for l in &report.truth {
            text.push_str(&l.to_string());
            text.push('\n');
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// The broker of `--broker mqtt://HOST:PORT` (plain MQTT; the port defaults to 1883).
pub fn broker_addr(url: &str) -> anyhow::Result<(String, u16)> {
    let (host, port, tls) = waterline_ingest::config::parse_broker_url(url)
        .map_err(|e| anyhow::anyhow!("--broker: {e}"))?;
    anyhow::ensure!(
        !tls,
        "--broker `{url}`: the simulator speaks plain MQTT only; use mqtt://HOST:PORT"
    );
    Ok((host, port))
}

/// A load error, naming the flag where the field has one.
fn load_error(e: LoadError) -> anyhow::Error {
    match e {
        LoadError::Invalid { field, reason } => {
            let flag = match field {
                "duration" => "seconds",
                "max_inflight" => "max-inflight",
                "broker_host" | "broker_port" => "broker",
                other => other,
            };
            anyhow::anyhow!("--{flag}: {reason}")
        }
        other => other.into(),
    }
}

/// Refuses load flags without `--load`.
fn check_load_flags(args: &SimArgs) -> anyhow::Result<()> {
    let given = [
        ("--devices", args.devices.is_some()),
        ("--rate", args.rate.is_some()),
        ("--batch", args.batch.is_some()),
        ("--seconds", args.seconds.is_some()),
        ("--max-inflight", args.max_inflight.is_some()),
    ];
    match given.iter().find(|(_, g)| *g) {
        Some((flag, _)) => anyhow::bail!("{flag} is a flag of load mode: it needs --load"),
        None => Ok(()),
    }
}

/// Runs load mode until its schedule ends or Ctrl-C, and prints the report on stdout.
async fn run_load(args: SimArgs) -> anyhow::Result<()> {
    let url = args.broker.as_deref().unwrap_or("mqtt://127.0.0.1:1883");
    let (broker_host, broker_port) = broker_addr(url)?;
    let defaults = LoadConfig::default();
    let seconds = args.seconds.unwrap_or(defaults.duration.as_secs_f64());
    let duration = std::time::Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("--seconds: {seconds} is not a positive number"))?;
    let cfg = LoadConfig {
        broker_host,
        broker_port,
        devices: args.devices.unwrap_or(defaults.devices),
        rate: args.rate.unwrap_or(defaults.rate),
        batch: args.batch.unwrap_or(defaults.batch),
        duration,
        max_inflight: args.max_inflight.unwrap_or(defaults.max_inflight),
        ..defaults
    };
    cfg.validate().map_err(load_error)?;
    if let Some(dir) = &args.export {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("network.toml");
        std::fs::write(&path, load::network_toml(cfg.devices))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!(
            "sim: wrote the load devices' network description to {}",
            path.display()
        );
    }
    let limit = waterline_ingest::IngestConfig::default().max_messages_per_device_per_minute;
    if cfg.device_msgs_per_minute() > f64::from(limit) {
        eprintln!(
            "sim: note: {:.0} messages a minute per device exceed ingest's default limit of {limit} \
             (ingest.max_messages_per_device_per_minute): raise it or add --devices",
            cfg.device_msgs_per_minute()
        );
    }
    eprintln!(
        "sim: load: {} devices, {} messages/s of {} readings, for {:.1} s, to {url} \
         (topics {}/LOAD-nnnnn/up)",
        cfg.devices,
        cfg.rate,
        cfg.batch,
        duration.as_secs_f64(),
        cfg.topic_prefix
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let signal = tokio::spawn(async move {
        crate::services::stop_signal().await;
        let _ = stop.send(true);
    });
    let report = load::run(&cfg, stopped).await;
    signal.abort();
    println!("{}", report.map_err(load_error)?);
    Ok(())
}
