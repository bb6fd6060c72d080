//! Publications: handing a specific code, or the next free code of a campaign, to a
//! customer. A code is held by at most one customer (`vouchers.holder_id`); the guarded
//! UPDATE that sets it is what makes concurrent publications take different codes.

use crate::conn::{Conn, Val};
use crate::ops::customers;
use crate::ops::org::Tenant;
use crate::ops::outbox;
use crate::ops::views;
use crate::ops::vouchers::{find_voucher, get_campaign_rec, VoucherRecord};
use crate::{Result, Store, StoreError};
use serde_json::{json, Value};
use tessera_domain::customer::Customer;
use tessera_domain::ids::new_id;
use tessera_domain::publication::PublicationInput;
use tessera_domain::time::now_string;
use tessera_domain::InvalidInput;

fn invalid(key: &'static str, message: &str, details: String) -> StoreError {
    StoreError::Invalid(InvalidInput {
        key,
        message: message.into(),
        details,
    })
}

/// The next active, unheld code of a campaign, marked as held by `customer_id`.
pub(crate) fn take_next_code(c: &mut dyn Conn, p: &str, campaign_id: &str, customer_id: &str) -> Result<Option<String>> {
    if c.is_postgres() {
        // SKIP LOCKED: concurrent publishers each lock a different candidate.
        let Some(row) = c.query_opt(
            "SELECT id FROM vouchers WHERE project_id = $1 AND campaign_id = $2 AND holder_id IS NULL AND active = 1 \
             ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
            &[p.into(), campaign_id.into()],
        )?
        else {
            return Ok(None);
        };
        let id = row.text(0)?;
        let n = c.execute(
            "UPDATE vouchers SET holder_id = $1 WHERE project_id = $2 AND id = $3 AND holder_id IS NULL",
            &[customer_id.into(), p.into(), id.clone().into()],
        )?;
        return Ok((n == 1).then_some(id));
    }
    // SQLite: one writer, so no race; a cursor keeps each search an index range instead of
    // a walk over every code already handed out.
    let cursor = c.query_opt(
        "SELECT after_created, after_row FROM publication_cursors WHERE project_id = $1 AND campaign_id = $2",
        &[p.into(), campaign_id.into()],
    )?;
    let (after_created, after_row) = match cursor {
        Some(r) => (r.text(0)?, r.int(1)?),
        None => (String::new(), -1),
    };
    // Two index seeks rather than one row-value comparison: SQLite turns
    // `(created_at, rowid) > (?, ?)` into `created_at >= ?` and then walks every code of
    // that timestamp, and a generated campaign holds thousands of codes per timestamp.
    let same_time = c.query_opt(
        "SELECT id, created_at, rowid FROM vouchers WHERE project_id = $1 AND campaign_id = $2 \
         AND created_at = $3 AND rowid > $4 AND holder_id IS NULL AND active = 1 ORDER BY rowid LIMIT 1",
        &[p.into(), campaign_id.into(), after_created.clone().into(), Val::Int(after_row)],
    )?;
    let row = match same_time {
        Some(r) => r,
        None => match c.query_opt(
            "SELECT id, created_at, rowid FROM vouchers WHERE project_id = $1 AND campaign_id = $2 \
             AND created_at > $3 AND holder_id IS NULL AND active = 1 ORDER BY created_at, rowid LIMIT 1",
            &[p.into(), campaign_id.into(), after_created.into()],
        )? {
            Some(r) => r,
            None => return Ok(None),
        },
    };
    let (id, created, rowid) = (row.text(0)?, row.text(1)?, row.int(2)?);
    c.execute(
        "UPDATE vouchers SET holder_id = $1 WHERE project_id = $2 AND id = $3 AND holder_id IS NULL",
        &[customer_id.into(), p.into(), id.clone().into()],
    )?;
    c.execute(
        "INSERT INTO publication_cursors (project_id, campaign_id, after_created, after_row) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (project_id, campaign_id) DO UPDATE SET after_created = excluded.after_created, after_row = excluded.after_row",
        &[p.into(), campaign_id.into(), created.into(), Val::Int(rowid)],
    )?;
    Ok(Some(id))
}

