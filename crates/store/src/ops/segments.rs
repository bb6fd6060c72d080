//! Customer segments and their membership.
//!
//! Membership lives in `segment_members`, so "is this customer in that segment" (the
//! `customer.segment` validation rule) is one primary-key probe. A static segment's
//! members are fixed when it is created. An auto-update segment's members are decided
//! by its filter: for every customer when the segment is created (an async action that
//! walks the customers in batches), and afterwards whenever a customer is written, in
//! that write's own transaction, so a rule sees a customer's new membership as soon as
//! the write that changed it is acknowledged.

use crate::conn::{Conn, Val};
use crate::ops::customers;
use crate::ops::docs;
use crate::ops::org::Tenant;
use crate::ops::publications;
use crate::ops::vouchers::get_campaign_rec;
use crate::{Result, Store, StoreError};
use serde_json::{json, Value};
use tessera_domain::customer::Customer;
use tessera_domain::ids::new_id;
use tessera_domain::publication::PublicationInput;
use tessera_domain::segment::{Filter, Kind, SegmentInput, MAX_DYNAMIC_SEGMENTS};
use tessera_domain::time::now_string;
use tessera_domain::InvalidInput;

/// Customers decided per transaction by the initial sync.
const SYNC_BATCH: i64 = 1000;

fn load(c: &mut dyn Conn, p: &str, id: &str) -> Result<Value> {
    c.query_opt(
        "SELECT data FROM segments WHERE project_id = $1 AND id = $2",
        &[p.into(), id.into()],
    )?
    .ok_or_else(|| StoreError::not_found("segment", id.to_string()))?
    .json::<Value>(0)
}

fn store_data(c: &mut dyn Conn, p: &str, seg: &Value) -> Result<()> {
    c.execute(
        "UPDATE segments SET data = $1 WHERE project_id = $2 AND id = $3",
        &[seg.to_string().into(), p.into(), seg["id"].as_str().unwrap_or_default().into()],
    )?;
    Ok(())
}

fn set_member(c: &mut dyn Conn, p: &str, segment: &str, customer: &str, member: bool) -> Result<()> {
    let sql = if member {
        "INSERT INTO segment_members (project_id, segment_id, customer_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
    } else {
        "DELETE FROM segment_members WHERE project_id = $1 AND segment_id = $2 AND customer_id = $3"
    };
    c.execute(sql, &[p.into(), segment.into(), customer.into()])?;
    Ok(())
}

/// The project's auto-update segments with their compiled filters.
fn dynamic_segments(c: &mut dyn Conn, p: &str) -> Result<Vec<(String, Filter)>> {
    let rows = c.query(
        "SELECT id, data FROM segments WHERE project_id = $1 AND kind = 'auto-update'",
        &[p.into()],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let data: Value = r.json(1)?;
        let raw = data["filter"].as_object().cloned().unwrap_or_default();
        // Filters were checked when stored; one that no longer parses (a stricter
        // release) keeps its members rather than failing every customer write.
        if let Ok(f) = Filter::parse(&raw) {
            out.push((r.text(0)?, f));
        }
    }
    Ok(out)
}

/// Re-decides a customer's auto-update memberships; called from every customer write.
pub(crate) fn refresh_member(c: &mut dyn Conn, p: &str, cust: &Customer) -> Result<()> {
    for (id, filter) in dynamic_segments(c, p)? {
        set_member(c, p, &id, &cust.id, filter.matches(cust))?;
    }
    Ok(())
}

pub(crate) const MEMBERSHIPS_SQL: &str =
    "SELECT segment_id FROM segment_members WHERE project_id = $1 AND customer_id = $2 ORDER BY segment_id";

/// The segment ids a customer belongs to (one index range).
pub(crate) fn memberships(c: &mut dyn Conn, p: &str, customer_id: &str) -> Result<Vec<String>> {
    c.query(MEMBERSHIPS_SQL, &[p.into(), customer_id.into()])?
        .iter()
        .map(|r| r.text(0))
        .collect()
}

