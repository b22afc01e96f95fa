//! The export's sensors: what they measure, where, and how noisy they are.
//!
//! - Pressure (m): the nodes the `.inp` marks `PRESSURE SENSOR`, plus each area's AZP and
//!   critical point ([`super::zones`]).
//! - Flow (m³/h, signed from the link's start node to its end node): the links the `.inp` marks
//!   `FLOW SENSOR`, plus every link that meters an area's balance.
//! - Level (m above the tank bottom): every tank.
//! - Customer consumption (L/h, id `<junction>-amr`): the junctions the `.inp` marks `AMR`,
//!   each read as one smart meter of the junction's whole demand (leaks excluded), listed as
//!   its DMA's `customer_meters`.
//!
//! A sensor's id is its element's id (made valid for Waterline by replacing other characters
//! with `_`; a node and a link of the same id get `-p` / `-q` suffixes).
//!
//! Noise (off with `--ideal`): Gaussian, σ 0.1 m on pressure, 0.5 % + 0.02 m³/h on flow,
//! 5 mm on level, 1 % on customer meters; values are rounded to the resolution the network
//! description states (0.01 m, 0.01 m³/h, 0.001 m, 1 L/h).

use std::collections::BTreeSet;

use rand::rngs::StdRng;
use waterline_core::{SensorId, SensorKind};

use super::Twin;
use super::demand::gaussian;
use super::engine::{Engine, NodeKind};
use super::inp::SensorTags;

/// What a sensor reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Pressure at a node.
    Pressure(usize),
    /// Flow in a link.
    Flow(usize),
    /// Water level in a tank.
    Level(usize),
    /// Customer consumption at a junction (a smart meter), L/h.
    Consumption(usize),
}

/// One exported sensor.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorSpec {
    pub id: String,
    pub source: Source,
    /// Area id.
    pub dma: Option<String>,
    /// A customer meter sent as its cumulative register (m³, kind volume) instead of the rate
    /// (L/h): how the field devices report ([`crate::field`]); the export keeps the rate.
    pub register: bool,
}

impl SensorSpec {
    /// Kind of the sensor.
    pub fn kind(&self) -> SensorKind {
        match self.source {
            Source::Pressure(_) => SensorKind::Pressure,
            Source::Consumption(_) if self.register => SensorKind::Volume,
            Source::Flow(_) | Source::Consumption(_) => SensorKind::Flow,
            Source::Level(_) => SensorKind::Level,
        }
    }

    /// The sensor's unit, as `network.toml` names it.
    pub fn unit(&self) -> &'static str {
        match self.source {
            Source::Pressure(_) | Source::Level(_) => "m",
            Source::Flow(_) => "m3/h",
            Source::Consumption(_) if self.register => "m3",
            Source::Consumption(_) => "L/h",
        }
    }

    /// Resolution in the sensor's unit.
    pub fn resolution(&self) -> f64 {
        match self.source {
            Source::Pressure(_) | Source::Flow(_) => 0.01,
            Source::Level(_) => 0.001,
            Source::Consumption(_) if self.register => 0.001,
            Source::Consumption(_) => 1.0,
        }
    }

    /// The true value of the last solved step.
    pub fn true_value(&self, engine: &Engine) -> f64 {
        match self.source {
            Source::Pressure(n) | Source::Level(n) => engine.pressure_m(n),
            Source::Flow(l) => engine.flow_m3h(l),
            Source::Consumption(n) => engine.demand_m3h(n) * 1000.0,
        }
    }

    /// The standard deviation of the instrument's noise at a true value of `value`.
    pub fn noise_sd(&self, value: f64) -> f64 {
        match self.source {
            Source::Pressure(_) => 0.1,
            Source::Flow(_) => 0.005 * value.abs() + 0.02,
            Source::Level(_) => 0.005,
            Source::Consumption(_) => 0.01 * value.abs(),
        }
    }

    /// The value as the instrument reports it: with noise, rounded to its resolution.
    pub fn measure(&self, value: f64, rng: &mut StdRng) -> f64 {
        let sd = self.noise_sd(value);
        let r = self.resolution();
        ((value + sd * gaussian(rng)) / r).round() * r
    }
}

/// An area's AZP and critical sensor ids, and its customer meters.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ZonePoints {
    pub azp: Option<String>,
    pub critical: Option<String>,
    pub customer_meters: Vec<String>,
}

fn valid_id(id: &str) -> String {
    if SensorId::parse(id).is_ok() {
        return id.to_owned();
    }
    let cleaned: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-.:".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect();
    if cleaned.is_empty() {
        "_".into()
    } else {
        cleaned
    }
}

