use crate::auth::Auth;
use crate::error::ApiError;
use crate::error::{ApiResult, ErrorBody};
use crate::json::ApiJson;
use crate::routes::{list_body, query_map};
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use tessera_domain::customer::{Customer, CustomerInput, CustomerView};
use tessera_domain::list;
use tessera_store::Tenant;

async fn views(s: &AppState, t: &Tenant, customers: Vec<Customer>) -> ApiResult<Vec<CustomerView>> {
    let mut summaries = s
        .store
        .customer_summaries(t, customers.iter().map(|c| c.id.clone()).collect())
        .await?;
    Ok(customers
        .into_iter()
        .map(|c| {
            let summary = summaries.remove(&c.id).unwrap_or_default();
            CustomerView::new(c, summary)
        })
        .collect())
}

async fn view(s: &AppState, t: &Tenant, c: Customer) -> ApiResult<CustomerView> {
    let mut v = views(s, t, vec![c]).await?;
    v.pop().ok_or_else(ApiError::internal)
}

/// Creates a customer, or updates the one named by `id` or `source_id`.
#[utoipa::path(post, path = "/v1/customers", tag = "Customers", request_body = CustomerInput,
    responses((status = 200, body = CustomerView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn create(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    ApiJson(input): ApiJson<CustomerInput>,
) -> ApiResult<Json<CustomerView>> {
    let c = s.store.upsert_customer(&t, input).await?;
    Ok(Json(view(&s, &t, c).await?))
}

/// A customer by id or source id.
#[utoipa::path(get, path = "/v1/customers/{customerId}", tag = "Customers",
    params(("customerId" = String, Path, description = "Customer id or source id")),
    responses((status = 200, body = CustomerView), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn get(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(id): Path<String>) -> ApiResult<Json<CustomerView>> {
    let c = s.store.get_customer(&t, id).await?;
    Ok(Json(view(&s, &t, c).await?))
}

/// Updates the fields given; `null` clears a field.
#[utoipa::path(put, path = "/v1/customers/{customerId}", tag = "Customers", request_body = CustomerInput,
    params(("customerId" = String, Path, description = "Customer id or source id")),
    responses((status = 200, body = CustomerView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn update(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<CustomerInput>,
) -> ApiResult<Json<CustomerView>> {
    let c = s.store.update_customer(&t, id, input).await?;
    Ok(Json(view(&s, &t, c).await?))
}

#[utoipa::path(delete, path = "/v1/customers/{customerId}", tag = "Customers",
    params(("customerId" = String, Path, description = "Customer id or source id")),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn delete(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.store.delete_customer(&t, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists customers, newest first unless `order` says otherwise.
#[utoipa::path(get, path = "/v1/customers", tag = "Customers",
    params(
        ("limit" = Option<u32>, Query, description = "1 to 100, default 10"),
        ("page" = Option<u32>, Query, description = "1 to 100"),
        ("email" = Option<String>, Query), ("name" = Option<String>, Query), ("city" = Option<String>, Query),
        ("source_id" = Option<String>, Query), ("segment_id" = Option<String>, Query, description = "Members of a segment"),
        ("metadata[key]" = Option<String>, Query, description = "Customers whose metadata `key` holds the value (up to 5 metadata/address filters)"),
        ("address[country]" = Option<String>, Query, description = "Also address[city], address[state], address[postal_code]"),
        ("created_at[before]" = Option<String>, Query), ("created_at[after]" = Option<String>, Query),
        ("updated_at[before]" = Option<String>, Query), ("updated_at[after]" = Option<String>, Query),
        ("order" = Option<String>, Query, description = "created_at, updated_at or source_id; prefix - for descending"),
        ("starting_after" = Option<String>, Query),
    ),
    responses((status = 200, description = "`{object, data_ref: customers, customers, total, has_more}`"), (status = 400, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn list(State(s): State<AppState>, Auth(t): Auth<Tenant>, q: RawQuery) -> ApiResult<Json<serde_json::Value>> {
    let mut params = query_map(q)?;
    let segment = params.remove("segment_id");
    // `metadata[key]=value` and `address[country]=value` search the attribute index.
    let mut attrs = Vec::new();
    for key in params
        .keys()
        .filter(|k| k.starts_with("metadata[") || k.starts_with("address["))
        .cloned()
        .collect::<Vec<_>>()
    {
        let value = params.remove(&key).unwrap_or_default();
        let (group, rest) = key.split_once('[').unwrap_or_default();
        let field = rest.strip_suffix(']').unwrap_or_default();
        if field.is_empty() || field.contains(['[', ']']) || field.len() > 100 {
            return Err(ApiError::bad_request(
                "invalid_query_params",
                "Invalid query parameters",
                format!("cannot read the filter '{key}'; use metadata[key]=value"),
            ));
        }
        attrs.push((format!("{group}.{field}"), value));
    }
    if attrs.len() > 5 {
        return Err(ApiError::bad_request(
            "invalid_query_params",
            "Invalid query parameters",
            "at most 5 metadata or address filters",
        ));
    }
    let q = list::parse(&tessera_store::ops::customers::LIST_SPEC, &params)?;
    let offset = q.offset() as i64;
    let (items, total) = s.store.list_customers(&t, q, segment, attrs).await?;
    let has_more = offset + (items.len() as i64) < total;
    Ok(Json(list_body("customers", views(&s, &t, items).await?, total, Some(has_more))))
}
