//! Promotion stacks (`/v1/promotions/.../stacks`): ordered sets of one promotion
//! campaign's tiers, stored as documents. Every write bumps the promotions cache version
//! in its transaction.

use crate::conn::{Conn, Val};
use crate::ops::categories;
use crate::ops::docs::{self, to_json, Table};
use crate::ops::org::Tenant;
use crate::ops::promotions::{self, bump, CategoryRow, PROMOTIONS};
use crate::{Result, Store, StoreError};
use serde_json::{json, Value};
use std::collections::HashMap;
use tessera_domain::ids::new_id;
use tessera_domain::list::{ListQuery, ListSpec, SortField};
use tessera_domain::promotion_stack::{PromotionStack, PromotionStackInput, MAX_STACKS_PER_CAMPAIGN};
use tessera_domain::time::now_string;
use tessera_domain::InvalidInput;

pub const STACKS: Table = Table {
    name: "promotion_stacks",
    resource_type: "promotion_stack",
};

/// `GET /v1/promotions/stacks`: Voucherify's limit, page and order (created_at,
/// updated_at, name).
pub const LIST_SPEC: ListSpec = ListSpec {
    sorts: &[SortField::CreatedAt, SortField::UpdatedAt, SortField::Name],
    filters: &[],
    default_limit: 10,
};

/// `GET /v1/promotions/{campaignId}/stacks` takes no parameters in Voucherify and
/// returns every stack of the campaign, which is at most one page of this size.
pub const CAMPAIGN_LIST_SPEC: ListSpec = ListSpec {
    sorts: &[SortField::CreatedAt, SortField::UpdatedAt, SortField::Name],
    filters: &[],
    default_limit: MAX_STACKS_PER_CAMPAIGN as u32,
};

/// A stack as the API shows it. A category deleted since it was assigned shows as none.
pub fn view(s: &PromotionStack, cats: &HashMap<String, CategoryRow>) -> Value {
    let cat = s.category_id.as_ref().and_then(|id| cats.get(id));
    json!({
        "id": s.id,
        "name": s.name,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "campaign_id": s.campaign_id,
        "object": "promotion_stack",
        "tiers": s.tiers,
        "category_id": cat.map(|c| c.id.clone()),
        "categories": cat.map(|c| vec![c.view(None)]).unwrap_or_default(),
    })
}

fn campaign_exists(c: &mut dyn Conn, p: &str, campaign_id: &str) -> Result<()> {
    c.query_opt(
        "SELECT 1 FROM campaigns WHERE project_id = $1 AND id = $2",
        &[p.into(), campaign_id.into()],
    )?
    .ok_or_else(|| StoreError::not_found("campaign", campaign_id))?;
    Ok(())
}

/// Every id must be a promotion tier of this campaign (a tier of another campaign
/// cannot stack with this one's).
fn check_tiers(c: &mut dyn Conn, p: &str, campaign_id: &str, ids: &[String]) -> Result<()> {
    let mut params: Vec<Val> = vec![p.into(), campaign_id.into()];
    let marks: Vec<String> = ids
        .iter()
        .map(|id| {
            params.push(id.into());
            format!("${}", params.len())
        })
        .collect();
    let found: Vec<String> = c
        .query(
            &format!(
                "SELECT id FROM promotion_tiers WHERE project_id = $1 AND campaign_id = $2 AND id IN ({})",
                marks.join(", ")
            ),
            &params,
        )?
        .iter()
        .map(|r| r.text(0))
        .collect::<Result<_>>()?;
    if let Some(missing) = ids.iter().find(|id| !found.contains(id)) {
        return Err(StoreError::Invalid(InvalidInput::payload(format!(
            "'tiers.ids' names {missing}, which is not a promotion tier of campaign {campaign_id}"
        ))));
    }
    Ok(())
}

fn check_refs(c: &mut dyn Conn, p: &str, s: &PromotionStack) -> Result<()> {
    check_tiers(c, p, &s.campaign_id, &s.tiers.ids)?;
    if let Some(cat) = &s.category_id {
        categories::check_exist(c, p, "category_id", &[cat.as_str()])?;
    }
    Ok(())
}

fn save(c: &mut dyn Conn, p: &str, s: &PromotionStack) -> Result<()> {
    c.execute(
        "INSERT INTO promotion_stacks (project_id, id, campaign_id, name, created_at, updated_at, data) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (project_id, id) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at, data = excluded.data",
        &[
            p.into(),
            s.id.clone().into(),
            s.campaign_id.clone().into(),
            s.name.clone().into(),
            s.created_at.clone().into(),
            s.updated_at.clone().into(),
            to_json(s)?.into(),
        ],
    )?;
    Ok(())
}

