//! The readings file of CONTRACTS §2, loaded into one table in canonical units.
//!
//! CSV with the columns `time,sensor,value` (any order; extra columns are ignored), or Parquet
//! with the same three columns. Rows may come in any order; a repeated (sensor, time) pair
//! counts once (the first row wins). An empty value is a missing reading and is dropped (it is
//! counted). A sensor the network does not describe is counted and ignored, so that the caller
//! can report it once. A malformed row is an error that names its line, unless the caller asked
//! to skip bad rows, in which case it is counted and the first few are kept for the report.
//!
//! The result, [`Readings`], is sorted by (sensor, time) and exposes the same data as a polars
//! [`DataFrame`] (for the group-bys of the analyses) and as per-sensor slices (for the
//! sequential detectors), without copying.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::Path;

use polars::prelude::*;
use waterline_core::{Network, SensorId};

use crate::timefmt::{EpochMillis, parse_rfc3339};

mod csv;

/// What went wrong loading a readings file.
#[derive(Debug, thiserror::Error)]
pub enum ReadingsError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: String, message: String },
    #[error("{path} line {line}: {message}")]
    Row {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{path}: {source}")]
    Polars { path: String, source: PolarsError },
}

/// How to treat bad rows.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Count and skip malformed rows instead of failing on the first.
    pub skip_bad_rows: bool,
}

/// What loading found besides the readings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Data rows read (excluding the header).
    pub rows: usize,
    /// Readings kept (known sensor, value present, first of its (sensor, time)).
    pub kept: usize,
    /// Rows with an empty value.
    pub missing_values: usize,
    /// Rows repeating a (sensor, time) pair already seen.
    pub duplicates: usize,
    /// Malformed rows skipped (only with [`LoadOptions::skip_bad_rows`]).
    pub bad_rows: usize,
    /// The first few skipped rows' errors, `line N: reason`.
    pub bad_row_examples: Vec<String>,
    /// Rows per sensor that the network does not describe.
    pub unknown_sensors: BTreeMap<String, usize>,
}

const BAD_ROW_EXAMPLES: usize = 5;

/// One sensor's readings, sorted by time, in canonical units.
#[derive(Debug, Clone, Copy)]
pub struct SensorSeries<'a> {
    pub times: &'a [EpochMillis],
    pub values: &'a [f64],
}

impl SensorSeries<'_> {
    pub fn len(&self) -> usize {
        self.times.len()
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }
}

/// Readings of the sensors a network describes, sorted by (sensor, time), canonical units.
#[derive(Debug, Clone)]
pub struct Readings {
    sensors: Vec<SensorId>,
    index: HashMap<SensorId, u32>,
    /// Columns `sensor` (u32, index into `sensors`), `time` (i64 ms UTC), `value` (f64).
    frame: DataFrame,
    /// Row range of sensor `i`: `starts[i]..starts[i + 1]`.
    starts: Vec<usize>,
}

/// Rows gathered before sorting, by sensor, in file order within each sensor; only the
/// sensors that have rows take space (a network may describe half a million meters, and a
/// piece of the file may hold a few of them).
#[derive(Debug, Default)]
struct Columns {
    /// Sensor index → its slot below (`u32::MAX`: no rows yet); dropped by [`Columns::seal`].
    slot_of: Vec<u32>,
    /// Slot → sensor index, and each slot's times and values.
    sensors: Vec<u32>,
    time: Vec<Vec<EpochMillis>>,
    value: Vec<Vec<f64>>,
}

impl Columns {
    fn new(sensors: usize) -> Self {
        Columns {
            slot_of: vec![u32::MAX; sensors],
            ..Columns::default()
        }
    }

    fn push(&mut self, sensor: u32, t: EpochMillis, v: f64) {
        let slot = &mut self.slot_of[sensor as usize];
        if *slot == u32::MAX {
            *slot = self.sensors.len() as u32;
            self.sensors.push(sensor);
            self.time.push(Vec::new());
            self.value.push(Vec::new());
        }
        self.time[*slot as usize].push(t);
        self.value[*slot as usize].push(v);
    }

    fn len(&self) -> usize {
        self.time.iter().map(Vec::len).sum()
    }

    /// Frees the sensor index once no more rows come.
    fn seal(&mut self) {
        self.slot_of = Vec::new();
    }
}

