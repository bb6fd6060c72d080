//! Validation and redemption: the checkout path.
//!
//! One evaluation serves both. Validation runs it on a read snapshot; redemption runs it
//! inside the write transaction (after locking the vouchers involved, on PostgreSQL) and
//! then applies its effects with guarded statements, so quotas and balances hold however
//! many requests race: a conditional UPDATE that finds nothing to update aborts.

use crate::conn::{Conn, Val};
use crate::ops::customers;
use crate::ops::docs::{self, to_json};
use crate::ops::org::Tenant;
use crate::ops::outbox;
use crate::ops::rules::{rules_for, CompiledRule};
use crate::ops::views;
use crate::ops::vouchers::{find_voucher, get_campaign_rec, ledger_entry, VoucherRecord};
use crate::{Result, Store, StoreError};
use jiff::Timestamp;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use tessera_domain::checkout::{cart, Applied, Benefit, Calculator, Targets};
use tessera_domain::customer::Customer;
use tessera_domain::ids::new_id;
use tessera_domain::list::{ListQuery, ListSpec, SortField};
use tessera_domain::order::{Order, OrderStatus};
use tessera_domain::redemption::CheckoutRequest;
use tessera_domain::rules::{Facts, ItemFacts, Verdict};
use tessera_domain::time::{format, now_string};
use tessera_domain::validity::NotValid;
use tessera_domain::voucher::VoucherType;
use tessera_domain::InvalidInput;

pub const LIST_SPEC: ListSpec = ListSpec {
    sorts: &[SortField::CreatedAt],
    filters: &["result", "campaign", "customer", "voucher_code", "parent_redemption_id"],
    default_limit: 10,
};

/// Voucherify's default stacking rules (the promotions issue makes them configurable).
pub fn stacking_rules() -> Value {
    json!({
        "redeemables_limit": 30,
        "applicable_redeemables_limit": 5,
        "applicable_redeemables_per_category_limit": 1,
        "applicable_exclusive_redeemables_limit": 1,
        "applicable_exclusive_redeemables_per_category_limit": 1,
        "exclusive_categories": [],
        "joint_categories": [],
        "redeemables_application_mode": "ALL",
        "redeemables_sorting_rule": "REQUESTED_ORDER",
        "redeemables_products_application_mode": "STACK",
        "redeemables_no_effect_rule": "REDEEM_ANYWAY",
        "no_effect_skip_categories": [],
        "no_effect_redeem_anyway_categories": [],
        "redeemables_rollback_order_mode": "WITH_ORDER",
    })
}
const APPLICABLE_LIMIT: usize = 5;

#[derive(Debug, Clone)]
pub enum Status {
    Applicable,
    Inapplicable {
        code: u16,
        key: String,
        message: String,
        details: String,
        rule_message: Option<String>,
    },
    Skipped {
        key: String,
        message: String,
    },
}

pub struct Outcome {
    pub index: usize,
    pub object: String,
    pub id: String,
    pub status: Status,
    pub voucher: Option<VoucherRecord>,
    pub applied: Option<Applied>,
    pub benefit: Option<Benefit>,
    pub targets: Targets,
    pub order_after: Option<Value>,
}

pub struct Evaluation {
    pub request_id: String,
    pub valid: bool,
    pub outcomes: Vec<Outcome>,
    pub calc_order: Value,
    pub order: Order,
    pub customer: Option<Customer>,
}

fn inapplicable(code: u16, key: &str, message: &str, details: &str) -> Status {
    Status::Inapplicable {
        code,
        key: key.into(),
        message: message.into(),
        details: details.into(),
        rule_message: None,
    }
}

struct RuleFacts<'a> {
    order: &'a Order,
    customer: Option<&'a Customer>,
    customer_metadata: Map<String, Value>,
    redemption_metadata: Map<String, Value>,
    counts: BTreeMap<&'static str, i64>,
    holder_ok: bool,
    items: Vec<ItemFacts>,
}

impl Facts for RuleFacts<'_> {
    fn fact(&self, name: &str, property: Option<&str>) -> Option<Value> {
        match name {
            "order.amount" => Some(self.order.amount.into()),
            "order.initial_amount" => Some(self.order.initial_amount.unwrap_or(self.order.amount).into()),
            "order.items.count" => Some((self.items.len() as i64).into()),
            "order.items.quantity" => Some(self.items.iter().map(|i| i.quantity).sum::<i64>().into()),
            "order.metadata" => property.and_then(|p| self.order.metadata.get(p).cloned()),
            "customer.id" => self.customer.map(|c| c.id.clone().into()),
            "customer.source_id" => self.customer.and_then(|c| c.source_id.clone()).map(Value::from),
            "customer.email" => self.customer.and_then(|c| c.email.clone()).map(Value::from),
            "customer.metadata" => property.and_then(|p| self.customer_metadata.get(p).cloned()),
            "redemption.metadata" => property.and_then(|p| self.redemption_metadata.get(p).cloned()),
            "publication.redeemable_by_linked_customer" => Some(self.holder_ok.into()),
            other => self.counts.get(other).map(|n| Value::from(*n)),
        }
    }

    fn items(&self) -> &[ItemFacts] {
        &self.items
    }
}

fn start_of(now: Timestamp, tz: &jiff::tz::TimeZone, month: bool) -> String {
    let z = now.to_zoned(tz.clone());
    let day = if month { z.date().first_of_month() } else { z.date() };
    day.to_zoned(tz.clone())
        .map(|d| format(d.timestamp()))
        .unwrap_or_else(|_| format(now))
}

/// Counts a rule may ask for, fetched only when one of the rules names them.
/// `(already, identified)`: redemptions this request makes before this one in the same
/// campaign, and whether the request names its customer.
fn fetch_counts(
    (already, identified): (i64, bool),
    c: &mut dyn Conn,
    t: &Tenant,
    rules: &[CompiledRule],
    v: &VoucherRecord,
    customer: Option<&Customer>,
    now: Timestamp,
) -> Result<BTreeMap<&'static str, i64>> {
    let mut out = BTreeMap::new();
    let names: std::collections::BTreeSet<String> = rules.iter().flat_map(|r| r.set.names()).collect();
    let p = t.project_id();
    let tz = t.timezone();
    // Per-customer limits count the voucher's campaign (or the voucher itself when it
    // stands alone), keyed on the customer's stable id.
    let (col, scope_id) = match &v.voucher.campaign_id {
        Some(cid) => ("campaign_id", cid.clone()),
        None => ("voucher_id", v.voucher.id.clone()),
    };
    let per_customer = [
        ("redemption.count.per_customer", None),
        ("redemption.count.per_customer.daily", Some(false)),
        ("redemption.count.per_customer.monthly", Some(true)),
    ];
    for (name, period) in per_customer {
        if !names.contains(name) {
            continue;
        }
        let n = match customer {
            None => 0,
            Some(cust) => {
                let since = period.map(|m| start_of(now, &tz, m)).unwrap_or_default();
                c.query_one(
                    &format!(
                        "SELECT COUNT(*) FROM redemptions WHERE project_id = $1 AND customer_id = $2 AND {col} = $3 \
                         AND object = 'redemption' AND result = 'SUCCESS' AND status = 'SUCCEEDED' AND created_at >= $4"
                    ),
                    &[p.into(), cust.id.clone().into(), scope_id.clone().into(), since.into()],
                )?
                .int(0)?
            }
        };
        // Redemptions earlier in this same request count too.
        out.insert(name, n + if identified { already } else { 0 });
    }
    if names.contains("campaign.redemptions.count") {
        let n = c
            .query_one(
                &format!("SELECT COUNT(*) FROM redemptions WHERE project_id = $1 AND {col} = $2 AND object = 'redemption' AND result = 'SUCCESS' AND status = 'SUCCEEDED'"),
                &[p.into(), scope_id.clone().into()],
            )?
            .int(0)?;
        out.insert("campaign.redemptions.count", n + already);
    }
    if names.contains("voucher.redemptions.count") {
        out.insert("voucher.redemptions.count", v.counters.redeemed_quantity);
    }
    Ok(out)
}

