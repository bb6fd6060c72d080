#!/usr/bin/env bash
# Code generation benchmark: campaigns of 100,000 and 1,000,000 codes through the public
# API (POST /v1/campaigns with vouchers_count), timed from the request to the async
# action's DONE, with the server's peak resident memory. Embedded SQLite, release build.
#
# Usage: bench/codegen.sh [counts...]   (default: 100000 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
counts=("${@:-100000 1000000}")
[ $# -eq 0 ] && counts=(100000 1000000)

cargo build --release --locked -p tessera >/dev/null
dir=$(mktemp -d)
port=18190
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$dir"' EXIT
export TESSERA_MANAGEMENT_ID=bench TESSERA_MANAGEMENT_TOKEN=bench-management-token
target/release/tessera serve --listen 127.0.0.1:$port --data-dir "$dir" --log-level warn >/dev/null &
pid=$!
for _ in $(seq 1 100); do curl -fsS http://127.0.0.1:$port/health/ready >/dev/null 2>&1 && break; sleep 0.1; done

project=$(curl -fsS -X POST http://127.0.0.1:$port/management/v1/projects -H "X-Management-Id: bench" -H "X-Management-Token: bench-management-token" \
  -H 'content-type: application/json' -d '{"name":"bench"}')
app_id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["server_side_key"]["app_id"])' "$project")
app_token=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["server_side_key"]["app_token"])' "$project")
api() { curl -fsS -H "X-App-Id: $app_id" -H "X-App-Token: $app_token" -H 'content-type: application/json' "$@"; }
rss_kb() { awk '/^VmRSS/ {print $2}' /proc/$pid/status; }
hwm_kb() { awk '/^VmHWM/ {print $2}' /proc/$pid/status; }

echo "| codes | wall time (s) | server processing (ms) | RSS before (MB) | peak RSS (MB) | database size (MB) |"
echo "|---:|---:|---:|---:|---:|---:|"
for n in "${counts[@]}"; do
  before=$(rss_kb)
  start=$(date +%s.%N)
  api -X POST http://127.0.0.1:$port/v1/campaigns -d "{\"name\":\"gen-$n\",\"vouchers_count\":$n,\"voucher\":{\"type\":\"DISCOUNT_VOUCHER\",\"discount\":{\"type\":\"PERCENT\",\"percent_off\":10},\"code_config\":{\"length\":10}}}" >/dev/null
  action=$(api "http://127.0.0.1:$port/v1/async-actions?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["async_actions"][0]["id"])')
  while :; do
    a=$(api "http://127.0.0.1:$port/v1/async-actions/$action")
    status=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["status"])' "$a")
    [ "$status" = DONE ] && break
    [ "$status" = FAILED ] && { echo "generation failed: $a" >&2; exit 1; }
    sleep 0.02
  done
  end=$(date +%s.%N)
  processing=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["result"]["processing_time_ms"])' "$a")
  size=$(du -sm "$dir" | cut -f1)
  python3 -c 'import sys; n,s,e,p,b,h,z=sys.argv[1:]; print(f"| {int(n):,} | {float(e)-float(s):.2f} | {p} | {int(b)/1024:.0f} | {int(h)/1024:.0f} | {z} |")' \
    "$n" "$start" "$end" "$processing" "$before" "$(hwm_kb)" "$size"
done
