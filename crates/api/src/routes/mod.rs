pub mod audit;
pub mod categories;
pub mod checkout;
pub mod coupons;
pub mod customers;
pub mod exports;
pub mod health;
pub mod imports;
pub mod management;
pub mod metadata_schemas;
pub mod orders;
pub mod products;
pub mod promotions;
pub mod publications;
pub mod rules;
pub mod segments;
pub mod stacking_rules;
pub mod stacks;
pub mod webhooks;

use crate::error::ApiError;
use axum::extract::RawQuery;
use serde::Serialize;
use std::collections::BTreeMap;

/// Raw query parameters as a map (`created_at[before]` keys included).
pub fn query_map(q: RawQuery) -> Result<BTreeMap<String, String>, ApiError> {
    let raw = q.0.unwrap_or_default();
    if raw.len() > 4096 {
        return Err(ApiError::bad_request(
            "invalid_query_params",
            "Invalid query parameters",
            "The query string is too long.",
        ));
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&raw)
        .map_err(|e| ApiError::bad_request("invalid_query_params", "Invalid query parameters", e.to_string()))?;
    Ok(pairs.into_iter().collect())
}

/// Voucherify's list envelope with a resource-specific array name.
pub fn list_body<T: Serialize>(data_ref: &'static str, items: Vec<T>, total: i64, has_more: Option<bool>) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("object".into(), "list".into());
    m.insert("data_ref".into(), data_ref.into());
    m.insert(data_ref.into(), serde_json::to_value(items).unwrap_or_default());
    m.insert("total".into(), total.into());
    if let Some(h) = has_more {
        m.insert("has_more".into(), h.into());
    }
    serde_json::Value::Object(m)
}
