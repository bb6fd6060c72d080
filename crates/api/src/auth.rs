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

/// The client's address: the TCP peer, or the last `X-Forwarded-For` hop when the operator
/// says a trusted proxy sets it (the last hop is the one that proxy appended; earlier ones
/// come from the client and may be forged).
fn client_ip(state: &AppState, req: &Request) -> Option<std::net::IpAddr> {
    if state.trust_forwarded_for {
        if let Some(ip) = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok())
        {
            return Some(ip);
        }
    }
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Runs an authenticated request under its project's budgets: rate limits (key, project,
/// and client IP for client-side keys) and the project's cap on requests in progress.
/// Unknown or revoked keys never get here, so no state exists for them.
async fn within_limits(state: &AppState, tenant: Tenant, ip: Option<std::net::IpAddr>, mut req: Request, next: Next) -> Response {
    let project = tenant.project_id().to_string();
    let key = tenant.app_id().to_string();
    let limits = tenant.rate_limits().unwrap_or(crate::limits::DEFAULT_LIMITS);
    let tag = ProjectTag(project.clone());
    let decision = match state.limiter.check(&project, &key, ip, &limits).await {
        crate::limits::Outcome::Allowed(d) => d,
        crate::limits::Outcome::Limited(d) => {
            metrics::counter!("tessera_throttled_total", "project" => project.clone(), "key" => key.clone()).increment(1);
            let mut resp = crate::limits::too_many(&d).into_response();
            crate::limits::headers(resp.headers_mut(), &d);
            resp.extensions_mut().insert(tag);
            return resp;
        }
        crate::limits::Outcome::Unavailable => {
            metrics::counter!("tessera_shed_total", "reason" => "rate_limiter_unavailable").increment(1);
            return ApiError::unavailable("Rate limits cannot be checked right now; retry shortly.").into_response();
        }
    };
    let max = limits.max_in_flight.or(crate::limits::DEFAULT_LIMITS.max_in_flight).unwrap_or(256) as usize;
    let Some(_slot) = state.limiter.admit_project(&project, max) else {
        metrics::counter!("tessera_shed_total", "reason" => "project_in_flight").increment(1);
        let mut e = ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "Too many requests in progress",
            format!("This project may have at most {max} requests in progress; retry when some have finished."),
        );
        e.retry_after_secs = Some(1);
        let mut resp = e.into_response();
        resp.extensions_mut().insert(tag);
        return resp;
    };
    req.extensions_mut().insert(tenant);
    let mut resp = next.run(req).await;
    crate::limits::headers(resp.headers_mut(), &decision);
    resp.extensions_mut().insert(tag);
    resp
}

pub async fn server_keys(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (Some(id), Some(token)) = (header(req.headers(), "x-app-id"), header(req.headers(), "x-app-token")) else {
        return ApiError::unauthorized().into_response();
    };
    match state.store.authenticate_key(id, token, KeyKind::Server).await {
        Ok(Some(tenant)) => within_limits(&state, tenant, None, req, next).await,
        Ok(None) => ApiError::unauthorized().into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Client-side keys are embedded in web pages, so besides the key the browser's `Origin`
/// must be one of the project's trusted domains, and each client IP has its own budget.
pub async fn client_keys(State(state): State<AppState>, req: Request, next: Next) -> Response {
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
            let ip = client_ip(&state, &req);
            within_limits(&state, tenant, ip, req, next).await
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
