//! `waterline sim`: the hydraulic digital twin's offline export (CONTRACTS §6).
//!
//! ```text
//! waterline sim [--network NET.inp] --days N [--seed S] [--ideal] [--scenario FILE]
//!               [--start RFC3339] [--step-minutes 5] --export DIR
//! ```
//!
//! Without `--network` the built-in three-DMA network runs. Without `--scenario`, one random
//! leak per started week is drawn from the seed, and water-quality stations report with three
//! quality incidents and six instrument faults per simulated fortnight (prorated, rounded down). The work is in
//! [`waterline_sim::twin::export`]; this module only parses flags and reports.

use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, Utc};
use waterline_sim::twin::export::{self, SimRequest};

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
    #[arg(long)]
    pub export: PathBuf,
}

/// Runs the export and prints a summary on stderr.
pub fn run(args: SimArgs) -> anyhow::Result<()> {
    let start = match &args.start {
        Some(s) => Some(
            DateTime::parse_from_rfc3339(s)
                .with_context(|| format!("--start `{s}` is not an RFC 3339 time"))?
                .with_timezone(&Utc),
        ),
        None => None,
    };
    let req = SimRequest {
        network: args.network,
        days: args.days,
        seed: args.seed,
        ideal: args.ideal,
        scenario: args.scenario,
        start,
        step_minutes: args.step_minutes,
        export: args.export,
        progress: true,
    };
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
