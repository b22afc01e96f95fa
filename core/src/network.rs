//! The network description (`network.toml`, CONTRACTS §1): DMAs and sensors.
//!
//! [`Network::parse`] turns the text into a checked model. Every error names the line (and
//! column) it comes from: unknown keys, bad values, and cross-references such as a DMA naming
//! a sensor the file does not describe.
//!
//! Extension of the contract: `[[prv]]` tables describe the pressure-reducing valves that feed
//! DMAs, for pressure management (see [`Prv`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;

use chrono::NaiveTime;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::ids::{DmaId, PrvId, SensorId, StationId};
use crate::units::{SensorKind, Unit};

/// A checked network description.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    /// Time zone for night windows, days and reports.
    pub timezone: Tz,
    /// District metered areas, in file order.
    pub dmas: Vec<Dma>,
    /// Sensors by id.
    pub sensors: BTreeMap<SensorId, Sensor>,
    /// Pressure-reducing valves, in file order (extension).
    pub prvs: Vec<Prv>,
}

/// A pressure-reducing valve feeding a DMA (`[[prv]]`, an extension of CONTRACTS §1):
///
/// ```toml
/// [[prv]]
/// id = "PRV-B"
/// dma = "B"                                # the zone it feeds: its critical and AZP points
/// outlet_sensor = "B1"                     # pressure just downstream (P2)
/// setpoint_sensor = "RTU-B-prv-setpoint"   # optional: the writable Modbus point
/// min_setting_m = 15.0                     # optional bounds of a recommended set point
/// max_setting_m = 60.0
/// margin_m = 2.0                           # optional: kept above the critical minimum
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Prv {
    pub id: PrvId,
    /// The DMA downstream of the valve.
    pub dma: DmaId,
    /// Pressure sensor at the valve's outlet.
    pub outlet_sensor: SensorId,
    /// The set point as a (writable) point, when the valve's controller exposes it.
    pub setpoint_sensor: Option<SensorId>,
    pub min_setting_m: Option<f64>,
    pub max_setting_m: Option<f64>,
    /// Margin above the DMA's minimum service pressure kept at the critical point, m.
    pub margin_m: Option<f64>,
}

/// A district metered area (also a pressure zone).
#[derive(Debug, Clone, PartialEq)]
pub struct Dma {
    pub id: DmaId,
    pub name: Option<String>,
    /// Flow sensors whose flow enters the DMA.
    pub inlets: Vec<SensorId>,
    /// Flow sensors whose flow leaves the DMA.
    pub outlets: Vec<SensorId>,
    /// Customer meters: volume registers or flow sensors.
    pub customer_meters: Vec<SensorId>,
    pub mains_km: Option<f64>,
    pub connections: Option<u32>,
    pub service_pipe_km: Option<f64>,
    pub azp_sensor: Option<SensorId>,
    pub critical_sensor: Option<SensorId>,
    pub night_window: NightWindow,
    pub legitimate_night_use_m3h: Option<f64>,
    pub min_service_pressure_m: Option<f64>,
    pub max_service_pressure_m: Option<f64>,
    /// FAVAD leakage exponent N1 for the hour-day factor (extension; analytics default 1.0).
    pub favad_n1: Option<f64>,
    /// Household night use per connection, L/h (extension; analytics default 1.7).
    pub night_use_l_per_connection_h: Option<f64>,
    /// CJJ 92 corrections R1–R4 in percentage points, subtracted from the comprehensive
    /// leakage rate to give the assessed leakage rate (extension; default 0 each).
    pub cjj92_corrections_percent: [f64; 4],
}

/// What a quality-station signal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignalRole {
    /// May raise quality events.
    Quality,
    /// Explains changes; never alarms by itself.
    Context,
}

impl SignalRole {
    /// The name used in `network.toml` and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalRole::Quality => "quality",
            SignalRole::Context => "context",
        }
    }
}

/// One sensor as the network describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sensor {
    pub id: SensorId,
    pub kind: SensorKind,
    /// The unit readings for this sensor arrive in when a payload does not say.
    pub unit: Unit,
    pub dma: Option<DmaId>,
    pub station: Option<StationId>,
    pub role: Option<SignalRole>,
    /// Hard set points, in the sensor's unit.
    pub alarm_low: Option<f64>,
    pub alarm_high: Option<f64>,
    /// The milder tiers' set points, in the sensor's unit (extension: `advisory_low`,
    /// `advisory_high`, `alert_low`, `alert_high`; each replaces the default of its tier and
    /// side, and must lie on the safe side of the severer tiers).
    pub advisory_low: Option<f64>,
    pub advisory_high: Option<f64>,
    pub alert_low: Option<f64>,
    pub alert_high: Option<f64>,
    /// Instrument resolution, in the sensor's unit.
    pub resolution: Option<f64>,
    /// A second analyser of the same parameter at the same station (extension:
    /// `redundant_of = "<primary sensor>"`): the two are compared to find drift, and this one
    /// stands in for the primary when the primary fails.
    pub redundant_of: Option<SensorId>,
}

