//! The twin's field devices without a broker: every instrument has a device, every message
//! decodes with ingest's codecs to sensors the fleet's `network.toml` describes, meter
//! registers integrate the twin's consumption, and misbehaviour is in the truth.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use waterline_core::codec::chirpstack::{ProfileCodecs, decode_uplink};
use waterline_core::codec::{cjt188, decode_native, sparkplug};
use waterline_core::{Network, SensorKind};
use waterline_sim::field::fleet::{Fleet, FleetConfig, Role, Wire};
use waterline_sim::field::misbehave::Misbehaviour;
use waterline_sim::field::traffic::{Clock, Outgoing, Traffic};
use waterline_sim::twin::export::{self, SimRequest};
use waterline_sim::twin::instruments::Instruments;
use waterline_sim::twin::{Twin, inp::SensorTags};

fn built_in(days: u32, seed: u64) -> (Twin, SensorTags) {
    export::build(&SimRequest {
        network: None,
        days,
        seed,
        ideal: false,
        scenario: None,
        start: None,
        step_minutes: 5,
        export: PathBuf::new(),
        progress: false,
    })
    .unwrap()
}

/// Runs the twin through the fleet; returns every message sent and the traffic.
fn run(
    twin: &mut Twin,
    tags: &SensorTags,
    ideal: bool,
    m: Misbehaviour,
    clock: Clock,
) -> (Vec<Outgoing>, Traffic, Network) {
    let mut instruments = Instruments::new(twin, tags, ideal).unwrap();
    let fleet = Fleet::new(&instruments, twin, FleetConfig::default()).unwrap();
    let network = Network::parse(&fleet.network_toml(twin, &instruments)).unwrap();
    let c = twin.config().clone();
    let mut traffic =
        Traffic::new(fleet, m, c.seed, c.start, twin.time_of(c.steps), c.step_s).record_expected();
    let mut out = traffic.births(c.start);
    let mut read = Vec::new();
    let mut last = c.start;
    twin.run(|step| {
        instruments.read(&step, &mut read);
        traffic.step(step.index, step.time, &read, clock, &mut out);
        last = step.time;
        Ok(())
    })
    .unwrap();
    traffic.finish(last, clock, &mut out);
    (out, traffic, network)
}

/// One decoded reading: sensor, time (`None`: stamped by ingest on receipt), value.
type Decoded = (String, Option<DateTime<Utc>>, f64);

/// Decodes a message as ingest would route it.
fn decode(m: &Outgoing) -> Result<Vec<Decoded>, String> {
    let t = m.topic.as_str();
    if let Some(rest) = t.strip_prefix("waterline/") {
        let device = rest.strip_suffix("/up").unwrap();
        let up = decode_native(device, &m.payload).map_err(|e| e.to_string())?;
        return Ok(up
            .readings
            .iter()
            .map(|r| (r.sensor.to_string(), Some(r.time), r.value))
            .collect());
    }
    if t.starts_with("application/") {
        let eui = t.split('/').nth(3).unwrap();
        let up =
            decode_uplink(eui, &m.payload, &ProfileCodecs::new()).map_err(|e| e.to_string())?;
        return Ok(up
            .readings
            .iter()
            .map(|r| (r.sensor.to_string(), Some(r.time), r.value))
            .collect());
    }
    if t.starts_with("cjt188/") {
        let f = cjt188::decode_frame(&m.payload).map_err(|e| e.to_string())?;
        let r = f.reading.ok_or("no meter data")?;
        return Ok(vec![(
            format!("cjt188-{}", f.address),
            None,
            r.cumulative_m3,
        )]);
    }
    if t.starts_with("spBv1.0/") {
        let parts: Vec<&str> = t.split('/').collect();
        let p = sparkplug::decode_payload(&m.payload).map_err(|e| e.to_string())?;
        let Some(device) = parts.get(4) else {
            return Ok(Vec::new()); // node birth or death
        };
        let dev = sparkplug::device_id(parts[1], parts[3], Some(device)).unwrap();
        let sensor = sparkplug::sensor_id(&dev, "Volume").unwrap().to_string();
        return Ok(p
            .metrics
            .iter()
            .map(|x| {
                let v = match x.value {
                    Some(sparkplug::MetricValue::DoubleValue(v)) => v,
                    ref other => panic!("unexpected value {other:?}"),
                };
                let ts = x.timestamp.or(p.timestamp).unwrap() as i64;
                (sensor.clone(), DateTime::from_timestamp_millis(ts), v)
            })
            .collect());
    }
    Err(format!("unrouted topic {t}"))
}

