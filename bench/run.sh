#!/usr/bin/env bash
# Load benchmark: a release server on a fresh embedded database, data created through the
# public API (bench/setup.py), then each scenario offered fixed rates by tessera-loadgen
# (open loop, warm-up excluded). Results go to bench/out/<time>/: one JSON per run,
# results.json with all of them and results.md with the table, which is also printed.
#
# Usage: bench/run.sh
# Environment (defaults in brackets):
#   BENCH_SMOKE=1             tiny run for CI (a few hundred codes, 3 s per scenario, low
#                             rates); exits non-zero if any run had an error or no success
#   BENCH_SCENARIOS           [ceiling validate redeem redeem-hot qualify checkout]
#   BENCH_RATES_CEILING       [2000 5000 10000 20000]  requests/s, one run per rate
#   BENCH_RATES_VALIDATE      [1000 2000 4000]
#   BENCH_RATES_REDEEM        [250 500 1000 1500]      each redeem uses a fresh code
#   BENCH_RATES_REDEEM_HOT    [250 500 1000]
#   BENCH_RATES_QUALIFY       [200 400 600]
#   BENCH_RATES_CHECKOUT      [100 200 400]  flows/s: qualification, validation and
#                             redemption of a fresh code (codes after redeem's) per flow
#   BENCH_TIERS [1000]  BENCH_CUSTOMERS [1000]  promotion tiers and customers for qualify
#                             (bench/promotions_setup.py; bench/qualify.sh is the
#                             qualification benchmark with 100,000 codes)
#   BENCH_DURATION [10]  BENCH_WARMUP [2]  BENCH_CONNECTIONS [32]  BENCH_PORT [18300]
#   BENCH_VALIDATE_CODES [1000]  codes validate cycles through
#   BENCH_PROJECT_BODY        JSON body of the project [bench/setup.py: rate limits raised]
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${BENCH_SMOKE:-0}" = 1 ]; then
  : "${BENCH_DURATION:=3}" "${BENCH_WARMUP:=1}" "${BENCH_CONNECTIONS:=8}" "${BENCH_VALIDATE_CODES:=100}"
  : "${BENCH_RATES_CEILING:=100}" "${BENCH_RATES_VALIDATE:=50}" "${BENCH_RATES_REDEEM:=40}" "${BENCH_RATES_REDEEM_HOT:=50}"
  : "${BENCH_RATES_QUALIFY:=50}" "${BENCH_TIERS:=30}" "${BENCH_CUSTOMERS:=20}" "${BENCH_RATES_CHECKOUT:=20}"
fi
scenarios=(${BENCH_SCENARIOS:-ceiling validate redeem redeem-hot qualify checkout})
duration=${BENCH_DURATION:-10}
warmup=${BENCH_WARMUP:-2}
connections=${BENCH_CONNECTIONS:-32}
validate_codes=${BENCH_VALIDATE_CODES:-1000}
rates() {
  case $1 in
    ceiling) echo "${BENCH_RATES_CEILING:-2000 5000 10000 20000}" ;;
    validate) echo "${BENCH_RATES_VALIDATE:-1000 2000 4000}" ;;
    redeem) echo "${BENCH_RATES_REDEEM:-250 500 1000 1500}" ;;
    redeem-hot) echo "${BENCH_RATES_REDEEM_HOT:-250 500 1000}" ;;
    qualify) echo "${BENCH_RATES_QUALIFY:-200 400 600}" ;;
    checkout) echo "${BENCH_RATES_CHECKOUT:-100 200 400}" ;;
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
}
# Codes one run consumes, warm-up included (as tessera-loadgen counts them).
codes_for() { python3 -c 'import math,sys; r,w,d=map(float,sys.argv[1:]); print(math.ceil(w*r)+math.ceil(d*r))' "$1" "$warmup" "$duration"; }

cargo build --release --locked -p tessera -p tessera-loadgen >/dev/null 2>&1 ||
  { echo "release build failed; run: cargo build --release --locked -p tessera -p tessera-loadgen" >&2; exit 1; }

out=bench/out/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out/runs"
work=$(mktemp -d)
# Only ever the server this script started (an unset pid must not become `kill 0`).
trap 'if [ -n "${pid:-}" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT

