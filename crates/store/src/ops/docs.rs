//! Shared mechanics for resources stored as a JSON document plus indexed columns.

use crate::conn::{Conn, Val};
use crate::{Result, StoreError};
use serde::de::DeserializeOwned;
use tessera_domain::list::ListQuery;

pub struct Table {
    pub name: &'static str,
    pub resource_type: &'static str,
}

/// Finds a row by its id or, failing that, its source id. An id match wins when a
/// source id happens to equal another row's id.
pub fn find<T: DeserializeOwned>(c: &mut dyn Conn, t: &Table, project_id: &str, key: &str) -> Result<Option<T>> {
    let sql = format!(
        "SELECT data FROM {} WHERE project_id = $1 AND (id = $2 OR source_id = $2) \
         ORDER BY CASE WHEN id = $2 THEN 0 ELSE 1 END LIMIT 1",
        t.name
    );
    match c.query_opt(&sql, &[project_id.into(), key.into()])? {
        Some(row) => Ok(Some(row.json(0)?)),
        None => Ok(None),
    }
}

pub fn get<T: DeserializeOwned>(c: &mut dyn Conn, t: &Table, project_id: &str, key: &str) -> Result<T> {
    find(c, t, project_id, key)?.ok_or_else(|| StoreError::not_found(t.resource_type, key))
}

pub fn find_by_id<T: DeserializeOwned>(c: &mut dyn Conn, t: &Table, project_id: &str, id: &str) -> Result<Option<T>> {
    let sql = format!("SELECT data FROM {} WHERE project_id = $1 AND id = $2", t.name);
    match c.query_opt(&sql, &[project_id.into(), id.into()])? {
        Some(row) => Ok(Some(row.json(0)?)),
        None => Ok(None),
    }
}

pub fn find_by_source_id<T: DeserializeOwned>(c: &mut dyn Conn, t: &Table, project_id: &str, source_id: &str) -> Result<Option<T>> {
    let sql = format!("SELECT data FROM {} WHERE project_id = $1 AND source_id = $2", t.name);
    match c.query_opt(&sql, &[project_id.into(), source_id.into()])? {
        Some(row) => Ok(Some(row.json(0)?)),
        None => Ok(None),
    }
}

/// Reads a row for modification: resolves the id or source id, takes the row's lock
/// (PostgreSQL; SQLite's single writer needs none) and reads it again under the lock, so
/// concurrent read-modify-write sequences on one row cannot lose each other's updates.
pub fn get_for_update<T: DeserializeOwned>(c: &mut dyn Conn, t: &Table, project_id: &str, key: &str) -> Result<T> {
    let sql = format!(
        "SELECT id FROM {} WHERE project_id = $1 AND (id = $2 OR source_id = $2) ORDER BY CASE WHEN id = $2 THEN 0 ELSE 1 END LIMIT 1",
        t.name
    );
    let id = c
        .query_opt(&sql, &[project_id.into(), key.into()])?
        .ok_or_else(|| StoreError::not_found(t.resource_type, key))?
        .text(0)?;
    relock(c, t, project_id, &id)?.ok_or_else(|| StoreError::not_found(t.resource_type, key))
}

/// Locks a row known by id and reads it again (it may have changed or gone meanwhile).
pub fn relock<T: DeserializeOwned>(c: &mut dyn Conn, t: &Table, project_id: &str, id: &str) -> Result<Option<T>> {
    lock_row(c, t, project_id, id)?;
    find_by_id(c, t, project_id, id)
}

/// The lock `relock` takes on a row, for writers that must wait for its holder without
/// reading the row itself.
pub fn lock_row(c: &mut dyn Conn, t: &Table, project_id: &str, id: &str) -> Result<()> {
    c.lock_key(&format!("{}:{project_id}:{id}", t.name))
}

pub fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Internal(format!("cannot serialize document: {e}")))
}

/// Deletes by id or source id; returns the deleted row's id.
pub fn delete(c: &mut dyn Conn, t: &Table, project_id: &str, key: &str) -> Result<String> {
    let sql = format!(
        "SELECT id FROM {} WHERE project_id = $1 AND (id = $2 OR source_id = $2) ORDER BY CASE WHEN id = $2 THEN 0 ELSE 1 END LIMIT 1",
        t.name
    );
    let id = c
        .query_opt(&sql, &[project_id.into(), key.into()])?
        .ok_or_else(|| StoreError::not_found(t.resource_type, key))?
        .text(0)?;
    c.execute(
        &format!("DELETE FROM {} WHERE project_id = $1 AND id = $2", t.name),
        &[project_id.into(), id.clone().into()],
    )?;
    Ok(id)
}

/// A page of documents and the total matching the filters.
///
/// `filters` maps list-query filter names to columns; `scope` adds fixed equality
/// conditions (a parent id). Column names come from code, never from input.
pub fn list<T: DeserializeOwned>(
    c: &mut dyn Conn,
    t: &Table,
    project_id: &str,
    q: &ListQuery,
    filters: &[(&str, &str)],
    scope: &[(&str, Val)],
) -> Result<(Vec<T>, i64)> {
    let sql = list_sql(t, project_id, q, filters, scope, &[], false);
    run_list(c, sql)
}

