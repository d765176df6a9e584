#!/usr/bin/env bash
# deploy/local.sh — Herald's local stack and test runner, on one Debian 12 machine.
#
# `up` installs what is missing (Postgres, Redis, nginx, curl), makes sure Postgres and Redis run,
# creates the role and database named in DATABASE_URL, builds the release binaries, starts every
# service in SERVICES in the background and puts a private nginx in front of them, listening on
# HERALD_PUBLIC_URL. `down` stops exactly what `up` started (by pid file; Postgres and Redis are
# never stopped). `test` runs fmt, clippy and the workspace tests against the local Postgres and
# Redis; it is what .ci/run calls. Run `deploy/local.sh help` for the details.
#
# Works as root on a fresh Debian 12 machine, or as a user with sudo.
set -euo pipefail

REPO_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
# Debian keeps nginx, runuser and friends in sbin, which is not on a normal user's PATH; rustup
# installs cargo in ~/.cargo/bin, which a non-login shell (CI) may not have on PATH either.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
if ! command -v cargo >/dev/null 2>&1 && [[ -x ${HOME:-/nonexistent}/.cargo/bin/cargo ]]; then
    PATH="$HOME/.cargo/bin:$PATH"
fi

# ---------------------------------------------------------------------------------------------
# Configuration (environment, with defaults)
# ---------------------------------------------------------------------------------------------
DATABASE_URL=${DATABASE_URL:-postgres://herald:herald@127.0.0.1:5432/herald}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
DEV_JWT_SECRET=herald-dev-secret-change-me # DEV default only: never use it outside this machine
HERALD_JWT_SECRET=${HERALD_JWT_SECRET:-$DEV_JWT_SECRET}
HERALD_PUBLIC_URL=${HERALD_PUBLIC_URL:-http://127.0.0.1:8000}
HERALD_API_ADDR=${HERALD_API_ADDR:-127.0.0.1:8001}
HERALD_GATEWAY1_ADDR=${HERALD_GATEWAY1_ADDR:-127.0.0.1:8011}
HERALD_GATEWAY2_ADDR=${HERALD_GATEWAY2_ADDR:-127.0.0.1:8012}
HERALD_WORKER_ADDR=${HERALD_WORKER_ADDR:-127.0.0.1:8021}
# Browser origins besides HERALD_PUBLIC_URL's (comma separated) that may call the api and open
# WebSocket / Socket.IO connections, e.g. a frontend dev server on http://localhost:3000.
CORS_ALLOWED_ORIGINS=${CORS_ALLOWED_ORIGINS:-}
# The api's body limit and request timeout; nginx's client_max_body_size and its read timeout
# towards the api follow them.
HERALD_MAX_BODY_BYTES=${HERALD_MAX_BODY_BYTES:-4194304}
HERALD_REQUEST_TIMEOUT_MS=${HERALD_REQUEST_TIMEOUT_MS:-10000}
# Which build the services run from: release for `up`, debug for the end-to-end tests.
HERALD_PROFILE=${HERALD_PROFILE:-release}
RUN_DIR=${HERALD_RUN_DIR:-$REPO_ROOT/.run}
[[ $RUN_DIR == /* ]] || RUN_DIR="$PWD/$RUN_DIR"
LOG_DIR="$RUN_DIR/logs"
NGINX_DIR="$RUN_DIR/nginx"
NGINX_CONF="$NGINX_DIR/nginx.conf"
NGINX_PID="$NGINX_DIR/nginx.pid"
NGINX_TEMPLATE="$REPO_ROOT/deploy/nginx/herald.conf.template"
READY_TIMEOUT=60 # seconds a service gets to answer /readyz

# The services `up` builds and starts, one per line: "name binary addr [ENV=value ...]".
#   name    pid file $RUN_DIR/<name>.pid, log $RUN_DIR/logs/<name>.log
#   binary  target/release/<binary>; it is also the cargo package built (`-p <binary>`)
#   addr    host:port polled at http://<addr>/readyz before `up` goes on; `-` for none
#   ENV=value  extra environment for this service only (no spaces in values). Every service
#           also gets DATABASE_URL, REDIS_URL, HERALD_JWT_SECRET, HERALD_PUBLIC_URL and RUST_LOG.
# A service whose name starts with "gateway" (and has an addr) joins nginx's herald_gateway
# upstream, which serves /api/notifications/ws and /socket.io/.
SERVICES=(
    # HERALD_DEV_TOKENS: the demo page mints its own tokens (development only).
    "api herald-api $HERALD_API_ADDR HERALD_API_ADDR=$HERALD_API_ADDR HERALD_DEV_TOKENS=true"
    "gateway1 herald-gateway $HERALD_GATEWAY1_ADDR HERALD_GATEWAY_ADDR=$HERALD_GATEWAY1_ADDR HERALD_NODE_ID=gateway1 HERALD_API_URL=http://$HERALD_API_ADDR"
    "gateway2 herald-gateway $HERALD_GATEWAY2_ADDR HERALD_GATEWAY_ADDR=$HERALD_GATEWAY2_ADDR HERALD_NODE_ID=gateway2 HERALD_API_URL=http://$HERALD_API_ADDR"
    "worker herald-worker $HERALD_WORKER_ADDR HERALD_WORKER_ADDR=$HERALD_WORKER_ADDR HERALD_MAIL_DIR=$RUN_DIR/mail"
)

# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------
log() { printf '==> %s\n' "$*"; }
warn() { printf '==> WARNING: %s\n' "$*" >&2; }
die() {
    printf '==> ERROR: %s\n' "$*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

# Runs a command as root: directly when we are root, through sudo when it exists.
as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif have sudo; then
        sudo "$@"
    else
        die "'$*' needs root, and sudo is not installed: run this script as root"
    fi
}

# Polls a command until it succeeds: wait_for SECONDS DESCRIPTION COMMAND... (1 on timeout).
wait_for() {
    local secs=$1 what=$2 deadline
    shift 2
    deadline=$((SECONDS + secs))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            warn "timed out after ${secs}s waiting for $what"
            return 1
        fi
        sleep 0.5
    done
}

# Prints a URL with its password replaced by ***.
redact_url() { sed -E 's#^([a-z]+://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }

url_decode() { printf '%b' "${1//%/\\x}"; }

is_local_host() {
    case $1 in
    127.0.0.1 | localhost | ::1 | '[::1]') return 0 ;;
    *) return 1 ;;
    esac
}

# True when something accepts TCP connections on HOST PORT.
port_in_use() {
    local host=${1#[} port=$2
    host=${host%]}
    # shellcheck disable=SC2016 # $1/$2 are expanded by the inner bash
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null
}

# Splits "host:port" (or "[v6]:port") into the globals ADDR_HOST and ADDR_PORT.
split_addr() {
    [[ $1 =~ ^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9._-]+):([0-9]+)$ ]] ||
        die "'$1' is not a host:port address"
    ADDR_HOST=${BASH_REMATCH[1]}
    ADDR_PORT=${BASH_REMATCH[2]}
}

http_ok() { curl -fsS -o /dev/null --max-time 3 "$1" 2>/dev/null; }

# ---------------------------------------------------------------------------------------------
# Parsing the URLs
# ---------------------------------------------------------------------------------------------
# DATABASE_URL -> DB_USER DB_PASS DB_HOST DB_PORT DB_NAME
parse_database_url() {
    local re='^postgres(ql)?://([^:@/?#]+)(:([^@/?#]*))?@(\[[0-9a-fA-F:]+\]|[^:/?#]+)(:([0-9]+))?/([^/?#]+)([?].*)?$'
    [[ $DATABASE_URL =~ $re ]] ||
        die "DATABASE_URL must look like postgres://user:password@host:port/dbname (got $(redact_url "$DATABASE_URL"))"
    DB_USER=$(url_decode "${BASH_REMATCH[2]}")
    DB_PASS=$(url_decode "${BASH_REMATCH[4]}")
    DB_HOST=${BASH_REMATCH[5]}
    DB_PORT=${BASH_REMATCH[7]:-5432}
    DB_NAME=$(url_decode "${BASH_REMATCH[8]}")
    DB_HOST=${DB_HOST#[}
    DB_HOST=${DB_HOST%]}
}

# REDIS_URL -> REDIS_HOST REDIS_PORT
parse_redis_url() {
    local re='^redis://([^@/]*@)?(\[[0-9a-fA-F:]+\]|[^:/?#@]+)(:([0-9]+))?(/[0-9]*)?$'
    [[ $REDIS_URL =~ $re ]] ||
        die "REDIS_URL must look like redis://[user:password@]host:port[/db] (got $(redact_url "$REDIS_URL"))"
    REDIS_HOST=${BASH_REMATCH[2]}
    REDIS_PORT=${BASH_REMATCH[4]:-6379}
}

# HERALD_PUBLIC_URL -> PUBLIC_PORT (nginx always listens on 127.0.0.1)
parse_public_url() {
    [[ $HERALD_PUBLIC_URL =~ ^http://(\[[0-9a-fA-F:]+\]|[A-Za-z0-9._-]+)(:([0-9]+))?/?$ ]] ||
        die "HERALD_PUBLIC_URL must look like http://host:port (plain http, no path) (got $HERALD_PUBLIC_URL)"
    PUBLIC_PORT=${BASH_REMATCH[3]:-80}
    HERALD_PUBLIC_URL=${HERALD_PUBLIC_URL%/}
}

# ---------------------------------------------------------------------------------------------
# deps: system packages and the Rust toolchain
# ---------------------------------------------------------------------------------------------
ensure_packages() {
    local missing=()
    if ! have pg_ctlcluster || ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
        missing+=(postgresql)
    fi
    have psql && have pg_isready || missing+=(postgresql-client)
    have redis-server || missing+=(redis-server)
    have redis-cli || missing+=(redis-tools)
    have nginx || missing+=(nginx)
    have curl || missing+=(curl)
    have openssl || missing+=(openssl)
    # The real socket.io-client runs on Node in the gateway's Socket.IO tests.
    have node || missing+=(nodejs)
    have npm || missing+=(npm)
    # Headless Chromium for the browser end-to-end tests (driven by playwright-core).
    [[ -x /usr/bin/chromium ]] || missing+=(chromium)
    # A real SMTP server for the worker's tests (Debian's python3, not a pyenv one).
    /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || missing+=(python3-aiosmtpd)
    # Prometheus and promtool for deploy/checks/ops.sh (and python3-yaml for its compose check).
    have promtool && have prometheus || missing+=(prometheus)
    /usr/bin/python3 -c 'import yaml' 2>/dev/null || missing+=(python3-yaml)
    if ((${#missing[@]} == 0)); then
        log "system packages present (postgresql, redis-server, nginx, curl, openssl, python3-aiosmtpd, nodejs, npm, chromium, prometheus, python3-yaml)"
        return 0
    fi
    log "installing missing packages: ${missing[*]}"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}"
}

ensure_cargo() {
    have cargo || die "the Rust toolchain (cargo) is not installed or not on PATH: install it with rustup (https://rustup.rs), then open a new shell"
}

cmd_deps() {
    ensure_packages
    ensure_cargo
    log "Rust toolchain: $(cargo --version)"
}

# ---------------------------------------------------------------------------------------------
# ensure_services: Postgres and Redis up and answering
# ---------------------------------------------------------------------------------------------
pg_ready() { pg_isready -q -t 3 -h "$DB_HOST" -p "$DB_PORT" >/dev/null 2>&1; }

ensure_postgres() {
    parse_database_url
    if pg_ready; then
        log "Postgres is accepting connections on $DB_HOST:$DB_PORT"
        return 0
    fi
    is_local_host "$DB_HOST" ||
        die "Postgres at $DB_HOST:$DB_PORT is not reachable; it is not on this machine, so this script will not start it"
    have pg_ctlcluster || die "pg_ctlcluster not found: run '$0 deps' first"

    local conf ver cluster started=0
    for conf in /etc/postgresql/*/*/postgresql.conf; do
        [[ -f $conf ]] || continue
        cluster=$(basename "$(dirname "$conf")")
        ver=$(basename "$(dirname "$(dirname "$conf")")")
        log "starting Postgres cluster $ver/$cluster"
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$cluster" start ||
            warn "pg_ctlcluster $ver $cluster start failed (it may already be running)"
        started=1
    done
    if ((started == 0)); then
        # The package normally creates a "main" cluster; create one if it did not.
        local bin
        bin=$(compgen -G '/usr/lib/postgresql/*/bin/postgres' | sort -V | tail -n1)
        [[ -n $bin ]] || die "no Postgres server installed: run '$0 deps' first"
        ver=$(basename "$(dirname "$(dirname "$bin")")")
        log "no Postgres cluster found: creating $ver/main on port $DB_PORT"
        as_root pg_createcluster --port "$DB_PORT" "$ver" main
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start
    fi
    wait_for 30 "Postgres on $DB_HOST:$DB_PORT" pg_ready ||
        die "Postgres did not come up on $DB_HOST:$DB_PORT (see /var/log/postgresql/)"
    log "Postgres is accepting connections on $DB_HOST:$DB_PORT"
}

redis_ready() { [[ $(timeout 5 redis-cli -u "$REDIS_URL" ping 2>/dev/null) == PONG ]]; }

ensure_redis() {
    parse_redis_url
    if redis_ready; then
        log "Redis answers on $REDIS_HOST:$REDIS_PORT"
        return 0
    fi
    is_local_host "$REDIS_HOST" ||
        die "Redis at $REDIS_HOST:$REDIS_PORT does not answer PING; it is not on this machine, so this script will not start it"
    if port_in_use "$REDIS_HOST" "$REDIS_PORT"; then
        die "something listens on $REDIS_HOST:$REDIS_PORT but does not answer PING with PONG (wrong password in REDIS_URL?)"
    fi
    have redis-server || die "redis-server not found: run '$0 deps' first"
    mkdir -p "$LOG_DIR"
    as_root mkdir -p /var/lib/redis
    log "starting redis-server on port $REDIS_PORT (no persistence), log $LOG_DIR/redis.log"
    as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
        --save "" --appendonly no --dir /var/lib/redis --logfile "$LOG_DIR/redis.log" \
        </dev/null >/dev/null 2>&1
    wait_for 30 "Redis on $REDIS_HOST:$REDIS_PORT" redis_ready ||
        die "Redis did not come up on port $REDIS_PORT (see $LOG_DIR/redis.log)"
    log "Redis answers on $REDIS_HOST:$REDIS_PORT"
}

ensure_services() {
    ensure_postgres
    ensure_redis
}

# ---------------------------------------------------------------------------------------------
# ensure_database: the role (LOGIN, CREATEDB) and database from DATABASE_URL
# ---------------------------------------------------------------------------------------------
# Quotes a value for psql's \set: single quotes, with ' doubled and \ escaped.
psql_quote() {
    local s=${1//\\/\\\\}
    s=${s//\'/\'\'}
    printf "'%s'" "$s"
}

# Runs psql as a Postgres superuser (SQL on stdin); ADMIN_MODE picks how.
admin_psql() {
    local psql_cmd=(psql -X -v ON_ERROR_STOP=1 -qAt -p "$DB_PORT" -d postgres)
    local clean=(env -u PGHOST -u PGHOSTADDR -u PGUSER -u PGDATABASE -u PGPASSWORD -u PGSERVICE)
    case $ADMIN_MODE in
    runuser) (cd / && "${clean[@]}" runuser -u postgres -- "${psql_cmd[@]}") ;;
    sudo) (cd / && sudo -u postgres "${clean[@]}" "${psql_cmd[@]}") ;;
    tcp) "${clean[@]}" "${psql_cmd[@]}" -h "$DB_HOST" -U postgres ;;
    esac
}

# Finds a way to run admin SQL: the OS postgres user over the local socket, else TCP as postgres.
pick_admin_mode() {
    local mode modes=()
    [[ $EUID -eq 0 ]] && modes+=(runuser)
    [[ $EUID -ne 0 ]] && have sudo && modes+=(sudo)
    modes+=(tcp)
    for mode in "${modes[@]}"; do
        ADMIN_MODE=$mode
        if admin_psql <<<'SELECT 1' >/dev/null 2>&1; then
            return 0
        fi
    done
    die "cannot run SQL as the Postgres superuser (tried: ${modes[*]}); create role '$DB_USER' (LOGIN CREATEDB) and database '$DB_NAME' yourself"
}

# psql as the application role, from DATABASE_URL.
db_psql() { psql -X -v ON_ERROR_STOP=1 -qAt "$DATABASE_URL" "$@"; }

ensure_database() {
    parse_database_url
    if ! is_local_host "$DB_HOST"; then
        log "Postgres is not local: checking that $(redact_url "$DATABASE_URL") works"
        db_psql -c 'SELECT 1' >/dev/null ||
            die "cannot connect with DATABASE_URL=$(redact_url "$DATABASE_URL")"
        return 0
    fi
    pick_admin_mode
    log "ensuring role '$DB_USER' (LOGIN CREATEDB) and database '$DB_NAME' exist"
    # The values go through psql variables (:'x' quoting, format %I/%L), never via the command
    # line, so the password does not show up in `ps`.
    admin_psql <<SQL
\\set role $(psql_quote "$DB_USER")
\\set pass $(psql_quote "$DB_PASS")
\\set db $(psql_quote "$DB_NAME")
SELECT format('CREATE ROLE %I', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \\gexec
SELECT format('ALTER ROLE %I WITH LOGIN CREATEDB', :'role')
    || CASE WHEN :'pass' = '' THEN '' ELSE format(' PASSWORD %L', :'pass') END \\gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \\gexec
SQL
    db_psql -c 'SELECT 1' >/dev/null ||
        die "role/database exist but connecting with DATABASE_URL=$(redact_url "$DATABASE_URL") fails (check pg_hba.conf)"
    ensure_autovacuum
    log "database ready: $(redact_url "$DATABASE_URL")"
}

# Herald's query plans rely on statistics that keep up with the tables (ARCHITECTURE.md, "Counts
# and pages"), as they do in production: the local Postgres the stack (and its tests) use runs
# autovacuum even where the machine's configuration turned it off.
ensure_autovacuum() {
    [[ $(admin_psql <<<'SHOW autovacuum') == on ]] && return 0
    log "turning autovacuum on in the local Postgres (ALTER SYSTEM; it was off)"
    admin_psql <<<'ALTER SYSTEM SET autovacuum = on' >/dev/null &&
        admin_psql <<<'SELECT pg_reload_conf()' >/dev/null ||
        die "could not turn autovacuum on (Herald's plans need current statistics)"
    wait_for 10 "autovacuum on" autovacuum_on || die "autovacuum is still off after a reload"
}
autovacuum_on() { [[ $(admin_psql <<<'SHOW autovacuum') == on ]]; }

# Drops per-test databases (herald_test_*) owned by the role, left over by killed test runs.
# One still in use (a test run going on right now) is skipped with a warning.
drop_test_databases() {
    local dbs db dropped=0
    dbs=$(db_psql -c "SELECT quote_ident(d.datname) FROM pg_database d
                        JOIN pg_roles r ON r.oid = d.datdba
                       WHERE r.rolname = current_user AND d.datname LIKE 'herald\\_test\\_%'") ||
        die "cannot list test databases as '$DB_USER'"
    while IFS= read -r db; do
        [[ -n $db ]] || continue
        if db_psql -c "DROP DATABASE IF EXISTS $db" 2>/dev/null; then
            dropped=$((dropped + 1))
        else
            warn "could not drop test database $db (in use?), leaving it"
        fi
    done <<<"$dbs"
    log "dropped $dropped stale test database(s)"
}

# ---------------------------------------------------------------------------------------------
# Processes we start (pid files under $RUN_DIR)
# ---------------------------------------------------------------------------------------------
# Alive and not a zombie.
pid_alive() {
    local pid=$1 stat
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# Alive, and its command line contains MATCH (so a recycled pid is never taken for ours).
pid_matches() {
    local pid=$1 match=$2 cmdline
    pid_alive "$pid" || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *"$match"* ]]
}

pid_gone() { ! pid_alive "$1"; }

read_pid() { [[ -f $1 ]] && tr -dc '0-9' <"$1"; }

# Stops the process of PIDFILE if it is ours (command line contains MATCH): TERM, then KILL.
stop_pidfile() {
    local pidf=$1 match=$2 label=$3 pid
    [[ -f $pidf ]] || return 0
    pid=$(read_pid "$pidf" || true)
    if ! pid_matches "$pid" "$match"; then
        log "$label: not running (stale pid file removed)"
        rm -f "$pidf"
        return 0
    fi
    log "stopping $label (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_for 15 "$label (pid $pid) to exit" pid_gone "$pid"; then
        warn "sending KILL to $label (pid $pid)"
        kill -KILL "$pid" 2>/dev/null || true
        wait_for 5 "$label (pid $pid) to die" pid_gone "$pid" || true
    fi
    rm -f "$pidf"
}

# Every binary we start runs from here; a pid whose command line has it is one of ours.
SERVICE_MATCH="$REPO_ROOT/target/$HERALD_PROFILE/"

stop_services() {
    local pidf
    for pidf in "$RUN_DIR"/*.pid; do
        [[ -e $pidf ]] || continue
        stop_pidfile "$pidf" "$SERVICE_MATCH" "$(basename "$pidf" .pid)"
    done
}

service_env() {
    SERVICE_ENV=(
        "DATABASE_URL=$DATABASE_URL"
        "REDIS_URL=$REDIS_URL"
        "HERALD_JWT_SECRET=$HERALD_JWT_SECRET"
        "HERALD_PUBLIC_URL=$HERALD_PUBLIC_URL"
        "CORS_ALLOWED_ORIGINS=$CORS_ALLOWED_ORIGINS"
        "HERALD_MAX_BODY_BYTES=$HERALD_MAX_BODY_BYTES"
        "HERALD_REQUEST_TIMEOUT_MS=$HERALD_REQUEST_TIMEOUT_MS"
        "RUST_LOG=${RUST_LOG:-info}"
    )
}

# start_service NAME BINARY ADDR [ENV=value...]: starts it detached, writes its pid file.
start_service() {
    local name=$1 bin=$2 addr=$3
    shift 3
    local exe="$REPO_ROOT/target/$HERALD_PROFILE/$bin" logf="$LOG_DIR/$name.log" pidf="$RUN_DIR/$name.pid"
    [[ -x $exe ]] || die "$exe not found: did the build succeed?"
    if [[ $addr != - ]]; then
        split_addr "$addr"
        if port_in_use "$ADDR_HOST" "$ADDR_PORT"; then
            die "$addr (for $name) is already in use by a process this script did not start: stop it or change the address"
        fi
    fi
    mkdir -p "$LOG_DIR"
    [[ -f $logf ]] && mv -f "$logf" "$logf.1"
    service_env
    # nohup + setsid (own session) so the service outlives this shell and its terminal. setsid
    # forks only if the subshell leads its process group, which would lose the pid: skip it then.
    (
        cd "$REPO_ROOT"
        detach=(setsid)
        stat=$(<"/proc/$BASHPID/stat")
        read -r _state _ppid pgid _ <<<"${stat##*) }"
        [[ $pgid == "$BASHPID" ]] && detach=()
        exec "${detach[@]}" nohup env "${SERVICE_ENV[@]}" "$@" "$exe" </dev/null >>"$logf" 2>&1
    ) &
    local pid=$!
    echo "$pid" >"$pidf"
    log "started $name (pid $pid), log $logf"
    wait_ready "$name" "$pid" "$addr" "$logf"
}

# Waits until the service answers /readyz; fails early (with its log) if it exits.
wait_ready() {
    local name=$1 pid=$2 addr=$3 logf=$4 deadline=$((SECONDS + READY_TIMEOUT))
    while :; do
        if ! pid_alive "$pid"; then
            warn "$name exited during startup; last lines of $logf:"
            tail -n 30 "$logf" >&2 || true
            rm -f "$RUN_DIR/$name.pid"
            die "$name failed to start"
        fi
        if [[ $addr == - ]]; then
            sleep 1
            pid_alive "$pid" && return 0
            continue
        fi
        if http_ok "http://$addr/readyz"; then
            log "$name is ready (http://$addr/readyz)"
            return 0
        fi
        if ((SECONDS >= deadline)); then
            warn "last lines of $logf:"
            tail -n 30 "$logf" >&2 || true
            die "$name did not answer http://$addr/readyz within ${READY_TIMEOUT}s (it is still running as pid $pid; '$0 down' stops it)"
        fi
        sleep 0.5
    done
}

build_services() {
    local entry name bin pkgs=() seen=" "
    for entry in "${SERVICES[@]}"; do
        read -r name bin _ <<<"$entry"
        [[ $seen == *" $bin "* ]] && continue
        seen+="$bin "
        pkgs+=(-p "$bin")
    done
    log "cargo build --release ${pkgs[*]}"
    (cd "$REPO_ROOT" && cargo build --release "${pkgs[@]}")
}

# ---------------------------------------------------------------------------------------------
# nginx (a private instance; the system nginx service is never used)
# ---------------------------------------------------------------------------------------------
nginx_run() { nginx -q -c "$1" -p "$NGINX_DIR/" -e "$NGINX_DIR/error.log" "${@:2}"; }

# shellcheck disable=SC2001 # sed keeps this readable (bash 5.2 gives & a meaning in ${//})
sed_escape() { sed -e 's/[\\&|]/\\&/g' <<<"$1"; }

# The worker user when started as root: www-data if it can reach the run dir, else root.
nginx_user_line() {
    [[ $EUID -eq 0 ]] || return 0
    if getent passwd www-data >/dev/null && runuser -u www-data -- test -x "$NGINX_DIR" 2>/dev/null; then
        echo "user www-data;"
    else
        echo "user root; # www-data cannot reach $NGINX_DIR"
    fi
}

# Renders the template into OUT (see the template's header for the placeholders).
render_nginx_conf() {
    local out=$1 entry name bin addr servers="" gw=0
    parse_public_url
    split_addr "$HERALD_API_ADDR"
    [[ -f $NGINX_TEMPLATE ]] || die "nginx template not found: $NGINX_TEMPLATE"
    for entry in "${SERVICES[@]}"; do
        read -r name bin addr _ <<<"$entry"
        [[ $name == gateway* && $addr != - ]] || continue
        split_addr "$addr"
        servers+="        server $addr max_fails=1 fail_timeout=2s;\\n"
        gw=$((gw + 1))
    done
    local begin='^[[:space:]]*#@GATEWAY_BEGIN@[[:space:]]*$' end='^[[:space:]]*#@GATEWAY_END@[[:space:]]*$'
    local sections=(-e "/$begin/,/$end/d")
    if ((gw > 0)); then
        sections=(-e "/$begin/d" -e "/$end/d" -e "s|^@GATEWAY_SERVERS@\$|${servers%\\n}|")
    fi
    mkdir -p "$NGINX_DIR/tmp"
    {
        echo "# GENERATED by deploy/local.sh from deploy/nginx/herald.conf.template: edit that instead."
        sed -e '/^##/d' "${sections[@]}" \
            -e "s|@RUN_DIR@|$(sed_escape "$RUN_DIR")|g" \
            -e "s|@PORT@|$PUBLIC_PORT|g" \
            -e "s|@API_ADDR@|$HERALD_API_ADDR|g" \
            -e "s|@MAX_BODY_BYTES@|$HERALD_MAX_BODY_BYTES|g" \
            -e "s|@API_READ_TIMEOUT@|$((HERALD_REQUEST_TIMEOUT_MS / 1000 + 5))s|g" \
            -e "s|@USER_LINE@|$(sed_escape "$(nginx_user_line)")|g" \
            "$NGINX_TEMPLATE"
    } >"$out"
    if grep -nE '@[A-Z_]+@' "$out" >&2; then
        die "unsubstituted placeholder in $out"
    fi
}

# Renders $NGINX_CONF (via a temp file) and validates it with nginx -t.
write_nginx_conf() {
    have nginx || die "nginx not found: run '$0 deps' first"
    local tmp="$NGINX_CONF.new" out
    render_nginx_conf "$tmp"
    if ! out=$(nginx_run "$tmp" -t 2>&1); then
        printf '%s\n' "$out" >&2
        die "nginx rejected the generated config $tmp"
    fi
    mv -f "$tmp" "$NGINX_CONF"
    log "nginx config OK: $NGINX_CONF"
}

start_nginx() {
    write_nginx_conf
    local pid
    pid=$(read_pid "$NGINX_PID" || true)
    if pid_matches "$pid" "$NGINX_DIR/"; then
        log "reloading our nginx (pid $pid)"
        kill -HUP "$pid"
    else
        rm -f "$NGINX_PID"
        if port_in_use 127.0.0.1 "$PUBLIC_PORT"; then
            die "port $PUBLIC_PORT (from HERALD_PUBLIC_URL) is held by a process this script did not start: stop it or pick another HERALD_PUBLIC_URL"
        fi
        log "starting nginx on 127.0.0.1:$PUBLIC_PORT"
        nginx_run "$NGINX_CONF" </dev/null || die "nginx failed to start (see $NGINX_DIR/error.log)"
    fi
    wait_for 30 "$HERALD_PUBLIC_URL/healthz" http_ok "$HERALD_PUBLIC_URL/healthz" ||
        die "$HERALD_PUBLIC_URL/healthz does not answer (see $NGINX_DIR/error.log and $LOG_DIR/)"
    log "nginx is serving $HERALD_PUBLIC_URL"
}

stop_nginx() { stop_pidfile "$NGINX_PID" "$NGINX_DIR/" nginx; }

# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------
validate_config() {
    parse_database_url
    parse_redis_url
    parse_public_url
    split_addr "$HERALD_API_ADDR"
    if [[ $RUN_DIR == *[[:space:]]* || $RUN_DIR == *[\"\'\$\;\{\}\\]* ]]; then
        die "HERALD_RUN_DIR must not contain spaces, quotes, \$ ; { } or backslashes (it goes into nginx.conf): $RUN_DIR"
    fi
    [[ $HERALD_MAX_BODY_BYTES =~ ^[1-9][0-9]*$ ]] || die "HERALD_MAX_BODY_BYTES must be a number of bytes (got $HERALD_MAX_BODY_BYTES)"
    [[ $HERALD_REQUEST_TIMEOUT_MS =~ ^[1-9][0-9]*$ ]] || die "HERALD_REQUEST_TIMEOUT_MS must be a number of milliseconds (got $HERALD_REQUEST_TIMEOUT_MS)"
    local entry name bin addr
    for entry in "${SERVICES[@]}"; do
        read -r name bin addr _ <<<"$entry"
        [[ -n $name && -n $bin && -n $addr ]] || die "bad SERVICES entry: '$entry'"
    done
    if [[ $HERALD_JWT_SECRET == "$DEV_JWT_SECRET" ]]; then
        warn "HERALD_JWT_SECRET is the DEV default: fine on this machine, never in production"
    fi
}

# What `token` needs to know about the secret the stack runs with, without the secret itself:
# a fingerprint (SHA-256) and whether it is the development default. Readable by us only.
SECRET_FILE_NAME=jwt-secret.sha256
secret_fingerprint() { printf '%s' "$1" | sha256sum | cut -c1-64; }
record_secret() {
    mkdir -p "$RUN_DIR"
    (
        umask 077
        printf '%s %s\n' "$(secret_fingerprint "$HERALD_JWT_SECRET")" \
            "$([[ $HERALD_JWT_SECRET == "$DEV_JWT_SECRET" ]] && echo dev || echo custom)" >"$RUN_DIR/$SECRET_FILE_NAME"
    )
}

# True when a service of the stack in $RUN_DIR runs (from either build profile).
stack_running() {
    local pidf
    for pidf in "$RUN_DIR"/*.pid; do
        [[ -e $pidf ]] || continue
        pid_matches "$(read_pid "$pidf" || true)" "$REPO_ROOT/target/" && return 0
    done
    return 1
}

# The allowed browser origins, as the services compute them: the public origin, then the list.
allowed_origins() {
    local o out=$HERALD_PUBLIC_URL list
    IFS=, read -r -a list <<<"$CORS_ALLOWED_ORIGINS"
    for o in "${list[@]}"; do
        o=${o//[[:space:]]/}
        o=${o%/}
        [[ -n $o && ",$out," != *",$o,"* ]] && out+=",$o"
    done
    echo "${out//,/, }"
}

# Starts every service and nginx from already-built binaries (target/$HERALD_PROFILE).
start_stack() {
    stop_services
    record_secret
    local entry words
    for entry in "${SERVICES[@]}"; do
        read -r -a words <<<"$entry"
        start_service "${words[@]}"
    done
    start_nginx
}

cmd_up() {
    validate_config
    cmd_deps
    ensure_services
    ensure_database
    build_services
    start_stack
    cat <<EOF

Herald is up.
  public URL (nginx):  $HERALD_PUBLIC_URL
  allowed origins:     $(allowed_origins)
                       (set CORS_ALLOWED_ORIGINS=http://localhost:3000,... for frontends elsewhere)
  api (direct):        http://$HERALD_API_ADDR
  logs:                $LOG_DIR/  (nginx: $NGINX_DIR/access.log, error.log)
  emails (.eml):       $RUN_DIR/mail/  (set SMTP_HOST to send through a real server)
  stop:                $0 down

Try it (tokens are signed with the same HERALD_JWT_SECRET as this 'up'):
  TOKEN=\$($0 token alice)
  curl -H "Authorization: Bearer \$TOKEN" $HERALD_PUBLIC_URL/api/notifications
  PUB=\$($0 token my-app --scope publish)
  curl -H "Authorization: Bearer \$PUB" -H 'content-type: application/json' \\
       -d '{"recipients":["alice"],"type":"goal_assigned","title":"Hello","message":"First one"}' \\
       $HERALD_PUBLIC_URL/api/notifications
EOF
}

# Prints a token for user SUB signed with HERALD_JWT_SECRET (extra args go to mint-token,
# e.g. --roles admin --scope publish --ttl-secs 600).
cmd_token() {
    [[ $# -ge 1 ]] || die "usage: $0 token USER_ID [--roles a,b] [--scope publish] [--ttl-secs N]"
    local sub=$1 bin recorded kind
    shift
    # A token signed with another secret than the running stack's is refused by it with
    # "token signature is invalid", which says nothing about why: refuse here, and say so.
    if stack_running && [[ -f $RUN_DIR/$SECRET_FILE_NAME ]]; then
        read -r recorded kind <"$RUN_DIR/$SECRET_FILE_NAME"
        if [[ $recorded != "$(secret_fingerprint "$HERALD_JWT_SECRET")" ]]; then
            local theirs="the development default secret" ours="the development default secret"
            [[ $kind == custom ]] && theirs="the HERALD_JWT_SECRET exported when it was started (not the development default)"
            [[ $HERALD_JWT_SECRET != "$DEV_JWT_SECRET" ]] && ours="another HERALD_JWT_SECRET"
            die "the running stack (in $RUN_DIR) verifies tokens with $theirs, but this shell has $ours: a token from here would be refused (\"token signature is invalid\"). Export the stack's HERALD_JWT_SECRET and run this again."
        fi
    fi
    for bin in "$REPO_ROOT/target/release/herald-api" "$REPO_ROOT/target/debug/herald-api"; do
        if [[ -x $bin ]]; then
            HERALD_JWT_SECRET=$HERALD_JWT_SECRET "$bin" mint-token --sub "$sub" "$@"
            return
        fi
    done
    die "herald-api is not built yet: run '$0 up' first"
}

cmd_down() {
    stop_nginx
    stop_services
    log "stopped (Postgres and Redis are left running)"
}

cmd_status() {
    local ok=0 entry name bin addr pid state
    parse_database_url
    parse_redis_url
    parse_public_url
    for entry in "${SERVICES[@]}"; do
        read -r name bin addr _ <<<"$entry"
        pid=$(read_pid "$RUN_DIR/$name.pid" || true)
        if pid_matches "$pid" "$SERVICE_MATCH"; then
            state="running (pid $pid)"
            if [[ $addr != - ]]; then
                if http_ok "http://$addr/readyz"; then state+=", ready"; else state+=", NOT ready" ok=1; fi
            fi
        else
            state="not running" ok=1
        fi
        printf '%-10s %s\n' "$name" "$state"
    done
    pid=$(read_pid "$NGINX_PID" || true)
    if pid_matches "$pid" "$NGINX_DIR/"; then
        state="running (pid $pid)"
        if http_ok "$HERALD_PUBLIC_URL/healthz"; then state+=", $HERALD_PUBLIC_URL/healthz OK"; else state+=", $HERALD_PUBLIC_URL/healthz FAILS" ok=1; fi
    else
        state="not running" ok=1
    fi
    printf '%-10s %s\n' nginx "$state"
    if have pg_isready && pg_ready; then
        state="accepting connections on $DB_HOST:$DB_PORT"
        if have psql && db_psql -c 'SELECT 1' >/dev/null 2>&1; then state+=", login OK"; else state+=", login as '$DB_USER' FAILS" ok=1; fi
    else
        state="NOT reachable on $DB_HOST:$DB_PORT" ok=1
    fi
    printf '%-10s %s\n' postgres "$state"
    if have redis-cli && redis_ready; then
        state="PONG on $REDIS_HOST:$REDIS_PORT"
    else
        state="NOT answering on $REDIS_HOST:$REDIS_PORT" ok=1
    fi
    printf '%-10s %s\n' redis "$state"
    return "$ok"
}

# Processes a test run leaves behind: every process the run starts inherits HERALD_TEST_RUN (nginx
# masters rewrite their environment, so their command line, which names their private config,
# identifies them; an orphaned nginx worker is one whose master is gone). Only processes absent
# from the snapshot taken when the run began count; zombies are already gone.
# leftovers SNAPSHOT_FILE: prints "pid command" per leftover, returns 1 if there are any.
leftovers() {
    /usr/bin/python3 - "$1" "$HERALD_TEST_RUN" "$RUN_DIR" <<'PY'
import os, sys
snapshot, run_id, run_dir = sys.argv[1], sys.argv[2], sys.argv[3]
before = set(open(snapshot).read().split())
me = {str(os.getpid()), str(os.getppid())}
found = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        stat = open(f"/proc/{pid}/stat").read()
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        key = pid + ":" + stat.rsplit(")", 1)[1].split()[19]
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace").strip()
        env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    except OSError:
        continue
    if key in before or pid in me or state == "Z":
        continue
    ours = (f"HERALD_TEST_RUN={run_id}".encode() in env
            or "/tmp/herald-" in cmd or f"{run_dir}/e2e/" in cmd
            or (cmd.startswith("nginx: worker process") and ppid == "1"))
    if ours:
        found.append(f"{pid} {cmd[:160]}")
print("\n".join(found))
sys.exit(1 if found else 0)
PY
}

# "pid:starttime" of every process now, for `leftovers`.
process_snapshot() {
    /usr/bin/python3 -c '
import os
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        print(pid + ":" + open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[19])
    except OSError:
        pass' >"$1"
}

# At the end of `test`, however it ends: fails the run if a process it started outlives it (and
# stops that process, so the next run starts clean).
check_leftovers() {
    local status=$? left pid
    left=$(leftovers "$TEST_SNAPSHOT") && {
        rm -f "$TEST_SNAPSHOT"
        log "no process started by the tests is left running"
        return "$status"
    }
    warn "processes started by the tests outlived them (now stopped):"
    printf '    %s\n' "$left" >&2
    while read -r pid _; do
        kill -TERM "$pid" 2>/dev/null || true
    done <<<"$left"
    rm -f "$TEST_SNAPSHOT"
    exit 1
}

cmd_test() {
    validate_config
    HERALD_TEST_RUN=$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')
    export HERALD_TEST_RUN
    TEST_SNAPSHOT=$(mktemp "${TMPDIR:-/tmp}/herald-test-processes.XXXXXX")
    process_snapshot "$TEST_SNAPSHOT"
    trap check_leftovers EXIT
    cmd_deps
    ensure_services
    ensure_database
    drop_test_databases
    cargo fmt --version >/dev/null 2>&1 || die "rustfmt is missing: rustup component add rustfmt"
    cargo clippy --version >/dev/null 2>&1 || die "clippy is missing: rustup component add clippy"
    if [[ -n ${CI:-} ]]; then
        export CARGO_TERM_COLOR=never
    fi
    export DATABASE_URL REDIS_URL
    cd "$REPO_ROOT"
    log "cargo fmt --all -- --check"
    cargo fmt --all -- --check || die "formatting differs: run 'cargo fmt --all'"
    log "cargo clippy --workspace --all-targets -- -D warnings"
    cargo clippy --workspace --all-targets -- -D warnings || die "clippy failed"
    log "npm ci (socket.io-client for the Socket.IO tests)"
    (cd "$REPO_ROOT/gateway/tests/socketio" && npm ci --no-audit --no-fund --loglevel=error) ||
        die "npm ci failed in gateway/tests/socketio"
    log "cargo test --workspace $*"
    cargo test --workspace "$@" || die "tests failed"
    log "node --test web/tests (client unit tests)"
    (cd "$REPO_ROOT/web" && npm ci --no-audit --no-fund --loglevel=error && node --test tests/client.test.mjs) ||
        die "client unit tests failed"
    log "node --check loadtest/k6 (k6 cannot run here; its scripts must at least parse)"
    for f in "$REPO_ROOT"/loadtest/k6/*.js; do node --check "$f" || die "k6 script does not parse: $f"; done
    run_e2e || die "browser end-to-end tests failed"
    log "all checks passed"
}

# The browser end-to-end tests: a private stack (its own ports, database, Redis prefix and run
# dir) from the debug binaries `cargo test` just built, headless Chromium driven by
# playwright-core, then the stack is stopped again.
run_e2e() {
    local e2e_dir="$RUN_DIR/e2e" db_url status=0 secret
    db_url="${DATABASE_URL%/*}/herald_e2e"
    # A secret of its own (not the development default), so the checks can show that `token`
    # refuses to sign with another one.
    secret=e2e-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    log "browser end-to-end tests (private stack on 127.0.0.1:18000)"
    (cd "$REPO_ROOT" && cargo build -p herald-api -p herald-gateway -p herald-worker -p herald-loadtest) || return 1
    # A database of its own, new every run: what an earlier run stored (a broadcast reaches every
    # user, new ones too) must not show up in this run's pages.
    psql -X -q -v ON_ERROR_STOP=1 "${DATABASE_URL%/*}/postgres" -c 'DROP DATABASE IF EXISTS herald_e2e' ||
        return 1
    local -a env=(
        HERALD_PROFILE=debug HERALD_RUN_DIR="$e2e_dir" HERALD_PUBLIC_URL=http://127.0.0.1:18000
        HERALD_API_ADDR=127.0.0.1:18001 HERALD_GATEWAY1_ADDR=127.0.0.1:18011
        HERALD_GATEWAY2_ADDR=127.0.0.1:18012 HERALD_WORKER_ADDR=127.0.0.1:18021
        DATABASE_URL="$db_url" REDIS_PREFIX="e2e$$" RUST_LOG=warn HERALD_JWT_SECRET="$secret"
        # The seeds' frontends, as web/tests/origins.test.mjs serves them (documented variable).
        CORS_ALLOWED_ORIGINS=http://127.0.0.1:3000,http://127.0.0.1:3001
    )
    env "${env[@]}" "$0" _start || { env "${env[@]}" "$0" down; return 1; }
    # The operations kit's checks first, while every gateway is up (the tests below kill one).
    HERALD_JWT_SECRET=$secret "$REPO_ROOT/deploy/checks/ops.sh" || status=1
    log "edge checks (JSON errors through nginx, token against the running stack)"
    HERALD_JWT_SECRET=$secret HERALD_CHECK_URL=http://127.0.0.1:18000 HERALD_CHECK_RUN_DIR="$e2e_dir" \
        "$REPO_ROOT/deploy/checks/edge.sh" || status=1
    HERALD_E2E_URL=http://127.0.0.1:18000 HERALD_E2E_RUN_DIR="$e2e_dir" \
        HERALD_E2E_GATEWAYS=127.0.0.1:18011,127.0.0.1:18012 \
        node --test --test-concurrency=1 "$REPO_ROOT/web/tests/e2e.test.mjs" \
        "$REPO_ROOT/web/tests/origins.test.mjs" || status=1
    # Last, on a restarted stack (the browser tests killed a gateway); its reconnect-storm
    # scenario kills one again.
    env "${env[@]}" "$0" _start >/dev/null || status=1
    log "herald-loadtest smoke (every load scenario, small: completes, loses nothing)"
    HERALD_JWT_SECRET=$secret "$REPO_ROOT/target/debug/herald-loadtest" --api http://127.0.0.1:18001 smoke --entry 127.0.0.1:18000 \
        --gateways 127.0.0.1:18011,127.0.0.1:18012 --run-dir "$e2e_dir" | grep -v '^RESULT ' || status=1
    env "${env[@]}" "$0" down >/dev/null
    return "$status"
}

# Postgres, Redis, role and database only (no build, nothing started).
cmd_infra() {
    validate_config
    ensure_packages
    ensure_services
    ensure_database
}

cmd_nginx_config() {
    validate_config
    ensure_packages
    write_nginx_conf
}

usage() {
    cat <<EOF
Usage: deploy/local.sh COMMAND [ARGS]

Herald's local stack: nginx on HERALD_PUBLIC_URL in front of the services, with Postgres and
Redis on this machine (Debian 12; run as root or with sudo).

Commands:
  up            install missing packages, start Postgres/Redis if needed, create the role and
                database, build the release binaries, (re)start the services and nginx
  down          stop the services and nginx that 'up' started (by pid file; never Postgres/Redis)
  status        what runs, readiness, Postgres and Redis reachability (exit 1 if anything is down)
  test [ARGS]   cargo fmt --check, clippy -D warnings, cargo test --workspace [ARGS] against the
                local Postgres and Redis (what .ci/run runs); drops stale herald_test_* databases
  deps          install missing system packages (postgresql, redis-server, nginx, curl) and check
                that the Rust toolchain (cargo) is there
  infra         deps without cargo, then make sure Postgres and Redis run and the role and
                database exist; no build, no service started
  nginx-config  render <run dir>/nginx/nginx.conf from deploy/nginx/herald.conf.template
                and check it with nginx -t; nothing started
  token USER [ARGS]
                print a token for USER signed with HERALD_JWT_SECRET; ARGS go to
                'herald-api mint-token' (--roles a,b, --scope publish, --ttl-secs N)
  help          this text

Environment (defaults):
  DATABASE_URL       postgres://herald:herald@127.0.0.1:5432/herald
                     (role gets LOGIN CREATEDB: tests create a database per test)
  REDIS_URL          redis://127.0.0.1:6379
  HERALD_JWT_SECRET  a DEV-only default secret; set your own anywhere that matters
  HERALD_PUBLIC_URL  http://127.0.0.1:8000   (nginx listens on 127.0.0.1 at this URL's port)
  HERALD_API_ADDR    127.0.0.1:8001
  CORS_ALLOWED_ORIGINS  (empty)               browser origins besides the public one that may
                     use the api, WebSocket and Socket.IO, comma separated, e.g.
                     CORS_ALLOWED_ORIGINS=http://localhost:3000,http://localhost:3001 $0 up
  HERALD_MAX_BODY_BYTES  4194304              the api's body limit; nginx's follows it
  HERALD_REQUEST_TIMEOUT_MS  10000            the api's request timeout; nginx waits 5 s longer
  HERALD_RUN_DIR     <repo>/.run             (pid files, logs/, nginx/)
  RUST_LOG           info (for the services)
  CI                 when set, cargo output has no colour

Every other variable of docs/operations.md (HERALD_WS_*, SMTP_*, HERALD_DB_*, ...) that is set
when this script runs reaches the services unchanged: they inherit its environment.
'token' refuses to sign with a secret other than the running stack's (it would be refused).

Postgres and Redis are only started when their URL points at this machine; otherwise they are
only checked. The services 'up' runs are listed in SERVICES at the top of this script.
EOF
}

main() {
    local cmd=${1:-help}
    [[ $# -gt 0 ]] && shift
    case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    test) cmd_test "$@" ;;
    deps) cmd_deps "$@" ;;
    infra) cmd_infra "$@" ;;
    nginx-config) cmd_nginx_config "$@" ;;
    token) cmd_token "$@" ;;
    _start)
        # Internal (run_e2e): the database, then start_stack from existing binaries.
        validate_config
        ensure_services
        ensure_database
        start_stack
        ;;
    help | -h | --help) usage ;;
    *)
        usage >&2
        die "unknown command: $cmd"
        ;;
    esac
}

main "$@"
