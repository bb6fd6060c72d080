//! Webhooks (management API) and the statistics read model (project API).

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::ApiJson;
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;
use tessera_store::ops::events::Webhook;
use tessera_store::ops::org::{Management, Tenant};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct WebhookInput {
    /// Where deliveries are POSTed (http or https).
    pub target_url: Option<String>,
    /// Event types, e.g. `redemption.succeeded`.
    pub events: Option<Vec<String>>,
    /// Default true.
    pub active: Option<bool>,
}

const MAX_URL: usize = 2048;

/// A target must be an absolute http(s) URL whose host is public, unless the operator
/// allows private targets. The same check runs again at every delivery against the
/// addresses the name resolves to then (a name may be re-pointed later).
async fn check_target(raw: &str, allow_private: bool) -> Result<String, ApiError> {
    let bad = |d: String| ApiError::bad_request("invalid_payload", "Invalid target URL", d);
    if raw.len() > MAX_URL {
        return Err(bad(format!("'target_url' is longer than {MAX_URL} characters")));
    }
    let url = url::Url::parse(raw).map_err(|e| bad(format!("'target_url' is not a URL: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(bad("'target_url' must use http or https".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "'target_url' must not carry credentials; the signature authenticates deliveries".into(),
        ));
    }
    let host = url.host_str().ok_or_else(|| bad("'target_url' has no host".into()))?;
    if allow_private {
        return Ok(url.to_string());
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<std::net::IpAddr> = match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::time::timeout(Duration::from_secs(3), tokio::net::lookup_host((bare, port)))
            .await
            .map_err(|_| bad(format!("cannot resolve '{host}' (timed out)")))?
            .map_err(|e| bad(format!("cannot resolve '{host}': {e}")))?
            .map(|a| a.ip())
            .collect(),
    };
    if addrs.is_empty() || addrs.iter().any(|ip| !tessera_domain::net::is_public(*ip)) {
        return Err(bad(format!(
            "'target_url' points to a private, loopback or reserved address ({host}); deliveries go to public addresses only (operators can allow private targets with webhook_allow_private_targets)"
        )));
    }
    Ok(url.to_string())
}

fn check_events(events: &[String]) -> Result<(), ApiError> {
    if events.is_empty() || events.len() > 100 {
        return Err(ApiError::bad_request(
            "invalid_payload",
            "Invalid payload",
            "'events' must list 1 to 100 event types",
        ));
    }
    for e in events {
        let ok = e.len() <= 100 && e.split('.').count() >= 2 && e.chars().all(|c| c.is_ascii_lowercase() || c == '.' || c == '_');
        if !ok {
            return Err(ApiError::bad_request(
                "invalid_payload",
                "Invalid payload",
                format!("'{e}' is not an event type (such as redemption.succeeded)"),
            ));
        }
    }
    Ok(())
}

