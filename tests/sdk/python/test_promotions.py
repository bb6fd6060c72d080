#!/usr/bin/env python3
"""Promotions: tiers, qualifications and stacked validation/redemption/rollback of a
promotion tier together with a coupon; a compatibility check for Tessera, driven by
the official Voucherify Python SDK (voucherify==6.1.1, see requirements.txt).

Usage:
    TESSERA_URL=http://127.0.0.1:8080 TESSERA_APP_ID=... TESSERA_APP_TOKEN=... \
        python tests/sdk/python/test_promotions.py

Flows covered (every check is a named test case, run in order; a case whose
prerequisite failed fails with "prerequisite missing"):
  a) POST /v1/validation-rules             'order.amount $more_than 10000'
     POST /v1/campaigns                    PROMOTION with two tiers: AMOUNT 500 off, and
                                           PERCENT 10 % guarded by the rule above
  b) GET  /v1/promotions/{campaignId}/tiers, GET /v1/promotions/tiers/{id}
     POST /v1/promotions/{campaignId}/tiers          a third tier
     PUT  /v1/promotions/tiers/{id}                  update it
     POST /v1/promotions/tiers/{id}/disable|enable   (a disabled tier does not validate)
  c) POST /v1/qualifications               order 20000: both tiers qualify;
                                           order 5000: the PERCENT tier does not
  d) POST /v1/vouchers                     standalone DISCOUNT_VOUCHER, AMOUNT 300
     POST /v1/validations, /v1/redemptions the PERCENT tier and the coupon in one request:
                                           20000 - 10 % (2000) - 300 = 17700, two
                                           redemptions under a parent redemption
  e) POST /v1/redemptions/{parentId}/rollbacks       two rollbacks; the coupon's
                                           redeemed_quantity is back to 0

The last line printed is "<n> passed, <m> failed"; the exit status is 0 only if
nothing failed (2 if the environment is incomplete). Nothing but the SDK talks to
the server; where the SDK's models drop a field (the campaign response model has no
`promotion`, so the tiers created with a campaign are only visible in the raw JSON)
or fill in defaults (object="promotion_tier", ...), the raw JSON returned by the
SDK's *_with_http_info variants is checked as well.
"""

import datetime
import json
import os
import sys
import traceback
import uuid

import voucherify
from voucherify.exceptions import ApiException
from voucherify.models import (
    CampaignsCreateRequestBody,
    CampaignsCreateRequestBodyPromotion,
    CodeConfig,
    Customer,
    Discount,
    Order,
    PromotionTierCreateParams,
    PromotionTierCreateParamsAction,
    PromotionsTiersCreateRequestBody,
    PromotionsTiersCreateRequestBodyAction,
    PromotionsTiersUpdateRequestBody,
    PromotionsTiersUpdateRequestBodyAction,
    QualificationsCheckEligibilityRequestBody,
    RedemptionsRedeemRequestBody,
    RedemptionsRedeemRequestBodyRedeemablesItem,
    ValidationRulesCreateRequestBody,
    ValidationsValidateRequestBody,
    ValidationsValidateRequestBodyRedeemablesItem,
    VouchersCreateRequestBody,
)

TIMEOUT = 15.0  # seconds, per request


def env(name):
    value = os.environ.get(name, "").strip()
    if not value:
        print(f"environment variable {name} is not set", file=sys.stderr)
        print("0 passed, 1 failed")
        sys.exit(2)
    return value


BASE_URL = env("TESSERA_URL").rstrip("/")
APP_ID = env("TESSERA_APP_ID")
APP_TOKEN = env("TESSERA_APP_TOKEN")

CLIENT = voucherify.ApiClient(
    voucherify.Configuration(host=BASE_URL, api_key={"X-App-Id": APP_ID, "X-App-Token": APP_TOKEN})
)
CAMPAIGNS = voucherify.CampaignsApi(CLIENT)
PROMOTIONS = voucherify.PromotionsApi(CLIENT)
RULES = voucherify.ValidationRulesApi(CLIENT)
QUALIFICATIONS = voucherify.QualificationsApi(CLIENT)
VOUCHERS = voucherify.VouchersApi(CLIENT)
VALIDATIONS = voucherify.ValidationsApi(CLIENT)
REDEMPTIONS = voucherify.RedemptionsApi(CLIENT)

RUN = uuid.uuid4().hex[:10].upper()
CAMPAIGN_NAME = f"tessera-sdk-py-promotions-{RUN}"
RULE_NAME = f"tessera-sdk-py-big-orders-{RUN}"
RULE_THRESHOLD = 10000  # order.amount must be more than this for the PERCENT tier
RULES_DEF = {
    "1": {"name": "order.amount", "conditions": {"$more_than": [RULE_THRESHOLD]}, "rules": {}},
    "logic": "1",
}
AMOUNT_TIER = f"500 off {RUN}"
AMOUNT_OFF = 500
PERCENT_TIER = f"10 percent {RUN}"
PERCENT_OFF = 10
AMOUNT_DISCOUNT = {"type": "AMOUNT", "amount_off": AMOUNT_OFF}
PERCENT_DISCOUNT = {"type": "PERCENT", "percent_off": PERCENT_OFF}
EXTRA_TIER = f"extra {RUN}"
EXTRA_AMOUNT_OFF = 100
EXTRA_PERCENT_OFF = 20  # after the update
EXTRA_BANNER = f"Twenty percent off ({RUN})"