fn count_members(c: &mut dyn Conn, p: &str, id: &str) -> Result<i64> {
    c.query_one(
        "SELECT COUNT(*) FROM segment_members WHERE project_id = $1 AND segment_id = $2",
        &[p.into(), id.into()],
    )?
    .int(0)
}

fn view(c: &mut dyn Conn, p: &str, mut seg: Value) -> Result<Value> {
    let id = seg["id"].as_str().unwrap_or_default().to_string();
    seg["customers_count"] = count_members(c, p, &id)?.into();
    Ok(seg)
}

impl Store {
    /// Creates a segment. A static one gets its members now; an auto-update one answers
    /// with `initial_sync_status: IN_PROGRESS` and `async_action_id` while an async
    /// action decides every existing customer.
    pub async fn create_segment(&self, t: &Tenant, input: SegmentInput) -> Result<Value> {
        let spec = input.check()?;
        let p = t.project_id().to_string();
        let (seg, action) = self
            .write(move |c| {
                let id = new_id("seg");
                let now = now_string();
                let mut seg = json!({
                    "id": id, "name": spec.name, "created_at": now, "type": spec.kind.as_str(),
                    "filter": spec.filter_json, "object": "segment",
                });
                let mut action = None;
                match spec.kind {
                    Kind::Static => {
                        seg["initial_sync_status"] = "DONE".into();
                        c.execute(
                            "INSERT INTO segments (project_id, id, name, kind, created_at, data) VALUES ($1, $2, $3, $4, $5, $6)",
                            &[
                                p.clone().into(),
                                id.clone().into(),
                                spec.name.clone().into(),
                                spec.kind.as_str().into(),
                                now.clone().into(),
                                seg.to_string().into(),
                            ],
                        )?;
                        for key in &spec.customers {
                            let cust: Customer = docs::get(c, &customers::TABLE, &p, key)?;
                            set_member(c, &p, &id, &cust.id, true)?;
                        }
                    }
                    Kind::AutoUpdate => {
                        let n = c
                            .query_one(
                                "SELECT COUNT(*) FROM segments WHERE project_id = $1 AND kind = 'auto-update'",
                                &[p.clone().into()],
                            )?
                            .int(0)?;
                        if n >= MAX_DYNAMIC_SEGMENTS {
                            return Err(StoreError::Invalid(InvalidInput::payload(format!(
                                "a project may have at most {MAX_DYNAMIC_SEGMENTS} auto-update segments"
                            ))));
                        }
                        let aid = crate::ops::async_actions::create(c, &p, "SEGMENT.SYNC", &json!({"segment_id": id, "started_at": now}))?;
                        seg["initial_sync_status"] = "IN_PROGRESS".into();
                        seg["async_action_id"] = aid.clone().into();
                        c.execute(
                            "INSERT INTO segments (project_id, id, name, kind, created_at, data) VALUES ($1, $2, $3, $4, $5, $6)",
                            &[
                                p.clone().into(),
                                id.clone().into(),
                                spec.name.clone().into(),
                                spec.kind.as_str().into(),
                                now.clone().into(),
                                seg.to_string().into(),
                            ],
                        )?;
                        action = Some(aid);
                    }
                }
                let seg = view(c, &p, seg)?;
                Ok((seg, action))
            })
            .await?;
        if let Some(a) = action {
            self.start_async_action(t, a).await?;
        }
        Ok(seg)
    }

    pub async fn get_segment(&self, t: &Tenant, id: String) -> Result<Value> {
        let p = t.project_id().to_string();
        self.read(move |c| {
            let seg = load(c, &p, &id)?;
            view(c, &p, seg)
        })
        .await
    }

    /// Segments newest first (a Tessera addition: the spec has no list).
    pub async fn list_segments(&self, t: &Tenant, limit: u32, page: u32) -> Result<(Vec<Value>, i64)> {
        let p = t.project_id().to_string();
        self.read(move |c| {
            let total = c
                .query_one("SELECT COUNT(*) FROM segments WHERE project_id = $1", &[p.clone().into()])?
                .int(0)?;
            let rows = c.query(
                "SELECT data FROM segments WHERE project_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
                &[
                    p.clone().into(),
                    Val::Int(limit as i64),
                    Val::Int(((page.max(1) - 1) * limit) as i64),
                ],
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(view(c, &p, r.json(0)?)?);
            }
            Ok((out, total))
        })
        .await
    }

