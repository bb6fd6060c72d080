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
use crate::ops::promotions::{tier_json, PromoSet, TierEntry};
use crate::ops::rules::{rules_for, CompiledRule};
use crate::ops::views::{self, VoucherView};
use crate::ops::vouchers::{find_voucher, get_campaign_rec, ledger_entry, VoucherRecord};
use crate::{Result, Store, StoreError};
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use tessera_domain::checkout::{cart, Applied, Benefit, Calculator, PreviewMode, Targets};
use tessera_domain::customer::Customer;
use tessera_domain::ids::new_id;
use tessera_domain::list::{ListQuery, ListSpec, SortField};
use tessera_domain::order::{Order, OrderStatus};
use tessera_domain::redemption::{CheckoutRequest, QualificationRequest, RedeemableRef};
use tessera_domain::rules::{Facts, ItemFacts, Verdict};
use tessera_domain::stacking::{application_order, ApplicationMode, Candidate, Gate, ProductsMode, Skip, StackingRules};
use tessera_domain::time::{format, now_string};
use tessera_domain::validity::NotValid;
use tessera_domain::voucher::Campaign;
use tessera_domain::voucher::VoucherType;
use tessera_domain::InvalidInput;

pub const LIST_SPEC: ListSpec = ListSpec {
    sorts: &[SortField::CreatedAt],
    filters: &["result", "campaign", "customer", "voucher_code", "parent_redemption_id"],
    default_limit: 10,
};

/// The stacking rules as responses show them.
pub fn stacking_rules_json(r: &StackingRules) -> Value {
    serde_json::to_value(r).unwrap_or_else(|_| json!({}))
}

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

#[derive(Clone)]
pub struct Outcome {
    /// Position in the request.
    pub index: usize,
    pub object: String,
    pub id: String,
    pub status: Status,
    /// Boxed, as is the campaign: a qualification handles a thousand outcomes, most of
    /// them tiers, and moving them should not copy two kilobytes each.
    pub voucher: Option<Box<VoucherRecord>>,
    /// The voucher's campaign (a tier's is in `tier`).
    pub campaign: Option<Box<Campaign>>,
    pub tier: Option<Arc<TierEntry>>,
    /// The promotion stack a tier was requested through.
    pub stack_id: Option<String>,
    pub applied: Option<Applied>,
    pub benefit: Option<Benefit>,
    pub targets: Targets,
    pub order_after: Option<Value>,
    pub cand: Candidate,
    /// Why, when the request asks for `explain`.
    pub explain: Option<Value>,
}

impl Outcome {
    fn new(index: usize, object: &str, id: &str) -> Self {
        Outcome {
            index,
            object: object.to_string(),
            id: id.to_string(),
            status: Status::Applicable,
            voucher: None,
            campaign: None,
            tier: None,
            stack_id: None,
            applied: None,
            benefit: None,
            targets: Targets::default(),
            order_after: None,
            cand: Candidate::default(),
            explain: None,
        }
    }

    /// The campaign (or standalone voucher) redemption counts are scoped to.
    fn scope(&self) -> Option<(&'static str, String)> {
        if let Some(t) = &self.tier {
            return Some(("campaign_id", t.tier.campaign_id.clone()));
        }
        let v = self.voucher.as_ref()?;
        Some(match &v.voucher.campaign_id {
            Some(cid) => ("campaign_id", cid.clone()),
            None => ("voucher_id", v.voucher.id.clone()),
        })
    }
}

pub struct Evaluation {
    pub request_id: String,
    pub valid: bool,
    /// In application order.
    pub outcomes: Vec<Outcome>,
    pub calc_order: Value,
    pub order: Order,
    pub customer: Option<Customer>,
    pub promos: Arc<PromoSet>,
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
    /// `order.amount` as the redeemable's calculation mode sees it: the initial amount,
    /// or what the redeemables applied before it left.
    amount: i64,
    customer: Option<&'a Customer>,
    customer_metadata: &'a Map<String, Value>,
    redemption_metadata: &'a Map<String, Value>,
    counts: BTreeMap<&'static str, i64>,
    holder_ok: bool,
    items: &'a [ItemFacts],
    /// The customer's segment ids, read only when a rule asks.
    segments: Option<Value>,
}

