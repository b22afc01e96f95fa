//! Water-quality monitoring stations: where they sit and what they measure.
//!
//! Each station measures seven signals, exported as sensors `<station>-<suffix>`:
//!
//! | suffix | kind | unit | role | resolution | alarms |
//! | --- | --- | --- | --- | --- | --- |
//! | `cl2` | chlorine (free) | mg/L | quality | 0.01 | low 0.05, high 2.0 (GB 5749) |
//! | `turb` | turbidity | NTU | quality | 0.01 | high 1.0 |
//! | `ph` | ph | pH | quality | 0.01 | low 6.5, high 8.5 |
//! | `cond` | conductivity | uS/cm | quality | 0.1 | |
//! | `toc` | toc | mg/L | quality | 0.01 | |
//! | `temp` | temperature | degC | context | 0.1 | |
//! | `flow` | flow through the station's main | m3/h | context | 0.01 | |
//!
//! By default ([`default_nodes`]) a station stands at each area's inlet junction (the source,
//! PRV or tank outlet) and at the area's farthest junction with demand (longest pipe
//! distance from its inlets), area by area in supply order (A inlet, A far end, B inlet, …),
//! at most [`MAX_DEFAULT_STATIONS`]; they are named S1, S2, … in that order. A scenario's
//! `[[station]]` list replaces them.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::Twin;
use super::TwinError;
use super::engine::{Engine, LinkKind, NodeKind};
use super::zones::Zone;

/// The most stations placed by default.
pub const MAX_DEFAULT_STATIONS: usize = 6;

/// One measured signal of a station.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Chlorine,
    Turbidity,
    Ph,
    Conductivity,
    Toc,
    Temperature,
    /// The flow in the main the station samples (the water passing its node).
    Flow,
}

impl Channel {
    /// Every signal, in export order: the analyser's first, then the flow.
    pub const ALL: [Channel; 7] = [
        Channel::Chlorine,
        Channel::Turbidity,
        Channel::Ph,
        Channel::Conductivity,
        Channel::Toc,
        Channel::Temperature,
        Channel::Flow,
    ];

    /// The suffixes of the quality (not context) signals.
    pub const QUALITY_SUFFIXES: [&'static str; 5] = ["cl2", "turb", "ph", "cond", "toc"];

    /// Whether the station's multi-parameter analyser measures it (the flow comes from a
    /// separate meter on the main).
    pub fn from_analyser(self) -> bool {
        self != Channel::Flow
    }

    /// The sensor-id suffix.
    pub fn suffix(self) -> &'static str {
        match self {
            Channel::Chlorine => "cl2",
            Channel::Turbidity => "turb",
            Channel::Ph => "ph",
            Channel::Conductivity => "cond",
            Channel::Toc => "toc",
            Channel::Temperature => "temp",
            Channel::Flow => "flow",
        }
    }