/// Reservations other sessions hold on a voucher: (uses, gift credits).
fn held_by_others(c: &mut dyn Conn, p: &str, voucher_id: &str, my_session: Option<&str>, now: &str) -> Result<(i64, i64)> {
    let row = c.query_one(
        "SELECT COUNT(*), CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM voucher_sessions WHERE project_id = $1 AND voucher_id = $2 AND expires_at > $3 AND session_key <> $4",
        &[p.into(), voucher_id.into(), now.into(), my_session.unwrap_or("").into()],
    )?;
    Ok((row.int(0)?, row.int(1)?))
}

fn rule_key(rules: &[CompiledRule]) -> &'static str {
    let customer_only = rules.iter().all(|r| r.set.names().iter().all(|n| n.starts_with("customer.")));
    if customer_only {
        "customer_rules_violated"
    } else {
        "order_rules_violated"
    }
}

fn resolve_customer(c: &mut dyn Conn, p: &str, req: &CheckoutRequest) -> Result<Option<Customer>> {
    let Some(input) = &req.customer else { return Ok(None) };
    let key = input.id.clone().or(input.source_id.clone());
    match key {
        Some(k) => docs::find::<Customer>(c, &customers::TABLE, p, &k),
        None => Ok(None),
    }
}

/// The order as the request describes it (items, amount), over a stored one it names.
fn resolve_order(c: &mut dyn Conn, p: &str, req: &CheckoutRequest) -> Result<(Order, Option<Order>)> {
    let input = req.order.clone().unwrap_or_default();
    let key = input.id.clone().or(input.source_id.clone());
    let existing: Option<Order> = match &key {
        Some(k) => docs::find(c, &crate::ops::orders::TABLE, p, k)?,
        None => None,
    };
    let mut build_input = input.clone();
    build_input.customer = None;
    build_input.referrer = None;
    build_input.customer_id = None;
    build_input.referrer_id = None;
    let id = existing.as_ref().map(|o| o.id.clone()).unwrap_or_else(|| new_id("ord"));
    let order = build_input.build(id, existing.as_ref(), None, None, &now_string())?;
    Ok((order, existing))
}

