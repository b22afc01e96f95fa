//! Analytics benchmark: a year of 5-minute inflow data for 100 DMAs (≈ 10 million readings)
//! through the leakage chain end to end: parse the CSV, build the grids, compute the daily
//! and monthly KPIs and run the detectors. Prints the time of each stage and the peak memory.
//! With `--pressure-sensors N`, a year of 5-minute data of N pressure sensors (spread over
//! the DMAs) through the pressure analytics instead (band, drops, faults, compliance).
//!
//! ```sh
//! cargo run --release -p waterline-tests --bin bench-analytics -- [--dmas 100] [--days 365]
//! cargo run --release -p waterline-tests --bin bench-analytics -- --dmas 10 --pressure-sensors 300
//! ```
//!
//! The CSV is generated first into a temporary directory (not timed; `--keep-csv DIR` keeps it
//! in DIR and reads it again on later runs with the same settings); the peak resident set is
//! reset (`/proc/self/clear_refs`) before the timed part, so it measures the analysis alone.

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Utc};
use waterline_analytics::leakage::{self, LeakageConfig};
use waterline_analytics::pressure::{self, PressureConfig};
use waterline_analytics::{LoadOptions, Readings};
use waterline_core::Network;
use waterline_core::testing::XorShift;
use waterline_tests::bench::{arg, cpu_seconds, print_peak_rss, reset_peak_rss, text_arg};

const STEP_MS: i64 = 5 * 60_000;
/// 2018-01-01T00:00:00Z.
const T0: i64 = 1_514_764_800_000;

/// The network and its series: (sensor id, base value, relative daily swing).
fn workload(dmas: i64, pressure_sensors: i64) -> (String, Vec<(String, f64, f64)>) {
    let mut s = String::from("timezone = \"Asia/Shanghai\"\n");
    let mut series = Vec::new();
    for d in 0..dmas {
        let _ = write!(
            s,
            "[[dma]]\nid = \"D{d:03}\"\ninlets = [\"D{d:03}-in\"]\nconnections = {}\n\
             [[sensor]]\nid = \"D{d:03}-in\"\nkind = \"flow\"\nunit = \"m3/h\"\n",
            1_000 + 37 * d
        );
        if pressure_sensors == 0 {
            series.push((format!("D{d:03}-in"), 20.0 + d as f64, 0.6));
        }
    }
    for p in 0..pressure_sensors {
        let id = format!("D{:03}-p{p:03}", p % dmas.max(1));
        let _ = write!(
            s,
            "[[sensor]]\nid = \"{id}\"\nkind = \"pressure\"\nunit = \"m\"\ndma = \"D{:03}\"\n",
            p % dmas.max(1)
        );
        series.push((id, 30.0 + (p % 7) as f64, 0.1));
    }
    (s, series)
}

fn main() -> anyhow::Result<()> {
    let dmas = arg("--dmas", 100)?;
    let days = arg("--days", 365)?;
    let pressure_sensors = arg("--pressure-sensors", 0)?;
    anyhow::ensure!(dmas > 0 && days > 0, "--dmas and --days must be positive");
    let dir = tempfile::tempdir()?;
    let (toml, series) = workload(dmas, pressure_sensors);
    let network = Network::parse(&toml).map_err(|e| anyhow::anyhow!("{e}"))?;
    // `--keep-csv DIR`: the generated file is kept in DIR under a name that gives the settings
    // and, when it is there already, read again instead of generated (for repeated timings).
    let kept = text_arg("--keep-csv")?.map(|d| {
        std::path::Path::new(&d).join(format!(
            "bench-readings-{dmas}dmas-{pressure_sensors}pressure-{days}days.csv"
        ))
    });
    let csv = match kept {
        Some(path) if path.exists() => {
            eprintln!("reading the CSV kept at {}", path.display());
            return run(&path, &network, dmas, days, pressure_sensors);
        }
        Some(path) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("--keep-csv: creating {}", parent.display()))?;
            }
            path
        }
        None => dir.path().join("readings.csv"),
    };

    let started = Instant::now();
    let file = std::fs::File::create(&csv)
        .with_context(|| format!("creating the benchmark CSV {}", csv.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
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
        let wave = (std::f64::consts::TAU * (hour - 9.0) / 24.0).sin();
        for (id, base, swing) in &series {
            let noise = (rng.next_u64() % 1_000) as f64 / 1_000.0 - 0.5;
            writeln!(
                out,
                "{stamp},{id},{:.3}",
                base * (1.0 + swing * wave) + noise
            )?;
            rows += 1;
        }
    }
    out.flush()?;
    // On disk before the clock starts: the load should not compete with the write-back.
    out.get_ref().sync_all()?;
    drop(out);
    let size = std::fs::metadata(&csv)?.len() as f64 / 1e6;
    eprintln!(
        "generated {rows} readings ({size:.0} MB CSV) for {dmas} DMAs, {} series × {days} days \
         in {:.1} s",
        series.len(),
        started.elapsed().as_secs_f64()
    );
    run(&csv, &network, dmas, days, pressure_sensors)
}

/// The timed part: load `csv` and analyse it.
fn run(
    csv: &std::path::Path,
    network: &Network,
    dmas: i64,
    days: i64,
    pressure_sensors: i64,
) -> anyhow::Result<()> {
    // The peak resident set covers the analysis only.
    reset_peak_rss();
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    let (readings, report) = Readings::load(csv, network, LoadOptions::default())?;
    let load_s = t.elapsed().as_secs_f64();
    let cpu1 = cpu_seconds();
    let t2 = Instant::now();
    println!("readings:        {}", report.kept);
    println!("DMAs, days:      {dmas}, {days}");
    if pressure_sensors > 0 {
        let result = pressure::analyze(&readings, network, &PressureConfig::default())?;
        println!("pressure points: {pressure_sensors}");
        println!(
            "point-days:      {}",
            result.days.iter().filter(|d| d.scope == "point").count()
        );
        println!("events:          {}", result.events.len());
    } else {
        let result = leakage::analyze(&readings, network, &LeakageConfig::default())?;
        println!("DMA-days:        {}", result.days.len());
        println!("events:          {}", result.events.len());
    }
    let analyse_s = t2.elapsed().as_secs_f64();
    let total_s = t.elapsed().as_secs_f64();
    let cpu2 = cpu_seconds();
    let cpu = |a: Option<f64>, b: Option<f64>| {
        a.zip(b)
            .map_or_else(String::new, |(a, b)| format!(" ({:.2} s CPU)", b - a))
    };
    println!("load CSV:        {load_s:.2} s{}", cpu(cpu0, cpu1));
    println!("analyse:         {analyse_s:.2} s{}", cpu(cpu1, cpu2));
    println!("end to end:      {total_s:.2} s{}", cpu(cpu0, cpu2));
    print_peak_rss();
    Ok(())
}
