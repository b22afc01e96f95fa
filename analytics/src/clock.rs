//! Local wall-clock time of UTC instants in the network's time zone (night windows and days
//! are local), cached per quarter hour so that millions of lookups stay cheap. A clock made
//! [`LocalClock::spanning`] the data's time range shares one table of offsets among its
//! clones (one per sensor pass), so the time zone is consulted once per quarter hour in all.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;

use crate::timefmt::EpochMillis;

const SLOT_MS: i64 = 15 * 60_000;
/// A day, ms.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// The date of a day number of [`LocalClock::day_and_minute`].
pub fn date_of_day(day: i64) -> NaiveDate {
    DateTime::from_timestamp_millis(day * DAY_MS)
        .map(|d| d.date_naive())
        .unwrap_or_default()
}

/// Days from Monday (0) to Sunday (6) of a day number of [`LocalClock::day_and_minute`]
/// (1970-01-01 was a Thursday).
pub fn weekday_of_day(day: i64) -> u32 {
    (day + 3).rem_euclid(7) as u32
}

/// The longest span whose offsets [`LocalClock::spanning`] computes ahead (20 years of
/// quarter hours, 5.6 MB); beyond it they are computed as needed.
const MAX_TABLE_SLOTS: i64 = 20 * 366 * 96;

/// Converts UTC milliseconds to local date-times.
#[derive(Debug, Clone)]
pub struct LocalClock {
    tz: Tz,
    /// Offsets computed ahead, from quarter hour `first_slot` on.
    first_slot: i64,
    table: Arc<[i64]>,
    offsets: HashMap<i64, i64>,
    /// The quarter hour looked up last and its offset (series are read in time order).
    last: Option<(i64, i64)>,
}

impl LocalClock {
    pub fn new(tz: Tz) -> Self {
        LocalClock {
            tz,
            first_slot: 0,
            table: Arc::from(Vec::new()),
            offsets: HashMap::new(),
            last: None,
        }
    }

    /// A clock with the offsets of `[t0, t1]` computed ahead; its clones share them.
    pub fn spanning(tz: Tz, t0: EpochMillis, t1: EpochMillis) -> Self {
        let mut clock = LocalClock::new(tz);
        let (first, last) = (t0.div_euclid(SLOT_MS), t1.div_euclid(SLOT_MS));
        if (0..MAX_TABLE_SLOTS).contains(&(last - first)) {
            let table: Vec<i64> = (first..=last).map(|s| zone_offset_ms(tz, s)).collect();
            clock.first_slot = first;
            clock.table = Arc::from(table);
        }
        clock
    }

    /// UTC offset in milliseconds at `t`.
    pub fn offset_ms(&mut self, t: EpochMillis) -> i64 {
        let slot = t.div_euclid(SLOT_MS);
        if let Some(&offset) = usize::try_from(slot - self.first_slot)
            .ok()
            .and_then(|i| self.table.get(i))
        {
            return offset;
        }
        if let Some((last, offset)) = self.last
            && last == slot
        {
            return offset;
        }
        let tz = self.tz;
        let offset = *self
            .offsets
            .entry(slot)
            .or_insert_with(|| zone_offset_ms(tz, slot));
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

    /// The local day of `t` (days since 1970-01-01 in local time) and the minute of that day,
    /// by arithmetic alone (see [`date_of_day`], [`weekday_of_day`]).
    pub fn day_and_minute(&mut self, t: EpochMillis) -> (i64, u32) {
        let local = t + self.offset_ms(t);
        (
            local.div_euclid(DAY_MS),
            (local.rem_euclid(DAY_MS) / 60_000) as u32,
        )
    }

    /// The local date of `t` and the minute of that local day.
    pub fn date_and_minute(&mut self, t: EpochMillis) -> (NaiveDate, u32) {
        let (day, minute) = self.day_and_minute(t);
        (date_of_day(day), minute)
    }
}

/// The zone's UTC offset in milliseconds at the start of quarter hour `slot`.
fn zone_offset_ms(tz: Tz, slot: i64) -> i64 {
    DateTime::from_timestamp_millis(slot * SLOT_MS)
        .map(|utc| {
            i64::from(
                tz.offset_from_utc_datetime(&utc.naive_utc())
                    .fix()
                    .local_minus_utc(),
            ) * 1_000
        })
        .unwrap_or(0)
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

    #[test]
    fn a_clock_spanning_a_range_agrees_inside_and_outside_it() {
        let tz = chrono_tz::Europe::Berlin;
        let t0 = DateTime::parse_from_rfc3339("2019-03-30T00:00:00Z")
            .unwrap()
            .timestamp_millis();
        let t1 = t0 + 3 * 86_400_000;
        let mut ahead = LocalClock::spanning(tz, t0, t1).clone();
        let mut plain = LocalClock::new(tz);
        for k in -200..600 {
            let t = t0 + k * 7 * 60_000;
            assert_eq!(ahead.local(t), plain.local(t), "{t}");
        }
        assert_eq!(ahead.table.len(), 3 * 96 + 1);
    }

    #[test]
    fn day_numbers_match_the_calendar() {
        use chrono::{Datelike, Timelike};
        let mut c = LocalClock::new(chrono_tz::America::New_York);
        for k in 0..2_000 {
            let t = -86_400_000 * 400 + k * 7_777_777;
            let local = c.local(t);
            let (day, minute) = c.day_and_minute(t);
            assert_eq!(date_of_day(day), local.date(), "{t}");
            assert_eq!(minute, local.hour() * 60 + local.minute(), "{t}");
            assert_eq!(weekday_of_day(day), local.weekday().num_days_from_monday());
        }
    }
}
