#!/usr/bin/env bash
# Starts and stops the test nginx (tests/nginx/nginx.conf.in) and fires
# requests at it, for tests/spec/openresty_spec.lua. Loopback only; every
# process it starts is recorded by PID so `stop` and `reap` end exactly those.
#
#   driver.sh start PREFIX           render PREFIX/conf/nginx.conf, start nginx
#                                    (master + 2 workers) with PREFIX as its
#                                    prefix; print "PID PORT" once it answers
#   driver.sh stop PREFIX            QUIT the master (PREFIX/master.pid), wait
#                                    for it and its workers; KILL after 10 s
#   driver.sh burst DIR TAG N URL [curl args...]
#                                    start N curls in the background; curl i
#                                    writes DIR/TAG.i.body and DIR/TAG.i.headers
#                                    and, when it completes, appends the line
#                                    "TAG i STATUS" to DIR/order.log; PIDs go
#                                    to DIR/pids
#   driver.sh one DIR TAG URL [curl args...]
#                                    the same for one request, in the foreground
#   driver.sh reap DIR               stop the curls of DIR/pids still running
#
# Env: NGINX_BIN (default: nginx on PATH, else /usr/sbin/nginx); NGINX_CONF_IN
# (the template, default tests/nginx/nginx.conf.in); the DDBKIT_* variables
# the config passes to the workers (env directives).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
NGINX_BIN="${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}"
. "$ROOT/tests/harness/proc.sh"

