//! Promotion tiers: discounts that apply without a code when a cart meets their rules.

use crate::customer::{check_identifier, check_metadata, double_option};
use crate::discount::Discount;
use crate::error::InvalidInput;
use crate::limits::MAX_TEXT_LEN;
use crate::validity::{ValidityHours, ValidityTimeframe};
use crate::voucher::{Schedule, MAX_RULES_PER_OBJECT};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Most tiers one promotion campaign may hold.
pub const MAX_TIERS_PER_CAMPAIGN: usize = 100;
/// Most tiers one project may hold: a qualification judges every active tier, so this
/// bounds its cost (about 1 µs a tier, see bench/RESULTS.md).
pub const MAX_TIERS_PER_PROJECT: i64 = 10_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TierAction {
    pub discount: Discount,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PromotionTier {
    pub id: String,
    pub campaign_id: String,
    pub name: String,
    pub banner: Option<String>,
    pub action: TierAction,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub hierarchy: i64,
    pub active: bool,
    #[serde(flatten)]
    pub schedule: Schedule,
    pub category_id: Option<String>,
    pub validation_rules: Vec<String>,
    pub created_at: String,
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct TierActionInput {
    #[serde(default)]
    pub discount: Option<Discount>,
}

/// A tier's create or update body (Voucherify's `PromotionTierCreateParams`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct TierInput {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub banner: Option<Option<String>>,
    #[serde(default)]
    pub action: Option<TierActionInput>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub hierarchy: Option<i64>,
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub start_date: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub expiration_date: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<ValidityTimeframe>)]
    pub validity_timeframe: Option<Option<ValidityTimeframe>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<u8>>)]
    pub validity_day_of_week: Option<Option<Vec<u8>>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<ValidityHours>)]
    pub validity_hours: Option<Option<ValidityHours>>,
    /// A category by name (created if missing), as Voucherify accepts.
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub category_id: Option<Option<String>>,
    #[serde(default)]
    pub validation_rules: Option<Vec<String>>,
}

impl TierInput {
    fn check(&self) -> Result<(), InvalidInput> {
        if let Some(n) = &self.name {
            check_identifier("name", n)?;
        }
        if let Some(Some(b)) = &self.banner {
            if b.len() > MAX_TEXT_LEN {
                return Err(InvalidInput::payload(format!("'banner' is longer than {MAX_TEXT_LEN} characters")));
            }
        }
        if let Some(m) = &self.metadata {
            check_metadata("metadata", m)?;
        }
        if let Some(h) = self.hierarchy {
            if !(0..=1_000_000).contains(&h) {
                return Err(InvalidInput::payload("'hierarchy' must be from 0 to 1000000"));
            }
        }
        if let Some(c) = &self.category {
            check_identifier("category", c)?;
        }
        if let Some(Some(c)) = &self.category_id {
            check_identifier("category_id", c)?;
        }
        if let Some(r) = &self.validation_rules {
            if r.len() > MAX_RULES_PER_OBJECT {
                return Err(InvalidInput::payload(format!(
                    "at most {MAX_RULES_PER_OBJECT} validation rules per object"
                )));
            }
            for id in r {
                check_identifier("validation_rules", id)?;
            }
        }
        if let Some(d) = self.action.as_ref().and_then(|a| a.discount.as_ref()) {
            d.rule()?;
        }
        Ok(())
    }

    fn schedule_over(&self, base: &Schedule) -> Result<Schedule, InvalidInput> {
        crate::voucher::overlay(
            base,
            &self.start_date,
            &self.expiration_date,
            &self.validity_timeframe,
            &self.validity_day_of_week,
            &self.validity_hours,
        )
    }

    /// A new tier; `category_id` is the resolved category (the store resolves names).
    pub fn create(
        self,
        id: String,
        campaign_id: &str,
        default_hierarchy: i64,
        category_id: Option<String>,
        now: &str,
    ) -> Result<PromotionTier, InvalidInput> {
        self.check()?;
        let name = self
            .name
            .clone()
            .ok_or_else(|| InvalidInput::payload("Payload must have required property 'name'"))?;
        let discount = self
            .action
            .as_ref()
            .and_then(|a| a.discount.clone())
            .ok_or_else(|| InvalidInput::payload("a promotion tier needs 'action.discount'"))?;
        Ok(PromotionTier {
            id,
            campaign_id: campaign_id.to_string(),
            name,
            banner: self.banner.clone().flatten(),
            action: TierAction { discount },
            metadata: self.metadata.clone().unwrap_or_default(),
            hierarchy: self.hierarchy.unwrap_or(default_hierarchy),
            active: self.active.unwrap_or(true),
            schedule: self.schedule_over(&Schedule::default())?,
            category_id,
            validation_rules: self.validation_rules.clone().unwrap_or_default(),
            created_at: now.to_string(),
            updated_at: None,
        })
    }

    /// `category_id`: `Some(new)` when the input names a category (resolved by the store).
    pub fn update(self, existing: &PromotionTier, category_id: Option<Option<String>>, now: &str) -> Result<PromotionTier, InvalidInput> {
        self.check()?;
        let mut t = existing.clone();
        t.schedule = self.schedule_over(&existing.schedule)?;
        if let Some(n) = self.name {
            t.name = n;
        }
        if let Some(b) = self.banner {
            t.banner = b;
        }
        if let Some(d) = self.action.and_then(|a| a.discount) {
            t.action.discount = d;
        }
        if let Some(m) = self.metadata {
            t.metadata = m;
        }
        if let Some(h) = self.hierarchy {
            t.hierarchy = h;
        }
        if let Some(a) = self.active {
            t.active = a;
        }
        if let Some(c) = category_id {
            t.category_id = c;
        }
        if let Some(r) = self.validation_rules {
            t.validation_rules = r;
        }
        t.updated_at = Some(now.to_string());
        Ok(t)
    }
}

/// The `promotion` part of a PROMOTION campaign's create body.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct PromotionInput {
    #[serde(default)]
    pub tiers: Option<Vec<TierInput>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_need_a_name_and_a_valid_discount() {
        let ok: TierInput = serde_json::from_value(serde_json::json!({
            "name": "10% over 100", "action": {"discount": {"type": "PERCENT", "percent_off": 10}}, "hierarchy": 2
        }))
        .expect("input");
        let t = ok
            .create("promo_1".into(), "camp_1", 1, None, "2026-01-01T00:00:00.000Z")
            .expect("valid");
        assert_eq!((t.hierarchy, t.active), (2, true));
        let no_name: TierInput =
            serde_json::from_value(serde_json::json!({"action": {"discount": {"type": "AMOUNT", "amount_off": 100}}})).expect("input");
        assert!(no_name.create("p".into(), "c", 1, None, "now").is_err());
        let bad: TierInput =
            serde_json::from_value(serde_json::json!({"name": "x", "action": {"discount": {"type": "PERCENT", "percent_off": 150}}}))
                .expect("input");
        assert!(bad.create("p".into(), "c", 1, None, "now").is_err());
        let up: TierInput = serde_json::from_value(serde_json::json!({"active": false, "banner": null})).expect("input");
        let u = up.update(&t, None, "later").expect("valid");
        assert!(!u.active);
        assert_eq!(u.name, t.name);
    }
}
