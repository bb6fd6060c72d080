//! The HTTP API of Tessera.
//!
//! Layers, outermost first: request id -> logs, metrics and time budget -> panic guard ->
//! (per surface) authentication -> idempotency -> handler.

pub mod auth;
pub mod error;
pub mod idempotency;
pub mod json;
pub mod observe;
pub mod openapi;
pub mod request_id;
pub mod routes;

use axum::extract::{DefaultBodyLimit, OriginalUri, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Router};
use error::ApiError;
use metrics_exporter_prometheus::PrometheusHandle;
use routes::{customers, health, management, orders, products};
use tessera_domain::limits::MAX_BODY_BYTES;
use tessera_store::Store;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: Option<PrometheusHandle>,
}

async fn not_found(OriginalUri(uri): OriginalUri) -> Response {
    ApiError::route_not_found(uri.path()).into_response()
}

async fn method_not_allowed(OriginalUri(uri): OriginalUri, req: Request) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed",
        format!("{} is not supported on {}", req.method(), uri.path()),
    )
    .into_response()
}

async fn openapi_json(State(_): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi::json()).into_response()
}

pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/customers", post(customers::create).get(customers::list))
        .route(
            "/customers/{id}",
            get(customers::get).put(customers::update).delete(customers::delete),
        )
        .route("/products", post(products::create).get(products::list))
        .route("/products/{id}", get(products::get).put(products::update).delete(products::delete))
        .route("/products/{id}/skus", post(products::create_sku).get(products::list_skus))
        .route(
            "/products/{id}/skus/{sku}",
            get(products::get_product_sku)
                .put(products::update_sku)
                .delete(products::delete_sku),
        )
        .route("/skus/{sku}", get(products::get_sku))
        .route("/orders", post(orders::create).get(orders::list))
        .route("/orders/{id}", get(orders::get).put(orders::update))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), idempotency::middleware))
        .layer(middleware::from_fn_with_state(state.clone(), auth::server_keys));

    // Client-side endpoints (validate, redeem, qualify, publish) mount here as they land.
    let client_v1 = Router::new()
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), idempotency::middleware))
        .layer(middleware::from_fn_with_state(state.clone(), auth::client_keys));

    let mgmt = Router::new()
        .route("/projects", post(management::create_project).get(management::list_projects))
        .route(
            "/projects/{id}",
            get(management::get_project)
                .put(management::update_project)
                .delete(management::delete_project),
        )
        .route("/projects/{id}/api-keys", post(management::create_key).get(management::list_keys))
        .route("/projects/{id}/api-keys/{app_id}", axum::routing::delete(management::revoke_key))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), idempotency::middleware))
        .layer(middleware::from_fn_with_state(state.clone(), auth::management_keys));

    Router::new()
        // Public: the API description, health and metrics (keep /metrics on an internal network).
        .route("/v1/openapi.json", get(openapi_json))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .nest("/v1", v1)
        .nest("/client/v1", client_v1)
        .nest("/management/v1", mgmt)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(observe::middleware))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(observe::panic_response))
        .layer(middleware::from_fn(request_id::middleware))
        .with_state(state)
}
