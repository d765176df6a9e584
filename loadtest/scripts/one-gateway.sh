#!/usr/bin/env bash
# One fresh gateway process (any build of it), measured alone with the project's generator:
#
#   loadtest/scripts/one-gateway.sh hold N [GATEWAY_BIN]          RSS per idle connection
#   loadtest/scripts/one-gateway.sh fanout BURST ROUNDS [GATEWAY_BIN]
#                                                                 deliveries per gateway CPU-s
#   loadtest/scripts/one-gateway.sh heap N [GATEWAY_BIN]          heaptrack of N idle connections
#
# GATEWAY_BIN defaults to target/release/herald-gateway; pass another build's binary to compare
# commits in one sitting; PROTOCOL=socketio measures Socket.IO sockets instead of raw WebSockets.
# `fanout` also starts a release api on a fresh database (herald_fan) to publish through. Every
# process started here is stopped by PID before the script ends.
# Needs `cargo build --release -p herald-gateway -p herald-api -p herald-loadtest`, Postgres and
# Redis on this machine (DATABASE_URL's server, REDIS_URL), and heaptrack for `heap`.
set -euo pipefail
repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
lt="$repo/target/release/herald-loadtest"
export HERALD_JWT_SECRET=${HERALD_JWT_SECRET:-herald-dev-secret-change-me}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
DB_BASE=${DATABASE_URL:-postgres://herald:herald@127.0.0.1:5432/herald}
DB_BASE=${DB_BASE%/*}
pids=()
stop() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap stop EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ready() { for _ in $(seq 150); do curl -fs "http://$1/readyz" >/dev/null && return 0; sleep 0.2; done; return 1; }

# start_gateway BIN [WRAPPER...]: sets GW_ADDR and GW_PID (the gateway's own pid).
start_gateway() {
    local bin=$1 port
    shift
    port=$(free_port)
    HERALD_GATEWAY_ADDR=127.0.0.1:$port REDIS_URL=$REDIS_URL REDIS_PREFIX=one$$ \
        HERALD_API_URL=${API_URL:-http://127.0.0.1:9} HERALD_WS_MAX_CONNECTIONS=30000 \
        HERALD_WS_MAX_CONNECTIONS_PER_USER=100000 RUST_LOG=warn "$@" "$bin" >/dev/null 2>&1 &
    pids+=($!)
    GW_ADDR=127.0.0.1:$port
    ready "$GW_ADDR"
    GW_PID=$(ss -ltnpH "sport = :$port" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
}

case ${1:-} in
hold)
    start_gateway "${3:-$repo/target/release/herald-gateway}"
    "$lt" hold --gateway "$GW_ADDR" --gateway-pid "$GW_PID" --connections "$2" --sources 4 --hold-secs 3 \
        --protocol "${PROTOCOL:-raw}"
    ;;
fanout)
    api_port=$(free_port)
    psql -q "$DB_BASE/postgres" -c "DROP DATABASE IF EXISTS herald_fan" -c "CREATE DATABASE herald_fan" >/dev/null 2>&1 ||
        psql -q "$DB_BASE/herald" -c "DROP DATABASE IF EXISTS herald_fan" -c "CREATE DATABASE herald_fan" >/dev/null
    DATABASE_URL=$DB_BASE/herald_fan REDIS_URL=$REDIS_URL REDIS_PREFIX=one$$ HERALD_API_ADDR=127.0.0.1:$api_port \
        RUST_LOG=warn "$repo/target/release/herald-api" >/dev/null 2>&1 &
    pids+=($!)
    ready "127.0.0.1:$api_port"
    API_URL=http://127.0.0.1:$api_port start_gateway "${4:-$repo/target/release/herald-gateway}"
    "$lt" --api "http://127.0.0.1:$api_port" fanout --gateway "$GW_ADDR" --gateway-pid "$GW_PID" \
        --connections 1000 --rounds "$3" --burst "$2" --protocol "${PROTOCOL:-raw}"
    ;;
heap)
    out=${HEAP_OUT:-/tmp/herald-gateway-heap}
    start_gateway "${3:-$repo/target/release/herald-gateway}" heaptrack -o "$out"
    "$lt" hold --gateway "$GW_ADDR" --connections "$2" --sources 4 --hold-secs 3
    kill -TERM "$GW_PID"
    wait "${pids[-1]}" 2>/dev/null || true
    heaptrack_print -f "$out.zst" --print-peaks --print-allocators=no --print-temporary=no \
        --print-leaks=no --print-histogram=no --print-massif=no --peak-limit 10 --sub-peak-limit 8
    ;;
*)
    sed -n '2,14p' "$0" >&2
    exit 2
    ;;
esac
