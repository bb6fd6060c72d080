//! Durability against the real binary: every redemption the server acknowledged before it
//! was killed with SIGKILL (no chance to flush anything) is there after a restart, the
//! counters and the gift-card balance agree with the redemptions that exist, and the
//! independent checker finds the database consistent. On both engines.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const GIFT_BALANCE: i64 = 10_000_000;
const CREDITS: i64 = 100;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Discount,
    Gift,
}

/// Redeems in a loop until the server stops answering; returns what was acknowledged.
async fn redeem_until_killed(base: String, p: Project, worker: usize, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<(Kind, String)>>>) {
    let http = reqwest::Client::new();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let kind = if (worker + i).is_multiple_of(2) {
            Kind::Discount
        } else {
            Kind::Gift
        };
        let body = match kind {
            Kind::Discount => {
                json!({"redeemables": [{"object": "voucher", "id": "CRASH"}], "order": {"amount": 10_000}, "customer": {"source_id": format!("c-{worker}")}})
            }
            Kind::Gift => {
                json!({"redeemables": [{"object": "voucher", "id": "CARD", "gift": {"credits": CREDITS}}], "order": {"amount": CREDITS}})
            }
        };
        let sent = http
            .post(format!("{base}/v1/redemptions"))
            .header("X-App-Id", &p.app_id)
            .header("X-App-Token", &p.app_token)
            .json(&body)
            .send()
            .await;
        // Once the process is gone, requests fail at the transport: that ends the worker.
        let Ok(resp) = sent else { return };
        let status = resp.status().as_u16();
        let Ok(answer) = resp.json::<Value>().await else { return };
        assert_eq!(status, 200, "a redemption failed before the kill: {answer}");
        let id = answer["redemptions"][0]["id"].as_str().expect("redemption id").to_string();
        acked.lock().expect("acked").push((kind, id));
    }
}

