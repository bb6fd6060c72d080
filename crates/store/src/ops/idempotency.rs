//! `Idempotency-Key` records: one per (scope, key), kept 24 hours.

use crate::conn::Val;
use crate::{Result, Store};
use tessera_domain::limits::{IDEMPOTENCY_IN_FLIGHT_STALE_SECS, IDEMPOTENCY_TTL_SECS};
use tessera_domain::time;

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
    pub async fn idempotency_begin(
        &self,
        scope: String,
        key: String,
        request_hash: String,
    ) -> Result<IdemBegin> {
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
            let stale = state == "in_flight" && created_at < ago(IDEMPOTENCY_IN_FLIGHT_STALE_SECS);
            if expired || (stale && row.text(0)? == request_hash) {
                // An expired record is forgotten; an in-flight one whose process died is
                // taken over by the retry.
                c.execute(
                    "UPDATE idempotency SET request_hash = $1, state = 'in_flight', status = NULL, body = NULL, created_at = $2 WHERE scope = $3 AND idem_key = $4",
                    &[request_hash.into(), now.into(), scope.into(), key.into()],
                )?;
                return Ok(IdemBegin::Proceed);
            }
            // While the first request runs, any request with its key waits its turn.
            if state == "in_flight" && !stale {
                return Ok(IdemBegin::InFlight);
            }
            if row.text(0)? != request_hash {
                return Ok(IdemBegin::Mismatch);
            }
            let status = row.opt_int(2)?.unwrap_or(200);
            Ok(IdemBegin::Replay { status: u16::try_from(status).unwrap_or(200), body: row.opt_text(3)?.unwrap_or_default() })
        })
        .await
    }

    pub async fn idempotency_finish(
        &self,
        scope: String,
        key: String,
        status: u16,
        body: String,
    ) -> Result<()> {
        self.write(move |c| {
            c.execute(
                "UPDATE idempotency SET state = 'done', status = $1, body = $2 WHERE scope = $3 AND idem_key = $4",
                &[Val::Int(status as i64), body.into(), scope.into(), key.into()],
            )?;
            Ok(())
        })
        .await
    }

    /// Forgets an in-flight key whose request ended without a response worth replaying
    /// (a server error), so the client's retry runs again.
    pub async fn idempotency_release(&self, scope: String, key: String) -> Result<()> {
        self.write(move |c| {
            c.execute("DELETE FROM idempotency WHERE scope = $1 AND idem_key = $2 AND state = 'in_flight'", &[scope.into(), key.into()])?;
            Ok(())
        })
        .await
    }

    /// Drops records past their 24 hours. Run every minute, so each call deletes about a
    /// minute's worth of records and never holds the writer long.
    pub async fn idempotency_purge_expired(&self) -> Result<u64> {
        self.write(|c| {
            c.execute(
                "DELETE FROM idempotency WHERE created_at < $1",
                &[ago(IDEMPOTENCY_TTL_SECS).into()],
            )
        })
        .await
    }
}
