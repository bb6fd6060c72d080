//! CSV exports of vouchers, redemptions, customers, publications and orders.
//!
//! An export is a row in `exports` (its `data` is the export object) plus an async action
//! of type `EXPORT` created in the same transaction. The action reads the exported table
//! in keyset pages of 1,000 rows, writes the matching rows as CSV, and stores the text in
//! `export_chunks` about 1 MiB at a time, so neither the runner nor a download ever holds
//! the whole file. A runner that starts (first run or resume after a restart) drops the
//! chunks an earlier run left and rebuilds from the beginning: each run carries a fresh
//! run id in the export object, and a chunk is written only while the export still names
//! that run, so a stalled runner that wakes up after its successor took over writes
//! nothing.
//!
//! The download needs no API key: the token in the export's URL names the project and is
//! signed with the export's own key (see `tessera_domain::export`), so it opens that one
//! export and nothing else, until it expires.

use crate::conn::{Conn, Row, Val};
use crate::ops::async_actions::{self, AsyncAction};
use crate::ops::org::Tenant;
use crate::{Result, Store, StoreError};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use tessera_domain::export::{self as ex, ExportSpec, ExportedObject};
use tessera_domain::ids::new_id;
use tessera_domain::time::now_string;

/// The async action type that builds an export.
pub const KIND: &str = "EXPORT";
/// CSV bytes per stored chunk (a chunk may exceed it by one row).
pub const DEFAULT_CHUNK_BYTES: usize = 1 << 20;
/// Rows read per page.
const PAGE: i64 = 1000;

/// An export as stored.
#[derive(Debug, Clone)]
pub struct ExportRecord {
    pub project_id: String,
    pub id: String,
    pub status: String,
    /// The export object, with its internal keys (`_internal`: download key, run id,
    /// sizes).
    pub stored: Value,
}

impl ExportRecord {
    fn from_row(project_id: &str, r: &Row) -> Result<Self> {
        Ok(ExportRecord {
            project_id: project_id.to_string(),
            id: r.text(0)?,
            status: r.text(1)?,
            stored: r.json(2)?,
        })
    }

    pub fn download_key(&self) -> &str {
        ex::internal(&self.stored).get("download_key").and_then(Value::as_str).unwrap_or("")
    }

    /// A fresh download token valid until `expires` (unix seconds).
    pub fn token(&self, expires: i64) -> String {
        ex::download_token(self.download_key(), &self.project_id, &self.id, expires)
    }

    /// The export object clients see; `url` is the download URL while it is DONE.
    pub fn view(&self, url: Option<String>) -> Value {
        ex::public_view(&self.stored, &self.status, url)
    }
}

/// Proof that a download token was checked: only `authorize_export_download` makes one.
#[derive(Debug, Clone)]
pub struct ExportDownload {
    project_id: String,
    export_id: String,
    chunks: i64,
}

impl ExportDownload {
    pub fn export_id(&self) -> &str {
        &self.export_id
    }

    pub fn chunks(&self) -> i64 {
        self.chunks
    }
}

fn load(c: &mut dyn Conn, p: &str, id: &str) -> Result<Option<ExportRecord>> {
    c.query_opt(
        "SELECT id, status, data FROM exports WHERE project_id = $1 AND id = $2",
        &[p.into(), id.into()],
    )?
    .map(|r| ExportRecord::from_row(p, &r))
    .transpose()
}

fn save(c: &mut dyn Conn, rec: &ExportRecord) -> Result<()> {
    let mut stored = rec.stored.clone();
    stored["status"] = json!(rec.status);
    c.execute(
        "UPDATE exports SET status = $1, data = $2 WHERE project_id = $3 AND id = $4",
        &[
            rec.status.clone().into(),
            stored.to_string().into(),
            rec.project_id.clone().into(),
            rec.id.clone().into(),
        ],
    )?;
    Ok(())
}

fn lock(c: &mut dyn Conn, p: &str, id: &str) -> Result<()> {
    c.lock_key(&format!("export:{p}:{id}"))
}

