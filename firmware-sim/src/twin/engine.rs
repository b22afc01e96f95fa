//! The hydraulic engine: an EPANET `.inp` network solved step by step.
//!
//! The solver is [`epanet_rs`] 0.2 (a pure-Rust re-implementation of the EPANET 2.3 hydraulic
//! solver: global gradient algorithm, demand patterns, emitters, PRVs, pumps, tanks, simple
//! controls). It was chosen over the `epanet` crate (bindings to the C EPANET 2.3) because it
//! builds with cargo alone: the C bindings need `cmake` and `libclang` (bindgen) on the build
//! machine, so a fresh checkout could not build or run `waterline demo` without extra system
//! packages. Both were tried on L-Town: the two solvers agree to the second decimal on heads
//! and flows, and epanet-rs solves a week of 5-minute steps in about half a second. On the
//! built-in network this engine stays within 0.02 m and 0.01 % of flow of the C EPANET 2.3
//! (`tests/fixtures/builtin-epanet23.csv`).
//!
//! What epanet-rs 0.2 does not do for us, and this module does: its parser reads files only
//! (text goes through a temporary file) and names the line for some errors only
//! (`inp_error` finds it for a bad field); updating a PRV's setting in the network does not
//! reach the solver state (copied here); a junction's solved demand includes its emitter flow
//! (taken out in [`Engine::demand_m3h`]).
//!
//! This module drives the solver's low-level API itself (rather than epanet-rs's `Simulation`)
//! so that the twin can change what EPANET cannot express in an `.inp`: each junction's demand
//! at each step, emitter (leak) coefficients, and PRV set points. Steps have a fixed length:
//! tank levels are integrated over the whole step and controls act at step boundaries (EPANET
//! would insert an intermediate step when a tank crosses a control level; at 5-minute steps the
//! difference is one step of pump state).
//!
//! Values leave this module in SI units whatever the `.inp` uses: m³/h, metres.

use std::path::Path;

use epanet_rs::constants::{CMHperCFS, M3perFT3, MperFT, PSIperFT};
use epanet_rs::model::link::{LinkStatus, LinkType};
use epanet_rs::model::network::{JunctionUpdate, Network, ValveUpdate};
use epanet_rs::model::node::NodeType;
use epanet_rs::model::units::UnitSystem;
use epanet_rs::solver::hydraulicsolver::HydraulicSolver;
use epanet_rs::solver::state::SolverState;

use super::TwinError;

/// The loosest solver accuracy the twin accepts (EPANET's `Accuracy` option).
pub const MAX_ACCURACY: f64 = 1e-5;

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Junction,
    Reservoir,
    Tank,
}

/// What a link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    Pipe,
    Pump,
    Valve,
}

/// A node as the twin sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInfo {
    pub id: String,
    pub kind: NodeKind,
    pub elevation_m: f64,
}

/// A link as the twin sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkInfo {
    pub id: String,
    pub kind: LinkKind,
    pub from: usize,
    pub to: usize,
    /// Pipe length (0 for pumps and valves).
    pub length_m: f64,
    /// Pipe diameter (0 for pumps and valves), m.
    pub diameter_m: f64,
    /// Closed in the `.inp` (a closed boundary valve, for instance).
    pub closed: bool,
    /// A PRV.
    pub prv: bool,
}

/// An `.inp` error naming the file and the line. The parser names the line for some errors
/// only; for a bad field (`Invalid elevation: 'abc'`) the line is the first data line holding
/// that field.
fn inp_error(name: &str, text: &str, e: &epanet_rs::error::InputError) -> TwinError {
    let message = e.to_string();
    if message.contains("(line ") {
        return TwinError::Inp(format!("{name}: {message}"));
    }
    let token = message
        .split_once('\'')
        .and_then(|(_, rest)| rest.rsplit_once('\''))
        .map(|(t, _)| t);
    let found = token.and_then(|token| {
        text.lines().enumerate().find(|(_, line)| {
            let data = line.split(';').next().unwrap_or("");
            !data.trim_start().starts_with('[') && data.split_whitespace().any(|f| f == token)
        })
    });
    match found {
        Some((i, line)) => TwinError::Inp(format!(
            "{name}: line {} (`{}`): {message}",
            i + 1,
            line.trim()
        )),
        None => TwinError::Inp(format!("{name}: {message}")),
    }
}

