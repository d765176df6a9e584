#!/usr/bin/env bash
# deploy/checks/ops.sh — checks of the operations kit (deploy/prometheus, deploy/grafana,
# deploy/compose.yaml, docs/operations.md) against a running Herald stack.
#
# `./deploy/local.sh test` runs it against the private test stack it starts (run_e2e), before the
# browser tests (they kill a gateway); it also runs by hand against any stack given here:
#   HERALD_CHECK_API       api address        (127.0.0.1:18001)
#   HERALD_CHECK_GATEWAYS  gateway addresses  (127.0.0.1:18011,127.0.0.1:18012), comma separated
#   HERALD_CHECK_WORKER    worker address     (127.0.0.1:18021)
#   HERALD_JWT_SECRET      the stack's HS256 secret (the local.sh development default)
#
# What it checks:
#   1. promtool: both Prometheus configs, the alert rules, and the rules' unit tests.
#   2. Every herald_* metric named in alerts.yml and the Grafana dashboard is exported on the
#      /metrics of the service it belongs to. Labelled metrics have no series before their first
#      increment, so the check first causes the cheap ones (a refused token on the api and on
#      each gateway, a refused origin, a published notification); a labelled one that still has
#      no series is accepted only if <service>/src/metrics.rs declares it, and is listed.
#   3. docs/operations.md names every environment variable the code reads.
#   4. deploy/compose.yaml: `docker compose config -q` when a compose plugin exists (this box has
#      neither an engine nor the plugin), and always its structure with Debian's python3-yaml:
#      the services, health checks, startup order, required secret, mounted files, variables
#      the code reads. And deploy/compose/nginx.conf passes `nginx -t` (service names replaced
#      by 127.0.0.1).
#   5. A real Prometheus (Debian's /usr/bin/prometheus, started here on a free 127.0.0.1 port,
#      stopped by pid at exit) scraping the stack every second with alerts.yml loaded: every
#      target is up, every rule evaluates without error, every dashboard query runs, and with N
#      WebSocket clients held open on the first gateway its herald_gateway_connections is N more
#      than before, and its publish-to-write histogram counted the notification they received.
# Ends with "ops: P passed, F failed" (what CI reads); exits 1 when anything failed.
set -euo pipefail

REPO_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

API=${HERALD_CHECK_API:-127.0.0.1:18001}
IFS=, read -r -a GATEWAYS <<<"${HERALD_CHECK_GATEWAYS:-127.0.0.1:18011,127.0.0.1:18012}"
WORKER=${HERALD_CHECK_WORKER:-127.0.0.1:18021}
export HERALD_JWT_SECRET=${HERALD_JWT_SECRET:-herald-dev-secret-change-me}
CLIENTS=3 # WebSocket clients held open on the first gateway

