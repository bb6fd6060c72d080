//! Campaigns and vouchers (discount codes and gift cards).

use crate::codes::CodeConfig;
use crate::customer::{check_identifier, check_metadata, double_option};
use crate::discount::Discount;
use crate::error::InvalidInput;
use crate::limits::{MAX_AMOUNT, MAX_ID_LEN, MAX_TEXT_LEN};
use crate::validity::{Validity, ValidityHours, ValidityTimeframe};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Most validation rules one campaign or voucher may carry.
pub const MAX_RULES_PER_OBJECT: usize = 5;
/// Codes generated in the request itself; more run as an async action.
pub const MAX_SYNC_GENERATION: u64 = 1;
/// Most codes one campaign may hold.
pub const MAX_VOUCHERS_PER_CAMPAIGN: u64 = 10_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VoucherType {
    DiscountVoucher,
    GiftVoucher,
}

impl VoucherType {
    pub fn as_str(self) -> &'static str {
        match self {
            VoucherType::DiscountVoucher => "DISCOUNT_VOUCHER",
            VoucherType::GiftVoucher => "GIFT_VOUCHER",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CampaignType {
    DiscountCoupons,
    GiftVouchers,
    /// Auto-applied promotions: no codes, tiers instead.
    Promotion,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CampaignKind {
    Static,
    AutoUpdate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GiftDef {
    pub amount: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RedemptionLimit {
    /// `null`: unlimited.
    #[serde(default)]
    pub quantity: Option<i64>,
}

/// Dates and windows shared by campaigns and vouchers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Schedule {
    #[serde(default)]
    pub start_date: Option<String>,
    #[serde(default)]
    pub expiration_date: Option<String>,
    #[serde(default)]
    pub validity_timeframe: Option<ValidityTimeframe>,
    #[serde(default)]
    pub validity_day_of_week: Option<Vec<u8>>,
    #[serde(default)]
    pub validity_hours: Option<ValidityHours>,
}

impl Schedule {
    pub fn validity(&self) -> Result<Validity, InvalidInput> {
        Validity::parse(
            self.start_date.as_deref(),
            self.expiration_date.as_deref(),
            self.validity_timeframe.as_ref(),
            self.validity_day_of_week.as_deref(),
            self.validity_hours.as_ref(),
        )
    }

    /// Normalizes dates to Tessera's timestamp format after checking everything.
    pub fn normalized(mut self) -> Result<Self, InvalidInput> {
        let v = self.validity()?;
        self.start_date = v.start_date.map(crate::time::format);
        self.expiration_date = v.expiration_date.map(crate::time::format);
        Ok(self)
    }
}

/// A schedule with the fields an input gives laid over `base`: absent keeps the base's
/// value, `null` clears it. Shared by campaign and voucher inputs.
pub(crate) fn overlay(
    base: &Schedule,
    start_date: &Option<Option<String>>,
    expiration_date: &Option<Option<String>>,
    timeframe: &Option<Option<ValidityTimeframe>>,
    days_of_week: &Option<Option<Vec<u8>>>,
    hours: &Option<Option<ValidityHours>>,
) -> Result<Schedule, InvalidInput> {
    fn pick<T: Clone>(new: &Option<Option<T>>, old: &Option<T>) -> Option<T> {
        new.clone().unwrap_or_else(|| old.clone())
    }
    Schedule {
        start_date: pick(start_date, &base.start_date),
        expiration_date: pick(expiration_date, &base.expiration_date),
        validity_timeframe: pick(timeframe, &base.validity_timeframe),
        validity_day_of_week: pick(days_of_week, &base.validity_day_of_week),
        validity_hours: pick(hours, &base.validity_hours),
    }
    .normalized()
}

/// The definition a campaign's vouchers share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VoucherTemplate {
    #[serde(rename = "type")]
    pub kind: VoucherType,
    #[serde(default)]
    pub discount: Option<Discount>,
    #[serde(default)]
    pub gift: Option<GiftDef>,
    #[serde(default)]
    pub code_config: CodeConfig,
    #[serde(default)]
    pub redemption: RedemptionLimit,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Campaign {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub campaign_type: CampaignType,
    #[serde(rename = "type")]
    pub kind: CampaignKind,
    pub voucher: VoucherTemplate,
    pub auto_join: bool,
    pub join_once: bool,
    pub use_voucher_metadata_schema: bool,
    #[serde(flatten)]
    pub schedule: Schedule,
    pub activity_duration_after_publishing: Option<String>,
    pub active: bool,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub category: Option<String>,
    pub category_id: Option<String>,
    pub validation_rules: Vec<String>,
    pub created_at: String,
    pub updated_at: Option<String>,
}

/// A PROMOTION campaign's discounts are its tiers; it never holds codes.
pub fn check_holds_codes(c: &Campaign) -> Result<(), InvalidInput> {
    if c.campaign_type == CampaignType::Promotion {
        return Err(InvalidInput::payload(format!(
            "campaign {} is a PROMOTION campaign: it has tiers, not vouchers",
            c.id
        )));
    }
    Ok(())
}

/// Checks a discount or gift definition against the voucher type.
pub fn check_benefit(kind: VoucherType, discount: &Option<Discount>, gift: &Option<GiftDef>) -> Result<(), InvalidInput> {
    match kind {
        VoucherType::DiscountVoucher => {
            let d = discount
                .as_ref()
                .ok_or_else(|| InvalidInput::payload("a DISCOUNT_VOUCHER needs a 'discount'"))?;
            d.rule()?;
        }
        VoucherType::GiftVoucher => {
            let g = gift
                .as_ref()
                .ok_or_else(|| InvalidInput::payload("a GIFT_VOUCHER needs a 'gift' with an 'amount'"))?;
            if !(0..=MAX_AMOUNT).contains(&g.amount) {
                return Err(InvalidInput::payload(format!("'gift.amount' must be from 0 to {MAX_AMOUNT}")));
            }
            if let Some(e) = &g.effect {
                if e != "APPLY_TO_ORDER" && e != "APPLY_TO_ITEMS" {
                    return Err(InvalidInput::payload("'gift.effect' must be APPLY_TO_ORDER or APPLY_TO_ITEMS"));
                }
            }
        }
    }
    Ok(())
}

fn check_quantity(q: Option<i64>) -> Result<(), InvalidInput> {
    if let Some(q) = q {
        if !(0..=1_000_000_000).contains(&q) {
            return Err(InvalidInput::payload(
                "'redemption.quantity' must be from 0 to 1000000000, or null for unlimited",
            ));
        }
    }
    Ok(())
}

fn check_rules(rules: &Option<Vec<String>>) -> Result<(), InvalidInput> {
    if let Some(r) = rules {
        if r.len() > MAX_RULES_PER_OBJECT {
            return Err(InvalidInput::payload(format!(
                "at most {MAX_RULES_PER_OBJECT} validation rules per object"
            )));
        }
        for id in r {
            check_identifier("validation_rules", id)?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct CampaignVoucherInput {
    #[serde(default, rename = "type")]
    pub kind: Option<VoucherType>,
    #[serde(default)]
    pub discount: Option<Discount>,
    #[serde(default)]
    pub gift: Option<GiftDef>,
    #[serde(default)]
    pub code_config: Option<CodeConfig>,
    #[serde(default)]
    pub redemption: Option<RedemptionLimit>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct CampaignInput {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(default)]
    pub campaign_type: Option<CampaignType>,
    #[serde(default, rename = "type")]
    pub kind: Option<CampaignKind>,
    #[serde(default)]
    pub voucher: Option<CampaignVoucherInput>,
    #[serde(default)]
    pub vouchers_count: Option<u64>,
    #[serde(default)]
    pub auto_join: Option<bool>,
    #[serde(default)]
    pub join_once: Option<bool>,
    #[serde(default)]
    pub use_voucher_metadata_schema: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub start_date: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub expiration_date: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<ValidityTimeframe>)]
    pub validity_timeframe: Option<Option<ValidityTimeframe>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<u8>>)]
    pub validity_day_of_week: Option<Option<Vec<u8>>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<ValidityHours>)]
    pub validity_hours: Option<Option<ValidityHours>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub activity_duration_after_publishing: Option<Option<String>>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub category_id: Option<String>,
    #[serde(default)]
    pub validation_rules: Option<Vec<String>>,
    /// On update: the new discount of a DISCOUNT_COUPONS campaign.
    #[serde(default)]
    pub discount: Option<Discount>,
    /// On update: the new gift definition of a GIFT_VOUCHERS campaign.
    #[serde(default)]
    pub gift: Option<GiftDef>,
    /// On create: a PROMOTION campaign's tiers.
    #[serde(default)]
    pub promotion: Option<crate::promotion::PromotionInput>,
}

impl CampaignInput {
    fn schedule_over(&self, base: &Schedule) -> Result<Schedule, InvalidInput> {
        overlay(
            base,
            &self.start_date,
            &self.expiration_date,
            &self.validity_timeframe,
            &self.validity_day_of_week,
            &self.validity_hours,
        )
    }

