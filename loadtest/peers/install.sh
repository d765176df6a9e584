#!/usr/bin/env bash
# Installs the benchmark's reference peers (the seeds' stacks, see README.md here): a Python venv
# for python_socketio and fastapi_ws with the pinned requirements.txt, and node_socketio's and
# node_ws's node_modules from their package-lock.json. Idempotent: a second run with nothing
# changed only checks. Debian 12; installs python3-venv, nodejs/npm and redis-server from apt
# when missing (as root, or through sudo).
#
#   loadtest/peers/install.sh          # venv in ${HERALD_PEERS_DIR:-<repo>/.run/peers}/venv
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
peers_dir="${HERALD_PEERS_DIR:-$repo/.run/peers}"
venv="$peers_dir/venv"
python=/usr/bin/python3

say() { printf 'peers: %s\n' "$*"; }
die() { printf 'peers: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

as_root() {
    if [[ $EUID -eq 0 ]]; then "$@"
    elif have sudo; then sudo "$@"
    else die "'$*' needs root and sudo is missing: run this script as root"
    fi
}

# apt-get install, with an apt-get update first only when the package lists are empty or stale.
apt_updated=0
apt_install() {
    say "installing from apt: $*"
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"; then
        [[ $apt_updated -eq 1 ]] && die "apt-get install $* failed"
        as_root apt-get update
        apt_updated=1
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
    fi
}

# System packages: Debian's python with venv and ensurepip, node and npm, and Redis (the peers
# that mirror the Socket.IO seed use it; Herald's own deploy/local.sh installs it too).
missing=()
[[ -x $python ]] || missing+=(python3)
[[ -x $python ]] && $python -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
have node || missing+=(nodejs)
have npm || missing+=(npm)
have redis-server || missing+=(redis-server)
[[ ${#missing[@]} -eq 0 ]] || apt_install "${missing[@]}"

# The venv: created once, reinstalled only when requirements.txt changes (a stamp holds its hash).
mkdir -p "$peers_dir"
if [[ ! -x $venv/bin/python ]]; then
    say "creating $venv"
    $python -m venv "$venv"
fi
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ "$(cat "$venv/.herald-requirements" 2>/dev/null || true)" != "$want" ]]; then
    say "pip install -r requirements.txt"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$here/requirements.txt"
    echo "$want" >"$venv/.herald-requirements"
else
    say "venv up to date ($venv)"
fi

# node_socketio and node_ws: npm ci when node_modules does not match package-lock.json.
for node_dir in "$here/node_socketio" "$here/node_ws"; do
    want="$(sha256sum "$node_dir/package-lock.json" | cut -d' ' -f1)"
    if [[ "$(cat "$node_dir/node_modules/.herald-lock" 2>/dev/null || true)" != "$want" ]]; then
        say "npm ci in $node_dir"
        (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
        echo "$want" >"$node_dir/node_modules/.herald-lock"
    else
        say "node_modules up to date ($node_dir)"
    fi
done

say "ready: $("$venv/bin/python" -c 'from importlib.metadata import version as v; print(*(f"{p} {v(p)}" for p in ("python-socketio", "redis", "fastapi", "uvicorn", "PyJWT")), sep=", ")'), node $(node --version), socket.io $(node -p 'require("'"$here"'/node_socketio/node_modules/socket.io/package.json").version'), ws $(node -p 'require("'"$here"'/node_ws/node_modules/ws/package.json").version')"
