#!/usr/bin/env python3
"""Permanent deletion of a heavy customer: a release server, one customer with N
redemptions (each with its event), then POST /v1/customers/{id}/permanent-deletion,
timed, with one unrelated checkout sent 100 ms into it to show what waits meanwhile.

Usage: bench/erase.py BINARY N [DATABASE_URL]   (see bench/erase.sh)
"""
import http.client
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time

BIN, N = sys.argv[1], int(sys.argv[2])
DB = sys.argv[3] if len(sys.argv) > 3 else ""
MGMT = {"X-Management-Id": "bench", "X-Management-Token": "bench-management-token-0123456789"}
env = dict(os.environ, TESSERA_MANAGEMENT_ID=MGMT["X-Management-Id"], TESSERA_MANAGEMENT_TOKEN=MGMT["X-Management-Token"])
work = tempfile.mkdtemp()
args = [BIN, "serve", "--listen", "127.0.0.1:0", "--log-level", "warn"]
args += ["--database-url", DB] if DB else ["--data-dir", work]
server = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
try:
    addr = next(l for l in server.stdout if l.startswith("tessera listening on ")).split()[-1]
    host, port = addr.replace("http://", "").split(":")

    def call(method, path, body=None, headers=None):
        c = http.client.HTTPConnection(host, int(port), timeout=600)
        h = {"Content-Type": "application/json", **(headers or {})}
        c.request(method, path, json.dumps(body) if body is not None else None, h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, json.loads(data) if data else None

    limits = {"per_minute": 100000000, "burst": 100000, "max_in_flight": 10000}
    _, proj = call("POST", "/management/v1/projects", {"name": "bench", "rate_limits": limits}, MGMT)
    key = {"X-App-Id": proj["server_side_key"]["app_id"], "X-App-Token": proj["server_side_key"]["app_token"]}
    _, cust = call("POST", "/v1/customers", {"source_id": "heavy@example.com", "name": "Heavy User",
                                            "email": "heavy@example.com", "metadata": {"tier": "gold"}}, key)
    call("POST", "/v1/vouchers/MANY", {"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 1},
                                       "redemption": {"quantity": None}}, key)
    todo = queue.Queue()
    for i in range(N):
        todo.put(i)
    errors = []

    def redeem_all():
        body = json.dumps({"redeemables": [{"object": "voucher", "id": "MANY"}], "customer": {"id": cust["id"]},
                           "order": {"amount": 100}})
        c = http.client.HTTPConnection(host, int(port), timeout=60)
        while True:
            try:
                todo.get_nowait()
            except queue.Empty:
                return
            try:
                c.request("POST", "/v1/redemptions", body, {"Content-Type": "application/json", **key})
                r = c.getresponse()
                r.read()
                if r.status != 200:
                    errors.append(r.status)
            except OSError as e:
                errors.append(str(e))
                c = http.client.HTTPConnection(host, int(port), timeout=60)

    started = time.time()
    workers = [threading.Thread(target=redeem_all) for _ in range(16)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(f"setup: {N} redemptions in {time.time() - started:.1f} s, {len(errors)} errors", flush=True)
    time.sleep(3)  # the relays catch up, so they do not compete with the deletion

    probe = {}

    def checkout_meanwhile():
        time.sleep(0.1)
        t = time.time()
        status, _ = call("POST", "/v1/redemptions", {"redeemables": [{"object": "voucher", "id": "MANY"}],
                                                      "order": {"amount": 100}}, key)
        probe["ms"], probe["status"] = (time.time() - t) * 1000, status

    prober = threading.Thread(target=checkout_meanwhile)
    prober.start()
    t = time.time()
    status, done = call("POST", f"/v1/customers/{cust['id']}/permanent-deletion", None, key)
    took = (time.time() - t) * 1000
    prober.join()
    print(f"permanent deletion: {status} in {took:.0f} ms; data_json {json.dumps((done or {}).get('data_json', done))}")
    print(f"a checkout sent 100 ms into it: {probe['status']} in {probe['ms']:.0f} ms")
finally:
    server.terminate()
    server.wait()
    shutil.rmtree(work, ignore_errors=True)