/// `list` with extra conditions: each a clause from code whose `?`s take the values in
/// order (`$1` is the project id), such as a membership subquery. The caller promises
/// that each filter column and extra condition is an index lookup.
pub fn list_where<T: DeserializeOwned>(
    c: &mut dyn Conn,
    t: &Table,
    project_id: &str,
    q: &ListQuery,
    filters: &[(&str, &str)],
    scope: &[(&str, Val)],
    extra: &[(&str, Vec<Val>)],
) -> Result<(Vec<T>, i64)> {
    let sql = list_sql(t, project_id, q, filters, scope, extra, !c.is_postgres());
    run_list(c, sql)
}

fn run_list<T: DeserializeOwned>(c: &mut dyn Conn, (count_sql, page_sql, params): (String, String, Vec<Val>)) -> Result<(Vec<T>, i64)> {
    let total = c.query_one(&count_sql, &params[..params.len() - 2])?.int(0)?;
    let rows = c.query(&page_sql, &params)?;
    let items = rows.iter().map(|r| r.json(0)).collect::<Result<Vec<T>>>()?;
    Ok((items, total))
}

/// The COUNT and page statements of a listing and their parameters; the page's LIMIT and
/// OFFSET are the last two, which the COUNT does not take. `indexed_filters` says the
/// filters and extra conditions are index lookups, and the engine is SQLite.
pub(crate) fn list_sql(
    t: &Table,
    project_id: &str,
    q: &ListQuery,
    filters: &[(&str, &str)],
    scope: &[(&str, Val)],
    extra: &[(&str, Vec<Val>)],
    indexed_filters: bool,
) -> (String, String, Vec<Val>) {
    let mut clauses = vec!["project_id = $1".to_string()];
    let mut params: Vec<Val> = vec![project_id.into()];
    let push = |clause: &str, v: Val, clauses: &mut Vec<String>, params: &mut Vec<Val>| {
        params.push(v);
        clauses.push(clause.replace('?', &format!("${}", params.len())));
    };
    for (clause, vals) in extra {
        let mut sql = clause.to_string();
        for v in vals {
            params.push(v.clone());
            sql = sql.replacen('?', &format!("${}", params.len()), 1);
        }
        clauses.push(sql);
    }
    for (col, v) in scope {
        push(&format!("{col} = ?"), v.clone(), &mut clauses, &mut params);
    }
    let mut selective = !extra.is_empty();
    for (name, col) in filters {
        if let Some(v) = q.filters.get(*name) {
            push(&format!("{col} = ?"), v.clone().into(), &mut clauses, &mut params);
            selective = true;
        }
    }
    // SQLite has no statistics: given an email or a segment it still walks the time index
    // for the order or the date range, across the whole project. An expression can use no
    // index, so it takes the filter's index and sorts those few rows.
    let ts = |col: &str| {
        if indexed_filters && selective {
            format!("{col} || ''")
        } else {
            col.to_string()
        }
    };
    if let Some(v) = &q.created_before {
        push(&format!("{} < ?", ts("created_at")), v.clone().into(), &mut clauses, &mut params);
    }
    if let Some(v) = &q.created_after {
        push(&format!("{} > ?", ts("created_at")), v.clone().into(), &mut clauses, &mut params);
    }
    if let Some(v) = &q.updated_before {
        push(&format!("{} < ?", ts("updated_at")), v.clone().into(), &mut clauses, &mut params);
    }
    if let Some(v) = &q.updated_after {
        push(&format!("{} > ?", ts("updated_at")), v.clone().into(), &mut clauses, &mut params);
    }
    if let Some(v) = &q.starting_after {
        // Voucherify: alone it pages backwards from a date; with an ascending order, forwards.
        let op = if q.sort_explicit && !q.descending { ">" } else { "<" };
        push(&format!("{} {op} ?", ts("created_at")), v.clone().into(), &mut clauses, &mut params);
    }
    let where_sql = clauses.join(" AND ");
    let dir = if q.descending { "DESC" } else { "ASC" };
    let col = q.sort.column();
    let n = params.len();
    // The engines disagree on where NULLs sort; say it explicitly for nullable columns.
    let nulls = if col == "created_at" { "" } else { " NULLS LAST" };
    let page_sql = format!(
        "SELECT data FROM {} WHERE {where_sql} ORDER BY {} {dir}{nulls}, id {dir} LIMIT ${} OFFSET ${}",
        t.name,
        ts(col),
        n + 1,
        n + 2
    );
    params.push(Val::Int(q.limit as i64));
    params.push(Val::Int(q.offset() as i64));
    (format!("SELECT COUNT(*) FROM {} WHERE {where_sql}", t.name), page_sql, params)
}
