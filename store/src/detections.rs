//! Recording what an analytics job detected without duplicating what is already stored.
//!
//! A scheduled job reruns the causal detectors over a sliding window, so the same leak, drop or
//! quality event is detected again on every run, possibly with a slightly different onset
//! estimate. A detection is the *same* event as a stored one when it has the same kind and the
//! same subject (DMA, sensor and station) and their spans `[start, end]` overlap (an open span
//! runs to the end of time). Then the stored event keeps its id, `start`, `detected_at` and its
//! place in the alert workflow, and takes the detection's `end`, severity, value, flow,
//! confidence, message and sensors: the newest run's view of an event's course wins. A
//! detection that matches nothing is inserted as a new open event.
//!
//! Two jobs recording the same detection at the same moment could both insert it, so the
//! scheduler of `waterline serve` runs the job under the store's job lock ([`crate::joblock`]):
//! one process at a time per database.

use chrono::{DateTime, Utc};
use waterline_core::Event;

use crate::model::StoredEvent;

/// What recording a run's detections did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetectionOutcome {
    /// New events.
    pub inserted: usize,
    /// Stored events whose course changed (ended, reopened, new size or severity).
    pub updated: usize,
    /// Detections identical to what is stored.
    pub unchanged: usize,
}

/// What to do with one detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Insert,
    Update(i64),
    Unchanged,
}

fn far_future() -> DateTime<Utc> {
    DateTime::<Utc>::MAX_UTC
}

/// Whether `stored` and `detected` are the same event (kind, subject, overlapping spans).
pub(crate) fn same_event(stored: &Event, detected: &Event) -> bool {
    stored.kind == detected.kind
        && stored.dma == detected.dma
        && stored.sensor == detected.sensor
        && stored.station == detected.station
        && stored.start <= detected.end.unwrap_or_else(far_future)
        && detected.start <= stored.end.unwrap_or_else(far_future)
}

/// Whether the detection carries anything the stored event does not.
fn differs(stored: &Event, detected: &Event) -> bool {
    stored.end != detected.end
        || stored.severity != detected.severity
        || stored.value != detected.value
        || stored.flow_m3h != detected.flow_m3h
        || stored.confidence != detected.confidence
        || stored.message != detected.message
        || stored.sensors != detected.sensors
}

/// Decides, for each detection in order, whether it is new, changes a stored event or repeats
/// one. Among several stored candidates the earliest-starting one is taken; a stored event is
/// matched by at most one detection.
pub(crate) fn plan(stored: &[StoredEvent], detected: &[Event]) -> Vec<Action> {
    let mut taken = vec![false; stored.len()];
    detected
        .iter()
        .map(|d| {
            let candidate = stored
                .iter()
                .enumerate()
                .filter(|(i, s)| !taken[*i] && same_event(&s.event, d))
                .min_by_key(|(_, s)| (s.event.start, s.id));
            match candidate {
                None => Action::Insert,
                Some((i, s)) => {
                    taken[i] = true;
                    if differs(&s.event, d) {
                        Action::Update(s.id)
                    } else {
                        Action::Unchanged
                    }
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use waterline_core::{DmaId, EventKind, EventState, SensorId};

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + h * 3600, 0).unwrap()
    }

    fn leak(dma: &str, start: i64, end: Option<i64>) -> Event {
        let mut e = Event::new(EventKind::Leak, t(start), t(start + 1));
        e.dma = Some(DmaId::parse(dma).unwrap());
        e.end = end.map(t);
        e.flow_m3h = Some(2.0);
        e
    }

    fn stored(id: i64, event: Event) -> StoredEvent {
        StoredEvent {
            id,
            event,
            state: EventState::Open,
            acknowledged_by: None,
            acknowledged_at: None,
            resolved_by: None,
            resolved_at: None,
            resolution: None,
            resolution_note: None,
        }
    }

    #[test]
    fn a_repeated_detection_with_a_shifted_onset_is_the_same_event() {
        let s = [stored(1, leak("A", 10, None))];
        assert_eq!(plan(&s, &[leak("A", 12, None)]), [Action::Unchanged]);
        // Now it has ended: the stored event takes the end.
        assert_eq!(plan(&s, &[leak("A", 9, Some(30))]), [Action::Update(1)]);
    }

    #[test]
    fn other_subjects_kinds_and_disjoint_spans_are_new_events() {
        let s = [stored(1, leak("A", 10, Some(20)))];
        assert_eq!(plan(&s, &[leak("B", 12, None)]), [Action::Insert]);
        assert_eq!(plan(&s, &[leak("A", 21, None)]), [Action::Insert]);
        let mut burst = leak("A", 12, None);
        burst.kind = EventKind::Burst;
        assert_eq!(plan(&s, &[burst]), [Action::Insert]);
        let mut on_sensor = leak("A", 12, None);
        on_sensor.sensor = Some(SensorId::parse("A-p1").unwrap());
        assert_eq!(plan(&s, &[on_sensor]), [Action::Insert]);
    }

    #[test]
    fn each_stored_event_answers_one_detection_earliest_first() {
        let s = [
            stored(7, leak("A", 15, Some(40))),
            stored(3, leak("A", 10, Some(14))),
        ];
        let d = [leak("A", 11, Some(16)), leak("A", 13, Some(16))];
        assert_eq!(plan(&s, &d), [Action::Update(3), Action::Update(7)]);
        // A third overlapping detection finds both taken.
        let d = [
            leak("A", 10, Some(14)),
            leak("A", 15, Some(40)),
            leak("A", 12, None),
        ];
        assert_eq!(
            plan(&s, &d),
            [Action::Unchanged, Action::Unchanged, Action::Insert]
        );
    }
}
