//! The demo's field devices: one RTU per DMA (inlet flow and pressures), smart meters
//! (cumulative registers uploaded in batches) and a water-quality station, publishing native
//! JSON uplinks (CONTRACTS §5) with QoS 1 over MQTT — the same wire a real device uses.
//!
//! On start it back-fills history (one batched upload per device and hour, like a logger
//! catching up), then publishes live readings every `live_interval`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use rand::rngs::StdRng;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use tokio::sync::watch;
use waterline_core::codec::{NativeReading, NativeUplink, encode_native};
use waterline_core::{DeviceId, SensorId};

use crate::model::{self, DemoDma, InjectedLeak};

/// How the demo devices behave.
#[derive(Debug, Clone)]
pub struct DemoSimConfig {
    pub broker_host: String,
    pub broker_port: u16,
    pub topic_prefix: String,
    pub client_id: String,
    pub seed: u64,
    /// Hours of history published at start.
    pub backfill_hours: u32,
    /// Wall-clock time between live uploads.
    pub live_interval: Duration,
    /// Local time offset used for the demand pattern (the demo network is in Asia/Shanghai).
    pub utc_offset_h: i32,
}

impl Default for DemoSimConfig {
    fn default() -> Self {
        Self {
            broker_host: "127.0.0.1".into(),
            broker_port: 1883,
            topic_prefix: "waterline".into(),
            client_id: "waterline-demo-devices".into(),
            seed: 2018,
            backfill_hours: 48,
            live_interval: Duration::from_secs(10),
            utc_offset_h: 8,
        }
    }
}

/// What the simulator did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    pub messages: u64,
    pub readings: u64,
}

/// Why the simulator stopped early.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("MQTT client request failed: {0}")]
    Client(#[from] rumqttc::ClientError),
}

/// The `network.toml` describing the demo devices' sensors.
pub fn network_toml() -> String {
    let mut s = String::from(
        "# The Waterline demo network: three DMAs, smart meters and one quality station.\n\
         timezone = \"Asia/Shanghai\"\n",
    );
    for d in model::demo_dmas() {
        let id = &d.id;
        let meters: Vec<String> = (1..=d.meters)
            .map(|i| format!("\"M-{id}-{i:02}\""))
            .collect();
        s.push_str(&format!(
            "\n[[dma]]\nid = \"{id}\"\nname = \"District {id}\"\ninlets = [\"{id}-inlet-flow\"]\n\
             customer_meters = [{}]\nmains_km = {:.1}\nconnections = {}\n\
             azp_sensor = \"{id}-azp-p\"\ncritical_sensor = \"{id}-crit-p\"\n\
             min_service_pressure_m = 14.0\nmax_service_pressure_m = 80.0\n",
            meters.join(", "),
            d.mean_demand_m3h / 3.0,
            (d.mean_demand_m3h * 25.0) as u32,
        ));
        s.push_str(&format!(
            "\n[[sensor]]\nid = \"{id}-inlet-flow\"\nkind = \"flow\"\nunit = \"m3/h\"\ndma = \"{id}\"\n\
             \n[[sensor]]\nid = \"{id}-inlet-p\"\nkind = \"pressure\"\nunit = \"m\"\ndma = \"{id}\"\n\
             \n[[sensor]]\nid = \"{id}-azp-p\"\nkind = \"pressure\"\nunit = \"bar\"\ndma = \"{id}\"\n\
             \n[[sensor]]\nid = \"{id}-crit-p\"\nkind = \"pressure\"\nunit = \"m\"\ndma = \"{id}\"\n"
        ));
        for i in 1..=d.meters {
            s.push_str(&format!(
                "\n[[sensor]]\nid = \"M-{id}-{i:02}\"\nkind = \"volume\"\nunit = \"m3\"\ndma = \"{id}\"\n"
            ));
        }
    }
    s.push_str(
        "\n[[sensor]]\nid = \"S1-chlorine\"\nkind = \"chlorine\"\nunit = \"mg/L\"\nstation = \"S1\"\nrole = \"quality\"\nalarm_low = 0.05\nalarm_high = 2.0\nresolution = 0.01\n\
         \n[[sensor]]\nid = \"S1-turbidity\"\nkind = \"turbidity\"\nunit = \"NTU\"\nstation = \"S1\"\nrole = \"quality\"\nalarm_high = 1.0\nresolution = 0.01\n\
         \n[[sensor]]\nid = \"S1-ph\"\nkind = \"ph\"\nunit = \"pH\"\nstation = \"S1\"\nrole = \"quality\"\nalarm_low = 6.5\nalarm_high = 8.5\nresolution = 0.01\n\
         \n[[sensor]]\nid = \"S1-temperature\"\nkind = \"temperature\"\nunit = \"degC\"\nstation = \"S1\"\nrole = \"context\"\nresolution = 0.1\n",
    );
    s
}

