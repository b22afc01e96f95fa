//! The LeakDB minimum-night-flow rule, the reference baseline the evaluation compares our
//! detectors with: flag day d when MNF(d) − min(MNF of the last 10 unflagged days) exceeds
//! γ × that minimum; a run of flagged days is one `leak` event, raised on the first flagged
//! night and ended by the first unflagged one.

use chrono::{DateTime, Utc};
use waterline_core::{DmaId, Event, EventKind};

use super::days::DmaDay;

/// Days in the rule's reference window.
pub const LEAKDB_WINDOW: usize = 10;

/// Runs the rule over one DMA's days (in date order).
pub fn leakdb_mnf(dma: &DmaId, days: &[DmaDay], gamma: f64) -> Vec<Event> {
    let ts = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    let mut unflagged: Vec<f64> = Vec::new();
    let mut events: Vec<Event> = Vec::new();
    let mut open: Option<usize> = None;
    for day in days {
        let (Some(mnf), Some(mnf_start)) = (day.mnf_m3h, day.mnf_start) else {
            continue;
        };
        let window = &unflagged[unflagged.len().saturating_sub(LEAKDB_WINDOW)..];
        let reference = window.iter().copied().fold(f64::INFINITY, f64::min);
        let flagged = window.len() == LEAKDB_WINDOW && mnf - reference > gamma * reference;
        match (flagged, open) {
            (true, None) => {
                let mut e = Event::new(EventKind::Leak, ts(mnf_start), ts(day.night_end));
                e.dma = Some(dma.clone());
                e.flow_m3h = Some(mnf - reference);
                e.message = Some("LeakDB MNF rule".into());
                open = Some(events.len());
                events.push(e);
            }
            (false, Some(i)) => {
                events[i].end = Some(ts(mnf_start));
                open = None;
            }
            _ => {}
        }
        if !flagged {
            unflagged.push(mnf);
        }
    }
    events
}
