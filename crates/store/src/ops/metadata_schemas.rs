//! Metadata schemas: stored per project and resource type, and checked on the writes of
//! that resource through its own endpoints.

use crate::conn::Conn;
use crate::ops::docs::to_json;
use crate::ops::events::project_exists;
use crate::{Result, Store, StoreError};
use serde_json::{json, Map, Value};
use tessera_domain::ids::new_id;
use tessera_domain::metadata_schema::{MetadataSchema, SchemaInput};
use tessera_domain::time::now_string;

/// Refuses `metadata` if the project's schema for `resource` says no. One indexed lookup;
/// a project without a schema for the resource accepts anything, as before.
pub fn enforce(c: &mut dyn Conn, p: &str, resource: &str, metadata: &Map<String, Value>) -> Result<()> {
    check(by_resource(c, p, resource)?.as_ref(), metadata)
}

/// `enforce` with the schema already read (`by_resource`), for bulk jobs that check many
/// writes in one transaction against one schema.
pub fn check(schema: Option<&MetadataSchema>, metadata: &Map<String, Value>) -> Result<()> {
    if let Some(s) = schema {
        s.check(metadata).map_err(StoreError::Invalid)?;
    }
    Ok(())
}

/// The project's schema for a resource type, if it has one.
pub fn by_resource(c: &mut dyn Conn, p: &str, resource: &str) -> Result<Option<MetadataSchema>> {
    match c.query_opt(
        "SELECT data FROM metadata_schemas WHERE project_id = $1 AND related_object = $2",
        &[p.into(), resource.into()],
    )? {
        Some(r) => Ok(Some(r.json(0)?)),
        None => Ok(None),
    }
}

fn by_id(c: &mut dyn Conn, p: &str, id: &str) -> Result<MetadataSchema> {
    match c.query_opt(
        "SELECT data FROM metadata_schemas WHERE project_id = $1 AND id = $2",
        &[p.into(), id.into()],
    )? {
        Some(r) => r.json(0),
        None => Err(StoreError::not_found("metadata_schema", id)),
    }
}

pub fn view(s: &MetadataSchema) -> Value {
    json!({
        "id": s.id, "related_object": s.related_object, "properties": s.properties,
        "allow_defined_only": s.allow_defined_only, "created_at": s.created_at, "updated_at": s.updated_at,
        "object": "metadata_schema",
    })
}

fn save(c: &mut dyn Conn, p: &str, s: &MetadataSchema) -> Result<()> {
    c.execute(
        "INSERT INTO metadata_schemas (project_id, id, related_object, created_at, updated_at, data) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (project_id, id) DO UPDATE SET updated_at = excluded.updated_at, data = excluded.data",
        &[
            p.into(),
            s.id.clone().into(),
            s.related_object.clone().into(),
            s.created_at.clone().into(),
            s.updated_at.clone().into(),
            to_json(s)?.into(),
        ],
    )?;
    Ok(())
}

fn list_in(c: &mut dyn Conn, p: &str) -> Result<Vec<MetadataSchema>> {
    let rows = c.query(
        "SELECT data FROM metadata_schemas WHERE project_id = $1 ORDER BY related_object",
        &[p.into()],
    )?;
    rows.iter().map(|r| r.json(0)).collect()
}

impl Store {
    pub async fn create_metadata_schema(&self, project: String, input: SchemaInput) -> Result<Value> {
        let schema = input.create(new_id("ms"), &now_string())?;
        self.write(move |c| {
            project_exists(c, &project)?;
            c.lock_key(&format!("metadata-schema:{project}:{}", schema.related_object))?;
            if by_resource(c, &project, &schema.related_object)?.is_some() {
                return Err(StoreError::Conflict {
                    key: "duplicate_found",
                    message: "Duplicated resource found".into(),
                    details: format!("the project has a metadata schema for {} already; update it", schema.related_object),
                });
            }
            save(c, &project, &schema)?;
            Ok(view(&schema))
        })
        .await
    }

    pub async fn update_metadata_schema(&self, project: String, id: String, input: SchemaInput) -> Result<Value> {
        self.write(move |c| {
            project_exists(c, &project)?;
            let existing = by_id(c, &project, &id)?;
            let s = input.update(&existing, &now_string())?;
            save(c, &project, &s)?;
            Ok(view(&s))
        })
        .await
    }

    pub async fn delete_metadata_schema(&self, project: String, id: String) -> Result<()> {
        self.write(move |c| {
            project_exists(c, &project)?;
            by_id(c, &project, &id)?;
            c.execute(
                "DELETE FROM metadata_schemas WHERE project_id = $1 AND id = $2",
                &[project.clone().into(), id.clone().into()],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn get_metadata_schema(&self, project: String, id: String) -> Result<Value> {
        self.read(move |c| {
            project_exists(c, &project)?;
            Ok(view(&by_id(c, &project, &id)?))
        })
        .await
    }

    /// By resource type (`/v1/metadata-schemas/{resource}`).
    pub async fn metadata_schema_for(&self, project: String, resource: String) -> Result<Value> {
        self.read(move |c| match by_resource(c, &project, &resource)? {
            Some(s) => Ok(view(&s)),
            None => Err(StoreError::not_found("metadata_schema", resource)),
        })
        .await
    }

    pub async fn list_metadata_schemas(&self, project: String) -> Result<Vec<Value>> {
        self.read(move |c| {
            project_exists(c, &project)?;
            Ok(list_in(c, &project)?.iter().map(view).collect())
        })
        .await
    }
}
