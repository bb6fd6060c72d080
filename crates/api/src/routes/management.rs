//! The management API: projects and their API keys.

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::ApiJson;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tessera_domain::project::{Project, ProjectInput};
use tessera_store::ops::org::{ApiKey, Management};
use tessera_store::{KeyKind, NewKey};
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct KeyPair {
    pub app_id: String,
    pub app_token: String,
}

impl From<&NewKey> for KeyPair {
    fn from(k: &NewKey) -> Self {
        KeyPair {
            app_id: k.key.app_id.clone(),
            app_token: k.app_token.clone(),
        }
    }
}

/// A project in the management API's shape. Fields Voucherify requires but Tessera does
/// not use (usage notifications, cluster) carry fixed, documented values.
#[derive(Serialize, ToSchema)]
pub struct ProjectView {
    #[serde(flatten)]
    pub project: Project,
    pub cluster_id: &'static str,
    pub api_version: &'static str,
    pub is_sandbox: bool,
    pub webhook_version: &'static str,
    #[schema(value_type = Object)]
    pub api_usage_notifications: serde_json::Value,
    #[schema(value_type = Object)]
    pub webhooks_callout_notifications: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_side_key: Option<KeyPair>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_side_key: Option<KeyPair>,
}

pub fn view(project: Project, keys: Option<(&NewKey, &NewKey)>) -> ProjectView {
    let off = json!({"enabled": false, "value": 80, "in_app": false, "emails": []});
    let channel = json!({"email": false, "in_app": false, "emails": []});
    ProjectView {
        project,
        cluster_id: "local",
        api_version: "v2018-08-01",
        is_sandbox: false,
        webhook_version: "v2024-01-01",
        api_usage_notifications: json!({
            "redemptions": off, "messages": off, "api_calls": off,
            "bulk_api_calls": off, "webhook_calls": off, "cycle_calls": off
        }),
        webhooks_callout_notifications: json!({"distributions": channel, "webhooks": channel}),
        server_side_key: keys.map(|(s, _)| s.into()),
        client_side_key: keys.map(|(_, c)| c.into()),
    }
}

/// Creates a project and returns its server-side and client-side keys. The tokens are
/// shown only in this response; Tessera keeps only their hashes.
#[utoipa::path(post, path = "/management/v1/projects", tag = "Management", request_body = ProjectInput,
    responses((status = 200, body = ProjectView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn create_project(
    State(s): State<AppState>,
    Auth(m): Auth<Management>,
    ApiJson(input): ApiJson<ProjectInput>,
) -> ApiResult<Json<ProjectView>> {
    let created = s.store.create_project(&m, input).await?;
    Ok(Json(view(created.project, Some((&created.server_key, &created.client_key)))))
}

#[utoipa::path(get, path = "/management/v1/projects", tag = "Management",
    responses((status = 200, description = "`{object: list, data_ref: data, data, total}`"), (status = 401, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn list_projects(State(s): State<AppState>, Auth(m): Auth<Management>) -> ApiResult<Json<serde_json::Value>> {
    let projects: Vec<ProjectView> = s.store.list_projects(&m).await?.into_iter().map(|p| view(p, None)).collect();
    let total = projects.len();
    Ok(Json(
        json!({"object": "list", "data_ref": "data", "data": projects, "total": total}),
    ))
}

#[utoipa::path(get, path = "/management/v1/projects/{projectId}", tag = "Management",
    params(("projectId" = String, Path)),
    responses((status = 200, body = ProjectView), (status = 404, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn get_project(State(s): State<AppState>, Auth(m): Auth<Management>, Path(id): Path<String>) -> ApiResult<Json<ProjectView>> {
    Ok(Json(view(s.store.get_project(&m, id).await?, None)))
}

#[utoipa::path(put, path = "/management/v1/projects/{projectId}", tag = "Management", request_body = ProjectInput,
    params(("projectId" = String, Path)),
    responses((status = 200, body = ProjectView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn update_project(
    State(s): State<AppState>,
    Auth(m): Auth<Management>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ProjectInput>,
) -> ApiResult<Json<ProjectView>> {
    Ok(Json(view(s.store.update_project(&m, id, input).await?, None)))
}

/// Deletes the project and revokes all its keys at once.
#[utoipa::path(delete, path = "/management/v1/projects/{projectId}", tag = "Management",
    params(("projectId" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn delete_project(State(s): State<AppState>, Auth(m): Auth<Management>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.store.delete_project(&m, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema, Default)]
pub struct ApiKeyInput {
    /// What the key is for, e.g. "POS terminals".
    #[serde(default)]
    pub name: Option<String>,
    /// `server` (default) or `client`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyView {
    pub object: &'static str,
    pub app_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_token: Option<String>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: Option<String>,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

fn key_view(k: ApiKey, token: Option<String>) -> ApiKeyView {
    ApiKeyView {
        object: "api_key",
        app_id: k.app_id,
        app_token: token,
        kind: k.kind.as_str(),
        name: k.name,
        created_at: k.created_at,
        revoked_at: k.revoked_at,
    }
}

/// Creates an additional key for one integration (Tessera addition). The token is shown
/// only in this response.
#[utoipa::path(post, path = "/management/v1/projects/{projectId}/api-keys", tag = "Management", request_body = ApiKeyInput,
    params(("projectId" = String, Path)),
    responses((status = 200, body = ApiKeyView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn create_key(
    State(s): State<AppState>,
    Auth(m): Auth<Management>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ApiKeyInput>,
) -> ApiResult<Json<ApiKeyView>> {
    let kind = match input.kind.as_deref() {
        None | Some("server") => KeyKind::Server,
        Some("client") => KeyKind::Client,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_payload",
                "Invalid payload",
                format!("'type' must be 'server' or 'client', got '{other}'"),
            ))
        }
    };
    let k = s.store.create_api_key(&m, id, kind, input.name).await?;
    Ok(Json(key_view(k.key, Some(k.app_token))))
}

#[utoipa::path(get, path = "/management/v1/projects/{projectId}/api-keys", tag = "Management",
    params(("projectId" = String, Path)),
    responses((status = 200, description = "`{object: list, data_ref: data, data, total}`"), (status = 404, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn list_keys(State(s): State<AppState>, Auth(m): Auth<Management>, Path(id): Path<String>) -> ApiResult<Json<serde_json::Value>> {
    let keys: Vec<ApiKeyView> = s
        .store
        .list_api_keys(&m, id)
        .await?
        .into_iter()
        .map(|k| key_view(k, None))
        .collect();
    let total = keys.len();
    Ok(Json(json!({"object": "list", "data_ref": "data", "data": keys, "total": total})))
}

/// Revokes a key; every node refuses it from the next request on.
#[utoipa::path(delete, path = "/management/v1/projects/{projectId}/api-keys/{appId}", tag = "Management",
    params(("projectId" = String, Path), ("appId" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn revoke_key(
    State(s): State<AppState>,
    Auth(m): Auth<Management>,
    Path((id, app_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.store.revoke_api_key(&m, id, app_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