/// The network and the solver's state between steps.
pub struct Engine {
    network: Network,
    solver: HydraulicSolver,
    state: SolverState,
    nodes: Vec<NodeInfo>,
    links: Vec<LinkInfo>,
    /// Mean pattern multiplier × base demand of each junction, m³/h (0 for other nodes).
    mean_demand_m3h: Vec<f64>,
    /// Junctions whose demand follows a pattern of the `.inp`.
    patterned: Vec<bool>,
    /// Length of the longest demand pattern, seconds.
    pattern_span_s: usize,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("nodes", &self.nodes.len())
            .field("links", &self.links.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Loads an `.inp` file. Errors name the file and, where the parser knows it, the line.
    pub fn from_inp_file(path: &Path) -> Result<Self, TwinError> {
        let shown = path.display().to_string();
        let p = path
            .to_str()
            .ok_or_else(|| TwinError::Inp(format!("{shown}: path is not UTF-8")))?;
        if !path.is_file() {
            return Err(TwinError::Inp(format!("{shown}: no such file")));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| TwinError::Inp(format!("{shown}: {e}")))?;
        let network = Network::from_file(p).map_err(|e| inp_error(&shown, &text, &e))?;
        Self::new(network, &shown)
    }

    /// Loads `.inp` text (the parser reads files only, so it goes through a temporary file).
    pub fn from_inp_text(text: &str, name: &str) -> Result<Self, TwinError> {
        let mut file = tempfile::Builder::new()
            .prefix("waterline-twin-")
            .suffix(".inp")
            .tempfile()
            .map_err(|e| TwinError::Io(format!("temporary file for {name}: {e}")))?;
        std::io::Write::write_all(&mut file, text.as_bytes())
            .map_err(|e| TwinError::Io(format!("temporary file for {name}: {e}")))?;
        let p = file
            .path()
            .to_str()
            .ok_or_else(|| TwinError::Io("temporary path is not UTF-8".into()))?
            .to_owned();
        let network = Network::from_file(&p).map_err(|e| inp_error(name, text, &e))?;
        Self::new(network, name)
    }

    fn new(mut network: Network, name: &str) -> Result<Self, TwinError> {
        // EPANET stops iterating when the flows change by less than `Accuracy` (relative, often
        // 0.001 to 0.01 in `.inp` files); node balances are then off by up to that share of the
        // flow. The twin solves to 1e-5 at least, so that DMA water balances close to within
        // litres per hour.
        network.options.accuracy = network.options.accuracy.min(MAX_ACCURACY);
        let solver = HydraulicSolver::new(&network)
            .map_err(|e| TwinError::Solver(format!("{name}: {e}")))?;
        let state = SolverState::new_with_initial_values(&network);
        let nodes: Vec<NodeInfo> = network
            .nodes
            .iter()
            .map(|n| NodeInfo {
                id: n.id.to_string(),
                kind: match n.node_type {
                    NodeType::Junction(_) => NodeKind::Junction,
                    NodeType::Reservoir(_) => NodeKind::Reservoir,
                    NodeType::Tank(_) => NodeKind::Tank,
                },
                elevation_m: n.elevation * MperFT,
            })
            .collect();
        let links = network
            .links
            .iter()
            .map(|l| {
                let (kind, length_m, diameter_m, prv) = match &l.link_type {
                    LinkType::Pipe(p) => (
                        LinkKind::Pipe,
                        p.length * MperFT,
                        p.diameter * MperFT,
                        false,
                    ),
                    LinkType::Pump(_) => (LinkKind::Pump, 0.0, 0.0, false),
                    LinkType::Valve(v) => (
                        LinkKind::Valve,
                        0.0,
                        0.0,
                        v.valve_type == epanet_rs::model::valve::ValveType::PRV,
                    ),
                };
                LinkInfo {
                    id: l.id.to_string(),
                    kind,
                    from: l.start_node,
                    to: l.end_node,
                    length_m,
                    diameter_m,
                    closed: l.initial_status == LinkStatus::Closed,
                    prv,
                }
            })
            .collect();
        let default_pattern = network
            .options
            .pattern
            .as_ref()
            .or(Some(&Box::from("1")))
            .and_then(|id| network.pattern_map.get(id).copied());
        let step = network.options.time_options.pattern_timestep.max(1);
        let mut pattern_span_s = 0;
        let mut mean_demand_m3h = vec![0.0; network.nodes.len()];
        let mut patterned = vec![false; network.nodes.len()];
        for (i, n) in network.nodes.iter().enumerate() {
            let NodeType::Junction(j) = &n.node_type else {
                continue;
            };
            for d in &j.demands {
                let pat = d.pattern_index.or(default_pattern);
                let mean = match pat {
                    Some(p) => {
                        let m = &network.patterns[p].multipliers;
                        if d.basedemand != 0.0 {
                            patterned[i] = true;
                            pattern_span_s = pattern_span_s.max(m.len() * step);
                        }
                        m.iter().sum::<f64>() / m.len().max(1) as f64
                    }
                    None => 1.0,
                };
                mean_demand_m3h[i] +=
                    d.basedemand * mean * network.options.demand_multiplier * CMHperCFS;
            }
        }
        Ok(Self {
            network,
            solver,
            state,
            nodes,
            links,
            mean_demand_m3h,
            patterned,
            pattern_span_s,
        })
    }

    /// The nodes, by index.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The links, by index.
    pub fn links(&self) -> &[LinkInfo] {
        &self.links
    }

    /// A node's index by id.
    pub fn node_index(&self, id: &str) -> Option<usize> {
        self.network.node_map.get(id).copied()
    }

    /// A link's index by id.
    pub fn link_index(&self, id: &str) -> Option<usize> {
        self.network.link_map.get(id).copied()
    }

    /// Mean demand of each node over its pattern, m³/h.
    pub fn mean_demand_m3h(&self) -> &[f64] {
        &self.mean_demand_m3h
    }

    /// Whether a junction's demand follows a pattern of the `.inp`.
    pub fn is_patterned(&self, node: usize) -> bool {
        self.patterned[node]
    }

    /// Length of the longest demand pattern, seconds (0 when no demand has a pattern).
    pub fn pattern_span_s(&self) -> usize {
        self.pattern_span_s
    }

    /// The emitter exponent N1 of the network (flow ∝ pressure^N1): 0.5 unless the `.inp`
    /// says otherwise.
    pub fn emitter_exponent(&self) -> f64 {
        1.0 / self.network.options.emitter_exponent
    }

    /// Sets a junction's emitter coefficient C, in m³/h per m^N1 (flow = C · pressure^N1).
    pub fn set_emitter(&mut self, node: usize, c_m3h: f64) -> Result<(), TwinError> {
        set_emitter_on(&mut self.network, &self.nodes[node].id, c_m3h)
    }

    /// Sets a PRV's set point (downstream pressure), m.
    pub fn set_prv_setting(&mut self, link: usize, setting_m: f64) -> Result<(), TwinError> {
        let info = &self.links[link];
        if !info.prv {
            return Err(TwinError::Scenario(format!(
                "link `{}` is not a PRV; only PRV set points can change",
                info.id
            )));
        }
        let id = info.id.clone();
        let setting = match self.network.options.unit_system {
            UnitSystem::SI => setting_m,
            UnitSystem::US => setting_m / MperFT * PSIperFT,
        };
        self.network
            .update_valve(
                &id,
                &ValveUpdate {
                    setting: Some(setting),
                    ..ValveUpdate::default()
                },
            )
            .map_err(|e| TwinError::Solver(format!("set point of {id}: {e}")))
    }

    /// A PRV's current set point (downstream pressure), m; `None` for any other link.
    pub fn prv_setting_m(&self, link: usize) -> Option<f64> {
        if !self.links.get(link)?.prv {
            return None;
        }
        match &self.network.links[link].link_type {
            // epanet-rs keeps a PRV's setting as pressure in feet of head.
            LinkType::Valve(v) => Some(v.setting * MperFT),
            _ => None,
        }
    }

    /// Sets the local time of day of the first step, seconds after midnight: the clock of
    /// `CLOCKTIME` controls.
    pub fn set_start_clock(&mut self, seconds: usize) {
        self.network.options.time_options.start_clocktime = seconds % 86_400;
    }

    /// Solves one step ([`StepInput`]: its clock and demands).
    pub fn solve(&mut self, step: &StepInput<'_>) -> Result<(), TwinError> {
        let fixed = (&self.solver, &self.nodes[..], &self.links[..]);
        self.state = solve_step(fixed, &mut self.network, &mut self.state, step)?;
        Ok(())
    }

    /// Pressures (m) at every node that [`Engine::solve`] of `step` would give had junction
    /// `node`'s emitter coefficient been `c_m3h` (m³/h per m^N1): solved on copies of the
    /// network and the state, so the engine is left as it was. A leak's own effect on the
    /// pressures, for the truth.
    pub fn pressures_if_emitter(
        &self,
        node: usize,
        c_m3h: f64,
        step: &StepInput<'_>,
    ) -> Result<Vec<f64>, TwinError> {
        let mut network = self.network.clone();
        set_emitter_on(&mut network, &self.nodes[node].id, c_m3h)?;
        let mut state = self.state.clone();
        let fixed = (&self.solver, &self.nodes[..], &self.links[..]);
        let solved = solve_step(fixed, &mut network, &mut state, step)?;
        Ok((0..self.nodes.len())
            .map(|i| (solved.heads[i] - network.nodes[i].elevation) * MperFT)
            .collect())
    }

    /// Advances tank levels over a step of `dt_s` seconds with the last solution's flows.
    pub fn advance(&mut self, dt_s: usize) {
        self.state.update_tanks(&self.network, dt_s);
    }

    /// Pressure at a node, m (tank: water level above its bottom).
    pub fn pressure_m(&self, node: usize) -> f64 {
        (self.state.heads[node] - self.network.nodes[node].elevation) * MperFT
    }

    /// Hydraulic head at a node, m.
    pub fn head_m(&self, node: usize) -> f64 {
        self.state.heads[node] * MperFT
    }

    /// Flow in a link from its start node to its end node, m³/h.
    pub fn flow_m3h(&self, link: usize) -> f64 {
        self.state.flows[link] * CMHperCFS
    }

    /// Customer demand at a junction in the last step, m³/h (emitter flow not included).
    pub fn demand_m3h(&self, node: usize) -> f64 {
        if self.nodes[node].kind == NodeKind::Junction {
            // The solver reports a junction's demand with its emitter flow included.
            (self.state.demands[node] - self.state.emitter_flows[node]) * CMHperCFS
        } else {
            0.0
        }
    }

    /// Water volume in a tank at its current level, m³ (0 for other nodes, and for tanks
    /// described by a volume curve, which epanet-rs 0.2 does not support).
    pub fn tank_volume_m3(&self, node: usize) -> f64 {
        match &self.network.nodes[node].node_type {
            NodeType::Tank(t) if t.volume_curve.is_none() => {
                t.volume_at_head(self.state.heads[node]) * M3perFT3
            }
            _ => 0.0,
        }
    }

    /// Emitter (leak) flow at a junction in the last step, m³/h.
    pub fn emitter_m3h(&self, node: usize) -> f64 {
        if self.nodes[node].kind == NodeKind::Junction {
            self.state.emitter_flows[node] * CMHperCFS
        } else {
            0.0
        }
    }
}

/// Sets junction `id`'s emitter coefficient C in `network`, in m³/h per m^N1.
fn set_emitter_on(network: &mut Network, id: &str, c_m3h: f64) -> Result<(), TwinError> {
    let opts = &network.options;
    let n1 = 1.0 / opts.emitter_exponent;
    // To the .inp's own units: flow units per (pressure unit)^N1.
    let flow_factor = opts.flow_units.per_cfs() / CMHperCFS;
    let metres_per_pressure_unit = match opts.unit_system {
        UnitSystem::SI => 1.0,
        UnitSystem::US => MperFT / PSIperFT,
    };
    let c_user = c_m3h * flow_factor * metres_per_pressure_unit.powf(n1);
    network
        .update_junction(
            id,
            &JunctionUpdate {
                emitter_coefficient: Some(c_user),
                ..JunctionUpdate::default()
            },
        )
        .map_err(|e| TwinError::Solver(format!("emitter at {id}: {e}")))
}

/// The clock and demands of one step.
#[derive(Debug, Clone, Copy)]
pub struct StepInput<'a> {
    /// Seconds after the first step (the time of `TIME` controls).
    pub elapsed_s: usize,
    /// Indexes the `.inp` patterns.
    pub pattern_time_s: usize,
    /// Each junction's pattern demand is multiplied by `factor[node]` …
    pub factor: &'a [f64],
    /// … and `extra_m3h[node]` is added to it.
    pub extra_m3h: &'a [f64],
}

