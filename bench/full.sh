#!/usr/bin/env bash
# The whole benchmark on the seeds' dataset, in one command: bench/dataset.sh builds the
# dataset (1,000,000 customers, 200 products, 100,000 codes, 60,000 of them published to
# a segment's members) and keeps its data directory; a release server is started on it
# and tessera-loadgen offers each scenario fixed rates (open loop, warm-up excluded):
#
#   ceiling        GET /health/live
#   validate       POST /v1/validations of published codes (cycled), each for the customer
#                  it was published to, 5-line cart of the dataset's products
#   redeem         POST /v1/redemptions of distinct published codes, each once, same carts
#   redeem-hot     POST /v1/redemptions of one code of unlimited quantity (created here)
#   qualify        POST /v1/qualifications for the cart and the segment's customers
#   checkout       flows/s: qualification, validation and redemption of one published code
#                  (distinct per flow, none of redeem's) for its customer, one connection
#   campaign-100k  POST /v1/campaigns with vouchers_count, timed to its async action DONE
#
# Output in bench/out/full-<time>/: results.md (machine and commit, the dataset build's
# timings, one table of all runs), results.json, one JSON per run, the server's log.
#
# Usage: bench/full.sh
# Environment (defaults in brackets):
#   BENCH_SMOKE=1            tiny settings to try the script in about a minute (20,000
#                            customers, 2,000 members, 3 s runs, low rates); exits
#                            non-zero if any run had an error or no success
#   BENCH_CUSTOMERS [1000000]  BENCH_MEMBERS [60000]  BENCH_PRODUCTS [200]  BENCH_CODES
#                            [100000]  the dataset (bench/dataset.sh)
#   BENCH_SCENARIOS          [ceiling validate redeem redeem-hot qualify checkout campaign-100k]
#   BENCH_RATES_CEILING      [5000 10000 20000]  requests/s, one run per rate
#   BENCH_RATES_VALIDATE     [1000 2000 3000]
#   BENCH_RATES_REDEEM       [1000 2000]
#   BENCH_RATES_REDEEM_HOT   [1000 2000]
#   BENCH_RATES_QUALIFY      [500 1000]
#   BENCH_RATES_CHECKOUT     [300 600]            flows/s (three requests each)
#   BENCH_CAMPAIGN_CODES     [100000]             codes campaign-100k generates
#   BENCH_VALIDATE_CODES     [1000]               published codes validate cycles through
#   BENCH_DURATION [10]  BENCH_WARMUP [2]  BENCH_CONNECTIONS [32]  BENCH_PORT [18800]
#   BENCH_DATA_DIR           keep the dataset's data directory there (must not exist yet)
#                            [a temporary directory, deleted at the end]
# Redeem and checkout need one published code per flow, warm-up included; the script
# stops before any load if the members are too few for the rates.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${BENCH_SMOKE:-0}" = 1 ]; then
  : "${BENCH_CUSTOMERS:=20000}" "${BENCH_MEMBERS:=2000}" "${BENCH_CODES:=5000}" "${BENCH_CAMPAIGN_CODES:=10000}"
  : "${BENCH_DURATION:=3}" "${BENCH_WARMUP:=1}" "${BENCH_CONNECTIONS:=8}" "${BENCH_VALIDATE_CODES:=100}"
  : "${BENCH_RATES_CEILING:=200}" "${BENCH_RATES_VALIDATE:=100}" "${BENCH_RATES_REDEEM:=50}"
  : "${BENCH_RATES_REDEEM_HOT:=50}" "${BENCH_RATES_QUALIFY:=50}" "${BENCH_RATES_CHECKOUT:=20}"
fi
export BENCH_CUSTOMERS BENCH_MEMBERS BENCH_PRODUCTS BENCH_CODES
scenarios=(${BENCH_SCENARIOS:-ceiling validate redeem redeem-hot qualify checkout campaign-100k})
duration=${BENCH_DURATION:-10}
warmup=${BENCH_WARMUP:-2}
connections=${BENCH_CONNECTIONS:-32}
validate_codes=${BENCH_VALIDATE_CODES:-1000}
campaign_codes=${BENCH_CAMPAIGN_CODES:-100000}
rates() {
  case $1 in
    ceiling) echo "${BENCH_RATES_CEILING:-5000 10000 20000}" ;;
    validate) echo "${BENCH_RATES_VALIDATE:-1000 2000 3000}" ;;
    redeem) echo "${BENCH_RATES_REDEEM:-1000 2000}" ;;
    redeem-hot) echo "${BENCH_RATES_REDEEM_HOT:-1000 2000}" ;;
    qualify) echo "${BENCH_RATES_QUALIFY:-500 1000}" ;;
    checkout) echo "${BENCH_RATES_CHECKOUT:-300 600}" ;;
    campaign-100k) echo "$campaign_codes" ;;
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
}
# Fail on a typo before the dataset's minute, not after it.
for s in "${scenarios[@]}"; do rates "$s" >/dev/null; done

# Two builds rather than one: dataset.sh builds the server alone, and the server built
# together with the generator unifies dependency features differently, so one combined
# build here would leave dataset.sh a second full build of the server.
{ cargo build --release --locked -p tessera && cargo build --release --locked -p tessera-loadgen; } >/dev/null 2>&1 ||
  { echo "release build failed; run: cargo build --release --locked -p tessera -p tessera-loadgen" >&2; exit 1; }

