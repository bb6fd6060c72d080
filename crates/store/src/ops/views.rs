//! JSON views of campaigns and vouchers in Voucherify's shapes. They live here because a
//! redemption stores the voucher as it was when redeemed.

use crate::ops::vouchers::{CampaignRecord, VoucherRecord};
use serde::Serialize;
use serde_json::{json, Map, Value};
use tessera_domain::discount::Discount;
use tessera_domain::validity::{ValidityHours, ValidityTimeframe};
use tessera_domain::voucher::VoucherType;

pub fn voucher(rec: &VoucherRecord) -> Value {
    serde_json::to_value(VoucherView::new(rec)).unwrap_or(Value::Null)
}

/// A voucher in Voucherify's shape, borrowed from its record so a redemption can write it
/// straight into its JSON: building it as a `Value` tree first, then serializing that,
/// was a large share of the single writer's time per redemption.
#[derive(Serialize)]
pub struct VoucherView<'a> {
    id: &'a str,
    code: &'a str,
    campaign: &'a Option<String>,
    campaign_id: &'a Option<String>,
    category: &'a Option<String>,
    category_id: &'a Option<String>,
    #[serde(rename = "type")]
    kind: &'static str,
    discount: &'a Option<Discount>,
    gift: Option<GiftView<'a>>,
    loyalty_card: (),
    start_date: &'a Option<String>,
    expiration_date: &'a Option<String>,
    validity_timeframe: &'a Option<ValidityTimeframe>,
    validity_day_of_week: &'a Option<Vec<u8>>,
    validity_hours: &'a Option<ValidityHours>,
    active: bool,
    additional_info: &'a Option<String>,
    metadata: &'a Map<String, Value>,
    is_referral_code: bool,
    holder_id: &'a Option<String>,
    created_at: &'a str,
    updated_at: &'a Option<String>,
    publish: ListRef,
    redemption: RedemptionCounts,
    categories: [(); 0],
    validation_rules_assignments: EmptyList,
    object: &'static str,
}

#[derive(Serialize)]
struct GiftView<'a> {
    amount: i64,
    subtracted_amount: i64,
    balance: i64,
    effect: &'a str,
}

#[derive(Serialize)]
struct ListRef {
    object: &'static str,
    count: i64,
    url: String,
}

#[derive(Serialize)]
struct RedemptionCounts {
    quantity: Option<i64>,
    redeemed_quantity: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    redeemed_amount: Option<i64>,
    object: &'static str,
    url: String,
}

#[derive(Serialize)]
struct EmptyList {
    object: &'static str,
    data_ref: &'static str,
    data: [(); 0],
    total: i64,
}

impl<'a> VoucherView<'a> {
    pub fn new(rec: &'a VoucherRecord) -> Self {
        let v = &rec.voucher;
        let gift_card = v.kind == VoucherType::GiftVoucher;
        let gift = gift_card.then(|| GiftView {
            amount: rec.gift_amount.or(v.gift.as_ref().map(|g| g.amount)).unwrap_or(0),
            subtracted_amount: 0,
            balance: rec.counters.gift_balance.unwrap_or(0),
            effect: v.gift.as_ref().and_then(|g| g.effect.as_deref()).unwrap_or("APPLY_TO_ORDER"),
        });
        VoucherView {
            id: &v.id,
            code: &v.code,
            campaign: &v.campaign,
            campaign_id: &v.campaign_id,
            category: &v.category,
            category_id: &v.category_id,
            kind: v.kind.as_str(),
            discount: &v.discount,
            gift,
            loyalty_card: (),
            start_date: &v.schedule.start_date,
            expiration_date: &v.schedule.expiration_date,
            validity_timeframe: &v.schedule.validity_timeframe,
            validity_day_of_week: &v.schedule.validity_day_of_week,
            validity_hours: &v.schedule.validity_hours,
            active: v.active,
            additional_info: &v.additional_info,
            metadata: &v.metadata,
            is_referral_code: false,
            holder_id: &v.holder_id,
            created_at: &v.created_at,
            updated_at: &v.updated_at,
            publish: ListRef {
                object: "list",
                count: rec.counters.publish_count,
                url: format!("/v1/vouchers/{}/publications?page=1&limit=10", v.code),
            },
            redemption: RedemptionCounts {
                quantity: v.redemption_quantity,
                redeemed_quantity: rec.counters.redeemed_quantity,
                redeemed_amount: gift_card.then_some(rec.counters.redeemed_amount),
                object: "list",
                url: format!("/v1/vouchers/{}/redemptions?page=1&limit=10", v.code),
            },
            categories: [],
            validation_rules_assignments: EmptyList {
                object: "list",
                data_ref: "data",
                data: [],
                total: 0,
            },
            object: "voucher",
        }
    }
}

pub fn campaign(rec: &CampaignRecord) -> Value {
    let c = &rec.campaign;
    let mut voucher = json!({
        "type": c.voucher.kind.as_str(),
        "redemption": {"quantity": c.voucher.redemption.quantity},
        "code_config": c.voucher.code_config,
        "is_referral_code": false,
        "start_date": c.schedule.start_date,
        "expiration_date": c.schedule.expiration_date,
    });
    if let Some(d) = &c.voucher.discount {
        voucher["discount"] = json!(d);
    }
    if let Some(g) = &c.voucher.gift {
        voucher["gift"] =
            json!({"amount": g.amount, "balance": g.amount, "effect": g.effect.clone().unwrap_or_else(|| "APPLY_TO_ORDER".into())});
    }
    let validation_rules_assignments = json!({
        "object": "list", "data_ref": "data", "total": c.validation_rules.len(),
        "data": c.validation_rules.iter().map(|r| json!({
            "id": format!("asgm_{}_{}", r, c.id), "rule_id": r, "related_object_id": c.id,
            "related_object_type": "campaign", "object": "validation_rules_assignment"
        })).collect::<Vec<_>>()
    });
    let mut v = json!({
        "id": c.id,
        "name": c.name,
        "description": c.description,
        "campaign_type": c.campaign_type,
        "type": c.kind,
        "voucher": voucher,
        "auto_join": c.auto_join,
        "join_once": c.join_once,
        "use_voucher_metadata_schema": c.use_voucher_metadata_schema,
        "validity_timeframe": c.schedule.validity_timeframe,
        "validity_day_of_week": c.schedule.validity_day_of_week,
        "validity_hours": c.schedule.validity_hours,
        "activity_duration_after_publishing": c.activity_duration_after_publishing,
        "vouchers_count": rec.vouchers_count,
        "start_date": c.schedule.start_date,
        "expiration_date": c.schedule.expiration_date,
        "active": c.active,
        "metadata": c.metadata,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "category": c.category,
        "category_id": c.category_id,
        "categories": [],
        "creation_status": if rec.generation_status == "DONE" { "DONE" } else { "IN_PROGRESS" },
        "vouchers_generation_status": rec.generation_status,
        "readonly": false,
        "protected": false,
        "validation_rules_assignments": validation_rules_assignments,
        "object": "campaign",
    });
    if let Some(promo) = &rec.promotion {
        // A promotion has tiers, not a voucher template.
        v["promotion"] = promo.clone();
        v["voucher"] = Value::Null;
    }
    v
}
