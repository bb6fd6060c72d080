//! Traffic protection against the real binary: rate limits with Voucherify's headers,
//! tenants isolated from each other's floods, limits shared through Redis, and caps on
//! request size.

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;
use std::io::{Read, Write};

async fn set_limits(server: &Server, p: &Project, limits: serde_json::Value) {
    let (status, body) = server
        .mgmt(
            Method::PUT,
            &format!("/management/v1/projects/{}", p.id),
            Some(json!({"rate_limits": limits})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_projects_limit_throttles_it_alone() {
    let dir = TempDir::new();
    let server = Server::sqlite(&dir);
    let a = server.create_project("Flooder").await;
    let b = server.create_project("Neighbour").await;
    set_limits(&server, &a, json!({"per_minute": 60, "burst": 5})).await;
    let mut statuses = Vec::new();
    let mut throttled = None;
    for _ in 0..12 {
        let r = server.send(&a, Method::GET, "/v1/customers", None, &[]).await;
        let status = r.status().as_u16();
        for h in ["x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-retry"] {
            assert!(r.headers().contains_key(h), "{h} missing on a {status}");
        }
        if status == 429 && throttled.is_none() {
            let retry_after = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
            throttled = Some((retry_after, r.json::<serde_json::Value>().await.expect("json")));
        }
        statuses.push(status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5, "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    let (retry_after, body) = throttled.expect("a 429");
    assert!(
        retry_after.is_some_and(|v| v.parse::<u64>().is_ok_and(|s| s >= 1)),
        "Retry-After on 429"
    );
    assert_envelope(429, &body, "too_many_requests");
    // The neighbour does not notice.
    for _ in 0..30 {
        assert_eq!(server.call(&b, Method::GET, "/v1/customers", None).await.0, 200);
    }
    let metrics = server.metrics().await;
    assert!(metrics.contains("tessera_throttled_total"), "throttling is counted");
    assert!(metrics.contains(&a.id));
}

#[tokio::test]
async fn one_integration_key_can_be_capped() {
    let dir = TempDir::new();
    let server = Server::sqlite(&dir);
    let p = server.create_project("Keys").await;
    set_limits(&server, &p, json!({"per_minute": 6000, "burst": 100, "per_key_per_minute": 60})).await;
    let (_, k) = server
        .mgmt(
            Method::POST,
            &format!("/management/v1/projects/{}/api-keys", p.id),
            Some(json!({"name": "pos"})),
        )
        .await;
    let pos = Project {
        app_id: k["app_id"].as_str().expect("id").into(),
        app_token: k["app_token"].as_str().expect("token").into(),
        ..p.clone()
    };
    let mut pos_ok = 0;
    for _ in 0..80 {
        if server.call(&pos, Method::GET, "/v1/customers", None).await.0 == 200 {
            pos_ok += 1;
        }
    }
    assert!(pos_ok < 80, "the per-key budget applies ({pos_ok} of 80 passed)");
    // The project's other key keeps working.
    assert_eq!(server.call(&p, Method::GET, "/v1/customers", None).await.0, 200);
}

#[tokio::test]
async fn limits_are_shared_through_redis() {
    let url = pg_fresh_url();
    let redis = "redis://127.0.0.1:6379";
    let start = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(bin());
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "warn",
            "--database-url",
            &url,
            "--redis-url",
            redis,
        ]);
        cmd.args(extra);
        cmd
    };
    let s1 = Server::start_with(start(&[]), Backend::Postgres(url.clone()));
    let s2 = Server::start_with(start(&[]), Backend::Postgres(url.clone()));
    let p = s1.create_project("Shared").await;
    set_limits(&s1, &p, json!({"per_minute": 60, "burst": 6})).await;
    let mut ok = 0;
    for i in 0..20 {
        let server = if i % 2 == 0 { &s1 } else { &s2 };
        let r = server.send(&p, Method::GET, "/v1/customers", None, &[]).await;
        if r.status().as_u16() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 6, "two nodes share one budget of 6, not 6 each");
}

#[tokio::test]
async fn an_unreachable_redis_fails_open_or_closed_as_configured() {
    let dir = TempDir::new();
    let mut cmd = std::process::Command::new(bin());
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--log-level",
        "warn",
        "--redis-url",
        "redis://127.0.0.1:1",
    ])
    .arg("--data-dir")
    .arg(&dir.0);
    let open = Server::start_with(cmd, Backend::Sqlite(dir.0.clone()));
    let p = open.create_project("Open").await;
    assert_eq!(
        open.call(&p, Method::GET, "/v1/customers", None).await.0,
        200,
        "fail open: local limits"
    );
    let metrics = open
        .http
        .get(open.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("tessera_rate_limit_redis_errors_total"));
    drop(open);

    let dir2 = TempDir::new();
    let mut cmd = std::process::Command::new(bin());
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--log-level",
        "warn",
        "--redis-url",
        "redis://127.0.0.1:1",
        "--rate-limit-redis-failure",
        "closed",
    ])
    .arg("--data-dir")
    .arg(&dir2.0);
    let closed = Server::start_with(cmd, Backend::Sqlite(dir2.0.clone()));
    let p = closed.create_project("Closed").await;
    let (status, body) = closed.call(&p, Method::GET, "/v1/customers", None).await;
    assert_eq!(status, 503, "fail closed: {body}");
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let dir = TempDir::new();
    let server = Server::sqlite(&dir);
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&addr).expect("connect");
    let big = "x".repeat(80 * 1024);
    let _ = write!(s, "GET /health/live HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n");
    let mut buf = Vec::new();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).expect("timeout");
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.starts_with("HTTP/1.1 431"),
        "an oversized header block is refused: {}",
        &text[..text.len().min(100)]
    );
    // The server is unaffected.
    assert_eq!(
        server
            .http
            .get(server.url("/health/live"))
            .send()
            .await
            .expect("req")
            .status()
            .as_u16(),
        200
    );
}
