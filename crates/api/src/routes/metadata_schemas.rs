//! Metadata schemas: managed per project through the management API, read by the
//! project's own keys.

use crate::auth::Auth;
use crate::error::{ApiResult, ErrorBody};
use crate::json::ApiJson;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use tessera_domain::metadata_schema::SchemaInput;
use tessera_store::ops::org::Management;
use tessera_store::Tenant;

fn list_body(items: Vec<Value>) -> Value {
    json!({"object": "list", "data_ref": "data", "total": items.len(), "data": items})
}

#[utoipa::path(post, path = "/management/v1/projects/{projectId}/metadata-schemas", tag = "Management", request_body = SchemaInput,
    params(("projectId" = String, Path)),
    responses((status = 200, description = "The metadata schema"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn create(
    State(s): State<AppState>,
    Auth(_m): Auth<Management>,
    Path(project): Path<String>,
    ApiJson(input): ApiJson<SchemaInput>,
) -> ApiResult<Json<Value>> {
    Ok(Json(s.store.create_metadata_schema(project, input).await?))
}

#[utoipa::path(get, path = "/management/v1/projects/{projectId}/metadata-schemas", tag = "Management", params(("projectId" = String, Path)),
    responses((status = 200, description = "`{object: list, data_ref: data, data, total}`"), (status = 404, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn list(State(s): State<AppState>, Auth(_m): Auth<Management>, Path(project): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(list_body(s.store.list_metadata_schemas(project).await?)))
}

#[utoipa::path(get, path = "/management/v1/projects/{projectId}/metadata-schemas/{metadataSchemaId}", tag = "Management",
    params(("projectId" = String, Path), ("metadataSchemaId" = String, Path)),
    responses((status = 200, description = "The metadata schema"), (status = 404, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn get(
    State(s): State<AppState>,
    Auth(_m): Auth<Management>,
    Path((project, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(s.store.get_metadata_schema(project, id).await?))
}

/// Properties named in the body replace their definitions (mark one `deleted: true` to
/// retire it); `allow_defined_only` changes when given.
#[utoipa::path(put, path = "/management/v1/projects/{projectId}/metadata-schemas/{metadataSchemaId}", tag = "Management", request_body = SchemaInput,
    params(("projectId" = String, Path), ("metadataSchemaId" = String, Path)),
    responses((status = 200, description = "The metadata schema"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn update(
    State(s): State<AppState>,
    Auth(_m): Auth<Management>,
    Path((project, id)): Path<(String, String)>,
    ApiJson(input): ApiJson<SchemaInput>,
) -> ApiResult<Json<Value>> {
    Ok(Json(s.store.update_metadata_schema(project, id, input).await?))
}

#[utoipa::path(delete, path = "/management/v1/projects/{projectId}/metadata-schemas/{metadataSchemaId}", tag = "Management",
    params(("projectId" = String, Path), ("metadataSchemaId" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)),
    security(("X-Management-Id" = [], "X-Management-Token" = [])))]
pub async fn delete(
    State(s): State<AppState>,
    Auth(_m): Auth<Management>,
    Path((project, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.store.delete_metadata_schema(project, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/metadata-schemas", tag = "Metadata schemas",
    responses((status = 200, description = "`{object: list, data_ref: data, data, total}`")), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn list_own(State(s): State<AppState>, Auth(t): Auth<Tenant>) -> ApiResult<Json<Value>> {
    Ok(Json(list_body(s.store.list_metadata_schemas(t.project_id().to_string()).await?)))
}

#[utoipa::path(get, path = "/v1/metadata-schemas/{resource}", tag = "Metadata schemas", params(("resource" = String, Path, description = "customer, product, sku, order, voucher or campaign")),
    responses((status = 200, description = "The metadata schema"), (status = 404, body = ErrorBody)), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn get_own(State(s): State<AppState>, Auth(t): Auth<Tenant>, Path(resource): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(s.store.metadata_schema_for(t.project_id().to_string(), resource).await?))
}