/// Chooses the sensors of a twin; also returns each area's AZP and critical sensor.
pub fn choose(
    twin: &Twin,
    tags: &SensorTags,
) -> Result<(Vec<SensorSpec>, Vec<ZonePoints>), String> {
    let engine = twin.engine();
    let zone_id = |n: usize| twin.zone_of()[n].map(|z| twin.zones()[z].id.clone());
    let mut pressure_nodes: Vec<usize> = Vec::new();
    for id in &tags.pressure {
        let n = engine
            .node_index(id)
            .ok_or_else(|| format!("marked pressure sensor `{id}` is not a node"))?;
        pressure_nodes.push(n);
    }
    let mut points = Vec::new();
    for z in twin.zones() {
        let azp = super::zones::azp_node(engine, z);
        let critical = super::zones::critical_node(engine, z);
        for n in [azp, critical].into_iter().flatten() {
            if !pressure_nodes.contains(&n) {
                pressure_nodes.push(n);
            }
        }
        points.push((azp, critical));
    }
    let mut flow_links: Vec<usize> = Vec::new();
    for id in &tags.flow {
        let l = engine
            .link_index(id)
            .ok_or_else(|| format!("marked flow sensor `{id}` is not a link"))?;
        flow_links.push(l);
    }
    for z in twin.zones() {
        for m in z.inlets.iter().chain(&z.outlets) {
            if !flow_links.contains(&m.link) {
                flow_links.push(m.link);
            }
        }
    }
    let node_ids: BTreeSet<&str> = pressure_nodes
        .iter()
        .map(|&n| engine.nodes()[n].id.as_str())
        .collect();
    let link_ids: BTreeSet<&str> = flow_links
        .iter()
        .map(|&l| engine.links()[l].id.as_str())
        .collect();
    let clash = |id: &str| node_ids.contains(id) && link_ids.contains(id);
    let node_sensor = |n: usize| {
        let id = &engine.nodes()[n].id;
        valid_id(&if clash(id) {
            format!("{id}-p")
        } else {
            id.clone()
        })
    };
    let link_sensor = |l: usize| {
        let id = &engine.links()[l].id;
        valid_id(&if clash(id) {
            format!("{id}-q")
        } else {
            id.clone()
        })
    };
    let mut out = Vec::new();
    for &n in &pressure_nodes {
        out.push(SensorSpec {
            id: node_sensor(n),
            source: Source::Pressure(n),
            dma: zone_id(n),
            register: false,
        });
    }
    for &l in &flow_links {
        // A balance meter belongs to the area it feeds, else to the one it drains.
        let dma = twin
            .zones()
            .iter()
            .find(|z| z.inlets.iter().any(|m| m.link == l))
            .or_else(|| {
                twin.zones()
                    .iter()
                    .find(|z| z.outlets.iter().any(|m| m.link == l))
            })
            .map(|z| z.id.clone());
        out.push(SensorSpec {
            id: link_sensor(l),
            source: Source::Flow(l),
            dma,
            register: false,
        });
    }
    for (n, node) in engine.nodes().iter().enumerate() {
        if node.kind == NodeKind::Tank {
            let id = valid_id(&node.id);
            if out.iter().any(|s| s.id == id) {
                continue;
            }
            out.push(SensorSpec {
                id,
                source: Source::Level(n),
                dma: None,
                register: false,
            });
        }
    }
    let mut meters = vec![Vec::new(); twin.zones().len()];
    for id in &tags.amr {
        let n = engine
            .node_index(id)
            .filter(|&n| engine.nodes()[n].kind == NodeKind::Junction)
            .ok_or_else(|| format!("marked AMR `{id}` is not a junction"))?;
        let sensor = valid_id(&format!("{id}-amr"));
        if let Some(z) = twin.zone_of()[n] {
            meters[z].push(sensor.clone());
        }
        out.push(SensorSpec {
            id: sensor,
            source: Source::Consumption(n),
            dma: zone_id(n),
            register: false,
        });
    }
    let mut seen = BTreeSet::new();
    for s in &out {
        if !seen.insert(s.id.clone()) {
            return Err(format!("two sensors would share the id `{}`", s.id));
        }
    }
    let points = points
        .into_iter()
        .zip(meters)
        .map(|((a, c), customer_meters)| ZonePoints {
            azp: a.map(node_sensor),
            critical: c.map(node_sensor),
            customer_meters,
        })
        .collect();
    Ok((out, points))
}
