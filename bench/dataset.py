#!/usr/bin/env python3
"""Builds and checks the seeds' dataset; driven by bench/dataset.sh (see there)."""

import json
import os
import random
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request

URL = os.environ["BENCH_URL"]
WORK = os.environ["BENCH_WORK"]
CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", "1000000"))
MEMBERS = int(os.environ.get("BENCH_MEMBERS", "60000"))
PRODUCTS = int(os.environ.get("BENCH_PRODUCTS", "200"))
CODES = int(os.environ.get("BENCH_CODES", "100000"))
OTHER_REGIONS = ["south", "east", "west", "centre"]
CITIES = {"north": ["Gdansk", "Szczecin", "Olsztyn"], "south": ["Krakow", "Katowice"], "east": ["Lublin", "Bialystok"],
          "west": ["Poznan", "Wroclaw"], "centre": ["Warsaw", "Lodz"]}


def call(path, method="GET", body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(URL + path, data=data, method=method,
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{method} {path}: {e.code} {e.read()[:300]!r}")


def rss_kib():
    with open(f"/proc/{os.environ['BENCH_PID']}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))


mgmt = {"X-Management-Id": "bench", "X-Management-Token": "bench-management-token"}
key = call("/management/v1/projects", "POST", {"name": "seeds", "rate_limits": {"per_minute": 100_000_000, "burst": 100_000_000}},
           mgmt)["server_side_key"]
auth = {"X-App-Id": key["app_id"], "X-App-Token": key["app_token"]}


def api(path, method="GET", body=None):
    return call(path, method, body, auth)


def upload(path, file):
    out = subprocess.run(["curl", "-fsS", "-H", f"X-App-Id: {key['app_id']}", "-H", f"X-App-Token: {key['app_token']}",
                          "-F", f"file=@{file}", URL + path], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def wait(action):
    while True:
        a = api(f"/v1/async-actions/{action}")
        if a["status"] in ("DONE", "FAILED"):
            if a["status"] != "DONE":
                raise SystemExit(f"action {action}: {a}")
            return a
        time.sleep(0.1)


# Deterministic data: the members are a seeded random sample of the customers.
rng = random.Random(20261122)
north = set(rng.sample(range(CUSTOMERS), MEMBERS))
customers_csv = os.path.join(WORK, "customers.csv")
with open(customers_csv, "w") as f:
    f.write("source_id,name,email,address_country,address_city,region\n")
    for i in range(CUSTOMERS):
        region = "north" if i in north else OTHER_REGIONS[i % 4]
        city = CITIES[region][i % len(CITIES[region])]
        f.write(f"cust-{i:07d},Customer {i},customer{i}@example.com,PL,{city},{region}\n")
products_csv = os.path.join(WORK, "products.csv")
with open(products_csv, "w") as f:
    f.write("source_id,name,price,region\n")
    for i in range(PRODUCTS):
        f.write(f"prod-{i:03d},Product {i},{1000 + 50 * i},{(['north'] + OTHER_REGIONS)[i % 5]}\n")

steps = []
rss0 = rss_kib()
t_all = time.time()

t0 = time.time()
a = wait(upload("/v1/customers/importCSV", customers_csv)["async_action_id"])
assert a["result"]["done_count"] == CUSTOMERS, a["result"]
steps.append((f"{CUSTOMERS:,} customers, CSV import (upload to DONE)", time.time() - t0))

t0 = time.time()
r = upload("/v1/products/importCSV", products_csv)
wait(r["async_action_id"])
steps.append((f"{PRODUCTS} products with region metadata, CSV import", time.time() - t0))

t0 = time.time()
api("/v1/campaigns", "POST", {"name": "seeds-discount", "vouchers_count": CODES, "voucher": {"type": "DISCOUNT_VOUCHER",
    "discount": {"type": "PERCENT", "percent_off": 10}, "redemption": {"quantity": 1}, "code_config": {"length": 10}}})
while api("/v1/campaigns/seeds-discount")["vouchers_generation_status"] != "DONE":
    time.sleep(0.05)
steps.append((f"campaign of {CODES:,} codes", time.time() - t0))

t0 = time.time()
seg = api("/v1/segments", "POST", {"name": "North", "type": "auto-update",
                                   "filter": {"junction": "and", "metadata.region": {"conditions": {"$is": ["north"]}}}})
wait(seg["async_action_id"])
seg = api(f"/v1/segments/{seg['id']}")
assert seg["customers_count"] == MEMBERS, seg
steps.append((f"auto-update segment over {CUSTOMERS:,} customers ({MEMBERS:,} members)", time.time() - t0))

t0 = time.time()
done = wait(api(f"/v1/segments/{seg['id']}/publications", "POST", {"campaign": "seeds-discount", "channel": "bench"})["async_action_id"])
publish_s = time.time() - t0
steps.append((f"**{MEMBERS:,} codes published to the segment**", publish_s))
total_s = time.time() - t_all
rss1 = rss_kib()

db = sqlite3.connect(os.environ["BENCH_DB"])
n, people, vouchers = db.execute(
    "SELECT COUNT(*), COUNT(DISTINCT customer_id), COUNT(DISTINCT voucher_id) FROM publications").fetchone()
held = db.execute("SELECT COUNT(*) FROM vouchers WHERE holder_id IS NOT NULL").fetchone()[0]
outside = db.execute("SELECT COUNT(*) FROM publications p WHERE NOT EXISTS (SELECT 1 FROM segment_members m "
                     "WHERE m.project_id = p.project_id AND m.segment_id = ? AND m.customer_id = p.customer_id)",
                     (seg["id"],)).fetchone()[0]
counts = db.execute("SELECT (SELECT COUNT(*) FROM customers), (SELECT COUNT(*) FROM products), "
                    "(SELECT COUNT(*) FROM vouchers)").fetchone()
ok = (n, people, vouchers, held, outside) == (MEMBERS, MEMBERS, MEMBERS, MEMBERS, 0) and \
    counts == (CUSTOMERS, PRODUCTS, CODES) and done["result"]["done_count"] == MEMBERS

model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
print("# Seeds dataset build\n")
print(f"- date: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, commit: {os.environ['BENCH_COMMIT']}")
print(f"- machine: {os.cpu_count()} CPUs, {model}; embedded SQLite; client on the same machine")
print("- command: bench/dataset.sh\n")
print("| step | time |")
print("|---|---:|")
for name, secs in steps:
    print(f"| {name} | {secs:.2f} s |")
print(f"| **whole dataset** | **{total_s:.1f} s** |")
print()
print(f"- server RSS: {rss0 // 1024} MiB before, {rss1 // 1024} MiB after")
print(f"- check: {counts[0]:,} customers, {counts[1]} products, {counts[2]:,} codes; {n:,} publications to {people:,} "
      f"distinct customers with {vouchers:,} distinct codes ({held:,} codes held), {outside} outside the segment: "
      f"{'OK' if ok else 'FAILED'}")
if not ok:
    raise SystemExit(1)
