#!/usr/bin/env bash
# Runs one reference peer in the foreground as a single process (exec: the PID you start is the
# server's own, for RSS and CPU readings), on 127.0.0.1:PORT. Install first with install.sh.
#
#   loadtest/peers/run.sh python_socketio|fastapi_ws|node_socketio|node_ws PORT
#
# Environment: REDIS_URL (redis://127.0.0.1:6379; the two Socket.IO peers), HERALD_JWT_SECRET
# (herald-dev-secret-change-me), HERALD_PEERS_DIR (<repo>/.run/peers, where the venv is).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${HERALD_PEERS_DIR:-$repo/.run/peers}/venv"

usage() { echo "usage: $0 python_socketio|fastapi_ws|node_socketio|node_ws PORT" >&2; exit 2; }
[[ $# -eq 2 && $2 =~ ^[0-9]+$ ]] || usage
peer="$1" port="$2"

export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
export HERALD_JWT_SECRET="${HERALD_JWT_SECRET:-herald-dev-secret-change-me}"
export PYTHONUNBUFFERED=1

case "$peer" in
    python_socketio | fastapi_ws)
        [[ -x $venv/bin/python ]] || { echo "no venv at $venv: run $here/install.sh" >&2; exit 1; }
        exec "$venv/bin/python" "$here/$peer/server.py" --port "$port"
        ;;
    node_socketio)
        [[ -d $here/node_socketio/node_modules ]] || { echo "no node_modules: run $here/install.sh" >&2; exit 1; }
        exec node "$here/node_socketio/server.mjs" --port "$port"
        ;;
    node_ws)
        [[ -d $here/node_ws/node_modules ]] || { echo "no node_modules: run $here/install.sh" >&2; exit 1; }
        exec node "$here/node_ws/server.mjs" --port "$port"
        ;;
    *) usage ;;
esac
