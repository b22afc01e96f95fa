//! `waterline sim`: the hydraulic digital twin's offline export (CONTRACTS §6), or the twin
//! live behind its PRV controllers.
//!
//! ```text
//! waterline sim [--network NET.inp] --days N [--seed S] [--ideal] [--scenario FILE]
//!               [--start RFC3339] [--step-minutes 5] --export DIR
//! waterline sim … --live [--speed 60] [--listen 127.0.0.1]
//! ```
//!
//! `--live` runs the days paced at `--speed` simulated seconds per second, with one Modbus TCP
//! controller per PRV (`waterline_sim::twin::live`) on a free port of `--listen`; it prints the
//! `[[modbus.devices]]` entries that poll them (model `dma-inlet-rtu`) on stdout and runs until
//! the last step or Ctrl-C.
//!
//! Without `--network` the built-in three-DMA network runs. Without `--scenario`, one random
//! leak per started week is drawn from the seed, and water-quality stations report with three
//! quality incidents and six instrument faults per simulated fortnight (prorated, rounded down). The work is in
//! [`waterline_sim::twin::export`]; this module only parses flags and reports.

use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, Utc};
use waterline_sim::twin::export::{self, SimRequest};
use waterline_sim::twin::live::{self, LiveConfig, LiveTwin};

/// Flags of `waterline sim`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// EPANET network (.inp); the built-in three-DMA network when omitted.
    #[arg(long)]
    pub network: Option<PathBuf>,
    /// Days to simulate.
    #[arg(long)]
    pub days: u32,
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
    /// Directory for readings.csv, network.toml and truth.jsonl.
    #[arg(long, required_unless_present = "live", conflicts_with = "live")]
    pub export: Option<PathBuf>,
    /// Run live behind Modbus TCP PRV controllers instead of exporting.
    #[arg(long)]
    pub live: bool,
    /// Live: simulated seconds per wall-clock second (60: a day in 24 minutes).
    #[arg(long, default_value_t = 60.0, requires = "live")]
    pub speed: f64,
    /// Live: the address the controllers listen on, each on a free port.
    #[arg(long, default_value = "127.0.0.1", requires = "live")]
    pub listen: std::net::IpAddr,
}

/// Runs the export (on the calling thread, which may block) or the live twin.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
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
        days: args.days,
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
         ({} quality events, {} instrument faults) to {} in {:.1} s",
        summary.rows,
        summary.sensors,
        summary.steps,
        summary.dmas,
        summary.leaks,
        summary.stations,
        summary.quality_events,
        summary.faults,
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
    let mut live = LiveTwin::start(
        twin,
        LiveConfig {
            speed: Some(args.speed),
            listen: args.listen,
        },
    )
    .await?;
    for c in live.controllers() {
        println!(
            "[[modbus.devices]]\nid = \"{}\"\naddress = \"{}\"\nmodel = \"{}\"\n",
            c.device,
            c.addr,
            live::CONTROLLER_MODEL
        );
        eprintln!(
            "sim: PRV {} controller {} on {} (set point: {})",
            c.prv,
            c.device,
            c.addr,
            live::setpoint_sensor(&c.prv)
        );
    }
    if live.controllers().is_empty() {
        eprintln!("sim: the network has no PRV; running the hydraulics only");
    }
    eprintln!("sim: live, {steps} steps at {}x", args.speed);
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
