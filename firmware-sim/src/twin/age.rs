//! Water age from the solver's flows (epanet-rs 0.2 has no water-quality solver).
//!
//! At each hydraulic step the links that carry flow form a directed graph (each link points
//! downstream by the sign of its flow; links carrying under [`Q_MIN_M3H`] are left out).
//! Nodes are visited in flow order (Kahn's topological order, reservoirs and tanks first):
//!
//! - a reservoir's water has age 0 (treated water leaving the works);
//! - a tank is a completely mixed volume: over a step of `dt` its age becomes
//!   `(V·a + Q_in·dt·a_in) / (V + Q_in·dt) + dt` (the water ages, and inflow of age `a_in`
//!   mixes in; outflow leaves at the tank's age), starting from [`TANK_START_AGE_H`];
//! - a junction's age is the flow-weighted mean over its incoming links of the upstream age
//!   plus the link's travel time `V_pipe / Q` (= L / v; pumps and valves: 0); a junction
//!   without inflow (a dead end at zero demand) ages by the step.
//!
//! That is the age the water would have if the step's flows held for ever (quasi-steady);
//! the reported age follows it with a first-order lag of [`RELAXATION_H`], so that a
//! junction does not jump by hours when the flows turn at night. Ages are capped at
//! [`AGE_CAP_H`].
//!
//! The same pass carries a tracer for [`WaterAge::trace`]: the share of each node's water
//! that passed a given node, and its mean travel time from there, so that an incident at one
//! node reaches the nodes downstream later and diluted by the water that joins on the way.
//!
//! Limits: no dispersion or longitudinal mixing along pipes (plug flow on average); the
//! quasi-steady age ignores that water in a long pipe left upstream under earlier flows;
//! directed flow cycles (possible only through pumps) are broken at an arbitrary node; a tracer
//! stops at tanks (their volume dilutes and delays it beyond what the model tracks).

use super::engine::{Engine, LinkKind, NodeKind};

/// Links carrying less than this (m³/h, either way) are treated as stagnant.
pub const Q_MIN_M3H: f64 = 1e-4;
/// The largest age reported, hours (10 days).
pub const AGE_CAP_H: f64 = 240.0;
/// Time constant with which the reported age follows the quasi-steady age, hours.
pub const RELAXATION_H: f64 = 1.0;
/// A tank's age before the first step, hours.
pub const TANK_START_AGE_H: f64 = 24.0;

/// One link carrying flow into a node, in the last solved step.
#[derive(Debug, Clone, Copy)]
struct Inflow {
    up: usize,
    q_m3h: f64,
    travel_h: f64,
}

/// The water age of every node, updated once per hydraulic step.
#[derive(Debug, Clone)]
pub struct WaterAge {
    kind: Vec<NodeKind>,
    /// Water volume of each link (pipes; 0 for pumps and valves), m³.
    link_volume_m3: Vec<f64>,
    /// Reported (lagged) age per node, hours.
    age_h: Vec<f64>,
    /// Quasi-steady age per node of the last step, hours.
    steady_h: Vec<f64>,
    /// Age of each tank's water (other nodes: 0), hours.
    tank_h: Vec<f64>,
    /// Flow into each node in the last step, m³/h.
    inflow_m3h: Vec<f64>,
    /// Flow order of the last step.
    order: Vec<usize>,
    /// Incoming links per node (CSR: `in_edges[in_start[n]..in_start[n + 1]]`).
    in_start: Vec<usize>,
    in_edges: Vec<Inflow>,
    /// Outgoing junction neighbours per node (CSR), for the ordering.
    out_start: Vec<usize>,
    out_nodes: Vec<usize>,
    pending: Vec<usize>,
    done: Vec<bool>,
    steps: usize,
}

impl WaterAge {
    /// A model for the engine's network; call [`WaterAge::update`] after each solve.
    pub fn new(engine: &Engine) -> Self {
        let n = engine.nodes().len();
        let kind: Vec<NodeKind> = engine.nodes().iter().map(|n| n.kind).collect();
        let link_volume_m3 = engine
            .links()
            .iter()
            .map(|l| match l.kind {
                LinkKind::Pipe => {
                    std::f64::consts::PI * l.diameter_m * l.diameter_m / 4.0 * l.length_m
                }
                LinkKind::Pump | LinkKind::Valve => 0.0,
            })
            .collect();
        let tank_h = kind
            .iter()
            .map(|k| {
                if *k == NodeKind::Tank {
                    TANK_START_AGE_H
                } else {
                    0.0
                }
            })
            .collect();
        Self {
            kind,
            link_volume_m3,
            age_h: vec![0.0; n],
            steady_h: vec![0.0; n],
            tank_h,
            inflow_m3h: vec![0.0; n],
            order: Vec::with_capacity(n),
            in_start: vec![0; n + 1],
            in_edges: Vec::new(),
            out_start: vec![0; n + 1],
            out_nodes: Vec::new(),
            pending: vec![0; n],
            done: vec![false; n],
            steps: 0,
        }
    }

