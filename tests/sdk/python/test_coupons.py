#!/usr/bin/env python3
"""Coupons, validations, redemptions and gift cards: a compatibility check for
Tessera, driven by the official Voucherify Python SDK (voucherify==6.1.1, see
requirements.txt).

Usage:
    TESSERA_URL=http://127.0.0.1:8080 TESSERA_APP_ID=... TESSERA_APP_TOKEN=... \
        python tests/sdk/python/test_coupons.py

Flows covered (every check is a named test case, run in order; a case whose
prerequisite failed fails with "prerequisite missing"):
  a) POST /v1/campaigns            DISCOUNT_COUPONS, 3 generated codes, PERCENT 10 %,
                                   code_config prefix/length/charset, quantity 1 per code
     GET  /v1/vouchers?campaign_id  the generated codes;  GET /v1/campaigns/{id}
     POST /v1/campaigns/{id}/vouchers          one more generated code
  b) POST /v1/campaigns/{id}/vouchers/{code}   a code of our own
  c) GET  /v1/vouchers/{code}                  (and a 404 for an unknown code)
  d) POST /v1/validations                      applicable; unknown code; quantity exceeded
  e) POST /v1/redemptions                      redeem; a second redemption is refused
  f) GET  /v1/redemptions                      the redemption is listed
  g) POST /v1/redemptions/{id}/rollback        rollback; voucher usable again
  h) POST /v1/vouchers (GIFT_VOUCHER), POST /v1/vouchers/{code}/balance,
     POST /v1/validations + /v1/redemptions with gift.credits, balance afterwards,
     rollback restores the balance

The last line printed is "<n> passed, <m> failed"; the exit status is 0 only if
nothing failed (2 if the environment is incomplete). Nothing but the SDK talks to
the server; where the SDK would paper over a missing field (its from_dict fills in
defaults such as object="voucher"), the raw JSON returned by the SDK's
*_with_http_info variants is checked as well.
"""

import datetime
import json
import os
import sys
import time
import traceback
import uuid

import voucherify
from voucherify.exceptions import ApiException, NotFoundException
from voucherify.models import (
    CampaignsCreateRequestBody,
    CampaignsCreateRequestBodyVoucher,
    CampaignsCreateRequestBodyVoucherRedemption,
    CampaignsVouchersCreateInBulkRequestBody,
    CampaignsVouchersCreateRequestBody,
    CodeConfig,
    Customer,
    Discount,
    Gift,
    Order,
    ParameterOrderListRedemptions,
    RedemptionsRedeemRequestBody,
    RedemptionsRedeemRequestBodyRedeemablesItem,
    RedemptionsRedeemRequestBodyRedeemablesItemGift,
    ValidationsValidateRequestBody,
    ValidationsValidateRequestBodyRedeemablesItem,
    ValidationsValidateRequestBodyRedeemablesItemGift,
    VouchersBalanceUpdateRequestBody,
    VouchersCreateRequestBody,
)

TIMEOUT = 15.0  # seconds, per request
GENERATION_WAIT = 10.0  # seconds to wait for asynchronously generated codes


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
VOUCHERS = voucherify.VouchersApi(CLIENT)
VALIDATIONS = voucherify.ValidationsApi(CLIENT)
REDEMPTIONS = voucherify.RedemptionsApi(CLIENT)

RUN = uuid.uuid4().hex[:10].upper()
CAMPAIGN_NAME = f"tessera-sdk-py-coupons-{RUN}"
PREFIX = f"PY{RUN}-"
CODE_LENGTH = 8
CHARSET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
GENERATED_COUNT = 3
CODE = f"PYCODE-{RUN}"  # the code added explicitly (flow b)
UNKNOWN_CODE = f"PYNOPE-{RUN}"
PERCENT_OFF = 10
ORDER_AMOUNT = 20000  # cents
DISCOUNT = ORDER_AMOUNT * PERCENT_OFF // 100  # 2000
CUSTOMER_SOURCE_ID = f"tessera-sdk-py-coupons-cust-{RUN}"
ROLLBACK_REASON = f"sdk test rollback {RUN}"

