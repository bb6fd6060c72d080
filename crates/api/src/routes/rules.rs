//! Validation rules and their assignments.

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::ApiJson;
use crate::routes::{list_body, query_map};
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tessera_domain::list;
use tessera_store::ops::rules::{RuleInput, LIST_SPEC};
use tessera_store::Tenant;

/// Creates a rule. Its logic is parsed and bounded now: an expensive rule is refused here,
/// not discovered at checkout.
#[utoipa::path(post, path = "/v1/validation-rules", tag = "Validation rules", request_body = Object,
    responses((status = 200, description = "The rule"), (status = 400, body = ErrorBody)), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn create(State(s): State<AppState>, Auth(t): Auth<Tenant>, ApiJson(input): ApiJson<RuleInput>) -> ApiResult<Json<Value>> {
    Ok(Json(s.store.create_rule(&t, input).await?))
}

#[utoipa::path(get, path = "/v1/validation-rules", tag = "Validation rules", params(("limit" = Option<u32>, Query), ("page" = Option<u32>, Query)),
    responses((status = 200, description = "`{object, data_ref: data, data, total}`")), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn list(State(s): State<AppState>, Auth(t): Auth<Tenant>, q: RawQuery) -> ApiResult<Json<Value>> {
    let q = list::parse(&LIST_SPEC, &query_map(q)?)?;
    let (items, total) = s.store.list_rules(&t, q).await?;
    Ok(Json(list_body("data", items, total, None)))
}

#[utoipa::path(get, path = "/v1/validation-rules/{validationRuleId}", tag = "Validation rules", params(("validationRuleId" = String, Path)),
    responses((status = 200, description = "The rule"), (status = 404, body = ErrorBody)), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn get(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(s.store.get_rule(&t, id).await?))
}

#[utoipa::path(put, path = "/v1/validation-rules/{validationRuleId}", tag = "Validation rules", request_body = Object, params(("validationRuleId" = String, Path)),
    responses((status = 200, description = "The rule"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn update(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<RuleInput>,
) -> ApiResult<Json<Value>> {
    Ok(Json(s.store.update_rule(&t, id, input).await?))
}

#[utoipa::path(delete, path = "/v1/validation-rules/{validationRuleId}", tag = "Validation rules", params(("validationRuleId" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn delete(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.store.delete_rule(&t, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct AssignmentInput {
    /// `voucher` (default) or `campaign`.
    #[serde(default)]
    pub related_object_type: Option<String>,
    pub related_object_id: String,
}

#[utoipa::path(post, path = "/v1/validation-rules/{validationRuleId}/assignments", tag = "Validation rules", request_body = AssignmentInput,
    params(("validationRuleId" = String, Path)), responses((status = 200, description = "The assignment"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn assign(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<AssignmentInput>,
) -> ApiResult<Json<Value>> {
    tessera_domain::customer::check_identifier("related_object_id", &input.related_object_id)?;
    let kind = input.related_object_type.unwrap_or_else(|| "voucher".into());
    Ok(Json(s.store.assign_rule(&t, id, kind, input.related_object_id).await?))
}

#[utoipa::path(get, path = "/v1/validation-rules/{validationRuleId}/assignments", tag = "Validation rules", params(("validationRuleId" = String, Path)),
    responses((status = 200, description = "`{object, data_ref: data, data, total}`"), (status = 404, body = ErrorBody)), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn assignments(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let items = s.store.list_rule_assignments(&t, id).await?;
    let total = items.len();
    Ok(Json(json!({"object": "list", "data_ref": "data", "data": items, "total": total})))
}

#[utoipa::path(delete, path = "/v1/validation-rules/{validationRuleId}/assignments/{assignmentId}", tag = "Validation rules",
    params(("validationRuleId" = String, Path), ("assignmentId" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn unassign(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path((id, assignment)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.store.delete_rule_assignment(&t, id, assignment).await.map_err(ApiError::from)?;
    Ok(StatusCode::NO_CONTENT)
}
