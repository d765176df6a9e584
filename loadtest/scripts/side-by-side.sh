#!/usr/bin/env bash
# Herald and the three peers side by side, same generator, same scenarios: N idle connections
# (RSS per connection), then ROUNDS broadcasts to all of them one at a time, then BURST_ROUNDS
# bursts of BURST events published at once (deliveries per second of the server's CPU,
# last-recipient latency). Each server is a fresh single process started here and
# stopped by PID. Prints one RESULT JSON line per server and scenario.
#
#   loadtest/scripts/side-by-side.sh   (after `cargo build --release` and loadtest/peers/install.sh)
#   HOLD_ONLY=1 N=19000 loadtest/scripts/side-by-side.sh    memory only, at 19,000 connections
set -euo pipefail
repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
N=${N:-2000}
ROUNDS=${ROUNDS:-10}
BURST=${BURST:-20}
BURST_ROUNDS=${BURST_ROUNDS:-10}
export HERALD_JWT_SECRET=${HERALD_JWT_SECRET:-herald-dev-secret-change-me}
lt="$repo/target/release/herald-loadtest"
pid=""
# `wait` on a server we stopped returns its signal status (143): never let `set -e` end the run.
stop() {
    if [[ -n $pid ]]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    pid=""
}
trap stop EXIT
wait_port() { for _ in $(seq 200); do curl -s -o /dev/null "127.0.0.1:$1/" && return 0; sleep 0.1; done; return 1; }

measure() { # NAME PORT PROTOCOL API
    local name=$1 port=$2 proto=$3 api=$4
    wait_port "$port"
    sleep 1
    "$lt" --api "$api" hold --gateway "127.0.0.1:$port" --gateway-pid "$pid" --connections "$N" \
        --protocol "$proto" --hold-secs 3 | sed -n "s/^RESULT /RESULT {\"server\":\"$name\",/p" | sed 's/,{/,/'
    [[ -n ${HOLD_ONLY:-} ]] && return 0
    "$lt" --api "$api" fanout --gateway "127.0.0.1:$port" --gateway-pid "$pid" --connections "$N" \
        --protocol "$proto" --rounds "$ROUNDS" | sed -n "s/^RESULT /RESULT {\"server\":\"$name\",/p" | sed 's/,{/,/'
    "$lt" --api "$api" fanout --gateway "127.0.0.1:$port" --gateway-pid "$pid" --connections "$N" \
        --protocol "$proto" --rounds "$BURST_ROUNDS" --burst "$BURST" | sed -n "s/^RESULT /RESULT {\"server\":\"$name\",\"burst\":$BURST,/p" | sed 's/,{/,/'
}

# Herald: a fresh gateway process per protocol; events go through the api of the local stack
# (same Redis).
for proto in raw:herald-ws socketio:herald-socketio; do
    HERALD_GATEWAY_ADDR=127.0.0.1:9100 HERALD_WS_MAX_CONNECTIONS=30000 REDIS_PREFIX=${REDIS_PREFIX:-herald} RUST_LOG=warn "$repo/target/release/herald-gateway" >/dev/null 2>&1 &
    pid=$!
    measure "${proto##*:}" 9100 "${proto%%:*}" http://127.0.0.1:8001
    stop
done
for peer in node_ws:raw fastapi_ws:raw python_socketio:socketio node_socketio:socketio; do
    name=${peer%%:*}
    "$repo/loadtest/peers/run.sh" "$name" 9101 >/dev/null 2>&1 &
    pid=$!
    measure "$name" 9101 "${peer##*:}" http://127.0.0.1:9101
    stop
done
