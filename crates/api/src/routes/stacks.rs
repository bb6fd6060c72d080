//! Promotion stacks (`/v1/promotions/stacks`, `/v1/promotions/{campaignId}/stacks`).

use crate::auth::Auth;
use crate::error::{ApiResult, ErrorBody};
use crate::json::ApiJson;
use crate::routes::{list_body, query_map};
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;
use tessera_domain::list;
use tessera_domain::promotion_stack::PromotionStackInput;
use tessera_store::ops::stacks::{CAMPAIGN_LIST_SPEC, LIST_SPEC};
use tessera_store::Tenant;

/// Stacks of every campaign of the project.
#[utoipa::path(get, path = "/v1/promotions/stacks", tag = "Promotions",
    params(("limit" = Option<u32>, Query), ("page" = Option<u32>, Query), ("order" = Option<String>, Query, description = "created_at, updated_at or name; '-' for descending"),
        ("created_at[before]" = Option<String>, Query), ("created_at[after]" = Option<String>, Query),
        ("updated_at[before]" = Option<String>, Query), ("updated_at[after]" = Option<String>, Query)),
    responses((status = 200, description = "`{object: list, data_ref: data, data: [promotion_stack], total}`"), (status = 400, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn list_all(State(s): State<AppState>, Auth(t): Auth<Tenant>, q: RawQuery) -> ApiResult<Json<Value>> {
    let q = list::parse(&LIST_SPEC, &query_map(q)?)?;
    let (items, total) = s.store.list_promotion_stacks(&t, None, q).await?;
    Ok(Json(list_body("data", items, total, None)))
}

/// Every stack of the campaign (at most 100).
#[utoipa::path(get, path = "/v1/promotions/{campaignId}/stacks", tag = "Promotions",
    params(("campaignId" = String, Path)),
    responses((status = 200, description = "`{object: list, data_ref: data, data: [promotion_stack], total}`"), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn list(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(campaign): Path<String>, q: RawQuery) -> ApiResult<Json<Value>> {
    let q = list::parse(&CAMPAIGN_LIST_SPEC, &query_map(q)?)?;
    let (items, total) = s.store.list_promotion_stacks(&t, Some(campaign), q).await?;
    Ok(Json(list_body("data", items, total, None)))
}

/// Creates a stack of the campaign's tiers, applied in the order `tiers.ids` lists them.
#[utoipa::path(post, path = "/v1/promotions/{campaignId}/stacks", tag = "Promotions", request_body = PromotionStackInput,
    params(("campaignId" = String, Path)),
    responses((status = 200, description = "The promotion stack with its `categories`"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn create(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(campaign): Path<String>,
    ApiJson(input): ApiJson<PromotionStackInput>,
) -> ApiResult<Json<Value>> {
    Ok(Json(s.store.create_promotion_stack(&t, campaign, input).await?))
}

#[utoipa::path(get, path = "/v1/promotions/{campaignId}/stacks/{stackId}", tag = "Promotions",
    params(("campaignId" = String, Path), ("stackId" = String, Path)),
    responses((status = 200, description = "The promotion stack"), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn get(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path((campaign, id)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    Ok(Json(s.store.get_promotion_stack(&t, campaign, id).await?))
}

/// Changes the fields the body names; `tiers.ids` replaces the list, `category_id: null`
/// removes the category.
#[utoipa::path(put, path = "/v1/promotions/{campaignId}/stacks/{stackId}", tag = "Promotions", request_body = PromotionStackInput,
    params(("campaignId" = String, Path), ("stackId" = String, Path)),
    responses((status = 200, description = "The promotion stack"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn update(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path((campaign, id)): Path<(String, String)>,
    ApiJson(input): ApiJson<PromotionStackInput>,
) -> ApiResult<Json<Value>> {
    Ok(Json(s.store.update_promotion_stack(&t, campaign, id, input).await?))
}

#[utoipa::path(delete, path = "/v1/promotions/{campaignId}/stacks/{stackId}", tag = "Promotions",
    params(("campaignId" = String, Path), ("stackId" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn delete(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path((campaign, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.store.delete_promotion_stack(&t, campaign, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