/// Deletes an export and its CSV in the caller's transaction; false if there was none. A
/// run still building it finds it gone at its next chunk and stops.
pub(crate) fn delete(c: &mut dyn Conn, p: &str, id: &str) -> Result<bool> {
    lock(c, p, id)?;
    let n = c.execute("DELETE FROM exports WHERE project_id = $1 AND id = $2", &[p.into(), id.into()])?;
    c.execute(
        "DELETE FROM export_chunks WHERE project_id = $1 AND export_id = $2",
        &[p.into(), id.into()],
    )?;
    Ok(n > 0)
}

fn set_internal(stored: &mut Value, key: &str, v: Value) {
    if !stored["_internal"].is_object() {
        stored["_internal"] = json!({});
    }
    stored["_internal"][key] = v;
}

/// Where a keyset scan stands: the last row's `(created_at, id)`.
type Cursor = Option<(String, String)>;

struct Page {
    rows: Vec<Value>,
    scanned: usize,
    next: Cursor,
}

/// `IN ($k, $k+1, ...)` over `ids`, appended to `params`.
fn in_list(ids: &[String], params: &mut Vec<Val>) -> String {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        params.push(id.into());
        out.push(format!("${}", params.len()));
    }
    out.join(", ")
}

fn campaign_names(c: &mut dyn Conn, p: &str, ids: &HashSet<String>) -> Result<HashMap<String, String>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<String> = ids.iter().cloned().collect();
    let mut params: Vec<Val> = vec![p.into()];
    let list = in_list(&ids, &mut params);
    let rows = c.query(
        &format!("SELECT id, name FROM campaigns WHERE project_id = $1 AND id IN ({list})"),
        &params,
    )?;
    rows.iter().map(|r| Ok((r.text(0)?, r.text(1)?))).collect()
}

fn customer_source_ids(c: &mut dyn Conn, p: &str, ids: &HashSet<String>) -> Result<HashMap<String, Option<String>>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<String> = ids.iter().cloned().collect();
    let mut params: Vec<Val> = vec![p.into()];
    let list = in_list(&ids, &mut params);
    let rows = c.query(
        &format!("SELECT id, source_id FROM customers WHERE project_id = $1 AND id IN ({list})"),
        &params,
    )?;
    rows.iter().map(|r| Ok((r.text(0)?, r.opt_text(1)?))).collect()
}

/// A customer's redemption counts, as the export's `redemptions_total_*` fields define
/// them: each redeemed code or tier counts once (the parent of a stacked redemption does
/// not), a rollback counts under `rolled_back` and as a rollback attempt.
fn redemption_counts(c: &mut dyn Conn, p: &str, customer_id: &str) -> Result<Value> {
    let rows = c.query(
        "SELECT object, result, status, COUNT(*) FROM redemptions WHERE project_id = $1 AND customer_id = $2 \
         AND (voucher_id IS NOT NULL OR promotion_tier_id IS NOT NULL OR result = 'FAILURE') GROUP BY object, result, status",
        &[p.into(), customer_id.into()],
    )?;
    let (mut ok, mut failed, mut rolled_back, mut rb_ok, mut rb_failed) = (0i64, 0i64, 0i64, 0i64, 0i64);
    for r in &rows {
        let (object, result, status, n) = (r.text(0)?, r.text(1)?, r.text(2)?, r.int(3)?);
        match (object.as_str(), result.as_str()) {
            ("redemption", "SUCCESS") => {
                ok += n;
                if status == "ROLLED_BACK" {
                    rolled_back += n;
                }
            }
            ("redemption", _) => failed += n,
            (_, "SUCCESS") => rb_ok += n,
            _ => rb_failed += n,
        }
    }
    Ok(json!({
        "total_redeemed": ok + failed, "total_failed": failed, "total_succeeded": ok,
        "total_rolled_back": rolled_back, "total_rollback_failed": rb_failed, "total_rollback_succeeded": rb_ok,
    }))
}

fn table(object: ExportedObject) -> &'static str {
    match object {
        ExportedObject::Voucher => "vouchers",
        ExportedObject::Redemption => "redemptions",
        ExportedObject::Customer => "customers",
        ExportedObject::Publication => "publications",
        ExportedObject::Order => "orders",
    }
}

