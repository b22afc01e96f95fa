//! Laboratory grab samples as analyser checks: [`LabSample`] (the parameter as a sensor kind,
//! the value in its canonical unit) from a stored [`GrabSample`] or from a CSV file
//! ([`read_lab_samples`]: `station,parameter,value,unit,sampled_at[,sample_id][,reported_at]`).

use std::io::BufRead;

use chrono::{DateTime, Utc};
use waterline_core::{GrabSample, SensorKind, StationId};

use crate::timefmt::EpochMillis;

/// A laboratory result that checks an analyser: the parameter as a sensor kind and the value
/// in its canonical unit.
#[derive(Debug, Clone, PartialEq)]
pub struct LabSample {
    pub station: StationId,
    pub kind: SensorKind,
    pub value: f64,
    pub sampled_at: EpochMillis,
    /// When the result was known (reported or entered); the check is decided no earlier.
    pub known_at: EpochMillis,
    pub sample_id: Option<String>,
}

impl LabSample {
    /// The check a grab sample taken at `station` gives, or `None` when its parameter is not
    /// one an analyser measures or its unit does not fit the parameter.
    pub fn from_grab(
        station: StationId,
        sample: &GrabSample,
        known_at: DateTime<Utc>,
    ) -> Option<LabSample> {
        let sampled_at = sample.sampled_at().timestamp_millis();
        Some(LabSample {
            station,
            kind: sample.analyser_kind()?,
            value: sample.canonical_value()?,
            sampled_at,
            known_at: known_at.timestamp_millis().max(sampled_at),
            sample_id: sample.sample_id().map(str::to_owned),
        })
    }
}

/// What [`read_lab_samples`] read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabFile {
    pub samples: Vec<LabSample>,
    /// Rows of lab-only analyses (E. coli, coliforms …): valid, but no analyser to check.
    pub lab_only: usize,
}

/// The header line of a small CSV file and its column names (trimmed, lower case, a byte-order
/// mark dropped).
pub(crate) fn csv_header(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    name: &str,
) -> Result<(String, Vec<String>), String> {
    let header = lines
        .next()
        .ok_or_else(|| format!("{name}: empty file"))?
        .map_err(|e| format!("cannot read {name}: {e}"))?;
    let cols = header
        .trim_start_matches('\u{feff}')
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    Ok((header, cols))
}