pub fn evaluate(
    c: &mut dyn Conn,
    t: &Tenant,
    req: &CheckoutRequest,
    now: Timestamp,
    session_key: Option<&str>,
    request_id: &str,
) -> Result<Evaluation> {
    let p = t.project_id();
    let now_s = format(now);
    let customer = resolve_customer(c, p, req)?;
    let (order, _) = resolve_order(c, p, req)?;
    let lines = cart(&order.items, Some(order.amount));
    let catalog = |_: &str| None;
    let mut calc = Calculator::new(lines, &catalog);
    let tz = t.timezone();
    let customer_metadata = customer
        .as_ref()
        .map(|c| c.metadata.clone())
        .or_else(|| req.customer.as_ref().and_then(|i| i.metadata.clone().flatten()))
        .unwrap_or_default();
    let items: Vec<ItemFacts> = calc
        .lines
        .iter()
        .filter(|l| l.itemized)
        .map(|l| ItemFacts {
            product_id: l.product_id.clone(),
            product_source_id: l.product_source_id.clone(),
            sku_id: l.sku_id.clone(),
            sku_source_id: l.sku_source_id.clone(),
            price: l.price,
            quantity: l.quantity,
            amount: l.amount,
            metadata: l.item.metadata.clone().unwrap_or_default(),
            product_metadata: l
                .item
                .product
                .as_ref()
                .and_then(|p| p.get("metadata"))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        })
        .collect();
    let mut outcomes = Vec::with_capacity(req.redeemables.len());
    let mut applicable = 0usize;
    // One evaluation budget for every rule of every redeemable in the request.
    let mut budget = tessera_domain::rules::EVALUATION_BUDGET;
    let mut seen_vouchers = std::collections::BTreeSet::new();
    // Applicable redeemables so far per campaign (or standalone voucher): limits that count
    // redemptions must see the ones this request is about to make.
    let mut in_request: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    for (index, r) in req.redeemables.iter().enumerate() {
        let mut out = Outcome {
            index,
            object: r.object.clone(),
            id: r.id.clone(),
            status: Status::Applicable,
            voucher: None,
            applied: None,
            benefit: None,
            targets: Targets::default(),
            order_after: None,
        };
        if r.object != "voucher" {
            out.status = inapplicable(
                400,
                "invalid_redeemables",
                "Invalid redeemables",
                &format!("{} redeemables are not supported yet", r.object),
            );
            outcomes.push(out);
            continue;
        }
        let Some(v) = find_voucher(c, t, &r.id)? else {
            out.status = inapplicable(
                404,
                "not_found",
                "Resource not found",
                &format!("Cannot find voucher with id {}", r.id),
            );
            outcomes.push(out);
            continue;
        };
        if !seen_vouchers.insert(v.voucher.id.clone()) {
            // The same voucher named twice (by code and by id).
            return Err(StoreError::Invalid(InvalidInput {
                key: "duplicated_redeemables",
                message: "Duplicated redeemables detected".into(),
                details: format!("voucher {} is listed twice", v.voucher.code),
            }));
        }
        let campaign = match &v.voucher.campaign_id {
            Some(cid) => Some(get_campaign_rec(c, p, cid)?.campaign),
            None => None,
        };
        let code = v.voucher.code.clone();
        let status = 'check: {
            if !v.voucher.active || campaign.as_ref().is_some_and(|c| !c.active) {
                break 'check inapplicable(400, "voucher_disabled", "voucher is disabled", &code);
            }
            match v.voucher.schedule.validity().map_err(StoreError::Invalid)?.check(now, &tz) {
                Ok(()) => {}
                Err(NotValid::NotActiveYet) => break 'check inapplicable(400, "voucher_not_active", "voucher not active", &code),
                Err(NotValid::Expired) => break 'check inapplicable(400, "voucher_expired", "voucher expired", &code),
                Err(NotValid::OutsideTimeframe) => {
                    break 'check inapplicable(400, "voucher_not_active_now", "voucher not active now", &code)
                }
            }
            let (held_uses, held_credits) = held_by_others(c, p, &v.voucher.id, session_key, &now_s)?;
            if let Some(q) = v.voucher.redemption_quantity {
                if v.counters.redeemed_quantity + held_uses >= q {
                    break 'check inapplicable(400, "quantity_exceeded", "quantity exceeded", &code);
                }
            }
            let rules = rules_for(c, p, &v.voucher.validation_rules, &[&v.voucher.id])?;
            let mut rules = rules;
            if let Some(camp) = &campaign {
                rules.extend(rules_for(c, p, &camp.validation_rules, &[&camp.id])?);
            }
            if !rules.is_empty() {
                let already = in_request
                    .get(&v.voucher.campaign_id.clone().unwrap_or_else(|| v.voucher.id.clone()))
                    .copied()
                    .unwrap_or(0);
                // A customer named in the request counts even before they exist.
                let identified = customer.is_some() || req.customer.as_ref().is_some_and(|c| c.id.is_some() || c.source_id.is_some());
                let counts = fetch_counts((already, identified), c, t, &rules, &v, customer.as_ref(), now)?;
                let facts = RuleFacts {
                    order: &order,
                    customer: customer.as_ref(),
                    customer_metadata: customer_metadata.clone(),
                    redemption_metadata: req.metadata.clone().unwrap_or_default(),
                    counts,
                    holder_ok: v.voucher.holder_id.is_some() && v.voucher.holder_id.as_deref() == customer.as_ref().map(|c| c.id.as_str()),
                    items: items.clone(),
                };
                for rule in &rules {
                    match rule.set.evaluate_within(&facts, &mut budget) {
                        Ok(Verdict::Pass) => {}
                        Ok(Verdict::Fail(msg)) => {
                            let message = msg.or_else(|| {
                                rule.rule
                                    .error
                                    .as_ref()
                                    .and_then(|e| e.get("message"))
                                    .and_then(Value::as_str)
                                    .map(str::to_string)
                            });
                            let key = rule_key(std::slice::from_ref(rule));
                            break 'check Status::Inapplicable {
                                code: 400,
                                key: key.into(),
                                message: if key == "customer_rules_violated" {
                                    "customer does not match validation rules".into()
                                } else {
                                    "order does not match validation rules".into()
                                },
                                details: format!("{code} cannot be redeemed because of violated validation rules: {}", rule.rule.id),
                                rule_message: message,
                            };
                        }
                        Err(_) => {
                            break 'check inapplicable(
                                400,
                                "rule_evaluation_budget_exceeded",
                                "Validation rule too expensive",
                                &format!("rule {} exceeded its evaluation budget", rule.rule.id),
                            )
                        }
                    }
                    if let Some(a) = &rule.rule.applicable_to {
                        out.targets.included.extend(a.included.iter().cloned());
                        out.targets.excluded.extend(a.excluded.iter().cloned());
                        out.targets.included_all |= a.included_all;
                    }
                }
            }
            let benefit = match v.voucher.kind {
                VoucherType::DiscountVoucher => match &v.voucher.discount {
                    Some(d) => Benefit::Discount {
                        rule: d.rule().map_err(StoreError::Invalid)?,
                        targets: out.targets.clone(),
                    },
                    None => Benefit::Nothing,
                },
                VoucherType::GiftVoucher => {
                    let available = (v.counters.gift_balance.unwrap_or(0) - held_credits).max(0);
                    let requested = r.gift.as_ref().and_then(|g| g.credits);
                    if requested.is_some_and(|q| q > available) || available == 0 {
                        break 'check inapplicable(400, "gift_amount_exceeded", "gift amount exceeded", &code);
                    }
                    Benefit::Gift {
                        requested,
                        balance: available,
                    }
                }
            };
            if applicable >= APPLICABLE_LIMIT {
                break 'check Status::Skipped {
                    key: "applicable_redeemables_limit_exceeded".into(),
                    message: "Applicable redeemables limit exceeded".into(),
                };
            }
            let applied = calc.preview(&benefit);
            calc.commit(&applied);
            applicable += 1;
            *in_request
                .entry(v.voucher.campaign_id.clone().unwrap_or_else(|| v.voucher.id.clone()))
                .or_default() += 1;
            out.applied = Some(applied);
            out.benefit = Some(benefit);
            Status::Applicable
        };
        out.status = status;
        out.voucher = Some(v);
        if matches!(out.status, Status::Applicable) {
            out.order_after = Some(order_json(&calc, &order, customer.as_ref()));
        }
        outcomes.push(out);
    }
    // ALL application mode: one inapplicable redeemable makes the request invalid and the
    // others are skipped.
    let valid = !outcomes.iter().any(|o| matches!(o.status, Status::Inapplicable { .. })) && applicable > 0;
    if !valid {
        for o in &mut outcomes {
            if matches!(o.status, Status::Applicable) {
                o.status = Status::Skipped {
                    key: "preceding_validation_failed".into(),
                    message: "Redeemable cannot be applied due to preceding validation failure".into(),
                };
            }
        }
    }
    let calc_order = order_json(&calc, &order, customer.as_ref());
    Ok(Evaluation {
        request_id: request_id.to_string(),
        valid,
        outcomes,
        calc_order,
        order,
        customer,
    })
}

/// The calculated order in Voucherify's shape; for one request the applied amounts equal
/// the discounts.
fn order_json(calc: &Calculator<'_>, order: &Order, customer: Option<&Customer>) -> Value {
    let t = calc.totals();
    let items: Vec<Value> = calc
        .lines_with_discounts()
        .filter(|(l, _)| l.itemized)
        .map(|(l, d)| {
            let mut v = serde_json::to_value(&l.item).unwrap_or_else(|_| json!({}));
            v["object"] = json!("order_item");
            v["quantity"] = json!(l.quantity);
            v["price"] = json!(l.price);
            v["amount"] = json!(l.amount);
            v["discount_amount"] = json!(d);
            v["applied_discount_amount"] = json!(d);
            v["subtotal_amount"] = json!((l.amount - d).max(0));
            v
        })
        .collect();
    json!({
        "id": order.id,
        "source_id": order.source_id,
        "status": order.status,
        "amount": t.amount,
        "initial_amount": order.initial_amount.unwrap_or(t.amount),
        "discount_amount": t.discount_amount,
        "items_discount_amount": t.items_discount_amount,
        "total_discount_amount": t.total_discount_amount,
        "total_amount": t.total_amount,
        "applied_discount_amount": t.discount_amount,
        "items_applied_discount_amount": t.items_discount_amount,
        "total_applied_discount_amount": t.total_discount_amount,
        "items": items,
        "metadata": order.metadata,
        "customer_id": customer.map(|c| c.id.clone()),
        "customer": customer.map(|c| json!({"id": c.id, "object": "customer"})),
        "object": "order",
    })
}

fn error_json(
    code: u16,
    key: &str,
    message: &str,
    details: &str,
    rule_message: &Option<String>,
    resource_id: &str,
    request_id: &str,
) -> Value {
    let mut e = json!({"code": code, "key": key, "message": message, "details": details, "request_id": request_id});
    if key == "not_found" {
        e["resource_id"] = json!(resource_id);
        e["resource_type"] = json!("voucher");
    }
    if let Some(m) = rule_message {
        e["error"] = json!({"message": m});
    }
    e
}

