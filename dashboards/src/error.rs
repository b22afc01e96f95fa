//! API errors: a status and a message for the client; internal details only go to the log.
//! Every error answers `{"error": MESSAGE}`; the message names the parameter or field at fault.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use waterline_store::StoreError;

/// An error answered to an API client.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request itself is wrong; the message says how.
    BadRequest(String),
    /// 401: no or invalid credentials.
    Unauthorized,
    /// 403: valid credentials lacking the role.
    Forbidden(&'static str),
    /// 404: the named thing does not exist.
    NotFound(String),
    /// 409: the request is valid but the resource's current state forbids it (acknowledging
    /// an event that is no longer open, resolving one already resolved).
    Conflict(String),
    /// 422: a JSON body that parsed but whose fields are wrong; the message names the field.
    Unprocessable(String),
    /// 502: a field device did not do what was asked (unreachable, an exception, a read-back
    /// that differs); the message says which and why.
    BadGateway(String),
    /// 503: the store is unreachable right now.
    Unavailable,
    /// 500: logged, not shown.
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(what),
            e @ StoreError::InvalidTransition { .. } => ApiError::Conflict(e.to_string()),
            e if e.is_retryable() => {
                tracing::warn!(error = %e, "store unavailable");
                ApiError::Unavailable
            }
            e => ApiError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "missing or invalid bearer token".to_owned(),
            ),
            ApiError::Forbidden(need) => (
                StatusCode::FORBIDDEN,
                format!("this request needs the role {need}"),
            ),
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, format!("{what} not found")),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m),
            ApiError::Unprocessable(m) => (StatusCode::UNPROCESSABLE_ENTITY, m),
            ApiError::BadGateway(m) => (StatusCode::BAD_GATEWAY, m),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the store is unavailable; try again shortly".to_owned(),
            ),
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error answering an API request");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_owned(),
                )
            }
        };
        let unauthorized = status == StatusCode::UNAUTHORIZED;
        let mut resp = (status, Json(json!({ "error": message }))).into_response();
        if unauthorized {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"waterline\""),
            );
        }
        resp
    }
}
