//! What the PRV closed-loop tests share: a call through the API router, and the binary's
//! Modbus set-point writer wired to a live twin's PRV controller.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;
use waterline::setpoints::ModbusSetpoints;
use waterline_core::modbus::MapTemplate;
use waterline_core::{DeviceId, Network};
use waterline_ingest::modbus_poll::{ModbusDevice, Transport};
use waterline_sim::twin::live::{self, LiveTwin};

/// `GET uri` (empty body) or `POST uri` with `body`, as `token`; the status and JSON answer.
pub(crate) async fn call(
    router: &axum::Router,
    token: &str,
    uri: &str,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let method = if body.is_empty() {
        Method::GET
    } else {
        Method::POST
    };
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(body.to_owned()))
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

/// The writer `serve` would build for `network` with one `[[modbus.devices]]` entry: the live
/// twin's controller of `prv`, with the shipped `dma-inlet-rtu` map.
pub(crate) fn controller_writer(live: &LiveTwin, network: &Network, prv: &str) -> ModbusSetpoints {
    let controller = live
        .controllers()
        .iter()
        .find(|c| c.prv == prv)
        .unwrap_or_else(|| panic!("the live twin has no controller of {prv}"))
        .clone();
    let template = MapTemplate::parse_toml(live::CONTROLLER_MODEL, live::CONTROLLER_MAP).unwrap();
    let device = ModbusDevice {
        id: controller.device.clone(),
        address: controller.addr.to_string(),
        transport: Transport::Tcp,
        unit_id: 1,
        model: live::CONTROLLER_MODEL.into(),
        poll_interval_ms: 60_000,
        timeout_ms: 2_000,
    };
    let map = template
        .instantiate(&DeviceId::parse(controller.device.as_str()).unwrap())
        .unwrap();
    ModbusSetpoints::new(network, vec![(device, map)])
}