fn redeemable_json(o: &Outcome, request_id: &str) -> Value {
    let mut v = json!({"id": o.id, "object": o.object});
    match &o.status {
        Status::Applicable => {
            v["status"] = json!("APPLICABLE");
            let result = match (&o.benefit, &o.voucher) {
                (Some(Benefit::Gift { .. }), Some(rec)) => json!({"gift": {
                    "credits": o.applied.as_ref().map(|a| a.gift_credits).unwrap_or(0),
                    "balance": rec.counters.gift_balance.unwrap_or(0),
                }}),
                (_, Some(rec)) => json!({"discount": rec.voucher.discount}),
                _ => json!({}),
            };
            v["result"] = result;
            if let Some(order) = &o.order_after {
                v["order"] = order.clone();
            }
            let targets = |list: &[tessera_domain::checkout::Target]| json!({"data": list, "total": list.len(), "object": "list", "data_ref": "data"});
            v["applicable_to"] = targets(&o.targets.included);
            v["inapplicable_to"] = targets(&o.targets.excluded);
            if let Some(rec) = &o.voucher {
                v["metadata"] = json!(rec.voucher.metadata);
                v["campaign_id"] = json!(rec.voucher.campaign_id);
                v["campaign_name"] = json!(rec.voucher.campaign);
                v["categories"] = json!([]);
            }
        }
        Status::Inapplicable {
            code,
            key,
            message,
            details,
            rule_message,
        } => {
            v["status"] = json!("INAPPLICABLE");
            v["result"] = json!({"error": error_json(*code, key, message, details, rule_message, &o.id, request_id)});
        }
        Status::Skipped { key, message } => {
            v["status"] = json!("SKIPPED");
            v["result"] = json!({"details": {"key": key, "message": message}});
        }
    }
    v
}

/// The validation response.
pub fn validation_json(e: &Evaluation, tracking_id: &str, session: Option<Value>) -> Value {
    let redeemables: Vec<Value> = e.outcomes.iter().map(|o| redeemable_json(o, &e.request_id)).collect();
    let mut v = json!({
        "id": new_id("valid"),
        "valid": e.valid,
        "redeemables": redeemables.iter().filter(|r| r["status"] == "APPLICABLE").cloned().collect::<Vec<_>>(),
        "skipped_redeemables": redeemables.iter().filter(|r| r["status"] == "SKIPPED").cloned().collect::<Vec<_>>(),
        "inapplicable_redeemables": redeemables.iter().filter(|r| r["status"] == "INAPPLICABLE").cloned().collect::<Vec<_>>(),
        "tracking_id": tracking_id,
        "stacking_rules": stacking_rules(),
    });
    if !e.valid {
        // Voucherify lists every redeemable under `redeemables` when the request fails.
        v["redeemables"] = json!(redeemables);
    } else {
        v["order"] = e.calc_order.clone();
    }
    if let Some(s) = session {
        v["session"] = s;
    }
    v
}

fn tracking_id(req: &CheckoutRequest, customer: Option<&Customer>) -> String {
    req.tracking_id
        .clone()
        .or_else(|| customer.and_then(|c| c.source_id.clone()))
        .or_else(|| req.customer.as_ref().and_then(|c| c.source_id.clone()))
        .unwrap_or_else(|| new_id("track"))
}

fn simple_customer(c: &Customer) -> Value {
    json!({"id": c.id, "source_id": c.source_id, "name": c.name, "email": c.email, "metadata": c.metadata, "object": "customer"})
}

/// What a redemption request produced.
pub enum RedeemResult {
    Succeeded(Value),
    /// Nothing was redeemed; the failure records committed.
    Failed {
        code: u16,
        key: String,
        message: String,
        details: String,
        body: Value,
    },
}

/// Locks what a request's checks read and its effects change: the vouchers, and for a
/// known customer each (campaign, customer) pair, so per-customer limits hold across the
/// codes of one campaign. Keys are taken in sorted order so two requests never wait on
/// each other in a cycle. (SQLite's single writer makes these no-ops.)
fn lock_vouchers(c: &mut dyn Conn, t: &Tenant, req: &CheckoutRequest) -> Result<()> {
    let p = t.project_id();
    let customer_key = req.customer.as_ref().and_then(|c| c.id.clone().or_else(|| c.source_id.clone()));
    let customer = match &customer_key {
        Some(k) => docs::find::<Customer>(c, &customers::TABLE, p, k)?
            .map(|c| c.id)
            .or(customer_key.clone()),
        None => None,
    };
    let mut keys: Vec<String> = Vec::new();
    for r in &req.redeemables {
        if r.object == "voucher" {
            if let Some(v) = find_voucher(c, t, &r.id)? {
                keys.push(format!("voucher:{p}:{}", v.voucher.id));
                if let (Some(cid), Some(cust)) = (&v.voucher.campaign_id, &customer) {
                    keys.push(format!("campaign-customer:{p}:{cid}:{cust}"));
                }
            }
        }
    }
    keys.sort();
    keys.dedup();
    for k in keys {
        c.lock_key(&k)?;
    }
    Ok(())
}

fn apply_session(c: &mut dyn Conn, t: &Tenant, req: &CheckoutRequest, e: &Evaluation, now: Timestamp) -> Result<Option<Value>> {
    let Some(s) = &req.session else { return Ok(None) };
    let ttl = s.ttl_secs()?;
    let key = s.key.clone().unwrap_or_else(|| new_id("ssn"));
    let expires = now
        .checked_add(jiff::SignedDuration::from_secs(ttl))
        .map_err(|e| StoreError::Internal(e.to_string()))?;
    if e.valid {
        for o in &e.outcomes {
            let (Some(rec), Some(a)) = (&o.voucher, &o.applied) else { continue };
            c.execute(
                "INSERT INTO voucher_sessions (project_id, voucher_id, session_key, quantity, amount, expires_at, created_at) VALUES ($1, $2, $3, 1, $4, $5, $6) \
                 ON CONFLICT (project_id, voucher_id, session_key) DO UPDATE SET amount = excluded.amount, expires_at = excluded.expires_at",
                &[t.project_id().into(), rec.voucher.id.clone().into(), key.clone().into(), a.gift_credits.into(), format(expires).into(), format(now).into()],
            )?;
        }
    }
    Ok(Some(
        json!({"key": key, "type": "LOCK", "ttl": s.ttl.clone().unwrap_or_else(|| 7.into()), "ttl_unit": s.ttl_unit.clone().unwrap_or_else(|| "DAYS".into())}),
    ))
}

