//! Checkout correctness under concurrency, on both engines, against the real binary.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::Arc;

async fn redeem(server: &Server, p: &Project, body: Value, key: Option<&str>) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = key.map(|k| vec![("Idempotency-Key", k)]).unwrap_or_default();
    let r = server.send(p, Method::POST, "/v1/redemptions", Some(body), &headers).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn limited_code_holds_under_contention(server: Server) {
    let server = Arc::new(server);
    let p = server.create_project("Race").await;
    let (status, v) = server
        .call(
            &p,
            Method::POST,
            "/v1/vouchers/RACE5",
            Some(json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 100}, "redemption": {"quantity": 5}})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (server, p) = (server.clone(), p.clone());
        tasks.push(tokio::spawn(async move {
            redeem(&server, &p, json!({"redeemables": [{"object": "voucher", "id": "RACE5"}], "order": {"amount": 1000}, "customer": {"source_id": format!("c{i}")}}), None).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (status, body) = t.await.expect("join");
        match status {
            200 => ok += 1,
            // Losers are refused cleanly: quota exhausted, or (PostgreSQL) a lost race.
            400 | 409 => assert!(body["key"].is_string(), "{body}"),
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert_eq!(ok, 5, "exactly the quantity succeeds");
    let (_, v) = server.call(&p, Method::GET, "/v1/vouchers/RACE5", None).await;
    assert_eq!(v["redemption"]["redeemed_quantity"], 5);
    let (_, list) = server.call(&p, Method::GET, "/v1/redemptions?result=SUCCESS&limit=100", None).await;
    assert_eq!(list["total"], 5);
}

async fn gift_card_never_overdrawn(server: Server) {
    let server = Arc::new(server);
    let p = server.create_project("Gift").await;
    let (status, v) = server
        .call(
            &p,
            Method::POST,
            "/v1/vouchers/GIFT-RACE",
            Some(json!({"type": "GIFT_VOUCHER", "gift": {"amount": 10_000}})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (server, p) = (server.clone(), p.clone());
        tasks.push(tokio::spawn(async move {
            redeem(
                &server,
                &p,
                json!({"redeemables": [{"object": "voucher", "id": "GIFT-RACE", "gift": {"credits": 700}}], "order": {"amount": 5000}}),
                None,
            )
            .await
        }));
    }
    let mut spent = 0;
    for t in tasks {
        let (status, body) = t.await.expect("join");
        if status == 200 {
            spent += body["redemptions"][0]["amount"].as_i64().expect("credits");
        }
    }
    let (_, v) = server.call(&p, Method::GET, "/v1/vouchers/GIFT-RACE", None).await;
    let balance = v["gift"]["balance"].as_i64().expect("balance");
    assert!(balance >= 0);
    assert_eq!(spent, 10_000 - balance, "what was spent is exactly what left the balance");
    assert_eq!(spent, 14 * 700, "14 redemptions of 700 fit in 10000");
    // The ledger sums to the balance.
    let mut sum = 0;
    let mut after: Option<String> = None;
    loop {
        let q = match &after {
            Some(a) => format!("/v1/vouchers/GIFT-RACE/transactions?limit=100&order=id&starting_after_id={a}"),
            None => "/v1/vouchers/GIFT-RACE/transactions?limit=100&order=id".to_string(),
        };
        let (status, page) = server.call(&p, Method::GET, &q, None).await;
        assert_eq!(status, 200, "{page}");
        for tx in page["data"].as_array().expect("data") {
            sum += tx["details"]["balance"]["amount"].as_i64().expect("amount");
        }
        if page["has_more"] != true {
            break;
        }
        after = page["more_starting_after"].as_str().map(str::to_string);
    }
    assert_eq!(sum, balance);
}

async fn retries_with_one_key_redeem_once(server: Server) {
    let server = Arc::new(server);
    let p = server.create_project("Retry").await;
    server
        .call(
            &p,
            Method::POST,
            "/v1/vouchers/RETRY",
            Some(json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "PERCENT", "percent_off": 10}, "redemption": {"quantity": null}})),
        )
        .await;
    let body = json!({"redeemables": [{"object": "voucher", "id": "RETRY"}], "order": {"amount": 1000}});
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (server, p, body) = (server.clone(), p.clone(), body.clone());
        tasks.push(tokio::spawn(async move { redeem(&server, &p, body, Some("one-checkout")).await }));
    }
    let mut first: Option<Value> = None;
    for t in tasks {
        let (status, body) = t.await.expect("join");
        assert!(status == 200 || status == 409, "{status} {body}");
        if status == 200 {
            let id = body["redemptions"][0]["id"].clone();
            if let Some(f) = &first {
                assert_eq!(f, &id, "every replay answers with the same redemption");
            }
            first = Some(id);
        }
    }
    assert!(first.is_some());
    // Once settled, a retry is a replay of the same redemption.
    let (status, again) = redeem(&server, &p, body, Some("one-checkout")).await;
    assert_eq!(status, 200);
    assert_eq!(Some(again["redemptions"][0]["id"].clone()), first);
    let (_, v) = server.call(&p, Method::GET, "/v1/vouchers/RETRY", None).await;
    assert_eq!(v["redemption"]["redeemed_quantity"], 1);
}

