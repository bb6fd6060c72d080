use crate::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/health/live", tag = "Health", responses((status = 200, description = "Alive")))]
pub async fn live() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The database answers and the writer is not saturated: safe to route traffic here.
#[utoipa::path(get, path = "/health/ready", tag = "Health", responses((status = 200, description = "Ready"), (status = 503, description = "Not ready")))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let depth = state.store.write_queue_depth();
    let capacity = state.store.write_queue_capacity();
    metrics::gauge!("tessera_writer_queue_depth").set(depth as f64);
    let db = state.store.ping().await;
    let saturated = depth * 10 >= capacity * 9;
    let ok = db.is_ok() && !saturated;
    let body = json!({
        "status": if ok { "ok" } else { "unavailable" },
        "database": if db.is_ok() { "ok" } else { "unreachable" },
        "engine": state.store.engine_name(),
        "writer_queue_depth": depth,
        "writer_queue_capacity": capacity,
    });
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "Health", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    metrics::gauge!("tessera_writer_queue_depth").set(state.store.write_queue_depth() as f64);
    let text = state.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
