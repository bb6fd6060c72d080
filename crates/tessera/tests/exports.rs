//! CSV exports against the real binary, on both engines: every exported object, default
//! fields, order, filters, refusals, the download token (no API key, one export only),
//! tenant isolation, deletion, and a multi-chunk export.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// Creates an export and checks the answer is the SCHEDULED export object.
async fn export(server: &Server, p: &Project, body: Value) -> Value {
    let (status, e) = server.call(p, Method::POST, "/v1/exports", Some(body)).await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["object"], "export", "{e}");
    assert_eq!(e["status"], "SCHEDULED", "{e}");
    assert_eq!(e["channel"], "API");
    assert!(e["result"].is_null(), "{e}");
    assert!(e["id"].as_str().is_some_and(|i| i.starts_with("exp_")), "{e}");
    assert!(e.get("_internal").is_none(), "internal keys leak: {e}");
    e
}

/// Polls the export until it is DONE; returns it.
async fn done(server: &Server, p: &Project, id: &str) -> Value {
    for _ in 0..600 {
        let (status, e) = server.call(p, Method::GET, &format!("/v1/exports/{id}"), None).await;
        assert_eq!(status, 200, "{e}");
        match e["status"].as_str() {
            Some("DONE") => return e,
            Some("SCHEDULED" | "IN_PROGRESS") => tokio::time::sleep(Duration::from_millis(50)).await,
            _ => panic!("export {id} did not finish: {e}"),
        }
    }
    panic!("export {id} still running after 30 s");
}

/// GET with no API key at all.
async fn fetch(url: &str) -> (u16, String, reqwest::header::HeaderMap) {
    let resp = reqwest::get(url).await.expect("download");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.text().await.expect("body"), headers)
}

fn parse(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes());
    let header = r.headers().expect("header").iter().map(str::to_string).collect();
    let rows = r
        .records()
        .map(|rec| rec.expect("row").iter().map(str::to_string).collect())
        .collect();
    (header, rows)
}

/// Runs an export to the end and returns its CSV, parsed, downloaded through `result.url`.
async fn csv_of(server: &Server, p: &Project, body: Value) -> (Vec<String>, Vec<Vec<String>>) {
    let e = export(server, p, body).await;
    let e = done(server, p, e["id"].as_str().expect("id")).await;
    let url = e["result"]["url"].as_str().expect("url");
    let (status, text, headers) = fetch(url).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    parse(&text)
}

fn column<'a>(header: &[String], rows: &'a [Vec<String>], name: &str) -> Vec<&'a str> {
    let i = header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {header:?}"));
    rows.iter().map(|r| r[i].as_str()).collect()
}

async fn post(server: &Server, p: &Project, path: &str, body: Value) -> Value {
    let (status, v) = server.call(p, Method::POST, path, Some(body)).await;
    assert_eq!(status, 200, "{path}: {v}");
    v
}