GIFT_PREFIX = f"PYGIFT{RUN}-"
GIFT_CODE_LENGTH = 6
GIFT_AMOUNT = 5000
GIFT_TOP_UP = 2500
GIFT_ORDER_AMOUNT = 10000
GIFT_CREDITS = 3000

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


def error_body(exc):
    try:
        body = json.loads(exc.body)
    except (TypeError, ValueError):
        raise Failure(f"HTTP {exc.status} error body is not JSON: {exc.body!r}")
    check(isinstance(body, dict), f"error body is not a JSON object: {body!r}")
    check(is_int(body.get("code")), f"error 'code' must be an integer: {body!r}")
    check(isinstance(body.get("key"), str), f"error 'key' must be a string: {body!r}")
    check(isinstance(body.get("message"), str), f"error 'message' must be a string: {body!r}")
    return body


def order_of(amount):
    return Order(amount=amount)


def customer():
    return Customer(source_id=CUSTOMER_SOURCE_ID)


def validate(redeemables, amount):
    """POST /v1/validations; returns (model, raw JSON)."""
    resp = VALIDATIONS.validate_stacked_discounts_with_http_info(
        ValidationsValidateRequestBody(redeemables=redeemables, order=order_of(amount), customer=customer()),
        _request_timeout=TIMEOUT,
    )
    ok_status(resp)
    body = raw_json(resp)
    check(isinstance(body.get("valid"), bool), f"validation raw 'valid' must be a boolean: {body.get('valid')!r}")
    check(isinstance(body.get("redeemables"), list), "validation raw 'redeemables' must be an array")
    check(isinstance(body.get("stacking_rules"), dict), "validation raw 'stacking_rules' must be an object")
    return resp.data, body


def voucher_item(code):
    return ValidationsValidateRequestBodyRedeemablesItem(object="voucher", id=code)


def redeem_item(code, credits=None):
    gift = RedemptionsRedeemRequestBodyRedeemablesItemGift(credits=credits) if credits is not None else None
    return RedemptionsRedeemRequestBodyRedeemablesItem(object="voucher", id=code, gift=gift)


def only_redeemable(v, code, status):
    check(v.redeemables is not None and len(v.redeemables) == 1,
          f"expected exactly 1 redeemable, got {None if v.redeemables is None else len(v.redeemables)}")
    r = v.redeemables[0]
    eq(r.id, code, "redeemables[0].id")
    eq(r.object, "voucher", "redeemables[0].object")
    eq(r.status, status, "redeemables[0].status")
    return r


def check_order_totals(order, *, amount, discount, what):
    check(order is not None, f"{what}: no order returned")
    eq(order.amount, amount, f"{what}.amount")
    eq(order.total_discount_amount, discount, f"{what}.total_discount_amount")
    eq(order.total_amount, amount - discount, f"{what}.total_amount")


def check_coupon(v, *, code, what):
    eq(v.code, code, f"{what}.code")
    eq(v.campaign, CAMPAIGN_NAME, f"{what}.campaign")
    eq(v.campaign_id, STATE["campaign_id"], f"{what}.campaign_id")
    eq(v.type, "DISCOUNT_VOUCHER", f"{what}.type")
    check(v.discount is not None, f"{what}.discount missing")
    eq(v.discount.type, "PERCENT", f"{what}.discount.type")
    eq(v.discount.percent_off, PERCENT_OFF, f"{what}.discount.percent_off")
    check(v.redemption is not None, f"{what}.redemption missing")
    eq(v.redemption.quantity, 1, f"{what}.redemption.quantity")
    eq(v.active, True, f"{what}.active")
    check(isinstance(v.id, str) and v.id, f"{what}.id must be a non-empty string, got {v.id!r}")
    check(isinstance(v.created_at, datetime.datetime), f"{what}.created_at is not a date-time: {v.created_at!r}")


def check_generated_code(code, prefix, length, charset, what):
    check(isinstance(code, str) and code.startswith(prefix), f"{what}: code {code!r} lacks prefix {prefix!r}")
    eq(len(code), len(prefix) + length, f"{what}: length of code {code!r}")
    rest = code[len(prefix):]
    if charset is not None:
        check(all(ch in charset for ch in rest), f"{what}: code {code!r} uses characters outside {charset!r}")


