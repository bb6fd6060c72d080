#!/usr/bin/env bash
# Qualification benchmark: a release server on a fresh embedded database holding
# BENCH_CODES codes (bench/setup.py) and BENCH_TIERS active promotion tiers with rules
# (bench/promotions_setup.py); tessera-loadgen then offers POST /v1/qualifications at fixed
# rates (open loop, warm-up excluded), each for the 5-line cart and a random customer.
#
# Usage: bench/qualify.sh
# Environment: BENCH_CODES [100000]  BENCH_TIERS [1000]  BENCH_CUSTOMERS [1000]
#   BENCH_RATES_QUALIFY [250 500 1000]  BENCH_DURATION [10]  BENCH_WARMUP [2]
#   BENCH_CONNECTIONS [32]  BENCH_PORT [18400]
set -euo pipefail
cd "$(dirname "$0")/.."
codes=${BENCH_CODES:-100000}
tiers=${BENCH_TIERS:-1000}
customers=${BENCH_CUSTOMERS:-1000}
duration=${BENCH_DURATION:-10}
warmup=${BENCH_WARMUP:-2}
connections=${BENCH_CONNECTIONS:-32}

cargo build --release --locked -p tessera -p tessera-loadgen >/dev/null 2>&1 ||
  { echo "release build failed; run: cargo build --release --locked -p tessera -p tessera-loadgen" >&2; exit 1; }

out=bench/out/qualify-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out/runs"
work=$(mktemp -d)
trap 'if [ -n "${pid:-}" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
port=${BENCH_PORT:-18400}
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
url=http://127.0.0.1:$port
export TESSERA_MANAGEMENT_ID=bench TESSERA_MANAGEMENT_TOKEN=bench-management-token
target/release/tessera serve --listen "127.0.0.1:$port" --data-dir "$work/data" --log-level warn >"$out/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -fsS "$url/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "$url/health/ready" >/dev/null || { echo "server did not become ready; see $out/server.log" >&2; exit 1; }

python3 bench/setup.py "$url" "$work" "$codes"
python3 bench/promotions_setup.py "$url" "$work/credentials" "$tiers" "$customers"
{ read -r app_id; read -r app_token; } <"$work/credentials"
export TESSERA_APP_ID=$app_id TESSERA_APP_TOKEN=$app_token

commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates Cargo.lock 2>/dev/null || echo "-dirty")
model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
{
  echo "# Tessera qualification benchmark"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ), commit: $commit"
  echo "- machine: $(nproc) CPUs, ${model:-unknown CPU}, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
  echo "- data: $codes codes, $tiers active promotion tiers (a third unconditional, a third with an order-amount rule, a third with a customer-region rule), $customers customers"
  echo "- load: open loop, ${warmup} s warm-up excluded, ${duration} s measured, ${connections} keep-alive connections, generator on the same machine"
  echo
} | tee "$out/results.md"
header=--markdown-header
for r in ${BENCH_RATES_QUALIFY:-250 500 1000}; do
  target/release/tessera-loadgen --url "$url" --scenario qualify --rate "$r" --duration "$duration" --warmup "$warmup" \
    --connections "$connections" --customers "$customers" --label "qualify@$r" --json-out "$out/runs/qualify-$r.json" $header \
    2>>"$out/loadgen.log" | tee -a "$out/results.md"
  header=
done
echo
echo "results: $out"
