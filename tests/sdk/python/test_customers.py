#!/usr/bin/env python3
"""Customers API compatibility check for Tessera, driven by the official
Voucherify Python SDK (voucherify==6.1.1, see requirements.txt).

Usage:
    TESSERA_URL=http://127.0.0.1:8080 TESSERA_APP_ID=... TESSERA_APP_TOKEN=... \
        python tests/sdk/python/test_customers.py

Every check is a named test case. The last line printed is "<n> passed, <m> failed";
the exit status is 0 only if nothing failed (2 if the environment is incomplete).
Nothing but the SDK is used to talk to the server; where the SDK would silently
paper over a missing field (it fills in defaults such as object="customer"), the
raw JSON body returned by the SDK's *_with_http_info variants is checked as well.
"""

import datetime
import json
import os
import sys
import traceback
import uuid

import voucherify
from voucherify.exceptions import ApiException, NotFoundException, UnauthorizedException
from voucherify.models import (
    CustomersCreateRequestBody,
    CustomersUpdateRequestBody,
    ParameterOrderListCustomers,
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


def make_api(app_id=APP_ID, app_token=APP_TOKEN):
    config = voucherify.Configuration(
        host=BASE_URL,
        api_key={"X-App-Id": app_id, "X-App-Token": app_token},
    )
    return voucherify.CustomersApi(voucherify.ApiClient(config))


API = make_api()
RUN = uuid.uuid4().hex[:12]
SOURCE_ID = f"tessera-sdk-py-{RUN}"
NAME = "Ada Lovelace"
EMAIL = f"ada.{RUN}@example.com"
DESCRIPTION = "created by tests/sdk/python/test_customers.py"
METADATA = {"run": RUN, "tier": "gold", "score": 42, "vip": True}
NEW_NAME = "Ada King"
NEW_DESCRIPTION = "updated by tests/sdk/python/test_customers.py"
NEW_METADATA = {"run": RUN, "tier": "platinum", "score": 43, "vip": False}

STATE = {}  # values shared between test cases (customer id, created_at, ...)


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


def raw_json(resp):
    try:
        return json.loads(resp.raw_data)
    except ValueError as exc:
        raise Failure(f"response body is not JSON: {resp.raw_data[:200]!r}") from exc


def check_customer(c, *, name, email, description, metadata, what):
    """Checks a deserialized customer model against expected values."""
    eq(c.id, STATE["id"], f"{what}.id")
    eq(c.source_id, SOURCE_ID, f"{what}.source_id")
    eq(c.object, "customer", f"{what}.object")
    eq(c.name, name, f"{what}.name")
    eq(c.email, email, f"{what}.email")
    eq(c.description, description, f"{what}.description")
    eq(c.metadata, metadata, f"{what}.metadata")
    check(isinstance(c.created_at, datetime.datetime), f"{what}.created_at is not a date-time: {c.created_at!r}")
    if "created_at" in STATE:
        eq(c.created_at, STATE["created_at"], f"{what}.created_at")


def check_raw_customer(body, what):
    """Checks the raw JSON customer object for what the SDK would otherwise default/hide."""
    check(isinstance(body, dict), f"{what}: body is not a JSON object")
    eq(body.get("object"), "customer", f"{what} raw 'object'")
    check(isinstance(body.get("id"), str) and body["id"], f"{what} raw 'id' must be a non-empty string")
    check(isinstance(body.get("created_at"), str), f"{what} raw 'created_at' must be an ISO 8601 string")
    # The published spec marks these as required (nullable) on the customer object.
    for key in ("summary", "loyalty", "referrals"):
        check(key in body, f"{what} raw body lacks '{key}' (required by the spec, may be null)")


# ---------------------------------------------------------------- test cases

def test_create_customer():
    resp = API.create_customer_with_http_info(
        CustomersCreateRequestBody(
            source_id=SOURCE_ID, name=NAME, email=EMAIL, description=DESCRIPTION, metadata=METADATA
        ),
        _request_timeout=TIMEOUT,
    )
    check(200 <= resp.status_code <= 299, f"status {resp.status_code}")
    c = resp.data
    check(c is not None, "no customer returned")
    check(isinstance(c.id, str) and c.id, f"id must be a non-empty string, got {c.id!r}")
    STATE["id"] = c.id
    check_customer(c, name=NAME, email=EMAIL, description=DESCRIPTION, metadata=METADATA, what="create")
    STATE["created_at"] = c.created_at
    STATE["create_raw"] = raw_json(resp)


def test_create_response_raw_shape():
    check_raw_customer(need("create_raw"), "create")


def test_get_customer_by_id():
    need("id")
    resp = API.get_customer_with_http_info(STATE["id"], _request_timeout=TIMEOUT)
    eq(resp.status_code, 200, "status")
    check_customer(resp.data, name=NAME, email=EMAIL, description=DESCRIPTION, metadata=METADATA, what="get(id)")
    check_raw_customer(raw_json(resp), "get(id)")


def test_get_customer_by_source_id():
    need("id")
    c = API.get_customer(SOURCE_ID, _request_timeout=TIMEOUT)
    check_customer(c, name=NAME, email=EMAIL, description=DESCRIPTION, metadata=METADATA, what="get(source_id)")


def test_list_customers_finds_created():
    need("id")
    found = None
    for page in range(1, 100):  # the SDK caps page at 99
        resp = API.list_customers_with_http_info(
            limit=100, page=page, order=ParameterOrderListCustomers.MINUS_CREATED_AT, _request_timeout=TIMEOUT
        )
        eq(resp.status_code, 200, "status")
        body = raw_json(resp)
        if page == 1:
            eq(body.get("object"), "list", "list raw 'object'")
            eq(body.get("data_ref"), "customers", "list raw 'data_ref'")
            check(isinstance(body.get("customers"), list), "list raw 'customers' must be an array")
            check(isinstance(body.get("total"), int) and not isinstance(body.get("total"), bool),
                  f"list raw 'total' must be an integer, got {body.get('total')!r}")
            check(body["total"] >= 1, f"list raw 'total' must count the new customer, got {body['total']}")
            if "has_more" in body:
                check(isinstance(body["has_more"], bool), f"list raw 'has_more' must be a boolean")
        lst = resp.data
        eq(lst.object, "list", "list.object")
        eq(lst.data_ref, "customers", "list.data_ref")
        customers = lst.customers or []
        check(len(customers) <= 100, f"limit=100 ignored: got {len(customers)} customers")
        for c in customers:
            if c.id == STATE["id"]:
                found = c
                break
        if found is not None or not customers or lst.has_more is False:
            break
    check(found is not None, f"customer {STATE['id']} not found in the list")
    check_customer(found, name=NAME, email=EMAIL, description=DESCRIPTION, metadata=METADATA, what="list item")


def test_list_customers_respects_limit():
    need("id")
    lst = API.list_customers(limit=1, _request_timeout=TIMEOUT)
    eq(lst.object, "list", "list.object")
    check(lst.customers is not None and len(lst.customers) == 1,
          f"limit=1 should return exactly 1 customer, got {None if lst.customers is None else len(lst.customers)}")


def test_update_customer():
    need("id")
    c = API.update_customer(
        STATE["id"],
        CustomersUpdateRequestBody(name=NEW_NAME, description=NEW_DESCRIPTION, metadata=NEW_METADATA),
        _request_timeout=TIMEOUT,
    )
    check_customer(c, name=NEW_NAME, email=EMAIL, description=NEW_DESCRIPTION, metadata=NEW_METADATA, what="update")
    check(isinstance(c.updated_at, datetime.datetime), f"update.updated_at must be set, got {c.updated_at!r}")
    check(c.updated_at >= c.created_at, f"update.updated_at {c.updated_at} is before created_at {c.created_at}")
    STATE["updated"] = True


def test_get_after_update():
    need("updated")
    c = API.get_customer(STATE["id"], _request_timeout=TIMEOUT)
    check_customer(c, name=NEW_NAME, email=EMAIL, description=NEW_DESCRIPTION, metadata=NEW_METADATA, what="get after update")
    check(isinstance(c.updated_at, datetime.datetime), f"updated_at must be set after an update, got {c.updated_at!r}")


def test_get_unknown_customer_404():
    try:
        API.get_customer(f"cust_missing_{RUN}", _request_timeout=TIMEOUT)
    except NotFoundException as exc:
        eq(exc.status, 404, "status")
        try:
            err = json.loads(exc.body)
        except (TypeError, ValueError):
            raise Failure(f"404 body is not JSON: {exc.body!r}")
        eq(err.get("code"), 404, "error 'code'")
        check(isinstance(err.get("message"), str), f"error 'message' must be a string: {err!r}")
        return
    raise Failure("expected NotFoundException (404), the call succeeded")


def test_wrong_token_401():
    try:
        make_api(APP_ID, APP_TOKEN + "-wrong").get_customer(SOURCE_ID, _request_timeout=TIMEOUT)
    except UnauthorizedException as exc:
        eq(exc.status, 401, "status")
        return
    except ApiException as exc:
        raise Failure(f"expected 401, got {exc.status}")
    raise Failure("expected UnauthorizedException (401), the call succeeded")


def test_list_customer_activity():
    need("updated")
    resp = API.list_customer_activity_with_http_info(STATE["id"], limit=1, _request_timeout=TIMEOUT)
    eq(resp.status_code, 200, "status")
    body = raw_json(resp)
    eq(body.get("object"), "list", "activity raw 'object'")
    eq(body.get("has_more"), True, "activity raw 'has_more' (created and updated, one per page)")
    page = resp.data
    eq(len(page.data), 1, "activity page size")
    newest = page.data[0]
    eq(newest.type, "customer.updated", "newest activity type")
    check(isinstance(newest.created_at, datetime.datetime), f"activity created_at: {newest.created_at!r}")
    eq(page.more_starting_after, newest.id, "more_starting_after")
    rest = API.list_customer_activity(
        STATE["id"], limit=10, starting_after_id=page.more_starting_after, _request_timeout=TIMEOUT
    )
    eq([a.type for a in rest.data], ["customer.created"], "second page")
    eq(rest.has_more, False, "second page has_more")
    eq(rest.data[0].data["data"]["customer"]["id"], STATE["id"], "activity data.data.customer.id")


def test_permanent_deletion():
    source_id = f"{SOURCE_ID}-erase"
    c = API.create_customer(
        CustomersCreateRequestBody(source_id=source_id, name=NAME, email=EMAIL, metadata=METADATA),
        _request_timeout=TIMEOUT,
    )
    resp = API.customer_permanently_deletion_with_http_info(source_id, _request_timeout=TIMEOUT)
    eq(resp.status_code, 200, "status")
    d = resp.data
    check(isinstance(d.id, str) and d.id.startswith("del_"), f"deletion id: {d.id!r}")
    eq(d.related_object_id, c.id, "related_object_id")
    eq((d.related_object, d.status, d.object), ("customer", "DONE", "pernament_deletion"), "deletion fields")
    check(isinstance(d.created_at, datetime.datetime), f"created_at: {d.created_at!r}")
    eq(d.data_json.customer, 1, "data_json.customer")
    eq(d.data_json.customer_events, 1, "data_json.customer_events (customer.created)")
    for call in (lambda: API.get_customer(c.id, _request_timeout=TIMEOUT),
                 lambda: API.list_customer_activity(source_id, _request_timeout=TIMEOUT),
                 lambda: API.customer_permanently_deletion(c.id, _request_timeout=TIMEOUT)):
        try:
            call()
        except NotFoundException:
            continue
        raise Failure("the customer is still there after a permanent deletion (expected 404)")


def test_delete_customer():
    need("id")
    API.delete_customer(STATE["id"], _request_timeout=TIMEOUT)
    STATE["deleted"] = True
    try:
        API.get_customer(STATE["id"], _request_timeout=TIMEOUT)
    except NotFoundException:
        return
    raise Failure("customer still readable after delete (expected 404)")


TESTS = [
    test_create_customer,
    test_create_response_raw_shape,
    test_get_customer_by_id,
    test_get_customer_by_source_id,
    test_list_customers_finds_created,
    test_list_customers_respects_limit,
    test_update_customer,
    test_get_after_update,
    test_get_unknown_customer_404,
    test_wrong_token_401,
    test_list_customer_activity,
    test_permanent_deletion,
    test_delete_customer,
]


def describe(exc):
    if isinstance(exc, Failure):
        return str(exc)
    if isinstance(exc, ApiException):
        return f"{type(exc).__name__}: HTTP {exc.status} {exc.reason}; body: {exc.body!r}"
    # pydantic ValidationError etc.: the server's JSON did not fit the SDK model
    return f"{type(exc).__name__}: {exc}"


def main():
    print(f"Tessera customers SDK test against {BASE_URL} (voucherify SDK, source_id={SOURCE_ID})")
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
        if "id" in STATE and "deleted" not in STATE:  # best-effort cleanup
            try:
                API.delete_customer(STATE["id"], _request_timeout=TIMEOUT)
            except Exception:  # noqa: BLE001
                pass
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
