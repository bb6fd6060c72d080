//! The HTTP API of Tessera.
//!
//! Layers, outermost first: request id -> logs, metrics and time budget -> panic guard ->
//! (per surface) authentication -> idempotency -> handler.

pub mod audit;
pub mod auth;
pub mod error;
pub mod idempotency;
pub mod json;
pub mod limits;
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
use routes::{
    audit as audit_routes, categories, checkout, coupons, customers, exports, health, imports, management, metadata_schemas, orders,
    products, promotions, publications, rules, segments, stacking_rules, stacks, webhooks,
};
use tessera_domain::limits::MAX_BODY_BYTES;
use tessera_store::Store;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: Option<PrometheusHandle>,
    pub limiter: std::sync::Arc<limits::Limiter>,
    /// Take the client IP from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Accept webhook targets in private, loopback or reserved ranges.
    pub allow_private_webhook_targets: bool,
    /// The URL clients reach this server by (`public_url`), for the links it hands out
    /// (export downloads); `None`: taken from each request's `Host`.
    pub public_url: Option<String>,
}

impl AppState {
    /// A state with local limits and default caps (tests and tools).
    pub fn new(store: Store, metrics: Option<PrometheusHandle>) -> Self {
        AppState {
            store,
            metrics,
            limiter: std::sync::Arc::new(limits::Limiter::new(None, limits::RedisFailure::Open, 4096)),
            trust_forwarded_for: false,
            allow_private_webhook_targets: false,
            public_url: None,
        }
    }
}

/// Sheds load before it reaches authentication: past the node's in-flight capacity,
/// answers 503 with Retry-After, checkout requests last.
async fn overload_guard(State(state): State<AppState>, req: Request, next: axum::middleware::Next) -> Response {
    let critical = limits::is_critical(req.method(), req.uri().path());
    match state.limiter.admit_global(critical) {
        Some(_slot) => next.run(req).await,
        None => {
            metrics::counter!("tessera_shed_total", "reason" => "overload").increment(1);
            ApiError::unavailable("The server is at capacity; retry shortly.").into_response()
        }
    }
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
    json::json_text(openapi::json())
}

pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/customers", post(customers::create).get(customers::list))
        .route(
            "/customers/{id}",
            get(customers::get).put(customers::update).delete(customers::delete),
        )
        .route("/customers/{id}/redeemables", get(publications::wallet))
        .route("/customers/{id}/segments", get(segments::of_customer))
        .route("/segments", post(segments::create).get(segments::list))
        .route("/segments/{id}", get(segments::get).delete(segments::delete))
        .route("/segments/{id}/publications", post(segments::publish))
        .route(
            "/customers/importCSV",
            post(imports::customers_import_csv).layer(DefaultBodyLimit::max(imports::MAX_CSV_BYTES)),
        )
        .route("/customers/bulk/async", post(imports::customers_bulk))
        .route(
            "/products/importCSV",
            post(imports::products_import_csv).layer(DefaultBodyLimit::max(imports::MAX_CSV_BYTES)),
        )
        .route("/products/bulk/async", post(imports::products_bulk))
        .route(
            "/skus/importCSV",
            post(imports::skus_import_csv).layer(DefaultBodyLimit::max(imports::MAX_CSV_BYTES)),
        )
        .route("/customers/{id}/permanent-deletion", post(customers::permanent_deletion))
        .route("/customers/{id}/activity", get(customers::activity))
        .route("/customers/{id}/activities", get(customers::activities))
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
        .route("/campaigns", post(coupons::create_campaign).get(coupons::list_campaigns))
        .route(
            "/campaigns/{id}",
            get(coupons::get_campaign)
                .put(coupons::update_campaign)
                .delete(coupons::delete_campaign),
        )
        .route("/campaigns/{id}/enable", post(coupons::enable_campaign))
        .route("/campaigns/{id}/summary", get(coupons::campaign_summary))
        .route("/campaigns/{id}/stats", get(webhooks::campaign_stats))
        .route("/vouchers/{code}/stats", get(webhooks::voucher_stats))
        .route("/campaigns/{id}/disable", post(coupons::disable_campaign))
        .route("/campaigns/{id}/vouchers", post(coupons::add_vouchers))
        .route("/campaigns/{id}/vouchers/{code}", post(coupons::add_voucher_with_code))
        .route("/campaigns/{id}/import", post(imports::campaign_import))
        .route(
            "/campaigns/{id}/importCSV",
            post(imports::campaign_import_csv).layer(DefaultBodyLimit::max(imports::MAX_CSV_BYTES)),
        )
        .route("/vouchers/import", post(imports::vouchers_import))
        .route(
            "/vouchers/importCSV",
            post(imports::vouchers_import_csv).layer(DefaultBodyLimit::max(imports::MAX_CSV_BYTES)),
        )
        .route("/vouchers", post(coupons::create_voucher).get(coupons::list_vouchers))
        // The Node client posts to a trailing slash when it creates a voucher without a code.
        .route("/vouchers/", post(coupons::create_voucher))
        .route(
            "/vouchers/{code}",
            post(coupons::create_voucher_with_code)
                .get(coupons::get_voucher)
                .put(coupons::update_voucher)
                .delete(coupons::delete_voucher),
        )
        .route("/vouchers/{code}/enable", post(coupons::enable_voucher))
        .route("/vouchers/{code}/disable", post(coupons::disable_voucher))
        .route("/vouchers/{code}/balance", post(coupons::adjust_balance))
        .route("/vouchers/{code}/transactions", get(coupons::transactions))
        .route("/vouchers/{code}/sessions/{key}", axum::routing::delete(coupons::release_session))
        .route("/vouchers/{code}/validate", post(checkout::legacy_validate))
        .route("/vouchers/{code}/redemption", post(checkout::legacy_redeem))
        .route("/validations", post(checkout::validate))
        .route("/qualifications", post(promotions::qualify))
        .route("/publications", post(publications::create).get(publications::list))
        .route("/publications/create", get(publications::create_by_query))
        .route("/exports", post(exports::create).get(exports::list))
        .route("/exports/{id}", get(exports::get).delete(exports::delete))
        .route("/metadata-schemas", get(metadata_schemas::list_own))
        .route("/metadata-schemas/{resource}", get(metadata_schemas::get_own))
        .route("/promotions/tiers", get(promotions::list_all_tiers))
        .route(
            "/promotions/tiers/{id}",
            get(promotions::get_tier)
                .put(promotions::update_tier)
                .delete(promotions::delete_tier),
        )
        .route("/promotions/tiers/{id}/enable", post(promotions::enable_tier))
        .route("/promotions/tiers/{id}/disable", post(promotions::disable_tier))
        .route(
            "/promotions/{id}/tiers",
            post(promotions::create_tier).get(promotions::list_campaign_tiers),
        )
        .route("/redemptions", post(checkout::redeem).get(checkout::list_redemptions))
        .route("/redemptions/{id}", get(checkout::get_redemption))
        .route("/redemptions/{id}/rollback", post(checkout::rollback))
        .route("/redemptions/{id}/rollbacks", post(checkout::rollback_stacked))
        .route("/validation-rules", post(rules::create).get(rules::list))
        .route("/validation-rules/{id}", get(rules::get).put(rules::update).delete(rules::delete))
        .route("/validation-rules/{id}/assignments", post(rules::assign).get(rules::assignments))
        .route(
            "/validation-rules/{id}/assignments/{assignment}",
            axum::routing::delete(rules::unassign),
        )
        .route("/categories", post(categories::create).get(categories::list))
        .route(
            "/categories/{id}",
            get(categories::get).put(categories::update).delete(categories::delete),
        )
        .route("/promotions/stacks", get(stacks::list_all))
        .route("/promotions/{id}/stacks", post(stacks::create).get(stacks::list))
        .route(
            "/promotions/{id}/stacks/{stack}",
            get(stacks::get).put(stacks::update).delete(stacks::delete),
        )
        .route("/async-actions", get(checkout::list_async_actions))
        .route("/async-actions/{id}", get(checkout::get_async_action))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(audit::middleware))
        .layer(middleware::from_fn_with_state(state.clone(), idempotency::middleware))
        .layer(middleware::from_fn_with_state(state.clone(), auth::server_keys));

    // Client-side endpoints: what a browser may do with a client key.
    let client_v1 = Router::new()
        .route("/validations", post(checkout::client_validate))
        .route("/qualifications", post(promotions::client_qualify))
        .route("/redemptions", post(checkout::client_redeem))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(audit::middleware))
        .layer(middleware::from_fn_with_state(state.clone(), idempotency::middleware))
        .layer(middleware::from_fn_with_state(state.clone(), auth::client_keys))
        // Browsers preflight before sending client keys. Any origin may ask; the request
        // itself is refused unless its Origin is one of the project's trusted domains.
        .layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(tower_http::cors::AllowOrigin::mirror_request())
                .allow_methods([axum::http::Method::GET, axum::http::Method::POST, axum::http::Method::DELETE])
                .allow_headers([
                    header::CONTENT_TYPE,
                    header::HeaderName::from_static("x-client-application-id"),
                    header::HeaderName::from_static("x-client-token"),
                    header::HeaderName::from_static("idempotency-key"),
                ])
                .expose_headers([
                    header::HeaderName::from_static("x-request-id"),
                    header::HeaderName::from_static("x-rate-limit-limit"),
                    header::HeaderName::from_static("x-rate-limit-remaining"),
                    header::HeaderName::from_static("x-rate-limit-retry"),
                ])
                .max_age(std::time::Duration::from_secs(600)),
        );

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
        .route("/projects/{id}/webhooks", post(webhooks::create).get(webhooks::list))
        .route(
            "/projects/{id}/metadata-schemas",
            post(metadata_schemas::create).get(metadata_schemas::list),
        )
        .route(
            "/projects/{id}/metadata-schemas/{schema}",
            get(metadata_schemas::get)
                .put(metadata_schemas::update)
                .delete(metadata_schemas::delete),
        )
        .route(
            "/projects/{id}/webhooks/{webhook}",
            get(webhooks::get).put(webhooks::update).delete(webhooks::delete),
        )
        .route("/projects/{id}/webhooks/{webhook}/deliveries", get(webhooks::deliveries))
        .route("/projects/{id}/webhooks/{webhook}/deliveries/{delivery}", get(webhooks::delivery))
        .route(
            "/projects/{id}/webhooks/{webhook}/deliveries/{delivery}/replay",
            post(webhooks::replay),
        )
        .route(
            "/projects/{id}/stacking-rules",
            post(stacking_rules::create).get(stacking_rules::list),
        )
        .route(
            "/projects/{id}/stacking-rules/{rules}",
            get(stacking_rules::get).put(stacking_rules::update).delete(stacking_rules::delete),
        )
        .route("/projects/{id}/audit-log", get(audit_routes::project_log))
        .route("/audit-log", get(audit_routes::management_log))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(audit::middleware))
        .layer(middleware::from_fn_with_state(state.clone(), idempotency::middleware))
        .layer(middleware::from_fn_with_state(state.clone(), auth::management_keys));

    Router::new()
        // Public: the API description, health and metrics (keep /metrics on an internal network).
        .route("/v1/openapi.json", get(openapi_json))
        // An export's download: its own short-lived token is the credential, no API key.
        .route("/v1/exports/{id}/download", get(exports::download))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .nest("/v1", v1)
        .nest("/client/v1", client_v1)
        .nest("/management/v1", mgmt)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), overload_guard))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(observe::panic_response))
        .layer(middleware::from_fn(observe::middleware))
        .layer(middleware::from_fn(request_id::middleware))
        .with_state(state)
}
