//! Metadata schemas: typed metadata refused on write with a clear error, nothing written.

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn schemas_refuse_bad_metadata_on_every_resource() {
    let dir = TempDir::new();
    let server = Server::sqlite(&dir);
    let p = server.create_project("Schemas").await;
    let other = server.create_project("Other").await;
    let base = format!("/management/v1/projects/{}/metadata-schemas", p.id);
    let (status, s) = server
        .mgmt(
            Method::POST,
            &base,
            Some(json!({"related_object": "customer", "allow_defined_only": true, "properties": {
                "region": {"type": "string", "optional": false, "array": false, "eq": ["north", "south"]},
                "age": {"type": "number", "optional": true, "array": false, "gte": 18},
            }})),
        )
        .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["object"], "metadata_schema");
    let id = s["id"].as_str().expect("id").to_string();
    let (status, e) = server
        .mgmt(Method::POST, &base, Some(json!({"related_object": "customer", "properties": {}})))
        .await;
    assert_envelope(status, &e, "duplicate_found");
    let (status, e) = server
        .mgmt(
            Method::POST,
            &base,
            Some(json!({"related_object": "customer", "properties": {"x": {"type": "colour", "optional": true, "array": false}}})),
        )
        .await;
    assert_envelope(status, &e, "invalid_payload");

    // Customers: required, allowed values, defined-only; a refused write leaves nothing.
    for bad in [
        json!({}),
        json!({"region": "east"}),
        json!({"region": "north", "age": 12}),
        json!({"region": "north", "colour": "red"}),
    ] {
        let (status, e) = server
            .call(
                &p,
                Method::POST,
                "/v1/customers",
                Some(json!({"source_id": "ann", "metadata": bad})),
            )
            .await;
        assert_envelope(status, &e, "metadata_validation_failed");
    }
    let (status, _) = server.call(&p, Method::GET, "/v1/customers/ann", None).await;
    assert_eq!(status, 404, "a refused create writes nothing");
    let (status, c) = server
        .call(
            &p,
            Method::POST,
            "/v1/customers",
            Some(json!({"source_id": "ann", "metadata": {"region": "north", "age": 40}})),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    let (status, e) = server
        .call(&p, Method::PUT, "/v1/customers/ann", Some(json!({"metadata": {"region": "west"}})))
        .await;
    assert_envelope(status, &e, "metadata_validation_failed");
    let (_, c) = server.call(&p, Method::GET, "/v1/customers/ann", None).await;
    assert_eq!(c["metadata"]["region"], "north", "a refused update changes nothing");
    // A checkout that names a new customer is not held to the schema.
    server
        .create_voucher(
            &p,
            "TEN",
            json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 100}}),
        )
        .await;
    let (status, r) = server
        .call(&p, Method::POST, "/v1/redemptions", Some(json!({"redeemables": [{"object": "voucher", "id": "TEN"}], "order": {"amount": 1000}, "customer": {"source_id": "walk-in"}})))
        .await;
    assert_eq!(status, 200, "{r}");
    // Other projects are unaffected.
    let (status, _) = server
        .call(
            &other,
            Method::POST,
            "/v1/customers",
            Some(json!({"source_id": "ann", "metadata": {"colour": "red"}})),
        )
        .await;
    assert_eq!(status, 200);

    // Read through the project's own keys.
    let (status, got) = server.call(&p, Method::GET, "/v1/metadata-schemas/customer", None).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["id"], id.as_str());
    let (_, list) = server.call(&p, Method::GET, "/v1/metadata-schemas", None).await;
    assert_eq!(list["total"], 1);
    let (status, e) = server.call(&other, Method::GET, "/v1/metadata-schemas/customer", None).await;
    assert_envelope(status, &e, "not_found");

    // Retiring a property and allowing undefined ones.
    let (status, u) = server
        .mgmt(Method::PUT, &format!("{base}/{id}"), Some(json!({"allow_defined_only": false, "properties": {"region": {"type": "string", "optional": false, "array": false, "deleted": true}}})))
        .await;
    assert_eq!(status, 200, "{u}");
    let (status, _) = server
        .call(
            &p,
            Method::POST,
            "/v1/customers",
            Some(json!({"source_id": "bob", "metadata": {"colour": "red"}})),
        )
        .await;
    assert_eq!(status, 200);

    // Other resources.
    for (resource, props) in [
        (
            "product",
            json!({"weight": {"type": "number", "optional": false, "array": false, "gt": 0}}),
        ),
        ("order", json!({"channel": {"type": "string", "optional": false, "array": false}})),
        ("voucher", json!({"batch": {"type": "number", "optional": false, "array": false}})),
        ("campaign", json!({"launched": {"type": "date", "optional": false, "array": false}})),
    ] {
        let (status, s) = server
            .mgmt(Method::POST, &base, Some(json!({"related_object": resource, "properties": props})))
            .await;
        assert_eq!(status, 200, "{s}");
    }
    let cases = [
        (
            "/v1/products",
            json!({"name": "Shoe", "metadata": {"weight": 0}}),
            json!({"name": "Shoe", "metadata": {"weight": 2.5}}),
        ),
        (
            "/v1/orders",
            json!({"amount": 100, "metadata": {}}),
            json!({"amount": 100, "metadata": {"channel": "web"}}),
        ),
        (
            "/v1/vouchers/BATCHED",
            json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 1}, "metadata": {"batch": "x"}}),
            json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 1}, "metadata": {"batch": 7}}),
        ),
        (
            "/v1/campaigns",
            json!({"name": "Launch", "voucher": {"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 1}}, "metadata": {"launched": "yesterday"}}),
            json!({"name": "Launch", "voucher": {"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 1}}, "metadata": {"launched": "2026-11-01"}}),
        ),
    ];
    for (path, bad, good) in cases {
        let (status, e) = server.call(&p, Method::POST, path, Some(bad)).await;
        assert_envelope(status, &e, "metadata_validation_failed");
        let (status, ok) = server.call(&p, Method::POST, path, Some(good)).await;
        assert_eq!(status, 200, "{path}: {ok}");
    }
    let (_, list) = server.call(&p, Method::GET, "/v1/campaigns", None).await;
    assert_eq!(list["total"], 1, "the refused campaign was not written");

    let (status, _) = server.mgmt(Method::DELETE, &format!("{base}/{id}"), None).await;
    assert_eq!(status, 204);
    let (status, e) = server.mgmt(Method::GET, &format!("{base}/{id}"), None).await;
    assert_envelope(status, &e, "not_found");
}
