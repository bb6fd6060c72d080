#!/usr/bin/env bash
# Customer import benchmark: a CSV of BENCH_ROWS customers (source_id, name, email and
# two metadata columns, region and country), generated deterministically, uploaded to
# POST /v1/customers/importCSV of a release server on a fresh embedded database; the
# async action is polled until DONE. Reports the wall time from the start of the upload
# to DONE, and the server's peak resident memory above what it held before the upload
# (VmRSS sampled every 50 ms, and VmHWM at the end).
#
# Usage: bench/import_customers.sh   (env BENCH_ROWS [1000000], BENCH_RERUN [1]: import
#                                     the same file a second time, as updates)
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${BENCH_ROWS:-1000000}
rerun=${BENCH_RERUN:-1}

cargo build --release --locked -p tessera >/dev/null 2>&1 ||
  { echo "release build failed; run: cargo build --release --locked -p tessera" >&2; exit 1; }
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"' EXIT
port=18320
url=http://127.0.0.1:$port
mgmt=(-H "X-Management-Id: bench" -H "X-Management-Token: bench-management-token")

awk -v n="$rows" 'BEGIN {
  split("EU US APAC LATAM MEA", region, " "); split("PL DE FR US BR JP IN", country, " ");
  print "source_id,name,email,region,country";
  for (i = 1; i <= n; i++) printf "cust-%07d,Customer %d,customer%d@example.com,%s,%s\n", i, i, i, region[i % 5 + 1], country[i % 7 + 1];
}' >"$work/customers.csv"
size=$(stat -c %s "$work/customers.csv")

export TESSERA_MANAGEMENT_ID=bench TESSERA_MANAGEMENT_TOKEN=bench-management-token
target/release/tessera serve --listen "127.0.0.1:$port" --data-dir "$work/data" --log-level warn \
  --check-interval 0 >"$work/server.log" 2>&1 &
server=$!
pids+=($server)
for _ in $(seq 1 100); do curl -fsS "$url/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done
project=$(curl -fsS -X POST "$url/management/v1/projects" "${mgmt[@]}" -H 'content-type: application/json' -d '{"name":"Import bench"}')
app_id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["server_side_key"]["app_id"])' "$project")
app_token=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["server_side_key"]["app_token"])' "$project")
auth=(-H "X-App-Id: $app_id" -H "X-App-Token: $app_token")

sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
rate() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", a / b }'; }
kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$server/status"; }

# One import: prints "seconds upload_seconds peak_rss_kib done failed".
run_import() {
  local sampler_out=$work/rss-$1
  (peak=0; while kill -0 "$server" 2>/dev/null; do
     r=$(kib VmRSS || echo 0); [ "${r:-0}" -gt "$peak" ] && peak=$r && echo "$peak" >"$sampler_out"
     [ -e "$work/stop-$1" ] && break; sleep 0.05; done) &
  local sampler=$!
  local t0 t1 t2 id status result
  t0=$(date +%s.%N)
  id=$(curl -fsS "${auth[@]}" -F "file=@$work/customers.csv" "$url/v1/customers/importCSV" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["async_action_id"])')
  t1=$(date +%s.%N)
  while :; do
    result=$(curl -fsS "${auth[@]}" "$url/v1/async-actions/$id")
    status=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["status"])' "$result")
    [ "$status" = DONE ] && break
    [ "$status" = FAILED ] && { echo "import failed: $result" >&2; exit 1; }
    sleep 0.2
  done
  t2=$(date +%s.%N)
  touch "$work/stop-$1"
  wait "$sampler" 2>/dev/null || true
  python3 -c 'import json,sys; r=json.loads(sys.argv[1])["result"]; print(r["done_count"], r["failed_count"])' "$result" >"$work/counts-$1"
  echo "$(sub "$t2" "$t0") $(sub "$t1" "$t0") $(cat "$sampler_out" 2>/dev/null || echo 0) $(cat "$work/counts-$1")"
}

base=$(kib VmRSS)
read -r secs upload peak done failed < <(run_import first)
hwm=$(kib VmHWM)
total=$(curl -fsS "${auth[@]}" "$url/v1/customers?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')
echo "machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(free -g | awk '/^Mem:/ {print $2}') GiB; commit $(git rev-parse --short HEAD)"
echo "file: $rows rows, $((size / 1024 / 1024)) MiB; server RSS before the upload: $((base / 1024)) MiB"
echo
echo "| run | rows | done | failed | upload + staging (s) | upload to DONE (s) | rows/s | peak RSS growth (MiB) | VmHWM growth (MiB) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
printf "| first import | %d | %d | %d | %.1f | %.1f | %s | %d | %d |\n" "$rows" "$done" "$failed" "$upload" "$secs" \
  "$(rate "$rows" "$secs")" $(((peak - base) / 1024)) $(((hwm - base) / 1024))
if [ "$rerun" = 1 ]; then
  read -r secs upload peak done failed < <(run_import second)
  hwm=$(kib VmHWM)
  printf "| same file again (updates) | %d | %d | %d | %.1f | %.1f | %s | %d | %d |\n" "$rows" "$done" "$failed" "$upload" "$secs" \
    "$(rate "$rows" "$secs")" $(((peak - base) / 1024)) $(((hwm - base) / 1024))
  total2=$(curl -fsS "${auth[@]}" "$url/v1/customers?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')
  [ "$total2" = "$total" ] || { echo "the re-run changed the customer count: $total -> $total2" >&2; exit 1; }
fi
echo
echo "customers in the project: $total; database: $(du -sm "$work/data" | cut -f1) MiB"