fn redeem_in_tx(c: &mut dyn Conn, t: &Tenant, req: &CheckoutRequest, request_id: &str) -> Result<RedeemResult> {
    let p = t.project_id();
    let now = tessera_domain::time::now();
    let now_s = format(now);
    lock_vouchers(c, t, req)?;
    let session_key = req.session.as_ref().and_then(|s| s.key.clone());
    let e = evaluate(c, t, req, now, session_key.as_deref(), request_id)?;
    // The customer named in the request is created or updated with the redemption.
    let customer = match &req.customer {
        Some(input) if input.id.is_some() || input.source_id.is_some() => Some(customers::upsert(c, p, input.clone())?),
        _ => e.customer.clone(),
    };
    let tracking = tracking_id(req, customer.as_ref());
    let channel = json!({"channel_id": t.app_id(), "channel_type": "API"});
    if !e.valid {
        let first = e.outcomes.iter().find_map(|o| match &o.status {
            Status::Inapplicable {
                code,
                key,
                message,
                details,
                ..
            } => Some((*code, key.clone(), message.clone(), details.clone())),
            _ => None,
        });
        let (code, key, message, details) = first.unwrap_or((
            400,
            "no_applicable_redeemables".into(),
            "No applicable redeemables".into(),
            String::new(),
        ));
        let mut failures = Vec::new();
        for o in &e.outcomes {
            let id = new_id("rf");
            let (fkey, fmsg) = match &o.status {
                Status::Inapplicable { key, message, .. } => (key.clone(), message.clone()),
                Status::Skipped { key, message } => (key.clone(), message.clone()),
                Status::Applicable => (
                    "preceding_validation_failed".into(),
                    "Redeemable cannot be applied due to preceding validation failure".into(),
                ),
            };
            let body = json!({
                "id": id, "object": "redemption", "date": now_s, "customer_id": customer.as_ref().map(|c| c.id.clone()),
                "tracking_id": tracking, "metadata": req.metadata.clone().unwrap_or_default(), "redemption": null,
                "result": "FAILURE", "status": "FAILED", "failure_code": fkey, "failure_message": fmsg,
                "order": null, "channel": channel, "customer": customer.as_ref().map(simple_customer),
                "related_object_type": o.object, "related_object_id": o.voucher.as_ref().map(|v| v.voucher.id.clone()).unwrap_or_else(|| o.id.clone()),
                "voucher": o.voucher.as_ref().map(views::voucher),
            });
            c.execute(
                "INSERT INTO redemptions (project_id, id, object, voucher_id, campaign_id, customer_id, tracking_id, result, status, created_at, data) \
                 VALUES ($1, $2, 'redemption', $3, $4, $5, $6, 'FAILURE', 'FAILED', $7, $8)",
                &[
                    p.into(),
                    id.clone().into(),
                    o.voucher.as_ref().map(|v| v.voucher.id.clone()).into(),
                    o.voucher.as_ref().and_then(|v| v.voucher.campaign_id.clone()).into(),
                    customer.as_ref().map(|c| c.id.clone()).into(),
                    tracking.clone().into(),
                    now_s.clone().into(),
                    body.to_string().into(),
                ],
            )?;
            outbox::emit(c, p, "redemption.failed", &id, &body)?;
            failures.push(body);
        }
        let body =
            json!({"code": code, "key": key, "message": message, "details": details, "request_id": request_id, "redemptions": failures});
        return Ok(RedeemResult::Failed {
            code,
            key,
            message,
            details,
            body,
        });
    }

    // Effects: counters and balances through guarded updates.
    let mut order = e.order.clone();
    let totals_order = e.calc_order.clone();
    order.discount_amount = totals_order["discount_amount"].as_i64().unwrap_or(0);
    order.items_discount_amount = totals_order["items_discount_amount"].as_i64().unwrap_or(0);
    order.total_discount_amount = totals_order["total_discount_amount"].as_i64().unwrap_or(0);
    order.total_amount = totals_order["total_amount"].as_i64().unwrap_or(order.total_amount);
    order.applied_discount_amount = order.discount_amount;
    order.items_applied_discount_amount = order.items_discount_amount;
    order.total_applied_discount_amount = order.total_discount_amount;
    order.customer_id = customer.as_ref().map(|c| c.id.clone()).or(order.customer_id);
    if req.order.as_ref().and_then(|o| o.status).is_none() && order.status == OrderStatus::Created {
        order.status = OrderStatus::Paid;
    }
    let applicable: Vec<&Outcome> = e.outcomes.iter().filter(|o| matches!(o.status, Status::Applicable)).collect();
    let parent_id = (applicable.len() > 1 || e.outcomes.len() > 1).then(|| new_id("r"));
    let mut children = Vec::new();
    for o in &applicable {
        let (Some(rec), Some(a)) = (&o.voucher, &o.applied) else { continue };
        let credits = a.gift_credits;
        let updated = c.query_opt(
            "UPDATE vouchers SET redeemed_quantity = redeemed_quantity + 1, redeemed_amount = redeemed_amount + $1, \
             gift_balance = CASE WHEN gift_balance IS NULL THEN NULL ELSE gift_balance - $1 END \
             WHERE project_id = $2 AND id = $3 AND (quantity IS NULL OR redeemed_quantity < quantity) \
             AND (gift_balance IS NULL OR gift_balance >= $1) RETURNING gift_balance",
            &[credits.into(), p.into(), rec.voucher.id.clone().into()],
        )?;
        let Some(row) = updated else {
            // Lost a race the lock should have prevented: refuse rather than overdraw.
            return Err(StoreError::Conflict {
                key: "quantity_exceeded",
                message: "Concurrent redemption".into(),
                details: format!("{} was redeemed concurrently; retry", rec.voucher.code),
            });
        };
        let id = new_id("r");
        if credits > 0 {
            let balance = row.opt_int(0)?.unwrap_or(0);
            ledger_entry(
                c,
                p,
                &rec.voucher.id,
                "CREDITS_REDEMPTION",
                -credits,
                balance,
                Some(&id),
                None,
                None,
            )?;
        }
        if let Some(k) = &session_key {
            c.execute(
                "DELETE FROM voucher_sessions WHERE project_id = $1 AND voucher_id = $2 AND session_key = $3",
                &[p.into(), rec.voucher.id.clone().into(), k.clone().into()],
            )?;
        }
        let fresh = find_voucher(c, t, &rec.voucher.id)?.unwrap_or_else(|| rec.clone());
        let mut body = json!({
            "id": id, "object": "redemption", "date": now_s, "customer_id": customer.as_ref().map(|c| c.id.clone()),
            "tracking_id": tracking, "metadata": req.metadata.clone().unwrap_or_default(), "amount": credits,
            "redemption": parent_id, "result": "SUCCESS", "status": "SUCCEEDED",
            "order": o.order_after.clone().map(|mut ord| { ord["id"] = json!(order.id); ord["status"] = json!(order.status); ord }),
            "channel": channel, "customer": customer.as_ref().map(simple_customer),
            "related_object_type": "voucher", "related_object_id": rec.voucher.id,
            "voucher": views::voucher(&fresh),
        });
        if fresh.voucher.kind == VoucherType::GiftVoucher {
            body["gift"] = json!({"amount": credits});
        }
        if let Some(s) = &session_key {
            body["session"] = json!({"key": s});
        }
        c.execute(
            "INSERT INTO redemptions (project_id, id, object, parent_id, voucher_id, campaign_id, customer_id, order_id, tracking_id, result, status, amount, discount_amount, order_amount, created_at, data) \
             VALUES ($1, $2, 'redemption', $3, $4, $5, $6, $7, $8, 'SUCCESS', 'SUCCEEDED', $9, $10, $13, $11, $12)",
            &[
                p.into(),
                id.clone().into(),
                parent_id.clone().into(),
                rec.voucher.id.clone().into(),
                rec.voucher.campaign_id.clone().into(),
                customer.as_ref().map(|c| c.id.clone()).into(),
                order.id.clone().into(),
                tracking.clone().into(),
                credits.into(),
                a.total().into(),
                now_s.clone().into(),
                body.to_string().into(),
                order.amount.into(),
            ],
        )?;
        outbox::emit(c, p, "redemption.succeeded", &id, &body)?;
        children.push(body);
    }
    save_order(c, p, &order)?;
    let order_view = {
        let mut o = e.calc_order.clone();
        o["id"] = json!(order.id);
        o["status"] = json!(order.status);
        o["redemptions"] = match &parent_id {
            Some(pid) => {
                json!({pid.clone(): {"date": now_s, "related_object_type": "redemption", "related_object_id": pid, "stacked": children.iter().map(|c| c["id"].clone()).collect::<Vec<_>>()}})
            }
            None => json!(children
                .iter()
                .map(|c| (
                    c["id"].as_str().unwrap_or_default().to_string(),
                    json!({"date": now_s, "related_object_type": "voucher", "related_object_id": c["related_object_id"]})
                ))
                .collect::<Map<String, Value>>()),
        };
        o
    };
    let mut response = json!({
        "redemptions": children,
        "order": order_view,
        "inapplicable_redeemables": [],
        "skipped_redeemables": e.outcomes.iter().filter(|o| matches!(o.status, Status::Skipped { .. })).map(|o| redeemable_json(o, &e.request_id)).collect::<Vec<_>>(),
    });
    if let Some(pid) = &parent_id {
        let parent = json!({
            "id": pid, "object": "redemption", "date": now_s, "customer_id": customer.as_ref().map(|c| c.id.clone()),
            "tracking_id": tracking, "metadata": req.metadata.clone().unwrap_or_default(), "amount": 0, "redemption": null,
            "result": "SUCCESS", "status": "SUCCEEDED", "order": order_view, "channel": channel,
            "customer": customer.as_ref().map(simple_customer), "related_object_type": "redemption", "related_object_id": pid,
        });
        c.execute(
            "INSERT INTO redemptions (project_id, id, object, customer_id, order_id, tracking_id, result, status, created_at, data) \
             VALUES ($1, $2, 'redemption', $3, $4, $5, 'SUCCESS', 'SUCCEEDED', $6, $7)",
            &[
                p.into(),
                pid.clone().into(),
                customer.as_ref().map(|c| c.id.clone()).into(),
                order.id.clone().into(),
                tracking.clone().into(),
                now_s.clone().into(),
                parent.to_string().into(),
            ],
        )?;
        outbox::emit(c, p, "redemption.succeeded", pid, &parent)?;
        response["parent_redemption"] = parent;
    }
    Ok(RedeemResult::Succeeded(response))
}