COUPON_PREFIX = f"PYPROMO{RUN}-"
COUPON_LENGTH = 6
COUPON_AMOUNT_OFF = 300

BIG_ORDER = 20000  # cents: qualifies for both tiers
SMALL_ORDER = 5000  # cents: the PERCENT tier's rule fails
STACKED_DISCOUNT = BIG_ORDER * PERCENT_OFF // 100 + COUPON_AMOUNT_OFF  # 2000 + 300 = 2300
CUSTOMER_SOURCE_ID = f"tessera-sdk-py-promotions-cust-{RUN}"
ROLLBACK_REASON = f"sdk test stacked rollback {RUN}"

STATE = {}  # values shared between test cases


class Failure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


def eq(actual, expected, what):
    if actual != expected:
        raise Failure(f"{what}: expected {expected!r}, got {actual!r}")


def need(*keys):
    for key in keys:
        if key not in STATE:
            raise Failure(f"prerequisite missing ({key}); an earlier test failed")
    return STATE[keys[0]]


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def raw_json(resp):
    try:
        return json.loads(resp.raw_data)
    except ValueError as exc:
        raise Failure(f"response body is not JSON: {resp.raw_data[:200]!r}") from exc


def ok_status(resp):
    check(200 <= resp.status_code <= 299, f"HTTP status {resp.status_code}")


def customer():
    return Customer(source_id=CUSTOMER_SOURCE_ID)


def check_order_totals(order, *, amount, discount, what):
    check(order is not None, f"{what}: no order returned")
    eq(order.amount, amount, f"{what}.amount")
    eq(order.total_discount_amount, discount, f"{what}.total_discount_amount")
    eq(order.total_amount, amount - discount, f"{what}.total_amount")


def check_raw_tier(raw, *, what, name, discount, campaign_id=None):
    """A promotion tier as raw JSON (the spec's PromotionTier)."""
    check(isinstance(raw, dict), f"{what}: not an object: {raw!r}")
    eq(raw.get("object"), "promotion_tier", f"{what} raw 'object'")
    check(isinstance(raw.get("id"), str) and raw["id"], f"{what} raw 'id' must be a non-empty string: {raw.get('id')!r}")
    eq(raw.get("name"), name, f"{what} raw 'name'")
    discount_matches((raw.get("action") or {}).get("discount"), discount, f"{what} raw 'action.discount'")
    check(is_int(raw.get("hierarchy")), f"{what} raw 'hierarchy' must be an integer: {raw.get('hierarchy')!r}")
    check(isinstance(raw.get("created_at"), str), f"{what} raw 'created_at' must be an ISO 8601 string")
    if campaign_id is not None:
        eq(raw.get("campaign_id"), campaign_id, f"{what} raw 'campaign_id'")
        eq((raw.get("campaign") or {}).get("id"), campaign_id, f"{what} raw 'campaign.id'")


def discount_matches(raw_discount, expected, what):
    check(isinstance(raw_discount, dict), f"{what}: discount missing: {raw_discount!r}")
    for k, v in expected.items():
        eq(raw_discount.get(k), v, f"{what}.{k}")


def get_tier(tier_id):
    resp = PROMOTIONS.get_promotion_tier_with_http_info(tier_id, _request_timeout=TIMEOUT)
    eq(resp.status_code, 200, "status")
    return resp.data, raw_json(resp)


def get_coupon(code):
    resp = VOUCHERS.get_voucher_with_http_info(code, _request_timeout=TIMEOUT)
    eq(resp.status_code, 200, "status")
    eq(raw_json(resp).get("object"), "voucher", "voucher raw 'object'")
    return resp.data


def qualify(amount):
    """POST /v1/qualifications; returns (model, raw JSON, {redeemable id: raw redeemable})."""
    resp = QUALIFICATIONS.check_eligibility_with_http_info(
        QualificationsCheckEligibilityRequestBody(customer=customer(), order=Order(amount=amount), scenario="ALL"),
        _request_timeout=TIMEOUT,
    )
    ok_status(resp)
    body = raw_json(resp)
    reds = body.get("redeemables")
    check(isinstance(reds, dict), f"qualification raw 'redeemables' must be an object: {reds!r}")
    eq(reds.get("object"), "list", "qualification raw 'redeemables.object'")
    eq(reds.get("data_ref"), "data", "qualification raw 'redeemables.data_ref'")
    check(isinstance(reds.get("data"), list), "qualification raw 'redeemables.data' must be an array")
    check(is_int(reds.get("total")), f"qualification raw 'redeemables.total' must be an integer: {reds.get('total')!r}")
    check(isinstance(reds.get("has_more"), bool), "qualification raw 'redeemables.has_more' must be a boolean")
    check(isinstance(body.get("stacking_rules"), dict), "qualification raw 'stacking_rules' must be an object")
    model_ids = [r.id for r in (resp.data.redeemables.data or [])] if resp.data.redeemables else []
    raw_ids = [r.get("id") for r in reds["data"]]
    eq(model_ids, raw_ids, "redeemable ids seen by the SDK model vs raw JSON")
    return resp.data, body, {r.get("id"): r for r in reds["data"]}


