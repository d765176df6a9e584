#!/usr/bin/env bash
# deploy/checks/edge.sh — the public edge answers as docs/api.md says, checked through nginx.
#
# `./deploy/local.sh test` runs it against the private test stack it starts (run_e2e). It checks:
#   1. JSON `{"detail": ...}` for every error through nginx: 404 and 405 (the api), 415 (a publish
#      that is not JSON), 413 from nginx itself (a body over HERALD_MAX_BODY_BYTES: nginx's limit
#      is the api's), and 502 / 504 from nginx (an nginx rendered from the same template in front
#      of an api address where nothing listens, and of one that accepts but never answers).
#   2. A refused browser origin is logged by the gateway once per minute, with the origin.
#   3. `deploy/local.sh token` against the running stack: signed with the stack's secret it is
#      accepted; from a shell without that secret it is refused with a message that names which
#      secret the stack runs with, and the message holds no secret.
# Environment:
#   HERALD_CHECK_URL      the stack's public origin        (http://127.0.0.1:18000)
#   HERALD_CHECK_RUN_DIR  the stack's run dir (pid files)   (<repo>/.run/e2e)
#   HERALD_JWT_SECRET     the stack's secret
#   HERALD_MAX_BODY_BYTES the stack's body limit            (4194304)
#   HERALD_CHECK_GATEWAY  the stack's first gateway         (127.0.0.1:18011)
# Ends with "edge: P passed, F failed"; exits 1 when anything failed.
set -euo pipefail

