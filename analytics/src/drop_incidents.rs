//! Pressure drops checked against their DMA's inflow: a burst both drops the pressure and
//! raises the flow into its area, so a drop is reported when the inflow rose with it, and the
//! drops of several sensors of one area at one time become **one incident** (one
//! `pressure_drop` event naming every sensor, with the inflow rise as its flow).
//!
//! The inflow's residual is its 15-minute balance flow minus the median of the same quarter
//! hour of the same weekday in up to [`IncidentConfig::baseline_weeks`] earlier weeks, at least
//! two (demand patterns are weekly: a Saturday night is not a Sunday night, nor a Friday
//! night). Before two such weeks exist, the same quarter hour of the (up to seven, at least
//! three) days before stands in, so that a drop in the data's first weeks is still confirmed
//! or denied by its area's inflow; the search for inflow steps below waits for the weekly
//! baseline (against the days before, one weekday's own pattern looks like a step). At a
//! drop's start `s`, the rise is the mean residual over `[s, s + confirm)`
//! minus the median residual over the three hours before `s` (but its last quarter hour), and
//! the drop is confirmed when the rise is at least [`IncidentConfig::sigmas`] standard errors
//! of that mean (the residuals' robust spread over the three days before, ÷ √buckets) and at
//! least [`IncidentConfig::min_rise_m3h`].
//!
//! The other way round, a burst behind a PRV or in a well-fed area may move its pressures by
//! only a few decimetres, under what the drop detector needs, while the inflow jumps. So an
//! inflow step (the same rise test at every quarter hour) is also checked against the area's
//! pressure sensors: a sensor **sags** when its median over `[s, s + confirm)` is below its
//! median over the three hours before by at least [`IncidentConfig::min_sag_m`] and three
//! robust spreads more than the same difference at the same clock time on the seven days
//! before (the day's own shape taken out); at least two sagging sensors (one in an area with
//! one) make a `pressure_drop` incident too, unless a confirmed drop already covers it, or
//! the rise is under half what a hole of [`IncidentConfig::min_burst_mm`] discharges at the
//! lowest head of the sagging sensors (orifice law): a tank draining or a pump stopping
//! moves a tank-fed area's pressures with an inflow change of a cubic metre an hour, which
//! no burst worth a dispatch is.
//!
//! A rise that came with a larger change of the water passing **through** the area is not a
//! burst either: when a pump downstream starts (or a valve to a neighbour opens), the area's
//! inlet and that outlet both step by tens of cubic metres an hour, its mains carry the
//! extra water and its pressures fall, while the balance moves only by the meters' noise and
//! timing. Half of what the balance meters' steps add up to in absolute value beyond their
//! net is that through-flow change; at least [`IncidentConfig::transfer_ratio`] times the
//! rise explains the drop (or the sag) as an operation. A burst adds to the inlets alone.
//! And when the water went on to an area this one feeds (a burst there, behind a PRV that
//! holds its own pressures), whose inflow rose with that outlet carrying it, the incident is
//! that area's: its pressures did not move, the feeding area's did.
//!
//! A sag far deeper than the rise could cause is the **supply** moving (a source's head, a
//! tank): a point's response to its area's flow is the slope of its hourly pressure against
//! the hourly inflow over the week before, and an inflow step whose deepest sag among the
//! points that follow the flow exceeds [`SUPPLY_SAG_RATIO`] times that point's response × the
//! rise is no burst.
//!
//! A **gradual** fall (evidence built over [`IncidentConfig::gradual_hours`] or more) is no
//! burst, whose fall is a step: of one point alone in its zone, it is that instrument drifting
//! (a `sensor_fault`); of several together, a supply change (left out).
//!
//! Causal (CONTRACTS §3): the decision needs the inflow up to `s + confirm`, and the meters
//! up to `confirm` after the quarter hour before the drop's detection (where the test for
//! water carried across looks too), so a confirmed incident's `detected_at` is the latest of
//! its first drop's detection and those times. A drop
//! whose area has balance meters but whose inflow did not rise is a demand or supply step (a
//! pattern change on every sensor at once, a neighbour's burst felt across a valve) and is
//! not reported as a burst; [`Checked::unconfirmed`] counts them. In an area without balance
//! meters, or with the inflow missing around the drop, the drop is reported as it is, with a
//! lower confidence and a message saying that the inflow could not confirm it.
//!
//! [`link_with_bursts`] ties a pressure incident to the leakage analysis' `burst` of the same
//! area and inflow step (the service runs both): each names the other, and the burst lists the
//! pressure sensors that fell, so the dispatch centre sees one incident across flow and
//! pressure.

use std::collections::HashMap;

use chrono::Datelike;
use waterline_core::{DmaId, Event, EventKind, Network, SensorKind, Severity};

use crate::clock::{DAY_MS, LocalClock};
use crate::grid::Grid;
use crate::quality::utc;
use crate::readings::{Readings, SensorSeries};
use crate::stats::{line_fit, median};
use crate::timefmt::EpochMillis;

/// Tuning of the inflow check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IncidentConfig {
    /// Inflow after a drop's start that decides it, minutes.
    pub confirm_minutes: i64,
    /// Earlier weeks whose inflow at the same weekday and time makes the baseline.
    pub baseline_weeks: usize,
    /// Standard errors the rise must reach.
    pub sigmas: f64,
    /// The smallest rise that confirms, m³/h.
    pub min_rise_m3h: f64,
    /// Drops of one area starting within this of the incident's first are the same incident,
    /// minutes.
    pub group_minutes: i64,
    /// The least sag of a pressure sensor that confirms an inflow step, m.
    pub min_sag_m: f64,
    /// The smallest burst an inflow step with sagging pressures must be able to be, mm: the
    /// step must carry at least half the discharge of a hole this wide at the lowest head of
    /// the sagging sensors (a smaller rise is a tank or pump moving the pressures).
    pub min_burst_mm: f64,
    /// A rise is an operation, not a burst, when the water passing through the area changed
    /// by at least this many times the rise.
    pub transfer_ratio: f64,
    /// A fall whose evidence took this long or longer to build is gradual, not a burst (a
    /// burst's fall is a step), hours.
    pub gradual_hours: i64,
}

