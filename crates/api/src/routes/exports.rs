//! Exports: `POST /v1/exports` schedules a CSV export as an async action; `GET` shows it,
//! with `result.url` once it is DONE; the URL downloads the CSV with the export's own
//! short-lived token and no API key (`GET /v1/exports/{id}/download?token=...`). The
//! official clients' `download_export` calls `GET /v1/exports/{id}?token=...` with their
//! keys, which answers the same CSV.

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::ApiJson;
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tessera_domain::export::{ExportInput, TOKEN_TTL_SECS};
use tessera_store::ops::exports::ExportRecord;
use tessera_store::Tenant;

fn bad_query(details: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_query_params", "Invalid query parameters", details)
}

/// The scheme, host and path prefix download URLs start with: the configured public URL
/// when there is one (behind a proxy, or another host name), otherwise the `Host` the
/// client reached this server by (and `X-Forwarded-Proto` when forwarded headers are
/// trusted).
pub fn base_url(s: &AppState, headers: &HeaderMap) -> String {
    if let Some(u) = &s.public_url {
        return u.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.len() <= 255 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b)))
        .unwrap_or("localhost");
    let scheme = if s.trust_forwarded_for {
        headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .filter(|v| *v == "https" || *v == "http")
            .unwrap_or("http")
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

/// The export object with a download URL valid for `TOKEN_TTL_SECS` from now while it
/// is DONE.
fn view(rec: &ExportRecord, base: &str) -> Value {
    let url = (rec.status == "DONE").then(|| {
        let expires = tessera_domain::time::now().as_second() + TOKEN_TTL_SECS;
        format!("{base}/v1/exports/{}/download?token={}", rec.id, rec.token(expires))
    });
    rec.view(url)
}

/// Schedules an export; it runs in the background (status SCHEDULED → IN_PROGRESS →
/// DONE or ERROR).
#[utoipa::path(post, path = "/v1/exports", tag = "Exports", request_body = ExportInput,
    responses((status = 200, description = "The export object, status SCHEDULED"), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn create(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    headers: HeaderMap,
    ApiJson(input): ApiJson<ExportInput>,
) -> ApiResult<Json<Value>> {
    let spec = input.validate()?;
    let (rec, action) = s.store.create_export(&t, spec).await?;
    s.store.start_async_action(&t, action).await?;
    Ok(Json(view(&rec, &base_url(&s, &headers))))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<u32>,
    page: Option<u32>,
    order: Option<String>,
}

#[utoipa::path(get, path = "/v1/exports", tag = "Exports",
    params(("limit" = Option<u32>, Query), ("page" = Option<u32>, Query), ("order" = Option<String>, Query, description = "created_at, -created_at (default), status or -status")),
    responses((status = 200, description = "`{object, data_ref: exports, exports, total}`"), (status = 400, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn list(State(s): State<AppState>, Auth(t): Auth<Tenant>, headers: HeaderMap, q: RawQuery) -> ApiResult<Json<Value>> {
    let q: ListQuery = serde_urlencoded::from_str(q.0.as_deref().unwrap_or("")).map_err(|e| bad_query(e.to_string()))?;
    let limit = q.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(bad_query("'limit' must be from 1 to 100"));
    }
    let page = q.page.unwrap_or(1);
    if !(1..=1000).contains(&page) {
        return Err(bad_query("'page' must be from 1 to 1000"));
    }
    let order = q.order.unwrap_or_else(|| "-created_at".into());
    if !["created_at", "-created_at", "status", "-status"].contains(&order.as_str()) {
        return Err(bad_query("'order' must be created_at, -created_at, status or -status"));
    }
    let (items, total) = s.store.list_exports(&t, limit, page, order).await?;
    let base = base_url(&s, &headers);
    let exports: Vec<Value> = items.iter().map(|r| view(r, &base)).collect();
    Ok(Json(
        json!({"object": "list", "data_ref": "exports", "exports": exports, "total": total}),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GetQuery {
    token: Option<String>,
}

/// The export; with `token`, its CSV (what the official clients' `download_export` asks).
#[utoipa::path(get, path = "/v1/exports/{exportId}", tag = "Exports",
    params(("exportId" = String, Path), ("token" = Option<String>, Query, description = "With a download token: answer the CSV itself")),
    responses((status = 200, description = "The export object, or the CSV (text/plain) when `token` is given"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn get(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: RawQuery,
) -> ApiResult<Response> {
    let q: GetQuery = serde_urlencoded::from_str(q.0.as_deref().unwrap_or("")).map_err(|e| bad_query(e.to_string()))?;
    if let Some(token) = q.token {
        // The token alone decides, as on the key-less route; it must also be of the
        // caller's own project.
        let claims_own = tessera_domain::export::token_claims(&token).is_some_and(|(p, _)| p == t.project_id());
        if !claims_own {
            return Err(ApiError::unauthorized());
        }
        return stream_csv(&s, id, token, "text/plain; charset=utf-8", false).await;
    }
    let rec = s.store.get_export(&t, id).await?;
    Ok(Json(view(&rec, &base_url(&s, &headers))).into_response())
}

#[utoipa::path(delete, path = "/v1/exports/{exportId}", tag = "Exports", params(("exportId" = String, Path)),
    responses((status = 204, description = "Deleted, with its CSV"), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn delete(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.store.delete_export(&t, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Downloads a DONE export's CSV. No API key: the token from `result.url` opens this one
/// export until it expires (one hour after the export was read).
#[utoipa::path(get, path = "/v1/exports/{exportId}/download", tag = "Exports",
    params(("exportId" = String, Path), ("token" = String, Query, description = "The token in the export's result.url")),
    responses((status = 200, description = "The CSV, streamed (text/csv)"), (status = 401, body = ErrorBody)))]
pub async fn download(State(s): State<AppState>, Path(id): Path<String>, q: RawQuery) -> ApiResult<Response> {
    let q: GetQuery = serde_urlencoded::from_str(q.0.as_deref().unwrap_or("")).map_err(|_| ApiError::unauthorized())?;
    let Some(token) = q.token else {
        return Err(ApiError::unauthorized());
    };
    stream_csv(&s, id, token, "text/csv; charset=utf-8", true).await
}

/// Streams the export's chunks in order, one read per chunk, so a download holds about
/// one chunk (1 MiB) in memory whatever the file's size.
async fn stream_csv(s: &AppState, id: String, token: String, content_type: &'static str, attachment: bool) -> ApiResult<Response> {
    if id.len() > 64 {
        return Err(ApiError::unauthorized());
    }
    let Some(download) = s.store.authorize_export_download(id, token).await? else {
        return Err(ApiError::unauthorized());
    };
    let store = s.store.clone();
    let chunks = download.chunks();
    let filename = format!("{}.csv", download.export_id());
    let stream = futures_util::stream::unfold((store, download, 0i64), move |(store, d, seq)| async move {
        if seq >= chunks {
            return None;
        }
        let item = match store.export_chunk(&d, seq).await {
            Ok(Some(text)) => Ok(Bytes::from(text)),
            // Deleted mid-download: end with an error so the client sees a broken
            // transfer, not a short file.
            Ok(None) => Err(std::io::Error::other("the export was deleted during the download")),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        let stop = item.is_err();
        Some((item, (store, d, if stop { chunks } else { seq + 1 })))
    });
    let mut resp = Body::from_stream(stream).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if attachment {
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    Ok(resp)
}