say() { printf 'nginx driver: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# load_module lines for ndk + http_lua, unless this nginx has lua built in.
modules() {
    if "$NGINX_BIN" -V 2>&1 | grep -q 'lua-nginx-module'; then
        return 0
    fi
    local d
    for d in /usr/lib/nginx/modules /usr/share/nginx/modules; do
        if [ -f "$d/ngx_http_lua_module.so" ] && [ -f "$d/ndk_http_module.so" ]; then
            printf 'load_module %s/ndk_http_module.so;\nload_module %s/ngx_http_lua_module.so;\n' "$d" "$d"
            return 0
        fi
    done
    die "no ngx_http_lua_module.so (and ndk_http_module.so) in /usr/lib/nginx/modules or /usr/share/nginx/modules: run tests/harness/deps.sh"
}

cmd_start() {
    [ $# -eq 1 ] || die "usage: driver.sh start PREFIX"
    local prefix="$1" port conf mods without m pid i code
    [ -x "$NGINX_BIN" ] || die "nginx not found: run tests/harness/deps.sh"
    mods="$(modules)"
    port="$("$ROOT/tests/harness/free_port.sh")"
    mkdir -p "$prefix/conf" "$prefix/logs" "$prefix/temp"
    conf="$prefix/conf/nginx.conf"
    python3 - "${NGINX_CONF_IN:-$HERE/nginx.conf.in}" "$conf" "$prefix" "$port" "$ROOT" "$(id -un)" "$(id -gn)" "$mods" <<'PY'
import sys
src, dst, prefix, port, root, user, group, mods = sys.argv[1:]
out = []
for line in open(src):
    if not line.lstrip().startswith("#"):   # comments name the placeholders
        for k, v in (("@PREFIX@", prefix), ("@PORT@", port), ("@ROOT@", root),
                     ("@USER@", user), ("@GROUP@", group), ("@MODULES@", mods)):
            line = line.replace(k, v)
    out.append(line)
open(dst, "w").write("".join(out))
PY
    # Drop the temp-path lines of modules this nginx was built without.
    without="$("$NGINX_BIN" -V 2>&1 || true)"
    for m in fastcgi uwsgi scgi; do
        case "$without" in
            *"--without-http_${m}_module"*) sed -i "/# module:${m}\$/d" "$conf" ;;
        esac
    done
    "$NGINX_BIN" -t -q -p "$prefix" -c "$conf" -e "$prefix/logs/error.log" >&2 \
        || die "nginx rejected $conf"
    "$NGINX_BIN" -p "$prefix" -c "$conf" -e "$prefix/logs/error.log" \
        </dev/null >>"$prefix/logs/stdout.log" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$prefix/master.pid"
    for ((i = 0; i < 100; i++)); do       # up to ~10 s
        code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/plain" || true)"
        [ "$code" = 200 ] && { printf '%s %s\n' "$pid" "$port"; return 0; }
        if ! alive "$pid"; then
            tail -n 20 "$prefix/logs/error.log" >&2 2>/dev/null || true
            die "nginx exited at start-up"
        fi
        sleep 0.1
    done
    tail -n 20 "$prefix/logs/error.log" >&2 2>/dev/null || true
    cmd_stop "$prefix" || true
    die "nginx did not answer on 127.0.0.1:$port"
}

cmd_stop() {
    [ $# -eq 1 ] || die "usage: driver.sh stop PREFIX"
    local prefix="$1" pid workers i
    [ -f "$prefix/master.pid" ] || return 0
    pid="$(tr -dc '0-9' <"$prefix/master.pid")"
    [ -n "$pid" ] || return 0
    # The workers, by parent PID, in case the master has to be killed.
    workers="$(ps -o pid= --ppid "$pid" 2>/dev/null | tr -s ' \n' ' ' || true)"
    if alive "$pid"; then
        kill -QUIT "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do   # up to ~10 s: graceful, workers finish
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            say "nginx $pid did not exit on QUIT; sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    for w in $workers; do
        if alive "$w"; then kill -KILL "$w" 2>/dev/null || true; fi
    done
    for ((i = 0; i < 50; i++)); do
        alive "$pid" || { rm -f "$prefix/master.pid"; return 0; }
        sleep 0.1
    done
    die "nginx $pid would not die"
}

# One curl: body and headers to files, "TAG i STATUS" appended to order.log
# when it completes (one short write, O_APPEND: lines never interleave).
run_curl() {
    local dir="$1" tag="$2" i="$3" url="$4"
    shift 4
    curl -s -m 60 -o "$dir/$tag.$i.body" -D "$dir/$tag.$i.headers" \
        -w "$tag $i %{http_code}\n" "$@" "$url" >>"$dir/order.log" 2>/dev/null </dev/null
}

cmd_burst() {
    [ $# -ge 4 ] || die "usage: driver.sh burst DIR TAG N URL [curl args...]"
    local dir="$1" tag="$2" n="$3" url="$4" i
    shift 4
    mkdir -p "$dir"
    for ((i = 1; i <= n; i++)); do
        # Nothing inherited: a caller reading this script's output (popen)
        # must not wait for the curls.
        run_curl "$dir" "$tag" "$i" "$url" "$@" </dev/null >/dev/null 2>&1 &
        printf '%s\n' "$!" >>"$dir/pids"
    done
}

cmd_one() {
    [ $# -ge 3 ] || die "usage: driver.sh one DIR TAG URL [curl args...]"
    local dir="$1" tag="$2" url="$3"
    shift 3
    mkdir -p "$dir"
    run_curl "$dir" "$tag" 1 "$url" "$@" || true
}

cmd_reap() {
    [ $# -eq 1 ] || die "usage: driver.sh reap DIR"
    local dir="$1" pid c
    [ -f "$dir/pids" ] || return 0
    while read -r pid; do
        [ -n "$pid" ] || continue
        if alive "$pid"; then
            for c in $(ps -o pid= --ppid "$pid" 2>/dev/null || true); do
                kill -TERM "$c" 2>/dev/null || true
            done
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done <"$dir/pids"
    rm -f "$dir/pids"
}

[ $# -ge 1 ] || die "usage: driver.sh start|stop|burst|one|reap ..."
cmd="$1"
shift
case "$cmd" in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    burst) cmd_burst "$@" ;;
    one) cmd_one "$@" ;;
    reap) cmd_reap "$@" ;;
    *) die "unknown command $cmd" ;;
esac
