//! Discounts and their effect on a cart.
//!
//! Money is integer minor units throughout. Every discount is capped by what is left to
//! discount, so no line and no order ever goes below zero; splits across lines use
//! `money::allocate`, so results do not depend on the order of cart lines.

use crate::error::InvalidInput;
use crate::limits::MAX_AMOUNT;
use crate::money::{allocate, percent_of};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum DiscountType {
    Amount,
    Percent,
    Fixed,
    Unit,
}

/// A unit reward inside a multi-unit (`ADD_MANY_ITEMS`) discount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UnitReward {
    pub unit_off: i64,
    pub unit_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
}

/// The discount as clients send and read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Discount {
    #[serde(rename = "type")]
    pub kind: DiscountType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_off: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    pub percent_off: Option<serde_json::Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_amount: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_off: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<Vec<UnitReward>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    ApplyToOrder,
    ApplyToItems,
    ApplyToItemsProportionally,
    ApplyToItemsProportionallyByQuantity,
    ApplyToItemsByQuantity,
    AddMissingItems,
    AddNewItems,
    AddManyItems,
}

impl Effect {
    fn parse(s: &str) -> Option<Effect> {
        Some(match s {
            "APPLY_TO_ORDER" => Effect::ApplyToOrder,
            "APPLY_TO_ITEMS" => Effect::ApplyToItems,
            "APPLY_TO_ITEMS_PROPORTIONALLY" => Effect::ApplyToItemsProportionally,
            "APPLY_TO_ITEMS_PROPORTIONALLY_BY_QUANTITY" => Effect::ApplyToItemsProportionallyByQuantity,
            "APPLY_TO_ITEMS_BY_QUANTITY" => Effect::ApplyToItemsByQuantity,
            "ADD_MISSING_ITEMS" => Effect::AddMissingItems,
            "ADD_NEW_ITEMS" => Effect::AddNewItems,
            "ADD_MANY_ITEMS" => Effect::AddManyItems,
            _ => return None,
        })
    }

    pub fn is_order_level(self) -> bool {
        self == Effect::ApplyToOrder
    }
}

/// A checked discount, ready to apply.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    Amount {
        amount_off: i64,
        effect: Effect,
    },
    Percent {
        basis_points: i64,
        limit: Option<i64>,
        effect: Effect,
    },
    Fixed {
        fixed_amount: i64,
        effect: Effect,
    },
    Units {
        units: Vec<(i64, String)>,
        effect: Effect,
    },
}

fn amount(field: &str, v: Option<i64>) -> Result<i64, InvalidInput> {
    let v = v.ok_or_else(|| InvalidInput::payload(format!("'discount.{field}' is required for this discount type")))?;
    if !(0..=MAX_AMOUNT).contains(&v) {
        return Err(InvalidInput::payload(format!(
            "'discount.{field}' must be an amount in minor units from 0 to {MAX_AMOUNT}"
        )));
    }
    Ok(v)
}