def tier_item(tier_id):
    return ValidationsValidateRequestBodyRedeemablesItem(object="promotion_tier", id=tier_id)


def voucher_item(code):
    return ValidationsValidateRequestBodyRedeemablesItem(object="voucher", id=code)


def validate(redeemables, amount):
    """POST /v1/validations; returns (model, raw JSON)."""
    resp = VALIDATIONS.validate_stacked_discounts_with_http_info(
        ValidationsValidateRequestBody(redeemables=redeemables, order=Order(amount=amount), customer=customer()),
        _request_timeout=TIMEOUT,
    )
    ok_status(resp)
    body = raw_json(resp)
    check(isinstance(body.get("valid"), bool), f"validation raw 'valid' must be a boolean: {body.get('valid')!r}")
    check(isinstance(body.get("stacking_rules"), dict), "validation raw 'stacking_rules' must be an object")
    return resp.data, body


# ------------------------------------------------- a) rule + PROMOTION campaign

def test_create_validation_rule():
    resp = RULES.create_validation_rules_with_http_info(
        ValidationRulesCreateRequestBody(name=RULE_NAME, rules=RULES_DEF), _request_timeout=TIMEOUT
    )
    ok_status(resp)
    r = resp.data
    check(isinstance(r.id, str) and r.id, f"validation rule id must be a non-empty string, got {r.id!r}")
    eq(r.name, RULE_NAME, "rule.name")
    eq(r.rules, RULES_DEF, "rule.rules")
    eq(r.type, "expression", "rule.type")
    check(isinstance(r.created_at, datetime.datetime), f"rule.created_at is not a date-time: {r.created_at!r}")
    body = raw_json(resp)
    eq(body.get("object"), "validation_rules", "rule raw 'object'")
    STATE["rule_id"] = r.id


def test_create_promotion_campaign():
    rule_id = need("rule_id")
    resp = CAMPAIGNS.create_campaign_with_http_info(
        CampaignsCreateRequestBody(
            name=CAMPAIGN_NAME,
            description="created by tests/sdk/python/test_promotions.py",
            campaign_type="PROMOTION",
            metadata={"run": RUN},
            promotion=CampaignsCreateRequestBodyPromotion(
                tiers=[
                    PromotionTierCreateParams(
                        name=AMOUNT_TIER,
                        banner="5 off",
                        action=PromotionTierCreateParamsAction(discount=Discount(type="AMOUNT", amount_off=AMOUNT_OFF)),
                    ),
                    PromotionTierCreateParams(
                        name=PERCENT_TIER,
                        banner="10 % off big orders",
                        action=PromotionTierCreateParamsAction(discount=Discount(type="PERCENT", percent_off=PERCENT_OFF)),
                        validation_rules=[rule_id],
                    ),
                ]
            ),
        ),
        _request_timeout=TIMEOUT,
    )
    ok_status(resp)
    c = resp.data
    check(isinstance(c.id, str) and c.id, f"campaign id must be a non-empty string, got {c.id!r}")
    STATE["campaign_id"] = c.id
    eq(c.name, CAMPAIGN_NAME, "campaign.name")
    eq(c.campaign_type, "PROMOTION", "campaign.campaign_type")
    eq(c.metadata, {"run": RUN}, "campaign.metadata")
    check(isinstance(c.created_at, datetime.datetime), f"campaign.created_at is not a date-time: {c.created_at!r}")
    body = raw_json(resp)
    eq(body.get("object"), "campaign", "campaign raw 'object'")
    # The SDK's CampaignsCreateResponseBody has no `promotion` property (the SDK drops it),
    # so the created tiers are read from the raw JSON, as the spec's CampaignsCreateResponseBody
    # (campaigns.json) carries them under promotion.tiers.
    promo = body.get("promotion")
    check(isinstance(promo, dict), f"campaign raw 'promotion' must be an object: {promo!r}")
    tiers = promo.get("tiers")
    check(isinstance(tiers, list) and len(tiers) == 2,
          f"campaign raw 'promotion.tiers' must hold 2 tiers, got {tiers!r}")
    check_raw_tier(tiers[0], what="promotion.tiers[0]", name=AMOUNT_TIER, discount=AMOUNT_DISCOUNT)
    check_raw_tier(tiers[1], what="promotion.tiers[1]", name=PERCENT_TIER, discount=PERCENT_DISCOUNT)
    check(tiers[0]["hierarchy"] < tiers[1]["hierarchy"],
          f"tiers are ranked in the order given: hierarchies {tiers[0]['hierarchy']} and {tiers[1]['hierarchy']}")
    check(tiers[0]["id"] != tiers[1]["id"], "tier ids must differ")
    STATE["amount_tier_id"] = tiers[0]["id"]
    STATE["percent_tier_id"] = tiers[1]["id"]


# --------------------------------------------------------------- b) tiers