/// One step's solution of `network` from `state` (the last step's, brought up to date with
/// the network's changes) with the engine's solver, nodes and links: the body of
/// [`Engine::solve`], shared with its what-if.
fn solve_step(
    (solver, nodes, links): (&HydraulicSolver, &[NodeInfo], &[LinkInfo]),
    network: &mut Network,
    state: &mut SolverState,
    step: &StepInput<'_>,
) -> Result<SolverState, TwinError> {
    let StepInput {
        elapsed_s,
        pattern_time_s,
        factor,
        extra_m3h,
    } = *step;
    if network.properties_version != state.properties_version {
        // The update restarts changed emitters from a guess of 1 cfs; a leak that grows a
        // little each step converges better from its last flow.
        let previous = state.emitter_flows.clone();
        state.update_with_network_changes(network);
        for (now, before) in state.emitter_flows.iter_mut().zip(previous) {
            if *now > 0.0 && before > 0.0 {
                *now = before;
            }
        }
        // Valve settings live in the state too, and the update above leaves them alone.
        for (i, l) in links.iter().enumerate() {
            if l.prv {
                state.settings[i] = network.links[i].initial_setting();
            }
        }
    }
    state.apply_patterns(network, pattern_time_s);
    for (i, n) in nodes.iter().enumerate() {
        if n.kind == NodeKind::Junction {
            state.demands[i] = state.demands[i] * factor[i] + extra_m3h[i] / CMHperCFS;
        }
    }
    state.apply_controls(network, elapsed_s);
    solver
        .solve(network, state)
        .map_err(|e| TwinError::Solver(format!("at pattern time {pattern_time_s} s: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_field_is_reported_with_its_line() {
        let text = "[JUNCTIONS]\n;ID Elev Demand\n J1  10  1\n J2  abc  3\n[RESERVOIRS]\n R1 50\n\
                    [PIPES]\n P1 R1 J1 100 100 100 0 Open\n P2 J1 J2 100 100 100 0 Open\n[END]\n";
        let e = Engine::from_inp_text(text, "bad.inp")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad.inp: line 4 (`J2  abc  3`)") && e.contains("abc"),
            "{e}"
        );
    }

    #[test]
    fn the_built_in_network_loads() {
        let e = Engine::from_inp_text(crate::twin::BUILTIN_INP, "built-in").unwrap();
        assert_eq!(e.nodes().len(), 20);
        assert!((e.emitter_exponent() - 0.5).abs() < 1e-12);
        assert_eq!(e.pattern_span_s(), 86_400);
    }
}
