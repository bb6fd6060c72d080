//! `Idempotency-Key` records: one per (scope, key), kept 24 hours.

use crate::conn::{Conn, Val};
use crate::{Result, Store};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tessera_domain::limits::{IDEMPOTENCY_IN_FLIGHT_STALE_SECS, IDEMPOTENCY_TTL_SECS};
use tessera_domain::time;

/// The idempotency key of the request being served, set by the API for the duration of
/// the handler. The first write of the request claims it.
#[derive(Debug, Clone)]
pub struct IdemMark {
    pub scope: String,
    pub key: String,
    claimed: Arc<AtomicBool>,
}

impl IdemMark {
    pub fn new(scope: String, key: String) -> Self {
        IdemMark {
            scope,
            key,
            claimed: Arc::new(AtomicBool::new(false)),
        }
    }
}

tokio::task_local! {
    pub static CURRENT: IdemMark;
    /// The request id of the request being served, for error bodies built in the store.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> String {
    REQUEST_ID.try_with(|r| r.clone()).unwrap_or_default()
}

pub(crate) fn claim_current() -> Option<(String, String)> {
    CURRENT
        .try_with(|m| (!m.claimed.swap(true, Ordering::SeqCst)).then(|| (m.scope.clone(), m.key.clone())))
        .ok()
        .flatten()
}

pub(crate) fn mark_applied(c: &mut dyn Conn, scope: &str, key: &str) -> Result<()> {
    c.execute(
        "UPDATE idempotency SET state = 'applied' WHERE scope = $1 AND idem_key = $2 AND state = 'in_flight'",
        &[scope.into(), key.into()],
    )?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdemBegin {
    /// The caller owns the key now and must finish or release it.
    Proceed,
    /// The same request completed before: answer with its stored response.
    Replay { status: u16, body: String },
    /// The key was used with a different request.
    Mismatch,
    /// The first request with this key is still being processed.
    InFlight,
    /// The first request's effect committed but its response was lost (the process died
    /// in between); running it again would apply it twice.
    AppliedWithoutResponse,
}

fn ago(secs: i64) -> String {
    let ts = time::now()
        .checked_sub(jiff::SignedDuration::from_secs(secs))
        .unwrap_or_else(|_| time::now());
    time::format(ts)
}

impl Store {
    /// `scope` is the project id (or `management` for management calls), so keys never
    /// collide across tenants.
    pub async fn idempotency_begin(&self, scope: String, key: String, request_hash: String) -> Result<IdemBegin> {
        self.write(move |c| {
            c.lock_key(&format!("idem:{scope}:{key}"))?;
            let now = time::now_string();
            let row = c.query_opt(
                "SELECT request_hash, state, status, body, created_at FROM idempotency WHERE scope = $1 AND idem_key = $2",
                &[scope.clone().into(), key.clone().into()],
            )?;
            let Some(row) = row else {
                c.execute(
                    "INSERT INTO idempotency (scope, idem_key, request_hash, state, created_at) VALUES ($1, $2, $3, 'in_flight', $4)",
                    &[scope.into(), key.into(), request_hash.into(), now.into()],
                )?;
                return Ok(IdemBegin::Proceed);
            };
            let created_at = row.text(4)?;
            let expired = created_at < ago(IDEMPOTENCY_TTL_SECS);
            let state = row.text(1)?;
            let old = created_at < ago(IDEMPOTENCY_IN_FLIGHT_STALE_SECS);
            // Only a record whose effect never committed ('in_flight', not 'applied') may be
            // taken over: its process died before writing anything.
            let stale = state == "in_flight" && old;
            if expired || (stale && row.text(0)? == request_hash) {
                c.execute(
                    "UPDATE idempotency SET request_hash = $1, state = 'in_flight', status = NULL, body = NULL, created_at = $2 WHERE scope = $3 AND idem_key = $4",
                    &[request_hash.into(), now.into(), scope.into(), key.into()],
                )?;
                return Ok(IdemBegin::Proceed);
            }
            // While the first request runs, any request with its key waits its turn.
            if (state == "in_flight" && !stale) || (state == "applied" && !old) {
                return Ok(IdemBegin::InFlight);
            }
            if state == "applied" {
                return Ok(IdemBegin::AppliedWithoutResponse);
            }
            if row.text(0)? != request_hash {
                return Ok(IdemBegin::Mismatch);
            }
            let status = row.opt_int(2)?.unwrap_or(200);
            Ok(IdemBegin::Replay { status: u16::try_from(status).unwrap_or(200), body: row.opt_text(3)?.unwrap_or_default() })
        })
        .await
    }

    /// Records the response of the request that owns the key. A response that should
    /// not be replayed (a server error, throttling) releases the key instead, unless the
    /// request's effect already committed: then the response is kept, whatever it is,
    /// because running the request again would apply it twice.
    pub async fn idempotency_complete(&self, scope: String, key: String, status: u16, body: String, replayable: bool) -> Result<()> {
        self.write_unmarked(move |c| {
            if replayable {
                c.execute(
                    "UPDATE idempotency SET state = 'done', status = $1, body = $2 WHERE scope = $3 AND idem_key = $4",
                    &[Val::Int(status as i64), body.into(), scope.into(), key.into()],
                )?;
            } else {
                c.execute(
                    "UPDATE idempotency SET state = 'done', status = $1, body = $2 WHERE scope = $3 AND idem_key = $4 AND state = 'applied'",
                    &[Val::Int(status as i64), body.into(), scope.clone().into(), key.clone().into()],
                )?;
                c.execute("DELETE FROM idempotency WHERE scope = $1 AND idem_key = $2 AND state = 'in_flight'", &[scope.into(), key.into()])?;
            }
            Ok(())
        })
        .await
    }

    /// Drops records past their 24 hours. Run every minute, so each call deletes about a
    /// minute's worth of records and never holds the writer long.
    pub async fn idempotency_purge_expired(&self) -> Result<u64> {
        self.write(|c| c.execute("DELETE FROM idempotency WHERE created_at < $1", &[ago(IDEMPOTENCY_TTL_SECS).into()]))
            .await
    }
}
