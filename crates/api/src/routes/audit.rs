//! Reading the audit log (management API, Tessera addition).

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use serde_json::{json, Value};
use tessera_store::ops::audit::AuditFilter;
use tessera_store::ops::org::Management;

fn filter(q: RawQuery) -> Result<AuditFilter, ApiError> {
    let mut p = crate::routes::query_map(q)?;
    let limit =
        match p.remove("limit") {
            Some(l) => l.parse::<i64>().ok().filter(|l| (1..=100).contains(l)).ok_or_else(|| {
                ApiError::bad_request("invalid_query_params", "Invalid query parameters", "'limit' must be from 1 to 100")
            })?,
            None => 100,
        };
    let f = AuditFilter {
        request_id: p.remove("request_id"),
        action: p.remove("action"),
        actor: p.remove("actor"),
        before: p.remove("before"),
        limit,
    };
    if let Some(k) = p.keys().next() {
        return Err(ApiError::bad_request(
            "invalid_query_params",
            "Invalid query parameters",
            format!("unknown parameter '{k}': use request_id, action, actor, before, limit"),
        ));
    }
    Ok(f)
}

/// A project's audit log, newest first: who (`key:<app_id>` or `management`), what
/// (`action`: method and route; `resource`: the path; `fields`: the body's top-level field
/// names), when, and the request id. Filters: `request_id`, `action`, `actor`, `before`
/// (a `created_at`, for the next page), `limit` (1 to 100).
#[utoipa::path(get, path = "/management/v1/projects/{projectId}/audit-log", tag = "Management",
    params(("projectId" = String, Path)),
    responses((status = 200, description = "`{object: list, data_ref: data, data: [audit_entry]}`"), (status = 400, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn project_log(
    State(s): State<AppState>,
    Auth(_m): Auth<Management>,
    Path(id): Path<String>,
    q: RawQuery,
) -> ApiResult<Json<Value>> {
    let data = s.store.audit_log(id, filter(q)?).await?;
    Ok(Json(json!({"object": "list", "data_ref": "data", "data": data})))
}

/// Organization-level entries (project creation), same shape and filters.
#[utoipa::path(get, path = "/management/v1/audit-log", tag = "Management",
    responses((status = 200, description = "`{object: list, data_ref: data, data: [audit_entry]}`"), (status = 400, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn management_log(State(s): State<AppState>, Auth(_m): Auth<Management>, q: RawQuery) -> ApiResult<Json<Value>> {
    let data = s.store.audit_log("management".into(), filter(q)?).await?;
    Ok(Json(json!({"object": "list", "data_ref": "data", "data": data})))
}