/// One page of rows after `cursor`, as the views `tessera_domain::export` reads, with
/// the filters applied. Only rows created up to `bound` (when the export was created)
/// are read, so rows added while it runs do not move its end.
fn read_page(c: &mut dyn Conn, t: &Tenant, spec: &ExportSpec, cursor: &Cursor, bound: &str, limit: i64) -> Result<Page> {
    let p = t.project_id();
    let object = spec.object;
    let mut params: Vec<Val> = vec![p.into(), bound.into()];
    let mut clauses = vec!["project_id = $1".to_string(), "created_at <= $2".to_string()];
    let (lo, hi) = spec.filters.created_window();
    if let Some(lo) = lo {
        params.push(lo.into());
        clauses.push(format!("created_at > ${}", params.len()));
    }
    if let Some(hi) = hi {
        params.push(hi.into());
        clauses.push(format!("created_at < ${}", params.len()));
    }
    let (dir, cmp) = if spec.descending { ("DESC", "<") } else { ("ASC", ">") };
    if let Some((created, id)) = cursor {
        params.push(id.into());
        let id_param = params.len();
        if object.ordered_by_id() {
            clauses.push(format!("id {cmp} ${id_param}"));
        } else {
            params.push(created.into());
            let at = params.len();
            // Written so the created_at index bounds the scan on both engines.
            clauses.push(format!(
                "created_at {cmp}= ${at} AND (created_at {cmp} ${at} OR id {cmp} ${id_param})"
            ));
        }
    }
    params.push(Val::Int(limit));
    let n = params.len();
    let w = clauses.join(" AND ");
    let order = if object.ordered_by_id() {
        format!("id {dir}")
    } else {
        format!("created_at {dir}, id {dir}")
    };
    let columns = match object {
        ExportedObject::Voucher => crate::ops::vouchers::VOUCHER_COLUMNS,
        ExportedObject::Redemption => "id, created_at, data, campaign_id, parent_id, order_id, promotion_tier_id",
        ExportedObject::Publication => "id, created_at, data, campaign_id",
        ExportedObject::Customer | ExportedObject::Order => "id, created_at, data",
    };
    let rows = c.query(
        &format!("SELECT {columns} FROM {} WHERE {w} ORDER BY {order} LIMIT ${n}", table(object)),
        &params,
    )?;
    let scanned = rows.len();
    let next = match rows.last() {
        None => None,
        Some(r) if object == ExportedObject::Voucher => Some((r.text(11)?, r.text(0)?)),
        Some(r) => Some((r.text(1)?, r.text(0)?)),
    };
    let mut views: Vec<Value> = Vec::with_capacity(rows.len());
    match object {
        ExportedObject::Voucher => {
            let mut campaigns = HashMap::new();
            for r in &rows {
                let rec = crate::ops::vouchers::assemble(c, p, r, &mut campaigns)?;
                views.push(crate::ops::views::voucher(&rec));
            }
            if ex::needs(spec, "customer_source_id") {
                let holders: HashSet<String> = views.iter().filter_map(|v| v["holder_id"].as_str().map(str::to_string)).collect();
                let sources = customer_source_ids(c, p, &holders)?;
                for v in &mut views {
                    let s = v["holder_id"].as_str().and_then(|h| sources.get(h).cloned().flatten());
                    v["_x"] = json!({"customer_source_id": s});
                }
            }
        }
        ExportedObject::Redemption | ExportedObject::Publication => {
            let ids: HashSet<String> = rows.iter().filter_map(|r| r.opt_text(3).ok().flatten()).collect();
            let names = campaign_names(c, p, &ids)?;
            for r in &rows {
                let mut v: Value = r.json(2)?;
                let campaign_id = r.opt_text(3)?;
                let mut x = json!({
                    "campaign_id": campaign_id,
                    "campaign_name": campaign_id.as_ref().and_then(|id| names.get(id)),
                    "created_at": r.text(1)?,
                });
                if object == ExportedObject::Redemption {
                    x["parent_id"] = json!(r.opt_text(4)?);
                    x["order_id"] = json!(r.opt_text(5)?);
                    x["promotion_tier_id"] = json!(r.opt_text(6)?);
                }
                v["_x"] = x;
                views.push(v);
            }
        }
        ExportedObject::Customer => {
            let orders = ex::needs(spec, "orders_");
            let redemptions = ex::needs(spec, "redemptions_");
            let mut summaries = if orders {
                let ids: Vec<String> = rows.iter().map(|r| r.text(0)).collect::<Result<_>>()?;
                crate::ops::customers::summaries(c, p, &ids)?
            } else {
                HashMap::new()
            };
            for r in &rows {
                let mut v: Value = r.json(2)?;
                let id = r.text(0)?;
                let mut x = json!({"loyalty": {"points": 0, "referred_customers": 0}});
                if orders {
                    x["orders"] = serde_json::to_value(summaries.remove(&id).unwrap_or_default().orders)
                        .map_err(|e| StoreError::Internal(e.to_string()))?;
                }
                if redemptions {
                    x["redemptions"] = redemption_counts(c, p, &id)?;
                }
                v["_x"] = x;
                views.push(v);
            }
        }
        ExportedObject::Order => {
            for r in &rows {
                views.push(r.json(2)?);
            }
        }
    }
    views.retain(|v| spec.filters.matches(object, v));
    Ok(Page {
        rows: views,
        scanned,
        next: if (scanned as i64) < limit { None } else { next },
    })
}

