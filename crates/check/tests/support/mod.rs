//! Runs the real `tessera` binary to produce realistic databases for the checker.
//!
//! The binary is another package's, so Cargo does not build it for these tests: they use
//! `TESSERA_BIN`, or `target/debug/tessera`, building it once when it is missing.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const MGMT_ID: &str = "check-mgmt";
pub const MGMT_TOKEN: &str = "check-management-token-0123456789";

pub fn random_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:x}{:x}{n}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let p = std::env::temp_dir().join(format!("tessera-check-{}", random_suffix()));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("TESSERA_BIN") {
            return PathBuf::from(p);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join("target"));
        let bin = target.join("debug/tessera");
        if !bin.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-p", "tessera"])
                .current_dir(&root)
                .status()
                .expect("run cargo build -p tessera");
            assert!(status.success(), "cargo build -p tessera failed");
        }
        bin
    })
}

pub fn pg_base_url() -> String {
    std::env::var("TESSERA_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh schema and the URL that selects it. Fails loudly without PostgreSQL: the suite
/// requires it. (Called outside any tokio runtime: the sync client brings its own.)
pub fn pg_fresh_schema() -> (String, String) {
    let schema = format!("chk_{}", random_suffix());
    let mut c = postgres::Client::connect(&pg_base_url(), postgres::NoTls)
        .expect("PostgreSQL must be running at TESSERA_TEST_PG_URL or 127.0.0.1:5432 for this test");
    c.batch_execute(&format!("CREATE SCHEMA {schema}")).expect("create schema");
    let base = pg_base_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    (schema.clone(), format!("{base}{sep}options=-c%20search_path%3D{schema}"))
}

pub struct Server {
    child: Child,
    base: String,
    http: reqwest::Client,
}

#[derive(Clone, Debug)]
pub struct Project {
    pub id: String,
    pub app_id: String,
    pub app_token: String,
}

impl Server {
    /// `--data-dir DIR` or `--database-url URL`.
    pub fn start(storage: [&str; 2]) -> Server {
        let mut child = Command::new(binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--log-level", "warn"])
            .args(storage)
            .env("TESSERA_MANAGEMENT_ID", MGMT_ID)
            .env("TESSERA_MANAGEMENT_TOKEN", MGMT_TOKEN)
            .env_remove("TESSERA_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tessera");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let (false, Some(addr)) = (sent, line.trim().strip_prefix("tessera listening on ")) {
                    let _ = tx.send(addr.to_string());
                    sent = true;
                }
            }
        });
        let base = rx.recv_timeout(Duration::from_secs(60)).expect("server did not report its address");
        Server {
            child,
            base,
            http: reqwest::Client::new(),
        }
    }

    /// SIGTERM, then wait for the clean exit that closes the database.
    pub fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                assert!(s.success(), "tessera exited with {s}");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("tessera did not stop after SIGTERM");
    }

    pub async fn create_project(&self, name: &str) -> Project {
        let resp = self
            .http
            .post(format!("{}/management/v1/projects", self.base))
            .header("X-Management-Id", MGMT_ID)
            .header("X-Management-Token", MGMT_TOKEN)
            .json(&json!({"name": name}))
            .send()
            .await
            .expect("create project");
        assert_eq!(resp.status().as_u16(), 200);
        let body: Value = resp.json().await.expect("project json");
        Project {
            id: body["id"].as_str().expect("project id").into(),
            app_id: body["server_side_key"]["app_id"].as_str().expect("app_id").into(),
            app_token: body["server_side_key"]["app_token"].as_str().expect("app_token").into(),
        }
    }

    pub async fn call(&self, p: &Project, method: &str, path: &str, body: Option<Value>, idem_key: Option<&str>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-App-Id", &p.app_id)
            .header("X-App-Token", &p.app_token);
        if let Some(k) = idem_key {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only when a test failed before stop(): do not leave the server running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn redeem(code: &str, credits: Option<i64>, customer: Option<&str>, amount: i64) -> Value {
    let mut r = json!({"object": "voucher", "id": code});
    if let Some(c) = credits {
        r["gift"] = json!({"credits": c});
    }
    let mut body = json!({"redeemables": [r], "order": {"amount": amount}});
    if let Some(c) = customer {
        body["customer"] = json!({"source_id": c});
    }
    body
}

async fn expect(server: &Server, p: &Project, method: &str, path: &str, body: Value, want: u16) -> Value {
    let (status, resp) = server.call(p, method, path, Some(body.clone()), None).await;
    assert_eq!(status, want, "{method} {path} {body}: {resp}");
    resp
}

/// Writes what a shop does in a day, touching every table the checks read: discount
/// codes with quotas, a single-use code, a gift card spent, topped up and refunded, a
/// stacked redemption rolled back, failures, a generated campaign and a standalone code
/// with per-customer rules (used up to their limits), an idempotent retry, and a second
/// project.
pub async fn populate(server: &Server) -> Project {
    let p = server.create_project("Checked shop").await;
    // A webhook, so the database holds deliveries. The target is a public address that
    // nothing here reaches: deliveries stay pending or fail, which is what the checker
    // sees in real life too.
    let resp = server
        .http
        .post(format!("{}/management/v1/projects/{}/webhooks", server.base, p.id))
        .header("X-Management-Id", MGMT_ID)
        .header("X-Management-Token", MGMT_TOKEN)
        .json(&json!({"target_url": "http://93.184.215.14/hook", "events": ["redemption.succeeded"]}))
        .send()
        .await
        .expect("create webhook");
    assert_eq!(resp.status().as_u16(), 200);
    let hook: Value = resp.json().await.expect("webhook json");
    let hook_id = hook["id"].as_str().expect("webhook id").to_string();
    let other = server.create_project("Neighbour").await;
    expect(server, &other, "POST", "/v1/customers", json!({"source_id": "n1"}), 200).await;
    let discount = |quantity: Option<i64>| {
        let mut v = json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 500}});
        if let Some(q) = quantity {
            v["redemption"] = json!({"quantity": q});
        }
        v
    };
    expect(server, &p, "POST", "/v1/vouchers/QUOTA", discount(Some(5)), 200).await;
    expect(server, &p, "POST", "/v1/vouchers/ONCE", discount(Some(1)), 200).await;
    expect(server, &p, "POST", "/v1/vouchers/SOLO", discount(None), 200).await;
    expect(
        server,
        &p,
        "POST",
        "/v1/vouchers/A10",
        json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "PERCENT", "percent_off": 10}}),
        200,
    )
    .await;
    expect(
        server,
        &p,
        "POST",
        "/v1/vouchers/GIFT",
        json!({"type": "GIFT_VOUCHER", "gift": {"amount": 5000}}),
        200,
    )
    .await;

    // A retried request with its Idempotency-Key applies once.
    let first = server
        .call(
            &p,
            "POST",
            "/v1/redemptions",
            Some(redeem("QUOTA", None, Some("ann"), 5000)),
            Some("k-1"),
        )
        .await;
    let retry = server
        .call(
            &p,
            "POST",
            "/v1/redemptions",
            Some(redeem("QUOTA", None, Some("ann"), 5000)),
            Some("k-1"),
        )
        .await;
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!(first.1["redemptions"][0]["id"], retry.1["redemptions"][0]["id"], "a retry replays");
    expect(server, &p, "POST", "/v1/redemptions", redeem("QUOTA", None, Some("bob"), 5000), 200).await;
    expect(server, &p, "POST", "/v1/redemptions", redeem("ONCE", None, Some("dan"), 5000), 200).await;
    expect(server, &p, "POST", "/v1/redemptions", redeem("ONCE", None, Some("eve"), 5000), 400).await;

    let g1 = expect(
        server,
        &p,
        "POST",
        "/v1/redemptions",
        redeem("GIFT", Some(700), Some("ann"), 5000),
        200,
    )
    .await;
    expect(server, &p, "POST", "/v1/redemptions", redeem("GIFT", Some(300), None, 5000), 200).await;
    let g1 = g1["redemptions"][0]["id"].as_str().expect("redemption id").to_string();
    expect(server, &p, "POST", &format!("/v1/redemptions/{g1}/rollback"), json!({}), 200).await;
    expect(server, &p, "POST", "/v1/vouchers/GIFT/balance", json!({"amount": 1000}), 200).await;
    expect(
        server,
        &p,
        "POST",
        "/v1/redemptions",
        redeem("GIFT", Some(999_999), None, 5000),
        400,
    )
    .await;
    expect(server, &p, "POST", "/v1/redemptions", redeem("NO-SUCH-CODE", None, None, 5000), 404).await;

    let stacked = json!({
        "redeemables": [{"object": "voucher", "id": "A10"}, {"object": "voucher", "id": "GIFT", "gift": {"credits": 200}}],
        "order": {"amount": 20000}, "customer": {"source_id": "stacker"}
    });
    let s = expect(server, &p, "POST", "/v1/redemptions", stacked, 200).await;
    let parent = s["parent_redemption"]["id"].as_str().expect("parent id").to_string();
    expect(server, &p, "POST", &format!("/v1/redemptions/{parent}/rollbacks"), json!({}), 200).await;

    // A generated campaign, once per customer across its codes.
    let camp = expect(server, &p, "POST", "/v1/campaigns", json!({
        "name": "Once each", "vouchers_count": 3,
        "voucher": {"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 100}, "code_config": {"pattern": "ONE-####"}}
    }), 200).await;
    let camp_id = camp["id"].as_str().expect("campaign id").to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let codes: Vec<String> = loop {
        let (_, list) = server
            .call(&p, "GET", &format!("/v1/vouchers?campaign_id={camp_id}&limit=10"), None, None)
            .await;
        let codes: Vec<String> = list["vouchers"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v["code"].as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if codes.len() == 3 {
            break codes;
        }
        assert!(Instant::now() < deadline, "campaign codes were not generated: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let rule = |n: i64| {
        json!({"name": format!("at most {n} per customer"), "rules": {
            "1": {"name": "redemption.count.per_customer", "conditions": {"$less_than": [n]}},
            "2": {"name": "order.amount", "conditions": {"$more_than": [0]}},
            "logic": "1 and 2"
        }})
    };
    for (n, kind, object) in [(1, "campaign", camp_id.as_str()), (2, "voucher", "SOLO")] {
        let r = expect(server, &p, "POST", "/v1/validation-rules", rule(n), 200).await;
        let rid = r["id"].as_str().expect("rule id");
        let assign = json!({"related_object_type": kind, "related_object_id": object});
        expect(server, &p, "POST", &format!("/v1/validation-rules/{rid}/assignments"), assign, 200).await;
    }
    expect(
        server,
        &p,
        "POST",
        "/v1/redemptions",
        redeem(&codes[0], None, Some("cat"), 5000),
        200,
    )
    .await;
    expect(
        server,
        &p,
        "POST",
        "/v1/redemptions",
        redeem(&codes[1], None, Some("cat"), 5000),
        400,
    )
    .await;
    expect(
        server,
        &p,
        "POST",
        "/v1/redemptions",
        redeem(&codes[1], None, Some("fred"), 5000),
        200,
    )
    .await;
    for want in [200, 200, 400] {
        expect(server, &p, "POST", "/v1/redemptions", redeem("SOLO", None, Some("eve"), 5000), want).await;
    }
    // The relay fans events out within milliseconds; wait for it before the caller stops
    // the server.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list: Value = server
            .http
            .get(format!(
                "{}/management/v1/projects/{}/webhooks/{hook_id}/deliveries",
                server.base, p.id
            ))
            .header("X-Management-Id", MGMT_ID)
            .header("X-Management-Token", MGMT_TOKEN)
            .send()
            .await
            .expect("list deliveries")
            .json()
            .await
            .expect("deliveries json");
        if list["data"].as_array().is_some_and(|d| !d.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "no webhook delivery was made: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p
}