async fn acknowledged_redemptions_survive_sigkill(backend: Backend) {
    let server = Server::start(backend);
    let p = server.create_project("Durable").await;
    for (code, body) in [
        (
            "CRASH",
            json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "PERCENT", "percent_off": 10}, "redemption": {"quantity": null}}),
        ),
        ("CARD", json!({"type": "GIFT_VOUCHER", "gift": {"amount": GIFT_BALANCE}})),
    ] {
        let (status, v) = server.call(&p, Method::POST, &format!("/v1/vouchers/{code}"), Some(body)).await;
        assert_eq!(status, 200, "{v}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..16)
        .map(|w| tokio::spawn(redeem_until_killed(server.base.clone(), p.clone(), w, stop.clone(), acked.clone())))
        .collect();
    // Kill in the middle of the load, once a good number of redemptions was acknowledged.
    for _ in 0..200 {
        if acked.lock().expect("acked").len() >= 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut server = server;
    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("wait");
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    let backend = match &server.backend {
        Backend::Sqlite(d) => Backend::Sqlite(d.clone()),
        Backend::Postgres(u) => Backend::Postgres(u.clone()),
    };
    drop(server);
    let acked = acked.lock().expect("acked").clone();
    assert!(
        acked.len() >= 50,
        "too few redemptions before the kill to test anything: {}",
        acked.len()
    );

    let server = Server::start(backend);
    for (kind, id) in &acked {
        let (status, r) = server.call(&p, Method::GET, &format!("/v1/redemptions/{id}"), None).await;
        assert_eq!(status, 200, "acknowledged {kind:?} redemption {id} was lost: {r}");
        assert_eq!(r["result"], "SUCCESS", "{r}");
    }
    let acked_of = |k: Kind| acked.iter().filter(|(kind, _)| *kind == k).count() as i64;
    // Requests in flight at the kill may have committed without an answer: at least what
    // was acknowledged, and the counters match what exists.
    let (_, crash) = server.call(&p, Method::GET, "/v1/vouchers/CRASH", None).await;
    let redeemed = crash["redemption"]["redeemed_quantity"].as_i64().expect("redeemed_quantity");
    assert!(redeemed >= acked_of(Kind::Discount), "{redeemed} < {}", acked_of(Kind::Discount));
    let (_, card) = server.call(&p, Method::GET, "/v1/vouchers/CARD", None).await;
    let card_redeemed = card["redemption"]["redeemed_quantity"].as_i64().expect("redeemed_quantity");
    assert!(card_redeemed >= acked_of(Kind::Gift));
    assert_eq!(
        card["gift"]["balance"].as_i64(),
        Some(GIFT_BALANCE - CREDITS * card_redeemed),
        "the balance is exactly what the stored redemptions left: {card}"
    );
    // The server works on after the restart.
    let (status, r) = server
        .call(
            &p,
            Method::POST,
            "/v1/redemptions",
            Some(json!({"redeemables": [{"object": "voucher", "id": "CRASH"}], "order": {"amount": 100}})),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    let backend = match &server.backend {
        Backend::Sqlite(d) => vec!["--data-dir".to_string(), d.display().to_string()],
        Backend::Postgres(u) => vec!["--database-url".to_string(), u.clone()],
    };
    server.stop();
    // The independent checker agrees (exit 0 means no invariant is violated).
    let out = std::process::Command::new(bin())
        .arg("check")
        .args(&backend)
        .output()
        .expect("run tessera check");
    assert!(
        out.status.success(),
        "tessera check failed after the crash:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_redemptions_survive_sigkill() {
    let dir = TempDir::new();
    acknowledged_redemptions_survive_sigkill(Backend::Sqlite(dir.0.clone())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_acknowledged_redemptions_survive_sigkill() {
    acknowledged_redemptions_survive_sigkill(Backend::Postgres(pg_fresh_url())).await;
}

/// The checker inside `serve` publishes every invariant on /metrics, and a database
/// changed behind the server's back (a redeemed count that no redemption explains) shows
/// up there as a violation.
async fn checker_in_serve_reports_violations(backend: Backend, corrupt: impl FnOnce()) {
    let mut cmd = std::process::Command::new(bin());
    cmd.arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--log-level")
        .arg("warn")
        .arg("--check-interval")
        .arg("1");
    match &backend {
        Backend::Sqlite(dir) => cmd.arg("--data-dir").arg(dir),
        Backend::Postgres(url) => cmd.arg("--database-url").arg(url),
    };
    let server = Server::start_with(cmd, backend);
    let p = server.create_project("Checked").await;
    let (status, v) = server
        .call(
            &p,
            Method::POST,
            "/v1/vouchers/CHECKED",
            Some(json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 1}})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let metric = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("tessera_invariant_violations{check=\"voucher_redeemed_quantity\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let wait_for = |want: fn(f64) -> bool| {
        let server = &server;
        async move {
            for _ in 0..100 {
                let text = server.metrics().await;
                if let Some(v) = metric(&text).filter(|v| want(*v)) {
                    return (v, text);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("the checker did not report the expected value within 10 s");
        }
    };
    let (_, text) = wait_for(|v| v == 0.0).await;
    let checks = text.lines().filter(|l| l.starts_with("tessera_invariant_violations{")).count();
    assert_eq!(checks, 12, "every invariant is published:\n{text}");
    assert!(text.contains("tessera_invariant_check_last_run_timestamp_seconds"));
    corrupt();
    let (v, _) = wait_for(|v| v > 0.0).await;
    assert_eq!(v, 1.0, "one voucher breaks the invariant");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_checker_in_serve_reports_violations() {
    let dir = TempDir::new();
    let db = dir.0.join("tessera.db");
    checker_in_serve_reports_violations(Backend::Sqlite(dir.0.clone()), move || {
        let c = rusqlite::Connection::open(&db).expect("open");
        c.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
        c.execute("UPDATE vouchers SET redeemed_quantity = 3 WHERE code = 'CHECKED'", [])
            .expect("corrupt");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_checker_in_serve_reports_violations() {
    let url = pg_fresh_url();
    let corrupt_url = url.clone();
    checker_in_serve_reports_violations(Backend::Postgres(url), move || {
        // The postgres client blocks on its own runtime: run it on a plain thread.
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&corrupt_url, postgres::NoTls).expect("connect");
            c.execute("UPDATE vouchers SET redeemed_quantity = 3 WHERE code = 'CHECKED'", &[])
                .expect("corrupt");
        })
        .join()
        .expect("corrupt thread");
    })
    .await;
}