/// A local-time window `HH:MM-HH:MM`; it may wrap past midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NightWindow {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl Default for NightWindow {
    fn default() -> Self {
        Self {
            start: NaiveTime::from_hms_opt(2, 0, 0).expect("valid time"),
            end: NaiveTime::from_hms_opt(4, 0, 0).expect("valid time"),
        }
    }
}

impl NightWindow {
    /// Parses `HH:MM-HH:MM`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("night_window `{s}` is not of the form HH:MM-HH:MM"))?;
        let t = |x: &str| {
            NaiveTime::parse_from_str(x.trim(), "%H:%M")
                .map_err(|_| format!("night_window `{s}`: `{x}` is not a time HH:MM"))
        };
        let (start, end) = (t(a)?, t(b)?);
        if start == end {
            return Err(format!("night_window `{s}` is empty"));
        }
        Ok(Self { start, end })
    }

    /// Whether local time `t` lies in the window (start inclusive, end exclusive).
    pub fn contains(&self, t: NaiveTime) -> bool {
        if self.start < self.end {
            t >= self.start && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }
}

impl fmt::Display for NightWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            self.start.format("%H:%M"),
            self.end.format("%H:%M")
        )
    }
}

/// A problem in a network description, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct NetworkError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    timezone: Option<Spanned<String>>,
    #[serde(default)]
    dma: Vec<Spanned<RawDma>>,
    #[serde(default)]
    sensor: Vec<Spanned<RawSensor>>,
    #[serde(default)]
    prv: Vec<Spanned<RawPrv>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrv {
    id: Spanned<PrvId>,
    dma: Spanned<DmaId>,
    outlet_sensor: Spanned<SensorId>,
    setpoint_sensor: Option<Spanned<SensorId>>,
    min_setting_m: Option<Spanned<f64>>,
    max_setting_m: Option<Spanned<f64>>,
    margin_m: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDma {
    id: Spanned<DmaId>,
    name: Option<String>,
    #[serde(default)]
    inlets: Vec<Spanned<SensorId>>,
    #[serde(default)]
    outlets: Vec<Spanned<SensorId>>,
    #[serde(default)]
    customer_meters: Vec<Spanned<SensorId>>,
    mains_km: Option<Spanned<f64>>,
    connections: Option<Spanned<i64>>,
    service_pipe_km: Option<Spanned<f64>>,
    azp_sensor: Option<Spanned<SensorId>>,
    critical_sensor: Option<Spanned<SensorId>>,
    night_window: Option<Spanned<String>>,
    legitimate_night_use_m3h: Option<Spanned<f64>>,
    min_service_pressure_m: Option<Spanned<f64>>,
    max_service_pressure_m: Option<Spanned<f64>>,
    favad_n1: Option<Spanned<f64>>,
    night_use_l_per_connection_h: Option<Spanned<f64>>,
    cjj92_r1: Option<Spanned<f64>>,
    cjj92_r2: Option<Spanned<f64>>,
    cjj92_r3: Option<Spanned<f64>>,
    cjj92_r4: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSensor {
    id: Spanned<SensorId>,
    kind: Spanned<SensorKind>,
    unit: Spanned<Unit>,
    dma: Option<Spanned<DmaId>>,
    station: Option<StationId>,
    role: Option<SignalRole>,
    alarm_low: Option<Spanned<f64>>,
    alarm_high: Option<Spanned<f64>>,
    advisory_low: Option<Spanned<f64>>,
    advisory_high: Option<Spanned<f64>>,
    alert_low: Option<Spanned<f64>>,
    alert_high: Option<Spanned<f64>>,
    resolution: Option<Spanned<f64>>,
    redundant_of: Option<Spanned<SensorId>>,
}

/// Turns byte spans into line/column errors.
struct Locator<'a> {
    text: &'a str,
}

impl Locator<'_> {
    fn error(&self, span: Range<usize>, message: impl Into<String>) -> NetworkError {
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        NetworkError {
            line,
            column,
            message: message.into(),
        }
    }
}