port=${BENCH_PORT:-18300}
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
url=http://127.0.0.1:$port
export TESSERA_MANAGEMENT_ID=bench TESSERA_MANAGEMENT_TOKEN=bench-management-token
target/release/tessera serve --listen "127.0.0.1:$port" --data-dir "$work/data" --log-level warn >"$out/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -fsS "$url/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "$url/health/ready" >/dev/null || { echo "server did not become ready; see $out/server.log" >&2; exit 1; }

# Codes past validate's are handed out in scenario order, each once: redeem's and
# checkout's runs consume theirs.
consumed_total=0
for s in redeem checkout; do
  if [[ " ${scenarios[*]} " == *" $s "* ]]; then
    for r in $(rates "$s"); do consumed_total=$((consumed_total + $(codes_for "$r"))); done
  fi
done
python3 bench/setup.py "$url" "$work" $((validate_codes + consumed_total))
{ read -r app_id; read -r app_token; } <"$work/credentials"
export TESSERA_APP_ID=$app_id TESSERA_APP_TOKEN=$app_token
if [[ " ${scenarios[*]} " == *" qualify "* ]]; then
  python3 bench/promotions_setup.py "$url" "$work/credentials" "${BENCH_TIERS:-1000}" "${BENCH_CUSTOMERS:-1000}"
fi
head -n "$validate_codes" "$work/codes.txt" >"$work/validate.txt"

commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates Cargo.lock 2>/dev/null || echo "-dirty")
model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
{
  echo "# Tessera load benchmark"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ), commit: $commit"
  echo "- machine: $(nproc) CPUs, ${model:-unknown CPU}, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
  echo "- server: release build, embedded SQLite, same machine as the generator (1 generator thread); project rate limits raised out of the way"
  echo "- load: open loop, ${warmup} s warm-up excluded, ${duration} s measured, ${connections} keep-alive connections; latency from each request's due time"
  echo
} | tee "$out/results.md"

header=--markdown-header
next_code=$((validate_codes + 1))
for s in "${scenarios[@]}"; do
  for r in $(rates "$s"); do
    args=(--url "$url" --scenario "$s" --rate "$r" --duration "$duration" --warmup "$warmup" --connections "$connections"
      --label "$s@$r" --json-out "$out/runs/$s-$r.json")
    case $s in
      validate) args+=(--codes-file "$work/validate.txt") ;;
      redeem | checkout)
        n=$(codes_for "$r")
        last=$((next_code + n - 1))
        sed -n "${next_code},${last}p;${last}q" "$work/codes.txt" >"$work/$s.txt"
        next_code=$((last + 1))
        args+=(--codes-file "$work/$s.txt")
        # Checkout's qualifications name customers; qualify's setup creates these.
        if [ "$s" = checkout ]; then args+=(--customers "${BENCH_CUSTOMERS:-1000}"); fi ;;
      redeem-hot) args+=(--hot-code HOT-BENCH) ;;
      qualify) args+=(--customers "${BENCH_CUSTOMERS:-1000}") ;;
    esac
    target/release/tessera-loadgen "${args[@]}" $header 2>>"$out/loadgen.log" | tee -a "$out/results.md"
    header=
  done
done

python3 - "$out" "$commit" "$model" <<'PY'
import glob, json, os, sys
out, commit, model = sys.argv[1:]
runs = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(out, "runs", "*.json")), key=os.path.getmtime)]
machine = {"nproc": os.cpu_count(), "model_name": model, "commit": commit}
json.dump({"machine": machine, "runs": runs}, open(os.path.join(out, "results.json"), "w"), indent=2)
PY
echo
echo "results: $out (generator errors, if any: $out/loadgen.log)"

if [ "${BENCH_SMOKE:-0}" = 1 ]; then
  python3 - "$out/results.json" <<'PY'
import json, sys
bad = [f"{r['label']}: ok={r['ok']} errors={r['errors']}" for r in json.load(open(sys.argv[1]))["runs"] if r["ok"] == 0 or r["errors"]]
if bad:
    sys.exit("smoke run failed:\n  " + "\n  ".join(bad))
print("smoke run passed")
PY
fi
