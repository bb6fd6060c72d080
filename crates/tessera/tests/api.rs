//! End-to-end tests against the real binary.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

async fn walk(server: &Server) {
    let p = server.create_project("Walk").await;
    let (status, created) = server
        .call(
            &p,
            Method::POST,
            "/v1/customers",
            Some(json!({"source_id": "walker", "name": "Wanda", "email": "wanda@example.com", "metadata": {"tier": "gold"}})),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["object"], "customer");
    let id = created["id"].as_str().expect("id");
    for key in [id, "walker"] {
        let (status, read) = server.call(&p, Method::GET, &format!("/v1/customers/{key}"), None).await;
        assert_eq!(status, 200);
        assert_eq!(read["id"], created["id"]);
        assert_eq!(read["email"], "wanda@example.com");
        assert_eq!(read["metadata"]["tier"], "gold");
    }
    let (status, list) = server.call(&p, Method::GET, "/v1/customers", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["total"], 1);
    assert_eq!(list["customers"][0]["id"], created["id"]);
}

#[tokio::test]
async fn walk_project_customer_on_sqlite() {
    let dir = TempDir::new();
    let server = Server::sqlite(&dir);
    walk(&server).await;
}

#[tokio::test]
async fn walk_project_customer_on_postgres() {
    let server = Server::start(Backend::Postgres(pg_fresh_url()));
    walk(&server).await;
    let (status, ready) = server
        .call(&server.create_project("R").await, Method::GET, "/health/ready", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(ready["engine"], "postgres");
}

/// Every resource endpoint called with another project's ids answers 404, and lists
/// never show another project's rows.
#[tokio::test]
async fn other_projects_ids_are_not_found() {
    let dir = TempDir::new();
    let server = Server::sqlite(&dir);
    let a = server.create_project("A").await;
    let b = server.create_project("B").await;
    let (_, cust) = server
        .call(&a, Method::POST, "/v1/customers", Some(json!({"source_id": "a-cust"})))
        .await;
    let (_, prod) = server
        .call(&a, Method::POST, "/v1/products", Some(json!({"source_id": "a-prod", "name": "P"})))
        .await;
    let (_, sku) = server
        .call(&a, Method::POST, "/v1/products/a-prod/skus", Some(json!({"source_id": "a-sku"})))
        .await;
    let (_, order) = server
        .call(&a, Method::POST, "/v1/orders", Some(json!({"source_id": "a-order", "amount": 100})))
        .await;
    let (cust, prod, sku, order) = (
        cust["id"].as_str().expect("customer").to_string(),
        prod["id"].as_str().expect("product").to_string(),
        sku["id"].as_str().expect("sku").to_string(),
        order["id"].as_str().expect("order").to_string(),
    );
    let calls: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/v1/customers/{cust}"), None),
        (Method::GET, "/v1/customers/a-cust".into(), None),
        (Method::PUT, format!("/v1/customers/{cust}"), Some(json!({"name": "x"}))),
        (Method::DELETE, format!("/v1/customers/{cust}"), None),
        (Method::POST, "/v1/customers".into(), Some(json!({"id": cust, "name": "hijack"}))),
        (Method::GET, format!("/v1/products/{prod}"), None),
        (Method::PUT, format!("/v1/products/{prod}"), Some(json!({"name": "x"}))),
        (Method::DELETE, format!("/v1/products/{prod}"), None),
        (Method::GET, format!("/v1/products/{prod}/skus"), None),
        (Method::POST, format!("/v1/products/{prod}/skus"), Some(json!({"sku": "x"}))),
        (Method::GET, format!("/v1/products/{prod}/skus/{sku}"), None),
        (Method::PUT, format!("/v1/products/{prod}/skus/{sku}"), Some(json!({"sku": "x"}))),
        (Method::DELETE, format!("/v1/products/{prod}/skus/{sku}"), None),
        (Method::GET, format!("/v1/skus/{sku}"), None),
        (Method::GET, format!("/v1/orders/{order}"), None),
        (Method::GET, "/v1/orders/a-order".into(), None),
        (Method::PUT, format!("/v1/orders/{order}"), Some(json!({"status": "PAID"}))),
        (Method::POST, "/v1/orders".into(), Some(json!({"id": order, "amount": 1}))),
        (Method::POST, "/v1/orders".into(), Some(json!({"customer_id": cust}))),
    ];
    for (method, path, body) in calls {
        let (status, resp) = server.call(&b, method.clone(), &path, body).await;
        assert_eq!(status, 404, "{method} {path} as another project: {resp}");
        assert_envelope(404, &resp, "not_found");
    }
    for (path, key) in [
        ("/v1/customers", "customers"),
        ("/v1/products", "products"),
        ("/v1/orders", "orders"),
    ] {
        let (status, resp) = server.call(&b, Method::GET, path, None).await;
        assert_eq!(status, 200);
        assert_eq!(resp["total"], 0, "{path}: {resp}");
        assert_eq!(resp[key].as_array().map(Vec::len), Some(0));
    }
    // And A still sees everything unchanged.
    let (status, still) = server.call(&a, Method::GET, &format!("/v1/customers/{cust}"), None).await;
    assert_eq!(status, 200);
    assert!(still["name"].is_null());
}

