use crate::auth::Auth;
use crate::error::{ApiResult, ErrorBody};
use crate::json::ApiJson;
use crate::routes::{list_body, query_map};
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use tessera_domain::list;
use tessera_domain::product::{ProductInput, ProductView, SkuInput, SkuView};
use tessera_store::ops::products::{ProductWithSkus, LIST_SPEC};
use tessera_store::Tenant;

fn view((p, skus, n): ProductWithSkus) -> ProductView {
    ProductView::new(p, skus, n)
}

/// Creates a product, or updates the one named by `id` or `source_id`.
#[utoipa::path(post, path = "/v1/products", tag = "Products", request_body = ProductInput,
    responses((status = 200, body = ProductView), (status = 400, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn create(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    ApiJson(input): ApiJson<ProductInput>,
) -> ApiResult<Json<ProductView>> {
    Ok(Json(view(s.store.upsert_product(&t, input).await?)))
}

#[utoipa::path(get, path = "/v1/products/{productId}", tag = "Products",
    params(("productId" = String, Path, description = "Product id or source id")),
    responses((status = 200, body = ProductView), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn get(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(id): Path<String>) -> ApiResult<Json<ProductView>> {
    Ok(Json(view(s.store.get_product(&t, id).await?)))
}

#[utoipa::path(put, path = "/v1/products/{productId}", tag = "Products", request_body = ProductInput,
    params(("productId" = String, Path, description = "Product id or source id")),
    responses((status = 200, body = ProductView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn update(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ProductInput>,
) -> ApiResult<Json<ProductView>> {
    Ok(Json(view(s.store.update_product(&t, id, input).await?)))
}

/// Deletes the product and its SKUs permanently (Tessera has no bin).
#[utoipa::path(delete, path = "/v1/products/{productId}", tag = "Products",
    params(("productId" = String, Path, description = "Product id or source id")),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn delete(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.store.delete_product(&t, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/products", tag = "Products",
    params(("limit" = Option<u32>, Query), ("page" = Option<u32>, Query), ("order" = Option<String>, Query),
        ("start_date" = Option<String>, Query), ("end_date" = Option<String>, Query)),
    responses((status = 200, description = "`{object, data_ref: products, products, total}`"), (status = 400, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn list(State(s): State<AppState>, Auth(t): Auth<Tenant>, q: RawQuery) -> ApiResult<Json<serde_json::Value>> {
    let q = list::parse(&LIST_SPEC, &query_map(q)?)?;
    let (items, total) = s.store.list_products(&t, q).await?;
    Ok(Json(list_body("products", items.into_iter().map(view).collect(), total, None)))
}

/// Creates a SKU of the product, or updates the one named by `id` or `source_id`.
#[utoipa::path(post, path = "/v1/products/{productId}/skus", tag = "Products", request_body = SkuInput,
    params(("productId" = String, Path, description = "Product id or source id")),
    responses((status = 200, body = SkuView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn create_sku(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(pid): Path<String>,
    ApiJson(input): ApiJson<SkuInput>,
) -> ApiResult<Json<SkuView>> {
    Ok(Json(s.store.upsert_sku(&t, pid, input).await?.into()))
}

#[utoipa::path(get, path = "/v1/products/{productId}/skus", tag = "Products",
    params(("productId" = String, Path), ("limit" = Option<u32>, Query), ("page" = Option<u32>, Query), ("order" = Option<String>, Query)),
    responses((status = 200, description = "`{object, data_ref: skus, skus, total}`"), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn list_skus(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(pid): Path<String>,
    q: RawQuery,
) -> ApiResult<Json<serde_json::Value>> {
    let q = list::parse(&LIST_SPEC, &query_map(q)?)?;
    let (items, total) = s.store.list_skus(&t, pid, q).await?;
    Ok(Json(list_body("skus", items.into_iter().map(SkuView::from).collect(), total, None)))
}

/// One SKU of the product (Tessera addition; Voucherify reads SKUs at `/v1/skus/{skuId}`).
#[utoipa::path(get, path = "/v1/products/{productId}/skus/{skuId}", tag = "Products",
    params(("productId" = String, Path), ("skuId" = String, Path)),
    responses((status = 200, body = SkuView), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn get_product_sku(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path((pid, sid)): Path<(String, String)>,
) -> ApiResult<Json<SkuView>> {
    Ok(Json(s.store.get_sku(&t, Some(pid), sid).await?.into()))
}

#[utoipa::path(put, path = "/v1/products/{productId}/skus/{skuId}", tag = "Products", request_body = SkuInput,
    params(("productId" = String, Path), ("skuId" = String, Path)),
    responses((status = 200, body = SkuView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn update_sku(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path((pid, sid)): Path<(String, String)>,
    ApiJson(input): ApiJson<SkuInput>,
) -> ApiResult<Json<SkuView>> {
    Ok(Json(s.store.update_sku(&t, pid, sid, input).await?.into()))
}

#[utoipa::path(delete, path = "/v1/products/{productId}/skus/{skuId}", tag = "Products",
    params(("productId" = String, Path), ("skuId" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn delete_sku(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path((pid, sid)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.store.delete_sku(&t, pid, sid).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/skus/{skuId}", tag = "Products",
    params(("skuId" = String, Path, description = "SKU id or source id")),
    responses((status = 200, body = SkuView), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn get_sku(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(sid): Path<String>) -> ApiResult<Json<SkuView>> {
    Ok(Json(s.store.get_sku(&t, None, sid).await?.into()))
}
