#!/usr/bin/env python3
"""Promotions for the qualification benchmark, through the public API: customers with a
region, validation rules of three kinds, and PROMOTION campaigns whose tiers use them.

Usage: promotions_setup.py URL CREDENTIALS_FILE TIERS CUSTOMERS
Tiers are spread over campaigns of 100; a third have no rule, a third an order-amount
threshold, a third a customer-region rule, so each qualification finds some tiers and
rejects others.
"""

import json
import sys
import time
import urllib.error
import urllib.request


def call(url, method="GET", body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        sys.exit(f"{method} {url} -> {e.code}: {e.read()[:500].decode(errors='replace')}")


def main():
    url, creds, tiers, customers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    app_id, app_token = open(creds).read().split()[:2]
    auth = {"X-App-Id": app_id, "X-App-Token": app_token}

    def api(path, method="GET", body=None):
        return call(url + path, method, body, auth)

    started = time.monotonic()
    for i in range(customers):
        api("/v1/customers", "POST", {"source_id": f"c-{i}", "metadata": {"region": f"r{i % 10}"}})
    thresholds = [api("/v1/validation-rules", "POST", {"name": f"over {t}", "rules": {"1": {"name": "order.amount", "conditions": {"$more_than": [t]}}}})["id"]
                  for t in range(10_000, 110_000, 10_000)]
    regions = [api("/v1/validation-rules", "POST", {"name": f"region r{r}", "rules": {"1": {"name": "customer.metadata", "property": "region", "conditions": {"$is": [f"r{r}"]}}}})["id"]
               for r in range(10)]
    made = 0
    campaign = 0
    while made < tiers:
        batch = []
        for k in range(min(100, tiers - made)):
            n = made + k
            tier = {"name": f"tier {n}", "action": {"discount": {"type": "PERCENT", "percent_off": 1 + n % 30}}}
            if n % 3 == 1:
                tier["validation_rules"] = [thresholds[n % len(thresholds)]]
            elif n % 3 == 2:
                tier["validation_rules"] = [regions[n % len(regions)]]
            batch.append(tier)
        api("/v1/campaigns", "POST", {"name": f"promo {campaign}", "campaign_type": "PROMOTION", "promotion": {"tiers": batch}})
        made += len(batch)
        campaign += 1
    print(f"created {customers} customers, {made} tiers in {campaign} campaigns in {time.monotonic() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