#[tokio::test]
async fn errors_use_the_envelope() {
    let dir = TempDir::new();
    let server = Server::sqlite(&dir);
    let p = server.create_project("E").await;
    let http = &server.http;

    let r = http.get(server.url("/no/such/route")).send().await.expect("req");
    let rid = r
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .expect("x-request-id");
    let body: Value = r.json().await.expect("json");
    assert_envelope(404, &body, "not_found");
    assert_eq!(body["request_id"], rid.as_str());

    let (status, body) = server.call(&p, Method::PATCH, "/v1/customers", None).await;
    assert_eq!(status, 405);
    assert_envelope(405, &body, "method_not_allowed");

    let r = server
        .send(&p, Method::POST, "/v1/customers", None, &[("content-type", "text/plain")])
        .await;
    assert_eq!(r.status().as_u16(), 415);
    assert_envelope(415, &r.json().await.expect("json"), "unsupported_media_type");

    // The server answers 413 before reading the body and closes the connection, so this
    // request uses a client of its own rather than poisoning the shared pool.
    let big = json!({"name": "x".repeat(2 * 1024 * 1024)});
    let r = reqwest::Client::new()
        .post(server.url("/v1/customers"))
        .header("X-App-Id", &p.app_id)
        .header("X-App-Token", &p.app_token)
        .json(&big)
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 413);
    assert_envelope(413, &r.json().await.expect("json"), "payload_too_large");

    let r = http
        .post(server.url("/v1/customers"))
        .header("X-App-Id", &p.app_id)
        .header("X-App-Token", &p.app_token)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 400);
    assert_envelope(400, &r.json().await.expect("json"), "invalid_payload");

    let deep = "[".repeat(100) + &"]".repeat(100);
    let r = http
        .post(server.url("/v1/customers"))
        .header("X-App-Id", &p.app_id)
        .header("X-App-Token", &p.app_token)
        .header("content-type", "application/json")
        .body(format!("{{\"metadata\": {{\"a\": {deep}}}}}"))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.expect("json");
    assert!(body["details"].as_str().is_some_and(|d| d.contains("deeper")), "{body}");

    let (status, body) = server.call(&p, Method::POST, "/v1/orders", Some(json!({"amount": "ten"}))).await;
    assert_eq!(status, 400);
    assert!(
        body["details"].as_str().is_some_and(|d| d.contains("amount")),
        "names the field: {body}"
    );

    let (status, body) = server.call(&p, Method::GET, "/v1/customers?limit=1000", None).await;
    assert_eq!(status, 400);
    assert_envelope(400, &body, "invalid_query_params");

    let (status, body) = server
        .call(
            &p,
            Method::GET,
            "/v1/customers?created_at[after]=2020-01-01T00:00:00Z&created_at[before]=2024-01-01T00:00:00Z",
            None,
        )
        .await;
    assert_eq!(status, 400, "date range cap: {body}");

    // 401 looks the same whatever part of the credentials was wrong.
    let mut bodies = Vec::new();
    for (id, token) in [(p.app_id.as_str(), "wrong"), ("app_unknown", p.app_token.as_str()), ("", "")] {
        let r = http
            .get(server.url("/v1/customers"))
            .header("X-App-Id", id)
            .header("X-App-Token", token)
            .send()
            .await
            .expect("req");
        assert_eq!(r.status().as_u16(), 401);
        let mut b: Value = r.json().await.expect("json");
        assert_envelope(401, &b, "unauthorized");
        b["request_id"] = Value::Null;
        bodies.push(b);
    }
    let r = http.get(server.url("/v1/customers")).send().await.expect("req");
    let mut b: Value = r.json().await.expect("json");
    b["request_id"] = Value::Null;
    bodies.push(b);
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "401 bodies differ: {bodies:?}");
    // A client-side key does not open the server-side API, nor management.
    let r = http
        .get(server.url("/v1/customers"))
        .header("X-App-Id", &p.client_id)
        .header("X-App-Token", &p.client_token)
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 401);
    let r = http
        .get(server.url("/management/v1/projects"))
        .header("X-Management-Id", MGMT_ID)
        .header("X-Management-Token", "nope")
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test]
async fn client_keys_need_a_trusted_origin() {
    let dir = TempDir::new();
    let server = Server::sqlite(&dir);
    let p = server.create_project("C").await;
    let (status, _) = server
        .mgmt(
            Method::PUT,
            &format!("/management/v1/projects/{}", p.id),
            Some(json!({"client_trusted_domains": ["https://shop.example"]})),
        )
        .await;
    assert_eq!(status, 200);
    let get = |origin: &'static str| {
        let req = server
            .http
            .get(server.url("/client/v1/anything"))
            .header("X-Client-Application-Id", &p.client_id)
            .header("X-Client-Token", &p.client_token)
            .header("Origin", origin);
        async move { req.send().await.expect("req").status().as_u16() }
    };
    assert_eq!(get("https://evil.example").await, 401);
    // Authenticated: the unknown route is a 404, not a 401.
    assert_eq!(get("https://shop.example").await, 404);
    let r = server
        .http
        .get(server.url("/client/v1/anything"))
        .header("X-Client-Application-Id", &p.app_id)
        .header("X-Client-Token", &p.app_token)
        .header("Origin", "https://shop.example")
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 401, "a server key is not a client key");
}

