//! The cart calculation behind validation and redemption: redeemables applied in
//! sequence, each to what the previous ones left, with Voucherify's order totals.

use crate::discount::{self, Line, Rule};
use crate::order::OrderItem;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TargetEffect {
    ApplyToEvery,
    ApplyToCheapest,
    ApplyFromCheapest,
    ApplyToMostExpensive,
    ApplyFromMostExpensive,
}

/// One entry of `applicable_to` / `inapplicable_to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Target {
    /// `product` or `sku` (`products_collection` is not supported yet).
    pub object: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    #[serde(default = "every")]
    pub effect: TargetEffect,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity_limit: Option<i64>,
}

fn every() -> TargetEffect {
    TargetEffect::ApplyToEvery
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Targets {
    #[serde(default)]
    pub included: Vec<Target>,
    #[serde(default)]
    pub excluded: Vec<Target>,
    #[serde(default)]
    pub included_all: bool,
}

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.included.is_empty() && self.excluded.is_empty()
    }
}

/// A cart line with the identifiers targets can name.
#[derive(Debug, Clone)]
pub struct CartLine {
    pub item: OrderItem,
    pub product_id: Option<String>,
    pub product_source_id: Option<String>,
    pub sku_id: Option<String>,
    pub sku_source_id: Option<String>,
    pub price: i64,
    pub quantity: i64,
    pub amount: i64,
    /// Whether the line is real (false for the part of the order amount not itemized).
    pub itemized: bool,
}

impl CartLine {
    fn refs(&self) -> Vec<String> {
        [&self.product_id, &self.product_source_id, &self.sku_id, &self.sku_source_id]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// Content-derived key: equal lines are interchangeable, so no result depends on the
    /// order lines were sent in.
    fn key(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}|{}",
            self.product_id.as_deref().unwrap_or(""),
            self.sku_id.as_deref().unwrap_or(""),
            self.item.source_id.as_deref().unwrap_or(""),
            self.price,
            self.quantity,
            self.amount
        )
    }

    fn matches(&self, t: &Target) -> bool {
        let ids: Vec<&str> = match t.object.as_str() {
            "sku" => [&self.sku_id, &self.sku_source_id]
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect(),
            _ => [&self.product_id, &self.product_source_id]
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect(),
        };
        ids.contains(&t.id.as_str()) || t.source_id.as_deref().is_some_and(|s| ids.contains(&s))
    }
}

/// Builds cart lines from an order's items; `order_amount` beyond the items' sum becomes a
/// non-itemized line that order-level discounts reach and item targets do not.
pub fn cart(items: &[OrderItem], order_amount: Option<i64>) -> Vec<CartLine> {
    let mut lines: Vec<CartLine> = items
        .iter()
        .map(|i| {
            let quantity = i.quantity.unwrap_or(1).max(0);
            let price = i
                .price
                .unwrap_or_else(|| if quantity > 0 { i.amount.unwrap_or(0) / quantity } else { 0 });
            let amount = i.amount.unwrap_or(price.saturating_mul(quantity));
            CartLine {
                item: i.clone(),
                product_id: i.product_id.clone(),
                product_source_id: i
                    .product
                    .as_ref()
                    .and_then(|p| p.get("source_id"))
                    .and_then(|v| v.as_str())
                    .map(str::to_string),
                sku_id: i.sku_id.clone(),
                sku_source_id: i
                    .sku
                    .as_ref()
                    .and_then(|p| p.get("source_id"))
                    .and_then(|v| v.as_str())
                    .map(str::to_string),
                price,
                quantity,
                amount,
                itemized: true,
            }
        })
        .collect();
    // An item's own source id names its product or SKU when no id is given.
    for l in &mut lines {
        if l.product_id.is_none() && l.sku_id.is_none() {
            match l.item.related_object {
                Some(crate::order::RelatedObject::Sku) => l.sku_source_id = l.sku_source_id.clone().or(l.item.source_id.clone()),
                _ => l.product_source_id = l.product_source_id.clone().or(l.item.source_id.clone()),
            }
        }
    }
    let items_sum: i64 = lines.iter().map(|l| l.amount).sum();
    if let Some(total) = order_amount {
        if total > items_sum {
            lines.push(CartLine {
                item: OrderItem {
                    sku_id: None,
                    product_id: None,
                    related_object: None,
                    source_id: None,
                    quantity: None,
                    discount_quantity: None,
                    initial_quantity: None,
                    amount: None,
                    discount_amount: None,
                    initial_amount: None,
                    price: None,
                    subtotal_amount: None,
                    product: None,
                    sku: None,
                    metadata: None,
                },
                product_id: None,
                product_source_id: None,
                sku_id: None,
                sku_source_id: None,
                price: total - items_sum,
                quantity: 1,
                amount: total - items_sum,
                itemized: false,
            });
        }
    }
    lines
}

