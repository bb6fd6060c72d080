//! Runs async actions in the background. Each action's progress is in its row, so a
//! restarted process resumes what the previous one left unfinished.

use crate::ops::async_actions::AsyncAction;
use crate::ops::vouchers::{generate_chunk, get_campaign_rec, SortedCodes, GENERATION_CHUNK, GENERATION_ROUND};
use crate::{Result, Store, StoreError};
use serde_json::json;
use std::sync::{Arc, Mutex};
use tessera_domain::codes::{CodeGenerator, CodeSpace};

impl Store {
    /// Starts an action on its own task; errors are recorded on the action.
    pub fn spawn_async_action(&self, action: AsyncAction) {
        let store = self.clone();
        tokio::spawn(async move {
            let (p, id) = (action.project_id.clone(), action.id.clone());
            if let Err(e) = store.run_async_action(action).await {
                tracing::error!(action = %id, error = %e, "async action failed");
                let _ = store
                    .update_async_action(p, id, "FAILED", 100, Some(json!({"message": e.to_string()})))
                    .await;
            }
        });
    }

    /// Starts an action the current request created.
    pub async fn start_async_action(&self, t: &crate::Tenant, id: String) -> Result<()> {
        let action = self.get_async_action(t, id).await?;
        self.spawn_async_action(action);
        Ok(())
    }

    /// Starts actions that nobody runs (left by a stopped process). Safe to call on
    /// every node: each action is claimed atomically before it runs.
    pub async fn sweep_async_actions(&self) -> Result<usize> {
        let actions = self.orphaned_async_actions(10).await?;
        let n = actions.len();
        for a in actions {
            self.spawn_async_action(a);
        }
        Ok(n)
    }

    /// At start: on the embedded engine this process is the only node, so actions left
    /// running were left by its previous life and resume at once. (On PostgreSQL other
    /// nodes may be running them; the periodic sweep waits until they go stale.)
    pub async fn resume_async_actions_at_start(&self) -> Result<usize> {
        if self.engine_name() == "sqlite" {
            self.write_unmarked(|c| c.execute("UPDATE async_actions SET status = 'ENQUEUED' WHERE status = 'IN_PROGRESS'", &[]))
                .await?;
        }
        let actions = self.orphaned_async_actions(0).await?;
        let n = actions.len();
        for a in actions {
            self.spawn_async_action(a);
        }
        Ok(n)
    }

    async fn run_async_action(&self, action: AsyncAction) -> Result<()> {
        if !self.claim_async_action(action.project_id.clone(), action.id.clone()).await? {
            return Ok(());
        }
        if let Some(kind) = tessera_domain::import::ImportKind::of(&action.kind) {
            return self.import_records(action, kind).await;
        }
        match action.kind.as_str() {
            "CAMPAIGN.VOUCHERS_GENERATE" => self.generate_codes(action).await,
            "CAMPAIGN.VOUCHERS_IMPORT" | "CAMPAIGN.VOUCHERS_IMPORT_CSV" | "VOUCHERS.IMPORT" | "VOUCHERS.IMPORT_CSV" => {
                self.import_vouchers(action).await
            }
            "SEGMENT.SYNC" => self.sync_segment(action).await,
            "SEGMENT.PUBLISH" => self.publish_to_segment(action).await,
            crate::ops::exports::KIND => self.run_export(action).await,
            other => Err(StoreError::Internal(format!("unknown async action type {other}"))),
        }
    }

