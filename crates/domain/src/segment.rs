//! Customer segments: static lists of customers, or `auto-update` segments whose members
//! are the customers matching a filter on their attributes.
//!
//! A filter is `{"junction": "and"|"or", "<field>": {"conditions": {"$op": values}}}`.
//! Only conditions on the customer's own data are accepted: membership is re-decided
//! when the customer is written, so a condition that changes with the clock alone
//! (`$next_month`, `$timeframe`...) could never be kept true and is refused.

use crate::customer::{attr_text, Customer};
use crate::error::InvalidInput;
use crate::limits::MAX_ID_LEN;
use crate::time::parse_lenient;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Most customers one static segment may list (the spec's cap).
pub const MAX_STATIC_CUSTOMERS: usize = 20_000;
/// Most conditions in one filter.
pub const MAX_FILTER_FIELDS: usize = 20;
/// Most values one operator may list.
pub const MAX_FILTER_VALUES: usize = 1_000;
/// Most auto-update segments per project: each is evaluated on every customer write.
pub const MAX_DYNAMIC_SEGMENTS: i64 = 100;
pub const MAX_NAME_LEN: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Static,
    AutoUpdate,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Static => "static",
            Kind::AutoUpdate => "auto-update",
        }
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct SegmentInput {
    pub name: Option<String>,
    /// `static` (default when `customers` is given) or `auto-update`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// Customer ids or source ids (static segments).
    #[serde(default)]
    pub customers: Option<Vec<String>>,
    /// The membership filter (auto-update segments).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Map<String, Value>>,
}

/// A checked segment definition.
#[derive(Debug, Clone)]
pub struct SegmentSpec {
    pub name: String,
    pub kind: Kind,
    pub customers: Vec<String>,
    pub filter: Option<Filter>,
    pub filter_json: Option<Value>,
}

