//! Stacking rules: which of the redeemables in one request apply, in what order, and why
//! the others do not. Pure decisions; the store feeds them candidates and the calculator.

use crate::customer::check_identifier;
use crate::customer::double_option;
use crate::error::InvalidInput;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Most category ids one stacking-rule list may name.
pub const MAX_CATEGORY_LIST: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApplicationMode {
    All,
    Partial,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SortingRule {
    CategoryHierarchy,
    RequestedOrder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProductsMode {
    Stack,
    Once,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NoEffectRule {
    RedeemAnyway,
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CalculationMode {
    InitialAmount,
    DiscountedAmount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RollbackOrderMode {
    WithOrder,
    WithoutOrder,
}

/// A project's stacking rules, with Voucherify's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StackingRules {
    pub redeemables_limit: u32,
    pub applicable_redeemables_limit: u32,
    /// `null`: no limit per category.
    pub applicable_redeemables_per_category_limit: Option<u32>,
    pub applicable_exclusive_redeemables_limit: u32,
    pub applicable_exclusive_redeemables_per_category_limit: Option<u32>,
    pub exclusive_categories: Vec<String>,
    pub joint_categories: Vec<String>,
    pub discount_calculation_mode: CalculationMode,
    pub initial_amount_mode_categories: Vec<String>,
    pub discounted_amount_mode_categories: Vec<String>,
    pub redeemables_application_mode: ApplicationMode,
    pub redeemables_sorting_rule: SortingRule,
    pub redeemables_products_application_mode: ProductsMode,
    pub redeemables_no_effect_rule: NoEffectRule,
    pub no_effect_skip_categories: Vec<String>,
    pub no_effect_redeem_anyway_categories: Vec<String>,
    pub redeemables_rollback_order_mode: RollbackOrderMode,
}

impl Default for StackingRules {
    fn default() -> Self {
        StackingRules {
            redeemables_limit: 30,
            applicable_redeemables_limit: 5,
            applicable_redeemables_per_category_limit: Some(1),
            applicable_exclusive_redeemables_limit: 1,
            applicable_exclusive_redeemables_per_category_limit: Some(1),
            exclusive_categories: Vec::new(),
            joint_categories: Vec::new(),
            discount_calculation_mode: CalculationMode::DiscountedAmount,
            initial_amount_mode_categories: Vec::new(),
            discounted_amount_mode_categories: Vec::new(),
            redeemables_application_mode: ApplicationMode::All,
            redeemables_sorting_rule: SortingRule::RequestedOrder,
            redeemables_products_application_mode: ProductsMode::Stack,
            redeemables_no_effect_rule: NoEffectRule::RedeemAnyway,
            no_effect_skip_categories: Vec::new(),
            no_effect_redeem_anyway_categories: Vec::new(),
            redeemables_rollback_order_mode: RollbackOrderMode::WithOrder,
        }
    }
}

/// A create or update body: absent fields keep their value; a list replaces the old one.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StackingRulesInput {
    #[serde(default)]
    pub redeemables_limit: Option<u32>,
    #[serde(default)]
    pub applicable_redeemables_limit: Option<u32>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>)]
    pub applicable_redeemables_per_category_limit: Option<Option<u32>>,
    #[serde(default)]
    pub applicable_exclusive_redeemables_limit: Option<u32>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>)]
    pub applicable_exclusive_redeemables_per_category_limit: Option<Option<u32>>,
    #[serde(default)]
    pub exclusive_categories: Option<Vec<String>>,
    #[serde(default)]
    pub joint_categories: Option<Vec<String>>,
    #[serde(default)]
    pub discount_calculation_mode: Option<CalculationMode>,
    #[serde(default)]
    pub initial_amount_mode_categories: Option<Vec<String>>,
    #[serde(default)]
    pub discounted_amount_mode_categories: Option<Vec<String>>,
    #[serde(default)]
    pub redeemables_application_mode: Option<ApplicationMode>,
    #[serde(default)]
    pub redeemables_sorting_rule: Option<SortingRule>,
    #[serde(default)]
    pub redeemables_products_application_mode: Option<ProductsMode>,
    #[serde(default)]
    pub redeemables_no_effect_rule: Option<NoEffectRule>,
    #[serde(default)]
    pub no_effect_skip_categories: Option<Vec<String>>,
    #[serde(default)]
    pub no_effect_redeem_anyway_categories: Option<Vec<String>>,
    #[serde(default)]
    pub redeemables_rollback_order_mode: Option<RollbackOrderMode>,
}