#[tokio::test]
async fn revoked_keys_are_refused_at_once() {
    let dir = TempDir::new();
    let server = Server::sqlite(&dir);
    let p = server.create_project("K").await;
    let (status, key) = server
        .mgmt(
            Method::POST,
            &format!("/management/v1/projects/{}/api-keys", p.id),
            Some(json!({"name": "pos"})),
        )
        .await;
    assert_eq!(status, 200, "{key}");
    let pos = Project {
        app_id: key["app_id"].as_str().expect("id").into(),
        app_token: key["app_token"].as_str().expect("token").into(),
        ..p.clone()
    };
    assert_eq!(server.call(&pos, Method::GET, "/v1/customers", None).await.0, 200);
    let (status, list) = server
        .mgmt(Method::GET, &format!("/management/v1/projects/{}/api-keys", p.id), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["total"], 3);
    assert!(
        list["data"].as_array().expect("data").iter().all(|k| k.get("app_token").is_none()),
        "tokens are never listed"
    );
    let (status, _) = server
        .mgmt(
            Method::DELETE,
            &format!("/management/v1/projects/{}/api-keys/{}", p.id, pos.app_id),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(server.call(&pos, Method::GET, "/v1/customers", None).await.0, 401);
    assert_eq!(
        server.call(&p, Method::GET, "/v1/customers", None).await.0,
        200,
        "other keys keep working"
    );
    let (status, _) = server
        .mgmt(Method::DELETE, &format!("/management/v1/projects/{}", p.id), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        server.call(&p, Method::GET, "/v1/customers", None).await.0,
        401,
        "deleting a project revokes its keys"
    );
}

#[tokio::test]
async fn management_projects_crud() {
    let dir = TempDir::new();
    let server = Server::sqlite(&dir);
    let (status, body) = server
        .mgmt(
            Method::POST,
            "/management/v1/projects",
            Some(json!({"name": "M", "timezone": "Europe/Warsaw", "currency": "PLN"})),
        )
        .await;
    assert_eq!(status, 200);
    let id = body["id"].as_str().expect("id").to_string();
    for field in [
        "cluster_id",
        "api_version",
        "case_sensitive_codes",
        "client_trusted_domains",
        "api_usage_notifications",
        "webhooks_callout_notifications",
        "is_sandbox",
        "webhook_version",
    ] {
        assert!(body.get(field).is_some(), "missing {field}");
    }
    let (status, got) = server.mgmt(Method::GET, &format!("/management/v1/projects/{id}"), None).await;
    assert_eq!(status, 200);
    assert!(got.get("server_side_key").is_none(), "keys are shown only at creation");
    assert_eq!(got["timezone"], "Europe/Warsaw");
    let (status, upd) = server
        .mgmt(
            Method::PUT,
            &format!("/management/v1/projects/{id}"),
            Some(json!({"description": "d"})),
        )
        .await;
    assert_eq!((status, upd["description"].as_str()), (200, Some("d")));
    let (status, list) = server.mgmt(Method::GET, "/management/v1/projects", None).await;
    assert_eq!((status, list["total"].as_u64()), (200, Some(1)));
    let (status, bad) = server
        .mgmt(
            Method::POST,
            "/management/v1/projects",
            Some(json!({"name": "x", "timezone": "Mars/Olympus"})),
        )
        .await;
    assert_eq!(status, 400);
    assert_envelope(400, &bad, "invalid_payload");
    let (status, bad) = server.mgmt(Method::POST, "/management/v1/projects", Some(json!({}))).await;
    assert_eq!(status, 400, "{bad}");
    let (status, _) = server.mgmt(Method::GET, "/management/v1/projects/proj_missing", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn products_skus_and_orders() {
    let dir = TempDir::new();
    let server = Server::sqlite(&dir);
    let p = server.create_project("P").await;
    let (status, prod) = server
        .call(
            &p,
            Method::POST,
            "/v1/products",
            Some(json!({"source_id": "tee", "name": "Tee", "price": 2500, "attributes": ["color"]})),
        )
        .await;
    assert_eq!(status, 200, "{prod}");
    assert_eq!(prod["object"], "product");
    assert_eq!(prod["skus"]["total"], 0);
    let (status, sku) = server
        .call(
            &p,
            Method::POST,
            "/v1/products/tee/skus",
            Some(json!({"source_id": "tee-red", "sku": "Red", "attributes": {"color": "red"}})),
        )
        .await;
    assert_eq!(status, 200, "{sku}");
    assert_eq!(sku["object"], "sku");
    assert_eq!(sku["product_id"], prod["id"]);
    let (_, skus) = server.call(&p, Method::GET, "/v1/products/tee/skus", None).await;
    assert_eq!((skus["data_ref"].as_str(), skus["total"].as_u64()), (Some("skus"), Some(1)));
    let (_, got) = server.call(&p, Method::GET, "/v1/skus/tee-red", None).await;
    assert_eq!(got["id"], sku["id"]);
    let (status, order) = server
        .call(
            &p,
            Method::POST,
            "/v1/orders",
            Some(json!({
                "source_id": "o-1",
                "customer": {"source_id": "buyer", "email": "b@example.com"},
                "items": [{"product_id": prod["id"], "quantity": 2, "price": 2500}, {"sku_id": sku["id"], "quantity": 1, "price": 3000}]
            })),
        )
        .await;
    assert_eq!(status, 200, "{order}");
    assert_eq!((order["amount"].as_i64(), order["total_amount"].as_i64()), (Some(8000), Some(8000)));
    assert_eq!(order["status"], "CREATED");
    assert_eq!(order["items"][0]["object"], "order_item");
    assert_eq!(order["customer"]["object"], "customer");
    let (status, buyer) = server.call(&p, Method::GET, "/v1/customers/buyer", None).await;
    assert_eq!(status, 200);
    assert_eq!(order["customer_id"], buyer["id"]);
    let (status, paid) = server
        .call(&p, Method::PUT, "/v1/orders/o-1", Some(json!({"status": "PAID"})))
        .await;
    assert_eq!(
        (status, paid["status"].as_str(), paid["amount"].as_i64()),
        (200, Some("PAID"), Some(8000))
    );
    // A bare reference to the customer in another order does not rewrite the customer.
    let (_, o2) = server
        .call(
            &p,
            Method::POST,
            "/v1/orders",
            Some(json!({"customer": {"source_id": "buyer"}, "amount": 2000})),
        )
        .await;
    assert_eq!(o2["customer_id"], buyer["id"]);
    let (_, buyer_after) = server.call(&p, Method::GET, "/v1/customers/buyer", None).await;
    assert_eq!(buyer_after["updated_at"], buyer["updated_at"]);
    assert_eq!(buyer_after["email"], "b@example.com");
    let orders = &buyer_after["summary"]["orders"];
    assert_eq!(
        (orders["total_count"].as_i64(), orders["total_amount"].as_i64()),
        (Some(2), Some(10000))
    );
    assert_eq!(
        (orders["average_amount"].as_i64(), orders["last_order_amount"].as_i64()),
        (Some(5000), Some(2000))
    );
    let (status, _) = server
        .call(&p, Method::POST, "/v1/orders", Some(json!({"status": "SHIPPED"})))
        .await;
    assert_eq!(status, 400, "unknown status is refused");
    let (status, _) = server.call(&p, Method::DELETE, "/v1/products/tee", None).await;
    assert_eq!(status, 204);
    assert_eq!(server.call(&p, Method::GET, "/v1/skus/tee-red", None).await.0, 404);
}

async fn post_idem(server: &Server, p: &Project, key: &str, body: Value) -> (u16, Option<String>, String) {
    let r = server
        .send(p, Method::POST, "/v1/customers", Some(body), &[("Idempotency-Key", key)])
        .await;
    let status = r.status().as_u16();
    let replayed = r
        .headers()
        .get("idempotent-replayed")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, replayed, r.text().await.expect("body"))
}

#[tokio::test]
async fn idempotency_replays_refuses_and_survives_restart() {
    let dir = TempDir::new();
    let server = Server::sqlite(&dir);
    let p = server.create_project("I").await;
    let body = json!({"name": "Ida", "email": "ida@example.com"});
    let (s1, r1, b1) = post_idem(&server, &p, "key-1", body.clone()).await;
    assert_eq!((s1, r1), (200, None));
    let (s2, r2, b2) = post_idem(&server, &p, "key-1", body.clone()).await;
    assert_eq!((s2, r2.as_deref()), (200, Some("true")));
    assert_eq!(b1, b2, "the stored response is replayed byte for byte");
    let (_, list) = server.call(&p, Method::GET, "/v1/customers", None).await;
    assert_eq!(list["total"], 1, "the replay did not create a second customer");
    let (s3, _, b3) = post_idem(&server, &p, "key-1", json!({"name": "Other"})).await;
    assert_eq!(s3, 422);
    assert_envelope(422, &serde_json::from_str(&b3).expect("json"), "idempotency_key_reused");
    // Another project may use the same key independently.
    let q = server.create_project("J").await;
    assert_eq!(post_idem(&server, &q, "key-1", body.clone()).await.1, None);
    // Invalid keys are refused.
    assert_eq!(post_idem(&server, &p, &"k".repeat(300), body.clone()).await.0, 400);

    // Restart: the record survives.
    assert!(server.stop().success(), "clean exit on SIGTERM");
    let db = dir.0.join("tessera.db");
    let five_minutes_ago = tessera_domain::time::format(
        tessera_domain::time::now()
            .checked_sub(std::time::Duration::from_secs(300))
            .expect("time"),
    );
    {
        let conn = rusqlite::Connection::open(&db).expect("open db");
        // One whose effect committed but whose process died before storing the response:
        // it must never run again.
        conn.execute(
            "INSERT INTO idempotency (scope, idem_key, request_hash, state, created_at) VALUES (?1, 'applied', 'h', 'applied', ?2)",
            rusqlite::params![p.id, five_minutes_ago],
        )
        .expect("seed applied");
        // One whose process died long ago: a retry takes it over.
        let old = "2020-01-01T00:00:00.000Z";
        conn.execute(
            "INSERT INTO idempotency (scope, idem_key, request_hash, state, created_at) VALUES (?1, 'abandoned', 'h', 'in_flight', ?2)",
            rusqlite::params![p.id, old],
        )
        .expect("seed stale");
    }
    let server = Server::sqlite(&dir);
    {
        // A request with this key is in flight in this server (it began after the start;
        // records from before the start are known to be abandoned, see the crash test).
        let conn = rusqlite::Connection::open(&db).expect("open db");
        conn.busy_timeout(std::time::Duration::from_secs(5)).expect("busy timeout");
        conn.execute(
            "INSERT INTO idempotency (scope, idem_key, request_hash, state, created_at) VALUES (?1, 'busy', 'h', 'in_flight', ?2)",
            rusqlite::params![p.id, tessera_domain::time::now_string()],
        )
        .expect("seed in-flight");
    }
    let (s4, r4, b4) = post_idem(&server, &p, "key-1", body.clone()).await;
    assert_eq!((s4, r4.as_deref()), (200, Some("true")));
    assert_eq!(b4, b1);
    let (s5, _, b5) = post_idem(&server, &p, "busy", body.clone()).await;
    assert_eq!(s5, 409);
    assert_envelope(409, &serde_json::from_str(&b5).expect("json"), "idempotency_key_in_flight");
    let (s6, r6, _) = post_idem(&server, &p, "abandoned", json!({"name": "New"})).await;
    assert_eq!((s6, r6), (200, None), "an expired record is forgotten");
    let (s7, _, b7) = post_idem(&server, &p, "applied", body.clone()).await;
    assert_eq!(s7, 409);
    assert_envelope(409, &serde_json::from_str(&b7).expect("json"), "idempotency_key_applied");
}

#[tokio::test]
async fn concurrent_retries_with_one_key_apply_once() {
    let dir = TempDir::new();
    let server = std::sync::Arc::new(Server::sqlite(&dir));
    let p = server.create_project("R").await;
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let (server, p) = (server.clone(), p.clone());
        tasks.push(tokio::spawn(async move {
            post_idem(&server, &p, "same", json!({"source_id": "once", "name": "Once"})).await.0
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.expect("join"));
    }
    assert!(statuses.iter().all(|s| *s == 200 || *s == 409), "{statuses:?}");
    assert!(statuses.contains(&200));
    let (_, list) = server.call(&p, Method::GET, "/v1/customers", None).await;
    assert_eq!(list["total"], 1);
}

#[tokio::test]
async fn health_metrics_and_openapi() {
    let dir = TempDir::new();
    let server = Server::sqlite(&dir);
    let p = server.create_project("H").await;
    server.call(&p, Method::POST, "/v1/customers", Some(json!({"name": "m"}))).await;
    let live = server.http.get(server.url("/health/live")).send().await.expect("req");
    assert_eq!(live.status().as_u16(), 200);
    let ready: Value = server
        .http
        .get(server.url("/health/ready"))
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["status"], "ok");
    assert_eq!(ready["database"], "ok");
    let metrics = server.metrics().await;
    for name in [
        "tessera_http_requests_total",
        "tessera_http_request_duration_seconds_bucket",
        "tessera_writer_batch_size",
        "tessera_project_requests_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert!(metrics.contains("route=\"/v1/customers\""));
    assert!(!metrics.contains(&p.app_token));

    // The committed spec matches what this build serves; regenerate with
    // `cargo run -- openapi > docs/openapi.json`.
    let served: Value = server
        .http
        .get(server.url("/v1/openapi.json"))
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    let committed_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(committed_path).expect("docs/openapi.json is committed")).expect("valid json");
    assert_eq!(
        served, committed,
        "docs/openapi.json drifted from the code: run `cargo run -- openapi > docs/openapi.json`"
    );
    assert!(served["paths"]["/v1/customers"]["post"].is_object());
}

