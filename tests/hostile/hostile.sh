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
DAEMON_PIDFILE="$STATE_DIR/pid"
DAEMON_PORTFILE="$STATE_DIR/port"
DAEMON_LOGFILE="$STATE_DIR/hostile.log"
DAEMON_MARK='hostile.py'
. "$ROOT/tests/harness/daemon.sh"

say() { printf 'hostile: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
usage() {
    say "usage: hostile.sh start | stop | status"
    exit 2
}

cmd_start() {
    [ $# -eq 0 ] || usage
    command -v python3 >/dev/null 2>&1 || "$ROOT/tests/harness/deps.sh"
    command -v python3 >/dev/null 2>&1 || die "python3 not found"

    daemon_start "the double" python3 "$HERE/hostile.py" --listen 0 \
        --port-file "$DAEMON_PORTFILE" --max-seconds "${HOSTILE_MAX_SECONDS:-3600}"
    say "listening on 127.0.0.1:$DAEMON_PORT (pid $DAEMON_STARTED_PID)"
    printf '%s\n' "$DAEMON_PORT"
}

[ $# -ge 1 ] || usage
cmd="$1"; shift
case "$cmd" in
    start) cmd_start "$@" ;;
    stop) daemon_stop ;;
    status) daemon_status ;;
    *) usage ;;
esac
