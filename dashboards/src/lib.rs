//! Waterline's HTTP face: the JSON API of CONTRACTS §7 (`/health`, `/metrics`,
//! `/api/v1/{sensors,readings,events,dead-letters,devices}`, the alert workflow under
//! `/api/v1/events/{id}` and `/api/v1/alerts/kpis`, the analytics job's daily KPIs at
//! `/api/v1/kpis/daily` and `/api/v1/kpis/monthly`, PRV set-point recommendations and their application under
//! `/api/v1/prvs`, declared windows (compliance exclusions, maintenance) under
//! `/api/v1/windows`, routine lab grab samples at stations under `/api/v1/samples`, and
//! `/api/v1/openapi.json`) with
//! bearer-token auth and roles. docs/api.md describes it for clients.
//!
//! Modules: `api` (read handlers), `workflow` (the alert workflow), `prv` (pressure
//! management: recommendations, and set points written through a [`SetpointWriter`] that the
//! binary provides), `windows` (declared windows), `samples` (station grab samples), `openapi` (the
//! document), `auth` ([`Caller`]), `params` (query parameters), `body` (JSON bodies),
//! `error` ([`ApiError`]).
//!
//! [`app`] builds the axum `Router` from an [`AppState`], so tests drive it with `oneshot`
//! and the binary serves it with [`serve`]. This crate reads what ingest and analytics wrote
//! to the store; it imports neither of them (set points reach the field through the
//! [`SetpointWriter`] the binary passes in).

mod api;
mod auth;
mod body;
mod error;
mod openapi;
mod params;
mod prv;
mod samples;
mod windows;
mod workflow;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use waterline_core::health::HealthBoard;
use waterline_store::Store;

pub use api::{DEFAULT_LIMIT, MAX_LIMIT};
pub use auth::Caller;
pub use error::ApiError;
pub use openapi::DOCUMENT as OPENAPI_DOCUMENT;
pub use prv::{SetpointError, SetpointWriter, SetpointWritten, WriteFuture};

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub health: HealthBoard,
    /// Renders `/metrics`; `None` answers an empty exposition.
    pub metrics: Option<PrometheusHandle>,
    /// Writes PRV set points to the field; `None`: this server writes none (409).
    pub setpoints: Option<Arc<dyn SetpointWriter>>,
}

/// Declares the routes once: [`app`] builds the router from them and [`ROUTES`] lists them,
/// so the list (which the OpenAPI test compares with the document) cannot drift.
macro_rules! routes {
    ($($method:ident $path:literal => $handler:path),* $(,)?) => {
        /// Every route of the router as (method, path), in axum's path syntax, which is also
        /// OpenAPI's (`/api/v1/events/{id}`).
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        fn routes(router: Router<AppState>) -> Router<AppState> {
            router$(.route($path, axum::routing::$method($handler)))*
        }
    };
}

routes! {
    get "/health" => api::health,
    get "/metrics" => api::metrics,
    get "/api/v1/openapi.json" => openapi::document,
    get "/api/v1/sensors" => api::sensors,
    get "/api/v1/readings" => api::readings,
    get "/api/v1/events" => api::events,
    get "/api/v1/events/{id}" => workflow::event,
    post "/api/v1/events/{id}/acknowledge" => workflow::acknowledge,
    post "/api/v1/events/{id}/resolve" => workflow::resolve,
    post "/api/v1/events/{id}/samples" => workflow::add_sample,
    get "/api/v1/alerts/kpis" => workflow::kpis,
    get "/api/v1/kpis/daily" => api::daily_kpis,
    get "/api/v1/kpis/monthly" => api::monthly_kpis,
    get "/api/v1/prvs" => prv::list,
    post "/api/v1/prvs/{id}/apply" => prv::apply,
    post "/api/v1/prvs/{id}/schedule" => prv::schedule,
    post "/api/v1/prvs/{id}/schedule/cancel" => prv::cancel_schedule,
    get "/api/v1/samples" => samples::list,
    post "/api/v1/samples" => samples::record,
    get "/api/v1/windows" => windows::list,
    post "/api/v1/windows" => windows::declare,
    post "/api/v1/windows/{id}/withdraw" => windows::withdraw,
    get "/api/v1/dead-letters" => api::dead_letters,
    get "/api/v1/devices" => api::devices,
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    routes(Router::new())
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
