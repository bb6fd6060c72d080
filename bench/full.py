#!/usr/bin/env python3
"""Helpers of bench/full.sh (see there): the project's key, the codes each scenario gets,
the campaign-generation run and the collected results.

Usage:
  full.py project URL OUT_DIR            raise the seeds project's budgets, write OUT_DIR/credentials
  full.py codes DB PROJECT_ID OUT_DIR WARMUP DURATION VALIDATE_CODES PLAN...
                                         PLAN is NAME:RATE for each run that consumes codes, in
                                         run order; its codes go to OUT_DIR/NAME.txt
  full.py campaign URL CREDENTIALS COUNT JSON_OUT LABEL
  full.py results OUT_DIR COMMIT MODEL SMOKE
Management credentials come from TESSERA_MANAGEMENT_ID/TOKEN.
"""

import glob
import json
import math
import os
import sqlite3
import sys
import time
import urllib.error
import urllib.request

# The most the server accepts for each budget (tessera_domain::project): the limiter still
# runs on every request, but the benchmark measures the engine, not a tenant's budget.
BUDGETS = {"per_minute": 100_000_000, "burst": 100_000_000, "max_in_flight": 100_000}
PROJECT = "seeds"
CART_LINES = 5
POLL_TIMEOUT_S = 600


def call(url, method="GET", body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        sys.exit(f"{method} {url} -> {e.code}: {e.read()[:500].decode(errors='replace')}")


def project(url, out_dir):
    mgmt = {"X-Management-Id": os.environ["TESSERA_MANAGEMENT_ID"], "X-Management-Token": os.environ["TESSERA_MANAGEMENT_TOKEN"]}
    found = [p for p in call(f"{url}/management/v1/projects", headers=mgmt)["data"] if p["name"] == PROJECT]
    if len(found) != 1:
        sys.exit(f"expected one project named {PROJECT!r} (bench/dataset.py), found {len(found)}")
    pid = found[0]["id"]
    # bench/dataset.py sets the rates but not the in-flight cap, whose default (256) a
    # higher connection count would reach.
    call(f"{url}/management/v1/projects/{pid}", "PUT", {"rate_limits": BUDGETS}, mgmt)
    # The dataset's own key was shown once and is gone; a second key of the same project
    # sees the same data.
    key = call(f"{url}/management/v1/projects/{pid}/api-keys", "POST", {"name": "bench/full.sh", "type": "server"}, mgmt)
    with open(os.path.join(out_dir, "credentials"), "w") as f:
        f.write(f"{key['app_id']}\n{key['app_token']}\n{pid}\n")


def codes_for(rate, warmup, duration):
    # As tessera-loadgen counts them: the warm-up's flows and the measured ones.
    return math.ceil(warmup * rate) + math.ceil(duration * rate)


def codes(db_path, project_id, out_dir, warmup, duration, validate_codes, plan):
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    # Publication order, so the same dataset always hands out the same codes.
    published = db.execute(
        "SELECT v.code, c.source_id FROM publications p "
        "JOIN vouchers v ON v.project_id = p.project_id AND v.id = p.voucher_id "
        "JOIN customers c ON c.project_id = p.project_id AND c.id = p.customer_id "
        "WHERE p.project_id = ? AND v.redeemed_quantity = 0 ORDER BY p.created_at, p.rowid",
        (project_id,)).fetchall()
    products = [r[0] for r in db.execute(
        "SELECT source_id FROM products WHERE project_id = ? AND source_id IS NOT NULL ORDER BY source_id LIMIT ?",
        (project_id, CART_LINES))]
    if len(products) < CART_LINES:
        sys.exit(f"the dataset has {len(products)} products; the cart needs {CART_LINES}")
    if any("," in code for code, _ in published):
        sys.exit("a published code holds a comma, which the codes file cannot carry")
    runs = [(name, float(r)) for name, r in (p.rsplit(":", 1) for p in plan)]
    need = validate_codes + sum(codes_for(r, warmup, duration) for _, r in runs)
    if need > len(published):
        sys.exit(f"the runs need {need:,} distinct published codes (validate {validate_codes:,}, then one per redeem "
                 f"and checkout flow, warm-up included) but the dataset has {len(published):,} unredeemed: raise "
                 f"BENCH_MEMBERS or lower the rates, the duration or BENCH_VALIDATE_CODES")

    def write(name, rows):
        with open(os.path.join(out_dir, name), "w") as f:
            f.writelines(f"{code},{customer}\n" for code, customer in rows)

    # Disjoint slices: validation does not use a code up, but a code another scenario
    # redeemed would no longer validate.
    write("validate.txt", published[:validate_codes])
    start = validate_codes
    for name, rate in runs:
        n = codes_for(rate, warmup, duration)
        write(f"{name}.txt", published[start:start + n])
        start += n
    with open(os.path.join(out_dir, "customers.txt"), "w") as f:
        f.writelines(f"{customer}\n" for _, customer in published)
    with open(os.path.join(out_dir, "products"), "w") as f:
        f.write(",".join(products) + "\n")
    print(f"{len(published):,} published codes: {need:,} handed out, to {len({c for _, c in published}):,} customers",
          file=sys.stderr)


def campaign(url, credentials, count, json_out, label):
    with open(credentials) as f:
        app_id, app_token = f.read().split()[:2]
    auth = {"X-App-Id": app_id, "X-App-Token": app_token}

    def api(path, method="GET", body=None):
        return call(url + path, method, body, auth)

    name = f"full-gen-{count}-{int(time.time())}"
    # One client creates the campaign and polls every 10 ms, so the time is the server's
    # work plus one request and at most one polling interval (as bench/codegen.sh).
    start = time.monotonic()
    created = api("/v1/campaigns", "POST", {"name": name, "vouchers_count": count, "voucher": {
        "type": "DISCOUNT_VOUCHER", "discount": {"type": "PERCENT", "percent_off": 10}, "code_config": {"length": 10}}})
    # The list does not say which campaign an action generates for; nothing else in this
    # run generates codes, so ours is the one generation created with or after the campaign.
    actions = api("/v1/async-actions?limit=10")["async_actions"]
    ours = [a for a in actions if a["type"] == "CAMPAIGN.VOUCHERS_GENERATE" and a["created_at"] >= created["created_at"]]
    if len(ours) != 1:
        sys.exit(f"expected one generation action for campaign {created['id']} among the newest async actions: {actions}")
    deadline = start + POLL_TIMEOUT_S
    while True:
        action = api(f"/v1/async-actions/{ours[0]['id']}")
        if action["status"] == "DONE":
            break
        if action["status"] == "FAILED" or time.monotonic() > deadline:
            sys.exit(f"generation did not finish: {action}")
        time.sleep(0.01)
    wall = time.monotonic() - start
    generated = api(f"/v1/campaigns/{created['id']}")["vouchers_count"]
    errors = {} if generated == count else {f"generated_{generated}": 1}
    ms = round(wall * 1000, 3)
    # The loadgen's report shape, so the run sits in the same table: one "request" whose
    # latency is the wall time, and codes per second as the achieved rate.
    report = {"scenario": "campaign-100k", "label": label, "rate_target": 0, "achieved_rps": round(count / wall, 3),
              "duration_s": round(wall, 3), "requests": 1, "ok": 1 if not errors else 0, "errors": errors,
              "latency_ms": {"p50": ms, "p95": ms, "p99": ms, "p999": ms, "max": ms, "mean": ms},
              "scheduler_lag_ms": {"p99": 0, "max": 0},
              "codes": count, "processing_time_ms": (action.get("result") or {}).get("processing_time_ms")}
    with open(json_out, "w") as f:
        json.dump(report, f, indent=2)
    err = "0" if not errors else ", ".join(f"{k}: {v}" for k, v in errors.items())
    print(f"| {label} | campaign-100k | - | {count / wall:.0f} | {ms:.2f} | {ms:.2f} | {ms:.2f} | {ms:.2f} | {ms:.2f} | "
          f"{report['ok']} | {err} |")


def results(out, commit, model, smoke):
    runs = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(out, "runs", "*.json")), key=os.path.getmtime)]
    machine = {"nproc": os.cpu_count(), "model_name": model, "commit": commit}
    dataset = None
    if os.path.exists(os.path.join(out, "dataset.md")):
        dataset = open(os.path.join(out, "dataset.md")).read()
    json.dump({"machine": machine, "dataset": dataset, "runs": runs}, open(os.path.join(out, "results.json"), "w"), indent=2)
    if smoke == "1":
        bad = [f"{r['label']}: ok={r['ok']} errors={r['errors']}" for r in runs if r["ok"] == 0 or r["errors"]]
        if bad:
            sys.exit("smoke run failed:\n  " + "\n  ".join(bad))
        print("smoke run passed")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "project":
        project(*args)
    elif cmd == "codes":
        db, pid, out_dir, warmup, duration, validate_codes, *plan = args
        codes(db, pid, out_dir, float(warmup), float(duration), int(validate_codes), plan)
    elif cmd == "campaign":
        url, credentials, count, json_out, label = args
        campaign(url, credentials, int(count), json_out, label)
    elif cmd == "results":
        results(*args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