#[tokio::test]
async fn cli_creates_projects_for_scripts() {
    let dir = TempDir::new();
    let out = std::process::Command::new(bin())
        .args(["project", "create", "--name", "Scripted", "--json", "--data-dir"])
        .arg(&dir.0)
        .env("TESSERA_MANAGEMENT_ID", MGMT_ID)
        .env("TESSERA_MANAGEMENT_TOKEN", MGMT_TOKEN)
        .output()
        .expect("run cli");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let body: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(body["name"], "Scripted");
    let p = Project {
        id: body["id"].as_str().expect("id").into(),
        app_id: body["server_side_key"]["app_id"].as_str().expect("app id").into(),
        app_token: body["server_side_key"]["app_token"].as_str().expect("token").into(),
        client_id: String::new(),
        client_token: String::new(),
    };
    let server = Server::sqlite(&dir);
    assert_eq!(server.call(&p, Method::GET, "/v1/customers", None).await.0, 200);
}

#[test]
fn invalid_settings_fail_with_a_clear_message() {
    let dir = TempDir::new();
    for (args, needle) in [
        (vec!["serve", "--listen", "nowhere"], "invalid listen address"),
        (vec!["serve", "--database-url", "mysql://x"], "postgres://"),
        (vec!["serve", "--log-format", "xml"], "invalid log format"),
    ] {
        let out = std::process::Command::new(bin())
            .args(&args)
            .arg("--data-dir")
            .arg(&dir.0)
            .output()
            .expect("run");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let cfg = dir.0.join("bad.toml");
    std::fs::write(&cfg, "lisen = \"127.0.0.1:1\"\n").expect("write");
    let out = std::process::Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .arg("serve")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field"));
    let out = std::process::Command::new(bin())
        .args(["serve"])
        .env("TESSERA_MANAGEMENT_ID", "only-id")
        .arg("--data-dir")
        .arg(&dir.0)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TESSERA_MANAGEMENT_TOKEN"));
}

#[tokio::test]
async fn graceful_shutdown_keeps_acknowledged_writes() {
    let dir = TempDir::new();
    let server = Server::sqlite(&dir);
    let p = server.create_project("G").await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let (status, c) = server
            .call(&p, Method::POST, "/v1/customers", Some(json!({"source_id": format!("g{i}")})))
            .await;
        assert_eq!(status, 200);
        ids.push(c["id"].as_str().expect("id").to_string());
    }
    assert!(server.stop().success());
    let server = Server::sqlite(&dir);
    for id in ids {
        assert_eq!(server.call(&p, Method::GET, &format!("/v1/customers/{id}"), None).await.0, 200);
    }
}

