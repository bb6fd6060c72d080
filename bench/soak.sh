#!/usr/bin/env bash
# Soak benchmark reproducing the noisy-neighbour incident on one machine: tenant A floods
# one endpoint (validations) with FLOOD_REQUESTS requests, a third each with its valid
# server key, with invalid keys and with its client key from a new client IP every time,
# while tenant B runs a steady validate + redeem load. Reports B alone and B during the
# flood (same run), A's share of refused requests, B's 5xx, and the server's RSS.
#
# Usage: bench/soak.sh   (env: FLOOD_REQUESTS [1000000], FLOOD_RATE [6000],
#                         B_VALIDATE_RATE [300], B_REDEEM_RATE [100], PORT [18400],
#                         FLOOD_NICE [10])
# The flood's generator runs at FLOOD_NICE: in the incident the flood came from other
# machines, and here its generator shares the server's two cores; at equal priority the
# generator's own CPU, not the server, decides part of B's tail.
set -euo pipefail
cd "$(dirname "$0")/.."
flood_requests=${FLOOD_REQUESTS:-1000000}
flood_rate=${FLOOD_RATE:-6000}
b_validate=${B_VALIDATE_RATE:-300}
b_redeem=${B_REDEEM_RATE:-100}
port=${PORT:-18400}
flood_nice=${FLOOD_NICE:-10}
flood_secs=$(( flood_requests / flood_rate ))

cargo build --release --locked -p tessera -p tessera-loadgen >/dev/null 2>&1
dir=$(mktemp -d)
out=bench/out/soak-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$dir"' EXIT
export TESSERA_MANAGEMENT_ID=soak TESSERA_MANAGEMENT_TOKEN=soak-management-token
target/release/tessera serve --listen 127.0.0.1:$port --data-dir "$dir" --log-level warn --trust-forwarded-for true > "$out/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -fsS http://127.0.0.1:$port/health/ready >/dev/null 2>&1 && break; sleep 0.1; done
url=http://127.0.0.1:$port
mgmt=(-H "X-Management-Id: soak" -H "X-Management-Token: soak-management-token" -H 'content-type: application/json')
field() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval("d"+sys.argv[2]))' "$1" "$2"; }
# A: default budgets (the flood is the point); its client key trusts one origin.
a=$(curl -fsS -X POST $url/management/v1/projects "${mgmt[@]}" -d '{"name":"A","client_trusted_domains":["https://a.example"]}')
# B: budgets raised out of the way, so any change in B is interference, not throttling.
b=$(curl -fsS -X POST $url/management/v1/projects "${mgmt[@]}" -d '{"name":"B","rate_limits":{"per_minute":100000000,"burst":100000,"max_in_flight":10000}}')
a_id=$(field "$a" '["server_side_key"]["app_id"]'); a_tok=$(field "$a" '["server_side_key"]["app_token"]')
a_cid=$(field "$a" '["client_side_key"]["app_id"]'); a_ctok=$(field "$a" '["client_side_key"]["app_token"]')
b_id=$(field "$b" '["server_side_key"]["app_id"]'); b_tok=$(field "$b" '["server_side_key"]["app_token"]')
for p in "$a_id:$a_tok" "$b_id:$b_tok"; do
  curl -fsS -X POST $url/v1/vouchers/SOAK -H "X-App-Id: ${p%%:*}" -H "X-App-Token: ${p#*:}" -H 'content-type: application/json' \
    -d '{"type":"DISCOUNT_VOUCHER","discount":{"type":"PERCENT","percent_off":10},"redemption":{"quantity":null}}' >/dev/null
done
echo SOAK > "$out/codes.txt"
rss() { awk '/^VmRSS/ {print $2}' /proc/$pid/status; }

b_load() { # label duration
  target/release/tessera-loadgen --url $url --app-id "$b_id" --app-token "$b_tok" --scenario validate --codes-file "$out/codes.txt" \
    --rate "$b_validate" --duration "$2" --warmup 2 --connections 8 --label "B validate ($1)" --json-out "$out/b-validate-$1.json" > "$out/b-validate-$1.md" &
  local validate=$!
  target/release/tessera-loadgen --url $url --app-id "$b_id" --app-token "$b_tok" --scenario redeem-hot --hot-code SOAK \
    --rate "$b_redeem" --duration "$2" --warmup 2 --connections 8 --label "B redeem ($1)" --json-out "$out/b-redeem-$1.json" > "$out/b-redeem-$1.md"
  wait "$validate" # not a bare wait: the server is a child of this script too
}

rss_start=$(rss)
# RSS every 5 s for the whole run, to tell a leak (a slope) from bounded structures
# filling (a step, then flat).
( t0=$(date +%s); while kill -0 "$pid" 2>/dev/null; do
    echo "$(( $(date +%s) - t0 )) $(rss)"; sleep 5
  done ) > "$out/rss.tsv" 2>/dev/null &
sampler=$!
b_load alone 20
rss_before=$(rss)
nice -n "$flood_nice" target/release/tessera-loadgen --url $url --app-id "$a_id" --app-token "$a_tok" --client-id "$a_cid" --client-token "$a_ctok" \
  --origin https://a.example --scenario flood --hot-code SOAK --rate "$flood_rate" --duration "$flood_secs" --warmup 0 \
  --connections 64 --max-in-flight 100000 --label "A flood" --json-out "$out/a-flood.json" > "$out/a-flood.md" 2> "$out/a-flood.log" &
flood=$!
sleep 2
b_load flood $(( flood_secs - 6 ))
wait $flood
rss_after=$(rss)
kill "$sampler" 2>/dev/null || true

python3 - "$out" "$rss_start" "$rss_before" "$rss_after" <<'PY'
import json, sys, pathlib
out, start, before, after = pathlib.Path(sys.argv[1]), *map(int, sys.argv[2:])
def load(n): return json.loads((out / n).read_text())
a = load("a-flood.json")
rows = []
for name in ["b-validate-alone", "b-validate-flood", "b-redeem-alone", "b-redeem-flood"]:
    r = load(name + ".json")
    five = sum(v for k, v in r["errors"].items() if k.startswith("status_5"))
    rows.append(f"| {r['label']} | {r['achieved_rps']:.0f} | {r['latency_ms']['p50']:.2f} | {r['latency_ms']['p99']:.2f} | {r['ok']} | {five} | {sum(r['errors'].values())} |")
refused = sum(v for k, v in a["errors"].items() if k in ("status_429", "status_401", "status_503"))
total = a["requests"]
print(f"- A: {total:,} requests at {a['achieved_rps']:.0f}/s accepted; answers: ok {a['ok']:,}, " + ", ".join(f"{k} {v:,}" for k, v in sorted(a['errors'].items())))
print(f"- A refused (401/429/503): {refused / max(total, 1):.1%} of its requests")
print(f"- server RSS: {start/1024:.1f} MB at start, {before/1024:.1f} MB before the flood, {after/1024:.1f} MB after (growth {(after-before)/1024:.1f} MB)")
samples = [tuple(map(int, l.split())) for l in (out / "rss.tsv").read_text().split("\n") if len(l.split()) == 2]
if samples:
    print(f"- server RSS every 5 s (MB): " + " ".join(f"{kb/1024:.0f}" for _, kb in samples))
print()
print("| tenant B | achieved rps | p50 ms | p99 ms | ok | 5xx | non-2xx |")
print("|---|---:|---:|---:|---:|---:|---:|")
print("\n".join(rows))
PY