fn range(name: &str, v: u32, max: u32) -> Result<(), InvalidInput> {
    if !(1..=max).contains(&v) {
        return Err(InvalidInput::payload(format!("'{name}' must be from 1 to {max}")));
    }
    Ok(())
}

impl StackingRulesInput {
    /// The rules this input makes of `base`, checked as a whole.
    pub fn apply(self, base: &StackingRules) -> Result<StackingRules, InvalidInput> {
        let mut r = base.clone();
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { r.$f = v; } )* };
        }
        set!(
            redeemables_limit,
            applicable_redeemables_limit,
            applicable_redeemables_per_category_limit,
            applicable_exclusive_redeemables_limit,
            applicable_exclusive_redeemables_per_category_limit,
            exclusive_categories,
            joint_categories,
            discount_calculation_mode,
            initial_amount_mode_categories,
            discounted_amount_mode_categories,
            redeemables_application_mode,
            redeemables_sorting_rule,
            redeemables_products_application_mode,
            redeemables_no_effect_rule,
            no_effect_skip_categories,
            no_effect_redeem_anyway_categories,
            redeemables_rollback_order_mode
        );
        r.check()?;
        Ok(r)
    }
}

impl StackingRules {
    pub fn check(&self) -> Result<(), InvalidInput> {
        range("redeemables_limit", self.redeemables_limit, 30)?;
        range("applicable_redeemables_limit", self.applicable_redeemables_limit, 30)?;
        if self.applicable_redeemables_limit > self.redeemables_limit {
            return Err(InvalidInput::payload(
                "'applicable_redeemables_limit' must not exceed 'redeemables_limit'",
            ));
        }
        if let Some(n) = self.applicable_redeemables_per_category_limit {
            range("applicable_redeemables_per_category_limit", n, 30)?;
            if n > self.applicable_redeemables_limit {
                return Err(InvalidInput::payload(
                    "'applicable_redeemables_per_category_limit' must not exceed 'applicable_redeemables_limit'",
                ));
            }
        }
        range(
            "applicable_exclusive_redeemables_limit",
            self.applicable_exclusive_redeemables_limit,
            5,
        )?;
        if let Some(n) = self.applicable_exclusive_redeemables_per_category_limit {
            range("applicable_exclusive_redeemables_per_category_limit", n, 30)?;
            if n > self.applicable_exclusive_redeemables_limit {
                return Err(InvalidInput::payload(
                    "'applicable_exclusive_redeemables_per_category_limit' must not exceed 'applicable_exclusive_redeemables_limit'",
                ));
            }
        }
        let lists = [
            ("exclusive_categories", &self.exclusive_categories),
            ("joint_categories", &self.joint_categories),
            ("initial_amount_mode_categories", &self.initial_amount_mode_categories),
            ("discounted_amount_mode_categories", &self.discounted_amount_mode_categories),
            ("no_effect_skip_categories", &self.no_effect_skip_categories),
            ("no_effect_redeem_anyway_categories", &self.no_effect_redeem_anyway_categories),
        ];
        for (name, list) in lists {
            if list.len() > MAX_CATEGORY_LIST {
                return Err(InvalidInput::payload(format!(
                    "'{name}' may name at most {MAX_CATEGORY_LIST} categories"
                )));
            }
            for id in list {
                check_identifier(name, id)?;
            }
        }
        let both = |a: &[String], b: &[String]| a.iter().find(|x| b.contains(x)).cloned();
        for (a, an, b, bn) in [
            (
                &self.exclusive_categories,
                "exclusive_categories",
                &self.joint_categories,
                "joint_categories",
            ),
            (
                &self.initial_amount_mode_categories,
                "initial_amount_mode_categories",
                &self.discounted_amount_mode_categories,
                "discounted_amount_mode_categories",
            ),
            (
                &self.no_effect_skip_categories,
                "no_effect_skip_categories",
                &self.no_effect_redeem_anyway_categories,
                "no_effect_redeem_anyway_categories",
            ),
        ] {
            if let Some(id) = both(a, b) {
                return Err(InvalidInput::payload(format!("category {id} is in both '{an}' and '{bn}'")));
            }
        }
        Ok(())
    }

