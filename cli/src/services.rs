//! Wires the crates into running services: ingest, the analytics scheduler, HTTP, shutdown on
//! a signal. Shared by `serve` and `demo`.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use waterline_core::Network;
use waterline_core::health::HealthBoard;
use waterline_dashboards::AppState;
use waterline_store::Store;

use crate::config::Config;
use crate::telemetry;

/// Reads and checks a `network.toml`, naming the file and line of any problem.
pub fn load_network(path: &Path) -> anyhow::Result<Network> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read network file {}", path.display()))?;
    Network::parse(&text).map_err(|e| anyhow::anyhow!("network file {}, {e}", path.display()))
}

/// Opens the store named by the configuration (migrating it) and loads the network into it.
pub async fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    Store::open(&cfg.database.url, cfg.store_options())
        .await
        .with_context(|| "cannot open the store".to_string())
}

/// The running services of one process.
#[derive(Debug)]
pub struct Running {
    pub http_addr: Option<SocketAddr>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Running {
    /// Waits for every service to finish (after shutdown was signalled).
    pub async fn join(self) {
        for (name, task) in self.tasks {
            if let Err(e) = task.await {
                tracing::error!(service = name, error = %e, "service task failed");
            }
        }
    }
}

/// Starts ingest, the analytics scheduler (when a network is described) and HTTP as the
/// configuration says. `http` may carry a listener the caller already bound (the demo picks a
/// free port); otherwise `cfg.http.listen` is bound.
pub async fn start(
    cfg: &Config,
    network: Option<&Network>,
    store: &Store,
    health: &HealthBoard,
    shutdown: &watch::Receiver<bool>,
    http: Option<tokio::net::TcpListener>,
) -> anyhow::Result<Running> {
    let mut tasks = Vec::new();
    // Ingest tells the analytics job when readings arrive (when both run here).
    let run_on_arrival = cfg.ingest.enabled
        && cfg.analytics.enabled
        && network.is_some()
        && cfg.analytics.arrival_min_gap_secs > 0;
    let (arrivals, arrived) = if run_on_arrival {
        let (tx, rx) = watch::channel(0u64);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    if cfg.ingest.enabled {
        let modbus = if cfg.modbus.enabled {
            cfg.modbus
                .load(&cfg.base_dir)
                .map_err(anyhow::Error::msg)?
                .into_iter()
                .filter(|(d, _)| cfg.modbus.polls(&d.id))
                .collect()
        } else {
            Vec::new()
        };
        let task = waterline_ingest::run(
            store.clone(),
            cfg.mqtt.clone(),
            cfg.ingest.clone(),
            modbus,
            health.clone(),
            shutdown.clone(),
            arrivals,
        )
        .await
        .context("cannot start ingest")?;
        tasks.push(("ingest", task));
    }
    match network {
        Some(net) if cfg.analytics.enabled => tasks.push((
            "analytics",
            crate::scheduler::spawn(
                store.clone(),
                net.clone(),
                &cfg.analytics,
                health.clone(),
                shutdown.clone(),
                arrived,
            ),
        )),
        None if cfg.analytics.enabled => tracing::warn!(
            "analytics job not started: it needs the network description ([network] path)"
        ),
        _ => {}
    }
    let mut http_addr = None;
    if cfg.http.enabled {
        let listener = match http {
            Some(l) => l,
            None => {
                let addr = cfg.http_addr()?;
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?
            }
        };
        http_addr = Some(listener.local_addr()?);
        // Any process with the network and the Modbus devices may write PRV set points (the
        // polling split between instances does not apply to writes).
        let setpoints = match network {
            Some(net) if !net.prvs.is_empty() => {
                let devices = cfg.modbus.load(&cfg.base_dir).map_err(anyhow::Error::msg)?;
                Some(
                    std::sync::Arc::new(crate::setpoints::ModbusSetpoints::new(net, devices))
                        as std::sync::Arc<dyn waterline_dashboards::SetpointWriter>,
                )
            }
            _ => None,
        };
        if let Some(writer) = &setpoints {
            tasks.push((
                "prv-schedule",
                crate::prv_schedule::spawn(
                    store.clone(),
                    writer.clone(),
                    health.clone(),
                    shutdown.clone(),
                ),
            ));
        }
        let state = AppState {
            store: store.clone(),
            health: health.clone(),
            metrics: telemetry::metrics_handle(),
            setpoints,
        };
        let shutdown = shutdown.clone();
        tasks.push((
            "http",
            tokio::spawn(async move {
                if let Err(e) = waterline_dashboards::serve(listener, state, shutdown).await {
                    tracing::error!(error = %e, "HTTP server failed");
                }
            }),
        ));
    }
    Ok(Running { http_addr, tasks })
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
