//! A bounded, crash-safe on-disk spool: where ingest puts accepted data while the store is
//! unavailable, so that it can keep acknowledging devices and drain in order later.
//!
//! Layout: a directory of segment files `NNNNNNNNNNNN.seg`, each starting with the magic
//! `WLSPOOL1`, followed by records `[len: u32 LE][crc32: u32 LE][payload]`. Appends are
//! fsync'd before [`Spool::append`] returns, so a record that was acknowledged upstream
//! survives a crash or power loss. The drain position lives in `checkpoint` (segment and
//! offset), replaced atomically (write, fsync, rename). On open, a torn or corrupt record at
//! the tail of the last segment (a crash mid-append, never acknowledged) is cut off; corruption
//! anywhere else is an error, never silently skipped. A lock file keeps two processes from
//! sharing one spool.
//!
//! The spool stores opaque byte records; what they mean is the writer's business.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"WLSPOOL1";
const HEADER: u64 = MAGIC.len() as u64;
const RECORD_HEADER: u64 = 8;
/// Largest record accepted (a batch is far smaller).
pub const MAX_RECORD: usize = 256 * 1024 * 1024;

/// Why the spool failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("spool is full ({used} of {max} bytes used; a record of {needed} bytes does not fit)")]
    Full { used: u64, max: u64, needed: u64 },
    #[error("spool {path} is used by another process")]
    Locked { path: PathBuf },
    #[error("spool segment {path} is corrupt at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("record of {0} bytes is larger than the spool's record limit")]
    TooLarge(usize),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where the next undrained record starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    path: PathBuf,
    len: u64,
}

/// The spool. Not shared between processes; within a process, wrap it in a mutex.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    segments: VecDeque<Segment>,
    tail: Option<File>,
    read: Position,
    max_bytes: u64,
    segment_bytes: u64,
    _lock: File,
}

