//! Categories (`/v1/categories`): the groups stacking rules and promotion stacks name.

use crate::auth::Auth;
use crate::error::{ApiResult, ErrorBody};
use crate::json::ApiJson;
use crate::routes::{list_body, query_map};
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;
use tessera_domain::category::CategoryInput;
use tessera_domain::list;
use tessera_store::ops::categories::LIST_SPEC;
use tessera_store::Tenant;

/// Categories of the project, newest first. Voucherify takes no parameters here and
/// returns all; Tessera pages with `limit` (default and most 100), `page` and `order`
/// (`created_at`, `updated_at`, `name`, `-` for descending).
#[utoipa::path(get, path = "/v1/categories", tag = "Categories",
    params(("limit" = Option<u32>, Query), ("page" = Option<u32>, Query), ("order" = Option<String>, Query)),
    responses((status = 200, description = "`{object: list, data_ref: data, data: [category], total}`"), (status = 400, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn list(State(s): State<AppState>, Auth(t): Auth<Tenant>, q: RawQuery) -> ApiResult<Json<Value>> {
    let q = list::parse(&LIST_SPEC, &query_map(q)?)?;
    let (rows, total) = s.store.list_categories(&t, q).await?;
    Ok(Json(list_body("data", rows.iter().map(|c| c.view(None)).collect(), total, None)))
}

/// Creates a category. Names are unique in a project (409 `duplicate_found`).
#[utoipa::path(post, path = "/v1/categories", tag = "Categories", request_body = CategoryInput,
    responses((status = 200, description = "The category: `{id, name, hierarchy, object: category, created_at, updated_at}`"),
        (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn create(State(s): State<AppState>, Auth(t): Auth<Tenant>, ApiJson(input): ApiJson<CategoryInput>) -> ApiResult<Json<Value>> {
    let f = input.parse()?;
    Ok(Json(s.store.create_category(&t, f).await?.view(None)))
}

#[utoipa::path(get, path = "/v1/categories/{categoryId}", tag = "Categories",
    params(("categoryId" = String, Path)),
    responses((status = 200, description = "The category"), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn get(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(s.store.get_category(&t, id).await?.view(None)))
}

/// Replaces the name and hierarchy (both required, as in Voucherify).
#[utoipa::path(put, path = "/v1/categories/{categoryId}", tag = "Categories", request_body = CategoryInput,
    params(("categoryId" = String, Path)),
    responses((status = 200, description = "The category with its new `updated_at`"), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn update(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<CategoryInput>,
) -> ApiResult<Json<Value>> {
    let f = input.parse()?;
    Ok(Json(s.store.update_category(&t, id, f).await?.view(None)))
}

/// Deletes a category. Refused with 400 `category_in_use` while the project's stacking
/// rules name it; promotion stacks that name it show no category afterwards.
#[utoipa::path(delete, path = "/v1/categories/{categoryId}", tag = "Categories",
    params(("categoryId" = String, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn delete(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.store.delete_category(&t, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
