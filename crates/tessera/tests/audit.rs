//! The audit log covers every mutating operation of the API: each one the OpenAPI
//! document lists is called successfully against the real binary, and its entry is read
//! back by request id. An operation added to the document without a fixture here fails
//! the test, so no endpoint escapes the audit log unnoticed.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// Whose credentials a call carries.
#[derive(Clone, Copy)]
enum As {
    Server,
    Client,
    Mgmt,
}

enum Body {
    None,
    Json(Value),
    /// Uploaded as the multipart field `file`.
    Csv(&'static str),
}

/// One HTTP call. `{name}` in the path or the JSON body is replaced by the context value
/// `name`, which earlier calls captured from their responses.
struct Call {
    method: Method,
    path: &'static str,
    by: As,
    body: Body,
    /// (context name, JSON pointer into the response).
    capture: &'static [(&'static str, &'static str)],
}

struct Fixture {
    /// The OpenAPI path template of the operation (its method is the call's).
    spec: &'static str,
    /// The expected audit action: the method and the axum route template.
    action: &'static str,
    /// False for operations that must leave no entry (validations without a session).
    mutates: bool,
    call: Call,
}

enum Step {
    /// An operation under test.
    Op(Fixture),
    /// A prerequisite for a later operation; its own audit entry is not checked here.
    Setup(Call),
    /// Waits until the async action whose id is in the named context value has finished,
    /// so background work does not race the deletes at the end.
    AwaitAction(&'static str),
    /// Waits for a delivery of the webhook in `webhook` and stores its id as `delivery`.
    AwaitDelivery,
}

fn op(spec: &'static str, action: &'static str, call: Call) -> Step {
    Step::Op(Fixture {
        spec,
        action,
        mutates: true,
        call,
    })
}

fn read_only(spec: &'static str, action: &'static str, call: Call) -> Step {
    Step::Op(Fixture {
        spec,
        action,
        mutates: false,
        call,
    })
}

fn call(method: Method, path: &'static str, by: As, body: Body) -> Call {
    Call {
        method,
        path,
        by,
        body,
        capture: &[],
    }
}

fn capturing(mut c: Call, capture: &'static [(&'static str, &'static str)]) -> Call {
    c.capture = capture;
    c
}

fn j(v: Value) -> Body {
    Body::Json(v)
}

/// The fixtures, in the order they run: each creates what later ones use, and deletes
/// come after everything that needs what they delete.
fn steps() -> Vec<Step> {
    use As::*;
    use Method as M;
    let ten_off = json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "PERCENT", "percent_off": 10}});
    let cart = json!({"redeemables": [{"object": "voucher", "id": "TEN"}], "order": {"amount": 1000}});
    vec![
        // Management: projects, keys, webhooks.
        op(
            "/management/v1/projects",
            "POST /management/v1/projects",
            capturing(
                call(
                    M::POST,
                    "/management/v1/projects",
                    Mgmt,
                    j(json!({"name": "Audit fixture", "currency": "EUR"})),
                ),
                &[("doomed", "/id")],
            ),
        ),
        op(
            "/management/v1/projects/{projectId}",
            "PUT /management/v1/projects/{id}",
            call(
                M::PUT,
                "/management/v1/projects/{project}",
                Mgmt,
                j(json!({"client_trusted_domains": ["https://shop.example"], "client_redeem_enabled": true})),
            ),
        ),
        op(
            "/management/v1/projects/{projectId}/api-keys",
            "POST /management/v1/projects/{id}/api-keys",
            capturing(
                call(
                    M::POST,
                    "/management/v1/projects/{doomed}/api-keys",
                    Mgmt,
                    j(json!({"type": "server", "name": "POS terminals"})),
                ),
                &[("key", "/app_id")],
            ),
        ),
        op(
            "/management/v1/projects/{projectId}/api-keys/{appId}",
            "DELETE /management/v1/projects/{id}/api-keys/{app_id}",
            call(M::DELETE, "/management/v1/projects/{doomed}/api-keys/{key}", Mgmt, Body::None),
        ),
        op(
            "/management/v1/projects/{projectId}/webhooks",
            "POST /management/v1/projects/{id}/webhooks",
            capturing(
                call(
                    M::POST,
                    "/management/v1/projects/{project}/webhooks",
                    Mgmt,
                    j(json!({"target_url": "{receiver}/hook", "events": ["voucher.created"]})),
                ),
                &[("webhook", "/id")],
            ),
        ),
        // Customers, products, SKUs and orders.
        op(
            "/v1/customers",
            "POST /v1/customers",
            capturing(
                call(
                    M::POST,
                    "/v1/customers",
                    Server,
                    j(json!({"source_id": "ann", "name": "Ann", "email": "ann@example.com"})),
                ),
                &[("customer", "/id")],
            ),
        ),
        op(
            "/v1/customers/{customerId}",
            "PUT /v1/customers/{id}",
            call(
                M::PUT,
                "/v1/customers/{customer}",
                Server,
                j(json!({"name": "Ann B", "metadata": {"tier": "gold"}})),
            ),
        ),
        op(
            "/v1/products",
            "POST /v1/products",
            capturing(
                call(
                    M::POST,
                    "/v1/products",
                    Server,
                    j(json!({"source_id": "tee", "name": "Tee", "price": 2500})),
                ),
                &[("product", "/id")],
            ),
        ),
        op(
            "/v1/products/{productId}",
            "PUT /v1/products/{id}",
            call(M::PUT, "/v1/products/{product}", Server, j(json!({"name": "T-shirt"}))),
        ),
        op(
            "/v1/products/{productId}/skus",
            "POST /v1/products/{id}/skus",
            capturing(
                call(
                    M::POST,
                    "/v1/products/{product}/skus",
                    Server,
                    j(json!({"source_id": "tee-red", "sku": "Red"})),
                ),
                &[("sku", "/id")],
            ),
        ),
        op(
            "/v1/products/{productId}/skus/{skuId}",
            "PUT /v1/products/{id}/skus/{sku}",
            call(M::PUT, "/v1/products/{product}/skus/{sku}", Server, j(json!({"sku": "Crimson"}))),
        ),
        op(
            "/v1/orders",
            "POST /v1/orders",
            capturing(
                call(M::POST, "/v1/orders", Server, j(json!({"source_id": "order-1", "amount": 2500}))),
                &[("order", "/id")],
            ),
        ),
        op(
            "/v1/orders/{orderId}",
            "PUT /v1/orders/{id}",
            call(M::PUT, "/v1/orders/{order}", Server, j(json!({"status": "PAID"}))),
        ),
        // Validation rules.
        op(
            "/v1/validation-rules",
            "POST /v1/validation-rules",
            capturing(
                call(
                    M::POST,
                    "/v1/validation-rules",
                    Server,
                    j(json!({"name": "Any order", "rules": {"1": {"name": "order.amount", "conditions": {"$more_than": [1]}}}})),
                ),
                &[("rule", "/id")],
            ),
        ),
        op(
            "/v1/validation-rules/{validationRuleId}",
            "PUT /v1/validation-rules/{id}",
            call(M::PUT, "/v1/validation-rules/{rule}", Server, j(json!({"name": "Any paid order"}))),
        ),
        // Campaigns and their vouchers.
        op(
            "/v1/campaigns",
            "POST /v1/campaigns",
            capturing(
                call(
                    M::POST,
                    "/v1/campaigns",
                    Server,
                    j(
                        json!({"name": "Spring", "voucher": {"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 100}}}),
                    ),
                ),
                &[("campaign", "/id")],
            ),
        ),
        op(
            "/v1/campaigns/{campaignId}",
            "PUT /v1/campaigns/{id}",
            call(M::PUT, "/v1/campaigns/{campaign}", Server, j(json!({"description": "Spring sale"}))),
        ),
        op(
            "/v1/campaigns/{campaignId}/disable",
            "POST /v1/campaigns/{id}/disable",
            call(M::POST, "/v1/campaigns/{campaign}/disable", Server, Body::None),
        ),
        op(
            "/v1/campaigns/{campaignId}/enable",
            "POST /v1/campaigns/{id}/enable",
            call(M::POST, "/v1/campaigns/{campaign}/enable", Server, Body::None),
        ),
        op(
            "/v1/campaigns/{campaignId}/vouchers",
            "POST /v1/campaigns/{id}/vouchers",
            call(
                M::POST,
                "/v1/campaigns/{campaign}/vouchers",
                Server,
                j(json!({"metadata": {"batch": 1}})),
            ),
        ),
        op(
            "/v1/campaigns/{campaignId}/vouchers/{code}",
            "POST /v1/campaigns/{id}/vouchers/{code}",
            call(
                M::POST,
                "/v1/campaigns/{campaign}/vouchers/SPRING-1",
                Server,
                j(json!({"metadata": {"batch": 2}})),
            ),
        ),
        op(
            "/v1/campaigns/{campaignId}/import",
            "POST /v1/campaigns/{id}/import",
            capturing(
                call(
                    M::POST,
                    "/v1/campaigns/{campaign}/import",
                    Server,
                    j(json!([{"code": "SPRING-IMP"}])),
                ),
                &[("campaign_import", "/async_action_id")],
            ),
        ),
        Step::AwaitAction("campaign_import"),
        op(
            "/v1/campaigns/{campaignId}/importCSV",
            "POST /v1/campaigns/{id}/importCSV",
            capturing(
                call(
                    M::POST,
                    "/v1/campaigns/{campaign}/importCSV",
                    Server,
                    Body::Csv("Code\nSPRING-CSV\n"),
                ),
                &[("campaign_csv", "/async_action_id")],
            ),
        ),
        Step::AwaitAction("campaign_csv"),
        // Standalone vouchers. Creating one also gives the webhook above a delivery.
        op(
            "/v1/vouchers",
            "POST /v1/vouchers",
            capturing(call(M::POST, "/v1/vouchers", Server, j(ten_off.clone())), &[("generated", "/code")]),
        ),
        op(
            "/v1/vouchers/{code}",
            "POST /v1/vouchers/{code}",
            call(M::POST, "/v1/vouchers/TEN", Server, j(ten_off)),
        ),
        op(
            "/v1/vouchers/{code}",
            "PUT /v1/vouchers/{code}",
            call(M::PUT, "/v1/vouchers/TEN", Server, j(json!({"metadata": {"channel": "web"}}))),
        ),
        op(
            "/v1/vouchers/{code}/disable",
            "POST /v1/vouchers/{code}/disable",
            call(M::POST, "/v1/vouchers/TEN/disable", Server, Body::None),
        ),
        op(
            "/v1/vouchers/{code}/enable",
            "POST /v1/vouchers/{code}/enable",
            call(M::POST, "/v1/vouchers/TEN/enable", Server, Body::None),
        ),
        op(
            "/v1/vouchers/import",
            "POST /v1/vouchers/import",
            capturing(
                call(
                    M::POST,
                    "/v1/vouchers/import",
                    Server,
                    j(json!([{"code": "IMP-1", "type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 5}}])),
                ),
                &[("voucher_import", "/async_action_id")],
            ),
        ),
        Step::AwaitAction("voucher_import"),
        op(
            "/v1/vouchers/importCSV",
            "POST /v1/vouchers/importCSV",
            capturing(
                call(
                    M::POST,
                    "/v1/vouchers/importCSV",
                    Server,
                    Body::Csv("Code,Voucher Type,Value,Discount Type\nCSV-1,DISCOUNT_VOUCHER,15,PERCENT\n"),
                ),
                &[("voucher_csv", "/async_action_id")],
            ),
        ),
        Step::AwaitAction("voucher_csv"),
        // Customer, product and SKU imports.
        op(
            "/v1/customers/importCSV",
            "POST /v1/customers/importCSV",
            capturing(
                call(
                    M::POST,
                    "/v1/customers/importCSV",
                    Server,
                    Body::Csv("source_id,name\naudit-csv-1,Ann\n"),
                ),
                &[("customers_csv", "/async_action_id")],
            ),
        ),
        Step::AwaitAction("customers_csv"),
        op(
            "/v1/customers/bulk/async",
            "POST /v1/customers/bulk/async",
            capturing(
                call(
                    M::POST,
                    "/v1/customers/bulk/async",
                    Server,
                    j(json!([{"source_id": "audit-bulk-1", "name": "Bo"}])),
                ),
                &[("customers_bulk", "/async_action_id")],
            ),
        ),
        Step::AwaitAction("customers_bulk"),
        op(
            "/v1/products/importCSV",
            "POST /v1/products/importCSV",
            capturing(
                call(
                    M::POST,
                    "/v1/products/importCSV",
                    Server,
                    Body::Csv("source_id,name,price\naudit-prod-csv,Lamp,1000\n"),
                ),
                &[("products_csv", "/async_action_id")],
            ),
        ),
        Step::AwaitAction("products_csv"),
        op(
            "/v1/products/bulk/async",
            "POST /v1/products/bulk/async",
            capturing(
                call(
                    M::POST,
                    "/v1/products/bulk/async",
                    Server,
                    j(json!([{"source_id": "audit-prod-bulk", "name": "Desk"}])),
                ),
                &[("products_bulk", "/async_action_id")],
            ),
        ),
        Step::AwaitAction("products_bulk"),
        op(
            "/v1/skus/importCSV",
            "POST /v1/skus/importCSV",
            capturing(
                call(
                    M::POST,
                    "/v1/skus/importCSV",
                    Server,
                    Body::Csv("product_id,source_id,sku,price\naudit-prod-csv,audit-sku-csv,Red,1100\n"),
                ),
                &[("skus_csv", "/async_action_id")],
            ),
        ),
        Step::AwaitAction("skus_csv"),
        op(
            "/v1/validation-rules/{validationRuleId}/assignments",
            "POST /v1/validation-rules/{id}/assignments",
            capturing(
                call(
                    M::POST,
                    "/v1/validation-rules/{rule}/assignments",
                    Server,
                    j(json!({"related_object_type": "voucher", "related_object_id": "TEN"})),
                ),
                &[("assignment", "/id")],
            ),
        ),
        op(
            "/v1/validation-rules/{validationRuleId}/assignments/{assignmentId}",
            "DELETE /v1/validation-rules/{id}/assignments/{assignment}",
            call(
                M::DELETE,
                "/v1/validation-rules/{rule}/assignments/{assignment}",
                Server,
                Body::None,
            ),
        ),
        Step::Setup(call(
            M::POST,
            "/v1/vouchers/GIFT",
            Server,
            j(json!({"type": "GIFT_VOUCHER", "gift": {"amount": 5000}})),
        )),
        op(
            "/v1/vouchers/{code}/balance",
            "POST /v1/vouchers/{code}/balance",
            call(
                M::POST,
                "/v1/vouchers/GIFT/balance",
                Server,
                j(json!({"amount": 1000, "reason": "goodwill"})),
            ),
        ),
        op(
            "/v1/publications",
            "POST /v1/publications",
            call(
                M::POST,
                "/v1/publications",
                Server,
                j(json!({"voucher": "TEN", "customer": {"source_id": "publication-customer"}})),
            ),
        ),
        op(
            "/v1/segments",
            "POST /v1/segments",
            capturing(
                call(
                    M::POST,
                    "/v1/segments",
                    Server,
                    j(json!({"name": "Picked", "type": "static", "customers": ["{customer}"]})),
                ),
                &[("segment", "/id")],
            ),
        ),
        op(
            "/v1/segments/{segmentId}/publications",
            "POST /v1/segments/{id}/publications",
            capturing(
                call(
                    M::POST,
                    "/v1/segments/{segment}/publications",
                    Server,
                    j(json!({"campaign": "Spring"})),
                ),
                &[("segment_publish", "/async_action_id")],
            ),
        ),
        Step::AwaitAction("segment_publish"),
        op(
            "/v1/exports",
            "POST /v1/exports",
            capturing(
                call(
                    M::POST,
                    "/v1/exports",
                    Server,
                    j(json!({"exported_object": "customer", "parameters": {"fields": ["id", "email"]}})),
                ),
                &[("export", "/id")],
            ),
        ),
        // Checkout. Validations without a session change nothing.
        read_only(
            "/v1/validations",
            "POST /v1/validations",
            call(M::POST, "/v1/validations", Server, j(cart.clone())),
        ),
        read_only(
            "/v1/vouchers/{code}/validate",
            "POST /v1/vouchers/{code}/validate",
            call(M::POST, "/v1/vouchers/TEN/validate", Server, j(json!({"order": {"amount": 1000}}))),
        ),
        read_only(
            "/client/v1/validations",
            "POST /client/v1/validations",
            call(M::POST, "/client/v1/validations", Client, j(cart.clone())),
        ),
        // Promotions and qualifications.
        Step::Setup(capturing(
            call(
                M::POST,
                "/v1/campaigns",
                Server,
                j(
                    json!({"name": "Spring promo", "campaign_type": "PROMOTION", "promotion": {"tiers": [
                        {"name": "5 off", "action": {"discount": {"type": "AMOUNT", "amount_off": 500}}}
                    ]}}),
                ),
            ),
            &[("promo", "/id"), ("tier", "/promotion/tiers/0/id")],
        )),
        op(
            "/v1/promotions/{campaignId}/tiers",
            "POST /v1/promotions/{id}/tiers",
            capturing(
                call(
                    M::POST,
                    "/v1/promotions/{promo}/tiers",
                    Server,
                    j(json!({"name": "10%", "action": {"discount": {"type": "PERCENT", "percent_off": 10}}})),
                ),
                &[("tier2", "/id")],
            ),
        ),
        op(
            "/v1/promotions/tiers/{promotionTierId}",
            "PUT /v1/promotions/tiers/{id}",
            call(
                M::PUT,
                "/v1/promotions/tiers/{tier2}",
                Server,
                j(json!({"banner": "Ten percent off"})),
            ),
        ),
        op(
            "/v1/promotions/tiers/{promotionTierId}/disable",
            "POST /v1/promotions/tiers/{id}/disable",
            call(M::POST, "/v1/promotions/tiers/{tier2}/disable", Server, Body::None),
        ),
        op(
            "/v1/promotions/tiers/{promotionTierId}/enable",
            "POST /v1/promotions/tiers/{id}/enable",
            call(M::POST, "/v1/promotions/tiers/{tier2}/enable", Server, Body::None),
        ),
        op(
            "/v1/promotions/tiers/{promotionTierId}",
            "DELETE /v1/promotions/tiers/{id}",
            call(M::DELETE, "/v1/promotions/tiers/{tier2}", Server, Body::None),
        ),
        read_only(
            "/v1/qualifications",
            "POST /v1/qualifications",
            call(M::POST, "/v1/qualifications", Server, j(json!({"order": {"amount": 1000}}))),
        ),
        read_only(
            "/client/v1/qualifications",
            "POST /client/v1/qualifications",
            call(M::POST, "/client/v1/qualifications", Client, j(json!({"order": {"amount": 1000}}))),
        ),
        Step::Setup(call(
            M::POST,
            "/v1/validations",
            Server,
            j(json!({
                "redeemables": [{"object": "voucher", "id": "TEN"}], "order": {"amount": 1000},
                "session": {"type": "LOCK", "key": "cart-1", "ttl": 1, "ttl_unit": "HOURS"}
            })),
        )),
        op(
            "/v1/vouchers/{code}/sessions/{sessionKey}",
            "DELETE /v1/vouchers/{code}/sessions/{key}",
            call(M::DELETE, "/v1/vouchers/TEN/sessions/cart-1", Server, Body::None),
        ),
        op(
            "/v1/redemptions",
            "POST /v1/redemptions",
            capturing(
                call(
                    M::POST,
                    "/v1/redemptions",
                    Server,
                    j(json!({
                        "redeemables": [{"object": "voucher", "id": "TEN"}, {"object": "voucher", "id": "GIFT", "gift": {"credits": 500}}],
                        "order": {"amount": 10000}, "customer": {"source_id": "ann"}
                    })),
                ),
                &[("parent", "/parent_redemption/id")],
            ),
        ),
        op(
            "/v1/redemptions/{parentRedemptionId}/rollbacks",
            "POST /v1/redemptions/{id}/rollbacks",
            call(
                M::POST,
                "/v1/redemptions/{parent}/rollbacks",
                Server,
                j(json!({"reason": "refund"})),
            ),
        ),
        op(
            "/v1/vouchers/{code}/redemption",
            "POST /v1/vouchers/{code}/redemption",
            capturing(
                call(
                    M::POST,
                    "/v1/vouchers/TEN/redemption",
                    Server,
                    j(json!({"order": {"amount": 1000}})),
                ),
                &[("single", "/id")],
            ),
        ),
        op(
            "/v1/redemptions/{redemptionId}/rollback",
            "POST /v1/redemptions/{id}/rollback",
            call(
                M::POST,
                "/v1/redemptions/{single}/rollback",
                Server,
                j(json!({"reason": "mistake"})),
            ),
        ),
        op(
            "/client/v1/redemptions",
            "POST /client/v1/redemptions",
            call(M::POST, "/client/v1/redemptions", Client, j(cart)),
        ),
        // Webhook maintenance, once the vouchers above produced a delivery.
        Step::AwaitDelivery,
        op(
            "/management/v1/projects/{projectId}/webhooks/{webhookId}/deliveries/{deliveryId}/replay",
            "POST /management/v1/projects/{id}/webhooks/{webhook}/deliveries/{delivery}/replay",
            call(
                M::POST,
                "/management/v1/projects/{project}/webhooks/{webhook}/deliveries/{delivery}/replay",
                Mgmt,
                Body::None,
            ),
        ),
        op(
            "/management/v1/projects/{projectId}/webhooks/{webhookId}",
            "PUT /management/v1/projects/{id}/webhooks/{webhook}",
            call(
                M::PUT,
                "/management/v1/projects/{project}/webhooks/{webhook}",
                Mgmt,
                j(json!({"active": false, "events": ["voucher.created", "voucher.deleted"]})),
            ),
        ),
        op(
            "/management/v1/projects/{projectId}/webhooks/{webhookId}",
            "DELETE /management/v1/projects/{id}/webhooks/{webhook}",
            call(M::DELETE, "/management/v1/projects/{project}/webhooks/{webhook}", Mgmt, Body::None),
        ),
        // Deletes, after everything that used what they delete.
        Step::Setup(capturing(
            call(
                M::POST,
                "/v1/customers",
                Server,
                j(json!({"source_id": "zed", "email": "zed@example.com"})),
            ),
            &[("erased", "/id")],
        )),
        op(
            "/v1/customers/{customerId}/permanent-deletion",
            "POST /v1/customers/{id}/permanent-deletion",
            call(M::POST, "/v1/customers/{erased}/permanent-deletion", Server, Body::None),
        ),
        op(
            "/v1/segments/{segmentId}",
            "DELETE /v1/segments/{id}",
            call(M::DELETE, "/v1/segments/{segment}", Server, Body::None),
        ),
        op(
            "/v1/exports/{exportId}",
            "DELETE /v1/exports/{id}",
            call(M::DELETE, "/v1/exports/{export}", Server, Body::None),
        ),
        op(
            "/v1/customers/{customerId}",
            "DELETE /v1/customers/{id}",
            call(M::DELETE, "/v1/customers/{customer}", Server, Body::None),
        ),
        op(
            "/v1/products/{productId}/skus/{skuId}",
            "DELETE /v1/products/{id}/skus/{sku}",
            call(M::DELETE, "/v1/products/{product}/skus/{sku}", Server, Body::None),
        ),
        op(
            "/v1/products/{productId}",
            "DELETE /v1/products/{id}",
            call(M::DELETE, "/v1/products/{product}", Server, Body::None),
        ),
        op(
            "/v1/validation-rules/{validationRuleId}",
            "DELETE /v1/validation-rules/{id}",
            call(M::DELETE, "/v1/validation-rules/{rule}", Server, Body::None),
        ),
        op(
            "/v1/vouchers/{code}",
            "DELETE /v1/vouchers/{code}",
            call(M::DELETE, "/v1/vouchers/{generated}", Server, Body::None),
        ),
        // Metadata schemas (management).
        op(
            "/management/v1/projects/{projectId}/metadata-schemas",
            "POST /management/v1/projects/{id}/metadata-schemas",
            capturing(
                call(
                    M::POST,
                    "/management/v1/projects/{project}/metadata-schemas",
                    Mgmt,
                    j(json!({"related_object": "sku", "properties": {"colour": {"type": "string", "optional": true, "array": false}}})),
                ),
                &[("schema", "/id")],
            ),
        ),
        op(
            "/management/v1/projects/{projectId}/metadata-schemas/{metadataSchemaId}",
            "PUT /management/v1/projects/{id}/metadata-schemas/{schema}",
            call(
                M::PUT,
                "/management/v1/projects/{project}/metadata-schemas/{schema}",
                Mgmt,
                j(json!({"allow_defined_only": false})),
            ),
        ),
        op(
            "/management/v1/projects/{projectId}/metadata-schemas/{metadataSchemaId}",
            "DELETE /management/v1/projects/{id}/metadata-schemas/{schema}",
            call(
                M::DELETE,
                "/management/v1/projects/{project}/metadata-schemas/{schema}",
                Mgmt,
                Body::None,
            ),
        ),
        // Categories, stacking rules and promotion stacks.
        op(
            "/v1/categories",
            "POST /v1/categories",
            capturing(
                call(M::POST, "/v1/categories", Server, j(json!({"name": "Audit", "hierarchy": 1}))),
                &[("category", "/id")],
            ),
        ),
        op(
            "/v1/categories/{categoryId}",
            "PUT /v1/categories/{id}",
            call(
                M::PUT,
                "/v1/categories/{category}",
                Server,
                j(json!({"name": "Audited", "hierarchy": 2})),
            ),
        ),
        op(
            "/management/v1/projects/{projectId}/stacking-rules",
            "POST /management/v1/projects/{id}/stacking-rules",
            capturing(
                call(
                    M::POST,
                    "/management/v1/projects/{project}/stacking-rules",
                    Mgmt,
                    j(json!({"applicable_redeemables_limit": 3})),
                ),
                &[("rules", "/id")],
            ),
        ),
        op(
            "/management/v1/projects/{projectId}/stacking-rules/{stackingRulesId}",
            "PUT /management/v1/projects/{id}/stacking-rules/{rules}",
            call(
                M::PUT,
                "/management/v1/projects/{project}/stacking-rules/{rules}",
                Mgmt,
                j(json!({"redeemables_limit": 10})),
            ),
        ),
        op(
            "/v1/promotions/{campaignId}/stacks",
            "POST /v1/promotions/{id}/stacks",
            capturing(
                call(
                    M::POST,
                    "/v1/promotions/{promo}/stacks",
                    Server,
                    j(json!({"name": "Audit stack", "tiers": {"ids": ["{tier}"]}, "category_id": "{category}"})),
                ),
                &[("stack", "/id")],
            ),
        ),
        op(
            "/v1/promotions/{campaignId}/stacks/{stackId}",
            "PUT /v1/promotions/{id}/stacks/{stack}",
            call(
                M::PUT,
                "/v1/promotions/{promo}/stacks/{stack}",
                Server,
                j(json!({"name": "Audit stack 2"})),
            ),
        ),
        op(
            "/v1/promotions/{campaignId}/stacks/{stackId}",
            "DELETE /v1/promotions/{id}/stacks/{stack}",
            call(M::DELETE, "/v1/promotions/{promo}/stacks/{stack}", Server, Body::None),
        ),
        op(
            "/management/v1/projects/{projectId}/stacking-rules/{stackingRulesId}",
            "DELETE /management/v1/projects/{id}/stacking-rules/{rules}",
            call(
                M::DELETE,
                "/management/v1/projects/{project}/stacking-rules/{rules}",
                Mgmt,
                Body::None,
            ),
        ),
        op(
            "/v1/categories/{categoryId}",
            "DELETE /v1/categories/{id}",
            call(M::DELETE, "/v1/categories/{category}", Server, Body::None),
        ),
        op(
            "/v1/campaigns/{campaignId}",
            "DELETE /v1/campaigns/{id}",
            call(M::DELETE, "/v1/campaigns/{campaign}", Server, Body::None),
        ),
        op(
            "/management/v1/projects/{projectId}",
            "DELETE /management/v1/projects/{id}",
            call(M::DELETE, "/management/v1/projects/{doomed}", Mgmt, Body::None),
        ),
    ]
}

/// Every (METHOD, path) of the document that may change something.
fn documented_mutations() -> BTreeSet<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("read docs/openapi.json")).expect("valid JSON");
    let mut out = BTreeSet::new();
    for (p, item) in doc["paths"].as_object().expect("paths") {
        for m in item.as_object().expect("path item").keys() {
            if ["post", "put", "patch", "delete"].contains(&m.as_str()) {
                out.insert((m.to_uppercase(), p.clone()));
            }
        }
    }
    out
}

fn fill(template: &str, ctx: &HashMap<String, String>) -> String {
    let mut s = template.to_string();
    for (k, v) in ctx {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    assert!(
        !s.contains("/{") && !s.contains("\"{"),
        "unfilled placeholder in {s}: a fixture uses a value no earlier step captured"
    );
    s
}

struct Harness {
    server: Server,
    project: Project,
    ctx: HashMap<String, String>,
}

/// What a call sent, as the audit entry should record it.
struct Sent {
    resource: String,
    fields: Vec<String>,
    status: u16,
    request_id: String,
    body: Value,
}

impl Harness {
    async fn send(&mut self, c: &Call) -> Sent {
        let resource = fill(c.path, &self.ctx);
        let mut req = self.server.http.request(c.method.clone(), self.server.url(&resource));
        req = match c.by {
            As::Server => req
                .header("X-App-Id", &self.project.app_id)
                .header("X-App-Token", &self.project.app_token),
            As::Client => req
                .header("X-Client-Application-Id", &self.project.client_id)
                .header("X-Client-Token", &self.project.client_token)
                .header("Origin", "https://shop.example"),
            As::Mgmt => req.header("X-Management-Id", MGMT_ID).header("X-Management-Token", MGMT_TOKEN),
        };
        let mut fields = Vec::new();
        match &c.body {
            Body::None => {}
            Body::Json(v) => {
                let v: Value = serde_json::from_str(&fill(&v.to_string(), &self.ctx)).expect("filled body is JSON");
                if let Some(o) = v.as_object() {
                    fields = o.keys().cloned().collect();
                    fields.sort();
                }
                req = req.json(&v);
            }
            Body::Csv(text) => {
                let part = reqwest::multipart::Part::bytes(text.as_bytes().to_vec()).file_name("vouchers.csv");
                req = req.multipart(reqwest::multipart::Form::new().part("file", part));
            }
        }
        let resp = req.send().await.expect("send the call");
        let status = resp.status().as_u16();
        let request_id = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .expect("every response carries x-request-id");
        let text = resp.text().await.expect("read the response");
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let sent = Sent {
            resource,
            fields,
            status,
            request_id,
            body,
        };
        assert!(
            (200..300).contains(&sent.status),
            "{} {} answered {}: {}",
            c.method,
            sent.resource,
            sent.status,
            sent.body
        );
        for (name, pointer) in c.capture {
            let v = sent
                .body
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{} {}: no string at {pointer} in {}", c.method, sent.resource, sent.body));
            self.ctx.insert((*name).to_string(), v.to_string());
        }
        sent
    }

    async fn mgmt_get(&self, path: &str) -> Value {
        let (status, body) = self.server.mgmt(Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// The entries carrying a request id in the log that a call to `resource` belongs to:
    /// the organization's for project creation, otherwise the project's.
    async fn entries_for(&self, resource: &str, request_id: &str) -> Vec<Value> {
        let log = if resource == "/management/v1/projects" {
            "/management/v1/audit-log".to_string()
        } else {
            let project = resource
                .strip_prefix("/management/v1/projects/")
                .and_then(|rest| rest.split('/').next())
                .unwrap_or(&self.project.id);
            format!("/management/v1/projects/{project}/audit-log")
        };
        let body = self.mgmt_get(&format!("{log}?request_id={request_id}")).await;
        assert_eq!(body["object"], "list", "{body}");
        body["data"].as_array().cloned().expect("data is a list")
    }

    /// Entries with a request id in any log this test writes to: the organization's and
    /// both projects'. A request that changes nothing must be in none of them, and an
    /// entry filed under the wrong scope shows up here.
    async fn entries_anywhere(&self, request_id: &str) -> Vec<Value> {
        let mut logs = vec![
            "/management/v1/audit-log".to_string(),
            format!("/management/v1/projects/{}/audit-log", self.project.id),
        ];
        if let Some(doomed) = self.ctx.get("doomed") {
            logs.push(format!("/management/v1/projects/{doomed}/audit-log"));
        }
        let mut out = Vec::new();
        for log in logs {
            let body = self.mgmt_get(&format!("{log}?request_id={request_id}")).await;
            for e in body["data"].as_array().cloned().unwrap_or_default() {
                out.push(json!({"log": log, "entry": e}));
            }
        }
        out
    }

    async fn await_action(&self, name: &str) {
        let id = &self.ctx[name];
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            let (status, a) = self
                .server
                .call(&self.project, Method::GET, &format!("/v1/async-actions/{id}"), None)
                .await;
            assert_eq!(status, 200, "{a}");
            if a["status"] == "DONE" {
                return;
            }
            assert_ne!(a["status"], "FAILED", "async action {name}: {a}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("async action {name} ({id}) did not finish");
    }

    async fn await_delivery(&mut self) {
        let path = format!(
            "/management/v1/projects/{}/webhooks/{}/deliveries",
            self.project.id, self.ctx["webhook"]
        );
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            let list = self.mgmt_get(&path).await;
            if let Some(id) = list["data"][0]["id"].as_str() {
                self.ctx.insert("delivery".into(), id.to_string());
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no webhook delivery within 30 s");
    }
}

/// Accepts webhook deliveries so the replayed one has somewhere to go.
async fn start_receiver() -> String {
    let app = axum::Router::new().fallback(|| async { "ok" });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
    let addr = listener.local_addr().expect("receiver address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutating_operation_in_the_openapi_document_is_audited() {
    let steps = steps();
    let mut covered = BTreeSet::new();
    for s in &steps {
        if let Step::Op(f) = s {
            let key = (f.call.method.to_string(), f.spec.to_string());
            assert!(covered.insert(key.clone()), "two fixtures for {key:?}");
        }
    }
    let documented = documented_mutations();
    let missing: Vec<_> = documented.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "mutating operations without an audit fixture: {missing:?}; add a fixture for each to tests/audit.rs"
    );
    let stale: Vec<_> = covered.difference(&documented).collect();
    assert!(stale.is_empty(), "fixtures for operations the document no longer has: {stale:?}");

    let receiver = start_receiver().await;
    let dir = TempDir::new();
    let backend = Backend::Sqlite(dir.0.clone());
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--log-level", "warn"])
        .args(["--webhook-allow-private-targets", "true"])
        .arg("--data-dir")
        .arg(&dir.0);
    let server = Server::start_with(cmd, backend);
    let project = server.create_project("Audited").await;
    let ctx = HashMap::from([("project".to_string(), project.id.clone()), ("receiver".to_string(), receiver)]);
    let mut h = Harness { server, project, ctx };

    let (mut mutating, mut reads) = (0, 0);
    // Collected rather than asserted one by one, so one run lists every operation at fault.
    let mut problems: Vec<String> = Vec::new();
    for step in &steps {
        let f = match step {
            Step::Op(f) => f,
            Step::Setup(c) => {
                h.send(c).await;
                continue;
            }
            Step::AwaitAction(name) => {
                h.await_action(name).await;
                continue;
            }
            Step::AwaitDelivery => {
                h.await_delivery().await;
                continue;
            }
        };
        let sent = h.send(&f.call).await;
        let what = format!("{} {} (called as {})", f.call.method, f.spec, sent.resource);
        if !f.mutates {
            let anywhere = h.entries_anywhere(&sent.request_id).await;
            if !anywhere.is_empty() {
                problems.push(format!("{what} changes nothing, yet left audit entries: {anywhere:?}"));
            }
            reads += 1;
            continue;
        }
        mutating += 1;
        let entries = h.entries_for(&sent.resource, &sent.request_id).await;
        let [e] = entries.as_slice() else {
            let anywhere = h.entries_anywhere(&sent.request_id).await;
            problems.push(format!(
                "{what}: expected one entry in its log, found {}; entries with its request id in any log: {anywhere:?}",
                entries.len()
            ));
            continue;
        };
        let actor = match f.call.by {
            As::Server => format!("key:{}", h.project.app_id),
            As::Client => format!("key:{}", h.project.client_id),
            As::Mgmt => "management".to_string(),
        };
        let expected = [
            ("object", json!("audit_entry")),
            ("request_id", json!(sent.request_id)),
            ("action", json!(f.action)),
            ("actor", json!(actor)),
            ("resource", json!(sent.resource)),
            ("fields", json!(sent.fields)),
        ];
        for (key, want) in expected {
            if e[key] != want {
                problems.push(format!("{what}: {key} is {}, expected {want}", e[key]));
            }
        }
        for key in ["id", "created_at"] {
            if e[key].as_str().is_none_or(str::is_empty) {
                problems.push(format!("{what}: no {key} in {e}"));
            }
        }
    }
    assert_eq!(mutating + reads, documented.len(), "every documented mutation ran");
    println!("ran {mutating} mutating and {reads} read-only operations");

    // A refused mutation writes nothing, so it leaves nothing in the log either.
    let r = h
        .server
        .send(
            &h.project,
            Method::POST,
            "/v1/vouchers/REFUSED",
            Some(json!({"type": "NOT_A_TYPE"})),
            &[],
        )
        .await;
    assert_eq!(r.status().as_u16(), 400, "an unknown voucher type is refused");
    let rid = r
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .expect("x-request-id");
    let entries = h.entries_anywhere(&rid).await;
    if !entries.is_empty() {
        problems.push(format!("a refused POST /v1/vouchers/{{code}} left audit entries: {entries:?}"));
    }
    assert!(problems.is_empty(), "audit log problems:\n{}", problems.join("\n"));

    // Paging back: `before` continues strictly older than the page before it.
    let log = format!("/management/v1/projects/{}/audit-log", h.project.id);
    let first = h.mgmt_get(&format!("{log}?limit=5")).await;
    let first = first["data"].as_array().cloned().expect("a page");
    assert_eq!(first.len(), 5, "the walk wrote more than five entries");
    let oldest = first[4]["created_at"].as_str().expect("created_at").to_string();
    let next = h.mgmt_get(&format!("{log}?limit=5&before={oldest}")).await;
    let next = next["data"].as_array().cloned().expect("a page");
    assert!(!next.is_empty(), "older entries exist");
    for e in &next {
        assert!(
            e["created_at"].as_str().is_some_and(|t| t < oldest.as_str()),
            "{e} is not before {oldest}"
        );
    }
    h.server.stop();
}