fn save_order(c: &mut dyn Conn, p: &str, o: &Order) -> Result<()> {
    c.execute(
        "INSERT INTO orders (project_id, id, source_id, status, customer_id, total_amount, created_at, updated_at, data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (project_id, id) DO UPDATE SET status = excluded.status, customer_id = excluded.customer_id, total_amount = excluded.total_amount, \
         updated_at = excluded.updated_at, data = excluded.data",
        &[
            p.into(),
            o.id.clone().into(),
            o.source_id.clone().into(),
            o.status.as_str().into(),
            o.customer_id.clone().into(),
            o.total_amount.into(),
            o.created_at.clone().into(),
            o.updated_at.clone().into(),
            to_json(o)?.into(),
        ],
    )?;
    Ok(())
}

fn load_redemption(c: &mut dyn Conn, p: &str, id: &str) -> Result<(Value, Option<String>, String, String)> {
    let row = c
        .query_opt(
            "SELECT data, parent_id, object, status FROM redemptions WHERE project_id = $1 AND id = $2",
            &[p.into(), id.into()],
        )?
        .ok_or_else(|| StoreError::not_found("redemption", id))?;
    let data: Value = row.json(0)?;
    Ok((data, row.opt_text(1)?, row.text(2)?, row.text(3)?))
}

fn bad(key: &'static str, message: &str, details: &str) -> StoreError {
    StoreError::Invalid(InvalidInput {
        key,
        message: message.into(),
        details: details.into(),
    })
}

/// Rolls back one redemption: restores exactly what it took, once.
fn rollback_one(
    c: &mut dyn Conn,
    t: &Tenant,
    id: &str,
    parent_rollback: Option<&str>,
    reason: Option<&str>,
    tracking: Option<&str>,
    metadata: &Value,
) -> Result<Value> {
    let p = t.project_id();
    let (mut data, _, object, status) = load_redemption(c, p, id)?;
    if object != "redemption" || data["result"] != "SUCCESS" {
        return Err(bad(
            "invalid_redemption",
            "Invalid redemption",
            "Only a successful redemption can be rolled back.",
        ));
    }
    if status == "ROLLED_BACK" {
        return Err(bad(
            "already_rolled_back",
            "Already rolled back",
            "Redemption has been already rolled back.",
        ));
    }
    let voucher_id = data["related_object_id"].as_str().unwrap_or_default().to_string();
    c.lock_key(&format!("voucher:{p}:{voucher_id}"))?;
    let credits = data["amount"].as_i64().unwrap_or(0);
    let now_s = now_string();
    let rr = new_id("rr");
    // The voucher may have been deleted since; the rollback still records.
    let restored = c.query_opt(
        "UPDATE vouchers SET redeemed_quantity = redeemed_quantity - 1, redeemed_amount = redeemed_amount - $1, \
         gift_balance = CASE WHEN gift_balance IS NULL THEN NULL ELSE gift_balance + $1 END \
         WHERE project_id = $2 AND id = $3 AND redeemed_quantity >= 1 RETURNING gift_balance",
        &[credits.into(), p.into(), voucher_id.clone().into()],
    )?;
    if let Some(row) = restored {
        if credits > 0 {
            ledger_entry(
                c,
                p,
                &voucher_id,
                "CREDITS_REFUND",
                credits,
                row.opt_int(0)?.unwrap_or(0),
                Some(&rr),
                None,
                reason,
            )?;
        }
    }
    data["status"] = json!("ROLLED_BACK");
    let updated = c.execute(
        "UPDATE redemptions SET status = 'ROLLED_BACK', rollback_id = $1, data = $2 WHERE project_id = $3 AND id = $4 AND status = 'SUCCEEDED'",
        &[rr.clone().into(), data.to_string().into(), p.into(), id.into()],
    )?;
    if updated != 1 {
        return Err(bad(
            "already_rolled_back",
            "Already rolled back",
            "Redemption has been already rolled back.",
        ));
    }
    let voucher = find_voucher(c, t, &voucher_id)?.map(|v| views::voucher(&v));
    let mut body = json!({
        "id": rr, "object": "redemption_rollback", "date": now_s, "customer_id": data["customer_id"],
        "tracking_id": tracking.map(str::to_string).or_else(|| data["tracking_id"].as_str().map(str::to_string)),
        "metadata": metadata, "amount": -credits, "redemption": id, "reason": reason,
        "result": "SUCCESS", "status": "SUCCEEDED", "order": data["order"], "channel": data["channel"],
        "customer": data["customer"], "related_object_type": "voucher", "related_object_id": voucher_id, "voucher": voucher,
    });
    if data.get("gift").is_some() {
        body["gift"] = json!({"amount": -credits});
    }
    if let Some(pr) = parent_rollback {
        body["parent_rollback_id"] = json!(pr);
    }
    c.execute(
        "INSERT INTO redemptions (project_id, id, object, parent_id, redemption_id, voucher_id, campaign_id, customer_id, tracking_id, result, status, amount, created_at, data) \
         VALUES ($1, $2, 'redemption_rollback', $3, $4, $5, $6, $7, $8, 'SUCCESS', 'SUCCEEDED', $9, $10, $11)",
        &[
            p.into(),
            rr.clone().into(),
            parent_rollback.map(str::to_string).into(),
            id.into(),
            voucher_id.clone().into(),
            data["voucher"]["campaign_id"].as_str().map(str::to_string).into(),
            data["customer_id"].as_str().map(str::to_string).into(),
            body["tracking_id"].as_str().map(str::to_string).into(),
            Val::Int(-credits),
            now_s.into(),
            body.to_string().into(),
        ],
    )?;
    outbox::emit(c, p, "redemption.rollback.succeeded", &rr, &body)?;
    Ok(body)
}

