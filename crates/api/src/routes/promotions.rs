//! Promotion tiers and qualifications.

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::ApiJson;
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tessera_domain::promotion::TierInput;
use tessera_domain::redemption::QualificationRequest;
use tessera_store::Tenant;

#[derive(Deserialize, Default)]
struct TierQuery {
    limit: Option<u32>,
    page: Option<u32>,
    is_available: Option<bool>,
    order: Option<String>,
}

fn tier_query(q: RawQuery) -> ApiResult<TierQuery> {
    let q: TierQuery = serde_urlencoded::from_str(q.0.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request("invalid_query_params", "Invalid query parameters", e.to_string()))?;
    if let Some(l) = q.limit {
        if !(1..=100).contains(&l) {
            return Err(ApiError::bad_request(
                "invalid_query_params",
                "Invalid query parameters",
                "'limit' must be from 1 to 100",
            ));
        }
    }
    if q.page.is_some_and(|p| !(1..=10_000).contains(&p)) {
        return Err(ApiError::bad_request(
            "invalid_query_params",
            "Invalid query parameters",
            "'page' must be from 1 to 10000",
        ));
    }
    Ok(q)
}

async fn list(s: AppState, t: Tenant, campaign: Option<String>, q: TierQuery) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(10);
    let l = s
        .store
        .list_tiers(&t, campaign, q.is_available, q.order, limit, q.page.unwrap_or(1))
        .await?;
    Ok(Json(
        json!({"object": "list", "data_ref": "tiers", "tiers": l.tiers, "total": l.total, "has_more": l.has_more}),
    ))
}

/// Promotion tiers of every campaign of the project.
#[utoipa::path(get, path = "/v1/promotions/tiers", tag = "Promotions",
    params(("limit" = Option<u32>, Query), ("page" = Option<u32>, Query), ("is_available" = Option<bool>, Query), ("order" = Option<String>, Query)),
    responses((status = 200, description = "`{object, data_ref: tiers, tiers, total, has_more}`")), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn list_all_tiers(State(s): State<AppState>, Auth(t): Auth<Tenant>, q: RawQuery) -> ApiResult<Json<Value>> {
    list(s, t, None, tier_query(q)?).await
}

#[utoipa::path(get, path = "/v1/promotions/{campaignId}/tiers", tag = "Promotions",
    params(("campaignId" = String, Path), ("limit" = Option<u32>, Query), ("page" = Option<u32>, Query), ("is_available" = Option<bool>, Query), ("order" = Option<String>, Query)),
    responses((status = 200, description = "`{object, data_ref: tiers, tiers, total, has_more}`"), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn list_campaign_tiers(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(campaign): Path<String>,
    q: RawQuery,
) -> ApiResult<Json<Value>> {
    list(s, t, Some(campaign), tier_query(q)?).await
}

/// Adds a tier to a PROMOTION campaign.
#[utoipa::path(post, path = "/v1/promotions/{campaignId}/tiers", tag = "Promotions", request_body = TierInput, params(("campaignId" = String, Path)),
    responses((status = 200, description = "The promotion tier"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn create_tier(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(campaign): Path<String>,
    ApiJson(input): ApiJson<TierInput>,
) -> ApiResult<Json<Value>> {
    Ok(Json(s.store.create_tier(&t, campaign, input).await?))
}

#[utoipa::path(get, path = "/v1/promotions/tiers/{promotionTierId}", tag = "Promotions", params(("promotionTierId" = String, Path)),
    responses((status = 200, description = "The promotion tier"), (status = 404, body = ErrorBody)), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn get_tier(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(s.store.get_tier(&t, id).await?))
}

#[utoipa::path(put, path = "/v1/promotions/tiers/{promotionTierId}", tag = "Promotions", request_body = TierInput, params(("promotionTierId" = String, Path)),
    responses((status = 200, description = "The promotion tier"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn update_tier(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<TierInput>,
) -> ApiResult<Json<Value>> {
    Ok(Json(s.store.update_tier(&t, id, input).await?))
}

#[utoipa::path(delete, path = "/v1/promotions/tiers/{promotionTierId}", tag = "Promotions", params(("promotionTierId" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn delete_tier(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.store.delete_tier(&t, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/promotions/tiers/{promotionTierId}/enable", tag = "Promotions", params(("promotionTierId" = String, Path)),
    responses((status = 200, description = "The promotion tier"), (status = 404, body = ErrorBody)), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn enable_tier(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(s.store.set_tier_active(&t, id, true).await?))
}

#[utoipa::path(post, path = "/v1/promotions/tiers/{promotionTierId}/disable", tag = "Promotions", params(("promotionTierId" = String, Path)),
    responses((status = 200, description = "The promotion tier"), (status = 404, body = ErrorBody)), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn disable_tier(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(s.store.set_tier_active(&t, id, false).await?))
}

/// Which redeemables (promotion tiers, the customer's vouchers, promotion stacks) the
/// customer and cart qualify for, each evaluated alone against the cart.
#[utoipa::path(post, path = "/v1/qualifications", tag = "Qualifications", request_body = QualificationRequest,
    responses((status = 200, description = "`{redeemables: {object, data_ref, data, total, has_more, more_starting_after}, tracking_id, order, stacking_rules}`"),
        (status = 400, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn qualify(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    ApiJson(req): ApiJson<QualificationRequest>,
) -> ApiResult<Json<Value>> {
    Ok(Json(s.store.qualify(&t, req).await?))
}

/// Client-side qualification (from a browser or app with a client key).
#[utoipa::path(post, path = "/client/v1/qualifications", tag = "Client-side", request_body = QualificationRequest,
    responses((status = 200, description = "As POST /v1/qualifications"), (status = 400, body = ErrorBody)),
    security(("X-Client-Application-Id" = [], "X-Client-Token" = [])))]
pub async fn client_qualify(state: State<AppState>, auth: Auth<Tenant>, body: ApiJson<QualificationRequest>) -> ApiResult<Json<Value>> {
    qualify(state, auth, body).await
}
