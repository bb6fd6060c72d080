//! Validation rules: Voucherify's rule JSON parsed into a bounded tree and evaluated
//! with a cost budget, so a tenant-written rule can neither loop nor eat a core.
//!
//! A rule set is `{"logic": "(1 and 2) or not 3", "1": {condition}, ...}`. A condition
//! names a fact (`order.amount`, `customer.metadata` with `property`, `product.id`...),
//! holds operators with values (`{"$more_than": [10000]}`), may carry its own error
//! message, and, for item facts, nested `rules` that must hold for the same cart line.

use crate::error::InvalidInput;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub const MAX_RULE_JSON_BYTES: usize = 64 * 1024;
pub const MAX_CONDITIONS: usize = 100;
pub const MAX_VALUES_PER_OPERATOR: usize = 1000;
pub const MAX_NESTING: usize = 3;
pub const MAX_LOGIC_LEN: usize = 1000;
pub const MAX_LOGIC_DEPTH: usize = 16;
pub const MAX_STRING_LEN: usize = 255;
/// Work units one evaluation may spend (a comparison of one value is one unit).
pub const EVALUATION_BUDGET: u64 = 200_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Is,
    IsNot,
    In,
    NotIn,
    MoreThan,
    MoreThanOrEqual,
    LessThan,
    LessThanOrEqual,
    Contains,
    NotContain,
    StartsWith,
    EndsWith,
    Exists,
    NotExist,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "$is" | "$eq" => Op::Is,
            "$is_not" | "$ne" => Op::IsNot,
            "$in" => Op::In,
            "$not_in" => Op::NotIn,
            "$more_than" | "$gt" => Op::MoreThan,
            "$more_than_or_equal" | "$gte" => Op::MoreThanOrEqual,
            "$less_than" | "$lt" => Op::LessThan,
            "$less_than_or_equal" | "$lte" => Op::LessThanOrEqual,
            "$contains" => Op::Contains,
            "$not_contain" => Op::NotContain,
            "$starts_with" => Op::StartsWith,
            "$ends_with" => Op::EndsWith,
            "$exists" | "$is_not_empty" => Op::Exists,
            "$not_exist" | "$is_empty" => Op::NotExist,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Logic {
    Ref(String),
    And(Box<Logic>, Box<Logic>),
    Or(Box<Logic>, Box<Logic>),
    Not(Box<Logic>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub name: String,
    pub property: Option<String>,
    ops: Vec<(Op, Vec<Value>)>,
    sub: Option<RuleSet>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleSet {
    logic: Option<Logic>,
    conditions: BTreeMap<String, Condition>,
}

/// The facts of one cart line, for `product.*` and `sku.*` conditions.
#[derive(Debug, Clone, Default)]
pub struct ItemFacts {
    pub product_id: Option<String>,
    pub product_source_id: Option<String>,
    pub sku_id: Option<String>,
    pub sku_source_id: Option<String>,
    pub price: i64,
    pub quantity: i64,
    pub amount: i64,
    pub metadata: Map<String, Value>,
    pub product_metadata: Map<String, Value>,
}

/// Everything a rule may ask about a validation.
pub trait Facts {
    /// An order-, customer- or redemption-level fact; `None` when not known.
    fn fact(&self, name: &str, property: Option<&str>) -> Option<Value>;
    fn items(&self) -> &[ItemFacts];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// The rule failed; the message is the failing condition's error, if it has one.
    Fail(Option<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetExceeded;

fn bad(msg: impl Into<String>) -> InvalidInput {
    InvalidInput::payload(msg)
}

fn parse_logic(s: &str, keys: &BTreeMap<String, Condition>) -> Result<Logic, InvalidInput> {
    if s.len() > MAX_LOGIC_LEN {
        return Err(bad(format!("'logic' is longer than {MAX_LOGIC_LEN} characters")));
    }
    let mut tokens = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '(' || c == ')' {
            tokens.push(c.to_string());
            chars.next();
        } else {
            let mut t = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '(' || c == ')' {
                    break;
                }
                t.push(c);
                chars.next();
            }
            tokens.push(t);
        }
    }
    struct P<'a> {
        t: &'a [String],
        i: usize,
        keys: &'a BTreeMap<String, Condition>,
    }
    impl P<'_> {
        fn peek_kw(&self, kw: &str) -> bool {
            self.t.get(self.i).is_some_and(|t| t.eq_ignore_ascii_case(kw))
        }
        fn expr(&mut self, depth: usize) -> Result<Logic, InvalidInput> {
            if depth > MAX_LOGIC_DEPTH {
                return Err(bad(format!("'logic' nests deeper than {MAX_LOGIC_DEPTH} levels")));
            }
            let mut left = self.term(depth)?;
            while self.peek_kw("or") {
                self.i += 1;
                left = Logic::Or(Box::new(left), Box::new(self.term(depth)?));
            }
            Ok(left)
        }
        fn term(&mut self, depth: usize) -> Result<Logic, InvalidInput> {
            let mut left = self.factor(depth)?;
            while self.peek_kw("and") {
                self.i += 1;
                left = Logic::And(Box::new(left), Box::new(self.factor(depth)?));
            }
            Ok(left)
        }
        fn factor(&mut self, depth: usize) -> Result<Logic, InvalidInput> {
            let tok = self.t.get(self.i).cloned().ok_or_else(|| bad("'logic' ends unexpectedly"))?;
            self.i += 1;
            if tok.eq_ignore_ascii_case("not") {
                return Ok(Logic::Not(Box::new(self.factor(depth + 1)?)));
            }
            if tok == "(" {
                let e = self.expr(depth + 1)?;
                if self.t.get(self.i).map(String::as_str) != Some(")") {
                    return Err(bad("'logic' has an unclosed parenthesis"));
                }
                self.i += 1;
                return Ok(e);
            }
            if self.keys.contains_key(&tok) {
                Ok(Logic::Ref(tok))
            } else {
                Err(bad(format!("'logic' refers to rule '{tok}', which is not defined")))
            }
        }
    }
    let mut p = P { t: &tokens, i: 0, keys };
    let e = p.expr(0)?;
    if p.i != tokens.len() {
        return Err(bad(format!("'logic' has unexpected '{}'", tokens[p.i])));
    }
    Ok(e)
}

