//! Promotion tiers, the project's stacking rules and categories as the checkout reads
//! them, and the version counter that tells every node when its cached promotion set is
//! stale.

use crate::conn::Conn;
use crate::Result;
use serde_json::{json, Value};
use std::collections::HashMap;
use tessera_domain::stacking::StackingRules;

/// What a cached promotion set depends on: tiers, promotion campaigns, categories,
/// validation rules and stacking rules. Bumped in the same transaction as the change.
pub const PROMOTIONS: &str = "promotions";

pub fn bump(c: &mut dyn Conn, p: &str, name: &str) -> Result<()> {
    c.execute(
        "INSERT INTO cache_versions (project_id, name, version) VALUES ($1, $2, 1) \
         ON CONFLICT (project_id, name) DO UPDATE SET version = cache_versions.version + 1",
        &[p.into(), name.into()],
    )?;
    Ok(())
}

pub fn version(c: &mut dyn Conn, p: &str, name: &str) -> Result<i64> {
    Ok(
        match c.query_opt(
            "SELECT version FROM cache_versions WHERE project_id = $1 AND name = $2",
            &[p.into(), name.into()],
        )? {
            Some(row) => row.int(0)?,
            None => 0,
        },
    )
}

/// The project's stacking rules: its own (with their id) or the defaults.
pub fn stacking_rules(c: &mut dyn Conn, p: &str) -> Result<(Option<StoredRules>, StackingRules)> {
    match c.query_opt(
        "SELECT id, created_at, updated_at, data FROM stacking_rules WHERE project_id = $1",
        &[p.into()],
    )? {
        Some(row) => {
            let rules: StackingRules = row.json(3)?;
            Ok((
                Some(StoredRules {
                    id: row.text(0)?,
                    created_at: row.text(1)?,
                    updated_at: row.opt_text(2)?,
                }),
                rules,
            ))
        }
        None => Ok((None, StackingRules::default())),
    }
}

#[derive(Debug, Clone)]
pub struct StoredRules {
    pub id: String,
    pub created_at: String,
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CategoryRow {
    pub id: String,
    pub name: String,
    pub hierarchy: i64,
    pub created_at: String,
    pub updated_at: Option<String>,
}

impl CategoryRow {
    pub fn view(&self, rules: Option<&StackingRules>) -> Value {
        let mut v = json!({
            "id": self.id, "name": self.name, "hierarchy": self.hierarchy, "object": "category",
            "created_at": self.created_at, "updated_at": self.updated_at,
        });
        if let Some(t) = rules.and_then(|r| r.stacking_type(&self.id)) {
            v["stacking_rules_type"] = json!(t);
        }
        v
    }
}

/// Every category of the project by id (a project has few; the checkout needs their
/// hierarchy and the stacking rules name them).
pub fn categories(c: &mut dyn Conn, p: &str) -> Result<HashMap<String, CategoryRow>> {
    let rows = c.query(
        "SELECT id, name, hierarchy, created_at, updated_at FROM categories WHERE project_id = $1",
        &[p.into()],
    )?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        let row = CategoryRow {
            id: r.text(0)?,
            name: r.text(1)?,
            hierarchy: r.int(2)?,
            created_at: r.text(3)?,
            updated_at: r.opt_text(4)?,
        };
        out.insert(row.id.clone(), row);
    }
    Ok(out)
}
