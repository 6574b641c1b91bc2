#!/usr/bin/env bash
# Run tests/hostile/hostile.py (the scripted hostile DynamoDB double) in the
# background for the test runner and the specs.
#
#   tests/hostile/hostile.sh start    start on a free port of 127.0.0.1;
#                                     print the port
#   tests/hostile/hostile.sh stop     stop it (by its pid)
#   tests/hostile/hostile.sh status   print running|stopped, exit 0|1
#
# Files: build/hostile/{port,pid,hostile.log} (the folder can be moved with
# HOSTILE_STATE_DIR, e.g. to run two at once).
# Env:   HOSTILE_MAX_SECONDS (default 3600): the double exits by itself
#        after that long even if nobody stops it.
#
# A double still running from an earlier start is stopped and replaced, so a
# run never inherits another run's script or counters.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
STATE_DIR="${HOSTILE_STATE_DIR:-$ROOT/build/hostile}"
PIDFILE="$STATE_DIR/pid"
PORTFILE="$STATE_DIR/port"
LOGFILE="$STATE_DIR/hostile.log"
. "$ROOT/tests/harness/proc.sh"

say() { printf 'hostile: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
usage() {
    say "usage: hostile.sh start | stop | status"
    exit 2
}

# The pid in the pid file, if that process is alive and is our double (a
# recycled pid of another program is never signalled).
our_pid() {
    [ -f "$PIDFILE" ] || return 1
    local pid
    pid="$(tr -dc '0-9' <"$PIDFILE" 2>/dev/null || true)"
    [ -n "$pid" ] || return 1
    alive "$pid" || return 1
    if [ -r "/proc/$pid/cmdline" ]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'hostile.py' || return 1
    fi
    printf '%s\n' "$pid"
}

stop_pid() {
    local pid="$1" i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do         # up to ~5 s
        alive "$pid" || return 0
        sleep 0.1
    done
    say "pid $pid did not exit on TERM; sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
    return 1
}

cmd_stop() {
    local pid
    if pid="$(our_pid)"; then
        stop_pid "$pid" || { say "pid $pid would not die"; exit 1; }
    fi
    rm -f "$PIDFILE" "$PORTFILE"
}

cmd_start() {
    [ $# -eq 0 ] || usage
    command -v python3 >/dev/null 2>&1 || "$ROOT/tests/harness/deps.sh"
    command -v python3 >/dev/null 2>&1 || die "python3 not found"

    mkdir -p "$STATE_DIR"
    local pid
    if pid="$(our_pid)"; then
        say "replacing the double already running (pid $pid)"
        stop_pid "$pid" || die "could not stop pid $pid"
    fi
    rm -f "$PIDFILE" "$PORTFILE"

    python3 "$HERE/hostile.py" --listen 0 --port-file "$PORTFILE" \
        --max-seconds "${HOSTILE_MAX_SECONDS:-3600}" </dev/null >"$LOGFILE" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$PIDFILE"

    local i port=""
    for ((i = 0; i < 100; i++)); do         # up to ~10 s
        if [ -s "$PORTFILE" ]; then
            port="$(tr -dc '0-9' <"$PORTFILE")"
            [ -n "$port" ] && break
        fi
        if ! alive "$pid"; then
            sed 's/^/    /' "$LOGFILE" >&2 || true
            rm -f "$PIDFILE"
            die "the double exited at start-up"
        fi
        sleep 0.1
    done
    if [ -z "$port" ]; then
        stop_pid "$pid" || true
        rm -f "$PIDFILE"
        die "the double did not report its port within 10 s (log: $LOGFILE)"
    fi
    say "listening on 127.0.0.1:$port (pid $pid)"
    printf '%s\n' "$port"
}

cmd_status() {
    if our_pid >/dev/null; then
        echo running
        return 0
    fi
    echo stopped
    return 1
}

[ $# -ge 1 ] || usage
cmd="$1"; shift
case "$cmd" in
    start) cmd_start "$@" ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) usage ;;
esac