def test_list_campaign_tiers():
    campaign_id = need("campaign_id", "amount_tier_id", "percent_tier_id")
    resp = PROMOTIONS.list_promotion_tiers_from_campaign_with_http_info(campaign_id, _request_timeout=TIMEOUT)
    eq(resp.status_code, 200, "status")
    body = raw_json(resp)
    eq(body.get("object"), "list", "tiers list raw 'object'")
    eq(body.get("data_ref"), "tiers", "tiers list raw 'data_ref'")
    check(isinstance(body.get("tiers"), list), "tiers list raw 'tiers' must be an array")
    eq(body.get("total"), 2, "tiers list raw 'total'")
    check(isinstance(body.get("has_more"), bool), "tiers list raw 'has_more' must be a boolean")
    lst = resp.data
    tiers = lst.tiers or []
    eq([t.id for t in tiers], [STATE["amount_tier_id"], STATE["percent_tier_id"]], "tier ids (ordered by hierarchy)")
    eq([t.name for t in tiers], [AMOUNT_TIER, PERCENT_TIER], "tier names")
    for i, t in enumerate(tiers):
        eq(t.object, "promotion_tier", f"tiers[{i}].object")
        eq(t.campaign_id, campaign_id, f"tiers[{i}].campaign_id")
        eq(t.active, True, f"tiers[{i}].active")
    eq(tiers[0].action.discount.amount_off if tiers[0].action and tiers[0].action.discount else None,
       AMOUNT_OFF, "tiers[0].action.discount.amount_off")
    eq(tiers[1].action.discount.percent_off if tiers[1].action and tiers[1].action.discount else None,
       PERCENT_OFF, "tiers[1].action.discount.percent_off")
    for i, raw in enumerate(body["tiers"]):
        check_raw_tier(raw, what=f"tiers[{i}]", name=[AMOUNT_TIER, PERCENT_TIER][i],
                       discount=[AMOUNT_DISCOUNT, PERCENT_DISCOUNT][i], campaign_id=campaign_id)


def test_get_tier_with_rule():
    tier_id = need("percent_tier_id", "rule_id")
    t, raw = get_tier(tier_id)
    eq(t.id, tier_id, "tier.id")
    eq(t.name, PERCENT_TIER, "tier.name")
    eq(t.banner, "10 % off big orders", "tier.banner")
    eq(t.campaign_id, STATE["campaign_id"], "tier.campaign_id")
    eq(t.active, True, "tier.active")
    check(t.action is not None and t.action.discount is not None, "tier.action.discount missing")
    eq(t.action.discount.type, "PERCENT", "tier.action.discount.type")
    eq(t.action.discount.percent_off, PERCENT_OFF, "tier.action.discount.percent_off")
    check(isinstance(t.created_at, datetime.datetime), f"tier.created_at is not a date-time: {t.created_at!r}")
    check_raw_tier(raw, what="tier", name=PERCENT_TIER, discount=PERCENT_DISCOUNT, campaign_id=STATE["campaign_id"])
    vra = raw.get("validation_rule_assignments")
    check(isinstance(vra, dict), f"tier raw 'validation_rule_assignments' must be an object: {vra!r}")
    eq(vra.get("object"), "list", "validation_rule_assignments raw 'object'")
    eq(vra.get("data_ref"), "data", "validation_rule_assignments raw 'data_ref'")
    eq(vra.get("total"), 1, "validation_rule_assignments raw 'total'")
    a = (vra.get("data") or [{}])[0]
    eq(a.get("rule_id"), STATE["rule_id"], "validation_rule_assignments.data[0].rule_id")
    eq(a.get("related_object_id"), tier_id, "validation_rule_assignments.data[0].related_object_id")
    eq(a.get("related_object_type"), "promotion_tier", "validation_rule_assignments.data[0].related_object_type")
    eq(a.get("object"), "validation_rules_assignment", "validation_rule_assignments.data[0].object")
    check(t.validation_rule_assignments is not None and t.validation_rule_assignments.data,
          "tier.validation_rule_assignments missing in the SDK model")
    eq(t.validation_rule_assignments.data[0].rule_id, STATE["rule_id"], "SDK tier.validation_rule_assignments.data[0].rule_id")


def test_add_tier():
    campaign_id = need("campaign_id", "percent_tier_id")
    resp = PROMOTIONS.add_promotion_tier_to_campaign_with_http_info(
        campaign_id,
        PromotionsTiersCreateRequestBody(
            name=EXTRA_TIER,
            banner="100 off",
            metadata={"run": RUN},
            action=PromotionsTiersCreateRequestBodyAction(discount=Discount(type="AMOUNT", amount_off=EXTRA_AMOUNT_OFF)),
        ),
        _request_timeout=TIMEOUT,
    )
    ok_status(resp)
    t = resp.data
    check(isinstance(t.id, str) and t.id, f"tier id must be a non-empty string, got {t.id!r}")
    check(t.id not in (STATE["amount_tier_id"], STATE["percent_tier_id"]), "added tier reuses an id")
    eq(t.name, EXTRA_TIER, "tier.name")
    eq(t.banner, "100 off", "tier.banner")
    eq(t.metadata, {"run": RUN}, "tier.metadata")
    eq(t.campaign_id, campaign_id, "tier.campaign_id")
    eq(t.active, True, "tier.active")
    eq(t.action.discount.amount_off if t.action and t.action.discount else None, EXTRA_AMOUNT_OFF,
       "tier.action.discount.amount_off")
    raw = raw_json(resp)
    check_raw_tier(raw, what="added tier", name=EXTRA_TIER, discount={"type": "AMOUNT", "amount_off": EXTRA_AMOUNT_OFF},
                   campaign_id=campaign_id)
    STATE["extra_tier_id"] = t.id
    lst = PROMOTIONS.list_promotion_tiers_from_campaign(campaign_id, _request_timeout=TIMEOUT)
    eq(lst.total, 3, "tiers list total after adding a tier")
    eq([x.id for x in lst.tiers or []][-1], t.id, "the added tier is ranked last")


