//! `tessera-webhook-sink`: a webhook receiver for the event-lag benchmark. It answers
//! every POST with 200 at once and records, per delivery, the time from the event's
//! `created_at` (written in the redemption's transaction, just before its commit) to the
//! moment the request arrived. `GET /stats` returns the count and lag percentiles in
//! milliseconds; `POST /reset` clears them.

use axum::extract::State;
use axum::routing::{get, post};
use axum::Json;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

type Shared = Arc<Mutex<Histogram<u64>>>;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn receive(State(h): State<Shared>, body: axum::body::Bytes) -> &'static str {
    let arrived = now_ms();
    let created = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["event"]["created_at"].as_str().map(String::from))
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_millisecond());
    if let (Some(created), Ok(mut h)) = (created, h.lock()) {
        let _ = h.record((arrived - created).max(0) as u64);
    }
    "ok"
}

async fn stats(State(h): State<Shared>) -> Json<Value> {
    let h = h.lock().map(|h| h.clone()).unwrap_or_else(|p| p.into_inner().clone());
    Json(json!({
        "count": h.len(), "p50_ms": h.value_at_quantile(0.5), "p90_ms": h.value_at_quantile(0.9),
        "p99_ms": h.value_at_quantile(0.99), "max_ms": h.max(),
    }))
}

async fn reset(State(h): State<Shared>) -> &'static str {
    if let Ok(mut h) = h.lock() {
        h.reset();
    }
    "ok"
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18400".into());
    let hist: Shared = Arc::new(Mutex::new(Histogram::new_with_bounds(1, 3_600_000, 3)?));
    let app = axum::Router::new()
        .route("/stats", get(stats))
        .route("/reset", post(reset))
        .fallback(post(receive))
        .with_state(hist);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("sink listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