async fn campaign_with_codes(server: &Server, p: &Project, name: &str, n: u64) -> String {
    let c = post(
        server,
        p,
        "/v1/campaigns",
        json!({"name": name, "vouchers_count": n, "voucher": {"type": "DISCOUNT_VOUCHER", "discount": {"type": "PERCENT", "percent_off": 15}}}),
    )
    .await;
    let id = c["id"].as_str().expect("id").to_string();
    for _ in 0..1200 {
        let (_, c) = server.call(p, Method::GET, &format!("/v1/campaigns/{id}"), None).await;
        if c["vouchers_generation_status"] == "DONE" && c["vouchers_count"] == n {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("campaign {name} did not get its {n} codes");
}

const TRICKY_NAME: &str = "Summer, \"hot\" deals";
const TRICKY_NOTE: &str = "line one\nline two, with \"quotes\"";

async fn every_object_exports(server: Server) {
    let p = server.create_project("Exports").await;
    let camp = campaign_with_codes(&server, &p, TRICKY_NAME, 3).await;
    server
        .create_voucher(
            &p,
            "GIFT-1",
            json!({"type": "GIFT_VOUCHER", "gift": {"amount": 5000}, "metadata": {"note": TRICKY_NOTE}}),
        )
        .await;
    post(
        &server,
        &p,
        "/v1/customers",
        json!({"source_id": "alice", "name": "Alice, A.", "email": "alice@example.com", "metadata": {"tier": "gold"}, "address": {"city": "Berlin"}}),
    )
    .await;
    let (_, codes) = server
        .call(&p, Method::GET, &format!("/v1/vouchers?campaign_id={camp}&limit=10"), None)
        .await;
    let code = codes["vouchers"][0]["code"].as_str().expect("code").to_string();
    post(
        &server,
        &p,
        "/v1/redemptions",
        json!({"redeemables": [{"object": "voucher", "id": code}], "customer": {"source_id": "alice"}, "order": {"source_id": "order-1", "amount": 20000}}),
    )
    .await;
    let (status, _) = server
        .call(
            &p,
            Method::POST,
            "/v1/redemptions",
            Some(json!({"redeemables": [{"object": "voucher", "id": "NO-SUCH-CODE"}], "customer": {"source_id": "alice"}, "order": {"amount": 100}})),
        )
        .await;
    assert_eq!(status, 404, "an unknown code fails and is recorded");
    let publication = post(
        &server,
        &p,
        "/v1/publications",
        json!({"campaign": TRICKY_NAME, "customer": {"source_id": "bob", "name": "Bob"}, "channel": "email", "metadata": {"wave": 2}}),
    )
    .await;

    // Vouchers: the fields asked for, in that order; quoting survives the round trip.
    let fields = [
        "code",
        "campaign",
        "campaign_id",
        "voucher_type",
        "value",
        "gift_balance",
        "metadata",
        "customer_id",
    ];
    let (header, rows) = csv_of(
        &server,
        &p,
        json!({"exported_object": "voucher", "parameters": {"fields": fields, "order": "created_at"}}),
    )
    .await;
    assert_eq!(header, fields);
    assert_eq!(rows.len(), 4, "{rows:?}");
    let gift = rows.iter().find(|r| r[0] == "GIFT-1").expect("gift card row");
    assert_eq!(gift[3], "GIFT_VOUCHER");
    assert_eq!(gift[4], "5000");
    assert_eq!(gift[5], "5000");
    let meta: Value = serde_json::from_str(&gift[6]).expect("metadata is JSON text");
    assert_eq!(meta["note"], TRICKY_NOTE);
    let generated: Vec<&Vec<String>> = rows.iter().filter(|r| r[0] != "GIFT-1").collect();
    assert!(
        generated.iter().all(|r| r[1] == TRICKY_NAME && r[2] == camp && r[4] == "15"),
        "{generated:?}"
    );
    // Oldest first: the campaign's codes were made before the gift card.
    assert_eq!(rows[3][0], "GIFT-1");
    let published = publication["voucher"]["code"].as_str().expect("published code");
    let bob_holds = rows.iter().find(|r| r[0] == published).expect("published code row");
    assert!(bob_holds[7].starts_with("cust_"), "{bob_holds:?}");

    // The raw text quotes what needs quoting.
    let e = export(
        &server,
        &p,
        json!({"exported_object": "voucher", "parameters": {"fields": ["code", "campaign"]}}),
    )
    .await;
    let e = done(&server, &p, e["id"].as_str().expect("id")).await;
    let (_, raw, _) = fetch(e["result"]["url"].as_str().expect("url")).await;
    assert!(raw.starts_with("code,campaign\n"), "{raw}");
    assert!(raw.contains(",\"Summer, \"\"hot\"\" deals\"\n"), "{raw}");
    // Newest first by default.
    assert!(raw.lines().nth(1).is_some_and(|l| l.starts_with("GIFT-1,")), "{raw}");

    // Default fields of each object.
    let (header, rows) = csv_of(&server, &p, json!({"exported_object": "customer"})).await;
    assert_eq!(header, ["name", "source_id"]);
    let mut names = column(&header, &rows, "source_id");
    names.sort();
    assert_eq!(names, ["alice", "bob"]);
    assert!(rows.contains(&vec!["Alice, A.".to_string(), "alice".to_string()]), "{rows:?}");

    let (header, rows) = csv_of(&server, &p, json!({"exported_object": "redemption"})).await;
    assert_eq!(header, ["id", "object", "voucher_code", "customer_id", "date", "result"]);
    let mut results = column(&header, &rows, "result");
    results.sort();
    assert_eq!(results, ["FAILURE", "SUCCESS"]);
    let ok = rows.iter().find(|r| r[5] == "SUCCESS").expect("success row");
    assert_eq!(ok[2], code);
    assert!(ok[0].starts_with("r_") && ok[1] == "redemption", "{ok:?}");

    let (header, rows) = csv_of(&server, &p, json!({"exported_object": "publication"})).await;
    assert_eq!(header, ["voucher_code", "customer_id", "date", "channel"]);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0], published);
    assert_eq!(rows[0][3], "email");

    let (header, rows) = csv_of(&server, &p, json!({"exported_object": "order"})).await;
    assert_eq!(header, ["id", "source_id", "status"]);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][1], "order-1");
    assert_eq!(rows[0][2], "PAID");

    // Wider field sets read the right values.
    let (header, rows) = csv_of(
        &server,
        &p,
        json!({"exported_object": "customer", "parameters": {"order": "created_at", "fields": ["source_id", "email", "address_city", "metadata.tier", "orders_total_count", "orders_total_amount", "redemptions_total_succeeded", "redemptions_total_failed"]}}),
    )
    .await;
    assert_eq!(
        rows[0],
        ["alice", "alice@example.com", "Berlin", "gold", "1", "17000", "1", "1"],
        "{header:?}"
    );
    assert_eq!(rows[1][0], "bob");
    let (_, rows) = csv_of(
        &server,
        &p,
        json!({"exported_object": "redemption", "parameters": {"fields": ["voucher_code", "campaign", "customer_source_id", "customer_name", "order_amount", "failure_code"], "filters": {"result": {"conditions": {"$is": ["SUCCESS"]}}}}}),
    )
    .await;
    assert_eq!(rows, [[code.as_str(), TRICKY_NAME, "alice", "Alice, A.", "20000", ""]]);
    let (_, rows) = csv_of(
        &server,
        &p,
        json!({"exported_object": "publication", "parameters": {"fields": ["voucher_code", "customer_source_id", "campaign", "metadata"]}}),
    )
    .await;
    assert_eq!(rows, [[published, "bob", TRICKY_NAME, "{\"wave\":2}"]]);

    // Filters.
    let (_, rows) = csv_of(
        &server,
        &p,
        json!({"exported_object": "voucher", "parameters": {"fields": ["code"], "filters": {"junction": "and", "campaign_id": {"conditions": {"$in": [camp]}}}}}),
    )
    .await;
    assert_eq!(rows.len(), 3);
    let (header, rows) = csv_of(
        &server,
        &p,
        json!({"exported_object": "voucher", "parameters": {"fields": ["code"], "filters": {"created_at": {"conditions": {"$after": ["2999-01-01T00:00:00Z"]}}}}}),
    )
    .await;
    assert_eq!((header.len(), rows.len()), (1, 0), "nothing matches: a header alone");
    let (_, rows) = csv_of(
        &server,
        &p,
        json!({"exported_object": "customer", "parameters": {"fields": ["source_id"], "filters": {"metadata.tier": {"conditions": {"$is": "gold"}}}}}),
    )
    .await;
    assert_eq!(rows, [["alice"]]);
    let (_, rows) = csv_of(
        &server,
        &p,
        json!({"exported_object": "customer", "parameters": {"fields": ["source_id"], "filters": {"junction": "or", "source_id": {"conditions": {"$is": ["bob"]}}, "email": {"conditions": {"$starts_with": ["alice@"]}}}}}),
    )
    .await;
    assert_eq!(rows.len(), 2);
    let (_, rows) = csv_of(
        &server,
        &p,
        json!({"exported_object": "order", "parameters": {"fields": ["source_id"], "filters": {"amount": {"conditions": {"$more_than": [10000]}}, "created_at": {"conditions": {"$before": ["2999-01-01"]}}}}}),
    )
    .await;
    assert_eq!(rows, [["order-1"]]);

    // Refusals, in the error envelope.
    for (body, key) in [
        (json!({"exported_object": "planets"}), "invalid_payload"),
        (json!({"exported_object": "points_expiration"}), "invalid_payload"),
        (json!({"parameters": {}}), "invalid_payload"),
        (
            json!({"exported_object": "voucher", "parameters": {"fields": ["code", "shoe_size"]}}),
            "invalid_export_fields",
        ),
        (
            json!({"exported_object": "voucher", "parameters": {"order": "-code"}}),
            "invalid_payload",
        ),
        (
            json!({"exported_object": "voucher", "parameters": {"surprise": 1}}),
            "invalid_payload",
        ),
        (
            json!({"exported_object": "voucher", "parameters": {"filters": {"redemption_status": {"conditions": {"$is": ["x"]}}}}}),
            "invalid_export_filters",
        ),
        (
            json!({"exported_object": "order", "parameters": {"filters": {"created_at": {"conditions": {"$is_days_ago": [3]}}}}}),
            "invalid_export_filters",
        ),
    ] {
        let (status, e) = server.call(&p, Method::POST, "/v1/exports", Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {e}");
        assert_envelope(status, &e, key);
    }
    let (_, e) = server
        .call(
            &p,
            Method::POST,
            "/v1/exports",
            Some(json!({"exported_object": "redemption", "parameters": {"fields": ["id", "nope"]}})),
        )
        .await;
    assert!(
        e["details"]
            .as_str()
            .is_some_and(|d| d.contains("voucher_code") && d.contains("failure_message")),
        "{e}"
    );

    // The list: newest first, with totals; DONE exports carry their URL.
    let (status, list) = server.call(&p, Method::GET, "/v1/exports?limit=2", None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["object"], "list");
    assert_eq!(list["data_ref"], "exports");
    assert_eq!(list["exports"].as_array().map(Vec::len), Some(2));
    assert!(list["total"].as_i64().is_some_and(|t| t >= 14), "{list}");
    assert!(list["exports"][0]["created_at"].as_str() >= list["exports"][1]["created_at"].as_str());
    assert!(list["exports"][0]["result"]["url"].as_str().is_some(), "{list}");
    let (status, e) = server.call(&p, Method::GET, "/v1/exports?order=name", None).await;
    assert_envelope(status, &e, "invalid_query_params");
}

