//! Customer data rights and customer activity against the real binary, on both engines:
//! a permanent deletion leaves no personal value anywhere in the database (searched row by
//! row, every table) while every counter, ledger, statistic and the independent checker
//! stay as they were; the activity list pages newest first through everything that
//! happened to a customer.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

const EMAIL: &str = "ann.erasable@example.com";
const NAME: &str = "Ann Erasable";
const PHONE: &str = "+47 5550 1234";
const CITY: &str = "Trondheim-Erasable";
const LINE_1: &str = "Forgettable gate 7";
const FAVOURITE: &str = "pistachio-secret";
const DESCRIPTION: &str = "Prefers the window seat";
const BIRTHDATE: &str = "1990-02-03";
/// Every personal value the customer gave, and the source id (which is the email).
const PERSONAL: [&str; 8] = [EMAIL, NAME, PHONE, CITY, LINE_1, FAVOURITE, DESCRIPTION, BIRTHDATE];

/// Answers every webhook with the body it received, so the delivery log's record of the
/// receiver's answer holds the personal data too.
async fn start_echo_receiver() -> String {
    let app = axum::Router::new().fallback(axum::routing::post(|body: String| async move { body }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn serve(backend: &Backend) -> Server {
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--log-level", "warn"]).args([
        "--webhook-allow-private-targets",
        "true",
        "--webhook-retry-base-ms",
        "50",
    ]);
    match backend {
        Backend::Sqlite(dir) => cmd.arg("--data-dir").arg(dir),
        Backend::Postgres(url) => cmd.arg("--database-url").arg(url),
    };
    Server::start_with(cmd, backend.clone())
}

/// Every row of every table, as text, keyed by table: what a search for personal data
/// has to look through.
fn database_rows(backend: &Backend) -> Vec<(String, String)> {
    match backend {
        Backend::Sqlite(dir) => {
            let c = rusqlite::Connection::open_with_flags(dir.join("tessera.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .expect("open database");
            let mut tables = c.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").expect("tables");
            let names: Vec<String> = tables
                .query_map([], |r| r.get(0))
                .expect("tables")
                .collect::<Result<_, _>>()
                .expect("names");
            let mut out = Vec::new();
            for t in names {
                let mut s = c.prepare(&format!("SELECT * FROM \"{t}\"")).expect("select");
                let n = s.column_count();
                let mut rows = s.query([]).expect("rows");
                while let Some(r) = rows.next().expect("row") {
                    let mut text = String::new();
                    for i in 0..n {
                        match r.get_ref(i).expect("column") {
                            rusqlite::types::ValueRef::Text(b) | rusqlite::types::ValueRef::Blob(b) => {
                                text.push_str(&String::from_utf8_lossy(b))
                            }
                            rusqlite::types::ValueRef::Integer(v) => text.push_str(&v.to_string()),
                            rusqlite::types::ValueRef::Real(v) => text.push_str(&v.to_string()),
                            rusqlite::types::ValueRef::Null => {}
                        }
                        text.push('|');
                    }
                    out.push((t.clone(), text));
                }
            }
            out
        }
        Backend::Postgres(url) => {
            let schema = url.rsplit("search_path%3D").next().expect("schema in url").to_string();
            std::thread::spawn(move || {
                let mut c = postgres::Client::connect(&pg_base_url(), postgres::NoTls).expect("connect");
                c.batch_execute(&format!("SET search_path TO {schema}")).expect("search path");
                let tables: Vec<String> = c
                    .query(
                        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
                        &[&schema],
                    )
                    .expect("tables")
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                let mut out = Vec::new();
                for t in tables {
                    for r in c.query(&format!("SELECT t::text FROM \"{t}\" t"), &[]).expect("rows") {
                        out.push((t.clone(), r.get::<_, String>(0)));
                    }
                }
                out
            })
            .join()
            .expect("pg thread")
        }
    }
}

/// Where each personal value still appears: `(value, table, row)`.
fn personal_data_found(backend: &Backend) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    for (table, row) in database_rows(backend) {
        for v in PERSONAL {
            if row.contains(v) {
                found.push((v.to_string(), table.clone(), row.chars().take(300).collect()));
            }
        }
    }
    found
}

fn run_checker(backend: &Backend) {
    let mut cmd = std::process::Command::new(bin());
    cmd.arg("check");
    match backend {
        Backend::Sqlite(dir) => cmd.arg("--data-dir").arg(dir),
        Backend::Postgres(url) => cmd.arg("--database-url").arg(url),
    };
    let out = cmd.output().expect("run tessera check");
    assert!(
        out.status.success(),
        "tessera check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn ok(server: &Server, p: &Project, method: Method, path: &str, body: Option<Value>) -> Value {
    let (status, v) = server.call(p, method.clone(), path, body).await;
    assert_eq!(status, 200, "{method} {path}: {v}");
    v
}

/// A DISCOUNT_COUPONS campaign of `n` single-use codes; returns its id once they exist.
async fn campaign(server: &Server, p: &Project, name: &str, n: u64) -> String {
    let c = ok(
        server,
        p,
        Method::POST,
        "/v1/campaigns",
        Some(json!({"name": name, "vouchers_count": n, "voucher": {"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 500}, "redemption": {"quantity": 1}}})),
    )
    .await;
    let id = c["id"].as_str().expect("id").to_string();
    for _ in 0..200 {
        let (_, c) = server.call(p, Method::GET, &format!("/v1/campaigns/{id}"), None).await;
        if c["vouchers_generation_status"] == "DONE" && c["vouchers_count"] == n {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("campaign {name} did not get its {n} codes");
}

async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..400 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// What the deletion must leave exactly as it was: counters, the gift ledger, the
/// campaign summary, statistics and the orders.
async fn counters(server: &Server, p: &Project, code: &str, camp: &str) -> Value {
    let mut out = serde_json::Map::new();
    for path in [
        format!("/v1/vouchers/{code}"),
        "/v1/vouchers/GIFT-ANN".to_string(),
        "/v1/vouchers/GIFT-ANN/transactions".to_string(),
        "/v1/vouchers/GIFT-ANN/stats".to_string(),
        format!("/v1/vouchers/{code}/stats"),
        format!("/v1/campaigns/{camp}/summary"),
        format!("/v1/campaigns/{camp}"),
        "/v1/orders/order-ann-1".to_string(),
    ] {
        let v = ok(server, p, Method::GET, &path, None).await;
        out.insert(path, v);
    }
    Value::Object(out)
}

async fn permanent_deletion(backend: Backend) {
    let receiver = start_echo_receiver().await;
    let server = serve(&backend);
    let p = server.create_project("Rights").await;
    let q = server.create_project("Elsewhere").await;
    let events = [
        "customer.created",
        "customer.updated",
        "customer.deleted",
        "publication.succeeded",
        "redemption.succeeded",
        "redemption.rollback.succeeded",
    ];
    let (status, hook) = server
        .mgmt(
            Method::POST,
            &format!("/management/v1/projects/{}/webhooks", p.id),
            Some(json!({"target_url": format!("{receiver}/hook"), "events": events})),
        )
        .await;
    assert_eq!(status, 200, "{hook}");
    let hook_id = hook["id"].as_str().expect("webhook id").to_string();
    let camp = campaign(&server, &p, "Welcome", 3).await;
    // Once per customer: a per-customer count the kept customer id must go on carrying.
    let rule = ok(
        &server,
        &p,
        Method::POST,
        "/v1/validation-rules",
        Some(json!({"name": "Once per customer", "rules": {"1": {"name": "redemption.count.per_customer", "conditions": {"$less_than": [1]}}}})),
    )
    .await;
    ok(
        &server,
        &p,
        Method::POST,
        &format!("/v1/validation-rules/{}/assignments", rule["id"].as_str().expect("rule id")),
        Some(json!({"related_object_type": "campaign", "related_object_id": camp})),
    )
    .await;

    // A customer whose source id is their email, with every personal field filled.
    let cust = ok(
        &server,
        &p,
        Method::POST,
        "/v1/customers",
        Some(
            json!({"source_id": EMAIL, "name": NAME, "email": EMAIL, "phone": PHONE, "birthdate": BIRTHDATE,
            "address": {"city": CITY, "line_1": LINE_1}, "metadata": {"favourite": FAVOURITE}}),
        ),
    )
    .await;
    let cust_id = cust["id"].as_str().expect("customer id").to_string();
    // An update made with an idempotency key: its stored response holds the person too.
    let update = json!({"source_id": EMAIL, "description": DESCRIPTION});
    let idem = [("Idempotency-Key", "ann-update")];
    let resp = server.send(&p, Method::POST, "/v1/customers", Some(update.clone()), &idem).await;
    assert_eq!(resp.status(), 200);
    // A code published to them, an order, a redemption with that order, a gift card
    // redemption and its rollback.
    let publication = ok(
        &server,
        &p,
        Method::POST,
        "/v1/publications",
        Some(json!({"campaign": {"name": "Welcome"}, "customer": {"source_id": EMAIL}})),
    )
    .await;
    let code = publication["voucher"]["code"].as_str().expect("published code").to_string();
    ok(
        &server,
        &p,
        Method::POST,
        "/v1/orders",
        Some(json!({"source_id": "order-ann-1", "amount": 5000, "status": "CREATED", "customer": {"source_id": EMAIL, "name": NAME}})),
    )
    .await;
    let r1 = ok(
        &server,
        &p,
        Method::POST,
        "/v1/redemptions",
        Some(
            json!({"redeemables": [{"object": "voucher", "id": code}], "customer": {"source_id": EMAIL},
            "order": {"source_id": "order-ann-1", "amount": 5000}}),
        ),
    )
    .await;
    let r1_id = r1["redemptions"][0]["id"].as_str().expect("redemption id").to_string();
    assert_eq!(
        r1["redemptions"][0]["customer"]["email"], EMAIL,
        "the snapshot holds the email before"
    );
    // A second code of the campaign is refused: the customer has used their one.
    let codes = ok(&server, &p, Method::GET, &format!("/v1/vouchers?campaign_id={camp}&limit=10"), None).await;
    let other = codes["vouchers"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["code"] != code.as_str()))
        .and_then(|v| v["code"].as_str())
        .expect("another code")
        .to_string();
    let second = |who: Value| json!({"redeemables": [{"object": "voucher", "id": other}], "customer": who, "order": {"amount": 5000}});
    let (status, refused) = server
        .call(&p, Method::POST, "/v1/redemptions", Some(second(json!({"source_id": EMAIL}))))
        .await;
    assert_eq!(status, 400, "once per customer: {refused}");
    ok(
        &server,
        &p,
        Method::POST,
        "/v1/vouchers/GIFT-ANN",
        Some(json!({"type": "GIFT_VOUCHER", "gift": {"amount": 10000}})),
    )
    .await;
    let r2 = ok(
        &server,
        &p,
        Method::POST,
        "/v1/redemptions",
        Some(
            json!({"redeemables": [{"object": "voucher", "id": "GIFT-ANN", "gift": {"credits": 2500}}],
            "customer": {"id": cust_id}, "order": {"amount": 3000}}),
        ),
    )
    .await;
    let r2_id = r2["redemptions"][0]["id"].as_str().expect("gift redemption id").to_string();
    let rollback = ok(&server, &p, Method::POST, &format!("/v1/redemptions/{r2_id}/rollback"), None).await;
    assert_eq!(rollback["customer"]["name"], NAME);

    // A customers export holds the person, and so does the report of a bulk update that
    // refused their row (it names the row's customer by source id).
    let export = ok(
        &server,
        &p,
        Method::POST,
        "/v1/exports",
        Some(json!({"exported_object": "customer"})),
    )
    .await;
    let export_id = export["id"].as_str().expect("export id").to_string();
    let (status, bulk) = server
        .call(
            &p,
            Method::POST,
            "/v1/customers/bulk/async",
            Some(json!([{"source_id": EMAIL, "email": "not-an-email"}])),
        )
        .await;
    assert_eq!(status, 202, "{bulk}");
    let bulk_id = bulk["async_action_id"].as_str().expect("action id").to_string();
    wait_until("the export and the bulk update", || async {
        let (_, e) = server.call(&p, Method::GET, &format!("/v1/exports/{export_id}"), None).await;
        let (_, a) = server.call(&p, Method::GET, &format!("/v1/async-actions/{bulk_id}"), None).await;
        e["status"] == "DONE" && a["status"] == "DONE"
    })
    .await;

    // Every event delivered (the receiver echoed each body back) and counted.
    wait_until("six delivered webhooks", || async {
        let (_, l) = server
            .mgmt(
                Method::GET,
                &format!("/management/v1/projects/{}/webhooks/{hook_id}/deliveries?status=succeeded", p.id),
                None,
            )
            .await;
        l["data"].as_array().map(Vec::len) == Some(6)
    })
    .await;
    // A replay stores the body it sends (the fan-out's deliveries store none, theirs is
    // built from the event): one more copy for the deletion to find.
    let deliveries = format!("/management/v1/projects/{}/webhooks/{hook_id}/deliveries", p.id);
    let (_, l) = server.mgmt(Method::GET, &format!("{deliveries}?status=succeeded"), None).await;
    let first = l["data"][0]["id"].as_str().expect("a delivery").to_string();
    let (status, r) = server.mgmt(Method::POST, &format!("{deliveries}/{first}/replay"), None).await;
    assert_eq!(status, 200, "{r}");
    wait_until("the replay delivered", || async {
        let (_, l) = server.mgmt(Method::GET, &format!("{deliveries}?status=succeeded"), None).await;
        l["data"].as_array().map(Vec::len) == Some(7)
    })
    .await;
    let (_, shown) = server.mgmt(Method::GET, &format!("{deliveries}/{first}"), None).await;
    assert!(PERSONAL.iter().any(|v| shown["body"].to_string().contains(v)), "{shown}");
    wait_until("statistics", || async {
        let (_, s) = server.call(&p, Method::GET, "/v1/vouchers/GIFT-ANN/stats", None).await;
        s["data"][0]["rolled_back"] == 1
    })
    .await;
    let before = counters(&server, &p, &code, &camp).await;
    let found = personal_data_found(&backend);
    for table in [
        "customers",
        "redemptions",
        "publications",
        "outbox",
        "webhook_deliveries",
        "webhook_attempts",
        "idempotency",
        "export_chunks",
        "async_actions",
    ] {
        assert!(
            found.iter().any(|(_, t, _)| t == table),
            "the search must see the data in {table} first: {found:?}"
        );
    }

    // Not this project's customer, or no customer at all: 404, nothing changes.
    for (project, key) in [(&q, cust_id.as_str()), (&q, EMAIL), (&p, "nobody@example.com")] {
        let (status, e) = server
            .call(project, Method::POST, &format!("/v1/customers/{key}/permanent-deletion"), None)
            .await;
        assert_envelope(status, &e, "not_found");
        assert_eq!(status, 404);
        let (status, e) = server
            .call(project, Method::GET, &format!("/v1/customers/{key}/activity"), None)
            .await;
        assert_envelope(status, &e, "not_found");
    }
    ok(&server, &p, Method::GET, &format!("/v1/customers/{cust_id}"), None).await;

    // The deletion, named by the source id (the email), with an idempotency key.
    let erase_key = [("Idempotency-Key", "erase-ann")];
    let path = format!("/v1/customers/{EMAIL}/permanent-deletion");
    let resp = server.send(&p, Method::POST, &path, None, &erase_key).await;
    assert_eq!(resp.status(), 200);
    let done: Value = resp.json().await.expect("json");
    assert!(done["id"].as_str().is_some_and(|i| i.starts_with("del_")), "{done}");
    assert_eq!(done["related_object_id"], cust_id.as_str());
    assert_eq!(
        (done["related_object"].as_str(), done["status"].as_str()),
        (Some("customer"), Some("DONE"))
    );
    assert_eq!(done["object"], "pernament_deletion");
    let n = &done["data_json"];
    assert_eq!(n["customer"], 1, "{done}");
    assert_eq!(
        (n["redemptions"].as_i64(), n["publications"].as_i64()),
        (Some(4), Some(1)),
        "{done}"
    );
    assert_eq!((n["events"].as_i64(), n["customer_events"].as_i64()), (Some(7), Some(2)), "{done}");
    assert_eq!(n["webhook_deliveries"], 7, "{done}");
    assert_eq!(n["orders"], 2, "{done}");
    assert!(n["idempotency_records"].as_i64() >= Some(1), "{done}");
    assert_eq!(
        (n["exports"].as_i64(), n["async_action_reports"].as_i64()),
        (Some(1), Some(1)),
        "{done}"
    );
    for f in ["daily_events", "segments", "order_events"] {
        assert_eq!(n[f], 0, "{f}: {done}");
    }
    let resp = server.send(&p, Method::POST, &path, None, &erase_key).await;
    assert_eq!(
        resp.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(resp.json::<Value>().await.expect("json"), done, "a retry gets the first answer");

    // The customer is gone, by id and by source id, and so is their activity.
    for key in [cust_id.as_str(), EMAIL] {
        for path in [format!("/v1/customers/{key}"), format!("/v1/customers/{key}/activity")] {
            let (status, e) = server.call(&p, Method::GET, &path, None).await;
            assert_envelope(status, &e, "not_found");
        }
        let (status, e) = server
            .call(&p, Method::POST, &format!("/v1/customers/{key}/permanent-deletion"), None)
            .await;
        assert_envelope(status, &e, "not_found");
    }

    // Nothing personal is left in any row of any table; give the relay the time to fan
    // out the deletion event, which must not bring any back.
    wait_until("the customer.deleted delivery", || async {
        let (_, l) = server
            .mgmt(
                Method::GET,
                &format!("/management/v1/projects/{}/webhooks/{hook_id}/deliveries?status=succeeded", p.id),
                None,
            )
            .await;
        l["data"].as_array().map(Vec::len) == Some(8)
    })
    .await;
    let left = personal_data_found(&backend);
    assert!(left.is_empty(), "personal data left after the deletion: {left:#?}");
    // A delivery's body, built from its scrubbed event, shows none either.
    let (_, shown) = server.mgmt(Method::GET, &format!("{deliveries}/{first}"), None).await;
    assert!(shown["body"]["data"].is_object(), "{shown}");
    assert!(PERSONAL.iter().all(|v| !shown["body"].to_string().contains(v)), "{shown}");

    // The export that held them is gone; the bulk update's report stays, without them.
    let (status, e) = server.call(&p, Method::GET, &format!("/v1/exports/{export_id}"), None).await;
    assert_envelope(status, &e, "not_found");
    let report = ok(&server, &p, Method::GET, &format!("/v1/async-actions/{bulk_id}"), None).await;
    assert_eq!(report["result"]["failed_count"], 1, "{report}");

    // The records stay, under the same customer id, with the person taken out.
    for rid in [&r1_id, &r2_id] {
        let r = ok(&server, &p, Method::GET, &format!("/v1/redemptions/{rid}"), None).await;
        assert_eq!(r["customer_id"], cust_id.as_str());
        assert_eq!(r["customer"]["id"], cust_id.as_str());
        assert_eq!(r["customer"]["email"], Value::Null);
        assert!(r["tracking_id"].as_str().is_some_and(|t| t.starts_with("track_")), "{r}");
    }
    let pubs = ok(&server, &p, Method::GET, "/v1/publications", None).await;
    assert_eq!(pubs["publications"][0]["customer_id"], cust_id.as_str(), "{pubs}");
    let voucher = ok(&server, &p, Method::GET, &format!("/v1/vouchers/{code}"), None).await;
    assert_eq!(voucher["holder_id"], cust_id.as_str());
    // A replay of the earlier idempotent update answers from the scrubbed record.
    let resp = server.send(&p, Method::POST, "/v1/customers", Some(update), &idem).await;
    assert_eq!(
        resp.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let replay: Value = resp.json().await.expect("json");
    assert_eq!(replay["id"], cust_id.as_str());
    assert!(PERSONAL.iter().all(|v| !replay.to_string().contains(v)), "{replay}");

    // The old id names no one any more, so it cannot start a fresh count either: the
    // request is refused and writes nothing.
    let (status, e) = server
        .call(&p, Method::POST, "/v1/redemptions", Some(second(json!({"id": cust_id}))))
        .await;
    assert_envelope(status, &e, "not_found");

    // Every counter, the ledger, the summary and the statistics are exactly as before,
    // and the independent checker (its per-customer check included, over the kept ids)
    // agrees with the database.
    assert_eq!(counters(&server, &p, &code, &camp).await, before);
    run_checker(&backend);

    // The audit entry names the customer by id, not by the email in the path.
    let (status, log) = server
        .mgmt(Method::GET, &format!("/management/v1/projects/{}/audit-log?limit=100", p.id), None)
        .await;
    assert_eq!(status, 200, "{log}");
    let entry = log["data"]
        .as_array()
        .and_then(|d| d.iter().find(|e| e["action"] == "POST /v1/customers/{id}/permanent-deletion"))
        .expect("an audit entry for the deletion")
        .clone();
    assert_eq!(entry["resource"], format!("/v1/customers/{cust_id}/permanent-deletion"));

    // The same source id later makes a new customer, with nothing of the old one.
    let again = ok(&server, &p, Method::POST, "/v1/customers", Some(json!({"source_id": EMAIL}))).await;
    assert_ne!(again["id"], cust_id.as_str());
    assert_eq!(again["name"], Value::Null);
    assert_eq!(again["summary"]["orders"]["total_count"], 0, "{again}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_deletion_forgets_the_person_and_keeps_the_numbers() {
    let dir = TempDir::new();
    permanent_deletion(Backend::Sqlite(dir.0.clone())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_deletion_on_postgres() {
    permanent_deletion(Backend::Postgres(pg_fresh_url())).await;
}

/// A deletion racing rollbacks of the same customer's redemptions. A rollback copies the
/// redemption's customer snapshot into its own record and rewrites the redemption; one
/// that read the redemption before the deletion and wrote after it would bring the person
/// back. Every rollback must either finish before the deletion reads the records or copy
/// the scrubbed text, and each redemption's stored status must match its row.
async fn deletion_racing_rollbacks(backend: Backend) {
    let server = std::sync::Arc::new(serve(&backend));
    let p = server.create_project("Race").await;
    let cust = ok(
        &server,
        &p,
        Method::POST,
        "/v1/customers",
        Some(json!({"source_id": EMAIL, "name": NAME, "email": EMAIL, "phone": PHONE, "metadata": {"favourite": FAVOURITE}})),
    )
    .await;
    let cust_id = cust["id"].as_str().expect("id").to_string();
    ok(
        &server,
        &p,
        Method::POST,
        "/v1/vouchers/MANY",
        Some(json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 100}, "redemption": {"quantity": null}})),
    )
    .await;
    let mut redemptions = Vec::new();
    for _ in 0..24 {
        let r = ok(
            &server,
            &p,
            Method::POST,
            "/v1/redemptions",
            Some(
                json!({"redeemables": [{"object": "voucher", "id": "MANY"}], "customer": {"source_id": EMAIL}, "order": {"amount": 1000}}),
            ),
        )
        .await;
        redemptions.push(r["redemptions"][0]["id"].as_str().expect("id").to_string());
    }
    let mut tasks = Vec::new();
    for (i, rid) in redemptions.iter().enumerate() {
        let (server, p, rid) = (server.clone(), p.clone(), rid.clone());
        tasks.push(tokio::spawn(async move {
            if i == 12 {
                let (status, v) = server
                    .call(&p, Method::POST, &format!("/v1/customers/{EMAIL}/permanent-deletion"), None)
                    .await;
                assert_eq!(status, 200, "{v}");
            }
            let (status, v) = server
                .call(&p, Method::POST, &format!("/v1/redemptions/{rid}/rollback"), None)
                .await;
            (rid, status, v)
        }));
    }
    for t in tasks {
        let (rid, status, v) = t.await.expect("join");
        // 503 is the engine asking for a retry (a deadlock it broke); never anything else.
        assert!(status == 200 || status == 503, "rollback {rid}: {status} {v}");
        let r = ok(&server, &p, Method::GET, &format!("/v1/redemptions/{rid}"), None).await;
        let want = if status == 200 { "ROLLED_BACK" } else { "SUCCEEDED" };
        assert_eq!(r["status"], want, "{rid}: the stored document agrees with the rollback's answer");
        assert_eq!(r["customer_id"], cust_id.as_str());
    }
    let left = personal_data_found(&backend);
    assert!(left.is_empty(), "personal data left after the deletion: {left:#?}");
    run_checker(&backend);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletion_racing_rollbacks_on_sqlite() {
    let dir = TempDir::new();
    deletion_racing_rollbacks(Backend::Sqlite(dir.0.clone())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletion_racing_rollbacks_on_postgres() {
    deletion_racing_rollbacks(Backend::Postgres(pg_fresh_url())).await;
}

async fn activity_page(server: &Server, p: &Project, path: &str) -> Value {
    ok(server, p, Method::GET, path, None).await
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_string())
        .collect()
}

fn types(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| e["type"].as_str().expect("type").to_string())
        .collect()
}

/// Follows `more_starting_after` to the end; returns every id in order.
async fn walk(server: &Server, p: &Project, base: &str, limit: u32) -> Vec<String> {
    let mut all = Vec::new();
    let mut path = format!("{base}limit={limit}");
    for _ in 0..50 {
        let page = activity_page(server, p, &path).await;
        let got = ids(&page);
        assert!(got.len() <= limit as usize);
        all.extend(got.clone());
        if page["has_more"] != true {
            assert!(page.get("more_starting_after").is_none(), "{page}");
            return all;
        }
        assert_eq!(page["more_starting_after"].as_str(), got.last().map(String::as_str));
        path = format!("{base}limit={limit}&starting_after_id={}", got.last().expect("a full page"));
    }
    panic!("paging did not end");
}

async fn activity(backend: Backend) {
    let server = serve(&backend);
    let p = server.create_project("Activity").await;
    let q = server.create_project("Neighbour").await;
    let camp = campaign(&server, &p, "Acts", 2).await;
    let step = || tokio::time::sleep(Duration::from_millis(5));
    let cust = ok(
        &server,
        &p,
        Method::POST,
        "/v1/customers",
        Some(json!({"source_id": "act-1", "name": "Act One"})),
    )
    .await;
    let id = cust["id"].as_str().expect("id").to_string();
    step().await;
    ok(
        &server,
        &p,
        Method::PUT,
        &format!("/v1/customers/{id}"),
        Some(json!({"name": "Act Uno"})),
    )
    .await;
    step().await;
    let publication = ok(
        &server,
        &p,
        Method::POST,
        "/v1/publications",
        Some(json!({"campaign": {"name": "Acts"}, "customer": {"id": id}})),
    )
    .await;
    let code = publication["voucher"]["code"].as_str().expect("code").to_string();
    step().await;
    ok(
        &server,
        &p,
        Method::POST,
        "/v1/orders",
        Some(json!({"source_id": "act-order", "amount": 2000, "status": "CREATED", "customer": {"id": id}})),
    )
    .await;
    step().await;
    let redeem = json!({"redeemables": [{"object": "voucher", "id": code}], "customer": {"id": id}, "order": {"amount": 3000}});
    let r = ok(&server, &p, Method::POST, "/v1/redemptions", Some(redeem.clone())).await;
    let rid = r["redemptions"][0]["id"].as_str().expect("redemption id").to_string();
    step().await;
    let (status, failed) = server.call(&p, Method::POST, "/v1/redemptions", Some(redeem)).await;
    assert_eq!(status, 400, "a used single-use code fails: {failed}");
    step().await;
    ok(&server, &p, Method::POST, &format!("/v1/redemptions/{rid}/rollback"), None).await;
    // Someone else's history is not part of it.
    ok(&server, &p, Method::POST, "/v1/customers", Some(json!({"source_id": "act-2"}))).await;
    let base = format!("/v1/customers/{id}/activity?");

    let all = activity_page(&server, &p, &format!("{base}limit=100")).await;
    assert_eq!(all["object"], "list");
    assert_eq!(all["data_ref"], "data");
    assert_eq!(all["has_more"], false);
    let mut got = types(&all);
    got.sort();
    let mut want = vec![
        "customer.created",
        "customer.updated",
        "customer.publication.succeeded",
        "customer.order.created",
        "customer.order.paid",
        "customer.redemption.succeeded",
        "customer.redemption.failed",
        "customer.redemption.rollback.succeeded",
    ];
    want.sort();
    assert_eq!(got, want, "{all}");
    // Newest first; the oldest two are the customer's own events, in the order they were made.
    let entries = all["data"].as_array().expect("data");
    let times: Vec<&str> = entries.iter().map(|e| e["created_at"].as_str().expect("created_at")).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    assert_eq!(types(&all)[6..], ["customer.updated".to_string(), "customer.created".to_string()]);
    let first_five: Vec<String> = types(&all)[..5].to_vec();
    assert!(first_five.contains(&"customer.redemption.rollback.succeeded".to_string()));
    for e in entries {
        assert_eq!(e["data"]["event_source"]["channel"], "API", "{e}");
        let data = &e["data"]["data"];
        assert_eq!(data["customer"]["id"], id.as_str(), "{e}");
        let category = if e["type"].as_str().is_some_and(|t| t.contains("publication") || t.contains("order")) {
            "EFFECT"
        } else {
            "ACTION"
        };
        assert_eq!(e["category"], category, "{e}");
    }
    let redeemed = entries
        .iter()
        .find(|e| e["type"] == "customer.redemption.succeeded")
        .expect("redemption");
    assert_eq!(redeemed["id"], rid.as_str());
    assert_eq!(redeemed["data"]["data"]["redemption"]["id"], rid.as_str());
    assert_eq!(redeemed["data"]["data"]["voucher"]["code"], code.as_str());
    let rolled = entries
        .iter()
        .find(|e| e["type"] == "customer.redemption.rollback.succeeded")
        .expect("rollback");
    assert_eq!(rolled["data"]["data"]["redemption"]["id"], rid.as_str());
    assert_eq!(rolled["data"]["data"]["redemption_rollback"]["redemption"], rid.as_str());
    let ordered = entries.iter().find(|e| e["type"] == "customer.order.created").expect("order");
    assert_eq!(ordered["data"]["data"]["order"]["source_id"], "act-order");

    // Pages follow each other without gaps or repeats, in both orders, from any size.
    let full = ids(&all);
    for limit in [1, 3, 7] {
        assert_eq!(walk(&server, &p, &base, limit).await, full, "limit {limit}");
    }
    let mut reversed = full.clone();
    reversed.reverse();
    assert_eq!(walk(&server, &p, &format!("{base}order=created_at&"), 3).await, reversed);
    let by_source = activity_page(&server, &p, "/v1/customers/act-1/activity?limit=100").await;
    assert_eq!(ids(&by_source), full, "a source id names the customer too");

    // Filters.
    let only = |query: &str| {
        let path = format!("{base}limit=100&{query}");
        let (server, p) = (&server, &p);
        async move { types(&activity_page(server, p, &path).await) }
    };
    assert_eq!(only("type=customer.redemption.succeeded").await, ["customer.redemption.succeeded"]);
    assert_eq!(only("type=customer.segment.entered").await, Vec::<String>::new());
    assert_eq!(only("category=EFFECT").await.len(), 3);
    assert_eq!(only("category=ACTION").await.len(), 5);
    let mut in_campaign = only(&format!("campaign_id={camp}")).await;
    in_campaign.sort();
    assert_eq!(
        in_campaign,
        [
            "customer.publication.succeeded",
            "customer.redemption.failed",
            "customer.redemption.rollback.succeeded",
            "customer.redemption.succeeded"
        ]
    );
    assert_eq!(only("campaign_type=DISCOUNT_COUPONS").await.len(), 4);
    assert!(only("campaign_type=GIFT_VOUCHERS").await.is_empty());
    let oldest_two = &times[6];
    let since = only(&format!("start_date={oldest_two}")).await;
    assert_eq!(since.len(), 7, "start_date is inclusive: {since:?}");
    let until = only(&format!("end_date={oldest_two}")).await;
    assert_eq!(until, ["customer.updated", "customer.created"]);

    // The deprecated list: the same entries with a total, paged by date.
    let old = activity_page(&server, &p, &format!("/v1/customers/{id}/activities?limit=3")).await;
    assert_eq!((old["total"].as_i64(), ids(&old).len()), (Some(8), 3), "{old}");
    assert_eq!(ids(&old), full[..3]);
    let before_update = activity_page(&server, &p, &format!("/v1/customers/{id}/activities?starting_after={oldest_two}")).await;
    assert_eq!(types(&before_update), ["customer.created"]);
    assert_eq!(before_update["total"], 1);

    // Bad parameters are refused with the envelope; unknown and foreign customers are 404.
    for bad in [
        format!("{base}limit=0"),
        format!("{base}limit=101"),
        format!("{base}category=SIDE_EFFECT"),
        format!("{base}type=redemption.succeeded"),
        format!("{base}campaign_type=BOGUS"),
        format!("{base}order=type"),
        format!("{base}starting_after_id=r_nope"),
        format!("{base}start_date=2020-01-01T00:00:00Z&end_date=2024-01-01T00:00:00Z"),
        format!("/v1/customers/{id}/activities?product_id=prod_1"),
    ] {
        let (status, e) = server.call(&p, Method::GET, &bad, None).await;
        assert_eq!(status, 400, "{bad}: {e}");
        assert_envelope(status, &e, "invalid_query_params");
    }
    for (project, path) in [
        (&p, "/v1/customers/nobody/activity".to_string()),
        (&p, "/v1/customers/nobody/activities".to_string()),
        (&q, format!("/v1/customers/{id}/activity")),
        (&q, format!("/v1/customers/{id}/activities")),
        (&q, "/v1/customers/act-1/activity".to_string()),
    ] {
        let (status, e) = server.call(project, Method::GET, &path, None).await;
        assert_envelope(status, &e, "not_found");
    }
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_lists_what_happened_newest_first() {
    let dir = TempDir::new();
    activity(Backend::Sqlite(dir.0.clone())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_on_postgres() {
    activity(Backend::Postgres(pg_fresh_url())).await;
}