    fn check_common(&self) -> Result<(), InvalidInput> {
        if let Some(n) = &self.name {
            check_identifier("name", n)?;
        }
        if let Some(Some(d)) = &self.description {
            if d.len() > MAX_TEXT_LEN {
                return Err(InvalidInput::payload(format!(
                    "'description' is longer than {MAX_TEXT_LEN} characters"
                )));
            }
        }
        if let Some(m) = &self.metadata {
            check_metadata("metadata", m)?;
        }
        for (f, v) in [("category", &self.category), ("category_id", &self.category_id)] {
            if let Some(v) = v {
                if v.len() > MAX_ID_LEN {
                    return Err(InvalidInput::payload(format!("'{f}' is longer than {MAX_ID_LEN} characters")));
                }
            }
        }
        check_rules(&self.validation_rules)?;
        if let Some(Some(d)) = &self.activity_duration_after_publishing {
            d.parse::<jiff::Span>()
                .map_err(|_| InvalidInput::payload("'activity_duration_after_publishing' must be an ISO 8601 duration"))?;
        }
        Ok(())
    }

    /// A new campaign; returns it with the number of codes to generate.
    pub fn create(self, id: String, now: &str) -> Result<(Campaign, u64), InvalidInput> {
        self.check_common()?;
        let name = self
            .name
            .clone()
            .ok_or_else(|| InvalidInput::payload("Payload must have required property 'name'"))?;
        let v = self.voucher.clone().unwrap_or_default();
        let campaign_type = self.campaign_type.unwrap_or(match v.kind {
            Some(VoucherType::GiftVoucher) => CampaignType::GiftVouchers,
            _ if self.promotion.is_some() => CampaignType::Promotion,
            _ => CampaignType::DiscountCoupons,
        });
        if campaign_type == CampaignType::Promotion {
            if self.vouchers_count.unwrap_or(0) > 0 || self.voucher.is_some() {
                return Err(InvalidInput::payload(
                    "a PROMOTION campaign has tiers, not vouchers: drop 'voucher' and 'vouchers_count'",
                ));
            }
        } else if self.promotion.is_some() {
            return Err(InvalidInput::payload("'promotion' belongs to a PROMOTION campaign"));
        }
        let kind = v.kind.unwrap_or(match campaign_type {
            CampaignType::GiftVouchers => VoucherType::GiftVoucher,
            CampaignType::DiscountCoupons | CampaignType::Promotion => VoucherType::DiscountVoucher,
        });
        let expected = match campaign_type {
            CampaignType::GiftVouchers => VoucherType::GiftVoucher,
            CampaignType::DiscountCoupons | CampaignType::Promotion => VoucherType::DiscountVoucher,
        };
        if kind != expected {
            return Err(InvalidInput::payload(format!(
                "a {campaign_type:?} campaign holds {} vouchers",
                expected.as_str()
            )));
        }
        if campaign_type != CampaignType::Promotion {
            check_benefit(kind, &v.discount, &v.gift)?;
        }
        let quantity = v.redemption.clone().unwrap_or_default();
        check_quantity(quantity.quantity)?;
        let code_config = v.code_config.clone().unwrap_or_default();
        let space = crate::codes::CodeSpace::parse(&code_config)?;
        let count = self.vouchers_count.unwrap_or(0);
        if count > MAX_VOUCHERS_PER_CAMPAIGN {
            return Err(InvalidInput::payload(format!(
                "'vouchers_count' may be at most {MAX_VOUCHERS_PER_CAMPAIGN}"
            )));
        }
        space.check_capacity(count)?;
        let schedule = self.schedule_over(&Schedule::default())?;
        let campaign = Campaign {
            id,
            name,
            description: self.description.clone().flatten(),
            campaign_type,
            kind: self.kind.unwrap_or(CampaignKind::AutoUpdate),
            voucher: VoucherTemplate {
                kind,
                discount: v.discount.clone(),
                gift: v.gift.clone(),
                code_config,
                redemption: quantity,
            },
            auto_join: self.auto_join.unwrap_or(false),
            join_once: self.join_once.unwrap_or(false),
            use_voucher_metadata_schema: self.use_voucher_metadata_schema.unwrap_or(false),
            schedule,
            activity_duration_after_publishing: self.activity_duration_after_publishing.clone().flatten(),
            active: true,
            metadata: self.metadata.clone().unwrap_or_default(),
            category: self.category.clone(),
            category_id: self.category_id.clone(),
            validation_rules: self.validation_rules.clone().unwrap_or_default(),
            created_at: now.to_string(),
            updated_at: None,
        };
        Ok((campaign, count))
    }