impl Default for IncidentConfig {
    fn default() -> Self {
        Self {
            confirm_minutes: 45,
            baseline_weeks: 4,
            sigmas: 3.0,
            min_rise_m3h: 0.5,
            group_minutes: 60,
            min_sag_m: 0.2,
            min_burst_mm: 10.0,
            transfer_ratio: 2.0,
            gradual_hours: 12,
        }
    }
}

/// The drops after the check.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    /// Incidents (confirmed, grouped) and unconfirmable drops, as `pressure_drop` events.
    pub events: Vec<Event>,
    /// Drops in metered areas whose inflow did not rise, or rose with a larger change of the
    /// water passing through the area (a pump or valve operation).
    pub unconfirmed: usize,
}

/// Days before a bucket whose same quarter hour makes its baseline until two earlier weeks
/// of the same weekday exist.
const EARLY_BASELINE_DAYS: usize = 7;

/// An area's inflow residuals on its 15-minute grid.
#[derive(Debug)]
struct Residuals {
    grid_start: EpochMillis,
    step: EpochMillis,
    values: Vec<Option<f64>>,
    /// Where the weekly baseline starts (before it, residuals from the days before).
    weekly_from: EpochMillis,
}

impl Residuals {
    fn of(inflow: &Grid, cfg: &IncidentConfig) -> Residuals {
        let per_day = (86_400_000 / inflow.step).max(1) as usize;
        let mut history = Vec::with_capacity(cfg.baseline_weeks);
        // The values `lag` buckets apart before `i` that `keep` accepts, newest first.
        let gather =
            |history: &mut Vec<f64>, i: usize, lag: usize, keep: &dyn Fn(usize) -> bool| {
                history.clear();
                let mut back = i;
                while history.len() < cfg.baseline_weeks && back >= lag {
                    back -= lag;
                    if keep(back)
                        && let Some(h) = inflow.values[back]
                    {
                        history.push(h);
                    }
                    if i - back > 2 * cfg.baseline_weeks * 7 * per_day {
                        break;
                    }
                }
            };
        let mut weekly_from = EpochMillis::MAX;
        let values = (0..inflow.len())
            .map(|i| {
                let v = inflow.values[i]?;
                gather(&mut history, i, 7 * per_day, &|_| true);
                if history.len() >= 2 {
                    weekly_from = weekly_from.min(inflow.start + i as EpochMillis * inflow.step);
                } else {
                    // Before two weeks of data: the same quarter hour of the days before.
                    history.clear();
                    history.extend(
                        (1..=EARLY_BASELINE_DAYS)
                            .filter_map(|d| i.checked_sub(d * per_day))
                            .filter_map(|b| inflow.values[b]),
                    );
                    if history.len() < 3 {
                        return None;
                    }
                }
                Some(v - median(&mut history)?)
            })
            .collect();
        Residuals {
            grid_start: inflow.start,
            step: inflow.step,
            values,
            weekly_from,
        }
    }

    /// The residuals of the buckets starting in `[a, b)`.
    fn between(&self, a: EpochMillis, b: EpochMillis) -> Vec<f64> {
        let first = ((a - self.grid_start).max(0) + self.step - 1) / self.step;
        let last = (b - self.grid_start).max(0) / self.step;
        (first..last)
            .filter_map(|i| self.values.get(i as usize).copied().flatten())
            .collect()
    }

    /// The inflow rise at `start` and whether it confirms a burst; `None` without the data to
    /// say.
    fn rise(&self, start: EpochMillis, cfg: &IncidentConfig) -> Option<(f64, bool)> {
        const HOUR: EpochMillis = 3_600_000;
        let after = self.between(start, start + cfg.confirm_minutes * 60_000);
        let mut before = self.between(start - 3 * HOUR, start - self.step);
        if after.is_empty() || before.len() < 4 {
            return None;
        }
        let level = median(&mut before)?;
        let rise = after.iter().sum::<f64>() / after.len() as f64 - level;
        if rise < cfg.min_rise_m3h {
            return Some((rise, false)); // the usual case, without the spread's sort
        }
        let mut spread_sample = self.between(start - 72 * HOUR, start - self.step);
        if spread_sample.len() < 24 {
            return None;
        }
        let center = median(&mut spread_sample)?;
        let mut dev: Vec<f64> = spread_sample.iter().map(|r| (r - center).abs()).collect();
        let sigma = 1.4826 * median(&mut dev)?;
        let needed = (cfg.sigmas * sigma / (after.len() as f64).sqrt()).max(cfg.min_rise_m3h);
        Some((rise, rise >= needed))
    }
}

