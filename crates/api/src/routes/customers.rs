use crate::auth::Auth;
use crate::error::ApiError;
use crate::error::{ApiResult, ErrorBody};
use crate::json::ApiJson;
use crate::routes::{list_body, query_map};
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::json;
use std::collections::BTreeMap;
use tessera_domain::customer::{Customer, CustomerInput, CustomerView};
use tessera_domain::list;
use tessera_store::ops::activity::{ActivityQuery, Category};
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

/// Deletes the customer for good: the customer, their attribute index and segment
/// memberships go, and their personal data is scrubbed from every record that kept a copy
/// (redemptions, rollbacks, publications, events, webhook deliveries, stored responses).
/// Records keep the customer id, so counters, limits, ledgers and statistics are
/// unchanged. One transaction; `customer.deleted` is emitted.
#[utoipa::path(post, path = "/v1/customers/{customerId}/permanent-deletion", tag = "Customers",
    params(("customerId" = String, Path, description = "Customer id or source id")),
    responses((status = 200, description = "`{id, created_at, related_object_id, related_object: customer, status: DONE, data_json: {events, customer_events, daily_events, segments, orders, order_events, customer, ...}, object: pernament_deletion}`"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn permanent_deletion(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let done = s.store.permanently_delete_customer(&t, id).await?;
    Ok(Json(serde_json::to_value(done).map_err(|_| ApiError::internal())?))
}

/// What `/activity` and `/activities` accept; parsed with the shared list rules (limit,
/// order, dates and their range) and checked against Voucherify's enums.
fn activity_query(params: &BTreeMap<String, String>, deprecated: bool) -> ApiResult<ActivityQuery> {
    const SPEC: list::ListSpec = list::ListSpec {
        sorts: &[list::SortField::CreatedAt],
        filters: &["campaign_id", "campaign_type", "category", "type", "starting_after_id"],
        default_limit: 10,
    };
    if deprecated && params.contains_key("product_id") {
        return Err(ApiError::bad_request(
            "invalid_query_params",
            "Invalid query parameters",
            "Filtering activities by 'product_id' is not supported.",
        ));
    }
    let q = list::parse(&SPEC, params)?;
    let invalid = |details: String| ApiError::bad_request("invalid_query_params", "Invalid query parameters", details);
    let f = |name: &str| q.filters.get(name).cloned();
    let campaign_type = f("campaign_type");
    if let Some(ct) = &campaign_type {
        const TYPES: [&str; 5] = [
            "DISCOUNT_COUPONS",
            "REFERRAL_PROGRAM",
            "GIFT_VOUCHERS",
            "PROMOTION",
            "LOYALTY_PROGRAM",
        ];
        if !TYPES.contains(&ct.as_str()) {
            return Err(invalid(format!("'campaign_type' must be one of {}", TYPES.join(", "))));
        }
    }
    let category = match f("category") {
        Some(c) => Some(Category::parse(&c).ok_or_else(|| invalid("'category' must be ACTION or EFFECT".into()))?),
        None => None,
    };
    let kind = f("type");
    if kind.as_deref().is_some_and(|k| !k.starts_with("customer.")) {
        return Err(invalid(
            "'type' must be a customer event type, such as customer.redemption.succeeded".into(),
        ));
    }
    Ok(ActivityQuery {
        limit: q.limit,
        ascending: !q.descending,
        starting_after_id: f("starting_after_id"),
        // `/activity` pages by id only; its `starting_after` is not a parameter.
        starting_after: if deprecated { q.starting_after.clone() } else { None },
        since: q.created_after.clone(),
        until: q.created_before.clone(),
        campaign_id: f("campaign_id"),
        campaign_type,
        category,
        kind,
        with_total: deprecated,
    })
}

/// The customer's activity, newest first: created and updated, codes published to them,
/// redemptions, failures and rollbacks, and orders. Paged by `starting_after_id`.
#[utoipa::path(get, path = "/v1/customers/{customerId}/activity", tag = "Customers",
    params(("customerId" = String, Path, description = "Customer id or source id"),
        ("limit" = Option<u32>, Query, description = "1 to 100, default 10"),
        ("order" = Option<String>, Query, description = "created_at or -created_at (default)"),
        ("starting_after_id" = Option<String>, Query, description = "The id of the last entry of the previous page"),
        ("start_date" = Option<String>, Query), ("end_date" = Option<String>, Query),
        ("campaign_id" = Option<String>, Query), ("campaign_type" = Option<String>, Query),
        ("category" = Option<String>, Query, description = "ACTION or EFFECT"),
        ("type" = Option<String>, Query, description = "One activity type, such as customer.redemption.succeeded"),
    ),
    responses((status = 200, description = "`{object: list, data_ref: data, data: [{id, type, category, data: {data, event_source}, created_at}], has_more, more_starting_after}`"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn activity(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(id): Path<String>,
    q: RawQuery,
) -> ApiResult<Json<serde_json::Value>> {
    let q = activity_query(&query_map(q)?, false)?;
    let page = s.store.customer_activity(&t, id, q).await?;
    let mut body = json!({"object": "list", "data_ref": "data", "data": page.items, "has_more": page.has_more});
    if page.has_more {
        let last = body["data"].as_array().and_then(|d| d.last()).map(|e| e["id"].clone());
        body["more_starting_after"] = last.unwrap_or_default();
    }
    Ok(Json(body))
}

/// The deprecated form of the activity list: the same entries, with `total`, paged by
/// `starting_after` (a date) or `starting_after_id`.
#[utoipa::path(get, path = "/v1/customers/{customerId}/activities", tag = "Customers",
    params(("customerId" = String, Path, description = "Customer id or source id"),
        ("limit" = Option<u32>, Query, description = "1 to 100, default 10"),
        ("order" = Option<String>, Query, description = "created_at or -created_at (default)"),
        ("starting_after" = Option<String>, Query, description = "Entries before this date (after it with order=created_at)"),
        ("starting_after_id" = Option<String>, Query),
        ("start_date" = Option<String>, Query), ("end_date" = Option<String>, Query),
        ("campaign_id" = Option<String>, Query), ("campaign_type" = Option<String>, Query),
    ),
    responses((status = 200, description = "`{object: list, data_ref: data, data, total}`"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn activities(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(id): Path<String>,
    q: RawQuery,
) -> ApiResult<Json<serde_json::Value>> {
    let q = activity_query(&query_map(q)?, true)?;
    let page = s.store.customer_activity(&t, id, q).await?;
    Ok(Json(
        json!({"object": "list", "data_ref": "data", "data": page.items, "total": page.total.unwrap_or_default()}),
    ))
}