impl Store {
    /// Validates without changing anything, unless the request asks for a session (a
    /// reservation), which is a write.
    pub async fn validate_checkout(&self, t: &Tenant, req: CheckoutRequest) -> Result<Value> {
        req.validate()?;
        let t = t.clone();
        let rid = crate::ops::idempotency::current_request_id();
        if req.session.is_some() {
            return self
                .write(move |c| {
                    // A reservation changes what other checkouts may take: lock like a redemption.
                    lock_vouchers(c, &t, &req)?;
                    let now = tessera_domain::time::now();
                    let key = req.session.as_ref().and_then(|s| s.key.clone());
                    let e = evaluate(c, &t, &req, now, key.as_deref(), &rid)?;
                    let session = apply_session(c, &t, &req, &e, now)?;
                    Ok(validation_json(&e, &tracking_id(&req, e.customer.as_ref()), session))
                })
                .await;
        }
        self.read(move |c| {
            let e = evaluate(c, &t, &req, tessera_domain::time::now(), None, &rid)?;
            Ok(validation_json(&e, &tracking_id(&req, e.customer.as_ref()), None))
        })
        .await
    }

    pub async fn redeem(&self, t: &Tenant, req: CheckoutRequest) -> Result<RedeemResult> {
        req.validate()?;
        let t = t.clone();
        let rid = crate::ops::idempotency::current_request_id();
        self.write(move |c| redeem_in_tx(c, &t, &req, &rid)).await
    }

    pub async fn rollback_redemption(
        &self,
        t: &Tenant,
        id: String,
        reason: Option<String>,
        tracking_id: Option<String>,
        metadata: Value,
    ) -> Result<Value> {
        let t = t.clone();
        self.write(move |c| {
            let (data, parent, _, _) = load_redemption(c, t.project_id(), &id)?;
            if parent.is_some() {
                return Err(bad(
                    "invalid_redemption_parent",
                    "Invalid redemption",
                    "You can rollback only a redemption that does not have parent redemption.",
                ));
            }
            if data["related_object_type"] == "redemption" {
                return Err(bad(
                    "invalid_redemption",
                    "Invalid redemption",
                    "You can rollback only a single redemption. Use different endpoint for stacked redemption.",
                ));
            }
            rollback_one(c, &t, &id, None, reason.as_deref(), tracking_id.as_deref(), &metadata)
        })
        .await
    }

    /// Rolls back a stacked redemption (all its children) or a single one.
    pub async fn rollback_stacked(
        &self,
        t: &Tenant,
        id: String,
        reason: Option<String>,
        tracking_id: Option<String>,
        metadata: Value,
    ) -> Result<Value> {
        let t = t.clone();
        self.write(move |c| {
            let p = t.project_id().to_string();
            let (data, parent, _, status) = load_redemption(c, &p, &id)?;
            if parent.is_some() {
                return Err(bad("invalid_redemption_parent", "Invalid redemption", "Roll back the parent redemption instead."));
            }
            if data["related_object_type"] != "redemption" {
                let r = rollback_one(c, &t, &id, None, reason.as_deref(), tracking_id.as_deref(), &metadata)?;
                return Ok(json!({"rollbacks": [r.clone()], "parent_rollback": r, "order": data["order"]}));
            }
            if status == "ROLLED_BACK" {
                return Err(bad("already_rolled_back", "Already rolled back", "Redemption has been already rolled back."));
            }
            let prr = new_id("rr");
            let children = c.query(
                "SELECT id FROM redemptions WHERE project_id = $1 AND parent_id = $2 AND object = 'redemption' AND status = 'SUCCEEDED' ORDER BY id LIMIT 30",
                &[p.clone().into(), id.clone().into()],
            )?;
            let mut rollbacks = Vec::new();
            for row in children {
                rollbacks.push(rollback_one(c, &t, &row.text(0)?, Some(&prr), reason.as_deref(), tracking_id.as_deref(), &metadata)?);
            }
            let now_s = now_string();
            let mut pdata = data.clone();
            pdata["status"] = json!("ROLLED_BACK");
            c.execute(
                "UPDATE redemptions SET status = 'ROLLED_BACK', rollback_id = $1, data = $2 WHERE project_id = $3 AND id = $4",
                &[prr.clone().into(), pdata.to_string().into(), p.clone().into(), id.clone().into()],
            )?;
            let parent_rollback = json!({
                "id": prr, "object": "redemption_rollback", "date": now_s, "customer_id": data["customer_id"],
                "tracking_id": tracking_id.clone().or_else(|| data["tracking_id"].as_str().map(str::to_string)), "metadata": metadata,
                "amount": 0, "redemption": id, "reason": reason, "result": "SUCCESS", "status": "SUCCEEDED", "order": data["order"],
                "channel": data["channel"], "customer": data["customer"], "related_object_type": "redemption", "related_object_id": prr,
            });
            c.execute(
                "INSERT INTO redemptions (project_id, id, object, redemption_id, customer_id, result, status, created_at, data) \
                 VALUES ($1, $2, 'redemption_rollback', $3, $4, 'SUCCESS', 'SUCCEEDED', $5, $6)",
                &[p.clone().into(), prr.clone().into(), id.clone().into(), data["customer_id"].as_str().map(str::to_string).into(), now_s.into(), parent_rollback.to_string().into()],
            )?;
            outbox::emit(c, &p, "redemption.rollback.succeeded", &prr, &parent_rollback)?;
            Ok(json!({"rollbacks": rollbacks, "parent_rollback": parent_rollback, "order": data["order"]}))
        })
        .await
    }

    pub async fn get_redemption(&self, t: &Tenant, id: String) -> Result<Value> {
        let p = t.project_id().to_string();
        self.read(move |c| Ok(load_redemption(c, &p, &id)?.0)).await
    }

