# shellcheck shell=bash
# A background loopback server run by PID, for the harness scripts: sourced
# (not run) by tests/hostile/hostile.sh, tests/faultproxy/proxy.sh and
# tests/harness/ddb_local.sh. `make install` puts it beside ddb_local.sh.
#
# The sourcing script sets, before calling any of these:
#   DAEMON_PIDFILE   the pid file (its folder is the state folder)
#   DAEMON_MARK      a word of the server's command line (e.g. hostile.py):
#                    a pid is ours only if its /proc cmdline holds it, so a
#                    recycled pid of another program is never signalled
#   DAEMON_PORTFILE  the file the server writes its port to   (daemon_start,
#   DAEMON_LOGFILE   the server's stdout and stderr             daemon_stop)
# and defines say MESSAGE and die MESSAGE (print; print and exit 1).
#
# Nothing here picks a port or talks to the server: the server binds
# 127.0.0.1 itself and reports the port it got in DAEMON_PORTFILE.

. "$(dirname "${BASH_SOURCE[0]}")/proc.sh"   # alive

# daemon_pid: print the pid in the pid file if that process is alive and is
# ours (DAEMON_MARK); status 1 otherwise.
daemon_pid() {
    [ -f "$DAEMON_PIDFILE" ] || return 1
    local pid
    pid="$(tr -dc '0-9' <"$DAEMON_PIDFILE" 2>/dev/null || true)"
    [ -n "$pid" ] || return 1
    alive "$pid" || return 1
    if [ -r "/proc/$pid/cmdline" ]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$DAEMON_MARK" || return 1
    fi
    printf '%s\n' "$pid"
}

# daemon_stop_pid PID [TERM_TENTHS [KILL_TENTHS]]: TERM, wait up to
# TERM_TENTHS tenths of a second (default 50) for the end, then KILL and
# wait up to KILL_TENTHS (default 30). Status 1 if it is still alive then.
daemon_stop_pid() {
    local pid="$1" term="${2:-50}" kill="${3:-30}" i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < term; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
    say "pid $pid did not exit on TERM; sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < kill; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
    return 1
}

# daemon_status: print running|stopped, status 0|1.
daemon_status() {
    if daemon_pid >/dev/null; then
        echo running
        return 0
    fi
    echo stopped
    return 1
}

# daemon_stop: stop ours if it runs (exit 1 if it would not die), then
# remove the pid and port files.
daemon_stop() {
    local pid
    if pid="$(daemon_pid)"; then
        daemon_stop_pid "$pid" || { say "pid $pid would not die"; exit 1; }
    fi
    rm -f "$DAEMON_PIDFILE" "$DAEMON_PORTFILE"
}

# daemon_start WHAT COMMAND [ARG...]: stop and replace one of ours still
# running (a run never inherits another run's state), start COMMAND in the
# background (stdin /dev/null, output to DAEMON_LOGFILE), write its pid and
# wait up to ~10 s for the port it writes to DAEMON_PORTFILE. Sets
# DAEMON_STARTED_PID and DAEMON_PORT; dies (WHAT names the server in the
# message) if it exits first or reports no port in time.
daemon_start() {
    local what="$1" pid i port=""
    shift
    mkdir -p "$(dirname "$DAEMON_PIDFILE")"
    if pid="$(daemon_pid)"; then
        say "replacing $what already running (pid $pid)"
        daemon_stop_pid "$pid" || die "could not stop pid $pid"
    fi
    rm -f "$DAEMON_PIDFILE" "$DAEMON_PORTFILE"

    "$@" </dev/null >"$DAEMON_LOGFILE" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$DAEMON_PIDFILE"

    for ((i = 0; i < 100; i++)); do         # up to ~10 s
        if [ -s "$DAEMON_PORTFILE" ]; then
            port="$(tr -dc '0-9' <"$DAEMON_PORTFILE")"
            [ -n "$port" ] && break
        fi
        if ! alive "$pid"; then
            sed 's/^/    /' "$DAEMON_LOGFILE" >&2 || true
            rm -f "$DAEMON_PIDFILE"
            die "$what exited at start-up"
        fi
        sleep 0.1
    done
    if [ -z "$port" ]; then
        daemon_stop_pid "$pid" || true
        rm -f "$DAEMON_PIDFILE"
        die "$what did not report its port within 10 s (log: $DAEMON_LOGFILE)"
    fi
    DAEMON_STARTED_PID="$pid"
    DAEMON_PORT="$port"
}