/// Reads a grab-sample CSV: a header naming `station`, `parameter`, `value`, `unit` and
/// `sampled_at` (RFC 3339), optionally `sample_id` and `reported_at` (when the result was
/// known; default `sampled_at`), in any order. A bad row is an error naming its line and
/// column; a parameter an analyser measures needs a unit of its kind.
pub fn read_lab_samples(reader: impl BufRead, name: &str) -> Result<LabFile, String> {
    let mut lines = reader.lines();
    let (header, cols) = csv_header(&mut lines, name)?;
    let col = |n: &str| cols.iter().position(|c| c == n);
    let (Some(si), Some(pi), Some(vi), Some(ui), Some(ti)) = (
        col("station"),
        col("parameter"),
        col("value"),
        col("unit"),
        col("sampled_at"),
    ) else {
        return Err(format!(
            "{name}: the header must name station, parameter, value, unit and sampled_at \
             (got `{header}`)"
        ));
    };
    let (idi, ri) = (col("sample_id"), col("reported_at"));
    let mut out = LabFile::default();
    for (i, line) in lines.enumerate() {
        let line = line.map_err(|e| format!("cannot read {name}: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{name} line {}", i + 2);
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let field = |c: usize| {
            f.get(c)
                .copied()
                .ok_or_else(|| format!("{at}: missing column {}", cols[c]))
        };
        let optional =
            |c: Option<usize>| c.and_then(|c| f.get(c).copied()).filter(|v| !v.is_empty());
        let station = StationId::parse(field(si)?).map_err(|e| format!("{at}: station: {e}"))?;
        let value: f64 = field(vi)?
            .parse()
            .map_err(|_| format!("{at}: value `{}` is not a number", f[vi]))?;
        let time = |text: &str, what: &str| {
            crate::timefmt::parse_rfc3339(text).map_err(|e| format!("{at}: {what}: {e}"))
        };
        let sampled_at = time(field(ti)?, "sampled_at")?;
        let known_at = optional(ri)
            .map(|r| time(r, "reported_at"))
            .transpose()?
            .unwrap_or(sampled_at);
        if known_at < sampled_at {
            return Err(format!("{at}: reported_at is before sampled_at"));
        }
        let sample = GrabSample::new(
            field(pi)?,
            value,
            field(ui)?,
            DateTime::<Utc>::from_timestamp_millis(sampled_at).unwrap_or_default(),
            optional(idi),
        )
        .map_err(|e| format!("{at}: {e}"))?;
        let Some(kind) = sample.analyser_kind() else {
            out.lab_only += 1;
            continue;
        };
        let checked = DateTime::<Utc>::from_timestamp_millis(known_at).unwrap_or_default();
        let lab = LabSample::from_grab(station, &sample, checked).ok_or_else(|| {
            format!(
                "{at}: unit `{}` is not a unit of {kind} (expected {})",
                sample.unit(),
                kind.canonical_unit()
            )
        })?;
        out.samples.push(lab);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_samples_in_canonical_units_and_names_bad_lines() {
        let csv = "parameter,station,value,unit,sampled_at,sample_id,reported_at\n\
                   free chlorine,S1,0.8,mg/L,2026-03-02T09:00:00Z,L1,\n\
                   conductivity,S1,0.45,mS/cm,2026-03-02T09:00:00Z,,2026-03-03T12:00:00Z\n\
                   e_coli,S1,0,CFU/100mL,2026-03-02T09:00:00Z,L3,\n";
        let got = read_lab_samples(csv.as_bytes(), "lab.csv");
        let Err(e) = &got else {
            panic!("mS/cm is no unit we know: {got:?}");
        };
        assert!(
            e.contains("lab.csv line 3") && e.contains("conductivity"),
            "{e}"
        );

        let csv = csv.replace("0.45,mS/cm", "450,uS/cm");
        let got = read_lab_samples(csv.as_bytes(), "lab.csv").expect("reads");
        assert_eq!(got.lab_only, 1);
        assert_eq!(got.samples.len(), 2);
        let (cl, ec) = (&got.samples[0], &got.samples[1]);
        assert_eq!((cl.kind, cl.value), (SensorKind::Chlorine, 0.8));
        assert_eq!(
            cl.known_at, cl.sampled_at,
            "no reported_at: known when sampled"
        );
        assert_eq!(cl.sample_id.as_deref(), Some("L1"));
        assert_eq!((ec.kind, ec.value), (SensorKind::Conductivity, 450.0));
        assert_eq!(ec.known_at - ec.sampled_at, 27 * 3_600_000);

        for (bad, says) in [
            ("ph,S1,seven,pH,2026-03-02T09:00:00Z,,\n", "value `seven`"),
            ("ph,S1,7,pH,yesterday,,\n", "sampled_at"),
            ("ph,S 1,7,pH,2026-03-02T09:00:00Z,,\n", "station"),
            (
                "turbidity,S1,0.3,mg/L,2026-03-02T09:00:00Z,,\n",
                "not a unit of turbidity",
            ),
            (
                "ph,S1,7,pH,2026-03-02T09:00:00Z,,2026-03-01T00:00:00Z\n",
                "before sampled_at",
            ),
        ] {
            let text =
                format!("parameter,station,value,unit,sampled_at,sample_id,reported_at\n{bad}");
            let e = read_lab_samples(text.as_bytes(), "lab.csv").unwrap_err();
            assert!(e.contains("line 2") && e.contains(says), "{says}: {e}");
        }
        let e = read_lab_samples("time,value\n".as_bytes(), "lab.csv").unwrap_err();
        assert!(e.contains("must name station"), "{e}");
    }
}
