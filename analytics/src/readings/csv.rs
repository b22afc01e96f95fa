//! The CSV reader behind [`Readings::from_csv`](super::Readings::from_csv).
//!
//! The file is read in blocks of whole lines (the next block read while one is parsed); each
//! block is cut at line ends into one piece per core and the pieces are parsed side by side,
//! then appended in file order, so the result (which row of a repeated pair comes first, which
//! bad row is reported) is the same as reading line by line. A year of 5-minute data for 300
//! sensors is a 1.2 GB file: parsing is the part of `analyze` that grows with the data, so it
//! is done by hand: no allocation per row, the last timestamp and sensor name remembered (a
//! file written time by time or sensor by sensor repeats one of them on every row).

use std::io::Read;

use super::{Collector, ReadingsError, Row, SensorTable};
use crate::timefmt::{EpochMillis, parse_rfc3339};

/// Bytes parsed by one core per block.
const PIECE: usize = 8 << 20;

/// Splits one CSV record into fields, honouring double quotes (`""` inside quotes is a quote).
fn split_csv(line: &str, out: &mut Vec<String>) -> Result<(), String> {
    out.clear();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
        } else if c == '"' && at_field_start {
            quoted = true;
            at_field_start = false;
        } else if c == ',' {
            out.push(std::mem::take(&mut field));
            at_field_start = true;
        } else {
            field.push(c);
            at_field_start = false;
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    out.push(field);
    Ok(())
}

/// Where the three columns sit in a CSV record.
#[derive(Debug, Clone, Copy)]
struct Layout {
    time: usize,
    sensor: usize,
    value: usize,
    width: usize,
}

impl Layout {
    fn from_header(fields: &[String]) -> Result<Layout, String> {
        let find = |name: &str| {
            fields.iter().position(|f| f.trim() == name).ok_or_else(|| {
                format!("the header has no `{name}` column (expected `time,sensor,value`)")
            })
        };
        Ok(Layout {
            time: find("time")?,
            sensor: find("sensor")?,
            value: find("value")?,
            width: fields.len(),
        })
    }

    /// The canonical layout, fast to split without allocation.
    fn is_canonical(&self) -> bool {
        self.time == 0 && self.sensor == 1 && self.value == 2 && self.width == 3
    }
}

/// Parses the three fields of a row (`None` sensor index: not in the network).
fn parse_fields<'a>(
    sensor: Option<u32>,
    time: Result<EpochMillis, String>,
    name: &'a str,
    value: &str,
    table: &SensorTable,
) -> Result<Row<'a>, String> {
    let time = time?;
    let Some(idx) = sensor else {
        return Ok(Row::Unknown(name));
    };
    let value = trimmed(value);
    if value.is_empty() {
        return Ok(Row::Missing);
    }
    let v: f64 = parse_decimal(value)
        .filter(|v: &f64| v.is_finite())
        .ok_or_else(|| format!("bad value `{value}`: not a decimal number"))?;
    Ok(Row::Reading(idx, time, v * table.factor[idx as usize]))
}

/// `text` as a number: bit for bit what `str::parse::<f64>` gives, the plain decimals of
/// nearly every file worked out by hand first.
fn parse_decimal(text: &str) -> Option<f64> {
    plain_decimal(text.as_bytes()).or_else(|| text.parse().ok())
}

/// Powers of ten that an `f64` holds exactly.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// An optional sign and at most 15 digits with at most one point (`-12.345`, `7`, `.5`):
/// the digits as an integer below 2⁵³ and the power of ten are both exact, so their quotient,
/// rounded once by the division, is the correctly rounded value `str::parse` gives too.
/// `None` for anything else (exponents, more digits, `inf`, bad text).
fn plain_decimal(b: &[u8]) -> Option<f64> {
    let (negative, digits) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    let mut mantissa = 0u64;
    let mut count = 0usize;
    let mut fraction: Option<usize> = None;
    for &c in digits {
        match c {
            b'0'..=b'9' => {
                count += 1;
                if count > 15 {
                    return None;
                }
                mantissa = mantissa * 10 + u64::from(c - b'0');
                if let Some(f) = &mut fraction {
                    *f += 1;
                }
            }
            b'.' if fraction.is_none() => fraction = Some(0),
            _ => return None,
        }
    }
    if count == 0 {
        return None;
    }
    let v = mantissa as f64 / POW10[fraction.unwrap_or(0)];
    Some(if negative { -v } else { v })
}