    /// Water age at a node after the last update, hours.
    pub fn age_h(&self, node: usize) -> f64 {
        self.age_h[node]
    }

    /// Flow into a node in the last step (the water passing it), m³/h.
    pub fn inflow_m3h(&self, node: usize) -> f64 {
        self.inflow_m3h[node]
    }

    /// Takes the step just solved (lasting `dt_s`): the ages of this step, and the tanks'
    /// mixing over it.
    pub fn update(&mut self, engine: &Engine, dt_s: usize) {
        let n = self.kind.len();
        let dt_h = dt_s as f64 / 3600.0;
        self.build_graph(engine);
        self.order_nodes();
        for i in 0..self.order.len() {
            let node = self.order[i];
            self.steady_h[node] = match self.kind[node] {
                NodeKind::Reservoir => 0.0,
                NodeKind::Tank => self.tank_h[node],
                NodeKind::Junction => match self.mixed_inflow_age(node) {
                    Some(a) => a,
                    // Stagnant: the water there ages.
                    None if self.steps == 0 => 0.0,
                    None => (self.steady_h[node] + dt_h).min(AGE_CAP_H),
                },
            };
        }
        let lag = 1.0 - (-dt_h / RELAXATION_H).exp();
        for node in 0..n {
            self.age_h[node] = if self.steps == 0 || self.kind[node] != NodeKind::Junction {
                self.steady_h[node]
            } else {
                self.age_h[node] + (self.steady_h[node] - self.age_h[node]) * lag
            };
        }
        // The tanks mix over the step (for the next one).
        for node in 0..n {
            if self.kind[node] != NodeKind::Tank {
                continue;
            }
            let volume = engine.tank_volume_m3(node);
            let age = self.tank_h[node];
            self.tank_h[node] = match self.mixed_inflow_age(node) {
                Some(a_in) if volume > 0.0 => {
                    let v_in = self.inflow_m3h[node] * dt_h;
                    (volume * age + v_in * a_in) / (volume + v_in) + dt_h
                }
                Some(a_in) => a_in,
                None => age + dt_h,
            }
            .min(AGE_CAP_H);
        }
        self.steps += 1;
    }

    /// Flow-weighted age of the water flowing into `node` (upstream age + travel), or `None`
    /// when nothing flows in.
    fn mixed_inflow_age(&self, node: usize) -> Option<f64> {
        let q = self.inflow_m3h[node];
        if q <= 0.0 {
            return None;
        }
        let sum: f64 = self
            .inflows(node)
            .iter()
            .map(|e| e.q_m3h * (self.steady_h[e.up] + e.travel_h))
            .sum();
        Some((sum / q).min(AGE_CAP_H))
    }

    fn inflows(&self, node: usize) -> &[Inflow] {
        &self.in_edges[self.in_start[node]..self.in_start[node + 1]]
    }

    fn build_graph(&mut self, engine: &Engine) {
        let n = self.kind.len();
        let flows: Vec<(usize, usize, f64, f64)> = engine
            .links()
            .iter()
            .enumerate()
            .filter_map(|(l, info)| {
                let q = engine.flow_m3h(l);
                if q.abs() < Q_MIN_M3H {
                    return None;
                }
                let (up, down) = if q > 0.0 {
                    (info.from, info.to)
                } else {
                    (info.to, info.from)
                };
                let travel_h = (self.link_volume_m3[l] / q.abs()).min(AGE_CAP_H);
                Some((up, down, q.abs(), travel_h))
            })
            .collect();
        self.in_start.fill(0);
        self.out_start.fill(0);
        self.inflow_m3h.fill(0.0);
        for &(up, down, q, _) in &flows {
            self.in_start[down + 1] += 1;
            self.out_start[up + 1] += 1;
            self.inflow_m3h[down] += q;
        }
        for i in 0..n {
            self.in_start[i + 1] += self.in_start[i];
            self.out_start[i + 1] += self.out_start[i];
        }
        let dummy = Inflow {
            up: 0,
            q_m3h: 0.0,
            travel_h: 0.0,
        };
        self.in_edges.clear();
        self.in_edges.resize(flows.len(), dummy);
        self.out_nodes.clear();
        self.out_nodes.resize(flows.len(), 0);
        let mut in_fill = self.in_start.clone();
        let mut out_fill = self.out_start.clone();
        for &(up, down, q_m3h, travel_h) in &flows {
            self.in_edges[in_fill[down]] = Inflow {
                up,
                q_m3h,
                travel_h,
            };
            in_fill[down] += 1;
            self.out_nodes[out_fill[up]] = down;
            out_fill[up] += 1;
        }
    }

