//! Publications and the customer's wallet against the real binary, on both engines.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;

/// A campaign of `n` generated single-use codes; returns its id once they exist.
async fn campaign(server: &Server, p: &Project, name: &str, n: u64) -> String {
    let (status, c) = server
        .call(
            p,
            Method::POST,
            "/v1/campaigns",
            Some(json!({"name": name, "vouchers_count": n, "voucher": {"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 100}, "redemption": {"quantity": 1}}})),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    let id = c["id"].as_str().expect("id").to_string();
    for _ in 0..200 {
        let (_, c) = server.call(p, Method::GET, &format!("/v1/campaigns/{id}"), None).await;
        if c["vouchers_generation_status"] == "DONE" && c["vouchers_count"] == n {
            return id;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("campaign {name} did not get its {n} codes");
}

async fn publish(server: &Server, p: &Project, body: Value) -> (u16, Value) {
    server.call(p, Method::POST, "/v1/publications", Some(body)).await
}

async fn parallel_publications_never_share_a_code(server: Server) {
    let server = Arc::new(server);
    let p = server.create_project("Publish").await;
    let camp = campaign(&server, &p, "Welcome", 120).await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (server, p, camp) = (server.clone(), p.clone(), camp.clone());
        tasks.push(tokio::spawn(async move {
            publish(
                &server,
                &p,
                json!({"campaign": {"name": camp}, "customer": {"source_id": format!("c{i}")}}),
            )
            .await
        }));
    }
    let mut codes = BTreeSet::new();
    for t in tasks {
        let (status, body) = t.await.expect("join");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["object"], "publication");
        assert!(
            codes.insert(body["voucher"]["code"].as_str().expect("code").to_string()),
            "a code handed out twice: {body}"
        );
    }
    assert_eq!(codes.len(), 100);
    let (_, list) = server
        .call(&p, Method::GET, &format!("/v1/publications?campaign={camp}&limit=100"), None)
        .await;
    assert_eq!(list["total"], 100);
    let (_, summary) = server.call(&p, Method::GET, &format!("/v1/campaigns/{camp}/summary"), None).await;
    assert_eq!(summary["publications"], 100, "{summary}");
    // 20 codes are left; asking for 21 more fails cleanly and hands out nothing.
    let (status, e) = publish(
        &server,
        &p,
        json!({"campaign": {"name": camp, "count": 20}, "customer": {"source_id": "big"}}),
    )
    .await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["vouchers"].as_array().map(Vec::len), Some(20));
    let (status, e) = publish(&server, &p, json!({"campaign": camp, "customer": {"source_id": "late"}})).await;
    assert_envelope(status, &e, "no_voucher_suitable_for_publication");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_publications_on_sqlite() {
    let dir = TempDir::new();
    parallel_publications_never_share_a_code(Server::sqlite(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_publications_on_postgres() {
    parallel_publications_never_share_a_code(Server::start(Backend::Postgres(pg_fresh_url()))).await;
}

#[tokio::test]
async fn publications_dedupe_join_once_and_fill_the_wallet() {
    let dir = TempDir::new();
    let server = Server::sqlite(&dir);
    let p = server.create_project("Wallet").await;
    let camp = campaign(&server, &p, "Loyal", 5).await;

    // source_id: the same publication again.
    let (status, a) = publish(&server, &p, json!({"campaign": {"name": "Loyal"}, "customer": {"source_id": "ann", "email": "ann@example.com"}, "source_id": "crm-1", "channel": "CRM", "metadata": {"why": "welcome"}})).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(
        (a["channel"].as_str(), a["source_id"].as_str(), a["result"].as_str()),
        (Some("CRM"), Some("crm-1"), Some("SUCCESS"))
    );
    let (_, again) = publish(
        &server,
        &p,
        json!({"campaign": {"name": "Loyal"}, "customer": {"source_id": "ann"}, "source_id": "crm-1"}),
    )
    .await;
    assert_eq!(again["id"], a["id"]);
    assert_eq!(again["voucher"]["code"], a["voucher"]["code"]);

    // join_once: the customer's earlier code, not a new one.
    let (_, j) = publish(&server, &p, json!({"campaign": "Loyal", "customer": {"source_id": "ann"}})).await;
    assert_ne!(j["voucher"]["code"], a["voucher"]["code"], "without join_once a second code");
    let (status, _) = server
        .call(
            &p,
            Method::POST,
            "/v1/publications?join_once=true",
            Some(json!({"campaign": "Loyal", "customer": {"source_id": "ann"}})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, list) = server.call(&p, Method::GET, "/v1/publications?customer=ann", None).await;
    assert_eq!(list["total"], 2, "join_once made no third publication: {list}");

    // A specific code, and one another customer holds.
    server
        .create_voucher(
            &p,
            "BOB-ONLY",
            json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 300}}),
        )
        .await;
    let (status, b) = publish(&server, &p, json!({"voucher": "BOB-ONLY", "customer": {"source_id": "bob"}})).await;
    assert_eq!(status, 200, "{b}");
    let (status, e) = publish(&server, &p, json!({"voucher": "BOB-ONLY", "customer": {"source_id": "ann"}})).await;
    assert_envelope(status, &e, "voucher_already_published");

    // The wallet.
    let (status, w) = server.call(&p, Method::GET, "/v1/customers/ann/redeemables", None).await;
    assert_eq!(status, 200, "{w}");
    assert_eq!(w["total"], 2);
    assert_eq!(w["data"][0]["holder_role"], "OWNER");
    assert_eq!(w["data"][0]["redeemable"]["status"], "ACTIVE");
    assert_eq!(w["data"][0]["campaign_id"], camp.as_str());
    let (status, e) = server.call(&p, Method::GET, "/v1/customers/nobody/redeemables", None).await;
    assert_envelope(status, &e, "not_found");

    // publication.redeemable_by_linked_customer: only the holder redeems.
    let (status, r) = server
        .call(&p, Method::POST, "/v1/validation-rules", Some(json!({"name": "holder only", "rules": {"1": {"name": "publication.redeemable_by_linked_customer", "conditions": {"$is": [true]}}}})))
        .await;
    assert_eq!(status, 200, "{r}");
    let (status, _) = server
        .call(
            &p,
            Method::PUT,
            "/v1/vouchers/BOB-ONLY",
            Some(json!({"validation_rules": [r["id"]]})),
        )
        .await;
    assert_eq!(status, 200);
    let check = |who: &'static str| {
        let (server, p) = (&server, &p);
        async move {
            let (_, v) = server
                .call(p, Method::POST, "/v1/validations", Some(json!({"redeemables": [{"object": "voucher", "id": "BOB-ONLY"}], "order": {"amount": 1000}, "customer": {"source_id": who}})))
                .await;
            v["valid"].as_bool()
        }
    };
    assert_eq!(check("bob").await, Some(true));
    assert_eq!(check("ann").await, Some(false));

    // A PROMOTION campaign has no codes, and bad input is refused with nothing written.
    for bad in [
        json!({"campaign": "Loyal"}),
        json!({"voucher": "BOB-ONLY", "campaign": "Loyal", "customer": {"source_id": "x"}}),
        json!({"campaign": {"name": "Loyal", "count": 0}, "customer": {"source_id": "x"}}),
        json!({"campaign": {"name": "Loyal", "count": 2}, "source_id": "s", "customer": {"source_id": "x"}}),
    ] {
        let (status, e) = publish(&server, &p, bad.clone()).await;
        assert_envelope(status, &e, "invalid_payload");
    }
    let (status, e) = publish(&server, &p, json!({"campaign": "Nope", "customer": {"source_id": "x"}})).await;
    assert_envelope(status, &e, "not_found");
    let (_, list) = server.call(&p, Method::GET, "/v1/publications", None).await;
    assert_eq!(list["total"], 3);
    let (status, e) = server.call(&p, Method::GET, "/v1/publications?limit=0", None).await;
    assert_envelope(status, &e, "invalid_query_params");
}
