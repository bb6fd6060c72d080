//! Campaigns, vouchers, code generation and the gift-card ledger.

use crate::conn::{Conn, Row, Val};
use crate::ops::docs::{to_json, Table};
use crate::ops::org::Tenant;
use crate::ops::outbox;
use crate::{Result, Store, StoreError};
use serde_json::json;
use std::collections::HashMap;
use tessera_domain::codes::{CodeGenerator, CodeSpace};
use tessera_domain::ids::new_id;
use tessera_domain::list::{ListQuery, ListSpec, SortField};
use tessera_domain::time::now_string;
use tessera_domain::voucher::{Campaign, CampaignInput, Voucher, VoucherCounters, VoucherInput, VoucherType};
use tessera_domain::InvalidInput;

pub const CAMPAIGNS: Table = Table {
    name: "campaigns",
    resource_type: "campaign",
};

pub const CAMPAIGN_LIST_SPEC: ListSpec = ListSpec {
    sorts: &[SortField::CreatedAt, SortField::UpdatedAt],
    filters: &["campaign_type"],
    default_limit: 10,
};
pub const VOUCHER_LIST_SPEC: ListSpec = ListSpec {
    sorts: &[SortField::CreatedAt, SortField::UpdatedAt],
    filters: &["campaign_id", "campaign", "category", "customer", "code"],
    default_limit: 10,
};

/// Codes inserted per write command while generating. The codes of a round arrive sorted,
/// so a chunk appends to a narrow range of the code index and costs little beyond its
/// rows; kept small so that checkout writes queued behind it wait tens of milliseconds.
pub const GENERATION_CHUNK: u64 = 10_000;
/// Codes drawn and sorted at once. Sorting a whole round (not just a chunk) is what turns
/// random inserts into the unique code index into near-appends; the cap bounds memory
/// (about 30 bytes a code for 10-character codes).
pub const GENERATION_ROUND: usize = 1_000_000;
const GENERATION_ROUND_BYTES: usize = 64 << 20;
const GENERATION_ROWS_PER_INSERT: usize = 100;

/// One round of generated codes with their lookup keys, in key order, packed into one
/// buffer: a million codes as separate `String`s would cost several times the memory.
#[derive(Default)]
pub struct SortedCodes {
    text: String,
    /// Start of the code, end of the code (= start of the key), end of the key.
    spans: Vec<(u32, u32, u32)>,
    pos: usize,
}

impl SortedCodes {
    /// Draws up to `n` codes from `gen`. Fewer come back only when the generator's space
    /// is exhausted or the round's byte budget is reached.
    pub fn draw(gen: &mut CodeGenerator, t: &Tenant, n: usize) -> SortedCodes {
        let mut out = SortedCodes {
            text: String::new(),
            spans: Vec::with_capacity(n.min(GENERATION_ROUND)),
            pos: 0,
        };
        while out.spans.len() < n && out.text.len() < GENERATION_ROUND_BYTES {
            let Some(code) = gen.next_code() else { break };
            let start = out.text.len() as u32;
            out.text.push_str(&code);
            let mid = out.text.len() as u32;
            out.text.push_str(&t.code_key(&code));
            out.spans.push((start, mid, out.text.len() as u32));
        }
        let text = &out.text;
        out.spans
            .sort_unstable_by(|a, b| text[a.1 as usize..a.2 as usize].cmp(&text[b.1 as usize..b.2 as usize]));
        out
    }

    pub fn remaining(&self) -> usize {
        self.spans.len() - self.pos
    }

    /// The next (code, key) pair.
    fn take(&mut self) -> Option<(&str, &str)> {
        let &(a, b, c) = self.spans.get(self.pos)?;
        self.pos += 1;
        Some((&self.text[a as usize..b as usize], &self.text[b as usize..c as usize]))
    }
}

pub(crate) const VOUCHER_COLUMNS: &str =
    "id, code, campaign_id, kind, active, quantity, redeemed_quantity, gift_amount, gift_balance, redeemed_amount, holder_id, created_at, updated_at, data";