def get_voucher(code):
    resp = VOUCHERS.get_voucher_with_http_info(code, _request_timeout=TIMEOUT)
    eq(resp.status_code, 200, "status")
    body = raw_json(resp)
    eq(body.get("object"), "voucher", "voucher raw 'object'")
    return resp.data


# ------------------------------------------------------- a) campaign + codes

def test_create_discount_campaign():
    resp = CAMPAIGNS.create_campaign_with_http_info(
        CampaignsCreateRequestBody(
            name=CAMPAIGN_NAME,
            description="created by tests/sdk/python/test_coupons.py",
            campaign_type="DISCOUNT_COUPONS",
            type="AUTO_UPDATE",
            vouchers_count=GENERATED_COUNT,
            metadata={"run": RUN},
            voucher=CampaignsCreateRequestBodyVoucher(
                type="DISCOUNT_VOUCHER",
                discount=Discount(type="PERCENT", percent_off=PERCENT_OFF, effect="APPLY_TO_ORDER"),
                redemption=CampaignsCreateRequestBodyVoucherRedemption(quantity=1),
                code_config=CodeConfig(prefix=PREFIX, length=CODE_LENGTH, charset=CHARSET),
            ),
        ),
        _request_timeout=TIMEOUT,
    )
    ok_status(resp)
    c = resp.data
    check(isinstance(c.id, str) and c.id, f"campaign id must be a non-empty string, got {c.id!r}")
    STATE["campaign_id"] = c.id
    eq(c.name, CAMPAIGN_NAME, "campaign.name")
    eq(c.campaign_type, "DISCOUNT_COUPONS", "campaign.campaign_type")
    eq(c.type, "AUTO_UPDATE", "campaign.type")
    eq(c.metadata, {"run": RUN}, "campaign.metadata")
    check(isinstance(c.created_at, datetime.datetime), f"campaign.created_at is not a date-time: {c.created_at!r}")
    check(c.voucher is not None, "campaign.voucher missing")
    eq(c.voucher.type, "DISCOUNT_VOUCHER", "campaign.voucher.type")
    eq(c.voucher.discount.type, "PERCENT", "campaign.voucher.discount.type")
    eq(c.voucher.discount.percent_off, PERCENT_OFF, "campaign.voucher.discount.percent_off")
    eq(c.voucher.code_config.prefix, PREFIX, "campaign.voucher.code_config.prefix")
    eq(c.voucher.code_config.length, CODE_LENGTH, "campaign.voucher.code_config.length")
    eq(c.voucher.redemption.quantity if c.voucher.redemption else None, 1, "campaign.voucher.redemption.quantity")
    body = raw_json(resp)
    eq(body.get("object"), "campaign", "campaign raw 'object'")
    check(isinstance(body.get("created_at"), str), "campaign raw 'created_at' must be an ISO 8601 string")
    check(body.get("vouchers_generation_status") in ("DONE", "IN_PROGRESS"),
          f"campaign raw 'vouchers_generation_status' must be DONE or IN_PROGRESS, got {body.get('vouchers_generation_status')!r}")


def test_generated_codes_listed():
    campaign_id = need("campaign_id")
    deadline = time.monotonic() + GENERATION_WAIT
    while True:
        resp = VOUCHERS.list_vouchers_with_http_info(campaign_id=campaign_id, limit=100, _request_timeout=TIMEOUT)
        eq(resp.status_code, 200, "status")
        body = raw_json(resp)
        eq(body.get("object"), "list", "vouchers list raw 'object'")
        eq(body.get("data_ref"), "vouchers", "vouchers list raw 'data_ref'")
        vouchers = resp.data.vouchers or []
        if len(vouchers) >= GENERATED_COUNT or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    eq(len(vouchers), GENERATED_COUNT, "number of vouchers generated in the campaign")
    codes = []
    for i, v in enumerate(vouchers):
        check_generated_code(v.code, PREFIX, CODE_LENGTH, CHARSET, f"vouchers[{i}]")
        eq(v.campaign_id, campaign_id, f"vouchers[{i}].campaign_id")
        eq(v.type, "DISCOUNT_VOUCHER", f"vouchers[{i}].type")
        eq(v.discount.percent_off if v.discount else None, PERCENT_OFF, f"vouchers[{i}].discount.percent_off")
        codes.append(v.code)
    eq(len(set(codes)), GENERATED_COUNT, "generated codes must be distinct")
    STATE["generated_codes"] = codes


