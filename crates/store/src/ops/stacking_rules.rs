//! A project's own stacking rules (management API). A project without its own uses
//! Voucherify's defaults; deleting its own goes back to them. Every write bumps the
//! promotions cache version in its transaction, so every node's checkout sees the new
//! rules on its next read (the checkout reads them with `promotions::stacking_rules`).

use crate::conn::Conn;
use crate::ops::categories;
use crate::ops::docs::to_json;
use crate::ops::events::project_exists;
use crate::ops::promotions::{self, bump, StoredRules, PROMOTIONS};
use crate::{Result, Store, StoreError};
use serde_json::{json, Value};
use tessera_domain::ids::new_id;
use tessera_domain::stacking::{StackingRules, StackingRulesInput};
use tessera_domain::time::now_string;

/// The rules as the API shows them: every field, plus id and times when the project
/// has its own (the defaults have none).
pub fn view(stored: Option<&StoredRules>, rules: &StackingRules) -> Result<Value> {
    let mut v = serde_json::to_value(rules).map_err(|e| StoreError::Internal(format!("stacking rules: {e}")))?;
    if let (Some(s), Some(o)) = (stored, v.as_object_mut()) {
        o.insert("id".into(), json!(s.id));
        o.insert("created_at".into(), json!(s.created_at));
        o.insert("updated_at".into(), json!(s.updated_at));
    }
    Ok(v)
}

/// Serializes writers of one project's rules (and category deletes, which read them).
fn lock(c: &mut dyn Conn, p: &str) -> Result<()> {
    c.lock_key(&format!("stacking-rules:{p}"))
}

/// Every category the rules name must be one of the project's.
fn check_categories(c: &mut dyn Conn, p: &str, rules: &StackingRules) -> Result<()> {
    categories::check_exist(c, p, "stacking rules", &rules.category_ids())
}

/// The project's own rules with this id, or 404 (also when it uses the defaults).
fn own(c: &mut dyn Conn, p: &str, id: &str) -> Result<(StoredRules, StackingRules)> {
    match promotions::stacking_rules(c, p)? {
        (Some(s), r) if s.id == id => Ok((s, r)),
        _ => Err(StoreError::not_found("stacking_rules", id)),
    }
}

pub fn create(c: &mut dyn Conn, p: &str, input: StackingRulesInput) -> Result<(StoredRules, StackingRules)> {
    project_exists(c, p)?;
    lock(c, p)?;
    if promotions::stacking_rules(c, p)?.0.is_some() {
        return Err(StoreError::Conflict {
            key: "stacking_rules_exist",
            message: "Stacking rules exist".into(),
            details: "The project already has its own stacking rules; update them with PUT or delete them first.".into(),
        });
    }
    let rules = input.apply(&StackingRules::default())?;
    check_categories(c, p, &rules)?;
    let stored = StoredRules {
        id: new_id("stk"),
        created_at: now_string(),
        updated_at: None,
    };
    c.execute(
        "INSERT INTO stacking_rules (project_id, id, created_at, data) VALUES ($1, $2, $3, $4)",
        &[
            p.into(),
            stored.id.clone().into(),
            stored.created_at.clone().into(),
            to_json(&rules)?.into(),
        ],
    )?;
    bump(c, p, PROMOTIONS)?;
    Ok((stored, rules))
}

/// Applies a partial update: absent fields keep their value, lists replace.
pub fn update(c: &mut dyn Conn, p: &str, id: &str, input: StackingRulesInput) -> Result<(StoredRules, StackingRules)> {
    project_exists(c, p)?;
    lock(c, p)?;
    let (mut stored, old) = own(c, p, id)?;
    let rules = input.apply(&old)?;
    check_categories(c, p, &rules)?;
    stored.updated_at = Some(now_string());
    c.execute(
        "UPDATE stacking_rules SET data = $1, updated_at = $2 WHERE project_id = $3 AND id = $4",
        &[to_json(&rules)?.into(), stored.updated_at.clone().into(), p.into(), id.into()],
    )?;
    bump(c, p, PROMOTIONS)?;
    Ok((stored, rules))
}

/// Deletes the project's own rules; the defaults apply from then on.
pub fn delete(c: &mut dyn Conn, p: &str, id: &str) -> Result<()> {
    project_exists(c, p)?;
    lock(c, p)?;
    own(c, p, id)?;
    c.execute(
        "DELETE FROM stacking_rules WHERE project_id = $1 AND id = $2",
        &[p.into(), id.into()],
    )?;
    bump(c, p, PROMOTIONS)?;
    Ok(())
}

impl Store {
    /// The rules in force: the project's own (with id) or the defaults (without).
    pub async fn stacking_rules(&self, project_id: String) -> Result<(Option<StoredRules>, StackingRules)> {
        self.read(move |c| {
            project_exists(c, &project_id)?;
            promotions::stacking_rules(c, &project_id)
        })
        .await
    }

    pub async fn get_stacking_rules(&self, project_id: String, id: String) -> Result<(StoredRules, StackingRules)> {
        self.read(move |c| {
            project_exists(c, &project_id)?;
            own(c, &project_id, &id)
        })
        .await
    }

    pub async fn create_stacking_rules(&self, project_id: String, input: StackingRulesInput) -> Result<(StoredRules, StackingRules)> {
        self.write(move |c| create(c, &project_id, input)).await
    }

    pub async fn update_stacking_rules(
        &self,
        project_id: String,
        id: String,
        input: StackingRulesInput,
    ) -> Result<(StoredRules, StackingRules)> {
        self.write(move |c| update(c, &project_id, &id, input)).await
    }

    pub async fn delete_stacking_rules(&self, project_id: String, id: String) -> Result<()> {
        self.write(move |c| delete(c, &project_id, &id)).await
    }
}