/// A voucher with its live counters.
#[derive(Debug, Clone)]
pub struct VoucherRecord {
    pub voucher: Voucher,
    pub counters: VoucherCounters,
    pub gift_amount: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct CampaignRecord {
    pub campaign: Campaign,
    pub vouchers_count: i64,
    pub generation_status: String,
    /// A PROMOTION campaign's tiers (`promotion` in its view); filled by `get_campaign_rec`.
    pub promotion: Option<serde_json::Value>,
}

pub fn load_campaign(c: &mut dyn Conn, p: &str, key: &str) -> Result<Option<CampaignRecord>> {
    let row = c.query_opt(
        "SELECT data, vouchers_count, generation_status FROM campaigns WHERE project_id = $1 AND (id = $2 OR name = $2) \
         ORDER BY CASE WHEN id = $2 THEN 0 ELSE 1 END LIMIT 1",
        &[p.into(), key.into()],
    )?;
    row.map(|r| {
        Ok(CampaignRecord {
            campaign: r.json(0)?,
            vouchers_count: r.int(1)?,
            generation_status: r.text(2)?,
            promotion: None,
        })
    })
    .transpose()
}

pub fn get_campaign_rec(c: &mut dyn Conn, p: &str, key: &str) -> Result<CampaignRecord> {
    let mut rec = load_campaign(c, p, key)?.ok_or_else(|| StoreError::not_found("campaign", key))?;
    if rec.campaign.campaign_type == tessera_domain::voucher::CampaignType::Promotion {
        rec.promotion = Some(crate::ops::promotions::campaign_promotion(c, p, &rec.campaign)?);
    }
    Ok(rec)
}

/// Rebuilds a voucher from its row. Codes generated for a campaign store no document:
/// their definition is the campaign's, which keeps a million-code campaign small.
pub(crate) fn assemble(c: &mut dyn Conn, p: &str, r: &Row, campaigns: &mut HashMap<String, Campaign>) -> Result<VoucherRecord> {
    let counters = VoucherCounters {
        redeemed_quantity: r.int(6)?,
        redeemed_amount: r.int(9)?,
        gift_balance: r.opt_int(8)?,
        publish_count: i64::from(r.opt_text(10)?.is_some()),
    };
    let gift_amount = r.opt_int(7)?;
    let mut voucher: Voucher = match r.opt_text(13)? {
        Some(doc) => serde_json::from_str(&doc).map_err(|e| StoreError::Internal(format!("voucher document: {e}")))?,
        None => {
            let cid = r
                .opt_text(2)?
                .ok_or_else(|| StoreError::Internal("voucher without document or campaign".into()))?;
            if !campaigns.contains_key(&cid) {
                let camp = get_campaign_rec(c, p, &cid)?.campaign;
                campaigns.insert(cid.clone(), camp);
            }
            let camp = &campaigns[&cid];
            VoucherInput::default().build(r.text(0)?, r.text(1)?, Some(camp), &r.text(11)?)?
        }
    };
    voucher.active = r.int(4)? != 0;
    voucher.redemption_quantity = r.opt_int(5)?;
    voucher.holder_id = r.opt_text(10)?;
    voucher.updated_at = r.opt_text(12)?;
    Ok(VoucherRecord {
        voucher,
        counters,
        gift_amount,
    })
}

pub fn find_voucher(c: &mut dyn Conn, t: &Tenant, code_or_id: &str) -> Result<Option<VoucherRecord>> {
    let p = t.project_id();
    let row = c.query_opt(
        &format!(
            "SELECT {VOUCHER_COLUMNS} FROM vouchers WHERE project_id = $1 AND (code_key = $2 OR id = $3) \
             ORDER BY CASE WHEN code_key = $2 THEN 0 ELSE 1 END LIMIT 1"
        ),
        &[p.into(), t.code_key(code_or_id).into(), code_or_id.into()],
    )?;
    match row {
        Some(r) => Ok(Some(assemble(c, p, &r, &mut HashMap::new())?)),
        None => Ok(None),
    }
}

pub fn get_voucher_rec(c: &mut dyn Conn, t: &Tenant, code: &str) -> Result<VoucherRecord> {
    find_voucher(c, t, code)?.ok_or_else(|| StoreError::not_found("voucher", code))
}

fn duplicate(code: &str) -> StoreError {
    StoreError::Conflict {
        key: "duplicate_found",
        message: "Duplicated resource found".into(),
        details: format!("Duplicated voucher exists with id {code}"),
    }
}

/// Inserts one voucher with its own document (standalone or customized codes).
fn insert_voucher(c: &mut dyn Conn, t: &Tenant, v: &Voucher, store_doc: bool) -> Result<()> {
    let gift = v.gift.as_ref().map(|g| g.amount);
    let inserted = c.execute(
        "INSERT INTO vouchers (project_id, id, code, code_key, campaign_id, kind, active, quantity, gift_amount, gift_balance, created_at, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11) ON CONFLICT (project_id, code_key) DO NOTHING",
        &[
            t.project_id().into(),
            v.id.clone().into(),
            v.code.clone().into(),
            t.code_key(&v.code).into(),
            v.campaign_id.clone().into(),
            v.kind.as_str().into(),
            v.active.into(),
            v.redemption_quantity.into(),
            gift.into(),
            v.created_at.clone().into(),
            if store_doc { Val::Text(to_json(v)?) } else { Val::Null },
        ],
    )?;
    if inserted == 0 {
        return Err(duplicate(&v.code));
    }
    if let Some(amount) = gift.filter(|a| *a > 0) {
        ledger_entry(
            c,
            t.project_id(),
            &v.id,
            "CREDITS_ADDITION",
            amount,
            amount,
            None,
            None,
            Some("issue"),
        )?;
    }
    if let Some(cid) = &v.campaign_id {
        c.execute(
            "UPDATE campaigns SET vouchers_count = vouchers_count + 1 WHERE project_id = $1 AND id = $2",
            &[t.project_id().into(), cid.into()],
        )?;
    }
    outbox::emit(
        c,
        t.project_id(),
        "voucher.created",
        &v.id,
        &json!({"id": v.id, "code": v.code, "campaign_id": v.campaign_id}),
    )?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub fn ledger_entry(
    c: &mut dyn Conn,
    p: &str,
    voucher_id: &str,
    kind: &str,
    amount: i64,
    balance_after: i64,
    redemption_id: Option<&str>,
    source_id: Option<&str>,
    reason: Option<&str>,
) -> Result<String> {
    let id = new_id("vtx");
    c.execute(
        "INSERT INTO gift_transactions (project_id, id, voucher_id, kind, amount, balance_after, redemption_id, source_id, reason, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            p.into(),
            id.clone().into(),
            voucher_id.into(),
            kind.into(),
            amount.into(),
            balance_after.into(),
            redemption_id.map(str::to_string).into(),
            source_id.map(str::to_string).into(),
            reason.map(str::to_string).into(),
            now_string().into(),
        ],
    )?;
    Ok(id)
}

/// Imports one staged row (a voucher definition as JSON). Errors are the row's reason to
/// report, not failures of the batch: each row's writes happen only when it is valid.
pub fn import_one(c: &mut dyn Conn, t: &Tenant, campaign: Option<&str>, payload: &str) -> std::result::Result<(), String> {
    let raw: serde_json::Value = serde_json::from_str(payload).map_err(|e| format!("invalid row: {e}"))?;
    if let Some(reason) = raw.get("invalid").and_then(|v| v.as_str()) {
        return Err(reason.to_string());
    }
    let input: VoucherInput = serde_json::from_value(raw).map_err(|e| format!("invalid row: {e}"))?;
    let code = input.code.clone().ok_or_else(|| "the row has no code".to_string())?;
    let camp = match campaign
        .map(str::to_string)
        .or(input.campaign_id.clone())
        .or(input.campaign.clone())
    {
        Some(k) => Some(get_campaign_rec(c, t.project_id(), &k).map_err(|e| e.to_string())?.campaign),
        None => None,
    };
    let v = input
        .build(new_id("v"), code.clone(), camp.as_ref(), &now_string())
        .map_err(|e| e.details)?;
    if find_voucher(c, t, &code).map_err(|e| e.to_string())?.is_some() {
        return Err(format!("a voucher with code {code} already exists"));
    }
    insert_voucher(c, t, &v, true).map_err(|e| e.to_string())
}

/// The multi-row insert of generated codes: shared values in `$1`..`$6`, then id, code
/// and key per row. The full-size statement is built once; SQLite caches its plan.
fn generation_insert_sql(rows: usize, returning: bool) -> std::borrow::Cow<'static, str> {
    static FULL: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
        [
            build_generation_insert(GENERATION_ROWS_PER_INSERT, false),
            build_generation_insert(GENERATION_ROWS_PER_INSERT, true),
        ]
    });
    if rows == GENERATION_ROWS_PER_INSERT {
        std::borrow::Cow::Borrowed(FULL[returning as usize].as_str())
    } else {
        std::borrow::Cow::Owned(build_generation_insert(rows, returning))
    }
}