/// Checks the `pressure_drop` events among `events` against the inflow of their DMAs
/// (`inflows` in the network's DMA order, as `grid::dma_balance_flows` gives them) and groups
/// the confirmed ones per incident, then looks for inflow steps that the area's pressures
/// (in `readings`) sagged with; other events pass through unchanged.
pub fn check_drops(
    events: Vec<Event>,
    readings: &Readings,
    network: &Network,
    inflows: &[Grid],
    cfg: &IncidentConfig,
) -> Checked {
    let mut clock = LocalClock::new(network.timezone);
    let mut residuals: HashMap<&DmaId, Residuals> = HashMap::new();
    for (dma, grid) in network.dmas.iter().zip(inflows) {
        if !dma.inlets.is_empty() && grid.values.iter().any(Option::is_some) {
            residuals.insert(&dma.id, Residuals::of(grid, cfg));
        }
    }
    let (mut drops, others): (Vec<Event>, Vec<Event>) = events
        .into_iter()
        .partition(|e| e.kind == EventKind::PressureDrop);
    drops.sort_by_key(|e| e.start);
    let mut out = Checked {
        events: others,
        unconfirmed: 0,
    };
    // Confirmed drops per DMA, waiting to be grouped.
    let mut confirmed: HashMap<DmaId, Vec<Confirmed>> = HashMap::new();
    let dma_of: HashMap<&DmaId, &waterline_core::Dma> =
        network.dmas.iter().map(|d| (&d.id, d)).collect();
    let (gradual, sudden): (Vec<Event>, Vec<Event>) =
        drops.into_iter().partition(|d| is_gradual(d, cfg));
    for d in &gradual {
        match lone_gradual_fall(d, &gradual, network) {
            Some(fault) => out.events.push(fault),
            None => out.unconfirmed += 1,
        }
    }
    for mut d in sudden {
        let start = d.start.timestamp_millis();
        let area = d.dma.as_ref().and_then(|id| dma_of.get(id)).copied();
        // Where the meters are looked at for water carried across: the drop's start (when its
        // evidence began to build) and the quarter hour before its detection (when the step
        // that confirmed it came).
        let steps = [start, d.detected_at.timestamp_millis() - 15 * 60_000];
        let looks = area.map(|a| steps.map(|t| BalanceSteps::at(readings, a, t, cfg)));
        let check = area
            .and_then(|a| Some((a, residuals.get(&a.id)?)))
            .and_then(|(a, r)| Some((a, r.rise(start, cfg)?)));
        // Decided once the meters' windows after both looks are in (causal).
        let decided = steps
            .iter()
            .map(|t| t + cfg.confirm_minutes * 60_000)
            .fold(d.detected_at.timestamp_millis(), EpochMillis::max);
        let Some((area, (rise, rose))) = check else {
            // Without the inflow's history the rise cannot be told from demand, but water
            // carried across the area by a pump or valve shows on its meters all the same.
            if let Some(looks) = &looks {
                // Against the meters' raw net step, as there is no rise to measure.
                if looks.iter().any(|b| b.carried(b.net, cfg)) {
                    out.unconfirmed += 1;
                    continue;
                }
                // Where meters had readings to decide it, it is known when they were in.
                if looks.iter().any(|b| b.meters > 0) {
                    d.detected_at = utc(decided);
                }
            }
            d.confidence = Some(0.5);
            if let Some(m) = &mut d.message {
                m.push_str(
                    "; the area's inflow could not confirm it (no balance meters or no data)",
                );
            }
            out.events.push(d);
            continue;
        };
        let looks = looks.expect("an area with inflow residuals was looked at");
        let operated = looks.iter().any(|b| b.carried(rise.max(0.0), cfg));
        if operated || !rose {
            // Water passing through (a pump or valve), or a burst in an area this one feeds,
            // whose inflow rose (the feeding area's own rise may even read negative, its
            // demand falling meanwhile), or neither: a demand or supply step.
            let through = looks[0].through();
            match downstream_burst(readings, network, &residuals, area, start, through, cfg) {
                Some((down, down_rise)) => {
                    d.dma = Some(down.clone());
                    let upstream = Some(area.id.clone());
                    confirmed.entry(down.clone()).or_default().push(Confirmed {
                        decided,
                        rise: down_rise,
                        drop: d,
                        upstream,
                    });
                }
                None => out.unconfirmed += 1,
            }
        } else {
            let drop = d;
            confirmed
                .entry(area.id.clone())
                .or_default()
                .push(Confirmed {
                    decided,
                    rise,
                    drop,
                    upstream: None,
                });
        }
    }
    for (dma, inflow) in network.dmas.iter().zip(inflows) {
        let Some(r) = residuals.get(&dma.id) else {
            continue;
        };
        let sensors: Vec<&waterline_core::Sensor> = network
            .sensors
            .values()
            .filter(|x| x.kind == SensorKind::Pressure && x.dma.as_ref() == Some(&dma.id))
            .collect();
        let known: Vec<EpochMillis> = confirmed
            .get(&dma.id)
            .map(|l| l.iter().map(|c| c.drop.start.timestamp_millis()).collect())
            .unwrap_or_default();
        for e in inflow_steps(r, inflow, &mut clock, readings, dma, &sensors, &known, cfg) {
            out.events.push(e);
        }
    }
    for (_, mut list) in confirmed {
        list.sort_by_key(|c| c.drop.start);
        let mut group: Vec<Confirmed> = Vec::new();
        for item in list {
            let joins = group.first().is_some_and(|first| {
                (item.drop.start - first.drop.start).num_minutes() <= cfg.group_minutes
            });
            if !joins && !group.is_empty() {
                out.events.push(incident(std::mem::take(&mut group)));
            }
            group.push(item);
        }
        if !group.is_empty() {
            out.events.push(incident(group));
        }
    }
    out.events
        .sort_by(|a, b| (a.detected_at, a.kind.as_str()).cmp(&(b.detected_at, b.kind.as_str())));
    out
}

/// Whether a drop's evidence took [`IncidentConfig::gradual_hours`] or more to build.
fn is_gradual(drop: &Event, cfg: &IncidentConfig) -> bool {
    (drop.detected_at - drop.start).num_hours() >= cfg.gradual_hours
}