/// How a run ended when it did not fail.
enum Outcome {
    Done {
        rows: u64,
        bytes: u64,
        chunks: i64,
    },
    /// The export was deleted while it ran.
    Gone,
    /// Another runner took the export over.
    Superseded,
}

fn csv_line(fields: &[String]) -> Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::with_capacity(128));
    w.write_record(fields).map_err(|e| StoreError::Internal(format!("CSV: {e}")))?;
    w.into_inner().map_err(|e| StoreError::Internal(format!("CSV: {e}")))
}

impl Store {
    /// CSV bytes per stored chunk for exports this store builds from now on (tests make
    /// it small to exercise chunking).
    pub fn set_export_chunk_bytes(&self, bytes: usize) {
        self.export_chunk_bytes.store(bytes.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Records an export (SCHEDULED) and the async action that builds it, in one
    /// transaction. Returns the export and the action id to start.
    pub async fn create_export(&self, t: &Tenant, spec: ExportSpec) -> Result<(ExportRecord, String)> {
        let p = t.project_id().to_string();
        self.write(move |c| {
            c.lock_key(&format!("exports:{p}"))?;
            let unfinished = c
                .query_one(
                    "SELECT COUNT(*) FROM exports WHERE project_id = $1 AND status IN ('SCHEDULED', 'IN_PROGRESS')",
                    &[p.clone().into()],
                )?
                .int(0)?;
            if unfinished >= ex::MAX_UNFINISHED_PER_PROJECT {
                return Err(StoreError::Conflict {
                    key: "too_many_exports",
                    message: "Too many exports in progress".into(),
                    details: format!(
                        "A project may have at most {} exports scheduled or in progress; retry when one is DONE.",
                        ex::MAX_UNFINISHED_PER_PROJECT
                    ),
                });
            }
            let id = new_id("exp");
            let stored = json!({
                "id": id, "object": "export", "created_at": now_string(), "status": "SCHEDULED", "channel": "API",
                "exported_object": spec.object.as_str(), "parameters": spec.parameters, "result": null, "user_id": null,
                "_internal": {"download_key": ex::new_download_key()},
            });
            c.execute(
                "INSERT INTO exports (project_id, id, exported_object, status, created_at, data) VALUES ($1, $2, $3, 'SCHEDULED', $4, $5)",
                &[
                    p.clone().into(),
                    id.clone().into(),
                    spec.object.as_str().into(),
                    stored["created_at"].as_str().unwrap_or_default().into(),
                    stored.to_string().into(),
                ],
            )?;
            let action = async_actions::create(c, &p, KIND, &json!({"export_id": id}))?;
            Ok((
                ExportRecord {
                    project_id: p,
                    id,
                    status: "SCHEDULED".into(),
                    stored,
                },
                action,
            ))
        })
        .await
    }

    pub async fn get_export(&self, t: &Tenant, id: String) -> Result<ExportRecord> {
        let p = t.project_id().to_string();
        self.read(move |c| load(c, &p, &id)?.ok_or_else(|| StoreError::not_found("export", id)))
            .await
    }

    /// A page of the project's exports and their total. `order` is `created_at`,
    /// `-created_at`, `status` or `-status`.
    pub async fn list_exports(&self, t: &Tenant, limit: u32, page: u32, order: String) -> Result<(Vec<ExportRecord>, i64)> {
        let p = t.project_id().to_string();
        self.read(move |c| {
            let total = c
                .query_one("SELECT COUNT(*) FROM exports WHERE project_id = $1", &[p.clone().into()])?
                .int(0)?;
            let by = match order.as_str() {
                "created_at" => "created_at ASC, id ASC",
                "status" => "status ASC, created_at DESC, id DESC",
                "-status" => "status DESC, created_at DESC, id DESC",
                _ => "created_at DESC, id DESC",
            };
            let rows = c.query(
                &format!("SELECT id, status, data FROM exports WHERE project_id = $1 ORDER BY {by} LIMIT $2 OFFSET $3"),
                &[
                    p.clone().into(),
                    Val::Int(limit as i64),
                    Val::Int(i64::from(page - 1) * i64::from(limit)),
                ],
            )?;
            let items = rows.iter().map(|r| ExportRecord::from_row(&p, r)).collect::<Result<Vec<_>>>()?;
            Ok((items, total))
        })
        .await
    }

    /// Deletes an export and its CSV; a run still building it stops at its next chunk.
    pub async fn delete_export(&self, t: &Tenant, id: String) -> Result<()> {
        let p = t.project_id().to_string();
        self.write(move |c| {
            if !delete(c, &p, &id)? {
                return Err(StoreError::not_found("export", id));
            }
            Ok(())
        })
        .await
    }

    /// Checks a download token: a live token of this DONE export, in a live project.
    /// `None` for anything else, whatever was wrong.
    pub async fn authorize_export_download(&self, export_id: String, token: String) -> Result<Option<ExportDownload>> {
        let Some((project, _)) = ex::token_claims(&token) else {
            return Ok(None);
        };
        let project = project.to_string();
        let now = tessera_domain::time::now().as_second();
        self.read(move |c| {
            let row = c.query_opt(
                "SELECT e.id, e.status, e.data FROM exports e JOIN projects p ON p.id = e.project_id \
                 WHERE e.project_id = $1 AND e.id = $2 AND p.deleted_at IS NULL",
                &[project.clone().into(), export_id.clone().into()],
            )?;
            let Some(row) = row else { return Ok(None) };
            let rec = ExportRecord::from_row(&project, &row)?;
            if rec.status != "DONE" || !ex::token_valid(&token, rec.download_key(), &project, &export_id, now) {
                return Ok(None);
            }
            let chunks = ex::internal(&rec.stored).get("chunks").and_then(Value::as_i64).unwrap_or(0);
            Ok(Some(ExportDownload {
                project_id: project,
                export_id,
                chunks,
            }))
        })
        .await
    }

    /// One chunk of an authorized download's CSV; `None` when it is gone (the export was
    /// deleted during the download).
    pub async fn export_chunk(&self, d: &ExportDownload, seq: i64) -> Result<Option<String>> {
        let (p, id) = (d.project_id.clone(), d.export_id.clone());
        self.read(move |c| {
            c.query_opt(
                "SELECT data FROM export_chunks WHERE project_id = $1 AND export_id = $2 AND seq = $3",
                &[p.into(), id.into(), Val::Int(seq)],
            )?
            .map(|r| r.text(0))
            .transpose()
        })
        .await
    }

    /// How many chunks an export has (tests and diagnostics).
    pub async fn export_chunk_count(&self, t: &Tenant, id: String) -> Result<i64> {
        let p = t.project_id().to_string();
        self.read(move |c| {
            c.query_one(
                "SELECT COUNT(*) FROM export_chunks WHERE project_id = $1 AND export_id = $2",
                &[p.into(), id.into()],
            )?
            .int(0)
        })
        .await
    }

    /// Builds an export (the `EXPORT` async action).
    pub(crate) async fn run_export(&self, action: AsyncAction) -> Result<()> {
        let started = std::time::Instant::now();
        let export_id = action.params["export_id"].as_str().unwrap_or_default().to_string();
        let tenant = self.tenant_for_job(action.project_id.clone()).await?;
        let run = tessera_domain::secrets::new_token()[..16].to_string();
        // Take the export for this run: earlier runs' chunks go, whatever they held.
        let (p, id, r) = (action.project_id.clone(), export_id.clone(), run.clone());
        let rec = self
            .write_unmarked(move |c| {
                lock(c, &p, &id)?;
                let Some(mut rec) = load(c, &p, &id)? else { return Ok(None) };
                c.execute(
                    "DELETE FROM export_chunks WHERE project_id = $1 AND export_id = $2",
                    &[p.clone().into(), id.clone().into()],
                )?;
                rec.status = "IN_PROGRESS".into();
                set_internal(&mut rec.stored, "run", json!(r));
                save(c, &rec)?;
                Ok(Some(rec))
            })
            .await?;
        let Some(rec) = rec else {
            let msg = json!({"message": "The export was deleted before it ran."});
            return self
                .update_async_action(action.project_id, action.id, "FAILED", 100, Some(msg))
                .await;
        };
        self.update_async_action(action.project_id.clone(), action.id.clone(), "IN_PROGRESS", 0, None)
            .await?;
        let outcome = match ExportSpec::from_stored(
            rec.stored["exported_object"].as_str().unwrap_or_default(),
            &rec.stored["parameters"],
        ) {
            Ok(spec) => self.build_export(&tenant, &action, &rec, &spec, &run).await,
            Err(e) => Err(StoreError::Invalid(e)),
        };
        match outcome {
            Ok(Outcome::Done { rows, bytes, chunks }) => {
                let (p, id, r) = (action.project_id.clone(), export_id.clone(), run.clone());
                let finished = self
                    .write_unmarked(move |c| {
                        lock(c, &p, &id)?;
                        let Some(mut rec) = load(c, &p, &id)? else { return Ok(false) };
                        if ex::internal(&rec.stored).get("run").and_then(Value::as_str) != Some(r.as_str()) {
                            return Ok(false);
                        }
                        rec.status = "DONE".into();
                        set_internal(&mut rec.stored, "chunks", json!(chunks));
                        set_internal(&mut rec.stored, "rows", json!(rows));
                        set_internal(&mut rec.stored, "bytes", json!(bytes));
                        save(c, &rec)?;
                        Ok(true)
                    })
                    .await?;
                if !finished {
                    return Ok(());
                }
                let result = json!({
                    "message": format!("Exported {rows} row(s)."), "export_id": export_id, "rows": rows, "bytes": bytes,
                    "processing_time_ms": started.elapsed().as_millis() as u64,
                });
                self.update_async_action(action.project_id, action.id, "DONE", 100, Some(result))
                    .await
            }
            Ok(Outcome::Gone) => {
                let msg = json!({"message": "The export was deleted before it finished."});
                self.update_async_action(action.project_id, action.id, "FAILED", 100, Some(msg))
                    .await
            }
            Ok(Outcome::Superseded) => Ok(()),
            Err(e) => {
                tracing::warn!(export = %export_id, error = %e, "export failed");
                let (p, id, r, message) = (action.project_id.clone(), export_id.clone(), run.clone(), e.to_string());
                let _ = self
                    .write_unmarked(move |c| {
                        lock(c, &p, &id)?;
                        if let Some(mut rec) = load(c, &p, &id)? {
                            if ex::internal(&rec.stored).get("run").and_then(Value::as_str) == Some(r.as_str()) {
                                rec.status = "ERROR".into();
                                set_internal(&mut rec.stored, "error", json!(message));
                                save(c, &rec)?;
                            }
                        }
                        c.execute(
                            "DELETE FROM export_chunks WHERE project_id = $1 AND export_id = $2",
                            &[p.into(), id.into()],
                        )?;
                        Ok(())
                    })
                    .await;
                Err(e)
            }
        }
    }

    /// Stores one chunk if this run still owns the export.
    async fn store_chunk(&self, p: &str, id: &str, run: &str, seq: i64, data: Vec<u8>) -> Result<Option<Outcome>> {
        let text = String::from_utf8(data).map_err(|e| StoreError::Internal(format!("CSV is not UTF-8: {e}")))?;
        let (p, id, run) = (p.to_string(), id.to_string(), run.to_string());
        self.write_unmarked(move |c| {
            lock(c, &p, &id)?;
            let Some(rec) = load(c, &p, &id)? else {
                return Ok(Some(Outcome::Gone));
            };
            if ex::internal(&rec.stored).get("run").and_then(Value::as_str) != Some(run.as_str()) {
                return Ok(Some(Outcome::Superseded));
            }
            c.execute(
                "INSERT INTO export_chunks (project_id, export_id, seq, data) VALUES ($1, $2, $3, $4)",
                &[p.into(), id.into(), Val::Int(seq), text.into()],
            )?;
            Ok(None)
        })
        .await
    }

    async fn build_export(&self, t: &Tenant, action: &AsyncAction, rec: &ExportRecord, spec: &ExportSpec, run: &str) -> Result<Outcome> {
        let chunk_bytes = self.export_chunk_bytes.load(std::sync::atomic::Ordering::Relaxed);
        let bound = rec.stored["created_at"].as_str().unwrap_or_default().to_string();
        let p = t.project_id().to_string();
        // For progress only: how many rows the scan will visit.
        let total = {
            let (p, bound, object) = (p.clone(), bound.clone(), spec.object);
            self.read(move |c| {
                c.query_one(
                    &format!("SELECT COUNT(*) FROM {} WHERE project_id = $1 AND created_at <= $2", table(object)),
                    &[p.into(), bound.into()],
                )?
                .int(0)
            })
            .await?
            .max(1)
        };
        let mut buf = csv_line(&spec.fields)?;
        let (mut seq, mut rows, mut bytes, mut scanned) = (0i64, 0u64, 0u64, 0i64);
        let mut cursor: Cursor = None;
        let mut last_progress = std::time::Instant::now();
        loop {
            let (t2, s2, c2, b2) = (t.clone(), spec.clone(), cursor.clone(), bound.clone());
            let page = self.read(move |c| read_page(c, &t2, &s2, &c2, &b2, PAGE)).await?;
            scanned += page.scanned as i64;
            for row in &page.rows {
                let cells: Vec<String> = spec
                    .fields
                    .iter()
                    .map(|f| ex::cell(&ex::field_value(spec.object, row, f)))
                    .collect();
                buf.extend_from_slice(&csv_line(&cells)?);
                rows += 1;
                if buf.len() >= chunk_bytes {
                    bytes += buf.len() as u64;
                    if bytes > ex::MAX_EXPORT_BYTES {
                        return Err(StoreError::Invalid(tessera_domain::InvalidInput::payload(format!(
                            "the export is larger than {} bytes; narrow it with filters",
                            ex::MAX_EXPORT_BYTES
                        ))));
                    }
                    if let Some(stop) = self.store_chunk(&p, &rec.id, run, seq, std::mem::take(&mut buf)).await? {
                        return Ok(stop);
                    }
                    seq += 1;
                }
            }
            cursor = page.next;
            if cursor.is_none() {
                break;
            }
            // Progress, and the heartbeat that keeps the action from looking abandoned.
            if last_progress.elapsed() >= std::time::Duration::from_millis(500) {
                last_progress = std::time::Instant::now();
                let progress = (100 * scanned / total).clamp(0, 99);
                self.update_async_action(p.clone(), action.id.clone(), "IN_PROGRESS", progress, None)
                    .await?;
            }
        }
        if !buf.is_empty() || seq == 0 {
            bytes += buf.len() as u64;
            if let Some(stop) = self.store_chunk(&p, &rec.id, run, seq, buf).await? {
                return Ok(stop);
            }
            seq += 1;
        }
        Ok(Outcome::Done { rows, bytes, chunks: seq })
    }
}
