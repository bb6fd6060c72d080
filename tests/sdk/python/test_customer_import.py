#!/usr/bin/env python3
"""Customer (and product) imports driven by the official Voucherify Python SDK
(voucherify==6.1.1, see requirements.txt): a CSV upload through
`CustomersApi.import_customers_using_csv`, polled with
`AsyncActionsApi.get_async_action` until DONE, its result and the imported customers
checked with `get_customer` and `list_customers`; the same file again (idempotent); a
JSON bulk update through `update_customers_in_bulk`; products through
`ProductsApi.import_products_using_csv`.

Usage:
    TESSERA_URL=http://127.0.0.1:8080 TESSERA_APP_ID=... TESSERA_APP_TOKEN=... \
        python tests/sdk/python/test_customer_import.py

The last line printed is "<n> passed, <m> failed"; the exit status is 0 only if
nothing failed (2 if the environment is incomplete).
"""

import os
import sys
import time
import traceback
import uuid

import voucherify
from voucherify.exceptions import ApiException
from voucherify.models import CustomersUpdateInBulkRequestBody

TIMEOUT = 30.0  # seconds, per request
ACTION_DEADLINE = 60.0  # seconds for an async action to finish


def env(name):
    value = os.environ.get(name, "").strip()
    if not value:
        print(f"environment variable {name} is not set", file=sys.stderr)
        print("0 passed, 1 failed")
        sys.exit(2)
    return value


BASE_URL = env("TESSERA_URL").rstrip("/")
CONFIG = voucherify.Configuration(
    host=BASE_URL,
    api_key={"X-App-Id": env("TESSERA_APP_ID"), "X-App-Token": env("TESSERA_APP_TOKEN")},
)
CLIENT = voucherify.ApiClient(CONFIG)
CUSTOMERS = voucherify.CustomersApi(CLIENT)
PRODUCTS = voucherify.ProductsApi(CLIENT)
ACTIONS = voucherify.AsyncActionsApi(CLIENT)

RUN = uuid.uuid4().hex[:10]
ROWS = 250  # good rows in the CSV
BAD_ROWS = {7: "email", 120: "malformed CSV line"}  # 1-based data row -> expected reason

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


def sid(i):
    return f"imp-{RUN}-{i:04d}"


def customers_csv(name_prefix):
    lines = ["source_id,name,email,region,Address_Country"]
    for row in range(1, ROWS + len(BAD_ROWS) + 1):
        if BAD_ROWS.get(row) == "email":
            lines.append(f"{sid(row)},{name_prefix} {row},not-an-email,EU,PL")
        elif BAD_ROWS.get(row) == "malformed CSV line":
            lines.append(f"{sid(row)},{name_prefix} {row}")
        else:
            lines.append(f"{sid(row)},{name_prefix} {row},c{row}.{RUN}@example.com,{'EU' if row % 2 else 'US'},PL")
    return ("\n".join(lines) + "\n").encode()


def wait_done(action_id):
    """Polls the async action through the SDK until DONE; returns the model."""
    deadline = time.monotonic() + ACTION_DEADLINE
    seen = []
    while time.monotonic() < deadline:
        a = ACTIONS.get_async_action(action_id, _request_timeout=TIMEOUT)
        eq(a.id, action_id, "async action id")
        eq(a.object, "async_action", "async action object")
        check(a.progress is not None and 0 <= a.progress <= 100, f"progress out of range: {a.progress!r}")
        seen.append(a.status)
        check(a.status != "FAILED", f"async action failed: {a.result!r}")
        if a.status == "DONE":
            eq(a.progress, 100, "progress when DONE")
            eq(a.operation_status, "SUCCESS", "operation_status when DONE")
            return a
        time.sleep(0.1)
    raise Failure(f"async action {action_id} not DONE within {ACTION_DEADLINE} s (statuses seen: {seen[-5:]})")


def customer_total():
    return CUSTOMERS.list_customers(limit=1, _request_timeout=TIMEOUT).total


# ---------------------------------------------------------------- test cases

def test_import_customers_using_csv():
    STATE["total_before"] = customer_total()
    resp = CUSTOMERS.import_customers_using_csv_with_http_info(file=customers_csv("Customer"), _request_timeout=TIMEOUT)
    eq(resp.status_code, 202, "status")
    action_id = resp.data.async_action_id
    check(isinstance(action_id, str) and action_id.startswith("aa_"), f"async_action_id: {action_id!r}")
    STATE["action"] = action_id


def test_async_action_polled_until_done():
    a = wait_done(need("action"))
    eq(a.type, "CUSTOMERS.IMPORT_CSV", "type")
    r = a.result
    eq(r.get("done_count"), ROWS, "done_count")
    eq(r.get("failed_count"), len(BAD_ROWS), "failed_count")
    eq(r.get("message"), f"{ROWS} customer(s) imported successfully, {len(BAD_ROWS)} failed.", "message")
    failed = r.get("failed") or []
    eq([f.get("row") for f in failed], sorted(BAD_ROWS), "failed rows")
    for f in failed:
        check(BAD_ROWS[f["row"]] in f.get("reason", ""), f"row {f['row']} reason: {f.get('reason')!r}")
        eq(f.get("source_id"), sid(f["row"]), f"row {f['row']} source_id")
    STATE["done"] = True