/// A gradual fall of one pressure point while no other point of its zone (of three or more)
/// fell gradually by then is the instrument drifting: a `sensor_fault`. Several points falling
/// slowly together are a supply change, and a zone of one or two points cannot tell them
/// apart: `None` (neither is a burst). Only falls detected by then count (causal).
fn lone_gradual_fall(drop: &Event, gradual: &[Event], network: &Network) -> Option<Event> {
    let dma = drop.dma.as_ref()?;
    let points = network
        .sensors
        .values()
        .filter(|x| x.kind == SensorKind::Pressure && x.dma.as_ref() == Some(dma))
        .count();
    let others = gradual.iter().any(|o| {
        o.sensor != drop.sensor
            && o.dma.as_ref() == Some(dma)
            && o.detected_at <= drop.detected_at
            && o.start < drop.detected_at
            && drop.start < o.detected_at
    });
    if points < 3 || others {
        return None;
    }
    let hours = (drop.detected_at - drop.start).num_hours();
    let mut e = Event::new(EventKind::SensorFault, drop.start, drop.detected_at);
    e.sensor = drop.sensor.clone();
    e.dma = drop.dma.clone();
    e.severity = Some(Severity::Warning);
    e.value = drop.value;
    e.confidence = Some(0.7);
    e.message = Some(format!(
        "drift: fell {:.2} m over {hours} h while none of the zone's other {} pressure points did (a burst's fall is a step, felt across the zone)",
        drop.value.unwrap_or(0.0),
        points - 1
    ));
    Some(e)
}

/// A drop the inflow confirmed, waiting to be grouped into its incident.
#[derive(Debug)]
struct Confirmed {
    /// When the inflow and the balance meters it was checked against were in.
    decided: EpochMillis,
    /// The inflow rise, m³/h.
    rise: f64,
    drop: Event,
    /// The area whose sensors fell, when the burst is in the area it feeds.
    upstream: Option<DmaId>,
}

/// One incident from the confirmed drops of one area and time.
fn incident(group: Vec<Confirmed>) -> Event {
    let decided = group.iter().map(|c| c.decided).min().unwrap_or_default();
    let rise = group.iter().map(|c| c.rise).fold(f64::MIN, f64::max);
    let first = group
        .iter()
        .min_by_key(|c| (c.decided, c.drop.detected_at))
        .map(|c| c.drop.clone())
        .expect("a group is never empty");
    let mut e = Event::new(
        EventKind::PressureDrop,
        group
            .iter()
            .map(|c| c.drop.start)
            .min()
            .unwrap_or(first.start),
        utc(decided),
    );
    e.dma = first.dma.clone();
    e.sensor = first.sensor.clone();
    e.sensors = group.iter().filter_map(|c| c.drop.sensor.clone()).collect();
    e.sensors.sort();
    e.sensors.dedup();
    e.end = if group.iter().any(|c| c.drop.end.is_none()) {
        None
    } else {
        group.iter().filter_map(|c| c.drop.end).max()
    };
    let depth = group
        .iter()
        .filter_map(|c| c.drop.value)
        .fold(0.0, f64::max);
    e.value = Some(depth);
    e.flow_m3h = Some((rise * 100.0).round() / 100.0);
    e.severity = first.severity;
    e.confidence = Some(0.9);
    let mut upstream: Vec<&str> = group
        .iter()
        .filter_map(|c| c.upstream.as_ref().map(|u| u.as_str()))
        .collect();
    upstream.sort();
    upstream.dedup();
    let at = if upstream.is_empty() {
        String::new()
    } else {
        format!(" (in {}, which feeds this area)", upstream.join(", "))
    };
    e.message = Some(format!(
        "pressure fell up to {depth:.2} m at {} sensor(s){at} while the area's inflow rose {rise:.2} m3/h: a burst",
        e.sensors.len()
    ));
    e
}

/// Ties each `pressure_drop` incident that the inflow confirmed (it carries `flow_m3h`) to the
/// leakage `burst` of the same DMA starting within an hour of it: the burst gets the incident's
/// pressure sensors and a message naming the pressure fall, the incident a message naming the
/// burst. Other events are left alone. Returns how many pairs were linked.
pub fn link_with_bursts(events: &mut [Event]) -> usize {
    let drops: Vec<usize> = (0..events.len())
        .filter(|&i| {
            let e = &events[i];
            e.kind == EventKind::PressureDrop && e.dma.is_some() && e.flow_m3h.is_some()
        })
        .collect();
    let mut linked = 0;
    for d in drops {
        let (dma, start) = (events[d].dma.clone(), events[d].start);
        let burst = (0..events.len())
            .filter(|&i| {
                let b = &events[i];
                b.kind == EventKind::Burst
                    && b.dma == dma
                    && (b.start - start).num_minutes().abs() <= 60
            })
            .min_by_key(|&i| (events[i].start - start).num_minutes().abs());
        let Some(b) = burst else { continue };
        let (drop_sensors, depth) = (events[d].sensors.clone(), events[d].value.unwrap_or(0.0));
        let burst_flow = events[b].flow_m3h;
        let burst_start = events[b].start;
        let be = &mut events[b];
        for s in &drop_sensors {
            if !be.sensors.contains(s) {
                be.sensors.push(s.clone());
            }
        }
        be.sensors.sort();
        let note = format!(
            "; pressure fell up to {depth:.2} m at {} (the pressure_drop incident from {})",
            drop_sensors
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            start.format("%Y-%m-%d %H:%M UTC")
        );
        append(&mut be.message, &note);
        let note = format!(
            "; the leakage analysis reports it as the burst from {}{}",
            burst_start.format("%Y-%m-%d %H:%M UTC"),
            burst_flow.map_or(String::new(), |f| format!(" ({f:.2} m3/h)"))
        );
        append(&mut events[d].message, &note);
        linked += 1;
    }
    linked
}

