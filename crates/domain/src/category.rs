//! Categories: named, ordered groups of redeemables that stacking rules refer to.

use crate::error::InvalidInput;
use serde::Deserialize;
use utoipa::ToSchema;

/// Most categories one project may have: the checkout loads all of them with every
/// cached promotion set, so the set must stay small.
pub const MAX_CATEGORIES: i64 = 1000;
pub const MAX_NAME_LEN: usize = 200;
/// Hierarchies are compared, never summed; the cap only keeps them in every client's
/// integer range.
pub const MAX_HIERARCHY: i64 = i32::MAX as i64;

/// A create or update body. Voucherify requires both fields on both operations.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryInput {
    /// Unique within the project.
    pub name: Option<String>,
    /// From 0; lower hierarchies are applied first under CATEGORY_HIERARCHY sorting.
    pub hierarchy: Option<i64>,
}

/// A checked category name and hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryFields {
    pub name: String,
    pub hierarchy: i64,
}

impl CategoryInput {
    pub fn parse(self) -> Result<CategoryFields, InvalidInput> {
        let name = self
            .name
            .ok_or_else(|| InvalidInput::payload("Payload should have required property 'name'"))?;
        let hierarchy = self
            .hierarchy
            .ok_or_else(|| InvalidInput::payload("Payload should have required property 'hierarchy'"))?;
        check_name(&name)?;
        if !(0..=MAX_HIERARCHY).contains(&hierarchy) {
            return Err(InvalidInput::payload(format!("'hierarchy' must be from 0 to {MAX_HIERARCHY}")));
        }
        Ok(CategoryFields { name, hierarchy })
    }
}

/// Names are shown in dashboards and matched exactly, so blank or control-character
/// names (which look identical to others) are refused.
pub fn check_name(name: &str) -> Result<(), InvalidInput> {
    if name.trim().is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(InvalidInput::payload(format!(
            "'name' must be 1 to {MAX_NAME_LEN} characters and not blank"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(InvalidInput::payload("'name' must not contain control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(v: serde_json::Value) -> CategoryInput {
        serde_json::from_value(v).expect("input")
    }

    #[test]
    fn both_fields_are_required_and_checked() {
        let ok = input(serde_json::json!({"name": "Summer", "hierarchy": 0})).parse().expect("valid");
        assert_eq!(
            ok,
            CategoryFields {
                name: "Summer".into(),
                hierarchy: 0
            }
        );
        let missing = input(serde_json::json!({"name": "Summer"})).parse().unwrap_err();
        assert!(missing.details.contains("'hierarchy'"));
        assert!(input(serde_json::json!({"hierarchy": 1})).parse().is_err());
        assert!(input(serde_json::json!({"name": "x", "hierarchy": -1})).parse().is_err());
        assert!(input(serde_json::json!({"name": "  ", "hierarchy": 1})).parse().is_err());
        assert!(input(serde_json::json!({"name": "a\u{0}b", "hierarchy": 1})).parse().is_err());
        assert!(serde_json::from_value::<CategoryInput>(serde_json::json!({"name": "x", "hierarchy": 1, "bogus": 1})).is_err());
    }
}
