//! Customer, product and SKU imports (CSV uploads and JSON bulk requests) as async
//! actions.
//!
//! The request stages its rows in `import_rows` as chunks of up to `CHUNK_ROWS`
//! consecutive rows (one staged row per chunk, keyed by the number of its first row),
//! so staging a million rows is a few hundred writes and any node can run the import.
//! The runner then imports one chunk per transaction: it validates each row as the
//! resource's endpoint does, upserts it through the resource's own store function
//! (customers through `customers::import`, so `after_write` runs for every customer),
//! deletes the chunk and records the counts, the reported failures and the progress on
//! the action, all in that one commit. A restart therefore resumes at the first chunk
//! not committed, and no row is imported twice.
//!
//! A refused row writes nothing: every check runs before its first write, so a chunk
//! needs no savepoint per row. Should a write itself fail (a storage error, or a
//! constraint a concurrent writer tripped), the chunk is rolled back whole and run
//! again with a savepoint per row, so that row fails alone.

use crate::conn::{Conn, Val};
use crate::ops::async_actions::{self, AsyncAction};
use crate::ops::{customers, metadata_schemas, products};
use crate::{Result, Store, StoreError, Tenant};
use serde_json::{json, Value};
use std::sync::Arc;
use tessera_domain::customer::CustomerInput;
use tessera_domain::import::{self as imp, Chunk, CustomerColumn, ImportKind, ProductColumn, SkuColumn, Target, MAX_REPORTED_FAILURES};
use tessera_domain::metadata_schema::MetadataSchema;
use tessera_domain::product::ProductInput;
use tessera_domain::InvalidInput;

/// The columns of a CSV import, resolved once from its header.
enum Columns {
    Customers(Vec<CustomerColumn>),
    Products(Vec<ProductColumn>),
    Skus(Vec<SkuColumn>),
    Json,
}

struct Job {
    project_id: String,
    action_id: String,
    kind: ImportKind,
    columns: Columns,
    total: i64,
}

/// What a runner carries from chunk to chunk; stored in the action's `result`, so a
/// resumed runner starts from the counts its predecessor committed.
#[derive(Debug, Default, Clone)]
struct Progress {
    processed: i64,
    done: i64,
    failed_count: i64,
    failed: Vec<Value>,
}

impl Progress {
    fn from_result(r: Option<&Value>) -> Progress {
        let r = r.cloned().unwrap_or(Value::Null);
        Progress {
            processed: r["processed_count"].as_i64().unwrap_or(0),
            done: r["done_count"].as_i64().unwrap_or(0),
            failed_count: r["failed_count"].as_i64().unwrap_or(0),
            failed: r["failed"]
                .as_array()
                .or_else(|| r["errors"].as_array())
                .cloned()
                .unwrap_or_default(),
        }
    }

    fn fail(&mut self, entry: Value) {
        self.failed_count += 1;
        if self.failed.len() < MAX_REPORTED_FAILURES {
            self.failed.push(entry);
        }
    }

    /// The result as clients see it: Voucherify's shape for the action type.
    fn result(&self, job: &Job, finished: bool, elapsed_ms: Option<u64>) -> Value {
        let mut r = if job.kind.csv {
            json!({
                "done_count": self.done, "failed_count": self.failed_count, "failed": self.failed,
            })
        } else {
            json!({
                "done_count": self.done, "failed_count": self.failed_count, "errors": self.failed,
                "reports": [], "reports_available_till": Value::Null,
            })
        };
        r["processed_count"] = self.processed.into();
        if finished && job.kind.csv {
            r["message"] = format!(
                "{} {}(s) imported successfully, {} failed.",
                self.done,
                job.kind.target.noun(),
                self.failed_count
            )
            .into();
        }
        if let Some(ms) = elapsed_ms {
            r["processing_time_ms"] = ms.into();
        }
        r
    }
}

fn row_failure(job: &Job, row: i64, source_id: Option<&str>, e: &InvalidInput) -> Value {
    if job.kind.csv {
        let mut f = json!({"row": row, "reason": e.details});
        if let Some(s) = source_id {
            f["source_id"] = s.into();
        }
        f
    } else {
        json!({
            "row": row, "source_id": source_id.unwrap_or_default(), "key": e.key,
            "message": e.message, "details": e.details,
        })
    }
}