impl Network {
    /// Parses and checks a `network.toml` text.
    pub fn parse(text: &str) -> Result<Network, NetworkError> {
        let loc = Locator { text };
        let raw: RawNetwork = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            loc.error(span, e.message().trim().to_owned())
        })?;

        let timezone = match &raw.timezone {
            None => Tz::UTC,
            Some(tz) => tz.get_ref().parse::<Tz>().map_err(|_| {
                loc.error(
                    tz.span(),
                    format!("timezone `{}` is not an IANA time-zone name", tz.get_ref()),
                )
            })?,
        };

        let mut sensors = BTreeMap::new();
        for s in &raw.sensor {
            let sensor = check_sensor(&loc, s)?;
            if sensors.contains_key(&sensor.id) {
                return Err(loc.error(
                    s.get_ref().id.span(),
                    format!("sensor `{}` is described twice", sensor.id),
                ));
            }
            sensors.insert(sensor.id.clone(), sensor);
        }

        for s in &raw.sensor {
            check_redundant(&loc, s.get_ref(), &sensors)?;
        }

        let mut dmas = Vec::new();
        let mut dma_ids = BTreeSet::new();
        for d in &raw.dma {
            let dma = check_dma(&loc, d.get_ref(), &sensors)?;
            if !dma_ids.insert(dma.id.clone()) {
                return Err(loc.error(
                    d.get_ref().id.span(),
                    format!("DMA `{}` is described twice", dma.id),
                ));
            }
            dmas.push(dma);
        }

        for s in &raw.sensor {
            if let Some(dma) = &s.get_ref().dma
                && !dma_ids.contains(dma.get_ref())
            {
                return Err(loc.error(
                    dma.span(),
                    format!(
                        "sensor `{}` names DMA `{}`, which is not described",
                        s.get_ref().id.get_ref(),
                        dma.get_ref()
                    ),
                ));
            }
        }

        let mut prvs: Vec<Prv> = Vec::new();
        for p in &raw.prv {
            let prv = check_prv(&loc, p.get_ref(), &sensors, &dma_ids)?;
            if prvs.iter().any(|q| q.id == prv.id) {
                return Err(loc.error(
                    p.get_ref().id.span(),
                    format!("PRV `{}` is described twice", prv.id),
                ));
            }
            prvs.push(prv);
        }

        Ok(Network {
            timezone,
            dmas,
            sensors,
            prvs,
        })
    }

    /// The sensor with this id, if described.
    pub fn sensor(&self, id: &SensorId) -> Option<&Sensor> {
        self.sensors.get(id)
    }

    /// The DMA with this id, if described.
    pub fn dma(&self, id: &DmaId) -> Option<&Dma> {
        self.dmas.iter().find(|d| &d.id == id)
    }
}

fn finite(loc: &Locator<'_>, v: &Spanned<f64>, key: &str, min: f64) -> Result<f64, NetworkError> {
    let x = *v.get_ref();
    if !x.is_finite() || x < min {
        return Err(loc.error(
            v.span(),
            format!("{key} = {x} is out of range (must be a finite number ≥ {min})"),
        ));
    }
    Ok(x)
}

fn opt_finite(
    loc: &Locator<'_>,
    v: &Option<Spanned<f64>>,
    key: &str,
    min: f64,
) -> Result<Option<f64>, NetworkError> {
    v.as_ref().map(|v| finite(loc, v, key, min)).transpose()
}