fn check_value(v: &Value) -> Result<(), InvalidInput> {
    match v {
        Value::String(s) if s.len() > MAX_STRING_LEN => Err(bad(format!("rule values are at most {MAX_STRING_LEN} characters"))),
        Value::Array(_) | Value::Object(_) => Err(bad("rule values must be strings, numbers, booleans or null")),
        _ => Ok(()),
    }
}

impl RuleSet {
    /// Parses a `rules` object. `count` tracks conditions across nesting levels.
    fn parse_inner(v: &Value, level: usize, count: &mut usize) -> Result<RuleSet, InvalidInput> {
        if level > MAX_NESTING {
            return Err(bad(format!("rules nest deeper than {MAX_NESTING} levels")));
        }
        let obj = v.as_object().ok_or_else(|| bad("'rules' must be an object"))?;
        let mut conditions = BTreeMap::new();
        for (k, c) in obj {
            if k == "logic" {
                continue;
            }
            *count += 1;
            if *count > MAX_CONDITIONS {
                return Err(bad(format!("a validation rule may hold at most {MAX_CONDITIONS} conditions")));
            }
            let c = c.as_object().ok_or_else(|| bad(format!("rule '{k}' must be an object")))?;
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("rule '{k}' needs a 'name'")))?;
            if !known_name(name) {
                return Err(bad(format!("rule '{k}': '{name}' is not a supported rule name")));
            }
            let property = c.get("property").and_then(Value::as_str).map(str::to_string);
            if property.as_ref().is_some_and(|p| p.len() > MAX_STRING_LEN) {
                return Err(bad("rule properties are at most 255 characters"));
            }
            let mut ops = Vec::new();
            if let Some(conds) = c.get("conditions") {
                let conds = conds
                    .as_object()
                    .ok_or_else(|| bad(format!("rule '{k}': 'conditions' must be an object")))?;
                for (op, vals) in conds {
                    let o = Op::parse(op).ok_or_else(|| bad(format!("rule '{k}': unknown operator '{op}'")))?;
                    let vals = match vals {
                        Value::Array(a) => a.clone(),
                        other => vec![other.clone()],
                    };
                    if vals.len() > MAX_VALUES_PER_OPERATOR {
                        return Err(bad(format!("rule '{k}': at most {MAX_VALUES_PER_OPERATOR} values per operator")));
                    }
                    for v in &vals {
                        check_value(v)?;
                    }
                    ops.push((o, vals));
                }
            }
            let sub = match c.get("rules") {
                Some(r) if r.as_object().is_some_and(|o| o.keys().any(|k| k != "logic")) => {
                    Some(RuleSet::parse_inner(r, level + 1, count)?)
                }
                _ => None,
            };
            let error = c
                .get("error")
                .and_then(|e| e.get("message"))
                .and_then(Value::as_str)
                .map(|s| s.chars().take(MAX_STRING_LEN).collect());
            conditions.insert(
                k.clone(),
                Condition {
                    name: name.to_string(),
                    property,
                    ops,
                    sub,
                    error,
                },
            );
        }
        let logic = match obj.get("logic").and_then(Value::as_str) {
            Some(l) if !l.trim().is_empty() => Some(parse_logic(l, &conditions)?),
            // Without logic every condition must hold.
            _ => None,
        };
        Ok(RuleSet { logic, conditions })
    }

    pub fn parse(rules: &Value) -> Result<RuleSet, InvalidInput> {
        let size = serde_json::to_vec(rules).map(|v| v.len()).unwrap_or(usize::MAX);
        if size > MAX_RULE_JSON_BYTES {
            return Err(bad(format!("a validation rule may be at most {MAX_RULE_JSON_BYTES} bytes")));
        }
        let mut count = 0;
        RuleSet::parse_inner(rules, 0, &mut count)
    }

    /// Every fact name the rule set asks about, so callers fetch only what is needed.
    pub fn names(&self) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        for c in self.conditions.values() {
            out.insert(c.name.clone());
            if let Some(sub) = &c.sub {
                out.extend(sub.names());
            }
        }
        out
    }

    pub fn evaluate(&self, facts: &dyn Facts) -> Result<Verdict, BudgetExceeded> {
        let mut budget = EVALUATION_BUDGET;
        self.evaluate_within(facts, &mut budget)
    }

    /// Evaluates against a budget shared with other rules of the same request, so the
    /// whole request, not each rule, is bounded.
    pub fn evaluate_within(&self, facts: &dyn Facts, budget: &mut u64) -> Result<Verdict, BudgetExceeded> {
        self.eval(facts, None, budget)
    }

    fn eval(&self, facts: &dyn Facts, item: Option<&ItemFacts>, budget: &mut u64) -> Result<Verdict, BudgetExceeded> {
        match &self.logic {
            Some(l) => self.eval_logic(l, facts, item, budget),
            None => {
                for c in self.conditions.values() {
                    if !c.eval(facts, item, budget)? {
                        return Ok(Verdict::Fail(c.error.clone()));
                    }
                }
                Ok(Verdict::Pass)
            }
        }
    }

    fn eval_logic(&self, l: &Logic, facts: &dyn Facts, item: Option<&ItemFacts>, budget: &mut u64) -> Result<Verdict, BudgetExceeded> {
        Ok(match l {
            Logic::Ref(k) => match self.conditions.get(k) {
                Some(c) if c.eval(facts, item, budget)? => Verdict::Pass,
                Some(c) => Verdict::Fail(c.error.clone()),
                None => Verdict::Fail(None),
            },
            Logic::And(a, b) => match self.eval_logic(a, facts, item, budget)? {
                Verdict::Pass => self.eval_logic(b, facts, item, budget)?,
                fail => fail,
            },
            Logic::Or(a, b) => match self.eval_logic(a, facts, item, budget)? {
                Verdict::Pass => Verdict::Pass,
                first => match self.eval_logic(b, facts, item, budget)? {
                    Verdict::Pass => Verdict::Pass,
                    Verdict::Fail(Some(m)) => Verdict::Fail(Some(m)),
                    Verdict::Fail(None) => first,
                },
            },
            Logic::Not(a) => match self.eval_logic(a, facts, item, budget)? {
                Verdict::Pass => Verdict::Fail(None),
                Verdict::Fail(_) => Verdict::Pass,
            },
        })
    }
}

