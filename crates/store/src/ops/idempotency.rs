//! `Idempotency-Key` records: one per (scope, key), kept 24 hours.
//!
//! A record goes `in_flight` (a request owns it, with a random owner token) -> `applied`
//! (the request's first write committed, marked in that same transaction) -> `done` (its
//! response is stored for replay). Writes commit only while their request still owns the
//! record, so a request that stalled and lost its key to a retry can never apply too.

use crate::conn::{Conn, Val};
use crate::{Result, Store, StoreError};
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
    /// The token `idempotency_begin` handed to this request.
    pub owner: String,
    claimed: Arc<AtomicBool>,
}

impl IdemMark {
    pub fn new(scope: String, key: String, owner: String) -> Self {
        IdemMark {
            scope,
            key,
            owner,
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

/// A claim on the current request's key for the write about to run. It is handed back
/// (`release`) if that write does not commit, so a later write of the same request carries
/// the mark instead.
pub(crate) struct IdemClaim {
    pub scope: String,
    pub key: String,
    pub owner: String,
    flag: Arc<AtomicBool>,
}

impl IdemClaim {
    pub fn release(&self) {
        self.flag.store(false, Ordering::SeqCst);
    }
}

pub(crate) fn claim_current() -> Option<IdemClaim> {
    CURRENT
        .try_with(|m| {
            (!m.claimed.swap(true, Ordering::SeqCst)).then(|| IdemClaim {
                scope: m.scope.clone(),
                key: m.key.clone(),
                owner: m.owner.clone(),
                flag: m.claimed.clone(),
            })
        })
        .ok()
        .flatten()
}

/// Marks the key applied inside the effect's transaction. If the request no longer owns
/// the key (a retry took it over after the request stalled), the whole write aborts, so
/// the effect can never happen twice.
pub(crate) fn mark_applied(c: &mut dyn Conn, scope: &str, key: &str, owner: &str) -> Result<()> {
    let n = c.execute(
        "UPDATE idempotency SET state = 'applied' WHERE scope = $1 AND idem_key = $2 AND owner = $3 AND state = 'in_flight'",
        &[scope.into(), key.into(), owner.into()],
    )?;
    if n != 1 {
        return Err(StoreError::Conflict {
            key: "idempotency_key_in_flight",
            message: "Request superseded".into(),
            details: "Another request with this Idempotency-Key took over; this one was not applied.".into(),
        });
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdemBegin {
    /// The caller owns the key now, with this token, and must complete it.
    Proceed { owner: String },
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
        let started = self.sole_server_since();
        self.write_unmarked(move |c| {
            c.lock_key(&format!("idem:{scope}:{key}"))?;
            let now = time::now_string();
            let owner = tessera_domain::secrets::new_token();
            let row = c.query_opt(
                "SELECT request_hash, state, status, body, created_at FROM idempotency WHERE scope = $1 AND idem_key = $2",
                &[scope.clone().into(), key.clone().into()],
            )?;
            let Some(row) = row else {
                c.execute(
                    "INSERT INTO idempotency (scope, idem_key, request_hash, state, owner, created_at) VALUES ($1, $2, $3, 'in_flight', $4, $5)",
                    &[scope.into(), key.into(), request_hash.into(), owner.clone().into(), now.into()],
                )?;
                return Ok(IdemBegin::Proceed { owner });
            };
            let created_at = row.text(4)?;
            let expired = created_at < ago(IDEMPOTENCY_TTL_SECS);
            let state = row.text(1)?;
            // A record from before this process started has no request working on it when
            // this process is the only one that can serve the database (SQLite: `serve`
            // holds the data directory's lock), so a retry after a crash need not wait.
            let orphaned = started.as_deref().is_some_and(|s| created_at.as_str() < s);
            let old = orphaned || created_at < ago(IDEMPOTENCY_IN_FLIGHT_STALE_SECS);
            // Only a record whose effect never committed ('in_flight', not 'applied') may be
            // taken over; the new owner token fences off the stalled request's writes.
            let stale = state == "in_flight" && old;
            if expired || (stale && row.text(0)? == request_hash) {
                c.execute(
                    "UPDATE idempotency SET request_hash = $1, state = 'in_flight', owner = $2, status = NULL, body = NULL, created_at = $3 \
                     WHERE scope = $4 AND idem_key = $5",
                    &[request_hash.into(), owner.clone().into(), now.into(), scope.into(), key.into()],
                )?;
                return Ok(IdemBegin::Proceed { owner });
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

    /// Records the response of the request that owns the key, for replay. A response that
    /// should not be replayed (a server error, throttling, a deadline) is not stored: if
    /// the request's effect never committed the key is released for a retry; if it did,
    /// the record stays `applied`, and retries learn that (409 `idempotency_key_applied`)
    /// instead of running it twice or replaying a misleading error. A request that lost
    /// the key to a retry changes nothing.
    pub async fn idempotency_complete(
        &self,
        scope: String,
        key: String,
        owner: String,
        status: u16,
        body: String,
        replayable: bool,
    ) -> Result<()> {
        self.write_unmarked(move |c| {
            if replayable {
                c.execute(
                    "UPDATE idempotency SET state = 'done', status = $1, body = $2 WHERE scope = $3 AND idem_key = $4 AND owner = $5",
                    &[Val::Int(status as i64), body.into(), scope.into(), key.into(), owner.into()],
                )?;
            } else {
                c.execute(
                    "DELETE FROM idempotency WHERE scope = $1 AND idem_key = $2 AND owner = $3 AND state = 'in_flight'",
                    &[scope.into(), key.into(), owner.into()],
                )?;
            }
            Ok(())
        })
        .await
    }

    /// Drops records past their 24 hours. Run every half minute, so each call deletes a
    /// little and never holds the writer long.
    pub async fn idempotency_purge_expired(&self) -> Result<u64> {
        self.write_unmarked(|c| c.execute("DELETE FROM idempotency WHERE created_at < $1", &[ago(IDEMPOTENCY_TTL_SECS).into()]))
            .await
    }
}
