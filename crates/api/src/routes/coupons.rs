//! Campaigns and vouchers.

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::ApiJson;
use crate::routes::{list_body, query_map};
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tessera_domain::list;
use tessera_domain::voucher::{CampaignInput, VoucherInput};
use tessera_store::ops::views;
use tessera_store::ops::vouchers::{CAMPAIGN_LIST_SPEC, VOUCHER_LIST_SPEC};
use tessera_store::Tenant;

/// Creates a campaign. With `vouchers_count` above 1 the codes are generated in the
/// background (an async action); the campaign reports `vouchers_generation_status`.
#[utoipa::path(post, path = "/v1/campaigns", tag = "Campaigns", request_body = CampaignInput,
    responses((status = 200, description = "The campaign"), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn create_campaign(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    ApiJson(input): ApiJson<CampaignInput>,
) -> ApiResult<Json<Value>> {
    let created = s.store.create_campaign(&t, input).await?;
    if let Some((action, _)) = created.generate {
        s.store.start_async_action(&t, action).await?;
    }
    Ok(Json(views::campaign(&created.campaign)))
}

#[utoipa::path(get, path = "/v1/campaigns", tag = "Campaigns",
    params(("limit" = Option<u32>, Query), ("page" = Option<u32>, Query), ("order" = Option<String>, Query), ("campaign_type" = Option<String>, Query)),
    responses((status = 200, description = "`{object, data_ref: campaigns, campaigns, total}`")),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn list_campaigns(State(s): State<AppState>, Auth(t): Auth<Tenant>, q: RawQuery) -> ApiResult<Json<Value>> {
    let q = list::parse(&CAMPAIGN_LIST_SPEC, &query_map(q)?)?;
    let (items, total) = s.store.list_campaigns(&t, q).await?;
    Ok(Json(list_body(
        "campaigns",
        items.iter().map(views::campaign).collect(),
        total,
        None,
    )))
}

#[utoipa::path(get, path = "/v1/campaigns/{campaignId}", tag = "Campaigns", params(("campaignId" = String, Path, description = "Id or name")),
    responses((status = 200, description = "The campaign"), (status = 404, body = ErrorBody)), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn get_campaign(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(views::campaign(&s.store.get_campaign(&t, id).await?)))
}

#[utoipa::path(put, path = "/v1/campaigns/{campaignId}", tag = "Campaigns", request_body = CampaignInput, params(("campaignId" = String, Path)),
    responses((status = 200, description = "The campaign"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn update_campaign(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<CampaignInput>,
) -> ApiResult<Json<Value>> {
    Ok(Json(views::campaign(&s.store.update_campaign(&t, id, input).await?)))
}

/// Deletes the campaign and its vouchers at once (Tessera has no bin); answers with a
/// completed async action as Voucherify does.
#[utoipa::path(delete, path = "/v1/campaigns/{campaignId}", tag = "Campaigns", params(("campaignId" = String, Path)),
    responses((status = 202, description = "`{async_action_id}`"), (status = 404, body = ErrorBody)), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn delete_campaign(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(id): Path<String>) -> ApiResult<Response> {
    s.store.delete_campaign(&t, id.clone()).await?;
    let action = s
        .store
        .record_completed_action(
            &t,
            "CAMPAIGN.VOUCHERS_DELETE",
            json!({"campaign_id": id}),
            json!({"message": "Deleted the campaign and its vouchers."}),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"async_action_id": action}))).into_response())
}

#[utoipa::path(post, path = "/v1/campaigns/{campaignId}/enable", tag = "Campaigns", params(("campaignId" = String, Path)),
    responses((status = 200, description = "`{}`"), (status = 404, body = ErrorBody)), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn enable_campaign(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    s.store.set_campaign_active(&t, id, true).await?;
    Ok(Json(json!({})))
}

#[utoipa::path(post, path = "/v1/campaigns/{campaignId}/disable", tag = "Campaigns", params(("campaignId" = String, Path)),
    responses((status = 200, description = "`{}`"), (status = 404, body = ErrorBody)), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn disable_campaign(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    s.store.set_campaign_active(&t, id, false).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize, Default)]
struct SummaryQuery {
    start_date: Option<String>,
    end_date: Option<String>,
}

/// Counters of a campaign from its redemption log and gift ledger.
#[utoipa::path(get, path = "/v1/campaigns/{campaignId}/summary", tag = "Campaigns",
    params(("campaignId" = String, Path), ("start_date" = Option<String>, Query), ("end_date" = Option<String>, Query)),
    responses((status = 200, description = "`{object: campaign_summary, ...}`"), (status = 404, body = ErrorBody)), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn campaign_summary(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(id): Path<String>,
    q: RawQuery,
) -> ApiResult<Json<Value>> {
    let q: SummaryQuery = serde_urlencoded::from_str(q.0.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request("invalid_query_params", "Invalid query parameters", e.to_string()))?;
    let parse = |name: &str, v: Option<String>| -> ApiResult<Option<String>> {
        v.map(|d| {
            tessera_domain::time::parse_lenient(&d)
                .map(tessera_domain::time::format)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_query_params",
                        "Invalid query parameters",
                        format!("'{name}' must be a date"),
                    )
                })
        })
        .transpose()
    };
    let (start, end) = (parse("start_date", q.start_date)?, parse("end_date", q.end_date)?);
    Ok(Json(s.store.campaign_summary(&t, id, start, end).await?))
}

