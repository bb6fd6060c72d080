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
    let metric = |text: &str| metric_value(text, "tessera_invariant_violations{check=\"voucher_redeemed_quantity\"}");
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
    assert_eq!(checks, tessera_check::checks().len(), "every invariant is published:\n{text}");
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

/// What a client finally learned about one request.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    /// 200, first answer or a replay: the redemption with this id exists.
    Acked(String),
    /// 4xx from the engine: the code was used up.
    Refused,
    /// The request's first write committed but its answer died with the process (409
    /// `idempotency_key_applied`): a redemption, or the record of a failed one.
    AppliedUnseen,
}

struct Req {
    tag: String,
    key: String,
    code: String,
}

/// Sends one request until it has a definite outcome, retrying with the same
/// Idempotency-Key whenever the answer was lost (transport error, 5xx, key still busy).
async fn settle(http: &reqwest::Client, base: &std::sync::RwLock<String>, p: &Project, r: &Req) -> Outcome {
    let body = json!({
        "redeemables": [{"object": "voucher", "id": r.code}],
        "order": {"amount": 1000},
        "metadata": {"tag": r.tag},
    });
    for _ in 0..2000 {
        let url = format!("{}/v1/redemptions", base.read().expect("base"));
        let sent = http
            .post(url)
            .header("X-App-Id", &p.app_id)
            .header("X-App-Token", &p.app_token)
            .header("Idempotency-Key", &r.key)
            .timeout(Duration::from_secs(10))
            .json(&body)
            .send()
            .await;
        let Ok(resp) = sent else {
            tokio::time::sleep(Duration::from_millis(30)).await;
            continue;
        };
        let status = resp.status().as_u16();
        let Ok(v) = resp.json::<Value>().await else {
            tokio::time::sleep(Duration::from_millis(30)).await;
            continue;
        };
        match (status, v["key"].as_str()) {
            (200, _) => {
                assert_eq!(v["redemptions"][0]["result"], "SUCCESS", "{v}");
                return Outcome::Acked(v["redemptions"][0]["id"].as_str().expect("redemption id").to_string());
            }
            (409, Some("idempotency_key_applied")) => return Outcome::AppliedUnseen,
            (409, Some("idempotency_key_in_flight")) | (500..=599, _) => {
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            (400..=499, _) => return Outcome::Refused,
            _ => panic!("unexpected answer {status}: {v}"),
        }
    }
    panic!("request {} never settled", r.tag);
}

/// The acceptance test of crash safety: clients redeem single-use codes (two requests per
/// code, so half must be refused) and a multi-use code, each request with its own
/// Idempotency-Key; the server is killed with SIGKILL at random moments six times and
/// restarted; clients retry whatever they did not see answered. Afterwards every
/// acknowledged redemption exists exactly once, nothing was applied twice, no code is
/// over its quantity, and the independent checker passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_repeated_sigkill_with_retrying_clients_applies_each_request_once() {
    const SINGLE: usize = 400;
    const MULTI: usize = 400;
    const KILLS: usize = 6;
    let dir = TempDir::new();
    let server = Server::start(Backend::Sqlite(dir.0.clone()));
    let p = server.create_project("Crashy").await;
    for i in 0..SINGLE {
        let (status, v) = server
            .call(
                &p,
                Method::POST,
                &format!("/v1/vouchers/U-{i}"),
                Some(json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 100}, "redemption": {"quantity": 1}})),
            )
            .await;
        assert_eq!(status, 200, "{v}");
    }
    let (status, v) = server
        .call(
            &p,
            Method::POST,
            "/v1/vouchers/MULTI",
            Some(json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "PERCENT", "percent_off": 5}})),
        )
        .await;
    assert_eq!(status, 200, "{v}");

    let mut reqs: Vec<Req> = (0..2 * SINGLE)
        .map(|n| (format!("U-{}", n / 2), n))
        .chain((0..MULTI).map(|n| ("MULTI".to_string(), 2 * SINGLE + n)))
        .map(|(code, n)| Req {
            tag: format!("tag-{n:05}"),
            key: format!("crash-{}-{n}", random_suffix()),
            code,
        })
        .collect();
    use rand::seq::SliceRandom;
    reqs.shuffle(&mut rand::rng());
    let total = reqs.len();
    let queue = Arc::new(Mutex::new(reqs));
    let base = Arc::new(std::sync::RwLock::new(server.base.clone()));
    let results: Arc<Mutex<Vec<(Req, Outcome)>>> = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..12)
        .map(|_| {
            let (queue, base, results, p) = (queue.clone(), base.clone(), results.clone(), p.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                loop {
                    let Some(r) = queue.lock().expect("queue").pop() else { return };
                    let outcome = settle(&http, &base, &p, &r).await;
                    results.lock().expect("results").push((r, outcome));
                }
            })
        })
        .collect();

    let mut server = server;
    for kill in 0..KILLS {
        // Spread the kills over the run: each once a share of the requests settled, plus
        // a random delay, so they land at arbitrary points of request handling.
        let threshold = (kill + 1) * total / (KILLS + 2);
        while results.lock().expect("results").len() < threshold {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 60)).await;
        server.child.kill().expect("SIGKILL");
        server.child.wait().expect("wait");
        let done = results.lock().expect("results").len();
        assert!(
            done < total,
            "kill {kill} came after the load had ended ({done} settled): the kills must hit live traffic"
        );
        server = Server::start(Backend::Sqlite(dir.0.clone()));
        *base.write().expect("base") = server.base.clone();
    }
    for c in clients {
        tokio::time::timeout(Duration::from_secs(120), c)
            .await
            .expect("clients settle after the last restart")
            .expect("client");
    }
    let results = results.lock().expect("results");
    assert_eq!(results.len(), total);

    // What exists, read straight from the database once the server is stopped.
    server.stop();
    let c = rusqlite::Connection::open(dir.0.join("tessera.db")).expect("open");
    // Successful redemptions by request tag; failed attempts are recorded too (as
    // Voucherify does), counted separately.
    let mut by_tag: std::collections::HashMap<String, Vec<(String, String)>> = std::collections::HashMap::new();
    let mut failed_by_tag: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut stmt = c
        .prepare("SELECT r.id, v.code, r.data, r.result FROM redemptions r JOIN vouchers v ON v.project_id = r.project_id AND v.id = r.voucher_id WHERE r.voucher_id IS NOT NULL")
        .expect("query");
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .expect("rows");
    for row in rows {
        let (id, code, data, result) = row.expect("row");
        let data: Value = serde_json::from_str(&data).expect("data");
        let tag = data["metadata"]["tag"]
            .as_str()
            .expect("every redemption carries its tag")
            .to_string();
        if result == "SUCCESS" {
            by_tag.entry(tag).or_default().push((id, code));
        } else {
            *failed_by_tag.entry(tag).or_default() += 1;
        }
    }
    let mut per_code: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for stored in by_tag.values() {
        assert_eq!(stored.len(), 1, "a request was applied twice: {stored:?}");
        *per_code.entry(stored[0].1.clone()).or_default() += 1;
    }
    let (mut acked, mut unseen, mut refused) = (0, 0, 0);
    for (r, outcome) in results.iter() {
        let stored = by_tag.get(&r.tag);
        match outcome {
            Outcome::Acked(id) => {
                acked += 1;
                assert_eq!(
                    stored.map(|s| s[0].0.as_str()),
                    Some(id.as_str()),
                    "acknowledged {} is missing",
                    r.tag
                );
            }
            Outcome::AppliedUnseen => {
                unseen += 1;
                let failures = failed_by_tag.get(&r.tag).copied().unwrap_or(0);
                assert_eq!(
                    stored.map_or(0, |s| s.len()) + failures,
                    1,
                    "{} reported applied: exactly one redemption or one failure record",
                    r.tag
                );
                if r.code == "MULTI" {
                    assert!(stored.is_some(), "{} on the multi-use code cannot have failed", r.tag);
                }
            }
            Outcome::Refused => {
                refused += 1;
                assert!(stored.is_none(), "{} was refused but is stored", r.tag);
                assert!(r.code.starts_with("U-"), "only single-use codes run out: {}", r.tag);
            }
        }
    }
    for i in 0..SINGLE {
        let n = per_code.get(&format!("U-{i}")).copied().unwrap_or(0);
        assert_eq!(n, 1, "single-use code U-{i} redeemed {n} times");
    }
    assert_eq!(
        per_code.get("MULTI").copied(),
        Some(MULTI),
        "every multi-use request applied exactly once"
    );
    let unseen_successes = results
        .iter()
        .filter(|(r, o)| *o == Outcome::AppliedUnseen && by_tag.contains_key(&r.tag))
        .count();
    assert_eq!(by_tag.len(), acked + unseen_successes, "nothing stored that no client asked for");
    let unseen_failures = unseen - unseen_successes;
    assert_eq!(
        refused + unseen_failures,
        SINGLE,
        "one of each pair of requests for a single-use code is refused"
    );
    let counted: i64 = c
        .query_row("SELECT SUM(redeemed_quantity) FROM vouchers", [], |r| r.get(0))
        .expect("sum");
    assert_eq!(counted as usize, SINGLE + MULTI, "counters match the stored redemptions");
    drop(stmt);
    drop(c);
    let out = std::process::Command::new(bin())
        .args(["check", "--data-dir", &dir.0.display().to_string()])
        .output()
        .expect("run tessera check");
    assert!(
        out.status.success(),
        "tessera check failed after {KILLS} kills:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    eprintln!("{KILLS} kills: {acked} acknowledged, {unseen} applied without an answer, {refused} refused");
}