PROM_DIR="$REPO_ROOT/deploy/prometheus"
ALERTS="$PROM_DIR/alerts.yml"
DASHBOARD="$REPO_ROOT/deploy/grafana/dashboards/herald-overview.json"
OPS_DOC="$REPO_ROOT/docs/operations.md"
COMPOSE="$REPO_ROOT/deploy/compose.yaml"
# The `ws` package that `npm ci` in gateway/tests/socketio installs (socket.io-client needs it).
WS_MODULE="$REPO_ROOT/gateway/tests/socketio/node_modules/ws"
PY=/usr/bin/python3 # Debian's python3, with python3-yaml

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
note() { printf '      %s\n' "$*"; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/herald-ops.XXXXXX")
PROM_PID=""
CLIENTS_PID=""
cleanup() {
    local pid
    for pid in "$CLIENTS_PID" "$PROM_PID"; do
        [[ -n $pid ]] || continue
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

# The Python helpers (JSON from Prometheus, the dashboard, the compose file), in one file.
cat >"$WORK/ops.py" <<'PYEOF'
"""Helpers of deploy/checks/ops.sh: value | up | rules (a Prometheus API answer on stdin),
queries DASHBOARD, compose COMPOSE_FILE ENV_VARS_FILE."""
import json
import os
import re
import sys


def load_stdin():
    try:
        return json.load(sys.stdin)
    except ValueError:
        return {}


def value():
    d = load_stdin()
    if d.get("status") != "success":
        print("error:", d.get("error", "no answer"))
        return
    r = d["data"]["result"]
    print(r[0]["value"][1] if r else "none")


def up():
    r = load_stdin().get("data", {}).get("result", [])
    r = sorted(r, key=lambda s: s["metric"]["instance"])
    print(" ".join("%s=%s" % (s["metric"]["instance"], s["value"][1]) for s in r))


def rules():
    groups = load_stdin().get("data", {}).get("groups", [])
    rs = [r for g in groups for r in g["rules"]]
    unknown = sum(r["health"] == "unknown" for r in rs)
    bad = ["%s: %s" % (r["name"], r.get("lastError") or r["health"])
           for r in rs if r["health"] not in ("ok", "unknown")]
    print(len(rs), unknown, "; ".join(bad))


def queries(path):
    """Every panel query, with Grafana's interval variables replaced by fixed ranges."""
    d = json.load(open(path))
    for p in d["panels"]:
        for t in p.get("targets", []):
            e = t["expr"].replace("$__rate_interval", "1m").replace("$__interval", "15s")
            print(e.replace("$__range", "1h"))


def compose(path, vars_path):
    import yaml

    base = os.path.dirname(path)
    known = set(open(vars_path).read().split())
    doc = yaml.safe_load(open(path))
    problems = []
    services = doc.get("services") or {}
    required = {"postgres", "redis", "api", "gateway1", "gateway2", "worker", "nginx",
                "prometheus", "grafana", "mailpit"}
    for name in sorted(required - services.keys()):
        problems.append("no service " + name)
    herald = {"api": "herald-api", "gateway1": "herald-gateway", "gateway2": "herald-gateway",
              "worker": "herald-worker"}
    for name, svc in services.items():
        if not ("image" in svc or "build" in svc):
            problems.append(name + ": neither image nor build")
        if not (svc.get("healthcheck") or {}).get("test"):
            problems.append(name + ": no healthcheck")
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            problems.append(name + ": depends_on without conditions")
            deps = {}
        for dep, how in deps.items():
            if dep not in services:
                problems.append("%s: depends on unknown service %s" % (name, dep))
            elif (how or {}).get("condition") != "service_healthy":
                problems.append("%s: depends on %s without service_healthy" % (name, dep))
        for vol in svc.get("volumes") or []:
            src = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source", "")
            if src.startswith((".", "/")) and not os.path.exists(os.path.join(base, src)):
                problems.append("%s: mounts %s, which does not exist" % (name, src))
        if name not in herald:
            continue
        entry = svc.get("entrypoint") or ["herald-api"]
        entry = entry[0] if isinstance(entry, list) else entry.split()[0]
        if entry != herald[name]:
            problems.append("%s: entrypoint %s, not %s" % (name, entry, herald[name]))
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env)
        for key in env:
            if key not in known:
                problems.append("%s: sets %s, which the code does not read" % (name, key))
        if name != "worker":
            secret = str(env.get("HERALD_JWT_SECRET", ""))
            if not re.fullmatch(r"\$\{HERALD_JWT_SECRET:\?[^}]+\}", secret):
                problems.append(name + ": HERALD_JWT_SECRET is not ${HERALD_JWT_SECRET:?...}")
            if "REDIS_URL" not in env:
                problems.append(name + ": no REDIS_URL")
        if name in ("api", "worker") and "DATABASE_URL" not in env:
            problems.append(name + ": no DATABASE_URL")
        if name.startswith("gateway"):
            drain = int(env.get("HERALD_DRAIN_SECS", 10))
            grace = str(svc.get("stop_grace_period", "10s"))
            m = re.fullmatch(r"(\d+)s", grace)
            if not m or int(m.group(1)) < drain + 10:
                problems.append("%s: stop_grace_period %s < drain + 10 s" % (name, grace))
    worker_env = (services.get("worker") or {}).get("environment") or {}
    if worker_env.get("SMTP_HOST") != "mailpit":
        problems.append("worker: SMTP_HOST is not mailpit")
    for p in problems:
        print(p)
    if problems:
        return 1
    print("%d services, health checks and startup order consistent" % len(services))
    return 0


cmd, args = sys.argv[1], sys.argv[2:]
sys.exit({"value": value, "up": up, "rules": rules, "queries": queries,
          "compose": compose}[cmd](*args) or 0)
PYEOF

# --------------------------------------------------------------------------------------------
# 1. promtool
# --------------------------------------------------------------------------------------------
check_promtool() {
    if ! command -v promtool >/dev/null; then
        fail "promtool not found: install Debian's prometheus package (./deploy/local.sh deps)"
        return
    fi
    local what out
    for what in "check config $PROM_DIR/prometheus.yml" \
        "check config $PROM_DIR/prometheus.compose.yml" \
        "check rules $ALERTS" \
        "test rules $PROM_DIR/alerts.test.yml"; do
        # shellcheck disable=SC2086 # $what is "<subcommand> <subcommand> <file>"
        if out=$(cd "$PROM_DIR" && promtool $what 2>&1); then
            pass "promtool $what ($(grep -oE '[0-9]+ rules found' <<<"$out" | head -n1 || echo ok))"
        else
            fail "promtool $what"
            printf '%s\n' "$out" | sed 's/^/      /'
        fi
    done
}

# --------------------------------------------------------------------------------------------
# 2. metric names
# --------------------------------------------------------------------------------------------
# Prints "<code>" of an HTTP request; extra args go to curl.
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" || true; }

ws_handshake() { # ws_handshake GATEWAY [curl args]: a WebSocket upgrade request
    local gw=$1
    shift
    http_code -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' \
        -H 'Sec-WebSocket-Key: b3BzLWNoZWNrLWtleS0xMjM0NQ==' "$@" "http://$gw/api/notifications/ws"
}

# Makes the cheap labelled series exist: refused tokens (api, each gateway), a refused origin.
# (The notification the WebSocket clients receive, in check 5, makes
# herald_api_notifications_created_total exist; check 2 runs after it.)
provoke_series() {
    local gw code
    code=$(http_code -H 'Authorization: Bearer not-a-token' "http://$API/api/notifications")
    [[ $code == 401 ]] || note "api answered $code (not 401) to a malformed token"
    for gw in "${GATEWAYS[@]}"; do
        code=$(ws_handshake "$gw" --get --data-urlencode 'token=not-a-token')
        [[ $code == 401 ]] || note "$gw answered $code (not 401) to a malformed token"
        code=$(ws_handshake "$gw" -H 'Origin: http://ops-check.invalid' --get --data-urlencode 'token=x')
        [[ $code == 403 ]] || note "$gw answered $code (not 403) to a foreign origin"
    done
}

# The metric family names a /metrics text declares (# TYPE lines).
families() { sed -nE 's/^# TYPE (herald_[a-z_]+) .*/\1/p'; }

check_metric_names() {
    local addr ok=1 name file referenced unknown=() declared=()
    declare -A live=()
    for addr in "$API" "${GATEWAYS[@]}" "$WORKER"; do
        if ! curl -fsS --max-time 5 "http://$addr/metrics" >"$WORK/metrics-$addr" 2>"$WORK/curl.err"; then
            fail "GET http://$addr/metrics: $(<"$WORK/curl.err")"
            ok=0
        fi
    done
    ((ok)) || return 0
    for name in $(families <"$WORK/metrics-$API"); do live[$name]=1; done
    for name in $(families <"$WORK/metrics-$WORKER"); do live[$name]=1; done
    for addr in "${GATEWAYS[@]}"; do
        for name in $(families <"$WORK/metrics-$addr"); do live[$name]=1; done
    done
    referenced=$(grep -ohE 'herald_[a-z_]+' "$ALERTS" "$DASHBOARD" | sed -E 's/_(bucket|sum|count)$//' | sort -u)
    for name in $referenced; do
        [[ -n ${live[$name]:-} ]] && continue
        case $name in
        herald_api_*) file=api/src/metrics.rs ;;
        herald_gateway_*) file=gateway/src/metrics.rs ;;
        herald_worker_*) file=worker/src/metrics.rs ;;
        *) file="" ;;
        esac
        # A labelled metric (counter_vec/histogram_vec) declared but never incremented yet.
        if [[ -n $file ]] && grep -A1 -E '_vec\($' "$REPO_ROOT/$file" | grep -qF "\"$name\""; then
            declared+=("$name ($file)")
        else
            unknown+=("$name")
        fi
    done
    local n
    n=$(wc -w <<<"$referenced")
    if ((${#unknown[@]} == 0)); then
        pass "metric names: all $n names in alerts.yml and the dashboard are exported (${#live[@]} families live)"
        if ((${#declared[@]} > 0)); then
            note "labelled, declared, no series yet (not incremented on this stack): ${declared[*]}"
        fi
    else
        fail "metric names: not exported by any service: ${unknown[*]}"
    fi
}

# --------------------------------------------------------------------------------------------
# 3. configuration reference
# --------------------------------------------------------------------------------------------
code_env_vars() {
    {
        grep -rhoE 'env = "[A-Z_][A-Z0-9_]*"' "$REPO_ROOT"/{api,gateway,worker,core}/src |
            sed -E 's/env = "([A-Z0-9_]+)"/\1/'
        grep -rhoE 'env::var(_os)?\("[A-Z_][A-Z0-9_]*"\)' "$REPO_ROOT"/{api,gateway,worker,core}/src |
            sed -E 's/.*\("([A-Z0-9_]+)"\)/\1/'
        printf '%s\n' RUST_LOG HERALD_LOG_FORMAT
    } | sort -u
}

check_config_reference() {
    local var vars missing=()
    vars=$(code_env_vars)
    for var in $vars; do
        grep -qE "(^|[^A-Z0-9_])${var}([^A-Z0-9_]|\$)" "$OPS_DOC" || missing+=("$var")
    done
    if ((${#missing[@]} == 0)); then
        pass "config reference: docs/operations.md names all $(wc -w <<<"$vars") variables the code reads"
    else
        fail "config reference: docs/operations.md does not name: ${missing[*]}"
    fi
}

# --------------------------------------------------------------------------------------------
# 4. compose file and its nginx config
# --------------------------------------------------------------------------------------------
check_compose() {
    local out
    if docker compose version >/dev/null 2>&1; then
        if out=$(HERALD_JWT_SECRET=check docker compose -f "$COMPOSE" config -q 2>&1); then
            pass "docker compose config -q deploy/compose.yaml"
        else
            fail "docker compose config deploy/compose.yaml"
            printf '%s\n' "$out" | sed 's/^/      /'
        fi
    fi
    # Always: the structure this project relies on (also where no compose plugin exists).
    if ! "$PY" -c 'import yaml' 2>/dev/null; then
        fail "compose structure: $PY has no yaml module (Debian's python3-yaml)"
        return
    fi
    code_env_vars >"$WORK/env-vars"
    if out=$("$PY" "$WORK/ops.py" compose "$COMPOSE" "$WORK/env-vars" 2>&1); then
        pass "compose structure (python3-yaml; no docker engine or compose plugin here): ${out##*$'\n'}"
    else
        fail "compose structure:"
        printf '%s\n' "$out" | sed 's/^/      /'
    fi

    # nginx -t on the compose nginx.conf, with the service names (not resolvable here) replaced.
    if ! command -v nginx >/dev/null; then
        fail "nginx not found: cannot check deploy/compose/nginx.conf"
        return
    fi
    # Temp paths and logs inside $WORK: the compiled-in temp paths (/var/lib/nginx) need root.
    local t="$WORK/nginx/tmp"
    mkdir -p "$t"
    sed -E -e 's/\b(api|gateway1|gateway2):([0-9]+)/127.0.0.1:\2/' \
        -e "s|^user nginx;|user $(id -un);|" \
        -e "s|^pid .*|pid $WORK/nginx/nginx.pid;|" -e "s#/dev/std(out|err)#$WORK/nginx/\\1.log#" \
        -e "s|^http \{|http { client_body_temp_path $t/b; proxy_temp_path $t/p; fastcgi_temp_path $t/f; uwsgi_temp_path $t/u; scgi_temp_path $t/s;|" \
        "$REPO_ROOT/deploy/compose/nginx.conf" >"$WORK/nginx/nginx.conf"
    if out=$(nginx -q -t -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx/" -e "$WORK/nginx/error.log" 2>&1); then
        pass "nginx -t deploy/compose/nginx.conf"
    else
        fail "nginx -t deploy/compose/nginx.conf"
        printf '%s\n' "$out" | sed 's/^/      /'
    fi
}

# --------------------------------------------------------------------------------------------
# 5. a real Prometheus against the stack
# --------------------------------------------------------------------------------------------
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# prom_query EXPR: prints the JSON answer of an instant query (empty on a transport error).
prom_query() {
    curl -sS --max-time 5 --get --data-urlencode "query=$1" "http://$PROM_ADDR/api/v1/query" 2>/dev/null || true
}

# prom_value EXPR: the first sample's value, or "none" (no result) / "error: ..." .
prom_value() { prom_query "$1" | "$PY" "$WORK/ops.py" value; }

# Starts the WebSocket clients; prints their events to $WORK/clients.log.
start_clients() {
    cat >"$WORK/clients.js" <<'JSEOF'
// N WebSocket clients of one user on one gateway (the `ws` package by path, HS256 tokens).
// `node clients.js token SUB [SCOPE]` prints a token; `node clients.js connect WS_MODULE GW SUB N`
// holds N connections and logs "ready" once all got their greeting, then each notification.
const crypto = require("crypto");
const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
function token(sub, scope) {
  const claims = { sub, exp: Math.floor(Date.now() / 1000) + 600 };
  if (scope) claims.scope = scope;
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  const sig = crypto.createHmac("sha256", process.env.HERALD_JWT_SECRET).update(body).digest("base64url");
  return `${body}.${sig}`;
}
const [mode, ...args] = process.argv.slice(2);
if (mode === "token") {
  console.log(token(args[0], args[1]));
} else {
  const [wsModule, gw, sub, n] = args;
  const WebSocket = require(wsModule);
  let greeted = 0;
  for (let i = 0; i < Number(n); i++) {
    const ws = new WebSocket(`ws://${gw}/api/notifications/ws?token=${token(sub)}`);
    ws.on("message", (data) => {
      const text = data.toString();
      if (text === "pong") return;
      const msg = JSON.parse(text);
      if (msg.type === "connection_established" && ++greeted === Number(n)) console.log("ready");
      if (msg.type === "new_notification") console.log(`notification ${i} ${msg.notification.title}`);
    });
    ws.on("error", (e) => { console.log(`error ${i} ${e.message}`); process.exit(1); });
    ws.on("close", (code) => { console.log(`closed ${i} ${code}`); process.exit(1); });
  }
  process.on("SIGTERM", () => process.exit(0));
}
JSEOF
    node "$WORK/clients.js" connect "$WS_MODULE" "${GATEWAYS[0]}" "$OPS_USER" "$CLIENTS" \
        >"$WORK/clients.log" 2>&1 &
    CLIENTS_PID=$!
}

# wait_until SECONDS COMMAND...: polls every 0.5 s; 1 on timeout.
wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

clients_ready() { grep -q '^ready$' "$WORK/clients.log" || ! kill -0 "$CLIENTS_PID" 2>/dev/null; }
clients_notified() { (($(grep -c '^notification ' "$WORK/clients.log") >= CLIENTS)); }
prom_ready() { curl -fsS --max-time 2 "http://$PROM_ADDR/-/ready" >/dev/null 2>&1; }
targets_up() {
    UP_STATE=$(prom_query 'up{job=~"herald-.*"}' | "$PY" "$WORK/ops.py" up)
    local expected=$((2 + ${#GATEWAYS[@]}))
    [[ $(grep -o '=1' <<<"$UP_STATE" | wc -l) -eq $expected ]]
}
gauge_is() { [[ $(prom_value "herald_gateway_connections{instance=\"${GATEWAYS[0]}\"}") == "$1" ]]; }
rules_evaluated() {
    RULES_STATE=$(curl -sS --max-time 5 "http://$PROM_ADDR/api/v1/rules" 2>/dev/null | "$PY" "$WORK/ops.py" rules)
    local n unknown
    read -r n unknown _ <<<"$RULES_STATE"
    ((n > 0 && unknown == 0))
}

# True once the first gateway's publish-to-write histogram counted more than $count_before.
histogram_counted() {
    value=$(prom_value "herald_gateway_publish_to_write_seconds_count{instance=\"${GATEWAYS[0]}\"}")
    [[ $value =~ ^[0-9.]+$ && $count_before =~ ^[0-9.]+$ ]] &&
        "$PY" -c "import sys; sys.exit(0 if float('$value') > float('$count_before') else 1)"
}

check_prometheus() {
    local prometheus port gw baseline value
    prometheus=$(command -v prometheus || true)
    if [[ -z $prometheus ]]; then
        fail "prometheus not found: install Debian's prometheus package (./deploy/local.sh deps)"
        return
    fi
    if [[ ! -f $WS_MODULE/package.json ]]; then
        fail "the ws package is missing ($WS_MODULE): run npm ci in gateway/tests/socketio"
        return
    fi
    for port in $(seq 19090 19190); do port_free "$port" && break; done
    PROM_ADDR="127.0.0.1:$port"
    local targets_gw="" sep=""
    for gw in "${GATEWAYS[@]}"; do
        targets_gw+="$sep\"$gw\""
        sep=", "
    done
    cat >"$WORK/prometheus.yml" <<EOF
# Generated by deploy/checks/ops.sh: the stack under test, scraped every second.
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - "$ALERTS"
scrape_configs:
  - job_name: herald-api
    static_configs: [{ targets: ["$API"] }]
  - job_name: herald-gateway
    static_configs: [{ targets: [$targets_gw] }]
  - job_name: herald-worker
    static_configs: [{ targets: ["$WORKER"] }]
EOF
    "$prometheus" --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/data" \
        --web.listen-address="$PROM_ADDR" --log.level=warn >"$WORK/prometheus.log" 2>&1 &
    PROM_PID=$!
    if ! wait_until 30 prom_ready; then
        fail "Prometheus did not become ready on $PROM_ADDR within 30 s"
        sed 's/^/      /' "$WORK/prometheus.log" | tail -n 20
        return
    fi

    # Clients first, so they are counted by the time every target is up.
    baseline=$(sed -nE 's/^herald_gateway_connections ([0-9]+)$/\1/p' "$WORK/metrics0-${GATEWAYS[0]}")
    OPS_USER="ops-check-$$-$RANDOM"
    start_clients
    if wait_until 15 clients_ready && grep -q '^ready$' "$WORK/clients.log"; then
        pass "$CLIENTS WebSocket clients connected to ${GATEWAYS[0]} and greeted"
    else
        fail "$CLIENTS WebSocket clients could not connect to ${GATEWAYS[0]}: $(tr '\n' ' ' <"$WORK/clients.log")"
    fi

    if wait_until 30 targets_up; then
        pass "Prometheus on $PROM_ADDR: every target up ($UP_STATE)"
    else
        fail "Prometheus on $PROM_ADDR: not every target up after 30 s (${UP_STATE:-no answer})"
    fi

    local expected=$((${baseline:-0} + CLIENTS))
    if wait_until 15 gauge_is "$expected"; then
        pass "herald_gateway_connections{instance=\"${GATEWAYS[0]}\"} = $expected (was ${baseline:-0}, + $CLIENTS clients) via the query API"
    else
        value=$(prom_value "herald_gateway_connections{instance=\"${GATEWAYS[0]}\"}")
        fail "herald_gateway_connections{instance=\"${GATEWAYS[0]}\"} is $value, expected $expected"
    fi

    # A notification to the clients' user: delivered to all of them, and timed by the gateway.
    local pub code
    count_before=$(prom_value "herald_gateway_publish_to_write_seconds_count{instance=\"${GATEWAYS[0]}\"}")
    pub=$(node "$WORK/clients.js" token ops-check-publisher publish || true)
    code=$(http_code -H "Authorization: Bearer $pub" -H 'content-type: application/json' \
        -d "{\"recipients\":[\"$OPS_USER\"],\"type\":\"ops_check\",\"title\":\"ops check\",\"message\":\"metrics check\"}" \
        "http://$API/api/notifications")
    if [[ $code == 201 ]] && wait_until 15 clients_notified; then
        pass "a published notification (201) reached all $CLIENTS clients"
    else
        fail "publish answered $code; clients saw: $(tr '\n' ' ' <"$WORK/clients.log")"
    fi
    if wait_until 15 histogram_counted; then
        pass "herald_gateway_publish_to_write_seconds_count on ${GATEWAYS[0]} rose from $count_before to $value"
    else
        fail "herald_gateway_publish_to_write_seconds_count on ${GATEWAYS[0]} did not rise ($count_before -> ${value:-none})"
    fi

    if wait_until 20 rules_evaluated && [[ -z $(cut -d' ' -f3- <<<"$RULES_STATE") ]]; then
        pass "alerts.yml in Prometheus: all $(cut -d' ' -f1 <<<"$RULES_STATE") rules evaluate without error"
    else
        fail "alerts.yml in Prometheus: rules not healthy: ${RULES_STATE:-no answer}"
    fi

    local q errors=() nq=0
    while IFS= read -r q; do
        [[ -n $q ]] || continue
        nq=$((nq + 1))
        value=$(prom_value "$q")
        [[ $value == error:* ]] && errors+=("$q -> $value")
    done < <("$PY" "$WORK/ops.py" queries "$DASHBOARD")
    if ((nq > 0 && ${#errors[@]} == 0)); then
        pass "dashboard: all $nq queries run in Prometheus"
    else
        fail "dashboard: ${#errors[@]} of $nq queries fail: ${errors[*]}"
    fi
}

# --------------------------------------------------------------------------------------------
cd "$REPO_ROOT"
echo "ops checks: api $API, gateways ${GATEWAYS[*]}, worker $WORKER"
check_promtool
check_config_reference
check_compose
# The gateway's connection count before the clients, from the stack itself.
curl -fsS --max-time 5 "http://${GATEWAYS[0]}/metrics" >"$WORK/metrics0-${GATEWAYS[0]}" 2>/dev/null || true
provoke_series
check_prometheus
check_metric_names
echo "ops: $passed passed, $failed failed"
((failed == 0))