def test_get_campaign_counts_vouchers():
    campaign_id = need("campaign_id", "generated_codes")
    c = CAMPAIGNS.get_campaign(campaign_id, _request_timeout=TIMEOUT)
    eq(c.id, campaign_id, "campaign.id")
    eq(c.name, CAMPAIGN_NAME, "campaign.name")
    eq(c.vouchers_count, GENERATED_COUNT, "campaign.vouchers_count")
    eq(c.vouchers_generation_status, "DONE", "campaign.vouchers_generation_status")


def test_add_generated_voucher_to_campaign():
    campaign_id = need("campaign_id", "generated_codes")
    resp = CAMPAIGNS.add_vouchers_to_campaign_with_http_info(
        campaign_id, campaigns_vouchers_create_in_bulk_request_body=CampaignsVouchersCreateInBulkRequestBody(),
        _request_timeout=TIMEOUT,
    )
    ok_status(resp)
    v = resp.data
    check_generated_code(v.code, PREFIX, CODE_LENGTH, CHARSET, "added voucher")
    check(v.code not in STATE["generated_codes"], f"added voucher reuses code {v.code!r}")
    eq(v.campaign_id, campaign_id, "added voucher.campaign_id")
    eq(v.discount.percent_off if v.discount else None, PERCENT_OFF, "added voucher.discount.percent_off")
    eq(raw_json(resp).get("object"), "voucher", "added voucher raw 'object'")


# ------------------------------------------------- b) add a specific code

def test_add_specific_code_to_campaign():
    campaign_id = need("campaign_id")
    resp = CAMPAIGNS.add_voucher_with_specific_code_to_campaign_with_http_info(
        campaign_id,
        CODE,
        CampaignsVouchersCreateRequestBody(metadata={"run": RUN}, additional_info="added by test_coupons.py"),
        _request_timeout=TIMEOUT,
    )
    ok_status(resp)
    v = resp.data
    check_coupon(v, code=CODE, what="added code")
    eq(v.redemption.redeemed_quantity, 0, "added code.redemption.redeemed_quantity")
    eq(v.metadata, {"run": RUN}, "added code.metadata")
    eq(v.additional_info, "added by test_coupons.py", "added code.additional_info")
    eq(raw_json(resp).get("object"), "voucher", "added code raw 'object'")
    STATE["voucher_id"] = v.id


def test_add_duplicate_code_rejected():
    campaign_id = need("campaign_id", "voucher_id")
    try:
        CAMPAIGNS.add_voucher_with_specific_code_to_campaign(campaign_id, CODE, _request_timeout=TIMEOUT)
    except ApiException as exc:
        eq(exc.status, 409, "HTTP status for a duplicate code")
        error_body(exc)
        return
    raise Failure("adding the same code twice succeeded (expected 409)")


# -------------------------------------------------------- c) get a voucher

def test_get_voucher():
    voucher_id = need("voucher_id")
    v = get_voucher(CODE)
    check_coupon(v, code=CODE, what="voucher")
    eq(v.id, voucher_id, "voucher.id")
    eq(v.redemption.redeemed_quantity, 0, "voucher.redemption.redeemed_quantity")


def test_get_unknown_voucher_404():
    try:
        VOUCHERS.get_voucher(UNKNOWN_CODE, _request_timeout=TIMEOUT)
    except NotFoundException as exc:
        eq(exc.status, 404, "status")
        body = error_body(exc)
        eq(body.get("code"), 404, "error 'code'")
        eq(body.get("key"), "not_found", "error 'key'")
        return
    raise Failure("expected NotFoundException (404), the call succeeded")


# ------------------------------------------------------------ d) validate