    pub fn update(self, existing: &Campaign, now: &str) -> Result<Campaign, InvalidInput> {
        self.check_common()?;
        let mut c = existing.clone();
        c.schedule = self.schedule_over(&existing.schedule)?;
        if let Some(d) = self.description {
            c.description = d;
        }
        if let Some(k) = self.kind {
            c.kind = k;
        }
        for (target, v) in [
            (&mut c.auto_join, self.auto_join),
            (&mut c.join_once, self.join_once),
            (&mut c.use_voucher_metadata_schema, self.use_voucher_metadata_schema),
        ] {
            if let Some(v) = v {
                *target = v;
            }
        }
        if let Some(a) = self.activity_duration_after_publishing {
            c.activity_duration_after_publishing = a;
        }
        if let Some(m) = self.metadata {
            c.metadata = m;
        }
        if self.category.is_some() {
            c.category = self.category;
        }
        if self.category_id.is_some() {
            c.category_id = self.category_id;
        }
        if let Some(r) = self.validation_rules {
            c.validation_rules = r;
        }
        let discount = self.discount.or(self.voucher.as_ref().and_then(|v| v.discount.clone()));
        let gift = self.gift.or(self.voucher.as_ref().and_then(|v| v.gift.clone()));
        if discount.is_some() {
            c.voucher.discount = discount;
        }
        if gift.is_some() {
            c.voucher.gift = gift;
        }
        if let Some(r) = self.voucher.as_ref().and_then(|v| v.redemption.clone()) {
            check_quantity(r.quantity)?;
            c.voucher.redemption = r;
        }
        if c.campaign_type != CampaignType::Promotion {
            check_benefit(c.voucher.kind, &c.voucher.discount, &c.voucher.gift)?;
        } else if c.voucher.discount.is_some() || c.voucher.gift.is_some() {
            return Err(InvalidInput::payload(
                "a PROMOTION campaign's discounts belong to its tiers (/v1/promotions/tiers)",
            ));
        }
        c.updated_at = Some(now.to_string());
        Ok(c)
    }
}

/// The stored voucher; counters (redeemed quantity, gift balance) live in columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Voucher {
    pub id: String,
    pub code: String,
    pub campaign: Option<String>,
    pub campaign_id: Option<String>,
    pub category: Option<String>,
    pub category_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: VoucherType,
    pub discount: Option<Discount>,
    pub gift: Option<GiftDef>,
    #[serde(flatten)]
    pub schedule: Schedule,
    pub active: bool,
    pub additional_info: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub redemption_quantity: Option<i64>,
    pub holder_id: Option<String>,
    pub validation_rules: Vec<String>,
    pub created_at: String,
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct VoucherInput {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub code_config: Option<CodeConfig>,
    #[serde(default)]
    pub campaign: Option<String>,
    #[serde(default)]
    pub campaign_id: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<VoucherType>,
    #[serde(default)]
    pub discount: Option<Discount>,
    #[serde(default)]
    pub gift: Option<GiftDef>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub category_id: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub start_date: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub expiration_date: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<ValidityTimeframe>)]
    pub validity_timeframe: Option<Option<ValidityTimeframe>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<u8>>)]
    pub validity_day_of_week: Option<Option<Vec<u8>>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<ValidityHours>)]
    pub validity_hours: Option<Option<ValidityHours>>,
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub additional_info: Option<Option<String>>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub redemption: Option<RedemptionLimit>,
    #[serde(default)]
    pub validation_rules: Option<Vec<String>>,
}

