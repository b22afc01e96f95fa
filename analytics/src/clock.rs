//! Local wall-clock time of UTC instants in the network's time zone (night windows and days
//! are local), cached per quarter hour so that millions of lookups stay cheap.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike};
use chrono_tz::Tz;

use crate::timefmt::EpochMillis;

const SLOT_MS: i64 = 15 * 60_000;

/// Converts UTC milliseconds to local date-times.
#[derive(Debug)]
pub struct LocalClock {
    tz: Tz,
    offsets: HashMap<i64, i64>,
    /// The quarter hour looked up last and its offset (series are read in time order).
    last: Option<(i64, i64)>,
}

impl LocalClock {
    pub fn new(tz: Tz) -> Self {
        LocalClock {
            tz,
            offsets: HashMap::new(),
            last: None,
        }
    }

    /// UTC offset in milliseconds at `t`.
    pub fn offset_ms(&mut self, t: EpochMillis) -> i64 {
        let slot = t.div_euclid(SLOT_MS);
        if let Some((last, offset)) = self.last
            && last == slot
        {
            return offset;
        }
        let tz = self.tz;
        let offset = *self.offsets.entry(slot).or_insert_with(|| {
            DateTime::from_timestamp_millis(slot * SLOT_MS)
                .map(|utc| {
                    i64::from(
                        tz.offset_from_utc_datetime(&utc.naive_utc())
                            .fix()
                            .local_minus_utc(),
                    ) * 1_000
                })
                .unwrap_or(0)
        });
        self.last = Some((slot, offset));
        offset
    }

    /// The local date-time of `t`.
    pub fn local(&mut self, t: EpochMillis) -> NaiveDateTime {
        let local = t + self.offset_ms(t);
        DateTime::from_timestamp_millis(local)
            .map(|d| d.naive_utc())
            .unwrap_or_default()
    }

    /// The local date of `t` and the minute of that local day.
    pub fn date_and_minute(&mut self, t: EpochMillis) -> (NaiveDate, u32) {
        let l = self.local(t);
        (l.date(), l.hour() * 60 + l.minute())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_daylight_saving() {
        let mut c = LocalClock::new(chrono_tz::Europe::Berlin);
        // 2019-03-31 00:30 UTC = 01:30 CET; 01:30 UTC = 03:30 CEST.
        let t = DateTime::parse_from_rfc3339("2019-03-31T00:30:00Z")
            .unwrap()
            .timestamp_millis();
        assert_eq!(c.date_and_minute(t).1, 90);
        assert_eq!(c.date_and_minute(t + 3_600_000).1, 210);
        let mut sh = LocalClock::new(chrono_tz::Asia::Shanghai);
        let (d, m) = sh.date_and_minute(t);
        assert_eq!((d.to_string(), m), ("2019-03-31".to_owned(), 8 * 60 + 30));
    }
}
