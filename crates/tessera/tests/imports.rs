//! Customer, product and SKU imports through the API: CSV uploads and JSON bulk
//! requests run as async actions, rows checked one by one (refused rows reported with
//! their row number and reason), upserted by source id so a re-run changes nothing
//! twice, resumed after a crash without importing a row twice, and kept to their project.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn upload(server: &Server, p: &Project, path: &str, csv: impl Into<Vec<u8>>) -> (u16, Value) {
    let part = reqwest::multipart::Part::bytes(csv.into()).file_name("import.csv");
    let resp = server
        .http
        .post(server.url(path))
        .header("X-App-Id", &p.app_id)
        .header("X-App-Token", &p.app_token)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .expect("upload");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Polls the action until it is DONE; returns it. Every answer on the way must be a
/// valid progress report.
async fn await_done(server: &Server, p: &Project, id: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(120);
    while Instant::now() < until {
        let (status, a) = server.call(p, Method::GET, &format!("/v1/async-actions/{id}"), None).await;
        assert_eq!(status, 200, "{a}");
        assert!(a["progress"].as_i64().is_some_and(|n| (0..=100).contains(&n)), "{a}");
        assert_ne!(a["status"], "FAILED", "{a}");
        if a["status"] == "DONE" {
            assert_eq!(a["progress"], 100, "{a}");
            return a;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("async action {id} did not finish");
}

async fn import_csv(server: &Server, p: &Project, path: &str, csv: &str, expect_status: u16) -> Value {
    let (status, body) = upload(server, p, path, csv).await;
    assert_eq!(status, expect_status, "{body}");
    let id = body["async_action_id"].as_str().expect("async_action_id").to_string();
    assert!(id.starts_with("aa_"), "{body}");
    await_done(server, p, &id).await
}

async fn total(server: &Server, p: &Project, path: &str) -> i64 {
    let (status, list) = server.call(p, Method::GET, &format!("{path}?limit=1"), None).await;
    assert_eq!(status, 200, "{list}");
    list["total"].as_i64().expect("total")
}

fn reasons(result: &Value) -> Vec<(i64, String)> {
    result["failed"]
        .as_array()
        .expect("failed")
        .iter()
        .map(|f| (f["row"].as_i64().expect("row"), f["reason"].as_str().expect("reason").to_string()))
        .collect()
}

async fn customers_csv(backend: Backend) {
    let server = Server::start(backend);
    let p = server.create_project("Imports").await;
    let other = server.create_project("Other").await;
    let (status, s) = server
        .mgmt(
            Method::POST,
            &format!("/management/v1/projects/{}/metadata-schemas", p.id),
            Some(json!({"related_object": "customer", "properties": {
                "region": {"type": "string", "optional": true, "array": false, "eq": ["EU", "US"]},
                "score": {"type": "number", "optional": true, "array": false},
            }})),
        )
        .await;
    assert_eq!(status, 200, "{s}");

    let csv = "source_id,Name,Email,region,score,Address_City\n\
               c-1,Ann,ann@example.com,EU,10,Paris\n\
               c-2,Bob,not-an-email,EU,,\n\
               c-3,Cy,cy@example.com,APAC,,\n\
               c-4,Di,di@example.com\n\
               ,Ed,ed@example.com,US,,\n\
               c-5,\"Eve, Jr.\",eve@example.com,US,7.5,Berlin\n";
    let a = import_csv(&server, &p, "/v1/customers/importCSV", csv, 202).await;
    assert_eq!(a["type"], "CUSTOMERS.IMPORT_CSV", "{a}");
    assert_eq!(a["object"], "async_action", "{a}");
    let r = &a["result"];
    assert_eq!(r["done_count"], 2, "{a}");
    assert_eq!(r["failed_count"], 4, "{a}");
    assert_eq!(r["message"], "2 customer(s) imported successfully, 4 failed.", "{a}");
    let failed = reasons(r);
    assert_eq!(
        failed.iter().map(|f| f.0).collect::<Vec<_>>(),
        vec![2, 3, 4, 5],
        "rows exclude the header: {a}"
    );
    assert!(failed[0].1.contains("email"), "{a}");
    assert!(failed[1].1.contains("region"), "{a}");
    assert!(failed[2].1.contains("malformed CSV line"), "{a}");
    assert!(failed[3].1.contains("source_id"), "{a}");
    assert_eq!(r["failed"][0]["source_id"], "c-2", "{a}");

    let (status, c1) = server.call(&p, Method::GET, "/v1/customers/c-1", None).await;
    assert_eq!(status, 200, "{c1}");
    assert_eq!(c1["name"], "Ann");
    assert_eq!(c1["email"], "ann@example.com");
    assert_eq!(
        c1["metadata"],
        json!({"region": "EU", "score": 10}),
        "cells typed by the schema: {c1}"
    );
    assert_eq!(c1["address"]["city"], "Paris");
    let (_, c5) = server.call(&p, Method::GET, "/v1/customers/c-5", None).await;
    assert_eq!(c5["name"], "Eve, Jr.", "{c5}");
    assert_eq!(c5["metadata"]["score"], 7.5, "{c5}");
    assert_eq!(total(&server, &p, "/v1/customers").await, 2);
    // Refused rows wrote nothing.
    for sid in ["c-2", "c-3", "c-4"] {
        let (status, _) = server.call(&p, Method::GET, &format!("/v1/customers/{sid}"), None).await;
        assert_eq!(status, 404, "{sid}");
    }

    // The same file again: the same customers, updated, not duplicated.
    let again = import_csv(&server, &p, "/v1/customers/importCSV", csv, 202).await;
    assert_eq!(again["result"]["done_count"], 2, "{again}");
    assert_eq!(again["result"]["failed_count"], 4, "{again}");
    assert_eq!(total(&server, &p, "/v1/customers").await, 2);
    let (_, c1b) = server.call(&p, Method::GET, "/v1/customers/c-1", None).await;
    assert_eq!(c1b["id"], c1["id"], "{c1b}");
    assert_eq!(c1b["created_at"], c1["created_at"], "{c1b}");

    // New values update the customers; metadata columns set their properties and keep
    // the others, empty cells leave fields alone.
    let update = "source_id,name,email,region\nc-1,Ann B,,US\nc-5,Eve,,EU\n";
    let u = import_csv(&server, &p, "/v1/customers/importCSV", update, 202).await;
    assert_eq!(u["result"]["done_count"], 2, "{u}");
    assert_eq!(total(&server, &p, "/v1/customers").await, 2);
    let (_, c1c) = server.call(&p, Method::GET, "/v1/customers/c-1", None).await;
    assert_eq!(c1c["name"], "Ann B", "{c1c}");
    assert_eq!(c1c["email"], "ann@example.com", "{c1c}");
    assert_eq!(c1c["metadata"], json!({"region": "US", "score": 10}), "{c1c}");
    assert!(c1c["updated_at"].is_string(), "{c1c}");

    // Another project sees none of it.
    assert_eq!(total(&server, &other, "/v1/customers").await, 0);
    let (status, _) = server.call(&other, Method::GET, "/v1/customers/c-1", None).await;
    assert_eq!(status, 404);
    let id = a["id"].as_str().expect("id");
    let (status, e) = server.call(&other, Method::GET, &format!("/v1/async-actions/{id}"), None).await;
    assert_envelope(status, &e, "not_found");
    // The same source ids imported into the other project are its own customers.
    let o = import_csv(&server, &other, "/v1/customers/importCSV", update, 202).await;
    assert_eq!(o["result"]["done_count"], 2, "{o}");
    let (_, oc1) = server.call(&other, Method::GET, "/v1/customers/c-1", None).await;
    assert_ne!(oc1["id"], c1["id"], "{oc1}");
    assert_eq!(oc1["metadata"], json!({"region": "US"}), "{oc1}");

    // Files that cannot be imported at all are refused before anything starts.
    let (status, e) = upload(&server, &p, "/v1/customers/importCSV", "name,email\nAnn,ann@example.com\n").await;
    assert_envelope(status, &e, "invalid_payload");
    assert!(e["details"].as_str().is_some_and(|d| d.contains("source_id")), "{e}");
    let (status, e) = upload(&server, &p, "/v1/customers/importCSV", "").await;
    assert_envelope(status, &e, "invalid_payload");
    let resp = server
        .http
        .post(server.url("/v1/customers/importCSV"))
        .header("X-App-Id", &p.app_id)
        .header("X-App-Token", &p.app_token)
        .multipart(reqwest::multipart::Form::new().text("other", "x"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 400);
    // No key, no import.
    let resp = server
        .http
        .post(server.url("/v1/customers/importCSV"))
        .multipart(reqwest::multipart::Form::new().text("file", "source_id\nx\n"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test]
async fn customers_csv_on_sqlite() {
    let dir = TempDir::new();
    customers_csv(Backend::Sqlite(dir.0.clone())).await;
}

#[tokio::test]
async fn customers_csv_on_postgres() {
    customers_csv(Backend::Postgres(pg_fresh_url())).await;
}

async fn customers_bulk(backend: Backend) {
    let server = Server::start(backend);
    let p = server.create_project("Bulk").await;
    let body = json!([
        {"source_id": "b-1", "name": "Ann", "email": "ann@example.com", "metadata": {"lang": "en", "test": true},
         "address": {"city": "New York", "country": "US"}, "birthdate": "1990-02-02"},
        {"name": "No source id"},
        {"source_id": "b-3", "email": "nope"},
        {"source_id": "b-4", "name": 42},
        {"source_id": "b-5", "phone": "+1 555"},
    ]);
    let (status, r) = server.call(&p, Method::POST, "/v1/customers/bulk/async", Some(body)).await;
    assert_eq!(status, 202, "{r}");
    let a = await_done(&server, &p, r["async_action_id"].as_str().expect("id")).await;
    assert_eq!(a["type"], "CUSTOMERS.BULK_UPDATE", "{a}");
    assert_eq!(a["operation_status"], "SUCCESS", "{a}");
    let res = &a["result"];
    assert_eq!(
        (res["done_count"].as_i64(), res["failed_count"].as_i64()),
        (Some(2), Some(3)),
        "{a}"
    );
    let errors = res["errors"].as_array().expect("errors");
    assert_eq!(
        errors.iter().map(|e| e["source_id"].clone()).collect::<Vec<_>>(),
        vec![json!(""), json!("b-3"), json!("b-4")],
        "{a}"
    );
    assert!(
        errors
            .iter()
            .all(|e| e["key"] == "invalid_payload" && e["details"].is_string() && e["message"].is_string()),
        "{a}"
    );
    assert!(res["reports"].is_array(), "{a}");
    let (_, b1) = server.call(&p, Method::GET, "/v1/customers/b-1", None).await;
    assert_eq!(b1["address"]["city"], "New York", "{b1}");
    assert_eq!(b1["metadata"]["test"], true, "{b1}");

    // A second request updates by source id.
    let (status, r) = server
        .call(
            &p,
            Method::POST,
            "/v1/customers/bulk/async",
            Some(json!([{"source_id": "b-1", "name": "Ann B"}, {"source_id": "b-5", "metadata": {"x": 1}}])),
        )
        .await;
    assert_eq!(status, 202, "{r}");
    let a = await_done(&server, &p, r["async_action_id"].as_str().expect("id")).await;
    assert_eq!(a["result"]["done_count"], 2, "{a}");
    assert_eq!(total(&server, &p, "/v1/customers").await, 2);
    let (_, b1b) = server.call(&p, Method::GET, "/v1/customers/b-1", None).await;
    assert_eq!(
        (b1b["id"].clone(), b1b["name"].clone()),
        (b1["id"].clone(), json!("Ann B")),
        "{b1b}"
    );
    assert_eq!(b1b["email"], "ann@example.com", "{b1b}");

    let (status, e) = server.call(&p, Method::POST, "/v1/customers/bulk/async", Some(json!([]))).await;
    assert_envelope(status, &e, "invalid_payload");
    let (status, e) = server
        .call(&p, Method::POST, "/v1/customers/bulk/async", Some(json!({"source_id": "x"})))
        .await;
    assert_envelope(status, &e, "invalid_payload");
}

#[tokio::test]
async fn customers_bulk_on_sqlite() {
    let dir = TempDir::new();
    customers_bulk(Backend::Sqlite(dir.0.clone())).await;
}

#[tokio::test]
async fn customers_bulk_on_postgres() {
    customers_bulk(Backend::Postgres(pg_fresh_url())).await;
}

async fn products_and_skus(backend: Backend) {
    let server = Server::start(backend);
    let p = server.create_project("Catalog").await;
    let (status, s) = server
        .mgmt(
            Method::POST,
            &format!("/management/v1/projects/{}/metadata-schemas", p.id),
            Some(json!({"related_object": "product", "properties": {
                "vendor": {"type": "string", "optional": false, "array": false, "eq": ["Vendor 1", "Vendor 2"]},
            }})),
        )
        .await;
    assert_eq!(status, 200, "{s}");
    let csv = "name,source_id,price,attributes,image_url,vendor\n\
               Phone,p-1,220000,\"color,memory\",https://example.com/p.png,Vendor 1\n\
               Tablet,p-2,abc,,,Vendor 1\n\
               Laptop,p-3,99000,,,Vendor 3\n\
               ,p-4,100,,,Vendor 2\n\
               Watch,p-5,5000,,,Vendor 2\n";
    let a = import_csv(&server, &p, "/v1/products/importCSV", csv, 200).await;
    assert_eq!(a["type"], "PRODUCTS.IMPORT_CSV", "{a}");
    let r = &a["result"];
    assert_eq!((r["done_count"].as_i64(), r["failed_count"].as_i64()), (Some(2), Some(3)), "{a}");
    assert_eq!(r["message"], "2 product(s) imported successfully, 3 failed.", "{a}");
    let failed = reasons(r);
    assert_eq!(failed.iter().map(|f| f.0).collect::<Vec<_>>(), vec![2, 3, 4], "{a}");
    assert!(failed[0].1.contains("price"), "{a}");
    assert!(failed[1].1.contains("vendor"), "{a}");
    assert!(failed[2].1.contains("name"), "{a}");
    let (status, p1) = server.call(&p, Method::GET, "/v1/products/p-1", None).await;
    assert_eq!(status, 200, "{p1}");
    assert_eq!(p1["price"], 220000, "{p1}");
    assert_eq!(p1["attributes"], json!(["color", "memory"]), "{p1}");
    assert_eq!(p1["metadata"], json!({"vendor": "Vendor 1"}), "{p1}");

    // Re-run: updated in place.
    let a = import_csv(
        &server,
        &p,
        "/v1/products/importCSV",
        "source_id,name,vendor\np-1,Phone 2,Vendor 2\n",
        200,
    )
    .await;
    assert_eq!(a["result"]["done_count"], 1, "{a}");
    assert_eq!(total(&server, &p, "/v1/products").await, 2);
    let (_, p1b) = server.call(&p, Method::GET, "/v1/products/p-1", None).await;
    assert_eq!(
        (p1b["id"].clone(), p1b["name"].clone(), p1b["price"].clone()),
        (p1["id"].clone(), json!("Phone 2"), json!(220000)),
        "{p1b}"
    );

    // SKUs of imported products, by the product's source id or id.
    let p5_id = server.call(&p, Method::GET, "/v1/products/p-5", None).await.1["id"]
        .as_str()
        .expect("id")
        .to_string();
    let skus = format!(
        "product_id,sku,source_id,price,attributes,colour\n\
         p-1,Red phone,s-1,230000,\"{{'color':'red'}}\",red\n\
         {p5_id},Small watch,s-2,5100,,\n\
         p-9,Ghost,s-3,1,,\n\
         p-1,No source,,1,,\n"
    );
    let a = import_csv(&server, &p, "/v1/skus/importCSV", &skus, 200).await;
    assert_eq!(a["type"], "SKUS.IMPORT_CSV", "{a}");
    assert_eq!(
        (a["result"]["done_count"].as_i64(), a["result"]["failed_count"].as_i64()),
        (Some(2), Some(2)),
        "{a}"
    );
    assert_eq!(a["result"]["message"], "2 sku(s) imported successfully, 2 failed.", "{a}");
    let failed = reasons(&a["result"]);
    assert!(failed[0].1.contains("p-9"), "{a}");
    assert!(failed[1].1.contains("source_id"), "{a}");
    let (status, s1) = server.call(&p, Method::GET, "/v1/skus/s-1", None).await;
    assert_eq!(status, 200, "{s1}");
    assert_eq!(s1["product_id"], p1["id"], "{s1}");
    assert_eq!(s1["attributes"], json!({"color": "red"}), "{s1}");
    assert_eq!(s1["metadata"], json!({"colour": "red"}), "{s1}");
    let again = import_csv(&server, &p, "/v1/skus/importCSV", &skus, 200).await;
    assert_eq!(again["result"]["done_count"], 2, "{again}");
    let (_, list) = server.call(&p, Method::GET, "/v1/products/p-1/skus", None).await;
    assert_eq!(list["total"], 1, "{list}");
    let (status, e) = upload(&server, &p, "/v1/skus/importCSV", "sku,source_id\nx,y\n").await;
    assert_envelope(status, &e, "invalid_payload");

    // Products in bulk (JSON).
    let (status, r) = server
        .call(
            &p,
            Method::POST,
            "/v1/products/bulk/async",
            Some(json!([
                {"source_id": "p-1", "name": "Phone 3", "metadata": {"vendor": "Vendor 1"}},
                {"source_id": "p-6", "name": "Pen", "price": 100, "metadata": {"vendor": "Vendor 2"}},
                {"source_id": "p-7", "name": "Bad", "metadata": {"vendor": "Nobody"}},
            ])),
        )
        .await;
    assert_eq!(status, 202, "{r}");
    let a = await_done(&server, &p, r["async_action_id"].as_str().expect("id")).await;
    assert_eq!(a["type"], "PRODUCTS.BULK_UPDATE", "{a}");
    assert_eq!(
        (a["result"]["done_count"].as_i64(), a["result"]["failed_count"].as_i64()),
        (Some(2), Some(1)),
        "{a}"
    );
    assert_eq!(a["result"]["errors"][0]["key"], "metadata_validation_failed", "{a}");
    assert_eq!(a["result"]["errors"][0]["source_id"], "p-7", "{a}");
    assert_eq!(total(&server, &p, "/v1/products").await, 3);
}

#[tokio::test]
async fn products_and_skus_on_sqlite() {
    let dir = TempDir::new();
    products_and_skus(Backend::Sqlite(dir.0.clone())).await;
}

#[tokio::test]
async fn products_and_skus_on_postgres() {
    products_and_skus(Backend::Postgres(pg_fresh_url())).await;
}

/// A server killed in the middle of an import resumes it when it starts again, and the
/// import ends with every row imported exactly once.
#[tokio::test]
async fn an_interrupted_import_resumes_without_importing_a_row_twice() {
    const ROWS: usize = 40_000;
    let dir = TempDir::new();
    let mut server = Server::sqlite(&dir);
    let p = server.create_project("Resume").await;
    let mut csv = String::from("source_id,name,email,region\n");
    for i in 0..ROWS {
        // Every 1000th row is refused (bad email), to check the failure counts too.
        let email = if i % 1000 == 999 {
            "broken".to_string()
        } else {
            format!("r{i}@example.com")
        };
        csv.push_str(&format!("r-{i:06},Name {i},{email},EU\n"));
    }
    let (status, body) = upload(&server, &p, "/v1/customers/importCSV", csv).await;
    assert_eq!(status, 202, "{body}");
    let id = body["async_action_id"].as_str().expect("id").to_string();
    // Kill it once some chunks are in (or at once, if the import is already past that).
    let until = Instant::now() + Duration::from_secs(60);
    let mut interrupted_at = None;
    while Instant::now() < until {
        let (_, a) = server.call(&p, Method::GET, &format!("/v1/async-actions/{id}"), None).await;
        if a["status"] == "DONE" {
            break;
        }
        if a["progress"].as_i64().unwrap_or(0) > 0 {
            interrupted_at = a["progress"].as_i64();
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("killed at progress {interrupted_at:?}");
    server.child.kill().expect("kill -9");
    let _ = server.child.wait();
    drop(server);
    let server = Server::sqlite(&dir);
    let a = await_done(&server, &p, &id).await;
    let r = &a["result"];
    assert_eq!(r["done_count"], ROWS as i64 - 40, "interrupted at {interrupted_at:?}: {a}");
    assert_eq!(r["failed_count"], 40, "{a}");
    assert_eq!(r["failed"].as_array().map(Vec::len), Some(40), "{a}");
    assert_eq!(r["failed"][0]["row"], 1000, "{a}");
    assert_eq!(total(&server, &p, "/v1/customers").await, ROWS as i64 - 40);
    let (_, c) = server.call(&p, Method::GET, "/v1/customers/r-039998", None).await;
    assert_eq!(c["email"], "r39998@example.com", "{c}");
}
