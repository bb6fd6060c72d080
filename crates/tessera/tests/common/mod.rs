//! Starts the real `tessera` binary on port 0 with a fresh data directory (or a fresh
//! PostgreSQL schema) and talks HTTP to it.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const MGMT_ID: &str = "test-mgmt";
pub const MGMT_TOKEN: &str = "test-management-token-0123456789";

pub fn pg_base_url() -> String {
    std::env::var("TESSERA_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn random_suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A PostgreSQL URL whose connections use a schema of their own. Fails loudly when the
/// server is missing: PostgreSQL is required for the test suite.
pub fn pg_fresh_url() -> String {
    let schema = format!("it_{}", random_suffix());
    let base = pg_base_url();
    let s2 = schema.clone();
    std::thread::spawn(move || {
        let mut c =
            postgres::Client::connect(&base, postgres::NoTls).expect("PostgreSQL must be running for the test suite (TESSERA_TEST_PG_URL)");
        c.batch_execute(&format!("CREATE SCHEMA {s2}")).expect("create schema");
    })
    .join()
    .expect("schema thread");
    let sep = if pg_base_url().contains('?') { '&' } else { '?' };
    format!("{}{sep}options=-c%20search_path%3D{schema}", pg_base_url())
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let p = std::env::temp_dir().join(format!("tessera-it-{}", random_suffix()));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Clone)]
pub enum Backend {
    Sqlite(PathBuf),
    Postgres(String),
}

pub struct Server {
    pub child: Child,
    pub base: String,
    pub backend: Backend,
    pub http: reqwest::Client,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tessera")
}

impl Server {
    pub fn start(backend: Backend) -> Server {
        let mut cmd = Command::new(bin());
        cmd.arg("serve").arg("--listen").arg("127.0.0.1:0").arg("--log-level").arg("warn");
        match &backend {
            Backend::Sqlite(dir) => {
                cmd.arg("--data-dir").arg(dir);
            }
            Backend::Postgres(url) => {
                cmd.arg("--database-url").arg(url);
            }
        }
        Server::start_with(cmd, backend)
    }

    /// Starts a server from a prepared `tessera serve ...` command.
    pub fn start_with(mut cmd: Command, backend: Backend) -> Server {
        cmd.env("TESSERA_MANAGEMENT_ID", MGMT_ID)
            .env("TESSERA_MANAGEMENT_TOKEN", MGMT_TOKEN)
            .env_remove("TESSERA_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("start tessera");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let mut sent = false;
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                if !sent {
                    if let Some(addr) = line.trim().strip_prefix("tessera listening on ") {
                        let _ = tx.send(addr.to_string());
                        sent = true;
                    }
                }
                line.clear();
            }
        });
        let base = rx.recv_timeout(Duration::from_secs(60)).expect("server did not report its address");
        Server {
            child,
            base,
            backend,
            http: reqwest::Client::new(),
        }
    }

    pub fn sqlite(dir: &TempDir) -> Server {
        Server::start(Backend::Sqlite(dir.0.clone()))
    }

    /// Stops the server with SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) with a pid we spawned; no memory is touched.
        unsafe { libc_kill(pid, 15) };
        let status = wait_with_timeout(&mut self.child, Duration::from_secs(20)).expect("server did not stop after SIGTERM");
        std::mem::forget(self);
        status
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Creates a voucher under `code` and returns it; anything but 200 fails the test.
    pub async fn create_voucher(&self, p: &Project, code: &str, body: Value) -> Value {
        let (status, v) = self
            .call(p, reqwest::Method::POST, &format!("/v1/vouchers/{code}"), Some(body))
            .await;
        assert_eq!(status, 200, "create voucher {code}: {v}");
        v
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn mgmt(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .header("X-Management-Id", MGMT_ID)
            .header("X-Management-Token", MGMT_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn create_project(&self, name: &str) -> Project {
        let (status, body) = self
            .mgmt(reqwest::Method::POST, "/management/v1/projects", Some(json!({"name": name})))
            .await;
        assert_eq!(status, 200, "{body}");
        Project {
            id: body["id"].as_str().expect("id").to_string(),
            app_id: body["server_side_key"]["app_id"].as_str().expect("app_id").to_string(),
            app_token: body["server_side_key"]["app_token"].as_str().expect("app_token").to_string(),
            client_id: body["client_side_key"]["app_id"].as_str().expect("client app_id").to_string(),
            client_token: body["client_side_key"]["app_token"].as_str().expect("client token").to_string(),
        }
    }

    pub async fn call(&self, p: &Project, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let resp = self.send(p, method, path, body, &[]).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn send(
        &self,
        p: &Project,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self
            .http
            .request(method, self.url(path))
            .header("X-App-Id", &p.app_id)
            .header("X-App-Token", &p.app_token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("request")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Debug)]
pub struct Project {
    pub id: String,
    pub app_id: String,
    pub app_token: String,
    pub client_id: String,
    pub client_token: String,
}

pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// The value of one series in Prometheus text, named with its labels exactly as printed,
/// e.g. `tessera_outbox_events_total{consumer="nats"}`.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Asserts Voucherify's error envelope and returns it.
pub fn assert_envelope(status: u16, body: &Value, key: &str) {
    assert_eq!(body["code"].as_u64(), Some(status as u64), "{body}");
    assert_eq!(body["key"].as_str(), Some(key), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(body["details"].as_str().is_some(), "{body}");
    assert!(body["request_id"].as_str().is_some_and(|r| r.starts_with("req_")), "{body}");
}

/// Puts a promotion tier of `campaign_id` straight into a SQLite server's database and
/// returns its id. Promotion tiers have no API yet, and promotion stacks can only name
/// existing tiers; SQLite lets this second connection write while the server runs.
pub fn insert_tier(server: &Server, project_id: &str, campaign_id: &str) -> String {
    let Backend::Sqlite(dir) = &server.backend else {
        panic!("insert_tier needs a SQLite server");
    };
    let id = format!("promo_{}", random_suffix());
    let db = rusqlite::Connection::open(dir.join("tessera.db")).expect("open the server's database");
    db.busy_timeout(Duration::from_secs(10)).expect("busy timeout");
    db.execute(
        "INSERT INTO promotion_tiers (project_id, id, campaign_id, hierarchy, active, created_at, data) \
         VALUES (?1, ?2, ?3, 1, 1, '2026-01-01T00:00:00.000Z', ?4)",
        rusqlite::params![
            project_id,
            id,
            campaign_id,
            json!({"id": id, "campaign_id": campaign_id}).to_string()
        ],
    )
    .expect("insert a promotion tier");
    id
}
