//! Campaigns, vouchers, rules and the checkout path end to end (SQLite; the engines'
//! agreement is covered by the conformance suite and tests/checkout.rs).

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

async fn setup() -> (TempDir, Server, Project) {
    let dir = TempDir::new();
    let server = Server::sqlite(&dir);
    let p = server.create_project("Coupons").await;
    (dir, server, p)
}

async fn wait_for_action(server: &Server, p: &Project, id: &str) -> Value {
    for _ in 0..200 {
        let (status, a) = server.call(p, Method::GET, &format!("/v1/async-actions/{id}"), None).await;
        assert_eq!(status, 200, "{a}");
        if a["status"] == "DONE" || a["status"] == "FAILED" {
            return a;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("async action {id} did not finish");
}

#[tokio::test]
async fn campaigns_generate_unique_codes_in_the_background() {
    let (_d, server, p) = setup().await;
    let (status, camp) = server
        .call(&p, Method::POST, "/v1/campaigns", Some(json!({
            "name": "Spring", "vouchers_count": 2000,
            "voucher": {"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 500}, "code_config": {"pattern": "SPR-#####", "charset": "0123456789"}}
        })))
        .await;
    assert_eq!(status, 200, "{camp}");
    let id = camp["id"].as_str().expect("id").to_string();
    let (_, actions) = server.call(&p, Method::GET, "/v1/async-actions", None).await;
    let action = actions["async_actions"][0]["id"].as_str().expect("an async action").to_string();
    let done = wait_for_action(&server, &p, &action).await;
    assert_eq!(done["status"], "DONE", "{done}");
    assert_eq!(done["result"]["done_count"], 2000);
    let (_, camp) = server.call(&p, Method::GET, &format!("/v1/campaigns/{id}"), None).await;
    assert_eq!(
        (camp["vouchers_count"].as_i64(), camp["vouchers_generation_status"].as_str()),
        (Some(2000), Some("DONE"))
    );
    let mut codes = std::collections::HashSet::new();
    for page in 1..=20 {
        let (_, list) = server
            .call(
                &p,
                Method::GET,
                &format!("/v1/vouchers?campaign_id={id}&limit=100&page={page}"),
                None,
            )
            .await;
        for v in list["vouchers"].as_array().expect("vouchers") {
            let code = v["code"].as_str().expect("code");
            assert!(
                code.starts_with("SPR-") && code.len() == 9 && code[4..].chars().all(|c| c.is_ascii_digit()),
                "{code}"
            );
            assert_eq!(v["discount"]["amount_off"], 500, "generated codes carry the campaign's discount");
            codes.insert(code.to_string());
        }
    }
    assert_eq!(codes.len(), 2000, "no code twice");
    // More codes than the pattern can hold are refused up front.
    let (status, err) = server
        .call(&p, Method::POST, "/v1/campaigns", Some(json!({
            "name": "Tiny", "vouchers_count": 60, "voucher": {"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 1}, "code_config": {"pattern": "##", "charset": "0123456789"}}
        })))
        .await;
    assert_eq!((status, err["key"].as_str()), (400, Some("code_space_exhausted")), "{err}");
    let (status, _) = server
        .call(
            &p,
            Method::POST,
            "/v1/campaigns",
            Some(json!({"name": "Spring", "voucher": {"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 1}}})),
        )
        .await;
    assert_eq!(status, 409, "campaign names are unique per project");
}

/// Codes are unique per project, so campaigns sharing a small code space collide: each
/// still gets exactly its count, and a campaign for which no free code is left fails
/// with a clear message instead of spinning.
#[tokio::test]
async fn generation_works_around_codes_already_taken() {
    let (_d, server, p) = setup().await;
    let config = json!({"pattern": "##", "charset": "0123456789"});
    let mut all = std::collections::HashSet::new();
    for (name, count) in [("First", 45), ("Second", 45), ("Third", 10)] {
        let (status, camp) = server
            .call(
                &p,
                Method::POST,
                "/v1/campaigns",
                Some(json!({
                    "name": name, "vouchers_count": count,
                    "voucher": {"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 1}, "code_config": config}
                })),
            )
            .await;
        assert_eq!(status, 200, "{camp}");
        let (_, actions) = server.call(&p, Method::GET, "/v1/async-actions?limit=1", None).await;
        let action = actions["async_actions"][0]["id"].as_str().expect("an async action").to_string();
        let done = wait_for_action(&server, &p, &action).await;
        assert_eq!(
            (done["status"].as_str(), done["result"]["done_count"].as_i64()),
            (Some("DONE"), Some(count)),
            "{done}"
        );
        let id = camp["id"].as_str().expect("id");
        let (_, list) = server
            .call(&p, Method::GET, &format!("/v1/vouchers?campaign_id={id}&limit=100"), None)
            .await;
        let codes = list["vouchers"].as_array().expect("vouchers");
        assert_eq!(codes.len() as i64, count, "{name}");
        for v in codes {
            assert!(
                all.insert(v["code"].as_str().expect("code").to_string()),
                "code {} issued twice",
                v["code"]
            );
        }
    }
    assert_eq!(all.len(), 100, "the whole space of 100 codes is in use");
    // Nothing is left: the action fails with a message rather than running forever.
    let (status, camp) = server
        .call(
            &p,
            Method::POST,
            "/v1/campaigns",
            Some(json!({
                "name": "Fourth", "vouchers_count": 5,
                "voucher": {"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 1}, "code_config": config}
            })),
        )
        .await;
    assert_eq!(status, 200, "{camp}");
    let (_, actions) = server.call(&p, Method::GET, "/v1/async-actions?limit=1", None).await;
    let action = actions["async_actions"][0]["id"].as_str().expect("an async action").to_string();
    let failed = wait_for_action(&server, &p, &action).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert!(
        failed["result"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("ran out of free codes")),
        "{failed}"
    );
    let (_, camp) = server
        .call(
            &p,
            Method::GET,
            &format!("/v1/campaigns/{}", camp["id"].as_str().expect("id")),
            None,
        )
        .await;
    assert_eq!(camp["vouchers_count"], 0, "{camp}");
}

#[tokio::test]
async fn validation_statuses_and_shapes() {
    let (_d, server, p) = setup().await;
    server
        .call(
            &p,
            Method::POST,
            "/v1/vouchers/TENOFF",
            Some(json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "PERCENT", "percent_off": 10}})),
        )
        .await;
    server
        .call(&p, Method::POST, "/v1/vouchers/OLD", Some(json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 1}, "expiration_date": "2020-01-01T00:00:00Z"})))
        .await;
    server
        .call(
            &p,
            Method::POST,
            "/v1/vouchers/OFF",
            Some(json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 1}, "active": false})),
        )
        .await;
    let order = json!({"items": [{"product_id": "p1", "quantity": 2, "price": 2500}, {"product_id": "p2", "quantity": 1, "price": 5000}]});
    let (status, v) = server
        .call(
            &p,
            Method::POST,
            "/v1/validations",
            Some(json!({"redeemables": [{"object": "voucher", "id": "TENOFF"}], "order": order})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["valid"], true);
    assert_eq!(v["redeemables"][0]["status"], "APPLICABLE");
    assert_eq!(
        (
            v["order"]["amount"].as_i64(),
            v["order"]["discount_amount"].as_i64(),
            v["order"]["total_amount"].as_i64()
        ),
        (Some(10000), Some(1000), Some(9000))
    );
    assert!(v["stacking_rules"]["applicable_redeemables_limit"].is_number());
    for (code, key) in [("OLD", "voucher_expired"), ("OFF", "voucher_disabled"), ("NOPE", "not_found")] {
        let (_, v) = server
            .call(
                &p,
                Method::POST,
                "/v1/validations",
                Some(json!({"redeemables": [{"object": "voucher", "id": "TENOFF"}, {"object": "voucher", "id": code}], "order": order})),
            )
            .await;
        assert_eq!(v["valid"], false, "{v}");
        let statuses: Vec<(&str, &str)> = v["redeemables"]
            .as_array()
            .expect("list")
            .iter()
            .map(|r| (r["id"].as_str().unwrap_or(""), r["status"].as_str().unwrap_or("")))
            .collect();
        assert_eq!(statuses, vec![("TENOFF", "SKIPPED"), (code, "INAPPLICABLE")]);
        assert_eq!(v["inapplicable_redeemables"][0]["result"]["error"]["key"], key);
        assert!(v["stacking_rules"].is_object(), "stacking_rules is always present");
    }
    // Codes are case-sensitive by default.
    let (_, v) = server
        .call(
            &p,
            Method::POST,
            "/v1/validations",
            Some(json!({"redeemables": [{"object": "voucher", "id": "tenoff"}], "order": order})),
        )
        .await;
    assert_eq!(v["valid"], false);
    // Bad requests are refused with the envelope.
    let (status, e) = server
        .call(&p, Method::POST, "/v1/validations", Some(json!({"redeemables": []})))
        .await;
    assert_eq!((status, e["key"].as_str()), (400, Some("invalid_redeemables")));
    let (status, e) = server
        .call(
            &p,
            Method::POST,
            "/v1/validations",
            Some(json!({"redeemables": [{"object": "voucher", "id": "A"}, {"object": "voucher", "id": "A"}]})),
        )
        .await;
    assert_eq!((status, e["key"].as_str()), (400, Some("duplicated_redeemables")));
    // Legacy single-code validation.
    let (status, legacy) = server
        .call(&p, Method::POST, "/v1/vouchers/TENOFF/validate", Some(json!({"order": order})))
        .await;
    assert_eq!(
        (status, legacy["valid"].as_bool(), legacy["discount"]["percent_off"].as_i64()),
        (200, Some(true), Some(10))
    );
    let (status, legacy) = server
        .call(&p, Method::POST, "/v1/vouchers/OLD/validate", Some(json!({"order": order})))
        .await;
    assert_eq!(
        (status, legacy["valid"].as_bool(), legacy["error"]["key"].as_str()),
        (200, Some(false), Some("voucher_expired"))
    );
}

#[tokio::test]
async fn rules_limit_customers_and_orders() {
    let (_d, server, p) = setup().await;
    let (status, rule) = server
        .call(&p, Method::POST, "/v1/validation-rules", Some(json!({
            "name": "Big orders, once per customer",
            "rules": {
                "1": {"name": "order.amount", "conditions": {"$more_than": [5000]}, "error": {"message": "Spend more than 50"}},
                "2": {"name": "redemption.count.per_customer", "conditions": {"$less_than": [1]}, "error": {"message": "Once per customer"}},
                "logic": "1 and 2"
            }
        })))
        .await;
    assert_eq!(status, 200, "{rule}");
    let rid = rule["id"].as_str().expect("id");
    server
        .call(
            &p,
            Method::POST,
            "/v1/vouchers/ONCE",
            Some(json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 500}})),
        )
        .await;
    let (status, a) = server
        .call(
            &p,
            Method::POST,
            &format!("/v1/validation-rules/{rid}/assignments"),
            Some(json!({"related_object_type": "voucher", "related_object_id": "ONCE"})),
        )
        .await;
    assert_eq!(status, 200, "{a}");
    let body = |amount: i64, who: &str| json!({"redeemables": [{"object": "voucher", "id": "ONCE"}], "order": {"amount": amount}, "customer": {"source_id": who}});
    let (_, v) = server.call(&p, Method::POST, "/v1/validations", Some(body(3000, "ann"))).await;
    let err = &v["inapplicable_redeemables"][0]["result"]["error"];
    assert_eq!(
        (err["key"].as_str(), err["error"]["message"].as_str()),
        (Some("order_rules_violated"), Some("Spend more than 50")),
        "{v}"
    );
    let (status, r) = server.call(&p, Method::POST, "/v1/redemptions", Some(body(9000, "ann"))).await;
    assert_eq!(status, 200, "{r}");
    let (status, r) = server.call(&p, Method::POST, "/v1/redemptions", Some(body(9000, "ann"))).await;
    assert_eq!(status, 400, "the same customer again: {r}");
    assert_eq!(r["redemptions"][0]["result"], "FAILURE");
    let (status, _) = server.call(&p, Method::POST, "/v1/redemptions", Some(body(9000, "bob"))).await;
    assert_eq!(status, 200, "another customer");
    let (_, failed) = server.call(&p, Method::GET, "/v1/redemptions?result=FAILURE", None).await;
    assert_eq!(failed["total"], 1, "failed attempts are recorded");

    // Rules that would be expensive are refused at creation.
    let many: Vec<i64> = (0..5000).collect();
    for bad in [
        json!({"rules": {"1": {"name": "order.amount", "conditions": {"$in": many}}}}),
        json!({"rules": {"1": {"name": "order.amount"}, "logic": format!("{}1{}", "(".repeat(50), ")".repeat(50))}}),
        json!({"rules": {"1": {"name": "order.mystery"}}}),
    ] {
        let (status, e) = server.call(&p, Method::POST, "/v1/validation-rules", Some(bad)).await;
        assert_eq!((status, e["key"].as_str()), (400, Some("invalid_validation_rules")), "{e}");
    }
    // One that passes creation but is too costly for a large cart stops with a clear error.
    let (_, costly) = server
        .call(
            &p,
            Method::POST,
            "/v1/validation-rules",
            Some(json!({"rules": {"1": {"name": "order.items.price_each", "conditions": {"$not_in": (0..1000).collect::<Vec<i64>>()}}}})),
        )
        .await;
    server
        .call(
            &p,
            Method::POST,
            "/v1/vouchers/COSTLY",
            Some(json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 1}, "validation_rules": [costly["id"]]})),
        )
        .await;
    let items: Vec<Value> = (0..400)
        .map(|i| json!({"product_id": format!("p{i}"), "quantity": 1, "price": 5000 + i}))
        .collect();
    let (status, v) = server
        .call(
            &p,
            Method::POST,
            "/v1/validations",
            Some(json!({"redeemables": [{"object": "voucher", "id": "COSTLY"}], "order": {"items": items}})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        v["inapplicable_redeemables"][0]["result"]["error"]["key"], "rule_evaluation_budget_exceeded",
        "{v}"
    );
}