    pub async fn delete_segment(&self, t: &Tenant, id: String) -> Result<()> {
        let p = t.project_id().to_string();
        self.write(move |c| {
            load(c, &p, &id)?;
            c.execute(
                "DELETE FROM segment_members WHERE project_id = $1 AND segment_id = $2",
                &[p.clone().into(), id.clone().into()],
            )?;
            c.execute(
                "DELETE FROM segments WHERE project_id = $1 AND id = $2",
                &[p.clone().into(), id.into()],
            )?;
            Ok(())
        })
        .await
    }

    /// The segments a customer (id or source id) belongs to.
    pub async fn customer_segments(&self, t: &Tenant, customer: String) -> Result<Vec<Value>> {
        let p = t.project_id().to_string();
        self.read(move |c| {
            let cust: Customer = docs::get(c, &customers::TABLE, &p, &customer)?;
            let mut out = Vec::new();
            for id in memberships(c, &p, &cust.id)? {
                let seg = load(c, &p, &id)?;
                out.push(json!({"id": seg["id"], "name": seg["name"], "object": "segment"}));
            }
            Ok(out)
        })
        .await
    }

    /// Decides every existing customer's membership of a new auto-update segment, in
    /// batches ordered by customer id; the cursor in the action's result lets a restart
    /// resume. Customers written while the walk runs decide their own membership in their
    /// write; a final pass over customers written since the walk began covers a write that
    /// committed between a batch's read and the segment becoming visible to it.
    pub(crate) async fn sync_segment(&self, action: crate::ops::async_actions::AsyncAction) -> Result<()> {
        let started = std::time::Instant::now();
        let p = action.project_id.clone();
        let seg_id = action.params["segment_id"].as_str().unwrap_or_default().to_string();
        // A write that began before the segment existed may commit a little after it:
        // the final pass looks back a minute before the segment's creation.
        let since = action.params["started_at"]
            .as_str()
            .and_then(tessera_domain::time::parse_lenient)
            .and_then(|t| t.checked_sub(jiff::SignedDuration::from_secs(60)).ok())
            .map(tessera_domain::time::format)
            .unwrap_or_default();
        let mut after = action
            .result
            .as_ref()
            .and_then(|r| r["after"].as_str().map(str::to_string))
            .unwrap_or_default();
        let mut done = action.result.as_ref().and_then(|r| r["done_count"].as_i64()).unwrap_or(0);
        let (pp, sid) = (p.clone(), seg_id.clone());
        let filter = match self.read(move |c| load(c, &pp, &sid)).await {
            Ok(seg) => Filter::parse(&seg["filter"].as_object().cloned().unwrap_or_default())?,
            // Deleted before the walk began: nothing to do.
            Err(StoreError::NotFound { .. }) => {
                return self
                    .update_async_action(p, action.id, "DONE", 100, Some(json!({"message": "segment deleted"})))
                    .await;
            }
            Err(e) => return Err(e),
        };
        loop {
            let (pp, sid, f, from) = (p.clone(), seg_id.clone(), filter.clone(), after.clone());
            let batch = self
                .write_unmarked(move |c| {
                    if c.query_opt(
                        "SELECT 1 FROM segments WHERE project_id = $1 AND id = $2",
                        &[pp.clone().into(), sid.clone().into()],
                    )?
                    .is_none()
                    {
                        return Ok(None);
                    }
                    // Locked on PostgreSQL so a concurrent write of the same customer
                    // either finishes first (and is read here) or waits for this batch.
                    let lock = if c.is_postgres() { " FOR UPDATE" } else { "" };
                    let rows = c.query(
                        &format!("SELECT id, data FROM customers WHERE project_id = $1 AND id > $2 ORDER BY id LIMIT $3{lock}"),
                        &[pp.clone().into(), from.into(), Val::Int(SYNC_BATCH)],
                    )?;
                    let mut last = None;
                    for r in &rows {
                        let cust: Customer = serde_json::from_str(&r.text(1)?).map_err(|e| StoreError::Internal(e.to_string()))?;
                        set_member(c, &pp, &sid, &cust.id, f.matches(&cust))?;
                        last = Some(r.text(0)?);
                    }
                    Ok(Some((rows.len() as i64, last)))
                })
                .await?;
            let Some((n, last)) = batch else {
                return self
                    .update_async_action(p, action.id, "DONE", 100, Some(json!({"message": "segment deleted"})))
                    .await;
            };
            done += n;
            let Some(last) = last else { break };
            after = last;
            self.update_async_action(
                p.clone(),
                action.id.clone(),
                "IN_PROGRESS",
                50,
                Some(json!({"after": after, "done_count": done})),
            )
            .await?;
        }
        // Customers written since the walk began, by their indexed timestamps.
        let (pp, sid, f) = (p.clone(), seg_id.clone(), filter.clone());
        self.write_unmarked(move |c| {
            let lock = if c.is_postgres() { " FOR UPDATE" } else { "" };
            let rows = c.query(
                &format!("SELECT data FROM customers WHERE project_id = $1 AND (created_at >= $2 OR updated_at >= $2){lock}"),
                &[pp.clone().into(), since.into()],
            )?;
            for r in rows {
                let cust: Customer = serde_json::from_str(&r.text(0)?).map_err(|e| StoreError::Internal(e.to_string()))?;
                set_member(c, &pp, &sid, &cust.id, f.matches(&cust))?;
            }
            if let Ok(mut seg) = load(c, &pp, &sid) {
                seg["initial_sync_status"] = "DONE".into();
                store_data(c, &pp, &seg)?;
            }
            Ok(())
        })
        .await?;
        let result = json!({"message": format!("{done} customer(s) checked."), "done_count": done, "processing_time_ms": started.elapsed().as_millis() as u64});
        self.update_async_action(p, action.id, "DONE", 100, Some(result)).await
    }

