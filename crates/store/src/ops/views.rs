//! JSON views of campaigns and vouchers in Voucherify's shapes. They live here because a
//! redemption stores the voucher as it was when redeemed.

use crate::ops::vouchers::{CampaignRecord, VoucherRecord};
use serde_json::{json, Value};
use tessera_domain::voucher::VoucherType;

fn empty_list() -> Value {
    json!({"object": "list", "data_ref": "data", "data": [], "total": 0})
}

pub fn voucher(rec: &VoucherRecord) -> Value {
    let v = &rec.voucher;
    let gift = match v.kind {
        VoucherType::GiftVoucher => {
            let amount = rec.gift_amount.or(v.gift.as_ref().map(|g| g.amount)).unwrap_or(0);
            json!({
                "amount": amount,
                "subtracted_amount": 0,
                "balance": rec.counters.gift_balance.unwrap_or(0),
                "effect": v.gift.as_ref().and_then(|g| g.effect.clone()).unwrap_or_else(|| "APPLY_TO_ORDER".into()),
            })
        }
        VoucherType::DiscountVoucher => Value::Null,
    };
    let mut redemption = json!({
        "quantity": v.redemption_quantity,
        "redeemed_quantity": rec.counters.redeemed_quantity,
        "object": "list",
        "url": format!("/v1/vouchers/{}/redemptions?page=1&limit=10", v.code),
    });
    if v.kind == VoucherType::GiftVoucher {
        redemption["redeemed_amount"] = json!(rec.counters.redeemed_amount);
    }
    json!({
        "id": v.id,
        "code": v.code,
        "campaign": v.campaign,
        "campaign_id": v.campaign_id,
        "category": v.category,
        "category_id": v.category_id,
        "type": v.kind.as_str(),
        "discount": v.discount,
        "gift": gift,
        "loyalty_card": null,
        "start_date": v.schedule.start_date,
        "expiration_date": v.schedule.expiration_date,
        "validity_timeframe": v.schedule.validity_timeframe,
        "validity_day_of_week": v.schedule.validity_day_of_week,
        "validity_hours": v.schedule.validity_hours,
        "active": v.active,
        "additional_info": v.additional_info,
        "metadata": v.metadata,
        "is_referral_code": false,
        "holder_id": v.holder_id,
        "created_at": v.created_at,
        "updated_at": v.updated_at,
        "publish": {"object": "list", "count": rec.counters.publish_count, "url": format!("/v1/vouchers/{}/publications?page=1&limit=10", v.code)},
        "redemption": redemption,
        "categories": [],
        "validation_rules_assignments": empty_list(),
        "object": "voucher",
    })
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