    /// Every category id the rules name (to check they exist).
    pub fn category_ids(&self) -> Vec<&str> {
        let mut v: Vec<&str> = [
            &self.exclusive_categories,
            &self.joint_categories,
            &self.initial_amount_mode_categories,
            &self.discounted_amount_mode_categories,
            &self.no_effect_skip_categories,
            &self.no_effect_redeem_anyway_categories,
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    pub fn stacking_type(&self, category: &str) -> Option<&'static str> {
        if self.exclusive_categories.iter().any(|c| c == category) {
            Some("EXCLUSIVE")
        } else if self.joint_categories.iter().any(|c| c == category) {
            Some("JOINT")
        } else {
            None
        }
    }

    /// Whether discounts of a redeemable in these categories are computed on the order as
    /// it came in rather than on what earlier redeemables left.
    pub fn initial_amount_for(&self, categories: &[String]) -> bool {
        if categories.iter().any(|c| self.initial_amount_mode_categories.contains(c)) {
            return true;
        }
        if categories.iter().any(|c| self.discounted_amount_mode_categories.contains(c)) {
            return false;
        }
        self.discount_calculation_mode == CalculationMode::InitialAmount
    }

    /// Whether a redeemable with no effect on the order is skipped.
    pub fn skip_no_effect(&self, categories: &[String]) -> bool {
        if categories.iter().any(|c| self.no_effect_skip_categories.contains(c)) {
            return true;
        }
        if categories.iter().any(|c| self.no_effect_redeem_anyway_categories.contains(c)) {
            return false;
        }
        self.redeemables_no_effect_rule == NoEffectRule::Skip
    }
}

/// Why a valid redeemable was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    ApplicableLimit,
    PerCategoryLimit(String),
    ExclusiveLimit,
    ExclusivePerCategoryLimit(String),
    ExclusionRules(String),
    NoEffect,
    PrecedingValidationFailed,
}

impl Skip {
    pub fn key(&self) -> &'static str {
        match self {
            Skip::ApplicableLimit => "applicable_redeemables_limit_exceeded",
            Skip::PerCategoryLimit(_) => "applicable_redeemables_per_category_limit_exceeded",
            Skip::ExclusiveLimit => "applicable_exclusive_redeemables_limit_exceeded",
            Skip::ExclusivePerCategoryLimit(_) => "applicable_exclusive_redeemables_per_category_limit_exceeded",
            Skip::ExclusionRules(_) => "exclusion_rules_not_met",
            Skip::NoEffect => "redeemable_no_effect",
            Skip::PrecedingValidationFailed => "preceding_validation_failed",
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            Skip::ApplicableLimit => "Applicable redeemables limit exceeded",
            Skip::PerCategoryLimit(_) => "Applicable redeemables limit per category exceeded",
            Skip::ExclusiveLimit => "Applicable exclusive redeemables limit exceeded",
            Skip::ExclusivePerCategoryLimit(_) => "Applicable exclusive redeemables limit per category exceeded",
            Skip::ExclusionRules(_) => "Redeemable cannot be applied due to exclusion rules",
            Skip::NoEffect => "Redeemable has no effect on the order",
            Skip::PrecedingValidationFailed => "Redeemable cannot be applied due to preceding validation failure",
        }
    }

    /// The stacking rule behind the decision, for explanations.
    pub fn explain(&self, r: &StackingRules) -> String {
        match self {
            Skip::ApplicableLimit => format!(
                "applicable_redeemables_limit is {}; that many redeemables were applied before this one",
                r.applicable_redeemables_limit
            ),
            Skip::PerCategoryLimit(c) => format!(
                "applicable_redeemables_per_category_limit is {}; category {c} reached it before this one",
                r.applicable_redeemables_per_category_limit.unwrap_or(0)
            ),
            Skip::ExclusiveLimit => format!(
                "applicable_exclusive_redeemables_limit is {}; that many exclusive redeemables were applied before this one",
                r.applicable_exclusive_redeemables_limit
            ),
            Skip::ExclusivePerCategoryLimit(c) => format!(
                "applicable_exclusive_redeemables_per_category_limit is {}; exclusive category {c} reached it before this one",
                r.applicable_exclusive_redeemables_per_category_limit.unwrap_or(0)
            ),
            Skip::ExclusionRules(by) => {
                format!("{by} is in an exclusive category and this redeemable is in neither an exclusive nor a joint category")
            }
            Skip::NoEffect => "the redeemable changes nothing in the order and the no-effect rule says SKIP".into(),
            Skip::PrecedingValidationFailed => "redeemables_application_mode is ALL and another redeemable is inapplicable".into(),
        }
    }
}

