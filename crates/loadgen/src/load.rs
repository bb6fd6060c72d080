//! The open-loop engine. A scheduler puts request `i` on a queue at `start + i / rate`,
//! whatever happened to earlier requests; `connections` workers, each owning one
//! keep-alive HTTP/1.1 connection, take requests off the queue in order. Latency runs
//! from the request's due time to its last response byte, so time spent waiting for a
//! free connection, or behind a late scheduler, is part of it: a server that falls behind
//! shows up as latency instead of as a quietly lower offered rate (coordinated omission).
//!
//! A "request" here is really a flow: the requests one sequence number stands for, sent
//! back to back on the worker's connection (a checkout's qualification, validation and
//! redemption); most scenarios' flows are a single request. The rate, the timeout and
//! the latency are per flow, the latency ending with the last response.
//!
//! The scheduler is an OS thread sleeping with the kernel's precision (tens of
//! microseconds), not a tokio timer: those tick in whole milliseconds, and every late
//! wake-up would be reported as server latency.

use crate::report::Stats;
use crate::scenario::{said_valid, Plan};
use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, Mutex};

type Conn = SendRequest<Full<Bytes>>;

pub struct Settings {
    pub rate: f64,
    pub warmup: Duration,
    pub duration: Duration,
    pub connections: usize,
    pub max_in_flight: usize,
    /// Budget from a request's due time; past it the request counts as a timeout.
    pub timeout: Duration,
}

impl Settings {
    /// Requests in the warm-up, and in the whole run.
    pub fn counts(&self) -> (u64, u64) {
        let warm = (self.warmup.as_secs_f64() * self.rate).ceil() as u64;
        (warm, warm + (self.duration.as_secs_f64() * self.rate).ceil() as u64)
    }
}

/// Why a request got no HTTP answer. `kind` is what the report counts by.
#[derive(Debug)]
pub struct Failure {
    pub kind: &'static str,
    pub detail: String,
}

impl Failure {
    pub fn new(kind: &'static str, detail: impl std::fmt::Display) -> Failure {
        Failure {
            kind,
            detail: detail.to_string(),
        }
    }
}

struct Job {
    seq: u64,
    due: Instant,
    measured: bool,
}

/// Runs the load and returns the measured statistics and when the measured window began.
pub async fn run(plan: Arc<Plan>, s: &Settings) -> Result<(Stats, Instant)> {
    let template = Stats::new()?;
    // Connections plus queued requests stay within max_in_flight; the scheduler refuses
    // the rest rather than letting the generator's own memory grow without bound.
    let (tx, rx) = mpsc::channel::<Job>(s.max_in_flight.saturating_sub(s.connections).max(1));
    let rx = Arc::new(Mutex::new(rx));
    let mut workers = Vec::with_capacity(s.connections);
    for _ in 0..s.connections {
        // Dial before the clock starts so handshakes do not land on the first requests; a
        // connection that fails here is retried by its worker and counted then.
        let conn = connect(&plan).await.ok();
        workers.push(tokio::spawn(worker(plan.clone(), rx.clone(), conn, s.timeout, template.clone())));
    }
    drop(rx);
    let (rate, counts) = (s.rate, s.counts());
    let start = Instant::now();
    let window_start = start + Duration::from_secs_f64(counts.0 as f64 / rate);
    let mut stats = tokio::task::spawn_blocking(move || schedule(tx, start, rate, counts, template))
        .await
        .context("the scheduler panicked")?;
    for w in workers {
        stats.merge(w.await.context("a connection worker panicked")?)?;
    }
    Ok((stats, window_start))
}

fn schedule(tx: mpsc::Sender<Job>, start: Instant, rate: f64, (warm, total): (u64, u64), mut stats: Stats) -> Stats {
    for seq in 0..total {
        // Due times come from the start, not from the previous request, so timer jitter
        // never accumulates into a lower rate; a late wake-up sends a burst to catch up.
        let due = start + Duration::from_secs_f64(seq as f64 / rate);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let measured = seq >= warm;
        if measured {
            stats.scheduled(due.elapsed());
        }
        match tx.try_send(Job { seq, due, measured }) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => {
                if job.measured {
                    stats.fail("client_overload", "more requests in flight than --max-in-flight");
                }
            }
            // Every worker is gone, which only a panic can cause; run() reports it.
            Err(TrySendError::Closed(_)) => break,
        }
    }
    stats
}