/// Imports one row. `Ok(Err)`: refused, nothing written; the source id is for reports.
fn import_row(
    c: &mut dyn Conn,
    job: &Job,
    schema: Option<&MetadataSchema>,
    record: Record<'_>,
) -> Result<(Option<String>, std::result::Result<(), InvalidInput>)> {
    let p = job.project_id.as_str();
    match (record, &job.columns) {
        (Record::Unreadable(why), _) => Ok((None, Err(InvalidInput::payload(why.to_string())))),
        (Record::Cells(cells), Columns::Customers(cols)) => {
            let sid = imp::customer_source_id(cols, cells).map(str::to_string);
            let outcome = match imp::customer_from_csv(cols, cells, schema) {
                Ok(input) => customers::import(c, p, input, true, schema)?.map(|_| ()),
                Err(e) => Err(e),
            };
            Ok((sid, outcome))
        }
        (Record::Cells(cells), Columns::Products(cols)) => {
            let sid = imp::product_source_id(cols, cells).map(str::to_string);
            let outcome = match imp::product_from_csv(cols, cells, schema) {
                Ok(input) => products::import_product(c, p, input, true, schema)?,
                Err(e) => Err(e),
            };
            Ok((sid, outcome))
        }
        (Record::Cells(cells), Columns::Skus(cols)) => {
            let sid = imp::sku_source_id(cols, cells).map(str::to_string);
            let outcome = match imp::sku_from_csv(cols, cells, schema) {
                Ok((product, input)) => products::import_sku(c, p, &product, input, true, schema)?,
                Err(e) => Err(e),
            };
            Ok((sid, outcome))
        }
        (Record::Item(item), Columns::Json) => {
            let sid = item.get("source_id").and_then(Value::as_str).map(str::to_string);
            if sid.is_none() {
                return Ok((
                    sid,
                    Err(InvalidInput::payload(
                        "the item has no 'source_id' (a string), which bulk updates require",
                    )),
                ));
            }
            let outcome = match job.kind.target {
                Target::Customers => match serde_json::from_value::<CustomerInput>(item.clone()) {
                    Ok(input) => customers::import(c, p, input, false, schema)?.map(|_| ()),
                    Err(e) => Err(InvalidInput::payload(format!("invalid customer: {e}"))),
                },
                Target::Products => match serde_json::from_value::<ProductInput>(item.clone()) {
                    Ok(input) => products::import_product(c, p, input, false, schema)?,
                    Err(e) => Err(InvalidInput::payload(format!("invalid product: {e}"))),
                },
                Target::Skus => Err(InvalidInput::payload("SKUs are imported from CSV only")),
            };
            Ok((sid, outcome))
        }
        _ => Err(StoreError::Internal("staged import rows do not match the import's type".into())),
    }
}

