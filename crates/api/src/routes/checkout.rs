//! Validation, redemption and rollback: the checkout path.

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::{json_text, ApiJson};
use crate::routes::{list_body, query_map};
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tessera_domain::list;
use tessera_domain::redemption::{CheckoutRequest, GiftCredits, RedeemableRef, SessionRequest};
use tessera_store::ops::redemptions::{RedeemResult, LIST_SPEC};
use tessera_store::Tenant;

/// Validates 1 to 30 redeemables against a cart. Nothing changes unless `session` asks
/// for a reservation.
#[utoipa::path(post, path = "/v1/validations", tag = "Validations", request_body = CheckoutRequest,
    responses((status = 200, description = "`{valid, redeemables, skipped_redeemables, inapplicable_redeemables, order, tracking_id, stacking_rules}`"), (status = 400, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn validate(State(s): State<AppState>, Auth(t): Auth<Tenant>, ApiJson(req): ApiJson<CheckoutRequest>) -> ApiResult<Response> {
    Ok(json_text(s.store.validate_checkout_text(&t, req).await?))
}

fn failure(code: u16, key: String, message: String, details: String, body: Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    let mut body = body;
    body["code"] = json!(status.as_u16());
    body["key"] = json!(key);
    body["message"] = json!(message);
    body["details"] = json!(details);
    (status, Json(body)).into_response()
}

/// Client-side redemption (from a browser or app with a client key), allowed only when
/// the project enables it (`client_redeem_enabled`).
#[utoipa::path(post, path = "/client/v1/redemptions", tag = "Client-side", request_body = CheckoutRequest,
    responses((status = 200, description = "As POST /v1/redemptions"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("X-Client-Application-Id" = [], "X-Client-Token" = [])))]
pub async fn client_redeem(state: State<AppState>, auth: Auth<Tenant>, body: ApiJson<CheckoutRequest>) -> ApiResult<Response> {
    if !auth.0.client_redeem_enabled() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "client_redeem_disabled",
            "Client-side redemption is disabled",
            "Enable client_redeem_enabled on the project to redeem with client-side keys.",
        ));
    }
    redeem(state, auth, body).await
}

/// Client-side validation (from a browser or app with a client key).
#[utoipa::path(post, path = "/client/v1/validations", tag = "Client-side", request_body = CheckoutRequest,
    responses((status = 200, description = "As POST /v1/validations"), (status = 400, body = ErrorBody)),
    security(("X-Client-Application-Id" = [], "X-Client-Token" = [])))]
pub async fn client_validate(state: State<AppState>, auth: Auth<Tenant>, body: ApiJson<CheckoutRequest>) -> ApiResult<Response> {
    validate(state, auth, body).await
}