#[derive(Deserialize, Default)]
struct AddQuery {
    vouchers_count: Option<u64>,
}

/// Adds vouchers with generated codes: one in the response, more as an async action.
#[utoipa::path(post, path = "/v1/campaigns/{campaignId}/vouchers", tag = "Campaigns", request_body = VoucherInput,
    params(("campaignId" = String, Path), ("vouchers_count" = Option<u64>, Query)),
    responses((status = 200, description = "The voucher"), (status = 202, description = "`{async_action_id}`"), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn add_vouchers(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(id): Path<String>,
    q: RawQuery,
    ApiJson(input): ApiJson<VoucherInput>,
) -> ApiResult<Response> {
    let query = serde_urlencoded::from_str::<AddQuery>(q.0.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request("invalid_query_params", "Invalid query parameters", e.to_string()))?;
    let count = query.vouchers_count.unwrap_or(1);
    if count == 0 || count > tessera_domain::voucher::MAX_VOUCHERS_PER_CAMPAIGN {
        return Err(ApiError::bad_request(
            "invalid_query_params",
            "Invalid query parameters",
            "'vouchers_count' must be from 1 to 10000000",
        ));
    }
    if count == 1 {
        let rec = s.store.add_campaign_voucher(&t, id, None, input).await?;
        return Ok(Json(views::voucher(&rec)).into_response());
    }
    let action = s.store.enqueue_generation(&t, id, count).await?;
    s.store.start_async_action(&t, action.clone()).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"async_action_id": action}))).into_response())
}