async fn tokens_and_tenants(server: Server) {
    let p = server.create_project("Owner").await;
    let other = server.create_project("Other").await;
    post(&server, &p, "/v1/customers", json!({"source_id": "c1", "name": "One"})).await;
    let a = export(
        &server,
        &p,
        json!({"exported_object": "customer", "parameters": {"fields": ["source_id"]}}),
    )
    .await;
    let b = export(
        &server,
        &p,
        json!({"exported_object": "customer", "parameters": {"fields": ["name"]}}),
    )
    .await;
    let a_id = a["id"].as_str().expect("id").to_string();
    let b_id = b["id"].as_str().expect("id").to_string();
    let a = done(&server, &p, &a_id).await;
    let b = done(&server, &p, &b_id).await;
    let a_url = a["result"]["url"].as_str().expect("url").to_string();
    let b_url = b["result"]["url"].as_str().expect("url").to_string();
    assert!(
        a_url.starts_with(&format!("{}/v1/exports/{a_id}/download?token=", server.base)),
        "{a_url}"
    );
    let a_token = a_url.split("token=").nth(1).expect("token").to_string();
    let b_token = b_url.split("token=").nth(1).expect("token").to_string();

    let (status, text, _) = fetch(&a_url).await;
    assert_eq!((status, text.as_str()), (200, "source_id\nc1\n"));

    // A token opens its own export only, and only as issued.
    let refused = [
        format!("{}/v1/exports/{a_id}/download", server.base),
        format!("{}/v1/exports/{a_id}/download?token=", server.base),
        format!("{}/v1/exports/{a_id}/download?token=garbage", server.base),
        format!("{}/v1/exports/{b_id}/download?token={a_token}", server.base),
        format!(
            "{}/v1/exports/{a_id}/download?token={}",
            server.base,
            a_token.replacen('.', ".1", 1)
        ),
        format!(
            "{}/v1/exports/{a_id}/download?token={}x",
            server.base,
            &a_token[..a_token.len() - 1]
        ),
        format!(
            "{}/v1/exports/{a_id}/download?token={}",
            server.base,
            a_token.replace(&p.id, &other.id)
        ),
        format!("{}/v1/exports/exp_nope/download?token={a_token}", server.base),
    ];
    for url in &refused {
        let (status, body, _) = fetch(url).await;
        let e: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert_eq!(status, 401, "{url}: {body}");
        assert_envelope(status, &e, "unauthorized");
    }
    let (status, text, _) = fetch(&b_url).await;
    assert_eq!((status, text.as_str()), (200, "name\nOne\n"));

    // The clients' download (GET /v1/exports/{id}?token=) answers the CSV as text/plain;
    // another project's keys cannot use the token.
    let resp = server
        .send(&p, Method::GET, &format!("/v1/exports/{a_id}?token={a_token}"), None, &[])
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(resp.text().await.expect("text"), "source_id\nc1\n");
    let (status, e) = server
        .call(&other, Method::GET, &format!("/v1/exports/{a_id}?token={a_token}"), None)
        .await;
    assert_envelope(status, &e, "unauthorized");
    let (status, e) = server
        .call(&p, Method::GET, &format!("/v1/exports/{a_id}?token={b_token}"), None)
        .await;
    assert_envelope(status, &e, "unauthorized");

    // Another project sees nothing of it.
    for method in [Method::GET, Method::DELETE] {
        let (status, e) = server.call(&other, method.clone(), &format!("/v1/exports/{a_id}"), None).await;
        assert_eq!(status, 404, "{method} {e}");
        assert_envelope(status, &e, "not_found");
        assert_eq!(e["resource_type"], "export");
    }
    let (_, list) = server.call(&other, Method::GET, "/v1/exports", None).await;
    assert_eq!(list["total"], 0, "{list}");

    // Deleted: gone for reads and downloads.
    let resp = server.send(&p, Method::DELETE, &format!("/v1/exports/{a_id}"), None, &[]).await;
    assert_eq!(resp.status().as_u16(), 204);
    let (status, _) = server.call(&p, Method::GET, &format!("/v1/exports/{a_id}"), None).await;
    assert_eq!(status, 404);
    let (status, _, _) = fetch(&a_url).await;
    assert_eq!(status, 401);
    let (status, e) = server.call(&p, Method::DELETE, &format!("/v1/exports/{a_id}"), None).await;
    assert_envelope(status, &e, "not_found");
    let (status, _, _) = fetch(&b_url).await;
    assert_eq!(status, 200, "the other export is untouched");

    // Deleting the project closes its downloads.
    let (status, _) = server
        .mgmt(Method::DELETE, &format!("/management/v1/projects/{}", p.id), None)
        .await;
    assert!(status == 200 || status == 204, "{status}");
    let (status, _, _) = fetch(&b_url).await;
    assert_eq!(status, 401);
}