def test_update_tier():
    tier_id = need("extra_tier_id")
    resp = PROMOTIONS.update_promotion_tier_with_http_info(
        tier_id,
        PromotionsTiersUpdateRequestBody(
            banner=EXTRA_BANNER,
            action=PromotionsTiersUpdateRequestBodyAction(discount=Discount(type="PERCENT", percent_off=EXTRA_PERCENT_OFF)),
        ),
        _request_timeout=TIMEOUT,
    )
    ok_status(resp)
    t = resp.data
    eq(t.id, tier_id, "tier.id")
    eq(t.name, EXTRA_TIER, "tier.name (not part of the update)")
    eq(t.banner, EXTRA_BANNER, "tier.banner")
    eq(t.action.discount.type if t.action and t.action.discount else None, "PERCENT", "tier.action.discount.type")
    eq(t.action.discount.percent_off if t.action and t.action.discount else None, EXTRA_PERCENT_OFF,
       "tier.action.discount.percent_off")
    eq(t.metadata, {"run": RUN}, "tier.metadata (not part of the update)")
    eq(raw_json(resp).get("object"), "promotion_tier", "updated tier raw 'object'")
    got, _ = get_tier(tier_id)
    eq(got.banner, EXTRA_BANNER, "GET tier.banner after the update")
    eq(got.action.discount.percent_off if got.action and got.action.discount else None, EXTRA_PERCENT_OFF,
       "GET tier.action.discount.percent_off after the update")


def test_disable_tier():
    tier_id = need("extra_tier_id")
    resp = PROMOTIONS.disable_promotion_tier_with_http_info(tier_id, _request_timeout=TIMEOUT)
    ok_status(resp)
    eq(resp.data.id, tier_id, "tier.id")
    eq(resp.data.active, False, "tier.active after disable")
    eq(raw_json(resp).get("active"), False, "tier raw 'active' after disable")
    got, _ = get_tier(tier_id)
    eq(got.active, False, "GET tier.active after disable")
    STATE["extra_disabled"] = True


def test_disabled_tier_inapplicable():
    tier_id = need("extra_tier_id", "extra_disabled")
    v, body = validate([tier_item(tier_id)], BIG_ORDER)
    eq(v.valid, False, "valid (the tier is disabled)")
    reds = v.redeemables or []
    check(len(reds) == 1, f"expected exactly 1 redeemable, got {len(reds)}")
    eq(reds[0].id, tier_id, "redeemables[0].id")
    eq(reds[0].object, "promotion_tier", "redeemables[0].object")
    eq(reds[0].status, "INAPPLICABLE", "redeemables[0].status")


def test_enable_tier():
    tier_id = need("extra_tier_id", "extra_disabled")
    resp = PROMOTIONS.enable_promotion_tier_with_http_info(tier_id, _request_timeout=TIMEOUT)
    ok_status(resp)
    eq(resp.data.id, tier_id, "tier.id")
    eq(resp.data.active, True, "tier.active after enable")
    eq(raw_json(resp).get("active"), True, "tier raw 'active' after enable")
    got, _ = get_tier(tier_id)
    eq(got.active, True, "GET tier.active after enable")


# -------------------------------------------------------- c) qualifications

def check_qualified_tier(raw, *, tier_id, name, discount, amount, discount_amount, what):
    eq(raw.get("id"), tier_id, f"{what} raw 'id'")
    eq(raw.get("object"), "promotion_tier", f"{what} raw 'object'")
    eq(raw.get("campaign_id"), STATE["campaign_id"], f"{what} raw 'campaign_id'")
    eq(raw.get("campaign_name"), CAMPAIGN_NAME, f"{what} raw 'campaign_name'")
    eq(raw.get("name"), name, f"{what} raw 'name'")
    discount_matches(((raw.get("result") or {}).get("discount")), discount, f"{what} raw 'result.discount'")
    order = raw.get("order")
    check(isinstance(order, dict), f"{what} raw 'order' must be an object: {order!r}")
    eq(order.get("amount"), amount, f"{what} raw 'order.amount'")
    eq(order.get("total_discount_amount"), discount_amount, f"{what} raw 'order.total_discount_amount'")
    eq(order.get("total_amount"), amount - discount_amount, f"{what} raw 'order.total_amount'")


