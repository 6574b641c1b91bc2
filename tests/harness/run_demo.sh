#!/usr/bin/env bash
# `make run`: start DynamoDB Local, create the two tables (the store table
# and the idempotency table; an existing table is fine), then open the
# `ddbkit` REPL on them when stdin is a terminal, else run the demo. A
# DynamoDB Local already answering on the port (the user's, with their
# tables) is used as it is and left running; one this script started is
# stopped again (by its PID) however the script ends.
#
#   tests/harness/run_demo.sh [STORE_TABLE [IDEMPOTENCY_TABLE]]
# Port: $DDB_LOCAL_PORT, else 8000. Table names default to
# http-client-toolkit and idempotency-cache.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PORT="${DDB_LOCAL_PORT:-8000}"
# lua/ for ddbkit, scripts/ for its policies and strategies; the demo
# starts a second process with these same paths (section 3).
export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;$ROOT/scripts/?.lua;;"
export LUA_CPATH="$ROOT/build/lua54/?.so;;"

if tests/harness/ddb_local.sh probe --port "$PORT"; then
    ENDPOINT="http://127.0.0.1:$PORT"
    echo "DynamoDB Local at $ENDPOINT (already running: using it, leaving it running)"
else
    ENDPOINT="$(tests/harness/ddb_local.sh start --port "$PORT")"
    trap 'tests/harness/ddb_local.sh stop --port "$PORT" >/dev/null 2>&1' EXIT
    echo "DynamoDB Local at $ENDPOINT"
fi
lua5.4 scripts/setup_tables.lua "$ENDPOINT" "$@"
if [ -t 0 ] && [ -z "${DDBKIT_DEMO:-}" ]; then
    echo "The ddbkit REPL on $ENDPOINT (:help for help, Ctrl-D to leave; DDBKIT_DEMO=1 make run for the demo)"
    # set -m: the REPL runs in its own process group, which gets the
    # terminal, so a Ctrl-C typed at its prompt reaches the REPL only (it
    # cancels the line), not this script nor the `make` that runs it (which
    # would otherwise end with 130 once the REPL is left).
    set -m
    DDBKIT_IDEMPOTENCY_TABLE="${2:-idempotency-cache}" \
        build/ddbkit --endpoint "$ENDPOINT" --table "${1:-http-client-toolkit}"
else
    lua5.4 scripts/demo.lua "$ENDPOINT" "$@"
fi
