#!/usr/bin/env bash
# The seeds' load-test dataset, built through Tessera's public API on a fresh embedded
# database, every step timed: 1,000,000 customers with geographic metadata (CSV import;
# 60,000 of them in region "north"), 200 products with geographic metadata (CSV import),
# a discount campaign of 100,000 codes, an auto-update segment on the region, and one
# code of the campaign published to each of the segment's 60,000 members. Then checks in
# the database that every member holds exactly one code and no code went twice.
#
# Usage: bench/dataset.sh
# Environment: BENCH_CUSTOMERS [1000000]  BENCH_MEMBERS [60000]  BENCH_PRODUCTS [200]
#   BENCH_CODES [100000]  BENCH_PORT [18700]  BENCH_KEEP_DIR (keep the data directory there)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p tessera >/dev/null 2>&1 ||
  { echo "release build failed; run: cargo build --release --locked -p tessera" >&2; exit 1; }
out=bench/out/dataset-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
work=$(mktemp -d)
trap 'if [ -n "${pid:-}" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
port=${BENCH_PORT:-18700}
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
export TESSERA_MANAGEMENT_ID=bench TESSERA_MANAGEMENT_TOKEN=bench-management-token
data=${BENCH_KEEP_DIR:-$work/data}
target/release/tessera serve --listen "127.0.0.1:$port" --data-dir "$data" --log-level warn --check-interval 0 \
  >"$out/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done
commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates Cargo.lock 2>/dev/null || echo "-dirty")
BENCH_URL=http://127.0.0.1:$port BENCH_DB=$data/tessera.db BENCH_WORK=$work BENCH_PID=$pid BENCH_COMMIT=$commit \
  python3 bench/dataset.py | tee "$out/results.md"
echo
echo "results: $out"
