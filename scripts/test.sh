#!/usr/bin/env bash
# Runs Tessera's whole test suite: unit, property, storage conformance (SQLite and
# PostgreSQL), end-to-end tests against the real binary, and the official SDK tests.
#
# Needs: a Rust toolchain, Python 3 and Node.js with npm (for the official clients), and
# PostgreSQL reachable at TESSERA_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/test).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/sdk-venv
if ! "$venv/bin/python" -c 'import voucherify' >/dev/null 2>&1; then
  echo "== installing the official Python SDK into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/sdk/python/requirements.txt
fi

if [ ! -d tests/sdk/node/node_modules/@voucherify/sdk ]; then
  echo "== installing the official Node SDK into tests/sdk/node"
  (cd tests/sdk/node && npm ci --silent --no-audit --no-fund)
fi

echo "== cargo test --workspace"
cargo test --workspace --locked "$@"
