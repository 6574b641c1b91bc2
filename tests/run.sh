#!/usr/bin/env bash
# Runs every test and prints `N passed, N failed` as its last line:
#   1. C unit tests, built plain and with ASan/UBSan (build/tests*, cmocka);
#   2. the busted suite (tests/spec) on Lua 5.4 and on LuaJIT, against a
#      DynamoDB Local, the fault-injecting proxy, the hostile double
#      (tests/hostile) and the fake credential services
#      (tests/harness/fakemeta.py) this script starts and stops by PID.
# Exit status is non-zero when anything failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOG="$ROOT/build/test-logs"
mkdir -p "$LOG"
passed=0
failed=0

note() { printf '\n== %s\n' "$*"; }

# cmocka prints "[  PASSED  ] N test(s)." and "[  FAILED  ] N test(s)";
# a binary that dies without a summary counts as one failure.
run_cmocka() {
    local bin="$1" name out p f
    name="$(basename "$(dirname "$bin")")/$(basename "$bin")"
    out="$LOG/${name//\//_}.log"
    SIGV4_DIR="$ROOT/tests/vectors/sigv4/v4" "$bin" >"$out" 2>&1
    local rc=$?
    # A binary may run several groups: add up every group's summary.
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | awk '{s+=$1} END {print s+0}')
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | awk '{s+=$1} END {print s+0}')
    p=${p:-0}
    f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p))
    failed=$((failed + f))
    printf '%-40s %3d passed, %d failed\n' "$name" "$p" "$f"
    if [ "$f" -ne 0 ]; then sed 's/^/    /' "$out" | tail -40; fi
}

note "C unit tests (plain, then ASan/UBSan)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for bin in build/tests/test_* build/tests-asan/test_*; do
    [ -x "$bin" ] && run_cmocka "$bin"
done

note "clang-tidy (default checks)"
if make -s lint >"$LOG/lint.log" 2>&1; then
    passed=$((passed + 1)); printf '%-40s passed\n' "clang-tidy"
else
    failed=$((failed + 1)); printf '%-40s FAILED\n' "clang-tidy"; head -40 "$LOG/lint.log"
fi

note "fuzz targets (bounded runs)"
# Each target briefly: FUZZ_RUNS inputs or FUZZ_BRIEF_SECONDS, whichever
# comes first, on its corpus under build/fuzz/corpus (tests/fuzz/run.sh).
for bin in build/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    if line="$(tests/fuzz/run.sh "$bin" "${FUZZ_BRIEF_SECONDS:-20}" "${FUZZ_RUNS:-100000}")"; then
        passed=$((passed + 1)); printf '%-40s passed\n' "$(basename "$bin")"
    else
        failed=$((failed + 1)); printf '%-40s FAILED\n' "$(basename "$bin")"
        printf '%s\n' "$line" | sed 's/^/    /'
        tail -30 "build/fuzz/$(basename "$bin").log"
    fi
done

DDB_PORT="$(tests/harness/free_port.sh "${DDBKIT_TEST_PORT:-18000}")"
cleanup() {
    tests/harness/tls_front.sh stop >/dev/null 2>&1
    tests/harness/fakemeta.sh stop >/dev/null 2>&1
    tests/hostile/hostile.sh stop >/dev/null 2>&1
    tests/faultproxy/proxy.sh stop >/dev/null 2>&1
    tests/harness/ddb_local.sh stop --port "$DDB_PORT" >/dev/null 2>&1
}
trap cleanup EXIT

note "DynamoDB Local on 127.0.0.1:$DDB_PORT"
if ! ENDPOINT="$(tests/harness/ddb_local.sh start --port "$DDB_PORT")"; then
    echo "could not start DynamoDB Local"
    failed=$((failed + 1))
    echo "$passed passed, $failed failed"
    exit 1
fi
PROXY_PORT="$(tests/faultproxy/proxy.sh start "$DDB_PORT")" || PROXY_PORT=""
export DDBKIT_TEST_ENDPOINT="$ENDPOINT"
export DDBKIT_TEST_PROXY="${PROXY_PORT:+http://127.0.0.1:$PROXY_PORT}"
# The scripted hostile DynamoDB double (tests/hostile), for
# tests/spec/hostile_server_spec.lua.
HOSTILE_PORT="$(tests/hostile/hostile.sh start)" || HOSTILE_PORT=""
export DDBKIT_TEST_HOSTILE="${HOSTILE_PORT:+http://127.0.0.1:$HOSTILE_PORT}"
# AWS's credential services, faked (IMDSv2, container, STS, SSO), for
# tests/spec/fakemeta_spec.lua and credentials_chain_spec.lua.
FAKEMETA_PORT="$(tests/harness/fakemeta.sh start)" || FAKEMETA_PORT=""
export DDBKIT_TEST_FAKEMETA="${FAKEMETA_PORT:+http://127.0.0.1:$FAKEMETA_PORT}"
# TLS in front of DynamoDB Local with a CA made for this run, for
# tests/spec/tls_spec.lua: its https URL, then the CA's path.
TLS_OUT="$(tests/harness/tls_front.sh start "$DDB_PORT")" || TLS_OUT=""
export DDBKIT_TEST_TLS="$(printf '%s\n' "$TLS_OUT" | sed -n 1p)"
export DDBKIT_TEST_TLS_CA="$(printf '%s\n' "$TLS_OUT" | sed -n 2p)"

# busted with TAP output: "ok N - ..." / "not ok N - ...".
run_busted() {
    local flavour="$1" lua="$2" cpath="$3" out p f
    out="$LOG/busted-$(printf '%s' "$flavour" | tr -c 'A-Za-z0-9.' '_').log"
    note "busted on $flavour"
    LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;$ROOT/tests/spec/?.lua;$ROOT/scripts/?.lua;;" \
    LUA_CPATH="$ROOT/build/$cpath/?.so;;" \
        "$lua" /usr/bin/busted -o TAP --lpath="" tests/spec >"$out" 2>&1
    local rc=$?
    p=$(grep -c '^ok ' "$out" 2>/dev/null)
    f=$(grep -c '^not ok ' "$out" 2>/dev/null)
    p=${p:-0}
    f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p))
    failed=$((failed + f))
    printf '%-40s %3d passed, %d failed\n' "busted ($flavour)" "$p" "$f"
    if [ "$f" -ne 0 ]; then grep -A25 '^not ok ' "$out" | head -200 | sed 's/^/    /'; fi
    if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then tail -30 "$out"; failed=$((failed + 1)); fi
}
run_busted "Lua 5.4" lua5.4 lua54
run_busted "LuaJIT" luajit luajit
# Once more with the module built under ASan/UBSan: the interpreter is not
# instrumented, so the sanitizer runtimes are preloaded; leaks are checked
# by the C unit tests and the fuzzers, not here (lua5.4 itself is not clean).
LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" \
ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 \
    run_busted "Lua 5.4, ASan/UBSan" lua5.4 lua54-asan

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
