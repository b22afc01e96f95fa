//! `waterline analyze leakage` (CONTRACTS §3) and `waterline evaluate leakage`: the offline
//! replay of a readings file through the leakage detectors, and their scoring against ground
//! truth next to the LeakDB reference rule.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Utc};
use waterline_analytics::evaluate::{self, Economics, Score};
use waterline_analytics::leakage::{self, DmaDay, DmaMonth, LeakageConfig, LeakageReport};
use waterline_analytics::{LoadOptions, LoadReport, Readings};
use waterline_core::{Event, Network};

/// Flags shared by the analyses.
#[derive(Debug, Clone, clap::Args)]
pub struct InputArgs {
    /// Network description (network.toml).
    #[arg(long)]
    pub network: PathBuf,
    /// Readings file: CSV `time,sensor,value` or Parquet.
    #[arg(long)]
    pub readings: PathBuf,
    /// Count and skip malformed rows instead of stopping at the first.
    #[arg(long)]
    pub skip_bad_rows: bool,
}

/// `waterline analyze …`.
#[derive(Debug, clap::Subcommand)]
pub enum AnalyzeCommand {
    /// Water balance, night flow, ILI and leak / burst detection per DMA.
    Leakage {
        #[command(flatten)]
        input: InputArgs,
        /// Events as JSON Lines (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write the daily KPIs per DMA to this CSV file.
        #[arg(long)]
        daily_kpis: Option<PathBuf>,
        /// Write the monthly KPIs per DMA (CJJ 92 rates, ILI) to this CSV file.
        #[arg(long)]
        monthly_kpis: Option<PathBuf>,
    },
    /// Service-band violations, instrument faults and the pressure compliance rate.
    Pressure {
        #[command(flatten)]
        input: InputArgs,
        /// Events as JSON Lines (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write the daily compliance rate per point, zone and network to this CSV file.
        #[arg(long)]
        daily_kpis: Option<PathBuf>,
    },
    /// Water-quality events, set-point crossings and instrument faults per station.
    Quality {
        #[command(flatten)]
        input: InputArgs,
        /// Events as JSON Lines (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        tuning: crate::quality::QualityArgs,
    },
}

/// `waterline evaluate …`.
#[derive(Debug, clap::Subcommand)]
pub enum EvaluateCommand {
    /// Score the leakage detectors and the LeakDB MNF rule against ground truth.
    Leakage {
        #[command(flatten)]
        files: ExportArgs,
        /// γ of the LeakDB rule: flag when MNF exceeds the reference minimum by this share.
        #[arg(long, default_value_t = 0.1)]
        baseline_gamma: f64,
        /// Price of water, € per m³.
        #[arg(long, default_value_t = 0.8)]
        price: f64,
        /// Cost of a false alarm, €.
        #[arg(long, default_value_t = 500.0)]
        false_alarm_cost: f64,
    },
    /// Score the quality detectors against ground truth (truth.jsonl) or row labels.
    Quality(crate::quality::EvaluateQualityArgs),
    /// Score the pressure analytics (instrument faults, bursts, precision) against ground truth.
    Pressure(crate::pressure::EvaluatePressureArgs),
}

/// What every `waterline evaluate …` reads: a simulator export directory, or its files one by
/// one (each given file overrides the directory's).
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// A simulator export directory: network.toml, readings.csv and truth.jsonl.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Network description (default: DIR/network.toml).
    #[arg(long)]
    pub network: Option<PathBuf>,
    /// Readings (default: DIR/readings.csv).
    #[arg(long)]
    pub readings: Option<PathBuf>,
    /// Ground truth JSON Lines (default: DIR/truth.jsonl).
    #[arg(long)]
    pub truth: Option<PathBuf>,
}

impl ExportArgs {
    /// Loads the network and the readings (nothing skipped).
    pub fn load(&self) -> anyhow::Result<(Network, Readings)> {
        let dir = self.dir.as_deref();
        let network = dir_file(self.network.clone(), dir, "network.toml")?;
        let readings = dir_file(self.readings.clone(), dir, "readings.csv")?;
        let (net, r, _) = load_inputs(&network, &readings, false)?;
        Ok((net, r))
    }

    /// Opens the truth file; returns it with its name for error messages.
    pub fn open_truth(&self) -> anyhow::Result<(BufReader<File>, String)> {
        let path = dir_file(self.truth.clone(), self.dir.as_deref(), "truth.jsonl")?;
        let file = File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok((BufReader::new(file), path.display().to_string()))
    }
}

