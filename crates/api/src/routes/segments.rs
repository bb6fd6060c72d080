//! Customer segments, the customer's segments, and publication to a segment.

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::ApiJson;
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tessera_domain::publication::{CampaignRef, PublicationInput};
use tessera_domain::segment::SegmentInput;
use tessera_store::Tenant;

fn bad_query(details: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_query_params", "Invalid query parameters", details)
}

/// Creates a static segment (a list of customers) or an auto-update segment (a filter on
/// customer attributes; its existing members are found by an async action).
#[utoipa::path(post, path = "/v1/segments", tag = "Segments", request_body = SegmentInput,
    responses((status = 200, description = "The segment; `initial_sync_status` is IN_PROGRESS until an auto-update segment has checked every customer"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn create(State(s): State<AppState>, Auth(t): Auth<Tenant>, ApiJson(input): ApiJson<SegmentInput>) -> ApiResult<Json<Value>> {
    Ok(Json(s.store.create_segment(&t, input).await?))
}

#[utoipa::path(get, path = "/v1/segments/{segmentId}", tag = "Segments", params(("segmentId" = String, Path)),
    responses((status = 200, description = "The segment, with `customers_count`"), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn get(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(s.store.get_segment(&t, id).await?))
}

#[utoipa::path(delete, path = "/v1/segments/{segmentId}", tag = "Segments", params(("segmentId" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn delete(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.store.delete_segment(&t, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
struct Paging {
    limit: Option<u32>,
    page: Option<u32>,
}

/// Segments, newest first (Tessera addition).
#[utoipa::path(get, path = "/v1/segments", tag = "Segments", params(("limit" = Option<u32>, Query), ("page" = Option<u32>, Query)),
    responses((status = 200, description = "`{object, data_ref: segments, segments, total}`"), (status = 400, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn list(State(s): State<AppState>, Auth(t): Auth<Tenant>, q: RawQuery) -> ApiResult<Json<Value>> {
    let q: Paging = serde_urlencoded::from_str(q.0.as_deref().unwrap_or("")).map_err(|e| bad_query(e.to_string()))?;
    let limit = q.limit.unwrap_or(10);
    let page = q.page.unwrap_or(1);
    if !(1..=100).contains(&limit) || !(1..=1000).contains(&page) {
        return Err(bad_query("'limit' must be from 1 to 100 and 'page' from 1 to 1000"));
    }
    let (items, total) = s.store.list_segments(&t, limit, page).await?;
    Ok(Json(
        json!({"object": "list", "data_ref": "segments", "segments": items, "total": total}),
    ))
}

/// The segments a customer belongs to.
#[utoipa::path(get, path = "/v1/customers/{customerId}/segments", tag = "Customers", params(("customerId" = String, Path)),
    responses((status = 200, description = "`{object, data_ref: data, data, total}`"), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn of_customer(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let items = s.store.customer_segments(&t, id).await?;
    let total = items.len();
    Ok(Json(json!({"object": "list", "data_ref": "data", "data": items, "total": total})))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct SegmentPublication {
    /// The campaign (name or id) whose codes are handed out.
    #[schema(value_type = Object)]
    pub campaign: CampaignRef,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

/// Gives every member of the segment one code of the campaign, as an async action
/// (Tessera addition). Members who already hold a code of the campaign keep it.
#[utoipa::path(post, path = "/v1/segments/{segmentId}/publications", tag = "Segments", request_body = SegmentPublication,
    params(("segmentId" = String, Path)),
    responses((status = 202, description = "`{async_action_id}`"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn publish(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SegmentPublication>,
) -> ApiResult<Response> {
    let input = PublicationInput {
        campaign: Some(body.campaign),
        channel: body.channel,
        metadata: body.metadata,
        ..Default::default()
    };
    let action = s.store.publish_segment(&t, id, input).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"async_action_id": action}))).into_response())
}
