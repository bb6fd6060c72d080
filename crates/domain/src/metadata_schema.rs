//! Metadata schemas: typed metadata per resource, checked on every write of that resource.

use crate::customer::check_identifier;
use crate::error::InvalidInput;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Most properties one schema may define.
pub const MAX_PROPERTIES: usize = 100;
/// Most values an `eq` or `ne` list may hold.
const MAX_LIST: usize = 100;

/// Resources whose writes a schema checks.
pub const RESOURCES: &[&str] = &["customer", "product", "sku", "order", "voucher", "campaign"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DefType {
    String,
    Number,
    Object,
    Date,
    Datetime,
    Geopoint,
    Boolean,
    ImageUrl,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    #[serde(rename = "type")]
    pub kind: DefType,
    #[serde(default)]
    pub optional: bool,
    #[serde(default)]
    pub array: bool,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub eq: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ne: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<f64>,
}

impl Definition {
    fn check_shape(&self, name: &str) -> Result<(), InvalidInput> {
        let string_only = self.min_length.is_some() || self.max_length.is_some() || self.exact_length.is_some();
        if string_only && self.kind != DefType::String {
            return Err(InvalidInput::payload(format!(
                "'properties.{name}': length limits apply to the string type only"
            )));
        }
        let number_only = self.ne.is_some() || self.lt.is_some() || self.lte.is_some() || self.gt.is_some() || self.gte.is_some();
        if number_only && self.kind != DefType::Number {
            return Err(InvalidInput::payload(format!(
                "'properties.{name}': ne, lt, lte, gt and gte apply to the number type only"
            )));
        }
        if let Some(eq) = &self.eq {
            let ok = match self.kind {
                DefType::String => eq.iter().all(Value::is_string),
                DefType::Number => eq.iter().all(Value::is_number),
                _ => false,
            };
            if !ok || eq.len() > MAX_LIST {
                return Err(InvalidInput::payload(format!(
                    "'properties.{name}.eq' lists at most {MAX_LIST} values of the property's type (string or number)"
                )));
            }
        }
        if self.ne.as_ref().is_some_and(|v| v.len() > MAX_LIST) {
            return Err(InvalidInput::payload(format!(
                "'properties.{name}.ne' lists at most {MAX_LIST} values"
            )));
        }
        if let (Some(min), Some(max)) = (self.min_length, self.max_length) {
            if min > max {
                return Err(InvalidInput::payload(format!(
                    "'properties.{name}': min_length is above max_length"
                )));
            }
        }
        Ok(())
    }

    /// Why `v` does not fit, if it does not.
    fn reject(&self, v: &Value) -> Option<String> {
        if self.array {
            let Value::Array(items) = v else {
                return Some("must be an array".into());
            };
            return items.iter().find_map(|i| self.reject_one(i)).map(|e| format!("every element {e}"));
        }
        self.reject_one(v)
    }

    fn reject_one(&self, v: &Value) -> Option<String> {
        match self.kind {
            DefType::String | DefType::ImageUrl => {
                let Some(s) = v.as_str() else {
                    return Some("must be a string".into());
                };
                let n = s.chars().count() as u32;
                if self.kind == DefType::ImageUrl && !(s.starts_with("https://") || s.starts_with("http://")) {
                    return Some("must be an http or https URL".into());
                }
                if self.min_length.is_some_and(|m| n < m)
                    || self.max_length.is_some_and(|m| n > m)
                    || self.exact_length.is_some_and(|m| n != m)
                {
                    return Some("has the wrong length".into());
                }
                if self.eq.as_ref().is_some_and(|eq| !eq.iter().any(|e| e.as_str() == Some(s))) {
                    return Some("is not one of the allowed values".into());
                }
                None
            }
            DefType::Number => {
                let Some(x) = v.as_f64() else {
                    return Some("must be a number".into());
                };
                let bad = self.lt.is_some_and(|b| x >= b)
                    || self.lte.is_some_and(|b| x > b)
                    || self.gt.is_some_and(|b| x <= b)
                    || self.gte.is_some_and(|b| x < b)
                    || self.ne.as_ref().is_some_and(|ne| ne.contains(&x))
                    || self.eq.as_ref().is_some_and(|eq| !eq.iter().any(|e| e.as_f64() == Some(x)));
                bad.then(|| "is outside the allowed values".into())
            }
            DefType::Boolean => (!v.is_boolean()).then(|| "must be a boolean".into()),
            DefType::Object => (!v.is_object()).then(|| "must be an object".into()),
            DefType::Geopoint => {
                let ok = v
                    .get("latitude")
                    .and_then(Value::as_f64)
                    .is_some_and(|l| (-90.0..=90.0).contains(&l))
                    && v.get("longitude")
                        .and_then(Value::as_f64)
                        .is_some_and(|l| (-180.0..=180.0).contains(&l));
                (!ok).then(|| "must be {latitude, longitude} in range".into())
            }
            DefType::Date => {
                let ok = v.as_str().is_some_and(|s| s.parse::<jiff::civil::Date>().is_ok() && s.len() == 10);
                (!ok).then(|| "must be a date (YYYY-MM-DD)".into())
            }
            DefType::Datetime => {
                let ok = v.as_str().is_some_and(|s| crate::time::parse_lenient(s).is_some());
                (!ok).then(|| "must be an ISO 8601 date-time".into())
            }
        }
    }
}

/// A create or update body.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaInput {
    #[serde(default)]
    pub related_object: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub properties: Option<BTreeMap<String, Definition>>,
    #[serde(default)]
    pub allow_defined_only: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetadataSchema {
    pub id: String,
    pub related_object: String,
    #[schema(value_type = Object)]
    pub properties: BTreeMap<String, Definition>,
    pub allow_defined_only: bool,
    pub created_at: String,
    pub updated_at: Option<String>,
}

impl SchemaInput {
    fn check_properties(p: &BTreeMap<String, Definition>) -> Result<(), InvalidInput> {
        if p.len() > MAX_PROPERTIES {
            return Err(InvalidInput::payload(format!(
                "a schema defines at most {MAX_PROPERTIES} properties"
            )));
        }
        for (name, d) in p {
            check_identifier("properties", name)?;
            d.check_shape(name)?;
        }
        Ok(())
    }

    pub fn create(self, id: String, now: &str) -> Result<MetadataSchema, InvalidInput> {
        let related_object = self
            .related_object
            .ok_or_else(|| InvalidInput::payload("Payload must have required property 'related_object'"))?;
        if !RESOURCES.contains(&related_object.as_str()) {
            return Err(InvalidInput::payload(format!(
                "'related_object' must be one of {}",
                RESOURCES.join(", ")
            )));
        }
        let properties = self
            .properties
            .ok_or_else(|| InvalidInput::payload("Payload must have required property 'properties'"))?;
        Self::check_properties(&properties)?;
        Ok(MetadataSchema {
            id,
            related_object,
            properties,
            allow_defined_only: self.allow_defined_only.unwrap_or(false),
            created_at: now.to_string(),
            updated_at: None,
        })
    }

    /// Properties named in the body replace their definitions; others stay.
    pub fn update(self, existing: &MetadataSchema, now: &str) -> Result<MetadataSchema, InvalidInput> {
        if self.related_object.as_ref().is_some_and(|r| *r != existing.related_object) {
            return Err(InvalidInput::payload("'related_object' of a schema cannot change"));
        }
        let mut s = existing.clone();
        if let Some(p) = self.properties {
            s.properties.extend(p);
        }
        Self::check_properties(&s.properties)?;
        if let Some(a) = self.allow_defined_only {
            s.allow_defined_only = a;
        }
        s.updated_at = Some(now.to_string());
        Ok(s)
    }
}

impl MetadataSchema {
    /// Checks a resource's metadata as it will be stored.
    pub fn check(&self, metadata: &Map<String, Value>) -> Result<(), InvalidInput> {
        let fail = |details: String| InvalidInput {
            key: "metadata_validation_failed",
            message: "Metadata validation failed".into(),
            details,
        };
        for (name, d) in self.properties.iter().filter(|(_, d)| !d.deleted) {
            match metadata.get(name) {
                None | Some(Value::Null) if !d.optional => {
                    return Err(fail(format!("{} metadata '{name}' is required", self.related_object)))
                }
                None | Some(Value::Null) => {}
                Some(v) => {
                    if let Some(why) = d.reject(v) {
                        return Err(fail(format!("{} metadata '{name}' {why}", self.related_object)));
                    }
                }
            }
        }
        if self.allow_defined_only {
            if let Some(k) = metadata.keys().find(|k| self.properties.get(*k).is_none_or(|d| d.deleted)) {
                return Err(fail(format!(
                    "{} metadata '{k}' is not defined in the schema, which allows defined properties only",
                    self.related_object
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn schema(v: Value) -> MetadataSchema {
        serde_json::from_value::<SchemaInput>(v)
            .expect("input")
            .create("ms_1".into(), "now")
            .expect("valid")
    }

    fn meta(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn types_limits_and_defined_only() {
        let s = schema(json!({"related_object": "customer", "allow_defined_only": true, "properties": {
            "region": {"type": "string", "optional": false, "array": false, "eq": ["north", "south"]},
            "age": {"type": "number", "optional": true, "array": false, "gte": 18, "lt": 130},
            "tags": {"type": "string", "optional": true, "array": true, "max_length": 5},
            "joined": {"type": "date", "optional": true, "array": false},
            "vip": {"type": "boolean", "optional": true, "array": false},
            "old": {"type": "string", "optional": false, "array": false, "deleted": true},
        }}));
        s.check(&meta(
            json!({"region": "north", "age": 30, "tags": ["a", "bb"], "joined": "2024-02-29", "vip": true}),
        ))
        .expect("fits");
        for bad in [
            json!({}),
            json!({"region": "east"}),
            json!({"region": "north", "age": 17}),
            json!({"region": "north", "age": "30"}),
            json!({"region": "north", "tags": "a"}),
            json!({"region": "north", "tags": ["toolong"]}),
            json!({"region": "north", "joined": "2024-02-30"}),
            json!({"region": "north", "vip": "yes"}),
            json!({"region": "north", "colour": "red"}),
            json!({"region": "north", "old": "x"}),
        ] {
            let e = s.check(&meta(bad.clone())).expect_err(&bad.to_string());
            assert_eq!(e.key, "metadata_validation_failed");
        }
    }

    #[test]
    fn schemas_are_checked_when_written() {
        for bad in [
            json!({"related_object": "planet", "properties": {}}),
            json!({"related_object": "customer"}),
            json!({"related_object": "customer", "properties": {"a": {"type": "number", "optional": true, "array": false, "max_length": 3}}}),
            json!({"related_object": "customer", "properties": {"a": {"type": "string", "optional": true, "array": false, "lt": 3}}}),
            json!({"related_object": "customer", "properties": {"a": {"type": "string", "optional": true, "array": false, "eq": [1]}}}),
            json!({"related_object": "customer", "properties": {"a": {"type": "colour", "optional": true, "array": false}}}),
        ] {
            let r = serde_json::from_value::<SchemaInput>(bad.clone())
                .map_err(|e| e.to_string())
                .and_then(|i| i.create("x".into(), "now").map_err(|e| e.details));
            assert!(r.is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn numbers_in_bounds_pass_and_outside_fail(x in -1000.0f64..1000.0, lo in -500.0f64..0.0, hi in 0.0f64..500.0) {
            let s = schema(json!({"related_object": "order", "properties": {"n": {"type": "number", "optional": false, "array": false, "gte": lo, "lte": hi}}}));
            let r = s.check(&meta(json!({"n": x})));
            prop_assert_eq!(r.is_ok(), x >= lo && x <= hi);
        }
    }
}