REPO_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
URL=${HERALD_CHECK_URL:-http://127.0.0.1:18000}
RUN_DIR=${HERALD_CHECK_RUN_DIR:-$REPO_ROOT/.run/e2e}
LIMIT=${HERALD_MAX_BODY_BYTES:-4194304}
: "${HERALD_JWT_SECRET:?set it to the secret of the stack}"

passed=0
failed=0
pass() {
    passed=$((passed + 1))
    printf 'ok    %s\n' "$*"
}
fail() {
    failed=$((failed + 1))
    printf 'FAIL  %s\n' "$*"
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/herald-edge.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# expect_json NAME STATUS CURL_ARGS...: the answer has STATUS, is application/json and has a
# string "detail".
expect_json() {
    local name=$1 want=$2 out status ctype
    shift 2
    out=$(curl -s -o "$WORK/body" -w '%{http_code} %{content_type}' --max-time 30 "$@" || true)
    read -r status ctype <<<"$out"
    if [[ $status == "$want" && $ctype == application/json* ]] &&
        /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert isinstance(d["detail"], str)' "$WORK/body" 2>/dev/null; then
        pass "$name: $status JSON $(head -c 120 "$WORK/body")"
    else
        fail "$name: wanted $want JSON with a detail, got $status '$ctype': $(head -c 200 "$WORK/body")"
    fi
}

token() { "$REPO_ROOT/deploy/local.sh" token "$@" 2>"$WORK/token.err"; }

# --- 1. JSON errors through nginx ------------------------------------------------------------
PUB=$(HERALD_RUN_DIR=$RUN_DIR token edge-check --scope publish)
expect_json "404 unknown path" 404 "$URL/api/no-such-thing"
expect_json "405 wrong method" 405 -X PATCH -H "Authorization: Bearer $PUB" "$URL/api/notifications"
expect_json "415 publish as form data" 415 -H "Authorization: Bearer $PUB" \
    -d 'recipients=alice&title=t' "$URL/api/notifications"
head -c $((LIMIT + 1)) /dev/zero | tr '\0' 'x' >"$WORK/big"
expect_json "413 from nginx (body of HERALD_MAX_BODY_BYTES + 1)" 413 -H "Authorization: Bearer $PUB" \
    -H 'content-type: application/json' --data-binary "@$WORK/big" "$URL/api/notifications"

# nginx from the same template, in front of an api that is not there and one that never answers.
# Not in a $(...) subshell: the nginx pid must reach PIDS here, or cleanup would miss it.
start_nginx() { # start_nginx API_ADDR REQUEST_TIMEOUT_MS -> sets NGINX_PORT
    local api=$1 timeout_ms=$2 port dir
    port=$(free_port)
    dir="$WORK/nginx-$port"
    HERALD_RUN_DIR=$dir HERALD_PUBLIC_URL=http://127.0.0.1:$port HERALD_API_ADDR=$api \
        HERALD_GATEWAY1_ADDR=127.0.0.1:9 HERALD_GATEWAY2_ADDR=127.0.0.1:9 \
        HERALD_REQUEST_TIMEOUT_MS=$timeout_ms "$REPO_ROOT/deploy/local.sh" nginx-config >/dev/null 2>&1
    nginx -g 'daemon off;' -q -c "$dir/nginx/nginx.conf" -p "$dir/nginx/" -e "$dir/nginx/error.log" \
        </dev/null >/dev/null 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    NGINX_PORT=$port
}
closed=$(free_port) # nothing listens here
start_nginx "127.0.0.1:$closed" 1000
expect_json "502 from nginx (api unreachable)" 502 "http://127.0.0.1:$NGINX_PORT/api/notifications"
# An "api" that accepts connections and never answers: nginx gives up after the api's request
# timeout (1 s here) + 5 s.
silent=$(free_port)
/usr/bin/python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
held = []
deadline = time.time() + 60
s.settimeout(1)
while time.time() < deadline:
    try:
        held.append(s.accept()[0])
    except socket.timeout:
        pass
' "$silent" &
PIDS+=($!)
start_nginx "127.0.0.1:$silent" 1000
expect_json "504 from nginx (api silent past its timeout)" 504 "http://127.0.0.1:$NGINX_PORT/api/notifications"

# --- A refused origin leaves one warning a minute in the gateway's log --------------------------
GATEWAY=${HERALD_CHECK_GATEWAY:-127.0.0.1:18011}
origin="http://edge-check-$RANDOM.invalid"
for _ in 1 2 3; do
    curl -s -o /dev/null --max-time 5 -H 'Connection: Upgrade' -H 'Upgrade: websocket' \
        -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: ZWRnZS1jaGVjay1rZXktMTIzNA==' \
        -H "Origin: $origin" "http://$GATEWAY/api/notifications/ws?token=x" || true
done
log="$RUN_DIR/logs/gateway1.log"
n=$(grep -c "refused a browser origin.*$origin" "$log" || true)
if [[ $n == 1 ]]; then
    pass "a refused origin is logged at warn once a minute, with the origin ($n line for 3 refusals)"
else
    fail "a refused origin: $n lines in $log for 3 refusals (wanted 1)"
fi

# --- 2. local.sh token and the running stack's secret ----------------------------------------
USER_TOKEN=$(HERALD_RUN_DIR=$RUN_DIR token edge-user)
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $USER_TOKEN" "$URL/api/notifications")
if [[ $code == 200 ]]; then pass "token with the stack's secret is accepted ($code)"; else fail "token with the stack's secret: $code"; fi
for shell in "unset" "other"; do
    if [[ $shell == unset ]]; then
        set +e
        env -u HERALD_JWT_SECRET HERALD_RUN_DIR="$RUN_DIR" "$REPO_ROOT/deploy/local.sh" token alice >"$WORK/out" 2>"$WORK/err"
        rc=$?
        set -e
    else
        set +e
        HERALD_JWT_SECRET=some-other-secret-value HERALD_RUN_DIR="$RUN_DIR" "$REPO_ROOT/deploy/local.sh" token alice >"$WORK/out" 2>"$WORK/err"
        rc=$?
        set -e
    fi
    if ((rc != 0)) && [[ ! -s $WORK/out ]] && grep -q 'running stack' "$WORK/err" &&
        ! grep -qF -- "$HERALD_JWT_SECRET" "$WORK/err" && ! grep -qF -- some-other-secret-value "$WORK/err"; then
        pass "token from a shell whose secret is $shell: refused, and says why ($(grep -o 'verifies tokens with [^,]*' "$WORK/err"))"
    else
        fail "token from a shell whose secret is $shell: exit $rc, stdout $(wc -c <"$WORK/out") bytes, stderr: $(cat "$WORK/err")"
    fi
done

echo "edge: $passed passed, $failed failed"
((failed == 0))