fn check_sensor(loc: &Locator<'_>, s: &Spanned<RawSensor>) -> Result<Sensor, NetworkError> {
    let r = s.get_ref();
    let kind = *r.kind.get_ref();
    let unit = *r.unit.get_ref();
    if !kind.accepts(unit) {
        return Err(loc.error(
            r.unit.span(),
            format!(
                "sensor `{}`: unit `{unit}` does not fit kind `{kind}` (canonical `{}`)",
                r.id.get_ref(),
                kind.canonical_unit()
            ),
        ));
    }
    let any = |v: &Option<Spanned<f64>>, key: &str| opt_finite(loc, v, key, f64::NEG_INFINITY);
    let alarm_low = any(&r.alarm_low, "alarm_low")?;
    let alarm_high = any(&r.alarm_high, "alarm_high")?;
    if let (Some(lo), Some(hi), Some(span)) = (alarm_low, alarm_high, r.alarm_high.as_ref())
        && lo >= hi
    {
        return Err(loc.error(
            span.span(),
            format!(
                "sensor `{}`: alarm_high = {hi} must be above alarm_low = {lo}",
                r.id.get_ref()
            ),
        ));
    }
    let advisory_low = any(&r.advisory_low, "advisory_low")?;
    let advisory_high = any(&r.advisory_high, "advisory_high")?;
    let alert_low = any(&r.alert_low, "alert_low")?;
    let alert_high = any(&r.alert_high, "alert_high")?;
    // Each side's tiers in order of severity: a milder one must be met first.
    let tiers_high = [
        ("advisory_high", advisory_high, &r.advisory_high),
        ("alert_high", alert_high, &r.alert_high),
        ("alarm_high", alarm_high, &r.alarm_high),
    ];
    let tiers_low = [
        ("advisory_low", advisory_low, &r.advisory_low),
        ("alert_low", alert_low, &r.alert_low),
        ("alarm_low", alarm_low, &r.alarm_low),
    ];
    for (tiers, high) in [(tiers_high, true), (tiers_low, false)] {
        for (i, (milder, mv, _)) in tiers.iter().enumerate() {
            for (severer, sv, span) in &tiers[i + 1..] {
                if let (Some(m), Some(v), Some(span)) = (mv, sv, span.as_ref()) {
                    let ordered = if high { v > m } else { v < m };
                    if !ordered {
                        let word = if high { "above" } else { "below" };
                        return Err(loc.error(
                            span.span(),
                            format!(
                                "sensor `{}`: {severer} = {v} must be {word} {milder} = {m}",
                                r.id.get_ref()
                            ),
                        ));
                    }
                }
            }
        }
    }
    let resolution = opt_finite(loc, &r.resolution, "resolution", 0.0)?;
    if let (Some(0.0), Some(span)) = (resolution, r.resolution.as_ref()) {
        return Err(loc.error(span.span(), "resolution must be greater than 0"));
    }
    Ok(Sensor {
        id: r.id.get_ref().clone(),
        kind,
        unit,
        dma: r.dma.as_ref().map(|d| d.get_ref().clone()),
        station: r.station.clone(),
        role: r.role,
        alarm_low,
        alarm_high,
        advisory_low,
        advisory_high,
        alert_low,
        alert_high,
        resolution,
        redundant_of: r.redundant_of.as_ref().map(|p| p.get_ref().clone()),
    })
}

/// A redundant analyser names another sensor of the same kind at the same station, which is
/// not itself a redundant one.
fn check_redundant(
    loc: &Locator<'_>,
    r: &RawSensor,
    sensors: &BTreeMap<SensorId, Sensor>,
) -> Result<(), NetworkError> {
    let Some(primary) = &r.redundant_of else {
        return Ok(());
    };
    let id = r.id.get_ref();
    let fail = |why: String| Err(loc.error(primary.span(), format!("sensor `{id}`: {why}")));
    let name = primary.get_ref();
    if name == id {
        return fail("redundant_of names the sensor itself".into());
    }
    let Some(p) = sensors.get(name) else {
        return fail(format!(
            "redundant_of names `{name}`, which is not described"
        ));
    };
    let kind = *r.kind.get_ref();
    if p.kind != kind {
        return fail(format!(
            "redundant_of = `{name}` measures {}, not {kind}",
            p.kind
        ));
    }
    if r.station.is_none() || p.station != r.station {
        return fail(format!(
            "redundant_of = `{name}` needs both sensors at one station (`station`)"
        ));
    }
    if p.redundant_of.is_some() {
        return fail(format!(
            "redundant_of = `{name}`, which is itself redundant; name the primary"
        ));
    }
    Ok(())
}

fn check_refs(
    loc: &Locator<'_>,
    dma: &DmaId,
    key: &str,
    ids: &[Spanned<SensorId>],
    sensors: &BTreeMap<SensorId, Sensor>,
    allowed: &[SensorKind],
) -> Result<Vec<SensorId>, NetworkError> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(check_ref(loc, dma, key, id, sensors, allowed)?);
    }
    Ok(out)
}

fn check_ref(
    loc: &Locator<'_>,
    dma: &DmaId,
    key: &str,
    id: &Spanned<SensorId>,
    sensors: &BTreeMap<SensorId, Sensor>,
    allowed: &[SensorKind],
) -> Result<SensorId, NetworkError> {
    let sensor = sensors.get(id.get_ref()).ok_or_else(|| {
        loc.error(
            id.span(),
            format!(
                "DMA `{dma}`: {key} names sensor `{}`, which is not described",
                id.get_ref()
            ),
        )
    })?;
    if !allowed.contains(&sensor.kind) {
        let names: Vec<_> = allowed.iter().map(|k| k.as_str()).collect();
        return Err(loc.error(
            id.span(),
            format!(
                "DMA `{dma}`: {key} names sensor `{}` of kind `{}`; expected {}",
                id.get_ref(),
                sensor.kind,
                names.join(" or ")
            ),
        ));
    }
    Ok(id.get_ref().clone())
}

