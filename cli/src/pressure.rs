//! `waterline analyze pressure` (CONTRACTS §3): the offline replay of a readings file through
//! the pressure analytics — service-band events, instrument faults and the daily pressure
//! compliance rate per point, zone and network.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use waterline_analytics::pressure::{self, ComplianceDay, PressureConfig};
use waterline_core::EventKind;

use crate::analyze::{InputArgs, emit_events, load_inputs};

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
    let result = pressure::analyze(&r, &net, &PressureConfig::default());
    emit_events(out, &result.events)?;
    if let Some(path) = daily_kpis {
        write_days(path, &result.days)?;
    }
    let count = |k: EventKind| result.events.iter().filter(|e| e.kind == k).count();
    eprintln!(
        "{} readings ({} rows): {} pressure_low, {} pressure_high, {} sensor faults, {} \
         point-days; loaded in {:.2} s, analysed in {:.2} s",
        report.kept,
        report.rows,
        count(EventKind::PressureLow),
        count(EventKind::PressureHigh),
        count(EventKind::SensorFault),
        result.days.iter().filter(|d| d.scope == "point").count(),
        loaded.as_secs_f64(),
        (started.elapsed() - loaded).as_secs_f64()
    );
    Ok(())
}
