//! Marks every mutating request (POST, PUT, PATCH, DELETE) for the audit log; the store
//! writes the entry with the request's first write (see `tessera_store::ops::audit`).
//! Requests that change nothing (a validation, a refused call) leave no entry.

use crate::auth::is_mutation;
use crate::json::too_large;
use axum::body::{to_bytes, Body};
use axum::extract::{MatchedPath, OriginalUri, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tessera_domain::limits::MAX_BODY_BYTES;
use tessera_store::ops::audit::{AuditMark, AUDIT};
use tessera_store::ops::org::Management;
use tessera_store::Tenant;

/// The project a management path is about (`/management/v1/projects/{id}/...`).
fn management_scope(path: &str) -> String {
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("management"), Some("v1"), Some("projects"), Some(id)) if !id.is_empty() => id.to_string(),
        _ => "management".to_string(),
    }
}

/// The one GET that changes state: the spec's publication by query parameters.
fn is_mutating_get(req: &Request) -> bool {
    req.method() == axum::http::Method::GET
        && req
            .extensions()
            .get::<OriginalUri>()
            .map(|u| u.path().to_string())
            .unwrap_or_else(|| req.uri().path().to_string())
            .ends_with("/v1/publications/create")
}

pub async fn middleware(req: Request, next: Next) -> Response {
    if !is_mutation(req.method()) && !is_mutating_get(&req) {
        return next.run(req).await;
    }
    // Inside the nested routers the URI has lost its `/v1` (or `/management/v1`) prefix;
    // the log records the path the client called.
    let path = req
        .extensions()
        .get::<OriginalUri>()
        .map(|u| u.path().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let (scope, actor) = if let Some(t) = req.extensions().get::<Tenant>() {
        (t.project_id().to_string(), format!("key:{}", t.app_id()))
    } else if req.extensions().get::<Management>().is_some() {
        (management_scope(&path), "management".to_string())
    } else {
        return next.run(req).await;
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let action = format!("{} {route}", req.method());
    let resource = path;
    // The same bodies the JSON extractor reads: no content type, application/json, or any
    // `+json` type.
    let json = match req.headers().get(header::CONTENT_TYPE) {
        None => true,
        Some(v) => {
            let ct = v.to_str().unwrap_or("").to_ascii_lowercase();
            let essence = ct.split(';').next().unwrap_or("").trim();
            essence == "application/json" || essence.ends_with("+json")
        }
    };
    let (req, fields) = if json {
        let (parts, body) = req.into_parts();
        let bytes = match to_bytes(body, MAX_BODY_BYTES).await {
            Ok(b) => b,
            Err(_) => return too_large().into_response(),
        };
        // Field names only: values may hold personal data and stay out of the log. The
        // values are skipped, not built, since this runs on every redemption.
        let fields: Vec<String> = match serde_json::from_slice::<std::collections::BTreeMap<String, serde::de::IgnoredAny>>(&bytes) {
            Ok(m) => m.into_keys().take(100).collect(),
            Err(_) => Vec::new(),
        };
        (Request::from_parts(parts, Body::from(bytes)), fields)
    } else {
        (req, Vec::new())
    };
    AUDIT
        .scope(AuditMark::new(scope, actor, action, resource, fields), next.run(req))
        .await
}

#[cfg(test)]
mod tests {
    use super::management_scope;

    #[test]
    fn management_paths_name_their_project() {
        assert_eq!(management_scope("/management/v1/projects/proj_1/webhooks"), "proj_1");
        assert_eq!(management_scope("/management/v1/projects/proj_1"), "proj_1");
        assert_eq!(management_scope("/management/v1/projects"), "management");
    }
}