/// What a redemption answers and leaves behind: the voucher in the answer carries the
/// counters after this redemption (taken from the guarded update, not read again), and a
/// customer named with nothing new is not rewritten, while one with a new field is.
async fn redemption_views_and_customer_writes(server: Server) {
    let p = server.create_project("Views").await;
    let (status, v) = server
        .call(
            &p,
            Method::POST,
            "/v1/vouchers/GIFT-VIEW",
            Some(json!({"type": "GIFT_VOUCHER", "gift": {"amount": 10000}, "redemption": {"quantity": 5}})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, c) = server
        .call(&p, Method::POST, "/v1/customers", Some(json!({"source_id": "ada", "name": "Ada"})))
        .await;
    assert_eq!(status, 200, "{c}");
    let created_updated_at = c["updated_at"].clone();
    let body = |amount: i64, customer: Value| {
        json!({"redeemables": [{"object": "voucher", "id": "GIFT-VIEW", "gift": {"credits": amount}}],
               "order": {"amount": amount}, "customer": customer})
    };
    let (status, r) = redeem(&server, &p, body(3000, json!({"source_id": "ada"})), None).await;
    assert_eq!(status, 200, "{r}");
    let voucher = &r["redemptions"][0]["voucher"];
    assert_eq!(voucher["redemption"]["redeemed_quantity"], 1, "{voucher}");
    assert_eq!(voucher["gift"]["balance"], 7000, "{voucher}");
    let (_, c) = server.call(&p, Method::GET, "/v1/customers/ada", None).await;
    assert_eq!(c["updated_at"], created_updated_at, "nothing new about the customer: not rewritten");
    assert_eq!(c["name"], "Ada");

    let (status, r) = redeem(&server, &p, body(2000, json!({"source_id": "ada", "name": "Ada L."})), None).await;
    assert_eq!(status, 200, "{r}");
    let voucher = &r["redemptions"][0]["voucher"];
    assert_eq!(voucher["redemption"]["redeemed_quantity"], 2, "{voucher}");
    assert_eq!(voucher["gift"]["balance"], 5000, "{voucher}");
    assert_eq!(r["redemptions"][0]["customer"]["name"], "Ada L.");
    let (_, c) = server.call(&p, Method::GET, "/v1/customers/ada", None).await;
    assert_eq!(c["name"], "Ada L.", "a changed field is written");
    assert_ne!(c["updated_at"], created_updated_at);
    // The stored voucher agrees with what the answers said.
    let (_, v) = server.call(&p, Method::GET, "/v1/vouchers/GIFT-VIEW", None).await;
    assert_eq!(v["redemption"]["redeemed_quantity"], 2);
    assert_eq!(v["gift"]["balance"], 5000);

    // A customer named by a source id nobody has yet is created by the redemption, and
    // the next one finds and updates that same customer.
    let (status, r) = redeem(&server, &p, body(1000, json!({"source_id": "grace", "name": "Grace"})), None).await;
    assert_eq!(status, 200, "{r}");
    let created = r["redemptions"][0]["customer"]["id"].clone();
    assert!(created.as_str().is_some_and(|id| id.starts_with("cust_")), "{r}");
    let (status, r) = redeem(
        &server,
        &p,
        body(1000, json!({"source_id": "grace", "email": "grace@example.com"})),
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["redemptions"][0]["customer"]["id"], created);
    let (_, c) = server.call(&p, Method::GET, "/v1/customers/grace", None).await;
    assert_eq!(c["id"], created);
    assert_eq!(c["name"], "Grace");
    assert_eq!(c["email"], "grace@example.com");
}

/// A campaign-wide cap (`campaign.redemptions.count`) holds when many of its codes are
/// redeemed at once, and a rollback gives its place back.
async fn campaign_cap_holds_and_rollbacks_free_a_place(server: Server) {
    let server = Arc::new(server);
    let p = server.create_project("Cap").await;
    let (status, campaign) = server
        .call(
            &p,
            Method::POST,
            "/v1/campaigns",
            Some(json!({"name": "Capped", "voucher": {"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 100}, "redemption": {"quantity": 1}}})),
        )
        .await;
    assert_eq!(status, 200, "{campaign}");
    let cid = campaign["id"].as_str().expect("campaign id").to_string();
    for i in 0..24 {
        let (status, v) = server
            .call(&p, Method::POST, &format!("/v1/campaigns/{cid}/vouchers/CAP-{i}"), Some(json!({})))
            .await;
        assert_eq!(status, 200, "{v}");
    }
    let (status, rule) = server
        .call(
            &p,
            Method::POST,
            "/v1/validation-rules",
            Some(json!({"name": "First three", "rules": {"1": {"name": "campaign.redemptions.count", "conditions": {"$less_than": [3]}, "error": {"message": "Sold out"}}, "logic": "1"}})),
        )
        .await;
    assert_eq!(status, 200, "{rule}");
    let rid = rule["id"].as_str().expect("rule id");
    let (status, a) = server
        .call(
            &p,
            Method::POST,
            &format!("/v1/validation-rules/{rid}/assignments"),
            Some(json!({"related_object_type": "campaign", "related_object_id": cid})),
        )
        .await;
    assert_eq!(status, 200, "{a}");
    let body = |i: usize| json!({"redeemables": [{"object": "voucher", "id": format!("CAP-{i}")}], "order": {"amount": 1000}, "customer": {"source_id": format!("c{i}")}});
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (server, p, b) = (server.clone(), p.clone(), body(i));
        tasks.push(tokio::spawn(async move { redeem(&server, &p, b, None).await }));
    }
    let mut won = Vec::new();
    for t in tasks {
        let (status, r) = t.await.expect("join");
        match status {
            200 => won.push(r["redemptions"][0]["id"].as_str().expect("redemption id").to_string()),
            400 | 409 => assert!(r["key"].is_string(), "{r}"),
            other => panic!("unexpected status {other}: {r}"),
        }
    }
    assert_eq!(won.len(), 3, "the cap lets exactly three through");
    let (status, r) = redeem(&server, &p, body(20), None).await;
    assert_eq!(status, 400, "still capped: {r}");
    let (status, r) = server
        .call(&p, Method::POST, &format!("/v1/redemptions/{}/rollback", won[0]), Some(json!({})))
        .await;
    assert_eq!(status, 200, "{r}");
    let (status, r) = redeem(&server, &p, body(21), None).await;
    assert_eq!(status, 200, "a rolled back redemption frees its place: {r}");
    let (status, r) = redeem(&server, &p, body(22), None).await;
    assert_eq!(status, 400, "capped again: {r}");
}

macro_rules! both_engines {
    ($($name:ident),*) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let dir = super::TempDir::new();
                    super::$name(super::Server::sqlite(&dir)).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::Server::start(super::Backend::Postgres(super::pg_fresh_url()))).await
                }
            )*
        }
    };
}

both_engines!(
    limited_code_holds_under_contention,
    gift_card_never_overdrawn,
    retries_with_one_key_redeem_once,
    redemption_views_and_customer_writes,
    campaign_cap_holds_and_rollbacks_free_a_place
);