fn customer_view(c: &Customer) -> Value {
    json!({"id": c.id, "source_id": c.source_id, "name": c.name, "email": c.email, "metadata": c.metadata, "object": "customer"})
}

fn load(c: &mut dyn Conn, p: &str, id: &str) -> Result<Option<Value>> {
    match c.query_opt(
        "SELECT data FROM publications WHERE project_id = $1 AND id = $2",
        &[p.into(), id.into()],
    )? {
        Some(r) => Ok(Some(r.json(0)?)),
        None => Ok(None),
    }
}

/// Records one publication of `vouchers` (already held by the customer) and its event.
#[allow(clippy::too_many_arguments)]
fn record(
    c: &mut dyn Conn,
    t: &Tenant,
    input: &PublicationInput,
    customer: &Customer,
    campaign_id: Option<&str>,
    vouchers: &[VoucherRecord],
    many: bool,
) -> Result<Value> {
    let p = t.project_id();
    let id = new_id("pub");
    let now = now_string();
    let channel = input.channel.clone().unwrap_or_else(|| "API".into());
    let mut body = json!({
        "id": id, "object": "publication", "created_at": now, "customer_id": customer.id,
        "tracking_id": customer.source_id, "metadata": input.metadata.clone().unwrap_or_default(),
        "channel": channel, "source_id": input.source_id, "result": "SUCCESS",
        "customer": customer_view(customer),
        "vouchers_id": vouchers.iter().map(|v| v.voucher.id.clone()).collect::<Vec<_>>(),
    });
    if many {
        body["vouchers"] = json!(vouchers.iter().map(|v| v.voucher.code.clone()).collect::<Vec<_>>());
    } else if let Some(v) = vouchers.first() {
        body["voucher"] = views::voucher(v);
    }
    let first = vouchers.first().map(|v| v.voucher.id.clone()).unwrap_or_default();
    c.execute(
        "INSERT INTO publications (project_id, id, source_id, campaign_id, voucher_id, customer_id, channel, created_at, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            p.into(),
            id.clone().into(),
            input.source_id.clone().into(),
            campaign_id.map(str::to_string).into(),
            first.into(),
            customer.id.clone().into(),
            input.channel.clone().into(),
            now.into(),
            body.to_string().into(),
        ],
    )?;
    outbox::emit(c, p, "publication.succeeded", &id, &body)?;
    Ok(body)
}

/// A customer's first publication of a campaign (the customer index ends with
/// `created_at`, so this is one index step).
pub(crate) const JOIN_ONCE_SQL: &str = "SELECT id FROM publications WHERE project_id = $1 AND customer_id = $2 AND campaign_id = $3 \
     ORDER BY created_at LIMIT 1";

