//! Promotion tiers, the project's stacking rules and categories as the checkout reads
//! them, and the version counter that tells every node when its cached promotion set is
//! stale.

use crate::conn::Conn;
use crate::Result;
use serde_json::{json, Value};
use std::collections::HashMap;
use tessera_domain::stacking::StackingRules;

/// What a cached promotion set depends on: tiers, promotion campaigns, categories,
/// validation rules and stacking rules. Bumped in the same transaction as the change.
pub const PROMOTIONS: &str = "promotions";

pub fn bump(c: &mut dyn Conn, p: &str, name: &str) -> Result<()> {
    c.execute(
        "INSERT INTO cache_versions (project_id, name, version) VALUES ($1, $2, 1) \
         ON CONFLICT (project_id, name) DO UPDATE SET version = cache_versions.version + 1",
        &[p.into(), name.into()],
    )?;
    Ok(())
}

pub fn version(c: &mut dyn Conn, p: &str, name: &str) -> Result<i64> {
    Ok(
        match c.query_opt(
            "SELECT version FROM cache_versions WHERE project_id = $1 AND name = $2",
            &[p.into(), name.into()],
        )? {
            Some(row) => row.int(0)?,
            None => 0,
        },
    )
}

/// The project's stacking rules: its own (with their id) or the defaults.
pub fn stacking_rules(c: &mut dyn Conn, p: &str) -> Result<(Option<StoredRules>, StackingRules)> {
    match c.query_opt(
        "SELECT id, created_at, updated_at, data FROM stacking_rules WHERE project_id = $1",
        &[p.into()],
    )? {
        Some(row) => {
            let rules: StackingRules = row.json(3)?;
            Ok((
                Some(StoredRules {
                    id: row.text(0)?,
                    created_at: row.text(1)?,
                    updated_at: row.opt_text(2)?,
                }),
                rules,
            ))
        }
        None => Ok((None, StackingRules::default())),
    }
}