const ITEM_NAMES: &[&str] = &[
    "product.id",
    "product.source_id",
    "sku.id",
    "sku.source_id",
    "product.price",
    "product.quantity",
    "product.amount",
    "product.metadata",
    "sku.price",
    "sku.quantity",
    "sku.metadata",
    "order.items.price_any",
    "order.items.price_each",
    "order.items.quantity_any",
    "order.items.metadata_any",
];

const SCALAR_NAMES: &[&str] = &[
    "order.amount",
    "order.initial_amount",
    "order.items.count",
    "order.items.quantity",
    "order.metadata",
    "customer.id",
    "customer.source_id",
    "customer.email",
    "customer.metadata",
    "customer.segment",
    "redemption.metadata",
    "redemption.count.per_customer",
    "redemption.count.per_customer.daily",
    "redemption.count.per_customer.monthly",
    "campaign.redemptions.count",
    "voucher.redemptions.count",
    "publication.redeemable_by_linked_customer",
];

fn known_name(n: &str) -> bool {
    ITEM_NAMES.contains(&n) || SCALAR_NAMES.contains(&n)
}

fn item_value(item: &ItemFacts, name: &str, property: Option<&str>) -> Option<Value> {
    match name {
        "product.id" => item.product_id.clone().map(Value::from),
        "product.source_id" => item.product_source_id.clone().map(Value::from),
        "sku.id" => item.sku_id.clone().map(Value::from),
        "sku.source_id" => item.sku_source_id.clone().map(Value::from),
        "product.price" | "sku.price" | "order.items.price_any" | "order.items.price_each" => Some(item.price.into()),
        "product.quantity" | "sku.quantity" | "order.items.quantity_any" => Some(item.quantity.into()),
        "product.amount" => Some(item.amount.into()),
        "product.metadata" => property.and_then(|p| item.product_metadata.get(p).cloned()),
        "sku.metadata" | "order.items.metadata_any" => property.and_then(|p| item.metadata.get(p).cloned()),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), _) | (_, Value::Number(_)) => match (as_f64(a), as_f64(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
        (Value::String(x), Value::String(y)) => x == y,
        _ => a == b,
    }
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Condition {
    fn test(&self, actual: Option<&Value>, budget: &mut u64) -> Result<bool, BudgetExceeded> {
        for (op, vals) in &self.ops {
            let cost = 1 + vals.len() as u64;
            if *budget < cost {
                return Err(BudgetExceeded);
            }
            *budget -= cost;
            let ok = match (op, actual) {
                // A set-valued fact (the customer's segments): a positive operator holds
                // when any member matches, a negative one when none does.
                (Op::Is | Op::In, Some(Value::Array(items))) => items.iter().any(|a| vals.iter().any(|v| loose_eq(a, v))),
                (Op::IsNot | Op::NotIn, Some(Value::Array(items))) => !items.iter().any(|a| vals.iter().any(|v| loose_eq(a, v))),
                (Op::Exists, a) => a.is_some_and(|v| !v.is_null()),
                (Op::NotExist, a) => a.is_none_or(Value::is_null),
                (_, None) => matches!(op, Op::IsNot | Op::NotIn | Op::NotContain),
                (Op::Is | Op::In, Some(a)) => vals.iter().any(|v| loose_eq(a, v)),
                (Op::IsNot | Op::NotIn, Some(a)) => !vals.iter().any(|v| loose_eq(a, v)),
                (Op::MoreThan | Op::MoreThanOrEqual | Op::LessThan | Op::LessThanOrEqual, Some(a)) => {
                    let (Some(x), Some(y)) = (as_f64(a), vals.first().and_then(as_f64)) else {
                        return Ok(false);
                    };
                    match op {
                        Op::MoreThan => x > y,
                        Op::MoreThanOrEqual => x >= y,
                        Op::LessThan => x < y,
                        _ => x <= y,
                    }
                }
                (Op::Contains, Some(a)) => vals.iter().any(|v| as_text(a).contains(&as_text(v))),
                (Op::NotContain, Some(a)) => !vals.iter().any(|v| as_text(a).contains(&as_text(v))),
                (Op::StartsWith, Some(a)) => vals.iter().any(|v| as_text(a).starts_with(&as_text(v))),
                (Op::EndsWith, Some(a)) => vals.iter().any(|v| as_text(a).ends_with(&as_text(v))),
            };
            if !ok {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn eval(&self, facts: &dyn Facts, item: Option<&ItemFacts>, budget: &mut u64) -> Result<bool, BudgetExceeded> {
        if ITEM_NAMES.contains(&self.name.as_str()) {
            if let Some(it) = item {
                // Inside a line's nested rules: test this line.
                return self.test(item_value(it, &self.name, self.property.as_deref()).as_ref(), budget);
            }
            let every = self.name == "order.items.price_each";
            let items = facts.items();
            if items.is_empty() {
                return Ok(false);
            }
            for it in items {
                let mut ok = self.test(item_value(it, &self.name, self.property.as_deref()).as_ref(), budget)?;
                if ok {
                    if let Some(sub) = &self.sub {
                        ok = sub.eval(facts, Some(it), budget)? == Verdict::Pass;
                    }
                }
                if every && !ok {
                    return Ok(false);
                }
                if !every && ok {
                    return Ok(true);
                }
            }
            return Ok(every);
        }
        self.test(facts.fact(&self.name, self.property.as_deref()).as_ref(), budget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct F {
        facts: BTreeMap<String, Value>,
        items: Vec<ItemFacts>,
    }

    impl Facts for F {
        fn fact(&self, name: &str, property: Option<&str>) -> Option<Value> {
            let key = match property {
                Some(p) => format!("{name}.{p}"),
                None => name.to_string(),
            };
            self.facts.get(&key).cloned()
        }
        fn items(&self) -> &[ItemFacts] {
            &self.items
        }
    }

    fn facts(amount: i64, tier: &str) -> F {
        let mut m = BTreeMap::new();
        m.insert("order.amount".into(), json!(amount));
        m.insert("customer.metadata.tier".into(), json!(tier));
        let items = vec![
            ItemFacts {
                product_id: Some("prod_a".into()),
                price: 1000,
                quantity: 3,
                amount: 3000,
                ..Default::default()
            },
            ItemFacts {
                product_id: Some("prod_b".into()),
                price: 200,
                quantity: 1,
                amount: 200,
                ..Default::default()
            },
        ];
        F { facts: m, items }
    }

    #[test]
    fn logic_and_messages() {
        let r = RuleSet::parse(&json!({
            "1": {"name": "order.amount", "conditions": {"$more_than": [5000]}, "error": {"message": "Spend more than 50"}},
            "2": {"name": "customer.metadata", "property": "tier", "conditions": {"$in": ["gold", "platinum"]}},
            "3": {"name": "product.id", "conditions": {"$is": ["prod_a"]}, "rules": {"1": {"name": "product.quantity", "conditions": {"$more_than_or_equal": [3]}}, "logic": "1"}},
            "logic": "(1 and 2) or 3"
        }))
        .expect("valid");
        assert_eq!(
            r.evaluate(&facts(1000, "silver")),
            Ok(Verdict::Pass),
            "3 holds: prod_a with quantity 3"
        );
        let r2 = RuleSet::parse(&json!({
            "1": {"name": "order.amount", "conditions": {"$more_than": [5000]}, "error": {"message": "Spend more than 50"}},
            "2": {"name": "customer.metadata", "property": "tier", "conditions": {"$in": ["gold"]}},
            "logic": "1 and 2"
        }))
        .expect("valid");
        assert_eq!(
            r2.evaluate(&facts(1000, "gold")),
            Ok(Verdict::Fail(Some("Spend more than 50".into())))
        );
        assert_eq!(r2.evaluate(&facts(9000, "gold")), Ok(Verdict::Pass));
        assert_eq!(r2.evaluate(&facts(9000, "silver")), Ok(Verdict::Fail(None)));
        let not =
            RuleSet::parse(&json!({"1": {"name": "product.id", "conditions": {"$is": ["prod_z"]}}, "logic": "not 1"})).expect("valid");
        assert_eq!(not.evaluate(&facts(1, "x")), Ok(Verdict::Pass));
    }

    #[test]
    fn hostile_rules_are_refused_at_creation() {
        let deep_logic = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert!(RuleSet::parse(&json!({"1": {"name": "order.amount", "conditions": {"$is": [1]}}, "logic": deep_logic})).is_err());
        let many: Vec<i64> = (0..5000).collect();
        assert!(RuleSet::parse(&json!({"1": {"name": "order.amount", "conditions": {"$in": many}}})).is_err());
        let mut m = Map::new();
        for i in 0..200 {
            m.insert(i.to_string(), json!({"name": "order.amount", "conditions": {"$is": [i]}}));
        }
        assert!(RuleSet::parse(&Value::Object(m)).is_err());
        let nested = json!({"1": {"name": "product.id", "conditions": {"$is": ["a"]}, "rules": {"1": {"name": "product.id", "rules": {"1": {"name": "product.id", "rules": {"1": {"name": "product.id", "rules": {"1": {"name": "product.price"}}}}}}}}}});
        assert!(RuleSet::parse(&nested).is_err());
        assert!(RuleSet::parse(&json!({"1": {"name": "order.amount"}, "logic": "1 and 2"})).is_err());
        assert!(RuleSet::parse(&json!({"1": {"name": "order.amount"}, "logic": "1 or (1"})).is_err());
        assert!(RuleSet::parse(&json!({"1": {"name": "order.evil"}})).is_err());
        assert!(RuleSet::parse(&json!({"1": {"name": "order.amount", "conditions": {"$regex": ["a"]}}})).is_err());
    }

    #[test]
    fn the_budget_stops_expensive_evaluations() {
        // Within creation limits, but 1000 values checked against each of 500 lines
        // exceeds the evaluation budget: the answer is an error, not a stuck worker.
        let every =
            RuleSet::parse(&json!({"1": {"name": "order.items.price_each", "conditions": {"$not_in": (0..1000).collect::<Vec<i64>>()}}}))
                .expect("valid");
        let mut f = facts(1, "x");
        f.items = (0..500)
            .map(|i| ItemFacts {
                product_id: Some(format!("q{i}")),
                price: 5000 + i,
                ..Default::default()
            })
            .collect();
        assert_eq!(every.evaluate(&f), Err(BudgetExceeded));
        f.items.truncate(10);
        assert_eq!(every.evaluate(&f), Ok(Verdict::Pass));
    }
}