#[test]
fn every_instrument_has_one_device_and_the_network_describes_every_wire_sensor() {
    let (twin, tags) = built_in(1, 3);
    let instruments = Instruments::new(&twin, &tags, false).unwrap();
    let fleet = Fleet::new(&instruments, &twin, FleetConfig::default()).unwrap();
    let mut seen = BTreeMap::new();
    for d in &fleet.devices {
        for (i, _) in &d.sensors {
            *seen.entry(*i).or_insert(0) += 1;
        }
    }
    assert_eq!(seen.len(), instruments.len());
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    let net = Network::parse(&fleet.network_toml(&twin, &instruments)).unwrap();
    for d in &fleet.devices {
        for (_, id) in &d.sensors {
            let s = net
                .sensor(id)
                .unwrap_or_else(|| panic!("{id} not described"));
            if d.role == Role::Meter {
                assert_eq!(s.kind, SensorKind::Volume, "{id}");
                // A DMA's customer meters name the wire ids.
                let dma = net
                    .dmas
                    .iter()
                    .find(|m| Some(&m.id) == s.dma.as_ref())
                    .unwrap();
                assert!(dma.customer_meters.contains(id), "{id}");
            }
        }
    }
    let by = fleet.meters_by_protocol();
    assert_eq!(by.len(), 4, "{by:?}");
    assert!(fleet.devices.iter().any(|d| d.role == Role::QualityStation));
    assert!(fleet.devices.iter().any(|d| d.role == Role::PressureLogger));
    assert!(!fleet.nodes.is_empty());
}

#[test]
fn well_behaved_devices_send_exactly_the_expected_readings_in_every_format() {
    let (mut twin, tags) = built_in(1, 5);
    let (out, traffic, network) = run(
        &mut twin,
        &tags,
        false,
        Misbehaviour::none(),
        Clock::RealTime,
    );
    let expected = traffic.expected().unwrap();
    let mut got = BTreeSet::new();
    let mut topics = BTreeSet::new();
    let mut cjt = 0;
    for m in &out {
        topics.insert(m.topic.split('/').next().unwrap().to_owned());
        for (sensor, time, value) in decode(m).unwrap() {
            let id = waterline_core::SensorId::parse(sensor.as_str()).unwrap();
            assert!(network.sensor(&id).is_some(), "{sensor} not described");
            match time {
                Some(t) => {
                    assert_eq!(expected.get(&(id.clone(), t)), Some(&value), "{sensor} {t}");
                    got.insert((id, t));
                }
                None => cjt += 1,
            }
        }
    }
    assert_eq!(got.len(), expected.len());
    assert!(cjt > 0);
    let all: BTreeSet<&str> = ["waterline", "spBv1.0", "application", "cjt188"].into();
    assert_eq!(
        topics.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        all
    );
    let s = traffic.stats();
    assert_eq!(
        (s.duplicates, s.late, s.malformed, s.cjt188_not_live),
        (0, 0, 0, 0)
    );
    assert!(traffic.truth().is_empty(), "{:?}", traffic.truth());
}

