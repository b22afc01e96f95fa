//! A PRV's time-modulated control: one outlet set point per local hour of the day
//! ([`HourlySchedule`]), checked once when built. Which set point is due at an instant follows
//! the local clock of the schedule's time zone, so a DST change moves the schedule with the
//! demand it follows (the day of a change has 23 or 25 local hours; the repeated hour uses its
//! set point twice).

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;

use crate::alert::InputError;

/// Hours in a schedule.
pub const HOURS: usize = 24;

/// One set point (m) per local hour, 0 = 00:00–01:00.
#[derive(Debug, Clone, PartialEq)]
pub struct HourlySchedule {
    settings: [f64; HOURS],
    timezone: Tz,
}

impl HourlySchedule {
    /// Checks `settings` (24 finite, positive pressures in metres; the error names the hour)
    /// and the IANA `timezone`.
    pub fn new(settings: &[f64], timezone: &str) -> Result<Self, InputError> {
        if settings.len() != HOURS {
            return Err(InputError::new(
                "hourly_setting_m",
                format!(
                    "needs {HOURS} set points (one per local hour), got {}",
                    settings.len()
                ),
            ));
        }
        let mut out = [0.0; HOURS];
        for (h, (slot, v)) in out.iter_mut().zip(settings).enumerate() {
            if !(v.is_finite() && *v > 0.0) {
                return Err(InputError::new(
                    "hourly_setting_m",
                    format!("hour {h}: {v} is not a positive pressure in metres"),
                ));
            }
            *slot = *v;
        }
        let timezone: Tz = timezone.parse().map_err(|_| {
            InputError::new(
                "timezone",
                format!("`{timezone}` is not an IANA time-zone name"),
            )
        })?;
        Ok(Self {
            settings: out,
            timezone,
        })
    }

    /// The set points, 00:00 first.
    pub fn settings(&self) -> &[f64; HOURS] {
        &self.settings
    }

    /// The time zone of the hours.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The set point due at `t` and the start of the local hour it belongs to.
    pub fn due(&self, t: DateTime<Utc>) -> (f64, DateTime<Utc>) {
        let local = t.with_timezone(&self.timezone);
        let into_hour = TimeDelta::seconds(i64::from(local.minute() * 60 + local.second()))
            + TimeDelta::nanoseconds(i64::from(local.nanosecond() % 1_000_000_000));
        (self.settings[local.hour() as usize], t - into_hour)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn ramp() -> Vec<f64> {
        (0..24).map(|h| 20.0 + f64::from(h)).collect()
    }

    #[test]
    fn the_local_hour_decides() {
        let s = HourlySchedule::new(&ramp(), "Asia/Shanghai").unwrap();
        // 19:30 UTC is 03:30 in Shanghai (UTC+8).
        let (v, from) = s.due(t("2026-03-01T19:30:12Z"));
        assert_eq!(v, 23.0);
        assert_eq!(from, t("2026-03-01T19:00:00Z"));
        // Kathmandu is UTC+5:45: its hours start at :15 UTC.
        let s = HourlySchedule::new(&ramp(), "Asia/Kathmandu").unwrap();
        let (v, from) = s.due(t("2026-03-01T00:20:00Z"));
        assert_eq!((v, from), (26.0, t("2026-03-01T00:15:00Z")));
    }

    #[test]
    fn dst_changes_follow_the_local_clock() {
        let s = HourlySchedule::new(&ramp(), "Europe/Berlin").unwrap();
        // 2026-03-29: 02:00 CET becomes 03:00 CEST; 01:30 UTC is 03:30 local.
        assert_eq!(s.due(t("2026-03-29T00:30:00Z")).0, 21.0); // 01:30 CET
        assert_eq!(s.due(t("2026-03-29T01:30:00Z")).0, 23.0); // 03:30 CEST: 02 is skipped
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:xx local happens twice.
        assert_eq!(s.due(t("2026-10-25T00:30:00Z")).0, 22.0);
        assert_eq!(s.due(t("2026-10-25T01:30:00Z")).0, 22.0);
    }

    #[test]
    fn bad_schedules_name_the_field() {
        let e = HourlySchedule::new(&[30.0; 23], "UTC").unwrap_err();
        assert!(e.to_string().contains("hourly_setting_m") && e.to_string().contains("23"));
        let mut v = ramp();
        v[5] = f64::NAN;
        let e = HourlySchedule::new(&v, "UTC").unwrap_err();
        assert!(e.to_string().contains("hour 5"), "{e}");
        let e = HourlySchedule::new(&ramp(), "Mars/Olympus").unwrap_err();
        assert!(e.to_string().contains("timezone"), "{e}");
    }
}