out=bench/out/full-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out/runs"
work=$(mktemp -d)
# Only ever the server this script started (an unset pid must not become `kill 0`).
trap 'if [ -n "${pid:-}" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
data=${BENCH_DATA_DIR:-$work/data}
if [ -e "$data" ]; then echo "BENCH_DATA_DIR $data exists; the dataset needs a fresh one" >&2; exit 1; fi

echo "== building the seeds' dataset (bench/dataset.sh)" >&2
BENCH_KEEP_DIR=$data bench/dataset.sh >"$out/dataset.log"
# The dataset's report without its own heading and pointer to its output directory.
sed -n '/^| step/,/^- check:/p' "$out/dataset.log" >"$out/dataset.md"

port=${BENCH_PORT:-18800}
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
url=http://127.0.0.1:$port
export TESSERA_MANAGEMENT_ID=bench TESSERA_MANAGEMENT_TOKEN=bench-management-token
# The hourly invariant checker would walk a million customers in the middle of a run.
target/release/tessera serve --listen "127.0.0.1:$port" --data-dir "$data" --log-level warn --check-interval 0 \
  >"$out/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do curl -fsS "$url/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "$url/health/ready" >/dev/null || { echo "server did not become ready; see $out/server.log" >&2; exit 1; }

python3 bench/full.py project "$url" "$work"
{ read -r app_id; read -r app_token; read -r project_id; } <"$work/credentials"
export TESSERA_APP_ID=$app_id TESSERA_APP_TOKEN=$app_token

has() { [[ " ${scenarios[*]} " == *" $1 "* ]]; }
if ! has validate; then validate_codes=0; fi
# Each redeem and checkout run gets its own slice of the published codes, in run order.
plan=()
for s in redeem checkout; do
  if has "$s"; then for r in $(rates "$s"); do plan+=("$s-$r:$r"); done; fi
done
python3 bench/full.py codes "$data/tessera.db" "$project_id" "$work" "$warmup" "$duration" "$validate_codes" "${plan[@]}"
products=$(cat "$work/products")
if has redeem-hot; then
  curl -fsS -X POST "$url/v1/vouchers/HOT-FULL" -H "X-App-Id: $app_id" -H "X-App-Token: $app_token" \
    -H 'content-type: application/json' \
    -d '{"type":"DISCOUNT_VOUCHER","discount":{"type":"AMOUNT","amount_off":100},"redemption":{"quantity":null}}' >/dev/null
fi

commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates Cargo.lock 2>/dev/null || echo "-dirty")
model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
{
  echo "# Tessera benchmark on the seeds' dataset"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ), commit: $commit"
  echo "- machine: $(nproc) CPUs, ${model:-unknown CPU}, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
  echo "- command: bench/full.sh$([ "${BENCH_SMOKE:-0}" = 1 ] && echo " (BENCH_SMOKE=1)")"
  echo "- server: release build, embedded SQLite holding the dataset below, \`--check-interval 0\`; the project's budgets raised out of the way (100,000,000 a minute, burst 100,000,000, 100,000 in flight); same machine as the generator (1 generator thread)"
  echo "- load: open loop, ${warmup} s warm-up excluded, ${duration} s measured, ${connections} keep-alive connections; latency from each request's due time; cart: $products"
  echo
  echo "## Dataset build (bench/dataset.sh)"
  echo
  cat "$out/dataset.md"
  echo
  echo "## Load"
  echo
} | tee "$out/results.md"

header=--markdown-header
for s in "${scenarios[@]}"; do
  for r in $(rates "$s"); do
    if [ "$s" = campaign-100k ]; then
      python3 bench/full.py campaign "$url" "$work/credentials" "$r" "$out/runs/$s-$r.json" "campaign@$r" >"$work/row"
      # The loadgen's header, for when the campaign is the only scenario or the first.
      if [ -n "$header" ]; then
        echo "| label | scenario | target rps | achieved rps | p50 ms | p95 ms | p99 ms | p99.9 ms | max ms | ok | errors |"
        echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
      fi | tee -a "$out/results.md"
      tee -a "$out/results.md" <"$work/row"
      header=
      continue
    fi
    args=(--url "$url" --scenario "$s" --rate "$r" --duration "$duration" --warmup "$warmup" --connections "$connections"
      --label "$s@$r" --json-out "$out/runs/$s-$r.json")
    case $s in
      validate) args+=(--codes-file "$work/validate.txt" --cart-products "$products") ;;
      redeem | checkout) args+=(--codes-file "$work/$s-$r.txt" --cart-products "$products") ;;
      redeem-hot) args+=(--hot-code HOT-FULL --customers-file "$work/customers.txt" --cart-products "$products") ;;
      qualify) args+=(--customers-file "$work/customers.txt" --cart-products "$products") ;;
    esac
    target/release/tessera-loadgen "${args[@]}" $header 2>>"$out/loadgen.log" | tee -a "$out/results.md"
    header=
  done
done
{
  echo
  if has checkout; then
    echo "Checkout's rates and rows count flows (qualification, validation, redemption), each"
    echo "flow's latency from its due time to the end of its redemption."
  fi
  if has campaign-100k; then
    echo "The campaign row is one generation of a new campaign's codes, from the request to its"
    echo "async action's DONE: achieved rps is codes per second, every latency column its wall time."
  fi
} | tee -a "$out/results.md"

python3 bench/full.py results "$out" "$commit" "$model" "${BENCH_SMOKE:-0}"
echo
echo "results: $out (generator errors, if any: $out/loadgen.log)"