/// The device fleet and its running state (meter registers).
struct Fleet {
    dmas: Vec<DemoDma>,
    leaks: Vec<InjectedLeak>,
    registers: BTreeMap<String, f64>,
    last_meter_time: Option<DateTime<Utc>>,
    rng: StdRng,
    utc_offset_h: i32,
}

fn sid(s: &str) -> SensorId {
    SensorId::parse(s).expect("demo sensor ids are valid")
}

impl Fleet {
    fn new(cfg: &DemoSimConfig, now: DateTime<Utc>) -> Self {
        let dmas = model::demo_dmas();
        let mut registers = BTreeMap::new();
        for d in &dmas {
            for i in 1..=d.meters {
                registers.insert(format!("M-{}-{i:02}", d.id), 1_000.0 * i as f64);
            }
        }
        // A leak appears in DMA B ten hours before the demo starts, so the charts show it.
        let leaks = vec![InjectedLeak {
            dma: "B".into(),
            start: now - TimeDelta::hours(10),
            flow_at_50m_m3h: 6.0,
        }];
        Self {
            dmas,
            leaks,
            registers,
            last_meter_time: None,
            rng: model::rng(cfg.seed),
            utc_offset_h: cfg.utc_offset_h,
        }
    }

    /// RTU readings of every DMA at `t`.
    fn rtu(&mut self, t: DateTime<Utc>) -> Vec<(String, Vec<NativeReading>)> {
        let mut out = Vec::new();
        for d in &self.dmas {
            let s = model::evaluate(d, &self.leaks, t, self.utc_offset_h);
            let id = &d.id;
            let r = |name: String, value: f64| NativeReading {
                sensor: sid(&name),
                value: (value * 1000.0).round() / 1000.0,
                unit: None,
                time: t,
            };
            let flow = s.inflow_m3h * (1.0 + model::noise(&mut self.rng, 0.01));
            let azp_bar = s.azp_pressure_m / 10.197_162;
            out.push((
                format!("RTU-{id}"),
                vec![
                    r(format!("{id}-inlet-flow"), flow),
                    r(
                        format!("{id}-inlet-p"),
                        s.inlet_pressure_m + model::noise(&mut self.rng, 0.1),
                    ),
                    r(
                        format!("{id}-azp-p"),
                        azp_bar + model::noise(&mut self.rng, 0.01),
                    ),
                    r(
                        format!("{id}-crit-p"),
                        s.critical_pressure_m + model::noise(&mut self.rng, 0.1),
                    ),
                ],
            ));
        }
        out
    }

    /// Advances every meter register to `t` and returns their readings.
    fn meters(&mut self, t: DateTime<Utc>) -> Vec<(String, NativeReading)> {
        let dt_h = self
            .last_meter_time
            .map(|p| (t - p).num_milliseconds() as f64 / 3.6e6)
            .unwrap_or(0.0)
            .max(0.0);
        self.last_meter_time = Some(t);
        let mut out = Vec::new();
        for d in &self.dmas {
            let s = model::evaluate(d, &self.leaks, t, self.utc_offset_h);
            for i in 1..=d.meters {
                let name = format!("M-{}-{i:02}", d.id);
                let share = s.customer_m3h / d.meters as f64;
                let reg = self.registers.get_mut(&name).expect("registered");
                *reg += share * dt_h * (1.0 + model::noise(&mut self.rng, 0.05)).max(0.0);
                out.push((
                    format!("MTR-{}-{i:02}", d.id),
                    NativeReading {
                        sensor: sid(&name),
                        value: (*reg * 1000.0).round() / 1000.0,
                        unit: None,
                        time: t,
                    },
                ));
            }
        }
        out
    }

    /// Quality-station readings at `t`.
    fn quality(&mut self, t: DateTime<Utc>) -> Vec<NativeReading> {
        let hour = (t.timestamp() as f64 / 3600.0) % 24.0;
        let cl = 0.55
            + 0.05 * (hour / 24.0 * std::f64::consts::TAU).sin()
            + model::noise(&mut self.rng, 0.01);
        let values = [
            ("S1-chlorine", cl),
            (
                "S1-turbidity",
                0.18 + model::noise(&mut self.rng, 0.01).abs(),
            ),
            ("S1-ph", 7.4 + model::noise(&mut self.rng, 0.02)),
            (
                "S1-temperature",
                14.0 + 1.5 * (hour / 24.0 * std::f64::consts::TAU).cos(),
            ),
        ];
        values
            .into_iter()
            .map(|(s, v)| NativeReading {
                sensor: sid(s),
                value: (v * 1000.0).round() / 1000.0,
                unit: None,
                time: t,
            })
            .collect()
    }
}

struct Publisher {
    client: AsyncClient,
    prefix: String,
    stats: SimStats,
}