enum Record<'a> {
    Cells(&'a [String]),
    Unreadable(&'a str),
    Item(&'a Value),
}

/// Imports the action's next staged chunk in the current transaction, or says there is
/// none left. With `careful`, each row runs in its own savepoint and a storage error
/// fails only its row.
fn import_chunk(c: &mut dyn Conn, job: &Job, careful: bool) -> Result<Option<Progress>> {
    let p = job.project_id.as_str();
    // One runner per action at a time on PostgreSQL (SQLite has one writer anyway), so
    // two runners of one action can never take the same chunk.
    c.lock_key(&format!("import:{p}:{}", job.action_id))?;
    c.bulk_cache(true)?;
    let Some(staged) = c.query_opt(
        "SELECT row_no, payload FROM import_rows WHERE project_id = $1 AND action_id = $2 ORDER BY row_no LIMIT 1",
        &[p.into(), job.action_id.clone().into()],
    )?
    else {
        return Ok(None);
    };
    let first = staged.int(0)?;
    let chunk: Chunk =
        serde_json::from_str(&staged.text(1)?).map_err(|e| StoreError::Internal(format!("staged import chunk does not parse: {e}")))?;
    let current = c
        .query_opt(
            "SELECT result FROM async_actions WHERE project_id = $1 AND id = $2",
            &[p.into(), job.action_id.clone().into()],
        )?
        .ok_or_else(|| StoreError::not_found("async_action", job.action_id.clone()))?
        .opt_text(0)?
        .map(|s| serde_json::from_str::<Value>(&s))
        .transpose()
        .map_err(|e| StoreError::Internal(format!("async action result: {e}")))?;
    let mut progress = Progress::from_result(current.as_ref());
    let schema = metadata_schemas::by_resource(c, p, job.kind.target.resource())?;
    let records = chunk
        .cells
        .iter()
        .enumerate()
        .map(|(i, cells)| match chunk.unreadable.get(&i) {
            Some(why) => Record::Unreadable(why),
            None => Record::Cells(cells),
        })
        .chain(chunk.items.iter().map(Record::Item));
    for (i, record) in records.enumerate() {
        let row = first + i as i64;
        let (sid, outcome) = if careful {
            c.execute("SAVEPOINT import_row", &[])?;
            let r = import_row(c, job, schema.as_ref(), record);
            let keep = matches!(r, Ok((_, Ok(()))));
            if !keep {
                c.execute("ROLLBACK TO SAVEPOINT import_row", &[])?;
            }
            c.execute("RELEASE SAVEPOINT import_row", &[])?;
            match r {
                Ok(v) => v,
                Err(e) => (None, Err(InvalidInput::payload(format!("the row could not be stored: {e}")))),
            }
        } else {
            import_row(c, job, schema.as_ref(), record)?
        };
        match outcome {
            Ok(()) => progress.done += 1,
            Err(e) => progress.fail(row_failure(job, row, sid.as_deref(), &e)),
        }
    }
    progress.processed += chunk.len() as i64;
    c.execute(
        "DELETE FROM import_rows WHERE project_id = $1 AND action_id = $2 AND row_no = $3",
        &[p.into(), job.action_id.clone().into(), Val::Int(first)],
    )?;
    let pct = (100 * progress.processed / job.total.max(1)).clamp(0, 99);
    async_actions::update(c, p, &job.action_id, "IN_PROGRESS", pct, Some(&progress.result(job, false, None)))?;
    Ok(Some(progress))
}

impl Store {
    /// Stages one chunk of an import's rows (`payload` is a serialized `Chunk`; `first_row`
    /// the number of its first row).
    pub async fn stage_import_chunk(&self, t: &Tenant, action: String, first_row: i64, payload: String) -> Result<()> {
        let p = t.project_id().to_string();
        self.write_unmarked(move |c| {
            c.execute(
                "INSERT INTO import_rows (project_id, action_id, row_no, payload) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (project_id, action_id, row_no) DO NOTHING",
                &[p.into(), action.into(), Val::Int(first_row), payload.into()],
            )?;
            Ok(())
        })
        .await
    }

    /// Runs a customer, product or SKU import to its end (see the module's notes).
    pub(crate) async fn import_records(&self, action: AsyncAction, kind: ImportKind) -> Result<()> {
        let result = self.import_records_inner(action, kind).await;
        let restored = self.write_unmarked(|c| c.bulk_cache(false)).await;
        result.and(restored)
    }

    async fn import_records_inner(&self, action: AsyncAction, kind: ImportKind) -> Result<()> {
        let started = std::time::Instant::now();
        // Time spent by earlier runners of this action (before a restart).
        let earlier_ms = action.result.as_ref().and_then(|r| r["processing_time_ms"].as_u64()).unwrap_or(0);
        let columns = if kind.csv {
            let header: Vec<String> = action.params["header"]
                .as_array()
                .map(|h| h.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            match kind.target {
                Target::Customers => Columns::Customers(header.iter().map(|h| CustomerColumn::parse(h)).collect()),
                Target::Products => Columns::Products(header.iter().map(|h| ProductColumn::parse(h)).collect()),
                Target::Skus => Columns::Skus(header.iter().map(|h| SkuColumn::parse(h)).collect()),
            }
        } else {
            Columns::Json
        };
        let job = Arc::new(Job {
            project_id: action.project_id.clone(),
            action_id: action.id.clone(),
            kind,
            columns,
            total: action.params["rows"].as_i64().unwrap_or(0),
        });
        let mut progress = Progress::from_result(action.result.as_ref());
        loop {
            let j = job.clone();
            let next = match self.write_unmarked(move |c| import_chunk(c, &j, false)).await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(action = %job.action_id, error = %e, "import chunk failed; retrying it row by row");
                    let j = job.clone();
                    self.write_unmarked(move |c| import_chunk(c, &j, true)).await?
                }
            };
            match next {
                Some(p) => progress = p,
                None => break,
            }
        }
        let elapsed = earlier_ms + started.elapsed().as_millis() as u64;
        // The counts are re-read in the final write, in case another runner committed
        // the last chunks.
        let j = job.clone();
        self.write_unmarked(move |c| {
            let current = c
                .query_opt(
                    "SELECT result FROM async_actions WHERE project_id = $1 AND id = $2",
                    &[j.project_id.clone().into(), j.action_id.clone().into()],
                )?
                .and_then(|r| r.opt_text(0).ok().flatten())
                .and_then(|s| serde_json::from_str::<Value>(&s).ok());
            let done = match current {
                Some(r) => Progress::from_result(Some(&r)),
                None => progress,
            };
            async_actions::update(
                c,
                &j.project_id,
                &j.action_id,
                "DONE",
                100,
                Some(&done.result(&j, true, Some(elapsed))),
            )
        })
        .await
    }
}

/// Params of a new CSV import action.
pub fn csv_params(header: &[String]) -> Value {
    json!({"header": header})
}
