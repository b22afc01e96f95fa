//! DMAs from the topology: which junctions form an area, and which metered links close its
//! water balance.
//!
//! An `.inp` carries no area labels, so areas are found the way an engineer reads the map:
//! junctions joined by open pipes belong together; pumps, valves, closed pipes and the pipes
//! that leave a reservoir or tank separate areas. Each separating link that carries water into
//! or out of an area (pump, valve, source pipe) becomes a flow meter, so that
//! inflow = Σ inlets − Σ outlets is the area's consumption plus leakage. Tanks stay outside
//! every area: the pipe from a tank into an area is that area's inlet (its flow is signed, so
//! it also meters refilling through it), and a pump into a tank is an outlet of the area it
//! draws from.
//!
//! A component of at most two junctions and under 100 m of pipe (the node between a reservoir
//! pipe and a PRV, say) is folded into the area that it feeds through its valve or pump.
//!
//! Areas are named A, B, C, … by supply hierarchy: first the areas fed straight from a
//! reservoir, then those fed through a valve, then those fed by a pump or from a tank; larger
//! areas first within a class. On L-Town this gives the benchmark's A (reservoir-fed), B
//! (behind PRV-3) and C (fed from tank T1).

use super::engine::{Engine, LinkKind, NodeKind};

/// A link that meters an area's water balance.
#[derive(Debug, Clone, PartialEq)]
pub struct Meter {
    /// Link index.
    pub link: usize,
    /// Link id (also the flow sensor's id).
    pub id: String,
}

/// One area.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    pub id: String,
    /// Junction indices.
    pub junctions: Vec<usize>,
    /// Links whose positive flow (start → end) enters the area.
    pub inlets: Vec<Meter>,
    /// Links whose positive flow leaves the area.
    pub outlets: Vec<Meter>,
    /// Pipes with at least one end in the area, km.
    pub mains_km: f64,
    /// Mean demand of the area's junctions, m³/h.
    pub mean_demand_m3h: f64,
}

struct UnionFind(Vec<usize>);

impl UnionFind {
    fn find(&mut self, mut x: usize) -> usize {
        while self.0[x] != x {
            self.0[x] = self.0[self.0[x]];
            x = self.0[x];
        }
        x
    }
    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[a] = b;
        }
    }
}

