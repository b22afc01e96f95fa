//! Waterline's HTTP face: the JSON API of CONTRACTS §7 (`/health`, `/metrics`,
//! `/api/v1/{sensors,readings,events,dead-letters,devices}`) with bearer-token auth and roles.
//!
//! [`app`] builds the axum `Router` from an [`AppState`], so tests drive it with `oneshot`
//! and the binary serves it with [`serve`]. This crate reads what ingest and analytics wrote
//! to the store; it imports neither of them.

mod api;
mod auth;
mod error;
mod params;

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use waterline_core::health::HealthBoard;
use waterline_store::Store;

pub use api::{DEFAULT_LIMIT, MAX_LIMIT};
pub use auth::Caller;
pub use error::ApiError;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub health: HealthBoard,
    /// Renders `/metrics`; `None` answers an empty exposition.
    pub metrics: Option<PrometheusHandle>,
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/health", get(api::health))
        .route("/metrics", get(api::metrics))
        .route("/api/v1/sensors", get(api::sensors))
        .route("/api/v1/readings", get(api::readings))
        .route("/api/v1/events", get(api::events))
        .route("/api/v1/dead-letters", get(api::dead_letters))
        .route("/api/v1/devices", get(api::devices))
        .fallback(api::not_found)
        .with_state(state)
}

/// Binds `addr` (port 0 picks a free one) and returns the listener and its real address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves `app(state)` on `listener` until `shutdown` turns true; in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
}