#[tokio::test]
async fn sessions_reserve_and_release() {
    let (_d, server, p) = setup().await;
    server
        .call(
            &p,
            Method::POST,
            "/v1/vouchers/ONE",
            Some(json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 100}, "redemption": {"quantity": 1}})),
        )
        .await;
    let lock = json!({"redeemables": [{"object": "voucher", "id": "ONE"}], "order": {"amount": 1000}, "session": {"type": "LOCK", "key": "cart-1", "ttl": 1, "ttl_unit": "HOURS"}});
    let (_, v) = server.call(&p, Method::POST, "/v1/validations", Some(lock)).await;
    assert_eq!(
        (v["valid"].as_bool(), v["session"]["key"].as_str()),
        (Some(true), Some("cart-1")),
        "{v}"
    );
    // Another checkout cannot take the reserved use.
    let other = json!({"redeemables": [{"object": "voucher", "id": "ONE"}], "order": {"amount": 1000}});
    let (_, v) = server.call(&p, Method::POST, "/v1/validations", Some(other.clone())).await;
    assert_eq!(v["inapplicable_redeemables"][0]["result"]["error"]["key"], "quantity_exceeded");
    let (status, _) = server.call(&p, Method::POST, "/v1/redemptions", Some(other.clone())).await;
    assert_eq!(status, 400);
    // Releasing the session frees it.
    let (status, _) = server.call(&p, Method::DELETE, "/v1/vouchers/ONE/sessions/cart-1", None).await;
    assert_eq!(status, 204);
    let (status, _) = server.call(&p, Method::DELETE, "/v1/vouchers/ONE/sessions/cart-1", None).await;
    assert_eq!(status, 404);
    let (status, r) = server.call(&p, Method::POST, "/v1/redemptions", Some(other)).await;
    assert_eq!(status, 200, "{r}");
}

