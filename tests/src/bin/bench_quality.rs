//! Water-quality benchmark: a year of 1-minute data for one monitoring station with 8 signals
//! (≈ 4.2 million readings) through the quality chain end to end: parse the CSV, align the
//! station, check faults and set points and run the event detector. Prints the time of each
//! stage, what was found and the peak memory.
//!
//! ```sh
//! cargo run --release -p waterline-tests --bin bench-quality -- [--days 365] [--step-seconds 60]
//! ```
//!
//! The data has diurnal chlorine, slow variation and noise on every signal, one contamination
//! incident a month and a few instrument faults, so the detectors do real work. The CSV is
//! generated into a temporary directory first (not timed).

use std::io::{BufWriter, Write};
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Utc};
use waterline_analytics::quality::{self, QualityConfig};
use waterline_analytics::{LoadOptions, Readings};
use waterline_core::testing::XorShift;
use waterline_core::{EventKind, Network};
use waterline_tests::bench::{arg, print_peak_rss, reset_peak_rss};

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;
const DAY_MS: i64 = 86_400_000;

const NETWORK: &str = r#"
timezone = "Asia/Shanghai"
[[sensor]]
id = "S-cl2"
kind = "chlorine"
unit = "mg/L"
station = "S"
resolution = 0.01
[[sensor]]
id = "S-cl2b"
kind = "chlorine"
unit = "mg/L"
station = "S"
resolution = 0.01
[[sensor]]
id = "S-turb"
kind = "turbidity"
unit = "NTU"
station = "S"
resolution = 0.001
[[sensor]]
id = "S-ph"
kind = "ph"
unit = "pH"
station = "S"
resolution = 0.01
[[sensor]]
id = "S-cond"
kind = "conductivity"
unit = "uS/cm"
station = "S"
resolution = 0.1
[[sensor]]
id = "S-toc"
kind = "toc"
unit = "mg/L"
station = "S"
resolution = 0.01
[[sensor]]
id = "S-redox"
kind = "redox"
unit = "mV"
station = "S"
resolution = 1.0
[[sensor]]
id = "S-temp"
kind = "temperature"
unit = "degC"
station = "S"
role = "context"
resolution = 0.1
"#;

fn main() -> anyhow::Result<()> {
    let days = arg("--days", 365)?;
    let step_ms = arg("--step-seconds", 60)? * 1000;
    anyhow::ensure!(
        days > 0 && step_ms > 0,
        "--days and --step-seconds must be positive"
    );
    let dir = tempfile::tempdir()?;
    let csv = dir.path().join("readings.csv");
    let network = Network::parse(NETWORK).map_err(|e| anyhow::anyhow!("{e}"))?;

    let started = Instant::now();
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&csv)?);
    writeln!(out, "time,sensor,value")?;
    let mut rng = XorShift(0x0051_a7e5);
    let steps = days * DAY_MS / step_ms;
    let mut rows = 0u64;
    let mut incidents = 0;
    for k in 0..steps {
        let off = k * step_ms;
        let stamp = DateTime::<Utc>::from_timestamp_millis(T0 + off)
            .context("time")?
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let hour = (off % DAY_MS) as f64 / 3_600_000.0;
        let day = off as f64 / DAY_MS as f64;
        // One 4-hour incident on the 15th day of every 30 from 10:00.
        let in_month = off % (30 * DAY_MS);
        let inc =
            if (14 * DAY_MS + 10 * 3_600_000..14 * DAY_MS + 14 * 3_600_000).contains(&in_month) {
                1.0
            } else {
                0.0
            };
        if inc > 0.0 && in_month == 14 * DAY_MS + 10 * 3_600_000 {
            incidents += 1;
        }
        let age = 20.0 + 8.0 * (std::f64::consts::TAU * (hour - 4.0) / 24.0).cos();
        let season = (std::f64::consts::TAU * day / 365.0).sin();
        let cl2 = 1.1 * (-0.02 * age).exp() * (1.0 - 0.5 * inc);
        let values = [
            ("S-cl2", cl2 + 0.01 * rng.normal(), 2),
            ("S-cl2b", cl2 + 0.02 + 0.01 * rng.normal(), 2),
            ("S-turb", 0.25 * (1.0 + 4.0 * inc) + 0.01 * rng.normal(), 3),
            ("S-ph", 7.4 + 0.03 * season + 0.01 * rng.normal(), 2),
            (
                "S-cond",
                320.0 + 10.0 * season + 15.0 * inc + 0.8 * rng.normal(),
                1,
            ),
            ("S-toc", 2.0 + 1.5 * inc + 0.03 * rng.normal(), 2),
            ("S-redox", 650.0 - 80.0 * inc + 2.0 * rng.normal(), 0),
            ("S-temp", 14.0 + 8.0 * season + 0.05 * rng.normal(), 1),
        ];
        for (sensor, v, decimals) in values {
            writeln!(out, "{stamp},{sensor},{v:.decimals$}")?;
            rows += 1;
        }
    }
    out.flush()?;
    // On disk before the clock starts: the load should not compete with the write-back.
    out.get_ref().sync_all()?;
    drop(out);
    let size = std::fs::metadata(&csv)?.len() as f64 / 1e6;
    eprintln!(
        "generated {rows} readings ({size:.0} MB CSV), {days} days at {} s, {incidents} incidents, \
         in {:.1} s",
        step_ms / 1000,
        started.elapsed().as_secs_f64()
    );

    reset_peak_rss();
    let t = Instant::now();
    let (readings, report) = Readings::load(&csv, &network, LoadOptions::default())?;
    let load_s = t.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let result = quality::analyze(&readings, &network, &QualityConfig::default());
    let analyse_s = t2.elapsed().as_secs_f64();
    let total_s = t.elapsed().as_secs_f64();
    let count = |k: EventKind| result.events.iter().filter(|e| e.kind == k).count();
    println!("readings:        {}", report.kept);
    println!("incidents:       {incidents}");
    println!("quality events:  {}", count(EventKind::QualityEvent));
    println!("thresholds:      {}", count(EventKind::QualityThreshold));
    println!("sensor faults:   {}", count(EventKind::SensorFault));
    println!("load CSV:        {load_s:.2} s");
    println!("analyse:         {analyse_s:.2} s");
    println!("end to end:      {total_s:.2} s");
    print_peak_rss();
    Ok(())
}
