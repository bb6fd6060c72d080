//! A project's stacking rules (management API).

use crate::auth::Auth;
use crate::error::{ApiResult, ErrorBody};
use crate::json::ApiJson;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use tessera_domain::stacking::StackingRulesInput;
use tessera_store::ops::org::Management;
use tessera_store::ops::stacking_rules::view;

/// The rules in force, always one item: the project's own (with `id`, `created_at`,
/// `updated_at`) or Voucherify's defaults (without them).
#[utoipa::path(get, path = "/management/v1/projects/{projectId}/stacking-rules", tag = "Management",
    params(("projectId" = String, Path)),
    responses((status = 200, description = "`{object: list, data_ref: data, data: [stacking rules], total: 1}`"), (status = 404, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn list(State(s): State<AppState>, Auth(_m): Auth<Management>, Path(project): Path<String>) -> ApiResult<Json<Value>> {
    let (stored, rules) = s.store.stacking_rules(project).await?;
    let item = view(stored.as_ref(), &rules)?;
    Ok(Json(json!({"object": "list", "data_ref": "data", "data": [item], "total": 1})))
}

/// Gives the project its own rules: absent fields take the defaults. 409
/// `stacking_rules_exist` when it has them already. Every category named must be one of
/// the project's.
#[utoipa::path(post, path = "/management/v1/projects/{projectId}/stacking-rules", tag = "Management", request_body = StackingRulesInput,
    params(("projectId" = String, Path)),
    responses((status = 200, description = "The stacking rules with `id`, `created_at`, `updated_at`"), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn create(
    State(s): State<AppState>,
    Auth(_m): Auth<Management>,
    Path(project): Path<String>,
    ApiJson(input): ApiJson<StackingRulesInput>,
) -> ApiResult<Json<Value>> {
    let (stored, rules) = s.store.create_stacking_rules(project, input).await?;
    Ok(Json(view(Some(&stored), &rules)?))
}

#[utoipa::path(get, path = "/management/v1/projects/{projectId}/stacking-rules/{stackingRulesId}", tag = "Management",
    params(("projectId" = String, Path), ("stackingRulesId" = String, Path)),
    responses((status = 200, description = "The stacking rules"), (status = 404, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn get(
    State(s): State<AppState>,
    Auth(_m): Auth<Management>,
    Path((project, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (stored, rules) = s.store.get_stacking_rules(project, id).await?;
    Ok(Json(view(Some(&stored), &rules)?))
}

/// Changes the fields the body names; a list replaces the old list. The result is
/// checked as a whole (e.g. `applicable_redeemables_limit` may not exceed
/// `redeemables_limit`).
#[utoipa::path(put, path = "/management/v1/projects/{projectId}/stacking-rules/{stackingRulesId}", tag = "Management", request_body = StackingRulesInput,
    params(("projectId" = String, Path), ("stackingRulesId" = String, Path)),
    responses((status = 200, description = "The stacking rules"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn update(
    State(s): State<AppState>,
    Auth(_m): Auth<Management>,
    Path((project, id)): Path<(String, String)>,
    ApiJson(input): ApiJson<StackingRulesInput>,
) -> ApiResult<Json<Value>> {
    let (stored, rules) = s.store.update_stacking_rules(project, id, input).await?;
    Ok(Json(view(Some(&stored), &rules)?))
}

/// Deletes the project's own rules; the defaults apply again.
#[utoipa::path(delete, path = "/management/v1/projects/{projectId}/stacking-rules/{stackingRulesId}", tag = "Management",
    params(("projectId" = String, Path), ("stackingRulesId" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn delete(
    State(s): State<AppState>,
    Auth(_m): Auth<Management>,
    Path((project, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.store.delete_stacking_rules(project, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
