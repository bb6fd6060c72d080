//! `Idempotency-Key` on every POST, PUT, PATCH and DELETE.
//!
//! Same key and same request: the stored response is replayed. Same key while the first
//! request is still running: 409. Same key, different request: 422. Records are per
//! project and kept 24 hours. The first write a request makes marks its key `applied` in
//! the same transaction (see `Store::write`), so no crash or retry can apply it twice.

use crate::auth::is_mutation;
use crate::error::ApiError;
use crate::json::too_large;
use crate::AppState;
use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tessera_domain::limits::{MAX_BODY_BYTES, MAX_IDEMPOTENCY_KEY_LEN};
use tessera_store::ops::idempotency::{IdemMark, CURRENT};
use tessera_store::ops::org::Management;
use tessera_store::{IdemBegin, Tenant};

/// Responses worth replaying. Conflicts, throttling and server errors are transient: the
/// retry should run again (unless the effect already committed; see the store).
fn replayable(status: StatusCode) -> bool {
    (status.is_success() || status.is_client_error())
        && !matches!(
            status,
            StatusCode::CONFLICT | StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT
        )
}

pub async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !is_mutation(req.method()) {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get("idempotency-key").cloned() else {
        return next.run(req).await;
    };
    let key = match key.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_LEN && k.bytes().all(|b| b.is_ascii_graphic()) => k.to_string(),
        _ => {
            return ApiError::bad_request(
                "invalid_idempotency_key",
                "Invalid Idempotency-Key",
                format!("The Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters."),
            )
            .into_response()
        }
    };
    let scope = if let Some(t) = req.extensions().get::<Tenant>() {
        t.project_id().to_string()
    } else if req.extensions().get::<Management>().is_some() {
        "management".to_string()
    } else {
        return next.run(req).await;
    };

    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => return too_large().into_response(),
    };
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str().as_bytes());
    hasher.update(b"\n");
    hasher.update(parts.uri.path().as_bytes());
    hasher.update(b"?");
    hasher.update(parts.uri.query().unwrap_or("").as_bytes());
    hasher.update(b"\n");
    hasher.update(&bytes);
    let hash = hex::encode(hasher.finalize());

    let owner = match state.store.idempotency_begin(scope.clone(), key.clone(), hash).await {
        Err(e) => return ApiError::from(e).into_response(),
        Ok(IdemBegin::Mismatch) => {
            return ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "Idempotency-Key reused",
                "This Idempotency-Key was used with a different request; use a new key for a new request.",
            )
            .into_response()
        }
        Ok(IdemBegin::InFlight) => {
            let mut e = ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_key_in_flight",
                "Request in progress",
                "A request with this Idempotency-Key is still being processed; retry after it completes.",
            );
            e.retry_after_secs = Some(1);
            return e.into_response();
        }
        Ok(IdemBegin::AppliedWithoutResponse) => return ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_applied",
            "Request already applied",
            "A request with this Idempotency-Key was applied but its response was lost in a restart; read the resource to see the result.",
        )
        .into_response(),
        Ok(IdemBegin::Replay { status, body }) => {
            let has_body = !body.is_empty();
            let mut resp = Response::new(Body::from(body));
            *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            if has_body {
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            return resp;
        }
        Ok(IdemBegin::Proceed { owner }) => owner,
    };

    // The handler runs in its own task, so it completes and records its response even if
    // this request is dropped (client gone, time budget spent): a retry then gets the
    // replay instead of finding the key released while the effect commits. It keeps its
    // own deadline; past it, the key is released (or, if the effect committed, the 503
    // is stored). A write still pending then cannot commit: it no longer owns the key.
    let mark = IdemMark::new(scope.clone(), key.clone(), owner.clone());
    let store = state.store.clone();
    let request_id = crate::request_id::current();
    let task = tokio::spawn(crate::request_id::REQUEST_ID.scope(
        request_id,
        CURRENT.scope(mark, async move {
            let handled = tokio::time::timeout(
                crate::observe::REQUEST_BUDGET,
                next.run(Request::from_parts(parts, Body::from(bytes))),
            )
            .await;
            let resp = match handled {
                Ok(resp) => resp,
                Err(_) => ApiError::unavailable("The request did not finish in time.").into_response(),
            };
            let (parts, body) = resp.into_parts();
            // Handlers build whole JSON bodies in memory, so buffering adds no new bound.
            let body = to_bytes(body, usize::MAX).await.unwrap_or_default();
            let text = String::from_utf8_lossy(&body).into_owned();
            if let Err(e) = store
                .idempotency_complete(scope, key, owner, parts.status.as_u16(), text, replayable(parts.status))
                .await
            {
                tracing::error!(error = %e, "could not record idempotent response");
            }
            Response::from_parts(parts, Body::from(body))
        }),
    ));
    match task.await {
        Ok(resp) => resp,
        Err(_) => ApiError::internal().into_response(),
    }
}