    /// Queues the publication of one code of `campaign` to every member of a segment.
    pub async fn publish_segment(&self, t: &Tenant, segment: String, input: PublicationInput) -> Result<String> {
        let camp_ref = input
            .campaign
            .clone()
            .ok_or_else(|| StoreError::Invalid(InvalidInput::payload("name the 'campaign' to publish from")))?;
        if camp_ref.count() != 1 {
            return Err(StoreError::Invalid(InvalidInput::payload(
                "a segment publication gives each member one code; 'count' must be 1",
            )));
        }
        if input.voucher.is_some() || input.customer.is_some() || input.source_id.is_some() {
            return Err(StoreError::Invalid(InvalidInput::payload(
                "a segment publication takes 'campaign', 'channel' and 'metadata' only",
            )));
        }
        input.validate_extras()?;
        let p = t.project_id().to_string();
        let action = self
            .write(move |c| {
                let seg = load(c, &p, &segment)?;
                let campaign = get_campaign_rec(c, &p, camp_ref.name())?.campaign;
                tessera_domain::voucher::check_holds_codes(&campaign)?;
                crate::ops::async_actions::create(
                    c,
                    &p,
                    "SEGMENT.PUBLISH",
                    &json!({"segment_id": seg["id"], "campaign_id": campaign.id, "channel": input.channel, "metadata": input.metadata}),
                )
            })
            .await?;
        self.start_async_action(t, action.clone()).await?;
        Ok(action)
    }

    /// Gives each member of the segment one code of the campaign, in batches ordered by
    /// customer id (the cursor in the action's result lets a restart resume). A member
    /// who already holds a publication of the campaign keeps it, so a re-run or a resumed
    /// run never gives anyone a second code.
    pub(crate) async fn publish_to_segment(&self, action: crate::ops::async_actions::AsyncAction) -> Result<()> {
        let result = self.publish_to_segment_inner(action).await;
        // Back to the everyday page cache, whatever the outcome.
        let restored = self.write_unmarked(|c| c.bulk_cache(false)).await;
        result.and(restored)
    }

