#!/usr/bin/env bash
# Broadcast to 50,000 connections: GATEWAYS fresh gateway processes (release build; a process
# here may hold ~19.9k sockets) on the local stack's Redis, PROCESSES generator processes sharing
# the audience, ROUNDS events published through the local stack's api (`deploy/local.sh up`).
# Prints the fanout RESULT line (last-recipient p50/p99 over the rounds, deliveries per gateway
# CPU-second, loss). Bounded: ROUNDS rounds of at most 60 s each; the gateways started here are
# stopped by PID at the end.
#
#   loadtest/scripts/broadcast-50k.sh       (after `deploy/local.sh up`)
set -euo pipefail
repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
N=${N:-50000}
GATEWAYS=${GATEWAYS:-3}
PROCESSES=${PROCESSES:-3}
ROUNDS=${ROUNDS:-10}
BURST=${BURST:-1}
API=${API:-http://127.0.0.1:8001}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
REDIS_PREFIX=${REDIS_PREFIX:-herald}
export HERALD_JWT_SECRET=${HERALD_JWT_SECRET:-herald-dev-secret-change-me}
out=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
addrs=()
for i in $(seq 1 "$GATEWAYS"); do
    port=$((8140 + i))
    HERALD_GATEWAY_ADDR=127.0.0.1:$port HERALD_NODE_ID=bcast-$i REDIS_URL=$REDIS_URL \
        REDIS_PREFIX=$REDIS_PREFIX HERALD_WS_MAX_CONNECTIONS=19500 RUST_LOG=warn \
        "$repo/target/release/herald-gateway" >"$out/gw$i.log" 2>&1 &
    pids+=($!)
    addrs+=("127.0.0.1:$port")
done
for a in "${addrs[@]}"; do
    for _ in $(seq 100); do curl -fs "$a/readyz" >/dev/null && break; sleep 0.1; done
done
"$repo/target/release/herald-loadtest" --api "$API" fanout --connections "$N" \
    --gateway "$(IFS=,; echo "${addrs[*]}")" --gateway-pid "$(IFS=,; echo "${pids[*]}")" \
    --processes "$PROCESSES" --sources 4 --connect-concurrency 100 \
    --rounds "$ROUNDS" --burst "$BURST"
