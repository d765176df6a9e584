#!/usr/bin/env bash
# Holds TOTAL idle WebSocket connections on this box at once: enough gateway processes (release
# build, no proxy) for ≤ 19,300 connections each (a process here may hold ~19.9k sockets), one
# load-generator process per gateway connecting from 4 source addresses of its own (a socket bound
# to a source address before connecting takes a port no other socket on that address holds, so
# ~28k per address in all), then reads, at one
# instant, every gateway's own connection gauge and RSS: the sum is what was held concurrently.
# The generator's clients do not answer pings, so the gateways here ping rarely and allow 15 min
# of silence (connecting 250,000 takes longer than the default 60 s idle timeout).
# Bounded: each generator holds for HOLD_SECS and exits; the script gives up after DEADLINE_SECS;
# the gateways started here are stopped by PID at the end.
#
#   loadtest/scripts/hold-many.sh              (TOTAL=250000; needs Redis and a release build)
set -euo pipefail
repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
TOTAL=${TOTAL:-250000}
PER_MAX=19300
GATEWAYS=${GATEWAYS:-$(((TOTAL + PER_MAX - 1) / PER_MAX))}
PER=$(((TOTAL + GATEWAYS - 1) / GATEWAYS))
HOLD_SECS=${HOLD_SECS:-240}
DEADLINE_SECS=${DEADLINE_SECS:-300}
BASE_PORT=${BASE_PORT:-8130}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export HERALD_JWT_SECRET=${HERALD_JWT_SECRET:-herald-dev-secret-change-me}
out=$(mktemp -d)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
gauge() { curl -fs "127.0.0.1:$1/metrics" | awk '$1 == "herald_gateway_connections" {print $2}'; }

gw_pids=()
for i in $(seq 1 "$GATEWAYS"); do
    HERALD_GATEWAY_ADDR=127.0.0.1:$((BASE_PORT + i)) HERALD_NODE_ID=hold-$i REDIS_URL=$REDIS_URL \
        REDIS_PREFIX=holdmany$$ HERALD_WS_MAX_CONNECTIONS=$((PER + 100)) RUST_LOG=warn \
        HERALD_WS_IDLE_TIMEOUT_SECS=900 HERALD_WS_PING_INTERVAL_SECS=600 \
        "$repo/target/release/herald-gateway" >"$out/gw$i.log" 2>&1 &
    pids+=($!)
    gw_pids+=($!)
done
for i in $(seq 1 "$GATEWAYS"); do
    for _ in $(seq 100); do curl -fs "127.0.0.1:$((BASE_PORT + i))/readyz" >/dev/null && break; sleep 0.1; done
done
rss_before=0
for p in "${gw_pids[@]}"; do rss_before=$((rss_before + $(rss_kib "$p"))); done
started=$(date +%s)
for i in $(seq 1 "$GATEWAYS"); do
    "$repo/target/release/herald-loadtest" hold --gateway "127.0.0.1:$((BASE_PORT + i))" \
        --gateway-pid "${gw_pids[$((i - 1))]}" --connections "$PER" --sources 4 --first-source $((4 * i - 3)) \
        --connect-concurrency 400 \
        --hold-secs "$HOLD_SECS" >"$out/gen$i.log" 2>&1 &
    pids+=($!)
done
# Sample every gateway until they hold TOTAL between them (or the deadline passes).
held=0
while (($(date +%s) - started < DEADLINE_SECS)); do
    held=0
    for i in $(seq 1 "$GATEWAYS"); do held=$((held + $(gauge $((BASE_PORT + i)) || echo 0))); done
    echo "hold-many: $held held after $(($(date +%s) - started)) s" >&2
    ((held >= TOTAL)) && break
    sleep 2
done
rss=0
for p in "${gw_pids[@]}"; do rss=$((rss + $(rss_kib "$p"))); done
took=$(($(date +%s) - started))
echo "RESULT {\"target\":$TOTAL,\"gateways\":$GATEWAYS,\"held_at_once\":$held,\"seconds_to_connect\":$took,\"gateway_rss_kib\":$rss,\"gateway_rss_before_kib\":$rss_before,\"bytes_per_connection\":$(((rss - rss_before) * 1024 / (held > 0 ? held : 1)))}"
if ((held < TOTAL)); then
    tail -n 3 "$out"/gen*.log "$out"/gw*.log >&2
    exit 1
fi
