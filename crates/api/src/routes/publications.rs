//! Publications and the customer's wallet.

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::ApiJson;
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tessera_domain::publication::PublicationInput;
use tessera_store::Tenant;

fn bad_query(details: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_query_params", "Invalid query parameters", details)
}

#[derive(Deserialize, Default)]
struct PublishQuery {
    join_once: Option<bool>,
}

/// Hands a specific code, or the next free code of a campaign, to a customer.
#[utoipa::path(post, path = "/v1/publications", tag = "Publications", request_body = PublicationInput,
    params(("join_once" = Option<bool>, Query, description = "Return the customer's earlier publication of the campaign instead of a new code")),
    responses((status = 200, description = "The publication (`voucher`, or `vouchers` when `campaign.count` is above 1)"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn create(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    q: RawQuery,
    ApiJson(input): ApiJson<PublicationInput>,
) -> ApiResult<Json<Value>> {
    let q: PublishQuery = serde_urlencoded::from_str(q.0.as_deref().unwrap_or("")).map_err(|e| bad_query(e.to_string()))?;
    Ok(Json(s.store.publish(&t, input, q.join_once.unwrap_or(false)).await?))
}

/// Rebuilds the nested object of a deepObject query (`customer[source_id]=a`,
/// `campaign[count]=2`, `metadata[key]=v`). Counts become numbers and the join_once flag
/// is returned on its own; every other value stays a string.
fn deep_object(pairs: Vec<(String, String)>) -> ApiResult<(Value, Option<bool>)> {
    let mut root = serde_json::Map::new();
    let mut join_once = None;
    for (key, value) in pairs {
        if key == "join_once" {
            join_once = Some(value.parse::<bool>().map_err(|_| bad_query("'join_once' must be true or false"))?);
            continue;
        }
        let mut parts = key.split('[');
        let head = parts.next().unwrap_or_default().to_string();
        let path: Vec<String> = parts.map(|p| p.trim_end_matches(']').to_string()).collect();
        if path.len() > 2 || head.is_empty() || path.iter().any(String::is_empty) {
            return Err(bad_query(format!("cannot read the query parameter '{key}'")));
        }
        let leaf = if key == "campaign[count]" {
            Value::from(value.parse::<u32>().map_err(|_| bad_query("'campaign[count]' must be a number"))?)
        } else {
            Value::from(value)
        };
        let mut slot = &mut root;
        let mut name = head;
        for p in path {
            let entry = slot.entry(name).or_insert_with(|| Value::Object(serde_json::Map::new()));
            slot = entry
                .as_object_mut()
                .ok_or_else(|| bad_query(format!("'{key}' conflicts with another parameter")))?;
            name = p;
        }
        slot.insert(name, leaf);
    }
    Ok((Value::Object(root), join_once))
}

/// The publication of `POST /v1/publications`, with its fields as query parameters.
#[utoipa::path(get, path = "/v1/publications/create", tag = "Publications",
    params(("join_once" = Option<bool>, Query), ("voucher" = Option<String>, Query), ("campaign[name]" = Option<String>, Query),
        ("campaign[count]" = Option<u32>, Query), ("customer[source_id]" = Option<String>, Query), ("customer[id]" = Option<String>, Query),
        ("source_id" = Option<String>, Query), ("channel" = Option<String>, Query)),
    responses((status = 200, description = "The publication"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn create_by_query(State(s): State<AppState>, Auth(t): Auth<Tenant>, q: RawQuery) -> ApiResult<Json<Value>> {
    let raw = q.0.unwrap_or_default();
    if raw.len() > 4096 {
        return Err(bad_query("The query string is too long."));
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&raw).map_err(|e| bad_query(e.to_string()))?;
    let (body, join_once) = deep_object(pairs)?;
    let input: PublicationInput = serde_json::from_value(body).map_err(|e| bad_query(e.to_string()))?;
    Ok(Json(s.store.publish(&t, input, join_once.unwrap_or(false)).await?))
}

#[derive(Deserialize, Default)]
struct ListQuery {
    limit: Option<u32>,
    page: Option<u32>,
    order: Option<String>,
    campaign: Option<String>,
    customer: Option<String>,
    voucher: Option<String>,
    source_id: Option<String>,
}

fn paging(limit: Option<u32>, page: Option<u32>) -> ApiResult<(u32, u32)> {
    let limit = limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(bad_query("'limit' must be from 1 to 100"));
    }
    let page = page.unwrap_or(1);
    if !(1..=1000).contains(&page) {
        return Err(bad_query("'page' must be from 1 to 1000"));
    }
    Ok((limit, page))
}

#[utoipa::path(get, path = "/v1/publications", tag = "Publications",
    params(("limit" = Option<u32>, Query), ("page" = Option<u32>, Query), ("order" = Option<String>, Query), ("campaign" = Option<String>, Query),
        ("customer" = Option<String>, Query), ("voucher" = Option<String>, Query), ("source_id" = Option<String>, Query)),
    responses((status = 200, description = "`{object, data_ref: publications, publications, total}`"), (status = 400, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn list(State(s): State<AppState>, Auth(t): Auth<Tenant>, q: RawQuery) -> ApiResult<Json<Value>> {
    let q: ListQuery = serde_urlencoded::from_str(q.0.as_deref().unwrap_or("")).map_err(|e| bad_query(e.to_string()))?;
    let (limit, page) = paging(q.limit, q.page)?;
    let ascending = match q.order.as_deref() {
        None | Some("-created_at") => false,
        Some("created_at") => true,
        Some(o) => {
            return Err(bad_query(format!(
                "cannot order publications by '{o}'; use created_at or -created_at"
            )))
        }
    };
    let mut filters = Vec::new();
    for (name, v) in [
        ("campaign", q.campaign),
        ("customer", q.customer),
        ("voucher", q.voucher),
        ("source_id", q.source_id),
    ] {
        if let Some(v) = v {
            tessera_domain::customer::check_identifier(name, &v)?;
            filters.push((name, v));
        }
    }
    let l = s.store.list_publications(&t, filters, limit, page, ascending).await?;
    Ok(Json(
        json!({"object": "list", "data_ref": "publications", "publications": l.items, "total": l.total}),
    ))
}

#[derive(Deserialize, Default)]
struct WalletQuery {
    limit: Option<u32>,
    page: Option<u32>,
}

/// The codes the customer holds, with their status.
#[utoipa::path(get, path = "/v1/customers/{customerId}/redeemables", tag = "Customers",
    params(("customerId" = String, Path), ("limit" = Option<u32>, Query), ("page" = Option<u32>, Query)),
    responses((status = 200, description = "`{object, data_ref: data, data, total, has_more}`"), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn wallet(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(id): Path<String>, q: RawQuery) -> ApiResult<Json<Value>> {
    let q: WalletQuery = serde_urlencoded::from_str(q.0.as_deref().unwrap_or("")).map_err(|e| bad_query(e.to_string()))?;
    let (limit, page) = paging(q.limit, q.page)?;
    let (items, total) = s.store.customer_redeemables(&t, id, limit, page).await?;
    let shown = i64::from(page - 1) * i64::from(limit) + items.len() as i64;
    Ok(Json(
        json!({"object": "list", "data_ref": "data", "data": items, "total": total, "has_more": shown < total}),
    ))
}