def test_validate_applicable():
    need("voucher_id")
    v, body = validate([voucher_item(CODE)], ORDER_AMOUNT)
    eq(v.valid, True, "valid")
    r = only_redeemable(v, CODE, "APPLICABLE")
    check(r.result is not None and r.result.discount is not None, "redeemables[0].result.discount missing")
    eq(r.result.discount.type, "PERCENT", "redeemables[0].result.discount.type")
    eq(r.result.discount.percent_off, PERCENT_OFF, "redeemables[0].result.discount.percent_off")
    check_order_totals(v.order, amount=ORDER_AMOUNT, discount=DISCOUNT, what="order")
    eq(v.order.discount_amount, DISCOUNT, "order.discount_amount")
    check_order_totals(r.order, amount=ORDER_AMOUNT, discount=DISCOUNT, what="redeemables[0].order")
    check(isinstance(body.get("tracking_id"), str) and body["tracking_id"],
          f"raw 'tracking_id' must be a non-empty string, got {body.get('tracking_id')!r}")


def test_validate_unknown_code_inapplicable():
    v, _ = validate([voucher_item(UNKNOWN_CODE)], ORDER_AMOUNT)
    eq(v.valid, False, "valid")
    r = only_redeemable(v, UNKNOWN_CODE, "INAPPLICABLE")
    check(r.result is not None and r.result.error is not None, "redeemables[0].result.error missing")
    eq(r.result.error.code, 404, "redeemables[0].result.error.code")
    eq(r.result.error.key, "not_found", "redeemables[0].result.error.key")


# -------------------------------------------------------------- e) redeem

def test_redeem():
    voucher_id = need("voucher_id")
    resp = REDEMPTIONS.redeem_stacked_discounts_with_http_info(
        RedemptionsRedeemRequestBody(
            redeemables=[redeem_item(CODE)], order=order_of(ORDER_AMOUNT), customer=customer(), metadata={"run": RUN}
        ),
        _request_timeout=TIMEOUT,
    )
    ok_status(resp)
    out = resp.data
    check(out.redemptions is not None and len(out.redemptions) == 1,
          f"expected 1 redemption, got {None if out.redemptions is None else len(out.redemptions)}")
    r = out.redemptions[0]
    check(isinstance(r.id, str) and r.id, f"redemption id must be a non-empty string, got {r.id!r}")
    eq(r.result, "SUCCESS", "redemption.result")
    eq(r.status, "SUCCEEDED", "redemption.status")
    eq(r.related_object_type, "voucher", "redemption.related_object_type")
    eq(r.related_object_id, voucher_id, "redemption.related_object_id")
    check(r.voucher is not None, "redemption.voucher missing")
    eq(r.voucher.code, CODE, "redemption.voucher.code")
    check(isinstance(r.var_date, datetime.datetime), f"redemption.date is not a date-time: {r.var_date!r}")
    check(r.customer is not None, "redemption.customer missing")
    eq(r.customer.source_id, CUSTOMER_SOURCE_ID, "redemption.customer.source_id")
    check_order_totals(out.order, amount=ORDER_AMOUNT, discount=DISCOUNT, what="order")
    raw = raw_json(resp)["redemptions"][0]
    eq(raw.get("object"), "redemption", "redemption raw 'object'")
    check(isinstance(raw.get("date"), str), "redemption raw 'date' must be an ISO 8601 string")
    STATE["redemption_id"] = r.id


def test_voucher_redeemed_quantity_after_redeem():
    need("redemption_id")
    v = get_voucher(CODE)
    eq(v.redemption.redeemed_quantity, 1, "voucher.redemption.redeemed_quantity")
    eq(v.redemption.quantity, 1, "voucher.redemption.quantity")


def test_validate_quantity_exceeded():
    need("redemption_id")
    v, _ = validate([voucher_item(CODE)], ORDER_AMOUNT)
    eq(v.valid, False, "valid")
    r = only_redeemable(v, CODE, "INAPPLICABLE")
    check(r.result is not None and r.result.error is not None, "redeemables[0].result.error missing")
    eq(r.result.error.key, "quantity_exceeded", "redeemables[0].result.error.key")


def test_redeem_again_rejected():
    need("redemption_id")
    try:
        REDEMPTIONS.redeem_stacked_discounts(
            RedemptionsRedeemRequestBody(redeemables=[redeem_item(CODE)], order=order_of(ORDER_AMOUNT), customer=customer()),
            _request_timeout=TIMEOUT,
        )
    except ApiException as exc:
        eq(exc.status, 400, "HTTP status of a redemption over the quantity limit")
        error_body(exc)
        return
    raise Failure("a second redemption of a quantity-1 code succeeded (expected 400)")


