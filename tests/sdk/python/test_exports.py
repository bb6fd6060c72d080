#!/usr/bin/env python3
"""CSV exports: a compatibility check for Tessera, driven by the official Voucherify
Python SDK (voucherify==6.1.1, see requirements.txt).

Usage:
    TESSERA_URL=http://127.0.0.1:8080 TESSERA_APP_ID=... TESSERA_APP_TOKEN=... \
        python tests/sdk/python/test_exports.py

Flows covered (every check is a named test case, run in order; a case whose
prerequisite failed fails with "prerequisite missing"):
  a) POST /v1/customers            three customers, one with a name that needs CSV quoting
     POST /v1/vouchers/{code}      two standalone codes
  b) POST /v1/exports              customer export with fields, order created_at and a
                                   created_at filter: the SCHEDULED export object
  c) GET  /v1/exports/{id}         polled until DONE; result.url is an absolute URL
  d) the URL, fetched with urllib and no API key: the CSV, header = fields, one row per
     customer in creation order, the quoted name read back intact
  e) GET  /v1/exports/{id}?token=  the SDK's own download_export: the same CSV
  f) POST /v1/exports              voucher export with the default fields (no parameters),
                                   metadata filter; its CSV has the spec's default header
  g) GET  /v1/exports              the list holds both exports, newest first
  h) POST /v1/exports              unknown field: 400 invalid_export_fields
  i) DELETE /v1/exports/{id}       204; GET then 404; the URL then 401

The last line printed is "<n> passed, <m> failed"; the exit status is 0 only if
nothing failed (2 if the environment is incomplete). Only the SDK and, for the
download URL (which needs no API key, like Voucherify's download host), urllib talk to
the server.
"""

import csv
import datetime
import io
import json
import os
import sys
import time
import traceback
import urllib.error
import urllib.request
import uuid

import voucherify
from voucherify.exceptions import ApiException
from voucherify.models import (
    CustomersCreateRequestBody,
    Discount,
    ExportsCreateRequestBody,
    ExportsCreateRequestBodyParameters,
    ParameterOrderListExports,
    VouchersCreateWithSpecificCodeRequestBody,
)

TIMEOUT = 15.0  # seconds, per request
EXPORT_WAIT = 20.0  # seconds for an export to finish


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
CUSTOMERS = voucherify.CustomersApi(CLIENT)
VOUCHERS = voucherify.VouchersApi(CLIENT)
EXPORTS = voucherify.ExportsApi(CLIENT)

RUN = uuid.uuid4().hex[:10].upper()
CUSTOMERS_IN = [
    (f"py-exp-a-{RUN}", 'Ann "the first", Esq.', "ann@example.com"),
    (f"py-exp-b-{RUN}", "Bob\nsecond line", "bob@example.com"),
    (f"py-exp-c-{RUN}", "Cleo", "cleo@example.com"),
]
CUSTOMER_FIELDS = ["source_id", "name", "email", "created_at"]
CODES = [f"PYEXP{RUN}-1", f"PYEXP{RUN}-2"]

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
    return STATE[keys[0]] if len(keys) == 1 else tuple(STATE[k] for k in keys)


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
    return body


def parse_csv(text):
    rows = list(csv.reader(io.StringIO(text, newline="")))
    check(rows, f"empty CSV: {text!r}")
    return rows[0], rows[1:]