#[utoipa::path(post, path = "/v1/campaigns/{campaignId}/vouchers/{code}", tag = "Campaigns", request_body = VoucherInput,
    params(("campaignId" = String, Path), ("code" = String, Path)),
    responses((status = 200, description = "The voucher"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn add_voucher_with_code(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path((id, code)): Path<(String, String)>,
    ApiJson(input): ApiJson<VoucherInput>,
) -> ApiResult<Json<Value>> {
    Ok(Json(views::voucher(
        &s.store.add_campaign_voucher(&t, id, Some(code), input).await?,
    )))
}

/// Creates a voucher with a generated code (or `code` from the body).
#[utoipa::path(post, path = "/v1/vouchers", tag = "Vouchers", request_body = VoucherInput,
    responses((status = 200, description = "The voucher"), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn create_voucher(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    ApiJson(input): ApiJson<VoucherInput>,
) -> ApiResult<Json<Value>> {
    Ok(Json(views::voucher(&s.store.create_voucher(&t, None, input).await?)))
}

#[utoipa::path(post, path = "/v1/vouchers/{code}", tag = "Vouchers", request_body = VoucherInput, params(("code" = String, Path)),
    responses((status = 200, description = "The voucher"), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn create_voucher_with_code(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(code): Path<String>,
    ApiJson(input): ApiJson<VoucherInput>,
) -> ApiResult<Json<Value>> {
    Ok(Json(views::voucher(&s.store.create_voucher(&t, Some(code), input).await?)))
}

#[utoipa::path(get, path = "/v1/vouchers/{code}", tag = "Vouchers", params(("code" = String, Path)),
    responses((status = 200, description = "The voucher"), (status = 404, body = ErrorBody)), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn get_voucher(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(code): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(views::voucher(&s.store.get_voucher(&t, code).await?)))
}

#[utoipa::path(put, path = "/v1/vouchers/{code}", tag = "Vouchers", request_body = VoucherInput, params(("code" = String, Path)),
    responses((status = 200, description = "The voucher"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn update_voucher(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(code): Path<String>,
    ApiJson(input): ApiJson<VoucherInput>,
) -> ApiResult<Json<Value>> {
    Ok(Json(views::voucher(&s.store.update_voucher(&t, code, input).await?)))
}

/// Deletes the voucher permanently (its redemption history stays).
#[utoipa::path(delete, path = "/v1/vouchers/{code}", tag = "Vouchers", params(("code" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn delete_voucher(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(code): Path<String>) -> ApiResult<StatusCode> {
    s.store.delete_voucher(&t, code).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/vouchers/{code}/enable", tag = "Vouchers", params(("code" = String, Path)),
    responses((status = 200, description = "The voucher"), (status = 404, body = ErrorBody)), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn enable_voucher(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(code): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(views::voucher(&s.store.set_voucher_active(&t, code, true).await?)))
}

#[utoipa::path(post, path = "/v1/vouchers/{code}/disable", tag = "Vouchers", params(("code" = String, Path)),
    responses((status = 200, description = "The voucher"), (status = 404, body = ErrorBody)), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn disable_voucher(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(code): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(views::voucher(&s.store.set_voucher_active(&t, code, false).await?)))
}

#[utoipa::path(get, path = "/v1/vouchers", tag = "Vouchers",
    params(("limit" = Option<u32>, Query), ("page" = Option<u32>, Query), ("campaign_id" = Option<String>, Query), ("campaign" = Option<String>, Query),
        ("customer" = Option<String>, Query), ("code" = Option<String>, Query), ("order" = Option<String>, Query)),
    responses((status = 200, description = "`{object, data_ref: vouchers, vouchers, total}`")), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn list_vouchers(State(s): State<AppState>, Auth(t): Auth<Tenant>, q: RawQuery) -> ApiResult<Json<Value>> {
    let q = list::parse(&VOUCHER_LIST_SPEC, &query_map(q)?)?;
    let (items, total) = s.store.list_vouchers(&t, q).await?;
    Ok(Json(list_body("vouchers", items.iter().map(views::voucher).collect(), total, None)))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct BalanceInput {
    /// Minor units to add (negative to remove).
    pub amount: i64,
    #[serde(default)]
    pub source_id: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Adds to or removes from a gift card's balance; the change is a ledger entry.
#[utoipa::path(post, path = "/v1/vouchers/{code}/balance", tag = "Vouchers", request_body = BalanceInput, params(("code" = String, Path)),
    responses((status = 200, description = "`{amount, total, balance, type, operation_type, object, related_object}`"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn adjust_balance(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(code): Path<String>,
    ApiJson(input): ApiJson<BalanceInput>,
) -> ApiResult<Json<Value>> {
    for (name, v) in [("source_id", &input.source_id), ("reason", &input.reason)] {
        if let Some(v) = v {
            tessera_domain::customer::check_identifier(name, v)?;
        }
    }
    let b = s
        .store
        .adjust_gift_balance(&t, code, input.amount, input.source_id, input.reason)
        .await?;
    Ok(Json(json!({
        "amount": b.amount, "total": b.total, "balance": b.balance, "type": "gift_voucher", "operation_type": "MANUAL",
        "object": "balance", "related_object": {"type": "voucher", "id": b.voucher_id},
    })))
}

#[derive(Deserialize, Default)]
struct TxQuery {
    limit: Option<u32>,
    order: Option<String>,
    starting_after_id: Option<String>,
}

/// The gift card's ledger.
#[utoipa::path(get, path = "/v1/vouchers/{code}/transactions", tag = "Vouchers",
    params(("code" = String, Path), ("limit" = Option<u32>, Query), ("order" = Option<String>, Query), ("starting_after_id" = Option<String>, Query)),
    responses((status = 200, description = "`{object, data_ref: data, data, has_more}`"), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn transactions(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(code): Path<String>,
    q: RawQuery,
) -> ApiResult<Json<Value>> {
    let q: TxQuery = serde_urlencoded::from_str(q.0.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request("invalid_query_params", "Invalid query parameters", e.to_string()))?;
    let limit = q.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query_params",
            "Invalid query parameters",
            "'limit' must be from 1 to 100",
        ));
    }
    let descending = match q.order.as_deref() {
        None | Some("-id") => true,
        Some("id") => false,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_query_params",
                "Invalid query parameters",
                "'order' must be id or -id",
            ))
        }
    };
    let (rows, more) = s.store.gift_transactions(&t, code, limit, descending, q.starting_after_id).await?;
    let mut data = Vec::new();
    for r in rows {
        let id = r.text(0)?;
        let amount = r.int(3)?;
        data.push(json!({
            "id": id, "source_id": r.opt_text(6)?, "voucher_id": r.text(1)?, "campaign_id": null, "source": "API",
            "reason": r.opt_text(7)?, "type": r.text(2)?, "related_transaction_id": null, "created_at": r.text(8)?,
            "details": {
                "balance": {"type": "gift_voucher", "total": null, "amount": amount, "object": "balance", "balance": r.int(4)?,
                    "related_object": {"id": r.text(1)?, "type": "voucher"}, "operation_type": if r.opt_text(5)?.is_some() { "AUTOMATIC" } else { "MANUAL" }},
                "redemption": r.opt_text(5)?.map(|id| json!({"id": id})),
            },
        }));
    }
    let last = data.last().and_then(|d| d["id"].as_str()).map(str::to_string);
    let mut body = json!({"object": "list", "data_ref": "data", "data": data, "has_more": more});
    if more {
        body["more_starting_after"] = json!(last);
    }
    Ok(Json(body))
}

/// Releases a reservation held by a validation session.
#[utoipa::path(delete, path = "/v1/vouchers/{code}/sessions/{sessionKey}", tag = "Vouchers",
    params(("code" = String, Path), ("sessionKey" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn release_session(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path((code, key)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.store.release_session(&t, code, key).await?;
    Ok(StatusCode::NO_CONTENT)
}
