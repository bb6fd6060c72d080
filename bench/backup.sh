#!/usr/bin/env bash
# Backup and restore benchmark on the benchmark dataset: 1,000,000 customers and 100,000
# codes in the embedded SQLite database (release build).
#
# Measures, on one dataset:
#   - backup create (clear and encrypted) while the server runs, and the redemption
#     latency a client sees while a backup is being taken;
#   - backup verify (restore into a scratch directory + SQLite check + invariant checker);
#   - restore into a new data directory, then the time until the restored server answers
#     a validation: the recovery time after losing the machine (target under 30 s).
#
# The codes come through the API (campaign generation); the customers are written with
# sqlite3 in the API's row format while the server is stopped (a million API calls would
# measure the API, not backups).
#
# Usage: bench/backup.sh            (env CUSTOMERS, CODES to change the dataset)
set -euo pipefail
cd "$(dirname "$0")/.."
customers=${CUSTOMERS:-1000000}
codes=${CODES:-100000}
command -v sqlite3 >/dev/null || { echo "bench/backup.sh needs the sqlite3 command-line tool" >&2; exit 2; }

cargo build --release --locked -p tessera >/dev/null
bin=target/release/tessera
port=18195
work=$(mktemp -d)
pid=0
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
export TESSERA_MANAGEMENT_ID=bench TESSERA_MANAGEMENT_TOKEN=bench-management-token
data="$work/data"
now_ms() { date +%s%3N; }
secs() { python3 -c 'import sys; print(f"{int(sys.argv[1])/1000:.2f}")' "$1"; }
start_server() {
  "$bin" serve --listen 127.0.0.1:$port --data-dir "$1" --log-level warn --check-interval 0 >/dev/null &
  pid=$!
  for _ in $(seq 1 600); do curl -fsS http://127.0.0.1:$port/health/ready >/dev/null 2>&1 && return; sleep 0.05; done
  echo "server did not start" >&2
  exit 1
}
stop_server() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=0
}
api() { curl -fsS -H "X-App-Id: $app_id" -H "X-App-Token: $app_token" -H 'content-type: application/json' "$@"; }

echo "== dataset: $customers customers, $codes codes"
start_server "$data"
project=$(curl -fsS -X POST http://127.0.0.1:$port/management/v1/projects -H "X-Management-Id: bench" -H "X-Management-Token: bench-management-token" \
  -H 'content-type: application/json' -d '{"name":"bench"}')
app_id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["server_side_key"]["app_id"])' "$project")
app_token=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["server_side_key"]["app_token"])' "$project")
project_id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["id"])' "$project")
api -X POST http://127.0.0.1:$port/v1/campaigns -d "{\"name\":\"bench-codes\",\"vouchers_count\":$codes,\"voucher\":{\"type\":\"DISCOUNT_VOUCHER\",\"discount\":{\"type\":\"PERCENT\",\"percent_off\":10},\"code_config\":{\"length\":10}}}" >/dev/null
for _ in $(seq 1 600); do
  status=$(api "http://127.0.0.1:$port/v1/async-actions?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["async_actions"][0]["status"])')
  [ "$status" = DONE ] && break
  sleep 0.2
done
[ "$status" = DONE ] || { echo "code generation did not finish: $status" >&2; exit 1; }
api -X POST http://127.0.0.1:$port/v1/vouchers/BENCH-PROBE -d '{"type":"DISCOUNT_VOUCHER","discount":{"type":"PERCENT","percent_off":10}}' >/dev/null
stop_server
started=$(now_ms)
sqlite3 "$data/tessera.db" <<SQL
PRAGMA journal_mode=WAL;
PRAGMA synchronous=NORMAL;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $customers)
INSERT INTO customers (project_id, id, source_id, email, name, city, created_at, updated_at, data)
SELECT '$project_id', printf('cust_bench%021d', i), 'bench-' || i, 'c' || i || '@example.com', 'Customer ' || i,
       'City ' || (i % 500), '2026-01-01T00:00:00.000Z', NULL,
       json_object('id', printf('cust_bench%021d', i), 'source_id', 'bench-' || i, 'name', 'Customer ' || i,
                   'description', NULL, 'email', 'c' || i || '@example.com', 'phone', NULL, 'birthday', NULL,
                   'birthdate', NULL,
                   'address', json_object('city', 'City ' || (i % 500), 'state', NULL, 'line_1', NULL, 'line_2', NULL,
                                          'country', NULL, 'postal_code', NULL),
                   'metadata', json_object('tier', CASE i % 3 WHEN 0 THEN 'gold' WHEN 1 THEN 'silver' ELSE 'bronze' END),
                   'created_at', '2026-01-01T00:00:00.000Z', 'updated_at', NULL)
