//! Promotion stacks: a named, ordered set of a promotion campaign's tiers that applies
//! together.

use crate::customer::check_identifier;
use crate::customer::double_option;
use crate::error::InvalidInput;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Voucherify's cap on tiers in one stack; it also bounds the existence check per write.
pub const MAX_STACK_TIERS: usize = 30;
/// Stacks per campaign: the per-campaign list returns all of them in one page.
pub const MAX_STACKS_PER_CAMPAIGN: i64 = 100;
pub const MAX_STACK_NAME_LEN: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HierarchyMode {
    /// The tiers apply in the order `ids` lists them (the only mode Voucherify has).
    Manual,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StackTiers {
    pub ids: Vec<String>,
    pub hierarchy_mode: HierarchyMode,
}

/// A stack as stored (the document in `promotion_stacks.data`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionStack {
    pub id: String,
    pub name: String,
    pub campaign_id: String,
    pub tiers: StackTiers,
    pub category_id: Option<String>,
    pub created_at: String,
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StackTiersInput {
    /// Tier ids of the campaign, in the order they apply: 1 to 30, no repeats.
    pub ids: Option<Vec<String>>,
    /// Only `MANUAL`.
    pub hierarchy_mode: Option<HierarchyMode>,
}

/// A create or update body; on update, absent fields keep their value and `ids`
/// replaces the whole list.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromotionStackInput {
    pub name: Option<String>,
    pub tiers: Option<StackTiersInput>,
    /// A category of the project; `null` on update removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub category_id: Option<Option<String>>,
}

impl PromotionStackInput {
    pub fn create(self, id: String, campaign_id: String, now: &str) -> Result<PromotionStack, InvalidInput> {
        let name = self
            .name
            .ok_or_else(|| InvalidInput::payload("Payload should have required property 'name'"))?;
        let tiers = self
            .tiers
            .ok_or_else(|| InvalidInput::payload("Payload should have required property 'tiers'"))?;
        let ids = tiers
            .ids
            .ok_or_else(|| InvalidInput::payload("Payload should have required property 'tiers.ids'"))?;
        let stack = PromotionStack {
            id,
            name,
            campaign_id,
            tiers: StackTiers {
                ids,
                hierarchy_mode: tiers.hierarchy_mode.unwrap_or(HierarchyMode::Manual),
            },
            category_id: self.category_id.flatten(),
            created_at: now.to_string(),
            updated_at: None,
        };
        stack.check()?;
        Ok(stack)
    }

    pub fn update(self, base: &PromotionStack, now: &str) -> Result<PromotionStack, InvalidInput> {
        let mut s = base.clone();
        if let Some(n) = self.name {
            s.name = n;
        }
        if let Some(t) = self.tiers {
            if let Some(ids) = t.ids {
                s.tiers.ids = ids;
            }
            if let Some(m) = t.hierarchy_mode {
                s.tiers.hierarchy_mode = m;
            }
        }
        if let Some(c) = self.category_id {
            s.category_id = c;
        }
        s.updated_at = Some(now.to_string());
        s.check()?;
        Ok(s)
    }
}

impl PromotionStack {
    pub fn check(&self) -> Result<(), InvalidInput> {
        if self.name.trim().is_empty() || self.name.chars().count() > MAX_STACK_NAME_LEN {
            return Err(InvalidInput::payload(format!(
                "'name' must be 1 to {MAX_STACK_NAME_LEN} characters and not blank"
            )));
        }
        let ids = &self.tiers.ids;
        if ids.is_empty() || ids.len() > MAX_STACK_TIERS {
            return Err(InvalidInput::payload(format!(
                "'tiers.ids' must list 1 to {MAX_STACK_TIERS} promotion tiers"
            )));
        }
        for (i, id) in ids.iter().enumerate() {
            check_identifier("tiers.ids", id)?;
            if ids[..i].contains(id) {
                return Err(InvalidInput::payload(format!("'tiers.ids' lists {id} twice")));
            }
        }
        if let Some(c) = &self.category_id {
            check_identifier("category_id", c)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(v: serde_json::Value) -> PromotionStackInput {
        serde_json::from_value(v).expect("input")
    }

    #[test]
    fn create_requires_name_and_tiers() {
        let s = input(serde_json::json!({"name": "S", "tiers": {"ids": ["promo_a", "promo_b"]}}))
            .create("stack_1".into(), "camp_1".into(), "t0")
            .expect("valid");
        assert_eq!(s.tiers.hierarchy_mode, HierarchyMode::Manual);
        assert_eq!(s.category_id, None);
        for bad in [
            serde_json::json!({"tiers": {"ids": ["promo_a"]}}),
            serde_json::json!({"name": "S"}),
            serde_json::json!({"name": "S", "tiers": {}}),
            serde_json::json!({"name": "S", "tiers": {"ids": []}}),
            serde_json::json!({"name": "S", "tiers": {"ids": ["promo_a", "promo_a"]}}),
            serde_json::json!({"name": "", "tiers": {"ids": ["promo_a"]}}),
        ] {
            assert!(input(bad.clone()).create("stack_1".into(), "camp_1".into(), "t0").is_err(), "{bad}");
        }
        let many: Vec<String> = (0..31).map(|i| format!("promo_{i}")).collect();
        assert!(input(serde_json::json!({"name": "S", "tiers": {"ids": many}}))
            .create("stack_1".into(), "camp_1".into(), "t0")
            .is_err());
        assert!(serde_json::from_value::<PromotionStackInput>(
            serde_json::json!({"name": "S", "tiers": {"ids": ["promo_a"], "hierarchy_mode": "AUTO"}})
        )
        .is_err());
    }

    #[test]
    fn update_replaces_what_it_names() {
        let s = input(serde_json::json!({"name": "S", "tiers": {"ids": ["promo_a"]}, "category_id": "cat_1"}))
            .create("stack_1".into(), "camp_1".into(), "t0")
            .expect("valid");
        let u = input(serde_json::json!({"tiers": {"ids": ["promo_b"]}}))
            .update(&s, "t1")
            .expect("valid");
        assert_eq!(
            (u.name.as_str(), u.tiers.ids.clone(), u.category_id.as_deref()),
            ("S", vec!["promo_b".to_string()], Some("cat_1"))
        );
        assert_eq!(u.updated_at.as_deref(), Some("t1"));
        let cleared = input(serde_json::json!({"category_id": null})).update(&s, "t1").expect("valid");
        assert_eq!(cleared.category_id, None);
        assert!(input(serde_json::json!({"tiers": {"ids": []}})).update(&s, "t1").is_err());
    }
}