impl Facts for RuleFacts<'_> {
    fn fact(&self, name: &str, property: Option<&str>) -> Option<Value> {
        match name {
            "order.amount" => Some(self.amount.into()),
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
            "customer.segment" => self.segments.clone(),
            other => self.counts.get(other).map(|n| Value::from(*n)),
        }
    }

    fn items(&self) -> &[ItemFacts] {
        self.items
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
/// campaign, and whether the request names its customer. `(col, scope_id)`: the campaign,
/// or the voucher when it stands alone.
#[allow(clippy::too_many_arguments)]
fn fetch_counts(
    (already, identified): (i64, bool),
    c: &mut dyn Conn,
    t: &Tenant,
    rules: &[CompiledRule],
    (col, scope_id): (&'static str, String),
    voucher_redeemed: i64,
    customer: Option<&Customer>,
    now: Timestamp,
) -> Result<BTreeMap<&'static str, i64>> {
    let mut out = BTreeMap::new();
    let names: std::collections::BTreeSet<String> = rules.iter().flat_map(|r| r.set.names()).collect();
    let p = t.project_id();
    let tz = t.timezone();
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
        // On PostgreSQL concurrent redemptions of one campaign's codes could each read the
        // count below a rule's limit and all commit; this lock, held to commit, makes the
        // next one read the count after this one's redemption.
        c.lock_key(&format!("redemption-count:{p}:{col}:{scope_id}"))?;
        let n = c
            .query_one(CAMPAIGN_COUNT_SQL, &[p.into(), col.into(), scope_id.clone().into()])?
            .int(0)?;
        out.insert("campaign.redemptions.count", n + already);
    }
    if names.contains("voucher.redemptions.count") {
        out.insert("voucher.redemptions.count", voucher_redeemed);
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

/// A campaign's (a standalone voucher's) successful redemptions: its slots' sum.
pub(crate) const CAMPAIGN_COUNT_SQL: &str =
    "SELECT CAST(COALESCE(SUM(succeeded), 0) AS BIGINT) FROM redemption_counts WHERE project_id = $1 AND scope = $2 AND scope_id = $3";

/// Slots a campaign's count is spread over on PostgreSQL.
const COUNT_SLOTS: i64 = 16;

/// Adds `delta` to the successful redemptions of a redemption's campaign (of its voucher,
/// for a standalone voucher): what `campaign.redemptions.count` reads. Every row counted
/// by it is a successful redemption inserted here, or one rolled back.
fn count_redemption(c: &mut dyn Conn, p: &str, campaign_id: Option<&str>, voucher_id: Option<&str>, delta: i64) -> Result<()> {
    let (scope, id) = match (campaign_id, voucher_id) {
        (Some(cid), _) => ("campaign_id", cid),
        (None, Some(vid)) => ("voucher_id", vid),
        (None, None) => return Ok(()),
    };
    let slot = if c.is_postgres() { rand::random_range(0..COUNT_SLOTS) } else { 0 };
    c.execute(
        "INSERT INTO redemption_counts (project_id, scope, scope_id, slot, succeeded) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (project_id, scope, scope_id, slot) DO UPDATE SET succeeded = redemption_counts.succeeded + excluded.succeeded",
        &[p.into(), scope.into(), id.into(), Val::Int(slot), Val::Int(delta)],
    )?;
    Ok(())
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

fn no_catalog(_: &str) -> Option<i64> {
    None
}

/// What every redeemable of one request is checked against.
struct Context<'a> {
    t: &'a Tenant,
    req: &'a CheckoutRequest,
    now: Timestamp,
    promos: &'a PromoSet,
    order: &'a Order,
    lines: &'a [tessera_domain::checkout::CartLine],
    customer: Option<&'a Customer>,
    customer_metadata: Map<String, Value>,
    redemption_metadata: Map<String, Value>,
    items: Vec<ItemFacts>,
    explain: bool,
    /// Which rules count (qualification scenarios narrow them).
    rule_scope: RuleScope,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RuleScope {
    All,
    /// AUDIENCE_ONLY: only rules about the customer.
    CustomerOnly,
    /// PRODUCTS, PRODUCTS_DISCOUNT: what the cart qualifies for, whoever buys it.
    NotCustomer,
}

impl RuleScope {
    fn of(scenario: &str) -> Self {
        match scenario {
            "AUDIENCE_ONLY" => RuleScope::CustomerOnly,
            "PRODUCTS" | "PRODUCTS_DISCOUNT" => RuleScope::NotCustomer,
            _ => RuleScope::All,
        }
    }

    fn admits(self, r: &CompiledRule) -> bool {
        match self {
            RuleScope::All => true,
            RuleScope::CustomerOnly => customer_rule(r),
            RuleScope::NotCustomer => !customer_rule(r),
        }
    }
}

fn customer_rule(r: &CompiledRule) -> bool {
    r.set.names().iter().all(|n| n.starts_with("customer."))
}

fn item_facts(lines: &[tessera_domain::checkout::CartLine]) -> Vec<ItemFacts> {
    lines
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
        .collect()
}

fn customer_metadata(customer: Option<&Customer>, req: &CheckoutRequest) -> Map<String, Value> {
    customer
        .map(|c| c.metadata.clone())
        .or_else(|| req.customer.as_ref().and_then(|i| i.metadata.clone().flatten()))
        .unwrap_or_default()
}

/// Phase one, in request order: find each redeemable and run the checks that do not
/// depend on the others (existence, active, schedule, quantity, balance).
fn resolve(c: &mut dyn Conn, cx: &Context<'_>, session_key: Option<&str>) -> Result<Vec<Outcome>> {
    let p = cx.t.project_id();
    let tz = cx.t.timezone();
    let now_s = format(cx.now);
    let mut out = Vec::with_capacity(cx.req.redeemables.len());
    let mut seen_vouchers = std::collections::BTreeSet::new();
    let mut seen_tiers = std::collections::BTreeSet::new();
    let schedule_status = |validity: &tessera_domain::validity::Validity, what: &str, id: &str| -> Option<Status> {
        match validity.check(cx.now, &tz) {
            Ok(()) => None,
            Err(NotValid::NotActiveYet) => Some(inapplicable(400, &format!("{what}_not_active"), &format!("{what} not active"), id)),
            Err(NotValid::Expired) => Some(inapplicable(400, &format!("{what}_expired"), &format!("{what} expired"), id)),
            Err(NotValid::OutsideTimeframe) => Some(inapplicable(
                400,
                &format!("{what}_not_active_now"),
                &format!("{what} not active now"),
                id,
            )),
        }
    };
    let mut push_tier = |out: &mut Vec<Outcome>, index: usize, id: &str, stack: Option<(&str, Option<String>)>| -> Result<()> {
        let mut o = Outcome::new(index, "promotion_tier", id);
        o.stack_id = stack.as_ref().map(|(s, _)| s.to_string());
        let Some(entry) = cx.promos.tier(id) else {
            o.status = inapplicable(
                404,
                "not_found",
                "Resource not found",
                &format!("Cannot find promotion_tier with id {id}"),
            );
            out.push(o);
            return Ok(());
        };
        if !seen_tiers.insert(id.to_string()) {
            return Err(StoreError::Invalid(InvalidInput {
                key: "duplicated_redeemables",
                message: "Duplicated redeemables detected".into(),
                details: format!("promotion tier {id} is listed twice"),
            }));
        }
        let extra = stack.and_then(|(_, cat)| cat);
        let (cats, h) = cx.promos.categorize(entry.categories.iter().cloned().chain(extra));
        o.cand = Candidate {
            categories: cats,
            category_hierarchy: h,
            tier_hierarchy: Some(entry.tier.hierarchy),
        };
        o.status = if !entry.tier.active || !entry.campaign.active {
            inapplicable(400, "promotion_tier_disabled", "promotion tier is disabled", id)
        } else if let Some(s) = schedule_status(&entry.campaign_validity, "campaign", id) {
            s
        } else if let Some(s) = schedule_status(&entry.validity, "promotion_tier", id) {
            s
        } else {
            Status::Applicable
        };
        o.tier = Some(entry.clone());
        out.push(o);
        Ok(())
    };
    for (index, r) in cx.req.redeemables.iter().enumerate() {
        match r.object.as_str() {
            "promotion_tier" => push_tier(&mut out, index, &r.id, None)?,
            "promotion_stack" => {
                let row = c.query_opt(
                    "SELECT data FROM promotion_stacks WHERE project_id = $1 AND id = $2",
                    &[p.into(), r.id.clone().into()],
                )?;
                let Some(row) = row else {
                    let mut o = Outcome::new(index, "promotion_stack", &r.id);
                    o.status = inapplicable(
                        404,
                        "not_found",
                        "Resource not found",
                        &format!("Cannot find promotion_stack with id {}", r.id),
                    );
                    out.push(o);
                    continue;
                };
                let stack: Value = row.json(0)?;
                let category = stack["category_id"].as_str().map(str::to_string);
                let ids: Vec<String> = stack["tiers"]["ids"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                for id in ids {
                    push_tier(&mut out, index, &id, Some((&r.id, category.clone())))?;
                }
            }
            "voucher" => {
                let mut o = Outcome::new(index, "voucher", &r.id);
                let Some(v) = find_voucher(c, cx.t, &r.id)? else {
                    o.status = inapplicable(
                        404,
                        "not_found",
                        "Resource not found",
                        &format!("Cannot find voucher with id {}", r.id),
                    );
                    out.push(o);
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
                let (cats, h) = cx.promos.categorize(
                    campaign
                        .as_ref()
                        .and_then(|c| c.category_id.clone())
                        .or(v.voucher.category_id.clone()),
                );
                o.cand = Candidate {
                    categories: cats,
                    category_hierarchy: h,
                    tier_hierarchy: None,
                };
                let code = v.voucher.code.clone();
                o.status = 'check: {
                    if !v.voucher.active || campaign.as_ref().is_some_and(|c| !c.active) {
                        break 'check inapplicable(400, "voucher_disabled", "voucher is disabled", &code);
                    }
                    let validity = v.voucher.schedule.validity().map_err(StoreError::Invalid)?;
                    if let Some(s) = schedule_status(&validity, "voucher", &code) {
                        break 'check s;
                    }
                    let (held_uses, held_credits) = held_by_others(c, p, &v.voucher.id, session_key, &now_s)?;
                    if let Some(q) = v.voucher.redemption_quantity {
                        if v.counters.redeemed_quantity + held_uses >= q {
                            break 'check inapplicable(400, "quantity_exceeded", "quantity exceeded", &code);
                        }
                    }
                    match v.voucher.kind {
                        VoucherType::DiscountVoucher => {
                            o.benefit = Some(match &v.voucher.discount {
                                Some(d) => Benefit::Discount {
                                    rule: d.rule().map_err(StoreError::Invalid)?,
                                    targets: Targets::default(),
                                },
                                None => Benefit::Nothing,
                            })
                        }
                        VoucherType::GiftVoucher => {
                            let available = (v.counters.gift_balance.unwrap_or(0) - held_credits).max(0);
                            let requested = r.gift.as_ref().and_then(|g| g.credits);
                            if requested.is_some_and(|q| q > available) || available == 0 {
                                break 'check inapplicable(400, "gift_amount_exceeded", "gift amount exceeded", &code);
                            }
                            o.benefit = Some(Benefit::Gift {
                                requested,
                                balance: available,
                            });
                        }
                    }
                    Status::Applicable
                };
                o.voucher = Some(Box::new(v));
                o.campaign = campaign.map(Box::new);
                out.push(o);
            }
            other => {
                let mut o = Outcome::new(index, other, &r.id);
                o.status = inapplicable(
                    400,
                    "invalid_redeemables",
                    "Invalid redeemables",
                    &format!("{other} redeemables are not supported"),
                );
                out.push(o);
            }
        }
    }
    Ok(out)
}

fn rules_failure(rule: &CompiledRule, msg: Option<String>, subject: &str) -> Status {
    let message = msg.or_else(|| {
        rule.rule
            .error
            .as_ref()
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let key = rule_key(std::slice::from_ref(rule));
    Status::Inapplicable {
        code: 400,
        key: key.into(),
        message: if key == "customer_rules_violated" {
            "customer does not match validation rules".into()
        } else {
            "order does not match validation rules".into()
        },
        details: format!(
            "{subject} cannot be redeemed because of violated validation rules: {}",
            rule.rule.id
        ),
        rule_message: message,
    }
}

/// A redeemable's validation rules against the order as `amount` describes it: on
/// success, the targets the rules name and the rules that passed; on failure, the
/// INAPPLICABLE status and the rules that passed before it. `already`: redeemables of the
/// same campaign applied earlier in this request.
#[allow(clippy::type_complexity)]
fn check_rules(
    c: &mut dyn Conn,
    cx: &Context<'_>,
    o: &Outcome,
    amount: i64,
    already: i64,
    budget: &mut u64,
) -> Result<std::result::Result<(Targets, Vec<String>), (Status, Vec<String>)>> {
    let p = cx.t.project_id();
    // A tier's rules are compiled in the cached set; a voucher's are read now.
    let owned;
    let rules: &[CompiledRule] = match (&o.tier, &o.voucher) {
        (Some(t), _) => &t.rules,
        (None, Some(v)) => {
            let mut r = rules_for(c, p, &v.voucher.validation_rules, &[&v.voucher.id])?;
            if let Some(camp) = &o.campaign {
                r.extend(rules_for(c, p, &camp.validation_rules, &[&camp.id])?);
            }
            owned = r;
            &owned
        }
        (None, None) => &[],
    };
    let holder_ok = o
        .voucher
        .as_ref()
        .is_some_and(|v| v.voucher.holder_id.is_some() && v.voucher.holder_id.as_deref() == cx.customer.map(|c| c.id.as_str()));
    let redeemed = o.voucher.as_ref().map(|v| v.counters.redeemed_quantity).unwrap_or(0);
    let subject = o.voucher.as_ref().map(|v| v.voucher.code.as_str()).unwrap_or(&o.id);
    let scope = || o.scope().unwrap_or(("campaign_id", String::new()));
    run_rules(
        c,
        cx,
        rules,
        RuleTarget {
            amount,
            already,
            redeemed,
            holder_ok,
            subject,
        },
        scope,
        budget,
    )
}

/// What `run_rules` needs to know about the redeemable besides its rules.
struct RuleTarget<'a> {
    amount: i64,
    already: i64,
    redeemed: i64,
    holder_ok: bool,
    subject: &'a str,
}

#[allow(clippy::type_complexity)]
fn run_rules(
    c: &mut dyn Conn,
    cx: &Context<'_>,
    rules: &[CompiledRule],
    r: RuleTarget<'_>,
    scope: impl FnOnce() -> (&'static str, String),
    budget: &mut u64,
) -> Result<std::result::Result<(Targets, Vec<String>), (Status, Vec<String>)>> {
    let mut targets = Targets::default();
    let mut passed = Vec::new();
    if rules.is_empty() {
        return Ok(Ok((targets, passed)));
    }
    let identified = cx.customer.is_some() || cx.req.customer.as_ref().is_some_and(|c| c.id.is_some() || c.source_id.is_some());
    let counts = if rules.iter().any(|r| r.needs_counts) {
        fetch_counts((r.already, identified), c, cx.t, rules, scope(), r.redeemed, cx.customer, cx.now)?
    } else {
        BTreeMap::new()
    };
    // A customer the request names but Tessera does not know yet is in no segment.
    let segments = match cx.customer {
        Some(cust) if rules.iter().any(|r| r.reads_segments) => {
            Some(Value::from(crate::ops::segments::memberships(c, cx.t.project_id(), &cust.id)?))
        }
        _ => None,
    };
    let facts = RuleFacts {
        segments,
        order: cx.order,
        amount: r.amount,
        customer: cx.customer,
        customer_metadata: &cx.customer_metadata,
        redemption_metadata: &cx.redemption_metadata,
        counts,
        holder_ok: r.holder_ok,
        items: &cx.items,
    };
    for rule in rules.iter().filter(|r| cx.rule_scope.admits(r)) {
        match rule.set.evaluate_within(&facts, budget) {
            // The names of passed rules are for explanations only.
            Ok(Verdict::Pass) if cx.explain => passed.push(rule.rule.id.clone()),
            Ok(Verdict::Pass) => {}
            Ok(Verdict::Fail(msg)) => {
                return Ok(Err((rules_failure(rule, msg, r.subject), passed)));
            }
            Err(_) => {
                let status = inapplicable(
                    400,
                    "rule_evaluation_budget_exceeded",
                    "Validation rule too expensive",
                    &format!("rule {} exceeded its evaluation budget", rule.rule.id),
                );
                return Ok(Err((status, passed)));
            }
        }
        if let Some(a) = &rule.rule.applicable_to {
            targets.included.extend(a.included.iter().cloned());
            targets.excluded.extend(a.excluded.iter().cloned());
            targets.included_all |= a.included_all;
        }
    }
    Ok(Ok((targets, passed)))
}

/// What the redeemable brings to the cart, aimed at the targets its rules name.
fn benefit_of(o: &mut Outcome, targets: &Targets) -> Result<Benefit> {
    Ok(match (&o.tier, o.benefit.take()) {
        (Some(t), _) => Benefit::Discount {
            rule: t.discount.clone(),
            targets: targets.clone(),
        },
        (None, Some(Benefit::Discount { rule, .. })) => Benefit::Discount {
            rule,
            targets: targets.clone(),
        },
        (None, Some(b)) => b,
        (None, None) => Benefit::Nothing,
    })
}

/// Phase two, in application order: validation rules (on the order as the calculation
/// mode sees it), stacking limits, the discount, the no-effect rule.
/// `exclusive_by`: the exclusive redeemable that, when valid, shuts out the others.
fn apply_in_order<'c>(
    c: &mut dyn Conn,
    cx: &Context<'_>,
    mut outcomes: Vec<Outcome>,
    exclusive_by: Option<String>,
) -> Result<(Vec<Outcome>, Calculator<'c>, bool)> {
    let rules_cfg = &cx.promos.rules;
    let mut calc = Calculator::new(cx.lines.to_vec(), &no_catalog);
    let mut gate = Gate::new(rules_cfg, exclusive_by);
    let mut budget = tessera_domain::rules::EVALUATION_BUDGET;
    // Applicable redeemables so far per campaign (or standalone voucher): limits that count
    // redemptions must see the ones this request is about to make.
    let mut in_request: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let mut exclusive_applied = false;
    for (seq, o) in outcomes.iter_mut().enumerate() {
        if !matches!(o.status, Status::Applicable) {
            continue;
        }
        let initial = rules_cfg.initial_amount_for(&o.cand.categories);
        let amount = if initial {
            calc.lines.iter().map(|l| l.amount).sum()
        } else {
            calc.remaining_total()
        };
        let already = o.scope().and_then(|scope| in_request.get(&scope.1).copied()).unwrap_or(0);
        let (targets, passed) = match check_rules(c, cx, o, amount, already, &mut budget)? {
            Ok(ok) => ok,
            Err((failed, passed)) => {
                o.status = failed;
                if cx.explain {
                    o.explain = Some(json!({"sequence": seq, "order_amount_seen": amount, "rules_passed": passed}));
                }
                continue;
            }
        };
        if let Err(skip) = gate.check(&o.cand) {
            if cx.explain {
                o.explain = Some(json!({"sequence": seq, "stacking_rule": skip.explain(rules_cfg), "rules_passed": passed}));
            }
            o.status = Status::Skipped {
                key: skip.key().into(),
                message: skip.message().into(),
            };
            continue;
        }
        let benefit = benefit_of(o, &targets)?;
        let mode = PreviewMode {
            initial_amount: initial,
            once: rules_cfg.redeemables_products_application_mode == ProductsMode::Once,
        };
        let applied = calc.preview_with(&benefit, mode);
        let no_effect = applied.total() == 0 && applied.gift_credits == 0 && applied.added.is_empty();
        if no_effect && rules_cfg.skip_no_effect(&o.cand.categories) {
            let skip = Skip::NoEffect;
            if cx.explain {
                o.explain = Some(json!({"sequence": seq, "stacking_rule": skip.explain(rules_cfg), "rules_passed": passed}));
            }
            o.status = Status::Skipped {
                key: skip.key().into(),
                message: skip.message().into(),
            };
            o.benefit = Some(benefit);
            continue;
        }
        calc.commit(&applied);
        gate.record(&o.cand);
        exclusive_applied |= gate.is_exclusive(&o.cand);
        if let Some(scope) = o.scope() {
            *in_request.entry(scope.1).or_default() += 1;
        }
        if cx.explain {
            let lines: Vec<Value> = calc
                .lines
                .iter()
                .zip(applied.allocation.iter())
                .filter(|(_, share)| **share > 0)
                .map(|(l, share)| {
                    json!({"product_id": l.product_id, "sku_id": l.sku_id, "source_id": l.item.source_id, "itemized": l.itemized, "discount": share})
                })
                .collect();
            o.explain = Some(json!({
                "sequence": seq,
                "rules_passed": passed,
                "calculation": if initial { "INITIAL_AMOUNT" } else { "DISCOUNTED_AMOUNT" },
                "order_amount_seen": amount,
                "discount": applied.total(),
                "gift_credits": applied.gift_credits,
                "lines": lines,
                "categories": o.cand.categories,
            }));
        }
        o.targets = targets;
        o.applied = Some(applied);
        o.benefit = Some(benefit);
        let mut after = order_json(&calc, cx.order, cx.customer);
        // The order as it stands after this redeemable; its "applied" amounts are this
        // redeemable's own share, so per-redemption statistics do not count earlier ones.
        if let Some(a) = &o.applied {
            let items: i64 = a.item_discounts.iter().sum();
            after["applied_discount_amount"] = json!(a.order_discount);
            after["items_applied_discount_amount"] = json!(items);
            after["total_applied_discount_amount"] = json!(a.order_discount + items);
        }
        o.order_after = Some(after);
    }
    Ok((outcomes, calc, exclusive_applied))
}

pub fn evaluate(
    c: &mut dyn Conn,
    t: &Tenant,
    promos: Arc<PromoSet>,
    req: &CheckoutRequest,
    now: Timestamp,
    session_key: Option<&str>,
    request_id: &str,
) -> Result<Evaluation> {
    let p = t.project_id();
    let rules_cfg = promos.rules.clone();
    if req.redeemables.len() > rules_cfg.redeemables_limit as usize {
        return Err(StoreError::Invalid(InvalidInput {
            key: "invalid_redeemables",
            message: "Invalid redeemables".into(),
            details: format!(
                "the project's stacking rules allow at most {} redeemables per request",
                rules_cfg.redeemables_limit
            ),
        }));
    }
    let customer = resolve_customer(c, p, req)?;
    let (order, _) = resolve_order(c, p, req)?;
    let lines = cart(&order.items, Some(order.amount));
    let cx = Context {
        t,
        req,
        now,
        promos: &promos,
        order: &order,
        lines: &lines,
        customer: customer.as_ref(),
        customer_metadata: customer_metadata(customer.as_ref(), req),
        redemption_metadata: req.metadata.clone().unwrap_or_default(),
        items: item_facts(&lines),
        explain: req.expands("explain"),
        rule_scope: RuleScope::All,
    };
    let resolved = resolve(c, &cx, session_key)?;
    let cands: Vec<Candidate> = resolved.iter().map(|o| o.cand.clone()).collect();
    let order_idx = application_order(&rules_cfg, &cands);
    let mut ordered: Vec<Outcome> = Vec::with_capacity(resolved.len());
    let mut slots: Vec<Option<Outcome>> = resolved.into_iter().map(Some).collect();
    for i in order_idx {
        if let Some(o) = slots[i].take() {
            ordered.push(o);
        }
    }
    // An exclusive redeemable that passes its own checks shuts out the others; if none of
    // them survives its rules, the request is decided again without exclusivity.
    let gate = Gate::new(&rules_cfg, None);
    let exclusive_by = ordered
        .iter()
        .find(|o| matches!(o.status, Status::Applicable) && gate.is_exclusive(&o.cand))
        .map(|o| o.id.clone());
    let (mut outcomes, calc, exclusive_applied) = apply_in_order(c, &cx, ordered.clone(), exclusive_by.clone())?;
    let (mut outcomes, calc) = if exclusive_by.is_some() && !exclusive_applied {
        let (o, calc, _) = apply_in_order(c, &cx, ordered, None)?;
        (o, calc)
    } else {
        outcomes.shrink_to_fit();
        (outcomes, calc)
    };
    let applicable = outcomes.iter().filter(|o| matches!(o.status, Status::Applicable)).count();
    let any_inapplicable = outcomes.iter().any(|o| matches!(o.status, Status::Inapplicable { .. }));
    let valid = applicable > 0 && (rules_cfg.redeemables_application_mode == ApplicationMode::Partial || !any_inapplicable);
    if !valid {
        for o in &mut outcomes {
            if matches!(o.status, Status::Applicable) {
                let skip = Skip::PrecedingValidationFailed;
                o.status = Status::Skipped {
                    key: skip.key().into(),
                    message: skip.message().into(),
                };
                if cx.explain {
                    o.explain = Some(json!({"stacking_rule": skip.explain(&rules_cfg)}));
                }
            }
        }
    }
    let calc_order = if valid {
        order_json(&calc, &order, customer.as_ref())
    } else {
        // Nothing applies: the order as it came in.
        order_json(&Calculator::new(lines.clone(), &no_catalog), &order, customer.as_ref())
    };
    drop(cx);
    Ok(Evaluation {
        request_id: request_id.to_string(),
        valid,
        outcomes,
        calc_order,
        order,
        customer,
        promos,
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
    // `json!` copies a `Value` it is given by serializing it again: the items go in after.
    let mut v = json!({
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
        "metadata": order.metadata,
        "customer_id": customer.map(|c| c.id.clone()),
        "customer": customer.map(|c| json!({"id": c.id, "object": "customer"})),
        "object": "order",
    });
    v["items"] = Value::Array(items);
    v
}

fn error_json(
    code: u16,
    key: &str,
    message: &str,
    details: &str,
    rule_message: &Option<String>,
    (resource_id, resource_type): (&str, &str),
    request_id: &str,
) -> Value {
    let mut e = json!({"code": code, "key": key, "message": message, "details": details, "request_id": request_id});
    if key == "not_found" {
        e["resource_id"] = json!(resource_id);
        e["resource_type"] = json!(resource_type);
    }
    if let Some(m) = rule_message {
        e["error"] = json!({"message": m});
    }
    e
}

fn redeemable_json(o: &Outcome, request_id: &str, promos: &PromoSet) -> Value {
    serde_json::to_value(RedeemableView::new(o, request_id, promos)).unwrap_or(Value::Null)
}

/// One redeemable of a validation or redemption answer, borrowed from its outcome and
/// written straight to the response: building `Value` trees for it, copying them into
/// lists and serializing them afterwards was a sixth of a validation's CPU.
#[derive(Serialize)]
struct RedeemableView<'a> {
    id: &'a str,
    object: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    promotion_stack_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    explain: Option<&'a Value>,
    status: &'static str,
    result: RedeemableResult<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    order: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    applicable_to: Option<TargetList<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inapplicable_to: Option<TargetList<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    campaign_id: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    campaign_name: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    banner: Option<&'a Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    categories: Option<Vec<Value>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum RedeemableResult<'a> {
    Gift {
        gift: GiftResult,
    },
    Discount {
        discount: &'a Option<tessera_domain::discount::Discount>,
    },
    TierDiscount {
        discount: &'a tessera_domain::discount::Discount,
    },
    Empty {},
    Error {
        error: Value,
    },
    Details {
        details: SkipDetails<'a>,
    },
}

#[derive(Serialize)]
struct GiftResult {
    credits: i64,
    balance: i64,
}

#[derive(Serialize)]
struct SkipDetails<'a> {
    key: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct TargetList<'a> {
    data: &'a [tessera_domain::checkout::Target],
    total: usize,
    object: &'static str,
    data_ref: &'static str,
}

impl<'a> TargetList<'a> {
    fn new(data: &'a [tessera_domain::checkout::Target]) -> Self {
        TargetList {
            data,
            total: data.len(),
            object: "list",
            data_ref: "data",
        }
    }
}

impl<'a> RedeemableView<'a> {
    fn new(o: &'a Outcome, request_id: &str, promos: &PromoSet) -> Self {
        let mut v = RedeemableView {
            id: &o.id,
            object: &o.object,
            promotion_stack_id: o.stack_id.as_deref(),
            explain: o.explain.as_ref(),
            status: "",
            result: RedeemableResult::Empty {},
            order: None,
            applicable_to: None,
            inapplicable_to: None,
            metadata: None,
            campaign_id: None,
            campaign_name: None,
            name: None,
            banner: None,
            categories: None,
        };
        match &o.status {
            Status::Applicable => {
                v.status = "APPLICABLE";
                v.result = match (&o.benefit, &o.voucher) {
                    (Some(Benefit::Gift { .. }), Some(rec)) => RedeemableResult::Gift {
                        gift: GiftResult {
                            credits: o.applied.as_ref().map(|a| a.gift_credits).unwrap_or(0),
                            balance: rec.counters.gift_balance.unwrap_or(0),
                        },
                    },
                    (_, Some(rec)) => RedeemableResult::Discount {
                        discount: &rec.voucher.discount,
                    },
                    _ => match &o.tier {
                        Some(t) => RedeemableResult::TierDiscount {
                            discount: &t.tier.action.discount,
                        },
                        None => RedeemableResult::Empty {},
                    },
                };
                v.order = o.order_after.as_ref();
                v.applicable_to = Some(TargetList::new(&o.targets.included));
                v.inapplicable_to = Some(TargetList::new(&o.targets.excluded));
                if let Some(rec) = &o.voucher {
                    v.metadata = Some(&rec.voucher.metadata);
                    v.campaign_id = Some(rec.voucher.campaign_id.as_deref());
                    v.campaign_name = Some(rec.voucher.campaign.as_deref());
                }
                if let Some(t) = &o.tier {
                    v.metadata = Some(&t.tier.metadata);
                    v.campaign_id = Some(Some(&t.tier.campaign_id));
                    v.campaign_name = Some(Some(&t.campaign.name));
                    v.name = Some(&t.tier.name);
                    v.banner = Some(&t.tier.banner);
                }
                v.categories = Some(promos.category_views(&o.cand.categories));
            }
            Status::Inapplicable {
                code,
                key,
                message,
                details,
                rule_message,
            } => {
                v.status = "INAPPLICABLE";
                v.result = RedeemableResult::Error {
                    error: error_json(*code, key, message, details, rule_message, (&o.id, &o.object), request_id),
                };
            }
            Status::Skipped { key, message } => {
                v.status = "SKIPPED";
                v.result = RedeemableResult::Details {
                    details: SkipDetails { key, message },
                };
            }
        }
        v
    }
}

/// A validation's answer, written once from the evaluation.
#[derive(Serialize)]
struct ValidationView<'a> {
    id: String,
    valid: bool,
    redeemables: Vec<&'a RedeemableView<'a>>,
    skipped_redeemables: Vec<&'a RedeemableView<'a>>,
    inapplicable_redeemables: Vec<&'a RedeemableView<'a>>,
    tracking_id: &'a str,
    stacking_rules: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    order: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<&'a Value>,
}

fn with_validation_view<R>(e: &Evaluation, tracking_id: &str, session: Option<&Value>, f: impl FnOnce(&ValidationView<'_>) -> R) -> R {
    let views: Vec<RedeemableView<'_>> = e
        .outcomes
        .iter()
        .map(|o| RedeemableView::new(o, &e.request_id, &e.promos))
        .collect();
    let with = |status: &str| views.iter().filter(|r| r.status == status).collect::<Vec<_>>();
    let view = ValidationView {
        id: new_id("valid"),
        valid: e.valid,
        // Voucherify lists every redeemable under `redeemables` when the request fails.
        redeemables: if e.valid { with("APPLICABLE") } else { views.iter().collect() },
        skipped_redeemables: with("SKIPPED"),
        inapplicable_redeemables: with("INAPPLICABLE"),
        tracking_id,
        stacking_rules: stacking_rules_json(&e.promos.rules),
        order: e.valid.then_some(&e.calc_order),
        session,
    };
    f(&view)
}

/// The validation response.
pub fn validation_json(e: &Evaluation, tracking_id: &str, session: Option<Value>) -> Value {
    with_validation_view(e, tracking_id, session.as_ref(), |v| serde_json::to_value(v).unwrap_or(Value::Null))
}

/// The validation response as JSON text, for the API to send as it is.
pub fn validation_text(e: &Evaluation, tracking_id: &str, session: Option<&Value>) -> Result<String> {
    with_validation_view(e, tracking_id, session, |v| serde_json::to_string(v)).map_err(|e| StoreError::Internal(e.to_string()))
}

fn tracking_id(req: &CheckoutRequest, customer: Option<&Customer>) -> String {
    req.tracking_id
        .clone()
        .or_else(|| customer.and_then(|c| c.source_id.clone()))
        .or_else(|| req.customer.as_ref().and_then(|c| c.source_id.clone()))
        .unwrap_or_else(|| new_id("track"))
}

/// The customer as a redemption (and an activity entry) shows them: Voucherify's
/// `SimpleCustomer`.
pub(crate) fn simple_customer(c: &Customer) -> Value {
    serde_json::to_value(SimpleCustomer::new(c)).unwrap_or(Value::Null)
}

#[derive(Serialize)]
struct SimpleCustomer<'a> {
    id: &'a str,
    source_id: &'a Option<String>,
    name: &'a Option<String>,
    email: &'a Option<String>,
    metadata: &'a Map<String, Value>,
    object: &'static str,
}

impl<'a> SimpleCustomer<'a> {
    fn new(c: &'a Customer) -> Self {
        SimpleCustomer {
            id: &c.id,
            source_id: &c.source_id,
            name: &c.name,
            email: &c.email,
            metadata: &c.metadata,
            object: "customer",
        }
    }
}

#[derive(Serialize)]
struct Channel<'a> {
    channel_id: &'a str,
    channel_type: &'static str,
}

/// The order a redeemable left behind, shown with the stored order's id and status:
/// written straight from the evaluation's tree instead of from an edited copy of it.
struct OrderAs<'a> {
    base: &'a Value,
    id: &'a str,
    status: OrderStatus,
}

impl Serialize for OrderAs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(fields) = self.base else {
            return self.base.serialize(s);
        };
        let mut map = s.serialize_map(None)?;
        let (mut id, mut status) = (false, false);
        for (k, v) in fields {
            match k.as_str() {
                "id" => {
                    map.serialize_entry(k, self.id)?;
                    id = true;
                }
                "status" => {
                    map.serialize_entry(k, &self.status)?;
                    status = true;
                }
                _ => map.serialize_entry(k, v)?,
            }
        }
        if !id {
            map.serialize_entry("id", self.id)?;
        }
        if !status {
            map.serialize_entry("status", &self.status)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct GiftAmount {
    amount: i64,
}

#[derive(Serialize)]
struct SessionRef<'a> {
    key: &'a str,
}

/// A voucher's successful redemption as it is stored, sent as an event and answered:
/// serialized once, from borrowed parts, on the single writer's thread.
#[derive(Serialize)]
struct VoucherRedemption<'a> {
    id: &'a str,
    object: &'static str,
    date: &'a str,
    customer_id: Option<&'a str>,
    tracking_id: &'a str,
    metadata: &'a Map<String, Value>,
    amount: i64,
    redemption: Option<&'a str>,
    result: &'static str,
    status: &'static str,
    order: Option<OrderAs<'a>>,
    channel: &'a Channel<'a>,
    customer: Option<SimpleCustomer<'a>>,
    related_object_type: &'static str,
    related_object_id: &'a str,
    voucher: VoucherView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gift: Option<GiftAmount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<SessionRef<'a>>,
}

/// What a redemption request produced.
pub enum RedeemResult {
    /// The response body, already JSON: its redemptions are the same text as their
    /// stored records, so they are not built and serialized a second time.
    Succeeded(String),
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
fn lock_vouchers(c: &mut dyn Conn, t: &Tenant, req: &CheckoutRequest, promos: &PromoSet) -> Result<()> {
    // SQLite's one writer already runs every write alone, and its lock_key does nothing:
    // finding the keys would be reads for nothing on the hottest path there is.
    if !c.is_postgres() {
        return Ok(());
    }
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
        // Tiers have no counter; only per-customer limits need serializing.
        let Some(cust) = &customer else { continue };
        let tiers: Vec<String> = match r.object.as_str() {
            "promotion_tier" => vec![r.id.clone()],
            "promotion_stack" => match c.query_opt(
                "SELECT data FROM promotion_stacks WHERE project_id = $1 AND id = $2",
                &[p.into(), r.id.clone().into()],
            )? {
                Some(row) => {
                    let stack: Value = row.json(0)?;
                    stack["tiers"]["ids"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                        .unwrap_or_default()
                }
                None => Vec::new(),
            },
            _ => Vec::new(),
        };
        for id in tiers {
            if let Some(entry) = promos.tier(&id) {
                keys.push(format!("campaign-customer:{p}:{}:{cust}", entry.tier.campaign_id));
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

fn redeem_in_tx(
    c: &mut dyn Conn,
    t: &Tenant,
    req: &CheckoutRequest,
    request_id: &str,
    cache: &crate::ops::promotions::Cache,
) -> Result<RedeemResult> {
    let p = t.project_id();
    let now = tessera_domain::time::now();
    let now_s = format(now);
    let promos = cache.get(c, p)?;
    lock_vouchers(c, t, req, &promos)?;
    let session_key = req.session.as_ref().and_then(|s| s.key.clone());
    let mut e = evaluate(c, t, promos, req, now, session_key.as_deref(), request_id)?;
    // The customer named in the request is created or updated with the redemption.
    let customer = match &req.customer {
        Some(input) if input.id.is_some() || input.source_id.is_some() => {
            let read_by_source = match (&input.id, &input.source_id, &e.customer) {
                (None, Some(s), Some(found)) if !c.is_postgres() && found.source_id.as_ref() == Some(s) => Some(found.clone()),
                _ => None,
            };
            Some(match read_by_source {
                Some(found) => customers::upsert_for_checkout_read(c, p, input.clone(), found)?,
                None => customers::upsert_for_checkout(c, p, input.clone())?,
            })
        }
        _ => e.customer.clone(),
    };
    let tracking = tracking_id(req, customer.as_ref());
    let channel = Channel {
        channel_id: t.app_id(),
        channel_type: "API",
    };
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
                "voucher": o.voucher.as_deref().map(views::voucher),
                "promotion_tier": o.tier.as_ref().map(|t| tier_json(&t.tier, &t.campaign, &e.promos.categories, &e.promos.rules)),
            });
            c.execute(
                "INSERT INTO redemptions (project_id, id, object, voucher_id, campaign_id, customer_id, tracking_id, result, status, created_at, data, promotion_tier_id) \
                 VALUES ($1, $2, 'redemption', $3, $4, $5, $6, 'FAILURE', 'FAILED', $7, $8, $9)",
                &[
                    p.into(),
                    id.clone().into(),
                    o.voucher.as_ref().map(|v| v.voucher.id.clone()).into(),
                    o.voucher
                        .as_ref()
                        .and_then(|v| v.voucher.campaign_id.clone())
                        .or(o.tier.as_ref().map(|t| t.tier.campaign_id.clone()))
                        .into(),
                    customer.as_ref().map(|c| c.id.clone()).into(),
                    tracking.clone().into(),
                    now_s.clone().into(),
                    body.to_string().into(),
                    o.tier.as_ref().map(|t| t.tier.id.clone()).into(),
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
    let no_metadata = Map::new();
    let metadata = req.metadata.as_ref().unwrap_or(&no_metadata);
    let customer_id = customer.as_ref().map(|c| c.id.as_str());
    // Each child's stored JSON (also its event and its part of the response), its id
    // and what it redeemed.
    let mut children: Vec<(String, String, String)> = Vec::new();
    for o in &applicable {
        if let (Some(tier), Some(a)) = (&o.tier, &o.applied) {
            let id = new_id("r");
            let body = json!({
                "id": id, "object": "redemption", "date": now_s, "customer_id": customer.as_ref().map(|c| c.id.clone()),
                "tracking_id": tracking, "metadata": req.metadata.clone().unwrap_or_default(), "amount": 0,
                "redemption": parent_id, "result": "SUCCESS", "status": "SUCCEEDED",
                "order": o.order_after.clone().map(|mut ord| { ord["id"] = json!(order.id); ord["status"] = json!(order.status); ord }),
                "channel": channel, "customer": customer.as_ref().map(simple_customer),
                "related_object_type": "promotion_tier", "related_object_id": tier.tier.id,
                "promotion_tier": tier_json(&tier.tier, &tier.campaign, &e.promos.categories, &e.promos.rules),
            });
            let data = body.to_string();
            c.execute(
                "INSERT INTO redemptions (project_id, id, object, parent_id, campaign_id, customer_id, order_id, tracking_id, result, status, amount, discount_amount, order_amount, created_at, data, promotion_tier_id) \
                 VALUES ($1, $2, 'redemption', $3, $4, $5, $6, $7, 'SUCCESS', 'SUCCEEDED', 0, $8, $9, $10, $11, $12)",
                &[
                    p.into(),
                    id.clone().into(),
                    parent_id.clone().into(),
                    tier.tier.campaign_id.clone().into(),
                    customer.as_ref().map(|c| c.id.clone()).into(),
                    order.id.clone().into(),
                    tracking.clone().into(),
                    a.total().into(),
                    order.amount.into(),
                    now_s.clone().into(),
                    data.clone().into(),
                    tier.tier.id.clone().into(),
                ],
            )?;
            count_redemption(c, p, Some(&tier.tier.campaign_id), None, 1)?;
            outbox::emit_json(c, p, "redemption.succeeded", &id, data.clone())?;
            children.push((data, id, tier.tier.id.clone()));
            continue;
        }
        let (Some(rec), Some(a)) = (&o.voucher, &o.applied) else { continue };
        let credits = a.gift_credits;
        let updated = c.query_opt(
            "UPDATE vouchers SET redeemed_quantity = redeemed_quantity + 1, redeemed_amount = redeemed_amount + $1, \
             gift_balance = CASE WHEN gift_balance IS NULL THEN NULL ELSE gift_balance - $1 END \
             WHERE project_id = $2 AND id = $3 AND (quantity IS NULL OR redeemed_quantity < quantity) \
             AND (gift_balance IS NULL OR gift_balance >= $1) RETURNING gift_balance, redeemed_quantity, redeemed_amount",
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
        // The voucher as it is now: what was read under the lock, with the counters the
        // guarded update returned (reading it again cost a query and a document parse).
        let mut fresh = (**rec).clone();
        fresh.counters.gift_balance = row.opt_int(0)?;
        fresh.counters.redeemed_quantity = row.int(1)?;
        fresh.counters.redeemed_amount = row.int(2)?;
        let body = VoucherRedemption {
            id: &id,
            object: "redemption",
            date: &now_s,
            customer_id,
            tracking_id: &tracking,
            metadata,
            amount: credits,
            redemption: parent_id.as_deref(),
            result: "SUCCESS",
            status: "SUCCEEDED",
            order: o.order_after.as_ref().map(|base| OrderAs {
                base,
                id: &order.id,
                status: order.status,
            }),
            channel: &channel,
            customer: customer.as_ref().map(SimpleCustomer::new),
            related_object_type: "voucher",
            related_object_id: &rec.voucher.id,
            voucher: VoucherView::new(&fresh),
            gift: (fresh.voucher.kind == VoucherType::GiftVoucher).then_some(GiftAmount { amount: credits }),
            session: session_key.as_deref().map(|key| SessionRef { key }),
        };
        let data = serde_json::to_string(&body).map_err(|e| StoreError::Internal(e.to_string()))?;
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
                data.clone().into(),
                order.amount.into(),
            ],
        )?;
        count_redemption(c, p, rec.voucher.campaign_id.as_deref(), Some(&rec.voucher.id), 1)?;
        outbox::emit_json(c, p, "redemption.succeeded", &id, data.clone())?;
        children.push((data, id, rec.voucher.id.clone()));
    }
    save_order(c, p, &order)?;
    let order_view = {
        let mut o = std::mem::take(&mut e.calc_order);
        o["id"] = json!(order.id);
        o["status"] = json!(order.status);
        o["redemptions"] = match &parent_id {
            Some(pid) => {
                json!({pid.clone(): {"date": now_s, "related_object_type": "redemption", "related_object_id": pid, "stacked": children.iter().map(|(_, id, _)| id.as_str()).collect::<Vec<_>>()}})
            }
            None => Value::Object(
                children
                    .iter()
                    .map(|(_, id, related)| {
                        (
                            id.clone(),
                            json!({"date": now_s, "related_object_type": "voucher", "related_object_id": related}),
                        )
                    })
                    .collect(),
            ),
        };
        o
    };
    let listed = |pick: fn(&Status) -> bool| {
        let views: Vec<RedeemableView<'_>> = e
            .outcomes
            .iter()
            .filter(|o| pick(&o.status))
            .map(|o| RedeemableView::new(o, &e.request_id, &e.promos))
            .collect();
        serde_json::to_string(&views).map_err(|e| StoreError::Internal(e.to_string()))
    };
    let inapplicable = listed(|s| matches!(s, Status::Inapplicable { .. }))?;
    let skipped = listed(|s| matches!(s, Status::Skipped { .. }))?;
    let parent = match &parent_id {
        Some(pid) => {
            let parent = json!({
                "id": pid, "object": "redemption", "date": now_s, "customer_id": customer.as_ref().map(|c| c.id.clone()),
                "tracking_id": tracking, "metadata": req.metadata.clone().unwrap_or_default(), "amount": 0, "redemption": null,
                "result": "SUCCESS", "status": "SUCCEEDED", "order": order_view, "channel": channel,
                "customer": customer.as_ref().map(simple_customer), "related_object_type": "redemption", "related_object_id": pid,
            })
            .to_string();
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
                    parent.clone().into(),
                ],
            )?;
            outbox::emit_json(c, p, "redemption.succeeded", pid, parent.clone())?;
            Some(parent)
        }
        None => None,
    };
    // The response is assembled as text around the children's stored JSON.
    let order_text = order_view.to_string();
    let mut out = String::with_capacity(
        children.iter().map(|(d, _, _)| d.len() + 1).sum::<usize>()
            + order_text.len()
            + inapplicable.len()
            + skipped.len()
            + parent.as_ref().map_or(0, String::len)
            + 120,
    );
    out.push_str("{\"redemptions\":[");
    for (i, (data, _, _)) in children.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(data);
    }
    out.push_str("],\"order\":");
    out.push_str(&order_text);
    out.push_str(",\"inapplicable_redeemables\":");
    out.push_str(&inapplicable);
    out.push_str(",\"skipped_redeemables\":");
    out.push_str(&skipped);
    if let Some(parent) = &parent {
        out.push_str(",\"parent_redemption\":");
        out.push_str(parent);
    }
    out.push('}');
    Ok(RedeemResult::Succeeded(out))
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

/// Takes the lock of the redemption's customer, if it names one; returns whether it did.
/// A rollback copies the redemption's customer snapshot into its own record, and a
/// permanent deletion scrubs those snapshots under that lock: the rollback must read the
/// redemption again once it holds it. Taken after the voucher locks, the order a
/// redemption takes them in (vouchers, then its customer), so the two cannot deadlock.
fn lock_customer_of(c: &mut dyn Conn, p: &str, data: &Value) -> Result<bool> {
    let Some(cid) = data["customer_id"].as_str() else {
        return Ok(false);
    };
    docs::lock_row(c, &customers::TABLE, p, cid)?;
    Ok(true)
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
    // A promotion tier keeps no counter: its rollback only records.
    let is_tier = data["related_object_type"] == "promotion_tier";
    if !is_tier {
        c.lock_key(&format!("voucher:{p}:{voucher_id}"))?;
    }
    if lock_customer_of(c, p, &data)? {
        data = load_redemption(c, p, id)?.0;
    }
    let credits = data["amount"].as_i64().unwrap_or(0);
    let now_s = now_string();
    let rr = new_id("rr");
    // The voucher may have been deleted since; the rollback still records.
    let restored = if is_tier {
        None
    } else {
        c.query_opt(
            "UPDATE vouchers SET redeemed_quantity = redeemed_quantity - 1, redeemed_amount = redeemed_amount - $1, \
             gift_balance = CASE WHEN gift_balance IS NULL THEN NULL ELSE gift_balance + $1 END \
             WHERE project_id = $2 AND id = $3 AND redeemed_quantity >= 1 RETURNING gift_balance",
            &[credits.into(), p.into(), voucher_id.clone().into()],
        )?
    };
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
    let updated = c.query_opt(
        "UPDATE redemptions SET status = 'ROLLED_BACK', rollback_id = $1, data = $2 WHERE project_id = $3 AND id = $4 AND status = 'SUCCEEDED' \
         RETURNING campaign_id, voucher_id",
        &[rr.clone().into(), data.to_string().into(), p.into(), id.into()],
    )?;
    if let Some(row) = &updated {
        count_redemption(c, p, row.opt_text(0)?.as_deref(), row.opt_text(1)?.as_deref(), -1)?;
    }
    if updated.is_none() {
        return Err(bad(
            "already_rolled_back",
            "Already rolled back",
            "Redemption has been already rolled back.",
        ));
    }
    let voucher = if is_tier {
        None
    } else {
        find_voucher(c, t, &voucher_id)?.map(|v| views::voucher(&v))
    };
    let mut body = json!({
        "id": rr, "object": "redemption_rollback", "date": now_s, "customer_id": data["customer_id"],
        "tracking_id": tracking.map(str::to_string).or_else(|| data["tracking_id"].as_str().map(str::to_string)),
        "metadata": metadata, "amount": -credits, "redemption": id, "reason": reason,
        "result": "SUCCESS", "status": "SUCCEEDED", "order": data["order"], "channel": data["channel"],
        "customer": data["customer"], "related_object_type": data["related_object_type"], "related_object_id": voucher_id, "voucher": voucher,
    });
    if is_tier {
        body["promotion_tier"] = data["promotion_tier"].clone();
    }
    if data.get("gift").is_some() {
        body["gift"] = json!({"amount": -credits});
    }
    if let Some(pr) = parent_rollback {
        body["parent_rollback_id"] = json!(pr);
    }
    c.execute(
        "INSERT INTO redemptions (project_id, id, object, parent_id, redemption_id, voucher_id, campaign_id, customer_id, tracking_id, result, status, amount, created_at, data, promotion_tier_id) \
         VALUES ($1, $2, 'redemption_rollback', $3, $4, $5, $6, $7, $8, 'SUCCESS', 'SUCCEEDED', $9, $10, $11, $12)",
        &[
            p.into(),
            rr.clone().into(),
            parent_rollback.map(str::to_string).into(),
            id.into(),
            (!is_tier).then(|| voucher_id.clone()).into(),
            if is_tier { &data["promotion_tier"]["campaign_id"] } else { &data["voucher"]["campaign_id"] }
                .as_str()
                .map(str::to_string)
                .into(),
            data["customer_id"].as_str().map(str::to_string).into(),
            body["tracking_id"].as_str().map(str::to_string).into(),
            Val::Int(-credits),
            now_s.into(),
            body.to_string().into(),
            is_tier.then(|| voucher_id.clone()).into(),
        ],
    )?;
    outbox::emit(c, p, "redemption.rollback.succeeded", &rr, &body)?;
    Ok(body)
}

/// The discount a redemption (single, or a stack's parent) gave. A union, not
/// `id = $2 OR parent_id = $2`: SQLite cannot use an index for that OR under the shared
/// `project_id = $1`, and read the whole project's redemptions.
pub(crate) const ROLLED_BACK_DISCOUNT_SQL: &str = "SELECT CAST(COALESCE(SUM(discount_amount), 0) AS BIGINT) FROM (\
     SELECT discount_amount FROM redemptions WHERE project_id = $1 AND id = $2 AND object = 'redemption' \
     UNION ALL SELECT discount_amount FROM redemptions WHERE project_id = $1 AND parent_id = $2 AND object = 'redemption') AS r";

/// An order's redemptions still standing (singles and stacks' parents).
pub(crate) const ORDER_REMAINING_SQL: &str = "SELECT COUNT(*) FROM redemptions WHERE project_id = $1 AND order_id = $2 \
     AND object = 'redemption' AND parent_id IS NULL AND result = 'SUCCESS' AND status = 'SUCCEEDED'";

/// A stack's redemptions still standing, in id order (the parent index ends with the id).
pub(crate) const STACK_CHILDREN_SQL: &str = "SELECT id, voucher_id FROM redemptions \
     WHERE project_id = $1 AND parent_id = $2 AND object = 'redemption' AND status = 'SUCCEEDED' ORDER BY id LIMIT 30";

/// Rollback order mode WITH_ORDER: the stored order loses the discounts of the rolled
/// back redemptions. When no successful redemption of the order remains, every discount
/// field returns to zero; otherwise the rolled-back amount comes off the order-level
/// discount first, then the item-level one.
fn revert_order(c: &mut dyn Conn, p: &str, redemption_id: &str) -> Result<Option<Value>> {
    let rolled_back = c.query_one(ROLLED_BACK_DISCOUNT_SQL, &[p.into(), redemption_id.into()])?.int(0)?;
    let Some(row) = c.query_opt(
        "SELECT order_id FROM redemptions WHERE project_id = $1 AND id = $2",
        &[p.into(), redemption_id.into()],
    )?
    else {
        return Ok(None);
    };
    let Some(order_id) = row.opt_text(0)? else { return Ok(None) };
    let Some(mut order) = docs::find_by_id::<Order>(c, &crate::ops::orders::TABLE, p, &order_id)? else {
        return Ok(None);
    };
    let remaining = c.query_one(ORDER_REMAINING_SQL, &[p.into(), order_id.into()])?.int(0)?;
    if remaining == 0 {
        order.discount_amount = 0;
        order.items_discount_amount = 0;
    } else {
        let from_order = order.discount_amount.min(rolled_back).max(0);
        order.discount_amount -= from_order;
        order.items_discount_amount = (order.items_discount_amount - (rolled_back - from_order)).max(0);
    }
    order.total_discount_amount = order.discount_amount + order.items_discount_amount;
    order.applied_discount_amount = order.discount_amount;
    order.items_applied_discount_amount = order.items_discount_amount;
    order.total_applied_discount_amount = order.total_discount_amount;
    order.total_amount = (order.amount - order.total_discount_amount).max(0);
    order.updated_at = Some(now_string());
    save_order(c, p, &order)?;
    Ok(Some(serde_json::to_value(&order).map_err(|e| StoreError::Internal(e.to_string()))?))
}

fn rollback_order_mode(c: &mut dyn Conn, p: &str) -> Result<tessera_domain::stacking::RollbackOrderMode> {
    Ok(crate::ops::promotions::stacking_rules(c, p)?.1.redeemables_rollback_order_mode)
}

impl Store {
    /// Validates without changing anything, unless the request asks for a session (a
    /// reservation), which is a write.
    pub async fn validate_checkout(&self, t: &Tenant, req: CheckoutRequest) -> Result<Value> {
        self.validate_with(t, req, |e, tracking, session| Ok(validation_json(e, tracking, session)))
            .await
    }

    /// `validate_checkout`, answered as JSON text for the API to send as it is.
    pub async fn validate_checkout_text(&self, t: &Tenant, req: CheckoutRequest) -> Result<String> {
        self.validate_with(t, req, |e, tracking, session| validation_text(e, tracking, session.as_ref()))
            .await
    }

    async fn validate_with<T: Send + 'static>(
        &self,
        t: &Tenant,
        req: CheckoutRequest,
        render: fn(&Evaluation, &str, Option<Value>) -> Result<T>,
    ) -> Result<T> {
        req.validate()?;
        let t = t.clone();
        let rid = crate::ops::idempotency::current_request_id();
        if req.session.is_some() {
            let cache = self.promos.clone();
            return self
                .write(move |c| {
                    let promos = cache.get(c, t.project_id())?;
                    // A reservation changes what other checkouts may take: lock like a redemption.
                    lock_vouchers(c, &t, &req, &promos)?;
                    let now = tessera_domain::time::now();
                    let key = req.session.as_ref().and_then(|s| s.key.clone());
                    let e = evaluate(c, &t, promos, &req, now, key.as_deref(), &rid)?;
                    let session = apply_session(c, &t, &req, &e, now)?;
                    render(&e, &tracking_id(&req, e.customer.as_ref()), session)
                })
                .await;
        }
        let cache = self.promos.clone();
        self.read_short(move |c| {
            let promos = cache.get(c, t.project_id())?;
            let e = evaluate(c, &t, promos, &req, tessera_domain::time::now(), None, &rid)?;
            render(&e, &tracking_id(&req, e.customer.as_ref()), None)
        })
        .await
    }

    pub async fn redeem(&self, t: &Tenant, req: CheckoutRequest) -> Result<RedeemResult> {
        req.validate()?;
        let t = t.clone();
        let rid = crate::ops::idempotency::current_request_id();
        let cache = self.promos.clone();
        self.write(move |c| redeem_in_tx(c, &t, &req, &rid, &cache)).await
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
            let mut body = rollback_one(c, &t, &id, None, reason.as_deref(), tracking_id.as_deref(), &metadata)?;
            if rollback_order_mode(c, t.project_id())? == tessera_domain::stacking::RollbackOrderMode::WithOrder {
                if let Some(o) = revert_order(c, t.project_id(), &id)? {
                    body["order"] = o;
                }
            }
            Ok(body)
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
                return Err(bad(
                    "invalid_redemption_parent",
                    "Invalid redemption",
                    "Roll back the parent redemption instead.",
                ));
            }
            let with_order = rollback_order_mode(c, &p)? == tessera_domain::stacking::RollbackOrderMode::WithOrder;
            if data["related_object_type"] != "redemption" {
                let r = rollback_one(c, &t, &id, None, reason.as_deref(), tracking_id.as_deref(), &metadata)?;
                let order = if with_order { revert_order(c, &p, &id)? } else { None };
                return Ok(
                    json!({"rollbacks": [r.clone()], "parent_rollback": r, "order": order.unwrap_or_else(|| data["order"].clone())}),
                );
            }
            if status == "ROLLED_BACK" {
                return Err(bad(
                    "already_rolled_back",
                    "Already rolled back",
                    "Redemption has been already rolled back.",
                ));
            }
            let prr = new_id("rr");
            let children = c.query(STACK_CHILDREN_SQL, &[p.clone().into(), id.clone().into()])?;
            // Every voucher lock before the customer's, sorted, as a redemption takes them.
            let mut vouchers = children.iter().map(|r| r.opt_text(1)).collect::<Result<Vec<_>>>()?;
            vouchers.sort();
            for v in vouchers.into_iter().flatten() {
                c.lock_key(&format!("voucher:{p}:{v}"))?;
            }
            let data = if lock_customer_of(c, &p, &data)? {
                load_redemption(c, &p, &id)?.0
            } else {
                data
            };
            let mut rollbacks = Vec::new();
            for row in children {
                rollbacks.push(rollback_one(
                    c,
                    &t,
                    &row.text(0)?,
                    Some(&prr),
                    reason.as_deref(),
                    tracking_id.as_deref(),
                    &metadata,
                )?);
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
                &[
                    p.clone().into(),
                    prr.clone().into(),
                    id.clone().into(),
                    data["customer_id"].as_str().map(str::to_string).into(),
                    now_s.into(),
                    parent_rollback.to_string().into(),
                ],
            )?;
            outbox::emit(c, &p, "redemption.rollback.succeeded", &prr, &parent_rollback)?;
            let order = if with_order { revert_order(c, &p, &id)? } else { None };
            Ok(json!({"rollbacks": rollbacks, "parent_rollback": parent_rollback, "order": order.unwrap_or_else(|| data["order"].clone())}))
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
            let mut eq: Vec<(&'static str, Val)> = Vec::new();
            if let Some(r) = q.filters.get("result") {
                eq.push(("result", r.into()));
            }
            if let Some(camp) = q.filters.get("campaign") {
                let cid = crate::ops::vouchers::load_campaign(c, p, camp)?
                    .map(|r| r.campaign.id)
                    .unwrap_or_default();
                eq.push(("campaign_id", cid.into()));
            }
            if let Some(cust) = q.filters.get("customer") {
                let id = docs::find::<Customer>(c, &customers::TABLE, p, cust)?
                    .map(|c| c.id)
                    .unwrap_or_default();
                eq.push(("customer_id", id.into()));
            }
            if let Some(code) = q.filters.get("voucher_code") {
                let id = find_voucher(c, &t, code)?.map(|v| v.voucher.id).unwrap_or_default();
                eq.push(("voucher_id", id.into()));
            }
            if let Some(pid) = q.filters.get("parent_redemption_id") {
                eq.push(("parent_id", pid.into()));
            }
            let (count_sql, page_sql, params) = list_redemptions_sql(p, eq, &q, !c.is_postgres());
            let total = c.query_one(&count_sql, &params[..params.len() - 2])?.int(0)?;
            let rows = c.query(&page_sql, &params)?;
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
            let published = c
                .query_one(
                    "SELECT COUNT(*) FROM publications WHERE project_id = $1 AND campaign_id = $2 AND created_at >= $3 AND created_at < $4",
                    &[p.clone().into(), cid.clone().into(), from.clone().into(), to.clone().into()],
                )?
                .int(0)?;
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
                "publications": published,
                "publications_succeeded": published,
                "publications_failed": 0,
            });
            if rec.campaign.voucher.kind == VoucherType::GiftVoucher {
                let gift = |c: &mut dyn Conn, cond: &str| -> Result<i64> {
                    c.query_one(
                        &format!(
                            // The campaign's vouchers first, then each one's ledger: as a join,
                            // SQLite read the project's whole gift ledger.
                            "SELECT CAST(COALESCE(SUM(g.amount), 0) AS BIGINT) FROM gift_transactions g \
                             WHERE g.project_id = $1 AND g.voucher_id IN (SELECT id FROM vouchers WHERE project_id = $1 AND campaign_id = $2) \
                             AND g.created_at >= $3 AND g.created_at < $4 AND {cond}"
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

/// One qualified redeemable with what sorting and filtering need. Candidates that pass
/// are only described by their discount at first; the full view (with the calculated
/// order) is built for the page that is returned.
struct Qualified {
    view: Option<Value>,
    /// Boxed: sorting moves these, and an outcome is large.
    outcome: Option<Box<Outcome>>,
    created_at: String,
    discount: i64,
    fields: Vec<(&'static str, Vec<String>)>,
}

const QUALIFICATION_FILTERS: &[&str] = &[
    "category_id",
    "campaign_id",
    "campaign_type",
    "resource_id",
    "resource_type",
    "voucher_type",
    "code",
    "holder_role",
];

/// Voucherify's qualification filters: `{junction, <field>: {conditions: {$is|$is_not|$in|$not_in: ...}}}`.
fn filter_matches(filters: &Value, q: &Qualified) -> Result<bool> {
    let Some(map) = filters.as_object() else { return Ok(true) };
    let or = match map.get("junction").and_then(Value::as_str) {
        None | Some("and") | Some("AND") => false,
        Some("or") | Some("OR") => true,
        Some(j) => {
            return Err(bad(
                "invalid_payload",
                "Invalid payload",
                &format!("'options.filters.junction' {j} must be and or or"),
            ))
        }
    };
    let mut results = Vec::new();
    for (field, spec) in map {
        if field == "junction" {
            continue;
        }
        if !QUALIFICATION_FILTERS.contains(&field.as_str()) {
            return Err(bad(
                "invalid_payload",
                "Invalid payload",
                &format!(
                    "cannot filter qualifications by '{field}'; use {}",
                    QUALIFICATION_FILTERS.join(", ")
                ),
            ));
        }
        let values: &[String] = q.fields.iter().find(|(f, _)| f == field).map(|(_, v)| v.as_slice()).unwrap_or(&[]);
        let conditions = spec.get("conditions").and_then(Value::as_object).ok_or_else(|| {
            bad(
                "invalid_payload",
                "Invalid payload",
                &format!("'options.filters.{field}' needs 'conditions'"),
            )
        })?;
        for (op, arg) in conditions {
            let list: Vec<String> = match arg {
                Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
                Value::String(s) => vec![s.clone()],
                _ => Vec::new(),
            };
            let any = values.iter().any(|v| list.contains(v));
            results.push(match op.as_str() {
                "$is" | "$in" => any,
                "$is_not" | "$not_in" => !any,
                other => {
                    return Err(bad(
                        "invalid_payload",
                        "Invalid payload",
                        &format!("filter condition {other} is not supported; use $is, $is_not, $in or $not_in"),
                    ))
                }
            });
        }
    }
    Ok(if or {
        results.is_empty() || results.iter().any(|r| *r)
    } else {
        results.iter().all(|r| *r)
    })
}

fn qualified_from(o: Outcome, discount: i64) -> Qualified {
    let (created_at, campaign_id, campaign_type, voucher_type, code, holder) = match (&o.tier, &o.voucher) {
        (Some(t), _) => (
            t.tier.created_at.clone(),
            Some(t.tier.campaign_id.clone()),
            "PROMOTION".to_string(),
            None,
            None,
            None,
        ),
        (None, Some(v)) => (
            v.voucher.created_at.clone(),
            v.voucher.campaign_id.clone(),
            o.campaign
                .as_ref()
                .and_then(|c| serde_json::to_value(c.campaign_type).ok())
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "STANDALONE".into()),
            Some(v.voucher.kind.as_str().to_string()),
            Some(v.voucher.code.clone()),
            v.voucher.holder_id.as_ref().map(|_| "OWNER".to_string()),
        ),
        (None, None) => (String::new(), None, String::new(), None, None, None),
    };
    Qualified {
        view: None,
        created_at,
        discount,
        fields: vec![
            ("category_id", o.cand.categories.clone()),
            ("campaign_id", campaign_id.into_iter().collect()),
            ("campaign_type", vec![campaign_type]),
            ("resource_id", vec![o.id.clone()]),
            ("resource_type", vec![o.object.clone()]),
            ("voucher_type", voucher_type.into_iter().collect()),
            ("code", code.into_iter().collect()),
            ("holder_role", holder.into_iter().collect()),
        ],
        outcome: Some(Box::new(o)),
    }
}

/// Most wallet vouchers and promotion stacks one qualification looks at.
const QUALIFY_SCAN: i64 = 100;

fn qualify_in(
    c: &mut dyn Conn,
    t: &Tenant,
    cache: &crate::ops::promotions::Cache,
    req: &QualificationRequest,
    request_id: &str,
) -> Result<Value> {
    let p = t.project_id();
    let promos = cache.get(c, p)?;
    let scenario = req.scenario.as_deref().unwrap_or("ALL");
    let opts = req.options.clone().unwrap_or_default();
    let explain = opts.expand.iter().flatten().any(|e| e == "explain");
    let now = tessera_domain::time::now();
    let probe = req.as_checkout(Vec::new(), explain);
    let customer = resolve_customer(c, p, &probe)?;
    let (order, _) = resolve_order(c, p, &probe)?;
    let lines = cart(&order.items, Some(order.amount));
    let mut found: Vec<Qualified> = Vec::new();
    if scenario == "PROMOTION_STACKS" {
        let rows = c.query(
            "SELECT id FROM promotion_stacks WHERE project_id = $1 ORDER BY created_at DESC LIMIT $2",
            &[p.into(), QUALIFY_SCAN.into()],
        )?;
        for row in rows {
            let id = row.text(0)?;
            let sreq = req.as_checkout(
                vec![RedeemableRef {
                    object: "promotion_stack".into(),
                    id: id.clone(),
                    gift: None,
                    reward: None,
                }],
                explain,
            );
            let e = evaluate(c, t, promos.clone(), &sreq, now, None, request_id)?;
            if !e.valid {
                continue;
            }
            let discount: i64 = e.outcomes.iter().filter_map(|o| o.applied.as_ref()).map(|a| a.total()).sum();
            let parts: Vec<Value> = e.outcomes.iter().map(|o| redeemable_json(o, request_id, &promos)).collect();
            let created = c
                .query_one(
                    "SELECT created_at FROM promotion_stacks WHERE project_id = $1 AND id = $2",
                    &[p.into(), id.clone().into()],
                )?
                .text(0)?;
            let campaign = e.outcomes.iter().find_map(|o| o.tier.as_ref().map(|t| t.tier.campaign_id.clone()));
            found.push(Qualified {
                outcome: None,
                view: Some(json!({"id": id, "object": "promotion_stack", "created_at": created, "order": e.calc_order, "redeemables": parts, "campaign_id": campaign})),
                created_at: created,
                discount,
                fields: vec![
                    ("campaign_id", campaign.into_iter().collect()),
                    ("campaign_type", vec!["PROMOTION".into()]),
                    ("resource_id", vec![id.clone()]),
                    ("resource_type", vec!["promotion_stack".into()]),
                ],
            });
        }
    } else {
        let mut refs = Vec::new();
        let wallet = matches!(
            scenario,
            "ALL" | "CUSTOMER_WALLET" | "AUDIENCE_ONLY" | "PRODUCTS_BY_CUSTOMER" | "PRODUCTS_DISCOUNT_BY_CUSTOMER"
        );
        // PRODUCTS*: only what concerns items, by a discount aimed at items or (PRODUCTS,
        // PRODUCTS_BY_CUSTOMER) a rule that reads the items.
        let products = match scenario {
            "PRODUCTS" | "PRODUCTS_BY_CUSTOMER" => Some(true),
            "PRODUCTS_DISCOUNT" | "PRODUCTS_DISCOUNT_BY_CUSTOMER" => Some(false),
            _ => None,
        };
        let concerns_items = |targets: &Targets, rules: &[CompiledRule]| match products {
            None => true,
            Some(rules_count) => !targets.is_empty() || (rules_count && rules.iter().any(|r| r.reads_items)),
        };
        if let (true, Some(cust)) = (wallet, &customer) {
            for row in c.query(
                "SELECT code FROM vouchers WHERE project_id = $1 AND holder_id = $2 ORDER BY created_at DESC LIMIT $3",
                &[p.into(), cust.id.clone().into(), QUALIFY_SCAN.into()],
            )? {
                refs.push(RedeemableRef {
                    object: "voucher".into(),
                    id: row.text(0)?,
                    gift: None,
                    reward: None,
                });
            }
        }
        let creq = req.as_checkout(refs, explain);
        let cx = Context {
            t,
            req: &creq,
            now,
            promos: &promos,
            order: &order,
            lines: &lines,
            customer: customer.as_ref(),
            customer_metadata: customer_metadata(customer.as_ref(), &creq),
            redemption_metadata: creq.metadata.clone().unwrap_or_default(),
            items: item_facts(&lines),
            explain,
            rule_scope: RuleScope::of(scenario),
        };
        // Each candidate alone against the cart: qualification says what could apply,
        // not how the candidates would stack. Alone, a candidate sees the initial amounts,
        // so one calculator serves every preview.
        let base = Calculator::new(lines.clone(), &no_catalog);
        let amount: i64 = lines.iter().map(|l| l.amount).sum();
        if scenario != "CUSTOMER_WALLET" {
            // Tiers straight from the cached set: nothing is allocated for a tier until
            // it qualifies.
            let tz = t.timezone();
            for entry in &promos.tiers {
                if !entry.tier.active
                    || !entry.campaign.active
                    || entry.campaign_validity.check(now, &tz).is_err()
                    || entry.validity.check(now, &tz).is_err()
                {
                    continue;
                }
                let mut budget = tessera_domain::rules::EVALUATION_BUDGET;
                let target = RuleTarget {
                    amount,
                    already: 0,
                    redeemed: 0,
                    holder_ok: false,
                    subject: &entry.tier.id,
                };
                let scope = || ("campaign_id", entry.tier.campaign_id.clone());
                let Ok((targets, _)) = run_rules(c, &cx, &entry.rules, target, scope, &mut budget)? else {
                    continue;
                };
                if !concerns_items(&targets, &entry.rules) {
                    continue;
                }
                let benefit = Benefit::Discount {
                    rule: entry.discount.clone(),
                    targets,
                };
                let applied = base.preview_with(&benefit, PreviewMode::default());
                if applied.total() == 0 && applied.added.is_empty() && promos.rules.skip_no_effect(&entry.categories) {
                    continue;
                }
                let mut o = Outcome::new(0, "promotion_tier", &entry.tier.id);
                o.cand = Candidate {
                    categories: entry.categories.clone(),
                    category_hierarchy: entry.category_hierarchy,
                    tier_hierarchy: Some(entry.tier.hierarchy),
                };
                o.tier = Some(entry.clone());
                found.push(qualified_from(o, applied.total()));
            }
        }
        for mut o in resolve(c, &cx, None)? {
            if !matches!(o.status, Status::Applicable) {
                continue;
            }
            let mut budget = tessera_domain::rules::EVALUATION_BUDGET;
            let Ok((targets, _)) = check_rules(c, &cx, &o, amount, 0, &mut budget)? else {
                continue;
            };
            if products.is_some() && targets.is_empty() {
                // A voucher's rules are not at hand here; its targets say whether it is
                // about items.
                continue;
            }
            let benefit = benefit_of(&mut o, &targets)?;
            let applied = base.preview_with(&benefit, PreviewMode::default());
            let no_effect = applied.total() == 0 && applied.added.is_empty();
            if no_effect && promos.rules.skip_no_effect(&o.cand.categories) {
                continue;
            }
            o.benefit = Some(benefit);
            found.push(qualified_from(o, applied.total()));
        }
    }
    if let Some(f) = &opts.filters {
        let mut kept = Vec::with_capacity(found.len());
        for q in found {
            if filter_matches(f, &q)? {
                kept.push(q);
            }
        }
        found = kept;
    }
    if let Some(after) = opts.starting_after.as_deref().and_then(tessera_domain::time::parse_lenient) {
        let after = format(after);
        found.retain(|q| q.created_at < after);
    }
    match opts.sorting_rule.as_deref() {
        Some("BEST_DEAL") => found.sort_by(|a, b| b.discount.cmp(&a.discount).then_with(|| b.created_at.cmp(&a.created_at))),
        Some("LEAST_DEAL") => found.sort_by(|a, b| a.discount.cmp(&b.discount).then_with(|| b.created_at.cmp(&a.created_at))),
        _ => found.sort_by(|a, b| b.created_at.cmp(&a.created_at)),
    }
    let limit = opts.limit.unwrap_or(5) as usize;
    let total = found.len();
    let has_more = total > limit;
    found.truncate(limit);
    let more_starting_after = if has_more {
        found.last().map(|q| q.created_at.clone())
    } else {
        None
    };
    // The page's full views, each from a complete evaluation of the candidate alone.
    let creq = req.as_checkout(Vec::new(), explain);
    let cx = Context {
        t,
        req: &creq,
        now,
        promos: &promos,
        order: &order,
        lines: &lines,
        customer: customer.as_ref(),
        customer_metadata: customer_metadata(customer.as_ref(), &creq),
        redemption_metadata: creq.metadata.clone().unwrap_or_default(),
        items: item_facts(&lines),
        explain,
        rule_scope: RuleScope::of(scenario),
    };
    let mut data = Vec::with_capacity(found.len());
    for q in found {
        if let Some(v) = q.view {
            data.push(v);
            continue;
        }
        let Some(o) = q.outcome else { continue };
        let (mut done, _, _) = apply_in_order(c, &cx, vec![*o], None)?;
        if let Some(o) = done.pop() {
            let mut view = redeemable_json(&o, request_id, &promos);
            if let Some(m) = view.as_object_mut() {
                m.remove("status");
            }
            view["created_at"] = json!(q.created_at);
            data.push(view);
        }
    }
    let calc = Calculator::new(lines.clone(), &no_catalog);
    Ok(json!({
        "redeemables": {
            "object": "list", "data_ref": "data",
            "data": data,
            "total": total.min(limit), "has_more": has_more, "more_starting_after": more_starting_after,
        },
        "tracking_id": tracking_id(&probe, customer.as_ref()),
        "order": order_json(&calc, &order, customer.as_ref()),
        "stacking_rules": stacking_rules_json(&promos.rules),
    }))
}

impl Store {
    pub async fn qualify(&self, t: &Tenant, req: QualificationRequest) -> Result<Value> {
        req.validate()?;
        let t = t.clone();
        let cache = self.promos.clone();
        let rid = crate::ops::idempotency::current_request_id();
        self.read_short(move |c| qualify_in(c, &t, &cache, &req, &rid)).await
    }
}

/// The COUNT and page statements of `list_redemptions` and their parameters; the page's
/// LIMIT and OFFSET are the last two, which the COUNT does not take. `eq` holds the
/// resolved equality filters, by column.
pub(crate) fn list_redemptions_sql(
    project_id: &str,
    eq: Vec<(&'static str, Val)>,
    q: &ListQuery,
    sqlite: bool,
) -> (String, String, Vec<Val>) {
    // SQLite has no statistics: given a customer or parent it still walks
    // redemptions_created for the order or the date range, across the whole project. An
    // expression can use no index, so it takes the filter's index and sorts those few rows.
    let by_owner = eq.iter().any(|(col, _)| matches!(*col, "customer_id" | "parent_id"));
    let ts = if sqlite && by_owner { "created_at || ''" } else { "created_at" };
    let mut clauses = vec!["project_id = $1".to_string()];
    let mut params: Vec<Val> = vec![project_id.into()];
    for (col, v) in eq {
        params.push(v);
        clauses.push(format!("{col} = ${}", params.len()));
    }
    if let Some(v) = &q.created_before {
        params.push(v.into());
        clauses.push(format!("{ts} < ${}", params.len()));
    }
    if let Some(v) = &q.created_after {
        params.push(v.into());
        clauses.push(format!("{ts} > ${}", params.len()));
    }
    let w = clauses.join(" AND ");
    let dir = if q.descending { "DESC" } else { "ASC" };
    let n = params.len();
    params.push(Val::Int(q.limit as i64));
    params.push(Val::Int(q.offset() as i64));
    (
        format!("SELECT COUNT(*) FROM redemptions WHERE {w}"),
        format!(
            "SELECT data FROM redemptions WHERE {w} ORDER BY {ts} {dir}, id {dir} LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        ),
        params,
    )
}
