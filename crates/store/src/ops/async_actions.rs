//! Async actions: long jobs (code generation, imports, exports) recorded in a table so
//! their status survives restarts and clients can poll them.

use crate::conn::{Conn, Row, Val};
use crate::ops::org::Tenant;
use crate::{Result, Store, StoreError};
use serde_json::Value;
use tessera_domain::ids::new_id;
use tessera_domain::time::now_string;

pub fn create(c: &mut dyn Conn, p: &str, kind: &str, params: &Value) -> Result<String> {
    let id = new_id("aa");
    c.execute(
        "INSERT INTO async_actions (project_id, id, type, status, progress, params, created_at) VALUES ($1, $2, $3, 'ENQUEUED', 0, $4, $5)",
        &[
            p.into(),
            id.clone().into(),
            kind.into(),
            params.to_string().into(),
            now_string().into(),
        ],
    )?;
    Ok(id)
}

pub fn update(c: &mut dyn Conn, p: &str, id: &str, status: &str, progress: i64, result: Option<&Value>) -> Result<()> {
    c.execute(
        "UPDATE async_actions SET status = $1, progress = $2, result = $3, updated_at = $4 WHERE project_id = $5 AND id = $6",
        &[
            status.into(),
            Val::Int(progress),
            result.map(|r| r.to_string()).into(),
            now_string().into(),
            p.into(),
            id.into(),
        ],
    )?;
    Ok(())
}

/// An action whose runner has not reported progress for this long is presumed dead (its
/// process stopped) and may be claimed by another runner. Runners report at least once
/// per chunk, which takes well under a second.
pub const STALE_SECS: i64 = 120;

fn ago(secs: i64) -> String {
    let now = tessera_domain::time::now();
    tessera_domain::time::format(now.checked_sub(jiff::SignedDuration::from_secs(secs)).unwrap_or(now))
}

/// Takes an action for running: only one runner (on any node) gets it.
pub fn claim(c: &mut dyn Conn, p: &str, id: &str) -> Result<bool> {
    let n = c.execute(
        "UPDATE async_actions SET status = 'IN_PROGRESS', updated_at = $1 WHERE project_id = $2 AND id = $3 \
         AND (status = 'ENQUEUED' OR (status = 'IN_PROGRESS' AND (updated_at IS NULL OR updated_at < $4)))",
        &[now_string().into(), p.into(), id.into(), ago(STALE_SECS).into()],
    )?;
    Ok(n == 1)
}

/// An async action as stored.
#[derive(Debug, Clone)]
pub struct AsyncAction {
    pub id: String,
    pub project_id: String,
    pub kind: String,
    pub status: String,
    pub progress: i64,
    pub params: Value,
    pub result: Option<Value>,
    pub created_at: String,
    pub updated_at: Option<String>,
}

fn from_row(r: &Row) -> Result<AsyncAction> {
    let parse = |s: String| serde_json::from_str::<Value>(&s).map_err(|e| StoreError::Internal(format!("async action JSON: {e}")));
    Ok(AsyncAction {
        project_id: r.text(0)?,
        id: r.text(1)?,
        kind: r.text(2)?,
        status: r.text(3)?,
        progress: r.int(4)?,
        params: parse(r.text(5)?)?,
        result: r.opt_text(6)?.map(parse).transpose()?,
        created_at: r.text(7)?,
        updated_at: r.opt_text(8)?,
    })
}

const COLS: &str = "project_id, id, type, status, progress, params, result, created_at, updated_at";

impl Store {
    pub async fn get_async_action(&self, t: &Tenant, id: String) -> Result<AsyncAction> {
        let p = t.project_id().to_string();
        self.read(move |c| {
            let r = c
                .query_opt(
                    &format!("SELECT {COLS} FROM async_actions WHERE project_id = $1 AND id = $2"),
                    &[p.into(), id.clone().into()],
                )?
                .ok_or_else(|| StoreError::not_found("async_action", id))?;
            from_row(&r)
        })
        .await
    }

    pub async fn list_async_actions(&self, t: &Tenant, limit: u32, end_date: Option<String>) -> Result<(Vec<AsyncAction>, bool)> {
        let p = t.project_id().to_string();
        self.read(move |c| {
            let end = end_date.unwrap_or_else(|| "9999".into());
            let mut rows = c.query(
                &format!(
                    "SELECT {COLS} FROM async_actions WHERE project_id = $1 AND created_at < $2 ORDER BY created_at DESC, id DESC LIMIT $3"
                ),
                &[p.into(), end.into(), Val::Int(limit as i64 + 1)],
            )?;
            let more = rows.len() > limit as usize;
            rows.truncate(limit as usize);
            Ok((rows.iter().map(from_row).collect::<Result<Vec<_>>>()?, more))
        })
        .await
    }

    /// Records an action that completed within the request (for endpoints that answer with
    /// an async action id, as Voucherify's do).
    pub async fn record_completed_action(&self, t: &Tenant, kind: &'static str, params: Value, result: Value) -> Result<String> {
        let p = t.project_id().to_string();
        self.write(move |c| {
            let id = create(c, &p, kind, &params)?;
            update(c, &p, &id, "DONE", 100, Some(&result))?;
            Ok(id)
        })
        .await
    }

