//! Customers: the people a project's codes and promotions are for.

use crate::error::InvalidInput;
use crate::limits::{MAX_ID_LEN, MAX_METADATA_BYTES, MAX_TEXT_LEN};
use crate::time;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Deserializes a field that distinguishes "absent" (`None`) from "null" (`Some(None)`),
/// so a partial update can clear a field without touching the others.
pub fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Address {
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub line_1: Option<String>,
    #[serde(default)]
    pub line_2: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub postal_code: Option<String>,
}

/// The stored customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Customer {
    pub id: String,
    pub source_id: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub birthday: Option<String>,
    pub birthdate: Option<String>,
    pub address: Option<Address>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub created_at: String,
    pub updated_at: Option<String>,
}

/// Longest attribute value kept in the search index; longer values are not searchable.
pub const MAX_INDEXED_VALUE_LEN: usize = 255;

/// Canonical text of a scalar attribute value, as search and segment filters compare it:
/// strings as they are, numbers and booleans as JSON.
pub fn attr_text(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (s.len() <= MAX_INDEXED_VALUE_LEN).then_some(s)
}

impl Customer {
    /// The searchable attributes: address parts and metadata values (each element of
    /// an array value), as `(name, value)` pairs such as `("metadata.region", "EU")`.
    /// Email, name and source id have indexed columns of their own.
    pub fn attributes(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(a) = &self.address {
            for (k, v) in [
                ("address.city", &a.city),
                ("address.state", &a.state),
                ("address.country", &a.country),
                ("address.postal_code", &a.postal_code),
            ] {
                if let Some(v) = v.as_ref().filter(|v| v.len() <= MAX_INDEXED_VALUE_LEN) {
                    out.push((k.to_string(), v.clone()));
                }
            }
        }
        for (k, v) in &self.metadata {
            let name = format!("metadata.{k}");
            match v {
                Value::Array(items) => out.extend(items.iter().filter_map(attr_text).map(|t| (name.clone(), t))),
                other => out.extend(attr_text(other).map(|t| (name.clone(), t))),
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// Create, upsert or update input. Absent fields are left alone; `null` clears a field.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct CustomerInput {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub source_id: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub birthday: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub birthdate: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Address>)]
    pub address: Option<Option<Address>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Option<Map<String, Value>>>,
}

pub(crate) fn check_len(field: &str, v: &Option<String>, max: usize) -> Result<(), InvalidInput> {
    if let Some(s) = v {
        if s.len() > max {
            return Err(InvalidInput::payload(format!("'{field}' is longer than {max} characters")));
        }
    }
    Ok(())
}

pub(crate) fn check_nested_len(field: &str, v: &Option<Option<String>>, max: usize) -> Result<(), InvalidInput> {
    check_len(field, &v.clone().flatten(), max)
}

pub fn check_metadata(field: &str, m: &Map<String, Value>) -> Result<(), InvalidInput> {
    let size = serde_json::to_vec(m).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > MAX_METADATA_BYTES {
        return Err(InvalidInput::payload(format!(
            "'{field}' is larger than {MAX_METADATA_BYTES} bytes"
        )));
    }
    Ok(())
}

pub fn check_identifier(field: &str, v: &str) -> Result<(), InvalidInput> {
    if v.is_empty() || v.len() > MAX_ID_LEN {
        return Err(InvalidInput::payload(format!("'{field}' must be 1 to {MAX_ID_LEN} characters")));
    }
    if v.chars().any(char::is_control) {
        return Err(InvalidInput::payload(format!("'{field}' must not contain control characters")));
    }
    Ok(())
}

impl CustomerInput {
    /// True when the input only names a customer and changes nothing.
    pub fn is_reference_only(&self) -> bool {
        self.name.is_none()
            && self.description.is_none()
            && self.email.is_none()
            && self.phone.is_none()
            && self.birthday.is_none()
            && self.birthdate.is_none()
            && self.address.is_none()
            && self.metadata.is_none()
    }

    pub fn validate(&self) -> Result<(), InvalidInput> {
        if let Some(id) = &self.id {
            check_identifier("id", id)?;
        }
        if let Some(s) = &self.source_id {
            check_identifier("source_id", s)?;
        }
        check_nested_len("name", &self.name, MAX_ID_LEN)?;
        check_nested_len("email", &self.email, MAX_ID_LEN)?;
        check_nested_len("phone", &self.phone, 64)?;
        check_nested_len("description", &self.description, MAX_TEXT_LEN)?;
        if let Some(Some(email)) = &self.email {
            if !email.contains('@') {
                return Err(InvalidInput::payload("'email' must be an email address"));
            }
        }
        for (name, v) in [("birthdate", &self.birthdate), ("birthday", &self.birthday)] {
            if let Some(Some(d)) = v {
                if !time::is_valid_date(d) {
                    return Err(InvalidInput::payload(format!("'{name}' must be a date in the form YYYY-MM-DD")));
                }
            }
        }
        if let Some(Some(a)) = &self.address {
            for (n, v) in [
                ("address.city", &a.city),
                ("address.state", &a.state),
                ("address.line_1", &a.line_1),
                ("address.line_2", &a.line_2),
                ("address.country", &a.country),
                ("address.postal_code", &a.postal_code),
            ] {
                check_len(n, v, MAX_ID_LEN)?;
            }
        }
        if let Some(Some(m)) = &self.metadata {
            check_metadata("metadata", m)?;
        }
        Ok(())
    }

    /// A new customer from this input. The caller has established that none exists.
    pub fn create(self, id: String, now: &str) -> Customer {
        let mut c = Customer {
            id,
            source_id: None,
            name: None,
            description: None,
            email: None,
            phone: None,
            birthday: None,
            birthdate: None,
            address: None,
            metadata: Map::new(),
            created_at: now.to_string(),
            updated_at: None,
        };
        c.source_id = self.source_id.clone();
        self.apply_fields(&mut c);
        c
    }

    /// Applies the fields this input carries to an existing customer.
    pub fn update(self, existing: &Customer, now: &str) -> Customer {
        let mut c = existing.clone();
        if c.source_id.is_none() {
            c.source_id = self.source_id.clone();
        }
        self.apply_fields(&mut c);
        c.updated_at = Some(now.to_string());
        c
    }

    fn apply_fields(self, c: &mut Customer) {
        if let Some(v) = self.name {
            c.name = v;
        }
        if let Some(v) = self.description {
            c.description = v;
        }
        if let Some(v) = self.email {
            c.email = v;
        }
        if let Some(v) = self.phone {
            c.phone = v;
        }
        if let Some(v) = self.birthday {
            c.birthday = v;
        }
        if let Some(v) = self.birthdate {
            c.birthdate = v;
        }
        if let Some(v) = self.address {
            c.address = v;
        }
        if let Some(v) = self.metadata {
            c.metadata = v.unwrap_or_default();
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct RedemptionsSummary {
    pub total_redeemed: i64,
    pub total_failed: i64,
    pub total_succeeded: i64,
    pub total_rolled_back: i64,
    pub total_rollback_failed: i64,
    pub total_rollback_succeeded: i64,
    pub gift: GiftSummary,
    pub loyalty_card: LoyaltyCardSummary,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct GiftSummary {
    pub redeemed_amount: i64,
    pub amount_to_go: i64,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct LoyaltyCardSummary {
    pub redeemed_points: i64,
    pub points_to_go: i64,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct OrdersSummary {
    pub total_amount: i64,
    pub total_count: i64,
    pub average_amount: i64,
    pub last_order_amount: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_order_date: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct CustomerSummary {
    pub redemptions: RedemptionsSummary,
    pub orders: OrdersSummary,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct CustomerLoyalty {
    pub points: i64,
    pub referred_customers: i64,
    #[schema(value_type = Object)]
    pub campaigns: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct CustomerReferrals {
    pub total: i64,
    #[schema(value_type = Vec<Object>)]
    pub campaigns: Vec<Value>,
}

/// A customer as the API returns it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CustomerView {
    #[serde(flatten)]
    pub customer: Customer,
    pub summary: CustomerSummary,
    pub loyalty: CustomerLoyalty,
    pub referrals: CustomerReferrals,
    #[schema(value_type = Object)]
    pub system_metadata: Map<String, Value>,
    /// Always `customer`.
    pub object: &'static str,
}

impl CustomerView {
    pub fn new(customer: Customer, summary: CustomerSummary) -> Self {
        CustomerView {
            customer,
            summary,
            loyalty: CustomerLoyalty::default(),
            referrals: CustomerReferrals::default(),
            system_metadata: Map::new(),
            object: "customer",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_clears_absent_keeps() {
        let input: CustomerInput = serde_json::from_str(r#"{"name":"A","email":"a@x.io","metadata":{"k":1}}"#).expect("valid");
        input.validate().expect("valid");
        let c = input.create("cust_1".into(), "2024-01-01T00:00:00.000Z");
        let patch: CustomerInput = serde_json::from_str(r#"{"name":null}"#).expect("valid");
        let c2 = patch.update(&c, "2024-01-02T00:00:00.000Z");
        assert_eq!(c2.name, None);
        assert_eq!(c2.email.as_deref(), Some("a@x.io"));
        assert_eq!(c2.metadata.get("k"), Some(&Value::from(1)));
        assert_eq!(c2.updated_at.as_deref(), Some("2024-01-02T00:00:00.000Z"));
    }

    #[test]
    fn invalid_inputs_are_refused() {
        for body in [r#"{"email":"nope"}"#, r#"{"birthdate":"1990-13-01"}"#, r#"{"source_id":""}"#] {
            let input: CustomerInput = serde_json::from_str(body).expect("parses");
            assert!(input.validate().is_err(), "{body}");
        }
        let long = format!(r#"{{"name":"{}"}}"#, "x".repeat(300));
        let input: CustomerInput = serde_json::from_str(&long).expect("parses");
        assert!(input.validate().is_err());
    }
}