pub fn check_code(code: &str) -> Result<(), InvalidInput> {
    if code.is_empty() || code.chars().count() > 100 || code.chars().any(|c| c.is_control() || c.is_whitespace() || c == '/') {
        return Err(InvalidInput::payload(
            "'code' must be 1 to 100 characters without spaces, slashes or control characters",
        ));
    }
    Ok(())
}

impl VoucherInput {
    fn check_common(&self) -> Result<(), InvalidInput> {
        if let Some(c) = &self.code {
            check_code(c)?;
        }
        if let Some(m) = &self.metadata {
            check_metadata("metadata", m)?;
        }
        if let Some(Some(a)) = &self.additional_info {
            if a.len() > MAX_TEXT_LEN {
                return Err(InvalidInput::payload(format!(
                    "'additional_info' is longer than {MAX_TEXT_LEN} characters"
                )));
            }
        }
        check_quantity(self.redemption.as_ref().and_then(|r| r.quantity))?;
        check_rules(&self.validation_rules)
    }

    fn schedule_over(&self, base: &Schedule) -> Result<Schedule, InvalidInput> {
        overlay(
            base,
            &self.start_date,
            &self.expiration_date,
            &self.validity_timeframe,
            &self.validity_day_of_week,
            &self.validity_hours,
        )
    }