/// What the stacking decision needs to know about one redeemable.
#[derive(Debug, Clone, Default)]
pub struct Candidate {
    pub categories: Vec<String>,
    /// The lowest hierarchy among its categories (applied first under CATEGORY_HIERARCHY).
    pub category_hierarchy: Option<i64>,
    /// A promotion tier's own hierarchy within its campaign.
    pub tier_hierarchy: Option<i64>,
}

/// The order redeemables apply in: as requested, or by category hierarchy (then tier
/// hierarchy, then as requested, so the result never depends on anything else).
pub fn application_order(r: &StackingRules, cands: &[Candidate]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..cands.len()).collect();
    if r.redeemables_sorting_rule == SortingRule::CategoryHierarchy {
        idx.sort_by_key(|&i| {
            let c = &cands[i];
            (
                c.category_hierarchy.is_none(),
                c.category_hierarchy.unwrap_or(0),
                c.tier_hierarchy.unwrap_or(i64::MAX),
                i,
            )
        });
    }
    idx
}

/// Running counts of what has been applied, deciding limits and exclusivity one
/// redeemable at a time in application order.
#[derive(Debug)]
pub struct Gate<'a> {
    rules: &'a StackingRules,
    /// Set when some valid redeemable in the request is exclusive: then only exclusive
    /// and joint ones apply.
    exclusive_by: Option<String>,
    applied: u32,
    exclusive_applied: u32,
    per_category: BTreeMap<String, u32>,
    exclusive_per_category: BTreeMap<String, u32>,
}

impl<'a> Gate<'a> {
    pub fn new(rules: &'a StackingRules, exclusive_by: Option<String>) -> Self {
        Gate {
            rules,
            exclusive_by,
            applied: 0,
            exclusive_applied: 0,
            per_category: BTreeMap::new(),
            exclusive_per_category: BTreeMap::new(),
        }
    }

    pub fn is_exclusive(&self, c: &Candidate) -> bool {
        c.categories.iter().any(|x| self.rules.exclusive_categories.contains(x))
    }

    fn is_joint(&self, c: &Candidate) -> bool {
        c.categories.iter().any(|x| self.rules.joint_categories.contains(x))
    }

    /// Whether `c` may apply given what applied before it; does not record it.
    pub fn check(&self, c: &Candidate) -> Result<(), Skip> {
        let exclusive = self.is_exclusive(c);
        if let Some(by) = &self.exclusive_by {
            if !exclusive && !self.is_joint(c) {
                return Err(Skip::ExclusionRules(by.clone()));
            }
        }
        if self.applied >= self.rules.applicable_redeemables_limit {
            return Err(Skip::ApplicableLimit);
        }
        if exclusive {
            if self.exclusive_applied >= self.rules.applicable_exclusive_redeemables_limit {
                return Err(Skip::ExclusiveLimit);
            }
            if let Some(limit) = self.rules.applicable_exclusive_redeemables_per_category_limit {
                for cat in c.categories.iter().filter(|x| self.rules.exclusive_categories.contains(x)) {
                    if self.exclusive_per_category.get(cat).copied().unwrap_or(0) >= limit {
                        return Err(Skip::ExclusivePerCategoryLimit(cat.clone()));
                    }
                }
            }
        }
        if let Some(limit) = self.rules.applicable_redeemables_per_category_limit {
            for cat in &c.categories {
                if self.per_category.get(cat).copied().unwrap_or(0) >= limit {
                    return Err(Skip::PerCategoryLimit(cat.clone()));
                }
            }
        }
        Ok(())
    }

