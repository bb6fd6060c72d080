//! Promotions, stacking rules and qualifications against the real binary.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

/// A PROMOTION campaign with the given tiers; returns the campaign and its tier ids.
async fn promotion(server: &Server, p: &Project, name: &str, tiers: Value, category: Option<&str>) -> (Value, Vec<String>) {
    let mut body = json!({"name": name, "campaign_type": "PROMOTION", "promotion": {"tiers": tiers}});
    if let Some(c) = category {
        body["category_id"] = json!(c);
    }
    let (status, camp) = server.call(p, Method::POST, "/v1/campaigns", Some(body)).await;
    assert_eq!(status, 200, "{camp}");
    let ids = camp["promotion"]["tiers"]
        .as_array()
        .expect("tiers")
        .iter()
        .map(|t| t["id"].as_str().expect("tier id").to_string())
        .collect();
    (camp, ids)
}

async fn rule(server: &Server, p: &Project, rules: Value) -> String {
    let (status, r) = server
        .call(
            p,
            Method::POST,
            "/v1/validation-rules",
            Some(json!({"name": format!("r{}", random_suffix()), "rules": rules})),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    r["id"].as_str().expect("rule id").to_string()
}

async fn category(server: &Server, p: &Project, name: &str, hierarchy: i64) -> String {
    let (status, c) = server
        .call(
            p,
            Method::POST,
            "/v1/categories",
            Some(json!({"name": name, "hierarchy": hierarchy})),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    c["id"].as_str().expect("category id").to_string()
}

async fn stacking(server: &Server, p: &Project, rules: Value) {
    let path = format!("/management/v1/projects/{}/stacking-rules", p.id);
    let (status, list) = server.mgmt(Method::GET, &path, None).await;
    assert_eq!(status, 200, "{list}");
    let (status, body) = match list["data"][0]["id"].as_str() {
        Some(id) => server.mgmt(Method::PUT, &format!("{path}/{id}"), Some(rules)).await,
        None => server.mgmt(Method::POST, &path, Some(rules)).await,
    };
    assert_eq!(status, 200, "{body}");
}

fn pct(p: i64) -> Value {
    json!({"discount": {"type": "PERCENT", "percent_off": p}})
}

fn off(amount: i64) -> Value {
    json!({"discount": {"type": "AMOUNT", "amount_off": amount}})
}

fn tier(name: &str, action: Value) -> Value {
    json!({"name": name, "action": action})
}

fn redeemables(v: &Value, list: &str) -> Vec<String> {
    v[list]
        .as_array()
        .map(|a| a.iter().map(|r| r["id"].as_str().unwrap_or_default().to_string()).collect())
        .unwrap_or_default()
}

fn skip_key(v: &Value, id: &str) -> String {
    v["skipped_redeemables"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["id"] == id))
        .map(|r| r["result"]["details"]["key"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

async fn validate(server: &Server, p: &Project, body: Value) -> Value {
    let (status, v) = server.call(p, Method::POST, "/v1/validations", Some(body)).await;
    assert_eq!(status, 200, "{v}");
    v
}

fn refs(tiers: &[&str]) -> Value {
    json!(tiers
        .iter()
        .map(|t| json!({"object": "promotion_tier", "id": t}))
        .collect::<Vec<_>>())
}

#[tokio::test]
async fn tiers_are_managed_and_checked() {
    let dir = TempDir::new();
    let server = Server::sqlite(&dir);
    let p = server.create_project("Promos").await;
    let (camp, tiers) = promotion(&server, &p, "Spring", json!([tier("5 off", off(500)), tier("10%", pct(10))]), None).await;
    assert_eq!(camp["campaign_type"], "PROMOTION");
    assert_eq!(tiers.len(), 2);
    assert_eq!(camp["promotion"]["tiers"][1]["hierarchy"], 2, "tiers are numbered in order");
    let cid = camp["id"].as_str().expect("id");

    let (status, t) = server
        .call(
            &p,
            Method::POST,
            &format!("/v1/promotions/{cid}/tiers"),
            Some(json!({"name": "Free", "hierarchy": 7, "action": off(100), "category": "summer"})),
        )
        .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["object"], "promotion_tier");
    assert_eq!(t["categories"][0]["name"], "summer", "a category named on a tier is created");
    let third = t["id"].as_str().expect("id").to_string();

    let (_, list) = server.call(&p, Method::GET, &format!("/v1/promotions/{cid}/tiers"), None).await;
    assert_eq!(list["total"], 3);
    assert_eq!(list["tiers"][2]["id"], third.as_str(), "ordered by hierarchy");
    let (_, all) = server.call(&p, Method::GET, "/v1/promotions/tiers?limit=2", None).await;
    assert_eq!((all["total"].as_i64(), all["has_more"].as_bool()), (Some(3), Some(true)));

    let (status, u) = server
        .call(
            &p,
            Method::PUT,
            &format!("/v1/promotions/tiers/{third}"),
            Some(json!({"banner": "Now free", "action": pct(20)})),
        )
        .await;
    assert_eq!(status, 200, "{u}");
    assert_eq!(
        (u["banner"].as_str(), u["action"]["discount"]["percent_off"].as_i64()),
        (Some("Now free"), Some(20))
    );
    let (_, d) = server
        .call(&p, Method::POST, &format!("/v1/promotions/tiers/{third}/disable"), None)
        .await;
    assert_eq!(d["active"], false);
    let v = validate(&server, &p, json!({"redeemables": refs(&[&third]), "order": {"amount": 1000}})).await;
    assert_eq!(v["valid"], false);
    assert_eq!(
        v["inapplicable_redeemables"][0]["result"]["error"]["key"],
        "promotion_tier_disabled"
    );
    let (_, e) = server
        .call(&p, Method::POST, &format!("/v1/promotions/tiers/{third}/enable"), None)
        .await;
    assert_eq!(e["active"], true);
    let v = validate(&server, &p, json!({"redeemables": refs(&[&third]), "order": {"amount": 1000}})).await;
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["order"]["total_discount_amount"], 200);

    let (status, _) = server
        .call(&p, Method::DELETE, &format!("/v1/promotions/tiers/{third}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, e) = server.call(&p, Method::GET, &format!("/v1/promotions/tiers/{third}"), None).await;
    assert_envelope(status, &e, "not_found");
    let v = validate(&server, &p, json!({"redeemables": refs(&[&third]), "order": {"amount": 1000}})).await;
    assert_eq!(
        v["inapplicable_redeemables"][0]["result"]["error"]["key"], "not_found",
        "a deleted tier is gone from the cached set"
    );

    // Bad input is refused with the envelope and nothing written.
    let (status, e) = server
        .call(
            &p,
            Method::POST,
            &format!("/v1/promotions/{cid}/tiers"),
            Some(json!({"name": "No action"})),
        )
        .await;
    assert_envelope(status, &e, "invalid_payload");
    let (status, e) = server
        .call(
            &p,
            Method::POST,
            &format!("/v1/promotions/{cid}/tiers"),
            Some(json!({"name": "Too much", "action": pct(150)})),
        )
        .await;
    assert_envelope(status, &e, "invalid_payload");
    let (status, e) = server
        .call(
            &p,
            Method::POST,
            "/v1/campaigns",
            Some(json!({"name": "Bad", "campaign_type": "PROMOTION", "vouchers_count": 5})),
        )
        .await;
    assert_envelope(status, &e, "invalid_payload");
    let (_, coupons) = server
        .call(
            &p,
            Method::POST,
            "/v1/campaigns",
            Some(json!({"name": "Coupons", "voucher": {"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 1}}})),
        )
        .await;
    let (status, e) = server
        .call(
            &p,
            Method::POST,
            &format!("/v1/promotions/{}/tiers", coupons["id"].as_str().expect("id")),
            Some(tier("x", off(1))),
        )
        .await;
    assert_envelope(status, &e, "invalid_payload");
    let (_, list) = server.call(&p, Method::GET, &format!("/v1/promotions/{cid}/tiers"), None).await;
    assert_eq!(list["total"], 2);
    // A promotion never holds codes.
    for (path, body) in [
        (format!("/v1/campaigns/{cid}/vouchers"), json!({})),
        (format!("/v1/campaigns/{cid}/vouchers"), json!({"vouchers_count": 5})),
        (format!("/v1/campaigns/{cid}/vouchers/PROMO-CODE"), json!({})),
        ("/v1/vouchers/PROMO-CODE2".to_string(), json!({"campaign_id": cid})),
    ] {
        let (status, e) = server.call(&p, Method::POST, &path, Some(body)).await;
        assert_envelope(status, &e, "invalid_payload");
    }

    // Another project sees none of it.
    let q = server.create_project("Other").await;
    let (status, e) = server
        .call(&q, Method::GET, &format!("/v1/promotions/tiers/{}", tiers[0]), None)
        .await;
    assert_envelope(status, &e, "not_found");
    let v = validate(&server, &q, json!({"redeemables": refs(&[&tiers[0]]), "order": {"amount": 1000}})).await;
    assert_eq!(v["valid"], false);
}

#[tokio::test]
async fn tier_and_coupon_redeem_together_and_roll_back_with_the_order() {
    let dir = TempDir::new();
    let server = Server::sqlite(&dir);
    tier_and_coupon(&server).await;
    let out = std::process::Command::new(bin())
        .arg("check")
        .arg("--data-dir")
        .arg(&dir.0)
        .output()
        .expect("check");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[tokio::test]
async fn tier_and_coupon_on_postgres() {
    let server = Server::start(Backend::Postgres(pg_fresh_url()));
    tier_and_coupon(&server).await;
}

async fn tier_and_coupon(server: &Server) {
    let p = server.create_project("Stack").await;
    let over_100 = rule(
        server,
        &p,
        json!({"1": {"name": "order.amount", "conditions": {"$more_than": [10000]}}}),
    )
    .await;
    let (_, tiers) = promotion(
        server,
        &p,
        "Big carts",
        json!([{"name": "10% over 100", "action": pct(10), "validation_rules": [over_100]}]),
        None,
    )
    .await;
    server
        .create_voucher(
            &p,
            "FIVE",
            json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 500}}),
        )
        .await;
    let body = json!({
        "redeemables": [{"object": "promotion_tier", "id": tiers[0]}, {"object": "voucher", "id": "FIVE"}],
        "order": {"source_id": "o-1", "items": [{"product_id": "p1", "quantity": 2, "price": 6000}]},
        "customer": {"source_id": "ann"},
    });
    let v = validate(server, &p, body.clone()).await;
    assert_eq!(v["valid"], true, "{v}");
    // 10% of 12000, then 500 off what is left.
    assert_eq!(v["order"]["total_discount_amount"], 1700);
    assert_eq!(v["redeemables"][0]["object"], "promotion_tier");

    let (status, r) = server.call(&p, Method::POST, "/v1/redemptions", Some(body)).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["redemptions"].as_array().map(Vec::len), Some(2));
    assert_eq!(r["redemptions"][0]["related_object_type"], "promotion_tier");
    assert_eq!(r["order"]["total_amount"], 10300);
    let parent = r["parent_redemption"]["id"].as_str().expect("parent").to_string();
    let (_, t) = server
        .call(&p, Method::GET, &format!("/v1/promotions/tiers/{}", tiers[0]), None)
        .await;
    assert_eq!(t["summary"]["redemptions"]["total_redeemed"], 1);
    assert_eq!(t["summary"]["orders"]["total_discount_amount"], 1200);

    let (status, rb) = server
        .call(&p, Method::POST, &format!("/v1/redemptions/{parent}/rollbacks"), None)
        .await;
    assert_eq!(status, 200, "{rb}");
    assert_eq!(rb["rollbacks"].as_array().map(Vec::len), Some(2));
    // WITH_ORDER (the default): the order loses the rolled back discounts.
    assert_eq!(rb["order"]["total_discount_amount"], 0, "{rb}");
    let (_, order) = server.call(&p, Method::GET, "/v1/orders/o-1", None).await;
    assert_eq!(
        (order["total_discount_amount"].as_i64(), order["total_amount"].as_i64()),
        (Some(0), Some(12000)),
        "{order}"
    );
    let (_, t) = server
        .call(&p, Method::GET, &format!("/v1/promotions/tiers/{}", tiers[0]), None)
        .await;
    assert_eq!(t["summary"]["redemptions"]["total_redeemed"], 0);
    let (_, voucher) = server.call(&p, Method::GET, "/v1/vouchers/FIVE", None).await;
    assert_eq!(voucher["redemption"]["redeemed_quantity"], 0);

    // Under the threshold the tier's rule fails, and under ALL nothing applies.
    let small = json!({"redeemables": [{"object": "promotion_tier", "id": tiers[0]}, {"object": "voucher", "id": "FIVE"}], "order": {"amount": 5000}});
    let v = validate(server, &p, small.clone()).await;
    assert_eq!(v["valid"], false);
    assert_eq!(v["inapplicable_redeemables"][0]["result"]["error"]["key"], "order_rules_violated");
    assert_eq!(skip_key(&v, "FIVE"), "preceding_validation_failed");

    // WITHOUT_ORDER leaves the order alone on rollback.
    stacking(server, &p, json!({"redeemables_rollback_order_mode": "WITHOUT_ORDER"})).await;
    let (_, r) = server
        .call(
            &p,
            Method::POST,
            "/v1/redemptions",
            Some(json!({"redeemables": [{"object": "voucher", "id": "FIVE"}], "order": {"source_id": "o-2", "amount": 3000}})),
        )
        .await;
    let id = r["redemptions"][0]["id"].as_str().expect("id").to_string();
    let (status, _) = server.call(&p, Method::POST, &format!("/v1/redemptions/{id}/rollback"), None).await;
    assert_eq!(status, 200);
    let (_, order) = server.call(&p, Method::GET, "/v1/orders/o-2", None).await;
    assert_eq!(order["total_discount_amount"], 500, "{order}");
}

#[tokio::test]
async fn stacking_rules_decide_what_applies() {
    let dir = TempDir::new();
    stacking_rules_decide(&Server::sqlite(&dir)).await;
}

#[tokio::test]
async fn stacking_rules_decide_what_applies_on_postgres() {
    stacking_rules_decide(&Server::start(Backend::Postgres(pg_fresh_url()))).await;
}

async fn stacking_rules_decide(server: &Server) {
    let p = server.create_project("Rules").await;
    let ex = category(server, &p, "exclusive", 1).await;
    let jo = category(server, &p, "joint", 2).await;
    let plain = category(server, &p, "plain", 3).await;
    let (_, a) = promotion(server, &p, "A", json!([tier("a1", off(100)), tier("a2", off(200))]), Some(&plain)).await;
    let (_, e) = promotion(server, &p, "E", json!([tier("e1", off(300)), tier("e2", off(400))]), Some(&ex)).await;
    let (_, j) = promotion(server, &p, "J", json!([tier("j1", off(50))]), Some(&jo)).await;
    let order = json!({"amount": 10000});

    // Defaults: one per category.
    let v = validate(server, &p, json!({"redeemables": refs(&[&a[0], &a[1]]), "order": order})).await;
    assert_eq!(redeemables(&v, "redeemables"), vec![a[0].clone()]);
    assert_eq!(skip_key(&v, &a[1]), "applicable_redeemables_per_category_limit_exceeded");

    stacking(
        server,
        &p,
        json!({"exclusive_categories": [ex], "joint_categories": [jo], "applicable_redeemables_per_category_limit": 3,
        "applicable_exclusive_redeemables_limit": 2, "applicable_exclusive_redeemables_per_category_limit": 1}),
    )
    .await;
    // An exclusive redeemable shuts out plain ones but not joint ones, and says why.
    let v = validate(
        server,
        &p,
        json!({"redeemables": refs(&[&a[0], &e[0], &j[0]]), "order": order, "options": {"expand": ["explain"]}}),
    )
    .await;
    assert_eq!(v["valid"], true, "{v}");
    let mut applied = redeemables(&v, "redeemables");
    applied.sort();
    let mut want = vec![e[0].clone(), j[0].clone()];
    want.sort();
    assert_eq!(applied, want);
    assert_eq!(skip_key(&v, &a[0]), "exclusion_rules_not_met");
    let why = v["skipped_redeemables"][0]["explain"]["stacking_rule"].as_str().unwrap_or_default();
    assert!(why.contains(&e[0]), "the explanation names the exclusive redeemable: {why}");
    assert_eq!(v["order"]["total_discount_amount"], 350);
    // Exclusive per-category limit.
    let v = validate(server, &p, json!({"redeemables": refs(&[&e[0], &e[1]]), "order": order})).await;
    assert_eq!(skip_key(&v, &e[1]), "applicable_exclusive_redeemables_per_category_limit_exceeded");
    // Joint categories combine with everything.
    let v = validate(server, &p, json!({"redeemables": refs(&[&a[0], &a[1], &j[0]]), "order": order})).await;
    assert_eq!(redeemables(&v, "redeemables").len(), 3, "{v}");
    assert_eq!(v["order"]["total_discount_amount"], 350);
    // Exclusive limit across exclusive categories.
    let ex2 = category(server, &p, "exclusive too", 4).await;
    let (_, x) = promotion(server, &p, "X", json!([tier("x1", off(10))]), Some(&ex2)).await;
    stacking(
        server,
        &p,
        json!({"exclusive_categories": [ex, ex2], "applicable_exclusive_redeemables_limit": 1}),
    )
    .await;
    let v = validate(server, &p, json!({"redeemables": refs(&[&e[0], &x[0]]), "order": order})).await;
    assert_eq!(redeemables(&v, "redeemables"), vec![e[0].clone()]);
    assert_eq!(skip_key(&v, &x[0]), "applicable_exclusive_redeemables_limit_exceeded");
    stacking(
        server,
        &p,
        json!({"exclusive_categories": [ex], "applicable_exclusive_redeemables_limit": 2}),
    )
    .await;

    // PARTIAL applies what it can; ALL (above) applies nothing when one fails.
    let never = rule(
        server,
        &p,
        json!({"1": {"name": "order.amount", "conditions": {"$more_than": [99999999]}}}),
    )
    .await;
    let (_, f) = promotion(
        server,
        &p,
        "F",
        json!([{"name": "never", "action": off(1), "validation_rules": [never]}]),
        None,
    )
    .await;
    let v = validate(server, &p, json!({"redeemables": refs(&[&a[0], &f[0]]), "order": order})).await;
    assert_eq!(v["valid"], false);
    assert_eq!(skip_key(&v, &a[0]), "preceding_validation_failed");
    stacking(server, &p, json!({"redeemables_application_mode": "PARTIAL"})).await;
    let v = validate(server, &p, json!({"redeemables": refs(&[&a[0], &f[0]]), "order": order})).await;
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(redeemables(&v, "redeemables"), vec![a[0].clone()]);
    assert_eq!(redeemables(&v, "inapplicable_redeemables"), vec![f[0].clone()]);
    let (status, r) = server
        .call(
            &p,
            Method::POST,
            "/v1/redemptions",
            Some(json!({"redeemables": refs(&[&a[0], &f[0]]), "order": order})),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["redemptions"].as_array().map(Vec::len), Some(1));
    assert_eq!(r["inapplicable_redeemables"][0]["id"], f[0].as_str());

    // Applicable limit.
    stacking(server, &p, json!({"applicable_redeemables_limit": 1, "applicable_redeemables_per_category_limit": 1, "applicable_exclusive_redeemables_per_category_limit": 1, "applicable_exclusive_redeemables_limit": 1})).await;
    let v = validate(server, &p, json!({"redeemables": refs(&[&a[0], &j[0]]), "order": order})).await;
    assert_eq!(skip_key(&v, &j[0]), "applicable_redeemables_limit_exceeded");

    // Category hierarchy: lower hierarchy applies first whatever the request order.
    stacking(
        server,
        &p,
        json!({"applicable_redeemables_limit": 5, "exclusive_categories": [], "redeemables_sorting_rule": "CATEGORY_HIERARCHY"}),
    )
    .await;
    let v = validate(server, &p, json!({"redeemables": refs(&[&a[0], &j[0]]), "order": order})).await;
    assert_eq!(redeemables(&v, "redeemables"), vec![j[0].clone(), a[0].clone()]);

    // Redeemables limit per request.
    stacking(server, &p, json!({"redeemables_limit": 1, "applicable_redeemables_limit": 1})).await;
    let (status, e2) = server
        .call(
            &p,
            Method::POST,
            "/v1/validations",
            Some(json!({"redeemables": refs(&[&a[0], &j[0]]), "order": order})),
        )
        .await;
    assert_envelope(status, &e2, "invalid_redeemables");
}

#[tokio::test]
async fn calculation_modes_and_no_effect_rule() {
    let dir = TempDir::new();
    let server = Server::sqlite(&dir);
    let p = server.create_project("Modes").await;
    let (_, t) = promotion(&server, &p, "P", json!([tier("half", pct(50)), tier("ten", pct(10))]), None).await;
    let lines = json!({"items": [{"product_id": "shoe", "quantity": 1, "price": 10000}]});
    let body = json!({"redeemables": refs(&[&t[0], &t[1]]), "order": lines});
    // DISCOUNTED_AMOUNT (default): 50% of 10000, then 10% of what is left.
    let v = validate(&server, &p, body.clone()).await;
    assert_eq!(v["order"]["total_discount_amount"], 5500);
    stacking(&server, &p, json!({"discount_calculation_mode": "INITIAL_AMOUNT"})).await;
    let v = validate(&server, &p, body.clone()).await;
    assert_eq!(v["order"]["total_discount_amount"], 6000, "both computed on the initial amount");
    // A category can have its own calculation mode.
    let init = category(&server, &p, "initial", 1).await;
    let (status, u) = server
        .call(
            &p,
            Method::PUT,
            &format!("/v1/promotions/tiers/{}", t[1]),
            Some(json!({"category_id": init})),
        )
        .await;
    assert_eq!(status, 200, "{u}");
    stacking(
        &server,
        &p,
        json!({"discount_calculation_mode": "DISCOUNTED_AMOUNT", "initial_amount_mode_categories": [init]}),
    )
    .await;
    let v = validate(&server, &p, body.clone()).await;
    assert_eq!(
        v["order"]["total_discount_amount"], 6000,
        "the category's tier uses the initial amount: {v}"
    );
    stacking(&server, &p, json!({"discount_calculation_mode": "INITIAL_AMOUNT", "initial_amount_mode_categories": [], "discounted_amount_mode_categories": [init]})).await;
    let v = validate(&server, &p, body.clone()).await;
    assert_eq!(
        v["order"]["total_discount_amount"], 5500,
        "the category's tier uses the discounted amount: {v}"
    );

    // Products application mode ONCE: a product discounted by one tier is out of reach of the next.
    let shoe = json!({"included": [{"object": "product", "id": "shoe"}]});
    let r1 = server
        .call(&p, Method::POST, "/v1/validation-rules", Some(json!({"name": "shoes", "rules": {"1": {"name": "order.amount", "conditions": {"$more_than": [0]}}}, "applicable_to": shoe})))
        .await
        .1["id"]
        .as_str()
        .expect("rule")
        .to_string();
    let (_, s) = promotion(&server, &p, "Shoes", json!([
        {"name": "shoe 20%", "action": {"discount": {"type": "PERCENT", "percent_off": 20, "effect": "APPLY_TO_ITEMS"}}, "validation_rules": [r1]},
        {"name": "shoe 10%", "action": {"discount": {"type": "PERCENT", "percent_off": 10, "effect": "APPLY_TO_ITEMS"}}, "validation_rules": [r1]}
    ]), None).await;
    let both = json!({"redeemables": refs(&[&s[0], &s[1]]), "order": {"items": [{"product_id": "shoe", "quantity": 1, "price": 10000}, {"product_id": "sock", "quantity": 1, "price": 1000}]}});
    stacking(
        &server,
        &p,
        json!({"discount_calculation_mode": "DISCOUNTED_AMOUNT", "redeemables_products_application_mode": "STACK"}),
    )
    .await;
    let v = validate(&server, &p, both.clone()).await;
    assert_eq!(v["order"]["items_discount_amount"], 2800);
    stacking(
        &server,
        &p,
        json!({"redeemables_products_application_mode": "ONCE", "redeemables_no_effect_rule": "SKIP"}),
    )
    .await;
    let v = validate(&server, &p, both.clone()).await;
    assert_eq!(v["order"]["items_discount_amount"], 2000, "{v}");
    // With nothing left to discount, the second tier has no effect and SKIP skips it.
    assert_eq!(skip_key(&v, &s[1]), "redeemable_no_effect");
    stacking(&server, &p, json!({"redeemables_no_effect_rule": "REDEEM_ANYWAY"})).await;
    let v = validate(&server, &p, both.clone()).await;
    assert_eq!(redeemables(&v, "redeemables").len(), 2, "{v}");
    // Categories override the no-effect rule both ways.
    let anyway = category(&server, &p, "anyway", 5).await;
    server
        .call(
            &p,
            Method::PUT,
            &format!("/v1/promotions/tiers/{}", s[1]),
            Some(json!({"category_id": anyway})),
        )
        .await;
    stacking(&server, &p, json!({"no_effect_skip_categories": [anyway]})).await;
    let v = validate(&server, &p, both.clone()).await;
    assert_eq!(
        skip_key(&v, &s[1]),
        "redeemable_no_effect",
        "REDEEM_ANYWAY, but the category says skip: {v}"
    );
    stacking(
        &server,
        &p,
        json!({"redeemables_no_effect_rule": "SKIP", "no_effect_skip_categories": [], "no_effect_redeem_anyway_categories": [anyway]}),
    )
    .await;
    let v = validate(&server, &p, both).await;
    assert_eq!(
        redeemables(&v, "redeemables").len(),
        2,
        "SKIP, but the category says redeem anyway: {v}"
    );
}

#[tokio::test]
async fn qualifications_find_sort_filter_and_page() {
    let dir = TempDir::new();
    let server = Server::sqlite(&dir);
    let p = server.create_project("Qualify").await;
    let over_100 = rule(
        &server,
        &p,
        json!({"1": {"name": "order.amount", "conditions": {"$more_than": [10000]}}}),
    )
    .await;
    let gold = rule(
        &server,
        &p,
        json!({"1": {"name": "customer.metadata", "property": "tier", "conditions": {"$is": ["gold"]}}}),
    )
    .await;
    let (camp, t) = promotion(
        &server,
        &p,
        "Q",
        json!([
            tier("5 off", off(500)),
            {"name": "20% over 100", "action": pct(20), "validation_rules": [over_100]},
            {"name": "gold 30%", "action": pct(30), "validation_rules": [gold]},
            {"name": "huge", "action": off(100), "validation_rules": [over_100, gold]},
        ]),
        None,
    )
    .await;
    server
        .call(
            &p,
            Method::POST,
            "/v1/customers",
            Some(json!({"source_id": "ann", "metadata": {"tier": "gold"}})),
        )
        .await;
    let q = |body: Value| {
        let server = &server;
        let p = &p;
        async move {
            let (status, v) = server.call(p, Method::POST, "/v1/qualifications", Some(body)).await;
            assert_eq!(status, 200, "{v}");
            v
        }
    };
    let ids = |v: &Value| redeemables(&v["redeemables"], "data");
    let small = json!({"amount": 5000});
    let v = q(json!({"order": small})).await;
    assert_eq!(
        ids(&v),
        vec![t[0].clone()],
        "only the unconditional tier for an anonymous small cart"
    );
    let v = q(json!({"order": {"amount": 20000}, "customer": {"source_id": "ann"}, "options": {"sorting_rule": "BEST_DEAL"}})).await;
    assert_eq!(ids(&v), vec![t[2].clone(), t[1].clone(), t[0].clone(), t[3].clone()], "{v}");
    assert_eq!(v["redeemables"]["data"][0]["order"]["total_discount_amount"], 6000);
    let v = q(json!({"order": {"amount": 20000}, "customer": {"source_id": "ann"}, "options": {"sorting_rule": "LEAST_DEAL", "limit": 2}}))
        .await;
    assert_eq!(ids(&v), vec![t[3].clone(), t[0].clone()]);
    assert_eq!(v["redeemables"]["has_more"], true);
    // AUDIENCE_ONLY looks at customer rules only: the threshold does not matter.
    let v = q(json!({"scenario": "AUDIENCE_ONLY", "order": small, "customer": {"source_id": "ann"}, "options": {"limit": 10}})).await;
    assert_eq!(ids(&v).len(), 4, "{v}");
    // Filters.
    let v = q(json!({"order": {"amount": 20000}, "options": {"filters": {"resource_id": {"conditions": {"$in": [t[1].clone()]}}}}})).await;
    assert_eq!(ids(&v), vec![t[1].clone()]);
    let v = q(json!({"order": small, "options": {"filters": {"campaign_id": {"conditions": {"$is_not": [camp["id"].clone()]}}}}})).await;
    assert!(ids(&v).is_empty());
    // The customer's wallet: vouchers they hold. Holders come from publications (the
    // audience issue), so the test sets one in the database directly.
    let v = q(json!({"scenario": "CUSTOMER_WALLET", "order": small, "customer": {"source_id": "ann"}})).await;
    assert!(ids(&v).is_empty(), "{v}");
    server
        .create_voucher(
            &p,
            "ANN-5",
            json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 250}}),
        )
        .await;
    let ann = server.call(&p, Method::GET, "/v1/customers/ann", None).await.1;
    {
        let db = rusqlite::Connection::open(dir.0.join("tessera.db")).expect("open");
        db.busy_timeout(std::time::Duration::from_secs(10)).expect("busy timeout");
        let n = db
            .execute(
                "UPDATE vouchers SET holder_id = ?1 WHERE code = 'ANN-5'",
                rusqlite::params![ann["id"].as_str().expect("id")],
            )
            .expect("set holder");
        assert_eq!(n, 1);
    }
    let v = q(json!({"scenario": "CUSTOMER_WALLET", "order": small, "customer": {"source_id": "ann"}})).await;
    assert_eq!(ids(&v), vec!["ANN-5".to_string()], "{v}");
    assert_eq!(v["redeemables"]["data"][0]["order"]["total_discount_amount"], 250);
    let v = q(json!({"order": small, "customer": {"source_id": "ann"}, "options": {"limit": 10, "filters": {"resource_type": {"conditions": {"$is": ["voucher"]}}}}})).await;
    assert_eq!(ids(&v), vec!["ANN-5".to_string()], "ALL includes the wallet: {v}");
    // PRODUCTS scenarios: only what concerns items. A tier aimed at shoes, and one that
    // requires shoes in the cart with an order-level discount.
    let shoes = server
        .call(&p, Method::POST, "/v1/validation-rules", Some(json!({"name": "shoes", "rules": {"1": {"name": "order.amount", "conditions": {"$more_than": [0]}}}, "applicable_to": {"included": [{"object": "product", "id": "shoe"}]}})))
        .await
        .1["id"]
        .as_str()
        .expect("rule")
        .to_string();
    let needs_shoes = rule(&server, &p, json!({"1": {"name": "product.id", "conditions": {"$is": ["shoe"]}}})).await;
    let (_, pt) = promotion(&server, &p, "Products", json!([
        {"name": "shoes 10%", "action": {"discount": {"type": "PERCENT", "percent_off": 10, "effect": "APPLY_TO_ITEMS"}}, "validation_rules": [shoes]},
        {"name": "with shoes, 1 off", "action": off(100), "validation_rules": [needs_shoes]},
    ]), None).await;
    let cart = json!({"items": [{"product_id": "shoe", "quantity": 1, "price": 5000}]});
    let mut v = q(json!({"scenario": "PRODUCTS", "order": cart, "options": {"limit": 10}})).await;
    let mut got = ids(&v);
    got.sort();
    let mut want = pt.clone();
    want.sort();
    assert_eq!(got, want, "{v}");
    v = q(json!({"scenario": "PRODUCTS_DISCOUNT", "order": cart, "options": {"limit": 10}})).await;
    assert_eq!(ids(&v), vec![pt[0].clone()], "only the discount aimed at items: {v}");
    // The customer rule of "gold 30%" does not count for PRODUCTS, which has no audience.
    v = q(json!({"scenario": "PRODUCTS_BY_CUSTOMER", "order": cart, "customer": {"source_id": "ann"}, "options": {"limit": 10}})).await;
    assert_eq!(ids(&v).len(), 2, "{v}");

    // Explanations and bad input.
    let v = q(json!({"order": small, "options": {"expand": ["explain"]}})).await;
    assert!(v["redeemables"]["data"][0]["explain"]["discount"].is_number(), "{v}");
    for bad in [
        json!({"scenario": "NOPE"}),
        json!({"options": {"limit": 0}}),
        json!({"options": {"sorting_rule": "RANDOM"}}),
        json!({"options": {"filters": {"colour": {"conditions": {"$is": ["red"]}}}}}),
    ] {
        let (status, e) = server.call(&p, Method::POST, "/v1/qualifications", Some(bad.clone())).await;
        assert_envelope(status, &e, "invalid_payload");
    }
}

/// A tier limited to one redemption per customer, redeemed by one customer from many
/// clients at once: exactly one succeeds, on either engine.
async fn per_customer_tier_limit_holds(server: Server) {
    let server = std::sync::Arc::new(server);
    let p = server.create_project("Race").await;
    let once = rule(
        &server,
        &p,
        json!({"1": {"name": "redemption.count.per_customer", "conditions": {"$less_than": [1]}}}),
    )
    .await;
    let (_, t) = promotion(
        &server,
        &p,
        "Once",
        json!([{"name": "once", "action": off(100), "validation_rules": [once]}]),
        None,
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (server, p, tier) = (server.clone(), p.clone(), t[0].clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"redeemables": [{"object": "promotion_tier", "id": tier}], "order": {"amount": 1000 + i}, "customer": {"source_id": "ann"}});
            server.call(&p, Method::POST, "/v1/redemptions", Some(body)).await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        let (status, body) = task.await.expect("join");
        match status {
            200 => ok += 1,
            400 | 409 => assert!(body["key"].is_string(), "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok, 1, "one redemption per customer");
    let (_, tier) = server.call(&p, Method::GET, &format!("/v1/promotions/tiers/{}", t[0]), None).await;
    assert_eq!(tier["summary"]["redemptions"]["total_redeemed"], 1);
    // Another customer still can.
    let (status, r) = server
        .call(&p, Method::POST, "/v1/redemptions", Some(json!({"redeemables": [{"object": "promotion_tier", "id": t[0]}], "order": {"amount": 1000}, "customer": {"source_id": "bob"}})))
        .await;
    assert_eq!(status, 200, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_customer_tier_limit_holds_on_sqlite() {
    let dir = TempDir::new();
    per_customer_tier_limit_holds(Server::sqlite(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_customer_tier_limit_holds_on_postgres() {
    per_customer_tier_limit_holds(Server::start(Backend::Postgres(pg_fresh_url()))).await;
}
