//! CSV exports: which objects and fields an export may hold, its order and filters, how a
//! row's cells and filter values are read from the object's JSON, and the export's
//! download token.
//!
//! The store hands every row over as the object's API view (what `GET` of that object
//! shows), with the few values the view lacks (a campaign's name, a holder's source id,
//! a customer's counts) under the key `_x`. Everything here is pure, so the field map, the
//! filter semantics and the token are unit-tested without a database.

use crate::error::InvalidInput;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

/// Most columns one export may have.
pub const MAX_FIELDS: usize = 100;
/// Most filtered attributes, and values per condition.
pub const MAX_FILTERS: usize = 20;
pub const MAX_FILTER_VALUES: usize = 100;
/// How long a download URL works after it was handed out (by a read of the export).
pub const TOKEN_TTL_SECS: i64 = 3600;
/// Exports of one project scheduled or running at once; more are refused until one ends.
pub const MAX_UNFINISHED_PER_PROJECT: i64 = 10;
/// The largest CSV an export may produce; a larger one ends in `ERROR`.
pub const MAX_EXPORT_BYTES: u64 = 4 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportedObject {
    Voucher,
    Redemption,
    Customer,
    Publication,
    Order,
}

/// Objects the spec names that Tessera does not export (yet).
const NOT_EXPORTED: &[&str] = &["points_expiration", "voucher_transactions", "product", "sku"];

const VOUCHER_FIELDS: &[&str] = &[
    "code",
    "voucher_type",
    "value",
    "formula",
    "discount_type",
    "campaign",
    "category",
    "start_date",
    "expiration_date",
    "gift_balance",
    "loyalty_balance",
    "redemption_quantity",
    "redemption_count",
    "active",
    "qr_code",
    "bar_code",
    "metadata",
    "id",
    "is_referral_code",
    "created_at",
    "updated_at",
    "validity_timeframe_interval",
    "validity_timeframe_duration",
    "validity_day_of_week",
    "discount_amount_limit",
    "campaign_id",
    "additional_info",
    "customer_id",
    "discount_effect",
    "discount_unit_type",
    "discount_unit_effect",
    "validation_rules_id",
    "customer_source_id",
];
const REDEMPTION_FIELDS: &[&str] = &[
    "id",
    "object",
    "date",
    "voucher_code",
    "campaign",
    "promotion_tier_id",
    "customer_id",
    "customer_source_id",
    "customer_name",
    "tracking_id",
    "order_id",
    "order_amount",
    "gift_amount",
    "loyalty_points",
    "result",
    "failure_code",
    "failure_message",
    "metadata",
];
const CUSTOMER_FIELDS: &[&str] = &[
    "name",
    "id",
    "description",
    "email",
    "source_id",
    "created_at",
    "address_city",
    "address_state",
    "address_line_1",
    "address_line_2",
    "address_country",
    "address_postal_code",
    "redemptions_total_redeemed",
    "redemptions_total_failed",
    "redemptions_total_succeeded",
    "redemptions_total_rolled_back",
    "redemptions_total_rollback_failed",
    "redemptions_total_rollback_succeeded",
    "orders_total_amount",
    "orders_total_count",
    "orders_average_amount",
    "orders_last_order_amount",
    "orders_last_order_date",
    "loyalty_points",
    "loyalty_referred_customers",
    "updated_at",
    "phone",
    "birthday",
    "metadata",
    "birthdate",
];
const PUBLICATION_FIELDS: &[&str] = &[
    "voucher_code",
    "customer_id",
    "customer_source_id",
    "date",
    "channel",
    "campaign",
    "is_winner",
    "metadata",
];
const ORDER_FIELDS: &[&str] = &[
    "id",
    "source_id",
    "created_at",
    "updated_at",
    "status",
    "amount",
    "discount_amount",
    "items_discount_amount",
    "total_discount_amount",
    "total_amount",
    "customer_id",
    "referrer_id",
    "metadata",
];

/// What a filter compares, which decides the conditions it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Date,
    Number,
    Bool,
    /// Metadata values: any JSON scalar.
    Any,
}

const VOUCHER_FILTERS: &[(&str, Kind)] = &[
    ("created_at", Kind::Date),
    ("updated_at", Kind::Date),
    ("start_date", Kind::Date),
    ("expiration_date", Kind::Date),
    ("campaign_id", Kind::Text),
    ("code", Kind::Text),
    ("active", Kind::Bool),
    ("holder_id", Kind::Text),
    ("published_for_customer_id", Kind::Text),
    ("is_referral_code", Kind::Bool),
];
const REDEMPTION_FILTERS: &[(&str, Kind)] = &[
    ("created_at", Kind::Date),
    ("campaign", Kind::Text),
    ("customer", Kind::Text),
    ("voucher", Kind::Text),
    ("voucher_code", Kind::Text),
    ("related_object_id", Kind::Text),
    ("parent_redemption_id", Kind::Text),
    ("failure_code", Kind::Text),
    ("result", Kind::Text),
    ("object", Kind::Text),
    ("customer_id", Kind::Text),
    ("campaign_name", Kind::Text),
    ("status", Kind::Text),
];
const CUSTOMER_FILTERS: &[(&str, Kind)] = &[
    ("created_at", Kind::Date),
    ("updated_at", Kind::Date),
    ("email", Kind::Text),
    ("name", Kind::Text),
    ("city", Kind::Text),
    ("phone", Kind::Text),
    ("birthday", Kind::Text),
    ("source_id", Kind::Text),
    ("address.city", Kind::Text),
    ("address.state", Kind::Text),
    ("address.line_1", Kind::Text),
    ("address.line_2", Kind::Text),
    ("address.country", Kind::Text),
    ("address.postal_code", Kind::Text),
];
const PUBLICATION_FILTERS: &[(&str, Kind)] = &[
    ("created_at", Kind::Date),
    ("campaign", Kind::Text),
    ("customer", Kind::Text),
    ("voucher", Kind::Text),
    ("result", Kind::Text),
    ("customer_id", Kind::Text),
    ("campaign_name", Kind::Text),
    ("voucher_type", Kind::Text),
    ("is_referral_code", Kind::Bool),
    ("source_id", Kind::Text),
];
const ORDER_FILTERS: &[(&str, Kind)] = &[
    ("created_at", Kind::Date),
    ("updated_at", Kind::Date),
    ("status", Kind::Text),
    ("source_id", Kind::Text),
    ("amount", Kind::Number),
    ("total_amount", Kind::Number),
    ("discount_amount", Kind::Number),
    ("total_discount_amount", Kind::Number),
    ("items_discount_amount", Kind::Number),
];