/// The stack `id` of campaign `campaign_id`; a stack of another campaign is not found.
pub fn get(c: &mut dyn Conn, p: &str, campaign_id: &str, id: &str) -> Result<PromotionStack> {
    campaign_exists(c, p, campaign_id)?;
    match docs::find_by_id::<PromotionStack>(c, &STACKS, p, id)? {
        Some(s) if s.campaign_id == campaign_id => Ok(s),
        _ => Err(StoreError::not_found("promotion_stack", id)),
    }
}

pub fn create(c: &mut dyn Conn, p: &str, campaign_id: &str, input: PromotionStackInput) -> Result<PromotionStack> {
    let stack = input.create(new_id("stack"), campaign_id.to_string(), &now_string())?;
    campaign_exists(c, p, campaign_id)?;
    c.lock_key(&format!("promotion-stacks:{p}:{campaign_id}"))?;
    let n = c
        .query_one(
            "SELECT COUNT(*) FROM promotion_stacks WHERE project_id = $1 AND campaign_id = $2",
            &[p.into(), campaign_id.into()],
        )?
        .int(0)?;
    if n >= MAX_STACKS_PER_CAMPAIGN {
        return Err(StoreError::Invalid(InvalidInput {
            key: "limit_exceeded",
            message: "Too many promotion stacks".into(),
            details: format!("A campaign has at most {MAX_STACKS_PER_CAMPAIGN} promotion stacks."),
        }));
    }
    check_refs(c, p, &stack)?;
    save(c, p, &stack)?;
    bump(c, p, PROMOTIONS)?;
    Ok(stack)
}

pub fn update(c: &mut dyn Conn, p: &str, campaign_id: &str, id: &str, input: PromotionStackInput) -> Result<PromotionStack> {
    get(c, p, campaign_id, id)?;
    // Read again under the row's lock so concurrent updates cannot lose each other's fields.
    let old = match docs::relock::<PromotionStack>(c, &STACKS, p, id)? {
        Some(s) => s,
        None => return Err(StoreError::not_found("promotion_stack", id)),
    };
    let stack = input.update(&old, &now_string())?;
    check_refs(c, p, &stack)?;
    save(c, p, &stack)?;
    bump(c, p, PROMOTIONS)?;
    Ok(stack)
}

pub fn delete(c: &mut dyn Conn, p: &str, campaign_id: &str, id: &str) -> Result<()> {
    get(c, p, campaign_id, id)?;
    c.execute(
        "DELETE FROM promotion_stacks WHERE project_id = $1 AND id = $2",
        &[p.into(), id.into()],
    )?;
    bump(c, p, PROMOTIONS)?;
    Ok(())
}

/// A page of stacks (of one campaign, or of all) with the total and the views.
pub fn list(c: &mut dyn Conn, p: &str, campaign_id: Option<&str>, q: &ListQuery) -> Result<(Vec<Value>, i64)> {
    let scope: Vec<(&str, Val)> = match campaign_id {
        Some(id) => {
            campaign_exists(c, p, id)?;
            vec![("campaign_id", id.into())]
        }
        None => Vec::new(),
    };
    let (stacks, total) = docs::list::<PromotionStack>(c, &STACKS, p, q, &[], &scope)?;
    let cats = promotions::categories(c, p)?;
    Ok((stacks.iter().map(|s| view(s, &cats)).collect(), total))
}

/// One stack with its categories resolved.
fn with_view(c: &mut dyn Conn, p: &str, s: &PromotionStack) -> Result<Value> {
    let cats = promotions::categories(c, p)?;
    Ok(view(s, &cats))
}

impl Store {
    pub async fn create_promotion_stack(&self, t: &Tenant, campaign_id: String, input: PromotionStackInput) -> Result<Value> {
        let p = t.project_id().to_string();
        self.write(move |c| {
            let s = create(c, &p, &campaign_id, input)?;
            with_view(c, &p, &s)
        })
        .await
    }

    pub async fn get_promotion_stack(&self, t: &Tenant, campaign_id: String, id: String) -> Result<Value> {
        let p = t.project_id().to_string();
        self.read(move |c| {
            let s = get(c, &p, &campaign_id, &id)?;
            with_view(c, &p, &s)
        })
        .await
    }

    pub async fn update_promotion_stack(&self, t: &Tenant, campaign_id: String, id: String, input: PromotionStackInput) -> Result<Value> {
        let p = t.project_id().to_string();
        self.write(move |c| {
            let s = update(c, &p, &campaign_id, &id, input)?;
            with_view(c, &p, &s)
        })
        .await
    }

    pub async fn delete_promotion_stack(&self, t: &Tenant, campaign_id: String, id: String) -> Result<()> {
        let p = t.project_id().to_string();
        self.write(move |c| delete(c, &p, &campaign_id, &id)).await
    }

    pub async fn list_promotion_stacks(&self, t: &Tenant, campaign_id: Option<String>, q: ListQuery) -> Result<(Vec<Value>, i64)> {
        let p = t.project_id().to_string();
        self.read(move |c| list(c, &p, campaign_id.as_deref(), &q)).await
    }
}
