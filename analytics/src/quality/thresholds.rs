//! `quality_threshold`: set-point crossings in tiers (advisory / alert / alarm), one episode per
//! set point, opened after a few consecutive trusted values beyond it and closed after as many
//! back inside (by more than the resolution, so noise at the limit does not chatter).

use super::signals::{SetPoint, Side, SignalSpec};
use crate::timefmt::EpochMillis;

/// One crossing of one set point.
#[derive(Debug, Clone, PartialEq)]
pub struct Crossing {
    pub set_point: SetPoint,
    /// First value beyond the set point.
    pub start: EpochMillis,
    pub detected_at: EpochMillis,
    /// First value back inside; `None` while open.
    pub end: Option<EpochMillis>,
    /// The value that confirmed the crossing.
    pub value: f64,
    /// The worst value while open.
    pub worst: f64,
}

#[derive(Debug, Clone)]
struct PointState {
    set_point: SetPoint,
    /// Consecutive values beyond (while closed) or back inside (while open), and the first one.
    run: usize,
    run_start: EpochMillis,
    open: Option<Crossing>,
}

/// Set-point tracking for one signal.
#[derive(Debug)]
pub struct ThresholdTracker {
    points: Vec<PointState>,
    resolution: f64,
    persist: usize,
    /// Closed and open crossings, in detection order.
    pub crossings: Vec<Crossing>,
}

impl ThresholdTracker {
    /// Tracks the set points of `spec`; a crossing needs `persist` consecutive values.
    pub fn new(spec: &SignalSpec, persist: usize) -> Self {
        Self {
            points: spec
                .set_points
                .iter()
                .map(|p| PointState {
                    set_point: *p,
                    run: 0,
                    run_start: 0,
                    open: None,
                })
                .collect(),
            resolution: spec.resolution,
            persist: persist.max(1),
            crossings: Vec::new(),
        }
    }

    /// Feeds one trusted value.
    pub fn step(&mut self, t: EpochMillis, x: f64) {
        for p in &mut self.points {
            let sp = p.set_point;
            let beyond = sp.crossed_by(x);
            let inside_clearly = match sp.side {
                Side::Low => x >= sp.value + self.resolution,
                Side::High => x <= sp.value - self.resolution,
            };
            match &mut p.open {
                None => {
                    if beyond {
                        if p.run == 0 {
                            p.run_start = t;
                        }
                        p.run += 1;
                        if p.run >= self.persist {
                            p.open = Some(Crossing {
                                set_point: sp,
                                start: p.run_start,
                                detected_at: t,
                                end: None,
                                value: x,
                                worst: x,
                            });
                            p.run = 0;
                        }
                    } else {
                        p.run = 0;
                    }
                }
                Some(c) => {
                    if beyond {
                        c.worst = match sp.side {
                            Side::Low => c.worst.min(x),
                            Side::High => c.worst.max(x),
                        };
                    }
                    if inside_clearly {
                        if p.run == 0 {
                            p.run_start = t;
                        }
                        p.run += 1;
                        if p.run >= self.persist {
                            let mut c = p.open.take().expect("open crossing");
                            c.end = Some(p.run_start);
                            self.crossings.push(c);
                            p.run = 0;
                        }
                    } else {
                        p.run = 0;
                    }
                }
            }
        }
    }

    /// The signal had no trusted value at a step: runs of consecutive values start again.
    pub fn interrupt(&mut self) {
        for p in &mut self.points {
            p.run = 0;
        }
    }

    /// Ends the data: open crossings stay open.
    pub fn finish(&mut self) {
        for p in &mut self.points {
            if let Some(c) = p.open.take() {
                self.crossings.push(c);
            }
        }
        self.crossings.sort_by_key(|c| c.detected_at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::signals::Tier;
    use waterline_core::Network;

    fn turbidity() -> SignalSpec {
        let net = Network::parse(
            "timezone = \"UTC\"\n[[sensor]]\nid = \"t\"\nkind = \"turbidity\"\nunit = \"NTU\"\nresolution = 0.01\n",
        )
        .expect("network");
        SignalSpec::from_sensor(net.sensors.values().next().expect("sensor"))
    }

    #[test]
    fn tiers_open_and_close_with_persistence_and_hysteresis() {
        let mut tr = ThresholdTracker::new(&turbidity(), 2);
        let values = [0.3, 1.2, 0.4, 1.3, 2.5, 2.6, 1.5, 1.0, 0.995, 0.5, 0.4];
        for (i, v) in values.iter().enumerate() {
            tr.step(i as i64 * 60_000, *v);
        }
        tr.finish();
        let got: Vec<_> = tr
            .crossings
            .iter()
            .map(|c| {
                (
                    c.set_point.tier,
                    c.start / 60_000,
                    c.detected_at / 60_000,
                    c.end.map(|e| e / 60_000),
                )
            })
            .collect();
        // 1.2 alone is not enough; 1.3 then 2.5 confirm the advisory; 2.5, 2.6 the alert; 1.0
        // and 0.995 are not clearly back below 1.0 (resolution 0.01), 0.5 and 0.4 are.
        assert_eq!(
            got,
            vec![
                (Tier::Advisory, 3, 4, Some(9)),
                (Tier::Alert, 4, 5, Some(6)),
            ]
        );
        assert_eq!(tr.crossings[0].worst, 2.6);
    }

    #[test]
    fn a_gap_in_trusted_values_breaks_the_run() {
        let mut tr = ThresholdTracker::new(&turbidity(), 2);
        tr.step(0, 1.5);
        tr.interrupt();
        tr.step(600_000, 1.5);
        tr.finish();
        assert!(
            tr.crossings.is_empty(),
            "two values beyond, but not consecutive"
        );
    }
}