/// Finds the areas of a network; `zone_of[node]` gives a junction's area index.
pub fn find_zones(engine: &Engine) -> (Vec<Zone>, Vec<Option<usize>>) {
    let nodes = engine.nodes();
    let links = engine.links();
    let is_junction = |n: usize| nodes[n].kind == NodeKind::Junction;
    let mut uf = UnionFind((0..nodes.len()).collect());
    for l in links {
        if l.kind == LinkKind::Pipe && !l.closed && is_junction(l.from) && is_junction(l.to) {
            uf.union(l.from, l.to);
        }
    }
    // Fold tiny components into the component they feed through a valve or pump.
    let mut size = vec![0usize; nodes.len()];
    let mut length = vec![0.0f64; nodes.len()];
    for n in (0..nodes.len()).filter(|&n| is_junction(n)) {
        let r = uf.find(n);
        size[r] += 1;
    }
    for l in links.iter().filter(|l| l.kind == LinkKind::Pipe) {
        let end = if is_junction(l.from) { l.from } else { l.to };
        if is_junction(end) {
            let r = uf.find(end);
            length[r] += l.length_m;
        }
    }
    for l in links {
        if l.kind == LinkKind::Pipe || !is_junction(l.from) || !is_junction(l.to) {
            continue;
        }
        let (up, down) = (uf.find(l.from), uf.find(l.to));
        if up != down && size[up] <= 2 && length[up] < 100.0 {
            uf.union(up, down);
            let r = uf.find(down);
            size[r] = size[up] + size[down];
            length[r] = length[up] + length[down];
        }
    }
    // Components and their feed class.
    let mut roots: Vec<usize> = Vec::new();
    let mut comp_of = vec![None; nodes.len()];
    for n in (0..nodes.len()).filter(|&n| is_junction(n)) {
        let r = uf.find(n);
        let c = match roots.iter().position(|&x| x == r) {
            Some(c) => c,
            None => {
                roots.push(r);
                roots.len() - 1
            }
        };
        comp_of[n] = Some(c);
    }
    let mut zones: Vec<Zone> = roots
        .iter()
        .map(|_| Zone {
            id: String::new(),
            junctions: Vec::new(),
            inlets: Vec::new(),
            outlets: Vec::new(),
            mains_km: 0.0,
            mean_demand_m3h: 0.0,
        })
        .collect();
    let demand = engine.mean_demand_m3h();
    for (n, c) in comp_of.iter().enumerate() {
        if let Some(c) = c {
            zones[*c].junctions.push(n);
            zones[*c].mean_demand_m3h += demand[n];
        }
    }
    let mut class = vec![3u8; zones.len()];
    for (i, l) in links.iter().enumerate() {
        let (a, b) = (comp_of[l.from], comp_of[l.to]);
        if l.kind == LinkKind::Pipe && (a.is_some() != b.is_some()) {
            let z = a.or(b).expect("one end is a junction");
            zones[z].mains_km += l.length_m / 1000.0;
        } else if l.kind == LinkKind::Pipe && a == b {
            if let Some(z) = a {
                zones[z].mains_km += l.length_m / 1000.0;
            }
            continue;
        }
        if a == b || l.closed {
            continue;
        }
        let meter = Meter {
            link: i,
            id: l.id.clone(),
        };
        if let Some(z) = a {
            zones[z].outlets.push(meter.clone());
        }
        if let Some(z) = b {
            zones[z].inlets.push(meter);
            let source = nodes[l.from].kind;
            let c = match (l.kind, source) {
                (LinkKind::Pipe, NodeKind::Reservoir) => 0,
                (LinkKind::Valve, _) => 1,
                (LinkKind::Pump, _) | (LinkKind::Pipe, NodeKind::Tank) => 2,
                _ => 3,
            };
            class[z] = class[z].min(c);
        }
        // A source pipe drawn from the area towards the source: water normally enters here.
        if let (Some(z), LinkKind::Pipe, None) = (a, l.kind, b) {
            let c = if nodes[l.to].kind == NodeKind::Reservoir {
                0
            } else {
                2
            };
            class[z] = class[z].min(c);
        }
    }
    let mut order: Vec<usize> = (0..zones.len()).collect();
    order.sort_by(|&x, &y| {
        class[x]
            .cmp(&class[y])
            .then(zones[y].junctions.len().cmp(&zones[x].junctions.len()))
            .then(x.cmp(&y))
    });
    let mut renumber = vec![0; zones.len()];
    for (new, &old) in order.iter().enumerate() {
        renumber[old] = new;
    }
    let mut sorted: Vec<Zone> = order.iter().map(|&o| zones[o].clone()).collect();
    for (i, z) in sorted.iter_mut().enumerate() {
        z.id = zone_name(i);
    }
    let zone_of = comp_of.iter().map(|c| c.map(|c| renumber[c])).collect();
    (sorted, zone_of)
}

fn zone_name(i: usize) -> String {
    if i < 26 {
        char::from(b'A' + i as u8).to_string()
    } else {
        format!("Z{}", i + 1)
    }
}

/// The area's average-zone-pressure point: the junction whose elevation is closest to the
/// demand-weighted mean elevation of the area (equal weights when nothing has demand).
pub fn azp_node(engine: &Engine, zone: &Zone) -> Option<usize> {
    let nodes = engine.nodes();
    let demand = engine.mean_demand_m3h();
    let total: f64 = zone.junctions.iter().map(|&n| demand[n].max(0.0)).sum();
    let w = |n: usize| {
        if total > 0.0 {
            demand[n].max(0.0) / total
        } else {
            1.0 / zone.junctions.len() as f64
        }
    };
    let mean: f64 = zone
        .junctions
        .iter()
        .map(|&n| w(n) * nodes[n].elevation_m)
        .sum();
    zone.junctions.iter().copied().min_by(|&a, &b| {
        (nodes[a].elevation_m - mean)
            .abs()
            .total_cmp(&(nodes[b].elevation_m - mean).abs())
    })
}

/// The area's critical point: its highest junction (the lowest static pressure).
pub fn critical_node(engine: &Engine, zone: &Zone) -> Option<usize> {
    let nodes = engine.nodes();
    zone.junctions
        .iter()
        .copied()
        .max_by(|&a, &b| nodes[a].elevation_m.total_cmp(&nodes[b].elevation_m))
}
