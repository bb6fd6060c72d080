#!/usr/bin/env bash
# Event lag benchmark: redemptions offered at fixed rates (tessera-loadgen, redeem-hot,
# open loop) to a release server on the embedded database, with one webhook subscribed
# to redemption.succeeded pointing at tessera-webhook-sink on loopback. The sink records,
# for every delivery, the time from the event's created_at (written in the redemption's
# transaction, just before it commits) to the arrival of the webhook request.
#
# EVENTS_STACK=N (2 to 5) makes every request a stacked redemption of N unlimited codes:
# N voucher redemptions and their parent, N + 1 redemption objects and as many events per
# request, which is how a shop redeems a code and its promotions together.
#
# Usage: bench/events.sh            (env EVENTS_RATES [250 500 1000 1500], EVENTS_DURATION [10],
#                                    EVENTS_STACK [1]; rates are requests per second)
set -euo pipefail
cd "$(dirname "$0")/.."
rates=(${EVENTS_RATES:-250 500 1000 1500})
duration=${EVENTS_DURATION:-10}
stack=${EVENTS_STACK:-1}
hot=HOT-BENCH
for n in $(seq 2 "$stack"); do hot="$hot,HOT-BENCH-$n"; done
# Redemption objects (and events) per request: a stack adds its parent.
per_request=$((stack > 1 ? stack + 1 : 1))

cargo build --release --locked -p tessera -p tessera-loadgen >/dev/null 2>&1 ||
  { echo "release build failed; run: cargo build --release --locked -p tessera -p tessera-loadgen" >&2; exit 1; }
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"' EXIT
port=18310
sink=127.0.0.1:18410
url=http://127.0.0.1:$port
export TESSERA_MANAGEMENT_ID=bench TESSERA_MANAGEMENT_TOKEN=bench-management-token
target/release/tessera-webhook-sink "$sink" >"$work/sink.log" 2>&1 &
pids+=($!)
target/release/tessera serve --listen "127.0.0.1:$port" --data-dir "$work/data" --log-level warn \
  --check-interval 0 --webhook-allow-private-targets true >"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -fsS "$url/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done
BENCH_HOT_CODES=$stack python3 bench/setup.py "$url" "$work" 10 >/dev/null
{ read -r app_id; read -r app_token; } <"$work/credentials"
export TESSERA_APP_ID=$app_id TESSERA_APP_TOKEN=$app_token
project=$(curl -fsS "$url/management/v1/projects" -H "X-Management-Id: bench" -H "X-Management-Token: bench-management-token" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')
curl -fsS -X POST "$url/management/v1/projects/$project/webhooks" -H "X-Management-Id: bench" -H "X-Management-Token: bench-management-token" \
  -H 'content-type: application/json' -d "{\"target_url\":\"http://$sink/hook\",\"events\":[\"redemption.succeeded\"]}" >/dev/null

echo "machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo); commit $(git rev-parse --short HEAD)"
echo
echo "codes per request: $stack ($per_request redemption objects and events per request)"
echo
echo "| offered requests/s | achieved requests/s | redemptions/s | request p50 (ms) | request p99 (ms) | events delivered | lag p50 (ms) | lag p90 (ms) | lag p99 (ms) | lag max (ms) |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for r in "${rates[@]}"; do
  curl -fsS -X POST "http://$sink/reset" >/dev/null
  target/release/tessera-loadgen --url "$url" --scenario redeem-hot --hot-code "$hot" --rate "$r" --duration "$duration" \
    --warmup 1 --connections 32 --label "redeem@$r" --json-out "$work/run-$r.json" >/dev/null 2>>"$work/loadgen.log"
  # Let the last deliveries of the run arrive.
  sleep 2
  curl -fsS "http://$sink/stats" >"$work/sink-$r.json"
  python3 - "$work/run-$r.json" "$work/sink-$r.json" "$r" "$per_request" <<'PY'
import json, sys
run, sink, rate, per = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3], int(sys.argv[4])
lat = run.get("latency_ms", {})
ok = run.get("achieved_rps", 0)
print(f"| {rate} | {ok:.0f} | {ok * per:.0f} | {lat.get('p50', 0):.2f} | {lat.get('p99', 0):.2f} | {sink['count']} | "
      f"{sink['p50_ms']} | {sink['p90_ms']} | {sink['p99_ms']} | {sink['max_ms']} |")
PY
done