# ------------------------------------------------------ f) list redemptions

def test_list_redemptions_finds_redemption():
    redemption_id = need("redemption_id")
    found = None
    for page in range(1, 100):
        resp = REDEMPTIONS.list_redemptions_with_http_info(
            limit=100, page=page, order=ParameterOrderListRedemptions.MINUS_CREATED_AT, _request_timeout=TIMEOUT
        )
        eq(resp.status_code, 200, "status")
        body = raw_json(resp)
        if page == 1:
            eq(body.get("object"), "list", "list raw 'object'")
            eq(body.get("data_ref"), "redemptions", "list raw 'data_ref'")
            check(isinstance(body.get("redemptions"), list), "list raw 'redemptions' must be an array")
            check(is_int(body.get("total")) and body["total"] >= 1,
                  f"list raw 'total' must be a positive integer, got {body.get('total')!r}")
        items = resp.data.redemptions or []
        check(len(items) <= 100, f"limit=100 ignored: got {len(items)} redemptions")
        found = next((r for r in items if r.id == redemption_id), None)
        if found is not None or len(items) < 100:
            break
    check(found is not None, f"redemption {redemption_id} not found in GET /v1/redemptions")
    eq(found.object, "redemption", "list item.object")
    eq(found.result, "SUCCESS", "list item.result")
    eq(found.status, "SUCCEEDED", "list item.status")
    eq(found.voucher.code if found.voucher else None, CODE, "list item.voucher.code")


def test_list_redemptions_respects_limit():
    need("redemption_id")
    lst = REDEMPTIONS.list_redemptions(limit=1, _request_timeout=TIMEOUT)
    check(lst.redemptions is not None and len(lst.redemptions) == 1,
          f"limit=1 should return exactly 1 redemption, got {None if lst.redemptions is None else len(lst.redemptions)}")


def test_get_redemption():
    redemption_id = need("redemption_id")
    r = REDEMPTIONS.get_redemption(redemption_id, _request_timeout=TIMEOUT)
    eq(r.id, redemption_id, "redemption.id")
    eq(r.status, "SUCCEEDED", "redemption.status")
    eq(r.result, "SUCCESS", "redemption.result")


# ------------------------------------------------------------- g) rollback

def test_rollback_redemption():
    redemption_id = need("redemption_id")
    resp = REDEMPTIONS.rollback_redemption_with_http_info(redemption_id, reason=ROLLBACK_REASON, _request_timeout=TIMEOUT)
    ok_status(resp)
    rb = resp.data
    check(isinstance(rb.id, str) and rb.id and rb.id != redemption_id, f"rollback id must be a new id, got {rb.id!r}")
    eq(rb.redemption, redemption_id, "rollback.redemption")
    eq(rb.result, "SUCCESS", "rollback.result")
    eq(rb.status, "SUCCEEDED", "rollback.status")
    eq(rb.reason, ROLLBACK_REASON, "rollback.reason")
    eq(rb.related_object_type, "voucher", "rollback.related_object_type")
    eq(raw_json(resp).get("object"), "redemption_rollback", "rollback raw 'object'")
    STATE["rolled_back"] = True


def test_voucher_redeemed_quantity_after_rollback():
    need("rolled_back")
    v = get_voucher(CODE)
    eq(v.redemption.redeemed_quantity, 0, "voucher.redemption.redeemed_quantity")


def test_redemption_marked_rolled_back():
    redemption_id = need("redemption_id", "rolled_back")
    r = REDEMPTIONS.get_redemption(redemption_id, _request_timeout=TIMEOUT)
    eq(r.status, "ROLLED_BACK", "redemption.status after rollback")


def test_rollback_twice_rejected():
    redemption_id = need("redemption_id", "rolled_back")
    try:
        REDEMPTIONS.rollback_redemption(redemption_id, _request_timeout=TIMEOUT)
    except ApiException as exc:
        eq(exc.status, 400, "HTTP status of a second rollback")
        error_body(exc)
        return
    raise Failure("a second rollback of the same redemption succeeded (expected 400)")