    /// The signal with this suffix.
    pub fn from_suffix(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.suffix() == s)
    }

    /// The sensor kind in `network.toml`.
    pub fn kind(self) -> &'static str {
        match self {
            Channel::Chlorine => "chlorine",
            Channel::Turbidity => "turbidity",
            Channel::Ph => "ph",
            Channel::Conductivity => "conductivity",
            Channel::Toc => "toc",
            Channel::Temperature => "temperature",
            Channel::Flow => "flow",
        }
    }

    /// The unit in `network.toml`.
    pub fn unit(self) -> &'static str {
        match self {
            Channel::Chlorine | Channel::Toc => "mg/L",
            Channel::Turbidity => "NTU",
            Channel::Ph => "pH",
            Channel::Conductivity => "uS/cm",
            Channel::Temperature => "degC",
            Channel::Flow => "m3/h",
        }
    }

    /// `quality` (may raise events) or `context`.
    pub fn role(self) -> &'static str {
        match self {
            Channel::Temperature | Channel::Flow => "context",
            _ => "quality",
        }
    }

    /// Hard set points (low, high).
    pub fn alarms(self) -> (Option<f64>, Option<f64>) {
        match self {
            Channel::Chlorine => (Some(0.05), Some(2.0)),
            Channel::Turbidity => (None, Some(1.0)),
            Channel::Ph => (Some(6.5), Some(8.5)),
            _ => (None, None),
        }
    }

    /// Instrument resolution.
    pub fn resolution(self) -> f64 {
        match self {
            Channel::Conductivity | Channel::Temperature => 0.1,
            _ => 0.01,
        }
    }

    /// Decimals written for the resolution.
    pub fn decimals(self) -> usize {
        match self {
            Channel::Conductivity | Channel::Temperature => 1,
            _ => 2,
        }
    }

    /// The instrument's range: readings are clamped into it.
    pub fn bounds(self) -> (f64, f64) {
        match self {
            Channel::Ph => (0.0, 14.0),
            Channel::Temperature => (-5.0, 50.0),
            _ => (0.0, f64::MAX),
        }
    }

    /// Standard deviation of the instrument noise at reading `v`.
    pub fn noise_sd(self, v: f64) -> f64 {
        match self {
            Channel::Chlorine => 0.01 + 0.01 * v.abs(),
            Channel::Turbidity => 0.005 + 0.02 * v.abs(),
            Channel::Ph => 0.01,
            Channel::Conductivity => 0.5 + 0.002 * v.abs(),
            Channel::Toc => 0.03,
            Channel::Temperature => 0.03,
            Channel::Flow => 0.01 + 0.01 * v.abs(),
        }
    }

    /// Default spike size.
    pub fn spike(self) -> f64 {
        match self {
            Channel::Chlorine => 1.5,
            Channel::Turbidity => 4.0,
            Channel::Ph => 2.0,
            Channel::Conductivity => 150.0,
            Channel::Toc => 6.0,
            Channel::Temperature => 8.0,
            Channel::Flow => 50.0,
        }
    }

    /// Default drift at the end of a drift fault.
    pub fn drift(self) -> f64 {
        match self {
            Channel::Chlorine => -0.5,
            Channel::Turbidity => 0.5,
            Channel::Ph => 0.8,
            Channel::Conductivity => 40.0,
            Channel::Toc => 3.0,
            Channel::Temperature => 2.0,
            Channel::Flow => 5.0,
        }
    }

    /// Default floor reading.
    pub fn floor(self) -> f64 {
        match self {
            Channel::Ph => 4.0,
            _ => 0.0,
        }
    }

    /// The calibration reading during maintenance (`late`: the second half of the window);
    /// `None`: the signal reads on.
    pub fn calibration(self, late: bool) -> Option<f64> {
        match self {
            Channel::Chlorine | Channel::Toc => Some(0.0),
            Channel::Turbidity => Some(0.02),
            Channel::Ph => Some(if late { 4.0 } else { 7.0 }),
            Channel::Conductivity => Some(1413.0),
            Channel::Temperature | Channel::Flow => None,
        }
    }
}

/// A station as a scenario lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct StationSpec {
    pub id: String,
    pub node: String,
}

/// A placed station.
#[derive(Debug, Clone, PartialEq)]
pub struct Station {
    pub id: String,
    pub node: usize,
    /// The area of its node, if a junction.
    pub dma: Option<String>,
}

impl Station {
    /// The sensor id of one of its signals.
    pub fn sensor_id(&self, c: Channel) -> String {
        format!("{}-{}", self.id, c.suffix())
    }

    /// The sensor id of its second (redundant) analyser of `c`: `<station>-<suffix>b`.
    pub fn redundant_id(&self, c: Channel) -> String {
        format!("{}-{}b", self.id, c.suffix())
    }
}