    /// Imports staged voucher rows in batches; each batch commits its vouchers and drops
    /// its staged rows together, so a restart resumes after the last committed batch and
    /// re-running never imports a row twice.
    async fn import_vouchers(&self, action: AsyncAction) -> Result<()> {
        const BATCH: i64 = 1000;
        const MAX_REPORTED_FAILURES: usize = 1000;
        let started = std::time::Instant::now();
        let tenant = self.tenant_for_job(action.project_id.clone()).await?;
        let campaign = action.params["campaign_id"].as_str().map(str::to_string);
        let total = action.params["rows"].as_i64().unwrap_or(0).max(1);
        let prior = action.result.clone().unwrap_or(json!({}));
        let mut done = prior["done_count"].as_i64().unwrap_or(0);
        let mut failed: Vec<serde_json::Value> = prior["failed"].as_array().cloned().unwrap_or_default();
        let mut failed_count = prior["failed_count"].as_i64().unwrap_or(0);
        self.update_async_action(
            action.project_id.clone(),
            action.id.clone(),
            "IN_PROGRESS",
            0,
            action.result.clone(),
        )
        .await?;
        loop {
            let (t, aid, camp) = (tenant.clone(), action.id.clone(), campaign.clone());
            let (batch_done, batch_failed, rows) = self
                .write_unmarked(move |c| {
                    let rows = c.query(
                        "SELECT row_no, payload FROM import_rows WHERE project_id = $1 AND action_id = $2 ORDER BY row_no LIMIT $3",
                        &[t.project_id().into(), aid.clone().into(), crate::conn::Val::Int(BATCH)],
                    )?;
                    let mut ok = 0i64;
                    let mut bad = Vec::new();
                    for r in &rows {
                        let (row_no, payload) = (r.int(0)?, r.text(1)?);
                        // Each row in its own savepoint: a bad row fails alone and leaves nothing.
                        c.execute("SAVEPOINT import_row", &[])?;
                        let outcome = crate::ops::vouchers::import_one(c, &t, camp.as_deref(), &payload);
                        if outcome.is_err() {
                            c.execute("ROLLBACK TO SAVEPOINT import_row", &[])?;
                        }
                        c.execute("RELEASE SAVEPOINT import_row", &[])?;
                        match outcome {
                            Ok(()) => ok += 1,
                            Err(reason) => bad.push(json!({"row": row_no, "code": serde_json::from_str::<serde_json::Value>(&payload).ok().and_then(|v| v["code"].as_str().map(str::to_string)), "reason": reason})),
                        }
                    }
                    if let Some(last) = rows.last() {
                        c.execute(
                            "DELETE FROM import_rows WHERE project_id = $1 AND action_id = $2 AND row_no <= $3",
                            &[t.project_id().into(), aid.into(), crate::conn::Val::Int(last.int(0)?)],
                        )?;
                    }
                    Ok((ok, bad, rows.len()))
                })
                .await?;
            done += batch_done;
            failed_count += batch_failed.len() as i64;
            for f in batch_failed {
                if failed.len() < MAX_REPORTED_FAILURES {
                    failed.push(f);
                }
            }
            let progress = (100 * (done + failed_count) / total).clamp(0, 99);
            let partial = json!({"done_count": done, "failed_count": failed_count, "failed": failed});
            if rows == 0 {
                break;
            }
            self.update_async_action(action.project_id.clone(), action.id.clone(), "IN_PROGRESS", progress, Some(partial))
                .await?;
        }
        let result = json!({
            "message": format!("{done} voucher(s) imported successfully, {failed_count} failed."),
            "done_count": done, "failed_count": failed_count, "failed": failed,
            "processing_time_ms": started.elapsed().as_millis() as u64,
        });
        self.update_async_action(action.project_id, action.id, "DONE", 100, Some(result))
            .await
    }

    /// Generates a campaign's codes in chunks until the campaign holds its target count.
    /// Memory stays flat: the generator is a key and a counter, each chunk one commit.
    async fn generate_codes(&self, action: AsyncAction) -> Result<()> {
        let result = self.generate_codes_inner(action).await;
        // Back to the everyday cache, whatever the outcome. Another generation still
        // running sets the bulk size again with its next chunk.
        let restored = self.write_unmarked(|c| c.bulk_cache(false)).await;
        result.and(restored)
    }