fn build_generation_insert(rows: usize, returning: bool) -> String {
    let values: Vec<String> = (0..rows)
        .map(|i| {
            let n = 6 + 3 * i;
            format!("($1, ${}, ${}, ${}, $2, $3, 1, $4, $5, $5, $6, NULL)", n + 1, n + 2, n + 3)
        })
        .collect();
    format!(
        "INSERT INTO vouchers (project_id, id, code, code_key, campaign_id, kind, active, quantity, gift_amount, gift_balance, created_at, data) \
         VALUES {} ON CONFLICT (project_id, code_key) DO NOTHING{}",
        values.join(", "),
        if returning { " RETURNING id" } else { "" }
    )
}

/// Inserts up to `count` codes from `codes` for a campaign in one transaction; returns how
/// many were inserted (codes already taken in the project are skipped).
pub fn generate_chunk(c: &mut dyn Conn, t: &Tenant, campaign: &Campaign, codes: &mut SortedCodes, count: u64) -> Result<u64> {
    tessera_domain::voucher::check_holds_codes(campaign)?;
    let p = t.project_id();
    if load_campaign(c, p, &campaign.id)?.is_none() {
        // Deleted while generating: stop rather than create orphan codes.
        return Err(StoreError::not_found("campaign", campaign.id.clone()));
    }
    let gift = campaign.voucher.gift.as_ref().map(|g| g.amount);
    let quantity = campaign.voucher.redemption.quantity;
    let kind = campaign.voucher.kind.as_str();
    let now = now_string();
    let mut inserted = 0u64;
    // Bounded so that a round colliding with existing codes cannot hold the writer long.
    let mut tries = count.saturating_mul(2).saturating_add(100);
    let shared: [Val; 6] = [
        p.into(),
        campaign.id.clone().into(),
        kind.into(),
        quantity.into(),
        gift.into(),
        now.into(),
    ];
    while inserted < count && tries > 0 {
        // Many rows per statement: per-statement work (binding, stepping, finishing) was a
        // large share of generation time with one row each.
        let rows = (count - inserted).min(tries).min(GENERATION_ROWS_PER_INSERT as u64) as usize;
        let mut params: Vec<Val> = Vec::with_capacity(shared.len() + 3 * rows);
        params.extend(shared.iter().cloned());
        let mut taken = 0;
        while taken < rows {
            let Some((code, key)) = codes.take() else { break };
            params.push(new_id("v").into());
            params.push(code.into());
            params.push(key.into());
            taken += 1;
        }
        if taken == 0 {
            break;
        }
        tries = tries.saturating_sub(taken as u64);
        let opening = gift.filter(|a| *a > 0);
        let sql = generation_insert_sql(taken, opening.is_some());
        if let Some(amount) = opening {
            // Gift cards need the ids actually inserted, for their opening ledger entries.
            let created = c.query(&sql, &params)?;
            inserted += created.len() as u64;
            for row in &created {
                ledger_entry(c, p, &row.text(0)?, "CREDITS_ADDITION", amount, amount, None, None, Some("issue"))?;
            }
        } else {
            inserted += c.execute(&sql, &params)?;
        }
    }
    c.execute(
        "UPDATE campaigns SET vouchers_count = vouchers_count + $1 WHERE project_id = $2 AND id = $3",
        &[Val::Int(inserted as i64), p.into(), campaign.id.clone().into()],
    )?;
    Ok(inserted)
}