/// Creates a webhook. The response carries `secret`, the key of its signatures.
#[utoipa::path(post, path = "/management/v1/projects/{projectId}/webhooks", tag = "Management", request_body = WebhookInput,
    params(("projectId" = String, Path)),
    responses((status = 200, description = "The webhook, with its signing `secret`"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn create(
    State(s): State<AppState>,
    Auth(_m): Auth<Management>,
    Path(project): Path<String>,
    ApiJson(input): ApiJson<WebhookInput>,
) -> ApiResult<Json<Webhook>> {
    let target = input
        .target_url
        .ok_or_else(|| ApiError::bad_request("invalid_payload", "Invalid payload", "'target_url' is required"))?;
    let events = input
        .events
        .ok_or_else(|| ApiError::bad_request("invalid_payload", "Invalid payload", "'events' is required"))?;
    check_events(&events)?;
    let target = check_target(&target, s.allow_private_webhook_targets).await?;
    Ok(Json(
        s.store
            .create_webhook(project, target, events, input.active.unwrap_or(true))
            .await?,
    ))
}

#[utoipa::path(get, path = "/management/v1/projects/{projectId}/webhooks", tag = "Management",
    params(("projectId" = String, Path)),
    responses((status = 200, description = "`{object: list, data_ref: data, data, total}`"), (status = 404, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn list(State(s): State<AppState>, Auth(_m): Auth<Management>, Path(project): Path<String>) -> ApiResult<Json<Value>> {
    let hooks = s.store.list_webhooks(project).await?;
    let total = hooks.len();
    Ok(Json(json!({"object": "list", "data_ref": "data", "data": hooks, "total": total})))
}

#[utoipa::path(get, path = "/management/v1/projects/{projectId}/webhooks/{webhookId}", tag = "Management",
    params(("projectId" = String, Path), ("webhookId" = String, Path)),
    responses((status = 200, description = "The webhook"), (status = 404, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn get(
    State(s): State<AppState>,
    Auth(_m): Auth<Management>,
    Path((project, id)): Path<(String, String)>,
) -> ApiResult<Json<Webhook>> {
    Ok(Json(s.store.get_webhook(project, id).await?))
}

#[utoipa::path(put, path = "/management/v1/projects/{projectId}/webhooks/{webhookId}", tag = "Management", request_body = WebhookInput,
    params(("projectId" = String, Path), ("webhookId" = String, Path)),
    responses((status = 200, description = "The webhook"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn update(
    State(s): State<AppState>,
    Auth(_m): Auth<Management>,
    Path((project, id)): Path<(String, String)>,
    ApiJson(input): ApiJson<WebhookInput>,
) -> ApiResult<Json<Webhook>> {
    if let Some(e) = &input.events {
        check_events(e)?;
    }
    let target = match &input.target_url {
        Some(t) => Some(check_target(t, s.allow_private_webhook_targets).await?),
        None => None,
    };
    Ok(Json(s.store.update_webhook(project, id, target, input.events, input.active).await?))
}

#[utoipa::path(delete, path = "/management/v1/projects/{projectId}/webhooks/{webhookId}", tag = "Management",
    params(("projectId" = String, Path), ("webhookId" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn delete(
    State(s): State<AppState>,
    Auth(_m): Auth<Management>,
    Path((project, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.store.delete_webhook(project, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deliveries of a webhook, newest first (Tessera addition). `status`: pending,
/// delivering, succeeded, dead or canceled.
#[utoipa::path(get, path = "/management/v1/projects/{projectId}/webhooks/{webhookId}/deliveries", tag = "Management",
    params(("projectId" = String, Path), ("webhookId" = String, Path), ("status" = Option<String>, Query), ("limit" = Option<i64>, Query)),
    responses((status = 200, description = "`{object: list, data_ref: data, data}`"), (status = 404, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn deliveries(
    State(s): State<AppState>,
    Auth(_m): Auth<Management>,
    Path((project, id)): Path<(String, String)>,
    q: RawQuery,
) -> ApiResult<Json<Value>> {
    let mut params = crate::routes::query_map(q)?;
    let status = params.remove("status");
    if let Some(st) = &status {
        if !["pending", "delivering", "succeeded", "dead", "canceled"].contains(&st.as_str()) {
            return Err(ApiError::bad_request(
                "invalid_query_params",
                "Invalid query parameters",
                "'status' must be pending, delivering, succeeded, dead or canceled",
            ));
        }
    }
    let limit =
        match params.remove("limit") {
            Some(l) => l.parse::<i64>().ok().filter(|l| (1..=100).contains(l)).ok_or_else(|| {
                ApiError::bad_request("invalid_query_params", "Invalid query parameters", "'limit' must be from 1 to 100")
            })?,
            None => 100,
        };
    let data = s.store.list_deliveries(project, id, status, limit).await?;
    Ok(Json(json!({"object": "list", "data_ref": "data", "data": data})))
}

/// One delivery with its exact body and every attempt (status, error, the start of the
/// receiver's answer, duration) (Tessera addition).
#[utoipa::path(get, path = "/management/v1/projects/{projectId}/webhooks/{webhookId}/deliveries/{deliveryId}", tag = "Management",
    params(("projectId" = String, Path), ("webhookId" = String, Path), ("deliveryId" = String, Path)),
    responses((status = 200, description = "The delivery"), (status = 404, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn delivery(
    State(s): State<AppState>,
    Auth(_m): Auth<Management>,
    Path((project, id, delivery)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(s.store.get_delivery(project, id, delivery).await?))
}

/// Sends a delivery's event again, with the same body, as a new delivery (Tessera
/// addition). Works for any status, typically after fixing a receiver that was
/// dead-lettered.
#[utoipa::path(post, path = "/management/v1/projects/{projectId}/webhooks/{webhookId}/deliveries/{deliveryId}/replay", tag = "Management",
    params(("projectId" = String, Path), ("webhookId" = String, Path), ("deliveryId" = String, Path)),
    responses((status = 200, description = "The new delivery"), (status = 404, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn replay(
    State(s): State<AppState>,
    Auth(_m): Auth<Management>,
    Path((project, id, delivery)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(s.store.replay_delivery(project, id, delivery).await?))
}

fn day_range(q: RawQuery) -> Result<(String, String), ApiError> {
    let params = crate::routes::query_map(q)?;
    let check = |d: &Option<String>, default: &str| -> Result<String, ApiError> {
        let v = d.clone().unwrap_or_else(|| default.to_string());
        let ok = v.len() == 10
            && v.as_bytes()
                .iter()
                .enumerate()
                .all(|(i, b)| if i == 4 || i == 7 { *b == b'-' } else { b.is_ascii_digit() });
        if ok {
            Ok(v)
        } else {
            Err(ApiError::bad_request(
                "invalid_query_params",
                "Invalid query parameters",
                "'start_date' and 'end_date' are days, YYYY-MM-DD",
            ))
        }
    };
    Ok((
        check(&params.get("start_date").cloned(), "0000-01-01")?,
        check(&params.get("end_date").cloned(), "9999-12-31")?,
    ))
}

/// Daily redemption statistics of a campaign, built from events (Tessera addition):
/// eventually consistent, behind the redemptions by the relay's lag
/// (`tessera_outbox_lag_seconds{consumer="stats"}`).
#[utoipa::path(get, path = "/v1/campaigns/{campaignId}/stats", tag = "Campaigns",
    params(("campaignId" = String, Path), ("start_date" = Option<String>, Query), ("end_date" = Option<String>, Query)),
    responses((status = 200, description = "`{object: list, data_ref: data, data: [{day, redemptions, failed, rolled_back, discount_amount, gift_amount}]}`"), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn campaign_stats(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(id): Path<String>,
    q: RawQuery,
) -> ApiResult<Json<Value>> {
    let (from, to) = day_range(q)?;
    let campaign = s.store.get_campaign(&t, id).await?;
    let data = s.store.stats(&t, "campaign", campaign.campaign.id.clone(), from, to).await?;
    Ok(Json(
        json!({"object": "list", "data_ref": "data", "campaign_id": campaign.campaign.id, "data": data}),
    ))
}

/// Daily redemption statistics of a voucher, by code (Tessera addition); see the
/// campaign statistics.
#[utoipa::path(get, path = "/v1/vouchers/{code}/stats", tag = "Vouchers",
    params(("code" = String, Path), ("start_date" = Option<String>, Query), ("end_date" = Option<String>, Query)),
    responses((status = 200, description = "`{object: list, data_ref: data, data: [...]}`"), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn voucher_stats(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(code): Path<String>,
    q: RawQuery,
) -> ApiResult<Json<Value>> {
    let (from, to) = day_range(q)?;
    let voucher = s.store.get_voucher(&t, code).await?;
    let data = s.store.stats(&t, "voucher", voucher.voucher.id.clone(), from, to).await?;
    Ok(Json(
        json!({"object": "list", "data_ref": "data", "voucher_id": voucher.voucher.id, "data": data}),
    ))
}