fn publish_in(c: &mut dyn Conn, t: &Tenant, input: &PublicationInput, join_once: bool) -> Result<Value> {
    let p = t.project_id();
    if let Some(sid) = &input.source_id {
        // The same source id is the same publication: a retry gets the first answer.
        c.lock_key(&format!("publication-source:{p}:{sid}"))?;
        if let Some(r) = c.query_opt(
            "SELECT id FROM publications WHERE project_id = $1 AND source_id = $2 LIMIT 1",
            &[p.into(), sid.clone().into()],
        )? {
            if let Some(existing) = load(c, p, &r.text(0)?)? {
                return Ok(existing);
            }
        }
    }
    let customer_input = input
        .customer
        .clone()
        .ok_or_else(|| StoreError::Invalid(InvalidInput::payload("Payload must have required property 'customer'")))?;
    let customer = customers::upsert(c, p, customer_input)?;
    if let Some(code) = &input.voucher {
        let v = find_voucher(c, t, code)?.ok_or_else(|| StoreError::not_found("voucher", code.clone()))?;
        c.lock_key(&format!("voucher:{p}:{}", v.voucher.id))?;
        let held = c.execute(
            "UPDATE vouchers SET holder_id = $1 WHERE project_id = $2 AND id = $3 AND (holder_id IS NULL OR holder_id = $1)",
            &[customer.id.clone().into(), p.into(), v.voucher.id.clone().into()],
        )?;
        if held != 1 {
            return Err(invalid(
                "voucher_already_published",
                "Voucher already published",
                format!("{code} is held by another customer"),
            ));
        }
        let fresh = find_voucher(c, t, &v.voucher.id)?.unwrap_or(v);
        let campaign = fresh.voucher.campaign_id.clone();
        return record(c, t, input, &customer, campaign.as_deref(), &[fresh], false);
    }
    let Some(camp_ref) = &input.campaign else {
        return Err(StoreError::Invalid(InvalidInput::payload("name a 'voucher' or a 'campaign'")));
    };
    let campaign = get_campaign_rec(c, p, camp_ref.name())?.campaign;
    tessera_domain::voucher::check_holds_codes(&campaign)?;
    if !campaign.active {
        return Err(invalid(
            "campaign_disabled",
            "Campaign disabled",
            format!("campaign {} is disabled", campaign.name),
        ));
    }
    // A customer's publications of one campaign are decided one at a time.
    c.lock_key(&format!("campaign-customer:{p}:{}:{}", campaign.id, customer.id))?;
    if join_once || campaign.join_once {
        if let Some(r) = c.query_opt(JOIN_ONCE_SQL, &[p.into(), customer.id.clone().into(), campaign.id.clone().into()])? {
            if let Some(existing) = load(c, p, &r.text(0)?)? {
                return Ok(existing);
            }
        }
    }
    let count = camp_ref.count();
    let mut vouchers = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let Some(id) = take_next_code(c, p, &campaign.id, &customer.id)? else {
            return Err(invalid(
                "no_voucher_suitable_for_publication",
                "No voucher suitable for publication",
                format!("campaign {} has no active code left to publish", campaign.name),
            ));
        };
        let v = find_voucher(c, t, &id)?.ok_or_else(|| StoreError::Internal(format!("published voucher {id} vanished")))?;
        vouchers.push(v);
    }
    record(c, t, input, &customer, Some(&campaign.id), &vouchers, count > 1)
}

/// One code of `campaign` for `customer` in a bulk publication: `Some(true)` when a
/// code was published, `Some(false)` when the customer already held a publication of the
/// campaign (each member gets exactly one), `None` when no free code is left.
pub(crate) fn publish_once(
    c: &mut dyn Conn,
    t: &Tenant,
    campaign: &tessera_domain::voucher::Campaign,
    customer: &Customer,
    input: &PublicationInput,
) -> Result<Option<bool>> {
    let p = t.project_id();
    c.lock_key(&format!("campaign-customer:{p}:{}:{}", campaign.id, customer.id))?;
    if c.query_opt(
        "SELECT 1 FROM publications WHERE project_id = $1 AND customer_id = $2 AND campaign_id = $3 LIMIT 1",
        &[p.into(), customer.id.clone().into(), campaign.id.clone().into()],
    )?
    .is_some()
    {
        return Ok(Some(false));
    }
    let Some(id) = take_next_code(c, p, &campaign.id, &customer.id)? else {
        return Ok(None);
    };
    let v = find_voucher(c, t, &id)?.ok_or_else(|| StoreError::Internal(format!("published voucher {id} vanished")))?;
    record(c, t, input, customer, Some(&campaign.id), &[v], false)?;
    Ok(Some(true))
}

pub struct PublicationList {
    pub items: Vec<Value>,
    pub total: i64,
}

impl Store {
    pub async fn publish(&self, t: &Tenant, input: PublicationInput, join_once: bool) -> Result<Value> {
        input.validate()?;
        let t = t.clone();
        self.write(move |c| publish_in(c, &t, &input, join_once)).await
    }