/// Appends `note` to a message once (a rerun of the online job links again).
fn append(message: &mut Option<String>, note: &str) {
    match message {
        Some(m) if m.contains(note) => {}
        Some(m) => m.push_str(note),
        None => *message = Some(note.trim_start_matches("; ").to_owned()),
    }
}

const HOUR_MS: EpochMillis = 3_600_000;
/// After an incident's start, the time its raised inflow needs to become the rise test's
/// "before" level.
const QUIET_MS: EpochMillis = 6 * HOUR_MS;

/// Incidents from inflow steps of one area that its pressure sensors sagged with; `known`
/// are the starts of the area's drops already confirmed (an inflow step near one is that
/// incident).
#[allow(clippy::too_many_arguments)]
fn inflow_steps(
    r: &Residuals,
    inflow: &Grid,
    clock: &mut LocalClock,
    readings: &Readings,
    dma: &waterline_core::Dma,
    sensors: &[&waterline_core::Sensor],
    known: &[EpochMillis],
    cfg: &IncidentConfig,
) -> Vec<Event> {
    let mut out = Vec::new();
    if sensors.is_empty() {
        return out;
    }
    let needed = sensors.len().min(2);
    let group = cfg.group_minutes * 60_000;
    let mut quiet_until = EpochMillis::MIN;
    for i in 0..r.values.len() {
        let s = r.grid_start + i as EpochMillis * r.step;
        // An incident already found covers the raised inflow of its next hours too. Inflow
        // steps are looked for only on the weekly baseline, the three hours before a step (its
        // level) included: against the days before, one weekday's own pattern (a Friday
        // evening) looks like a step.
        if s < r.weekly_from.saturating_add(3 * HOUR_MS)
            || s < quiet_until
            || known.iter().any(|&k| s >= k - group && s < k + QUIET_MS)
        {
            continue;
        }
        let Some((rise, true)) = r.rise(s, cfg) else {
            continue;
        };
        let mut sagging: Vec<(&waterline_core::Sensor, f64, f64)> = sensors
            .iter()
            .filter_map(|x| {
                let (sag, head) = sag(readings, x, s, clock, cfg)?;
                Some((*x, sag, head))
            })
            .collect();
        if sagging.len() < needed {
            continue;
        }
        let lowest_head = sagging.iter().map(|x| x.2).fold(f64::INFINITY, f64::min);
        if rise < 0.5 * orifice_m3h(cfg.min_burst_mm, lowest_head)
            || BalanceSteps::at(readings, dma, s, cfg).carried(rise, cfg)
        {
            continue;
        }
        sagging.sort_by(|a, b| b.1.total_cmp(&a.1));
        // A sag far beyond what this much water does to the deepest point's pressure (the
        // daily cycle's own response) is the supply moving, not a burst; the quarter hours
        // after it are the same change. The deepest point whose pressure follows the flow
        // is judged: one that does not (fed near a tank or a source) says nothing either
        // way, and judging none when it was the deepest let a sag of 15 points by up to
        // 0.69 m with a rise of 3 m³/h through as a burst (the 2018 year, 25 March).
        let response = sagging.iter().find_map(|(sensor, depth, _)| {
            flow_response(inflow, readings, sensor, s).map(|k| (*depth, k))
        });
        if response.is_some_and(|(depth, k)| depth > SUPPLY_SAG_RATIO * k * rise) {
            quiet_until = s + QUIET_MS;
            continue;
        }
        let detected = s + cfg.confirm_minutes * 60_000;
        let mut e = Event::new(EventKind::PressureDrop, utc(s), utc(detected));
        e.dma = sagging[0].0.dma.clone();
        e.sensor = Some(sagging[0].0.id.clone());
        e.sensors = sagging.iter().map(|(x, _, _)| x.id.clone()).collect();
        e.sensors.sort();
        let depth = sagging[0].1;
        e.value = Some((depth * 100.0).round() / 100.0);
        e.flow_m3h = Some((rise * 100.0).round() / 100.0);
        e.severity = Some(waterline_core::Severity::Warning);
        e.confidence = Some(0.8);
        e.message = Some(format!(
            "the area's inflow rose {rise:.2} m3/h while {} pressure sensor(s) sagged up to {depth:.2} m below their usual course: a burst",
            sagging.len()
        ));
        out.push(e);
        // The raised inflow is the new normal for the rise test after three hours; one
        // burst is one incident.
        quiet_until = s + QUIET_MS;
    }
    out
}

/// How far a meter's flow stepped at `s`: its median over `[s, s + confirm)` minus its median
/// over the three hours before (as the rise test takes them), m³/h.
fn meter_step(
    readings: &Readings,
    meter: &waterline_core::SensorId,
    s: EpochMillis,
    cfg: &IncidentConfig,
) -> Option<f64> {
    let series = readings.series(meter);
    let (before, after) = step_levels(&series, s, cfg.confirm_minutes * 60_000, 1)?;
    Some(after - before)
}

/// The steps of an area's balance meters at one time `s` ([`meter_step`]), m³/h.
#[derive(Debug, Clone, Copy)]
struct BalanceSteps {
    /// Their absolute sum.
    moved: f64,
    /// Their net: inlets less outlets.
    net: f64,
    /// How many meters had the data for a step.
    meters: usize,
}