FROM n;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
echo "customers written in $(secs $(($(now_ms) - started))) s"
db_mb=$(du -m "$data/tessera.db" | cut -f1)
echo "database: ${db_mb} MB"

probe() {
  api -X POST "http://127.0.0.1:$port/v1/validations" \
    -d '{"redeemables":[{"object":"voucher","id":"BENCH-PROBE"}],"order":{"amount":1000},"customer":{"id":"cust_bench000000000000000000777"}}' \
    | python3 -c 'import json,sys; v=json.load(sys.stdin); assert v["valid"], v'
}

echo "== backup while serving (a client redeems meanwhile)"
start_server "$data"
probe
head -c 32 /dev/urandom > "$work/backup.key"
# A steady trickle of redemptions while the backups run: the latency a checkout sees.
python3 - "$port" "$app_id" "$app_token" > "$work/latency.txt" <<'PY' &
import json, sys, time, urllib.request
port, app_id, token = sys.argv[1:4]
body = json.dumps({"redeemables": [{"object": "voucher", "id": "BENCH-PROBE"}], "order": {"amount": 1000}}).encode()
lat = []
end = time.monotonic() + 1e9
stop = False
import signal
def halt(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, halt)
while not stop:
    t = time.monotonic()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/redemptions", data=body, method="POST",
                                 headers={"X-App-Id": app_id, "X-App-Token": token, "content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        assert r.status == 200
        r.read()
    lat.append((time.monotonic() - t) * 1000)
    time.sleep(0.01)
lat.sort()
print(f"{len(lat)} {lat[len(lat)//2]:.2f} {lat[int(len(lat)*0.99)]:.2f} {lat[-1]:.2f}")
PY
load=$!
sleep 1
started=$(now_ms)
"$bin" backup create --data-dir "$data" --out "$work/backups" >/dev/null
t_create=$(($(now_ms) - started))
started=$(now_ms)
"$bin" backup create --data-dir "$data" --out "$work/backups-enc" --backup-key-file "$work/backup.key" >/dev/null
t_create_enc=$(($(now_ms) - started))
sleep 1
kill -TERM $load
wait $load || true
read -r n p50 p99 pmax < "$work/latency.txt"
stop_server
clear=$(ls -d "$work"/backups/tessera-backup-*)
enc=$(ls -d "$work"/backups-enc/tessera-backup-*)
backup_mb=$(du -sm "$clear" | cut -f1)

echo "== verify"
started=$(now_ms)
"$bin" backup verify "$clear" >/dev/null
t_verify=$(($(now_ms) - started))
started=$(now_ms)
"$bin" backup verify "$enc" --backup-key-file "$work/backup.key" >/dev/null
t_verify_enc=$(($(now_ms) - started))

echo "== restore into a new machine's data directory, then serve"
restored="$work/restored"
started=$(now_ms)
"$bin" restore "$enc" --data-dir "$restored" --backup-key-file "$work/backup.key" >/dev/null
t_restore=$(($(now_ms) - started))
start_server "$restored"
probe
t_recovered=$(($(now_ms) - started))
stop_server

echo
echo "| step | time (s) |"
echo "|---|---:|"
echo "| backup create, clear (${backup_mb} MB) | $(secs $t_create) |"
echo "| backup create, encrypted | $(secs $t_create_enc) |"
echo "| backup verify, clear (restore + SQLite check + invariants) | $(secs $t_verify) |"
echo "| backup verify, encrypted | $(secs $t_verify_enc) |"
echo "| restore (encrypted backup: decrypt, check, swap in) | $(secs $t_restore) |"
echo "| **restore and serving again** (restore + start + first validation) | **$(secs $t_recovered)** |"
echo
echo "redemptions during the backups: $n requests, p50 ${p50} ms, p99 ${p99} ms, max ${pmax} ms"
echo "database ${db_mb} MB; machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