    /// Publications newest first, filtered by campaign, customer, voucher code or source id.
    pub async fn list_publications(
        &self,
        t: &Tenant,
        filters: Vec<(&'static str, String)>,
        limit: u32,
        page: u32,
        ascending: bool,
    ) -> Result<PublicationList> {
        let t = t.clone();
        self.read(move |c| {
            let p = t.project_id();
            let mut clauses = vec!["project_id = $1".to_string()];
            let mut params: Vec<Val> = vec![p.into()];
            for (field, value) in filters {
                let (col, v) = match field {
                    "campaign" => (
                        "campaign_id",
                        crate::ops::vouchers::load_campaign(c, p, &value)?
                            .map(|r| r.campaign.id)
                            .unwrap_or_default(),
                    ),
                    "customer" => (
                        "customer_id",
                        crate::ops::docs::find::<Customer>(c, &customers::TABLE, p, &value)?
                            .map(|c| c.id)
                            .unwrap_or_default(),
                    ),
                    "voucher" => ("voucher_id", find_voucher(c, &t, &value)?.map(|v| v.voucher.id).unwrap_or_default()),
                    _ => ("source_id", value),
                };
                params.push(v.into());
                clauses.push(format!("{col} = ${}", params.len()));
            }
            let w = clauses.join(" AND ");
            let total = c
                .query_one(&format!("SELECT COUNT(*) FROM publications WHERE {w}"), &params)?
                .int(0)?;
            let dir = if ascending { "ASC" } else { "DESC" };
            let n = params.len();
            params.push(Val::Int(i64::from(limit)));
            params.push(Val::Int(i64::from(page.max(1) - 1) * i64::from(limit)));
            let rows = c.query(
                &format!(
                    "SELECT data FROM publications WHERE {w} ORDER BY created_at {dir}, id {dir} LIMIT ${} OFFSET ${}",
                    n + 1,
                    n + 2
                ),
                &params,
            )?;
            let items = rows.iter().map(|r| r.json(0)).collect::<Result<Vec<Value>>>()?;
            Ok(PublicationList { items, total })
        })
        .await
    }

    /// The codes a customer holds (their wallet), newest first.
    pub async fn customer_redeemables(&self, t: &Tenant, customer: String, limit: u32, page: u32) -> Result<(Vec<Value>, i64)> {
        let t = t.clone();
        self.read(move |c| {
            let p = t.project_id();
            let cust = crate::ops::docs::get::<Customer>(c, &customers::TABLE, p, &customer)?;
            let total = c
                .query_one(
                    "SELECT COUNT(*) FROM vouchers WHERE project_id = $1 AND holder_id = $2",
                    &[p.into(), cust.id.clone().into()],
                )?
                .int(0)?;
            let rows = c.query(
                "SELECT id FROM vouchers WHERE project_id = $1 AND holder_id = $2 ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4",
                &[
                    p.into(),
                    cust.id.clone().into(),
                    Val::Int(i64::from(limit)),
                    Val::Int(i64::from(page.max(1) - 1) * i64::from(limit)),
                ],
            )?;
            let now = tessera_domain::time::now();
            let tz = t.timezone();
            let mut items = Vec::with_capacity(rows.len());
            for r in rows {
                let id = r.text(0)?;
                let Some(v) = find_voucher(c, &t, &id)? else { continue };
                let campaign_type = match &v.voucher.campaign_id {
                    Some(cid) => serde_json::to_value(get_campaign_rec(c, p, cid)?.campaign.campaign_type).unwrap_or(Value::Null),
                    None => Value::Null,
                };
                let status = if !v.voucher.active {
                    "DISABLED"
                } else if v.voucher.redemption_quantity.is_some_and(|q| v.counters.redeemed_quantity >= q) {
                    "USED"
                } else if v.counters.gift_balance == Some(0) {
                    "NO_BALANCE"
                } else {
                    match v.voucher.schedule.validity().map(|val| val.check(now, &tz)) {
                        Ok(Err(tessera_domain::validity::NotValid::NotActiveYet)) => "NOT_ACTIVE_YET",
                        Ok(Err(tessera_domain::validity::NotValid::Expired)) => "EXPIRED",
                        _ => "ACTIVE",
                    }
                };
                items.push(json!({
                    "id": format!("hold_{}", v.voucher.id), "object": "customer_redeemable", "created_at": v.voucher.created_at,
                    "redeemable_id": v.voucher.id, "redeemable_object": "voucher", "customer_id": cust.id, "holder_role": "OWNER",
                    "campaign_id": v.voucher.campaign_id, "campaign_type": campaign_type, "voucher_type": v.voucher.kind.as_str(),
                    "redeemable": {"type": "voucher", "voucher": views::voucher(&v), "status": status},
                }));
            }
            Ok((items, total))
        })
        .await
    }
}
