//! Events against the real binary: webhooks to a local receiver (signatures, retries with
//! the same body, dead letters, replay, a receiver that never answers not slowing
//! redemptions), delivery after SIGKILL on both engines, NATS JetStream with
//! deduplication, and the statistics read model.

mod common;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: String,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    /// Failures answered so far per webhook-id on /flaky.
    flaky: Arc<Mutex<HashMap<String, u32>>>,
}

impl Receiver {
    fn on(&self, path: &str) -> Vec<Received> {
        self.got.lock().expect("got").iter().filter(|r| r.path == path).cloned().collect()
    }
}

async fn record(State(r): State<Receiver>, uri: axum::http::Uri, headers: HeaderMap, body: String) -> StatusCode {
    let path = uri.path().to_string();
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let id = headers.get("webhook-id").cloned().unwrap_or_default();
    r.got.lock().expect("got").push(Received {
        path: path.clone(),
        headers,
        body,
    });
    match path.as_str() {
        "/flaky" => {
            let mut f = r.flaky.lock().expect("flaky");
            let n = f.entry(id).or_insert(0);
            if *n < 3 {
                *n += 1;
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            }
        }
        "/dead" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK
        }
        _ => StatusCode::OK,
    }
}

/// A local HTTP receiver; returns its base URL.
async fn start_receiver(r: Receiver) -> String {
    let app = axum::Router::new().fallback(axum::routing::post(record)).with_state(r);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn serve_cmd(backend: &Backend, extra: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--log-level", "warn", "--check-interval", "0"])
        .args(extra);
    match backend {
        Backend::Sqlite(dir) => cmd.arg("--data-dir").arg(dir),
        Backend::Postgres(url) => cmd.arg("--database-url").arg(url),
    };
    cmd
}

async fn create_webhook(server: &Server, p: &Project, url: String, events: &[&str]) -> Value {
    let (status, w) = server
        .mgmt(
            Method::POST,
            &format!("/management/v1/projects/{}/webhooks", p.id),
            Some(json!({"target_url": url, "events": events})),
        )
        .await;
    assert_eq!(status, 200, "{w}");
    assert_eq!(w["object"], "webhook");
    assert!(w["secret"].as_str().is_some_and(|s| s.starts_with("whsec_")), "{w}");
    w
}

/// Verifies both signatures with the documented algorithms, independently of Tessera's
/// own code: HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}` with the base64
/// key after `whsec_` (Standard Webhooks), and over the body with the whole secret, hex
/// (`x-voucherify-signature`).
fn assert_signed(r: &Received, secret: &str) {
    use base64::Engine;
    use hmac::Mac;
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("secret is base64");
    let id = &r.headers["webhook-id"];
    let ts = &r.headers["webhook-timestamp"];
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("key");
    m.update(format!("{id}.{ts}.{}", r.body).as_bytes());
    let want = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes()));
    assert_eq!(r.headers["webhook-signature"], want, "Standard Webhooks signature");
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    m.update(r.body.as_bytes());
    assert_eq!(r.headers["x-voucherify-signature"], hex::encode(m.finalize().into_bytes()));
    let age = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
        - ts.parse::<i64>().expect("timestamp");
    assert!((0..120).contains(&age), "fresh timestamp: {age}");
}

async fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {secs} s waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_webhook_targets_are_refused_by_default() {
    let dir = TempDir::new();
    let server = Server::sqlite(&dir);
    let p = server.create_project("Guarded").await;
    for url in [
        "http://127.0.0.1:9/x",
        "http://10.0.0.7/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "http://localhost:8080/x",
    ] {
        let (status, e) = server
            .mgmt(
                Method::POST,
                &format!("/management/v1/projects/{}/webhooks", p.id),
                Some(json!({"target_url": url, "events": ["redemption.succeeded"]})),
            )
            .await;
        assert_eq!(status, 400, "{url}: {e}");
        assert_envelope(400, &e, "invalid_payload");
        assert!(e["details"].as_str().is_some_and(|d| d.contains("private")), "{e}");
    }
    for (body, why) in [
        (
            json!({"target_url": "ftp://example.com/x", "events": ["redemption.succeeded"]}),
            "http or https",
        ),
        (json!({"target_url": "https://example.com/x", "events": []}), "1 to 100"),
        (json!({"target_url": "https://example.com/x"}), "'events' is required"),
        (json!({"target_url": "https://u:p@example.com/x", "events": ["a.b"]}), "credentials"),
    ] {
        let (status, e) = server
            .mgmt(Method::POST, &format!("/management/v1/projects/{}/webhooks", p.id), Some(body))
            .await;
        assert_eq!(status, 400, "{e}");
        assert!(e["details"].as_str().is_some_and(|d| d.contains(why)), "{why}: {e}");
    }
    let (status, e) = server
        .mgmt(
            Method::POST,
            "/management/v1/projects/proj_missing/webhooks",
            Some(json!({"target_url": "http://1.2.3.4/x", "events": ["a.b"]})),
        )
        .await;
    assert_eq!(status, 404, "{e}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_retried_dead_lettered_and_replayable() {
    let receiver = Receiver::default();
    let base = start_receiver(receiver.clone()).await;
    let dir = TempDir::new();
    let backend = Backend::Sqlite(dir.0.clone());
    let cmd = serve_cmd(
        &backend,
        &[
            "--webhook-allow-private-targets",
            "true",
            "--webhook-timeout",
            "2",
            "--webhook-max-attempts",
            "4",
            "--webhook-retry-base-ms",
            "50",
        ],
    );
    let server = Server::start_with(cmd, backend);
    let p = server.create_project("Hooked").await;
    let events = ["voucher.created", "redemption.succeeded"];
    let ok = create_webhook(&server, &p, format!("{base}/ok"), &events).await;
    let flaky = create_webhook(&server, &p, format!("{base}/flaky"), &events).await;
    let dead = create_webhook(&server, &p, format!("{base}/dead"), &events).await;
    // Not subscribed to redemptions: gets nothing from them.
    create_webhook(&server, &p, format!("{base}/other"), &["voucher.deleted"]).await;
    let (status, list) = server
        .mgmt(Method::GET, &format!("/management/v1/projects/{}/webhooks", p.id), None)
        .await;
    assert_eq!((status, list["total"].as_u64()), (200, Some(4)), "{list}");

    server
        .create_voucher(
            &p,
            "HOOK",
            json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "PERCENT", "percent_off": 10}}),
        )
        .await;
    // Redemptions while the dead receiver holds its deliveries open: none waits for it
    // (a redemption that waited would take at least the 2 s webhook timeout).
    let mut slowest = Duration::ZERO;
    let mut redemption_ids = Vec::new();
    for i in 0..5 {
        let t = Instant::now();
        let (status, r) = server
            .call(
                &p,
                Method::POST,
                "/v1/redemptions",
                Some(json!({"redeemables": [{"object": "voucher", "id": "HOOK"}], "order": {"amount": 1000 + i}})),
            )
            .await;
        slowest = slowest.max(t.elapsed());
        assert_eq!(status, 200, "{r}");
        redemption_ids.push(r["redemptions"][0]["id"].as_str().expect("id").to_string());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(slowest < Duration::from_secs(1), "a redemption waited for a webhook: {slowest:?}");

    wait_for("6 deliveries to /ok", 20, || receiver.on("/ok").len() >= 6).await;
    wait_for("6 successful deliveries to /flaky after 3 failures each", 30, || {
        receiver.on("/flaky").len() >= 24
    })
    .await;
    let secret_of = |w: &Value| w["secret"].as_str().expect("secret").to_string();
    let oks = receiver.on("/ok");
    assert_eq!(oks.len(), 6, "exactly one delivery per event");
    for r in &oks {
        assert_signed(r, &secret_of(&ok));
        let b: Value = serde_json::from_str(&r.body).expect("json body");
        assert_eq!(b["source"]["id"], ok["id"]);
        assert_eq!(b["project_id"], p.id.as_str());
        assert_eq!(b["id"].as_str(), Some(r.headers["webhook-id"].as_str()));
    }
    let types: Vec<String> = oks
        .iter()
        .map(|r| {
            serde_json::from_str::<Value>(&r.body).expect("json")["type"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(types.iter().filter(|t| *t == "redemption.succeeded").count(), 5, "{types:?}");
    let delivered: HashSet<String> = oks
        .iter()
        .filter_map(|r| {
            let b: Value = serde_json::from_str(&r.body).ok()?;
            (b["type"] == "redemption.succeeded").then(|| b["data"]["id"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    assert_eq!(
        delivered,
        redemption_ids.iter().cloned().collect::<HashSet<_>>(),
        "each redemption's own event"
    );

    // Every attempt of a flaky delivery carries the same id and exactly the same bytes.
    let mut by_id: HashMap<String, Vec<Received>> = HashMap::new();
    for r in receiver.on("/flaky") {
        by_id.entry(r.headers["webhook-id"].clone()).or_default().push(r);
    }
    assert_eq!(by_id.len(), 6);
    for (id, attempts) in &by_id {
        assert_eq!(attempts.len(), 4, "{id}: three failures and a success");
        assert!(attempts.iter().all(|a| a.body == attempts[0].body), "{id}: the body never changes");
        for a in attempts {
            assert_signed(a, &secret_of(&flaky));
        }
    }
    let (wid, fid) = (flaky["id"].as_str().expect("id"), by_id.keys().next().expect("one"));
    let (status, d) = server
        .mgmt(
            Method::GET,
            &format!("/management/v1/projects/{}/webhooks/{wid}/deliveries/{fid}", p.id),
            None,
        )
        .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["status"], "succeeded", "{d}");
    let codes: Vec<i64> = d["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["status_code"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(codes, vec![500, 500, 500, 200], "{d}");
    // The log shows the body that was sent (it is built from the event, not stored).
    let sent: Value = serde_json::from_str(&by_id[fid][0].body).expect("json body");
    assert_eq!(d["body"], sent, "{d}");

    // The receiver that never answers: every delivery dead-lettered after 4 attempts.
    let did = dead["id"].as_str().expect("id").to_string();
    let dead_list = format!("/management/v1/projects/{}/webhooks/{did}/deliveries?status=dead", p.id);
    let mut last = Value::Null;
    for _ in 0..400 {
        let (_, l) = server.mgmt(Method::GET, &dead_list, None).await;
        if l["data"].as_array().is_some_and(|a| a.len() == 6) {
            last = l;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dead_ones = last["data"].as_array().expect("6 dead deliveries within 40 s");
    assert!(dead_ones.iter().all(|d| d["attempts"] == 4), "{last}");
    let one = dead_ones[0]["id"].as_str().expect("id");
    let (_, detail) = server
        .mgmt(
            Method::GET,
            &format!("/management/v1/projects/{}/webhooks/{did}/deliveries/{one}", p.id),
            None,
        )
        .await;
    assert!(
        detail["attempts"]
            .as_array()
            .expect("attempts")
            .iter()
            .all(|a| a["error"] == "timed out"),
        "{detail}"
    );

    // Replay a delivered event: the receiver gets the same body again.
    let okid = ok["id"].as_str().expect("id");
    let (_, okl) = server
        .mgmt(
            Method::GET,
            &format!("/management/v1/projects/{}/webhooks/{okid}/deliveries", p.id),
            None,
        )
        .await;
    let first = okl["data"][0]["id"].as_str().expect("a delivery").to_string();
    let (status, replayed) = server
        .mgmt(
            Method::POST,
            &format!("/management/v1/projects/{}/webhooks/{okid}/deliveries/{first}/replay", p.id),
            None,
        )
        .await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["replay_of"], first.as_str());
    wait_for("the replayed delivery", 10, || receiver.on("/ok").len() == 7).await;
    let again = receiver.on("/ok");
    let original = again.iter().find(|r| r.headers["webhook-id"] == first).expect("original");
    assert_eq!(again[6].body, original.body, "a replay sends the same event body");
    assert!(receiver.on("/other").is_empty(), "unsubscribed types are not sent");

    // Statistics follow the same events.
    let (status, stats) = server.call(&p, Method::GET, "/v1/vouchers/HOOK/stats", None).await;
    assert_eq!(status, 200, "{stats}");
    let day = &stats["data"][0];
    assert_eq!((day["redemptions"].as_i64(), day["failed"].as_i64()), (Some(5), Some(0)), "{stats}");
    let (status, bad) = server
        .call(&p, Method::GET, "/v1/vouchers/HOOK/stats?start_date=yesterday", None)
        .await;
    assert_eq!(status, 400, "{bad}");
    server.stop();
}

/// Redemptions under load, SIGKILL, restart: every committed redemption's event reaches
/// the receiver at least once, and nothing arrives that was not committed.
async fn events_survive_sigkill(backend: Backend) {
    let receiver = Receiver::default();
    let base = start_receiver(receiver.clone()).await;
    let flags = ["--webhook-allow-private-targets", "true", "--webhook-retry-base-ms", "50"];
    let server = Server::start_with(serve_cmd(&backend, &flags), backend.clone());
    let p = server.create_project("Crash events").await;
    create_webhook(&server, &p, format!("{base}/ok"), &["redemption.succeeded"]).await;
    server
        .create_voucher(
            &p,
            "EV",
            json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 10}}),
        )
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (base, p, stop, acked) = (server.base.clone(), p.clone(), stop.clone(), acked.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    let Ok(resp) = http
                        .post(format!("{base}/v1/redemptions"))
                        .header("X-App-Id", &p.app_id)
                        .header("X-App-Token", &p.app_token)
                        .json(&json!({"redeemables": [{"object": "voucher", "id": "EV"}], "order": {"amount": 500}}))
                        .send()
                        .await
                    else {
                        return;
                    };
                    let Ok(v) = resp.json::<Value>().await else { return };
                    if let Some(id) = v["redemptions"][0]["id"].as_str() {
                        acked.lock().expect("acked").push(id.to_string());
                    }
                }
            })
        })
        .collect();
    wait_for("200 acknowledged redemptions", 60, || acked.lock().expect("acked").len() >= 200).await;
    let mut server = server;
    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("wait");
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    drop(server);
    let server = Server::start_with(serve_cmd(&backend, &flags), backend.clone());
    // What committed, read through the API: every redemption of the voucher.
    let mut committed = HashSet::new();
    let mut page = 1;
    loop {
        let (status, l) = server
            .call(
                &p,
                Method::GET,
                &format!("/v1/redemptions?voucher_code=EV&limit=100&page={page}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{l}");
        let items = l["redemptions"].as_array().cloned().unwrap_or_default();
        committed.extend(items.iter().filter_map(|r| r["id"].as_str().map(String::from)));
        if items.len() < 100 {
            break;
        }
        page += 1;
    }
    let acked: HashSet<String> = acked.lock().expect("acked").iter().cloned().collect();
    assert!(acked.is_subset(&committed), "acknowledged redemptions are committed");
    let delivered = || -> HashSet<String> {
        receiver
            .on("/ok")
            .iter()
            .filter_map(|r| serde_json::from_str::<Value>(&r.body).ok())
            .filter_map(|b| b["data"]["id"].as_str().map(String::from))
            .collect()
    };
    wait_for("an event for every committed redemption", 60, || committed.is_subset(&delivered())).await;
    let got = delivered();
    assert!(got.is_subset(&committed), "no event for a redemption that did not commit");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_events_survive_sigkill() {
    let dir = TempDir::new();
    events_survive_sigkill(Backend::Sqlite(dir.0.clone())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_events_survive_sigkill() {
    events_survive_sigkill(Backend::Postgres(pg_fresh_url())).await;
}

async fn stream_messages(js: &async_nats::jetstream::Context, stream: &str) -> Vec<async_nats::jetstream::Message> {
    use futures_util::StreamExt;
    let mut s = js.get_stream(stream).await.expect("stream");
    let n = s.info().await.expect("info").state.messages;
    let consumer = s
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut out = Vec::new();
    if n == 0 {
        return out;
    }
    let mut msgs = consumer.fetch().max_messages(n as usize).messages().await.expect("fetch");
    while let Some(m) = msgs.next().await {
        out.push(m.expect("message"));
        if out.len() as u64 == n {
            break;
        }
    }
    out
}

/// Every event is published to the stream with `Nats-Msg-Id` set to its id, and a relay
/// that publishes everything again (its cursor lost, as after a crash between publish and
/// cursor write) adds nothing to the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_stream_gets_every_event_once() {
    let suffix = random_suffix();
    let stream = format!("T_{suffix}");
    let prefix = format!("t{suffix}.ev");
    let dir = TempDir::new();
    let backend = Backend::Sqlite(dir.0.clone());
    let flags = [
        "--nats-url",
        "nats://127.0.0.1:4222",
        "--nats-stream",
        stream.as_str(),
        "--nats-subject-prefix",
        prefix.as_str(),
    ];
    let server = Server::start_with(serve_cmd(&backend, &flags), backend.clone());
    let p = server.create_project("Streamed").await;
    for i in 0..5 {
        let (status, v) = server
            .call(
                &p,
                Method::POST,
                &format!("/v1/vouchers/N-{i}"),
                Some(json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 10}})),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        let (status, r) = server
            .call(
                &p,
                Method::POST,
                "/v1/redemptions",
                Some(json!({"redeemables": [{"object": "voucher", "id": format!("N-{i}")}], "order": {"amount": 100}})),
            )
            .await;
        assert_eq!(status, 200, "{r}");
    }
    let db = dir.0.join("tessera.db");
    let outbox: HashSet<String> = {
        let c = rusqlite::Connection::open(&db).expect("open");
        let mut st = c.prepare("SELECT id FROM outbox").expect("query");
        st.query_map([], |r| r.get::<_, String>(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("ids")
    };
    assert_eq!(outbox.len(), 10, "5 voucher.created and 5 redemption.succeeded");
    let client = async_nats::connect("nats://127.0.0.1:4222")
        .await
        .expect("NATS must be running for the test suite (127.0.0.1:4222)");
    let js = async_nats::jetstream::new(client);
    let mut count = 0;
    for _ in 0..100 {
        if let Ok(mut s) = js.get_stream(&stream).await {
            count = s.info().await.expect("info").state.messages;
            if count >= 10 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count, 10, "every event in the stream");
    let msgs = stream_messages(&js, &stream).await;
    let ids: HashSet<String> = msgs
        .iter()
        .map(|m| {
            m.headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_string())
                .expect("Nats-Msg-Id")
        })
        .collect();
    assert_eq!(ids, outbox, "one message per event, named by the event id");
    for m in &msgs {
        let b: Value = serde_json::from_slice(&m.payload).expect("json");
        assert!(m.subject.as_str().starts_with(&format!("{prefix}.{}.", p.id)), "{}", m.subject);
        assert_eq!(b["project_id"], p.id.as_str());
    }
    server.stop();

    // Lose the cursor: the restarted relay publishes all ten again.
    {
        let c = rusqlite::Connection::open(&db).expect("open");
        let n = c
            .execute("UPDATE outbox_cursors SET position = '0' WHERE consumer = 'nats'", [])
            .expect("reset");
        assert_eq!(n, 1, "the relay kept a cursor");
    }
    let server = Server::start_with(serve_cmd(&backend, &flags), backend.clone());
    let mut republished = 0.0;
    for _ in 0..100 {
        republished = metric_value(&server.metrics().await, "tessera_outbox_events_total{consumer=\"nats\"}").unwrap_or(0.0);
        if republished >= 10.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(republished, 10.0, "the relay published everything again");
    let mut s = js.get_stream(&stream).await.expect("stream");
    assert_eq!(s.info().await.expect("info").state.messages, 10, "JetStream dropped the duplicates");
    server.stop();
    let _ = js.delete_stream(&stream).await;
}

/// Two nodes on one PostgreSQL database run relays and senders at once: every event is
/// fanned out once (the cursor's compare-and-set) and every delivery is sent once (claims
/// with SKIP LOCKED), whichever node took the redemption.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_share_event_work_without_doing_it_twice() {
    let receiver = Receiver::default();
    let base = start_receiver(receiver.clone()).await;
    let backend = Backend::Postgres(pg_fresh_url());
    let flags = ["--webhook-allow-private-targets", "true"];
    let a = Server::start_with(serve_cmd(&backend, &flags), backend.clone());
    let b = Server::start_with(serve_cmd(&backend, &flags), backend.clone());
    let p = a.create_project("Two nodes").await;
    create_webhook(&a, &p, format!("{base}/ok"), &["redemption.succeeded"]).await;
    a.create_voucher(
        &p,
        "TWO",
        json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 10}}),
    )
    .await;
    let mut ids = HashSet::new();
    for i in 0..60 {
        let node = if i % 2 == 0 { &a } else { &b };
        let (status, r) = node
            .call(
                &p,
                Method::POST,
                "/v1/redemptions",
                Some(json!({"redeemables": [{"object": "voucher", "id": "TWO"}], "order": {"amount": 500}})),
            )
            .await;
        assert_eq!(status, 200, "{r}");
        ids.insert(r["redemptions"][0]["id"].as_str().expect("id").to_string());
    }
    wait_for("60 deliveries", 30, || receiver.on("/ok").len() >= 60).await;
    // A little longer, for any duplicate to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = receiver.on("/ok");
    assert_eq!(got.len(), 60, "each event delivered once");
    let delivered: HashSet<String> = got
        .iter()
        .filter_map(|r| serde_json::from_str::<Value>(&r.body).ok())
        .filter_map(|v| v["data"]["id"].as_str().map(String::from))
        .collect();
    assert_eq!(delivered, ids);
    a.stop();
    b.stop();
}

/// Checkout does not depend on NATS: with NATS unreachable the server starts, redeems,
/// and reports the missing connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_while_nats_is_unreachable() {
    let dir = TempDir::new();
    let backend = Backend::Sqlite(dir.0.clone());
    let server = Server::start_with(serve_cmd(&backend, &["--nats-url", "nats://127.0.0.1:1"]), backend);
    let p = server.create_project("No NATS").await;
    server
        .create_voucher(
            &p,
            "OFFLINE",
            json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 10}}),
        )
        .await;
    let (status, r) = server
        .call(
            &p,
            Method::POST,
            "/v1/redemptions",
            Some(json!({"redeemables": [{"object": "voucher", "id": "OFFLINE"}], "order": {"amount": 100}})),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    let mut connected = None;
    for _ in 0..100 {
        connected = metric_value(&server.metrics().await, "tessera_nats_connected");
        if connected.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(connected, Some(0.0));
    server.stop();
}
