//! Authentication and tenancy, enforced in one place.
//!
//! Each API surface has a middleware that authenticates the request and stores the
//! resulting proof (`Tenant` or `Management`) in the request extensions; handlers obtain it
//! through the `Auth` extractor, and the store's tenant-scoped operations require it.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tessera_store::ops::org::Management;
use tessera_store::{KeyKind, Tenant};

/// The authenticated project, copied into response extensions for logs and metrics.
#[derive(Clone, Debug)]
pub struct ProjectTag(pub String);

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

pub async fn server_keys(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let (Some(id), Some(token)) = (header(req.headers(), "x-app-id"), header(req.headers(), "x-app-token")) else {
        return ApiError::unauthorized().into_response();
    };
    match state.store.authenticate_key(id, token, KeyKind::Server).await {
        Ok(Some(tenant)) => {
            let tag = ProjectTag(tenant.project_id().to_string());
            req.extensions_mut().insert(tenant);
            let mut resp = next.run(req).await;
            resp.extensions_mut().insert(tag);
            resp
        }
        Ok(None) => ApiError::unauthorized().into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Client-side keys are embedded in web pages, so besides the key the browser's `Origin`
/// must be one of the project's trusted domains.
pub async fn client_keys(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let headers = req.headers();
    let (Some(id), Some(token)) = (header(headers, "x-client-application-id"), header(headers, "x-client-token")) else {
        return ApiError::unauthorized().into_response();
    };
    let origin = header(headers, "origin");
    match state.store.authenticate_key(id, token, KeyKind::Client).await {
        Ok(Some(tenant)) => {
            let allowed = origin
                .as_deref()
                .is_some_and(|o| tessera_domain::project::origin_allowed(tenant.trusted_domains(), o));
            if !allowed {
                return ApiError::unauthorized().into_response();
            }
            let tag = ProjectTag(tenant.project_id().to_string());
            req.extensions_mut().insert(tenant);
            let mut resp = next.run(req).await;
            resp.extensions_mut().insert(tag);
            resp
        }
        Ok(None) => ApiError::unauthorized().into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

pub async fn management_keys(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let (Some(id), Some(token)) = (
        header(req.headers(), "x-management-id"),
        header(req.headers(), "x-management-token"),
    ) else {
        return ApiError::unauthorized().into_response();
    };
    if id.len() > 128 || token.len() > 128 {
        return ApiError::unauthorized().into_response();
    }
    match state.store.authenticate_management(id, token).await {
        Ok(Some(m)) => {
            req.extensions_mut().insert(m);
            next.run(req).await
        }
        Ok(None) => ApiError::unauthorized().into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Extracts the proof placed by the surface's middleware; a route mounted without that
/// middleware fails closed with 401.
pub struct Auth<T>(pub T);

impl<S: Send + Sync> FromRequestParts<S> for Auth<Tenant> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Tenant>()
            .cloned()
            .map(Auth)
            .ok_or_else(ApiError::unauthorized)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Auth<Management> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Management>()
            .cloned()
            .map(Auth)
            .ok_or_else(ApiError::unauthorized)
    }
}

/// Whether a method changes state (and so takes part in idempotency).
pub fn is_mutation(m: &Method) -> bool {
    matches!(*m, Method::POST | Method::PUT | Method::DELETE | Method::PATCH)
}