fn parse_time(text: &str) -> Result<EpochMillis, String> {
    let text = trimmed(text);
    parse_rfc3339(text).map_err(|e| format!("bad time `{text}`: {e}"))
}

/// `text` without surrounding white space (without looking further when its ends are plain).
fn trimmed(text: &str) -> &str {
    match text.as_bytes() {
        [first, .., last] if first.is_ascii_graphic() && last.is_ascii_graphic() => text,
        [only] if only.is_ascii_graphic() => text,
        _ => text.trim(),
    }
}

/// Whether two short texts (a timestamp, a sensor name) are the same, compared eight bytes at
/// a time in line rather than by a call to `memcmp` (two such comparisons per row).
#[inline]
fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a == b;
    }
    let word = |s: &[u8], at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    // The last eight bytes (overlapping the words before when the length is not a multiple).
    word(a, n - 8) == word(b, n - 8)
}

/// Parses rows whose fields borrow from the block, remembering the last time seen and which
/// sensor followed which: a file written time by time lists the sensors in the same order at
/// every time, one written sensor by sensor repeats the sensor (it follows itself).
struct RowParser<'t, 'a> {
    table: &'t SensorTable,
    last_time: Option<(&'a str, EpochMillis)>,
    /// The last known sensor, and for each sensor the one that followed it last time.
    last_known: Option<u32>,
    follows: Vec<Option<u32>>,
}

impl<'t, 'a> RowParser<'t, 'a> {
    fn new(table: &'t SensorTable) -> Self {
        RowParser {
            table,
            last_time: None,
            last_known: None,
            follows: vec![None; table.ids.len()],
        }
    }

    fn sensor_index(&mut self, name: &str) -> Option<u32> {
        let predicted = self
            .last_known
            .and_then(|prev| self.follows[prev as usize])
            .filter(|&next| same_text(self.table.ids[next as usize].as_str(), name));
        let idx = predicted.or_else(|| self.table.by_name.get(name).copied());
        if let Some(idx) = idx {
            if let Some(prev) = self.last_known {
                self.follows[prev as usize] = Some(idx);
            }
            self.last_known = Some(idx);
        }
        idx
    }

    fn parse(&mut self, time: &'a str, sensor: &'a str, value: &str) -> Result<Row<'a>, String> {
        let sensor = trimmed(sensor);
        if sensor.is_empty() {
            return Err("the sensor is empty".into());
        }
        let time = match self.last_time {
            Some((last, t)) if same_text(last, time) => Ok(t),
            _ => {
                let parsed = parse_time(time);
                if let Ok(t) = parsed {
                    self.last_time = Some((time, t));
                }
                parsed
            }
        };
        let idx = self.sensor_index(sensor);
        parse_fields(idx, time, sensor, value, self.table)
    }
}

/// Parses one row in any layout (fields copied out of their quotes).
fn parse_general<'f>(
    table: &SensorTable,
    layout: Layout,
    text: &str,
    fields: &'f mut Vec<String>,
) -> Result<Row<'f>, String> {
    split_csv(text, fields)?;
    if fields.len() != layout.width {
        return Err(format!(
            "expected {} fields, found {}",
            layout.width,
            fields.len()
        ));
    }
    let sensor = fields[layout.sensor].trim();
    if sensor.is_empty() {
        return Err("the sensor is empty".into());
    }
    let time = parse_time(&fields[layout.time]);
    let idx = table.by_name.get(sensor).copied();
    parse_fields(idx, time, sensor, &fields[layout.value], table)
}