/// Redeems 1 to 30 redeemables in one transaction: all or nothing.
#[utoipa::path(post, path = "/v1/redemptions", tag = "Redemptions", request_body = CheckoutRequest,
    responses((status = 200, description = "`{redemptions, parent_redemption, order, inapplicable_redeemables, skipped_redeemables}`"), (status = 400, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn redeem(State(s): State<AppState>, Auth(t): Auth<Tenant>, ApiJson(req): ApiJson<CheckoutRequest>) -> ApiResult<Response> {
    Ok(match s.store.redeem(&t, req).await? {
        RedeemResult::Succeeded(body) => json_text(body),
        RedeemResult::Failed {
            code,
            key,
            message,
            details,
            body,
        } => failure(code, key, message, details, body),
    })
}

#[utoipa::path(get, path = "/v1/redemptions", tag = "Redemptions",
    params(("limit" = Option<u32>, Query), ("page" = Option<u32>, Query), ("result" = Option<String>, Query), ("campaign" = Option<String>, Query),
        ("customer" = Option<String>, Query), ("voucher_code" = Option<String>, Query), ("order" = Option<String>, Query),
        ("created_at[before]" = Option<String>, Query), ("created_at[after]" = Option<String>, Query)),
    responses((status = 200, description = "`{object, data_ref: redemptions, redemptions, total}`")), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn list_redemptions(State(s): State<AppState>, Auth(t): Auth<Tenant>, q: RawQuery) -> ApiResult<Json<Value>> {
    let mut params = query_map(q)?;
    // Voucherify orders redemptions by more fields; Tessera by date only.
    if let Some(o) = params.get("order").cloned() {
        if o != "created_at" && o != "-created_at" {
            return Err(ApiError::bad_request(
                "invalid_query_params",
                "Invalid query parameters",
                "'order' must be created_at or -created_at",
            ));
        }
    }
    if let Some(v) = params.remove("filters[voucher_code][conditions][$is][0]") {
        params.insert("voucher_code".into(), v);
    }
    let q = list::parse(&LIST_SPEC, &params)?;
    let (items, total) = s.store.list_redemptions(&t, q).await?;
    Ok(Json(list_body("redemptions", items, total, None)))
}

#[utoipa::path(get, path = "/v1/redemptions/{redemptionId}", tag = "Redemptions", params(("redemptionId" = String, Path)),
    responses((status = 200, description = "A redemption or a rollback"), (status = 404, body = ErrorBody)), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn get_redemption(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(s.store.get_redemption(&t, id).await?))
}

#[derive(Deserialize, Default)]
struct RollbackQuery {
    reason: Option<String>,
    tracking_id: Option<String>,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct RollbackBody {
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub tracking_id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub customer: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub order: Option<Value>,
}

fn rollback_args(q: RawQuery, body: RollbackBody) -> ApiResult<(Option<String>, Option<String>, Value)> {
    let q: RollbackQuery = serde_urlencoded::from_str(q.0.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request("invalid_query_params", "Invalid query parameters", e.to_string()))?;
    let reason = q.reason.or(body.reason);
    let tracking = q.tracking_id.or(body.tracking_id);
    for (name, v) in [("reason", &reason), ("tracking_id", &tracking)] {
        if let Some(v) = v {
            tessera_domain::customer::check_identifier(name, v)?;
        }
    }
    let metadata = body.metadata.unwrap_or_default();
    tessera_domain::customer::check_metadata("metadata", &metadata)?;
    Ok((reason, tracking, Value::Object(metadata)))
}

/// Rolls back one redemption, restoring exactly what it took.
#[utoipa::path(post, path = "/v1/redemptions/{redemptionId}/rollback", tag = "Redemptions", request_body = RollbackBody,
    params(("redemptionId" = String, Path), ("reason" = Option<String>, Query), ("tracking_id" = Option<String>, Query)),
    responses((status = 200, description = "The rollback"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn rollback(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(id): Path<String>,
    q: RawQuery,
    ApiJson(body): ApiJson<RollbackBody>,
) -> ApiResult<Json<Value>> {
    let (reason, tracking, metadata) = rollback_args(q, body)?;
    Ok(Json(s.store.rollback_redemption(&t, id, reason, tracking, metadata).await?))
}

/// Rolls back a stacked redemption: every redemption under the parent, at once.
#[utoipa::path(post, path = "/v1/redemptions/{parentRedemptionId}/rollbacks", tag = "Redemptions", request_body = RollbackBody,
    params(("parentRedemptionId" = String, Path), ("reason" = Option<String>, Query), ("tracking_id" = Option<String>, Query)),
    responses((status = 200, description = "`{rollbacks, parent_rollback, order}`"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn rollback_stacked(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(id): Path<String>,
    q: RawQuery,
    ApiJson(body): ApiJson<RollbackBody>,
) -> ApiResult<Json<Value>> {
    let (reason, tracking, metadata) = rollback_args(q, body)?;
    Ok(Json(s.store.rollback_stacked(&t, id, reason, tracking, metadata).await?))
}

/// The body of the legacy single-code endpoints.
#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct LegacyBody {
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub customer: Option<tessera_domain::customer::CustomerInput>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub order: Option<tessera_domain::order::OrderInput>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub session: Option<SessionRequest>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub gift: Option<GiftCredits>,
    #[serde(default)]
    pub tracking_id: Option<String>,
}

fn legacy_request(code: String, b: LegacyBody, tracking: Option<String>) -> CheckoutRequest {
    CheckoutRequest {
        redeemables: vec![RedeemableRef {
            object: "voucher".into(),
            id: code,
            gift: b.gift,
            reward: None,
        }],
        order: b.order,
        customer: b.customer,
        session: b.session,
        tracking_id: tracking.or(b.tracking_id),
        metadata: b.metadata,
        options: None,
    }
}

/// Legacy single-code validation (deprecated by Voucherify; kept for older clients).
#[utoipa::path(post, path = "/v1/vouchers/{code}/validate", tag = "Validations", request_body = LegacyBody, params(("code" = String, Path)),
    responses((status = 200, description = "`{valid, code, ...}`; an invalid code is also a 200 with `valid: false` and `error`")),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn legacy_validate(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(code): Path<String>,
    ApiJson(body): ApiJson<LegacyBody>,
) -> ApiResult<Json<Value>> {
    let metadata = body.metadata.clone().unwrap_or_default();
    let v = s.store.validate_checkout(&t, legacy_request(code.clone(), body, None)).await?;
    let tracking = v["tracking_id"].clone();
    let first = v["redeemables"].get(0).cloned().unwrap_or(Value::Null);
    if v["valid"] == true {
        let voucher = s.store.get_voucher(&t, code.clone()).await.ok();
        let mut out = json!({
            "valid": true, "code": code, "applicable_to": first["applicable_to"], "inapplicable_to": first["inapplicable_to"],
            "metadata": metadata, "tracking_id": tracking, "order": v["order"],
        });
        if let Some(rec) = voucher {
            out["campaign"] = json!(rec.voucher.campaign);
            out["campaign_id"] = json!(rec.voucher.campaign_id);
            out["start_date"] = json!(rec.voucher.schedule.start_date);
            out["expiration_date"] = json!(rec.voucher.schedule.expiration_date);
            let view = tessera_store::ops::views::voucher(&rec);
            out["discount"] = view["discount"].clone();
            out["gift"] = view["gift"].clone();
        }
        if let Some(sess) = v.get("session") {
            out["session"] = sess.clone();
        }
        return Ok(Json(out));
    }
    let error = first["result"]["error"].clone();
    Ok(Json(json!({
        "valid": false, "code": code, "reason": error["message"], "error": error, "tracking_id": tracking, "metadata": metadata,
    })))
}

/// Legacy single-code redemption (deprecated by Voucherify; kept for older clients).
#[utoipa::path(post, path = "/v1/vouchers/{code}/redemption", tag = "Redemptions", request_body = LegacyBody,
    params(("code" = String, Path), ("tracking_id" = Option<String>, Query)),
    responses((status = 200, description = "The redemption"), (status = 400, body = ErrorBody)), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn legacy_redeem(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(code): Path<String>,
    q: RawQuery,
    ApiJson(body): ApiJson<LegacyBody>,
) -> ApiResult<Response> {
    let q: RollbackQuery = serde_urlencoded::from_str(q.0.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request("invalid_query_params", "Invalid query parameters", e.to_string()))?;
    Ok(match s.store.redeem(&t, legacy_request(code, body, q.tracking_id)).await? {
        RedeemResult::Succeeded(body) => {
            let v: Value = serde_json::from_str(&body).map_err(|e| {
                tracing::error!(error = %e, "redemption response is not JSON");
                ApiError::internal()
            })?;
            Json(v["redemptions"].get(0).cloned().unwrap_or(Value::Null)).into_response()
        }
        RedeemResult::Failed {
            code,
            key,
            message,
            details,
            body,
        } => {
            let resource = body["redemptions"].get(0).and_then(|r| r["id"].as_str()).map(str::to_string);
            let mut err = json!({"request_id": body["request_id"]});
            if let Some(id) = resource {
                err["resource_id"] = json!(id);
                err["resource_type"] = json!("redemption");
            }
            failure(code, key, message, details, err)
        }
    })
}

/// Async actions (code generation and other long jobs).
#[utoipa::path(get, path = "/v1/async-actions/{asyncActionId}", tag = "Async actions", params(("asyncActionId" = String, Path)),
    responses((status = 200, description = "The async action with its result"), (status = 404, body = ErrorBody)), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn get_async_action(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let a = s.store.get_async_action(&t, id).await?;
    let mut v = async_json(&a);
    v["result"] = a.result.clone().unwrap_or(Value::Null);
    Ok(Json(v))
}

fn async_json(a: &tessera_store::ops::async_actions::AsyncAction) -> Value {
    json!({
        "id": a.id, "type": a.kind, "status": a.status, "operation_status": match a.status.as_str() { "DONE" => "SUCCESS", "FAILED" => "FAILED", _ => "UNKNOWN" },
        "created_at": a.created_at, "updated_at": a.updated_at, "progress": a.progress,
        "processing_time": a.result.as_ref().and_then(|r| r["processing_time_ms"].as_i64()), "object": "async_action",
    })
}

#[derive(Deserialize, Default)]
struct AsyncQuery {
    limit: Option<u32>,
    end_date: Option<String>,
}

#[utoipa::path(get, path = "/v1/async-actions", tag = "Async actions", params(("limit" = Option<u32>, Query), ("end_date" = Option<String>, Query)),
    responses((status = 200, description = "`{object, data_ref: async_actions, async_actions, has_more}`")), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn list_async_actions(State(s): State<AppState>, Auth(t): Auth<Tenant>, q: RawQuery) -> ApiResult<Json<Value>> {
    let q: AsyncQuery = serde_urlencoded::from_str(q.0.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request("invalid_query_params", "Invalid query parameters", e.to_string()))?;
    let limit = q.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query_params",
            "Invalid query parameters",
            "'limit' must be from 1 to 100",
        ));
    }
    let end = match q.end_date {
        Some(d) => Some(
            tessera_domain::time::parse_lenient(&d)
                .map(tessera_domain::time::format)
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_query_params", "Invalid query parameters", "'end_date' must be a date-time")
                })?,
        ),
        None => None,
    };
    let (items, more) = s.store.list_async_actions(&t, limit, end).await?;
    Ok(Json(
        json!({"object": "list", "data_ref": "async_actions", "async_actions": items.iter().map(async_json).collect::<Vec<_>>(), "has_more": more}),
    ))
}