def test_imported_customers_exist():
    need("done")
    c = CUSTOMERS.get_customer(sid(1), _request_timeout=TIMEOUT)
    eq(c.source_id, sid(1), "source_id")
    eq(c.name, "Customer 1", "name")
    eq(c.email, f"c1.{RUN}@example.com", "email")
    eq(c.metadata, {"region": "EU"}, "metadata")
    eq(c.address.country, "PL", "address.country")
    STATE["first_id"] = c.id
    last = CUSTOMERS.get_customer(sid(ROWS + len(BAD_ROWS)), _request_timeout=TIMEOUT)
    eq(last.metadata, {"region": "US" if (ROWS + len(BAD_ROWS)) % 2 == 0 else "EU"}, "last metadata")
    for row in BAD_ROWS:
        try:
            CUSTOMERS.get_customer(sid(row), _request_timeout=TIMEOUT)
        except ApiException as exc:
            eq(exc.status, 404, f"refused row {row}")
        else:
            raise Failure(f"refused row {row} was imported")
    eq(customer_total(), STATE["total_before"] + ROWS, "list total")


def test_list_customers_shows_imported():
    need("done")
    lst = CUSTOMERS.list_customers(limit=100, _request_timeout=TIMEOUT)
    ours = [c for c in lst.customers or [] if (c.source_id or "").startswith(f"imp-{RUN}-")]
    check(len(ours) == min(100, len(lst.customers or [])), "the newest customers are the imported ones")


def test_rerun_is_idempotent_and_updates():
    need("done")
    resp = CUSTOMERS.import_customers_using_csv(file=customers_csv("Renamed"), _request_timeout=TIMEOUT)
    a = wait_done(resp.async_action_id)
    eq(a.result.get("done_count"), ROWS, "done_count of the re-run")
    eq(customer_total(), STATE["total_before"] + ROWS, "list total after the re-run")
    c = CUSTOMERS.get_customer(sid(1), _request_timeout=TIMEOUT)
    eq(c.id, need("first_id"), "same customer")
    eq(c.name, "Renamed 1", "updated name")


def test_update_customers_in_bulk():
    need("done")
    body = [
        CustomersUpdateInBulkRequestBody(source_id=sid(2), name="Bulk Two", metadata={"region": "EU", "vip": True}),
        CustomersUpdateInBulkRequestBody(source_id=f"bulk-{RUN}", name="Bulk New", email=f"bulk.{RUN}@example.com"),
        CustomersUpdateInBulkRequestBody(source_id=f"bulk-bad-{RUN}", email="nope"),
    ]
    resp = CUSTOMERS.update_customers_in_bulk(body, _request_timeout=TIMEOUT)
    a = wait_done(resp.async_action_id)
    eq(a.type, "CUSTOMERS.BULK_UPDATE", "type")
    eq(a.result.get("done_count"), 2, "done_count")
    eq(a.result.get("failed_count"), 1, "failed_count")
    eq([e.get("source_id") for e in a.result.get("errors") or []], [f"bulk-bad-{RUN}"], "errors")
    c = CUSTOMERS.get_customer(sid(2), _request_timeout=TIMEOUT)
    eq((c.name, c.metadata), ("Bulk Two", {"region": "EU", "vip": True}), "bulk-updated customer")
    eq(CUSTOMERS.get_customer(f"bulk-{RUN}", _request_timeout=TIMEOUT).name, "Bulk New", "bulk-created customer")


def test_import_products_using_csv():
    csv = f"name,source_id,price,attributes\nLamp,lamp-{RUN},1999,\"color,size\"\n,nameless-{RUN},1,\n".encode()
    resp = PRODUCTS.import_products_using_csv(file=csv, _request_timeout=TIMEOUT)
    a = wait_done(resp.async_action_id)
    eq(a.type, "PRODUCTS.IMPORT_CSV", "type")
    eq((a.result.get("done_count"), a.result.get("failed_count")), (1, 1), "counts")
    p = PRODUCTS.get_product(f"lamp-{RUN}", _request_timeout=TIMEOUT)
    eq((p.name, p.price, p.attributes), ("Lamp", 1999, ["color", "size"]), "imported product")


TESTS = [
    test_import_customers_using_csv,
    test_async_action_polled_until_done,
    test_imported_customers_exist,
    test_list_customers_shows_imported,
    test_rerun_is_idempotent_and_updates,
    test_update_customers_in_bulk,
    test_import_products_using_csv,
]


def describe(exc):
    if isinstance(exc, Failure):
        return str(exc)
    if isinstance(exc, ApiException):
        return f"{type(exc).__name__}: HTTP {exc.status} {exc.reason}; body: {exc.body!r}"
    return f"{type(exc).__name__}: {exc}"


def main():
    print(f"Tessera customer import SDK test against {BASE_URL} (voucherify SDK, run {RUN})")
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
