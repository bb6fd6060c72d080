//! Forgetting a customer: what counts as their personal data, and how it is taken out of
//! the JSON copies other records keep of them (a redemption's customer snapshot, an
//! event's payload, a stored response).
//!
//! Personal: name, email, phone, address, birthdate and birthday, description, metadata,
//! and the source id. The source id is the caller's own key for the customer, which
//! Voucherify suggests may be an email or a CRM id, so it cannot be assumed harmless. The
//! customer id stays: Tessera generated it at random, it says nothing about the person,
//! and per-customer limits, publications, held codes (`holder_id`) and statistics are
//! keyed by it, so keeping it keeps every count and ledger exactly as it was.
//!
//! A tracking id defaults to the source id (or is whatever the caller sent along with the
//! customer), so on records of the customer it is replaced by one pseudonym drawn for the
//! erasure: the customer's records still share one tracking id, and it says nothing.

use serde_json::{Map, Value};

/// The personal fields of a customer object. `metadata` becomes `{}` (it is an object in
/// every shape that carries it), the others `null`.
pub const PERSONAL_FIELDS: [&str; 9] = [
    "source_id",
    "name",
    "email",
    "phone",
    "address",
    "birthdate",
    "birthday",
    "description",
    "metadata",
];

/// Who is being forgotten.
#[derive(Debug, Clone)]
pub struct Forget {
    pub customer_id: String,
    /// The customer's source id, if it had one: a `tracking_id` equal to it is replaced
    /// wherever it appears, since it derives from the customer even without their id.
    pub source_id: Option<String>,
    /// Replaces tracking ids on the customer's records.
    pub tracking_pseudonym: String,
}

impl Forget {
    /// Removes the customer's personal data from `v`, in place; returns whether anything
    /// changed. Depth is bounded by the JSON it is given (stored documents passed the
    /// request's nesting limit).
    ///
    /// - An object whose `id` is the customer's id is a copy of the customer (a snapshot,
    ///   an event payload, a response): its personal fields are cleared.
    /// - An object whose `customer_id` is the customer's id is a record of theirs: its
    ///   `tracking_id` is replaced by the pseudonym.
    /// - Any `tracking_id` equal to the customer's source id is replaced too (a validation
    ///   response names the customer that way only).
    pub fn scrub(&self, v: &mut Value) -> bool {
        match v {
            Value::Array(items) => {
                // Every item, not the first that changes: no short-circuit here.
                let mut changed = false;
                for item in items {
                    changed |= self.scrub(item);
                }
                changed
            }
            Value::Object(map) => self.scrub_object(map),
            _ => false,
        }
    }

    fn scrub_object(&self, map: &mut Map<String, Value>) -> bool {
        let mut changed = false;
        if map.get("id").and_then(Value::as_str) == Some(self.customer_id.as_str()) {
            for field in PERSONAL_FIELDS {
                let Some(value) = map.get_mut(field) else { continue };
                let cleared = if field == "metadata" {
                    Value::Object(Map::new())
                } else {
                    Value::Null
                };
                if *value != cleared {
                    *value = cleared;
                    changed = true;
                }
            }
        }
        let owned = map.get("customer_id").and_then(Value::as_str) == Some(self.customer_id.as_str());
        if let Some(tracking) = map.get_mut("tracking_id") {
            let derived = tracking.as_str().is_some_and(|t| Some(t) == self.source_id.as_deref());
            let personal = owned && tracking.is_string();
            if (derived || personal) && tracking.as_str() != Some(self.tracking_pseudonym.as_str()) {
                *tracking = Value::String(self.tracking_pseudonym.clone());
                changed = true;
            }
        }
        for (_, child) in map.iter_mut() {
            if child.is_object() || child.is_array() {
                changed |= self.scrub(child);
            }
        }
        changed
    }

    /// `scrub` on a stored JSON text: the new text when something changed. Text that is
    /// not JSON is left alone (there is nothing structured to find in it).
    pub fn scrub_text(&self, text: &str) -> Option<String> {
        let mut v: Value = serde_json::from_str(text).ok()?;
        self.scrub(&mut v).then(|| v.to_string())
    }

