//! Categories of a project (`/v1/categories`). Every write bumps the promotions cache
//! version in its own transaction, since the checkout's cached promotion set carries
//! category hierarchies.

use crate::conn::{Conn, Row, Val};
use crate::ops::org::Tenant;
use crate::ops::promotions::{self, bump, CategoryRow, PROMOTIONS};
use crate::{Result, Store, StoreError};
use tessera_domain::category::{CategoryFields, MAX_CATEGORIES};
use tessera_domain::ids::new_id;
use tessera_domain::list::{ListQuery, ListSpec, SortField};
use tessera_domain::time::now_string;
use tessera_domain::InvalidInput;

/// Voucherify lists every category in one answer and takes no parameters; Tessera pages
/// (a project has at most `MAX_CATEGORIES`) and defaults to the largest page so a client
/// that sends none sees the first 100.
pub const LIST_SPEC: ListSpec = ListSpec {
    sorts: &[SortField::CreatedAt, SortField::UpdatedAt, SortField::Name],
    filters: &[],
    default_limit: 100,
};

const COLS: &str = "id, name, hierarchy, created_at, updated_at";

fn to_row(r: &Row) -> Result<CategoryRow> {
    Ok(CategoryRow {
        id: r.text(0)?,
        name: r.text(1)?,
        hierarchy: r.int(2)?,
        created_at: r.text(3)?,
        updated_at: r.opt_text(4)?,
    })
}

pub fn find(c: &mut dyn Conn, p: &str, id: &str) -> Result<Option<CategoryRow>> {
    c.query_opt(
        &format!("SELECT {COLS} FROM categories WHERE project_id = $1 AND id = $2"),
        &[p.into(), id.into()],
    )?
    .as_ref()
    .map(to_row)
    .transpose()
}

pub fn get(c: &mut dyn Conn, p: &str, id: &str) -> Result<CategoryRow> {
    find(c, p, id)?.ok_or_else(|| StoreError::not_found("category", id))
}

/// Refuses a name another category of the project has. The lock serializes concurrent
/// creates of one name on PostgreSQL; the unique index is the last line either way.
fn check_name_free(c: &mut dyn Conn, p: &str, name: &str, except: Option<&str>) -> Result<()> {
    c.lock_key(&format!("category-name:{p}:{name}"))?;
    let other = c.query_opt(
        "SELECT id FROM categories WHERE project_id = $1 AND name = $2",
        &[p.into(), name.into()],
    )?;
    match other {
        Some(r) if Some(r.text(0)?.as_str()) != except => Err(StoreError::Conflict {
            key: "duplicate_found",
            message: "Duplicated resource found".into(),
            details: format!("Duplicated category exists with name {name}"),
        }),
        _ => Ok(()),
    }
}

pub fn create(c: &mut dyn Conn, p: &str, f: &CategoryFields) -> Result<CategoryRow> {
    c.lock_key(&format!("categories:{p}"))?;
    let n = c
        .query_one("SELECT COUNT(*) FROM categories WHERE project_id = $1", &[p.into()])?
        .int(0)?;
    if n >= MAX_CATEGORIES {
        return Err(StoreError::Invalid(InvalidInput {
            key: "limit_exceeded",
            message: "Too many categories".into(),
            details: format!("A project has at most {MAX_CATEGORIES} categories."),
        }));
    }
    check_name_free(c, p, &f.name, None)?;
    let id = new_id("cat");
    c.execute(
        "INSERT INTO categories (project_id, id, name, hierarchy, created_at) VALUES ($1, $2, $3, $4, $5)",
        &[
            p.into(),
            id.clone().into(),
            f.name.clone().into(),
            Val::Int(f.hierarchy),
            now_string().into(),
        ],
    )?;
    bump(c, p, PROMOTIONS)?;
    get(c, p, &id)
}

pub fn update(c: &mut dyn Conn, p: &str, id: &str, f: &CategoryFields) -> Result<CategoryRow> {
    get(c, p, id)?;
    check_name_free(c, p, &f.name, Some(id))?;
    c.execute(
        "UPDATE categories SET name = $1, hierarchy = $2, updated_at = $3 WHERE project_id = $4 AND id = $5",
        &[
            f.name.clone().into(),
            Val::Int(f.hierarchy),
            now_string().into(),
            p.into(),
            id.into(),
        ],
    )?;
    bump(c, p, PROMOTIONS)?;
    get(c, p, id)
}