/// Resolves sensor names to indices and values to canonical units.
struct SensorTable {
    ids: Vec<SensorId>,
    by_name: HashMap<String, u32>,
    factor: Vec<f64>,
}

impl SensorTable {
    fn new(network: &Network) -> Self {
        let mut ids = Vec::new();
        let mut by_name = HashMap::new();
        let mut factor = Vec::new();
        for (id, sensor) in &network.sensors {
            by_name.insert(id.as_str().to_owned(), ids.len() as u32);
            ids.push(id.clone());
            // The network parser has checked that the unit fits the kind.
            let canonical = sensor.kind.canonical_unit();
            factor.push(sensor.unit.convert(1.0, canonical).unwrap_or(1.0));
        }
        SensorTable {
            ids,
            by_name,
            factor,
        }
    }
}

/// One parsed row: `None` sensor when the network does not describe it, `None` value when missing.
enum Row<'a> {
    Reading(u32, EpochMillis, f64),
    Missing,
    Unknown(&'a str),
}

/// Gathers parsed rows and what loading found; a bad row is `(line, reason)`.
struct Collector {
    opts: LoadOptions,
    /// The rows of earlier pieces (in file order), then this one's.
    done: Vec<Columns>,
    cols: Columns,
    report: LoadReport,
    /// The first few skipped rows, by line.
    bad_examples: Vec<(usize, String)>,
}

impl Collector {
    fn new(opts: LoadOptions, sensors: usize) -> Self {
        Collector {
            opts,
            done: Vec::new(),
            cols: Columns::new(sensors),
            report: LoadReport::default(),
            bad_examples: Vec::new(),
        }
    }

    /// An empty collector with the same options, for one piece of a file.
    fn empty_like(&self) -> Self {
        Collector::new(self.opts, self.cols.slot_of.len())
    }

    fn row(&mut self, line: usize, parsed: Result<Row<'_>, String>) -> Result<(), (usize, String)> {
        self.report.rows += 1;
        match parsed {
            Ok(Row::Reading(s, t, v)) => self.cols.push(s, t, v),
            Ok(Row::Missing) => self.report.missing_values += 1,
            Ok(Row::Unknown(name)) => {
                if let Some(n) = self.report.unknown_sensors.get_mut(name) {
                    *n += 1;
                } else {
                    self.report.unknown_sensors.insert(name.to_owned(), 1);
                }
            }
            Err(message) if self.opts.skip_bad_rows => {
                self.report.bad_rows += 1;
                if self.bad_examples.len() < BAD_ROW_EXAMPLES {
                    self.bad_examples.push((line, message));
                }
            }
            Err(message) => return Err((line, message)),
        }
        Ok(())
    }

    /// Appends what `part` gathered from the rows after this one's, its lines numbered
    /// from `line_base + 1`.
    fn absorb(&mut self, part: Collector, line_base: usize) {
        let Collector {
            done,
            cols,
            report,
            bad_examples,
            ..
        } = part;
        if self.cols.len() > 0 {
            let sensors = self.cols.slot_of.len();
            let mut mine = std::mem::replace(&mut self.cols, Columns::new(sensors));
            mine.seal();
            self.done.push(mine);
        }
        self.done.extend(done);
        let mut cols = cols;
        cols.seal();
        self.done.push(cols);
        self.report.rows += report.rows;
        self.report.missing_values += report.missing_values;
        self.report.bad_rows += report.bad_rows;
        for (name, n) in report.unknown_sensors {
            *self.report.unknown_sensors.entry(name).or_default() += n;
        }
        let room = BAD_ROW_EXAMPLES.saturating_sub(self.bad_examples.len());
        self.bad_examples.extend(
            bad_examples
                .into_iter()
                .take(room)
                .map(|(line, message)| (line_base + line, message)),
        );
    }

    /// The rows (in pieces, in file order) and the report, skipped rows written as
    /// `line N: reason`.
    fn finish(mut self) -> (Vec<Columns>, LoadReport) {
        let mut report = self.report;
        report.bad_row_examples = self
            .bad_examples
            .into_iter()
            .map(|(line, message)| format!("line {line}: {message}"))
            .collect();
        self.cols.seal();
        self.done.push(self.cols);
        (self.done, report)
    }
}