impl ExportedObject {
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        Ok(match s {
            "voucher" => ExportedObject::Voucher,
            "redemption" => ExportedObject::Redemption,
            "customer" => ExportedObject::Customer,
            "publication" => ExportedObject::Publication,
            "order" => ExportedObject::Order,
            other if NOT_EXPORTED.contains(&other) => {
                return Err(InvalidInput::payload(format!(
                    "exports of '{other}' are not supported by Tessera; exported_object must be one of voucher, redemption, customer, publication, order"
                )))
            }
            other => {
                return Err(InvalidInput::payload(format!(
                    "Property .exported_object should be equal to one of the allowed values [ voucher, redemption, customer, publication, order ], not '{other}'"
                )))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExportedObject::Voucher => "voucher",
            ExportedObject::Redemption => "redemption",
            ExportedObject::Customer => "customer",
            ExportedObject::Publication => "publication",
            ExportedObject::Order => "order",
        }
    }

    /// Every field the spec allows for this object, in the spec's order.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            ExportedObject::Voucher => VOUCHER_FIELDS,
            ExportedObject::Redemption => REDEMPTION_FIELDS,
            ExportedObject::Customer => CUSTOMER_FIELDS,
            ExportedObject::Publication => PUBLICATION_FIELDS,
            ExportedObject::Order => ORDER_FIELDS,
        }
    }

    /// The columns of an export that names no fields (the spec's defaults).
    pub fn default_fields(self) -> &'static [&'static str] {
        match self {
            ExportedObject::Voucher => &["code", "voucher_type", "value", "discount_type"],
            ExportedObject::Redemption => &["id", "object", "voucher_code", "customer_id", "date", "result"],
            ExportedObject::Customer => &["name", "source_id"],
            // The spec's table says `code`; the publication field of that name is `voucher_code`.
            ExportedObject::Publication => &["voucher_code", "customer_id", "date", "channel"],
            ExportedObject::Order => &["id", "source_id", "status"],
        }
    }

    pub fn filters(self) -> &'static [(&'static str, Kind)] {
        match self {
            ExportedObject::Voucher => VOUCHER_FILTERS,
            ExportedObject::Redemption => REDEMPTION_FILTERS,
            ExportedObject::Customer => CUSTOMER_FILTERS,
            ExportedObject::Publication => PUBLICATION_FILTERS,
            ExportedObject::Order => ORDER_FILTERS,
        }
    }

    /// Whether rows of this object come in id order. Voucher ids are time-ordered with one
    /// prefix and the vouchers table has no created_at index (see Identifiers in the
    /// architecture notes), so their creation order is their id order; redemption ids
    /// carry several prefixes (`r`, `rf`, `rr`), so the others are read by
    /// `(created_at, id)`.
    pub fn ordered_by_id(self) -> bool {
        self == ExportedObject::Voucher
    }
}

/// A metadata property as its own column or filter: `metadata.<key>`.
fn metadata_key(name: &str) -> Option<&str> {
    name.strip_prefix("metadata.").filter(|k| !k.is_empty() && k.len() <= 100)
}

/// `POST /v1/exports` body.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportInput {
    /// voucher, redemption, customer, publication or order.
    #[serde(default)]
    pub exported_object: Option<String>,
    #[serde(default)]
    pub parameters: Option<ExportParametersInput>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportParametersInput {
    /// `created_at` or `-created_at` (the default).
    #[serde(default)]
    pub order: Option<String>,
    /// The CSV columns, in order; `metadata.<key>` for one metadata property.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// `{junction: "and"|"or", <attribute>: {conditions: {"$is": [...], ...}}}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub filters: Option<Value>,
    /// Only `CSV`.
    #[serde(default)]
    pub response_format: Option<String>,
}

/// A checked export request.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSpec {
    pub object: ExportedObject,
    pub descending: bool,
    pub fields: Vec<String>,
    pub filters: Filters,
    /// The parameters as the export object shows them.
    pub parameters: Value,
}

impl ExportSpec {
    /// The stored form of the parameters back into a spec (the runner rebuilds it from the
    /// export object, which keeps one source of truth).
    pub fn from_stored(object: &str, parameters: &Value) -> Result<Self, InvalidInput> {
        let input = ExportInput {
            exported_object: Some(object.to_string()),
            parameters: Some(
                serde_json::from_value(json!({
                    "order": parameters.get("order"),
                    "fields": parameters.get("fields"),
                    "filters": parameters.get("filters"),
                    "response_format": parameters.get("response_format"),
                }))
                .map_err(|e| InvalidInput::payload(format!("stored export parameters: {e}")))?,
            ),
        };
        input.validate()
    }
}