def test_validate_after_rollback_applicable():
    need("rolled_back")
    v, _ = validate([voucher_item(CODE)], ORDER_AMOUNT)
    eq(v.valid, True, "valid")
    only_redeemable(v, CODE, "APPLICABLE")
    check_order_totals(v.order, amount=ORDER_AMOUNT, discount=DISCOUNT, what="order")


# ------------------------------------------------------------ h) gift card

def test_create_gift_voucher():
    resp = VOUCHERS.generate_random_code_with_http_info(
        VouchersCreateRequestBody(
            type="GIFT_VOUCHER",
            gift=Gift(amount=GIFT_AMOUNT),
            code_config=CodeConfig(prefix=GIFT_PREFIX, length=GIFT_CODE_LENGTH),
            metadata={"run": RUN},
        ),
        _request_timeout=TIMEOUT,
    )
    ok_status(resp)
    v = resp.data
    check_generated_code(v.code, GIFT_PREFIX, GIFT_CODE_LENGTH, None, "gift voucher")
    eq(v.type, "GIFT_VOUCHER", "gift voucher.type")
    check(v.gift is not None, "gift voucher.gift missing")
    eq(v.gift.amount, GIFT_AMOUNT, "gift voucher.gift.amount")
    eq(v.gift.balance, GIFT_AMOUNT, "gift voucher.gift.balance")
    eq(v.active, True, "gift voucher.active")
    eq(raw_json(resp).get("object"), "voucher", "gift voucher raw 'object'")
    STATE["gift_code"] = v.code
    STATE["gift_id"] = v.id


def test_add_gift_balance():
    code = need("gift_code")
    resp = VOUCHERS.update_voucher_balance_with_http_info(
        code, VouchersBalanceUpdateRequestBody(amount=GIFT_TOP_UP), _request_timeout=TIMEOUT
    )
    ok_status(resp)
    b = resp.data
    eq(b.amount, GIFT_TOP_UP, "balance.amount")
    eq(b.balance, GIFT_AMOUNT + GIFT_TOP_UP, "balance.balance")
    eq(b.total, GIFT_AMOUNT + GIFT_TOP_UP, "balance.total")
    eq(b.type, "gift_voucher", "balance.type")
    check(b.related_object is not None, "balance.related_object missing")
    eq(b.related_object.type, "voucher", "balance.related_object.type")
    eq(b.related_object.id, STATE["gift_id"], "balance.related_object.id")
    body = raw_json(resp)
    eq(body.get("object"), "balance", "balance raw 'object'")
    eq(body.get("operation_type"), "MANUAL", "balance raw 'operation_type'")
    STATE["gift_topped_up"] = True


def test_gift_balance_after_top_up():
    code = need("gift_code", "gift_topped_up")
    v = get_voucher(code)
    eq(v.gift.amount, GIFT_AMOUNT + GIFT_TOP_UP, "gift.amount")
    eq(v.gift.balance, GIFT_AMOUNT + GIFT_TOP_UP, "gift.balance")


def test_validate_gift_credits():
    code = need("gift_code", "gift_topped_up")
    item = ValidationsValidateRequestBodyRedeemablesItem(
        object="voucher", id=code, gift=ValidationsValidateRequestBodyRedeemablesItemGift(credits=GIFT_CREDITS)
    )
    v, _ = validate([item], GIFT_ORDER_AMOUNT)
    eq(v.valid, True, "valid")
    r = only_redeemable(v, code, "APPLICABLE")
    check(r.result is not None and r.result.gift is not None, "redeemables[0].result.gift missing")
    eq(r.result.gift.credits, GIFT_CREDITS, "redeemables[0].result.gift.credits")
    check_order_totals(v.order, amount=GIFT_ORDER_AMOUNT, discount=GIFT_CREDITS, what="order")