fn crc(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, holding at most `max_bytes` of segments, each up
    /// to about `segment_bytes`.
    pub fn open(dir: &Path, max_bytes: u64, segment_bytes: u64) -> Result<Spool, SpoolError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(SpoolError::Locked {
                path: dir.to_owned(),
            });
        }
        let mut seqs: Vec<u64> = fs::read_dir(dir)
            .map_err(io_err(dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".seg")?.parse::<u64>().ok()
            })
            .collect();
        seqs.sort_unstable();
        let mut segments = VecDeque::new();
        let last = seqs.last().copied();
        for seq in seqs {
            let path = dir.join(format!("{seq:012}.seg"));
            let len = scan_segment(&path, Some(seq) == last)?;
            segments.push_back(Segment { seq, path, len });
        }
        let read = read_checkpoint(dir)?.unwrap_or(Position {
            segment: segments.front().map_or(0, |s| s.seq),
            offset: HEADER,
        });
        let mut spool = Spool {
            dir: dir.to_owned(),
            segments,
            tail: None,
            read,
            max_bytes,
            segment_bytes: segment_bytes.max(HEADER + RECORD_HEADER + 1),
            _lock: lock,
        };
        spool.discard_drained()?;
        Ok(spool)
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// Whether every record has been drained.
    pub fn is_empty(&self) -> bool {
        match self.segments.back() {
            None => true,
            Some(last) => {
                self.read.segment > last.seq
                    || (self.read.segment == last.seq && self.read.offset >= last.len)
            }
        }
    }

    /// Appends one record and makes it durable before returning.
    pub fn append(&mut self, record: &[u8]) -> Result<(), SpoolError> {
        if record.len() > MAX_RECORD {
            return Err(SpoolError::TooLarge(record.len()));
        }
        let needed = RECORD_HEADER + record.len() as u64;
        let rolls = self
            .segments
            .back()
            .is_none_or(|s| s.len + needed > self.segment_bytes && s.len > HEADER);
        let extra = if rolls { HEADER } else { 0 };
        if self.bytes() + needed + extra > self.max_bytes {
            return Err(SpoolError::Full {
                used: self.bytes(),
                max: self.max_bytes,
                needed,
            });
        }
        if rolls {
            self.roll()?;
        }
        let seg = self.segments.back_mut().expect("a tail segment exists");
        if self.tail.is_none() {
            let f = OpenOptions::new()
                .append(true)
                .open(&seg.path)
                .map_err(io_err(&seg.path))?;
            self.tail = Some(f);
        }
        let file = self.tail.as_mut().expect("opened above");
        let mut buf = Vec::with_capacity(needed as usize);
        buf.extend_from_slice(&(record.len() as u32).to_le_bytes());
        buf.extend_from_slice(&crc(record).to_le_bytes());
        buf.extend_from_slice(record);
        file.write_all(&buf).map_err(io_err(&seg.path))?;
        file.sync_data().map_err(io_err(&seg.path))?;
        seg.len += needed;
        Ok(())
    }

    fn roll(&mut self) -> Result<(), SpoolError> {
        let seq = self
            .segments
            .back()
            .map_or(self.read.segment, |s| s.seq + 1);
        let path = self.dir.join(format!("{seq:012}.seg"));
        let mut f = File::create(&path).map_err(io_err(&path))?;
        f.write_all(MAGIC).map_err(io_err(&path))?;
        f.sync_all().map_err(io_err(&path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))?;
        if self.segments.is_empty() {
            self.read = Position {
                segment: seq,
                offset: HEADER,
            };
        }
        self.segments.push_back(Segment {
            seq,
            path,
            len: HEADER,
        });
        self.tail = None;
        Ok(())
    }

    /// The oldest undrained record and the position after it, without consuming it.
    pub fn peek(&mut self) -> Result<Option<(Vec<u8>, Position)>, SpoolError> {
        loop {
            let Some(seg) = self.segments.iter().find(|s| s.seq >= self.read.segment) else {
                return Ok(None);
            };
            if seg.seq > self.read.segment {
                self.read = Position {
                    segment: seg.seq,
                    offset: HEADER,
                };
            }
            if self.read.offset >= seg.len {
                if Some(seg.seq) == self.segments.back().map(|s| s.seq) {
                    return Ok(None);
                }
                self.read = Position {
                    segment: seg.seq + 1,
                    offset: HEADER,
                };
                continue;
            }
            let (record, next) = read_record(&seg.path, self.read.offset)?;
            return Ok(Some((
                record,
                Position {
                    segment: seg.seq,
                    offset: next,
                },
            )));
        }
    }

    /// Marks everything before `next` drained (durably) and deletes drained segments.
    pub fn consume(&mut self, next: Position) -> Result<(), SpoolError> {
        self.read = next;
        write_checkpoint(&self.dir, next)?;
        self.discard_drained()
    }

    /// Deletes the oldest segment, drained or not (the drop-oldest policy). Returns the bytes
    /// of records that were lost, 0 when there was nothing to drop.
    pub fn drop_oldest(&mut self) -> Result<u64, SpoolError> {
        if self.segments.len() <= 1 {
            return Ok(0);
        }
        let seg = self.segments.pop_front().expect("checked");
        let lost = if self.read.segment > seg.seq {
            0
        } else if self.read.segment == seg.seq {
            seg.len.saturating_sub(self.read.offset)
        } else {
            seg.len - HEADER
        };
        fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
        if self.read.segment <= seg.seq {
            let next = Position {
                segment: seg.seq + 1,
                offset: HEADER,
            };
            self.read = next;
            write_checkpoint(&self.dir, next)?;
        }
        Ok(lost)
    }

    fn discard_drained(&mut self) -> Result<(), SpoolError> {
        while self.segments.len() > 1 {
            let front = self.segments.front().expect("non-empty");
            let drained = self.read.segment > front.seq
                || (self.read.segment == front.seq && self.read.offset >= front.len);
            if !drained {
                break;
            }
            let seg = self.segments.pop_front().expect("non-empty");
            fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
        }
        // A single, fully drained segment is emptied in place so the spool does not grow.
        if self.segments.len() == 1 && self.is_empty() {
            let seg = self.segments.pop_front().expect("one");
            fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
            self.tail = None;
            self.read = Position {
                segment: seg.seq + 1,
                offset: HEADER,
            };
            write_checkpoint(&self.dir, self.read)?;
        }
        Ok(())
    }
}

/// Validates a segment; returns its valid length. The last segment may end in a torn record,
/// which is truncated away; any other damage is an error.
fn scan_segment(path: &Path, is_last: bool) -> Result<u64, SpoolError> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    let total = f.metadata().map_err(io_err(path))?.len();
    let corrupt = |offset: u64, reason: &str| SpoolError::Corrupt {
        path: path.to_owned(),
        offset,
        reason: reason.to_owned(),
    };
    let mut magic = [0u8; 8];
    if total < HEADER || f.read_exact(&mut magic).is_err() || &magic != MAGIC {
        if is_last && total < HEADER {
            // Crashed while creating it: start it again.
            f.set_len(0).map_err(io_err(path))?;
            f.write_all(MAGIC).map_err(io_err(path))?;
            f.sync_all().map_err(io_err(path))?;
            return Ok(HEADER);
        }
        return Err(corrupt(0, "missing WLSPOOL1 header"));
    }
    let mut offset = HEADER;
    loop {
        if offset == total {
            return Ok(offset);
        }
        let valid = record_at(&mut f, offset, total);
        match valid {
            Ok(next) => offset = next,
            Err(reason) if is_last => {
                tracing::warn!(path = %path.display(), offset, reason, "truncating a torn spool record (never acknowledged)");
                f.set_len(offset).map_err(io_err(path))?;
                f.sync_all().map_err(io_err(path))?;
                return Ok(offset);
            }
            Err(reason) => return Err(corrupt(offset, reason)),
        }
    }
}