    pub async fn list_redemptions(&self, t: &Tenant, q: ListQuery) -> Result<(Vec<Value>, i64)> {
        let t = t.clone();
        self.read(move |c| {
            let p = t.project_id();
            let mut clauses = vec!["project_id = $1".to_string()];
            let mut params: Vec<Val> = vec![p.into()];
            let add = |clause: &str, v: Val, clauses: &mut Vec<String>, params: &mut Vec<Val>| {
                params.push(v);
                clauses.push(clause.replace('?', &format!("${}", params.len())));
            };
            if let Some(r) = q.filters.get("result") {
                add("result = ?", r.into(), &mut clauses, &mut params);
            }
            if let Some(camp) = q.filters.get("campaign") {
                let cid = crate::ops::vouchers::load_campaign(c, p, camp)?
                    .map(|r| r.campaign.id)
                    .unwrap_or_default();
                add("campaign_id = ?", cid.into(), &mut clauses, &mut params);
            }
            if let Some(cust) = q.filters.get("customer") {
                let id = docs::find::<Customer>(c, &customers::TABLE, p, cust)?
                    .map(|c| c.id)
                    .unwrap_or_default();
                add("customer_id = ?", id.into(), &mut clauses, &mut params);
            }
            if let Some(code) = q.filters.get("voucher_code") {
                let id = find_voucher(c, &t, code)?.map(|v| v.voucher.id).unwrap_or_default();
                add("voucher_id = ?", id.into(), &mut clauses, &mut params);
            }
            if let Some(pid) = q.filters.get("parent_redemption_id") {
                add("parent_id = ?", pid.into(), &mut clauses, &mut params);
            }
            if let Some(v) = &q.created_before {
                add("created_at < ?", v.into(), &mut clauses, &mut params);
            }
            if let Some(v) = &q.created_after {
                add("created_at > ?", v.into(), &mut clauses, &mut params);
            }
            let w = clauses.join(" AND ");
            let total = c
                .query_one(&format!("SELECT COUNT(*) FROM redemptions WHERE {w}"), &params)?
                .int(0)?;
            let dir = if q.descending { "DESC" } else { "ASC" };
            let n = params.len();
            params.push(Val::Int(q.limit as i64));
            params.push(Val::Int(q.offset() as i64));
            let rows = c.query(
                &format!(
                    "SELECT data FROM redemptions WHERE {w} ORDER BY created_at {dir}, id {dir} LIMIT ${} OFFSET ${}",
                    n + 1,
                    n + 2
                ),
                &params,
            )?;
            Ok((rows.iter().map(|r| r.json(0)).collect::<Result<Vec<Value>>>()?, total))
        })
        .await
    }

    /// Campaign counters computed from the redemption log and the gift ledger, optionally
    /// within a date range.
    pub async fn campaign_summary(&self, t: &Tenant, key: String, start: Option<String>, end: Option<String>) -> Result<Value> {
        let p = t.project_id().to_string();
        self.read(move |c| {
            let rec = get_campaign_rec(c, &p, &key)?;
            let cid = rec.campaign.id.clone();
            let (from, to) = (start.unwrap_or_default(), end.unwrap_or_else(|| "9999".into()));
            let q = |c: &mut dyn Conn, cond: &str, expr: &str| -> Result<i64> {
                c.query_one(
                    &format!("SELECT CAST(COALESCE({expr}, 0) AS BIGINT) FROM redemptions WHERE project_id = $1 AND campaign_id = $2 AND created_at >= $3 AND created_at < $4 AND {cond}"),
                    &[p.clone().into(), cid.clone().into(), from.clone().into(), to.clone().into()],
                )?
                .int(0)
            };
            let ok = "object = 'redemption' AND result = 'SUCCESS'";
            let failed = "object = 'redemption' AND result = 'FAILURE'";
            let rb = "object = 'redemption_rollback'";
            let succeeded = q(c, ok, "COUNT(*)")?;
            let failures = q(c, failed, "COUNT(*)")?;
            let rollbacks = q(c, rb, "COUNT(*)")?;
            let mut v = json!({
                "object": "campaign_summary",
                "campaign": views::campaign(&rec),
                "redemptions": succeeded + failures,
                "redemptions_succeeded": succeeded,
                "redemptions_failed": failures,
                "rollbacks": rollbacks,
                "rollbacks_succeeded": rollbacks,
                "rollbacks_failed": 0,
                "validations": 0,
                "validations_succeeded": 0,
                "validations_failed": 0,
                "orders_amount": q(c, ok, "SUM(order_amount)")?,
                "orders_rolledback_amount": q(c, &format!("{ok} AND status = 'ROLLED_BACK'"), "SUM(order_amount)")?,
                "vouchers_created": rec.vouchers_count,
                "vouchers_deleted": 0,
                "publications": 0,
                "publications_succeeded": 0,
                "publications_failed": 0,
            });
            if rec.campaign.voucher.kind == VoucherType::GiftVoucher {
                let gift = |c: &mut dyn Conn, cond: &str| -> Result<i64> {
                    c.query_one(
                        &format!(
                            "SELECT CAST(COALESCE(SUM(g.amount), 0) AS BIGINT) FROM gift_transactions g JOIN vouchers v ON v.project_id = g.project_id AND v.id = g.voucher_id \
                             WHERE g.project_id = $1 AND v.campaign_id = $2 AND g.created_at >= $3 AND g.created_at < $4 AND {cond}"
                        ),
                        &[p.clone().into(), cid.clone().into(), from.clone().into(), to.clone().into()],
                    )?
                    .int(0)
                };
                v["created_vouchers_amount"] = json!(gift(c, "g.kind = 'CREDITS_ADDITION' AND g.reason = 'issue'")?);
                v["amount_added"] = json!(gift(c, "g.kind = 'CREDITS_ADDITION' AND (g.reason IS NULL OR g.reason <> 'issue')")?);
                v["amount_deleted"] = json!(0);
                v["amount_redeemed"] = json!(-gift(c, "g.kind = 'CREDITS_REDEMPTION'")?);
                v["amount_rolledback"] = json!(gift(c, "g.kind = 'CREDITS_REFUND'")?);
                v["amount_subtracted"] = json!(-gift(c, "g.kind = 'CREDITS_REMOVAL'")?);
            } else {
                v["discounted_amount"] = json!(q(c, ok, "SUM(discount_amount)")?);
                v["rolledback_discounted_amount"] = json!(q(c, &format!("{ok} AND status = 'ROLLED_BACK'"), "SUM(discount_amount)")?);
            }
            Ok(v)
        })
        .await
    }

    /// Drops reservations past their expiry; they no longer hold anything.
    pub async fn purge_expired_sessions(&self) -> Result<u64> {
        self.write_unmarked(|c| c.execute("DELETE FROM voucher_sessions WHERE expires_at < $1", &[now_string().into()]))
            .await
    }

    pub async fn release_session(&self, t: &Tenant, code: String, key: String) -> Result<()> {
        let t = t.clone();
        self.write(move |c| {
            let v = crate::ops::vouchers::get_voucher_rec(c, &t, &code)?;
            let n = c.execute(
                "DELETE FROM voucher_sessions WHERE project_id = $1 AND voucher_id = $2 AND session_key = $3",
                &[t.project_id().into(), v.voucher.id.into(), key.clone().into()],
            )?;
            if n == 0 {
                return Err(StoreError::not_found("session", key));
            }
            Ok(())
        })
        .await
    }
}
