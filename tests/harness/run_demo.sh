#!/usr/bin/env bash
# `make run`: start DynamoDB Local, create the store table, run the demo,
# and stop the server again (by its PID) however the demo ends.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PORT="${DDB_LOCAL_PORT:-8000}"
export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;"
export LUA_CPATH="$ROOT/build/lua54/?.so;;"

ENDPOINT="$(tests/harness/ddb_local.sh start --port "$PORT")"
trap 'tests/harness/ddb_local.sh stop --port "$PORT" >/dev/null 2>&1' EXIT
echo "DynamoDB Local at $ENDPOINT"
lua5.4 scripts/setup_tables.lua "$ENDPOINT"
lua5.4 scripts/demo.lua "$ENDPOINT"