#[tokio::test]
async fn the_checker_runs_from_the_cli() {
    let dir = TempDir::new();
    let server = Server::sqlite(&dir);
    let p = server.create_project("Check").await;
    server
        .call(
            &p,
            Method::POST,
            "/v1/vouchers/CHK",
            Some(json!({"type": "GIFT_VOUCHER", "gift": {"amount": 1000}})),
        )
        .await;
    let (status, _) = server
        .call(
            &p,
            Method::POST,
            "/v1/redemptions",
            Some(json!({"redeemables": [{"object": "voucher", "id": "CHK", "gift": {"credits": 300}}], "order": {"amount": 500}})),
        )
        .await;
    assert_eq!(status, 200);
    let run = || {
        std::process::Command::new(bin())
            .arg("check")
            .arg("--data-dir")
            .arg(&dir.0)
            .output()
            .expect("run check")
    };
    let out = run();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("gift_balance_matches_ledger"));
    assert!(server.stop().success());
    let conn = rusqlite::Connection::open(dir.0.join("tessera.db")).expect("open");
    conn.execute("UPDATE vouchers SET gift_balance = gift_balance + 50", [])
        .expect("corrupt");
    drop(conn);
    let out = run();
    assert_eq!(out.status.code(), Some(1), "a violation exits 1");
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL"));
}