impl BalanceSteps {
    fn at(
        readings: &Readings,
        dma: &waterline_core::Dma,
        s: EpochMillis,
        cfg: &IncidentConfig,
    ) -> Self {
        dma.inlets
            .iter()
            .map(|m| (m, 1.0))
            .chain(dma.outlets.iter().map(|m| (m, -1.0)))
            .filter_map(|(m, sign)| Some(sign * meter_step(readings, m, s, cfg)?))
            .fold(
                BalanceSteps {
                    moved: 0.0,
                    net: 0.0,
                    meters: 0,
                },
                |b, x| BalanceSteps {
                    moved: b.moved + x.abs(),
                    net: b.net + x,
                    meters: b.meters + 1,
                },
            )
    }

    /// How much the water passing through the area changed, m³/h: half of what the steps add
    /// up to in absolute value beyond their net. A burst or a demand change moves the net; a
    /// pump or valve carrying water across the area moves an inlet and an outlet by the same
    /// amount, which the net does not show.
    fn through(&self) -> f64 {
        (self.moved - self.net.abs()) / 2.0
    }

    /// Whether the water passing through changed by at least the smallest rise and
    /// [`IncidentConfig::transfer_ratio`] times `rise` (m³/h): a pump or valve moving water
    /// across the area, or a burst in an area it feeds, not a burst in it.
    fn carried(&self, rise: f64, cfg: &IncidentConfig) -> bool {
        let through = self.through();
        through >= cfg.min_rise_m3h && through >= cfg.transfer_ratio * rise.abs()
    }
}

/// The area fed by one of `area`'s outlets whose own inflow rose at `s` (the rise test, not
/// itself an operation) with that outlet carrying at least half the rise and half `through`,
/// the change of the water passing through `area` (the transfer that lowered `area`'s
/// pressures went there, not to a pump elsewhere): a burst there, felt upstream (a PRV holds
/// its own pressures), with the rise (m³/h). The largest if several.
fn downstream_burst<'a>(
    readings: &Readings,
    network: &'a Network,
    residuals: &HashMap<&DmaId, Residuals>,
    area: &waterline_core::Dma,
    s: EpochMillis,
    through: f64,
    cfg: &IncidentConfig,
) -> Option<(&'a DmaId, f64)> {
    let mut best: Option<(&DmaId, f64)> = None;
    for outlet in &area.outlets {
        let Some(step) = meter_step(readings, outlet, s, cfg) else {
            continue;
        };
        for fed in network.dmas.iter().filter(|x| x.inlets.contains(outlet)) {
            let Some(Some((rise, true))) = residuals.get(&fed.id).map(|r| r.rise(s, cfg)) else {
                continue;
            };
            if step >= 0.5 * rise.max(through)
                && !BalanceSteps::at(readings, fed, s, cfg).carried(rise, cfg)
                && best.is_none_or(|(_, r)| rise > r)
            {
                best = Some((&fed.id, rise));
            }
        }
    }
    best
}

/// A series' median over the three hours before a step at `at` (but its last quarter hour;
/// at least `min_before` readings) and over `[at, at + confirm)`: the levels before and after.
fn step_levels(
    series: &SensorSeries<'_>,
    at: EpochMillis,
    confirm: EpochMillis,
    min_before: usize,
) -> Option<(f64, f64)> {
    let mut before = values_between(series, at - 3 * HOUR_MS, at - 15 * 60_000);
    if before.len() < min_before {
        return None;
    }
    let mut after = values_between(series, at, at + confirm);
    Some((median(&mut before)?, median(&mut after)?))
}

/// A sensor's values at times in `[a, b)`.
fn values_between(series: &SensorSeries<'_>, a: EpochMillis, b: EpochMillis) -> Vec<f64> {
    let from = series.times.partition_point(|&t| t < a);
    let to = series.times.partition_point(|&t| t < b);
    series.values[from..to].to_vec()
}

/// The discharge of a round hole of `diameter_mm` at `head_m` (orifice law, discharge
/// coefficient 0.6), m³/h: a 10 mm hole gives 3.4 m³/h at 20 m.
fn orifice_m3h(diameter_mm: f64, head_m: f64) -> f64 {
    let area = std::f64::consts::PI / 4.0 * (diameter_mm / 1000.0).powi(2);
    0.6 * area * (2.0 * 9.81 * head_m.max(0.0)).sqrt() * 3600.0
}

/// A sag deeper than this many times the point's daily response to the same flow is the
/// supply moving. On 19 evaluation runs a burst's deepest point sagged at most 11 times
/// its response to the burst's inflow rise (a point near the burst feels more than the
/// area's average); L-Town seed 6's two morning sags of 0.85–0.97 m at 8–19 points with a
/// rise of 3.6–4.4 m³/h were 31–45 times.
const SUPPLY_SAG_RATIO: f64 = 20.0;

/// The least share of a point's hourly pressure variance its area's inflow must explain
/// for its response to be judged.
const MIN_RESPONSE_R2: f64 = 0.3;

/// How much `sensor`'s pressure falls per m³/h of its area's inflow, m per m³/h, from the
/// hourly medians of both over the week before `s` (the daily cycle's own response); `None`
/// when the flow does not clearly drive it or there is under two days of both.
fn flow_response(
    inflow: &Grid,
    readings: &Readings,
    sensor: &waterline_core::Sensor,
    s: EpochMillis,
) -> Option<f64> {
    let series = readings.series(&sensor.id);
    let mut points = Vec::new();
    for h in 1..=(7 * 24) {
        let a = s - h * HOUR_MS;
        let mut p = values_between(&series, a, a + HOUR_MS);
        let mut q: Vec<f64> = inflow
            .between(a, a + HOUR_MS)
            .iter()
            .flatten()
            .copied()
            .collect();
        if let (Some(p), Some(q)) = (median(&mut p), median(&mut q)) {
            points.push((q, p));
        }
    }
    if points.len() < 48 {
        return None;
    }
    // Falling with the flow, and clearly following it (a tank's level drives a tank-fed
    // area's pressures instead: no response to judge by).
    let (b, r2) = line_fit(&points)?;
    (b < 0.0 && r2 >= MIN_RESPONSE_R2).then_some(-b)
}