async fn worker(
    plan: Arc<Plan>,
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    mut conn: Option<Conn>,
    timeout: Duration,
    mut stats: Stats,
) -> Stats {
    loop {
        // The lock is held only while waiting for the next job; tokio's Mutex is fair, so
        // idle workers take jobs in turn and the queue stays first in, first out.
        let next = jobs.lock().await.recv().await;
        let Some(job) = next else { return stats };
        let deadline = job.due + timeout;
        // A job that waited past its budget is not sent: the run then ends at most one
        // timeout after the last due time, however far behind the server fell.
        let outcome = if Instant::now() >= deadline {
            Err(Failure::new("timeout", "no connection was free before the deadline"))
        } else {
            tokio::time::timeout_at(deadline.into(), exchange(&plan, &mut conn, job.seq))
                .await
                .unwrap_or_else(|_| Err(Failure::new("timeout", format!("no response within {timeout:?} of the due time"))))
        };
        if outcome.is_err() {
            // An HTTP/1.1 connection with an unfinished exchange cannot carry another one.
            conn = None;
        }
        if !job.measured {
            continue;
        }
        let done = Instant::now();
        match outcome {
            Ok(Answer::Ok) => stats.succeed(done - job.due, done),
            Ok(Answer::Refused { kind, body }) => stats.fail(&kind, String::from_utf8_lossy(&body)),
            Err(f) => stats.fail(f.kind, f.detail),
        }
    }
}

/// How a flow ended when every request it sent got an HTTP answer.
enum Answer {
    Ok,
    /// `kind` names the step and the answer (`validate_status_400`, `rejected_2xx`).
    Refused {
        kind: String,
        body: Bytes,
    },
}

async fn exchange(plan: &Plan, conn: &mut Option<Conn>, seq: u64) -> Result<Answer, Failure> {
    for step in plan.flow(seq)? {
        let (status, body) = send(plan, conn, step.request).await?;
        let refused = if !status.is_success() {
            format!("status_{}", status.as_u16())
        } else if step.must_be_valid && !said_valid(&body) {
            "rejected_2xx".to_string()
        } else {
            continue;
        };
        // The flow stops here: a shop does not redeem a code its validation refused.
        let kind = match step.name {
            "" => refused,
            name => format!("{name}_{refused}"),
        };
        return Ok(Answer::Refused { kind, body });
    }
    Ok(Answer::Ok)
}

async fn send(plan: &Plan, conn: &mut Option<Conn>, req: Request<Full<Bytes>>) -> Result<(hyper::StatusCode, Bytes), Failure> {
    if conn.as_ref().is_none_or(Conn::is_closed) {
        *conn = Some(connect(plan).await?);
    }
    let Some(sender) = conn.as_mut() else {
        return Err(Failure::new("connect", "no connection"));
    };
    let transport = |e: hyper::Error| Failure::new("transport", e);
    sender.ready().await.map_err(transport)?;
    let resp = sender.send_request(req).await.map_err(transport)?;
    let status = resp.status();
    // Read the whole body: the connection is reusable only after it, and the latency
    // should include the transfer.
    let body = resp.into_body().collect().await.map_err(transport)?.to_bytes();
    Ok((status, body))
}

async fn connect(plan: &Plan) -> Result<Conn, Failure> {
    let stream = TcpStream::connect(&plan.target.addr)
        .await
        .map_err(|e| Failure::new("connect", format!("{}: {e}", plan.target.addr)))?;
    // Small requests must not wait for Nagle's algorithm.
    stream.set_nodelay(true).map_err(|e| Failure::new("connect", e))?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Failure::new("connect", e))?;
    // The connection task drives the socket; its errors also fail the pending request,
    // which is where they are counted.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}