impl Discount {
    pub fn rule(&self) -> Result<Rule, InvalidInput> {
        let effect = |allowed: &[Effect], default: Effect| -> Result<Effect, InvalidInput> {
            match &self.effect {
                None => Ok(default),
                Some(s) => Effect::parse(s)
                    .filter(|e| allowed.contains(e))
                    .ok_or_else(|| InvalidInput::payload(format!("'discount.effect' {s} is not valid for a {:?} discount", self.kind))),
            }
        };
        use Effect::*;
        Ok(match self.kind {
            DiscountType::Amount => Rule::Amount {
                amount_off: amount("amount_off", self.amount_off)?,
                effect: effect(
                    &[
                        ApplyToOrder,
                        ApplyToItems,
                        ApplyToItemsProportionally,
                        ApplyToItemsProportionallyByQuantity,
                        ApplyToItemsByQuantity,
                    ],
                    ApplyToOrder,
                )?,
            },
            DiscountType::Percent => {
                let p = self
                    .percent_off
                    .as_ref()
                    .and_then(serde_json::Number::as_f64)
                    .ok_or_else(|| InvalidInput::payload("'discount.percent_off' is required for a PERCENT discount"))?;
                if !(p > 0.0 && p <= 100.0) {
                    return Err(InvalidInput::payload(
                        "'discount.percent_off' must be greater than 0 and at most 100",
                    ));
                }
                let limit = match self.amount_limit {
                    Some(l) => Some(amount("amount_limit", Some(l))?),
                    None => None,
                };
                Rule::Percent {
                    basis_points: (p * 100.0).round() as i64,
                    limit,
                    effect: effect(&[ApplyToOrder, ApplyToItems], ApplyToOrder)?,
                }
            }
            DiscountType::Fixed => Rule::Fixed {
                fixed_amount: amount("fixed_amount", self.fixed_amount)?,
                effect: effect(&[ApplyToOrder, ApplyToItems], ApplyToOrder)?,
            },
            DiscountType::Unit => {
                let eff = effect(&[AddMissingItems, AddNewItems, AddManyItems], AddMissingItems)?;
                let units: Vec<(i64, String)> = if eff == AddManyItems {
                    let list = self
                        .units
                        .as_ref()
                        .filter(|u| !u.is_empty() && u.len() <= 30)
                        .ok_or_else(|| InvalidInput::payload("'discount.units' must list 1 to 30 unit rewards for ADD_MANY_ITEMS"))?;
                    list.iter().map(|u| (u.unit_off, u.unit_type.clone())).collect()
                } else {
                    vec![(self.unit_off.unwrap_or(0), self.unit_type.clone().unwrap_or_default())]
                };
                for (off, ty) in &units {
                    if !(1..=crate::limits::MAX_QUANTITY).contains(off) || ty.is_empty() || ty.len() > crate::limits::MAX_ID_LEN {
                        return Err(InvalidInput::payload(
                            "a UNIT discount needs 'unit_off' of at least 1 and a 'unit_type' naming a product or SKU",
                        ));
                    }
                }
                Rule::Units { units, effect: eff }
            }
        })
    }
}

/// One cart line as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Ids this line answers to in targets: product id/source id, SKU id/source id.
    pub refs: Vec<String>,
    /// Unit price.
    pub price: i64,
    pub quantity: i64,
    /// What is left of the line's amount after earlier discounts.
    pub remaining: i64,
    /// Content-derived key for tie-breaks (never the line's position).
    pub key: String,
}

/// What one discount does to a cart.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Order-level part (APPLY_TO_ORDER).
    pub order_discount: i64,
    /// Item-level parts, one per line (including added lines).
    pub item_discounts: Vec<i64>,
    /// The whole discount split across lines; sums to `total()`.
    pub allocation: Vec<i64>,
    /// Lines the discount added (free units not in the cart), appended after the cart's.
    pub added: Vec<AddedLine>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedLine {
    pub unit_type: String,
    pub quantity: i64,
    pub price: i64,
}

impl Outcome {
    pub fn total(&self) -> i64 {
        self.order_discount + self.item_discounts.iter().sum::<i64>()
    }
}

/// Splits `total` by `weights` without giving any line more than its cap, re-spreading
/// what a capped line cannot take. Requires `total <= sum(caps)`.
pub fn allocate_capped<K: AsRef<str>>(total: i64, weights: &[i64], caps: &[i64], keys: &[K]) -> Vec<i64> {
    let n = weights.len();
    let mut out = vec![0i64; n];
    let mut left = total.min(caps.iter().sum());
    let mut open: Vec<bool> = caps.iter().map(|c| *c > 0).collect();
    for _ in 0..=n {
        if left <= 0 {
            break;
        }
        let w: Vec<i64> = (0..n).map(|i| if open[i] { weights[i].max(0) } else { 0 }).collect();
        let w = if w.iter().all(|x| *x == 0) {
            (0..n).map(|i| i64::from(open[i])).collect()
        } else {
            w
        };
        let shares = allocate(left, &w, keys);
        let mut given = 0;
        for i in 0..n {
            let room = caps[i] - out[i];
            let take = shares[i].min(room);
            out[i] += take;
            given += take;
            if out[i] >= caps[i] {
                open[i] = false;
            }
        }
        left -= given;
        if given == 0 {
            break;
        }
    }
    out
}