/// Takes the next line off `rest` (without its `\n` or `\r\n`); `None` when nothing is left.
fn next_line<'b>(rest: &mut &'b [u8]) -> Option<&'b [u8]> {
    if rest.is_empty() {
        return None;
    }
    let (line, after) = match memchr::memchr(b'\n', rest) {
        Some(end) => (&rest[..end], &rest[end + 1..]),
        None => (*rest, &rest[rest.len()..]),
    };
    *rest = after;
    Some(line.strip_suffix(b"\r").unwrap_or(line))
}

/// Parses the lines of one piece (whole lines) into `out`, numbering them from 1.
///
/// Returns the number of lines seen; stops at the first bad row unless bad rows are skipped.
/// A piece of valid UTF-8 in the canonical layout (nearly every file) is checked for UTF-8
/// once and cut at its line ends, commas and quotes in one pass; anything else is read line by
/// line. Both give the same rows and the same errors.
fn parse_piece(
    table: &SensorTable,
    layout: Layout,
    piece: &[u8],
    out: &mut Collector,
) -> Result<usize, (usize, String)> {
    match std::str::from_utf8(piece) {
        Ok(text) if layout.is_canonical() => parse_canonical_piece(table, layout, text, out),
        _ => parse_piece_by_line(table, layout, piece, out),
    }
}

/// Where a line's field separators are: its first two commas (as byte offsets in the text the
/// line lies in), how many commas it has and whether it holds a quote.
#[derive(Debug, Clone, Copy, Default)]
struct Cuts {
    commas: [usize; 2],
    n_commas: usize,
    quoted: bool,
}

impl Cuts {
    /// Takes note of the comma or quote at `at`.
    fn see(&mut self, byte: u8, at: usize) {
        if byte == b'"' {
            self.quoted = true;
        } else {
            if self.n_commas < 2 {
                self.commas[self.n_commas] = at;
            }
            self.n_commas += 1;
        }
    }
}

/// Whether a line holds only white space (only one that starts with white space, ASCII or
/// not, is looked at further).
fn is_blank(line: &str) -> bool {
    line.as_bytes()
        .first()
        .is_none_or(|b| b.is_ascii_whitespace() || !b.is_ascii())
        && line.trim().is_empty()
}

/// One line of the canonical layout, `text[start..end]` (its line end taken off) cut at
/// `cuts`; `None` for a blank line.
fn canonical_line<'r, 'a: 'r>(
    rows: &mut RowParser<'_, 'a>,
    fields: &'r mut Vec<String>,
    layout: Layout,
    text: &'a str,
    (start, end): (usize, usize),
    cuts: Cuts,
) -> Option<Result<Row<'r>, String>> {
    let line = &text[start..end];
    if is_blank(line) {
        return None;
    }
    Some(if cuts.quoted {
        parse_general(rows.table, layout, line, fields)
    } else if cuts.n_commas == 2 {
        let [a, b] = cuts.commas;
        rows.parse(&text[start..a], &text[a + 1..b], &text[b + 1..end])
    } else {
        Err(format!(
            "expected 3 fields (time,sensor,value), found {}",
            cuts.n_commas + 1
        ))
    })
}

/// [`parse_piece`] for a piece of valid UTF-8 in the canonical layout: one scan for line ends,
/// commas and quotes over the whole piece, rather than several per line.
fn parse_canonical_piece(
    table: &SensorTable,
    layout: Layout,
    text: &str,
    out: &mut Collector,
) -> Result<usize, (usize, String)> {
    let bytes = text.as_bytes();
    let mut rows = RowParser::new(table);
    let mut fields = Vec::new();
    let mut number = 0usize;
    // The line being scanned: where it starts, and its cuts so far.
    let mut start = 0usize;
    let mut cuts = Cuts::default();
    let mut line = |start: usize, end: usize, cuts: Cuts| {
        number += 1;
        let end = if end > start && bytes[end - 1] == b'\r' {
            end - 1
        } else {
            end
        };
        match canonical_line(&mut rows, &mut fields, layout, text, (start, end), cuts) {
            Some(parsed) => out.row(number, parsed),
            None => Ok(()),
        }
    };
    for at in memchr::memchr3_iter(b'\n', b',', b'"', bytes) {
        if bytes[at] == b'\n' {
            line(start, at, cuts)?;
            start = at + 1;
            cuts = Cuts::default();
        } else {
            cuts.see(bytes[at], at);
        }
    }
    if start < bytes.len() {
        line(start, bytes.len(), cuts)?;
    }
    Ok(number)
}