def fetch(url):
    """GET without any API key; returns (status, body text, content type)."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:  # noqa: S310 - the server under test
            return resp.status, resp.read().decode("utf-8"), resp.headers.get("Content-Type")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8"), exc.headers.get("Content-Type")


def wait_done(export_id):
    deadline = time.monotonic() + EXPORT_WAIT
    while True:
        resp = EXPORTS.get_export_with_http_info(export_id, _request_timeout=TIMEOUT)
        ok_status(resp)
        e, raw = resp.data, raw_json(resp)
        eq(e.id, export_id, "export id")
        if e.status == "DONE":
            return e, raw
        check(e.status in ("SCHEDULED", "IN_PROGRESS"), f"export ended {e.status}: {raw}")
        check(time.monotonic() < deadline, f"export {export_id} still {e.status} after {EXPORT_WAIT} s")
        time.sleep(0.1)


def test_create_data():
    for source_id, name, email in CUSTOMERS_IN:
        resp = CUSTOMERS.create_customer_with_http_info(
            CustomersCreateRequestBody(source_id=source_id, name=name, email=email, metadata={"run": RUN}),
            _request_timeout=TIMEOUT,
        )
        ok_status(resp)
        time.sleep(0.005)  # distinct created_at, so the export order is unambiguous
    for code in CODES:
        resp = VOUCHERS.create_voucher_with_http_info(
            code,
            VouchersCreateWithSpecificCodeRequestBody(
                type="DISCOUNT_VOUCHER",
                discount=Discount(type="AMOUNT", amount_off=700),
                metadata={"run": RUN},
            ),
            _request_timeout=TIMEOUT,
        )
        ok_status(resp)
    STATE["data"] = True


def test_create_customer_export():
    need("data")
    since = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)).isoformat()
    body = ExportsCreateRequestBody(
        exported_object="customer",
        parameters=ExportsCreateRequestBodyParameters(
            order="created_at",
            fields=CUSTOMER_FIELDS,
            filters={"junction": "and", "created_at": {"conditions": {"$after": [since]}}},
        ),
    )
    resp = EXPORTS.create_export_with_http_info(body, _request_timeout=TIMEOUT)
    ok_status(resp)
    e, raw = resp.data, raw_json(resp)
    check(isinstance(e.id, str) and e.id.startswith("exp_"), f"export id: {e.id!r}")
    eq(e.object, "export", "object")
    eq(e.status, "SCHEDULED", "status")
    eq(e.exported_object, "customer", "exported_object")
    eq(e.channel, "API", "channel")
    eq(raw.get("result"), None, "raw result while scheduled")
    check(isinstance(e.created_at, datetime.datetime), f"created_at is not a date-time: {e.created_at!r}")
    eq(e.parameters.fields, CUSTOMER_FIELDS, "parameters.fields")
    eq(e.parameters.order, "created_at", "parameters.order")
    STATE["customer_export"] = e.id


def test_customer_export_done():
    export_id = need("customer_export")
    e, raw = wait_done(export_id)
    url = raw.get("result", {}).get("url")
    check(isinstance(url, str) and url.startswith(BASE_URL + "/"), f"result.url must be absolute on {BASE_URL}: {url!r}")
    eq(e.result.url, url, "result.url in the model")
    check("token=" in url, f"result.url carries no token: {url}")
    STATE["customer_url"] = url
    STATE["customer_token"] = url.split("token=", 1)[1]


def test_download_url_without_keys():
    url = need("customer_url")
    status, text, content_type = fetch(url)
    eq(status, 200, f"GET {url}")
    check(content_type.startswith("text/csv"), f"content type {content_type!r}")
    header, rows = parse_csv(text)
    eq(header, CUSTOMER_FIELDS, "CSV header")
    ours = [r for r in rows if r[0].endswith(RUN)]
    eq(len(ours), len(CUSTOMERS_IN), f"rows of this run in {rows!r}")
    eq([r[:3] for r in ours], [list(c) for c in CUSTOMERS_IN], "source_id, name, email in creation order")
    for r in ours:
        check(r[3].endswith("Z") and "T" in r[3], f"created_at cell: {r[3]!r}")
    STATE["customer_csv"] = text


def test_sdk_download_export():
    export_id, token, expected = need("customer_export", "customer_token", "customer_csv")
    text = EXPORTS.download_export(export_id, token=token, _request_timeout=TIMEOUT)
    eq(text, expected, "download_export body")


def test_voucher_export_defaults():
    need("data")
    body = ExportsCreateRequestBody(
        exported_object="voucher",
        parameters=ExportsCreateRequestBodyParameters(filters={"metadata.run": {"conditions": {"$is": [RUN]}}}),
    )
    e = EXPORTS.create_export(body, _request_timeout=TIMEOUT)
    eq(e.status, "SCHEDULED", "status")
    e, raw = wait_done(e.id)
    eq(e.parameters.fields, ["code", "voucher_type", "value", "discount_type"], "default fields")
    status, text, _ = fetch(raw["result"]["url"])
    eq(status, 200, "download")
    header, rows = parse_csv(text)
    eq(header, ["code", "voucher_type", "value", "discount_type"], "default header")
    eq(sorted(rows), [[c, "DISCOUNT_VOUCHER", "700", "AMOUNT"] for c in CODES], "voucher rows")
    STATE["voucher_export"] = e.id


def test_list_exports():
    customer_export, voucher_export = need("customer_export", "voucher_export")
    resp = EXPORTS.list_exports_with_http_info(
        limit=100, order=ParameterOrderListExports("-created_at"), _request_timeout=TIMEOUT
    )
    ok_status(resp)
    raw = raw_json(resp)
    eq(raw.get("object"), "list", "object")
    eq(raw.get("data_ref"), "exports", "data_ref")
    ids = [x.id for x in resp.data.exports]
    check(customer_export in ids and voucher_export in ids, f"both exports listed: {ids}")
    check(ids.index(voucher_export) < ids.index(customer_export), "newest first")
    check(isinstance(resp.data.total, int) and resp.data.total >= 2, f"total {resp.data.total!r}")


def test_unknown_field_refused():
    # The SDK's model refuses an unknown field itself, so this one request goes out raw.
    req = urllib.request.Request(
        BASE_URL + "/v1/exports",
        data=json.dumps({"exported_object": "order", "parameters": {"fields": ["id", "favourite_colour"]}}).encode(),
        headers={"Content-Type": "application/json", "X-App-Id": APP_ID, "X-App-Token": APP_TOKEN},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:  # noqa: S310 - the server under test
            raise Failure(f"an unknown field was accepted: HTTP {resp.status}")
    except urllib.error.HTTPError as exc:
        eq(exc.code, 400, "status")
        body = json.loads(exc.read().decode("utf-8"))
    eq(body.get("key"), "invalid_export_fields", "error key")
    check("source_id" in body.get("details", ""), f"details list the allowed fields: {body}")


def test_delete_export():
    export_id, url = need("customer_export", "customer_url")
    resp = EXPORTS.delete_export_with_http_info(export_id, _request_timeout=TIMEOUT)
    eq(resp.status_code, 204, "DELETE status")
    try:
        EXPORTS.get_export(export_id, _request_timeout=TIMEOUT)
        raise Failure("a deleted export is still readable")
    except ApiException as exc:
        eq(exc.status, 404, "GET after DELETE")
        body = error_body(exc)
        eq(body.get("key"), "not_found", "error key")
    status, text, _ = fetch(url)
    eq(status, 401, f"download after DELETE: {text}")


TESTS = [
    test_create_data,
    test_create_customer_export,
    test_customer_export_done,
    test_download_url_without_keys,
    test_sdk_download_export,
    test_voucher_export_defaults,
    test_list_exports,
    test_unknown_field_refused,
    test_delete_export,
]


def describe(exc):
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status}: {exc.body}"
    return f"{type(exc).__name__}: {exc}"


def main():
    print(f"Tessera exports SDK test against {BASE_URL} (voucherify SDK, run {RUN})")
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