fn invalid_fields(object: ExportedObject) -> InvalidInput {
    InvalidInput {
        key: "invalid_export_fields",
        message: "Invalid Export".into(),
        details: format!(
            "Unsupported field used. Allowed fields: {}, metadata.<property>",
            object.fields().join(", ")
        ),
    }
}

fn invalid_filter(details: impl Into<String>) -> InvalidInput {
    InvalidInput {
        key: "invalid_export_filters",
        message: "Invalid Export".into(),
        details: details.into(),
    }
}

impl ExportInput {
    pub fn validate(&self) -> Result<ExportSpec, InvalidInput> {
        let object = match &self.exported_object {
            Some(o) => ExportedObject::parse(o)?,
            None => return Err(InvalidInput::payload("Payload must have required property 'exported_object'")),
        };
        let params = self.parameters.clone().unwrap_or_default();
        if let Some(f) = &params.response_format {
            if f != "CSV" {
                return Err(InvalidInput::payload("parameters.response_format must be CSV"));
            }
        }
        let order = params.order.clone().unwrap_or_else(|| "-created_at".into());
        let descending = match order.as_str() {
            "created_at" => false,
            "-created_at" => true,
            other => {
                return Err(InvalidInput::payload(format!(
                    "Tessera cannot order {} exports by '{other}'; use created_at or -created_at",
                    object.as_str()
                )))
            }
        };
        let fields = match &params.fields {
            None => object.default_fields().iter().map(|f| f.to_string()).collect(),
            Some(f) if f.is_empty() => object.default_fields().iter().map(|f| f.to_string()).collect(),
            Some(f) => f.clone(),
        };
        if fields.len() > MAX_FIELDS {
            return Err(InvalidInput::payload(format!("an export may have at most {MAX_FIELDS} fields")));
        }
        for f in &fields {
            if !object.fields().contains(&f.as_str()) && metadata_key(f).is_none() {
                return Err(invalid_fields(object));
            }
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = fields.iter().find(|f| !seen.insert(f.as_str())) {
            return Err(InvalidInput {
                details: format!("field '{dup}' is listed twice"),
                ..invalid_fields(object)
            });
        }
        let filters = Filters::parse(object, params.filters.as_ref())?;
        let mut shown_filters = params.filters.clone().unwrap_or_else(|| json!({}));
        if let Some(m) = shown_filters.as_object_mut() {
            m.entry("junction").or_insert_with(|| json!("and"));
        }
        Ok(ExportSpec {
            object,
            descending,
            parameters: json!({"order": order, "fields": fields, "filters": shown_filters, "response_format": "CSV"}),
            fields,
            filters,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Junction {
    And,
    Or,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// Equal to one of (`$is`, `$in`).
    In(Vec<Value>),
    /// Equal to none of (`$is_not`, `$not_in`).
    NotIn(Vec<Value>),
    HasValue,
    IsUnknown,
    Contains(String),
    NotContain(String),
    StartsWith(String),
    EndsWith(String),
    /// Canonical timestamps (fixed width, so they compare as strings).
    After(String),
    Before(String),
    MoreThan(f64),
    LessThan(f64),
    MoreThanEqual(f64),
    LessThanEqual(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldFilter {
    pub name: String,
    pub kind: Kind,
    pub conds: Vec<Cond>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filters {
    pub junction: Junction,
    pub fields: Vec<FieldFilter>,
}

const SUPPORTED_CONDITIONS: &str =
    "$is, $is_not, $in, $not_in, $has_value, $is_unknown, $contains, $not_contain, $starts_with, $ends_with (text), $after, $before (dates), $more_than, $less_than, $more_than_equal, $less_than_equal (numbers)";

/// A condition's operand: the spec sends arrays; a single value is taken as a one-item array.
fn operands(name: &str, op: &str, v: &Value) -> Result<Vec<Value>, InvalidInput> {
    let items = match v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    if items.len() > MAX_FILTER_VALUES {
        return Err(invalid_filter(format!(
            "filters.{name}.conditions.{op} may list at most {MAX_FILTER_VALUES} values"
        )));
    }
    if let Some(bad) = items
        .iter()
        .find(|i| !matches!(i, Value::String(_) | Value::Number(_) | Value::Bool(_)))
    {
        return Err(invalid_filter(format!(
            "filters.{name}.conditions.{op}: values must be strings, numbers or booleans, not {bad}"
        )));
    }
    Ok(items)
}

fn one_operand(name: &str, op: &str, v: &Value) -> Result<Value, InvalidInput> {
    let mut items = operands(name, op, v)?;
    if items.len() != 1 {
        return Err(invalid_filter(format!("filters.{name}.conditions.{op} takes exactly one value")));
    }
    Ok(items.remove(0))
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn date_operand(name: &str, op: &str, v: &Value) -> Result<String, InvalidInput> {
    let v = one_operand(name, op, v)?;
    v.as_str()
        .and_then(crate::time::parse_lenient)
        .map(crate::time::format)
        .ok_or_else(|| {
            invalid_filter(format!(
                "filters.{name}.conditions.{op} must be a date-time such as 2024-05-01T00:00:00Z"
            ))
        })
}

fn number_operand(name: &str, op: &str, v: &Value) -> Result<f64, InvalidInput> {
    let v = one_operand(name, op, v)?;
    match &v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|f| f.is_finite())
    .ok_or_else(|| invalid_filter(format!("filters.{name}.conditions.{op} must be a number")))
}

fn flag(name: &str, op: &str, v: &Value) -> Result<(), InvalidInput> {
    // `$has_value` / `$is_unknown` carry no operand worth reading; accept the usual shapes.
    match v {
        Value::Null | Value::Bool(true) | Value::String(_) => Ok(()),
        Value::Array(a) if a.len() <= 1 => Ok(()),
        _ => Err(invalid_filter(format!("filters.{name}.conditions.{op} takes no value"))),
    }
}

impl Filters {
    pub fn none() -> Self {
        Filters {
            junction: Junction::And,
            fields: Vec::new(),
        }
    }

    pub fn parse(object: ExportedObject, raw: Option<&Value>) -> Result<Self, InvalidInput> {
        let Some(raw) = raw.filter(|v| !v.is_null()) else {
            return Ok(Filters::none());
        };
        let Some(map) = raw.as_object() else {
            return Err(invalid_filter("parameters.filters must be an object"));
        };
        let mut junction = Junction::And;
        let mut fields = Vec::new();
        for (name, spec) in map {
            if name == "junction" {
                junction = match spec.as_str().map(str::to_ascii_lowercase).as_deref() {
                    Some("and") => Junction::And,
                    Some("or") => Junction::Or,
                    _ => return Err(invalid_filter("filters.junction must be 'and' or 'or'")),
                };
                continue;
            }
            let kind = match object.filters().iter().find(|(n, _)| n == name) {
                Some((_, k)) => *k,
                None if metadata_key(name).is_some() => Kind::Any,
                None => {
                    let names: Vec<&str> = object.filters().iter().map(|(n, _)| *n).collect();
                    return Err(invalid_filter(format!(
                        "Tessera cannot filter {} exports by '{name}'. Supported filters: {}, metadata.<property>",
                        object.as_str(),
                        names.join(", ")
                    )));
                }
            };
            let Some(conds) = spec.get("conditions").and_then(Value::as_object) else {
                return Err(invalid_filter(format!("filters.{name} must be {{\"conditions\": {{...}}}}")));
            };
            if let Some(extra) = spec.as_object().and_then(|o| o.keys().find(|k| *k != "conditions")) {
                return Err(invalid_filter(format!("filters.{name}.{extra} is not supported")));
            }
            if conds.is_empty() {
                return Err(invalid_filter(format!("filters.{name}.conditions names no condition")));
            }
            let mut parsed = Vec::new();
            for (op, v) in conds {
                let text_ok = matches!(kind, Kind::Text | Kind::Any);
                let cond = match op.as_str() {
                    "$is" | "$in" if kind != Kind::Date => Cond::In(operands(name, op, v)?),
                    "$is_not" | "$not_in" if kind != Kind::Date => Cond::NotIn(operands(name, op, v)?),
                    "$has_value" => {
                        flag(name, op, v)?;
                        Cond::HasValue
                    }
                    "$is_unknown" => {
                        flag(name, op, v)?;
                        Cond::IsUnknown
                    }
                    "$contains" if text_ok => Cond::Contains(text_of(&one_operand(name, op, v)?).unwrap_or_default()),
                    "$not_contain" if text_ok => Cond::NotContain(text_of(&one_operand(name, op, v)?).unwrap_or_default()),
                    "$starts_with" if text_ok => Cond::StartsWith(text_of(&one_operand(name, op, v)?).unwrap_or_default()),
                    "$ends_with" if text_ok => Cond::EndsWith(text_of(&one_operand(name, op, v)?).unwrap_or_default()),
                    "$after" if matches!(kind, Kind::Date | Kind::Any) => Cond::After(date_operand(name, op, v)?),
                    "$before" if matches!(kind, Kind::Date | Kind::Any) => Cond::Before(date_operand(name, op, v)?),
                    "$more_than" if matches!(kind, Kind::Number | Kind::Any) => Cond::MoreThan(number_operand(name, op, v)?),
                    "$less_than" if matches!(kind, Kind::Number | Kind::Any) => Cond::LessThan(number_operand(name, op, v)?),
                    "$more_than_equal" if matches!(kind, Kind::Number | Kind::Any) => Cond::MoreThanEqual(number_operand(name, op, v)?),
                    "$less_than_equal" if matches!(kind, Kind::Number | Kind::Any) => Cond::LessThanEqual(number_operand(name, op, v)?),
                    other => {
                        return Err(invalid_filter(format!(
                            "condition '{other}' is not supported on filters.{name}. Supported conditions: {SUPPORTED_CONDITIONS}"
                        )))
                    }
                };
                parsed.push(cond);
            }
            fields.push(FieldFilter {
                name: name.clone(),
                kind,
                conds: parsed,
            });
            if fields.len() > MAX_FILTERS {
                return Err(invalid_filter(format!("an export may filter by at most {MAX_FILTERS} attributes")));
            }
        }
        Ok(Filters { junction, fields })
    }

    /// The `created_at` window every matching row lies in (exclusive bounds), when the
    /// filters imply one: lets the reader start and stop its scan there.
    pub fn created_window(&self) -> (Option<String>, Option<String>) {
        if self.junction == Junction::Or && self.fields.len() > 1 {
            return (None, None);
        }
        let (mut after, mut before): (Option<String>, Option<String>) = (None, None);
        for f in self.fields.iter().filter(|f| f.name == "created_at") {
            for c in &f.conds {
                match c {
                    Cond::After(a) if after.as_ref().is_none_or(|x| a > x) => after = Some(a.clone()),
                    Cond::Before(b) if before.as_ref().is_none_or(|x| b < x) => before = Some(b.clone()),
                    _ => {}
                }
            }
        }
        (after, before)
    }

    pub fn matches(&self, object: ExportedObject, row: &Value) -> bool {
        if self.fields.is_empty() {
            return true;
        }
        let mut each = self.fields.iter().map(|f| {
            let values = filter_values(object, row, &f.name);
            f.conds.iter().all(|c| cond_holds(c, &values))
        });
        match self.junction {
            Junction::And => each.all(|ok| ok),
            Junction::Or => each.any(|ok| ok),
        }
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (text_of(a), text_of(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn date(v: &Value) -> Option<String> {
    v.as_str().and_then(crate::time::parse_lenient).map(crate::time::format)
}

/// Whether a condition holds for a row's values of the attribute (several when the
/// attribute names a thing by id or by name, such as a redemption's `campaign`).
fn cond_holds(c: &Cond, values: &[Value]) -> bool {
    let present: Vec<&Value> = values.iter().filter(|v| !v.is_null()).collect();
    let texts = || present.iter().filter_map(|v| text_of(v));
    match c {
        Cond::In(wanted) => present.iter().any(|v| wanted.iter().any(|w| same(v, w))),
        Cond::NotIn(unwanted) => !present.iter().any(|v| unwanted.iter().any(|w| same(v, w))),
        Cond::HasValue => present.iter().any(|v| !matches!(v, Value::String(s) if s.is_empty())),
        Cond::IsUnknown => present.iter().all(|v| matches!(v, Value::String(s) if s.is_empty())),
        Cond::Contains(s) => texts().any(|t| t.contains(s.as_str())),
        Cond::NotContain(s) => !texts().any(|t| t.contains(s.as_str())),
        Cond::StartsWith(s) => texts().any(|t| t.starts_with(s.as_str())),
        Cond::EndsWith(s) => texts().any(|t| t.ends_with(s.as_str())),
        Cond::After(t) => present.iter().filter_map(|v| date(v)).any(|d| d > *t),
        Cond::Before(t) => present.iter().filter_map(|v| date(v)).any(|d| d < *t),
        Cond::MoreThan(n) => present.iter().filter_map(|v| number(v)).any(|x| x > *n),
        Cond::LessThan(n) => present.iter().filter_map(|v| number(v)).any(|x| x < *n),
        Cond::MoreThanEqual(n) => present.iter().filter_map(|v| number(v)).any(|x| x >= *n),
        Cond::LessThanEqual(n) => present.iter().filter_map(|v| number(v)).any(|x| x <= *n),
    }
}

fn at<'a>(row: &'a Value, path: &str) -> &'a Value {
    row.pointer(path).unwrap_or(&Value::Null)
}

fn first(row: &Value, paths: &[&str]) -> Value {
    paths
        .iter()
        .map(|p| at(row, p))
        .find(|v| !v.is_null())
        .cloned()
        .unwrap_or(Value::Null)
}

fn metadata_value(row: &Value, key: &str) -> Value {
    row.get("metadata").and_then(|m| m.get(key)).cloned().unwrap_or(Value::Null)
}

/// A row's values of a filter attribute.
pub fn filter_values(object: ExportedObject, row: &Value, name: &str) -> Vec<Value> {
    if let Some(k) = metadata_key(name) {
        return match metadata_value(row, k) {
            Value::Array(items) => items,
            v => vec![v],
        };
    }
    let paths: &[&str] = match (object, name) {
        (ExportedObject::Voucher, "holder_id" | "published_for_customer_id") => &["/holder_id"],
        (ExportedObject::Voucher, "is_referral_code") => &["/is_referral_code"],
        (ExportedObject::Redemption, "created_at") => &["/date", "/created_at"],
        (ExportedObject::Redemption, "campaign") => &["/_x/campaign_id", "/_x/campaign_name"],
        (ExportedObject::Redemption, "campaign_name") => &["/_x/campaign_name"],
        (ExportedObject::Redemption, "customer") => &["/customer_id", "/customer/source_id"],
        (ExportedObject::Redemption, "voucher") => &["/voucher/id", "/voucher/code"],
        (ExportedObject::Redemption, "voucher_code") => &["/voucher/code"],
        (ExportedObject::Redemption, "parent_redemption_id") => &["/_x/parent_id"],
        (ExportedObject::Customer, "city") => &["/address/city"],
        (ExportedObject::Customer, a) if a.starts_with("address.") => {
            return vec![row
                .get("address")
                .and_then(|x| x.get(&a["address.".len()..]))
                .cloned()
                .unwrap_or(Value::Null)]
        }
        (ExportedObject::Publication, "campaign") => &["/_x/campaign_id", "/_x/campaign_name"],
        (ExportedObject::Publication, "campaign_name") => &["/_x/campaign_name"],
        (ExportedObject::Publication, "customer") => &["/customer_id", "/customer/source_id"],
        (ExportedObject::Publication, "voucher_type") => &["/voucher/type"],
        (ExportedObject::Publication, "is_referral_code") => &["/voucher/is_referral_code"],
        (ExportedObject::Publication, "voucher") => {
            let mut out = vec![at(row, "/voucher/id").clone(), at(row, "/voucher/code").clone()];
            for list in ["/vouchers_id", "/vouchers"] {
                if let Some(a) = at(row, list).as_array() {
                    out.extend(a.iter().cloned());
                }
            }
            return out;
        }
        _ => return vec![row.get(name).cloned().unwrap_or(Value::Null)],
    };
    paths.iter().map(|p| at(row, p).clone()).collect()
}

/// A row's value of an export field (a JSON value; `cell` renders it).
pub fn field_value(object: ExportedObject, row: &Value, field: &str) -> Value {
    if let Some(k) = metadata_key(field) {
        return metadata_value(row, k);
    }
    use ExportedObject::*;
    match (object, field) {
        (Voucher, "voucher_type") => at(row, "/type").clone(),
        (Voucher, "value") => {
            if at(row, "/type").as_str() == Some("GIFT_VOUCHER") {
                return at(row, "/gift/balance").clone();
            }
            match at(row, "/discount/type").as_str() {
                Some("AMOUNT") => at(row, "/discount/amount_off").clone(),
                Some("PERCENT") => at(row, "/discount/percent_off").clone(),
                Some("UNIT") => at(row, "/discount/unit_off").clone(),
                Some("FIXED") => at(row, "/discount/fixed_amount").clone(),
                _ => Value::Null,
            }
        }
        (Voucher, "formula") => first(
            row,
            &[
                "/discount/amount_off_formula",
                "/discount/percent_off_formula",
                "/discount/unit_off_formula",
                "/discount/fixed_amount_formula",
            ],
        ),
        (Voucher, "discount_type") => at(row, "/discount/type").clone(),
        (Voucher, "gift_balance") => at(row, "/gift/balance").clone(),
        (Voucher, "loyalty_balance") => at(row, "/loyalty_card/balance").clone(),
        (Voucher, "redemption_quantity") => at(row, "/redemption/quantity").clone(),
        (Voucher, "redemption_count") => at(row, "/redemption/redeemed_quantity").clone(),
        (Voucher, "qr_code") => at(row, "/assets/qr/url").clone(),
        (Voucher, "bar_code") => at(row, "/assets/barcode/url").clone(),
        (Voucher, "validity_timeframe_interval") => at(row, "/validity_timeframe/interval").clone(),
        (Voucher, "validity_timeframe_duration") => at(row, "/validity_timeframe/duration").clone(),
        (Voucher, "validity_day_of_week") => match at(row, "/validity_day_of_week") {
            Value::Array(days) => Value::String(days.iter().filter_map(text_of).collect::<Vec<_>>().join(",")),
            other => other.clone(),
        },
        (Voucher, "discount_amount_limit") => at(row, "/discount/amount_limit").clone(),
        (Voucher, "customer_id") => at(row, "/holder_id").clone(),
        (Voucher, "discount_effect") => at(row, "/discount/effect").clone(),
        (Voucher, "discount_unit_type") => at(row, "/discount/unit_type").clone(),
        (Voucher, "discount_unit_effect") => {
            if at(row, "/discount/type").as_str() == Some("UNIT") {
                at(row, "/discount/effect").clone()
            } else {
                Value::Null
            }
        }
        (Voucher, "validation_rules_id") => at(row, "/_x/validation_rules_id").clone(),
        (Voucher, "customer_source_id") => at(row, "/_x/customer_source_id").clone(),

        (Redemption, "date") => first(row, &["/date", "/created_at"]),
        (Redemption, "voucher_code") => at(row, "/voucher/code").clone(),
        (Redemption, "campaign") => at(row, "/_x/campaign_name").clone(),
        (Redemption, "promotion_tier_id") => first(row, &["/promotion_tier/id", "/_x/promotion_tier_id"]),
        (Redemption, "customer_source_id") => at(row, "/customer/source_id").clone(),
        (Redemption, "customer_name") => at(row, "/customer/name").clone(),
        (Redemption, "order_id") => first(row, &["/order/id", "/_x/order_id"]),
        // A failed redemption has no order: its `order_amount` column is a default 0.
        (Redemption, "order_amount") => at(row, "/order/amount").clone(),
        (Redemption, "gift_amount") => at(row, "/gift/amount").clone(),
        (Redemption, "loyalty_points") => at(row, "/loyalty_card/points").clone(),

        (Customer, f) if f.starts_with("address_") => row
            .get("address")
            .and_then(|a| a.get(&f["address_".len()..]))
            .cloned()
            .unwrap_or(Value::Null),
        (Customer, f) if f.starts_with("redemptions_total_") => at(row, &format!("/_x/redemptions/{}", &f["redemptions_".len()..])).clone(),
        (Customer, f) if f.starts_with("orders_") => at(row, &format!("/_x/orders/{}", &f["orders_".len()..])).clone(),
        (Customer, "loyalty_points") => at(row, "/_x/loyalty/points").clone(),
        (Customer, "loyalty_referred_customers") => at(row, "/_x/loyalty/referred_customers").clone(),

        (Publication, "voucher_code") => match at(row, "/voucher/code") {
            Value::Null => match at(row, "/vouchers") {
                Value::Array(codes) => Value::String(codes.iter().filter_map(text_of).collect::<Vec<_>>().join(",")),
                _ => Value::Null,
            },
            code => code.clone(),
        },
        (Publication, "customer_source_id") => at(row, "/customer/source_id").clone(),
        (Publication, "date") => at(row, "/created_at").clone(),
        (Publication, "campaign") => first(row, &["/voucher/campaign", "/_x/campaign_name"]),
        (Publication, "is_winner") => at(row, "/is_winner").clone(),

        (_, f) => row.get(f).cloned().unwrap_or(Value::Null),
    }
}

/// A cell's text: strings as they are, numbers and booleans as JSON, nothing for null,
/// and objects or arrays (metadata) as JSON text.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// Which extra values a page of rows needs, so the reader only looks up what the export
/// shows or filters on.
pub fn needs(spec: &ExportSpec, prefix: &str) -> bool {
    spec.fields.iter().any(|f| f.starts_with(prefix)) || spec.filters.fields.iter().any(|f| f.name.starts_with(prefix))
}

/// The stored export object as clients see it: internal keys removed, the status of the
/// row, and the download URL while it is DONE.
pub fn public_view(stored: &Value, status: &str, url: Option<String>) -> Value {
    let mut v = stored.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("_internal");
        m.insert("status".into(), json!(status));
        m.insert("result".into(), url.map(|u| json!({"url": u})).unwrap_or(Value::Null));
    }
    v
}

type HmacSha256 = Hmac<Sha256>;

fn mac(key_hex: &str, project_id: &str, export_id: &str, expires: i64) -> String {
    let key = hex::decode(key_hex).unwrap_or_default();
    let mut m = <HmacSha256 as Mac>::new_from_slice(&key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(format!("{project_id}.{export_id}.{expires}").as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// A download token: `<project id>.<expiry, unix seconds>.<HMAC-SHA256 under the export's
/// own key>`. The project id lets the download find the export without an API key; the
/// MAC ties the token to this export and this expiry.
pub fn download_token(key_hex: &str, project_id: &str, export_id: &str, expires: i64) -> String {
    format!("{project_id}.{expires}.{}", mac(key_hex, project_id, export_id, expires))
}

/// The project a token names, and its expiry, before it is checked.
pub fn token_claims(token: &str) -> Option<(&str, i64)> {
    if token.len() > 256 {
        return None;
    }
    let mut parts = token.rsplitn(3, '.');
    let (_mac, expires, project) = (parts.next()?, parts.next()?, parts.next()?);
    if project.is_empty() || !project.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    Some((project, expires.parse().ok()?))
}

/// Whether `token` is a live token of this export, in constant time.
pub fn token_valid(token: &str, key_hex: &str, project_id: &str, export_id: &str, now_unix: i64) -> bool {
    let Some((project, expires)) = token_claims(token) else {
        return false;
    };
    if project != project_id || expires < now_unix || key_hex.is_empty() {
        return false;
    }
    let expected = download_token(key_hex, project_id, export_id, expires);
    expected.as_bytes().ct_eq(token.as_bytes()).into()
}

/// A fresh per-export key for its download tokens (256 bits, hex).
pub fn new_download_key() -> String {
    crate::secrets::new_token()
}

/// Unknown keys of a stored export object that are internal.
pub fn internal(stored: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    stored
        .get("_internal")
        .and_then(Value::as_object)
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(body: Value) -> Result<ExportSpec, InvalidInput> {
        serde_json::from_value::<ExportInput>(body).expect("shape").validate()
    }

    #[test]
    fn defaults_and_field_checks() {
        let s = spec(json!({"exported_object": "voucher"})).expect("valid");
        assert_eq!(s.fields, ["code", "voucher_type", "value", "discount_type"]);
        assert!(s.descending);
        assert_eq!(s.parameters["order"], "-created_at");
        assert_eq!(s.parameters["filters"]["junction"], "and");
        let e = spec(json!({"exported_object": "redemption", "parameters": {"fields": ["id", "nope"]}})).unwrap_err();
        assert_eq!(e.key, "invalid_export_fields");
        assert!(e.details.contains("voucher_code"), "{}", e.details);
        let s = spec(json!({"exported_object": "customer", "parameters": {"fields": ["id", "metadata.tier"], "order": "created_at"}}))
            .expect("metadata property");
        assert!(!s.descending);
        assert!(spec(json!({"exported_object": "customer", "parameters": {"fields": ["id", "id"]}})).is_err());
        assert!(spec(json!({"exported_object": "customer", "parameters": {"order": "name"}})).is_err());
        let e = spec(json!({"exported_object": "points_expiration"})).unwrap_err();
        assert_eq!(e.key, "invalid_payload");
        assert!(spec(json!({"exported_object": "cats"})).is_err());
        assert!(spec(json!({})).is_err());
        assert!(spec(json!({"exported_object": "order", "parameters": {"response_format": "JSON"}})).is_err());
    }

    #[test]
    fn filters_parse_and_match() {
        let s = spec(json!({"exported_object": "voucher", "parameters": {"filters": {
            "junction": "and",
            "campaign_id": {"conditions": {"$in": ["camp_1", "camp_2"]}},
            "created_at": {"conditions": {"$after": ["2024-01-01"], "$before": "2024-02-01T00:00:00Z"}},
            "metadata.region": {"conditions": {"$is": "EU"}},
        }}}))
        .expect("valid");
        let row = json!({"campaign_id": "camp_2", "created_at": "2024-01-15T10:00:00.000Z", "metadata": {"region": "EU"}});
        assert!(s.filters.matches(ExportedObject::Voucher, &row));
        let (a, b) = s.filters.created_window();
        assert_eq!(a.as_deref(), Some("2024-01-01T00:00:00.000Z"));
        assert_eq!(b.as_deref(), Some("2024-02-01T00:00:00.000Z"));
        for miss in [
            json!({"campaign_id": "camp_3", "created_at": "2024-01-15T10:00:00.000Z", "metadata": {"region": "EU"}}),
            json!({"campaign_id": "camp_1", "created_at": "2024-03-15T10:00:00.000Z", "metadata": {"region": "EU"}}),
            json!({"campaign_id": "camp_1", "created_at": "2024-01-15T10:00:00.000Z", "metadata": {}}),
        ] {
            assert!(!s.filters.matches(ExportedObject::Voucher, &miss), "{miss}");
        }
        let or = spec(json!({"exported_object": "order", "parameters": {"filters": {
            "junction": "OR", "status": {"conditions": {"$is": ["PAID"]}}, "amount": {"conditions": {"$more_than": [1000]}}
        }}}))
        .expect("valid");
        assert!(or.filters.matches(ExportedObject::Order, &json!({"status": "PAID", "amount": 5})));
        assert!(or
            .filters
            .matches(ExportedObject::Order, &json!({"status": "CREATED", "amount": 5000})));
        assert!(!or
            .filters
            .matches(ExportedObject::Order, &json!({"status": "CREATED", "amount": 5})));
        assert_eq!(or.filters.created_window(), (None, None));
        // A redemption's campaign is matched by id or by name.
        let r =
            spec(json!({"exported_object": "redemption", "parameters": {"filters": {"campaign": {"conditions": {"$is": ["Summer"]}}}}}))
                .expect("valid");
        assert!(r.filters.matches(
            ExportedObject::Redemption,
            &json!({"_x": {"campaign_id": "camp_1", "campaign_name": "Summer"}})
        ));
        assert!(!r.filters.matches(
            ExportedObject::Redemption,
            &json!({"_x": {"campaign_id": "camp_1", "campaign_name": "Winter"}})
        ));
    }

    #[test]
    fn unsupported_filters_are_refused() {
        for (object, filters) in [
            ("voucher", json!({"nope": {"conditions": {"$is": ["x"]}}})),
            ("voucher", json!({"created_at": {"conditions": {"$is_days_ago": [3]}}})),
            ("voucher", json!({"created_at": {"conditions": {"$after": ["not a date"]}}})),
            ("voucher", json!({"code": {"conditions": {"$after": ["2024-01-01"]}}})),
            ("order", json!({"amount": {"conditions": {"$more_than": ["ten"]}}})),
            ("order", json!({"status": {"$is": ["PAID"]}})),
            ("order", json!({"status": {"conditions": {}}})),
            ("order", json!({"junction": "xor"})),
            ("order", json!({"status": {"conditions": {"$in": [{"a": 1}]}}})),
            ("order", json!([1])),
        ] {
            let e = spec(json!({"exported_object": object, "parameters": {"filters": filters}})).unwrap_err();
            assert_eq!(e.key, "invalid_export_filters", "{filters}: {}", e.details);
        }
    }

    #[test]
    fn fields_read_from_views() {
        let v = json!({"code": "A,B", "type": "DISCOUNT_VOUCHER", "discount": {"type": "PERCENT", "percent_off": 15, "effect": "APPLY_TO_ORDER"},
            "validity_day_of_week": [1, 2, 3], "holder_id": "cust_1", "metadata": {"k": {"n": 1}}, "_x": {"customer_source_id": "alice"}});
        assert_eq!(field_value(ExportedObject::Voucher, &v, "value"), json!(15));
        assert_eq!(field_value(ExportedObject::Voucher, &v, "voucher_type"), json!("DISCOUNT_VOUCHER"));
        assert_eq!(cell(&field_value(ExportedObject::Voucher, &v, "validity_day_of_week")), "1,2,3");
        assert_eq!(field_value(ExportedObject::Voucher, &v, "customer_source_id"), json!("alice"));
        assert_eq!(cell(&field_value(ExportedObject::Voucher, &v, "metadata")), r#"{"k":{"n":1}}"#);
        assert_eq!(cell(&field_value(ExportedObject::Voucher, &v, "metadata.k")), r#"{"n":1}"#);
        assert_eq!(cell(&field_value(ExportedObject::Voucher, &v, "discount_unit_effect")), "");
        let g = json!({"type": "GIFT_VOUCHER", "gift": {"balance": 700}});
        assert_eq!(field_value(ExportedObject::Voucher, &g, "value"), json!(700));
        let c = json!({"address": {"city": "Berlin"}, "_x": {"orders": {"total_count": 2}, "redemptions": {"total_failed": 1}}});
        assert_eq!(field_value(ExportedObject::Customer, &c, "address_city"), json!("Berlin"));
        assert_eq!(field_value(ExportedObject::Customer, &c, "orders_total_count"), json!(2));
        assert_eq!(field_value(ExportedObject::Customer, &c, "redemptions_total_failed"), json!(1));
        let p = json!({"vouchers": ["A", "B"], "created_at": "t"});
        assert_eq!(field_value(ExportedObject::Publication, &p, "voucher_code"), json!("A,B"));
        assert_eq!(field_value(ExportedObject::Publication, &p, "date"), json!("t"));
        assert_eq!(cell(&json!(true)), "true");
        assert_eq!(cell(&Value::Null), "");
    }

    #[test]
    fn default_fields_are_allowed_fields() {
        for o in [
            ExportedObject::Voucher,
            ExportedObject::Redemption,
            ExportedObject::Customer,
            ExportedObject::Publication,
            ExportedObject::Order,
        ] {
            for f in o.default_fields() {
                assert!(o.fields().contains(f), "{f} default of {}", o.as_str());
            }
        }
    }

    #[test]
    fn tokens_are_bound_to_export_project_and_time() {
        let key = new_download_key();
        let t = download_token(&key, "proj_1", "exp_1", 1_000);
        assert!(token_valid(&t, &key, "proj_1", "exp_1", 999));
        assert!(token_valid(&t, &key, "proj_1", "exp_1", 1_000));
        assert!(!token_valid(&t, &key, "proj_1", "exp_1", 1_001), "expired");
        assert!(!token_valid(&t, &key, "proj_1", "exp_2", 0), "another export");
        assert!(!token_valid(&t, &key, "proj_2", "exp_1", 0), "another project");
        assert!(!token_valid(&t, &new_download_key(), "proj_1", "exp_1", 0), "another key");
        let forged = t.replace(".1000.", ".9999.");
        assert!(!token_valid(&forged, &key, "proj_1", "exp_1", 0), "expiry is signed");
        assert_eq!(token_claims(&t), Some(("proj_1", 1_000)));
        for bad in ["", "x", "a.b", "proj_1.x.y", "pr oj.1.abc"] {
            assert!(!token_valid(bad, &key, "proj_1", "exp_1", 0), "{bad}");
        }
    }
}