/// [`parse_piece`] line by line (any layout, invalid UTF-8 reported by line).
fn parse_piece_by_line(
    table: &SensorTable,
    layout: Layout,
    piece: &[u8],
    out: &mut Collector,
) -> Result<usize, (usize, String)> {
    let mut rows = RowParser::new(table);
    let mut fields = Vec::new();
    let mut number = 0usize;
    let mut rest = piece;
    while let Some(raw) = next_line(&mut rest) {
        number += 1;
        let text = match std::str::from_utf8(raw) {
            Ok(text) => text,
            Err(e) => {
                out.row(
                    number,
                    Err(format!(
                        "not UTF-8 text (invalid byte at column {})",
                        e.valid_up_to() + 1
                    )),
                )?;
                continue;
            }
        };
        if layout.is_canonical() {
            let mut cuts = Cuts::default();
            for at in memchr::memchr2_iter(b',', b'"', raw) {
                cuts.see(raw[at], at);
            }
            let span = (0, text.len());
            if let Some(parsed) = canonical_line(&mut rows, &mut fields, layout, text, span, cuts) {
                out.row(number, parsed)?;
            }
        } else if !is_blank(text) {
            let parsed = parse_general(table, layout, text, &mut fields);
            out.row(number, parsed)?;
        }
    }
    Ok(number)
}

/// Cuts `block` (whole lines) into at most `n` pieces of whole lines of about equal size.
fn cut_at_lines(block: &[u8], n: usize) -> Vec<&[u8]> {
    let mut pieces = Vec::with_capacity(n);
    let mut rest = block;
    for k in (1..=n).rev() {
        if rest.is_empty() {
            break;
        }
        let target = rest.len() / k;
        if k == 1 || target == 0 {
            pieces.push(rest);
            break;
        }
        let end = match memchr::memchr(b'\n', &rest[target..]) {
            Some(at) => target + at + 1,
            None => rest.len(),
        };
        pieces.push(&rest[..end]);
        rest = &rest[end..];
    }
    pieces
}

/// Reads the header and all rows of a CSV readings file into `out`.
pub(super) fn read_csv(
    reader: impl Read,
    path: &str,
    table: &SensorTable,
    out: &mut Collector,
) -> Result<(), ReadingsError> {
    read_csv_in_pieces(reader, path, table, out, PIECE)
}

/// Hands out a reader's bytes in blocks of whole lines, the unfinished last line kept for the
/// next block.
struct LineBlocks<R> {
    reader: R,
    /// Bytes wanted per block.
    size: usize,
    carry: Vec<u8>,
}

/// The longest line a readings file may have: a row is a time, a sensor id and a value, a
/// few dozen bytes; a megabyte without a line end is not a readings CSV.
const MAX_LINE_BYTES: usize = 1 << 20;

impl<R: Read> LineBlocks<R> {
    /// Fills `block` with the next whole lines (the file's last line even without its line
    /// end); `false` when nothing is left. A line longer than [`MAX_LINE_BYTES`] is an error.
    fn fill(&mut self, block: &mut Vec<u8>) -> std::io::Result<bool> {
        block.clear();
        block.append(&mut self.carry);
        loop {
            let want = self
                .size
                .saturating_sub(block.len())
                .max(self.size.div_ceil(2));
            // Only what is read now can hold a line end: the carried line has none.
            let before = block.len();
            let got = self.reader.by_ref().take(want as u64).read_to_end(block)?;
            if got == 0 {
                return Ok(!block.is_empty());
            }
            // Keep the unfinished last line for the next block; a block without a line end
            // (one long line) reads on, up to the longest line allowed.
            if let Some(end) = memchr::memrchr(b'\n', &block[before..]).map(|i| before + i) {
                self.carry.extend_from_slice(&block[end + 1..]);
                block.truncate(end + 1);
                return Ok(true);
            }
            if block.len() > MAX_LINE_BYTES {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "a line runs on for more than {} MiB without a line end (not a \
                         `time,sensor,value` CSV)",
                        MAX_LINE_BYTES >> 20
                    ),
                ));
            }
        }
    }
}