/// Bounds of `parts` ranges of sensors with about equal rows (sensor `s` has the rows
/// `starts[s]..starts[s + 1]`): range `k` is `bounds[k]..bounds[k + 1]`, the last ending at the
/// last sensor.
fn sensor_ranges(starts: &[usize], parts: usize) -> Vec<usize> {
    let n_sensors = starts.len() - 1;
    let rows = starts[n_sensors];
    let mut bounds: Vec<usize> = (0..parts)
        .map(|k| {
            starts
                .partition_point(|&x| x < rows * k / parts)
                .min(n_sensors)
        })
        .collect();
    bounds.push(n_sensors);
    bounds
}

/// `data` cut into consecutive parts of the given lengths, one per range of sensors, for the
/// cores to fill side by side.
fn split_lengths<T>(mut data: &mut [T], lengths: impl IntoIterator<Item = usize>) -> Vec<&mut [T]> {
    let mut parts = Vec::new();
    for n in lengths {
        let (part, rest) = std::mem::take(&mut data).split_at_mut(n);
        parts.push(part);
        data = rest;
    }
    parts
}

/// The rows of each range of sensors `bounds` makes, sensor `s` holding the rows
/// `starts[s]..starts[s + 1]`.
fn range_rows<'a>(bounds: &'a [usize], starts: &'a [usize]) -> impl Iterator<Item = usize> + 'a {
    bounds.windows(2).map(|r| starts[r[1]] - starts[r[0]])
}

/// The `sensor` column (each row's sensor index) of rows placed by `starts`, one core filling
/// each range of sensors.
fn sensor_column(bounds: &[usize], starts: &[usize]) -> Vec<u32> {
    let mut sensor = vec![0u32; starts[starts.len() - 1]];
    let parts = split_lengths(&mut sensor, range_rows(bounds, starts));
    std::thread::scope(|scope| {
        for (range, part) in bounds.windows(2).zip(parts) {
            let (lo, hi) = (range[0], range[1]);
            scope.spawn(move || {
                for s in lo..hi {
                    part[starts[s] - starts[lo]..starts[s + 1] - starts[lo]].fill(s as u32);
                }
            });
        }
    });
    sensor
}

/// One sensor's rows from one piece of the file: its index, times and values.
type Run = (u32, Vec<EpochMillis>, Vec<f64>);

/// Gathers the rows of `sensors` from `runs` (in file order) into `time` and `value`, which
/// hold exactly those sensors' rows from `starts[sensors.start]` on; sorts each sensor's rows by
/// time (stable: the first row of a repeated time wins) and drops repeats, each sensor's kept
/// rows left at the front of its place and their count in `kept`. Returns the repeats dropped.
fn gather(
    runs: Vec<Run>,
    starts: &[usize],
    sensors: std::ops::Range<usize>,
    time: &mut [EpochMillis],
    value: &mut [f64],
    kept: &mut [usize],
) -> usize {
    let base = starts[sensors.start];
    let mut next: Vec<usize> = starts[sensors.clone()].iter().map(|&s| s - base).collect();
    for (s, t, v) in runs {
        let k = s as usize - sensors.start;
        let at = next[k];
        time[at..at + t.len()].copy_from_slice(&t);
        value[at..at + v.len()].copy_from_slice(&v);
        next[k] += t.len();
    }
    let mut repeats = 0;
    for (k, s) in sensors.enumerate() {
        let (a, b) = (starts[s] - base, starts[s + 1] - base);
        if !time[a..b].is_sorted() {
            let mut pairs: Vec<(i64, f64)> = time[a..b]
                .iter()
                .copied()
                .zip(value[a..b].iter().copied())
                .collect();
            pairs.sort_by_key(|p| p.0);
            for (i, (t, v)) in pairs.into_iter().enumerate() {
                time[a + i] = t;
                value[a + i] = v;
            }
        }
        let mut write = a;
        for i in a..b {
            if write > a && time[write - 1] == time[i] {
                repeats += 1;
                continue;
            }
            time[write] = time[i];
            value[write] = value[i];
            write += 1;
        }
        kept[k] = write - a;
    }
    repeats
}