    pub fn record(&mut self, c: &Candidate) {
        self.applied += 1;
        let exclusive = self.is_exclusive(c);
        if exclusive {
            self.exclusive_applied += 1;
        }
        for cat in &c.categories {
            *self.per_category.entry(cat.clone()).or_default() += 1;
            if self.rules.exclusive_categories.contains(cat) {
                *self.exclusive_per_category.entry(cat.clone()).or_default() += 1;
            }
        }
    }

    pub fn applied(&self) -> u32 {
        self.applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(cats: &[&str], h: Option<i64>) -> Candidate {
        Candidate {
            categories: cats.iter().map(|s| s.to_string()).collect(),
            category_hierarchy: h,
            tier_hierarchy: None,
        }
    }

    #[test]
    fn defaults_check_and_updates_replace_lists() {
        let d = StackingRules::default();
        d.check().expect("defaults are valid");
        let r: StackingRulesInput =
            serde_json::from_value(serde_json::json!({"exclusive_categories": ["cat_a"], "applicable_redeemables_limit": 10}))
                .expect("input");
        let r = r.apply(&d).expect("valid");
        assert_eq!(r.exclusive_categories, vec!["cat_a"]);
        assert_eq!(r.applicable_redeemables_limit, 10);
        let bad: StackingRulesInput = serde_json::from_value(serde_json::json!({"applicable_redeemables_limit": 31})).expect("input");
        assert!(bad.apply(&d).is_err());
        let over: StackingRulesInput = serde_json::from_value(serde_json::json!({"redeemables_limit": 3})).expect("input");
        assert!(over.apply(&d).is_err(), "applicable limit 5 above redeemables limit 3");
        let both: StackingRulesInput =
            serde_json::from_value(serde_json::json!({"exclusive_categories": ["x"], "joint_categories": ["x"]})).expect("input");
        assert!(both.apply(&d).is_err());
        let null: StackingRulesInput =
            serde_json::from_value(serde_json::json!({"applicable_redeemables_per_category_limit": null})).expect("input");
        assert_eq!(null.apply(&d).expect("valid").applicable_redeemables_per_category_limit, None);
        assert!(serde_json::from_value::<StackingRulesInput>(serde_json::json!({"bogus": 1})).is_err());
    }

    #[test]
    fn gate_limits_and_exclusivity() {
        let rules = StackingRules {
            exclusive_categories: vec!["ex".into()],
            joint_categories: vec!["jo".into()],
            applicable_redeemables_limit: 3,
            ..Default::default()
        };
        let mut g = Gate::new(&rules, Some("promo_x".into()));
        let plain = cand(&["a"], None);
        assert_eq!(g.check(&plain), Err(Skip::ExclusionRules("promo_x".into())));
        let joint = cand(&["jo"], None);
        assert_eq!(g.check(&joint), Ok(()));
        g.record(&joint);
        let ex = cand(&["ex"], None);
        assert_eq!(g.check(&ex), Ok(()));
        g.record(&ex);
        assert_eq!(g.check(&cand(&["ex"], None)), Err(Skip::ExclusiveLimit));
        let mut g = Gate::new(&rules, None);
        g.record(&cand(&["a"], None));
        assert_eq!(g.check(&cand(&["a"], None)), Err(Skip::PerCategoryLimit("a".into())));
        g.record(&cand(&["b"], None));
        g.record(&cand(&[], None));
        assert_eq!(g.check(&cand(&[], None)), Err(Skip::ApplicableLimit));
    }

    #[test]
    fn hierarchy_order_is_stable() {
        let rules = StackingRules {
            redeemables_sorting_rule: SortingRule::CategoryHierarchy,
            ..Default::default()
        };
        let c = vec![
            cand(&[], None),
            cand(&["b"], Some(5)),
            cand(&["a"], Some(1)),
            cand(&["b2"], Some(5)),
        ];
        assert_eq!(application_order(&rules, &c), vec![2, 1, 3, 0]);
        assert_eq!(application_order(&StackingRules::default(), &c), vec![0, 1, 2, 3]);
    }
}
