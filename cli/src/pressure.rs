//! `waterline analyze pressure` (CONTRACTS §3): the offline replay of a readings file through
//! the pressure analytics — service-band events, instrument faults and the daily pressure
//! compliance rate per point, zone and network; and `waterline evaluate pressure`, which
//! scores it against a simulator export's ground truth.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use waterline_analytics::pressure::{self, ComplianceDay, PressureConfig};
use waterline_analytics::pressure_score::{self, PressureScore, ScoreConfig, Tally};
use waterline_core::EventKind;

use crate::analyze::{ExportArgs, InputArgs, emit_events, load_inputs};

fn write_days(path: &Path, days: &[ComplianceDay]) -> anyhow::Result<()> {
    let mut w = BufWriter::new(
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    writeln!(w, "scope,id,date,readings,qualified,compliance_percent")?;
    for d in days {
        writeln!(
            w,
            "{},{},{},{},{},{}",
            d.scope,
            d.id,
            d.date,
            d.readings,
            d.qualified,
            d.percent().map_or_else(String::new, |p| format!("{p:.3}"))
        )?;
    }
    w.flush()?;
    Ok(())
}

/// Runs `waterline analyze pressure`.
pub fn analyze(
    input: &InputArgs,
    out: Option<&Path>,
    daily_kpis: Option<&Path>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let (net, r, report) = load_inputs(&input.network, &input.readings, input.skip_bad_rows)?;
    let loaded = started.elapsed();
    let result = pressure::analyze(&r, &net, &PressureConfig::default())?;
    emit_events(out, &result.events)?;
    if let Some(path) = daily_kpis {
        write_days(path, &result.days)?;
    }
    let count = |k: EventKind| result.events.iter().filter(|e| e.kind == k).count();
    eprintln!(
        "{} readings ({} rows): {} pressure_low, {} pressure_high, {} pressure_drop ({} drops \
         not confirmed by the inflow left out), {} sensor faults, {} point-days; loaded in \
         {:.2} s, analysed in {:.2} s",
        report.kept,
        report.rows,
        count(EventKind::PressureLow),
        count(EventKind::PressureHigh),
        count(EventKind::PressureDrop),
        result.unconfirmed_drops,
        count(EventKind::SensorFault),
        result.days.iter().filter(|d| d.scope == "point").count(),
        loaded.as_secs_f64(),
        (started.elapsed() - loaded).as_secs_f64()
    );
    Ok(())
}

/// Options of `waterline evaluate pressure`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvaluatePressureArgs {
    #[command(flatten)]
    pub files: ExportArgs,
    /// Smallest abrupt leak counted as a burst, mm.
    #[arg(long, default_value_t = 10.0)]
    pub min_burst_mm: f64,
    /// Also write the detected events here (JSON Lines).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn ratio(t: Tally) -> String {
    if t.total == 0 {
        return format!("{}/{}", t.found, t.total);
    }
    format!(
        "{}/{} ({:.3})",
        t.found,
        t.total,
        t.found as f64 / t.total as f64
    )
}

fn print_score(s: &PressureScore, pressure_low: usize) {
    let opt =
        |v: Option<f64>, unit: &str| v.map_or_else(|| "-".into(), |v| format!("{v:.1} {unit}"));
    println!(
        "instrument faults found: {}, median delay {}",
        ratio(s.faults),
        opt(s.fault_delay_median_min, "min")
    );
    for (kind, t) in &s.faults_by_type {
        println!("  {kind:<10} {}", ratio(*t));
    }
    println!(
        "bursts found: {}, median delay {}",
        ratio(s.bursts),
        opt(s.burst_delay_median_h, "h")
    );
    println!(
        "  that moved a monitored pressure by more than {} noise SDs: {}",
        pressure_score::VISIBLE_NOISE_SDS,
        ratio(s.visible_bursts)
    );
    println!("precision: {} true of all pressure events", ratio(s.events));
    for (kind, t) in &s.events_by_kind {
        println!("  {kind:<14} {}", ratio(*t));
    }
    println!("pressure_low alarms: {pressure_low}");
}

/// Runs `waterline evaluate pressure`.
pub fn evaluate(args: &EvaluatePressureArgs) -> anyhow::Result<()> {
    if !(args.min_burst_mm.is_finite() && args.min_burst_mm >= 0.0) {
        anyhow::bail!(
            "--min-burst-mm {} must be a size in mm, 0 or more",
            args.min_burst_mm
        );
    }
    let (net, r) = args.files.load()?;
    let (file, name) = args.files.open_truth()?;
    let truth = pressure_score::read_truth(file, &name).map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let result = pressure::analyze(&r, &net, &PressureConfig::default())?;
    println!(
        "{} readings; analysed in {:.2} s: {} pressure events",
        r.len(),
        started.elapsed().as_secs_f64(),
        result.events.len()
    );
    if let Some(out) = &args.out {
        emit_events(Some(out), &result.events)?;
    }
    let cfg = ScoreConfig {
        min_burst_mm: args.min_burst_mm,
        ..ScoreConfig::default()
    };
    let score = pressure_score::score(&result.events, &truth, &net, &cfg);
    let low = result
        .events
        .iter()
        .filter(|e| e.kind == EventKind::PressureLow)
        .count();
    print_score(&score, low);
    Ok(())
}