/// One parsed piece: what it gathered, and how many lines it had or its first bad row.
type ParsedPiece = (Collector, Result<usize, (usize, String)>);

/// The rows of `body` (whole lines), cut into one piece per core and parsed side by side.
fn parse_block(
    table: &SensorTable,
    layout: Layout,
    body: &[u8],
    proto: &Collector,
    cores: usize,
) -> Vec<ParsedPiece> {
    let pieces = cut_at_lines(body, cores);
    crate::parallel::map_in_parallel(&pieces, |piece| {
        let mut part = proto.empty_like();
        let lines = parse_piece(table, layout, piece, &mut part);
        (part, lines)
    })
}

/// [`read_csv`] with pieces of about `piece` bytes. While one block is parsed the next is read.
fn read_csv_in_pieces(
    reader: impl Read,
    path: &str,
    table: &SensorTable,
    out: &mut Collector,
    piece: usize,
) -> Result<(), ReadingsError> {
    let io = |source| ReadingsError::Io {
        path: path.to_owned(),
        source,
    };
    let row_error = |(line, message)| ReadingsError::Row {
        path: path.to_owned(),
        line,
        message,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let mut blocks = LineBlocks {
        reader,
        size: piece.saturating_mul(cores).max(1),
        carry: Vec::new(),
    };
    let mut block: Vec<u8> = Vec::new();
    let mut next: Vec<u8> = Vec::new();
    // Lines before the current block's body.
    let mut line_base = 0usize;
    // The header, in the first block that is not all blank lines.
    let mut found = None;
    let mut more = blocks.fill(&mut block).map_err(io)?;
    while more {
        if let (Some(layout), rest) = read_header(&block, path, &mut line_base)? {
            found = Some((layout, block.len() - rest.len()));
            break;
        }
        more = blocks.fill(&mut block).map_err(io)?;
    }
    let Some((layout, mut body_at)) = found else {
        return Err(ReadingsError::Format {
            path: path.to_owned(),
            message: "the file is empty (expected the header `time,sensor,value`)".into(),
        });
    };
    loop {
        let body = &block[body_at..];
        let proto: &Collector = out;
        let (parsed, more) = std::thread::scope(|scope| {
            let parsing = scope.spawn(|| parse_block(table, layout, body, proto, cores));
            let more = blocks.fill(&mut next);
            let parsed = parsing
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            (parsed, more)
        });
        // This block's bad row comes before any trouble reading the next.
        for (part, lines) in parsed {
            match lines {
                Ok(lines) => {
                    out.absorb(part, line_base);
                    line_base += lines;
                }
                Err((line, message)) => return Err(row_error((line_base + line, message))),
            }
        }
        if !more.map_err(io)? {
            return Ok(());
        }
        std::mem::swap(&mut block, &mut next);
        body_at = 0;
    }
}

/// Finds the header (the first line that is not blank) at the start of `block`.
///
/// Returns the layout and the rest of the block, or `None` when the block holds blank lines
/// only; `line_base` counts the lines passed.
fn read_header<'b>(
    mut block: &'b [u8],
    path: &str,
    line_base: &mut usize,
) -> Result<(Option<Layout>, &'b [u8]), ReadingsError> {
    let row_error = |line, message| ReadingsError::Row {
        path: path.to_owned(),
        line,
        message,
    };
    while let Some(raw) = next_line(&mut block) {
        *line_base += 1;
        let text = std::str::from_utf8(raw)
            .map_err(|_| row_error(*line_base, "the header is not UTF-8 text".to_owned()))?;
        let text = text.trim_start_matches('\u{feff}');
        if text.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        split_csv(text, &mut fields).map_err(|m| row_error(*line_base, m))?;
        let layout = Layout::from_header(&fields).map_err(|m| row_error(*line_base, m))?;
        return Ok((Some(layout), block));
    }
    Ok((None, block))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readings::LoadOptions;
    use waterline_core::Network;

    fn table() -> SensorTable {
        let network = Network::parse(
            "timezone = \"UTC\"\n[[sensor]]\nid = \"p1\"\nkind = \"pressure\"\nunit = \"m\"\n\
             [[sensor]]\nid = \"p2\"\nkind = \"pressure\"\nunit = \"bar\"\n",
        )
        .unwrap();
        SensorTable::new(&network)
    }

    /// A file with every kind of line: readings, repeats, gaps, unknown sensors, bad rows,
    /// quotes, blank lines and CRLF ends.
    fn awkward_file() -> String {
        let mut text = String::from("\u{feff}\ntime,sensor,value\r\n");
        for i in 0..400 {
            let t = format!("2019-01-01T{:02}:{:02}:00Z", i / 60 % 24, i % 60);
            let line = match i % 13 {
                0 => format!("{t},p2,1.{i}\r\n"),
                1 => format!("{t},zz,3\n"),
                2 => format!("{t},p1,\n"),
                3 => format!("{t},p1,abc{i}\n"),
                4 => format!("\"{t}\",\"p1\",\"{i}\"\n"),
                5 => "\n".to_owned(),
                6 => format!("2019-02-30T00:00:00Z,p1,{i}\n"),
                _ => format!("{t},p1,{i}.5\n{t},p1,9\n"),
            };
            text.push_str(&line);
        }
        text.push_str("2019-01-02T00:00:00Z,p1,7");
        text
    }

    /// Sensors, times, value bits and the report, as read.
    type Loaded = (Vec<u32>, Vec<i64>, Vec<u64>, String);

    fn read(text: &str, piece: usize, skip: bool) -> Result<Loaded, String> {
        let table = table();
        let mut c = Collector::new(
            LoadOptions {
                skip_bad_rows: skip,
            },
            table.ids.len(),
        );
        read_csv_in_pieces(text.as_bytes(), "t.csv", &table, &mut c, piece)
            .map_err(|e| e.to_string())?;
        let (pieces, report) = c.finish();
        // Sensor by sensor, each in file order.
        let (mut sensors, mut times, mut values) = (Vec::new(), Vec::new(), Vec::new());
        for s in 0..table.ids.len() as u32 {
            for piece in &pieces {
                let Some(slot) = piece.sensors.iter().position(|&x| x == s) else {
                    continue;
                };
                sensors.extend(std::iter::repeat_n(s, piece.time[slot].len()));
                times.extend_from_slice(&piece.time[slot]);
                values.extend(piece.value[slot].iter().map(|v| v.to_bits()));
            }
        }
        Ok((sensors, times, values, format!("{report:?}")))
    }

    /// What a collector gathered, comparable.
    fn gathered(c: Collector) -> String {
        let (pieces, report) = c.finish();
        let rows: Vec<(u32, Vec<i64>, Vec<u64>)> = pieces
            .iter()
            .flat_map(|p| {
                p.sensors.iter().enumerate().map(|(slot, &s)| {
                    let bits = p.value[slot].iter().map(|v| v.to_bits()).collect();
                    (s, p.time[slot].clone(), bits)
                })
            })
            .collect();
        format!("{rows:?} {report:?}")
    }

    #[test]
    fn the_one_pass_scan_reads_what_the_line_by_line_reader_reads() {
        let table = table();
        let layout = Layout {
            time: 0,
            sensor: 1,
            value: 2,
            width: 3,
        };
        // Both readers over `body`: what each returned, then what each gathered.
        let both = |body: &str, skip: bool| {
            let opts = LoadOptions {
                skip_bad_rows: skip,
            };
            let mut fast = Collector::new(opts, table.ids.len());
            let mut slow = Collector::new(opts, table.ids.len());
            let a = parse_canonical_piece(&table, layout, body, &mut fast);
            let b = parse_piece_by_line(&table, layout, body.as_bytes(), &mut slow);
            ((a, b), (gathered(fast), gathered(slow)))
        };
        let text = awkward_file();
        // Past the byte-order mark, the blank line and the header.
        let body = &text[text.find("\r\n").unwrap() + 2..];
        let ((a, b), _) = both(body, false);
        assert!(a.is_err());
        assert_eq!(a, b);
        // Short lines, a lone line without its end, a line of commas only, blank lines.
        for body in [
            body,
            "\n",
            "x",
            ",,\n,,,",
            "2019-01-01T00:00:00Z,p1,1\r",
            " \r\n\t\n",
            "\u{3000}\n\u{3000}a,b,c\n",
        ] {
            let ((a, b), (fast, slow)) = both(body, true);
            assert!(a.is_ok(), "{body:?}");
            assert_eq!(a, b, "{body:?}");
            assert_eq!(fast, slow, "{body:?}");
        }
    }

    #[test]
    fn same_text_is_string_equality() {
        let words = [
            "",
            "a",
            "p1",
            "p2",
            "abcdefg",
            "abcdefgh",
            "abcdefgi",
            "bbcdefgh",
            "abcdefgh1",
            "abcdefgh2",
            "2019-01-01T00:00:00Z",
            "2019-01-01T00:05:00Z",
            "2019-01-01T00:00:00+",
            "1019-01-01T00:00:00Z",
            "D003-p123",
            "D003-p124",
            "E003-p123",
        ];
        for a in words {
            for b in words {
                assert_eq!(same_text(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn plain_decimals_are_read_bit_for_bit_as_the_standard_parser_reads_them() {
        let mut texts: Vec<String> = [
            "0",
            "-0",
            "+0",
            "1.",
            ".5",
            "-.5",
            "+3.25",
            "007",
            "0.1",
            "0.3",
            "2.675",
            "123456789012345",
            "1234567890.12345",
            "0.000000000000001",
            "999999999999999",
            "-45.678",
            ".",
            "-",
            "+",
            "",
            "1..2",
            "1.2.3",
            "1e3",
            "inf",
            "NaN",
            "12a",
            "1234567890123456",
            "0.1234567890123456",
            " 1",
            "1 ",
        ]
        .map(str::to_owned)
        .to_vec();
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = (x % 10_u64.pow(1 + (x >> 60) as u32 % 15)).to_string();
            let point = (x >> 40) as usize % (digits.len() + 1);
            let sign = ["", "-", "+"][(x >> 20) as usize % 3];
            texts.push(format!("{sign}{}.{}", &digits[..point], &digits[point..]));
        }
        for t in &texts {
            let ours = plain_decimal(t.as_bytes());
            let std = t.parse::<f64>().ok();
            if let Some(v) = ours {
                assert_eq!(Some(v.to_bits()), std.map(f64::to_bits), "{t:?}");
            }
            assert_eq!(
                parse_decimal(t).map(f64::to_bits),
                std.map(f64::to_bits),
                "{t:?}"
            );
        }
        // The common forms take the hand-made path.
        for t in ["30.123", "-0.5", "12", "1234567.12345678"] {
            assert!(plain_decimal(t.as_bytes()).is_some(), "{t}");
        }
    }

    #[test]
    fn pieces_of_any_size_read_the_same_rows_in_file_order() {
        let text = awkward_file();
        let whole = read(&text, usize::MAX / 64, true).unwrap();
        assert!(whole.0.len() > 300, "{}", whole.3);
        assert!(whole.3.contains("bad_rows: 62"), "{}", whole.3);
        assert!(whole.3.contains("line 6: bad value `abc3`"), "{}", whole.3);
        for piece in [1, 5, 17, 64, 1000] {
            assert_eq!(read(&text, piece, true).unwrap(), whole, "piece {piece}");
        }
    }

    #[test]
    fn the_first_bad_row_is_named_by_its_line_whatever_the_pieces() {
        let text = awkward_file();
        for piece in [1, 17, 4096, usize::MAX / 64] {
            let err = read(&text, piece, false).unwrap_err();
            assert_eq!(
                err, "t.csv line 6: bad value `abc3`: not a decimal number",
                "piece {piece}"
            );
        }
    }

    #[test]
    fn a_file_without_a_line_end_or_rows() {
        assert!(
            read("", 4, false)
                .unwrap_err()
                .contains("the file is empty")
        );
        assert!(
            read("\n\n", 1, false)
                .unwrap_err()
                .contains("the file is empty")
        );
        let (sensors, ..) = read("time,sensor,value", 3, false).unwrap();
        assert!(sensors.is_empty());
        let err = read(
            "time,sensor,value\n2019-01-01T00:00:00Z,p1,\u{fffd}\n",
            1,
            false,
        );
        assert!(err.unwrap_err().contains("line 2: bad value"));
        let table = table();
        let mut c = Collector::new(LoadOptions::default(), table.ids.len());
        let bytes: &[u8] = b"time,sensor,value\n2019-01-01T00:00:00Z,p1,1\xff\n";
        let err = read_csv_in_pieces(bytes, "t.csv", &table, &mut c, 2).unwrap_err();
        assert!(err.to_string().contains("line 2: not UTF-8 text"), "{err}");
    }

    #[test]
    fn a_line_of_more_than_a_megabyte_is_refused_by_name() {
        // Read on until a line end, it would be held in memory whole, however long.
        let table = table();
        let mut text = b"time,sensor,value\n2019-01-01T00:00:00Z,p1,1\n".to_vec();
        text.extend(std::iter::repeat_n(b'7', 3 << 20));
        for piece in [7, 4096] {
            let mut c = Collector::new(LoadOptions::default(), table.ids.len());
            let err = read_csv_in_pieces(&text[..], "t.csv", &table, &mut c, piece).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("cannot read t.csv: a line runs on for more than 1 MiB"),
                "piece {piece}: {err}"
            );
        }
        // Inside one block, it is the row it is.
        let mut c = Collector::new(LoadOptions::default(), table.ids.len());
        let err = read_csv_in_pieces(&text[..], "t.csv", &table, &mut c, 1 << 22).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("t.csv line 3: expected 3 fields"),
            "{err}"
        );
        // A long line that ends is read (and judged as a row).
        let mut text = b"time,sensor,value\n2019-01-01T00:00:00Z,p1,".to_vec();
        text.extend(std::iter::repeat_n(b'7', 1000));
        text.extend(b"\n");
        let err = read(std::str::from_utf8(&text).unwrap(), 64, false).unwrap_err();
        assert!(err.contains("t.csv line 2"), "{err}");
    }

    /// A reader that gives `good` and then fails.
    struct FailingAfter<'a> {
        good: &'a [u8],
    }

    impl Read for FailingAfter<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.good.is_empty() {
                return Err(std::io::Error::other("the disk went away"));
            }
            let n = buf.len().min(self.good.len());
            buf[..n].copy_from_slice(&self.good[..n]);
            self.good = &self.good[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_read_error_comes_after_the_bad_rows_read_before_it() {
        let table = table();
        let text = awkward_file();
        // Read while the block before is parsed: its bad row (line 6) is what is reported.
        for piece in [1, 64, 4096] {
            let mut c = Collector::new(LoadOptions::default(), table.ids.len());
            let reader = FailingAfter {
                good: text.as_bytes(),
            };
            let err = read_csv_in_pieces(reader, "t.csv", &table, &mut c, piece).unwrap_err();
            assert!(
                matches!(&err, ReadingsError::Row { line: 6, .. }),
                "piece {piece}: {err}"
            );
        }
        // Without bad rows, the read error itself, naming the file.
        let mut c = Collector::new(
            LoadOptions {
                skip_bad_rows: true,
            },
            table.ids.len(),
        );
        let reader = FailingAfter {
            good: text.as_bytes(),
        };
        let err = read_csv_in_pieces(reader, "t.csv", &table, &mut c, 64).unwrap_err();
        assert!(matches!(&err, ReadingsError::Io { .. }), "{err}");
        assert!(err.to_string().contains("t.csv"), "{err}");
    }
}
