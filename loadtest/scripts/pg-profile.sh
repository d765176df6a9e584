#!/usr/bin/env bash
# Profile the durable write path in Postgres (issue 16): a PRIVATE Postgres 15 cluster with
# pg_stat_statements, a release api + gateway on it, the `targeted` scenario (1,000 users,
# 5,000 personal notifications at 1,000/s), then Postgres' and the api's CPU µs per notification
# (from /proc) and the top statements by total_exec_time, as a Markdown table.
#
#   loadtest/scripts/pg-profile.sh            (as root or as any user; needs Redis at REDIS_URL)
#
# The release binaries are copied to $PGPROF_DIR/bin (default /tmp/pgprof) and run from there.
# TRACK_PLANNING=1 also records planning time; API_BIN=path runs another build of the api. Every
# process started here is stopped by PID (the cluster with pg_ctl -m fast) on exit; the machine's
# own Postgres is never touched.
set -euo pipefail
repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PGPROF_DIR=${PGPROF_DIR:-/tmp/pgprof}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export HERALD_JWT_SECRET=${HERALD_JWT_SECRET:-herald-dev-secret-change-me}
USERS=${USERS:-1000} RATE=${RATE:-1000} SECONDS_RUN=${SECONDS_RUN:-5}

mkdir -p "$PGPROF_DIR/bin"
for b in herald-api herald-gateway herald-loadtest; do
    cp -f "$repo/target/release/$b" "$PGPROF_DIR/bin/$b"
done
# API_BIN: another build's api, to compare commits in one sitting.
[[ -n ${API_BIN:-} ]] && cp -f "$API_BIN" "$PGPROF_DIR/bin/herald-api"
bin=$PGPROF_DIR/bin
tmp=$(mktemp -d "$PGPROF_DIR/run.XXXXXX")
data=$tmp/data

