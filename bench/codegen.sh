#!/usr/bin/env bash
# Code generation benchmark: campaigns of 100,000 and 1,000,000 codes through the public
# API (POST /v1/campaigns with vouchers_count), timed from the request to the async
# action's DONE, with the server's peak resident memory. Embedded SQLite, release build.
#
# Every count runs REPEAT times (default 3), each on a fresh server and database; the
# table lists each run and the summary line gives the median wall time per count.
#
# Usage: bench/codegen.sh [counts...]   (default: 100000 1000000; env REPEAT)
set -euo pipefail
cd "$(dirname "$0")/.."
counts=("${@:-100000 1000000}")
[ $# -eq 0 ] && counts=(100000 1000000)

cargo build --release --locked -p tessera >/dev/null
repeat=${REPEAT:-3}
port=18190
pid=0
dir=""
trap 'kill "$pid" 2>/dev/null || true; [ -n "$dir" ] && rm -rf "$dir"' EXIT
export TESSERA_MANAGEMENT_ID=bench TESSERA_MANAGEMENT_TOKEN=bench-management-token
start_server() {
  dir=$(mktemp -d)
  target/release/tessera serve --listen 127.0.0.1:$port --data-dir "$dir" --log-level warn >/dev/null &
  pid=$!
  for _ in $(seq 1 100); do curl -fsS http://127.0.0.1:$port/health/ready >/dev/null 2>&1 && break; sleep 0.1; done
  project=$(curl -fsS -X POST http://127.0.0.1:$port/management/v1/projects -H "X-Management-Id: bench" -H "X-Management-Token: bench-management-token" \
    -H 'content-type: application/json' -d '{"name":"bench"}')
  app_id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["server_side_key"]["app_id"])' "$project")
  app_token=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["server_side_key"]["app_token"])' "$project")
}
stop_server() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
  dir=""
}
api() { curl -fsS -H "X-App-Id: $app_id" -H "X-App-Token: $app_token" -H 'content-type: application/json' "$@"; }
rss_kb() { awk '/^VmRSS/ {print $2}' /proc/$pid/status; }
hwm_kb() { awk '/^VmHWM/ {print $2}' /proc/$pid/status; }

echo "| codes | wall time (s) | server processing (ms) | RSS before (MB) | peak RSS (MB) | database size (MB) |"
echo "|---:|---:|---:|---:|---:|---:|"
declare -A walls
for n in "${counts[@]}"; do
 for run in $(seq 1 "$repeat"); do
  start_server
  before=$(rss_kb)
  # One client process creates the campaign and polls every 10 ms, so the wall time is the
  # server's work plus one request and at most one polling interval.
  read -r wall processing < <(python3 - "$port" "$app_id" "$app_token" "$n" <<'PY'
import json, sys, time, urllib.request
port, app_id, token, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def call(method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"X-App-Id": app_id, "X-App-Token": token, "content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)
start = time.monotonic()
call("POST", "/v1/campaigns", {"name": f"gen-{n}", "vouchers_count": n,
     "voucher": {"type": "DISCOUNT_VOUCHER", "discount": {"type": "PERCENT", "percent_off": 10}, "code_config": {"length": 10}}})
action = call("GET", "/v1/async-actions?limit=1")["async_actions"][0]["id"]
while True:
    a = call("GET", f"/v1/async-actions/{action}")
    if a["status"] == "DONE":
        break
    if a["status"] == "FAILED":
        sys.exit(f"generation failed: {a}")
    time.sleep(0.01)
print(f"{time.monotonic() - start:.2f} {a['result']['processing_time_ms']}")
PY
)
  size=$(du -sm "$dir" | cut -f1)
  python3 -c 'import sys; n,w,p,b,h,z=sys.argv[1:]; print(f"| {int(n):,} | {w} | {p} | {int(b)/1024:.0f} | {int(h)/1024:.0f} | {z} |")' \
    "$n" "$wall" "$processing" "$before" "$(hwm_kb)" "$size"
  walls[$n]="${walls[$n]:-} $wall"
  stop_server
 done
done
echo
for n in "${counts[@]}"; do
  python3 -c 'import sys,statistics; n=int(sys.argv[1]); w=[float(x) for x in sys.argv[2].split()]; print(f"- {n:,} codes: median {statistics.median(w):.2f} s over {len(w)} runs")' "$n" "${walls[$n]}"
done
