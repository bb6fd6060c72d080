//! Validation rules and their assignments to vouchers and campaigns.

use crate::conn::{Conn, Val};
use crate::ops::docs::{self, to_json, Table};
use crate::ops::org::Tenant;
use crate::{Result, Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tessera_domain::checkout::Targets;
use tessera_domain::ids::new_id;
use tessera_domain::list::{ListQuery, ListSpec, SortField};
use tessera_domain::rules::RuleSet;
use tessera_domain::time::now_string;
use tessera_domain::InvalidInput;

pub const TABLE: Table = Table {
    name: "validation_rules",
    resource_type: "validation_rules",
};
pub const LIST_SPEC: ListSpec = ListSpec {
    sorts: &[SortField::CreatedAt, SortField::UpdatedAt],
    filters: &[],
    default_limit: 10,
};
/// Rules assigned to one object; bounds the work of every validation.
const MAX_ASSIGNMENTS_PER_OBJECT: i64 = 10;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ValidationRule {
    pub id: String,
    pub name: Option<String>,
    pub rules: Value,
    pub error: Option<Value>,
    pub applicable_to: Option<Targets>,
    #[serde(rename = "type")]
    pub kind: String,
    pub context_type: String,
    #[serde(default)]
    pub bundle_rules: Option<Value>,
    pub created_at: String,
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuleInput {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub rules: Option<Value>,
    #[serde(default)]
    pub error: Option<Value>,
    #[serde(default)]
    pub applicable_to: Option<Targets>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub context_type: Option<String>,
    #[serde(default)]
    pub bundle_rules: Option<Value>,
}

impl RuleInput {
    fn check(&self) -> std::result::Result<(), InvalidInput> {
        let invalid = |d: String| InvalidInput {
            key: "invalid_validation_rules",
            message: "Invalid Validation Rule Definition".into(),
            details: d,
        };
        if let Some(r) = &self.rules {
            RuleSet::parse(r).map_err(|e| invalid(e.details))?;
        }
        if let Some(n) = &self.name {
            tessera_domain::customer::check_identifier("name", n)?;
        }
        if let Some(a) = &self.applicable_to {
            if a.included.len() + a.excluded.len() > 1000 {
                return Err(invalid("'applicable_to' may list at most 1000 targets".into()));
            }
            for t in a.included.iter().chain(&a.excluded) {
                if t.object != "product" && t.object != "sku" {
                    return Err(invalid(format!(
                        "targets of type '{}' are not supported; use 'product' or 'sku'",
                        t.object
                    )));
                }
            }
        }
        Ok(())
    }
}

/// A rule ready to evaluate.
#[derive(Clone)]
pub struct CompiledRule {
    pub rule: ValidationRule,
    pub set: RuleSet,
    /// Whether the rule reads redemption counts (which cost a query to fetch).
    pub needs_counts: bool,
    /// Whether the rule reads the order's items (qualification's PRODUCTS scenarios).
    pub reads_items: bool,
    /// Whether the rule asks about segment membership (one indexed read to fetch).
    pub reads_segments: bool,
}

impl CompiledRule {
    pub fn new(rule: ValidationRule, set: RuleSet) -> Self {
        let names = set.names();
        let needs_counts = names.iter().any(|n| n.contains(".count") || n.contains("redemptions."));
        let reads_items = names
            .iter()
            .any(|n| n.starts_with("product.") || n.starts_with("sku.") || n.starts_with("order.items."));
        let reads_segments = names.contains("customer.segment");
        CompiledRule {
            rule,
            set,
            needs_counts,
            reads_items,
            reads_segments,
        }
    }
}

pub(crate) const RULES_FOR_SQL: &str = "SELECT rule_id FROM rule_assignments WHERE project_id = $1 AND related_object_id = $2 LIMIT 10";

/// The rules that apply to a voucher: its own, its campaign's, and explicit assignments.
pub fn rules_for(c: &mut dyn Conn, p: &str, ids: &[String], object_ids: &[&str]) -> Result<Vec<CompiledRule>> {
    let mut wanted: Vec<String> = ids.to_vec();
    for oid in object_ids {
        for r in c.query(RULES_FOR_SQL, &[p.into(), (*oid).into()])? {
            wanted.push(r.text(0)?);
        }
    }
    wanted.sort();
    wanted.dedup();
    let mut out = Vec::new();
    for id in wanted {
        // A rule deleted after assignment no longer constrains anything.
        if let Some(rule) = docs::find_by_id::<ValidationRule>(c, &TABLE, p, &id)? {
            let set = RuleSet::parse(&rule.rules).map_err(StoreError::Invalid)?;
            out.push(CompiledRule::new(rule, set));
        }
    }
    Ok(out)
}

pub fn rule_view(r: &ValidationRule, assignments: i64) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    if let Value::Object(m) = &mut v {
        m.insert("assignments_count".into(), assignments.into());
        m.insert("object".into(), "validation_rules".into());
    }
    v
}

fn save(c: &mut dyn Conn, p: &str, r: &ValidationRule) -> Result<()> {
    c.execute(
        "INSERT INTO validation_rules (project_id, id, name, created_at, updated_at, data) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (project_id, id) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at, data = excluded.data",
        &[
            p.into(),
            r.id.clone().into(),
            r.name.clone().into(),
            r.created_at.clone().into(),
            r.updated_at.clone().into(),
            to_json(r)?.into(),
        ],
    )?;
    Ok(())
}

fn count_assignments(c: &mut dyn Conn, p: &str, rule_id: &str) -> Result<i64> {
    c.query_one(
        "SELECT COUNT(*) FROM rule_assignments WHERE project_id = $1 AND rule_id = $2",
        &[p.into(), rule_id.into()],
    )?
    .int(0)
}

impl Store {
    pub async fn create_rule(&self, t: &Tenant, input: RuleInput) -> Result<Value> {
        input.check()?;
        let p = t.project_id().to_string();
        self.write(move |c| {
            let r = ValidationRule {
                id: new_id("val"),
                name: input.name,
                rules: input.rules.unwrap_or_else(|| Value::Object(Map::new())),
                error: input.error,
                applicable_to: input.applicable_to,
                kind: input.kind.unwrap_or_else(|| "expression".into()),
                context_type: input.context_type.unwrap_or_else(|| "global".into()),
                bundle_rules: input.bundle_rules,
                created_at: now_string(),
                updated_at: None,
            };
            save(c, &p, &r)?;
            Ok(rule_view(&r, 0))
        })
        .await
    }

    pub async fn get_rule(&self, t: &Tenant, id: String) -> Result<Value> {
        let p = t.project_id().to_string();
        self.read(move |c| {
            let r: ValidationRule = docs::get(c, &TABLE, &p, &id)?;
            let n = count_assignments(c, &p, &r.id)?;
            Ok(rule_view(&r, n))
        })
        .await
    }

    pub async fn list_rules(&self, t: &Tenant, q: ListQuery) -> Result<(Vec<Value>, i64)> {
        let p = t.project_id().to_string();
        self.read(move |c| {
            let (rules, total) = docs::list::<ValidationRule>(c, &TABLE, &p, &q, &[], &[])?;
            let mut out = Vec::with_capacity(rules.len());
            for r in rules {
                let n = count_assignments(c, &p, &r.id)?;
                out.push(rule_view(&r, n));
            }
            Ok((out, total))
        })
        .await
    }

    pub async fn update_rule(&self, t: &Tenant, id: String, input: RuleInput) -> Result<Value> {
        input.check()?;
        let p = t.project_id().to_string();
        self.write(move |c| {
            // Tiers cache their compiled rules.
            crate::ops::promotions::bump(c, &p, crate::ops::promotions::PROMOTIONS)?;
            let mut r: ValidationRule = docs::get_for_update(c, &TABLE, &p, &id)?;
            if input.name.is_some() {
                r.name = input.name;
            }
            if let Some(rules) = input.rules {
                r.rules = rules;
            }
            if input.error.is_some() {
                r.error = input.error;
            }
            if input.applicable_to.is_some() {
                r.applicable_to = input.applicable_to;
            }
            if input.bundle_rules.is_some() {
                r.bundle_rules = input.bundle_rules;
            }
            r.updated_at = Some(now_string());
            save(c, &p, &r)?;
            let n = count_assignments(c, &p, &r.id)?;
            Ok(rule_view(&r, n))
        })
        .await
    }

    pub async fn delete_rule(&self, t: &Tenant, id: String) -> Result<()> {
        let p = t.project_id().to_string();
        self.write(move |c| {
            // Tiers cache their compiled rules.
            crate::ops::promotions::bump(c, &p, crate::ops::promotions::PROMOTIONS)?;
            let rid = docs::delete(c, &TABLE, &p, &id)?;
            c.execute(
                "DELETE FROM rule_assignments WHERE project_id = $1 AND rule_id = $2",
                &[p.into(), rid.into()],
            )?;
            Ok(())
        })
        .await
    }

    /// Assigns a rule to a voucher (by code or id) or a campaign (by id or name).
    pub async fn assign_rule(&self, t: &Tenant, rule_id: String, object_type: String, object_id: String) -> Result<Value> {
        let t = t.clone();
        self.write(move |c| {
            let p = t.project_id();
            crate::ops::promotions::bump(c, p, crate::ops::promotions::PROMOTIONS)?;
            let r: ValidationRule = docs::get(c, &TABLE, p, &rule_id)?;
            let target_id = match object_type.as_str() {
                "voucher" => crate::ops::vouchers::get_voucher_rec(c, &t, &object_id)?.voucher.id,
                "campaign" => crate::ops::vouchers::get_campaign_rec(c, p, &object_id)?.campaign.id,
                "promotion_tier" => crate::ops::promotions::load_tier(c, p, &object_id)?.id,
                other => {
                    return Err(StoreError::Invalid(InvalidInput::payload(format!(
                        "'related_object_type' {other} is not supported; use voucher, campaign or promotion_tier"
                    ))))
                }
            };
            // Serializes assignments to one object, so the cap holds under concurrency.
            c.lock_key(&format!("rule-assignments:{p}:{target_id}"))?;
            let n = c.query_one("SELECT COUNT(*) FROM rule_assignments WHERE project_id = $1 AND related_object_id = $2", &[p.into(), target_id.clone().into()])?.int(0)?;
            if n >= MAX_ASSIGNMENTS_PER_OBJECT {
                return Err(StoreError::Invalid(InvalidInput::payload(format!("an object may have at most {MAX_ASSIGNMENTS_PER_OBJECT} rules assigned"))));
            }
            let id = new_id("asgm");
            let now = now_string();
            let inserted = c.execute(
                "INSERT INTO rule_assignments (project_id, id, rule_id, related_object_type, related_object_id, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (project_id, rule_id, related_object_type, related_object_id) DO NOTHING",
                &[p.into(), id.clone().into(), r.id.clone().into(), object_type.clone().into(), target_id.clone().into(), now.clone().into()],
            )?;
            if inserted == 0 {
                return Err(StoreError::Conflict { key: "duplicate_found", message: "Duplicated resource found".into(), details: "The rule is already assigned to this object.".into() });
            }
            Ok(serde_json::json!({"id": id, "rule_id": r.id, "related_object_id": target_id, "related_object_type": object_type, "created_at": now, "object": "validation_rules_assignment"}))
        })
        .await
    }

    pub async fn list_rule_assignments(&self, t: &Tenant, rule_id: String) -> Result<Vec<Value>> {
        let p = t.project_id().to_string();
        self.read(move |c| {
            let r: ValidationRule = docs::get(c, &TABLE, &p, &rule_id)?;
            c.query(
                "SELECT id, rule_id, related_object_id, related_object_type, created_at FROM rule_assignments WHERE project_id = $1 AND rule_id = $2 ORDER BY created_at LIMIT $3",
                &[p.clone().into(), r.id.into(), Val::Int(1000)],
            )?
            .iter()
            .map(|row| {
                Ok(serde_json::json!({"id": row.text(0)?, "rule_id": row.text(1)?, "related_object_id": row.text(2)?, "related_object_type": row.text(3)?, "created_at": row.text(4)?, "object": "validation_rules_assignment"}))
            })
            .collect()
        })
        .await
    }

    pub async fn delete_rule_assignment(&self, t: &Tenant, rule_id: String, assignment_id: String) -> Result<()> {
        let p = t.project_id().to_string();
        self.write(move |c| {
            // Tiers cache their compiled rules.
            crate::ops::promotions::bump(c, &p, crate::ops::promotions::PROMOTIONS)?;
            let n = c.execute(
                "DELETE FROM rule_assignments WHERE project_id = $1 AND rule_id = $2 AND id = $3",
                &[p.into(), rule_id.into(), assignment_id.clone().into()],
            )?;
            if n == 0 {
                return Err(StoreError::not_found("validation_rules_assignment", assignment_id));
            }
            Ok(())
        })
        .await
    }
}