    /// Kahn's order over the junctions; reservoirs and tanks are sources whatever flows in.
    fn order_nodes(&mut self) {
        let n = self.kind.len();
        self.order.clear();
        self.done.fill(false);
        for node in 0..n {
            self.pending[node] = if self.kind[node] == NodeKind::Junction {
                self.in_start[node + 1] - self.in_start[node]
            } else {
                0
            };
        }
        let mut head = 0;
        for node in 0..n {
            if self.pending[node] == 0 {
                self.order.push(node);
                self.done[node] = true;
            }
        }
        loop {
            while head < self.order.len() {
                let node = self.order[head];
                head += 1;
                for i in self.out_start[node]..self.out_start[node + 1] {
                    let down = self.out_nodes[i];
                    if self.kind[down] != NodeKind::Junction || self.done[down] {
                        continue;
                    }
                    self.pending[down] -= 1;
                    if self.pending[down] == 0 {
                        self.order.push(down);
                        self.done[down] = true;
                    }
                }
            }
            // A directed cycle (through a pump): break it at its first node.
            match (0..n).find(|&i| !self.done[i]) {
                Some(node) => {
                    self.order.push(node);
                    self.done[node] = true;
                }
                None => break,
            }
        }
    }

    /// A tracer released at `origin` in the last step's flows: for each node, the share of its
    /// water that passed `origin` (0–1) and that water's mean travel time from `origin`, hours.
    /// Tanks and reservoirs stop the tracer (unless they are the origin).
    pub fn trace(&self, origin: usize) -> Vec<(f64, f64)> {
        let mut out = vec![(0.0, 0.0); self.kind.len()];
        out[origin] = (1.0, 0.0);
        let Some(from) = self.order.iter().position(|&n| n == origin) else {
            return out;
        };
        for &node in &self.order[from + 1..] {
            if self.kind[node] != NodeKind::Junction || self.inflow_m3h[node] <= 0.0 {
                continue;
            }
            let (mut marked, mut timed) = (0.0, 0.0);
            for e in self.inflows(node) {
                let (f, t) = out[e.up];
                if f > 0.0 {
                    marked += e.q_m3h * f;
                    timed += e.q_m3h * f * (t + e.travel_h);
                }
            }
            if marked > 0.0 {
                out[node] = (marked / self.inflow_m3h[node], timed / marked);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// R1 → J1 → J2 → J3, and J4 joining J3 from a second reservoir R2.
    const LINE: &str = "[JUNCTIONS]\n J1 0 1\n J2 0 1\n J3 0 2\n J4 0 0\n\
        [RESERVOIRS]\n R1 50\n R2 50\n\
        [PIPES]\n P1 R1 J1 100 200 130 0 Open\n P2 J1 J2 1000 200 130 0 Open\n\
        P3 J2 J3 1000 200 130 0 Open\n P4 R2 J4 100 200 130 0 Open\n P5 J4 J3 500 100 130 0 Open\n\
        [OPTIONS]\n Units CMH\n[END]\n";

    fn solved() -> (Engine, WaterAge) {
        let mut e = Engine::from_inp_text(LINE, "line").unwrap();
        let n = e.nodes().len();
        e.solve(&crate::twin::engine::StepInput {
            elapsed_s: 0,
            pattern_time_s: 0,
            factor: &vec![1.0; n],
            extra_m3h: &vec![0.0; n],
        })
        .unwrap();
        let mut age = WaterAge::new(&e);
        age.update(&e, 300);
        (e, age)
    }

    #[test]
    fn age_adds_travel_times_along_the_flow() {
        let (e, age) = solved();
        let id = |s: &str| e.node_index(s).unwrap();
        let (j1, j2) = (age.age_h(id("J1")), age.age_h(id("J2")));
        // P2: 1000 m of 200 mm (31.4 m³) carrying what J2 and J3 take from R1.
        let q = e.flow_m3h(e.link_index("P2").unwrap());
        let expected = std::f64::consts::PI * 0.01 * 1000.0 / q;
        assert!((j2 - j1 - expected).abs() < 1e-6, "{j1} {j2} {expected}");
        assert!(age.age_h(id("J3")) > j2);
        assert_eq!(age.age_h(id("R1")), 0.0);
    }

    #[test]
    fn a_tracer_is_diluted_where_other_water_joins() {
        let (e, age) = solved();
        let id = |s: &str| e.node_index(s).unwrap();
        let t = age.trace(id("J1"));
        assert_eq!(t[id("J2")].0, 1.0);
        let f3 = t[id("J3")].0;
        let q5 = e.flow_m3h(e.link_index("P5").unwrap());
        let q3 = e.flow_m3h(e.link_index("P3").unwrap());
        assert!((f3 - q3 / (q3 + q5)).abs() < 1e-9, "{f3}");
        assert!(f3 > 0.0 && f3 < 1.0);
        assert!(t[id("J3")].1 > t[id("J2")].1);
        assert_eq!(t[id("J4")].0, 0.0, "not downstream");
    }
}
