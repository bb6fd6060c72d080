//! The OpenAPI document of what Tessera serves, generated from the handlers and types.

use crate::routes::{
    audit, categories, checkout, coupons, customers, exports, health, imports, management, metadata_schemas, orders, products, promotions,
    publications, rules, segments, stacking_rules, stacks, webhooks,
};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for name in [
            "X-App-Id",
            "X-App-Token",
            "X-Management-Id",
            "X-Management-Token",
            "X-Client-Application-Id",
            "X-Client-Token",
        ] {
            components.add_security_scheme(name, SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(name))));
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Tessera API", description = "Promotion and loyalty engine compatible with Voucherify's API v1. See docs/API.md for what is compatible and what Tessera adds."),
    paths(
        health::live, health::ready, health::metrics,
        management::create_project, management::list_projects, management::get_project, management::update_project, management::delete_project,
        management::create_key, management::list_keys, management::revoke_key,
        webhooks::create, webhooks::list, webhooks::get, webhooks::update, webhooks::delete, webhooks::deliveries, webhooks::delivery, webhooks::replay,
        webhooks::campaign_stats, webhooks::voucher_stats, audit::project_log, audit::management_log,
        customers::create, customers::list, customers::get, customers::update, customers::delete,
        customers::permanent_deletion, customers::activity, customers::activities,
        products::create, products::list, products::get, products::update, products::delete,
        products::create_sku, products::list_skus, products::get_product_sku, products::update_sku, products::delete_sku, products::get_sku,
        orders::create, orders::list, orders::get, orders::update,
        coupons::create_campaign, coupons::list_campaigns, coupons::get_campaign, coupons::update_campaign, coupons::delete_campaign,
        coupons::enable_campaign, coupons::disable_campaign, coupons::campaign_summary, coupons::add_vouchers, coupons::add_voucher_with_code,
        coupons::create_voucher, coupons::create_voucher_with_code, coupons::get_voucher, coupons::update_voucher, coupons::delete_voucher,
        coupons::enable_voucher, coupons::disable_voucher, coupons::list_vouchers, coupons::adjust_balance, coupons::transactions, coupons::release_session,
        checkout::validate, checkout::redeem, checkout::client_validate, checkout::client_redeem, checkout::list_redemptions, checkout::get_redemption, checkout::rollback, checkout::rollback_stacked,
        checkout::legacy_validate, checkout::legacy_redeem, checkout::get_async_action, checkout::list_async_actions,
        imports::campaign_import, imports::campaign_import_csv, imports::vouchers_import, imports::vouchers_import_csv,
        imports::customers_import_csv, imports::customers_bulk, imports::products_import_csv, imports::products_bulk, imports::skus_import_csv,
        rules::create, rules::list, rules::get, rules::update, rules::delete, rules::assign, rules::assignments, rules::unassign,
        promotions::list_all_tiers, promotions::list_campaign_tiers, promotions::create_tier, promotions::get_tier, promotions::update_tier,
        promotions::delete_tier, promotions::enable_tier, promotions::disable_tier, promotions::qualify, promotions::client_qualify,
        publications::create, publications::list, publications::wallet, publications::create_by_query,
        segments::create, segments::get, segments::delete, segments::list, segments::of_customer, segments::publish,
        exports::create, exports::list, exports::get, exports::delete, exports::download,
        metadata_schemas::create, metadata_schemas::list, metadata_schemas::get, metadata_schemas::update, metadata_schemas::delete,
        metadata_schemas::list_own, metadata_schemas::get_own,
        categories::list, categories::create, categories::get, categories::update, categories::delete,
        stacking_rules::list, stacking_rules::create, stacking_rules::get, stacking_rules::update, stacking_rules::delete,
        stacks::list_all, stacks::list, stacks::create, stacks::get, stacks::update, stacks::delete,
    ),
    components(schemas(crate::error::ErrorBody)),
    modifiers(&Security)
)]
pub struct ApiDoc;

pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    // The version comes from the build, not from the utoipa default.
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

pub fn json() -> String {
    document().to_pretty_json().unwrap_or_else(|_| "{}".into())
}
