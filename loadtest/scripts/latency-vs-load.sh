#!/usr/bin/env bash
# Publish-to-receive latency percentiles against load, for Herald (notifications: api → Postgres
# → Redis → gateway; events: api → Redis → gateway; the local stack on :8001/:8011) and the three
# peers (FastAPI: notifications kept in memory; the Socket.IO peers: events to a user's room), at
# RATES notifications per second for SECONDS each, USERS connected users. Writes JSON lines to
# OUT (default .run/latency-vs-load.jsonl); plot with plot.py. Bounded: len(RATES) × SECONDS per
# server; the peer started here is stopped by PID.
set -euo pipefail
repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
RATES=${RATES:-"100 250 500 1000"}
SECONDS_EACH=${SECONDS_EACH:-10}
USERS=${USERS:-500}
OUT=${OUT:-$repo/.run/latency-vs-load.jsonl}
export HERALD_JWT_SECRET=${HERALD_JWT_SECRET:-herald-dev-secret-change-me}
lt="$repo/target/release/herald-loadtest"
: >"$OUT"
run() { # SERVER API GATEWAY PROTOCOL VIA
    for rate in $RATES; do
        "$lt" --api "$2" targeted --gateway "$3" --protocol "$4" --via "$5" --connections "$USERS" \
            --rate "$rate" --seconds "$SECONDS_EACH" |
            sed -n "s/^RESULT {/{\"server\":\"$1\",/p" >>"$OUT"
    done
}
peer=""
stop_peer() {
    if [[ -n $peer ]]; then
        kill "$peer" 2>/dev/null || true
        wait "$peer" 2>/dev/null || true
    fi
    peer=""
}
trap stop_peer EXIT
run herald http://127.0.0.1:8001 127.0.0.1:8011 raw notifications
run herald-events http://127.0.0.1:8001 127.0.0.1:8011 raw events
for p in fastapi_ws:raw:notifications python_socketio:socketio:events node_socketio:socketio:events; do
    IFS=: read -r name proto via <<<"$p"
    "$repo/loadtest/peers/run.sh" "$name" 9108 >/dev/null 2>&1 &
    peer=$!
    for _ in $(seq 100); do curl -sf 127.0.0.1:9108/healthz >/dev/null && break; sleep 0.1; done
    run "$name" http://127.0.0.1:9108 127.0.0.1:9108 "$proto" "$via"
    stop_peer
done
cat "$OUT"