impl SegmentInput {
    pub fn check(self) -> Result<SegmentSpec, InvalidInput> {
        let name = self
            .name
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| InvalidInput::payload("a segment needs a 'name'"))?;
        if name.chars().count() > MAX_NAME_LEN {
            return Err(InvalidInput::payload(format!("'name' is at most {MAX_NAME_LEN} characters")));
        }
        let kind = match self.kind.as_deref() {
            Some("static") => Kind::Static,
            Some("auto-update") => Kind::AutoUpdate,
            None if self.filter.is_some() => Kind::AutoUpdate,
            None => Kind::Static,
            Some(other) => {
                return Err(InvalidInput::payload(format!(
                    "'type' must be static or auto-update, got '{other}'"
                )))
            }
        };
        match kind {
            Kind::Static => {
                if self.filter.is_some() {
                    return Err(InvalidInput::payload("a static segment lists 'customers' and has no 'filter'"));
                }
                let customers = self
                    .customers
                    .ok_or_else(|| InvalidInput::payload("a static segment needs 'customers'"))?;
                if customers.len() > MAX_STATIC_CUSTOMERS {
                    return Err(InvalidInput::payload(format!(
                        "a static segment lists at most {MAX_STATIC_CUSTOMERS} customers; use an auto-update segment for more"
                    )));
                }
                if let Some(bad) = customers.iter().find(|c| c.is_empty() || c.len() > MAX_ID_LEN) {
                    return Err(InvalidInput::payload(format!("'{bad}' is not a customer id")));
                }
                Ok(SegmentSpec {
                    name,
                    kind,
                    customers,
                    filter: None,
                    filter_json: None,
                })
            }
            Kind::AutoUpdate => {
                if self.customers.is_some() {
                    return Err(InvalidInput::payload("an auto-update segment has a 'filter' and no 'customers'"));
                }
                let raw = self
                    .filter
                    .ok_or_else(|| InvalidInput::payload("an auto-update segment needs a 'filter'"))?;
                let filter = Filter::parse(&raw)?;
                Ok(SegmentSpec {
                    name,
                    kind,
                    customers: Vec::new(),
                    filter: Some(filter),
                    filter_json: Some(Value::Object(raw)),
                })
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Is,
    IsNot,
    In,
    NotIn,
    Contains,
    NotContain,
    StartsWith,
    EndsWith,
    MoreThan,
    MoreThanEqual,
    LessThan,
    LessThanEqual,
    After,
    Before,
    HasValue,
    IsUnknown,
}

impl Op {
    fn parse(s: &str) -> Result<Op, InvalidInput> {
        Ok(match s {
            "$is" | "$eq" => Op::Is,
            "$is_not" | "$ne" => Op::IsNot,
            "$in" => Op::In,
            "$not_in" => Op::NotIn,
            "$contains" => Op::Contains,
            "$not_contain" => Op::NotContain,
            "$starts_with" => Op::StartsWith,
            "$ends_with" => Op::EndsWith,
            "$more_than" | "$gt" => Op::MoreThan,
            "$more_than_equal" | "$more_than_or_equal" | "$gte" => Op::MoreThanEqual,
            "$less_than" | "$lt" => Op::LessThan,
            "$less_than_equal" | "$less_than_or_equal" | "$lte" => Op::LessThanEqual,
            "$after" => Op::After,
            "$before" => Op::Before,
            "$has_value" | "$exists" | "$is_not_empty" => Op::HasValue,
            "$is_unknown" | "$not_exist" | "$is_empty" => Op::IsUnknown,
            "$timeframe"
            | "$timeframe_absolute"
            | "$next_month"
            | "$this_month"
            | "$last_month"
            | "$days_ago"
            | "$days_in_future"
            | "$today"
            | "$tomorrow"
            | "$yesterday" => {
                return Err(InvalidInput::payload(format!(
                    "'{s}' depends on the current date, which an auto-update segment cannot follow; use $after/$before with dates"
                )))
            }
            other => return Err(InvalidInput::payload(format!("unknown filter operator '{other}'"))),
        })
    }
}

/// The customer fields a filter may name besides `metadata.<key>`.
const FIELDS: &[&str] = &[
    "id",
    "source_id",
    "name",
    "email",
    "phone",
    "birthdate",
    "birthday",
    "created_at",
    "updated_at",
    "address.city",
    "address.state",
    "address.country",
    "address.postal_code",
    "address.line_1",
    "address.line_2",
];

#[derive(Debug, Clone)]
struct Cond {
    field: String,
    ops: Vec<(Op, Vec<Value>)>,
}

/// A compiled membership filter.
#[derive(Debug, Clone)]
pub struct Filter {
    any: bool,
    conds: Vec<Cond>,
}

impl Filter {
    pub fn parse(raw: &Map<String, Value>) -> Result<Filter, InvalidInput> {
        let any = match raw.get("junction").map(|j| j.as_str().map(str::to_ascii_lowercase)) {
            None => false,
            Some(Some(j)) if j == "and" => false,
            Some(Some(j)) if j == "or" => true,
            Some(_) => return Err(InvalidInput::payload("'junction' must be 'and' or 'or'")),
        };
        let mut conds = Vec::new();
        for (field, spec) in raw.iter().filter(|(k, _)| k.as_str() != "junction") {
            let known = FIELDS.contains(&field.as_str())
                || field
                    .strip_prefix("metadata.")
                    .is_some_and(|k| !k.is_empty() && k.len() <= MAX_ID_LEN);
            if !known {
                return Err(InvalidInput::payload(format!(
                    "'{field}' cannot be filtered on; use one of {} or metadata.<key>",
                    FIELDS.join(", ")
                )));
            }
            let conditions = spec
                .get("conditions")
                .and_then(Value::as_object)
                .ok_or_else(|| InvalidInput::payload(format!("'{field}' needs 'conditions' with operators")))?;
            let mut ops = Vec::new();
            for (op, vals) in conditions {
                let op = Op::parse(op)?;
                let vals = match vals {
                    Value::Array(a) => a.clone(),
                    other => vec![other.clone()],
                };
                if vals.len() > MAX_FILTER_VALUES {
                    return Err(InvalidInput::payload(format!("at most {MAX_FILTER_VALUES} values per operator")));
                }
                if matches!(op, Op::After | Op::Before) && !vals.iter().all(|v| v.as_str().and_then(parse_lenient).is_some()) {
                    return Err(InvalidInput::payload(format!("'{field}': $after and $before take dates")));
                }
                if !matches!(op, Op::HasValue | Op::IsUnknown) && vals.is_empty() {
                    return Err(InvalidInput::payload(format!("'{field}': the operator needs a value")));
                }
                ops.push((op, vals));
            }
            if ops.is_empty() {
                return Err(InvalidInput::payload(format!("'{field}' has no conditions")));
            }
            conds.push(Cond { field: field.clone(), ops });
        }
        if conds.is_empty() {
            return Err(InvalidInput::payload("the filter has no conditions"));
        }
        if conds.len() > MAX_FILTER_FIELDS {
            return Err(InvalidInput::payload(format!(
                "a filter holds at most {MAX_FILTER_FIELDS} conditions"
            )));
        }
        Ok(Filter { any, conds })
    }

    pub fn matches(&self, c: &Customer) -> bool {
        let mut hits = self.conds.iter().map(|cond| cond.holds(&values_of(c, &cond.field)));
        if self.any {
            hits.any(|h| h)
        } else {
            hits.all(|h| h)
        }
    }
}

/// The values of a field: none when unknown, several for an array metadata value.
fn values_of(c: &Customer, field: &str) -> Vec<Value> {
    let text = |s: &Option<String>| s.clone().map(Value::from).into_iter().collect::<Vec<_>>();
    let addr = |f: fn(&crate::customer::Address) -> &Option<String>| c.address.as_ref().map(|a| text(f(a))).unwrap_or_default();
    match field {
        "id" => vec![c.id.clone().into()],
        "source_id" => text(&c.source_id),
        "name" => text(&c.name),
        "email" => text(&c.email),
        "phone" => text(&c.phone),
        "birthdate" => text(&c.birthdate),
        "birthday" => text(&c.birthday),
        "created_at" => vec![c.created_at.clone().into()],
        "updated_at" => text(&c.updated_at),
        "address.city" => addr(|a| &a.city),
        "address.state" => addr(|a| &a.state),
        "address.country" => addr(|a| &a.country),
        "address.postal_code" => addr(|a| &a.postal_code),
        "address.line_1" => addr(|a| &a.line_1),
        "address.line_2" => addr(|a| &a.line_2),
        other => match other.strip_prefix("metadata.").and_then(|k| c.metadata.get(k)) {
            Some(Value::Array(items)) => items.iter().filter(|v| !v.is_null()).cloned().collect(),
            Some(Value::Null) | None => Vec::new(),
            Some(v) => vec![v.clone()],
        },
    }
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (num(a), num(b)) {
        (Some(x), Some(y)) if matches!(a, Value::Number(_)) || matches!(b, Value::Number(_)) => x == y,
        _ => attr_text(a).is_some_and(|x| attr_text(b).is_some_and(|y| x.eq_ignore_ascii_case(&y))),
    }
}

fn text_of(v: &Value) -> String {
    attr_text(v).unwrap_or_default().to_lowercase()
}

impl Cond {
    /// Every operator of the condition holds. A field with several values (an array)
    /// satisfies a positive operator when any value does, a negative one when none does.
    fn holds(&self, actual: &[Value]) -> bool {
        self.ops.iter().all(|(op, vals)| {
            let any_val = |f: &dyn Fn(&Value, &Value) -> bool| actual.iter().any(|a| vals.iter().any(|v| f(a, v)));
            match op {
                Op::HasValue => !actual.is_empty(),
                Op::IsUnknown => actual.is_empty(),
                Op::Is | Op::In => any_val(&same),
                Op::IsNot | Op::NotIn => !any_val(&same),
                Op::Contains => any_val(&|a, v| text_of(a).contains(&text_of(v))),
                Op::NotContain => !any_val(&|a, v| text_of(a).contains(&text_of(v))),
                Op::StartsWith => any_val(&|a, v| text_of(a).starts_with(&text_of(v))),
                Op::EndsWith => any_val(&|a, v| text_of(a).ends_with(&text_of(v))),
                Op::MoreThan | Op::MoreThanEqual | Op::LessThan | Op::LessThanEqual => {
                    let Some(bound) = vals.first().and_then(num) else {
                        return false;
                    };
                    actual.iter().filter_map(num).any(|x| match op {
                        Op::MoreThan => x > bound,
                        Op::MoreThanEqual => x >= bound,
                        Op::LessThan => x < bound,
                        _ => x <= bound,
                    })
                }
                Op::After | Op::Before => {
                    let Some(bound) = vals.first().and_then(Value::as_str).and_then(parse_lenient) else {
                        return false;
                    };
                    actual.iter().filter_map(|a| a.as_str().and_then(parse_lenient)).any(|t| {
                        if *op == Op::After {
                            t > bound
                        } else {
                            t < bound
                        }
                    })
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn customer(country: &str, meta: Value) -> Customer {
        Customer {
            id: "cust_1".into(),
            source_id: Some("alice".into()),
            name: Some("Alice Smith".into()),
            description: None,
            email: Some("alice@example.com".into()),
            phone: None,
            birthday: None,
            birthdate: None,
            address: Some(crate::customer::Address {
                country: Some(country.into()),
                ..Default::default()
            }),
            metadata: meta.as_object().cloned().unwrap_or_default(),
            created_at: "2026-01-10T10:00:00.000Z".into(),
            updated_at: None,
        }
    }

    fn filter(v: Value) -> Result<Filter, InvalidInput> {
        Filter::parse(v.as_object().expect("object"))
    }

    #[test]
    fn spec_example_filters() {
        let f = filter(json!({"junction": "and", "address.country": {"conditions": {"$is": "Poland"}},
            "metadata.club_level": {"conditions": {"$in": ["Gold", "Silver"]}}}))
        .expect("valid");
        assert!(f.matches(&customer("Poland", json!({"club_level": "Gold"}))));
        assert!(!f.matches(&customer("Poland", json!({"club_level": "Bronze"}))));
        assert!(!f.matches(&customer("Spain", json!({"club_level": "Gold"}))));
        let after = filter(json!({"created_at": {"conditions": {"$after": ["2021-12-01T00:00:00.000Z"]}}})).expect("valid");
        assert!(after.matches(&customer("Poland", json!({}))));
        let before = filter(json!({"created_at": {"conditions": {"$before": ["2021-12-01"]}}})).expect("valid");
        assert!(!before.matches(&customer("Poland", json!({}))));
    }

    #[test]
    fn junction_or_numbers_arrays_and_unknowns() {
        let f = filter(
            json!({"junction": "or", "metadata.points": {"conditions": {"$more_than_equal": [41]}},
            "email": {"conditions": {"$ends_with": ["@vip.com"]}}}),
        )
        .expect("valid");
        assert!(f.matches(&customer("X", json!({"points": 41}))));
        assert!(f.matches(&customer("X", json!({"points": "50"}))));
        assert!(!f.matches(&customer("X", json!({"points": 40}))));
        let tags = filter(json!({"metadata.tags": {"conditions": {"$is": ["b"]}}})).expect("valid");
        assert!(tags.matches(&customer("X", json!({"tags": ["a", "b"]}))));
        let not = filter(json!({"metadata.tags": {"conditions": {"$is_not": ["b"]}}})).expect("valid");
        assert!(!not.matches(&customer("X", json!({"tags": ["a", "b"]}))));
        assert!(not.matches(&customer("X", json!({}))));
        let unknown = filter(json!({"metadata.vip": {"conditions": {"$is_unknown": []}}})).expect("valid");
        assert!(unknown.matches(&customer("X", json!({}))));
        assert!(!unknown.matches(&customer("X", json!({"vip": true}))));
    }

    #[test]
    fn bad_filters_are_refused() {
        for bad in [
            json!({}),
            json!({"junction": "xor", "email": {"conditions": {"$is": ["a"]}}}),
            json!({"password": {"conditions": {"$is": ["a"]}}}),
            json!({"email": {"conditions": {"$regex": ["a"]}}}),
            json!({"birthdate": {"conditions": {"$next_month": [true]}}}),
            json!({"email": {"conditions": {}}}),
            json!({"email": {}}),
            json!({"created_at": {"conditions": {"$after": ["soon"]}}}),
        ] {
            assert!(filter(bad.clone()).is_err(), "{bad}");
        }
        let input = |v: Value| serde_json::from_value::<SegmentInput>(v).expect("shape").check();
        assert!(input(json!({"name": "s", "type": "static"})).is_err());
        assert!(input(json!({"name": "s", "type": "static", "customers": ["a"], "filter": {}})).is_err());
        assert!(input(json!({"type": "static", "customers": ["a"]})).is_err());
        assert!(input(json!({"name": "s", "type": "static", "customers": vec!["c"; MAX_STATIC_CUSTOMERS + 1]})).is_err());
        assert!(input(json!({"name": "s", "type": "auto-update", "filter": {"email": {"conditions": {"$is": ["a"]}}}})).is_ok());
    }

    proptest! {
        // A condition and its negation split every customer between them.
        #[test]
        fn a_condition_and_its_negation_split_every_customer(region in "[a-cA-C]{0,2}", probe in "[a-c]{1,2}") {
            let meta = if region.is_empty() { json!({}) } else { json!({"region": region}) };
            let c = customer("X", meta);
            let yes = filter(json!({"metadata.region": {"conditions": {"$is": [probe.clone()]}}})).expect("valid");
            let no = filter(json!({"metadata.region": {"conditions": {"$is_not": [probe.clone()]}}})).expect("valid");
            prop_assert_ne!(yes.matches(&c), no.matches(&c));
        }
    }
}
