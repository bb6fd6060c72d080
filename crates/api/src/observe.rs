//! Per-request logs and metrics, plus the time budget and panic guard.
//!
//! Logs carry the route template, never the concrete path or query (which may hold an
//! email used as a source id), and never bodies or credentials.

use crate::auth::ProjectTag;
use crate::error::ApiError;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::{Duration, Instant};

/// Longest any request may take before it is answered with 503.
pub const REQUEST_BUDGET: Duration = Duration::from_secs(30);

pub async fn middleware(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let request_id = crate::request_id::current();
    let resp = match tokio::time::timeout(REQUEST_BUDGET, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::unavailable(format!("The request did not finish within {} s.", REQUEST_BUDGET.as_secs())).into_response(),
    };
    let status = resp.status().as_u16();
    let elapsed = started.elapsed();
    let project = resp.extensions().get::<ProjectTag>().map(|p| p.0.clone());
    metrics::counter!("tessera_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!("tessera_http_request_duration_seconds", "method" => method.clone(), "route" => route.clone())
        .record(elapsed.as_secs_f64());
    if let Some(p) = &project {
        metrics::counter!("tessera_project_requests_total", "project" => p.clone()).increment(1);
    }
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    let project = project.unwrap_or_default();
    if status >= 500 {
        tracing::warn!(target: "tessera::http", request_id, method, route, status, latency_ms, project, "request");
    } else {
        tracing::info!(target: "tessera::http", request_id, method, route, status, latency_ms, project, "request");
    }
    resp
}

pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::internal().into_response()
}