#[tokio::test]
async fn stacked_redemption_and_rollbacks() {
    let (_d, server, p) = setup().await;
    server
        .call(
            &p,
            Method::POST,
            "/v1/vouchers/A10",
            Some(json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "PERCENT", "percent_off": 10}})),
        )
        .await;
    server
        .call(
            &p,
            Method::POST,
            "/v1/vouchers/G50",
            Some(json!({"type": "GIFT_VOUCHER", "gift": {"amount": 5000}})),
        )
        .await;
    let (status, r) = server
        .call(
            &p,
            Method::POST,
            "/v1/redemptions",
            Some(json!({
                "redeemables": [{"object": "voucher", "id": "A10"}, {"object": "voucher", "id": "G50"}],
                "order": {"source_id": "web-1", "amount": 20000}, "customer": {"source_id": "stacker"}
            })),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["redemptions"].as_array().map(Vec::len), Some(2));
    let parent = r["parent_redemption"]["id"].as_str().expect("parent").to_string();
    assert_eq!(
        r["order"]["total_amount"],
        20000 - 2000 - 5000,
        "10% first, then the gift card on what is left"
    );
    let (_, order) = server.call(&p, Method::GET, "/v1/orders/web-1", None).await;
    assert_eq!(order["total_amount"], 13000);
    let child = r["redemptions"][0]["id"].as_str().expect("child");
    let (status, e) = server
        .call(&p, Method::POST, &format!("/v1/redemptions/{child}/rollback"), None)
        .await;
    assert_eq!((status, e["key"].as_str()), (400, Some("invalid_redemption_parent")));
    let (status, rb) = server
        .call(&p, Method::POST, &format!("/v1/redemptions/{parent}/rollbacks?reason=refund"), None)
        .await;
    assert_eq!(status, 200, "{rb}");
    assert_eq!(rb["rollbacks"].as_array().map(Vec::len), Some(2));
    let (_, g) = server.call(&p, Method::GET, "/v1/vouchers/G50", None).await;
    assert_eq!(g["gift"]["balance"], 5000, "the rollback restored exactly what was taken");
    let (status, _) = server
        .call(&p, Method::POST, &format!("/v1/redemptions/{parent}/rollbacks"), None)
        .await;
    assert_eq!(status, 400, "a rollback happens once");
    // Legacy single-code redemption.
    let (status, legacy) = server
        .call(
            &p,
            Method::POST,
            "/v1/vouchers/A10/redemption",
            Some(json!({"order": {"amount": 1000}})),
        )
        .await;
    assert_eq!(
        (status, legacy["object"].as_str(), legacy["result"].as_str()),
        (200, Some("redemption"), Some("SUCCESS")),
        "{legacy}"
    );
}