/// How many units of each line a discount may touch.
pub fn eligible_units(lines: &[CartLine], targets: &Targets) -> Vec<i64> {
    let n = lines.len();
    let mut units: Vec<i64> = if targets.included.is_empty() || targets.included_all {
        lines.iter().map(|l| l.quantity).collect()
    } else {
        let mut u = vec![0i64; n];
        for t in &targets.included {
            let matching: Vec<usize> = (0..n).filter(|i| lines[*i].itemized && lines[*i].matches(t)).collect();
            let pick = |cheapest: bool| {
                matching.iter().copied().min_by(|a, b| {
                    let (pa, pb) = (lines[*a].price, lines[*b].price);
                    let ord = if cheapest { pa.cmp(&pb) } else { pb.cmp(&pa) };
                    ord.then_with(|| lines[*a].key().cmp(&lines[*b].key()))
                })
            };
            match t.effect {
                TargetEffect::ApplyToEvery => {
                    for i in &matching {
                        u[*i] = lines[*i].quantity.min(t.quantity_limit.unwrap_or(i64::MAX));
                    }
                }
                TargetEffect::ApplyToCheapest | TargetEffect::ApplyFromCheapest => {
                    if let Some(i) = pick(true) {
                        u[i] = u[i].max(lines[i].quantity.min(t.quantity_limit.unwrap_or(1)));
                    }
                }
                TargetEffect::ApplyToMostExpensive | TargetEffect::ApplyFromMostExpensive => {
                    if let Some(i) = pick(false) {
                        u[i] = u[i].max(lines[i].quantity.min(t.quantity_limit.unwrap_or(1)));
                    }
                }
            }
        }
        u
    };
    for t in &targets.excluded {
        for (i, l) in lines.iter().enumerate() {
            if l.itemized && l.matches(t) {
                units[i] = 0;
            }
        }
    }
    units
}

/// What a redeemable brings to the cart.
#[derive(Debug, Clone)]
pub enum Benefit {
    Discount {
        rule: Rule,
        targets: Targets,
    },
    /// Gift card credits; `None` takes as much as the balance and the order allow.
    Gift {
        requested: Option<i64>,
        balance: i64,
    },
    /// Validated but with no effect on the cart (e.g. a loyalty card read).
    Nothing,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub order_discount: i64,
    pub item_discounts: Vec<i64>,
    pub allocation: Vec<i64>,
    pub gift_credits: i64,
    pub added: Vec<discount::AddedLine>,
}

impl Applied {
    pub fn total(&self) -> i64 {
        self.order_discount + self.item_discounts.iter().sum::<i64>()
    }
}

/// How one redeemable's discount is computed (from the stacking rules).
#[derive(Debug, Clone, Copy, Default)]
pub struct PreviewMode {
    /// Compute on the lines' initial amounts (capped at what is left) instead of on what
    /// earlier redeemables left.
    pub initial_amount: bool,
    /// Products application mode ONCE: lines an earlier item-level discount touched are
    /// out of reach of later item-level discounts.
    pub once: bool,
}