    /// `scrub`, and in a job's report also any `source_id` equal to the customer's: an
    /// import names the customer of a refused row that way only. (Elsewhere a `source_id`
    /// may be an order's or a product's, which a coincidence must not touch.)
    pub fn scrub_report_text(&self, text: &str) -> Option<String> {
        fn drop_source_id(v: &mut Value, source_id: &str) -> bool {
            match v {
                Value::Array(items) => {
                    let mut changed = false;
                    for item in items {
                        changed |= drop_source_id(item, source_id);
                    }
                    changed
                }
                Value::Object(map) => {
                    let mut changed = false;
                    if let Some(s) = map.get_mut("source_id") {
                        if s.as_str() == Some(source_id) {
                            *s = Value::Null;
                            changed = true;
                        }
                    }
                    for (_, child) in map.iter_mut() {
                        changed |= drop_source_id(child, source_id);
                    }
                    changed
                }
                _ => false,
            }
        }
        let mut v: Value = serde_json::from_str(text).ok()?;
        let mut changed = self.scrub(&mut v);
        if let Some(sid) = &self.source_id {
            changed |= drop_source_id(&mut v, sid);
        }
        changed.then(|| v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn forget() -> Forget {
        Forget {
            customer_id: "cust_1".into(),
            source_id: Some("ann@example.com".into()),
            tracking_pseudonym: "track_x".into(),
        }
    }

    #[test]
    fn a_redemption_keeps_its_ids_and_amounts_and_loses_the_person() {
        let mut r = json!({
            "id": "r_1", "object": "redemption", "customer_id": "cust_1", "tracking_id": "ann@example.com",
            "amount": 500, "voucher": {"id": "v_1", "code": "A", "holder_id": "cust_1"},
            "customer": {"id": "cust_1", "source_id": "ann@example.com", "name": "Ann", "email": "ann@example.com",
                         "metadata": {"vip": true}, "object": "customer"},
            "order": {"id": "ord_1", "customer_id": "cust_1", "customer": {"id": "cust_1", "object": "customer"}},
        });
        assert!(forget().scrub(&mut r));
        assert_eq!(
            r["customer"],
            json!({"id": "cust_1", "source_id": null, "name": null, "email": null, "metadata": {}, "object": "customer"})
        );
        assert_eq!(r["tracking_id"], "track_x");
        assert_eq!((r["customer_id"].clone(), r["amount"].clone()), (json!("cust_1"), json!(500)));
        assert_eq!(r["voucher"]["holder_id"], "cust_1");
        assert_eq!(r["order"]["customer"], json!({"id": "cust_1", "object": "customer"}));
        assert!(!r.to_string().contains("ann@example.com") && !r.to_string().contains("Ann"));
        // Scrubbing twice changes nothing more.
        assert!(!forget().scrub(&mut r));
    }

    #[test]
    fn a_full_customer_payload_is_cleared_field_by_field() {
        let mut c = json!({"id": "cust_1", "source_id": "s", "name": "Ann", "description": "d", "email": "a@x.io", "phone": "1",
            "birthday": "1990-01-01", "birthdate": "1990-01-01", "address": {"city": "Oslo"}, "metadata": {"k": 1},
            "created_at": "2024-01-01T00:00:00.000Z", "summary": {"orders": {"total_amount": 10}}});
        assert!(forget().scrub(&mut c));
        for f in PERSONAL_FIELDS {
            let expected = if f == "metadata" { json!({}) } else { Value::Null };
            assert_eq!(c[f], expected, "{f}");
        }
        assert_eq!(c["created_at"], "2024-01-01T00:00:00.000Z");
        assert_eq!(c["summary"]["orders"]["total_amount"], 10);
    }

    #[test]
    fn other_customers_and_unrelated_tracking_ids_are_left_alone() {
        let mut v = json!([
            {"id": "cust_2", "name": "Bob", "email": "bob@x.io"},
            {"id": "r_2", "customer_id": "cust_2", "tracking_id": "bob-tracking"},
            {"id": "r_3", "customer_id": null, "tracking_id": "track_anon"},
        ]);
        let before = v.clone();
        assert!(!forget().scrub(&mut v));
        assert_eq!(v, before);
    }

    #[test]
    fn a_tracking_id_derived_from_the_source_id_goes_even_without_the_customer_id() {
        let mut v = json!({"valid": true, "tracking_id": "ann@example.com", "order": {"amount": 100}});
        assert!(forget().scrub(&mut v));
        assert_eq!(v["tracking_id"], "track_x");
        let text = r#"{"webhook":{"data":{"customer":{"id":"cust_1","name":"Ann"}}}}"#;
        assert_eq!(
            forget().scrub_text(text).as_deref(),
            Some(r#"{"webhook":{"data":{"customer":{"id":"cust_1","name":null}}}}"#)
        );
        assert_eq!(forget().scrub_text("not json"), None);
        assert_eq!(forget().scrub_text(r#"{"id":"cust_2"}"#), None);
    }

    #[test]
    fn an_import_report_loses_the_source_id_of_the_customers_refused_rows() {
        let report = r#"{"failed":[{"row":2,"source_id":"ann@example.com","reason":"bad email"},{"row":3,"source_id":"bob"}]}"#;
        let scrubbed: Value = serde_json::from_str(&forget().scrub_report_text(report).expect("changed")).expect("json");
        assert_eq!(
            scrubbed,
            json!({"failed": [{"row": 2, "source_id": null, "reason": "bad email"}, {"row": 3, "source_id": "bob"}]})
        );
        assert_eq!(forget().scrub_report_text(r#"{"failed":[{"row":3,"source_id":"bob"}]}"#), None);
        // Outside reports, a source id equal to the customer's is someone else's key.
        assert_eq!(forget().scrub_text(r#"{"id":"ord_1","source_id":"ann@example.com"}"#), None);
    }
}
