//! Analytics benchmark: a year of 5-minute inflow data for 100 DMAs (≈ 10 million readings)
//! through the leakage chain end to end: parse the CSV, build the grids, compute the daily
//! and monthly KPIs and run the detectors. Prints the time of each stage and the peak memory.
//!
//! ```sh
//! cargo run --release -p waterline-tests --bin bench-analytics -- [--dmas 100] [--days 365]
//! ```
//!
//! The CSV is generated first into a temporary directory (not timed); the peak resident set is
//! reset (`/proc/self/clear_refs`) before the timed part, so it measures the analysis alone.

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Utc};
use waterline_analytics::leakage::{self, LeakageConfig};
use waterline_analytics::{LoadOptions, Readings};
use waterline_core::Network;
use waterline_core::testing::XorShift;
use waterline_tests::bench::{arg, print_peak_rss, reset_peak_rss};

const STEP_MS: i64 = 5 * 60_000;
/// 2018-01-01T00:00:00Z.
const T0: i64 = 1_514_764_800_000;

fn network_toml(dmas: i64) -> String {
    let mut s = String::from("timezone = \"Asia/Shanghai\"\n");
    for d in 0..dmas {
        let _ = write!(
            s,
            "[[dma]]\nid = \"D{d:03}\"\ninlets = [\"D{d:03}-in\"]\nconnections = {}\n\
             [[sensor]]\nid = \"D{d:03}-in\"\nkind = \"flow\"\nunit = \"m3/h\"\n",
            1_000 + 37 * d
        );
    }
    s
}

fn main() -> anyhow::Result<()> {
    let dmas = arg("--dmas", 100)?;
    let days = arg("--days", 365)?;
    let dir = tempfile::tempdir()?;
    let csv = dir.path().join("readings.csv");
    let network = Network::parse(&network_toml(dmas)).map_err(|e| anyhow::anyhow!("{e}"))?;

    let started = Instant::now();
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&csv)?);
    writeln!(out, "time,sensor,value")?;
    let mut rng = XorShift(0x00c0_ffee);
    let steps = days * 86_400_000 / STEP_MS;
    let mut rows = 0u64;
    for k in 0..steps {
        let t = T0 + k * STEP_MS;
        let stamp = DateTime::<Utc>::from_timestamp_millis(t)
            .context("time")?
            .format("%Y-%m-%dT%H:%M:%SZ");
        let hour = (t % 86_400_000) as f64 / 3_600_000.0;
        let shape = 1.0 + 0.6 * (std::f64::consts::TAU * (hour - 9.0) / 24.0).sin();
        for d in 0..dmas {
            let noise = (rng.next_u64() % 1_000) as f64 / 1_000.0 - 0.5;
            let base = 20.0 + d as f64;
            writeln!(out, "{stamp},D{d:03}-in,{:.3}", base * shape + noise)?;
            rows += 1;
        }
    }
    out.flush()?;
    drop(out);
    let size = std::fs::metadata(&csv)?.len() as f64 / 1e6;
    eprintln!(
        "generated {rows} readings ({size:.0} MB CSV) for {dmas} DMAs × {days} days in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The peak resident set covers the analysis only.
    reset_peak_rss();
    let t = Instant::now();
    let (readings, report) = Readings::load(&csv, &network, LoadOptions::default())?;
    let load_s = t.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let result = leakage::analyze(&readings, &network, &LeakageConfig::default())?;
    let analyse_s = t2.elapsed().as_secs_f64();
    let total_s = t.elapsed().as_secs_f64();
    println!("readings:        {}", report.kept);
    println!("DMAs, days:      {dmas}, {days}");
    println!("DMA-days:        {}", result.days.len());
    println!("events:          {}", result.events.len());
    println!("load CSV:        {load_s:.2} s");
    println!("analyse:         {analyse_s:.2} s");
    println!("end to end:      {total_s:.2} s");
    print_peak_rss();
    Ok(())
}