#[test]
fn the_same_seed_sends_the_same_messages() {
    let messages = || {
        let (mut twin, tags) = built_in(1, 9);
        let (out, traffic, _) = run(
            &mut twin,
            &tags,
            false,
            Misbehaviour::default(),
            Clock::Backfill,
        );
        (out, traffic.truth().to_vec())
    };
    let (a, b) = (messages(), messages());
    assert!(!a.0.is_empty());
    assert!(a == b, "two runs of one seed differ");
}

#[test]
fn meter_registers_integrate_the_twins_consumption() {
    let (mut twin, tags) = built_in(1, 7);
    let (out, traffic, _) = run(
        &mut twin,
        &tags,
        true,
        Misbehaviour::none(),
        Clock::Backfill,
    );
    // Ideal instruments: consumption exact. One native meter's hourly register steps.
    let meter = traffic
        .fleet()
        .devices
        .iter()
        .find(|d| d.role == Role::Meter && d.wire == Wire::Native)
        .unwrap()
        .clone();
    let sensor = meter.sensors[0].1.to_string();
    let mut reads: Vec<(DateTime<Utc>, f64)> = out
        .iter()
        .flat_map(|m| decode(m).unwrap())
        .filter(|(s, ..)| *s == sensor)
        .map(|(_, t, v)| (t.unwrap(), v))
        .collect();
    reads.sort_by_key(|r| r.0);
    assert_eq!(reads.len(), 24, "{reads:?}");
    // The same junction's consumption over the day, from the export's rate instrument.
    let (mut twin2, tags2) = built_in(1, 7);
    let mut instruments = Instruments::new(&twin2, &tags2, true).unwrap();
    let idx = meter.sensors[0].0;
    let mut litres = 0.0;
    let mut read = Vec::new();
    twin2
        .run(|step| {
            instruments.read(&step, &mut read);
            if step.time >= reads[0].0 && step.time < reads[23].0 {
                litres += read.iter().find(|m| m.sensor == idx).unwrap().value * 5.0 / 60.0;
            }
            Ok(())
        })
        .unwrap();
    let used = reads[23].1 - reads[0].1;
    assert!(
        (used - litres / 1000.0).abs() < 0.01 + 0.001 * used,
        "register {used} m3 vs consumption {} m3",
        litres / 1000.0
    );
    // No CJ/T 188 frame outside real time: their meters are counted, not sent.
    assert!(traffic.stats().cjt188_not_live > 0);
    assert!(!out.iter().any(|m| m.topic.starts_with("cjt188/")));
}

#[test]
fn misbehaviour_is_sent_and_written_to_the_truth() {
    let (mut twin, tags) = built_in(2, 11);
    let m = Misbehaviour {
        duplicate_rate: 0.05,
        late_rate: 0.2,
        out_of_order_rate: 0.3,
        malformed_rate: 0.02,
        clock_skew_rate: 0.2,
        repeated_hours: 2,
        silent_per_week: 7.0,
        battery_decay_per_day: 30.0,
    };
    let (out, traffic, _) = run(&mut twin, &tags, false, m, Clock::RealTime);
    let s = traffic.stats();
    let truth = traffic.truth();
    let count = |kind: &str| {
        truth
            .iter()
            .filter(|l| l["type"] == kind && l["kind"] == "misbehaviour")
            .count() as u64
    };
    assert!(
        s.duplicates > 0 && s.late > 0 && s.malformed > 0 && s.out_of_order > 0,
        "{s:?}"
    );
    assert_eq!(count("duplicate"), s.duplicates);
    assert_eq!(count("late"), s.late);
    assert_eq!(count("malformed"), s.malformed);
    assert_eq!(count("out_of_order"), s.out_of_order);
    assert_eq!(count("repeated_hour"), 2);
    assert_eq!(count("silent"), 2);
    assert!(count("clock_skew") > 0);
    assert!(count("battery_low") > 0);
    // Every corrupted message fails to decode; every other one decodes.
    let bad = out.iter().filter(|m| decode(m).is_err()).count() as u64;
    assert_eq!(bad, s.malformed);
    // A late upload leaves after messages its device took later.
    let held = out.windows(2).filter(|w| w[1].due < w[0].due).count() as u64;
    assert!(held > 0 && held <= s.late, "{held} of {} late", s.late);
    // Devices that are silent send nothing in their window.
    for l in truth.iter().filter(|l| l["type"] == "silent") {
        let dev = l["device"].as_str().unwrap();
        let (a, b): (DateTime<Utc>, DateTime<Utc>) = (
            l["start"].as_str().unwrap().parse().unwrap(),
            l["end"].as_str().unwrap().parse().unwrap(),
        );
        let d = traffic
            .fleet()
            .devices
            .iter()
            .find(|d| d.id.as_str() == dev)
            .unwrap();
        let ids: BTreeSet<String> = d.sensors.iter().map(|s| s.1.to_string()).collect();
        let skew = truth
            .iter()
            .find(|l| l["type"] == "clock_skew" && l["device"] == dev)
            .map_or(0, |l| l["offset_s"].as_i64().unwrap());
        for m in &out {
            let Ok(rs) = decode(m) else { continue };
            for (s, t, _) in rs {
                if let (true, Some(t)) = (ids.contains(&s), t) {
                    let taken = t - chrono::TimeDelta::seconds(skew);
                    assert!(
                        !(a <= taken && taken < b),
                        "{dev} sent {s} at {t} while silent"
                    );
                }
            }
        }
    }
}

