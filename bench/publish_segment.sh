#!/usr/bin/env bash
# Segment publication benchmark (the seeds' "60,000 codes published to a 60,000-customer
# segment"): a release server on a fresh embedded database with BENCH_MEMBERS customers in
# region "north" plus BENCH_OTHERS elsewhere, an auto-update segment on that metadata and
# a campaign of BENCH_CODES codes. Times POST /v1/segments/{id}/publications until its
# async action is DONE, then checks in the database that every member holds exactly one
# code of the campaign and that no code went to two customers.
#
# Usage: bench/publish_segment.sh
# Environment: BENCH_MEMBERS [60000]  BENCH_OTHERS [10000]  BENCH_CODES [100000]  BENCH_PORT [18600]
set -euo pipefail
cd "$(dirname "$0")/.."
members=${BENCH_MEMBERS:-60000}
others=${BENCH_OTHERS:-10000}
codes=${BENCH_CODES:-100000}

cargo build --release --locked -p tessera >/dev/null 2>&1 ||
  { echo "release build failed; run: cargo build --release --locked -p tessera" >&2; exit 1; }
out=bench/out/publish-segment-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
work=$(mktemp -d)
trap 'if [ -n "${pid:-}" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
port=${BENCH_PORT:-18600}
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
url=http://127.0.0.1:$port
export TESSERA_MANAGEMENT_ID=bench TESSERA_MANAGEMENT_TOKEN=bench-management-token
target/release/tessera serve --listen "127.0.0.1:$port" --data-dir "$work/data" --log-level warn >"$out/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -fsS "$url/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done

commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates Cargo.lock 2>/dev/null || echo "-dirty")
BENCH_URL=$url BENCH_DB=$work/data/tessera.db BENCH_MEMBERS=$members BENCH_OTHERS=$others BENCH_CODES=$codes \
  BENCH_COMMIT=$commit python3 - <<'PY' | tee "$out/results.md"
import http.client, json, os, sqlite3, threading, time, urllib.parse

url = urllib.parse.urlparse(os.environ["BENCH_URL"])
members, others, codes = (int(os.environ[k]) for k in ("BENCH_MEMBERS", "BENCH_OTHERS", "BENCH_CODES"))

class Conn:
    """A keep-alive connection that reconnects when the server has closed an idle one."""
    def __init__(self):
        self.c = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    def send(self, method, path, body, headers):
        for attempt in (0, 1):
            try:
                self.c.request(method, path, body=body, headers=headers)
                return self.c.getresponse()
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                if attempt:
                    raise
                self.c.close()
                self.c = http.client.HTTPConnection(url.hostname, url.port, timeout=120)

def request(conn, method, path, body=None, headers=None):
    r = conn.send(method, path, json.dumps(body) if body is not None else None, headers or {})
    data = r.read()
    if r.status >= 300:
        raise SystemExit(f"{method} {path}: {r.status} {data[:300]!r}")
    return json.loads(data) if data else None

def connect():
    return Conn()

c = connect()
mgmt = {"X-Management-Id": "bench", "X-Management-Token": "bench-management-token", "content-type": "application/json"}
proj = request(c, "POST", "/management/v1/projects", {"name": "bench", "rate_limits": {"per_minute": 100000000, "burst": 100000000}}, mgmt)
key = proj["server_side_key"]
auth = {"X-App-Id": key["app_id"], "X-App-Token": key["app_token"], "content-type": "application/json"}

# Customers through the API, eight keep-alive connections at once.
total = members + others
def create(start, step):
    conn = connect()
    for i in range(start, total, step):
        region = "north" if i < members else "south"
        request(conn, "POST", "/v1/customers", {"source_id": f"cust-{i:07d}", "email": f"c{i}@example.com",
                "address": {"country": "PL"}, "metadata": {"region": region}}, auth)
t0 = time.time()
threads = [threading.Thread(target=create, args=(k, 8)) for k in range(8)]
for t in threads: t.start()
for t in threads: t.join()
customers_s = time.time() - t0

def wait(action):
    while True:
        a = request(c, "GET", f"/v1/async-actions/{action}", None, auth)
        if a["status"] in ("DONE", "FAILED"):
            return a
        time.sleep(0.05)

t0 = time.time()
request(c, "POST", "/v1/campaigns", {"name": "bench-segment", "vouchers_count": codes, "voucher": {"type": "DISCOUNT_VOUCHER",
        "discount": {"type": "PERCENT", "percent_off": 10}, "redemption": {"quantity": 1}, "code_config": {"length": 10}}}, auth)
while request(c, "GET", "/v1/campaigns/bench-segment", None, auth)["vouchers_generation_status"] != "DONE":
    time.sleep(0.1)
campaign_s = time.time() - t0

t0 = time.time()
seg = request(c, "POST", "/v1/segments", {"name": "North", "type": "auto-update",
              "filter": {"junction": "and", "metadata.region": {"conditions": {"$is": ["north"]}}}}, auth)
sync = wait(seg["async_action_id"])
sync_s = time.time() - t0
seg = request(c, "GET", f"/v1/segments/{seg['id']}", None, auth)
assert seg["customers_count"] == members, seg

t0 = time.time()
action = request(c, "POST", f"/v1/segments/{seg['id']}/publications", {"campaign": "bench-segment", "channel": "bench"}, auth)
done = wait(action["async_action_id"])
publish_s = time.time() - t0
assert done["status"] == "DONE", done

db = sqlite3.connect(os.environ["BENCH_DB"])
n, people, vouchers = db.execute(
    "SELECT COUNT(*), COUNT(DISTINCT customer_id), COUNT(DISTINCT voucher_id) FROM publications").fetchone()
held = db.execute("SELECT COUNT(*) FROM vouchers WHERE holder_id IS NOT NULL").fetchone()[0]
outside = db.execute("SELECT COUNT(*) FROM publications WHERE customer_id NOT IN "
                     "(SELECT customer_id FROM segment_members WHERE segment_id = ?)", (seg["id"],)).fetchone()[0]
ok = n == members and people == members and vouchers == members and held == members and outside == 0
cpu = os.cpu_count()
model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
print("# Tessera segment publication benchmark\n")
print(f"- date: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, commit: {os.environ['BENCH_COMMIT']}")
print(f"- machine: {cpu} CPUs, {model}; embedded SQLite; client on the same machine")
print(f"- data: {total} customers ({members} in region north), one campaign of {codes} codes\n")
print("| step | time |")
print("|---|---|")
print(f"| {total} customers created through POST /v1/customers (8 connections) | {customers_s:.1f} s ({total / customers_s:.0f}/s) |")
print(f"| campaign of {codes} codes generated | {campaign_s:.2f} s |")
print(f"| auto-update segment: initial sync of {total} customers | {sync_s:.2f} s |")
print(f"| **{members} codes published to the {members}-member segment** | **{publish_s:.2f} s ({members / publish_s:.0f}/s)** |")
print()
print(f"- check: {n} publications, {people} distinct customers, {vouchers} distinct codes, {held} codes held, "
      f"{outside} outside the segment: {'OK' if ok else 'FAILED'}")
if not ok:
    raise SystemExit(1)
PY
echo
echo "results: $out"