impl Publisher {
    async fn send(&mut self, device: &str, readings: Vec<NativeReading>) -> Result<(), SimError> {
        if readings.is_empty() {
            return Ok(());
        }
        let uplink = NativeUplink {
            device: DeviceId::parse(device).expect("demo device ids are valid"),
            time: None,
            readings,
            rejected: Vec::new(),
        };
        let n = uplink.readings.len() as u64;
        let topic = format!("{}/{device}/up", self.prefix);
        self.client
            .publish(topic, QoS::AtLeastOnce, false, encode_native(&uplink))
            .await?;
        self.stats.messages += 1;
        self.stats.readings += n;
        Ok(())
    }
}

/// Publishes back-filled history, then live readings until `shutdown`.
pub async fn run(
    cfg: DemoSimConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<SimStats, SimError> {
    let mut opts = MqttOptions::new(
        cfg.client_id.clone(),
        cfg.broker_host.clone(),
        cfg.broker_port,
    );
    opts.set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024);
    let (client, mut eventloop) = AsyncClient::new(opts, 256);
    let poller = tokio::spawn(async move {
        loop {
            if let Err(e) = eventloop.poll().await {
                tracing::debug!(error = %e, "simulator MQTT connection error; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });

    let now = Utc::now();
    let mut fleet = Fleet::new(&cfg, now);
    let mut publisher = Publisher {
        client: client.clone(),
        prefix: cfg.topic_prefix.clone(),
        stats: SimStats::default(),
    };

    // History: one batched upload per device and hour (loggers and NB-IoT meters catching up).
    let start = (now - TimeDelta::hours(cfg.backfill_hours as i64))
        .duration_trunc(TimeDelta::hours(1))
        .unwrap_or(now);
    let mut hour = start;
    while hour < now && !*shutdown.borrow() {
        let mut rtu: BTreeMap<String, Vec<NativeReading>> = BTreeMap::new();
        let mut meters: BTreeMap<String, Vec<NativeReading>> = BTreeMap::new();
        let mut quality = Vec::new();
        let mut t = hour;
        while t < hour + TimeDelta::hours(1) && t < now {
            for (dev, rs) in fleet.rtu(t) {
                rtu.entry(dev).or_default().extend(rs);
            }
            if t.timestamp() % 900 == 0 {
                for (dev, r) in fleet.meters(t) {
                    meters.entry(dev).or_default().push(r);
                }
            }
            if t.timestamp() % 300 == 0 {
                quality.extend(fleet.quality(t));
            }
            t += TimeDelta::minutes(1);
        }
        for (dev, rs) in rtu.into_iter().chain(meters) {
            publisher.send(&dev, rs).await?;
        }
        publisher.send("QS-1", quality).await?;
        hour += TimeDelta::hours(1);
    }
    tracing::info!(
        messages = publisher.stats.messages,
        readings = publisher.stats.readings,
        "demo history published"
    );

    let mut ticker = tokio::time::interval(cfg.live_interval);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
        let t = Utc::now();
        for (dev, rs) in fleet.rtu(t) {
            publisher.send(&dev, rs).await?;
        }
        for (dev, r) in fleet.meters(t) {
            publisher.send(&dev, vec![r]).await?;
        }
        let q = fleet.quality(t);
        publisher.send("QS-1", q).await?;
    }
    let _ = client.try_disconnect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    poller.abort();
    Ok(publisher.stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use waterline_core::Network;

    #[test]
    fn demo_network_description_is_valid_and_complete() {
        let net = Network::parse(&network_toml()).unwrap();
        assert_eq!(net.dmas.len(), 3);
        assert_eq!(net.sensors.len(), 3 * (4 + 6) + 4);
        let cfg = DemoSimConfig::default();
        let mut fleet = Fleet::new(&cfg, Utc::now());
        let t = Utc::now();
        for (_, rs) in fleet.rtu(t) {
            for r in rs {
                assert!(net.sensor(&r.sensor).is_some(), "{}", r.sensor);
            }
        }
        for (_, r) in fleet.meters(t) {
            assert!(net.sensor(&r.sensor).is_some(), "{}", r.sensor);
        }
        for r in fleet.quality(t) {
            assert!(net.sensor(&r.sensor).is_some(), "{}", r.sensor);
        }
    }

    #[test]
    fn meter_registers_only_count_up() {
        let cfg = DemoSimConfig::default();
        let t0 = Utc::now();
        let mut fleet = Fleet::new(&cfg, t0);
        let a = fleet.meters(t0);
        let b = fleet.meters(t0 + TimeDelta::hours(1));
        for ((_, x), (_, y)) in a.iter().zip(&b) {
            assert!(y.value >= x.value);
        }
        assert!(b.iter().zip(&a).any(|((_, y), (_, x))| y.value > x.value));
    }
}