/// How far `sensor` sagged at `s` beyond its usual course at that time of day, m, when that is
/// at least [`IncidentConfig::min_sag_m`] and three robust spreads, with its head before the
/// step (m); `None` otherwise or without the data.
fn sag(
    readings: &Readings,
    sensor: &waterline_core::Sensor,
    s: EpochMillis,
    clock: &mut LocalClock,
    cfg: &IncidentConfig,
) -> Option<(f64, f64)> {
    let series = readings.series(&sensor.id);
    let confirm = cfg.confirm_minutes * 60_000;
    // The median levels before a step at `at` and over its confirmation window.
    let levels = |at: EpochMillis| step_levels(&series, at, confirm, 4);
    let step_down = |at: EpochMillis| levels(at).map(|(before, after)| before - after);
    let (head, after) = levels(s)?;
    let now = head - after;
    let mut weekend = |t: EpochMillis| clock.local(t).weekday().num_days_from_monday() >= 5;
    let today = weekend(s);
    let same_type: Vec<EpochMillis> = (1..=14)
        .map(|d| s - d * DAY_MS)
        .filter(|&t| weekend(t) == today)
        .collect();
    let mut usual: Vec<f64> = same_type
        .into_iter()
        .filter_map(step_down)
        .take(7)
        .collect();
    if usual.len() < 3 {
        return None;
    }
    let center = median(&mut usual)?;
    let mut dev: Vec<f64> = usual.iter().map(|x| (x - center).abs()).collect();
    let spread = 1.4826 * median(&mut dev)?;
    let sag = now - center;
    (sag >= cfg.min_sag_m && sag >= 3.0 * spread).then_some((sag, head))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use waterline_core::SensorId;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn event(kind: EventKind, dma: &str, start: &str) -> Event {
        let mut e = Event::new(kind, at(start), at(start));
        e.dma = Some(DmaId::parse(dma).unwrap());
        e
    }

    /// L-Town seed 6: n54 drifted 2.4 m down over two days in the data's first week, which
    /// the drop detector found as a fall and the inflow (against the days before, a weekend)
    /// "confirmed" as a burst. A fall that slow is no burst; of one point alone, a drift.
    #[test]
    fn a_slow_fall_of_one_point_alone_is_a_drift_and_of_several_a_supply_change() {
        let zone = |points: &[&str]| {
            let mut toml = String::from(
                "timezone = \"UTC\"\n[[dma]]\nid = \"A\"\ninlets = [\"in\"]\n\
                 [[sensor]]\nid = \"in\"\nkind = \"flow\"\nunit = \"m3/h\"\ndma = \"A\"\n",
            );
            for p in points {
                toml += &format!(
                    "[[sensor]]\nid = \"{p}\"\nkind = \"pressure\"\nunit = \"m\"\ndma = \"A\"\n"
                );
            }
            Network::parse(&toml).unwrap()
        };
        let net = zone(&["p1", "p2", "p3"]);
        let fall = |sensor: &str, start: &str, detected: &str| {
            let mut e = event(EventKind::PressureDrop, "A", start);
            e.detected_at = at(detected);
            e.sensor = Some(SensorId::parse(sensor).unwrap());
            e.value = Some(2.4);
            e
        };
        let cfg = IncidentConfig::default();
        let sudden = fall("p1", "2018-01-05T23:50:00Z", "2018-01-06T00:35:00Z");
        assert!(!is_gradual(&sudden, &cfg));
        let slow = fall("p1", "2018-01-05T23:50:00Z", "2018-01-08T00:35:00Z");
        assert!(is_gradual(&slow, &cfg));
        let fault =
            lone_gradual_fall(&slow, std::slice::from_ref(&slow), &net).expect("a lone slow fall");
        assert_eq!(fault.kind, EventKind::SensorFault);
        assert_eq!(fault.sensor, slow.sensor);
        let m = fault.message.as_deref().unwrap();
        assert!(m.starts_with("drift: fell 2.40 m over 48 h"), "{m}");
        // Another point of the zone falling slowly by then: a supply change, no fault.
        let other = fall("p2", "2018-01-06T10:00:00Z", "2018-01-07T12:00:00Z");
        assert!(lone_gradual_fall(&slow, &[slow.clone(), other], &net).is_none());
        // One found only afterwards is not known yet (causal).
        let later = fall("p2", "2018-01-06T10:00:00Z", "2018-01-09T12:00:00Z");
        assert!(lone_gradual_fall(&slow, &[slow.clone(), later], &net).is_some());
        // A zone of two points cannot tell a drift from a supply change.
        assert!(
            lone_gradual_fall(&slow, std::slice::from_ref(&slow), &zone(&["p1", "p2"])).is_none()
        );
    }

    #[test]
    fn a_ten_millimetre_hole_discharges_a_few_cubic_metres_an_hour() {
        // Q = 0.6 · π/4 · 0.01² · √(2 · 9.81 · 20) · 3600 = 3.36 m³/h.
        assert!((orifice_m3h(10.0, 20.0) - 3.36).abs() < 0.01);
        // Four times the area, twice the head's square root.
        assert!((orifice_m3h(20.0, 80.0) / orifice_m3h(10.0, 20.0) - 8.0).abs() < 1e-9);
        assert_eq!(orifice_m3h(10.0, -3.0), 0.0, "no head, no flow");
    }

    #[test]
    fn a_burst_and_its_pressure_incident_name_each_other() {
        let mut burst = event(EventKind::Burst, "A", "2026-02-05T09:00:00Z");
        burst.flow_m3h = Some(14.2);
        burst.message = Some("inflow rose".into());
        let mut drop = event(EventKind::PressureDrop, "A", "2026-02-05T09:20:00Z");
        drop.flow_m3h = Some(13.8);
        drop.value = Some(1.4);
        drop.sensors = vec![
            SensorId::parse("n54").unwrap(),
            SensorId::parse("n7").unwrap(),
        ];
        drop.message = Some("pressure fell".into());
        // Another area's drop, an unconfirmed drop and a far-away burst stay apart.
        let mut other = drop.clone();
        other.dma = Some(DmaId::parse("B").unwrap());
        let mut unconfirmed = drop.clone();
        unconfirmed.flow_m3h = None;
        let late = event(EventKind::Burst, "A", "2026-02-05T12:00:00Z");
        let mut events = vec![burst, drop, other, unconfirmed, late];
        assert_eq!(link_with_bursts(&mut events), 1);
        let sensors: Vec<&str> = events[0].sensors.iter().map(|s| s.as_str()).collect();
        assert_eq!(sensors, ["n54", "n7"]);
        let m = events[0].message.as_deref().unwrap();
        assert!(
            m.starts_with("inflow rose; pressure fell up to 1.40 m at n54, n7"),
            "{m}"
        );
        let m = events[1].message.as_deref().unwrap();
        assert!(
            m.contains("burst from 2026-02-05 09:00 UTC (14.20 m3/h)"),
            "{m}"
        );
        assert_eq!(events[2].message.as_deref(), Some("pressure fell"));
        assert_eq!(events[3].message.as_deref(), Some("pressure fell"));
        assert!(events[4].sensors.is_empty());
        // Linking again adds nothing (the online job reruns over the same window).
        let before = events[0].message.clone();
        link_with_bursts(&mut events);
        assert_eq!(events[0].message, before);
    }

    #[test]
    fn early_drops_are_checked_against_the_days_before_and_steps_wait_for_the_weeks() {
        const STEP: EpochMillis = 15 * 60_000;
        let per_day = (DAY_MS / STEP) as usize;
        // Three weeks of a daily inflow cycle, 10 m3/h higher from day 5 at 12:00.
        let step_at = 5 * per_day + per_day / 2;
        let values = (0..21 * per_day)
            .map(|i| {
                let hour = (i % per_day) as f64 / 4.0;
                let cycle = 40.0 + 15.0 * (std::f64::consts::TAU * hour / 24.0).sin();
                let wiggle = ((i * 7919) % 13) as f64 / 13.0 - 0.5;
                Some(cycle + wiggle + if i >= step_at { 10.0 } else { 0.0 })
            })
            .collect();
        let grid = Grid {
            start: 0,
            step: STEP,
            values,
        };
        let cfg = IncidentConfig::default();
        let r = Residuals::of(&grid, &cfg);
        // Days 1 and 2 have too few days before; from day 3 the days before are the baseline.
        assert!(r.values[2 * per_day].is_none());
        assert!(r.values[3 * per_day].is_some());
        // The weekly baseline (two earlier weeks of the same weekday) starts on day 14.
        assert_eq!(r.weekly_from, 14 * DAY_MS);
        // A drop at the step is confirmed by the inflow in the first week already; one a day
        // earlier is not.
        let s = step_at as EpochMillis * STEP;
        assert!(matches!(r.rise(s, &cfg), Some((rise, true)) if (rise - 10.0).abs() < 1.0));
        assert!(matches!(r.rise(s - DAY_MS, &cfg), Some((_, false))));
    }

    #[test]
    fn water_passing_through_the_area_is_an_operation_and_a_burst_is_not() {
        let net = Network::parse(
            r#"
[[dma]]
id = "A"
inlets = ["in"]
outlets = ["to-c"]
[[sensor]]
id = "in"
kind = "flow"
unit = "m3/h"
[[sensor]]
id = "to-c"
kind = "flow"
unit = "m3/h"
"#,
        )
        .unwrap();
        let id = |s: &str| SensorId::parse(s).unwrap();
        let s = 4 * HOUR_MS;
        // Five-minute readings for six hours; from `s` the inlet carries `inlet_step` more
        // and the outlet (a pump to the next area) `outlet_step` more.
        let area = |inlet_step: f64, outlet_step: f64| {
            let rows = (0..72).flat_map(move |k| {
                let t = k * 5 * 60_000;
                let on = t >= s;
                let wiggle = (k % 3) as f64 * 0.2;
                [
                    (
                        id("in"),
                        t,
                        70.0 + wiggle + if on { inlet_step } else { 0.0 },
                    ),
                    (id("to-c"), t, if on { outlet_step } else { 0.0 }),
                ]
            });
            Readings::from_rows(&net, rows)
        };
        let cfg = IncidentConfig::default();
        let dma = &net.dmas[0];
        // The pump starts: 36 m3/h in and out, the balance up by 3.7 (meter timing and noise).
        assert!(BalanceSteps::at(&area(39.7, 36.0), dma, s, &cfg).carried(3.7, &cfg));
        // A 10 m3/h burst: only the inlet moves.
        assert!(!BalanceSteps::at(&area(10.0, 0.0), dma, s, &cfg).carried(10.0, &cfg));
        // A burst while a smaller transfer changes is still a burst.
        assert!(!BalanceSteps::at(&area(14.0, 4.0), dma, s, &cfg).carried(10.0, &cfg));
    }
}
