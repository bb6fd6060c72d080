#!/usr/bin/env python3
"""Categories, stacking rules and promotion stacks, driven by the official Voucherify
Python SDK (voucherify==6.1.1), whose strict models fail on a wrong type or a missing
required field.

Usage:
    TESSERA_URL=... TESSERA_APP_ID=... TESSERA_APP_TOKEN=... TESSERA_PROJECT_ID=... \
    TESSERA_MANAGEMENT_ID=... TESSERA_MANAGEMENT_TOKEN=... \
        python tests/sdk/python/test_promotions_admin.py

The last line printed is "<n> passed, <m> failed"; the exit status is 0 only if nothing
failed (2 if the environment is incomplete). Promotion tiers have no API yet, so stacks
are only listed here; creating them is covered by crates/tessera/tests/promotions_admin.rs.
"""

import datetime
import os
import sys
import traceback
import uuid

import voucherify
from voucherify.exceptions import ApiException, NotFoundException
from voucherify.models import (
    CategoriesCreateRequestBody,
    CategoriesUpdateRequestBody,
    ManagementProjectsStackingRulesCreateRequestBody,
    ManagementProjectsStackingRulesUpdateRequestBody,
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
PROJECT_ID = env("TESSERA_PROJECT_ID")


def client(keys):
    return voucherify.ApiClient(voucherify.Configuration(host=BASE_URL, api_key=keys))


APP = client({"X-App-Id": env("TESSERA_APP_ID"), "X-App-Token": env("TESSERA_APP_TOKEN")})
MGMT = client({"X-Management-Id": env("TESSERA_MANAGEMENT_ID"), "X-Management-Token": env("TESSERA_MANAGEMENT_TOKEN")})
CATEGORIES = voucherify.CategoriesApi(APP)
PROMOTIONS = voucherify.PromotionsApi(APP)
MANAGEMENT = voucherify.ManagementApi(MGMT)
RUN = uuid.uuid4().hex[:8]
STATE = {}


class Failure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


def eq(actual, expected, what):
    if actual != expected:
        raise Failure(f"{what}: expected {expected!r}, got {actual!r}")


def need(key):
    if key not in STATE:
        raise Failure(f"prerequisite missing ({key}); an earlier test failed")
    return STATE[key]


# ---------------------------------------------------------------- test cases

def test_create_category():
    c = CATEGORIES.create_category(CategoriesCreateRequestBody(name=f"Gold {RUN}", hierarchy=1), _request_timeout=TIMEOUT)
    check(c.id.startswith("cat_"), f"id {c.id!r}")
    eq((c.name, c.hierarchy, c.object), (f"Gold {RUN}", 1, "category"), "category")
    check(isinstance(c.created_at, datetime.datetime), f"created_at {c.created_at!r}")
    STATE["category"] = c.id


def test_duplicate_category_name_409():
    try:
        CATEGORIES.create_category(CategoriesCreateRequestBody(name=f"Gold {RUN}", hierarchy=2), _request_timeout=TIMEOUT)
    except ApiException as exc:
        eq(exc.status, 409, "status")
    else:
        raise Failure("a duplicate name was accepted")


def test_update_and_get_category():
    cid = need("category")
    u = CATEGORIES.update_category(cid, CategoriesUpdateRequestBody(name=f"Platinum {RUN}", hierarchy=3), _request_timeout=TIMEOUT)
    eq((u.name, u.hierarchy), (f"Platinum {RUN}", 3), "updated")
    check(isinstance(u.updated_at, datetime.datetime), f"updated_at {u.updated_at!r}")
    g = CATEGORIES.get_category(cid, _request_timeout=TIMEOUT)
    eq(g.name, f"Platinum {RUN}", "get after update")


def test_list_categories():
    page = CATEGORIES.list_categories(_request_timeout=TIMEOUT)
    eq((page.object, page.data_ref), ("list", "data"), "envelope")
    check(any(c.id == need("category") for c in page.data), "the category is listed")
    eq(page.total, len(page.data), "total")


def test_default_stacking_rules():
    rules = MANAGEMENT.list_stacking_rules(PROJECT_ID, _request_timeout=TIMEOUT)
    eq((rules.total, len(rules.data)), (1, 1), "one item")
    r = rules.data[0]
    eq((r.id, r.redeemables_limit, r.applicable_redeemables_limit), (None, 30, 5), "defaults")


def test_create_update_stacking_rules():
    r = MANAGEMENT.create_stacking_rules(
        PROJECT_ID,
        ManagementProjectsStackingRulesCreateRequestBody(exclusive_categories=[need("category")], applicable_redeemables_limit=3),
        _request_timeout=TIMEOUT,
    )
    check(r.id.startswith("stk_"), f"id {r.id!r}")
    eq((r.exclusive_categories, r.applicable_redeemables_limit), ([need("category")], 3), "created")
    STATE["rules"] = r.id
    u = MANAGEMENT.update_stacking_rules(
        PROJECT_ID, r.id, ManagementProjectsStackingRulesUpdateRequestBody(redeemables_limit=10), _request_timeout=TIMEOUT
    )
    eq((u.redeemables_limit, u.applicable_redeemables_limit, u.exclusive_categories), (10, 3, [need("category")]), "updated")
    g = MANAGEMENT.get_stacking_rules(PROJECT_ID, r.id, _request_timeout=TIMEOUT)
    eq(g.redeemables_limit, 10, "get")


def test_second_create_409():
    try:
        MANAGEMENT.create_stacking_rules(PROJECT_ID, ManagementProjectsStackingRulesCreateRequestBody(), _request_timeout=TIMEOUT)
    except ApiException as exc:
        eq(exc.status, 409, "status")
    else:
        raise Failure("a second set of rules was accepted")


def test_delete_stacking_rules_restores_defaults():
    MANAGEMENT.delete_stacking_rules(PROJECT_ID, need("rules"), _request_timeout=TIMEOUT)
    r = MANAGEMENT.list_stacking_rules(PROJECT_ID, _request_timeout=TIMEOUT).data[0]
    eq((r.id, r.exclusive_categories), (None, []), "defaults again")


def test_list_promotion_stacks():
    page = PROMOTIONS.list_all_promotion_stacks(limit=10, _request_timeout=TIMEOUT)
    eq((page.object, page.data_ref, page.total), ("list", "data", 0), "no stacks yet")


def test_delete_category():
    cid = need("category")
    CATEGORIES.delete_category(cid, _request_timeout=TIMEOUT)
    STATE["deleted"] = True
    try:
        CATEGORIES.get_category(cid, _request_timeout=TIMEOUT)
    except NotFoundException:
        pass
    else:
        raise Failure("a deleted category is still found")


TESTS = [
    test_create_category,
    test_duplicate_category_name_409,
    test_update_and_get_category,
    test_list_categories,
    test_default_stacking_rules,
    test_create_update_stacking_rules,
    test_second_create_409,
    test_delete_stacking_rules_restores_defaults,
    test_list_promotion_stacks,
    test_delete_category,
]


def describe(exc):
    if isinstance(exc, Failure):
        return str(exc)
    if isinstance(exc, ApiException):
        return f"{type(exc).__name__}: HTTP {exc.status} {exc.reason}; body: {exc.body!r}"
    # pydantic ValidationError etc.: the server's JSON did not fit the SDK model
    return f"{type(exc).__name__}: {exc}"


def main():
    print(f"Tessera categories and stacking rules SDK test against {BASE_URL}")
    passed = failed = 0
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
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