/// Places the listed stations, or the default ones when none is listed.
pub fn place(twin: &Twin, listed: &[StationSpec]) -> Result<Vec<Station>, TwinError> {
    let engine = twin.engine();
    let dma = |n: usize| twin.zone_of()[n].map(|z| twin.zones()[z].id.clone());
    if listed.is_empty() {
        return Ok(default_nodes(engine, twin.zones(), twin.zone_of())
            .into_iter()
            .enumerate()
            .map(|(i, node)| Station {
                id: format!("S{}", i + 1),
                node,
                dma: dma(node),
            })
            .collect());
    }
    let mut out: Vec<Station> = Vec::new();
    for (i, s) in listed.iter().enumerate() {
        let what = format!("station {} ({})", i + 1, s.id);
        if waterline_core::StationId::parse(&s.id).is_err()
            || waterline_core::SensorId::parse(format!("{}-cond", s.id)).is_err()
        {
            return Err(TwinError::Scenario(format!(
                "{what}: `{}` is not a valid station id (letters, digits, `_-.:`)",
                s.id
            )));
        }
        if out.iter().any(|o| o.id == s.id) {
            return Err(TwinError::Scenario(format!(
                "{what}: the id `{}` is used twice",
                s.id
            )));
        }
        let node = engine.node_index(&s.node).ok_or_else(|| {
            TwinError::Scenario(format!("{what}: the network has no node `{}`", s.node))
        })?;
        out.push(Station {
            id: s.id.clone(),
            node,
            dma: dma(node),
        });
    }
    Ok(out)
}

#[derive(PartialEq)]
struct Item(f64, usize);
impl Eq for Item {}
impl Ord for Item {
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.total_cmp(&self.0).then(o.1.cmp(&self.1))
    }
}
impl PartialOrd for Item {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// The default station nodes: per area, its inlet junction and its farthest junction with
/// demand, at most [`MAX_DEFAULT_STATIONS`].
pub fn default_nodes(engine: &Engine, zones: &[Zone], zone_of: &[Option<usize>]) -> Vec<usize> {
    let nodes = engine.nodes();
    let links = engine.links();
    let mut adjacent: Vec<Vec<(usize, f64)>> = vec![Vec::new(); nodes.len()];
    for l in links {
        if l.kind == LinkKind::Pipe
            && !l.closed
            && zone_of[l.from].is_some()
            && zone_of[l.from] == zone_of[l.to]
        {
            adjacent[l.from].push((l.to, l.length_m));
            adjacent[l.to].push((l.from, l.length_m));
        }
    }
    let demand = engine.mean_demand_m3h();
    let mut out: Vec<usize> = Vec::new();
    for (zi, z) in zones.iter().enumerate() {
        let inlets: Vec<usize> = z
            .inlets
            .iter()
            .map(|m| {
                let l = &links[m.link];
                if zone_of[l.to] == Some(zi) {
                    l.to
                } else {
                    l.from
                }
            })
            .filter(|&n| nodes[n].kind == NodeKind::Junction && zone_of[n] == Some(zi))
            .collect();
        let Some(&inlet) = inlets.first() else {
            continue;
        };
        // Dijkstra from every inlet over the area's pipes.
        let mut dist = vec![f64::INFINITY; nodes.len()];
        let mut heap = BinaryHeap::new();
        for &n in &inlets {
            dist[n] = 0.0;
            heap.push(Item(0.0, n));
        }
        while let Some(Item(d, n)) = heap.pop() {
            if d > dist[n] {
                continue;
            }
            for &(m, len) in &adjacent[n] {
                if d + len < dist[m] {
                    dist[m] = d + len;
                    heap.push(Item(d + len, m));
                }
            }
        }
        let far = z
            .junctions
            .iter()
            .copied()
            .filter(|&n| dist[n].is_finite() && demand[n] > 0.0)
            .max_by(|&a, &b| dist[a].total_cmp(&dist[b]).then(b.cmp(&a)));
        for n in std::iter::once(inlet).chain(far) {
            if !out.contains(&n) && out.len() < MAX_DEFAULT_STATIONS {
                out.push(n);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_stations_sit_at_each_area_inlet_and_far_end() {
        let e = Engine::from_inp_text(crate::twin::BUILTIN_INP, "built-in").unwrap();
        let (zones, zone_of) = crate::twin::zones::find_zones(&e);
        let ids: Vec<&str> = default_nodes(&e, &zones, &zone_of)
            .into_iter()
            .map(|n| e.nodes()[n].id.as_str())
            .collect();
        assert_eq!(ids.len(), 6);
        assert_eq!((ids[0], ids[2], ids[4]), ("J1", "B1", "C1"));
        // The far ends lie away from the inlets.
        for far in [ids[1], ids[3], ids[5]] {
            assert!(!["J1", "B1", "C1"].contains(&far), "{ids:?}");
        }
    }
}