/// The state of a cart while redeemables apply to it one by one.
pub struct Calculator<'a> {
    pub lines: Vec<CartLine>,
    remaining: Vec<i64>,
    /// Lines an item-level discount has touched (for products application mode ONCE).
    touched: Vec<bool>,
    /// The lines as the discount engine sees them, kept in step with `remaining`: built
    /// once, because a qualification previews a thousand discounts on one cart.
    engine: Vec<Line>,
    order_discount: i64,
    item_discounts: Vec<i64>,
    catalog_price: &'a dyn Fn(&str) -> Option<i64>,
}

impl<'a> Calculator<'a> {
    pub fn new(lines: Vec<CartLine>, catalog_price: &'a dyn Fn(&str) -> Option<i64>) -> Self {
        let remaining = lines.iter().map(|l| l.amount.max(0)).collect();
        let n = lines.len();
        let engine = lines
            .iter()
            .zip(&remaining)
            .map(|(l, r): (&CartLine, &i64)| Line {
                refs: l.refs(),
                price: l.price,
                quantity: l.quantity,
                remaining: *r,
                key: l.key(),
            })
            .collect();
        Calculator {
            touched: vec![false; n],
            engine,
            lines,
            remaining,
            order_discount: 0,
            item_discounts: vec![0; n],
            catalog_price,
        }
    }

    pub fn remaining_total(&self) -> i64 {
        self.remaining.iter().sum()
    }

    /// Computes what `b` would do to the current cart, without applying it.
    pub fn preview(&self, b: &Benefit) -> Applied {
        self.preview_with(b, PreviewMode::default())
    }

    /// `preview` under a stacking mode.
    pub fn preview_with(&self, b: &Benefit, mode: PreviewMode) -> Applied {
        let initial: Vec<Line>;
        let engine_lines: &[Line] = if mode.initial_amount {
            initial = self
                .engine
                .iter()
                .zip(&self.lines)
                .map(|(e, l)| Line {
                    remaining: l.amount.max(0),
                    ..e.clone()
                })
                .collect();
            &initial
        } else {
            &self.engine
        };
        let keys: Vec<&str> = self.engine.iter().map(|l| l.key.as_str()).collect();
        match b {
            Benefit::Discount { rule, targets } => {
                let mut units = eligible_units(&self.lines, targets);
                if mode.once && !targets.is_empty() {
                    for (u, t) in units.iter_mut().zip(&self.touched) {
                        if *t {
                            *u = 0;
                        }
                    }
                }
                let o = discount::apply(rule, engine_lines, &units, self.catalog_price);
                let mut a = Applied {
                    order_discount: o.order_discount,
                    item_discounts: o.item_discounts,
                    allocation: o.allocation,
                    gift_credits: 0,
                    added: o.added,
                };
                if mode.initial_amount {
                    // Computed on initial amounts, a discount may exceed what is left of a
                    // line: it takes only what is left.
                    for (i, r) in self.remaining.iter().enumerate() {
                        let Some(share) = a.allocation.get_mut(i) else { break };
                        let over = *share - r;
                        if over > 0 {
                            *share -= over;
                            let from_item = a.item_discounts.get(i).copied().unwrap_or(0).min(over);
                            if let Some(d) = a.item_discounts.get_mut(i) {
                                *d -= from_item;
                            }
                            a.order_discount -= over - from_item;
                        }
                    }
                }
                a
            }
            Benefit::Gift { requested, balance } => {
                let left = self.remaining_total();
                let credits = requested.unwrap_or(*balance).min(*balance).min(left).max(0);
                let weights: Vec<i64> = self.remaining.clone();
                let allocation = discount::allocate_capped(credits, &weights, &self.remaining, &keys);
                Applied {
                    order_discount: credits,
                    item_discounts: vec![0; self.lines.len()],
                    allocation,
                    gift_credits: credits,
                    added: Vec::new(),
                }
            }
            Benefit::Nothing => Applied {
                item_discounts: vec![0; self.lines.len()],
                allocation: vec![0; self.lines.len()],
                ..Default::default()
            },
        }
    }