#[tokio::test]
async fn other_projects_cannot_touch_codes() {
    let (_d, server, a) = setup().await;
    let b = server.create_project("Other").await;
    let (_, camp) = server
        .call(
            &a,
            Method::POST,
            "/v1/campaigns",
            Some(json!({"name": "Mine", "voucher": {"type": "GIFT_VOUCHER", "gift": {"amount": 100}}})),
        )
        .await;
    let cid = camp["id"].as_str().expect("id").to_string();
    server
        .call(&a, Method::POST, &format!("/v1/campaigns/{cid}/vouchers/SECRET"), None)
        .await;
    let (_, r) = server
        .call(
            &a,
            Method::POST,
            "/v1/redemptions",
            Some(json!({"redeemables": [{"object": "voucher", "id": "SECRET", "gift": {"credits": 10}}], "order": {"amount": 100}})),
        )
        .await;
    let rid = r["redemptions"][0]["id"].as_str().expect("redemption").to_string();
    let (_, rule) = server
        .call(
            &a,
            Method::POST,
            "/v1/validation-rules",
            Some(json!({"rules": {"1": {"name": "order.amount", "conditions": {"$more_than": [1]}}}})),
        )
        .await;
    let rule = rule["id"].as_str().expect("rule").to_string();
    for (method, path, body) in [
        (Method::GET, format!("/v1/campaigns/{cid}"), None),
        (Method::GET, "/v1/campaigns/Mine".to_string(), None),
        (Method::PUT, format!("/v1/campaigns/{cid}"), Some(json!({"description": "x"}))),
        (Method::DELETE, format!("/v1/campaigns/{cid}"), None),
        (Method::POST, format!("/v1/campaigns/{cid}/vouchers"), None),
        (Method::GET, "/v1/vouchers/SECRET".to_string(), None),
        (Method::PUT, "/v1/vouchers/SECRET".to_string(), Some(json!({"active": false}))),
        (Method::DELETE, "/v1/vouchers/SECRET".to_string(), None),
        (
            Method::POST,
            "/v1/vouchers/SECRET/balance".to_string(),
            Some(json!({"amount": 1000})),
        ),
        (Method::GET, "/v1/vouchers/SECRET/transactions".to_string(), None),
        (Method::GET, format!("/v1/redemptions/{rid}"), None),
        (Method::POST, format!("/v1/redemptions/{rid}/rollback"), None),
        (Method::GET, format!("/v1/validation-rules/{rule}"), None),
        (
            Method::POST,
            format!("/v1/validation-rules/{rule}/assignments"),
            Some(json!({"related_object_id": "SECRET"})),
        ),
    ] {
        let (status, resp) = server.call(&b, method.clone(), &path, body).await;
        assert_eq!(status, 404, "{method} {path} as another project: {resp}");
    }
    let (_, v) = server
        .call(
            &b,
            Method::POST,
            "/v1/validations",
            Some(json!({"redeemables": [{"object": "voucher", "id": "SECRET"}], "order": {"amount": 100}})),
        )
        .await;
    assert_eq!(v["inapplicable_redeemables"][0]["result"]["error"]["key"], "not_found");
    let (_, list) = server.call(&b, Method::GET, "/v1/redemptions", None).await;
    assert_eq!(list["total"], 0);
    let (_, v) = server.call(&a, Method::GET, "/v1/vouchers/SECRET", None).await;
    assert_eq!(v["gift"]["balance"], 90, "untouched by the other project");
}

