#!/usr/bin/env bash
# Run tests/faultproxy/faultproxy.py in the background for the test runner.
#
#   tests/faultproxy/proxy.sh start UPSTREAM_PORT   start on a free port of
#                                                   127.0.0.1; print the port
#   tests/faultproxy/proxy.sh stop                  stop it (by its pid)
#   tests/faultproxy/proxy.sh status                print running|stopped,
#                                                   exit 0|1
#
# Files: build/faultproxy/{port,pid,proxy.log} (the folder can be moved with
# FAULTPROXY_STATE_DIR, e.g. to run two at once).
# Env:   FAULTPROXY_MAX_SECONDS (default 3600): the proxy exits by itself
#        after that long even if nobody stops it.
#
# A proxy still running from an earlier start is stopped and replaced, so a
# run never inherits another run's faults or counters.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
STATE_DIR="${FAULTPROXY_STATE_DIR:-$ROOT/build/faultproxy}"
DAEMON_PIDFILE="$STATE_DIR/pid"
DAEMON_PORTFILE="$STATE_DIR/port"
DAEMON_LOGFILE="$STATE_DIR/proxy.log"
DAEMON_MARK='faultproxy.py'
. "$ROOT/tests/harness/daemon.sh"

say() { printf 'faultproxy: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
usage() {
    say "usage: proxy.sh start UPSTREAM_PORT | stop | status"
    exit 2
}

cmd_start() {
    [ $# -eq 1 ] || usage
    local up="$1"
    case "$up" in ''|*[!0-9]*) die "bad upstream port: '$up'" ;; esac

    command -v python3 >/dev/null 2>&1 || "$ROOT/tests/harness/deps.sh"
    command -v python3 >/dev/null 2>&1 || die "python3 not found"

    daemon_start "the proxy" python3 "$HERE/faultproxy.py" --listen 0 \
        --upstream "127.0.0.1:$up" --port-file "$DAEMON_PORTFILE" \
        --max-seconds "${FAULTPROXY_MAX_SECONDS:-3600}"
    say "listening on 127.0.0.1:$DAEMON_PORT -> 127.0.0.1:$up (pid $DAEMON_STARTED_PID)"
    printf '%s\n' "$DAEMON_PORT"
}

[ $# -ge 1 ] || usage
cmd="$1"; shift
case "$cmd" in
    start) cmd_start "$@" ;;
    stop) daemon_stop ;;        # an UPSTREAM_PORT argument is accepted and ignored
    status) daemon_status ;;
    *) usage ;;
esac