/// Deletes a category unless the project's stacking rules name it: those rules would
/// otherwise keep an id that silently matches nothing, changing how redeemables stack
/// without anyone having asked for it. Stacks and tiers may still name it; they show it
/// as gone (see `ops::stacks`).
pub fn delete(c: &mut dyn Conn, p: &str, id: &str) -> Result<()> {
    get(c, p, id)?;
    // Taken before reading the rules so a concurrent rules update naming this category
    // (which takes the same lock) cannot slip in between.
    c.lock_key(&format!("stacking-rules:{p}"))?;
    let (_, rules) = promotions::stacking_rules(c, p)?;
    if rules.category_ids().contains(&id) {
        return Err(StoreError::Invalid(InvalidInput {
            key: "category_in_use",
            message: "Category in use".into(),
            details: format!(
                "The project's stacking rules name category {id}; remove it from them (PUT /management/v1/projects/{{projectId}}/stacking-rules/{{id}}) before deleting it."
            ),
        }));
    }
    c.execute("DELETE FROM categories WHERE project_id = $1 AND id = $2", &[p.into(), id.into()])?;
    bump(c, p, PROMOTIONS)?;
    Ok(())
}

pub fn list(c: &mut dyn Conn, p: &str, q: &ListQuery) -> Result<(Vec<CategoryRow>, i64)> {
    let mut clauses = vec!["project_id = $1".to_string()];
    let mut params: Vec<Val> = vec![p.into()];
    for (cond, v) in [
        ("created_at < ", &q.created_before),
        ("created_at > ", &q.created_after),
        ("updated_at < ", &q.updated_before),
        ("updated_at > ", &q.updated_after),
    ] {
        if let Some(v) = v {
            params.push(v.clone().into());
            clauses.push(format!("{cond}${}", params.len()));
        }
    }
    let where_sql = clauses.join(" AND ");
    let total = c
        .query_one(&format!("SELECT COUNT(*) FROM categories WHERE {where_sql}"), &params)?
        .int(0)?;
    let dir = if q.descending { "DESC" } else { "ASC" };
    let col = q.sort.column();
    let nulls = if col == "updated_at" { " NULLS LAST" } else { "" };
    let n = params.len();
    params.push(Val::Int(q.limit as i64));
    params.push(Val::Int(q.offset() as i64));
    let rows = c.query(
        &format!(
            "SELECT {COLS} FROM categories WHERE {where_sql} ORDER BY {col} {dir}{nulls}, id {dir} LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        ),
        &params,
    )?;
    Ok((rows.iter().map(to_row).collect::<Result<_>>()?, total))
}

/// Fails with 400 naming `field` when an id is not a category of the project.
pub fn check_exist(c: &mut dyn Conn, p: &str, field: &str, ids: &[&str]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let known = promotions::categories(c, p)?;
    if let Some(missing) = ids.iter().find(|id| !known.contains_key(**id)) {
        return Err(StoreError::Invalid(InvalidInput::payload(format!(
            "'{field}' names {missing}, which is not a category of this project"
        ))));
    }
    Ok(())
}

impl Store {
    pub async fn create_category(&self, t: &Tenant, f: CategoryFields) -> Result<CategoryRow> {
        let p = t.project_id().to_string();
        self.write(move |c| create(c, &p, &f)).await
    }

    pub async fn get_category(&self, t: &Tenant, id: String) -> Result<CategoryRow> {
        let p = t.project_id().to_string();
        self.read(move |c| get(c, &p, &id)).await
    }

    pub async fn update_category(&self, t: &Tenant, id: String, f: CategoryFields) -> Result<CategoryRow> {
        let p = t.project_id().to_string();
        self.write(move |c| update(c, &p, &id, &f)).await
    }

    pub async fn delete_category(&self, t: &Tenant, id: String) -> Result<()> {
        let p = t.project_id().to_string();
        self.write(move |c| delete(c, &p, &id)).await
    }

    pub async fn list_categories(&self, t: &Tenant, q: ListQuery) -> Result<(Vec<CategoryRow>, i64)> {
        let p = t.project_id().to_string();
        self.read(move |c| list(c, &p, &q)).await
    }
}