#[derive(Debug, Clone)]
pub struct StoredRules {
    pub id: String,
    pub created_at: String,
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CategoryRow {
    pub id: String,
    pub name: String,
    pub hierarchy: i64,
    pub created_at: String,
    pub updated_at: Option<String>,
}

impl CategoryRow {
    pub fn view(&self, rules: Option<&StackingRules>) -> Value {
        let mut v = json!({
            "id": self.id, "name": self.name, "hierarchy": self.hierarchy, "object": "category",
            "created_at": self.created_at, "updated_at": self.updated_at,
        });
        if let Some(t) = rules.and_then(|r| r.stacking_type(&self.id)) {
            v["stacking_rules_type"] = json!(t);
        }
        v
    }
}

/// Every category of the project by id (a project has few; the checkout needs their
/// hierarchy and the stacking rules name them).
pub fn categories(c: &mut dyn Conn, p: &str) -> Result<HashMap<String, CategoryRow>> {
    let rows = c.query(
        "SELECT id, name, hierarchy, created_at, updated_at FROM categories WHERE project_id = $1",
        &[p.into()],
    )?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        let row = CategoryRow {
            id: r.text(0)?,
            name: r.text(1)?,
            hierarchy: r.int(2)?,
            created_at: r.text(3)?,
            updated_at: r.opt_text(4)?,
        };
        out.insert(row.id.clone(), row);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Promotion tiers.

use crate::ops::docs::to_json;
use crate::ops::org::Tenant;
use crate::ops::outbox;
use crate::ops::rules::{rules_for, CompiledRule};
use crate::ops::vouchers::{get_campaign_rec, load_campaign};
use crate::{Store, StoreError};
use std::sync::{Arc, Mutex};
use tessera_domain::ids::new_id;
use tessera_domain::promotion::{PromotionTier, TierInput, MAX_TIERS_PER_CAMPAIGN};
use tessera_domain::time::now_string;
use tessera_domain::validity::Validity;
use tessera_domain::voucher::{Campaign, CampaignType};

/// A tier ready for the checkout: its campaign, parsed schedules and compiled rules.
pub struct TierEntry {
    pub tier: PromotionTier,
    pub campaign: Campaign,
    pub validity: Validity,
    pub campaign_validity: Validity,
    pub rules: Vec<CompiledRule>,
    /// The tier's discount, parsed once.
    pub discount: tessera_domain::discount::Rule,
    /// The tier's category, else its campaign's.
    pub categories: Vec<String>,
    pub category_hierarchy: Option<i64>,
}

/// A project's promotion tiers, categories and stacking rules as of one version.
pub struct PromoSet {
    pub version: i64,
    pub tiers: Vec<Arc<TierEntry>>,
    pub by_id: HashMap<String, usize>,
    pub categories: HashMap<String, CategoryRow>,
    pub rules: StackingRules,
    pub stored_rules: Option<StoredRules>,
}

impl PromoSet {
    pub fn tier(&self, id: &str) -> Option<&Arc<TierEntry>> {
        self.by_id.get(id).map(|i| &self.tiers[*i])
    }

    /// Category ids and the lowest hierarchy among them.
    pub fn categorize(&self, ids: impl IntoIterator<Item = String>) -> (Vec<String>, Option<i64>) {
        let mut cats: Vec<String> = ids.into_iter().filter(|c| self.categories.contains_key(c)).collect();
        cats.sort();
        cats.dedup();
        let h = cats.iter().filter_map(|c| self.categories.get(c)).map(|c| c.hierarchy).min();
        (cats, h)
    }

    pub fn category_views(&self, ids: &[String]) -> Vec<Value> {
        ids.iter()
            .filter_map(|c| self.categories.get(c))
            .map(|c| c.view(Some(&self.rules)))
            .collect()
    }
}

/// Most projects whose promotion sets one node keeps; beyond it, one is dropped.
const CACHE_PROJECTS: usize = 4096;

/// Promotion sets by project, checked against the stored version on every use, so a
/// change on any node is seen by the next request everywhere.
#[derive(Default)]
pub struct Cache {
    sets: Mutex<HashMap<String, Arc<PromoSet>>>,
}

impl Cache {
    pub fn get(&self, c: &mut dyn Conn, p: &str) -> Result<Arc<PromoSet>> {
        let v = version(c, p, PROMOTIONS)?;
        if let Some(set) = self.sets.lock().ok().and_then(|m| m.get(p).cloned()) {
            if set.version == v {
                return Ok(set);
            }
        }
        let set = Arc::new(load_set(c, p, v)?);
        if let Ok(mut m) = self.sets.lock() {
            if m.len() >= CACHE_PROJECTS && !m.contains_key(p) {
                if let Some(k) = m.keys().next().cloned() {
                    m.remove(&k);
                }
            }
            m.insert(p.to_string(), set.clone());
        }
        Ok(set)
    }
}

fn load_set(c: &mut dyn Conn, p: &str, version: i64) -> Result<PromoSet> {
    let (stored_rules, rules) = stacking_rules(c, p)?;
    let categories = categories(c, p)?;
    let rows = c.query(
        "SELECT data FROM promotion_tiers WHERE project_id = $1 ORDER BY campaign_id, hierarchy, id",
        &[p.into()],
    )?;
    let mut campaigns: HashMap<String, (Campaign, Validity)> = HashMap::new();
    let mut campaign_rules: HashMap<String, Vec<CompiledRule>> = HashMap::new();
    let mut tiers = Vec::with_capacity(rows.len());
    let mut by_id = HashMap::with_capacity(rows.len());
    for row in rows {
        let tier: PromotionTier = row.json(0)?;
        if !campaigns.contains_key(&tier.campaign_id) {
            let Some(rec) = load_campaign(c, p, &tier.campaign_id)? else {
                continue;
            };
            let validity = rec.campaign.schedule.validity().map_err(StoreError::Invalid)?;
            campaign_rules.insert(
                tier.campaign_id.clone(),
                rules_for(c, p, &rec.campaign.validation_rules, &[&rec.campaign.id])?,
            );
            campaigns.insert(tier.campaign_id.clone(), (rec.campaign, validity));
        }
        let (campaign, campaign_validity) = campaigns[&tier.campaign_id].clone();
        let mut compiled = rules_for(c, p, &tier.validation_rules, &[&tier.id])?;
        if let Some(cr) = campaign_rules.get(&tier.campaign_id) {
            compiled.extend(cr.iter().cloned());
        }
        let cat_ids: Vec<String> = tier.category_id.clone().or(campaign.category_id.clone()).into_iter().collect();
        let mut cats: Vec<String> = cat_ids.into_iter().filter(|c| categories.contains_key(c)).collect();
        cats.dedup();
        let category_hierarchy = cats.iter().filter_map(|c| categories.get(c)).map(|c| c.hierarchy).min();
        let validity = tier.schedule.validity().map_err(StoreError::Invalid)?;
        let discount = tier.action.discount.rule().map_err(StoreError::Invalid)?;
        by_id.insert(tier.id.clone(), tiers.len());
        tiers.push(Arc::new(TierEntry {
            discount,
            tier,
            campaign,
            validity,
            campaign_validity,
            rules: compiled,
            categories: cats,
            category_hierarchy,
        }));
    }
    Ok(PromoSet {
        version,
        tiers,
        by_id,
        categories,
        rules,
        stored_rules,
    })
}

pub fn save_tier(c: &mut dyn Conn, p: &str, t: &PromotionTier) -> Result<()> {
    c.execute(
        "INSERT INTO promotion_tiers (project_id, id, campaign_id, hierarchy, active, created_at, updated_at, data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (project_id, id) DO UPDATE SET hierarchy = excluded.hierarchy, active = excluded.active, updated_at = excluded.updated_at, data = excluded.data",
        &[
            p.into(),
            t.id.clone().into(),
            t.campaign_id.clone().into(),
            t.hierarchy.into(),
            i64::from(t.active).into(),
            t.created_at.clone().into(),
            t.updated_at.clone().into(),
            to_json(t)?.into(),
        ],
    )?;
    bump(c, p, PROMOTIONS)
}

pub fn load_tier(c: &mut dyn Conn, p: &str, id: &str) -> Result<PromotionTier> {
    match c.query_opt(
        "SELECT data FROM promotion_tiers WHERE project_id = $1 AND id = $2",
        &[p.into(), id.into()],
    )? {
        Some(row) => row.json(0),
        None => Err(StoreError::not_found("promotion_tier", id)),
    }
}

/// Resolves a category given by name (created when missing, as Voucherify does) or id.
fn resolve_category(c: &mut dyn Conn, p: &str, name: Option<&str>, id: Option<&str>) -> Result<Option<String>> {
    if let Some(id) = id {
        if c.query_opt("SELECT 1 FROM categories WHERE project_id = $1 AND id = $2", &[p.into(), id.into()])?
            .is_none()
        {
            return Err(StoreError::not_found("category", id));
        }
        return Ok(Some(id.to_string()));
    }
    let Some(name) = name else { return Ok(None) };
    if let Some(row) = c.query_opt(
        "SELECT id FROM categories WHERE project_id = $1 AND name = $2",
        &[p.into(), name.into()],
    )? {
        return Ok(Some(row.text(0)?));
    }
    let id = new_id("cat");
    c.execute(
        "INSERT INTO categories (project_id, id, name, hierarchy, created_at) VALUES ($1, $2, $3, 0, $4)",
        &[p.into(), id.clone().into(), name.into(), now_string().into()],
    )?;
    bump(c, p, PROMOTIONS)?;
    Ok(Some(id))
}

/// Creates a tier in a PROMOTION campaign (inside the caller's transaction).
pub fn create_tier_in(c: &mut dyn Conn, p: &str, campaign: &Campaign, input: TierInput) -> Result<PromotionTier> {
    if campaign.campaign_type != CampaignType::Promotion {
        return Err(StoreError::Invalid(tessera_domain::InvalidInput::payload(format!(
            "campaign {} is not a PROMOTION campaign",
            campaign.id
        ))));
    }
    let count = c.query_one(
        "SELECT COUNT(*), CAST(COALESCE(MAX(hierarchy), 0) AS BIGINT) FROM promotion_tiers WHERE project_id = $1 AND campaign_id = $2",
        &[p.into(), campaign.id.clone().into()],
    )?;
    let (n, max_h) = (count.int(0)?, count.int(1)?);
    let in_project = c
        .query_one("SELECT COUNT(*) FROM promotion_tiers WHERE project_id = $1", &[p.into()])?
        .int(0)?;
    if in_project >= tessera_domain::promotion::MAX_TIERS_PER_PROJECT {
        return Err(StoreError::Invalid(tessera_domain::InvalidInput::payload(format!(
            "a project holds at most {} promotion tiers",
            tessera_domain::promotion::MAX_TIERS_PER_PROJECT
        ))));
    }
    if n as usize >= MAX_TIERS_PER_CAMPAIGN {
        return Err(StoreError::Invalid(tessera_domain::InvalidInput::payload(format!(
            "a campaign holds at most {MAX_TIERS_PER_CAMPAIGN} promotion tiers"
        ))));
    }
    let category = resolve_category(c, p, input.category.as_deref(), input.category_id.clone().flatten().as_deref())?;
    let tier = input.create(new_id("promo"), &campaign.id, max_h + 1, category, &now_string())?;
    save_tier(c, p, &tier)?;
    outbox::emit(
        c,
        p,
        "promotion_tier.created",
        &tier.id,
        &json!({"id": tier.id, "campaign_id": tier.campaign_id}),
    )?;
    Ok(tier)
}

/// A tier in Voucherify's shape, with its redemption summary.
pub fn tier_view(c: &mut dyn Conn, p: &str, t: &PromotionTier, campaign: &Campaign) -> Result<Value> {
    let cats = categories(c, p)?;
    let (_, rules) = stacking_rules(c, p)?;
    let summary = c.query_one(
        "SELECT COUNT(*), CAST(COALESCE(SUM(order_amount), 0) AS BIGINT), CAST(COALESCE(SUM(discount_amount), 0) AS BIGINT) FROM redemptions \
         WHERE project_id = $1 AND promotion_tier_id = $2 AND object = 'redemption' AND result = 'SUCCESS' AND status = 'SUCCEEDED'",
        &[p.into(), t.id.clone().into()],
    )?;
    let mut v = tier_json(t, campaign, &cats, &rules);
    v["summary"] = json!({
        "redemptions": {"total_redeemed": summary.int(0)?},
        "orders": {"total_amount": summary.int(1)?, "total_discount_amount": summary.int(2)?},
    });
    Ok(v)
}

pub fn tier_json(t: &PromotionTier, campaign: &Campaign, cats: &HashMap<String, CategoryRow>, rules: &StackingRules) -> Value {
    let categories: Vec<Value> = t
        .category_id
        .iter()
        .filter_map(|id| cats.get(id))
        .map(|c| c.view(Some(rules)))
        .collect();
    json!({
        "id": t.id, "created_at": t.created_at, "updated_at": t.updated_at, "name": t.name, "banner": t.banner,
        "action": t.action, "metadata": t.metadata, "hierarchy": t.hierarchy, "promotion_id": campaign.id,
        "campaign": {
            "id": campaign.id, "start_date": campaign.schedule.start_date, "expiration_date": campaign.schedule.expiration_date,
            "validity_timeframe": campaign.schedule.validity_timeframe, "validity_day_of_week": campaign.schedule.validity_day_of_week,
            "validity_hours": campaign.schedule.validity_hours, "active": campaign.active, "category_id": campaign.category_id, "object": "campaign",
        },
        "campaign_id": campaign.id, "active": t.active, "start_date": t.schedule.start_date, "expiration_date": t.schedule.expiration_date,
        "validity_timeframe": t.schedule.validity_timeframe, "validity_day_of_week": t.schedule.validity_day_of_week,
        "validity_hours": t.schedule.validity_hours,
        "validation_rule_assignments": {
            "object": "list", "data_ref": "data", "total": t.validation_rules.len(),
            "data": t.validation_rules.iter().map(|r| json!({
                "id": format!("asgm_{}_{}", r, t.id), "rule_id": r, "related_object_id": t.id,
                "related_object_type": "promotion_tier", "object": "validation_rules_assignment"
            })).collect::<Vec<_>>(),
        },
        "category_id": t.category_id, "categories": categories, "object": "promotion_tier",
    })
}

/// The `promotion` block of a PROMOTION campaign: its tiers in hierarchy order.
pub fn campaign_promotion(c: &mut dyn Conn, p: &str, campaign: &Campaign) -> Result<Value> {
    let rows = c.query(
        "SELECT data FROM promotion_tiers WHERE project_id = $1 AND campaign_id = $2 ORDER BY hierarchy, id",
        &[p.into(), campaign.id.clone().into()],
    )?;
    let cats = categories(c, p)?;
    let (_, rules) = stacking_rules(c, p)?;
    let mut tiers = Vec::with_capacity(rows.len());
    for r in rows {
        let t: PromotionTier = r.json(0)?;
        tiers.push(tier_json(&t, campaign, &cats, &rules));
    }
    Ok(json!({"object": "list", "data_ref": "tiers", "total": tiers.len(), "has_more": false, "tiers": tiers}))
}

pub struct TierList {
    pub tiers: Vec<Value>,
    pub total: i64,
    pub has_more: bool,
}

impl Store {
    pub async fn create_tier(&self, t: &Tenant, campaign: String, input: TierInput) -> Result<Value> {
        let p = t.project_id().to_string();
        self.write(move |c| {
            let rec = get_campaign_rec(c, &p, &campaign)?;
            c.lock_key(&format!("campaigns:{p}:{}", rec.campaign.id))?;
            let tier = create_tier_in(c, &p, &rec.campaign, input)?;
            tier_view(c, &p, &tier, &rec.campaign)
        })
        .await
    }

    pub async fn get_tier(&self, t: &Tenant, id: String) -> Result<Value> {
        let p = t.project_id().to_string();
        self.read(move |c| {
            let tier = load_tier(c, &p, &id)?;
            let camp = get_campaign_rec(c, &p, &tier.campaign_id)?.campaign;
            tier_view(c, &p, &tier, &camp)
        })
        .await
    }

    /// Tiers of one campaign or of the project, by hierarchy (or creation), paged.
    pub async fn list_tiers(
        &self,
        t: &Tenant,
        campaign: Option<String>,
        active: Option<bool>,
        order: Option<String>,
        limit: u32,
        page: u32,
    ) -> Result<TierList> {
        let p = t.project_id().to_string();
        self.read(move |c| {
            let mut clauses = vec!["project_id = $1".to_string()];
            let mut params: Vec<crate::conn::Val> = vec![p.clone().into()];
            if let Some(k) = &campaign {
                let id = get_campaign_rec(c, &p, k)?.campaign.id;
                params.push(id.into());
                clauses.push(format!("campaign_id = ${}", params.len()));
            }
            if let Some(a) = active {
                params.push(i64::from(a).into());
                clauses.push(format!("active = ${}", params.len()));
            }
            let order_by = match order.as_deref() {
                None | Some("hierarchy") => "campaign_id, hierarchy, id",
                Some("-hierarchy") => "campaign_id, hierarchy DESC, id DESC",
                Some("created_at") => "created_at, id",
                Some("-created_at") => "created_at DESC, id DESC",
                Some("updated_at") => "updated_at, id",
                Some("-updated_at") => "updated_at DESC, id DESC",
                Some(o) => {
                    return Err(StoreError::Invalid(tessera_domain::InvalidInput {
                        key: "invalid_query_params",
                        message: "Invalid query parameters".into(),
                        details: format!("cannot order promotion tiers by '{o}'"),
                    }))
                }
            };
            let w = clauses.join(" AND ");
            let total = c
                .query_one(&format!("SELECT COUNT(*) FROM promotion_tiers WHERE {w}"), &params)?
                .int(0)?;
            let n = params.len();
            params.push(i64::from(limit).into());
            params.push((i64::from(page.max(1)) - 1).saturating_mul(i64::from(limit)).into());
            let rows = c.query(
                &format!(
                    "SELECT data FROM promotion_tiers WHERE {w} ORDER BY {order_by} LIMIT ${} OFFSET ${}",
                    n + 1,
                    n + 2
                ),
                &params,
            )?;
            let mut camps: HashMap<String, Campaign> = HashMap::new();
            let mut tiers = Vec::with_capacity(rows.len());
            for r in rows {
                let tier: PromotionTier = r.json(0)?;
                if !camps.contains_key(&tier.campaign_id) {
                    let camp = get_campaign_rec(c, &p, &tier.campaign_id)?.campaign;
                    camps.insert(tier.campaign_id.clone(), camp);
                }
                tiers.push(tier_view(c, &p, &tier, &camps[&tier.campaign_id])?);
            }
            let shown = (i64::from(page.max(1)) - 1) * i64::from(limit) + tiers.len() as i64;
            Ok(TierList {
                tiers,
                total,
                has_more: shown < total,
            })
        })
        .await
    }

    pub async fn update_tier(&self, t: &Tenant, id: String, input: TierInput) -> Result<Value> {
        let p = t.project_id().to_string();
        self.write(move |c| {
            let existing = load_tier(c, &p, &id)?;
            c.lock_key(&format!("campaigns:{p}:{}", existing.campaign_id))?;
            let existing = load_tier(c, &p, &id)?;
            let category = if input.category.is_some() || matches!(input.category_id, Some(Some(_))) {
                Some(resolve_category(
                    c,
                    &p,
                    input.category.as_deref(),
                    input.category_id.clone().flatten().as_deref(),
                )?)
            } else if matches!(input.category_id, Some(None)) {
                Some(None)
            } else {
                None
            };
            let tier = input.update(&existing, category, &now_string())?;
            save_tier(c, &p, &tier)?;
            outbox::emit(
                c,
                &p,
                "promotion_tier.updated",
                &tier.id,
                &json!({"id": tier.id, "campaign_id": tier.campaign_id}),
            )?;
            let camp = get_campaign_rec(c, &p, &tier.campaign_id)?.campaign;
            tier_view(c, &p, &tier, &camp)
        })
        .await
    }

    pub async fn set_tier_active(&self, t: &Tenant, id: String, active: bool) -> Result<Value> {
        let p = t.project_id().to_string();
        self.write(move |c| {
            let mut tier = load_tier(c, &p, &id)?;
            tier.active = active;
            tier.updated_at = Some(now_string());
            save_tier(c, &p, &tier)?;
            outbox::emit(
                c,
                &p,
                if active {
                    "promotion_tier.enabled"
                } else {
                    "promotion_tier.disabled"
                },
                &tier.id,
                &json!({"id": tier.id, "campaign_id": tier.campaign_id}),
            )?;
            let camp = get_campaign_rec(c, &p, &tier.campaign_id)?.campaign;
            tier_view(c, &p, &tier, &camp)
        })
        .await
    }

    /// Deletes a tier; its redemptions stay in the log.
    pub async fn delete_tier(&self, t: &Tenant, id: String) -> Result<()> {
        let p = t.project_id().to_string();
        self.write(move |c| {
            let tier = load_tier(c, &p, &id)?;
            c.execute(
                "DELETE FROM promotion_tiers WHERE project_id = $1 AND id = $2",
                &[p.clone().into(), id.clone().into()],
            )?;
            c.execute(
                "DELETE FROM rule_assignments WHERE project_id = $1 AND related_object_id = $2",
                &[p.clone().into(), id.clone().into()],
            )?;
            bump(c, &p, PROMOTIONS)?;
            outbox::emit(
                c,
                &p,
                "promotion_tier.deleted",
                &id,
                &json!({"id": id, "campaign_id": tier.campaign_id}),
            )?;
            Ok(())
        })
        .await
    }
}
