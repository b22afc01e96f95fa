//! Logs (tracing) and metrics (Prometheus) for the process.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// The log filter when neither `WATERLINE_LOG` nor `RUST_LOG` is set. The demo's embedded
/// broker (rumqttd) is off: it logs a client's clean disconnect and its own shutdown as
/// `ERROR` ("router-drop error=Recv(Disconnected)", "no-connection id 0 is already gone"),
/// which is no error of the operator's; the ingest side logs real MQTT trouble itself.
pub const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn,rumqttd=off,rumqttc=warn";

/// Installs the log subscriber: `WATERLINE_LOG` (or `RUST_LOG`) filters, default
/// [`DEFAULT_LOG_FILTER`]; colours only on a terminal (a log file or journal gets plain text).
pub fn init_logging() {
    use std::io::IsTerminal;
    let filter = std::env::var("WATERLINE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| DEFAULT_LOG_FILTER.into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
                    100.0, 1_000.0, 10_000.0, 100_000.0,
                ])
                .ok()?
                // Fine buckets for the publish-to-commit latency (benchmarks read p50/p99).
                .set_buckets_for_metric(
                    Matcher::Full("waterline_ingest_reading_age_at_commit_seconds".into()),
                    &[
                        0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2,
                        0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0,
                    ],
                )
                .ok()?;
            match builder.install_recorder() {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}