    /// Applies a previewed result: added lines join the cart (fully discounted), and every
    /// line's remaining amount shrinks by its share.
    pub fn commit(&mut self, a: &Applied) {
        for added in &a.added {
            let amount = added.price.saturating_mul(added.quantity);
            self.lines.push(CartLine {
                item: OrderItem {
                    sku_id: added.unit_type.starts_with("sku_").then(|| added.unit_type.clone()),
                    product_id: (!added.unit_type.starts_with("sku_")).then(|| added.unit_type.clone()),
                    related_object: None,
                    source_id: None,
                    quantity: Some(added.quantity),
                    discount_quantity: None,
                    initial_quantity: Some(0),
                    amount: Some(amount),
                    discount_amount: None,
                    initial_amount: Some(0),
                    price: Some(added.price),
                    subtotal_amount: None,
                    product: None,
                    sku: None,
                    metadata: None,
                },
                product_id: (!added.unit_type.starts_with("sku_")).then(|| added.unit_type.clone()),
                product_source_id: None,
                sku_id: added.unit_type.starts_with("sku_").then(|| added.unit_type.clone()),
                sku_source_id: None,
                price: added.price,
                quantity: added.quantity,
                amount,
                itemized: true,
            });
            self.remaining.push(amount);
            self.item_discounts.push(0);
            self.touched.push(true);
            if let Some(l) = self.lines.last() {
                self.engine.push(Line {
                    refs: l.refs(),
                    price: l.price,
                    quantity: l.quantity,
                    remaining: amount,
                    key: l.key(),
                });
            }
        }
        for (i, share) in a.allocation.iter().enumerate() {
            if let Some(r) = self.remaining.get_mut(i) {
                *r = (*r - share).max(0);
                if let Some(e) = self.engine.get_mut(i) {
                    e.remaining = *r;
                }
            }
        }
        self.order_discount += a.order_discount;
        for (i, d) in a.item_discounts.iter().enumerate() {
            if let Some(x) = self.item_discounts.get_mut(i) {
                *x += d;
            }
            if *d > 0 {
                if let Some(t) = self.touched.get_mut(i) {
                    *t = true;
                }
            }
        }
    }

    /// Voucherify's order totals after everything applied so far.
    pub fn totals(&self) -> Totals {
        let amount: i64 = self.lines.iter().map(|l| l.amount).sum();
        let items_discount: i64 = self.item_discounts.iter().sum();
        let total_discount = self.order_discount + items_discount;
        Totals {
            amount,
            discount_amount: self.order_discount,
            items_discount_amount: items_discount,
            total_discount_amount: total_discount,
            total_amount: (amount - total_discount).max(0),
        }
    }