    /// Queues generation of `count` more codes for a campaign.
    pub async fn enqueue_generation(&self, t: &Tenant, campaign: String, count: u64) -> Result<String> {
        let p = t.project_id().to_string();
        self.write(move |c| {
            let rec = crate::ops::vouchers::get_campaign_rec(c, &p, &campaign)?;
            tessera_domain::voucher::check_holds_codes(&rec.campaign)?;
            let space = tessera_domain::codes::CodeSpace::parse(&rec.campaign.voucher.code_config)?;
            space.check_capacity(count + rec.vouchers_count.max(0) as u64)?;
            let max = tessera_domain::voucher::MAX_VOUCHERS_PER_CAMPAIGN;
            if rec.vouchers_count.max(0) as u64 + count > max {
                return Err(StoreError::Invalid(tessera_domain::InvalidInput::payload(format!(
                    "a campaign may hold at most {max} vouchers"
                ))));
            }
            c.execute(
                "UPDATE campaigns SET generation_status = 'IN_PROGRESS' WHERE project_id = $1 AND id = $2",
                &[p.clone().into(), rec.campaign.id.clone().into()],
            )?;
            create(
                c,
                &p,
                "CAMPAIGN.VOUCHERS_GENERATE",
                &serde_json::json!({"campaign_id": rec.campaign.id, "count": count, "target_total": rec.vouchers_count + count as i64}),
            )
        })
        .await
    }

    /// Creates an import action whose rows arrive in batches (`stage_import_rows`); it
    /// starts only when `finish_staging` says all rows are in.
    pub async fn begin_import(&self, t: &Tenant, kind: &'static str, params: Value) -> Result<String> {
        let p = t.project_id().to_string();
        self.write(move |c| {
            let id = create(c, &p, kind, &params)?;
            c.execute(
                "UPDATE async_actions SET status = 'STAGING' WHERE project_id = $1 AND id = $2",
                &[p.into(), id.clone().into()],
            )?;
            Ok(id)
        })
        .await
    }

    pub async fn stage_import_rows(&self, t: &Tenant, action: String, rows: Vec<(i64, Value)>) -> Result<()> {
        let p = t.project_id().to_string();
        self.write_unmarked(move |c| {
            for (n, row) in rows {
                c.execute(
                    "INSERT INTO import_rows (project_id, action_id, row_no, payload) VALUES ($1, $2, $3, $4) ON CONFLICT (project_id, action_id, row_no) DO NOTHING",
                    &[p.clone().into(), action.clone().into(), Val::Int(n), row.to_string().into()],
                )?;
            }
            Ok(())
        })
        .await
    }

    /// Records how many rows a staged import holds (for its progress).
    pub async fn set_import_size(&self, t: &Tenant, action: String, rows: i64) -> Result<()> {
        let p = t.project_id().to_string();
        self.write_unmarked(move |c| {
            let row = c.query_one(
                "SELECT params FROM async_actions WHERE project_id = $1 AND id = $2",
                &[p.clone().into(), action.clone().into()],
            )?;
            let mut params: Value = serde_json::from_str(&row.text(0)?).map_err(|e| StoreError::Internal(e.to_string()))?;
            params["rows"] = rows.into();
            c.execute(
                "UPDATE async_actions SET params = $1 WHERE project_id = $2 AND id = $3",
                &[params.to_string().into(), p.into(), action.into()],
            )?;
            Ok(())
        })
        .await
    }

    /// Marks a staged import ready (or failed, with the reason, when the upload broke).
    pub async fn finish_staging(&self, t: &Tenant, action: String, error: Option<String>) -> Result<()> {
        let p = t.project_id().to_string();
        self.write_unmarked(move |c| {
            match error {
                None => {
                    c.execute(
                        "UPDATE async_actions SET status = 'ENQUEUED' WHERE project_id = $1 AND id = $2",
                        &[p.into(), action.into()],
                    )?;
                }
                Some(e) => {
                    update(c, &p, &action, "FAILED", 100, Some(&serde_json::json!({"message": e})))?;
                    c.execute(
                        "DELETE FROM import_rows WHERE project_id = $1 AND action_id = $2",
                        &[p.into(), action.into()],
                    )?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Actions nobody is running (all projects): queued ones older than a few seconds
    /// (their request's runner should have claimed them) and stale running ones.
    pub async fn orphaned_async_actions(&self, queued_for_secs: i64) -> Result<Vec<AsyncAction>> {
        self.read(move |c| {
            c.query(
                &format!(
                    "SELECT {COLS} FROM async_actions WHERE (status = 'ENQUEUED' AND created_at < $1) \
                     OR (status = 'IN_PROGRESS' AND (updated_at IS NULL OR updated_at < $2)) ORDER BY created_at LIMIT 100"
                ),
                &[ago(queued_for_secs).into(), ago(STALE_SECS).into()],
            )?
            .iter()
            .map(from_row)
            .collect()
        })
        .await
    }

    pub async fn claim_async_action(&self, project_id: String, id: String) -> Result<bool> {
        self.write_unmarked(move |c| claim(c, &project_id, &id)).await
    }

    pub async fn update_async_action(
        &self,
        project_id: String,
        id: String,
        status: &'static str,
        progress: i64,
        result: Option<Value>,
    ) -> Result<()> {
        self.write_unmarked(move |c| update(c, &project_id, &id, status, progress, result.as_ref()))
            .await
    }
}