# initdb and the postmaster refuse to run as root: run them as the postgres user then.
as_pg() { if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[[ $EUID -eq 0 ]] && chown postgres: "$tmp"

pids=()
cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ -f $data/postmaster.pid ]]; then
        as_pg "$PG_BIN/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null || true
    fi
    if ((rc != 0)); then
        echo "FAILED (exit $rc); logs kept in $tmp:" >&2
        for f in "$tmp"/*.log; do [[ -f $f ]] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ready() { for _ in $(seq 150); do curl -fs "http://$1/readyz" >/dev/null && return 0; sleep 0.2; done; return 1; }

# 1. The private cluster.
pg_port=$(free_port)
as_pg "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --no-instructions >"$tmp/initdb.log"
opts="-c port=$pg_port -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
opts+=" -c autovacuum=on -c listen_addresses=127.0.0.1 -c unix_socket_directories=$tmp"
[[ ${TRACK_PLANNING:-0} == 1 ]] && opts+=" -c pg_stat_statements.track_planning=on"
as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$tmp/postgres.log" -w -t 30 -o "$opts" start >/dev/null
postmaster=$(head -1 "$data/postmaster.pid")
psql_pg() { psql -X -q -v ON_ERROR_STOP=1 -h "$tmp" -p "$pg_port" -U postgres "$@"; }
psql_pg -d postgres -c "CREATE ROLE herald LOGIN CREATEDB PASSWORD 'herald'" -c "CREATE DATABASE herald OWNER herald"
psql_pg -d herald -c "CREATE EXTENSION pg_stat_statements"
echo "postgres: 15 private cluster on 127.0.0.1:$pg_port (postmaster pid $postmaster, data $data)"

# 2. The api and a gateway (release builds, copies).
prefix=pgprof$$
api_port=$(free_port)
DATABASE_URL=postgres://herald:herald@127.0.0.1:$pg_port/herald REDIS_URL=$REDIS_URL REDIS_PREFIX=$prefix \
    HERALD_API_ADDR=127.0.0.1:$api_port RUST_LOG=warn "$bin/herald-api" >"$tmp/api.log" 2>&1 &
api_pid=$!
pids+=("$api_pid")
ready "127.0.0.1:$api_port" || { echo "api not ready" >&2; exit 1; }
gw_port=$(free_port)
HERALD_GATEWAY_ADDR=127.0.0.1:$gw_port HERALD_API_URL=http://127.0.0.1:$api_port REDIS_URL=$REDIS_URL \
    REDIS_PREFIX=$prefix HERALD_WS_MAX_CONNECTIONS=30000 HERALD_WS_MAX_CONNECTIONS_PER_USER=100000 \
    RUST_LOG=warn "$bin/herald-gateway" >"$tmp/gateway.log" 2>&1 &
gw_pid=$!
pids+=("$gw_pid")
ready "127.0.0.1:$gw_port" || { echo "gateway not ready" >&2; exit 1; }
echo "api: pid $api_pid on 127.0.0.1:$api_port; gateway: pid $gw_pid on 127.0.0.1:$gw_port"

# 3. Empty counters. (No ANALYZE of the empty tables: the api's own statistics keeper decides,
#    as in a new deployment.)
psql_pg -d herald -c "SELECT pg_stat_statements_reset()" >/dev/null

# 4. CPU clock ticks: utime+stime (fields 14, 15) of the given pids; with `reaped`, the
#    postmaster's cutime+cstime (16, 17: children that exited and were waited for).
ticks() {
    local p s f total=0
    for p in "$@"; do
        s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        read -ra f <<<"${s##*) }" # f[0] is field 3
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}
reaped() { local s f; s=$(cat "/proc/$1/stat"); read -ra f <<<"${s##*) }"; echo $((f[13] + f[14])); }
pg_children() { pgrep -P "$postmaster" | tr '\n' ' '; }
hz=$(getconf CLK_TCK)

# The machine's Redis (shared: other work on it counts too, usually none during a run).
redis_pid=$(pgrep -o -x redis-server || true)
# shellcheck disable=SC2046 # pid list
pg0=$(ticks $(pg_children)) pm0=$(($(ticks "$postmaster") + $(reaped "$postmaster"))) api0=$(ticks "$api_pid")
gw0=$(ticks "$gw_pid") rd0=$(ticks $redis_pid)
started=$(date +%s.%N)
out=$(timeout 300 "$bin/herald-loadtest" --api "http://127.0.0.1:$api_port" targeted \
    --gateway "127.0.0.1:$gw_port" --gateway-pid "$gw_pid" --connections "$USERS" \
    --rate "$RATE" --seconds "$SECONDS_RUN" --via notifications)
ended=$(date +%s.%N)
# shellcheck disable=SC2046
pg1=$(ticks $(pg_children)) pm1=$(($(ticks "$postmaster") + $(reaped "$postmaster"))) api1=$(ticks "$api_pid")
gw1=$(ticks "$gw_pid") rd1=$(ticks $redis_pid)
echo "$out"
result=$(grep '^RESULT ' <<<"$out" | sed 's/^RESULT //')
sent=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r["sent"]-r["errors"])' "$result")
((sent > 0)) || { echo "no notification was accepted" >&2; exit 1; }

echo
echo "## CPU over the run ($(python3 -c "print(f'{$ended-$started:.1f}')") s wall, incl. connecting $USERS users; $sent notifications stored)"
per() { python3 -c "print(f'{$1 * 1e6 / $hz / $sent:,.0f}')"; }
echo "- Postgres backends (live children of the postmaster): $(per $((pg1 - pg0))) µs CPU / notification ($(((pg1 - pg0) * 1000 / hz)) ms total)"
echo "- Postgres incl. postmaster + exited children:        $(per $((pg1 - pg0 + pm1 - pm0))) µs CPU / notification"
echo "- api (pid $api_pid):                                    $(per $((api1 - api0))) µs CPU / notification ($(((api1 - api0) * 1000 / hz)) ms total)"
echo "- gateway (pid $gw_pid):                                $(per $((gw1 - gw0))) µs CPU / notification"
echo "- Redis (pid ${redis_pid:-?}):                                 $(per $((rd1 - rd0))) µs CPU / notification"
echo "- whole stack (Postgres incl. postmaster, api, gateway, Redis): $(per $((pg1 - pg0 + pm1 - pm0 + api1 - api0 + gw1 - gw0 + rd1 - rd0))) µs CPU / notification"
echo "  (clock ticks of 1/$hz s; other work on this machine does not count, but timing noise does)"

# 5. The statements.
echo
echo "## Top 15 statements by total_exec_time (pg_stat_statements, database herald)"
echo
echo "| calls | total ms | mean ms | rows | shared blks hit+read | wal records | query |"
echo "|---:|---:|---:|---:|---:|---:|---|"
psql_pg -d herald -At -F ' | ' -c "
    SELECT calls, round(total_exec_time::numeric, 1), round(mean_exec_time::numeric, 3), rows,
           shared_blks_hit + shared_blks_read, wal_records,
           replace(left(regexp_replace(query, '\s+', ' ', 'g'), 120), '|', '\|')
             || CASE WHEN toplevel THEN '' ELSE ' *(nested)*' END
    FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
    WHERE d.datname = 'herald' AND query NOT LIKE '%pg_stat_statements%' -- not this script's own
    ORDER BY total_exec_time DESC LIMIT 15" | sed 's/^/| /; s/$/ |/'
echo
psql_pg -d herald -At -F '|' -c "
    SELECT round(sum(total_exec_time) FILTER (WHERE toplevel)::numeric, 1),
           round(sum(total_exec_time)::numeric, 1),
           round(coalesce(sum(total_plan_time) FILTER (WHERE toplevel), 0)::numeric, 1),
           sum(calls) FILTER (WHERE toplevel), sum(wal_records) FILTER (WHERE toplevel),
           count(*)
    FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
    WHERE d.datname = 'herald' AND query NOT LIKE '%pg_stat_statements%' -- not this script's own" | {
    IFS='|' read -r top all plan calls wal n
    python3 - "$top" "$all" "$plan" "$calls" "$wal" "$n" "$sent" <<'PY'
import sys
top, alls, plan, calls, wal = (float(x or 0) for x in sys.argv[1:6])
n, sent = int(sys.argv[6]), int(sys.argv[7])
print(f"## Totals ({n} statements; {sent} notifications)")
print(f"- total_exec_time, top-level statements: {top:,.1f} ms = {top * 1000 / sent:,.1f} µs exec / notification")
print(f"- total_exec_time, incl. nested (track=all, counted twice): {alls:,.1f} ms = {alls * 1000 / sent:,.1f} µs / notification")
if plan:
    print(f"- total_plan_time, top-level: {plan:,.1f} ms = {plan * 1000 / sent:,.1f} µs plan / notification")
print(f"- top-level calls: {calls:,.0f} = {calls / sent:.2f} / notification; WAL records: {wal:,.0f} = {wal / sent:.1f} / notification")
PY
}
