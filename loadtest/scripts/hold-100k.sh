#!/usr/bin/env bash
# Holds 100,000 idle WebSocket connections on this box: GATEWAYS gateway processes (release
# build) behind no proxy, one load-generator process per gateway (a process here may hold
# ~19.9k sockets), then prints per-process results and the total. Bounded: each generator holds
# for HOLD_SECS and exits; the gateways started here are stopped by PID at the end.
#
#   loadtest/scripts/hold-100k.sh            (needs Redis, and `cargo build --release`)
set -euo pipefail
repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
GATEWAYS=${GATEWAYS:-6}
PER=${PER:-16700}
HOLD_SECS=${HOLD_SECS:-10}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
SECRET=${HERALD_JWT_SECRET:-herald-dev-secret-change-me}
out=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
for i in $(seq 1 "$GATEWAYS"); do
    port=$((8130 + i))
    HERALD_GATEWAY_ADDR=127.0.0.1:$port HERALD_NODE_ID=bench-$i REDIS_URL=$REDIS_URL REDIS_PREFIX=bench100k \
        HERALD_JWT_SECRET=$SECRET HERALD_WS_MAX_CONNECTIONS=19500 RUST_LOG=warn \
        "$repo/target/release/herald-gateway" >"$out/gw$i.log" 2>&1 &
    pids+=($!)
done
for i in $(seq 1 "$GATEWAYS"); do
    for _ in $(seq 100); do curl -fs "127.0.0.1:$((8130 + i))/readyz" >/dev/null && break; sleep 0.1; done
done
gens=()
for i in $(seq 1 "$GATEWAYS"); do
    HERALD_JWT_SECRET=$SECRET "$repo/target/release/herald-loadtest" hold --gateway "127.0.0.1:$((8130 + i))" \
        --gateway-pid "${pids[$((i - 1))]}" --connections "$PER" --sources 4 --connect-concurrency 100 \
        --hold-secs "$HOLD_SECS" >"$out/gen$i.log" 2>&1 &
    gens+=($!)
done
status=0
for g in "${gens[@]}"; do wait "$g" || status=1; done
grep -h '^RESULT' "$out"/gen*.log | sed 's/^RESULT //'
python3 - "$out" <<'PY'
import glob, json, sys
rows = [json.loads(l[7:]) for f in glob.glob(sys.argv[1] + "/gen*.log") for l in open(f) if l.startswith("RESULT ")]
total = sum(r["connections"] for r in rows)
per = [r["bytes_per_connection"] for r in rows if r.get("bytes_per_connection")]
print(f"hold-100k: {total} connections held across {len(rows)} gateway processes; "
      f"RSS per connection {min(per):.0f}-{max(per):.0f} B (median {sorted(per)[len(per)//2]:.0f} B)")
PY
exit "$status"
