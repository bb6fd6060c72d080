//! Categories, stacking rules and promotion stacks over HTTP against the real binary.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

async fn create_category(s: &Server, p: &Project, name: &str, hierarchy: i64) -> Value {
    let (status, c) = s
        .call(
            p,
            Method::POST,
            "/v1/categories",
            Some(json!({"name": name, "hierarchy": hierarchy})),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    c
}

async fn categories(s: &Server) {
    let a = s.create_project("Categories A").await;
    let b = s.create_project("Categories B").await;

    let first = create_category(s, &a, "First", 1).await;
    assert_eq!(first["object"], "category");
    assert!(first["id"].as_str().is_some_and(|id| id.starts_with("cat_")), "{first}");
    assert_eq!((first["name"].as_str(), first["hierarchy"].as_i64()), (Some("First"), Some(1)));
    assert!(first["created_at"].as_str().is_some());
    let id = first["id"].as_str().expect("id").to_string();
    let second = create_category(s, &a, "Second", 0).await;

    let (status, got) = s.call(&a, Method::GET, &format!("/v1/categories/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(got, first);

    // Newest first by default; pages and orders on request.
    let (status, list) = s.call(&a, Method::GET, "/v1/categories", None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        (list["object"].as_str(), list["data_ref"].as_str(), list["total"].as_i64()),
        (Some("list"), Some("data"), Some(2))
    );
    assert_eq!(list["data"][0]["id"], second["id"]);
    let (_, page) = s.call(&a, Method::GET, "/v1/categories?limit=1&page=2&order=name", None).await;
    assert_eq!(page["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["data"][0]["name"], "Second");
    let (status, bad) = s.call(&a, Method::GET, "/v1/categories?order=hierarchy", None).await;
    assert_envelope(status, &bad, "invalid_query_params");

    // Names are unique per project, on create and on update.
    let (status, dup) = s
        .call(&a, Method::POST, "/v1/categories", Some(json!({"name": "First", "hierarchy": 5})))
        .await;
    assert_eq!(status, 409);
    assert_envelope(status, &dup, "duplicate_found");
    let second_id = second["id"].as_str().expect("id");
    let (status, dup) = s
        .call(
            &a,
            Method::PUT,
            &format!("/v1/categories/{second_id}"),
            Some(json!({"name": "First", "hierarchy": 5})),
        )
        .await;
    assert_envelope(status, &dup, "duplicate_found");

    for (body, why) in [
        (json!({"hierarchy": 1}), "'name'"),
        (json!({"name": "x"}), "'hierarchy'"),
        (json!({"name": "x", "hierarchy": -1}), "'hierarchy'"),
        (json!({"name": "", "hierarchy": 1}), "'name'"),
        (json!({"name": "x", "hierarchy": 1, "colour": "red"}), "colour"),
        (json!({"name": "x", "hierarchy": "1"}), "hierarchy"),
    ] {
        let (status, e) = s.call(&a, Method::POST, "/v1/categories", Some(body.clone())).await;
        assert_envelope(status, &e, "invalid_payload");
        assert_eq!(status, 400);
        assert!(e["details"].as_str().is_some_and(|d| d.contains(why)), "{body} -> {e}");
    }

    // Update replaces both fields and stamps updated_at; keeping its own name is fine.
    let (status, upd) = s
        .call(
            &a,
            Method::PUT,
            &format!("/v1/categories/{id}"),
            Some(json!({"name": "First", "hierarchy": 7})),
        )
        .await;
    assert_eq!(status, 200, "{upd}");
    assert_eq!(
        (upd["hierarchy"].as_i64(), upd["created_at"].clone()),
        (Some(7), first["created_at"].clone())
    );
    assert!(upd["updated_at"].as_str().is_some(), "{upd}");
    let (status, e) = s
        .call(&a, Method::PUT, &format!("/v1/categories/{id}"), Some(json!({"name": "Only"})))
        .await;
    assert_envelope(status, &e, "invalid_payload");

    // Another project sees none of it, and may use the same names.
    for (m, body) in [
        (Method::GET, None),
        (Method::PUT, Some(json!({"name": "Mine", "hierarchy": 1}))),
        (Method::DELETE, None),
    ] {
        let (status, e) = s.call(&b, m.clone(), &format!("/v1/categories/{id}"), body).await;
        assert_eq!(status, 404, "{m} as project B: {e}");
        assert_envelope(status, &e, "not_found");
    }
    let (_, list_b) = s.call(&b, Method::GET, "/v1/categories", None).await;
    assert_eq!(list_b["total"], 0, "{list_b}");
    create_category(s, &b, "First", 1).await;

    let (status, _) = s.call(&a, Method::DELETE, &format!("/v1/categories/{id}"), None).await;
    assert_eq!(status, 204);
    let (status, e) = s.call(&a, Method::GET, &format!("/v1/categories/{id}"), None).await;
    assert_envelope(status, &e, "not_found");
    assert_eq!(
        (e["resource_type"].as_str(), e["resource_id"].as_str()),
        (Some("category"), Some(id.as_str()))
    );
    let (status, _) = s.call(&a, Method::DELETE, &format!("/v1/categories/{id}"), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn categories_on_sqlite() {
    let dir = TempDir::new();
    categories(&Server::sqlite(&dir)).await;
}

#[tokio::test]
async fn categories_on_postgres() {
    categories(&Server::start(Backend::Postgres(pg_fresh_url()))).await;
}

const FIELDS: [&str; 17] = [
    "redeemables_limit",
    "applicable_redeemables_limit",
    "applicable_redeemables_per_category_limit",
    "applicable_exclusive_redeemables_limit",
    "applicable_exclusive_redeemables_per_category_limit",
    "exclusive_categories",
    "joint_categories",
    "discount_calculation_mode",
    "initial_amount_mode_categories",
    "discounted_amount_mode_categories",
    "redeemables_application_mode",
    "redeemables_sorting_rule",
    "redeemables_products_application_mode",
    "redeemables_no_effect_rule",
    "no_effect_skip_categories",
    "no_effect_redeem_anyway_categories",
    "redeemables_rollback_order_mode",
];

async fn rules_in_force(s: &Server, project: &str) -> Value {
    let (status, list) = s
        .mgmt(Method::GET, &format!("/management/v1/projects/{project}/stacking-rules"), None)
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        (list["object"].as_str(), list["data_ref"].as_str(), list["total"].as_i64()),
        (Some("list"), Some("data"), Some(1))
    );
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1), "{list}");
    let item = list["data"][0].clone();
    for f in FIELDS {
        assert!(item.get(f).is_some(), "{f} missing from {item}");
    }
    item
}

fn assert_defaults(r: &Value) {
    assert!(r.get("id").is_none(), "defaults have no id: {r}");
    assert_eq!(r["redeemables_limit"], 30);
    assert_eq!(r["applicable_redeemables_limit"], 5);
    assert_eq!(r["applicable_redeemables_per_category_limit"], 1);
    assert_eq!(r["applicable_exclusive_redeemables_limit"], 1);
    assert_eq!(r["redeemables_application_mode"], "ALL");
    assert_eq!(r["redeemables_sorting_rule"], "REQUESTED_ORDER");
    assert_eq!(r["exclusive_categories"], json!([]));
}

async fn stacking_rules(s: &Server) {
    let a = s.create_project("Rules A").await;
    let b = s.create_project("Rules B").await;
    let base = format!("/management/v1/projects/{}/stacking-rules", a.id);
    assert_defaults(&rules_in_force(s, &a.id).await);

    let cat = create_category(s, &a, "Exclusive", 1).await;
    let cat_id = cat["id"].as_str().expect("id").to_string();
    let joint = create_category(s, &a, "Joint", 2).await;
    let joint_id = joint["id"].as_str().expect("id").to_string();
    let b_cat = create_category(s, &b, "Theirs", 1).await;

    // Every category named must be one of this project's.
    for unknown in ["cat_nope", b_cat["id"].as_str().expect("id")] {
        let (status, e) = s.mgmt(Method::POST, &base, Some(json!({"exclusive_categories": [unknown]}))).await;
        assert_envelope(status, &e, "invalid_payload");
        assert_eq!(status, 400);
        assert!(e["details"].as_str().is_some_and(|d| d.contains(unknown)), "{e}");
    }
    let (status, e) = s.mgmt(Method::POST, &base, Some(json!({"redeemables_limit": 31}))).await;
    assert_envelope(status, &e, "invalid_payload");
    let (status, e) = s
        .mgmt(Method::POST, &base, Some(json!({"redeemables_sorting_rule": "RANDOM"})))
        .await;
    assert_envelope(status, &e, "invalid_payload");
    assert_defaults(&rules_in_force(s, &a.id).await);

    let (status, created) = s
        .mgmt(
            Method::POST,
            &base,
            Some(json!({"exclusive_categories": [cat_id], "applicable_redeemables_limit": 10, "redeemables_sorting_rule": "CATEGORY_HIERARCHY"})),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("stk_"), "{created}");
    assert!(created["created_at"].as_str().is_some());
    for f in FIELDS {
        assert!(created.get(f).is_some(), "{f} missing from {created}");
    }
    // Fields the body left out take the defaults.
    assert_eq!(
        (
            created["redeemables_limit"].as_i64(),
            created["applicable_redeemables_limit"].as_i64()
        ),
        (Some(30), Some(10))
    );
    assert_eq!(rules_in_force(s, &a.id).await, created);

    let (status, e) = s.mgmt(Method::POST, &base, Some(json!({}))).await;
    assert_eq!(status, 409);
    assert_envelope(status, &e, "stacking_rules_exist");

    let (status, got) = s.mgmt(Method::GET, &format!("{base}/{id}"), None).await;
    assert_eq!((status, &got), (200, &created));
    let (status, e) = s.mgmt(Method::GET, &format!("{base}/stk_unknown"), None).await;
    assert_envelope(status, &e, "not_found");

    // Updates are partial, lists replace, and the result is checked as a whole.
    let (status, e) = s
        .mgmt(Method::PUT, &format!("{base}/{id}"), Some(json!({"redeemables_limit": 5})))
        .await;
    assert_envelope(status, &e, "invalid_payload");
    assert!(
        e["details"].as_str().is_some_and(|d| d.contains("applicable_redeemables_limit")),
        "{e}"
    );
    let (status, e) = s
        .mgmt(Method::PUT, &format!("{base}/{id}"), Some(json!({"joint_categories": [cat_id]})))
        .await;
    assert_envelope(status, &e, "invalid_payload");
    let (status, e) = s.mgmt(Method::PUT, &format!("{base}/{id}"), Some(json!({"limit": 1}))).await;
    assert_envelope(status, &e, "invalid_payload");
    let (status, e) = s
        .mgmt(
            Method::PUT,
            &format!("{base}/{id}"),
            Some(json!({"joint_categories": ["cat_gone"]})),
        )
        .await;
    assert_envelope(status, &e, "invalid_payload");
    let (status, upd) = s
        .mgmt(
            Method::PUT,
            &format!("{base}/{id}"),
            Some(json!({"exclusive_categories": [joint_id], "joint_categories": [cat_id], "applicable_redeemables_per_category_limit": null})),
        )
        .await;
    assert_eq!(status, 200, "{upd}");
    assert_eq!(upd["exclusive_categories"], json!([joint_id]));
    assert_eq!(upd["joint_categories"], json!([cat_id]));
    assert_eq!(upd["applicable_redeemables_per_category_limit"], Value::Null);
    assert_eq!(
        (upd["applicable_redeemables_limit"].as_i64(), upd["created_at"].clone()),
        (Some(10), created["created_at"].clone())
    );
    assert!(upd["updated_at"].as_str().is_some(), "{upd}");
    let (status, e) = s.mgmt(Method::PUT, &format!("{base}/stk_unknown"), Some(json!({}))).await;
    assert_envelope(status, &e, "not_found");

    // A category the rules name cannot be deleted; one they do not name can.
    let (status, e) = s.call(&a, Method::DELETE, &format!("/v1/categories/{cat_id}"), None).await;
    assert_eq!(status, 400);
    assert_envelope(status, &e, "category_in_use");
    let spare = create_category(s, &a, "Spare", 3).await;
    let (status, _) = s
        .call(
            &a,
            Method::DELETE,
            &format!("/v1/categories/{}", spare["id"].as_str().expect("id")),
            None,
        )
        .await;
    assert_eq!(status, 204);

    // Project B still has the defaults, and cannot reach A's rules through its own path.
    assert_defaults(&rules_in_force(s, &b.id).await);
    let (status, _) = s
        .mgmt(Method::GET, &format!("/management/v1/projects/{}/stacking-rules/{id}", b.id), None)
        .await;
    assert_eq!(status, 404);
    let (status, e) = s
        .mgmt(Method::GET, "/management/v1/projects/proj_unknown/stacking-rules", None)
        .await;
    assert_envelope(status, &e, "not_found");
    let r = s.http.get(s.url(&base)).send().await.expect("request");
    assert_eq!(r.status().as_u16(), 401, "management credentials are required");
    let r = s
        .http
        .get(s.url(&base))
        .header("X-App-Id", &a.app_id)
        .header("X-App-Token", &a.app_token)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 401, "a project key is not a management key");

    // Deleting restores the defaults; the old id is gone; a new create works.
    let (status, _) = s.mgmt(Method::DELETE, &format!("{base}/{id}"), None).await;
    assert_eq!(status, 204);
    assert_defaults(&rules_in_force(s, &a.id).await);
    let (status, _) = s.mgmt(Method::GET, &format!("{base}/{id}"), None).await;
    assert_eq!(status, 404);
    let (status, _) = s.mgmt(Method::DELETE, &format!("{base}/{id}"), None).await;
    assert_eq!(status, 404);
    let (status, _) = s.call(&a, Method::DELETE, &format!("/v1/categories/{cat_id}"), None).await;
    assert_eq!(status, 204, "no longer named by any rules");
    let (status, again) = s.mgmt(Method::POST, &base, Some(json!({}))).await;
    assert_eq!(status, 200, "{again}");
    assert_ne!(again["id"].as_str(), Some(id.as_str()));
}

#[tokio::test]
async fn stacking_rules_on_sqlite() {
    let dir = TempDir::new();
    stacking_rules(&Server::sqlite(&dir)).await;
}

#[tokio::test]
async fn stacking_rules_on_postgres() {
    stacking_rules(&Server::start(Backend::Postgres(pg_fresh_url()))).await;
}

async fn create_campaign(s: &Server, p: &Project, name: &str) -> String {
    let (status, c) = s
        .call(
            p,
            Method::POST,
            "/v1/campaigns",
            Some(json!({"name": name, "campaign_type": "PROMOTION"})),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    c["id"].as_str().expect("campaign id").to_string()
}

async fn create_tier(s: &Server, p: &Project, campaign: &str) -> String {
    let (status, t) = s
        .call(
            p,
            Method::POST,
            &format!("/v1/promotions/{campaign}/tiers"),
            Some(json!({"name": format!("tier {}", random_suffix()), "action": {"discount": {"type": "AMOUNT", "amount_off": 100}}})),
        )
        .await;
    assert_eq!(status, 200, "{t}");
    t["id"].as_str().expect("tier id").to_string()
}

#[tokio::test]
async fn promotion_stacks_on_sqlite() {
    let dir = TempDir::new();
    let s = Server::sqlite(&dir);
    let a = s.create_project("Stacks A").await;
    let b = s.create_project("Stacks B").await;
    let camp = create_campaign(&s, &a, "Spring").await;
    let other = create_campaign(&s, &a, "Summer").await;
    let t1 = create_tier(&s, &a, &camp).await;
    let t2 = create_tier(&s, &a, &camp).await;
    let foreign = create_tier(&s, &a, &other).await;
    let cat = create_category(&s, &a, "Stacked", 1).await;
    let cat_id = cat["id"].as_str().expect("id").to_string();
    let base = format!("/v1/promotions/{camp}/stacks");

    let (status, list) = s.call(&a, Method::GET, "/v1/promotions/stacks", None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!((list["data_ref"].as_str(), list["total"].as_i64()), (Some("data"), Some(0)));

    // Bad input is refused before anything is written.
    for (body, key, why) in [
        (json!({"tiers": {"ids": [t1]}}), "invalid_payload", "'name'"),
        (json!({"name": "S"}), "invalid_payload", "'tiers'"),
        (json!({"name": "S", "tiers": {"ids": []}}), "invalid_payload", "tiers.ids"),
        (json!({"name": "S", "tiers": {"ids": [t1, t1]}}), "invalid_payload", "twice"),
        (
            json!({"name": "S", "tiers": {"ids": [t1], "hierarchy_mode": "AUTO"}}),
            "invalid_payload",
            "hierarchy_mode",
        ),
        (
            json!({"name": "S", "tiers": {"ids": ["promo_unknown"]}}),
            "invalid_payload",
            "promo_unknown",
        ),
        (
            json!({"name": "S", "tiers": {"ids": [foreign]}}),
            "invalid_payload",
            foreign.as_str(),
        ),
        (
            json!({"name": "S", "tiers": {"ids": [t1]}, "category_id": "cat_unknown"}),
            "invalid_payload",
            "cat_unknown",
        ),
        (json!({"name": "S", "tiers": {"ids": [t1]}, "extra": 1}), "invalid_payload", "extra"),
    ] {
        let (status, e) = s.call(&a, Method::POST, &base, Some(body.clone())).await;
        assert_eq!(status, 400, "{body} -> {e}");
        assert_envelope(status, &e, key);
        assert!(e["details"].as_str().is_some_and(|d| d.contains(why)), "{body} -> {e}");
    }
    let (status, e) = s
        .call(
            &a,
            Method::POST,
            "/v1/promotions/camp_unknown/stacks",
            Some(json!({"name": "S", "tiers": {"ids": [t1]}})),
        )
        .await;
    assert_eq!(status, 404);
    assert_envelope(status, &e, "not_found");
    assert_eq!(e["resource_type"], "campaign");

    let (status, created) = s
        .call(
            &a,
            Method::POST,
            &base,
            Some(json!({"name": "Pair", "tiers": {"ids": [t2, t1]}, "category_id": cat_id})),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("stack_"), "{created}");
    assert_eq!(created["object"], "promotion_stack");
    assert_eq!(created["campaign_id"], camp.as_str());
    assert_eq!(created["tiers"], json!({"ids": [t2, t1], "hierarchy_mode": "MANUAL"}));
    assert_eq!(created["category_id"], cat_id.as_str());
    assert_eq!(created["categories"][0]["id"], cat_id.as_str());
    assert_eq!(created["categories"][0]["object"], "category");
    assert!(created["created_at"].as_str().is_some());

    let (status, got) = s.call(&a, Method::GET, &format!("{base}/{id}"), None).await;
    assert_eq!((status, &got), (200, &created));
    for (path, what) in [
        (format!("/v1/promotions/{other}/stacks/{id}"), "a stack under another campaign"),
        (format!("{base}/stack_unknown"), "an unknown stack"),
        (format!("/v1/promotions/camp_unknown/stacks/{id}"), "an unknown campaign"),
    ] {
        let (status, e) = s.call(&a, Method::GET, &path, None).await;
        assert_eq!(status, 404, "{what}: {e}");
        assert_envelope(status, &e, "not_found");
    }

    let (status, list) = s.call(&a, Method::GET, &base, None).await;
    assert_eq!((status, list["total"].as_i64()), (200, Some(1)), "{list}");
    assert_eq!(list["data"][0], created);
    let (_, list) = s.call(&a, Method::GET, &format!("/v1/promotions/{other}/stacks"), None).await;
    assert_eq!(list["total"], 0);
    let (status, _) = s.call(&a, Method::GET, "/v1/promotions/camp_unknown/stacks", None).await;
    assert_eq!(status, 404);

    let (status, e) = s
        .call(&a, Method::PUT, &format!("{base}/{id}"), Some(json!({"tiers": {"ids": [foreign]}})))
        .await;
    assert_envelope(status, &e, "invalid_payload");
    let (status, upd) = s
        .call(
            &a,
            Method::PUT,
            &format!("{base}/{id}"),
            Some(json!({"name": "Solo", "tiers": {"ids": [t1]}, "category_id": null})),
        )
        .await;
    assert_eq!(status, 200, "{upd}");
    assert_eq!((upd["name"].as_str(), upd["tiers"]["ids"].clone()), (Some("Solo"), json!([t1])));
    assert_eq!((upd["category_id"].clone(), upd["categories"].clone()), (Value::Null, json!([])));
    assert!(upd["updated_at"].as_str().is_some());

    // A category deleted after it was assigned shows as none.
    let (status, _) = s
        .call(&a, Method::PUT, &format!("{base}/{id}"), Some(json!({"category_id": cat_id})))
        .await;
    assert_eq!(status, 200);
    let (status, _) = s.call(&a, Method::DELETE, &format!("/v1/categories/{cat_id}"), None).await;
    assert_eq!(status, 204);
    let (_, got) = s.call(&a, Method::GET, &format!("{base}/{id}"), None).await;
    assert_eq!(
        (got["category_id"].clone(), got["categories"].clone()),
        (Value::Null, json!([])),
        "{got}"
    );

    let (_, second) = s
        .call(&a, Method::POST, &base, Some(json!({"name": "Another", "tiers": {"ids": [t2]}})))
        .await;
    let (status, all) = s.call(&a, Method::GET, "/v1/promotions/stacks?order=name&limit=1", None).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(
        (all["total"].as_i64(), all["data"][0]["id"].clone()),
        (Some(2), second["id"].clone())
    );
    let (status, e) = s.call(&a, Method::GET, "/v1/promotions/stacks?limit=500", None).await;
    assert_envelope(status, &e, "invalid_query_params");

    // Project B reaches none of A's stacks.
    let (_, list_b) = s.call(&b, Method::GET, "/v1/promotions/stacks", None).await;
    assert_eq!(list_b["total"], 0);
    for (m, body) in [
        (Method::GET, None),
        (Method::PUT, Some(json!({"name": "Mine"}))),
        (Method::DELETE, None),
    ] {
        let (status, _) = s.call(&b, m.clone(), &format!("{base}/{id}"), body).await;
        assert_eq!(status, 404, "{m} as project B");
    }

    let (status, _) = s.call(&a, Method::DELETE, &format!("{base}/{id}"), None).await;
    assert_eq!(status, 204);
    let (status, _) = s.call(&a, Method::GET, &format!("{base}/{id}"), None).await;
    assert_eq!(status, 404);
    let (status, _) = s.call(&a, Method::DELETE, &format!("{base}/{id}"), None).await;
    assert_eq!(status, 404);
}