/// Loads the network and the readings, reporting what was skipped on stderr.
pub fn load_inputs(
    network: &Path,
    readings: &Path,
    skip_bad_rows: bool,
) -> anyhow::Result<(Network, Readings, LoadReport)> {
    let text = std::fs::read_to_string(network)
        .with_context(|| format!("cannot read {}", network.display()))?;
    let net = Network::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", network.display()))?;
    let (r, report) = Readings::load(readings, &net, LoadOptions { skip_bad_rows })?;
    for (sensor, rows) in &report.unknown_sensors {
        eprintln!(
            "warning: sensor `{sensor}` is not in {} ({rows} rows ignored)",
            network.display()
        );
    }
    if report.bad_rows > 0 {
        eprintln!(
            "warning: {} malformed rows skipped, e.g. {}",
            report.bad_rows,
            report.bad_row_examples.join("; ")
        );
    }
    Ok((net, r, report))
}

pub(crate) fn write_events(out: &mut dyn Write, events: &[Event]) -> anyhow::Result<()> {
    for e in events {
        serde_json::to_writer(&mut *out, e)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(String::new, |x| format!("{x:.4}"))
}

fn write_days(path: &Path, days: &[DmaDay]) -> anyhow::Result<()> {
    let mut w = BufWriter::new(
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    writeln!(
        w,
        "dma,date,inflow_completeness,siv_m3,consumption_m3,consumption_completeness,nrw_m3,nrw_percent,\
         mnf_m3h,legitimate_night_use_m3h,night_use_source,nnf_m3h,hdf_hours,hdf_from_pressure,\
         real_losses_m3,azp_mean_m,uarl_m3,ili,nnf_trend_7d_m3h_per_day,nnf_trend_30d_m3h_per_day"
    )?;
    for d in days {
        let source = serde_json::to_value(d.night_use_source)?;
        writeln!(
            w,
            "{},{},{:.4},{},{},{},{},{},{},{:.4},{},{},{:.3},{},{},{},{},{},{},{}",
            d.dma,
            d.date,
            d.inflow_completeness,
            opt(d.siv_m3),
            opt(d.consumption_m3),
            opt(d.consumption_completeness),
            opt(d.nrw_m3),
            opt(d.nrw_percent),
            opt(d.mnf_m3h),
            d.legitimate_night_use_m3h,
            source.as_str().unwrap_or(""),
            opt(d.nnf_m3h),
            d.hdf_hours,
            d.hdf_from_pressure,
            opt(d.real_losses_m3),
            opt(d.azp_mean_m),
            opt(d.uarl_m3),
            opt(d.ili),
            opt(d.nnf_trend_7d),
            opt(d.nnf_trend_30d),
        )?;
    }
    w.flush()?;
    Ok(())
}

fn write_months(path: &Path, months: &[DmaMonth]) -> anyhow::Result<()> {
    let mut w = BufWriter::new(
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    writeln!(
        w,
        "dma,month,days,days_balanced,siv_m3,consumption_m3,comprehensive_leakage_percent,\
         assessed_leakage_percent,real_losses_m3,uarl_m3,ili,ili_notes"
    )?;
    for m in months {
        writeln!(
            w,
            "{},{},{},{},{:.3},{},{},{},{},{},{},\"{}\"",
            m.dma,
            m.month,
            m.days,
            m.days_balanced,
            m.siv_m3,
            opt(m.consumption_m3),
            opt(m.comprehensive_leakage_percent),
            opt(m.assessed_leakage_percent),
            opt(m.real_losses_m3),
            opt(m.uarl_m3),
            opt(m.ili),
            m.ili_notes.join("; ").replace('"', "'"),
        )?;
    }
    w.flush()?;
    Ok(())
}

fn run_leakage(net: &Network, r: &Readings) -> anyhow::Result<LeakageReport> {
    Ok(leakage::analyze(r, net, &LeakageConfig::default())?)
}

/// Runs `waterline analyze …`.
pub fn analyze(cmd: AnalyzeCommand) -> anyhow::Result<()> {
    match cmd {
        AnalyzeCommand::Leakage {
            input,
            out,
            daily_kpis,
            monthly_kpis,
        } => {
            let started = Instant::now();
            let (net, r, report) =
                load_inputs(&input.network, &input.readings, input.skip_bad_rows)?;
            let loaded = started.elapsed();
            let result = run_leakage(&net, &r)?;
            emit_events(out.as_deref(), &result.events)?;
            if let Some(path) = &daily_kpis {
                write_days(path, &result.days)?;
            }
            if let Some(path) = &monthly_kpis {
                write_months(path, &result.months)?;
            }
            eprintln!(
                "{} readings ({} rows) of {} DMAs: {} events, {} DMA-days; loaded in {:.2} s, \
                 analysed in {:.2} s",
                report.kept,
                report.rows,
                net.dmas.len(),
                result.events.len(),
                result.days.len(),
                loaded.as_secs_f64(),
                (started.elapsed() - loaded).as_secs_f64()
            );
            Ok(())
        }
        AnalyzeCommand::Pressure {
            input,
            out,
            daily_kpis,
        } => crate::pressure::analyze(&input, out.as_deref(), daily_kpis.as_deref()),
        AnalyzeCommand::Quality { input, out, tuning } => {
            crate::quality::analyze(&input, out.as_deref(), &tuning)
        }
    }
}

/// Where the events go: a file, or stdout.
pub(crate) fn emit_events(out: Option<&Path>, events: &[Event]) -> anyhow::Result<()> {
    match out {
        Some(path) => {
            let file =
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            write_events(&mut BufWriter::new(file), events)
        }
        None => write_events(&mut std::io::stdout().lock(), events),
    }
}

/// An input file: the flag's value, else `name` inside `--dir`.
pub(crate) fn dir_file(
    given: Option<PathBuf>,
    dir: Option<&Path>,
    name: &str,
) -> anyhow::Result<PathBuf> {
    given.or_else(|| dir.map(|d| d.join(name))).ok_or_else(|| {
        anyhow::anyhow!("give --dir or --{}", name.split('.').next().unwrap_or(name))
    })
}

fn print_score(name: &str, s: &Score) {
    let delay = |k: &str| {
        s.median_delay_h
            .get(k)
            .map_or_else(|| "-".to_owned(), |h| format!("{h:.1}"))
    };
    println!(
        "{name:<10} {:>9.3} {:>7.3} {:>6.3} {:>6} {:>5} {:>11} {:>11} {:>11} {:>12.0}",
        s.precision,
        s.recall,
        s.f1,
        format!("{}/{}", s.found, s.leaks),
        s.false_alarms,
        delay("abrupt"),
        delay("incipient"),
        delay("all"),
        s.economic_score,
    );
}

/// Runs `waterline evaluate …`.
pub fn evaluate(cmd: EvaluateCommand) -> anyhow::Result<()> {
    let (files, baseline_gamma, price, false_alarm_cost) = match cmd {
        EvaluateCommand::Leakage {
            files,
            baseline_gamma,
            price,
            false_alarm_cost,
        } => (files, baseline_gamma, price, false_alarm_cost),
        EvaluateCommand::Quality(args) => return crate::quality::evaluate(args),
        EvaluateCommand::Pressure(args) => return crate::pressure::evaluate(&args),
    };
    let (net, r) = files.load()?;
    let (truth_file, truth_name) = files.open_truth()?;
    let truth = evaluate::read_truth(truth_file, &truth_name).map_err(anyhow::Error::msg)?;
    let horizon = r
        .time_range()
        .and_then(|(_, t1)| DateTime::<Utc>::from_timestamp_millis(t1))
        .unwrap_or_default();
    let started = Instant::now();
    let result = run_leakage(&net, &r)?;
    let elapsed = started.elapsed();
    let baseline = leakage::baseline_events(&net, &result.days, baseline_gamma);
    let econ = Economics {
        price_per_m3: price,
        false_alarm_cost,
    };
    let ours = evaluate::score(&truth, &result.events, horizon, econ);
    let base = evaluate::score(&truth, &baseline, horizon, econ);
    println!(
        "{} leaks in the truth; {} readings; analysed in {:.2} s",
        truth.len(),
        r.len(),
        elapsed.as_secs_f64()
    );
    println!(
        "{:<10} {:>9} {:>7} {:>6} {:>6} {:>5} {:>11} {:>11} {:>11} {:>12}",
        "detector",
        "precision",
        "recall",
        "F1",
        "found",
        "FA",
        "abrupt_h",
        "incipient_h",
        "median_h",
        "economic_€"
    );
    print_score("waterline", &ours);
    print_score("leakdb", &base);
    let paired = evaluate::paired_delays(&truth, &ours, &base);
    match paired.median_h {
        Some((a, b)) => println!(
            "on the {} leak(s) both found: median delay waterline {a:.1} h, leakdb {b:.1} h; \
             waterline earlier on {}, later on {}",
            paired.both, paired.earlier, paired.later
        ),
        None => println!("no leak was found by both detectors"),
    }
    Ok(())
}
