//! Reading a per-customer bound out of a validation rule's JSON.
//!
//! This restates only as much of the rule language as the bound needs, and gives up
//! (returns `None`, so nothing is checked) whenever the rule could let a redemption
//! through without its per-customer condition holding: an `or` or `not` in the logic,
//! operators without an upper bound, values that are not numbers.
//!
//! The engine evaluates `redemption.count.per_customer` against the customer's counting
//! redemptions *before* the one being made, and every operator of a condition must hold
//! (comparisons use their first value, `$is`/`$in` any value). So if the count before
//! may be at most `c`, a customer ends with at most `c + 1`.

use serde_json::{Map, Value};

const NAME: &str = "redemption.count.per_customer";

/// The most counting redemptions one customer can hold in the rule's scope when the rule
/// set is enforced, if the rule set makes such a bound certain.
pub fn per_customer_bound(rules: &Value) -> Option<i64> {
    let obj = rules.as_object()?;
    let mandatory: Vec<String> = match obj.get("logic").and_then(Value::as_str).map(str::trim) {
        Some(logic) if !logic.is_empty() => {
            let spaced = logic.replace(['(', ')'], " ");
            let tokens: Vec<&str> = spaced.split_whitespace().collect();
            if tokens.iter().any(|t| t.eq_ignore_ascii_case("or") || t.eq_ignore_ascii_case("not")) {
                return None;
            }
            tokens
                .into_iter()
                .filter(|t| !t.eq_ignore_ascii_case("and"))
                .map(str::to_string)
                .collect()
        }
        // Without logic the engine requires every condition.
        _ => obj.keys().filter(|k| *k != "logic").cloned().collect(),
    };
    mandatory
        .iter()
        .filter_map(|k| obj.get(k).and_then(Value::as_object))
        .filter(|c| c.get("name").and_then(Value::as_str) == Some(NAME) && c.get("property").is_none_or(Value::is_null))
        .filter_map(|c| c.get("conditions").and_then(Value::as_object).and_then(condition_bound))
        .min()
}

/// The bound from one condition's operators, which must all hold.
fn condition_bound(ops: &Map<String, Value>) -> Option<i64> {
    ops.iter().filter_map(|(op, vals)| op_bound(op, vals)).min()
}

fn op_bound(op: &str, vals: &Value) -> Option<i64> {
    let vals: Vec<&Value> = match vals {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    let numbers: Option<Vec<f64>> = vals.iter().map(|v| v.as_f64()).collect();
    let numbers = numbers.filter(|n| !n.is_empty() && n.iter().all(|x| x.is_finite()))?;
    // Largest count before the redemption that the operator admits, then one more.
    let last_allowed = match op {
        "$less_than" | "$lt" => numbers[0].ceil() - 1.0,
        "$less_than_or_equal" | "$lte" => numbers[0].floor(),
        "$is" | "$in" => numbers.iter().copied().filter(|x| x.fract() == 0.0).fold(-1.0, f64::max),
        _ => return None,
    };
    Some((last_allowed.max(-1.0).min(i64::MAX as f64 / 2.0) as i64) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(conditions: Value, logic: &str) -> Value {
        json!({"1": {"name": NAME, "conditions": conditions}, "2": {"name": "order.amount", "conditions": {"$more_than": [0]}}, "logic": logic})
    }

    #[test]
    fn bounds_follow_the_count_before_the_redemption() {
        assert_eq!(per_customer_bound(&rule(json!({"$less_than": [1]}), "1")), Some(1));
        assert_eq!(per_customer_bound(&rule(json!({"$less_than": [2.5]}), "1 and 2")), Some(3));
        assert_eq!(per_customer_bound(&rule(json!({"$lte": [1]}), "(1 and 2)")), Some(2));
        assert_eq!(per_customer_bound(&rule(json!({"$is": [0]}), "1")), Some(1));
        assert_eq!(per_customer_bound(&rule(json!({"$in": [0, 3]}), "1")), Some(4));
        assert_eq!(per_customer_bound(&rule(json!({"$less_than": [0]}), "1")), Some(0));
        assert_eq!(
            per_customer_bound(&rule(json!({"$more_than": [0], "$less_than": [4]}), "1")),
            Some(4)
        );
    }

    #[test]
    fn no_bound_unless_the_condition_must_hold() {
        assert_eq!(per_customer_bound(&rule(json!({"$less_than": [1]}), "1 or 2")), None);
        assert_eq!(per_customer_bound(&rule(json!({"$less_than": [1]}), "not 1")), None);
        assert_eq!(per_customer_bound(&rule(json!({"$less_than": [1]}), "2")), None);
        assert_eq!(per_customer_bound(&rule(json!({"$more_than": [1]}), "1")), None);
        assert_eq!(per_customer_bound(&rule(json!({"$less_than": ["one"]}), "1")), None);
        // Without logic every condition is required.
        assert_eq!(
            per_customer_bound(&json!({"1": {"name": NAME, "conditions": {"$lt": [2]}}})),
            Some(2)
        );
        assert_eq!(per_customer_bound(&json!("not an object")), None);
    }
}
