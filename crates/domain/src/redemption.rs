//! Validation and redemption requests.

use crate::customer::{check_identifier, check_metadata, CustomerInput};
use crate::error::InvalidInput;
use crate::order::OrderInput;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Redeemables per request.
pub const MAX_REDEEMABLES: usize = 30;
/// Longest reservation a session may hold.
pub const MAX_SESSION_SECS: i64 = 30 * 24 * 3600;

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct GiftCredits {
    #[serde(default)]
    pub credits: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct RedeemableRef {
    /// `voucher` (promotion tiers and stacks come with promotions).
    pub object: String,
    pub id: String,
    #[serde(default)]
    pub gift: Option<GiftCredits>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub reward: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct SessionRequest {
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    pub ttl: Option<serde_json::Number>,
    #[serde(default)]
    pub ttl_unit: Option<String>,
}

impl SessionRequest {
    /// The reservation's length in seconds.
    pub fn ttl_secs(&self) -> Result<i64, InvalidInput> {
        if self.kind.as_deref().is_some_and(|k| k != "LOCK") {
            return Err(InvalidInput::payload("'session.type' must be LOCK"));
        }
        let ttl = self.ttl.as_ref().and_then(serde_json::Number::as_f64).unwrap_or(7.0);
        let unit = match self.ttl_unit.as_deref().unwrap_or("DAYS") {
            "DAYS" => 86_400.0,
            "HOURS" => 3_600.0,
            "MINUTES" => 60.0,
            "SECONDS" => 1.0,
            "MILLISECONDS" => 0.001,
            "MICROSECONDS" => 0.000_001,
            "NANOSECONDS" => 0.000_000_001,
            other => return Err(InvalidInput::payload(format!("'session.ttl_unit' {other} is not a known unit"))),
        };
        let secs = (ttl * unit).ceil();
        if !(secs >= 1.0 && secs <= MAX_SESSION_SECS as f64) {
            return Err(InvalidInput::payload(format!(
                "a session lasts from 1 second to {} days",
                MAX_SESSION_SECS / 86_400
            )));
        }
        Ok(secs as i64)
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CheckoutRequest {
    pub redeemables: Vec<RedeemableRef>,
    #[serde(default)]
    pub order: Option<OrderInput>,
    #[serde(default)]
    pub customer: Option<CustomerInput>,
    #[serde(default)]
    pub session: Option<SessionRequest>,
    #[serde(default)]
    pub tracking_id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub options: Option<Value>,
}

impl CheckoutRequest {
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if self.redeemables.is_empty() || self.redeemables.len() > MAX_REDEEMABLES {
            return Err(InvalidInput {
                key: "invalid_redeemables",
                message: "Invalid redeemables".into(),
                details: format!("send 1 to {MAX_REDEEMABLES} redeemables"),
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, r) in self.redeemables.iter().enumerate() {
            check_identifier(&format!("redeemables[{i}].id"), &r.id)?;
            if !matches!(r.object.as_str(), "voucher" | "promotion_tier" | "promotion_stack") {
                return Err(InvalidInput::payload(format!(
                    "'redeemables[{i}].object' must be voucher, promotion_tier or promotion_stack"
                )));
            }
            if !seen.insert((r.object.clone(), r.id.clone())) {
                return Err(InvalidInput {
                    key: "duplicated_redeemables",
                    message: "Duplicated redeemables detected".into(),
                    details: format!("{} {} is listed twice", r.object, r.id),
                });
            }
            if let Some(c) = r.gift.as_ref().and_then(|g| g.credits) {
                if !(0..=crate::limits::MAX_AMOUNT).contains(&c) {
                    return Err(InvalidInput::payload(format!(
                        "'redeemables[{i}].gift.credits' must be from 0 to {}",
                        crate::limits::MAX_AMOUNT
                    )));
                }
            }
        }
        if let Some(o) = &self.order {
            o.validate()?;
        }
        if let Some(c) = &self.customer {
            c.validate()?;
        }
        if let Some(t) = &self.tracking_id {
            check_identifier("tracking_id", t)?;
        }
        if let Some(m) = &self.metadata {
            check_metadata("metadata", m)?;
        }
        if let Some(s) = &self.session {
            s.ttl_secs()?;
            if let Some(k) = &s.key {
                check_identifier("session.key", k)?;
            }
        }
        Ok(())
    }

    /// Whether `options.expand` asks for something.
    pub fn expands(&self, what: &str) -> bool {
        self.options
            .as_ref()
            .and_then(|o| o.get("expand"))
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(what)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_bounded() {
        let many: Vec<Value> = (0..31)
            .map(|i| serde_json::json!({"object": "voucher", "id": format!("C{i}")}))
            .collect();
        let r: CheckoutRequest = serde_json::from_value(serde_json::json!({"redeemables": many})).expect("parses");
        assert!(r.validate().is_err());
        let dup: CheckoutRequest = serde_json::from_value(
            serde_json::json!({"redeemables": [{"object": "voucher", "id": "A"}, {"object": "voucher", "id": "A"}]}),
        )
        .expect("parses");
        assert_eq!(dup.validate().map_err(|e| e.key), Err("duplicated_redeemables"));
        let s = SessionRequest {
            key: None,
            kind: Some("LOCK".into()),
            ttl: Some(30.into()),
            ttl_unit: Some("MINUTES".into()),
        };
        assert_eq!(s.ttl_secs(), Ok(1800));
        let s = SessionRequest {
            ttl_unit: Some("WEEKS".into()),
            ..s
        };
        assert!(s.ttl_secs().is_err());
    }
}

/// `POST /v1/qualifications`: which redeemables a customer and cart qualify for.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct QualificationRequest {
    #[serde(default)]
    pub customer: Option<CustomerInput>,
    #[serde(default)]
    pub order: Option<OrderInput>,
    #[serde(default)]
    pub tracking_id: Option<String>,
    #[serde(default)]
    pub scenario: Option<String>,
    #[serde(default)]
    pub options: Option<QualificationOptions>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub session: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QualificationOptions {
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub starting_after: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub filters: Option<Value>,
    #[serde(default)]
    pub expand: Option<Vec<String>>,
    #[serde(default)]
    pub sorting_rule: Option<String>,
}

pub const QUALIFICATION_SCENARIOS: &[&str] = &[
    "ALL",
    "CUSTOMER_WALLET",
    "AUDIENCE_ONLY",
    "PRODUCTS",
    "PRODUCTS_DISCOUNT",
    "PROMOTION_STACKS",
    "PRODUCTS_BY_CUSTOMER",
    "PRODUCTS_DISCOUNT_BY_CUSTOMER",
];
pub const MAX_QUALIFICATION_LIMIT: u32 = 50;
/// Most values all of a qualification's filter conditions may list together.
pub const MAX_FILTER_VALUES: usize = 100;

impl QualificationRequest {
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if let Some(s) = &self.scenario {
            if !QUALIFICATION_SCENARIOS.contains(&s.as_str()) {
                return Err(InvalidInput::payload(format!(
                    "'scenario' must be one of {}",
                    QUALIFICATION_SCENARIOS.join(", ")
                )));
            }
        }
        if let Some(o) = &self.options {
            if let Some(l) = o.limit {
                if !(1..=MAX_QUALIFICATION_LIMIT).contains(&l) {
                    return Err(InvalidInput::payload(format!(
                        "'options.limit' must be from 1 to {MAX_QUALIFICATION_LIMIT}"
                    )));
                }
            }
            if let Some(s) = &o.sorting_rule {
                if !matches!(s.as_str(), "BEST_DEAL" | "LEAST_DEAL" | "DEFAULT") {
                    return Err(InvalidInput::payload(
                        "'options.sorting_rule' must be BEST_DEAL, LEAST_DEAL or DEFAULT",
                    ));
                }
            }
            if let Some(s) = &o.starting_after {
                if crate::time::parse_lenient(s).is_none() {
                    return Err(InvalidInput::payload("'options.starting_after' must be a date-time"));
                }
            }
            if let Some(f) = &o.filters {
                let Some(map) = f.as_object() else {
                    return Err(InvalidInput::payload("'options.filters' must be an object"));
                };
                // Every candidate is tested against every value: keep that work small.
                let values: usize = map
                    .values()
                    .filter_map(|v| v.get("conditions").and_then(Value::as_object))
                    .flat_map(|c| c.values())
                    .map(|v| v.as_array().map_or(1, Vec::len))
                    .sum();
                if map.len() > 20 || values > MAX_FILTER_VALUES {
                    return Err(InvalidInput::payload(format!(
                        "'options.filters' may have at most 20 fields and {MAX_FILTER_VALUES} values in all"
                    )));
                }
            }
        }
        if let Some(o) = &self.order {
            o.validate()?;
        }
        if let Some(c) = &self.customer {
            c.validate()?;
        }
        if let Some(t) = &self.tracking_id {
            check_identifier("tracking_id", t)?;
        }
        if let Some(m) = &self.metadata {
            check_metadata("metadata", m)?;
        }
        Ok(())
    }

    /// The same cart and customer as a checkout request naming `redeemables`.
    pub fn as_checkout(&self, redeemables: Vec<RedeemableRef>, explain: bool) -> CheckoutRequest {
        CheckoutRequest {
            redeemables,
            order: self.order.clone(),
            customer: self.customer.clone(),
            session: None,
            tracking_id: self.tracking_id.clone(),
            metadata: self.metadata.clone(),
            options: explain.then(|| serde_json::json!({"expand": ["explain"]})),
        }
    }
}
