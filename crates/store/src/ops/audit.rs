//! The audit log: every mutation made through the API records who made it, what it was,
//! which resource and which fields, when, and the request id. The entry is written by the
//! request's first write, in that write's transaction (like the idempotency mark), so a
//! change and its audit entry commit together or not at all. Entries are never updated
//! or deleted through Tessera.

use crate::conn::{Conn, Row, Val};
use crate::{Result, Store};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tessera_domain::ids::new_id;
use tessera_domain::time::now_string;

/// What the API knows about the mutation being served.
#[derive(Debug, Clone)]
pub struct AuditMark {
    /// The project id, or `management` for organization-level calls.
    pub scope: String,
    /// `key:<app_id>` or `management`.
    pub actor: String,
    /// `POST /v1/vouchers/{code}`: the method and the route.
    pub action: String,
    /// The path actually called.
    pub resource: String,
    /// The top-level fields of the JSON body (names only, never values).
    pub fields: Vec<String>,
    claimed: Arc<AtomicBool>,
}

impl AuditMark {
    pub fn new(scope: String, actor: String, action: String, resource: String, fields: Vec<String>) -> Self {
        AuditMark {
            scope,
            actor,
            action,
            resource,
            fields,
            claimed: Arc::new(AtomicBool::new(false)),
        }
    }
}

tokio::task_local! {
    pub static AUDIT: AuditMark;
}

pub(crate) struct AuditClaim {
    mark: AuditMark,
}

impl AuditClaim {
    pub fn release(&self) {
        self.mark.claimed.store(false, Ordering::SeqCst);
    }
}

pub(crate) fn claim_current() -> Option<AuditClaim> {
    AUDIT
        .try_with(|m| (!m.claimed.swap(true, Ordering::SeqCst)).then(|| AuditClaim { mark: m.clone() }))
        .ok()
        .flatten()
}

/// Writes the entry. `resource` replaces the path the client called when the write named
/// the resource itself (`Store::write_naming`), for paths that may carry personal data.
pub(crate) fn record(c: &mut dyn Conn, claim: &AuditClaim, request_id: &str, resource: Option<&str>) -> Result<()> {
    let m = &claim.mark;
    c.execute(
        "INSERT INTO audit_log (scope, id, actor, action, resource, fields, request_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            m.scope.clone().into(),
            new_id("audit").into(),
            m.actor.clone().into(),
            m.action.clone().into(),
            resource.unwrap_or(&m.resource).into(),
            json!(m.fields).to_string().into(),
            request_id.into(),
            now_string().into(),
        ],
    )?;
    Ok(())
}

fn view(r: &Row) -> Result<Value> {
    Ok(json!({
        "id": r.text(0)?, "object": "audit_entry", "actor": r.text(1)?, "action": r.text(2)?,
        "resource": r.text(3)?, "fields": serde_json::from_str::<Value>(&r.text(4)?).unwrap_or(Value::Null),
        "request_id": r.text(5)?, "created_at": r.text(6)?,
    }))
}

/// Filters for listing the log.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub request_id: Option<String>,
    pub action: Option<String>,
    pub actor: Option<String>,
    /// Only entries created before this time (for paging back).
    pub before: Option<String>,
    pub limit: i64,
}

impl Store {
    /// Entries of one scope, newest first.
    pub async fn audit_log(&self, scope: String, f: AuditFilter) -> Result<Vec<Value>> {
        self.read(move |c| {
            let rows = c.query(
                "SELECT id, actor, action, resource, fields, request_id, created_at FROM audit_log \
                 WHERE scope = $1 AND ($2 = '' OR request_id = $2) AND ($3 = '' OR action = $3) AND ($4 = '' OR actor = $4) \
                 AND created_at < $5 ORDER BY created_at DESC, id DESC LIMIT $6",
                &[
                    scope.into(),
                    f.request_id.unwrap_or_default().into(),
                    f.action.unwrap_or_default().into(),
                    f.actor.unwrap_or_default().into(),
                    // A bound the planner can seek to, even when there is none: with
                    // `($5 = '' OR created_at < $5)` every page back read from the newest.
                    f.before.unwrap_or_else(|| "9999".into()).into(),
                    Val::Int(f.limit),
                ],
            )?;
            rows.iter().map(view).collect()
        })
        .await
    }
}
