#!/usr/bin/env bash
# Run tests/harness/fakemeta.py (AWS's credential services, faked: IMDSv2,
# the container endpoint, STS, the SSO portal) in the background for the
# test runner and the specs.
#
#   tests/harness/fakemeta.sh start    start on a free port of 127.0.0.1;
#                                      print the port
#   tests/harness/fakemeta.sh stop     stop it (by its pid)
#   tests/harness/fakemeta.sh status   print running|stopped, exit 0|1
#
# Files: build/fakemeta/{port,pid,fakemeta.log} (the folder can be moved
# with FAKEMETA_STATE_DIR, e.g. to run two at once).
# Env:   FAKEMETA_MAX_SECONDS (default 3600): the fake exits by itself after
#        that long even if nobody stops it.
#
# A fake still running from an earlier start is stopped and replaced, so a
# run never inherits another run's settings, faults or issue log.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
STATE_DIR="${FAKEMETA_STATE_DIR:-$ROOT/build/fakemeta}"
DAEMON_PIDFILE="$STATE_DIR/pid"
DAEMON_PORTFILE="$STATE_DIR/port"
DAEMON_LOGFILE="$STATE_DIR/fakemeta.log"
DAEMON_MARK='fakemeta.py'
. "$HERE/daemon.sh"

say() { printf 'fakemeta: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
usage() {
    say "usage: fakemeta.sh start | stop | status"
    exit 2
}

cmd_start() {
    [ $# -eq 0 ] || usage
    command -v python3 >/dev/null 2>&1 || "$HERE/deps.sh"
    command -v python3 >/dev/null 2>&1 || die "python3 not found"

    daemon_start "the fake" python3 "$HERE/fakemeta.py" --listen 0 \
        --port-file "$DAEMON_PORTFILE" --max-seconds "${FAKEMETA_MAX_SECONDS:-3600}"
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