impl Readings {
    /// Loads a CSV or Parquet readings file (by extension: `.parquet` is Parquet).
    pub fn load(
        path: &Path,
        network: &Network,
        opts: LoadOptions,
    ) -> Result<(Readings, LoadReport), ReadingsError> {
        let is_parquet = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
        let display = path.display().to_string();
        let io = |source| ReadingsError::Io {
            path: display.clone(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        if is_parquet {
            Self::from_parquet(file, &display, network, opts)
        } else {
            Self::from_csv(file, &display, network, opts)
        }
    }

    /// Loads CSV text from any reader; `path` names it in errors.
    pub fn from_csv(
        reader: impl Read,
        path: &str,
        network: &Network,
        opts: LoadOptions,
    ) -> Result<(Readings, LoadReport), ReadingsError> {
        let table = SensorTable::new(network);
        let mut c = Collector::new(opts, table.ids.len());
        csv::read_csv(reader, path, &table, &mut c)?;
        let (cols, report) = c.finish();
        Self::assemble(table, cols, report, path)
    }

    /// Loads a Parquet file with the columns `time` (timestamp or RFC 3339 text), `sensor`
    /// (text) and `value` (number, null = missing).
    pub fn from_parquet(
        file: File,
        path: &str,
        network: &Network,
        opts: LoadOptions,
    ) -> Result<(Readings, LoadReport), ReadingsError> {
        let polars_err = |source| ReadingsError::Polars {
            path: path.to_owned(),
            source,
        };
        let df = ParquetReader::new(file).finish().map_err(polars_err)?;
        let format = |message: String| ReadingsError::Format {
            path: path.to_owned(),
            message,
        };
        let column = |name: &str| {
            df.column(name).map_err(|_| {
                format(format!(
                    "no `{name}` column (expected time, sensor and value; found {})",
                    df.get_column_names()
                        .iter()
                        .map(|n| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
        };
        let time = column("time")?;
        let time_ms: Vec<Option<i64>> = match time.dtype() {
            DataType::Datetime(unit, _) => {
                let per_ms = match unit {
                    TimeUnit::Nanoseconds => 1_000_000,
                    TimeUnit::Microseconds => 1_000,
                    TimeUnit::Milliseconds => 1,
                };
                let phys = time.cast(&DataType::Int64).map_err(polars_err)?;
                phys.i64()
                    .map_err(polars_err)?
                    .iter()
                    .map(|v| v.map(|v| v.div_euclid(per_ms)))
                    .collect()
            }
            DataType::String => {
                let mut out = Vec::with_capacity(time.len());
                for (i, t) in time.str().map_err(polars_err)?.iter().enumerate() {
                    out.push(match t {
                        None => None,
                        Some(t) => Some(parse_rfc3339(t).map_err(|e| ReadingsError::Row {
                            path: path.to_owned(),
                            line: i + 1,
                            message: format!("bad time `{t}`: {e}"),
                        })?),
                    });
                }
                out
            }
            other => {
                return Err(format(format!(
                    "column `time` has type {other}; expected a timestamp or RFC 3339 text"
                )));
            }
        };
        let sensor = column("sensor")?
            .cast(&DataType::String)
            .map_err(polars_err)?;
        let sensor = sensor.str().map_err(polars_err)?;
        let value = column("value")?
            .cast(&DataType::Float64)
            .map_err(|_| format("column `value` is not numeric".into()))?;
        let value = value.f64().map_err(polars_err)?;

        let table = SensorTable::new(network);
        let mut c = Collector::new(opts, table.ids.len());
        for (i, ((t, s), v)) in time_ms
            .into_iter()
            .zip(sensor.iter())
            .zip(value.iter())
            .enumerate()
        {
            let parsed = match (t, s) {
                (None, _) => Err("the time is null".to_owned()),
                (_, None) => Err("the sensor is null".to_owned()),
                (Some(t), Some(s)) => match table.by_name.get(s.trim()) {
                    None => Ok(Row::Unknown(s.trim())),
                    Some(&idx) => match v {
                        None => Ok(Row::Missing),
                        Some(v) if !v.is_finite() => Err(format!("bad value {v}")),
                        Some(v) => Ok(Row::Reading(idx, t, v * table.factor[idx as usize])),
                    },
                },
            };
            // Parquet has no lines; the row number (from 1) stands in for one.
            c.row(i + 1, parsed)
                .map_err(|(line, message)| ReadingsError::Row {
                    path: path.to_owned(),
                    line,
                    message,
                })?;
        }
        let (cols, report) = c.finish();
        Self::assemble(table, cols, report, path)
    }

    /// Builds the table from rows that are already in canonical units (tests, the store).
    pub fn from_rows(
        network: &Network,
        rows: impl IntoIterator<Item = (SensorId, EpochMillis, f64)>,
    ) -> Readings {
        let table = SensorTable::new(network);
        let mut cols = Columns::new(table.ids.len());
        let mut report = LoadReport::default();
        for (id, t, v) in rows {
            report.rows += 1;
            if let Some(&idx) = table.by_name.get(id.as_str()) {
                cols.push(idx, t, v);
            }
        }
        // Cannot fail: the frame is built from equal-length columns.
        Self::assemble(table, vec![cols], report, "rows")
            .map(|(r, _)| r)
            .expect("equal-length columns")
    }

    /// Joins the pieces sensor by sensor, sorts by time, drops repeated pairs and wraps the
    /// columns in a frame.
    fn assemble(
        table: SensorTable,
        pieces: Vec<Columns>,
        mut report: LoadReport,
        path: &str,
    ) -> Result<(Readings, LoadReport), ReadingsError> {
        let n_sensors = table.ids.len();
        // Rows per sensor, and where each sensor's rows go.
        let mut starts = vec![0usize; n_sensors + 1];
        for piece in &pieces {
            for (&s, t) in piece.sensors.iter().zip(&piece.time) {
                starts[s as usize + 1] += t.len();
            }
        }
        for i in 0..n_sensors {
            starts[i + 1] += starts[i];
        }
        let n = starts[n_sensors];
        let mut time = vec![0i64; n];
        let mut value = vec![0f64; n];
        // One range of sensors per core, each gathered, sorted and cleared of repeats on its own.
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let bounds = sensor_ranges(&starts, cores);
        // Each range's rows, in file order, handed to the core that gathers (and frees) them.
        let mut runs: Vec<Vec<Run>> = (1..bounds.len()).map(|_| Vec::new()).collect();
        for piece in pieces {
            for ((s, time), value) in piece.sensors.into_iter().zip(piece.time).zip(piece.value) {
                let range = bounds.partition_point(|&b| b <= s as usize) - 1;
                runs[range].push((s, time, value));
            }
        }
        let mut kept = vec![0usize; n_sensors];
        let times = split_lengths(&mut time, range_rows(&bounds, &starts));
        let values = split_lengths(&mut value, range_rows(&bounds, &starts));
        let kepts = split_lengths(&mut kept, bounds.windows(2).map(|r| r[1] - r[0]));
        std::thread::scope(|scope| {
            let mut jobs = Vec::new();
            let parts = times.into_iter().zip(values).zip(kepts);
            for ((range, runs), ((t, v), k)) in bounds.windows(2).zip(runs).zip(parts) {
                let (lo, hi) = (range[0], range[1]);
                let starts = &starts;
                jobs.push(scope.spawn(move || gather(runs, starts, lo..hi, t, v, k)));
            }
            for job in jobs {
                report.duplicates += job.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            }
        });
        // Each sensor's kept rows moved up behind the previous sensor's (nothing moves when
        // there were no repeats).
        let mut out_starts = vec![0usize; n_sensors + 1];
        let mut write = 0usize;
        for s in 0..n_sensors {
            let from = starts[s];
            if from != write {
                time.copy_within(from..from + kept[s], write);
                value.copy_within(from..from + kept[s], write);
            }
            out_starts[s] = write;
            write += kept[s];
        }
        out_starts[n_sensors] = write;
        time.truncate(write);
        value.truncate(write);
        report.kept = write;
        let sensor = sensor_column(&bounds, &out_starts);
        // The columns are handed over, not copied.
        let frame = DataFrame::new(
            write,
            vec![
                UInt32Chunked::from_vec("sensor".into(), sensor).into_column(),
                Int64Chunked::from_vec("time".into(), time).into_column(),
                Float64Chunked::from_vec("value".into(), value).into_column(),
            ],
        )
        .map_err(|source| ReadingsError::Polars {
            path: path.to_owned(),
            source,
        })?;
        let index = table
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i as u32))
            .collect();
        Ok((
            Readings {
                sensors: table.ids,
                index,
                frame,
                starts: out_starts,
            },
            report,
        ))
    }

    /// The whole table: columns `sensor` (u32), `time` (i64 ms UTC), `value` (f64).
    pub fn frame(&self) -> &DataFrame {
        &self.frame
    }

    /// The index of a sensor in the `sensor` column.
    pub fn sensor_index(&self, id: &SensorId) -> Option<u32> {
        self.index.get(id).copied()
    }

    /// The id of a sensor index.
    pub fn sensor_id(&self, index: u32) -> &SensorId {
        &self.sensors[index as usize]
    }

    /// Number of readings.
    pub fn len(&self) -> usize {
        self.frame.height()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One sensor's readings (empty when it has none or is not described).
    pub fn series(&self, id: &SensorId) -> SensorSeries<'_> {
        let Some(i) = self.sensor_index(id) else {
            return SensorSeries {
                times: &[],
                values: &[],
            };
        };
        let (a, b) = (self.starts[i as usize], self.starts[i as usize + 1]);
        SensorSeries {
            times: &self.time_slice()[a..b],
            values: &self.value_slice()[a..b],
        }
    }

    /// The time range covered, `None` when empty.
    pub fn time_range(&self) -> Option<(EpochMillis, EpochMillis)> {
        let t = self.time_slice();
        let min = t.iter().min()?;
        let max = t.iter().max()?;
        Some((*min, *max))
    }

    fn time_slice(&self) -> &[i64] {
        // The frame is built from one contiguous, null-free chunk per column.
        self.frame
            .column("time")
            .ok()
            .and_then(|c| c.i64().ok())
            .and_then(|c| c.cont_slice().ok())
            .unwrap_or(&[])
    }

    fn value_slice(&self) -> &[f64] {
        self.frame
            .column("value")
            .ok()
            .and_then(|c| c.f64().ok())
            .and_then(|c| c.cont_slice().ok())
            .unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network() -> Network {
        Network::parse(
            r#"
timezone = "UTC"
[[dma]]
id = "A"
inlets = ["f1"]
[[sensor]]
id = "f1"
kind = "flow"
unit = "L/s"
[[sensor]]
id = "p1"
kind = "pressure"
unit = "bar"
"#,
        )
        .unwrap()
    }

    fn load(text: &str, skip: bool) -> Result<(Readings, LoadReport), ReadingsError> {
        Readings::from_csv(
            text.as_bytes(),
            "r.csv",
            &network(),
            LoadOptions {
                skip_bad_rows: skip,
            },
        )
    }

    #[test]
    fn sorts_dedupes_converts_and_reports() {
        let text = "time,sensor,value\n\
            2019-01-01T00:10:00Z,f1,2\n\
            2019-01-01T00:00:00Z,f1,1\n\
            2019-01-01T00:00:00Z,f1,9\n\
            2019-01-01T00:05:00Z,p1,\n\
            2019-01-01T00:00:00+01:00,p1,1.5\n\
            2019-01-01T00:00:00Z,zz9,3\n\
            2019-01-01T00:01:00Z,zz9,3\n";
        let (r, report) = load(text, false).unwrap();
        let f1 = r.series(&SensorId::parse("f1").unwrap());
        assert_eq!(f1.times, &[1_546_300_800_000, 1_546_301_400_000]);
        // L/s → m³/h; the first of the repeated pair wins.
        assert!((f1.values[0] - 3.6).abs() < 1e-9 && (f1.values[1] - 7.2).abs() < 1e-9);
        let p1 = r.series(&SensorId::parse("p1").unwrap());
        assert_eq!(p1.times, &[1_546_297_200_000]);
        assert!(
            (p1.values[0] - 15.295).abs() < 0.01,
            "bar → m head: {}",
            p1.values[0]
        );
        assert_eq!(report.rows, 7);
        assert_eq!(report.kept, 3);
        assert_eq!(report.duplicates, 1);
        assert_eq!(report.missing_values, 1);
        assert_eq!(report.unknown_sensors.get("zz9"), Some(&2));
        assert_eq!(r.frame().height(), 3);
    }

    #[test]
    fn sensor_ranges_cover_every_sensor_with_about_equal_rows() {
        assert_eq!(sensor_ranges(&[0], 2), [0, 0, 0]);
        // Rows 5, 5, 0, 0: two ranges of 5 rows, the empty sensors in the last.
        assert_eq!(sensor_ranges(&[0, 5, 10, 10, 10], 2), [0, 1, 4]);
        assert_eq!(sensor_ranges(&[0, 5, 10, 10, 10], 1), [0, 4]);
        // More parts than sensors: some ranges are empty.
        assert_eq!(sensor_ranges(&[0, 3, 6], 4), [0, 1, 1, 2, 2]);
        assert_eq!(sensor_column(&[0, 1, 4], &[0, 2, 3, 3, 5]), [0, 0, 1, 3, 3]);
    }

    #[test]
    fn pieces_are_joined_sorted_and_cleared_of_repeats_sensor_by_sensor() {
        // Nine sensors (the cores split them into ranges), three pieces, times out of order
        // and repeated within and across pieces; sensor 4 has no rows.
        let mut text = String::from("timezone = \"UTC\"\n");
        for i in 0..9 {
            text.push_str(&format!(
                "[[sensor]]\nid = \"s{i}\"\nkind = \"pressure\"\nunit = \"m\"\n"
            ));
        }
        let network = Network::parse(&text).unwrap();
        let table = SensorTable::new(&network);
        let mut x = 7u64;
        let mut pieces = Vec::new();
        let mut all: Vec<(u32, i64, f64)> = Vec::new();
        for p in 0..3 {
            let mut cols = Columns::new(table.ids.len());
            for k in 0..200 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let s = (x % 9) as u32;
                if table.ids[s as usize].as_str() == "s4" {
                    continue;
                }
                let (t, v) = ((x >> 8) as i64 % 40 * 60_000, f64::from(p * 1000 + k));
                cols.push(s, t, v);
                all.push((s, t, v));
            }
            pieces.push(cols);
        }
        let (r, report) = Readings::assemble(table, pieces, LoadReport::default(), "t").unwrap();
        // Sensor by sensor in file order, stably sorted by time, the first of a repeat kept.
        all.sort_by_key(|&(s, t, _)| (s, t));
        let before = all.len();
        all.dedup_by_key(|&mut (s, t, _)| (s, t));
        assert_eq!(report.duplicates, before - all.len());
        assert_eq!(report.kept, all.len());
        let sensor = r.frame().column("sensor").unwrap().u32().unwrap();
        let got: Vec<(u32, i64, f64)> = sensor
            .into_no_null_iter()
            .zip(r.time_slice().iter().copied())
            .zip(r.value_slice().iter().copied())
            .map(|((s, t), v)| (s, t, v))
            .collect();
        assert_eq!(got, all);
        for (i, id) in r.sensors.iter().enumerate() {
            let series = r.series(id);
            let want: Vec<i64> = all
                .iter()
                .filter(|row| row.0 == i as u32)
                .map(|row| row.1)
                .collect();
            assert_eq!(series.times, want, "{id}");
        }
    }

    #[test]
    fn a_bad_row_names_its_line_unless_skipped() {
        let text = "time,sensor,value\n2019-01-01T00:00:00Z,f1,1\n2019-01-01T00:05:00Z,f1,abc\n\
                    2019-13-01T00:00:00Z,f1,1\n2019-01-01T00:10:00Z,f1\n";
        let err = load(text, false).unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("abc"), "{err}");
        let (r, report) = load(text, true).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(report.bad_rows, 3);
        assert!(
            report.bad_row_examples[1].contains("line 4: bad time"),
            "{report:?}"
        );
        assert!(
            report.bad_row_examples[2].contains("expected 3 fields"),
            "{report:?}"
        );
    }

    #[test]
    fn header_problems_and_quoting() {
        let err = load("when,sensor,value\n", false).unwrap_err().to_string();
        assert!(err.contains("no `time` column"), "{err}");
        let err = load("", false).unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        let (r, _) = load(
            "\u{feff}sensor,value,time,note\n\"f1\",\"2.5\",2019-01-01T00:00:00Z,\"a, b\"\n",
            false,
        )
        .unwrap();
        assert_eq!(r.series(&SensorId::parse("f1").unwrap()).values, &[9.0]);
    }

    #[test]
    fn non_finite_values_are_bad_rows() {
        for v in ["NaN", "inf", "-inf"] {
            let err = load(
                &format!("time,sensor,value\n2019-01-01T00:00:00Z,f1,{v}\n"),
                false,
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("not a decimal number"), "{v}: {err}");
        }
    }

    #[test]
    fn parquet_with_the_same_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.parquet");
        let mut df = df!(
            "time" => ["2019-01-01T00:05:00Z", "2019-01-01T00:00:00Z"],
            "sensor" => ["f1", "f1"],
            "value" => [Some(1.0), None],
        )
        .unwrap();
        ParquetWriter::new(File::create(&path).unwrap())
            .finish(&mut df)
            .unwrap();
        let (r, report) = Readings::load(&path, &network(), LoadOptions::default()).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(report.missing_values, 1);
        assert!((r.series(&SensorId::parse("f1").unwrap()).values[0] - 3.6).abs() < 1e-9);
    }
}
