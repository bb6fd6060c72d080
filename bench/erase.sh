#!/usr/bin/env bash
# Permanent deletion of a customer with BENCH_ERASE_RECORDS redemptions: how long the one
# transaction takes, and how long an unrelated checkout waits behind it.
#
# Usage: bench/erase.sh
# Environment: BENCH_ERASE_RECORDS [10000]  BENCH_DATABASE_URL [empty: embedded SQLite;
#   a PostgreSQL URL, e.g. with options=-c%20search_path%3D<fresh schema>]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p tessera >/dev/null 2>&1 ||
  { echo "release build failed; run: cargo build --release --locked -p tessera" >&2; exit 1; }
python3 bench/erase.py target/release/tessera "${BENCH_ERASE_RECORDS:-10000}" ${BENCH_DATABASE_URL:+"$BENCH_DATABASE_URL"}
