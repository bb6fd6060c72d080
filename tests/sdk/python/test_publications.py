#!/usr/bin/env python3
"""Publications (handing codes to customers) and the customer's wallet: a
compatibility check for Tessera, driven by the official Voucherify Python SDK
(voucherify==6.1.1, see requirements.txt).

Usage:
    TESSERA_URL=http://127.0.0.1:8080 TESSERA_APP_ID=... TESSERA_APP_TOKEN=... \
        python tests/sdk/python/test_publications.py

Flows covered (every check is a named test case, run in order; a case whose
prerequisite failed fails with "prerequisite missing"):
  a) POST /v1/campaigns            DISCOUNT_COUPONS, 5 generated codes, quantity 1 per code;
     GET  /v1/campaigns/{id}       polled until vouchers_generation_status is DONE;
     GET  /v1/vouchers?campaign_id the 5 codes
  b) POST /v1/publications         campaign {name} + customer {source_id}: one code of the
                                   campaign in voucher.code, object publication, result
                                   SUCCESS, customer_id set
  c) POST /v1/publications         another customer gets another code;
                                   campaign {name, count: 2} answers vouchers (2 codes)
  d) POST /v1/publications         with source_id, twice: the same publication and code
  e) POST /v1/publications?join_once=true   the customer's earlier publication comes back
                                   (every code of the campaign is held by then)
  f) POST /v1/vouchers/{code}      a standalone code; POST /v1/publications voucher=code to a
                                   customer, then to another: 400 voucher_already_published
  g) GET  /v1/publications         newest first, total; filters customer (id and source id),
                                   campaign, voucher, source_id
  h) GET  /v1/customers/{id}/redeemables    the held codes, holder_role OWNER
  i) POST /v1/redemptions          the holder redeems a published code; the wallet shows USED

The last line printed is "<n> passed, <m> failed"; the exit status is 0 only if
nothing failed (2 if the environment is incomplete). Nothing but the SDK talks to
the server; where the SDK would paper over a missing field (its from_dict fills in
defaults such as object="publication", result="SUCCESS", channel="API",
holder_role="OWNER"), the raw JSON returned by the SDK's *_with_http_info variants is
checked as well.
"""

import datetime
import json
import os
import sys
import time
import traceback
import uuid

