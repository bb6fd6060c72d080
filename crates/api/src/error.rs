//! The one error type of the API, rendered as Voucherify's envelope:
//! `{code, key, message, details, request_id}`. Client errors say what was wrong and how
//! to fix it; server errors are logged with their cause and returned without internals.

use crate::request_id;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tessera_domain::InvalidInput;
use tessera_store::StoreError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub key: &'static str,
    pub message: String,
    pub details: String,
    /// The missing resource's id and type, for 404s (boxed to keep results small).
    pub resource: Option<Box<(String, &'static str)>>,
    pub retry_after_secs: Option<u64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: u16,
    pub key: String,
    pub message: String,
    pub details: String,
    pub request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, key: &'static str, message: impl Into<String>, details: impl Into<String>) -> Self {
        ApiError {
            status,
            key,
            message: message.into(),
            details: details.into(),
            resource: None,
            retry_after_secs: None,
        }
    }

    pub fn unauthorized() -> Self {
        // Deliberately the same for a missing header, an unknown id, a wrong token or a
        // revoked key: the answer must not tell an attacker which part was right.
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            "Provide valid credentials for this API.",
        )
    }

    pub fn not_found(resource_type: &'static str, id: impl Into<String>) -> Self {
        let id = id.into();
        let mut e = ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "Resource not found",
            format!("Cannot find {resource_type} with id {id}"),
        );
        e.resource = Some(Box::new((id, resource_type)));
        e
    }

    pub fn route_not_found(path: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "Resource not found",
            format!("No endpoint at {path}; see /v1/openapi.json"),
        )
    }

    pub fn bad_request(key: &'static str, message: &str, details: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, key, message, details)
    }

    pub fn internal() -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal server error",
            "The error was logged; retry later or report the request_id.",
        )
    }

    pub fn unavailable(details: impl Into<String>) -> Self {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "Service unavailable",
            details,
        );
        e.retry_after_secs = Some(1);
        e
    }
}

impl From<InvalidInput> for ApiError {
    fn from(e: InvalidInput) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, e.key, e.message, e.details)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { resource_type, id } => ApiError::not_found(resource_type, id),
            StoreError::Invalid(i) => i.into(),
            StoreError::Conflict { key, message, details } => ApiError::new(StatusCode::CONFLICT, key, message, details),
            StoreError::Constraint(msg) => {
                tracing::warn!(error = %msg, "constraint violation");
                ApiError::new(
                    StatusCode::CONFLICT,
                    "duplicate_key",
                    "Duplicated resource",
                    "A resource with the same unique identifier exists.",
                )
            }
            StoreError::Unavailable(msg) => {
                tracing::warn!(error = %msg, "storage unavailable");
                ApiError::unavailable("The database is temporarily unavailable.")
            }
            StoreError::Config(msg) | StoreError::Internal(msg) => {
                tracing::error!(error = %msg, "storage error");
                ApiError::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.status.as_u16(),
            key: self.key.to_string(),
            message: self.message,
            details: self.details,
            request_id: request_id::current(),
            resource_id: self.resource.as_ref().map(|r| r.0.clone()),
            resource_type: self.resource.as_ref().map(|r| r.1.to_string()),
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert("retry-after", v);
            }
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