#[test]
fn a_modbus_station_sends_its_redundant_analysers_over_native_json() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("s.toml");
    std::fs::write(&scenario, "redundant_analysers = [\"cl2\", \"ph\"]\n").unwrap();
    let (twin, tags) = export::build(&SimRequest {
        network: None,
        days: 1,
        seed: 4,
        ideal: false,
        scenario: Some(scenario),
        start: None,
        step_minutes: 5,
        export: PathBuf::new(),
        progress: false,
    })
    .unwrap();
    let instruments = Instruments::new(&twin, &tags, false).unwrap();
    let config = FleetConfig {
        modbus_stations: 1,
        ..FleetConfig::default()
    };
    let fleet = Fleet::new(&instruments, &twin, config).unwrap();
    let ids = |d: &waterline_sim::field::fleet::Device| -> Vec<String> {
        d.sensors.iter().map(|(_, s)| s.to_string()).collect()
    };
    let stations: Vec<_> = fleet
        .devices
        .iter()
        .filter(|d| d.role == Role::QualityStation)
        .collect();
    let last = twin.quality().unwrap().stations.last().unwrap().id.clone();
    let on_modbus: Vec<_> = stations.iter().filter(|d| d.wire == Wire::Modbus).collect();
    assert_eq!(on_modbus.len(), 1);
    assert_eq!(on_modbus[0].id.as_str(), last);
    assert_eq!(ids(on_modbus[0]).len(), 6, "the register map's six signals");
    let native = stations
        .iter()
        .find(|d| d.id.as_str() == format!("QS-{last}"))
        .expect("a native device for the redundant analysers");
    assert_eq!(
        ids(native),
        [
            format!("{last}-flow"),
            format!("{last}-cl2b"),
            format!("{last}-phb")
        ],
        "the station's flow meter and second analysers"
    );
    // The other stations send all nine over native JSON, and the network describes them.
    assert!(
        stations
            .iter()
            .filter(|d| d.wire == Wire::Native)
            .all(|d| { d.id.as_str() == format!("QS-{last}") || ids(d).len() == 9 })
    );
    let network = Network::parse(&fleet.network_toml(&twin, &instruments)).unwrap();
    let phb = network
        .sensor(&waterline_core::SensorId::parse(format!("{last}-phb")).unwrap())
        .unwrap();
    assert_eq!(
        phb.redundant_of.as_ref().unwrap().to_string(),
        format!("{last}-ph")
    );
}