    async fn generate_codes_inner(&self, action: AsyncAction) -> Result<()> {
        let started = std::time::Instant::now();
        let campaign_id = action.params["campaign_id"].as_str().unwrap_or_default().to_string();
        let count = action.params["count"].as_u64().unwrap_or(0);
        let tenant = self.tenant_for_job(action.project_id.clone()).await?;
        let p = action.project_id.clone();
        let cid = campaign_id.clone();
        let rec = self.read(move |c| get_campaign_rec(c, &p, &cid)).await?;
        // The target is fixed when the action starts; on resume, what exists counts.
        let target = match action.params["target_total"].as_i64() {
            Some(t) => t,
            None => rec.vouchers_count + count as i64,
        };
        self.update_async_action(action.project_id.clone(), action.id.clone(), "IN_PROGRESS", 0, None)
            .await?;
        let space = CodeSpace::parse(&rec.campaign.voucher.code_config)?;
        let mut gen = CodeGenerator::new(space);
        let mut round = Arc::new(Mutex::new(SortedCodes::default()));
        // Codes inserted since the generator started its pass over the code space. The
        // generator visits every code of the space once, so a whole pass without an insert
        // means no free code is left.
        let mut inserted_this_pass = 0u64;
        let mut have = rec.vouchers_count;
        let mut last_progress = std::time::Instant::now();
        while have < target {
            if round.lock().map_err(|_| poisoned())?.remaining() == 0 {
                // Exactly what is missing: a larger round would be consumed in code order
                // and leave the inserted codes skewed towards the start of the alphabet.
                let n = ((target - have) as usize).min(GENERATION_ROUND);
                let t = tenant.clone();
                // Drawing and sorting a round is up to a second of CPU: off the runtime.
                let (g, codes) = tokio::task::spawn_blocking(move || {
                    let codes = SortedCodes::draw(&mut gen, &t, n);
                    (gen, codes)
                })
                .await
                .map_err(|e| StoreError::Internal(format!("code generation task failed: {e}")))?;
                gen = g;
                if codes.remaining() == 0 {
                    if inserted_this_pass == 0 {
                        return Err(StoreError::Invalid(tessera_domain::InvalidInput::payload(
                            "the code configuration ran out of free codes",
                        )));
                    }
                    // Codes freed by deletions since the pass began may be found again.
                    gen = CodeGenerator::new(CodeSpace::parse(&rec.campaign.voucher.code_config)?);
                    inserted_this_pass = 0;
                }
                round = Arc::new(Mutex::new(codes));
                continue;
            }
            let (t, camp, r) = (tenant.clone(), rec.campaign.clone(), round.clone());
            // What is still missing is read in the chunk's own transaction, so two runners
            // of one action (a stalled one and its successor) can never overshoot.
            let (inserted, now_have) = self
                .write_unmarked(move |c| {
                    c.lock_key(&format!("campaigns:{}:{}", t.project_id(), camp.id))?;
                    c.bulk_cache(true)?;
                    let current = crate::ops::vouchers::get_campaign_rec(c, t.project_id(), &camp.id)?.vouchers_count;
                    let want = (target - current).clamp(0, GENERATION_CHUNK as i64) as u64;
                    if want == 0 {
                        return Ok((0, current));
                    }
                    let mut r = r.lock().map_err(|_| poisoned())?;
                    let n = generate_chunk(c, &t, &camp, &mut r, want)?;
                    Ok((n, current + n as i64))
                })
                .await?;
            have = now_have;
            inserted_this_pass += inserted;
            if have >= target {
                break;
            }
            // Progress (and the heartbeat that keeps the action from looking abandoned) at
            // most twice a second: each update is a commit of its own.
            if last_progress.elapsed() < std::time::Duration::from_millis(500) {
                continue;
            }
            last_progress = std::time::Instant::now();
            let progress = if count == 0 {
                100
            } else {
                (100 * (count as i64 - (target - have))) / count as i64
            };
            self.update_async_action(
                action.project_id.clone(),
                action.id.clone(),
                "IN_PROGRESS",
                progress.clamp(0, 99),
                None,
            )
            .await?;
        }
        let (p, cid) = (action.project_id.clone(), campaign_id.clone());
        self.write_unmarked(move |c| {
            c.execute(
                "UPDATE campaigns SET generation_status = 'DONE' WHERE project_id = $1 AND id = $2",
                &[p.into(), cid.into()],
            )?;
            Ok(())
        })
        .await?;
        let result = json!({"message": format!("Generated {count} vouchers."), "done_count": count, "processing_time_ms": started.elapsed().as_millis() as u64});
        self.update_async_action(action.project_id, action.id, "DONE", 100, Some(result))
            .await
    }
}

fn poisoned() -> StoreError {
    StoreError::Internal("code generation state lock poisoned".into())
}
