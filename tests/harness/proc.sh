# Process helpers for the harness scripts, sourced (not run) by
# tests/harness/daemon.sh (so by ddb_local.sh, tests/faultproxy/proxy.sh and
# tests/hostile/hostile.sh), tests/nginx/driver.sh and tests/bench/run.sh.
# `make install` puts it beside ddb_local.sh.

# alive PID: the process exists and is not a zombie. kill -0 alone says yes
# to a zombie: a child of ours not yet waited for, or an orphan before init
# reaps it, would look alive forever to a bounded wait for its end.
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local st=""
    if [ -r "/proc/$1/stat" ]; then
        st="$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1 || true)"
    fi
    [ "$st" != Z ] && [ "$st" != X ]
}
