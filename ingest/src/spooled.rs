//! The spool's record format: a batch of raw messages as received (topic, payload, time of
//! receipt), so that draining processes them exactly as a live batch would.
//!
//! Layout: `[count: u32]` then per message `[topic len: u32][topic][payload len: u32][payload]
//! [received at: i64 µs since the epoch]`, all little-endian.

use chrono::{DateTime, Utc};

/// One message as it arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct RawMessage {
    pub topic: String,
    pub payload: Vec<u8>,
    pub received_at: DateTime<Utc>,
}

/// Encodes messages into one spool record.
pub fn encode<'a>(
    messages: impl ExactSizeIterator<Item = (&'a str, &'a [u8], DateTime<Utc>)>,
) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(messages.len() as u32).to_le_bytes());
    for (topic, payload, at) in messages {
        out.extend_from_slice(&(topic.len() as u32).to_le_bytes());
        out.extend_from_slice(topic.as_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(payload);
        out.extend_from_slice(&at.timestamp_micros().to_le_bytes());
    }
    out
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| format!("record cut short at byte {}", self.pos))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<usize, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize)
    }
}

/// Decodes a spool record.
pub fn decode(record: &[u8]) -> Result<Vec<RawMessage>, String> {
    let mut r = Reader {
        data: record,
        pos: 0,
    };
    let count = r.u32()?;
    // Each message takes at least 16 bytes: a corrupt count cannot make us allocate wildly.
    if count > record.len() / 16 {
        return Err(format!(
            "record claims {count} messages in {} bytes",
            record.len()
        ));
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let n = r.u32()?;
        let topic = String::from_utf8(r.take(n)?.to_vec())
            .map_err(|_| format!("message {i}: topic is not UTF-8"))?;
        let n = r.u32()?;
        let payload = r.take(n)?.to_vec();
        let us = i64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
        let received_at = DateTime::from_timestamp_micros(us)
            .ok_or_else(|| format!("message {i}: time {us} µs is out of range"))?;
        out.push(RawMessage {
            topic,
            payload,
            received_at,
        });
    }
    if r.pos != record.len() {
        return Err(format!(
            "{} trailing bytes after {count} messages",
            record.len() - r.pos
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let t = DateTime::parse_from_rfc3339("2026-11-27T02:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let msgs = [
            ("waterline/a/up", &b"{}"[..], t),
            ("waterline/b/up", &b"\x00\xff"[..], t),
        ];
        let rec = encode(msgs.iter().copied());
        let back = decode(&rec).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].payload, b"\x00\xff");
        assert_eq!(back[0].received_at, t);
        assert!(
            decode(&rec[..rec.len() - 1])
                .unwrap_err()
                .contains("cut short")
        );
        let mut longer = rec.clone();
        longer.push(0);
        assert!(decode(&longer).unwrap_err().contains("trailing"));
        assert!(
            decode(&[255, 255, 255, 255])
                .unwrap_err()
                .contains("claims")
        );
    }
}