/// Checks the record at `offset`; returns the offset after it.
fn record_at(f: &mut File, offset: u64, total: u64) -> Result<u64, &'static str> {
    if total - offset < RECORD_HEADER {
        return Err("record header cut short");
    }
    f.seek(SeekFrom::Start(offset)).map_err(|_| "seek failed")?;
    let mut head = [0u8; 8];
    f.read_exact(&mut head)
        .map_err(|_| "record header unreadable")?;
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as u64;
    let sum = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
    if len as usize > MAX_RECORD || total - offset - RECORD_HEADER < len {
        return Err("record length runs past the end");
    }
    let mut data = vec![0u8; len as usize];
    f.read_exact(&mut data).map_err(|_| "record unreadable")?;
    if crc(&data) != sum {
        return Err("checksum mismatch");
    }
    Ok(offset + RECORD_HEADER + len)
}

fn read_record(path: &Path, offset: u64) -> Result<(Vec<u8>, u64), SpoolError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let total = f.metadata().map_err(io_err(path))?.len();
    let next = record_at(&mut f, offset, total).map_err(|reason| SpoolError::Corrupt {
        path: path.to_owned(),
        offset,
        reason: reason.to_owned(),
    })?;
    f.seek(SeekFrom::Start(offset + RECORD_HEADER))
        .map_err(io_err(path))?;
    let mut data = vec![0u8; (next - offset - RECORD_HEADER) as usize];
    f.read_exact(&mut data).map_err(io_err(path))?;
    Ok((data, next))
}

fn read_checkpoint(dir: &Path) -> Result<Option<Position>, SpoolError> {
    let path = dir.join("checkpoint");
    match fs::read_to_string(&path) {
        Ok(text) => {
            let mut it = text.split_whitespace().map(str::parse::<u64>);
            match (it.next(), it.next()) {
                (Some(Ok(segment)), Some(Ok(offset))) => Ok(Some(Position { segment, offset })),
                _ => Err(SpoolError::Corrupt {
                    path,
                    offset: 0,
                    reason: format!("checkpoint `{}` is not `SEGMENT OFFSET`", text.trim()),
                }),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SpoolError::Io { path, source: e }),
    }
}

fn write_checkpoint(dir: &Path, pos: Position) -> Result<(), SpoolError> {
    let tmp = dir.join("checkpoint.tmp");
    let path = dir.join("checkpoint");
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    writeln!(f, "{} {}", pos.segment, pos.offset).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain_all(s: &mut Spool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some((r, next)) = s.peek().unwrap() {
            out.push(r);
            s.consume(next).unwrap();
        }
        out
    }

    #[test]
    fn records_come_back_in_order_across_segments_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20, 64).unwrap();
        assert!(s.is_empty());
        for i in 0..20u8 {
            s.append(&[i; 30]).unwrap();
        }
        assert!(!s.is_empty());
        let (first, next) = s.peek().unwrap().unwrap();
        assert_eq!(first, vec![0u8; 30]);
        s.consume(next).unwrap();
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20, 64).unwrap();
        let rest = drain_all(&mut s);
        assert_eq!(rest.len(), 19);
        assert_eq!(rest[0], vec![1u8; 30]);
        assert_eq!(rest[18], vec![19u8; 30]);
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0, "drained segments are deleted");
        s.append(b"again").unwrap();
        assert_eq!(drain_all(&mut s), vec![b"again".to_vec()]);
    }

    #[test]
    fn a_torn_tail_is_cut_and_earlier_records_survive() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        s.append(b"one").unwrap();
        s.append(b"two").unwrap();
        drop(s);
        let seg = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().ends_with(".seg"))
            .unwrap()
            .path();
        // A crash in the middle of appending a third record.
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[100, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let mut s = Spool::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        assert_eq!(drain_all(&mut s), vec![b"one".to_vec(), b"two".to_vec()]);
    }

    #[test]
    fn a_flipped_bit_in_an_old_segment_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20, 40).unwrap();
        for i in 0..6u8 {
            s.append(&[i; 20]).unwrap();
        }
        drop(s);
        let mut segs: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        segs.sort();
        let mut bytes = fs::read(&segs[0]).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        fs::write(&segs[0], bytes).unwrap();
        let err = Spool::open(dir.path(), 1 << 20, 40).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
    }

    #[test]
    fn full_spool_refuses_and_drop_oldest_makes_room() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 200, 60).unwrap();
        let mut appended = 0;
        while s.append(&[7u8; 30]).is_ok() {
            appended += 1;
        }
        assert!(appended >= 3);
        assert!(matches!(s.append(&[7u8; 30]), Err(SpoolError::Full { .. })));
        let lost = s.drop_oldest().unwrap();
        assert_eq!(lost, 38, "one record of 8 + 30 bytes was dropped");
        s.append(&[8u8; 30]).unwrap();
        let all = drain_all(&mut s);
        assert_eq!(all.len(), appended);
        assert_eq!(all.last().unwrap(), &vec![8u8; 30]);
    }

    #[test]
    fn a_second_process_cannot_open_the_same_spool() {
        let dir = tempfile::tempdir().unwrap();
        let _s = Spool::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        assert!(matches!(
            Spool::open(dir.path(), 1 << 20, 1 << 20),
            Err(SpoolError::Locked { .. })
        ));
    }
}