def test_qualify_big_order():
    amount_id = need("amount_tier_id", "percent_tier_id")
    percent_id = STATE["percent_tier_id"]
    q, _, by_id = qualify(BIG_ORDER)
    check(amount_id in by_id, f"the AMOUNT tier {amount_id} does not qualify for {BIG_ORDER}; got {sorted(by_id)}")
    check(percent_id in by_id, f"the PERCENT tier {percent_id} does not qualify for {BIG_ORDER}; got {sorted(by_id)}")
    check_qualified_tier(by_id[amount_id], tier_id=amount_id, name=AMOUNT_TIER, discount=AMOUNT_DISCOUNT,
                         amount=BIG_ORDER, discount_amount=AMOUNT_OFF, what="AMOUNT tier")
    check_qualified_tier(by_id[percent_id], tier_id=percent_id, name=PERCENT_TIER, discount=PERCENT_DISCOUNT,
                         amount=BIG_ORDER, discount_amount=BIG_ORDER * PERCENT_OFF // 100, what="PERCENT tier")
    model = {r.id: r for r in q.redeemables.data}
    eq(model[percent_id].object, "promotion_tier", "SDK redeemable.object")
    eq(model[percent_id].result.discount.percent_off if model[percent_id].result and model[percent_id].result.discount else None,
       PERCENT_OFF, "SDK redeemable.result.discount.percent_off")


def test_qualify_small_order():
    amount_id = need("amount_tier_id", "percent_tier_id")
    percent_id = STATE["percent_tier_id"]
    _, _, by_id = qualify(SMALL_ORDER)
    check(amount_id in by_id, f"the AMOUNT tier {amount_id} does not qualify for {SMALL_ORDER}; got {sorted(by_id)}")
    check(percent_id not in by_id,
          f"the PERCENT tier {percent_id} qualifies for {SMALL_ORDER} though its rule wants more than {RULE_THRESHOLD}")
    check_qualified_tier(by_id[amount_id], tier_id=amount_id, name=AMOUNT_TIER, discount=AMOUNT_DISCOUNT,
                         amount=SMALL_ORDER, discount_amount=AMOUNT_OFF, what="AMOUNT tier")


# ---------------------------------------------- d) coupon + stacked redemption

def test_create_standalone_coupon():
    resp = VOUCHERS.generate_random_code_with_http_info(
        VouchersCreateRequestBody(
            type="DISCOUNT_VOUCHER",
            discount=Discount(type="AMOUNT", amount_off=COUPON_AMOUNT_OFF),
            code_config=CodeConfig(prefix=COUPON_PREFIX, length=COUPON_LENGTH),
            metadata={"run": RUN},
        ),
        _request_timeout=TIMEOUT,
    )
    ok_status(resp)
    v = resp.data
    check(isinstance(v.code, str) and v.code.startswith(COUPON_PREFIX), f"coupon code {v.code!r} lacks prefix {COUPON_PREFIX!r}")
    eq(len(v.code), len(COUPON_PREFIX) + COUPON_LENGTH, f"length of code {v.code!r}")
    eq(v.type, "DISCOUNT_VOUCHER", "coupon.type")
    eq(v.discount.type if v.discount else None, "AMOUNT", "coupon.discount.type")
    eq(v.discount.amount_off if v.discount else None, COUPON_AMOUNT_OFF, "coupon.discount.amount_off")
    eq(v.campaign_id, None, "coupon.campaign_id (standalone)")
    eq(v.redemption.redeemed_quantity if v.redemption else None, 0, "coupon.redemption.redeemed_quantity")
    eq(raw_json(resp).get("object"), "voucher", "coupon raw 'object'")
    STATE["coupon_code"] = v.code
    STATE["coupon_id"] = v.id


def test_validate_tier_with_coupon():
    percent_id = need("percent_tier_id", "coupon_code")
    code = STATE["coupon_code"]
    v, body = validate([tier_item(percent_id), voucher_item(code)], BIG_ORDER)
    eq(v.valid, True, "valid")
    reds = v.redeemables or []
    eq([(r.object, r.id, r.status) for r in reds],
       [("promotion_tier", percent_id, "APPLICABLE"), ("voucher", code, "APPLICABLE")], "redeemables")
    eq(reds[0].result.discount.percent_off if reds[0].result and reds[0].result.discount else None, PERCENT_OFF,
       "redeemables[0].result.discount.percent_off")
    eq(reds[1].result.discount.amount_off if reds[1].result and reds[1].result.discount else None, COUPON_AMOUNT_OFF,
       "redeemables[1].result.discount.amount_off")
    check_order_totals(v.order, amount=BIG_ORDER, discount=STACKED_DISCOUNT, what="order")
    raw_order = body.get("order") or {}
    eq(raw_order.get("total_applied_discount_amount"), STACKED_DISCOUNT, "order raw 'total_applied_discount_amount'")
    # Each redeemable's order carries the running totals (total_discount_amount) and what
    # this redeemable itself applied (applied_discount_amount, total_applied_discount_amount):
    # see the "True - 5 Redeemables" example of POST /v1/validations in validations.json.
    raw_reds = body.get("redeemables") or []
    eq([(r.get("order") or {}).get("total_discount_amount") for r in raw_reds],
       [BIG_ORDER * PERCENT_OFF // 100, STACKED_DISCOUNT], "redeemables[].order.total_discount_amount (raw)")
    eq([[(r.get("order") or {}).get(k) for k in ("applied_discount_amount", "total_applied_discount_amount")]
        for r in raw_reds],
       [[BIG_ORDER * PERCENT_OFF // 100] * 2, [COUPON_AMOUNT_OFF] * 2],
       "redeemables[].order [applied_discount_amount, total_applied_discount_amount] (raw)")
    eq(raw_reds[0].get("campaign_id") if raw_reds else None, STATE["campaign_id"], "redeemables[0] raw 'campaign_id'")


def test_redeem_tier_with_coupon():
    percent_id = need("percent_tier_id", "coupon_code")
    code = STATE["coupon_code"]
    resp = REDEMPTIONS.redeem_stacked_discounts_with_http_info(
        RedemptionsRedeemRequestBody(
            redeemables=[
                RedemptionsRedeemRequestBodyRedeemablesItem(object="promotion_tier", id=percent_id),
                RedemptionsRedeemRequestBodyRedeemablesItem(object="voucher", id=code),
            ],
            order=Order(amount=BIG_ORDER),
            customer=customer(),
            metadata={"run": RUN},
        ),
        _request_timeout=TIMEOUT,
    )
    ok_status(resp)
    out = resp.data
    parent = out.parent_redemption
    check(parent is not None, "parent_redemption missing")
    check(isinstance(parent.id, str) and parent.id, f"parent_redemption.id must be a non-empty string, got {parent.id!r}")
    eq(parent.object, "redemption", "parent_redemption.object")
    eq(parent.result, "SUCCESS", "parent_redemption.result")
    eq(parent.status, "SUCCEEDED", "parent_redemption.status")
    eq(parent.related_object_type, "redemption", "parent_redemption.related_object_type")
    reds = out.redemptions or []
    check(len(reds) == 2, f"expected 2 redemptions, got {len(reds)}")
    tier_r, coupon_r = reds
    for i, r in enumerate(reds):
        check(isinstance(r.id, str) and r.id and r.id != parent.id, f"redemptions[{i}].id must be a new id, got {r.id!r}")
        eq(r.redemption, parent.id, f"redemptions[{i}].redemption (the parent)")
        eq(r.result, "SUCCESS", f"redemptions[{i}].result")
        eq(r.status, "SUCCEEDED", f"redemptions[{i}].status")
        check(isinstance(r.var_date, datetime.datetime), f"redemptions[{i}].date is not a date-time: {r.var_date!r}")
        eq(r.customer.source_id if r.customer else None, CUSTOMER_SOURCE_ID, f"redemptions[{i}].customer.source_id")
    eq(tier_r.related_object_type, "promotion_tier", "redemptions[0].related_object_type")
    eq(tier_r.related_object_id, percent_id, "redemptions[0].related_object_id")
    eq(tier_r.promotion_tier.id if tier_r.promotion_tier else None, percent_id, "redemptions[0].promotion_tier.id")
    eq(coupon_r.related_object_type, "voucher", "redemptions[1].related_object_type")
    eq(coupon_r.related_object_id, STATE["coupon_id"], "redemptions[1].related_object_id")
    eq(coupon_r.voucher.code if coupon_r.voucher else None, code, "redemptions[1].voucher.code")
    check_order_totals(out.order, amount=BIG_ORDER, discount=STACKED_DISCOUNT, what="order")
    raw = raw_json(resp)
    raw_parent = raw.get("parent_redemption") or {}
    eq(raw_parent.get("object"), "redemption", "parent_redemption raw 'object'")
    check(isinstance(raw_parent.get("date"), str), "parent_redemption raw 'date' must be an ISO 8601 string")
    eq([r.get("redemption") for r in raw.get("redemptions") or []], [parent.id, parent.id], "redemptions raw 'redemption'")
    check_order_totals(parent.order, amount=BIG_ORDER, discount=STACKED_DISCOUNT, what="parent_redemption.order")
    STATE["parent_redemption_id"] = parent.id
    STATE["child_redemption_ids"] = [tier_r.id, coupon_r.id]


def test_coupon_redeemed_quantity_after_redeem():
    code = need("coupon_code", "parent_redemption_id")
    v = get_coupon(code)
    eq(v.redemption.redeemed_quantity if v.redemption else None, 1, "coupon.redemption.redeemed_quantity")


def test_tier_summary_after_redeem():
    tier_id = need("percent_tier_id", "parent_redemption_id")
    t, raw = get_tier(tier_id)
    summary = raw.get("summary")
    check(isinstance(summary, dict), f"tier raw 'summary' must be an object: {summary!r}")
    eq((summary.get("redemptions") or {}).get("total_redeemed"), 1, "tier raw 'summary.redemptions.total_redeemed'")
    eq(t.summary.redemptions.total_redeemed if t.summary and t.summary.redemptions else None, 1,
       "SDK tier.summary.redemptions.total_redeemed")


def test_get_parent_redemption():
    parent_id = need("parent_redemption_id")
    resp = REDEMPTIONS.get_redemption_with_http_info(parent_id, _request_timeout=TIMEOUT)
    eq(resp.status_code, 200, "status")
    r = resp.data
    eq(r.id, parent_id, "redemption.id")
    eq(r.object, "redemption", "redemption.object")
    eq(r.related_object_type, "redemption", "redemption.related_object_type")
    eq(r.status, "SUCCEEDED", "redemption.status")
    eq(r.result, "SUCCESS", "redemption.result")
    check_order_totals(r.order, amount=BIG_ORDER, discount=STACKED_DISCOUNT, what="redemption.order")
    eq(raw_json(resp).get("object"), "redemption", "redemption raw 'object'")


# ---------------------------------------------------- e) stacked rollback

def test_rollback_stacked_redemption():
    parent_id = need("parent_redemption_id", "child_redemption_ids")
    resp = REDEMPTIONS.rollback_stacked_redemptions_with_http_info(parent_id, reason=ROLLBACK_REASON, _request_timeout=TIMEOUT)
    ok_status(resp)
    out = resp.data
    rbs = out.rollbacks or []
    check(len(rbs) == 2, f"expected 2 rollbacks, got {len(rbs)}")
    eq(sorted(rb.redemption for rb in rbs), sorted(STATE["child_redemption_ids"]), "rollbacks[].redemption")
    for i, rb in enumerate(rbs):
        check(isinstance(rb.id, str) and rb.id, f"rollbacks[{i}].id must be a non-empty string, got {rb.id!r}")
        eq(rb.object, "redemption_rollback", f"rollbacks[{i}].object")
        eq(rb.result, "SUCCESS", f"rollbacks[{i}].result")
        eq(rb.status, "SUCCEEDED", f"rollbacks[{i}].status")
        eq(rb.reason, ROLLBACK_REASON, f"rollbacks[{i}].reason")
    eq(sorted(rb.related_object_type for rb in rbs), ["promotion_tier", "voucher"], "rollbacks[].related_object_type")
    check(out.parent_rollback is not None, "parent_rollback missing")
    eq(out.parent_rollback.redemption, parent_id, "parent_rollback.redemption")
    eq(out.parent_rollback.result, "SUCCESS", "parent_rollback.result")
    raw = raw_json(resp)
    eq([r.get("object") for r in raw.get("rollbacks") or []], ["redemption_rollback"] * 2, "rollbacks raw 'object'")
    eq((raw.get("parent_rollback") or {}).get("object"), "redemption_rollback", "parent_rollback raw 'object'")
    STATE["rolled_back"] = True


def test_coupon_redeemed_quantity_after_rollback():
    code = need("coupon_code", "rolled_back")
    v = get_coupon(code)
    eq(v.redemption.redeemed_quantity if v.redemption else None, 0, "coupon.redemption.redeemed_quantity")


def test_redemptions_marked_rolled_back():
    parent_id = need("parent_redemption_id", "rolled_back")
    for rid in [parent_id] + STATE["child_redemption_ids"]:
        r = REDEMPTIONS.get_redemption(rid, _request_timeout=TIMEOUT)
        eq(r.status, "ROLLED_BACK", f"redemption {rid} status after the rollback")


def test_stacked_rollback_twice_rejected():
    parent_id = need("parent_redemption_id", "rolled_back")
    try:
        REDEMPTIONS.rollback_stacked_redemptions(parent_id, _request_timeout=TIMEOUT)
    except ApiException as exc:
        eq(exc.status, 400, "HTTP status of a second stacked rollback")
        return
    raise Failure("a second rollback of the same parent redemption succeeded (expected 400)")


TESTS = [
    test_create_validation_rule,
    test_create_promotion_campaign,
    test_list_campaign_tiers,
    test_get_tier_with_rule,
    test_add_tier,
    test_update_tier,
    test_disable_tier,
    test_disabled_tier_inapplicable,
    test_enable_tier,
    test_qualify_big_order,
    test_qualify_small_order,
    test_create_standalone_coupon,
    test_validate_tier_with_coupon,
    test_redeem_tier_with_coupon,
    test_coupon_redeemed_quantity_after_redeem,
    test_tier_summary_after_redeem,
    test_get_parent_redemption,
    test_rollback_stacked_redemption,
    test_coupon_redeemed_quantity_after_rollback,
    test_redemptions_marked_rolled_back,
    test_stacked_rollback_twice_rejected,
]


def describe(exc):
    if isinstance(exc, Failure):
        return str(exc)
    if isinstance(exc, ApiException):
        return f"{type(exc).__name__}: HTTP {exc.status} {exc.reason}; body: {exc.body!r}"
    # pydantic ValidationError etc.: the server's JSON did not fit the SDK model
    return f"{type(exc).__name__}: {exc}"


def cleanup():
    """Best effort; a server without DELETE support is not failed for it."""
    if "coupon_code" in STATE:
        try:
            VOUCHERS.delete_voucher(STATE["coupon_code"], force=True, _request_timeout=TIMEOUT)
        except Exception:  # noqa: BLE001
            pass
    if "campaign_id" in STATE:
        try:
            CAMPAIGNS.delete_campaign(STATE["campaign_id"], force=True, _request_timeout=TIMEOUT)
        except Exception:  # noqa: BLE001
            pass
    if "rule_id" in STATE:
        try:
            RULES.delete_validation_rules(STATE["rule_id"], _request_timeout=TIMEOUT)
        except Exception:  # noqa: BLE001
            pass


def main():
    print(f"Tessera promotions SDK test against {BASE_URL} (voucherify SDK, run {RUN})")
    passed = failed = 0
    try:
        for test in TESTS:
            name = test.__name__[len("test_"):]
            try:
                test()
            except Exception as exc:  # noqa: BLE001 - every failure is reported, never fatal
                failed += 1
                print(f"FAIL {name}: {describe(exc)}")
                if os.environ.get("TESSERA_TEST_VERBOSE"):
                    traceback.print_exc()
            else:
                passed += 1
                print(f"PASS {name}")
    finally:
        cleanup()
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