    /// A voucher from this input; `campaign` supplies the definition when the voucher
    /// joins a campaign (its own fields override the campaign's where given).
    pub fn build(&self, id: String, code: String, campaign: Option<&Campaign>, now: &str) -> Result<Voucher, InvalidInput> {
        self.check_common()?;
        if let Some(c) = campaign {
            check_holds_codes(c)?;
        }
        check_code(&code)?;
        let (kind, discount, gift, quantity, base_schedule) = match campaign {
            Some(c) => (
                c.voucher.kind,
                self.discount.clone().or(c.voucher.discount.clone()),
                self.gift.clone().or(c.voucher.gift.clone()),
                self.redemption.clone().map(|r| r.quantity).unwrap_or(c.voucher.redemption.quantity),
                c.schedule.clone(),
            ),
            None => {
                let kind = self
                    .kind
                    .ok_or_else(|| InvalidInput::payload("'type' is required: DISCOUNT_VOUCHER or GIFT_VOUCHER"))?;
                (
                    kind,
                    self.discount.clone(),
                    self.gift.clone(),
                    self.redemption.clone().and_then(|r| r.quantity),
                    Schedule::default(),
                )
            }
        };
        check_benefit(kind, &discount, &gift)?;
        Ok(Voucher {
            id,
            code,
            campaign: campaign.map(|c| c.name.clone()),
            campaign_id: campaign.map(|c| c.id.clone()),
            category: self.category.clone().or(campaign.and_then(|c| c.category.clone())),
            category_id: self.category_id.clone().or(campaign.and_then(|c| c.category_id.clone())),
            kind,
            discount: if kind == VoucherType::DiscountVoucher { discount } else { None },
            gift: if kind == VoucherType::GiftVoucher { gift } else { None },
            schedule: self.schedule_over(&base_schedule)?,
            active: self.active.unwrap_or(true),
            additional_info: self.additional_info.clone().flatten(),
            metadata: self.metadata.clone().unwrap_or_default(),
            redemption_quantity: quantity,
            holder_id: None,
            validation_rules: self.validation_rules.clone().unwrap_or_default(),
            created_at: now.to_string(),
            updated_at: None,
        })
    }

