//! `waterline analyze quality` (CONTRACTS §3) and `waterline evaluate quality`: the offline
//! replay of a readings file through the water-quality detectors, and their row-wise scoring
//! against simulator ground truth or labelled rows.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use waterline_analytics::Readings;
use waterline_analytics::quality::score::{self, EventScore, RowScore};
use waterline_analytics::quality::{self, Algorithm, LabSample, QualityConfig, QualityReport};
use waterline_core::{EventKind, Network};

use crate::analyze::{ExportArgs, InputArgs, emit_events, load_inputs};

/// Detector settings a user may change (defaults are the documented ones).
#[derive(Debug, Clone, clap::Args)]
pub struct QualityArgs {
    /// Outlier detection: lpcf (linear prediction per signal), mvnn (multivariate nearest
    /// neighbour) or both.
    #[arg(long, default_value = "both")]
    pub algorithm: Algorithm,
    /// Binomial event discriminator window, in steps.
    #[arg(long, default_value_t = 4)]
    pub bed_window: usize,
    /// Event probability that opens an event (0.5..1).
    #[arg(long, default_value_t = 0.9)]
    pub bed_probability: f64,
    /// Hours after which a lasting change is absorbed into the baseline.
    #[arg(long, default_value_t = 6.0)]
    pub timeout_hours: f64,
    /// Lab grab samples to check the analysers against (CSV
    /// `station,parameter,value,unit,sampled_at[,sample_id][,reported_at]`); with `evaluate
    /// --dir`, DIR/grab_samples.csv when it exists.
    #[arg(long)]
    pub grab_samples: Option<PathBuf>,
}

impl QualityArgs {
    fn config(&self) -> anyhow::Result<QualityConfig> {
        anyhow::ensure!(
            self.bed_window >= 2 && self.bed_window <= 64,
            "--bed-window {} must be between 2 and 64 steps",
            self.bed_window
        );
        anyhow::ensure!(
            self.bed_probability > 0.5 && self.bed_probability < 1.0,
            "--bed-probability {} must lie between 0.5 and 1 (exclusive)",
            self.bed_probability
        );
        anyhow::ensure!(
            self.timeout_hours.is_finite() && self.timeout_hours > 0.0,
            "--timeout-hours {} must be a positive number of hours",
            self.timeout_hours
        );
        let mut cfg = QualityConfig::default();
        cfg.detect.algorithm = self.algorithm;
        cfg.detect.bed_window = self.bed_window;
        cfg.detect.bed_probability = self.bed_probability;
        cfg.detect.timeout_ms = (self.timeout_hours * 3_600_000.0) as i64;
        Ok(cfg)
    }
}

/// `waterline evaluate quality`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvaluateQualityArgs {
    #[command(flatten)]
    pub files: ExportArgs,
    /// Row labels instead of a truth file: CSV `time,event[,station]`.
    #[arg(long, conflicts_with = "truth")]
    pub labels: Option<PathBuf>,
    /// Also write the detected events here (JSON Lines).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub tuning: QualityArgs,
}

/// Reads the grab-sample file, if any, reporting lab-only rows on stderr.
fn lab_samples(path: Option<&Path>) -> anyhow::Result<Vec<LabSample>> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let lab = quality::read_lab_samples(BufReader::new(file), &path.display().to_string())
        .map_err(anyhow::Error::msg)?;
    if lab.lab_only > 0 {
        eprintln!(
            "{}: {} lab-only result(s) (no analyser measures them) left aside",
            path.display(),
            lab.lab_only
        );
    }
    Ok(lab.samples)
}

fn run(
    net: &Network,
    r: &Readings,
    tuning: &QualityArgs,
    samples: &[LabSample],
) -> anyhow::Result<QualityReport> {
    Ok(quality::analyze_with(
        r,
        net,
        &tuning.config()?,
        &[],
        samples,
    ))
}

fn count(report: &QualityReport, kind: EventKind) -> usize {
    report.events.iter().filter(|e| e.kind == kind).count()
}

/// Runs `waterline analyze quality`.
pub fn analyze(input: &InputArgs, out: Option<&Path>, tuning: &QualityArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let (net, r, report) = load_inputs(&input.network, &input.readings, input.skip_bad_rows)?;
    let samples = lab_samples(tuning.grab_samples.as_deref())?;
    let loaded = started.elapsed();
    let result = run(&net, &r, tuning, &samples)?;
    emit_events(out, &result.events)?;
    eprintln!(
        "{} readings ({} rows) of {} stations: {} quality events, {} threshold crossings, \
         {} sensor faults; loaded in {:.2} s, analysed in {:.2} s",
        report.kept,
        report.rows,
        result.stations.len(),
        count(&result, EventKind::QualityEvent),
        count(&result, EventKind::QualityThreshold),
        count(&result, EventKind::SensorFault),
        loaded.as_secs_f64(),
        (started.elapsed() - loaded).as_secs_f64()
    );
    Ok(())
}

fn print_rows(s: &RowScore) {
    println!(
        "rows {}  labelled {}  flagged {}  true positives {}",
        s.rows, s.labelled, s.flagged, s.true_positives
    );
    println!(
        "row-wise precision {:.3}  recall {:.3}  F1 {:.3}",
        s.precision, s.recall, s.f1
    );
}

fn print_events(s: &EventScore) {
    let delay = s
        .median_delay_minutes
        .map_or_else(|| "-".to_owned(), |m| format!("{m:.0} min"));
    println!(
        "incidents found {}/{}  false quality events {}  median detection delay {delay}",
        s.incidents_found, s.incidents, s.false_events
    );
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    println!(
        "sensor faults found {}/{} (recall {:.3})  fault detections {} of which true {} \
         (precision {:.3})",
        s.faults_found,
        s.faults,
        ratio(s.faults_found, s.faults),
        s.fault_detections,
        s.fault_detections_true,
        ratio(s.fault_detections_true, s.fault_detections)
    );
    for (kind, (found, all)) in &s.faults_found_by_type {
        println!("  {kind:<12} {found}/{all}");
    }
}

/// Runs `waterline evaluate quality`.
pub fn evaluate(args: EvaluateQualityArgs) -> anyhow::Result<()> {
    let (net, r) = args.files.load()?;
    let in_dir = args
        .files
        .dir
        .as_ref()
        .map(|d| d.join("grab_samples.csv"))
        .filter(|p| p.exists());
    let samples = lab_samples(args.tuning.grab_samples.as_deref().or(in_dir.as_deref()))?;
    let started = Instant::now();
    let result = run(&net, &r, &args.tuning, &samples)?;
    let elapsed = started.elapsed();
    if let Some(out) = &args.out {
        emit_events(Some(out), &result.events)?;
    }
    println!(
        "{} readings, {} stations, {} grab samples; analysed in {:.2} s: {} quality events, \
         {} threshold crossings, {} sensor faults",
        r.len(),
        result.stations.len(),
        samples.len(),
        elapsed.as_secs_f64(),
        count(&result, EventKind::QualityEvent),
        count(&result, EventKind::QualityThreshold),
        count(&result, EventKind::SensorFault),
    );
    if let Some(path) = &args.labels {
        let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let labels = score::read_labels(BufReader::new(file), &path.display().to_string())
            .map_err(anyhow::Error::msg)?;
        print_rows(&score::score_labels(&result, &labels));
        return Ok(());
    }
    let (file, name) = args.files.open_truth()?;
    let truth = score::read_truth(file, &name).map_err(anyhow::Error::msg)?;
    print_rows(&score::score_rows(&result, &truth));
    print_events(&score::score_events(&result, &truth));
    Ok(())
}