/// Applies `rule` to the lines; `eligible[i]` is how many units of line `i` the
/// discount's targets allow. `catalog_price` gives unit prices of products or SKUs not in
/// the cart, for unit discounts that add them.
pub fn apply(rule: &Rule, lines: &[Line], eligible: &[i64], catalog_price: &dyn Fn(&str) -> Option<i64>) -> Outcome {
    let n = lines.len();
    let keys: Vec<&str> = lines.iter().map(|l| l.key.as_str()).collect();
    // The part of each line's remaining amount that is eligible.
    let e: Vec<i64> = lines
        .iter()
        .zip(eligible)
        .map(|(l, u)| {
            let u = (*u).clamp(0, l.quantity.max(0));
            if l.quantity <= 0 || u == 0 {
                0
            } else if u == l.quantity {
                l.remaining.max(0)
            } else {
                (l.remaining.max(0) as i128 * u as i128 / l.quantity as i128) as i64
            }
        })
        .collect();
    let units: Vec<i64> = lines.iter().zip(eligible).map(|(l, u)| (*u).clamp(0, l.quantity.max(0))).collect();
    let base: i64 = e.iter().sum();
    let mut out = Outcome {
        item_discounts: vec![0; n],
        allocation: vec![0; n],
        ..Default::default()
    };
    let order_level = |out: &mut Outcome, total: i64| {
        let total = total.clamp(0, base);
        out.order_discount = total;
        out.allocation = allocate_capped(total, &e, &e, &keys);
    };
    let item_level = |out: &mut Outcome, per_line: Vec<i64>| {
        let per_line: Vec<i64> = per_line.iter().zip(&e).map(|(d, cap)| (*d).clamp(0, *cap)).collect();
        out.allocation = per_line.clone();
        out.item_discounts = per_line;
    };
    match rule {
        Rule::Amount { amount_off, effect } => match effect {
            Effect::ApplyToOrder => order_level(&mut out, *amount_off),
            Effect::ApplyToItems => item_level(&mut out, (0..n).map(|i| if units[i] > 0 { *amount_off } else { 0 }).collect()),
            Effect::ApplyToItemsByQuantity => item_level(&mut out, (0..n).map(|i| amount_off.saturating_mul(units[i])).collect()),
            Effect::ApplyToItemsProportionally => {
                let total = (*amount_off).min(base);
                item_level(&mut out, allocate_capped(total, &e, &e, &keys));
            }
            _ => {
                let total = (*amount_off).min(base);
                item_level(&mut out, allocate_capped(total, &units, &e, &keys));
            }
        },
        Rule::Percent {
            basis_points,
            limit,
            effect,
        } => {
            let mut total = percent_of(base, *basis_points);
            if let Some(l) = limit {
                total = total.min(*l);
            }
            if *effect == Effect::ApplyToOrder {
                order_level(&mut out, total);
            } else {
                item_level(&mut out, allocate_capped(total, &e, &e, &keys));
            }
        }
        Rule::Fixed { fixed_amount, effect } => {
            if *effect == Effect::ApplyToOrder {
                order_level(&mut out, base - fixed_amount);
            } else {
                item_level(&mut out, (0..n).map(|i| e[i] - fixed_amount.saturating_mul(units[i])).collect());
            }
        }
        Rule::Units { units: rewards, effect } => {
            let mut per_line = vec![0i64; n];
            for (off, ty) in rewards {
                let line = (0..n)
                    .filter(|i| lines[*i].refs.iter().any(|r| r == ty))
                    .min_by(|a, b| lines[*a].key.cmp(&lines[*b].key));
                match (line, effect) {
                    (Some(i), Effect::AddMissingItems) | (Some(i), Effect::AddManyItems) => {
                        let free_units = (*off).min(lines[i].quantity.max(0));
                        per_line[i] += lines[i].price.saturating_mul(free_units);
                    }
                    _ => {
                        if let Some(price) = catalog_price(ty) {
                            out.added.push(AddedLine {
                                unit_type: ty.clone(),
                                quantity: *off,
                                price,
                            });
                        }
                    }
                }
            }
            let per_line: Vec<i64> = per_line.iter().zip(lines).map(|(d, l)| (*d).clamp(0, l.remaining.max(0))).collect();
            let mut all = per_line;
            for a in &out.added {
                all.push(a.price.saturating_mul(a.quantity).clamp(0, MAX_AMOUNT));
            }
            out.allocation = all.clone();
            out.item_discounts = all;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(id: &str, price: i64, qty: i64) -> Line {
        Line {
            refs: vec![id.into()],
            price,
            quantity: qty,
            remaining: price * qty,
            key: format!("{id}|{price}|{qty}"),
        }
    }

    fn rule(json: serde_json::Value) -> Rule {
        serde_json::from_value::<Discount>(json).expect("discount").rule().expect("valid")
    }

    fn no_catalog(_: &str) -> Option<i64> {
        None
    }

    #[test]
    fn amount_and_percent() {
        let lines = vec![line("a", 1000, 2), line("b", 500, 1)];
        let all = vec![2, 1];
        let o = apply(
            &rule(serde_json::json!({"type": "AMOUNT", "amount_off": 700})),
            &lines,
            &all,
            &no_catalog,
        );
        assert_eq!((o.order_discount, o.total()), (700, 700));
        assert_eq!(o.allocation.iter().sum::<i64>(), 700);
        let o = apply(
            &rule(serde_json::json!({"type": "AMOUNT", "amount_off": 9000})),
            &lines,
            &all,
            &no_catalog,
        );
        assert_eq!(o.total(), 2500, "never more than the order");
        let o = apply(
            &rule(serde_json::json!({"type": "PERCENT", "percent_off": 10})),
            &lines,
            &all,
            &no_catalog,
        );
        assert_eq!(o.total(), 250);
        let o = apply(
            &rule(serde_json::json!({"type": "PERCENT", "percent_off": 50, "amount_limit": 300})),
            &lines,
            &all,
            &no_catalog,
        );
        assert_eq!(o.total(), 300);
        let o = apply(
            &rule(serde_json::json!({"type": "PERCENT", "percent_off": 12.5, "effect": "APPLY_TO_ITEMS"})),
            &lines,
            &all,
            &no_catalog,
        );
        assert_eq!((o.order_discount, o.item_discounts.clone()), (0, vec![250, 63]));
        let o = apply(
            &rule(serde_json::json!({"type": "AMOUNT", "amount_off": 300, "effect": "APPLY_TO_ITEMS_BY_QUANTITY"})),
            &lines,
            &all,
            &no_catalog,
        );
        assert_eq!(o.item_discounts, vec![600, 300]);
    }

    #[test]
    fn fixed_and_units() {
        let lines = vec![line("a", 1000, 2), line("ship", 999, 1)];
        let all = vec![2, 1];
        let o = apply(
            &rule(serde_json::json!({"type": "FIXED", "fixed_amount": 2000})),
            &lines,
            &all,
            &no_catalog,
        );
        assert_eq!(o.total(), 999);
        let o = apply(
            &rule(serde_json::json!({"type": "FIXED", "fixed_amount": 800, "effect": "APPLY_TO_ITEMS"})),
            &lines,
            &[2, 0],
            &no_catalog,
        );
        assert_eq!(o.item_discounts, vec![400, 0]);
        let o = apply(
            &rule(serde_json::json!({"type": "UNIT", "unit_off": 1, "unit_type": "ship"})),
            &lines,
            &all,
            &no_catalog,
        );
        assert_eq!(o.item_discounts, vec![0, 999], "free shipping as a unit of the shipping product");
        let o = apply(
            &rule(serde_json::json!({"type": "UNIT", "unit_off": 1, "unit_type": "gift", "effect": "ADD_NEW_ITEMS"})),
            &lines,
            &all,
            &|id| (id == "gift").then_some(450),
        );
        assert_eq!(
            o.added,
            vec![AddedLine {
                unit_type: "gift".into(),
                quantity: 1,
                price: 450
            }]
        );
        assert_eq!(o.item_discounts, vec![0, 0, 450]);
    }

    #[test]
    fn invalid_discounts() {
        for j in [
            serde_json::json!({"type": "PERCENT", "percent_off": 0}),
            serde_json::json!({"type": "PERCENT", "percent_off": 120}),
            serde_json::json!({"type": "AMOUNT"}),
            serde_json::json!({"type": "AMOUNT", "amount_off": -1}),
            serde_json::json!({"type": "AMOUNT", "amount_off": 1, "effect": "ADD_NEW_ITEMS"}),
            serde_json::json!({"type": "UNIT", "unit_off": 1}),
        ] {
            let d: Discount = serde_json::from_value(j.clone()).expect("parses");
            assert!(d.rule().is_err(), "{j}");
        }
    }

    fn arb_rule() -> impl Strategy<Value = Rule> {
        let effects = prop_oneof![
            Just(Effect::ApplyToOrder),
            Just(Effect::ApplyToItems),
            Just(Effect::ApplyToItemsProportionally),
            Just(Effect::ApplyToItemsProportionallyByQuantity),
            Just(Effect::ApplyToItemsByQuantity),
        ];
        prop_oneof![
            (0i64..200_000, effects).prop_map(|(amount_off, effect)| Rule::Amount { amount_off, effect }),
            (1i64..=10_000, prop::option::of(0i64..50_000), any::<bool>()).prop_map(|(basis_points, limit, items)| Rule::Percent {
                basis_points,
                limit,
                effect: if items { Effect::ApplyToItems } else { Effect::ApplyToOrder }
            }),
            (0i64..100_000, any::<bool>()).prop_map(|(fixed_amount, items)| Rule::Fixed {
                fixed_amount,
                effect: if items { Effect::ApplyToItems } else { Effect::ApplyToOrder }
            }),
        ]
    }

    proptest! {
        #[test]
        fn sums_caps_and_shuffles(
            r in arb_rule(),
            raw in prop::collection::vec(("[a-d]", 0i64..50_000, 1i64..6, 0i64..6), 1..10),
            rot in 0usize..10,
        ) {
            let lines: Vec<Line> = raw.iter().map(|(id, p, q, _)| line(id, *p, *q)).collect();
            let eligible: Vec<i64> = raw.iter().map(|(_, _, q, u)| (*u).min(*q)).collect();
            let o = apply(&r, &lines, &eligible, &no_catalog);
            // The split across lines is exact, and no line goes below zero.
            prop_assert_eq!(o.allocation.iter().sum::<i64>(), o.total());
            for (i, l) in lines.iter().enumerate() {
                prop_assert!(o.allocation[i] >= 0 && o.allocation[i] <= l.remaining);
                prop_assert!(o.item_discounts[i] >= 0 && o.item_discounts[i] <= l.remaining);
            }
            let order: i64 = lines.iter().map(|l| l.remaining).sum();
            prop_assert!(o.total() <= order);
            if let Rule::Percent { limit: Some(l), .. } = r {
                prop_assert!(o.total() <= l);
            }
            // The same cart in another order gives the same result per line.
            let k = rot % lines.len();
            let mut l2 = lines.clone();
            l2.rotate_left(k);
            let mut e2 = eligible.clone();
            e2.rotate_left(k);
            let o2 = apply(&r, &l2, &e2, &no_catalog);
            prop_assert_eq!(o2.total(), o.total());
            let mut a: Vec<_> = lines.iter().zip(&o.allocation).map(|(l, d)| (l.key.clone(), *d)).collect();
            let mut b: Vec<_> = l2.iter().zip(&o2.allocation).map(|(l, d)| (l.key.clone(), *d)).collect();
            a.sort();
            b.sort();
            prop_assert_eq!(a, b);
        }
    }
}
