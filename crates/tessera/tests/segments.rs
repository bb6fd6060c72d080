//! Segments, segment rules, publication to a segment and customer search, against the
//! real binary on both engines.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;

async fn wait_for_action(server: &Server, p: &Project, id: &str) -> Value {
    for _ in 0..600 {
        let (status, a) = server.call(p, Method::GET, &format!("/v1/async-actions/{id}"), None).await;
        assert_eq!(status, 200, "{a}");
        if a["status"] == "DONE" || a["status"] == "FAILED" {
            return a;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("async action {id} did not finish");
}

async fn customer(server: &Server, p: &Project, source_id: &str, region: &str, country: &str) -> String {
    let (status, c) = server
        .call(
            p,
            Method::POST,
            "/v1/customers",
            Some(json!({"source_id": source_id, "email": format!("{source_id}@example.com"), "metadata": {"region": region}, "address": {"country": country}})),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    c["id"].as_str().expect("id").to_string()
}

async fn set_region(server: &Server, p: &Project, source_id: &str, region: &str) {
    let (status, c) = server
        .call(
            p,
            Method::PUT,
            &format!("/v1/customers/{source_id}"),
            Some(json!({"metadata": {"region": region}})),
        )
        .await;
    assert_eq!(status, 200, "{c}");
}

/// Creates an auto-update segment and waits for its initial sync.
async fn dynamic_segment(server: &Server, p: &Project, name: &str, filter: Value) -> Value {
    let (status, seg) = server
        .call(
            p,
            Method::POST,
            "/v1/segments",
            Some(json!({"name": name, "type": "auto-update", "filter": filter})),
        )
        .await;
    assert_eq!(status, 200, "{seg}");
    assert_eq!(seg["object"], "segment");
    let action = seg["async_action_id"].as_str().expect("async action");
    let a = wait_for_action(server, p, action).await;
    assert_eq!(a["status"], "DONE", "{a}");
    let (_, seg) = server
        .call(p, Method::GET, &format!("/v1/segments/{}", seg["id"].as_str().expect("id")), None)
        .await;
    assert_eq!(seg["initial_sync_status"], "DONE", "{seg}");
    seg
}

async fn member_ids(server: &Server, p: &Project, segment: &str) -> BTreeSet<String> {
    let (status, l) = server
        .call(p, Method::GET, &format!("/v1/customers?segment_id={segment}&limit=100"), None)
        .await;
    assert_eq!(status, 200, "{l}");
    l["customers"]
        .as_array()
        .expect("customers")
        .iter()
        .map(|c| c["source_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn segments_rules_and_search(server: Server) {
    let p = server.create_project("Segments").await;
    let other = server.create_project("Other").await;
    for i in 0..30 {
        let region = if i % 3 == 0 { "north" } else { "south" };
        customer(&server, &p, &format!("c{i:02}"), region, if i % 2 == 0 { "PL" } else { "DE" }).await;
    }

    // Static: listed customers by id or source id; an unknown one refuses the whole segment.
    let first = customer(&server, &p, "static-a", "west", "FR").await;
    let (status, s) = server
        .call(
            &p,
            Method::POST,
            "/v1/segments",
            Some(json!({"name": "Picked", "type": "static", "customers": [first, "c01"]})),
        )
        .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(
        (s["type"].as_str(), s["customers_count"].as_i64()),
        (Some("static"), Some(2)),
        "{s}"
    );
    let static_id = s["id"].as_str().expect("id").to_string();
    let (status, e) = server
        .call(
            &p,
            Method::POST,
            "/v1/segments",
            Some(json!({"name": "Bad", "type": "static", "customers": ["c01", "nobody"]})),
        )
        .await;
    assert_envelope(status, &e, "not_found");
    let (_, l) = server.call(&p, Method::GET, "/v1/segments", None).await;
    assert_eq!(l["total"], 1, "the refused segment left nothing behind: {l}");
    for bad in [
        json!({"name": "x", "type": "auto-update", "filter": {"birthdate": {"conditions": {"$next_month": [true]}}}}),
        json!({"name": "x", "type": "auto-update", "filter": {"password": {"conditions": {"$is": ["a"]}}}}),
        json!({"name": "x", "type": "galaxy"}),
        json!({"type": "static", "customers": []}),
    ] {
        let (status, e) = server.call(&p, Method::POST, "/v1/segments", Some(bad)).await;
        assert_envelope(status, &e, "invalid_payload");
    }

    // Auto-update: existing customers found by the initial sync.
    let seg = dynamic_segment(
        &server,
        &p,
        "North",
        json!({"junction": "and", "metadata.region": {"conditions": {"$is": ["north"]}}}),
    )
    .await;
    let seg_id = seg["id"].as_str().expect("id").to_string();
    assert_eq!(seg["customers_count"], 10, "{seg}");
    let expected: BTreeSet<String> = (0..30).filter(|i| i % 3 == 0).map(|i| format!("c{i:02}")).collect();
    assert_eq!(member_ids(&server, &p, &seg_id).await, expected);
    let (_, mine) = server.call(&p, Method::GET, "/v1/customers/c01/segments", None).await;
    assert_eq!(mine["data"].as_array().map(Vec::len), Some(1), "{mine}");
    assert_eq!(mine["data"][0]["id"], static_id);

    // Customers written later join and leave in their own write.
    customer(&server, &p, "late", "north", "PL").await;
    set_region(&server, &p, "c00", "south").await;
    let members = member_ids(&server, &p, &seg_id).await;
    assert!(members.contains("late") && !members.contains("c00"), "{members:?}");

    // Search: metadata and address values come from the attribute index.
    let (status, l) = server
        .call(
            &p,
            Method::GET,
            "/v1/customers?metadata[region]=north&address[country]=PL&limit=100",
            None,
        )
        .await;
    assert_eq!(status, 200, "{l}");
    let found: BTreeSet<String> = l["customers"]
        .as_array()
        .expect("customers")
        .iter()
        .map(|c| c["source_id"].as_str().unwrap_or_default().to_string())
        .collect();
    let want: BTreeSet<String> = ["c06", "c12", "c18", "c24", "late"].iter().map(|s| s.to_string()).collect();
    assert_eq!(found, want);
    assert_eq!(l["total"], 5);
    let (status, l) = server.call(&p, Method::GET, "/v1/customers?source_id=c07", None).await;
    assert_eq!((status, l["total"].as_i64()), (200, Some(1)), "{l}");
    let (status, e) = server.call(&p, Method::GET, "/v1/customers?metadata[a][b]=1", None).await;
    assert_envelope(status, &e, "invalid_query_params");

    // The segment rule follows the customer in and out, with no delay.
    let (status, rule) = server
        .call(&p, Method::POST, "/v1/validation-rules", Some(json!({
            "name": "North only",
            "rules": {"1": {"name": "customer.segment", "conditions": {"$is": [seg_id]}, "error": {"message": "Northern customers only"}}}
        })))
        .await;
    assert_eq!(status, 200, "{rule}");
    let rid = rule["id"].as_str().expect("id");
    server
        .create_voucher(
            &p,
            "NORTH10",
            json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 100}}),
        )
        .await;
    let (status, a) = server
        .call(
            &p,
            Method::POST,
            &format!("/v1/validation-rules/{rid}/assignments"),
            Some(json!({"related_object_type": "voucher", "related_object_id": "NORTH10"})),
        )
        .await;
    assert_eq!(status, 200, "{a}");
    let validate = |who: &'static str| {
        let server = &server;
        let p = &p;
        async move {
            let (status, v) = server
                .call(p, Method::POST, "/v1/validations", Some(json!({"redeemables": [{"object": "voucher", "id": "NORTH10"}], "order": {"amount": 1000}, "customer": {"source_id": who}})))
                .await;
            assert_eq!(status, 200, "{v}");
            v
        }
    };
    assert_eq!(validate("c03").await["valid"], true);
    let v = validate("c04").await;
    assert_eq!(v["valid"], false);
    assert_eq!(
        v["inapplicable_redeemables"][0]["result"]["error"]["error"]["message"], "Northern customers only",
        "{v}"
    );
    set_region(&server, &p, "c03", "south").await;
    assert_eq!(validate("c03").await["valid"], false, "left the segment");
    set_region(&server, &p, "c03", "north").await;
    assert_eq!(validate("c03").await["valid"], true, "back in the segment");
    assert_eq!(validate("stranger").await["valid"], false, "an unknown customer is in no segment");

    // Isolation: another project sees none of it.
    let (status, e) = server.call(&other, Method::GET, &format!("/v1/segments/{seg_id}"), None).await;
    assert_envelope(status, &e, "not_found");
    let (status, e) = server.call(&other, Method::DELETE, &format!("/v1/segments/{seg_id}"), None).await;
    assert_envelope(status, &e, "not_found");
    let (_, l) = server
        .call(&other, Method::GET, &format!("/v1/customers?segment_id={seg_id}"), None)
        .await;
    assert_eq!(l["total"], 0, "{l}");

    // Deleting a segment removes its members.
    let (status, _) = server.call(&p, Method::DELETE, &format!("/v1/segments/{static_id}"), None).await;
    assert_eq!(status, 204);
    let (status, e) = server.call(&p, Method::GET, &format!("/v1/segments/{static_id}"), None).await;
    assert_envelope(status, &e, "not_found");
    let (_, mine) = server.call(&p, Method::GET, "/v1/customers/c01/segments", None).await;
    assert_eq!(mine["total"], 0, "{mine}");
}

#[tokio::test]
async fn segments_rules_and_search_on_sqlite() {
    let dir = TempDir::new();
    segments_rules_and_search(Server::sqlite(&dir)).await;
}

#[tokio::test]
async fn segments_rules_and_search_on_postgres() {
    segments_rules_and_search(Server::start(Backend::Postgres(pg_fresh_url()))).await;
}

async fn campaign(server: &Server, p: &Project, name: &str, n: u64) {
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
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("campaign {name} did not get its {n} codes");
}

async fn all_publications(server: &Server, p: &Project, campaign: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for page in 1.. {
        let (status, l) = server
            .call(
                p,
                Method::GET,
                &format!("/v1/publications?campaign={campaign}&limit=100&page={page}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{l}");
        let items = l["publications"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            break;
        }
        out.extend(items);
    }
    out
}

async fn publication_to_a_segment(server: Server) {
    let p = server.create_project("Bulk").await;
    for i in 0..150 {
        customer(&server, &p, &format!("m{i:03}"), if i < 120 { "east" } else { "west" }, "PL").await;
    }
    let seg = dynamic_segment(&server, &p, "East", json!({"metadata.region": {"conditions": {"$is": "east"}}})).await;
    let seg_id = seg["id"].as_str().expect("id").to_string();
    campaign(&server, &p, "Bulk codes", 200).await;
    // One member already holds a code: it keeps it and gets no second one.
    let (status, first) = server
        .call(
            &p,
            Method::POST,
            "/v1/publications",
            Some(json!({"campaign": "Bulk codes", "customer": {"source_id": "m000"}})),
        )
        .await;
    assert_eq!(status, 200, "{first}");

    let (status, a) = server
        .call(
            &p,
            Method::POST,
            &format!("/v1/segments/{seg_id}/publications"),
            Some(json!({"campaign": "Bulk codes", "channel": "Segment"})),
        )
        .await;
    assert_eq!(status, 202, "{a}");
    let done = wait_for_action(&server, &p, a["async_action_id"].as_str().expect("id")).await;
    assert_eq!(done["status"], "DONE", "{done}");
    assert_eq!(
        (done["result"]["done_count"].as_i64(), done["result"]["skipped_count"].as_i64()),
        (Some(119), Some(1)),
        "{done}"
    );
    let pubs = all_publications(&server, &p, "Bulk codes").await;
    assert_eq!(pubs.len(), 120);
    let customers: BTreeSet<&str> = pubs.iter().filter_map(|x| x["customer"]["source_id"].as_str()).collect();
    let codes: BTreeSet<&str> = pubs.iter().filter_map(|x| x["voucher"]["code"].as_str()).collect();
    assert_eq!(customers.len(), 120, "every member exactly once");
    assert!(customers.iter().all(|c| *c < "m120"), "only members: {customers:?}");
    assert_eq!(codes.len(), 120, "no code twice");

    // Running it again hands out nothing new.
    let (_, a) = server
        .call(
            &p,
            Method::POST,
            &format!("/v1/segments/{seg_id}/publications"),
            Some(json!({"campaign": "Bulk codes"})),
        )
        .await;
    let again = wait_for_action(&server, &p, a["async_action_id"].as_str().expect("id")).await;
    assert_eq!(
        (again["result"]["done_count"].as_i64(), again["result"]["skipped_count"].as_i64()),
        (Some(0), Some(120)),
        "{again}"
    );
    assert_eq!(all_publications(&server, &p, "Bulk codes").await.len(), 120);

    // A campaign with too few codes stops when it runs out and says so.
    campaign(&server, &p, "Few codes", 50).await;
    let (_, a) = server
        .call(
            &p,
            Method::POST,
            &format!("/v1/segments/{seg_id}/publications"),
            Some(json!({"campaign": "Few codes"})),
        )
        .await;
    let short = wait_for_action(&server, &p, a["async_action_id"].as_str().expect("id")).await;
    assert_eq!(short["status"], "FAILED", "{short}");
    assert_eq!(short["result"]["done_count"], 50, "{short}");
    assert_eq!(all_publications(&server, &p, "Few codes").await.len(), 50);

    // Bad requests.
    let (status, e) = server
        .call(
            &p,
            Method::POST,
            "/v1/segments/seg_nope/publications",
            Some(json!({"campaign": "Bulk codes"})),
        )
        .await;
    assert_envelope(status, &e, "not_found");
    let (status, e) = server
        .call(
            &p,
            Method::POST,
            &format!("/v1/segments/{seg_id}/publications"),
            Some(json!({"campaign": "Nope"})),
        )
        .await;
    assert_envelope(status, &e, "not_found");
    let (status, e) = server
        .call(
            &p,
            Method::POST,
            &format!("/v1/segments/{seg_id}/publications"),
            Some(json!({"campaign": {"name": "Bulk codes", "count": 2}})),
        )
        .await;
    assert_envelope(status, &e, "invalid_payload");
}

#[tokio::test]
async fn publication_to_a_segment_on_sqlite() {
    let dir = TempDir::new();
    publication_to_a_segment(Server::sqlite(&dir)).await;
}

#[tokio::test]
async fn publication_to_a_segment_on_postgres() {
    publication_to_a_segment(Server::start(Backend::Postgres(pg_fresh_url()))).await;
}

#[tokio::test]
async fn publications_by_query_parameters() {
    let dir = TempDir::new();
    let server = Server::sqlite(&dir);
    let p = server.create_project("Query").await;
    campaign(&server, &p, "Q", 3).await;
    let (status, a) = server
        .call(&p, Method::GET, "/v1/publications/create?campaign[name]=Q&customer[source_id]=qa&customer[email]=qa@example.com&metadata[via]=link&source_id=q-1", None)
        .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(
        (a["object"].as_str(), a["metadata"]["via"].as_str()),
        (Some("publication"), Some("link")),
        "{a}"
    );
    let (_, b) = server
        .call(
            &p,
            Method::GET,
            "/v1/publications/create?campaign[name]=Q&customer[source_id]=qa&source_id=q-1",
            None,
        )
        .await;
    assert_eq!(a["id"], b["id"], "the same source id is the same publication");
    // A GET that publishes is audited like the POST.
    let (status, log) = server
        .mgmt(Method::GET, &format!("/management/v1/projects/{}/audit-log?limit=100", p.id), None)
        .await;
    assert_eq!(status, 200, "{log}");
    assert!(
        log["data"]
            .as_array()
            .expect("entries")
            .iter()
            .any(|e| e["action"] == "GET /v1/publications/create"),
        "{log}"
    );
    let (status, two) = server
        .call(
            &p,
            Method::GET,
            "/v1/publications/create?campaign[name]=Q&campaign[count]=2&customer[source_id]=qb",
            None,
        )
        .await;
    assert_eq!(status, 200, "{two}");
    assert_eq!(two["vouchers"].as_array().map(Vec::len), Some(2), "{two}");
    for bad in [
        "/v1/publications/create?campaign[name]=Q",
        "/v1/publications/create?campaign[name]=Q&customer[source_id]=qc&join_once=maybe",
        "/v1/publications/create?campaign[count]=x&customer[source_id]=qc",
        "/v1/publications/create?customer[a][b][c]=1",
    ] {
        let (status, e) = server.call(&p, Method::GET, bad, None).await;
        assert!(status == 400, "{bad}: {status} {e}");
    }
}
