use crate::auth::Auth;
use crate::error::{ApiResult, ErrorBody};
use crate::json::ApiJson;
use crate::routes::{list_body, query_map};
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use tessera_domain::list;
use tessera_domain::order::{OrderInput, OrderView};
use tessera_store::ops::orders::LIST_SPEC;
use tessera_store::Tenant;

/// Creates an order, or updates the one named by `id` or `source_id`. A `customer` with a
/// `source_id` is upserted with the order.
#[utoipa::path(post, path = "/v1/orders", tag = "Orders", request_body = OrderInput,
    responses((status = 200, body = OrderView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn create(State(s): State<AppState>, Auth(t): Auth<Tenant>, ApiJson(input): ApiJson<OrderInput>) -> ApiResult<Json<OrderView>> {
    Ok(Json(s.store.upsert_order(&t, input).await?.into()))
}

#[utoipa::path(get, path = "/v1/orders/{orderId}", tag = "Orders",
    params(("orderId" = String, Path, description = "Order id or source id")),
    responses((status = 200, body = OrderView), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn get(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(id): Path<String>) -> ApiResult<Json<OrderView>> {
    Ok(Json(s.store.get_order(&t, id).await?.into()))
}

#[utoipa::path(put, path = "/v1/orders/{orderId}", tag = "Orders", request_body = OrderInput,
    params(("orderId" = String, Path, description = "Order id or source id")),
    responses((status = 200, body = OrderView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn update(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<OrderInput>,
) -> ApiResult<Json<OrderView>> {
    Ok(Json(s.store.update_order(&t, id, input).await?.into()))
}

#[utoipa::path(get, path = "/v1/orders", tag = "Orders",
    params(("limit" = Option<u32>, Query), ("page" = Option<u32>, Query), ("order" = Option<String>, Query)),
    responses((status = 200, description = "`{object, data_ref: orders, orders, total}`"), (status = 400, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn list(State(s): State<AppState>, Auth(t): Auth<Tenant>, q: RawQuery) -> ApiResult<Json<serde_json::Value>> {
    let q = list::parse(&LIST_SPEC, &query_map(q)?)?;
    let (items, total) = s.store.list_orders(&t, q).await?;
    Ok(Json(list_body(
        "orders",
        items.into_iter().map(OrderView::from).collect(),
        total,
        None,
    )))
}