/// Thousands of vouchers with every field: more than one 1 MiB chunk, streamed back whole.
async fn large_export_spans_chunks(server: Server) {
    let p = server.create_project("Large").await;
    let n = 12_000u64;
    campaign_with_codes(&server, &p, "Bulk", n).await;
    let all = [
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
    let e = export(
        &server,
        &p,
        json!({"exported_object": "voucher", "parameters": {"fields": &all[..]}}),
    )
    .await;
    let e = done(&server, &p, e["id"].as_str().expect("id")).await;
    let (status, text, _) = fetch(e["result"]["url"].as_str().expect("url")).await;
    assert_eq!(status, 200);
    assert!(text.len() > 1 << 20, "only {} bytes: not several chunks", text.len());
    let (header, rows) = parse(&text);
    assert_eq!(header, all);
    assert_eq!(rows.len() as u64, n);
    let ids = column(&header, &rows, "id");
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "newest first, no row twice or torn at a chunk edge"
    );
    assert!(rows.iter().all(|r| r.len() == all.len() && r[2] == "15" && r[5] == "Bulk"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_object_exports_on_sqlite() {
    let dir = TempDir::new();
    every_object_exports(Server::sqlite(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_object_exports_on_postgres() {
    every_object_exports(Server::start(Backend::Postgres(pg_fresh_url()))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_tokens_and_tenants_on_sqlite() {
    let dir = TempDir::new();
    tokens_and_tenants(Server::sqlite(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_tokens_and_tenants_on_postgres() {
    tokens_and_tenants(Server::start(Backend::Postgres(pg_fresh_url()))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_export_on_sqlite() {
    let dir = TempDir::new();
    large_export_spans_chunks(Server::sqlite(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_export_on_postgres() {
    large_export_spans_chunks(Server::start(Backend::Postgres(pg_fresh_url()))).await;
}
