//! Orders: the carts that validations and redemptions are computed against.

use crate::customer::{check_identifier, check_metadata, double_option, CustomerInput};
use crate::error::InvalidInput;
use crate::limits::{MAX_AMOUNT, MAX_ORDER_ITEMS, MAX_QUANTITY};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum OrderStatus {
    Created,
    Paid,
    Canceled,
    Fulfilled,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Created => "CREATED",
            OrderStatus::Paid => "PAID",
            OrderStatus::Canceled => "CANCELED",
            OrderStatus::Fulfilled => "FULFILLED",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RelatedObject {
    Product,
    Sku,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related_object: Option<RelatedObject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount_quantity: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_quantity: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount_amount: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_amount: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtotal_amount: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub product: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub sku: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Order {
    pub id: String,
    pub source_id: Option<String>,
    pub status: OrderStatus,
    pub amount: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_amount: Option<i64>,
    pub discount_amount: i64,
    pub items_discount_amount: i64,
    pub total_discount_amount: i64,
    pub total_amount: i64,
    pub applied_discount_amount: i64,
    pub items_applied_discount_amount: i64,
    pub total_applied_discount_amount: i64,
    pub items: Vec<OrderItem>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub customer_id: Option<String>,
    pub referrer_id: Option<String>,
    pub created_at: String,
    pub updated_at: Option<String>,
}

/// A reference to a customer inside an order: an existing one by id or source id, or a
/// new one (upserted by source id) with its details.
pub type CustomerRef = CustomerInput;

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct OrderInput {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub source_id: Option<String>,
    #[serde(default)]
    pub status: Option<OrderStatus>,
    #[serde(default)]
    pub amount: Option<i64>,
    #[serde(default)]
    pub initial_amount: Option<i64>,
    #[serde(default)]
    pub discount_amount: Option<i64>,
    #[serde(default)]
    pub items: Option<Vec<OrderItem>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Option<Map<String, Value>>>,
    #[serde(default)]
    pub customer: Option<CustomerRef>,
    #[serde(default)]
    pub referrer: Option<CustomerRef>,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub referrer_id: Option<String>,
}

fn check_amount(field: &str, v: Option<i64>) -> Result<(), InvalidInput> {
    if let Some(a) = v {
        if !(0..=MAX_AMOUNT).contains(&a) {
            return Err(InvalidInput::payload(format!(
                "'{field}' must be an integer amount in minor units from 0 to {MAX_AMOUNT}"
            )));
        }
    }
    Ok(())
}

impl OrderInput {
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if let Some(id) = &self.id {
            check_identifier("id", id)?;
        }
        if let Some(s) = &self.source_id {
            check_identifier("source_id", s)?;
        }
        check_amount("amount", self.amount)?;
        check_amount("initial_amount", self.initial_amount)?;
        check_amount("discount_amount", self.discount_amount)?;
        if let Some(items) = &self.items {
            if items.len() > MAX_ORDER_ITEMS {
                return Err(InvalidInput::payload(format!("an order may have at most {MAX_ORDER_ITEMS} items")));
            }
            for (i, item) in items.iter().enumerate() {
                for (n, v) in [
                    ("amount", item.amount),
                    ("price", item.price),
                    ("discount_amount", item.discount_amount),
                    ("initial_amount", item.initial_amount),
                ] {
                    check_amount(&format!("items[{i}].{n}"), v)?;
                }
                for (n, v) in [
                    ("quantity", item.quantity),
                    ("discount_quantity", item.discount_quantity),
                    ("initial_quantity", item.initial_quantity),
                ] {
                    if let Some(q) = v {
                        if !(0..=MAX_QUANTITY).contains(&q) {
                            return Err(InvalidInput::payload(format!("'items[{i}].{n}' must be from 0 to {MAX_QUANTITY}")));
                        }
                    }
                }
                for (n, v) in [
                    ("product_id", &item.product_id),
                    ("sku_id", &item.sku_id),
                    ("source_id", &item.source_id),
                ] {
                    if let Some(s) = v {
                        check_identifier(&format!("items[{i}].{n}"), s)?;
                    }
                }
                if let Some(m) = &item.metadata {
                    check_metadata(&format!("items[{i}].metadata"), m)?;
                }
            }
        }
        if let Some(Some(m)) = &self.metadata {
            check_metadata("metadata", m)?;
        }
        for c in [&self.customer, &self.referrer].into_iter().flatten() {
            c.validate()?;
        }
        Ok(())
    }

    /// Builds the order from this input over an optional existing order; `customer_id` and
    /// `referrer_id` are the already-resolved references.
    pub fn build(
        self,
        id: String,
        existing: Option<&Order>,
        customer_id: Option<String>,
        referrer_id: Option<String>,
        now: &str,
    ) -> Result<Order, InvalidInput> {
        let items_given = self.items.is_some();
        let items = match self.items {
            Some(items) => items.into_iter().map(complete_item).collect::<Result<Vec<_>, _>>()?,
            None => existing.map(|o| o.items.clone()).unwrap_or_default(),
        };
        let items_amount = sum(items.iter().map(|i| i.amount.unwrap_or(0)))?;
        let items_discount = sum(items.iter().map(|i| i.discount_amount.unwrap_or(0)))?;
        // An explicit amount wins; new items recompute it; otherwise the stored one stands.
        let amount = match (self.amount, items_given, existing) {
            (Some(a), _, _) => a,
            (None, true, _) | (None, false, None) => items_amount,
            (None, false, Some(o)) => o.amount,
        };
        let discount = self.discount_amount.or(existing.map(|o| o.discount_amount)).unwrap_or(0);
        let total_discount = discount.checked_add(items_discount).ok_or_else(overflow)?;
        let total = amount.saturating_sub(total_discount).max(0);
        let metadata = match self.metadata {
            Some(m) => m.unwrap_or_default(),
            None => existing.map(|o| o.metadata.clone()).unwrap_or_default(),
        };
        Ok(Order {
            id,
            source_id: existing.and_then(|o| o.source_id.clone()).or(self.source_id),
            status: self.status.or(existing.map(|o| o.status)).unwrap_or(OrderStatus::Created),
            amount,
            initial_amount: self.initial_amount.or(existing.and_then(|o| o.initial_amount)),
            discount_amount: discount,
            items_discount_amount: items_discount,
            total_discount_amount: total_discount,
            total_amount: total,
            applied_discount_amount: existing.map(|o| o.applied_discount_amount).unwrap_or(0),
            items_applied_discount_amount: existing.map(|o| o.items_applied_discount_amount).unwrap_or(0),
            total_applied_discount_amount: existing.map(|o| o.total_applied_discount_amount).unwrap_or(0),
            items,
            metadata,
            customer_id: customer_id.or(existing.and_then(|o| o.customer_id.clone())),
            referrer_id: referrer_id.or(existing.and_then(|o| o.referrer_id.clone())),
            created_at: existing.map(|o| o.created_at.clone()).unwrap_or_else(|| now.to_string()),
            updated_at: existing.map(|_| now.to_string()),
        })
    }
}

fn overflow() -> InvalidInput {
    InvalidInput::payload("order amounts are too large")
}

fn sum(mut values: impl Iterator<Item = i64>) -> Result<i64, InvalidInput> {
    values
        .try_fold(0i64, |acc, v| acc.checked_add(v))
        .filter(|v| *v <= MAX_AMOUNT)
        .ok_or_else(overflow)
}

/// Fills an item's derived amounts: `amount = price * quantity` when not given, and
/// `subtotal_amount = amount - discount_amount`, never below zero.
fn complete_item(mut item: OrderItem) -> Result<OrderItem, InvalidInput> {
    if item.amount.is_none() {
        if let (Some(p), Some(q)) = (item.price, item.quantity) {
            let a = p.checked_mul(q).filter(|a| *a <= MAX_AMOUNT).ok_or_else(overflow)?;
            item.amount = Some(a);
        }
    }
    if item.related_object.is_none() {
        item.related_object = if item.sku_id.is_some() {
            Some(RelatedObject::Sku)
        } else {
            Some(RelatedObject::Product)
        };
    }
    let amount = item.amount.unwrap_or(0);
    item.subtotal_amount = Some(amount.saturating_sub(item.discount_amount.unwrap_or(0)).max(0));
    Ok(item)
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ObjectRef {
    pub id: String,
    pub object: &'static str,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderItemView {
    pub object: &'static str,
    #[serde(flatten)]
    pub item: OrderItem,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderView {
    pub id: String,
    pub source_id: Option<String>,
    pub status: OrderStatus,
    pub amount: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_amount: Option<i64>,
    pub discount_amount: i64,
    pub items_discount_amount: i64,
    pub total_discount_amount: i64,
    pub total_amount: i64,
    pub applied_discount_amount: i64,
    pub items_applied_discount_amount: i64,
    pub total_applied_discount_amount: i64,
    pub items: Vec<OrderItemView>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub customer_id: Option<String>,
    pub referrer_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<ObjectRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrer: Option<ObjectRef>,
    pub created_at: String,
    pub updated_at: Option<String>,
    /// Always `order`.
    pub object: &'static str,
}

impl From<Order> for OrderView {
    fn from(o: Order) -> Self {
        OrderView {
            customer: o.customer_id.clone().map(|id| ObjectRef { id, object: "customer" }),
            referrer: o.referrer_id.clone().map(|id| ObjectRef { id, object: "customer" }),
            id: o.id,
            source_id: o.source_id,
            status: o.status,
            amount: o.amount,
            initial_amount: o.initial_amount,
            discount_amount: o.discount_amount,
            items_discount_amount: o.items_discount_amount,
            total_discount_amount: o.total_discount_amount,
            total_amount: o.total_amount,
            applied_discount_amount: o.applied_discount_amount,
            items_applied_discount_amount: o.items_applied_discount_amount,
            total_applied_discount_amount: o.total_applied_discount_amount,
            items: o
                .items
                .into_iter()
                .map(|item| OrderItemView {
                    object: "order_item",
                    item,
                })
                .collect(),
            metadata: o.metadata,
            customer_id: o.customer_id,
            referrer_id: o.referrer_id,
            created_at: o.created_at,
            updated_at: o.updated_at,
            object: "order",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn amounts_are_derived_from_items() {
        let input: OrderInput = serde_json::from_str(
            r#"{"items":[{"product_id":"p1","quantity":2,"price":1500},{"sku_id":"s1","quantity":1,"amount":700,"discount_amount":100}],"discount_amount":200}"#,
        )
        .expect("valid");
        input.validate().expect("valid");
        let o = input.build("ord_1".into(), None, None, None, "t").expect("builds");
        assert_eq!(o.amount, 3700);
        assert_eq!(o.items_discount_amount, 100);
        assert_eq!(o.total_discount_amount, 300);
        assert_eq!(o.total_amount, 3400);
        assert_eq!(o.items[0].amount, Some(3000));
        assert_eq!(o.items[1].subtotal_amount, Some(600));
        assert_eq!(o.items[1].related_object, Some(RelatedObject::Sku));
        assert_eq!(o.status, OrderStatus::Created);
    }

    #[test]
    fn too_many_items_or_negative_amounts_are_refused() {
        let items: Vec<_> = (0..501).map(|_| serde_json::json!({"quantity":1,"price":1})).collect();
        let input: OrderInput = serde_json::from_value(serde_json::json!({ "items": items })).expect("parses");
        assert!(input.validate().is_err());
        let input: OrderInput = serde_json::from_str(r#"{"amount":-5}"#).expect("parses");
        assert!(input.validate().is_err());
    }

    proptest! {
        #[test]
        fn totals_never_negative_and_never_overflow(
            items in prop::collection::vec((0i64..=MAX_AMOUNT, 0i64..=MAX_QUANTITY, 0i64..=MAX_AMOUNT), 0..20),
            discount in 0i64..=MAX_AMOUNT,
        ) {
            let items: Vec<_> = items.iter().map(|(p, q, d)| serde_json::json!({"price": p, "quantity": q, "discount_amount": d})).collect();
            let input: OrderInput = serde_json::from_value(serde_json::json!({"items": items, "discount_amount": discount})).expect("parses");
            prop_assert!(input.validate().is_ok());
            if let Ok(o) = input.build("o".into(), None, None, None, "t") {
                prop_assert!(o.total_amount >= 0);
                prop_assert!(o.total_amount <= o.amount);
                for i in &o.items {
                    prop_assert!(i.subtotal_amount.unwrap_or(0) >= 0);
                }
            }
        }
    }
}