import voucherify
from voucherify.exceptions import ApiException
from voucherify.models import (
    CampaignsCreateRequestBody,
    CampaignsCreateRequestBodyVoucher,
    CampaignsCreateRequestBodyVoucherRedemption,
    CodeConfig,
    CreatePublicationCampaign,
    Customer,
    Discount,
    Order,
    ParameterOrderListPublications,
    PublicationsCreateRequestBody,
    RedemptionsRedeemRequestBody,
    RedemptionsRedeemRequestBodyRedeemablesItem,
    VouchersCreateWithSpecificCodeRequestBody,
    VouchersCreateWithSpecificCodeRequestBodyRedemption,
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
PUBLICATIONS = voucherify.PublicationsApi(CLIENT)
CUSTOMERS = voucherify.CustomersApi(CLIENT)
REDEMPTIONS = voucherify.RedemptionsApi(CLIENT)

RUN = uuid.uuid4().hex[:10].upper()
CAMPAIGN_NAME = f"tessera-sdk-py-publications-{RUN}"
PREFIX = f"PYPUB{RUN}-"
CODE_LENGTH = 8
GENERATED_COUNT = 5
PERCENT_OFF = 10
ORDER_AMOUNT = 20000  # cents
DISCOUNT = ORDER_AMOUNT * PERCENT_OFF // 100  # 2000

CUSTOMER_A = f"tessera-sdk-py-pub-a-{RUN}"  # one code (b), join_once (e), redeems it (i)
CUSTOMER_B = f"tessera-sdk-py-pub-b-{RUN}"  # one code (c)
CUSTOMER_C = f"tessera-sdk-py-pub-c-{RUN}"  # two codes in one publication (c)
CUSTOMER_D = f"tessera-sdk-py-pub-d-{RUN}"  # a publication with a source_id, sent twice (d)
CUSTOMER_E = f"tessera-sdk-py-pub-e-{RUN}"  # holds the standalone code (f)
CUSTOMER_F = f"tessera-sdk-py-pub-f-{RUN}"  # is refused the standalone code (f)
PUBLICATION_SOURCE_ID = f"tessera-sdk-py-pub-src-{RUN}"
STANDALONE_CODE = f"PYPUBCODE-{RUN}"
STANDALONE_AMOUNT_OFF = 500

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


def publish(customer_source_id, *, campaign=None, count=None, voucher=None, source_id=None, join_once=None):
    """POST /v1/publications; returns (model, raw JSON)."""
    body = PublicationsCreateRequestBody(
        customer=Customer(source_id=customer_source_id),
        campaign=CreatePublicationCampaign(name=campaign, count=count) if campaign is not None else None,
        voucher=voucher,
        source_id=source_id,
        metadata={"run": RUN},
    )
    resp = PUBLICATIONS.create_publication_with_http_info(
        join_once=join_once, publications_create_request_body=body, _request_timeout=TIMEOUT
    )
    ok_status(resp)
    return resp.data, raw_json(resp)


def check_publication(p, raw, *, customer_source_id, what):
    """The common shape of a successful publication (model and raw JSON)."""
    check(isinstance(p.id, str) and p.id, f"{what}.id must be a non-empty string, got {p.id!r}")
    eq(raw.get("object"), "publication", f"{what} raw 'object'")
    eq(raw.get("result"), "SUCCESS", f"{what} raw 'result'")
    eq(p.result, "SUCCESS", f"{what}.result")
    check(isinstance(raw.get("customer_id"), str) and raw["customer_id"],
          f"{what} raw 'customer_id' must be a non-empty string, got {raw.get('customer_id')!r}")
    eq(p.customer_id, raw["customer_id"], f"{what}.customer_id")
    check(isinstance(raw.get("created_at"), str), f"{what} raw 'created_at' must be an ISO 8601 string")
    check(isinstance(p.created_at, datetime.datetime), f"{what}.created_at is not a date-time: {p.created_at!r}")
    eq(raw.get("channel"), "API", f"{what} raw 'channel'")
    eq(raw.get("metadata"), {"run": RUN}, f"{what} raw 'metadata'")
    if p.customer is not None:
        eq(p.customer.id, p.customer_id, f"{what}.customer.id")
        eq(p.customer.source_id, customer_source_id, f"{what}.customer.source_id")


def single_code(p, raw, what):
    """The one code of a single-code publication."""
    check(isinstance(raw.get("voucher"), dict), f"{what} raw 'voucher' must be an object, got {raw.get('voucher')!r}")
    code = raw["voucher"].get("code")
    check(isinstance(code, str) and code, f"{what} raw 'voucher.code' must be a non-empty string, got {code!r}")
    check(p.voucher is not None, f"{what}.voucher missing")
    eq(p.voucher.code, code, f"{what}.voucher.code")
    eq(raw["voucher"].get("object"), "voucher", f"{what} raw 'voucher.object'")
    return code


def campaign_code(p, raw, what):
    code = single_code(p, raw, what)
    check(code in STATE["codes"], f"{what}: code {code!r} is not one of the campaign's codes {STATE['codes']!r}")
    eq(p.voucher.campaign, CAMPAIGN_NAME, f"{what}.voucher.campaign")
    eq(p.voucher.campaign_id, STATE["campaign_id"], f"{what}.voucher.campaign_id")
    return code


def held_codes():
    """Every code handed out so far, to check that no code goes out twice."""
    return [STATE[k] for k in ("code_a", "code_b", "code_d", "standalone_published") if k in STATE] + STATE.get(
        "codes_c", []
    )


# ------------------------------------------------------- a) campaign + codes

def test_create_campaign():
    resp = CAMPAIGNS.create_campaign_with_http_info(
        CampaignsCreateRequestBody(
            name=CAMPAIGN_NAME,
            description="created by tests/sdk/python/test_publications.py",
            campaign_type="DISCOUNT_COUPONS",
            type="AUTO_UPDATE",
            vouchers_count=GENERATED_COUNT,
            metadata={"run": RUN},
            voucher=CampaignsCreateRequestBodyVoucher(
                type="DISCOUNT_VOUCHER",
                discount=Discount(type="PERCENT", percent_off=PERCENT_OFF, effect="APPLY_TO_ORDER"),
                redemption=CampaignsCreateRequestBodyVoucherRedemption(quantity=1),
                code_config=CodeConfig(prefix=PREFIX, length=CODE_LENGTH),
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
    eq(raw_json(resp).get("object"), "campaign", "campaign raw 'object'")


def test_codes_generated():
    campaign_id = need("campaign_id")
    deadline = time.monotonic() + GENERATION_WAIT
    while True:
        resp = CAMPAIGNS.get_campaign_with_http_info(campaign_id, _request_timeout=TIMEOUT)
        eq(resp.status_code, 200, "status")
        status = raw_json(resp).get("vouchers_generation_status")
        if status == "DONE" or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    eq(status, "DONE", "campaign raw 'vouchers_generation_status'")
    eq(resp.data.vouchers_count, GENERATED_COUNT, "campaign.vouchers_count")
    lst = VOUCHERS.list_vouchers(campaign_id=campaign_id, limit=100, _request_timeout=TIMEOUT)
    codes = [v.code for v in (lst.vouchers or [])]
    eq(len(codes), GENERATED_COUNT, "number of codes in the campaign")
    eq(len(set(codes)), GENERATED_COUNT, "distinct codes in the campaign")
    for code in codes:
        check(isinstance(code, str) and code.startswith(PREFIX), f"code {code!r} lacks prefix {PREFIX!r}")
    STATE["codes"] = codes


# ------------------------------------------- b) publish a code of the campaign

def test_publish_from_campaign():
    need("codes")
    p, raw = publish(CUSTOMER_A, campaign=CAMPAIGN_NAME)
    check_publication(p, raw, customer_source_id=CUSTOMER_A, what="publication")
    code = campaign_code(p, raw, "publication")
    check(raw.get("vouchers") in (None, [code]), f"publication raw 'vouchers' for one code: {raw.get('vouchers')!r}")
    STATE["pub_a"] = p.id
    STATE["customer_a"] = p.customer_id
    STATE["code_a"] = code


def test_published_voucher_is_the_campaign_code():
    code = need("code_a")
    resp = VOUCHERS.get_voucher_with_http_info(code, _request_timeout=TIMEOUT)
    eq(resp.status_code, 200, "status")
    v = resp.data
    eq(v.code, code, "voucher.code")
    eq(v.campaign_id, STATE["campaign_id"], "voucher.campaign_id")
    eq(v.redemption.quantity if v.redemption else None, 1, "voucher.redemption.quantity")
    eq(v.redemption.redeemed_quantity if v.redemption else None, 0, "voucher.redemption.redeemed_quantity")


# -------------------------------------- c) another customer; count: 2 codes

def test_second_customer_gets_another_code():
    need("code_a")
    p, raw = publish(CUSTOMER_B, campaign=CAMPAIGN_NAME)
    check_publication(p, raw, customer_source_id=CUSTOMER_B, what="publication")
    code = campaign_code(p, raw, "publication")
    check(code != STATE["code_a"], f"customer B got customer A's code {code!r}")
    check(p.id != STATE["pub_a"], f"customer B got customer A's publication {p.id!r}")
    check(p.customer_id != STATE["customer_a"], "customer B's publication names customer A")
    STATE["pub_b"] = p.id
    STATE["customer_b"] = p.customer_id
    STATE["code_b"] = code


def test_publish_count_two():
    need("code_a", "code_b")
    p, raw = publish(CUSTOMER_C, campaign=CAMPAIGN_NAME, count=2)
    check_publication(p, raw, customer_source_id=CUSTOMER_C, what="publication")
    codes = raw.get("vouchers")
    check(isinstance(codes, list), f"publication raw 'vouchers' must be an array, got {codes!r}")
    eq(len(codes), 2, "number of codes in raw 'vouchers'")
    eq(p.vouchers, codes, "publication.vouchers")
    eq(len(set(codes)), 2, "the two codes must be distinct")
    for code in codes:
        check(code in STATE["codes"], f"code {code!r} is not one of the campaign's codes")
        check(code not in (STATE["code_a"], STATE["code_b"]), f"code {code!r} was already handed out")
    STATE["pub_c"] = p.id
    STATE["customer_c"] = p.customer_id
    STATE["codes_c"] = list(codes)


# ------------------------------------------------------- d) source_id de-dup

def test_publish_with_source_id():
    need("codes")
    p, raw = publish(CUSTOMER_D, campaign=CAMPAIGN_NAME, source_id=PUBLICATION_SOURCE_ID)
    check_publication(p, raw, customer_source_id=CUSTOMER_D, what="publication")
    eq(raw.get("source_id"), PUBLICATION_SOURCE_ID, "publication raw 'source_id'")
    code = campaign_code(p, raw, "publication")
    check(code not in held_codes(), f"code {code!r} was already handed out")
    STATE["pub_d"] = p.id
    STATE["customer_d"] = p.customer_id
    STATE["code_d"] = code


def test_same_source_id_same_publication():
    pub_d = need("pub_d")
    p, raw = publish(CUSTOMER_D, campaign=CAMPAIGN_NAME, source_id=PUBLICATION_SOURCE_ID)
    eq(p.id, pub_d, "publication id for a repeated source_id")
    eq(single_code(p, raw, "publication"), STATE["code_d"], "code for a repeated source_id")
    eq(raw.get("source_id"), PUBLICATION_SOURCE_ID, "publication raw 'source_id'")
    eq(raw.get("object"), "publication", "publication raw 'object'")
    eq(p.customer_id, STATE["customer_d"], "publication.customer_id")


# -------------------------------------------------------------- e) join_once

def test_join_once_returns_earlier_publication():
    # Every code of the campaign is held by now (A, B, C x2, D), so a new code could
    # not be handed out anyway: the answer must be customer A's publication.
    pub_a = need("pub_a", "code_a", "codes_c", "code_d")
    p, raw = publish(CUSTOMER_A, campaign=CAMPAIGN_NAME, join_once=True)
    eq(p.id, pub_a, "publication id under join_once")
    eq(single_code(p, raw, "publication"), STATE["code_a"], "code under join_once")
    eq(p.customer_id, STATE["customer_a"], "publication.customer_id under join_once")
    eq(raw.get("result"), "SUCCESS", "publication raw 'result'")


# ----------------------------------------------- f) a specific code, twice

def test_create_standalone_voucher():
    resp = VOUCHERS.create_voucher_with_http_info(
        STANDALONE_CODE,
        VouchersCreateWithSpecificCodeRequestBody(
            type="DISCOUNT_VOUCHER",
            discount=Discount(type="AMOUNT", amount_off=STANDALONE_AMOUNT_OFF),
            redemption=VouchersCreateWithSpecificCodeRequestBodyRedemption(quantity=1),
            metadata={"run": RUN},
        ),
        _request_timeout=TIMEOUT,
    )
    ok_status(resp)
    eq(resp.data.code, STANDALONE_CODE, "voucher.code")
    eq(raw_json(resp).get("object"), "voucher", "voucher raw 'object'")
    STATE["standalone"] = STANDALONE_CODE


def test_publish_specific_code():
    code = need("standalone")
    p, raw = publish(CUSTOMER_E, voucher=code)
    check_publication(p, raw, customer_source_id=CUSTOMER_E, what="publication")
    eq(single_code(p, raw, "publication"), code, "published code")
    STATE["pub_e"] = p.id
    STATE["customer_e"] = p.customer_id
    STATE["standalone_published"] = code


def test_publish_held_code_to_another_customer_rejected():
    code = need("standalone_published")
    try:
        publish(CUSTOMER_F, voucher=code)
    except ApiException as exc:
        eq(exc.status, 400, "HTTP status for a code another customer holds")
        eq(error_body(exc).get("key"), "voucher_already_published", "error key")
        return
    raise Failure("publishing a code held by another customer succeeded (expected 400 voucher_already_published)")


# --------------------------------------------------------------- g) listing

def test_list_publications_newest_first():
    ids = [STATE.get(k) for k in ("pub_a", "pub_b", "pub_c", "pub_d", "pub_e")]
    check(all(ids), "prerequisite missing (a publication); an earlier test failed")
    resp = PUBLICATIONS.list_publications_with_http_info(limit=100, _request_timeout=TIMEOUT)
    eq(resp.status_code, 200, "status")
    body = raw_json(resp)
    eq(body.get("object"), "list", "list raw 'object'")
    eq(body.get("data_ref"), "publications", "list raw 'data_ref'")
    check(isinstance(body.get("publications"), list), "list raw 'publications' must be an array")
    total = body.get("total")
    check(is_int(total) and total >= len(ids), f"list raw 'total' must be an integer >= {len(ids)}, got {total!r}")
    items = resp.data.publications or []
    eq(len(items), total, "number of publications listed (fewer than 100) against 'total'")
    listed = [p.id for p in items]
    for pid in ids:
        eq(listed.count(pid), 1, f"occurrences of publication {pid} in the list")
    ours = [pid for pid in listed if pid in ids]
    eq(ours, list(reversed(ids)), "our publications, newest first")
    stamps = [p.created_at for p in items]
    check(all(isinstance(s, datetime.datetime) for s in stamps), "every item needs a created_at")
    check(all(a >= b for a, b in zip(stamps, stamps[1:])), f"created_at not descending: {stamps!r}")
    raw_items = {p["id"]: p for p in body["publications"]}
    a = raw_items[STATE["pub_a"]]
    eq(a.get("object"), "publication", "list item raw 'object'")
    eq(a.get("result"), "SUCCESS", "list item raw 'result'")
    eq(a.get("customer_id"), STATE["customer_a"], "list item raw 'customer_id'")
    eq((a.get("voucher") or {}).get("code"), STATE["code_a"], "list item raw 'voucher.code'")
    eq((a.get("voucher") or {}).get("campaign"), CAMPAIGN_NAME, "list item raw 'voucher.campaign'")
    c = raw_items[STATE["pub_c"]]
    eq(sorted(c.get("vouchers") or []), sorted(STATE["codes_c"]), "list item (count 2) raw 'vouchers'")


def test_list_publications_oldest_first():
    need("pub_a", "pub_e")
    lst = PUBLICATIONS.list_publications(limit=100, order=ParameterOrderListPublications.CREATED_AT, _request_timeout=TIMEOUT)
    listed = [p.id for p in lst.publications or []]
    check(STATE["pub_a"] in listed and STATE["pub_e"] in listed, "our publications missing under order=created_at")
    check(listed.index(STATE["pub_a"]) < listed.index(STATE["pub_e"]), "order=created_at does not list oldest first")


def test_list_publications_by_customer():
    pub_c = need("pub_c", "customer_c")
    for value in (STATE["customer_c"], CUSTOMER_C):
        resp = PUBLICATIONS.list_publications_with_http_info(customer=value, _request_timeout=TIMEOUT)
        eq(resp.status_code, 200, "status")
        body = raw_json(resp)
        eq(body.get("total"), 1, f"raw 'total' for customer={value}")
        eq([p.id for p in resp.data.publications or []], [pub_c], f"publications for customer={value}")
        eq(resp.data.publications[0].customer_id, STATE["customer_c"], "item.customer_id")


def test_list_publications_by_campaign_voucher_and_source_id():
    need("pub_a", "pub_b", "pub_c", "pub_d", "code_d")
    lst = PUBLICATIONS.list_publications(campaign=CAMPAIGN_NAME, limit=100, _request_timeout=TIMEOUT)
    eq([p.id for p in lst.publications or []], [STATE[k] for k in ("pub_d", "pub_c", "pub_b", "pub_a")],
       "publications for campaign=<name>, newest first")
    eq(lst.total, 4, "total for campaign=<name>")
    lst = PUBLICATIONS.list_publications(voucher=STATE["code_d"], _request_timeout=TIMEOUT)
    eq([p.id for p in lst.publications or []], [STATE["pub_d"]], "publications for voucher=<code>")
    lst = PUBLICATIONS.list_publications(source_id=PUBLICATION_SOURCE_ID, _request_timeout=TIMEOUT)
    eq([p.id for p in lst.publications or []], [STATE["pub_d"]], "publications for source_id")
    eq(lst.publications[0].source_id, PUBLICATION_SOURCE_ID, "item.source_id")


# ------------------------------------------------------------- h) the wallet

def wallet(customer_id):
    resp = CUSTOMERS.list_customer_redeemables_with_http_info(customer_id, limit=100, _request_timeout=TIMEOUT)
    eq(resp.status_code, 200, "status")
    body = raw_json(resp)
    eq(body.get("object"), "list", "wallet raw 'object'")
    check(isinstance(body.get("data"), list), f"wallet raw 'data' must be an array, got {body.get('data')!r}")
    eq(body.get("data_ref"), "data", "wallet raw 'data_ref'")
    check(isinstance(body.get("has_more"), bool), f"wallet raw 'has_more' must be a boolean, got {body.get('has_more')!r}")
    # 'total' is required by CustomerRedeemablesList in customers.json
    eq(body.get("total"), len(body["data"]), "wallet raw 'total' (fewer than 100 codes)")
    return resp.data, body


def check_wallet_item(item, raw, *, customer_id, code, what):
    eq(raw.get("object"), "customer_redeemable", f"{what} raw 'object'")
    eq(raw.get("holder_role"), "OWNER", f"{what} raw 'holder_role'")
    eq(raw.get("redeemable_object"), "voucher", f"{what} raw 'redeemable_object'")
    eq(raw.get("customer_id"), customer_id, f"{what} raw 'customer_id'")
    eq(raw.get("campaign_id"), STATE["campaign_id"], f"{what} raw 'campaign_id'")
    eq(raw.get("campaign_type"), "DISCOUNT_COUPONS", f"{what} raw 'campaign_type'")
    eq(raw.get("voucher_type"), "DISCOUNT_VOUCHER", f"{what} raw 'voucher_type'")
    check(isinstance(raw.get("created_at"), str), f"{what} raw 'created_at' must be an ISO 8601 string")
    eq(item.holder_role, "OWNER", f"{what}.holder_role")
    eq(item.customer_id, customer_id, f"{what}.customer_id")
    check(item.redeemable is not None and item.redeemable.voucher is not None, f"{what}.redeemable.voucher missing")
    eq(item.redeemable.voucher.code, code, f"{what}.redeemable.voucher.code")
    eq(item.redeemable_id, item.redeemable.voucher.id, f"{what}.redeemable_id")
    return item.redeemable.status


def test_wallet_shows_held_code():
    customer_a = need("customer_a", "code_a")
    w, body = wallet(customer_a)
    eq(len(w.data or []), 1, "codes in customer A's wallet")
    status = check_wallet_item(w.data[0], body["data"][0], customer_id=customer_a, code=STATE["code_a"], what="wallet[0]")
    eq(status, "ACTIVE", "wallet[0].redeemable.status")
    eq((body["data"][0].get("redeemable") or {}).get("status"), "ACTIVE", "wallet[0] raw 'redeemable.status'")


def test_wallet_by_source_id_shows_both_codes():
    customer_c = need("customer_c", "codes_c")
    w, body = wallet(CUSTOMER_C)
    codes = [i.redeemable.voucher.code for i in w.data or [] if i.redeemable and i.redeemable.voucher]
    eq(sorted(codes), sorted(STATE["codes_c"]), "codes in customer C's wallet (looked up by source id)")
    for n, (item, raw) in enumerate(zip(w.data, body["data"])):
        check_wallet_item(item, raw, customer_id=customer_c, code=codes[n], what=f"wallet[{n}]")


def test_wallet_of_customer_refused_is_empty():
    need("standalone_published")
    # Customer F was upserted by the refused publication or not at all; either way F holds nothing.
    try:
        w, _ = wallet(CUSTOMER_F)
    except ApiException as exc:
        eq(exc.status, 404, "HTTP status for the wallet of a customer never created")
        return
    eq(len(w.data or []), 0, "codes in the wallet of the refused customer")


# ------------------------------------------------------------------ i) redeem

def test_holder_redeems_published_code():
    code = need("code_a")
    resp = REDEMPTIONS.redeem_stacked_discounts_with_http_info(
        RedemptionsRedeemRequestBody(
            redeemables=[RedemptionsRedeemRequestBodyRedeemablesItem(object="voucher", id=code)],
            order=Order(amount=ORDER_AMOUNT),
            customer=Customer(source_id=CUSTOMER_A),
        ),
        _request_timeout=TIMEOUT,
    )
    ok_status(resp)
    out = resp.data
    check(out.redemptions is not None and len(out.redemptions) == 1, "expected 1 redemption")
    r = out.redemptions[0]
    eq(r.result, "SUCCESS", "redemption.result")
    eq(r.status, "SUCCEEDED", "redemption.status")
    eq(r.voucher.code if r.voucher else None, code, "redemption.voucher.code")
    eq(r.customer.id if r.customer else None, STATE["customer_a"], "redemption.customer.id")
    eq(out.order.total_discount_amount if out.order else None, DISCOUNT, "order.total_discount_amount")
    eq(raw_json(resp)["redemptions"][0].get("object"), "redemption", "redemption raw 'object'")
    STATE["redeemed_a"] = True


def test_wallet_shows_used_after_redemption():
    customer_a = need("customer_a", "redeemed_a")
    w, body = wallet(customer_a)
    eq(len(w.data or []), 1, "codes in customer A's wallet")
    eq(w.data[0].redeemable.status if w.data[0].redeemable else None, "USED", "wallet[0].redeemable.status")


TESTS = [
    test_create_campaign,
    test_codes_generated,
    test_publish_from_campaign,
    test_published_voucher_is_the_campaign_code,
    test_second_customer_gets_another_code,
    test_publish_count_two,
    test_publish_with_source_id,
    test_same_source_id_same_publication,
    test_join_once_returns_earlier_publication,
    test_create_standalone_voucher,
    test_publish_specific_code,
    test_publish_held_code_to_another_customer_rejected,
    test_list_publications_newest_first,
    test_list_publications_oldest_first,
    test_list_publications_by_customer,
    test_list_publications_by_campaign_voucher_and_source_id,
    test_wallet_shows_held_code,
    test_wallet_by_source_id_shows_both_codes,
    test_wallet_of_customer_refused_is_empty,
    test_holder_redeems_published_code,
    test_wallet_shows_used_after_redemption,
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
    if "standalone" in STATE:
        try:
            VOUCHERS.delete_voucher(STATE["standalone"], force=True, _request_timeout=TIMEOUT)
        except Exception:  # noqa: BLE001
            pass
    if "campaign_id" in STATE:
        try:
            CAMPAIGNS.delete_campaign(STATE["campaign_id"], force=True, _request_timeout=TIMEOUT)
        except Exception:  # noqa: BLE001
            pass


def main():
    print(f"Tessera publications SDK test against {BASE_URL} (voucherify SDK, run {RUN})")
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