#[tokio::test]
async fn vouchers_import_from_json_and_csv() {
    let (_d, server, p) = setup().await;
    let (_, camp) = server
        .call(
            &p,
            Method::POST,
            "/v1/campaigns",
            Some(json!({"name": "Imported", "voucher": {"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 250}}})),
        )
        .await;
    let cid = camp["id"].as_str().expect("id").to_string();
    let rows = json!([{"code": "IMP-1", "metadata": {"batch": 1}}, {"code": "IMP-2", "redemption": {"quantity": 3}}, {"code": "bad code"}]);
    let (status, a) = server
        .call(&p, Method::POST, &format!("/v1/campaigns/{cid}/import"), Some(rows.clone()))
        .await;
    assert_eq!(status, 202, "{a}");
    let done = wait_for_action(&server, &p, a["async_action_id"].as_str().expect("id")).await;
    assert_eq!(
        (done["result"]["done_count"].as_i64(), done["result"]["failed_count"].as_i64()),
        (Some(2), Some(1)),
        "{done}"
    );
    assert_eq!(done["result"]["failed"][0]["code"], "bad code");
    let (_, v) = server.call(&p, Method::GET, "/v1/vouchers/IMP-2", None).await;
    assert_eq!(
        (
            v["redemption"]["quantity"].as_i64(),
            v["discount"]["amount_off"].as_i64(),
            v["campaign_id"].as_str()
        ),
        (Some(3), Some(250), Some(cid.as_str()))
    );
    // Running the same import again changes nothing.
    let (_, a) = server
        .call(&p, Method::POST, &format!("/v1/campaigns/{cid}/import"), Some(rows))
        .await;
    let again = wait_for_action(&server, &p, a["async_action_id"].as_str().expect("id")).await;
    assert_eq!(again["result"]["done_count"], 0);
    let (_, c) = server.call(&p, Method::GET, &format!("/v1/campaigns/{cid}"), None).await;
    assert_eq!(c["vouchers_count"], 2);

    let csv = "Code,Voucher Type,Value,Discount Type,Region\nCSV-1,DISCOUNT_VOUCHER,15,PERCENT,EU\nCSV-2,GIFT_VOUCHER,5000,,US\nCSV-3,DISCOUNT_VOUCHER,ten,AMOUNT,EU\n";
    let form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(csv.as_bytes().to_vec()).file_name("v.csv"));
    let r = server
        .http
        .post(server.url("/v1/vouchers/importCSV"))
        .header("X-App-Id", &p.app_id)
        .header("X-App-Token", &p.app_token)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status().as_u16(), 202);
    let a: Value = r.json().await.expect("json");
    let done = wait_for_action(&server, &p, a["async_action_id"].as_str().expect("id")).await;
    assert_eq!(
        (done["result"]["done_count"].as_i64(), done["result"]["failed_count"].as_i64()),
        (Some(2), Some(1)),
        "{done}"
    );
    assert_eq!(done["result"]["failed"][0]["row"], 4);
    let (_, v) = server.call(&p, Method::GET, "/v1/vouchers/CSV-2", None).await;
    assert_eq!(
        (v["type"].as_str(), v["gift"]["balance"].as_i64(), v["metadata"]["Region"].as_str()),
        (Some("GIFT_VOUCHER"), Some(5000), Some("US"))
    );
    let (_, v) = server.call(&p, Method::GET, "/v1/vouchers/CSV-1", None).await;
    assert_eq!(v["discount"]["percent_off"], 15.0);
}

#[tokio::test]
async fn code_generation_resumes_after_a_crash() {
    let dir = TempDir::new();
    let server = Server::sqlite(&dir);
    let p = server.create_project("Crash").await;
    let (status, camp) = server
        .call(&p, Method::POST, "/v1/campaigns", Some(json!({
            "name": "Big", "vouchers_count": 150_000,
            "voucher": {"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 1}, "code_config": {"length": 9, "charset": "0123456789ABCDEF"}}
        })))
        .await;
    assert_eq!(status, 200, "{camp}");
    let id = camp["id"].as_str().expect("id").to_string();
    // Let it make some progress, then kill it without warning.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let (_, before) = server.call(&p, Method::GET, &format!("/v1/campaigns/{id}"), None).await;
    assert!(
        before["vouchers_count"].as_i64().unwrap_or(0) < 150_000,
        "the kill must interrupt the generation: {before}"
    );
    let mut server = server;
    server.child.kill().expect("kill");
    server.child.wait().expect("wait");
    drop(server);
    let server = Server::sqlite(&dir);
    let (_, actions) = server.call(&p, Method::GET, "/v1/async-actions", None).await;
    let action = actions["async_actions"][0]["id"].as_str().expect("action").to_string();
    let mut done = Value::Null;
    for _ in 0..1200 {
        let (_, a) = server.call(&p, Method::GET, &format!("/v1/async-actions/{action}"), None).await;
        if a["status"] == "DONE" || a["status"] == "FAILED" {
            done = a;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(done["status"], "DONE", "{done}");
    let (_, c) = server.call(&p, Method::GET, &format!("/v1/campaigns/{id}"), None).await;
    assert_eq!(c["vouchers_count"], 150_000, "exactly the requested count after the restart");
    let (_, list) = server
        .call(&p, Method::GET, &format!("/v1/vouchers?campaign_id={id}&limit=1"), None)
        .await;
    assert_eq!(list["total"], 150_000);
}

#[tokio::test]
async fn per_customer_limits_count_the_request_itself() {
    let (_d, server, p) = setup().await;
    let (_, rule) = server
        .call(
            &p,
            Method::POST,
            "/v1/validation-rules",
            Some(json!({"rules": {"1": {"name": "redemption.count.per_customer", "conditions": {"$less_than": [1]}}}})),
        )
        .await;
    let (_, camp) = server
        .call(
            &p,
            Method::POST,
            "/v1/campaigns",
            Some(json!({
                "name": "Once", "validation_rules": [rule["id"]],
                "voucher": {"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 100}}
            })),
        )
        .await;
    let cid = camp["id"].as_str().expect("id");
    for code in ["ONCE-A", "ONCE-B"] {
        server
            .call(&p, Method::POST, &format!("/v1/campaigns/{cid}/vouchers/{code}"), None)
            .await;
    }
    // Two codes of the campaign in one request: the second sees the first.
    let (status, r) = server
        .call(
            &p,
            Method::POST,
            "/v1/redemptions",
            Some(json!({
                "redeemables": [{"object": "voucher", "id": "ONCE-A"}, {"object": "voucher", "id": "ONCE-B"}],
                "order": {"amount": 1000}, "customer": {"source_id": "greedy"}
            })),
        )
        .await;
    assert_eq!(status, 400, "{r}");
    let (_, list) = server.call(&p, Method::GET, "/v1/redemptions?result=SUCCESS", None).await;
    assert_eq!(list["total"], 0, "nothing was redeemed");
}