#[tokio::test]
async fn client_keys_validate_and_redeem_when_allowed() {
    let dir = TempDir::new();
    let server = Server::sqlite(&dir);
    let p = server.create_project("Browser").await;
    server
        .mgmt(
            Method::PUT,
            &format!("/management/v1/projects/{}", p.id),
            Some(json!({"client_trusted_domains": ["https://shop.example"]})),
        )
        .await;
    server
        .call(
            &p,
            Method::POST,
            "/v1/vouchers/WEB10",
            Some(json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "PERCENT", "percent_off": 10}})),
        )
        .await;
    let body = json!({"redeemables": [{"object": "voucher", "id": "WEB10"}], "order": {"amount": 1000}});
    let client = |path: &str| {
        server
            .http
            .post(server.url(path))
            .header("X-Client-Application-Id", &p.client_id)
            .header("X-Client-Token", &p.client_token)
            .header("Origin", "https://shop.example")
            .json(&body)
    };
    // The browser's preflight is answered without credentials.
    let pre = server
        .http
        .request(Method::OPTIONS, server.url("/client/v1/validations"))
        .header("Origin", "https://shop.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "x-client-token, content-type")
        .send()
        .await
        .expect("preflight");
    assert!(pre.status().is_success());
    assert_eq!(
        pre.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()),
        Some("https://shop.example")
    );
    let r = client("/client/v1/validations").send().await.expect("validate");
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().contains_key("access-control-allow-origin"));
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["valid"], true);
    let r = client("/client/v1/redemptions").send().await.expect("redeem");
    assert_eq!(r.status().as_u16(), 403, "client redemption is off by default");
    server
        .mgmt(
            Method::PUT,
            &format!("/management/v1/projects/{}", p.id),
            Some(json!({"client_redeem_enabled": true})),
        )
        .await;
    let r = client("/client/v1/redemptions").send().await.expect("redeem");
    assert_eq!(r.status().as_u16(), 200);
}