fn check_dma(
    loc: &Locator<'_>,
    r: &RawDma,
    sensors: &BTreeMap<SensorId, Sensor>,
) -> Result<Dma, NetworkError> {
    let id = r.id.get_ref().clone();
    let flow = [SensorKind::Flow];
    let pressure = [SensorKind::Pressure];
    let inlets = check_refs(loc, &id, "inlets", &r.inlets, sensors, &flow)?;
    let outlets = check_refs(loc, &id, "outlets", &r.outlets, sensors, &flow)?;
    let customer_meters = check_refs(
        loc,
        &id,
        "customer_meters",
        &r.customer_meters,
        sensors,
        &[SensorKind::Volume, SensorKind::Flow],
    )?;
    let azp_sensor = r
        .azp_sensor
        .as_ref()
        .map(|s| check_ref(loc, &id, "azp_sensor", s, sensors, &pressure))
        .transpose()?;
    let critical_sensor = r
        .critical_sensor
        .as_ref()
        .map(|s| check_ref(loc, &id, "critical_sensor", s, sensors, &pressure))
        .transpose()?;
    let night_window = match &r.night_window {
        None => NightWindow::default(),
        Some(w) => NightWindow::parse(w.get_ref()).map_err(|m| loc.error(w.span(), m))?,
    };
    let connections = match &r.connections {
        None => None,
        Some(c) => Some(u32::try_from(*c.get_ref()).map_err(|_| {
            loc.error(
                c.span(),
                format!("connections = {} must be a whole number ≥ 0", c.get_ref()),
            )
        })?),
    };
    let min_p = opt_finite(
        loc,
        &r.min_service_pressure_m,
        "min_service_pressure_m",
        0.0,
    )?;
    let max_p = opt_finite(
        loc,
        &r.max_service_pressure_m,
        "max_service_pressure_m",
        0.0,
    )?;
    if let (Some(lo), Some(hi), Some(span)) = (min_p, max_p, r.max_service_pressure_m.as_ref())
        && lo >= hi
    {
        return Err(loc.error(
            span.span(),
            format!(
                "DMA `{id}`: max_service_pressure_m = {hi} must be above min_service_pressure_m = {lo}"
            ),
        ));
    }
    let favad_n1 = opt_finite(loc, &r.favad_n1, "favad_n1", 0.0)?;
    if let (Some(n1), Some(span)) = (favad_n1, r.favad_n1.as_ref())
        && !(0.3..=2.5).contains(&n1)
    {
        return Err(loc.error(
            span.span(),
            format!("DMA `{id}`: favad_n1 = {n1} is outside 0.3–2.5"),
        ));
    }
    let night_use_l_per_connection_h = opt_finite(
        loc,
        &r.night_use_l_per_connection_h,
        "night_use_l_per_connection_h",
        0.0,
    )?;
    let any = |v: &Option<Spanned<f64>>, key: &str| opt_finite(loc, v, key, f64::NEG_INFINITY);
    let cjj92_corrections_percent = [
        any(&r.cjj92_r1, "cjj92_r1")?.unwrap_or(0.0),
        any(&r.cjj92_r2, "cjj92_r2")?.unwrap_or(0.0),
        any(&r.cjj92_r3, "cjj92_r3")?.unwrap_or(0.0),
        any(&r.cjj92_r4, "cjj92_r4")?.unwrap_or(0.0),
    ];
    Ok(Dma {
        favad_n1,
        night_use_l_per_connection_h,
        cjj92_corrections_percent,
        name: r.name.clone(),
        inlets,
        outlets,
        customer_meters,
        mains_km: opt_finite(loc, &r.mains_km, "mains_km", 0.0)?,
        connections,
        service_pipe_km: opt_finite(loc, &r.service_pipe_km, "service_pipe_km", 0.0)?,
        azp_sensor,
        critical_sensor,
        night_window,
        legitimate_night_use_m3h: opt_finite(
            loc,
            &r.legitimate_night_use_m3h,
            "legitimate_night_use_m3h",
            0.0,
        )?,
        min_service_pressure_m: min_p,
        max_service_pressure_m: max_p,
        id,
    })
}