    pub fn update(&self, existing: &Voucher, now: &str) -> Result<Voucher, InvalidInput> {
        self.check_common()?;
        let mut v = existing.clone();
        v.schedule = self.schedule_over(&existing.schedule)?;
        if let Some(a) = self.active {
            v.active = a;
        }
        if let Some(a) = &self.additional_info {
            v.additional_info = a.clone();
        }
        if let Some(m) = &self.metadata {
            v.metadata = m.clone();
        }
        if self.category.is_some() {
            v.category = self.category.clone();
        }
        if self.category_id.is_some() {
            v.category_id = self.category_id.clone();
        }
        if let Some(r) = &self.redemption {
            v.redemption_quantity = r.quantity;
        }
        if let Some(r) = &self.validation_rules {
            v.validation_rules = r.clone();
        }
        if v.kind == VoucherType::DiscountVoucher && self.discount.is_some() {
            v.discount = self.discount.clone();
        }
        check_benefit(v.kind, &v.discount, &v.gift)?;
        v.updated_at = Some(now.to_string());
        Ok(v)
    }
}

/// A voucher's live counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VoucherCounters {
    pub redeemed_quantity: i64,
    pub redeemed_amount: i64,
    pub gift_balance: Option<i64>,
    pub publish_count: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn campaign_creation_checks_its_definition() {
        let input: CampaignInput = serde_json::from_value(serde_json::json!({
            "name": "Summer", "vouchers_count": 10,
            "voucher": {"type": "DISCOUNT_VOUCHER", "discount": {"type": "PERCENT", "percent_off": 10}, "code_config": {"pattern": "SUM-####"}, "redemption": {"quantity": 1}}
        }))
        .expect("valid");
        let (c, n) = input.create("camp_1".into(), "t").expect("valid");
        assert_eq!(
            (c.campaign_type, c.voucher.kind, n),
            (CampaignType::DiscountCoupons, VoucherType::DiscountVoucher, 10)
        );
        for bad in [
            serde_json::json!({"voucher": {"type": "DISCOUNT_VOUCHER", "discount": {"type": "PERCENT", "percent_off": 10}}}),
            serde_json::json!({"name": "x", "voucher": {"type": "DISCOUNT_VOUCHER"}}),
            serde_json::json!({"name": "x", "campaign_type": "GIFT_VOUCHERS", "voucher": {"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 1}}}),
            serde_json::json!({"name": "x", "vouchers_count": 100, "voucher": {"type": "GIFT_VOUCHER", "gift": {"amount": 100}, "code_config": {"pattern": "##", "charset": "01"}}}),
            serde_json::json!({"name": "x", "voucher": {"type": "GIFT_VOUCHER", "gift": {"amount": 100}}, "start_date": "2024-02-01T00:00:00Z", "expiration_date": "2024-01-01T00:00:00Z"}),
        ] {
            let input: CampaignInput = serde_json::from_value(bad.clone()).expect("parses");
            assert!(input.create("camp_x".into(), "t").is_err(), "{bad}");
        }
    }

    #[test]
    fn vouchers_inherit_from_their_campaign() {
        let input: CampaignInput = serde_json::from_value(serde_json::json!({
            "name": "Gift", "voucher": {"type": "GIFT_VOUCHER", "gift": {"amount": 5000}, "redemption": {"quantity": null}},
            "expiration_date": "2030-01-01T00:00:00Z"
        }))
        .expect("valid");
        let (c, _) = input.create("camp_g".into(), "t").expect("valid");
        let v = VoucherInput::default()
            .build("v_1".into(), "GIFT-1".into(), Some(&c), "t")
            .expect("valid");
        assert_eq!(v.gift.as_ref().map(|g| g.amount), Some(5000));
        assert_eq!(v.schedule.expiration_date.as_deref(), Some("2030-01-01T00:00:00.000Z"));
        assert_eq!(v.campaign_id.as_deref(), Some("camp_g"));
        assert!(VoucherInput::default()
            .build("v_2".into(), "has space".into(), Some(&c), "t")
            .is_err());
        assert!(
            VoucherInput::default().build("v_3".into(), "X".into(), None, "t").is_err(),
            "a standalone voucher needs a type"
        );
    }
}