    async fn publish_to_segment_inner(&self, action: crate::ops::async_actions::AsyncAction) -> Result<()> {
        // Each member is a handful of inserts and updates: a batch of 1,000 per commit
        // keeps the commit and checkpoint cost small without a long write transaction.
        const BATCH: i64 = 1000;
        let started = std::time::Instant::now();
        let t = self.tenant_for_job(action.project_id.clone()).await?;
        let params = action.params.clone();
        let seg_id = params["segment_id"].as_str().unwrap_or_default().to_string();
        let campaign_id = params["campaign_id"].as_str().unwrap_or_default().to_string();
        let input = PublicationInput {
            channel: params["channel"].as_str().map(str::to_string),
            metadata: params["metadata"].as_object().cloned(),
            ..Default::default()
        };
        let prior = action.result.clone().unwrap_or(json!({}));
        let mut after = prior["after"].as_str().unwrap_or_default().to_string();
        let (mut done, mut skipped) = (
            prior["done_count"].as_i64().unwrap_or(0),
            prior["skipped_count"].as_i64().unwrap_or(0),
        );
        let (tt, sid) = (t.clone(), seg_id.clone());
        let total = self.read(move |c| count_members(c, tt.project_id(), &sid)).await?.max(1);
        loop {
            let (tt, sid, cid, from, inp) = (t.clone(), seg_id.clone(), campaign_id.clone(), after.clone(), input.clone());
            let outcome = self
                .write_unmarked(move |c| {
                    let p = tt.project_id();
                    c.bulk_cache(true)?;
                    let campaign = get_campaign_rec(c, p, &cid)?.campaign;
                    let members = c.query(
                        "SELECT customer_id FROM segment_members WHERE project_id = $1 AND segment_id = $2 AND customer_id > $3 \
                         ORDER BY customer_id LIMIT $4",
                        &[p.into(), sid.clone().into(), from.into(), Val::Int(BATCH)],
                    )?;
                    let (mut published, mut held, mut last, mut exhausted) = (0i64, 0i64, None, false);
                    for m in &members {
                        let id = m.text(0)?;
                        if let Some(cust) = docs::find_by_id::<Customer>(c, &customers::TABLE, p, &id)? {
                            match publications::publish_once(c, &tt, &campaign, &cust, &inp)? {
                                Some(true) => published += 1,
                                Some(false) => held += 1,
                                None => {
                                    exhausted = true;
                                    break;
                                }
                            }
                        }
                        last = Some(id);
                    }
                    Ok((published, held, last, exhausted))
                })
                .await?;
            let (published, held, last, exhausted) = outcome;
            done += published;
            skipped += held;
            let Some(last) = last else {
                if exhausted {
                    let result = json!({"message": format!("the campaign ran out of codes after {done} publication(s)"), "done_count": done, "skipped_count": skipped});
                    return self
                        .update_async_action(t.project_id().to_string(), action.id, "FAILED", 100, Some(result))
                        .await;
                }
                break;
            };
            after = last;
            let partial = json!({"after": after, "done_count": done, "skipped_count": skipped});
            if exhausted {
                let result = json!({"message": format!("the campaign ran out of codes after {done} publication(s)"), "done_count": done, "skipped_count": skipped});
                return self
                    .update_async_action(t.project_id().to_string(), action.id, "FAILED", 100, Some(result))
                    .await;
            }
            let progress = (100 * (done + skipped) / total).clamp(0, 99);
            self.update_async_action(
                t.project_id().to_string(),
                action.id.clone(),
                "IN_PROGRESS",
                progress,
                Some(partial),
            )
            .await?;
        }
        let result = json!({
            "message": format!("{done} code(s) published, {skipped} member(s) already held one."),
            "done_count": done, "skipped_count": skipped,
            "processing_time_ms": started.elapsed().as_millis() as u64,
        });
        self.update_async_action(t.project_id().to_string(), action.id, "DONE", 100, Some(result))
            .await
    }
}