fn check_prv(
    loc: &Locator<'_>,
    r: &RawPrv,
    sensors: &BTreeMap<SensorId, Sensor>,
    dma_ids: &BTreeSet<DmaId>,
) -> Result<Prv, NetworkError> {
    let id = r.id.get_ref().clone();
    if !dma_ids.contains(r.dma.get_ref()) {
        return Err(loc.error(
            r.dma.span(),
            format!(
                "PRV `{id}` names DMA `{}`, which is not described",
                r.dma.get_ref()
            ),
        ));
    }
    let pressure_ref = |key: &str, s: &Spanned<SensorId>| -> Result<SensorId, NetworkError> {
        match sensors.get(s.get_ref()) {
            None => Err(loc.error(
                s.span(),
                format!(
                    "PRV `{id}`: {key} names sensor `{}`, which is not described",
                    s.get_ref()
                ),
            )),
            Some(sensor) if sensor.kind != SensorKind::Pressure => Err(loc.error(
                s.span(),
                format!(
                    "PRV `{id}`: {key} names sensor `{}` of kind `{}`; expected pressure",
                    s.get_ref(),
                    sensor.kind
                ),
            )),
            Some(_) => Ok(s.get_ref().clone()),
        }
    };
    let outlet_sensor = pressure_ref("outlet_sensor", &r.outlet_sensor)?;
    // The set point is usually a Modbus point of the valve's controller, which the network
    // description need not list as a sensor.
    let setpoint_sensor = r.setpoint_sensor.as_ref().map(|s| s.get_ref().clone());
    let min_setting_m = opt_finite(loc, &r.min_setting_m, "min_setting_m", 0.0)?;
    let max_setting_m = opt_finite(loc, &r.max_setting_m, "max_setting_m", 0.0)?;
    if let (Some(lo), Some(hi), Some(span)) =
        (min_setting_m, max_setting_m, r.max_setting_m.as_ref())
        && lo >= hi
    {
        return Err(loc.error(
            span.span(),
            format!("PRV `{id}`: max_setting_m = {hi} must be above min_setting_m = {lo}"),
        ));
    }
    Ok(Prv {
        dma: r.dma.get_ref().clone(),
        outlet_sensor,
        setpoint_sensor,
        min_setting_m,
        max_setting_m,
        margin_m: opt_finite(loc, &r.margin_m, "margin_m", 0.0)?,
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
timezone = "Asia/Shanghai"

[[dma]]
id = "A"
name = "Area A"
inlets = ["p227", "p235"]
outlets = ["PUMP_1"]
customer_meters = ["m001"]
mains_km = 42.6
connections = 3000
service_pipe_km = 0.0
azp_sensor = "n54"
critical_sensor = "n12"
night_window = "02:00-04:00"
legitimate_night_use_m3h = 1.5
min_service_pressure_m = 14.0
max_service_pressure_m = 80.0

[[sensor]]
id = "p227"
kind = "flow"
unit = "m3/h"
dma = "A"

[[sensor]]
id = "p235"
kind = "flow"
unit = "L/s"

[[sensor]]
id = "PUMP_1"
kind = "flow"
unit = "m3/h"

[[sensor]]
id = "m001"
kind = "volume"
unit = "m3"

[[sensor]]
id = "n54"
kind = "pressure"
unit = "MPa"

[[sensor]]
id = "n12"
kind = "pressure"
unit = "m"

[[sensor]]
id = "cl-B"
kind = "chlorine"
unit = "mg/L"
station = "B"
role = "quality"
alarm_low = 0.05
alarm_high = 2.0
resolution = 0.01
"#;

    #[test]
    fn parses_the_contract_example() {
        let net = Network::parse(EXAMPLE).unwrap();
        assert_eq!(net.timezone, chrono_tz::Asia::Shanghai);
        assert_eq!(net.dmas.len(), 1);
        let a = &net.dmas[0];
        assert_eq!(a.inlets.len(), 2);
        assert_eq!(a.connections, Some(3000));
        assert_eq!(a.night_window.to_string(), "02:00-04:00");
        assert_eq!(net.sensors.len(), 7);
        let cl = net.sensor(&SensorId::parse("cl-B").unwrap()).unwrap();
        assert_eq!(cl.role, Some(SignalRole::Quality));
        assert_eq!(cl.resolution, Some(0.01));
        assert_eq!(
            net.sensor(&SensorId::parse("p235").unwrap()).unwrap().unit,
            Unit::LitrePerSecond
        );
    }

    fn err(text: &str) -> NetworkError {
        Network::parse(text).unwrap_err()
    }

    const PRV_NET: &str = "[[dma]]\nid = \"B\"\n[[sensor]]\nid = \"B1\"\nkind = \"pressure\"\nunit = \"m\"\n[[sensor]]\nid = \"Bq\"\nkind = \"flow\"\nunit = \"m3/h\"\n";

    #[test]
    fn tier_set_points_must_be_ordered_by_severity() {
        let sensor = |extra: &str| {
            format!("[[sensor]]\nid = \"t\"\nkind = \"turbidity\"\nunit = \"NTU\"\n{extra}")
        };
        let net = Network::parse(&sensor(
            "advisory_high = 0.5\nalert_high = 0.8\nalarm_high = 1.0\nalert_low = 0.01\n",
        ))
        .unwrap();
        let t = &net.sensors[&SensorId::parse("t").unwrap()];
        assert_eq!(
            (t.advisory_high, t.alert_high, t.alarm_high, t.alert_low),
            (Some(0.5), Some(0.8), Some(1.0), Some(0.01))
        );
        let e = err(&sensor("advisory_high = 0.9\nalert_high = 0.8\n"));
        assert_eq!(e.line, 6, "{e}");
        assert!(
            e.message
                .contains("alert_high = 0.8 must be above advisory_high = 0.9"),
            "{e}"
        );
        let e = err(&sensor("alarm_low = 0.2\nadvisory_low = 0.1\n"));
        assert!(
            e.message
                .contains("alarm_low = 0.2 must be below advisory_low = 0.1"),
            "{e}"
        );
    }

    #[test]
    fn redundant_analysers_name_their_primary() {
        let two = |kind2: &str, station2: &str, of: &str| {
            format!(
                "[[sensor]]\nid = \"cl\"\nkind = \"chlorine\"\nunit = \"mg/L\"\nstation = \"S\"\n\
                 [[sensor]]\nid = \"cl2\"\nkind = \"{kind2}\"\nunit = \"mg/L\"\n{station2}redundant_of = \"{of}\"\n"
            )
        };
        let net = Network::parse(&two("chlorine", "station = \"S\"\n", "cl")).unwrap();
        let b = &net.sensors[&SensorId::parse("cl2").unwrap()];
        assert_eq!(b.redundant_of.as_ref().map(SensorId::as_str), Some("cl"));
        assert_eq!(
            net.sensors[&SensorId::parse("cl").unwrap()].redundant_of,
            None
        );

        let e = err(&two("toc", "station = \"S\"\n", "cl"));
        assert_eq!(e.line, 11, "{e}");
        assert!(e.message.contains("measures chlorine, not toc"), "{e}");
        let e = err(&two("chlorine", "station = \"T\"\n", "cl"));
        assert!(e.message.contains("both sensors at one station"), "{e}");
        let e = err(&two("chlorine", "", "cl"));
        assert!(e.message.contains("both sensors at one station"), "{e}");
        let e = err(&two("chlorine", "station = \"S\"\n", "nope"));
        assert!(e.message.contains("`nope`, which is not described"), "{e}");
        let e = err(&two("chlorine", "station = \"S\"\n", "cl2"));
        assert!(e.message.contains("names the sensor itself"), "{e}");
    }

    #[test]
    fn parses_prvs() {
        let net = Network::parse(&format!(
            "{PRV_NET}[[prv]]\nid = \"PRV-B\"\ndma = \"B\"\noutlet_sensor = \"B1\"\nsetpoint_sensor = \"RTU-B-prv-setpoint\"\nmin_setting_m = 15\nmax_setting_m = 60.0\nmargin_m = 2.5\n"
        ))
        .unwrap();
        assert_eq!(net.prvs.len(), 1);
        let p = &net.prvs[0];
        assert_eq!(p.id.as_str(), "PRV-B");
        assert_eq!(p.dma.as_str(), "B");
        assert_eq!(p.outlet_sensor.as_str(), "B1");
        assert_eq!(
            p.setpoint_sensor.as_ref().map(SensorId::as_str),
            Some("RTU-B-prv-setpoint")
        );
        assert_eq!(
            (p.min_setting_m, p.max_setting_m, p.margin_m),
            (Some(15.0), Some(60.0), Some(2.5))
        );
        assert!(Network::parse(PRV_NET).unwrap().prvs.is_empty());
    }

    #[test]
    fn bad_prvs_name_line_and_reason() {
        let prv = |body: &str| err(&format!("{PRV_NET}[[prv]]\nid = \"V\"\n{body}"));
        // PRV_NET has 10 lines, `[[prv]]` is line 11, `id` line 12.
        let e = prv("dma = \"Z\"\noutlet_sensor = \"B1\"\n");
        assert_eq!(e.line, 13, "{e}");
        assert!(e.message.contains("DMA `Z`, which is not described"), "{e}");
        let e = prv("dma = \"B\"\noutlet_sensor = \"Bq\"\n");
        assert_eq!(e.line, 14, "{e}");
        assert!(
            e.message.contains("of kind `flow`; expected pressure"),
            "{e}"
        );
        let e = prv("dma = \"B\"\noutlet_sensor = \"nope\"\n");
        assert!(e.message.contains("`nope`, which is not described"), "{e}");
        let e = prv("dma = \"B\"\n");
        assert!(e.message.contains("outlet_sensor"), "{e}");
        let e =
            prv("dma = \"B\"\noutlet_sensor = \"B1\"\nmin_setting_m = 40\nmax_setting_m = 30\n");
        assert_eq!(e.line, 16, "{e}");
        let e = prv("dma = \"B\"\noutlet_sensor = \"B1\"\nmargin_m = -1\n");
        assert!(e.message.contains("margin_m"), "{e}");
        let e = prv("dma = \"B\"\noutlet_sensor = \"B1\"\nvalve = 1\n");
        assert!(e.message.contains("valve"), "{e}");
        let e = err(&format!(
            "{PRV_NET}[[prv]]\nid = \"V\"\ndma = \"B\"\noutlet_sensor = \"B1\"\n[[prv]]\nid = \"V\"\ndma = \"B\"\noutlet_sensor = \"B1\"\n"
        ));
        assert_eq!(e.line, 16, "{e}");
        assert!(e.message.contains("described twice"), "{e}");
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = err(
            "timezone = \"UTC\"\n[[sensor]]\nid = \"a\"\nkind = \"flow\"\nunit = \"m3/h\"\ncolour = \"red\"\n",
        );
        assert_eq!(e.line, 6, "{e}");
        assert!(e.message.contains("colour"), "{e}");
    }

    #[test]
    fn unknown_top_level_key() {
        let e = err("timezone = \"UTC\"\nzones = 3\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("zones"));
    }

    #[test]
    fn bad_values_name_line() {
        let e = err("[[sensor]]\nid = \"a\"\nkind = \"pressur\"\nunit = \"m\"\n");
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("pressur"), "{e}");

        let e = err("[[sensor]]\nid = \"a\"\nkind = \"flow\"\nunit = \"bar\"\n");
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("does not fit kind `flow`"), "{e}");

        let e = err("timezone = \"Mars/Olympus\"\n");
        assert_eq!(e.line, 1);
        assert!(e.message.contains("Mars/Olympus"));

        let e = err("[[dma]]\nid = \"A\"\nnight_window = \"2am-4am\"\n");
        assert_eq!(e.line, 3, "{e}");

        let e = err("[[dma]]\nid = \"A\"\nconnections = -5\n");
        assert_eq!(e.line, 3, "{e}");

        let e = err("[[dma]]\nid = \"A\"\nmains_km = -1.0\n");
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("mains_km"));

        let e = err(
            "[[dma]]\nid = \"A\"\nmin_service_pressure_m = 30.0\nmax_service_pressure_m = 20.0\n",
        );
        assert_eq!(e.line, 4, "{e}");

        let e = err("[[sensor]]\nid = \"bad id\"\nkind = \"flow\"\nunit = \"m3/h\"\n");
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn cross_references_are_checked() {
        let e = err("[[dma]]\nid = \"A\"\ninlets = [\"ghost\"]\n");
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("`ghost`, which is not described"), "{e}");

        let e = err(
            "[[dma]]\nid = \"A\"\ninlets = [\"p\"]\n[[sensor]]\nid = \"p\"\nkind = \"pressure\"\nunit = \"m\"\n",
        );
        assert!(
            e.message.contains("of kind `pressure`; expected flow"),
            "{e}"
        );

        let e = err("[[sensor]]\nid = \"a\"\nkind = \"flow\"\nunit = \"m3/h\"\ndma = \"Z\"\n");
        assert_eq!(e.line, 5, "{e}");
        assert!(e.message.contains("DMA `Z`"));

        let e = err(
            "[[sensor]]\nid = \"a\"\nkind = \"flow\"\nunit = \"m3/h\"\n[[sensor]]\nid = \"a\"\nkind = \"flow\"\nunit = \"m3/h\"\n",
        );
        assert_eq!(e.line, 6, "{e}");
        assert!(e.message.contains("twice"));
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let e = err("timezone = \"UTC\"\n[[dma]\n");
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn night_window_may_wrap_midnight() {
        let w = NightWindow::parse("23:00-01:00").unwrap();
        assert!(w.contains(NaiveTime::from_hms_opt(23, 30, 0).unwrap()));
        assert!(w.contains(NaiveTime::from_hms_opt(0, 30, 0).unwrap()));
        assert!(!w.contains(NaiveTime::from_hms_opt(1, 0, 0).unwrap()));
        let d = NightWindow::default();
        assert!(d.contains(NaiveTime::from_hms_opt(2, 0, 0).unwrap()));
        assert!(!d.contains(NaiveTime::from_hms_opt(4, 0, 0).unwrap()));
    }
}
