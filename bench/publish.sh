#!/usr/bin/env bash
# Publication benchmark: a release server on a fresh embedded database with a campaign of
# BENCH_CODES generated codes; tessera-loadgen then offers POST /v1/publications (the next
# free code to a new customer each time: a customer upsert, a code taken and a
# publication recorded) at fixed rates, open loop, warm-up excluded.
#
# Usage: bench/publish.sh
# Environment: BENCH_CODES [200000]  BENCH_RATES_PUBLISH [500 1000 2000]
#   BENCH_DURATION [10]  BENCH_WARMUP [2]  BENCH_CONNECTIONS [32]  BENCH_PORT [18500]
set -euo pipefail
cd "$(dirname "$0")/.."
codes=${BENCH_CODES:-200000}
duration=${BENCH_DURATION:-10}
warmup=${BENCH_WARMUP:-2}
connections=${BENCH_CONNECTIONS:-32}

cargo build --release --locked -p tessera -p tessera-loadgen >/dev/null 2>&1 ||
  { echo "release build failed; run: cargo build --release --locked -p tessera -p tessera-loadgen" >&2; exit 1; }
out=bench/out/publish-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out/runs"
work=$(mktemp -d)
trap 'if [ -n "${pid:-}" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
port=${BENCH_PORT:-18500}
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
url=http://127.0.0.1:$port
export TESSERA_MANAGEMENT_ID=bench TESSERA_MANAGEMENT_TOKEN=bench-management-token
target/release/tessera serve --listen "127.0.0.1:$port" --data-dir "$work/data" --log-level warn >"$out/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -fsS "$url/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done

mgmt=(-H "X-Management-Id: $TESSERA_MANAGEMENT_ID" -H "X-Management-Token: $TESSERA_MANAGEMENT_TOKEN" -H 'content-type: application/json')
key=$(curl -fsS "${mgmt[@]}" -X POST "$url/management/v1/projects" \
  -d '{"name": "bench", "rate_limits": {"per_minute": 100000000, "burst": 100000000}}')
app_id=$(echo "$key" | python3 -c 'import json,sys; print(json.load(sys.stdin)["server_side_key"]["app_id"])')
app_token=$(echo "$key" | python3 -c 'import json,sys; print(json.load(sys.stdin)["server_side_key"]["app_token"])')
auth=(-H "X-App-Id: $app_id" -H "X-App-Token: $app_token" -H 'content-type: application/json')
started=$(date +%s.%N)
curl -fsS "${auth[@]}" -X POST "$url/v1/campaigns" -o /dev/null \
  -d "{\"name\": \"bench-publish\", \"vouchers_count\": $codes, \"voucher\": {\"type\": \"DISCOUNT_VOUCHER\", \"discount\": {\"type\": \"PERCENT\", \"percent_off\": 10}, \"redemption\": {\"quantity\": 1}, \"code_config\": {\"length\": 10}}}"
until curl -fsS "${auth[@]}" "$url/v1/campaigns/bench-publish" | grep -q '"vouchers_generation_status":"DONE"'; do sleep 0.2; done
echo "generated $codes codes in $(python3 -c "import time; print(round(time.time() - $started, 1))") s" >&2

commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates Cargo.lock 2>/dev/null || echo "-dirty")
model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
{
  echo "# Tessera publication benchmark"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ), commit: $commit"
  echo "- machine: $(nproc) CPUs, ${model:-unknown CPU}, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
  echo "- data: one campaign of $codes codes; each request publishes its next free code to a new customer"
  echo "- load: open loop, ${warmup} s warm-up excluded, ${duration} s measured, ${connections} keep-alive connections, generator on the same machine"
  echo
} | tee "$out/results.md"
header=--markdown-header
for r in ${BENCH_RATES_PUBLISH:-500 1000 2000}; do
  target/release/tessera-loadgen --url "$url" --app-id "$app_id" --app-token "$app_token" --scenario publish --hot-code bench-publish \
    --rate "$r" --duration "$duration" --warmup "$warmup" --connections "$connections" --label "publish@$r" \
    --json-out "$out/runs/publish-$r.json" $header 2>>"$out/loadgen.log" | tee -a "$out/results.md"
  header=
done
echo
echo "results: $out"