fn save_campaign(c: &mut dyn Conn, p: &str, camp: &Campaign, generation_status: &str) -> Result<()> {
    c.execute(
        "INSERT INTO campaigns (project_id, id, name, campaign_type, active, generation_status, created_at, updated_at, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (project_id, id) DO UPDATE SET \
         active = excluded.active, generation_status = excluded.generation_status, updated_at = excluded.updated_at, data = excluded.data",
        &[
            p.into(),
            camp.id.clone().into(),
            camp.name.clone().into(),
            serde_json::to_value(camp.campaign_type)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .into(),
            camp.active.into(),
            generation_status.into(),
            camp.created_at.clone().into(),
            camp.updated_at.clone().into(),
            to_json(camp)?.into(),
        ],
    )?;
    if camp.campaign_type == tessera_domain::voucher::CampaignType::Promotion {
        // Cached tiers carry their campaign.
        crate::ops::promotions::bump(c, p, crate::ops::promotions::PROMOTIONS)?;
    }
    Ok(())
}

fn list_voucher_rows(c: &mut dyn Conn, t: &Tenant, q: &ListQuery) -> Result<(Vec<VoucherRecord>, i64)> {
    let p = t.project_id();
    let mut eq: Vec<(&'static str, Val)> = Vec::new();
    if let Some(cid) = q.filters.get("campaign_id") {
        eq.push(("campaign_id", cid.into()));
    }
    if let Some(name) = q.filters.get("campaign") {
        let cid = load_campaign(c, p, name)?.map(|r| r.campaign.id).unwrap_or_default();
        eq.push(("campaign_id", cid.into()));
    }
    if let Some(code) = q.filters.get("code") {
        eq.push(("code_key", t.code_key(code).into()));
    }
    if let Some(cust) = q.filters.get("customer") {
        eq.push(("holder_id", cust.into()));
    }
    let (count_sql, page_sql, params) = list_vouchers_sql(p, eq, q, !c.is_postgres());
    let total = c.query_one(&count_sql, &params[..params.len() - 2])?.int(0)?;
    let rows = c.query(&page_sql, &params)?;
    let mut cache = HashMap::new();
    let items = rows.iter().map(|r| assemble(c, p, r, &mut cache)).collect::<Result<Vec<_>>>()?;
    Ok((items, total))
}

/// The COUNT and page statements of the voucher listing and their parameters; the page's
/// LIMIT and OFFSET are the last two, which the COUNT does not take. `eq` holds the
/// resolved equality filters, by column.
pub(crate) fn list_vouchers_sql(project_id: &str, eq: Vec<(&'static str, Val)>, q: &ListQuery, sqlite: bool) -> (String, String, Vec<Val>) {
    // SQLite has no statistics: given a holder it still walks the whole project in id
    // order. An expression can use no index, so it takes vouchers_holder and sorts that
    // customer's few vouchers. A campaign can hold millions of codes, which such a sort
    // would read on every page, so a campaign filter keeps the id order.
    let by_holder = sqlite && eq.iter().any(|(col, _)| *col == "holder_id");
    let expr = |col: &str| if by_holder { format!("{col} || ''") } else { col.to_string() };
    let mut clauses = vec!["project_id = $1".to_string()];
    let mut params: Vec<Val> = vec![project_id.into()];
    for (col, v) in eq {
        params.push(v);
        clauses.push(format!("{col} = ${}", params.len()));
    }
    let bounds = [
        ("created_at", "<", &q.created_before),
        ("created_at", ">", &q.created_after),
        ("updated_at", "<", &q.updated_before),
        ("updated_at", ">", &q.updated_after),
    ];
    for (col, op, v) in bounds {
        if let Some(v) = v {
            params.push(v.into());
            clauses.push(format!("{} {op} ${}", expr(col), params.len()));
        }
    }
    let w = clauses.join(" AND ");
    let dir = if q.descending { "DESC" } else { "ASC" };
    // Ids are time-sortable and indexed with the project: ordering by id is ordering by
    // creation, without an index of its own.
    let col = match q.sort.column() {
        "created_at" => "id",
        other => other,
    };
    let nulls = if col == "id" { "" } else { " NULLS LAST" };
    let n = params.len();
    params.push(Val::Int(q.limit as i64));
    params.push(Val::Int(q.offset() as i64));
    (
        format!("SELECT COUNT(*) FROM vouchers WHERE {w}"),
        format!(
            "SELECT {VOUCHER_COLUMNS} FROM vouchers WHERE {w} ORDER BY {} {dir}{nulls}, id {dir} LIMIT ${} OFFSET ${}",
            expr(col),
            n + 1,
            n + 2
        ),
        params,
    )
}

/// The result of a campaign creation: the campaign, and an async action when codes are
/// generated in the background.
pub struct CreatedCampaign {
    pub campaign: CampaignRecord,
    pub generate: Option<(String, u64)>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BalanceChange {
    pub amount: i64,
    pub total: i64,
    pub balance: i64,
    pub voucher_id: String,
}

impl Store {
    pub async fn create_campaign(&self, t: &Tenant, input: CampaignInput) -> Result<CreatedCampaign> {
        let tiers = input.promotion.as_ref().and_then(|p| p.tiers.clone()).unwrap_or_default();
        if tiers.len() > tessera_domain::promotion::MAX_TIERS_PER_CAMPAIGN {
            return Err(StoreError::Invalid(InvalidInput::payload(format!(
                "a campaign holds at most {} promotion tiers",
                tessera_domain::promotion::MAX_TIERS_PER_CAMPAIGN
            ))));
        }
        let (campaign, count) = input.create(new_id("camp"), &now_string())?;
        let t = t.clone();
        self.write(move |c| {
            let p = t.project_id();
            c.lock_key(&format!("campaign-name:{p}:{}", campaign.name))?;
            if load_campaign(c, p, &campaign.name)?.is_some() {
                return Err(StoreError::Conflict {
                    key: "duplicate_found",
                    message: "Duplicated resource found".into(),
                    details: format!("Duplicated campaign exists with name {}", campaign.name),
                });
            }
            let status = if count > 1 { "IN_PROGRESS" } else { "DONE" };
            save_campaign(c, p, &campaign, status)?;
            for tier in tiers {
                crate::ops::promotions::create_tier_in(c, p, &campaign, tier)?;
            }
            let mut generate = None;
            if count == 1 {
                let mut gen = CodeGenerator::new(CodeSpace::parse(&campaign.voucher.code_config)?);
                // One candidate at a time: the first free one of a sorted batch would favour
                // codes early in the alphabet.
                let mut found = false;
                for _ in 0..8 {
                    let mut candidate = SortedCodes::draw(&mut gen, &t, 1);
                    if generate_chunk(c, &t, &campaign, &mut candidate, 1)? == 1 {
                        found = true;
                        break;
                    }
                }
                if !found {
                    return Err(StoreError::Invalid(InvalidInput::payload(
                        "could not find a free code for this code configuration",
                    )));
                }
            } else if count > 1 {
                let action = crate::ops::async_actions::create(
                    c,
                    p,
                    "CAMPAIGN.VOUCHERS_GENERATE",
                    &json!({"campaign_id": campaign.id, "count": count, "target_total": count}),
                )?;
                generate = Some((action, count));
            }
            outbox::emit(
                c,
                p,
                "campaign.created",
                &campaign.id,
                &json!({"id": campaign.id, "name": campaign.name}),
            )?;
            let rec = get_campaign_rec(c, p, &campaign.id)?;
            crate::ops::metadata_schemas::enforce(c, p, "campaign", &rec.campaign.metadata)?;
            Ok(CreatedCampaign { campaign: rec, generate })
        })
        .await
    }

    pub async fn get_campaign(&self, t: &Tenant, key: String) -> Result<CampaignRecord> {
        let p = t.project_id().to_string();
        self.read(move |c| get_campaign_rec(c, &p, &key)).await
    }

    pub async fn list_campaigns(&self, t: &Tenant, q: ListQuery) -> Result<(Vec<CampaignRecord>, i64)> {
        let p = t.project_id().to_string();
        self.read(move |c| {
            let (camps, total) = crate::ops::docs::list::<Campaign>(c, &CAMPAIGNS, &p, &q, &[("campaign_type", "campaign_type")], &[])?;
            let mut out = Vec::with_capacity(camps.len());
            for camp in camps {
                out.push(get_campaign_rec(c, &p, &camp.id)?);
            }
            Ok((out, total))
        })
        .await
    }

    pub async fn update_campaign(&self, t: &Tenant, key: String, input: CampaignInput) -> Result<CampaignRecord> {
        let p = t.project_id().to_string();
        self.write(move |c| {
            let id = get_campaign_rec(c, &p, &key)?.campaign.id;
            c.lock_key(&format!("campaigns:{p}:{id}"))?;
            let rec = get_campaign_rec(c, &p, &id)?;
            let updated = input.update(&rec.campaign, &now_string())?;
            save_campaign(c, &p, &updated, &rec.generation_status)?;
            // Generated codes follow their campaign's definition; keep the column copy of
            // the redemption limit in step with it.
            c.execute(
                "UPDATE vouchers SET quantity = $1 WHERE project_id = $2 AND campaign_id = $3 AND data IS NULL",
                &[updated.voucher.redemption.quantity.into(), p.clone().into(), id.clone().into()],
            )?;
            outbox::emit(c, &p, "campaign.updated", &id, &json!({"id": id}))?;
            let rec = get_campaign_rec(c, &p, &id)?;
            crate::ops::metadata_schemas::enforce(c, &p, "campaign", &rec.campaign.metadata)?;
            Ok(rec)
        })
        .await
    }

    pub async fn set_campaign_active(&self, t: &Tenant, key: String, active: bool) -> Result<CampaignRecord> {
        let p = t.project_id().to_string();
        self.write(move |c| {
            let id = get_campaign_rec(c, &p, &key)?.campaign.id;
            c.lock_key(&format!("campaigns:{p}:{id}"))?;
            let mut rec = get_campaign_rec(c, &p, &id)?;
            rec.campaign.active = active;
            rec.campaign.updated_at = Some(now_string());
            save_campaign(c, &p, &rec.campaign, &rec.generation_status)?;
            outbox::emit(
                c,
                &p,
                if active { "campaign.enabled" } else { "campaign.disabled" },
                &id,
                &json!({"id": id}),
            )?;
            get_campaign_rec(c, &p, &id)
        })
        .await
    }

    /// Deletes a campaign with its vouchers, their reservations and rule assignments
    /// (redemption history is kept). A generation still running stops at its next chunk.
    pub async fn delete_campaign(&self, t: &Tenant, key: String) -> Result<()> {
        let p = t.project_id().to_string();
        self.write(move |c| {
            let id = get_campaign_rec(c, &p, &key)?.campaign.id;
            c.lock_key(&format!("campaigns:{p}:{id}"))?;
            let of_campaign = "SELECT id FROM vouchers WHERE project_id = $1 AND campaign_id = $2";
            c.execute(&format!("DELETE FROM voucher_sessions WHERE project_id = $1 AND voucher_id IN ({of_campaign})"), &[p.clone().into(), id.clone().into()])?;
            // Two statements: under one `project_id`, SQLite serves an OR of the two
            // with no index and read the project's every assignment.
            c.execute(
                "DELETE FROM rule_assignments WHERE project_id = $1 AND related_object_id = $2",
                &[p.clone().into(), id.clone().into()],
            )?;
            c.execute(
                &format!("DELETE FROM rule_assignments WHERE project_id = $1 AND related_object_id IN ({of_campaign})"),
                &[p.clone().into(), id.clone().into()],
            )?;
            c.execute("DELETE FROM vouchers WHERE project_id = $1 AND campaign_id = $2", &[p.clone().into(), id.clone().into()])?;
            c.execute(
                "DELETE FROM rule_assignments WHERE project_id = $1 AND related_object_id IN (SELECT id FROM promotion_tiers WHERE project_id = $1 AND campaign_id = $2)",
                &[p.clone().into(), id.clone().into()],
            )?;
            let tiers = c.execute("DELETE FROM promotion_tiers WHERE project_id = $1 AND campaign_id = $2", &[p.clone().into(), id.clone().into()])?;
            let stacks = c.execute("DELETE FROM promotion_stacks WHERE project_id = $1 AND campaign_id = $2", &[p.clone().into(), id.clone().into()])?;
            if tiers + stacks > 0 {
                crate::ops::promotions::bump(c, &p, crate::ops::promotions::PROMOTIONS)?;
            }
            c.execute("DELETE FROM campaigns WHERE project_id = $1 AND id = $2", &[p.clone().into(), id.clone().into()])?;
            outbox::emit(c, &p, "campaign.deleted", &id, &json!({"id": id}))?;
            Ok(())
        })
        .await
    }

    /// Adds one voucher to a campaign, with a given code or a generated one.
    pub async fn add_campaign_voucher(
        &self,
        t: &Tenant,
        campaign_key: String,
        code: Option<String>,
        input: VoucherInput,
    ) -> Result<VoucherRecord> {
        let t = t.clone();
        self.write(move |c| {
            let camp = get_campaign_rec(c, t.project_id(), &campaign_key)?.campaign;
            let code = match code.or(input.code.clone()) {
                Some(code) => code,
                None => {
                    let cfg = input.code_config.clone().unwrap_or_else(|| camp.voucher.code_config.clone());
                    let mut gen = CodeGenerator::new(CodeSpace::parse(&cfg)?);
                    let mut found = None;
                    for _ in 0..100 {
                        let Some(candidate) = gen.next_code() else { break };
                        if find_voucher(c, &t, &candidate)?.is_none() {
                            found = Some(candidate);
                            break;
                        }
                    }
                    found.ok_or_else(|| StoreError::Invalid(InvalidInput::payload("the code configuration has no free code left")))?
                }
            };
            let v = input.build(new_id("v"), code.clone(), Some(&camp), &now_string())?;
            let customized = input.metadata.is_some()
                || input.additional_info.is_some()
                || input.category.is_some()
                || input.start_date.is_some()
                || input.expiration_date.is_some()
                || input.discount.is_some()
                || input.gift.is_some()
                || input.validation_rules.is_some()
                || input.validity_timeframe.is_some()
                || input.validity_day_of_week.is_some()
                || input.validity_hours.is_some();
            insert_voucher(c, &t, &v, customized)?;
            let rec = get_voucher_rec(c, &t, &code)?;
            crate::ops::metadata_schemas::enforce(c, t.project_id(), "voucher", &rec.voucher.metadata)?;
            Ok(rec)
        })
        .await
    }

    /// Creates a voucher: in a campaign when `campaign`/`campaign_id` names one, otherwise
    /// standalone.
    pub async fn create_voucher(&self, t: &Tenant, code: Option<String>, input: VoucherInput) -> Result<VoucherRecord> {
        let t = t.clone();
        self.write(move |c| {
            let camp = match input.campaign_id.clone().or(input.campaign.clone()) {
                Some(k) => Some(get_campaign_rec(c, t.project_id(), &k)?.campaign),
                None => None,
            };
            let code = match code.or(input.code.clone()) {
                Some(code) => code,
                None => {
                    let cfg = input
                        .code_config
                        .clone()
                        .or(camp.as_ref().map(|c| c.voucher.code_config.clone()))
                        .unwrap_or_default();
                    let mut gen = CodeGenerator::new(CodeSpace::parse(&cfg)?);
                    let mut found = None;
                    for _ in 0..100 {
                        let Some(candidate) = gen.next_code() else { break };
                        if find_voucher(c, &t, &candidate)?.is_none() {
                            found = Some(candidate);
                            break;
                        }
                    }
                    found.ok_or_else(|| StoreError::Invalid(InvalidInput::payload("the code configuration has no free code left")))?
                }
            };
            let v = input.build(new_id("v"), code.clone(), camp.as_ref(), &now_string())?;
            insert_voucher(c, &t, &v, true)?;
            let rec = get_voucher_rec(c, &t, &code)?;
            crate::ops::metadata_schemas::enforce(c, t.project_id(), "voucher", &rec.voucher.metadata)?;
            Ok(rec)
        })
        .await
    }

    pub async fn get_voucher(&self, t: &Tenant, code: String) -> Result<VoucherRecord> {
        let t = t.clone();
        self.read(move |c| get_voucher_rec(c, &t, &code)).await
    }

    pub async fn list_vouchers(&self, t: &Tenant, q: ListQuery) -> Result<(Vec<VoucherRecord>, i64)> {
        let t = t.clone();
        self.read(move |c| list_voucher_rows(c, &t, &q)).await
    }

    pub async fn update_voucher(&self, t: &Tenant, code: String, input: VoucherInput) -> Result<VoucherRecord> {
        let t = t.clone();
        self.write(move |c| {
            let id = get_voucher_rec(c, &t, &code)?.voucher.id;
            c.lock_key(&format!("voucher:{}:{id}", t.project_id()))?;
            let rec = get_voucher_rec(c, &t, &id)?;
            let v = input.update(&rec.voucher, &now_string())?;
            c.execute(
                "UPDATE vouchers SET active = $1, quantity = $2, updated_at = $3, data = $4 WHERE project_id = $5 AND id = $6",
                &[
                    v.active.into(),
                    v.redemption_quantity.into(),
                    v.updated_at.clone().into(),
                    to_json(&v)?.into(),
                    t.project_id().into(),
                    id.clone().into(),
                ],
            )?;
            outbox::emit(c, t.project_id(), "voucher.updated", &id, &json!({"id": id, "code": v.code}))?;
            let rec = get_voucher_rec(c, &t, &id)?;
            crate::ops::metadata_schemas::enforce(c, t.project_id(), "voucher", &rec.voucher.metadata)?;
            Ok(rec)
        })
        .await
    }

    pub async fn set_voucher_active(&self, t: &Tenant, code: String, active: bool) -> Result<VoucherRecord> {
        let t = t.clone();
        self.write(move |c| {
            let id = get_voucher_rec(c, &t, &code)?.voucher.id;
            c.execute(
                "UPDATE vouchers SET active = $1, updated_at = $2 WHERE project_id = $3 AND id = $4",
                &[active.into(), now_string().into(), t.project_id().into(), id.clone().into()],
            )?;
            outbox::emit(
                c,
                t.project_id(),
                if active { "voucher.enabled" } else { "voucher.disabled" },
                &id,
                &json!({"id": id}),
            )?;
            get_voucher_rec(c, &t, &id)
        })
        .await
    }

    pub async fn delete_voucher(&self, t: &Tenant, code: String) -> Result<()> {
        let t = t.clone();
        self.write(move |c| {
            let v = get_voucher_rec(c, &t, &code)?.voucher;
            let p = t.project_id();
            c.execute(
                "DELETE FROM vouchers WHERE project_id = $1 AND id = $2",
                &[p.into(), v.id.clone().into()],
            )?;
            c.execute(
                "DELETE FROM voucher_sessions WHERE project_id = $1 AND voucher_id = $2",
                &[p.into(), v.id.clone().into()],
            )?;
            if let Some(cid) = &v.campaign_id {
                c.execute(
                    "UPDATE campaigns SET vouchers_count = vouchers_count - 1 WHERE project_id = $1 AND id = $2",
                    &[p.into(), cid.into()],
                )?;
            }
            outbox::emit(c, p, "voucher.deleted", &v.id, &json!({"id": v.id, "code": v.code}))?;
            Ok(())
        })
        .await
    }

    /// Adds (or, with a negative amount, removes) gift credit. The balance and its ledger
    /// entry change in one transaction, and the balance can never go below zero.
    pub async fn adjust_gift_balance(
        &self,
        t: &Tenant,
        code: String,
        amount: i64,
        source_id: Option<String>,
        reason: Option<String>,
    ) -> Result<BalanceChange> {
        if amount == 0 || amount.abs() > tessera_domain::limits::MAX_AMOUNT {
            return Err(StoreError::Invalid(InvalidInput::payload(
                "'amount' must be a non-zero integer amount in minor units",
            )));
        }
        let t = t.clone();
        self.write(move |c| {
            let p = t.project_id();
            let rec = get_voucher_rec(c, &t, &code)?;
            if rec.voucher.kind != VoucherType::GiftVoucher {
                return Err(StoreError::Invalid(InvalidInput {
                    key: "invalid_voucher",
                    message: "Invalid voucher".into(),
                    details: "Only gift vouchers have a balance to adjust.".into(),
                }));
            }
            let id = rec.voucher.id;
            let row = c.query_opt(
                "UPDATE vouchers SET gift_balance = gift_balance + $1, gift_amount = gift_amount + CASE WHEN $1 > 0 THEN $1 ELSE 0 END, updated_at = $2 \
                 WHERE project_id = $3 AND id = $4 AND gift_balance + $1 >= 0 RETURNING gift_balance, gift_amount",
                &[amount.into(), now_string().into(), p.into(), id.clone().into()],
            )?;
            let Some(row) = row else {
                return Err(StoreError::Invalid(InvalidInput {
                    key: "gift_amount_exceeded",
                    message: "Gift amount exceeded".into(),
                    details: "The balance would go below zero.".into(),
                }));
            };
            let (balance, total) = (row.int(0)?, row.int(1)?);
            let kind = if amount > 0 { "CREDITS_ADDITION" } else { "CREDITS_REMOVAL" };
            ledger_entry(c, p, &id, kind, amount, balance, None, source_id.as_deref(), reason.as_deref())?;
            outbox::emit(c, p, "voucher.gift.balance_added", &id, &json!({"id": id, "amount": amount, "balance": balance}))?;
            Ok(BalanceChange { amount, total, balance, voucher_id: id })
        })
        .await
    }

    pub async fn gift_transactions(
        &self,
        t: &Tenant,
        code: String,
        limit: u32,
        descending: bool,
        starting_after_id: Option<String>,
    ) -> Result<(Vec<Row>, bool)> {
        let t = t.clone();
        self.read(move |c| {
            let rec = get_voucher_rec(c, &t, &code)?;
            let (cmp, dir) = if descending { ("<", "DESC") } else { (">", "ASC") };
            let mut params: Vec<Val> = vec![t.project_id().into(), rec.voucher.id.clone().into(), Val::Int(limit as i64 + 1)];
            let after = match starting_after_id {
                Some(a) => {
                    params.push(a.into());
                    format!(" AND id {cmp} $4")
                }
                None => String::new(),
            };
            let mut rows = c.query(
                &format!(
                    "SELECT id, voucher_id, kind, amount, balance_after, redemption_id, source_id, reason, created_at FROM gift_transactions \
                     WHERE project_id = $1 AND voucher_id = $2{after} ORDER BY id {dir} LIMIT $3"
                ),
                &params,
            )?;
            let more = rows.len() > limit as usize;
            rows.truncate(limit as usize);
            Ok((rows, more))
        })
        .await
    }
}