def test_redeem_gift_partially():
    code = need("gift_code", "gift_topped_up")
    out = REDEMPTIONS.redeem_stacked_discounts(
        RedemptionsRedeemRequestBody(
            redeemables=[redeem_item(code, credits=GIFT_CREDITS)], order=order_of(GIFT_ORDER_AMOUNT), customer=customer()
        ),
        _request_timeout=TIMEOUT,
    )
    check(out.redemptions is not None and len(out.redemptions) == 1, "expected 1 redemption")
    r = out.redemptions[0]
    eq(r.result, "SUCCESS", "redemption.result")
    eq(r.status, "SUCCEEDED", "redemption.status")
    eq(r.amount, GIFT_CREDITS, "redemption.amount")
    eq(r.gift.amount if r.gift else None, GIFT_CREDITS, "redemption.gift.amount")
    eq(r.voucher.code if r.voucher else None, code, "redemption.voucher.code")
    check_order_totals(out.order, amount=GIFT_ORDER_AMOUNT, discount=GIFT_CREDITS, what="order")
    STATE["gift_redemption_id"] = r.id


def test_gift_balance_after_redeem():
    code = need("gift_code", "gift_redemption_id")
    v = get_voucher(code)
    eq(v.gift.balance, GIFT_AMOUNT + GIFT_TOP_UP - GIFT_CREDITS, "gift.balance")
    eq(v.gift.amount, GIFT_AMOUNT + GIFT_TOP_UP, "gift.amount")
    eq(v.redemption.redeemed_quantity if v.redemption else None, 1, "gift voucher.redemption.redeemed_quantity")


def test_validate_gift_over_balance_inapplicable():
    code = need("gift_code", "gift_redemption_id")
    credits = GIFT_AMOUNT + GIFT_TOP_UP  # more than what is left
    item = ValidationsValidateRequestBodyRedeemablesItem(
        object="voucher", id=code, gift=ValidationsValidateRequestBodyRedeemablesItemGift(credits=credits)
    )
    v, _ = validate([item], credits * 2)
    eq(v.valid, False, "valid")
    only_redeemable(v, code, "INAPPLICABLE")


def test_rollback_gift_redemption_restores_balance():
    code = need("gift_code", "gift_redemption_id")
    rb = REDEMPTIONS.rollback_redemption(STATE["gift_redemption_id"], _request_timeout=TIMEOUT)
    eq(rb.result, "SUCCESS", "rollback.result")
    eq(rb.redemption, STATE["gift_redemption_id"], "rollback.redemption")
    v = get_voucher(code)
    eq(v.gift.balance, GIFT_AMOUNT + GIFT_TOP_UP, "gift.balance after rollback")


TESTS = [
    test_create_discount_campaign,
    test_generated_codes_listed,
    test_get_campaign_counts_vouchers,
    test_add_generated_voucher_to_campaign,
    test_add_specific_code_to_campaign,
    test_add_duplicate_code_rejected,
    test_get_voucher,
    test_get_unknown_voucher_404,
    test_validate_applicable,
    test_validate_unknown_code_inapplicable,
    test_redeem,
    test_voucher_redeemed_quantity_after_redeem,
    test_validate_quantity_exceeded,
    test_redeem_again_rejected,
    test_list_redemptions_finds_redemption,
    test_list_redemptions_respects_limit,
    test_get_redemption,
    test_rollback_redemption,
    test_voucher_redeemed_quantity_after_rollback,
    test_redemption_marked_rolled_back,
    test_rollback_twice_rejected,
    test_validate_after_rollback_applicable,
    test_create_gift_voucher,
    test_add_gift_balance,
    test_gift_balance_after_top_up,
    test_validate_gift_credits,
    test_redeem_gift_partially,
    test_gift_balance_after_redeem,
    test_validate_gift_over_balance_inapplicable,
    test_rollback_gift_redemption_restores_balance,
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
    if "gift_code" in STATE:
        try:
            VOUCHERS.delete_voucher(STATE["gift_code"], force=True, _request_timeout=TIMEOUT)
        except Exception:  # noqa: BLE001
            pass
    if "campaign_id" in STATE:
        try:
            CAMPAIGNS.delete_campaign(STATE["campaign_id"], force=True, _request_timeout=TIMEOUT)
        except Exception:  # noqa: BLE001
            pass


def main():
    print(f"Tessera coupons SDK test against {BASE_URL} (voucherify SDK, run {RUN})")
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