    /// Per line: (line, item-level discount so far).
    pub fn lines_with_discounts(&self) -> impl Iterator<Item = (&CartLine, i64)> {
        self.lines.iter().zip(self.item_discounts.iter().copied())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub amount: i64,
    pub discount_amount: i64,
    pub items_discount_amount: i64,
    pub total_discount_amount: i64,
    pub total_amount: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn item(pid: &str, price: i64, qty: i64) -> OrderItem {
        serde_json::from_value(serde_json::json!({"product_id": pid, "price": price, "quantity": qty})).expect("item")
    }

    fn pct(p: i64) -> Rule {
        Rule::Percent {
            basis_points: p * 100,
            limit: None,
            effect: discount::Effect::ApplyToOrder,
        }
    }

    fn none(_: &str) -> Option<i64> {
        None
    }

    #[test]
    fn sequence_and_totals() {
        let lines = cart(&[item("a", 1000, 2), item("b", 3000, 1)], None);
        let mut calc = Calculator::new(lines, &none);
        let d = Benefit::Discount {
            rule: pct(10),
            targets: Targets::default(),
        };
        let a = calc.preview(&d);
        assert_eq!(a.total(), 500);
        calc.commit(&a);
        let g = calc.preview(&Benefit::Gift {
            requested: Some(10_000),
            balance: 2000,
        });
        assert_eq!(g.gift_credits, 2000);
        calc.commit(&g);
        let t = calc.totals();
        assert_eq!((t.amount, t.discount_amount, t.total_amount), (5000, 2500, 2500));
        let g2 = calc.preview(&Benefit::Gift {
            requested: None,
            balance: 100_000,
        });
        assert_eq!(g2.gift_credits, 2500, "a gift card never takes more than is left");
    }

    #[test]
    fn targets_pick_lines() {
        let lines = cart(&[item("a", 1000, 2), item("b", 300, 3), item("c", 500, 1)], Some(10_000));
        assert_eq!(lines.len(), 4, "the unitemized rest of the order is its own line");
        let t = Targets {
            included: vec![Target {
                object: "product".into(),
                id: "b".into(),
                source_id: None,
                effect: TargetEffect::ApplyToEvery,
                quantity_limit: Some(2),
            }],
            excluded: vec![],
            included_all: false,
        };
        assert_eq!(eligible_units(&lines, &t), vec![0, 2, 0, 0]);
        let cheapest = Targets {
            included: ["a", "b", "c"]
                .iter()
                .map(|id| Target {
                    object: "product".into(),
                    id: id.to_string(),
                    source_id: None,
                    effect: TargetEffect::ApplyToCheapest,
                    quantity_limit: None,
                })
                .collect(),
            ..Default::default()
        };
        assert_eq!(eligible_units(&lines, &cheapest), vec![1, 1, 1, 0]);
        let excl = Targets {
            excluded: vec![Target {
                object: "product".into(),
                id: "a".into(),
                source_id: None,
                effect: TargetEffect::ApplyToEvery,
                quantity_limit: None,
            }],
            ..Default::default()
        };
        assert_eq!(eligible_units(&lines, &excl), vec![0, 3, 1, 1]);
    }

    proptest! {
        #[test]
        fn shuffled_carts_give_the_same_totals(
            raw in prop::collection::vec(("[a-c]", 1i64..20_000, 1i64..5), 1..8),
            pcts in prop::collection::vec(1i64..100, 0..3),
            amount_off in 0i64..50_000,
            credits in prop::option::of(0i64..80_000),
            rot in 0usize..8,
        ) {
            let items: Vec<OrderItem> = raw.iter().map(|(p, pr, q)| item(p, *pr, *q)).collect();
            let run = |items: &[OrderItem]| {
                let mut calc = Calculator::new(cart(items, None), &none);
                let mut benefits: Vec<Benefit> = pcts.iter().map(|p| Benefit::Discount { rule: pct(*p), targets: Targets::default() }).collect();
                benefits.push(Benefit::Discount {
                    rule: Rule::Amount { amount_off, effect: discount::Effect::ApplyToItemsProportionally },
                    targets: Targets { included: vec![Target { object: "product".into(), id: "a".into(), source_id: None, effect: TargetEffect::ApplyToEvery, quantity_limit: None }], ..Default::default() },
                });
                benefits.push(Benefit::Gift { requested: credits, balance: 60_000 });
                let mut per = Vec::new();
                for b in &benefits {
                    let a = calc.preview(b);
                    per.push(a.total());
                    calc.commit(&a);
                }
                let mut lines: Vec<(String, i64)> = calc.lines_with_discounts().map(|(l, d)| (l.key(), d)).collect();
                lines.sort();
                (calc.totals(), per, lines)
            };
            let (t1, p1, l1) = run(&items);
            let mut shuffled = items.clone();
            let k = rot % shuffled.len();
            shuffled.rotate_left(k);
            shuffled.reverse();
            let (t2, p2, l2) = run(&shuffled);
            prop_assert_eq!(t1, t2);
            prop_assert_eq!(p1, p2);
            prop_assert_eq!(l1, l2);
            prop_assert!(t1.total_amount >= 0);
            prop_assert_eq!(t1.total_discount_amount, t1.discount_amount + t1.items_discount_amount);
            prop_assert!(t1.total_discount_amount <= t1.amount);
        }
    }
}
